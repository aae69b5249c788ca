//! `weir bench --instructions`: instructions per message of the Wasm boundary and of each
//! library plugin's per-message work, counted by callgrind (Debian's `valgrind`).
//!
//! Seconds on these shared machines move ±25% between runs; an instruction count for one
//! binary and one input does not move. So a regression of a few percent shows here, and a
//! test holds the counts to a committed baseline (`tests/instructions-baseline.json`).
//!
//! The bench runs itself under callgrind once per case (`--instructions-case`, hidden). The
//! child compiles nothing: the parent compiled every component natively into a cache the
//! child loads. Callgrind collects only inside [`measured_rounds`] (`--toggle-collect`), so
//! start-up, instantiation and a warm-up batch are not counted.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use weir_host::runtime::{Batch, Message, PluginInstance, Runtime, Sandbox, StateScope};

use super::stages::message;

/// Batches of this many messages, as in the in-process timing stages.
const BATCH: usize = 2048;
/// Batches counted per case (after one warm-up batch that is not).
const ROUNDS: usize = 4;
/// Bytes per message: the bench's default 100-byte JSON message.
const SIZE: usize = 100;

/// One counted workload: a component, its config and the messages' shape.
struct Case {
    name: &'static str,
    plugin: &'static str,
    config: &'static [(&'static str, &'static str)],
    /// Messages carry a key and two headers.
    keyed: bool,
}

/// The boundary alone (`pass` returns each message unchanged), then the library plugins with
/// the configs the timing stages use.
const CASES: &[Case] = &[
    Case { name: "boundary", plugin: "pass", config: &[], keyed: false },
    Case { name: "boundary-keyed", plugin: "pass", config: &[], keyed: true },
    Case {
        name: "json-filter",
        plugin: "json-filter",
        config: &[("field", "status"), ("equals", "paid")],
        keyed: false,
    },
    Case {
        name: "json-transform",
        plugin: "json-transform",
        config: &[("set.stage", "billed"), ("drop", "pad")],
        keyed: false,
    },
    Case {
        name: "router",
        plugin: "router",
        config: &[("by", "field:region"), ("route.eu", "orders-eu"), ("route.us", "orders-us")],
        keyed: false,
    },
    Case { name: "redact", plugin: "redact", config: &[("fields", "region")], keyed: false },
];

/// The components the cases load.
pub(super) const PLUGINS: [&str; 5] = ["pass", "json-filter", "json-transform", "router", "redact"];

/// Count every case under callgrind; returns instructions per message by case name.
pub(super) fn run(plugins: &HashMap<String, Vec<u8>>) -> anyhow::Result<BTreeMap<String, f64>> {
    let dir = tempfile::tempdir()?;
    let cache = dir.path().join("compiled");
    let runtime = Runtime::with_instances(&cache, 1)?;
    for name in PLUGINS {
        let path = dir.path().join(format!("weir_plugin_{}.wasm", name.replace('-', "_")));
        std::fs::write(&path, &plugins[name])?;
        runtime.load(&plugins[name])?;
    }
    let exe = std::env::current_exe()?;
    let mut counts = BTreeMap::new();
    for case in CASES {
        let out = dir.path().join(format!("{}.callgrind", case.name));
        let status = Command::new("valgrind")
            .arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg("--toggle-collect=*measured_rounds*")
            .arg(&exe)
            .args(["bench", "--instructions-case", case.name, "--plugin-dir"])
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output();
        let output = status.context("running valgrind (Debian's `valgrind`; examples/setup.sh installs it)")?;
        if !output.status.success() {
            bail!("case {} under callgrind failed: {}", case.name, String::from_utf8_lossy(&output.stderr));
        }
        let total = totals(&std::fs::read_to_string(&out)?)
            .with_context(|| format!("no `totals:` line in {}", out.display()))?;
        if total == 0 {
            bail!("callgrind counted nothing in measured_rounds for {}: is the binary stripped?", case.name);
        }
        let per = total as f64 / (ROUNDS * BATCH) as f64;
        counts.insert(case.name.to_string(), per);
    }
    Ok(counts)
}

/// The `totals:` figure of a callgrind output file (instructions, the default event).
fn totals(callgrind_out: &str) -> Option<u64> {
    callgrind_out
        .lines()
        .find_map(|l| l.strip_prefix("totals:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// One case, as the child under callgrind runs it: load from the parent's cache, initialise,
/// one warm-up batch, then [`ROUNDS`] counted batches.
pub(super) fn case(name: &str, plugin_dir: &Path) -> anyhow::Result<()> {
    let case = CASES.iter().find(|c| c.name == name).with_context(|| format!("no instruction case {name}"))?;
    let wasm = std::fs::read(plugin_dir.join(format!("weir_plugin_{}.wasm", case.plugin.replace('-', "_"))))?;
    let runtime = Runtime::with_instances(&plugin_dir.join("compiled"), 1)?;
    let loaded = runtime.load(&wasm)?;
    let scope = StateScope { store: None, prefix: Vec::new() };
    let mut inst = runtime.instantiate(&loaded, &Sandbox::default(), "bench".into(), scope)?;
    let config: Vec<(String, String)> = case.config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    inst.init(&config)?;
    let batch = batch(case.keyed);
    std::hint::black_box(inst.process(&batch)?);
    measured_rounds(&mut inst, &batch)
}

/// The only code callgrind counts (`--toggle-collect`): [`ROUNDS`] calls of `process`.
#[inline(never)]
fn measured_rounds(inst: &mut PluginInstance, batch: &Batch) -> anyhow::Result<()> {
    for _ in 0..ROUNDS {
        std::hint::black_box(inst.process(std::hint::black_box(batch))?);
    }
    Ok(())
}

/// [`BATCH`] 100-byte JSON messages, as the worker holds them after reading the log.
fn batch(keyed: bool) -> Batch {
    let (key, headers) = if keyed {
        (
            Some(bytes::Bytes::from_static(b"customer-42")),
            vec![("weir-type".to_string(), "OrderCreated".to_string()), ("traceparent".to_string(), "00-4bf9".into())],
        )
    } else {
        (None, Vec::new())
    };
    let messages = (0..BATCH)
        .map(|i| Message {
            key: key.clone(),
            value: bytes::Bytes::from(message(i as u64, SIZE)),
            headers: headers.clone(),
            timestamp_ms: 0,
            partition: 0,
            offset: i as u64,
        })
        .collect();
    Batch { topic: "bench".into(), messages }
}
