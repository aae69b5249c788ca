//! A consumer-group member on top of [`Client`]: joins the group, heart-beats, reads the
//! partitions currently assigned to it from the group's committed offsets, and commits
//! fenced by its generation.
//!
//! Delivery is at least once: records read but not committed before a rebalance moves their
//! partition are read again by the partition's next owner.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::client::{Client, ClientError};
use crate::wire::{ErrorCode, FetchPosition, FetchedRecord, Membership};

/// A member of a consumer group reading one topic.
pub struct GroupConsumer<'a> {
    client: &'a Client,
    group: String,
    topic: String,
    membership: Membership,
    session: Duration,
    last_beat: Instant,
    /// Next offset to read per assigned partition.
    positions: BTreeMap<u32, u64>,
}

impl<'a> GroupConsumer<'a> {
    /// Join `group` reading `topic`; a member silent for `session` is dropped.
    pub async fn join(
        client: &'a Client,
        group: &str,
        topic: &str,
        session: Duration,
    ) -> Result<GroupConsumer<'a>, ClientError> {
        let membership = client.join_group(group, topic, None, session).await?;
        let mut c = GroupConsumer {
            client,
            group: group.into(),
            topic: topic.into(),
            membership: membership.clone(),
            session,
            last_beat: Instant::now(),
            positions: BTreeMap::new(),
        };
        c.assign(membership).await?;
        Ok(c)
    }

    /// This member's id.
    pub fn member_id(&self) -> &str {
        &self.membership.member_id
    }

    /// Partitions assigned now.
    pub fn partitions(&self) -> Vec<u32> {
        self.membership.partitions.clone()
    }

    /// The next offset to read per assigned partition.
    pub fn positions(&self) -> &BTreeMap<u32, u64> {
        &self.positions
    }

    /// Read `partition` from `offset` next (it must be assigned to this member).
    pub fn seek(&mut self, partition: u32, offset: u64) {
        if let Some(p) = self.positions.get_mut(&partition) {
            *p = offset;
        }
    }

    /// Heartbeat now, picking up a new assignment if the group rebalanced.
    pub async fn heartbeat(&mut self) -> Result<&Membership, ClientError> {
        let m = match self.client.heartbeat(&self.group, &self.topic, &self.membership.member_id).await {
            Ok(m) => m,
            // Dropped for silence: join again under the same id.
            Err(ClientError::Server(e)) if e.code == ErrorCode::NotFound => {
                self.client
                    .join_group(&self.group, &self.topic, Some(self.membership.member_id.clone()), self.session)
                    .await?
            }
            Err(e) => return Err(e),
        };
        self.last_beat = Instant::now();
        if m.generation != self.membership.generation {
            self.assign(m).await?;
        }
        Ok(&self.membership)
    }

    async fn assign(&mut self, m: Membership) -> Result<(), ClientError> {
        let committed = self.client.fetch_offsets(&self.group, &self.topic).await?;
        let info = self.client.describe_topic(&self.topic).await?;
        let kept: BTreeMap<u32, u64> =
            self.positions.iter().filter(|(p, _)| m.partitions.contains(p)).map(|(p, o)| (*p, *o)).collect();
        self.positions = m
            .partitions
            .iter()
            .map(|p| {
                let start = info.partitions[*p as usize].0;
                let at = kept.get(p).copied().or(committed[*p as usize]).unwrap_or(start).max(start);
                (*p, at)
            })
            .collect();
        self.membership = m;
        Ok(())
    }

    /// Read what is available on the assigned partitions (waiting up to `wait`), advancing the
    /// positions; heart-beats when a third of the session has passed.
    pub async fn poll(&mut self, max: u32, wait: Duration) -> Result<Vec<(u32, u64, FetchedRecord)>, ClientError> {
        if self.last_beat.elapsed() >= self.session / 3 {
            self.heartbeat().await?;
        }
        if self.positions.is_empty() {
            tokio::time::sleep(wait.min(self.session / 3)).await;
            return Ok(Vec::new());
        }
        let wait = wait.min(self.session / 3);
        let positions = self.positions.iter().map(|(p, o)| FetchPosition { partition: *p, offset: *o }).collect();
        let parts = self.client.fetch(&self.topic, positions, max, wait).await?;
        let mut out = Vec::new();
        for part in parts {
            let n = part.records.len() as u64;
            for (i, r) in part.records.into_iter().enumerate() {
                out.push((part.partition, part.first_offset + i as u64, r));
            }
            if n > 0 {
                self.positions.insert(part.partition, part.first_offset + n);
            }
        }
        Ok(out)
    }

    /// Commit the positions. After a rebalance the commit is refused by the server; the
    /// member then takes its new assignment and the error is returned.
    pub async fn commit(&mut self) -> Result<(), ClientError> {
        let offsets: Vec<(u32, u64)> = self.positions.iter().map(|(p, o)| (*p, *o)).collect();
        match self.client.commit_as_member(&self.group, &self.topic, &self.membership, offsets).await {
            Err(ClientError::Server(e)) if e.code == ErrorCode::Rebalanced => {
                self.heartbeat().await?;
                Err(ClientError::Server(e))
            }
            other => other,
        }
    }

    /// Leave the group; its partitions move to the other members at once.
    pub async fn leave(self) -> Result<(), ClientError> {
        self.client.leave_group(&self.group, &self.topic, &self.membership.member_id).await
    }
}
