//! End to end: topics, plugins and a pipeline over a real server, crash recovery, and
//! clear errors for bad input.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Result;
use serde_bytes::ByteBuf;
use weir_tests::weir_client::client::{Client, produced};
use weir_tests::weir_client::wire::TopicConfig;
use weir_tests::weir_client::wire::WireRecord;
use weir_tests::weir_client::wire::{RunState, StepSpec};
use weir_tests::{Server, consume_n, eventually, pipeline, plugin_bytes, step, text, topic};

const LONG: Duration = Duration::from_secs(120);

fn order(i: u64) -> WireRecord {
    let status = if i.is_multiple_of(3) { "paid" } else { "new" };
    let customer = format!("c{}", i % 97);
    let value = format!(r#"{{"id":{i},"customer":"{customer}","status":"{status}","card":"4111-1111-1111-1111"}}"#);
    WireRecord {
        key: Some(ByteBuf::from(customer.into_bytes())),
        value: ByteBuf::from(value.into_bytes()),
        headers: vec![],
    }
}

/// Produce `ids` in batches of 1,000 with up to 8 batches in flight.
async fn produce_orders(client: &Client, topic: &str, ids: std::ops::Range<u64>) -> Result<()> {
    let mut pending = std::collections::VecDeque::new();
    let ids: Vec<u64> = ids.collect();
    for chunk in ids.chunks(1000) {
        pending.push_back(client.start_produce(topic, None, chunk.iter().map(|i| order(*i)).collect())?);
        if pending.len() >= 8 {
            produced(pending.pop_front().expect("non-empty").wait().await?)?;
        }
    }
    for p in pending {
        produced(p.wait().await?)?;
    }
    Ok(())
}

async fn deploy_standard(client: &Client) -> Result<()> {
    client.deploy_plugin("json-filter", plugin_bytes("json-filter")).await?;
    client.deploy_plugin("json-transform", plugin_bytes("json-transform")).await?;
    Ok(())
}

fn billing_steps() -> Vec<StepSpec> {
    vec![
        step("json-filter", &[("field", "status"), ("equals", "paid")]),
        step("json-transform", &[("rename.id", "order_id"), ("drop", "card"), ("set.stage", "billed")]),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn hundred_thousand_messages_through_a_two_step_pipeline() -> Result<()> {
    let server = Server::start()?;
    let client = server.client().await?;
    client.create_topic("orders", topic(4)).await?;
    client.create_topic("billing", topic(2)).await?;
    deploy_standard(&client).await?;
    client.create_pipeline(pipeline("billing", "orders", "billing", billing_steps())).await?;

    const N: u64 = 100_000;
    produce_orders(&client, "orders", 0..N).await?;
    let expected: Vec<u64> = (0..N).filter(|i| i % 3 == 0).collect();
    let out = consume_n(&client, "billing", expected.len(), LONG).await?;

    // Exactly the expected outputs, each once, each transformed.
    let mut seen = HashSet::new();
    let mut last_per_key: HashMap<(u32, String), u64> = HashMap::new();
    for (partition, _, rec) in &out {
        let doc: serde_json::Value = serde_json::from_slice(&rec.value)?;
        let id = doc["order_id"].as_u64().expect("order_id");
        assert!(seen.insert(id), "order {id} emitted twice");
        assert_eq!(doc["stage"], "billed");
        assert_eq!(doc["status"], "paid");
        assert!(doc.get("card").is_none() && doc.get("id").is_none(), "{doc}");
        // Keys survive the chain, and order per key is kept.
        let key = String::from_utf8(rec.key.clone().expect("key").into_vec())?;
        assert_eq!(doc["customer"], key.as_str());
        if let Some(prev) = last_per_key.insert((*partition, key.clone()), id) {
            assert!(prev < id, "order of key {key} broken: {prev} then {id}");
        }
    }
    assert_eq!(seen.len(), expected.len());
    assert_eq!(seen, expected.iter().copied().collect::<HashSet<_>>());
    // Nothing beyond the expected outputs arrives once the pipeline has caught up.
    let status = eventually("the pipeline to catch up", LONG, || async {
        let s = client.pipeline_status("billing").await?;
        Ok((s.lag() == 0).then_some(s))
    })
    .await?;
    assert_eq!(status.processed, N);
    assert_eq!(status.emitted, expected.len() as u64);
    assert_eq!(status.dropped, N - expected.len() as u64);
    let total: u64 = client.describe_topic("billing").await?.partitions.iter().map(|(s, e)| e - s).sum();
    assert_eq!(total, expected.len() as u64);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_pipeline_loses_and_duplicates_nothing() -> Result<()> {
    let mut server = Server::start()?;
    let client = server.client().await?;
    client.create_topic("orders", topic(3)).await?;
    client.create_topic("billing", topic(2)).await?;
    deploy_standard(&client).await?;
    let steps = vec![step("json-transform", &[("set.stage", "billed")])];
    client.create_pipeline(pipeline("billing", "orders", "billing", steps)).await?;

    // A producer keeps appending while the pipeline works; it records what was acknowledged.
    let acked = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (client, acked, stop) = (server.client().await?, acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut next = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<u64> = (next..next + 500).collect();
                let records = batch.iter().map(|i| order(*i)).collect();
                match client.produce("orders", records).await {
                    Ok(_) => acked.lock().expect("acked").extend(batch),
                    Err(_) => return,
                }
                next += 500;
            }
        })
    };
    // Kill once the pipeline has committed some of the load and is behind.
    eventually("the pipeline to be mid-stream", LONG, || async {
        let s = client.pipeline_status("billing").await?;
        Ok((s.processed >= 5_000 && s.lag() > 0).then_some(()))
    })
    .await?;
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    let _ = producer.await;
    let acked = acked.lock().expect("acked").clone();
    assert!(acked.len() >= 5_000);

    server.restart()?;
    let client = server.client().await?;
    // Every acknowledged produce survived, exactly once.
    let source = client.read_all("orders").await?;
    let ids: Vec<u64> = source.iter().map(|(_, _, r)| id_of(&r.value)).collect();
    let unique: HashSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a produced record is stored twice");
    for id in &acked {
        assert!(unique.contains(id), "acknowledged order {id} lost");
    }
    // The pipeline resumes where it committed: the sink ends with exactly one output per input.
    let out = consume_n(&client, "billing", ids.len(), LONG).await?;
    let mut outputs: BTreeMap<u64, usize> = BTreeMap::new();
    for (_, _, r) in &out {
        *outputs.entry(id_of(&r.value)).or_default() += 1;
        assert!(text(r).contains("\"stage\":\"billed\""));
    }
    let dups: Vec<_> = outputs.iter().filter(|(_, n)| **n > 1).map(|(id, _)| *id).collect();
    assert!(dups.is_empty(), "outputs duplicated after the crash: {:?}", &dups[..dups.len().min(10)]);
    assert_eq!(outputs.keys().copied().collect::<HashSet<_>>(), unique, "outputs lost after the crash");
    let status = eventually("the pipeline to catch up", LONG, || async {
        let s = client.pipeline_status("billing").await?;
        Ok((s.lag() == 0).then_some(s))
    })
    .await?;
    assert_eq!(status.state, RunState::Running);
    let total: u64 = client.describe_topic("billing").await?.partitions.iter().map(|(s, e)| e - s).sum();
    assert_eq!(total as usize, ids.len());
    Ok(())
}

fn id_of(value: &[u8]) -> u64 {
    let doc: serde_json::Value = serde_json::from_slice(value).expect("json");
    doc["id"].as_u64().expect("id")
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_components_are_refused_saying_why() -> Result<()> {
    let server = Server::start()?;
    let client = server.client().await?;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty file", vec![], "empty"),
        (
            "random bytes",
            (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect(),
            "not a WebAssembly file",
        ),
        ("core module", b"\0asm\x01\0\0\0".to_vec(), "core WebAssembly module, not a component"),
        ("another world", weir_tests::not_a_plugin(), "implements neither weir:plugin/plugin@0.2.0 nor"),
    ];
    for (what, bytes, expect) in cases {
        let err = client.deploy_plugin("p", bytes).await.expect_err(what);
        let msg = err.to_string();
        assert!(msg.contains(expect), "{what}: {msg}");
        assert!(msg.contains("plugin `p`"), "{what} names the plugin: {msg}");
    }
    assert!(client.list_plugins().await?.is_empty(), "nothing was registered");
    // A good component still deploys, as version 1.
    let info = client.deploy_plugin("p", plugin_bytes("json-filter")).await?;
    assert_eq!(info.version, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_names_and_oversized_messages_get_clear_errors() -> Result<()> {
    let server = Server::start()?;
    let client = server.client().await?;
    let err = client.produce("nope", vec![WireRecord::value("x")]).await.expect_err("unknown topic");
    assert!(
        err.to_string().contains("unknown topic `nope`") && err.to_string().contains("weir topic create nope"),
        "{err}"
    );

    client.create_topic("small", TopicConfig { max_message_bytes: 1000, ..topic(1) }).await?;
    client.create_topic("out", topic(1)).await?;
    let err = client
        .produce("small", vec![WireRecord::value("ok"), WireRecord::value(vec![b'x'; 1001])])
        .await
        .expect_err("oversized");
    assert!(err.to_string().contains("1001 bytes exceeds the 1000-byte limit"), "{err}");
    // The whole request was refused: nothing of it was stored.
    assert_eq!(client.describe_topic("small").await?.partitions[0], (0, 0));
    client.produce("small", vec![WireRecord::value("fits")]).await?;

    let spec = pipeline("p", "small", "out", vec![step("ghost", &[])]);
    let err = client.create_pipeline(spec).await.expect_err("unknown plugin");
    assert!(err.to_string().contains("unknown plugin `ghost`"), "{err}");
    deploy_standard(&client).await?;
    let spec = pipeline("p", "small", "out", vec![step("json-filter", &[("equals", "1")])]);
    let err = client.create_pipeline(spec).await.expect_err("bad config");
    assert!(err.to_string().contains("missing config key `field`"), "{err}");
    assert!(client.list_pipelines().await?.is_empty(), "a refused pipeline leaves nothing behind");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_frame_closes_only_its_connection() -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start()?;
    let good = server.client().await?;
    good.create_topic("t", topic(1)).await?;

    let mut raw = tokio::net::TcpStream::connect(server.addr).await?;
    raw.write_all(&[0, 0, 0, 5, 0xc1, 1, 2, 3, 4]).await?;
    let mut reply = Vec::new();
    tokio::time::timeout(LONG, raw.read_to_end(&mut reply)).await??;
    assert!(String::from_utf8_lossy(&reply).contains("malformed frame"), "got {:?}", String::from_utf8_lossy(&reply));

    let mut huge = tokio::net::TcpStream::connect(server.addr).await?;
    huge.write_all(&u32::MAX.to_be_bytes()).await?;
    let mut reply = Vec::new();
    tokio::time::timeout(LONG, huge.read_to_end(&mut reply)).await??;
    assert!(
        String::from_utf8_lossy(&reply).contains("exceeds the server's limit"),
        "got {:?}",
        String::from_utf8_lossy(&reply)
    );

    // The well-behaved client is unaffected.
    good.produce("t", vec![WireRecord::value("still here")]).await?;
    assert_eq!(good.describe_topic("t").await?.partitions[0], (0, 1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trapping_plugin_halts_its_pipeline_at_the_offending_offset() -> Result<()> {
    let server = Server::start()?;
    let client = server.client().await?;
    client.create_topic("in", topic(1)).await?;
    client.create_topic("out", topic(1)).await?;
    client.deploy_plugin("hostile", plugin_bytes("hostile")).await?;
    let steps = vec![step("hostile", &[("mode", "panic"), ("trigger", "boom")])];
    client.create_pipeline(pipeline("fragile", "in", "out", steps)).await?;
    let values = ["a", "b", "boom", "c"];
    client.produce("in", values.iter().map(|v| WireRecord::value(*v)).collect()).await?;

    let status = eventually("the pipeline to halt", LONG, || async {
        let s = client.pipeline_status("fragile").await?;
        Ok((s.state == RunState::Halted).then_some(s))
    })
    .await?;
    let error = status.last_error.expect("an error is reported");
    assert!(error.contains("hostile@1"), "{error}");
    assert!(error.contains("offset 2 of partition 0"), "{error}");
    assert!(error.contains("trap"), "{error}");
    // Messages before the trap were processed and committed; the trap and after were not.
    let out = client.read_all("out").await?;
    assert_eq!(out.iter().map(|(_, _, r)| text(r)).collect::<Vec<_>>(), vec!["a", "b"]);
    assert_eq!(status.partitions, vec![(0, 2, 4)]);
    // The server is unaffected, and the halt survives a restart.
    client.produce("in", vec![WireRecord::value("d")]).await?;
    assert_eq!(client.pipeline_status("fragile").await?.state, RunState::Halted);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_shuts_down_gracefully_and_keeps_everything() -> Result<()> {
    let mut server = Server::start()?;
    let client = server.client().await?;
    client.create_topic("t", topic(2)).await?;
    produce_orders(&client, "t", 0..5_000).await?;
    client.commit_offsets("g", "t", vec![(0, 10)]).await?;
    let status = server.stop()?;
    assert!(status.success(), "exit status {status}");
    server.restart()?;
    let client = server.client().await?;
    assert_eq!(client.read_all("t").await?.len(), 5_000);
    assert_eq!(client.fetch_offsets("g", "t").await?, vec![Some(10), None]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_produces_and_consumes_lines() -> Result<()> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let server = Server::start()?;
    let weir = || {
        let mut c = Command::new(weir_tests::weir_bin());
        c.env("WEIR_SERVER", server.addr.to_string());
        c
    };
    let ok = |c: &mut Command| -> Result<String> {
        let out = c.output()?;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8(out.stdout)?)
    };
    ok(weir().args(["topic", "create", "lines", "--partitions", "1"]))?;
    let mut produce = weir().args(["produce", "lines"]).stdin(Stdio::piped()).spawn()?;
    produce.stdin.take().expect("stdin").write_all(b"one\ntwo\nthree\n")?;
    assert!(produce.wait()?.success());
    assert_eq!(ok(weir().args(["consume", "lines"]))?, "one\ntwo\nthree\n");
    // A group resumes where it committed.
    assert_eq!(ok(weir().args(["consume", "lines", "--group", "g", "--max", "2"]))?, "one\ntwo\n");
    assert_eq!(ok(weir().args(["consume", "lines", "--group", "g"]))?, "three\n");
    let json = ok(weir().args(["consume", "lines", "--from", "2", "--json"]))?;
    let line: serde_json::Value = serde_json::from_str(json.trim())?;
    assert_eq!((line["offset"].as_u64(), line["value"].as_str()), (Some(2), Some("three")));
    let err = weir().args(["consume", "missing"]).output()?;
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("unknown topic `missing`"));
    Ok(())
}

/// Issue 18: requests pipelined on one connection take effect in the order they were sent,
/// for every kind that writes, and a configuration change is in place for the requests
/// after it.
#[tokio::test(flavor = "multi_thread")]
async fn requests_pipelined_on_one_connection_take_effect_in_arrival_order() -> Result<()> {
    use weir_tests::weir_client::wire::{NewQueueMessage, QueueConfig, Request};
    let server = Server::start()?;
    let c = server.client().await?;
    // A topic created and produced to without waiting in between.
    let created = c.start(Request::CreateTopic { name: "t".into(), config: topic(1) })?;
    let first = c.start_produce("t", None, vec![WireRecord::value("0")])?;
    created.wait().await?;
    produced(first.wait().await?)?;
    // 300 queue sends and 300 offset commits, interleaved, none awaited before the next.
    c.create_queue("q", QueueConfig::default()).await?;
    let produce = (1..300).map(|i| WireRecord::value(i.to_string())).collect();
    c.produce("t", produce).await?;
    let mut pending = Vec::new();
    for i in 0..300u64 {
        let message = NewQueueMessage { body: i.to_string().into_bytes(), ..NewQueueMessage::default() };
        pending.push(c.start(Request::QueueSend { queue: "q".into(), messages: vec![message] })?);
        let commit =
            Request::CommitOffsets { group: "g".into(), topic: "t".into(), offsets: vec![(0, i + 1)], member: None };
        pending.push(c.start(commit)?);
    }
    for p in pending {
        p.wait().await?;
    }
    assert_eq!(c.fetch_offsets("g", "t").await?, vec![Some(300)], "the last commit sent is the one that holds");
    let mut got = Vec::new();
    while got.len() < 300 {
        let batch = c.queue_receive("q", 1000, Duration::from_secs(5)).await?;
        assert!(!batch.is_empty(), "every message was sent");
        got.extend(
            batch.into_iter().map(|d| String::from_utf8(d.body).expect("utf-8").parse::<u64>().expect("number")),
        );
    }
    assert_eq!(got, (0..300).collect::<Vec<_>>(), "delivered in the order they were sent");
    Ok(())
}

// The rules that a cluster once decided apart from a single node, now decided once by the
// broker: each runs on one server and on a node of a 2-node cluster, and must come out the
// same.
weir_tests::both_modes! {
    /// A group commit names a valid group, an existing partition and an offset the partition
    /// holds; anything else is refused saying which, and commits nothing.
    async fn offset_commits_are_validated_the_same_in_both_modes() -> Result<()> {
        let server = Server::start()?;
        let c = server.client().await?;
        c.create_topic("t", topic(2)).await?;
        c.produce("t", vec![WireRecord::value("a"), WireRecord::value("b")]).await?;
        let hw: Vec<u64> = c.describe_topic("t").await?.partitions.iter().map(|p| p.1).collect();
        let err = c.commit_offsets("g", "t", vec![(0, hw[0] + 1)]).await.expect_err("past the watermark");
        assert!(err.to_string().contains(&format!("its high watermark is {}", hw[0])), "{err}");
        let err = c.commit_offsets("g", "t", vec![(7, 0)]).await.expect_err("no partition 7");
        assert!(err.to_string().contains("partition 7 does not exist"), "{err}");
        let err = c.commit_offsets("bad group!", "t", vec![(0, 0)]).await.expect_err("bad name");
        assert!(err.to_string().contains("group"), "{err}");
        let err = c.commit_offsets("g", "nope", vec![(0, 0)]).await.expect_err("no topic");
        assert!(err.to_string().contains("unknown topic `nope`"), "{err}");
        assert_eq!(c.fetch_offsets("g", "t").await?, vec![None, None], "nothing refused was committed");
        c.commit_offsets("g", "t", vec![(0, hw[0]), (1, hw[1])]).await?;
        let other = match &server.peer {
            Some(peer) => peer.client().await?,
            None => server.client().await?,
        };
        assert_eq!(other.fetch_offsets("g", "t").await?, vec![Some(hw[0]), Some(hw[1])]);
        Ok(())
    }

    /// A produce spread over partitions is checked whole before anything is stored: one bad
    /// record refuses the request and no partition receives anything of it.
    async fn a_produce_over_partitions_is_refused_whole_in_both_modes() -> Result<()> {
        let server = Server::start()?;
        let c = server.client().await?;
        c.create_topic("small", TopicConfig { max_message_bytes: 64, ..topic(4) }).await?;
        let keyed = |k: u32, v: &str| WireRecord {
            key: Some(ByteBuf::from(format!("k{k}").into_bytes())),
            value: ByteBuf::from(v.as_bytes().to_vec()),
            headers: vec![],
        };
        let mut records: Vec<WireRecord> = (0..40).map(|k| keyed(k, "fine")).collect();
        records.push(keyed(40, &"x".repeat(65)));
        let err = c.produce("small", records).await.expect_err("one record is too large");
        assert!(err.to_string().contains("exceeds the 64-byte limit of topic `small`"), "{err}");
        let info = c.describe_topic("small").await?;
        assert!(info.partitions.iter().all(|(_, hw)| *hw == 0), "nothing stored: {:?}", info.partitions);
        // The same records without the bad one land in every partition, densely.
        let offsets = c.produce("small", (0..40).map(|k| keyed(k, "fine")).collect()).await?;
        let mut per_partition: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
        for (p, o) in offsets {
            per_partition.entry(p).or_default().push(o);
        }
        assert_eq!(per_partition.len(), 4, "keys spread over every partition: {per_partition:?}");
        for offsets in per_partition.values() {
            assert_eq!(*offsets, (0..offsets.len() as u64).collect::<Vec<_>>());
        }
        Ok(())
    }

    /// A topic's name and settings are checked before it exists; once created it exists for
    /// every node at once, and a second create of the name is refused.
    async fn topic_creation_is_checked_the_same_in_both_modes() -> Result<()> {
        let server = Server::start()?;
        let c = server.client().await?;
        for (name, config, says) in [
            ("bad name", topic(1), "topic"),
            ("zero", topic(0), "partitions must be between 1 and"),
            ("huge", topic(100_000), "partitions must be between 1 and"),
            ("nothing", TopicConfig { max_message_bytes: 0, ..topic(1) }, "max message bytes must be between 1 and"),
        ] {
            let err = c.create_topic(name, config).await.expect_err(name);
            assert!(err.to_string().contains(says), "{name}: {err}");
        }
        assert!(c.list_topics().await?.iter().all(|t| t.name != "zero" && t.name != "huge"));
        c.create_topic("t2", topic(3)).await?;
        // Another node knows it at once: produce there, consume here.
        let other = match &server.peer {
            Some(peer) => peer.client().await?,
            None => server.client().await?,
        };
        other.produce("t2", vec![WireRecord::value("hello")]).await?;
        assert_eq!(text(&consume_n(&c, "t2", 1, LONG).await?[0].2), "hello");
        let err = other.create_topic("t2", topic(1)).await.expect_err("exists");
        assert!(err.to_string().contains("already exists"), "{err}");
        Ok(())
    }
}
