//! The broker: owns the store, the plugin registry, queues, exchanges, groups and pipelines,
//! and executes [`Command`]s on them — after the one access check ([`access`]) decides what
//! the caller may do. Front doors translate their protocol into commands; the broker never
//! sees a socket or a wire type.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

mod access;
mod command;
mod contracts;
mod dead_letters;
mod error;
mod exchanges;
mod follow;
mod groups;
mod pipelines;
mod plugins;
mod producers;
mod queues;
mod remote;
mod replies;
mod schemas;
mod topics;
mod uploads;

use crate::auth::{Authority, Identity};
use crate::pipeline::{PipelineError, Pipelines};
use crate::registry::{Registry, RegistryError};
use crate::runtime::{PluginError, Runtime};
use crate::storage::StoreOptions;
use crate::store::Store;
use crate::types::{Durability, now_ms};
pub use command::{
    Command, ExchangeCommand, FetchPosition, FetchedPartition, GroupCommand, GroupLag, PipelineCommand, PluginCommand,
    PluginEntry, QueueCommand, Reply, SchemaCommand, SchemaReply, StateCommand, TopicCommand, TopicInfo,
};
pub use error::{BrokerError, ErrorKind, Result};
pub use producers::{SequenceError, Sequenced};

/// A command being executed: its result, and whether the caller must await it before
/// starting the next command of the same connection (see [`Command::is_configuration`]).
pub struct Execution {
    /// The result, once ready. Polled once at once, a data-path write has been submitted.
    pub future: Pin<Box<dyn Future<Output = Result<Reply>> + Send + 'static>>,
    /// Finish this before starting the next command.
    pub in_order: bool,
}
/// How the broker is set up.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Data directory: the database and the compiled-plugin cache.
    pub data_dir: PathBuf,
    /// Durability of topics created without one.
    pub durability: Durability,
    /// How often retention runs.
    pub retention_interval: Duration,
    /// Open even if the WAL is damaged, keeping what precedes the damage.
    pub recover_wal: bool,
    /// The write-ahead log's directory, if not inside the data directory.
    pub wal_dir: Option<PathBuf>,
    /// Free bytes kept in the data (and WAL) directory; below them appends are refused.
    pub min_free_bytes: u64,
    /// Where compiled plugins are cached (default: `compiled/` in the data directory). Servers
    /// may share one: entries are keyed by the component's hash and the engine's.
    pub compile_cache: Option<PathBuf>,
    /// Tokens and grants (`Authority::open()` serves everyone).
    pub authority: Arc<Authority>,
    /// Cluster mode: join the NATS JetStream cluster (what this node tells the others).
    pub cluster: Option<(crate::cluster::ClusterOptions, crate::cluster::NodeInfo)>,
}

/// The broker.
pub struct Broker {
    /// Topics, offsets, state, metadata.
    pub store: Arc<Store>,
    /// Plugin versions.
    pub registry: Arc<Registry>,
    /// Running pipelines.
    pub pipelines: Arc<Pipelines>,
    /// Queues.
    pub queues: Arc<crate::queue::Queues>,
    /// Consumer-group membership.
    pub groups: crate::groups::Coordinator,
    /// Kafka clients' consumer groups (the classic protocol).
    pub classic: crate::classic_groups::ClassicGroups,
    /// Exchanges and bindings.
    pub exchanges: Arc<crate::exchange::Exchanges>,
    /// The schema registry.
    pub schemas: Arc<crate::schemas::Schemas>,
    /// Who may do what.
    pub authority: Arc<Authority>,
    /// Request latencies ([`crate::metrics`] reads everything else where it lives).
    pub metrics: crate::metrics::Metrics,
    /// The metadata sequence whose changes this node's areas have taken in (cluster mode:
    /// see [`follow`]).
    followed: tokio::sync::watch::Sender<u64>,
    /// Cluster mode: this node coordinates the queues and weir's consumer groups now (see
    /// [`remote`]).
    coordinating: std::sync::atomic::AtomicBool,
    /// Held by a dead-letter replay: one at a time.
    replaying: tokio::sync::Mutex<()>,
    /// Components arriving in parts.
    uploads: uploads::Uploads,
    replies: Arc<replies::ReplyHub>,
    producers: producers::Producers,
    config: BrokerConfig,
}

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The store did not open.
    #[error("cannot open the data directory")]
    Store(#[from] crate::storage::StoreError),
    /// The Wasm engine did not start.
    #[error("cannot start the plugin runtime")]
    Runtime(#[from] PluginError),
    /// The registry did not load.
    #[error("cannot load the plugin registry")]
    Registry(#[from] RegistryError),
    /// Pipelines did not load.
    #[error("cannot load pipelines")]
    Pipelines(#[from] PipelineError),
    /// Queues did not load.
    #[error("cannot load queues")]
    Queues(#[from] crate::queue::QueueError),
    /// Exchanges did not load.
    #[error("cannot load exchanges")]
    Exchanges(#[from] crate::exchange::ExchangeError),
    /// The cluster could not be joined.
    #[error("cannot join the cluster")]
    Cluster(#[from] crate::cluster::ClusterError),
}

impl Broker {
    /// Open the data directory, recover, and start every stored pipeline.
    pub async fn open(config: BrokerConfig) -> Result<Arc<Broker>, OpenError> {
        let local = StoreOptions {
            path: config.data_dir.join("db"),
            default_durability: config.durability,
            recover_wal: config.recover_wal,
            wal_dir: config.wal_dir.clone(),
            min_free_bytes: config.min_free_bytes,
        };
        let store = Arc::new(match &config.cluster {
            None => Store::local(local)?,
            Some((opts, me)) => {
                let cluster = crate::cluster::Cluster::connect(opts.clone(), me.clone()).await?;
                // The cache only mirrors what JetStream stored: no floor of its own.
                let cache = crate::storage::Rocks::open(StoreOptions { min_free_bytes: 0, ..local })?;
                Store::clustered(crate::cluster::store::ClusterStore::open(cluster, cache).await?)
            }
        });
        // Subscribed before anything is loaded: a change arriving meanwhile is applied again.
        let changes = store.meta_changes();
        let cache = config.compile_cache.clone().unwrap_or_else(|| config.data_dir.join("compiled"));
        let runtime = Arc::new(Runtime::new(&cache)?);
        let registry = Arc::new(Registry::open(store.clone(), runtime).await?);
        let exchanges = Arc::new(crate::exchange::Exchanges::open(store.clone()).await?);
        let queues = Arc::new(crate::queue::Queues::open(store.clone(), exchanges.clone()).await?);
        let schemas = Arc::new(crate::schemas::Schemas::new(store.clone()));
        let replies = replies::ReplyHub::start(&store).await?;
        let authority = config.authority.clone();
        let pipelines = Pipelines::start(store.clone(), registry.clone(), queues.clone(), authority.clone()).await?;
        let (groups, classic) = Default::default();
        let broker = Arc::new(Broker {
            store,
            registry,
            pipelines,
            queues,
            groups,
            classic,
            exchanges,
            schemas,
            authority,
            replies,
            config,
            followed: tokio::sync::watch::channel(0).0,
            coordinating: Default::default(),
            producers: Default::default(),
            metrics: Default::default(),
            replaying: Default::default(),
            uploads: Default::default(),
        });
        broker.spawn_retention();
        broker.spawn_timers();
        if let Some((rx, applied)) = changes {
            broker.followed.send_replace(applied);
            broker.spawn_follower(rx);
        }
        broker.serve_cluster().await.map_err(|e| match e {
            BrokerError::Cluster(c) => OpenError::Cluster(c),
            other => OpenError::Cluster(crate::cluster::ClusterError::Nats(other.to_string())),
        })?;
        Ok(broker)
    }

    /// Stop pipelines after their in-flight batches, then drain and close the store.
    pub async fn shutdown(&self) {
        self.pipelines.shutdown().await;
        if let Some(c) = self.store.cluster() {
            c.leave().await;
        }
        if let Err(e) = self.store.flush() {
            tracing::warn!(error = %e, "flush at shutdown failed");
        }
        self.store.close();
    }

    fn spawn_retention(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let every = self.config.retention_interval;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(broker) = weak.upgrade() else { return };
                match broker.store.enforce_retention(now_ms()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "retention removed old records"),
                    Err(e) => tracing::warn!(error = %e, "retention failed"),
                }
            }
        });
    }

    /// Queue visibility deadlines, delays and dead-lettering; group session expiry.
    fn spawn_timers(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(50));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                every.tick().await;
                let Some(broker) = weak.upgrade() else { return };
                if let Err(e) = broker.queues.tick().await {
                    tracing::warn!(error = %e, "queue timers failed");
                }
                broker.groups.expire();
                broker.classic.expire();
            }
        });
    }

    /// Put a new token set in force and halt the pipelines whose owners lost what they need.
    /// Open connections pick up the new set at their next request.
    pub async fn reload_tokens(&self, tokens: crate::auth::Tokens) -> Result<()> {
        self.authority.replace(tokens)?;
        self.pipelines.recheck_owners().await;
        Ok(())
    }

    /// Start `command` for `caller` (`None` on a server without tokens). It is refused
    /// unless the caller's grants cover everything it needs ([`access`]); the caller then
    /// sees only the listing entries it may read. Poll the returned future once right away
    /// to submit a data-path write in arrival order.
    pub fn execute(self: &Arc<Self>, caller: Option<&Arc<Identity>>, command: Command) -> Execution {
        // A single node submits a data-path write when the future is first polled, which keeps
        // a connection's writes in order while they wait for durability together; a cluster's
        // writes start after a round trip, so a connection's next request waits for this one.
        let in_order = command.is_configuration()
            || (self.store.cluster().is_some() && command.writes())
            || self.runs_elsewhere(&command);
        if let Some(who) = caller
            && let Err(e) = self.authorize(who, &command)
        {
            return Execution { future: Box::pin(std::future::ready(Err(e))), in_order };
        }
        let (me, caller, kind, started) = (self.clone(), caller.cloned(), command.kind(), std::time::Instant::now());
        let future = Box::pin(async move {
            let reply = me.run(command, caller.as_ref().map(|c| c.name.clone())).await;
            me.metrics.observe_request(kind, started.elapsed());
            Ok(match &caller {
                Some(who) => access::visible(who, reply?),
                None => reply?,
            })
        });
        Execution { future, in_order }
    }

    /// Execute without an access check: for the broker's own callers (benchmarks, tools).
    pub async fn run(&self, command: Command, owner: Option<String>) -> Result<Reply> {
        if command.reads_metadata() {
            // In a cluster, what other nodes changed before this command arrived is taken in
            // first (a no-op on a single node).
            self.caught_up().await?;
        }
        if self.store.cluster().is_none() {
            return self.run_here(command, owner).await;
        }
        Box::pin(self.run_placed(command, owner)).await
    }

    /// Execute `command` on this node.
    async fn run_here(&self, command: Command, owner: Option<String>) -> Result<Reply> {
        // Areas other than topics are boxed: this future is as large as its largest area's,
        // and every produce (the hot path) allocates and moves it.
        match command {
            Command::Topic(TopicCommand::ReplayDeadLetters { topic, to }) => {
                Box::pin(self.replay_dead_letters(&topic, to, owner.as_deref())).await
            }
            Command::Topic(c) => self.topic_command(c).await,
            Command::Group(c) => Box::pin(self.group_command(c)).await,
            Command::Queue(c) => Box::pin(self.queue_command(c)).await,
            Command::Exchange(c) => Box::pin(self.exchange_command(c)).await,
            Command::Plugin(c) => Box::pin(self.plugin_command(c)).await,
            Command::Pipeline(c) => Box::pin(self.pipeline_command(c, owner)).await,
            Command::State(c) => Box::pin(self.state_command(c)).await,
            Command::Schema(c) => Box::pin(self.schema_command(c)).await.map(Reply::Schema),
            Command::ClusterStatus => Box::pin(self.cluster_status()).await.map(Reply::ClusterStatus),
        }
    }

    /// The pipelines using `what` (by `uses`), or `Ok` if none: deleting it is refused.
    fn refuse_if_used(
        &self,
        what: &str,
        verb: &str,
        uses: impl Fn(&crate::pipeline::PipelineSpec) -> bool,
    ) -> Result<()> {
        let users: Vec<String> = self.pipelines.specs().into_iter().filter(|s| uses(s)).map(|s| s.name).collect();
        if users.is_empty() {
            return Ok(());
        }
        Err(BrokerError::InUse(format!("{what} is {verb} pipeline(s) {}; delete them first", users.join(", "))))
    }
}
