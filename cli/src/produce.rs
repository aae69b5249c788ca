//! `weir produce`: one message per input line, sent in pipelined batches.

use std::collections::VecDeque;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde_bytes::ByteBuf;
use tokio::io::{AsyncBufReadExt, BufReader};
use weir_client::client::{Client, Pending, produced};
use weir_client::wire::WireRecord;

/// Batches in flight at once: enough to hide a group commit's fsync behind the next batches.
const IN_FLIGHT: usize = 16;

#[derive(Args)]
pub struct ProduceArgs {
    /// Topic to append to.
    topic: String,
    /// Read lines from this file instead of stdin.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Key of every message (messages with one key share a partition and keep their order).
    #[arg(long, conflicts_with = "key_field")]
    key: Option<String>,
    /// Key each message by this top-level field of its JSON line (e.g. `order_id`).
    #[arg(long)]
    key_field: Option<String>,
    /// Header on every message, `NAME=VALUE`; repeat for more.
    #[arg(long = "header", value_parser = super::parse_kv)]
    headers: Vec<(String, String)>,
    /// Put every message in this partition.
    #[arg(long)]
    partition: Option<u32>,
    /// Messages per request.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
}

pub async fn run(client: &Client, args: ProduceArgs) -> anyhow::Result<()> {
    let input: Box<dyn tokio::io::AsyncRead + Unpin + Send> = match &args.file {
        Some(path) => {
            Box::new(tokio::fs::File::open(path).await.with_context(|| format!("opening {}", path.display()))?)
        }
        None => Box::new(tokio::io::stdin()),
    };
    let mut lines = BufReader::new(input).lines();
    let mut in_flight: VecDeque<Pending> = VecDeque::new();
    let mut batch = Vec::with_capacity(args.batch);
    let mut acked = 0usize;
    let batch_size = args.batch.max(1);
    while let Some(line) = lines.next_line().await.context("reading input")? {
        let key = match (&args.key, &args.key_field) {
            (Some(k), _) => Some(k.clone()),
            (None, Some(field)) => Some(key_of(&line, field)?),
            (None, None) => None,
        };
        batch.push(WireRecord {
            key: key.map(|k| ByteBuf::from(k.into_bytes())),
            value: ByteBuf::from(line.into_bytes()),
            headers: args.headers.clone(),
        });
        if batch.len() >= batch_size {
            in_flight.push_back(client.start_produce(&args.topic, args.partition, std::mem::take(&mut batch))?);
            if in_flight.len() >= IN_FLIGHT {
                acked += produced(in_flight.pop_front().expect("non-empty").wait().await?)?.len();
            }
        }
    }
    if !batch.is_empty() {
        in_flight.push_back(client.start_produce(&args.topic, args.partition, batch)?);
    }
    for p in in_flight {
        acked += produced(p.wait().await?)?.len();
    }
    eprintln!("produced {acked} message(s) to {}", args.topic);
    Ok(())
}

/// The value of `field` in a JSON line, as a key.
fn key_of(line: &str, field: &str) -> anyhow::Result<String> {
    let doc: serde_json::Value =
        serde_json::from_str(line).with_context(|| format!("--key-field needs JSON lines; got {line:?}"))?;
    match &doc[field] {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Null => anyhow::bail!("line has no field `{field}` for --key-field: {line}"),
        other => Ok(other.to_string()),
    }
}
