//! Pipeline commits in cluster mode. Each pipeline has a commit stream (R = replicas, one
//! message kept per subject). A weir batch of source partition `p` commits as one JetStream
//! atomic batch into it — all or nothing:
//!
//! - `…p.out.N`: the batch's outputs, packed (few messages however many outputs);
//! - `…p.state.HEX`: the latest value of each state key written (HEX = step · user key);
//! - `…p.commit` last: the next source offset, carrying `Nats-Expected-Last-Subject-Sequence`
//!   = the sequence of the previous commit record, the fencing token. An owner that lost
//!   its partition (paused past its lease) still holds the old token: its whole batch is
//!   refused, and it stops that partition.
//!
//! After a commit lands, its outputs are forwarded to the sink partitions on a subject per
//! (pipeline, source partition), as an atomic batch whose first message expects the last
//! forwarded sequence on that subject and whose messages carry `Weir-Origin` (the commit's
//! sequence): a forwarder that restarts, or races a zombie, sees what was forwarded and
//! skips it. Only the last commit can be unforwarded (the worker forwards before its next
//! batch), which is why one message per subject is enough.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::stream;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Cluster, ClusterError, names, nats};
use crate::storage::{NewRecord, record};
use crate::types::now_ms;

/// JetStream's limit on messages in one atomic batch (the server's default).
pub const MAX_BATCH_MESSAGES: usize = 1000;
/// Atomic batches this node has in flight per stream (JetStream refuses more than 50 per
/// stream from all nodes together).
const MAX_BATCHES_IN_FLIGHT: usize = 8;
/// Packed outputs per message stay under NATS's default 1 MiB payload.
const OUTPUT_CHUNK_BYTES: usize = 768 * 1024;

/// The commit record (`…p.commit`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CommitRecord {
    /// Next source offset.
    next_offset: u64,
    /// `name@version` of each step that processed the batch.
    versions: Vec<String>,
    /// How many `out.N` messages the batch wrote (0..chunks).
    chunks: u32,
    /// The node that committed.
    node: String,
    /// When, ms since the Unix epoch.
    at_ms: u64,
}

/// Outputs as packed in `out.N`: `(sink topic, sink partition, encoded record)`.
type Packed = Vec<(String, u32, serde_bytes::ByteBuf)>;

/// What one batch of one source partition commits.
#[derive(Debug, Default)]
pub struct PartitionCommit {
    /// Outputs in order: sink topic, sink partition, record.
    pub outputs: Vec<(String, u32, NewRecord)>,
    /// State writes: step, user key, `Some(expiry u64 BE · value)` or `None` to delete.
    pub state: Vec<(u16, Vec<u8>, Option<Vec<u8>>)>,
    /// The next source offset.
    pub next_offset: u64,
    /// `name@version` of each step.
    pub versions: Vec<String>,
}

/// One state key of a partition: step, user key, expiry u64 BE · value.
type StateEntry = (u16, Vec<u8>, Vec<u8>);

/// How far a batch's commit got.
#[derive(Debug)]
pub enum Committed {
    /// Landed, and its outputs are in their sinks.
    Visible,
    /// Landed; forwarding its outputs failed with this error (a takeover forwards them).
    Landed(ClusterError),
}

/// How [`CommitLog::rewrite`] changes a partition's last commit.
#[derive(Debug, Clone)]
pub enum Rewrite {
    /// Progress moves to `next_offset`; all state goes if asked.
    Reset {
        /// The new committed next offset.
        next_offset: u64,
        /// Delete every state key too.
        forget_state: bool,
    },
    /// These `(step, key)` state entries go; progress stays.
    ForgetKeys(Vec<(u16, Vec<u8>)>),
}

/// What a new owner starts from.
#[derive(Debug, Default)]
pub struct Takeover {
    /// The committed next offset (`None`: never committed).
    pub next_offset: Option<u64>,
    /// The fencing token: the sequence of the last commit record (0: none).
    pub fence: u64,
    /// Plugin versions of the last commit.
    pub versions: Vec<String>,
    /// The partition's state: step, user key, expiry u64 BE · value.
    pub state: Vec<(u16, Vec<u8>, Vec<u8>)>,
}

/// One pipeline's commit stream.
pub struct CommitLog {
    cluster: Arc<Cluster>,
    pipeline: String,
    /// The pipeline's consumer group and source topic: the group's offsets show the progress
    /// whose outputs are in their sinks.
    group: String,
    source: String,
    stream: String,
    /// When the commit stream was created (ns): tells this pipeline's forwarded outputs from
    /// those of an earlier, deleted pipeline of the same name.
    incarnation: i128,
}

impl CommitLog {
    /// The pipeline's commit stream, created if missing.
    pub async fn open(
        cluster: Arc<Cluster>,
        pipeline: &str,
        group: &str,
        source: &str,
    ) -> Result<CommitLog, ClusterError> {
        let stream = cluster.names.commit_stream(pipeline);
        let config = stream::Config {
            name: stream.clone(),
            subjects: vec![cluster.names.commit_subjects(pipeline)],
            num_replicas: cluster.replicas,
            storage: stream::StorageType::File,
            allow_direct: true,
            allow_atomic_publish: true,
            max_messages_per_subject: 1,
            ..Default::default()
        };
        let what = format!("creating stream {stream}");
        let created =
            super::retrying(&what, || async { cluster.js.get_or_create_stream(config.clone()).await.map_err(nats) })
                .await?;
        let incarnation = created.cached_info().created.unix_timestamp_nanos();
        Ok(CommitLog {
            cluster,
            pipeline: pipeline.to_string(),
            group: group.to_string(),
            source: source.to_string(),
            stream,
            incarnation,
        })
    }

    /// Delete the commit stream (the pipeline is deleted).
    pub async fn delete(cluster: &Cluster, pipeline: &str) {
        let _ = cluster.js.delete_stream(cluster.names.commit_stream(pipeline)).await;
    }

    /// Partition `p`'s committed next offset, the node that committed it and its plugin
    /// versions (`None`: never committed), without taking anything over.
    pub async fn progress(
        cluster: &Cluster,
        pipeline: &str,
        p: u32,
    ) -> Result<Option<(u64, String, Vec<String>)>, ClusterError> {
        let subject = cluster.names.commit_subject(pipeline, p, "commit");
        let stream = cluster.names.commit_stream(pipeline);
        // Before the first owner opened the commit stream, nothing answers for it: nothing
        // was committed yet.
        let last = match cluster.last_by_subject(&stream, &subject).await {
            Err(ClusterError::NoResponders(_)) => return Ok(None),
            other => other?,
        };
        let Some((_, _, payload)) = last else { return Ok(None) };
        let rec: CommitRecord = rmp_serde::from_slice(&payload)
            .map_err(|e| ClusterError::Corrupt { what: subject.clone(), message: e.to_string() })?;
        Ok(Some((rec.next_offset, rec.node, rec.versions)))
    }

    /// Take partition `p` over: read its last commit and its state, and finish forwarding
    /// the last commit's outputs (a previous owner may have died between the two).
    pub async fn takeover(&self, p: u32) -> Result<Takeover, ClusterError> {
        let mut t = Takeover::default();
        let subject = self.cluster.names.commit_subject(&self.pipeline, p, "commit");
        // From the leader: a lagging replica would give an older commit or older state.
        let Some((seq, headers, payload)) = self.cluster.last_by_subject_leader(&self.stream, &subject).await? else {
            return Ok(t);
        };
        let rec: CommitRecord = rmp_serde::from_slice(&payload)
            .map_err(|e| ClusterError::Corrupt { what: subject.clone(), message: e.to_string() })?;
        t.next_offset = Some(rec.next_offset);
        t.fence = seq;
        t.versions = rec.versions.clone();
        t.state = self.read_state(p).await?;
        let batch = headers.get("Nats-Batch-Id").map(|v| v.as_str().to_string()).unwrap_or_default();
        let outputs = self.read_outputs(p, &rec, &batch).await?;
        self.forward(p, seq, outputs).await?;
        self.mark_visible(p, rec.next_offset).await?;
        self.cluster.count(&self.cluster.counters.takeovers);
        Ok(t)
    }

    async fn read_state(&self, p: u32) -> Result<Vec<(u16, Vec<u8>, Vec<u8>)>, ClusterError> {
        let filter = self.cluster.names.commit_subject(&self.pipeline, p, "state.>");
        let mut out = Vec::new();
        for (subject, headers, payload) in self.cluster.last_per_subject(&self.stream, &filter).await? {
            if headers.get("Weir-Deleted").is_some() {
                continue;
            }
            let key = headers.get("Weir-Key").and_then(|k| names::unhex(k.as_str())).filter(|k| k.len() >= 2);
            let Some(key) = key else {
                return Err(ClusterError::Corrupt { what: subject, message: "a state message without its key".into() });
            };
            out.push((u16::from_be_bytes([key[0], key[1]]), key[2..].to_vec(), payload.to_vec()));
        }
        Ok(out)
    }

    async fn read_outputs(&self, p: u32, rec: &CommitRecord, batch: &str) -> Result<Packed, ClusterError> {
        let mut outputs = Packed::new();
        for n in 0..rec.chunks {
            let subject = self.cluster.names.commit_subject(&self.pipeline, p, &format!("out.{n}"));
            let Some((_, headers, payload)) = self.cluster.last_by_subject_leader(&self.stream, &subject).await? else {
                return Err(ClusterError::Corrupt { what: subject, message: "output chunk missing".into() });
            };
            if headers.get("Nats-Batch-Id").map(|v| v.as_str()) != Some(batch) {
                return Err(ClusterError::Corrupt { what: subject, message: "output chunk of another batch".into() });
            }
            let mut chunk: Packed = rmp_serde::from_slice(&payload)
                .map_err(|e| ClusterError::Corrupt { what: subject.clone(), message: e.to_string() })?;
            outputs.append(&mut chunk);
        }
        Ok(outputs)
    }

    /// Rewrite partition `p`'s last commit as `change` says (a pipeline reset, or state keys
    /// deleted by hand): outputs the last commit had not forwarded are forwarded first, then a
    /// commit without outputs lands fenced like a batch's — an owner still running finds its
    /// next commit refused and takes the partition over again from this one, state included.
    /// Returns how many state keys went.
    pub async fn rewrite(&self, p: u32, change: &Rewrite) -> Result<usize, ClusterError> {
        loop {
            let t = self.takeover(p).await?;
            let (next_offset, doomed): (u64, Vec<&StateEntry>) = match change {
                Rewrite::Reset { next_offset, forget_state } => {
                    (*next_offset, if *forget_state { t.state.iter().collect() } else { Vec::new() })
                }
                Rewrite::ForgetKeys(keys) => {
                    let Some(next) = t.next_offset else { return Ok(0) };
                    let doomed: Vec<_> =
                        t.state.iter().filter(|(s, k, _)| keys.iter().any(|(ks, kk)| ks == s && kk == k)).collect();
                    if doomed.is_empty() {
                        return Ok(0);
                    }
                    (next, doomed)
                }
            };
            let mut messages: Vec<(String, HeaderMap, Bytes)> = doomed
                .iter()
                .map(|(step, key, _)| {
                    let mut full = step.to_be_bytes().to_vec();
                    full.extend_from_slice(key);
                    self.state_message(p, &full, None)
                })
                .collect();
            let record = CommitRecord {
                next_offset,
                versions: t.versions.clone(),
                chunks: 0,
                node: self.cluster.node.clone(),
                at_ms: now_ms(),
            };
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Expected-Last-Subject-Sequence", t.fence.to_string().as_str());
            let body = rmp_serde::to_vec_named(&record).expect("commit encodes");
            // State deletions go first, in batches of their own when there are many; the
            // commit record, last, is what the fence guards.
            let split = messages.len().saturating_sub(MAX_BATCH_MESSAGES - 1);
            for chunk in messages[..split].chunks(MAX_BATCH_MESSAGES) {
                self.cluster.publish_atomic(chunk.to_vec()).await.map_err(AtomicError::into_cluster)?;
            }
            let mut last: Vec<_> = messages.split_off(split);
            last.push((self.cluster.names.commit_subject(&self.pipeline, p, "commit"), headers, body.into()));
            match self.cluster.publish_atomic(last).await {
                Ok(_) => {
                    self.mark_visible(p, next_offset).await?;
                    return Ok(doomed.len());
                }
                // The owner committed meanwhile: start again from its commit.
                Err(AtomicError::WrongLastSequence(_)) => continue,
                Err(e) => return Err(e.into_cluster()),
            }
        }
    }

    /// Partition `p`'s committed state: step, user key, expiry u64 BE · value.
    pub async fn state(&self, p: u32) -> Result<Vec<(u16, Vec<u8>, Vec<u8>)>, ClusterError> {
        self.read_state(p).await
    }

    /// The message carrying one state key's latest value (`None`: deleted).
    fn state_message(&self, p: u32, full: &[u8], value: Option<Vec<u8>>) -> (String, HeaderMap, Bytes) {
        // The subject names the key by its hash (a subject must stay short); the key itself
        // rides in a header.
        let leaf = format!("state.{}", &blake3::hash(full).to_hex()[..32]);
        let subject = self.cluster.names.commit_subject(&self.pipeline, p, &leaf);
        let mut headers = HeaderMap::new();
        headers.insert("Weir-Key", names::hex(full).as_str());
        let body = match value {
            Some(v) => Bytes::from(v),
            None => {
                headers.insert("Weir-Deleted", "1");
                Bytes::new()
            }
        };
        (subject, headers, body)
    }

    /// Commit one batch of partition `p` (all or nothing), fenced by `fence`, which becomes
    /// the new commit's sequence; then forward its outputs. [`ClusterError::Fenced`] when a
    /// newer owner has committed; [`Committed::Landed`] when the commit landed but its
    /// outputs could not be forwarded yet (a takeover forwards them).
    pub async fn commit(&self, p: u32, fence: &mut u64, c: PartitionCommit) -> Result<Committed, ClusterError> {
        let now = now_ms();
        let packed: Packed = c
            .outputs
            .into_iter()
            .map(|(topic, partition, r)| {
                let mut buf = Vec::with_capacity(r.size() + 16);
                record::encode(&r, now, &mut buf);
                (topic, partition, serde_bytes::ByteBuf::from(buf))
            })
            .collect();
        let chunks = chunk(&packed);
        let count = chunks.len() + c.state.len() + 1;
        if count > MAX_BATCH_MESSAGES {
            return Err(ClusterError::Unsupported(format!(
                "a batch of pipeline `{}` writes {} state keys: cluster mode commits at most {} messages \
                 atomically; lower the pipeline's batch-max-messages",
                self.pipeline,
                c.state.len(),
                MAX_BATCH_MESSAGES
            )));
        }
        let record = CommitRecord {
            next_offset: c.next_offset,
            versions: c.versions,
            chunks: chunks.len() as u32,
            node: self.cluster.node.clone(),
            at_ms: now,
        };
        let mut messages: Vec<(String, HeaderMap, Bytes)> = Vec::with_capacity(count);
        for (n, range) in chunks.iter().enumerate() {
            let body = rmp_serde::to_vec(&packed[range.clone()]).expect("outputs encode");
            messages.push((
                self.cluster.names.commit_subject(&self.pipeline, p, &format!("out.{n}")),
                HeaderMap::new(),
                body.into(),
            ));
        }
        for (step, key, value) in c.state {
            let mut full = step.to_be_bytes().to_vec();
            full.extend_from_slice(&key);
            messages.push(self.state_message(p, &full, value));
        }
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Expected-Last-Subject-Sequence", fence.to_string().as_str());
        let body = rmp_serde::to_vec_named(&record).expect("commit encodes");
        messages.push((self.cluster.names.commit_subject(&self.pipeline, p, "commit"), headers, body.into()));
        let seq = match self.cluster.publish_atomic(messages).await {
            Ok(seq) => seq,
            Err(AtomicError::WrongLastSequence(m)) => {
                self.cluster.count(&self.cluster.counters.fenced_commits);
                return Err(ClusterError::Fenced(format!(
                    "partition {p} of pipeline `{}` was committed by a newer owner ({m}); this node's batch \
                     was refused whole and it stops the partition",
                    self.pipeline
                )));
            }
            Err(e) => return Err(e.into_cluster()),
        };
        *fence = seq;
        self.cluster.count(&self.cluster.counters.commits);
        let visible = match self.forward(p, seq, packed).await {
            Ok(()) => self.mark_visible(p, c.next_offset).await,
            Err(e) => Err(e),
        };
        Ok(match visible {
            Ok(()) => Committed::Visible,
            Err(e) => Committed::Landed(e),
        })
    }

    /// Say that partition `p`'s outputs are in their sinks up to source offset `next`: the
    /// pipeline's group offset, as on a single node (`weir group list`, a status's lag — with
    /// no lag the outputs can be read, although the commit record lands before its outputs
    /// are forwarded). Takeovers read the commit record, not this, and write it again.
    async fn mark_visible(&self, p: u32, next: u64) -> Result<(), ClusterError> {
        self.cluster.commit_offset(&self.group, &self.source, p, next).await
    }

    /// Append the outputs of the commit at `commit_seq` to their sink partitions, once.
    async fn forward(&self, p: u32, commit_seq: u64, outputs: Packed) -> Result<(), ClusterError> {
        let mut by_sink: BTreeMap<(String, u32), Vec<Bytes>> = BTreeMap::new();
        for (topic, partition, rec) in outputs {
            by_sink.entry((topic, partition)).or_default().push(Bytes::from(rec.into_vec()));
        }
        for ((topic, partition), records) in by_sink {
            let stream = self.cluster.names.topic_stream(&topic, partition);
            let subject = self.cluster.names.forward_subject(&topic, partition, &self.pipeline, p);
            for (n, part) in records.chunks(MAX_BATCH_MESSAGES).enumerate() {
                let origin = format!("{}:{commit_seq:020}.{n:06}", self.incarnation);
                self.forward_once(&stream, &subject, &origin, part).await?;
            }
        }
        Ok(())
    }

    /// One atomic batch onto a sink partition, unless the subject's last message shows it
    /// (or a later one) is there already.
    async fn forward_once(
        &self,
        stream: &str,
        subject: &str,
        origin: &str,
        records: &[Bytes],
    ) -> Result<(), ClusterError> {
        for _ in 0..10 {
            let last = self.cluster.last_by_subject_leader(stream, subject).await?;
            let (expected, done) = match &last {
                None => (0, false),
                Some((seq, headers, _)) => {
                    // An origin of an earlier pipeline of the same name (another incarnation)
                    // says nothing about this one's.
                    let theirs = headers.get("Weir-Origin").map(|v| v.as_str().to_string()).unwrap_or_default();
                    let same = theirs.split_once(':').map(|t| t.0) == origin.split_once(':').map(|o| o.0);
                    (*seq, same && theirs.as_str() >= origin)
                }
            };
            if done {
                return Ok(());
            }
            let messages = records
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let mut h = HeaderMap::new();
                    h.insert("Weir-Origin", origin);
                    if i == 0 {
                        h.insert("Nats-Expected-Last-Subject-Sequence", expected.to_string().as_str());
                    }
                    (subject.to_string(), h, r.clone())
                })
                .collect();
            match self.cluster.publish_atomic(messages).await {
                Ok(_) => return Ok(()),
                // Another forwarder (a zombie, or this one's earlier try) got there first: look again.
                Err(AtomicError::WrongLastSequence(_)) => continue,
                Err(e) => return Err(e.into_cluster()),
            }
        }
        Err(ClusterError::Nats(format!("forwarding to {subject}: kept racing another forwarder")))
    }
}

/// Outputs split into ranges of about [`OUTPUT_CHUNK_BYTES`] each.
fn chunk(outputs: &Packed) -> Vec<std::ops::Range<usize>> {
    let mut chunks = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, o) in outputs.iter().enumerate() {
        let n = o.2.len() + o.0.len() + 16;
        if i > start && size + n > OUTPUT_CHUNK_BYTES {
            chunks.push(start..i);
            (start, size) = (i, 0);
        }
        size += n;
    }
    if start < outputs.len() {
        chunks.push(start..outputs.len());
    }
    chunks
}

/// Why an atomic batch was refused.
pub(crate) enum AtomicError {
    /// An expected last (subject) sequence did not match: someone else wrote first.
    WrongLastSequence(String),
    /// Too many batches in flight on the stream; nothing stored.
    InFlight,
    Other(ClusterError),
}

impl AtomicError {
    pub(crate) fn into_cluster(self) -> ClusterError {
        match self {
            AtomicError::WrongLastSequence(m) => ClusterError::Nats(format!("wrong last sequence: {m}")),
            AtomicError::InFlight => ClusterError::Nats("too many atomic batches in flight on the stream".into()),
            AtomicError::Other(e) => e,
        }
    }
}

impl Cluster {
    /// Publish `messages` as one atomic batch (ADR-50): stored all together or not at all.
    /// Returns the last message's sequence. A batch refused for too many batches in flight on
    /// the stream (err_code 10210, nothing stored) is sent again.
    pub(crate) async fn publish_atomic(&self, messages: Vec<(String, HeaderMap, Bytes)>) -> Result<u64, AtomicError> {
        // A bounded number in flight per stream: beyond it batches wait here, not in a
        // server backlog where their commits would time out.
        let stream = messages.first().map(|m| m.0.split('.').take(4).collect::<Vec<_>>().join(".")).unwrap_or_default();
        let gate = self
            .inflight
            .lock()
            .expect("in-flight gates")
            .entry(stream)
            .or_insert_with(|| std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_BATCHES_IN_FLIGHT)))
            .clone();
        let _permit = gate.acquire_owned().await.map_err(|e| AtomicError::Other(nats(e)))?;
        let mut delay = Duration::from_millis(2);
        loop {
            match self.publish_atomic_once(messages.clone()).await {
                Err(AtomicError::InFlight) if delay < Duration::from_secs(2) => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(AtomicError::InFlight) => {
                    return Err(AtomicError::Other(ClusterError::Nats(
                        "too many atomic batches in flight on the stream (JetStream's limit is 50)".into(),
                    )));
                }
                other => return other,
            }
        }
    }

    async fn publish_atomic_once(&self, messages: Vec<(String, HeaderMap, Bytes)>) -> Result<u64, AtomicError> {
        let n = messages.len();
        let id = nuid::next();
        let mut reply = None;
        for (i, (subject, mut headers, body)) in messages.into_iter().enumerate() {
            headers.insert("Nats-Batch-Id", id.as_str());
            headers.insert("Nats-Batch-Sequence", (i + 1).to_string().as_str());
            if i + 1 == n {
                headers.insert("Nats-Batch-Commit", "1");
                let r = self.client.request_with_headers(subject, headers, body).await;
                reply = Some(r.map_err(|e| AtomicError::Other(nats(e)))?);
            } else {
                self.client
                    .publish_with_headers(subject, headers, body)
                    .await
                    .map_err(|e| AtomicError::Other(nats(e)))?;
            }
        }
        let reply = reply.ok_or_else(|| AtomicError::Other(ClusterError::Nats("empty atomic batch".into())))?;
        #[derive(Deserialize)]
        struct Ack {
            #[serde(default)]
            seq: u64,
            error: Option<AckError>,
        }
        #[derive(Deserialize)]
        struct AckError {
            #[serde(default)]
            err_code: u64,
            #[serde(default)]
            description: String,
        }
        let ack: Ack = serde_json::from_slice(&reply.payload).map_err(|e| {
            AtomicError::Other(ClusterError::Nats(format!(
                "atomic batch answer {:?}: {e}",
                String::from_utf8_lossy(&reply.payload)
            )))
        })?;
        match ack.error {
            None => Ok(ack.seq),
            // 10071: wrong last sequence (of the subject).
            Some(e) if e.err_code == 10071 => Err(AtomicError::WrongLastSequence(e.description)),
            Some(e) if e.err_code == 10210 => Err(AtomicError::InFlight),
            Some(e) => Err(AtomicError::Other(ClusterError::Nats(format!(
                "atomic batch refused: {} (err_code {})",
                e.description, e.err_code
            )))),
        }
    }
}
