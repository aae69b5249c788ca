//! Bench stage `polyglot`: the same json-filter written in Rust, Python and JavaScript, in one
//! run and one process — component size, compile time (Cranelift, nothing cached), the time
//! to instantiate and `init` an instance, the guest memory an instance holds after `init`,
//! and the cost per message of `process`, also as a ratio to the Rust logic linked natively.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use super::BenchArgs;
use super::stages::{BATCH, Kernel, Shape, message, native_seconds, time_component};
use crate::polyglot::{self, Lang};

/// One language's figures.
#[derive(Serialize, Clone, Debug)]
pub struct LangFigures {
    /// `rust`, `python` or `js`.
    pub lang: String,
    /// Component size, MB.
    pub component_mb: f64,
    /// Compiling the component from nothing, s.
    pub compile_s: f64,
    /// Instantiate plus `init`, ms (mean of 20).
    pub instantiate_ms: f64,
    /// Guest linear memory after `init`, MiB.
    pub instance_memory_mib: f64,
    /// `process` per 100-byte message in batches of 2,048, ns.
    pub ns_per_msg: f64,
    /// That ÷ the native Rust json-filter's time per message.
    pub wasm_vs_native: f64,
}

/// Build the Python and JavaScript json-filters from `root`'s `plugins/`, then measure all
/// three languages with the same config and messages.
pub(super) async fn run(root: &Path, rust_filter: &[u8], args: &BenchArgs) -> anyhow::Result<Vec<LangFigures>> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), std::path::PathBuf::from)
        .join("bench-polyglot");
    let mut components = vec![("rust".to_string(), rust_filter.to_vec())];
    for (lang, dir) in [(Lang::Python, "py-json-filter"), (Lang::Js, "js-json-filter")] {
        let out = target.join(dir);
        let wasm = tokio::task::block_in_place(|| {
            polyglot::build(&root.join("plugins").join(dir), lang, Some(out), &root.join("sdk"))
        })?;
        let name = if lang == Lang::Python { "python" } else { "js" };
        components.push((name.to_string(), std::fs::read(wasm)?));
    }
    let count = args.count.min(200_000);
    tokio::task::spawn_blocking(move || {
        let payloads: Vec<Vec<u8>> = (0..BATCH).map(|i| message(i as u64, 100)).collect();
        let rounds = (count / BATCH as u64).max(1);
        let native = native_seconds(Kernel::Filter, &payloads, rounds)?;
        let mut figures = Vec::new();
        for (lang, wasm) in components {
            let mut f = measure_lifecycle(&lang, &wasm)?;
            let seconds = time_component(&wasm, &Kernel::Filter.config(), &payloads, rounds, Shape::Plain)?;
            f.ns_per_msg = seconds * 1e9 / (rounds * BATCH as u64) as f64;
            f.wasm_vs_native = seconds / native;
            eprintln!(
                "{lang}: {:.1} MB, compile {:.1} s, instantiate+init {:.2} ms, {:.1} MiB, {:.0} ns/msg, ×{:.1} native",
                f.component_mb, f.compile_s, f.instantiate_ms, f.instance_memory_mib, f.ns_per_msg, f.wasm_vs_native
            );
            figures.push(f);
        }
        Ok(figures)
    })
    .await?
}

/// Size, compile, instantiate + init and memory of one component.
fn measure_lifecycle(lang: &str, wasm: &[u8]) -> anyhow::Result<LangFigures> {
    use weir_host::runtime::{Runtime, Sandbox, StateScope};
    let dir = tempfile::tempdir()?;
    let runtime = Runtime::new(dir.path())?;
    let start = Instant::now();
    let loaded = runtime.load(wasm)?;
    let compile_s = start.elapsed().as_secs_f64();
    let config = Kernel::Filter.config();
    const N: u32 = 20;
    let mut memory = 0;
    let start = Instant::now();
    for _ in 0..N {
        let scope = StateScope { store: None, prefix: Vec::new() };
        let mut inst = runtime.instantiate(&loaded, &Sandbox::default(), "bench".into(), scope)?;
        inst.init(&config)?;
        memory = inst.memory_bytes();
    }
    Ok(LangFigures {
        lang: lang.to_string(),
        component_mb: wasm.len() as f64 / 1e6,
        compile_s,
        instantiate_ms: start.elapsed().as_secs_f64() * 1e3 / f64::from(N),
        instance_memory_mib: memory as f64 / (1 << 20) as f64,
        ns_per_msg: 0.0,
        wasm_vs_native: 0.0,
    })
}
