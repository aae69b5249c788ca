//! Plugin authoring: `weir plugin new` scaffolds a project (Rust, Python or JavaScript),
//! `build` compiles it to a component,
//! `test` runs a component on sample input without a server, and `deploy --watch` rebuilds
//! and hot-swaps on every save.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::polyglot::{self, Lang};
use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::json;
use weir_client::client::Client;
use weir_host::runtime::{
    Batch, LoadedPlugin, Message, Outcome, Output, PluginError, PluginInstance, Runtime, Sandbox, StateScope,
};

/// Kinds `weir plugin new` can scaffold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Keep or drop messages.
    Filter,
    /// One typed output per input (JSON in, JSON out).
    Map,
    /// One output or none.
    FilterMap,
    /// Zero or more outputs.
    FlatMap,
    /// Send messages to named topics.
    Route,
    /// Stateful, idempotent event handler.
    Handler,
    /// Per-key tumbling-window aggregation.
    Aggregate,
    /// The general form.
    Plugin,
}

/// Scaffold a plugin project that builds as-is, with a unit test: a crate, or a Python or
/// JavaScript project (see [`polyglot`]).
pub fn new(name: &str, kind: Kind, lang: Lang, dir: Option<PathBuf>, sdk_path: Option<PathBuf>) -> anyhow::Result<()> {
    weir_host::types::check_name("plugin", name).map_err(anyhow::Error::msg)?;
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    let sdk = sdk_root(sdk_path)?;
    if lang != Lang::Rust {
        return polyglot::new(name, lang, kind, &dir, &sdk);
    }
    if dir.join("Cargo.toml").exists() {
        bail!("{} already holds a crate; choose another --dir", dir.display());
    }
    std::fs::create_dir_all(dir.join("src")).with_context(|| format!("creating {}", dir.display()))?;
    let crate_name = name.replace('.', "-");
    let sdk_version = sdk_requirement();
    let manifest = format!(
        r#"[package]
name = "{crate_name}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
# Not on crates.io: `weir plugin build` and `weir plugin unit` patch in the SDK of the weir
# that runs them, and write it into .cargo/config.toml (not committed) for cargo and editors.
weir-sdk = "{sdk_version}"
serde = {{ version = "1", features = ["derive"] }}

# A crate of its own, even when created inside another workspace.
[workspace]

[profile.release]
lto = true
strip = "debuginfo"
"#
    );
    std::fs::write(dir.join("Cargo.toml"), manifest)?;
    std::fs::write(dir.join("src/lib.rs"), polyglot::templates(Lang::Rust, kind).0)?;
    if kind == Kind::Map {
        std::fs::write(dir.join("invoice.schema.json"), polyglot::INVOICE_SCHEMA)?;
    }
    std::fs::write(dir.join(".gitignore"), "/target\n/.cargo/config.toml\n")?;
    link_rust_sdk(&dir, &sdk)?;
    println!("created {} plugin `{name}` in {}", format!("{kind:?}").to_lowercase(), dir.display());
    println!(
        "next: `weir plugin build {0}`, `weir plugin test <wasm> --input FILE.jsonl`, `weir plugin deploy {name} --watch {0}`",
        dir.display()
    );
    Ok(())
}

/// weir's `sdk/` directory: `sdk_path`, else the one this weir was built from.
pub fn sdk_root(sdk_path: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let sdk = match sdk_path {
        Some(p) => p,
        None => {
            let here = Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(|p| p.join("sdk"));
            match here.filter(|p| p.join("Cargo.toml").exists()) {
                Some(p) => p,
                None => bail!("cannot find weir's sdk/ next to this weir build; pass --sdk-path PATH/TO/weir/sdk"),
            }
        }
    };
    std::fs::canonicalize(&sdk).with_context(|| format!("--sdk-path {}", sdk.display()))
}

/// The version requirement a scaffolded crate puts on `weir-sdk`: this weir's major.minor,
/// which the patched-in SDK of the same weir satisfies.
fn sdk_requirement() -> String {
    let v = env!("CARGO_PKG_VERSION");
    v.rsplit_once('.').map_or(v, |(major_minor, _)| major_minor).to_string()
}

/// The cargo `--config` setting that resolves `weir-sdk` to the SDK under `sdk`: a patch of
/// crates.io, where the crate is not published.
pub fn rust_sdk_patch(sdk: &Path) -> String {
    format!("patch.crates-io.weir-sdk.path={:?}", sdk.display().to_string())
}

/// Whether the crate at `dir` asks for `weir-sdk` by version (as a scaffold does), so weir
/// must hand it one; a crate that names a path or git source, or none, finds its own.
pub fn wants_sdk_patch(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("Cargo.toml")) else { return false };
    let Ok(manifest) = text.parse::<toml::Table>() else { return false };
    match manifest.get("dependencies").and_then(|d| d.get("weir-sdk")) {
        Some(toml::Value::String(_)) => true,
        Some(toml::Value::Table(t)) => !["path", "git", "workspace"].iter().any(|k| t.contains_key(*k)),
        _ => false,
    }
}

/// Write that patch into the crate's `.cargo/config.toml`, so plain `cargo` and editors find
/// the SDK too. The file names a path of this machine, so it is not committed (the scaffold's
/// `.gitignore`) and is written again by every build or unit run: a crate moved or cloned
/// finds the SDK of the weir building it. A config file of the author's own is left alone.
pub fn link_rust_sdk(dir: &Path, sdk: &Path) -> anyhow::Result<()> {
    const MARK: &str = "# Written by weir";
    let path = dir.join(".cargo/config.toml");
    if std::fs::read_to_string(&path).is_ok_and(|old| !old.starts_with(MARK)) {
        return Ok(());
    }
    let text = format!(
        "{MARK} plugin build/unit: where this machine's weir SDK is. Not committed.\n\
         [patch.crates-io]\nweir-sdk = {{ path = {:?} }}\n",
        sdk.display().to_string()
    );
    std::fs::create_dir_all(dir.join(".cargo"))?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

/// Build the plugin project at `dir` (a crate for wasm32-wasip2, or a Python or JavaScript
/// project); returns the component's path. `target_dir` is cargo's target directory, or the
/// output directory of a Python or JavaScript build.
pub fn build(dir: &Path, target_dir: Option<PathBuf>, sdk_path: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let dir = std::fs::canonicalize(dir).with_context(|| format!("no plugin project at {}", dir.display()))?;
    let lang = polyglot::detect(&dir)?;
    let wasm = if lang != Lang::Rust {
        polyglot::build(&dir, lang, target_dir, &sdk_root(sdk_path)?)?
    } else {
        let target = target_dir
            .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(|t| PathBuf::from(t).join("weir-plugins")))
            .unwrap_or_else(|| dir.join("target"));
        let patch = match wants_sdk_patch(&dir) {
            true => {
                let sdk = sdk_root(sdk_path)?;
                link_rust_sdk(&dir, &sdk)?;
                vec![rust_sdk_patch(&sdk)]
            }
            false => vec![],
        };
        let built = weir_host::build::build_components_with(&dir, &[], &target, &patch)?;
        // A crate may also build binaries; the library's cdylib is the plugin.
        let wasm = built
            .into_iter()
            .find(|p| p.parent().is_some_and(|d| !d.ends_with("deps")))
            .context("no component was produced")?;
        super::declare::embed_from_manifest(&dir, &wasm)?;
        wasm
    };
    Ok(wasm)
}

/// Run `wasm` on each line of `input` locally (no server) and print each outcome.
pub fn test(
    wasm: &Path,
    input: &Path,
    config: Vec<(String, String)>,
    envelope: bool,
    json_out: bool,
    expect_failures: bool,
) -> anyhow::Result<()> {
    let bytes = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
    let lines = std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    let cache = tempfile::tempdir()?;
    let runtime = Runtime::new(cache.path())?;
    let loaded = runtime.load(&bytes)?;
    let name = wasm.file_stem().map_or("plugin".into(), |s| s.to_string_lossy().into_owned());
    let mut inst = local_instance(&runtime, &loaded, &name)?;
    let config = local_config(config, &name);
    inst.init(&config).context("init refused the config")?;
    let messages = test_messages(&lines, envelope)?;
    let mut tally = Tally::default();
    // One message per call: each outcome is reported even if another message traps.
    for m in messages {
        let offset = m.offset;
        let shown = String::from_utf8_lossy(&m.value).into_owned();
        let outcome = inst.process(&Batch { topic: "local-test".into(), messages: vec![m] }).map(|mut o| o.remove(0));
        inst.checkpoint();
        let line = tally.record(offset, &outcome);
        if json_out {
            println!("{line}");
        } else {
            print_outcome(&line, &shown);
        }
        if inst.is_poisoned() {
            inst = local_instance(&runtime, &loaded, &name)?;
            inst.init(&config)?;
        }
    }
    eprintln!("{} output(s), {} dropped, {} failed", tally.emitted, tally.dropped, tally.failed);
    // A failed input fails the command, so `weir plugin test` can gate CI; a test whose
    // inputs are meant to fail says so.
    if tally.failed > 0 && !expect_failures {
        anyhow::bail!("{} of the inputs failed (pass --expect-failures if they are meant to)", tally.failed);
    }
    Ok(())
}

/// A fresh, uninitialised instance of `loaded` for `weir plugin test`: default sandbox, no
/// state store.
fn local_instance(runtime: &Runtime, loaded: &LoadedPlugin, name: &str) -> anyhow::Result<PluginInstance> {
    let scope = StateScope { store: None, prefix: Vec::new() };
    Ok(runtime.instantiate(loaded, &Sandbox::default(), format!("{name} (local)"), scope)?)
}

/// The user's step config plus the `weir.*` entries a server would add, naming a local test.
fn local_config(mut config: Vec<(String, String)>, name: &str) -> Vec<(String, String)> {
    config.extend(
        [("weir.pipeline", "local-test"), ("weir.step", "1"), ("weir.plugin", name), ("weir.version", "0")]
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    config
}

/// One message per non-blank line of `lines`, offsets counting from 0, all stamped now.
fn test_messages(lines: &str, envelope: bool) -> anyhow::Result<Vec<Message>> {
    let now = weir_host::types::now_ms();
    lines
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| to_message(l, i as u64, now, envelope))
        .collect()
}

/// Counts of `weir plugin test` outcomes, for the closing summary.
#[derive(Default)]
struct Tally {
    emitted: usize,
    dropped: usize,
    failed: usize,
}

impl Tally {
    /// Count the outcome of input `offset` and describe it as the JSON line `--json` prints.
    fn record(&mut self, offset: u64, outcome: &Result<Outcome, PluginError>) -> serde_json::Value {
        match outcome {
            Ok(Outcome::Emit(outs)) => {
                self.emitted += outs.len();
                let outs: Vec<_> = outs.iter().map(output_json).collect();
                json!({"input": offset, "outcome": "emit", "outputs": outs})
            }
            Ok(Outcome::Keep) => {
                self.emitted += 1;
                json!({"input": offset, "outcome": "keep"})
            }
            Ok(Outcome::Forward(topic)) => {
                self.emitted += 1;
                json!({"input": offset, "outcome": "forward", "topic": topic})
            }
            Ok(Outcome::Drop) => {
                self.dropped += 1;
                json!({"input": offset, "outcome": "drop"})
            }
            Ok(Outcome::Fail(f)) => {
                self.failed += 1;
                json!({"input": offset, "outcome": "fail", "error": f.message, "retryable": f.retryable})
            }
            Err(e) => {
                self.failed += 1;
                json!({"input": offset, "outcome": "fail", "error": e.to_string(), "retryable": true})
            }
        }
    }
}

/// One emitted output as JSON: value and key as text, topic, headers by name.
fn output_json(o: &Output) -> serde_json::Value {
    let headers = o.headers.iter().cloned().collect::<BTreeMap<_, _>>();
    json!({
        "value": String::from_utf8_lossy(&o.value),
        "key": o.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
        "topic": o.topic,
        "headers": headers,
    })
}

/// Print one outcome line (as built by `Tally::record`) for people, beside its `input`.
fn print_outcome(line: &serde_json::Value, input: &str) {
    let n = &line["input"];
    match line["outcome"].as_str() {
        Some("emit") => {
            let outs = line["outputs"].as_array().cloned().unwrap_or_default();
            if outs.is_empty() {
                println!("#{n} {input} → emit nothing");
            }
            for o in outs {
                let to = o["topic"].as_str().map(|t| format!(" (to {t})")).unwrap_or_default();
                println!("#{n} {input} → {}{to}", o["value"].as_str().unwrap_or(""));
            }
        }
        Some("keep") => println!("#{n} {input} → kept (unchanged)"),
        Some("forward") => println!("#{n} {input} → {input} (to {}, unchanged)", line["topic"].as_str().unwrap_or("")),
        Some("drop") => println!("#{n} {input} → dropped"),
        _ => println!(
            "#{n} {input} → FAILED{}: {}",
            if line["retryable"] == true { " (retryable)" } else { "" },
            line["error"].as_str().unwrap_or("")
        ),
    }
}

/// A line of test input: the payload itself, or with `envelope` an object
/// `{"value": …, "key": "…", "headers": {…}}` (a non-string value is sent as JSON).
fn to_message(line: &str, offset: u64, now: u64, envelope: bool) -> anyhow::Result<Message> {
    let mut m = Message {
        key: None,
        value: Bytes::copy_from_slice(line.as_bytes()),
        headers: Vec::new(),
        timestamp_ms: now,
        partition: 0,
        offset,
    };
    if envelope {
        let doc: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("input line {} is not a JSON envelope", offset + 1))?;
        m.value = Bytes::from(match &doc["value"] {
            serde_json::Value::String(s) => s.clone().into_bytes(),
            other => other.to_string().into_bytes(),
        });
        m.key = doc["key"].as_str().map(|k| Bytes::copy_from_slice(k.as_bytes()));
        if let Some(h) = doc["headers"].as_object() {
            m.headers = h.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect();
        }
    }
    Ok(m)
}

/// Build and deploy `dir` as `name`, then again after every change to its sources, until
/// interrupted. Each deploy is a hot swap; a failing build or deploy is reported and the
/// running version stays.
pub async fn watch(client: &Client, name: &str, dir: &Path) -> anyhow::Result<()> {
    let mut seen = None;
    loop {
        let stamp = newest_change(dir)?;
        if Some(stamp) != seen {
            seen = Some(stamp);
            match build(dir, None, None) {
                Ok(path) => {
                    let wasm = std::fs::read(&path)?;
                    // A restart on unchanged code rebuilds nothing (polyglot::fingerprint) and
                    // so deploys nothing: the live version already has these bytes.
                    let hash = blake3::hash(&wasm).to_hex().to_string();
                    match client.describe_plugin(name).await {
                        Ok(live) if live.hash == hash => {
                            println!("{} is live with these bytes: nothing to deploy", live.label())
                        }
                        _ => match client.deploy_plugin(name, wasm).await {
                            Ok(info) => println!("deployed {} from {}", info.label(), path.display()),
                            Err(e) => eprintln!("deploy failed, the running version stays: {e}"),
                        },
                    }
                }
                Err(e) => eprintln!("build failed, the running version stays: {e:#}"),
            }
            println!("watching {} for changes (Ctrl-C to stop)", dir.display());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// Directories that hold build output or installed packages, not sources.
pub(crate) const NOT_SOURCES: &[&str] =
    &["target", "build", "dist", "node_modules", "__pycache__", ".pytest_cache", ".venv", "venv", ".git"];

/// The latest modification time of the project's sources: every file under `dir` but
/// build output and installed packages (a crate, a Python or a JavaScript project alike).
fn newest_change(dir: &Path) -> anyhow::Result<SystemTime> {
    let mut newest = SystemTime::UNIX_EPOCH;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                if !NOT_SOURCES.contains(&entry.file_name().to_string_lossy().as_ref()) {
                    stack.push(entry.path());
                }
            } else {
                newest = newest.max(meta.modified()?);
            }
        }
    }
    Ok(newest)
}
