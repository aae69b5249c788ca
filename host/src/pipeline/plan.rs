//! A pipeline's resolved shape: its topics, and for each step a slot holding the version
//! that runs now (and the shadow beside it). Deploys, rollbacks and promotions replace what a
//! slot holds; workers notice at their next batch boundary.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::shadow::ShadowBoard;
use super::{PipelineError, PipelineSpec, Source};
use crate::registry::{PluginInfo, Registry};
use crate::runtime::{LoadedPlugin, PluginInstance, Runtime, StateScope};
use crate::storage::{Topic, keys};
use crate::store::Store;

/// A version ready to instantiate.
#[derive(Clone)]
pub(crate) struct Active {
    /// Which version.
    pub info: PluginInfo,
    /// Its compiled component.
    pub loaded: LoadedPlugin,
}

/// One step's versions. A generation number changes with every replacement so workers can
/// tell, with one atomic load per batch, whether to re-instantiate.
pub(crate) struct Slot {
    /// The step's config, as `init` receives it (reserved `weir.*` keys added per version).
    pub config: Vec<(String, String)>,
    /// Whether the spec pins a version (then deploys do not touch it).
    pinned: AtomicBool,
    /// Plugin name.
    pub plugin: String,
    live: RwLock<Arc<Active>>,
    shadow: RwLock<Option<Arc<Active>>>,
    generation: AtomicU64,
}

impl Slot {
    /// The live version and its generation.
    pub(crate) fn live(&self) -> (Arc<Active>, u64) {
        let g = self.generation.load(Ordering::Acquire);
        (self.live.read().expect("slot").clone(), g)
    }

    /// The shadow version, if any.
    pub(crate) fn shadow(&self) -> Option<Arc<Active>> {
        self.shadow.read().expect("slot").clone()
    }

    /// Whether the step pins a version (deploys of the plugin do not touch it).
    pub(crate) fn is_pinned(&self) -> bool {
        self.pinned.load(Ordering::Acquire)
    }

    pub(crate) fn set_pinned(&self, pinned: bool) {
        self.pinned.store(pinned, Ordering::Release);
    }

    /// The current generation (changes on any replacement, live or shadow).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn set_live(&self, active: Arc<Active>) {
        *self.live.write().expect("slot") = active;
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn set_shadow(&self, active: Option<Arc<Active>>) {
        *self.shadow.write().expect("slot") = active;
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// What a pipeline reads, resolved.
pub(crate) enum Input {
    /// A topic, one worker per partition, offsets in the pipeline's group.
    Topic(Arc<Topic>),
    /// A queue, `parallelism` competing workers (default 1), acked in each batch's commit.
    Queue(Arc<crate::queue::Queue>),
}

impl Input {
    /// The topic or queue name.
    pub(crate) fn name(&self) -> &str {
        match self {
            Input::Topic(t) => &t.name,
            Input::Queue(q) => &q.name,
        }
    }

    /// The topic, for what only topics have (offsets, partitions).
    pub(crate) fn topic(&self) -> Option<&Arc<Topic>> {
        match self {
            Input::Topic(t) => Some(t),
            Input::Queue(_) => None,
        }
    }

    /// How many workers read it: a topic's partitions, or a queue's `parallelism`.
    pub(crate) fn workers(&self, spec: &PipelineSpec) -> u32 {
        match self {
            Input::Topic(t) => t.partition_count(),
            Input::Queue(_) => spec.parallelism.unwrap_or(1).clamp(1, 64) as u32,
        }
    }
}

/// Everything a pipeline's workers share.
pub(crate) struct Plan {
    pub store: Arc<Store>,
    /// Whose grants routed outputs are checked against (the owner is in the record).
    pub authority: Arc<crate::auth::Authority>,
    pub runtime: Arc<Runtime>,
    pub spec: PipelineSpec,
    pub group: String,
    /// Numeric scope of the pipeline's state keys.
    pub scope: u32,
    pub source: Input,
    pub sink: Arc<Topic>,
    pub slots: Vec<Slot>,
    pub shadows: Arc<ShadowBoard>,
    pub topology: Arc<super::cycles::Topology>,
}

impl Plan {
    /// Resolve topics and plugins, compile each step, and prove each step's `init` accepts its
    /// config — before anything is stored or started.
    pub(crate) async fn prepare(
        pipelines: &super::Pipelines,
        spec: &PipelineSpec,
        scope: u32,
    ) -> Result<Plan, PipelineError> {
        let (store, registry, queues) = (&pipelines.store, &pipelines.registry, &pipelines.queues);
        let source = match &spec.source {
            Source::Queue(q) => Input::Queue(queues.get(q)?),
            Source::Topic(t) => Input::Topic(store.find_topic(t).await?),
        };
        let sink = store.find_topic(&spec.sink).await?;
        let (registry_c, spec_c) = (registry.clone(), spec.clone());
        let slots = tokio::task::spawn_blocking(move || resolve_slots(&registry_c, &spec_c))
            .await
            .map_err(|e| PipelineError::Invalid(format!("plugin compilation task failed: {e}")))??;
        Ok(Plan {
            store: store.clone(),
            authority: pipelines.authority.clone(),
            runtime: registry.runtime().clone(),
            spec: spec.clone(),
            group: spec.group(),
            scope,
            source,
            sink,
            slots,
            shadows: pipelines.shadows.clone(),
            topology: pipelines.topology.clone(),
        })
    }

    /// `name@version` of each step's live version.
    pub(crate) fn live_labels(&self) -> Vec<String> {
        self.slots.iter().map(|s| s.live().0.info.label()).collect()
    }

    /// `name@version` of each step's shadow.
    pub(crate) fn shadow_labels(&self) -> Vec<Option<String>> {
        self.slots.iter().map(|s| s.shadow().map(|a| a.info.label())).collect()
    }

    /// A fresh, initialised instance of `active` as step `step` on `partition`. A shadow
    /// instance reads the step's committed state too; the worker discards its writes after
    /// every batch.
    pub(crate) fn instantiate(
        &self,
        step: usize,
        active: &Active,
        partition: u32,
        shadow: bool,
    ) -> Result<PluginInstance, String> {
        let scope = StateScope {
            store: Some(self.store.clone()),
            prefix: keys::state_prefix(self.scope, step as u16, partition).to_vec(),
        };
        let role = if shadow { " (shadow)" } else { "" };
        let label = format!("{}/{} {}{role}", self.spec.name, step + 1, active.info.label());
        let mut inst = self
            .runtime
            .instantiate(&active.loaded, &active.info.sandbox, label, scope)
            .map_err(|e| format!("step {} ({}): {e}", step + 1, active.info.label()))?;
        let config = init_config(&self.spec.name, step, &self.slots[step].config, &active.info);
        inst.init(&config).map_err(|e| format!("step {} ({}): {e}", step + 1, active.info.label()))?;
        Ok(inst)
    }
}

/// The config `init` receives: the step's own keys plus the reserved `weir.*` keys naming
/// the pipeline, step, plugin and version (documented in `wit/weir.wit`).
pub(crate) fn init_config(
    pipeline: &str,
    step: usize,
    config: &[(String, String)],
    info: &PluginInfo,
) -> Vec<(String, String)> {
    let mut c = config.to_vec();
    c.push(("weir.pipeline".into(), pipeline.to_string()));
    c.push(("weir.step".into(), (step + 1).to_string()));
    c.push(("weir.plugin".into(), info.name.clone()));
    c.push(("weir.version".into(), info.version.to_string()));
    c
}

/// Prove `active` starts with the config of step `step` of `spec`, on a throwaway instance
/// with in-memory state.
pub(crate) fn probe(runtime: &Runtime, spec: &PipelineSpec, step: usize, active: &Active) -> Result<(), String> {
    let config: Vec<_> = spec.steps[step].config.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let scope = StateScope { store: None, prefix: Vec::new() };
    let mut inst = runtime
        .instantiate(&active.loaded, &active.info.sandbox, format!("{} (check)", active.info.label()), scope)
        .map_err(|e| e.to_string())?;
    inst.init(&init_config(&spec.name, step, &config, &active.info)).map_err(|e| e.to_string())
}

fn resolve_slots(registry: &Registry, spec: &PipelineSpec) -> Result<Vec<Slot>, PipelineError> {
    let mut slots = Vec::with_capacity(spec.steps.len());
    for (i, s) in spec.steps.iter().enumerate() {
        let info = registry.resolve(&s.plugin)?;
        let loaded = registry.component(&info)?;
        let active = Arc::new(Active { info, loaded });
        probe(registry.runtime(), spec, i, &active).map_err(|message| PipelineError::Step {
            step: i + 1,
            plugin: active.info.label(),
            message,
        })?;
        // A following step also runs the plugin's shadow, if one is deployed and starts.
        let shadow = match (s.is_pinned(), registry.shadow(s.plugin_name())) {
            (false, Some(info)) => {
                let loaded = registry.component(&info)?;
                let a = Arc::new(Active { info, loaded });
                probe(registry.runtime(), spec, i, &a).is_ok().then_some(a)
            }
            _ => None,
        };
        slots.push(Slot {
            config: s.config.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            pinned: AtomicBool::new(s.is_pinned()),
            plugin: s.plugin_name().to_string(),
            live: RwLock::new(active),
            shadow: RwLock::new(shadow),
            generation: AtomicU64::new(0),
        });
    }
    Ok(slots)
}
