//! Pipelines: multi-step chains with fan-out, state (dedup, windows), exactly-once across
//! steps and topics through kill -9, replay, pause/resume, and spec files.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Result;
use serde_bytes::ByteBuf;
use weir_tests::weir_client::client::Client;
use weir_tests::weir_client::wire::WireRecord;
use weir_tests::weir_client::wire::{ApplyChange, PipelineSpec, ResetTarget, RunState};
use weir_tests::{Server, consume_n, eventually, pipeline, plugin_bytes, step, topic};

const LONG: Duration = Duration::from_secs(120);
const REGIONS: [&str; 3] = ["eu", "us", "apac"];

fn order(i: u64) -> WireRecord {
    let status = if i.is_multiple_of(2) { "paid" } else { "new" };
    let region = REGIONS[(i % 3) as usize];
    let value = format!(r#"{{"id":{i},"status":"{status}","region":"{region}","card":"4111"}}"#);
    WireRecord {
        key: Some(ByteBuf::from(format!("c{}", i % 13).into_bytes())),
        value: ByteBuf::from(value.into_bytes()),
        headers: vec![],
    }
}

/// An event with an idempotency key; the message key is the idempotency key, so repeats
/// meet the same partition's state.
fn event(id: u64) -> WireRecord {
    let key = format!("evt-{id}");
    WireRecord {
        key: Some(ByteBuf::from(key.clone().into_bytes())),
        value: ByteBuf::from(format!(r#"{{"id":{id},"region":"{}"}}"#, REGIONS[(id % 3) as usize]).into_bytes()),
        headers: vec![("weir-idempotency-key".into(), key)],
    }
}

fn id(value: &[u8]) -> u64 {
    serde_json::from_slice::<serde_json::Value>(value).expect("json")["id"].as_u64().expect("id")
}

async fn deploy_all(client: &Client) -> Result<()> {
    for p in ["json-filter", "json-transform", "router", "dedup", "window-count"] {
        client.deploy_plugin(p, plugin_bytes(p)).await?;
    }
    Ok(())
}

async fn topics(client: &Client, names: &[&str], partitions: u32) -> Result<()> {
    for n in names {
        client.create_topic(n, topic(partitions)).await?;
    }
    Ok(())
}

fn region_steps() -> Vec<weir_tests::weir_client::wire::StepSpec> {
    vec![
        step("json-filter", &[("field", "status"), ("equals", "paid")]),
        step("json-transform", &[("drop", "card"), ("set.stage", "billed")]),
        step("router", &[("by", "field:region"), ("route.eu", "orders-eu"), ("route.us", "orders-us")]),
    ]
}

async fn caught_up(client: &Client, name: &str) -> Result<weir_tests::weir_client::wire::PipelineStatus> {
    eventually("the pipeline to catch up", LONG, || async {
        let s = client.pipeline_status(name).await?;
        Ok((s.lag() == 0).then_some(s))
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_three_step_chain_fans_out_to_three_topics_exactly() -> Result<()> {
    let server = Server::start()?;
    let client = server.client().await?;
    deploy_all(&client).await?;
    topics(&client, &["orders", "orders-eu", "orders-us", "orders-other"], 3).await?;
    client.create_pipeline(pipeline("regions", "orders", "orders-other", region_steps())).await?;
    const N: u64 = 30_000;
    for from in (0..N).step_by(1000) {
        client.produce("orders", (from..from + 1000).map(order).collect()).await?;
    }
    let status = caught_up(&client, "regions").await?;
    for (topic, region) in [("orders-eu", "eu"), ("orders-us", "us"), ("orders-other", "apac")] {
        let expected: BTreeSet<u64> = (0..N).filter(|i| i % 2 == 0 && REGIONS[(i % 3) as usize] == region).collect();
        let got = client.read_all(topic).await?;
        let mut ids = BTreeSet::new();
        let mut last: HashMap<(u32, Vec<u8>), u64> = HashMap::new();
        for (p, _, r) in &got {
            let doc: serde_json::Value = serde_json::from_slice(&r.value)?;
            assert_eq!((doc["stage"].as_str(), doc.get("card")), (Some("billed"), None), "{doc}");
            assert_eq!(doc["region"], region);
            let i = id(&r.value);
            assert!(ids.insert(i), "order {i} twice in {topic}");
            // Per-key order is kept end to end.
            let key = r.key.clone().expect("key kept").into_vec();
            if let Some(prev) = last.insert((*p, key), i) {
                assert!(prev < i, "order broken in {topic}: {prev} then {i}");
            }
        }
        assert_eq!(ids, expected, "contents of {topic}");
    }
    assert_eq!((status.processed, status.emitted, status.dropped), (N, N / 2, N / 2));
    let steps: Vec<(u64, u64, u64)> = status.steps.iter().map(|s| (s.input, s.output, s.dropped)).collect();
    assert_eq!(steps, vec![(N, N / 2, N / 2), (N / 2, N / 2, 0), (N / 2, N / 2, 0)]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn dedup_emits_each_idempotency_key_once_across_a_restart() -> Result<()> {
    let mut server = Server::start()?;
    let client = server.client().await?;
    deploy_all(&client).await?;
    topics(&client, &["events", "unique"], 2).await?;
    client.create_pipeline(pipeline("dedup", "events", "unique", vec![step("dedup", &[("window", "1h")])])).await?;
    // Repeats inside one batch and across batches.
    let first: Vec<WireRecord> = [1, 2, 2, 3, 1, 4].iter().map(|i| event(*i)).collect();
    client.produce("events", first).await?;
    client.produce("events", vec![event(3), event(5)]).await?;
    caught_up(&client, "dedup").await?;
    let seen = client.state_get("dedup", 1, b"seen:evt-2").await?;
    assert_eq!(seen.len(), 1, "the key is remembered in exactly one partition");

    server.kill9();
    server.restart()?;
    let client = server.client().await?;
    client.produce("events", vec![event(1), event(5), event(6)]).await?;
    caught_up(&client, "dedup").await?;
    let out: Vec<u64> = client.read_all("unique").await?.iter().map(|(_, _, r)| id(&r.value)).collect();
    assert_eq!(out.iter().copied().collect::<BTreeSet<_>>(), (1..=6).collect::<BTreeSet<_>>());
    assert_eq!(out.len(), 6, "each idempotency key emitted once: {out:?}");
    let entries = client.state_list("dedup", 1, b"seen:", 100).await?;
    assert_eq!(entries.len(), 6);
    assert_eq!(client.state_delete("dedup", 1, b"seen:evt-6").await?, 1);
    client.produce("events", vec![event(6)]).await?;
    caught_up(&client, "dedup").await?;
    assert_eq!(client.read_all("unique").await?.len(), 7, "a deleted key passes again");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn tumbling_windows_count_per_key() -> Result<()> {
    let server = Server::start()?;
    let client = server.client().await?;
    deploy_all(&client).await?;
    topics(&client, &["clicks", "counts"], 1).await?;
    let steps = vec![step("window-count", &[("window", "10s"), ("by", "key"), ("time", "field:ts")])];
    client.create_pipeline(pipeline("counts", "clicks", "counts", steps)).await?;
    let click = |user: &str, ts: u64| WireRecord {
        key: Some(ByteBuf::from(user.as_bytes().to_vec())),
        value: ByteBuf::from(format!(r#"{{"ts":{ts}}}"#).into_bytes()),
        headers: vec![],
    };
    // Window [0,10s): a×3, b×1. Window [10s,20s): a×1, c×2. A click at 25s closes the second.
    let clicks = vec![
        click("a", 1_000),
        click("b", 2_000),
        click("a", 3_000),
        click("a", 9_999),
        click("c", 10_000),
        click("a", 12_000),
        click("c", 15_000),
        click("b", 5_000), // late: its window closed
        click("b", 25_000),
    ];
    client.produce("clicks", clicks).await?;
    caught_up(&client, "counts").await?;
    let out = client.read_all("counts").await?;
    let got: BTreeMap<(u64, String), u64> = out
        .iter()
        .map(|(_, _, r)| {
            let d: serde_json::Value = serde_json::from_slice(&r.value).expect("json");
            (
                (d["window_start"].as_u64().unwrap(), d["key"].as_str().unwrap().to_string()),
                d["count"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: BTreeMap<(u64, String), u64> = [((0, "a"), 3), ((0, "b"), 1), ((10_000, "a"), 1), ((10_000, "c"), 2)]
        .into_iter()
        .map(|((w, k), n)| ((w, k.to_string()), n))
        .collect();
    assert_eq!(out.len(), 4, "{got:?}");
    assert_eq!(got, expected);
    // The open window and the late count are in state.
    assert_eq!(text_values(&client.state_get("counts", 1, b"agg.acc:b").await?), vec!["1"]);
    assert_eq!(text_values(&client.state_get("counts", 1, b"agg.late").await?), vec!["1"]);
    Ok(())
}

fn text_values(entries: &[weir_tests::weir_client::wire::StateEntry]) -> Vec<String> {
    entries.iter().map(|e| String::from_utf8_lossy(&e.value).into_owned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_with_and_without_resetting_state() -> Result<()> {
    let server = Server::start()?;
    let client = server.client().await?;
    deploy_all(&client).await?;
    topics(&client, &["events", "unique"], 2).await?;
    client.create_pipeline(pipeline("d", "events", "unique", vec![step("dedup", &[])])).await?;
    client.produce("events", (0..10).map(event).collect()).await?;
    caught_up(&client, "d").await?;
    assert_eq!(client.read_all("unique").await?.len(), 10);

    // Replaying with state kept: every key was seen, nothing new comes out.
    let s = client.reset_pipeline("d", ResetTarget::Offset(0), false).await?;
    assert!(s.lag() > 0, "offsets moved back: {:?}", s.partitions);
    let s = caught_up(&client, "d").await?;
    assert_eq!(s.dropped, 10);
    assert_eq!(client.read_all("unique").await?.len(), 10);

    // Replaying with state reset: everything is emitted again.
    client.reset_pipeline("d", ResetTarget::Time(0), true).await?;
    caught_up(&client, "d").await?;
    let out = client.read_all("unique").await?;
    assert_eq!(out.len(), 20);
    let twice: BTreeMap<u64, usize> = out.iter().fold(BTreeMap::new(), |mut m, (_, _, r)| {
        *m.entry(id(&r.value)).or_default() += 1;
        m
    });
    assert!(twice.values().all(|n| *n == 2));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_holds_and_resume_continues_at_the_committed_offset() -> Result<()> {
    let mut server = Server::start()?;
    let client = server.client().await?;
    deploy_all(&client).await?;
    topics(&client, &["in", "out"], 2).await?;
    client.create_pipeline(pipeline("p", "in", "out", vec![step("json-transform", &[("set.x", "1")])])).await?;
    client.produce("in", (0..100).map(order).collect()).await?;
    caught_up(&client, "p").await?;
    let paused = client.pause_pipeline("p").await?;
    assert_eq!(paused.state, RunState::Paused);
    // Pausing waited for the workers to stop, so nothing produced now can be processed.
    client.produce("in", (100..200).map(order).collect()).await?;
    let s = client.pipeline_status("p").await?;
    assert_eq!((s.lag(), s.processed, s.state), (100, 100, RunState::Paused));
    // Paused survives a restart.
    server.restart()?;
    let client = server.client().await?;
    assert_eq!(client.pipeline_status("p").await?.state, RunState::Paused);
    assert_eq!(client.pipeline_status("p").await?.lag(), 100);
    assert_eq!(client.resume_pipeline("p").await?.state, RunState::Running);
    caught_up(&client, "p").await?;
    let ids: BTreeSet<u64> = client.read_all("out").await?.iter().map(|(_, _, r)| id(&r.value)).collect();
    assert_eq!(ids, (0..200).collect());
    assert_eq!(client.read_all("out").await?.len(), 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_retries_the_message_a_pipeline_halted_on() -> Result<()> {
    let server = Server::start()?;
    let client = server.client().await?;
    topics(&client, &["in", "out", "routed"], 1).await?;
    client.deploy_plugin("router", plugin_bytes("router")).await?;
    // Routing to a missing topic halts the pipeline; creating the topic and resuming fixes it.
    client
        .create_pipeline(pipeline("p", "in", "out", vec![step("router", &[("by", "key"), ("template", "to-{}")])]))
        .await?;
    client
        .produce(
            "in",
            vec![WireRecord {
                key: Some(ByteBuf::from(b"x".to_vec())),
                value: ByteBuf::from(b"m".to_vec()),
                headers: vec![],
            }],
        )
        .await?;
    let halted = eventually("the pipeline to halt", LONG, || async {
        let s = client.pipeline_status("p").await?;
        Ok((s.state == RunState::Halted).then_some(s))
    })
    .await?;
    let why = halted.last_error.unwrap_or_default();
    assert!(why.contains("topic `to-x`, which does not exist"), "halted for another reason: {why}");
    client.create_topic("to-x", topic(1)).await?;
    client.resume_pipeline("p").await?;
    assert_eq!(consume_n(&client, "to-x", 1, LONG).await?.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_is_idempotent_swaps_versions_and_restarts_on_topology_changes() -> Result<()> {
    let server = Server::start()?;
    let client = server.client().await?;
    deploy_all(&client).await?;
    topics(&client, &["in", "out"], 1).await?;
    let tag = |v: &str| {
        let mut spec = pipeline("p", "in", "out", vec![step(v, &[("set.v", "${weir.version}")])]);
        spec.on_error = weir_tests::weir_client::wire::ErrorPolicy::Skip;
        spec
    };
    let (_, change) = client.apply_pipeline(tag("json-transform")).await?;
    assert_eq!(change, ApplyChange::Created);
    assert_eq!(client.apply_pipeline(tag("json-transform")).await?.1, ApplyChange::Unchanged);
    client.produce("in", vec![WireRecord::value(r#"{"id":1}"#)]).await?;
    caught_up(&client, "p").await?;

    client.deploy_plugin_with("json-transform", plugin_bytes("json-transform"), None, true).await?;
    client.promote_plugin("json-transform").await?;
    // Pin version 1 again: a version change only, so a swap without restart.
    let (status, change) = client.apply_pipeline(tag("json-transform@1")).await?;
    assert_eq!((change, status.plugins), (ApplyChange::Swapped, vec!["json-transform@1".to_string()]));
    client.produce("in", vec![WireRecord::value(r#"{"id":2}"#)]).await?;
    caught_up(&client, "p").await?;

    // A config change restarts at the committed offset: nothing is reprocessed.
    let mut changed = tag("json-transform@1");
    changed.steps[0].config.insert("set.restarted".into(), "true".into());
    assert_eq!(client.apply_pipeline(changed).await?.1, ApplyChange::Restarted);
    client.produce("in", vec![WireRecord::value(r#"{"id":3}"#)]).await?;
    caught_up(&client, "p").await?;
    let out: Vec<serde_json::Value> =
        client.read_all("out").await?.iter().map(|(_, _, r)| serde_json::from_slice(&r.value).unwrap()).collect();
    assert_eq!(out.len(), 3, "{out:?}");
    assert_eq!((out[0]["v"].as_u64(), out[1]["v"].as_u64(), out[2]["v"].as_u64()), (Some(1), Some(1), Some(1)));
    assert_eq!((out[1].get("restarted"), out[2]["restarted"].as_bool()), (None, Some(true)));

    let err = client
        .apply_pipeline(pipeline("p", "in", "missing", vec![step("json-transform", &[])]))
        .await
        .expect_err("bad");
    assert!(err.to_string().contains("unknown topic `missing`"), "{err}");
    assert_eq!(
        client.pipeline_status("p").await?.state,
        RunState::Running,
        "a refused apply leaves the pipeline running"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_batch_is_exactly_once_across_steps_topics_and_state() -> Result<()> {
    let mut server = Server::start()?;
    let client = server.client().await?;
    deploy_all(&client).await?;
    topics(&client, &["events", "ev-eu", "ev-us", "ev-other"], 3).await?;
    let steps = vec![
        step("dedup", &[]),
        step("json-transform", &[("set.checked", "true")]),
        step("router", &[("by", "field:region"), ("route.eu", "ev-eu"), ("route.us", "ev-us")]),
    ];
    client.create_pipeline(pipeline("x", "events", "ev-other", steps)).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (client, stop) = (server.client().await?, stop.clone());
        tokio::spawn(async move {
            let mut next = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Every event twice: dedup state decides which copy passes.
                let batch: Vec<WireRecord> = (next..next + 250).flat_map(|i| [event(i), event(i)]).collect();
                if client.produce("events", batch).await.is_err() {
                    return;
                }
                next += 250;
            }
        })
    };
    eventually("the pipeline to be mid-stream", LONG, || async {
        let s = client.pipeline_status("x").await?;
        Ok((s.processed >= 5_000 && s.lag() > 0).then_some(()))
    })
    .await?;
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    let _ = producer.await;
    server.restart()?;
    let client = server.client().await?;
    let source: BTreeSet<u64> = client.read_all("events").await?.iter().map(|(_, _, r)| id(&r.value)).collect();
    caught_up(&client, "x").await?;
    let mut outputs: BTreeMap<u64, usize> = BTreeMap::new();
    for (t, region) in [("ev-eu", "eu"), ("ev-us", "us"), ("ev-other", "apac")] {
        for (_, _, r) in client.read_all(t).await? {
            let doc: serde_json::Value = serde_json::from_slice(&r.value)?;
            assert_eq!((doc["region"].as_str(), doc["checked"].as_bool()), (Some(region), Some(true)));
            *outputs.entry(id(&r.value)).or_default() += 1;
        }
    }
    let dup: Vec<_> = outputs.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dup.is_empty(), "outputs duplicated: {:?}", &dup[..dup.len().min(5)]);
    assert_eq!(outputs.keys().copied().collect::<BTreeSet<_>>(), source, "one output per distinct event");
    // State agrees with outputs: one remembered key per emitted event (listed by the ids' first
    // two digits, as a listing returns at most 10,000 entries).
    let mut seen = 0;
    for id in 0..10 {
        seen += client.state_get("x", 1, format!("seen:evt-{id}").as_bytes()).await?.len();
    }
    for prefix in 10..100 {
        seen += client.state_list("x", 1, format!("seen:evt-{prefix}").as_bytes(), 10_000).await?.len();
    }
    assert_eq!(seen, outputs.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_spec_file_applies_from_the_cli() -> Result<()> {
    let server = Server::start()?;
    let client = server.client().await?;
    deploy_all(&client).await?;
    topics(&client, &["orders", "orders-eu", "orders-us", "orders-other"], 2).await?;
    let file = weir_tests::workspace_root().join("examples/pipelines/orders.toml");
    let apply = || {
        std::process::Command::new(weir_tests::weir_bin())
            .args(["pipeline", "apply"])
            .arg(&file)
            .env("WEIR_SERVER", server.addr.to_string())
            .output()
    };
    let out = apply()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("created"));
    assert!(String::from_utf8_lossy(&apply()?.stdout).contains("unchanged"));
    let spec: PipelineSpec = client.pipeline_status("orders-by-region").await?.spec;
    assert_eq!((spec.steps.len(), spec.max_attempts, spec.backoff_ms), (3, Some(3), Some(100)));
    client.produce("orders", (0..12).map(order).collect()).await?;
    caught_up(&client, "orders-by-region").await?;
    let eu: Vec<u64> = client.read_all("orders-eu").await?.iter().map(|(_, _, r)| id(&r.value)).collect();
    assert_eq!(eu.iter().copied().collect::<BTreeSet<_>>(), BTreeSet::from([0, 6]));
    let bad = weir_tests::workspace_root().join("Cargo.toml");
    let err = std::process::Command::new(weir_tests::weir_bin())
        .args(["pipeline", "apply"])
        .arg(&bad)
        .env("WEIR_SERVER", server.addr.to_string())
        .output()?;
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("is not a valid pipeline spec"));
    Ok(())
}

/// A pipeline that feeds itself — a step routing into its own source, or a sink upstream of
/// the source — is refused (issue 30: 5 messages became 142,730 in two minutes). With
/// `max_hops` the cycle is allowed and bounded: each message goes around that many times, then
/// fails with the reason and is dead-lettered.
#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_feeding_itself_is_refused_unless_its_cycle_is_bounded() -> Result<()> {
    use weir_tests::weir_client::wire::ErrorPolicy;
    let server = Server::start()?;
    let c = server.client().await?;
    topics(&c, &["loop", "out", "t1", "t2", "cyc"], 1).await?;
    c.deploy_plugin("hostile", plugin_bytes("hostile")).await?;
    c.deploy_plugin("pass", plugin_bytes("pass")).await?;

    // Sinks: into its own source, or back through another pipeline.
    let err = c.create_pipeline(pipeline("self", "t1", "t1", vec![step("pass", &[])])).await.expect_err("a cycle");
    assert!(
        err.to_string().contains("feeds its own source `t1`: a cycle") && err.to_string().contains("max_hops"),
        "{err}"
    );
    c.create_pipeline(pipeline("a", "t1", "t2", vec![step("pass", &[])])).await?;
    let err = c.create_pipeline(pipeline("b", "t2", "t1", vec![step("pass", &[])])).await.expect_err("a cycle");
    assert!(err.to_string().contains("through other pipelines"), "{err}");

    // A step routing into its own source: each such output fails its input.
    let route_back = |to: &str| vec![step("hostile", &[("mode", "route-to"), ("to", to)])];
    let mut spec = pipeline("feed", "loop", "out", route_back("loop"));
    spec.on_error = ErrorPolicy::DeadLetter;
    c.create_pipeline(spec).await?;
    c.produce("loop", (0..5).map(|i| WireRecord::value(format!("m{i}"))).collect()).await?;
    let dead = consume_n(&c, "feed.dlq", 5, LONG).await?;
    for (_, _, r) in &dead {
        let reason = r.headers.iter().find(|(k, _)| k == "weir-dlq-error").map(|(_, v)| v.as_str()).unwrap_or("");
        assert!(reason.contains("feeds pipeline `feed`'s own source `loop`: a cycle, refused"), "{reason}");
    }
    assert_eq!(c.describe_topic("loop").await?.partitions[0].1, 5, "nothing went around");

    // Allowed and bounded: 5 messages, each around 3 times, then dead-lettered.
    let mut spec = pipeline("bounded", "cyc", "out", route_back("cyc"));
    spec.on_error = ErrorPolicy::DeadLetter;
    spec.max_hops = Some(3);
    c.create_pipeline(spec).await?;
    c.produce("cyc", (0..5).map(|i| WireRecord::value(format!("c{i}"))).collect()).await?;
    let dead = consume_n(&c, "bounded.dlq", 5, LONG).await?;
    for (_, _, r) in &dead {
        let hops = r.headers.iter().find(|(k, _)| k == "weir-hops").map(|(_, v)| v.as_str());
        assert_eq!(hops, Some("3"), "the dead letter went around 3 times");
        let reason = r.headers.iter().find(|(k, _)| k == "weir-dlq-error").map(|(_, v)| v.as_str()).unwrap_or("");
        assert!(reason.contains("3 time(s), pipeline `bounded`'s max_hops"), "{reason}");
    }
    caught_up(&c, "bounded").await?;
    assert_eq!(c.describe_topic("cyc").await?.partitions[0].1, 5 * 4, "each message stored once per trip");
    Ok(())
}
