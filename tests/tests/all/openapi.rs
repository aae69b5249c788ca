//! The HTTP door against its own `/openapi.json`, by schemathesis (pinned in
//! `examples/setup.sh`): every check, fixed seeds, a bounded number of examples per operation,
//! on a server holding one of every kind of resource. The exceptions, each with its reason,
//! are in `tests/schemathesis/schemathesis.toml`; anything else schemathesis finds fails here.

use std::process::Command;

use anyhow::{Context, Result, ensure};
use weir_tests::weir_client::client::{Client, ConnectOptions};
use weir_tests::weir_client::tls::ClientTls;
use weir_tests::weir_client::wire::{Binding, Destination, ExchangeType, QueueConfig, WireRecord};
use weir_tests::weir_host::build::tools_dir;
use weir_tests::{Server, consume_n, pipeline, plugin_bytes, step, topic, workspace_root};

/// Tokens: `root` may do everything, `reader` only read.
const TOKENS: &str = "root:root-secret-1\nreader:reader-secret-1 read:*\n";

/// A server with the HTTP door (requests capped at 3 s, so long polls end soon), open or with a
/// token file, and a topic, a queue with its dead-letter queue, an exchange bound to the queue,
/// a plugin and a pipeline; with a root client and the token file (kept while it is used).
async fn furnished(
    extra: &[&str],
    tls: Option<ClientTls>,
    tokens: bool,
) -> Result<(Server, Client, tempfile::NamedTempFile)> {
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), TOKENS)?;
    let path = file.path().to_string_lossy().to_string();
    let mut flags = vec!["--http-listen", "127.0.0.1:0", "--http-request-timeout", "3s"];
    if tokens {
        flags.extend(["--auth-token-file", path.as_str()]);
    }
    flags.extend_from_slice(extra);
    let server = Server::start_with(&flags)?;
    let token = tokens.then(|| "root-secret-1".to_string());
    let c = Client::connect_with(server.addr.to_string(), ConnectOptions { token, tls }).await?;
    c.create_topic("orders", topic(2)).await?;
    c.create_topic("out", topic(1)).await?;
    c.produce("orders", vec![WireRecord::keyed("k", r#"{"id":1,"ok":true}"#)]).await?;
    let jobs = QueueConfig { dead_letter: Some("jobs-dlq".into()), max_deliveries: Some(3), ..QueueConfig::default() };
    c.create_queue("jobs", jobs).await?;
    c.create_exchange("events", ExchangeType::Topic, None).await?;
    let binding = Binding {
        destination: Destination::Queue("jobs".into()),
        key: Some("order.*".into()),
        matches: vec![],
        match_any: false,
    };
    c.bind("events", binding).await?;
    c.deploy_plugin("keep", plugin_bytes("json-filter")).await?;
    c.create_pipeline(pipeline("p", "orders", "out", vec![step("keep", &[("field", "ok"), ("equals", "true")])]))
        .await?;
    // Settled: what the pipeline does is done before anything is compared.
    consume_n(&c, "out", 1, std::time::Duration::from_secs(120)).await?;
    Ok((server, c, file))
}

/// Run schemathesis against `url` (the document's) with `token`; what it printed, or an error
/// holding the end of it when it found anything.
fn schemathesis(url: &str, token: Option<&str>, seed: u32, examples: u32, extra: &[&str]) -> Result<String> {
    let config = workspace_root().join("tests/schemathesis/schemathesis.toml");
    // It keeps a cache of what it found in its working directory: not in the checkout.
    let scratch = tempfile::tempdir()?;
    let out = Command::new(tools_dir().join("schemathesis-venv/bin/schemathesis"))
        .current_dir(scratch.path())
        .arg("--config-file")
        .arg(&config)
        .args(["run", url, "--no-color", "--request-timeout", "20", "--generation-database", "none"])
        .args(["--seed", &seed.to_string(), "--max-examples", &examples.to_string()])
        .args(token.map(|t| ["-H".to_string(), format!("Authorization: Bearer {t}")]).into_iter().flatten())
        .args(extra)
        .output()
        .context("running schemathesis (examples/setup.sh installs it)")?;
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let tail: String =
        printed.lines().rev().take(120).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    ensure!(out.status.success(), "schemathesis found the server and its document apart:\n{tail}");
    Ok(printed)
}

/// How many test cases schemathesis generated (its summary's `N generated`).
fn generated(printed: &str) -> u64 {
    printed
        .lines()
        .find_map(|l| l.trim().split_once(" generated").and_then(|(n, _)| n.trim().parse().ok()))
        .unwrap_or(0)
}

/// Every operation, every check, every phase, on an open server (no tokens): no failure.
#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_the_http_door_as_its_openapi_says() -> Result<()> {
    let (server, _c, _tokens) = furnished(&[], None, false).await?;
    let url = format!("http://{}/openapi.json", server.http.context("the HTTP address")?);
    let printed = schemathesis(&url, None, 1, 10, &[])?;
    assert!(generated(&printed) >= 1000, "too few cases ran:\n{printed}");
    Ok(())
}

/// With a read-only token, the same requests change nothing: every write is refused (403, as
/// documented) and nothing answers 5xx.
#[tokio::test(flavor = "multi_thread")]
async fn with_a_read_only_token_schemathesis_changes_nothing() -> Result<()> {
    let (server, c, _tokens) = furnished(&[], None, true).await?;
    let url = format!("http://{}/openapi.json", server.http.context("the HTTP address")?);
    let before = inventory(&c).await?;
    let printed = schemathesis(&url, Some("reader-secret-1"), 3, 5, &["--phases", "coverage,fuzzing"])?;
    assert!(generated(&printed) >= 500, "too few cases ran:\n{printed}");
    assert_eq!(inventory(&c).await?, before, "a read-only token changed the server");
    Ok(())
}

/// Over TLS (the document served over https, verified against the server's certificate).
#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_passes_over_tls() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (cert, key) = crate::reliability::self_signed(dir.path())?;
    let (cert_s, key_s) = (cert.to_string_lossy().to_string(), key.to_string_lossy().to_string());
    let (server, _c, _tokens) =
        furnished(&["--tls-cert", &cert_s, "--tls-key", &key_s], Some(ClientTls::new(&cert, "localhost")?), true)
            .await?;
    let port = server.http.context("the HTTP address")?.port();
    let url = format!("https://localhost:{port}/openapi.json");
    let printed = schemathesis(&url, Some("root-secret-1"), 5, 3, &["--phases", "fuzzing", "--tls-verify", &cert_s])?;
    assert!(generated(&printed) >= 50, "too few cases ran:\n{printed}");
    Ok(())
}

/// What a write could change: topics with their offsets, queues, exchanges with their
/// bindings, plugins' live versions, pipelines.
async fn inventory(c: &Client) -> Result<Vec<String>> {
    let mut all = Vec::new();
    for t in c.list_topics().await? {
        all.push(format!("topic {} {:?}", t.name, t.partitions));
    }
    // A receive is a read (it takes a message in flight), so a queue's counts may move.
    for q in c.list_queues().await? {
        all.push(format!("queue {} {:?}", q.name, q.config));
    }
    for e in c.list_exchanges().await? {
        all.push(format!("exchange {} {:?}", e.name, e.bindings));
    }
    for p in c.list_plugins().await? {
        all.push(format!("plugin {}@{}", p.live.name, p.live.version));
    }
    for p in c.list_pipelines().await? {
        all.push(format!("pipeline {} {:?}", p.spec.name, p.spec.steps));
    }
    Ok(all)
}
