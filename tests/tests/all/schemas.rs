//! The schema registry: Confluent's own client and serializers (Avro, JSON Schema, Protobuf)
//! against weir's registry and Kafka door; the registry's API answering with Confluent's
//! codes; compatibility levels refusing breaking changes; its state across kill -9; grants.

use anyhow::{Context, Result};
use reqwest::StatusCode;
use serde_json::{Value, json};
use weir_tests::{Server, schema_client};

const MEDIA: &str = "application/vnd.schemaregistry.v1+json";

/// A server with the HTTP and Kafka doors; the registry's base URL.
fn registry_server(extra: &[&str]) -> Result<(Server, String)> {
    let mut flags = vec!["--http-listen", "127.0.0.1:0", "--kafka-listen", "127.0.0.1:0"];
    flags.extend_from_slice(extra);
    let server = Server::start_with(&flags)?;
    let base = format!("http://{}", server.http.context("the HTTP listener's address")?);
    Ok((server, base))
}

/// `(status, body)` of a registry request, checking Confluent's media type.
async fn call(request: reqwest::RequestBuilder) -> Result<(StatusCode, Value)> {
    let response = request.send().await?;
    let status = response.status();
    let media = response.headers().get("content-type").map(|v| v.to_str().unwrap_or("").to_string());
    let body: Value = response.json().await?;
    assert_eq!(media.as_deref(), Some(MEDIA), "{status} {body}");
    Ok((status, body))
}

fn avro(fields: Value) -> String {
    json!({"type": "record", "name": "OrderCreated", "namespace": "shop", "fields": fields}).to_string()
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> Result<(StatusCode, Value)> {
    call(http.post(url).header("content-type", MEDIA).body(body.to_string())).await
}

#[tokio::test(flavor = "multi_thread")]
async fn confluent_serializers_round_trip_avro_json_and_protobuf_through_the_kafka_door() -> Result<()> {
    let (server, base) = registry_server(&[])?;
    let kafka = server.kafka.context("kafka address")?.to_string();
    let c = server.client().await?;
    let mut ids = Vec::new();
    for format in ["avro", "json", "protobuf"] {
        let topic = format!("orders-{format}");
        c.create_topic(&topic, weir_tests::topic(2)).await?;
        let r = schema_client(
            "roundtrip",
            &base,
            &["--bootstrap", &kafka, "--format", format, "--topic", &topic, "--count", "200"],
        )?;
        assert_eq!(r["failed"], json!([]), "{format}: {r}");
        assert_eq!((r["sent"].as_u64(), r["received"].as_u64()), (Some(200), Some(200)), "{format}: {r}");
        assert_eq!(r["equal"], true, "{format}: every value comes back as sent: {r}");
        assert_eq!(r["ids"].as_array().map(Vec::len), Some(1), "{format}: one schema id in the framing: {r}");
        ids.push(r["ids"][0].as_u64().context("id")?);
        // The serializer registered the subject by the TopicNameStrategy.
        let http = reqwest::Client::new();
        let (s, v) = call(http.get(format!("{base}/subjects/{topic}-value/versions/latest"))).await?;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["id"].as_u64(), Some(ids[ids.len() - 1]));
        if format != "avro" {
            assert_eq!(v["schemaType"], format.to_uppercase());
        }
    }
    ids.dedup();
    assert_eq!(ids.len(), 3, "three schemas, three ids: {ids:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_registry_answers_with_confluents_codes_and_refuses_breaking_changes() -> Result<()> {
    let (_server, base) = registry_server(&[])?;
    let http = reqwest::Client::new();
    let v1 = avro(json!([{"name": "id", "type": "long"}, {"name": "customer", "type": "string"}]));
    let (s, r) = post(&http, format!("{base}/subjects/orders-value/versions"), json!({"schema": v1})).await?;
    assert_eq!(s, StatusCode::OK, "{r}");
    let id = r["id"].as_u64().context("id")?;
    // The same schema again, reformatted: the same id; under another subject too.
    let spaced = serde_json::to_string_pretty(&serde_json::from_str::<Value>(&v1)?)?;
    let (_, again) = post(&http, format!("{base}/subjects/orders-value/versions"), json!({"schema": spaced})).await?;
    assert_eq!(again["id"].as_u64(), Some(id));
    let (_, other) = post(&http, format!("{base}/subjects/archive-value/versions"), json!({"schema": v1})).await?;
    assert_eq!(other["id"].as_u64(), Some(id), "ids are global: one schema, one id");
    // A breaking change under BACKWARD (the default): 409 with the reason.
    let broken = avro(json!([{"name": "id", "type": "string"}, {"name": "customer", "type": "string"}]));
    let (s, r) = post(&http, format!("{base}/subjects/orders-value/versions"), json!({"schema": broken})).await?;
    assert_eq!((s, r["error_code"].as_u64()), (StatusCode::CONFLICT, Some(409)), "{r}");
    assert!(r["message"].as_str().unwrap_or("").contains("incompatible"), "{r}");
    let (_, r) = post(
        &http,
        format!("{base}/compatibility/subjects/orders-value/versions/latest?verbose=true"),
        json!({"schema": broken}),
    )
    .await?;
    assert_eq!(r["is_compatible"], false, "{r}");
    assert!(!r["messages"].as_array().context("messages")?.is_empty(), "{r}");
    // A compatible evolution: a field added with a default.
    let v2 = avro(json!([
        {"name": "id", "type": "long"}, {"name": "customer", "type": "string"},
        {"name": "currency", "type": "string", "default": "EUR"}
    ]));
    let (s, r) = post(&http, format!("{base}/subjects/orders-value/versions"), json!({"schema": v2})).await?;
    assert_eq!(s, StatusCode::OK, "{r}");
    let id2 = r["id"].as_u64().context("id")?;
    assert_ne!(id2, id);
    let (_, versions) = call(http.get(format!("{base}/subjects/orders-value/versions"))).await?;
    assert_eq!(versions, json!([1, 2]));
    let (_, latest) = call(http.get(format!("{base}/subjects/orders-value/versions/latest"))).await?;
    assert_eq!((latest["version"].as_u64(), latest["id"].as_u64()), (Some(2), Some(id2)));
    let (_, by_id) = call(http.get(format!("{base}/schemas/ids/{id}"))).await?;
    assert_eq!(
        serde_json::from_str::<Value>(by_id["schema"].as_str().context("schema")?)?,
        serde_json::from_str::<Value>(&v1)?
    );
    let (_, where_) = call(http.get(format!("{base}/schemas/ids/{id}/versions"))).await?;
    assert_eq!(where_, json!([{"subject": "archive-value", "version": 1}, {"subject": "orders-value", "version": 1}]));
    // Confluent's Python client spells its flags `False`.
    let (_, lookup) =
        post(&http, format!("{base}/subjects/orders-value?normalize=False&deleted=False"), json!({"schema": v2}))
            .await?;
    assert_eq!((lookup["version"].as_u64(), lookup["id"].as_u64()), (Some(2), Some(id2)));
    // FULL: a field added without a default cannot be read by the old schema's readers... and
    // removing one without a default breaks the new readers of old data.
    let (s, r) = call(
        http.put(format!("{base}/config/orders-value"))
            .header("content-type", MEDIA)
            .body(r#"{"compatibility":"FULL"}"#),
    )
    .await?;
    assert_eq!((s, r["compatibility"].as_str()), (StatusCode::OK, Some("FULL")));
    let v3 = avro(json!([
        {"name": "id", "type": "long"}, {"name": "customer", "type": "string"},
        {"name": "currency", "type": "string", "default": "EUR"}, {"name": "note", "type": "string"}
    ]));
    let (s, r) = post(&http, format!("{base}/subjects/orders-value/versions"), json!({"schema": v3})).await?;
    assert_eq!((s, r["error_code"].as_u64()), (StatusCode::CONFLICT, Some(409)), "{r}");
    let (_, cfg) = call(http.get(format!("{base}/config/orders-value"))).await?;
    assert_eq!(cfg["compatibilityLevel"], "FULL");
    let (_, global) = call(http.get(format!("{base}/config"))).await?;
    assert_eq!(global["compatibilityLevel"], "BACKWARD");
    // Confluent's codes for what is not there, or not valid.
    for (url, status, code) in [
        (format!("{base}/subjects/nope/versions"), 404, 40401),
        (format!("{base}/subjects/orders-value/versions/9"), 404, 40402),
        (format!("{base}/schemas/ids/999"), 404, 40403),
        (format!("{base}/subjects/orders-value/versions/zero"), 422, 42202),
        (format!("{base}/config/archive-value"), 404, 40408),
    ] {
        let (s, r) = call(http.get(&url)).await?;
        assert_eq!((s.as_u16(), r["error_code"].as_u64()), (status, Some(code)), "{url}: {r}");
    }
    let (s, r) =
        post(&http, format!("{base}/subjects/bad/versions"), json!({"schema": "{\"type\": \"recurd\"}"})).await?;
    assert_eq!((s.as_u16(), r["error_code"].as_u64()), (422, Some(42201)), "{r}");
    let (s, r) =
        post(&http, format!("{base}/subjects/bad/versions"), json!({"schema": "{}", "schemaType": "XML"})).await?;
    assert_eq!((s.as_u16(), r["error_code"].as_u64()), (422, Some(42201)), "{r}");
    // Deletes: soft, then permanent; a permanent delete first is refused.
    let (s, r) = call(http.delete(format!("{base}/subjects/archive-value?permanent=true"))).await?;
    assert_eq!((s.as_u16(), r["error_code"].as_u64()), (404, Some(40405)), "{r}");
    let (_, r) = call(http.delete(format!("{base}/subjects/archive-value"))).await?;
    assert_eq!(r, json!([1]));
    let (s, r) = call(http.get(format!("{base}/subjects/archive-value/versions"))).await?;
    assert_eq!((s.as_u16(), r["error_code"].as_u64()), (404, Some(40401)), "{r}");
    let (_, r) = call(http.get(format!("{base}/subjects/archive-value/versions?deleted=true"))).await?;
    assert_eq!(r, json!([1]));
    let (_, subjects) = call(http.get(format!("{base}/subjects"))).await?;
    assert_eq!(subjects, json!(["orders-value"]));
    let (_, r) = call(http.delete(format!("{base}/subjects/archive-value?permanent=true"))).await?;
    assert_eq!(r, json!([1]));
    let (_, subjects) = call(http.get(format!("{base}/subjects?deleted=true"))).await?;
    assert_eq!(subjects, json!(["orders-value"]));
    // The schema stays readable by id: orders-value still has it.
    let (s, _) = call(http.get(format!("{base}/schemas/ids/{id}"))).await?;
    assert_eq!(s, StatusCode::OK);
    // READONLY refuses registrations; IMPORT keeps the ids a migration brings.
    let (s, _) = call(
        http.put(format!("{base}/mode/orders-value")).header("content-type", MEDIA).body(r#"{"mode":"READONLY"}"#),
    )
    .await?;
    assert_eq!(s, StatusCode::OK);
    let (s, r) = post(&http, format!("{base}/subjects/orders-value/versions"), json!({"schema": v3})).await?;
    assert_eq!((s.as_u16(), r["error_code"].as_u64()), (422, Some(42205)), "{r}");
    let (s, _) =
        call(http.put(format!("{base}/mode/imported")).header("content-type", MEDIA).body(r#"{"mode":"IMPORT"}"#))
            .await?;
    assert_eq!(s, StatusCode::OK);
    let old = avro(json!([{"name": "legacy", "type": "int"}]));
    let (s, r) =
        post(&http, format!("{base}/subjects/imported/versions"), json!({"schema": old, "id": 4242, "version": 7}))
            .await?;
    assert_eq!((s, r["id"].as_u64()), (StatusCode::OK, Some(4242)), "{r}");
    let (_, r) = call(http.get(format!("{base}/subjects/imported/versions/7"))).await?;
    assert_eq!(r["id"].as_u64(), Some(4242));
    // While importing, a registration must bring its id; an id cannot change its schema.
    let (s, r) = post(&http, format!("{base}/subjects/imported/versions"), json!({"schema": v1})).await?;
    assert_eq!((s.as_u16(), r["error_code"].as_u64()), (422, Some(42205)), "{r}");
    let (s, r) =
        post(&http, format!("{base}/subjects/imported/versions"), json!({"schema": v1, "id": 4242, "version": 8}))
            .await?;
    assert_eq!((s.as_u16(), r["error_code"].as_u64()), (422, Some(42205)), "{r}");
    // Ids taken after an import pass the imported ones.
    let fresh = avro(json!([{"name": "fresh", "type": "int"}]));
    let (_, r) = post(&http, format!("{base}/subjects/fresh/versions"), json!({"schema": fresh})).await?;
    assert!(r["id"].as_u64().context("id")? > 4242, "{r}");
    let (_, types) = call(http.get(format!("{base}/schemas/types"))).await?;
    assert_eq!(types, json!(["JSON", "PROTOBUF", "AVRO"]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn confluents_client_sees_a_breaking_change_refused_with_409() -> Result<()> {
    let (server, base) = registry_server(&[])?;
    let kafka = server.kafka.context("kafka address")?.to_string();
    let c = server.client().await?;
    for format in ["avro", "json"] {
        let topic = format!("evolving-{format}");
        c.create_topic(&topic, weir_tests::topic(1)).await?;
        let r = schema_client(
            "roundtrip",
            &base,
            &["--bootstrap", &kafka, "--format", format, "--topic", &topic, "--count", "5"],
        )?;
        assert_eq!(r["equal"], true, "{r}");
        let subject = format!("{topic}-value");
        let r = schema_client("breaking", &base, &["--format", format, "--subject", &subject])?;
        assert_eq!((r["status"].as_u64(), r["code"].as_u64()), (Some(409), Some(409)), "{format}: {r}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_state_survives_kill_9() -> Result<()> {
    let (mut server, base) = registry_server(&[])?;
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..5 {
        let fields = json!([{"name": "id", "type": "long"}, {"name": format!("f{i}"), "type": "int", "default": 0}]);
        let (s, r) = post(&http, format!("{base}/subjects/s{i}/versions"), json!({"schema": avro(fields)})).await?;
        assert_eq!(s, StatusCode::OK, "{r}");
        ids.push(r["id"].as_u64().context("id")?);
    }
    call(http.put(format!("{base}/config")).header("content-type", MEDIA).body(r#"{"compatibility":"NONE"}"#)).await?;
    server.restart()?;
    let base = format!("http://{}", server.http.context("http")?);
    let (_, subjects) = call(http.get(format!("{base}/subjects"))).await?;
    assert_eq!(subjects, json!(["s0", "s1", "s2", "s3", "s4"]));
    for (i, id) in ids.iter().enumerate() {
        let (_, r) = call(http.get(format!("{base}/subjects/s{i}/versions/1"))).await?;
        assert_eq!(r["id"].as_u64(), Some(*id));
    }
    let (_, global) = call(http.get(format!("{base}/config"))).await?;
    assert_eq!(global["compatibilityLevel"], "NONE");
    // In a cluster every node serves the one registry: the other node answers the same.
    if let Some(peer) = server.peer.as_ref().and_then(|p| p.http) {
        let (_, there) = call(http.get(format!("http://{peer}/subjects"))).await?;
        assert_eq!(there, subjects, "the peer node sees the same subjects");
        let (_, v) = call(http.get(format!("http://{peer}/subjects/s3/versions/1"))).await?;
        assert_eq!(v["id"].as_u64(), Some(ids[3]));
    }
    // New ids continue after the old ones: never reused.
    let (_, r) = post(
        &http,
        format!("{base}/subjects/s9/versions"),
        json!({"schema": avro(json!([{"name": "z", "type": "long"}]))}),
    )
    .await?;
    assert!(r["id"].as_u64().context("id")? > *ids.iter().max().context("ids")?, "{r}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn subject_grants_decide_who_reads_registers_and_configures() -> Result<()> {
    let tokens = tempfile::NamedTempFile::new()?;
    std::fs::write(tokens.path(), "root:root-secret-1\nreader:reader-secret-1 read:orders-*\n")?;
    let path = tokens.path().to_string_lossy().to_string();
    let (_server, base) = registry_server(&["--auth-token-file", &path])?;
    let http = reqwest::Client::new();
    let schema = json!({"schema": avro(json!([{"name": "id", "type": "long"}]))});
    // Confluent's clients send basic auth: the token is the password.
    let (s, r) = call(
        http.post(format!("{base}/subjects/orders-value/versions"))
            .basic_auth("root", Some("root-secret-1"))
            .header("content-type", MEDIA)
            .body(schema.to_string()),
    )
    .await?;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (s, _) = call(
        http.post(format!("{base}/subjects/payments-value/versions"))
            .bearer_auth("root-secret-1")
            .header("content-type", MEDIA)
            .body(schema.to_string()),
    )
    .await?;
    assert_eq!(s, StatusCode::OK);
    let as_reader = |r: reqwest::RequestBuilder| r.basic_auth("reader", Some("reader-secret-1"));
    let (s, _) = call(as_reader(http.get(format!("{base}/subjects/orders-value/versions/1")))).await?;
    assert_eq!(s, StatusCode::OK);
    let (s, r) = call(as_reader(
        http.post(format!("{base}/subjects/orders-value/versions"))
            .header("content-type", MEDIA)
            .body(schema.to_string()),
    ))
    .await?;
    assert_eq!((s, r["error_code"].as_u64()), (StatusCode::FORBIDDEN, Some(40301)), "{r}");
    let (s, _) = call(as_reader(
        http.put(format!("{base}/config")).header("content-type", MEDIA).body(r#"{"compatibility":"NONE"}"#),
    ))
    .await?;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (_, listed) = call(as_reader(http.get(format!("{base}/subjects")))).await?;
    assert_eq!(listed, json!(["orders-value"]), "only the subjects the token may read");
    Ok(())
}

/// `OrderCreated {id, customer, amount}` as an Avro datum in Confluent's framing under `id`.
fn framed_order(schema_id: u32, order: i64) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&schema_id.to_be_bytes());
    let zigzag = |n: i64, out: &mut Vec<u8>| {
        let mut v = ((n << 1) ^ (n >> 63)) as u64;
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    };
    zigzag(order, &mut out);
    zigzag(2, &mut out);
    out.extend_from_slice(b"c1");
    out.extend_from_slice(&(order as f64 * 1.5).to_le_bytes());
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn produce_checks_refuse_bad_records_on_every_door_and_store_nothing_of_their_batch() -> Result<()> {
    use weir_tests::weir_client::wire::{ErrorCode, Validation, WireRecord};
    let (server, base) = registry_server(&[])?;
    let kafka = server.kafka.context("kafka address")?.to_string();
    let c = server.client().await?;
    let config = weir_client_config(Validation::Full);
    c.create_topic("checked", config).await?;
    // Confluent's Avro serializer registers `checked-value` and its records pass.
    let r = schema_client(
        "roundtrip",
        &base,
        &["--bootstrap", &kafka, "--format", "avro", "--topic", "checked", "--count", "50"],
    )?;
    assert_eq!((r["received"].as_u64(), r["equal"].as_bool()), (Some(50), Some(true)), "{r}");
    let id = r["ids"][0].as_u64().context("id")? as u32;
    let hw = || async { Ok::<u64, anyhow::Error>(c.describe_topic("checked").await?.partitions[0].1) };
    assert_eq!(hw().await?, 50);
    // Native: a batch with one bad record is refused whole, naming the record and why.
    let cases: [(Vec<u8>, &str); 4] = [
        (b"plain text".to_vec(), "framing"),
        (framed_order(id + 1000, 1), "not registered"),
        ([&framed_order(id, 1)[..5], &[0xff, 0xff, 0xff]].concat(), "does not match"),
        (framed_order(id, 7), ""),
    ];
    for (bad, why) in &cases[..3] {
        let batch = vec![WireRecord::value(framed_order(id, 1)), WireRecord::value(bad.clone())];
        let e = c.produce("checked", batch).await.expect_err("refused");
        assert_eq!(e.code(), Some(ErrorCode::InvalidRecord), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("record 1") && text.contains(why) && text.contains("nothing of this request was stored"),
            "{text}"
        );
    }
    c.produce("checked", vec![WireRecord::value(cases[3].0.clone())]).await?;
    assert_eq!(hw().await?, 51, "only the good batch was stored");
    // An exchange publishing to the topic passes the same check.
    use weir_tests::weir_client::wire::{Binding, Destination, ExchangeType};
    c.create_exchange("orders-x", ExchangeType::Fanout, None).await?;
    let to_checked =
        Binding { destination: Destination::Topic("checked".into()), key: None, matches: vec![], match_any: false };
    c.bind("orders-x", to_checked).await?;
    let e = c.publish("orders-x", "", b"unframed".to_vec(), vec![]).await.expect_err("refused");
    assert_eq!(e.code(), Some(ErrorCode::InvalidRecord), "{e}");
    c.publish("orders-x", "", framed_order(id, 8), vec![]).await?;
    assert_eq!(hw().await?, 52);
    // A tombstone (null value) carries no schema and passes, as Confluent's serializers write it.
    c.produce("checked", vec![WireRecord::value(Vec::new())]).await?;
    assert_eq!(hw().await?, 53);
    // HTTP: 422 with the reason.
    let http = reqwest::Client::new();
    let body = json!({"records": [{"value": "not framed"}]});
    let response = http.post(format!("{base}/api/v1/topics/checked/records")).json(&body).send().await?;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let v: Value = response.json().await?;
    assert!(v["error"]["message"].as_str().unwrap_or("").contains("framing"), "{v}");
    // Kafka: INVALID_RECORD for each unframed record.
    let r =
        weir_tests::kafka_client("produce", server.kafka.context("kafka")?, &["--topic", "checked", "--count", "3"])?;
    assert_eq!(r["acked"], 0, "{r}");
    assert!(r["failed"].to_string().contains("INVALID_RECORD"), "{r}");
    assert_eq!(hw().await?, 53);
    // A Kafka client creates a checked topic with Confluent's topic config.
    let kafka_addr = server.kafka.context("kafka")?;
    let config = ["--action", "create", "--topic", "kchecked", "--partitions", "1"];
    let made = weir_tests::kafka_client(
        "admin",
        kafka_addr,
        &[&config[..], &["--config", "confluent.value.schema.validation=true"]].concat(),
    )?;
    assert_eq!(made["errors"], json!({}), "{made}");
    let e = c.produce("kchecked", vec![WireRecord::value("unframed")]).await.expect_err("checked");
    assert_eq!(e.code(), Some(ErrorCode::InvalidRecord), "{e}");
    let made = weir_tests::kafka_client(
        "admin",
        kafka_addr,
        &[
            &["--action", "create", "--topic", "kbad", "--partitions", "1"][..],
            &["--config", "confluent.value.schema.validation=maybe"],
        ]
        .concat(),
    )?;
    assert!(made["errors"]["kbad"].as_str().unwrap_or("").contains("use true or false"), "{made}");
    // Refusals are counted by topic and reason, on the node that refused them: the native and
    // HTTP refusals here (in a cluster the Kafka client may have produced through the other
    // node, the partition's leader there).
    let metrics = http.get(format!("{base}/metrics")).send().await?.text().await?;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("weir_schema_refused_records_total{") && l.contains("reason=\"framing\""));
    let count: f64 = line.context("a framing refusal count")?.rsplit(' ').next().context("value")?.parse()?;
    assert!(count >= 2.0, "{line:?}");
    Ok(())
}

fn weir_client_config(
    validation: weir_tests::weir_client::wire::Validation,
) -> weir_tests::weir_client::wire::TopicConfig {
    weir_tests::weir_client::wire::TopicConfig { value_schema: Some(String::new()), validation, ..weir_tests::topic(1) }
}

/// One format's invoice schemas: what the plugin writes first, a breaking change of it, and
/// the field the refusal must name.
struct Shapes {
    file: &'static str,
    v1: String,
    breaking: String,
    field: &'static str,
}

fn shapes(format: &'static str) -> Shapes {
    let avro_invoice = |extra: Value| {
        let mut fields = vec![json!({"name": "order", "type": "long"}), json!({"name": "amount", "type": "long"})];
        fields.extend(extra.as_array().cloned().unwrap_or_default());
        json!({"type": "record", "name": "Invoice", "namespace": "shop", "fields": fields}).to_string()
    };
    let json_invoice = |amount: &str| {
        json!({"type": "object", "properties": {"order": {"type": "integer"}, "amount": {"type": amount}}}).to_string()
    };
    let proto_invoice = |amount: &str| {
        format!(
            "syntax = \"proto3\";\npackage shop;\nmessage Invoice {{\n  int64 order = 1;\n  {amount} amount = 2;\n}}\n"
        )
    };
    match format {
        "avro" => Shapes {
            file: "invoice.avsc",
            v1: avro_invoice(json!([])),
            breaking: avro_invoice(json!([{"name": "currency", "type": "string"}])),
            field: "currency",
        },
        "json" => Shapes {
            file: "invoice.schema.json",
            v1: json_invoice("integer"),
            breaking: json_invoice("string"),
            field: "amount",
        },
        _ => Shapes {
            file: "invoice.proto",
            v1: proto_invoice("int64"),
            breaking: proto_invoice("string"),
            field: "amount",
        },
    }
}

/// The Avro invoice `v1` with a field added compatibly: `currency`, defaulting to EUR.
fn with_currency(v1: &str) -> Result<String> {
    let mut doc: Value = serde_json::from_str(v1)?;
    doc["fields"]
        .as_array_mut()
        .context("fields")?
        .push(json!({"name": "currency", "type": "string", "default": "EUR"}));
    Ok(doc.to_string())
}

/// `pass` declaring that it writes `schema` (in `format`), as `weir plugin schemas` embeds it.
fn pass_writing(dir: &std::path::Path, name: &str, format: &str, file: &str, schema: &str) -> Result<Vec<u8>> {
    let schema_file = dir.join(format!("{name}-{file}"));
    std::fs::write(&schema_file, schema)?;
    let out = dir.join(format!("{name}.wasm"));
    let pass = weir_tests::plugin("pass");
    let reference = format!("{format}:{}", schema_file.display());
    let args = ["plugin", "schemas", pass.to_str().context("utf-8")?, "--writes", &reference, "-o"];
    weir_tests::weir_cli(&[&args[..], &[out.to_str().context("utf-8")?]].concat(), None)?;
    let shown = weir_tests::weir_cli(&["plugin", "schemas", out.to_str().context("utf-8")?], None)?;
    assert!(shown.contains(&format!("writes: an inline {}", format.to_uppercase())), "{shown}");
    Ok(std::fs::read(out)?)
}

/// A plugin version whose declared output breaks the sink topic's subject is refused at
/// deploy, naming the pipeline, the step, the field and the rule; the running version keeps
/// running and nothing of the refused one is stored.
async fn a_breaking_change_never_reaches_a_running_pipeline(format: &'static str) -> Result<()> {
    use weir_tests::weir_client::wire::Validation;
    let shapes = shapes(format);
    let work = tempfile::tempdir()?;
    let (server, base) = registry_server(&[])?;
    let c = server.client().await?;
    let http = reqwest::Client::new();
    let (orders, invoices) = (format!("orders-{format}"), format!("invoices-{format}"));
    let subject = format!("{invoices}-value");
    let body = json!({"schema": shapes.v1, "schemaType": format.to_uppercase()});
    let (s, r) = post(&http, format!("{base}/subjects/{subject}/versions"), body).await?;
    assert_eq!(s, StatusCode::OK, "{r}");
    c.create_topic(&orders, weir_tests::topic(1)).await?;
    c.create_topic(&invoices, weir_client_config(Validation::Id)).await?;

    let plugin = format!("shape-{format}");
    let v1 = pass_writing(work.path(), "v1", format, shapes.file, &shapes.v1)?;
    c.deploy_plugin(&plugin, v1).await?;
    let spec = weir_tests::pipeline("ship", &orders, &invoices, vec![weir_tests::step(&plugin, &[])]);
    c.create_pipeline(spec).await.context("a plugin writing the sink's own schema fits")?;

    let breaking = pass_writing(work.path(), "v2", format, shapes.file, &shapes.breaking)?;
    let err = c.deploy_plugin(&plugin, breaking).await.expect_err("a breaking output is refused").to_string();
    for part in [
        &format!("{plugin}@2 refused; {plugin}@1 keeps running"),
        "pipeline `ship`",
        &format!("step 1 (`{plugin}@2`)"),
        &format!("subject `{subject}` under BACKWARD"),
        shapes.field,
    ] {
        assert!(err.contains(part), "{format}: the refusal names {part:?}: {err}");
    }
    assert_eq!(c.describe_plugin(&plugin).await?.version, 1, "{format}: version 1 stays live");
    assert_eq!(c.plugin_versions(&plugin).await?.len(), 1, "{format}: nothing of the refused version is stored");
    let status = c.pipeline_status("ship").await?;
    assert_eq!(status.plugins, vec![format!("{plugin}@1")], "{format}: {status:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_breaking_avro_change_never_reaches_a_running_pipeline() -> Result<()> {
    a_breaking_change_never_reaches_a_running_pipeline("avro").await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_breaking_json_schema_change_never_reaches_a_running_pipeline() -> Result<()> {
    a_breaking_change_never_reaches_a_running_pipeline("json").await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_breaking_protobuf_change_never_reaches_a_running_pipeline() -> Result<()> {
    a_breaking_change_never_reaches_a_running_pipeline("protobuf").await
}

/// `pipeline create` refuses a chain whose first step cannot read the source topic's schema,
/// and whose step outputs do not fit the next step; a compatible evolution (a field added
/// with a default) deploys into the running pipeline.
#[tokio::test(flavor = "multi_thread")]
async fn a_chain_that_does_not_fit_is_refused_at_create_and_a_compatible_evolution_goes_live() -> Result<()> {
    use weir_tests::weir_client::wire::Validation;
    let shapes = shapes("avro");
    let work = tempfile::tempdir()?;
    let (server, base) = registry_server(&[])?;
    let c = server.client().await?;
    let http = reqwest::Client::new();
    let (s, r) = post(&http, format!("{base}/subjects/invoices-value/versions"), json!({"schema": shapes.v1})).await?;
    assert_eq!(s, StatusCode::OK, "{r}");
    c.create_topic("invoices", weir_client_config(Validation::Id)).await?;
    c.create_topic("audit", weir_tests::topic(1)).await?;
    // A reader needing `currency` (no default) cannot read invoices written without it.
    let reader = work.path().join("reader.avsc");
    std::fs::write(&reader, &shapes.breaking)?;
    let pass = weir_tests::plugin("pass");
    let out = work.path().join("reader.wasm");
    let reads = format!("avro:{}", reader.display());
    weir_tests::weir_cli(
        &[
            "plugin",
            "schemas",
            pass.to_str().context("utf-8")?,
            "--reads",
            &reads,
            "-o",
            out.to_str().context("utf-8")?,
        ],
        None,
    )?;
    c.deploy_plugin("reader", std::fs::read(&out)?).await?;
    let spec = weir_tests::pipeline("audit", "invoices", "audit", vec![weir_tests::step("reader", &[])]);
    let err = c.create_pipeline(spec.clone()).await.expect_err("the reader cannot read the source").to_string();
    for part in ["pipeline `audit`", "step 1 (`reader@1`) cannot read the source topic `invoices`", "currency"] {
        assert!(err.contains(part), "the refusal names {part:?}: {err}");
    }
    assert!(c.pipeline_status("audit").await.is_err(), "nothing of the refused pipeline exists");
    // Two steps: the second reads what the first writes.
    let v1 = pass_writing(work.path(), "v1", "avro", shapes.file, &shapes.v1)?;
    c.deploy_plugin("shape", v1).await?;
    let chain = vec![weir_tests::step("shape", &[]), weir_tests::step("reader", &[])];
    let err = c
        .create_pipeline(weir_tests::pipeline("chain", "audit", "audit-out", chain))
        .await
        .expect_err("step 2 cannot read step 1")
        .to_string();
    assert!(err.contains("step 2 (`reader@1`) cannot read what step 1 (`shape@1`) writes"), "{err}");

    let spec = weir_tests::pipeline("ship", "audit", "invoices", vec![weir_tests::step("shape", &[])]);
    c.create_pipeline(spec).await?;
    let with_default = with_currency(&shapes.v1)?;
    // A breaking version may run as a shadow (it emits nothing); the diff says what it would
    // break, and promoting it is refused like a deploy.
    let breaking = pass_writing(work.path(), "v2", "avro", shapes.file, &shapes.breaking)?;
    c.deploy_plugin_with("shape", breaking, None, true).await?;
    let diff = c.plugin_diff("shape").await?;
    assert_eq!(diff.schema_changes.len(), 2, "{diff:?}");
    assert!(diff.schema_changes[0].starts_with("writes: an inline AVRO schema"), "{diff:?}");
    let verdict = &diff.schema_changes[1];
    assert!(
        verdict.starts_with("promoting it would be refused: pipeline `ship`") && verdict.contains("currency"),
        "{verdict}"
    );
    let err = c.promote_plugin("shape").await.expect_err("promoting a breaking shadow is refused").to_string();
    assert!(err.contains("shape@2 refused; shape@1 keeps running") && err.contains("currency"), "{err}");
    let v3 = pass_writing(work.path(), "v3", "avro", shapes.file, &with_default)?;
    let info = c.deploy_plugin("shape", v3).await.context("a field added with a default fits")?;
    assert_eq!(info.version, 3);
    eventually_live(&c, "ship", "shape@3").await
}

async fn eventually_live(c: &weir_tests::weir_client::client::Client, pipeline: &str, label: &str) -> Result<()> {
    weir_tests::eventually(&format!("{pipeline} to run {label}"), std::time::Duration::from_secs(30), || async {
        Ok((c.pipeline_status(pipeline).await?.plugins == [label]).then_some(()))
    })
    .await
}

/// The console's schema views: subjects with their level and the topics and pipelines using
/// them, and a subject's versions with the diff between the last two.
#[tokio::test(flavor = "multi_thread")]
async fn the_console_shows_subjects_their_users_and_a_diff_between_versions() -> Result<()> {
    let python = weir_tests::browser_python();
    anyhow::ensure!(python.exists(), "{} is missing: run examples/setup.sh (it installs Playwright)", python.display());
    let (server, base) = registry_server(&[])?;
    let c = server.client().await?;
    let http = reqwest::Client::new();
    let shapes = shapes("avro");
    let with_default = with_currency(&shapes.v1)?;
    for schema in [&shapes.v1, &with_default] {
        let (s, r) = post(&http, format!("{base}/subjects/invoices-value/versions"), json!({"schema": schema})).await?;
        assert_eq!(s, StatusCode::OK, "{r}");
    }
    c.create_topic("orders", weir_tests::topic(1)).await?;
    c.create_topic("invoices", weir_client_config(weir_tests::weir_client::wire::Validation::Id)).await?;
    c.deploy_plugin("pass", weir_tests::plugin_bytes("pass")).await?;
    c.create_pipeline(weir_tests::pipeline("ship", "orders", "invoices", vec![weir_tests::step("pass", &[])])).await?;
    let args = ["--schemas", "invoices-value", "--url", &base];
    let out = tokio::task::spawn_blocking({
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        move || {
            std::process::Command::new(python)
                .arg(weir_tests::workspace_root().join("tests/console/console.py"))
                .args(args)
                .output()
        }
    })
    .await??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(out.status.success(), "console.py failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())?;
    assert_eq!(seen["console_errors"], json!([]), "{seen}");
    assert_eq!(seen["global_level"], "BACKWARD", "{seen}");
    let row = seen["row"].as_str().context("row")?;
    for part in ["invoices-value", "AVRO", "BACKWARD", "invoices", "ship"] {
        assert!(row.contains(part), "the subject's row shows {part:?}: {row}");
    }
    assert_eq!((seen["level"].as_str(), seen["pipelines"].as_str()), (Some("BACKWARD"), Some("ship")), "{seen}");
    let added = seen["added"].as_array().context("added")?;
    assert!(added.iter().any(|l| l.as_str().is_some_and(|l| l.contains("currency"))), "{seen}");
    Ok(())
}
