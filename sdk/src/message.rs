//! Messages in, outputs out: the values a plugin reads and returns.

use std::cell::OnceCell;
use std::rc::Rc;

use serde::{Serialize, de::DeserializeOwned};

use crate::Error;
use crate::packed::{BatchView, Entry};

/// Well-known header names: one spelling for metadata every pattern shares.
pub mod headers {
    /// The event or message type, e.g. `OrderCreated`.
    pub const TYPE: &str = "weir-type";
    /// Queue priority, `0` (lowest) to `9`.
    pub const PRIORITY: &str = "weir-priority";
    /// A queue message's time to live, ms: not delivered within it, it is dead-lettered.
    pub const TTL_MS: &str = "weir-ttl-ms";
    /// Ties a reply to its request.
    pub const CORRELATION_ID: &str = "weir-correlation-id";
    /// Where a reply to this message should go (a topic name).
    pub const REPLY_TO: &str = "weir-reply-to";
    /// Identifies a logical operation so handlers can process it once.
    pub const IDEMPOTENCY_KEY: &str = "weir-idempotency-key";
    /// W3C trace context.
    pub const TRACEPARENT: &str = "traceparent";
    /// How many times a queue message has been delivered.
    pub const DELIVERY_COUNT: &str = "weir-delivery-count";
    /// The routing key a message was published with through an exchange.
    pub const ROUTING_KEY: &str = "weir-routing-key";
    /// The exchange a message was published through.
    pub const EXCHANGE: &str = "weir-exchange";

    // Dead letters, from pipelines and from queues alike: one vocabulary, `weir-dlq-*`.

    /// Why the message was dead-lettered (a plugin's failure, or a queue's delivery limit).
    pub const DLQ_ERROR: &str = "weir-dlq-error";
    /// The topic a pipeline read the message from (where `weir dlq replay` sends it back).
    pub const DLQ_TOPIC: &str = "weir-dlq-topic";
    /// Why a queue dead-lettered it, in RabbitMQ's words: `rejected`, `expired` or
    /// `delivery_limit`.
    pub const DLQ_REASON: &str = "weir-dlq-reason";
    /// Its deaths so far, most recent first: `reason queue count` per reason and queue,
    /// comma-separated (RabbitMQ's `x-death`).
    pub const DLQ_DEATHS: &str = "weir-dlq-deaths";
    /// Its first death: the reason and the queue, `rejected jobs`.
    pub const DLQ_FIRST: &str = "weir-dlq-first";
    /// The queue the message was dead-lettered from.
    pub const DLQ_QUEUE: &str = "weir-dlq-queue";
    /// The pipeline whose step failed on it.
    pub const DLQ_PIPELINE: &str = "weir-dlq-pipeline";
    /// The failing step, from 1.
    pub const DLQ_STEP: &str = "weir-dlq-step";
    /// The failing plugin version, `name@version`.
    pub const DLQ_PLUGIN: &str = "weir-dlq-plugin";
    /// Attempts made before it was dead-lettered.
    pub const DLQ_ATTEMPTS: &str = "weir-dlq-attempts";
    /// Its source partition.
    pub const DLQ_PARTITION: &str = "weir-dlq-partition";
    /// Its source offset.
    pub const DLQ_OFFSET: &str = "weir-dlq-offset";
    /// The prefix of every dead-letter header (replays strip them).
    pub const DLQ_PREFIX: &str = "weir-dlq-";
}

/// The packed batch a message came in, shared by its messages: a message reads its key,
/// value and headers in place, without a copy.
pub(crate) struct SharedBatch {
    buf: Vec<u8>,
    topic: (usize, usize),
}

impl SharedBatch {
    /// Share a packed batch the host sent (validated once, here).
    pub(crate) fn new(buf: Vec<u8>) -> Result<Rc<SharedBatch>, crate::packed::PackError> {
        let view = BatchView::parse(&buf)?;
        let topic = view.topic();
        let start = topic.as_ptr() as usize - buf.as_ptr() as usize;
        let topic = (start, start + topic.len());
        Ok(Rc::new(SharedBatch { buf, topic }))
    }

    /// The batch, already validated.
    pub(crate) fn view(&self) -> BatchView<'_> {
        BatchView::reopen(&self.buf)
    }

    fn topic(&self) -> &str {
        std::str::from_utf8(&self.buf[self.topic.0..self.topic.1]).expect("validated UTF-8")
    }

    /// Where `slice` (a part of this batch) is in it.
    fn range_of(&self, slice: &[u8]) -> (u32, u32) {
        let start = slice.as_ptr() as usize - self.buf.as_ptr() as usize;
        (start as u32, (start + slice.len()) as u32)
    }
}

impl std::fmt::Debug for SharedBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedBatch({} bytes)", self.buf.len())
    }
}

/// Bytes of a message: its own, or a range of the batch it came in (the message holds the
/// batch once, so reading a message in place costs one reference count, not one per field).
#[derive(Debug, Clone)]
enum Bytes {
    Owned(Vec<u8>),
    Shared(u32, u32),
}

impl Bytes {
    fn get<'a>(&'a self, batch: Option<&'a SharedBatch>) -> &'a [u8] {
        match (self, batch) {
            (Bytes::Owned(v), _) => v,
            (Bytes::Shared(start, end), Some(b)) => &b.buf[*start as usize..*end as usize],
            (Bytes::Shared(..), None) => unreachable!("shared bytes always come with their batch"),
        }
    }
}

/// A message's headers: its own, or a block of the batch decoded the first time they are
/// listed (searching one header decodes nothing).
#[derive(Debug, Clone)]
enum Headers {
    Owned(Vec<(String, String)>),
    Packed { block: (u32, u32), count: u32, decoded: OnceCell<Vec<(String, String)>> },
}

/// One input message, owned by the plugin while it decides what to do with it.
#[derive(Debug, Clone)]
pub struct Message {
    key: Option<Bytes>,
    value: Bytes,
    headers: Headers,
    timestamp_ms: u64,
    /// The batch it was read from (its topic, and the bytes of its shared parts).
    batch: Option<Rc<SharedBatch>>,
    partition: u32,
    offset: u64,
}

impl Message {
    /// Entry `e` of a shared packed batch, read in place.
    pub(crate) fn packed(batch: &Rc<SharedBatch>, e: &Entry<'_>) -> Self {
        let (block, count) = e.header_block();
        let (start, end) = batch.range_of(e.value);
        Message {
            key: e.key.map(|k| {
                let (start, end) = batch.range_of(k);
                Bytes::Shared(start, end)
            }),
            value: Bytes::Shared(start, end),
            headers: Headers::Packed { block: batch.range_of(block), count, decoded: OnceCell::new() },
            timestamp_ms: e.timestamp_ms,
            batch: Some(batch.clone()),
            partition: e.partition,
            offset: e.offset,
        }
    }

    /// The headers of a packed message, read in place.
    fn packed_headers(&self, block: (u32, u32), count: u32) -> crate::packed::Headers<'_> {
        let batch = self.batch.as_ref().expect("a packed message has its batch");
        crate::packed::Headers::validated(&batch.buf[block.0 as usize..block.1 as usize], count)
    }

    /// Give the message bytes of its own for everything it shares with its batch (before a
    /// builder changes one part of it).
    fn owned(self) -> Message {
        Message {
            key: self.key().map(|k| Bytes::Owned(k.to_vec())),
            value: Bytes::Owned(self.value().to_vec()),
            headers: Headers::Owned(self.headers_vec()),
            timestamp_ms: self.timestamp_ms,
            batch: self.batch.clone(),
            partition: self.partition,
            offset: self.offset,
        }
    }

    /// Build a message by hand, for unit tests of plugin logic.
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Message {
            key: None,
            value: Bytes::Owned(value.into()),
            headers: Headers::Owned(Vec::new()),
            timestamp_ms: 0,
            batch: None,
            partition: 0,
            offset: 0,
        }
    }

    /// Builder for tests: set the key.
    pub fn with_key(self, key: impl Into<Vec<u8>>) -> Self {
        let mut m = self.owned();
        m.key = Some(Bytes::Owned(key.into()));
        m
    }

    /// Builder for tests: add a header.
    pub fn with_header(self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let mut m = self.owned();
        if let Headers::Owned(h) = &mut m.headers {
            h.push((name.into(), value.into()));
        }
        m
    }

    /// Builder for tests: set the timestamp.
    pub fn with_timestamp_ms(mut self, ts: u64) -> Self {
        self.timestamp_ms = ts;
        self
    }

    /// The partitioning key, if any.
    pub fn key(&self) -> Option<&[u8]> {
        self.key.as_ref().map(|k| k.get(self.batch.as_deref()))
    }

    /// The key as UTF-8 text, if it is present and valid UTF-8.
    pub fn key_str(&self) -> Option<&str> {
        self.key().and_then(|k| std::str::from_utf8(k).ok())
    }

    /// The payload bytes.
    pub fn value(&self) -> &[u8] {
        self.value.get(self.batch.as_deref())
    }

    /// The payload as UTF-8 text, or a fatal error.
    pub fn text(&self) -> Result<&str, Error> {
        std::str::from_utf8(self.value()).map_err(|e| Error::fatal(format!("payload is not UTF-8: {e}")))
    }

    /// The payload decoded from JSON; a decode failure is fatal.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        Ok(serde_json::from_slice(self.value())?)
    }

    /// The payload decoded from MessagePack; a decode failure is fatal.
    pub fn msgpack<T: DeserializeOwned>(&self) -> Result<T, Error> {
        Ok(rmp_serde::from_slice(self.value())?)
    }

    /// The first header named `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        match &self.headers {
            Headers::Owned(h) => h.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()),
            // Searched in place: no header is decoded into a String to find one.
            Headers::Packed { block, count, .. } => {
                self.packed_headers(*block, *count).find(|(n, _)| *n == name).map(|(_, v)| v)
            }
        }
    }

    /// The `weir-type` header: the event or message type.
    pub fn message_type(&self) -> Option<&str> {
        self.header(headers::TYPE)
    }

    /// The `weir-correlation-id` header.
    pub fn correlation_id(&self) -> Option<&str> {
        self.header(headers::CORRELATION_ID)
    }

    /// The `weir-reply-to` header: where a reply should go.
    pub fn reply_to(&self) -> Option<&str> {
        self.header(headers::REPLY_TO)
    }

    /// The `weir-idempotency-key` header.
    pub fn idempotency_key(&self) -> Option<&str> {
        self.header(headers::IDEMPOTENCY_KEY)
    }

    /// All headers in order.
    pub fn headers(&self) -> &[(String, String)] {
        match &self.headers {
            Headers::Owned(h) => h,
            Headers::Packed { decoded, .. } => decoded.get_or_init(|| self.headers_vec()),
        }
    }

    /// The headers as owned pairs (decoded from the batch, not through the cache: for callers
    /// that keep them).
    pub(crate) fn headers_vec(&self) -> Vec<(String, String)> {
        match &self.headers {
            Headers::Owned(h) => h.clone(),
            Headers::Packed { block, count, decoded } => match decoded.get() {
                Some(h) => h.clone(),
                None => self.packed_headers(*block, *count).map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            },
        }
    }

    /// Append time in the source partition (ms since the Unix epoch).
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }

    /// The pipeline's source topic.
    pub fn topic(&self) -> &str {
        self.batch.as_ref().map_or("", |b| b.topic())
    }

    /// Source partition.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// Source offset.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Take the payload, leaving the message empty.
    pub fn into_value(self) -> Vec<u8> {
        match self.value {
            Bytes::Owned(v) => v,
            Bytes::Shared(..) => self.value().to_vec(),
        }
    }
}

/// A message a plugin emits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Partitioning key in the destination; `None` keeps the source partition's order.
    pub key: Option<Vec<u8>>,
    /// Payload.
    pub value: Vec<u8>,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// `None`: to the next step or the sink; `Some(topic)`: routed to that topic.
    pub topic: Option<String>,
}

impl Output {
    /// An output with this payload and nothing else.
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Output { key: None, value: value.into(), headers: Vec::new(), topic: None }
    }

    /// An output whose payload is `value` encoded as JSON.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, Error> {
        Ok(Output::new(serde_json::to_vec(value)?))
    }

    /// An output whose payload is `value` encoded as MessagePack (field names kept).
    pub fn msgpack<T: Serialize + ?Sized>(value: &T) -> Result<Self, Error> {
        Ok(Output::new(rmp_serde::to_vec_named(value)?))
    }

    /// An output with this payload and `input`'s key and headers (a map that rewrites the
    /// payload; nothing of the input's payload is copied).
    pub fn replacing(input: &Message, value: impl Into<Vec<u8>>) -> Self {
        Output { key: input.key().map(<[u8]>::to_vec), value: value.into(), headers: input.headers_vec(), topic: None }
    }

    /// Set the key.
    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Add a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The reply to `request`: routed to its `weir-reply-to` topic and carrying its
    /// correlation id, so the requester (`weir request`, `Client::request_reply`) receives it.
    /// A message that asked for no reply is an error (fatal: it will not change on retry).
    pub fn reply(request: &Message, value: impl Into<Vec<u8>>) -> Result<Self, Error> {
        let (Some(to), Some(id)) = (request.reply_to(), request.correlation_id()) else {
            return Err(Error::fatal(
                "the message carries no weir-reply-to and weir-correlation-id headers to reply to",
            ));
        };
        Ok(Output::new(value).header(headers::CORRELATION_ID, id).to(to))
    }

    /// Route to `topic` instead of the next step.
    pub fn to(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }
}

/// Passing a message on keeps its key, payload and headers. (Left unchanged, it crosses back
/// to the host as a code, not as bytes.)
impl From<Message> for Output {
    fn from(m: Message) -> Self {
        let headers = m.headers_vec();
        let key = m.key().map(<[u8]>::to_vec);
        Output { key, value: m.into_value(), headers, topic: None }
    }
}

/// What became of one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Zero or more outputs.
    Emit(Vec<Output>),
    /// The input, unchanged, passes on (the host reuses it: nothing is copied back).
    Keep,
    /// Filtered out on purpose.
    Drop,
    /// The input, unchanged, routed to this topic (crosses back as a code and a topic name;
    /// the ABI's and the host's "forward"). `Outcome::forward(msg)` is different: it keeps the
    /// input on its way to the next step.
    Forward(String),
}

impl Outcome {
    /// Exactly one output.
    pub fn one(output: Output) -> Self {
        Outcome::Emit(vec![output])
    }

    /// Pass the input on unchanged ([`Outcome::Keep`]).
    pub fn forward(_msg: Message) -> Self {
        Outcome::Keep
    }
}
