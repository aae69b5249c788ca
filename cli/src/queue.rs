//! `weir queue …`: point-to-point queues with visibility timeouts, priorities, delays, FIFO
//! groups, dedup and dead letters.

use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use weir_client::client::Client;
use weir_client::wire::{Nack, NewQueueMessage, QueueConfig};
use weir_host::limits;

use super::output;

#[derive(Subcommand)]
pub enum QueueCmd {
    /// Create a queue.
    Create {
        /// Queue name.
        name: String,
        /// How long a received message stays invisible before it is delivered again.
        #[arg(long, default_value = "30s", value_parser = super::parse_duration)]
        visibility_timeout: Duration,
        /// Deliveries before the message moves to the dead-letter queue.
        #[arg(long)]
        max_deliveries: Option<u32>,
        /// Dead-letter queue (created if missing).
        #[arg(long)]
        dead_letter: Option<String>,
        /// How long a dedup id is remembered.
        #[arg(long, default_value = "5m", value_parser = super::parse_duration)]
        dedup_window: Duration,
        /// Most messages held.
        #[arg(long, default_value_t = limits::QUEUE_MAX_MESSAGES)]
        max_messages: usize,
    },
    /// Send BODY, or one message per stdin line.
    Send {
        /// Queue name.
        name: String,
        /// The message; without it, each stdin line is one.
        body: Option<String>,
        /// 0 (lowest, default) to 9; higher is delivered first.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=9))]
        priority: u8,
        /// Invisible for this long.
        #[arg(long, value_parser = super::parse_duration)]
        delay: Option<Duration>,
        /// Dedup id: a repeat within the queue's window is accepted but not enqueued.
        #[arg(long)]
        dedup_id: Option<String>,
        /// FIFO group: one message of a group in flight at a time, in send order.
        #[arg(long)]
        group: Option<String>,
        /// Header `NAME=VALUE`; repeat for more.
        #[arg(long = "header", value_parser = super::parse_kv)]
        headers: Vec<(String, String)>,
    },
    /// Receive messages and print their bodies (with --json: receipts and metadata too).
    /// Returns at once when nothing is ready, unless --wait is given.
    Receive {
        /// Queue name.
        name: String,
        /// Most messages.
        #[arg(long, default_value_t = 1)]
        max: usize,
        /// Wait this long for a message.
        #[arg(long, value_parser = super::parse_duration)]
        wait: Option<Duration>,
        /// Acknowledge what was received at once.
        #[arg(long)]
        ack: bool,
        /// Print JSON lines with the receipt, delivery count and headers.
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge deliveries by receipt.
    Ack {
        /// Queue name.
        name: String,
        /// Receipts.
        #[arg(required = true)]
        receipts: Vec<String>,
    },
    /// Hand deliveries back: requeue (default) or dead-letter.
    Nack {
        /// Queue name.
        name: String,
        /// Receipts.
        #[arg(required = true)]
        receipts: Vec<String>,
        /// Move them to the dead-letter queue now.
        #[arg(long, conflicts_with = "delay")]
        dead_letter: bool,
        /// Requeue, visible again after this long.
        #[arg(long, value_parser = super::parse_duration)]
        delay: Option<Duration>,
        /// Requeue (the default; for symmetry with --dead-letter).
        #[arg(long)]
        requeue: bool,
    },
    /// Give deliveries more time before they are delivered again.
    Extend {
        /// Queue name.
        name: String,
        /// New visibility timeout from now.
        #[arg(long, value_parser = super::parse_duration)]
        timeout: Duration,
        /// Receipts.
        #[arg(required = true)]
        receipts: Vec<String>,
    },
    /// Every queue with its counts.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One queue's settings and counts.
    Describe {
        /// Queue name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove every message.
    Purge {
        /// Queue name.
        name: String,
    },
    /// Delete the queue and its messages.
    Delete {
        /// Queue name.
        name: String,
    },
}

/// Run one `weir queue` subcommand.
pub async fn run(client: &Client, cmd: QueueCmd) -> anyhow::Result<()> {
    match cmd {
        QueueCmd::Create { name, visibility_timeout, max_deliveries, dead_letter, dedup_window, max_messages } => {
            create(client, &name, visibility_timeout, max_deliveries, dead_letter, dedup_window, max_messages).await?
        }
        QueueCmd::Send { name, body, priority, delay, dedup_id, group, headers } => {
            send(client, &name, body, priority, delay, dedup_id, group, headers).await?
        }
        QueueCmd::Receive { name, max, wait, ack, json } => receive(client, &name, max, wait, ack, json).await?,
        QueueCmd::Ack { name, receipts } => client.queue_ack(&name, receipts).await?,
        QueueCmd::Nack { name, receipts, dead_letter, delay, requeue: _ } => {
            nack(client, &name, receipts, dead_letter, delay).await?
        }
        QueueCmd::Extend { name, timeout, receipts } => client.queue_extend(&name, receipts, timeout).await?,
        QueueCmd::List { json } => list(client, json).await?,
        QueueCmd::Describe { name, json } => describe(client, &name, json).await?,
        QueueCmd::Purge { name } => println!("purged {} message(s) from {name}", client.purge_queue(&name).await?),
        QueueCmd::Delete { name } => delete(client, &name).await?,
    }
    Ok(())
}

/// Create a queue and report where its dead letters go.
async fn create(
    client: &Client,
    name: &str,
    visibility_timeout: Duration,
    max_deliveries: Option<u32>,
    dead_letter: Option<String>,
    dedup_window: Duration,
    max_messages: usize,
) -> anyhow::Result<()> {
    let config = QueueConfig {
        visibility_timeout_ms: visibility_timeout.as_millis() as u64,
        max_deliveries,
        dead_letter,
        dedup_window_ms: dedup_window.as_millis() as u64,
        max_messages,
        ..QueueConfig::default()
    };
    let q = client.create_queue(name, config).await?;
    let dlq = q.config.dead_letter.map(|d| format!(", dead letters to {d}")).unwrap_or_default();
    println!("created queue {}{dlq}", q.name);
    Ok(())
}

/// Send `body`, or one message per stdin line, all with the same options, and report how
/// many were enqueued.
// One parameter per `send` flag: bundling them would only restate `QueueCmd::Send`.
#[allow(clippy::too_many_arguments)]
async fn send(
    client: &Client,
    name: &str,
    body: Option<String>,
    priority: u8,
    delay: Option<Duration>,
    dedup_id: Option<String>,
    group: Option<String>,
    headers: Vec<(String, String)>,
) -> anyhow::Result<()> {
    let make = |body: String| NewQueueMessage {
        body: body.into_bytes(),
        headers: headers.clone(),
        priority,
        delay_ms: delay.map_or(0, |d| d.as_millis() as u64),
        dedup_id: dedup_id.clone(),
        group: group.clone(),
        ttl_ms: None,
    };
    let messages = match body {
        Some(b) => vec![make(b)],
        None => {
            let mut lines = BufReader::new(tokio::io::stdin()).lines();
            let mut all = Vec::new();
            while let Some(l) = lines.next_line().await.context("reading stdin")? {
                all.push(make(l));
            }
            all
        }
    };
    let mut sent = 0;
    let mut repeats = 0;
    for chunk in messages.chunks(1000) {
        for enqueued in client.queue_send(name, chunk.to_vec()).await? {
            if enqueued { sent += 1 } else { repeats += 1 }
        }
    }
    let dup = if repeats > 0 { format!(" ({repeats} dedup repeat(s) accepted, not enqueued)") } else { String::new() };
    eprintln!("sent {sent} message(s) to {name}{dup}");
    Ok(())
}

/// Hand deliveries back: to the dead-letter queue, or requeued after `delay`.
async fn nack(
    client: &Client,
    name: &str,
    receipts: Vec<String>,
    dead_letter: bool,
    delay: Option<Duration>,
) -> anyhow::Result<()> {
    let how = if dead_letter {
        Nack::DeadLetter
    } else {
        Nack::Requeue { delay_ms: delay.map_or(0, |d| d.as_millis() as u64) }
    };
    client.queue_nack(name, receipts, how).await?;
    Ok(())
}

/// Print every queue with its counts, as a table or JSON.
async fn list(client: &Client, json: bool) -> anyhow::Result<()> {
    let qs = client.list_queues().await?;
    if json {
        return output::json(&qs);
    }
    let rows = qs
        .iter()
        .map(|q| {
            vec![
                q.name.clone(),
                q.ready.to_string(),
                q.in_flight.to_string(),
                q.waiting.to_string(),
                match (&q.config.dead_letter_exchange, &q.config.dead_letter) {
                    (Some(x), _) => format!("exchange {x}"),
                    (None, Some(d)) => d.clone(),
                    (None, None) => "-".into(),
                },
            ]
        })
        .collect();
    output::table(&["QUEUE", "READY", "IN FLIGHT", "WAITING", "DEAD LETTERS TO"], rows);
    Ok(())
}

/// Print one queue's settings and counts, as text or JSON.
async fn describe(client: &Client, name: &str, json: bool) -> anyhow::Result<()> {
    let q = client.describe_queue(name).await?;
    if json {
        return output::json(&q);
    }
    println!("queue               {}", q.name);
    println!("ready / in flight   {} / {}", q.ready, q.in_flight);
    println!("waiting             {} (delayed or behind their FIFO group)", q.waiting);
    println!(
        "visibility timeout  {}",
        humantime::format_duration(Duration::from_millis(q.config.visibility_timeout_ms))
    );
    println!("max deliveries      {}", q.config.max_deliveries.map_or("unlimited".into(), |m| m.to_string()));
    println!("dead letters to     {}", q.config.dead_letter.unwrap_or("- (dropped, with a warning)".into()));
    println!("dedup window        {}", humantime::format_duration(Duration::from_millis(q.config.dedup_window_ms)));
    println!("created             {}", output::time(q.created_ms));
    Ok(())
}

/// Delete a queue and its messages.
async fn delete(client: &Client, name: &str) -> anyhow::Result<()> {
    client.delete_queue(name).await?;
    println!("deleted queue {name}");
    Ok(())
}

/// Receive up to `max` messages, print them, and acknowledge them if `ack`.
async fn receive(
    client: &Client,
    name: &str,
    max: usize,
    wait: Option<Duration>,
    ack: bool,
    json: bool,
) -> anyhow::Result<()> {
    let got = client.queue_receive(name, max, wait.unwrap_or(Duration::ZERO)).await?;
    for d in &got {
        if json {
            let line = json!({
                "receipt": d.receipt,
                "body": String::from_utf8_lossy(&d.body),
                "deliveries": d.deliveries,
                "priority": d.priority,
                "group": d.group,
                "headers": d.headers.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            });
            println!("{line}");
        } else {
            println!("{}", String::from_utf8_lossy(&d.body));
        }
    }
    if ack && !got.is_empty() {
        client.queue_ack(name, got.iter().map(|d| d.receipt.clone()).collect()).await?;
    }
    Ok(())
}
