//! The plugin author's path: every SDK kind scaffolded, built and run as a real component; the
//! scaffold → build → test → deploy → hot-swap loop, also through `deploy --watch`; and the
//! library plugins not covered elsewhere (enrich, schema-validate, redact).

use std::path::{Path, PathBuf};

use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Result, bail};
use serde_bytes::ByteBuf;
use weir_tests::weir_client::client::Client;
use weir_tests::weir_client::wire::ErrorPolicy;
use weir_tests::weir_client::wire::WireRecord;
use weir_tests::{Server, Watcher, consume_n, eventually, pipeline, plugin_bytes, step, text, topic, weir_cli as weir};

const LONG: Duration = Duration::from_secs(300);

/// Scaffolded crates share one target dir (their dependencies build once); cargo serialises
/// builds in it anyway, so tests take turns.
static BUILDS: Mutex<()> = Mutex::new(());

/// The target dir of this test run (`<target>/<profile>/deps/all-…` → `<target>`).
fn target_root() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    exe.parent().and_then(Path::parent).and_then(Path::parent).expect("target dir").to_path_buf()
}

/// Where scaffolded crates build: what `weir plugin build` picks with `CARGO_TARGET_DIR` set
/// to [`target_root`].
fn scaffold_target() -> PathBuf {
    target_root().join("weir-plugins")
}

/// `weir plugin new` then `weir plugin build`; returns the component path (the build's last
/// output line).
fn new_and_build(dir: &Path, name: &str, kind: &str) -> Result<PathBuf> {
    let sdk = weir_tests::workspace_root().join("sdk");
    let dir_s = dir.to_str().expect("utf-8 path");
    weir(&["plugin", "new", name, "--kind", kind, "--dir", dir_s, "--sdk-path", sdk.to_str().expect("utf-8")], None)?;
    build(dir)
}

fn build(dir: &Path) -> Result<PathBuf> {
    let _turn = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
    let target = scaffold_target();
    let out = weir(
        &["plugin", "build", dir.to_str().expect("utf-8"), "--target-dir", target.to_str().expect("utf-8")],
        None,
    )?;
    let last = out.lines().last().unwrap_or_default();
    let path = PathBuf::from(last);
    assert!(path.exists() && last.ends_with(".wasm"), "the last line names the component: {out:?}");
    Ok(path)
}

/// Run `input` through a one-step pipeline of `wasm` and return the sink's values.
async fn run_through(
    client: &Client,
    name: &str,
    wasm: &Path,
    config: &[(&str, &str)],
    input: Vec<WireRecord>,
    expect: usize,
) -> Result<Vec<String>> {
    let (src, sink) = (format!("{name}-in"), format!("{name}-out"));
    client.create_topic(&src, topic(1)).await?;
    client.create_topic(&sink, topic(1)).await?;
    client.deploy_plugin(name, std::fs::read(wasm)?).await?;
    client.create_pipeline(pipeline(name, &src, &sink, vec![step(name, config)])).await?;
    client.produce(&src, input).await?;
    let out = consume_n(client, &sink, expect, LONG).await?;
    eventually("the pipeline to catch up", LONG, || async {
        let s = client.pipeline_status(name).await?;
        Ok((s.lag() == 0).then_some(()))
    })
    .await?;
    assert_eq!(client.read_all(&sink).await?.len(), expect, "{name}: exactly {expect} outputs");
    Ok(out.iter().map(|(_, _, r)| text(r)).collect())
}

fn values(vs: &[&str]) -> Vec<WireRecord> {
    vs.iter().map(|v| WireRecord::value(*v)).collect()
}

/// A scaffolded Rust crate names no path of the machine it was made on. Moved elsewhere
/// without its `.cargo/config.toml` (a clone has none: the scaffold's `.gitignore` keeps it
/// out), it builds and its unit tests run, and the build writes that file again for plain
/// cargo and editors.
#[test]
fn a_rust_scaffold_names_no_machine_path_and_builds_after_a_move() -> Result<()> {
    let work = tempfile::tempdir()?;
    let made = work.path().join("made-here");
    let sdk = std::fs::canonicalize(weir_tests::workspace_root().join("sdk"))?;
    let sdk_s = sdk.to_str().expect("utf-8");
    weir(
        &["plugin", "new", "moved", "--kind", "filter", "--dir", made.to_str().expect("utf-8"), "--sdk-path", sdk_s],
        None,
    )?;
    let manifest = std::fs::read_to_string(made.join("Cargo.toml"))?;
    assert!(!manifest.contains(sdk_s) && !manifest.contains("path ="), "the manifest names a path:\n{manifest}");
    assert!(manifest.contains("weir-sdk = \"0.1\""), "{manifest}");
    let ignored = std::fs::read_to_string(made.join(".gitignore"))?;
    assert!(ignored.lines().any(|l| l == "/.cargo/config.toml"), "{ignored}");
    let moved = work.path().join("cloned/elsewhere");
    std::fs::create_dir_all(work.path().join("cloned"))?;
    std::fs::rename(&made, &moved)?;
    std::fs::remove_file(moved.join(".cargo/config.toml"))?;
    // No --sdk-path: the weir building it hands it the SDK it was built with.
    let wasm = build(&moved)?;
    assert!(std::fs::metadata(&wasm)?.len() > 0);
    let config = std::fs::read_to_string(moved.join(".cargo/config.toml"))?;
    assert!(config.contains(sdk_s) && config.contains("[patch.crates-io]"), "{config}");
    let _turn = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
    let out = std::process::Command::new(weir_tests::weir_bin())
        .args(["plugin", "unit", moved.to_str().expect("utf-8")])
        .env("CARGO_TARGET_DIR", scaffold_target())
        .output()?;
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && printed.contains("test result: ok"), "weir plugin unit: {printed}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_sdk_kind_scaffolds_builds_and_runs_as_a_component() -> Result<()> {
    let work = tempfile::tempdir()?;
    let server = Server::start()?;
    let c = server.client().await?;
    let kind = |k: &str| new_and_build(&work.path().join(k), &format!("k-{k}"), k);

    // Config values are text: a value of digits configures a text setting (issue 20).
    let filter = kind("filter")?;
    let input = work.path().join("in.jsonl");
    std::fs::write(&input, "{\"a\":1}\n{\"a\":2}\n")?;
    let wasm = filter.to_str().expect("utf-8");
    let args = ["plugin", "test", wasm, "--input", input.to_str().expect("utf-8"), "--config", "field=a"];
    let local = weir(&[&args[..], &["--config", "value=1"]].concat(), None)?;
    assert_eq!(local, "#0 {\"a\":1} → kept (unchanged)\n#1 {\"a\":2} → dropped\n");
    let out = run_through(
        &c,
        "filter",
        &filter,
        &[("field", "s"), ("value", "007")],
        values(&[r#"{"s":"007"}"#, r#"{"s":7}"#, r#"{"s":"no"}"#]),
        1,
    )
    .await?;
    assert_eq!(out, vec![r#"{"s":"007"}"#]);
    let config = [("fee_cents", "5"), ("account", "0042")];
    let map = kind("map")?;
    // The map declares what it writes with `weir_sdk::schemas!`: it is in the component.
    let declared = weir(&["plugin", "schemas", map.to_str().expect("utf-8")], None)?;
    assert!(declared.contains("writes: an inline JSON schema"), "{declared}");
    let out = run_through(&c, "map", &map, &config, values(&[r#"{"id":3,"total_cents":100}"#]), 1).await?;
    assert_eq!(out, vec![r#"{"order":3,"account":"0042","amount_cents":105}"#]);
    // A failed input fails `weir plugin test`, so it can gate CI, unless failures are expected.
    std::fs::write(&input, "{\"id\":1,\"total_cents\":100}\nnot json\n")?;
    let args = ["plugin", "test", map.to_str().expect("utf-8"), "--input", input.to_str().expect("utf-8")];
    let out = std::process::Command::new(weir_tests::weir_bin()).args(args).output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("1 of the inputs failed"), "{:?}: {stderr}", out.status);
    weir(&[&args[..], &["--expect-failures"]].concat(), None)?;
    let out = run_through(&c, "fmap", &kind("filter-map")?, &[], values(&["1.5", "x", "2"]), 2).await?;
    assert_eq!(out, vec!["1.5", "2.0"]);
    let out = run_through(&c, "flat", &kind("flat-map")?, &[], values(&["a b c"]), 3).await?;
    assert_eq!(out, vec!["a", "b", "c"]);
    c.create_topic("urgent", topic(1)).await?;
    let high = WireRecord {
        key: None,
        value: ByteBuf::from(b"fire".to_vec()),
        headers: vec![("priority".into(), "high".into())],
    };
    let out = run_through(&c, "route", &kind("route")?, &[], vec![high, WireRecord::value("calm")], 1).await?;
    assert_eq!(
        (out, text(&consume_n(&c, "urgent", 1, LONG).await?[0].2)),
        (vec!["calm".to_string()], "fire".to_string())
    );
    let pay = |id: &str, cents: i64| WireRecord {
        key: None,
        value: ByteBuf::from(format!(r#"{{"account":"a","cents":{cents}}}"#).into_bytes()),
        headers: vec![("weir-idempotency-key".into(), id.into())],
    };
    let payments = vec![pay("p1", 10), pay("p1", 10), pay("p2", 5)];
    let out = run_through(&c, "handler", &kind("handler")?, &[("currency", "978")], payments, 2).await?;
    assert_eq!(
        out,
        vec![
            r#"{"account":"a","balance_cents":10,"currency":"978"}"#,
            r#"{"account":"a","balance_cents":15,"currency":"978"}"#
        ],
        "the repeated payment was handled once"
    );
    let plug = run_through(&c, "plugin", &kind("plugin")?, &[], values(&["hi"]), 1).await?;
    assert_eq!(plug, vec!["HI"]);
    // Aggregate: counts close when a later window starts; a tiny window keeps the test short.
    let wasm = kind("aggregate")?;
    c.create_topic("agg-in", topic(1)).await?;
    c.create_topic("agg-out", topic(1)).await?;
    c.deploy_plugin("agg", std::fs::read(&wasm)?).await?;
    c.create_pipeline(pipeline("agg", "agg-in", "agg-out", vec![step("agg", &[("window", "1ms"), ("tag", "01")])]))
        .await?;
    let keyed = |k: &str| WireRecord {
        key: Some(ByteBuf::from(k.as_bytes().to_vec())),
        value: ByteBuf::from(b"x".to_vec()),
        headers: vec![],
    };
    c.produce("agg-in", vec![keyed("a"), keyed("a")]).await?;
    // Once the clock has passed their append time, a new message falls in a later 1 ms window
    // and closes the first.
    let appended = c.read_all("agg-in").await?[1].2.timestamp_ms;
    eventually("the clock to pass the first window", LONG, || async {
        Ok((weir_tests::weir_host::types::now_ms() > appended).then_some(()))
    })
    .await?;
    c.produce("agg-in", vec![keyed("b")]).await?;
    let closed = consume_n(&c, "agg-out", 1, LONG).await?;
    assert!(text(&closed[0].2).starts_with("01/a: "), "{}", text(&closed[0].2));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn scaffold_build_test_deploy_and_hot_swap() -> Result<()> {
    let work = tempfile::tempdir()?;
    let dir = work.path().join("shout");
    let wasm = new_and_build(&dir, "shout", "plugin")?;
    // Test locally, without a server.
    let input = work.path().join("in.jsonl");
    std::fs::write(&input, "hello\nworld\n")?;
    let local = weir(&["plugin", "test", wasm.to_str().unwrap(), "--input", input.to_str().unwrap()], None)?;
    assert_eq!(local, "#0 hello → HELLO\n#1 world → WORLD\n");
    let json = weir(&["plugin", "test", wasm.to_str().unwrap(), "--input", input.to_str().unwrap(), "--json"], None)?;
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap())?;
    assert_eq!(first["outputs"][0]["value"], "HELLO");

    let server = Server::start()?;
    let c = server.client().await?;
    c.create_topic("words", topic(1)).await?;
    c.create_topic("loud", topic(1)).await?;
    weir(&["plugin", "deploy", "shout", wasm.to_str().unwrap()], Some(&server))?;
    weir(&["pipeline", "create", "loud", "--source", "words", "--plugin", "shout", "--sink", "loud"], Some(&server))?;
    c.produce("words", values(&["one"])).await?;
    assert_eq!(text(&consume_n(&c, "loud", 1, LONG).await?[0].2), "ONE");

    // Change the code, rebuild, redeploy: the running pipeline swaps to it.
    let lib = dir.join("src/lib.rs");
    let code = std::fs::read_to_string(&lib)?
        .replace("msg.text()?.to_uppercase()", "format!(\"{}!\", msg.text()?.to_uppercase())");
    std::fs::write(&lib, code)?;
    let v2 = build(&dir)?;
    let out = weir(&["plugin", "deploy", "shout", v2.to_str().unwrap()], Some(&server))?;
    assert!(out.contains("shout@2"), "{out}");
    c.produce("words", values(&["two"])).await?;
    assert_eq!(text(&consume_n(&c, "loud", 2, LONG).await?[1].2), "TWO!");

    // Watch mode: the code as deployed adds no version (the live one has these bytes); every
    // save after is rebuilt and swapped in.
    let watcher = Watcher::start(&server, "shout", &dir, &[("CARGO_TARGET_DIR", &target_root())])?;
    eventually("the watcher to find shout@2 live with its bytes", LONG, || async {
        Ok(watcher.printed().contains("shout@2 is live with these bytes: nothing to deploy").then_some(()))
    })
    .await?;
    assert_eq!(c.describe_plugin("shout").await?.version, 2, "{}", watcher.printed());
    let code = std::fs::read_to_string(&lib)?.replace("\"{}!\"", "\"{}?\"");
    std::fs::write(&lib, code)?;
    eventually("watch to deploy version 3", LONG, || async {
        Ok((c.describe_plugin("shout").await?.version == 3).then_some(()))
    })
    .await?;
    c.produce("words", values(&["three"])).await?;
    assert_eq!(text(&consume_n(&c, "loud", 3, LONG).await?[2].2), "THREE?");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn enrich_joins_a_table_kept_in_state() -> Result<()> {
    let server = Server::start()?;
    let c = server.client().await?;
    let config =
        [("by", "field:customer"), ("into", "profile"), ("table.c1", r#"{"tier":"gold"}"#), ("missing", "pass")];
    let update = WireRecord {
        key: None,
        value: ByteBuf::from(br#"{"key":"c2","value":{"tier":"silver"}}"#.to_vec()),
        headers: vec![("weir-type".into(), "enrich-update".into())],
    };
    let input = vec![
        WireRecord::value(r#"{"customer":"c1"}"#),
        WireRecord::value(r#"{"customer":"c2"}"#),
        update,
        WireRecord::value(r#"{"customer":"c2"}"#),
    ];
    let wasm = weir_tests::plugin("enrich");
    let out = run_through(&c, "enrich", &wasm, &config, input, 3).await?;
    assert_eq!(
        out,
        vec![
            r#"{"customer":"c1","profile":{"tier":"gold"}}"#,
            r#"{"customer":"c2"}"#,
            r#"{"customer":"c2","profile":{"tier":"silver"}}"#
        ]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_validate_dead_letters_invalid_messages_with_the_reason() -> Result<()> {
    let server = Server::start()?;
    let c = server.client().await?;
    c.create_topic("in", topic(1)).await?;
    c.create_topic("valid", topic(1)).await?;
    c.deploy_plugin("schema", plugin_bytes("schema-validate")).await?;
    let schema = r#"{"type":"object","required":["id"],"properties":{"id":{"type":"integer"}}}"#;
    let mut spec = pipeline("v", "in", "valid", vec![step("schema", &[("schema", schema)])]);
    spec.on_error = ErrorPolicy::DeadLetter;
    c.create_pipeline(spec).await?;
    c.produce("in", values(&[r#"{"id":1}"#, r#"{"id":"one"}"#, r#"{}"#])).await?;
    assert_eq!(text(&consume_n(&c, "valid", 1, LONG).await?[0].2), r#"{"id":1}"#);
    let dead = consume_n(&c, "v.dlq", 2, LONG).await?;
    let reason = |i: usize| {
        dead[i].2.headers.iter().find(|(k, _)| k == "weir-dlq-error").map(|(_, v)| v.clone()).unwrap_or_default()
    };
    assert!(reason(0).contains("/id") && reason(0).contains("integer"), "{}", reason(0));
    assert!(reason(1).contains("\"id\" is a required property"), "{}", reason(1));
    assert_eq!(
        dead[1].2.headers.iter().find(|(k, _)| k == "weir-dlq-attempts").map(|(_, v)| v.as_str()),
        Some("1"),
        "invalid data is not retried"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn redact_masks_fields_emails_and_card_numbers() -> Result<()> {
    let server = Server::start()?;
    let c = server.client().await?;
    let input = values(&[
        r#"{"name":"Jo","card":"4111 1111 1111 1111","note":"mail jo@example.org, card 5500-0000-0000-0004"}"#,
    ]);
    let wasm = weir_tests::plugin("redact");
    let out = run_through(&c, "redact", &wasm, &[("fields", "card"), ("emails", "true"), ("cards", "true")], input, 1)
        .await?;
    assert_eq!(out, vec![r#"{"card":"***","name":"Jo","note":"mail j***@example.org, card **** **** **** 0004"}"#]);
    Ok(())
}

/// Run an example script with the test build of `weir` and return its output.
pub(crate) fn run_example(script: &str, env: &[(&str, &str)]) -> Result<String> {
    // Run as a user would, without `cargo test`'s variables, so its builds are the test build.
    let out = weir_tests::without_cargo_env(weir_tests::workspace_root().join(script))
        .env("WEIR_PROFILE", "dev")
        .envs(env.iter().copied())
        .output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("{script} failed:\n{text}");
    }
    Ok(text)
}

#[test]
fn the_readme_quickstart_runs() -> Result<()> {
    let _turn = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
    let out = run_example("examples/quickstart/run.sh", &[])?;
    assert!(out.contains("== OK: 1000 orders in, 250 billed orders out"), "{out}");
    Ok(())
}
