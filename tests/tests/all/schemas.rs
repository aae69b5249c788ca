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
