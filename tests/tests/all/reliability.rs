//! Reliability and security: the crash loop, fault injection (a full disk, a damaged WAL, an
//! unusable data directory), hostile clients (slow frames, connection floods, clients that
//! never read), authentication, ACLs and TLS, and plugins trying to escape their sandbox.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::Result;
use weir_tests::crash_loop::{self, Config};
use weir_tests::weir_host::client::{Client, ConnectOptions};
use weir_tests::weir_host::tls::ClientTls;
use weir_tests::weir_host::wire::{ErrorCode, FetchPosition, WireRecord};
use weir_tests::{
    ESCAPES_REFUSED, Launch, Server, escape_report, eventually, plugin_bytes, serve_command, text, topic,
};

const LONG: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn five_crash_loop_cycles_lose_and_duplicate_nothing() -> Result<()> {
    let summary = crash_loop::run(&Config { cycles: 5, seed: 42, ..Config::default() }).await?;
    println!("{summary}");
    assert!(summary.ok(), "{summary}: {:?}", summary.violations);
    assert_eq!(summary.cycles, 5);
    assert!(summary.acked > 10_000, "the load ran: {summary}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_crash_loop_holds_with_os_durability_too() -> Result<()> {
    // `os` skips fsync: it survives a crash of weir (this test) but not power loss.
    let summary = crash_loop::run(&Config { cycles: 2, seed: 7, durability: "os".into(), ..Config::default() }).await?;
    assert!(summary.ok(), "{summary}: {:?}", summary.violations);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_writes_clearly_and_loses_nothing() -> Result<()> {
    let mut server = Server::launch(Launch { file_size_limit: Some(4 << 20), ..Launch::default() })?;
    let c = server.client().await?;
    c.create_topic("t", topic(1)).await?;
    let batch =
        |i: u64| (0..1000).map(|j| WireRecord::value(format!("{i}-{j}-{}", "x".repeat(200)))).collect::<Vec<_>>();
    let mut acked = 0u64;
    let err = loop {
        match c.produce("t", batch(acked)).await {
            Ok(_) => acked += 1,
            Err(e) => break e,
        }
        assert!(acked < 1000, "the limit never hit");
    };
    let msg = err.to_string();
    assert!(msg.contains("refuses writes") && msg.contains("File too large"), "{msg}");
    assert!(msg.contains("restart"), "the error says what to do: {msg}");
    // Later writes get the same clear refusal; reads keep working.
    let again = c.produce("t", batch(9999)).await.expect_err("still refused");
    assert_eq!(again.code(), Some(ErrorCode::Storage));
    assert_eq!(c.read_all("t").await?.len() as u64, acked * 1000);
    // Space returns (no limit) and weir restarts: everything acknowledged is there.
    server.launch.file_size_limit = None;
    server.restart()?;
    let c = server.client().await?;
    assert_eq!(c.read_all("t").await?.len() as u64, acked * 1000);
    c.produce("t", batch(7)).await?;
    assert_eq!(c.read_all("t").await?.len() as u64, (acked + 1) * 1000);
    Ok(())
}

/// Write 20 messages, kill -9, and return the server (stopped) and its newest WAL file.
async fn crashed_with_a_wal() -> Result<(Server, std::path::PathBuf)> {
    let mut server = Server::start()?;
    let c = server.client().await?;
    c.create_topic("t", topic(1)).await?;
    // 8 KB each: the log spans several 32 KB blocks, so damage can sit before its tail.
    for i in 0..20 {
        c.produce("t", vec![WireRecord::value(format!("m{i}:{}", "x".repeat(8000)))]).await?;
    }
    server.kill9();
    let db = server.data_dir().join("db");
    let mut logs: Vec<_> = std::fs::read_dir(&db)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    let wal = logs.last().expect("a WAL file").clone();
    assert!(std::fs::metadata(&wal)?.len() > 1000, "the WAL holds the writes");
    Ok((server, wal))
}

/// The kept messages are `m0`, `m1`, … in order: a prefix of what was written.
async fn assert_prefix_kept(server: &Server) -> Result<usize> {
    let kept = server.client().await?.read_all("t").await?;
    assert!(
        kept.iter().enumerate().all(|(i, (_, _, r))| text(r).starts_with(&format!("m{i}:"))),
        "what precedes the damage is intact"
    );
    Ok(kept.len())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_wal_tail_is_detected_and_dropped_with_a_warning() -> Result<()> {
    let (mut server, wal) = crashed_with_a_wal().await?;
    let len = std::fs::metadata(&wal)?.len();
    std::fs::OpenOptions::new().write(true).open(&wal)?.set_len(len - 5)?;
    server.restart()?;
    assert_eq!(assert_prefix_kept(&server).await?, 19, "only the cut-short last write is gone");
    assert!(server.log().contains("write-ahead log had a damaged tail"), "the damage is reported");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_wal_is_refused_at_start_with_the_way_out() -> Result<()> {
    let (mut server, wal) = crashed_with_a_wal().await?;
    // Damage the middle of the log, as a failing disk would: later records are intact, so
    // dropping from here on would lose acknowledged writes silently.
    let mut bytes = std::fs::read(&wal)?;
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 16] {
        *b ^= 0x5a;
    }
    std::fs::write(&wal, &bytes)?;
    let mut child = serve_command(server.root(), &Launch::default())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let status = eventually("weir serve to refuse to start", LONG, || {
        let exited = child.try_wait();
        async move { Ok(exited?) }
    })
    .await;
    if status.is_err() {
        let _ = child.kill();
    }
    assert!(!status?.success(), "a damaged WAL must stop the start");
    let mut stderr = String::new();
    child.stderr.take().expect("piped").read_to_string(&mut stderr)?;
    assert!(
        stderr.contains("write-ahead log") && stderr.contains("damaged") && stderr.contains("--recover-wal"),
        "{stderr}"
    );

    server.launch.flags = vec!["--recover-wal".into()];
    server.restart()?;
    let kept = assert_prefix_kept(&server).await?;
    assert!(kept < 20, "the damaged part and what follows are dropped");
    server.client().await?.produce("t", vec![WireRecord::value("after")]).await?;
    Ok(())
}

#[test]
fn an_unusable_data_dir_is_a_clear_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x")?;
    let out = std::process::Command::new(weir_tests::weir_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&file)
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot create data dir") && stderr.contains("not-a-dir"), "{stderr}");
    Ok(())
}

/// Everything the server sends on a raw connection until it closes it, as text.
fn reply_until_closed(mut stream: TcpStream) -> Result<String> {
    stream.set_read_timeout(Some(LONG))?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_client_trickling_a_frame_is_cut_off_and_others_are_served() -> Result<()> {
    let server = Server::start_with(&["--frame-timeout", "300ms"])?;
    let good = server.client().await?;
    good.create_topic("t", topic(1)).await?;
    let mut slow = TcpStream::connect(server.addr)?;
    slow.write_all(&[0, 0, 1])?; // three bytes of a length prefix, then nothing
    let reply = reply_until_closed(slow)?;
    assert!(reply.contains("still incomplete"), "{reply:?}");
    // An idle connection (no partial frame) is not cut off.
    tokio::time::sleep(Duration::from_millis(600)).await;
    good.produce("t", vec![WireRecord::value("fine")]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_flood_is_refused_beyond_the_limit() -> Result<()> {
    let server = Server::start_with(&["--max-connections", "3"])?;
    let held: Vec<Client> = vec![server.client().await?, server.client().await?, server.client().await?];
    let reply = reply_until_closed(TcpStream::connect(server.addr)?)?;
    assert!(reply.contains("limit of 3 connections"), "{reply:?}");
    // A flood far past the limit: refusals are bounded too, and the held clients are served.
    let flood = (0..300).map(|_| TcpStream::connect(server.addr)).collect::<std::io::Result<Vec<_>>>()?;
    held[0].create_topic("t", topic(1)).await?;
    held[2].produce("t", vec![WireRecord::value("still served")]).await?;
    drop(flood);
    drop(held);
    // Slots come back when clients leave.
    let again = eventually("a slot to free up", LONG, || async { Ok(server.client().await.ok()) }).await?;
    assert_eq!(again.describe_topic("t").await?.partitions[0], (0, 1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_reads_is_disconnected_without_stalling_others() -> Result<()> {
    let server = Server::start_with(&["--write-timeout", "500ms"])?;
    let good = server.client().await?;
    good.create_topic("big", topic(1)).await?;
    for _ in 0..8 {
        good.produce("big", (0..1000).map(|_| WireRecord::value(vec![b'x'; 1000])).collect()).await?;
    }
    // A raw client asks for 8 MB again and again and never reads a byte.
    let mut raw = TcpStream::connect(server.addr)?;
    let hello = weir_tests::weir_host::wire::encode(&weir_tests::weir_host::wire::RequestFrame {
        id: 1,
        request: weir_tests::weir_host::wire::Request::Hello {
            version: weir_tests::weir_host::wire::PROTOCOL_VERSION,
            client: "hog".into(),
            token: None,
        },
    })?;
    let fetch = |id| {
        weir_tests::weir_host::wire::encode(&weir_tests::weir_host::wire::RequestFrame {
            id,
            request: weir_tests::weir_host::wire::Request::Fetch {
                topic: "big".into(),
                partitions: vec![FetchPosition { partition: 0, offset: 0 }],
                max_records: 100_000,
                max_bytes: 8 << 20,
                max_wait_ms: 0,
            },
        })
    };
    for frame in std::iter::once(hello).chain((2..40).map(|id| fetch(id).expect("encodes"))) {
        raw.write_all(&(frame.len() as u32).to_be_bytes())?;
        raw.write_all(&frame)?;
    }
    for _ in 0..20 {
        good.produce("big", vec![WireRecord::value("ok")]).await?;
    }
    eventually("the server to drop the client that does not read", LONG, || async {
        Ok(server.log().contains("client stopped reading responses").then_some(()))
    })
    .await?;
    good.produce("big", vec![WireRecord::value("after")]).await?;
    Ok(())
}

const TOKENS: &str = "# test tokens\nadmin:admin-token-123 admin:*\napp:app-token-456 write:orders* read:orders*\n";

async fn secured() -> Result<(Server, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("tokens");
    std::fs::write(&file, TOKENS)?;
    let server = Server::start_with(&["--auth-token-file", file.to_str().expect("utf-8")])?;
    Ok((server, dir))
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_token_the_server_refuses_and_with_one_it_serves() -> Result<()> {
    let (server, _dir) = secured().await?;
    let err = Client::connect(server.addr.to_string()).await.err().expect("refused");
    assert_eq!(err.code(), Some(ErrorCode::Unauthenticated), "{err}");
    assert!(err.to_string().contains("requires a token"), "{err}");
    let err = Client::connect_with_token(server.addr.to_string(), Some("wrong-token-000".into()))
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("not valid"), "{err}");
    let admin = Client::connect_with_token(server.addr.to_string(), Some("admin-token-123".into())).await?;
    admin.create_topic("orders", topic(1)).await?;
    admin.produce("orders", vec![WireRecord::value("by admin")]).await?;
    // The CLI takes the token from WEIR_TOKEN.
    let out = std::process::Command::new(weir_tests::weir_bin())
        .args(["topic", "list"])
        .env("WEIR_SERVER", server.addr.to_string())
        .env("WEIR_TOKEN", "admin-token-123")
        .output()?;
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("orders"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let denied = std::process::Command::new(weir_tests::weir_bin())
        .args(["topic", "list"])
        .env("WEIR_SERVER", server.addr.to_string())
        .output()?;
    assert!(!denied.status.success() && String::from_utf8_lossy(&denied.stderr).contains("requires a token"));
    Ok(())
}

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM files.
fn self_signed(dir: &std::path::Path) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_file, cert.pem())?;
    std::fs::write(&key_file, signing_key.serialize_pem())?;
    Ok((cert_file, key_file))
}

#[tokio::test(flavor = "multi_thread")]
async fn with_tls_clients_connect_encrypted_and_plaintext_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (cert, key) = self_signed(dir.path())?;
    let server =
        Server::start_with(&["--tls-cert", cert.to_str().expect("utf-8"), "--tls-key", key.to_str().expect("utf-8")])?;

    let tls = ClientTls::new(&cert, "localhost")?;
    let client = Client::connect_with(server.addr.to_string(), ConnectOptions { token: None, tls: Some(tls) }).await?;
    client.create_topic("secret", topic(1)).await?;
    client.produce("secret", vec![WireRecord::value("over tls")]).await?;
    assert_eq!(text(&client.read_all("secret").await?[0].2), "over tls");

    // A plaintext client is told what to do; the server keeps serving TLS clients.
    let err = Client::connect(server.addr.to_string()).await.err().expect("plaintext refused");
    assert!(err.to_string().contains("connect with --tls-ca"), "{err}");
    // A certificate for another name is rejected by the client.
    let wrong = ClientTls::new(&cert, "broker.example")?;
    let err = Client::connect_with(server.addr.to_string(), ConnectOptions { token: None, tls: Some(wrong) })
        .await
        .err()
        .expect("name mismatch refused");
    assert!(err.to_string().contains("TLS handshake") && err.to_string().contains("--tls-server-name"), "{err}");

    // The CLI: --tls-ca from the environment, the server name from --server's host.
    let cli = |ca: Option<&std::path::Path>| {
        let mut cmd = std::process::Command::new(weir_tests::weir_bin());
        cmd.args(["consume", "secret"]).env("WEIR_SERVER", server.addr.to_string());
        if let Some(ca) = ca {
            cmd.env("WEIR_TLS_CA", ca);
        }
        cmd.output()
    };
    let out = cli(Some(&cert))?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "over tls");
    let out = cli(None)?;
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--tls-ca"));
    // TLS to a plaintext server fails with a clear error, not a hang.
    let plain = Server::start()?;
    let tls = ClientTls::new(&cert, "localhost")?;
    let err = Client::connect_with(plain.addr.to_string(), ConnectOptions { token: None, tls: Some(tls) })
        .await
        .err()
        .expect("no TLS there");
    assert!(err.to_string().contains("is the server started with --tls-cert"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn acls_limit_each_token_to_its_grants() -> Result<()> {
    let (server, _dir) = secured().await?;
    let admin = Client::connect_with_token(server.addr.to_string(), Some("admin-token-123".into())).await?;
    admin.create_topic("orders-eu", topic(1)).await?;
    admin.create_topic("billing", topic(1)).await?;
    let app = Client::connect_with_token(server.addr.to_string(), Some("app-token-456".into())).await?;
    app.produce("orders-eu", vec![WireRecord::value("allowed")]).await?;
    assert_eq!(app.read_all("orders-eu").await?.len(), 1);
    let err = app.produce("billing", vec![WireRecord::value("no")]).await.expect_err("write outside the grant");
    assert_eq!(err.code(), Some(ErrorCode::Forbidden));
    assert!(err.to_string().contains("token `app` has no Write permission on `billing`"), "{err}");
    assert_eq!(app.read_all("billing").await.expect_err("read outside the grant").code(), Some(ErrorCode::Forbidden));
    assert_eq!(
        app.create_topic("orders-us", topic(1)).await.expect_err("admin only").code(),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        app.deploy_plugin("p", plugin_bytes("json-filter")).await.expect_err("admin only").code(),
        Some(ErrorCode::Forbidden)
    );
    // A refused request does not end the connection.
    app.produce("orders-eu", vec![WireRecord::value("again")]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn plugins_have_no_ambient_authority() -> Result<()> {
    let server =
        Server::launch(Launch { env: vec![("WEIR_TEST_SECRET".into(), "hunter2".into())], ..Launch::default() })?;
    let report = escape_report(&server.client().await?).await?;
    for denied in ESCAPES_REFUSED {
        assert!(report.contains(denied), "expected {denied} in {report}");
    }
    assert!(!report.contains("hunter2"));
    // Nothing was written anywhere the server can see.
    let stray = walk(server.root()).into_iter().filter(|p| p.ends_with("escape.txt")).count();
    assert_eq!(stray, 0);
    assert!(!std::path::Path::new("escape.txt").exists());
    Ok(())
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
