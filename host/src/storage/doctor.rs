//! `weir doctor DATA_DIR`: an offline check of a stopped server's data directory. It opens
//! the database read-only (nothing is written), replays the write-ahead log as a start
//! would, reads every block of every column family with checksums verified, decodes every
//! record and metadata record weir wrote, checks each stored plugin component against its
//! hash and each compiled-plugin cache entry against its checksum, and says what it found,
//! with the file and the way out.

use std::path::{Path, PathBuf};

use rocksdb::{DB, IteratorMode, Options, ReadOptions};

use super::{CF_LOG, CF_META, CF_OFFSETS, CF_QUEUES, CF_STATE, keys, record, stored};

/// What the doctor found about one part of the data directory.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Finding {
    /// Whether this part is intact.
    pub ok: bool,
    /// The part.
    pub what: String,
    /// What was found, and for damage, what to do.
    pub detail: String,
}

/// Every finding, in the order checked.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    /// The findings.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether nothing is damaged.
    pub fn healthy(&self) -> bool {
        self.findings.iter().all(|f| f.ok)
    }

    fn ok(&mut self, what: impl Into<String>, detail: impl Into<String>) {
        self.findings.push(Finding { ok: true, what: what.into(), detail: detail.into() });
    }

    fn damaged(&mut self, what: impl Into<String>, detail: impl Into<String>) {
        self.findings.push(Finding { ok: false, what: what.into(), detail: detail.into() });
    }
}

/// Check the data directory `data_dir` (as given to `weir serve --data-dir`).
pub fn check(data_dir: &Path) -> Report {
    let mut report = Report::default();
    let path = data_dir.join("db");
    if !path.join("CURRENT").exists() {
        report
            .damaged(path.display().to_string(), "no database here (no CURRENT file): is this a weir data directory?");
        return report;
    }
    if let Some(pid) = locked_by(&path.join("LOCK")) {
        report.damaged(
            path.display().to_string(),
            format!("a running server (pid {pid}) holds this database: stop it first; a live directory changes under the check"),
        );
        return report;
    }
    let Some(db) = open(&path, &mut report) else { return report };
    for cf in [CF_META, CF_OFFSETS, CF_STATE, CF_QUEUES] {
        read_all(&db, cf, &mut report, |_, _| Ok(()));
    }
    read_all(&db, CF_LOG, &mut report, |k, v| {
        let offset = keys::log_key_offset(k).ok_or("a log key of the wrong length")?;
        record::decode(offset, bytes::Bytes::copy_from_slice(v)).map(|_| ())
    });
    check_meta(&db, &mut report);
    check_cache(&data_dir.join("compiled"), &mut report);
    report
}

/// The process holding RocksDB's lock on the database, if one does (a server running on it).
fn locked_by(lock: &Path) -> Option<i32> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new().read(true).write(true).open(lock).ok()?;
    // SAFETY: a zeroed flock is a valid argument; F_GETLK only reads the file's lock table.
    let mut probe: libc::flock = unsafe { std::mem::zeroed() };
    probe.l_type = libc::F_WRLCK as libc::c_short;
    probe.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: `file` is open for the duration of the call and `probe` is a valid flock.
    let asked = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut probe) };
    (asked == 0 && probe.l_type != libc::F_UNLCK as libc::c_short).then_some(probe.l_pid)
}

/// Open read-only, replaying the WAL strictly as `weir serve` does.
fn open(path: &Path, report: &mut Report) -> Option<DB> {
    let mut opts = Options::default();
    opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::AbsoluteConsistency);
    if let Ok(dir) = std::fs::read_to_string(path.join("WAL_DIR")) {
        opts.set_wal_dir(PathBuf::from(dir.trim_end()));
    }
    let cfs = [CF_LOG, CF_OFFSETS, CF_STATE, CF_META, CF_QUEUES];
    let strict = DB::open_cf_for_read_only(&opts, path, cfs, false);
    // As `weir serve` does: a torn last record (a write never completed, so never
    // acknowledged) is dropped at start, not a reason to restore a backup.
    let opened = match strict {
        Ok(db) => Ok((db, "replay completely".to_string())),
        Err(e) if e.kind() == rocksdb::ErrorKind::Corruption && !e.to_string().contains("MANIFEST") => {
            opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::TolerateCorruptedTailRecords);
            DB::open_cf_for_read_only(&opts, path, cfs, false)
                .map(|db| (db, format!("replay, but for a torn last record `weir serve` drops at start ({e})")))
                .map_err(|_| e)
        }
        Err(e) => Err(e),
    };
    match opened {
        Ok((db, detail)) => {
            report.ok("write-ahead log and MANIFEST", detail);
            Some(db)
        }
        Err(e) => {
            report.damaged(
                "write-ahead log or MANIFEST",
                format!(
                    "do not open: {e}. `weir serve` refuses this directory. Restore it from a backup; if only \
                     the write-ahead log is damaged, `weir serve --recover-wal` keeps everything before the damage"
                ),
            );
            None
        }
    }
}

/// Read every entry of column family `cf` with checksums verified, checking each with `each`.
fn read_all(db: &DB, cf: &str, report: &mut Report, each: impl Fn(&[u8], &[u8]) -> Result<(), String>) {
    let handle = db.cf_handle(cf).expect("column family opened");
    let mut ro = ReadOptions::default();
    ro.set_verify_checksums(true);
    ro.fill_cache(false);
    let (mut entries, mut bad) = (0u64, Vec::new());
    for item in db.iterator_cf_opt(handle, ro, IteratorMode::Start) {
        match item {
            Ok((k, v)) => {
                entries += 1;
                if let Err(why) = each(&k, &v)
                    && bad.len() < 5
                {
                    bad.push(format!("entry {entries}: {why}"));
                }
            }
            Err(e) => {
                report.damaged(
                    format!("column family `{cf}`"),
                    format!(
                        "unreadable after {entries} entries: {e}. The file it names is damaged; reads that reach \
                         it fail (weir never serves them). Restore the data directory from a backup"
                    ),
                );
                return;
            }
        }
    }
    if bad.is_empty() {
        report.ok(format!("column family `{cf}`"), format!("{entries} entries, every block's checksum verified"));
    } else {
        report.damaged(format!("column family `{cf}`"), format!("entries that do not decode: {}", bad.join("; ")));
    }
}

/// Weir's own records: topics, pipelines, plugin versions and their components.
fn check_meta(db: &DB, report: &mut Report) {
    let Ok(meta) = super::meta_scan(db, "") else { return };
    let (mut bad, mut plugins) = (Vec::new(), 0);
    for (key, value) in &meta {
        let decoded = if key.starts_with(keys::meta::TOPICS) {
            stored::decode::<stored::TopicV1>(key, value).map(|_| ())
        } else if key.starts_with(keys::meta::PIPELINES) {
            stored::decode::<stored::PipelineV1>(key, value).map(|_| ())
        } else if key.starts_with(keys::meta::PLUGINS) {
            plugins += 1;
            stored::decode::<stored::PluginV1>(key, value).map(|p| check_blob(db, &p, &mut bad))
        } else {
            Ok(())
        };
        if let Err(e) = decoded {
            bad.push(e.to_string());
        }
    }
    if bad.is_empty() {
        report.ok(
            "weir's records",
            format!("{} metadata records decode; {plugins} plugin components match their hashes", meta.len()),
        );
    } else {
        report.damaged("weir's records", bad.join("; "));
    }
}

fn check_blob(db: &DB, plugin: &stored::PluginV1, bad: &mut Vec<String>) {
    let cf = db.cf_handle(CF_META).expect("meta cf");
    match db.get_cf(cf, keys::meta::blob(&plugin.hash)) {
        Ok(Some(wasm)) if blake3::hash(&wasm).to_hex().as_str() == plugin.hash => {}
        Ok(Some(_)) => bad.push(format!("the component of {}@{} does not match its hash", plugin.name, plugin.version)),
        Ok(None) => bad.push(format!("the component of {}@{} is missing", plugin.name, plugin.version)),
        Err(e) => bad.push(format!("the component of {}@{} is unreadable: {e}", plugin.name, plugin.version)),
    }
}

/// Compiled plugins: a damaged entry is harmless (it is compiled again, never run) but said.
fn check_cache(dir: &Path, report: &mut Report) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let (mut intact, mut damaged) = (0, Vec::new());
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "wcc")) {
        match std::fs::read(&path) {
            Ok(bytes) if crate::runtime::checked(&bytes).is_some() => intact += 1,
            _ => damaged.push(path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()),
        }
    }
    let detail = if damaged.is_empty() {
        format!("{intact} entries intact")
    } else {
        format!("{intact} intact; damaged, to be compiled again at next use (never run): {}", damaged.join(", "))
    };
    report.ok("compiled plugin cache", detail);
}
