//! The Wasm runtime: one wasmtime `Engine` with the pooling allocator and epoch deadlines,
//! components validated against the `weir:plugin` world, compiled once and cached
//! precompiled on disk by content hash, and instantiated from an `InstancePre`.
//!
//! Invariants:
//! * A plugin sees no filesystem, network, environment, arguments or real clock: WASI is
//!   linked with an empty context and a frozen clock, unless its [`Sandbox`] grants them.
//! * Every resource a guest controls is bounded: memory (store limiter), CPU per batch
//!   (epoch deadline), output bytes, state bytes, log lines.
//! * A trap fails the call, never the host; the instance is discarded afterwards.

mod bindings;
mod host;
mod instance;
mod message;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use host::{HostState, StateScope};
pub use instance::{PluginInstance, check_outcomes, unpack};
pub use message::{Batch, Failure, Message, Outcome, Output};

use crate::limits;

/// The world of `weir:plugin@0.2.0` (the packed batch), as recorded in the registry.
pub const WORLD: &str = "weir:plugin/plugin@0.2.0";
/// The world of the frozen `weir:plugin@0.1.0`.
pub const WORLD_V1: &str = "weir:plugin/plugin@0.1.0";

/// Why a component could not be loaded, or a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The bytes are not a WebAssembly component of the weir world; the text says what to fix.
    #[error("{0}")]
    Invalid(String),
    /// `init` returned an error.
    #[error("plugin init failed: {0}")]
    Init(String),
    /// The guest trapped (panic, unreachable, out of bounds, stack overflow, out of memory).
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The call ran past its CPU budget.
    #[error("plugin exceeded its CPU budget of {budget_ms} ms per batch")]
    CpuExceeded {
        /// The budget.
        budget_ms: u64,
    },
    /// `process` broke the contract of one outcome per input.
    #[error("plugin returned {got} outcomes for a batch of {expected} messages")]
    WrongOutcomeCount {
        /// Inputs.
        expected: usize,
        /// Outcomes returned.
        got: usize,
    },
    /// The batch's outputs exceed the plugin's output budget.
    #[error("plugin emitted {bytes} bytes in one batch; its limit is {limit}")]
    OutputTooLarge {
        /// Emitted.
        bytes: usize,
        /// Limit.
        limit: usize,
    },
    /// An output breaks a per-output limit (key, header or topic name size, header count).
    #[error("plugin output is invalid: {0}")]
    InvalidOutput(String),
    /// Compilation or the on-disk cache failed.
    #[error("{0}")]
    Engine(String),
}

/// What one plugin may use, fixed at deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    /// Linear memory limit in bytes.
    pub memory_bytes: usize,
    /// CPU time per `process` call.
    pub cpu_ms_per_batch: u64,
    /// Output bytes per batch.
    pub output_bytes_per_batch: usize,
    /// Largest state value.
    pub state_value_bytes: usize,
    /// State bytes written per batch.
    pub state_bytes_per_batch: usize,
    /// Log lines per second.
    pub log_lines_per_s: u32,
    /// Whether the guest sees the real wall and monotonic clocks (else: frozen at 0).
    pub allow_clock: bool,
    /// Environment variables the guest may read (copied from the server's environment).
    pub allow_env: Vec<String>,
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox {
            memory_bytes: limits::PLUGIN_MEMORY_BYTES,
            cpu_ms_per_batch: limits::PLUGIN_CPU_MS_PER_BATCH,
            output_bytes_per_batch: limits::PLUGIN_OUTPUT_BYTES_PER_BATCH,
            state_value_bytes: limits::STATE_VALUE_BYTES,
            state_bytes_per_batch: limits::STATE_BYTES_PER_BATCH,
            log_lines_per_s: limits::PLUGIN_LOG_LINES_PER_S,
            allow_clock: false,
            allow_env: Vec::new(),
        }
    }
}

/// A linked component of either ABI version.
#[derive(Clone)]
enum Pre {
    V1(bindings::v1::PluginPre<HostState>),
    V2(bindings::v2::PluginPre<HostState>),
}

/// A validated, compiled component, ready to instantiate cheaply many times.
#[derive(Clone)]
pub struct LoadedPlugin {
    pre: Pre,
    /// blake3 of the component bytes, hex.
    pub hash: String,
    /// What it declares it reads and writes (its `weir:schemas` section).
    pub declared: Option<Arc<crate::schemas::Declared>>,
}

impl LoadedPlugin {
    /// The world it implements: [`WORLD`] or [`WORLD_V1`].
    pub fn world(&self) -> &'static str {
        match self.pre {
            Pre::V1(_) => WORLD_V1,
            Pre::V2(_) => WORLD,
        }
    }
}

/// The engine, the linker and the compiled-code cache.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache_dir: PathBuf,
    /// Stops the epoch thread when the runtime is dropped.
    _epoch: EpochTicker,
}

impl Runtime {
    /// Build the engine and linker; compiled components are cached under `cache_dir`.
    pub fn new(cache_dir: &Path) -> Result<Runtime, PluginError> {
        Runtime::with_instances(cache_dir, limits::PLUGIN_INSTANCES_MAX)
    }

    /// A runtime whose pool holds `instances` plugin instances at most. The pool reserves
    /// address space for each up front (terabytes for the server's), which a process under
    /// valgrind cannot map: the instruction counts run with one.
    pub fn with_instances(cache_dir: &Path, instances: u32) -> Result<Runtime, PluginError> {
        std::fs::create_dir_all(cache_dir)
            .map_err(|e| PluginError::Engine(format!("cannot create {}: {e}", cache_dir.display())))?;
        let engine =
            Engine::new(&engine_config(instances.max(1))).map_err(|e| PluginError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| PluginError::Engine(format!("{e:#}")))?;
        let engine_error = |e: wasmtime::Error| PluginError::Engine(format!("{e:#}"));
        type Own = wasmtime::component::HasSelf<HostState>;
        bindings::v2::Plugin::add_to_linker::<HostState, Own>(&mut linker, |s| s).map_err(engine_error)?;
        bindings::v1::Plugin::add_to_linker::<HostState, Own>(&mut linker, |s| s).map_err(engine_error)?;
        let epoch = EpochTicker::start(&engine);
        Ok(Runtime { engine, linker, cache_dir: cache_dir.to_path_buf(), _epoch: epoch })
    }

    /// Validate and compile `wasm` (or load its cached compilation).
    pub fn load(&self, wasm: &[u8]) -> Result<LoadedPlugin, PluginError> {
        check_header(wasm)?;
        let hash = blake3::hash(wasm).to_hex().to_string();
        let component = self.compile_cached(wasm, &hash)?;
        let pre = self.linker.instantiate_pre(&component).map_err(|e| {
            PluginError::Invalid(format!(
                "the component needs an import weir does not provide ({e:#}); plugins may import only \
                 weir:plugin/log and weir:plugin/state (0.2.0 or 0.1.0) and WASI 0.2 — build against the weir-sdk of this version"
            ))
        })?;
        // The version is told by the exports: 0.2.0 first, then the frozen 0.1.0.
        let pre = match bindings::v2::PluginPre::new(pre.clone()) {
            Ok(v2) => Pre::V2(v2),
            Err(e2) => Pre::V1(bindings::v1::PluginPre::new(pre).map_err(|_| {
                PluginError::Invalid(format!(
                    "the component implements neither {WORLD} nor {WORLD_V1} ({e2:#}); it must export `init` and \
                     `process` — build it with weir-sdk and `weir_sdk::export!`"
                ))
            })?),
        };
        let declared = crate::schemas::Declared::from_component(wasm)
            .map_err(|e| PluginError::Invalid(format!("its schema declarations are malformed: {e}")))?
            .map(Arc::new);
        Ok(LoadedPlugin { pre, hash, declared })
    }

    /// A fresh instance of `plugin` with its own store, limits and state scope.
    pub fn instantiate(
        &self,
        plugin: &LoadedPlugin,
        sandbox: &Sandbox,
        label: String,
        scope: StateScope,
    ) -> Result<PluginInstance, PluginError> {
        PluginInstance::new(&self.engine, plugin, sandbox, label, scope)
    }

    /// The compiled component, from the cache when an entry for it is there and intact. An
    /// entry is the blake3 of the compiled code, then the code: a flipped bit in machine code
    /// would run as other code, so a damaged entry is deleted and compiled again from the
    /// stored component, never loaded.
    fn compile_cached(&self, wasm: &[u8], hash: &str) -> Result<Component, PluginError> {
        let path = self.cache_dir.join(format!("{hash}-{}.wcc", self.engine_tag()));
        if let Ok(entry) = std::fs::read(&path) {
            match checked(&entry) {
                // SAFETY: the code was written by `precompile_component` of an engine with the
                // same compatibility hash (in the name), and its checksum matches.
                Some(code) => match unsafe { Component::deserialize(&self.engine, code) } {
                    Ok(c) => return Ok(c),
                    Err(e) => tracing::warn!(path = %path.display(), error = %e, "stale compiled plugin; recompiling"),
                },
                None => {
                    tracing::warn!(path = %path.display(), "compiled plugin cache entry is damaged (checksum mismatch); deleting it and compiling again from the stored component");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let compiled = self
            .engine
            .precompile_component(wasm)
            .map_err(|e| PluginError::Invalid(format!("the component does not compile: {e:#}")))?;
        let mut entry = blake3::hash(&compiled).as_bytes().to_vec();
        entry.extend_from_slice(&compiled);
        // A name of its own per writer: servers may share a cache directory, and two writing
        // the same temporary file at once could rename a half-written one into place.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("{}-{n}.tmp", std::process::id()));
        std::fs::write(&tmp, &entry)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| PluginError::Engine(format!("cannot write {}: {e}", path.display())))?;
        // SAFETY: `compiled` was just produced by this engine.
        unsafe { Component::deserialize(&self.engine, &compiled) }.map_err(|e| PluginError::Engine(format!("{e:#}")))
    }

    /// A short tag of the engine's compatibility hash, so a wasmtime upgrade misses the cache.
    fn engine_tag(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        format!("{:016x}", h.finish())
    }
}

/// The code of a compiled-cache entry whose checksum matches (`None`: damaged or short).
pub fn checked(entry: &[u8]) -> Option<&[u8]> {
    let (sum, code) = entry.split_at_checked(32)?;
    (blake3::hash(code).as_bytes() == sum).then_some(code)
}

/// Pooling allocation (instantiation is a slot reuse, not an mmap), epoch interruption for
/// CPU deadlines, and bounded wasm stacks against deep recursion.
fn engine_config(n: u32) -> Config {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(n)
        .total_core_instances(n * 8)
        .total_memories(n)
        .total_tables(n * 4)
        .max_core_instances_per_component(limits::PLUGIN_CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(limits::PLUGIN_MEMORIES_PER_COMPONENT)
        .max_tables_per_component(limits::PLUGIN_TABLES_PER_COMPONENT)
        .max_memory_size(limits::PLUGIN_MEMORY_BYTES_MAX)
        .max_component_instance_size(1 << 20)
        .max_core_instance_size(1 << 20);
    let mut cfg = Config::new();
    cfg.wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(1 << 20)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    // `WEIR_PROFILE=perfmap` names plugins' compiled functions for `perf` (/tmp/perf-PID.map):
    // how the guest's share of a profile is read (BENCHMARKS.md).
    if std::env::var_os("WEIR_PROFILE").is_some_and(|v| v == "perfmap") {
        cfg.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    cfg
}

/// Core modules and random bytes get an error that says what they are and what to do.
fn check_header(wasm: &[u8]) -> Result<(), PluginError> {
    if wasm.is_empty() {
        return Err(PluginError::Invalid("the file is empty; pass the .wasm built for wasm32-wasip2".into()));
    }
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        return Err(PluginError::Invalid(format!(
            "not a WebAssembly file (starts with {:02x?}); build the plugin with \
             `cargo build --release --target wasm32-wasip2` and deploy the .wasm it produces",
            &wasm[..wasm.len().min(4)]
        )));
    }
    match [wasm[4], wasm[5], wasm[6], wasm[7]] {
        [0x01, 0x00, 0x00, 0x00] => Err(PluginError::Invalid(
            "this is a core WebAssembly module, not a component; build for the wasm32-wasip2 target \
             (or wrap it with `wasm-tools component new`)"
                .into(),
        )),
        [_, _, 0x01, 0x00] => Ok(()),
        v => Err(PluginError::Invalid(format!("unknown WebAssembly version/layer {v:02x?}"))),
    }
}

/// A thread advancing the engine's epoch every [`limits::EPOCH_TICK_MS`]: the clock that
/// CPU deadlines are measured against.
struct EpochTicker {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl EpochTicker {
    fn start(engine: &Engine) -> EpochTicker {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (weak, flag) = (engine.weak(), stop.clone());
        std::thread::Builder::new()
            .name("weir-epoch".into())
            .spawn(move || {
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(limits::EPOCH_TICK_MS));
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => return,
                    }
                }
            })
            .expect("spawn epoch thread");
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_explained() {
        let msg = |b: &[u8]| check_header(b).unwrap_err().to_string();
        assert!(msg(b"").contains("empty"));
        assert!(msg(b"hello world!").contains("not a WebAssembly file"));
        assert!(msg(b"\0asm\x01\0\0\0").contains("core WebAssembly module"));
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
    }
}
