//! `weir plugin …`: deploy (live or shadow), versions, rollback, promote, diff, remove.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use weir_client::client::Client;
use weir_client::wire::{PluginInfo, Sandbox};
use weir_host::limits;

use super::output;

#[derive(Subcommand)]
pub enum PluginCmd {
    /// Deploy a component as the next version of NAME. Every pipeline step following NAME
    /// switches to it at its next batch boundary, after its `init` succeeded for each one.
    Deploy {
        /// Plugin name.
        name: String,
        /// The component, built for wasm32-wasip2.
        #[arg(required_unless_present = "watch")]
        file: Option<PathBuf>,
        /// Build the project (Rust, Python or JavaScript) in this directory, deploy it, and
        /// rebuild and hot-swap on every save until Ctrl-C.
        #[arg(long, conflicts_with_all = ["file", "shadow"])]
        watch: Option<PathBuf>,
        /// Run it beside the live version on the same input without emitting anything; see
        /// `weir plugin diff` and `weir plugin promote`.
        #[arg(long)]
        shadow: bool,
        #[command(flatten)]
        sandbox: SandboxArgs,
    },
    /// Scaffold a plugin project (that builds as-is, with a unit test): a Rust crate, or a
    /// Python or JavaScript project.
    New {
        /// Plugin (and project) name.
        name: String,
        /// What kind of plugin.
        #[arg(long, value_enum, default_value = "map")]
        kind: super::author::Kind,
        /// The language to write it in.
        #[arg(long, value_enum, default_value = "rust")]
        lang: super::polyglot::Lang,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Path to weir's `sdk/` directory (default: the one this weir was built from).
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
    /// Run the project's unit tests with the runner weir installed for its language (Python:
    /// pytest from weir's tool dir, which is not on PATH; JavaScript: node --test; Rust:
    /// cargo test), printing the command first.
    Unit {
        /// The project's directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Path to weir's `sdk/` directory (default: the one this weir was built from).
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
    /// Show, or set, the schemas a component declares it reads and writes (checked by the
    /// server at `pipeline create` and at every deploy). A REF is `subject:NAME[@VERSION]`,
    /// `avro:FILE`, `json:FILE` or `protobuf:FILE`. `weir plugin build` sets them from the
    /// project's manifest.
    Schemas {
        /// The component.
        file: PathBuf,
        /// What its input must be readable as.
        #[arg(long, value_name = "REF")]
        reads: Option<String>,
        /// What its outputs are.
        #[arg(long, value_name = "REF")]
        writes: Option<String>,
        /// Write the component here (default: in place).
        #[arg(short, long)]
        out: Option<PathBuf>,
    },
    /// Build a plugin project into a wasm32-wasip2 component (cargo for a crate,
    /// componentize-py for Python, esbuild + componentize-js for JavaScript) with the schemas
    /// its manifest declares; the last line printed is the component's path.
    Build {
        /// The project's directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Cargo target directory (default: $CARGO_TARGET_DIR/weir-plugins, or DIR/target); for
        /// Python and JavaScript, the output directory (default: DIR/build).
        #[arg(long)]
        target_dir: Option<PathBuf>,
        /// Path to weir's `sdk/` directory, for Python and JavaScript (default: the one this
        /// weir was built from).
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
    /// Run a component locally, without a server, on one message per input line, and print
    /// each input's outcome.
    Test {
        /// The component.
        file: PathBuf,
        /// One message payload per line.
        #[arg(long)]
        input: PathBuf,
        /// Step config `KEY=VALUE`; repeat for more.
        #[arg(long = "config", value_parser = super::parse_kv)]
        config: Vec<(String, String)>,
        /// Input lines are `{"value": …, "key": "…", "headers": {…}}` envelopes.
        #[arg(long)]
        envelope: bool,
        /// Print one JSON object per input.
        #[arg(long)]
        json: bool,
        /// Exit 0 even when inputs fail (a test of failures); otherwise any failed input
        /// makes the command fail.
        #[arg(long)]
        expect_failures: bool,
    },
    /// Every plugin: live and shadow version, versions, users.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every version of a plugin.
    Versions {
        /// Plugin name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One version in full: `NAME` (the live one) or `NAME@V`.
    Describe {
        /// Plugin reference.
        reference: String,
    },
    /// Make an earlier version live again (hot swap, like a deploy).
    Rollback {
        /// Plugin name.
        name: String,
        /// Version to go back to (default: the one below the live version).
        #[arg(long)]
        to: Option<u32>,
    },
    /// How the shadow's outcomes compare with the live version's.
    Diff {
        /// Plugin name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make the shadow version live (hot swap) and stop shadowing.
    Promote {
        /// Plugin name.
        name: String,
    },
    /// Delete every version of a plugin that no pipeline uses.
    Remove {
        /// Plugin name.
        name: String,
    },
}

/// Sandbox limits and grants, fixed per version at deploy.
#[derive(Args)]
pub struct SandboxArgs {
    /// Linear memory limit (e.g. 64MiB; at most 512MiB).
    #[arg(long, default_value = "64MiB", value_parser = super::parse_size)]
    memory: usize,
    /// CPU time per batch, in milliseconds; a plugin running longer is interrupted.
    #[arg(long, default_value_t = limits::PLUGIN_CPU_MS_PER_BATCH)]
    cpu_ms: u64,
    /// Output bytes per batch.
    #[arg(long, default_value = "64MiB", value_parser = super::parse_size)]
    max_output: usize,
    /// Largest state value.
    #[arg(long, default_value = "1MiB", value_parser = super::parse_size)]
    max_state_value: usize,
    /// State bytes written per batch.
    #[arg(long, default_value = "64MiB", value_parser = super::parse_size)]
    max_state_per_batch: usize,
    /// Log lines per second; more are counted and dropped.
    #[arg(long, default_value_t = limits::PLUGIN_LOG_LINES_PER_S)]
    log_rate: u32,
    /// Let the plugin read the real wall and monotonic clocks (default: frozen at 0, so
    /// replays are deterministic; use message timestamps instead).
    #[arg(long)]
    allow_clock: bool,
    /// Let the plugin read this environment variable of the server; repeat for more.
    #[arg(long = "allow-env", value_name = "NAME")]
    allow_env: Vec<String>,
}

impl SandboxArgs {
    fn sandbox(self) -> Sandbox {
        Sandbox {
            memory_bytes: self.memory,
            cpu_ms_per_batch: self.cpu_ms,
            output_bytes_per_batch: self.max_output,
            state_value_bytes: self.max_state_value,
            state_bytes_per_batch: self.max_state_per_batch,
            log_lines_per_s: self.log_rate,
            allow_clock: self.allow_clock,
            allow_env: self.allow_env,
        }
    }
}

/// Run one `weir plugin` subcommand, connecting to `server` only for those that need it.
pub async fn run(server: &super::Target, cmd: PluginCmd) -> anyhow::Result<()> {
    // Authoring commands work without a server.
    match cmd {
        PluginCmd::New { name, kind, lang, dir, sdk_path } => super::author::new(&name, kind, lang, dir, sdk_path),
        PluginCmd::Build { dir, target_dir, sdk_path } => build(dir, target_dir, sdk_path).await,
        PluginCmd::Unit { dir, sdk_path } => super::polyglot::unit(&dir, &super::author::sdk_root(sdk_path)?),
        PluginCmd::Schemas { file, reads, writes, out } => super::declare::run(&file, reads, writes, out),
        PluginCmd::Test { file, input, config, envelope, json, expect_failures } => {
            test(file, input, config, envelope, json, expect_failures).await
        }
        other => run_remote(&super::connect(server).await?, other).await,
    }
}

/// Run one `weir plugin` subcommand that talks to the server.
async fn run_remote(client: &Client, cmd: PluginCmd) -> anyhow::Result<()> {
    match cmd {
        PluginCmd::New { .. }
        | PluginCmd::Build { .. }
        | PluginCmd::Test { .. }
        | PluginCmd::Unit { .. }
        | PluginCmd::Schemas { .. } => {
            unreachable!("run handles the authoring commands")
        }
        PluginCmd::Deploy { name, watch: Some(dir), .. } => super::author::watch(client, &name, &dir).await?,
        PluginCmd::Deploy { name, file, shadow, sandbox, .. } => deploy(client, &name, file, shadow, sandbox).await?,
        PluginCmd::List { json } => list(client, json).await?,
        PluginCmd::Versions { name, json } => versions(client, &name, json).await?,
        PluginCmd::Describe { reference } => describe(&client.describe_plugin(&reference).await?),
        PluginCmd::Rollback { name, to } => rollback(client, &name, to).await?,
        PluginCmd::Promote { name } => promote(client, &name).await?,
        PluginCmd::Diff { name, json } => diff(client, &name, json).await?,
        PluginCmd::Remove { name } => remove(client, &name).await?,
    }
    Ok(())
}

/// Build the plugin project in `dir` and print the component's path.
async fn build(dir: PathBuf, target_dir: Option<PathBuf>, sdk_path: Option<PathBuf>) -> anyhow::Result<()> {
    // Builds run for a while; keep them off the async runtime's threads.
    let path = tokio::task::spawn_blocking(move || super::author::build(&dir, target_dir, sdk_path)).await??;
    println!("{}", path.display());
    Ok(())
}

/// Run the component in `file` locally on each line of `input` and print the outcomes.
async fn test(
    file: PathBuf,
    input: PathBuf,
    config: Vec<(String, String)>,
    envelope: bool,
    json: bool,
    expect_failures: bool,
) -> anyhow::Result<()> {
    // Compiling and running the component blocks; keep it off the async runtime's threads.
    tokio::task::spawn_blocking(move || super::author::test(&file, &input, config, envelope, json, expect_failures))
        .await?
}

/// Deploy the component in `file` as the next live (or shadow) version of `name`.
async fn deploy(
    client: &Client,
    name: &str,
    file: Option<PathBuf>,
    shadow: bool,
    sandbox: SandboxArgs,
) -> anyhow::Result<()> {
    let file = file.context("give the component file or --watch DIR")?;
    let wasm = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let info = client.deploy_plugin_with(name, wasm, Some(sandbox.sandbox()), shadow).await?;
    let role = if shadow { "as the shadow" } else { "live" };
    println!(
        "deployed {} {role} ({}, {}, hash {})",
        info.label(),
        info.world,
        output::bytes(info.size),
        &info.hash[..12]
    );
    Ok(())
}

/// Print every plugin with its live and shadow versions and users, as a table or JSON.
async fn list(client: &Client, json: bool) -> anyhow::Result<()> {
    let plugins = client.list_plugins().await?;
    if json {
        return output::json(&plugins);
    }
    let rows = plugins
        .iter()
        .map(|p| {
            vec![
                p.live.name.clone(),
                p.live.version.to_string(),
                p.shadow.map_or("-".into(), |v| v.to_string()),
                p.versions.to_string(),
                output::bytes(p.live.size),
                if p.used_by.is_empty() { "-".into() } else { p.used_by.join(",") },
            ]
        })
        .collect();
    output::table(&["PLUGIN", "LIVE", "SHADOW", "VERSIONS", "SIZE", "USED BY"], rows);
    Ok(())
}

/// Print every version of plugin `name`, as a table or JSON.
async fn versions(client: &Client, name: &str, json: bool) -> anyhow::Result<()> {
    let versions = client.plugin_versions(name).await?;
    if json {
        return output::json(&versions);
    }
    let rows = versions
        .iter()
        .map(|v| {
            vec![
                v.version.to_string(),
                v.hash[..12].to_string(),
                output::bytes(v.size),
                output::time(v.deployed_ms),
                v.world.clone(),
            ]
        })
        .collect();
    // ABI: the WIT world the component speaks (README: "shows which ABI each version speaks").
    output::table(&["VERSION", "HASH", "SIZE", "DEPLOYED", "ABI"], rows);
    Ok(())
}

/// Make version `to` (default: the one below the live version) of `name` live again.
async fn rollback(client: &Client, name: &str, to: Option<u32>) -> anyhow::Result<()> {
    let info = client.rollback_plugin(name, to).await?;
    println!("{} is live again", info.label());
    Ok(())
}

/// Make the shadow version of `name` live.
async fn promote(client: &Client, name: &str) -> anyhow::Result<()> {
    let info = client.promote_plugin(name).await?;
    println!("promoted {} to live", info.label());
    Ok(())
}

/// Print how the shadow version of `name` compares with the live one, with sample
/// differences, as text or JSON.
async fn diff(client: &Client, name: &str, json: bool) -> anyhow::Result<()> {
    let d = client.plugin_diff(name).await?;
    if json {
        return output::json(&d);
    }
    let Some(shadow) = d.shadow_version else {
        println!("`{name}` has no shadow version; deploy one with `weir plugin deploy {name} FILE --shadow`");
        return Ok(());
    };
    let live = d.live_version.map_or("-".into(), |v| v.to_string());
    println!(
        "{name}@{shadow} (shadow) vs {name}@{live} (live): {} matched, {} differed, {} shadow failures",
        d.matched, d.differed, d.shadow_failures
    );
    for s in &d.samples {
        println!(
            "- {} step {} partition {} offset {}:\n    live:   {}\n    shadow: {}",
            s.pipeline, s.step, s.partition, s.offset, s.live, s.shadow
        );
    }
    if !d.schema_changes.is_empty() {
        println!("declared schemas:");
        for line in &d.schema_changes {
            println!("- {line}");
        }
    }
    Ok(())
}

/// Delete every version of plugin `name`.
async fn remove(client: &Client, name: &str) -> anyhow::Result<()> {
    client.remove_plugin(name).await?;
    println!("removed every version of {name}");
    Ok(())
}

/// Print one plugin version in full: identity, sandbox limits and grants.
fn describe(p: &PluginInfo) {
    let s = &p.sandbox;
    println!("plugin      {}", p.label());
    println!("world       {}", p.world);
    println!("hash        {}", p.hash);
    println!("size        {}", output::bytes(p.size));
    println!("deployed    {}", output::time(p.deployed_ms));
    println!("memory      {}", output::bytes(s.memory_bytes as u64));
    println!("cpu/batch   {} ms", s.cpu_ms_per_batch);
    println!("output      {} per batch", output::bytes(s.output_bytes_per_batch as u64));
    println!(
        "state       {} per value, {} per batch",
        output::bytes(s.state_value_bytes as u64),
        output::bytes(s.state_bytes_per_batch as u64)
    );
    println!("log rate    {} lines/s", s.log_lines_per_s);
    let env = if s.allow_env.is_empty() { "none".to_string() } else { s.allow_env.join(", ") };
    println!(
        "grants      clock: {}, environment: {env}, filesystem: none, network: none",
        if s.allow_clock { "real" } else { "frozen" }
    );
}
