//! `weir pipeline …`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use clap::Subcommand;
use weir_client::client::Client;
use weir_client::wire::{ErrorPolicy, PipelineSpec, PipelineStatus, ResetTarget, RunState, StartPosition, StepSpec};

use super::output;

#[derive(Subcommand)]
pub enum PipelineCmd {
    /// Create a pipeline: source topic → plugin step(s) → sink topic.
    Create {
        /// Pipeline name.
        name: String,
        /// Topic to read.
        #[arg(long)]
        source: String,
        /// Plugin of each step, `NAME` (follows the latest version) or `NAME@V`; repeat for a chain.
        #[arg(long = "plugin", required = true)]
        plugins: Vec<String>,
        /// Topic the last step writes to.
        #[arg(long)]
        sink: String,
        /// Step config `KEY=VALUE` (step 1), or `STEP:KEY=VALUE` for another step; repeat.
        #[arg(long = "config")]
        config: Vec<String>,
        /// Where to start reading the source.
        #[arg(long, value_parser = super::kebab::<StartPosition>, default_value = "earliest")]
        from: StartPosition,
        /// Consumer group for the source offsets (default `pipeline.NAME`).
        #[arg(long)]
        group: Option<String>,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// List pipelines.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a pipeline's state, counters and lag.
    Status {
        /// Pipeline name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop a pipeline and delete it with its state.
    Delete {
        /// Pipeline name.
        name: String,
    },
    /// Create or update a pipeline from a TOML spec file. Re-applying the same file changes
    /// nothing; changing only step versions hot-swaps them; any other change restarts the
    /// pipeline at its committed offsets with its state kept.
    Apply {
        /// The spec file (see examples/pipelines/).
        file: std::path::PathBuf,
    },
    /// Stop processing after in-flight batches (kept across server restarts).
    Pause {
        /// Pipeline name.
        name: String,
    },
    /// Continue a paused or halted pipeline at its committed offsets.
    Resume {
        /// Pipeline name.
        name: String,
    },
    /// Reprocess history: move the pipeline's source offsets, e.g. after fixing a plugin.
    Reset {
        /// Pipeline name.
        name: String,
        /// Offset to restart from, in every partition.
        #[arg(long, conflicts_with = "to_time", required_unless_present = "to_time")]
        to_offset: Option<u64>,
        /// Time to restart from: RFC 3339 (`2026-11-24T08:00:00Z`), or a duration ago (`15m`).
        #[arg(long)]
        to_time: Option<String>,
        /// Also delete all of the pipeline's state.
        #[arg(long)]
        reset_state: bool,
    },
}

/// Run one `weir pipeline` subcommand.
pub async fn run(client: &Client, cmd: PipelineCmd) -> anyhow::Result<()> {
    match cmd {
        PipelineCmd::Create { name, source, plugins, sink, config, from, group, policy } => {
            create(client, &name, &source, plugins, &sink, &config, from, group, policy).await?
        }
        PipelineCmd::List { json } => list(client, json).await?,
        PipelineCmd::Status { name, json } => status(client, &name, json).await?,
        PipelineCmd::Delete { name } => delete(client, &name).await?,
        PipelineCmd::Apply { file } => apply(client, &file).await?,
        PipelineCmd::Pause { name } => pause(client, &name).await?,
        PipelineCmd::Resume { name } => resume(client, &name).await?,
        PipelineCmd::Reset { name, to_offset, to_time, reset_state } => {
            reset(client, &name, to_offset, to_time, reset_state).await?
        }
    }
    Ok(())
}

/// Create a pipeline from the `create` flags and print its flow.
// One parameter per `create` flag: bundling them would only restate `PipelineCmd::Create`.
#[allow(clippy::too_many_arguments)]
async fn create(
    client: &Client,
    name: &str,
    source: &str,
    plugins: Vec<String>,
    sink: &str,
    config: &[String],
    from: StartPosition,
    group: Option<String>,
    policy: PolicyArgs,
) -> anyhow::Result<()> {
    let steps = steps(plugins, config)?;
    let mut spec = PipelineSpec::new(name, source, steps, sink);
    spec.group = group;
    spec.start = from;
    spec.on_error = policy.on_error;
    spec.max_attempts = policy.max_attempts;
    spec.backoff_ms = policy.backoff.map(|d| d.as_millis() as u64);
    spec.dead_letter_topic = policy.dead_letter_topic;
    let status = client.create_pipeline(spec).await?;
    println!(
        "created pipeline {} ({} → {} → {})",
        status.spec.name,
        status.spec.source,
        status.plugins.join(" → "),
        status.spec.sink
    );
    Ok(())
}

/// Print every pipeline with its state, flow, progress and lag, as a table or JSON.
async fn list(client: &Client, json: bool) -> anyhow::Result<()> {
    let all = client.list_pipelines().await?;
    if json {
        return output::json(&all);
    }
    let rows = all
        .iter()
        .map(|p| {
            vec![
                p.spec.name.clone(),
                state(p),
                format!("{} → {} → {}", p.spec.source, p.plugins.join(" → "), p.spec.sink),
                p.processed.to_string(),
                p.lag().to_string(),
            ]
        })
        .collect();
    output::table(&["PIPELINE", "STATE", "FLOW", "PROCESSED", "LAG"], rows);
    Ok(())
}

/// Print one pipeline's state, counters and lag, as text or JSON.
async fn status(client: &Client, name: &str, json: bool) -> anyhow::Result<()> {
    let p = client.pipeline_status(name).await?;
    if json {
        return output::json(&p);
    }
    print_status(&p);
    Ok(())
}

/// Stop a pipeline and delete it with its state.
async fn delete(client: &Client, name: &str) -> anyhow::Result<()> {
    client.delete_pipeline(name).await?;
    println!("deleted pipeline {name}");
    Ok(())
}

/// Create or update a pipeline from the TOML spec in `file` and print what changed.
async fn apply(client: &Client, file: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let spec: PipelineSpec =
        toml::from_str(&text).with_context(|| format!("{} is not a valid pipeline spec", file.display()))?;
    let (status, change) = client.apply_pipeline(spec).await?;
    println!("pipeline {}: {}", status.spec.name, format!("{change:?}").to_lowercase());
    Ok(())
}

/// Pause a pipeline after its in-flight batches.
async fn pause(client: &Client, name: &str) -> anyhow::Result<()> {
    client.pause_pipeline(name).await?;
    println!("paused pipeline {name}");
    Ok(())
}

/// Resume a paused or halted pipeline.
async fn resume(client: &Client, name: &str) -> anyhow::Result<()> {
    client.resume_pipeline(name).await?;
    println!("resumed pipeline {name}");
    Ok(())
}

/// Move a pipeline's source offsets to `to_offset` or `to_time` (and with `reset_state`
/// delete its state), then print where each partition restarts.
async fn reset(
    client: &Client,
    name: &str,
    to_offset: Option<u64>,
    to_time: Option<String>,
    reset_state: bool,
) -> anyhow::Result<()> {
    let to = match (to_offset, to_time) {
        (Some(o), _) => ResetTarget::Offset(o),
        (None, Some(t)) => ResetTarget::Time(parse_time(&t)?),
        (None, None) => bail!("give --to-offset or --to-time"),
    };
    let status = client.reset_pipeline(name, to, reset_state).await?;
    let at: Vec<String> = status.partitions.iter().map(|(p, c, _)| format!("{p}:{c}")).collect();
    let state = if reset_state { ", state deleted" } else { "" };
    println!("reset pipeline {name} to partition:offset {}{state}", at.join(" "));
    Ok(())
}

/// What happens when a step fails on a message.
#[derive(clap::Args)]
pub struct PolicyArgs {
    /// `halt` stops the pipeline at the message; `retry` retries then halts; `skip` goes on;
    /// `dead-letter` writes the message to the dead-letter topic with the reason and goes on.
    #[arg(long, value_parser = super::kebab::<ErrorPolicy>, default_value = "halt")]
    on_error: ErrorPolicy,
    /// Attempts per message for retryable failures and traps (default: 1 for halt, 10 for
    /// retry, 3 otherwise).
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Wait before the first retry, doubling each time (e.g. 100ms).
    #[arg(long, value_parser = super::parse_duration)]
    backoff: Option<std::time::Duration>,
    /// Dead-letter topic (default `NAME.dlq`, created with the pipeline).
    #[arg(long)]
    dead_letter_topic: Option<String>,
}

/// Build steps from `--plugin`s and `--config [STEP:]K=V`s.
fn steps(plugins: Vec<String>, config: &[String]) -> anyhow::Result<Vec<StepSpec>> {
    let mut configs: Vec<BTreeMap<String, String>> = vec![BTreeMap::new(); plugins.len()];
    for c in config {
        let (step, kv) = match c.split_once(':') {
            Some((s, kv)) if s.parse::<usize>().is_ok() && !s.contains('=') => (s.parse::<usize>()?, kv),
            _ => (1, c.as_str()),
        };
        if step == 0 || step > plugins.len() {
            bail!("--config {c:?} names step {step}, but the pipeline has {} step(s)", plugins.len());
        }
        let (k, v) = super::parse_kv(kv).map_err(anyhow::Error::msg)?;
        configs[step - 1].insert(k, v);
    }
    Ok(plugins.into_iter().zip(configs).map(|(plugin, config)| StepSpec { plugin, config }).collect())
}

fn state(p: &PipelineStatus) -> String {
    match p.state {
        RunState::Running => "running".into(),
        RunState::Paused => "paused".into(),
        RunState::Halted => "HALTED".into(),
    }
}

/// RFC 3339, or a duration meaning that long ago, in ms since the epoch.
pub fn parse_time(t: &str) -> anyhow::Result<u64> {
    if let Ok(at) = humantime::parse_rfc3339_weak(t) {
        return Ok(at.duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64);
    }
    match humantime::parse_duration(t) {
        Ok(ago) => Ok(weir_host::types::now_ms().saturating_sub(ago.as_millis() as u64)),
        Err(_) => bail!("invalid --to-time {t:?}: use RFC 3339 (2026-11-24T08:00:00Z) or a duration ago (15m)"),
    }
}

fn print_status(p: &PipelineStatus) {
    println!("pipeline   {}", p.spec.name);
    println!("state      {}", state(p));
    println!("source     {} (group {})", p.spec.source, p.spec.group());
    for (i, (step, plugin)) in p.spec.steps.iter().zip(&p.plugins).enumerate() {
        let cfg: Vec<String> = step.config.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let shadow = p.shadows.get(i).cloned().flatten().map(|s| format!(" (shadow {s})")).unwrap_or_default();
        println!("step {}     {plugin}{shadow} {}", i + 1, cfg.join(" "));
    }
    println!("sink       {}", p.spec.sink);
    let policy = format!("{:?}", p.spec.on_error).to_lowercase();
    println!(
        "on error   {policy} after {} attempt(s); dead letters to {}",
        weir_host::pipeline::PipelineSpec::from(p.spec.clone()).attempts(),
        p.spec.dead_letter_topic()
    );
    println!("processed  {} in {} batches; emitted {}, dropped {}", p.processed, p.batches, p.emitted, p.dropped);
    println!("failures   {} failed, {} dead-lettered, {} retries", p.failed, p.dead_lettered, p.retries);
    println!("swaps      {} (pause p99 {} µs)", p.swaps, p.swap_pause_p99_us);
    let step_rows = p
        .steps
        .iter()
        .zip(&p.plugins)
        .enumerate()
        .map(|(i, (s, plugin))| {
            let rate = (s.input * 1_000_000).checked_div(s.busy_us).unwrap_or(0);
            let latency = s.busy_us.checked_div(s.calls).unwrap_or(0);
            vec![
                (i + 1).to_string(),
                plugin.clone(),
                s.input.to_string(),
                s.output.to_string(),
                s.dropped.to_string(),
                s.errors.to_string(),
                format!("{rate}"),
                format!("{latency}"),
            ]
        })
        .collect();
    output::table(&["STEP", "PLUGIN", "IN", "OUT", "DROPPED", "ERRORS", "MSG/S BUSY", "µS/BATCH"], step_rows);
    if let Some(e) = &p.last_error {
        println!("error      {e}");
    }
    let rows = p
        .partitions
        .iter()
        .map(|(part, c, hw)| vec![part.to_string(), c.to_string(), hw.to_string(), hw.saturating_sub(*c).to_string()])
        .collect();
    output::table(&["PARTITION", "COMMITTED", "END", "LAG"], rows);
}
