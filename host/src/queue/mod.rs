//! Queues: point-to-point delivery with SQS and RabbitMQ quorum-queue semantics, persisted in
//! the `queues` column family.
//!
//! A message is *ready*, *waiting* (delayed, or nacked with a delay), *in flight* (received,
//! invisible until its visibility deadline, identified by a receipt), or blocked behind the
//! head of its FIFO group. Competing consumers each get a different message; an unacked
//! message returns after its visibility timeout with its delivery count raised; after
//! `max_deliveries` it moves to the dead-letter queue with the reason. Higher priority first,
//! FIFO within a priority and within a group. A repeated dedup id within the window is
//! accepted but not enqueued again.
//!
//! Invariants:
//! * Every state change is durable before it is acknowledged to a client, except a
//!   delivery: it is written at `Os` durability (kept through a crash of weir, not of the
//!   machine, after which the message is ready again). The in-memory index is rebuilt from
//!   the column family at start.
//! * Writes for one queue are submitted while its lock is held, so they commit in the order
//!   the index changed.
//! * A receipt names one delivery (`seq-deliveries`); it stops working once the message is
//!   delivered again, acked or dead-lettered.
//!
//! Key layout (`queues` CF): `b·qid·seq` the message (immutable), `s·qid·seq` its delivery
//! state, `d·qid·dedup-id` a dedup id's expiry.

mod index;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::cluster::wire;
use crate::exchange::{Destination, Exchanges};
use crate::limits;
use crate::mirror::mirror;
use crate::storage::{Commit, StoreError, keys, stored};
use crate::store::{MetaWrite, Store, record};
use crate::types::{Durability, check_name, now_ms};
use index::{Entry, Index, Status};
use weir_sdk::headers;

/// A put (`Some`) or delete (`None`) of a key in the `queues` column family.
pub type QueueWrite = (Vec<u8>, Option<Vec<u8>>);

/// Settings of a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// How long a received message stays invisible before it is delivered again.
    pub visibility_timeout_ms: u64,
    /// Deliveries before the message moves to the dead-letter queue (`None`: unlimited).
    pub max_deliveries: Option<u32>,
    /// Queue receiving messages past `max_deliveries` (and explicit dead-letter nacks).
    pub dead_letter: Option<String>,
    /// How long a dedup id is remembered.
    pub dedup_window_ms: u64,
    /// Most messages held.
    pub max_messages: usize,
    /// AMQP's dead-letter exchange: dead letters are routed through it (with
    /// `dead_letter_routing_key`, or their own routing key) instead of to `dead_letter`.
    pub dead_letter_exchange: Option<String>,
    /// The routing key dead letters are routed with through `dead_letter_exchange`.
    pub dead_letter_routing_key: Option<String>,
    /// A message not delivered within this long of its send is dead-lettered (AMQP's
    /// `x-message-ttl`; a message's own `expiration` may be shorter).
    pub message_ttl_ms: Option<u64>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            visibility_timeout_ms: 30_000,
            max_deliveries: None,
            dead_letter: None,
            dedup_window_ms: 5 * 60_000,
            max_messages: limits::QUEUE_MAX_MESSAGES,
            dead_letter_exchange: None,
            dead_letter_routing_key: None,
            message_ttl_ms: None,
        }
    }
}

/// A message to enqueue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewQueueMessage {
    /// Payload.
    pub body: Vec<u8>,
    /// Metadata.
    pub headers: Vec<(String, String)>,
    /// 0 (lowest, the default) to 9.
    pub priority: u8,
    /// Invisible for this long after sending.
    pub delay_ms: u64,
    /// Sending the same id again within the queue's dedup window enqueues nothing.
    pub dedup_id: Option<String>,
    /// FIFO group: one message of a group is in flight at a time, in send order.
    pub group: Option<String>,
    /// Dead-lettered if not delivered within this long (AMQP's `expiration`); the queue's
    /// `message_ttl_ms` may be shorter.
    pub ttl_ms: Option<u64>,
}

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Ack, nack or extend with this.
    pub receipt: String,
    /// Payload.
    pub body: Vec<u8>,
    /// Metadata, with `weir-delivery-count` and `weir-priority` added.
    pub headers: Vec<(String, String)>,
    /// Times delivered, this one included.
    pub deliveries: u32,
    /// Priority.
    pub priority: u8,
    /// FIFO group.
    pub group: Option<String>,
    /// Send time, ms since the epoch.
    pub enqueued_ms: u64,
}

/// Counts and settings of a queue.
#[derive(Debug, Clone)]
pub struct QueueInfo {
    /// Name.
    pub name: String,
    /// Settings.
    pub config: QueueConfig,
    /// Deliverable now.
    pub ready: u64,
    /// Delayed or blocked behind their FIFO group.
    pub waiting: u64,
    /// Received and not yet acked.
    pub in_flight: u64,
    /// Creation time.
    pub created_ms: u64,
}

/// What to do with a message handed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nack {
    /// Make it deliverable again (after `delay_ms`).
    Requeue {
        /// Wait before it is visible again.
        delay_ms: u64,
    },
    /// Move it to the dead-letter queue now.
    DeadLetter,
}

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// No such queue.
    #[error("unknown queue `{0}`: create it with `weir queue create {0}`")]
    Unknown(String),
    /// A queue of that name exists.
    #[error("queue `{0}` already exists")]
    Exists(String),
    /// The receipt does not name a current delivery.
    #[error(
        "receipt {receipt} of queue `{queue}` is not valid any more: the message was acked, delivered again after its visibility timeout, or dead-lettered"
    )]
    StaleReceipt {
        /// Queue.
        queue: String,
        /// Receipt.
        receipt: String,
    },
    /// A setting or argument is out of range.
    #[error("{0}")]
    Invalid(String),
    /// The queue is full.
    #[error("queue `{queue}` holds its maximum of {max} messages; consume some or raise --max-messages")]
    Full {
        /// Queue.
        queue: String,
        /// Its limit.
        max: usize,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

type Result<T, E = QueueError> = std::result::Result<T, E>;

mirror!(stored::QueueConfigV1 => QueueConfig {
    visibility_timeout_ms, max_deliveries, dead_letter, dedup_window_ms, max_messages,
    dead_letter_exchange, dead_letter_routing_key, message_ttl_ms
});
mirror!(wire::QueueConfigC1 => QueueConfig {
    visibility_timeout_ms, max_deliveries, dead_letter, dedup_window_ms, max_messages,
    dead_letter_exchange, dead_letter_routing_key, message_ttl_ms
});

/// A queue's record (`queue/<name>`).
#[derive(Debug, Clone)]
struct QueueRecord {
    id: u32,
    name: String,
    config: QueueConfig,
    created_ms: u64,
}

mirror!(stored::QueueV1 => QueueRecord { id, name, config: into, created_ms });
mirror!(wire::QueueC1 => QueueRecord { id, name, config: into, created_ms });
record!(QueueRecord => stored::QueueV1, wire::QueueC1);

/// The immutable part of a message (`b` key).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Body {
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
    headers: Vec<(String, String)>,
    priority: u8,
    group: Option<String>,
    enqueued_ms: u64,
    available_at_ms: u64,
    #[serde(default)]
    expires_at_ms: Option<u64>,
}

/// Delivery state (`s` key): written on receive, nack and extend.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct DeliveryState {
    deliveries: u32,
    visible_at_ms: u64,
    in_flight: bool,
}

/// One queue: settings, index and the wake-up for waiting receivers.
pub struct Queue {
    /// Numeric id in keys.
    pub id: u32,
    /// Name.
    pub name: String,
    /// Settings.
    pub config: QueueConfig,
    created_ms: u64,
    index: Mutex<Index>,
    notify: Notify,
    /// Messages moved to the dead-letter queue (or dropped without one) since the server
    /// started (for metrics).
    dead_lettered: std::sync::atomic::AtomicU64,
}

/// Every queue of the server.
pub struct Queues {
    store: Arc<Store>,
    /// Routes dead letters of queues with a dead-letter exchange.
    exchanges: Arc<Exchanges>,
    queues: RwLock<HashMap<String, Arc<Queue>>>,
}

impl Queue {
    fn new(rec: QueueRecord, index: Index) -> Queue {
        Queue {
            id: rec.id,
            name: rec.name,
            config: rec.config,
            created_ms: rec.created_ms,
            index: Mutex::new(index),
            notify: Notify::new(),
            dead_lettered: Default::default(),
        }
    }
}

fn key(kind: u8, qid: u32, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(13);
    k.push(kind);
    k.extend_from_slice(&qid.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn dedup_key(qid: u32, id: &str) -> Vec<u8> {
    let mut k = vec![b'd'];
    k.extend_from_slice(&qid.to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

fn prefix(kind: u8, qid: u32) -> Vec<u8> {
    let mut k = vec![kind];
    k.extend_from_slice(&qid.to_be_bytes());
    k
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    rmp_serde::to_vec(v).expect("queue records always encode")
}

fn decode<T: serde::de::DeserializeOwned>(what: &[u8], v: &[u8]) -> Result<T> {
    rmp_serde::from_slice(v)
        .map_err(|e| StoreError::Corrupt { what: format!("queue entry {what:02x?}"), why: e.to_string() }.into())
}

impl Queues {
    /// Load every queue and rebuild its index from the store.
    pub async fn open(store: Arc<Store>, exchanges: Arc<Exchanges>) -> Result<Queues> {
        let mut queues = HashMap::new();
        let now = now_ms();
        for (_, rec) in store.meta_scan::<QueueRecord>(keys::meta::QUEUES).await? {
            let index = recover(&store, rec.id, now)?;
            queues.insert(rec.name.clone(), Arc::new(Queue::new(rec, index)));
        }
        Ok(Queues { store, exchanges, queues: RwLock::new(queues) })
    }

    /// Rebuild every queue's index from the store (this node coordinates the queues now and
    /// loaded their state).
    pub async fn reload(&self) -> Result<()> {
        let now = now_ms();
        for (_, rec) in self.store.meta_scan::<QueueRecord>(keys::meta::QUEUES).await? {
            let index = recover(&self.store, rec.id, now)?;
            let mut queues = self.queues.write().expect("queues");
            match queues.get(&rec.name) {
                Some(q) if q.id == rec.id => *q.index.lock().expect("queue index") = index,
                _ => {
                    queues.insert(rec.name.clone(), Arc::new(Queue::new(rec, index)));
                }
            }
        }
        Ok(())
    }

    /// Forget every queue's messages here (another node coordinates the queues now); the
    /// queues themselves stay known.
    pub fn forget_indexes(&self) {
        for q in self.all() {
            let mut index = q.index.lock().expect("queue index");
            let next_seq = index.next_seq;
            *index = Index::default();
            index.next_seq = next_seq;
        }
    }

    /// Read queue `name`'s record again from the store (another node changed it).
    pub async fn follow(&self, name: &str) -> Result<()> {
        let stored = self.store.meta_get::<QueueRecord>(&keys::meta::queue(name)).await?;
        let mut queues = self.queues.write().expect("queues");
        match stored {
            Some(rec) if queues.get(name).is_some_and(|q| q.id == rec.id) => {}
            Some(rec) => {
                let index = recover(&self.store, rec.id, now_ms())?;
                queues.insert(name.to_string(), Arc::new(Queue::new(rec, index)));
            }
            None => {
                queues.remove(name);
            }
        }
        Ok(())
    }

    /// Create a queue (and its dead-letter queue, if named and missing).
    pub async fn create(&self, name: &str, config: QueueConfig) -> Result<QueueInfo> {
        check_name("queue", name).map_err(|e| QueueError::Invalid(e.to_string()))?;
        check_config(&config)?;
        if self.get(name).is_ok() {
            return Err(QueueError::Exists(name.to_string()));
        }
        if let Some(dlq) = &config.dead_letter {
            if dlq == name {
                return Err(QueueError::Invalid(format!("queue `{name}` cannot be its own dead-letter queue")));
            }
            if self.get(dlq).is_err() {
                Box::pin(self.create(dlq, QueueConfig::default())).await?;
            }
        }
        let id = self.store.next_id(keys::meta::QUEUE_SEQ).await?;
        let rec = QueueRecord { id, name: name.to_string(), config, created_ms: now_ms() };
        match self.store.meta_write(vec![MetaWrite::create(keys::meta::queue(name), &rec)]).await {
            Err(StoreError::Conflict(_)) => return Err(QueueError::Exists(name.to_string())),
            other => other?,
        }
        let q = Arc::new(Queue::new(rec, Index::default()));
        self.queues.write().expect("queues").insert(name.to_string(), q.clone());
        Ok(q.info())
    }

    /// Delete a queue and every message in it.
    pub async fn delete(&self, name: &str) -> Result<()> {
        let q = self.get(name)?;
        self.store.meta_write(vec![MetaWrite::delete(keys::meta::queue(name))]).await?;
        self.queues.write().expect("queues").remove(name);
        self.purge_keys(&q).await
    }

    /// Remove every message (in flight ones too); returns how many.
    pub async fn purge(&self, name: &str) -> Result<u64> {
        let q = self.get(name)?;
        let n = {
            let mut index = q.index.lock().expect("queue index");
            let n = index.len() as u64;
            let next_seq = index.next_seq;
            *index = Index::default();
            index.next_seq = next_seq;
            n
        };
        self.purge_keys(&q).await?;
        Ok(n)
    }

    async fn purge_keys(&self, q: &Queue) -> Result<()> {
        let mut writes = Vec::new();
        for kind in [b'b', b's', b'd'] {
            for (k, _) in self.store.queue_scan(&prefix(kind, q.id))? {
                writes.push((k, None));
            }
        }
        self.store.submit(Commit { queue: writes, ..Commit::default() }).await?;
        Ok(())
    }

    /// The queue named `name`.
    pub fn get(&self, name: &str) -> Result<Arc<Queue>> {
        self.queues.read().expect("queues").get(name).cloned().ok_or_else(|| QueueError::Unknown(name.to_string()))
    }

    /// Every queue, by name (for metrics).
    pub fn all(&self) -> Vec<Arc<Queue>> {
        let mut all: Vec<Arc<Queue>> = self.queues.read().expect("queues").values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Every queue, by name.
    pub fn list(&self) -> Vec<QueueInfo> {
        let mut all: Vec<QueueInfo> = self.queues.read().expect("queues").values().map(|q| q.info()).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Validate and stage a send: the writes to commit, and what to do once committed.
    /// `None` when the dedup id was seen within the window (accepted, not enqueued).
    pub fn prepare_send(&self, name: &str, msg: NewQueueMessage) -> Result<Option<PreparedSend>> {
        let q = self.get(name)?;
        check_message(&msg)?;
        let now = now_ms();
        let mut index = q.index.lock().expect("queue index");
        if let Some(id) = &msg.dedup_id
            && index.dedup.get(id).is_some_and(|exp| *exp > now)
        {
            return Ok(None);
        }
        if index.len() >= q.config.max_messages {
            return Err(QueueError::Full { queue: q.name.clone(), max: q.config.max_messages });
        }
        let seq = index.reserve_seq();
        let body = Body {
            body: msg.body,
            headers: msg.headers,
            priority: msg.priority,
            group: msg.group,
            enqueued_ms: now,
            available_at_ms: now + msg.delay_ms,
            expires_at_ms: [msg.ttl_ms, q.config.message_ttl_ms]
                .into_iter()
                .flatten()
                .min()
                .map(|t| now.saturating_add(t)),
        };
        let mut writes = vec![(key(b'b', q.id, seq), Some(encode(&body)))];
        if let Some(id) = &msg.dedup_id {
            let exp = now + q.config.dedup_window_ms;
            index.dedup.insert(id.clone(), exp);
            writes.push((dedup_key(q.id, id), Some(exp.to_be_bytes().to_vec())));
        }
        let mut entry = Entry::new(body.priority, body.group.clone(), 0, body.available_at_ms);
        entry.expires_at = body.expires_at_ms;
        Ok(Some(PreparedSend { queue: q.clone(), seq, entry, writes }))
    }

    /// Send one message durably. Returns whether it was enqueued (false: a dedup repeat).
    pub async fn send(&self, name: &str, msg: NewQueueMessage) -> Result<bool> {
        self.store.check_space()?;
        let Some(prepared) = self.prepare_send(name, msg)? else { return Ok(false) };
        let writes = prepared.writes.clone();
        self.store.submit(Commit { queue: writes, ..Commit::default() }).await?;
        prepared.commit();
        Ok(true)
    }

    /// Receive up to `max` messages, waiting up to `wait` for the first one.
    pub async fn receive(
        &self,
        name: &str,
        max: usize,
        wait: Duration,
        visibility_ms: Option<u64>,
    ) -> Result<Vec<Delivery>> {
        let q = self.get(name)?;
        let max = max.clamp(1, limits::QUEUE_RECEIVE_MAX);
        let visibility = visibility_ms.unwrap_or(q.config.visibility_timeout_ms).min(limits::QUEUE_MAX_DELAY_MS);
        let deadline = tokio::time::Instant::now() + wait.min(Duration::from_millis(limits::MAX_FETCH_WAIT_MS));
        loop {
            let notified = q.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (taken, pending) = {
                let mut index = q.index.lock().expect("queue index");
                // Messages past their deliveries are parked here and moved by `tick`.
                index.expire(now_ms(), q.config.max_deliveries);
                let taken = index.take_ready(max, now_ms(), visibility);
                let writes: Vec<_> = taken.iter().map(|(seq, st)| (key(b's', q.id, *seq), Some(encode(st)))).collect();
                let writes_empty = writes.is_empty();
                // A delivery is written at `Os` durability: lost only with the machine, and
                // then the message is simply ready again (at-least-once, as RabbitMQ's
                // deliveries are never logged). It does not wait for a publish's fsync.
                let receive = Commit { queue: writes, durability: Some(Durability::Os), ..Commit::default() };
                let pending = (!writes_empty).then(|| self.store.submit(receive));
                (taken, pending)
            };
            if let Some(pending) = pending {
                pending.await?;
                return self.deliveries(&q, taken);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            // Wake for a send, a nack, or the next timer (delay or visibility deadline).
            let next_timer = q.index.lock().expect("queue index").next_timer();
            let until = next_timer
                .map(|t| now + Duration::from_millis(t.saturating_sub(now_ms()).max(1)))
                .map_or(deadline, |t| t.min(deadline));
            let _ = tokio::time::timeout_at(until, notified).await;
        }
    }

    fn deliveries(&self, q: &Queue, taken: Vec<(u64, DeliveryState)>) -> Result<Vec<Delivery>> {
        taken
            .into_iter()
            .map(|(seq, st)| {
                let k = key(b'b', q.id, seq);
                let raw = self.store.queue_get(&k)?.ok_or_else(|| StoreError::Corrupt {
                    what: format!("queue {} message {seq}", q.name),
                    why: "body missing".into(),
                })?;
                let b: Body = decode(&k, &raw)?;
                let mut headers = b.headers;
                headers.push((headers::DELIVERY_COUNT.into(), st.deliveries.to_string()));
                if b.priority > 0 {
                    headers.push((headers::PRIORITY.into(), b.priority.to_string()));
                }
                Ok(Delivery {
                    receipt: receipt(seq, st.deliveries),
                    body: b.body,
                    headers,
                    deliveries: st.deliveries,
                    priority: b.priority,
                    group: b.group,
                    enqueued_ms: b.enqueued_ms,
                })
            })
            .collect()
    }

    /// Acknowledge deliveries: the messages are gone for good.
    pub async fn ack(&self, name: &str, receipts: &[String]) -> Result<()> {
        let q = self.get(name)?;
        let pending = {
            let index = q.index.lock().expect("queue index");
            let writes = self.ack_writes(&q, &index, receipts)?;
            self.store.submit(Commit { queue: writes, ..Commit::default() })
        };
        pending.await?;
        self.acked(name, receipts);
        Ok(())
    }

    /// Stage acks for a caller's own commit (a pipeline acks in the commit of its outputs):
    /// the returned deletes must be committed, then [`Queues::acked`] called. Until then the
    /// messages stay in flight, so a describe (or a pipeline's lag) never shows an ack that a
    /// crash could still undo — in a cluster a batch's outputs land before its acks.
    pub fn ack_in_commit(&self, name: &str, receipts: &[String]) -> Result<Vec<QueueWrite>> {
        let q = self.get(name)?;
        let index = q.index.lock().expect("queue index");
        self.ack_writes(&q, &index, receipts)
    }

    /// The index forgets messages whose acks are durable. A message redelivered meanwhile
    /// (its deadline passed during the write) is forgotten too: the store no longer has it,
    /// and its new receipt is refused as stale.
    pub fn acked(&self, name: &str, receipts: &[String]) {
        let Ok(q) = self.get(name) else { return };
        let mut index = q.index.lock().expect("queue index");
        for (seq, _) in receipts.iter().filter_map(|r| parse_receipt(r)) {
            index.remove(seq);
        }
        drop(index);
        q.notify.notify_waiters();
    }

    fn ack_writes(&self, q: &Queue, index: &Index, receipts: &[String]) -> Result<Vec<QueueWrite>> {
        let seqs = receipts.iter().map(|r| self.in_flight(q, index, r)).collect::<Result<Vec<_>>>()?;
        let mut writes = Vec::with_capacity(seqs.len() * 2);
        for seq in seqs {
            writes.push((key(b'b', q.id, seq), None));
            writes.push((key(b's', q.id, seq), None));
        }
        Ok(writes)
    }

    /// Hand deliveries back: requeue them (after a delay) or dead-letter them now.
    pub async fn nack(&self, name: &str, receipts: &[String], how: Nack) -> Result<()> {
        let q = self.get(name)?;
        let now = now_ms();
        let mut moves = Vec::new();
        let pending = {
            let mut index = q.index.lock().expect("queue index");
            let seqs = receipts.iter().map(|r| self.in_flight(&q, &index, r)).collect::<Result<Vec<_>>>()?;
            let mut writes = Vec::new();
            for seq in seqs {
                let spent = index.get(seq).zip(q.config.max_deliveries).is_some_and(|(e, m)| e.deliveries >= m);
                match how {
                    // Handed back after its last allowed delivery: it goes where a timed-out
                    // one would, not round again.
                    Nack::Requeue { .. } if spent => {
                        let n = q.config.max_deliveries.unwrap_or(0);
                        moves.push((
                            seq,
                            format!("delivered {n} times without an ack (max deliveries)"),
                            "delivery_limit",
                        ));
                    }
                    Nack::Requeue { delay_ms } => {
                        let st = index.requeue(seq, now + delay_ms.min(limits::QUEUE_MAX_DELAY_MS));
                        writes.push((key(b's', q.id, seq), Some(encode(&st))));
                    }
                    Nack::DeadLetter => {
                        moves.push((seq, "dead-lettered by a consumer (nack --dead-letter)".to_string(), "rejected"))
                    }
                }
            }
            (!writes.is_empty()).then(|| self.store.submit(Commit { queue: writes, ..Commit::default() }))
        };
        if let Some(p) = pending {
            p.await?;
        }
        for (seq, reason, kind) in moves {
            self.dead_letter(&q, seq, &reason, kind).await?;
        }
        q.notify.notify_waiters();
        Ok(())
    }

    /// Give in-flight deliveries more time.
    pub async fn extend(&self, name: &str, receipts: &[String], timeout_ms: u64) -> Result<()> {
        let q = self.get(name)?;
        let deadline = now_ms() + timeout_ms.min(limits::QUEUE_MAX_DELAY_MS);
        let pending = {
            let mut index = q.index.lock().expect("queue index");
            let seqs = receipts.iter().map(|r| self.in_flight(&q, &index, r)).collect::<Result<Vec<_>>>()?;
            let writes: Vec<_> = seqs
                .into_iter()
                .map(|seq| (key(b's', q.id, seq), Some(encode(&index.extend(seq, deadline)))))
                .collect();
            self.store.submit(Commit { queue: writes, ..Commit::default() })
        };
        pending.await?;
        Ok(())
    }

    fn in_flight(&self, q: &Queue, index: &Index, receipt: &str) -> Result<u64> {
        let stale = || QueueError::StaleReceipt { queue: q.name.clone(), receipt: receipt.to_string() };
        let (seq, deliveries) = parse_receipt(receipt).ok_or_else(stale)?;
        match index.get(seq) {
            Some(e) if matches!(e.status, Status::InFlight) && e.deliveries == deliveries => Ok(seq),
            _ => Err(stale()),
        }
    }

    /// Deliveries past their deadline come back, or move to the dead-letter queue after
    /// `max_deliveries`; delayed messages whose time came become ready. Called by receives and
    /// by the broker's timer.
    pub async fn tick(&self) -> Result<()> {
        let queues: Vec<Arc<Queue>> = self.queues.read().expect("queues").values().cloned().collect();
        let now = now_ms();
        for q in queues {
            let (expired, woke) = {
                let mut index = q.index.lock().expect("queue index");
                index.expire(now, q.config.max_deliveries);
                let expired: Vec<(u64, bool)> =
                    index.take_parked().into_iter().map(|seq| (seq, index.expired(seq, now))).collect();
                let woke = index.ready_len() > 0;
                index.dedup.retain(|_, exp| *exp > now);
                (expired, woke)
            };
            for (seq, ttl) in expired {
                let (reason, kind) = if ttl {
                    ("expired: not delivered within its time to live".to_string(), "expired")
                } else {
                    let n = q.config.max_deliveries.unwrap_or(0);
                    (format!("delivered {n} times without an ack (max deliveries)"), "delivery_limit")
                };
                if let Err(e) = self.dead_letter(&q, seq, &reason, kind).await {
                    // Kept parked, tried again at the next tick (the store may be full).
                    tracing::warn!(queue = %q.name, seq, error = %e, "cannot dead-letter a message yet");
                    q.index.lock().expect("queue index").repark(seq);
                }
            }
            if woke {
                q.notify.notify_waiters();
            }
        }
        Ok(())
    }

    /// Move one message to the queue's dead-letter queue (or drop it, if it has none),
    /// atomically: the delete here and the put there are one commit.
    /// `kind` is the reason in RabbitMQ's words: `rejected`, `expired` or `delivery_limit`.
    async fn dead_letter(&self, q: &Arc<Queue>, seq: u64, reason: &str, kind: &str) -> Result<()> {
        let k = key(b'b', q.id, seq);
        let Some(raw) = self.store.queue_get(&k)? else { return Ok(()) };
        let mut body: Body = decode(&k, &raw)?;
        let mut writes = vec![(k, None), (key(b's', q.id, seq), None)];
        let targets = self.dead_letter_targets(q, &body.headers);
        if targets.is_empty() {
            tracing::warn!(queue = %q.name, seq, reason, "message dropped: the queue has no dead-letter queue");
        }
        mark_dead(&mut body.headers, reason, &q.name, kind);
        let mut staged = Vec::new();
        for target in targets {
            let msg = NewQueueMessage {
                body: body.body.clone(),
                headers: body.headers.clone(),
                priority: body.priority,
                group: body.group.clone(),
                ..Default::default()
            };
            match self.prepare_send(&target, msg) {
                Ok(Some(s)) => {
                    writes.extend(s.writes.clone());
                    staged.push(s);
                }
                Ok(None) => {}
                // A target that refuses it (full, say) does not get it, as in RabbitMQ; the
                // others do, and the message leaves this queue either way.
                Err(e) => tracing::warn!(queue = %q.name, seq, target = %target, error = %e, "dead letter not taken"),
            }
        }
        let pending = {
            q.index.lock().expect("queue index").remove(seq);
            self.store.submit(Commit { queue: writes, ..Commit::default() })
        };
        pending.await?;
        q.dead_lettered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        staged.into_iter().for_each(PreparedSend::commit);
        Ok(())
    }

    /// Where a dead letter of `q` goes: the queues its dead-letter exchange routes it to (by
    /// the queue's dead-letter routing key, or the message's own), else its dead-letter queue.
    fn dead_letter_targets(&self, q: &Queue, message_headers: &[(String, String)]) -> Vec<String> {
        if let Some(x) = &q.config.dead_letter_exchange {
            let own = message_headers.iter().find(|(k, _)| k == headers::ROUTING_KEY).map(|(_, v)| v.as_str());
            let key = q.config.dead_letter_routing_key.as_deref().or(own).unwrap_or(&q.name);
            return match self.exchanges.route(x, key, message_headers) {
                Ok(dests) => dests
                    .into_iter()
                    .filter_map(|d| match d {
                        Destination::Queue(name) if self.get(&name).is_ok() => Some(name),
                        _ => None,
                    })
                    .collect(),
                Err(e) => {
                    tracing::warn!(queue = %q.name, error = %e, "dead letter not routed");
                    Vec::new()
                }
            };
        }
        q.config.dead_letter.iter().filter(|d| self.get(d).is_ok()).cloned().collect()
    }
}

/// Mark a message dead-lettered from `queue`: this death's reason replaces the last one's
/// (headers do not pile up across deaths), and its `(reason, queue)` count goes up in
/// `weir-dlq-deaths` (most recent first, as RabbitMQ's `x-death`), bounded in length.
fn mark_dead(hs: &mut Vec<(String, String)>, reason: &str, queue: &str, kind: &str) {
    let deaths = hs.iter().find(|(n, _)| n == headers::DLQ_DEATHS).map(|(_, v)| v.clone()).unwrap_or_default();
    let mut deaths: Vec<(String, String, u64)> = deaths
        .split(',')
        .filter_map(|d| {
            let mut it = d.split(' ');
            Some((it.next()?.to_string(), it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect();
    let count = match deaths.iter().position(|(r, q, _)| r == kind && q == queue) {
        Some(i) => deaths.remove(i).2 + 1,
        None => 1,
    };
    deaths.insert(0, (kind.to_string(), queue.to_string(), count));
    deaths.truncate(limits::QUEUE_DEATHS_KEPT);
    let first =
        hs.iter().find(|(n, _)| n == headers::DLQ_FIRST).map_or_else(|| format!("{kind} {queue}"), |(_, v)| v.clone());
    let replaced =
        [headers::DLQ_ERROR, headers::DLQ_QUEUE, headers::DLQ_REASON, headers::DLQ_DEATHS, headers::DLQ_FIRST];
    hs.retain(|(k, _)| !replaced.contains(&k.as_str()));
    hs.push((headers::DLQ_ERROR.into(), reason.to_string()));
    hs.push((headers::DLQ_QUEUE.into(), queue.to_string()));
    hs.push((headers::DLQ_REASON.into(), kind.to_string()));
    let deaths: Vec<String> = deaths.iter().map(|(r, q, n)| format!("{r} {q} {n}")).collect();
    hs.push((headers::DLQ_DEATHS.into(), deaths.join(",")));
    hs.push((headers::DLQ_FIRST.into(), first));
}

impl Queue {
    /// Messages dead-lettered since the server started.
    pub fn dead_lettered(&self) -> u64 {
        self.dead_lettered.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Counts and settings.
    pub fn info(&self) -> QueueInfo {
        let index = self.index.lock().expect("queue index");
        let (ready, waiting, in_flight) = index.counts();
        QueueInfo {
            name: self.name.clone(),
            config: self.config.clone(),
            ready,
            waiting,
            in_flight,
            created_ms: self.created_ms,
        }
    }
}

/// A send whose writes are to be committed by the caller, then [`PreparedSend::commit`]ted
/// to the index (so a message is never delivered before it is durable).
pub struct PreparedSend {
    queue: Arc<Queue>,
    seq: u64,
    entry: Entry,
    /// Writes for the `queues` column family.
    pub writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl PreparedSend {
    /// Make the message deliverable (after its writes were committed).
    pub fn commit(self) {
        self.queue.index.lock().expect("queue index").insert(self.seq, self.entry);
        self.queue.notify.notify_waiters();
    }
}

fn receipt(seq: u64, deliveries: u32) -> String {
    format!("{seq}-{deliveries}")
}

fn parse_receipt(r: &str) -> Option<(u64, u32)> {
    let (s, d) = r.split_once('-')?;
    Some((s.parse().ok()?, d.parse().ok()?))
}

fn check_config(c: &QueueConfig) -> Result<()> {
    if c.visibility_timeout_ms == 0 || c.visibility_timeout_ms > limits::QUEUE_MAX_DELAY_MS {
        return Err(QueueError::Invalid(format!(
            "visibility timeout must be between 1 ms and 12 h, got {} ms",
            c.visibility_timeout_ms
        )));
    }
    if c.max_deliveries == Some(0) {
        return Err(QueueError::Invalid("max deliveries must be at least 1".into()));
    }
    if c.max_messages == 0 || c.max_messages > limits::QUEUE_MAX_MESSAGES {
        return Err(QueueError::Invalid(format!("max messages must be between 1 and {}", limits::QUEUE_MAX_MESSAGES)));
    }
    if let Some(d) = &c.dead_letter {
        check_name("queue", d).map_err(|e| QueueError::Invalid(e.to_string()))?;
    }
    Ok(())
}

fn check_message(m: &NewQueueMessage) -> Result<()> {
    if m.priority > 9 {
        return Err(QueueError::Invalid(format!("priority must be 0 to 9, got {}", m.priority)));
    }
    if m.body.len() > limits::MAX_MESSAGE_BYTES {
        return Err(QueueError::Invalid(format!(
            "message of {} bytes exceeds the {}-byte limit",
            m.body.len(),
            limits::MAX_MESSAGE_BYTES
        )));
    }
    if m.delay_ms > limits::QUEUE_MAX_DELAY_MS {
        return Err(QueueError::Invalid("delay must be at most 12 h".into()));
    }
    if m.headers.len() > limits::MAX_HEADERS || m.dedup_id.as_ref().is_some_and(|d| d.is_empty() || d.len() > 128) {
        return Err(QueueError::Invalid("too many headers, or a dedup id that is empty or over 128 bytes".into()));
    }
    Ok(())
}

/// Rebuild a queue's index from its keys.
fn recover(store: &Store, qid: u32, now: u64) -> Result<Index> {
    let mut states: HashMap<u64, DeliveryState> = HashMap::new();
    for (k, v) in store.queue_scan(&prefix(b's', qid))? {
        let seq = u64::from_be_bytes(k[5..13].try_into().expect("key length"));
        states.insert(seq, decode(&k, &v)?);
    }
    let mut index = Index::default();
    for (k, v) in store.queue_scan(&prefix(b'b', qid))? {
        let seq = u64::from_be_bytes(k[5..13].try_into().expect("key length"));
        let b: Body = decode(&k, &v)?;
        let st = states.get(&seq).copied();
        let mut entry = Entry::new(
            b.priority,
            b.group,
            st.map_or(0, |s| s.deliveries),
            st.map_or(b.available_at_ms, |s| s.visible_at_ms),
        );
        if st.is_some_and(|s| s.in_flight && s.visible_at_ms > now) {
            entry.status = Status::InFlight;
        }
        entry.expires_at = b.expires_at_ms;
        index.next_seq = index.next_seq.max(seq + 1);
        index.insert(seq, entry);
    }
    for (k, v) in store.queue_scan(&prefix(b'd', qid))? {
        let exp = u64::from_be_bytes(v.as_slice().try_into().unwrap_or([0; 8]));
        if exp > now {
            index.dedup.insert(String::from_utf8_lossy(&k[5..]).into_owned(), exp);
        }
    }
    Ok(index)
}
