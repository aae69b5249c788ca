//! Consumer-group commands: committed offsets (fenced by generation for members, free for
//! admin seeks), lag per group, and membership (join, heartbeat, leave, describe).

use std::time::Duration;

use super::command::{GroupCommand, GroupLag, Reply};
use super::{Broker, BrokerError, Result};
use crate::storage::{Commit, OffsetCommit};
use crate::types::check_name;

impl Broker {
    pub(super) async fn group_command(&self, command: GroupCommand) -> Result<Reply> {
        match command {
            GroupCommand::Commit { group, topic, offsets, member } => {
                if let Some((member, generation)) = member {
                    self.groups.check(&group, &topic, &member, generation)?;
                }
                self.commit_offsets(group, &topic, offsets).await
            }
            GroupCommand::Offsets { group, topic } => {
                // A name no group can have has no offsets: say so rather than answer none.
                check_name("group", &group).map_err(|e| BrokerError::BadRequest(e.to_string()))?;
                let topic = self.store.find_topic(&topic).await?;
                Ok(Reply::Offsets(self.store.committed(&group, &topic).await?))
            }
            GroupCommand::List => self.group_lags().await.map(Reply::Groups),
            GroupCommand::Join { group, topic, member, session } => {
                check_name("group", &group).map_err(|e| BrokerError::BadRequest(e.to_string()))?;
                let partitions = self.store.find_topic(&topic).await?.partition_count();
                let session = session.clamp(Duration::from_millis(100), Duration::from_secs(300));
                Ok(Reply::Membership(self.groups.join(&group, &topic, partitions, member, session)?))
            }
            GroupCommand::Heartbeat { group, topic, member } => {
                Ok(Reply::Membership(self.groups.heartbeat(&group, &topic, &member)?))
            }
            GroupCommand::Leave { group, topic, member } => {
                self.groups.leave(&group, &topic, &member);
                Ok(Reply::Done)
            }
            GroupCommand::Describe => Ok(Reply::GroupMembers(self.groups.describe())),
            GroupCommand::ClassicJoin(request) => {
                check_name("group", &request.group).map_err(|e| BrokerError::BadRequest(e.to_string()))?;
                Ok(Reply::Joined(self.classic.join(request).await?))
            }
            GroupCommand::ClassicSync { group, member, generation, assignments } => {
                Ok(Reply::Assignment(self.classic.sync(&group, &member, generation, assignments).await?))
            }
            GroupCommand::ClassicHeartbeat { group, member, generation } => {
                self.classic.heartbeat(&group, &member, generation)?;
                Ok(Reply::Done)
            }
            GroupCommand::ClassicLeave { group, members } => {
                self.classic.leave(&group, &members);
                Ok(Reply::Done)
            }
            GroupCommand::ClassicCommit { group, topic, offsets, member, generation } => {
                self.classic.check(&group, &member, generation)?;
                self.commit_offsets(group, &topic, offsets).await
            }
            GroupCommand::ClassicDescribe { groups } => {
                Ok(Reply::ClassicGroups(self.classic.describe(groups.as_deref())))
            }
        }
    }

    /// Validate and submit the commit at the first poll (arrival order); resolves once durable.
    async fn commit_offsets(&self, group: String, topic: &str, offsets: Vec<(u32, u64)>) -> Result<Reply> {
        check_name("group", &group).map_err(|e| BrokerError::BadRequest(e.to_string()))?;
        let topic = self.store.find_topic(topic).await?;
        let mut commits = Vec::with_capacity(offsets.len());
        for (partition, next_offset) in offsets {
            let (_, hw) = self.store.bounds(&topic, partition).await?;
            if next_offset > hw {
                return Err(BrokerError::BadRequest(format!(
                    "cannot commit offset {next_offset} for partition {partition} of `{}`: its high watermark is {hw}",
                    topic.name
                )));
            }
            commits.push(OffsetCommit { group: group.clone(), topic: topic.clone(), partition, next_offset });
        }
        self.store.submit(Commit { offsets: commits, ..Commit::default() }).await?;
        Ok(Reply::Done)
    }

    pub(crate) async fn group_lags(&self) -> Result<Vec<GroupLag>> {
        let mut out = Vec::new();
        for (group, topics) in self.store.groups().await? {
            for name in topics {
                let Ok(topic) = self.store.find_topic(&name).await else { continue };
                let committed = self.store.committed(&group, &topic).await?;
                let bounds = self.store.all_bounds(&topic).await?;
                let partitions =
                    committed.into_iter().zip(bounds).enumerate().map(|(p, (c, (_, hw)))| (p as u32, c, hw)).collect();
                out.push(GroupLag { group: group.clone(), topic: topic.name.clone(), partitions });
            }
        }
        Ok(out)
    }
}
