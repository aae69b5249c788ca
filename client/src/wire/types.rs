//! The data inside requests and responses: the wire's own types, converted by the server to
//! and from the broker's at its edge. They change only with the protocol: a field is added
//! with `#[serde(default)]`, anything else bumps [`super::PROTOCOL_VERSION`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// When a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// After the group commit's WAL write is fsynced: survives power loss.
    #[default]
    Sync,
    /// After the WAL write reaches the OS: survives a crash of `weir serve`, not of the machine.
    Os,
}

/// How a keyed record picks its partition (keyless records go round-robin either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Partitioner {
    /// xxHash64 of the key (weir's own).
    #[default]
    Hash,
    /// Kafka's default for keyed records (murmur2, as the Java client and kafka-python): a
    /// record keyed the same lands in the same partition whether a Kafka client or weir chose.
    Murmur2,
}

/// How much a produce checks of a record against the schema registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Validation {
    /// The Confluent framing (magic byte 0, a schema id) and that the id is registered under
    /// the record's subject.
    #[default]
    Id,
    /// Also that the payload decodes with that schema.
    Full,
    /// Nothing at produce: the subject is the topic's contract, which pipelines writing to or
    /// reading from it are checked against before they run.
    None,
}

/// Which subject a record's schema id must be registered under (Confluent's naming strategies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SubjectStrategy {
    /// The topic's subject (`<topic>-key`, `<topic>-value`, or the one configured).
    #[default]
    TopicName,
    /// The record's full name (the schema's record, title or message name).
    RecordName,
    /// `<topic>-<record full name>`.
    TopicRecordName,
}

/// Settings of a topic, fixed at creation. A setting left out takes its default (JSON bodies
/// of the HTTP door name only what they change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TopicConfig {
    /// Number of partitions; order is kept within a partition.
    pub partitions: u32,
    /// `None`: the server's default durability.
    #[serde(default)]
    pub durability: Option<Durability>,
    /// Delete records older than this (ms). `None`: keep forever.
    #[serde(default)]
    pub retention_ms: Option<u64>,
    /// Delete the oldest records of a partition beyond this many bytes. `None`: no limit.
    #[serde(default)]
    pub retention_bytes: Option<u64>,
    /// Largest accepted message value.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Kept in memory only: Redis Pub/Sub style fan-out to live subscribers.
    #[serde(default)]
    pub ephemeral: bool,
    /// How keyed records pick their partition.
    #[serde(default)]
    pub partitioner: Partitioner,
    /// Records' keys must carry a schema id of this subject (`None`: keys are not checked;
    /// empty: the subject follows `subject_strategy`).
    #[serde(default)]
    pub key_schema: Option<String>,
    /// Records' values must carry a schema id of this subject (as `key_schema`).
    #[serde(default)]
    pub value_schema: Option<String>,
    /// How much is checked where a subject is set.
    #[serde(default)]
    pub validation: Validation,
    /// How a record's subject is named.
    #[serde(default)]
    pub subject_strategy: SubjectStrategy,
}

fn default_max_message_bytes() -> usize {
    super::MAX_MESSAGE_BYTES
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            partitions: 1,
            durability: None,
            retention_ms: None,
            retention_bytes: None,
            max_message_bytes: default_max_message_bytes(),
            ephemeral: false,
            partitioner: Partitioner::Hash,
            key_schema: None,
            value_schema: None,
            validation: Validation::Id,
            subject_strategy: SubjectStrategy::TopicName,
        }
    }
}

/// A record as produced. On the wire it is the array `[key, value, headers]`, keeping the
/// per-record overhead to a few bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WireRecord {
    /// Partitioning key.
    pub key: Option<ByteBuf>,
    /// Payload.
    pub value: ByteBuf,
    /// Metadata.
    pub headers: Vec<(String, String)>,
}

impl WireRecord {
    /// A keyless record with no headers.
    pub fn value(value: impl Into<Vec<u8>>) -> Self {
        WireRecord { key: None, value: ByteBuf::from(value.into()), headers: Vec::new() }
    }

    /// A record with a key.
    pub fn keyed(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        WireRecord { key: Some(ByteBuf::from(key.into())), ..WireRecord::value(value) }
    }

    /// The same record with one more header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

impl Serialize for WireRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&self.key, &self.value, &self.headers).serialize(s)
    }
}

impl<'de> Deserialize<'de> for WireRecord {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (key, value, headers) = Deserialize::deserialize(d)?;
        Ok(WireRecord { key, value, headers })
    }
}

/// A record read back; its offset is its partition's `first_offset` plus its index, since
/// offsets are dense. On the wire it is the array `[timestamp_ms, key, value, headers]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRecord {
    /// Append time, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// Partitioning key.
    pub key: Option<ByteBuf>,
    /// Payload.
    pub value: ByteBuf,
    /// Metadata.
    pub headers: Vec<(String, String)>,
}

impl FetchedRecord {
    /// The value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

impl Serialize for FetchedRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.timestamp_ms, &self.key, &self.value, &self.headers).serialize(s)
    }
}

impl<'de> Deserialize<'de> for FetchedRecord {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (timestamp_ms, key, value, headers) = Deserialize::deserialize(d)?;
        Ok(FetchedRecord { timestamp_ms, key, value, headers })
    }
}

/// Where to read in one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchPosition {
    /// Partition.
    pub partition: u32,
    /// First offset wanted.
    pub offset: u64,
}

/// Records of one partition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FetchedPartition {
    /// Partition.
    pub partition: u32,
    /// Offset of the first record (may be past the asked offset if retention removed it).
    pub first_offset: u64,
    /// One past the last readable offset at the time of the read.
    pub high_watermark: u64,
    /// Records at `first_offset`, `first_offset + 1`, ….
    pub records: Vec<FetchedRecord>,
}

/// A topic and where each partition stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicInfo {
    /// Name.
    pub name: String,
    /// Settings.
    pub config: TopicConfig,
    /// Durability in effect (the config's, or the server default).
    pub durability: Durability,
    /// Creation time.
    pub created_ms: u64,
    /// `(log_start, high_watermark)` per partition.
    pub partitions: Vec<(u64, u64)>,
}

/// A consumer group's position and lag in one topic.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupInfo {
    /// Group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// `(partition, committed next offset, high watermark)`.
    pub partitions: Vec<(u32, Option<u64>, u64)>,
}

impl GroupInfo {
    /// Records not yet consumed, over all partitions.
    pub fn lag(&self) -> u64 {
        self.partitions.iter().map(|(_, c, hw)| hw.saturating_sub(c.unwrap_or(0))).sum()
    }
}

/// A member's view of its group after join or heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// This member's id.
    pub member_id: String,
    /// Changes with every rebalance; commits must carry the current one.
    pub generation: u64,
    /// Partitions this member should read now.
    pub partitions: Vec<u32>,
}

/// A group's members, for `weir group describe`.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// Settings of a queue. A setting left out takes its default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueConfig {
    /// How long a received message stays invisible before it is delivered again.
    pub visibility_timeout_ms: u64,
    /// Deliveries before the message moves to the dead-letter queue (`None`: unlimited).
    #[serde(default)]
    pub max_deliveries: Option<u32>,
    /// Queue receiving messages past `max_deliveries` (and explicit dead-letter nacks).
    #[serde(default)]
    pub dead_letter: Option<String>,
    /// How long a dedup id is remembered.
    pub dedup_window_ms: u64,
    /// Most messages held.
    pub max_messages: usize,
    /// AMQP's dead-letter exchange: dead letters are routed through it (with
    /// `dead_letter_routing_key`, or their own routing key) instead of to `dead_letter`.
    #[serde(default)]
    pub dead_letter_exchange: Option<String>,
    /// The routing key dead letters are routed with through `dead_letter_exchange`.
    #[serde(default)]
    pub dead_letter_routing_key: Option<String>,
    /// A message not delivered within this long of its send is dead-lettered (AMQP's
    /// `x-message-ttl`; a message's own `expiration` may be shorter).
    #[serde(default)]
    pub message_ttl_ms: Option<u64>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            visibility_timeout_ms: 30_000,
            max_deliveries: None,
            dead_letter: None,
            dedup_window_ms: 5 * 60_000,
            max_messages: super::QUEUE_MAX_MESSAGES,
            dead_letter_exchange: None,
            dead_letter_routing_key: None,
            message_ttl_ms: None,
        }
    }
}

/// A message to enqueue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewQueueMessage {
    /// Payload.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// Metadata.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// 0 (lowest, the default) to 9.
    #[serde(default)]
    pub priority: u8,
    /// Invisible for this long after sending.
    #[serde(default)]
    pub delay_ms: u64,
    /// Sending the same id again within the queue's dedup window enqueues nothing.
    #[serde(default)]
    pub dedup_id: Option<String>,
    /// FIFO group: one message of a group is in flight at a time, in send order.
    #[serde(default)]
    pub group: Option<String>,
    /// Dead-lettered if not delivered within this long.
    #[serde(default)]
    pub ttl_ms: Option<u64>,
}

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Ack, nack or extend with this.
    pub receipt: String,
    /// Payload.
    #[serde(with = "serde_bytes")]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Nack {
    /// Make it deliverable again (after `delay_ms`).
    Requeue {
        /// Wait before it is visible again.
        delay_ms: u64,
    },
    /// Move it to the dead-letter queue now.
    DeadLetter,
}

/// How an exchange matches bindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExchangeType {
    /// Binding key equals the routing key.
    Direct,
    /// AMQP topic patterns (`*`, `#`).
    Topic,
    /// Every binding.
    Fanout,
    /// Header matches.
    Headers,
}

/// Where a binding delivers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Destination {
    /// Append to a topic.
    Topic(String),
    /// Send to a queue.
    Queue(String),
}

impl Destination {
    /// Parse `topic:NAME` or `queue:NAME`.
    pub fn parse(s: &str) -> Result<Destination, super::WireError> {
        match s.split_once(':') {
            Some(("topic", n)) if !n.is_empty() => Ok(Destination::Topic(n.to_string())),
            Some(("queue", n)) if !n.is_empty() => Ok(Destination::Queue(n.to_string())),
            _ => Err(super::WireError::invalid(format!("invalid destination {s:?}: use topic:NAME or queue:NAME"))),
        }
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Topic(t) => write!(f, "topic:{t}"),
            Destination::Queue(q) => write!(f, "queue:{q}"),
        }
    }
}

/// One binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// Where matching messages go.
    pub destination: Destination,
    /// Binding key or topic pattern (direct and topic exchanges).
    #[serde(default)]
    pub key: Option<String>,
    /// `K=V` header matches (headers exchanges).
    #[serde(default)]
    pub matches: Vec<(String, String)>,
    /// Headers exchanges: match when any pair matches (default: all).
    #[serde(default)]
    pub match_any: bool,
}

impl Binding {
    /// A binding of `destination` with no key or matches.
    pub fn to(destination: Destination) -> Binding {
        Binding { destination, key: None, matches: Vec::new(), match_any: false }
    }
}

/// An exchange and its bindings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeInfo {
    /// Name.
    pub name: String,
    /// Type.
    pub kind: ExchangeType,
    /// Bindings.
    pub bindings: Vec<Binding>,
    /// Exchange that receives unroutable messages.
    #[serde(default)]
    pub alternate: Option<String>,
    /// Creation time.
    pub created_ms: u64,
}

/// What one plugin may use, fixed at deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sandbox {
    /// Linear memory limit in bytes.
    pub memory_bytes: usize,
    /// CPU time per `process` call.
    pub cpu_ms_per_batch: u64,
    /// Output bytes per batch.
    pub output_bytes_per_batch: usize,
    /// Largest state value.
    pub state_value_bytes: usize,
    /// State bytes written per batch.
    pub state_bytes_per_batch: usize,
    /// Log lines per second.
    pub log_lines_per_s: u32,
    /// Whether the guest sees the real wall and monotonic clocks (else: frozen at 0).
    #[serde(default)]
    pub allow_clock: bool,
    /// Environment variables the guest may read (copied from the server's environment).
    #[serde(default)]
    pub allow_env: Vec<String>,
}

impl Default for Sandbox {
    fn default() -> Self {
        use super::sandbox_defaults as d;
        Sandbox {
            memory_bytes: d::MEMORY_BYTES,
            cpu_ms_per_batch: d::CPU_MS_PER_BATCH,
            output_bytes_per_batch: d::OUTPUT_BYTES_PER_BATCH,
            state_value_bytes: d::STATE_VALUE_BYTES,
            state_bytes_per_batch: d::STATE_BYTES_PER_BATCH,
            log_lines_per_s: d::LOG_LINES_PER_S,
            allow_clock: false,
            allow_env: Vec::new(),
        }
    }
}

/// One immutable version of a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    /// Plugin name.
    pub name: String,
    /// 1, 2, 3, … per name.
    pub version: u32,
    /// blake3 of the component, hex.
    pub hash: String,
    /// Component size in bytes.
    pub size: u64,
    /// The WIT world it implements.
    pub world: String,
    /// Deploy time, ms since the Unix epoch.
    pub deployed_ms: u64,
    /// Its limits and grants.
    pub sandbox: Sandbox,
}

impl PluginInfo {
    /// `name@version`.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// A plugin in `weir plugin list`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginEntry {
    /// The live version.
    pub live: PluginInfo,
    /// The shadow version, if one runs.
    pub shadow: Option<u32>,
    /// How many versions exist.
    pub versions: u32,
    /// Pipelines with a step running it.
    pub used_by: Vec<String>,
}

/// What `weir plugin diff NAME` shows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShadowReport {
    /// Plugin name.
    pub plugin: String,
    /// The shadow version compared, if one is deployed.
    pub shadow_version: Option<u32>,
    /// The live version it was compared with.
    pub live_version: Option<u32>,
    /// Inputs on which both versions produced the same outcome.
    pub matched: u64,
    /// Inputs on which they differed (including shadow failures).
    pub differed: u64,
    /// Shadow calls that trapped or broke the contract.
    pub shadow_failures: u64,
    /// Up to 20 differences, oldest first.
    pub samples: Vec<DiffSample>,
    /// How the shadow's declared schemas differ from the live version's, one line each.
    #[serde(default)]
    pub schema_changes: Vec<String>,
}

/// One input on which the versions disagreed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiffSample {
    /// Pipeline.
    pub pipeline: String,
    /// Step, from 1.
    pub step: usize,
    /// Source partition.
    pub partition: u32,
    /// Source offset.
    pub offset: u64,
    /// The live outcome, abbreviated.
    pub live: String,
    /// The shadow outcome, abbreviated.
    pub shadow: String,
}

/// What a pipeline reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// A topic, read partition by partition.
    Topic(String),
    /// A queue, drained by competing workers.
    Queue(String),
}

impl Source {
    /// `NAME` or `topic:NAME` (a topic), `queue:NAME` (a queue).
    pub fn parse(text: &str) -> Source {
        match text.split_once(':') {
            Some(("queue", q)) => Source::Queue(q.to_string()),
            Some(("topic", t)) => Source::Topic(t.to_string()),
            _ => Source::Topic(text.to_string()),
        }
    }

    /// The topic or queue name.
    pub fn name(&self) -> &str {
        match self {
            Source::Topic(n) | Source::Queue(n) => n,
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Topic(t) => write!(f, "{t}"),
            Source::Queue(q) => write!(f, "queue:{q}"),
        }
    }
}

/// Spec files write `source = "orders"` or `source = "queue:jobs"`; the wire carries the
/// tagged form. Both decode.
impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "kebab-case")]
        enum Tagged {
            Topic(String),
            Queue(String),
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Tagged(Tagged),
        }
        Ok(match Either::deserialize(d)? {
            Either::Text(t) => Source::parse(&t),
            Either::Tagged(Tagged::Topic(t)) => Source::Topic(t),
            Either::Tagged(Tagged::Queue(q)) => Source::Queue(q),
        })
    }
}

/// What a pipeline reads, runs and writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// Name.
    pub name: String,
    /// Source: a topic, or a queue drained with competing workers.
    pub source: Source,
    /// Consumer group holding the pipeline's offsets; default `pipeline.<name>`.
    #[serde(default)]
    pub group: Option<String>,
    /// Steps, in order.
    pub steps: Vec<StepSpec>,
    /// Topic receiving the last step's outputs that are not routed elsewhere.
    pub sink: String,
    /// Where to start when the group has no committed offset.
    #[serde(default)]
    pub start: StartPosition,
    /// Messages per batch.
    #[serde(default)]
    pub batch_max_messages: Option<usize>,
    /// What happens to a message a step fails on.
    #[serde(default)]
    pub on_error: ErrorPolicy,
    /// Attempts per message before the policy applies.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Wait before the first retry, doubling each time up to 30 s.
    #[serde(default)]
    pub backoff_ms: Option<u64>,
    /// Topic for dead letters (default `<name>.dlq`, created with the pipeline).
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Most partitions processed at once (default: all of them).
    #[serde(default)]
    pub parallelism: Option<usize>,
    /// Allow a cycle (outputs into its own source, or a topic upstream of it), each message
    /// going around at most this many times, counted in its `weir-hops` header; over it, the
    /// message fails with the reason (dead-lettered under `on_error = "dead-letter"`). Unset:
    /// such a route is refused.
    #[serde(default)]
    pub max_hops: Option<u32>,
}

impl PipelineSpec {
    /// A pipeline with defaults for everything but its topology; `source` as
    /// [`Source::parse`] reads it.
    pub fn new(name: &str, source: &str, steps: Vec<StepSpec>, sink: &str) -> PipelineSpec {
        PipelineSpec {
            name: name.into(),
            source: Source::parse(source),
            group: None,
            steps,
            sink: sink.into(),
            start: StartPosition::Earliest,
            batch_max_messages: None,
            on_error: ErrorPolicy::Halt,
            max_attempts: None,
            backoff_ms: None,
            dead_letter_topic: None,
            parallelism: None,
            max_hops: None,
        }
    }

    /// The consumer group that holds this pipeline's source offsets.
    pub fn group(&self) -> String {
        self.group.clone().unwrap_or_else(|| format!("pipeline.{}", self.name))
    }

    /// The dead-letter topic.
    pub fn dead_letter_topic(&self) -> String {
        self.dead_letter_topic.clone().unwrap_or_else(|| format!("{}.dlq", self.name))
    }
}

/// One step: a plugin and its config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// `NAME` (follows the live version, hot-swapped on deploy) or `NAME@V` (pinned).
    pub plugin: String,
    /// `key = value` config passed to the plugin's `init`. In spec files, numbers and booleans
    /// are accepted and passed as their text.
    #[serde(default, deserialize_with = "scalar_map")]
    pub config: BTreeMap<String, String>,
}

impl StepSpec {
    /// A step running `plugin` with `config`.
    pub fn new(plugin: &str, config: &[(&str, &str)]) -> StepSpec {
        StepSpec { plugin: plugin.into(), config: config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }
}

/// A map whose values may be strings, numbers or booleans, kept as text.
fn scalar_map<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Int(i64),
        Float(f64),
        Bool(bool),
    }
    let raw = BTreeMap::<String, Scalar>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                Scalar::Text(s) => s,
                Scalar::Int(i) => i.to_string(),
                Scalar::Float(f) => f.to_string(),
                Scalar::Bool(b) => b.to_string(),
            };
            (k, text)
        })
        .collect())
}

/// Where a pipeline without committed offsets starts reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartPosition {
    /// The oldest stored record.
    #[default]
    Earliest,
    /// Only records produced after the pipeline starts.
    Latest,
}

/// What becomes of a message a step fails on, after its attempts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorPolicy {
    /// Stop the pipeline at the message (it stays stopped across restarts).
    #[default]
    Halt,
    /// Keep retrying retryable failures and traps (up to the attempts), then halt.
    Retry,
    /// Count it as failed and go on.
    Skip,
    /// Write the original message to the dead-letter topic with headers saying why, and go on.
    DeadLetter,
}

/// A pipeline's run state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    /// Processing.
    Running,
    /// Stopped by `weir pipeline pause`.
    Paused,
    /// Stopped on a failure; the error says where and why.
    Halted,
}

/// One step's counters in `weir pipeline status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepStats {
    /// Messages handed to the step.
    pub input: u64,
    /// Outputs it emitted (to the next step, the sink or routed).
    pub output: u64,
    /// Inputs it dropped.
    pub dropped: u64,
    /// Calls that failed (fail outcomes, traps, limits).
    pub errors: u64,
    /// `process` calls.
    pub calls: u64,
    /// Time spent inside the plugin, µs.
    pub busy_us: u64,
}

/// What `weir pipeline apply` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApplyChange {
    /// The pipeline did not exist and was created.
    Created,
    /// The spec was already in effect.
    Unchanged,
    /// Only step versions changed: hot-swapped at batch boundaries, no restart.
    Swapped,
    /// The topology changed: the pipeline restarted at its committed offsets, state kept.
    Restarted,
}

/// Where `weir pipeline reset` moves a pipeline's source offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResetTarget {
    /// This offset in every partition (clamped to what is stored).
    Offset(u64),
    /// The first offset at or after this time (ms since the epoch) in each partition.
    Time(u64),
}

/// What `weir pipeline status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineStatus {
    /// The spec.
    pub spec: PipelineSpec,
    /// The token whose grants it acts with (`None` without a token file).
    #[serde(default)]
    pub owner: Option<String>,
    /// Run state.
    pub state: RunState,
    /// Live `plugin@version` of each step.
    pub plugins: Vec<String>,
    /// Shadow `plugin@version` of each step, if one runs beside it.
    #[serde(default)]
    pub shadows: Vec<Option<String>>,
    /// Input messages processed and committed.
    pub processed: u64,
    /// Outputs written (sink and routed).
    pub emitted: u64,
    /// Inputs dropped by a step.
    pub dropped: u64,
    /// Batches committed.
    pub batches: u64,
    /// Messages that failed every attempt (skipped or dead-lettered).
    #[serde(default)]
    pub failed: u64,
    /// Messages written to the dead-letter topic.
    #[serde(default)]
    pub dead_lettered: u64,
    /// Attempts repeated after a retryable failure or trap.
    #[serde(default)]
    pub retries: u64,
    /// Per-step counters.
    #[serde(default)]
    pub steps: Vec<StepStats>,
    /// Hot swaps applied (plugin version changes), summed over partitions.
    #[serde(default)]
    pub swaps: u64,
    /// 99th percentile of the time a partition stalled to swap versions, µs.
    #[serde(default)]
    pub swap_pause_p99_us: u64,
    /// `(partition, committed next offset, high watermark)` of a topic source.
    pub partitions: Vec<(u32, u64, u64)>,
    /// Messages not yet acked in a queue source.
    #[serde(default)]
    pub queue_depth: Option<u64>,
    /// The error that halted the pipeline, or else the last failure it handled.
    pub last_error: Option<String>,
    /// When the last handled failure happened, ms since the Unix epoch (`None` for a halt).
    #[serde(default)]
    pub last_error_ms: Option<u64>,
}

impl PipelineStatus {
    /// Unprocessed records over all partitions (or in the queue).
    pub fn lag(&self) -> u64 {
        self.partitions.iter().map(|(_, c, hw)| hw.saturating_sub(*c)).sum::<u64>() + self.queue_depth.unwrap_or(0)
    }
}

/// One state entry of a step: in which partition, under which key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateEntry {
    /// Source partition the entry belongs to.
    pub partition: u32,
    /// The plugin's key.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// The value.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_travel_as_arrays_and_sources_in_both_forms() {
        let r = WireRecord::keyed("k", "v").with_header("h", "1");
        let bytes = rmp_serde::to_vec_named(&r).unwrap();
        assert_eq!(bytes[0], 0x93, "a three-element array, not a map");
        assert_eq!(rmp_serde::from_slice::<WireRecord>(&bytes).unwrap(), r);
        #[derive(Deserialize)]
        struct S {
            source: Source,
        }
        let text: S = toml_like("queue:jobs");
        assert_eq!(text.source, Source::Queue("jobs".into()));
        let tagged = rmp_serde::to_vec_named(&Source::Topic("t".into())).unwrap();
        assert_eq!(rmp_serde::from_slice::<Source>(&tagged).unwrap(), Source::Topic("t".into()));
        fn toml_like(s: &str) -> S {
            let bytes = rmp_serde::to_vec_named(&BTreeMap::from([("source", s)])).unwrap();
            rmp_serde::from_slice(&bytes).unwrap()
        }
    }
}

/// What `weir cluster status` shows: the node answering, its NATS connection, the live
/// nodes, and who owns each pipeline partition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The answering node's id.
    pub node: String,
    /// The NATS server it talks to, with version and connection state.
    pub nats: String,
    /// Whether its NATS connection is up.
    pub connected: bool,
    /// Live nodes.
    pub nodes: Vec<ClusterNode>,
    /// Each pipeline partition: its owner and committed progress.
    pub partitions: Vec<PartitionOwner>,
    /// Commits this node landed since it started.
    pub commits: u64,
    /// Commits of this node refused because a newer owner had committed (zombie commits).
    pub fenced_commits: u64,
    /// Partitions this node took over.
    pub takeovers: u64,
}

/// A live node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterNode {
    /// Id.
    pub id: String,
    /// Native protocol address.
    pub native: String,
    /// Kafka listener, if any.
    pub kafka: Option<String>,
    /// HTTP listener, if any.
    pub http: Option<String>,
}

/// One pipeline partition in the cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionOwner {
    /// Pipeline.
    pub pipeline: String,
    /// Source partition.
    pub partition: u32,
    /// Owner by rendezvous hashing over the live nodes.
    pub owner: Option<String>,
    /// Committed next offset.
    pub committed: Option<u64>,
    /// The node that made the last commit.
    pub committed_by: Option<String>,
    /// Plugin versions of the last commit.
    pub versions: Vec<String>,
}
