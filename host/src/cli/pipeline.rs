//! `weir pipeline …`.

use std::collections::BTreeMap;

use anyhow::bail;
use clap::Subcommand;
use weir_host::client::Client;
use weir_host::pipeline::{PipelineSpec, PipelineStatus, RunState, StartPosition, StepSpec};

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
        #[arg(long, value_enum, default_value_t = StartPosition::Earliest)]
        from: StartPosition,
        /// Consumer group for the source offsets (default `pipeline.NAME`).
        #[arg(long)]
        group: Option<String>,
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
}

pub async fn run(client: &Client, cmd: PipelineCmd) -> anyhow::Result<()> {
    match cmd {
        PipelineCmd::Create {
            name,
            source,
            plugins,
            sink,
            config,
            from,
            group,
        } => {
            let steps = steps(plugins, &config)?;
            let spec = PipelineSpec {
                name,
                source,
                group,
                steps,
                sink,
                start: from,
                batch_max_messages: None,
            };
            let status = client.create_pipeline(spec).await?;
            println!(
                "created pipeline {} ({} → {} → {})",
                status.spec.name,
                status.spec.source,
                status.plugins.join(" → "),
                status.spec.sink
            );
        }
        PipelineCmd::List { json } => {
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
                        format!(
                            "{} → {} → {}",
                            p.spec.source,
                            p.plugins.join(" → "),
                            p.spec.sink
                        ),
                        p.processed.to_string(),
                        p.lag().to_string(),
                    ]
                })
                .collect();
            output::table(&["PIPELINE", "STATE", "FLOW", "PROCESSED", "LAG"], rows);
        }
        PipelineCmd::Status { name, json } => {
            let p = client.pipeline_status(&name).await?;
            if json {
                return output::json(&p);
            }
            print_status(&p);
        }
        PipelineCmd::Delete { name } => {
            client.delete_pipeline(&name).await?;
            println!("deleted pipeline {name}");
        }
    }
    Ok(())
}

/// Build steps from `--plugin`s and `--config [STEP:]K=V`s.
fn steps(plugins: Vec<String>, config: &[String]) -> anyhow::Result<Vec<StepSpec>> {
    let mut configs: Vec<BTreeMap<String, String>> = vec![BTreeMap::new(); plugins.len()];
    for c in config {
        let (step, kv) = match c.split_once(':') {
            Some((s, kv)) if s.parse::<usize>().is_ok() && !s.contains('=') => {
                (s.parse::<usize>()?, kv)
            }
            _ => (1, c.as_str()),
        };
        if step == 0 || step > plugins.len() {
            bail!(
                "--config {c:?} names step {step}, but the pipeline has {} step(s)",
                plugins.len()
            );
        }
        let (k, v) = super::parse_kv(kv).map_err(anyhow::Error::msg)?;
        configs[step - 1].insert(k, v);
    }
    Ok(plugins
        .into_iter()
        .zip(configs)
        .map(|(plugin, config)| StepSpec { plugin, config })
        .collect())
}

fn state(p: &PipelineStatus) -> String {
    match p.state {
        RunState::Running => "running".into(),
        RunState::Halted => "HALTED".into(),
    }
}

fn print_status(p: &PipelineStatus) {
    println!("pipeline   {}", p.spec.name);
    println!("state      {}", state(p));
    println!("source     {} (group {})", p.spec.source, p.spec.group());
    for (i, (step, plugin)) in p.spec.steps.iter().zip(&p.plugins).enumerate() {
        let cfg: Vec<String> = step
            .config
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("step {}     {plugin} {}", i + 1, cfg.join(" "));
    }
    println!("sink       {}", p.spec.sink);
    println!(
        "processed  {} in {} batches; emitted {}, dropped {}",
        p.processed, p.batches, p.emitted, p.dropped
    );
    if let Some(e) = &p.last_error {
        println!("error      {e}");
    }
    let rows = p
        .partitions
        .iter()
        .map(|(part, c, hw)| {
            vec![
                part.to_string(),
                c.to_string(),
                hw.to_string(),
                hw.saturating_sub(*c).to_string(),
            ]
        })
        .collect();
    output::table(&["PARTITION", "COMMITTED", "END", "LAG"], rows);
}
