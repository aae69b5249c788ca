//! Queues in cluster mode: one node at a time — the coordinator, chosen among the live nodes
//! like a pipeline partition's owner — holds every queue's index and runs the queue commands
//! (other nodes hand them to it), with the same code as a single node. What it writes goes to
//! one stream, a message per key of the queues' key space (the last one per subject is the
//! key's value; a deletion is a marker that expires after an hour), so a new coordinator reads
//! the whole state back.
//!
//! Fencing: each write is an atomic batch whose last message, on the fence subject, expects
//! the sequence of the previous fence message. A new coordinator first writes a fence message
//! of its own (expecting the last one it read), so a coordinator that lost its place — paused
//! past its lease, cut off — has its next write refused whole and stops serving the queues.

use std::sync::Arc;

use async_nats::HeaderMap;
use async_nats::jetstream::stream;
use bytes::Bytes;

use super::commits::{AtomicError, MAX_BATCH_MESSAGES};
use super::names::{hex, unhex};
use super::{Cluster, ClusterError, nats};

/// How long a deletion marker stays: long enough for any takeover reading the stream, short
/// enough that a busy queue does not keep one marker per message it ever had.
const DELETED_TTL: &str = "3600";

/// The queues' stream, and this node's place in its fence.
pub struct QueueLog {
    cluster: Arc<Cluster>,
    stream: String,
    /// The sequence of this node's last fence message; `None` while it does not coordinate.
    fence: tokio::sync::Mutex<Option<u64>>,
}

impl QueueLog {
    /// The queues' stream, created if missing.
    pub async fn open(cluster: Arc<Cluster>) -> Result<QueueLog, ClusterError> {
        let stream = cluster.names.queue_stream();
        let config = stream::Config {
            name: stream.clone(),
            subjects: vec![cluster.names.queue_subject(">")],
            num_replicas: cluster.replicas,
            storage: stream::StorageType::File,
            allow_direct: true,
            allow_atomic_publish: true,
            allow_message_ttl: true,
            max_messages_per_subject: 1,
            ..Default::default()
        };
        let what = format!("creating stream {stream}");
        super::retrying(&what, || async { cluster.js.get_or_create_stream(config.clone()).await.map_err(nats) })
            .await?;
        Ok(QueueLog { cluster, stream, fence: tokio::sync::Mutex::new(None) })
    }

    /// Become the writer: fence the previous coordinator out, then read every key's value.
    pub async fn take_over(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>, ClusterError> {
        let mut fence = self.fence.lock().await;
        let subject = self.cluster.names.queue_subject("fence");
        let taken = loop {
            let last = self.cluster.last_by_subject_leader(&self.stream, &subject).await?.map_or(0, |m| m.0);
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Expected-Last-Subject-Sequence", last.to_string().as_str());
            let body = Bytes::from(format!("taken over by {}", self.cluster.node));
            match self.cluster.publish_atomic(vec![(subject.clone(), headers, body)]).await {
                Ok(seq) => break seq,
                Err(AtomicError::WrongLastSequence(_)) => continue,
                Err(e) => return Err(e.into_cluster()),
            }
        };
        let prefix = self.cluster.names.queue_subject("k.");
        let mut entries = Vec::new();
        for (subject, headers, payload) in
            self.cluster.last_per_subject(&self.stream, &self.cluster.names.queue_subject("k.>")).await?
        {
            if headers.get("Weir-Deleted").is_some() {
                continue;
            }
            let key = subject
                .strip_prefix(&prefix)
                .and_then(unhex)
                .ok_or_else(|| ClusterError::Corrupt { what: subject.clone(), message: "not a queue key".into() })?;
            entries.push((key, payload.to_vec()));
        }
        *fence = Some(taken);
        Ok(entries)
    }

    /// Stop writing (another node coordinates now).
    pub async fn release(&self) {
        *self.fence.lock().await = None;
    }

    /// Write changes of the queues' key space (`None` deletes), fenced; in batches of what
    /// one atomic batch holds, each fenced on the one before. [`ClusterError::Fenced`] when
    /// another node took over: nothing of the refused batch landed.
    pub async fn write(&self, writes: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<(), ClusterError> {
        let mut fence = self.fence.lock().await;
        let Some(mut last) = *fence else {
            return Err(ClusterError::Fenced(format!(
                "node {} does not coordinate the queues (any more); ask again",
                self.cluster.node
            )));
        };
        let fence_subject = self.cluster.names.queue_subject("fence");
        for chunk in writes.chunks(MAX_BATCH_MESSAGES - 1) {
            let mut messages: Vec<(String, HeaderMap, Bytes)> = chunk
                .iter()
                .map(|(k, v)| {
                    let subject = self.cluster.names.queue_subject(&format!("k.{}", hex(k)));
                    let mut headers = HeaderMap::new();
                    match v {
                        Some(v) => (subject, headers, Bytes::copy_from_slice(v)),
                        None => {
                            headers.insert("Weir-Deleted", "1");
                            headers.insert("Nats-TTL", DELETED_TTL);
                            (subject, headers, Bytes::new())
                        }
                    }
                })
                .collect();
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Expected-Last-Subject-Sequence", last.to_string().as_str());
            messages.push((fence_subject.clone(), headers, Bytes::from_static(b"write")));
            match self.cluster.publish_atomic(messages).await {
                Ok(seq) => last = seq,
                Err(AtomicError::WrongLastSequence(m)) => {
                    *fence = None;
                    return Err(ClusterError::Fenced(format!(
                        "another node took the queues over ({m}); this node's write was refused whole"
                    )));
                }
                Err(e) => {
                    // Landed whole or not at all, and this node cannot tell which: it stops
                    // writing, and takes over again (reading what landed) if it is still the
                    // coordinator.
                    *fence = None;
                    return Err(e.into_cluster());
                }
            }
        }
        *fence = Some(last);
        Ok(())
    }

    /// Whether this node holds the fence.
    pub async fn holding(&self) -> bool {
        self.fence.lock().await.is_some()
    }
}
