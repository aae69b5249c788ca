//! What survives a lossyfs power loss, over real FUSE mounts: synced data and entries stay,
//! the rest is undone (torn at sector boundaries when asked), and EIO rules fail I/O.
//!
//! These tests need FUSE (/dev/fuse and the right to mount, i.e. root); without it they fail
//! with the reason rather than skip, since the machines that run them have it.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use weir_lossyfs::{LossyFs, fuse_available};

/// A scratch directory with `backing/` and `mnt/`, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let root = std::env::temp_dir().join(format!("lossyfs-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("backing")).unwrap();
        fs::create_dir_all(root.join("mnt")).unwrap();
        Scratch(root)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A mount over a fresh scratch directory; unmounted before the scratch is removed (fields
/// drop in order).
struct Mounted {
    fs: LossyFs,
    _scratch: Scratch,
}

impl Mounted {
    fn new(name: &str, args: &[&str]) -> Mounted {
        if let Err(why) = fuse_available() {
            panic!("FUSE is not available here, and the lossyfs tests need it: {why}");
        }
        let scratch = Scratch::new(name);
        let bin = Path::new(env!("CARGO_BIN_EXE_lossyfs"));
        let fs = LossyFs::mount_with(bin, &scratch.0.join("backing"), &scratch.0.join("mnt"), args).unwrap();
        Mounted { fs, _scratch: scratch }
    }

    fn at(&self, rel: &str) -> PathBuf {
        self.fs.mountpoint().join(rel)
    }

    fn backing(&self, rel: &str) -> PathBuf {
        self.fs.backing().join(rel)
    }

    /// fsyncs a directory of the mount ("" is the root).
    fn sync_dir(&self, rel: &str) {
        File::open(self.at(rel)).unwrap().sync_all().unwrap();
    }

    /// Creates `rel` with `data`, fsyncs it, and fsyncs its directory: fully durable.
    fn durable_file(&self, rel: &str, data: &[u8]) {
        write_synced(&self.at(rel), data);
        let parent = Path::new(rel).parent().unwrap().to_str().unwrap();
        self.sync_dir(parent);
    }
}

fn write_synced(path: &Path, data: &[u8]) {
    let mut file = File::create(path).unwrap();
    file.write_all(data).unwrap();
    file.sync_all().unwrap();
}

fn append(path: &Path, data: &[u8]) {
    OpenOptions::new().append(true).open(path).unwrap().write_all(data).unwrap();
}

/// `len` bytes that differ from one position to the next, so a misplaced byte shows.
fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt)).collect()
}

#[test]
fn synced_file_in_synced_dir_survives_whole() {
    let m = Mounted::new("survives", &[]);
    fs::create_dir(m.at("d")).unwrap();
    m.sync_dir("");
    let data = pattern(10_000, 1);
    m.durable_file("d/f", &data);
    let report = m.fs.lose_power(None).unwrap();
    assert_eq!(report["entries_undone"], 0, "{report}");
    assert_eq!(fs::read(m.at("d/f")).unwrap(), data);
    assert_eq!(fs::read(m.backing("d/f")).unwrap(), data);
}

#[test]
fn unsynced_appends_are_lost_and_synced_bytes_stay() {
    let m = Mounted::new("append", &[]);
    let synced = pattern(3000, 2);
    m.durable_file("f", &synced);
    append(&m.at("f"), &pattern(2000, 3));
    assert_eq!(fs::metadata(m.at("f")).unwrap().len(), 5000);
    let stats = m.fs.stats().unwrap();
    assert_eq!((stats["unsynced_files"].as_u64(), stats["unsynced_bytes"].as_u64()), (Some(1), Some(2000)), "{stats}");
    let report = m.fs.lose_power(None).unwrap();
    assert_eq!(report["bytes_dropped"], 2000, "{report}");
    assert_eq!(fs::read(m.at("f")).unwrap(), synced);
    assert_eq!(fs::read(m.backing("f")).unwrap(), synced);
}

#[test]
fn overwrite_of_synced_bytes_reverts_without_fsync_and_sticks_with_it() {
    let m = Mounted::new("overwrite", &[]);
    let old = pattern(4096, 4);
    m.durable_file("f", &old);
    let file = OpenOptions::new().write(true).open(m.at("f")).unwrap();
    file.write_all_at(&[0xbb; 100], 100).unwrap();
    file.write_all_at(&[0xcc; 300], 50).unwrap();
    file.write_all_at(&[0xdd; 1000], 3500).unwrap();
    let report = m.fs.lose_power(None).unwrap();
    assert_eq!(report["bytes_restored"], 300 + 596, "{report}");
    assert_eq!(fs::read(m.at("f")).unwrap(), old);

    file.write_all_at(&[0xee; 10], 0).unwrap();
    file.sync_data().unwrap();
    m.fs.lose_power(None).unwrap();
    let mut new = old.clone();
    new[..10].fill(0xee);
    assert_eq!(fs::read(m.at("f")).unwrap(), new);
}

#[test]
fn file_whose_directory_was_never_fsynced_is_gone() {
    let m = Mounted::new("created", &[]);
    fs::create_dir(m.at("d")).unwrap();
    m.sync_dir("");
    write_synced(&m.at("d/f"), b"data synced, entry not");
    fs::create_dir(m.at("newdir")).unwrap();
    write_synced(&m.at("newdir/g"), b"inside a directory that is lost");
    m.sync_dir("newdir");
    // create d/f and mkdir newdir; newdir/g became durable with the fsync of newdir.
    assert_eq!(m.fs.stats().unwrap()["unsynced_entries"], 2);
    m.fs.lose_power(None).unwrap();
    assert!(!m.at("d/f").exists() && !m.backing("d/f").exists());
    assert!(!m.at("newdir").exists() && !m.backing("newdir").exists());
    assert!(m.at("d").is_dir());
}

#[test]
fn rename_over_a_durable_file_is_undone_without_dir_fsync_and_sticks_with_it() {
    let m = Mounted::new("rename", &[]);
    m.durable_file("CURRENT", b"MANIFEST-000001\n");
    write_synced(&m.at("CURRENT.tmp"), b"MANIFEST-000002\n");
    fs::rename(m.at("CURRENT.tmp"), m.at("CURRENT")).unwrap();
    assert_eq!(fs::read(m.at("CURRENT")).unwrap(), b"MANIFEST-000002\n");
    m.fs.lose_power(None).unwrap();
    assert_eq!(fs::read(m.at("CURRENT")).unwrap(), b"MANIFEST-000001\n");
    assert!(!m.at("CURRENT.tmp").exists() && !m.backing("CURRENT.tmp").exists());

    write_synced(&m.at("CURRENT.tmp"), b"MANIFEST-000003\n");
    fs::rename(m.at("CURRENT.tmp"), m.at("CURRENT")).unwrap();
    m.sync_dir("");
    m.fs.lose_power(None).unwrap();
    assert_eq!(fs::read(m.at("CURRENT")).unwrap(), b"MANIFEST-000003\n");
    assert!(!m.at("CURRENT.tmp").exists());
    assert_eq!(fs::read_dir(m.backing(".lossyfs-trash")).unwrap().count(), 0);
}

#[test]
fn unlink_of_a_durable_file_comes_back_without_dir_fsync() {
    let m = Mounted::new("unlink", &[]);
    let data = pattern(5000, 5);
    m.durable_file("f", &data);
    fs::remove_file(m.at("f")).unwrap();
    assert!(!m.at("f").exists());
    let names: Vec<_> = fs::read_dir(m.at("")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(names.is_empty(), "trash and control are hidden: {names:?}");
    let report = m.fs.lose_power(None).unwrap();
    assert_eq!(report["entries"][0], "unlink f", "{report}");
    assert_eq!(fs::read(m.at("f")).unwrap(), data);

    fs::remove_file(m.at("f")).unwrap();
    m.sync_dir("");
    m.fs.lose_power(None).unwrap();
    assert!(!m.at("f").exists() && !m.backing("f").exists());
}

/// Checks a torn file: its durable bytes, then a prefix of the append ending at a sector
/// boundary (or nothing of it). Returns how many appended bytes were kept.
fn check_torn(path: &Path, durable: &[u8], appended: &[u8]) -> usize {
    let data = fs::read(path).unwrap();
    assert!(data.len() >= durable.len() && data.len() <= durable.len() + appended.len(), "{}", data.len());
    assert_eq!(&data[..durable.len()], durable);
    let kept = data.len() - durable.len();
    assert!(kept == 0 || data.len().is_multiple_of(512), "cut at {} is not a sector boundary", data.len());
    assert_eq!(&data[durable.len()..], &appended[..kept]);
    kept
}

#[test]
fn tear_keeps_whole_sectors_of_the_last_append() {
    let m = Mounted::new("tear", &[]);
    let mut kept_counts = std::collections::HashSet::new();
    for seed in 0..8u64 {
        // Aligned and unaligned durable lengths: the cut is at absolute sector boundaries.
        let durable = pattern(if seed % 2 == 0 { 1024 } else { 1000 }, seed as u8);
        let appended = pattern(8192, 100 + seed as u8);
        let name = format!("t{seed}");
        m.durable_file(&name, &durable);
        append(&m.at(&name), &appended);
        let report = m.fs.lose_power(Some(seed)).unwrap();
        let kept = check_torn(&m.at(&name), &durable, &appended);
        assert_eq!(report["bytes_torn_kept"], kept as u64, "{report}");
        kept_counts.insert(kept);
    }
    assert!(kept_counts.len() > 2, "tears should vary with the seed: {kept_counts:?}");
}

#[test]
fn a_tear_over_several_appends_keeps_a_contiguous_prefix() {
    let m = Mounted::new("tear-many", &[]);
    let mut kept_counts = std::collections::HashSet::new();
    for seed in 0..8u64 {
        let durable = pattern(1000, seed as u8);
        let (a, b) = (pattern(3000, 50 + seed as u8), pattern(5000, 150 + seed as u8));
        let name = format!("m{seed}");
        m.durable_file(&name, &durable);
        append(&m.at(&name), &a);
        append(&m.at(&name), &b);
        m.fs.lose_power(Some(seed)).unwrap();
        let got = fs::read(m.at(&name)).unwrap();
        let whole = [&durable[..], &a[..], &b[..]].concat();
        assert!(got.len() >= durable.len() && got[..] == whole[..got.len()], "seed {seed}: a prefix, no hole");
        assert!(
            got.len() == durable.len() || got.len().is_multiple_of(512) || got.len() == whole.len(),
            "seed {seed}: {}",
            got.len()
        );
        kept_counts.insert(got.len());
    }
    assert!(kept_counts.len() > 2, "tears should vary with the seed: {kept_counts:?}");
}

#[test]
fn eio_rules_fail_io_on_matching_paths_until_cleared() {
    let m = Mounted::new("eio", &[]);
    m.durable_file("bad.log", b"old");
    m.durable_file("good.log", b"old");
    let bad = OpenOptions::new().read(true).write(true).open(m.at("bad.log")).unwrap();
    let good = OpenOptions::new().read(true).write(true).open(m.at("good.log")).unwrap();
    m.fs.eio_add("/bad").unwrap();
    let eio = |r: std::io::Result<()>| r.unwrap_err().raw_os_error() == Some(libc::EIO);
    assert!(eio(bad.write_all_at(b"x", 3)));
    assert!(eio(bad.read_exact_at(&mut [0; 3], 0)));
    assert!(eio(bad.sync_all()));
    good.write_all_at(b"new", 3).unwrap();
    good.sync_all().unwrap();
    m.fs.eio_clear().unwrap();
    bad.write_all_at(b"x", 3).unwrap();
    bad.sync_all().unwrap();
    assert_eq!(fs::read(m.at("bad.log")).unwrap(), b"oldx");
    assert_eq!(fs::read(m.at("good.log")).unwrap(), b"oldnew");
}

#[test]
fn wal_appends_keep_exactly_the_synced_prefix() {
    let m = Mounted::new("wal", &[]);
    fs::create_dir(m.at("db")).unwrap();
    m.sync_dir("");
    let path = m.at("db/000001.log");
    let mut wal = OpenOptions::new().create(true).append(true).open(&path).unwrap();
    m.sync_dir("db");
    let (mut written, mut synced) = (Vec::new(), 0);
    for i in 0..60usize {
        let record = pattern(100 + (i * 137) % 1400, i as u8);
        wal.write_all(&record).unwrap();
        written.extend_from_slice(&record);
        if i % 7 == 6 {
            wal.sync_data().unwrap();
            synced = written.len();
        }
    }
    assert!(written.len() > synced);
    m.fs.lose_power(None).unwrap();
    assert_eq!(fs::read(&path).unwrap(), &written[..synced]);
    // The mount goes on from the rolled-back state: appends land after the synced prefix.
    wal.write_all(b"after").unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), synced as u64 + 5);
}

#[test]
fn sigusr1_loses_power() {
    let m = Mounted::new("sigusr1", &[]);
    m.durable_file("f", b"durable");
    append(&m.at("f"), b" and not");
    // SAFETY: a signal to the lossyfs child we started.
    assert_eq!(unsafe { libc::kill(m.fs.pid() as i32, libc::SIGUSR1) }, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while fs::read(m.backing("f")).unwrap() != b"durable" {
        assert!(Instant::now() < deadline, "SIGUSR1 did not roll f back");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn exit_keeps_everything_unless_lose_on_exit() {
    let scratch = Scratch::new("exit");
    let (backing, mnt) = (scratch.0.join("backing"), scratch.0.join("mnt"));
    let bin = Path::new(env!("CARGO_BIN_EXE_lossyfs"));
    for (args, expected) in [(&[][..], &b"unsynced"[..]), (&["--lose-on-exit"][..], &b""[..])] {
        fuse_available().unwrap();
        let fs = LossyFs::mount_with(bin, &backing, &mnt, args).unwrap();
        write_synced(&mnt.join("f"), b"");
        File::open(&mnt).unwrap().sync_all().unwrap();
        append(&mnt.join("f"), b"unsynced");
        fs.unmount().unwrap();
        assert!(!weir_lossyfs::mounts::is_mounted(&mnt));
        assert_eq!(fs::read(backing.join("f")).unwrap(), expected, "{args:?}");
        fs::remove_file(backing.join("f")).unwrap();
    }
}

/// Every file (with its bytes) and directory under `root`, but the trash.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            if rel == Path::new(".lossyfs-trash") {
                continue;
            }
            if path.is_dir() {
                dirs.push(path);
                out.insert(rel, None);
            } else {
                out.insert(rel, Some(fs::read(&path).unwrap()));
            }
        }
    }
    out
}

#[test]
fn losing_power_before_any_sync_restores_the_initial_tree() {
    let scratch = Scratch::new("tree");
    let backing = scratch.0.join("backing");
    for (i, rel) in ["a/1", "a/2", "a/b/3", "a/b/4", "c/5", "6"].iter().enumerate() {
        let path = backing.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, pattern(700 * (i + 1), i as u8)).unwrap();
    }
    let before = snapshot(&backing);
    fuse_available().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_lossyfs"));
    let lossy = LossyFs::mount_with(bin, &backing, &scratch.0.join("mnt"), &[]).unwrap();
    let at = |rel: &str| lossy.mountpoint().join(rel);
    fs::remove_dir_all(at("a/b")).unwrap();
    fs::rename(at("c"), at("d")).unwrap();
    fs::rename(at("6"), at("d/6")).unwrap();
    fs::create_dir_all(at("x/y")).unwrap();
    fs::write(at("x/y/z"), b"new").unwrap();
    append(&at("a/1"), &pattern(5000, 9));
    OpenOptions::new().write(true).open(at("a/2")).unwrap().write_all_at(&[0; 333], 1000).unwrap();
    OpenOptions::new().write(true).open(at("d/5")).unwrap().set_len(100).unwrap();
    fs::rename(at("a/1"), at("a/2")).unwrap();
    fs::rename(at("x"), at("a/x")).unwrap();
    fs::write(at("d/6"), b"rewritten").unwrap();
    assert_ne!(snapshot(lossy.mountpoint()), before);
    let report = lossy.lose_power(None).unwrap();
    assert_eq!(report["undo_errors"].as_array().map(Vec::len), Some(0), "{report}");
    assert_eq!(snapshot(&backing), before);
    assert_eq!(snapshot(lossy.mountpoint()), before);
}

#[test]
fn a_killed_server_leaves_no_mount_behind() {
    let m = Mounted::new("killed", &[]);
    // SAFETY: a signal to the lossyfs child we started.
    assert_eq!(unsafe { libc::kill(m.fs.pid() as i32, libc::SIGKILL) }, 0);
    let mnt = m.fs.mountpoint().to_path_buf();
    drop(m);
    assert!(!weir_lossyfs::mounts::is_mounted(&mnt));
}

#[test]
fn control_rejects_unknown_commands() {
    let m = Mounted::new("control", &[]);
    let err = m.fs.command("reboot").unwrap_err().to_string();
    assert!(err.contains("unknown command"), "{err}");
    let mut control = OpenOptions::new().write(true).open(m.at(".lossyfs-control")).unwrap();
    assert_eq!(control.write_all(b"reboot\n").unwrap_err().kind(), ErrorKind::InvalidInput);
}
