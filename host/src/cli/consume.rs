//! `weir consume` and `weir group …`.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use weir_host::client::Client;
use weir_host::wire::{FetchPosition, FetchedRecord};

use super::output;

#[derive(Args)]
pub struct ConsumeArgs {
    /// Topic to read.
    topic: String,
    /// Consumer group: start at its committed offsets and commit as messages are printed.
    #[arg(long)]
    group: Option<String>,
    /// Where to start without a committed offset: `beginning`, `latest`, or an offset.
    #[arg(long, default_value = "beginning")]
    from: String,
    /// Keep waiting for new messages instead of exiting once caught up.
    #[arg(long)]
    follow: bool,
    /// Stop after this many messages.
    #[arg(long)]
    max: Option<u64>,
    /// Print one JSON object per message (partition, offset, timestamp, key, headers, value).
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum GroupCmd {
    /// Consumer groups with their lag.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One group's position and lag per partition.
    Describe {
        /// Group.
        group: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(client: &Client, args: ConsumeArgs) -> anyhow::Result<()> {
    let info = client.describe_topic(&args.topic).await?;
    let committed = match &args.group {
        Some(g) => client.fetch_offsets(g, &args.topic).await?,
        None => vec![None; info.partitions.len()],
    };
    let mut positions: Vec<FetchPosition> = Vec::new();
    for (p, (start, end)) in info.partitions.iter().enumerate() {
        let offset = match committed[p] {
            Some(o) => o,
            None => start_offset(&args.from, *start, *end)?,
        };
        positions.push(FetchPosition { partition: p as u32, offset });
    }
    // Without --follow, stop at the high watermarks seen now.
    let ends: Vec<u64> = info.partitions.iter().map(|(_, e)| *e).collect();
    let mut printed = 0u64;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    loop {
        let pending: Vec<FetchPosition> =
            positions.iter().copied().filter(|p| args.follow || p.offset < ends[p.partition as usize]).collect();
        if pending.is_empty() {
            break;
        }
        let want = args.max.map_or(10_000, |m| (m - printed).min(10_000)) as u32;
        let wait = if args.follow { Duration::from_secs(5) } else { Duration::ZERO };
        let parts = client.fetch(&args.topic, pending, want, wait).await?;
        let mut commits = Vec::new();
        for part in parts {
            let mut offset = part.first_offset;
            for rec in part.records {
                if !args.follow && offset >= ends[part.partition as usize] {
                    break;
                }
                print_record(&mut out, &args, part.partition, offset, &rec)?;
                offset += 1;
                printed += 1;
                if args.max.is_some_and(|m| printed >= m) {
                    break;
                }
            }
            positions[part.partition as usize].offset = offset;
            commits.push((part.partition, offset));
        }
        out.flush()?;
        if let Some(g) = &args.group {
            client.commit_offsets(g, &args.topic, commits).await.context("committing offsets")?;
        }
        if args.max.is_some_and(|m| printed >= m) {
            break;
        }
    }
    out.flush()?;
    Ok(())
}

fn start_offset(from: &str, start: u64, end: u64) -> anyhow::Result<u64> {
    Ok(match from {
        "beginning" | "earliest" => start,
        "latest" | "end" => end,
        n => match n.parse::<u64>() {
            Ok(o) => o,
            Err(_) => bail!("invalid --from {n:?}: use beginning, latest or an offset"),
        },
    })
}

fn print_record(
    out: &mut impl Write,
    args: &ConsumeArgs,
    partition: u32,
    offset: u64,
    rec: &FetchedRecord,
) -> anyhow::Result<()> {
    let FetchedRecord(ts, key, value, headers) = rec;
    if !args.json {
        out.write_all(value)?;
        out.write_all(b"\n")?;
        return Ok(());
    }
    let text = |b: &[u8]| match std::str::from_utf8(b) {
        Ok(s) => json!(s),
        Err(_) => json!({ "hex": b.iter().map(|x| format!("{x:02x}")).collect::<String>() }),
    };
    let line = json!({
        "partition": partition,
        "offset": offset,
        "timestamp_ms": ts,
        "key": key.as_ref().map(|k| text(k)),
        "headers": headers.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        "value": text(value),
    });
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")?;
    Ok(())
}

pub async fn run_group(client: &Client, cmd: GroupCmd) -> anyhow::Result<()> {
    let groups = client.list_groups().await?;
    match cmd {
        GroupCmd::List { json } => {
            if json {
                return output::json(&groups);
            }
            let rows = groups.iter().map(|g| vec![g.group.clone(), g.topic.clone(), g.lag().to_string()]).collect();
            output::table(&["GROUP", "TOPIC", "LAG"], rows);
        }
        GroupCmd::Describe { group, json } => {
            let mine: Vec<_> = groups.into_iter().filter(|g| g.group == group).collect();
            if mine.is_empty() {
                bail!("unknown group `{group}`: it has committed no offsets (see `weir group list`)");
            }
            if json {
                return output::json(&mine);
            }
            let mut rows = Vec::new();
            for g in &mine {
                for (p, c, hw) in &g.partitions {
                    let lag = hw.saturating_sub(c.unwrap_or(0));
                    rows.push(vec![
                        g.topic.clone(),
                        p.to_string(),
                        c.map_or("-".into(), |c| c.to_string()),
                        hw.to_string(),
                        lag.to_string(),
                    ]);
                }
            }
            output::table(&["TOPIC", "PARTITION", "COMMITTED", "END", "LAG"], rows);
        }
    }
    Ok(())
}
