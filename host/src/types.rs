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
