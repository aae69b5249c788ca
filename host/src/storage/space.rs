//! Free space under the data directory (and a separate write-ahead-log directory). Below the
//! floor weir keeps free, appends are refused with [`StoreError::DiskFull`] before RocksDB
//! runs out in the middle of a write — a failed WAL write leaves RocksDB read-only until it
//! is reopened — and they resume by themselves once space returns, as Redpanda refuses
//! produces below `storage_min_free_bytes`. Deletes, acks and offset commits still pass: they
//! are how space comes back.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::error::StoreError;

/// How long a free-space reading is trusted.
const RECHECK: Duration = Duration::from_millis(100);

/// The floor and the last reading.
pub struct Space {
    dirs: Vec<PathBuf>,
    min_free: u64,
    last: Mutex<Option<(Instant, Reading)>>,
    full: AtomicBool,
    free: AtomicU64,
}

/// The fullest directory's free bytes.
#[derive(Clone)]
struct Reading {
    dir: PathBuf,
    free: u64,
}

impl Space {
    /// Watch `dirs`, keeping `min_free` bytes free in each (0: never refuse).
    pub fn new(dirs: Vec<PathBuf>, min_free: u64) -> Space {
        Space { dirs, min_free, last: Mutex::new(None), full: AtomicBool::new(false), free: AtomicU64::new(u64::MAX) }
    }

    /// Whether appends may be written now; a reading is at most [`RECHECK`] old.
    pub fn check(&self) -> Result<(), StoreError> {
        if self.min_free == 0 {
            return Ok(());
        }
        let reading = self.reading();
        if reading.free >= self.min_free {
            return Ok(());
        }
        Err(StoreError::DiskFull {
            path: reading.dir.display().to_string(),
            free_bytes: reading.free,
            min_free_bytes: self.min_free,
        })
    }

    /// Whether appends are refused (as of the last reading).
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    /// Free bytes in the fullest watched directory (as of the last reading).
    pub fn free_bytes(&self) -> u64 {
        self.free.load(Ordering::Relaxed)
    }

    /// The floor.
    pub fn min_free_bytes(&self) -> u64 {
        self.min_free
    }

    fn reading(&self) -> Reading {
        let mut last = self.last.lock().expect("space");
        if let Some((at, r)) = &*last
            && at.elapsed() < RECHECK
        {
            return r.clone();
        }
        let r = self
            .dirs
            .iter()
            .map(|d| Reading { dir: d.clone(), free: available(d).unwrap_or(u64::MAX) })
            .min_by_key(|r| r.free)
            .unwrap_or(Reading { dir: PathBuf::new(), free: u64::MAX });
        self.free.store(r.free, Ordering::Relaxed);
        let full = r.free < self.min_free;
        if full != self.full.swap(full, Ordering::Relaxed) {
            if full {
                tracing::error!(dir = %r.dir.display(), free = r.free, min_free = self.min_free, "disk full: appends refused until space returns");
            } else {
                tracing::info!(dir = %r.dir.display(), free = r.free, "disk space back: appends resume");
            }
        }
        *last = Some((Instant::now(), r.clone()));
        r
    }
}

/// Bytes an unprivileged writer may still use under `dir`.
fn available(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_floor_above_the_free_space_refuses_and_zero_never_does() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Space::new(vec![dir.path().to_path_buf()], 0).check().is_ok());
        assert!(Space::new(vec![dir.path().to_path_buf()], 1).check().is_ok());
        let full = Space::new(vec![dir.path().to_path_buf()], u64::MAX);
        let err = full.check().unwrap_err().to_string();
        assert!(err.starts_with("disk full:") && err.contains(&dir.path().display().to_string()), "{err}");
        assert!(full.is_full());
    }
}
