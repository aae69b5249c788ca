//! Messages in, outputs out: the values a plugin reads and returns.

use std::rc::Rc;

use serde::{Serialize, de::DeserializeOwned};

use crate::Error;
use crate::bindings::weir::plugin::types as wit;

/// Well-known header names: one spelling for metadata every pattern shares.
pub mod headers {
    /// The event or message type, e.g. `OrderCreated`.
    pub const TYPE: &str = "weir-type";
    /// Queue priority, `0` (lowest) to `9`.
    pub const PRIORITY: &str = "weir-priority";
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

/// One input message, owned by the plugin while it decides what to do with it.
#[derive(Debug, Clone)]
pub struct Message {
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: Vec<(String, String)>,
    timestamp_ms: u64,
    topic: Rc<str>,
    partition: u32,
    offset: u64,
}

impl Message {
    pub(crate) fn from_wit(m: wit::Message, topic: Rc<str>) -> Self {
        Message {
            key: m.key,
            value: m.value,
            headers: m.headers.into_iter().map(|h| (h.name, h.value)).collect(),
            timestamp_ms: m.timestamp_ms,
            topic,
            partition: m.partition,
            offset: m.offset,
        }
    }

    /// Build a message by hand, for unit tests of plugin logic.
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Message {
            key: None,
            value: value.into(),
            headers: Vec::new(),
            timestamp_ms: 0,
            topic: Rc::from(""),
            partition: 0,
            offset: 0,
        }
    }

    /// Builder for tests: set the key.
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Builder for tests: add a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Builder for tests: set the timestamp.
    pub fn with_timestamp_ms(mut self, ts: u64) -> Self {
        self.timestamp_ms = ts;
        self
    }

    /// The partitioning key, if any.
    pub fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    /// The key as UTF-8 text, if it is present and valid UTF-8.
    pub fn key_str(&self) -> Option<&str> {
        self.key().and_then(|k| std::str::from_utf8(k).ok())
    }

    /// The payload bytes.
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// The payload as UTF-8 text, or a fatal error.
    pub fn text(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.value).map_err(|e| Error::fatal(format!("payload is not UTF-8: {e}")))
    }

    /// The payload decoded from JSON; a decode failure is fatal.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        Ok(serde_json::from_slice(&self.value)?)
    }

    /// The payload decoded from MessagePack; a decode failure is fatal.
    pub fn msgpack<T: DeserializeOwned>(&self) -> Result<T, Error> {
        Ok(rmp_serde::from_slice(&self.value)?)
    }

    /// The first header named `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
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
        &self.headers
    }

    /// Append time in the source partition (ms since the Unix epoch).
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }

    /// The pipeline's source topic.
    pub fn topic(&self) -> &str {
        &self.topic
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
        self.value
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

    pub(crate) fn into_wit(self) -> wit::Output {
        wit::Output {
            key: self.key,
            value: self.value,
            headers: self.headers.into_iter().map(|(name, value)| wit::Header { name, value }).collect(),
            topic: self.topic,
        }
    }
}

/// Passing a message on keeps its key, payload and headers and moves them without copying.
impl From<Message> for Output {
    fn from(m: Message) -> Self {
        Output { key: m.key, value: m.value, headers: m.headers, topic: None }
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
