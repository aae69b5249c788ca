//! Pipelines in cluster mode: a supervisor per source partition runs the ordinary worker
//! while this node owns the partition (rendezvous hashing over live nodes), feeding it from
//! JetStream and committing each batch as one atomic batch there. Taking a partition over
//! reads the last commit (offset, fence) and the state into the local cache; losing it —
//! to membership or to a refused (fenced) commit — stops the worker after its batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use super::plan::Plan;
use super::{Pipelines, Running, StartPosition, worker};
use crate::cluster::{Cluster, ClusterError, CommitLog, Committed, PartitionCommit};
use crate::limits;
use crate::storage::{Commit, StateWrite, StoreError, StoredRecord, keys};

/// Move every source partition's progress to `offsets`, forgetting state if asked, by a
/// fenced commit per partition (see [`CommitLog::reset`]).
pub(super) async fn reset(
    cluster: &Arc<Cluster>,
    plan: &Plan,
    offsets: Vec<u64>,
    forget_state: bool,
) -> Result<(), super::PipelineError> {
    let log = CommitLog::open(cluster.clone(), &plan.spec.name, &plan.group, plan.source.name())
        .await
        .map_err(StoreError::from)?;
    for (p, next_offset) in offsets.into_iter().enumerate() {
        let change = crate::cluster::Rewrite::Reset { next_offset, forget_state };
        log.rewrite(p as u32, &change).await.map_err(StoreError::from)?;
    }
    Ok(())
}

/// The committed state of step `step` (from 0) in every partition, as `(partition, key,
/// value)`, read from the commit stream (the owners' caches hold the same).
pub(super) async fn state(
    cluster: &Arc<Cluster>,
    plan: &Plan,
    step: u16,
    now_ms: u64,
) -> Result<Vec<(u32, Vec<u8>, Vec<u8>)>, StoreError> {
    let log = CommitLog::open(cluster.clone(), &plan.spec.name, &plan.group, plan.source.name()).await?;
    let mut out = Vec::new();
    for p in 0..plan.source.workers(&plan.spec) {
        for (s, key, v) in log.state(p).await? {
            let Some((expiry, value)) = v.split_at_checked(8) else { continue };
            let expiry = u64::from_be_bytes(expiry.try_into().expect("8 bytes"));
            if s == step && (expiry == 0 || expiry > now_ms) {
                out.push((p, key, value.to_vec()));
            }
        }
    }
    Ok(out)
}

/// Delete state key `key` of step `step` (from 0) in every partition holding it, by a fenced
/// commit (see [`CommitLog::rewrite`]); how many entries went.
pub(super) async fn forget_state(
    cluster: &Arc<Cluster>,
    plan: &Plan,
    step: u16,
    key: &[u8],
) -> Result<usize, StoreError> {
    let log = CommitLog::open(cluster.clone(), &plan.spec.name, &plan.group, plan.source.name()).await?;
    let mut gone = 0;
    for p in 0..plan.source.workers(&plan.spec) {
        gone += log.rewrite(p, &crate::cluster::Rewrite::ForgetKeys(vec![(step, key.to_vec())])).await?;
    }
    Ok(gone)
}

/// A worker's feed of one JetStream partition, with the fencing token of its commits.
pub(crate) struct ClusterFeed {
    cluster: Arc<Cluster>,
    log: Arc<CommitLog>,
    topic: String,
    partition: u32,
    /// Next offset to read (and committed so far).
    offset: u64,
    /// Next offset once the batch in hand commits.
    pending: u64,
    /// Sequence of the last commit record: the next commit expects it.
    fence: u64,
    /// Set when a commit was refused because another node committed since, or did not
    /// answer: the partition is then taken over again from its last commit.
    fenced: Arc<AtomicBool>,
}

impl ClusterFeed {
    pub(super) fn describe(&self) -> String {
        format!("partition {} of `{}` (cluster)", self.partition, self.topic)
    }

    /// The next batch, or `None` after waiting about a second (or for `stop`).
    #[allow(clippy::type_complexity)]
    pub(super) async fn next(
        &mut self,
        batch_max: usize,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Option<(Vec<StoredRecord>, Option<Vec<StoredRecord>>)>, String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        // A batch's commit is one atomic batch of at most 1000 messages: its inputs, each
        // writing about one state key, stay well below.
        let batch_max = batch_max.min(limits::CLUSTER_BATCH_MESSAGES);
        loop {
            let read = self.cluster.read_records(
                &self.topic,
                self.partition,
                self.offset,
                batch_max,
                limits::PIPELINE_BATCH_BYTES,
            );
            let fetched = match read.await {
                Ok(f) => f,
                // A stream changing leader answers nothing for a moment: try again.
                Err(e) => {
                    tracing::debug!(error = %e, "reading {}", self.describe());
                    Default::default()
                }
            };
            if !fetched.is_empty() {
                // The local store holds no records to re-read a failing batch from: keep a copy.
                let copy = fetched.clone();
                return Ok(Some((fetched, Some(copy))));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = stop.changed() => return Ok(None),
            }
        }
    }

    pub(super) fn settle(&mut self, next_offset: u64) -> bool {
        self.pending = next_offset;
        next_offset > self.offset
    }

    /// Commit the batch: outputs, state and progress in one atomic batch, fenced. `Ok(false)`
    /// when fenced (the worker stops; the supervisor decides whether this node still owns
    /// the partition).
    pub(super) async fn commit(
        &mut self,
        plan: &Plan,
        commit: Commit,
        versions: Vec<String>,
    ) -> Result<Landed, String> {
        let Commit { appends, state: writes, .. } = commit;
        let outputs = appends
            .into_iter()
            .flat_map(|a| {
                let (topic, partition) = (a.topic.name.clone(), a.partition);
                a.records.into_iter().map(move |r| (topic.clone(), partition, r))
            })
            .collect();
        // One message per key: the last write of the batch is the key's value.
        let mut last: std::collections::HashMap<&[u8], usize> = std::collections::HashMap::new();
        for (i, w) in writes.iter().enumerate() {
            last.insert(&w.key, i);
        }
        let state = writes
            .iter()
            .enumerate()
            .filter(|(i, w)| last.get(w.key.as_slice()) == Some(i))
            .map(|(_, w)| {
                let step = u16::from_be_bytes([w.key[4], w.key[5]]);
                let value = w.value.as_ref().map(|v| {
                    let mut b = w.expires_at_ms.to_be_bytes().to_vec();
                    b.extend_from_slice(v);
                    b
                });
                (step, w.key[10..].to_vec(), value)
            })
            .collect();
        let c = PartitionCommit { outputs, state, next_offset: self.pending, versions };
        match self.log.commit(self.partition, &mut self.fence, c).await {
            Ok(Committed::Visible) => {}
            // Committed; its outputs reach their sinks when the partition is taken over again.
            Ok(Committed::Landed(e)) => {
                tracing::warn!(pipeline = %plan.spec.name, partition = self.partition, error = %e, "committed, but forwarding the outputs failed; taking over again to forward them");
                self.fenced.store(true, Ordering::Relaxed);
                return Ok(Landed::ThenStop);
            }
            Err(ClusterError::Fenced(why)) => {
                tracing::warn!(pipeline = %plan.spec.name, partition = self.partition, "{why}");
                self.fenced.store(true, Ordering::Relaxed);
                return Ok(Landed::No);
            }
            // The same batch would fail the same way again: halt, saying why.
            Err(e @ (ClusterError::Unsupported(_) | ClusterError::Corrupt { .. })) => {
                return Err(format!("committing {}: {e}", self.describe()));
            }
            // JetStream did not answer (an election, a reconnection): the batch landed whole or
            // not at all, and the last commit says which. Take the partition over again.
            Err(e) => {
                tracing::warn!(pipeline = %plan.spec.name, partition = self.partition, error = %e, "commit unconfirmed; resuming from the last commit");
                self.fenced.store(true, Ordering::Relaxed);
                return Ok(Landed::No);
            }
        }
        self.offset = self.pending;
        if !writes.is_empty() {
            plan.store
                .cache_state(writes, Vec::new())
                .await
                .map_err(|e| format!("caching state of {}: {e}", self.describe()))?;
        }
        Ok(Landed::Yes)
    }
}

/// Whether a batch's commit landed.
pub(super) enum Landed {
    /// Landed; the worker goes on.
    Yes,
    /// Landed; the worker stops (the partition is taken over again).
    ThenStop,
    /// Refused or unconfirmed; the worker stops.
    No,
}

impl Pipelines {
    /// Run partition `p` of `running` whenever this node owns it, until `stop`.
    pub(super) async fn supervise(self: Arc<Self>, running: Arc<Running>, p: u32, stop: watch::Receiver<bool>) {
        let Some(cluster) = self.store.cluster().cloned() else { return };
        let name = running.plan.spec.name.clone();
        let log = loop {
            let plan = &running.plan;
            match CommitLog::open(cluster.clone(), &name, &plan.group, plan.source.name()).await {
                Ok(l) => break Arc::new(l),
                Err(e) => tracing::warn!(pipeline = %name, error = %e, "cannot open the commit stream; retrying"),
            }
            if wait(&stop, &mut cluster.membership(), Duration::from_secs(1)).await {
                return;
            }
        };
        let mut members = cluster.membership();
        loop {
            if *stop.borrow() {
                return;
            }
            if !cluster.owns(&name, p) {
                if wait(&stop, &mut members, Duration::from_secs(1)).await {
                    return;
                }
                continue;
            }
            let feed = match self.take_over(&cluster, &log, &running.plan, p).await {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(pipeline = %name, partition = p, error = %e, "takeover failed; retrying");
                    if wait(&stop, &mut members, Duration::from_secs(1)).await {
                        return;
                    }
                    continue;
                }
            };
            tracing::info!(pipeline = %name, partition = p, offset = feed.offset, "took over");
            let fenced = feed.fenced.clone();
            // The worker stops after its batch when the pipeline stops or ownership moves.
            let (tx, rx) = watch::channel(false);
            let watcher = tokio::spawn({
                let (cluster, name, mut stop, mut members) =
                    (cluster.clone(), name.clone(), stop.clone(), members.clone());
                async move {
                    while !*stop.borrow() && cluster.owns(&name, p) {
                        tokio::select! {
                            _ = stop.changed() => {}
                            _ = members.changed() => {}
                            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                        }
                    }
                    let _ = tx.send(true);
                }
            });
            let done = worker::run(&running.plan, p, &running, rx, worker::Feed::Cluster(Box::new(feed))).await;
            watcher.abort();
            if let Err(error) = done {
                self.halt(&running, error).await;
                return;
            }
            if fenced.load(Ordering::Relaxed) {
                tracing::warn!(pipeline = %name, partition = p, "stopped after a refused or unconfirmed commit; taking over again");
                if wait(&stop, &mut members, Duration::from_millis(200)).await {
                    return;
                }
            }
        }
    }

    /// Read partition `p`'s last commit and state (into the local cache) and build its feed.
    async fn take_over(
        &self,
        cluster: &Arc<Cluster>,
        log: &Arc<CommitLog>,
        plan: &Plan,
        p: u32,
    ) -> Result<ClusterFeed, String> {
        let t = log.takeover(p).await.map_err(|e| e.to_string())?;
        behind_versions(plan, &t.versions)?;
        let topic = plan.source.name().to_string();
        let prefixes =
            (0..plan.spec.steps.len()).map(|step| keys::state_prefix(plan.scope, step as u16, p).to_vec()).collect();
        let state: Vec<StateWrite> = t
            .state
            .into_iter()
            .filter(|(_, _, v)| v.len() >= 8)
            .map(|(step, key, v)| {
                let mut full = keys::state_prefix(plan.scope, step, p).to_vec();
                full.extend_from_slice(&key);
                let expires_at_ms = u64::from_be_bytes(v[..8].try_into().expect("8 bytes"));
                StateWrite { key: full, value: Some(v[8..].to_vec()), expires_at_ms }
            })
            .collect();
        // This node's cache of the partition's state becomes the committed state.
        self.store.cache_state(state, prefixes).await.map_err(|e| e.to_string())?;
        let offset = match t.next_offset {
            Some(o) => o,
            None => {
                let (start, end) = cluster.bounds(&topic, p).await.map_err(|e| e.to_string())?;
                match plan.spec.start {
                    StartPosition::Earliest => start,
                    StartPosition::Latest => end,
                }
            }
        };
        Ok(ClusterFeed {
            cluster: cluster.clone(),
            log: log.clone(),
            topic,
            partition: p,
            offset,
            pending: offset,
            fence: t.fence,
            fenced: Arc::new(AtomicBool::new(false)),
        })
    }
}

/// Refuse to run a partition on versions older than its last commit's (this node has not
/// installed the cluster's newest yet: the sync will, and the takeover is retried), so each
/// partition's plugin versions only move forward.
fn behind_versions(plan: &Plan, committed: &[String]) -> Result<(), String> {
    for (slot, label) in plan.slots.iter().zip(committed) {
        let Some((name, v)) = label.rsplit_once('@') else { continue };
        let (active, _) = slot.live();
        if name == slot.plugin && v.parse::<u32>().is_ok_and(|v| v > active.info.version) {
            return Err(format!("waiting for {label} to arrive here (this node runs {})", active.info.label()));
        }
    }
    Ok(())
}

/// Wait for a stop, a membership change or `most`; `true` if stopping.
async fn wait(stop: &watch::Receiver<bool>, members: &mut watch::Receiver<u64>, most: Duration) -> bool {
    let mut stop = stop.clone();
    tokio::select! {
        _ = stop.changed() => {}
        _ = members.changed() => {}
        _ = tokio::time::sleep(most) => {}
    }
    *stop.borrow()
}
