//! Topics in cluster mode: each partition is a file-storage stream replicated `replicas`
//! times; a record's offset is its stream sequence − 1, so offsets stay dense; the payload
//! is weir's own record encoding (timestamp, key, headers, value). Settings are metadata
//! records (`topic/<name>` in the meta bucket, [`super::store`]).

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::stream;
use bytes::Bytes;
use futures_util::StreamExt;

use super::{Cluster, ClusterError, nats};
use crate::storage::{Fetched, NewRecord, StoredRecord, record};
use crate::types::{TopicConfig, now_ms};

/// How long JetStream remembers a `Nats-Msg-Id` (a retried append within it is stored once).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

impl Cluster {
    /// Create the partition streams of a topic (idempotent: a node finishing another's
    /// create). An ephemeral topic's partitions are memory streams holding the newest
    /// [`crate::limits::EPHEMERAL_RING_RECORDS`] records: gone when the servers restart.
    pub async fn ensure_streams(&self, name: &str, config: &TopicConfig) -> Result<(), ClusterError> {
        for p in 0..config.partitions {
            let subject = self.names.produce_subject(name, p);
            let mut cfg = stream::Config {
                name: self.names.topic_stream(name, p),
                subjects: vec![subject.clone(), format!("{subject}.>")],
                num_replicas: self.replicas,
                storage: stream::StorageType::File,
                allow_direct: true,
                allow_atomic_publish: true,
                duplicate_window: DUPLICATE_WINDOW,
                max_age: config.retention_ms.map(Duration::from_millis).unwrap_or_default(),
                max_bytes: config.retention_bytes.map_or(-1, |b| b as i64),
                max_message_size: (config.max_message_bytes + 64 * 1024).min(i32::MAX as usize) as i32,
                ..Default::default()
            };
            if config.ephemeral {
                cfg.storage = stream::StorageType::Memory;
                cfg.max_messages = crate::limits::EPHEMERAL_RING_RECORDS as i64;
            }
            let what = format!("creating stream {}", cfg.name);
            super::retrying(&what, || async { self.js.get_or_create_stream(cfg.clone()).await.map_err(nats) }).await?;
        }
        Ok(())
    }

    /// Delete a topic's streams.
    pub async fn delete_streams(&self, name: &str, partitions: u32) {
        for p in 0..partitions {
            let _ = self.js.delete_stream(self.names.topic_stream(name, p)).await;
        }
    }

    /// Append `records` to partition `p` in order; they are acknowledged by the stream's
    /// quorum (written and fsynced on a majority of replicas) before this returns. One record
    /// is published with a `Nats-Msg-Id` and retried until acknowledged (stored once); more
    /// go as atomic batches of up to 1000 (each stored whole, in order, or not at all).
    /// Returns each record's offset and timestamp.
    pub async fn append(&self, topic: &str, p: u32, records: &[NewRecord]) -> Result<Vec<(u64, u64)>, ClusterError> {
        let subject = self.names.produce_subject(topic, p);
        let now = now_ms();
        let prefix = format!("{}-{}", self.node, nuid::next());
        let encoded = |r: &NewRecord| {
            let mut payload = Vec::with_capacity(r.size() + 32);
            record::encode(r, now, &mut payload);
            Bytes::from(payload)
        };
        if let [one] = records {
            let seq = self.publish_retrying(&subject, &prefix, encoded(one)).await?;
            return Ok(vec![(seq - 1, now)]);
        }
        let mut out = Vec::with_capacity(records.len());
        for (c, chunk) in records.chunks(super::commits::MAX_BATCH_MESSAGES).enumerate() {
            let messages = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let mut h = HeaderMap::new();
                    h.insert("Nats-Msg-Id", format!("{prefix}-{c}-{i}").as_str());
                    (subject.clone(), h, encoded(r))
                })
                .collect();
            let last = self.publish_atomic(messages).await.map_err(super::commits::AtomicError::into_cluster)?;
            let first = last + 1 - chunk.len() as u64;
            out.extend((first..=last).map(|seq| (seq - 1, now)));
        }
        Ok(out)
    }

    async fn publish(
        &self,
        subject: &str,
        id: &str,
        payload: Bytes,
    ) -> Result<async_nats::jetstream::context::PublishAckFuture, ClusterError> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", id);
        self.js.publish_with_headers(subject.to_string(), headers, payload).await.map_err(nats)
    }

    /// Publish until acknowledged (a stream electing a new leader answers after a few
    /// seconds), at most a minute; the message id makes retries land once.
    async fn publish_retrying(&self, subject: &str, id: &str, payload: Bytes) -> Result<u64, ClusterError> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut last = String::new();
        while std::time::Instant::now() < deadline {
            match self.publish(subject, id, payload.clone()).await {
                Ok(fut) => match fut.await {
                    Ok(ack) => return Ok(ack.sequence),
                    Err(e) => last = e.to_string(),
                },
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(ClusterError::Nats(format!("append to {subject} not acknowledged within 60 s: {last}")))
    }

    /// Up to `max_records` records (and about `max_bytes`) of partition `p` from `offset`,
    /// with the partition's high watermark. One request: JetStream's batched direct get
    /// (two when nothing is there: the bounds then come from the stream's info).
    pub async fn read(
        &self,
        topic: &str,
        p: u32,
        offset: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Fetched, ClusterError> {
        let stream = self.names.topic_stream(topic, p);
        let (records, (first, last)) = self.direct_batch(&stream, offset + 1, max_records, max_bytes, None).await?;
        let out = decode_all(&stream, records)?;
        if out.is_empty() {
            let (log_start, high_watermark) = self.bounds(topic, p).await?;
            return Ok(Fetched { records: out, log_start, high_watermark });
        }
        Ok(Fetched { records: out, log_start: first.saturating_sub(1), high_watermark: last })
    }

    /// Up to `max_records` records of partition `p` from `offset`, without the partition's
    /// bounds (a pipeline's feed polls: one request per poll).
    pub async fn read_records(
        &self,
        topic: &str,
        p: u32,
        offset: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredRecord>, ClusterError> {
        let stream = self.names.topic_stream(topic, p);
        let (records, _) = self.direct_batch(&stream, offset + 1, max_records, max_bytes, None).await?;
        decode_all(&stream, records)
    }

    /// `(log start, high watermark)` of partition `p`.
    pub async fn bounds(&self, topic: &str, p: u32) -> Result<(u64, u64), ClusterError> {
        let name = self.names.topic_stream(topic, p);
        let s = self.js.get_stream(&name).await.map_err(|e| ClusterError::Nats(format!("bounds of {name}: {e}")))?;
        let state = &s.cached_info().state;
        Ok((state.first_sequence.saturating_sub(1).min(state.last_sequence), state.last_sequence))
    }

    /// A batched direct get from `stream` starting at sequence `seq`, optionally of one
    /// subject: `(seq, subject, headers, payload)` of each message, and the stream's
    /// `(first, last)` sequences as far as the replies tell.
    #[allow(clippy::type_complexity)]
    pub(crate) async fn direct_batch(
        &self,
        stream: &str,
        seq: u64,
        max: usize,
        max_bytes: usize,
        subject: Option<&str>,
    ) -> Result<(Vec<(u64, String, HeaderMap, Bytes)>, (u64, u64)), ClusterError> {
        let inbox = self.client.new_inbox();
        let mut sub = self.client.subscribe(inbox.clone()).await.map_err(nats)?;
        let mut req = serde_json::json!({ "seq": seq.max(1), "batch": max.max(1), "max_bytes": max_bytes.clamp(1, i32::MAX as usize) });
        if let Some(s) = subject {
            req["next_by_subj"] = s.into();
        }
        self.client
            .publish_with_reply(format!("$JS.API.DIRECT.GET.{stream}"), inbox, Bytes::from(req.to_string()))
            .await
            .map_err(nats)?;
        let mut out = Vec::new();
        let mut last = 0u64;
        loop {
            let msg = match tokio::time::timeout(Duration::from_secs(10), sub.next()).await {
                Ok(Some(m)) => m,
                Ok(None) => return Err(ClusterError::Nats(format!("direct get on {stream}: subscription closed"))),
                Err(_) => return Err(ClusterError::Nats(format!("direct get on {stream}: no answer in 10 s"))),
            };
            let headers = msg.headers.clone().unwrap_or_default();
            let header = |name: &str| headers.get(name).map(|v| v.as_str().to_string());
            if let Some(status) = msg.status {
                // 204: end of the batch; 404: nothing at or after `seq`.
                match status.as_u16() {
                    204 | 404 => break,
                    code => {
                        return Err(ClusterError::Nats(format!(
                            "direct get on {stream}: status {code} {}",
                            msg.description.unwrap_or_default()
                        )));
                    }
                }
            }
            let s: u64 = header("Nats-Sequence").and_then(|v| v.parse().ok()).unwrap_or(0);
            let subj = header("Nats-Subject").unwrap_or_default();
            // Messages after this one (of the subject asked for, if one was).
            let pending: u64 = header("Nats-Num-Pending").and_then(|v| v.parse().ok()).unwrap_or(0);
            last = last.max(s + pending);
            out.push((s, subj, headers, msg.payload));
        }
        let _ = sub.unsubscribe().await;
        let first = out.first().map_or(seq, |m| m.0);
        Ok((out, (first, last)))
    }
}

/// Records of a partition stream from a direct get: offset = sequence − 1.
fn decode_all(stream: &str, records: Vec<(u64, String, HeaderMap, Bytes)>) -> Result<Vec<StoredRecord>, ClusterError> {
    records
        .into_iter()
        .map(|(seq, _, _, payload)| {
            record::decode(seq - 1, payload)
                .map_err(|message| ClusterError::Corrupt { what: format!("{stream} seq {seq}"), message })
        })
        .collect()
}

impl Cluster {
    /// The last message on `subject` of `stream`: `(seq, headers, payload)`, or `None`.
    pub(crate) async fn last_by_subject(
        &self,
        stream: &str,
        subject: &str,
    ) -> Result<Option<(u64, HeaderMap, Bytes)>, ClusterError> {
        let req = serde_json::json!({ "last_by_subj": subject }).to_string();
        let msg =
            self.client.request(format!("$JS.API.DIRECT.GET.{stream}"), Bytes::from(req)).await.map_err(|e| match e
                .kind()
            {
                async_nats::RequestErrorKind::NoResponders => ClusterError::NoResponders(stream.to_string()),
                _ => ClusterError::Nats(format!("reading the last message of {subject}: {e}")),
            })?;
        if let Some(status) = msg.status {
            return match status.as_u16() {
                404 => Ok(None),
                code => Err(ClusterError::Nats(format!(
                    "reading the last message of {subject}: status {code} {}",
                    msg.description.unwrap_or_default()
                ))),
            };
        }
        let headers = msg.headers.unwrap_or_default();
        let seq = headers.get("Nats-Sequence").and_then(|v| v.as_str().parse().ok()).unwrap_or(0);
        Ok(Some((seq, headers, msg.payload)))
    }
}

impl Cluster {
    /// The last message on `subject` of `stream` as its leader has it (not a replica that may
    /// lag): `(seq, headers, payload)`, or `None`. For what a commit's correctness rests on.
    pub(crate) async fn last_by_subject_leader(
        &self,
        stream: &str,
        subject: &str,
    ) -> Result<Option<(u64, HeaderMap, Bytes)>, ClusterError> {
        let s = self.js.get_stream_no_info(stream).await.map_err(nats)?;
        match s.get_last_raw_message_by_subject(subject).await {
            Ok(m) => Ok(Some((m.sequence, m.headers, m.payload))),
            Err(e) if e.kind() == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(ClusterError::Nats(format!("reading the last message of {subject}: {e}"))),
        }
    }

    /// The last message of every subject matching `filter` in `stream`, from its leader (an
    /// ephemeral consumer delivering the last per subject): `(subject, headers, payload)`.
    /// Tried again while the stream elects a leader.
    pub(crate) async fn last_per_subject(
        &self,
        stream: &str,
        filter: &str,
    ) -> Result<Vec<(String, HeaderMap, Bytes)>, ClusterError> {
        let what = format!("reading the last messages of {filter}");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match self.last_per_subject_once(stream, filter).await {
                Ok(out) => return Ok(out),
                Err(e) if std::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "{what}: retrying");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(ClusterError::Nats(format!("{what}: {e}"))),
            }
        }
    }

    async fn last_per_subject_once(
        &self,
        stream: &str,
        filter: &str,
    ) -> Result<Vec<(String, HeaderMap, Bytes)>, ClusterError> {
        use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy};
        let s = self.js.get_stream_no_info(stream).await.map_err(nats)?;
        let mut c = s
            .create_consumer(consumer::pull::Config {
                deliver_policy: DeliverPolicy::LastPerSubject,
                filter_subject: filter.to_string(),
                ack_policy: AckPolicy::None,
                inactive_threshold: Duration::from_secs(60),
                memory_storage: true,
                num_replicas: 1,
                ..Default::default()
            })
            .await
            .map_err(nats)?;
        let pending = c.info().await.map_err(nats)?.num_pending;
        let mut out = Vec::with_capacity(pending as usize);
        while (out.len() as u64) < pending {
            let mut batch =
                c.fetch().max_messages(1000).expires(Duration::from_secs(5)).messages().await.map_err(nats)?;
            let before = out.len();
            while let Some(m) = batch.next().await {
                let m = m.map_err(nats)?;
                out.push((m.subject.to_string(), m.headers.clone().unwrap_or_default(), m.payload.clone()));
            }
            if out.len() == before {
                return Err(ClusterError::Nats(format!("reading {filter}: {} of {pending} arrived", out.len())));
            }
        }
        let name = c.cached_info().name.clone();
        let _ = s.delete_consumer(&name).await;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::names::{escape, unescape};

    #[test]
    fn escaped_names_come_back() {
        for n in ["orders", "a.b_c", "ü-x y"] {
            assert_eq!(unescape(&escape(n)), n);
        }
    }
}
