//! Requests, responses and the records inside them.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::WireError;
use super::types::*;

/// A request with the id its response will carry.
#[derive(Debug, Serialize, Deserialize)]
pub struct RequestFrame {
    /// Chosen by the client; unique among its in-flight requests.
    pub id: u64,
    /// What to do.
    pub request: Request,
}

/// A response to the request with the same id.
#[derive(Debug, Serialize, Deserialize)]
pub struct ResponseFrame {
    /// The request's id (0 for a connection-level error).
    pub id: u64,
    /// The outcome.
    pub result: Result<Response, WireError>,
}

/// Everything a client can ask.
#[derive(Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Request {
    /// First request on every connection.
    Hello {
        /// [`super::PROTOCOL_VERSION`] of the client.
        version: u32,
        /// Free text naming the client, for logs.
        client: String,
        /// The client's token, when the server requires one.
        #[serde(default)]
        token: Option<String>,
    },
    /// Create a topic.
    CreateTopic {
        /// Name.
        name: String,
        /// Settings.
        config: TopicConfig,
    },
    /// Delete a topic and its records.
    DeleteTopic {
        /// Name.
        name: String,
    },
    /// All topics.
    ListTopics,
    /// One topic with partition offsets.
    DescribeTopic {
        /// Name.
        name: String,
    },
    /// Append records. Each goes to `partition` if given, else by key hash, else round-robin.
    Produce {
        /// Destination topic.
        topic: String,
        /// Force every record into this partition.
        #[serde(default)]
        partition: Option<u32>,
        /// Records, in order.
        records: Vec<WireRecord>,
    },
    /// Read records; waits up to `max_wait_ms` for at least one record.
    Fetch {
        /// Topic.
        topic: String,
        /// Where to read in each partition.
        partitions: Vec<FetchPosition>,
        /// Most records in the response, over all partitions.
        max_records: u32,
        /// About this many bytes at most.
        max_bytes: u32,
        /// Long-poll: how long to wait when nothing is there yet.
        max_wait_ms: u64,
    },
    /// Store a group's next offsets in a topic.
    CommitOffsets {
        /// Group.
        group: String,
        /// Topic.
        topic: String,
        /// `(partition, next offset)` pairs.
        offsets: Vec<(u32, u64)>,
        /// `(member id, generation)` of a group member: the commit is refused if the group
        /// rebalanced since. `None` for admin commits (seek).
        #[serde(default)]
        member: Option<(String, u64)>,
    },
    /// A group's committed next offset per partition.
    FetchOffsets {
        /// Group.
        group: String,
        /// Topic.
        topic: String,
    },
    /// Per partition, the first offset at or after a time.
    OffsetsForTime {
        /// Topic.
        topic: String,
        /// Milliseconds since the Unix epoch.
        timestamp_ms: u64,
    },
    /// Every consumer group with committed offsets, with lag.
    ListGroups,
    /// Deploy a new version of a plugin: checked against every pipeline following it, then
    /// hot-swapped in (or run as the shadow).
    DeployPlugin {
        /// Plugin name.
        name: String,
        /// The component's bytes.
        wasm: ByteBuf,
        /// Limits and grants; default: the safe defaults.
        #[serde(default)]
        sandbox: Option<Sandbox>,
        /// Run beside the live version without emitting, instead of replacing it.
        #[serde(default)]
        shadow: bool,
        /// Deploy the component uploaded in parts ([`Request::UploadPluginPart`]) under this
        /// name with this upload id; `wasm` is then empty.
        #[serde(default)]
        upload: Option<u64>,
    },
    /// One part of a component too large for a frame, staged until a `DeployPlugin` with
    /// its `upload`. Parts come in order; offset 0 starts the upload afresh.
    UploadPluginPart {
        /// Plugin name.
        name: String,
        /// An id the client chose for this upload (random): parts and the deploy name it, so
        /// two uploads of one plugin at once stay apart.
        upload: u64,
        /// Where this part starts in the component.
        offset: u64,
        /// The component's whole size.
        total: u64,
        /// The part's bytes.
        bytes: ByteBuf,
    },
    /// Every plugin: live and shadow versions, and who uses it.
    ListPlugins,
    /// Every version of one plugin.
    PluginVersions {
        /// Plugin name.
        name: String,
    },
    /// One version: `NAME` (live) or `NAME@V`.
    DescribePlugin {
        /// Reference.
        reference: String,
    },
    /// Delete every version of a plugin no pipeline uses.
    RemovePlugin {
        /// Plugin name.
        name: String,
    },
    /// Make an earlier version live again (default: the one before the live one).
    RollbackPlugin {
        /// Plugin name.
        name: String,
        /// Version to go back to.
        #[serde(default)]
        to: Option<u32>,
    },
    /// Make the shadow version live.
    PromotePlugin {
        /// Plugin name.
        name: String,
    },
    /// How the shadow's outcomes compare with the live version's.
    PluginDiff {
        /// Plugin name.
        name: String,
    },
    /// Create a pipeline.
    CreatePipeline {
        /// What it reads, runs and writes.
        spec: PipelineSpec,
    },
    /// All pipelines.
    ListPipelines,
    /// One pipeline's status.
    PipelineStatus {
        /// Name.
        name: String,
    },
    /// Stop and delete a pipeline and its state.
    DeletePipeline {
        /// Name.
        name: String,
    },
    /// Create a queue (and its dead-letter queue if named and missing).
    CreateQueue {
        /// Name.
        name: String,
        /// Settings.
        config: QueueConfig,
    },
    /// Delete a queue and its messages.
    DeleteQueue {
        /// Name.
        name: String,
    },
    /// Remove every message of a queue.
    PurgeQueue {
        /// Name.
        name: String,
    },
    /// Every queue with counts.
    ListQueues,
    /// One queue with counts.
    DescribeQueue {
        /// Name.
        name: String,
    },
    /// Enqueue messages (one durable commit for all of them).
    QueueSend {
        /// Queue.
        queue: String,
        /// Messages.
        messages: Vec<NewQueueMessage>,
    },
    /// Receive messages; waits up to `wait_ms` for the first.
    QueueReceive {
        /// Queue.
        queue: String,
        /// Most messages.
        max: usize,
        /// Long-poll wait.
        wait_ms: u64,
        /// Visibility timeout for these deliveries (default: the queue's).
        #[serde(default)]
        visibility_ms: Option<u64>,
    },
    /// Acknowledge deliveries.
    QueueAck {
        /// Queue.
        queue: String,
        /// Receipts.
        receipts: Vec<String>,
    },
    /// Hand deliveries back.
    QueueNack {
        /// Queue.
        queue: String,
        /// Receipts.
        receipts: Vec<String>,
        /// Requeue or dead-letter.
        how: Nack,
    },
    /// Extend deliveries' visibility.
    QueueExtend {
        /// Queue.
        queue: String,
        /// Receipts.
        receipts: Vec<String>,
        /// New timeout from now.
        timeout_ms: u64,
    },
    /// Join a consumer group reading a topic.
    JoinGroup {
        /// Group.
        group: String,
        /// Topic.
        topic: String,
        /// Rejoin as this member (default: a new id).
        #[serde(default)]
        member: Option<String>,
        /// Dropped after this long without a heartbeat.
        session_timeout_ms: u64,
    },
    /// Stay in the group; learn the current assignment.
    Heartbeat {
        /// Group.
        group: String,
        /// Topic.
        topic: String,
        /// Member.
        member: String,
    },
    /// Leave the group now.
    LeaveGroup {
        /// Group.
        group: String,
        /// Topic.
        topic: String,
        /// Member.
        member: String,
    },
    /// Members of every group.
    DescribeGroups,
    /// Create an exchange.
    CreateExchange {
        /// Name.
        name: String,
        /// Type.
        kind: ExchangeType,
        /// Exchange for unroutable messages.
        #[serde(default)]
        alternate: Option<String>,
    },
    /// Delete an exchange.
    DeleteExchange {
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
    /// Remove bindings to a destination.
    Unbind {
        /// Exchange.
        exchange: String,
        /// Destination.
        destination: Destination,
        /// Only the binding with this key.
        #[serde(default)]
        key: Option<String>,
    },
    /// Every exchange.
    ListExchanges,
    /// Publish through an exchange.
    Publish {
        /// Exchange.
        exchange: String,
        /// Routing key.
        routing_key: String,
        /// Message key (topic partitioning).
        #[serde(default)]
        key: Option<ByteBuf>,
        /// Payload.
        value: ByteBuf,
        /// Headers.
        #[serde(default)]
        headers: Vec<(String, String)>,
    },
    /// Produce a request with a correlation id and a reply-to, and wait for the reply.
    Request {
        /// Topic the request goes to.
        topic: String,
        /// Message key.
        #[serde(default)]
        key: Option<ByteBuf>,
        /// Payload.
        value: ByteBuf,
        /// Headers.
        #[serde(default)]
        headers: Vec<(String, String)>,
        /// How long to wait.
        timeout_ms: u64,
    },
    /// Create a pipeline or bring it to this spec (swap versions or restart as needed).
    ApplyPipeline {
        /// The desired spec.
        spec: PipelineSpec,
    },
    /// Stop processing after in-flight batches.
    PausePipeline {
        /// Name.
        name: String,
    },
    /// Continue a paused or halted pipeline.
    ResumePipeline {
        /// Name.
        name: String,
    },
    /// Move the source offsets for replay.
    ResetPipeline {
        /// Name.
        name: String,
        /// Where to.
        to: ResetTarget,
        /// Also delete all of the pipeline's state.
        reset_state: bool,
    },
    /// A step's state under one key, per partition.
    StateGet {
        /// Pipeline.
        pipeline: String,
        /// Step, from 1.
        step: usize,
        /// Key.
        key: ByteBuf,
    },
    /// A step's state entries under a key prefix.
    StateList {
        /// Pipeline.
        pipeline: String,
        /// Step, from 1.
        step: usize,
        /// Key prefix (empty: all).
        prefix: ByteBuf,
        /// Most entries.
        limit: usize,
    },
    /// Delete a key from a step's state in every partition.
    StateDelete {
        /// Pipeline.
        pipeline: String,
        /// Step, from 1.
        step: usize,
        /// Key.
        key: ByteBuf,
    },
    /// Re-produce a dead-letter topic's records not replayed before to their original topics
    /// (or `to`), without their `weir-dlq-*` headers. Answered with `Count`.
    ReplayDeadLetters {
        /// Dead-letter topic.
        topic: String,
        /// Send everything here instead.
        to: Option<String>,
    },
    /// Cluster mode: nodes, partition owners, NATS health.
    ClusterStatus,
}

/// Everything the server answers.
#[derive(Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Response {
    /// Answer to `Hello`.
    Hello {
        /// Protocol version of the server.
        version: u32,
        /// Server software and version.
        server: String,
    },
    /// Done; nothing to report.
    Ok,
    /// One topic.
    Topic(TopicInfo),
    /// Several topics.
    Topics(Vec<TopicInfo>),
    /// Where each produced record went: `(partition, offset)` in request order.
    Produced {
        /// One per record.
        positions: Vec<(u32, u64)>,
    },
    /// Records read.
    Fetched {
        /// Per partition asked for that had records or moved.
        partitions: Vec<FetchedPartition>,
    },
    /// Per partition: an offset, or none.
    Offsets(Vec<Option<u64>>),
    /// Consumer groups.
    Groups(Vec<GroupInfo>),
    /// One plugin version.
    Plugin(PluginInfo),
    /// Plugins with their live and shadow versions.
    Plugins(Vec<PluginEntry>),
    /// Versions of one plugin, oldest first.
    PluginVersions(Vec<PluginInfo>),
    /// A shadow comparison.
    ShadowDiff(ShadowReport),
    /// One pipeline.
    Pipeline(PipelineStatus),
    /// Several pipelines.
    Pipelines(Vec<PipelineStatus>),
    /// What an apply did.
    Applied {
        /// The pipeline now.
        status: PipelineStatus,
        /// What changed.
        change: ApplyChange,
    },
    /// State entries.
    State(Vec<StateEntry>),
    /// How many things a request affected.
    Count(u64),
    /// One queue.
    Queue(QueueInfo),
    /// Several queues.
    Queues(Vec<QueueInfo>),
    /// Per message sent: enqueued (`false`: a dedup repeat, accepted but not enqueued).
    Sent(Vec<bool>),
    /// Received messages.
    Deliveries(Vec<Delivery>),
    /// A member's assignment.
    Membership(Membership),
    /// Group members.
    GroupMembers(Vec<GroupMembers>),
    /// One exchange.
    Exchange(ExchangeInfo),
    /// Several exchanges.
    Exchanges(Vec<ExchangeInfo>),
    /// Where a published message went.
    Published(Vec<String>),
    /// The reply to a request.
    Reply(FetchedRecord),
    /// Cluster mode's view.
    ClusterStatus(ClusterStatus),
}
