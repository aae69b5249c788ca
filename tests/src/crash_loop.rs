//! The crash loop: mixed load against a real `weir serve`, killed with SIGKILL at a random
//! moment each cycle, restarted, and checked for what weir promises.
//!
//! Load per cycle: producers appending with acks (each owns a partition, so order is known),
//! a consumer-group member committing, a two-step wasm pipeline (dedup → transform, keeping
//! state), a queue producer and two queue workers acking. After each restart:
//! * every acknowledged produce is present exactly once, in order within its partition;
//! * committed group offsets never went backwards;
//! * the pipeline's outputs are exactly once per input, and its dedup state has one entry
//!   per output;
//! * (at the end) every acknowledged queue message was delivered or dead-lettered.
//!
//! With `soak`, the same load runs without kills and throughput and the server's RSS are
//! reported over time.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use weir_client::client::Client;
use weir_client::consumer::GroupConsumer;
use weir_client::wire::WireRecord;
use weir_client::wire::{NewQueueMessage, QueueConfig};

use crate::{Server, eventually, pipeline, plugin_bytes, step, topic};

/// How a crash loop runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Kill/restart cycles.
    pub cycles: u32,
    /// Seed of the kill timing.
    pub seed: u64,
    /// `sync` or `os`.
    pub durability: String,
    /// Messages per produce request.
    pub batch: usize,
    /// Shortest and longest time load runs before the kill, ms.
    pub run_ms: (u64, u64),
    /// Run without kills for this long instead, reporting throughput and memory.
    pub soak: Option<Duration>,
    /// Serve the data directory from a `lossyfs` mount and lose power at each kill: what was
    /// not fsynced is gone. In `os` durability acknowledged writes may then be lost: they are
    /// measured (the loss window), not counted as broken promises.
    pub power_loss: bool,
    /// With `power_loss`, tear each file's last unsynced append at a sector boundary.
    pub tear: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cycles: 5,
            seed: 1,
            durability: "sync".into(),
            batch: 200,
            run_ms: (300, 1500),
            soak: None,
            power_loss: false,
            tear: false,
        }
    }
}

/// What a crash loop found.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Cycles run.
    pub cycles: u32,
    /// Acknowledged produces and queue sends.
    pub acked: u64,
    /// Acknowledged messages or pipeline outputs missing.
    pub lost: u64,
    /// Messages or outputs present more than once.
    pub duplicated: u64,
    /// Other broken promises (offsets going backwards, state out of step), described.
    pub violations: Vec<String>,
    /// Power losses: how many, and the bytes written but not fsynced they dropped.
    pub power_losses: u32,
    /// Bytes the power losses dropped (written, never fsynced).
    pub bytes_dropped: u64,
    /// `os` durability with power loss: the most acknowledged produces and queue sends one
    /// power loss took, and in all.
    pub loss_window: u64,
    /// All acknowledged writes power losses took (`os` durability).
    pub lost_to_power: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cycles {}, acked {}, lost {}, duplicated {}", self.cycles, self.acked, self.lost, self.duplicated)?;
        if self.power_losses > 0 {
            write!(
                f,
                ", power losses {} ({} unsynced bytes dropped), acknowledged writes lost to power {} (at most {} in one)",
                self.power_losses, self.bytes_dropped, self.lost_to_power, self.loss_window
            )?;
        }
        Ok(())
    }
}

impl Summary {
    /// Whether every promise held.
    pub fn ok(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.violations.is_empty()
    }
}

const PRODUCERS: u32 = 2;
const EVENTS: &str = "events";
const PROCESSED: &str = "processed";
const JOBS: &str = "jobs";
const GROUP: &str = "auditors";

/// What the load recorded as acknowledged, across cycles.
#[derive(Default)]
struct Ledger {
    /// Acknowledged event ids per producer, in order.
    events: BTreeMap<u32, Vec<u64>>,
    /// Per partition, the highest offset a commit was acknowledged for.
    committed: BTreeMap<u32, u64>,
    /// Acknowledged queue sends.
    jobs_sent: BTreeSet<u64>,
    /// Queue messages received by workers.
    jobs_seen: BTreeSet<u64>,
    /// Next ids.
    next_event: BTreeMap<u32, u64>,
    next_job: u64,
}

/// Print a run's summary and broken promises; the exit code says whether all held.
pub fn report(run: Result<Summary>) -> std::process::ExitCode {
    match run {
        Ok(summary) => {
            println!("{summary}");
            for v in &summary.violations {
                println!("violation: {v}");
            }
            if summary.ok() { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Run the crash loop.
pub async fn run(config: &Config) -> Result<Summary> {
    let disk = if config.power_loss { Some(crate::PowerDisk::mount()?) } else { None };
    let mut server = Server::launch(crate::Launch {
        flags: vec!["--durability".into(), config.durability.clone()],
        data_dir: disk.as_ref().map(crate::PowerDisk::data_dir),
        ..crate::Launch::default()
    })?;
    setup(&server.client().await?).await?;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut summary = Summary::default();
    if let Some(d) = config.soak {
        return soak(&server, config, ledger, d).await;
    }
    for cycle in 1..=config.cycles {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = spawn_load(&server, config, &ledger, &stop).await?;
        tokio::time::sleep(Duration::from_millis(rng.random_range(config.run_ms.0..=config.run_ms.1))).await;
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        if let Some(disk) = &disk {
            let report = disk.lose_power(config.tear.then(|| rng.random()))?;
            summary.power_losses += 1;
            summary.bytes_dropped += report["bytes_dropped"].as_u64().unwrap_or(0);
        }
        server.restart()?;
        let client = server.client().await?;
        if config.power_loss && config.durability == "os" {
            forget_lost_to_power(&client, &ledger, &mut summary).await?;
        }
        verify(&client, &ledger, &mut summary).await?;
        summary.cycles = cycle;
        summary.acked = acked(&ledger);
        eprintln!("cycle {cycle}: {summary}");
    }
    let before = summary.lost;
    drain_jobs(&server.client().await?, &ledger, &mut summary).await?;
    if config.power_loss && config.durability == "os" {
        // Queue sends the OS had not written out when the power went: measured, as above.
        summary.lost_to_power += summary.lost - before;
        summary.lost = before;
    }
    summary.acked = acked(&ledger);
    Ok(summary)
}

/// `os` durability and power loss: acknowledged writes the OS had not written out are gone,
/// as the durability table says. Count them (the loss window), then hold the server to what
/// survived: the ledger forgets them, and group offsets may start lower.
async fn forget_lost_to_power(c: &Client, ledger: &Arc<Mutex<Ledger>>, s: &mut Summary) -> Result<()> {
    let present: HashSet<(u32, u64)> =
        c.read_all(EVENTS).await?.iter().filter_map(|(_, _, r)| parse_event(&r.value)).collect();
    let now = c.fetch_offsets(GROUP, EVENTS).await?;
    let mut l = ledger.lock().expect("ledger");
    let mut lost = 0u64;
    for (p, seqs) in l.events.iter_mut() {
        let before = seqs.len();
        seqs.retain(|q| present.contains(&(*p, *q)));
        lost += (before - seqs.len()) as u64;
    }
    for (p, floor) in l.committed.iter_mut() {
        *floor = (*floor).min(now.get(*p as usize).copied().flatten().unwrap_or(0));
    }
    s.lost_to_power += lost;
    s.loss_window = s.loss_window.max(lost);
    Ok(())
}

/// Acknowledged produces and queue sends so far.
fn acked(ledger: &Mutex<Ledger>) -> u64 {
    let l = ledger.lock().expect("ledger");
    l.events.values().map(|v| v.len() as u64).sum::<u64>() + l.jobs_sent.len() as u64
}

async fn setup(c: &Client) -> Result<()> {
    c.create_topic(EVENTS, topic(PRODUCERS)).await?;
    c.create_topic(PROCESSED, topic(2)).await?;
    c.deploy_plugin("dedup", plugin_bytes("dedup")).await?;
    c.deploy_plugin("stamp", plugin_bytes("json-transform")).await?;
    let steps = vec![step("dedup", &[("by", "key"), ("window", "1d")]), step("stamp", &[("set.seen", "true")])];
    c.create_pipeline(pipeline("chain", EVENTS, PROCESSED, steps)).await?;
    c.create_queue(
        JOBS,
        QueueConfig {
            visibility_timeout_ms: 500,
            max_deliveries: Some(50),
            dead_letter: Some("jobs-dlq".into()),
            ..QueueConfig::default()
        },
    )
    .await?;
    Ok(())
}

fn event(producer: u32, seq: u64) -> WireRecord {
    let id = format!("{producer}-{seq}");
    let value = format!(r#"{{"producer":{producer},"seq":{seq}}}"#);
    WireRecord::keyed(id, value)
}

fn parse_event(value: &[u8]) -> Option<(u32, u64)> {
    let v: serde_json::Value = serde_json::from_slice(value).ok()?;
    Some((v["producer"].as_u64()? as u32, v["seq"].as_u64()?))
}

/// The id a queue job carries as its body.
fn job_id(d: &weir_client::wire::Delivery) -> Option<u64> {
    std::str::from_utf8(&d.body).ok()?.parse().ok()
}

/// Start every load task; they stop when `stop` is set or the server goes away.
async fn spawn_load(
    server: &Server,
    config: &Config,
    ledger: &Arc<Mutex<Ledger>>,
    stop: &Arc<AtomicBool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut tasks = Vec::new();
    for p in 0..PRODUCERS {
        let (client, ledger, stop, batch) = (server.client().await?, ledger.clone(), stop.clone(), config.batch);
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // The ids are reserved whether or not the produce is acknowledged, so an
                // unacknowledged batch that did land is never confused with a later one.
                let from = {
                    let mut l = ledger.lock().expect("ledger");
                    let next = l.next_event.entry(p).or_insert(0);
                    std::mem::replace(next, *next + batch as u64)
                };
                let records = (from..from + batch as u64).map(|s| event(p, s)).collect();
                match client.start_produce(EVENTS, Some(p), records).map(|pending| pending.wait()) {
                    Ok(wait) => match wait.await {
                        Ok(_) => ledger
                            .lock()
                            .expect("ledger")
                            .events
                            .entry(p)
                            .or_default()
                            .extend(from..from + batch as u64),
                        Err(_) => return,
                    },
                    Err(_) => return,
                }
            }
        }));
    }
    let (client, ledger_c, stop_c) = (server.client().await?, ledger.clone(), stop.clone());
    tasks.push(tokio::spawn(async move {
        let Ok(mut member) = GroupConsumer::join(&client, GROUP, EVENTS, Duration::from_secs(10)).await else { return };
        while !stop_c.load(Ordering::Relaxed) {
            if member.poll(500, Duration::from_millis(50)).await.is_err() {
                return;
            }
            let positions = member.positions().clone();
            if member.commit().await.is_ok() {
                let mut l = ledger_c.lock().expect("ledger");
                for (p, o) in positions {
                    let floor = l.committed.entry(p).or_insert(0);
                    *floor = (*floor).max(o);
                }
            }
        }
    }));
    let (client, ledger_c, stop_c) = (server.client().await?, ledger.clone(), stop.clone());
    tasks.push(tokio::spawn(async move {
        while !stop_c.load(Ordering::Relaxed) {
            let from = {
                let mut l = ledger_c.lock().expect("ledger");
                l.next_job += 50;
                l.next_job - 50
            };
            let msgs = (from..from + 50)
                .map(|j| NewQueueMessage { body: j.to_string().into_bytes(), ..Default::default() })
                .collect();
            match client.queue_send(JOBS, msgs).await {
                Ok(_) => ledger_c.lock().expect("ledger").jobs_sent.extend(from..from + 50),
                Err(_) => return,
            }
        }
    }));
    for _ in 0..2 {
        let (client, ledger_c, stop_c) = (server.client().await?, ledger.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop_c.load(Ordering::Relaxed) {
                let Ok(got) = client.queue_receive(JOBS, 50, Duration::from_millis(100)).await else { return };
                ledger_c.lock().expect("ledger").jobs_seen.extend(got.iter().filter_map(job_id));
                if client.queue_ack(JOBS, got.iter().map(|d| d.receipt.clone()).collect()).await.is_err() {
                    return;
                }
            }
        }));
    }
    Ok(tasks)
}

/// Check every promise against the restarted server.
async fn verify(c: &Client, ledger: &Arc<Mutex<Ledger>>, s: &mut Summary) -> Result<()> {
    let events = c.read_all(EVENTS).await?;
    let mut count: HashMap<(u32, u64), u32> = HashMap::new();
    let mut last: BTreeMap<u32, u64> = BTreeMap::new();
    for (partition, offset, r) in &events {
        let Some((p, seq)) = parse_event(&r.value) else { bail!("undecodable event at {partition}/{offset}") };
        *count.entry((p, seq)).or_default() += 1;
        if let Some(prev) = last.insert(*partition, seq)
            && seq <= prev
        {
            s.violations.push(format!("partition {partition} out of order at offset {offset}: {prev} then {seq}"));
        }
    }
    let (acked, floors) = {
        let l = ledger.lock().expect("ledger");
        (l.events.clone(), l.committed.clone())
    };
    let lost: u64 = acked
        .iter()
        .flat_map(|(p, seqs)| seqs.iter().map(move |q| (*p, *q)))
        .filter(|k| !count.contains_key(k))
        .count() as u64;
    let dup: u64 = count.values().filter(|n| **n > 1).map(|n| u64::from(n - 1)).sum();
    // Committed offsets never go backwards.
    let now = c.fetch_offsets(GROUP, EVENTS).await?;
    for (p, floor) in floors {
        let got = now[p as usize].unwrap_or(0);
        if got < floor {
            s.violations.push(format!("group offset of partition {p} went back from {floor} to {got}"));
        }
    }
    // The pipeline catches up with exactly one output per event, and one state entry each.
    eventually("the pipeline to catch up", Duration::from_secs(120), || async {
        Ok((c.pipeline_status("chain").await?.lag() == 0).then_some(()))
    })
    .await?;
    let outputs = c.read_all(PROCESSED).await?;
    let mut seen: HashSet<(u32, u64)> = HashSet::new();
    let mut out_dup = 0;
    for (_, _, r) in &outputs {
        if let Some(k) = parse_event(&r.value)
            && !seen.insert(k)
        {
            out_dup += 1;
        }
    }
    let out_lost = count.keys().filter(|k| !seen.contains(k)).count() as u64;
    s.lost = s.lost.max(lost + out_lost);
    s.duplicated = s.duplicated.max(dup + out_dup);
    let state = c.state_list("chain", 1, b"seen:", weir_host::pipeline::STATE_LIST_MAX).await?.len();
    if state != outputs.len() && outputs.len() < weir_host::pipeline::STATE_LIST_MAX {
        s.violations.push(format!("dedup state holds {state} keys for {} outputs", outputs.len()));
    }
    Ok(())
}

/// Every acknowledged produce is stored exactly once and in order, read a page at a time:
/// each producer owns a partition, so its sequence numbers must rise strictly there, and a
/// merge with the acknowledged ones (also rising) finds what is missing.
async fn verify_events_streaming(c: &Client, ledger: &Arc<Mutex<Ledger>>, s: &mut Summary) -> Result<()> {
    let info = c.describe_topic(EVENTS).await?;
    for (p, (start, end)) in info.partitions.iter().enumerate() {
        let partition = p as u32;
        let acked = ledger.lock().expect("ledger").events.get(&partition).cloned().unwrap_or_default();
        let (mut next_acked, mut prev, mut offset) = (0usize, None::<u64>, *start);
        while offset < *end {
            let pos = vec![weir_client::wire::FetchPosition { partition, offset }];
            let page = c.fetch(EVENTS, pos, 50_000, Duration::ZERO).await?;
            let Some(page) = page.into_iter().next().filter(|p| !p.records.is_empty()) else { break };
            for (i, r) in page.records.iter().enumerate() {
                let at = page.first_offset + i as u64;
                let Some((producer, seq)) = parse_event(&r.value) else {
                    bail!("undecodable event at {partition}/{at}")
                };
                if producer != partition {
                    s.violations.push(format!("an event of producer {producer} in partition {partition} at {at}"));
                }
                match prev {
                    Some(q) if seq == q => s.duplicated += 1,
                    Some(q) if seq < q => s.violations.push(format!("partition {partition} out of order at {at}")),
                    _ => {}
                }
                prev = Some(seq);
                // Acknowledged events below this one that were never seen are lost.
                while next_acked < acked.len() && acked[next_acked] < seq {
                    s.lost += 1;
                    next_acked += 1;
                }
                if next_acked < acked.len() && acked[next_acked] == seq {
                    next_acked += 1;
                }
            }
            offset = page.first_offset + page.records.len() as u64;
        }
        s.lost += (acked.len() - next_acked) as u64;
    }
    Ok(())
}

/// Receive what is left in the queue; every acknowledged send must have been delivered or
/// dead-lettered.
async fn drain_jobs(c: &Client, ledger: &Arc<Mutex<Ledger>>, s: &mut Summary) -> Result<()> {
    let mut seen = ledger.lock().expect("ledger").jobs_seen.clone();
    for q in [JOBS, "jobs-dlq"] {
        loop {
            let got = c.queue_receive(q, 1000, Duration::from_millis(600)).await?;
            if got.is_empty() {
                break;
            }
            seen.extend(got.iter().filter_map(job_id));
            c.queue_ack(q, got.iter().map(|d| d.receipt.clone()).collect()).await?;
        }
    }
    let sent = ledger.lock().expect("ledger").jobs_sent.clone();
    s.lost += sent.difference(&seen).count() as u64;
    Ok(())
}

/// The load without kills, reporting throughput and the server's RSS every 10 s.
async fn soak(server: &Server, config: &Config, ledger: Arc<Mutex<Ledger>>, duration: Duration) -> Result<Summary> {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = spawn_load(server, config, &ledger, &stop).await?;
    let start = Instant::now();
    let mut samples = Vec::new();
    let mut last = 0u64;
    while start.elapsed() < duration {
        tokio::time::sleep(Duration::from_secs(10).min(duration)).await;
        let acked: u64 = ledger.lock().expect("ledger").events.values().map(|v| v.len() as u64).sum();
        let rss = server.rss_kib().unwrap_or(0);
        eprintln!(
            "soak {:>4}s: {:>8.0} events/s acked, server RSS {} MiB",
            start.elapsed().as_secs(),
            (acked - last) as f64 / 10.0,
            rss / 1024
        );
        samples.push(rss);
        last = acked;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let mut summary = Summary::default();
    let client = server.client().await?;
    // Tens of millions of events: check the produces page by page rather than holding them
    // (the cycles check the pipeline and the queue too, with less data).
    verify_events_streaming(&client, &ledger, &mut summary).await?;
    // Memory is flat if the last third's peak is within 20% of the middle third's.
    let third = samples.len() / 3;
    if third > 0 {
        let mid = samples[third..2 * third].iter().max().copied().unwrap_or(0);
        let end = samples[2 * third..].iter().max().copied().unwrap_or(0);
        if end > mid + mid / 5 {
            summary.violations.push(format!("server RSS grew from {} MiB to {} MiB", mid / 1024, end / 1024));
        }
    }
    summary.acked = last;
    Ok(summary)
}
