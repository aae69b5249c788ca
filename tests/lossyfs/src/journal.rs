//! The undo journal: what a power loss takes back, for file data and for directory entries.
//!
//! Writes go straight to the backing directory; the journal keeps only what is needed to undo
//! them. For file data that is the length at the last sync and the old bytes of anything
//! overwritten below it; for directory entries it is an ordered list of namespace operations,
//! each waiting for the fsync of the directories it touched.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// A backing file's identity (device, inode): stable across renames and unlinks.
pub type FileKey = (u64, u64);

/// The sector size a torn write is cut at.
pub const SECTOR: u64 = 512;

/// At most this many entries and files are listed by name in a report; counts are exact.
const REPORT_LIST_MAX: usize = 200;

/// A small seeded generator (SplitMix64), so that `lose-power tear SEED` is reproducible
/// without a dependency.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0); the modulo bias is irrelevant for picking a sector.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Where a torn append is cut: its start, or a sector boundary inside it, or its end if that
/// is a boundary. Whole sectors only, so a reader never sees half a sector of new data.
pub fn tear_cut(write: Range<u64>, rng: &mut SplitMix) -> u64 {
    let first = write.start / SECTOR;
    let choices = write.end / SECTOR - first + 1;
    match rng.below(choices) {
        0 => write.start,
        i => (first + i) * SECTOR,
    }
}

/// What a power loss undid, reported as one line of JSON.
#[derive(Debug, Default)]
pub struct Report {
    files_rolled_back: u64,
    bytes_dropped: u64,
    bytes_restored: u64,
    bytes_torn_kept: u64,
    entries_undone: u64,
    entries: Vec<String>,
    files: Vec<Value>,
    errors: Vec<String>,
}

impl Report {
    /// Records an undo step that failed; power loss goes on with the others.
    pub fn error(&mut self, what: String) {
        if self.errors.len() < REPORT_LIST_MAX {
            self.errors.push(what);
        }
    }

    /// The report as JSON, with `ok` true.
    pub fn to_json(&self) -> Value {
        json!({
            "ok": true,
            "files_rolled_back": self.files_rolled_back,
            "bytes_dropped": self.bytes_dropped,
            "bytes_restored": self.bytes_restored,
            "bytes_torn_kept": self.bytes_torn_kept,
            "entries_undone": self.entries_undone,
            "entries": self.entries,
            "files": self.files,
            "undo_errors": self.errors,
        })
    }
}

/// The undo record of one file changed since its last sync.
#[derive(Debug)]
struct FileUndo {
    /// A read-write descriptor of the backing inode, so rollback reaches it wherever it was
    /// renamed (or whether it was unlinked).
    file: File,
    /// Its path when first changed, for the report only.
    path: PathBuf,
    /// The length at the last sync (or when the journal first saw it).
    durable_len: u64,
    /// Old bytes of ranges below `durable_len` changed since the sync, non-overlapping; each
    /// byte is saved once, at its first change, which is what the sync left there.
    saved: BTreeMap<u64, Vec<u8>>,
    /// The last change, if it was a write at or past the end of file: the one a tear cuts.
    last_append: Option<Range<u64>>,
}

impl FileUndo {
    /// The parts of `range` not saved yet.
    fn unsaved(&self, range: Range<u64>) -> Vec<Range<u64>> {
        let mut gaps = Vec::new();
        let mut at = range.start;
        for (&start, bytes) in self.saved.range(..range.end) {
            let end = start + bytes.len() as u64;
            if end <= at {
                continue;
            }
            if start > at {
                gaps.push(at..start);
            }
            at = end;
        }
        if at < range.end {
            gaps.push(at..range.end);
        }
        gaps
    }

    /// Saves the old bytes of `range` below the durable length, before it is changed.
    fn save(&mut self, range: Range<u64>, size_now: u64) -> io::Result<()> {
        let end = range.end.min(self.durable_len).min(size_now);
        if range.start >= end {
            return Ok(());
        }
        for gap in self.unsaved(range.start..end) {
            let mut old = vec![0; (gap.end - gap.start) as usize];
            self.file.read_exact_at(&mut old, gap.start)?;
            self.saved.insert(gap.start, old);
        }
        Ok(())
    }

    /// What a tear keeps of a file whose last change was an append (its offset and bytes),
    /// read before rollback: the unsynced appended bytes reach the disk in order and the
    /// power cuts them at a sector boundary, so a contiguous prefix of everything past the
    /// durable length stays — never a hole before data.
    fn torn_prefix(&self, size: u64, rng: &mut SplitMix) -> io::Result<Option<(u64, Vec<u8>)>> {
        if self.last_append.is_none() || size <= self.durable_len {
            return Ok(None);
        }
        let start = self.durable_len;
        let cut = tear_cut(start..size, rng);
        if cut <= start {
            return Ok(None);
        }
        let mut kept = vec![0; (cut - start) as usize];
        self.file.read_exact_at(&mut kept, start)?;
        Ok(Some((start, kept)))
    }

    /// Puts the file back as it was at its last sync (plus a torn prefix), and syncs it.
    fn roll_back(&self, rng: Option<&mut SplitMix>) -> io::Result<Value> {
        let size = self.file.metadata()?.len();
        let torn = match rng {
            Some(rng) => self.torn_prefix(size, rng)?,
            None => None,
        };
        self.file.set_len(self.durable_len)?;
        let mut restored = 0;
        for (&offset, old) in &self.saved {
            self.file.write_all_at(old, offset)?;
            restored += old.len() as u64;
        }
        let mut kept = 0;
        if let Some((offset, bytes)) = torn {
            self.file.write_all_at(&bytes, offset)?;
            kept = bytes.len() as u64;
        }
        self.file.sync_all()?;
        let dropped = size.saturating_sub(self.durable_len).saturating_sub(kept);
        Ok(json!({
            "path": self.path.display().to_string(),
            "durable_len": self.durable_len,
            "bytes_dropped": dropped,
            "bytes_restored": restored,
            "bytes_torn_kept": kept,
        }))
    }
}

/// File data changed since each file's last sync.
#[derive(Debug, Default)]
pub struct DataJournal {
    files: HashMap<FileKey, FileUndo>,
}

impl DataJournal {
    /// The file's undo record, started now (durable length = its size now) if it had none.
    fn record(&mut self, key: FileKey, file: &File, path: &Path, size_now: u64) -> io::Result<&mut FileUndo> {
        Ok(match self.files.entry(key) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => entry.insert(FileUndo {
                file: file.try_clone()?,
                path: path.to_path_buf(),
                durable_len: size_now,
                saved: BTreeMap::new(),
                last_append: None,
            }),
        })
    }

    /// Call before writing `len` bytes at `offset` of a file `size_now` long.
    pub fn before_write(
        &mut self,
        key: FileKey,
        file: &File,
        path: &Path,
        at: Range<u64>,
        size_now: u64,
    ) -> io::Result<()> {
        self.record(key, file, path, size_now)?.save(at, size_now)
    }

    /// Call after a write of `at` to a file that was `size_before` long: remembers it as the
    /// last append when it started at or past the end of file.
    pub fn after_write(&mut self, key: FileKey, at: Range<u64>, size_before: u64) {
        if let Some(undo) = self.files.get_mut(&key) {
            let append = at.start >= size_before && !at.is_empty();
            undo.last_append = append.then_some(at);
        }
    }

    /// Call before any other change of `range` (truncate, hole punch, preallocation): saves
    /// what it may destroy, and ends the last write's claim to being the last change.
    pub fn before_change(
        &mut self,
        key: FileKey,
        file: &File,
        path: &Path,
        range: Range<u64>,
        size_now: u64,
    ) -> io::Result<()> {
        let undo = self.record(key, file, path, size_now)?;
        undo.last_append = None;
        undo.save(range, size_now)
    }

    /// The file was synced: what it holds now is durable.
    pub fn synced(&mut self, key: FileKey) {
        self.files.remove(&key);
    }

    /// Files with unsynced changes, and their unsynced bytes (past the durable length plus
    /// overwritten below it).
    pub fn stats(&self) -> (u64, u64) {
        let bytes = self.files.values().map(|undo| {
            let size = undo.file.metadata().map(|m| m.len()).unwrap_or(0);
            let saved: u64 = undo.saved.values().map(|old| old.len() as u64).sum();
            size.saturating_sub(undo.durable_len) + saved
        });
        (self.files.len() as u64, bytes.sum())
    }

    /// Rolls every file back to its last sync (a torn prefix of each last append kept when
    /// `tear` is given) and empties the journal.
    pub fn roll_back(&mut self, mut tear: Option<&mut SplitMix>, report: &mut Report) {
        let mut files: Vec<FileUndo> = self.files.drain().map(|(_, undo)| undo).collect();
        // Sorted, so that a tear seed picks the same cuts in every run.
        files.sort_by(|a, b| a.path.cmp(&b.path));
        for undo in files {
            match undo.roll_back(tear.as_deref_mut()) {
                Ok(done) => report.file(done),
                Err(e) => report.error(format!("roll back {}: {e}", undo.path.display())),
            }
        }
    }
}

impl Report {
    fn file(&mut self, done: Value) {
        let field = |name: &str| done.get(name).and_then(Value::as_u64).unwrap_or(0);
        self.files_rolled_back += 1;
        self.bytes_dropped += field("bytes_dropped");
        self.bytes_restored += field("bytes_restored");
        self.bytes_torn_kept += field("bytes_torn_kept");
        if self.files.len() < REPORT_LIST_MAX {
            self.files.push(done);
        }
    }

    fn entry(&mut self, what: String) {
        self.entries_undone += 1;
        if self.entries.len() < REPORT_LIST_MAX {
            self.entries.push(what);
        }
    }
}

/// A namespace change, with paths relative to the backing directory.
#[derive(Debug, Clone)]
pub enum NsChange {
    /// A regular file created.
    Create {
        /// Its path.
        path: PathBuf,
    },
    /// A directory created.
    Mkdir {
        /// Its path.
        path: PathBuf,
    },
    /// A file unlinked or a directory removed: it waits in the trash until this is durable.
    Remove {
        /// Where it was.
        path: PathBuf,
        /// Where it waits, in the trash.
        trash: PathBuf,
        /// Whether it is a directory (rmdir).
        dir: bool,
    },
    /// A rename; what it replaced waits in the trash until this is durable.
    Rename {
        /// The old name.
        from: PathBuf,
        /// The new name.
        to: PathBuf,
        /// The replaced entry's place in the trash.
        replaced: Option<PathBuf>,
    },
}

impl NsChange {
    fn describe(&self) -> String {
        match self {
            NsChange::Create { path } => format!("create {}", path.display()),
            NsChange::Mkdir { path } => format!("mkdir {}", path.display()),
            NsChange::Remove { path, dir: false, .. } => format!("unlink {}", path.display()),
            NsChange::Remove { path, dir: true, .. } => format!("rmdir {}", path.display()),
            NsChange::Rename { from, to, replaced } => {
                let over = if replaced.is_some() { " (replacing)" } else { "" };
                format!("rename {} -> {}{over}", from.display(), to.display())
            }
        }
    }

    /// Reverses the change in the backing directory `root`.
    fn undo(&self, root: &Path) -> io::Result<()> {
        match self {
            NsChange::Create { path } => std::fs::remove_file(root.join(path)),
            // Whatever was made inside a lost directory is lost with it.
            NsChange::Mkdir { path } => std::fs::remove_dir_all(root.join(path)),
            NsChange::Remove { path, trash, .. } => std::fs::rename(root.join(trash), root.join(path)),
            NsChange::Rename { from, to, replaced } => {
                std::fs::rename(root.join(to), root.join(from))?;
                match replaced {
                    Some(trash) => std::fs::rename(root.join(trash), root.join(to)),
                    None => Ok(()),
                }
            }
        }
    }

    /// The change is durable: nothing can bring back what waited in the trash.
    fn finish(&self, root: &Path) -> io::Result<()> {
        let trash = match self {
            NsChange::Remove { trash, .. } => trash,
            NsChange::Rename { replaced: Some(trash), .. } => trash,
            _ => return Ok(()),
        };
        remove_any(&root.join(trash))
    }
}

/// Removes a file or a directory tree.
pub fn remove_any(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path)?.is_dir() {
        true => std::fs::remove_dir_all(path),
        false => std::fs::remove_file(path),
    }
}

/// A namespace change waiting for the fsync of the directories it touched.
#[derive(Debug)]
struct NsOp {
    change: NsChange,
    /// Inode numbers of the directories still to be fsynced.
    pending: Vec<u64>,
}

/// Namespace changes not yet durable, oldest first.
#[derive(Debug, Default)]
pub struct NsJournal {
    ops: Vec<NsOp>,
}

impl NsJournal {
    /// Records a change in the directories with inode numbers `dirs`.
    pub fn push(&mut self, change: NsChange, dirs: &[u64]) {
        let mut pending = dirs.to_vec();
        pending.dedup();
        self.ops.push(NsOp { change, pending });
    }

    /// Unsynced namespace changes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The directory with inode number `dir` was fsynced: every change that waited only for
    /// it is durable, and what those left in the trash is deleted.
    pub fn dir_synced(&mut self, dir: u64, root: &Path) -> io::Result<()> {
        let mut result = Ok(());
        let mut kept = Vec::with_capacity(self.ops.len());
        for mut op in self.ops.drain(..) {
            op.pending.retain(|&d| d != dir);
            if !op.pending.is_empty() {
                kept.push(op);
            } else if let Err(e) = op.change.finish(root) {
                result = Err(e);
            }
        }
        self.ops = kept;
        result
    }

    /// Undoes every change, newest first, so each finds the namespace as it left it.
    pub fn undo_all(&mut self, root: &Path, report: &mut Report) {
        while let Some(op) = self.ops.pop() {
            let what = op.change.describe();
            match op.change.undo(root) {
                Ok(()) => report.entry(what),
                Err(e) => report.error(format!("undo {what}: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tear_cuts_only_at_sector_boundaries() {
        let mut rng = SplitMix::new(7);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let cut = tear_cut(1000..3000, &mut rng);
            assert!(cut == 1000 || (cut.is_multiple_of(SECTOR) && cut > 1000 && cut <= 3000), "{cut}");
            seen.insert(cut);
        }
        assert_eq!(seen.len(), 5, "start plus 1024, 1536, 2048, 2560: {seen:?}");
    }

    #[test]
    fn unsaved_skips_saved_ranges() {
        let dir = std::env::temp_dir().join(format!("lossyfs-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = File::options().read(true).write(true).create(true).truncate(true).open(dir.join("f")).unwrap();
        file.write_all_at(&[1; 100], 0).unwrap();
        let mut undo = FileUndo { file, path: "f".into(), durable_len: 100, saved: BTreeMap::new(), last_append: None };
        undo.save(10..20, 100).unwrap();
        undo.save(30..40, 100).unwrap();
        assert_eq!(undo.unsaved(0..50), vec![0..10, 20..30, 40..50]);
        undo.save(0..200, 100).unwrap();
        assert!(undo.unsaved(0..100).is_empty());
        assert_eq!(undo.saved.values().map(Vec::len).sum::<usize>(), 100);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
