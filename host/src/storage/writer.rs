//! The group-commit thread: the only writer of the database.
//!
//! It takes every job waiting in its queue (up to a count and byte budget), folds them into
//! one `WriteBatch`, writes it once — with fsync if any job asked for [`Durability::Sync`] —
//! then publishes the new high watermarks and answers every job. Concurrent producers thus
//! share one fsync; jobs that asked for [`Durability::Os`] in a group that fsyncs are
//! answered between the write and the fsync. Topic creation and deletion run alone, between groups, so their effect on
//! the topic map is ordered with the writes around them.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, RwLock};

use rocksdb::{DB, WriteBatch, WriteOptions};
use tokio::sync::{mpsc, oneshot};

use super::record::{self, NewRecord};
use super::{CF_LOG, CF_META, CF_OFFSETS, CF_QUEUES, CF_STATE, Result, StoreError, Topic, Topics, keys, stored};
use crate::limits;
use crate::types::{Durability, TopicConfig, now_ms};

/// Everything one request writes, committed atomically.
#[derive(Debug, Default)]
pub struct Commit {
    /// Records to append, each group to one partition.
    pub appends: Vec<Append>,
    /// State puts and deletes.
    pub state: Vec<StateWrite>,
    /// Consumer-group offsets to store.
    pub offsets: Vec<OffsetCommit>,
    /// Metadata puts (`Some`) and deletes (`None`).
    pub meta: Vec<(String, Option<Vec<u8>>)>,
    /// State key prefixes to delete entirely.
    pub delete_state_prefixes: Vec<Vec<u8>>,
    /// Puts (`Some`) and deletes (`None`) in the `queues` column family.
    pub queue: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// `None`: the strongest durability of the appended topics, or the store default.
    pub durability: Option<Durability>,
}

/// Records for one partition.
#[derive(Debug)]
pub struct Append {
    /// Destination topic.
    pub topic: Arc<Topic>,
    /// Destination partition.
    pub partition: u32,
    /// Records, in order.
    pub records: Vec<NewRecord>,
}

/// One state change: raw key in the `state` CF.
#[derive(Debug)]
pub struct StateWrite {
    /// Full key (scope prefix and user key).
    pub key: Vec<u8>,
    /// `None` deletes.
    pub value: Option<Vec<u8>>,
    /// Expiry, ms since the Unix epoch; 0 = never.
    pub expires_at_ms: u64,
}

/// A consumer group's next offset in one partition.
#[derive(Debug)]
pub struct OffsetCommit {
    /// Group name.
    pub group: String,
    /// Topic.
    pub topic: Arc<Topic>,
    /// Partition.
    pub partition: u32,
    /// The next offset the group will read.
    pub next_offset: u64,
}

/// What a commit was assigned.
#[derive(Debug, Clone, Default)]
pub struct Receipt {
    /// Offset of the first record of each [`Append`], in order.
    pub first_offsets: Vec<u64>,
    /// Append time stamped on each [`Append`]'s records.
    pub timestamps_ms: Vec<u64>,
}

enum Job {
    Commit { commit: Commit, durability: Durability, reply: oneshot::Sender<Result<Receipt>> },
    CreateTopic { name: String, config: TopicConfig, reply: oneshot::Sender<Result<Arc<Topic>>> },
    DeleteTopic { topic: Arc<Topic>, reply: oneshot::Sender<Result<()>> },
    Truncate { topic: Arc<Topic>, partition: u32, new_start: u64, reply: oneshot::Sender<Result<u64>> },
}

/// The submitting side of the writer.
pub(crate) struct Handle {
    tx: std::sync::Mutex<Option<mpsc::Sender<Job>>>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct Writer {
    db: Arc<DB>,
    topics: Arc<RwLock<Topics>>,
    poison: Arc<OnceLock<String>>,
    next_topic_id: u32,
    stats: Arc<WriteStats>,
    space: Arc<super::space::Space>,
}

/// What the group-commit thread did since the server started (for metrics).
#[derive(Debug)]
pub struct WriteStats {
    /// Group commits written (one RocksDB write each).
    pub groups: std::sync::atomic::AtomicU64,
    /// Of those, written with fsync.
    pub fsyncs: std::sync::atomic::AtomicU64,
    /// Commit requests folded into them: requests ÷ groups is the mean group size.
    pub requests: std::sync::atomic::AtomicU64,
    /// How long each group's RocksDB write took, its fsync included: where a produce's
    /// latency tail is the disk's, this shows it (`weir bench`'s latency stage reads it).
    pub write_seconds: prometheus::Histogram,
}

impl Default for WriteStats {
    fn default() -> Self {
        let opts = prometheus::HistogramOpts::new(
            "weir_store_group_commit_write_seconds",
            "Time of each group commit's RocksDB write, fsync included",
        )
        .buckets(crate::types::LATENCY_BUCKETS.to_vec());
        WriteStats {
            groups: Default::default(),
            fsyncs: Default::default(),
            requests: Default::default(),
            write_seconds: prometheus::Histogram::with_opts(opts).expect("valid histogram"),
        }
    }
}

pub(crate) fn spawn(
    db: Arc<DB>,
    topics: Arc<RwLock<Topics>>,
    poison: Arc<OnceLock<String>>,
    next_topic_id: u32,
    stats: Arc<WriteStats>,
    space: Arc<super::space::Space>,
) -> Result<Handle> {
    let (tx, rx) = mpsc::channel(limits::WRITE_QUEUE_DEPTH);
    let writer = Writer { db, topics, poison, next_topic_id, stats, space };
    let thread = std::thread::Builder::new()
        .name("weir-group-commit".into())
        .spawn(move || writer.run(rx))
        .map_err(|e| StoreError::Invalid(format!("cannot start the group-commit thread: {e}")))?;
    Ok(Handle { tx: std::sync::Mutex::new(Some(tx)), thread: std::sync::Mutex::new(Some(thread)) })
}

impl Handle {
    fn sender(&self) -> Option<mpsc::Sender<Job>> {
        self.tx.lock().expect("writer handle").clone()
    }

    pub(crate) fn submit(
        &self,
        commit: Commit,
        default: Durability,
    ) -> impl Future<Output = Result<Receipt>> + Send + 'static {
        let durability = commit.durability.unwrap_or_else(|| {
            commit.appends.iter().fold(Durability::Os, |d, a| d.max(a.topic.config.durability.unwrap_or(default)))
        });
        // Offsets-only commits (consumer positions) are as durable as the default: a
        // committed position must not go backwards after a crash.
        let durability = if commit.appends.is_empty() && commit.durability.is_none() { default } else { durability };
        let (reply, rx) = oneshot::channel();
        let sender = self.sender();
        // Reserve the queue slot now, in the caller's order; `send` on a clone would keep the
        // order only for callers on one task. A full queue is waited for in the future.
        let job = Job::Commit { commit, durability, reply };
        let sent = match &sender {
            Some(tx) => match tx.try_send(job) {
                Ok(()) => Ok(None),
                Err(mpsc::error::TrySendError::Full(job)) => Ok(Some(job)),
                Err(mpsc::error::TrySendError::Closed(_)) => Err(StoreError::Closed),
            },
            None => Err(StoreError::Closed),
        };
        async move {
            if let Some(job) = sent? {
                sender.expect("sender").send(job).await.map_err(|_| StoreError::Closed)?;
            }
            rx.await.map_err(|_| StoreError::Closed)?
        }
    }

    pub(crate) async fn create_topic(&self, name: String, config: TopicConfig) -> Result<Arc<Topic>> {
        let (reply, rx) = oneshot::channel();
        self.send(Job::CreateTopic { name, config, reply }).await?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    pub(crate) async fn delete_topic(&self, topic: Arc<Topic>) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.send(Job::DeleteTopic { topic, reply }).await?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    pub(crate) async fn truncate(&self, topic: Arc<Topic>, partition: u32, new_start: u64) -> Result<u64> {
        let (reply, rx) = oneshot::channel();
        self.send(Job::Truncate { topic, partition, new_start, reply }).await?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn send(&self, job: Job) -> Result<()> {
        let tx = self.sender().ok_or(StoreError::Closed)?;
        tx.send(job).await.map_err(|_| StoreError::Closed)
    }

    /// Close the queue and wait for the thread to finish what was queued.
    pub(crate) fn close(&self) {
        self.tx.lock().expect("writer handle").take();
        if let Some(t) = self.thread.lock().expect("writer thread").take() {
            let _ = t.join();
        }
    }
}

/// A commit folded into the current group, waiting for the write.
struct Pending {
    reply: oneshot::Sender<Result<Receipt>>,
    receipt: Receipt,
    durability: Durability,
}

/// Records for an ephemeral partition, published to its ring after the group's write.
struct Ephemeral {
    topic: Arc<Topic>,
    partition: u32,
    records: Vec<super::StoredRecord>,
}

/// What a group accumulates besides the `WriteBatch`.
#[derive(Default)]
struct GroupEffects {
    watermarks: HashMap<(u32, u32), (Arc<Topic>, u64)>,
    ephemeral: Vec<Ephemeral>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut carry: Option<Job> = None;
        loop {
            let first = match carry.take() {
                Some(job) => job,
                None => match rx.blocking_recv() {
                    Some(job) => job,
                    None => return,
                },
            };
            match first {
                Job::Commit { commit, durability, reply } => {
                    carry = self.group_commit(&mut rx, commit, durability, reply);
                }
                Job::CreateTopic { name, config, reply } => {
                    let _ = reply.send(self.guarded(|w| w.create_topic(&name, config)));
                }
                Job::DeleteTopic { topic, reply } => {
                    let _ = reply.send(self.guarded(|w| w.delete_topic(&topic)));
                }
                Job::Truncate { topic, partition, new_start, reply } => {
                    let _ = reply.send(self.guarded(|w| w.truncate(&topic, partition, new_start)));
                }
            }
        }
    }

    /// Run `f` unless poisoned; poison on a storage failure.
    fn guarded<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        if let Some(why) = self.poison.get() {
            return Err(StoreError::Poisoned(why.clone()));
        }
        let r = f(self);
        if let Err(StoreError::Rocks(e)) = &r {
            let _ = self.poison.set(e.to_string());
            tracing::error!(error = %e, "write failed; the store now refuses writes");
        }
        r
    }

    /// Fold `first` and every commit already queued behind it into one write. Returns a
    /// non-commit job met on the way, to run after this group.
    fn group_commit(
        &mut self,
        rx: &mut mpsc::Receiver<Job>,
        first: Commit,
        durability: Durability,
        reply: oneshot::Sender<Result<Receipt>>,
    ) -> Option<Job> {
        let mut batch = WriteBatch::default();
        let mut pending = Vec::new();
        let mut effects = GroupEffects::default();
        let mut sync = false;
        let mut bytes = 0usize;
        let mut next = Some((first, durability, reply));
        let mut carry = None;
        while let Some((commit, durability, reply)) = next.take() {
            bytes += commit.appends.iter().flat_map(|a| &a.records).map(NewRecord::size).sum::<usize>();
            match self.fold(&mut batch, &commit, &mut effects) {
                Ok(receipt) => {
                    sync |= durability == Durability::Sync;
                    pending.push(Pending { reply, receipt, durability });
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            }
            if pending.len() >= limits::MAX_GROUP_COMMIT_REQUESTS || bytes >= limits::MAX_GROUP_COMMIT_BYTES {
                break;
            }
            match rx.try_recv() {
                Ok(Job::Commit { commit, durability, reply }) => next = Some((commit, durability, reply)),
                Ok(other) => carry = Some(other),
                Err(_) => {}
            }
        }
        self.write_group(batch, sync, pending, effects);
        carry
    }

    /// Add one commit to the batch, assigning offsets. Validates everything first so that a
    /// refused commit leaves nothing in the batch.
    fn fold(&self, batch: &mut WriteBatch, commit: &Commit, effects: &mut GroupEffects) -> Result<Receipt> {
        if let Some(why) = self.poison.get() {
            return Err(StoreError::Poisoned(why.clone()));
        }
        // Appends stop at the space floor; acks, offsets and deletes pass (they free space).
        if commit.appends.iter().any(|a| !a.topic.config.ephemeral && !a.records.is_empty()) {
            self.space.check()?;
        }
        validate(commit)?;
        let cf_log = self.db.cf_handle(CF_LOG).expect("log cf");
        let now = now_ms();
        let mut receipt = Receipt::default();
        let mut buf = Vec::new();
        for a in &commit.appends {
            let p = a.topic.partition(a.partition)?;
            let first = p.next_offset.load(Ordering::Relaxed);
            // Append time never goes backwards in a partition, so seeking by time can bisect.
            let ts = now.max(p.last_timestamp_ms.load(Ordering::Relaxed));
            if a.topic.config.ephemeral {
                // Never on disk: handed to the partition's ring once the group is written.
                let records =
                    a.records.iter().enumerate().map(|(i, r)| ephemeral_record(r, first + i as u64, ts)).collect();
                effects.ephemeral.push(Ephemeral { topic: a.topic.clone(), partition: a.partition, records });
            } else {
                for (i, rec) in a.records.iter().enumerate() {
                    buf.clear();
                    record::encode(rec, ts, &mut buf);
                    batch.put_cf(cf_log, keys::log_key(a.topic.id, a.partition, first + i as u64), &buf);
                }
            }
            let size: usize = a.records.iter().map(NewRecord::size).sum();
            a.topic.traffic.bytes_in.fetch_add(size as u64, Ordering::Relaxed);
            let next = first + a.records.len() as u64;
            p.next_offset.store(next, Ordering::Relaxed);
            p.last_timestamp_ms.store(ts, Ordering::Relaxed);
            effects.watermarks.insert((a.topic.id, a.partition), (a.topic.clone(), next));
            receipt.first_offsets.push(first);
            receipt.timestamps_ms.push(ts);
        }
        self.fold_side_effects(batch, commit);
        Ok(receipt)
    }

    /// State, offsets and metadata of a commit.
    fn fold_side_effects(&self, batch: &mut WriteBatch, commit: &Commit) {
        let cf_state = self.db.cf_handle(CF_STATE).expect("state cf");
        for w in &commit.state {
            match &w.value {
                Some(v) => batch.put_cf(cf_state, &w.key, encode_state(v, w.expires_at_ms)),
                None => batch.delete_cf(cf_state, &w.key),
            }
        }
        for prefix in &commit.delete_state_prefixes {
            let end = keys::prefix_end(prefix);
            let end = if end.is_empty() { vec![0xff; prefix.len() + 1] } else { end };
            batch.delete_range_cf(cf_state, prefix.as_slice(), end.as_slice());
        }
        let cf_offsets = self.db.cf_handle(CF_OFFSETS).expect("offsets cf");
        for o in &commit.offsets {
            let key = keys::offset_key(&o.group, o.topic.id, o.partition);
            batch.put_cf(cf_offsets, key, o.next_offset.to_be_bytes());
        }
        let cf_meta = self.db.cf_handle(CF_META).expect("meta cf");
        for (k, v) in &commit.meta {
            match v {
                Some(v) => batch.put_cf(cf_meta, k.as_bytes(), v),
                None => batch.delete_cf(cf_meta, k.as_bytes()),
            }
        }
        let cf_queues = self.db.cf_handle(CF_QUEUES).expect("queues cf");
        for (k, v) in &commit.queue {
            match v {
                Some(v) => batch.put_cf(cf_queues, k, v),
                None => batch.delete_cf(cf_queues, k),
            }
        }
    }

    fn write_group(&self, batch: WriteBatch, sync: bool, mut pending: Vec<Pending>, effects: GroupEffects) {
        if pending.is_empty() {
            return;
        }
        // A group of ephemeral appends only has nothing to make durable.
        let batch_was_empty = batch.is_empty();
        let requests = pending.len() as u64;
        let mixed = sync && pending.iter().any(|p| p.durability == Durability::Os);
        let written = if batch_was_empty {
            Ok(())
        } else if mixed {
            // Jobs that asked only for the OS's copy are answered once the WAL write returns,
            // not after the fsync the others wait for: a queue's delivery (`Os`) never
            // waits behind a publish's fsync. The watermarks still move after the fsync.
            let _timer = self.stats.write_seconds.start_timer();
            self.db.write_opt(batch, &WriteOptions::default()).and_then(|()| {
                let (os, synced): (Vec<_>, Vec<_>) = pending.drain(..).partition(|p| p.durability == Durability::Os);
                pending = synced;
                os.into_iter().for_each(|p| drop(p.reply.send(Ok(p.receipt))));
                self.db.flush_wal(true)
            })
        } else {
            let mut wo = WriteOptions::default();
            wo.set_sync(sync);
            let _timer = self.stats.write_seconds.start_timer();
            self.db.write_opt(batch, &wo)
        };
        match written {
            Ok(()) => {
                self.stats.groups.fetch_add(1, Ordering::Relaxed);
                self.stats.fsyncs.fetch_add(u64::from(sync && !batch_was_empty), Ordering::Relaxed);
                self.stats.requests.fetch_add(requests, Ordering::Relaxed);
                for e in effects.ephemeral {
                    e.topic.partitions()[e.partition as usize].push_ephemeral(e.records);
                }
                for ((_, partition), (topic, next)) in &effects.watermarks {
                    topic.partitions()[*partition as usize].publish(*next);
                }
                for p in pending {
                    let _ = p.reply.send(Ok(p.receipt));
                }
            }
            Err(e) => {
                let why = e.to_string();
                let _ = self.poison.set(why.clone());
                tracing::error!(error = %why, "group commit failed; the store now refuses writes");
                for p in pending {
                    let _ = p.reply.send(Err(StoreError::Poisoned(why.clone())));
                }
            }
        }
    }

    fn create_topic(&mut self, name: &str, config: TopicConfig) -> Result<Arc<Topic>> {
        if self.topics.read().expect("topics").by_name.contains_key(name) {
            return Err(StoreError::TopicExists(name.to_string()));
        }
        let id = self.next_topic_id;
        let created_ms = now_ms();
        let rec = stored::TopicV1 { id, name: name.to_string(), config: config.clone().into(), created_ms };
        let mut batch = WriteBatch::default();
        let cf_meta = self.db.cf_handle(CF_META).expect("meta cf");
        batch.put_cf(cf_meta, keys::meta::topic(name), stored::encode(&rec));
        batch.put_cf(cf_meta, keys::meta::TOPIC_SEQ, u64::from(id + 1).to_be_bytes());
        self.db.write_opt(batch, &sync_write())?;
        self.next_topic_id += 1;
        let partitions = (0..config.partitions).map(|_| super::Partition::new(0, 0, 0)).collect();
        let topic = Arc::new(Topic::new(id, rec.name, config, created_ms, partitions));
        let mut topics = self.topics.write().expect("topics");
        topics.by_id.insert(id, topic.clone());
        topics.by_name.insert(topic.name.clone(), topic.clone());
        Ok(topic)
    }

    fn delete_topic(&mut self, topic: &Arc<Topic>) -> Result<()> {
        let mut batch = WriteBatch::default();
        let cf_log = self.db.cf_handle(CF_LOG).expect("log cf");
        let prefix = keys::log_topic_prefix(topic.id);
        batch.delete_range_cf(cf_log, prefix.to_vec(), keys::prefix_end(&prefix));
        let cf_meta = self.db.cf_handle(CF_META).expect("meta cf");
        batch.delete_cf(cf_meta, keys::meta::topic(&topic.name));
        // Group offsets in the topic: found by scanning the (small) offsets CF.
        let cf_offsets = self.db.cf_handle(CF_OFFSETS).expect("offsets cf");
        for item in self.db.iterator_cf(cf_offsets, rocksdb::IteratorMode::Start) {
            let (k, _) = item?;
            if keys::parse_offset_key(&k).is_some_and(|(_, t, _)| t == topic.id) {
                batch.delete_cf(cf_offsets, &k);
            }
        }
        self.db.write_opt(batch, &sync_write())?;
        topic.mark_deleted();
        let mut topics = self.topics.write().expect("topics");
        topics.by_id.remove(&topic.id);
        topics.by_name.remove(&topic.name);
        Ok(())
    }

    fn truncate(&mut self, topic: &Arc<Topic>, partition: u32, new_start: u64) -> Result<u64> {
        let p = topic.partition(partition)?;
        let start = p.log_start();
        // Never past the last record: the next offset must stay recoverable.
        let new_start = new_start.min(p.high_watermark().saturating_sub(1));
        if new_start <= start || topic.is_deleted() {
            return Ok(0);
        }
        let mut batch = WriteBatch::default();
        let cf_log = self.db.cf_handle(CF_LOG).expect("log cf");
        batch.delete_range_cf(
            cf_log,
            keys::log_key(topic.id, partition, start),
            keys::log_key(topic.id, partition, new_start),
        );
        self.db.write_opt(batch, &WriteOptions::default())?;
        p.set_log_start(new_start);
        Ok(new_start - start)
    }
}

fn ephemeral_record(r: &NewRecord, offset: u64, timestamp_ms: u64) -> super::StoredRecord {
    super::StoredRecord { offset, timestamp_ms, key: r.key.clone(), headers: r.headers.clone(), value: r.value.clone() }
}

/// Reject a commit that breaks a limit or names a deleted topic, before it touches the batch.
pub(crate) fn validate(commit: &Commit) -> Result<()> {
    for a in &commit.appends {
        if a.topic.is_deleted() {
            return Err(StoreError::UnknownTopic(a.topic.name.clone()));
        }
        a.topic.partition(a.partition)?;
        for r in &a.records {
            if r.value.len() > a.topic.config.max_message_bytes {
                return Err(StoreError::MessageTooLarge {
                    topic: a.topic.name.clone(),
                    size: r.value.len(),
                    max: a.topic.config.max_message_bytes,
                });
            }
            check_record_limits(r)?;
        }
    }
    for o in &commit.offsets {
        if o.topic.is_deleted() {
            return Err(StoreError::UnknownTopic(o.topic.name.clone()));
        }
        o.topic.partition(o.partition)?;
    }
    Ok(())
}

/// Keys and headers are bounded so that one record cannot carry a blob outside its value.
pub(crate) fn check_record_limits(r: &NewRecord) -> Result<()> {
    if r.key.as_ref().is_some_and(|k| k.len() > limits::MAX_KEY_BYTES) {
        return Err(StoreError::Invalid(format!("message key exceeds {} bytes", limits::MAX_KEY_BYTES)));
    }
    if r.headers.len() > limits::MAX_HEADERS {
        return Err(StoreError::Invalid(format!(
            "message has {} headers; at most {} are allowed",
            r.headers.len(),
            limits::MAX_HEADERS
        )));
    }
    if let Some((n, _)) =
        r.headers.iter().find(|(n, v)| n.len() > limits::MAX_KEY_BYTES || v.len() > limits::MAX_KEY_BYTES)
    {
        return Err(StoreError::Invalid(format!("header `{n}` exceeds {} bytes", limits::MAX_KEY_BYTES)));
    }
    Ok(())
}

fn sync_write() -> WriteOptions {
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    wo
}

/// State values carry their expiry in front: `u64 BE expires_at_ms (0 = never) · value`.
fn encode_state(value: &[u8], expires_at_ms: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + value.len());
    v.extend_from_slice(&expires_at_ms.to_be_bytes());
    v.extend_from_slice(value);
    v
}

/// The value of a stored state entry, unless it expired before `now_ms`.
pub(crate) fn decode_state(stored: &[u8], now_ms: u64) -> Option<Vec<u8>> {
    let (exp, value) = stored.split_at_checked(8)?;
    let exp = u64::from_be_bytes(exp.try_into().ok()?);
    (exp == 0 || exp > now_ms).then(|| value.to_vec())
}
