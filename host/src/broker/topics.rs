//! Topic commands: create, delete, list, describe, produce, fetch (long poll), offsets by
//! time, and request/reply.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::select_all;

use super::command::{FetchPosition, FetchedPartition, Reply, TopicCommand, TopicInfo};
use super::producers::{Sequenced, Verdict};
use super::replies::{CORRELATION_ID, REPLY_TO, REPLY_TOPIC};
use super::{Broker, BrokerError, Result};
use crate::limits;
use crate::storage::{Append, Commit, NewRecord, StoreError, Topic};

impl Broker {
    pub(super) async fn topic_command(&self, command: TopicCommand) -> Result<Reply> {
        match command {
            TopicCommand::Create { name, config } => {
                check_topic(&name, &config)?;
                let topic = self.store.create_topic(&name, config).await?;
                Ok(Reply::Topic(self.topic_info(&topic).await?))
            }
            TopicCommand::Delete { name } => {
                self.refuse_if_used(&format!("topic `{name}`"), "used by", |s| {
                    s.source.topic() == Some(name.as_str()) || s.sink == name
                })?;
                self.store.delete_topic(&name).await?;
                Ok(Reply::Done)
            }
            TopicCommand::List => {
                let mut out = Vec::new();
                for t in self.store.topics().await? {
                    out.push(self.topic_info(&t).await?);
                }
                Ok(Reply::Topics(out))
            }
            TopicCommand::Describe { name } => {
                Ok(Reply::Topic(self.topic_info(&*self.store.find_topic(&name).await?).await?))
            }
            TopicCommand::Produce { topic, partition, records, sequence: None } => {
                self.produce(&topic, partition, records).await
            }
            TopicCommand::Produce { topic, partition, records, sequence: Some(seq) } => {
                let partition = partition.ok_or_else(|| {
                    BrokerError::BadRequest("an idempotent producer's batch names its partition".into())
                })?;
                self.produce_sequenced(&topic, partition, records, seq).await
            }
            TopicCommand::NewProducer => Ok(Reply::Producer(self.producers.new_id())),
            TopicCommand::Fetch { topic, positions, max_records, max_bytes, max_wait } => {
                self.fetch(&topic, &positions, max_records, max_bytes, max_wait).await
            }
            TopicCommand::OffsetsForTime { topic, timestamp_ms } => {
                let t = self.store.find_topic(&topic).await?;
                let mut offsets = Vec::with_capacity(t.partition_count() as usize);
                for p in 0..t.partition_count() {
                    offsets.push(Some(self.store.offset_for_time(&t, p, timestamp_ms).await?));
                }
                Ok(Reply::Offsets(offsets))
            }
            TopicCommand::Request { topic, record, timeout } => self.request_reply(&topic, record, timeout).await,
            TopicCommand::ReplayDeadLetters { topic, to } => self.replay_dead_letters(&topic, to, None).await,
        }
    }

    /// Partition the records and submit them as one commit (at the first poll, so
    /// produces from one connection commit in order); resolves once durable.
    async fn produce(&self, topic: &str, partition: Option<u32>, records: Vec<NewRecord>) -> Result<Reply> {
        let (commit, slots) = self.partition_records(topic, partition, records).await?;
        let receipt = self.store.submit(commit).await?;
        // slots[i] = (append index, index within it, partition) of record i.
        Ok(Reply::Produced(slots.into_iter().map(|(a, i, p)| (p, receipt.first_offsets[a] + i as u64)).collect()))
    }

    /// An idempotent producer's batch into one partition: stored once, with the producer's
    /// last batch recorded in the same commit; a retry gets the first time's offsets.
    async fn produce_sequenced(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<NewRecord>,
        seq: Sequenced,
    ) -> Result<Reply> {
        let count = records.len();
        let (mut commit, _) = self.partition_records(topic, Some(partition), records).await?;
        // Refused for its records before it takes a place in the producer's sequence: a later
        // batch pipelined behind it then gets OUT_OF_ORDER, and the producer resends in order.
        crate::storage::validate_commit(&commit)?;
        let t = commit.appends[0].topic.clone();
        let key = match self.producers.admit(&self.store, &t, partition, seq, count as u32).await? {
            Verdict::Duplicate { base_offset } => {
                return Ok(Reply::Produced((0..count as u64).map(|i| (partition, base_offset + i)).collect()));
            }
            Verdict::Store { key, value } => {
                commit.meta.push((key.clone(), Some(value)));
                key
            }
        };
        match self.store.submit(commit).await {
            Ok(receipt) => {
                let base = receipt.first_offsets[0];
                self.producers.stored(&key, seq, base);
                Ok(Reply::Produced((0..count as u64).map(|i| (partition, base + i)).collect()))
            }
            Err(e) => {
                self.producers.forget(&key, seq);
                Err(e.into())
            }
        }
    }

    #[allow(clippy::type_complexity)]
    /// Records into one [`Append`] per partition they go to (each to `partition` if given,
    /// else by key, else round-robin), each checked against the topic's limits: one commit,
    /// which the store makes atomic (a single node: one write; a cluster: each partition's
    /// records together).
    pub(super) async fn partition_records(
        &self,
        topic: &str,
        partition: Option<u32>,
        records: Vec<NewRecord>,
    ) -> Result<(Commit, Vec<(usize, usize, u32)>)> {
        let topic = self.store.find_topic(topic).await?;
        if let Some(p) = partition {
            topic.partition(p)?;
        }
        if records.is_empty() {
            return Err(BrokerError::BadRequest("produce request has no records".into()));
        }
        self.check_schemas(&topic, &records).await?;
        let mut appends: Vec<Append> = Vec::new();
        let mut by_partition: BTreeMap<u32, usize> = BTreeMap::new();
        let mut slots = Vec::with_capacity(records.len());
        for record in records {
            if record.value.len() > topic.config.max_message_bytes {
                return Err(StoreError::MessageTooLarge {
                    topic: topic.name.clone(),
                    size: record.value.len(),
                    max: topic.config.max_message_bytes,
                }
                .into());
            }
            let p = partition.unwrap_or_else(|| topic.partition_for(record.key.as_deref()));
            let a = *by_partition.entry(p).or_insert_with(|| {
                appends.push(Append { topic: topic.clone(), partition: p, records: Vec::new() });
                appends.len() - 1
            });
            slots.push((a, appends[a].records.len(), p));
            appends[a].records.push(record);
        }
        Ok((Commit { appends, ..Commit::default() }, slots))
    }

    /// Refuse the whole request if a record fails the topic's schema checks (its key or
    /// value subject): the one check every door's produce passes.
    pub(super) async fn check_schemas(&self, topic: &Topic, records: &[NewRecord]) -> Result<()> {
        use crate::schemas::Part;
        let config = &topic.config;
        if config.validation == crate::types::Validation::None
            || (config.key_schema.is_none() && config.value_schema.is_none())
        {
            return Ok(());
        }
        let mut seen = Vec::new();
        for (index, record) in records.iter().enumerate() {
            for (part, bytes) in [(Part::Key, record.key.as_deref()), (Part::Value, Some(&record.value[..]))] {
                if let Err(refusal) = self.schemas.check_record(&topic.name, config, part, bytes, &mut seen).await? {
                    self.metrics.count_refused(&topic.name, refusal.class);
                    tracing::info!(topic = %topic.name, index, reason = %refusal.reason, "record refused by its schema check");
                    return Err(BrokerError::InvalidRecord {
                        topic: topic.name.clone(),
                        index,
                        reason: refusal.reason,
                    });
                }
            }
        }
        Ok(())
    }

    /// Read from each asked partition; if none has anything, wait (long poll) until one does.
    async fn fetch(
        &self,
        topic: &str,
        positions: &[FetchPosition],
        max_records: usize,
        max_bytes: usize,
        max_wait: Duration,
    ) -> Result<Reply> {
        let (topic, max_records, max_bytes, wait) =
            self.fetch_bounds(topic, positions, max_records, max_bytes, max_wait).await?;
        let first = self.read_partitions(&topic, positions, max_records, max_bytes).await?;
        if !first.iter().all(|p| p.records.is_empty()) || wait.is_zero() || positions.is_empty() {
            return Ok(Reply::Fetched(first));
        }
        let waits = positions.iter().map(|pos| {
            let topic = topic.clone();
            let pos = *pos;
            Box::pin(async move { self.store.wait_for(&topic, pos.partition, pos.offset, wait).await })
        });
        select_all(waits).await;
        Ok(Reply::Fetched(self.read_partitions(&topic, positions, max_records, max_bytes).await?))
    }

    /// A fetch's topic (every asked partition checked) and its limits held to the server's:
    /// `(topic, max records, max bytes, wait)`.
    pub(super) async fn fetch_bounds(
        &self,
        topic: &str,
        positions: &[FetchPosition],
        max_records: usize,
        max_bytes: usize,
        max_wait: Duration,
    ) -> Result<(std::sync::Arc<Topic>, usize, usize, Duration)> {
        let topic = self.store.find_topic(topic).await?;
        for pos in positions {
            topic.partition(pos.partition)?;
        }
        Ok((
            topic,
            max_records.clamp(1, limits::MAX_FETCH_RECORDS),
            max_bytes.clamp(1, limits::MAX_FETCH_BYTES),
            max_wait.min(Duration::from_millis(limits::MAX_FETCH_WAIT_MS)),
        ))
    }

    async fn read_partitions(
        &self,
        topic: &Topic,
        positions: &[FetchPosition],
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<FetchedPartition>> {
        let (mut records_left, mut bytes_left) = (max_records, max_bytes);
        let mut out = Vec::with_capacity(positions.len());
        for pos in positions {
            let fetched = self.store.read(topic, pos.partition, pos.offset, records_left, bytes_left).await?;
            records_left -= fetched.records.len().min(records_left);
            let bytes: usize = fetched.records.iter().map(|r| r.value.len()).sum();
            bytes_left = bytes_left.saturating_sub(bytes).max(1);
            let first_offset = fetched.records.first().map_or(pos.offset.max(fetched.log_start), |r| r.offset);
            out.push(FetchedPartition {
                partition: pos.partition,
                first_offset,
                high_watermark: fetched.high_watermark,
                records: fetched.records,
            });
        }
        Ok(out)
    }

    /// Produce `record` with a fresh correlation id and the reply topic, and wait for the
    /// record carrying that id to appear there.
    async fn request_reply(&self, topic: &str, mut record: NewRecord, timeout: Duration) -> Result<Reply> {
        let t = self.store.find_topic(topic).await?;
        self.check_schemas(&t, std::slice::from_ref(&record)).await?;
        let (id, reply) = self.replies.register().map_err(BrokerError::Busy)?;
        record.headers.retain(|(k, _)| k != CORRELATION_ID && k != REPLY_TO);
        record.headers.push((CORRELATION_ID.into(), id.clone()));
        record.headers.push((REPLY_TO.into(), REPLY_TOPIC.into()));
        let partition = t.partition_for(record.key.as_deref());
        if let Err(e) = self.store.append(&t, partition, vec![record]).await {
            self.replies.forget(&id);
            return Err(e.into());
        }
        let timeout = timeout.clamp(Duration::from_millis(1), Duration::from_millis(limits::MAX_FETCH_WAIT_MS));
        match tokio::time::timeout(timeout, reply).await {
            Ok(Ok(r)) => Ok(Reply::Reply(r)),
            _ => {
                self.replies.forget(&id);
                Err(BrokerError::Timeout(format!(
                    "no reply within {} ms to request {id} sent to topic `{topic}`; is a pipeline or consumer answering on `{topic}` (replies go to `{REPLY_TOPIC}` with header {CORRELATION_ID})?",
                    timeout.as_millis()
                )))
            }
        }
    }

    pub(super) async fn topic_info(&self, topic: &Topic) -> Result<TopicInfo> {
        Ok(TopicInfo {
            name: topic.name.clone(),
            config: topic.config.clone(),
            durability: topic.config.durability.unwrap_or(self.store.default_durability()),
            created_ms: topic.created_ms,
            partitions: self.store.all_bounds(topic).await?,
        })
    }
}

/// A new topic's name and settings, checked before any store sees them.
fn check_topic(name: &str, config: &crate::types::TopicConfig) -> Result<()> {
    crate::types::check_name("topic", name).map_err(|e| BrokerError::BadRequest(e.to_string()))?;
    if config.partitions == 0 || config.partitions > limits::MAX_PARTITIONS {
        return Err(BrokerError::BadRequest(format!(
            "partitions must be between 1 and {}, got {}",
            limits::MAX_PARTITIONS,
            config.partitions
        )));
    }
    if config.max_message_bytes == 0 || config.max_message_bytes > limits::MAX_FRAME_BYTES / 2 {
        return Err(BrokerError::BadRequest(format!(
            "max message bytes must be between 1 and {}, got {}",
            limits::MAX_FRAME_BYTES / 2,
            config.max_message_bytes
        )));
    }
    Ok(())
}
