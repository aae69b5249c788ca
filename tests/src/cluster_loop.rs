//! The cluster crash loop: two weir nodes over a 3-node JetStream cluster run a stateful
//! pipeline (`dedup` by key, traced so each output names the plugin version that made it)
//! while each cycle injects one fault, in turn:
//!
//! 1. kill -9 the JetStream leader of a source partition's stream, and restart it;
//! 2. deploy a new plugin version, then kill -9 the weir node owning most partitions, and
//!    restart it;
//! 3. SIGSTOP a weir node past its lease, let the other take its partitions, then SIGCONT it
//!    (a stale commit it attempts is refused: counted from `weir cluster status`);
//! 4. a work queue served through both nodes — sends, receives, acks — while the node
//!    coordinating the queues is killed -9 and restarted: every acknowledged send is
//!    delivered, and no message is delivered again once its ack was acknowledged;
//! 5. a shadow of the pipeline's plugin deployed through one node, the busiest node killed
//!    -9 and restarted, then the shadow compared (every outcome the same) and promoted
//!    through the other node.
//!
//! Load is produced before, during and after each fault. After each cycle, once the pipeline
//! has caught up, it checks:
//! * every acknowledged produce is in the source once, at the offset it was acknowledged with
//!   (so in order); unacknowledged ones at most once;
//! * the sink holds exactly the recomputed dedup of the source: the first record of each key
//!   per partition, each once (a lost state or a landed zombie commit would double one);
//! * the pipeline's committed offsets never went back;
//! * each source partition's outputs were made by plugin versions that only move forward.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use weir_client::client::Client;
use weir_client::wire::{FetchPosition, NewQueueMessage, QueueConfig, WireRecord};

use crate::nats::NatsCluster;
use crate::{Server, eventually, pipeline, plugin_bytes, step, topic};

const PARTITIONS: u32 = 4;
const LONG: Duration = Duration::from_secs(180);
const NODES: [&str; 2] = ["w1", "w2"];

/// How a cluster crash loop runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Cycles (faults rotate through the three kinds).
    pub cycles: u32,
    /// Seed of the load and fault choices.
    pub seed: u64,
    /// Records produced per burst.
    pub burst: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config { cycles: 5, seed: 1, burst: 300 }
    }
}

/// What a cluster crash loop found.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Cycles run.
    pub cycles: u32,
    /// Acknowledged produces.
    pub acked: u64,
    /// Acknowledged produces missing from the source.
    pub lost: u64,
    /// Records (source) or outputs (sink) present more than once.
    pub duplicated: u64,
    /// Outputs that should not exist (a zombie's commit that landed, or lost state).
    pub unexpected: u64,
    /// Commits refused by their fence, over all nodes.
    pub fenced: u64,
    /// Pause cycles run.
    pub pauses: u64,
    /// Offsets that went back, versions that went back.
    pub regressions: u64,
    /// Longest time from a kill -9 of a weir node to the pipeline's next commit, ms.
    pub failover_ms: u64,
    /// Queue messages sent and acknowledged.
    pub queue_sent: u64,
    /// Of those, never delivered.
    pub queue_lost: u64,
    /// Messages delivered again after their ack was acknowledged.
    pub queue_acked_twice: u64,
    /// Shadow comparisons that differed (the shadow is the live version's bytes).
    pub shadow_differed: u64,
    /// What broke, in words.
    pub violations: Vec<String>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cycles {}, acked {}, lost {}, duplicated {}, unexpected {}, zombie commits refused {} (in {} pauses), \
             regressions {}, slowest failover {} ms; queue: sent {}, lost {}, acked twice {}; shadow differed {}",
            self.cycles,
            self.acked,
            self.lost,
            self.duplicated,
            self.unexpected,
            self.fenced,
            self.pauses,
            self.regressions,
            self.failover_ms,
            self.queue_sent,
            self.queue_lost,
            self.queue_acked_twice,
            self.shadow_differed
        )
    }
}

struct Loop {
    nats: NatsCluster,
    nodes: Vec<Server>,
    rng: StdRng,
    next_id: u64,
    /// id → (partition, offset) of acknowledged records.
    acked: HashMap<u64, (u32, u64)>,
    /// Committed offsets seen so far per partition.
    committed: Vec<u64>,
    /// The node now paused (SIGSTOP): requests to it would hang.
    paused: Option<usize>,
    /// Queue message ids sent so far.
    next_job: u64,
    summary: Summary,
}

/// The kinds of fault, in the order the cycles take them.
const FAULTS: [&str; 5] = [
    "kill -9 a stream leader",
    "kill -9 the busiest node during a deploy",
    "pause a node past its lease",
    "kill -9 the queues' coordinator under a work queue",
    "kill -9 the busiest node with a shadow deployed, then promote it",
];

/// Run the loop: set up, cycle, check after each cycle.
pub async fn run(config: &Config) -> Result<Summary> {
    let nats = NatsCluster::start(3)?;
    let nodes = NODES.iter().map(|n| Server::cluster_node(&nats, n)).collect::<Result<Vec<_>>>()?;
    let mut l = Loop {
        nats,
        nodes,
        rng: StdRng::seed_from_u64(config.seed),
        next_id: 0,
        acked: HashMap::new(),
        committed: vec![0; PARTITIONS as usize],
        paused: None,
        next_job: 0,
        summary: Summary::default(),
    };
    let c = l.nodes[0].client().await?;
    c.deploy_plugin("dedup", plugin_bytes("dedup")).await.context("deploying dedup")?;
    c.create_topic("orders", topic(PARTITIONS)).await?;
    c.create_topic("firsts", topic(PARTITIONS)).await?;
    c.create_pipeline(pipeline("dedup", "orders", "firsts", vec![step("dedup", &[("by", "key")])])).await?;
    c.create_queue("jobs", QueueConfig { visibility_timeout_ms: 2_000, ..QueueConfig::default() }).await?;
    for n in 1..l.nodes.len() {
        let other = l.nodes[n].client().await?;
        eventually("the pipeline to reach every node", LONG, || async {
            Ok(other.pipeline_status("dedup").await.ok().map(|_| ()))
        })
        .await?;
    }
    for cycle in 0..config.cycles {
        l.burst(config.burst).await?;
        let kind = cycle as usize % FAULTS.len();
        eprintln!("cluster crash loop: cycle {}: {}", cycle + 1, FAULTS[kind]);
        match kind {
            0 => l.kill_stream_leader(config.burst).await?,
            1 => l.kill_owner_during_deploy(config.burst).await?,
            2 => l.pause_past_lease(config.burst).await?,
            3 => l.kill_coordinator_under_queue_work(config.burst).await?,
            _ => l.shadow_through_a_kill(config.burst).await?,
        }
        l.burst(config.burst).await?;
        if let Err(e) = l.check().await {
            for (n, node) in l.nodes.iter().enumerate() {
                let log = node.log();
                let tail: Vec<&str> = log.lines().rev().take(25).collect();
                eprintln!("--- {} log (last lines) ---", NODES[n]);
                tail.into_iter().rev().for_each(|line| eprintln!("{line}"));
            }
            return Err(e.context(format!("checking after cycle {}", cycle + 1)));
        }
        l.summary.acked = l.acked.len() as u64;
        eprintln!("cluster crash loop: cycle {} checked: {}", cycle + 1, l.summary);
        for v in l.summary.violations.iter().take(5) {
            eprintln!("  violation: {v}");
        }
        l.summary.cycles = cycle + 1;
    }
    l.summary.acked = l.acked.len() as u64;
    Ok(l.summary)
}

/// A record with idempotency key = message key: every fourth repeats the previous id's key.
fn record(id: u64) -> WireRecord {
    let k = if id % 4 == 3 { id - 1 } else { id };
    let mut r = WireRecord::value(format!(r#"{{"id":{id}}}"#));
    r.key = Some(serde_bytes::ByteBuf::from(format!("k{k}").into_bytes()));
    // Traced, so each output's `weir-trace` names the plugin version that made it.
    r.headers.push(("traceparent".into(), format!("00-{:032x}-{:016x}-01", id + 1, id + 1)));
    r
}

impl Loop {
    /// Produce `n` records in batches of 50, each through a node picked at random (not a
    /// paused one); an error leaves a batch unacknowledged (it may or may not be stored) and
    /// it is not sent again, so any record stored twice would be weir's doing.
    async fn burst(&mut self, n: u64) -> Result<()> {
        let end = self.next_id + n;
        while self.next_id < end {
            let ids: Vec<u64> = (self.next_id..(self.next_id + 50).min(end)).collect();
            self.next_id += ids.len() as u64;
            self.produce(ids).await;
        }
        Ok(())
    }

    async fn produce(&mut self, ids: Vec<u64>) {
        let start = self.rng.random_range(0..self.nodes.len());
        // A node that refuses the connection (killed) got nothing: the other may take it.
        let mut client = None;
        for i in 0..self.nodes.len() {
            let n = (start + i) % self.nodes.len();
            if self.paused == Some(n) {
                continue;
            }
            if let Ok(c) = self.nodes[n].client().await {
                client = Some(c);
                break;
            }
        }
        let Some(client) = client else { return };
        if let Ok(positions) = client.produce("orders", ids.iter().map(|i| record(*i)).collect()).await {
            for (id, pos) in ids.iter().zip(positions) {
                self.acked.insert(*id, pos);
            }
        }
    }

    /// The node that coordinates the queues now.
    fn coordinator(&self) -> usize {
        let node = weir_host::cluster::owner_of(NODES.iter().copied(), weir_host::cluster::COORDINATOR, 0);
        NODES.iter().position(|n| Some(*n) == node).expect("a coordinator among the nodes")
    }

    /// A client of a node picked at random that answers (the first that does).
    async fn any_client(&mut self) -> Option<Client> {
        let start = self.rng.random_range(0..self.nodes.len());
        for i in 0..self.nodes.len() {
            let n = (start + i) % self.nodes.len();
            if self.paused != Some(n)
                && let Ok(c) = self.nodes[n].client().await
            {
                return Some(c);
            }
        }
        None
    }

    /// Send `n` jobs through random nodes, then work the queue through random nodes —
    /// receive, ack — while the coordinator is killed -9 half way and restarted; then drain.
    async fn kill_coordinator_under_queue_work(&mut self, burst: u64) -> Result<()> {
        let n = burst.max(50);
        let mut sent: std::collections::BTreeSet<u64> = std::collections::BTreeSet::new();
        let mut acked: std::collections::BTreeSet<u64> = std::collections::BTreeSet::new();
        let send = |ids: std::ops::Range<u64>| {
            ids.map(|i| NewQueueMessage { body: format!("job {i}").into_bytes(), ..Default::default() }).collect()
        };
        for chunk in (self.next_job..self.next_job + n).collect::<Vec<_>>().chunks(25) {
            let Some(c) = self.any_client().await else { continue };
            if c.queue_send("jobs", send(chunk[0]..chunk[chunk.len() - 1] + 1)).await.is_ok() {
                sent.extend(chunk);
            }
        }
        self.next_job += n;
        let victim = self.coordinator();
        let deadline = std::time::Instant::now() + LONG;
        let mut killed = false;
        while acked.len() < sent.len() && std::time::Instant::now() < deadline {
            if !killed && acked.len() >= sent.len() / 3 {
                self.nodes[victim].kill9();
                self.burst(burst / 4).await?;
                self.nodes[victim].restart()?;
                killed = true;
            }
            let Some(c) = self.any_client().await else { continue };
            let Ok(got) = c.queue_receive("jobs", 20, Duration::from_millis(200)).await else { continue };
            for d in got {
                let id: u64 = String::from_utf8_lossy(&d.body).trim_start_matches("job ").parse()?;
                if acked.contains(&id) {
                    self.summary.queue_acked_twice += 1;
                    self.summary.violations.push(format!("job {id} delivered again after its ack was acknowledged"));
                }
                if c.queue_ack("jobs", vec![d.receipt]).await.is_ok() {
                    acked.insert(id);
                }
            }
        }
        let lost = sent.difference(&acked).count() as u64;
        if lost > 0 {
            self.summary.violations.push(format!("{lost} acknowledged jobs never delivered"));
        }
        self.summary.queue_sent += sent.len() as u64;
        self.summary.queue_lost += lost;
        Ok(())
    }

    /// Deploy a shadow (the live version's own bytes: every outcome must match), kill -9 the
    /// node owning most partitions under load and restart it, then compare and promote
    /// through the other node.
    async fn shadow_through_a_kill(&mut self, burst: u64) -> Result<()> {
        let owned = |n: &str| {
            (0..PARTITIONS)
                .filter(|p| weir_host::cluster::owner_of(NODES.iter().copied(), "dedup", *p) == Some(n))
                .count()
        };
        let victim = if owned(NODES[0]) >= owned(NODES[1]) { 0 } else { 1 };
        let other = self.nodes[1 - victim].client().await?;
        let shadow =
            other.deploy_plugin_with("dedup", plugin_bytes("dedup"), None, true).await.context("deploying a shadow")?;
        self.burst(burst / 2).await?;
        self.nodes[victim].kill9();
        self.burst(burst / 4).await?;
        self.nodes[victim].restart()?;
        self.burst(burst / 4).await?;
        let diff = eventually("the shadow to compare outcomes", LONG, || async {
            let d = other.plugin_diff("dedup").await?;
            Ok((d.matched > 0).then_some(d))
        })
        .await?;
        if diff.differed > 0 || diff.shadow_failures > 0 {
            self.summary.shadow_differed += diff.differed + diff.shadow_failures;
            self.summary.violations.push(format!(
                "an identical shadow differed on {} inputs ({} failures): {:?}",
                diff.differed,
                diff.shadow_failures,
                diff.samples.first()
            ));
        }
        let promoted = other.promote_plugin("dedup").await.context("promoting the shadow")?;
        if promoted.version != shadow.version {
            self.summary.violations.push(format!("promoted {} instead of {}", promoted.version, shadow.version));
        }
        Ok(())
    }

    async fn kill_stream_leader(&mut self, burst: u64) -> Result<()> {
        let p = self.rng.random_range(0..PARTITIONS);
        let stream = format!("WEIR-T-orders-{p}");
        let leader = eventually("a stream leader", LONG, || async { Ok(self.nats.stream_leader(&stream)?) }).await?;
        self.nats.kill9(leader);
        self.burst(burst / 2).await?;
        self.nats.restart(leader)?;
        Ok(())
    }

    async fn kill_owner_during_deploy(&mut self, burst: u64) -> Result<()> {
        let live: Vec<&str> = NODES.to_vec();
        let owned = |n: &str| {
            (0..PARTITIONS)
                .filter(|p| weir_host::cluster::owner_of(live.iter().copied(), "dedup", *p) == Some(n))
                .count()
        };
        let victim = if owned(NODES[0]) >= owned(NODES[1]) { 0 } else { 1 };
        let deployer = self.nodes[1 - victim].client().await?;
        deployer.deploy_plugin("dedup", plugin_bytes("dedup")).await.context("deploying a new version")?;
        self.burst(burst / 2).await?;
        let victim_owned: Vec<u32> = (0..PARTITIONS)
            .filter(|p| weir_host::cluster::owner_of(live.iter().copied(), "dedup", *p) == Some(NODES[victim]))
            .collect();
        let status = self.nodes[1 - victim].client().await?.cluster_status().await?;
        let at_kill: HashMap<u32, Option<u64>> = status.partitions.iter().map(|p| (p.partition, p.committed)).collect();
        let killed = std::time::Instant::now();
        self.nodes[victim].kill9();
        // Failover: kill -9 to the survivor's first commit of a partition the victim owned
        // (it must first see the victim's lease run out).
        let survivor = self.nodes[1 - victim].client().await?;
        self.burst(burst / 4).await?;
        eventually("the survivor's first commit of the victim's partitions", LONG, || async {
            let Ok(s) = survivor.cluster_status().await else { return Ok(None) };
            let took = s.partitions.iter().any(|p| {
                victim_owned.contains(&p.partition)
                    && p.committed_by.as_deref() == Some(NODES[1 - victim])
                    && p.committed > at_kill.get(&p.partition).copied().flatten()
            });
            Ok(took.then_some(()))
        })
        .await?;
        self.summary.failover_ms = self.summary.failover_ms.max(killed.elapsed().as_millis() as u64);
        self.nodes[victim].restart()?;
        Ok(())
    }

    async fn pause_past_lease(&mut self, burst: u64) -> Result<()> {
        // A node owning partitions (one owning none has no commit to make stale).
        let owners: Vec<usize> = (0..self.nodes.len())
            .filter(|n| {
                (0..PARTITIONS)
                    .any(|p| weir_host::cluster::owner_of(NODES.iter().copied(), "dedup", p) == Some(NODES[*n]))
            })
            .collect();
        let victim = owners[self.rng.random_range(0..owners.len())];
        let before = self.nodes[victim].client().await?.cluster_status().await?.fenced_commits;
        self.nodes[victim].pause(true)?;
        self.paused = Some(victim);
        // Past the 2 s lease (a wall-clock pause is the fault itself, not a wait for a
        // condition): the other node then owns everything and processes this burst.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        self.burst(burst / 2).await?;
        let other = self.nodes[1 - victim].client().await?;
        eventually("the other node to take every partition over", LONG, || async {
            let s = other.pipeline_status("dedup").await.ok();
            Ok(s.filter(|s| s.partitions.iter().all(|(_, c, hw)| c == hw)).map(|_| ()))
        })
        .await?;
        self.nodes[victim].pause(false)?;
        self.paused = None;
        // The zombie's workers wake with batches from before: their commits carry old fences.
        let zombie = self.nodes[victim].client().await?;
        let refused = eventually("the zombie's stale commit to be refused", Duration::from_secs(10), || async {
            let s = zombie.cluster_status().await?;
            Ok((s.fenced_commits > before).then_some(s.fenced_commits - before))
        })
        .await;
        self.summary.pauses += 1;
        // Whether the zombie had a batch to commit depends on where its workers were when it
        // stopped; what must never happen (a stale commit landing) the checks catch anyway.
        if let Ok(n) = refused {
            self.summary.fenced += n;
        }
        Ok(())
    }

    /// Wait for the pipeline to catch up, then check every promise.
    async fn check(&mut self) -> Result<()> {
        let client = self.nodes[0].client().await?;
        // A status may fail while JetStream elects a leader: that is "not yet".
        let caught_up = eventually("the pipeline to catch up", LONG, || async {
            let s = client.pipeline_status("dedup").await.ok();
            Ok(s.filter(|s| s.partitions.iter().all(|(_, c, hw)| c == hw)))
        })
        .await?;
        for (p, c, _) in &caught_up.partitions {
            let seen = &mut self.committed[*p as usize];
            if c < seen {
                self.summary.regressions += 1;
                self.summary.violations.push(format!("partition {p}: committed offset went back {seen} → {c}"));
            }
            *seen = *c;
        }
        let source = read_all(&client, "orders").await?;
        self.check_source(&source);
        // The last commit's outputs are forwarded to the sink just after it lands.
        let want = expected(&source).len();
        let sink = eventually("the sink to hold the last commit's outputs", LONG, || async {
            let sink = read_all(&client, "firsts").await.ok();
            Ok(sink.filter(|sink| sink.values().map(Vec::len).sum::<usize>() >= want))
        })
        .await?;
        self.check_sink(&source, &sink);
        Ok(())
    }

    fn check_source(&mut self, source: &BTreeMap<u32, Vec<(u64, WireLike)>>) {
        let mut at: HashMap<u64, Vec<(u32, u64)>> = HashMap::new();
        for (p, records) in source {
            for (offset, r) in records {
                at.entry(r.id).or_default().push((*p, *offset));
            }
        }
        let mut doubled = 0;
        for (id, places) in &at {
            if places.len() > 1 {
                doubled += 1;
                self.summary.violations.push(format!("record {id} stored {} times", places.len()));
            }
        }
        self.summary.duplicated = self.summary.duplicated.max(doubled);
        let mut lost = 0;
        for (id, pos) in &self.acked {
            match at.get(id) {
                Some(places) if places.contains(pos) => {}
                Some(places) => {
                    self.summary.violations.push(format!("record {id} acked at {pos:?}, stored at {places:?}"))
                }
                None => lost += 1,
            }
        }
        if lost > 0 {
            self.summary.violations.push(format!("{lost} acknowledged records lost"));
        }
        self.summary.lost = self.summary.lost.max(lost);
    }

    fn check_sink(&mut self, source: &BTreeMap<u32, Vec<(u64, WireLike)>>, sink: &BTreeMap<u32, Vec<(u64, WireLike)>>) {
        let expected = expected(source);
        let mut got: HashMap<u64, Vec<Option<u32>>> = HashMap::new();
        for records in sink.values() {
            for (_, r) in records {
                got.entry(r.id).or_default().push(r.version);
            }
        }
        let (mut duplicated, mut unexpected, mut missing) = (0, 0, 0);
        for (id, versions) in &got {
            if versions.len() > 1 {
                duplicated += 1;
            }
            if !expected.contains_key(id) {
                unexpected += 1;
            }
        }
        for id in expected.keys() {
            if !got.contains_key(id) {
                missing += 1;
            }
        }
        if duplicated + unexpected + missing > 0 {
            self.summary.violations.push(format!(
                "sink: {duplicated} outputs doubled, {unexpected} unexpected, {missing} missing of {}",
                expected.len()
            ));
        }
        self.summary.duplicated = self.summary.duplicated.max(duplicated);
        self.summary.unexpected = self.summary.unexpected.max(unexpected);
        self.summary.lost = self.summary.lost.max(missing);
        // Versions per source partition move forward with the source offset.
        let mut by_source: BTreeMap<u32, Vec<(u64, u32)>> = BTreeMap::new();
        for (id, versions) in &got {
            if let (Some((p, offset)), Some(Some(v))) = (expected.get(id), versions.first()) {
                by_source.entry(*p).or_default().push((*offset, *v));
            }
        }
        for (p, mut list) in by_source {
            list.sort();
            if let Some(w) = list.windows(2).find(|w| w[1].1 < w[0].1) {
                self.summary.regressions += 1;
                self.summary.violations.push(format!(
                    "partition {p}: offset {} ran on version {} after offset {} ran on {}",
                    w[1].0, w[1].1, w[0].0, w[0].1
                ));
            }
        }
    }
}

/// The recomputation: per source partition, in offset order, the first record of each key,
/// as id → (partition, offset).
fn expected(source: &BTreeMap<u32, Vec<(u64, WireLike)>>) -> HashMap<u64, (u32, u64)> {
    let mut out = HashMap::new();
    for (p, records) in source {
        let mut seen = std::collections::HashSet::new();
        for (offset, r) in records {
            if seen.insert(r.key.clone()) {
                out.insert(r.id, (*p, *offset));
            }
        }
    }
    out
}

/// What the checks need of a record: its id, key, and the dedup version that emitted it.
#[derive(Debug, Clone)]
struct WireLike {
    id: u64,
    key: Vec<u8>,
    version: Option<u32>,
}

/// Every record of `topic`, per partition, with offsets.
async fn read_all(client: &Client, topic: &str) -> Result<BTreeMap<u32, Vec<(u64, WireLike)>>> {
    let info = client.describe_topic(topic).await?;
    let mut out = BTreeMap::new();
    for (p, (start, end)) in info.partitions.iter().enumerate() {
        let mut records = Vec::new();
        let mut next = *start;
        while next < *end {
            let parts = client
                .fetch(
                    topic,
                    vec![FetchPosition { partition: p as u32, offset: next }],
                    10_000,
                    Duration::from_millis(100),
                )
                .await?;
            let Some(part) = parts.into_iter().next() else { bail!("no answer for partition {p}") };
            if part.records.is_empty() {
                bail!("partition {p} of {topic}: nothing at {next} below the high watermark {end}");
            }
            for (i, r) in part.records.into_iter().enumerate() {
                let id = serde_json::from_slice::<serde_json::Value>(&r.value)?["id"]
                    .as_u64()
                    .context("record without an id")?;
                let version = r
                    .headers
                    .iter()
                    .find(|(k, _)| k == "weir-trace")
                    .and_then(|(_, v)| v.split(' ').nth(1)?.rsplit_once('@')?.1.parse().ok());
                records.push((
                    part.first_offset + i as u64,
                    WireLike { id, key: r.key.map(|k| k.to_vec()).unwrap_or_default(), version },
                ));
            }
            next = records.last().map_or(next, |(o, _)| o + 1);
        }
        out.insert(p as u32, records);
    }
    Ok(out)
}
