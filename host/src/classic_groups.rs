//! Kafka's classic consumer-group protocol, for Kafka clients: members join (JoinGroup), wait
//! until every known member has rejoined or the rebalance timeout passes, the leader picks the
//! assignment on the client side and hands it over (SyncGroup), and weir stores it and gives
//! each member its part. Heartbeats keep members alive and tell them when to rejoin.
//!
//! Offsets are the store's group offsets, shared with weir's own groups: a commit is fenced
//! by the member's generation here ([`ClassicGroups::check`]) and then written like any other.
//! Membership lives in memory; after a restart members join again (as after a coordinator
//! failover in Kafka).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::groups::GroupError;
use crate::limits;

/// A JoinGroup, as the broker sees it.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Group id.
    pub group: String,
    /// The member's id, or `None` for a new member.
    pub member: Option<String>,
    /// The client's id (prefix of a new member's id).
    pub client_id: String,
    /// `consumer` for consumers.
    pub protocol_type: String,
    /// Assignors the member supports, in its order of preference, with its subscription.
    pub protocols: Vec<(String, Bytes)>,
    /// Dropped after this long without a heartbeat.
    pub session: Duration,
    /// How long a rebalance waits for members to rejoin.
    pub rebalance: Duration,
}

/// What a member learns when a rebalance completes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The new generation.
    pub generation: i32,
    /// The assignor every member supports.
    pub protocol: String,
    /// The protocol type (`consumer`).
    pub protocol_type: String,
    /// The leader's member id.
    pub leader: String,
    /// This member's id.
    pub member: String,
    /// For the leader: every member with its subscription; for the others: empty.
    pub members: Vec<(String, Bytes)>,
}

/// A group for ListGroups and DescribeGroups.
#[derive(Debug, Clone)]
pub struct ClassicGroupInfo {
    /// Group id.
    pub group: String,
    /// `Empty`, `PreparingRebalance`, `CompletingRebalance` or `Stable` (Kafka's names).
    pub state: &'static str,
    /// Protocol type.
    pub protocol_type: String,
    /// Chosen assignor.
    pub protocol: String,
    /// `(member id, client id, subscription, assignment)`.
    pub members: Vec<(String, String, Bytes, Bytes)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Empty,
    Preparing { deadline: Instant },
    Syncing,
    Stable,
}

struct Member {
    client_id: String,
    protocols: Vec<(String, Bytes)>,
    session: Duration,
    rebalance: Duration,
    last_seen: Instant,
    assignment: Bytes,
    /// Has joined the rebalance under way.
    joined: bool,
}

type JoinReply = oneshot::Sender<Result<Joined, GroupError>>;
type SyncReply = oneshot::Sender<Result<Bytes, GroupError>>;

struct Group {
    generation: i32,
    state: State,
    protocol_type: String,
    protocol: String,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    joins: HashMap<String, JoinReply>,
    syncs: HashMap<String, SyncReply>,
}

impl Group {
    fn new(protocol_type: &str) -> Group {
        Group {
            generation: 0,
            state: State::Empty,
            protocol_type: protocol_type.to_string(),
            protocol: String::new(),
            leader: None,
            members: BTreeMap::new(),
            joins: HashMap::new(),
            syncs: HashMap::new(),
        }
    }

    fn unknown(name: &str, member: &str) -> GroupError {
        GroupError::UnknownMember { group: name.to_string(), member: member.to_string() }
    }

    /// A member's generation is current, and the group is not between generations.
    fn fence(&self, name: &str, member: &str, generation: i32) -> Result<(), GroupError> {
        if !self.members.contains_key(member) {
            return Err(Group::unknown(name, member));
        }
        if generation != self.generation {
            return Err(GroupError::StaleGeneration {
                group: name.to_string(),
                current: self.generation.max(0) as u64,
                stale: generation.max(0) as u64,
            });
        }
        Ok(())
    }

    /// Start a rebalance (if none is under way): members must join again.
    fn prepare(&mut self, name: &str, now: Instant) {
        if matches!(self.state, State::Preparing { .. }) {
            return;
        }
        let wait = self.members.values().map(|m| m.rebalance).max().unwrap_or_default();
        self.state = State::Preparing { deadline: now + wait };
        for m in self.members.values_mut() {
            m.joined = false;
        }
        for (_, reply) in self.syncs.drain() {
            let _ = reply.send(Err(GroupError::RebalanceInProgress(name.to_string())));
        }
    }

    /// Finish the rebalance if every member has joined, or if `forced` (deadline passed):
    /// members that did not join are dropped.
    fn try_complete(&mut self, name: &str, forced: bool) {
        if !matches!(self.state, State::Preparing { .. }) {
            return;
        }
        if !forced && !self.members.values().all(|m| m.joined) {
            return;
        }
        self.members.retain(|_, m| m.joined);
        self.generation += 1;
        if self.members.is_empty() {
            self.state = State::Empty;
            self.leader = None;
            return;
        }
        if self.leader.as_ref().is_none_or(|l| !self.members.contains_key(l)) {
            self.leader = self.joins.keys().min().cloned().or_else(|| self.members.keys().next().cloned());
        }
        let leader = self.leader.clone().expect("a member leads");
        let Some(protocol) = self.common_protocol(&leader) else {
            for (_, reply) in self.joins.drain() {
                let _ = reply.send(Err(GroupError::InconsistentProtocol(name.to_string())));
            }
            self.members.clear();
            self.state = State::Empty;
            return;
        };
        self.protocol = protocol;
        self.state = State::Syncing;
        // Their sessions run from now: a slow rebalance must not expire the members it answers.
        let now = Instant::now();
        for m in self.members.values_mut() {
            m.joined = false;
            m.assignment = Bytes::new();
            m.last_seen = now;
        }
        let everyone: Vec<(String, Bytes)> =
            self.members.iter().map(|(id, m)| (id.clone(), self.subscription(m))).collect();
        for (id, reply) in self.joins.drain() {
            let _ = reply.send(Ok(Joined {
                generation: self.generation,
                protocol: self.protocol.clone(),
                protocol_type: self.protocol_type.clone(),
                leader: leader.clone(),
                members: if id == leader { everyone.clone() } else { Vec::new() },
                member: id,
            }));
        }
    }

    /// The leader's most preferred assignor that every member supports.
    fn common_protocol(&self, leader: &str) -> Option<String> {
        let ours = &self.members.get(leader)?.protocols;
        ours.iter()
            .map(|(name, _)| name)
            .find(|name| self.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == *name)))
            .cloned()
    }

    fn subscription(&self, m: &Member) -> Bytes {
        m.protocols.iter().find(|(n, _)| *n == self.protocol).map(|(_, meta)| meta.clone()).unwrap_or_default()
    }

    fn remove(&mut self, name: &str, member: &str, now: Instant) {
        if self.members.remove(member).is_none() {
            return;
        }
        if let Some(reply) = self.joins.remove(member) {
            let _ = reply.send(Err(Group::unknown(name, member)));
        }
        self.syncs.remove(member);
        if self.members.is_empty() {
            self.state = State::Empty;
            self.leader = None;
            self.generation += 1;
            return;
        }
        self.prepare(name, now);
        self.try_complete(name, false);
    }

    fn state_name(&self) -> &'static str {
        match self.state {
            State::Empty => "Empty",
            State::Preparing { .. } => "PreparingRebalance",
            State::Syncing => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}

/// Every classic group's membership.
#[derive(Default)]
pub struct ClassicGroups {
    groups: Mutex<HashMap<String, Group>>,
    next_member: std::sync::atomic::AtomicU64,
}

impl ClassicGroups {
    /// Join `request.group`; resolves when the rebalance completes.
    pub async fn join(&self, request: JoinRequest) -> Result<Joined, GroupError> {
        let (reply, joined) = oneshot::channel();
        let wait = request.rebalance;
        let name = request.group.clone();
        self.start_join(request, reply)?;
        // The rebalance completes by its deadline at the latest (the timer forces it).
        match tokio::time::timeout(wait + Duration::from_secs(5), joined).await {
            Ok(Ok(result)) => result,
            _ => Err(GroupError::RebalanceInProgress(name)),
        }
    }

    fn start_join(&self, r: JoinRequest, reply: JoinReply) -> Result<(), GroupError> {
        let mut groups = self.groups.lock().expect("groups");
        if !groups.contains_key(&r.group) && groups.len() >= limits::CLASSIC_GROUPS_MAX {
            return Err(GroupError::Full(r.group));
        }
        let g = groups.entry(r.group.clone()).or_insert_with(|| Group::new(&r.protocol_type));
        if g.members.is_empty() {
            g.protocol_type = r.protocol_type.clone();
        } else if g.protocol_type != r.protocol_type {
            return Err(GroupError::InconsistentProtocol(r.group));
        }
        // A member that shares no assignor with the others is refused alone; the group stays.
        let others_agree = g
            .members
            .iter()
            .filter(|(id, _)| Some(id.as_str()) != r.member.as_deref())
            .all(|(_, m)| r.protocols.iter().any(|(name, _)| m.protocols.iter().any(|(n, _)| n == name)));
        if !others_agree {
            return Err(GroupError::InconsistentProtocol(r.group));
        }
        let id = match r.member.filter(|m| !m.is_empty()) {
            Some(m) if g.members.contains_key(&m) => m,
            Some(m) => return Err(Group::unknown(&r.group, &m)),
            None if g.members.len() >= limits::GROUP_MAX_MEMBERS => return Err(GroupError::Full(r.group)),
            None => {
                let n = self.next_member.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                let client: String = r.client_id.chars().filter(|c| c.is_ascii_graphic()).take(64).collect();
                format!("{client}-{n}")
            }
        };
        let now = Instant::now();
        let member = Member {
            client_id: r.client_id,
            protocols: r.protocols,
            session: r.session,
            rebalance: r.rebalance,
            last_seen: now,
            assignment: Bytes::new(),
            joined: true,
        };
        g.members.insert(id.clone(), member);
        g.prepare(&r.group, now);
        if let Some(m) = g.members.get_mut(&id) {
            m.joined = true;
        }
        if let Some(old) = g.joins.insert(id.clone(), reply) {
            let _ = old.send(Err(GroupError::RebalanceInProgress(r.group.clone())));
        }
        g.try_complete(&r.group, false);
        Ok(())
    }

    /// Hand over (leader) or wait for (others) the assignment of `generation`.
    pub async fn sync(
        &self,
        group: &str,
        member: &str,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> Result<Bytes, GroupError> {
        let (reply, assigned) = oneshot::channel();
        let wait = {
            let mut groups = self.groups.lock().expect("groups");
            let g = groups.get_mut(group).ok_or_else(|| Group::unknown(group, member))?;
            g.fence(group, member, generation)?;
            let m = g.members.get_mut(member).expect("fenced");
            m.last_seen = Instant::now();
            let wait = m.session;
            match g.state {
                State::Preparing { .. } => return Err(GroupError::RebalanceInProgress(group.to_string())),
                State::Stable => return Ok(m.assignment.clone()),
                State::Empty => return Err(Group::unknown(group, member)),
                State::Syncing => {}
            }
            if g.leader.as_deref() == Some(member) {
                for (id, assignment) in assignments {
                    if let Some(m) = g.members.get_mut(&id) {
                        m.assignment = assignment;
                    }
                }
                g.state = State::Stable;
                let now = Instant::now();
                g.members.values_mut().for_each(|m| m.last_seen = now);
                for (id, reply) in g.syncs.drain() {
                    let _ = reply.send(Ok(g.members.get(&id).map(|m| m.assignment.clone()).unwrap_or_default()));
                }
                return Ok(g.members[member].assignment.clone());
            }
            g.syncs.insert(member.to_string(), reply);
            wait
        };
        match tokio::time::timeout(wait, assigned).await {
            Ok(Ok(result)) => result,
            _ => Err(GroupError::RebalanceInProgress(group.to_string())),
        }
    }

    /// Keep a member alive; tells it to rejoin while a rebalance is under way.
    pub fn heartbeat(&self, group: &str, member: &str, generation: i32) -> Result<(), GroupError> {
        let mut groups = self.groups.lock().expect("groups");
        let g = groups.get_mut(group).ok_or_else(|| Group::unknown(group, member))?;
        let m = g.members.get_mut(member).ok_or_else(|| Group::unknown(group, member))?;
        m.last_seen = Instant::now();
        if matches!(g.state, State::Preparing { .. }) {
            return Err(GroupError::RebalanceInProgress(group.to_string()));
        }
        g.fence(group, member, generation)
    }

    /// Members leave at once; the others rebalance.
    pub fn leave(&self, group: &str, members: &[String]) -> Vec<Result<(), GroupError>> {
        let mut groups = self.groups.lock().expect("groups");
        let Some(g) = groups.get_mut(group) else {
            return members.iter().map(|m| Err(Group::unknown(group, m))).collect();
        };
        let now = Instant::now();
        members
            .iter()
            .map(|m| {
                if !g.members.contains_key(m) {
                    return Err(Group::unknown(group, m));
                }
                g.remove(group, m, now);
                Ok(())
            })
            .collect()
    }

    /// Refuse an offset commit from a member of another generation (generation < 0: a
    /// commit from outside the group protocol, as Kafka's admin tools make, allowed only while
    /// the group has no members).
    pub fn check(&self, group: &str, member: &str, generation: i32) -> Result<(), GroupError> {
        let groups = self.groups.lock().expect("groups");
        // Outside the group protocol (Kafka's admin tools): only while nobody is a member.
        let Some(g) = groups.get(group).filter(|g| !g.members.is_empty()) else {
            return if generation < 0 { Ok(()) } else { Err(Group::unknown(group, member)) };
        };
        if generation < 0 {
            let current = g.generation.max(0) as u64;
            return Err(GroupError::StaleGeneration { group: group.to_string(), current, stale: 0 });
        }
        if matches!(g.state, State::Preparing { .. }) && g.members.contains_key(member) {
            return Err(GroupError::RebalanceInProgress(group.to_string()));
        }
        g.fence(group, member, generation)
    }

    /// Drop members whose session lapsed (those waiting in a join or sync are alive), and
    /// finish rebalances whose deadline passed. Called by the broker's timer.
    pub fn expire(&self) {
        let now = Instant::now();
        let mut groups = self.groups.lock().expect("groups");
        for (name, g) in groups.iter_mut() {
            let lapsed: Vec<String> = g
                .members
                .iter()
                .filter(|(id, m)| {
                    now.duration_since(m.last_seen) > m.session
                        && !g.joins.contains_key(*id)
                        && !g.syncs.contains_key(*id)
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in lapsed {
                tracing::info!(group = %name, member = %id, "Kafka group member's session expired");
                g.remove(name, &id, now);
            }
            if let State::Preparing { deadline } = g.state
                && now >= deadline
            {
                g.try_complete(name, true);
            }
        }
        groups.retain(|_, g| !(g.members.is_empty() && g.joins.is_empty()));
    }

    /// Groups, all or the named ones (unknown names come back `Dead`-free: as `Empty`).
    pub fn describe(&self, names: Option<&[String]>) -> Vec<ClassicGroupInfo> {
        let groups = self.groups.lock().expect("groups");
        let info = |name: &String, g: Option<&Group>| match g {
            Some(g) => ClassicGroupInfo {
                group: name.clone(),
                state: g.state_name(),
                protocol_type: g.protocol_type.clone(),
                protocol: g.protocol.clone(),
                members: g
                    .members
                    .iter()
                    .map(|(id, m)| (id.clone(), m.client_id.clone(), g.subscription(m), m.assignment.clone()))
                    .collect(),
            },
            None => ClassicGroupInfo {
                group: name.clone(),
                state: "Empty",
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            },
        };
        match names {
            Some(names) => names.iter().map(|n| info(n, groups.get(n))).collect(),
            None => {
                let mut all: Vec<_> = groups.iter().map(|(n, g)| info(n, Some(g))).collect();
                all.sort_by(|a, b| a.group.cmp(&b.group));
                all
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(group: &str, member: Option<&str>) -> JoinRequest {
        JoinRequest {
            group: group.into(),
            member: member.map(str::to_string),
            client_id: "c".into(),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
            session: Duration::from_secs(10),
            rebalance: Duration::from_secs(10),
        }
    }

    #[tokio::test]
    async fn a_second_member_waits_for_the_first_to_rejoin_and_the_leader_assigns() {
        let g = std::sync::Arc::new(ClassicGroups::default());
        let a = g.join(join("g", None)).await.unwrap();
        assert_eq!((a.generation, a.leader.as_str(), a.members.len()), (1, a.member.as_str(), 1));
        g.sync("g", &a.member, 1, vec![(a.member.clone(), Bytes::from_static(b"all"))]).await.unwrap();
        let g2 = g.clone();
        let b = tokio::spawn(async move { g2.join(join("g", None)).await });
        // The first member learns of the rebalance from its heartbeat, then rejoins.
        let rebalancing = loop {
            match g.heartbeat("g", &a.member, 1) {
                Err(e @ GroupError::RebalanceInProgress(_)) => break e,
                _ => tokio::task::yield_now().await,
            }
        };
        assert!(rebalancing.to_string().contains("rebalanc"));
        let a2 = g.join(join("g", Some(&a.member))).await.unwrap();
        let b = b.await.unwrap().unwrap();
        assert_eq!((a2.generation, b.generation), (2, 2));
        assert_eq!(a2.members.len(), 2, "the leader sees both subscriptions");
        assert!(b.members.is_empty());
        let g3 = g.clone();
        let (bid, aid) = (b.member.clone(), a2.member.clone());
        let waiting = tokio::spawn(async move { g3.sync("g", &bid, 2, vec![]).await });
        let mine =
            g.sync("g", &aid, 2, vec![(aid.clone(), "p0".into()), (b.member.clone(), "p1".into())]).await.unwrap();
        assert_eq!((&mine[..], &waiting.await.unwrap().unwrap()[..]), (&b"p0"[..], &b"p1"[..]));
        assert!(matches!(g.check("g", &aid, 1), Err(GroupError::StaleGeneration { .. })));
        g.check("g", &aid, 2).unwrap();
        // One leaves: the other is told to rejoin and becomes the only member.
        g.leave("g", std::slice::from_ref(&b.member)).into_iter().for_each(|r| r.unwrap());
        assert!(matches!(g.heartbeat("g", &aid, 2), Err(GroupError::RebalanceInProgress(_))));
        let alone = g.join(join("g", Some(&aid))).await.unwrap();
        assert_eq!((alone.generation, alone.members.len()), (3, 1));
    }

    #[tokio::test]
    async fn unknown_members_and_protocol_mismatches_are_refused() {
        let g = ClassicGroups::default();
        assert!(matches!(g.join(join("g", Some("ghost"))).await, Err(GroupError::UnknownMember { .. })));
        let a = g.join(join("g", None)).await.unwrap();
        let mut other = join("g", None);
        other.protocol_type = "connect".into();
        assert!(matches!(g.join(other).await, Err(GroupError::InconsistentProtocol(_))));
        assert!(matches!(g.heartbeat("g", "ghost", 1), Err(GroupError::UnknownMember { .. })));
        assert!(matches!(g.heartbeat("g", &a.member, 7), Err(GroupError::StaleGeneration { .. })));
    }
}
