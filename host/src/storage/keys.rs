//! Key layout of every column family: the on-disk format's addressing. Big-endian integers
//! so that RocksDB's bytewise order is numeric order.
//!
//! | CF | key | value |
//! |---|---|---|
//! | `log` | topic id u32 · partition u32 · offset u64 | [`record`](super::record) |
//! | `offsets` | group · 0x00 · topic id u32 · partition u32 | next offset u64 BE |
//! | `state` | scope u32 · step u16 · partition u32 · user key | expiry u64 BE · value |
//! | `meta` | see [`meta`] | MessagePack records ([`super::stored`]), counters, component bytes |

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

/// Keys of the `meta` column family: every one is written here and nowhere else.
///
/// | key | value |
/// |---|---|
/// | `format` | format version, u64 BE |
/// | `seq/<kind>` | next id of topics, pipelines, queues (u64 or u32 BE) |
/// | `topic/<name>` | [`super::stored::TopicV1`] |
/// | `pipeline/<name>` | [`super::stored::PipelineV1`] |
/// | `queue/<name>` | [`super::stored::QueueV1`] |
/// | `exchange/<name>` | [`super::stored::ExchangeV1`] |
/// | `plugin/<name>/<version, 10 digits>` | [`super::stored::PluginV1`] |
/// | `plugin-live/<name>`, `plugin-shadow/<name>` | version, u32 BE |
/// | `blob/<blake3 hex>` | component bytes |
pub mod meta {
    /// The format version.
    pub const FORMAT: &str = "format";
    /// Next topic id.
    pub const TOPIC_SEQ: &str = "seq/topic";
    /// Next pipeline state scope.
    pub const PIPELINE_SEQ: &str = "seq/pipeline";
    /// Next queue id.
    pub const QUEUE_SEQ: &str = "seq/queue";
    /// Prefix of every topic.
    pub const TOPICS: &str = "topic/";
    /// Prefix of every pipeline.
    pub const PIPELINES: &str = "pipeline/";
    /// Prefix of every queue.
    pub const QUEUES: &str = "queue/";
    /// Prefix of every exchange.
    pub const EXCHANGES: &str = "exchange/";
    /// Prefix of every plugin version.
    pub const PLUGINS: &str = "plugin/";
    /// Prefix of every live-version pointer.
    pub const LIVE: &str = "plugin-live/";
    /// Prefix of every shadow-version pointer.
    pub const SHADOW: &str = "plugin-shadow/";
    /// Prefix of every idempotent producer's last batch per partition.
    pub const PRODUCERS: &str = "producer/";

    /// An idempotent producer's last batch in one partition of a topic (by topic id: a
    /// topic created again under the same name starts clean).
    pub fn producer(id: i64, topic_id: u32, partition: u32) -> String {
        format!("{PRODUCERS}{id}/{topic_id}/{partition}")
    }

    /// A topic's record.
    pub fn topic(name: &str) -> String {
        format!("{TOPICS}{name}")
    }

    /// A pipeline's record.
    pub fn pipeline(name: &str) -> String {
        format!("{PIPELINES}{name}")
    }

    /// A queue's record.
    pub fn queue(name: &str) -> String {
        format!("{QUEUES}{name}")
    }

    /// An exchange's record.
    pub fn exchange(name: &str) -> String {
        format!("{EXCHANGES}{name}")
    }

    /// A plugin version's record; zero-padded so versions scan in order.
    pub fn plugin_version(name: &str, version: u32) -> String {
        format!("{PLUGINS}{name}/{version:010}")
    }

    /// A plugin's live-version pointer.
    pub fn live(name: &str) -> String {
        format!("{LIVE}{name}")
    }

    /// A plugin's shadow-version pointer.
    pub fn shadow(name: &str) -> String {
        format!("{SHADOW}{name}")
    }

    /// A component's bytes, by content hash (shared by versions with the same bytes).
    pub fn blob(hash: &str) -> String {
        format!("blob/{hash}")
    }
}
