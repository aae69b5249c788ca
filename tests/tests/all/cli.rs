//! The CLI as a user's shell meets it: every command that prints ends quietly when the
//! reader of its output goes away (`weir … | head`), as Unix tools do.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use weir_tests::weir_client::wire::WireRecord;
use weir_tests::{Server, pipeline, plugin_bytes, step, topic};

/// Run `weir ARGS` with its stdout a pipe whose reading end is already closed: its first
/// write fails. It must end by SIGPIPE or with success, never with a panic or an error.
fn with_closed_stdout(server: &Server, http: &str, args: &[&str]) -> Result<()> {
    let mut child = Command::new(weir_tests::weir_bin())
        .args(args)
        .env("WEIR_SERVER", server.addr.to_string())
        .env("WEIR_REGISTRY", http)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    drop(child.stdout.take());
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let quiet = out.status.success() || out.status.signal() == Some(libc_sigpipe());
    assert!(quiet && stderr.trim().is_empty(), "weir {args:?} ended with {:?}: {stderr}", out.status);
    Ok(())
}

fn libc_sigpipe() -> i32 {
    13
}

#[tokio::test(flavor = "multi_thread")]
async fn every_printing_command_ends_quietly_when_its_pipe_closes() -> Result<()> {
    let server = Server::start_with(&["--http-listen", "127.0.0.1:0"])?;
    let http = format!("http://{}", server.http.context("http")?);
    let c = server.client().await?;
    c.create_topic("orders", topic(2)).await?;
    c.create_topic("out", topic(1)).await?;
    c.produce("orders", (0..50).map(|i| WireRecord::value(format!(r#"{{"id":{i}}}"#))).collect()).await?;
    c.deploy_plugin("t", plugin_bytes("json-transform")).await?;
    c.create_pipeline(pipeline("p", "orders", "out", vec![step("t", &[("set.seen", "true")])])).await?;
    c.create_queue("jobs", Default::default()).await?;
    let schema = r#"{"schema": "{\"type\": \"string\"}"}"#;
    reqwest::Client::new()
        .post(format!("{http}/subjects/s-value/versions"))
        .header("content-type", "application/json")
        .body(schema)
        .send()
        .await?
        .error_for_status()?;
    let commands: &[&[&str]] = &[
        &["topic", "list"],
        &["topic", "describe", "orders"],
        &["topic", "describe", "orders", "--json"],
        &["consume", "orders"],
        &["group", "list"],
        &["plugin", "list"],
        &["plugin", "versions", "t"],
        &["pipeline", "list"],
        &["pipeline", "status", "p"],
        &["queue", "list"],
        &["queue", "describe", "jobs"],
        &["exchange", "list"],
        &["schema", "list"],
        &["schema", "get", "s-value"],
        &["schema", "config"],
        &["--help"],
    ];
    for args in commands {
        with_closed_stdout(&server, &http, args)?;
    }
    // The README says `weir plugin versions NAME` shows which ABI each version speaks.
    let out = Command::new(weir_tests::weir_bin())
        .args(["plugin", "versions", "t"])
        .env("WEIR_SERVER", server.addr.to_string())
        .output()?;
    let text = String::from_utf8(out.stdout)?;
    let header = text.lines().next().context("a header")?;
    assert!(header.ends_with("ABI") && text.contains("@0.2.0"), "{text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_produce_stopped_by_a_bad_line_says_which_line_and_exactly_what_was_stored() -> Result<()> {
    let server = Server::start()?;
    let c = server.client().await?;
    c.create_topic("orders", topic(1)).await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("orders.jsonl");
    let lines: Vec<String> =
        (1..=2500).map(|n| if n == 2014 { "this is not json".into() } else { format!(r#"{{"id":{n}}}"#) }).collect();
    std::fs::write(&file, lines.join("\n"))?;
    let out = Command::new(weir_tests::weir_bin())
        .args(["produce", "orders", "--key-field", "id", "--file"])
        .arg(&file)
        .env("WEIR_SERVER", server.addr.to_string())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("line 2014:") && stderr.contains("this is not json"), "{stderr}");
    assert!(
        stderr.contains("lines 1 to 2013 were sent and stored 2013 message(s), the last in partition 0 at offset 2012"),
        "{stderr}"
    );
    assert_eq!(c.describe_topic("orders").await?.partitions[0], (0, 2013), "exactly what it said");
    Ok(())
}
