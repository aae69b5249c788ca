//! Reliability and security: the crash loop, fault injection (a full disk, a damaged WAL, an
//! unusable data directory), hostile clients (slow frames, connection floods, clients that
//! never read), authentication, ACLs and TLS, and plugins trying to escape their sandbox.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::Result;
use weir_tests::crash_loop::{self, Config};
use weir_tests::weir_client::client::{Client, ConnectOptions};
use weir_tests::weir_client::tls::ClientTls;
use weir_tests::weir_client::wire::{Binding, Destination, ExchangeType};
use weir_tests::weir_client::wire::{ErrorCode, FetchPosition, WireRecord};
use weir_tests::weir_client::wire::{ResetTarget, RunState};
use weir_tests::{
    ESCAPES_REFUSED, Launch, Server, consume_n, escape_report, eventually, pipeline, plugin_bytes, serve_command, step,
    text, topic,
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

/// Power loss, not just kill -9: the data directory is a `lossyfs` mount that drops what was
/// not fsynced (tearing each file's last unsynced appends at a sector boundary) at every kill.
/// In `sync` durability nothing acknowledged is lost or doubled, committed offsets never go
/// back, and the pipeline's outputs and state match its input.
#[tokio::test(flavor = "multi_thread")]
async fn ten_power_losses_in_sync_durability_lose_nothing_acknowledged() -> Result<()> {
    let config = Config { cycles: 10, seed: 11, power_loss: true, tear: true, ..Config::default() };
    let summary = crash_loop::run(&config).await?;
    println!("{summary}");
    assert!(summary.ok(), "{summary}: {:?}", summary.violations);
    assert_eq!((summary.power_losses, summary.lost_to_power), (10, 0), "{summary}");
    assert!(summary.bytes_dropped > 0, "the power losses dropped unsynced bytes: {summary}");
    Ok(())
}

/// In `os` durability a power loss takes what the OS had not written out — measured, not a
/// failure — and weir still starts without repair, with every other promise kept for what
/// survived.
#[tokio::test(flavor = "multi_thread")]
async fn power_losses_in_os_durability_recover_without_repair() -> Result<()> {
    let config =
        Config { cycles: 3, seed: 12, durability: "os".into(), power_loss: true, tear: true, ..Config::default() };
    let summary = crash_loop::run(&config).await?;
    println!("{summary}");
    assert!(summary.ok(), "{summary}: {:?}", summary.violations);
    assert_eq!(summary.power_losses, 3);
    Ok(())
}

/// A disk returning EIO. On a table file: the pipeline reading from it halts with the reason,
/// and the server stays up serving the topics the file does not hold. On the write-ahead
/// log: writes are refused saying why, and reads go on.
#[tokio::test(flavor = "multi_thread")]
async fn eio_halts_what_it_touches_and_the_server_serves_the_rest() -> Result<()> {
    let disk = weir_tests::PowerDisk::mount()?;
    let mut server = Server::launch(Launch { data_dir: Some(disk.data_dir()), ..Launch::default() })?;
    let c = server.client().await?;
    c.create_topic("in", topic(1)).await?;
    c.create_topic("out", topic(1)).await?;
    c.create_topic("kept", topic(1)).await?;
    let big = |i: usize| WireRecord::value(format!("m{i}:{}", "abcdefgh".repeat(1000 + i)));
    c.produce("in", (0..60).map(big).collect()).await?;
    // A restart replays the WAL into a table file: `in` is read from there from now on.
    server.restart()?;
    let c = server.client().await?;
    c.produce("kept", (0..10).map(|i| WireRecord::value(format!("k{i}"))).collect()).await?;
    disk.fs.eio_add(".sst")?;
    c.deploy_plugin("pass", plugin_bytes("pass")).await?;
    c.create_pipeline(pipeline("p", "in", "out", vec![step("pass", &[])])).await?;
    let halted = eventually("the pipeline to halt", LONG, || async {
        let s = c.pipeline_status("p").await?;
        Ok((s.state == RunState::Halted).then_some(s))
    })
    .await?;
    let reason = halted.last_error.unwrap_or_default();
    assert!(reason.contains("Input/output error") && reason.contains("`in`"), "the halt says why: {reason}");
    let kept: Vec<String> = c.read_all("kept").await?.iter().map(|(_, _, r)| text(r)).collect();
    assert_eq!(kept, (0..10).map(|i| format!("k{i}")).collect::<Vec<_>>(), "other topics are served");
    c.produce("kept", vec![WireRecord::value("k10")]).await?;

    disk.fs.eio_clear()?;
    disk.fs.eio_add(".log")?;
    let err = c.produce("kept", vec![WireRecord::value("x")]).await.expect_err("the WAL write fails").to_string();
    assert!(err.contains("Input/output error") && err.contains("refuses writes"), "{err}");
    assert_eq!(c.read_all("kept").await?.len(), 11, "reads go on");
    disk.fs.eio_clear()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_writes_clearly_and_loses_nothing() -> Result<()> {
    let mut server = Server::launch(Launch { file_size_limit: Some(4 << 20), ..Launch::default() })?;
    let c = server.client().await?;
    c.create_topic("t", topic(1)).await?;
    let (acked, err) = fill(&c).await?;
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

/// 1,000 records of about 200 bytes, numbered by batch `i`.
fn batch(i: u64) -> Vec<WireRecord> {
    (0..1000).map(|j| WireRecord::value(format!("{i}-{j}-{}", "x".repeat(200)))).collect()
}

/// Produce batches to `t` until one is refused: how many were acknowledged, and the refusal.
async fn fill(c: &Client) -> Result<(u64, weir_tests::weir_client::client::ClientError)> {
    for acked in 0..1000 {
        if let Err(e) = c.produce("t", batch(acked)).await {
            return Ok((acked, e));
        }
    }
    anyhow::bail!("1,000 batches stored and nothing refused")
}

/// A tmpfs of `mib` MiB mounted for a test, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mib: u32) -> Result<SmallDisk> {
        let dir = tempfile::tempdir()?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "cannot mount a {mib} MiB tmpfs for the full-disk test (it needs root, as CI has): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(SmallDisk { dir })
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Below the free-space floor, produces (native and HTTP) and queue sends are refused with
/// a typed "disk full" error naming the directory; reads go on, a pipeline waits instead of
/// halting, /metrics and /api/v1/health show it, and when space returns writes resume by
/// themselves, without a restart and without losing or doubling anything.
#[tokio::test(flavor = "multi_thread")]
async fn below_the_free_space_floor_writes_wait_and_resume_by_themselves() -> Result<()> {
    let disk = SmallDisk::mount(64)?;
    let ballast = disk.path().join("ballast");
    std::fs::write(&ballast, vec![7u8; 20 << 20])?;
    let flags = ["--min-free-space", "16MiB", "--http-listen", "127.0.0.1:0"].map(String::from).to_vec();
    let server = Server::launch(Launch { flags, data_dir: Some(disk.path().join("data")), ..Launch::default() })?;
    let c = server.client().await?;
    let base = format!("http://{}", server.http.expect("http"));
    c.create_topic("t", topic(1)).await?;
    c.create_topic("copy", topic(1)).await?;
    c.create_queue("q", Default::default()).await?;
    c.deploy_plugin("pass", plugin_bytes("pass")).await?;
    c.create_pipeline(pipeline("p", "t", "copy", vec![step("pass", &[])])).await?;
    let (mut acked, err) = fill(&c).await?;
    assert_eq!(err.code(), Some(ErrorCode::DiskFull), "{err}");
    let msg = err.to_string();
    let dir = disk.path().join("data").display().to_string();
    assert!(msg.starts_with("disk full:") && msg.contains(&dir) && msg.contains("resume by themselves"), "{msg}");
    // Every door in its own terms; a queue send too. Reads go on.
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/api/v1/topics/t/records"))
        .json(&serde_json::json!({"records": [{"value": "x"}]}))
        .send()
        .await?;
    assert_eq!(r.status(), reqwest::StatusCode::INSUFFICIENT_STORAGE);
    let sent = c.queue_send("q", vec![Default::default()]).await.expect_err("a send is refused too");
    assert_eq!(sent.code(), Some(ErrorCode::DiskFull));
    assert_eq!(c.read_all("t").await?.len() as u64, acked * 1000);
    let health: serde_json::Value = http.get(format!("{base}/api/v1/health")).send().await?.json().await?;
    assert_eq!(health["disk_full"], true, "{health}");
    let metrics = http.get(format!("{base}/metrics")).send().await?.text().await?;
    assert!(metrics.lines().any(|l| l == "weir_store_disk_full 1"), "/metrics shows it");
    let status = c.pipeline_status("p").await?;
    assert_eq!(status.state, RunState::Running, "the pipeline waits, it does not halt: {status:?}");

    // Space returns: writes resume by themselves, the pipeline catches up, nothing is lost.
    std::fs::remove_file(&ballast)?;
    eventually("writes to resume", LONG, || async { Ok(c.produce("t", batch(acked)).await.ok()) }).await?;
    acked += 1;
    assert_eq!(c.read_all("t").await?.len() as u64, acked * 1000);
    let copied = consume_n(&c, "copy", acked as usize * 1000, LONG).await?;
    assert_eq!(copied.len() as u64, acked * 1000, "each record copied once");
    c.queue_send("q", vec![Default::default()]).await?;
    let metrics = http.get(format!("{base}/metrics")).send().await?.text().await?;
    assert!(metrics.lines().any(|l| l == "weir_store_disk_full 0"), "/metrics shows space back");
    Ok(())
}

/// A compiled plugin in the cache with a flipped bit is never run: the entry's checksum
/// fails, it is deleted and compiled again from the stored component, and the pipeline
/// carries on exactly as before.
#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_compiled_plugin_is_compiled_again_never_run() -> Result<()> {
    let cache = tempfile::tempdir()?;
    let env = vec![("WEIR_COMPILE_CACHE".to_string(), cache.path().display().to_string())];
    let mut server = Server::launch(Launch { env, ..Launch::default() })?;
    let c = server.client().await?;
    c.create_topic("in", topic(1)).await?;
    c.create_topic("out", topic(1)).await?;
    c.deploy_plugin("keep", plugin_bytes("json-filter")).await?;
    c.create_pipeline(pipeline("p", "in", "out", vec![step("keep", &[("field", "id"), ("op", "exists")])])).await?;
    let msgs = |from: u64| (from..from + 10).map(|i| WireRecord::value(format!("{{\"id\":{i}}}"))).collect::<Vec<_>>();
    c.produce("in", msgs(0)).await?;
    consume_n(&c, "out", 10, LONG).await?;
    server.kill9();
    let entries: Vec<_> = std::fs::read_dir(cache.path())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wcc"))
        .collect();
    assert!(!entries.is_empty(), "the cache holds the compiled plugin");
    for path in &entries {
        let mut bytes = std::fs::read(path)?;
        let at = bytes.len() / 2;
        bytes[at] ^= 0x10;
        std::fs::write(path, bytes)?;
    }
    server.restart()?;
    let c = server.client().await?;
    c.produce("in", msgs(10)).await?;
    let out = consume_n(&c, "out", 20, LONG).await?;
    assert_eq!(out.len(), 20);
    let log = std::fs::read_to_string(server.root().join("server.log"))?;
    assert!(log.contains("compiled plugin cache entry is damaged (checksum mismatch)"), "the log says so");
    for path in &entries {
        let entry = std::fs::read(path)?;
        assert!(
            weir_tests::weir_host::runtime::checked(&entry).is_some(),
            "{} was written again intact",
            path.display()
        );
    }
    Ok(())
}

/// `weir doctor DIR`: (success, what it printed).
fn doctor(dir: &std::path::Path) -> Result<(bool, String)> {
    let out = std::process::Command::new(weir_tests::weir_bin()).arg("doctor").arg(dir).output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

/// The files of the database with extension `ext`, largest first.
fn db_files(server: &Server, ext: &str) -> Result<Vec<std::path::PathBuf>> {
    let mut files: Vec<_> = std::fs::read_dir(server.data_dir().join("db"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == ext)
                || p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(ext))
        })
        .collect();
    files.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)));
    Ok(files)
}

/// Bad bytes in a table file or the MANIFEST: weir never serves wrong data — a read gets
/// the records written or an error naming the file — and `weir doctor` finds the damage
/// offline, naming the file and the way out; on an intact directory it says so.
#[tokio::test(flavor = "multi_thread")]
async fn damaged_table_files_and_manifests_are_found_and_never_served_wrong() -> Result<()> {
    let mut server = Server::start()?;
    let c = server.client().await?;
    c.create_topic("t", topic(1)).await?;
    let (ok, report) = doctor(&server.data_dir())?;
    assert!(!ok && report.contains("a running server"), "a live directory is not checked: {report}");
    let written: Vec<String> = (0..40).map(|i| format!("m{i}:{}", "abcdefgh".repeat(1000 + i))).collect();
    c.produce("t", written.iter().map(|v| WireRecord::value(v.clone())).collect()).await?;
    // A restart replays the WAL into a table file.
    server.kill9();
    server.restart()?;
    server.kill9();
    let (ok, report) = doctor(&server.data_dir())?;
    assert!(ok && report.contains("ok   column family `log`"), "an intact directory passes: {report}");
    let table = db_files(&server, "sst")?.into_iter().next().expect("a table file after the restart");
    let mut bytes = std::fs::read(&table)?;
    let at = bytes.len() / 3;
    bytes[at] ^= 0x40;
    std::fs::write(&table, bytes)?;
    let (ok, report) = doctor(&server.data_dir())?;
    let name = table.file_name().expect("name").to_string_lossy().into_owned();
    assert!(!ok && report.contains("FAIL") && report.contains(&name), "doctor names {name}: {report}");
    // Served: every record as written, or an error; never other bytes.
    server.restart()?;
    let c = server.client().await?;
    match c.read_all("t").await {
        Ok(records) => {
            let got: Vec<String> = records.iter().map(|(_, _, r)| text(r)).collect();
            assert_eq!(got, written, "what is read is what was written");
        }
        Err(e) => assert!(e.to_string().contains("orruption"), "the error says what: {e}"),
    }
    server.kill9();

    // A truncated MANIFEST: refused at start and by the doctor, naming it.
    let manifest = db_files(&server, "MANIFEST")?.into_iter().next().expect("a MANIFEST");
    let len = std::fs::metadata(&manifest)?.len();
    std::fs::OpenOptions::new().write(true).open(&manifest)?.set_len(len / 2)?;
    let (ok, report) = doctor(&server.data_dir())?;
    assert!(!ok && report.contains("FAIL write-ahead log or MANIFEST"), "{report}");
    let err = server.restart().expect_err("a damaged MANIFEST stops the start").to_string();
    assert!(err.contains("Its MANIFEST is damaged") && err.contains("restore the data directory"), "{err}");
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
    let stderr = refused_start(server.root(), &Launch::default()).await?;
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

/// Start `weir serve` in `root` (a stopped server's, or a new one) with `launch`, expect it
/// to refuse, and return what it printed.
async fn refused_start(root: &std::path::Path, launch: &Launch) -> Result<String> {
    let mut child =
        serve_command(root, launch).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn()?;
    let status = eventually("weir serve to refuse to start", LONG, || {
        let exited = child.try_wait();
        async move { Ok(exited?) }
    })
    .await;
    if status.is_err() {
        let _ = child.kill();
    }
    assert!(!status?.success(), "the start must be refused");
    let mut stderr = String::new();
    child.stderr.take().expect("piped").read_to_string(&mut stderr)?;
    Ok(stderr)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wal_dir_of_its_own_survives_kill_9_and_must_be_named_again() -> Result<()> {
    let wal = tempfile::tempdir()?;
    let flags = vec!["--wal-dir".to_string(), wal.path().display().to_string()];
    let mut server = Server::launch(Launch { flags: flags.clone(), ..Launch::default() })?;
    let c = server.client().await?;
    c.create_topic("t", topic(1)).await?;
    for i in 0..20 {
        c.produce("t", vec![WireRecord::value(format!("m{i}:"))]).await?;
    }
    server.kill9();
    let logs = |dir: &std::path::Path| -> Result<usize> {
        Ok(std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
            .count())
    };
    assert!(logs(wal.path())? > 0, "the write-ahead log is in the directory named");
    assert_eq!(logs(&server.data_dir().join("db"))?, 0, "and not beside the database");

    // Without the flag RocksDB would start without replaying the log: refused, naming it.
    let stderr = refused_start(server.root(), &Launch::default()).await?;
    assert!(stderr.contains(&format!("--wal-dir {}", wal.path().canonicalize()?.display())), "{stderr}");

    // Another new data directory may not share it: its logs would be read as the new one's.
    let other = tempfile::tempdir()?;
    let stderr = refused_start(other.path(), &Launch { flags: flags.clone(), ..Launch::default() }).await?;
    assert!(stderr.contains("is not empty"), "{stderr}");

    server.restart()?;
    assert_eq!(assert_prefix_kept(&server).await?, 20, "every acknowledged write replayed from the log");
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
    let hello = weir_tests::weir_client::wire::encode(&weir_tests::weir_client::wire::RequestFrame {
        id: 1,
        request: weir_tests::weir_client::wire::Request::Hello {
            version: weir_tests::weir_client::wire::PROTOCOL_VERSION,
            client: "hog".into(),
            token: None,
        },
    })?;
    let fetch = |id| {
        weir_tests::weir_client::wire::encode(&weir_tests::weir_client::wire::RequestFrame {
            id,
            request: weir_tests::weir_client::wire::Request::Fetch {
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
pub(crate) fn self_signed(dir: &std::path::Path) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
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
    assert!(err.to_string().contains("token `app` has no write permission on topic `billing`"), "{err}");
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

/// Issue 12: the tokens of the authority tests: an admin, and mallory, who may do anything
/// with names starting `mal-` and nothing else.
const MALLORY: &str = "admin:admin-token-123 admin:*\nmallory:m-secret-1 admin:mal-* read:mal-* write:mal-*\n";

/// A server with [`MALLORY`]'s tokens, the admin's and mallory's clients, and the token file
/// (to rewrite). The admin made topics `secrets`, `mal-in`, `mal-out` and queue `payroll`.
async fn mallory_server() -> Result<(Server, tempfile::TempDir, Client, Client)> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("tokens");
    std::fs::write(&file, MALLORY)?;
    let server = Server::start_with(&["--auth-token-file", file.to_str().expect("utf-8")])?;
    let admin = Client::connect_with_token(server.addr.to_string(), Some("admin-token-123".into())).await?;
    for t in ["secrets", "mal-in", "mal-out"] {
        admin.create_topic(t, topic(1)).await?;
    }
    admin.produce("secrets", vec![WireRecord::value("the payroll")]).await?;
    admin.create_queue("payroll", Default::default()).await?;
    let mallory = Client::connect_with_token(server.addr.to_string(), Some("m-secret-1".into())).await?;
    mallory.deploy_plugin("mal-pass", plugin_bytes("hostile")).await?;
    Ok((server, dir, admin, mallory))
}

/// The refusal of `r`: Forbidden, naming the token, the permission and the resource.
fn forbidden<T: std::fmt::Debug>(r: Result<T, weir_tests::weir_client::client::ClientError>, says: &str) {
    let err = r.expect_err("refused");
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
    assert!(err.to_string().contains(says), "expected {says:?} in: {err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn asking_weir_to_act_needs_the_grants_the_act_needs() -> Result<()> {
    let (_server, _dir, admin, mallory) = mallory_server().await?;
    let pass = |name: &str, source: &str, sink: &str| pipeline(name, source, sink, vec![step("mal-pass", &[])]);
    // A pipeline reading a topic mallory cannot read.
    forbidden(
        mallory.create_pipeline(pass("mal-exfil", "secrets", "mal-out")).await,
        "token `mallory` has no read permission on topic `secrets` (its source)",
    );
    forbidden(
        mallory.apply_pipeline(pass("mal-exfil", "mal-in", "secrets")).await,
        "token `mallory` has no write permission on topic `secrets` (its sink)",
    );
    forbidden(
        mallory.create_pipeline(pass("mal-q", "queue:payroll", "mal-out")).await,
        "no read permission on queue `payroll` (its source)",
    );
    let mut dlq = pass("mal-dlq", "mal-in", "mal-out");
    dlq.on_error = weir_tests::weir_client::wire::ErrorPolicy::DeadLetter;
    dlq.dead_letter_topic = Some("secrets".into());
    forbidden(mallory.create_pipeline(dlq).await, "no write permission on topic `secrets` (its dead-letter topic)");
    // A plugin mallory may not read cannot run in mallory's pipeline.
    admin.deploy_plugin("payroll-export", plugin_bytes("hostile")).await?;
    let theirs = pipeline("mal-theirs", "mal-in", "mal-out", vec![step("payroll-export", &[])]);
    forbidden(mallory.create_pipeline(theirs).await, "no read permission on plugin `payroll-export`");
    // An exchange binding delivers with its binder's authority; publishing needs only the exchange.
    mallory.create_exchange("mal-x", ExchangeType::Fanout, None).await?;
    let to_payroll = Binding { destination: Destination::Queue("payroll".into()), ..binding_to("mal-out") };
    forbidden(
        mallory.bind("mal-x", to_payroll).await,
        "no write permission on queue `payroll` (the binding's destination)",
    );
    forbidden(
        mallory.create_exchange("mal-y", ExchangeType::Fanout, Some("payroll-x".into())).await,
        "no write permission on exchange `payroll-x` (its alternate exchange)",
    );
    mallory.bind("mal-x", binding_to("mal-out")).await?;
    mallory.publish("mal-x", "", b"evil".to_vec(), vec![]).await?;
    assert_eq!(admin.describe_queue("payroll").await?.ready, 0, "nothing reached payroll");
    // Moving the offsets of someone else's pipeline is resetting it.
    admin.create_pipeline(pass("audit", "mal-in", "mal-out")).await?;
    forbidden(mallory.commit_offsets("pipeline.audit", "mal-in", vec![(0, 0)]).await, "pipeline `audit`");
    forbidden(mallory.reset_pipeline("audit", ResetTarget::Offset(0), false).await, "pipeline `audit`");
    forbidden(mallory.state_list("audit", 1, b"", 10).await, "no read permission on pipeline `audit`");
    // Listings show only what the token may read.
    let topics: Vec<String> = mallory.list_topics().await?.into_iter().map(|t| t.name).collect();
    assert_eq!(topics, vec!["mal-in", "mal-out"]);
    assert!(mallory.list_pipelines().await?.is_empty());
    assert!(mallory.list_queues().await?.is_empty());
    // Mallory's own pipeline runs, recorded as mallory's.
    let own = mallory.create_pipeline(pass("mal-own", "mal-in", "mal-out")).await?;
    assert_eq!(own.owner.as_deref(), Some("mallory"));
    Ok(())
}

fn binding_to(topic: &str) -> Binding {
    Binding { destination: Destination::Topic(topic.into()), key: None, matches: vec![], match_any: false }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_into_an_ungranted_topic_fails_its_message_and_writes_nothing() -> Result<()> {
    let (_server, _dir, admin, mallory) = mallory_server().await?;
    let route = |name: &str| {
        pipeline(name, "mal-in", "mal-out", vec![step("mal-pass", &[("mode", "route-to"), ("to", "secrets")])])
    };
    mallory.create_pipeline(route("mal-route")).await?;
    // The same route under the dead-letter policy: the message goes to the dead letters instead.
    let mut dl = route("mal-dl");
    dl.on_error = weir_tests::weir_client::wire::ErrorPolicy::DeadLetter;
    dl.dead_letter_topic = Some("mal-dead".into());
    mallory.create_pipeline(dl).await?;
    mallory.produce("mal-in", vec![WireRecord::value("smuggled")]).await?;
    let halted = eventually("the pipeline to halt", LONG, || async {
        let s = mallory.pipeline_status("mal-route").await?;
        Ok((s.state == RunState::Halted).then_some(s))
    })
    .await?;
    let why = halted.last_error.unwrap_or_default();
    assert!(
        why.contains("token `mallory` has no write permission on topic `secrets` (a step routed an output there)"),
        "{why}"
    );
    let dead = consume_n(&mallory, "mal-dead", 1, LONG).await?;
    assert_eq!(text(&dead[0].2), "smuggled");
    assert!(dead[0].2.headers.iter().any(|(k, v)| k == "weir-dlq-error" && v.contains("topic `secrets`")));
    assert_eq!(admin.read_all("secrets").await?.len(), 1, "only the admin's record is in `secrets`");
    assert!(admin.read_all("mal-out").await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_token_loses_access_on_open_connections_and_its_pipelines_halt() -> Result<()> {
    let (server, dir, admin, mallory) = mallory_server().await?;
    mallory.create_pipeline(pipeline("mal-p", "mal-in", "mal-out", vec![step("mal-pass", &[])])).await?;
    mallory.produce("mal-in", vec![WireRecord::value("one")]).await?;
    assert_eq!(consume_n(&mallory, "mal-out", 1, LONG).await?.len(), 1);
    // Fewer grants: the pipeline's sink is no longer writable by its owner.
    let file = dir.path().join("tokens");
    std::fs::write(&file, "admin:admin-token-123 admin:*\nmallory:m-secret-1 read:mal-* write:mal-in\n")?;
    let halted = eventually("the pipeline to halt after the reload", LONG, || async {
        let s = admin.pipeline_status("mal-p").await?;
        Ok((s.state == RunState::Halted).then_some(s))
    })
    .await?;
    let why = halted.last_error.unwrap_or_default();
    assert!(why.contains("token `mallory`") && why.contains("write permission on topic `mal-out` (its sink)"), "{why}");
    forbidden(admin.resume_pipeline("mal-p").await, "write permission on topic `mal-out`");
    // The token removed: mallory's open connection is refused at its next request.
    std::fs::write(&file, "admin:admin-token-123 admin:*\n")?;
    let err =
        eventually("mallory's connection to be refused", LONG, || async { Ok(mallory.list_topics().await.err()) })
            .await?;
    assert_eq!(err.code(), Some(ErrorCode::Unauthenticated), "{err}");
    assert!(err.to_string().contains("no longer holds this connection's token"), "{err}");
    // A token file that does not parse keeps the tokens in force.
    std::fs::write(&file, "broken\n")?;
    eventually("the reload to be refused", LONG, || async {
        Ok(server.log().contains("the tokens in force stay").then_some(()))
    })
    .await?;
    admin.list_topics().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_texts_from_plugins_are_truncated_and_status_stays_readable() -> Result<()> {
    let server = Server::start()?;
    let c = server.client().await?;
    c.create_topic("in", topic(1)).await?;
    c.create_topic("out", topic(1)).await?;
    c.deploy_plugin("h", plugin_bytes("hostile")).await?;
    let p = |name: &str, mode: &str, mb: &str| {
        pipeline(name, "in", "out", vec![step("h", &[("mode", mode), ("huge-mb", mb), ("trigger", "bad")])])
    };
    // A 40 MiB init error: an error the client can read, not a closed connection.
    let err = c.create_pipeline(p("init", "init-fail-huge", "40")).await.expect_err("init refuses");
    assert_eq!(err.code(), Some(ErrorCode::PluginInit), "{err}");
    assert!(err.to_string().contains("… (truncated, 41943040 bytes)"), "{}", &err.to_string()[..200]);
    assert!(err.to_string().len() < 16 * 1024);
    // A 20 MiB failure message and a 20 MiB log line.
    c.create_pipeline(p("fail", "fail-huge", "20")).await?;
    c.create_pipeline(p("log", "log-huge", "20")).await?;
    c.create_pipeline(p("header", "header-huge", "1")).await?;
    c.produce("in", vec![WireRecord::value("bad")]).await?;
    for name in ["fail", "header"] {
        let halted = eventually("the pipeline to halt", LONG, || async {
            let s = c.pipeline_status(name).await?;
            Ok((s.state == RunState::Halted).then_some(s))
        })
        .await?;
        let why = halted.last_error.unwrap_or_default();
        assert!(why.len() < 16 * 1024, "{name}: a bounded reason, {} bytes", why.len());
        let expected =
            if name == "fail" { "… (truncated, 20971520 bytes)" } else { "header `big`'s value of 1048576 bytes" };
        assert!(why.contains(expected), "{name}: {why}");
    }
    eventually("the log line", LONG, || async {
        Ok(server.log().contains("… (truncated, 20971520 bytes)").then_some(()))
    })
    .await?;
    assert!(server.log().len() < 1 << 20, "the server log holds no 20 MiB line");
    assert_eq!(c.list_pipelines().await?.len(), 3, "status of every pipeline stays readable");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_response_too_large_for_a_frame_is_an_error_frame() -> Result<()> {
    let server = Server::start_with(&["--max-frame-bytes", "100000"])?;
    let c = server.client().await?;
    c.create_topic("t", topic(1)).await?;
    for i in 0..2 {
        c.produce("t", vec![WireRecord::value(format!("{i}{}", "x".repeat(60_000)))]).await?;
    }
    let pos = vec![FetchPosition { partition: 0, offset: 0 }];
    let err = c.fetch("t", pos.clone(), 10, Duration::ZERO).await.expect_err("too large");
    assert_eq!(err.code(), Some(ErrorCode::FrameTooLarge), "{err}");
    assert!(err.to_string().contains("exceeds the frame limit of 100000 bytes; ask for less"), "{err}");
    // The connection is still open.
    assert_eq!(c.fetch("t", pos, 1, Duration::ZERO).await?[0].records.len(), 1);
    Ok(())
}
