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
//! * A failure never skips a message silently: the pipeline halts naming the step, plugin,
//!   offset and error.

mod worker;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::registry::{Registry, RegistryError};
use crate::storage::{Store, StoreError, keys};
use crate::types::{check_name, now_ms};

/// What a pipeline reads, runs and writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// Name.
    pub name: String,
    /// Source topic.
    pub source: String,
    /// Consumer group holding the pipeline's offsets; default `pipeline.<name>`.
    #[serde(default)]
    pub group: Option<String>,
    /// Steps, in order.
    pub steps: Vec<StepSpec>,
    /// Topic receiving the last step's outputs that are not routed elsewhere.
    pub sink: String,
    /// Where to start when the group has no committed offset.
    #[serde(default)]
    pub start: StartPosition,
    /// Messages per batch (default [`crate::limits::PIPELINE_BATCH_MESSAGES`]).
    #[serde(default)]
    pub batch_max_messages: Option<usize>,
}

impl PipelineSpec {
    /// The consumer group that holds this pipeline's source offsets.
    pub fn group(&self) -> String {
        self.group
            .clone()
            .unwrap_or_else(|| format!("pipeline.{}", self.name))
    }
}

/// One step: a plugin and its config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// `NAME` (follows the latest version) or `NAME@V` (pinned).
    pub plugin: String,
    /// `key = value` config passed to the plugin's `init`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// Where a pipeline without committed offsets starts reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum StartPosition {
    /// The oldest stored record.
    #[default]
    Earliest,
    /// Only records produced after the pipeline starts.
    Latest,
}

/// A pipeline's run state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    /// Processing.
    Running,
    /// Stopped on a failure; the error says where and why.
    Halted,
}

/// What `weir pipeline status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineStatus {
    /// The spec.
    pub spec: PipelineSpec,
    /// Run state.
    pub state: RunState,
    /// Resolved `plugin@version` of each step.
    pub plugins: Vec<String>,
    /// Input messages processed and committed.
    pub processed: u64,
    /// Outputs written (sink and routed).
    pub emitted: u64,
    /// Inputs dropped by a step.
    pub dropped: u64,
    /// Batches committed.
    pub batches: u64,
    /// `(partition, committed next offset, high watermark)`.
    pub partitions: Vec<(u32, u64, u64)>,
    /// The error that halted the pipeline.
    pub last_error: Option<String>,
}

impl PipelineStatus {
    /// Unprocessed records over all partitions.
    pub fn lag(&self) -> u64 {
        self.partitions
            .iter()
            .map(|(_, c, hw)| hw.saturating_sub(*c))
            .sum()
    }
}

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

/// A pipeline as stored in `meta` (`pipeline/<name>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PipelineRecord {
    spec: PipelineSpec,
    /// Numeric scope of its state keys; never reused.
    id: u32,
    created_ms: u64,
    /// Set when the pipeline halted; it stays halted across restarts.
    #[serde(default)]
    halted: Option<String>,
}

/// Counters shared by a pipeline's workers.
#[derive(Default)]
pub(crate) struct Counters {
    processed: AtomicU64,
    emitted: AtomicU64,
    dropped: AtomicU64,
    batches: AtomicU64,
}

/// A running (or halted) pipeline.
pub(crate) struct Running {
    record: Mutex<PipelineRecord>,
    plugins: Vec<String>,
    counters: Counters,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// All pipelines of the server.
pub struct Pipelines {
    store: Arc<Store>,
    registry: Arc<Registry>,
    running: Mutex<HashMap<String, Arc<Running>>>,
}

impl Pipelines {
    /// Start every stored pipeline (halted ones stay halted).
    pub async fn start(
        store: Arc<Store>,
        registry: Arc<Registry>,
    ) -> Result<Arc<Pipelines>, PipelineError> {
        let me = Arc::new(Pipelines {
            store: store.clone(),
            registry,
            running: Mutex::new(HashMap::new()),
        });
        for (key, value) in store.meta_scan("pipeline/")? {
            let record: PipelineRecord =
                rmp_serde::from_slice(&value).map_err(|e| StoreError::Corrupt {
                    what: key.clone(),
                    why: e.to_string(),
                })?;
            let name = record.spec.name.clone();
            if let Err(e) = me.launch(record).await {
                tracing::error!(pipeline = %name, error = %e, "pipeline could not start");
            }
        }
        Ok(me)
    }

    /// Validate, store and start a pipeline.
    pub async fn create(
        self: &Arc<Self>,
        spec: PipelineSpec,
    ) -> Result<PipelineStatus, PipelineError> {
        check_name("pipeline", &spec.name).map_err(PipelineError::Invalid)?;
        if self
            .running
            .lock()
            .expect("pipelines")
            .contains_key(&spec.name)
        {
            return Err(PipelineError::Exists(spec.name));
        }
        self.validate(&spec)?;
        let id = self.next_id().await?;
        let record = PipelineRecord {
            spec: spec.clone(),
            id,
            created_ms: now_ms(),
            halted: None,
        };
        self.launch(record.clone()).await?;
        // Persist after the steps proved they start, so a bad spec leaves nothing behind.
        let persisted = self.persist(&record).await;
        if let Err(e) = persisted {
            self.stop(&spec.name).await;
            return Err(e);
        }
        self.status(&spec.name)
    }

    /// Stop a pipeline and delete it with its state and offsets.
    pub async fn delete(&self, name: &str) -> Result<(), PipelineError> {
        let running = self
            .stop(name)
            .await
            .ok_or_else(|| PipelineError::Unknown(name.to_string()))?;
        let record = running.record.lock().expect("record").clone();
        self.store
            .meta_write(vec![(format!("pipeline/{name}"), None)])
            .await?;
        self.store
            .delete_state_prefix(keys::state_scope_prefix(record.id).to_vec())
            .await?;
        Ok(())
    }

    /// Status of one pipeline.
    pub fn status(&self, name: &str) -> Result<PipelineStatus, PipelineError> {
        let running = self.get(name)?;
        let record = running.record.lock().expect("record").clone();
        let mut partitions = Vec::new();
        if let Ok(topic) = self.store.topic(&record.spec.source) {
            let committed = self.store.committed(&record.spec.group(), &topic)?;
            for (p, c) in committed.iter().enumerate() {
                let hw = topic.partitions()[p].high_watermark();
                partitions.push((p as u32, c.unwrap_or(0), hw));
            }
        }
        let c = &running.counters;
        Ok(PipelineStatus {
            state: if record.halted.is_some() {
                RunState::Halted
            } else {
                RunState::Running
            },
            last_error: record.halted.clone(),
            spec: record.spec,
            plugins: running.plugins.clone(),
            processed: c.processed.load(Ordering::Relaxed),
            emitted: c.emitted.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            partitions,
        })
    }

    /// Status of every pipeline, by name.
    pub fn list(&self) -> Vec<PipelineStatus> {
        let mut names: Vec<String> = self
            .running
            .lock()
            .expect("pipelines")
            .keys()
            .cloned()
            .collect();
        names.sort();
        names.iter().filter_map(|n| self.status(n).ok()).collect()
    }

    /// Stop every worker (graceful shutdown): in-flight batches finish and commit first.
    pub async fn shutdown(&self) {
        let names: Vec<String> = self
            .running
            .lock()
            .expect("pipelines")
            .keys()
            .cloned()
            .collect();
        for name in names {
            self.stop(&name).await;
        }
    }

    /// Whether any pipeline step uses plugin `name`, and which pipelines.
    pub fn users_of(&self, plugin: &str) -> Vec<String> {
        let running = self.running.lock().expect("pipelines");
        let mut users: Vec<String> = running
            .iter()
            .filter(|(_, r)| {
                let record = r.record.lock().expect("record");
                record
                    .spec
                    .steps
                    .iter()
                    .any(|s| s.plugin.split('@').next() == Some(plugin))
            })
            .map(|(n, _)| n.clone())
            .collect();
        users.sort();
        users
    }

    fn get(&self, name: &str) -> Result<Arc<Running>, PipelineError> {
        self.running
            .lock()
            .expect("pipelines")
            .get(name)
            .cloned()
            .ok_or_else(|| PipelineError::Unknown(name.to_string()))
    }

    fn validate(&self, spec: &PipelineSpec) -> Result<(), PipelineError> {
        if spec.steps.is_empty() {
            return Err(PipelineError::Invalid(format!(
                "pipeline `{}` has no steps: give at least one plugin",
                spec.name
            )));
        }
        if spec.steps.len() > u16::MAX as usize {
            return Err(PipelineError::Invalid("too many steps".into()));
        }
        self.store.topic(&spec.source)?;
        self.store.topic(&spec.sink)?;
        check_name("group", &spec.group()).map_err(PipelineError::Invalid)?;
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
        Ok(())
    }

    async fn next_id(&self) -> Result<u32, PipelineError> {
        static ID_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _g = ID_LOCK.lock().await;
        let next = match self.store.meta_get("seq/pipeline")? {
            Some(v) => {
                u32::from_be_bytes(v.as_slice().try_into().map_err(|_| StoreError::Corrupt {
                    what: "seq/pipeline".into(),
                    why: "not 4 bytes".into(),
                })?)
            }
            None => 1,
        };
        self.store
            .meta_write(vec![(
                "seq/pipeline".into(),
                Some((next + 1).to_be_bytes().to_vec()),
            )])
            .await?;
        Ok(next)
    }

    async fn persist(&self, record: &PipelineRecord) -> Result<(), PipelineError> {
        let encoded =
            rmp_serde::to_vec_named(record).map_err(|e| PipelineError::Invalid(e.to_string()))?;
        self.store
            .meta_write(vec![(
                format!("pipeline/{}", record.spec.name),
                Some(encoded),
            )])
            .await?;
        Ok(())
    }

    /// Start workers for a pipeline record (or register it halted).
    async fn launch(self: &Arc<Self>, record: PipelineRecord) -> Result<(), PipelineError> {
        let name = record.spec.name.clone();
        let halted = record.halted.is_some();
        let plan =
            worker::Plan::prepare(&self.store, &self.registry, &record.spec, record.id).await?;
        let (stop, _) = watch::channel(false);
        let running = Arc::new(Running {
            record: Mutex::new(record),
            plugins: plan.plugin_labels(),
            counters: Counters::default(),
            stop,
            tasks: Mutex::new(Vec::new()),
        });
        self.running
            .lock()
            .expect("pipelines")
            .insert(name, running.clone());
        if !halted {
            let tasks = plan.spawn(self.clone(), running.clone());
            *running.tasks.lock().expect("tasks") = tasks;
        }
        Ok(())
    }

    /// Signal a pipeline's workers to stop after their current batch and wait for them.
    async fn stop(&self, name: &str) -> Option<Arc<Running>> {
        let running = self.running.lock().expect("pipelines").remove(name)?;
        let _ = running.stop.send(true);
        let tasks = std::mem::take(&mut *running.tasks.lock().expect("tasks"));
        for t in tasks {
            let _ = t.await;
        }
        Some(running)
    }

    /// Record a failure: the pipeline halts (all partitions) and says why, durably.
    pub(crate) async fn halt(&self, running: &Arc<Running>, error: String) {
        tracing::error!(pipeline = %running.record.lock().expect("record").spec.name, %error, "pipeline halted");
        let _ = running.stop.send(true);
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
