//! One instantiated plugin: a store of its own, the typed exports of whichever ABI version
//! it speaks, and the checks around each call (CPU deadline, outcome count, output budget,
//! every output's limits). Both versions come out as the same host [`Outcome`]s.

use bytes::Bytes;
use wasmtime::{Engine, Store};
use weir_sdk::packed::{BatchWriter, Code, ResultView};

use super::bindings::{v1, v2};
use super::message::{Batch, Failure, Message, Outcome, Output};
use super::{HostState, LoadedPlugin, PluginError, Pre, Sandbox, StateScope};
use crate::limits;
use crate::storage::StateWrite;

/// The exports of an instance, by ABI version.
enum Exports {
    /// `weir:plugin@0.1.0`: WIT records per message.
    V1(v1::Plugin),
    /// `weir:plugin@0.2.0`: one packed batch; its buffer is reused from batch to batch.
    V2(v2::Plugin, Box<BatchWriter>),
}

/// A live plugin instance. Not shared: each pipeline step on each partition owns one.
pub struct PluginInstance {
    store: Store<HostState>,
    exports: Exports,
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
        let trap = |e| trap_error(e, sandbox.cpu_ms_per_batch);
        let exports = match &loaded.pre {
            Pre::V1(pre) => Exports::V1(pre.instantiate(&mut store).map_err(trap)?),
            Pre::V2(pre) => Exports::V2(pre.instantiate(&mut store).map_err(trap)?, Box::default()),
        };
        Ok(PluginInstance {
            store,
            exports,
            cpu_ms: sandbox.cpu_ms_per_batch,
            output_limit: sandbox.output_bytes_per_batch,
            poisoned: false,
        })
    }

    /// Linear memory the guest holds, bytes.
    pub fn memory_bytes(&self) -> usize {
        self.store.data().limits.memory_bytes
    }

    /// Call `init` with the step's config.
    pub fn init(&mut self, config: &[(String, String)]) -> Result<(), PluginError> {
        self.arm()?;
        let r = match &self.exports {
            Exports::V1(p) => p.call_init(&mut self.store, config),
            Exports::V2(p, _) => p.call_init(&mut self.store, config),
        };
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(msg)) => Err(PluginError::Init(limits::truncated(msg, limits::PLUGIN_TEXT_BYTES))),
            Err(e) => Err(self.trapped(e)),
        }
    }

    /// Call `process` on one batch; checks one outcome per input, the output budget and every
    /// output's limits. On error, state written during this call is dropped (earlier calls'
    /// stays).
    pub fn process(&mut self, batch: &Batch) -> Result<Vec<Outcome>, PluginError> {
        self.arm()?;
        let n = batch.messages.len();
        let outcomes = match &mut self.exports {
            Exports::V1(p) => {
                p.call_process(&mut self.store, &to_v1(batch)).map(|o| Ok(o.into_iter().map(from_v1).collect()))
            }
            Exports::V2(p, writer) => {
                pack(writer, batch);
                p.call_process(&mut self.store, writer.finish()).map(|result| unpack(result, n))
            }
        };
        let checked = match outcomes {
            Ok(unpacked) => unpacked.and_then(|o| check_outcomes(n, &o, self.output_limit).map(|()| o)),
            Err(e) => {
                self.store.data_mut().rollback();
                return Err(self.trapped(e));
            }
        };
        if checked.is_err() {
            self.store.data_mut().rollback();
        }
        checked
    }

    /// The ABI version the instance speaks: `0.1.0` or `0.2.0`.
    pub fn abi(&self) -> &'static str {
        match self.exports {
            Exports::V1(_) => "0.1.0",
            Exports::V2(..) => "0.2.0",
        }
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

/// Pack `batch` for a 0.2.0 plugin into the instance's reused buffer.
fn pack(writer: &mut BatchWriter, batch: &Batch) {
    writer.begin(&batch.topic, batch.messages.len());
    for m in &batch.messages {
        let headers = m.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()));
        writer.push(m.offset, m.timestamp_ms, m.partition, m.key.as_deref(), &m.value, headers);
    }
}

/// A 0.2.0 plugin's packed result as outcomes. Outputs' keys and values are slices of the
/// one result buffer: nothing is copied per output.
pub fn unpack(result: Vec<u8>, inputs: usize) -> Result<Vec<Outcome>, PluginError> {
    let bytes = Bytes::from(result);
    let view = ResultView::parse(&bytes, inputs)
        .map_err(|e| PluginError::InvalidOutput(limits::truncated(e.to_string(), limits::PLUGIN_TEXT_BYTES)))?;
    let mut next_output = 0usize;
    let mut outcomes = Vec::with_capacity(inputs);
    for i in 0..inputs {
        outcomes.push(match view.code(i) {
            Code::Keep => Outcome::Keep,
            Code::Drop => Outcome::Drop,
            Code::Forward(t) => Outcome::Forward(view.topic(t).to_string()),
            Code::Fail(f) => {
                let (message, retryable) = view.failure(f);
                let message = limits::truncated(message.to_string(), limits::PLUGIN_TEXT_BYTES);
                Outcome::Fail(Failure { message, retryable })
            }
            Code::Emit(n) => {
                let outputs = (next_output..next_output + n as usize).map(|o| {
                    let r = view.output(o);
                    Output {
                        key: r.key.map(|k| bytes.slice_ref(k)),
                        value: bytes.slice_ref(r.value),
                        headers: r.headers.into_iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
                        topic: r.topic.map(str::to_string),
                    }
                });
                let outputs = outputs.collect();
                next_output += n as usize;
                Outcome::Emit(outputs)
            }
        });
    }
    Ok(outcomes)
}

/// A batch as a 0.1.0 plugin takes it: every key, value and header copied into WIT records.
fn to_v1(batch: &Batch) -> v1::types::Batch {
    let message = |m: &Message| v1::types::Message {
        key: m.key.as_ref().map(|k| k.to_vec()),
        value: m.value.to_vec(),
        headers: m
            .headers
            .iter()
            .map(|(name, value)| v1::types::Header { name: name.clone(), value: value.clone() })
            .collect(),
        timestamp_ms: m.timestamp_ms,
        partition: m.partition,
        offset: m.offset,
    };
    v1::types::Batch { topic: batch.topic.clone(), messages: batch.messages.iter().map(message).collect() }
}

/// A 0.1.0 outcome as the host's.
fn from_v1(o: v1::types::Outcome) -> Outcome {
    match o {
        v1::types::Outcome::Keep => Outcome::Keep,
        v1::types::Outcome::Drop => Outcome::Drop,
        v1::types::Outcome::Fail(f) => Outcome::Fail(Failure {
            message: limits::truncated(f.message, limits::PLUGIN_TEXT_BYTES),
            retryable: f.retryable,
        }),
        v1::types::Outcome::Emit(outs) => Outcome::Emit(
            outs.into_iter()
                .map(|o| Output {
                    key: o.key.map(Bytes::from),
                    value: Bytes::from(o.value),
                    headers: o.headers.into_iter().map(|h| (h.name, h.value)).collect(),
                    topic: o.topic,
                })
                .collect(),
        ),
    }
}

/// The contract of `process`: one outcome per input, outputs within the byte budget, and
/// every output's key, headers and topic name within the limits a producer has.
pub fn check_outcomes(inputs: usize, outcomes: &[Outcome], output_limit: usize) -> Result<(), PluginError> {
    if outcomes.len() != inputs {
        return Err(PluginError::WrongOutcomeCount { expected: inputs, got: outcomes.len() });
    }
    let mut bytes = 0usize;
    for (i, o) in outcomes.iter().enumerate() {
        match o {
            Outcome::Emit(outs) => {
                for out in outs {
                    check_output(out.key.as_deref(), &out.headers, out.topic.as_deref())
                        .map_err(|why| PluginError::InvalidOutput(format!("output for input {i}: {why}")))?;
                    bytes = bytes.saturating_add(out.size());
                }
            }
            Outcome::Forward(topic) => check_output(None, &[], Some(topic))
                .map_err(|why| PluginError::InvalidOutput(format!("output for input {i}: {why}")))?,
            _ => {}
        }
    }
    if bytes > output_limit {
        return Err(PluginError::OutputTooLarge { bytes, limit: output_limit });
    }
    Ok(())
}

/// The limits a producer's record has, applied to a plugin's output before it is stored.
fn check_output(key: Option<&[u8]>, headers: &[(String, String)], topic: Option<&str>) -> Result<(), String> {
    let too_long = |what: &str, len: usize, max: usize| format!("{what} of {len} bytes exceeds the limit of {max}");
    if let Some(k) = key
        && k.len() > limits::MAX_KEY_BYTES
    {
        return Err(too_long("key", k.len(), limits::MAX_KEY_BYTES));
    }
    if headers.len() > limits::MAX_HEADERS {
        return Err(format!("{} headers exceed the limit of {}", headers.len(), limits::MAX_HEADERS));
    }
    for (name, value) in headers {
        if name.len() > limits::MAX_KEY_BYTES {
            return Err(too_long("a header name", name.len(), limits::MAX_KEY_BYTES));
        }
        if value.len() > limits::MAX_KEY_BYTES {
            let name = limits::truncated(name.clone(), 64);
            return Err(too_long(&format!("header `{name}`'s value"), value.len(), limits::MAX_KEY_BYTES));
        }
    }
    if let Some(t) = topic
        && t.len() > limits::MAX_NAME_BYTES
    {
        return Err(too_long("a topic name", t.len(), limits::MAX_NAME_BYTES));
    }
    Ok(())
}

fn ticks(cpu_ms: u64) -> u64 {
    cpu_ms.div_ceil(limits::EPOCH_TICK_MS).max(1)
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
