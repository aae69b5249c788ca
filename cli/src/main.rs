//! The `weir` command: the server (`weir serve`), every client command, plugin authoring and
//! `weir bench` — parsing and dispatch here, one module per command group. `anyhow`, clap
//! and the bench's peers (Redis, NATS, charts) live only in this binary.

mod author;
mod bench;
mod cluster;
mod consume;
mod declare;
mod dlq;
mod exchange;
mod output;
mod pipeline;
mod plugin;
mod polyglot;
mod produce;
mod queue;
mod schema;
mod serve;
mod state;
mod topic;

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use weir_client::client::{Client, ConnectOptions};

/// weir: a stream-processing broker with WebAssembly plugins.
#[derive(Parser)]
#[command(name = "weir", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    server: Target,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker and every pipeline.
    Serve(Box<serve::ServeArgs>),
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(topic::TopicCmd),
    /// Append messages to a topic: one per stdin line (or --file line).
    Produce(produce::ProduceArgs),
    /// Read messages from a topic: one value per line.
    Consume(consume::ConsumeArgs),
    /// Deploy and list plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCmd),
    /// Create, list, inspect and delete pipelines.
    #[command(subcommand)]
    Pipeline(pipeline::PipelineCmd),
    /// Consumer groups and their lag.
    #[command(subcommand)]
    Group(consume::GroupCmd),
    /// Queues: competing consumers, visibility timeouts, priorities, delays, dead letters.
    #[command(subcommand)]
    Queue(queue::QueueCmd),
    /// Exchanges and routing keys (AMQP semantics) routing to topics and queues.
    #[command(subcommand)]
    Exchange(exchange::ExchangeCmd),
    /// Publish through an exchange with a routing key.
    Publish(exchange::PublishArgs),
    /// Send a request to a topic and print the reply (request/reply with a correlation id).
    Request(exchange::RequestArgs),
    /// Inspect and edit the state of pipeline steps.
    #[command(subcommand)]
    State(state::StateCmd),
    /// Dead-letter topics: replay them once the plugin is fixed.
    #[command(subcommand)]
    Dlq(dlq::DlqCmd),
    /// Measure produce, consume and pipeline throughput against a temporary server.
    Bench(bench::BenchArgs),
    /// Cluster mode: nodes, partition owners, NATS health.
    #[command(subcommand)]
    Cluster(cluster::ClusterCmd),
    /// The schema registry: register, get, list, check, delete subjects; compatibility levels.
    Schema(schema::SchemaArgs),
    /// Check a stopped server's data directory offline: the write-ahead log, every block's
    /// checksum, every record, the plugin components and the compiled-plugin cache. Exits 1
    /// when something is damaged, naming the file and the way out.
    Doctor {
        /// The data directory (`weir serve --data-dir`).
        data_dir: std::path::PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Parse arguments, run the command, and turn errors into a message and exit code 1.
fn main() -> ExitCode {
    let cli = Cli::parse();
    // Not the server, nor the bench (it runs one): they keep ignoring SIGPIPE.
    if !matches!(cli.command, Command::Serve(_) | Command::Bench(_)) {
        quiet_on_closed_pipe();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let server = &cli.server;
    match cli.command {
        Command::Serve(args) => serve::run(*args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Topic(cmd) => topic::run(&connect(server).await?, cmd).await,
        Command::Produce(args) => produce::run(&connect(server).await?, args).await,
        Command::Consume(args) => consume::run(&connect(server).await?, args).await,
        Command::Group(cmd) => consume::run_group(&connect(server).await?, cmd).await,
        Command::Plugin(cmd) => plugin::run(server, cmd).await,
        Command::Pipeline(cmd) => pipeline::run(&connect(server).await?, cmd).await,
        Command::Dlq(cmd) => dlq::run(&connect(server).await?, cmd).await,
        Command::State(cmd) => state::run(&connect(server).await?, cmd).await,
        Command::Queue(cmd) => queue::run(&connect(server).await?, cmd).await,
        Command::Exchange(cmd) => exchange::run(&connect(server).await?, cmd).await,
        Command::Publish(args) => exchange::publish(&connect(server).await?, args).await,
        Command::Request(args) => exchange::request(&connect(server).await?, args).await,
        Command::Cluster(cmd) => cluster::run(&connect(server).await?, cmd).await,
        Command::Schema(args) => schema::run(args, server.token.clone()).await,
        Command::Doctor { data_dir, json } => doctor(&data_dir, json).await,
    }
}

/// `weir doctor`: the checks run off the async threads; the report, then the verdict.
async fn doctor(data_dir: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let dir = data_dir.to_path_buf();
    let report = tokio::task::spawn_blocking(move || weir_host::storage::doctor::check(&dir)).await?;
    if json {
        output::json(&report)?;
    } else {
        for f in &report.findings {
            println!("{} {}: {}", if f.ok { "ok  " } else { "FAIL" }, f.what, f.detail);
        }
    }
    anyhow::ensure!(report.healthy(), "{} is damaged (see above)", data_dir.display());
    Ok(())
}

/// `weir … | head` closes our stdout early: end quietly, as Unix tools do, by letting
/// SIGPIPE end the process (Rust ignores it by default, so every print would panic). The
/// server keeps ignoring it: a client that hangs up must not kill it.
fn quiet_on_closed_pipe() {
    // SAFETY: setting a signal's disposition to the default, before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Where client commands connect, with which token, over TLS or not (the global flags).
#[derive(clap::Args)]
pub struct Target {
    /// Address of the weir server.
    #[arg(
        long = "server",
        value_name = "SERVER",
        global = true,
        env = "WEIR_SERVER",
        default_value = "127.0.0.1:7070"
    )]
    addr: String,

    /// Token for a server started with --auth-token-file.
    #[arg(long, global = true, env = "WEIR_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// Connect with TLS, trusting the CA certificates in this PEM file (for a server
    /// started with --tls-cert).
    #[arg(long, global = true, env = "WEIR_TLS_CA")]
    tls_ca: Option<std::path::PathBuf>,

    /// The name the server's certificate must carry (default: the host part of --server).
    #[arg(long, global = true, env = "WEIR_TLS_SERVER_NAME", requires = "tls_ca")]
    tls_server_name: Option<String>,
}

/// Connect as the global flags say (read only by client commands, so a stray `WEIR_TLS_CA`
/// cannot break `weir serve`).
async fn connect(server: &Target) -> anyhow::Result<Client> {
    let tls = match &server.tls_ca {
        Some(ca) => {
            let name = server.tls_server_name.as_deref().unwrap_or(weir_client::tls::host_of(&server.addr));
            Some(weir_client::tls::ClientTls::new(ca, name)?)
        }
        None => None,
    };
    let options = ConnectOptions { token: server.token.clone(), tls };
    Client::connect_with(server.addr.clone(), options).await.context("connecting")
}

/// `weir consume | head` closes our stdout early; that is success, not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        let io = c.downcast_ref::<std::io::Error>().map(std::io::Error::kind);
        let json = c.downcast_ref::<serde_json::Error>().and_then(serde_json::Error::io_error_kind);
        io.or(json) == Some(std::io::ErrorKind::BrokenPipe)
    })
}

/// A wire enum by its kebab-case name (`sync`, `dead-letter`), as its serde form spells it;
/// an unknown name lists the known ones.
pub fn kebab<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    T::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(s)).map_err(|e| e.to_string())
}

/// Parse `K=V`.
pub fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

/// Parse a duration like `500ms`, `10s`, `7d`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?} ({e}); use e.g. 500ms, 10s, 5m, 7d"))
}

/// Parse a byte size like `65536`, `64KiB`, `64MiB`, `1GiB` (also `K`, `M`, `G`, `KB`, `MB`).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: usize = digits.parse().map_err(|_| format!("invalid size {s:?}: use e.g. 65536, 512KiB, 64MiB, 1GiB"))?;
    let mult: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("invalid size unit {other:?} in {s:?}: use KiB, MiB or GiB")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("size {s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_key_values_parse() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("12XB").is_err());
        assert_eq!(parse_kv("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_kv("novalue").is_err());
    }
}
