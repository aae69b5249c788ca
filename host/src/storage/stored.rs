//! The records of the `meta` column family as they are stored: the on-disk format's own
//! types (format version 1, MessagePack with field names), apart from the broker's types and
//! the wire's. The modules that own each record convert at the edge ([`crate::mirror`]), so
//! a field added to the broker's type is a format change only when a field is added here.
//!
//! Evolution: a field is added with `#[serde(default)]`; anything else is a new record type
//! (`PipelineV2`) read beside this one and a new format version (`keys::FORMAT_VERSION`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A topic (`topic/<name>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicV1 {
    /// Numeric id in `log` and `offsets` keys; never reused.
    pub id: u32,
    /// Name.
    pub name: String,
    /// Settings.
    pub config: TopicConfigV1,
    /// Creation time.
    pub created_ms: u64,
}

/// A topic's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicConfigV1 {
    /// Partitions.
    pub partitions: u32,
    /// `None`: the server's default.
    #[serde(default)]
    pub durability: Option<DurabilityV1>,
    /// Age limit, ms.
    #[serde(default)]
    pub retention_ms: Option<u64>,
    /// Size limit per partition, bytes.
    #[serde(default)]
    pub retention_bytes: Option<u64>,
    /// Largest value.
    pub max_message_bytes: usize,
    /// Memory only.
    #[serde(default)]
    pub ephemeral: bool,
    /// How keyed records pick their partition.
    #[serde(default)]
    pub partitioner: PartitionerV1,
    /// Records' keys must carry a schema id of this subject (`None`: keys are not checked;
    /// empty: the subject follows `subject_strategy`).
    #[serde(default)]
    pub key_schema: Option<String>,
    /// Records' values must carry a schema id of this subject (as `key_schema`).
    #[serde(default)]
    pub value_schema: Option<String>,
    /// How much is checked where a subject is set.
    #[serde(default)]
    pub validation: ValidationV1,
    /// How a record's subject is named.
    #[serde(default)]
    pub subject_strategy: SubjectStrategyV1,
}

/// How much a produce checks of a record against the schema registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ValidationV1 {
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
pub enum SubjectStrategyV1 {
    /// The topic's subject (`<topic>-key`, `<topic>-value`, or the one configured).
    #[default]
    TopicName,
    /// The record's full name (the schema's record, title or message name).
    RecordName,
    /// `<topic>-<record full name>`.
    TopicRecordName,
}

/// How keyed records pick their partition.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionerV1 {
    /// xxHash64.
    #[default]
    Hash,
    /// Kafka's murmur2.
    Murmur2,
}

/// When a write is acknowledged.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DurabilityV1 {
    /// fsync per group commit.
    Sync,
    /// WAL write reached the OS.
    Os,
}

/// A pipeline (`pipeline/<name>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineV1 {
    /// What it reads, runs and writes.
    pub spec: PipelineSpecV1,
    /// Numeric scope of its state keys; never reused.
    pub id: u32,
    /// Creation time.
    pub created_ms: u64,
    /// Why it halted; it stays halted across restarts.
    #[serde(default)]
    pub halted: Option<String>,
    /// Paused by `weir pipeline pause`.
    #[serde(default)]
    pub paused: bool,
    /// The token it acts for.
    #[serde(default)]
    pub owner: Option<String>,
    /// Resets so far (a changed count restarts its workers everywhere).
    #[serde(default)]
    pub resets: u64,
}

/// A pipeline's spec.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineSpecV1 {
    /// Name.
    pub name: String,
    /// `NAME` (a topic) or `queue:NAME`.
    pub source: String,
    /// Consumer group of its offsets.
    #[serde(default)]
    pub group: Option<String>,
    /// Steps.
    pub steps: Vec<StepV1>,
    /// Sink topic.
    pub sink: String,
    /// Start without committed offsets.
    #[serde(default)]
    pub start: StartV1,
    /// Messages per batch.
    #[serde(default)]
    pub batch_max_messages: Option<usize>,
    /// Failure policy.
    #[serde(default)]
    pub on_error: ErrorPolicyV1,
    /// Attempts per message.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// First retry wait.
    #[serde(default)]
    pub backoff_ms: Option<u64>,
    /// Dead-letter topic.
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Partitions processed at once.
    #[serde(default)]
    pub parallelism: Option<usize>,
    /// Most hops around an allowed cycle.
    #[serde(default)]
    pub max_hops: Option<u32>,
}

/// A pipeline step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepV1 {
    /// `NAME` or `NAME@V`.
    pub plugin: String,
    /// Its config.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// Where a pipeline without offsets starts.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartV1 {
    /// The oldest record.
    #[default]
    Earliest,
    /// New records only.
    Latest,
}

/// A pipeline's failure policy.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorPolicyV1 {
    /// Stop.
    #[default]
    Halt,
    /// Retry, then stop.
    Retry,
    /// Count and go on.
    Skip,
    /// Dead-letter and go on.
    DeadLetter,
}

/// A queue (`queue/<name>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueV1 {
    /// Numeric id in `queues` keys; never reused.
    pub id: u32,
    /// Name.
    pub name: String,
    /// Settings.
    pub config: QueueConfigV1,
    /// Creation time.
    pub created_ms: u64,
}

/// A queue's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueConfigV1 {
    /// Visibility timeout.
    pub visibility_timeout_ms: u64,
    /// Deliveries before dead-lettering.
    #[serde(default)]
    pub max_deliveries: Option<u32>,
    /// Dead-letter queue.
    #[serde(default)]
    pub dead_letter: Option<String>,
    /// Dedup window.
    pub dedup_window_ms: u64,
    /// Most messages.
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

/// An exchange (`exchange/<name>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExchangeV1 {
    /// Name.
    pub name: String,
    /// Type.
    pub kind: ExchangeTypeV1,
    /// Bindings.
    pub bindings: Vec<BindingV1>,
    /// Alternate exchange.
    #[serde(default)]
    pub alternate: Option<String>,
    /// Creation time.
    pub created_ms: u64,
}

/// An exchange's type.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExchangeTypeV1 {
    /// Equal keys.
    Direct,
    /// AMQP patterns.
    Topic,
    /// Everything.
    Fanout,
    /// Header matches.
    Headers,
}

/// A binding.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BindingV1 {
    /// Where it delivers.
    pub destination: DestinationV1,
    /// Key or pattern.
    #[serde(default)]
    pub key: Option<String>,
    /// Header matches.
    #[serde(default)]
    pub matches: Vec<(String, String)>,
    /// Any instead of all.
    #[serde(default)]
    pub match_any: bool,
}

/// A binding's destination.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DestinationV1 {
    /// A topic.
    Topic(String),
    /// A queue.
    Queue(String),
}

/// A plugin version (`plugin/<name>/<version>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginV1 {
    /// Name.
    pub name: String,
    /// Version.
    pub version: u32,
    /// blake3 of the component (its bytes are under `blob/<hash>`).
    pub hash: String,
    /// Size.
    pub size: u64,
    /// WIT world.
    pub world: String,
    /// Deploy time.
    pub deployed_ms: u64,
    /// Limits and grants.
    pub sandbox: SandboxV1,
}

/// A plugin's limits and grants.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxV1 {
    /// Memory.
    pub memory_bytes: usize,
    /// CPU per batch.
    pub cpu_ms_per_batch: u64,
    /// Output per batch.
    pub output_bytes_per_batch: usize,
    /// Largest state value.
    pub state_value_bytes: usize,
    /// State per batch.
    pub state_bytes_per_batch: usize,
    /// Log lines per second.
    pub log_lines_per_s: u32,
    /// Real clocks.
    #[serde(default)]
    pub allow_clock: bool,
    /// Readable environment variables.
    #[serde(default)]
    pub allow_env: Vec<String>,
}

/// Encode a record for `meta`.
pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(record).expect("meta records always encode")
}

/// Decode the record under `key`, or say that it is corrupt.
pub fn decode<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, super::StoreError> {
    rmp_serde::from_slice(bytes).map_err(|e| super::StoreError::Corrupt { what: key.to_string(), why: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Format version 1 as earlier builds wrote it (field names and enum spellings), written
    /// out independently of the structs above: a rename here would fail this test.
    #[test]
    fn records_of_format_1_still_decode() {
        let pipeline = serde_json::json!({
            "spec": {
                "name": "p", "source": "queue:jobs", "group": null,
                "steps": [{"plugin": "f@2", "config": {"k": "1"}}], "sink": "out", "start": "latest",
                "batch_max_messages": null, "on_error": "dead-letter", "max_attempts": 3, "backoff_ms": null,
                "dead_letter_topic": null, "parallelism": null
            },
            "id": 7, "created_ms": 1, "halted": null, "paused": true
        });
        let p: PipelineV1 = decode("pipeline/p", &rmp_serde::to_vec_named(&pipeline).unwrap()).unwrap();
        assert_eq!((p.spec.source.as_str(), p.id, p.paused, p.owner), ("queue:jobs", 7, true, None));
        assert!(matches!((p.spec.start, p.spec.on_error), (StartV1::Latest, ErrorPolicyV1::DeadLetter)));
        let exchange = serde_json::json!({
            "name": "x", "kind": "topic", "alternate": null, "created_ms": 1,
            "bindings": [{"destination": {"queue": "q"}, "key": "a.#", "matches": [], "match_any": false}]
        });
        let e: ExchangeV1 = decode("exchange/x", &rmp_serde::to_vec_named(&exchange).unwrap()).unwrap();
        assert!(matches!(&e.bindings[0].destination, DestinationV1::Queue(q) if q == "q"));
        let topic = serde_json::json!({"id": 1, "name": "t", "created_ms": 1,
            "config": {"partitions": 4, "durability": "os", "retention_ms": null, "retention_bytes": null,
                       "max_message_bytes": 1024, "ephemeral": false}});
        let t: TopicV1 = decode("topic/t", &rmp_serde::to_vec_named(&topic).unwrap()).unwrap();
        assert!(matches!(t.config.durability, Some(DurabilityV1::Os)));
        assert!(decode::<TopicV1>("topic/bad", b"\xc1").is_err());
    }
}
