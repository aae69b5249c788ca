//! One AMQP channel: its methods as broker commands, the content of a message being
//! published, publisher confirms, and its deliveries (tags, prefetch, consumers).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amq_protocol::frame::{AMQPContentHeader, AMQPFrame};
use amq_protocol::protocol::{AMQPClass, BasicProperties, basic, confirm, exchange, queue};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::props::{self, short};
use super::{
    ACCESS_REFUSED, AmqpError, COMMAND_INVALID, Conn, Event, FRAME_ERROR, NO_ROUTE, NOT_ALLOWED, NOT_FOUND,
    NOT_IMPLEMENTED, Out, PRECONDITION_FAILED, UNEXPECTED_FRAME,
};
use crate::broker::{BrokerError, Command, ErrorKind, ExchangeCommand, QueueCommand, Reply};
use crate::exchange::{Binding, Destination, ExchangeType};
use crate::limits;
use crate::queue::{Delivery, Nack};
use crate::storage::NewRecord;

/// The pseudo-queue of RabbitMQ's direct reply-to.
const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// Why a method failed: the channel closes, or the whole connection does.
pub(super) enum Failure {
    Channel(AmqpError),
    Connection(AmqpError),
}

impl From<AmqpError> for Failure {
    fn from(e: AmqpError) -> Failure {
        Failure::Channel(e)
    }
}

type Handled = Result<(), Failure>;

/// A message being published: the method, then its header, then body frames.
struct Publishing {
    exchange: String,
    routing_key: String,
    mandatory: bool,
    header: Option<(u64, BasicProperties)>,
    body: Vec<u8>,
}

/// A message whose content arrived whole.
pub(super) struct Complete {
    exchange: String,
    routing_key: String,
    mandatory: bool,
    properties: BasicProperties,
    body: Vec<u8>,
}

/// A delivery the client has not acknowledged yet.
struct Unacked {
    queue: String,
    receipt: String,
    since: tokio::time::Instant,
    /// The consumer it went to (`None`: basic.get), for per-consumer prefetch.
    consumer: Option<Arc<str>>,
}

/// Deliveries of a channel, shared with its consumers' tasks.
#[derive(Default)]
struct Deliveries {
    next_tag: u64,
    /// Unacked deliveries per consumer (`basic.qos` without global): 0 is unlimited.
    prefetch: u16,
    /// `basic.qos` with global: the prefetch counts the whole channel's deliveries.
    global: bool,
    unacked: BTreeMap<u64, Unacked>,
}

#[derive(Default)]
struct Shared {
    deliveries: Mutex<Deliveries>,
    /// Woken when deliveries are acked (credit for consumers), or flow resumes.
    credit: Notify,
    /// `channel.flow` with active false: consumers deliver nothing until it is resumed.
    paused: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// Credit worth a receive: all of it when nothing is outstanding, else only once a
    /// quarter of the prefetch is free. A consumer acking one message at a time would
    /// otherwise cost a receive (a durable write) per message; three quarters of its
    /// prefetch stay in flight meanwhile.
    /// The prefetch counts `consumer`'s deliveries (RabbitMQ's per-consumer `basic.qos`),
    /// or the channel's with `global`; every channel holds at most
    /// [`limits::AMQP_MAX_UNACKED`] whatever it asks.
    fn batch_credit(&self, consumer: &str) -> usize {
        if self.paused.load(std::sync::atomic::Ordering::Acquire) {
            return 0;
        }
        let d = self.deliveries.lock().expect("deliveries");
        let cap = match d.prefetch {
            0 => limits::AMQP_MAX_UNACKED,
            n => usize::from(n).min(limits::AMQP_MAX_UNACKED),
        };
        let held = if d.global {
            d.unacked.len()
        } else {
            d.unacked.values().filter(|u| u.consumer.as_deref() == Some(consumer)).count()
        };
        let free = cap.saturating_sub(held).min(limits::AMQP_MAX_UNACKED.saturating_sub(d.unacked.len()));
        if held == 0 || free >= (cap / 4).max(1) { free } else { 0 }
    }

    /// A tag for a delivery, remembered unless it needs no ack.
    fn tag(&self, queue: &str, receipt: &str, ack: bool, consumer: Option<&Arc<str>>) -> u64 {
        let mut d = self.deliveries.lock().expect("deliveries");
        d.next_tag += 1;
        let tag = d.next_tag;
        if ack {
            let since = tokio::time::Instant::now();
            let (queue, receipt, consumer) = (queue.to_string(), receipt.to_string(), consumer.cloned());
            d.unacked.insert(tag, Unacked { queue, receipt, since, consumer });
        }
        tag
    }
}

/// A consumer's task and how to stop it.
struct Consumer {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// One open channel.
pub(super) struct Channel {
    id: u16,
    /// We sent channel.close and wait for close-ok; everything else is dropped.
    pub closing: bool,
    publishing: Option<Publishing>,
    /// Publisher confirms: the sequence number of the last publish (0 before the first).
    confirms: Option<u64>,
    shared: Arc<Shared>,
    consumers: HashMap<String, Consumer>,
    /// The last queue declared on the channel (AMQP's default for an empty queue name).
    last_queue: Option<String>,
    /// The queue standing in for direct reply-to, once a consumer asked for it.
    reply_queue: Option<String>,
    /// Acks being written beside the connection, a batch at a time.
    acks: Arc<Mutex<AckBatch>>,
    /// Set once the channel is released: its tasks' late results are dropped.
    closed: Arc<std::sync::atomic::AtomicBool>,
    /// Nacks and rejects running beside the connection.
    settling: Vec<JoinHandle<()>>,
    /// Publishes being finished in order by the channel's publisher task.
    publisher: Option<tokio::sync::mpsc::Sender<(Pending, Outcome)>>,
}

impl Channel {
    pub(super) fn new(id: u16) -> Channel {
        Channel {
            id,
            closing: false,
            publishing: None,
            confirms: None,
            shared: Arc::default(),
            consumers: HashMap::new(),
            last_queue: None,
            reply_queue: None,
            publisher: None,
            settling: Vec::new(),
            closed: Arc::default(),
            acks: Arc::default(),
        }
    }

    pub(super) fn abandon_publish(&mut self) {
        self.publishing = None;
    }

    pub(super) fn awaiting_content(&self) -> bool {
        self.publishing.is_some()
    }

    /// The content header of the message being published.
    pub(super) fn content_header(&mut self, h: AMQPContentHeader) -> Result<(), AmqpError> {
        let Some(p) = self.publishing.as_mut().filter(|p| p.header.is_none()) else {
            if self.closing {
                return Ok(());
            }
            return Err(AmqpError::new(UNEXPECTED_FRAME, "a content header without a basic.publish before it"));
        };
        if h.body_size > limits::MAX_MESSAGE_BYTES as u64 {
            self.publishing = None;
            return Err(AmqpError::new(
                PRECONDITION_FAILED,
                format!("message size {} is larger than the maximum of {}", h.body_size, limits::MAX_MESSAGE_BYTES),
            ));
        }
        p.body.reserve(h.body_size as usize);
        p.header = Some((h.body_size, h.properties));
        Ok(())
    }

    /// A body frame of the message being published.
    pub(super) fn content_body(&mut self, body: Vec<u8>) -> Result<(), AmqpError> {
        let Some(p) = self.publishing.as_mut() else {
            if self.closing {
                return Ok(());
            }
            return Err(AmqpError::new(UNEXPECTED_FRAME, "a body frame without a basic.publish before it"));
        };
        let Some((size, _)) = &p.header else {
            return Err(AmqpError::new(UNEXPECTED_FRAME, "a body frame before the content header"));
        };
        if (p.body.len() + body.len()) as u64 > *size {
            return Err(AmqpError::new(FRAME_ERROR, format!("the body exceeds the {size} bytes its header announced")));
        }
        p.body.extend_from_slice(&body);
        Ok(())
    }

    /// The message being published, once its content is whole.
    pub(super) fn take_complete(&mut self) -> Option<Complete> {
        let p = self.publishing.as_ref()?;
        let (size, _) = p.header.as_ref()?;
        if p.body.len() as u64 != *size {
            return None;
        }
        let p = self.publishing.take().expect("checked");
        let (_, properties) = p.header.expect("checked");
        Some(Complete {
            exchange: p.exchange,
            routing_key: p.routing_key,
            mandatory: p.mandatory,
            properties,
            body: p.body,
        })
    }

    /// Run one method.
    pub(super) async fn method(&mut self, conn: &mut Conn, m: AMQPClass) -> Handled {
        let blame = |e: AmqpError| e.on(&m);
        let settles = matches!(
            &m,
            AMQPClass::Basic(
                basic::AMQPMethod::Ack(_)
                    | basic::AMQPMethod::Nack(_)
                    | basic::AMQPMethod::Reject(_)
                    | basic::AMQPMethod::Publish(_)
            )
        );
        if !settles {
            // A channel's methods take effect in order: a get after a reject sees the
            // rejected message where the reject put it. (An ack hides nothing a later
            // method could see, so acks are not waited for.)
            for s in self.settling.drain(..) {
                let _ = s.await;
            }
        }
        let r = match &m {
            AMQPClass::Basic(b) => self.basic(conn, b.clone()).await,
            AMQPClass::Exchange(x) => self.exchange(conn, x.clone()).await,
            AMQPClass::Queue(q) => self.queue(conn, q.clone()).await,
            AMQPClass::Confirm(confirm::AMQPMethod::Select(s)) => {
                self.confirms.get_or_insert(0);
                if !s.nowait {
                    let ok = AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {}));
                    conn.out.method(self.id, ok).await;
                }
                Ok(())
            }
            AMQPClass::Tx(_) => Err(AmqpError::new(
                NOT_IMPLEMENTED,
                "transactions (tx.*) are not supported: use publisher confirms (confirm.select)",
            )
            .into()),
            AMQPClass::Channel(amq_protocol::protocol::channel::AMQPMethod::Flow(f)) => {
                self.shared.paused.store(!f.active, std::sync::atomic::Ordering::Release);
                self.shared.credit.notify_waiters();
                let ok = amq_protocol::protocol::channel::FlowOk { active: f.active };
                let ok = AMQPClass::Channel(amq_protocol::protocol::channel::AMQPMethod::FlowOk(ok));
                conn.out.method(self.id, ok).await;
                Ok(())
            }
            AMQPClass::Access(_) => {
                let ok =
                    amq_protocol::protocol::access::AMQPMethod::RequestOk(amq_protocol::protocol::access::RequestOk {});
                conn.out.method(self.id, AMQPClass::Access(ok)).await;
                Ok(())
            }
            _ => Err(AmqpError::new(COMMAND_INVALID, "this method is not one a client sends").into()),
        };
        r.map_err(|f| match f {
            Failure::Channel(e) => Failure::Channel(blame(e)),
            Failure::Connection(e) => Failure::Connection(blame(e)),
        })
    }

    async fn exchange(&mut self, conn: &mut Conn, m: exchange::AMQPMethod) -> Handled {
        let ch = self.id;
        match m {
            exchange::AMQPMethod::Declare(d) => {
                let name = d.exchange.to_string();
                let kind = match d.kind.as_str() {
                    "direct" => ExchangeType::Direct,
                    "topic" => ExchangeType::Topic,
                    "fanout" => ExchangeType::Fanout,
                    "headers" => ExchangeType::Headers,
                    other => {
                        return Err(Failure::Connection(AmqpError::new(
                            COMMAND_INVALID,
                            format!("invalid exchange type '{other}': direct, topic, fanout and headers are supported"),
                        )));
                    }
                };
                if name.is_empty() {
                    return Err(AmqpError::new(ACCESS_REFUSED, "the default exchange cannot be declared").into());
                }
                let existing = find_exchange(conn, &name).await?;
                match existing {
                    Some(kind_now) if kind_now != kind => {
                        return Err(AmqpError::new(
                            PRECONDITION_FAILED,
                            format!(
                                "inequivalent arg 'type' for exchange '{name}': received '{}' but current is '{}'",
                                d.kind,
                                type_name(kind_now)
                            ),
                        )
                        .into());
                    }
                    Some(_) => {}
                    None if d.passive => {
                        return Err(AmqpError::new(NOT_FOUND, format!("no exchange '{name}' in vhost '/'")).into());
                    }
                    None => {
                        let alternate = d.arguments.inner().get(&short("alternate-exchange")).map(props::value_text);
                        let create = ExchangeCommand::Create { name: name.clone(), kind, alternate };
                        match conn.execute(Command::Exchange(create)).await {
                            Ok(_) => {}
                            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                            Err(e) => return Err(AmqpError::broker(&e).into()),
                        }
                    }
                }
                if !d.nowait {
                    conn.out
                        .method(ch, AMQPClass::Exchange(exchange::AMQPMethod::DeclareOk(exchange::DeclareOk {})))
                        .await;
                }
                Ok(())
            }
            exchange::AMQPMethod::Delete(d) => {
                let delete = ExchangeCommand::Delete { name: d.exchange.to_string() };
                match conn.execute(Command::Exchange(delete)).await {
                    Ok(_) => {}
                    // Deleting what is not there is fine, as in RabbitMQ.
                    Err(e) if e.kind() == ErrorKind::UnknownExchange => {}
                    Err(e) => return Err(AmqpError::broker(&e).into()),
                }
                if !d.nowait {
                    conn.out
                        .method(ch, AMQPClass::Exchange(exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {})))
                        .await;
                }
                Ok(())
            }
            _ => {
                Err(AmqpError::new(NOT_IMPLEMENTED, "exchange-to-exchange bindings are not supported: bind queues")
                    .into())
            }
        }
    }

    async fn queue(&mut self, conn: &mut Conn, m: queue::AMQPMethod) -> Handled {
        let ch = self.id;
        match m {
            queue::AMQPMethod::Declare(d) => {
                let mut name = d.queue.to_string();
                let info = if d.passive {
                    describe(conn, &self.queue_name(&name)?).await?
                } else {
                    let config = props::queue_config(&d.arguments).map_err(|e| AmqpError::new(e.0, e.1))?;
                    if name.is_empty() {
                        name = generated("amq.gen-");
                    }
                    let create = QueueCommand::Create { name: name.clone(), config };
                    match conn.execute(Command::Queue(create)).await {
                        Ok(_) => {
                            if d.exclusive || d.auto_delete {
                                conn.owned_queues.push(name.clone());
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(AmqpError::broker(&e).into()),
                    }
                    describe(conn, &name).await?
                };
                self.last_queue = Some(info.name.clone());
                if !d.nowait {
                    let ok = queue::DeclareOk {
                        queue: short(&info.name),
                        message_count: u32::try_from(info.ready).unwrap_or(u32::MAX),
                        consumer_count: 0,
                    };
                    conn.out.method(ch, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok))).await;
                }
                Ok(())
            }
            queue::AMQPMethod::Bind(b) => {
                let q = self.queue_name(b.queue.as_str())?;
                if b.exchange.as_str().is_empty() {
                    return Err(
                        AmqpError::new(ACCESS_REFUSED, "operation not permitted on the default exchange").into()
                    );
                }
                let (matches, match_any) = props::header_matches(&b.arguments);
                let binding = Binding {
                    destination: Destination::Queue(q),
                    key: Some(b.routing_key.to_string()),
                    matches,
                    match_any,
                };
                let bind = ExchangeCommand::Bind { exchange: b.exchange.to_string(), binding };
                conn.execute(Command::Exchange(bind)).await.map_err(|e| AmqpError::broker(&e))?;
                if !b.nowait {
                    conn.out.method(ch, AMQPClass::Queue(queue::AMQPMethod::BindOk(queue::BindOk {}))).await;
                }
                Ok(())
            }
            queue::AMQPMethod::Unbind(u) => {
                let q = self.queue_name(u.queue.as_str())?;
                let unbind = ExchangeCommand::Unbind {
                    exchange: u.exchange.to_string(),
                    destination: Destination::Queue(q),
                    key: Some(u.routing_key.to_string()),
                };
                conn.execute(Command::Exchange(unbind)).await.map_err(|e| AmqpError::broker(&e))?;
                conn.out.method(ch, AMQPClass::Queue(queue::AMQPMethod::UnbindOk(queue::UnbindOk {}))).await;
                Ok(())
            }
            queue::AMQPMethod::Purge(p) => {
                let name = self.queue_name(p.queue.as_str())?;
                let count = describe(conn, &name).await?.ready;
                conn.execute(Command::Queue(QueueCommand::Purge { name })).await.map_err(|e| AmqpError::broker(&e))?;
                if !p.nowait {
                    let ok = queue::PurgeOk { message_count: u32::try_from(count).unwrap_or(u32::MAX) };
                    conn.out.method(ch, AMQPClass::Queue(queue::AMQPMethod::PurgeOk(ok))).await;
                }
                Ok(())
            }
            queue::AMQPMethod::Delete(d) => {
                let name = self.queue_name(d.queue.as_str())?;
                let count = match conn.execute(Command::Queue(QueueCommand::Describe { name: name.clone() })).await {
                    Ok(Reply::Queue(info)) => info.ready,
                    _ => 0,
                };
                match conn.execute(Command::Queue(QueueCommand::Delete { name })).await {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::UnknownQueue => {}
                    Err(e) => return Err(AmqpError::broker(&e).into()),
                }
                if !d.nowait {
                    let ok = queue::DeleteOk { message_count: u32::try_from(count).unwrap_or(u32::MAX) };
                    conn.out.method(ch, AMQPClass::Queue(queue::AMQPMethod::DeleteOk(ok))).await;
                }
                Ok(())
            }
            _ => Err(AmqpError::new(COMMAND_INVALID, "this queue method is not one a client sends").into()),
        }
    }

    /// A method's queue name, or the channel's last declared queue for an empty one.
    fn queue_name(&self, name: &str) -> Result<String, AmqpError> {
        if !name.is_empty() {
            return Ok(name.to_string());
        }
        self.last_queue.clone().ok_or_else(|| AmqpError::new(NOT_FOUND, "no previously declared queue on this channel"))
    }

    async fn basic(&mut self, conn: &mut Conn, m: basic::AMQPMethod) -> Handled {
        let ch = self.id;
        match m {
            basic::AMQPMethod::Publish(p) => {
                if p.immediate {
                    return Err(Failure::Connection(AmqpError::new(NOT_IMPLEMENTED, "immediate=true")));
                }
                self.publishing = Some(Publishing {
                    exchange: p.exchange.to_string(),
                    routing_key: p.routing_key.to_string(),
                    mandatory: p.mandatory,
                    header: None,
                    body: Vec::new(),
                });
                Ok(())
            }
            basic::AMQPMethod::Qos(q) => {
                {
                    let mut d = self.shared.deliveries.lock().expect("deliveries");
                    (d.prefetch, d.global) = (q.prefetch_count, q.global);
                }
                self.shared.credit.notify_waiters();
                conn.out.method(ch, AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {}))).await;
                Ok(())
            }
            basic::AMQPMethod::Consume(c) => self.consume(conn, c).await,
            basic::AMQPMethod::Cancel(c) => {
                if let Some(consumer) = self.consumers.remove(c.consumer_tag.as_str()) {
                    let _ = consumer.stop.send(true);
                }
                if !c.nowait {
                    let ok = basic::CancelOk { consumer_tag: c.consumer_tag };
                    conn.out.method(ch, AMQPClass::Basic(basic::AMQPMethod::CancelOk(ok))).await;
                }
                Ok(())
            }
            basic::AMQPMethod::Get(g) => self.get(conn, &g.queue.to_string(), g.no_ack).await,
            basic::AMQPMethod::Ack(a) => {
                let tags = self.settle(a.delivery_tag, a.multiple)?;
                self.spawn_settle(conn, tags, None);
                Ok(())
            }
            basic::AMQPMethod::Nack(n) => {
                let tags = self.settle(n.delivery_tag, n.multiple)?;
                self.spawn_settle(conn, tags, Some(nack(n.requeue)));
                Ok(())
            }
            basic::AMQPMethod::Reject(r) => {
                let tags = self.settle(r.delivery_tag, false)?;
                self.spawn_settle(conn, tags, Some(nack(r.requeue)));
                Ok(())
            }
            basic::AMQPMethod::Recover(r) => {
                self.recover(conn, r.requeue).await;
                conn.out.method(ch, AMQPClass::Basic(basic::AMQPMethod::RecoverOk(basic::RecoverOk {}))).await;
                Ok(())
            }
            basic::AMQPMethod::RecoverAsync(r) => {
                self.recover(conn, r.requeue).await;
                Ok(())
            }
            _ => Err(AmqpError::new(COMMAND_INVALID, "this basic method is not one a client sends").into()),
        }
    }

    /// Take acknowledged tags out of the unacked set: one, or with `multiple` every tag up
    /// to it (0: all). An unknown tag is a channel error, as in RabbitMQ.
    fn settle(&mut self, tag: u64, multiple: bool) -> Result<Vec<Unacked>, AmqpError> {
        let mut d = self.shared.deliveries.lock().expect("deliveries");
        let taken = if multiple {
            let upto = if tag == 0 { u64::MAX } else { tag };
            let keep = d.unacked.split_off(&upto.saturating_add(1));
            std::mem::replace(&mut d.unacked, keep).into_values().collect()
        } else {
            match d.unacked.remove(&tag) {
                Some(u) => vec![u],
                None => return Err(AmqpError::new(PRECONDITION_FAILED, format!("unknown delivery tag {tag}"))),
            }
        };
        drop(d);
        self.shared.credit.notify_waiters();
        Ok(taken)
    }

    /// Ack (`how` none) or nack settled deliveries beside the connection; the channel's
    /// next method other than these waits for its nacks.
    fn spawn_settle(&mut self, conn: &Conn, tags: Vec<Unacked>, how: Option<Nack>) {
        let handle = conn.handle();
        if how.is_none() {
            // Acks gather while the channel's last ones are being written, and go as one
            // command per queue: a consumer acking each message costs a write per batch, not
            // per message.
            let mut acks = self.acks.lock().expect("acks");
            acks.waiting.extend(tags);
            if !acks.running {
                acks.running = true;
                tokio::spawn(flush_acks(handle, self.acks.clone()));
            }
            return;
        }
        let task = tokio::spawn(async move { settle(&handle, tags, how).await });
        self.settling.retain(|s| !s.is_finished());
        self.settling.push(task);
    }

    /// basic.recover: every unacked delivery goes back (weir always requeues).
    async fn recover(&mut self, conn: &Conn, _requeue: bool) {
        let all = std::mem::take(&mut self.shared.deliveries.lock().expect("deliveries").unacked);
        settle(conn, all.into_values().collect(), Some(nack(true))).await;
        self.shared.credit.notify_waiters();
    }

    async fn get(&mut self, conn: &mut Conn, queue: &str, no_ack: bool) -> Handled {
        let name = self.queue_name(queue)?;
        let receive = QueueCommand::Receive {
            queue: name.clone(),
            max: 1,
            wait: Duration::ZERO,
            visibility_ms: Some(limits::AMQP_DELIVERY_LEASE_MS),
        };
        let got = match conn.execute(Command::Queue(receive)).await.map_err(|e| AmqpError::broker(&e))? {
            Reply::Deliveries(d) => d,
            _ => Vec::new(),
        };
        let Some(d) = got.into_iter().next() else {
            let empty = basic::AMQPMethod::GetEmpty(basic::GetEmpty {});
            conn.out.method(self.id, AMQPClass::Basic(empty)).await;
            return Ok(());
        };
        let tag = self.shared.tag(&name, &d.receipt, !no_ack, None);
        let (exchange, routing_key) = route_of(&d, &name);
        // The messages left behind this one, as RabbitMQ counts them (ready ones).
        let left = describe(conn, &name).await.map_or(0, |q| u32::try_from(q.ready).unwrap_or(u32::MAX));
        let ok = basic::GetOk {
            delivery_tag: tag,
            redelivered: d.deliveries > 1,
            exchange: short(&exchange),
            routing_key: short(&routing_key),
            message_count: left,
        };
        let frames = conn.out.content(
            self.id,
            AMQPClass::Basic(basic::AMQPMethod::GetOk(ok)),
            props::from_headers(&d.headers, d.deliveries),
            &d.body,
        );
        conn.out.send(&frames).await;
        if no_ack {
            let ack = QueueCommand::Ack { queue: name, receipts: vec![d.receipt] };
            conn.execute(Command::Queue(ack)).await.map_err(|e| AmqpError::broker(&e))?;
        }
        Ok(())
    }

    async fn consume(&mut self, conn: &mut Conn, c: basic::Consume) -> Handled {
        let mut queue = self.queue_name(c.queue.as_str())?;
        if queue == DIRECT_REPLY_TO {
            if !c.no_ack {
                return Err(AmqpError::new(PRECONDITION_FAILED, "reply consumer cannot acknowledge").into());
            }
            queue = self.reply_queue(conn).await?;
        } else {
            describe(conn, &queue).await?;
        }
        let tag = match c.consumer_tag.as_str() {
            "" => generated("amq.ctag-"),
            t => t.to_string(),
        };
        if self.consumers.contains_key(&tag) {
            return Err(Failure::Connection(AmqpError::new(
                NOT_ALLOWED,
                format!("attempt to reuse consumer tag '{tag}'"),
            )));
        }
        if !c.nowait {
            let ok = basic::ConsumeOk { consumer_tag: short(&tag) };
            conn.out.method(self.id, AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(ok))).await;
        }
        let (stop, stopped) = watch::channel(false);
        let consumer = Consuming {
            conn: conn.handle(),
            channel: self.id,
            tag: Arc::from(tag.as_str()),
            queue,
            ack: !c.no_ack,
            shared: self.shared.clone(),
        };
        let task = tokio::spawn(consumer.run(stopped));
        self.consumers.insert(tag, Consumer { stop, task });
        Ok(())
    }

    /// The queue standing in for direct reply-to on this channel: made at the first
    /// consume, deleted with the connection.
    async fn reply_queue(&mut self, conn: &mut Conn) -> Result<String, AmqpError> {
        if let Some(q) = &self.reply_queue {
            return Ok(q.clone());
        }
        let name = generated(&format!("{DIRECT_REPLY_TO}."));
        let create = QueueCommand::Create {
            name: name.clone(),
            config: crate::queue::QueueConfig {
                visibility_timeout_ms: limits::AMQP_DELIVERY_LEASE_MS,
                ..Default::default()
            },
        };
        conn.execute(Command::Queue(create)).await.map_err(|e| AmqpError::broker(&e))?;
        conn.owned_queues.push(name.clone());
        self.reply_queue = Some(name.clone());
        Ok(name)
    }

    /// Publish a whole message: routed by the broker in one durable commit, confirmed after
    /// it, returned when mandatory and unroutable.
    pub(super) async fn publish(&mut self, conn: &mut Conn, m: Complete) -> Result<(), AmqpError> {
        let mut headers = props::to_headers(&m.properties);
        if let Some((_, to)) = headers.iter_mut().find(|(k, _)| k == weir_sdk::headers::REPLY_TO)
            && to == DIRECT_REPLY_TO
        {
            *to = self.reply_queue.clone().ok_or_else(|| {
                AmqpError::new(
                    PRECONDITION_FAILED,
                    "fast reply consumer does not exist: consume amq.rabbitmq.reply-to first",
                )
            })?;
        }
        let seq = self.confirms.as_mut().map(|n| {
            *n += 1;
            *n
        });
        let record = NewRecord { key: None, value: m.body.clone().into(), headers };
        let command =
            ExchangeCommand::Publish { exchange: m.exchange.clone(), routing_key: m.routing_key.clone(), record };
        let execution = conn.broker.execute(conn.identity().as_ref(), Command::Exchange(command));
        let outcome = Outcome {
            out: conn.out.clone(),
            events: conn.events.clone(),
            channel: self.id,
            closed: self.closed.clone(),
            seq,
            message: m,
        };
        if execution.in_order {
            outcome.report(execution.future.await).await;
            return Ok(());
        }
        // Polled once here, in arrival order (the write is submitted); the channel's
        // publisher task finishes them in that order too, so a queue takes a channel's
        // messages in the order they were published, as AMQP promises.
        let mut future = execution.future;
        let pending = match futures_util::FutureExt::now_or_never(&mut future) {
            Some(result) => Pending::Done(Box::new(result)),
            None => Pending::Running(future),
        };
        let publisher = self.publisher.get_or_insert_with(|| {
            let (tx, rx) = tokio::sync::mpsc::channel(limits::AMQP_PUBLISHES_IN_FLIGHT);
            tokio::spawn(finish_in_order(rx));
            tx
        });
        let _ = publisher.send((pending, outcome)).await;
        Ok(())
    }

    /// Deliveries held for this lease period and beyond are renewed: an AMQP delivery is
    /// held while its channel is open.
    pub(super) async fn renew(&self, conn: &Conn) {
        let old = tokio::time::Instant::now() - Duration::from_millis(limits::AMQP_DELIVERY_LEASE_MS / 3);
        let mut by_queue: HashMap<String, Vec<String>> = HashMap::new();
        {
            let mut d = self.shared.deliveries.lock().expect("deliveries");
            for u in d.unacked.values_mut().filter(|u| u.since <= old) {
                u.since = tokio::time::Instant::now();
                by_queue.entry(u.queue.clone()).or_default().push(u.receipt.clone());
            }
        }
        for (queue, receipts) in by_queue {
            let extend = |receipts| QueueCommand::Extend {
                queue: queue.clone(),
                receipts,
                timeout_ms: limits::AMQP_DELIVERY_LEASE_MS,
            };
            each_receipt(conn, receipts, extend, "renew").await;
        }
    }

    /// The channel ends: its consumers stop, and every delivery not acked goes back.
    pub(super) async fn release(&mut self, conn: &Conn) {
        self.closed.store(true, std::sync::atomic::Ordering::Release);
        for (_, c) in self.consumers.drain() {
            let _ = c.stop.send(true);
            let _ = c.task.await;
        }
        let all = std::mem::take(&mut self.shared.deliveries.lock().expect("deliveries").unacked);
        settle(conn, all.into_values().collect(), Some(nack(true))).await;
    }
}

/// Acks waiting for the channel's ack writer, and whether it runs.
#[derive(Default)]
struct AckBatch {
    waiting: Vec<Unacked>,
    running: bool,
}

/// Write a channel's acks, all that gathered meanwhile at each turn, until none wait.
async fn flush_acks(conn: Handle, acks: Arc<Mutex<AckBatch>>) {
    loop {
        let batch = {
            let mut a = acks.lock().expect("acks");
            if a.waiting.is_empty() {
                a.running = false;
                return;
            }
            std::mem::take(&mut a.waiting)
        };
        settle(&conn, batch, None).await;
    }
}

/// A publish started on the connection: done already, or still running.
enum Pending {
    Done(Box<Result<Reply, BrokerError>>),
    Running(std::pin::Pin<Box<dyn Future<Output = Result<Reply, BrokerError>> + Send>>),
}

/// Finish a channel's publishes in the order they were started, and report each.
async fn finish_in_order(mut rx: tokio::sync::mpsc::Receiver<(Pending, Outcome)>) {
    while let Some((pending, outcome)) = rx.recv().await {
        let result = match pending {
            Pending::Done(r) => *r,
            Pending::Running(f) => f.await,
        };
        outcome.report(result).await;
    }
}

fn nack(requeue: bool) -> Nack {
    if requeue { Nack::Requeue { delay_ms: 0 } } else { Nack::DeadLetter }
}

/// Ack or nack deliveries, one command per queue. A receipt that went stale (weir was
/// restarted and the lease ran out) is logged: the message is delivered again.
async fn settle(conn: &impl Executes, tags: Vec<Unacked>, how: Option<Nack>) {
    let mut by_queue: HashMap<String, Vec<String>> = HashMap::new();
    for u in tags {
        by_queue.entry(u.queue).or_default().push(u.receipt);
    }
    for (queue, receipts) in by_queue {
        let command = |receipts| match how {
            None => QueueCommand::Ack { queue: queue.clone(), receipts },
            Some(how) => QueueCommand::Nack { queue: queue.clone(), receipts, how },
        };
        each_receipt(conn, receipts, command, "settle").await;
    }
}

/// Run a command over receipts at once; if one receipt went stale (its lease ran out while
/// weir was down, or the queue was purged), the others are settled one by one, so one stale
/// receipt does not take its neighbours' acks with it.
async fn each_receipt(
    conn: &impl Executes,
    receipts: Vec<String>,
    command: impl Fn(Vec<String>) -> QueueCommand,
    what: &str,
) {
    match conn.run(Command::Queue(command(receipts.clone()))).await {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::StaleReceipt && receipts.len() > 1 => {
            for r in receipts {
                if let Err(e) = conn.run(Command::Queue(command(vec![r]))).await {
                    tracing::info!(error = %e, "cannot {what} an AMQP delivery");
                }
            }
        }
        Err(e) if e.kind() == ErrorKind::UnknownQueue => {}
        Err(e) => tracing::warn!(error = %e, "cannot {what} AMQP deliveries"),
    }
}

/// Whoever can run a command as the connection's caller.
pub(super) trait Executes {
    fn run(&self, command: Command) -> impl Future<Output = Result<Reply, BrokerError>> + Send;
}

impl Executes for Conn {
    fn run(&self, command: Command) -> impl Future<Output = Result<Reply, BrokerError>> + Send {
        self.broker.execute(self.identity().as_ref(), command).future
    }
}

/// What a task beside the connection needs of it.
#[derive(Clone)]
pub(super) struct Handle {
    pub broker: Arc<crate::broker::Broker>,
    pub caller: Arc<std::sync::Mutex<super::Caller>>,
    pub out: Out,
}

impl Executes for Handle {
    /// As the connection's caller now: a token reload reaches running consumers too.
    fn run(&self, command: Command) -> impl Future<Output = Result<Reply, BrokerError>> + Send {
        let who = self.caller.lock().expect("caller").current(&self.broker.authority);
        let broker = self.broker.clone();
        async move { broker.execute(who?.as_ref(), command).future.await }
    }
}

/// A publish's result, reported to the client.
struct Outcome {
    out: Out,
    events: tokio::sync::mpsc::Sender<Event>,
    closed: Arc<std::sync::atomic::AtomicBool>,
    channel: u16,
    seq: Option<u64>,
    message: Complete,
}

impl Outcome {
    async fn report(self, result: Result<Reply, BrokerError>) {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            // The channel is gone (its id may be another channel's now): nothing to say.
            return;
        }
        let confirm = |ok: bool| {
            self.seq.map(|tag| {
                let m = if ok {
                    basic::AMQPMethod::Ack(basic::Ack { delivery_tag: tag, multiple: false })
                } else {
                    basic::AMQPMethod::Nack(basic::Nack { delivery_tag: tag, multiple: false, requeue: false })
                };
                AMQPFrame::Method(self.channel, AMQPClass::Basic(m))
            })
        };
        let frames: Vec<AMQPFrame> = match result {
            Ok(_) => confirm(true).into_iter().collect(),
            Err(e) if e.kind() == ErrorKind::Unroutable => {
                let mut frames = Vec::new();
                if self.message.mandatory {
                    let ret = basic::Return {
                        reply_code: NO_ROUTE,
                        reply_text: short("NO_ROUTE"),
                        exchange: short(&self.message.exchange),
                        routing_key: short(&self.message.routing_key),
                    };
                    frames = self.out.content(
                        self.channel,
                        AMQPClass::Basic(basic::AMQPMethod::Return(ret)),
                        self.message.properties.clone(),
                        &self.message.body,
                    );
                }
                frames.extend(confirm(true));
                frames
            }
            // A full queue or disk refuses the message: nacked, as RabbitMQ's reject-publish.
            Err(e)
                if matches!(e.kind(), ErrorKind::QueueFull | ErrorKind::DiskFull | ErrorKind::Storage)
                    && self.seq.is_some() =>
            {
                tracing::info!(error = %e, "an AMQP publish was refused (nacked)");
                confirm(false).into_iter().collect()
            }
            Err(e) => {
                let e = AmqpError::broker(&e).with_cause(60, 40);
                let _ = self.events.send(Event::CloseChannel(self.channel, e, self.closed.clone())).await;
                return;
            }
        };
        if !frames.is_empty() {
            self.out.send(&frames).await;
        }
    }
}

/// A consumer: receives from its queue while the channel has credit, and delivers.
struct Consuming {
    conn: Handle,
    channel: u16,
    tag: Arc<str>,
    queue: String,
    ack: bool,
    shared: Arc<Shared>,
}

impl Consuming {
    async fn run(self, mut stopped: watch::Receiver<bool>) {
        loop {
            let credit = loop {
                if *stopped.borrow() {
                    return;
                }
                let credit_changed = self.shared.credit.notified();
                let n = self.shared.batch_credit(&self.tag);
                if n > 0 {
                    break n;
                }
                tokio::select! {
                    _ = credit_changed => {}
                    _ = stopped.changed() => {}
                }
            };
            let receive = QueueCommand::Receive {
                queue: self.queue.clone(),
                max: credit.min(limits::AMQP_RECEIVE_BATCH),
                wait: Duration::from_millis(limits::AMQP_CONSUMER_POLL_MS),
                visibility_ms: Some(limits::AMQP_DELIVERY_LEASE_MS),
            };
            let got = match self.conn.run(Command::Queue(receive)).await {
                Ok(Reply::Deliveries(d)) => d,
                Ok(_) => Vec::new(),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::UnknownQueue | ErrorKind::Forbidden | ErrorKind::Unauthenticated
                    ) =>
                {
                    // The queue went away (or the grant did): the client is told, as RabbitMQ
                    // tells consumers of a deleted queue.
                    let cancel = basic::Cancel { consumer_tag: short(&self.tag), nowait: true };
                    self.conn.out.method(self.channel, AMQPClass::Basic(basic::AMQPMethod::Cancel(cancel))).await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(queue = %self.queue, error = %e, "an AMQP consumer cannot receive; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(limits::AMQP_CONSUMER_POLL_MS)) => {}
                        _ = stopped.changed() => {}
                    }
                    continue;
                }
            };
            if *stopped.borrow() {
                // Cancelled while receiving: what came is handed straight back.
                let back = got.into_iter().map(|d| Unacked {
                    queue: self.queue.clone(),
                    receipt: d.receipt,
                    since: tokio::time::Instant::now(),
                    consumer: None,
                });
                settle(&self.conn, back.collect(), Some(nack(true))).await;
                return;
            }
            if !self.deliver(got).await {
                return;
            }
        }
    }

    /// Send deliveries to the client; false once the connection is gone.
    async fn deliver(&self, got: Vec<Delivery>) -> bool {
        let mut receipts = Vec::new();
        for d in got {
            let tag = self.shared.tag(&self.queue, &d.receipt, self.ack, Some(&self.tag));
            let (exchange, routing_key) = route_of(&d, &self.queue);
            let m = basic::Deliver {
                consumer_tag: short(&self.tag),
                delivery_tag: tag,
                redelivered: d.deliveries > 1,
                exchange: short(&exchange),
                routing_key: short(&routing_key),
            };
            let properties = props::from_headers(&d.headers, d.deliveries);
            let frames = self.conn.out.content(
                self.channel,
                AMQPClass::Basic(basic::AMQPMethod::Deliver(m)),
                properties,
                &d.body,
            );
            if !self.conn.out.send(&frames).await {
                return false;
            }
            if !self.ack {
                receipts.push(d.receipt);
            }
        }
        if !receipts.is_empty() {
            let ack = QueueCommand::Ack { queue: self.queue.clone(), receipts };
            if let Err(e) = self.conn.run(Command::Queue(ack)).await {
                tracing::warn!(queue = %self.queue, error = %e, "cannot settle no-ack deliveries");
            }
        }
        true
    }
}

/// The exchange and routing key a delivery was published with (the default exchange and
/// the queue's name for a message sent straight to the queue).
fn route_of(d: &Delivery, queue: &str) -> (String, String) {
    let find = |name: &str| d.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    match find(weir_sdk::headers::EXCHANGE) {
        Some(x) => (x, find(weir_sdk::headers::ROUTING_KEY).unwrap_or_default()),
        None => (String::new(), queue.to_string()),
    }
}

async fn describe(conn: &Conn, name: &str) -> Result<crate::queue::QueueInfo, AmqpError> {
    match conn.execute(Command::Queue(QueueCommand::Describe { name: name.to_string() })).await {
        Ok(Reply::Queue(info)) => Ok(info),
        Ok(_) => Err(AmqpError::new(super::INTERNAL_ERROR, "queue.describe answered something else")),
        Err(e) if e.kind() == ErrorKind::UnknownQueue => {
            Err(AmqpError::new(NOT_FOUND, format!("no queue '{name}' in vhost '/'")))
        }
        Err(e) => Err(AmqpError::broker(&e)),
    }
}

async fn find_exchange(conn: &Conn, name: &str) -> Result<Option<ExchangeType>, AmqpError> {
    match conn.execute(Command::Exchange(ExchangeCommand::List)).await.map_err(|e| AmqpError::broker(&e))? {
        Reply::Exchanges(all) => Ok(all.into_iter().find(|x| x.name == name).map(|x| x.kind)),
        _ => Ok(None),
    }
}

fn type_name(kind: ExchangeType) -> &'static str {
    match kind {
        ExchangeType::Direct => "direct",
        ExchangeType::Topic => "topic",
        ExchangeType::Fanout => "fanout",
        ExchangeType::Headers => "headers",
    }
}

/// A server-chosen name: `prefix` and 22 random characters, as RabbitMQ's.
fn generated(prefix: &str) -> String {
    format!("{prefix}{}", nuid::next())
}
