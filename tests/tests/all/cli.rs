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
    Ok(())
}
