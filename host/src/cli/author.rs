//! Plugin authoring: `weir plugin new` scaffolds a crate, `build` compiles it to a component,
//! `test` runs a component on sample input without a server, and `deploy --watch` rebuilds
//! and hot-swaps on every save.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use serde_json::json;
use weir_host::client::Client;
use weir_host::runtime::{Batch, Header, Message, Outcome, Runtime, Sandbox, StateScope};

/// Kinds `weir plugin new` can scaffold.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
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

/// Scaffold a plugin crate that builds as-is, with a unit test.
pub fn new(name: &str, kind: Kind, dir: Option<PathBuf>, sdk_path: Option<PathBuf>) -> anyhow::Result<()> {
    weir_host::types::check_name("plugin", name).map_err(anyhow::Error::msg)?;
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    if dir.join("Cargo.toml").exists() {
        bail!("{} already holds a crate; choose another --dir", dir.display());
    }
    let sdk = match sdk_path {
        Some(p) => p,
        None => {
            let here = Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(|p| p.join("sdk"));
            match here.filter(|p| p.join("Cargo.toml").exists()) {
                Some(p) => p,
                None => bail!("cannot find weir-sdk next to this weir build; pass --sdk-path PATH/TO/weir/sdk"),
            }
        }
    };
    let sdk = std::fs::canonicalize(&sdk).with_context(|| format!("--sdk-path {}", sdk.display()))?;
    std::fs::create_dir_all(dir.join("src")).with_context(|| format!("creating {}", dir.display()))?;
    let crate_name = name.replace('.', "-");
    let manifest = format!(
        r#"[package]
name = "{crate_name}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
weir-sdk = {{ path = {sdk:?} }}
serde = {{ version = "1", features = ["derive"] }}

# A crate of its own, even when created inside another workspace.
[workspace]

[profile.release]
lto = true
strip = "debuginfo"
"#
    );
    std::fs::write(dir.join("Cargo.toml"), manifest)?;
    std::fs::write(dir.join("src/lib.rs"), template(kind))?;
    std::fs::write(dir.join(".gitignore"), "/target\n")?;
    println!("created {} plugin `{name}` in {}", format!("{kind:?}").to_lowercase(), dir.display());
    println!(
        "next: `weir plugin build {0}`, `weir plugin test <wasm> --input FILE.jsonl`, `weir plugin deploy {name} --watch {0}`",
        dir.display()
    );
    Ok(())
}

/// Build the crate at `dir` for wasm32-wasip2; returns the component's path.
pub fn build(dir: &Path, target_dir: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let dir = std::fs::canonicalize(dir).with_context(|| format!("no plugin crate at {}", dir.display()))?;
    if !dir.join("Cargo.toml").exists() {
        bail!("{} has no Cargo.toml: pass the directory of a plugin crate", dir.display());
    }
    let target = target_dir
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(|t| PathBuf::from(t).join("weir-plugins")))
        .unwrap_or_else(|| dir.join("target"));
    let built = weir_host::build::build_components(&dir, &[], &target)?;
    // A crate may also build binaries; the library's cdylib is the plugin.
    built.into_iter().find(|p| p.parent().is_some_and(|d| !d.ends_with("deps"))).context("no component was produced")
}

/// Run `wasm` on each line of `input` locally (no server) and print each outcome.
pub fn test(
    wasm: &Path,
    input: &Path,
    config: Vec<(String, String)>,
    envelope: bool,
    json_out: bool,
) -> anyhow::Result<()> {
    let bytes = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
    let lines = std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    let cache = tempfile::tempdir()?;
    let runtime = Runtime::new(cache.path())?;
    let loaded = runtime.load(&bytes)?;
    let name = wasm.file_stem().map_or("plugin".into(), |s| s.to_string_lossy().into_owned());
    let scope = StateScope { store: None, prefix: Vec::new() };
    let mut inst = runtime.instantiate(&loaded, &Sandbox::default(), format!("{name} (local)"), scope)?;
    let mut config = config;
    config.extend(
        [("weir.pipeline", "local-test"), ("weir.step", "1"), ("weir.plugin", name.as_str()), ("weir.version", "0")]
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    inst.init(&config).context("init refused the config")?;
    let now = weir_host::types::now_ms();
    let messages = lines
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| to_message(l, i as u64, now, envelope))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (mut emitted, mut dropped, mut failed) = (0, 0, 0);
    // One message per call: each outcome is reported even if another message traps.
    for m in messages {
        let offset = m.offset;
        let shown = String::from_utf8_lossy(&m.value).into_owned();
        let outcome = inst.process(&Batch { topic: "local-test".into(), messages: vec![m] }).map(|mut o| o.remove(0));
        inst.checkpoint();
        let line = match &outcome {
            Ok(Outcome::Emit(outs)) => {
                emitted += outs.len();
                let outs: Vec<_> = outs
                    .iter()
                    .map(|o| json!({"value": String::from_utf8_lossy(&o.value), "key": o.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()), "topic": o.topic, "headers": o.headers.iter().map(|h| (h.name.clone(), h.value.clone())).collect::<std::collections::BTreeMap<_,_>>()}))
                    .collect();
                json!({"input": offset, "outcome": "emit", "outputs": outs})
            }
            Ok(Outcome::Keep) => {
                emitted += 1;
                json!({"input": offset, "outcome": "keep"})
            }
            Ok(Outcome::Drop) => {
                dropped += 1;
                json!({"input": offset, "outcome": "drop"})
            }
            Ok(Outcome::Fail(f)) => {
                failed += 1;
                json!({"input": offset, "outcome": "fail", "error": f.message, "retryable": f.retryable})
            }
            Err(e) => {
                failed += 1;
                json!({"input": offset, "outcome": "fail", "error": e.to_string(), "retryable": true})
            }
        };
        if json_out {
            println!("{line}");
        } else {
            print_outcome(&line, &shown);
        }
        if inst.is_poisoned() {
            inst = runtime.instantiate(
                &loaded,
                &Sandbox::default(),
                format!("{name} (local)"),
                StateScope { store: None, prefix: Vec::new() },
            )?;
            inst.init(&config)?;
        }
    }
    eprintln!("{emitted} output(s), {dropped} dropped, {failed} failed");
    Ok(())
}

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
        value: line.as_bytes().to_vec(),
        headers: Vec::new(),
        timestamp_ms: now,
        partition: 0,
        offset,
    };
    if envelope {
        let doc: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("input line {} is not a JSON envelope", offset + 1))?;
        m.value = match &doc["value"] {
            serde_json::Value::String(s) => s.clone().into_bytes(),
            other => other.to_string().into_bytes(),
        };
        m.key = doc["key"].as_str().map(|k| k.as_bytes().to_vec());
        if let Some(h) = doc["headers"].as_object() {
            m.headers = h
                .iter()
                .map(|(k, v)| Header { name: k.clone(), value: v.as_str().unwrap_or_default().to_string() })
                .collect();
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
            match build(dir, None) {
                Ok(path) => match client.deploy_plugin(name, std::fs::read(&path)?).await {
                    Ok(info) => println!("deployed {} from {}", info.label(), path.display()),
                    Err(e) => eprintln!("deploy failed, the running version stays: {e}"),
                },
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

/// The latest modification time under `dir/src` and of `dir/Cargo.toml`.
fn newest_change(dir: &Path) -> anyhow::Result<SystemTime> {
    let mut newest = std::fs::metadata(dir.join("Cargo.toml"))?.modified()?;
    let mut stack = vec![dir.join("src")];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                newest = newest.max(meta.modified()?);
            }
        }
    }
    Ok(newest)
}

/// The starting `src/lib.rs` for each kind: working code with a test.
fn template(kind: Kind) -> String {
    let body = match kind {
        Kind::Filter => FILTER,
        Kind::Map => MAP,
        Kind::FilterMap => FILTER_MAP,
        Kind::FlatMap => FLAT_MAP,
        Kind::Route => ROUTE,
        Kind::Handler => HANDLER,
        Kind::Aggregate => AGGREGATE,
        Kind::Plugin => PLUGIN,
    };
    body.trim_start().to_string()
}

const FILTER: &str = r##"
//! A weir filter: keeps messages whose JSON `field` equals `value` (both from the config).

use weir_sdk::prelude::*;

#[derive(serde::Deserialize)]
struct Settings {
    field: String,
    value: String,
}

pub struct Keep(Settings);

impl Filter for Keep {
    fn init(config: &Config) -> Result<Self, Error> {
        Ok(Keep(config.deserialize()?))
    }

    fn filter(&mut self, msg: &Message) -> Result<bool, Error> {
        let doc: json::Value = msg.json()?;
        Ok(json::get_path(&doc, &self.0.field).map(json::as_text).as_deref() == Some(self.0.value.as_str()))
    }
}

weir_sdk::export!(Keep as filter);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_matching_messages() {
        let mut f = Keep::init(&Config::from_pairs([("field", "status"), ("value", "paid")])).unwrap();
        assert!(f.filter(&Message::new(r#"{"status":"paid"}"#)).unwrap());
        assert!(!f.filter(&Message::new(r#"{"status":"new"}"#)).unwrap());
    }
}
"##;

const MAP: &str = r##"
//! A weir map: turns each order into an invoice (JSON in, JSON out).

use serde::{Deserialize, Serialize};
use weir_sdk::prelude::*;

#[derive(Deserialize)]
pub struct Order {
    id: u64,
    total_cents: u64,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct Invoice {
    order: u64,
    amount_cents: u64,
}

pub struct Billing {
    fee_cents: u64,
}

impl Map for Billing {
    type In = Json<Order>;
    type Out = Json<Invoice>;

    fn init(config: &Config) -> Result<Self, Error> {
        Ok(Billing { fee_cents: config.parse_or("fee_cents", 0)? })
    }

    fn map(&mut self, Json(order): Json<Order>) -> Result<Json<Invoice>, Error> {
        Ok(Json(Invoice { order: order.id, amount_cents: order.total_cents + self.fee_cents }))
    }
}

weir_sdk::export!(Billing as map);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bills_an_order() {
        let mut m = Billing::init(&Config::from_pairs([("fee_cents", "50")])).unwrap();
        let Json(invoice) = m.map(Json(Order { id: 7, total_cents: 1000 })).unwrap();
        assert_eq!(invoice, Invoice { order: 7, amount_cents: 1050 });
    }
}
"##;

const FILTER_MAP: &str = r##"
//! A weir filter-map: parses numbers, dropping lines that are not one.

use weir_sdk::prelude::*;

pub struct Numbers;

impl FilterMap for Numbers {
    type In = String;
    type Out = Json<f64>;

    fn init(_config: &Config) -> Result<Self, Error> {
        Ok(Numbers)
    }

    fn filter_map(&mut self, text: String) -> Result<Option<Json<f64>>, Error> {
        Ok(text.trim().parse().ok().map(Json))
    }
}

weir_sdk::export!(Numbers as filter_map);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_or_drops() {
        let mut n = Numbers;
        assert_eq!(n.filter_map("4.5".into()).unwrap(), Some(Json(4.5)));
        assert_eq!(n.filter_map("four".into()).unwrap(), None);
    }
}
"##;

const FLAT_MAP: &str = r##"
//! A weir flat-map: one output per word of the payload.

use weir_sdk::prelude::*;

pub struct Words;

impl FlatMap for Words {
    type In = String;
    type Out = String;

    fn init(_config: &Config) -> Result<Self, Error> {
        Ok(Words)
    }

    fn flat_map(&mut self, text: String) -> Result<Vec<String>, Error> {
        Ok(text.split_whitespace().map(str::to_string).collect())
    }
}

weir_sdk::export!(Words as flat_map);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_words() {
        assert_eq!(Words.flat_map("a b  c".into()).unwrap(), vec!["a", "b", "c"]);
    }
}
"##;

const ROUTE: &str = r##"
//! A weir router: messages with a `priority` header of `high` go to the `urgent` topic (or the
//! topic configured as `to`); the rest pass on.

use weir_sdk::prelude::*;

pub struct Urgent {
    to: String,
}

impl Route for Urgent {
    fn init(config: &Config) -> Result<Self, Error> {
        Ok(Urgent { to: config.get("to").unwrap_or("urgent").to_string() })
    }

    fn route(&mut self, msg: &Message) -> Result<Option<String>, Error> {
        Ok((msg.header("priority") == Some("high")).then(|| self.to.clone()))
    }
}

weir_sdk::export!(Urgent as route);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_high_priority() {
        let mut r = Urgent::init(&Config::default()).unwrap();
        assert_eq!(r.route(&Message::new("x").with_header("priority", "high")).unwrap().as_deref(), Some("urgent"));
        assert_eq!(r.route(&Message::new("x")).unwrap(), None);
    }
}
"##;

const HANDLER: &str = r##"
//! A weir handler: keeps a running total per account in state and handles each payment once
//! (by its `weir-idempotency-key` header) within a day.

use serde::{Deserialize, Serialize};
use weir_sdk::prelude::*;
use weir_sdk::Idempotency;

#[derive(Deserialize)]
pub struct Payment {
    account: String,
    cents: i64,
}

#[derive(Serialize)]
pub struct Balance {
    account: String,
    balance_cents: i64,
}

pub struct Accounts;

impl Handler for Accounts {
    type In = Json<Payment>;
    type Out = Json<Balance>;

    fn init(_config: &Config) -> Result<Self, Error> {
        Ok(Accounts)
    }

    fn idempotency(&self) -> Option<Idempotency> {
        Some(Idempotency { by: Selector::Header(headers::IDEMPOTENCY_KEY.into()), window_ms: 86_400_000 })
    }

    fn handle(&mut self, Json(p): Json<Payment>, _meta: &Meta) -> Result<Vec<Json<Balance>>, Error> {
        let key = format!("balance:{}", p.account);
        let balance = state::get_json::<i64>(key.as_bytes())?.unwrap_or(0) + p.cents;
        state::set_json(key.as_bytes(), &balance)?;
        info!("{} now holds {balance}", p.account);
        Ok(vec![Json(Balance { account: p.account, balance_cents: balance })])
    }
}

weir_sdk::export!(Accounts as handler);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_for_idempotency() {
        assert!(Accounts.idempotency().is_some());
    }
}
"##;

const AGGREGATE: &str = r##"
//! A weir aggregate: counts messages per key in one-minute tumbling windows.

use weir_sdk::prelude::*;
use weir_sdk::Window;

pub struct Counts {
    window_ms: u64,
}

impl Aggregate for Counts {
    type In = Message;
    type Acc = u64;
    type Out = String;

    fn init(config: &Config) -> Result<Self, Error> {
        Ok(Counts { window_ms: config.duration_ms_or("window", 60_000)? })
    }

    fn window_ms(&self) -> u64 {
        self.window_ms
    }

    fn key(&self, msg: &Message, _meta: &Meta) -> Result<String, Error> {
        Ok(msg.key_str().unwrap_or("(none)").to_string())
    }

    fn add(&mut self, count: &mut u64, _msg: Message) -> Result<(), Error> {
        *count += 1;
        Ok(())
    }

    fn emit(&mut self, key: String, w: Window, count: u64) -> Result<String, Error> {
        Ok(format!("{key}: {count} in [{}, {})", w.start_ms, w.end_ms))
    }
}

weir_sdk::export!(Counts as aggregate);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_reports() {
        let mut c = Counts::init(&Config::default()).unwrap();
        let mut n = 0;
        c.add(&mut n, Message::new("x")).unwrap();
        assert_eq!(c.emit("k".into(), Window { start_ms: 0, end_ms: 60_000 }, n).unwrap(), "k: 1 in [0, 60000)");
    }
}
"##;

const PLUGIN: &str = r##"
//! A weir plugin in the general form: upper-cases text payloads, sends empty ones to a
//! `rejects` topic.

use weir_sdk::prelude::*;

pub struct Shout;

impl Plugin for Shout {
    fn init(_config: &Config) -> Result<Self, Error> {
        Ok(Shout)
    }

    fn process(&mut self, msg: Message) -> Result<Outcome, Error> {
        let text = msg.text()?.to_uppercase();
        if text.is_empty() {
            return Ok(Outcome::one(Output::from(msg).to("rejects")));
        }
        let mut out = Output::from(msg);
        out.value = text.into_bytes();
        Ok(Outcome::one(out))
    }
}

weir_sdk::export!(Shout);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shouts() {
        let Outcome::Emit(out) = Shout.process(Message::new("hi")).unwrap() else { panic!("expected output") };
        assert_eq!(out[0].value, b"HI");
    }
}
"##;
