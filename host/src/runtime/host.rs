//! What the host lends a plugin instance: its store data, the `log` and `state` imports,
//! and the limits on both.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::Sandbox;
use super::bindings::{v1, v2};
use crate::limits;
use crate::storage::StateWrite;
use crate::store::Store;

/// Where a plugin instance's state lives: a key prefix in the store's `state` column family.
#[derive(Clone)]
pub struct StateScope {
    /// The store to read committed state from; `None` for local runs (`weir plugin test`),
    /// where state lives only in memory.
    pub store: Option<Arc<Store>>,
    /// Prefix of every key (pipeline scope · step · partition).
    pub prefix: Vec<u8>,
}

/// A buffered state change, committed with the batch.
#[derive(Debug, Clone)]
struct PendingState {
    value: Option<Vec<u8>>,
    ttl_ms: Option<u64>,
}

/// Store data of one plugin instance.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limits: Limits,
    sandbox: Sandbox,
    /// `pipeline/step plugin@version`, on every log line.
    label: String,
    scope: StateScope,
    /// Writes of the current call, read back by `get`; dropped if the call fails.
    pending: BTreeMap<Vec<u8>, PendingState>,
    /// Writes of earlier successful calls in this batch, not yet committed.
    accepted: BTreeMap<Vec<u8>, PendingState>,
    pending_bytes: usize,
    /// Local runs keep committed state here instead of in a store.
    local: BTreeMap<Vec<u8>, Vec<u8>>,
    log_window: Instant,
    log_lines: u32,
    /// Lines dropped by the rate limit since the last report.
    pub(crate) log_dropped: u64,
    /// The tail of what the guest wrote to stdout/stderr: a panic message, for trap reports.
    pub(crate) output: GuestOutput,
}

/// The sandbox's limits, counting the linear memory the guest holds (for metrics): wasm
/// memory only grows, so the sum of granted growths is what it holds.
pub(crate) struct Limits {
    inner: StoreLimits,
    pub(crate) memory_bytes: usize,
}

impl wasmtime::ResourceLimiter for Limits {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let granted = self.inner.memory_growing(current, desired, maximum)?;
        if granted {
            self.memory_bytes += desired.saturating_sub(current);
        }
        Ok(granted)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.memory_grow_failed(error)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

impl HostState {
    pub(crate) fn new(sandbox: &Sandbox, label: String, scope: StateScope) -> HostState {
        let output = GuestOutput::default();
        HostState {
            wasi: wasi_ctx(sandbox, &output),
            output,
            table: ResourceTable::new(),
            limits: Limits {
                inner: StoreLimitsBuilder::new()
                    .memory_size(sandbox.memory_bytes)
                    .instances(limits::PLUGIN_INSTANCES_MAX as usize)
                    .tables(64)
                    .memories(4)
                    .build(),
                memory_bytes: 0,
            },
            sandbox: sandbox.clone(),
            label,
            scope,
            pending: BTreeMap::new(),
            accepted: BTreeMap::new(),
            pending_bytes: 0,
            local: BTreeMap::new(),
            log_window: Instant::now(),
            log_lines: 0,
            log_dropped: 0,
        }
    }

    /// Keep the current call's writes as part of the batch.
    pub(crate) fn checkpoint(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        self.accepted.extend(pending);
    }

    /// Drop the current call's writes (it failed); earlier calls' writes stay.
    pub(crate) fn rollback(&mut self) {
        self.pending.clear();
    }

    /// The batch's state writes as store writes, expiries resolved against `now_ms`; the
    /// buffers are emptied. Local runs apply them to the in-memory map instead.
    pub(crate) fn take_state_writes(&mut self, now_ms: u64) -> Vec<StateWrite> {
        self.checkpoint();
        self.pending_bytes = 0;
        let accepted = std::mem::take(&mut self.accepted);
        if self.scope.store.is_none() {
            for (k, p) in accepted {
                match p.value {
                    Some(v) => self.local.insert(k, v),
                    None => self.local.remove(&k),
                };
            }
            return Vec::new();
        }
        accepted
            .into_iter()
            .map(|(k, p)| {
                let mut key = self.scope.prefix.clone();
                key.extend_from_slice(&k);
                StateWrite {
                    key,
                    value: p.value,
                    expires_at_ms: p.ttl_ms.map_or(0, |t| now_ms.saturating_add(t.max(1))),
                }
            })
            .collect()
    }

    /// Forget every uncommitted state write of the batch.
    pub(crate) fn discard_state_writes(&mut self) {
        self.pending.clear();
        self.accepted.clear();
        self.pending_bytes = 0;
    }

    fn committed_get(&self, key: &[u8]) -> Option<Vec<u8>> {
        match &self.scope.store {
            None => self.local.get(key).cloned(),
            Some(store) => {
                let mut full = self.scope.prefix.clone();
                full.extend_from_slice(key);
                match store.state_get(&full, crate::types::now_ms()) {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::error!(plugin = %self.label, error = %e, "state read failed");
                        None
                    }
                }
            }
        }
    }

    /// Whether another log line fits this second's budget.
    fn log_allowed(&mut self) -> bool {
        if self.log_window.elapsed().as_secs() >= 1 {
            if self.log_dropped > 0 {
                tracing::warn!(plugin = %self.label, dropped = self.log_dropped, "plugin log lines over the rate limit were dropped");
                self.log_dropped = 0;
            }
            self.log_window = Instant::now();
            self.log_lines = 0;
        }
        self.log_lines += 1;
        if self.log_lines > self.sandbox.log_lines_per_s {
            self.log_dropped += 1;
            return false;
        }
        true
    }
}

/// WASI with nothing granted: no preopened directories, no sockets, no environment, no
/// arguments, no stdin; stdout/stderr kept only as a short tail for trap reports; clocks
/// frozen unless the sandbox allows them.
fn wasi_ctx(sandbox: &Sandbox, output: &GuestOutput) -> WasiCtx {
    let mut b = WasiCtxBuilder::new();
    b.stdout(output.clone()).stderr(output.clone());
    b.allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false);
    b.socket_addr_check(|_, _| Box::pin(async { false }));
    for name in &sandbox.allow_env {
        if let Ok(v) = std::env::var(name) {
            b.env(name, v);
        }
    }
    if !sandbox.allow_clock {
        b.wall_clock(FrozenClock).monotonic_clock(FrozenClock);
    }
    b.build()
}

/// A clock stuck at zero: plugins must use message timestamps, which replay identically.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }
    fn now(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl HostState {
    /// A plugin's log line, rate-limited, cut and tagged with the instance's label.
    fn log_line(&mut self, level: tracing::Level, message: String) {
        if !self.log_allowed() {
            return;
        }
        let message = limits::truncated(message, limits::PLUGIN_LOG_LINE_BYTES);
        let plugin = self.label.as_str();
        match level {
            tracing::Level::TRACE => tracing::trace!(target: "weir::plugin", plugin, "{message}"),
            tracing::Level::DEBUG => tracing::debug!(target: "weir::plugin", plugin, "{message}"),
            tracing::Level::INFO => tracing::info!(target: "weir::plugin", plugin, "{message}"),
            tracing::Level::WARN => tracing::warn!(target: "weir::plugin", plugin, "{message}"),
            tracing::Level::ERROR => tracing::error!(target: "weir::plugin", plugin, "{message}"),
        }
    }

    /// `state.get`: this batch's own writes first, then what is committed.
    fn state_get(&mut self, key: Vec<u8>) -> Option<Vec<u8>> {
        match self.pending.get(&key).or_else(|| self.accepted.get(&key)) {
            Some(p) => p.value.clone(),
            None => self.committed_get(&key),
        }
    }

    /// `state.set`, within the key, value and per-batch limits; the error says which.
    fn state_set(&mut self, key: Vec<u8>, value: Vec<u8>, ttl_ms: Option<u64>) -> Result<(), String> {
        if key.len() > limits::STATE_KEY_BYTES {
            return Err(format!("key of {} bytes exceeds {} bytes", key.len(), limits::STATE_KEY_BYTES));
        }
        if value.len() > self.sandbox.state_value_bytes {
            return Err(format!(
                "value of {} bytes exceeds the plugin's limit of {} bytes",
                value.len(),
                self.sandbox.state_value_bytes
            ));
        }
        let added = key.len() + value.len();
        if self.pending_bytes + added > self.sandbox.state_bytes_per_batch {
            return Err(format!(
                "this batch already wrote {} state bytes; the limit per batch is {}",
                self.pending_bytes, self.sandbox.state_bytes_per_batch
            ));
        }
        self.pending_bytes += added;
        self.pending.insert(key, PendingState { value: Some(value), ttl_ms });
        Ok(())
    }

    /// `state.delete`.
    fn state_delete(&mut self, key: Vec<u8>) {
        if key.len() <= limits::STATE_KEY_BYTES {
            self.pending_bytes += key.len();
            self.pending.insert(key, PendingState { value: None, ttl_ms: None });
        }
    }
}

/// The `log` and `state` imports of one ABI version, delegating to the version-neutral ones.
macro_rules! imports {
    ($v:ident) => {
        impl $v::types::Host for HostState {}

        impl $v::log::Host for HostState {
            fn write(&mut self, level: $v::types::Level, message: String) {
                let level = match level {
                    $v::types::Level::Trace => tracing::Level::TRACE,
                    $v::types::Level::Debug => tracing::Level::DEBUG,
                    $v::types::Level::Info => tracing::Level::INFO,
                    $v::types::Level::Warn => tracing::Level::WARN,
                    $v::types::Level::Error => tracing::Level::ERROR,
                };
                self.log_line(level, message);
            }
        }

        impl $v::state::Host for HostState {
            fn get(&mut self, key: Vec<u8>) -> Option<Vec<u8>> {
                self.state_get(key)
            }

            fn set(&mut self, key: Vec<u8>, value: Vec<u8>, ttl_ms: Option<u64>) -> Result<(), $v::state::StateError> {
                self.state_set(key, value, ttl_ms).map_err($v::state::StateError::LimitExceeded)
            }

            fn delete(&mut self, key: Vec<u8>) {
                self.state_delete(key)
            }
        }
    };
}

imports!(v1);
imports!(v2);

/// Bytes of guest stdout/stderr kept: enough for a panic message and its location.
const GUEST_OUTPUT_TAIL_BYTES: usize = 2048;

/// The last [`GUEST_OUTPUT_TAIL_BYTES`] the guest printed. Writes never fail (a full pipe
/// would make `eprintln!` panic inside the guest) and never grow past the bound.
#[derive(Clone, Default)]
pub(crate) struct GuestOutput(Arc<std::sync::Mutex<std::collections::VecDeque<u8>>>);

impl GuestOutput {
    /// Forget what was printed (before each call, so a report shows only that call's output).
    pub(crate) fn clear(&self) {
        self.0.lock().expect("guest output").clear();
    }

    /// What was printed since the last clear, as one line without the backtrace hint.
    pub(crate) fn summary(&self) -> Option<String> {
        let bytes: Vec<u8> = self.0.lock().expect("guest output").iter().copied().collect();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> =
            text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("note: run with")).collect();
        (!lines.is_empty()).then(|| lines.join(" "))
    }
}

impl wasmtime_wasi::cli::IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let mut tail = self.0.lock().expect("guest output");
        tail.extend(buf.iter().rev().take(GUEST_OUTPUT_TAIL_BYTES).rev());
        let excess = tail.len().saturating_sub(GUEST_OUTPUT_TAIL_BYTES);
        tail.drain(..excess);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
