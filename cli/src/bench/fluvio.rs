//! `weir bench --fluvio`: Fluvio SmartModules (fluvio-smartengine, built and run by
//! `bench/fluvio/run.sh`, a cargo workspace of its own that neither README command builds)
//! beside weir's plugins doing the same work in the same run.
//!
//! Both sides get the same 100-byte JSON records in 1,000-record batches: a filter keeping
//! `status == paid`, a map setting `stage` and dropping `pad`, and the two chained. Fluvio's
//! figures are its engine in memory, records pre-encoded. Weir's are the plugin crate linked
//! natively, the component across the boundary, and pipelines over stored topics.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use serde::Serialize;
use weir_client::wire::{PipelineSpec, StepSpec};

use super::stages::{Kernel, Shape, create, message, native_seconds, produce_all, time_component, timed_pipeline};
use super::{BenchArgs, BenchServer, median};

/// Records per batch on both sides: Fluvio's outside measurement used 1,000.
const BATCH: usize = 1000;

/// Records per second for each kind of work, on both sides.
#[derive(Serialize, Default, Clone, Debug)]
pub struct FluvioFigures {
    /// The fluvio-smartengine version the peer ran.
    pub engine: String,
    pub fluvio_filter: f64,
    pub fluvio_map: f64,
    pub fluvio_filter_map: f64,
    /// json-filter and json-transform linked natively (no Wasm).
    pub weir_native_filter: f64,
    pub weir_native_map: f64,
    /// The components, boundary included, in process.
    pub weir_wasm_filter: f64,
    pub weir_wasm_map: f64,
    /// Pipelines over stored topics: json-filter, and json-filter → json-transform.
    pub weir_pipeline_filter: f64,
    pub weir_pipeline_filter_map: f64,
}

pub(super) async fn run(
    server: &BenchServer,
    args: &BenchArgs,
    filter: &[u8],
    transform: &[u8],
) -> anyhow::Result<FluvioFigures> {
    let mut f = fluvio_peer(args.count.min(10_000_000))?;
    let (filter, transform) = (filter.to_vec(), transform.to_vec());
    let count = args.count;
    let in_process = tokio::task::spawn_blocking(move || -> anyhow::Result<[f64; 4]> {
        let payloads: Vec<Vec<u8>> = (0..BATCH).map(|i| message(i as u64, 100)).collect();
        let rounds = (count / BATCH as u64).max(1);
        let records = (rounds * BATCH as u64) as f64;
        let rate = |s: f64| records / s;
        Ok([
            rate(native_seconds(Kernel::Filter, &payloads, rounds)?),
            rate(native_seconds(Kernel::Transform, &payloads, rounds)?),
            rate(time_component(&filter, &Kernel::Filter.config(), &payloads, rounds, Shape::Plain)?),
            rate(time_component(&transform, &Kernel::Transform.config(), &payloads, rounds, Shape::Plain)?),
        ])
    })
    .await??;
    [f.weir_native_filter, f.weir_native_map, f.weir_wasm_filter, f.weir_wasm_map] = in_process;
    f.weir_pipeline_filter =
        median(args, "pipeline json-filter (for Fluvio)", |i| pipeline(server, args, i, false)).await?;
    f.weir_pipeline_filter_map =
        median(args, "pipeline json-filter → json-transform", |i| pipeline(server, args, i, true)).await?;
    Ok(f)
}

/// Build and run the Fluvio peer; its one JSON line holds the figures.
fn fluvio_peer(count: u64) -> anyhow::Result<FluvioFigures> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("source tree")?;
    let script = root.join("bench/fluvio/run.sh");
    if !script.exists() {
        bail!("no {}: --fluvio runs from a weir source tree", script.display());
    }
    eprintln!("building and running the Fluvio peer (bench/fluvio; the first build takes minutes) …");
    let out = Command::new(&script).args(["--count", &count.to_string()]).output()?;
    if !out.status.success() {
        bail!("bench/fluvio/run.sh failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    let line = String::from_utf8(out.stdout)?;
    let v: serde_json::Value = serde_json::from_str(line.trim()).with_context(|| format!("the peer printed {line}"))?;
    let num = |k: &str| v[k].as_f64().with_context(|| format!("no {k} in the peer's figures: {line}"));
    Ok(FluvioFigures {
        engine: v["fluvio_smartengine"].as_str().unwrap_or("?").to_string(),
        fluvio_filter: num("filter_records_per_s")?,
        fluvio_map: num("map_records_per_s")?,
        fluvio_filter_map: num("filter_map_records_per_s")?,
        ..FluvioFigures::default()
    })
}

/// A 1-step (json-filter) or 2-step (json-filter → json-transform) pipeline over a stored,
/// pre-filled topic, timed until every record is processed.
async fn pipeline(server: &BenchServer, args: &BenchArgs, run: usize, map: bool) -> anyhow::Result<f64> {
    let (source, sink) = (format!("fl-in-{map}-{run}"), format!("fl-out-{map}-{run}"));
    let client = server.client().await?;
    create(&client, &source, args.partitions).await?;
    create(&client, &sink, args.partitions).await?;
    produce_all(&client, &source, args.count, 100, BATCH).await?;
    let mut steps = vec![StepSpec::new("bench-filter", &[("field", "status"), ("equals", "paid")])];
    if map {
        steps.push(StepSpec::new("bench-transform", &[("set.stage", "billed"), ("drop", "pad")]));
    }
    let spec = PipelineSpec::new(&format!("bench-fl-{map}-{run}"), &source, steps, &sink);
    timed_pipeline(&client, spec, args.count).await
}

/// The side-by-side table.
pub(super) fn print(f: &FluvioFigures) {
    println!("Fluvio SmartModules (fluvio-smartengine {}, in memory) beside weir, records/s:", f.engine);
    println!("{:<34} {:>12} {:>12} {:>14}", "", "filter", "map", "filter → map");
    let row = |name: &str, a: f64, b: Option<f64>, c: Option<f64>| {
        let cell = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.0}"));
        println!("{name:<34} {:>12} {:>12} {:>14}", cell(Some(a)), cell(b), cell(c));
    };
    row("Fluvio SmartModule (wasm)", f.fluvio_filter, Some(f.fluvio_map), Some(f.fluvio_filter_map));
    row("weir plugin, native", f.weir_native_filter, Some(f.weir_native_map), None);
    row("weir plugin, wasm + boundary", f.weir_wasm_filter, Some(f.weir_wasm_map), None);
    row("weir pipeline, stored topics", f.weir_pipeline_filter, None, Some(f.weir_pipeline_filter_map));
    println!(
        "  weir ÷ Fluvio: filter {:.2}× (goal ≥ 3), map {:.2}× (goal ≥ 2), 2-step pipeline ÷ filter → map {:.2}× (goal ≥ 1)",
        f.weir_wasm_filter / f.fluvio_filter,
        f.weir_wasm_map / f.fluvio_map,
        f.weir_pipeline_filter_map / f.fluvio_filter_map
    );
}
