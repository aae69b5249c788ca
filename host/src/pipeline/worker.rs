//! The per-partition worker: at each batch boundary pick up version swaps, read a batch, run
//! it through every step (and any shadow), apply the failure policy, commit once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use bytes::Bytes;

use super::plan::{Active, Plan};
use super::trace::{self, StepTrace};
use super::{ErrorPolicy, Running, StartPosition, StepStats};
use crate::limits;
use crate::runtime::{Batch, Message, Outcome, PluginError, PluginInstance};
use crate::storage::{Append, Commit, NewRecord, OffsetCommit, StoreError, StoredRecord, Topic};
use crate::types::now_ms;
use weir_sdk::headers;

/// One step as a worker holds it: its instance, the generation it was built for, and the
/// shadow instance beside it.
pub(super) struct StepInstance {
    live: PluginInstance,
    active: Arc<Active>,
    shadow: Option<(PluginInstance, Arc<Active>)>,
    generation: u64,
}

/// The worker loop: at each batch boundary pick up version swaps, take a batch from `feed`,
/// run it, and commit its outputs, state and progress in one write. Returns only on stop
/// (`Ok`) or on a failure that halts the pipeline (`Err` with the reason), after committing
/// everything before the failure.
pub(super) async fn run(
    plan: &Arc<Plan>,
    worker: u32,
    running: &Arc<Running>,
    mut stop: watch::Receiver<bool>,
    mut feed: Feed,
) -> Result<(), String> {
    let mut steps: Vec<StepInstance> = {
        let plan = plan.clone();
        tokio::task::spawn_blocking(move || instantiate_all(&plan, worker)).await.map_err(|e| e.to_string())??
    };
    let batch_max = plan.spec.batch_max_messages.unwrap_or(limits::PIPELINE_BATCH_MESSAGES);
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        // Below the disk's free-space floor outputs cannot be stored: wait, read nothing.
        if let Err(e) = plan.store.check_space() {
            running.note_failure(format!("waiting for disk space: {e}"));
            wait_for_space(plan, &mut stop).await;
            continue;
        }
        let Some((records, copy)) = feed.next(plan, batch_max, &mut stop).await? else { continue };
        let taken = Instant::now();
        let permit = running.permits.clone().acquire_owned().await.map_err(|e| e.to_string())?;
        let (plan_c, running_c, stop_c) = (plan.clone(), running.clone(), stop.clone());
        let (back, done) = tokio::task::spawn_blocking(move || {
            let mut steps = steps;
            // The batch boundary: the previous batch committed on the old version.
            swap_if_needed(&plan_c, &running_c, &mut steps, worker);
            let done = run_batch(&plan_c, &running_c, &mut steps, worker, records, copy, &stop_c);
            (steps, done)
        })
        .await
        .map_err(|e| format!("worker task failed: {e}"))?;
        drop(permit);
        steps = back;
        running.counters.note_memory(worker, steps.iter().map(|s| s.live.memory_bytes() as u64).collect());
        let Done { mut commit, next_offset, counts, failure } = done;
        let position = feed.position();
        if feed.settle(plan, &mut commit, next_offset)? {
            let traced = trace::traced_in(&commit);
            let submitted = Instant::now();
            let versions = steps.iter().map(|s| s.active.info.label()).collect();
            match feed.commit(plan, commit, versions, || running.counters.add(&counts)).await? {
                Committed::Yes => {}
                Committed::Stop => return Ok(()),
                // The disk filled since the check above: nothing of the batch was stored. Read
                // it again once space returns, with fresh instances (their memory saw it).
                Committed::NoSpace(why) => {
                    running.note_failure(format!("batch not stored, to be run again: {why}"));
                    feed.rewind(position).await;
                    wait_for_space(plan, &mut stop).await;
                    let plan_c = plan.clone();
                    steps = tokio::task::spawn_blocking(move || instantiate_all(&plan_c, worker))
                        .await
                        .map_err(|e| e.to_string())??;
                    continue;
                }
            }
            running.counters.observe_batch(taken.elapsed());
            trace::export_commits(&plan.spec.name, traced, submitted.elapsed());
        }
        if let Some(reason) = failure {
            feed.abandon().await;
            return Err(reason);
        }
    }
}

/// Wait until the disk is back above its free-space floor (or the worker is stopped).
async fn wait_for_space(plan: &Plan, stop: &mut watch::Receiver<bool>) {
    while plan.store.check_space().is_err() && !*stop.borrow() {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = stop.changed() => {}
        }
    }
}

/// What became of a batch's commit.
enum Committed {
    /// Stored.
    Yes,
    /// Refused because another node took the partition over; the worker stops.
    Stop,
    /// Refused whole for lack of disk space; run the batch again when space returns.
    NoSpace(String),
}

/// Where a worker's batches come from, and how it records what it dealt with in the batch's
/// commit: a topic partition (the group's offset) or a queue (acks of the deliveries).
pub(super) enum Feed {
    /// One partition of a topic source, from the committed offset.
    Partition {
        /// The topic.
        topic: Arc<Topic>,
        /// The partition.
        partition: u32,
        /// Next offset to read (and committed so far).
        offset: u64,
    },
    /// Cluster mode: one partition of a topic in JetStream, owned by this node.
    Cluster(Box<super::cluster::ClusterFeed>),
    /// A queue source: one of its competing workers.
    Queue {
        /// The queues.
        queues: Arc<crate::queue::Queues>,
        /// The queue.
        queue: String,
        /// Receipts of the batch in hand.
        receipts: Vec<String>,
        /// How many of them the batch dealt with.
        dealt: usize,
    },
}

impl Feed {
    /// The feed of `partition` of the plan's topic, at the committed offset.
    pub(super) async fn partition(plan: &Plan, partition: u32) -> Result<Feed, String> {
        let topic = plan.source.topic().ok_or("a partition worker needs a topic source")?.clone();
        let offset = start_offset(plan, &topic, partition).await.map_err(|e| e.to_string())?;
        Ok(Feed::Partition { topic, partition, offset })
    }

    /// Commit a processed batch — its outputs, state and progress as one unit — and call
    /// `counted` once it is submitted (a status that sees the new offset then also sees the
    /// batch's counts).
    async fn commit(
        &mut self,
        plan: &Plan,
        commit: Commit,
        versions: Vec<String>,
        counted: impl FnOnce(),
    ) -> Result<Committed, String> {
        if let Feed::Cluster(c) = self {
            use super::cluster::Landed;
            let landed = c.commit(plan, commit, versions).await?;
            if matches!(landed, Landed::Yes | Landed::ThenStop) {
                counted();
            }
            return Ok(if matches!(landed, Landed::Yes) { Committed::Yes } else { Committed::Stop });
        }
        let committed = plan.store.submit(commit);
        counted();
        match committed.await {
            Ok(_) => {
                if let Feed::Queue { queues, queue, receipts, dealt } = self {
                    queues.acked(queue, &receipts[..*dealt]);
                }
                Ok(Committed::Yes)
            }
            Err(e @ StoreError::DiskFull { .. }) => Ok(Committed::NoSpace(e.to_string())),
            // A cluster's queues moved to another coordinator mid-batch (or JetStream did not
            // answer): the batch's messages return after their visibility timeout, to be dealt
            // with again — the queue → pipeline promise in a cluster is at least once.
            Err(e @ (StoreError::Fenced(_) | StoreError::Unavailable(_))) if matches!(self, Feed::Queue { .. }) => {
                tracing::warn!(pipeline = %plan.spec.name, error = %e, "queue batch not committed; its messages come back");
                Ok(Committed::Yes)
            }
            Err(e) => Err(format!("committing {}: {e}", self.describe())),
        }
    }

    /// A competing worker's feed of the plan's queue.
    pub(super) fn queue(plan: &Plan, queues: Arc<crate::queue::Queues>) -> Feed {
        Feed::Queue { queues, queue: plan.source.name().to_string(), receipts: Vec::new(), dealt: 0 }
    }

    fn describe(&self) -> String {
        match self {
            Feed::Partition { topic, partition, .. } => format!("partition {partition} of `{}`", topic.name),
            Feed::Queue { queue, .. } => format!("a batch of queue `{queue}`"),
            Feed::Cluster(c) => c.describe(),
        }
    }

    /// The next batch (and, for queues, a copy for a one-by-one re-run), or `None` after
    /// waiting up to a second (or for `stop`) without one.
    #[allow(clippy::type_complexity)]
    async fn next(
        &mut self,
        plan: &Plan,
        batch_max: usize,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Option<(Vec<StoredRecord>, Option<Vec<StoredRecord>>)>, String> {
        match self {
            Feed::Partition { topic, partition, offset } => {
                let records = plan
                    .store
                    .read(topic, *partition, *offset, batch_max, limits::PIPELINE_BATCH_BYTES)
                    .await
                    .map_err(|e| format!("reading partition {partition} of `{}`: {e}", topic.name))?
                    .records;
                if records.is_empty() {
                    tokio::select! {
                        _ = plan.store.wait_for(topic, *partition, *offset, Duration::from_secs(1)) => {}
                        _ = stop.changed() => {}
                    }
                    return Ok(None);
                }
                // A topic's batch is read again rather than copied if it must be re-run.
                Ok(Some((records, None)))
            }
            Feed::Cluster(c) => c.next(batch_max, stop).await,
            Feed::Queue { queues, queue, receipts, dealt } => {
                let got = tokio::select! {
                    got = queues.receive(queue, batch_max, Duration::from_secs(1), None) => got.map_err(|e| e.to_string())?,
                    _ = stop.changed() => return Ok(None),
                };
                if got.is_empty() {
                    return Ok(None);
                }
                *receipts = got.iter().map(|d| d.receipt.clone()).collect();
                *dealt = 0;
                // Offsets here are positions in the batch, so "next offset" counts what was dealt with.
                let records: Vec<StoredRecord> = got
                    .into_iter()
                    .enumerate()
                    .map(|(i, d)| StoredRecord {
                        offset: i as u64,
                        timestamp_ms: d.enqueued_ms,
                        key: None,
                        headers: d.headers,
                        value: Bytes::from(d.body),
                    })
                    .collect();
                let copy = records.clone();
                Ok(Some((records, Some(copy))))
            }
        }
    }

    /// Add the batch's progress to its commit: the group offset up to `next_offset`, or the
    /// acks of the deliveries dealt with. `false`: nothing to commit.
    fn settle(&mut self, plan: &Plan, commit: &mut Commit, next_offset: u64) -> Result<bool, String> {
        match self {
            Feed::Partition { topic, partition, offset } => {
                if next_offset <= *offset {
                    return Ok(false);
                }
                let group = plan.group.clone();
                commit.offsets.push(OffsetCommit { group, topic: topic.clone(), partition: *partition, next_offset });
                *offset = next_offset;
                Ok(true)
            }
            Feed::Cluster(c) => Ok(c.settle(next_offset)),
            Feed::Queue { queues, queue, receipts, dealt } => {
                *dealt = (next_offset as usize).min(receipts.len());
                commit.queue = queues.ack_in_commit(queue, &receipts[..*dealt]).map_err(|e| e.to_string())?;
                Ok(true)
            }
        }
    }

    /// Where the feed stands, to [`Feed::rewind`] to if a batch's commit is refused.
    fn position(&self) -> u64 {
        match self {
            Feed::Partition { offset, .. } => *offset,
            _ => 0,
        }
    }

    /// Forget a batch whose commit was refused: a partition reads it again from `position`,
    /// a queue hands its messages back at once.
    async fn rewind(&mut self, position: u64) {
        match self {
            Feed::Partition { offset, .. } => *offset = position,
            Feed::Queue { dealt, .. } => {
                *dealt = 0;
                self.abandon().await;
            }
            Feed::Cluster(_) => {}
        }
    }

    /// After a halting failure: hand back the queue messages the batch did not deal with (a
    /// crash instead leaves them to their visibility timeout).
    async fn abandon(&mut self) {
        if let Feed::Queue { queues, queue, receipts, dealt } = self {
            let rest = receipts[*dealt..].to_vec();
            let _ = queues.nack(queue, &rest, crate::queue::Nack::Requeue { delay_ms: 0 }).await;
        }
    }
}

fn instantiate_all(plan: &Plan, partition: u32) -> Result<Vec<StepInstance>, String> {
    (0..plan.slots.len()).map(|i| build_step(plan, i, partition)).collect()
}

fn build_step(plan: &Plan, i: usize, partition: u32) -> Result<StepInstance, String> {
    let slot = &plan.slots[i];
    let (active, generation) = slot.live();
    let live = plan.instantiate(i, &active, partition, false)?;
    // A shadow that does not start is left out rather than blocking the live version.
    let shadow = slot.shadow().and_then(|a| plan.instantiate(i, &a, partition, true).ok().map(|inst| (inst, a)));
    Ok(StepInstance { live, active, shadow, generation })
}

/// Rebuild the instances of steps whose slot changed (deploy, rollback, promote, shadow).
/// The time this takes is the swap pause, recorded for status and benchmarks.
fn swap_if_needed(plan: &Plan, running: &Running, steps: &mut [StepInstance], partition: u32) {
    for (i, st) in steps.iter_mut().enumerate() {
        if plan.slots[i].generation() == st.generation {
            continue;
        }
        let started = Instant::now();
        match build_step(plan, i, partition) {
            Ok(new) => {
                let swapped = new.active.info.version != st.active.info.version;
                *st = new;
                if swapped {
                    running.counters.record_swap(started.elapsed());
                }
            }
            // Init was proven before the swap was published; if it fails here anyway, keep
            // running the old version and say so.
            Err(e) => {
                st.generation = plan.slots[i].generation();
                running.note_failure(format!("swap on partition {partition} kept the old version: {e}"));
            }
        }
    }
}

/// The committed offset, or the configured start.
async fn start_offset(plan: &Plan, topic: &Topic, partition: u32) -> Result<u64, crate::storage::StoreError> {
    let committed = plan.store.committed(&plan.group, topic).await?;
    let (start, end) = plan.store.bounds(topic, partition).await?;
    Ok(match committed[partition as usize] {
        Some(o) => o,
        None => match plan.spec.start {
            StartPosition::Earliest => start,
            StartPosition::Latest => end,
        },
    })
}

/// Counts of one batch, added to the pipeline's counters on commit.
#[derive(Default)]
pub(super) struct Counts {
    pub processed: u64,
    pub emitted: u64,
    pub dropped: u64,
    pub failed: u64,
    pub dead_lettered: u64,
    pub retries: u64,
    /// Per step.
    pub steps: Vec<StepStats>,
}

/// What a processed batch commits, and where processing stopped.
struct Done {
    /// Outputs and state of the processed prefix of the batch (offsets added by the caller).
    commit: Commit,
    /// The source offset to commit: one past the last input dealt with.
    next_offset: u64,
    counts: Counts,
    /// Why processing stopped before the end of the batch, naming step, plugin and offset.
    failure: Option<String>,
}

/// A step's failure on some input.
struct StepFailure {
    step: usize,
    /// Offset of the input that failed, when known.
    offset: Option<u64>,
    error: String,
    /// Whether another attempt may succeed (a retryable `fail`, a trap, a CPU overrun).
    retryable: bool,
}

/// Run a batch through every step. The fast path is one component call per step for the
/// whole batch. If anything fails, the batch's effects are discarded and it is re-run one
/// message at a time, where the failure policy applies to the failing message alone.
fn run_batch(
    plan: &Plan,
    running: &Running,
    steps: &mut [StepInstance],
    partition: u32,
    records: Vec<StoredRecord>,
    copy: Option<Vec<StoredRecord>>,
    stop: &watch::Receiver<bool>,
) -> Done {
    let mut stats = vec![StepStats::default(); steps.len()];
    let (first, last) = (records[0].offset, records[records.len() - 1].offset);
    let n = records.len();
    let mut gate = RouteGate::new(plan, running);
    match run_steps(plan, steps, &mut gate, partition, records, true, &mut stats) {
        Ok(out) => {
            let counts = Counts { processed: n as u64, steps: stats, ..Counts::default() };
            finish(plan, steps, &gate, partition, out, last + 1, counts, None)
        }
        Err(_) => {
            steps.iter_mut().for_each(|s| s.live.discard_state_writes());
            // A topic's batch is read again rather than copied on the fast path.
            let again = match (copy, plan.source.topic()) {
                (Some(records), _) => Ok(records),
                (None, Some(topic)) => plan.store.read_blocking(topic, partition, first, n),
                (None, None) => Ok(Vec::new()),
            };
            // The failed fast path cost its calls; its counts do not count (each message
            // is counted once, by the one-by-one run).
            let mut cost = vec![StepStats::default(); steps.len()];
            cost.iter_mut().zip(&stats).for_each(|(c, s)| c.add(s, false));
            match again {
                Ok(records) => run_one_by_one(plan, running, steps, &mut gate, partition, records, stop, cost),
                Err(e) => {
                    let reason = format!("re-reading partition {partition} of `{}`: {e}", plan.source.name());
                    finish(plan, steps, &gate, partition, Outputs::default(), first, Counts::default(), Some(reason))
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run_one_by_one(
    plan: &Plan,
    running: &Running,
    steps: &mut [StepInstance],
    gate: &mut RouteGate,
    partition: u32,
    records: Vec<StoredRecord>,
    stop: &watch::Receiver<bool>,
    stats: Vec<StepStats>,
) -> Done {
    let mut acc = Outputs::default();
    let mut counts = Counts { steps: stats, ..Counts::default() };
    let mut next = records[0].offset;
    for rec in records {
        let offset = rec.offset;
        let mut attempt = 1;
        let failure = loop {
            if let Err(reason) = refresh(plan, steps, partition) {
                return finish(plan, steps, gate, partition, acc, next, counts, Some(reason));
            }
            let mut tried = vec![StepStats::default(); steps.len()];
            let result = run_steps(plan, steps, gate, partition, vec![rec.clone()], false, &mut tried);
            // Only the attempt whose result stands is counted; earlier ones only cost. A
            // failure stands when no attempt follows and the policy moves past the message
            // (skip, dead-letter); a halt leaves it to be dealt with again on resume.
            let last =
                result.as_ref().is_err_and(|f| !f.retryable || attempt >= plan.spec.attempts() || *stop.borrow());
            let moves_on = matches!(plan.spec.on_error, ErrorPolicy::Skip | ErrorPolicy::DeadLetter);
            let stands = result.is_ok() || (last && moves_on);
            counts.steps.iter_mut().zip(&tried).for_each(|(c, t)| c.add(t, stands));
            match result {
                Ok(out) => {
                    steps.iter_mut().for_each(|s| s.live.checkpoint());
                    acc.append(out);
                    break None;
                }
                Err(f) => {
                    steps.iter_mut().for_each(|s| s.live.rollback());
                    if last {
                        break Some(f);
                    }
                    std::thread::sleep(plan.spec.backoff(attempt));
                    attempt += 1;
                    counts.retries += 1;
                }
            }
        };
        if let Some(f) = failure {
            let label = steps[f.step].active.info.label();
            let reason = format!(
                "step {} ({label}) failed at offset {} of partition {partition} after {attempt} attempt(s): {}",
                f.step + 1,
                f.offset.unwrap_or(offset),
                f.error
            );
            match plan.spec.on_error {
                ErrorPolicy::Halt | ErrorPolicy::Retry => {
                    return finish(plan, steps, gate, partition, acc, next, counts, Some(reason));
                }
                ErrorPolicy::Skip => {}
                ErrorPolicy::DeadLetter => {
                    acc.routed
                        .push((plan.spec.dead_letter_topic(), dead_letter(plan, &label, &f, attempt, partition, rec)));
                    counts.dead_lettered += 1;
                }
            }
            counts.failed += 1;
            running.note_failure(reason);
        }
        counts.processed += 1;
        next = offset + 1;
    }
    finish(plan, steps, gate, partition, acc, next, counts, None)
}

/// The original message, with headers saying where it failed and why.
fn dead_letter(plan: &Plan, label: &str, f: &StepFailure, attempts: u32, partition: u32, rec: StoredRecord) -> Message {
    let mut headers = rec.headers;
    let mut add = |name: &str, value: String| headers.push((name.to_string(), value));
    add(headers::DLQ_PIPELINE, plan.spec.name.clone());
    add(headers::DLQ_STEP, (f.step + 1).to_string());
    add(headers::DLQ_PLUGIN, label.to_string());
    add(headers::DLQ_ERROR, f.error.clone());
    add(headers::DLQ_ATTEMPTS, attempts.to_string());
    add(headers::DLQ_TOPIC, plan.source.name().to_string());
    add(headers::DLQ_PARTITION, partition.to_string());
    add(headers::DLQ_OFFSET, rec.offset.to_string());
    Message { key: rec.key, value: rec.value, headers, timestamp_ms: rec.timestamp_ms, partition, offset: rec.offset }
}

/// Replace instances a trap left unusable.
fn refresh(plan: &Plan, steps: &mut [StepInstance], partition: u32) -> Result<(), String> {
    for (i, st) in steps.iter_mut().enumerate() {
        if st.live.is_poisoned() {
            st.live = plan.instantiate(i, &st.active, partition, false)?;
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

/// The chain: each step's non-routed outputs are the next step's inputs. With `shadows`,
/// each step's shadow runs on the same input and its outcomes are compared.
fn run_steps(
    plan: &Plan,
    steps: &mut [StepInstance],
    gate: &mut RouteGate,
    partition: u32,
    records: Vec<StoredRecord>,
    shadows: bool,
    stats: &mut [StepStats],
) -> Result<Outputs, StepFailure> {
    let mut msgs: Vec<Message> = records.into_iter().map(|r| to_message(r, partition)).collect();
    let mut out = Outputs::default();
    let hops = super::cycles::Hops::new(&plan.spec, &plan.topology, &msgs);
    // A sink feeding the source was refused at create unless the spec allows the cycle; a
    // pipeline another one's allowed cycle runs through passes its sink outputs on (the
    // pipeline with `max_hops` counts the trips).
    let sink_cycle = plan.spec.max_hops.is_some() && hops.is_cycle(&plan.spec.sink);
    let mut admit = |topic: Option<&str>, msg: &mut Message| -> Result<(), String> {
        let target = match topic {
            Some(t) => {
                gate.check(t)?;
                if !hops.is_cycle(t) {
                    return Ok(());
                }
                t
            }
            None if sink_cycle => plan.spec.sink.as_str(),
            None => return Ok(()),
        };
        hops.admit(target, msg)
    };
    let last = steps.len() - 1;
    for (i, st) in steps.iter_mut().enumerate() {
        if msgs.is_empty() {
            break;
        }
        let batch = Batch { topic: plan.source.name().to_string(), messages: msgs };
        let started = Instant::now();
        let called = st.live.process(&batch);
        let took_us = started.elapsed().as_micros() as u64;
        let stat = &mut stats[i];
        stat.calls += 1;
        stat.input += batch.messages.len() as u64;
        stat.busy_us += took_us;
        let outcomes = called.map_err(|e| {
            stat.errors += 1;
            plugin_failure(i, e)
        })?;
        if shadows {
            run_shadow(plan, i, st, partition, &batch, &outcomes);
        }
        let label = st.active.info.label();
        let trace = StepTrace { pipeline: &plan.spec.name, step: i + 1, label: &label, took_us };
        let next = apply_outcomes(&trace, batch.messages, outcomes, &mut out, &mut stats[i], i == last, &mut admit)?;
        msgs = next;
    }
    out.sink = msgs;
    Ok(out)
}

/// Refuses an output (`Err`: why) or counts its hop; topic `None` is the sink.
type Admit<'a> = dyn FnMut(Option<&str>, &mut Message) -> Result<(), String> + 'a;

/// What a step's outcomes make of its inputs: the next step's inputs, with routed outputs and
/// drops added to `out`; the first failure stops the batch. `admit` refuses an output's topic
/// (missing, not writable by the pipeline's owner, a cycle not allowed or past its bound: a
/// failure of that input) or counts its hop; it sees each routed output, and each output of
/// the `last` step bound for the sink (topic `None`).
fn apply_outcomes(
    trace: &StepTrace<'_>,
    inputs: Vec<Message>,
    outcomes: Vec<Outcome>,
    out: &mut Outputs,
    stat: &mut StepStats,
    last: bool,
    admit: &mut Admit<'_>,
) -> Result<Vec<Message>, StepFailure> {
    let step = trace.step - 1;
    let mut next = Vec::with_capacity(inputs.len());
    for (mut input, outcome) in inputs.into_iter().zip(outcomes) {
        // Only messages with headers can carry a trace context: the common case costs a test.
        let traced = if input.headers.is_empty() { None } else { trace::context(&input.headers) };
        match outcome {
            Outcome::Emit(outputs) => {
                stat.output += outputs.len() as u64;
                for (index, o) in outputs.into_iter().enumerate() {
                    let mut msg = Message {
                        key: o.key,
                        value: o.value,
                        headers: o.headers,
                        timestamp_ms: input.timestamp_ms,
                        partition: input.partition,
                        offset: input.offset,
                    };
                    if let Some(ctx) = &traced {
                        trace::stamp(&mut msg, ctx, trace, index);
                    }
                    if (o.topic.is_some() || last)
                        && let Err(error) = admit(o.topic.as_deref(), &mut msg)
                    {
                        stat.errors += 1;
                        return Err(StepFailure { step, offset: Some(input.offset), error, retryable: false });
                    }
                    match o.topic {
                        Some(t) => out.routed.push((t, msg)),
                        None => next.push(msg),
                    }
                }
            }
            Outcome::Keep => {
                stat.output += 1;
                if let Some(ctx) = &traced {
                    trace::stamp(&mut input, ctx, trace, 0);
                }
                if last && let Err(error) = admit(None, &mut input) {
                    stat.errors += 1;
                    return Err(StepFailure { step, offset: Some(input.offset), error, retryable: false });
                }
                next.push(input);
            }
            Outcome::Forward(t) => {
                stat.output += 1;
                if let Some(ctx) = &traced {
                    trace::stamp(&mut input, ctx, trace, 0);
                }
                if let Err(error) = admit(Some(&t), &mut input) {
                    stat.errors += 1;
                    return Err(StepFailure { step, offset: Some(input.offset), error, retryable: false });
                }
                out.routed.push((t, input));
            }
            Outcome::Drop => {
                out.dropped += 1;
                stat.dropped += 1;
            }
            Outcome::Fail(f) => {
                stat.errors += 1;
                // Bounded at the boundary (`runtime::instance`).
                let error = format!("{}{}", f.message, if f.retryable { " (retryable)" } else { "" });
                return Err(StepFailure { step, offset: Some(input.offset), error, retryable: f.retryable });
            }
        }
    }
    Ok(next)
}

/// The host side of the component boundary for fuzzing: check a guest's outcomes for `n`
/// inputs as an instance does, then apply them as a worker does; `None` when refused. Must
/// never panic.
#[doc(hidden)]
pub fn fuzz_outcomes(inputs: Vec<Message>, outcomes: Vec<Outcome>, output_limit: usize) -> Option<usize> {
    crate::runtime::check_outcomes(inputs.len(), &outcomes, output_limit).ok()?;
    let n = inputs.len();
    let mut out = Outputs::default();
    let mut stat = StepStats::default();
    let trace = StepTrace { pipeline: "fuzz", step: 1, label: "fuzz@1", took_us: 0 };
    let next = apply_outcomes(&trace, inputs, outcomes, &mut out, &mut stat, true, &mut |_, _| Ok(())).ok()?;
    assert!(out.dropped as usize <= n, "more drops than inputs");
    Some(next.len() + out.routed.len())
}

fn plugin_failure(step: usize, e: PluginError) -> StepFailure {
    let retryable = matches!(e, PluginError::Trap(_) | PluginError::CpuExceeded { .. });
    StepFailure { step, offset: None, error: e.to_string(), retryable }
}

/// Run step `i`'s shadow on the live step's input and record how its outcomes compare. The
/// shadow's state writes are discarded; a trapped shadow is rebuilt at the next boundary.
fn run_shadow(plan: &Plan, i: usize, st: &mut StepInstance, partition: u32, batch: &Batch, live: &[Outcome]) {
    let Some((shadow, active)) = &mut st.shadow else { return };
    let result = shadow.process(batch);
    shadow.discard_state_writes();
    let at = (plan.spec.name.as_str(), i, partition);
    plan.shadows.compare(&active.info.name, at, &batch.messages, live, result.as_deref().map_err(|e| e.to_string()));
    if shadow.is_poisoned() {
        st.generation = u64::MAX; // force a rebuild at the next boundary
    }
}

/// Turn a run's outputs and the instances' state writes into a commit.
#[allow(clippy::too_many_arguments)]
fn finish(
    plan: &Plan,
    steps: &mut [StepInstance],
    gate: &RouteGate,
    partition: u32,
    out: Outputs,
    next_offset: u64,
    mut counts: Counts,
    failure: Option<String>,
) -> Done {
    let now = now_ms();
    let state = steps.iter_mut().flat_map(|s| s.live.take_state_writes(now)).collect();
    counts.emitted = (out.sink.len() + out.routed.len()) as u64 - counts.dead_lettered;
    counts.dropped = out.dropped;
    match route(plan, gate, partition, out.sink, out.routed) {
        Ok(appends) => Done { commit: Commit { appends, state, ..Commit::default() }, next_offset, counts, failure },
        // A routed topic deleted since it was checked fails the whole batch: nothing commits.
        Err(reason) => {
            Done { commit: Commit::default(), next_offset: 0, counts: Counts::default(), failure: Some(reason) }
        }
    }
}

/// Group outputs into per-partition appends, in output order. Keyed outputs go by key
/// hash; keyless ones to the source partition's counterpart, which keeps their order.
fn route(
    plan: &Plan,
    gate: &RouteGate,
    partition: u32,
    sink: Vec<Message>,
    routed: Routed,
) -> Result<Vec<Append>, String> {
    let mut appends: Vec<Append> = Vec::new();
    let mut index: HashMap<(u32, u32), usize> = HashMap::new();
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
        push(&plan.sink, msg);
    }
    for (name, msg) in routed {
        // Plugin routes were checked by the gate; dead letters go to the topic the pipeline
        // was authorised for when it was created.
        let topic = match gate.topic(&name) {
            Some(t) => t.clone(),
            None => {
                plan.store.topic_blocking(&name).map_err(|_| format!("topic `{name}` does not exist (any more)"))?
            }
        };
        if topic.is_deleted() {
            return Err(format!("topic `{name}` was deleted while a batch routed to it"));
        }
        push(&topic, msg);
    }
    Ok(appends)
}

/// Where outputs may be routed: topics that exist and that the pipeline's owner may write.
/// Built per batch, so a reloaded token file takes effect at the next batch; each topic is
/// looked up and checked once per batch.
struct RouteGate {
    store: Arc<crate::store::Store>,
    /// The owner's current grants (`Ok(None)`: no token file, or a pipeline without owner),
    /// or why there are none.
    owner: Result<Option<Arc<crate::auth::Identity>>, String>,
    checked: HashMap<String, Result<Arc<Topic>, String>>,
}

impl RouteGate {
    fn new(plan: &Plan, running: &Running) -> RouteGate {
        let owner = match running.owner() {
            None => Ok(None),
            Some(name) => plan.authority.named(&name).map_err(|e| {
                format!("the pipeline acts with the authority of token `{name}`, which it no longer has: {e}")
            }),
        };
        RouteGate { store: plan.store.clone(), owner, checked: HashMap::new() }
    }

    fn check(&mut self, name: &str) -> Result<(), String> {
        if let Some(done) = self.checked.get(name) {
            return done.as_ref().map(|_| ()).map_err(Clone::clone);
        }
        let verdict = self.verdict(name);
        let result = verdict.as_ref().map(|_| ()).map_err(Clone::clone);
        self.checked.insert(name.to_string(), verdict);
        result
    }

    fn verdict(&self, name: &str) -> Result<Arc<Topic>, String> {
        let topic = self.store.topic_blocking(name).map_err(|_| {
            format!("a step routed an output to topic `{name}`, which does not exist; create it with `weir topic create {name}`")
        })?;
        match &self.owner {
            Ok(None) => Ok(topic),
            Ok(Some(id)) => {
                let need = crate::auth::Need::on(crate::auth::Permission::Write, crate::auth::Kind::Topic, name)
                    .because("a step routed an output there");
                id.require(std::slice::from_ref(&need)).map(|()| topic).map_err(|e| e.to_string())
            }
            Err(why) => Err(why.clone()),
        }
    }

    fn topic(&self, name: &str) -> Option<&Arc<Topic>> {
        self.checked.get(name).and_then(|r| r.as_ref().ok())
    }
}

/// A stored record as a step's input: its key and value are the log's `Bytes`, not copies.
fn to_message(r: StoredRecord, partition: u32) -> Message {
    Message {
        key: r.key,
        value: r.value,
        headers: r.headers,
        timestamp_ms: r.timestamp_ms,
        partition,
        offset: r.offset,
    }
}

/// An output as a record to append: its `Bytes` move into the commit.
fn to_record(m: Message) -> NewRecord {
    NewRecord { key: m.key, value: m.value, headers: m.headers }
}
