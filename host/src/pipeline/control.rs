//! Operating a pipeline after creation: apply a changed spec, pause and resume, reset to an
//! offset or a time for replay, and inspect or edit step state.

use std::sync::Arc;

use super::plan::{self, Active};
use super::{
    ApplyChange, PipelineError, PipelineRecord, PipelineSpec, PipelineStatus, Pipelines, ResetTarget, RunState,
};
use crate::storage::{Commit, OffsetCommit, StateWrite, keys};
use crate::types::now_ms;

/// Most state entries one listing returns.
pub const STATE_LIST_MAX: usize = 10_000;

/// One state entry of a step: in which partition, under which key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEntry {
    /// Source partition the entry belongs to.
    pub partition: u32,
    /// The plugin's key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
}

impl Pipelines {
    /// Create the pipeline, or bring an existing one to `spec`: nothing if equal; a hot swap
    /// if only step versions differ; otherwise a restart at the committed offsets, with the
    /// pipeline's state kept.
    /// The pipeline then acts with `owner`'s grants.
    pub async fn apply(
        self: &Arc<Self>,
        spec: PipelineSpec,
        owner: Option<String>,
    ) -> Result<(PipelineStatus, ApplyChange), PipelineError> {
        let Ok(running) = self.get(&spec.name) else {
            return Ok((self.create(spec, owner).await?, ApplyChange::Created));
        };
        let old = running.record.lock().expect("record").clone();
        if old.spec == spec {
            if old.owner != owner {
                self.set_owner(&running, owner).await?;
            }
            return Ok((self.status(&spec.name).await?, ApplyChange::Unchanged));
        }
        self.validate(&spec).await?;
        if old.spec.differs_only_in_versions(&spec) {
            self.swap_steps(&running, &spec).await?;
            let record = {
                let mut record = running.record.lock().expect("record");
                record.spec = spec.clone();
                record.clone()
            };
            self.persist(&record).await?;
            self.set_owner(&running, owner).await?;
            return Ok((self.status(&spec.name).await?, ApplyChange::Swapped));
        }
        let mut record = running.record.lock().expect("record").clone();
        // The new spec is proven to start before the old pipeline stops.
        plan::Plan::prepare(self, &spec, record.id).await?;
        if spec.on_error == super::ErrorPolicy::DeadLetter {
            self.ensure_dead_letter_topic(&spec).await?;
        }
        self.stop(&spec.name).await;
        record.spec = spec;
        record.halted = None;
        record.owner = owner;
        self.persist(&record).await?;
        let name = record.spec.name.clone();
        self.launch(record).await?;
        Ok((self.status(&name).await?, ApplyChange::Restarted))
    }

    /// Point each changed step at its new reference (`NAME` or `NAME@V`) after proving it
    /// starts; each partition picks it up at its next batch boundary.
    pub(super) async fn swap_steps(
        &self,
        running: &Arc<super::Running>,
        spec: &PipelineSpec,
    ) -> Result<(), PipelineError> {
        let mut changes = Vec::new();
        for (i, step) in spec.steps.iter().enumerate() {
            let info = self.registry.resolve(&step.plugin)?;
            let slot = &running.plan.slots[i];
            if slot.live().0.info.version == info.version && slot.is_pinned() == step.is_pinned() {
                continue;
            }
            let (registry, info_c) = (self.registry.clone(), info.clone());
            let loaded = tokio::task::spawn_blocking(move || registry.component(&info_c))
                .await
                .map_err(|e| PipelineError::Invalid(e.to_string()))??;
            let active = Arc::new(Active { info, loaded });
            let (runtime, spec_c, active_c) = (self.registry.runtime().clone(), spec.clone(), active.clone());
            tokio::task::spawn_blocking(move || plan::probe(&runtime, &spec_c, i, &active_c))
                .await
                .map_err(|e| PipelineError::Invalid(e.to_string()))?
                .map_err(|message| PipelineError::Step { step: i + 1, plugin: active.info.label(), message })?;
            changes.push((i, active, step.is_pinned()));
        }
        for (i, active, pinned) in changes {
            let slot = &running.plan.slots[i];
            slot.set_pinned(pinned);
            slot.set_live(active);
        }
        Ok(())
    }

    async fn set_owner(&self, running: &super::Running, owner: Option<String>) -> Result<(), PipelineError> {
        let record = {
            let mut record = running.record.lock().expect("record");
            record.owner = owner;
            record.clone()
        };
        self.persist(&record).await
    }

    /// Stop processing after the in-flight batches; stays paused across restarts.
    pub async fn pause(&self, name: &str) -> Result<PipelineStatus, PipelineError> {
        let running = self.get(name)?;
        let record = {
            let mut record = running.record.lock().expect("record");
            record.paused = true;
            record.clone()
        };
        Self::stop_workers(&running).await;
        self.persist(&record).await?;
        self.status(name).await
    }

    /// Continue a paused or halted pipeline at its committed offsets (a halted pipeline
    /// retries the message it halted on).
    pub async fn resume(self: &Arc<Self>, name: &str) -> Result<PipelineStatus, PipelineError> {
        let running = self.get(name)?;
        if running.state() == RunState::Running {
            return self.status(name).await;
        }
        let (spec, owner) = {
            let record = running.record.lock().expect("record");
            (record.spec.clone(), record.owner.clone())
        };
        self.owner_check(&spec, owner.as_deref()).map_err(PipelineError::Forbidden)?;
        Self::stop_workers(&running).await;
        let record = {
            let mut record = running.record.lock().expect("record");
            record.paused = false;
            record.halted = None;
            record.clone()
        };
        self.persist(&record).await?;
        *running.last_failure.lock().expect("last failure") = None;
        self.spawn_workers(&running);
        self.status(name).await
    }

    /// Move the source offsets back (or forward) for replay, optionally forgetting all state.
    /// The pipeline stops its workers, commits the new offsets, and resumes (unless paused).
    pub async fn reset(
        self: &Arc<Self>,
        name: &str,
        to: ResetTarget,
        reset_state: bool,
    ) -> Result<PipelineStatus, PipelineError> {
        let running = self.get(name)?;
        let plan = &running.plan;
        let Some(topic) = plan.source.topic() else {
            return Err(PipelineError::Invalid(format!(
                "pipeline `{name}` reads a queue; a queue has no offsets to reset"
            )));
        };
        Self::stop_workers(&running).await;
        let mut offsets = Vec::new();
        for (p, (start, end)) in self.store.all_bounds(topic).await?.into_iter().enumerate() {
            let offset = match to {
                ResetTarget::Offset(o) => o.clamp(start, end),
                ResetTarget::Time(t) => self.store.offset_for_time(topic, p as u32, t).await?,
            };
            offsets.push(offset);
        }
        self.commit_reset(plan, offsets, reset_state).await?;
        let record = {
            let mut record = running.record.lock().expect("record");
            record.halted = None;
            record.resets += 1;
            record.clone()
        };
        self.persist(&record).await?;
        if !record.paused {
            self.spawn_workers(&running);
        }
        self.status(name).await
    }

    /// Commit `offsets` as the source partitions' progress, forgetting all state if asked:
    /// one write of the group's offsets on a single node; in a cluster, a fenced commit per
    /// partition, as a batch of the pipeline would commit it.
    async fn commit_reset(&self, plan: &plan::Plan, offsets: Vec<u64>, reset_state: bool) -> Result<(), PipelineError> {
        let topic = plan.source.topic().expect("a reset pipeline reads a topic");
        if let Some(cluster) = self.store.cluster() {
            return super::cluster::reset(cluster, plan, offsets, reset_state).await;
        }
        let offsets = offsets
            .into_iter()
            .enumerate()
            .map(|(p, next_offset)| OffsetCommit {
                group: plan.group.clone(),
                topic: topic.clone(),
                partition: p as u32,
                next_offset,
            })
            .collect();
        let delete_state_prefixes =
            if reset_state { vec![keys::state_scope_prefix(plan.scope).to_vec()] } else { Vec::new() };
        self.store.submit(Commit { offsets, delete_state_prefixes, ..Commit::default() }).await?;
        Ok(())
    }

    /// The value of `key` in step `step` (from 1), in every partition that has it.
    pub async fn state_get(&self, name: &str, step: usize, key: &[u8]) -> Result<Vec<StateEntry>, PipelineError> {
        let (running, record, partitions) = self.state_scope(name, step)?;
        if let Some(cluster) = self.store.cluster() {
            let all = super::cluster::state(cluster, &running.plan, (step - 1) as u16, now_ms()).await?;
            return Ok(all.into_iter().filter(|(_, k, _)| k == key).map(entry).collect());
        }
        let mut out = Vec::new();
        for p in 0..partitions {
            let mut full = keys::state_prefix(record.id, (step - 1) as u16, p).to_vec();
            full.extend_from_slice(key);
            if let Some(value) = self.store.state_get(&full, now_ms())? {
                out.push(StateEntry { partition: p, key: key.to_vec(), value });
            }
        }
        Ok(out)
    }

    /// Entries of step `step` whose key starts with `prefix`, at most `limit`.
    pub async fn state_list(
        &self,
        name: &str,
        step: usize,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<StateEntry>, PipelineError> {
        let (running, record, partitions) = self.state_scope(name, step)?;
        let limit = limit.clamp(1, STATE_LIST_MAX);
        if let Some(cluster) = self.store.cluster() {
            let mut all = super::cluster::state(cluster, &running.plan, (step - 1) as u16, now_ms()).await?;
            all.retain(|(_, k, _)| k.starts_with(prefix));
            all.sort();
            return Ok(all.into_iter().take(limit).map(entry).collect());
        }
        let mut out = Vec::new();
        for p in 0..partitions {
            let scope = keys::state_prefix(record.id, (step - 1) as u16, p);
            let mut full = scope.to_vec();
            full.extend_from_slice(prefix);
            for (k, value) in self.store.state_scan(&full, now_ms(), limit - out.len())? {
                out.push(StateEntry { partition: p, key: k[scope.len()..].to_vec(), value });
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Delete `key` from step `step` in every partition; returns how many entries went. In a
    /// cluster each deletion is a fenced commit of the partition, so its owner takes it in.
    pub async fn state_delete(&self, name: &str, step: usize, key: &[u8]) -> Result<usize, PipelineError> {
        let (running, record, _) = self.state_scope(name, step)?;
        if let Some(cluster) = self.store.cluster() {
            return Ok(super::cluster::forget_state(cluster, &running.plan, (step - 1) as u16, key).await?);
        }
        let found = self.state_get(name, step, key).await?;
        let state = found
            .iter()
            .map(|e| {
                let mut full = keys::state_prefix(record.id, (step - 1) as u16, e.partition).to_vec();
                full.extend_from_slice(key);
                StateWrite { key: full, value: None, expires_at_ms: 0 }
            })
            .collect();
        self.store.submit(Commit { state, ..Commit::default() }).await?;
        Ok(found.len())
    }

    #[allow(clippy::type_complexity)]
    fn state_scope(
        &self,
        name: &str,
        step: usize,
    ) -> Result<(Arc<super::Running>, PipelineRecord, u32), PipelineError> {
        let running = self.get(name)?;
        let record = running.record.lock().expect("record").clone();
        if step == 0 || step > record.spec.steps.len() {
            return Err(PipelineError::Invalid(format!(
                "pipeline `{name}` has {} step(s); steps are numbered from 1, got {step}",
                record.spec.steps.len()
            )));
        }
        let workers = running.plan.source.workers(&running.plan.spec);
        Ok((running, record, workers))
    }
}

fn entry((partition, key, value): (u32, Vec<u8>, Vec<u8>)) -> StateEntry {
    StateEntry { partition, key, value }
}
