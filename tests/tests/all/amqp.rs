//! The AMQP door with RabbitMQ's own clients: pika 1.4.4 and amqplib 2.3.1 (installed by
//! `examples/setup.sh`), driven by `tests/amqp/client.{py,mjs}` against `weir serve
//! --amqp-listen`. The scenarios are the ones their scripts were first run against RabbitMQ
//! 3.10.8 with; messages cross between AMQP, weir's CLI, HTTP and pipelines.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use weir_tests::weir_client::wire::{Binding, Destination, ExchangeType, NewQueueMessage};
use weir_tests::weir_host::build::tools_dir;
use weir_tests::{
    Server, amqp_amqplib, amqp_pika, amqp_url, consume_n, eventually, pipeline, plugin_bytes, step, text, topic,
};

const LONG: Duration = Duration::from_secs(120);

/// Which client library drives a scenario.
#[derive(Clone, Copy, Debug)]
enum Lib {
    Pika,
    Amqplib,
}

const BOTH: [Lib; 2] = [Lib::Pika, Lib::Amqplib];

impl Lib {
    fn run(self, command: &str, url: &str, args: &[&str]) -> Result<Value> {
        let mut all = args.to_vec();
        all.extend(["--timeout", "30"]);
        match self {
            Lib::Pika => amqp_pika(command, url, &all),
            Lib::Amqplib => amqp_amqplib(command, url, &all),
        }
        .with_context(|| format!("{self:?} {command}"))
    }

    fn prefix(self) -> &'static str {
        match self {
            Lib::Pika => "py",
            Lib::Amqplib => "js",
        }
    }
}

fn amqp_server(extra: &[&str]) -> Result<(Server, String)> {
    let mut flags = vec!["--amqp-listen", "127.0.0.1:0"];
    flags.extend_from_slice(extra);
    let server = Server::start_with(&flags)?;
    let url = amqp_url(server.amqp.context("the AMQP listener's address")?, "guest", "guest");
    Ok((server, url))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_work_queue_with_prefetch_gives_each_message_to_one_of_two_consumers() -> Result<()> {
    let (_server, url) = amqp_server(&[])?;
    for lib in BOTH {
        let q = format!("{}.work", lib.prefix());
        let out = lib.run("work-queue", &url, &["--queue", &q, "--count", "200", "--prefetch", "10"])?;
        let (a, b) = (strings(&out["a"]), strings(&out["b"]));
        ensure!(!a.is_empty() && !b.is_empty(), "{lib:?}: both consumers take part: {out}");
        let mut all: Vec<String> = a.into_iter().chain(b).collect();
        let n = all.len();
        all.sort();
        all.dedup();
        ensure!(all.len() == 200 && n == 200, "{lib:?}: each message once: {n} deliveries of {} messages", all.len());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn unacked_messages_of_a_consumer_that_dies_are_redelivered_flagged() -> Result<()> {
    let (_server, url) = amqp_server(&[])?;
    // pika's socket is cut without a close; amqplib closes its connection properly.
    for (lib, how) in [(Lib::Pika, "--abrupt"), (Lib::Amqplib, "--close")] {
        let q = format!("{}.redeliver", lib.prefix());
        let out = lib.run("redelivery", &url, &["--queue", &q, "--count", "20", how])?;
        let first = out["first"].as_array().context("first")?;
        let second = out["second"].as_array().context("second")?;
        ensure!(first.len() == 20 && first.iter().all(|d| d[1] == false), "{lib:?}: {out}");
        ensure!(second.len() == 20 && second.iter().all(|d| d[1] == true), "{lib:?}: redelivered, flagged: {out}");
        let bodies =
            |v: &Vec<Value>| v.iter().map(|d| d[0].as_str().unwrap_or_default().to_string()).collect::<Vec<_>>();
        ensure!(bodies(first) == bodies(second), "{lib:?}: the same messages, in order: {out}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_and_expired_messages_go_to_the_dead_letter_exchange() -> Result<()> {
    let (_server, url) = amqp_server(&[])?;
    for lib in BOTH {
        let p = lib.prefix();
        let (q, x, d) = (format!("{p}.dl.q"), format!("{p}.dl.x"), format!("{p}.dl.d"));
        let out = lib.run("dead-letter", &url, &["--queue", &q, "--dlx", &x, "--dlq", &d])?;
        let dead: BTreeSet<String> = strings(&out["dead"]).into_iter().collect();
        ensure!(dead == BTreeSet::from(["a".into(), "b".into()]), "{lib:?}: nack and reject dead-letter: {out}");
        let reason = out["headers"][0]["x-first-death-reason"].as_str();
        ensure!(reason == Some("rejected"), "{lib:?}: RabbitMQ's reason header: {out}");
    }
    // Queue TTL and per-message expiration (pika): expired messages are dead-lettered too.
    let out = amqp_pika("ttl", &url, &["--queue", "ttl.q", "--dlx", "ttl.x", "--dlq", "ttl.d", "--timeout", "30"])?;
    let dead: BTreeSet<String> = strings(&out["dead"]).into_iter().collect();
    ensure!(dead == BTreeSet::from(["t1".into(), "t2".into(), "t3".into()]), "expired: {out}");
    ensure!(out["reasons"].as_array().is_some_and(|r| r.iter().all(|r| r == "expired")), "{out}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_limit_and_a_retry_loop_count_deaths_as_rabbitmq_does() -> Result<()> {
    let (_server, url) = amqp_server(&[])?;
    // x-delivery-limit 2: nacked with requeue, the message is delivered 3 times, then dead.
    let out =
        amqp_pika("delivery-limit", &url, &["--queue", "dl.q", "--dlx", "dl.x", "--dlq", "dl.d", "--timeout", "30"])?;
    ensure!(out["deliveries"] == 3 && strings(&out["dead"]) == ["poison"], "{out}");
    ensure!(out["death"]["reason"] == "delivery_limit", "{out}");
    // Work → reject → retry queue with a TTL → back: x-death counts per queue and reason,
    // and the headers do not grow with the loops.
    let out = amqp_pika("retry-loop", &url, &["--queue", "rl.q", "--dlx", "rl.x", "--count", "3", "--timeout", "30"])?;
    let counts: Vec<u64> = out["deaths"].as_array().into_iter().flatten().filter_map(|d| d["count"].as_u64()).collect();
    ensure!(counts == [1, 2, 3], "{out}");
    ensure!(out["headers"].as_u64().is_some_and(|n| n <= 8), "headers bounded: {out}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn topic_and_headers_exchanges_route_and_unroutable_mandatory_messages_return() -> Result<()> {
    let (_server, url) = amqp_server(&[])?;
    for lib in BOTH {
        let out = lib.run("routing", &url, &["--prefix", lib.prefix()])?;
        ensure!(
            strings(&out["q1"]) == ["quick.orange.rabbit", "lazy.orange.elephant", "quick.orange.fox"],
            "{lib:?}: *.orange.*: {out}"
        );
        ensure!(
            strings(&out["q2"])
                == ["quick.orange.rabbit", "lazy.orange.elephant", "lazy.brown.fox", "lazy.pink.rabbit"],
            "{lib:?}: *.*.rabbit and lazy.#: {out}"
        );
        ensure!(strings(&out["hall"]) == ["h1"] && strings(&out["hany"]) == ["h1", "h2"], "{lib:?}: headers: {out}");
        ensure!(out["returned"] == true, "{lib:?}: the unroutable mandatory publish is returned: {out}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_priority_queue_delivers_highest_first_fifo_within_one() -> Result<()> {
    let (_server, url) = amqp_server(&[])?;
    for lib in BOTH {
        let out = lib.run("priority", &url, &["--queue", &format!("{}.prio", lib.prefix())])?;
        ensure!(strings(&out["order"]) == ["p9-2", "p9-5", "p5-1", "p5-4", "p1-0", "p1-6", "p0-3"], "{lib:?}: {out}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn rpc_replies_reach_a_reply_queue_and_direct_reply_to() -> Result<()> {
    let (_server, url) = amqp_server(&[])?;
    for lib in BOTH {
        for direct in [false, true] {
            let q = format!("{}.rpc.{direct}", lib.prefix());
            let mut args = vec!["--queue", q.as_str()];
            if direct {
                args.push("--direct");
            }
            let out = lib.run("rpc", &url, &args)?;
            let replies: Vec<(String, String)> = out["replies"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| (r[0].as_str().unwrap_or_default().into(), r[1].as_str().unwrap_or_default().into()))
                .collect();
            let want: Vec<(String, String)> = (0..3).map(|i| (format!("corr-{i}"), format!("HELLO-{i}"))).collect();
            ensure!(replies == want, "{lib:?} direct={direct}: {out}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn confirmed_messages_survive_kill_9_and_none_comes_twice() -> Result<()> {
    let (mut server, url) = amqp_server(&[])?;
    let dir = tempfile::tempdir()?;
    let acked = dir.path().join("acked");
    let script = weir_tests::workspace_root().join("tests/amqp/client.mjs");
    let acked_arg = acked.to_str().context("utf-8")?;
    let publisher = Command::new("node")
        .env("WEIR_TOOLS", tools_dir())
        .arg(&script)
        .args(["publish", "--url", &url, "--queue", "durable", "--declare", "--count", "200000"])
        .args(["--acked", acked_arg, "--window", "64"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let confirmed = || std::fs::read_to_string(&acked).unwrap_or_default().lines().count();
    eventually("500 confirms", LONG, || async { Ok((confirmed() >= 500).then_some(())) }).await?;
    server.kill9();
    let out = publisher.wait_with_output()?;
    ensure!(
        out.status.success(),
        "the publisher reports the lost connection: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let confirmed: BTreeSet<String> = std::fs::read_to_string(&acked)?.lines().map(str::to_string).collect();
    server.restart()?;
    // In a cluster the queues' coordinator may have moved with the kill: wait until it
    // answers before draining.
    let c = server.client().await?;
    eventually("the queue to be served", LONG, || async { Ok(c.describe_queue("durable").await.ok()) }).await?;
    let url = amqp_url(server.amqp.context("AMQP address")?, "guest", "guest");
    let drained = amqp_pika("drain", &url, &["--queue", "durable", "--timeout", "240"])?;
    let bodies = strings(&drained["bodies"]);
    let distinct: BTreeSet<String> = bodies.iter().cloned().collect();
    ensure!(distinct.len() == bodies.len(), "{} messages came twice", bodies.len() - distinct.len());
    let lost: Vec<&String> = confirmed.difference(&distinct).collect();
    ensure!(
        lost.is_empty(),
        "{} of {} confirmed messages lost, e.g. {:?}",
        lost.len(),
        confirmed.len(),
        &lost[..lost.len().min(5)]
    );
    Ok(())
}

const TOKENS: &str = "admin:admin-token-123 admin:*\napp:app-token-456 admin:orders* write:jobs\n";

#[tokio::test(flavor = "multi_thread")]
async fn plain_auth_takes_a_token_and_grants_are_refused_with_access_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("tokens");
    std::fs::write(&file, TOKENS)?;
    let server =
        Server::start_with(&["--amqp-listen", "127.0.0.1:0", "--auth-token-file", file.to_str().context("utf-8")?])?;
    let addr = server.amqp.context("AMQP address")?;
    let admin = amqp_url(addr, "admin", "admin-token-123");
    amqp_pika("send", &admin, &["--exchange", "", "--routing-key", "none", "--body", "x"])?;
    let c = weir_tests::weir_client::client::Client::connect_with_token(
        server.addr.to_string(),
        Some("admin-token-123".into()),
    )
    .await?;
    c.create_queue("orders", Default::default()).await?;
    c.create_queue("secret", Default::default()).await?;
    let app = amqp_url(addr, "app", "app-token-456");
    let ok = amqp_pika("auth", &app, &["--queue", "orders"])?;
    ensure!(ok["connected"] == true && ok["code"] == 0, "granted: {ok}");
    let refused = amqp_pika("auth", &app, &["--queue", "secret"])?;
    ensure!(refused["code"] == 403, "ungranted: ACCESS_REFUSED: {refused}");
    ensure!(refused["text"].as_str().is_some_and(|t| t.starts_with("ACCESS_REFUSED")), "{refused}");
    let wrong = amqp_pika("auth", &amqp_url(addr, "app", "wrong-token-000"), &["--queue", "orders"])?;
    ensure!(wrong["connected"] == false, "a wrong password is refused: {wrong}");
    ensure!(wrong["error"].as_str().is_some_and(|e| e.contains("403") && e.contains("ACCESS_REFUSED")), "{wrong}");
    let stranger = amqp_pika("auth", &amqp_url(addr, "admin", "app-token-456"), &["--queue", "orders"])?;
    ensure!(stranger["connected"] == false, "a token under another token's name is refused: {stranger}");
    Ok(())
}

/// Open a raw connection and send the protocol header; the server's connection.start is read.
fn raw(addr: SocketAddr) -> Result<TcpStream> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(b"AMQP\x00\x00\x09\x01")?;
    read_frame(&mut s)?.context("connection.start")?;
    Ok(s)
}

/// One frame: `(type, channel, payload)`, or `None` at the end of the stream.
fn read_frame(s: &mut TcpStream) -> Result<Option<(u8, u16, Vec<u8>)>> {
    let mut head = [0u8; 7];
    if s.read_exact(&mut head).is_err() {
        return Ok(None);
    }
    let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
    let mut payload = vec![0u8; size + 1];
    s.read_exact(&mut payload)?;
    payload.pop();
    Ok(Some((head[0], u16::from_be_bytes([head[1], head[2]]), payload)))
}

/// The reply code of the connection.close the server answers with.
fn close_code(s: &mut TcpStream) -> Result<u16> {
    while let Some((kind, _, p)) = read_frame(s)? {
        if kind == 1 && p.len() >= 6 && p[..4] == [0, 10, 0, 50] {
            return Ok(u16::from_be_bytes([p[4], p[5]]));
        }
    }
    anyhow::bail!("the server closed the socket without a connection.close")
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_oversized_and_out_of_order_frames_close_only_their_connection() -> Result<()> {
    let (server, url) = amqp_server(&[])?;
    let addr = server.amqp.context("AMQP address")?;
    // Not AMQP 0-9-1: the server answers with the protocol header it speaks, and closes.
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(b"GET / HTTP/1.1\r\n\r\n")?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)?;
    ensure!(answer == b"AMQP\x00\x00\x09\x01", "{answer:?}");
    // An unknown frame type: FRAME_ERROR.
    let mut s = raw(addr)?;
    s.write_all(&[9, 0, 0, 0, 0, 0, 0, 0xCE])?;
    ensure!(close_code(&mut s)? == 501, "unknown frame type");
    // A frame larger than frame_max, announced by its size: refused before it arrives.
    let mut s = raw(addr)?;
    s.write_all(&[3, 0, 1, 0x7f, 0xff, 0xff, 0xf0])?;
    ensure!(close_code(&mut s)? == 501, "oversized frame");
    // A method that does not parse: SYNTAX_ERROR.
    let mut s = raw(addr)?;
    s.write_all(&[1, 0, 0, 0, 0, 0, 4, 0, 10, 0, 11, 0xCE])?;
    ensure!(close_code(&mut s)? == 502, "truncated start-ok");
    // Out of order: a content body where connection.start-ok belongs.
    let mut s = raw(addr)?;
    s.write_all(&[3, 0, 1, 0, 0, 0, 2, b'h', b'i', 0xCE])?;
    ensure!(close_code(&mut s)? == 503, "a body frame during the handshake");
    // A frame without its end octet.
    let mut s = raw(addr)?;
    s.write_all(&[8, 0, 0, 0, 0, 0, 0, 0x00])?;
    ensure!(close_code(&mut s)? == 501, "a missing frame-end octet");
    // Everyone else is served meanwhile.
    let out =
        amqp_pika("work-queue", &url, &["--queue", "after", "--count", "20", "--prefetch", "5", "--timeout", "30"])?;
    ensure!(strings(&out["a"]).len() + strings(&out["b"]).len() == 20, "{out}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_crosses_amqp_the_cli_http_and_a_pipeline_and_back() -> Result<()> {
    let (server, url) = amqp_server(&["--http-listen", "127.0.0.1:0"])?;
    let c = server.client().await?;
    c.deploy_plugin("json-filter", plugin_bytes("json-filter")).await?;
    c.create_topic("orders", topic(1)).await?;
    c.create_topic("paid", topic(1)).await?;
    c.create_queue("audit", Default::default()).await?;
    c.create_exchange("shop", ExchangeType::Direct, None).await?;
    for destination in [Destination::Topic("orders".into()), Destination::Queue("audit".into())] {
        let binding = Binding { destination, key: Some("order.created".into()), matches: vec![], match_any: false };
        c.bind("shop", binding).await?;
    }
    let spec =
        pipeline("billing", "orders", "paid", vec![step("json-filter", &[("field", "status"), ("equals", "paid")])]);
    c.create_pipeline(spec).await?;
    // AMQP in: an exchange routes to a topic and a queue in one commit.
    let body = r#"{"id":7,"status":"paid"}"#;
    amqp_pika(
        "send",
        &url,
        &[
            "--exchange",
            "shop",
            "--routing-key",
            "order.created",
            "--body",
            body,
            "--correlation-id",
            "c-7",
            "--header",
            "tenant=acme",
        ],
    )?;
    // The pipeline reads the topic; its sink has the record, with AMQP's properties as headers.
    let got = consume_n(&c, "paid", 1, LONG).await?;
    let (_, _, record) = &got[0];
    ensure!(text(record) == body, "{record:?}");
    let header = |k: &str| record.headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    ensure!(
        header("weir-correlation-id").as_deref() == Some("c-7") && header("tenant").as_deref() == Some("acme"),
        "{record:?}"
    );
    // The CLI reads the topic.
    let cli = Command::new(weir_tests::weir_bin())
        .args(["consume", "orders", "--max", "1"])
        .env("WEIR_SERVER", server.addr.to_string())
        .output()?;
    ensure!(String::from_utf8_lossy(&cli.stdout).contains(r#""status":"paid""#), "CLI: {cli:?}");
    // HTTP receives from the queue.
    let http = server.http.context("HTTP address")?;
    let received: Value = reqwest::Client::new()
        .post(format!("http://{http}/api/v1/queues/audit/receive"))
        .json(&serde_json::json!({"max": 1, "wait_ms": 5000}))
        .send()
        .await?
        .json()
        .await?;
    ensure!(received.to_string().contains("c-7"), "HTTP: {received}");
    // And back: weir's own client sends to a queue, pika reads it with AMQP's properties.
    let back = NewQueueMessage {
        body: b"shipped".to_vec(),
        headers: vec![("weir-correlation-id".into(), "c-7".into()), ("carrier".into(), "dhl".into())],
        priority: 4,
        ..Default::default()
    };
    c.create_queue("notices", Default::default()).await?;
    let later = NewQueueMessage { body: b"later".to_vec(), ..Default::default() };
    c.queue_send("notices", vec![back, later]).await?;
    let got = amqp_pika("get", &url, &["--queue", "notices"])?;
    ensure!(got["message_count"] == 1, "one message is left behind it: {got}");
    ensure!(got["body"] == "shipped" && got["properties"]["correlation_id"] == "c-7", "{got}");
    ensure!(got["properties"]["priority"] == 4 && got["properties"]["headers"]["carrier"] == "dhl", "{got}");
    ensure!(got["routing_key"] == "notices" && got["exchange"] == "", "{got}");
    Ok(())
}
