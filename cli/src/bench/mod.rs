//! `weir bench`: throughput, latency and lifecycle figures for weir, measured over loopback
//! against a temporary `weir serve` process that the bench starts itself — and with
//! `--peers`, the same workloads against Redis Streams and NATS JetStream in the same run.
//!
//! Each throughput stage runs `--repeat` times on fresh topics and reports the median.

mod amqp;
mod cluster;
mod fluvio;
mod instructions;
mod peers;
mod plot;
mod polyglot;
mod schemas;
mod stages;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use weir_client::client::Client;
use weir_client::wire::Durability;

use super::output;

#[derive(Args, Clone)]
pub struct BenchArgs {
    /// Messages per throughput stage.
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    /// Bytes per message value.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Messages per produce request (and per peer pipeline/batch).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Partitions of the benchmark topics.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Runs per stage; the median is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Durability of the server under test.
    #[arg(long, value_parser = super::kebab::<Durability>, default_value = "sync")]
    durability: Durability,
    /// Start the server with its write-ahead log in a new directory under this one
    /// (`weir serve --wal-dir`), e.g. on another device.
    #[arg(long)]
    wal_dir: Option<PathBuf>,
    /// Offered rate of the end-to-end latency stage, messages per second.
    #[arg(long, default_value_t = 50_000)]
    rate: u64,
    /// How long the latency stage offers load, seconds.
    #[arg(long, default_value_t = 5)]
    latency_seconds: u64,
    /// Messages stored before the restart/recovery stage (0 skips it).
    #[arg(long, default_value_t = 10_000_000)]
    recovery_messages: u64,
    /// Also run Redis Streams and NATS JetStream (Debian's redis-server and nats-server).
    #[arg(long)]
    peers: bool,
    /// Also produce and consume through the Kafka listener with kcat (librdkafka), beside the
    /// native protocol's figures of the same run.
    #[arg(long)]
    kafka: bool,
    /// Write charts (SVG) into this directory.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Directory holding the json-filter, json-transform, router and hostile components
    /// (`weir_plugin_*.wasm`); default: build them from this source tree.
    #[arg(long)]
    plugin_dir: Option<PathBuf>,
    /// Run only these stages (repeat the flag): produce, consume, http, latency, pipeline,
    /// metrics, pipeline3, wasm-vs-native, boundary, swap, instantiate, polyglot, schemas, recovery — e.g. to
    /// profile one; and pipeline-rss, which runs only when named.
    #[arg(long, value_name = "STAGE")]
    only: Vec<String>,
    /// Messages through the 1-step pipeline of the `pipeline-rss` stage, which samples the
    /// server's resident memory every second while they flow. The stage runs only when named
    /// with `--only pipeline-rss`.
    #[arg(long, default_value_t = 50_000_000)]
    rss_messages: u64,
    /// Small sizes for a smoke run (20,000 messages, 1 repeat, 100,000 for recovery).
    #[arg(long)]
    quick: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Benchmark cluster mode instead: 3 local NATS JetStream servers (installed by
    /// examples/setup.sh), weir nodes over them; produce, the 1-step pipeline on one and on
    /// two nodes, and failover after kill -9.
    #[arg(long)]
    cluster: bool,
    /// Messages per cluster stage.
    #[arg(long, default_value_t = 200_000)]
    cluster_messages: u64,
    /// When the cluster's NATS servers fsync: `always` (every write before its
    /// acknowledgement) or `default` (NATS's default, every two minutes: an acknowledged write
    /// is on a quorum of servers).
    #[arg(long, default_value = "always", value_parser = ["always", "default"])]
    nats_sync: String,
    /// Count instructions per message under callgrind (Debian's `valgrind`) instead of
    /// timing: the Wasm boundary and each library plugin's per-message work. Repeatable to
    /// the instruction for one binary; `tests/instructions-baseline.json` holds the counts a
    /// test compares against (BENCHMARKS.md, "Instruction counts").
    #[arg(long)]
    instructions: bool,
    /// Also run Fluvio SmartModules (fluvio-smartengine, built by `bench/fluvio/run.sh` into
    /// a target dir of its own) beside weir's json-filter and json-transform on the same
    /// records, and weir's pipelines over stored topics (stage `fluvio`).
    #[arg(long)]
    fluvio: bool,
    /// One case of `--instructions`, as the bench runs it under callgrind.
    #[arg(long, hide = true)]
    instructions_case: Option<String>,
}

/// The figures, as `--json` prints them. Peer figures are `null` without `--peers`.
#[derive(Serialize, Default, Clone)]
pub struct Report {
    message_bytes: usize,
    messages: u64,
    durability: String,
    produce_msgs_per_s: f64,
    produce_4_producers_msgs_per_s: f64,
    consume_msgs_per_s: f64,
    e2e_latency_p50_ms: f64,
    e2e_latency_p99_ms: f64,
    e2e_latency_p999_ms: f64,
    e2e_offered_msgs_per_s: u64,
    /// Group commits the server wrote during the latency stage, and how long their RocksDB
    /// writes (fsync included) took at the 99th percentile (the histogram bucket's bound) and
    /// at the slowest: whether the stage's tail is the disk's.
    e2e_group_commits: u64,
    e2e_commit_write_p99_ms: f64,
    e2e_commit_write_max_ms: f64,
    pipeline_msgs_per_s: f64,
    pipeline3_msgs_per_s: f64,
    wasm_vs_native_ratio: f64,
    /// The same for json-transform (an emit per message).
    wasm_vs_native_transform_ratio: f64,
    /// Crossing the component boundary alone (a pass-through component, ABI 0.2.0), ns per
    /// 100-byte message.
    wasm_boundary_ns_per_msg: f64,
    /// The same with a key and two headers per message.
    wasm_boundary_keyed_ns_per_msg: f64,
    /// Crossing the frozen 0.1.0 boundary, ns per message.
    wasm_boundary_v1_ns_per_msg: f64,
    /// The same with a key and two headers per message.
    wasm_boundary_v1_keyed_ns_per_msg: f64,
    swap_pause_p99_ms: f64,
    instantiate_us: f64,
    recovery_s: Option<f64>,
    recovery_messages: u64,
    /// kcat (librdkafka) producing through the Kafka listener, acks=all.
    kafka_produce_msgs_per_s: Option<f64>,
    /// kcat consuming through the Kafka listener.
    kafka_consume_msgs_per_s: Option<f64>,
    /// Producing JSON over the HTTP API (batches of `--batch`, 4 requests in flight).
    http_produce_msgs_per_s: f64,
    /// `schemas`: 1 producer of Confluent-framed Avro records to a topic without schema
    /// checks, with `--validation id`, with `full` (msg/s, median of runs, each run all three).
    schema_produce_msgs_per_s: Option<[f64; 3]>,
    /// The 1-step pipeline while /metrics is scraped every 100 ms.
    pipeline_scraped_msgs_per_s: f64,
    /// How much slower the scraped pipeline ran, percent of the unscraped one (same run).
    metrics_cost_pct: f64,
    /// `pipeline-rss`: messages produced into a running 1-step pipeline.
    pipeline_rss_messages: Option<u64>,
    /// `pipeline-rss`: the server's resident memory, MiB, sampled every second.
    pipeline_rss_mib: Option<Vec<f64>>,
    /// `pipeline-rss`: peak RSS of the last third ÷ peak of the first third (1.0 = flat).
    pipeline_rss_growth: Option<f64>,
    redis_xadd_msgs_per_s: Option<f64>,
    redis_xreadgroup_msgs_per_s: Option<f64>,
    redis_durability: Option<String>,
    jetstream_publish_msgs_per_s: Option<f64>,
    jetstream_consume_msgs_per_s: Option<f64>,
    jetstream_durability: Option<String>,
    /// The same json-filter in Rust, Python and JavaScript (stage `polyglot`).
    polyglot: Vec<polyglot::LangFigures>,
    /// `--peers`, stage `amqp`: a work queue through weir's AMQP door and through RabbitMQ
    /// (quorum and classic durable queues), the same lapin client and settings for all.
    amqp: Vec<amqp::WorkQueueFigures>,
    /// How the RabbitMQ peer writes to disk.
    rabbitmq_durability: Option<String>,
    /// `--fluvio`: Fluvio SmartModules beside weir's plugins and pipelines.
    fluvio: Option<fluvio::FluvioFigures>,
}

pub async fn run(mut args: BenchArgs) -> anyhow::Result<()> {
    if args.quick {
        (args.count, args.repeat, args.latency_seconds) = (20_000, 1, 1);
        args.recovery_messages = args.recovery_messages.min(100_000);
    }
    if args.count == 0 || args.size < 32 || args.repeat == 0 || args.batch == 0 || args.rate == 0 {
        bail!("--count, --batch, --repeat and --rate must be at least 1, and --size at least 32 bytes");
    }
    if let (Some(case), Some(dir)) = (&args.instructions_case, &args.plugin_dir) {
        return instructions::case(case, dir);
    }
    let plugins = load_plugins(args.plugin_dir.as_deref())?;
    if args.instructions {
        let counts = instructions::run(&plugins)?;
        if args.json {
            return output::json(&serde_json::json!({ "instructions_per_message": counts }));
        }
        println!("instructions per message, 100-byte JSON messages, counted by callgrind:");
        for (case, n) in counts {
            println!("  {case:<16} {n:>10.1}");
        }
        return Ok(());
    }
    if args.cluster {
        return cluster::run(&args, &plugins).await;
    }
    let mut report = Report {
        message_bytes: args.size,
        messages: args.count,
        durability: format!("{:?}", args.durability).to_lowercase(),
        e2e_offered_msgs_per_s: args.rate,
        recovery_messages: args.recovery_messages,
        ..Report::default()
    };
    stages::run_all(&args, &plugins, &mut report).await?;
    if args.peers {
        peers::run_all(&args, &mut report).await?;
    }
    if let Some(dir) = &args.plot {
        plot::write(dir, &report)?;
        eprintln!("charts written to {}", dir.display());
    }
    if args.json {
        return output::json(&report);
    }
    print_table(&report);
    Ok(())
}

fn print_table(r: &Report) {
    println!(
        "weir bench: {} messages of {} bytes per stage, weir durability {}, median of runs",
        r.messages, r.message_bytes, r.durability
    );
    let rate = |v: f64| format!("{v:.0}");
    let mut rows = vec![
        vec![
            "weir produce, 1 producer".into(),
            rate(r.produce_msgs_per_s),
            format!("fsync per group commit ({})", r.durability),
        ],
        vec!["weir produce, 4 producers".into(), rate(r.produce_4_producers_msgs_per_s), String::new()],
        vec!["weir consume".into(), rate(r.consume_msgs_per_s), String::new()],
        vec!["weir produce over HTTP (JSON)".into(), rate(r.http_produce_msgs_per_s), String::new()],
        vec!["topic → wasm json-filter → topic".into(), rate(r.pipeline_msgs_per_s), String::new()],
        vec![
            "  the same, /metrics scraped every 100 ms".into(),
            rate(r.pipeline_scraped_msgs_per_s),
            format!("{:+.1}% time", r.metrics_cost_pct),
        ],
        vec!["filter → transform → router ×3".into(), rate(r.pipeline3_msgs_per_s), String::new()],
    ];
    let peer = |rows: &mut Vec<Vec<String>>, name: &str, v: Option<f64>, note: &Option<String>| {
        if let Some(v) = v {
            rows.push(vec![name.to_string(), rate(v), note.clone().unwrap_or_default()]);
        }
    };
    if let Some([plain, id, full]) = r.schema_produce_msgs_per_s {
        rows.push(vec!["produce, Avro in Confluent's framing".into(), rate(plain), "no schema check".into()]);
        rows.push(vec!["  the same, --validation id".into(), rate(id), format!("{:.2}× unchecked", id / plain)]);
        rows.push(vec!["  the same, --validation full".into(), rate(full), format!("{:.2}× unchecked", full / plain)]);
    }
    let kcat = Some("kcat (librdkafka), acks=all".to_string());
    peer(&mut rows, "Kafka listener produce", r.kafka_produce_msgs_per_s, &kcat);
    peer(&mut rows, "Kafka listener consume", r.kafka_consume_msgs_per_s, &None);
    peer(&mut rows, "redis XADD (pipelined)", r.redis_xadd_msgs_per_s, &r.redis_durability);
    peer(&mut rows, "redis XREADGROUP", r.redis_xreadgroup_msgs_per_s, &None);
    peer(&mut rows, "jetstream publish (async)", r.jetstream_publish_msgs_per_s, &r.jetstream_durability);
    peer(&mut rows, "jetstream consume (pull)", r.jetstream_consume_msgs_per_s, &None);
    output::table(&["STAGE", "MSG/S", "DURABILITY"], rows);
    amqp::print(r);
    if let Some(f) = &r.fluvio {
        fluvio::print(f);
    }
    println!(
        "end-to-end latency at {} msg/s offered: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms",
        r.e2e_offered_msgs_per_s, r.e2e_latency_p50_ms, r.e2e_latency_p99_ms, r.e2e_latency_p999_ms
    );
    println!(
        "  during it {} group commits; their RocksDB write + fsync: p99 ≤ {} ms, slowest ≤ {} ms",
        r.e2e_group_commits, r.e2e_commit_write_p99_ms, r.e2e_commit_write_max_ms
    );
    println!(
        "wasm ÷ native time for the same filter: {:.2} (crossing the boundary alone: {:.0} ns/msg)",
        r.wasm_vs_native_ratio, r.wasm_boundary_ns_per_msg
    );
    println!("hot-swap pause p99: {:.3} ms; plugin instantiate: {:.1} µs", r.swap_pause_p99_ms, r.instantiate_us);
    if let Some(s) = r.recovery_s {
        println!("restart after kill -9 with {} messages stored: {s:.2} s until serving", r.recovery_messages);
    }
    if !r.polyglot.is_empty() {
        let rows = r.polyglot.iter().map(|f| {
            vec![
                format!("json-filter in {}", f.lang),
                format!("{:.1}", f.component_mb),
                format!("{:.1}", f.compile_s),
                format!("{:.2}", f.instantiate_ms),
                format!("{:.1}", f.instance_memory_mib),
                format!("{:.0}", f.ns_per_msg),
                format!("{:.1}", f.wasm_vs_native),
            ]
        });
        output::table(
            &["PLUGIN", "MB", "COMPILE S", "INSTANTIATE+INIT MS", "MEMORY MIB", "NS/MSG", "÷ NATIVE"],
            rows.collect(),
        );
    }
}

/// Run a stage `repeat` times with a progress bar and return the median.
async fn median<F, Fut>(args: &BenchArgs, name: &str, mut stage: F) -> anyhow::Result<f64>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<f64>>,
{
    let bar = progress(name, args.repeat as u64);
    let mut values = Vec::with_capacity(args.repeat);
    for i in 0..args.repeat {
        let v = stage(i).await?;
        bar.set_message(format!("{v:.0}"));
        bar.inc(1);
        if bar.is_hidden() {
            // No terminal (CI, a pipe): progress as plain lines instead.
            eprintln!("{name}: run {} of {}: {v:.2}", i + 1, args.repeat);
        }
        values.push(v);
    }
    bar.finish();
    values.sort_by(f64::total_cmp);
    Ok(values[values.len() / 2])
}

/// A progress bar on stderr for one stage.
fn progress(name: &str, len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>32} [{bar:30}] {pos}/{len} {msg}")
            .expect("template")
            .progress_chars("=> "),
    );
    bar.set_prefix(name.to_string());
    bar
}

/// The components the bench deploys, by plugin name: read from `dir`, or built from this
/// binary's source tree.
fn load_plugins(dir: Option<&Path>) -> anyhow::Result<HashMap<String, Vec<u8>>> {
    const NAMES: [&str; 6] = ["json-filter", "json-transform", "router", "hostile", "pass", "redact"];
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

/// A `weir serve` child process with its own data directory and port.
pub(crate) struct BenchServer {
    child: Option<Child>,
    pub addr: String,
    /// The Kafka listener's address.
    pub kafka: String,
    /// The HTTP listener's address.
    pub http: String,
    /// The AMQP listener's address.
    pub amqp: String,
    dir: tempfile::TempDir,
    durability: Durability,
    wal_dir: Option<tempfile::TempDir>,
    /// Flags beyond the defaults.
    extra: Vec<String>,
}

impl BenchServer {
    fn start(durability: Durability, wal_parent: Option<&Path>) -> anyhow::Result<BenchServer> {
        BenchServer::start_with(durability, wal_parent, &[])
    }

    /// A server with `extra` flags (a cluster node's).
    fn start_with(durability: Durability, wal_parent: Option<&Path>, extra: &[&str]) -> anyhow::Result<BenchServer> {
        let dir = tempfile::Builder::new().prefix("weir-bench-").tempdir()?;
        let wal_dir =
            wal_parent.map(|p| tempfile::Builder::new().prefix("weir-bench-wal-").tempdir_in(p)).transpose()?;
        let wal = wal_dir.as_ref().map(tempfile::TempDir::path);
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (child, [addr, kafka, http, amqp]) = spawn_server(dir.path(), durability, wal, &extra)?;
        Ok(BenchServer { child: Some(child), addr, kafka, http, amqp, dir, durability, wal_dir, extra })
    }

    /// SIGKILL, without a restart.
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The server's resident memory, MiB (from /proc).
    fn rss_mib(&self) -> Option<f64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib: f64 =
            status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib / 1024.0)
    }

    async fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::connect(self.addr.clone()).await?)
    }

    /// SIGKILL, then start again on the same data directory; returns when it listens.
    fn kill9_and_restart(&mut self) -> anyhow::Result<()> {
        self.kill9();
        let wal = self.wal_dir.as_ref().map(tempfile::TempDir::path);
        let (child, [addr, kafka, http, amqp]) = spawn_server(self.dir.path(), self.durability, wal, &self.extra)?;
        self.child = Some(child);
        self.addr = addr;
        self.kafka = kafka;
        self.http = http;
        self.amqp = amqp;
        Ok(())
    }
}

/// The server and its native, Kafka, HTTP and AMQP addresses.
fn spawn_server(
    dir: &Path,
    durability: Durability,
    wal_dir: Option<&Path>,
    extra: &[String],
) -> anyhow::Result<(Child, [String; 4])> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("serve")
        .args(extra)
        .args(wal_dir.map(|w| [std::ffi::OsStr::new("--wal-dir"), w.as_os_str()]).into_iter().flatten())
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--listen", "127.0.0.1:0", "--durability", &format!("{durability:?}").to_lowercase()])
        .args(["--kafka-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--amqp-listen", "127.0.0.1:0"])
        .env("WEIR_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the server under test")?;
    let mut stdout = BufReader::new(child.stdout.take().context("server stdout")?);
    let mut line = |prefix: &str| -> anyhow::Result<String> {
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        Ok(line.trim().strip_prefix(prefix).context("server did not start")?.to_string())
    };
    let addr = line("weir listening on ")?;
    let kafka = line("weir kafka listening on ")?;
    let http = line("weir http listening on ")?;
    let amqp = line("weir amqp listening on ")?;
    Ok((child, [addr, kafka, http, amqp]))
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

impl BenchArgs {
    /// Whether stage `name` is to run.
    fn wants(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == name)
    }
}
