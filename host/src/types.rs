//! Plain data of the broker shared by its modules: topic settings and durability, names, time.
//! (The wire and the on-disk format have their own types, converted at their edges.)

/// When a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Acknowledged after the group commit's WAL write is fsynced: survives power loss.
    #[default]
    Sync,
    /// Acknowledged after the WAL write reaches the OS: survives a crash of `weir serve`
    /// (kill -9) but not of the machine. Weaker; faster.
    Os,
}

impl Durability {
    /// The stronger of two settings.
    pub fn max(self, other: Durability) -> Durability {
        if self == Durability::Sync || other == Durability::Sync { Durability::Sync } else { Durability::Os }
    }
}

/// How a keyed record picks its partition (keyless records go round-robin either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Partitioner {
    /// xxHash64 of the key, seed 0 (weir's own).
    #[default]
    Hash,
    /// Kafka's murmur2 (the Java client's and kafka-python's default for keyed records).
    Murmur2,
}

impl Partitioner {
    /// The partition of `key` among `n`.
    pub fn partition(self, key: &[u8], n: u32) -> u32 {
        match self {
            Partitioner::Hash => (twox_hash::XxHash64::oneshot(0, key) % u64::from(n)) as u32,
            Partitioner::Murmur2 => (murmur2(key) & 0x7fff_ffff) % n,
        }
    }
}

/// Kafka's murmur2 (seed 0x9747b28c), as `org.apache.kafka.common.utils.Utils.murmur2`.
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes(c.try_into().expect("4 bytes")).wrapping_mul(M);
        k ^= k >> 24;
        h = h.wrapping_mul(M) ^ k.wrapping_mul(M);
    }
    if !tail.is_empty() {
        for (i, b) in tail.iter().enumerate().rev() {
            h ^= u32::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

/// How much a produce checks of a record against the schema registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Validation {
    /// The Confluent framing (magic byte 0, a schema id) and that the id is registered under
    /// the record's subject.
    #[default]
    Id,
    /// Also that the payload decodes with that schema.
    Full,
    /// Nothing at produce: the subject is the topic's contract, which pipelines writing to or
    /// reading from it are checked against before they run.
    None,
}

/// Which subject a record's schema id must be registered under (Confluent's naming strategies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubjectStrategy {
    /// The topic's subject (`<topic>-key`, `<topic>-value`, or the one configured).
    #[default]
    TopicName,
    /// The record's full name (the schema's record, title or message name).
    RecordName,
    /// `<topic>-<record full name>`.
    TopicRecordName,
}

/// Settings of a topic, fixed at creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    /// Number of partitions; order is kept within a partition.
    pub partitions: u32,
    /// `None`: the server's default durability.
    pub durability: Option<Durability>,
    /// Delete records older than this (ms). `None`: keep forever.
    pub retention_ms: Option<u64>,
    /// Delete the oldest records of a partition beyond this many bytes. `None`: no limit.
    pub retention_bytes: Option<u64>,
    /// Largest accepted message value.
    pub max_message_bytes: usize,
    /// Kept in memory only (the last [`crate::limits::EPHEMERAL_RING_RECORDS`] per partition)
    /// and never written to disk: Redis Pub/Sub style fan-out to live subscribers. The topic
    /// itself survives a restart; its messages do not, and its offsets start again at 0.
    pub ephemeral: bool,
    /// How keyed records pick their partition.
    pub partitioner: Partitioner,
    /// Records' keys must carry a schema id of this subject (`None`: keys are not checked;
    /// empty: the subject follows `subject_strategy`).
    pub key_schema: Option<String>,
    /// Records' values must carry a schema id of this subject (as `key_schema`).
    pub value_schema: Option<String>,
    /// How much is checked where a subject is set.
    pub validation: Validation,
    /// How a record's subject is named.
    pub subject_strategy: SubjectStrategy,
}

fn default_max_message_bytes() -> usize {
    crate::limits::MAX_MESSAGE_BYTES
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            partitions: 1,
            durability: None,
            retention_ms: None,
            retention_bytes: None,
            max_message_bytes: default_max_message_bytes(),
            ephemeral: false,
            partitioner: Partitioner::Hash,
            key_schema: None,
            value_schema: None,
            validation: Validation::Id,
            subject_strategy: SubjectStrategy::TopicName,
        }
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A user-chosen name that breaks the naming rule; the message states the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid {kind} name {name:?}: use 1 to {max} characters from a-z, A-Z, 0-9, '-', '_', '.'",
    max = crate::limits::MAX_NAME_BYTES
)]
pub struct InvalidName {
    /// What was being named: `topic`, `queue`, ….
    pub kind: &'static str,
    /// The name given (cut to the name limit, so a huge one is not echoed back).
    pub name: String,
}

/// Check a user-chosen name (topic, plugin, pipeline, group) against the naming rule.
pub fn check_name(kind: &'static str, name: &str) -> Result<(), InvalidName> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > crate::limits::MAX_NAME_BYTES || !name.chars().all(ok_char) {
        let name = crate::limits::truncated(name.to_string(), crate::limits::MAX_NAME_BYTES);
        return Err(InvalidName { kind, name });
    }
    Ok(())
}

/// Bounds of the latency histograms (requests, group-commit writes), seconds: shared by the
/// store, which keeps its write times, and the metrics that expose them.
pub(crate) const LATENCY_BUCKETS: [f64; 14] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's own test vectors (`UtilsTest.testMurmur2`).
    #[test]
    fn murmur2_matches_kafka() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
            (b"abc", 479470107),
        ];
        for (key, want) in cases {
            assert_eq!(murmur2(key) as i32, want, "{}", String::from_utf8_lossy(key));
        }
        assert_eq!(Partitioner::Murmur2.partition(b"21", 7), (-973932308i32 & 0x7fff_ffff) as u32 % 7);
    }
}
