//! The store under the broker: one interface, two implementations. On a single node it is
//! RocksDB ([`crate::storage`]); in a cluster it is NATS JetStream ([`crate::cluster::store`]).
//! The broker's areas decide every rule once — names, bounds, validation, access, atomicity,
//! limits — and call this for what is durable; the store executes and decides nothing.
//!
//! What each implementation can and cannot promise differs in one place only: a [`Commit`]
//! is one atomic write in RocksDB; in JetStream each partition's appends are atomic on their
//! own, and the parts of a commit land in a fixed order (RELIABILITY.md, "Cluster mode").

mod meta;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::Either;

use crate::storage::Rocks;
pub use crate::storage::{
    Append, Commit, Fetched, NewRecord, OffsetCommit, Receipt, Result, StateWrite, StoreError, StoreOptions,
    StoredRecord, Topic, WriteStats, keys,
};
use crate::types::{Durability, TopicConfig};
pub(crate) use meta::record;
pub use meta::{Expect, MetaWrite, Raw, Record};

/// The store: RocksDB or JetStream. Cheap to share (`Arc<Store>`).
pub struct Store {
    backend: Backend,
    /// Serialises a single node's metadata writes that expect something of a key (creates,
    /// read-modify-writes): the check and the write are then one step. JetStream checks
    /// expectations itself.
    meta_lock: tokio::sync::Mutex<()>,
}

enum Backend {
    Local(Rocks),
    Cluster(crate::cluster::store::ClusterStore),
}

impl Store {
    /// The single-node store: open (or create) the RocksDB database.
    pub fn local(opts: StoreOptions) -> Result<Store> {
        Ok(Store { backend: Backend::Local(Rocks::open(opts)?), meta_lock: Default::default() })
    }

    /// The cluster store.
    pub fn clustered(store: crate::cluster::store::ClusterStore) -> Store {
        Store { backend: Backend::Cluster(store), meta_lock: Default::default() }
    }

    /// The cluster this store is in (`None`: a single node). For placement only — which node
    /// runs what — never for a rule.
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        match &self.backend {
            Backend::Local(_) => None,
            Backend::Cluster(c) => Some(c.cluster()),
        }
    }

    /// The RocksDB database on this node: the whole store on a single node, the cache of
    /// what this node runs (pipeline state of its partitions, queues it coordinates) in a
    /// cluster.
    fn rocks(&self) -> &Rocks {
        match &self.backend {
            Backend::Local(r) => r,
            Backend::Cluster(c) => c.cache(),
        }
    }

    /// Directory of this node's database.
    pub fn path(&self) -> &Path {
        self.rocks().path()
    }

    /// Durability of topics created without one.
    pub fn default_durability(&self) -> Durability {
        self.rocks().default_durability()
    }

    /// What this node's group-commit thread did since the server started.
    pub fn write_stats(&self) -> &WriteStats {
        self.rocks().write_stats()
    }

    /// A RocksDB integer property of this node's database (see [`Rocks::rocksdb_property`]).
    pub fn rocksdb_property(&self, name: &str, per_cf: bool) -> u64 {
        self.rocks().rocksdb_property(name, per_cf)
    }

    /// The reason writes are refused, if a write failed.
    pub fn poisoned(&self) -> Option<&str> {
        self.rocks().poisoned()
    }

    /// Whether data may be added now: refused with [`StoreError::DiskFull`] below the free
    /// space floor (single node; a cluster's data lives in JetStream, which has its own).
    pub fn check_space(&self) -> Result<()> {
        match &self.backend {
            Backend::Local(r) => r.check_space(),
            Backend::Cluster(_) => Ok(()),
        }
    }

    /// `(free bytes, floor, refusing)` of this node's data directory, as last read.
    pub fn space(&self) -> (u64, u64, bool) {
        self.rocks().space()
    }

    // ---- topics ----

    /// Create a topic (the broker has checked its name and settings).
    pub async fn create_topic(&self, name: &str, config: TopicConfig) -> Result<Arc<Topic>> {
        match &self.backend {
            Backend::Local(r) => r.create_topic(name, config).await,
            Backend::Cluster(c) => c.create_topic(name, config).await,
        }
    }

    /// Delete a topic, its records and every group's offsets in it.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        match &self.backend {
            Backend::Local(r) => r.delete_topic(name).await,
            Backend::Cluster(c) => c.delete_topic(name).await,
        }
    }

    /// The topic named `name` as this node knows it now (in a cluster, a topic created on
    /// another node a moment ago may not be known yet: ask [`Store::find_topic`]).
    pub fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        match &self.backend {
            Backend::Local(r) => r.topic(name),
            Backend::Cluster(c) => c.cached_topic(name),
        }
    }

    /// The topic named `name`, asking the store itself when this node does not know it.
    pub async fn find_topic(&self, name: &str) -> Result<Arc<Topic>> {
        match &self.backend {
            Backend::Local(r) => r.topic(name),
            Backend::Cluster(c) => c.find_topic(name).await,
        }
    }

    /// [`Store::find_topic`] for a blocking caller (a worker checking where a plugin routed).
    pub fn topic_blocking(&self, name: &str) -> Result<Arc<Topic>> {
        match &self.backend {
            Backend::Local(r) => r.topic(name),
            Backend::Cluster(c) => {
                c.cached_topic(name).or_else(|_| tokio::runtime::Handle::current().block_on(c.find_topic(name)))
            }
        }
    }

    /// Every topic, by name.
    pub async fn topics(&self) -> Result<Vec<Arc<Topic>>> {
        match &self.backend {
            Backend::Local(r) => Ok(r.topics()),
            Backend::Cluster(c) => c.topics().await,
        }
    }

    /// Every topic this node knows now, by name (for metrics: no round trip).
    pub fn known_topics(&self) -> Vec<Arc<Topic>> {
        match &self.backend {
            Backend::Local(r) => r.topics(),
            Backend::Cluster(c) => c.known_topics(),
        }
    }

    /// `(log start, high watermark)` of partition `p`.
    pub async fn bounds(&self, topic: &Topic, p: u32) -> Result<(u64, u64)> {
        match &self.backend {
            Backend::Local(_) => topic.partition(p).map(|part| (part.log_start(), part.high_watermark())),
            Backend::Cluster(c) => c.bounds(topic, p).await,
        }
    }

    /// `(log start, high watermark)` of every partition.
    pub async fn all_bounds(&self, topic: &Topic) -> Result<Vec<(u64, u64)>> {
        let mut out = Vec::with_capacity(topic.partition_count() as usize);
        for p in 0..topic.partition_count() {
            out.push(self.bounds(topic, p).await?);
        }
        Ok(out)
    }

    /// Records of partition `p` from `from` (or the log start), at most `max_records` and
    /// about `max_bytes`, with the partition's bounds.
    pub async fn read(
        &self,
        topic: &Topic,
        p: u32,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Fetched> {
        match &self.backend {
            Backend::Local(r) => {
                let records = r.read(topic, p, from, max_records, max_bytes)?;
                let part = topic.partition(p)?;
                Ok(Fetched { records, log_start: part.log_start(), high_watermark: part.high_watermark() })
            }
            Backend::Cluster(c) => c.read(topic, p, from, max_records, max_bytes).await,
        }
    }

    /// Up to `max_records` records of partition `p` from `from`, for a blocking caller (a
    /// worker re-running a batch one message at a time).
    pub fn read_blocking(&self, topic: &Topic, p: u32, from: u64, max_records: usize) -> Result<Vec<StoredRecord>> {
        match &self.backend {
            Backend::Local(r) => r.read(topic, p, from, max_records, usize::MAX),
            Backend::Cluster(c) => {
                let read = c.read(topic, p, from, max_records, usize::MAX);
                Ok(tokio::runtime::Handle::current().block_on(read)?.records)
            }
        }
    }

    /// Wait until partition `p` holds a record at `offset` or later, or `timeout` passes.
    /// Returns whether one is there.
    pub async fn wait_for(&self, topic: &Arc<Topic>, p: u32, offset: u64, timeout: Duration) -> bool {
        match &self.backend {
            Backend::Local(_) => match topic.partition(p) {
                Ok(part) => part.wait_for(offset, timeout).await,
                Err(_) => false,
            },
            Backend::Cluster(c) => c.wait_for(topic, p, offset, timeout).await,
        }
    }

    /// The first offset of partition `p` appended at or after `timestamp_ms` (the high
    /// watermark if none).
    pub async fn offset_for_time(&self, topic: &Topic, p: u32, timestamp_ms: u64) -> Result<u64> {
        match &self.backend {
            Backend::Local(r) => r.offset_for_time(topic, p, timestamp_ms),
            Backend::Cluster(c) => c.offset_for_time(topic, p, timestamp_ms).await,
        }
    }

    /// Submit a commit. Submission order is commit order on a single node: call this in the
    /// order requests arrived, then await the returned future.
    pub fn submit(&self, commit: Commit) -> impl Future<Output = Result<Receipt>> + Send + 'static {
        match &self.backend {
            Backend::Local(r) => Either::Left(r.submit(commit)),
            Backend::Cluster(c) => Either::Right(c.submit(commit)),
        }
    }

    /// Append records to one partition and wait until they are durable; the first offset.
    pub async fn append(&self, topic: &Arc<Topic>, partition: u32, records: Vec<NewRecord>) -> Result<u64> {
        let commit = Commit { appends: vec![Append { topic: topic.clone(), partition, records }], ..Commit::default() };
        Ok(self.submit(commit).await?.first_offsets[0])
    }

    /// Apply every topic's retention (JetStream applies it itself: nothing to do there).
    pub async fn enforce_retention(&self, now_ms: u64) -> Result<u64> {
        match &self.backend {
            Backend::Local(r) => r.enforce_retention(now_ms).await,
            Backend::Cluster(_) => Ok(0),
        }
    }

    // ---- consumer groups ----

    /// The committed next offset of `group` in each partition of `topic`.
    pub async fn committed(&self, group: &str, topic: &Topic) -> Result<Vec<Option<u64>>> {
        match &self.backend {
            Backend::Local(r) => r.committed(group, topic),
            Backend::Cluster(c) => c.committed(group, topic).await,
        }
    }

    /// Every group with a committed offset, with the topics it has offsets in.
    pub async fn groups(&self) -> Result<Vec<(String, Vec<String>)>> {
        match &self.backend {
            Backend::Local(r) => Ok(r
                .groups()?
                .into_iter()
                .map(|(g, ids)| {
                    (g, ids.into_iter().filter_map(|id| r.topic_by_id(id)).map(|t| t.name.clone()).collect())
                })
                .collect()),
            Backend::Cluster(c) => c.groups().await,
        }
    }

    // ---- metadata ----

    /// The record at `key`.
    pub async fn meta_get<R: Record>(&self, key: &str) -> Result<Option<R>> {
        match &self.backend {
            Backend::Local(r) => r.meta_get(key)?.map(|v| R::from_disk(key, &v)).transpose(),
            Backend::Cluster(c) => c.meta_get(key).await?.map(|v| R::from_cluster(key, &v)).transpose(),
        }
    }

    /// The record at `key` as this node knows it now, without a round trip (in a cluster,
    /// possibly a moment behind): for blocking callers.
    pub fn meta_get_now<R: Record>(&self, key: &str) -> Result<Option<R>> {
        match &self.backend {
            Backend::Local(r) => r.meta_get(key)?.map(|v| R::from_disk(key, &v)).transpose(),
            Backend::Cluster(c) => c.meta_get_now(key)?.map(|v| R::from_cluster(key, &v)).transpose(),
        }
    }

    /// Every record whose key starts with `prefix`, in key order.
    pub async fn meta_scan<R: Record>(&self, prefix: &str) -> Result<Vec<(String, R)>> {
        let raw = match &self.backend {
            Backend::Local(r) => r.meta_scan(prefix)?,
            Backend::Cluster(c) => c.meta_scan(prefix).await?,
        };
        let decode = |k: &str, v: &[u8]| match &self.backend {
            Backend::Local(_) => R::from_disk(k, v),
            Backend::Cluster(_) => R::from_cluster(k, v),
        };
        raw.into_iter().map(|(k, v)| decode(&k, &v).map(|r| (k, r))).collect()
    }

    /// Write metadata changes atomically, durably; refused whole ([`StoreError::Conflict`])
    /// if a key does not hold what its write expects.
    pub async fn meta_write(&self, writes: Vec<MetaWrite>) -> Result<()> {
        match &self.backend {
            Backend::Local(r) => {
                let _one = self.meta_lock.lock().await;
                for w in writes.iter().filter(|w| w.expect == Expect::Absent) {
                    if r.meta_get(&w.key)?.is_some() {
                        return Err(StoreError::Conflict(format!("{} exists already", w.key)));
                    }
                }
                r.meta_write(writes.into_iter().map(|w| (w.key, w.value.map(|(disk, _)| disk.to_vec()))).collect())
                    .await
            }
            Backend::Cluster(c) => c.meta_write(writes).await,
        }
    }

    /// Change the record at `key` with `change` (given what is there, it returns what to
    /// store, `None` to delete) as one atomic step: no other change of `key` comes between
    /// the read and the write. Returns what was stored.
    pub async fn meta_update<R, E>(
        &self,
        key: &str,
        mut change: impl FnMut(Option<R>) -> std::result::Result<Option<R>, E>,
    ) -> std::result::Result<Option<R>, E>
    where
        R: Record,
        E: From<StoreError>,
    {
        match &self.backend {
            Backend::Local(r) => {
                let _one = self.meta_lock.lock().await;
                let now = r.meta_get(key)?.map(|v| R::from_disk(key, &v)).transpose()?;
                let new = change(now)?;
                let write = match &new {
                    Some(rec) => MetaWrite::put(key, rec),
                    None => MetaWrite::delete(key),
                };
                r.meta_write(vec![(write.key, write.value.map(|(d, _)| d.to_vec()))]).await?;
                Ok(new)
            }
            Backend::Cluster(c) => loop {
                let (now, revision) = c.meta_entry(key).await?;
                let now = now.map(|v| R::from_cluster(key, &v)).transpose()?;
                let new = change(now)?;
                match c.meta_swap(key, new.as_ref().map(Record::to_cluster), revision).await {
                    Ok(()) => return Ok(new),
                    Err(StoreError::Conflict(_)) => continue,
                    Err(e) => return Err(e.into()),
                }
            },
        }
    }

    /// The next id of the sequence at `key` (from 1), taken once: ids are never reused, also
    /// when two nodes of a cluster take one at the same moment.
    pub async fn next_id(&self, key: &str) -> Result<u32> {
        let taken = self.meta_update::<u32, StoreError>(key, |n| Ok(Some(n.unwrap_or(1) + 1))).await?;
        Ok(taken.expect("an increment stores a number") - 1)
    }

    /// Wait until this node has seen every metadata change made anywhere before now; the
    /// sequence of the last (0 on a single node, where there is nowhere else).
    pub async fn sync(&self) -> Result<u64> {
        match &self.backend {
            Backend::Local(_) => Ok(0),
            Backend::Cluster(c) => c.sync().await,
        }
    }

    /// Metadata keys changed by any node as they arrive, each with its sequence, and the
    /// sequence seen so far (`None` on a single node, where every change is made by this
    /// process and applied where it is made).
    pub fn meta_changes(&self) -> Option<(tokio::sync::broadcast::Receiver<(String, u64)>, u64)> {
        match &self.backend {
            Backend::Local(_) => None,
            Backend::Cluster(c) => Some(c.meta_changes()),
        }
    }

    // ---- pipeline state (this node's database in both modes) ----

    /// A state value, unless absent or expired at `now_ms`.
    pub fn state_get(&self, key: &[u8], now_ms: u64) -> Result<Option<Vec<u8>>> {
        self.rocks().state_get(key, now_ms)
    }

    /// Live state entries under `prefix`, at most `limit`.
    pub fn state_scan(&self, prefix: &[u8], now_ms: u64, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.rocks().state_scan(prefix, now_ms, limit)
    }

    /// Delete all state under `prefix` here, durably.
    pub async fn delete_state_prefix(&self, prefix: Vec<u8>) -> Result<()> {
        self.rocks().delete_state_prefix(prefix).await
    }

    /// Delete the state under `delete_prefixes`, then write `state`, here only (a cluster
    /// node's cache of the partitions it runs).
    pub async fn cache_state(&self, state: Vec<StateWrite>, delete_prefixes: Vec<Vec<u8>>) -> Result<()> {
        if !delete_prefixes.is_empty() {
            let commit = Commit { delete_state_prefixes: delete_prefixes, ..Commit::default() };
            self.rocks().submit(commit).await?;
        }
        if !state.is_empty() {
            self.rocks().submit(Commit { state, ..Commit::default() }).await?;
        }
        Ok(())
    }

    // ---- queues (this node's database; a cluster node holds the queues it coordinates) ----

    /// Every entry of the queues' key space under `prefix`, in key order.
    pub fn queue_scan(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.rocks().queue_scan(prefix)
    }

    /// One entry of the queues' key space.
    pub fn queue_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.rocks().queue_get(key)
    }

    /// Cluster mode: this node starts (`true`) or stops coordinating the queues. Taking them
    /// over fences the previous coordinator out and loads the queues' state here.
    pub async fn hold_queues(&self, hold: bool) -> Result<()> {
        match &self.backend {
            Backend::Local(_) => Ok(()),
            Backend::Cluster(c) if hold => c.take_over_queues().await,
            Backend::Cluster(c) => {
                c.release_queues().await;
                Ok(())
            }
        }
    }

    /// Whether this node holds the queues (always on a single node).
    pub async fn holding_queues(&self) -> bool {
        match &self.backend {
            Backend::Local(_) => true,
            Backend::Cluster(c) => c.holding_queues().await,
        }
    }

    // ---- lifecycle ----

    /// Flush what is buffered (graceful shutdown).
    pub fn flush(&self) -> Result<()> {
        self.rocks().flush()
    }

    /// Stop writing after what was submitted.
    pub fn close(&self) {
        self.rocks().close()
    }
}
