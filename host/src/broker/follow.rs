//! Taking in what other nodes changed (cluster mode). The areas keep what they serve from in
//! memory — exchanges and their bindings, plugin versions and pointers, pipelines — and
//! change it where a command changes it. Another node's change reaches this node as a
//! metadata key from the store ([`crate::store::Store::meta_changes`]); the area owning the
//! key reads the record again and brings its view to it, as if it had made the change.
//! Nothing here decides a rule: a record is applied as stored.
//!
//! A command that reads those views waits until this node has taken in every change made
//! before it arrived ([`Broker::caught_up`]), so a node never answers from an older view
//! than the store's.

use std::sync::Arc;

use tokio::sync::broadcast;

use super::{Broker, Result};
use crate::storage::keys::meta;

impl Broker {
    /// Apply changed keys as they arrive, in the store's order, for as long as the broker lives.
    pub(super) fn spawn_follower(self: &Arc<Self>, mut changes: broadcast::Receiver<(String, u64)>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let (key, seq) = match changes.recv().await {
                    Ok(change) => change,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        let Some(broker) = weak.upgrade() else { return };
                        tracing::warn!(missed, "fell behind the cluster's metadata; reading all of it again");
                        broker.follow_all().await;
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let Some(broker) = weak.upgrade() else { return };
                broker.follow(&key).await;
                broker.followed.send_if_modified(|f| {
                    let moved = seq > *f;
                    *f = (*f).max(seq);
                    moved
                });
            }
        });
    }

    /// Bring the area owning `key` to what the store holds there.
    async fn follow(&self, key: &str) {
        let done = if let Some(name) = key.strip_prefix(meta::EXCHANGES) {
            self.exchanges.follow(name).await.map_err(|e| e.to_string())
        } else if let Some(rest) = key.strip_prefix(meta::PLUGINS) {
            let name = rest.rsplit_once('/').map_or(rest, |(n, _)| n);
            self.follow_plugin(name).await.map_err(|e| e.to_string())
        } else if let Some(name) = key.strip_prefix(meta::LIVE).or_else(|| key.strip_prefix(meta::SHADOW)) {
            self.follow_plugin(name).await.map_err(|e| e.to_string())
        } else if let Some(name) = key.strip_prefix(meta::PIPELINES) {
            self.pipelines.follow(name).await.map_err(|e| e.to_string())
        } else if let Some(name) = key.strip_prefix(meta::QUEUES) {
            self.queues.follow(name).await.map_err(|e| e.to_string())
        } else if key.starts_with(crate::schemas::VERSION_KEYS) {
            // A version deleted elsewhere: produce checks stop trusting what they saw.
            self.schemas.forget_registrations();
            Ok(())
        } else {
            Ok(())
        };
        if let Err(e) = done {
            tracing::warn!(key, error = %e, "cannot take in a change another node made");
        }
    }

    /// Read every area's records again (after missing changes).
    async fn follow_all(&self) {
        // Deletes may be among what was missed.
        self.schemas.forget_registrations();
        for prefix in [meta::EXCHANGES, meta::LIVE, meta::PIPELINES, meta::QUEUES] {
            let keys: Vec<String> = match self.store.meta_scan::<crate::store::Raw>(prefix).await {
                Ok(entries) => entries.into_iter().map(|(k, _)| k).collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the cluster's metadata");
                    return;
                }
            };
            for key in keys {
                self.follow(&key).await;
            }
        }
        for name in self.pipelines.names() {
            self.follow(&meta::pipeline(&name)).await;
        }
        for name in self.exchanges.list().into_iter().map(|e| e.name) {
            self.follow(&meta::exchange(&name)).await;
        }
    }

    /// A plugin's versions or pointers changed elsewhere: install what is new and swap the
    /// pipelines following it, as a deploy, rollback, promote or removal here would.
    async fn follow_plugin(&self, name: &str) -> Result<()> {
        let _guard = self.registry.deploy_lock().await;
        let change = self.registry.follow(name).await?;
        if change.live != change.was_live
            && let Some(info) = &change.live
        {
            let loaded = self.component(info).await?;
            self.pipelines.swap_live(info, &loaded);
        }
        if change.shadow != change.was_shadow || change.live.is_none() {
            let shadow = match &change.shadow {
                Some(info) => Some((info.clone(), self.component(info).await?)),
                None => None,
            };
            let live = change.live.as_ref().map(|l| l.version);
            self.pipelines.set_shadow(name, live, shadow.as_ref().map(|(i, l)| (i, l)));
        }
        Ok(())
    }

    /// The compiled component of `info` (compiled off the async threads).
    pub(super) async fn component(&self, info: &crate::registry::PluginInfo) -> Result<crate::runtime::LoadedPlugin> {
        let (registry, info) = (self.registry.clone(), info.clone());
        Ok(tokio::task::spawn_blocking(move || registry.component(&info))
            .await
            .map_err(|e| super::BrokerError::Internal(e.to_string()))??)
    }

    /// Wait until this node has taken in every metadata change made anywhere before now
    /// (at once on a single node).
    pub(super) async fn caught_up(&self) -> Result<()> {
        if self.store.cluster().is_none() {
            return Ok(());
        }
        let seq = self.store.sync().await?;
        let mut followed = self.followed.subscribe();
        let waited = tokio::time::timeout(std::time::Duration::from_secs(30), followed.wait_for(|f| *f >= seq)).await;
        match waited {
            Ok(Ok(_)) => Ok(()),
            _ => Err(super::BrokerError::Busy(format!(
                "this node has not taken in the cluster's changes up to {seq} within 30 s; retry"
            ))),
        }
    }

    /// Nodes, NATS health, and every pipeline partition's owner and progress.
    pub(super) async fn cluster_status(&self) -> Result<crate::cluster::ClusterStatus> {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(cluster) = self.store.cluster() else {
            return Err(super::BrokerError::BadRequest(
                "this server is not in cluster mode: start it with --cluster nats://… to join one".into(),
            ));
        };
        let (connected, nats) = cluster.health();
        let mut partitions = Vec::new();
        for spec in self.pipelines.specs() {
            let Some(topic) = spec.source.topic() else { continue };
            let count = self.store.find_topic(topic).await.map(|t| t.partition_count()).unwrap_or(0);
            for p in 0..count {
                let progress = crate::cluster::CommitLog::progress(cluster, &spec.name, p).await?;
                let (committed, committed_by, versions) = match progress {
                    Some((next, node, versions)) => (Some(next), Some(node), versions),
                    None => (None, None, Vec::new()),
                };
                partitions.push(crate::cluster::PartitionOwner {
                    pipeline: spec.name.clone(),
                    partition: p,
                    owner: cluster.owner(&spec.name, p),
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
            nodes: cluster.live_nodes(),
            partitions,
            commits: c.commits.load(Relaxed),
            fenced_commits: c.fenced_commits.load(Relaxed),
            takeovers: c.takeovers.load(Relaxed),
        })
    }
}
