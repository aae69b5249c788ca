//! Replaying a dead-letter topic once its cause is fixed: each record goes back to the topic
//! its `weir-dlq-topic` header names (or one the caller picks), without the `weir-dlq-*`
//! headers. Progress lives in the group `weir.dlq-replay`, committed in the same write as
//! the replayed records, so a replay that stops half way resumes without sending any twice.

use std::collections::{BTreeMap, BTreeSet};

use weir_sdk::headers;

use super::{Broker, BrokerError, Reply, Result};
use crate::auth::{Kind, Need, Permission};
use crate::storage::{Commit, NewRecord, OffsetCommit, StoredRecord, Topic};

/// The group that remembers how far each dead-letter topic was replayed.
pub const REPLAY_GROUP: &str = "weir.dlq-replay";

/// Records read and replayed per commit.
const REPLAY_CHUNK: usize = 1_000;

impl Broker {
    /// Replay `dlq` for `owner`. Only what was in the topic when the replay began is sent (a
    /// pipeline that fails again while it runs dead-letters into the topic; those wait for the
    /// next replay), every target is checked against the owner's write grants before anything
    /// is written, and replays run one at a time, so none sends a record another already sent.
    pub(super) async fn replay_dead_letters(
        &self,
        dlq: &str,
        to: Option<String>,
        owner: Option<&str>,
    ) -> Result<Reply> {
        if to.as_deref() == Some(dlq) {
            return Err(BrokerError::BadRequest(format!(
                "replaying `{dlq}` into itself would never end; name another topic"
            )));
        }
        let _one_at_a_time = self.replaying.lock().await;
        let who = match owner {
            Some(name) => self.authority.named(name)?,
            None => None,
        };
        let topic = self.store.find_topic(dlq).await?;
        let committed = self.store.committed(REPLAY_GROUP, &topic).await?;
        let ranges: Vec<(u32, u64, u64)> = self
            .store
            .all_bounds(&topic)
            .await?
            .into_iter()
            .enumerate()
            .map(|(p, (start, end))| (p as u32, committed[p].unwrap_or(0).max(start), end))
            .collect();
        if let Some(who) = &who {
            let targets = self.replay_targets(&topic, &ranges, to.as_deref()).await?;
            let needs: Vec<Need<'_>> = targets
                .iter()
                .map(|t| Need::on(Permission::Write, Kind::Topic, t.as_str()).because("a dead letter's topic"))
                .collect();
            who.require(&needs)?;
        }
        let mut replayed = 0u64;
        for (p, mut offset, end) in ranges {
            while offset < end {
                let records = self.read_chunk(&topic, p, offset, end).await?;
                let Some(last) = records.last().map(|r| r.offset) else { break };
                let mut commit = Commit::default();
                for (target, records) in by_target(dlq, p, records, to.as_deref())? {
                    replayed += records.len() as u64;
                    commit.appends.extend(self.partition_records(&target, None, records).await?.0.appends);
                }
                commit.offsets.push(OffsetCommit {
                    group: REPLAY_GROUP.to_string(),
                    topic: topic.clone(),
                    partition: p,
                    next_offset: last + 1,
                });
                self.store.submit(commit).await?;
                offset = last + 1;
            }
        }
        Ok(Reply::Count(replayed))
    }

    /// Every topic the replay of `ranges` would write to.
    async fn replay_targets(
        &self,
        topic: &Topic,
        ranges: &[(u32, u64, u64)],
        to: Option<&str>,
    ) -> Result<BTreeSet<String>> {
        if let Some(to) = to {
            return Ok(BTreeSet::from([to.to_string()]));
        }
        let mut targets = BTreeSet::new();
        for &(p, mut offset, end) in ranges {
            while offset < end {
                let records = self.read_chunk(topic, p, offset, end).await?;
                let Some(last) = records.last().map(|r| r.offset) else { break };
                for r in &records {
                    targets.insert(original_topic(&topic.name, p, r)?);
                }
                offset = last + 1;
            }
        }
        Ok(targets)
    }

    /// Up to [`REPLAY_CHUNK`] records of partition `p` from `offset`, none at or past `end`.
    async fn read_chunk(&self, topic: &Topic, p: u32, offset: u64, end: u64) -> Result<Vec<StoredRecord>> {
        let max = REPLAY_CHUNK.min((end - offset) as usize);
        let mut records = self.store.read(topic, p, offset, max, crate::limits::MAX_FRAME_BYTES / 2).await?.records;
        records.retain(|r| r.offset < end);
        Ok(records)
    }
}

/// The topic a dead letter came from (its `weir-dlq-topic` header).
fn original_topic(dlq: &str, p: u32, r: &StoredRecord) -> Result<String> {
    r.headers.iter().find(|(k, _)| k == headers::DLQ_TOPIC).map(|(_, v)| v.clone()).ok_or_else(|| {
        BrokerError::BadRequest(format!(
            "the record at {dlq}/{p}@{} has no {} header; name a topic to replay into",
            r.offset,
            headers::DLQ_TOPIC
        ))
    })
}

/// Records grouped by where they go, without their `weir-dlq-*` headers.
fn by_target(
    dlq: &str,
    p: u32,
    records: Vec<StoredRecord>,
    to: Option<&str>,
) -> Result<BTreeMap<String, Vec<NewRecord>>> {
    let mut out: BTreeMap<String, Vec<NewRecord>> = BTreeMap::new();
    for rec in records {
        let target = match to {
            Some(t) => t.to_string(),
            None => original_topic(dlq, p, &rec)?,
        };
        let kept = rec.headers.into_iter().filter(|(k, _)| !k.starts_with(headers::DLQ_PREFIX)).collect();
        out.entry(target).or_default().push(NewRecord { key: rec.key, value: rec.value, headers: kept });
    }
    Ok(out)
}
