//! `weir state …`: look at and edit the state a pipeline step keeps.

use clap::Subcommand;
use weir_client::client::Client;
use weir_client::wire::StateEntry;

use super::output;

#[derive(Subcommand)]
pub enum StateCmd {
    /// The value under KEY, per source partition.
    Get {
        /// Pipeline.
        pipeline: String,
        /// Step, from 1.
        step: usize,
        /// Key (as text).
        key: String,
    },
    /// Entries of a step, optionally under a key prefix.
    List {
        /// Pipeline.
        pipeline: String,
        /// Step, from 1.
        step: usize,
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Most entries.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete KEY from a step's state in every partition.
    Delete {
        /// Pipeline.
        pipeline: String,
        /// Step, from 1.
        step: usize,
        /// Key (as text).
        key: String,
    },
}

pub async fn run(client: &Client, cmd: StateCmd) -> anyhow::Result<()> {
    match cmd {
        StateCmd::Get { pipeline, step, key } => {
            let entries = client.state_get(&pipeline, step, key.as_bytes()).await?;
            if entries.is_empty() {
                anyhow::bail!("no state under {key:?} in step {step} of pipeline {pipeline}");
            }
            print_entries(&entries);
        }
        StateCmd::List { pipeline, step, prefix, limit, json } => {
            let entries = client.state_list(&pipeline, step, prefix.as_bytes(), limit).await?;
            if json {
                let rows: Vec<_> = entries
                    .iter()
                    .map(
                        |e| serde_json::json!({"partition": e.partition, "key": text(&e.key), "value": text(&e.value)}),
                    )
                    .collect();
                return output::json(&rows);
            }
            print_entries(&entries);
        }
        StateCmd::Delete { pipeline, step, key } => {
            let n = client.state_delete(&pipeline, step, key.as_bytes()).await?;
            println!("deleted {key:?} from {n} partition(s)");
        }
    }
    Ok(())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn print_entries(entries: &[StateEntry]) {
    let rows = entries.iter().map(|e| vec![e.partition.to_string(), text(&e.key), text(&e.value)]).collect();
    output::table(&["PARTITION", "KEY", "VALUE"], rows);
}
