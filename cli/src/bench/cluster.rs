//! `weir bench --cluster`: weir nodes over a local 3-server NATS JetStream cluster (R3,
//! `sync_interval: always`): produce through one node, the 1-step pipeline on one node and
//! then on two, and failover — kill -9 of a node to the first commit of one of its
//! partitions by the other.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use weir_client::client::Client;
use weir_client::wire::{PipelineSpec, StepSpec};
use weir_host::cluster::local::{NatsCluster, Sync};

use super::stages::{create, produce_all};
use super::{BenchArgs, BenchServer, output};

/// The cluster figures, as `--json` prints them.
#[derive(Serialize, Default)]
pub struct ClusterReport {
    messages: u64,
    partitions: u32,
    replicas: u32,
    nats_servers: u32,
    /// `always`: every JetStream write fsynced before its acknowledgement; `default`: NATS's.
    nats_sync: String,
    /// Produce through one node, 4 producers.
    produce_msgs_per_s: f64,
    /// The 1-step json-filter pipeline with one weir node running every partition.
    pipeline_1_node_msgs_per_s: f64,
    /// The same with two weir nodes sharing the partitions.
    pipeline_2_nodes_msgs_per_s: f64,
    /// Two nodes ÷ one.
    pipeline_scaling: f64,
    /// kill -9 of a node to the other's first commit of a partition it owned, ms.
    failover_ms: u64,
    /// The lease the nodes ran with, ms (a dead node is noticed after it).
    lease_ms: u64,
}

const LEASE: &str = "3s";

/// Run the cluster stages and print their figures.
pub(super) async fn run(args: &BenchArgs, plugins: &HashMap<String, Vec<u8>>) -> anyhow::Result<()> {
    let sync = if args.nats_sync == "always" { Sync::Always } else { Sync::Default };
    let nats =
        NatsCluster::start_synced(3, sync).context("starting 3 NATS servers (examples/setup.sh installs them)")?;
    let mut r = ClusterReport {
        messages: args.cluster_messages,
        partitions: args.partitions,
        replicas: 3,
        nats_servers: 3,
        nats_sync: args.nats_sync.clone(),
        lease_ms: 3000,
        ..ClusterReport::default()
    };
    let node = |id: &str| {
        let flags = ["--cluster", &nats.urls(), "--node-id", id, "--replicas", "3", "--lease", LEASE];
        BenchServer::start_with(args.durability, None, &flags)
    };
    let first = node("b1")?;
    let c1 = first.client().await?;
    c1.deploy_plugin("bench-filter", plugins["json-filter"].clone()).await?;
    let count = args.cluster_messages;
    eprintln!("cluster: produce, 4 producers through one node");
    create(&c1, "produce", args.partitions).await?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let c = first.client().await?;
        let (size, batch) = (args.size, args.batch);
        tasks.push(tokio::spawn(async move { produce_all(&c, "produce", count / 4, size, batch).await }));
    }
    for t in tasks {
        t.await??;
    }
    r.produce_msgs_per_s = count as f64 / start.elapsed().as_secs_f64();
    eprintln!("cluster: 1-step pipeline on one node");
    r.pipeline_1_node_msgs_per_s = pipeline(&c1, args, "one").await?;
    let mut second = node("b2")?;
    let c2 = second.client().await?;
    eprintln!("cluster: 1-step pipeline on two nodes");
    wait_for_plugin(&c2).await?;
    r.pipeline_2_nodes_msgs_per_s = pipeline(&c1, args, "two").await?;
    r.pipeline_scaling = r.pipeline_2_nodes_msgs_per_s / r.pipeline_1_node_msgs_per_s;
    eprintln!("cluster: failover");
    r.failover_ms = failover(&first, &mut second, args).await?;
    if args.json {
        return output::json(&r);
    }
    let rows = vec![
        vec!["produce through one node, 4 producers".into(), format!("{:.0}", r.produce_msgs_per_s)],
        vec!["1-step pipeline, 1 weir node".into(), format!("{:.0}", r.pipeline_1_node_msgs_per_s)],
        vec![
            "1-step pipeline, 2 weir nodes".into(),
            format!("{:.0} ({:.2}×)", r.pipeline_2_nodes_msgs_per_s, r.pipeline_scaling),
        ],
    ];
    println!(
        "weir bench --cluster: {} messages of {} bytes, {} partitions, 3 NATS servers, R3, NATS fsync {}",
        count, args.size, args.partitions, args.nats_sync
    );
    output::table(&["STAGE", "MSG/S"], rows);
    println!("failover: kill -9 to the new owner's first commit {} ms (lease {LEASE})", r.failover_ms);
    Ok(())
}

/// Produce `--cluster-messages`, then time a json-filter pipeline from its first commit until
/// every partition's committed offset reaches the end.
async fn pipeline(client: &Client, args: &BenchArgs, tag: &str) -> anyhow::Result<f64> {
    let (source, sink) = (format!("in-{tag}"), format!("out-{tag}"));
    create(client, &source, args.partitions).await?;
    create(client, &sink, args.partitions).await?;
    produce_all(client, &source, args.cluster_messages, args.size, args.batch).await?;
    let step = StepSpec::new("bench-filter", &[("field", "status"), ("equals", "paid")]);
    let spec = PipelineSpec::new(&format!("bench-{tag}"), &source, vec![step], &sink);
    client.create_pipeline(spec).await?;
    // Timed from the first commit (partitions taken over, plugins instantiated) to the last.
    let mut first: Option<(Instant, u64)> = None;
    loop {
        let s = client.pipeline_status(&format!("bench-{tag}")).await?;
        if let Some(e) = s.last_error {
            bail!("the benchmark pipeline failed: {e}");
        }
        let done: u64 = s.partitions.iter().map(|(_, c, _)| c).sum();
        match first {
            None if done > 0 => first = Some((Instant::now(), done)),
            Some((t0, d0)) if done >= args.cluster_messages => {
                return Ok((done - d0) as f64 / t0.elapsed().as_secs_f64());
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for_plugin(client: &Client) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.list_plugins().await?.is_empty() {
        if Instant::now() > deadline {
            bail!("the second node did not install the plugin within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// With the two-node pipeline running and records arriving, kill -9 the second node and time
/// until the first commits a partition the second owned.
async fn failover(first_node: &BenchServer, second: &mut BenchServer, args: &BenchArgs) -> anyhow::Result<u64> {
    let first = first_node.client().await?;
    let status = first.cluster_status().await?;
    let theirs: Vec<u32> = status
        .partitions
        .iter()
        .filter(|p| p.pipeline == "bench-two" && p.owner.as_deref() == Some("b2"))
        .map(|p| p.partition)
        .collect();
    if theirs.is_empty() {
        bail!("the second node owns no partition of the pipeline: nothing to fail over");
    }
    let at_kill: HashMap<u32, Option<u64>> =
        status.partitions.iter().filter(|p| p.pipeline == "bench-two").map(|p| (p.partition, p.committed)).collect();
    let producer = {
        let c = first_node.client().await;
        let (size, batch) = (args.size, args.batch.min(100));
        tokio::spawn(async move {
            let Ok(c) = c else { return };
            for i in 0.. {
                if produce_all(&c, "in-two", batch as u64, size, batch).await.is_err() || i > 100_000 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let killed = Instant::now();
    second.kill9();
    let took = loop {
        let s = first.cluster_status().await?;
        let moved = s.partitions.iter().any(|p| {
            p.pipeline == "bench-two"
                && theirs.contains(&p.partition)
                && p.committed_by.as_deref() == Some("b1")
                && p.committed > at_kill.get(&p.partition).copied().flatten()
        });
        if moved {
            break killed.elapsed();
        }
        if killed.elapsed() > Duration::from_secs(120) {
            bail!("no partition failed over within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    producer.abort();
    Ok(took.as_millis() as u64)
}
