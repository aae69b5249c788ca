//! The cost of schema checks at produce: the same Confluent-framed Avro records (100 bytes)
//! produced to a topic without checks, with `--validation id` and with `full`, alternating
//! within each run so drift hits all three alike.

use std::time::Instant;

use weir_client::wire::{TopicConfig, Validation};

use super::BenchServer;

/// The Avro schema the records are written with.
const SCHEMA: &str = r#"{"type":"record","name":"Bench","namespace":"weir","fields":[{"name":"id","type":"long"},{"name":"region","type":"string"},{"name":"pad","type":"string"}]}"#;

/// `(no check, id, full)` produce rates, msg/s, of one run.
pub(super) async fn run(
    server: &BenchServer,
    count: u64,
    size: usize,
    batch: usize,
    run: usize,
) -> anyhow::Result<[f64; 3]> {
    let client = server.client().await?;
    let id = register(&server.http, "bench-schema-value").await?;
    let mut out = [0.0; 3];
    for (i, check) in [None, Some(Validation::Id), Some(Validation::Full)].into_iter().enumerate() {
        let topic = format!("schema-{run}-{i}");
        let config = TopicConfig {
            value_schema: check.map(|_| "bench-schema-value".to_string()),
            validation: check.unwrap_or_default(),
            ..TopicConfig::default()
        };
        client.create_topic(&topic, config).await?;
        let start = Instant::now();
        super::stages::produce_made(&client, &topic, count, batch, |i| framed(id, i, size)).await?;
        out[i] = count as f64 / start.elapsed().as_secs_f64();
    }
    Ok(out)
}

/// Register the schema through the HTTP door; its id.
async fn register(http: &str, subject: &str) -> anyhow::Result<u32> {
    let body = serde_json::json!({ "schema": SCHEMA }).to_string();
    let v: serde_json::Value = reqwest::Client::new()
        .post(format!("http://{http}/subjects/{subject}/versions"))
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .body(body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    v["id"].as_u64().map(|id| id as u32).ok_or_else(|| anyhow::anyhow!("no id in {v}"))
}

/// A record of `SCHEMA` in Confluent's framing, padded to `size` bytes in all.
fn framed(id: u32, i: u64, size: usize) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    varint(((i << 1) ^ (i >> 63)) as i64, &mut out);
    let region = ["eu", "us", "apac"][(i % 3) as usize];
    string(region.as_bytes(), &mut out);
    // What is left for the pad string after its own length prefix (1 or 2 bytes).
    let left = size.saturating_sub(out.len() + 2);
    string(&vec![b'x'; left], &mut out);
    out
}

fn string(bytes: &[u8], out: &mut Vec<u8>) {
    varint((bytes.len() as i64) << 1, out);
    out.extend_from_slice(bytes);
}

fn varint(mut v: i64, out: &mut Vec<u8>) {
    while (v as u64) >= 0x80 {
        out.push((v as u8) | 0x80);
        v = ((v as u64) >> 7) as i64;
    }
    out.push(v as u8);
}
