//! Replaying a dead-letter topic once its cause is fixed: each record goes back to the topic
//! its `weir-dlq-topic` header names (or one the caller picks), without the `weir-dlq-*`
//! headers. Progress lives in the group `weir.dlq-replay`, committed in the same write as
//! the replayed records, so a replay that stops half way resumes without sending any twice.

use std::collections::BTreeMap;

use weir_sdk::headers;

use super::{Broker, BrokerError, Reply, Result};
use crate::auth::{Kind, Need, Permission};
use crate::storage::{Commit, NewRecord, OffsetCommit};

/// The group that remembers how far each dead-letter topic was replayed.
pub const REPLAY_GROUP: &str = "weir.dlq-replay";

/// Records read and replayed per commit.
const REPLAY_CHUNK: usize = 1_000;

impl Broker {
    /// Replay `dlq` for `owner` (checked against the owner's write grants on every target).
    pub(super) async fn replay_dead_letters(
        &self,
        dlq: &str,
        to: Option<String>,
        owner: Option<&str>,
    ) -> Result<Reply> {
        let who = match owner {
            Some(name) => self.authority.named(name)?,
            None => None,
        };
        let topic = self.store.topic(dlq)?;
        let committed = self.store.committed(REPLAY_GROUP, &topic)?;
        let mut replayed = 0u64;
        for p in 0..topic.partition_count() {
            let part = topic.partition(p)?;
            let mut offset = committed[p as usize].unwrap_or(0).max(part.log_start());
            loop {
                let records = self.store.read(&topic, p, offset, REPLAY_CHUNK, crate::limits::MAX_FRAME_BYTES / 2)?;
                let Some(last) = records.last().map(|r| r.offset) else { break };
                let mut by_target: BTreeMap<String, Vec<NewRecord>> = BTreeMap::new();
                for rec in records {
                    let original = rec.headers.iter().find(|(k, _)| k == headers::DLQ_TOPIC).map(|(_, v)| v.clone());
                    let Some(target) = to.clone().or(original) else {
                        return Err(BrokerError::BadRequest(format!(
                            "the record at {dlq}/{p}@{} has no {} header; name a topic to replay into",
                            rec.offset,
                            headers::DLQ_TOPIC
                        )));
                    };
                    let kept = rec.headers.into_iter().filter(|(k, _)| !k.starts_with(headers::DLQ_PREFIX)).collect();
                    by_target.entry(target).or_default().push(NewRecord {
                        key: rec.key,
                        value: rec.value,
                        headers: kept,
                    });
                }
                if let Some(who) = &who {
                    let needs: Vec<Need<'_>> = by_target
                        .keys()
                        .map(|t| Need::on(Permission::Write, Kind::Topic, t.as_str()).because("a dead letter's topic"))
                        .collect();
                    who.require(&needs)?;
                }
                let mut commit = Commit::default();
                for (target, records) in by_target {
                    replayed += records.len() as u64;
                    commit.appends.extend(self.partition_records(&target, None, records)?.0.appends);
                }
                let next_offset = last + 1;
                commit.offsets.push(OffsetCommit {
                    group: REPLAY_GROUP.to_string(),
                    topic: topic.clone(),
                    partition: p,
                    next_offset,
                });
                self.store.submit(commit).await?;
                offset = next_offset;
            }
        }
        Ok(Reply::Count(replayed))
    }
}
