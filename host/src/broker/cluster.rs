//! The broker in cluster mode: the same commands, executed on the JetStream store
//! ([`crate::cluster`]) instead of the local one where the data is shared — topics, records,
//! group offsets, pipelines and plugin versions — and refused with a clear error where
//! cluster mode does not (yet) go: queues, exchanges, request/reply, idempotent producers.
//! A sync task mirrors what other nodes created into this node's local store.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;

use super::command::{
    Command, ExchangeCommand, FetchPosition, FetchedPartition, GroupCommand, PipelineCommand, PluginCommand,
    QueueCommand, Reply, TopicCommand, TopicInfo,
};
use super::{Broker, BrokerError, Result};
use crate::cluster::{Cluster, ClusterError, names};
use crate::storage::stored;

fn single_node(what: &str) -> BrokerError {
    BrokerError::BadRequest(format!(
        "{what} are single-node for now: this server runs in cluster mode (--cluster), where they are not \
         replicated; run them on a server without --cluster (see RELIABILITY.md, \"Cluster mode\")"
    ))
}

impl Broker {
    /// Execute `command` in cluster mode.
    pub(super) async fn cluster_command(
        &self,
        cluster: &Arc<Cluster>,
        command: Command,
        owner: Option<String>,
    ) -> Result<Reply> {
        match command {
            Command::Topic(c) => self.cluster_topic(cluster, c).await,
            Command::Group(c) => self.cluster_group(cluster, c).await,
            Command::Queue(QueueCommand::List) => Ok(Reply::Queues(Vec::new())),
            Command::Queue(_) => Err(single_node("queues")),
            Command::Exchange(ExchangeCommand::List) => Ok(Reply::Exchanges(Vec::new())),
            Command::Exchange(_) => Err(single_node("exchanges")),
            Command::Plugin(c) => self.cluster_plugin(cluster, c).await,
            Command::Pipeline(c) => self.cluster_pipeline(cluster, c, owner).await,
            Command::State(c) => self.state_command(c).await,
            Command::ClusterStatus => Ok(Reply::ClusterStatus(self.cluster_status(cluster).await?)),
        }
    }

    async fn cluster_topic(&self, cluster: &Arc<Cluster>, command: TopicCommand) -> Result<Reply> {
        match command {
            TopicCommand::Create { name, config } => {
                crate::types::check_name("topic", &name).map_err(|e| BrokerError::BadRequest(e.to_string()))?;
                if config.ephemeral {
                    return Err(single_node("ephemeral topics"));
                }
                cluster.create_topic(&name, &config).await?;
                let topic = match self.store.topic(&name) {
                    Ok(t) => t,
                    Err(_) => self.store.create_topic(&name, config).await?,
                };
                Ok(Reply::Topic(self.cluster_topic_info(cluster, &topic).await?))
            }
            TopicCommand::Delete { name } => {
                self.refuse_if_used(&format!("topic `{name}`"), "used by", |s| {
                    s.source.topic() == Some(name.as_str()) || s.sink == name
                })?;
                let topic = self.store.topic(&name)?;
                cluster.delete_topic(&name, topic.partition_count()).await?;
                self.store.delete_topic(&name).await?;
                Ok(Reply::Done)
            }
            TopicCommand::List => {
                // The cluster's topics (this node's store also holds local ones, like the
                // request/reply topic, which cluster mode does not serve).
                let mut out = Vec::new();
                for (name, _) in cluster.topic_configs().await? {
                    if let Ok(t) = self.store.topic(&name) {
                        out.push(self.cluster_topic_info(cluster, &t).await?);
                    }
                }
                out.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(Reply::Topics(out))
            }
            TopicCommand::Describe { name } => {
                Ok(Reply::Topic(self.cluster_topic_info(cluster, &*self.store.topic(&name)?).await?))
            }
            TopicCommand::Produce { topic, partition, records, sequence: None } => {
                let (commit, slots) = self.partition_records(&topic, partition, records)?;
                crate::storage::validate_commit(&commit)?;
                let mut offsets = Vec::with_capacity(commit.appends.len());
                for a in &commit.appends {
                    offsets.push(cluster.append(&topic, a.partition, &a.records).await?);
                }
                Ok(Reply::Produced(slots.into_iter().map(|(a, i, p)| (p, offsets[a][i].0)).collect()))
            }
            TopicCommand::Produce { sequence: Some(_), .. } => Err(single_node("idempotent producers")),
            TopicCommand::NewProducer => Err(single_node("idempotent producers")),
            TopicCommand::Fetch { topic, positions, max_records, max_bytes, max_wait } => {
                self.cluster_fetch(cluster, &topic, &positions, max_records, max_bytes, max_wait).await
            }
            TopicCommand::OffsetsForTime { .. } => Err(single_node("offsets by time")),
            TopicCommand::Request { .. } => Err(single_node("request/reply")),
            TopicCommand::ReplayDeadLetters { .. } => Err(single_node("dead-letter replays")),
        }
    }

    async fn cluster_topic_info(&self, cluster: &Cluster, topic: &crate::storage::Topic) -> Result<TopicInfo> {
        let mut info = self.topic_info(topic);
        for (p, bounds) in info.partitions.iter_mut().enumerate() {
            *bounds = cluster.bounds(&topic.name, p as u32).await?;
        }
        Ok(info)
    }

    /// Read each asked partition from JetStream; if nothing is there, look again every
    /// 20 ms until `max_wait`.
    async fn cluster_fetch(
        &self,
        cluster: &Cluster,
        topic: &str,
        positions: &[FetchPosition],
        max_records: usize,
        max_bytes: usize,
        max_wait: Duration,
    ) -> Result<Reply> {
        let (_, max_records, max_bytes, wait) =
            self.fetch_bounds(topic, positions, max_records, max_bytes, max_wait)?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let mut out = Vec::with_capacity(positions.len());
            let (mut records_left, mut bytes_left) = (max_records, max_bytes);
            for pos in positions {
                let fetched = if records_left == 0 {
                    cluster.read(topic, pos.partition, pos.offset, 1, 1).await.map(|mut f| {
                        f.records.clear();
                        f
                    })?
                } else {
                    cluster.read(topic, pos.partition, pos.offset, records_left, bytes_left).await?
                };
                records_left -= fetched.records.len().min(records_left);
                bytes_left = bytes_left.saturating_sub(fetched.records.iter().map(|r| r.value.len()).sum()).max(1);
                out.push(FetchedPartition {
                    partition: pos.partition,
                    first_offset: fetched.records.first().map_or(pos.offset.max(fetched.log_start), |r| r.offset),
                    high_watermark: fetched.high_watermark,
                    records: fetched.records,
                });
            }
            if out.iter().any(|p| !p.records.is_empty()) || tokio::time::Instant::now() >= deadline {
                return Ok(Reply::Fetched(out));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn cluster_group(&self, cluster: &Arc<Cluster>, command: GroupCommand) -> Result<Reply> {
        match command {
            GroupCommand::Commit { group, topic, offsets, member } => {
                if let Some((member, generation)) = member {
                    self.groups.check(&group, &topic, &member, generation)?;
                }
                self.store.topic(&topic)?;
                for (p, next) in offsets {
                    cluster.commit_offset(&group, &topic, p, next).await?;
                }
                Ok(Reply::Done)
            }
            GroupCommand::ClassicCommit { group, topic, offsets, member, generation } => {
                self.classic.check(&group, &member, generation)?;
                self.store.topic(&topic)?;
                for (p, next) in offsets {
                    cluster.commit_offset(&group, &topic, p, next).await?;
                }
                Ok(Reply::Done)
            }
            GroupCommand::Offsets { group, topic } => {
                let t = self.store.topic(&topic)?;
                let mut out = Vec::new();
                for p in 0..t.partition_count() {
                    out.push(cluster.committed_offset(&group, &topic, p).await?);
                }
                Ok(Reply::Offsets(out))
            }
            other => self.group_command(other).await,
        }
    }

    async fn cluster_plugin(&self, cluster: &Arc<Cluster>, command: PluginCommand) -> Result<Reply> {
        match command {
            PluginCommand::Deploy { name, wasm, sandbox, shadow: false, upload } => {
                let wasm = match upload {
                    Some(id) if wasm.is_empty() => self.uploads.take(&name, id)?,
                    _ => wasm,
                };
                // The cluster numbers versions: one past both its pointer and this node's.
                let (current, revision) = cluster.plugin_pointer(&name).await?;
                let here = self.registry.versions(&name).last().map_or(0, |i| i.version);
                let number = current.max(here) + 1;
                let info = self.deploy(&name, wasm.clone(), sandbox, false, Some(number)).await?;
                cluster.publish_plugin(&info, wasm, revision).await?;
                Ok(Reply::Plugin(info))
            }
            PluginCommand::Deploy { shadow: true, .. } => Err(single_node("shadow deployments")),
            c @ (PluginCommand::Rollback { .. } | PluginCommand::Promote { .. } | PluginCommand::Remove { .. }) => {
                let _ = c;
                Err(single_node("rollback, promote and remove of plugins"))
            }
            other => self.plugin_command(other).await,
        }
    }

    async fn cluster_pipeline(
        &self,
        cluster: &Arc<Cluster>,
        command: PipelineCommand,
        owner: Option<String>,
    ) -> Result<Reply> {
        match command {
            PipelineCommand::Create { spec } => {
                if spec.source.topic().is_none() {
                    return Err(single_node("pipelines reading queues"));
                }
                let _sync = self.cluster_pipelines.lock().await;
                // Claimed in the cluster first: a name another node holds never starts here.
                let encoded = Bytes::from(stored::encode(&stored::PipelineSpecV1::from(spec.clone())));
                if let Err(e) = cluster.pipelines.create(names::escape(&spec.name), encoded).await {
                    return Err(ClusterError::Exists(format!(
                        "pipeline `{}` already exists in the cluster ({e})",
                        spec.name
                    ))
                    .into());
                }
                match self.pipelines.create(spec.clone(), owner).await {
                    Ok(status) => Ok(Reply::Pipeline(status)),
                    Err(e) => {
                        let _ = cluster.pipelines.purge(names::escape(&spec.name)).await;
                        Err(e.into())
                    }
                }
            }
            PipelineCommand::Delete { name } => {
                let _sync = self.cluster_pipelines.lock().await;
                cluster.pipelines.purge(names::escape(&name)).await.map_err(crate::cluster::nats)?;
                self.pipelines.delete(&name).await?;
                crate::cluster::CommitLog::delete(cluster, &name).await;
                Ok(Reply::Done)
            }
            PipelineCommand::Apply { .. } | PipelineCommand::Reset { .. } => {
                Err(single_node("pipeline apply and reset"))
            }
            PipelineCommand::Status { name } => {
                let mut status = self.pipelines.status(&name)?;
                self.cluster_progress(cluster, &mut status).await?;
                Ok(Reply::Pipeline(status))
            }
            PipelineCommand::List => {
                let mut all = self.pipelines.list();
                for status in &mut all {
                    self.cluster_progress(cluster, status).await?;
                }
                Ok(Reply::Pipelines(all))
            }
            other => self.pipeline_command(other, owner).await,
        }
    }

    /// Nodes, NATS health, and every pipeline partition's owner and progress.
    async fn cluster_status(&self, cluster: &Cluster) -> Result<crate::cluster::ClusterStatus> {
        use std::sync::atomic::Ordering::Relaxed;
        let (connected, nats) = cluster.health();
        let nodes = cluster.live_nodes();
        let mut partitions = Vec::new();
        for status in self.pipelines.list() {
            let Some(topic) = status.spec.source.topic() else { continue };
            let count = self.store.topic(topic).map(|t| t.partition_count()).unwrap_or(0);
            for p in 0..count {
                let progress = crate::cluster::CommitLog::progress(cluster, &status.spec.name, p).await?;
                let (committed, committed_by, versions) = match progress {
                    Some((next, node, versions)) => (Some(next), Some(node), versions),
                    None => (None, None, Vec::new()),
                };
                partitions.push(crate::cluster::PartitionOwner {
                    pipeline: status.spec.name.clone(),
                    partition: p,
                    owner: cluster.owner(&status.spec.name, p),
                    committed,
                    committed_by,
                    versions,
                });
            }
        }
        let c = &cluster.counters;
        Ok(crate::cluster::ClusterStatus {
            node: cluster.node.clone(),
            nats,
            connected,
            nodes,
            partitions,
            commits: c.commits.load(Relaxed),
            fenced_commits: c.fenced_commits.load(Relaxed),
            takeovers: c.takeovers.load(Relaxed),
        })
    }

    /// A status's partitions as the cluster has them: the committed offset from the commit
    /// stream (whichever node committed it), the high watermark from the partition's stream.
    /// The counters stay this node's.
    async fn cluster_progress(&self, cluster: &Cluster, status: &mut crate::pipeline::PipelineStatus) -> Result<()> {
        let Some(topic) = status.spec.source.topic().map(str::to_string) else { return Ok(()) };
        for (p, committed, hw) in status.partitions.iter_mut() {
            let (start, end) = cluster.bounds(&topic, *p).await?;
            let progress = crate::cluster::CommitLog::progress(cluster, &status.spec.name, *p).await?;
            *committed = progress.map_or(start, |(next, _, _)| next);
            *hw = end;
        }
        Ok(())
    }

    /// Mirror what other nodes created into this node (topics, plugin versions, pipelines),
    /// every half second, for as long as the broker lives.
    pub(super) fn spawn_cluster_sync(self: &Arc<Self>, cluster: Arc<Cluster>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(broker) = weak.upgrade() else { return };
                if let Err(e) = broker.sync_once(&cluster).await {
                    tracing::warn!(error = %e, "cluster sync failed; retrying");
                }
                drop(broker);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }

    /// One pass of the mirror: topics first (pipelines need them), then plugins, then pipelines.
    pub(super) async fn sync_once(&self, cluster: &Arc<Cluster>) -> Result<()> {
        for (name, config) in cluster.topic_configs().await? {
            if self.store.topic(&name).is_err() {
                cluster.ensure_streams(&name, &config).await?;
                match self.store.create_topic(&name, config).await {
                    // A create through this node got there first.
                    Ok(_) | Err(crate::storage::StoreError::TopicExists(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        for (name, version, sandbox, wasm) in
            cluster.plugins_newer_than(|n| self.registry.live(n).map(|l| l.version)).await?
        {
            match self.deploy(&name, wasm, sandbox, false, Some(version)).await {
                Ok(info) if info.version != version => tracing::warn!(
                    plugin = %name, cluster = version, local = info.version,
                    "plugin version numbers differ between this node and the cluster"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(plugin = %name, error = %e, "cannot install the cluster's plugin version"),
            }
        }
        // Not while this node creates or deletes one (it would see half of the change).
        let _sync = self.cluster_pipelines.lock().await;
        let mut keys = cluster.pipelines.keys().await.map_err(crate::cluster::nats)?;
        let mut wanted = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(crate::cluster::nats)?;
            let Some(v) = cluster.pipelines.get(&key).await.map_err(crate::cluster::nats)? else { continue };
            let spec: stored::PipelineSpecV1 = stored::decode(&key, &v)?;
            wanted.push(crate::pipeline::PipelineSpec::from(spec));
        }
        let have: Vec<String> = self.pipelines.list().into_iter().map(|s| s.spec.name).collect();
        for spec in &wanted {
            if !have.contains(&spec.name)
                && let Err(e) = self.pipelines.create(spec.clone(), None).await
            {
                tracing::warn!(pipeline = %spec.name, error = %e, "cannot run the cluster's pipeline here");
            }
        }
        for name in have {
            if !wanted.iter().any(|s| s.name == name) {
                let _ = self.pipelines.delete(&name).await;
            }
        }
        Ok(())
    }
}
