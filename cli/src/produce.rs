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
    /// Key each message by this top-level field of its JSON line (e.g. `order_id`). A line
    /// that is not JSON stops the produce: the lines before it are stored, and the error names
    /// the line and what was stored (count, last offset per partition).
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
    let mut stored = Stored::default();
    let batch_size = args.batch.max(1);
    let mut number = 0usize;
    while let Some(line) = lines.next_line().await.context("reading input")? {
        number += 1;
        let key = match (&args.key, &args.key_field) {
            (Some(k), _) => Some(k.clone()),
            (None, Some(field)) => match key_of(&line, field) {
                Ok(k) => Some(k),
                // Everything before the bad line is sent and stored, nothing after it: the
                // report says exactly that, so a rerun can start at the bad line.
                Err(e) => {
                    if !batch.is_empty() {
                        in_flight.push_back(client.start_produce(&args.topic, args.partition, batch)?);
                    }
                    stored.wait_all(in_flight).await?;
                    anyhow::bail!(
                        "line {number}: {e:#}\n{}; line {number} and the lines after it were not sent",
                        stored.describe(number - 1)
                    );
                }
            },
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
                stored.wait(in_flight.pop_front().expect("non-empty")).await?;
            }
        }
    }
    if !batch.is_empty() {
        in_flight.push_back(client.start_produce(&args.topic, args.partition, batch)?);
    }
    stored.wait_all(in_flight).await?;
    eprintln!("produced {} message(s) to {}", stored.count, args.topic);
    Ok(())
}

/// What the server acknowledged: how many, and the last offset in each partition.
#[derive(Default)]
struct Stored {
    count: usize,
    last: std::collections::BTreeMap<u32, u64>,
}

impl Stored {
    async fn wait(&mut self, pending: Pending) -> anyhow::Result<()> {
        for (partition, offset) in produced(pending.wait().await?)? {
            self.count += 1;
            let last = self.last.entry(partition).or_default();
            *last = (*last).max(offset);
        }
        Ok(())
    }

    /// Wait for every request in flight; a refused one is reported with what was stored.
    async fn wait_all(&mut self, in_flight: VecDeque<Pending>) -> anyhow::Result<()> {
        let mut refused = None;
        for p in in_flight {
            if let Err(e) = self.wait(p).await {
                refused.get_or_insert(e);
            }
        }
        match refused {
            None => Ok(()),
            Some(e) => Err(e.context(format!("{} before the refusal", self.describe_count()))),
        }
    }

    fn describe_count(&self) -> String {
        let last: Vec<String> = self.last.iter().map(|(p, o)| format!("partition {p} at offset {o}")).collect();
        match last.is_empty() {
            true => "stored nothing".to_string(),
            false => format!("stored {} message(s), the last in {}", self.count, last.join(", ")),
        }
    }

    /// "lines 1 to N stored: …".
    fn describe(&self, lines: usize) -> String {
        format!("lines 1 to {lines} were sent and {}", self.describe_count())
    }
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
