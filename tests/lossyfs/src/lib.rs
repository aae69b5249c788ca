//! lossyfs: a FUSE filesystem for crash tests that loses what was not fsynced, like LazyFS.
//!
//! `lossyfs BACKING MOUNTPOINT` mounts a passthrough view of `BACKING`. Reads and writes go
//! straight to the backing directory while an undo journal records what is not durable yet:
//! file data past each file's last fsync (and the old bytes of what was overwritten below it),
//! and directory entries created, removed or renamed since their directory's last fsync
//! (removed entries wait in `BACKING/.lossyfs-trash/`). Losing power plays the journal back,
//! newest first, so the backing directory holds what a strict POSIX disk would have kept; the
//! mount then goes on serving from there, with everything in it durable.
//!
//! It is driven through `/.lossyfs-control` at the root of the mount (see [`control`]), by
//! SIGUSR1 (lose power, no tear), or from Rust through [`LossyFs`]. It runs as root, mounting
//! with mount(2) (fuser's pure-Rust mount, no libfuse); when `fusermount3` is on PATH it mounts
//! through it with auto_unmount instead, so even a SIGKILL leaves no mount behind. Unmount with
//! `umount MNT` or `fusermount3 -u MNT`, or SIGTERM the process; a dead server's mount goes
//! with `umount -l MNT`.
//!
//! The model, and its limits:
//! - Only fsync/fdatasync makes a file's data durable (O_SYNC/O_DSYNC writes too); only an
//!   fsync of the directory makes an entry durable, both directories for a rename. A real
//!   ext4 is kinder (any fsync commits its journal, entries included); this is the strict
//!   reading, which is what portable code must survive.
//! - A tear (`lose-power tear SEED`) models appends reaching the disk in order and the power
//!   cutting them: of a file whose last unsynced change was an append, it keeps a contiguous
//!   prefix of everything past the durable length, ending at a 512-byte boundary of the file
//!   (possibly nothing, possibly all of it); other unsynced changes are undone as without a
//!   tear. A tear never leaves a hole before kept data.
//! - Files are opened with direct I/O, so shared writable mmap fails with ENODEV (SQLite's WAL
//!   mode needs it; RocksDB with its default options does not).
//! - Symlinks, hard links, special files and extended attributes are not supported.
//! - Renaming a directory durably while an older change inside it is not durable leaves that
//!   change's undo looking under the old name: it fails and is listed in `undo_errors`.

pub mod control;
pub mod daemon;
pub mod fuse;
pub mod harness;
pub mod journal;
pub mod mounts;
pub mod state;

pub use harness::{LossyFs, default_binary, fuse_available};
