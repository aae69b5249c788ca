//! Peers measured in the same run, with the same message size, count and batching: Redis
//! Streams (Debian's `redis-server`) and NATS JetStream (Debian's `nats-server -js`). The bench
//! starts each on a free loopback port with a temporary directory and stops it afterwards.

use std::collections::VecDeque;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;

use super::stages::message;
use super::{BenchArgs, Report, median};

/// Pipelines (Redis) or publish acks (JetStream) in flight, like weir's producer.
const IN_FLIGHT: usize = 32;

/// Redis persistence as run here: the usual benchmark setting, in memory.
const REDIS_DURABILITY: &str = "in memory (--save '' --appendonly no)";
/// JetStream storage as run here.
const JETSTREAM_DURABILITY: &str = "file storage, nats-server default sync (fsync every 2 min)";

pub(super) async fn run_all(args: &BenchArgs, r: &mut Report) -> anyhow::Result<()> {
    let redis = Peer::start("redis-server", "redis-server", |port, _dir| {
        vec![
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
        ]
    })?;
    let url = format!("redis://127.0.0.1:{}/", redis.port);
    wait_for_port(redis.port).await?;
    r.redis_xadd_msgs_per_s = Some(median(args, "redis XADD", |i| redis_xadd(&url, args, i)).await?);
    r.redis_xreadgroup_msgs_per_s = Some(median(args, "redis XREADGROUP", |i| redis_xreadgroup(&url, args, i)).await?);
    r.redis_durability = Some(REDIS_DURABILITY.into());
    drop(redis);

    let nats = Peer::start("nats-server", "nats-server", |port, dir| {
        vec![
            "-js".into(),
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-sd".into(),
            dir.display().to_string(),
        ]
    })?;
    wait_for_port(nats.port).await?;
    let addr = format!("127.0.0.1:{}", nats.port);
    r.jetstream_publish_msgs_per_s =
        Some(median(args, "jetstream publish", |i| jetstream_publish(&addr, args, i)).await?);
    r.jetstream_consume_msgs_per_s =
        Some(median(args, "jetstream consume", |i| jetstream_consume(&addr, args, i)).await?);
    r.jetstream_durability = Some(JETSTREAM_DURABILITY.into());
    Ok(())
}

/// A peer server process on a free port.
struct Peer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Peer {
    fn start(binary: &str, package: &str, args: impl Fn(u16, &Path) -> Vec<String>) -> anyhow::Result<Peer> {
        if which(binary).is_none() {
            bail!(
                "`{binary}` is not installed; install the Debian package `{package}` (examples/setup.sh does), or run without --peers"
            );
        }
        let dir = tempfile::Builder::new().prefix("weir-bench-peer-").tempdir()?;
        let port = free_port()?;
        let child = Command::new(binary)
            .args(args(port, dir.path()))
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {binary}"))?;
        Ok(Peer { child, port, _dir: dir })
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(binary: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(binary)).find(|p| p.exists())
}

pub(super) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn wait_for_port(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if Instant::now() > deadline {
            bail!("the peer on port {port} did not start listening");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// XADD in pipelines of `--batch` commands, [`IN_FLIGHT`] pipelines at a time.
async fn redis_xadd(url: &str, args: &BenchArgs, run: usize) -> anyhow::Result<f64> {
    let client = redis::Client::open(url)?;
    let con = client.get_multiplexed_async_connection().await?;
    let stream = format!("bench-{run}");
    let start = Instant::now();
    fill_stream(&con, &stream, args).await?;
    Ok(args.count as f64 / start.elapsed().as_secs_f64())
}

async fn fill_stream(con: &redis::aio::MultiplexedConnection, stream: &str, args: &BenchArgs) -> anyhow::Result<()> {
    let mut pending = VecDeque::new();
    let mut sent = 0u64;
    while sent < args.count {
        let n = (args.batch as u64).min(args.count - sent);
        let mut pipe = redis::pipe();
        for i in sent..sent + n {
            pipe.cmd("XADD").arg(stream).arg("*").arg("v").arg(message(i, args.size)).ignore();
        }
        let mut c = con.clone();
        pending.push_back(tokio::spawn(async move { pipe.query_async::<()>(&mut c).await }));
        sent += n;
        if pending.len() >= IN_FLIGHT {
            pending.pop_front().expect("non-empty").await??;
        }
    }
    for p in pending {
        p.await??;
    }
    Ok(())
}

/// XREADGROUP (NOACK) of `--batch` entries per command, eight commands per pipeline.
async fn redis_xreadgroup(url: &str, args: &BenchArgs, run: usize) -> anyhow::Result<f64> {
    let client = redis::Client::open(url)?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let stream = format!("read-{run}");
    fill_stream(&con, &stream, args).await?;
    redis::cmd("XGROUP").arg("CREATE").arg(&stream).arg("g").arg("0").query_async::<()>(&mut con).await?;
    let start = Instant::now();
    let mut got = 0u64;
    while got < args.count {
        let mut pipe = redis::pipe();
        for _ in 0..8 {
            pipe.cmd("XREADGROUP")
                .arg("GROUP")
                .arg("g")
                .arg("c")
                .arg("COUNT")
                .arg(args.batch)
                .arg("NOACK")
                .arg("STREAMS")
                .arg(&stream)
                .arg(">");
        }
        let replies: Vec<redis::streams::StreamReadReply> = pipe.query_async(&mut con).await?;
        got += replies.iter().flat_map(|r| &r.keys).map(|k| k.ids.len() as u64).sum::<u64>();
    }
    Ok(got as f64 / start.elapsed().as_secs_f64())
}

async fn jetstream(addr: &str, run: usize, prefix: &str) -> anyhow::Result<(async_nats::jetstream::Context, String)> {
    let client = async_nats::connect(addr).await?;
    let js = async_nats::jetstream::new(client);
    let name = format!("{prefix}{run}");
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![name.clone()],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    Ok((js, name))
}

async fn publish_all(js: &async_nats::jetstream::Context, subject: &str, args: &BenchArgs) -> anyhow::Result<()> {
    let mut acks = VecDeque::new();
    // async-nats lets 5,000 publishes await acks before `publish` itself waits (its default
    // backpressure); a larger window would wait on acks nobody collects.
    let window = (IN_FLIGHT * args.batch).min(4_096);
    for i in 0..args.count {
        acks.push_back(js.publish(subject.to_string(), message(i, args.size).into()).await?);
        if acks.len() >= window {
            acks.pop_front().expect("non-empty").await?;
        }
    }
    for a in acks {
        a.await?;
    }
    Ok(())
}

/// Async publish with a window of unacknowledged publishes.
async fn jetstream_publish(addr: &str, args: &BenchArgs, run: usize) -> anyhow::Result<f64> {
    let (js, subject) = jetstream(addr, run, "PUB").await?;
    let start = Instant::now();
    publish_all(&js, &subject, args).await?;
    Ok(args.count as f64 / start.elapsed().as_secs_f64())
}

/// A pull consumer (no acks) reading `--batch` messages per pull.
async fn jetstream_consume(addr: &str, args: &BenchArgs, run: usize) -> anyhow::Result<f64> {
    use async_nats::jetstream::consumer::{AckPolicy, pull};
    let (js, subject) = jetstream(addr, run, "CON").await?;
    publish_all(&js, &subject, args).await?;
    let stream = js.get_stream(&subject).await?;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("bench".into()),
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await?;
    let start = Instant::now();
    let mut messages = consumer.stream().max_messages_per_batch(args.batch).messages().await?;
    let mut got = 0u64;
    while got < args.count {
        match messages.next().await {
            Some(m) => {
                m.map_err(|e| anyhow::anyhow!("{e}"))?;
                got += 1;
            }
            None => bail!("the JetStream consumer ended after {got} messages"),
        }
    }
    Ok(got as f64 / start.elapsed().as_secs_f64())
}
