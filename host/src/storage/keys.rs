//! Key layout of every column family: the on-disk format's addressing. Big-endian integers
//! so that RocksDB's bytewise order is numeric order.
//!
//! | CF | key | value |
//! |---|---|---|
//! | `log` | topic id u32 · partition u32 · offset u64 | [`record`](super::record) |
//! | `offsets` | group · 0x00 · topic id u32 · partition u32 | next offset u64 BE |
//! | `state` | scope u32 · step u16 · partition u32 · user key | expiry u64 BE · value |
//! | `meta` | `format`, `topic/<name>`, `seq/<kind>`, `plugin/…`, `pipeline/<name>` | MessagePack |

/// Length of a `log` key.
pub const LOG_KEY_LEN: usize = 16;

/// The `log` key of one record.
pub fn log_key(topic_id: u32, partition: u32, offset: u64) -> [u8; LOG_KEY_LEN] {
    let mut k = [0u8; LOG_KEY_LEN];
    k[..4].copy_from_slice(&topic_id.to_be_bytes());
    k[4..8].copy_from_slice(&partition.to_be_bytes());
    k[8..].copy_from_slice(&offset.to_be_bytes());
    k
}

/// The offset encoded in a `log` key.
pub fn log_key_offset(key: &[u8]) -> Option<u64> {
    let b: [u8; 8] = key.get(8..16)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

/// Prefix of every `log` key of a topic.
pub fn log_topic_prefix(topic_id: u32) -> [u8; 4] {
    topic_id.to_be_bytes()
}

/// The `offsets` key of a group's position in one partition.
pub fn offset_key(group: &str, topic_id: u32, partition: u32) -> Vec<u8> {
    let mut k = offset_group_prefix(group);
    k.extend_from_slice(&topic_id.to_be_bytes());
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

/// Prefix of every `offsets` key of a group.
pub fn offset_group_prefix(group: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(group.len() + 9);
    k.extend_from_slice(group.as_bytes());
    k.push(0);
    k
}

/// Split an `offsets` key into group, topic id and partition.
pub fn parse_offset_key(key: &[u8]) -> Option<(&str, u32, u32)> {
    let nul = key.iter().position(|b| *b == 0)?;
    let group = std::str::from_utf8(&key[..nul]).ok()?;
    let rest = &key[nul + 1..];
    if rest.len() != 8 {
        return None;
    }
    let topic = u32::from_be_bytes(rest[..4].try_into().ok()?);
    let partition = u32::from_be_bytes(rest[4..].try_into().ok()?);
    Some((group, topic, partition))
}

/// Prefix of one pipeline step's state in one partition.
pub fn state_prefix(scope: u32, step: u16, partition: u32) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[..4].copy_from_slice(&scope.to_be_bytes());
    k[4..6].copy_from_slice(&step.to_be_bytes());
    k[6..].copy_from_slice(&partition.to_be_bytes());
    k
}

/// Prefix of all state of one pipeline.
pub fn state_scope_prefix(scope: u32) -> [u8; 4] {
    scope.to_be_bytes()
}

/// The exclusive upper bound of keys starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last != 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff: no finite bound; callers use an open upper bound instead.
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_keys_sort_numerically() {
        assert!(log_key(1, 0, 255) < log_key(1, 0, 256));
        assert!(log_key(1, 0, u64::MAX) < log_key(1, 1, 0));
        assert_eq!(log_key_offset(&log_key(7, 3, 99)), Some(99));
    }

    #[test]
    fn offset_keys_round_trip() {
        let k = offset_key("g1", 5, 9);
        assert_eq!(parse_offset_key(&k), Some(("g1", 5, 9)));
        assert!(k.starts_with(&offset_group_prefix("g1")));
        assert!(!k.starts_with(&offset_group_prefix("g")));
    }

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end(&[1, 2]), vec![1, 3]);
        assert_eq!(prefix_end(&[1, 0xff]), vec![2]);
        assert!(prefix_end(&[0xff]).is_empty());
    }
}
