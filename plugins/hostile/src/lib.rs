//! `hostile`: a plugin that misbehaves on purpose, to prove the sandbox holds.
//!
//! It binds the frozen `weir:plugin@0.1.0` world directly (not through the SDK, which builds
//! 0.2.0) so it can also break the contract, e.g. by returning the wrong number of outcomes,
//! and so that the host's support of the old ABI is exercised by a real 0.1.0 component.
//!
//! Config: `mode` — what to do to a message whose value equals `trigger` (every message if
//! `trigger` is unset). Other messages pass through unchanged.
//!
//! | mode | behaviour |
//! |---|---|
//! | `panic` | panic (a trap) |
//! | `loop` | spin forever (CPU deadline) |
//! | `alloc` | allocate until memory runs out (memory limit) |
//! | `recurse` | unbounded recursion (stack overflow) |
//! | `huge-output` | emit `huge-mb` MiB (default 100) of output (output limit) |
//! | `wrong-count` | return one outcome fewer than inputs (for a batch holding the trigger) |
//! | `fail` | fail with a non-retryable error |
//! | `fail-retryable` | fail with a retryable error |
//! | `escape` | try files, sockets, environment and clock; emit what each attempt returned |
//! | `log-flood` | write 10,000 log lines |
//! | `state-bomb` | write state values until the limit refuses |
//! | `init-fail` | refuse `init` |
//! | `init-fail-huge` | refuse `init` with an error of `huge-mb` MiB |
//! | `fail-huge` | fail with a message of `huge-mb` MiB |
//! | `log-huge` | write one log line of `huge-mb` MiB, then pass the message on |
//! | `header-huge` | emit the message with a header value of `huge-mb` MiB |
//! | `route-to` | emit the message to the topic named by config `to` |

use std::cell::RefCell;

mod bindings {
    wit_bindgen::generate!({ path: "../../wit/v0.1.0", world: "plugin" });
}

use bindings::weir::plugin::{log, state, types};

struct Hostile;

#[derive(Default, Clone)]
struct Settings {
    mode: String,
    trigger: Option<Vec<u8>>,
    huge_mb: usize,
    to: String,
}

thread_local! {
    static SETTINGS: RefCell<Settings> = RefCell::new(Settings::default());
}

impl bindings::Guest for Hostile {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let mut s = Settings { huge_mb: 100, ..Settings::default() };
        for (k, v) in config {
            match k.as_str() {
                "mode" => s.mode = v,
                "trigger" => s.trigger = Some(v.into_bytes()),
                "to" => s.to = v,
                "huge-mb" => {
                    s.huge_mb = v.parse().map_err(|_| format!("config key `huge-mb` must be a number, got {v:?}"))?
                }
                reserved if reserved.starts_with("weir.") => {}
                other => return Err(format!("unknown config key `{other}`")),
            }
        }
        if s.mode == "init-fail" {
            return Err("config key `mode` is init-fail: refusing to start, as asked".into());
        }
        if s.mode == "init-fail-huge" {
            return Err(huge(s.huge_mb));
        }
        SETTINGS.with(|cell| *cell.borrow_mut() = s);
        Ok(())
    }

    fn process(batch: types::Batch) -> Vec<types::Outcome> {
        let s = SETTINGS.with(|cell| cell.borrow().clone());
        let short = s.mode == "wrong-count" && batch.messages.iter().any(|m| triggered(&s, m));
        let mut out: Vec<types::Outcome> = batch.messages.into_iter().map(|m| misbehave(&s, m)).collect();
        if short {
            out.pop();
        }
        out
    }
}

fn triggered(s: &Settings, m: &types::Message) -> bool {
    s.trigger.as_ref().is_none_or(|t| *t == m.value)
}

/// Unchanged, without sending the payload back (the bench measures the boundary with this).
fn pass(_: types::Message) -> types::Outcome {
    types::Outcome::Keep
}

fn misbehave(s: &Settings, m: types::Message) -> types::Outcome {
    if !triggered(s, &m) {
        return pass(m);
    }
    match s.mode.as_str() {
        "panic" => panic!("hostile plugin panics on message at offset {}", m.offset),
        "loop" => spin(),
        "alloc" => allocate_forever(),
        "recurse" => types::Outcome::Emit(vec![text(recurse(m.offset).to_string())]),
        "huge-output" => {
            let chunk = vec![b'x'; 1024 * 1024];
            types::Outcome::Emit(
                (0..s.huge_mb)
                    .map(|_| types::Output { key: None, value: chunk.clone(), headers: vec![], topic: None })
                    .collect(),
            )
        }
        "wrong-count" => pass(m),
        "fail" => fail("this message is bad", false),
        "fail-retryable" => fail("a dependency is busy", true),
        "escape" => types::Outcome::Emit(vec![text(escape_attempts())]),
        "fail-huge" => fail(&huge(s.huge_mb), false),
        "log-huge" => {
            log::write(types::Level::Warn, &huge(s.huge_mb));
            pass(m)
        }
        "header-huge" => {
            let header = types::Header { name: "big".into(), value: huge(s.huge_mb) };
            types::Outcome::Emit(vec![types::Output { key: None, value: m.value, headers: vec![header], topic: None }])
        }
        "route-to" => types::Outcome::Emit(vec![types::Output {
            key: m.key,
            value: m.value,
            headers: m.headers,
            topic: Some(s.to.clone()),
        }]),
        "log-flood" => {
            for i in 0..10_000 {
                log::write(types::Level::Info, &format!("flood line {i}"));
            }
            pass(m)
        }
        "state-bomb" => {
            let big = vec![0u8; 512 * 1024];
            for i in 0u32.. {
                if let Err(e) = state::set(&i.to_be_bytes(), &big, None) {
                    return fail(&format!("state refused after {i} writes: {e:?}"), false);
                }
            }
            unreachable!()
        }
        _ => pass(m),
    }
}

/// `mb` MiB of text.
fn huge(mb: usize) -> String {
    "E".repeat(mb * 1024 * 1024)
}

fn text(s: String) -> types::Output {
    types::Output { key: None, value: s.into_bytes(), headers: vec![], topic: None }
}

fn fail(message: &str, retryable: bool) -> types::Outcome {
    types::Outcome::Fail(types::Failure { message: message.to_string(), retryable })
}

#[allow(clippy::empty_loop)]
fn spin() -> ! {
    let mut x = 0u64;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

fn allocate_forever() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}

#[allow(unconditional_recursion)]
fn recurse(n: u64) -> u64 {
    let pad = std::hint::black_box([n; 64]);
    recurse(n + 1).wrapping_add(pad[3])
}

/// Every way out we can think of, and what each returned.
fn escape_attempts() -> String {
    let file = std::fs::read_to_string("/etc/passwd").map(|s| format!("read {} bytes", s.len()));
    let dir = std::fs::read_dir(".").map(|d| format!("{} entries", d.count()));
    let write = std::fs::write("escape.txt", b"x").map(|()| "wrote".to_string());
    let tcp = std::net::TcpStream::connect("127.0.0.1:22").map(|_| "connected".to_string());
    let env = std::env::var("HOME").map_err(|e| e.to_string());
    let vars = std::env::vars().count();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format!(
        "file={} dir={} write={} tcp={} env={} vars={vars} clock={now}",
        short(file),
        short(dir),
        short(write),
        short(tcp),
        short(env)
    )
}

fn short<E: std::fmt::Display>(r: Result<String, E>) -> String {
    match r {
        Ok(v) => format!("OK({v})"),
        Err(e) => format!("ERR({e})"),
    }
}

bindings::export!(Hostile with_types_in bindings);
