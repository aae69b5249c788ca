//! Why a broker command failed: the typed errors of every area, and the one mapping from
//! each to an [`ErrorKind`] that a front door turns into its protocol's code (the native
//! protocol's numbers, Kafka's error codes, HTTP statuses).

use super::producers::SequenceError;
use crate::auth::AuthError;
use crate::exchange::ExchangeError;
use crate::groups::GroupError;
use crate::pipeline::PipelineError;
use crate::queue::QueueError;
use crate::registry::RegistryError;
use crate::runtime::PluginError;
use crate::schemas::SchemaError;
use crate::storage::StoreError;

/// What kind of failure, independent of any protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A bug or an unexpected condition on the server.
    Internal,
    /// An argument is invalid; the message names it.
    InvalidArgument,
    /// The topic does not exist.
    UnknownTopic,
    /// The topic exists already.
    TopicExists,
    /// A message is larger than allowed.
    MessageTooLarge,
    /// The plugin (or version) does not exist.
    UnknownPlugin,
    /// The component is not a valid weir plugin.
    InvalidPlugin,
    /// The pipeline does not exist.
    UnknownPipeline,
    /// The pipeline exists already.
    PipelineExists,
    /// Storage failed; the message says what to do.
    Storage,
    /// The server is shutting down.
    ShuttingDown,
    /// A limit was hit; retry later.
    Busy,
    /// A plugin's `init` refused its config.
    PluginInit,
    /// The resource is in use.
    InUse,
    /// No valid token.
    Unauthenticated,
    /// The token may not do this.
    Forbidden,
    /// A wait timed out.
    Timeout,
    /// The named member or entity does not exist.
    NotFound,
    /// The entity exists already.
    AlreadyExists,
    /// The queue does not exist.
    UnknownQueue,
    /// The exchange does not exist.
    UnknownExchange,
    /// Nothing matched and there is no alternate exchange.
    Unroutable,
    /// The consumer group rebalanced.
    Rebalanced,
    /// The receipt no longer names a current delivery.
    StaleReceipt,
    /// The queue is full.
    QueueFull,
    /// The group is rebalancing; the member must join again.
    RebalanceInProgress,
    /// Group members disagree on the protocol.
    InconsistentProtocol,
    /// An idempotent producer was fenced by a newer epoch.
    ProducerFenced,
    /// An idempotent producer's batch skipped or repeated out of order.
    OutOfOrderSequence,
    /// An idempotent producer's batch was stored before (not stored twice).
    DuplicateSequence,
    /// A record the topic's checks refuse (its schema); the message names the record and why.
    InvalidRecord,
    /// Free disk space is below the server's floor; writes resume by themselves when it returns.
    DiskFull,
}

impl ErrorKind {
    /// Every kind.
    const ALL: [ErrorKind; 32] = [
        ErrorKind::Internal,
        ErrorKind::InvalidArgument,
        ErrorKind::UnknownTopic,
        ErrorKind::TopicExists,
        ErrorKind::MessageTooLarge,
        ErrorKind::UnknownPlugin,
        ErrorKind::InvalidPlugin,
        ErrorKind::UnknownPipeline,
        ErrorKind::PipelineExists,
        ErrorKind::Storage,
        ErrorKind::ShuttingDown,
        ErrorKind::Busy,
        ErrorKind::PluginInit,
        ErrorKind::InUse,
        ErrorKind::Unauthenticated,
        ErrorKind::Forbidden,
        ErrorKind::Timeout,
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::UnknownQueue,
        ErrorKind::UnknownExchange,
        ErrorKind::Unroutable,
        ErrorKind::Rebalanced,
        ErrorKind::StaleReceipt,
        ErrorKind::QueueFull,
        ErrorKind::RebalanceInProgress,
        ErrorKind::InconsistentProtocol,
        ErrorKind::ProducerFenced,
        ErrorKind::OutOfOrderSequence,
        ErrorKind::DuplicateSequence,
        ErrorKind::InvalidRecord,
        ErrorKind::DiskFull,
    ];

    /// The kind's name (as it crosses the cluster's wire).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Internal => "Internal",
            ErrorKind::InvalidArgument => "InvalidArgument",
            ErrorKind::UnknownTopic => "UnknownTopic",
            ErrorKind::TopicExists => "TopicExists",
            ErrorKind::MessageTooLarge => "MessageTooLarge",
            ErrorKind::UnknownPlugin => "UnknownPlugin",
            ErrorKind::InvalidPlugin => "InvalidPlugin",
            ErrorKind::UnknownPipeline => "UnknownPipeline",
            ErrorKind::PipelineExists => "PipelineExists",
            ErrorKind::Storage => "Storage",
            ErrorKind::ShuttingDown => "ShuttingDown",
            ErrorKind::Busy => "Busy",
            ErrorKind::PluginInit => "PluginInit",
            ErrorKind::InUse => "InUse",
            ErrorKind::Unauthenticated => "Unauthenticated",
            ErrorKind::Forbidden => "Forbidden",
            ErrorKind::Timeout => "Timeout",
            ErrorKind::NotFound => "NotFound",
            ErrorKind::AlreadyExists => "AlreadyExists",
            ErrorKind::UnknownQueue => "UnknownQueue",
            ErrorKind::UnknownExchange => "UnknownExchange",
            ErrorKind::Unroutable => "Unroutable",
            ErrorKind::Rebalanced => "Rebalanced",
            ErrorKind::StaleReceipt => "StaleReceipt",
            ErrorKind::QueueFull => "QueueFull",
            ErrorKind::RebalanceInProgress => "RebalanceInProgress",
            ErrorKind::InconsistentProtocol => "InconsistentProtocol",
            ErrorKind::ProducerFenced => "ProducerFenced",
            ErrorKind::OutOfOrderSequence => "OutOfOrderSequence",
            ErrorKind::DuplicateSequence => "DuplicateSequence",
            ErrorKind::InvalidRecord => "InvalidRecord",
            ErrorKind::DiskFull => "DiskFull",
        }
    }

    /// The kind named `name` ([`ErrorKind::Internal`] for a name this build does not know).
    pub fn from_name(name: &str) -> ErrorKind {
        ErrorKind::ALL.into_iter().find(|k| k.name() == name).unwrap_or(ErrorKind::Internal)
    }
}

/// Why a command failed. The message says what went wrong, with what, and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// Storage.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Queues.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// Group membership.
    #[error(transparent)]
    Group(#[from] GroupError),
    /// Exchanges.
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    /// The plugin registry.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Pipelines.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// Tokens and grants.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// An idempotent producer's batch out of sequence.
    #[error(transparent)]
    Sequence(#[from] SequenceError),
    /// A version that does not start in a pipeline following the plugin; nothing changed.
    #[error("{candidate} refused{keeps}: {why}")]
    Refused {
        /// `name@version` refused.
        candidate: String,
        /// "; name@v keeps running", or nothing.
        keeps: String,
        /// Which pipeline and step, and why.
        why: String,
    },
    /// The resource is used by pipelines; the text names them.
    #[error("{0}")]
    InUse(String),
    /// A pipeline's declared schemas do not fit each other; the text names the step, the
    /// field and the rule.
    #[error("{0}")]
    Incompatible(String),
    /// A request argument is out of range or inconsistent; the text names it.
    #[error("{0}")]
    BadRequest(String),
    /// Too many of something at once; retry later.
    #[error("{0}")]
    Busy(String),
    /// No reply in time.
    #[error("{0}")]
    Timeout(String),
    /// A task of the broker failed (a bug).
    #[error("{0}")]
    Internal(String),
    /// Cluster mode: JetStream refused or did not answer.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// Cluster mode: the node that ran the command refused it, for this reason.
    #[error("{message}")]
    Remote {
        /// The kind of failure there.
        kind: ErrorKind,
        /// Its text.
        message: String,
    },
    /// A produced record failed the topic's schema check: nothing of the request was stored.
    #[error("record {index} of the produce to topic `{topic}` refused: {reason}; nothing of this request was stored")]
    InvalidRecord {
        /// Topic.
        topic: String,
        /// The record's position in the request (from 0).
        index: usize,
        /// Why.
        reason: String,
    },
    /// The schema registry refused it (with Confluent's error code).
    #[error(transparent)]
    Schema(#[from] SchemaError),
}

impl BrokerError {
    /// The kind of failure: the one place every error gets its code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            BrokerError::Store(e) => store_kind(e),
            BrokerError::Queue(e) => queue_kind(e),
            BrokerError::Group(e) => match e {
                GroupError::StaleGeneration { .. } => ErrorKind::Rebalanced,
                GroupError::UnknownMember { .. } => ErrorKind::NotFound,
                GroupError::Full(_) => ErrorKind::Busy,
                GroupError::RebalanceInProgress(_) => ErrorKind::RebalanceInProgress,
                GroupError::InconsistentProtocol(_) => ErrorKind::InconsistentProtocol,
            },
            BrokerError::Exchange(e) => match e {
                ExchangeError::Unknown(_) => ErrorKind::UnknownExchange,
                ExchangeError::Exists(_) => ErrorKind::AlreadyExists,
                ExchangeError::Unroutable { .. } => ErrorKind::Unroutable,
                ExchangeError::NoBinding { .. } => ErrorKind::NotFound,
                ExchangeError::Store(s) => store_kind(s),
                _ => ErrorKind::InvalidArgument,
            },
            BrokerError::Registry(e) => registry_kind(e),
            BrokerError::Pipeline(e) => match e {
                PipelineError::Unknown(_) => ErrorKind::UnknownPipeline,
                PipelineError::Exists(_) => ErrorKind::PipelineExists,
                PipelineError::Forbidden(_) => ErrorKind::Forbidden,
                PipelineError::Step { .. } | PipelineError::DoesNotStart { .. } => ErrorKind::PluginInit,
                PipelineError::Queue(q) => queue_kind(q),
                PipelineError::Registry(r) => registry_kind(r),
                PipelineError::Store(s) => store_kind(s),
                _ => ErrorKind::InvalidArgument,
            },
            BrokerError::Auth(AuthError::Unauthenticated(_)) => ErrorKind::Unauthenticated,
            BrokerError::Auth(AuthError::NotEnforced) => ErrorKind::InvalidArgument,
            BrokerError::Auth(_) => ErrorKind::Forbidden,
            BrokerError::Sequence(e) => match e {
                SequenceError::Fenced { .. } => ErrorKind::ProducerFenced,
                SequenceError::OutOfOrder { .. } => ErrorKind::OutOfOrderSequence,
                SequenceError::Duplicate { .. } => ErrorKind::DuplicateSequence,
                SequenceError::InFlight { .. } => ErrorKind::Busy,
            },
            BrokerError::Refused { .. } => ErrorKind::PluginInit,
            BrokerError::InUse(_) => ErrorKind::InUse,
            BrokerError::Incompatible(_) => ErrorKind::InvalidArgument,
            BrokerError::BadRequest(_) => ErrorKind::InvalidArgument,
            BrokerError::Busy(_) => ErrorKind::Busy,
            BrokerError::Timeout(_) => ErrorKind::Timeout,
            BrokerError::Internal(_) => ErrorKind::Internal,
            BrokerError::Cluster(e) => cluster_kind(e),
            BrokerError::Remote { kind, .. } => *kind,
            BrokerError::InvalidRecord { .. } => ErrorKind::InvalidRecord,
            BrokerError::Schema(e) => match e {
                SchemaError::Store(s) => store_kind(s),
                e if e.status() == 404 => ErrorKind::NotFound,
                SchemaError::NotPermitted(_) => ErrorKind::Forbidden,
                _ => ErrorKind::InvalidArgument,
            },
        }
    }
}

fn cluster_kind(e: &crate::cluster::ClusterError) -> ErrorKind {
    use crate::cluster::ClusterError as C;
    match e {
        C::Exists(_) => ErrorKind::AlreadyExists,
        C::Unsupported(_) => ErrorKind::InvalidArgument,
        C::Fenced(_) => ErrorKind::Busy,
        _ => ErrorKind::Storage,
    }
}

fn queue_kind(e: &QueueError) -> ErrorKind {
    match e {
        QueueError::Unknown(_) => ErrorKind::UnknownQueue,
        QueueError::Exists(_) => ErrorKind::AlreadyExists,
        QueueError::StaleReceipt { .. } => ErrorKind::StaleReceipt,
        QueueError::Full { .. } => ErrorKind::QueueFull,
        QueueError::Store(s) => store_kind(s),
        _ => ErrorKind::InvalidArgument,
    }
}

fn store_kind(e: &StoreError) -> ErrorKind {
    match e {
        StoreError::UnknownTopic(_) => ErrorKind::UnknownTopic,
        StoreError::TopicExists(_) => ErrorKind::TopicExists,
        // As Kafka's UNKNOWN_TOPIC_OR_PARTITION: the partition is a resource that is not there.
        StoreError::UnknownPartition { .. } => ErrorKind::UnknownTopic,
        StoreError::Invalid(_) => ErrorKind::InvalidArgument,
        StoreError::MessageTooLarge { .. } => ErrorKind::MessageTooLarge,
        StoreError::DiskFull { .. } => ErrorKind::DiskFull,
        StoreError::Closed => ErrorKind::ShuttingDown,
        StoreError::Conflict(_) => ErrorKind::AlreadyExists,
        StoreError::Unavailable(_) | StoreError::Fenced(_) => ErrorKind::Busy,
        _ => ErrorKind::Storage,
    }
}

fn registry_kind(e: &RegistryError) -> ErrorKind {
    match e {
        RegistryError::Unknown(_) => ErrorKind::UnknownPlugin,
        RegistryError::Plugin { source: PluginError::Init(_), .. } => ErrorKind::PluginInit,
        RegistryError::Plugin { .. } => ErrorKind::InvalidPlugin,
        RegistryError::Store(s) => store_kind(s),
        _ => ErrorKind::InvalidArgument,
    }
}

/// Shorthand for broker results.
pub type Result<T, E = BrokerError> = std::result::Result<T, E>;
