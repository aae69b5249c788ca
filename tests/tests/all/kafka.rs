//! The Kafka listener with real Kafka clients: Debian's kcat (librdkafka 2.0), confluent-kafka
//! (librdkafka 2.16) and kafka-python, started by the tests against `weir serve
//! --kafka-listen`. Records cross between the Kafka door, weir's own protocol and pipelines.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use weir_tests::weir_client::wire::{Partitioner, TopicConfig, WireRecord};
use weir_tests::{Launch, Server, eventually, free_port, kafka_client, pipeline, plugin_bytes, step, text, topic};

const LONG: Duration = Duration::from_secs(120);

fn kafka_server() -> Result<(Server, SocketAddr)> {
    let server = Server::start_with(&["--kafka-listen", "127.0.0.1:0"])?;
    let kafka = server.kafka.context("the Kafka listener's address")?;
    Ok((server, kafka))
}

/// Run kcat with `args`, feeding `input`; its stdout.
fn kcat(kafka: SocketAddr, args: &[&str], input: &str) -> Result<String> {
    let mut child = Command::new("kcat")
        .args(["-b", &kafka.to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("kcat is missing: run examples/setup.sh")?;
    child.stdin.take().expect("piped").write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(out.status.success(), "kcat {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn kcat_lists_metadata_produces_keys_and_headers_and_weir_reads_them() -> Result<()> {
    let (server, kafka) = kafka_server()?;
    let client = server.client().await?;
    client.create_topic("orders", topic(3)).await?;
    let listing = kcat(kafka, &["-L", "-t", "orders"], "")?;
    assert!(listing.contains("topic \"orders\" with 3 partitions"), "{listing}");
    let input: String = (0..30).map(|i| format!("cust-{}:order-{i}\n", i % 5)).collect();
    kcat(kafka, &["-P", "-t", "orders", "-K", ":", "-H", "source=kcat"], &input)?;
    let records = client.read_all("orders").await?;
    assert_eq!(records.len(), 30);
    for (_, _, r) in &records {
        assert_eq!(r.header("source"), Some("kcat"));
        let key = String::from_utf8(r.key.clone().context("a key")?.into_vec())?;
        let i: u64 = text(r).trim_start_matches("order-").parse()?;
        assert_eq!(key, format!("cust-{}", i % 5));
    }
    // One key, one partition: the same key always lands together.
    let mut partition_of = std::collections::HashMap::new();
    for (p, _, r) in &records {
        let key = r.key.clone().context("a key")?.into_vec();
        assert_eq!(*partition_of.entry(key).or_insert(*p), *p);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn kcat_consumes_what_weir_produced_with_offsets_keys_and_headers() -> Result<()> {
    let (server, kafka) = kafka_server()?;
    let client = server.client().await?;
    client.create_topic("events", topic(1)).await?;
    let records =
        (0..5).map(|i| WireRecord::keyed(format!("k{i}"), format!("e{i}")).with_header("weir-type", "Event")).collect();
    client.produce("events", records).await?;
    let out = kcat(kafka, &["-C", "-t", "events", "-o", "beginning", "-e", "-f", "%o|%k|%s|%h\n"], "")?;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert_eq!(lines[3], "3|k3|e3|weir-type=Event");
    // From an offset; by time (ListOffsets): from the epoch everything, from tomorrow nothing.
    let tail = kcat(kafka, &["-C", "-t", "events", "-o", "4", "-e", "-f", "%s\n"], "")?;
    assert_eq!(tail.trim(), "e4");
    let since_epoch = kcat(kafka, &["-C", "-t", "events", "-o", "s@1", "-e", "-f", "%s\n"], "")?;
    assert_eq!(since_epoch.lines().count(), 5, "{since_epoch}");
    let tomorrow =
        (std::time::SystemTime::now() + Duration::from_secs(86_400)).duration_since(std::time::UNIX_EPOCH)?;
    let none =
        kcat(kafka, &["-C", "-t", "events", "-o", &format!("s@{}", tomorrow.as_millis()), "-e", "-f", "%s\n"], "")?;
    assert_eq!(none.trim(), "", "no record at or after tomorrow");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn kcat_group_consumer_commits_offsets_that_weir_groups_see() -> Result<()> {
    let (server, kafka) = kafka_server()?;
    let client = server.client().await?;
    client.create_topic("jobs", topic(2)).await?;
    client.produce("jobs", (0..20).map(|i| WireRecord::value(format!("j{i}"))).collect()).await?;
    // kcat's balanced consumer: join, sync, fetch, commit; -e exits at the end of the log.
    let out = kcat(kafka, &["-G", "workers", "-o", "beginning", "-e", "-f", "%s\n", "jobs"], "")?;
    assert_eq!(out.lines().count(), 20, "{out}");
    let committed = eventually("kcat's commits", LONG, || async {
        let offsets = client.fetch_offsets("workers", "jobs").await?;
        Ok((offsets.iter().flatten().sum::<u64>() == 20).then_some(offsets))
    })
    .await?;
    assert_eq!(committed.len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn confluent_idempotent_producer_with_acks_all_then_a_group_reads_everything_once() -> Result<()> {
    let (server, kafka) = kafka_server()?;
    let client = server.client().await?;
    client.create_topic("payments", topic(4)).await?;
    let produced = kafka_client("produce", kafka, &["--topic", "payments", "--count", "2000", "--idempotent"])?;
    assert_eq!(produced["acked"], 2000, "{produced}");
    assert_eq!(produced["failures"], 0, "{produced}");
    let stored = client.read_all("payments").await?;
    assert_eq!(stored.len(), 2000, "each record stored once");
    let consumed = kafka_client("consume", kafka, &["--topic", "payments", "--group", "ledger", "--count", "2000"])?;
    let mut values = strings(&consumed["values"]);
    values.sort();
    values.dedup();
    assert_eq!(values.len(), 2000);
    assert_eq!(client.fetch_offsets("ledger", "payments").await?.iter().flatten().sum::<u64>(), 2000);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_of_two_splits_partitions_and_rebalances_when_one_leaves() -> Result<()> {
    let (server, kafka) = kafka_server()?;
    server.client().await?.create_topic("shared", topic(4)).await?;
    let r = kafka_client("rebalance", kafka, &["--topic", "shared", "--group", "pair", "--partitions", "4"])?;
    let split: Vec<Vec<u64>> = r["split"]
        .as_array()
        .context("split")?
        .iter()
        .map(|m| m.as_array().unwrap().iter().filter_map(Value::as_u64).collect())
        .collect();
    let mut all: Vec<u64> = split.concat();
    all.sort();
    assert_eq!(all, vec![0, 1, 2, 3], "every partition to exactly one member: {r}");
    assert!(split.iter().all(|m| !m.is_empty()), "{r}");
    assert_eq!(r["after_leave"], serde_json::json!([0, 1, 2, 3]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_commits_and_the_next_one_in_its_group_resumes_after_it() -> Result<()> {
    let (server, kafka) = kafka_server()?;
    let client = server.client().await?;
    client.create_topic("feed", topic(1)).await?;
    client.produce("feed", (0..10).map(|i| WireRecord::value(format!("f{i}"))).collect()).await?;
    let first = kafka_client("consume", kafka, &["--topic", "feed", "--group", "reader", "--count", "4"])?;
    assert_eq!(strings(&first["values"]), ["f0", "f1", "f2", "f3"]);
    let second = kafka_client("consume", kafka, &["--topic", "feed", "--group", "reader", "--count", "6"])?;
    assert_eq!(strings(&second["values"]), ["f4", "f5", "f6", "f7", "f8", "f9"]);
    Ok(())
}

/// kafka-python partitions keyed records with murmur2, like the Java client: on a topic with
/// `--partitioner murmur2`, weir's own produce puts each key where kafka-python did.
#[tokio::test(flavor = "multi_thread")]
async fn kafka_python_produces_and_consumes_in_a_group_and_murmur2_keys_agree_with_weir() -> Result<()> {
    let (server, kafka) = kafka_server()?;
    let client = server.client().await?;
    let config = TopicConfig { partitioner: Partitioner::Murmur2, ..topic(4) };
    client.create_topic("py", config).await?;
    let r = kafka_client("kafka-python", kafka, &["--topic", "py", "--group", "pyg", "--count", "50"])?;
    let mut values = strings(&r["values"]);
    values.sort();
    assert_eq!(values.len(), 50, "{r}");
    assert!(values.contains(&"m-49".to_string()));
    client.produce("py", (0..50).map(|i| WireRecord::keyed(format!("k{i}"), format!("weir-{i}"))).collect()).await?;
    let mut by_key: std::collections::HashMap<Vec<u8>, std::collections::BTreeSet<u32>> = Default::default();
    for (p, _, r) in client.read_all("py").await? {
        by_key.entry(r.key.context("keyed")?.into_vec()).or_default().insert(p);
    }
    assert_eq!(by_key.len(), 50);
    let split: Vec<_> = by_key.iter().filter(|(_, ps)| ps.len() > 1).collect();
    assert!(split.is_empty(), "keys placed differently by kafka-python and weir: {split:?}");
    let used: std::collections::BTreeSet<u32> = by_key.values().flatten().copied().collect();
    assert!(used.len() > 1, "keys spread over partitions");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sasl_plain_with_a_token_is_served_and_a_wrong_password_or_none_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "admin:admin-secret admin:*\napp:app-secret read:app-* write:app-*\n")?;
    let tokens = tokens.to_string_lossy().into_owned();
    let server = Server::start_with(&["--kafka-listen", "127.0.0.1:0", "--auth-token-file", &tokens])?;
    let kafka = server.kafka.context("kafka address")?;
    let admin = weir_tests::weir_client::client::Client::connect_with_token(
        server.addr.to_string(),
        Some("admin-secret".into()),
    )
    .await?;
    admin.create_topic("app-events", topic(1)).await?;
    admin.create_topic("secret", topic(1)).await?;
    let ok = kafka_client("produce", kafka, &["--topic", "app-events", "--count", "10", "--sasl", "app:app-secret"])?;
    assert_eq!(ok["acked"], 10, "{ok}");
    // A topic outside the token's grants: refused per record, with Kafka's authorization code.
    let denied = kafka_client(
        "produce",
        kafka,
        &["--topic", "secret", "--count", "1", "--sasl", "app:app-secret", "--timeout-ms", "5000"],
    )?;
    assert_eq!(denied["acked"], 0, "{denied}");
    let wrong = kafka_client(
        "produce",
        kafka,
        &["--topic", "app-events", "--count", "1", "--sasl", "app:wrong", "--timeout-ms", "4000"],
    )?;
    assert_eq!(wrong["acked"], 0, "{wrong}");
    let none = kafka_client("produce", kafka, &["--topic", "app-events", "--count", "1", "--timeout-ms", "4000"])?;
    assert_eq!(none["acked"], 0, "{none}");
    assert_eq!(admin.read_all("app-events").await?.len(), 10);
    assert!(admin.read_all("secret").await?.is_empty());
    // A Kafka group is a resource too: `app-readers` is granted (read:app-*), `strangers` not.
    let sasl = ["--topic", "app-events", "--count", "10", "--sasl", "app:app-secret"];
    let granted = kafka_client("consume", kafka, &[&sasl[..], &["--group", "app-readers"]].concat())?;
    assert_eq!(strings(&granted["values"]).len(), 10, "{granted}");
    let refused =
        kafka_client("consume", kafka, &[&sasl[..], &["--group", "strangers", "--timeout-ms", "4000"]].concat())?;
    assert!(strings(&refused["values"]).is_empty(), "{refused}");
    assert!(server.log().contains("Kafka SASL authentication failed"), "the refusal is logged");
    // Metadata for a named topic outside the grants: TOPIC_AUTHORIZATION_FAILED, whether it
    // exists or not (a Kafka broker reveals nothing); a missing granted one is unknown.
    for (name, want) in [
        ("secret", "TOPIC_AUTHORIZATION_FAILED"),
        ("no-such-topic", "TOPIC_AUTHORIZATION_FAILED"),
        ("app-missing", "UNKNOWN_TOPIC_OR_PART"),
    ] {
        let md = kafka_client("metadata", kafka, &["--topic", name, "--sasl", "app:app-secret"])?;
        assert_eq!(md["error"], want, "{name}: {md}");
    }
    let md = kafka_client("metadata", kafka, &["--topic", "app-events", "--sasl", "app:app-secret"])?;
    assert!(md["error"].is_null() && md["leaders"]["0"].is_string(), "{md}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_transforms_what_a_kafka_producer_wrote_and_a_kafka_consumer_reads_its_sink() -> Result<()> {
    let (server, kafka) = kafka_server()?;
    let client = server.client().await?;
    client.create_topic("raw", topic(2)).await?;
    client.create_topic("clean", topic(2)).await?;
    client.deploy_plugin("json-transform", plugin_bytes("json-transform")).await?;
    let steps = vec![step("json-transform", &[("rename.id", "order_id"), ("set.stage", "clean")])];
    client.create_pipeline(pipeline("cleaner", "raw", "clean", steps)).await?;
    let input: String = (0..25).map(|i| format!("{{\"id\":{i}}}\n")).collect();
    kcat(kafka, &["-P", "-t", "raw"], &input)?;
    let out = eventually("the pipeline's output through Kafka", LONG, || async {
        let out = kcat(kafka, &["-C", "-t", "clean", "-o", "beginning", "-e", "-f", "%s\n"], "")?;
        Ok((out.lines().count() == 25).then_some(out))
    })
    .await?;
    assert!(out.lines().all(|l| l.contains("\"order_id\"") && l.contains("\"stage\":\"clean\"")), "{out}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_under_an_acks_all_kafka_producer_loses_no_acknowledged_record() -> Result<()> {
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let mut server = Server::launch(Launch { flags: vec!["--kafka-listen".into(), listen], ..Launch::default() })?;
    let kafka = server.kafka.context("kafka address")?;
    server.client().await?.create_topic("ledger", topic(2)).await?;
    let dir = tempfile::tempdir()?;
    let acked_path = dir.path().join("acked");
    let acked = acked_path.to_string_lossy().into_owned();
    let python = weir_tests::kafka_python();
    let mut producer = Command::new(python)
        .arg(weir_tests::workspace_root().join("tests/kafka/client.py"))
        .args(["produce", "--bootstrap", &kafka.to_string(), "--topic", "ledger", "--count", "200000"])
        .args(["--idempotent", "--acked", &acked, "--timeout-ms", "60000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    eventually("some acknowledged records", LONG, || async {
        let n = std::fs::read_to_string(&acked_path).map(|s| s.lines().count()).unwrap_or(0);
        Ok((n >= 2_000).then_some(()))
    })
    .await?;
    server.kill9();
    let acked_before_kill: Vec<String> = std::fs::read_to_string(&acked_path)?.lines().map(str::to_string).collect();
    server.restart()?;
    let mut out = String::new();
    producer.stdout.take().expect("piped").read_to_string(&mut out)?;
    producer.wait()?;
    let stored: std::collections::HashMap<String, usize> =
        server.client().await?.read_all("ledger").await?.iter().fold(Default::default(), |mut m, (_, _, r)| {
            *m.entry(text(r)).or_default() += 1;
            m
        });
    let missing: Vec<&String> = acked_before_kill.iter().filter(|v| !stored.contains_key(*v)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged records lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(3)]
    );
    let all_acked: Vec<String> = std::fs::read_to_string(&acked_path)?.lines().map(str::to_string).collect();
    assert!(all_acked.iter().all(|v| stored.contains_key(v)), "records acknowledged after the restart are stored too");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_creates_and_deletes_topics_weir_sees() -> Result<()> {
    let (server, kafka) = kafka_server()?;
    let client = server.client().await?;
    let created =
        kafka_client("admin", kafka, &["--action", "create", "--topic", "made-by-kafka", "--partitions", "3"])?;
    assert_eq!(created["errors"], serde_json::json!({}), "{created}");
    assert_eq!(client.describe_topic("made-by-kafka").await?.partitions.len(), 3);
    let again = kafka_client("admin", kafka, &["--action", "create", "--topic", "made-by-kafka", "--partitions", "3"])?;
    assert!(again["errors"]["made-by-kafka"].as_str().unwrap_or_default().contains("TOPIC_ALREADY_EXISTS"), "{again}");
    let deleted = kafka_client("admin", kafka, &["--action", "delete", "--topic", "made-by-kafka"])?;
    assert_eq!(deleted["errors"], serde_json::json!({}), "{deleted}");
    assert!(client.describe_topic("made-by-kafka").await.is_err());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_binary_header_value_is_refused_naming_the_header_and_nothing_is_stored() -> Result<()> {
    let (server, kafka) = kafka_server()?;
    let client = server.client().await?;
    client.create_topic("strict", topic(1)).await?;
    let r = kafka_client(
        "produce",
        kafka,
        &["--topic", "strict", "--count", "3", "--binary-header", "--timeout-ms", "5000"],
    )?;
    assert_eq!(r["acked"], 0, "{r}");
    let errors = strings(&r["failed"]).join(" ");
    assert!(errors.contains("INVALID_RECORD") || errors.contains("not UTF-8"), "{r}");
    assert!(client.read_all("strict").await?.is_empty());
    // The server says why in its log (clients below Produce v8 never see the text).
    assert!(server.log().contains("Kafka record batch refused"), "the refusal is logged with its reason");
    Ok(())
}

/// Raw frames: an ApiVersions the server does not speak gets version 0 with the ranges; a
/// frame that is not a request, or is over the size limit, closes that connection only.
#[tokio::test(flavor = "multi_thread")]
async fn malformed_oversized_and_unsupported_requests_are_answered_or_closed_and_others_are_served() -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (server, kafka) = kafka_server()?;
    server.client().await?.create_topic("alive", topic(1)).await?;
    let mut s = tokio::net::TcpStream::connect(kafka).await?;
    // ApiVersions (18) v99, correlation 7, client id "x".
    let body =
        [&18i16.to_be_bytes()[..], &99i16.to_be_bytes(), &7i32.to_be_bytes(), &1i16.to_be_bytes(), b"x"].concat();
    s.write_all(&(body.len() as u32).to_be_bytes()).await?;
    s.write_all(&body).await?;
    let len = s.read_u32().await? as usize;
    let mut reply = vec![0; len];
    s.read_exact(&mut reply).await?;
    assert_eq!(i32::from_be_bytes(reply[0..4].try_into()?), 7, "correlation id");
    assert_eq!(i16::from_be_bytes(reply[4..6].try_into()?), 35, "UNSUPPORTED_VERSION");
    assert!(reply.len() > 10, "with the supported ranges");
    for frame in [vec![0xff, 0x7f, 0, 0, 0, 0, 0, 1], vec![0, 0, 0, 9, 1, 2]] {
        let mut bad = tokio::net::TcpStream::connect(kafka).await?;
        bad.write_all(&(frame.len() as u32).to_be_bytes()).await?;
        bad.write_all(&frame).await?;
        let mut buf = [0u8; 16];
        assert_eq!(tokio::time::timeout(LONG, bad.read(&mut buf)).await??, 0, "closed");
    }
    let mut huge = tokio::net::TcpStream::connect(kafka).await?;
    huge.write_all(&u32::MAX.to_be_bytes()).await?;
    let mut buf = [0u8; 16];
    assert_eq!(tokio::time::timeout(LONG, huge.read(&mut buf)).await??, 0, "closed");
    let listing = kcat(kafka, &["-L", "-t", "alive"], "")?;
    assert!(listing.contains("topic \"alive\" with 1 partitions"), "{listing}");
    Ok(())
}
