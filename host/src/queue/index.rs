//! The in-memory index of one queue: which message is deliverable next, which wait for a
//! timer, which are in flight, and the FIFO groups. Pure bookkeeping, no I/O: the caller
//! persists what changed.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, VecDeque};

use super::DeliveryState;

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    /// Deliverable now.
    Ready,
    /// Delayed, or handed back with a delay; deliverable at `visible_at`.
    Waiting,
    /// Received; comes back at `visible_at` unless acked.
    InFlight,
    /// Behind the head of its FIFO group.
    Blocked,
    /// Past its deliveries, waiting to be moved to the dead-letter queue.
    Parked,
}

/// One message's bookkeeping.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub priority: u8,
    pub group: Option<String>,
    pub deliveries: u32,
    pub visible_at: u64,
    pub status: Status,
    /// When it expires if not delivered by then (a TTL), ms since the epoch.
    pub expires_at: Option<u64>,
}

impl Entry {
    pub(super) fn new(priority: u8, group: Option<String>, deliveries: u32, visible_at: u64) -> Entry {
        Entry { priority, group, deliveries, visible_at, status: Status::Waiting, expires_at: None }
    }
}

/// A queue's index.
#[derive(Debug, Default)]
pub(super) struct Index {
    /// Sequence number of the next message.
    pub next_seq: u64,
    entries: HashMap<u64, Entry>,
    /// Deliverable messages: highest priority first, then oldest.
    ready: BTreeSet<(Reverse<u8>, u64)>,
    /// `(time, seq)` of waiting and in-flight messages.
    timers: BTreeSet<(u64, u64)>,
    /// Messages of each FIFO group, in send order; only the head is ever deliverable.
    groups: HashMap<String, VecDeque<u64>>,
    parked: Vec<u64>,
    /// `(expiry, seq)` of messages with a TTL.
    expiries: BTreeSet<(u64, u64)>,
    /// Dedup ids and when they expire.
    pub dedup: HashMap<String, u64>,
}

impl Index {
    pub(super) fn reserve_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq - 1
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn ready_len(&self) -> usize {
        self.ready.len()
    }

    pub(super) fn get(&self, seq: u64) -> Option<&Entry> {
        self.entries.get(&seq)
    }

    /// `(ready, waiting, in flight)`.
    pub(super) fn counts(&self) -> (u64, u64, u64) {
        let in_flight = self.entries.values().filter(|e| e.status == Status::InFlight).count() as u64;
        let ready = self.ready.len() as u64;
        (ready, self.entries.len() as u64 - ready - in_flight, in_flight)
    }

    /// When the next timer fires.
    pub(super) fn next_timer(&self) -> Option<u64> {
        let ttl = self.expiries.first().map(|(t, _)| *t);
        match (self.timers.first().map(|(t, _)| *t), ttl) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether a parked message was parked because it expired (not for its deliveries).
    pub(super) fn expired(&self, seq: u64, now: u64) -> bool {
        self.entries.get(&seq).and_then(|e| e.expires_at).is_some_and(|t| t <= now)
    }

    /// Add a message (new, or recovered with its status).
    pub(super) fn insert(&mut self, seq: u64, entry: Entry) {
        let group = entry.group.clone();
        let in_flight = entry.status == Status::InFlight;
        if let Some(t) = entry.expires_at {
            self.expiries.insert((t, seq));
        }
        self.entries.insert(seq, entry);
        let head = match group {
            None => true,
            Some(g) => {
                let q = self.groups.entry(g).or_default();
                q.push_back(seq);
                q.len() == 1
            }
        };
        if in_flight {
            let e = &self.entries[&seq];
            self.timers.insert((e.visible_at, seq));
        } else if head {
            self.place(seq);
        } else {
            self.entries.get_mut(&seq).expect("inserted").status = Status::Blocked;
        }
    }

    /// Make an eligible message ready or waiting by its time.
    fn place(&mut self, seq: u64) {
        let now = crate::types::now_ms();
        let e = self.entries.get_mut(&seq).expect("placed entry exists");
        if e.visible_at <= now {
            e.status = Status::Ready;
            self.ready.insert((Reverse(e.priority), seq));
        } else {
            e.status = Status::Waiting;
            self.timers.insert((e.visible_at, seq));
        }
        // Eligible again: its TTL counts again (it was set aside while in flight or blocked).
        if let Some(t) = e.expires_at {
            self.expiries.insert((t, seq));
        }
    }

    /// Take up to `max` ready messages into flight until `now + visibility_ms`.
    pub(super) fn take_ready(&mut self, max: usize, now: u64, visibility_ms: u64) -> Vec<(u64, DeliveryState)> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some((_, seq)) = self.ready.pop_first() else { break };
            let e = self.entries.get_mut(&seq).expect("ready entry exists");
            e.deliveries += 1;
            e.status = Status::InFlight;
            e.visible_at = now + visibility_ms;
            self.timers.insert((e.visible_at, seq));
            out.push((seq, DeliveryState { deliveries: e.deliveries, visible_at_ms: e.visible_at, in_flight: true }));
        }
        out
    }

    /// Forget a message; the next of its group becomes eligible.
    pub(super) fn remove(&mut self, seq: u64) {
        let Some(e) = self.entries.remove(&seq) else { return };
        self.ready.remove(&(Reverse(e.priority), seq));
        self.timers.remove(&(e.visible_at, seq));
        if let Some(t) = e.expires_at {
            self.expiries.remove(&(t, seq));
        }
        self.parked.retain(|s| *s != seq);
        if let Some(g) = e.group {
            let q = self.groups.get_mut(&g).expect("group of an entry exists");
            let was_head = q.front() == Some(&seq);
            q.retain(|s| *s != seq);
            match q.front().copied() {
                None => {
                    self.groups.remove(&g);
                }
                Some(next) if was_head => self.place(next),
                Some(_) => {}
            }
        }
    }

    /// Hand an in-flight message back, deliverable at `visible_at`.
    pub(super) fn requeue(&mut self, seq: u64, visible_at: u64) -> DeliveryState {
        let e = self.entries.get_mut(&seq).expect("requeued entry exists");
        self.timers.remove(&(e.visible_at, seq));
        e.visible_at = visible_at;
        let deliveries = e.deliveries;
        self.place(seq);
        DeliveryState { deliveries, visible_at_ms: visible_at, in_flight: false }
    }

    /// Move an in-flight message's deadline.
    pub(super) fn extend(&mut self, seq: u64, deadline: u64) -> DeliveryState {
        let e = self.entries.get_mut(&seq).expect("extended entry exists");
        self.timers.remove(&(e.visible_at, seq));
        e.visible_at = deadline;
        self.timers.insert((deadline, seq));
        DeliveryState { deliveries: e.deliveries, visible_at_ms: deadline, in_flight: true }
    }

    /// Fire timers up to `now`: waiting messages become ready; in-flight messages come back,
    /// or are parked for the dead-letter queue once delivered `max_deliveries` times.
    pub(super) fn expire(&mut self, now: u64, max_deliveries: Option<u32>) {
        self.expire_ttls(now);
        while let Some(&(t, seq)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            let e = self.entries.get_mut(&seq).expect("timer entry exists");
            let expired = e.expires_at.is_some_and(|t| t <= now);
            if expired || (e.status == Status::InFlight && max_deliveries.is_some_and(|m| e.deliveries >= m)) {
                e.status = Status::Parked;
                self.parked.push(seq);
            } else {
                e.status = Status::Ready;
                self.ready.insert((Reverse(e.priority), seq));
                if let Some(t) = e.expires_at {
                    self.expiries.insert((t, seq));
                }
            }
        }
    }

    /// Messages past their TTL are parked for the dead-letter queue, unless in flight: as in
    /// RabbitMQ, a delivered message expires only once it is handed back.
    fn expire_ttls(&mut self, now: u64) {
        let due: Vec<(u64, u64)> = self.expiries.range(..(now + 1, 0)).copied().collect();
        for (t, seq) in due {
            let e = self.entries.get_mut(&seq).expect("expiring entry exists");
            match e.status {
                // In flight, or blocked behind its group's head: set aside until it is
                // eligible again (`place`, `expire`), so a past TTL is not looked at again
                // and again (receivers would wake for it every millisecond).
                Status::InFlight | Status::Parked | Status::Blocked => {
                    self.expiries.remove(&(t, seq));
                    continue;
                }
                Status::Ready => {
                    self.ready.remove(&(Reverse(e.priority), seq));
                }
                Status::Waiting => {
                    self.timers.remove(&(e.visible_at, seq));
                }
            }
            self.expiries.remove(&(t, seq));
            e.status = Status::Parked;
            self.parked.push(seq);
        }
    }

    /// Park again a message whose move to the dead-letter queue failed.
    pub(super) fn repark(&mut self, seq: u64) {
        if self.entries.get(&seq).is_some_and(|e| e.status == Status::Parked) && !self.parked.contains(&seq) {
            self.parked.push(seq);
        }
    }

    /// Messages parked for the dead-letter queue since the last call.
    pub(super) fn take_parked(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.parked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(priority: u8, group: Option<&str>) -> Entry {
        Entry::new(priority, group.map(str::to_string), 0, 0)
    }

    #[test]
    fn priority_first_then_fifo() {
        let mut ix = Index::default();
        for (seq, p) in [(0, 1), (1, 5), (2, 1), (3, 5)] {
            ix.insert(seq, entry(p, None));
        }
        let got: Vec<u64> = ix.take_ready(10, 0, 1000).into_iter().map(|(s, _)| s).collect();
        assert_eq!(got, vec![1, 3, 0, 2]);
    }

    #[test]
    fn a_group_delivers_one_at_a_time_in_order() {
        let mut ix = Index::default();
        ix.insert(0, entry(0, Some("g")));
        ix.insert(1, entry(9, Some("g")));
        ix.insert(2, entry(0, None));
        let first: Vec<u64> = ix.take_ready(10, 0, 1000).into_iter().map(|(s, _)| s).collect();
        assert_eq!(first, vec![0, 2], "the group's second message waits for its head");
        ix.remove(0);
        assert_eq!(ix.take_ready(10, 0, 1000).into_iter().map(|(s, _)| s).collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn timeouts_redeliver_then_park() {
        let mut ix = Index::default();
        ix.insert(0, entry(0, None));
        let (_, st) = ix.take_ready(1, 0, 100)[0];
        assert_eq!((st.deliveries, st.visible_at_ms), (1, 100));
        ix.expire(99, Some(2));
        assert!(ix.take_ready(1, 99, 100).is_empty(), "invisible before its deadline");
        ix.expire(100, Some(2));
        let (_, st) = ix.take_ready(1, 100, 100)[0];
        assert_eq!(st.deliveries, 2);
        ix.expire(200, Some(2));
        assert_eq!(ix.take_parked(), vec![0]);
        assert!(ix.take_ready(1, 200, 100).is_empty());
    }
}

#[cfg(test)]
mod properties {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    /// One step of a random workload.
    #[derive(Debug, Clone)]
    enum Op {
        Send { priority: u8, group: Option<u8>, delay: u64 },
        Receive { max: usize, visibility: u64 },
        Ack(usize),
        Requeue(usize, u64),
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..10, proptest::option::of(0u8..3), prop_oneof![Just(0u64), 1u64..50])
                .prop_map(|(priority, group, delay)| Op::Send { priority, group, delay }),
            (1usize..5, 1u64..50).prop_map(|(max, visibility)| Op::Receive { max, visibility }),
            any::<usize>().prop_map(Op::Ack),
            (any::<usize>(), 0u64..20).prop_map(|(i, d)| Op::Requeue(i, d)),
            (1u64..60).prop_map(Op::Advance),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        /// The queue state machine keeps every message in exactly one state, at most one
        /// message per FIFO group in flight, delivery counts that only grow, and never
        /// delivers a message while it is in flight.
        #[test]
        fn the_queue_state_machine_keeps_its_invariants(ops in proptest::collection::vec(op(), 1..120)) {
            // Times are virtual, far in the past so `place` sees them as due when advanced.
            let mut ix = Index::default();
            let mut now = 1u64;
            let mut in_flight: HashMap<u64, u32> = HashMap::new();
            let mut deliveries: HashMap<u64, u32> = HashMap::new();
            for op in ops {
                match op {
                    Op::Send { priority, group, delay } => {
                        let seq = ix.reserve_seq();
                        ix.insert(seq, Entry::new(priority, group.map(|g| g.to_string()), 0, if delay == 0 { 0 } else { now + delay }));
                    }
                    Op::Receive { max, visibility } => {
                        ix.expire(now, Some(5));
                        for (seq, st) in ix.take_ready(max, now, visibility) {
                            prop_assert!(!in_flight.contains_key(&seq), "message {} delivered while in flight", seq);
                            let before = deliveries.insert(seq, st.deliveries).unwrap_or(0);
                            prop_assert!(st.deliveries > before, "delivery count went from {} to {}", before, st.deliveries);
                            in_flight.insert(seq, st.deliveries);
                        }
                    }
                    Op::Ack(i) => {
                        if let Some(&seq) = in_flight.keys().nth(i % in_flight.len().max(1)) {
                            in_flight.remove(&seq);
                            ix.remove(seq);
                        }
                    }
                    Op::Requeue(i, d) => {
                        if let Some(&seq) = in_flight.keys().nth(i % in_flight.len().max(1)) {
                            in_flight.remove(&seq);
                            ix.requeue(seq, now + d);
                        }
                    }
                    Op::Advance(t) => {
                        now += t;
                        ix.expire(now, Some(5));
                        // Whatever timed out is no longer in flight.
                        in_flight.retain(|seq, _| ix.get(*seq).is_some_and(|e| e.status == Status::InFlight));
                    }
                }
                let (ready, waiting, flying) = ix.counts();
                prop_assert_eq!(ready + waiting + flying, ix.len() as u64);
                prop_assert_eq!(flying as usize, in_flight.len());
                let mut groups: HashMap<&str, usize> = HashMap::new();
                for seq in in_flight.keys() {
                    if let Some(g) = ix.get(*seq).and_then(|e| e.group.as_deref()) {
                        *groups.entry(g).or_default() += 1;
                    }
                }
                prop_assert!(groups.values().all(|n| *n <= 1), "two messages of one group in flight: {:?}", groups);
            }
        }
    }
}
