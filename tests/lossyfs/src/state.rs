//! The filesystem's state behind the FUSE calls: the passthrough over the backing directory,
//! inode numbers, open handles, the undo journal and the EIO rules.
//!
//! Every operation goes straight to the backing directory and records in the journal how to
//! undo it; `lose_power` plays the journal back. The FUSE layer (`fuse.rs`) only translates
//! calls and replies.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, FileTimes, Metadata, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{Errno, FileAttr, FileType, INodeNo, TimeOrNow};
use serde_json::{Value, json};

use crate::control::Command;
use crate::journal::{DataJournal, FileKey, NsChange, NsJournal, Report, SplitMix, remove_any};

/// The control file at the root of the mount (hidden from readdir).
pub const CONTROL_NAME: &str = ".lossyfs-control";
/// The trash directory in the backing directory, where unlinked entries wait until their
/// directory is fsynced (hidden from the mount).
pub const TRASH_NAME: &str = ".lossyfs-trash";
/// The control file's inode number, far from the ones handed out from 2 up.
pub const CONTROL_INO: u64 = u64::MAX >> 1;
const ROOT_INO: u64 = INodeNo::ROOT.0;

/// A FUSE result: a value or the errno to reply with.
pub type FsResult<T> = Result<T, Errno>;

/// Attribute changes asked by setattr.
#[derive(Debug, Default)]
pub struct SetAttr {
    /// New permission bits.
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New length (truncate).
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<TimeOrNow>,
    /// New modification time.
    pub mtime: Option<TimeOrNow>,
}

/// One entry of a directory listing.
#[derive(Debug, Clone)]
pub struct DirItem {
    /// Its name.
    pub name: OsString,
    /// Its kind.
    pub kind: FileType,
    /// Its inode number.
    pub ino: u64,
}

/// Inode numbers of the mount, each naming a path relative to the backing directory. Our own
/// numbers, not the backing ones, so a reused backing inode never aliases a stale kernel one.
#[derive(Debug)]
struct Nodes {
    by_ino: HashMap<u64, PathBuf>,
    by_path: HashMap<PathBuf, u64>,
    next: u64,
}

impl Nodes {
    fn new() -> Self {
        let mut nodes = Nodes { by_ino: HashMap::new(), by_path: HashMap::new(), next: ROOT_INO + 1 };
        nodes.by_ino.insert(ROOT_INO, PathBuf::new());
        nodes.by_path.insert(PathBuf::new(), ROOT_INO);
        nodes
    }

    fn path(&self, ino: u64) -> FsResult<&Path> {
        self.by_ino.get(&ino).map(PathBuf::as_path).ok_or(Errno::ENOENT)
    }

    fn intern(&mut self, path: &Path) -> u64 {
        if let Some(&ino) = self.by_path.get(path) {
            return ino;
        }
        let ino = self.next;
        self.next += 1;
        self.by_ino.insert(ino, path.to_path_buf());
        self.by_path.insert(path.to_path_buf(), ino);
        ino
    }

    /// Forgets `path` and everything under it (unlink, rmdir, replaced by a rename).
    fn forget_tree(&mut self, path: &Path) {
        let gone: Vec<PathBuf> = self.by_path.keys().filter(|p| p.starts_with(path)).cloned().collect();
        for p in gone {
            if let Some(ino) = self.by_path.remove(&p) {
                self.by_ino.remove(&ino);
            }
        }
    }

    /// `from` and everything under it is now under `to`.
    fn moved(&mut self, from: &Path, to: &Path) {
        let moved: Vec<PathBuf> = self.by_path.keys().filter(|p| p.starts_with(from)).cloned().collect();
        for old in moved {
            let Some(ino) = self.by_path.remove(&old) else { continue };
            let new = match old.strip_prefix(from) {
                Ok(rest) if !rest.as_os_str().is_empty() => to.join(rest),
                _ => to.to_path_buf(),
            };
            self.by_ino.insert(ino, new.clone());
            self.by_path.insert(new, ino);
        }
    }
}

/// An open file of the mount.
#[derive(Debug)]
struct OpenFile {
    file: File,
    ino: u64,
    key: FileKey,
    /// Its path when opened: the EIO rules match it if the inode has no path any more.
    path: PathBuf,
    /// O_APPEND: each write goes to the current end of the backing file.
    append: bool,
    /// O_SYNC or O_DSYNC: each write is durable when it returns.
    sync: bool,
}

/// What an open handle refers to.
#[derive(Debug)]
enum Handle {
    File(OpenFile),
    /// A directory, with its listing taken at opendir so offsets stay stable.
    Dir {
        dir: File,
        items: Vec<DirItem>,
    },
    /// The control file, with the result of the last command written through it.
    Control(Option<Vec<u8>>),
}

/// The whole state of a mounted lossyfs.
#[derive(Debug)]
pub struct State {
    root: PathBuf,
    trash_seq: u64,
    nodes: Nodes,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
    data: DataJournal,
    ns: NsJournal,
    eio: Vec<String>,
    last_result: Vec<u8>,
}

impl State {
    /// The state of a fresh mount over `backing`: everything in it counts as durable. A trash
    /// left by a run that was killed is emptied, so what it held is gone for good.
    pub fn new(backing: &Path) -> io::Result<State> {
        let root = backing.canonicalize()?;
        if !root.is_dir() {
            return Err(io::Error::other(format!("{} is not a directory", root.display())));
        }
        let trash = root.join(TRASH_NAME);
        if trash.exists() {
            fs::remove_dir_all(&trash)?;
        }
        fs::create_dir(&trash)?;
        Ok(State {
            root,
            trash_seq: 0,
            nodes: Nodes::new(),
            handles: HashMap::new(),
            next_fh: 1,
            data: DataJournal::default(),
            ns: NsJournal::default(),
            eio: Vec::new(),
            last_result: Vec::new(),
        })
    }

    fn abs(&self, rel: &Path) -> PathBuf {
        self.root.join(rel)
    }

    fn child(&self, parent: u64, name: &OsStr) -> FsResult<PathBuf> {
        Ok(self.nodes.path(parent)?.join(name))
    }

    /// The inode number of a backing directory: what its namespace changes wait for.
    fn dir_key(&self, rel: &Path) -> FsResult<u64> {
        Ok(fs::metadata(self.abs(rel))?.ino())
    }

    fn entry(&mut self, rel: &Path) -> FsResult<FileAttr> {
        let meta = fs::symlink_metadata(self.abs(rel))?;
        let ino = self.nodes.intern(rel);
        Ok(attr(ino, &meta))
    }

    fn add_handle(&mut self, handle: Handle) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, handle);
        fh
    }

    /// Moves an entry into the trash; returns its path there.
    fn bury(&mut self, rel: &Path) -> FsResult<PathBuf> {
        self.trash_seq += 1;
        let trash = Path::new(TRASH_NAME).join(self.trash_seq.to_string());
        fs::rename(self.abs(rel), self.abs(&trash))?;
        Ok(trash)
    }

    /// Looks a name up; the control file answers at the root, the trash never does.
    pub fn lookup(&mut self, parent: u64, name: &OsStr) -> FsResult<FileAttr> {
        if parent == ROOT_INO && name == CONTROL_NAME {
            return Ok(control_attr());
        }
        if hidden(parent, name) {
            return Err(Errno::ENOENT);
        }
        let rel = self.child(parent, name)?;
        self.entry(&rel)
    }

    /// Attributes, from the open handle when there is one (the file may be unlinked).
    pub fn getattr(&self, ino: u64, fh: Option<u64>) -> FsResult<FileAttr> {
        if ino == CONTROL_INO {
            return Ok(control_attr());
        }
        if let Some(Handle::File(open)) = fh.and_then(|fh| self.handles.get(&fh)) {
            return Ok(attr(ino, &open.file.metadata()?));
        }
        let meta = fs::symlink_metadata(self.abs(self.nodes.path(ino)?))?;
        Ok(attr(ino, &meta))
    }

    /// Changes attributes; a new size goes through the journal like a write.
    pub fn setattr(&mut self, ino: u64, fh: Option<u64>, set: SetAttr) -> FsResult<FileAttr> {
        if ino == CONTROL_INO {
            return Ok(control_attr());
        }
        if let Some(size) = set.size {
            self.truncate(ino, fh, size)?;
        }
        if set.mode.is_some() || set.uid.is_some() || set.gid.is_some() || set.atime.is_some() || set.mtime.is_some() {
            let file = self.meta_file(ino, fh)?;
            set_meta(&file, &set)?;
        }
        self.getattr(ino, fh)
    }

    /// A descriptor to change metadata through: the open handle's, or the path's.
    fn meta_file(&self, ino: u64, fh: Option<u64>) -> FsResult<File> {
        if let Some(Handle::File(open)) = fh.and_then(|fh| self.handles.get(&fh)) {
            return Ok(open.file.try_clone()?);
        }
        let path = self.abs(self.nodes.path(ino)?);
        Ok(OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW).open(path)?)
    }

    fn truncate(&mut self, ino: u64, fh: Option<u64>, size: u64) -> FsResult<()> {
        let (file, rel) = match fh.and_then(|fh| self.handles.get(&fh)) {
            Some(Handle::File(open)) => (open.file.try_clone()?, open.path.clone()),
            _ => {
                let rel = self.nodes.path(ino)?.to_path_buf();
                (OpenOptions::new().read(true).write(true).open(self.abs(&rel))?, rel)
            }
        };
        let meta = file.metadata()?;
        self.data.before_change(file_key(&meta), &file, &rel, size..u64::MAX, meta.len())?;
        file.set_len(size)?;
        Ok(())
    }

    /// Creates a directory: not durable until its parent is fsynced.
    pub fn mkdir(&mut self, parent: u64, name: &OsStr, mode: u32) -> FsResult<FileAttr> {
        check_new_name(parent, name)?;
        let rel = self.child(parent, name)?;
        fs::DirBuilder::new().mode(mode & 0o7777).create(self.abs(&rel))?;
        let dir = self.dir_key(self.nodes.path(parent)?)?;
        self.ns.push(NsChange::Mkdir { path: rel.clone() }, &[dir]);
        self.entry(&rel)
    }

    /// Creates and opens a regular file (or opens it, when it exists and O_EXCL is not set).
    pub fn create(&mut self, parent: u64, name: &OsStr, mode: u32, flags: i32) -> FsResult<(FileAttr, u64)> {
        check_new_name(parent, name)?;
        let rel = self.child(parent, name)?;
        let abs = self.abs(&rel);
        if abs.symlink_metadata().is_ok() {
            if flags & libc::O_EXCL != 0 {
                return Err(Errno::EEXIST);
            }
            let attr = self.entry(&rel)?;
            let fh = self.open(attr.ino.0, flags)?;
            return Ok((attr, fh));
        }
        let file = OpenOptions::new().read(true).write(true).create_new(true).mode(mode & 0o7777).open(&abs)?;
        let dir = self.dir_key(self.nodes.path(parent)?)?;
        self.ns.push(NsChange::Create { path: rel.clone() }, &[dir]);
        let attr = self.entry(&rel)?;
        let fh = self.add_file_handle(attr.ino.0, rel, file, flags)?;
        Ok((attr, fh))
    }

    /// A regular file made by mknod (other node kinds are not supported).
    pub fn mknod(&mut self, parent: u64, name: &OsStr, mode: u32) -> FsResult<FileAttr> {
        if mode & libc::S_IFMT != libc::S_IFREG {
            return Err(Errno::EPERM);
        }
        let (attr, fh) = self.create(parent, name, mode, libc::O_EXCL)?;
        self.handles.remove(&fh);
        Ok(attr)
    }

    /// Opens a file (the control file included), read-write on the backing side whatever the
    /// mode asked, so the journal can read old bytes and roll back through the same inode.
    pub fn open(&mut self, ino: u64, flags: i32) -> FsResult<u64> {
        if ino == CONTROL_INO {
            return Ok(self.add_handle(Handle::Control(None)));
        }
        let rel = self.nodes.path(ino)?.to_path_buf();
        let abs = self.abs(&rel);
        let file = match OpenOptions::new().read(true).write(true).open(&abs) {
            Ok(file) => file,
            // A read-only backing file: fall back to the mode asked.
            Err(_) => OpenOptions::new().read(true).write(flags & libc::O_ACCMODE != libc::O_RDONLY).open(&abs)?,
        };
        let fh = self.add_file_handle(ino, rel, file, flags)?;
        if flags & libc::O_TRUNC != 0 {
            self.truncate(ino, Some(fh), 0)?;
        }
        Ok(fh)
    }

    fn add_file_handle(&mut self, ino: u64, path: PathBuf, file: File, flags: i32) -> FsResult<u64> {
        let key = file_key(&file.metadata()?);
        let append = flags & libc::O_APPEND != 0;
        let sync = flags & (libc::O_SYNC | libc::O_DSYNC) != 0;
        Ok(self.add_handle(Handle::File(OpenFile { file, ino, key, path, append, sync })))
    }

    /// Fails with EIO when an EIO rule matches the file's path (`/` + path from the root).
    fn check_eio(&self, open: &OpenFile) -> FsResult<()> {
        if self.eio.is_empty() {
            return Ok(());
        }
        let rel = self.nodes.path(open.ino).unwrap_or(&open.path);
        let path = format!("/{}", rel.to_string_lossy());
        match self.eio.iter().any(|rule| path.contains(rule.as_str())) {
            true => Err(Errno::EIO),
            false => Ok(()),
        }
    }

    /// Reads up to `size` bytes at `offset` (short only at end of file).
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        if let Some(Handle::Control(result)) = self.handles.get(&fh) {
            let result = result.as_deref().unwrap_or(&self.last_result);
            return Ok(slice_at(result, offset, size).to_vec());
        }
        let open = file_of(&self.handles, fh)?;
        self.check_eio(open)?;
        let mut buf = vec![0; size as usize];
        let mut done = 0;
        while done < buf.len() {
            match open.file.read_at(&mut buf[done..], offset + done as u64)? {
                0 => break,
                n => done += n,
            }
        }
        buf.truncate(done);
        Ok(buf)
    }

    /// Writes `data` at `offset` (at the end for O_APPEND), saving what it overwrites.
    pub fn write(&mut self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        if let Some(Handle::Control(_)) = self.handles.get(&fh) {
            return self.control(fh, data);
        }
        let open = file_of(&self.handles, fh)?;
        self.check_eio(open)?;
        let size = open.file.metadata()?.len();
        let offset = if open.append { size } else { offset };
        let at = offset..offset + data.len() as u64;
        let (key, sync) = (open.key, open.sync);
        self.data.before_write(key, &open.file, &open.path, at.clone(), size)?;
        open.file.write_all_at(data, offset)?;
        self.data.after_write(key, at, size);
        if sync {
            open.file.sync_data()?;
            self.data.synced(key);
        }
        Ok(data.len() as u32)
    }

    /// fsync/fdatasync: the file's data as it is now becomes durable (not its directory entry).
    pub fn fsync(&mut self, fh: u64, datasync: bool) -> FsResult<()> {
        if let Some(Handle::Control(_)) = self.handles.get(&fh) {
            return Ok(());
        }
        let open = file_of(&self.handles, fh)?;
        self.check_eio(open)?;
        match datasync {
            true => open.file.sync_data()?,
            false => open.file.sync_all()?,
        }
        let key = open.key;
        self.data.synced(key);
        Ok(())
    }

    /// fallocate: preallocation, hole punching and the rest, journaled as a change of the range
    /// it can destroy.
    pub fn fallocate(&mut self, fh: u64, offset: u64, length: u64, mode: i32) -> FsResult<()> {
        let open = file_of(&self.handles, fh)?;
        let meta = open.file.metadata()?;
        let range = fallocate_range(mode, offset, length);
        self.data.before_change(open.key, &open.file, &open.path, range, meta.len())?;
        let (off, len) = (to_off(offset)?, to_off(length)?);
        // SAFETY: the descriptor is open for the duration of the call; no memory is passed.
        let rc = unsafe { libc::fallocate(open.file.as_raw_fd(), mode, off, len) };
        match rc {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error().into()),
        }
    }

    /// Closes a file or directory handle.
    pub fn release(&mut self, fh: u64) {
        self.handles.remove(&fh);
    }

    /// Unlinks a file: it waits in the trash until its directory is fsynced.
    pub fn unlink(&mut self, parent: u64, name: &OsStr) -> FsResult<()> {
        self.remove(parent, name, false)
    }

    /// Removes an empty directory: it waits in the trash until its parent is fsynced.
    pub fn rmdir(&mut self, parent: u64, name: &OsStr) -> FsResult<()> {
        self.remove(parent, name, true)
    }

    fn remove(&mut self, parent: u64, name: &OsStr, dir: bool) -> FsResult<()> {
        if hidden(parent, name) || (parent == ROOT_INO && name == CONTROL_NAME) {
            return Err(if dir { Errno::ENOTDIR } else { Errno::EPERM });
        }
        let rel = self.child(parent, name)?;
        let abs = self.abs(&rel);
        match (fs::symlink_metadata(&abs)?.is_dir(), dir) {
            (true, false) => return Err(Errno::EISDIR),
            (false, true) => return Err(Errno::ENOTDIR),
            (true, true) if fs::read_dir(&abs)?.next().is_some() => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        let parent_dir = self.dir_key(self.nodes.path(parent)?)?;
        let trash = self.bury(&rel)?;
        self.ns.push(NsChange::Remove { path: rel.clone(), trash, dir }, &[parent_dir]);
        self.nodes.forget_tree(&rel);
        Ok(())
    }

    /// Renames; what it replaces waits in the trash until both directories are fsynced.
    pub fn rename(&mut self, parent: u64, name: &OsStr, newparent: u64, newname: &OsStr, flags: u32) -> FsResult<()> {
        if flags & !libc::RENAME_NOREPLACE != 0 {
            return Err(Errno::EINVAL);
        }
        if hidden(parent, name) || (parent == ROOT_INO && name == CONTROL_NAME) {
            return Err(Errno::ENOENT);
        }
        check_new_name(newparent, newname)?;
        let (from, to) = (self.child(parent, name)?, self.child(newparent, newname)?);
        let from_meta = fs::symlink_metadata(self.abs(&from))?;
        if from == to {
            return Ok(());
        }
        if from_meta.is_dir() && to.starts_with(&from) {
            return Err(Errno::EINVAL);
        }
        let dirs = [self.dir_key(self.nodes.path(parent)?)?, self.dir_key(self.nodes.path(newparent)?)?];
        let replaced = self.bury_target(&from_meta, &to, flags)?;
        if let Err(e) = fs::rename(self.abs(&from), self.abs(&to)) {
            if let Some(trash) = &replaced {
                // Put the target back; the rename did not happen.
                let _ = fs::rename(self.abs(trash), self.abs(&to));
            }
            return Err(e.into());
        }
        self.ns.push(NsChange::Rename { from: from.clone(), to: to.clone(), replaced }, &dirs);
        self.nodes.forget_tree(&to);
        self.nodes.moved(&from, &to);
        Ok(())
    }

    /// Moves an existing rename target into the trash, after the checks rename(2) makes.
    fn bury_target(&mut self, from: &Metadata, to: &Path, flags: u32) -> FsResult<Option<PathBuf>> {
        let abs = self.abs(to);
        let to_meta = match fs::symlink_metadata(&abs) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if flags & libc::RENAME_NOREPLACE != 0 {
            return Err(Errno::EEXIST);
        }
        match (from.is_dir(), to_meta.is_dir()) {
            (true, false) => return Err(Errno::ENOTDIR),
            (false, true) => return Err(Errno::EISDIR),
            (true, true) if fs::read_dir(&abs)?.next().is_some() => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        Ok(Some(self.bury(to)?))
    }

    /// Opens a directory, taking its listing now (without the hidden names).
    pub fn opendir(&mut self, ino: u64) -> FsResult<u64> {
        let rel = self.nodes.path(ino)?.to_path_buf();
        let dir = File::open(self.abs(&rel))?;
        let parent_ino = match rel.parent() {
            Some(parent) => self.nodes.intern(parent),
            None => ROOT_INO,
        };
        let mut items = vec![dir_item(".", FileType::Directory, ino), dir_item("..", FileType::Directory, parent_ino)];
        for entry in fs::read_dir(self.abs(&rel))? {
            let entry = entry?;
            if hidden(ino, &entry.file_name()) {
                continue;
            }
            let kind = entry.file_type().ok().and_then(FileType::from_std).unwrap_or(FileType::RegularFile);
            let child = self.nodes.intern(&rel.join(entry.file_name()));
            items.push(DirItem { name: entry.file_name(), kind, ino: child });
        }
        Ok(self.add_handle(Handle::Dir { dir, items }))
    }

    /// The listing taken at opendir, from `offset` on.
    pub fn readdir(&self, fh: u64, offset: u64) -> FsResult<&[DirItem]> {
        match self.handles.get(&fh) {
            Some(Handle::Dir { items, .. }) => Ok(items.get(offset as usize..).unwrap_or(&[])),
            _ => Err(Errno::EBADF),
        }
    }

    /// fsyncdir: the namespace changes that waited only for this directory become durable.
    pub fn fsyncdir(&mut self, fh: u64) -> FsResult<()> {
        let Some(Handle::Dir { dir, .. }) = self.handles.get(&fh) else { return Err(Errno::EBADF) };
        dir.sync_all()?;
        let key = dir.metadata()?.ino();
        // The fsync itself succeeded: a trash entry that will not go is our problem, not the
        // caller's (power loss empties the trash anyway).
        if let Err(e) = self.ns.dir_synced(key, &self.root) {
            eprintln!("lossyfs: emptying trash after fsyncdir: {e}");
        }
        Ok(())
    }

    /// statfs of the backing filesystem.
    pub fn statfs(&self) -> FsResult<libc::statvfs> {
        let path = std::ffi::CString::new(self.root.as_os_str().as_encoded_bytes()).map_err(|_| Errno::EINVAL)?;
        // SAFETY: an all-zero statvfs is a valid value of this plain C struct.
        let mut out: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is a NUL-terminated string and `out` a valid statvfs to write to.
        match unsafe { libc::statvfs(path.as_ptr(), &mut out) } {
            0 => Ok(out),
            _ => Err(io::Error::last_os_error().into()),
        }
    }

    /// Runs the commands written to the control file; their results are read back from it.
    fn control(&mut self, fh: u64, data: &[u8]) -> FsResult<u32> {
        let text = String::from_utf8_lossy(data);
        let mut out = String::new();
        let mut failed = false;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let result = match Command::parse(line) {
                Ok(command) => self.run(command),
                Err(error) => json!({ "ok": false, "error": error }),
            };
            failed |= result["ok"] != Value::Bool(true);
            out.push_str(&result.to_string());
            out.push('\n');
        }
        let out = out.into_bytes();
        self.last_result = out.clone();
        if let Some(Handle::Control(result)) = self.handles.get_mut(&fh) {
            *result = Some(out);
        }
        match failed {
            true => Err(Errno::EINVAL),
            false => Ok(data.len() as u32),
        }
    }

    /// Runs one control command.
    pub fn run(&mut self, command: Command) -> Value {
        match command {
            Command::LosePower { tear } => self.lose_power(tear),
            Command::EioAdd(rule) => {
                self.eio.push(rule);
                json!({ "ok": true, "eio": self.eio })
            }
            Command::EioClear => {
                self.eio.clear();
                json!({ "ok": true, "eio": self.eio })
            }
            Command::Stats => self.stats(),
        }
    }

    fn stats(&self) -> Value {
        let (files, bytes) = self.data.stats();
        json!({
            "ok": true,
            "unsynced_files": files,
            "unsynced_bytes": bytes,
            "unsynced_entries": self.ns.len(),
            "eio": self.eio,
        })
    }

    /// Power loss: undoes every namespace change not durable (newest first), rolls file data
    /// back to its last sync (a torn prefix of each last append kept when `tear` has a seed),
    /// empties the trash and syncs the backing directory. The mount then goes on from there.
    pub fn lose_power(&mut self, tear: Option<u64>) -> Value {
        let mut report = Report::default();
        self.ns.undo_all(&self.root, &mut report);
        let mut rng = tear.map(SplitMix::new);
        self.data.roll_back(rng.as_mut(), &mut report);
        self.empty_trash(&mut report);
        sync_tree(&self.root, &mut report);
        // Inode numbers keep their paths: one the kernel still holds (a dentry it has not
        // revalidated yet) reaches whatever that name holds now, or ENOENT.
        let mut result = report.to_json();
        result["tear_seed"] = json!(tear);
        result
    }

    fn empty_trash(&self, report: &mut Report) {
        let trash = self.root.join(TRASH_NAME);
        let entries = match fs::read_dir(&trash) {
            Ok(entries) => entries,
            Err(e) => return report.error(format!("read trash: {e}")),
        };
        for entry in entries.flatten() {
            if let Err(e) = remove_any(&entry.path()) {
                report.error(format!("empty trash {}: {e}", entry.path().display()));
            }
        }
    }
}

/// Whether a name is hidden from the mount: the trash, at the root.
fn hidden(parent: u64, name: &OsStr) -> bool {
    parent == ROOT_INO && name == TRASH_NAME
}

/// The reserved names at the root cannot be created or replaced.
fn check_new_name(parent: u64, name: &OsStr) -> FsResult<()> {
    match parent == ROOT_INO && (name == TRASH_NAME || name == CONTROL_NAME) {
        true => Err(Errno::EPERM),
        false => Ok(()),
    }
}

/// The open file behind a handle (a free function, so it borrows only the handle table).
fn file_of(handles: &HashMap<u64, Handle>, fh: u64) -> FsResult<&OpenFile> {
    match handles.get(&fh) {
        Some(Handle::File(open)) => Ok(open),
        _ => Err(Errno::EBADF),
    }
}

fn file_key(meta: &Metadata) -> FileKey {
    (meta.dev(), meta.ino())
}

/// The bytes a fallocate mode can change: those after `offset` when it shifts data, the range
/// when it zeroes it, none when it only allocates (a size it adds is dropped by the rollback).
fn fallocate_range(mode: i32, offset: u64, length: u64) -> Range<u64> {
    let shifts = libc::FALLOC_FL_COLLAPSE_RANGE | libc::FALLOC_FL_INSERT_RANGE;
    let zeroes = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE;
    match (mode & shifts != 0, mode & zeroes != 0) {
        (true, _) => offset..u64::MAX,
        (false, true) => offset..offset.saturating_add(length),
        (false, false) => offset..offset,
    }
}

fn to_off(value: u64) -> FsResult<i64> {
    i64::try_from(value).map_err(|_| Errno::EINVAL)
}

fn slice_at(data: &[u8], offset: u64, size: u32) -> &[u8] {
    let start = (offset as usize).min(data.len());
    let end = start.saturating_add(size as usize).min(data.len());
    &data[start..end]
}

fn dir_item(name: &str, kind: FileType, ino: u64) -> DirItem {
    DirItem { name: name.into(), kind, ino }
}

fn time_of(t: Option<TimeOrNow>) -> Option<SystemTime> {
    t.map(|t| match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    })
}

/// Applies mode, owner and times (metadata only: not journaled).
fn set_meta(file: &File, set: &SetAttr) -> io::Result<()> {
    if let Some(mode) = set.mode {
        file.set_permissions(fs::Permissions::from_mode(mode & 0o7777))?;
    }
    if set.uid.is_some() || set.gid.is_some() {
        std::os::unix::fs::fchown(file, set.uid, set.gid)?;
    }
    let mut times = FileTimes::new();
    if let Some(t) = time_of(set.atime) {
        times = times.set_accessed(t);
    }
    if let Some(t) = time_of(set.mtime) {
        times = times.set_modified(t);
    }
    if set.atime.is_some() || set.mtime.is_some() {
        file.set_times(times)?;
    }
    Ok(())
}

/// fsyncs every file and directory under `root` (power loss ends with all of it on disk).
fn sync_tree(root: &Path, report: &mut Report) {
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => return report.error(format!("sync {}: {e}", dir.display())),
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => dirs.push(entry.path()),
                Ok(kind) if kind.is_file() => sync_path(&entry.path(), report),
                _ => {}
            }
        }
        sync_path(&dir, report);
    }
}

fn sync_path(path: &Path, report: &mut Report) {
    if let Err(e) = File::open(path).and_then(|f| f.sync_all()) {
        report.error(format!("sync {}: {e}", path.display()));
    }
}

fn unix_time(secs: i64, nsecs: i64) -> SystemTime {
    let nanos = Duration::from_nanos(nsecs.clamp(0, 999_999_999) as u64);
    match u64::try_from(secs) {
        Ok(secs) => UNIX_EPOCH + Duration::from_secs(secs) + nanos,
        Err(_) => UNIX_EPOCH,
    }
}

/// FUSE attributes of a backing entry, under our inode number.
fn attr(ino: u64, meta: &Metadata) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: meta.len(),
        blocks: meta.blocks(),
        atime: unix_time(meta.atime(), meta.atime_nsec()),
        mtime: unix_time(meta.mtime(), meta.mtime_nsec()),
        ctime: unix_time(meta.ctime(), meta.ctime_nsec()),
        crtime: UNIX_EPOCH,
        kind: FileType::from_std(meta.file_type()).unwrap_or(FileType::RegularFile),
        perm: (meta.mode() & 0o7777) as u16,
        nlink: meta.nlink() as u32,
        uid: meta.uid(),
        gid: meta.gid(),
        rdev: meta.rdev() as u32,
        blksize: meta.blksize() as u32,
        flags: 0,
    }
}

/// The control file's attributes: a root-only regular file (its reads are direct, so the size
/// does not matter).
fn control_attr() -> FileAttr {
    FileAttr {
        ino: INodeNo(CONTROL_INO),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0o600,
        nlink: 1,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_follow_renames_of_directories() {
        let mut nodes = Nodes::new();
        let a = nodes.intern(Path::new("a"));
        let f = nodes.intern(Path::new("a/f"));
        let other = nodes.intern(Path::new("ab"));
        nodes.moved(Path::new("a"), Path::new("b"));
        assert_eq!(nodes.path(a).unwrap(), Path::new("b"));
        assert_eq!(nodes.path(f).unwrap(), Path::new("b/f"));
        assert_eq!(nodes.path(other).unwrap(), Path::new("ab"));
        nodes.forget_tree(Path::new("b"));
        assert!(nodes.path(f).is_err());
        assert_eq!(nodes.path(ROOT_INO).unwrap(), Path::new(""));
    }

    #[test]
    fn slices_past_the_end_are_empty() {
        assert_eq!(slice_at(b"abc", 1, 10), b"bc");
        assert!(slice_at(b"abc", 5, 10).is_empty());
    }
}
