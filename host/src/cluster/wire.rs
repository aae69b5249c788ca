//! The cluster's own wire types: what weir nodes write into JetStream for each other — the
//! metadata records (topics, pipelines, queues, exchanges, plugin versions) and the commands
//! one node forwards to another. They are not the on-disk format's types (`storage::stored`)
//! nor the client protocol's: each boundary owns its types and the modules that own a record
//! convert at the edge ([`crate::mirror`]).
//!
//! Every record starts with one version byte, then MessagePack with field names. A field is
//! added with `#[serde(default)]` (old nodes ignore it); anything else is a new version. A node
//! reading a version newer than it knows refuses with [`WireError::Newer`]: mixing versions in
//! a rolling upgrade must never be read as damage, nor guessed at.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Why a record does not decode.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Written by a newer weir.
    #[error(
        "{what} was written by a newer weir node (record version {found}; this node reads up to {supported}): \
         upgrade this node to the cluster's version"
    )]
    Newer {
        /// The key or subject read.
        what: String,
        /// Its version.
        found: u8,
        /// The newest this build reads.
        supported: u8,
    },
    /// The bytes do not decode.
    #[error("damaged cluster record {what}: {why}")]
    Damaged {
        /// The key or subject read.
        what: String,
        /// Why.
        why: String,
    },
}

impl From<WireError> for crate::storage::StoreError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Newer { .. } => crate::storage::StoreError::Newer(e.to_string()),
            WireError::Damaged { what, why } => crate::storage::StoreError::Corrupt { what, why },
        }
    }
}

/// A type with a wire version (the first byte of its encoding).
pub trait Versioned: Serialize + serde::de::DeserializeOwned {
    /// The version this build writes and reads.
    const VERSION: u8;
}

/// `record` as the cluster stores it: version byte, then named MessagePack.
pub fn encode<T: Versioned>(record: &T) -> Vec<u8> {
    let mut out = vec![T::VERSION];
    rmp_serde::encode::write_named(&mut out, record).expect("cluster records always encode");
    out
}

/// The record stored under `what`, refusing a newer version and saying so.
pub fn decode<T: Versioned>(what: &str, bytes: &[u8]) -> Result<T, WireError> {
    let Some((&version, body)) = bytes.split_first() else {
        return Err(WireError::Damaged { what: what.to_string(), why: "empty record".into() });
    };
    if version > T::VERSION {
        return Err(WireError::Newer { what: what.to_string(), found: version, supported: T::VERSION });
    }
    if version < T::VERSION {
        return Err(WireError::Damaged { what: what.to_string(), why: format!("unknown record version {version}") });
    }
    rmp_serde::from_slice(body).map_err(|e| WireError::Damaged { what: what.to_string(), why: e.to_string() })
}

macro_rules! versioned {
    ($($t:ty),* => $v:expr) => { $(impl Versioned for $t { const VERSION: u8 = $v; })* };
}
versioned!(TopicC1, PipelineC1, QueueC1, ExchangeC1, PluginC1, AskC1, AnswerC1 => 1);

/// A topic (`topic/<name>`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopicC1 {
    /// Numeric id (in an idempotent producer's key); never reused.
    #[serde(default)]
    pub id: u32,
    /// Settings.
    pub config: TopicConfigC1,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: u64,
}

/// A topic's settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopicConfigC1 {
    /// Partitions (each one stream).
    pub partitions: u32,
    /// `None`: the server's default.
    #[serde(default)]
    pub durability: Option<DurabilityC1>,
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
    pub partitioner: PartitionerC1,
    /// Records' keys must carry a schema id of this subject (`None`: keys are not checked;
    /// empty: the subject follows `subject_strategy`).
    #[serde(default)]
    pub key_schema: Option<String>,
    /// Records' values must carry a schema id of this subject (as `key_schema`).
    #[serde(default)]
    pub value_schema: Option<String>,
    /// How much is checked where a subject is set.
    #[serde(default)]
    pub validation: ValidationC1,
    /// How a record's subject is named.
    #[serde(default)]
    pub subject_strategy: SubjectStrategyC1,
}

/// When a write is acknowledged.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DurabilityC1 {
    /// Stored by the stream's quorum, fsynced as the servers are configured.
    Sync,
    /// The same in cluster mode: the setting is kept for a single node reading it back.
    Os,
}

/// How much a produce checks of a record against the schema registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ValidationC1 {
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
pub enum SubjectStrategyC1 {
    /// The topic's subject (`<topic>-key`, `<topic>-value`, or the one configured).
    #[default]
    TopicName,
    /// The record's full name (the schema's record, title or message name).
    RecordName,
    /// `<topic>-<record full name>`.
    TopicRecordName,
}

/// How keyed records pick their partition.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionerC1 {
    /// xxHash64.
    #[default]
    Hash,
    /// Kafka's murmur2.
    Murmur2,
}

/// A pipeline (`pipeline/<name>`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PipelineC1 {
    /// Name.
    pub name: String,
    /// `NAME` (a topic) or `queue:NAME`.
    pub source: String,
    /// Consumer group of its offsets.
    #[serde(default)]
    pub group: Option<String>,
    /// Steps.
    pub steps: Vec<StepC1>,
    /// Sink topic.
    pub sink: String,
    /// Where it starts without committed offsets.
    pub start: StartC1,
    /// Messages per batch.
    #[serde(default)]
    pub batch_max_messages: Option<usize>,
    /// Failure policy.
    pub on_error: ErrorPolicyC1,
    /// Attempts per message.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// First retry wait.
    #[serde(default)]
    pub backoff_ms: Option<u64>,
    /// Dead-letter topic.
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Partitions processed at once (per node).
    #[serde(default)]
    pub parallelism: Option<usize>,
    /// Most hops around an allowed cycle.
    #[serde(default)]
    pub max_hops: Option<u32>,
    /// Numeric scope of its state keys; never reused.
    pub id: u32,
    /// Creation time.
    pub created_ms: u64,
    /// Why it halted: every node stops it, and it stays halted.
    #[serde(default)]
    pub halted: Option<String>,
    /// Paused.
    #[serde(default)]
    pub paused: bool,
    /// The token it acts for.
    #[serde(default)]
    pub owner: Option<String>,
    /// Resets so far: a node seeing the count change restarts the pipeline's workers, which
    /// read the progress the reset committed.
    #[serde(default)]
    pub resets: u64,
}

/// A pipeline step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StepC1 {
    /// `NAME` or `NAME@V`.
    pub plugin: String,
    /// Its config.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// Where a pipeline without offsets starts.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum StartC1 {
    /// The oldest record.
    Earliest,
    /// New records only.
    Latest,
}

/// A pipeline's failure policy.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorPolicyC1 {
    /// Stop.
    Halt,
    /// Retry, then stop.
    Retry,
    /// Count and go on.
    Skip,
    /// Dead-letter and go on.
    DeadLetter,
}

/// A queue (`queue/<name>`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct QueueC1 {
    /// Numeric id in the queues' keys; never reused.
    pub id: u32,
    /// Name.
    pub name: String,
    /// Settings.
    pub config: QueueConfigC1,
    /// Creation time.
    pub created_ms: u64,
}

/// A queue's settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct QueueConfigC1 {
    /// Visibility timeout, ms.
    pub visibility_timeout_ms: u64,
    /// Deliveries before dead-lettering.
    #[serde(default)]
    pub max_deliveries: Option<u32>,
    /// Dead-letter queue.
    #[serde(default)]
    pub dead_letter: Option<String>,
    /// Dedup window, ms.
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExchangeC1 {
    /// Name.
    pub name: String,
    /// Type.
    pub kind: ExchangeTypeC1,
    /// Bindings.
    pub bindings: Vec<BindingC1>,
    /// Alternate exchange.
    #[serde(default)]
    pub alternate: Option<String>,
    /// Creation time.
    pub created_ms: u64,
}

/// A binding.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BindingC1 {
    /// Where it delivers.
    pub destination: DestinationC1,
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

/// An exchange's type.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ExchangeTypeC1 {
    /// Equal keys.
    Direct,
    /// AMQP patterns.
    Topic,
    /// Everything.
    Fanout,
    /// Header matches.
    Headers,
}

/// A binding's destination.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DestinationC1 {
    /// A topic.
    Topic(String),
    /// A queue.
    Queue(String),
}

/// A plugin version (`plugin/<name>/<version>`); its bytes are in the object store by hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PluginC1 {
    /// Name.
    pub name: String,
    /// Version (the cluster's numbering).
    pub version: u32,
    /// blake3 of the component.
    pub hash: String,
    /// Size.
    pub size: u64,
    /// WIT world.
    pub world: String,
    /// Deploy time.
    pub deployed_ms: u64,
    /// Limits and grants.
    pub sandbox: SandboxC1,
}

/// A plugin's limits and grants.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SandboxC1 {
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

/// What one node asks of another: a command for the node that holds what it needs (the
/// queues' coordinator, the coordinator of a consumer group), or a question every node
/// answers for what it runs (a pipeline's counters, a shadow's comparisons).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AskC1 {
    /// A queue command, for the coordinator.
    Queue(QueueCommandC1),
    /// A group membership command, for the coordinator.
    Group(GroupCommandC1),
    /// A publish through an exchange that routes to a queue, for the coordinator.
    Publish {
        /// Exchange.
        exchange: String,
        /// Routing key.
        routing_key: String,
        /// The message's key.
        #[serde(with = "serde_bytes")]
        key: Option<Vec<u8>>,
        /// Its value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// Its headers.
        headers: Vec<(String, String)>,
    },
    /// This node's counters of a pipeline.
    PipelineCounters(String),
    /// This node's comparisons of a plugin's shadow.
    Shadow(String),
}

/// The answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AnswerC1 {
    /// Done, with this reply.
    Reply(ReplyC1),
    /// Failed: the broker's error kind (by name) and the message the caller sees.
    Failed {
        /// `ErrorKind` variant name.
        kind: String,
        /// The error's text.
        message: String,
    },
    /// This node does not hold what the command needs (any more): ask again.
    Moved(String),
}

/// A queue command.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum QueueCommandC1 {
    /// Create.
    Create {
        /// Name.
        name: String,
        /// Settings.
        config: QueueConfigC1,
    },
    /// Delete.
    Delete {
        /// Name.
        name: String,
    },
    /// Empty.
    Purge {
        /// Name.
        name: String,
    },
    /// Every queue.
    List,
    /// One queue.
    Describe {
        /// Name.
        name: String,
    },
    /// Enqueue.
    Send {
        /// Queue.
        queue: String,
        /// Messages.
        messages: Vec<QueueMessageC1>,
    },
    /// Receive.
    Receive {
        /// Queue.
        queue: String,
        /// Most messages.
        max: u64,
        /// Long-poll wait, ms.
        wait_ms: u64,
        /// Visibility timeout, ms.
        visibility_ms: Option<u64>,
    },
    /// Acknowledge.
    Ack {
        /// Queue.
        queue: String,
        /// Receipts.
        receipts: Vec<String>,
    },
    /// Hand back: requeue after a delay (ms), or dead-letter (`None`).
    Nack {
        /// Queue.
        queue: String,
        /// Receipts.
        receipts: Vec<String>,
        /// `Some(delay)`: requeue; `None`: dead-letter.
        requeue_ms: Option<u64>,
    },
    /// Extend visibility.
    Extend {
        /// Queue.
        queue: String,
        /// Receipts.
        receipts: Vec<String>,
        /// New timeout, ms.
        timeout_ms: u64,
    },
}

/// A message to enqueue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueMessageC1 {
    /// Payload.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// Metadata.
    pub headers: Vec<(String, String)>,
    /// Priority.
    pub priority: u8,
    /// Delay, ms.
    pub delay_ms: u64,
    /// Dedup id.
    pub dedup_id: Option<String>,
    /// FIFO group.
    pub group: Option<String>,
    /// Time to live, ms.
    #[serde(default)]
    pub ttl_ms: Option<u64>,
}

/// A consumer group membership command.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum GroupCommandC1 {
    /// Join.
    Join {
        /// Group.
        group: String,
        /// Topic.
        topic: String,
        /// Rejoin as.
        member: Option<String>,
        /// Session, ms.
        session_ms: u64,
    },
    /// Stay.
    Heartbeat {
        /// Group.
        group: String,
        /// Topic.
        topic: String,
        /// Member.
        member: String,
    },
    /// Leave.
    Leave {
        /// Group.
        group: String,
        /// Topic.
        topic: String,
        /// Member.
        member: String,
    },
    /// Every group's members.
    Describe,
    /// A member's commit: checked against its generation here, then stored.
    Commit {
        /// Group.
        group: String,
        /// Topic.
        topic: String,
        /// `(partition, next offset)`.
        offsets: Vec<(u32, u64)>,
        /// Member.
        member: String,
        /// Its generation.
        generation: u64,
    },
}

/// A reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ReplyC1 {
    /// Nothing to say.
    Done,
    /// A count.
    Count(u64),
    /// One queue.
    Queue(QueueInfoC1),
    /// Queues.
    Queues(Vec<QueueInfoC1>),
    /// Deliveries.
    Deliveries(Vec<DeliveryC1>),
    /// Per message sent: enqueued (or a repeated dedup id).
    Sent(Vec<bool>),
    /// A membership.
    Membership {
        /// Member id.
        member_id: String,
        /// Generation.
        generation: u64,
        /// Partitions.
        partitions: Vec<u32>,
    },
    /// Groups' members.
    GroupMembers(Vec<GroupMembersC1>),
    /// Where a publish went.
    Published(Vec<DestinationC1>),
    /// A pipeline's counters on one node.
    Counters(CountersC1),
    /// A shadow's comparisons on one node.
    Shadow(ShadowC1),
}

/// A group's members: group, topic, generation, `(member, partitions)`.
pub type GroupMembersC1 = (String, String, u64, Vec<(String, Vec<u32>)>);

/// A queue's counts and settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueInfoC1 {
    /// Name.
    pub name: String,
    /// Settings.
    pub config: QueueConfigC1,
    /// Ready.
    pub ready: u64,
    /// Waiting.
    pub waiting: u64,
    /// In flight.
    pub in_flight: u64,
    /// Created.
    pub created_ms: u64,
}

/// A delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliveryC1 {
    /// Receipt.
    pub receipt: String,
    /// Payload.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// Metadata.
    pub headers: Vec<(String, String)>,
    /// Deliveries so far.
    pub deliveries: u32,
    /// Priority.
    pub priority: u8,
    /// FIFO group.
    pub group: Option<String>,
    /// Sent at.
    pub enqueued_ms: u64,
}

/// A pipeline's counters as one node kept them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CountersC1 {
    /// Inputs dealt with.
    pub processed: u64,
    /// Outputs.
    pub emitted: u64,
    /// Dropped.
    pub dropped: u64,
    /// Batches.
    pub batches: u64,
    /// Failed.
    pub failed: u64,
    /// Dead-lettered.
    pub dead_lettered: u64,
    /// Retries.
    pub retries: u64,
    /// Swaps.
    pub swaps: u64,
    /// Swap pause p99, µs.
    pub swap_pause_p99_us: u64,
    /// Per step: input, output, dropped, errors, calls, busy µs.
    pub steps: Vec<[u64; 6]>,
    /// The last failure handled without halting.
    pub last_failure: Option<String>,
    /// When it happened, ms since the Unix epoch.
    #[serde(default)]
    pub last_failure_ms: Option<u64>,
}

/// A shadow's comparisons on one node.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShadowC1 {
    /// Shadow version.
    pub shadow_version: Option<u32>,
    /// Live version.
    pub live_version: Option<u32>,
    /// Same outcome.
    pub matched: u64,
    /// Different.
    pub differed: u64,
    /// Shadow failures.
    pub shadow_failures: u64,
    /// Samples: pipeline, step, partition, offset, live, shadow.
    pub samples: Vec<(String, u64, u32, u64, String, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Version 1 as earlier nodes wrote it, spelled out apart from the structs above: a rename
    /// there would fail this test.
    #[test]
    fn records_of_version_1_still_decode() {
        let pipeline = serde_json::json!({
            "name": "p", "source": "queue:jobs", "group": null, "steps": [{"plugin": "f@2", "config": {"k": "1"}}],
            "sink": "out", "start": "latest", "batch_max_messages": null, "on_error": "dead-letter",
            "max_attempts": 3, "backoff_ms": null, "dead_letter_topic": null, "parallelism": null,
            "id": 7, "created_ms": 1, "halted": null, "paused": true, "owner": "ops"
        });
        let mut bytes = vec![1u8];
        bytes.extend(rmp_serde::to_vec_named(&pipeline).unwrap());
        let p: PipelineC1 = decode("pipeline/p", &bytes).unwrap();
        assert_eq!((p.source.as_str(), p.id, p.paused, p.owner.as_deref()), ("queue:jobs", 7, true, Some("ops")));
        let topic = serde_json::json!({"created_ms": 5, "config": {"partitions": 4, "durability": "os",
            "max_message_bytes": 1024, "partitioner": "murmur2"}});
        let mut bytes = vec![1u8];
        bytes.extend(rmp_serde::to_vec_named(&topic).unwrap());
        let t: TopicC1 = decode("topic/t", &bytes).unwrap();
        assert_eq!((t.config.partitions, t.config.durability), (4, Some(DurabilityC1::Os)));
        assert_eq!(t.config.retention_ms, None, "a field missing in an older record takes its default");
        let exchange = serde_json::json!({"name": "x", "kind": "topic", "created_ms": 1,
            "bindings": [{"destination": {"queue": "q"}, "key": "a.#"}]});
        let mut bytes = vec![1u8];
        bytes.extend(rmp_serde::to_vec_named(&exchange).unwrap());
        let e: ExchangeC1 = decode("exchange/x", &bytes).unwrap();
        assert_eq!(e.bindings[0].destination, DestinationC1::Queue("q".into()));
        assert_eq!(p.on_error, ErrorPolicyC1::DeadLetter);
    }

    #[test]
    fn a_newer_record_is_refused_saying_so_and_damage_is_not_taken_for_one() {
        let t = TopicC1 {
            id: 3,
            config: TopicConfigC1 {
                partitions: 1,
                durability: None,
                retention_ms: None,
                retention_bytes: None,
                max_message_bytes: 10,
                ephemeral: false,
                partitioner: PartitionerC1::Hash,
                key_schema: None,
                value_schema: Some("t-value".into()),
                validation: ValidationC1::Full,
                subject_strategy: SubjectStrategyC1::TopicName,
            },
            created_ms: 1,
        };
        let mut bytes = encode(&t);
        assert_eq!(decode::<TopicC1>("topic/t", &bytes).unwrap(), t);
        bytes[0] = 2;
        let err = decode::<TopicC1>("topic/t", &bytes).unwrap_err();
        assert!(matches!(err, WireError::Newer { found: 2, supported: 1, .. }), "{err}");
        assert!(err.to_string().contains("upgrade this node"), "{err}");
        assert!(matches!(decode::<TopicC1>("topic/t", &[1, 0xc1]), Err(WireError::Damaged { .. })));
        assert!(matches!(decode::<TopicC1>("topic/t", &[]), Err(WireError::Damaged { .. })));
    }
}
