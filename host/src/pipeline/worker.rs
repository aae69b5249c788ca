//! The per-partition worker: read a batch, run it through every step, commit once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use super::{PipelineError, PipelineSpec, Pipelines, Running, StartPosition};
use crate::limits;
use crate::registry::{PluginInfo, Registry};
use crate::runtime::{
    Batch, Header, LoadedPlugin, Message, Outcome, PluginInstance, Runtime, StateScope,
};
use crate::storage::{Append, Commit, NewRecord, OffsetCommit, Store, StoredRecord, Topic, keys};
use crate::types::now_ms;

/// A step with its plugin resolved and compiled.
struct Step {
    info: PluginInfo,
    loaded: LoadedPlugin,
    config: Vec<(String, String)>,
}

/// Everything a pipeline's workers share.
pub(super) struct Plan {
    store: Arc<Store>,
    runtime: Arc<Runtime>,
    spec: PipelineSpec,
    group: String,
    scope: u32,
    source: Arc<Topic>,
    sink: Arc<Topic>,
    steps: Vec<Step>,
}

impl Plan {
    /// Resolve topics and plugins, compile each step, and prove each step's `init` accepts its
    /// config — before anything is stored or started.
    pub(super) async fn prepare(
        store: &Arc<Store>,
        registry: &Arc<Registry>,
        spec: &PipelineSpec,
        scope: u32,
    ) -> Result<Plan, PipelineError> {
        let source = store.topic(&spec.source)?;
        let sink = store.topic(&spec.sink)?;
        let (registry_c, spec_c) = (registry.clone(), spec.clone());
        let steps = tokio::task::spawn_blocking(move || resolve_steps(&registry_c, &spec_c))
            .await
            .map_err(|e| {
                PipelineError::Invalid(format!("plugin compilation task failed: {e}"))
            })??;
        let plan = Plan {
            store: store.clone(),
            runtime: registry.runtime().clone(),
            spec: spec.clone(),
            group: spec.group(),
            scope,
            source,
            sink,
            steps,
        };
        Ok(plan)
    }

    /// `name@version` of each step.
    pub(super) fn plugin_labels(&self) -> Vec<String> {
        self.steps.iter().map(|s| s.info.label()).collect()
    }

    /// One worker task per source partition.
    pub(super) fn spawn(
        self,
        pipelines: Arc<Pipelines>,
        running: Arc<Running>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let plan = Arc::new(self);
        (0..plan.source.partition_count())
            .map(|p| {
                let (plan, pipelines, running) = (plan.clone(), pipelines.clone(), running.clone());
                tokio::spawn(async move {
                    if let Err(error) = run_partition(&plan, p, &running).await {
                        pipelines.halt(&running, error).await;
                    }
                })
            })
            .collect()
    }

    /// Instances of every step for one partition, initialised.
    fn instantiate(&self, partition: u32) -> Result<Vec<PluginInstance>, String> {
        (0..self.steps.len())
            .map(|i| self.instantiate_step(i, partition))
            .collect()
    }

    /// A fresh, initialised instance of step `i` for one partition.
    fn instantiate_step(&self, i: usize, partition: u32) -> Result<PluginInstance, String> {
        let step = &self.steps[i];
        let scope = StateScope {
            store: Some(self.store.clone()),
            prefix: keys::state_prefix(self.scope, i as u16, partition).to_vec(),
        };
        let label = format!("{}/{} {}", self.spec.name, i + 1, step.info.label());
        let mut inst = self
            .runtime
            .instantiate(&step.loaded, &step.info.sandbox, label, scope)
            .map_err(|e| format!("step {} ({}): {e}", i + 1, step.info.label()))?;
        inst.init(&step.config)
            .map_err(|e| format!("step {} ({}): {e}", i + 1, step.info.label()))?;
        Ok(inst)
    }
}

fn resolve_steps(registry: &Registry, spec: &PipelineSpec) -> Result<Vec<Step>, PipelineError> {
    let mut steps = Vec::with_capacity(spec.steps.len());
    for (i, s) in spec.steps.iter().enumerate() {
        let info = registry.resolve(&s.plugin)?;
        let loaded = registry.component(&info)?;
        let config: Vec<_> = s
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // Prove init accepts the config on a throwaway instance with local state.
        let scope = StateScope {
            store: None,
            prefix: Vec::new(),
        };
        let mut probe = registry
            .runtime()
            .instantiate(
                &loaded,
                &info.sandbox,
                format!("{} (check)", info.label()),
                scope,
            )
            .map_err(|e| PipelineError::Step {
                step: i + 1,
                plugin: info.label(),
                message: e.to_string(),
            })?;
        probe.init(&config).map_err(|e| PipelineError::Step {
            step: i + 1,
            plugin: info.label(),
            message: e.to_string(),
        })?;
        steps.push(Step {
            info,
            loaded,
            config,
        });
    }
    Ok(steps)
}

/// The worker loop of one partition. Returns only on stop (`Ok`) or on a failure that halts
/// the pipeline (`Err` with the reason), after committing everything before the failure.
async fn run_partition(
    plan: &Arc<Plan>,
    partition: u32,
    running: &Arc<Running>,
) -> Result<(), String> {
    let mut stop = running.stop.subscribe();
    let mut instances = {
        let plan = plan.clone();
        tokio::task::spawn_blocking(move || plan.instantiate(partition))
            .await
            .map_err(|e| e.to_string())??
    };
    let mut offset = start_offset(plan, partition).map_err(|e| e.to_string())?;
    let batch_max = plan
        .spec
        .batch_max_messages
        .unwrap_or(limits::PIPELINE_BATCH_MESSAGES);
    let part = plan
        .source
        .partition(partition)
        .map_err(|e| e.to_string())?;
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let records = plan
            .store
            .read(
                &plan.source,
                partition,
                offset,
                batch_max,
                limits::PIPELINE_BATCH_BYTES,
            )
            .map_err(|e| {
                format!(
                    "reading partition {partition} of `{}`: {e}",
                    plan.source.name
                )
            })?;
        if records.is_empty() {
            tokio::select! {
                _ = part.wait_for(offset, Duration::from_secs(1)) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let (plan_c, insts) = (plan.clone(), instances);
        let (insts, done) = tokio::task::spawn_blocking(move || {
            let mut insts = insts;
            let done = run_batch(&plan_c, &mut insts, partition, records);
            (insts, done)
        })
        .await
        .map_err(|e| format!("worker task failed: {e}"))?;
        instances = insts;
        let Done {
            mut commit,
            next_offset,
            processed,
            emitted,
            dropped,
            failure,
        } = done;
        if next_offset > offset {
            commit.offsets.push(OffsetCommit {
                group: plan.group.clone(),
                topic: plan.source.clone(),
                partition,
                next_offset,
            });
            plan.store
                .submit(commit)
                .await
                .map_err(|e| format!("committing partition {partition}: {e}"))?;
            offset = next_offset;
            let c = &running.counters;
            c.processed.fetch_add(processed, Ordering::Relaxed);
            c.emitted.fetch_add(emitted, Ordering::Relaxed);
            c.dropped.fetch_add(dropped, Ordering::Relaxed);
            c.batches.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(reason) = failure {
            return Err(reason);
        }
    }
}

/// The committed offset, or the configured start.
fn start_offset(plan: &Plan, partition: u32) -> Result<u64, crate::storage::StoreError> {
    let committed = plan.store.committed(&plan.group, &plan.source)?;
    let p = plan.source.partition(partition)?;
    Ok(match committed[partition as usize] {
        Some(o) => o,
        None => match plan.spec.start {
            StartPosition::Earliest => p.log_start(),
            StartPosition::Latest => p.high_watermark(),
        },
    })
}

/// What a processed batch commits, and where processing stopped.
struct Done {
    /// Outputs and state of the processed prefix of the batch (offsets added by the caller).
    commit: Commit,
    /// The source offset to commit: one past the last processed input.
    next_offset: u64,
    processed: u64,
    emitted: u64,
    dropped: u64,
    /// Why processing stopped before the end of the batch, naming step, plugin and offset.
    failure: Option<String>,
}

/// A step's failure on specific input.
struct StepFailure {
    step: usize,
    /// Offset of the input that failed, when known (a `fail` outcome; a single-message run).
    offset: Option<u64>,
    error: String,
}

/// Run a batch through every step. The fast path is one component call per step for the
/// whole batch. If anything fails, the batch's effects are discarded and it is re-run one
/// message at a time on fresh instances, so the failure is pinned to one offset and every
/// message before it is committed; nothing after it is.
fn run_batch(
    plan: &Plan,
    insts: &mut [PluginInstance],
    partition: u32,
    records: Vec<StoredRecord>,
) -> Done {
    let first = records[0].offset;
    let last = records[records.len() - 1].offset;
    let n = records.len() as u64;
    let slow = records.clone();
    match run_steps(plan, insts, partition, records) {
        Ok(out) => plan.finish(insts, partition, out, last + 1, n, None),
        Err(_) => {
            insts
                .iter_mut()
                .for_each(PluginInstance::discard_state_writes);
            run_one_by_one(plan, insts, partition, slow, first)
        }
    }
}

fn run_one_by_one(
    plan: &Plan,
    insts: &mut [PluginInstance],
    partition: u32,
    records: Vec<StoredRecord>,
    first: u64,
) -> Done {
    let mut acc = Outputs::default();
    let mut next = first;
    let mut processed = 0;
    for rec in records {
        let offset = rec.offset;
        if let Err(reason) = refresh(plan, insts, partition) {
            return plan.finish(insts, partition, acc, next, processed, Some(reason));
        }
        match run_steps(plan, insts, partition, vec![rec]) {
            Ok(out) => {
                insts.iter_mut().for_each(PluginInstance::checkpoint);
                acc.append(out);
                next = offset + 1;
                processed += 1;
            }
            Err(f) => {
                let step = &plan.steps[f.step];
                let reason = format!(
                    "step {} ({}) failed at offset {} of partition {partition}: {}",
                    f.step + 1,
                    step.info.label(),
                    f.offset.unwrap_or(offset),
                    f.error
                );
                // Only this message's state writes are dropped; earlier messages' stay.
                insts.iter_mut().for_each(PluginInstance::rollback);
                return plan.finish(insts, partition, acc, next, processed, Some(reason));
            }
        }
    }
    plan.finish(insts, partition, acc, next, processed, None)
}

/// Replace instances a trap left unusable.
fn refresh(plan: &Plan, insts: &mut [PluginInstance], partition: u32) -> Result<(), String> {
    for (i, inst) in insts.iter_mut().enumerate() {
        if inst.is_poisoned() {
            *inst = plan.instantiate_step(i, partition)?;
        }
    }
    Ok(())
}

/// Outputs of a run: to the sink, routed to named topics, and how many inputs were dropped.
#[derive(Default)]
struct Outputs {
    sink: Vec<Message>,
    routed: Routed,
    dropped: u64,
}

impl Outputs {
    fn append(&mut self, other: Outputs) {
        self.sink.extend(other.sink);
        self.routed.extend(other.routed);
        self.dropped += other.dropped;
    }
}

type Routed = Vec<(String, Message)>;

/// The chain: each step's non-routed outputs are the next step's inputs.
fn run_steps(
    plan: &Plan,
    insts: &mut [PluginInstance],
    partition: u32,
    records: Vec<StoredRecord>,
) -> Result<Outputs, StepFailure> {
    let mut msgs: Vec<Message> = records
        .into_iter()
        .map(|r| to_message(r, partition))
        .collect();
    let mut out = Outputs::default();
    for (i, inst) in insts.iter_mut().enumerate() {
        if msgs.is_empty() {
            break;
        }
        let batch = Batch {
            topic: plan.source.name.clone(),
            messages: msgs,
        };
        let outcomes = inst.process(&batch).map_err(|e| StepFailure {
            step: i,
            offset: None,
            error: e.to_string(),
        })?;
        let mut next = Vec::with_capacity(batch.messages.len());
        for (input, outcome) in batch.messages.into_iter().zip(outcomes) {
            match outcome {
                Outcome::Emit(outputs) => {
                    for o in outputs {
                        let msg = Message {
                            key: o.key,
                            value: o.value,
                            headers: o.headers,
                            timestamp_ms: input.timestamp_ms,
                            partition: input.partition,
                            offset: input.offset,
                        };
                        match o.topic {
                            Some(t) => out.routed.push((t, msg)),
                            None => next.push(msg),
                        }
                    }
                }
                Outcome::Drop => out.dropped += 1,
                Outcome::Fail(f) => {
                    let retry = if f.retryable { " (retryable)" } else { "" };
                    return Err(StepFailure {
                        step: i,
                        offset: Some(input.offset),
                        error: format!("{}{retry}", f.message),
                    });
                }
            }
        }
        msgs = next;
    }
    out.sink = msgs;
    Ok(out)
}

impl Plan {
    /// Turn a run's outputs and the instances' state writes into a commit.
    fn finish(
        &self,
        insts: &mut [PluginInstance],
        partition: u32,
        out: Outputs,
        next_offset: u64,
        processed: u64,
        failure: Option<String>,
    ) -> Done {
        let now = now_ms();
        let state = insts
            .iter_mut()
            .flat_map(|i| i.take_state_writes(now))
            .collect();
        let emitted = (out.sink.len() + out.routed.len()) as u64;
        let dropped = out.dropped;
        match self.route(partition, out.sink, out.routed) {
            Ok(appends) => Done {
                commit: Commit {
                    appends,
                    state,
                    ..Commit::default()
                },
                next_offset,
                processed,
                emitted,
                dropped,
                failure,
            },
            // Routing to a missing topic fails the whole batch: nothing of it commits.
            Err(reason) => Done {
                commit: Commit::default(),
                next_offset: 0,
                processed: 0,
                emitted: 0,
                dropped: 0,
                failure: Some(reason),
            },
        }
    }

    /// Group outputs into per-partition appends, in output order. Keyed outputs go by key
    /// hash; keyless ones to the source partition's counterpart, which keeps their order.
    fn route(
        &self,
        partition: u32,
        sink: Vec<Message>,
        routed: Routed,
    ) -> Result<Vec<Append>, String> {
        let mut appends: Vec<Append> = Vec::new();
        let mut index: HashMap<(u32, u32), usize> = HashMap::new();
        let mut topics: HashMap<String, Arc<Topic>> = HashMap::new();
        let mut push = |topic: &Arc<Topic>, msg: Message| {
            let p = match &msg.key {
                Some(k) => topic.partition_for(Some(k)),
                None => partition % topic.partition_count(),
            };
            let i = *index.entry((topic.id, p)).or_insert_with(|| {
                appends.push(Append {
                    topic: topic.clone(),
                    partition: p,
                    records: Vec::new(),
                });
                appends.len() - 1
            });
            appends[i].records.push(to_record(msg));
        };
        for msg in sink {
            push(&self.sink, msg);
        }
        for (name, msg) in routed {
            let topic = match topics.get(&name) {
                Some(t) => t.clone(),
                None => {
                    let t = self.store.topic(&name).map_err(|_| {
                        format!("a step routed an output to topic `{name}`, which does not exist; create it with `weir topic create {name}`")
                    })?;
                    topics.insert(name, t.clone());
                    t
                }
            };
            push(&topic, msg);
        }
        Ok(appends)
    }
}

fn to_message(r: StoredRecord, partition: u32) -> Message {
    Message {
        key: r.key.map(|k| k.to_vec()),
        value: r.value.to_vec(),
        headers: r
            .headers
            .into_iter()
            .map(|(name, value)| Header { name, value })
            .collect(),
        timestamp_ms: r.timestamp_ms,
        partition,
        offset: r.offset,
    }
}

fn to_record(m: Message) -> NewRecord {
    NewRecord {
        key: m.key.map(Bytes::from),
        value: Bytes::from(m.value),
        headers: m.headers.into_iter().map(|h| (h.name, h.value)).collect(),
    }
}
