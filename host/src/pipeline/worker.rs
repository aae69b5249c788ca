//! The per-partition worker: read a batch, run it through every step, commit once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use super::{PipelineError, PipelineSpec, Pipelines, Running, StartPosition};
use crate::limits;
use crate::registry::{PluginInfo, Registry};
use crate::runtime::{Batch, Header, LoadedPlugin, Message, Outcome, PluginInstance, Runtime, StateScope};
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
            .map_err(|e| PipelineError::Invalid(format!("plugin compilation task failed: {e}")))??;
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
    pub(super) fn spawn(self, pipelines: Arc<Pipelines>, running: Arc<Running>) -> Vec<tokio::task::JoinHandle<()>> {
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
        self.steps
            .iter()
            .enumerate()
            .map(|(i, step)| {
                let scope = StateScope {
                    store: Some(self.store.clone()),
                    prefix: keys::state_prefix(self.scope, i as u16, partition).to_vec(),
                };
                let label = format!("{}/{} {}", self.spec.name, i + 1, step.info.label());
                let mut inst = self
                    .runtime
                    .instantiate(&step.loaded, &step.info.sandbox, label, scope)
                    .map_err(|e| format!("step {} ({}): {e}", i + 1, step.info.label()))?;
                inst.init(&step.config).map_err(|e| format!("step {} ({}): {e}", i + 1, step.info.label()))?;
                Ok(inst)
            })
            .collect()
    }
}

fn resolve_steps(registry: &Registry, spec: &PipelineSpec) -> Result<Vec<Step>, PipelineError> {
    let mut steps = Vec::with_capacity(spec.steps.len());
    for (i, s) in spec.steps.iter().enumerate() {
        let info = registry.resolve(&s.plugin)?;
        let loaded = registry.component(&info)?;
        let config: Vec<_> = s.config.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        // Prove init accepts the config on a throwaway instance with local state.
        let scope = StateScope { store: None, prefix: Vec::new() };
        let mut probe = registry
            .runtime()
            .instantiate(&loaded, &info.sandbox, format!("{} (check)", info.label()), scope)
            .map_err(|e| PipelineError::Step { step: i + 1, plugin: info.label(), message: e.to_string() })?;
        probe.init(&config).map_err(|e| PipelineError::Step { step: i + 1, plugin: info.label(), message: e.to_string() })?;
        steps.push(Step { info, loaded, config });
    }
    Ok(steps)
}

/// The worker loop of one partition. Returns only on stop (`Ok`) or on a failure that halts
/// the pipeline (`Err` with the reason).
async fn run_partition(plan: &Arc<Plan>, partition: u32, running: &Arc<Running>) -> Result<(), String> {
    let mut stop = running.stop.subscribe();
    let mut instances = {
        let plan = plan.clone();
        tokio::task::spawn_blocking(move || plan.instantiate(partition)).await.map_err(|e| e.to_string())??
    };
    let mut offset = start_offset(plan, partition).map_err(|e| e.to_string())?;
    let batch_max = plan.spec.batch_max_messages.unwrap_or(limits::PIPELINE_BATCH_MESSAGES);
    let part = plan.source.partition(partition).map_err(|e| e.to_string())?;
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let records = plan
            .store
            .read(&plan.source, partition, offset, batch_max, limits::PIPELINE_BATCH_BYTES)
            .map_err(|e| format!("reading partition {partition} of `{}`: {e}", plan.source.name))?;
        let Some(last) = records.last() else {
            tokio::select! {
                _ = part.wait_for(offset, Duration::from_secs(1)) => {}
                _ = stop.changed() => {}
            }
            continue;
        };
        let next = last.offset + 1;
        let processed = records.len() as u64;
        let (plan_c, insts) = (plan.clone(), instances);
        let (insts, result) = tokio::task::spawn_blocking(move || {
            let mut insts = insts;
            let r = run_batch(&plan_c, &mut insts, partition, records);
            (insts, r)
        })
        .await
        .map_err(|e| format!("worker task failed: {e}"))?;
        instances = insts;
        let mut done = result?;
        done.commit.offsets.push(OffsetCommit {
            group: plan.group.clone(),
            topic: plan.source.clone(),
            partition,
            next_offset: next,
        });
        plan.store.submit(done.commit).await.map_err(|e| format!("committing partition {partition}: {e}"))?;
        offset = next;
        let c = &running.counters;
        c.processed.fetch_add(processed, Ordering::Relaxed);
        c.emitted.fetch_add(done.emitted, Ordering::Relaxed);
        c.dropped.fetch_add(done.dropped, Ordering::Relaxed);
        c.batches.fetch_add(1, Ordering::Relaxed);
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

/// What a processed batch will commit.
struct Processed {
    commit: Commit,
    emitted: u64,
    dropped: u64,
}

/// Run one batch through every step. Any failure discards the batch's state writes and
/// returns the halt reason.
fn run_batch(plan: &Plan, insts: &mut [PluginInstance], partition: u32, records: Vec<StoredRecord>) -> Result<Processed, String> {
    let result = run_steps(plan, insts, partition, records);
    if result.is_err() {
        insts.iter_mut().for_each(PluginInstance::discard_state_writes);
    }
    let (sink, routed, dropped) = result?;
    let now = now_ms();
    let state = insts.iter_mut().flat_map(|i| i.take_state_writes(now)).collect();
    let emitted = (sink.len() + routed.len()) as u64;
    let appends = plan.route(partition, sink, routed)?;
    Ok(Processed { commit: Commit { appends, state, ..Commit::default() }, emitted, dropped })
}

type Routed = Vec<(String, Message)>;

/// The chain: each step's non-routed outputs are the next step's inputs.
fn run_steps(
    plan: &Plan,
    insts: &mut [PluginInstance],
    partition: u32,
    records: Vec<StoredRecord>,
) -> Result<(Vec<Message>, Routed, u64), String> {
    let mut msgs: Vec<Message> = records.into_iter().map(|r| to_message(r, partition)).collect();
    let mut routed = Vec::new();
    let mut dropped = 0u64;
    for (i, inst) in insts.iter_mut().enumerate() {
        if msgs.is_empty() {
            break;
        }
        let label = plan.steps[i].info.label();
        let batch = Batch { topic: plan.source.name.clone(), messages: msgs };
        let outcomes = inst.process(&batch).map_err(|e| {
            let (first, last) = (batch.messages[0].offset, batch.messages[batch.messages.len() - 1].offset);
            format!("step {} ({label}) failed on partition {partition}, offsets {first}..={last}: {e}", i + 1)
        })?;
        let mut next = Vec::with_capacity(batch.messages.len());
        for (input, outcome) in batch.messages.into_iter().zip(outcomes) {
            match outcome {
                Outcome::Emit(outputs) => {
                    for out in outputs {
                        let msg = Message {
                            key: out.key,
                            value: out.value,
                            headers: out.headers,
                            timestamp_ms: input.timestamp_ms,
                            partition: input.partition,
                            offset: input.offset,
                        };
                        match out.topic {
                            Some(t) => routed.push((t, msg)),
                            None => next.push(msg),
                        }
                    }
                }
                Outcome::Drop => dropped += 1,
                Outcome::Fail(f) => {
                    return Err(format!(
                        "step {} ({label}) failed at offset {} of partition {partition}: {}{}",
                        i + 1,
                        input.offset,
                        f.message,
                        if f.retryable { " (retryable)" } else { "" }
                    ));
                }
            }
        }
        msgs = next;
    }
    Ok((msgs, routed, dropped))
}

impl Plan {
    /// Group outputs into per-partition appends, in output order. Keyed outputs go by key
    /// hash; keyless ones to the source partition's counterpart, which keeps their order.
    fn route(&self, partition: u32, sink: Vec<Message>, routed: Routed) -> Result<Vec<Append>, String> {
        let mut appends: Vec<Append> = Vec::new();
        let mut index: HashMap<(u32, u32), usize> = HashMap::new();
        let mut topics: HashMap<String, Arc<Topic>> = HashMap::new();
        let mut push = |topic: &Arc<Topic>, msg: Message| {
            let p = match &msg.key {
                Some(k) => topic.partition_for(Some(k)),
                None => partition % topic.partition_count(),
            };
            let i = *index.entry((topic.id, p)).or_insert_with(|| {
                appends.push(Append { topic: topic.clone(), partition: p, records: Vec::new() });
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
        headers: r.headers.into_iter().map(|(name, value)| Header { name, value }).collect(),
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
