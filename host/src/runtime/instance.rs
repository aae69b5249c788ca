//! One instantiated plugin: a store of its own, the typed exports, and the checks around
//! each call (CPU deadline, outcome count, output budget).

use wasmtime::{Engine, Store};

use super::bindings::{self, types};
use super::{HostState, LoadedPlugin, PluginError, Sandbox, StateScope};
use crate::limits;
use crate::storage::StateWrite;

/// A live plugin instance. Not shared: each pipeline step on each partition owns one.
pub struct PluginInstance {
    store: Store<HostState>,
    plugin: bindings::Plugin,
    cpu_ms: u64,
    output_limit: usize,
    /// Set after a trap: the guest's memory may be inconsistent, so it is never called again.
    poisoned: bool,
}

impl PluginInstance {
    pub(super) fn new(
        engine: &Engine,
        loaded: &LoadedPlugin,
        sandbox: &Sandbox,
        label: String,
        scope: StateScope,
    ) -> Result<PluginInstance, PluginError> {
        let mut store = Store::new(engine, HostState::new(sandbox, label, scope));
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(ticks(sandbox.cpu_ms_per_batch));
        let plugin = loaded.pre.instantiate(&mut store).map_err(|e| trap_error(e, sandbox.cpu_ms_per_batch))?;
        Ok(PluginInstance {
            store,
            plugin,
            cpu_ms: sandbox.cpu_ms_per_batch,
            output_limit: sandbox.output_bytes_per_batch,
            poisoned: false,
        })
    }

    /// Call `init` with the step's config.
    pub fn init(&mut self, config: &[(String, String)]) -> Result<(), PluginError> {
        self.arm()?;
        let r = self.plugin.call_init(&mut self.store, config);
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(msg)) => Err(PluginError::Init(limits::truncated(msg, limits::PLUGIN_TEXT_BYTES))),
            Err(e) => Err(self.trapped(e)),
        }
    }

    /// Call `process` on one batch; checks one outcome per input and the output budget.
    /// On error, state written during this call is dropped (earlier calls' stays).
    pub fn process(&mut self, batch: &types::Batch) -> Result<Vec<types::Outcome>, PluginError> {
        self.arm()?;
        let result = self.plugin.call_process(&mut self.store, batch);
        let outcomes = match result {
            Ok(o) => o,
            Err(e) => {
                self.store.data_mut().rollback();
                return Err(self.trapped(e));
            }
        };
        if let Err(e) = check_outcomes(batch.messages.len(), &outcomes, self.output_limit) {
            self.store.data_mut().rollback();
            return Err(e);
        }
        Ok(outcomes)
    }

    /// The state writes of the calls since the last take, for the commit.
    pub fn take_state_writes(&mut self, now_ms: u64) -> Vec<StateWrite> {
        self.store.data_mut().take_state_writes(now_ms)
    }

    /// Keep the state writes of the calls so far as part of the batch.
    pub fn checkpoint(&mut self) {
        self.store.data_mut().checkpoint();
    }

    /// Drop the state writes since the last checkpoint (a message failed).
    pub fn rollback(&mut self) {
        self.store.data_mut().rollback();
    }

    /// Forget every uncommitted state write (the batch will be retried or abandoned).
    pub fn discard_state_writes(&mut self) {
        self.store.data_mut().discard_state_writes();
    }

    /// Whether a trap made this instance unusable.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    fn arm(&mut self) -> Result<(), PluginError> {
        if self.poisoned {
            return Err(PluginError::Trap("instance unusable after an earlier trap".into()));
        }
        self.store.set_epoch_deadline(ticks(self.cpu_ms));
        self.store.data().output.clear();
        Ok(())
    }

    fn trapped(&mut self, e: wasmtime::Error) -> PluginError {
        self.poisoned = true;
        match (trap_error(e, self.cpu_ms), self.store.data().output.summary()) {
            (PluginError::Trap(t), Some(printed)) => PluginError::Trap(format!("{t}; the plugin printed: {printed}")),
            (other, _) => other,
        }
    }
}

/// The contract of `process`: one outcome per input, outputs within the byte budget, and
/// every output's key, headers and topic name within the limits a producer has.
pub fn check_outcomes(inputs: usize, outcomes: &[types::Outcome], output_limit: usize) -> Result<(), PluginError> {
    if outcomes.len() != inputs {
        return Err(PluginError::WrongOutcomeCount { expected: inputs, got: outcomes.len() });
    }
    let mut bytes = 0usize;
    for (i, o) in outcomes.iter().enumerate() {
        if let types::Outcome::Emit(outs) = o {
            for out in outs {
                check_output(out).map_err(|why| PluginError::InvalidOutput(format!("output for input {i}: {why}")))?;
                bytes = bytes.saturating_add(output_size(out));
            }
        }
    }
    if bytes > output_limit {
        return Err(PluginError::OutputTooLarge { bytes, limit: output_limit });
    }
    Ok(())
}

/// The limits a producer's record has, applied to a plugin's output before it is stored.
fn check_output(o: &types::Output) -> Result<(), String> {
    let too_long = |what: &str, len: usize, max: usize| format!("{what} of {len} bytes exceeds the limit of {max}");
    if let Some(k) = &o.key
        && k.len() > limits::MAX_KEY_BYTES
    {
        return Err(too_long("key", k.len(), limits::MAX_KEY_BYTES));
    }
    if o.headers.len() > limits::MAX_HEADERS {
        return Err(format!("{} headers exceed the limit of {}", o.headers.len(), limits::MAX_HEADERS));
    }
    for h in &o.headers {
        if h.name.len() > limits::MAX_KEY_BYTES {
            return Err(too_long("a header name", h.name.len(), limits::MAX_KEY_BYTES));
        }
        if h.value.len() > limits::MAX_KEY_BYTES {
            let name = limits::truncated(h.name.clone(), 64);
            return Err(too_long(&format!("header `{name}`'s value"), h.value.len(), limits::MAX_KEY_BYTES));
        }
    }
    if let Some(t) = &o.topic
        && t.len() > limits::MAX_NAME_BYTES
    {
        return Err(too_long("a topic name", t.len(), limits::MAX_NAME_BYTES));
    }
    Ok(())
}

fn ticks(cpu_ms: u64) -> u64 {
    cpu_ms.div_ceil(limits::EPOCH_TICK_MS).max(1)
}

fn output_size(o: &types::Output) -> usize {
    o.value.len()
        + o.key.as_ref().map_or(0, Vec::len)
        + o.topic.as_ref().map_or(0, String::len)
        + o.headers.iter().map(|h| h.name.len() + h.value.len()).sum::<usize>()
}

fn trap_error(e: wasmtime::Error, cpu_ms: u64) -> PluginError {
    if let Some(wasmtime::Trap::Interrupt) = e.downcast_ref::<wasmtime::Trap>() {
        return PluginError::CpuExceeded { budget_ms: cpu_ms };
    }
    // The root cause (e.g. "wasm trap: wasm `unreachable` instruction executed"); the guest
    // backtrace goes to the debug log, not into a status line.
    tracing::debug!(error = ?e, "plugin trap");
    PluginError::Trap(limits::truncated(e.root_cause().to_string(), limits::PLUGIN_TEXT_BYTES))
}
