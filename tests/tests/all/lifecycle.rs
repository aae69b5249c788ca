//! Plugin lifecycle: versioned deploys, hot swaps with nothing lost or doubled, rollback,
//! shadow deploys, sandbox limits against hostile plugins, failure policies and dead letters.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Result;
use serde_bytes::ByteBuf;
use weir_tests::weir_client::client::Client;
use weir_tests::weir_client::wire::{ErrorPolicy, PipelineSpec, RunState};
use weir_tests::weir_client::wire::{FetchedRecord, Sandbox, WireRecord};
use weir_tests::{
    ESCAPES_REFUSED, Server, consume_n, escape_report, eventually, pipeline, plugin_bytes, step, text, topic,
};

const LONG: Duration = Duration::from_secs(120);

fn json(i: u64) -> WireRecord {
    WireRecord::value(format!(r#"{{"id":{i}}}"#))
}

fn doc(r: &FetchedRecord) -> serde_json::Value {
    serde_json::from_slice(&r.value).expect("json output")
}

/// A pipeline that tags every output with the version of the plugin that processed it.
fn tagging(name: &str, source: &str, sink: &str, plugin: &str) -> PipelineSpec {
    pipeline(name, source, sink, vec![step(plugin, &[("set.v", "${weir.version}")])])
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_hot_swaps_while_200k_messages_flow_lose_and_double_nothing() -> Result<()> {
    hot_swaps_lose_and_double_nothing(plugin_bytes("json-transform"), 200_000, 50).await
}

/// Deploy `wasm` (a json-transform, in any language) `swaps` times more while `n` messages
/// flow through it, spread over the flow: every input comes out exactly once, tagged with the
/// version that processed it, versions only move forward per partition, and everything
/// produced after the last deploy ran on the last version.
pub(crate) async fn hot_swaps_lose_and_double_nothing(wasm: Vec<u8>, n: u64, swaps: u64) -> Result<()> {
    let server = Server::start()?;
    let client = server.client().await?;
    client.create_topic("in", topic(4)).await?;
    client.create_topic("out", topic(4)).await?;
    client.deploy_plugin("tagger", wasm.clone()).await?;
    client.create_pipeline(tagging("tag", "in", "out", "tagger")).await?;

    let acked = Arc::new(AtomicU64::new(0));
    let producer = {
        let (client, acked) = (server.client().await?, acked.clone());
        tokio::spawn(async move {
            for from in (0..n).step_by(1000) {
                client.produce("in", (from..from + 1000).map(json).collect()).await?;
                acked.store(from + 1000, Ordering::Relaxed);
            }
            anyhow::Ok(())
        })
    };
    // Deploy a new version each time another n/swaps messages have been acknowledged, so the
    // swaps are spread over the flow.
    for k in 1..=swaps {
        let threshold = k * n / (swaps + 1);
        eventually("the producer to advance", LONG, || async {
            Ok((acked.load(Ordering::Relaxed) >= threshold).then_some(()))
        })
        .await?;
        let info = client.deploy_plugin("tagger", wasm.clone()).await?;
        assert_eq!(u64::from(info.version), k + 1);
    }
    producer.await??;
    // Produced after the last deploy returned: these must all run on the last version.
    client.produce("in", (n..n + 1000).map(json).collect()).await?;

    let out = consume_n(&client, "out", (n + 1000) as usize, LONG).await?;
    let mut seen: HashMap<u64, u64> = HashMap::new();
    let mut last_version: BTreeMap<u32, u64> = BTreeMap::new();
    for (partition, _, r) in &out {
        let d = doc(r);
        let (id, v) = (d["id"].as_u64().expect("id"), d["v"].as_u64().expect("version tag"));
        assert!(seen.insert(id, v).is_none(), "input {id} produced two outputs");
        let prev = last_version.insert(*partition, v).unwrap_or(0);
        assert!(v >= prev, "partition {partition} went back from version {prev} to {v}");
    }
    assert_eq!(seen.len() as u64, n + 1000, "every input produced exactly one output");
    for id in n..n + 1000 {
        assert_eq!(seen[&id], swaps + 1, "input {id} after the last deploy ran on an older version");
    }
    let versions: std::collections::BTreeSet<u64> = seen.values().copied().collect();
    assert!(versions.len() as u64 > swaps / 5, "swaps happened mid-stream: versions seen {versions:?}");
    let status = client.pipeline_status("tag").await?;
    assert_eq!(status.plugins, vec![format!("tagger@{}", swaps + 1)]);
    assert!(status.swaps >= versions.len() as u64 - 1);
    Ok(())
}

/// Issue 14: a frozen 0.1.0 component and a packed 0.2.0 one run side by side in one
/// pipeline, and each step hot-swaps to the other ABI version while messages flow: nothing
/// lost, nothing doubled, each step's version moving only forward.
#[tokio::test(flavor = "multi_thread")]
async fn abi_0_1_and_0_2_steps_run_side_by_side_and_swap_versions_losing_nothing() -> Result<()> {
    let server = Server::start()?;
    let c = server.client().await?;
    c.create_topic("in", topic(2)).await?;
    c.create_topic("out", topic(2)).await?;
    // `hostile` is a 0.1.0 component (without a mode it passes every message on); `pass` and
    // json-transform are 0.2.0.
    let (v1, v2) = (plugin_bytes("hostile"), plugin_bytes("pass"));
    assert!(c.deploy_plugin("a", v1.clone()).await?.world.ends_with("@0.1.0"));
    assert!(c.deploy_plugin("b", v2.clone()).await?.world.ends_with("@0.2.0"));
    c.deploy_plugin("tag", plugin_bytes("json-transform")).await?;
    let steps = vec![step("a", &[]), step("b", &[]), step("tag", &[("set.t", "1")])];
    c.create_pipeline(pipeline("mixed", "in", "out", steps)).await?;
    // The producer runs until the swaps are done; it returns how many it produced.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producer = {
        let (c, stop) = (server.client().await?, stop.clone());
        tokio::spawn(async move {
            let mut from = 0;
            while !stop.load(Ordering::Relaxed) {
                c.produce("in", (from..from + 500).map(json).collect()).await?;
                from += 500;
            }
            anyhow::Ok(from)
        })
    };
    // Swap each step to the other ABI version, and back, while the producer runs.
    for (plugin, wasm) in [("a", &v2), ("b", &v1), ("a", &v1), ("b", &v2)] {
        let before = c.pipeline_status("mixed").await?.processed;
        eventually("the pipeline to make progress", LONG, || async {
            Ok((c.pipeline_status("mixed").await?.processed > before).then_some(()))
        })
        .await?;
        c.deploy_plugin(plugin, wasm.clone()).await?;
    }
    stop.store(true, Ordering::Relaxed);
    let n = producer.await??;
    let out = consume_n(&c, "out", n as usize, LONG).await?;
    let mut ids: Vec<u64> = out.iter().map(|(_, _, r)| doc(r)["id"].as_u64().expect("id")).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..n).collect::<Vec<_>>(), "every message exactly once");
    assert!(out.iter().all(|(_, _, r)| doc(r)["t"] == 1), "every message went through every step");
    let status = c.pipeline_status("mixed").await?;
    assert_eq!(status.plugins, vec!["a@3", "b@3", "tag@1"]);
    assert!(status.swaps >= 4, "the swaps happened: {}", status.swaps);
    assert_eq!(c.read_all("out").await?.len() as u64, n, "and nothing more");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_whose_init_fails_in_any_pipeline_is_refused_and_the_old_keeps_running() -> Result<()> {
    let server = Server::start()?;
    let client = server.client().await?;
    for t in ["in", "out", "in2", "out2"] {
        client.create_topic(t, topic(1)).await?;
    }
    client.deploy_plugin("f", plugin_bytes("json-filter")).await?;
    client.create_pipeline(pipeline("a", "in", "out", vec![step("f", &[("field", "ok"), ("equals", "true")])])).await?;
    client.create_pipeline(pipeline("b", "in2", "out2", vec![step("f", &[("field", "x"), ("op", "exists")])])).await?;

    // json-transform rejects json-filter's config keys: the deploy must fail, naming why.
    let err = client.deploy_plugin("f", plugin_bytes("json-transform")).await.expect_err("init fails");
    let msg = err.to_string();
    assert!(msg.contains("f@2 refused; f@1 keeps running"), "{msg}");
    assert!(
        msg.contains("does not start in pipeline `a` step 1") && msg.contains("unknown config key `equals`"),
        "{msg}"
    );
    assert_eq!(client.plugin_versions("f").await?.len(), 1, "the refused version is not stored");

    // Bad components are refused the same way, and nothing changes.
    for bad in [vec![], b"\0asm\x01\0\0\0".to_vec(), weir_tests::not_a_plugin(), b"garbage!".to_vec()] {
        assert!(client.deploy_plugin("f", bad).await.is_err());
    }
    client.produce("in", vec![WireRecord::value(r#"{"ok":true}"#), WireRecord::value(r#"{"ok":false}"#)]).await?;
    let out = consume_n(&client, "out", 1, LONG).await?;
    assert_eq!(text(&out[0].2), r#"{"ok":true}"#);
    for p in ["a", "b"] {
        let s = client.pipeline_status(p).await?;
        assert_eq!((s.state, s.plugins), (RunState::Running, vec!["f@1".to_string()]));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_swaps_back_and_pinned_steps_stay_put() -> Result<()> {
    let server = Server::start()?;
    let client = server.client().await?;
    for t in ["in", "out", "pinned-out"] {
        client.create_topic(t, topic(1)).await?;
    }
    let wasm = plugin_bytes("json-transform");
    client.deploy_plugin("t", wasm.clone()).await?;
    client.create_pipeline(tagging("follow", "in", "out", "t")).await?;
    client.create_pipeline(tagging("pinned", "in", "pinned-out", "t@1")).await?;
    client.deploy_plugin("t", wasm.clone()).await?;
    client.deploy_plugin("t", wasm.clone()).await?;
    assert_eq!(client.pipeline_status("follow").await?.plugins, vec!["t@3"]);
    assert_eq!(client.pipeline_status("pinned").await?.plugins, vec!["t@1"], "a pinned step is not swapped");

    client.produce("in", vec![json(1)]).await?;
    assert_eq!(doc(&consume_n(&client, "out", 1, LONG).await?[0].2)["v"], 3);
    assert_eq!(client.rollback_plugin("t", None).await?.version, 2);
    client.produce("in", vec![json(2)]).await?;
    assert_eq!(doc(&consume_n(&client, "out", 2, LONG).await?[1].2)["v"], 2);
    assert_eq!(client.rollback_plugin("t", Some(1)).await?.version, 1);
    client.produce("in", vec![json(3)]).await?;
    assert_eq!(doc(&consume_n(&client, "out", 3, LONG).await?[2].2)["v"], 1);
    let err = client.rollback_plugin("t", None).await.expect_err("nothing older");
    assert!(err.to_string().contains("oldest version"), "{err}");
    let pinned: Vec<u64> =
        consume_n(&client, "pinned-out", 3, LONG).await?.iter().map(|r| doc(&r.2)["v"].as_u64().unwrap()).collect();
    assert_eq!(pinned, vec![1, 1, 1]);

    // The live pointer survives a restart.
    let mut server = server;
    server.restart()?;
    let client = server.client().await?;
    assert_eq!(client.describe_plugin("t").await?.version, 1);
    assert_eq!(client.pipeline_status("follow").await?.plugins, vec!["t@1"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn shadow_runs_beside_live_without_emitting_then_promotes() -> Result<()> {
    let server = Server::start()?;
    let client = server.client().await?;
    client.create_topic("in", topic(2)).await?;
    client.create_topic("out", topic(2)).await?;
    let wasm = plugin_bytes("json-transform");
    client.deploy_plugin("t", wasm.clone()).await?;
    client.create_pipeline(tagging("p", "in", "out", "t")).await?;
    let shadow = client.deploy_plugin_with("t", wasm.clone(), None, true).await?;
    assert_eq!(shadow.version, 2);
    assert_eq!(client.describe_plugin("t").await?.version, 1, "a shadow does not become live");
    assert_eq!(client.pipeline_status("p").await?.shadows, vec![Some("t@2".to_string())]);

    client.produce("in", (0..100).map(json).collect()).await?;
    let out = consume_n(&client, "out", 100, LONG).await?;
    assert!(out.iter().all(|(_, _, r)| doc(r)["v"] == 1), "only the live version emits");
    let diff = eventually("the shadow to see every input", LONG, || async {
        let d = client.plugin_diff("t").await?;
        Ok((d.matched + d.differed >= 100).then_some(d))
    })
    .await?;
    // The versions tag outputs differently, so every outcome differs, with samples.
    assert_eq!((diff.matched, diff.differed, diff.shadow_failures), (0, 100, 0));
    assert_eq!((diff.live_version, diff.shadow_version), (Some(1), Some(2)));
    let sample = &diff.samples[0];
    assert!(sample.live.contains("\"v\":1") && sample.shadow.contains("\"v\":2"), "{sample:?}");
    assert!(diff.samples.len() <= 20);

    // A new shadow replaces the candidate and restarts the comparison.
    assert_eq!(client.deploy_plugin_with("t", wasm.clone(), None, true).await?.version, 3);
    assert_eq!(client.plugin_diff("t").await?.shadow_version, Some(3));
    assert_eq!(client.plugin_diff("t").await?.differed, 0);

    let promoted = client.promote_plugin("t").await?;
    assert_eq!(promoted.version, 3);
    let status = client.pipeline_status("p").await?;
    assert_eq!((status.plugins, status.shadows), (vec!["t@3".to_string()], vec![None]));
    client.produce("in", (100..110).map(json).collect()).await?;
    let out = consume_n(&client, "out", 110, LONG).await?;
    assert_eq!(out.iter().filter(|(_, _, r)| doc(r)["v"] == 3).count(), 10);
    let err = client.promote_plugin("t").await.expect_err("no shadow left");
    assert!(err.to_string().contains("no shadow"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_identical_shadow_matches_every_outcome() -> Result<()> {
    let server = Server::start()?;
    let client = server.client().await?;
    client.create_topic("in", topic(1)).await?;
    client.create_topic("out", topic(1)).await?;
    client.deploy_plugin("f", plugin_bytes("json-filter")).await?;
    client
        .create_pipeline(pipeline(
            "p",
            "in",
            "out",
            vec![step("f", &[("field", "id"), ("op", "lt"), ("equals", "50")])],
        ))
        .await?;
    client.deploy_plugin_with("f", plugin_bytes("json-filter"), None, true).await?;
    client.produce("in", (0..100).map(json).collect()).await?;
    let diff = eventually("the shadow to see every input", LONG, || async {
        let d = client.plugin_diff("f").await?;
        Ok((d.matched + d.differed >= 100).then_some(d))
    })
    .await?;
    assert_eq!((diff.matched, diff.differed), (100, 0));
    assert!(diff.samples.is_empty());
    assert_eq!(consume_n(&client, "out", 50, LONG).await?.len(), 50);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_a_plugin_in_use_is_refused_naming_the_pipelines() -> Result<()> {
    let server = Server::start()?;
    let client = server.client().await?;
    client.create_topic("in", topic(1)).await?;
    client.create_topic("out", topic(1)).await?;
    client.deploy_plugin("f", plugin_bytes("json-filter")).await?;
    client.deploy_plugin("unused", plugin_bytes("json-filter")).await?;
    client
        .create_pipeline(pipeline("uses-f", "in", "out", vec![step("f", &[("field", "a"), ("op", "exists")])]))
        .await?;
    let err = client.remove_plugin("f").await.expect_err("in use");
    assert!(err.to_string().contains("used by pipeline(s) uses-f"), "{err}");
    client.remove_plugin("unused").await?;
    let names: Vec<String> = client.list_plugins().await?.into_iter().map(|p| p.live.name).collect();
    assert_eq!(names, vec!["f"]);
    let entry = &client.list_plugins().await?[0];
    assert_eq!(entry.used_by, vec!["uses-f"]);
    client.delete_pipeline("uses-f").await?;
    client.remove_plugin("f").await?;
    assert!(client.list_plugins().await?.is_empty());
    Ok(())
}

/// What a hostile run left behind.
pub(crate) struct Hostile {
    server: Server,
    client: Client,
    /// Values that reached the sink.
    sink: Vec<String>,
    /// Dead letters.
    pub(crate) dlq: Vec<FetchedRecord>,
}

/// Run the hostile plugin in `mode` (triggered by the message `boom`) under the dead-letter
/// policy beside a healthy pipeline, and wait until both have dealt with every message.
async fn hostile(mode: &str, sandbox: Sandbox, config: &[(&str, &str)]) -> Result<Hostile> {
    hostile_with(plugin_bytes("hostile"), mode, sandbox, config).await
}

/// [`hostile`] with the misbehaving component `wasm` (the Rust, Python or JavaScript one).
pub(crate) async fn hostile_with(
    wasm: Vec<u8>,
    mode: &str,
    sandbox: Sandbox,
    config: &[(&str, &str)],
) -> Result<Hostile> {
    let server = Server::start()?;
    let client = server.client().await?;
    for t in ["in", "out", "calm-in", "calm-out"] {
        client.create_topic(t, topic(1)).await?;
    }
    client.deploy_plugin_with("hostile", wasm, Some(sandbox), false).await?;
    client.deploy_plugin("calm", plugin_bytes("json-transform")).await?;
    let mut cfg = vec![("mode", mode), ("trigger", "boom")];
    cfg.extend_from_slice(config);
    let mut spec = pipeline("hostile", "in", "out", vec![step("hostile", &cfg)]);
    spec.on_error = ErrorPolicy::DeadLetter;
    spec.max_attempts = Some(2);
    spec.backoff_ms = Some(10);
    client.create_pipeline(spec).await?;
    client
        .create_pipeline(pipeline("calm", "calm-in", "calm-out", vec![step("calm", &[("set.calm", "true")])]))
        .await?;

    client.produce("in", ["ok-1", "boom", "ok-2"].iter().map(|v| WireRecord::value(*v)).collect()).await?;
    client.produce("calm-in", (0..5_000).map(json).collect()).await?;
    // The neighbour is not held up: all of its messages come through.
    let calm = consume_n(&client, "calm-out", 5_000, LONG).await?;
    assert!(calm.iter().all(|(_, _, r)| doc(r)["calm"] == true));
    let status = eventually("the hostile pipeline to deal with every message", LONG, || async {
        let s = client.pipeline_status("hostile").await?;
        Ok((s.lag() == 0 || s.state == RunState::Halted).then_some(s))
    })
    .await?;
    assert_eq!(status.state, RunState::Running, "{:?}", status.last_error);
    let sink = client.read_all("out").await?.iter().map(|(_, _, r)| text(r)).collect();
    let dlq = client.read_all("hostile.dlq").await?.into_iter().map(|(_, _, r)| r).collect();
    Ok(Hostile { server, client, sink, dlq })
}

pub(crate) fn header<'a>(r: &'a FetchedRecord, name: &str) -> &'a str {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no header {name}: {:?}", r.headers))
}

/// The common verdict: good messages passed, the bad one is a dead letter saying why.
pub(crate) async fn assert_contained(h: &Hostile, error_contains: &str) -> Result<()> {
    assert_eq!(h.sink, vec!["ok-1", "ok-2"], "good messages around the bad one are not dead-lettered");
    assert_eq!(h.dlq.len(), 1);
    let d = &h.dlq[0];
    assert_eq!(text(d), "boom");
    let error = header(d, "weir-dlq-error");
    assert!(error.contains(error_contains), "dead-letter error: {error}");
    assert_eq!(header(d, "weir-dlq-plugin"), "hostile@1");
    assert_eq!((header(d, "weir-dlq-topic"), header(d, "weir-dlq-offset")), ("in", "1"));
    // The host is still up and serving.
    h.client.create_topic("still-alive", topic(1)).await?;
    let _ = &h.server;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_infinite_loop_is_interrupted_by_its_cpu_budget() -> Result<()> {
    let h = hostile("loop", Sandbox { cpu_ms_per_batch: 100, ..Sandbox::default() }, &[]).await?;
    assert_contained(&h, "CPU budget of 100 ms").await?;
    assert_eq!(header(&h.dlq[0], "weir-dlq-attempts"), "2", "a CPU overrun is retried");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_memory_bomb_hits_its_memory_limit() -> Result<()> {
    let h = hostile("alloc", Sandbox { memory_bytes: 16 << 20, ..Sandbox::default() }, &[]).await?;
    assert_contained(&h, "memory allocation").await
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_deep_recursion_traps() -> Result<()> {
    let h = hostile("recurse", Sandbox::default(), &[]).await?;
    assert_contained(&h, "wasm trap").await
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_panic_traps_with_its_message() -> Result<()> {
    let h = hostile("panic", Sandbox::default(), &[]).await?;
    assert_contained(&h, "hostile plugin panics on message at offset 1").await
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_gigantic_output_is_refused() -> Result<()> {
    let sandbox = Sandbox { output_bytes_per_batch: 1 << 20, ..Sandbox::default() };
    let h = hostile("huge-output", sandbox, &[("huge-mb", "4")]).await?;
    assert_contained(&h, "its limit is 1048576").await?;
    assert_eq!(header(&h.dlq[0], "weir-dlq-attempts"), "1", "a contract breach is not retried");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_wrong_outcome_count_is_a_contract_breach() -> Result<()> {
    let h = hostile("wrong-count", Sandbox::default(), &[]).await?;
    assert_contained(&h, "returned 0 outcomes for a batch of 1 messages").await
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_plugins_cannot_reach_files_sockets_environment_or_clock() -> Result<()> {
    let server = Server::start()?;
    let client = server.client().await?;
    let report = escape_report(&client).await?;
    for denied in ESCAPES_REFUSED {
        assert!(report.contains(denied), "expected {denied} in {report}");
    }
    // Grants are explicit, per version.
    client.create_topic("out2", topic(1)).await?;
    let grants = Sandbox { allow_clock: true, allow_env: vec!["HOME".into()], ..Sandbox::default() };
    client.deploy_plugin_with("escape2", plugin_bytes("hostile"), Some(grants), false).await?;
    client.create_pipeline(pipeline("p2", "in", "out2", vec![step("escape2", &[("mode", "escape")])])).await?;
    let granted = text(&consume_n(&client, "out2", 1, LONG).await?[0].2);
    assert!(granted.contains("env=OK(") && !granted.contains("clock=0 ") && !granted.ends_with("clock=0"), "{granted}");
    assert!(granted.contains("file=ERR(") && granted.contains("tcp=ERR("), "{granted}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_flood_is_rate_limited_and_a_state_bomb_refused() -> Result<()> {
    let h = hostile("log-flood", Sandbox { log_lines_per_s: 10, ..Sandbox::default() }, &[]).await?;
    assert_eq!(h.sink, vec!["ok-1", "boom", "ok-2"], "flooding the log is not an error");
    let log = h.server.log();
    let flood_lines = log.lines().filter(|l| l.contains("flood line")).count();
    assert!(flood_lines <= 10, "{flood_lines} plugin log lines passed a limit of 10 per second");
    let sandbox = Sandbox { state_bytes_per_batch: 4 << 20, ..Sandbox::default() };
    let h = hostile("state-bomb", sandbox, &[]).await?;
    assert_contained(&h, "state refused after 7 writes").await
}

#[tokio::test(flavor = "multi_thread")]
async fn policies_skip_retry_and_replay_dead_letters() -> Result<()> {
    let server = Server::start()?;
    let client = server.client().await?;
    for t in ["in", "skipped", "dead", "replayed"] {
        client.create_topic(t, topic(1)).await?;
    }
    client.deploy_plugin("h", plugin_bytes("hostile")).await?;
    let mut skip = pipeline("skip", "in", "skipped", vec![step("h", &[("mode", "fail"), ("trigger", "bad")])]);
    skip.on_error = ErrorPolicy::Skip;
    client.create_pipeline(skip).await?;
    let mut dl = pipeline("dl", "in", "dead", vec![step("h", &[("mode", "fail-retryable"), ("trigger", "bad")])]);
    dl.on_error = ErrorPolicy::DeadLetter;
    dl.max_attempts = Some(3);
    dl.backoff_ms = Some(5);
    dl.dead_letter_topic = Some("dl-letters".into());
    client.create_pipeline(dl).await?;
    let records = vec![
        WireRecord::value("a"),
        WireRecord {
            key: Some(ByteBuf::from(b"k".to_vec())),
            value: ByteBuf::from(b"bad".to_vec()),
            headers: vec![("trace".into(), "t1".into())],
        },
        WireRecord::value("b"),
    ];
    client.produce("in", records).await?;

    assert_eq!(
        consume_n(&client, "skipped", 2, LONG).await?.iter().map(|r| text(&r.2)).collect::<Vec<_>>(),
        vec!["a", "b"]
    );
    let skip = eventually("skip to finish", LONG, || async {
        let s = client.pipeline_status("skip").await?;
        Ok((s.lag() == 0).then_some(s))
    })
    .await?;
    assert_eq!((skip.failed, skip.dead_lettered, skip.retries), (1, 0, 0), "a non-retryable failure is not retried");
    assert!(skip.last_error.unwrap_or_default().contains("this message is bad"));

    let letters = consume_n(&client, "dl-letters", 1, LONG).await?;
    let d = &letters[0].2;
    assert_eq!((text(d).as_str(), header(d, "weir-dlq-attempts"), header(d, "trace")), ("bad", "3", "t1"));
    assert!(header(d, "weir-dlq-error").contains("a dependency is busy (retryable)"));
    assert_eq!(d.key.as_deref().map(|k| k.as_slice()), Some(&b"k"[..]), "the key is kept");
    let dl = eventually("dl to finish", LONG, || async {
        let s = client.pipeline_status("dl").await?;
        Ok((s.lag() == 0).then_some(s))
    })
    .await?;
    assert_eq!((dl.failed, dl.dead_lettered, dl.retries), (1, 1, 2));

    // Replay through the CLI: original payload, key and headers, without the weir-dlq ones.
    let replay = || {
        std::process::Command::new(weir_tests::weir_bin())
            .args(["dlq", "replay", "dl-letters", "--to", "replayed"])
            .env("WEIR_SERVER", server.addr.to_string())
            .output()
    };
    let out = replay()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("replayed 1 dead letter(s)"));
    let back = consume_n(&client, "replayed", 1, LONG).await?;
    assert_eq!(text(&back[0].2), "bad");
    assert_eq!(back[0].2.headers, vec![("trace".to_string(), "t1".to_string())]);
    let again = replay()?;
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("replayed 0 dead letter(s)"),
        "a second replay sends nothing new"
    );
    Ok(())
}

/// Each counter is defined once (issue 35): a message is counted once, by the result that
/// stands — a batch re-run one by one after a failure, or a retried message, is not counted
/// again; retries show as calls. So at every step inputs = outputs + dropped + errors, and
/// the pipeline's totals match its first step's.
#[tokio::test(flavor = "multi_thread")]
async fn counters_count_each_message_once_through_retries_and_re_runs() -> Result<()> {
    let server = Server::start()?;
    let client = server.client().await?;
    for t in ["in", "out"] {
        client.create_topic(t, topic(1)).await?;
    }
    client.deploy_plugin("h", plugin_bytes("hostile")).await?;
    let mut dl = pipeline("count", "in", "out", vec![step("h", &[("mode", "fail-retryable"), ("trigger", "bad")])]);
    dl.on_error = ErrorPolicy::DeadLetter;
    dl.max_attempts = Some(3);
    dl.backoff_ms = Some(1);
    dl.dead_letter_topic = Some("count-dlq".into());
    client.create_pipeline(dl).await?;
    // 1,000 messages in batches of 100, 4 of them bad: each bad batch fails on the fast path
    // and is re-run one by one, where its bad message is tried 3 times.
    for chunk in 0..10 {
        let records = (0..100)
            .map(|i| {
                let n = chunk * 100 + i;
                WireRecord::value(if n % 250 == 7 { "bad".to_string() } else { format!("m{n}") })
            })
            .collect();
        client.produce("in", records).await?;
    }
    let s = eventually("the pipeline to finish", LONG, || async {
        let s = client.pipeline_status("count").await?;
        Ok((s.lag() == 0).then_some(s))
    })
    .await?;
    assert_eq!((s.processed, s.failed, s.dead_lettered, s.retries), (1000, 4, 4, 8), "{s:?}");
    let st = &s.steps[0];
    assert_eq!((st.input, st.output, st.dropped, st.errors), (1000, 996, 0, 4), "{st:?}");
    assert_eq!(st.input, st.output + st.dropped + st.errors, "inputs = outputs + dropped + errors");
    assert_eq!(s.emitted, st.output, "the pipeline's outputs are its last step's");
    assert!(st.calls > 1000 / 100, "retries and re-runs show as calls: {}", st.calls);
    Ok(())
}
