//! Consumer-group membership (Kafka semantics): members of a group reading a topic split its
//! partitions; the split is recomputed — a new generation — when a member joins, leaves, or
//! stops heart-beating for longer than its session timeout. Offsets are committed per group
//! (see the store); a commit carrying an old generation is refused, so a member that was
//! presumed dead cannot move offsets under the one that took its partitions.
//!
//! Membership lives in memory: after a server restart members simply join again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::limits;

/// A member's view of its group after join or heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// This member's id.
    pub member_id: String,
    /// Changes with every rebalance; commits must carry the current one.
    pub generation: u64,
    /// Partitions this member should read now.
    pub partitions: Vec<u32>,
}

/// A group's members, for `weir group describe`.
#[derive(Debug, Clone)]
pub struct GroupMembers {
    /// Group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Generation.
    pub generation: u64,
    /// `(member id, partitions)`.
    pub members: Vec<(String, Vec<u32>)>,
}

/// Why a membership call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// The member is not (or no longer) in the group.
    #[error("member `{member}` is not in group `{group}` (its session expired or it left); join again")]
    UnknownMember {
        /// Group.
        group: String,
        /// Member.
        member: String,
    },
    /// The group rebalanced since the member's generation.
    #[error(
        "group `{group}` rebalanced (generation {current}, the member has {stale}); fetch the new assignment with a heartbeat and commit again"
    )]
    StaleGeneration {
        /// Group.
        group: String,
        /// Current generation.
        current: u64,
        /// The member's.
        stale: u64,
    },
    /// Too many members (or, for a new group, too many groups).
    #[error("group `{0}` has its maximum of {max} members (or the server its maximum of groups)", max = limits::GROUP_MAX_MEMBERS)]
    Full(String),
    /// The group is rebalancing: join again (Kafka's classic protocol).
    #[error("group `{0}` is rebalancing; join again")]
    RebalanceInProgress(String),
    /// The member's protocol type or assignors match no other member's.
    #[error(
        "group `{0}`: the member's protocol type or assignors match no other member's; use the same client settings in every member"
    )]
    InconsistentProtocol(String),
}

struct Member {
    last_seen: Instant,
    session: Duration,
}

#[derive(Default)]
struct Group {
    generation: u64,
    members: BTreeMap<String, Member>,
    assignment: HashMap<String, Vec<u32>>,
    partitions: u32,
}

impl Group {
    /// Partition `p` goes to the `p mod n`-th member in id order: stable and even.
    fn rebalance(&mut self) {
        self.generation += 1;
        self.assignment.clear();
        let ids: Vec<&String> = self.members.keys().collect();
        if ids.is_empty() {
            return;
        }
        for p in 0..self.partitions {
            let id = ids[p as usize % ids.len()];
            self.assignment.entry(id.clone()).or_default().push(p);
        }
    }

    fn expire(&mut self, now: Instant) -> bool {
        let before = self.members.len();
        self.members.retain(|_, m| now.duration_since(m.last_seen) <= m.session);
        before != self.members.len()
    }

    fn view(&self, member: &str) -> Membership {
        Membership {
            member_id: member.to_string(),
            generation: self.generation,
            partitions: self.assignment.get(member).cloned().unwrap_or_default(),
        }
    }
}

/// Membership of every group, keyed by (group, topic).
#[derive(Default)]
pub struct Coordinator {
    groups: Mutex<HashMap<(String, String), Group>>,
    next_member: AtomicU64,
}

impl Coordinator {
    /// Join (or rejoin) `group` reading `topic` of `partitions` partitions.
    pub fn join(
        &self,
        group: &str,
        topic: &str,
        partitions: u32,
        member: Option<String>,
        session: Duration,
    ) -> Result<Membership, GroupError> {
        let mut groups = self.groups.lock().expect("groups");
        let g = groups.entry((group.to_string(), topic.to_string())).or_default();
        let now = Instant::now();
        let expired = g.expire(now);
        let id = member.unwrap_or_else(|| format!("member-{}", self.next_member.fetch_add(1, Ordering::Relaxed) + 1));
        let joined = !g.members.contains_key(&id);
        if joined && g.members.len() >= limits::GROUP_MAX_MEMBERS {
            return Err(GroupError::Full(group.to_string()));
        }
        g.members.insert(id.clone(), Member { last_seen: now, session });
        if joined || expired || g.partitions != partitions {
            g.partitions = partitions;
            g.rebalance();
        }
        Ok(g.view(&id))
    }

    /// Keep a member alive and tell it its current assignment.
    pub fn heartbeat(&self, group: &str, topic: &str, member: &str) -> Result<Membership, GroupError> {
        let mut groups = self.groups.lock().expect("groups");
        let unknown = || GroupError::UnknownMember { group: group.to_string(), member: member.to_string() };
        let g = groups.get_mut(&(group.to_string(), topic.to_string())).ok_or_else(unknown)?;
        let now = Instant::now();
        if g.expire(now) {
            g.rebalance();
        }
        let m = g.members.get_mut(member).ok_or_else(unknown)?;
        m.last_seen = now;
        Ok(g.view(member))
    }

    /// Leave the group now (its partitions move at once).
    pub fn leave(&self, group: &str, topic: &str, member: &str) {
        let mut groups = self.groups.lock().expect("groups");
        if let Some(g) = groups.get_mut(&(group.to_string(), topic.to_string()))
            && g.members.remove(member).is_some()
        {
            g.rebalance();
        }
    }

    /// Refuse a commit from a member of an old generation.
    pub fn check(&self, group: &str, topic: &str, member: &str, generation: u64) -> Result<(), GroupError> {
        let membership = self.heartbeat(group, topic, member)?;
        if membership.generation != generation {
            return Err(GroupError::StaleGeneration {
                group: group.to_string(),
                current: membership.generation,
                stale: generation,
            });
        }
        Ok(())
    }

    /// Drop members whose sessions expired (called by a timer, so assignments move even when
    /// nobody else calls in).
    pub fn expire(&self) {
        let now = Instant::now();
        for g in self.groups.lock().expect("groups").values_mut() {
            if g.expire(now) {
                g.rebalance();
            }
        }
    }

    /// Every group with members.
    pub fn describe(&self) -> Vec<GroupMembers> {
        let groups = self.groups.lock().expect("groups");
        let mut out: Vec<GroupMembers> = groups
            .iter()
            .filter(|(_, g)| !g.members.is_empty())
            .map(|((group, topic), g)| GroupMembers {
                group: group.clone(),
                topic: topic.clone(),
                generation: g.generation,
                members: g
                    .members
                    .keys()
                    .map(|id| (id.clone(), g.assignment.get(id).cloned().unwrap_or_default()))
                    .collect(),
            })
            .collect();
        out.sort_by(|a, b| (&a.group, &a.topic).cmp(&(&b.group, &b.topic)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_split_partitions_and_rebalance() {
        let c = Coordinator::default();
        let long = Duration::from_secs(60);
        let a = c.join("g", "t", 4, Some("a".into()), long).unwrap();
        assert_eq!(a.partitions, vec![0, 1, 2, 3]);
        let b = c.join("g", "t", 4, Some("b".into()), long).unwrap();
        assert_eq!(b.partitions, vec![1, 3]);
        let a = c.heartbeat("g", "t", "a").unwrap();
        assert_eq!((a.partitions, a.generation), (vec![0, 2], b.generation));
        assert!(matches!(c.check("g", "t", "a", 1), Err(GroupError::StaleGeneration { .. })));
        c.leave("g", "t", "b");
        assert_eq!(c.heartbeat("g", "t", "a").unwrap().partitions, vec![0, 1, 2, 3]);
    }

    #[test]
    fn a_silent_member_expires() {
        let c = Coordinator::default();
        c.join("g", "t", 2, Some("a".into()), Duration::from_secs(60)).unwrap();
        c.join("g", "t", 2, Some("b".into()), Duration::ZERO).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        c.expire();
        assert_eq!(c.heartbeat("g", "t", "a").unwrap().partitions, vec![0, 1]);
        assert!(matches!(c.heartbeat("g", "t", "b"), Err(GroupError::UnknownMember { .. })));
    }
}
