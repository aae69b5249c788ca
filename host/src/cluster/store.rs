//! The store interface's JetStream implementation (cluster mode), under the same broker as
//! the RocksDB one. Topics are streams (one per partition, offset = sequence − 1); group
//! offsets are KV entries; metadata records live in one KV bucket whose stream also takes
//! atomic batches. Every node mirrors that bucket by watching it, and before it answers from
//! the mirror it catches up with the bucket's last sequence ([`ClusterStore::sync`]), so a
//! record written through any node is seen by every node asked after the write returned:
//! whether something exists is a question for the store, not for a copy.
//!
//! A node's own RocksDB (`cache`) holds only what it runs: the state of the pipeline
//! partitions it owns, component bytes it fetched.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::sync::{broadcast, watch};

use super::commits::AtomicError;
use super::names::{escape, unescape};
use super::{Cluster, ClusterError, wire};
use crate::mirror::{mirror, mirror_enum};
use crate::storage::{Commit, Fetched, Partition, Receipt, Result, Rocks, StoreError, Topic, keys};
use crate::store::{Expect, MetaWrite};
use crate::types::{Durability, Partitioner, SubjectStrategy, TopicConfig, Validation, now_ms};

/// How long a node waits to catch up with the metadata before it says the cluster does not
/// answer.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

mirror_enum!(wire::DurabilityC1 => Durability { Sync, Os });
mirror_enum!(wire::PartitionerC1 => Partitioner { Hash, Murmur2 });
mirror_enum!(wire::ValidationC1 => Validation { Id, Full, None });
mirror_enum!(wire::SubjectStrategyC1 => SubjectStrategy { TopicName, RecordName, TopicRecordName });
mirror!(wire::TopicConfigC1 => TopicConfig {
    partitions, durability: opt, retention_ms, retention_bytes, max_message_bytes, ephemeral, partitioner: into,
    key_schema, value_schema, validation: into, subject_strategy: into
});

impl From<ClusterError> for StoreError {
    fn from(e: ClusterError) -> StoreError {
        match e {
            ClusterError::Exists(m) => StoreError::Conflict(m),
            ClusterError::Fenced(m) => StoreError::Fenced(m),
            ClusterError::Unsupported(m) => StoreError::Invalid(m),
            ClusterError::Corrupt { what, message } => StoreError::Corrupt { what, why: message },
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

/// One metadata key as mirrored: its value (`None`: deleted) and the stream sequence that
/// wrote it (what a compare-and-set expects).
type Entry = (Option<Bytes>, u64);

/// The JetStream store. Cheap to clone.
#[derive(Clone)]
pub struct ClusterStore {
    inner: Arc<Inner>,
}

struct Inner {
    cluster: Arc<Cluster>,
    cache: Rocks,
    /// The queues' stream (written only while this node coordinates the queues).
    queues: super::QueueLog,
    mirror: RwLock<BTreeMap<String, Entry>>,
    /// The meta stream's sequence this node has applied.
    applied: watch::Sender<u64>,
    /// Keys as they change, with the sequence of the change.
    changes: broadcast::Sender<(String, u64)>,
    /// Topics from the `topic/` records.
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    watcher: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(w) = self.watcher.lock().expect("watcher").take() {
            w.abort();
        }
    }
}

impl ClusterStore {
    /// Start mirroring the cluster's metadata into this node, and return once it caught up.
    pub async fn open(cluster: Arc<Cluster>, cache: Rocks) -> Result<ClusterStore> {
        let queues = super::QueueLog::open(cluster.clone()).await?;
        let inner = Arc::new(Inner {
            cluster,
            cache,
            queues,
            mirror: RwLock::new(BTreeMap::new()),
            applied: watch::channel(0).0,
            changes: broadcast::channel(4096).0,
            topics: RwLock::new(HashMap::new()),
            watcher: std::sync::Mutex::new(None),
        });
        let task = tokio::spawn(watch_meta(Arc::downgrade(&inner)));
        *inner.watcher.lock().expect("watcher") = Some(task);
        let store = ClusterStore { inner };
        store.sync().await?;
        Ok(store)
    }

    /// The cluster connection.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.inner.cluster
    }

    /// This node's database.
    pub fn cache(&self) -> &Rocks {
        &self.inner.cache
    }

    /// Metadata keys as they change anywhere, and the sequence applied before them.
    pub fn meta_changes(&self) -> (broadcast::Receiver<(String, u64)>, u64) {
        let rx = self.inner.changes.subscribe();
        (rx, *self.inner.applied.borrow())
    }

    /// Catch up with every metadata change made before now; the sequence of the last.
    pub async fn sync(&self) -> Result<u64> {
        let c = &self.inner.cluster;
        let stream = c.js.get_stream(&c.meta_stream).await.map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let last = stream.cached_info().state.last_sequence;
        self.caught_up(last).await?;
        Ok(last)
    }

    async fn caught_up(&self, seq: u64) -> Result<()> {
        let mut rx = self.inner.applied.subscribe();
        let reached = tokio::time::timeout(SYNC_TIMEOUT, rx.wait_for(|applied| *applied >= seq)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => Err(StoreError::Unavailable(format!("this node did not catch up with the metadata (sequence {seq})"))),
        }
    }

    // ---- metadata ----

    /// The value at `key`, current as of the call.
    pub async fn meta_get(&self, key: &str) -> Result<Option<Bytes>> {
        if key.starts_with(BLOB) {
            return self.blob(key).await;
        }
        self.sync().await?;
        self.meta_get_now(key)
    }

    /// The value at `key` as mirrored here now (component bytes: fetched, blocking; call
    /// from a blocking context).
    pub fn meta_get_now(&self, key: &str) -> Result<Option<Bytes>> {
        if key.starts_with(BLOB) {
            return tokio::runtime::Handle::current().block_on(self.blob(key));
        }
        Ok(self.inner.mirror.read().expect("mirror").get(key).and_then(|(v, _)| v.clone()))
    }

    /// Every live record under `prefix`, current as of the call.
    pub async fn meta_scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        self.sync().await?;
        let mirror = self.inner.mirror.read().expect("mirror");
        Ok(mirror
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter_map(|(k, (v, _))| v.as_ref().map(|v| (k.clone(), v.to_vec())))
            .collect())
    }

    /// The value at `key` and its revision (0: never written), current as of the call.
    pub async fn meta_entry(&self, key: &str) -> Result<(Option<Bytes>, u64)> {
        self.sync().await?;
        Ok(self.inner.mirror.read().expect("mirror").get(key).cloned().unwrap_or((None, 0)))
    }

    /// Store `value` at `key` (`None` deletes) if the key is still at `revision`;
    /// [`StoreError::Conflict`] otherwise.
    pub async fn meta_swap(&self, key: &str, value: Option<Bytes>, revision: u64) -> Result<()> {
        let message = self.meta_message(key, value, Some(revision));
        let seq = self.publish_meta(vec![message]).await?;
        self.caught_up(seq).await
    }

    /// Write metadata changes as one atomic batch; component bytes go to the object store
    /// first (by hash, so writing them twice is harmless).
    pub async fn meta_write(&self, writes: Vec<MetaWrite>) -> Result<()> {
        let (blobs, records): (Vec<_>, Vec<_>) = writes.into_iter().partition(|w| w.key.starts_with(BLOB));
        for b in blobs.iter().filter(|b| b.value.is_some()) {
            self.put_blob(&b.key, b.value.as_ref().expect("filtered").1.clone()).await?;
        }
        if records.iter().any(|w| w.expect == Expect::Absent) {
            self.sync().await?;
        }
        if !records.is_empty() {
            let mut retried = false;
            loop {
                let messages = {
                    let mirror = self.inner.mirror.read().expect("mirror");
                    let mut out = Vec::with_capacity(records.len());
                    for w in &records {
                        let expect = match (w.expect, mirror.get(&w.key)) {
                            (Expect::Any, _) => None,
                            (Expect::Absent, Some((Some(_), _))) => {
                                return Err(StoreError::Conflict(format!("{} exists already", w.key)));
                            }
                            (Expect::Absent, Some((None, revision))) => Some(*revision),
                            (Expect::Absent, None) => Some(0),
                        };
                        out.push(self.meta_message(&w.key, w.value.as_ref().map(|v| v.1.clone()), expect));
                    }
                    out
                };
                match self.publish_meta(messages).await {
                    Ok(seq) => {
                        self.caught_up(seq).await?;
                        break;
                    }
                    // The mirror was behind: look again once before calling it a conflict.
                    Err(StoreError::Conflict(_)) if !retried => {
                        retried = true;
                        self.sync().await?;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        for b in blobs.iter().filter(|b| b.value.is_none()) {
            let _ = self.inner.cluster.plugin_bytes.delete(&b.key[BLOB.len()..]).await;
        }
        Ok(())
    }

    fn meta_message(&self, key: &str, value: Option<Bytes>, expect: Option<u64>) -> (String, HeaderMap, Bytes) {
        let subject = format!("$KV.{}.{}", self.inner.cluster.names.bucket("meta"), escape(key));
        let mut headers = HeaderMap::new();
        if let Some(seq) = expect {
            headers.insert("Nats-Expected-Last-Subject-Sequence", seq.to_string().as_str());
        }
        match value {
            Some(v) => (subject, headers, v),
            None => {
                headers.insert("KV-Operation", "DEL");
                (subject, headers, Bytes::new())
            }
        }
    }

    /// Publish metadata messages (atomically when several); the sequence of the last.
    async fn publish_meta(&self, messages: Vec<(String, HeaderMap, Bytes)>) -> Result<u64> {
        let conflict = |m: String| StoreError::Conflict(format!("a concurrent change won ({m}); look again"));
        match self.inner.cluster.publish_atomic(messages).await {
            Ok(seq) => Ok(seq),
            Err(AtomicError::WrongLastSequence(m)) => Err(conflict(m)),
            Err(e) => Err(e.into_cluster().into()),
        }
    }

    async fn blob(&self, key: &str) -> Result<Option<Bytes>> {
        if let Some(v) = self.inner.cache.meta_get(key)? {
            return Ok(Some(v.into()));
        }
        let hash = &key[BLOB.len()..];
        let mut object = match self.inner.cluster.plugin_bytes.get(hash).await {
            Ok(o) => o,
            Err(e) if e.kind() == async_nats::jetstream::object_store::GetErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::Unavailable(format!("reading component {hash}: {e}"))),
        };
        let mut bytes = Vec::new();
        object
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| StoreError::Unavailable(format!("reading component {hash}: {e}")))?;
        self.inner.cache.meta_write(vec![(key.to_string(), Some(bytes.clone()))]).await?;
        Ok(Some(bytes.into()))
    }

    async fn put_blob(&self, key: &str, bytes: Bytes) -> Result<()> {
        let hash = &key[BLOB.len()..];
        if self.inner.cluster.plugin_bytes.info(hash).await.is_err() {
            let mut reader = std::io::Cursor::new(bytes.to_vec());
            self.inner
                .cluster
                .plugin_bytes
                .put(hash, &mut reader)
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        }
        self.inner.cache.meta_write(vec![(key.to_string(), Some(bytes.to_vec()))]).await
    }

    // ---- topics ----

    /// Create a topic's streams, then its record (refused if the name is taken).
    pub async fn create_topic(&self, name: &str, config: TopicConfig) -> Result<Arc<Topic>> {
        if let Ok(t) = self.find_topic(name).await {
            return Err(StoreError::TopicExists(t.name.clone()));
        }
        self.inner.cluster.ensure_streams(name, &config).await?;
        let id = self.take_id(keys::meta::TOPIC_SEQ).await?;
        let record = wire::TopicC1 { id, config: config.into(), created_ms: now_ms() };
        let write = MetaWrite {
            key: keys::meta::topic(name),
            value: Some((Bytes::new(), wire::encode(&record).into())),
            expect: Expect::Absent,
        };
        match self.meta_write(vec![write]).await {
            Err(StoreError::Conflict(_)) => Err(StoreError::TopicExists(name.to_string())),
            Err(e) => Err(e),
            Ok(()) => self.cached_topic(name),
        }
    }

    /// The next id of the sequence at `key` (compare-and-set: never handed out twice).
    async fn take_id(&self, key: &str) -> Result<u32> {
        loop {
            let (now, revision) = self.meta_entry(key).await?;
            let next = match now {
                Some(v) => <u32 as crate::store::Record>::from_cluster(key, &v)?,
                None => 1,
            };
            match self.meta_swap(key, Some(crate::store::Record::to_cluster(&(next + 1))), revision).await {
                Ok(()) => return Ok(next),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Delete a topic's record, streams and group offsets.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let topic = self.find_topic(name).await?;
        self.meta_write(vec![MetaWrite::delete(keys::meta::topic(name))]).await?;
        self.inner.cluster.delete_streams(name, topic.partition_count()).await;
        self.inner.cluster.forget_offsets(name).await?;
        Ok(())
    }

    /// The topic as this node knows it now.
    pub fn cached_topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.inner
            .topics
            .read()
            .expect("topics")
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::UnknownTopic(name.into()))
    }

    /// The topic, catching up with the metadata first when this node does not know it.
    pub async fn find_topic(&self, name: &str) -> Result<Arc<Topic>> {
        if let Ok(t) = self.cached_topic(name) {
            return Ok(t);
        }
        self.sync().await?;
        self.cached_topic(name)
    }

    /// Every topic, current as of the call.
    pub async fn topics(&self) -> Result<Vec<Arc<Topic>>> {
        self.sync().await?;
        Ok(self.known_topics())
    }

    /// Every topic this node knows now.
    pub fn known_topics(&self) -> Vec<Arc<Topic>> {
        let mut all: Vec<_> = self.inner.topics.read().expect("topics").values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// `(log start, high watermark)` of partition `p`.
    pub async fn bounds(&self, topic: &Topic, p: u32) -> Result<(u64, u64)> {
        topic.partition(p)?;
        Ok(self.inner.cluster.bounds(&topic.name, p).await?)
    }

    /// Records of partition `p` from `from`.
    pub async fn read(
        &self,
        topic: &Topic,
        p: u32,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Fetched> {
        topic.partition(p)?;
        if max_records == 0 {
            let (log_start, high_watermark) = self.bounds(topic, p).await?;
            return Ok(Fetched { records: Vec::new(), log_start, high_watermark });
        }
        let fetched = self.inner.cluster.read(&topic.name, p, from, max_records, max_bytes).await?;
        let out_bytes: usize = fetched.records.iter().map(|r| r.value.len()).sum();
        topic.count_read(fetched.records.len(), out_bytes);
        Ok(fetched)
    }

    /// Wait until partition `p` holds something at `offset` or later: woken by the
    /// partition's subjects (every append passes there), checked against its bounds.
    pub async fn wait_for(&self, topic: &Arc<Topic>, p: u32, offset: u64, timeout: Duration) -> bool {
        let c = &self.inner.cluster;
        let subject = c.names.produce_subject(&topic.name, p);
        let (Ok(mut direct), Ok(mut forwarded)) =
            (c.client.subscribe(subject.clone()).await, c.client.subscribe(format!("{subject}.>")).await)
        else {
            tokio::time::sleep(timeout.min(Duration::from_millis(50))).await;
            return false;
        };
        if self.bounds(topic, p).await.is_ok_and(|(_, hw)| hw > offset) {
            return true;
        }
        tokio::select! {
            _ = direct.next() => true,
            _ = forwarded.next() => true,
            _ = tokio::time::sleep(timeout) => false,
        }
    }

    /// The first offset of partition `p` stored at or after `timestamp_ms`: the stream's
    /// own index by time (a direct get by start time).
    pub async fn offset_for_time(&self, topic: &Topic, p: u32, timestamp_ms: u64) -> Result<u64> {
        topic.partition(p)?;
        let at = std::time::UNIX_EPOCH + Duration::from_millis(timestamp_ms);
        let stream = self.inner.cluster.names.topic_stream(&topic.name, p);
        match self.inner.cluster.first_at_time(&stream, at).await? {
            Some(seq) => Ok(seq - 1),
            None => Ok(self.bounds(topic, p).await?.1),
        }
    }

    /// Submit a commit: each partition's appends as one atomic batch (concurrently), then
    /// group offsets, then metadata, then state into this node's cache. Each part is durable
    /// in JetStream before the next starts; a failure stops there (RELIABILITY.md says what
    /// a cluster promises where a single node's commit is one write).
    pub fn submit(&self, commit: Commit) -> impl Future<Output = Result<Receipt>> + Send + 'static {
        let me = self.clone();
        async move {
            crate::storage::validate_commit(&commit)?;
            let c = me.inner.cluster.clone();
            let appends = commit.appends.iter().map(|a| c.append(&a.topic.name, a.partition, &a.records));
            let appended = futures_util::future::try_join_all(appends).await?;
            let mut receipt = Receipt::default();
            for (a, offsets) in commit.appends.iter().zip(&appended) {
                let size: u64 = a.records.iter().map(|r| r.size() as u64).sum();
                a.topic.count_written(size);
                receipt.first_offsets.push(offsets.first().map_or(0, |o| o.0));
                receipt.timestamps_ms.push(offsets.first().map_or(0, |o| o.1));
            }
            if !commit.queue.is_empty() {
                me.inner.queues.write(&commit.queue).await?;
                me.inner.cache.submit(Commit { queue: commit.queue, ..Commit::default() }).await?;
            }
            for o in &commit.offsets {
                c.commit_offset(&o.group, &o.topic.name, o.partition, o.next_offset).await?;
            }
            if !commit.meta.is_empty() {
                let writes = commit
                    .meta
                    .into_iter()
                    .map(|(key, v)| MetaWrite {
                        key,
                        value: v.map(|v| (Bytes::new(), Bytes::from(v))),
                        expect: Expect::Any,
                    })
                    .collect();
                me.meta_write(writes).await?;
            }
            if !commit.state.is_empty() || !commit.delete_state_prefixes.is_empty() {
                let local = Commit {
                    state: commit.state,
                    delete_state_prefixes: commit.delete_state_prefixes,
                    ..Commit::default()
                };
                me.inner.cache.submit(local).await?;
            }
            Ok(receipt)
        }
    }

    // ---- queues ----

    /// Take the queues over (this node coordinates them now): fence the previous
    /// coordinator out and load every queue's state into this node's database.
    pub async fn take_over_queues(&self) -> Result<()> {
        let entries = self.inner.queues.take_over().await?;
        let cache = &self.inner.cache;
        let mut writes: Vec<(Vec<u8>, Option<Vec<u8>>)> =
            cache.queue_scan(&[])?.into_iter().map(|(k, _)| (k, None)).collect();
        writes.extend(entries.into_iter().map(|(k, v)| (k, Some(v))));
        cache.submit(Commit { queue: writes, ..Commit::default() }).await?;
        Ok(())
    }

    /// Whether this node may write the queues.
    pub async fn holding_queues(&self) -> bool {
        self.inner.queues.holding().await
    }

    /// Stop writing the queues (another node coordinates them).
    pub async fn release_queues(&self) {
        self.inner.queues.release().await;
    }

    // ---- consumer groups ----

    /// `group`'s committed next offset in each partition of `topic`.
    pub async fn committed(&self, group: &str, topic: &Topic) -> Result<Vec<Option<u64>>> {
        let mut out = Vec::with_capacity(topic.partition_count() as usize);
        for p in 0..topic.partition_count() {
            out.push(self.inner.cluster.committed_offset(group, &topic.name, p).await?);
        }
        Ok(out)
    }

    /// Every group with committed offsets, with its topics.
    pub async fn groups(&self) -> Result<Vec<(String, Vec<String>)>> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for (group, topic) in self.inner.cluster.offset_groups().await? {
            match out.last_mut() {
                Some((g, topics)) if *g == group => topics.push(topic),
                _ => out.push((group, vec![topic])),
            }
        }
        Ok(out)
    }
}

/// Where component bytes are named in the metadata's key space.
const BLOB: &str = "blob/";

/// Mirror the meta bucket into `inner` for as long as it lives: every change applied in
/// stream order, topics rebuilt from their records, each changed key announced. A watch that
/// ends (a reconnection) starts again; replaying what is applied already changes nothing.
async fn watch_meta(inner: std::sync::Weak<Inner>) {
    loop {
        let Some(me) = inner.upgrade() else { return };
        // The last value of every key first (`watch_all` would start with new changes only).
        let watch = me.cluster.meta.watch_with_history(">").await;
        drop(me);
        let mut updates = match watch {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the cluster's metadata; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        while let Some(entry) = updates.next().await {
            let Some(me) = inner.upgrade() else { return };
            match entry {
                Ok(e) => me.apply(e),
                Err(e) => {
                    tracing::warn!(error = %e, "watching the cluster's metadata failed; watching again");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Inner {
    fn apply(&self, e: kv::Entry) {
        let key = unescape(&e.key);
        let value = (e.operation == kv::Operation::Put).then_some(e.value);
        if let Some(name) = key.strip_prefix(keys::meta::TOPICS) {
            self.apply_topic(name, value.as_deref());
        }
        self.mirror.write().expect("mirror").insert(key.clone(), (value, e.revision));
        self.applied.send_if_modified(|applied| {
            let moved = e.revision > *applied;
            *applied = (*applied).max(e.revision);
            moved
        });
        let _ = self.changes.send((key, e.revision));
    }

    /// A topic record arrived (or went): the topic this node serves follows it. A topic
    /// deleted and created again under the same name is a new topic.
    fn apply_topic(&self, name: &str, value: Option<&[u8]>) {
        let mut topics = self.topics.write().expect("topics");
        let record = value.map(|v| wire::decode::<wire::TopicC1>(&keys::meta::topic(name), v));
        match record {
            Some(Ok(r)) => {
                if topics.get(name).is_some_and(|t| t.created_ms == r.created_ms) {
                    return;
                }
                let config = TopicConfig::from(r.config);
                let partitions = (0..config.partitions).map(|_| Partition::new(0, 0, 0)).collect();
                let topic = Arc::new(Topic::new(r.id, name.to_string(), config, r.created_ms, partitions));
                if let Some(old) = topics.insert(name.to_string(), topic) {
                    old.mark_deleted();
                }
            }
            Some(Err(e)) => tracing::error!(topic = name, error = %e, "cannot read the cluster's record of a topic"),
            None => {
                if let Some(old) = topics.remove(name) {
                    old.mark_deleted();
                }
            }
        }
    }
}

impl Cluster {
    /// The sequence of the first message of `stream` stored at or after `at` (`None`: none).
    pub(crate) async fn first_at_time(
        &self,
        stream: &str,
        at: std::time::SystemTime,
    ) -> Result<Option<u64>, ClusterError> {
        let req = serde_json::json!({ "start_time": humantime::format_rfc3339_nanos(at).to_string() }).to_string();
        let msg = self
            .client
            .request(format!("$JS.API.DIRECT.GET.{stream}"), Bytes::from(req))
            .await
            .map_err(|e| ClusterError::Nats(format!("seeking {stream} by time: {e}")))?;
        if let Some(status) = msg.status {
            return match status.as_u16() {
                404 => Ok(None),
                code => Err(ClusterError::Nats(format!("seeking {stream} by time: status {code}"))),
            };
        }
        let headers = msg.headers.unwrap_or_default();
        Ok(headers.get("Nats-Sequence").and_then(|v| v.as_str().parse().ok()))
    }
}
