//! The RocksDB-backed store: topics of partitioned append-only logs, consumer-group offsets,
//! pipeline state and metadata, written by one group-commit thread.
//!
//! Invariants (asserted in tests, relied on everywhere):
//! * Offsets in a partition are dense and increasing from 0; a record's offset never changes.
//! * Every write goes through the [`writer`] thread, in submission order, as part of one
//!   `WriteBatch`; a [`Commit`] is atomic: all of its appends, state writes and offset
//!   commits are durable together or not at all.
//! * A write is acknowledged only once durable under its [`Durability`].
//! * Readers see a record only after its write is acknowledged (the high watermark moves
//!   after the write returns).
//! * Retention never deletes the last record of a partition, so the next offset is
//!   recoverable from the log alone after a restart.
//! * After a failed write the store is poisoned and refuses writes; it never retries blindly.
//!
//! Storage knows nothing about wasmtime, the wire protocol or pipelines.

pub mod doctor;
mod error;
pub mod keys;
pub mod record;
mod space;
pub mod stored;
mod topic;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};

use bytes::Bytes;
use rocksdb::{ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, ReadOptions};

pub use error::{Result, StoreError};
pub use record::{NewRecord, StoredRecord};
pub use topic::{Partition, Topic, Traffic};
pub(crate) use writer::validate as validate_commit;
pub use writer::{Append, Commit, OffsetCommit, Receipt, StateWrite, WriteStats};

use crate::mirror::{mirror, mirror_enum};
use crate::types::{Durability, Partitioner, SubjectStrategy, TopicConfig, Validation};

/// On-disk format written by this build. Opening a directory of another format fails.
pub const FORMAT_VERSION: u32 = 1;

/// Column family of the partitioned logs.
pub(crate) const CF_LOG: &str = "log";
/// Column family of consumer-group offsets.
pub(crate) const CF_OFFSETS: &str = "offsets";
/// Column family of pipeline state.
pub(crate) const CF_STATE: &str = "state";
/// Column family of metadata (topics, plugins, pipelines).
pub(crate) const CF_META: &str = "meta";
/// Column family of queue messages (the queue module owns its key layout).
pub(crate) const CF_QUEUES: &str = "queues";

/// Records read from one partition, with its bounds at the time of the read.
#[derive(Debug, Default, Clone)]
pub struct Fetched {
    /// The records, in offset order.
    pub records: Vec<StoredRecord>,
    /// The partition's first offset still stored.
    pub log_start: u64,
    /// One past the partition's last offset.
    pub high_watermark: u64,
}

/// How the store is opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Directory of the RocksDB database.
    pub path: PathBuf,
    /// Durability of topics created without one.
    pub default_durability: Durability,
    /// Open even if the WAL is damaged, keeping what precedes the damage (point-in-time
    /// recovery). Without it a damaged WAL is refused with [`StoreError::DamagedWal`].
    pub recover_wal: bool,
    /// Where the write-ahead log lives, if not beside the database: on a device of its own,
    /// the group commit's fsync does not queue behind flushes and compactions (BENCHMARKS.md,
    /// the latency tail). Fixed when the database is created ([`StoreError::WalDirMismatch`]).
    pub wal_dir: Option<PathBuf>,
    /// Free bytes kept in the data (and WAL) directory: below them appends are refused with
    /// [`StoreError::DiskFull`] until space returns (0: never refuse).
    pub min_free_bytes: u64,
}

/// The store. Cheap to share (`Arc<Rocks>`); reads run on the caller's thread, writes on the
/// group-commit thread.
pub struct Rocks {
    db: Arc<DB>,
    topics: Arc<RwLock<Topics>>,
    writer: writer::Handle,
    poison: Arc<OnceLock<String>>,
    default_durability: Durability,
    path: PathBuf,
    stats: Arc<writer::WriteStats>,
    space: Arc<space::Space>,
}

/// Topics by name and by id; replaced wholesale under the lock on create and delete.
#[derive(Default)]
pub(crate) struct Topics {
    by_name: HashMap<String, Arc<Topic>>,
    by_id: HashMap<u32, Arc<Topic>>,
}

impl Rocks {
    /// Open (or create) the store at `opts.path`, recover every partition's offsets from the
    /// log and start the group-commit thread.
    pub fn open(opts: StoreOptions) -> Result<Rocks> {
        std::fs::create_dir_all(&opts.path)
            .map_err(|e| StoreError::Invalid(format!("cannot create data dir {}: {e}", opts.path.display())))?;
        sync_dirs(&opts.path)?;
        let wal_dir = wal_dir(&opts.path, opts.wal_dir.as_deref())?;
        if let Some(dir) = &wal_dir {
            sync_dirs(dir)?;
        }
        let db = Arc::new(open_checked(&opts.path, wal_dir.as_deref(), opts.recover_wal)?);
        check_format(&db)?;
        let (topics, next_topic_id) = load_topics(&db)?;
        let topics = Arc::new(RwLock::new(topics));
        let poison = Arc::new(OnceLock::new());
        let stats = Arc::new(writer::WriteStats::default());
        let dirs = std::iter::once(opts.path.clone()).chain(wal_dir.clone()).collect();
        let space = Arc::new(space::Space::new(dirs, opts.min_free_bytes));
        let writer =
            writer::spawn(db.clone(), topics.clone(), poison.clone(), next_topic_id, stats.clone(), space.clone())?;
        let default_durability = opts.default_durability;
        Ok(Rocks { db, topics, writer, poison, default_durability, path: opts.path, stats, space })
    }

    /// Whether appends may be written now (free space above the floor).
    pub fn check_space(&self) -> Result<()> {
        self.space.check()
    }

    /// `(free bytes in the fullest directory, the floor, refusing appends)`, as of the last reading.
    pub fn space(&self) -> (u64, u64, bool) {
        (self.space.free_bytes(), self.space.min_free_bytes(), self.space.is_full())
    }

    /// Directory of the database.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Durability of topics created without one.
    pub fn default_durability(&self) -> Durability {
        self.default_durability
    }

    /// What the group-commit thread did since the server started.
    pub fn write_stats(&self) -> &writer::WriteStats {
        &self.stats
    }

    /// A RocksDB integer property: a column family's (e.g.
    /// `rocksdb.estimate-pending-compaction-bytes`) summed over column families when
    /// `per_cf`, else the database's (e.g. `rocksdb.is-write-stopped`). 0 if unknown.
    pub fn rocksdb_property(&self, name: &str, per_cf: bool) -> u64 {
        if !per_cf {
            return self.db.property_int_value(name).ok().flatten().unwrap_or(0);
        }
        [CF_LOG, CF_META, CF_OFFSETS, CF_QUEUES, CF_STATE]
            .iter()
            .filter_map(|cf| self.db.property_int_value_cf(self.cf(cf), name).ok().flatten())
            .sum()
    }

    /// The reason writes are refused, if a write failed.
    pub fn poisoned(&self) -> Option<&str> {
        self.poison.get().map(String::as_str)
    }

    /// Create a topic (its name and settings were checked by the broker).
    pub async fn create_topic(&self, name: &str, config: TopicConfig) -> Result<Arc<Topic>> {
        self.writer.create_topic(name.to_string(), config).await
    }

    /// Delete a topic, its records and every group's offsets in it.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let topic = self.topic(name)?;
        self.writer.delete_topic(topic).await
    }

    /// The topic named `name`.
    pub fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.topics
            .read()
            .expect("topics lock")
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::UnknownTopic(name.to_string()))
    }

    /// The topic with id `id`, if it still exists.
    pub fn topic_by_id(&self, id: u32) -> Option<Arc<Topic>> {
        self.topics.read().expect("topics lock").by_id.get(&id).cloned()
    }

    /// Every topic, by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut all: Vec<_> = self.topics.read().expect("topics lock").by_name.values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Submit a commit to the group-commit thread. Submission order is commit order: call this
    /// synchronously in the order requests arrived, then await the returned future.
    pub fn submit(&self, commit: Commit) -> impl Future<Output = Result<Receipt>> + Send + 'static {
        self.writer.submit(commit, self.default_durability)
    }

    /// Append records to one partition of a topic and wait until they are durable.
    pub async fn append(&self, topic: &Arc<Topic>, partition: u32, records: Vec<NewRecord>) -> Result<u64> {
        let commit = Commit { appends: vec![Append { topic: topic.clone(), partition, records }], ..Commit::default() };
        let receipt = self.submit(commit).await?;
        Ok(receipt.first_offsets[0])
    }

    /// Records of `partition` from offset `from` (or the log start, if retention removed
    /// `from`), at most `max_records` and about `max_bytes`, never past the high watermark.
    pub fn read(
        &self,
        topic: &Topic,
        partition: u32,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredRecord>> {
        let p = topic.partition(partition)?;
        let end = p.high_watermark();
        let start = from.max(p.log_start());
        if start >= end || max_records == 0 {
            return Ok(Vec::new());
        }
        if topic.config.ephemeral {
            return Ok(p.read_ephemeral(start, max_records));
        }
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(keys::log_key(topic.id, partition, end).to_vec());
        // Reads are sequential scans of recent data: no point polluting the block cache
        // with a long backlog read once.
        ro.fill_cache(start + 1024 >= end);
        let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_LOG), ro);
        it.seek(keys::log_key(topic.id, partition, start));
        let mut out = Vec::with_capacity(max_records.min((end - start) as usize));
        let mut bytes = 0usize;
        while it.valid() && out.len() < max_records && (bytes < max_bytes || out.is_empty()) {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            let offset = keys::log_key_offset(k).ok_or_else(|| corrupt(topic, partition, "short key"))?;
            bytes += v.len();
            let rec = record::decode(offset, Bytes::copy_from_slice(v)).map_err(|e| corrupt(topic, partition, &e))?;
            out.push(rec);
            it.next();
        }
        it.status()?;
        topic.count_read(out.len(), bytes);
        Ok(out)
    }

    /// The first offset of `partition` whose append time is at or after `timestamp_ms`, or the
    /// high watermark if none is. Timestamps are monotonic per partition, so this bisects.
    pub fn offset_for_time(&self, topic: &Topic, partition: u32, timestamp_ms: u64) -> Result<u64> {
        let p = topic.partition(partition)?;
        let (mut lo, mut hi) = (p.log_start(), p.high_watermark());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let key = keys::log_key(topic.id, partition, mid);
            let ts = match self.db.get_pinned_cf(self.cf(CF_LOG), key)? {
                Some(v) => record::timestamp_of(&v).map_err(|e| corrupt(topic, partition, &e))?,
                // Deleted by retention meanwhile: everything before it is older.
                None => 0,
            };
            if ts < timestamp_ms { lo = mid + 1 } else { hi = mid }
        }
        Ok(lo)
    }

    /// The committed next offset of `group` in each partition of `topic` (`None` = never
    /// committed).
    pub fn committed(&self, group: &str, topic: &Topic) -> Result<Vec<Option<u64>>> {
        let cf = self.cf(CF_OFFSETS);
        let keys: Vec<_> = (0..topic.partition_count()).map(|p| keys::offset_key(group, topic.id, p)).collect();
        self.db
            .multi_get_cf(keys.iter().map(|k| (cf, k.as_slice())))
            .into_iter()
            .map(|r| r?.map(|v| decode_u64(&v)).transpose())
            .collect()
    }

    /// Every group with a committed offset, with the topic ids it has offsets in.
    pub fn groups(&self) -> Result<Vec<(String, Vec<u32>)>> {
        let mut out: Vec<(String, Vec<u32>)> = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_OFFSETS), IteratorMode::Start) {
            let (k, _) = item?;
            let Some((group, topic, _)) = keys::parse_offset_key(&k) else {
                continue;
            };
            match out.last_mut() {
                Some((g, topics)) if g == group => {
                    if topics.last() != Some(&topic) {
                        topics.push(topic);
                    }
                }
                _ => out.push((group.to_string(), vec![topic])),
            }
        }
        Ok(out)
    }

    /// A state value (raw key in the `state` CF), unless absent or expired at `now_ms`.
    pub fn state_get(&self, key: &[u8], now_ms: u64) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_pinned_cf(self.cf(CF_STATE), key)?.and_then(|v| writer::decode_state(&v, now_ms)))
    }

    /// Live state entries whose raw key starts with `prefix`, at most `limit`.
    pub fn state_scan(&self, prefix: &[u8], now_ms: u64, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_STATE), IteratorMode::From(prefix, Direction::Forward)) {
            let (k, v) = item?;
            if !k.starts_with(prefix) || out.len() >= limit {
                break;
            }
            if let Some(v) = writer::decode_state(&v, now_ms) {
                out.push((k.to_vec(), v));
            }
        }
        Ok(out)
    }

    /// Every entry of the `queues` column family under `prefix`, in key order (recovery).
    pub fn queue_scan(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_QUEUES), IteratorMode::From(prefix, Direction::Forward)) {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// One entry of the `queues` column family.
    pub fn queue_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(CF_QUEUES), key)?)
    }

    /// A metadata value.
    pub fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(CF_META), key.as_bytes())?)
    }

    /// Every metadata entry whose key starts with `prefix`, in key order.
    pub fn meta_scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        meta_scan(&self.db, prefix)
    }

    /// Durably write metadata entries (`None` deletes), atomically.
    pub async fn meta_write(&self, entries: Vec<(String, Option<Vec<u8>>)>) -> Result<()> {
        let commit = Commit { meta: entries, durability: Some(Durability::Sync), ..Commit::default() };
        self.submit(commit).await.map(drop)
    }

    /// Delete all state under `prefix` (a pipeline's, or one step's) durably.
    pub async fn delete_state_prefix(&self, prefix: Vec<u8>) -> Result<()> {
        let commit =
            Commit { delete_state_prefixes: vec![prefix], durability: Some(Durability::Sync), ..Commit::default() };
        self.submit(commit).await.map(drop)
    }

    /// Apply every topic's retention: delete records older than `retention_ms` or beyond
    /// `retention_bytes`, always keeping each partition's last record. Returns records deleted.
    pub async fn enforce_retention(&self, now_ms: u64) -> Result<u64> {
        let mut deleted = 0;
        for topic in self.topics().into_iter().filter(|t| !t.config.ephemeral) {
            for p in 0..topic.partition_count() {
                let Some(new_start) = self.retention_point(&topic, p, now_ms)? else {
                    continue;
                };
                deleted += self.writer.truncate(topic.clone(), p, new_start).await?;
            }
        }
        Ok(deleted)
    }

    /// Where retention moves the start of a partition, if anywhere.
    fn retention_point(&self, topic: &Topic, partition: u32, now_ms: u64) -> Result<Option<u64>> {
        let p = topic.partition(partition)?;
        let (start, end) = (p.log_start(), p.high_watermark());
        if end <= start + 1 {
            return Ok(None);
        }
        let mut point = start;
        if let Some(ms) = topic.config.retention_ms {
            point = point.max(self.offset_for_time(topic, partition, now_ms.saturating_sub(ms))?);
        }
        if let Some(max) = topic.config.retention_bytes {
            point = point.max(self.size_cut(topic, partition, start, end, max));
        }
        // Keep the last record: it carries the next offset across restarts.
        let point = point.min(end - 1);
        Ok((point > start).then_some(point))
    }

    /// The smallest offset such that [offset, end) is within `max_bytes` (approximately).
    fn size_cut(&self, topic: &Topic, partition: u32, start: u64, end: u64, max_bytes: u64) -> u64 {
        let size = |from: u64| -> u64 {
            let (a, b) = (keys::log_key(topic.id, partition, from), keys::log_key(topic.id, partition, end));
            let ranges = [rocksdb::Range::new(&a, &b)];
            // Flushed data only: memtables are bounded and small next to a retention limit.
            self.db.get_approximate_sizes_cf(self.cf(CF_LOG), &ranges)[0]
        };
        if size(start) <= max_bytes {
            return start;
        }
        let (mut lo, mut hi) = (start, end);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if size(mid) > max_bytes { lo = mid + 1 } else { hi = mid }
        }
        lo
    }

    /// Flush memtables and the WAL: used by graceful shutdown so a restart replays nothing.
    pub fn flush(&self) -> Result<()> {
        self.db.flush_wal(true)?;
        Ok(())
    }

    /// Stop the group-commit thread after it drains what was submitted.
    pub fn close(&self) {
        self.writer.close();
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(name).expect("column family created at open")
    }
}

impl Drop for Rocks {
    fn drop(&mut self) {
        self.writer.close();
    }
}

fn corrupt(topic: &Topic, partition: u32, why: &str) -> StoreError {
    StoreError::Corrupt { what: format!("topic `{}` partition {partition}", topic.name), why: why.to_string() }
}

fn decode_u64(v: &[u8]) -> Result<u64> {
    let b: [u8; 8] =
        v.try_into().map_err(|_| StoreError::Corrupt { what: "offset".into(), why: format!("{} bytes", v.len()) })?;
    Ok(u64::from_be_bytes(b))
}

/// Open, replaying the WAL completely if it is whole. A damaged *tail* — the last record cut
/// short, as a crash or a full disk leaves it; a record the disk never completed was never
/// acknowledged — is dropped with a warning. Damage before the tail stops the start with
/// [`StoreError::DamagedWal`] unless `recover_wal` allows point-in-time recovery.
fn open_checked(path: &Path, wal_dir: Option<&Path>, recover_wal: bool) -> Result<DB> {
    if recover_wal {
        return open_db(path, wal_dir, rocksdb::DBRecoveryMode::PointInTime);
    }
    match open_db(path, wal_dir, rocksdb::DBRecoveryMode::AbsoluteConsistency) {
        Err(StoreError::Rocks(e)) if e.kind() == rocksdb::ErrorKind::Corruption => {
            match open_db(path, wal_dir, rocksdb::DBRecoveryMode::TolerateCorruptedTailRecords) {
                Ok(db) => {
                    tracing::warn!(
                        path = %path.display(),
                        detail = %e,
                        "the write-ahead log had a damaged tail (an incomplete last write, as a crash or a full disk leaves); it was dropped"
                    );
                    Ok(db)
                }
                Err(e) => Err(damaged_wal(e, path)),
            }
        }
        Err(StoreError::Rocks(e)) if e.to_string().contains("Column family not found") => Err(damaged_manifest(
            path,
            format!(
                "{e} (the database lists fewer column families than weir wrote; an empty one made in its place would serve as if its data had never been written)"
            ),
        )),
        other => other,
    }
}

/// Make `dir` and the entries leading to it durable: fsync it and each ancestor, so a power
/// loss cannot take a data directory just created (with everything RocksDB then synced in it)
/// away with its parent's unsynced entry. Once per start; cheap.
fn sync_dirs(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| StoreError::Invalid(format!("cannot fsync directory {}: {e}", dir.display())))?;
    // Ancestors best effort: one a server may not open (mode 0711) or a filesystem that does
    // not fsync directories must not stop a start that worked before.
    for d in dir.ancestors().skip(1).filter(|d| !d.as_os_str().is_empty()) {
        if let Err(e) = std::fs::File::open(d).and_then(|f| f.sync_all()) {
            tracing::debug!(dir = %d.display(), error = %e, "cannot fsync an ancestor of the data directory");
        }
    }
    Ok(())
}

/// Where the database at `path` keeps its write-ahead log: `asked` for a new database
/// (recorded in `WAL_DIR` beside it), and for an existing one the directory it was created
/// with, or an error naming it when `asked` differs — RocksDB opened with its log elsewhere
/// would start without replaying it.
fn wal_dir(path: &Path, asked: Option<&Path>) -> Result<Option<PathBuf>> {
    let marker = path.join("WAL_DIR");
    let io =
        |what: &str, p: &Path, e: std::io::Error| StoreError::Invalid(format!("cannot {what} {}: {e}", p.display()));
    let asked = match asked {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| io("create the WAL directory", dir, e))?;
            Some(dir.canonicalize().map_err(|e| io("resolve the WAL directory", dir, e))?)
        }
        None => None,
    };
    let recorded = match std::fs::read_to_string(&marker) {
        Ok(text) => Some(PathBuf::from(text.trim_end())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io("read", &marker, e)),
    };
    let exists = path.join("CURRENT").exists();
    if !exists {
        match &asked {
            Some(dir) => {
                // Another database's logs there would be read as this one's.
                let used = std::fs::read_dir(dir).map_err(|e| io("read", dir, e))?.next().is_some();
                if used {
                    return Err(StoreError::Invalid(format!(
                        "the WAL directory {} is not empty; give each data directory a WAL directory of its own",
                        dir.display()
                    )));
                }
                std::fs::write(&marker, dir.display().to_string())
                    .and_then(|()| std::fs::File::open(&marker)?.sync_all())
                    .map_err(|e| io("write", &marker, e))?;
                sync_dirs(path)?;
            }
            // A marker without a database is left from one that is gone.
            None if recorded.is_some() => std::fs::remove_file(&marker).map_err(|e| io("remove", &marker, e))?,
            None => {}
        }
        return Ok(asked);
    }
    if recorded != asked {
        let name =
            |d: &Option<PathBuf>| d.as_ref().map_or("the database directory".to_string(), |d| d.display().to_string());
        let flag = recorded.as_ref().map_or("no --wal-dir".to_string(), |d| format!("--wal-dir {}", d.display()));
        return Err(StoreError::WalDirMismatch {
            path: path.display().to_string(),
            recorded: name(&recorded),
            given: name(&asked),
            flag,
        });
    }
    Ok(recorded)
}

/// The MANIFEST (the list of the database's files) is damaged: no recovery mode replays
/// around it, so the way out is a backup.
fn damaged_manifest(path: &Path, detail: String) -> StoreError {
    StoreError::Corrupt {
        what: format!("the MANIFEST of {}", path.display()),
        why: format!(
            "{}. Its MANIFEST is damaged and weir will not start on it; restore the data directory from a \
             backup (`weir doctor DATA_DIR` reports what else is damaged)",
            detail.trim_end_matches('.')
        ),
    }
}

/// A corruption reported while opening is a damaged write-ahead log (or worse): say so and
/// say how to recover.
fn damaged_wal(e: StoreError, path: &Path) -> StoreError {
    match e {
        StoreError::Rocks(r) if r.to_string().contains("MANIFEST") => damaged_manifest(path, r.to_string()),
        StoreError::Rocks(r) if r.kind() == rocksdb::ErrorKind::Corruption => {
            StoreError::DamagedWal { path: path.display().to_string(), detail: r.to_string() }
        }
        other => other,
    }
}

/// RocksDB tuned for an append-mostly log: big memtables so group commits rarely stall on
/// flushes, level compaction with dynamic level sizes, lz4 for the log.
///
/// `recovery` says how much WAL damage opening tolerates (see [`open_checked`]).
fn open_db(path: &Path, wal_dir: Option<&Path>, recovery: rocksdb::DBRecoveryMode) -> Result<DB> {
    let mut opts = Options::default();
    if let Some(dir) = wal_dir {
        opts.set_wal_dir(dir);
    }
    opts.set_wal_recovery_mode(recovery);
    opts.create_if_missing(true);
    // Only a new database gets its column families made: an existing one missing any has a
    // damaged MANIFEST, and an empty family made in its place would serve as if its data
    // (topics, offsets, state, queues) had never been written.
    opts.create_missing_column_families(!path.join("CURRENT").exists());
    opts.increase_parallelism(2);
    opts.set_max_background_jobs(2);
    opts.set_bytes_per_sync(1 << 20);
    // The WAL's writeback is started every MiB in the background, so a group commit's
    // fsync finds little left to write. On one disk the latency stage's p99.9 at 50,000
    // msg/s went from 11.9-66.8 ms (five runs) to 9.3-12.4 ms (three), the slowest group
    // commit from 25-250 ms to 25 ms (BENCHMARKS.md, "The tail on one disk").
    opts.set_wal_bytes_per_sync(1 << 20);
    // Let a WAL grow before forcing flushes of every column family.
    opts.set_max_total_wal_size(512 << 20);
    // Keep throughput steady under pressure rather than failing writes.
    opts.set_max_write_buffer_number(4);
    // Bounded memory: one memtable budget for every column family, and index and filter
    // blocks in a bounded cache rather than pinned per table file.
    opts.set_write_buffer_manager(&rocksdb::WriteBufferManager::new_write_buffer_manager(
        crate::limits::STORE_MEMTABLE_BYTES,
        false,
    ));
    let cache = rocksdb::Cache::new_lru_cache(crate::limits::STORE_BLOCK_CACHE_BYTES);
    let mut tables = rocksdb::BlockBasedOptions::default();
    tables.set_block_cache(&cache);
    tables.set_cache_index_and_filter_blocks(true);
    tables.set_pin_l0_filter_and_index_blocks_in_cache(true);
    opts.set_block_based_table_factory(&tables);
    let mut log = opts.clone();
    log.set_write_buffer_size(64 << 20);
    log.set_compression_type(rocksdb::DBCompressionType::Lz4);
    log.set_level_compaction_dynamic_level_bytes(true);
    let mut small = opts.clone();
    small.set_write_buffer_size(16 << 20);
    let mut state = small.clone();
    // Expired state entries (TTL) are already invisible to reads; compaction drops them.
    state.set_compaction_filter("weir-state-ttl", |_level, _key, value| {
        if writer::decode_state(value, crate::types::now_ms()).is_some() {
            rocksdb::compaction_filter::Decision::Keep
        } else {
            rocksdb::compaction_filter::Decision::Remove
        }
    });
    let cfs = vec![
        ColumnFamilyDescriptor::new(CF_LOG, log),
        ColumnFamilyDescriptor::new(CF_OFFSETS, small.clone()),
        ColumnFamilyDescriptor::new(CF_STATE, state),
        ColumnFamilyDescriptor::new(CF_META, small.clone()),
        ColumnFamilyDescriptor::new(CF_QUEUES, small),
    ];
    Ok(DB::open_cf_descriptors(&opts, path, cfs)?)
}

/// Write the format version into a new store; refuse a store of another version.
fn check_format(db: &DB) -> Result<()> {
    let meta = db.cf_handle(CF_META).expect("meta cf");
    match db.get_cf(meta, keys::meta::FORMAT)? {
        Some(v) => {
            let found = decode_u64(&v)? as u32;
            if found != FORMAT_VERSION {
                return Err(StoreError::Format { found, expected: FORMAT_VERSION });
            }
        }
        None => {
            let mut wo = rocksdb::WriteOptions::default();
            wo.set_sync(true);
            db.put_cf_opt(meta, keys::meta::FORMAT, u64::from(FORMAT_VERSION).to_be_bytes(), &wo)?;
        }
    }
    Ok(())
}

fn meta_scan(db: &DB, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let cf = db.cf_handle(CF_META).expect("meta cf");
    let mut out = Vec::new();
    for item in db.iterator_cf(cf, IteratorMode::From(prefix.as_bytes(), Direction::Forward)) {
        let (k, v) = item?;
        if !k.starts_with(prefix.as_bytes()) {
            break;
        }
        out.push((String::from_utf8_lossy(&k).into_owned(), v.to_vec()));
    }
    Ok(out)
}

/// Load every topic and recover each partition's log start, next offset and last timestamp.
fn load_topics(db: &DB) -> Result<(Topics, u32)> {
    let mut topics = Topics::default();
    for (key, value) in meta_scan(db, keys::meta::TOPICS)? {
        let rec: stored::TopicV1 = stored::decode(&key, &value)?;
        let partitions =
            (0..rec.config.partitions).map(|p| recover_partition(db, rec.id, p)).collect::<Result<Vec<_>>>()?;
        let topic = Arc::new(Topic::new(rec.id, rec.name, rec.config.into(), rec.created_ms, partitions));
        topics.by_id.insert(topic.id, topic.clone());
        topics.by_name.insert(topic.name.clone(), topic);
    }
    let cf = db.cf_handle(CF_META).expect("meta cf");
    let next_id = match db.get_cf(cf, keys::meta::TOPIC_SEQ)? {
        Some(v) => decode_u64(&v)? as u32,
        None => 1,
    };
    Ok((topics, next_id))
}

fn recover_partition(db: &DB, topic_id: u32, partition: u32) -> Result<Partition> {
    let cf = db.cf_handle(CF_LOG).expect("log cf");
    let lower = keys::log_key(topic_id, partition, 0);
    let upper = keys::log_key(topic_id, partition, u64::MAX);
    let mut it = db.raw_iterator_cf(cf);
    it.seek(lower);
    let first = match it.key() {
        Some(k) if it.valid() && k < upper.as_slice() => keys::log_key_offset(k),
        _ => None,
    };
    it.seek_for_prev(upper);
    let last = match (it.key(), it.value()) {
        (Some(k), Some(v)) if it.valid() && k >= lower.as_slice() => {
            let ts = record::timestamp_of(v)
                .map_err(|why| StoreError::Corrupt { what: format!("topic {topic_id} partition {partition}"), why })?;
            keys::log_key_offset(k).map(|o| (o, ts))
        }
        _ => None,
    };
    it.status()?;
    Ok(match (first, last) {
        (Some(first), Some((last, ts))) => Partition::new(first, last + 1, ts),
        _ => Partition::new(0, 0, 0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::now_ms;

    fn open(dir: &Path) -> Rocks {
        Rocks::open(StoreOptions {
            path: dir.to_path_buf(),
            default_durability: Durability::Os,
            recover_wal: false,
            wal_dir: None,
            min_free_bytes: 0,
        })
        .expect("open")
    }

    fn recs(n: usize) -> Vec<NewRecord> {
        (0..n).map(|i| NewRecord { value: Bytes::from(format!("v{i}")), ..NewRecord::default() }).collect()
    }

    #[tokio::test]
    async fn offsets_are_dense_and_survive_reopen() -> Result<()> {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = open(dir.path());
            let t = store.create_topic("t", TopicConfig { partitions: 2, ..TopicConfig::default() }).await?;
            assert_eq!(store.append(&t, 0, recs(3)).await?, 0);
            assert_eq!(store.append(&t, 0, recs(2)).await?, 3);
            assert_eq!(store.append(&t, 1, recs(1)).await?, 0);
            store.close();
        }
        let store = open(dir.path());
        let t = store.topic("t")?;
        assert_eq!(store.append(&t, 0, recs(1)).await?, 5, "the next offset is recovered from the log");
        let read = store.read(&t, 0, 0, 100, usize::MAX)?;
        assert_eq!(read.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(read[4].value, Bytes::from("v1"));
        Ok(())
    }

    #[tokio::test]
    async fn retention_by_age_keeps_the_last_record_and_its_offset() -> Result<()> {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let config = TopicConfig { retention_ms: Some(1_000), ..TopicConfig::default() };
        let t = store.create_topic("t", config).await?;
        store.append(&t, 0, recs(10)).await?;
        assert_eq!(store.enforce_retention(now_ms()).await?, 0, "nothing is old yet");
        // An hour later everything is past retention, but the last record stays.
        assert_eq!(store.enforce_retention(now_ms() + 3_600_000).await?, 9);
        let p = t.partition(0)?;
        assert_eq!((p.log_start(), p.high_watermark()), (9, 10));
        assert_eq!(store.read(&t, 0, 0, 100, usize::MAX)?.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![9]);
        store.close();
        drop(store);
        let store = open(dir.path());
        let t = store.topic("t")?;
        assert_eq!(store.append(&t, 0, recs(1)).await?, 10, "offsets continue after retention and a restart");
        assert_eq!(t.partition(0)?.log_start(), 9);
        Ok(())
    }

    #[tokio::test]
    async fn seeking_by_time_bisects_monotonic_timestamps() -> Result<()> {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let t = store.create_topic("t", TopicConfig::default()).await?;
        store.append(&t, 0, recs(5)).await?;
        let ts = store.read(&t, 0, 0, 1, usize::MAX)?[0].timestamp_ms;
        assert_eq!(store.offset_for_time(&t, 0, 0)?, 0);
        assert_eq!(store.offset_for_time(&t, 0, ts + 3_600_000)?, 5, "past the end: the high watermark");
        Ok(())
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// A step: append `n` records to a partition, reopen the store, or apply retention that
    /// considers everything older than `now + age` expired.
    #[derive(Debug, Clone)]
    enum Op {
        Append(u32, usize),
        Reopen,
        Retain(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u32..3, 1usize..20).prop_map(|(p, n)| Op::Append(p, n)),
            1 => Just(Op::Reopen),
            1 => (0u64..3_600_000).prop_map(Op::Retain),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

        /// Offsets stay dense and increasing through appends, retention and restarts; retention
        /// never removes a partition's last record; what it keeps is readable.
        #[test]
        fn offsets_are_dense_monotonic_and_survive_restarts(ops in proptest::collection::vec(op(), 1..25)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let open = || Rocks::open(StoreOptions { path: dir.path().to_path_buf(), default_durability: Durability::Os, recover_wal: false, wal_dir: None, min_free_bytes: 0 }).unwrap();
                let config = TopicConfig { partitions: 3, retention_ms: Some(1), ..TopicConfig::default() };
                let mut store = open();
                store.create_topic("t", config).await.unwrap();
                let mut next = [0u64; 3];
                for op in ops {
                    match op {
                        Op::Append(p, n) => {
                            let t = store.topic("t").unwrap();
                            let recs = (0..n).map(|i| NewRecord { value: Bytes::from(format!("{p}-{}", next[p as usize] + i as u64)), ..NewRecord::default() }).collect();
                            let first = store.append(&t, p, recs).await.unwrap();
                            prop_assert_eq!(first, next[p as usize], "offsets continue densely");
                            next[p as usize] += n as u64;
                        }
                        Op::Reopen => {
                            store.close();
                            drop(store);
                            store = open();
                        }
                        Op::Retain(age) => {
                            store.enforce_retention(crate::types::now_ms() + age).await.unwrap();
                        }
                    }
                    let t = store.topic("t").unwrap();
                    for p in 0..3u32 {
                        let part = t.partition(p).unwrap();
                        prop_assert_eq!(part.high_watermark(), next[p as usize]);
                        if next[p as usize] > 0 {
                            prop_assert!(part.log_start() < next[p as usize], "retention kept the last record");
                        }
                        let read = store.read(&t, p, 0, 10_000, usize::MAX).unwrap();
                        let offsets: Vec<u64> = read.iter().map(|r| r.offset).collect();
                        let want: Vec<u64> = (part.log_start()..next[p as usize]).collect();
                        prop_assert_eq!(offsets, want);
                        for r in &read {
                            let want = format!("{p}-{}", r.offset);
                            prop_assert_eq!(&r.value[..], want.as_bytes());
                        }
                    }
                }
                Ok(())
            })?;
        }
    }
}

mirror_enum!(stored::DurabilityV1 => Durability { Sync, Os });
mirror_enum!(stored::PartitionerV1 => Partitioner { Hash, Murmur2 });
mirror_enum!(stored::ValidationV1 => Validation { Id, Full, None });
mirror_enum!(stored::SubjectStrategyV1 => SubjectStrategy { TopicName, RecordName, TopicRecordName });
mirror!(stored::TopicConfigV1 => TopicConfig {
    partitions, durability: opt, retention_ms, retention_bytes, max_message_bytes, ephemeral, partitioner: into,
    key_schema, value_schema, validation: into, subject_strategy: into
});
