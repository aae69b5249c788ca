//! `weir consume` and `weir group …`.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use weir_client::client::Client;
use weir_client::consumer::GroupConsumer;
use weir_client::wire::{FetchPosition, FetchedRecord, GroupInfo};

use super::output;

#[derive(Args)]
pub struct ConsumeArgs {
    /// Topic to read.
    topic: String,
    /// Consume as a member of this group: read only the partitions the group assigns to
    /// this member, from the group's committed offsets (its start when none), committing as
    /// messages are printed.
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
    /// One group's position and lag per partition, and its live members.
    Describe {
        /// Group.
        group: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Move a group's committed offsets in a topic (members pick them up on rejoin).
    Seek {
        /// Group.
        group: String,
        /// Topic.
        topic: String,
        /// This offset in every partition.
        #[arg(long, conflicts_with = "to_time", required_unless_present = "to_time")]
        to_offset: Option<u64>,
        /// The first offset at or after this time: RFC 3339, or a duration ago (`15m`).
        #[arg(long)]
        to_time: Option<String>,
    },
}

pub async fn run(client: &Client, args: ConsumeArgs) -> anyhow::Result<()> {
    if let Some(group) = args.group.clone() {
        return consume_group(client, &args, &group).await;
    }
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
        }
        out.flush()?;
        if args.max.is_some_and(|m| printed >= m) {
            break;
        }
    }
    out.flush()?;
    Ok(())
}

/// Consume as a member of `group`: only the partitions the group assigns to this member,
/// from the group's committed offsets, committing as messages are printed.
async fn consume_group(client: &Client, args: &ConsumeArgs, group: &str) -> anyhow::Result<()> {
    let info = client.describe_topic(&args.topic).await?;
    let ends: Vec<u64> = info.partitions.iter().map(|(_, e)| *e).collect();
    let mut member = GroupConsumer::join(client, group, &args.topic, Duration::from_secs(10)).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed = 0u64;
    loop {
        let caught_up = member.positions().iter().all(|(p, o)| *o >= ends[*p as usize]);
        if (!args.follow && caught_up) || args.max.is_some_and(|m| printed >= m) {
            break;
        }
        let want = args.max.map_or(10_000, |m| (m - printed).min(10_000)) as u32;
        let wait = if args.follow { Duration::from_secs(2) } else { Duration::ZERO };
        let mut next: std::collections::BTreeMap<u32, u64> = std::collections::BTreeMap::new();
        for (partition, offset, rec) in member.poll(want, wait).await? {
            let full = args.max.is_some_and(|m| printed >= m);
            if full || (!args.follow && offset >= ends[partition as usize]) {
                next.entry(partition).or_insert(offset);
                continue;
            }
            print_record(&mut out, args, partition, offset, &rec)?;
            printed += 1;
        }
        // Records fetched but not printed are read again (by this member or the next owner).
        for (p, o) in next {
            member.seek(p, o);
        }
        out.flush()?;
        if let Err(e) = member.commit().await {
            eprintln!("warning: {e}");
        }
    }
    out.flush()?;
    member.leave().await.context("leaving the group")?;
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
    let FetchedRecord { timestamp_ms: ts, key, value, headers } = rec;
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

/// Run one `weir group` subcommand.
pub async fn run_group(client: &Client, cmd: GroupCmd) -> anyhow::Result<()> {
    match cmd {
        GroupCmd::List { json } => list_groups(&client.list_groups().await?, json)?,
        GroupCmd::Seek { group, topic, to_offset, to_time } => seek(client, &group, &topic, to_offset, to_time).await?,
        GroupCmd::Describe { group, json } => describe_group(client, client.list_groups().await?, &group, json).await?,
    }
    Ok(())
}

/// Print every consumer group with its lag, as a table or JSON.
fn list_groups(groups: &[GroupInfo], json: bool) -> anyhow::Result<()> {
    if json {
        return output::json(&groups);
    }
    let rows = groups.iter().map(|g| vec![g.group.clone(), g.topic.clone(), g.lag().to_string()]).collect();
    output::table(&["GROUP", "TOPIC", "LAG"], rows);
    Ok(())
}

/// Commit `group`'s offsets in `topic` at `to_offset` (clamped to each partition's range) or
/// at the first offset at or after `to_time`, and print them.
async fn seek(
    client: &Client,
    group: &str,
    topic: &str,
    to_offset: Option<u64>,
    to_time: Option<String>,
) -> anyhow::Result<()> {
    let info = client.describe_topic(topic).await?;
    let offsets: Vec<(u32, u64)> = match (to_offset, to_time) {
        (Some(o), _) => info.partitions.iter().enumerate().map(|(p, (s, e))| (p as u32, o.clamp(*s, *e))).collect(),
        (None, Some(t)) => {
            let at = super::pipeline::parse_time(&t)?;
            let found = client.offsets_for_time(topic, at).await?;
            found.iter().enumerate().map(|(p, o)| (p as u32, o.unwrap_or(info.partitions[p].1))).collect()
        }
        (None, None) => bail!("give --to-offset or --to-time"),
    };
    client.commit_offsets(group, topic, offsets.clone()).await?;
    let shown: Vec<String> = offsets.iter().map(|(p, o)| format!("{p}:{o}")).collect();
    println!("group {group} on {topic} now at partition:offset {}", shown.join(" "));
    Ok(())
}

/// Print `group`'s live members and its position and lag per partition (from `groups`, every
/// group's offsets), as text or JSON.
async fn describe_group(client: &Client, groups: Vec<GroupInfo>, group: &str, json: bool) -> anyhow::Result<()> {
    let mine: Vec<_> = groups.into_iter().filter(|g| g.group == group).collect();
    let members: Vec<_> = client.describe_groups().await?.into_iter().filter(|g| g.group == group).collect();
    if mine.is_empty() && members.is_empty() {
        bail!("unknown group `{group}`: it has no members and has committed no offsets (see `weir group list`)");
    }
    if json {
        return output::json(&serde_json::json!({ "offsets": mine, "members": members }));
    }
    for g in &members {
        println!("{} on {} (generation {}):", g.group, g.topic, g.generation);
        for (m, parts) in &g.members {
            println!("  {m}: partitions {parts:?}");
        }
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
    Ok(())
}
