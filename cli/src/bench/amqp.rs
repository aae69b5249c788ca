//! `--peers`, stage `amqp`: RabbitMQ's own workload, a work queue, run the same way through
//! weir's AMQP door and through RabbitMQ (Debian's `rabbitmq-server`, a private node the
//! bench starts and stops): producers publishing persistent messages with confirms to a
//! durable queue, consumers with a prefetch acking each message, all with lapin. Throughput is
//! messages acked by consumers per second; latency is from publish to the consumer's ack, at
//! one offered rate for every system (half the slowest one's throughput).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde::Serialize;

use super::{BenchArgs, BenchServer, Report};

/// Publishing connections.
const PRODUCERS: usize = 4;
/// Consuming connections.
const CONSUMERS: usize = 4;
/// Each consumer's prefetch.
const PREFETCH: u16 = 100;
/// Publishes awaiting their confirm, per producer.
const WINDOW: usize = 64;
/// Most messages per throughput run (RabbitMQ runs are slow at 4 KiB).
const MAX_MESSAGES: u64 = 200_000;
/// How long the latency run offers load.
const LATENCY_SECONDS: u64 = 5;

/// How RabbitMQ writes to disk as run here.
const RABBITMQ_DURABILITY: &str = "RabbitMQ 3.10.8 defaults: a quorum queue confirms after its Raft log is fsynced; a classic durable queue confirms persistent messages once written and fsynced (batched)";

/// One system's work-queue figures at one message size.
#[derive(Serialize, Clone, Debug)]
pub struct WorkQueueFigures {
    system: String,
    message_bytes: usize,
    msgs_per_s: f64,
    offered_msgs_per_s: f64,
    p99_ms: f64,
}

/// What each system is: its URL and the queue type it is declared with.
struct Target {
    name: &'static str,
    url: String,
    queue_type: Option<&'static str>,
}

pub(super) async fn run(
    server: &BenchServer,
    args: &BenchArgs,
) -> anyhow::Result<(Vec<WorkQueueFigures>, Option<String>)> {
    let rabbit = Rabbit::start()?;
    let targets = [
        Target { name: "weir AMQP door", url: format!("amqp://guest:guest@{}/%2F", server.amqp), queue_type: None },
        Target { name: "RabbitMQ quorum queue", url: rabbit.url(), queue_type: Some("quorum") },
        Target { name: "RabbitMQ classic durable queue", url: rabbit.url(), queue_type: Some("classic") },
    ];
    let count = args.count.min(MAX_MESSAGES);
    let mut out = Vec::new();
    for size in [100usize, 4096] {
        let mut rates = Vec::new();
        for (i, t) in targets.iter().enumerate() {
            let mut runs = Vec::new();
            for run in 0..args.repeat {
                let queue = format!("bench-{size}-{i}-{run}");
                runs.push(work_queue(t, &queue, size, count, None).await.with_context(|| t.name)?.0);
            }
            runs.sort_by(f64::total_cmp);
            rates.push(runs[runs.len() / 2]);
            eprintln!("amqp work queue, {size} B, {}: {:.0} msg/s", t.name, rates[i]);
        }
        let offered = rates.iter().copied().fold(f64::INFINITY, f64::min) / 2.0;
        for (i, t) in targets.iter().enumerate() {
            let n = (offered * LATENCY_SECONDS as f64) as u64;
            let (_, p99) = work_queue(t, &format!("bench-lat-{size}-{i}"), size, n.max(1), Some(offered)).await?;
            out.push(WorkQueueFigures {
                system: t.name.into(),
                message_bytes: size,
                msgs_per_s: rates[i],
                offered_msgs_per_s: offered,
                p99_ms: p99,
            });
        }
    }
    drop(rabbit);
    Ok((out, Some(RABBITMQ_DURABILITY.into())))
}

/// The stage's table, after the main one.
pub(super) fn print(r: &Report) {
    if r.amqp.is_empty() {
        return;
    }
    println!(
        "work queue over AMQP (lapin; {PRODUCERS} producers with confirms, {CONSUMERS} consumers with prefetch {PREFETCH}):"
    );
    let rows = r
        .amqp
        .iter()
        .map(|f| {
            vec![
                f.system.clone(),
                f.message_bytes.to_string(),
                format!("{:.0}", f.msgs_per_s),
                format!("{:.2} ms at {:.0} msg/s", f.p99_ms, f.offered_msgs_per_s),
            ]
        })
        .collect();
    super::output::table(&["SYSTEM", "BYTES", "MSG/S", "P99 PUBLISH → ACK"], rows);
    if let Some(d) = &r.rabbitmq_durability {
        println!("  {d}");
    }
}

/// One run: the queue declared, consumers started, `count` messages published (at `rate`
/// msg/s when given, else as fast as confirms allow); returns acked msg/s and the p99 from
/// publish to ack, ms.
async fn work_queue(t: &Target, queue: &str, size: usize, count: u64, rate: Option<f64>) -> anyhow::Result<(f64, f64)> {
    let setup = Connection::connect(&t.url, ConnectionProperties::default()).await?;
    let ch = setup.create_channel().await?;
    let mut qargs = FieldTable::default();
    if let Some(kind) = t.queue_type {
        qargs.insert("x-queue-type".into(), AMQPValue::LongString(kind.into()));
    }
    let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    ch.queue_declare(queue.into(), durable, qargs).await?;
    let epoch = Instant::now();
    let acked = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(count as usize)));
    let mut consumers = Vec::new();
    for i in 0..CONSUMERS {
        let conn = Connection::connect(&t.url, ConnectionProperties::default()).await?;
        let c = conn.create_channel().await?;
        c.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
        let mut deliveries = c
            .basic_consume(
                queue.into(),
                format!("bench-{i}").as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let (acked, latencies) = (acked.clone(), latencies.clone());
        consumers.push(tokio::spawn(async move {
            let _keep = (conn, c);
            while let Some(d) = deliveries.next().await {
                let d = d?;
                let sent = u64::from_be_bytes(d.data[..8].try_into().unwrap_or_default());
                d.ack(BasicAckOptions::default()).await?;
                let now = epoch.elapsed().as_nanos() as u64;
                latencies.lock().expect("latencies").push(now.saturating_sub(sent));
                if acked.fetch_add(1, Ordering::Relaxed) + 1 >= count {
                    break;
                }
            }
            anyhow::Ok(())
        }));
    }
    let started = Instant::now();
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let share = count / PRODUCERS as u64 + u64::from((p as u64) < count % PRODUCERS as u64);
        let (url, queue) = (t.url.clone(), queue.to_string());
        producers.push(tokio::spawn(async move { produce(&url, &queue, size, share, rate, epoch).await }));
    }
    for p in producers {
        p.await??;
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while acked.load(Ordering::Relaxed) < count {
        if Instant::now() > deadline {
            bail!("{} of {count} messages acked in 10 minutes", acked.load(Ordering::Relaxed));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    for c in consumers {
        c.abort();
    }
    let _ = ch.queue_delete(queue.into(), QueueDeleteOptions::default()).await;
    let mut l = std::mem::take(&mut *latencies.lock().expect("latencies"));
    l.sort_unstable();
    let p99 = l.get((l.len() * 99 / 100).min(l.len().saturating_sub(1))).copied().unwrap_or(0);
    Ok((count as f64 / elapsed, p99 as f64 / 1e6))
}

/// One producer: `count` persistent messages, each carrying its send time, with confirms,
/// [`WINDOW`] at a time; paced at `rate / PRODUCERS` when given.
async fn produce(
    url: &str,
    queue: &str,
    size: usize,
    count: u64,
    rate: Option<f64>,
    epoch: Instant,
) -> anyhow::Result<()> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let props = BasicProperties::default().with_delivery_mode(2);
    let mut body = vec![b'x'; size.max(8)];
    let mut pending = VecDeque::with_capacity(WINDOW);
    let start = tokio::time::Instant::now();
    for i in 0..count {
        if let Some(r) = rate {
            let at = start + Duration::from_secs_f64(i as f64 * PRODUCERS as f64 / r);
            tokio::time::sleep_until(at).await;
        }
        body[..8].copy_from_slice(&(epoch.elapsed().as_nanos() as u64).to_be_bytes());
        let confirm =
            ch.basic_publish("".into(), queue.into(), BasicPublishOptions::default(), &body, props.clone()).await?;
        pending.push_back(confirm);
        if pending.len() >= WINDOW
            && let Some(c) = pending.pop_front()
        {
            confirmed(c.await?)?;
        }
    }
    for c in pending {
        confirmed(c.await?)?;
    }
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}

/// A nack ends the run: the system refused a message (a full disk, say), and waiting for
/// it to arrive would never end.
fn confirmed(c: lapin::Confirmation) -> anyhow::Result<()> {
    if c.is_ack() { Ok(()) } else { bail!("a publish was nacked: the broker refused the message") }
}

/// A private RabbitMQ node on free ports, in a temporary directory, stopped on drop.
struct Rabbit {
    node: String,
    port: u16,
    _dir: tempfile::TempDir,
}

const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const RABBITMQCTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";

impl Rabbit {
    fn start() -> anyhow::Result<Rabbit> {
        if !Path::new(RABBITMQ_SERVER).exists() {
            bail!(
                "RabbitMQ is not installed; install the Debian package `rabbitmq-server` (examples/setup.sh does), or run without --peers"
            );
        }
        let dir = tempfile::Builder::new().prefix("weir-bench-rabbitmq-").tempdir()?;
        let port = super::peers::free_port()?;
        let node = format!("weirbench{port}@localhost");
        let plugins = dir.path().join("enabled_plugins");
        std::fs::write(&plugins, "[].")?;
        let path = |p: &str| -> PathBuf { dir.path().join(p) };
        let status = Command::new(RABBITMQ_SERVER)
            .arg("-detached")
            .env("RABBITMQ_NODENAME", &node)
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", super::peers::free_port()?.to_string())
            .env("RABBITMQ_MNESIA_BASE", path("mnesia"))
            .env("RABBITMQ_LOG_BASE", path("log"))
            .env("RABBITMQ_PID_FILE", path("pid"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", &plugins)
            .env("RABBITMQ_CONFIG_FILE", path("rabbitmq"))
            .status()
            .context("starting rabbitmq-server")?;
        if !status.success() {
            bail!("rabbitmq-server -detached failed ({status})");
        }
        let rabbit = Rabbit { node, port, _dir: dir };
        let waited = Command::new(RABBITMQCTL)
            .args(["-n", &rabbit.node, "wait", "--timeout", "120"])
            .arg(rabbit._dir.path().join("pid"))
            .output()
            .context("waiting for RabbitMQ")?;
        if !waited.status.success() {
            bail!("RabbitMQ did not start: {}", String::from_utf8_lossy(&waited.stderr));
        }
        Ok(rabbit)
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2F", self.port)
    }
}

impl Drop for Rabbit {
    fn drop(&mut self) {
        let _ = Command::new(RABBITMQCTL).args(["-n", &self.node, "stop"]).output();
    }
}
