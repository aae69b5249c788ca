//! Pipelines: a source topic read by partition, a chain of plugin steps run in process, and
//! sink topics written — with every batch's outputs, state writes and source offset committed
//! in one atomic write.
//!
//! Invariants:
//! * One worker per source partition; it alone reads that partition for the pipeline, so
//!   per-partition order is kept end to end.
//! * A batch is processed by every step, then committed once; nothing of it is visible (in
//!   sink topics, state or the committed offset) before that commit, and all of it after.
//! * After a restart a worker resumes at the committed offset: outputs are neither lost nor
//!   duplicated.
//! * Versions change only at batch boundaries: a batch runs wholly on one version of each
//!   step, and a partition never goes back to a version it left unless told to (rollback).
//! * A failure is never skipped silently: the failure policy decides, per message, after a
//!   batch is re-run one message at a time; a halt names the step, plugin, offset and error.

mod cluster;
mod control;
mod cycles;
mod plan;
mod shadow;
mod spec;
pub mod trace;
mod worker;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

pub use control::{STATE_LIST_MAX, StateEntry};
pub use shadow::{DiffSample, SAMPLES_MAX as SHADOW_SAMPLES_MAX, ShadowReport};
pub use spec::{
    ApplyChange, ErrorPolicy, PipelineSpec, PipelineStatus, ResetTarget, RunState, Source, StartPosition, StepSpec,
    StepStats,
};
#[doc(hidden)]
pub use worker::fuzz_outcomes;

use crate::auth::Authority;
use crate::cluster::wire;
use crate::limits;
use crate::mirror::{mirror, mirror_enum};
use crate::registry::{PluginInfo, Registry, RegistryError};
use crate::runtime::LoadedPlugin;
use crate::storage::{StoreError, keys, stored};
use crate::store::{MetaWrite, Store, record};
use crate::types::{TopicConfig, check_name, now_ms};
use plan::{Active, Plan};
use shadow::ShadowBoard;

/// Why a pipeline operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// No such pipeline.
    #[error("unknown pipeline `{0}`: see `weir pipeline list`")]
    Unknown(String),
    /// A pipeline of that name exists.
    #[error("pipeline `{0}` already exists; delete it first or choose another name")]
    Exists(String),
    /// The spec is invalid; the text names the field.
    #[error("{0}")]
    Invalid(String),
    /// The source queue does not exist (or another queue failure).
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
    /// A plugin version does not start in a pipeline step that follows the plugin.
    #[error("{plugin} does not start in pipeline `{pipeline}` step {step}: {message}")]
    DoesNotStart {
        /// `name@version`.
        plugin: String,
        /// The pipeline.
        pipeline: String,
        /// Its step, from 1.
        step: usize,
        /// Why (the plugin's init error, an instantiation failure).
        message: String,
    },
    /// The identity the pipeline acts for lacks a grant it needs; the text names them.
    #[error("{0}")]
    Forbidden(String),
    /// A step's plugin refused its config or could not be instantiated.
    #[error("step {step} ({plugin}): {message}")]
    Step {
        /// Step index, from 1.
        step: usize,
        /// `name@version`.
        plugin: String,
        /// Why.
        message: String,
    },
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A pipeline as the server keeps it (stored as [`stored::PipelineV1`], in a cluster as
/// [`wire::PipelineC1`]).
#[derive(Debug, Clone, PartialEq, Eq)]
struct PipelineRecord {
    spec: PipelineSpec,
    /// Numeric scope of its state keys; never reused.
    id: u32,
    created_ms: u64,
    /// Set when the pipeline halted; it stays halted across restarts.
    halted: Option<String>,
    /// Set by `pause`; a paused pipeline stays paused across restarts.
    paused: bool,
    /// The token that created or last applied it: the pipeline reads, writes and routes with
    /// its grants. `None` when the server ran without a token file.
    owner: Option<String>,
    /// Resets so far: a changed count restarts the workers (on every node of a cluster).
    resets: u64,
}

impl PipelineRecord {
    /// Halted (whatever else), else paused, else running.
    fn state(&self) -> RunState {
        match (&self.halted, self.paused) {
            (Some(_), _) => RunState::Halted,
            (None, true) => RunState::Paused,
            (None, false) => RunState::Running,
        }
    }
}

mirror!(stored::PipelineV1 => PipelineRecord { spec: into, id, created_ms, halted, paused, owner, resets });
mirror!(stored::PipelineSpecV1 => PipelineSpec {
    name, source: into, group, steps: each, sink, start: into, batch_max_messages, on_error: into, max_attempts,
    backoff_ms, dead_letter_topic, parallelism, max_hops
});
mirror!(stored::StepV1 => StepSpec { plugin, config });
mirror_enum!(stored::StartV1 => StartPosition { Earliest, Latest });
mirror_enum!(stored::ErrorPolicyV1 => ErrorPolicy { Halt, Retry, Skip, DeadLetter });
mirror!(wire::StepC1 => StepSpec { plugin, config });
mirror_enum!(wire::StartC1 => StartPosition { Earliest, Latest });
mirror_enum!(wire::ErrorPolicyC1 => ErrorPolicy { Halt, Retry, Skip, DeadLetter });
record!(PipelineRecord => stored::PipelineV1, wire::PipelineC1);

impl From<PipelineRecord> for wire::PipelineC1 {
    fn from(r: PipelineRecord) -> Self {
        let s = r.spec;
        wire::PipelineC1 {
            name: s.name,
            source: s.source.to_string(),
            group: s.group,
            steps: s.steps.into_iter().map(Into::into).collect(),
            sink: s.sink,
            start: s.start.into(),
            batch_max_messages: s.batch_max_messages,
            on_error: s.on_error.into(),
            max_attempts: s.max_attempts,
            backoff_ms: s.backoff_ms,
            dead_letter_topic: s.dead_letter_topic,
            parallelism: s.parallelism,
            max_hops: s.max_hops,
            id: r.id,
            created_ms: r.created_ms,
            halted: r.halted,
            paused: r.paused,
            owner: r.owner,
            resets: r.resets,
        }
    }
}

impl From<wire::PipelineC1> for PipelineRecord {
    fn from(c: wire::PipelineC1) -> Self {
        PipelineRecord {
            spec: PipelineSpec {
                name: c.name,
                source: Source::parse(&c.source),
                group: c.group,
                steps: c.steps.into_iter().map(Into::into).collect(),
                sink: c.sink,
                start: c.start.into(),
                batch_max_messages: c.batch_max_messages,
                on_error: c.on_error.into(),
                max_attempts: c.max_attempts,
                backoff_ms: c.backoff_ms,
                dead_letter_topic: c.dead_letter_topic,
                parallelism: c.parallelism,
                max_hops: c.max_hops,
            },
            id: c.id,
            created_ms: c.created_ms,
            halted: c.halted,
            paused: c.paused,
            owner: c.owner,
            resets: c.resets,
        }
    }
}

/// Sources are stored as text, as format version 1 always did.
impl From<String> for Source {
    fn from(text: String) -> Source {
        Source::parse(&text)
    }
}

impl From<Source> for String {
    fn from(s: Source) -> String {
        s.to_string()
    }
}

/// Swap pauses kept for the percentile in status.
const SWAP_PAUSES_KEPT: usize = 1024;

/// Counters shared by a pipeline's workers.
#[derive(Default)]
pub(crate) struct Counters {
    processed: AtomicU64,
    emitted: AtomicU64,
    dropped: AtomicU64,
    batches: AtomicU64,
    failed: AtomicU64,
    dead_lettered: AtomicU64,
    retries: AtomicU64,
    swaps: AtomicU64,
    /// Recent swap pauses, µs.
    swap_pauses: Mutex<VecDeque<u64>>,
    /// Per step.
    steps: Mutex<Vec<StepStats>>,
    /// From taking a batch to its commit's acknowledgement.
    batch_latency: Option<prometheus::Histogram>,
    /// Linear memory of each step's live instance, per worker, after its last batch.
    memory: Mutex<std::collections::BTreeMap<u32, Vec<u64>>>,
}

/// Bounds of the batch latency histogram, seconds.
const BATCH_LATENCY_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

impl Counters {
    fn new(pipeline: &str, steps: usize) -> Counters {
        let opts = prometheus::HistogramOpts::new(
            "weir_pipeline_batch_duration_seconds",
            "Time from taking a batch to its commit's acknowledgement",
        )
        .const_label("pipeline", pipeline)
        .buckets(BATCH_LATENCY_BUCKETS.to_vec());
        Counters {
            steps: Mutex::new(vec![StepStats::default(); steps]),
            batch_latency: prometheus::Histogram::with_opts(opts).ok(),
            ..Counters::default()
        }
    }

    fn note_memory(&self, worker: u32, bytes: Vec<u64>) {
        self.memory.lock().expect("plugin memory").insert(worker, bytes);
    }

    fn observe_batch(&self, took: Duration) {
        if let Some(h) = &self.batch_latency {
            h.observe(took.as_secs_f64());
        }
    }

    fn add(&self, c: &worker::Counts) {
        let mut steps = self.steps.lock().expect("step stats");
        for (total, s) in steps.iter_mut().zip(&c.steps) {
            total.input += s.input;
            total.output += s.output;
            total.dropped += s.dropped;
            total.errors += s.errors;
            total.calls += s.calls;
            total.busy_us += s.busy_us;
        }
        drop(steps);
        self.processed.fetch_add(c.processed, Ordering::Relaxed);
        self.emitted.fetch_add(c.emitted, Ordering::Relaxed);
        self.dropped.fetch_add(c.dropped, Ordering::Relaxed);
        self.failed.fetch_add(c.failed, Ordering::Relaxed);
        self.dead_lettered.fetch_add(c.dead_lettered, Ordering::Relaxed);
        self.retries.fetch_add(c.retries, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
    }

    fn record_swap(&self, pause: Duration) {
        self.swaps.fetch_add(1, Ordering::Relaxed);
        let mut p = self.swap_pauses.lock().expect("swap pauses");
        if p.len() == SWAP_PAUSES_KEPT {
            p.pop_front();
        }
        p.push_back(pause.as_micros() as u64);
    }

    fn swap_pause_p99_us(&self) -> u64 {
        let mut p: Vec<u64> = self.swap_pauses.lock().expect("swap pauses").iter().copied().collect();
        if p.is_empty() {
            return 0;
        }
        p.sort_unstable();
        p[(p.len() * 99).div_ceil(100) - 1]
    }
}

/// A pipeline known to the server: running, paused or halted.
pub(crate) struct Running {
    record: Mutex<PipelineRecord>,
    plan: Arc<Plan>,
    counters: Counters,
    /// The last failure handled without halting (skipped, dead-lettered, a failed swap).
    last_failure: Mutex<Option<(String, u64)>>,
    /// Tells the current workers to stop after their batch; replaced at every (re)start.
    stop: Mutex<watch::Sender<bool>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Bounds how many partitions process a batch at once (`parallelism`).
    permits: Arc<tokio::sync::Semaphore>,
}

impl Running {
    fn note_failure(&self, reason: String) {
        *self.last_failure.lock().expect("last failure") =
            Some((limits::truncated(reason, limits::PIPELINE_REASON_BYTES), now_ms()));
    }

    /// The token whose grants the pipeline acts with.
    fn owner(&self) -> Option<String> {
        self.record.lock().expect("record").owner.clone()
    }

    fn signal_stop(&self) {
        let _ = self.stop.lock().expect("stop").send(true);
    }

    fn state(&self) -> RunState {
        self.record.lock().expect("record").state()
    }
}

/// All pipelines of the server.
pub struct Pipelines {
    store: Arc<Store>,
    registry: Arc<Registry>,
    running: Mutex<HashMap<String, Arc<Running>>>,
    shadows: Arc<ShadowBoard>,
    /// Which topics feed which, for refusing and bounding cycles.
    topology: Arc<cycles::Topology>,
    queues: Arc<crate::queue::Queues>,
    authority: Arc<Authority>,
}

impl Pipelines {
    /// Start every stored pipeline (halted ones stay halted).
    pub async fn start(
        store: Arc<Store>,
        registry: Arc<Registry>,
        queues: Arc<crate::queue::Queues>,
        authority: Arc<Authority>,
    ) -> Result<Arc<Pipelines>, PipelineError> {
        let shadows = Arc::new(ShadowBoard::default());
        for name in registry.names() {
            if let Some(s) = registry.shadow(&name) {
                shadows.reset(&name, registry.live(&name).map(|l| l.version), Some(s.version));
            }
        }
        let me = Arc::new(Pipelines {
            store: store.clone(),
            registry,
            running: Mutex::new(HashMap::new()),
            shadows,
            topology: Arc::default(),
            queues,
            authority,
        });
        for (_, record) in store.meta_scan::<PipelineRecord>(keys::meta::PIPELINES).await? {
            let name = record.spec.name.clone();
            if let Err(e) = me.launch(record).await {
                tracing::error!(pipeline = %name, error = %e, "pipeline could not start");
            }
        }
        // The token file may have changed while the server was down.
        me.recheck_owners().await;
        Ok(me)
    }

    /// Halt every pipeline whose owner lost a grant it needs (or the token itself), saying
    /// which. Called after the token file is reloaded.
    pub async fn recheck_owners(&self) {
        let all: Vec<Arc<Running>> = self.running.lock().expect("pipelines").values().cloned().collect();
        for running in all {
            let record = running.record.lock().expect("record").clone();
            if record.halted.is_some() {
                continue;
            }
            if let Err(reason) = self.owner_check(&record.spec, record.owner.as_deref()) {
                self.halt(&running, reason).await;
            }
        }
    }

    /// Whether `owner` holds every grant `spec` needs to run; the reason if not.
    fn owner_check(&self, spec: &PipelineSpec, owner: Option<&str>) -> Result<(), String> {
        let Some(owner) = owner else { return Ok(()) };
        let lost = |why: String| {
            format!(
                "pipeline `{}` acts with the authority of token `{owner}`, which changed: {why}; apply it again with a token that has the grants",
                spec.name
            )
        };
        match self.authority.named(owner) {
            Ok(None) => Ok(()),
            Ok(Some(id)) => id.require(&spec.needs()).map_err(|e| lost(e.to_string())),
            Err(e) => Err(lost(e.to_string())),
        }
    }

    /// Validate, store and start a pipeline that acts with `owner`'s grants.
    pub async fn create(
        self: &Arc<Self>,
        spec: PipelineSpec,
        owner: Option<String>,
    ) -> Result<PipelineStatus, PipelineError> {
        check_name("pipeline", &spec.name).map_err(|e| PipelineError::Invalid(e.to_string()))?;
        if self.running.lock().expect("pipelines").contains_key(&spec.name) {
            return Err(PipelineError::Exists(spec.name));
        }
        self.validate(&spec).await?;
        if spec.on_error == ErrorPolicy::DeadLetter {
            self.ensure_dead_letter_topic(&spec).await?;
        }
        let id = self.store.next_id(keys::meta::PIPELINE_SEQ).await?;
        let record = PipelineRecord {
            spec: spec.clone(),
            id,
            created_ms: now_ms(),
            halted: None,
            paused: false,
            owner,
            resets: 0,
        };
        self.launch(record.clone()).await?;
        // Stored after the steps proved they start, so a bad spec leaves nothing behind; the
        // name is taken with a create (two nodes of a cluster cannot both take it).
        let write = MetaWrite::create(keys::meta::pipeline(&spec.name), &record);
        if let Err(e) = self.store.meta_write(vec![write]).await {
            self.stop(&spec.name).await;
            return Err(match e {
                StoreError::Conflict(_) => PipelineError::Exists(spec.name),
                e => e.into(),
            });
        }
        self.status(&spec.name).await
    }

    /// Stop a pipeline and delete it with its state and offsets.
    pub async fn delete(&self, name: &str) -> Result<(), PipelineError> {
        let running = self.stop(name).await.ok_or_else(|| PipelineError::Unknown(name.to_string()))?;
        let record = running.record.lock().expect("record").clone();
        self.store.meta_write(vec![MetaWrite::delete(keys::meta::pipeline(name))]).await?;
        self.forget(&record).await
    }

    /// Drop what a deleted pipeline left: its state, and in a cluster its commit stream.
    async fn forget(&self, record: &PipelineRecord) -> Result<(), PipelineError> {
        self.store.delete_state_prefix(keys::state_scope_prefix(record.id).to_vec()).await?;
        if let Some(cluster) = self.store.cluster() {
            crate::cluster::CommitLog::delete(cluster, &record.spec.name).await;
        }
        Ok(())
    }

    /// This node's counters of pipeline `name` (in a cluster, of the partitions it ran).
    pub fn counters(&self, name: &str) -> Option<wire::CountersC1> {
        let running = self.get(name).ok()?;
        let c = &running.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let failure = running.last_failure.lock().expect("last failure").clone();
        let steps = c
            .steps
            .lock()
            .expect("step stats")
            .iter()
            .map(|s| [s.input, s.output, s.dropped, s.errors, s.calls, s.busy_us])
            .collect();
        Some(wire::CountersC1 {
            processed: load(&c.processed),
            emitted: load(&c.emitted),
            dropped: load(&c.dropped),
            batches: load(&c.batches),
            failed: load(&c.failed),
            dead_lettered: load(&c.dead_lettered),
            retries: load(&c.retries),
            swaps: load(&c.swaps),
            swap_pause_p99_us: c.swap_pause_p99_us(),
            steps,
            last_failure: failure.as_ref().map(|(why, _)| why.clone()),
            last_failure_ms: failure.map(|(_, at)| at),
        })
    }

    /// The spec of pipeline `name`.
    pub fn spec(&self, name: &str) -> Option<PipelineSpec> {
        Some(self.get(name).ok()?.record.lock().expect("record").spec.clone())
    }

    /// Every pipeline's spec, by name.
    pub fn specs(&self) -> Vec<PipelineSpec> {
        self.names().iter().filter_map(|n| self.spec(n)).collect()
    }

    /// Names of the pipelines known here.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.running.lock().expect("pipelines").keys().cloned().collect();
        names.sort();
        names
    }

    /// Read pipeline `name`'s record again from the store (another node changed it) and bring
    /// the pipeline here to it: start it, stop it, restart it on a new topology, swap step
    /// versions, halt, pause or resume its workers — as the change would have here.
    pub async fn follow(self: &Arc<Self>, name: &str) -> Result<(), PipelineError> {
        let stored = self.store.meta_get::<PipelineRecord>(&keys::meta::pipeline(name)).await?;
        match (stored, self.get(name).ok()) {
            (None, None) => Ok(()),
            (None, Some(_)) => {
                // Deleted elsewhere: the node that deleted it drops what the cluster holds.
                if let Some(r) = self.stop(name).await {
                    let id = r.record.lock().expect("record").id;
                    self.store.delete_state_prefix(keys::state_scope_prefix(id).to_vec()).await?;
                }
                Ok(())
            }
            (Some(record), None) => self.launch(record).await,
            (Some(record), Some(running)) => self.converge(&running, record).await,
        }
    }

    /// Bring a running pipeline to `record`.
    async fn converge(self: &Arc<Self>, running: &Arc<Running>, record: PipelineRecord) -> Result<(), PipelineError> {
        let old = running.record.lock().expect("record").clone();
        if old == record {
            return Ok(());
        }
        let name = record.spec.name.clone();
        if old.id != record.id || (old.spec != record.spec && !old.spec.differs_only_in_versions(&record.spec)) {
            self.stop(&name).await;
            return self.launch(record).await;
        }
        if old.spec != record.spec {
            self.swap_steps(running, &record.spec).await?;
        }
        *running.record.lock().expect("record") = record.clone();
        let reset = old.resets != record.resets;
        match (old.state(), record.state()) {
            (RunState::Running, RunState::Halted | RunState::Paused) => Self::stop_workers(running).await,
            (RunState::Running, RunState::Running) if reset => {
                Self::stop_workers(running).await;
                self.spawn_workers(running);
            }
            (RunState::Halted | RunState::Paused, RunState::Running) => {
                *running.last_failure.lock().expect("last failure") = None;
                Self::stop_workers(running).await;
                self.spawn_workers(running);
            }
            _ => {}
        }
        Ok(())
    }

    /// Status of one pipeline.
    pub async fn status(&self, name: &str) -> Result<PipelineStatus, PipelineError> {
        let running = self.get(name)?;
        let mut partitions = Vec::new();
        if let Some(topic) = running.plan.source.topic().filter(|t| !t.is_deleted()) {
            let committed = self.committed(&running.plan).await?;
            for (p, (c, (start, end))) in committed.into_iter().zip(self.store.all_bounds(topic).await?).enumerate() {
                partitions.push((p as u32, c.unwrap_or(start), end));
            }
        }
        let record = running.record.lock().expect("record").clone();
        let queue_depth = record.spec.source.queue().and_then(|q| self.queues.get(q).ok()).map(|q| {
            let i = q.info();
            i.ready + i.waiting + i.in_flight
        });
        let c = &running.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (last_failure, failed_ms) = running.last_failure.lock().expect("last failure").clone().unzip();
        Ok(PipelineStatus {
            // From the same snapshot as `last_error`: reading the record twice could report
            // a halt that happened in between without its reason.
            state: record.state(),
            steps: c.steps.lock().expect("step stats").clone(),
            // A halt's time is not kept with its reason; a handled failure's is.
            last_error_ms: if record.halted.is_some() { None } else { failed_ms },
            last_error: record.halted.clone().or(last_failure),
            spec: record.spec,
            owner: record.owner,
            plugins: running.plan.live_labels(),
            shadows: running.plan.shadow_labels(),
            processed: load(&c.processed),
            emitted: load(&c.emitted),
            dropped: load(&c.dropped),
            batches: load(&c.batches),
            failed: load(&c.failed),
            dead_lettered: load(&c.dead_lettered),
            retries: load(&c.retries),
            swaps: load(&c.swaps),
            swap_pause_p99_us: c.swap_pause_p99_us(),
            partitions,
            queue_depth,
        })
    }

    /// Linear memory held by each step's plugin instances over all workers, bytes (for
    /// metrics); empty for an unknown pipeline.
    pub fn step_memory(&self, name: &str) -> Vec<u64> {
        let running = self.running.lock().expect("pipelines");
        let Some(r) = running.get(name) else { return Vec::new() };
        let memory = r.counters.memory.lock().expect("plugin memory");
        let mut total = vec![0; r.plan.slots.len()];
        for per_step in memory.values() {
            for (t, m) in total.iter_mut().zip(per_step) {
                *t += m;
            }
        }
        total
    }

    /// Each running pipeline's batch latency histogram (for metrics).
    pub fn batch_latencies(&self) -> Vec<prometheus::Histogram> {
        let running = self.running.lock().expect("pipelines");
        running.values().filter_map(|r| r.counters.batch_latency.clone()).collect()
    }

    /// Each source partition's committed next offset (`None`: never committed): the
    /// pipeline's group offsets (in a cluster, as far as the outputs are in their sinks).
    async fn committed(&self, plan: &Plan) -> Result<Vec<Option<u64>>, PipelineError> {
        let Some(topic) = plan.source.topic() else { return Ok(Vec::new()) };
        Ok(self.store.committed(&plan.group, topic).await?)
    }

    /// Status of every pipeline, by name.
    pub async fn list(&self) -> Vec<PipelineStatus> {
        let mut out = Vec::new();
        for name in self.names() {
            if let Ok(s) = self.status(&name).await {
                out.push(s);
            }
        }
        out
    }

    /// Stop every worker (graceful shutdown): in-flight batches finish and commit first.
    pub async fn shutdown(&self) {
        let names: Vec<String> = self.running.lock().expect("pipelines").keys().cloned().collect();
        for name in names {
            self.stop(&name).await;
        }
    }

    /// Pipelines with a step running plugin `name` (pinned or not).
    pub fn users_of(&self, plugin: &str) -> Vec<String> {
        let running = self.running.lock().expect("pipelines");
        let mut users: Vec<String> = running
            .iter()
            .filter(|(_, r)| r.plan.slots.iter().any(|s| s.plugin == plugin))
            .map(|(n, _)| n.clone())
            .collect();
        users.sort();
        users
    }

    /// Prove that `info` starts (its `init` accepts the config) in every step that follows
    /// plugin `info.name`. Returns the pipelines checked.
    pub async fn check_version(&self, info: &PluginInfo, loaded: &LoadedPlugin) -> Result<Vec<String>, PipelineError> {
        let active = Arc::new(Active { info: info.clone(), loaded: loaded.clone() });
        let followers = self.followers(&info.name);
        let runtime = self.registry.runtime().clone();
        let checked = followers.iter().map(|(r, _)| r.plan.spec.name.clone()).collect();
        tokio::task::spawn_blocking(move || {
            for (r, step) in followers {
                plan::probe(&runtime, &r.plan.spec, step, &active).map_err(|message| PipelineError::DoesNotStart {
                    plugin: active.info.label(),
                    pipeline: r.plan.spec.name.clone(),
                    step: step + 1,
                    message,
                })?;
            }
            Ok(checked)
        })
        .await
        .map_err(|e| PipelineError::Invalid(format!("check task failed: {e}")))?
    }

    /// Make `info` the live version of every step following its plugin; each partition picks
    /// it up at its next batch boundary.
    pub fn swap_live(&self, info: &PluginInfo, loaded: &LoadedPlugin) {
        let active = Arc::new(Active { info: info.clone(), loaded: loaded.clone() });
        for (r, step) in self.followers(&info.name) {
            r.plan.slots[step].set_live(active.clone());
        }
        if let Some(report) = self.shadows.report(&info.name) {
            self.shadows.reset(&info.name, Some(info.version), report.shadow_version);
        }
    }

    /// Run `shadow` (or nothing) beside every step following `plugin`, and restart its diff.
    pub fn set_shadow(&self, plugin: &str, live: Option<u32>, shadow: Option<(&PluginInfo, &LoadedPlugin)>) {
        let active = shadow.map(|(info, loaded)| Arc::new(Active { info: info.clone(), loaded: loaded.clone() }));
        for (r, step) in self.followers(plugin) {
            r.plan.slots[step].set_shadow(active.clone());
        }
        self.shadows.reset(plugin, live, shadow.map(|(i, _)| i.version));
    }

    /// How the shadow of `plugin` compares with its live version so far.
    pub fn shadow_report(&self, plugin: &str) -> ShadowReport {
        self.shadows
            .report(plugin)
            .unwrap_or_else(|| ShadowReport { plugin: plugin.to_string(), ..ShadowReport::default() })
    }

    /// `(pipeline, step)` of every unpinned step running `plugin`.
    /// The specs of the pipelines with a step following `plugin`'s live version, by name.
    pub fn follower_specs(&self, plugin: &str) -> Vec<PipelineSpec> {
        let mut specs: Vec<PipelineSpec> = Vec::new();
        for (r, _) in self.followers(plugin) {
            // The record's spec: an `apply` that changed only versions moved the pinning there
            // (and in the slots), not in the plan.
            let spec = r.record.lock().expect("record").spec.clone();
            if specs.last().is_none_or(|s| s.name != spec.name) {
                specs.push(spec);
            }
        }
        specs
    }

    fn followers(&self, plugin: &str) -> Vec<(Arc<Running>, usize)> {
        let running = self.running.lock().expect("pipelines");
        let mut names: Vec<&String> = running.keys().collect();
        // In name order, so a refused deploy names the same pipeline every time.
        names.sort();
        let mut out = Vec::new();
        for r in names.into_iter().map(|n| &running[n]) {
            for (i, s) in r.plan.slots.iter().enumerate() {
                if s.plugin == plugin && !s.is_pinned() {
                    out.push((r.clone(), i));
                }
            }
        }
        out
    }

    fn get(&self, name: &str) -> Result<Arc<Running>, PipelineError> {
        self.running
            .lock()
            .expect("pipelines")
            .get(name)
            .cloned()
            .ok_or_else(|| PipelineError::Unknown(name.to_string()))
    }

    async fn validate(&self, spec: &PipelineSpec) -> Result<(), PipelineError> {
        if spec.steps.is_empty() {
            return Err(PipelineError::Invalid(format!(
                "pipeline `{}` has no steps: give at least one plugin",
                spec.name
            )));
        }
        if spec.steps.len() > 64 {
            return Err(PipelineError::Invalid(format!(
                "pipeline `{}` has {} steps; at most 64 are allowed",
                spec.name,
                spec.steps.len()
            )));
        }
        match &spec.source {
            Source::Queue(q) => drop(self.queues.get(q)?),
            Source::Topic(t) => drop(self.store.find_topic(t).await?),
        }
        self.store.find_topic(&spec.sink).await?;
        check_name("group", &spec.group()).map_err(|e| PipelineError::Invalid(e.to_string()))?;
        if let Some(n) = spec.batch_max_messages
            && (n == 0 || n > crate::limits::MAX_FETCH_RECORDS)
        {
            return Err(PipelineError::Invalid(format!(
                "batch_max_messages must be between 1 and {}, got {n}",
                crate::limits::MAX_FETCH_RECORDS
            )));
        }
        for step in &spec.steps {
            self.registry.resolve(&step.plugin)?;
        }
        cycles::check_spec(spec, &self.topology).map_err(PipelineError::Invalid)
    }

    async fn ensure_dead_letter_topic(&self, spec: &PipelineSpec) -> Result<(), PipelineError> {
        let name = spec.dead_letter_topic();
        if self.store.find_topic(&name).await.is_ok() {
            return Ok(());
        }
        let partitions = match &spec.source {
            Source::Queue(_) => 1,
            Source::Topic(t) => self.store.find_topic(t).await?.partition_count(),
        };
        let config = TopicConfig { partitions, ..TopicConfig::default() };
        match self.store.create_topic(&name, config).await {
            Ok(_) | Err(StoreError::TopicExists(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn persist(&self, record: &PipelineRecord) -> Result<(), PipelineError> {
        self.store.meta_write(vec![MetaWrite::put(keys::meta::pipeline(&record.spec.name), record)]).await?;
        Ok(())
    }

    /// Register a pipeline record and start its workers (unless it is halted or paused).
    async fn launch(self: &Arc<Self>, record: PipelineRecord) -> Result<(), PipelineError> {
        let name = record.spec.name.clone();
        let plan = Plan::prepare(self, &record.spec, record.id).await?;
        let parallelism =
            record.spec.parallelism.unwrap_or(usize::MAX).clamp(1, plan.source.workers(&record.spec) as usize);
        let running = Arc::new(Running {
            counters: Counters::new(&record.spec.name, record.spec.steps.len()),
            record: Mutex::new(record),
            plan: Arc::new(plan),
            last_failure: Mutex::new(None),
            stop: Mutex::new(watch::channel(false).0),
            tasks: Mutex::new(Vec::new()),
            permits: Arc::new(tokio::sync::Semaphore::new(parallelism)),
        });
        self.topology.set(&running.plan.spec);
        self.running.lock().expect("pipelines").insert(name, running.clone());
        if running.state() == RunState::Running {
            self.spawn_workers(&running);
        }
        Ok(())
    }

    /// One worker task per source partition, all listening to a fresh stop signal.
    fn spawn_workers(self: &Arc<Self>, running: &Arc<Running>) {
        let (tx, rx) = watch::channel(false);
        *running.stop.lock().expect("stop") = tx;
        let tasks = (0..running.plan.source.workers(&running.plan.spec))
            .map(|p| {
                let (me, running, stop) = (self.clone(), running.clone(), rx.clone());
                if self.store.cluster().is_some() && matches!(running.plan.source, plan::Input::Topic(_)) {
                    return tokio::spawn(me.supervise(running, p, stop));
                }
                tokio::spawn(async move {
                    let feed = match &running.plan.source {
                        plan::Input::Topic(_) => worker::Feed::partition(&running.plan, p).await,
                        plan::Input::Queue(_) => Ok(worker::Feed::queue(&running.plan, me.queues.clone())),
                    };
                    let done = match feed {
                        Ok(feed) => worker::run(&running.plan, p, &running, stop, feed).await,
                        Err(e) => Err(e),
                    };
                    if let Err(error) = done {
                        me.halt(&running, error).await;
                    }
                })
            })
            .collect();
        *running.tasks.lock().expect("tasks") = tasks;
    }

    /// Stop a pipeline's workers after their current batch and wait for them.
    async fn stop_workers(running: &Running) {
        running.signal_stop();
        let tasks = std::mem::take(&mut *running.tasks.lock().expect("tasks"));
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Forget a pipeline after stopping its workers.
    async fn stop(&self, name: &str) -> Option<Arc<Running>> {
        let running = self.running.lock().expect("pipelines").remove(name)?;
        self.topology.remove(name);
        Self::stop_workers(&running).await;
        Some(running)
    }

    /// Record a failure: the pipeline halts (all partitions) and says why, durably.
    async fn halt(&self, running: &Arc<Running>, error: String) {
        let error = limits::truncated(error, limits::PIPELINE_REASON_BYTES);
        tracing::error!(pipeline = %running.plan.spec.name, %error, "pipeline halted");
        running.signal_stop();
        let record = {
            let mut record = running.record.lock().expect("record");
            if record.halted.is_some() {
                return;
            }
            record.halted = Some(error);
            record.clone()
        };
        if let Err(e) = self.persist(&record).await {
            tracing::error!(error = %e, "could not persist the halted state");
        }
    }
}
