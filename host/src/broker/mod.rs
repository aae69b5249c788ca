//! The broker: owns the store, the plugin registry and the pipelines, and turns each wire
//! request into calls on them. The server hands it decoded requests; it never sees sockets.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::select_all;

use crate::limits;

mod access;
mod messaging;
mod plugins;
mod replies;

use crate::auth::{Authority, Identity};
use crate::pipeline::{PipelineError, Pipelines};
use crate::registry::{Registry, RegistryError};
use crate::runtime::{PluginError, Runtime};
use crate::storage::{Append, Commit, NewRecord, Store, StoreOptions, Topic};
use crate::types::{Durability, now_ms};
use crate::wire::{
    ErrorCode, FetchPosition, FetchedPartition, FetchedRecord, GroupInfo, Request, Response, TopicInfo, WireError,
    WireRecord,
};
pub use replies::{CORRELATION_ID, REPLY_TO, REPLY_TOPIC};

/// A response still being computed.
pub type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response, WireError>> + Send + 'static>>;

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
    /// Tokens and grants (`Authority::open()` serves everyone).
    pub authority: Arc<Authority>,
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
    /// Exchanges and bindings.
    pub exchanges: crate::exchange::Exchanges,
    /// Who may do what.
    pub authority: Arc<Authority>,
    replies: Arc<replies::ReplyHub>,
    config: BrokerConfig,
}

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The store did not open.
    #[error("cannot open the data directory: {0}")]
    Store(#[from] crate::storage::StoreError),
    /// The Wasm engine did not start.
    #[error("cannot start the plugin runtime: {0}")]
    Runtime(#[from] PluginError),
    /// The registry did not load.
    #[error("cannot load the plugin registry: {0}")]
    Registry(#[from] RegistryError),
    /// Pipelines did not load.
    #[error("cannot load pipelines: {0}")]
    Pipelines(#[from] PipelineError),
    /// Queues did not load.
    #[error("cannot load queues: {0}")]
    Queues(#[from] crate::queue::QueueError),
    /// Exchanges did not load.
    #[error("cannot load exchanges: {0}")]
    Exchanges(#[from] crate::exchange::ExchangeError),
}

impl Broker {
    /// Open the data directory, recover, and start every stored pipeline.
    pub async fn open(config: BrokerConfig) -> Result<Arc<Broker>, OpenError> {
        let store = Arc::new(Store::open(StoreOptions {
            path: config.data_dir.join("db"),
            default_durability: config.durability,
            recover_wal: config.recover_wal,
        })?);
        let runtime = Arc::new(Runtime::new(&config.data_dir.join("compiled"))?);
        let registry = Arc::new(Registry::open(store.clone(), runtime)?);
        let queues = Arc::new(crate::queue::Queues::open(store.clone())?);
        let exchanges = crate::exchange::Exchanges::open(store.clone())?;
        let replies = replies::ReplyHub::start(&store).await?;
        let authority = config.authority.clone();
        let pipelines = Pipelines::start(store.clone(), registry.clone(), queues.clone(), authority.clone()).await?;
        let groups = crate::groups::Coordinator::default();
        let broker =
            Arc::new(Broker { store, registry, pipelines, queues, groups, exchanges, authority, replies, config });
        broker.spawn_retention();
        broker.spawn_timers();
        Ok(broker)
    }

    /// Stop pipelines after their in-flight batches, then drain and close the store.
    pub async fn shutdown(&self) {
        self.pipelines.shutdown().await;
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
            }
        });
    }

    /// Put a new token set in force and halt the pipelines whose owners lost what they need.
    /// Open connections pick up the new set at their next request.
    pub async fn reload_tokens(&self, tokens: crate::auth::Tokens) -> Result<(), String> {
        self.authority.replace(tokens)?;
        self.pipelines.recheck_owners().await;
        Ok(())
    }

    /// Start handling a request from `caller` (`None` on a server without tokens): refused
    /// unless the caller's grants cover everything it needs (`access`). Writes are submitted
    /// before this returns, so requests dispatched in order commit in order; the future
    /// resolves when the response is ready.
    pub fn dispatch(self: &Arc<Self>, caller: Option<Arc<Identity>>, request: Request) -> ResponseFuture {
        if let Some(who) = &caller
            && let Err(e) = self.authorize(who, &request)
        {
            return Box::pin(std::future::ready(Err(e)));
        }
        match request {
            Request::Produce { topic, partition, records } => self.produce(&topic, partition, records),
            other => {
                let me = self.clone();
                Box::pin(async move {
                    let owner = caller.as_ref().map(|c| c.name.clone());
                    let response = me.handle(other, owner).await?;
                    Ok(match &caller {
                        Some(who) => access::visible(who, response),
                        None => response,
                    })
                })
            }
        }
    }

    async fn handle(self: Arc<Self>, request: Request, owner: Option<String>) -> Result<Response, WireError> {
        let request = match self.handle_messaging(request).await {
            Ok(done) => return done,
            Err(other) => other,
        };
        match request {
            Request::Hello { .. } => Ok(hello()),
            Request::CreateTopic { name, config } => {
                let topic = self.store.create_topic(&name, config).await?;
                Ok(Response::Topic(self.topic_info(&topic)))
            }
            Request::DeleteTopic { name } => {
                self.refuse_if_used_by_pipeline(&name)?;
                self.store.delete_topic(&name).await?;
                Ok(Response::Ok)
            }
            Request::ListTopics => {
                Ok(Response::Topics(self.store.topics().iter().map(|t| self.topic_info(t)).collect()))
            }
            Request::DescribeTopic { name } => {
                let topic = self.store.topic(&name)?;
                Ok(Response::Topic(self.topic_info(&topic)))
            }
            Request::Fetch { topic, partitions, max_records, max_bytes, max_wait_ms } => {
                self.fetch(&topic, &partitions, max_records, max_bytes, max_wait_ms).await
            }
            Request::CommitOffsets { group, topic, offsets, member } => {
                if let Some((member, generation)) = member {
                    self.groups.check(&group, &topic, &member, generation).map_err(messaging::group_error)?;
                }
                self.commit_offsets(group, &topic, offsets).await
            }
            Request::FetchOffsets { group, topic } => {
                let topic = self.store.topic(&topic)?;
                Ok(Response::Offsets(self.store.committed(&group, &topic)?))
            }
            Request::OffsetsForTime { topic, timestamp_ms } => {
                let t = self.store.topic(&topic)?;
                let offsets = (0..t.partition_count())
                    .map(|p| self.store.offset_for_time(&t, p, timestamp_ms).map(Some))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Response::Offsets(offsets))
            }
            Request::ListGroups => self.list_groups(),
            Request::DeployPlugin { name, wasm, sandbox, shadow } => {
                Ok(Response::Plugin(self.deploy(&name, wasm.into_vec(), sandbox.unwrap_or_default(), shadow).await?))
            }
            Request::ListPlugins => Ok(Response::Plugins(self.list_plugins())),
            Request::PluginVersions { name } => {
                let versions = self.registry.versions(&name);
                if versions.is_empty() {
                    return Err(registry_error(RegistryError::Unknown(name)));
                }
                Ok(Response::PluginVersions(versions))
            }
            Request::DescribePlugin { reference } => {
                Ok(Response::Plugin(self.registry.resolve(&reference).map_err(registry_error)?))
            }
            Request::RemovePlugin { name } => {
                self.remove_plugin(&name).await?;
                Ok(Response::Ok)
            }
            Request::RollbackPlugin { name, to } => Ok(Response::Plugin(self.rollback(&name, to).await?)),
            Request::PromotePlugin { name } => Ok(Response::Plugin(self.promote(&name).await?)),
            Request::PluginDiff { name } => {
                self.registry.resolve(&name).map_err(registry_error)?;
                Ok(Response::ShadowDiff(self.pipelines.shadow_report(&name)))
            }
            Request::CreatePipeline { spec } => {
                Ok(Response::Pipeline(self.pipelines.create(spec, owner).await.map_err(pipeline_error)?))
            }
            Request::ListPipelines => Ok(Response::Pipelines(self.pipelines.list())),
            Request::PipelineStatus { name } => {
                Ok(Response::Pipeline(self.pipelines.status(&name).map_err(pipeline_error)?))
            }
            Request::DeletePipeline { name } => {
                self.pipelines.delete(&name).await.map_err(pipeline_error)?;
                Ok(Response::Ok)
            }
            Request::ApplyPipeline { spec } => {
                let (status, change) = self.pipelines.apply(spec, owner).await.map_err(pipeline_error)?;
                Ok(Response::Applied { status, change })
            }
            Request::PausePipeline { name } => {
                Ok(Response::Pipeline(self.pipelines.pause(&name).await.map_err(pipeline_error)?))
            }
            Request::ResumePipeline { name } => {
                Ok(Response::Pipeline(self.pipelines.resume(&name).await.map_err(pipeline_error)?))
            }
            Request::ResetPipeline { name, to, reset_state } => {
                Ok(Response::Pipeline(self.pipelines.reset(&name, to, reset_state).await.map_err(pipeline_error)?))
            }
            Request::StateGet { pipeline, step, key } => {
                Ok(Response::State(self.pipelines.state_get(&pipeline, step, &key).map_err(pipeline_error)?))
            }
            Request::StateList { pipeline, step, prefix, limit } => {
                Ok(Response::State(self.pipelines.state_list(&pipeline, step, &prefix, limit).map_err(pipeline_error)?))
            }
            Request::StateDelete { pipeline, step, key } => {
                let n = self.pipelines.state_delete(&pipeline, step, &key).await.map_err(pipeline_error)?;
                Ok(Response::Count(n as u64))
            }
            Request::Produce { .. } => unreachable!("dispatched directly"),
            other => Err(WireError::new(ErrorCode::Internal, format!("request not handled: {other:?}"))),
        }
    }

    /// Partition the records, submit them as one commit now, and wait for durability later.
    fn produce(self: &Arc<Self>, topic: &str, partition: Option<u32>, records: Vec<WireRecord>) -> ResponseFuture {
        let prepared = self.prepare_produce(topic, partition, records);
        let commit = match prepared {
            Ok(c) => c,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        let (commit, slots) = commit;
        let pending = self.store.submit(commit);
        Box::pin(async move {
            let receipt = pending.await?;
            // slots[i] = (append index, index within it) of record i.
            let positions = slots.into_iter().map(|(a, i, p)| (p, receipt.first_offsets[a] + i as u64)).collect();
            Ok(Response::Produced { positions })
        })
    }

    #[allow(clippy::type_complexity)]
    fn prepare_produce(
        &self,
        topic: &str,
        partition: Option<u32>,
        records: Vec<WireRecord>,
    ) -> Result<(Commit, Vec<(usize, usize, u32)>), WireError> {
        let topic = self.store.topic(topic)?;
        if let Some(p) = partition {
            topic.partition(p)?;
        }
        if records.is_empty() {
            return Err(WireError::invalid("produce request has no records"));
        }
        let mut appends: Vec<Append> = Vec::new();
        let mut by_partition: BTreeMap<u32, usize> = BTreeMap::new();
        let mut slots = Vec::with_capacity(records.len());
        for WireRecord(key, value, headers) in records {
            if value.len() > topic.config.max_message_bytes {
                return Err(WireError::new(
                    ErrorCode::MessageTooLarge,
                    format!(
                        "message of {} bytes exceeds the {}-byte limit of topic `{}`; split it or raise the limit at topic creation (--max-message-bytes)",
                        value.len(),
                        topic.config.max_message_bytes,
                        topic.name
                    ),
                ));
            }
            let p = partition.unwrap_or_else(|| topic.partition_for(key.as_deref().map(|k| k.as_slice())));
            let a = *by_partition.entry(p).or_insert_with(|| {
                appends.push(Append { topic: topic.clone(), partition: p, records: Vec::new() });
                appends.len() - 1
            });
            slots.push((a, appends[a].records.len(), p));
            appends[a].records.push(NewRecord {
                key: key.map(|k| Bytes::from(k.into_vec())),
                value: Bytes::from(value.into_vec()),
                headers,
            });
        }
        Ok((Commit { appends, ..Commit::default() }, slots))
    }

    /// Read from each asked partition; if none has anything, wait (long poll) until one does.
    async fn fetch(
        &self,
        topic: &str,
        positions: &[FetchPosition],
        max_records: u32,
        max_bytes: u32,
        max_wait_ms: u64,
    ) -> Result<Response, WireError> {
        let topic = self.store.topic(topic)?;
        for pos in positions {
            topic.partition(pos.partition)?;
        }
        let max_records = (max_records as usize).clamp(1, limits::MAX_FETCH_RECORDS);
        let max_bytes = (max_bytes as usize).clamp(1, limits::MAX_FETCH_BYTES);
        let wait = Duration::from_millis(max_wait_ms.min(limits::MAX_FETCH_WAIT_MS));
        let first = self.read_partitions(&topic, positions, max_records, max_bytes)?;
        if !first.iter().all(|p| p.records.is_empty()) || wait.is_zero() || positions.is_empty() {
            return Ok(Response::Fetched { partitions: first });
        }
        let waits = positions.iter().map(|pos| {
            let topic = topic.clone();
            let pos = *pos;
            Box::pin(async move { topic.partitions()[pos.partition as usize].wait_for(pos.offset, wait).await })
        });
        select_all(waits).await;
        Ok(Response::Fetched { partitions: self.read_partitions(&topic, positions, max_records, max_bytes)? })
    }

    fn read_partitions(
        &self,
        topic: &Topic,
        positions: &[FetchPosition],
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<FetchedPartition>, WireError> {
        let (mut records_left, mut bytes_left) = (max_records, max_bytes);
        let mut out = Vec::with_capacity(positions.len());
        for pos in positions {
            let p = &topic.partitions()[pos.partition as usize];
            let records = if records_left == 0 {
                Vec::new()
            } else {
                self.store.read(topic, pos.partition, pos.offset, records_left, bytes_left)?
            };
            records_left -= records.len();
            let bytes: usize = records.iter().map(|r| r.value.len()).sum();
            bytes_left = bytes_left.saturating_sub(bytes).max(1);
            let first_offset = records.first().map_or(pos.offset.max(p.log_start()), |r| r.offset);
            out.push(FetchedPartition {
                partition: pos.partition,
                first_offset,
                high_watermark: p.high_watermark(),
                records: records
                    .into_iter()
                    .map(|r| {
                        FetchedRecord(
                            r.timestamp_ms,
                            r.key.map(|k| serde_bytes::ByteBuf::from(k.to_vec())),
                            serde_bytes::ByteBuf::from(r.value.to_vec()),
                            r.headers,
                        )
                    })
                    .collect(),
            });
        }
        Ok(out)
    }

    async fn commit_offsets(
        &self,
        group: String,
        topic: &str,
        offsets: Vec<(u32, u64)>,
    ) -> Result<Response, WireError> {
        crate::types::check_name("group", &group).map_err(WireError::invalid)?;
        let topic = self.store.topic(topic)?;
        let mut commits = Vec::with_capacity(offsets.len());
        for (partition, next_offset) in offsets {
            let hw = topic.partition(partition)?.high_watermark();
            if next_offset > hw {
                return Err(WireError::invalid(format!(
                    "cannot commit offset {next_offset} for partition {partition} of `{}`: its high watermark is {hw}",
                    topic.name
                )));
            }
            commits.push(crate::storage::OffsetCommit {
                group: group.clone(),
                topic: topic.clone(),
                partition,
                next_offset,
            });
        }
        self.store.submit(Commit { offsets: commits, ..Commit::default() }).await?;
        Ok(Response::Ok)
    }

    fn list_groups(&self) -> Result<Response, WireError> {
        let mut out = Vec::new();
        for (group, topic_ids) in self.store.groups()? {
            for id in topic_ids {
                let Some(topic) = self.store.topic_by_id(id) else {
                    continue;
                };
                let committed = self.store.committed(&group, &topic)?;
                let partitions = committed
                    .into_iter()
                    .enumerate()
                    .map(|(p, c)| (p as u32, c, topic.partitions()[p].high_watermark()))
                    .collect();
                out.push(GroupInfo { group: group.clone(), topic: topic.name.clone(), partitions });
            }
        }
        Ok(Response::Groups(out))
    }

    fn topic_info(&self, topic: &Topic) -> TopicInfo {
        TopicInfo {
            name: topic.name.clone(),
            config: topic.config.clone(),
            durability: topic.config.durability.unwrap_or(self.store.default_durability()),
            created_ms: topic.created_ms,
            partitions: topic.partitions().iter().map(|p| (p.log_start(), p.high_watermark())).collect(),
        }
    }

    fn refuse_if_used_by_pipeline(&self, topic: &str) -> Result<(), WireError> {
        let users: Vec<String> = self
            .pipelines
            .list()
            .into_iter()
            .filter(|p| p.spec.source == topic || p.spec.sink == topic)
            .map(|p| p.spec.name)
            .collect();
        if users.is_empty() {
            return Ok(());
        }
        Err(WireError::new(
            ErrorCode::InUse,
            format!("topic `{topic}` is used by pipeline(s) {}; delete them first", users.join(", ")),
        ))
    }
}

/// The answer to `Hello`.
pub fn hello() -> Response {
    Response::Hello { version: crate::wire::PROTOCOL_VERSION, server: format!("weir {}", env!("CARGO_PKG_VERSION")) }
}

fn registry_error(e: RegistryError) -> WireError {
    WireError::new(registry_code(&e), e.to_string())
}

fn registry_code(e: &RegistryError) -> ErrorCode {
    match e {
        RegistryError::Unknown(_) => ErrorCode::UnknownPlugin,
        RegistryError::Invalid(_) => ErrorCode::InvalidArgument,
        RegistryError::Plugin { source: PluginError::Init(_), .. } => ErrorCode::PluginInit,
        RegistryError::Plugin { .. } => ErrorCode::InvalidPlugin,
        RegistryError::Store(s) => store_code(s),
    }
}

fn pipeline_error(e: PipelineError) -> WireError {
    let code = match &e {
        PipelineError::Unknown(_) => ErrorCode::UnknownPipeline,
        PipelineError::Exists(_) => ErrorCode::PipelineExists,
        PipelineError::Invalid(_) => ErrorCode::InvalidArgument,
        PipelineError::Forbidden(_) => ErrorCode::Forbidden,
        PipelineError::Step { .. } => ErrorCode::PluginInit,
        PipelineError::Registry(r) => registry_code(r),
        PipelineError::Store(s) => store_code(s),
    };
    WireError::new(code, e.to_string())
}

fn store_code(e: &crate::storage::StoreError) -> ErrorCode {
    WireError::from_store_ref(e)
}
