//! `weir dlq replay`: send dead letters back to where they came from, once the plugin is fixed.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Subcommand;
use weir_client::client::Client;
use weir_client::wire::{FetchPosition, WireRecord};
use weir_sdk::headers;

#[derive(Subcommand)]
pub enum DlqCmd {
    /// Re-produce every dead letter not replayed before, without its `weir-dlq-*` headers, to
    /// its original topic (or `--to`). Progress is kept in the group `weir.dlq-replay`, so a
    /// second replay sends only newer dead letters.
    Replay {
        /// Dead-letter topic.
        topic: String,
        /// Send everything here instead of each message's original topic.
        #[arg(long)]
        to: Option<String>,
    },
}

/// Group that remembers how far each dead-letter topic was replayed.
const REPLAY_GROUP: &str = "weir.dlq-replay";

pub async fn run(client: &Client, cmd: DlqCmd) -> anyhow::Result<()> {
    let DlqCmd::Replay { topic, to } = cmd;
    let info = client.describe_topic(&topic).await?;
    let committed = client.fetch_offsets(REPLAY_GROUP, &topic).await?;
    let mut replayed = 0usize;
    for (p, (start, end)) in info.partitions.iter().enumerate() {
        let mut offset = committed[p].unwrap_or(*start).max(*start);
        while offset < *end {
            let pos = vec![FetchPosition { partition: p as u32, offset }];
            let parts = client.fetch(&topic, pos, 10_000, Duration::ZERO).await?;
            let Some(part) = parts.into_iter().next().filter(|p| !p.records.is_empty()) else { break };
            let mut by_target: BTreeMap<String, Vec<WireRecord>> = BTreeMap::new();
            let n = part.records.len() as u64;
            for rec in part.records {
                let original = rec.header(headers::DLQ_TOPIC).map(str::to_string);
                let Some(target) = to.clone().or(original) else {
                    anyhow::bail!("a record in {topic} has no weir-dlq-topic header; pass --to TOPIC");
                };
                let kept = rec.headers.into_iter().filter(|(k, _)| !k.starts_with(headers::DLQ_PREFIX)).collect();
                by_target.entry(target).or_default().push(WireRecord { key: rec.key, value: rec.value, headers: kept });
            }
            for (target, records) in by_target {
                replayed += records.len();
                client.produce(&target, records).await?;
            }
            offset = part.first_offset + n;
            client.commit_offsets(REPLAY_GROUP, &topic, vec![(p as u32, offset)]).await?;
        }
    }
    println!("replayed {replayed} dead letter(s) from {topic}");
    Ok(())
}
