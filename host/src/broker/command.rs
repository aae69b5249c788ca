//! The broker's API: every operation as a typed command, per area, and every result as a
//! typed reply. Front doors (the native protocol, and later Kafka and HTTP) translate their
//! requests into these; [`super::Broker::execute`] checks the caller's grants
//! ([`super::access`]) and runs them. Nothing here knows a wire format.

use std::time::Duration;

use bytes::Bytes;

use super::Sequenced;
use crate::classic_groups::{ClassicGroupInfo, JoinRequest, Joined};
use crate::exchange::{Binding, Destination, ExchangeInfo, ExchangeType};
use crate::groups::{GroupMembers, Membership};
use crate::pipeline::{ApplyChange, PipelineSpec, PipelineStatus, ResetTarget, ShadowReport, StateEntry};
use crate::queue::{Delivery, Nack, NewQueueMessage, QueueConfig, QueueInfo};
use crate::registry::PluginInfo;
use crate::runtime::Sandbox;
use crate::schemas::{Compatibility, Mode, Registered, Registration, SchemaText, VersionSpec};
use crate::storage::{NewRecord, StoredRecord};
use crate::types::{Durability, TopicConfig};

/// One operation of the broker.
#[derive(Debug)]
pub enum Command {
    /// Topics: create, read and write.
    Topic(TopicCommand),
    /// Consumer groups: offsets and membership.
    Group(GroupCommand),
    /// Queues.
    Queue(QueueCommand),
    /// Exchanges, bindings and publishing.
    Exchange(ExchangeCommand),
    /// Plugin versions.
    Plugin(PluginCommand),
    /// Pipelines.
    Pipeline(PipelineCommand),
    /// Pipeline step state.
    State(StateCommand),
    /// The schema registry.
    Schema(SchemaCommand),
    /// Cluster mode's view of itself.
    ClusterStatus,
}

/// Topic operations.
#[derive(Debug)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        /// Name.
        name: String,
        /// Settings.
        config: TopicConfig,
    },
    /// Delete a topic and its records (refused while a pipeline uses it).
    Delete {
        /// Name.
        name: String,
    },
    /// Every topic.
    List,
    /// One topic.
    Describe {
        /// Name.
        name: String,
    },
    /// Append records: each to `partition` if given, else by key hash, else round-robin.
    Produce {
        /// Topic.
        topic: String,
        /// Force every record into this partition.
        partition: Option<u32>,
        /// Records, in order.
        records: Vec<NewRecord>,
        /// An idempotent producer's batch (with `partition`): a retry is not stored twice.
        sequence: Option<Sequenced>,
    },
    /// A new idempotent producer id.
    NewProducer,
    /// Read records, waiting up to `max_wait` for the first.
    Fetch {
        /// Topic.
        topic: String,
        /// Where to read in each partition.
        positions: Vec<FetchPosition>,
        /// Most records over all partitions.
        max_records: usize,
        /// About this many bytes at most.
        max_bytes: usize,
        /// Long-poll wait.
        max_wait: Duration,
    },
    /// Per partition, the first offset at or after a time.
    OffsetsForTime {
        /// Topic.
        topic: String,
        /// Milliseconds since the Unix epoch.
        timestamp_ms: u64,
    },
    /// Re-produce a dead-letter topic's records not replayed before (progress kept in the group
    /// `weir.dlq-replay`) to their original topics or `to`, without their `weir-dlq-*`
    /// headers; records and progress commit together, so nothing is replayed twice.
    ReplayDeadLetters {
        /// Dead-letter topic.
        topic: String,
        /// Send everything here instead of each record's original topic.
        to: Option<String>,
    },
    /// Produce a request with a correlation id and a reply-to; wait for its reply.
    Request {
        /// Topic the request goes to.
        topic: String,
        /// The request.
        record: NewRecord,
        /// How long to wait.
        timeout: Duration,
    },
}

/// Consumer-group operations.
#[derive(Debug)]
pub enum GroupCommand {
    /// Store next offsets; with `member`, fenced by its generation.
    Commit {
        /// Group.
        group: String,
        /// Topic.
        topic: String,
        /// `(partition, next offset)`.
        offsets: Vec<(u32, u64)>,
        /// `(member id, generation)`, or `None` for an admin commit (a seek).
        member: Option<(String, u64)>,
    },
    /// Committed next offsets per partition.
    Offsets {
        /// Group.
        group: String,
        /// Topic.
        topic: String,
    },
    /// Every group with committed offsets, with lag.
    List,
    /// Join a group.
    Join {
        /// Group.
        group: String,
        /// Topic.
        topic: String,
        /// Rejoin as this member.
        member: Option<String>,
        /// Dropped after this long without a heartbeat.
        session: Duration,
    },
    /// Stay in a group.
    Heartbeat {
        /// Group.
        group: String,
        /// Topic.
        topic: String,
        /// Member.
        member: String,
    },
    /// Leave a group.
    Leave {
        /// Group.
        group: String,
        /// Topic.
        topic: String,
        /// Member.
        member: String,
    },
    /// Members of every group.
    Describe,
    /// Kafka's classic protocol: join, and wait until the rebalance completes.
    ClassicJoin(JoinRequest),
    /// Kafka's classic protocol: the leader hands over the assignment, the others get theirs.
    ClassicSync {
        /// Group.
        group: String,
        /// Member.
        member: String,
        /// The member's generation.
        generation: i32,
        /// From the leader: `(member, assignment)`.
        assignments: Vec<(String, Bytes)>,
    },
    /// Kafka's classic protocol: stay in the group.
    ClassicHeartbeat {
        /// Group.
        group: String,
        /// Member.
        member: String,
        /// The member's generation.
        generation: i32,
    },
    /// Kafka's classic protocol: members leave.
    ClassicLeave {
        /// Group.
        group: String,
        /// Members.
        members: Vec<String>,
    },
    /// Kafka's classic protocol: store next offsets, fenced by the member's generation
    /// (a negative generation: a commit from outside the group protocol).
    ClassicCommit {
        /// Group.
        group: String,
        /// Topic.
        topic: String,
        /// `(partition, next offset)`.
        offsets: Vec<(u32, u64)>,
        /// Member (empty outside the group protocol).
        member: String,
        /// Its generation.
        generation: i32,
    },
    /// Kafka's classic protocol: the named groups, or all.
    ClassicDescribe {
        /// Groups (`None`: all).
        groups: Option<Vec<String>>,
    },
}

/// Queue operations.
#[derive(Debug)]
pub enum QueueCommand {
    /// Create a queue (and its dead-letter queue if named and missing).
    Create {
        /// Name.
        name: String,
        /// Settings.
        config: QueueConfig,
    },
    /// Delete a queue (refused while a pipeline reads it).
    Delete {
        /// Name.
        name: String,
    },
    /// Remove every message.
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
    /// Enqueue messages in one durable commit.
    Send {
        /// Queue.
        queue: String,
        /// Messages.
        messages: Vec<NewQueueMessage>,
    },
    /// Receive messages, waiting up to `wait` for the first.
    Receive {
        /// Queue.
        queue: String,
        /// Most messages.
        max: usize,
        /// Long-poll wait.
        wait: Duration,
        /// Visibility timeout (default: the queue's).
        visibility_ms: Option<u64>,
    },
    /// Acknowledge deliveries.
    Ack {
        /// Queue.
        queue: String,
        /// Receipts.
        receipts: Vec<String>,
    },
    /// Hand deliveries back.
    Nack {
        /// Queue.
        queue: String,
        /// Receipts.
        receipts: Vec<String>,
        /// Requeue or dead-letter.
        how: Nack,
    },
    /// Extend deliveries' visibility.
    Extend {
        /// Queue.
        queue: String,
        /// Receipts.
        receipts: Vec<String>,
        /// New timeout from now.
        timeout_ms: u64,
    },
}

/// Exchange operations.
#[derive(Debug)]
pub enum ExchangeCommand {
    /// Create an exchange.
    Create {
        /// Name.
        name: String,
        /// Type.
        kind: ExchangeType,
        /// Exchange for unroutable messages.
        alternate: Option<String>,
    },
    /// Delete an exchange.
    Delete {
        /// Name.
        name: String,
    },
    /// Bind a destination.
    Bind {
        /// Exchange.
        exchange: String,
        /// Binding.
        binding: Binding,
    },
    /// Remove bindings to a destination (with `key`, if given).
    Unbind {
        /// Exchange.
        exchange: String,
        /// Destination.
        destination: Destination,
        /// Only the binding with this key.
        key: Option<String>,
    },
    /// Every exchange.
    List,
    /// Route a message through an exchange to every matching destination, in one commit.
    Publish {
        /// Exchange.
        exchange: String,
        /// Routing key.
        routing_key: String,
        /// The message (its key partitions topic destinations).
        record: NewRecord,
    },
}

/// Plugin operations.
#[derive(Debug)]
pub enum PluginCommand {
    /// Deploy a new version, live or as the shadow.
    Deploy {
        /// Name.
        name: String,
        /// The component.
        wasm: Vec<u8>,
        /// Limits and grants.
        sandbox: Sandbox,
        /// Run beside the live version instead of replacing it.
        shadow: bool,
        /// Take the component from this completed upload of `name` (`wasm` is empty).
        upload: Option<u64>,
    },
    /// Stage one part of a component too large for one request.
    UploadPart {
        /// Name.
        name: String,
        /// The upload's id, chosen by its client.
        upload: u64,
        /// Where the part starts.
        offset: u64,
        /// The component's size.
        total: u64,
        /// The part.
        bytes: Vec<u8>,
    },
    /// Every plugin.
    List,
    /// Every version of one plugin.
    Versions {
        /// Name.
        name: String,
    },
    /// One version: `NAME` (live) or `NAME@V`.
    Describe {
        /// Reference.
        reference: String,
    },
    /// Delete every version of a plugin no pipeline uses.
    Remove {
        /// Name.
        name: String,
    },
    /// Make an earlier version live again.
    Rollback {
        /// Name.
        name: String,
        /// Version (default: the one before the live one).
        to: Option<u32>,
    },
    /// Make the shadow version live.
    Promote {
        /// Name.
        name: String,
    },
    /// How the shadow compares with the live version.
    Diff {
        /// Name.
        name: String,
    },
}

/// Pipeline operations.
#[derive(Debug)]
pub enum PipelineCommand {
    /// Create a pipeline; it acts with the caller's grants.
    Create {
        /// Spec.
        spec: PipelineSpec,
    },
    /// Create or bring to `spec`; it then acts with the caller's grants.
    Apply {
        /// Spec.
        spec: PipelineSpec,
    },
    /// Every pipeline.
    List,
    /// One pipeline.
    Status {
        /// Name.
        name: String,
    },
    /// Stop and delete a pipeline and its state.
    Delete {
        /// Name.
        name: String,
    },
    /// Stop after in-flight batches.
    Pause {
        /// Name.
        name: String,
    },
    /// Continue a paused or halted pipeline.
    Resume {
        /// Name.
        name: String,
    },
    /// Move the source offsets for replay.
    Reset {
        /// Name.
        name: String,
        /// Where to.
        to: ResetTarget,
        /// Also delete the pipeline's state.
        reset_state: bool,
    },
}

/// Schema registry operations (Confluent's API, one command per request).
#[derive(Debug)]
pub enum SchemaCommand {
    /// Register a schema under a subject.
    Register {
        /// Subject.
        subject: String,
        /// The schema (and, in IMPORT mode, its id and version).
        registration: Registration,
    },
    /// Find a schema's registration under a subject.
    Lookup {
        /// Subject.
        subject: String,
        /// The schema.
        schema: SchemaText,
        /// Also soft-deleted versions.
        deleted: bool,
    },
    /// Subjects.
    Subjects {
        /// Also soft-deleted ones.
        deleted: bool,
        /// Only those starting with this.
        prefix: Option<String>,
    },
    /// A subject's versions.
    Versions {
        /// Subject.
        subject: String,
        /// Also soft-deleted ones.
        deleted: bool,
    },
    /// One version of a subject.
    Version {
        /// Subject.
        subject: String,
        /// Which.
        version: VersionSpec,
        /// Soft-deleted ones may be named.
        deleted: bool,
    },
    /// Ids of schemas referencing a version.
    ReferencedBy {
        /// Subject.
        subject: String,
        /// Which.
        version: VersionSpec,
    },
    /// A schema by id (`subject`: the caller reads it as registered there).
    ById {
        /// Id.
        id: u32,
        /// The subject the caller names.
        subject: Option<String>,
    },
    /// Where schema `id` is registered: `(subject, version)`.
    Registrations {
        /// Id.
        id: u32,
        /// Also soft-deleted versions.
        deleted: bool,
    },
    /// Whether a schema may follow a version (or every version for transitive levels).
    Check {
        /// Subject.
        subject: String,
        /// Which (`latest`: only the newest).
        version: VersionSpec,
        /// The schema.
        schema: SchemaText,
        /// Against every version the subject's level reaches (the route without a version).
        every: bool,
    },
    /// Delete a version.
    DeleteVersion {
        /// Subject.
        subject: String,
        /// Which.
        version: VersionSpec,
        /// After a soft delete, for good.
        permanent: bool,
    },
    /// Delete a subject.
    DeleteSubject {
        /// Subject.
        subject: String,
        /// After a soft delete, for good.
        permanent: bool,
    },
    /// A compatibility level (`None`: global).
    GetConfig {
        /// Subject.
        subject: Option<String>,
        /// A subject without its own level answers the global one.
        fallback: bool,
    },
    /// Set a compatibility level.
    SetConfig {
        /// Subject (`None`: global).
        subject: Option<String>,
        /// Level.
        level: Compatibility,
    },
    /// Remove a subject's level (or reset the global one).
    DeleteConfig {
        /// Subject.
        subject: Option<String>,
    },
    /// A mode.
    GetMode {
        /// Subject (`None`: global).
        subject: Option<String>,
        /// A subject without its own mode answers the global one.
        fallback: bool,
    },
    /// Set a mode.
    SetMode {
        /// Subject (`None`: global).
        subject: Option<String>,
        /// Mode.
        mode: Mode,
        /// IMPORT even while schemas exist.
        force: bool,
    },
    /// Remove a subject's mode.
    DeleteMode {
        /// Subject.
        subject: String,
    },
}

impl SchemaCommand {
    /// The subject the command is about, if one.
    pub fn subject(&self) -> Option<&str> {
        use SchemaCommand as S;
        match self {
            S::Register { subject, .. }
            | S::Lookup { subject, .. }
            | S::Versions { subject, .. }
            | S::Version { subject, .. }
            | S::ReferencedBy { subject, .. }
            | S::Check { subject, .. }
            | S::DeleteVersion { subject, .. }
            | S::DeleteSubject { subject, .. }
            | S::DeleteMode { subject } => Some(subject),
            S::ById { subject, .. }
            | S::GetConfig { subject, .. }
            | S::SetConfig { subject, .. }
            | S::DeleteConfig { subject }
            | S::GetMode { subject, .. }
            | S::SetMode { subject, .. } => subject.as_deref(),
            S::Subjects { .. } | S::Registrations { .. } => None,
        }
    }
}

/// A schema registry answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaReply {
    /// A registration.
    Registered(Registered),
    /// A schema.
    Schema(SchemaText),
    /// Subjects.
    Subjects(Vec<String>),
    /// Version numbers or ids.
    Numbers(Vec<u32>),
    /// `(subject, version)` pairs.
    Registrations(Vec<(String, u32)>),
    /// Why a schema may not follow (empty: it may).
    Reasons(Vec<String>),
    /// A compatibility level.
    Compatibility(Compatibility),
    /// A mode.
    Mode(Mode),
}

/// Step state operations.
#[derive(Debug)]
pub enum StateCommand {
    /// A key's value in every partition.
    Get {
        /// Pipeline.
        pipeline: String,
        /// Step, from 1.
        step: usize,
        /// Key.
        key: Vec<u8>,
    },
    /// Entries under a key prefix.
    List {
        /// Pipeline.
        pipeline: String,
        /// Step, from 1.
        step: usize,
        /// Prefix.
        prefix: Vec<u8>,
        /// Most entries.
        limit: usize,
    },
    /// Delete a key in every partition.
    Delete {
        /// Pipeline.
        pipeline: String,
        /// Step, from 1.
        step: usize,
        /// Key.
        key: Vec<u8>,
    },
}

impl Command {
    /// The command's name, `area.operation` (a metrics label).
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Topic(c) => match c {
                TopicCommand::Create { .. } => "topic.create",
                TopicCommand::Delete { .. } => "topic.delete",
                TopicCommand::List => "topic.list",
                TopicCommand::Describe { .. } => "topic.describe",
                TopicCommand::Produce { .. } => "topic.produce",
                TopicCommand::NewProducer => "topic.new_producer",
                TopicCommand::Fetch { .. } => "topic.fetch",
                TopicCommand::OffsetsForTime { .. } => "topic.offsets_for_time",
                TopicCommand::Request { .. } => "topic.request",
                TopicCommand::ReplayDeadLetters { .. } => "topic.replay_dead_letters",
            },
            Command::Group(c) => match c {
                GroupCommand::Commit { .. } | GroupCommand::ClassicCommit { .. } => "group.commit",
                GroupCommand::Offsets { .. } => "group.offsets",
                GroupCommand::List | GroupCommand::Describe | GroupCommand::ClassicDescribe { .. } => "group.describe",
                GroupCommand::Join { .. } | GroupCommand::ClassicJoin(_) => "group.join",
                GroupCommand::ClassicSync { .. } => "group.sync",
                GroupCommand::Heartbeat { .. } | GroupCommand::ClassicHeartbeat { .. } => "group.heartbeat",
                GroupCommand::Leave { .. } | GroupCommand::ClassicLeave { .. } => "group.leave",
            },
            Command::Queue(c) => match c {
                QueueCommand::Send { .. } => "queue.send",
                QueueCommand::Receive { .. } => "queue.receive",
                QueueCommand::Ack { .. } => "queue.ack",
                QueueCommand::Nack { .. } => "queue.nack",
                QueueCommand::Extend { .. } => "queue.extend",
                QueueCommand::List | QueueCommand::Describe { .. } => "queue.describe",
                QueueCommand::Create { .. } | QueueCommand::Delete { .. } | QueueCommand::Purge { .. } => "queue.admin",
            },
            Command::Exchange(c) => match c {
                ExchangeCommand::Publish { .. } => "exchange.publish",
                ExchangeCommand::List => "exchange.describe",
                _ => "exchange.admin",
            },
            Command::Plugin(c) => match c {
                PluginCommand::Deploy { .. } | PluginCommand::UploadPart { .. } => "plugin.deploy",
                PluginCommand::List
                | PluginCommand::Versions { .. }
                | PluginCommand::Describe { .. }
                | PluginCommand::Diff { .. } => "plugin.describe",
                _ => "plugin.admin",
            },
            Command::Pipeline(c) => match c {
                PipelineCommand::List | PipelineCommand::Status { .. } => "pipeline.describe",
                _ => "pipeline.admin",
            },
            Command::State(c) => match c {
                StateCommand::Delete { .. } => "state.delete",
                _ => "state.read",
            },
            Command::Schema(c) => match c {
                SchemaCommand::Register { .. } => "schema.register",
                SchemaCommand::DeleteVersion { .. } | SchemaCommand::DeleteSubject { .. } => "schema.delete",
                SchemaCommand::SetConfig { .. }
                | SchemaCommand::DeleteConfig { .. }
                | SchemaCommand::SetMode { .. }
                | SchemaCommand::DeleteMode { .. } => "schema.config",
                _ => "schema.read",
            },
            Command::ClusterStatus => "cluster.status",
        }
    }

    /// Whether the command writes data (records, offsets, queue messages and their states).
    pub fn writes(&self) -> bool {
        match self {
            Command::Topic(c) => matches!(c, TopicCommand::Produce { .. } | TopicCommand::Request { .. }),
            Command::Group(c) => matches!(c, GroupCommand::Commit { .. } | GroupCommand::ClassicCommit { .. }),
            Command::Queue(c) => !matches!(c, QueueCommand::List | QueueCommand::Describe { .. }),
            Command::Exchange(c) => matches!(c, ExchangeCommand::Publish { .. }),
            _ => false,
        }
    }

    /// Whether the command reads metadata an area keeps in memory (exchanges, plugins,
    /// pipelines, queues): in a cluster, the changes other nodes made before it arrived are
    /// taken in first. Produces, fetches and group offsets look topics up in the store itself.
    pub fn reads_metadata(&self) -> bool {
        !matches!(
            self,
            Command::Topic(
                TopicCommand::Produce { .. }
                    | TopicCommand::Fetch { .. }
                    | TopicCommand::NewProducer
                    | TopicCommand::OffsetsForTime { .. }
                    | TopicCommand::Request { .. }
            ) | Command::Group(_)
                | Command::ClusterStatus
        )
    }

    /// Whether the command changes configuration in several steps (awaits between them), so
    /// a connection must finish it before it starts the next request: a produce sent after a
    /// topic's creation must find the topic. Data-path writes instead submit their write when
    /// they start, and only wait concurrently.
    pub fn is_configuration(&self) -> bool {
        match self {
            Command::Topic(c) => matches!(c, TopicCommand::Create { .. } | TopicCommand::Delete { .. }),
            Command::Group(_) => false,
            Command::Queue(c) => {
                matches!(c, QueueCommand::Create { .. } | QueueCommand::Delete { .. } | QueueCommand::Purge { .. })
            }
            Command::Exchange(c) => !matches!(c, ExchangeCommand::Publish { .. } | ExchangeCommand::List),
            Command::Plugin(c) => matches!(
                c,
                PluginCommand::Deploy { .. }
                    | PluginCommand::Remove { .. }
                    | PluginCommand::Rollback { .. }
                    | PluginCommand::Promote { .. }
            ),
            Command::Pipeline(c) => !matches!(c, PipelineCommand::List | PipelineCommand::Status { .. }),
            Command::State(c) => matches!(c, StateCommand::Delete { .. }),
            Command::Schema(c) => matches!(
                c,
                SchemaCommand::Register { .. }
                    | SchemaCommand::DeleteVersion { .. }
                    | SchemaCommand::DeleteSubject { .. }
                    | SchemaCommand::SetConfig { .. }
                    | SchemaCommand::DeleteConfig { .. }
                    | SchemaCommand::SetMode { .. }
                    | SchemaCommand::DeleteMode { .. }
            ),
            Command::ClusterStatus => false,
        }
    }
}

/// Where to read in one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPosition {
    /// Partition.
    pub partition: u32,
    /// First offset wanted.
    pub offset: u64,
}

/// Records read from one partition.
#[derive(Debug, Clone)]
pub struct FetchedPartition {
    /// Partition.
    pub partition: u32,
    /// Offset of the first record (past the asked offset if retention removed it).
    pub first_offset: u64,
    /// One past the last readable offset at the time of the read.
    pub high_watermark: u64,
    /// Records from `first_offset` on, each with its offset.
    pub records: Vec<StoredRecord>,
}

/// A topic and where each partition stands.
#[derive(Debug, Clone)]
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
#[derive(Debug, Clone)]
pub struct GroupLag {
    /// Group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// `(partition, committed next offset, high watermark)`.
    pub partitions: Vec<(u32, Option<u64>, u64)>,
}

/// A plugin with its live and shadow versions and users.
#[derive(Debug, Clone)]
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

/// What a command produced.
#[derive(Debug)]
pub enum Reply {
    /// Done; nothing to report.
    Done,
    /// One topic.
    Topic(TopicInfo),
    /// Several topics.
    Topics(Vec<TopicInfo>),
    /// `(partition, offset)` of each produced record, in request order.
    Produced(Vec<(u32, u64)>),
    /// Records read.
    Fetched(Vec<FetchedPartition>),
    /// Per partition: an offset, or none.
    Offsets(Vec<Option<u64>>),
    /// The reply to a request.
    Reply(StoredRecord),
    /// Consumer groups with lag.
    Groups(Vec<GroupLag>),
    /// A member's assignment.
    Membership(Membership),
    /// Group members.
    GroupMembers(Vec<GroupMembers>),
    /// One queue.
    Queue(QueueInfo),
    /// Several queues.
    Queues(Vec<QueueInfo>),
    /// Per message sent: enqueued (`false`: a dedup repeat).
    Sent(Vec<bool>),
    /// Received messages.
    Deliveries(Vec<Delivery>),
    /// How many things were affected.
    Count(u64),
    /// One exchange.
    Exchange(ExchangeInfo),
    /// Several exchanges.
    Exchanges(Vec<ExchangeInfo>),
    /// Where a published message went.
    Published(Vec<Destination>),
    /// One plugin version.
    Plugin(PluginInfo),
    /// Plugins.
    Plugins(Vec<PluginEntry>),
    /// Versions of one plugin.
    PluginVersions(Vec<PluginInfo>),
    /// A shadow comparison.
    ShadowDiff(ShadowReport),
    /// One pipeline.
    Pipeline(PipelineStatus),
    /// Several pipelines.
    Pipelines(Vec<PipelineStatus>),
    /// What an apply did.
    Applied(PipelineStatus, ApplyChange),
    /// State entries.
    State(Vec<StateEntry>),
    /// A completed Kafka group rebalance, as one member sees it.
    Joined(Joined),
    /// A Kafka group member's assignment.
    Assignment(Bytes),
    /// Kafka classic groups.
    ClassicGroups(Vec<ClassicGroupInfo>),
    /// A new idempotent producer id.
    Producer(i64),
    /// The schema registry's answer.
    Schema(SchemaReply),
    /// Cluster mode's view.
    ClusterStatus(crate::cluster::ClusterStatus),
}
