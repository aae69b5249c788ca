//! The test harness side: start a `lossyfs` process over a directory, drive it through its
//! control file, and unmount it when dropped.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use crate::mounts;
use crate::state::CONTROL_NAME;

/// How long a mount may take to come up, and a stop to finish.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `lossyfs` mount. Dropping it stops the process (without losing power, unless it
/// was started with `--lose-on-exit`) and makes sure nothing stays mounted.
#[derive(Debug)]
pub struct LossyFs {
    child: Child,
    /// The write end of the process's stdin: closing it stops the process, and so does our
    /// death, since the kernel closes it then.
    stdin: Option<ChildStdin>,
    backing: PathBuf,
    mountpoint: PathBuf,
}

impl LossyFs {
    /// Mounts `backing` at `mountpoint` with the `lossyfs` binary found by [`default_binary`].
    pub fn mount(backing: &Path, mountpoint: &Path) -> Result<LossyFs> {
        LossyFs::mount_with(&default_binary()?, backing, mountpoint, &[])
    }

    /// Mounts with the binary `bin`, passing `args` (e.g. `--lose-on-exit`) before the
    /// directories (both must exist); returns once the process says `mounted`.
    pub fn mount_with(bin: &Path, backing: &Path, mountpoint: &Path, args: &[&str]) -> Result<LossyFs> {
        let mut child = Command::new(bin)
            .arg("--exit-on-stdin-eof")
            .args(args)
            .arg(backing)
            .arg(mountpoint)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdin = child.stdin.take();
        let mut fs = LossyFs { child, stdin, backing: backing.to_path_buf(), mountpoint: mountpoint.to_path_buf() };
        fs.wait_mounted()?;
        Ok(fs)
    }

    /// Waits for the `mounted` line (read on a thread, which then drains stdout).
    fn wait_mounted(&mut self) -> Result<()> {
        let stdout = self.child.stdout.take().ok_or_else(|| anyhow!("lossyfs stdout not captured"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = tx.send(reader.read_line(&mut line).map(|_| line));
            let _ = io::copy(&mut reader, &mut io::sink());
        });
        match rx.recv_timeout(MOUNT_TIMEOUT) {
            Ok(Ok(line)) if line.trim() == "mounted" => Ok(()),
            Ok(Ok(line)) => bail!("lossyfs did not mount: said {line:?}, exit {:?}", self.exit_status()),
            Ok(Err(e)) => bail!("reading lossyfs stdout: {e}"),
            Err(_) => bail!("lossyfs did not say `mounted` within {MOUNT_TIMEOUT:?}"),
        }
    }

    fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The mount point.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The backing directory.
    pub fn backing(&self) -> &Path {
        &self.backing
    }

    /// The process id (to send SIGUSR1, which loses power without tearing).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs one control command and returns its JSON result; a result with `ok` false is an
    /// error carrying its message.
    pub fn command(&self, line: &str) -> Result<Value> {
        let path = self.mountpoint.join(CONTROL_NAME);
        let mut control = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let written = control.write_all(format!("{line}\n").as_bytes());
        let mut out = Vec::new();
        let mut buf = vec![0; 64 * 1024];
        loop {
            match control.read_at(&mut buf, out.len() as u64)? {
                0 => break,
                n => out.extend_from_slice(&buf[..n]),
            }
        }
        let text = String::from_utf8_lossy(&out);
        let result: Value = match text.lines().last() {
            Some(last) => serde_json::from_str(last).with_context(|| format!("control result {last:?}"))?,
            None => bail!("no result for {line:?} (write: {written:?})"),
        };
        if result["ok"] != Value::Bool(true) {
            bail!("lossyfs {line:?}: {}", result["error"]);
        }
        written.with_context(|| format!("writing {line:?}"))?;
        Ok(result)
    }

    /// Loses power: undoes everything not durable, tearing each file's last unsynced append
    /// at a random sector boundary when `tear` has a seed. Returns the report.
    pub fn lose_power(&self, tear: Option<u64>) -> Result<Value> {
        match tear {
            Some(seed) => self.command(&format!("lose-power tear {seed}")),
            None => self.command("lose-power"),
        }
    }

    /// Fails reads, writes and fsyncs of open files whose path (`/` + path from the mount
    /// root) contains `substring`, with EIO.
    pub fn eio_add(&self, substring: &str) -> Result<()> {
        self.command(&format!("eio add {substring}")).map(drop)
    }

    /// Drops every EIO rule.
    pub fn eio_clear(&self) -> Result<()> {
        self.command("eio clear").map(drop)
    }

    /// Counts of what is not durable: `unsynced_files`, `unsynced_bytes`, `unsynced_entries`.
    pub fn stats(&self) -> Result<Value> {
        self.command("stats")
    }

    /// Stops the process and unmounts, reporting what went wrong (Drop does the same quietly).
    pub fn unmount(mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        // EOF on its stdin: it unmounts and exits.
        drop(self.stdin.take());
        let exited = self.wait_exit(STOP_TIMEOUT)?;
        if !exited {
            self.child.kill().context("killing lossyfs")?;
            self.child.wait().context("reaping lossyfs")?;
        }
        if mounts::is_mounted(&self.mountpoint) {
            mounts::detach(&self.mountpoint).with_context(|| format!("detaching {}", self.mountpoint.display()))?;
        }
        match exited {
            true => Ok(()),
            false => bail!("lossyfs did not stop within {STOP_TIMEOUT:?}; killed"),
        }
    }

    fn wait_exit(&mut self, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(false)
    }
}

impl Drop for LossyFs {
    fn drop(&mut self) {
        if self.stdin.is_some()
            && let Err(e) = self.stop()
        {
            eprintln!("lossyfs: {e:#}");
        }
    }
}

/// The `lossyfs` binary: `$LOSSYFS_BIN`, else `lossyfs` beside the current executable or one
/// directory up (where cargo puts binaries relative to test executables in `deps/`).
pub fn default_binary() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("LOSSYFS_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe().context("finding the current executable")?;
    let candidates: Vec<PathBuf> = exe.ancestors().skip(1).take(2).map(|dir| dir.join("lossyfs")).collect();
    candidates.iter().find(|bin| bin.is_file()).cloned().ok_or_else(|| {
        anyhow!("no lossyfs binary at {candidates:?}: set LOSSYFS_BIN or run `cargo build -p weir-lossyfs`")
    })
}

/// Whether FUSE mounts work here; the error says why not (no /dev/fuse, no permission to open
/// it or to mount). Tries a real mount on a scratch directory and takes it down at once.
pub fn fuse_available() -> Result<(), String> {
    let dev = Path::new("/dev/fuse");
    if !dev.exists() {
        return Err(
            "no /dev/fuse: the fuse kernel module is not loaded (modprobe fuse) or not in this container".into()
        );
    }
    let fuse = OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev)
        .map_err(|e| format!("cannot open /dev/fuse: {e} (need read-write access to it)"))?;
    let dir =
        std::env::temp_dir().join(format!("lossyfs-probe-{}-{:?}", std::process::id(), std::thread::current().id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("scratch dir {}: {e}", dir.display()))?;
    let result = probe_mount(fuse.as_raw_fd(), &dir);
    let _ = std::fs::remove_dir(&dir);
    result
}

/// mount(2) of a FUSE filesystem on `dir` with the open /dev/fuse `fd`, then a lazy unmount.
fn probe_mount(fd: i32, dir: &Path) -> Result<(), String> {
    let c = |s: &[u8]| CString::new(s).map_err(|e| e.to_string());
    let (source, target, kind) = (c(b"lossyfs-probe")?, c(dir.as_os_str().as_encoded_bytes())?, c(b"fuse")?);
    let data = c(format!("fd={fd},rootmode=40000,user_id=0,group_id=0").as_bytes())?;
    let flags = libc::MS_NODEV | libc::MS_NOSUID;
    // SAFETY: NUL-terminated strings that outlive the call.
    let rc = unsafe { libc::mount(source.as_ptr(), target.as_ptr(), kind.as_ptr(), flags, data.as_ptr().cast()) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EPERM) => format!("mounting FUSE is not permitted: {e} (needs root or CAP_SYS_ADMIN)"),
            Some(libc::ENODEV) => format!("the kernel has no fuse filesystem type: {e}"),
            _ => format!("mounting FUSE failed: {e}"),
        });
    }
    mounts::detach(dir).map_err(|e| format!("unmounting the probe mount: {e}"))
}
