//! Plugins in Python and JavaScript: scaffolded, unit-tested in their own runners, built by
//! `weir plugin build`, deployed (in parts: they embed an interpreter) and hot-swapped like
//! Rust plugins; the sandbox and lifecycle cases that hold for Rust hold for them; the
//! library plugins agree across the three languages; and the e-commerce flow runs services
//! written in all three.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};
use weir_tests::weir_client::wire::{FetchedRecord, Sandbox, WireRecord};
use weir_tests::{
    Server, Watcher, consume_n, eventually, pipeline, plugin_bytes, polyglot_build, polyglot_bytes, step, text, topic,
    weir_cli as weir,
};

use crate::lifecycle::{assert_contained, hostile_with, hot_swaps_lose_and_double_nothing};

const LONG: Duration = Duration::from_secs(300);

/// The languages besides Rust, with their projects' prefix under `plugins/`.
#[derive(Clone, Copy, Debug)]
enum Lang {
    Python,
    Js,
}

impl Lang {
    fn flag(self) -> &'static str {
        match self {
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }

    /// `plugins/<prefix>-<name>`.
    fn library(self, name: &str) -> Vec<u8> {
        let prefix = match self {
            Lang::Python => "py",
            Lang::Js => "js",
        };
        polyglot_bytes(&format!("{prefix}-{name}"))
    }

    /// Run the project's unit tests in the language's own runner, without a server; returns
    /// how many passed.
    fn unit_tests(self, dir: &Path) -> Result<usize> {
        // As a user runs them: `weir plugin unit` picks the runner weir installed.
        let mut cmd = Command::new(weir_tests::weir_bin());
        cmd.args(["plugin", "unit"]);
        let out = cmd.current_dir(dir).output()?;
        let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            bail!("{self:?} unit tests failed in {}:\n{printed}", dir.display());
        }
        // pytest: "3 passed in 0.05s"; node: "# pass 3".
        let passed = printed
            .lines()
            .find_map(|l| match self {
                Lang::Python => l.split(" passed").next().filter(|_| l.contains(" passed")).map(str::trim),
                Lang::Js => l.strip_prefix("# pass "),
            })
            .and_then(|n| n.rsplit(' ').next()?.parse().ok());
        passed.filter(|n| *n > 0).ok_or_else(|| anyhow::anyhow!("no passing tests reported:\n{printed}"))
    }
}

/// The map scaffold (orders → invoices, adding `fee_cents`, tagging `account`) end to end, as
/// a user would: `weir plugin new --lang`, the unit tests in the language's own runner,
/// `weir plugin build`, `weir plugin test`, a deploy (in parts) into a running pipeline,
/// then `deploy --watch` rebuilding and hot-swapping each saved edit, nothing lost.
async fn scaffold_to_hot_swap(lang: Lang) -> Result<()> {
    let work = tempfile::tempdir()?;
    let dir = work.path().join("invoices");
    let (dir_s, sdk) = (dir.to_str().expect("utf-8"), weir_tests::workspace_root().join("sdk"));
    let flags = ["--lang", lang.flag(), "--kind", "map", "--dir", dir_s, "--sdk-path", sdk.to_str().expect("utf-8")];
    let created = weir(&[&["plugin", "new", "invoices"][..], &flags].concat(), None)?;
    assert!(created.contains("created"), "{created}");
    // A project holds no path of this machine: moved and cloned (node_modules is not
    // committed), it tests and builds the same.
    for manifest in ["pyproject.toml", "package.json"] {
        let text = std::fs::read_to_string(dir.join(manifest)).unwrap_or_default();
        assert!(!text.contains(sdk.to_str().expect("utf-8")) && !text.contains("\"*\""), "{manifest}: {text}");
    }
    let moved = work.path().join("elsewhere");
    std::fs::create_dir(&moved)?;
    std::fs::rename(&dir, moved.join("invoices"))?;
    let dir = moved.join("invoices");
    let _ = std::fs::remove_dir_all(dir.join("node_modules"));
    let passed = lang.unit_tests(&dir)?;
    assert!(passed >= 2, "{lang:?}: the scaffold's unit tests ({passed} passed)");

    let wasm = polyglot_build(&dir);
    // The manifest declares what the map writes; the build embedded it.
    let declared = weir(&["plugin", "schemas", wasm.to_str().expect("utf-8")], None)?;
    assert!(declared.contains("writes: an inline JSON schema"), "{lang:?}: {declared}");
    let size = std::fs::metadata(&wasm)?.len();
    assert!(size > 4 << 20, "{lang:?}: {size} bytes, so the deploy below goes in parts");
    let input = work.path().join("in.jsonl");
    std::fs::write(&input, "{\"id\":1,\"total_cents\":100}\n{\"id\":2,\"total_cents\":250}\n")?;
    let wasm_s = wasm.to_str().expect("utf-8");
    let input_s = input.to_str().expect("utf-8");
    let local = weir(
        &["plugin", "test", wasm_s, "--input", input_s, "--json", "--config", "fee_cents=5", "--config", "account=007"],
        None,
    )?;
    let outs: Vec<serde_json::Value> = local.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    let invoice = |o: &serde_json::Value| -> serde_json::Value {
        serde_json::from_str(o["outputs"][0]["value"].as_str().expect("a text output")).expect("JSON output")
    };
    assert_eq!(invoice(&outs[1]), serde_json::json!({"order": 2, "account": "007", "amount_cents": 255}));

    let server = Server::start()?;
    let c = server.client().await?;
    c.create_topic("orders", topic(2)).await?;
    c.create_topic("invoices", topic(2)).await?;
    let order = |i: u64| WireRecord::value(format!(r#"{{"id":{i},"total_cents":100}}"#));
    let watcher = Watcher::start(&server, "invoices", &dir, &[])?;
    eventually("watch to deploy version 1", LONG, || async {
        Ok(c.describe_plugin("invoices").await.ok().filter(|p| p.version == 1).map(|_| ()))
    })
    .await?;
    let spec = pipeline("bill", "orders", "invoices", vec![step("invoices", &[("fee_cents", "5")])]);
    c.create_pipeline(spec).await?;
    c.produce("orders", (0..100).map(order).collect()).await?;
    // Save an edit while messages flow: the watcher rebuilds and swaps it in.
    let source = dir.join(match lang {
        Lang::Python => "plugin.py",
        Lang::Js => "src/plugin.js",
    });
    let code = std::fs::read_to_string(&source)?;
    assert!(code.contains("order.total_cents +"), "the template changed: {code}");
    std::fs::write(&source, code.replace("order.total_cents +", "2 * order.total_cents +"))?;
    eventually("watch to deploy version 2", LONG, || async {
        Ok((c.describe_plugin("invoices").await?.version == 2).then_some(()))
    })
    .await?;
    c.produce("orders", (100..200).map(order).collect()).await?;
    let out = consume_n(&c, "invoices", 200, LONG).await?;
    let mut amounts = std::collections::BTreeMap::new();
    for (_, _, r) in &out {
        let d = doc(r);
        assert!(amounts.insert(d["order"].as_u64().expect("order"), d["amount_cents"].clone()).is_none());
    }
    assert_eq!(amounts.len(), 200, "every order invoiced once");
    for i in 100..200 {
        assert_eq!(amounts[&i], 205, "{lang:?}: order {i}, produced after the swap, ran on version 2");
    }
    assert!(amounts.values().all(|a| *a == 105 || *a == 205));

    // Unchanged code gives the same component (componentize-py and -js cannot reproduce their
    // bytes, so the build reuses its last output) and a restarted watcher deploys nothing.
    drop(watcher);
    let dir_s = dir.to_str().expect("utf-8");
    let sha = |p: &std::path::Path| std::fs::read(p).map(|b| blake3::hash(&b).to_hex().to_string());
    let again = std::process::Command::new(weir_tests::weir_bin()).args(["plugin", "build", dir_s]).output()?;
    let printed = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success() && printed.contains("unchanged since the last build"), "{lang:?}: {printed}");
    let built = dir.join("build").join("invoices.wasm");
    let live = c.describe_plugin("invoices").await?;
    assert_eq!(sha(&built)?, live.hash, "{lang:?}: the rebuilt component is the live one");
    let restarted = Watcher::start(&server, "invoices", &dir, &[])?;
    eventually("the restarted watcher to find nothing to deploy", LONG, || async {
        Ok(restarted.printed().contains("invoices@2 is live with these bytes: nothing to deploy").then_some(()))
    })
    .await?;
    assert_eq!(c.plugin_versions("invoices").await?.len(), 2, "{lang:?}: {}", restarted.printed());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_plugin_goes_from_scaffold_to_hot_swap() -> Result<()> {
    scaffold_to_hot_swap(Lang::Python).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_js_plugin_goes_from_scaffold_to_hot_swap() -> Result<()> {
    scaffold_to_hot_swap(Lang::Js).await
}

/// The SDKs' own unit tests and those of every Python and JavaScript plugin in the tree pass
/// in their languages' runners (pytest, node's test runner), without a server.
#[test]
fn the_sdks_and_every_polyglot_plugin_pass_their_unit_tests() -> Result<()> {
    let root = weir_tests::workspace_root();
    let mut projects = vec![(Lang::Python, root.join("sdk/python")), (Lang::Js, root.join("sdk/js"))];
    for parent in [root.join("plugins"), root.join("examples/ecommerce/services")] {
        for entry in std::fs::read_dir(parent)? {
            let dir = entry?.path();
            if dir.join("pyproject.toml").exists() {
                projects.push((Lang::Python, dir));
            } else if dir.join("package.json").exists() {
                // What `weir plugin new` and `build` make: @weir/sdk resolved to the tree's SDK.
                let link = dir.join("node_modules/@weir/sdk");
                if !link.exists() {
                    std::fs::create_dir_all(dir.join("node_modules/@weir"))?;
                    let _ = std::fs::remove_file(&link);
                    std::os::unix::fs::symlink(root.join("sdk/js"), &link)?;
                }
                projects.push((Lang::Js, dir));
            }
        }
    }
    let mut passed = 0;
    for (lang, dir) in &projects {
        passed += lang.unit_tests(dir)?;
    }
    assert!(projects.len() >= 10, "{projects:?}");
    assert!(passed >= 100, "{passed} unit tests passed across {} projects", projects.len());
    Ok(())
}

fn doc(r: &FetchedRecord) -> serde_json::Value {
    serde_json::from_slice(&r.value).unwrap_or_else(|_| panic!("not JSON: {}", text(r)))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_json_transform_hot_swaps_under_load_losing_and_doubling_nothing() -> Result<()> {
    hot_swaps_lose_and_double_nothing(Lang::Python.library("json-transform"), 20_000, 5).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_js_json_transform_hot_swaps_under_load_losing_and_doubling_nothing() -> Result<()> {
    hot_swaps_lose_and_double_nothing(Lang::Js.library("json-transform"), 20_000, 5).await
}

/// A trap (Python's `weir.abort`, JavaScript's `abort`) fails only its message, which is
/// dead-lettered after its attempts with the reason the plugin gave, as a Rust panic is; the
/// messages around it and a neighbouring pipeline pass.
#[tokio::test(flavor = "multi_thread")]
async fn traps_in_python_and_js_plugins_are_dead_lettered_and_contained() -> Result<()> {
    for lang in [Lang::Python, Lang::Js] {
        let h = hostile_with(lang.library("hostile"), "panic", Sandbox::default(), &[]).await?;
        assert_contained(&h, "the plugin printed: abort: hostile plugin panics on message at offset 1").await?;
        let error = crate::lifecycle::header(&h.dlq[0], "weir-dlq-error");
        assert!(error.contains("plugin trapped"), "{lang:?}: {error}");
    }
    Ok(())
}

/// An endless loop in Python or JavaScript is interrupted by the CPU budget like one in Rust.
#[tokio::test(flavor = "multi_thread")]
async fn cpu_loops_in_python_and_js_plugins_are_stopped_by_the_budget() -> Result<()> {
    for lang in [Lang::Python, Lang::Js] {
        let sandbox = Sandbox { cpu_ms_per_batch: 300, ..Sandbox::default() };
        let h = hostile_with(lang.library("hostile"), "loop", sandbox, &[]).await?;
        assert_contained(&h, "CPU budget of 300 ms").await?;
    }
    Ok(())
}

/// Failures a plugin reports itself keep their kind across languages: a retryable one is
/// retried, then dead-lettered with the plugin's own text.
#[tokio::test(flavor = "multi_thread")]
async fn python_and_js_failures_are_retried_or_not_as_the_plugin_says() -> Result<()> {
    for lang in [Lang::Python, Lang::Js] {
        let h = hostile_with(lang.library("hostile"), "fail-retryable", Sandbox::default(), &[]).await?;
        assert_contained(&h, "a dependency is busy").await?;
        assert_eq!(crate::lifecycle::header(&h.dlq[0], "weir-dlq-attempts"), "2", "{lang:?}: retried once");
        let h = hostile_with(lang.library("hostile"), "fail", Sandbox::default(), &[]).await?;
        assert_contained(&h, "this message is bad").await?;
        assert_eq!(crate::lifecycle::header(&h.dlq[0], "weir-dlq-attempts"), "1", "{lang:?}: a fatal failure");
    }
    Ok(())
}

/// What reached a sink: partition, offset, key, headers, the value's text.
type Written = (u32, u64, Option<Vec<u8>>, Vec<(String, String)>, String);

/// The library's json-filter and json-transform, in Rust, Python and JavaScript, read the same
/// topic with the same config and write byte-identical sinks.
#[tokio::test(flavor = "multi_thread")]
async fn library_plugins_agree_across_rust_python_and_js() -> Result<()> {
    let server = Server::start()?;
    let c = server.client().await?;
    c.create_topic("orders", topic(2)).await?;
    let filter = [("field", "customer.tier"), ("op", "ne"), ("equals", "bronze"), ("on-invalid", "drop")];
    let transform = [
        ("rename.customer.email", "contact"),
        ("drop", "internal,customer.tier"),
        ("set.checked", "true"),
        ("set.by", "${weir.plugin}@${weir.version}"),
        ("set.limits", r#"{"max":3}"#),
    ];
    for (lang, filter_wasm, transform_wasm) in [
        ("rust", plugin_bytes("json-filter"), plugin_bytes("json-transform")),
        ("py", Lang::Python.library("json-filter"), Lang::Python.library("json-transform")),
        ("js", Lang::Js.library("json-filter"), Lang::Js.library("json-transform")),
    ] {
        c.deploy_plugin(&format!("filter-{lang}"), filter_wasm).await?;
        c.deploy_plugin(&format!("transform-{lang}"), transform_wasm).await?;
        c.create_topic(&format!("out-{lang}"), topic(2)).await?;
        let steps = vec![step(&format!("filter-{lang}"), &filter), step(&format!("transform-{lang}"), &transform)];
        c.create_pipeline(pipeline(&format!("p-{lang}"), "orders", &format!("out-{lang}"), steps)).await?;
    }
    let tiers = ["gold", "bronze", "silver", "ünïcode ✓"];
    let mut records: Vec<WireRecord> = (0..600)
        .map(|i| {
            let value = format!(
                r#"{{"id":{i},"customer":{{"tier":"{}","email":"c{i}@example.org"}},"internal":"x","total":{}.5}}"#,
                tiers[i % tiers.len()],
                i * 3
            );
            WireRecord::keyed(format!("k{}", i % 7), value).with_header("trace", &format!("t{i}"))
        })
        .collect();
    records.push(WireRecord::value("not json"));
    records.push(WireRecord::value(r#"{"id":"no customer"}"#));
    // Numbers and keys as sdk/testdata/json-text.json tables them.
    records.extend(ODD_NUMBERS.map(|doc| WireRecord::keyed("odd", doc)));
    c.produce("orders", records).await?;
    // 600 documents, a quarter bronze; "not json" dropped; the one without a tier kept (ne).
    let expected = 600 - 150 + 1 + ODD_NUMBERS.len();
    let mut sinks = Vec::new();
    for lang in ["rust", "py", "js"] {
        let out = consume_n(&c, &format!("out-{lang}"), expected, LONG).await?;
        let mut seen: Vec<Written> = out
            .iter()
            .map(|(p, o, r)| {
                // The plugin's own name differs by design; every other byte must not.
                let by = format!(r#""by":"transform-{lang}@1""#);
                let value = text(r);
                assert!(value.contains(&by), "{lang}: {value}");
                (*p, *o, r.key.clone().map(|k| k.into_vec()), r.headers.clone(), value.replace(&by, r#""by":"-""#))
            })
            .collect();
        seen.sort_by_key(|s| (s.0, s.1));
        sinks.push((lang, seen));
    }
    let (_, rust) = &sinks[0];
    let docs: Vec<serde_json::Value> = rust.iter().map(|s| serde_json::from_str(&s.4)).collect::<Result<_, _>>()?;
    assert!(docs.iter().all(|d| d["checked"] == true && d["limits"]["max"] == 3 && d.get("internal").is_none()));
    assert!(docs.iter().any(|d| d["contact"] == "c2@example.org"));
    let odd: Vec<&str> = rust.iter().map(|s| s.4.as_str()).filter(|v| v.contains(r#""keys":"#)).collect();
    assert_eq!(
        odd,
        [
            r#"{"big":1e+16,"by":"-","checked":true,"customer":{},"e":1000.0,"id":"odd","keys":{"10":"x","2":"y","a":2,"é":1},"limits":{"max":3},"m":-0.0,"n":1234.0,"over":1.8446744073709552e+19,"tiny":0.00001,"z":-0.0}"#
        ]
    );
    for (lang, seen) in &sinks[1..] {
        assert_eq!(seen.len(), rust.len(), "{lang}");
        for (a, b) in rust.iter().zip(seen) {
            // JavaScript has one number type: what was 1234.0 is an integer there (the table's
            // documented difference); Python, like Rust, keeps it a float.
            let a = if *lang == "js" {
                let v = a.4.replace(r#""e":1000.0"#, r#""e":1000"#).replace(r#""n":1234.0"#, r#""n":1234"#);
                (a.0, a.1, a.2.clone(), a.3.clone(), v)
            } else {
                a.clone()
            };
            assert_eq!(&a, b, "{lang} differs from rust");
        }
    }
    Ok(())
}

/// Inputs whose numbers and keys JSON libraries write differently: integral floats, minus
/// zero, exponents, integers beyond 64 bits, integer-like and non-ASCII keys.
const ODD_NUMBERS: [&str; 1] = [
    r#"{"id":"odd","customer":{"tier":"gold"},"n":1234.0,"e":1e3,"z":-0.0,"m":-0,"big":1e16,"tiny":1e-5,"over":18446744073709551616,"keys":{"2":"y","10":"x","é":1,"a":2}}"#,
];

/// A rewrite in another language can be tried as a shadow of the live version: the Python and
/// then the JavaScript json-filter shadow the Rust one on the same input, every outcome
/// matches, and promoting one is a hot swap like any other.
#[tokio::test(flavor = "multi_thread")]
async fn python_and_js_versions_shadow_a_rust_one_outcome_for_outcome() -> Result<()> {
    let server = Server::start()?;
    let c = server.client().await?;
    c.create_topic("in", topic(1)).await?;
    c.create_topic("out", topic(1)).await?;
    c.deploy_plugin("f", plugin_bytes("json-filter")).await?;
    let config = [("field", "id"), ("op", "lt"), ("equals", "50")];
    c.create_pipeline(pipeline("p", "in", "out", vec![step("f", &config)])).await?;
    // Rust live; Python shadows it and is promoted; then JavaScript shadows Python.
    for (round, lang) in [Lang::Python, Lang::Js].into_iter().enumerate() {
        c.deploy_plugin_with("f", lang.library("json-filter"), None, true).await?;
        c.produce("in", (0..100).map(|i| WireRecord::value(format!(r#"{{"id":{i}}}"#))).collect()).await?;
        let diff = eventually("the shadow to see every input", LONG, || async {
            let d = c.plugin_diff("f").await?;
            Ok((d.matched + d.differed >= 100).then_some(d))
        })
        .await?;
        assert_eq!((diff.matched, diff.differed), (100, 0), "{lang:?}: {:?}", diff.samples);
        let live = c.promote_plugin("f").await?;
        assert_eq!(live.version as usize, round + 2);
    }
    c.produce("in", (0..100).map(|i| WireRecord::value(format!(r#"{{"id":{i}}}"#))).collect()).await?;
    // Half of each hundred passed, whichever version was live; the shadows emitted nothing.
    let out = consume_n(&c, "out", 150, LONG).await?;
    assert!(out.iter().all(|(_, _, r)| doc(r)["id"].as_u64().is_some_and(|id| id < 50)));
    assert_eq!(c.read_all("out").await?.len(), 150);
    assert_eq!(c.pipeline_status("p").await?.plugins, vec!["f@3".to_string()]);
    Ok(())
}

/// The e-commerce flow with its notification service in Python and its shipping service in
/// JavaScript beside the Rust payment and inventory services, its events registered Avro
/// subjects: a compatible evolution goes live, a breaking one is refused at deploy.
#[test]
fn the_mixed_language_ecommerce_flow_holds() -> Result<()> {
    let out = crate::sdk::run_example("examples/ecommerce/run.sh", &[("ORDERS", "100")])?;
    for event in [
        "OrderCreated",
        "PaymentProcessed",
        "InventoryUpdated",
        "ShipmentCreated",
        "Notification",
        "registered payments-value version 2",
        "deployed payment@2 live",
        "refused: error: payment@3 refused; payment@2 keeps running",
        "Field 'amount' in reader schema must have a default value",
        "== OK: the order flow holds",
    ] {
        assert!(out.contains(event), "missing {event} in:\n{out}");
    }
    assert!(!out.contains("FAIL"), "{out}");
    Ok(())
}
