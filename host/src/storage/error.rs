//! Typed errors of the storage layer.

/// What went wrong in the store. Each variant says what to do next in its message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The named topic does not exist.
    #[error("unknown topic `{0}`: create it with `weir topic create {0}`")]
    UnknownTopic(String),
    /// A topic with this name already exists.
    #[error("topic `{0}` already exists")]
    TopicExists(String),
    /// The partition is not one of the topic's.
    #[error("topic `{topic}` has {partitions} partitions; partition {partition} does not exist")]
    UnknownPartition {
        /// Topic name.
        topic: String,
        /// The partition asked for.
        partition: u32,
        /// How many the topic has.
        partitions: u32,
    },
    /// An argument is out of range; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// A message is larger than the topic allows.
    #[error(
        "message of {size} bytes exceeds the {max}-byte limit of topic `{topic}`; split it or raise the limit at topic creation (--max-message-bytes)"
    )]
    MessageTooLarge {
        /// Topic name.
        topic: String,
        /// Size of the offending value.
        size: usize,
        /// The topic's limit.
        max: usize,
    },
    /// A write failed earlier; the store refuses writes rather than guess what is on disk.
    #[error(
        "store refuses writes after an earlier write failure ({0}); fix the cause (disk space, permissions) and restart `weir serve`"
    )]
    Poisoned(String),
    /// Free space is below the floor weir keeps: appends are refused until it returns.
    #[error(
        "disk full: {path} has {free_bytes} bytes free, below the {min_free_bytes} weir keeps free (weir serve --min-free-space); nothing was stored. Writes resume by themselves once space returns: delete topics or records, lower retention, or add space. Reads keep working"
    )]
    DiskFull {
        /// The directory short of space.
        path: String,
        /// Its free bytes.
        free_bytes: u64,
        /// The floor.
        min_free_bytes: u64,
    },
    /// RocksDB reported an error.
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// The data directory holds a format this version cannot read.
    #[error(
        "data directory format {found} is not supported (this weir reads format {expected}); use a weir version that matches or a new --data-dir"
    )]
    Format {
        /// Format found on disk.
        found: u32,
        /// Format this build reads.
        expected: u32,
    },
    /// Stored bytes do not decode: corruption or a bug.
    #[error("corrupt record in {what}: {why}")]
    Corrupt {
        /// Where.
        what: String,
        /// Why it failed to decode.
        why: String,
    },
    /// The write-ahead log does not replay: the disk lost or changed data.
    #[error(
        "the write-ahead log in {path} is damaged ({detail}); weir will not start and silently drop acknowledged writes. Restore the data directory from a backup, or start with --recover-wal to keep everything before the damage and lose what follows"
    )]
    DamagedWal {
        /// Database directory.
        path: String,
        /// What RocksDB found.
        detail: String,
    },
    /// The store was opened with another write-ahead-log directory than the one it was
    /// created with: its log would not be replayed.
    #[error(
        "the write-ahead log of {path} is in {recorded}, not {given}; start with {flag} (a database opened with its log elsewhere would skip the writes the log holds)"
    )]
    WalDirMismatch {
        /// Database directory.
        path: String,
        /// Where its log is.
        recorded: String,
        /// Where it was asked to be.
        given: String,
        /// The option that opens it.
        flag: String,
    },
    /// The store is shutting down.
    #[error("the store is shutting down")]
    Closed,
    /// A concurrent change won: a create found the name taken, or a compare-and-set lost.
    #[error("{0}")]
    Conflict(String),
    /// The replicated store (cluster mode) did not answer in time; nothing is known to have
    /// changed, and the request may be retried.
    #[error("the cluster's store did not answer: {0}; retry")]
    Unavailable(String),
    /// A record written by a newer weir node; the text says what to upgrade.
    #[error("{0}")]
    Newer(String),
    /// Another node took over what this node was writing (cluster mode); its write was
    /// refused whole.
    #[error("{0}")]
    Fenced(String),
}

/// Shorthand for results of this module.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
