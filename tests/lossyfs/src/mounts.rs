//! Mount table helpers: is a path a mount point, and detach one that is busy or dead.

use std::ffi::CString;
use std::io;
use std::path::Path;

/// Escapes a path the way /proc/self/mountinfo does (space, tab, newline, backslash).
fn mountinfo_escape(path: &str) -> String {
    path.replace('\\', "\\134").replace(' ', "\\040").replace('\t', "\\011").replace('\n', "\\012")
}

/// Whether `path` is a mount point (in this process's mount namespace).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(path) = path.canonicalize().or_else(|_| std::path::absolute(path)) else { return false };
    let wanted = mountinfo_escape(&path.to_string_lossy());
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    // Field 5 is the mount point.
    table.lines().any(|line| line.split(' ').nth(4) == Some(wanted.as_str()))
}

/// Lazily unmounts `path` (MNT_DETACH): works on a busy mount and on one whose server died.
pub fn detach(path: &Path) -> io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
    // SAFETY: a NUL-terminated path; umount2 reads nothing else.
    match unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_mounted_and_escapes_match_mountinfo() {
        assert!(is_mounted(Path::new("/")));
        assert_eq!(mountinfo_escape("/tmp/a b"), "/tmp/a\\040b");
    }
}
