//! Cluster mode: weir nodes over a real 3-node NATS JetStream cluster (the pinned 2.14 that
//! examples/setup.sh installs). Topics, records and group offsets are shared; a pipeline's
//! partitions move when their node dies or stalls, and nothing is lost or doubled.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_bytes::ByteBuf;
use weir_tests::nats::NatsCluster;
use weir_tests::weir_client::client::Client;
use weir_tests::weir_client::wire::{QueueConfig, WireRecord};
use weir_tests::{Server, consume_n, eventually, pipeline, plugin_bytes, step, topic};

const LONG: Duration = Duration::from_secs(120);

fn order(i: u64) -> WireRecord {
    let status = if i.is_multiple_of(2) { "paid" } else { "new" };
    WireRecord {
        key: Some(ByteBuf::from(format!("c{}", i % 17).into_bytes())),
        value: ByteBuf::from(format!(r#"{{"id":{i},"status":"{status}"}}"#).into_bytes()),
        headers: vec![],
    }
}

fn id(value: &[u8]) -> u64 {
    serde_json::from_slice::<serde_json::Value>(value).expect("json")["id"].as_u64().expect("id")
}

/// Wait until `client`'s node sees topic `name` (created through another node).
async fn sees_topic(client: &Client, name: &str) -> Result<()> {
    eventually(&format!("topic `{name}` to reach this node"), LONG, || async {
        Ok(client.describe_topic(name).await.ok().map(|_| ()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_share_topics_records_and_group_offsets() -> Result<()> {
    let nats = NatsCluster::start(3)?;
    let a = Server::cluster_node(&nats, "w1")?;
    let b = Server::cluster_node(&nats, "w2")?;
    let (ca, cb) = (a.client().await?, b.client().await?);
    ca.create_topic("orders", topic(3)).await?;
    sees_topic(&cb, "orders").await?;
    let err = cb.create_topic("orders", topic(3)).await.expect_err("a second create is refused");
    ensure!(err.to_string().contains("already exists"), "{err}");
    // Produced through both nodes, read through one: every record once, offsets dense.
    for i in 0..100 {
        let c = if i % 2 == 0 { &ca } else { &cb };
        c.produce("orders", vec![order(i)]).await?;
    }
    let got = consume_n(&cb, "orders", 100, LONG).await?;
    let mut ids: Vec<u64> = got.iter().map(|(_, _, r)| id(&r.value)).collect();
    ids.sort();
    ensure!(ids == (0..100).collect::<Vec<_>>(), "records differ: {ids:?}");
    let mut per_partition: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for (p, off, r) in &got {
        per_partition.entry(*p).or_default().push(*off);
        // Keyed records keep their partition and their order within it.
        ensure!(id(&r.value) < 100);
    }
    for offsets in per_partition.values() {
        ensure!(*offsets == (0..offsets.len() as u64).collect::<Vec<_>>(), "offsets not dense: {offsets:?}");
    }
    let info = ca.describe_topic("orders").await?;
    ensure!(info.partitions.iter().map(|(_, hw)| hw).sum::<u64>() == 100, "watermarks: {:?}", info.partitions);
    // A group's offsets committed on one node are the group's offsets on the other.
    ca.commit_offsets("billing", "orders", vec![(0, 5), (2, 7)]).await?;
    ensure!(cb.fetch_offsets("billing", "orders").await? == vec![Some(5), None, Some(7)]);
    // A queue created through one node is the cluster's: the other knows it at once.
    ca.create_queue("jobs", QueueConfig::default()).await?;
    ensure!(cb.describe_queue("jobs").await?.name == "jobs");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_clients_see_every_node_and_use_any() -> Result<()> {
    let nats = NatsCluster::start(3)?;
    let a = Server::cluster_node(&nats, "w1")?;
    let b = Server::cluster_node(&nats, "w2")?;
    let (ka, kb) = (a.kafka.expect("kafka listener"), b.kafka.expect("kafka listener"));
    let created = weir_tests::kafka_client("admin", ka, &["--topic", "clicks", "--partitions", "6"])?;
    ensure!(created["errors"].as_object().is_some_and(|e| e.is_empty()), "{created}");
    // Metadata names both nodes, and partition leaders are spread over them.
    let md = eventually("both nodes in Metadata", LONG, || async {
        let md = weir_tests::kafka_client("metadata", kb, &["--topic", "clicks"])?;
        let ready =
            md["brokers"].as_array().map(Vec::len) == Some(2) && md["leaders"].as_object().map(|l| l.len()) == Some(6);
        Ok(ready.then_some(md))
    })
    .await?;
    let leaders: std::collections::BTreeSet<String> =
        md["leaders"].as_object().into_iter().flatten().filter_map(|(_, v)| v.as_str().map(str::to_string)).collect();
    ensure!(leaders.len() == 2, "leaders not spread over the nodes: {md}");
    // librdkafka produces to both leaders and consumes in a group coordinated by one node.
    let produced = weir_tests::kafka_client("produce", ka, &["--topic", "clicks", "--count", "300"])?;
    ensure!(produced["acked"] == 300, "{produced}");
    let consumed = weir_tests::kafka_client("consume", kb, &["--topic", "clicks", "--group", "g1", "--count", "300"])?;
    let mut values: Vec<String> =
        consumed["values"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)).collect();
    values.sort();
    values.dedup();
    ensure!(values.len() == 300, "{} distinct values consumed", values.len());
    // The group's committed offsets are the cluster's: the other node reports them.
    let offsets = a.client().await?.fetch_offsets("g1", "clicks").await?;
    ensure!(offsets.iter().flatten().sum::<u64>() == 300, "committed: {offsets:?}");
    let status = a.client().await?.cluster_status().await?;
    ensure!(status.nodes.len() == 2 && status.connected, "{status:?}");
    ensure!(status.nodes.iter().all(|n| n.kafka.is_some()), "{status:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_records_survive_kill_9_of_the_stream_leader() -> Result<()> {
    let mut nats = NatsCluster::start(3)?;
    let a = Server::cluster_node(&nats, "w1")?;
    let ca = a.client().await?;
    ca.create_topic("events", topic(1)).await?;
    for i in 0..50 {
        ca.produce("events", vec![order(i)]).await?;
    }
    let leader =
        eventually("a leader for the partition", LONG, || async { Ok(nats.stream_leader("WEIR-T-events-0")?) }).await?;
    nats.kill9(leader);
    // The survivors elect a new leader; weir retries each append until it is acknowledged.
    for i in 50..100 {
        ca.produce("events", vec![order(i)]).await?;
    }
    nats.restart(leader)?;
    let got = consume_n(&ca, "events", 100, LONG).await?;
    let ids: Vec<u64> = got.iter().map(|(_, _, r)| id(&r.value)).collect();
    ensure!(ids == (0..100).collect::<Vec<_>>(), "lost, doubled or reordered: {ids:?}");
    Ok(())
}

/// Deploy json-filter through `client`, two topics of `partitions`, and a pipeline passing
/// paid orders.
async fn paid_pipeline(client: &Client, partitions: u32) -> Result<()> {
    client.deploy_plugin("json-filter", plugin_bytes("json-filter")).await.context("deploy")?;
    client.create_topic("orders", topic(partitions)).await.context("create orders")?;
    client.create_topic("paid", topic(partitions)).await.context("create paid")?;
    let spec =
        pipeline("billing", "orders", "paid", vec![step("json-filter", &[("field", "status"), ("equals", "paid")])]);
    client.create_pipeline(spec).await.context("create the pipeline")?;
    Ok(())
}

/// Ends with one paid sentinel per source partition and waits for all of them in the sink:
/// outputs are forwarded in source order, so everything before them has arrived too. Then
/// checks that the paid ids among `0..n` arrived exactly once.
async fn exactly_once(client: &Client, n: u64, partitions: u32) -> Result<()> {
    let sentinels: Vec<u64> = (0..partitions as u64).map(|p| 1_000_000 + p).collect();
    for (p, s) in sentinels.iter().enumerate() {
        let value = format!(r#"{{"id":{s},"status":"paid"}}"#);
        client.start_produce("orders", Some(p as u32), vec![WireRecord::value(value)])?.wait().await?;
    }
    let expected = (0..n).filter(|i| i % 2 == 0).count() + sentinels.len();
    let got = consume_n(client, "paid", expected, LONG).await?;
    let mut ids: Vec<u64> = got.iter().map(|(_, _, r)| id(&r.value)).collect();
    ids.sort();
    let mut want: Vec<u64> = (0..n).filter(|i| i % 2 == 0).chain(sentinels).collect();
    want.sort();
    ensure!(ids == want, "outputs lost or doubled: {} outputs, {} expected", ids.len(), want.len());
    // Nothing beyond them either.
    let info = client.describe_topic("paid").await?;
    let total: u64 = info.partitions.iter().map(|(_, hw)| hw).sum();
    ensure!(total as usize == expected, "the sink holds {total} records, {expected} expected");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_survives_kill_9_of_its_busiest_node_exactly_once() -> Result<()> {
    let nats = NatsCluster::start(3)?;
    let mut nodes = [Server::cluster_node(&nats, "w1")?, Server::cluster_node(&nats, "w2")?];
    let ca = nodes[0].client().await?;
    paid_pipeline(&ca, 4).await?;
    let cb = nodes[1].client().await?;
    sees_topic(&cb, "paid").await?;
    for chunk in (0..2000u64).collect::<Vec<_>>().chunks(100) {
        ca.produce("orders", chunk.iter().map(|i| order(*i)).collect()).await.context("produce")?;
    }
    // Some outputs are out, so the batch in flight is somewhere in the middle.
    consume_n(&cb, "paid", 50, LONG).await?;
    let owned = |node: &str| {
        (0..4)
            .filter(|p| weir_tests::weir_host::cluster::owner_of(["w1", "w2"].into_iter(), "billing", *p) == Some(node))
            .count()
    };
    let victim = if owned("w1") >= owned("w2") { 0 } else { 1 };
    nodes[victim].kill9();
    let survivor = nodes[1 - victim].client().await?;
    for chunk in (2000..3000u64).collect::<Vec<_>>().chunks(100) {
        survivor.produce("orders", chunk.iter().map(|i| order(*i)).collect()).await?;
    }
    exactly_once(&survivor, 3000, 4).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_paused_past_its_lease_has_its_commit_refused() -> Result<()> {
    let nats = NatsCluster::start(3)?;
    let nodes = [Server::cluster_node(&nats, "w1")?, Server::cluster_node(&nats, "w2")?];
    let ca = nodes[0].client().await?;
    paid_pipeline(&ca, 2).await?;
    let cb = nodes[1].client().await?;
    sees_topic(&cb, "paid").await?;
    ca.produce("orders", (0..200).map(order).collect()).await?;
    consume_n(&cb, "paid", 100, LONG).await?;
    // w1 stops answering; after its 2 s lease w2 owns every partition and goes on.
    nodes[0].pause(true)?;
    cb.produce("orders", (200..400).map(order).collect()).await?;
    consume_n(&cb, "paid", 200, LONG).await?;
    // w1 wakes up holding batches from before: its commits carry a stale fence.
    nodes[0].pause(false)?;
    cb.produce("orders", (400..600).map(order).collect()).await?;
    let zombie = nodes[0].client().await?;
    eventually("w1's stale commit to be refused", LONG, || async {
        Ok((zombie.cluster_status().await?.fenced_commits > 0).then_some(()))
    })
    .await?;
    exactly_once(&cb, 600, 2).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nats_server_older_than_2_14_4_is_refused() -> Result<()> {
    // Debian's nats-server (2.9) is on the machine for the benchmark peers; weir must not
    // run a cluster on it: its atomic batches are not atomic.
    let path = which("nats-server")?;
    let port = weir_tests::free_port()?;
    let dir = tempfile::tempdir()?;
    let mut old = std::process::Command::new(path)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.path().join("js"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    eventually("the old server to listen", LONG, || async {
        Ok(std::net::TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ()))
    })
    .await?;
    let out = std::process::Command::new(weir_tests::weir_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--cluster", &format!("nats://127.0.0.1:{port}"), "--node-id", "w1"])
        .output()?;
    let _ = old.kill();
    let _ = old.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "weir served on an old NATS");
    ensure!(stderr.contains("too old for cluster mode") && stderr.contains("2.14.4"), "{stderr}");
    Ok(())
}

fn which(binary: &str) -> Result<std::path::PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(binary))
        .find(|p| p.exists())
        .ok_or_else(|| anyhow::anyhow!("Debian's {binary} is not on PATH: run examples/setup.sh"))
}

/// One cycle of every kind of fault: stream leader, busiest node during a deploy, a pause,
/// the queues' coordinator under a work queue, a shadow through a kill.
#[tokio::test(flavor = "multi_thread")]
async fn five_cluster_crash_loop_cycles_lose_double_and_regress_nothing() -> Result<()> {
    let config = weir_tests::cluster_loop::Config { cycles: 5, ..Default::default() };
    let summary = weir_tests::cluster_loop::run(&config).await?;
    println!("{summary}");
    ensure!(summary.violations.is_empty(), "{summary}: {:?}", summary.violations);
    ensure!(summary.cycles == 5 && summary.acked > 0 && summary.pauses == 1, "{summary}");
    ensure!(summary.queue_sent > 0 && summary.queue_lost == 0 && summary.queue_acked_twice == 0, "{summary}");
    Ok(())
}

/// A pipeline whose partitions run on both nodes of a weir cluster: its counts are the sum of
/// both nodes' work, whichever node is asked; a halt on the node that hit the failure halts the
/// pipeline on every node, and every node says why.
#[tokio::test(flavor = "multi_thread")]
async fn a_halt_stops_a_pipeline_on_every_node_and_status_counts_the_clusters_work() -> Result<()> {
    weir_tests::in_mode(weir_tests::Mode::Cluster, async {
        let server = Server::start()?;
        let peer = server.peer.as_ref().context("a cluster server has a peer")?;
        let (a, b) = (server.client().await?, peer.client().await?);
        a.create_topic("in", topic(4)).await?;
        a.create_topic("out", topic(4)).await?;
        a.deploy_plugin("h", plugin_bytes("hostile")).await?;
        let steps = vec![step("h", &[("mode", "panic"), ("trigger", "boom")])];
        a.create_pipeline(pipeline("p", "in", "out", steps)).await?;
        let keyed = |k: u64, v: &str| WireRecord {
            key: Some(ByteBuf::from(format!("k{k}").into_bytes())),
            value: ByteBuf::from(v.as_bytes().to_vec()),
            headers: vec![],
        };
        a.produce("in", (0..400).map(|k| keyed(k, "ok")).collect()).await?;
        for c in [&a, &b] {
            eventually("both nodes to count all 400", LONG, || async {
                let s = c.pipeline_status("p").await?;
                Ok((s.processed == 400 && s.lag() == 0).then_some(()))
            })
            .await?;
        }
        // Every partition ran somewhere; both nodes did some of the work.
        let owners = a.cluster_status().await?.partitions;
        let nodes: std::collections::BTreeSet<_> = owners.iter().filter_map(|p| p.committed_by.clone()).collect();
        ensure!(nodes.len() == 2, "partitions committed by {nodes:?}");
        b.produce("in", vec![keyed(7, "boom")]).await?;
        for c in [&a, &b] {
            let s = eventually("the halt on every node", LONG, || async {
                let s = c.pipeline_status("p").await?;
                Ok((s.state == weir_tests::weir_client::wire::RunState::Halted).then_some(s))
            })
            .await?;
            let reason = s.last_error.unwrap_or_default();
            ensure!(reason.contains("hostile plugin panics"), "{reason}");
        }
        Ok(())
    })
    .await
}
