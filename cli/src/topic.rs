//! `weir topic …`.

use std::time::Duration;

use clap::Subcommand;
use weir_client::client::Client;
use weir_client::wire::{Durability, Partitioner, SubjectStrategy, TopicConfig, Validation};
use weir_host::limits;

use super::output;

#[derive(Subcommand)]
pub enum TopicCmd {
    /// Create a topic.
    Create {
        /// Topic name.
        name: String,
        /// Number of partitions (order is kept within each).
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// Durability of writes; default: the server's.
        #[arg(long, value_parser = super::kebab::<Durability>)]
        durability: Option<Durability>,
        /// Delete records older than this (e.g. 7d).
        #[arg(long, value_parser = super::parse_duration)]
        retention: Option<Duration>,
        /// Delete the oldest records of a partition beyond this many bytes.
        #[arg(long)]
        retention_bytes: Option<u64>,
        /// Largest accepted message value, in bytes.
        #[arg(long, default_value_t = limits::MAX_MESSAGE_BYTES)]
        max_message_bytes: usize,
        /// Keep messages in memory only and fan them out to live subscribers (Redis Pub/Sub
        /// style): lowest latency, nothing persisted, gone on restart.
        #[arg(long, conflicts_with_all = ["durability", "retention", "retention_bytes"])]
        ephemeral: bool,
        /// How keyed records pick their partition: `hash` (weir's) or `murmur2` (Kafka's Java
        /// client and kafka-python: the same key lands in the same partition from either).
        #[arg(long, value_parser = super::kebab::<Partitioner>, default_value = "hash")]
        partitioner: Partitioner,
        /// Check every record's value against the schema registry: its schema id must be
        /// registered under this subject (`topic` for `<name>-value`, or any subject name).
        #[arg(long, value_name = "SUBJECT")]
        value_schema: Option<String>,
        /// The same for keys (`topic` for `<name>-key`).
        #[arg(long, value_name = "SUBJECT")]
        key_schema: Option<String>,
        /// `id`: Confluent's framing and a registered id; `full`: also decode the payload;
        /// `none`: no check at produce (the subject is the contract pipelines are checked
        /// against before they run).
        #[arg(long, value_parser = super::kebab::<Validation>, default_value = "id")]
        validation: Validation,
        /// How a record's subject is named: `topic-name` (the subject given), `record-name`
        /// or `topic-record-name` (from the schema's record name, as Confluent's strategies).
        #[arg(long, value_parser = super::kebab::<SubjectStrategy>, default_value = "topic-name")]
        subject_strategy: SubjectStrategy,
    },
    /// List topics.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a topic's settings and partition offsets.
    Describe {
        /// Topic name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a topic and all its records.
    Delete {
        /// Topic name.
        name: String,
    },
}

/// Run one `weir topic` subcommand.
pub async fn run(client: &Client, cmd: TopicCmd) -> anyhow::Result<()> {
    match cmd {
        TopicCmd::Create {
            name,
            partitions,
            durability,
            retention,
            retention_bytes,
            max_message_bytes,
            ephemeral,
            partitioner,
            value_schema,
            key_schema,
            validation,
            subject_strategy,
        } => {
            // `topic` names the topic's own subject (the TopicNameStrategy's); stored empty.
            let subject = |s: Option<String>| s.map(|s| if s == "topic" { String::new() } else { s });
            let config = TopicConfig {
                partitions,
                durability,
                retention_ms: retention.map(|d| d.as_millis() as u64),
                retention_bytes,
                max_message_bytes,
                ephemeral,
                partitioner,
                key_schema: subject(key_schema),
                value_schema: subject(value_schema),
                validation,
                subject_strategy,
            };
            create(client, &name, config).await?
        }
        TopicCmd::List { json } => list(client, json).await?,
        TopicCmd::Describe { name, json } => describe(client, &name, json).await?,
        TopicCmd::Delete { name } => delete(client, &name).await?,
    }
    Ok(())
}

/// Create a topic and report its partitions and durability.
async fn create(client: &Client, name: &str, config: TopicConfig) -> anyhow::Result<()> {
    let t = client.create_topic(name, config).await?;
    println!("created topic {} with {} partition(s), durability {:?}", t.name, t.partitions.len(), t.durability);
    Ok(())
}

/// Print every topic with its partition and message counts, as a table or JSON.
async fn list(client: &Client, json: bool) -> anyhow::Result<()> {
    let topics = client.list_topics().await?;
    if json {
        return output::json(&topics);
    }
    let rows = topics
        .iter()
        .map(|t| {
            let msgs: u64 = t.partitions.iter().map(|(s, e)| e - s).sum();
            vec![
                t.name.clone(),
                t.partitions.len().to_string(),
                msgs.to_string(),
                format!("{:?}", t.durability).to_lowercase(),
            ]
        })
        .collect();
    output::table(&["TOPIC", "PARTITIONS", "MESSAGES", "DURABILITY"], rows);
    Ok(())
}

/// Print one topic's settings and partition offsets, as text or JSON.
async fn describe(client: &Client, name: &str, json: bool) -> anyhow::Result<()> {
    let t = client.describe_topic(name).await?;
    if json {
        return output::json(&t);
    }
    println!("topic       {}", t.name);
    println!("durability  {:?}", t.durability);
    println!("created     {}", output::time(t.created_ms));
    println!(
        "retention   {}",
        match (t.config.retention_ms, t.config.retention_bytes) {
            (None, None) => "forever".to_string(),
            (ms, b) => format!(
                "{}{}",
                ms.map(|m| format!("{} ", humantime::format_duration(Duration::from_millis(m)))).unwrap_or_default(),
                b.map(output::bytes).unwrap_or_default()
            ),
        }
    );
    println!("max message {}", output::bytes(t.config.max_message_bytes as u64));
    for (part, subject) in [("key", &t.config.key_schema), ("value", &t.config.value_schema)] {
        if let Some(subject) = subject {
            // Empty: the subject follows the naming strategy (`<topic>-value` by default).
            let subject = match (subject.as_str(), t.config.subject_strategy) {
                ("", SubjectStrategy::TopicName) => format!("{}-{part}", t.name),
                ("", strategy) => format!("by {strategy:?}"),
                (s, _) => s.to_string(),
            };
            let checks = match t.config.validation {
                Validation::Id => "records checked: framing and a registered id",
                Validation::Full => "records checked: framing, a registered id and the payload",
                Validation::None => "records not checked at produce; pipelines checked against it",
            };
            println!("{part:<12}schema of {subject} ({checks})");
        }
    }
    let rows = t
        .partitions
        .iter()
        .enumerate()
        .map(|(p, (s, e))| vec![p.to_string(), s.to_string(), e.to_string(), (e - s).to_string()])
        .collect();
    output::table(&["PARTITION", "START", "END", "MESSAGES"], rows);
    Ok(())
}

/// Delete a topic and all its records.
async fn delete(client: &Client, name: &str) -> anyhow::Result<()> {
    client.delete_topic(name).await?;
    println!("deleted topic {name}");
    Ok(())
}
