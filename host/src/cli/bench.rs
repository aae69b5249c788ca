//! `weir bench`: throughput of produce, consume and a wasm pipeline, measured over loopback
//! against a temporary `weir serve` process that the bench starts and stops itself.
//!
//! Each stage runs `--repeat` times on fresh topics and reports the median.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_bytes::ByteBuf;
use weir_host::client::{Client, Pending, produced};
use weir_host::pipeline::{PipelineSpec, StepSpec};
use weir_host::types::{Durability, TopicConfig};
use weir_host::wire::{FetchPosition, WireRecord};

use super::output;

#[derive(Args)]
pub struct BenchArgs {
    /// Messages per stage.
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    /// Bytes per message value.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Messages per produce request.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Partitions of the benchmark topics.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Runs per stage; the median is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Durability of the server under test.
    #[arg(long, value_enum, default_value_t = Durability::Sync)]
    durability: Durability,
    /// Directory holding the json-filter, json-transform and router components
    /// (`weir_plugin_*.wasm`); default: build them from this source tree.
    #[arg(long)]
    plugin_dir: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// The figures, as `--json` prints them.
#[derive(Serialize, Default)]
struct Report {
    message_bytes: usize,
    messages: u64,
    durability: String,
    produce_msgs_per_s: f64,
    produce_4_producers_msgs_per_s: f64,
    consume_msgs_per_s: f64,
    pipeline_msgs_per_s: f64,
    pipeline3_msgs_per_s: f64,
    swap_pause_p99_ms: f64,
    instantiate_us: f64,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.count == 0 || args.size == 0 || args.repeat == 0 || args.batch == 0 {
        bail!("--count, --size, --batch and --repeat must be at least 1");
    }
    let plugins = load_plugins(args.plugin_dir.as_deref())?;
    let filter = plugins["json-filter"].clone();
    let server = BenchServer::start(args.durability)?;
    let client = Client::connect(server.addr.clone()).await?;
    client.deploy_plugin("bench-filter", filter.clone()).await?;
    client.deploy_plugin("bench-transform", plugins["json-transform"].clone()).await?;
    client.deploy_plugin("bench-router", plugins["router"].clone()).await?;
    let mut report = Report {
        message_bytes: args.size,
        messages: args.count,
        durability: format!("{:?}", args.durability).to_lowercase(),
        ..Report::default()
    };
    report.produce_msgs_per_s = median(&args, "produce (1 producer)", |i| produce_stage(&server, &args, i, 1)).await?;
    report.produce_4_producers_msgs_per_s =
        median(&args, "produce (4 producers)", |i| produce_stage(&server, &args, i + 100, 4)).await?;
    report.consume_msgs_per_s = median(&args, "consume", |i| consume_stage(&server, &args, i)).await?;
    report.pipeline_msgs_per_s = median(&args, "pipeline (json-filter)", |i| pipeline_stage(&server, &args, i)).await?;
    report.pipeline3_msgs_per_s =
        median(&args, "pipeline (3 steps, fan-out)", |i| pipeline3_stage(&server, &args, i)).await?;
    report.swap_pause_p99_ms = median(&args, "hot-swap pause", |i| swap_stage(&server, &args, i, &filter)).await?;
    report.instantiate_us = median(&args, "plugin instantiate", |_| instantiate_stage(&filter)).await?;
    drop(server);
    if args.json {
        return output::json(&report);
    }
    print_table(&report);
    Ok(())
}

fn print_table(r: &Report) {
    println!(
        "weir bench: {} messages of {} bytes, durability {}, median of runs",
        r.messages, r.message_bytes, r.durability
    );
    let row = |name: &str, v: f64| {
        vec![name.to_string(), format!("{:.0}", v), format!("{:.1}", v * r.message_bytes as f64 / 1e6)]
    };
    output::table(
        &["STAGE", "MSG/S", "MB/S"],
        vec![
            row("produce, 1 producer", r.produce_msgs_per_s),
            row("produce, 4 producers", r.produce_4_producers_msgs_per_s),
            row("consume", r.consume_msgs_per_s),
            row("topic → wasm json-filter → topic", r.pipeline_msgs_per_s),
            row("filter → transform → router ×3 topics", r.pipeline3_msgs_per_s),
        ],
    );
    println!("hot-swap pause p99: {:.3} ms; plugin instantiate: {:.1} µs", r.swap_pause_p99_ms, r.instantiate_us);
}

/// Run a stage `repeat` times with a progress bar and return the median rate.
async fn median<F, Fut>(args: &BenchArgs, name: &str, mut stage: F) -> anyhow::Result<f64>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<f64>>,
{
    let bar = ProgressBar::new(args.repeat as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>28} [{bar:30}] {pos}/{len} {msg}")
            .expect("template")
            .progress_chars("=> "),
    );
    bar.set_prefix(name.to_string());
    let mut rates = Vec::with_capacity(args.repeat);
    for i in 0..args.repeat {
        let rate = stage(i).await?;
        bar.set_message(format!("{rate:.0} msg/s"));
        bar.inc(1);
        rates.push(rate);
    }
    bar.finish();
    rates.sort_by(f64::total_cmp);
    Ok(rates[rates.len() / 2])
}

/// A JSON message of exactly `size` bytes (padded), which json-filter keeps, with a region
/// for the router.
fn message(i: u64, size: usize) -> Vec<u8> {
    let region = ["eu", "us", "apac"][(i % 3) as usize];
    let head = format!(r#"{{"id":{i},"status":"paid","region":"{region}","pad":""#);
    let mut v = head.into_bytes();
    let tail = b"\"}";
    while v.len() + tail.len() < size {
        v.push(b'x');
    }
    v.extend_from_slice(tail);
    v
}

fn records(from: u64, n: usize, size: usize) -> Vec<WireRecord> {
    (from..from + n as u64).map(|i| WireRecord(None, ByteBuf::from(message(i, size)), Vec::new())).collect()
}

async fn create(client: &Client, name: &str, partitions: u32) -> anyhow::Result<()> {
    client.create_topic(name, TopicConfig { partitions, ..TopicConfig::default() }).await?;
    Ok(())
}

/// Produce `count` messages to `topic` over one connection, `IN_FLIGHT` batches at a time.
async fn produce_all(client: &Client, topic: &str, count: u64, size: usize, batch: usize) -> anyhow::Result<()> {
    const IN_FLIGHT: usize = 32;
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut sent = 0u64;
    while sent < count {
        let n = batch.min((count - sent) as usize);
        pending.push_back(client.start_produce(topic, None, records(sent, n, size))?);
        sent += n as u64;
        if pending.len() >= IN_FLIGHT {
            produced(pending.pop_front().expect("non-empty").wait().await?)?;
        }
    }
    for p in pending {
        produced(p.wait().await?)?;
    }
    Ok(())
}

async fn produce_stage(server: &BenchServer, args: &BenchArgs, run: usize, producers: u64) -> anyhow::Result<f64> {
    let topic = format!("produce-{run}");
    let admin = Client::connect(server.addr.clone()).await?;
    create(&admin, &topic, args.partitions).await?;
    let mut clients = Vec::new();
    for _ in 0..producers {
        clients.push(Client::connect(server.addr.clone()).await?);
    }
    let per = args.count / producers;
    let start = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|c| {
            let (topic, size, batch) = (topic.clone(), args.size, args.batch);
            tokio::spawn(async move { produce_all(&c, &topic, per, size, batch).await })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok((per * producers) as f64 / start.elapsed().as_secs_f64())
}

async fn consume_stage(server: &BenchServer, args: &BenchArgs, run: usize) -> anyhow::Result<f64> {
    let topic = format!("consume-{run}");
    let client = Client::connect(server.addr.clone()).await?;
    create(&client, &topic, args.partitions).await?;
    produce_all(&client, &topic, args.count, args.size, args.batch).await?;
    let mut positions: Vec<FetchPosition> =
        (0..args.partitions).map(|partition| FetchPosition { partition, offset: 0 }).collect();
    let start = Instant::now();
    let mut got = 0u64;
    while got < args.count {
        let parts = client.fetch(&topic, positions.clone(), 50_000, Duration::from_secs(1)).await?;
        for part in parts {
            got += part.records.len() as u64;
            positions[part.partition as usize].offset = part.first_offset + part.records.len() as u64;
        }
    }
    Ok(got as f64 / start.elapsed().as_secs_f64())
}

async fn pipeline_stage(server: &BenchServer, args: &BenchArgs, run: usize) -> anyhow::Result<f64> {
    let (source, sink) = (format!("pipe-in-{run}"), format!("pipe-out-{run}"));
    let client = Client::connect(server.addr.clone()).await?;
    create(&client, &source, args.partitions).await?;
    create(&client, &sink, args.partitions).await?;
    produce_all(&client, &source, args.count, args.size, args.batch).await?;
    let step = StepSpec::new("bench-filter", &[("field", "status"), ("equals", "paid")]);
    let spec = PipelineSpec::new(&format!("bench-{run}"), &source, vec![step], &sink);
    let start = Instant::now();
    client.create_pipeline(spec.clone()).await?;
    wait_processed(&client, &spec.name, args.count).await?;
    let rate = args.count as f64 / start.elapsed().as_secs_f64();
    client.delete_pipeline(&spec.name).await?;
    Ok(rate)
}

/// Swap the plugin of a pipeline under load 50 times; the p99 of the pauses the workers
/// recorded (instantiating and initialising the new version at a batch boundary), in ms.
async fn swap_stage(server: &BenchServer, args: &BenchArgs, run: usize, filter: &[u8]) -> anyhow::Result<f64> {
    const SWAPS: usize = 50;
    let (source, sink, plugin) = (format!("swap-in-{run}"), format!("swap-out-{run}"), format!("swap-{run}"));
    let client = Client::connect(server.addr.clone()).await?;
    create(&client, &source, args.partitions).await?;
    create(&client, &sink, args.partitions).await?;
    client.deploy_plugin(&plugin, filter.to_vec()).await?;
    let step = StepSpec::new(&plugin, &[("field", "status"), ("equals", "paid")]);
    client.create_pipeline(PipelineSpec::new(&format!("swap-{run}"), &source, vec![step], &sink)).await?;
    let per_swap = (args.count / SWAPS as u64).max(args.batch as u64);
    for _ in 0..SWAPS {
        produce_all(&client, &source, per_swap, args.size, args.batch).await?;
        client.deploy_plugin(&plugin, filter.to_vec()).await?;
    }
    // One more round so every partition meets the last swap at a batch boundary.
    produce_all(&client, &source, per_swap, args.size, args.batch).await?;
    let total = per_swap * (SWAPS as u64 + 1);
    loop {
        let status = client.pipeline_status(&format!("swap-{run}")).await?;
        if status.processed >= total {
            return Ok(status.swap_pause_p99_us as f64 / 1000.0);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Average time to instantiate the component from its `InstancePre` (pooling allocator,
/// precompiled code), in µs, measured in process over 2,000 instances.
async fn instantiate_stage(filter: &[u8]) -> anyhow::Result<f64> {
    let filter = filter.to_vec();
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir()?;
        let runtime = weir_host::runtime::Runtime::new(dir.path())?;
        let loaded = runtime.load(&filter)?;
        let sandbox = weir_host::runtime::Sandbox::default();
        let scope = || weir_host::runtime::StateScope { store: None, prefix: Vec::new() };
        // Warm the pool's slots first.
        for _ in 0..100 {
            drop(runtime.instantiate(&loaded, &sandbox, "bench".into(), scope())?);
        }
        const N: u32 = 2_000;
        let start = Instant::now();
        for _ in 0..N {
            drop(runtime.instantiate(&loaded, &sandbox, "bench".into(), scope())?);
        }
        Ok(start.elapsed().as_secs_f64() * 1e6 / f64::from(N))
    })
    .await?
}

/// The components the bench deploys, by plugin name: read from `dir`, or built from this
/// binary's source tree.
fn load_plugins(dir: Option<&Path>) -> anyhow::Result<std::collections::HashMap<String, Vec<u8>>> {
    const NAMES: [&str; 3] = ["json-filter", "json-transform", "router"];
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("source tree")?.to_path_buf();
            if !root.join("plugins/json-filter").exists() {
                bail!("no source tree at {}: pass a directory of built plugins with --plugin-dir", root.display());
            }
            let target =
                std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from).join("plugins");
            eprintln!("building the benchmark plugins for wasm32-wasip2 …");
            let packages: Vec<String> = NAMES.iter().map(|n| format!("weir-plugin-{n}")).collect();
            let built = weir_host::build::build_components(&root, &packages, &target)?;
            built[0].parent().context("artifact dir")?.to_path_buf()
        }
    };
    NAMES
        .iter()
        .map(|n| {
            let path = dir.join(format!("weir_plugin_{}.wasm", n.replace('-', "_")));
            let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            Ok((n.to_string(), bytes))
        })
        .collect()
}

/// Filter → transform → router fanning out to three topics, on JSON messages.
async fn pipeline3_stage(server: &BenchServer, args: &BenchArgs, run: usize) -> anyhow::Result<f64> {
    let source = format!("p3-in-{run}");
    let client = Client::connect(server.addr.clone()).await?;
    create(&client, &source, args.partitions).await?;
    for t in ["eu", "us", "other"] {
        create(&client, &format!("p3-{t}-{run}"), args.partitions).await?;
    }
    produce_all(&client, &source, args.count, args.size, args.batch).await?;
    let (eu, us) = (format!("p3-eu-{run}"), format!("p3-us-{run}"));
    let steps = vec![
        StepSpec::new("bench-filter", &[("field", "status"), ("equals", "paid")]),
        StepSpec::new("bench-transform", &[("drop", "pad"), ("set.stage", "billed")]),
        StepSpec::new("bench-router", &[("by", "field:region"), ("route.eu", &eu), ("route.us", &us)]),
    ];
    let name = format!("bench3-{run}");
    let spec = PipelineSpec::new(&name, &source, steps, &format!("p3-other-{run}"));
    let start = Instant::now();
    client.create_pipeline(spec).await?;
    wait_processed(&client, &name, args.count).await?;
    let rate = args.count as f64 / start.elapsed().as_secs_f64();
    client.delete_pipeline(&name).await?;
    Ok(rate)
}

/// Poll a pipeline's status until it has processed `count` messages.
async fn wait_processed(client: &Client, name: &str, count: u64) -> anyhow::Result<()> {
    loop {
        let status = client.pipeline_status(name).await?;
        if let Some(e) = status.last_error {
            bail!("the benchmark pipeline {name} failed: {e}");
        }
        if status.processed >= count {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A `weir serve` child process with its own data directory and port.
struct BenchServer {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl BenchServer {
    fn start(durability: Durability) -> anyhow::Result<BenchServer> {
        let dir = tempfile::Builder::new().prefix("weir-bench-").tempdir()?;
        let mut child = Command::new(std::env::current_exe()?)
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen", "127.0.0.1:0", "--durability", &format!("{durability:?}").to_lowercase()])
            .env("WEIR_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the server under test")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("server stdout")?).read_line(&mut line)?;
        let addr = line.trim().strip_prefix("weir listening on ").context("server did not start")?.to_string();
        Ok(BenchServer { child, addr, _dir: dir })
    }
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
