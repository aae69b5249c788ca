//! `weir dlq replay`: send dead letters back to where they came from, once the plugin is fixed.

use clap::Subcommand;
use weir_client::client::Client;

#[derive(Subcommand)]
pub enum DlqCmd {
    /// Re-produce every dead letter not replayed before, without its `weir-dlq-*` headers, to
    /// its original topic (or `--to`). The server commits the records and the replay's progress
    /// (the group `weir.dlq-replay`) together, so a second replay sends only newer dead letters
    /// and an interrupted one sends none twice.
    Replay {
        /// Dead-letter topic.
        topic: String,
        /// Send everything here instead of each message's original topic.
        #[arg(long)]
        to: Option<String>,
    },
}

pub async fn run(client: &Client, cmd: DlqCmd) -> anyhow::Result<()> {
    let DlqCmd::Replay { topic, to } = cmd;
    let replayed = client.replay_dead_letters(&topic, to.as_deref()).await?;
    println!("replayed {replayed} dead letter(s) from {topic}");
    Ok(())
}
