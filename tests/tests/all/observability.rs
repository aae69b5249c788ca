//! The HTTP door (`weir serve --http-listen`): Prometheus metrics checked by `promtool`, the
//! JSON API's round trips and its errors, server-sent events resumed from `Last-Event-ID`,
//! trace context through a 3-step pipeline, and the web console in Debian's chromium driven
//! by Playwright.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use weir_tests::weir_client::wire::{ErrorPolicy, QueueConfig, WireRecord};
use weir_tests::{Server, browser_python, consume_n, eventually, pipeline, plugin_bytes, step, text, topic};

const LONG: Duration = Duration::from_secs(120);

/// A server with the HTTP door, and its base URL.
fn http_server(extra: &[&str]) -> Result<(Server, String)> {
    let mut flags = vec!["--http-listen", "127.0.0.1:0"];
    flags.extend_from_slice(extra);
    let server = Server::start_with(&flags)?;
    let base = format!("http://{}", server.http.context("the HTTP listener's address")?);
    Ok((server, base))
}

/// A server with the HTTP door and a token file holding `root:root-secret-1` (everything) and
/// `line`; its base URL, a native client with the root token, and the file (kept while used).
async fn token_server(
    line: &str,
) -> Result<(Server, String, weir_tests::weir_client::client::Client, tempfile::NamedTempFile)> {
    let tokens = tempfile::NamedTempFile::new()?;
    std::fs::write(tokens.path(), format!("root:root-secret-1\n{line}\n"))?;
    let path = tokens.path().to_string_lossy().to_string();
    let (server, base) = http_server(&["--auth-token-file", &path])?;
    let root = Some("root-secret-1".to_string());
    let c = weir_tests::weir_client::client::Client::connect_with_token(server.addr.to_string(), root).await?;
    Ok((server, base, c, tokens))
}

/// `(status, body as JSON)` of a request.
async fn call(request: reqwest::RequestBuilder) -> Result<(StatusCode, Value)> {
    let response = request.send().await?;
    let status = response.status();
    let body = response.text().await?;
    let json = serde_json::from_str(&body).with_context(|| format!("{status}: not JSON: {body:?}"))?;
    Ok((status, json))
}

/// The body of a 2xx response.
async fn ok(request: reqwest::RequestBuilder) -> Result<Value> {
    let (status, body) = call(request).await?;
    ensure!(status.is_success(), "{status}: {body}");
    Ok(body)
}

/// The error of a 4xx response: its status, kind and message.
async fn refused(request: reqwest::RequestBuilder) -> Result<(u16, String, String)> {
    let (status, body) = call(request).await?;
    ensure!(status.is_client_error(), "expected a 4xx, got {status}: {body}");
    let e = &body["error"];
    Ok((status.as_u16(), e["kind"].as_str().unwrap_or("").into(), e["message"].as_str().unwrap_or("").into()))
}

/// `promtool check metrics` on `text`: its complaints, if any.
fn promtool(text: &str) -> Result<()> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("promtool is missing: run examples/setup.sh (Debian's prometheus package)")?;
    child.stdin.take().expect("piped").write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "promtool found problems:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The value of the sample `name{labels}` in exposition text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.parse().ok()))
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_pass_promtool_and_count_what_happened() -> Result<()> {
    let (server, base) = http_server(&[])?;
    let c = server.client().await?;
    c.create_topic("in", topic(2)).await?;
    c.create_topic("out", topic(1)).await?;
    c.deploy_plugin("keep", plugin_bytes("json-filter")).await?;
    c.create_pipeline(pipeline("p", "in", "out", vec![step("keep", &[("field", "ok"), ("equals", "true")])])).await?;
    let records: Vec<WireRecord> =
        (0..200).map(|i| WireRecord::value(format!(r#"{{"ok":{}}}"#, i % 2 == 0).into_bytes())).collect();
    c.produce("in", records).await?;
    consume_n(&c, "out", 100, LONG).await?;
    c.create_queue("jobs", QueueConfig::default()).await?;
    let job = weir_tests::weir_client::wire::NewQueueMessage { body: b"j".to_vec(), ..Default::default() };
    c.queue_send("jobs", vec![job]).await?;
    let http = reqwest::Client::new();
    // Each node reports what it did (as Prometheus scrapes every node of a cluster); a
    // pipeline's partitions may run on either node, so its counts are summed over the nodes.
    let peer = server.peer.as_ref().and_then(|p| p.http).map(|a| format!("http://{a}"));
    let bases: Vec<String> = std::iter::once(base.clone()).chain(peer).collect();
    let scrape = || async {
        let mut texts = Vec::new();
        for b in &bases {
            texts.push(http.get(format!("{b}/metrics")).send().await?.text().await?);
        }
        anyhow::Ok(texts)
    };
    let total = |texts: &[String], series: &str| texts.iter().filter_map(|t| sample(t, series)).reduce(|a, b| a + b);
    let texts = eventually("the pipeline's counts in /metrics", LONG, || async {
        let texts = scrape().await?;
        Ok((total(&texts, r#"weir_pipeline_inputs_total{pipeline="p"}"#) == Some(200.0)).then_some(texts))
    })
    .await?;
    for t in &texts {
        promtool(t)?;
    }
    let text = &texts[0];
    for (series, want) in [
        (r#"weir_pipeline_outputs_total{pipeline="p"}"#, 100.0),
        (r#"weir_pipeline_dropped_total{pipeline="p"}"#, 100.0),
        (r#"weir_step_inputs_total{pipeline="p",plugin="keep",step="1"}"#, 200.0),
        (r#"weir_queue_messages{queue="jobs",state="ready"}"#, 1.0),
    ] {
        assert_eq!(total(&texts, series), Some(want), "{series} in:\n{texts:?}");
    }
    // What is read from the store is the same on every node.
    for (series, want) in [
        (r#"weir_topic_records_in_total{topic="in"}"#, 200.0),
        (r#"weir_pipeline_lag_records{pipeline="p"}"#, 0.0),
        (r#"weir_pipeline_state{pipeline="p",state="running"}"#, 1.0),
        (r#"weir_group_lag_records{group="pipeline.p",partition="0",topic="in"}"#, 0.0),
    ] {
        for t in &texts {
            assert_eq!(sample(t, series), Some(want), "{series} in:\n{t}");
        }
    }
    for positive in [
        "weir_store_wal_fsyncs_total",
        "weir_store_group_commit_write_seconds_count",
        r#"weir_request_duration_seconds_count{command="topic.produce"}"#,
        "process_resident_memory_bytes",
        r#"weir_topic_bytes_in_total{topic="in"}"#,
    ] {
        assert!(sample(text, positive).is_some_and(|v| v > 0.0), "{positive} missing or zero in:\n{text}");
    }
    for per_node in [
        r#"weir_pipeline_batch_duration_seconds_count{pipeline="p"}"#,
        r#"weir_step_plugin_memory_bytes{pipeline="p",plugin="keep",step="1"}"#,
    ] {
        assert!(total(&texts, per_node).is_some_and(|v| v > 0.0), "{per_node} missing or zero in:\n{texts:?}");
    }
    assert!(text.contains(r#"weir_step_info{pipeline="p",plugin="keep",role="live",step="1",version="1"} 1"#));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_http_api_round_trips_records_queues_exchanges_and_requests() -> Result<()> {
    let (server, base) = http_server(&[])?;
    let c = server.client().await?;
    c.create_topic("orders", topic(2)).await?;
    let http = reqwest::Client::new();
    let api = |path: &str| format!("{base}/api/v1{path}");

    // Produce JSON, text and bytes; a native client reads them as they were sent.
    let body = json!({"records": [
        {"key": "k1", "value": {"id": 1}, "headers": {"h": "v"}},
        {"value": "plain text"},
        {"value_base64": "/wA="},
    ]});
    let produced = ok(http.post(api("/topics/orders/records")).json(&body)).await?;
    assert_eq!(produced["offsets"].as_array().map(Vec::len), Some(3));
    let native = consume_n(&c, "orders", 3, LONG).await?;
    let mut values: Vec<Vec<u8>> = native.iter().map(|r| r.2.value.to_vec()).collect();
    values.sort();
    assert_eq!(values, vec![b"plain text".to_vec(), b"{\"id\":1}".to_vec(), vec![0xff, 0]]);

    // Fetch by offset: text as text, bytes as base64, headers and keys kept.
    let fetched = ok(http.get(api("/topics/orders/records?max=10"))).await?;
    let records = fetched["records"].as_array().context("records")?;
    assert_eq!(records.len(), 3);
    let keyed = records.iter().find(|r| r["key"] == "k1").context("the keyed record")?;
    assert_eq!((keyed["value"].as_str(), keyed["headers"]["h"].as_str()), (Some("{\"id\":1}"), Some("v")));
    assert!(records.iter().any(|r| r["value_base64"] == "/wA="));

    // Fetch by group, committing: a second read returns nothing new, then only what follows.
    let first = ok(http.get(api("/topics/orders/records?group=g&commit=true&max=100"))).await?;
    assert_eq!(first["records"].as_array().map(Vec::len), Some(3));
    let second = ok(http.get(api("/topics/orders/records?group=g&commit=true"))).await?;
    assert_eq!(second["records"].as_array().map(Vec::len), Some(0));
    ok(http.post(api("/topics/orders/records?partition=1")).json(&json!({"records": [{"value": "late"}]}))).await?;
    let third = ok(http.get(api("/topics/orders/records?group=g&commit=true"))).await?;
    assert_eq!(third["records"][0]["value"], "late");
    let groups = ok(http.get(api("/groups"))).await?;
    assert!(groups.as_array().is_some_and(|g| g.iter().any(|g| g["group"] == "g")), "{groups}");

    // By time: from a time after everything, nothing.
    let future = weir_tests::weir_host::types::now_ms() + 60_000;
    let none = ok(http.get(api(&format!("/topics/orders/records?time_ms={future}")))).await?;
    assert_eq!(none["records"].as_array().map(Vec::len), Some(0));

    // Queues: send, receive, nack back, receive again, ack.
    c.create_queue("jobs", QueueConfig::default()).await?;
    let sent = ok(http.post(api("/queues/jobs/messages")).json(&json!({"messages": [{"body": "job-1"}]}))).await?;
    assert_eq!(sent["enqueued"], json!([true]));
    let got = ok(http.post(api("/queues/jobs/receive")).json(&json!({"max": 5, "wait_ms": 2000}))).await?;
    let receipt = got["messages"][0]["receipt"].as_str().context("a receipt")?.to_string();
    assert_eq!(got["messages"][0]["body"], "job-1");
    ok(http.post(api("/queues/jobs/nack")).json(&json!({"receipts": [receipt]}))).await?;
    let again = ok(http.post(api("/queues/jobs/receive")).json(&json!({"wait_ms": 5000}))).await?;
    assert_eq!(again["messages"][0]["deliveries"], 2);
    let receipt = again["messages"][0]["receipt"].as_str().context("a receipt")?;
    assert_eq!(ok(http.post(api("/queues/jobs/ack")).json(&json!({"receipts": [receipt]}))).await?["count"], 1);
    let q = ok(http.get(api("/queues/jobs"))).await?;
    assert_eq!((q["ready"].as_u64(), q["in_flight"].as_u64()), (Some(0), Some(0)));

    // Exchanges route by key.
    c.create_topic("mail", topic(1)).await?;
    c.create_exchange("x", weir_tests::weir_client::wire::ExchangeType::Direct, None).await?;
    let binding = weir_tests::weir_client::wire::Binding {
        destination: weir_tests::weir_client::wire::Destination::Topic("mail".into()),
        key: Some("mail".into()),
        matches: vec![],
        match_any: false,
    };
    c.bind("x", binding).await?;
    let published =
        ok(http.post(api("/exchanges/x/publish")).json(&json!({"routing_key": "mail", "record": {"value": "hi"}})))
            .await?;
    assert_eq!(published["destinations"], json!(["topic:mail"]));
    assert_eq!(published["routed"], json!(true));
    // Nothing matched and no alternate exchange: dropped, and said so (as RabbitMQ's HTTP API).
    let unrouted =
        ok(http.post(api("/exchanges/x/publish")).json(&json!({"routing_key": "none", "record": {"value": "x"}})))
            .await?;
    assert_eq!((&unrouted["routed"], &unrouted["destinations"]), (&json!(false), &json!([])));

    // Request/reply through a pipeline that answers.
    c.create_topic("prices", topic(1)).await?;
    c.create_topic("unused", topic(1)).await?;
    c.deploy_plugin("quote", plugin_bytes("json-transform")).await?;
    let steps = vec![step("quote", &[("set.price", "42"), ("reply", "true")])];
    c.create_pipeline(pipeline("quotes", "prices", "unused", steps)).await?;
    let reply = ok(http.post(api("/topics/prices/request")).json(&json!({"record": {"value": {"sku": "A"}}}))).await?;
    let doc: Value = serde_json::from_str(reply["value"].as_str().context("reply value")?)?;
    assert_eq!((doc["sku"].as_str(), doc["price"].as_u64()), (Some("A"), Some(42)));

    // Admin views.
    let pipelines = ok(http.get(api("/pipelines"))).await?;
    assert_eq!(pipelines[0]["spec"]["name"], "quotes");
    assert_eq!(ok(http.get(api("/pipelines/quotes"))).await?["plugins"], json!(["quote@1"]));
    assert_eq!(ok(http.get(api("/plugins"))).await?[0]["live"]["name"], "quote");
    assert_eq!(ok(http.get(api("/plugins/quote/versions"))).await?[0]["version"], 1);
    let openapi = ok(http.get(format!("{base}/openapi.json"))).await?;
    for path in [
        "/api/v1/topics/{topic}/records",
        "/api/v1/topics/{topic}/events",
        "/api/v1/queues/{queue}/receive",
        "/metrics",
    ] {
        assert!(openapi["paths"].get(path).is_some(), "{path} missing from /openapi.json");
    }
    Ok(())
}

/// What the CLI sets up, an HTTP-only user can too: topics, queues, exchanges and bindings
/// are created and deleted through the broker's one access check, each route in /openapi.json.
#[tokio::test(flavor = "multi_thread")]
async fn the_http_door_creates_and_deletes_topics_queues_exchanges_and_bindings() -> Result<()> {
    let (_server, base, c, _tokens) = token_server("reader:reader-secret-1 read:*").await?;
    let http = reqwest::Client::new();
    let api = |path: &str| format!("{base}/api/v1{path}");
    let root = |r: reqwest::RequestBuilder| r.bearer_auth("root-secret-1");

    let spec = ok(http.get(format!("{base}/openapi.json"))).await?;
    for (path, method) in [
        ("/api/v1/topics", "post"),
        ("/api/v1/topics/{topic}", "delete"),
        ("/api/v1/queues", "post"),
        ("/api/v1/queues/{queue}", "delete"),
        ("/api/v1/exchanges", "post"),
        ("/api/v1/exchanges/{exchange}", "delete"),
        ("/api/v1/exchanges/{exchange}/bindings", "post"),
        ("/api/v1/exchanges/{exchange}/bindings", "delete"),
    ] {
        assert!(spec["paths"][path][method].is_object(), "{method} {path} is not in /openapi.json");
    }

    // A topic: made with its settings, seen by the native door, refused twice and to a reader.
    let made = root(http.post(api("/topics"))).json(&json!({"name": "made", "config": {"partitions": 3}}));
    let (status, topic) = call(made).await?;
    assert_eq!((status.as_u16(), &topic["name"], &topic["config"]["partitions"]), (201, &json!("made"), &json!(3)));
    assert_eq!(c.describe_topic("made").await?.config.partitions, 3);
    let cases = [
        (root(http.post(api("/topics"))).json(&json!({"name": "made"})), 409, "exists"),
        (root(http.post(api("/topics"))).json(&json!({"name": "no spaces"})), 400, "no spaces"),
        (root(http.post(api("/topics"))).json(&json!({"name": "t2", "config": {"partition": 3}})), 422, "`partition`"),
        (http.post(api("/topics")).bearer_auth("reader-secret-1").json(&json!({"name": "t3"})), 403, ""),
        (http.delete(api("/topics/made")).bearer_auth("reader-secret-1"), 403, ""),
    ];
    for (request, want, says) in cases {
        let (status, _, msg) = refused(request).await?;
        assert!(status == want && msg.contains(says), "wanted {want} saying {says:?}, got {status}: {msg}");
    }

    // A queue with a dead-letter queue, an exchange, a binding: a publish reaches the queue.
    let config = json!({"visibility_timeout_ms": 5000, "max_deliveries": 3, "dead_letter": "jobs-dlq"});
    let (status, queue) =
        call(root(http.post(api("/queues"))).json(&json!({"name": "jobs", "config": config}))).await?;
    assert_eq!((status.as_u16(), &queue["config"]["max_deliveries"]), (201, &json!(3)), "{queue}");
    ok(root(http.get(api("/queues/jobs-dlq")))).await?;
    let (status, _) =
        call(root(http.post(api("/exchanges"))).json(&json!({"name": "events", "kind": "topic"}))).await?;
    assert_eq!(status.as_u16(), 201);
    let bind = json!({"destination": "queue:jobs", "key": "order.*"});
    let (status, ex) = call(root(http.post(api("/exchanges/events/bindings"))).json(&bind)).await?;
    assert_eq!((status.as_u16(), ex["bindings"].as_array().map(Vec::len)), (201, Some(1)), "{ex}");
    let message = json!({"routing_key": "order.created", "record": {"value": "hi"}});
    let published = ok(root(http.post(api("/exchanges/events/publish"))).json(&message)).await?;
    assert_eq!(published["destinations"], json!(["queue:jobs"]));
    assert_eq!(c.describe_queue("jobs").await?.ready, 1);

    // And undone: unbind, then delete each; a second delete is a 404.
    let left = ok(root(http.delete(api("/exchanges/events/bindings?destination=queue:jobs")))).await?;
    assert_eq!(left["bindings"], json!([]));
    for path in ["/exchanges/events", "/queues/jobs", "/topics/made"] {
        let r = root(http.delete(api(path))).send().await?;
        assert_eq!(r.status().as_u16(), 204, "DELETE {path}");
        let (status, _, _) = refused(root(http.delete(api(path)))).await?;
        assert_eq!(status, 404, "DELETE {path} again");
    }
    assert!(c.list_topics().await?.iter().all(|t| t.name != "made"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn http_mistakes_are_4xx_json_errors_that_say_what_to_fix() -> Result<()> {
    let (_server, base, c, _tokens) = token_server("reader:reader-secret-1 read:*").await?;
    c.create_topic("t", topic(1)).await?;
    let http = reqwest::Client::new();
    let url = format!("{base}/api/v1/topics/t/records");
    let root = |r: reqwest::RequestBuilder| r.bearer_auth("root-secret-1");

    let no_token = http.get(&url).send().await?;
    assert_eq!(no_token.status(), 401);
    assert_eq!(no_token.headers().get("www-authenticate").map(|v| v.as_bytes()), Some(&b"Bearer"[..]));
    let (_, kind, msg) = refused(http.get(&url)).await?;
    assert!(kind == "Unauthenticated" && msg.contains("Authorization: Bearer"), "{msg}");
    let (status, _, msg) = refused(http.get(&url).bearer_auth("wrong")).await?;
    assert_eq!(status, 401, "{msg}");
    let (status, kind, msg) =
        refused(http.post(&url).bearer_auth("reader-secret-1").json(&json!({"records": [{"value": "x"}]}))).await?;
    assert!(status == 403 && kind == "Forbidden" && msg.contains("write:t"), "{status} {kind} {msg}");

    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (root(http.post(&url)).header("content-type", "application/json").body("{not json"), 400, "valid JSON"),
        (root(http.post(&url)).header("content-type", "text/plain").body("{}"), 415, "Content-Type"),
        (root(http.post(&url)).json(&json!({"records": [{"valu": 1}]})), 422, "unknown field `valu`"),
        (root(http.post(&url)).json(&json!({"records": [{"key": "k"}]})), 400, "records[0] has no value"),
        (root(http.post(&url)).json(&json!({"records": [{"value_base64": "@@"}]})), 400, "not valid base64"),
        (root(http.post(&url)).json(&json!({"records": []})), 400, "no records"),
        (root(http.get(format!("{base}/api/v1/topics/missing/records"))), 404, "weir topic create missing"),
        (root(http.get(format!("{url}?partition=7"))), 404, "partitions 0 to 0"),
        (root(http.get(format!("{url}?offset=1&group=g"))), 422, "at most one of"),
        (root(http.get(format!("{url}?max=lots"))), 400, "max"),
        (root(http.get(format!("{url}?commit=true"))), 422, "needs group"),
        (root(http.get(format!("{base}/api/v1/topics/t/events?from=middle"))), 400, "earliest"),
        (
            root(http.get(format!("{base}/api/v1/topics/t/events"))).header("last-event-id", "x"),
            400,
            "partition:offset",
        ),
        (root(http.post(format!("{base}/api/v1/queues/none/receive"))).json(&json!({})), 404, "none"),
        (root(http.post(format!("{base}/api/v1/pipelines/ghost/pause"))).body(""), 415, "application/json"),
        (
            root(http.post(format!("{base}/api/v1/topics/t/replay"))).header("content-type", "text/plain"),
            415,
            "Content-Type",
        ),
        (root(http.get(format!("{base}/api/v1/nowhere"))), 404, "/openapi.json"),
        (root(http.post(format!("{base}/api/v1/pipelines/ghost/pause"))).json(&json!({})), 404, "ghost"),
        (root(http.post(format!("{base}/api/v1/topics/t/replay"))).json(&json!({"to": "t"})), 400, "into itself"),
        (http.get(format!("{base}/metrics")).bearer_auth("nobody"), 401, ""),
    ];
    for (request, want, says) in cases {
        let (status, _, msg) = refused(request).await?;
        assert!(status == want && msg.contains(says), "wanted {want} saying {says:?}, got {status}: {msg}");
    }
    // A method a collection does not take: 405 with the methods it does, whatever the body.
    for path in ["/api/v1/groups", "/api/v1/pipelines", "/api/v1/plugins"] {
        let r = root(http.post(format!("{base}{path}"))).body("x").send().await?;
        let allow = r.headers().get("allow").and_then(|a| a.to_str().ok()).unwrap_or("").to_string();
        assert_eq!((r.status().as_u16(), allow.contains("GET")), (405, true), "POST {path}: allow {allow:?}");
    }
    for path in ["/api/v1/topics", "/api/v1/queues", "/api/v1/exchanges"] {
        let r = root(http.put(format!("{base}{path}"))).body("x").send().await?;
        let allow = r.headers().get("allow").and_then(|a| a.to_str().ok()).unwrap_or("").to_string();
        assert_eq!((r.status().as_u16(), allow.contains("POST")), (405, true), "PUT {path}: allow {allow:?}");
    }
    // Oversized bodies are refused before they are read whole (and the connection closed
    // unread: a client of its own, so the next request does not pick that connection).
    let big = format!(r#"{{"records":[{{"value":"{}"}}]}}"#, "x".repeat(9 << 20));
    let once = reqwest::Client::new();
    let (status, kind, _) = refused(root(once.post(&url)).header("content-type", "application/json").body(big)).await?;
    assert_eq!((status, kind.as_str()), (413, "MessageTooLarge"));
    // The reader may scrape metrics (read:*); nothing was stored by the refused requests.
    let metrics = http.get(format!("{base}/metrics")).bearer_auth("reader-secret-1").send().await?;
    assert_eq!(metrics.status(), 200);
    assert_eq!(c.describe_topic("t").await?.partitions, vec![(0, 0)]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn server_sent_events_resume_from_last_event_id() -> Result<()> {
    let (server, base) = http_server(&[])?;
    let c = server.client().await?;
    c.create_topic("ticks", topic(2)).await?;
    let produce = |from: usize| {
        (from..from + 10).map(|i| WireRecord::keyed(format!("k{}", i % 4), format!("tick-{i}"))).collect::<Vec<_>>()
    };
    c.produce("ticks", produce(0)).await?;
    let url = format!("{base}/api/v1/topics/ticks/events?from=earliest");
    let (first, last_id) = read_events(reqwest::Client::new().get(&url), 10).await?;
    c.produce("ticks", produce(10)).await?;
    let resumed =
        reqwest::Client::new().get(format!("{base}/api/v1/topics/ticks/events")).header("Last-Event-ID", &last_id);
    let (second, _) = read_events(resumed, 10).await?;
    let mut all: Vec<String> = first.into_iter().chain(second).collect();
    all.sort_by_key(|v| v.trim_start_matches("tick-").parse::<u32>().unwrap_or(0));
    let want: Vec<String> = (0..20).map(|i| format!("tick-{i}")).collect();
    assert_eq!(all, want, "every record once, across the reconnect");

    // A partition that had sent nothing before the reconnect loses nothing either.
    c.create_topic("quiet", topic(2)).await?;
    let http = reqwest::Client::new();
    let url = format!("{base}/api/v1/topics/quiet/events");
    let stream = tokio::spawn(read_events(http.get(&url), 1));
    let to = |p: u32, v: &str| {
        http.post(format!("{base}/api/v1/topics/quiet/records?partition={p}")).json(&json!({"records": [{"value": v}]}))
    };
    // The stream starts at the end: produce until its first read has begun and sees one.
    let (seen, id) = loop {
        ok(to(0, "p0")).await?;
        if stream.is_finished() {
            break stream.await??;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(seen[0], "p0");
    ok(to(1, "p1-while-away")).await?;
    // Whatever followed the event seen in partition 0, then the record partition 1 got.
    let away = |v: &[String]| v.iter().any(|x| x == "p1-while-away");
    let (resumed, _) = read_events_until(http.get(&url).header("Last-Event-ID", &id), away).await?;
    assert!(resumed.iter().all(|v| v == "p0" || v == "p1-while-away"), "{resumed:?}");
    assert_eq!(resumed.iter().filter(|v| *v == "p1-while-away").count(), 1, "resumed from id {id}: {resumed:?}");
    Ok(())
}

/// Read `n` `record` events: their values, and the last event id.
async fn read_events(request: reqwest::RequestBuilder, n: usize) -> Result<(Vec<String>, String)> {
    read_events_until(request, move |values| values.len() >= n).await
}

/// Read `record` events until `done` says so: their values, and the last event id.
async fn read_events_until(
    request: reqwest::RequestBuilder,
    done: impl Fn(&[String]) -> bool,
) -> Result<(Vec<String>, String)> {
    let response = request.send().await?;
    ensure!(response.status() == 200, "{}", response.status());
    let mut stream = response.bytes_stream();
    let (mut buf, mut values, mut last_id) = (String::new(), Vec::new(), String::new());
    let read = async {
        while !done(&values) {
            let Some(chunk) = stream.next().await else { bail!("the stream ended after {} events", values.len()) };
            buf.push_str(std::str::from_utf8(&chunk?)?);
            while let Some(end) = buf.find("\n\n") {
                let event: String = buf.drain(..end + 2).collect();
                let field = |name: &str| event.lines().find_map(|l| l.strip_prefix(name)).map(str::to_string);
                if field("event: ").as_deref() == Some("record") {
                    let data: Value = serde_json::from_str(&field("data: ").unwrap_or_default())?;
                    values.push(data["value"].as_str().unwrap_or_default().to_string());
                    last_id = field("id: ").unwrap_or_default();
                }
            }
        }
        Ok(())
    };
    tokio::time::timeout(LONG, read).await.context("events did not arrive")??;
    Ok((values, last_id))
}

/// A stand-in OpenTelemetry collector: takes OTLP/HTTP exports at /v1/traces and keeps them.
async fn collector() -> Result<(String, std::sync::Arc<std::sync::Mutex<Vec<bytes::Bytes>>>)> {
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = bodies.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: bytes::Bytes| async move {
            keep.lock().expect("bodies").push(body);
            ([("content-type", "application/x-protobuf")], Vec::<u8>::new())
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, bodies))
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).filter_map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_traceparent_keeps_its_trace_through_a_three_step_pipeline() -> Result<()> {
    let (otlp, exported) = collector().await?;
    let (server, _) = http_server(&["--otlp-endpoint", &otlp])?;
    let c = server.client().await?;
    c.create_topic("in", topic(1)).await?;
    c.create_topic("out", topic(1)).await?;
    c.deploy_plugin("pass", plugin_bytes("pass")).await?;
    c.deploy_plugin("stamp", plugin_bytes("json-transform")).await?;
    c.deploy_plugin("keep", plugin_bytes("json-filter")).await?;
    let steps = vec![
        step("pass", &[]),
        step("stamp", &[("set.seen", "true")]),
        step("keep", &[("field", "seen"), ("op", "exists")]),
    ];
    c.create_pipeline(pipeline("traced", "in", "out", steps)).await?;
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let traced = WireRecord {
        headers: vec![("traceparent".into(), parent.into())],
        ..WireRecord::value(br#"{"n":1}"#.to_vec())
    };
    c.produce("in", vec![traced, WireRecord::value(br#"{"n":2}"#.to_vec())]).await?;
    let out = consume_n(&c, "out", 2, LONG).await?;
    let header = |r: &WireRecordView, name: &str| r.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let first = out.iter().find(|r| text(&r.2).contains("\"n\":1")).context("the traced output")?;
    let tp = header(&first.2, "traceparent").context("the output's traceparent")?;
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!((parts[0], parts[1], parts[3]), ("00", "4bf92f3577b34da6a3ce929d0e0e4736", "01"), "{tp}");
    assert_ne!(parts[2], "00f067aa0ba902b7", "the output carries a span of its own");
    let path = header(&first.2, "weir-trace").context("the output's path")?;
    let steps: Vec<&str> = path.split(',').map(|e| e.rsplit_once(' ').map_or(e, |(s, _)| s)).collect();
    assert_eq!(steps, vec!["traced#1 pass@1", "traced#2 stamp@1", "traced#3 keep@1"], "{path}");
    let second = out.iter().find(|r| text(&r.2).contains("\"n\":2")).context("the untraced output")?;
    assert_eq!(header(&second.2, "traceparent"), None, "an untraced message gets no trace");
    // The last step's span went to the collector with the ids the output carries.
    let (trace_id, span_id) = (hex_bytes(parts[1]), hex_bytes(parts[2]));
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    eventually("the span to be exported over OTLP", LONG, || async {
        let bodies = exported.lock().expect("bodies");
        let step = bodies.iter().any(|b| contains(b, &trace_id) && contains(b, &span_id));
        // The commit span, child of the last step's, carries the output's span id as its parent.
        let commit = bodies.iter().any(|b| contains(b, b"traced commit") && contains(b, &span_id));
        Ok((step && commit).then_some(()))
    })
    .await?;
    Ok(())
}

type WireRecordView = weir_tests::weir_client::wire::FetchedRecord;

/// Run `tests/console/console.py ARGS` and parse the JSON line it prints.
async fn console(python: std::path::PathBuf, args: Vec<String>) -> Result<Value> {
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python).arg(weir_tests::workspace_root().join("tests/console/console.py")).args(args).output()
    })
    .await??;
    ensure!(
        out.status.success(),
        "console.py failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    Ok(serde_json::from_str(stdout.lines().last().unwrap_or_default())?)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_token_sees_no_buttons_that_would_fail() -> Result<()> {
    let python = browser_python();
    ensure!(python.exists(), "{} is missing: run examples/setup.sh (it installs Playwright)", python.display());
    let (_server, base, c, _tokens) = token_server("watcher:watch-secret-1 read:*").await?;
    c.create_topic("in", topic(1)).await?;
    c.create_topic("out", topic(1)).await?;
    c.deploy_plugin("keep", plugin_bytes("json-filter")).await?;
    c.deploy_plugin("keep", plugin_bytes("json-filter")).await?;
    c.create_pipeline(pipeline("p", "in", "out", vec![step("keep", &[("field", "id"), ("op", "exists")])])).await?;
    let args = ["--read-only", "--url", &base, "--token", "watch-secret-1", "--pipeline", "p", "--plugin", "keep"];
    let seen = console(python, args.iter().map(|s| s.to_string()).collect()).await?;
    assert_eq!(seen["console_errors"], json!([]), "{seen}");
    assert_eq!(seen["who"], "token watcher", "{seen}");
    assert_eq!((seen["pipeline_buttons"].as_u64(), seen["plugin_buttons"].as_u64()), (Some(0), Some(0)), "{seen}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_works_in_a_real_browser() -> Result<()> {
    let python = browser_python();
    ensure!(python.exists(), "{} is missing: run examples/setup.sh (it installs Playwright)", python.display());
    let (server, base) = http_server(&[])?;
    let c = server.client().await?;
    for t in ["orders", "billed", "broken-in", "broken-out", "dl-in", "dl-out"] {
        c.create_topic(t, topic(1)).await?;
    }
    c.deploy_plugin("keep", plugin_bytes("json-filter")).await?;
    c.deploy_plugin("h", plugin_bytes("hostile")).await?;
    c.create_pipeline(pipeline(
        "billing",
        "orders",
        "billed",
        vec![step("keep", &[("field", "id"), ("op", "exists")])],
    ))
    .await?;
    c.create_pipeline(pipeline("broken", "broken-in", "broken-out", vec![step("h", &[("mode", "fail")])])).await?;
    let mut dl = pipeline("letters", "dl-in", "dl-out", vec![step("h", &[("mode", "fail"), ("trigger", "bad")])]);
    dl.on_error = ErrorPolicy::DeadLetter;
    c.create_pipeline(dl).await?;
    // A second version of `keep`, and a pipeline pinned to the first.
    c.deploy_plugin("keep", plugin_bytes("json-filter")).await?;
    c.create_pipeline(pipeline(
        "audit",
        "orders",
        "broken-out",
        vec![step("keep@1", &[("field", "id"), ("op", "exists")])],
    ))
    .await?;
    c.produce("orders", vec![WireRecord::value(br#"{"id":"first-order"}"#.to_vec())]).await?;
    c.produce("broken-in", vec![WireRecord::value(b"x".to_vec())]).await?;
    c.produce("dl-in", vec![WireRecord::value(b"bad".to_vec()), WireRecord::value(b"good".to_vec())]).await?;
    eventually("the dead letter and the halt", LONG, || async {
        let halted = c.pipeline_status("broken").await?.last_error.is_some();
        let lettered = c.pipeline_status("letters").await?.dead_lettered == 1;
        Ok((halted && lettered).then_some(()))
    })
    .await?;

    // A producer keeps the billing pipeline busy while the browser watches.
    let producer = {
        let c = server.client().await?;
        tokio::spawn(async move {
            for i in 0.. {
                let batch = (0..50).map(|j| WireRecord::value(format!(r#"{{"id":{}}}"#, i * 50 + j))).collect();
                if c.produce("orders", batch).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let shots = tempfile::tempdir()?;
    let screenshots = std::env::var("WEIR_CONSOLE_SCREENSHOTS").map_or_else(|_| shots.path().to_path_buf(), Into::into);
    let mut args: Vec<String> =
        ["--url", &base, "--topic", "orders", "--value", "first-order", "--pipeline", "billing"]
            .into_iter()
            .chain(["--halted", "broken", "--halt-text", "this message is bad", "--dlq-pipeline", "letters"])
            .map(String::from)
            .collect();
    args.extend(["--screenshots".to_string(), screenshots.to_string_lossy().into_owned()]);
    let seen = console(python, args).await;
    producer.abort();
    let seen = seen?;
    assert_eq!(seen["console_errors"], json!([]), "the console logged errors: {seen}");
    assert_eq!(seen["overview_halted"], 1, "{seen}");
    assert_eq!(seen["topic_has_value"], true, "{seen}");
    let inputs = &seen["inputs"];
    assert!(inputs[1].as_u64() > inputs[0].as_u64(), "{seen}");
    assert_eq!(
        (seen["halt_state"].as_str(), seen["halt_error_shown"].as_bool()),
        (Some("Halted"), Some(true)),
        "{seen}"
    );
    assert_eq!((seen["dlq_before"].as_u64(), seen["dlq_after"].as_u64()), (Some(1), Some(0)), "{seen}");
    assert_eq!((seen["handled_shown"].as_u64(), seen["handled_as_error"].as_u64()), (Some(1), Some(0)), "{seen}");
    assert!(
        seen["handled_text"].as_str().is_some_and(|t| t.contains(" UTC (the pipeline runs on)")),
        "it says when: {seen}"
    );
    assert_eq!(seen["partition_rows"], 1, "{seen}");
    assert!(seen["policy"].as_str().is_some_and(|p| p.contains("halt")), "{seen}");
    let keep =
        seen["plugin_rows"].as_array().into_iter().flatten().filter_map(|r| r.as_str()).find(|r| r.starts_with("keep"));
    assert!(keep.is_some_and(|r| r.contains("audit (pinned @1)") && r.contains("billing")), "{seen}");
    assert_eq!(seen["version_rows"], 3, "keep@1, keep@2, h@1: {seen}");
    // The replayed letter is back in the source, without its dead-letter headers.
    let back = consume_n(&c, "dl-in", 3, LONG).await?;
    assert_eq!(text(&back[2].2), "bad");
    assert!(back[2].2.headers.iter().all(|(k, _)| !k.starts_with("weir-dlq-")));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_certificate_the_http_door_speaks_tls_only() -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir()?;
    let (cert, key) = crate::reliability::self_signed(dir.path())?;
    let (cert_s, key_s) = (cert.to_string_lossy().to_string(), key.to_string_lossy().to_string());
    let (server, base) = http_server(&["--tls-cert", &cert_s, "--tls-key", &key_s])?;
    let addr = server.http.context("http address")?;
    let tls = weir_tests::weir_client::tls::ClientTls::new(&cert, "localhost")?;
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut stream = tokio_rustls::TlsConnector::from(tls.config).connect(tls.server_name, tcp).await?;
    stream.write_all(b"GET /api/v1/whoami HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(r#""enforced":false"#), "{response}");
    // Plaintext gets no HTTP answer from a TLS-only door.
    assert!(reqwest::Client::new().get(format!("{base}/api/v1/whoami")).send().await.is_err());
    Ok(())
}
