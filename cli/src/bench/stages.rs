//! The weir stages of the bench.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use anyhow::bail;
use weir_client::client::{Client, Pending, produced};
use weir_client::wire::TopicConfig;
use weir_client::wire::{FetchPosition, WireRecord};
use weir_client::wire::{PipelineSpec, StepSpec};

use super::{BenchArgs, BenchServer, Report, median, progress};

/// Produce requests in flight per producer: enough to hide a group commit's fsync.
const IN_FLIGHT: usize = 32;

pub(super) async fn run_all(
    args: &BenchArgs,
    plugins: &HashMap<String, Vec<u8>>,
    r: &mut Report,
) -> anyhow::Result<()> {
    let mut server = BenchServer::start(args.durability, args.wal_dir.as_deref())?;
    let client = server.client().await?;
    client.deploy_plugin("bench-filter", plugins["json-filter"].clone()).await?;
    client.deploy_plugin("bench-transform", plugins["json-transform"].clone()).await?;
    client.deploy_plugin("bench-router", plugins["router"].clone()).await?;
    let s = &server;
    let filter = plugins["json-filter"].clone();
    if args.wants("produce") {
        r.produce_msgs_per_s = median(args, "weir produce (1 producer)", |i| produce_stage(s, args, i, 1)).await?;
        r.produce_4_producers_msgs_per_s =
            median(args, "weir produce (4 producers)", |i| produce_stage(s, args, i + 100, 4)).await?;
    }
    if args.wants("consume") {
        r.consume_msgs_per_s = median(args, "weir consume", |i| consume_stage(s, args, i)).await?;
    }
    if args.kafka && args.wants("kafka") {
        r.kafka_produce_msgs_per_s =
            Some(median(args, "Kafka listener produce (kcat)", |i| kafka_produce_stage(s, args, i)).await?);
        r.kafka_consume_msgs_per_s =
            Some(median(args, "Kafka listener consume (kcat)", |i| kafka_consume_stage(s, args, i)).await?);
    }
    if args.wants("http") {
        r.http_produce_msgs_per_s = median(args, "weir produce over HTTP", |i| http_produce_stage(s, args, i)).await?;
    }
    if args.wants("schemas") {
        let (mut runs, bar) = (Vec::new(), progress("produce with schema checks (none, id, full)", args.repeat as u64));
        for i in 0..args.repeat {
            runs.push(super::schemas::run(s, args.count, args.size, args.batch, i).await?);
            bar.inc(1);
        }
        bar.finish();
        let median = |k: usize| {
            let mut v: Vec<f64> = runs.iter().map(|r| r[k]).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        r.schema_produce_msgs_per_s = Some([median(0), median(1), median(2)]);
    }
    if args.peers && args.wants("amqp") {
        (r.amqp, r.rabbitmq_durability) = super::amqp::run(s, args).await?;
    }
    if args.fluvio && args.wants("fluvio") {
        r.fluvio = Some(super::fluvio::run(s, args, &filter, &plugins["json-transform"]).await?);
    }
    if args.wants("latency") {
        let before = commit_write_histogram(s).await?;
        (r.e2e_latency_p50_ms, r.e2e_latency_p99_ms, r.e2e_latency_p999_ms) = latency_stage(s, args).await?;
        let during = commit_write_histogram(s).await?.since(&before);
        r.e2e_group_commits = during.count();
        (r.e2e_commit_write_p99_ms, r.e2e_commit_write_max_ms) = (during.bound_ms(0.99), during.bound_ms(1.0));
    }
    if args.wants("pipeline") {
        r.pipeline_msgs_per_s = median(args, "pipeline (json-filter)", |i| pipeline_stage(s, args, i)).await?;
    }
    if args.wants("metrics") {
        // Unscraped and scraped runs alternate, so drift over the run hits both alike; at
        // least 7 pairs, as runs of one pipeline differ by ±15% on this machine.
        let (mut plain, mut scraped) = (Vec::new(), Vec::new());
        let pairs = if args.quick { 1 } else { args.repeat.max(7) };
        let bar = progress("pipeline with and without scraping", pairs as u64);
        for i in 0..pairs {
            plain.push(pipeline_stage(s, args, 1000 + 2 * i).await?);
            scraped.push(scraped_pipeline_stage(s, args, 1001 + 2 * i).await?);
            bar.inc(1);
        }
        bar.finish_and_clear();
        let mid = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (plain, scraped) = (mid(&mut plain), mid(&mut scraped));
        r.pipeline_scraped_msgs_per_s = scraped;
        r.metrics_cost_pct = (plain / scraped - 1.0) * 100.0;
    }
    if args.only.iter().any(|o| o == "pipeline-rss") {
        pipeline_rss_stage(s, args, r).await?;
    }
    if args.wants("pipeline3") {
        r.pipeline3_msgs_per_s = median(args, "pipeline (3 steps, fan-out)", |i| pipeline3_stage(s, args, i)).await?;
    }
    if args.wants("wasm-vs-native") {
        r.wasm_vs_native_ratio =
            median(args, "wasm ÷ native (json-filter)", |_| wasm_vs_native(&filter, Kernel::Filter, args)).await?;
        let transform = &plugins["json-transform"];
        r.wasm_vs_native_transform_ratio =
            median(args, "wasm ÷ native (json-transform)", |_| wasm_vs_native(transform, Kernel::Transform, args))
                .await?;
    }
    if args.wants("boundary") || args.wants("wasm-vs-native") {
        let (v2, v1) = (&plugins["pass"], &plugins["hostile"]);
        r.wasm_boundary_ns_per_msg =
            median(args, "boundary 0.2.0 (ns/msg)", |_| boundary_stage(v2, Shape::Plain, args)).await?;
        r.wasm_boundary_keyed_ns_per_msg =
            median(args, "boundary 0.2.0, key + 2 headers", |_| boundary_stage(v2, Shape::Keyed, args)).await?;
        r.wasm_boundary_v1_ns_per_msg =
            median(args, "boundary 0.1.0 (ns/msg)", |_| boundary_stage(v1, Shape::Plain, args)).await?;
        r.wasm_boundary_v1_keyed_ns_per_msg =
            median(args, "boundary 0.1.0, key + 2 headers", |_| boundary_stage(v1, Shape::Keyed, args)).await?;
    }
    if args.wants("swap") {
        r.swap_pause_p99_ms = median(args, "hot-swap pause p99 (ms)", |i| swap_stage(s, args, i, &filter)).await?;
    }
    if args.wants("instantiate") {
        r.instantiate_us = median(args, "plugin instantiate (µs)", |_| instantiate_stage(&filter)).await?;
    }
    if args.wants("polyglot") {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("source tree");
        r.polyglot = super::polyglot::run(root, &filter, args).await?;
    }
    drop(client);
    if args.recovery_messages > 0 && args.wants("recovery") {
        r.recovery_s = Some(recovery_stage(&mut server, args).await?);
    }
    Ok(())
}

/// kcat (librdkafka, acks=all) producing `count` messages of `size` bytes from a file through
/// the Kafka listener, in msg/s; checks weir stored them all.
async fn kafka_produce_stage(server: &BenchServer, args: &BenchArgs, run: usize) -> anyhow::Result<f64> {
    let topic = format!("kafka-{run}");
    let client = server.client().await?;
    create(&client, &topic, args.partitions).await?;
    let file = tempfile::NamedTempFile::new()?;
    {
        use std::io::Write;
        let mut w = std::io::BufWriter::new(file.as_file());
        for i in 0..args.count {
            w.write_all(&message(i, args.size))?;
            w.write_all(b"\n")?;
        }
    }
    let start = Instant::now();
    kcat(
        &server.kafka,
        &["-P", "-t", &topic, "-l", &file.path().to_string_lossy(), "-X", "acks=all", "-X", "linger.ms=5"],
    )?;
    let secs = start.elapsed().as_secs_f64();
    let stored: u64 = client.describe_topic(&topic).await?.partitions.iter().map(|(s, e)| e - s).sum();
    if stored != args.count {
        bail!("kcat produced {} messages but weir stored {stored}", args.count);
    }
    Ok(args.count as f64 / secs)
}

/// kcat reading a topic of `count` messages from the start through the Kafka listener, msg/s.
async fn kafka_consume_stage(server: &BenchServer, args: &BenchArgs, run: usize) -> anyhow::Result<f64> {
    let topic = format!("kafka-read-{run}");
    let client = server.client().await?;
    create(&client, &topic, args.partitions).await?;
    produce_all(&client, &topic, args.count, args.size, args.batch).await?;
    let start = Instant::now();
    let count = args.count.to_string();
    kcat(&server.kafka, &["-C", "-t", &topic, "-o", "beginning", "-e", "-q", "-c", &count, "-f", "%o\n"])?;
    Ok(args.count as f64 / start.elapsed().as_secs_f64())
}

/// Run kcat against `broker`, discarding its output.
fn kcat(broker: &str, args: &[&str]) -> anyhow::Result<()> {
    let status = std::process::Command::new("kcat")
        .args(["-b", broker])
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| anyhow::anyhow!("cannot run kcat ({e}); examples/setup.sh installs it"))?;
    if !status.success() {
        bail!("kcat {args:?} failed: {status}");
    }
    Ok(())
}

/// A JSON message of exactly `size` bytes (padded), which json-filter keeps, with a region
/// for the router.
pub(super) fn message(i: u64, size: usize) -> Vec<u8> {
    let region = ["eu", "us", "apac"][(i % 3) as usize];
    let mut v = format!(r#"{{"id":{i},"status":"paid","region":"{region}","pad":""#).into_bytes();
    while v.len() + 2 < size {
        v.push(b'x');
    }
    v.extend_from_slice(b"\"}");
    v
}

pub(super) async fn create(client: &Client, name: &str, partitions: u32) -> anyhow::Result<()> {
    client.create_topic(name, TopicConfig { partitions, ..TopicConfig::default() }).await?;
    Ok(())
}

/// Produce `count` messages to `topic` over one connection, [`IN_FLIGHT`] batches at a time.
pub(super) async fn produce_all(
    client: &Client,
    topic: &str,
    count: u64,
    size: usize,
    batch: usize,
) -> anyhow::Result<()> {
    produce_made(client, topic, count, batch, |i| message(i, size)).await
}

/// Produce `count` values made by `make(i)` to `topic` over one connection, [`IN_FLIGHT`]
/// batches at a time.
pub(super) async fn produce_made(
    client: &Client,
    topic: &str,
    count: u64,
    batch: usize,
    make: impl Fn(u64) -> Vec<u8>,
) -> anyhow::Result<()> {
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut sent = 0u64;
    while sent < count {
        let n = batch.min((count - sent) as usize);
        let records = (sent..sent + n as u64).map(|i| WireRecord::value(make(i))).collect();
        pending.push_back(client.start_produce(topic, None, records)?);
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
    create(&server.client().await?, &topic, args.partitions).await?;
    let per = args.count / producers;
    let took = produce_parallel(server, &topic, producers, per, args.size, args.batch).await?;
    Ok((per * producers) as f64 / took.as_secs_f64())
}

/// `producers` connections producing `per` messages each at once; the time from the first
/// request to the last acknowledgement (connecting is not timed).
async fn produce_parallel(
    server: &BenchServer,
    topic: &str,
    producers: u64,
    per: u64,
    size: usize,
    batch: usize,
) -> anyhow::Result<Duration> {
    let mut clients = Vec::new();
    for _ in 0..producers {
        clients.push(server.client().await?);
    }
    let start = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|c| {
            let topic = topic.to_string();
            tokio::spawn(async move { produce_all(&c, &topic, per, size, batch).await })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(start.elapsed())
}

async fn consume_stage(server: &BenchServer, args: &BenchArgs, run: usize) -> anyhow::Result<f64> {
    let topic = format!("consume-{run}");
    let client = server.client().await?;
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

/// Offer `rate` msg/s (a batch every millisecond) for `latency_seconds`, while a consumer
/// long-polls; latency is from just before the produce request to the consumer seeing the
/// message (which includes the durable commit). Returns (p50, p99, p99.9) in ms.
async fn latency_stage(server: &BenchServer, args: &BenchArgs) -> anyhow::Result<(f64, f64, f64)> {
    let topic = "latency";
    let producer = server.client().await?;
    create(&producer, topic, 1).await?;
    let total = args.rate * args.latency_seconds;
    let bar = progress("end-to-end latency", total);
    let base = Instant::now();
    let consumer = {
        let client = server.client().await?;
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(total as usize);
            let mut offset = 0;
            while (latencies.len() as u64) < total {
                let parts = client
                    .fetch(topic, vec![FetchPosition { partition: 0, offset }], 10_000, Duration::from_secs(5))
                    .await?;
                let now = base.elapsed().as_nanos() as u64;
                for r in &parts[0].records {
                    let sent: u64 =
                        std::str::from_utf8(&r.value[..20]).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(now);
                    latencies.push(now.saturating_sub(sent));
                }
                offset = parts[0].first_offset + parts[0].records.len() as u64;
            }
            anyhow::Ok(latencies)
        })
    };
    let per_tick = (args.rate / 1000).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut acks = VecDeque::new();
    let mut sent = 0;
    while sent < total {
        tick.tick().await;
        let n = per_tick.min(total - sent);
        let stamp = format!("{:>20}", base.elapsed().as_nanos());
        let batch = (0..n)
            .map(|_| {
                let mut v = stamp.clone().into_bytes();
                v.resize(args.size, b' ');
                WireRecord::value(v)
            })
            .collect();
        acks.push_back(producer.start_produce(topic, None, batch)?);
        sent += n;
        bar.set_position(sent);
        while acks.len() > 1000 {
            produced(acks.pop_front().expect("non-empty").wait().await?)?;
        }
    }
    for a in acks {
        produced(a.wait().await?)?;
    }
    let mut latencies = consumer.await??;
    bar.finish();
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)] as f64 / 1e6;
    Ok((pct(0.50), pct(0.99), pct(0.999)))
}

/// The server's group-commit write-time histogram (`weir_store_group_commit_write_seconds`
/// on its /metrics): cumulative counts by upper bound, seconds.
struct CommitWrites(Vec<(f64, u64)>);

async fn commit_write_histogram(server: &BenchServer) -> anyhow::Result<CommitWrites> {
    let text = reqwest::get(format!("http://{}/metrics", server.http)).await?.error_for_status()?.text().await?;
    let buckets = text
        .lines()
        .filter_map(|l| {
            let (le, count) =
                l.strip_prefix("weir_store_group_commit_write_seconds_bucket{le=\"")?.split_once("\"} ")?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, count.trim().parse().ok()?))
        })
        .collect::<Vec<_>>();
    anyhow::ensure!(!buckets.is_empty(), "the server's /metrics has no group-commit write histogram");
    Ok(CommitWrites(buckets))
}

impl CommitWrites {
    /// What was observed since `earlier`.
    fn since(&self, earlier: &CommitWrites) -> CommitWrites {
        CommitWrites(self.0.iter().zip(&earlier.0).map(|(&(le, now), &(_, then))| (le, now - then)).collect())
    }

    fn count(&self) -> u64 {
        self.0.last().map_or(0, |b| b.1)
    }

    /// The upper bound (ms) of the bucket holding quantile `q`: an upper estimate.
    fn bound_ms(&self, q: f64) -> f64 {
        let want = (self.count() as f64 * q).ceil() as u64;
        self.0.iter().find(|b| b.1 >= want).map_or(0.0, |b| b.0 * 1e3)
    }
}

async fn pipeline_stage(server: &BenchServer, args: &BenchArgs, run: usize) -> anyhow::Result<f64> {
    let (source, sink) = (format!("pipe-in-{run}"), format!("pipe-out-{run}"));
    let client = server.client().await?;
    create(&client, &source, args.partitions).await?;
    create(&client, &sink, args.partitions).await?;
    produce_all(&client, &source, args.count, args.size, args.batch).await?;
    let step = StepSpec::new("bench-filter", &[("field", "status"), ("equals", "paid")]);
    let spec = PipelineSpec::new(&format!("bench-{run}"), &source, vec![step], &sink);
    timed_pipeline(&client, spec, args.count).await
}

/// The 1-step pipeline while a scraper reads /metrics every 100 ms (Prometheus' default is
/// every 15 s: this is 150 times as often).
async fn scraped_pipeline_stage(server: &BenchServer, args: &BenchArgs, run: usize) -> anyhow::Result<f64> {
    let url = format!("http://{}/metrics", server.http);
    let scraper = tokio::spawn(async move {
        let http = reqwest::Client::new();
        loop {
            if let Ok(r) = http.get(&url).send().await {
                let _ = r.bytes().await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let rate = pipeline_stage(server, args, run).await;
    scraper.abort();
    rate
}

/// `--rss-messages` produced into a topic that a running json-filter pipeline drains, with
/// the server's RSS sampled every second from the first produce to the last message
/// processed: memory must stay flat however many messages flow.
async fn pipeline_rss_stage(server: &BenchServer, args: &BenchArgs, r: &mut Report) -> anyhow::Result<()> {
    let client = server.client().await?;
    let (source, sink) = ("rss-in", "rss-out");
    create(&client, source, args.partitions).await?;
    create(&client, sink, args.partitions).await?;
    let step = StepSpec::new("bench-filter", &[("field", "status"), ("equals", "paid")]);
    client.create_pipeline(PipelineSpec::new("rss", source, vec![step], sink)).await?;
    let count = args.rss_messages;
    let producer = {
        let c = server.client().await?;
        let (size, batch) = (args.size, args.batch);
        tokio::spawn(async move { produce_all(&c, source, count, size, batch).await })
    };
    let bar = progress("pipeline RSS (messages processed)", count);
    let mut samples = Vec::new();
    loop {
        samples.push(server.rss_mib().unwrap_or(0.0));
        let status = client.pipeline_status("rss").await?;
        if let Some(e) = status.last_error {
            bail!("the RSS pipeline failed: {e}");
        }
        bar.set_position(status.processed);
        if status.processed >= count {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    bar.finish_and_clear();
    producer.await??;
    let third = (samples.len() / 3).max(1);
    let peak = |s: &[f64]| s.iter().copied().fold(0.0, f64::max);
    let (first, last) = (peak(&samples[..third]), peak(&samples[samples.len() - third..]));
    eprintln!(
        "pipeline RSS: {} samples, first-third peak {first:.0} MiB, last-third peak {last:.0} MiB",
        samples.len()
    );
    r.pipeline_rss_messages = Some(count);
    r.pipeline_rss_growth = Some(last / first);
    r.pipeline_rss_mib = Some(samples);
    client.delete_pipeline("rss").await?;
    Ok(())
}

/// JSON produce requests of `--batch` records over HTTP, 4 in flight, msg/s.
async fn http_produce_stage(server: &BenchServer, args: &BenchArgs, run: usize) -> anyhow::Result<f64> {
    let topic = format!("http-{run}");
    create(&server.client().await?, &topic, args.partitions).await?;
    let url = format!("http://{}/api/v1/topics/{topic}/records", server.http);
    let http = reqwest::Client::new();
    let bodies: Vec<(u64, String)> = (0..args.count)
        .step_by(args.batch)
        .map(|from| {
            let n = (args.batch as u64).min(args.count - from);
            let records: Vec<String> = (from..from + n)
                .map(|i| format!(r#"{{"value":{}}}"#, String::from_utf8_lossy(&message(i, args.size))))
                .collect();
            (n, format!(r#"{{"records":[{}]}}"#, records.join(",")))
        })
        .collect();
    use futures_util::StreamExt;
    let start = Instant::now();
    let mut in_flight = futures_util::stream::iter(bodies.into_iter().map(|(n, body)| {
        let request = http.post(&url).header("content-type", "application/json").body(body);
        async move {
            let response = request.send().await?;
            if !response.status().is_success() {
                bail!("HTTP produce failed: {} {}", response.status(), response.text().await.unwrap_or_default());
            }
            anyhow::Ok(n)
        }
    }))
    .buffer_unordered(4);
    let mut stored = 0u64;
    while let Some(n) = in_flight.next().await {
        stored += n?;
    }
    Ok(stored as f64 / start.elapsed().as_secs_f64())
}

/// Filter → transform → router fanning out to three topics, on JSON messages.
async fn pipeline3_stage(server: &BenchServer, args: &BenchArgs, run: usize) -> anyhow::Result<f64> {
    let source = format!("p3-in-{run}");
    let client = server.client().await?;
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
    let spec = PipelineSpec::new(&format!("bench3-{run}"), &source, steps, &format!("p3-other-{run}"));
    timed_pipeline(&client, spec, args.count).await
}

/// Create the pipeline over a pre-filled source and time it until everything is processed.
pub(super) async fn timed_pipeline(client: &Client, spec: PipelineSpec, count: u64) -> anyhow::Result<f64> {
    let start = Instant::now();
    client.create_pipeline(spec.clone()).await?;
    wait_processed(client, &spec.name, count).await?;
    let rate = count as f64 / start.elapsed().as_secs_f64();
    client.delete_pipeline(&spec.name).await?;
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

/// The logic a wasm ÷ native stage compares.
#[derive(Clone, Copy)]
pub(super) enum Kernel {
    /// json-filter keeping `status == paid` (a keep per message).
    Filter,
    /// json-transform setting a field and dropping one (an emit per message).
    Transform,
}

impl Kernel {
    pub(super) fn config(self) -> Vec<(String, String)> {
        let pairs: &[(&str, &str)] = match self {
            Kernel::Filter => &[("field", "status"), ("equals", "paid")],
            Kernel::Transform => &[("set.stage", "billed"), ("drop", "pad")],
        };
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// The same plugin linked natively into this binary.
    fn native(self) -> anyhow::Result<Box<dyn FnMut(weir_sdk::Message) -> anyhow::Result<weir_sdk::Outcome>>> {
        use weir_sdk::{Config, FilterPlugin, MapPlugin, Plugin};
        let config = Config::from_pairs(self.config());
        let err = |e: weir_sdk::Error| anyhow::anyhow!("{e}");
        Ok(match self {
            Kernel::Filter => {
                let mut p = FilterPlugin::<weir_plugin_json_filter::JsonFilter>::init(&config).map_err(err)?;
                Box::new(move |m| p.process(m).map_err(err))
            }
            Kernel::Transform => {
                let mut p = MapPlugin::<weir_plugin_json_transform::JsonTransform>::init(&config).map_err(err)?;
                Box::new(move |m| p.process(m).map_err(err))
            }
        })
    }
}

/// The same logic natively (the plugin crate linked into this binary) and as a component
/// (batches of 2,048 across the boundary): wasm time ÷ native time, in process.
async fn wasm_vs_native(component: &[u8], kernel: Kernel, args: &BenchArgs) -> anyhow::Result<f64> {
    let (component, count, size) = (component.to_vec(), args.count.min(1_000_000), args.size);
    tokio::task::spawn_blocking(move || {
        let config = kernel.config();
        let payloads: Vec<Vec<u8>> = (0..BATCH).map(|i| message(i as u64, size)).collect();
        let rounds = (count / BATCH as u64).max(1);
        let native_s = native_seconds(kernel, &payloads, rounds)?;
        let wasm_s = time_component(&component, &config, &payloads, rounds, Shape::Plain)?;
        let per = |s: f64| s * 1e9 / (rounds * BATCH as u64) as f64;
        eprintln!("native {:.0} ns/msg, wasm {:.0} ns/msg", per(native_s), per(wasm_s));
        Ok(wasm_s / native_s)
    })
    .await?
}

/// Seconds for the plugin crate linked natively to process `payloads` `rounds` times.
pub(super) fn native_seconds(kernel: Kernel, payloads: &[Vec<u8>], rounds: u64) -> anyhow::Result<f64> {
    let mut native = kernel.native()?;
    let start = Instant::now();
    for _ in 0..rounds {
        for p in payloads {
            std::hint::black_box(native(weir_sdk::Message::new(p.clone()))?);
        }
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Messages per `process` call in the in-process stages.
pub(super) const BATCH: usize = 2048;

/// The messages of an in-process stage.
#[derive(Clone, Copy)]
pub(super) enum Shape {
    /// A payload alone.
    Plain,
    /// A payload with a key and two headers.
    Keyed,
}

/// What crossing the boundary alone costs per message: a component that passes every message
/// on unchanged, in ns — `pass` for 0.2.0, `hostile` with a trigger that never matches for
/// 0.1.0.
async fn boundary_stage(passthrough: &[u8], shape: Shape, args: &BenchArgs) -> anyhow::Result<f64> {
    let (component, count, size) = (passthrough.to_vec(), args.count.min(1_000_000), args.size);
    tokio::task::spawn_blocking(move || {
        let runtime_dir = tempfile::tempdir()?;
        let runtime = weir_host::runtime::Runtime::new(runtime_dir.path())?;
        let config: Vec<(String, String)> = match runtime.load(&component)?.world() {
            weir_host::runtime::WORLD_V1 => vec![("mode".into(), "fail".into()), ("trigger".into(), "never".into())],
            _ => Vec::new(),
        };
        let payloads: Vec<Vec<u8>> = (0..BATCH).map(|i| message(i as u64, size)).collect();
        let rounds = (count / BATCH as u64).max(1);
        let s = time_component(&component, &config, &payloads, rounds, shape)?;
        Ok(s * 1e9 / (rounds * BATCH as u64) as f64)
    })
    .await?
}

/// Seconds for `rounds` calls of `process` with `payloads` as one batch, in process.
pub(super) fn time_component(
    wasm: &[u8],
    config: &[(String, String)],
    payloads: &[Vec<u8>],
    rounds: u64,
    shape: Shape,
) -> anyhow::Result<f64> {
    // As the worker holds them: `Bytes` from the log, shared, not copied per call.
    let payloads: Vec<bytes::Bytes> = payloads.iter().map(|p| bytes::Bytes::from(p.clone())).collect();
    let (key, headers) = match shape {
        Shape::Plain => (None, Vec::new()),
        Shape::Keyed => (
            Some(bytes::Bytes::from_static(b"customer-42")),
            vec![("weir-type".to_string(), "OrderCreated".to_string()), ("traceparent".to_string(), "00-4bf9".into())],
        ),
    };
    use weir_host::runtime::{Batch, Message, Runtime, Sandbox, StateScope};
    let dir = tempfile::tempdir()?;
    let runtime = Runtime::new(dir.path())?;
    let loaded = runtime.load(wasm)?;
    let mut inst = runtime.instantiate(
        &loaded,
        &Sandbox::default(),
        "bench".into(),
        StateScope { store: None, prefix: Vec::new() },
    )?;
    inst.init(config)?;
    // Built once, as the worker builds a batch once from the log before its steps run: what
    // is timed is the crossing (packing, the call, the plugin, unpacking the outcomes).
    let messages = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| Message {
            key: key.clone(),
            value: p.clone(),
            headers: headers.clone(),
            timestamp_ms: 0,
            partition: 0,
            offset: i as u64,
        })
        .collect();
    let batch = Batch { topic: "bench".into(), messages };
    let start = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(inst.process(&batch)?);
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Swap the plugin of a pipeline under load 50 times; the p99 of the pauses the workers
/// recorded (instantiating and initialising the new version at a batch boundary), in ms.
async fn swap_stage(server: &BenchServer, args: &BenchArgs, run: usize, filter: &[u8]) -> anyhow::Result<f64> {
    const SWAPS: usize = 50;
    let (source, sink, plugin) = (format!("swap-in-{run}"), format!("swap-out-{run}"), format!("swap-{run}"));
    let client = server.client().await?;
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
    wait_processed(&client, &format!("swap-{run}"), per_swap * (SWAPS as u64 + 1)).await?;
    Ok(client.pipeline_status(&format!("swap-{run}")).await?.swap_pause_p99_us as f64 / 1000.0)
}

/// Average time to instantiate the component from its `InstancePre` (pooling allocator,
/// precompiled code), in µs, measured in process over 2,000 instances.
async fn instantiate_stage(filter: &[u8]) -> anyhow::Result<f64> {
    use weir_host::runtime::{Runtime, Sandbox, StateScope};
    let filter = filter.to_vec();
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir()?;
        let runtime = Runtime::new(dir.path())?;
        let loaded = runtime.load(&filter)?;
        let sandbox = Sandbox::default();
        let scope = || StateScope { store: None, prefix: Vec::new() };
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

/// Store `recovery_messages`, kill -9 the server, and time the restart until it serves
/// them all again (RocksDB replays its WAL; offsets are recovered from the log).
async fn recovery_stage(server: &mut BenchServer, args: &BenchArgs) -> anyhow::Result<f64> {
    let bar = progress("restart with stored messages", args.recovery_messages);
    let client = server.client().await?;
    create(&client, "recovery", args.partitions).await?;
    let producers = 4;
    let per = args.recovery_messages / producers;
    produce_parallel(server, "recovery", producers, per, args.size, args.batch.max(1000)).await?;
    bar.set_position(per * producers);
    drop(client);
    let start = Instant::now();
    server.kill9_and_restart()?;
    let client = server.client().await?;
    let stored: u64 = client.describe_topic("recovery").await?.partitions.iter().map(|(s, e)| e - s).sum();
    let elapsed = start.elapsed().as_secs_f64();
    bar.finish();
    if stored != per * producers {
        bail!("after the restart the topic holds {stored} messages, not {}", per * producers);
    }
    Ok(elapsed)
}
