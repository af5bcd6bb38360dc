//! A copy-on-write view of another storage: reads fall through to it, every change stays
//! in memory. `partlog check --dry-run` runs the real recovery on it to report what
//! recovery would do without changing a byte of the log dir.
//!
//! Only what a change touches is held in memory: a file cut by recovery keeps reading its
//! prefix from the disk; a file written to (an index being rebuilt, a copy of damaged
//! bytes) is read in whole first. Directory locks are taken on the underlying storage where
//! its lock file already exists, so a dry run still excludes a broker that has the dir
//! open; elsewhere they are held in memory only, so that the run creates no lock file.

use crate::lock;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU8;
use std::sync::{Arc, Mutex};

use super::{shared_bytes, DirEntry, DirLock, MapMut, OpenMode, Storage, StorageFile};
use crate::error::{Error, Result};

/// See the module docs.
pub struct OverlayStorage {
    base: Arc<dyn Storage>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Files this view changed: `Some` is the file as this view sees it, `None` a removal.
    files: BTreeMap<PathBuf, Option<Arc<Mutex<Layer>>>>,
    /// Directories created in this view.
    dirs: BTreeSet<PathBuf>,
    /// Directories locked in memory.
    locks: BTreeSet<PathBuf>,
}

/// One file: a prefix of the underlying file plus, once written to, its bytes in memory.
struct Layer {
    base: Option<Arc<dyn StorageFile>>,
    /// Bytes of `base` still visible (a cut lowers it).
    base_len: u64,
    len: u64,
    /// The whole file, once anything was written to it.
    bytes: Option<Vec<u8>>,
    modified_ms: i64,
}

impl Layer {
    fn empty() -> Layer {
        Layer {
            base: None,
            base_len: 0,
            len: 0,
            bytes: Some(Vec::new()),
            modified_ms: 0,
        }
    }

    fn read(&self, buf: &mut [u8], pos: u64) -> Result<usize> {
        if pos >= self.len {
            return Ok(0);
        }
        let n = buf.len().min((self.len - pos) as usize);
        let buf = &mut buf[..n];
        if let Some(bytes) = &self.bytes {
            buf.copy_from_slice(&bytes[pos as usize..pos as usize + n]);
            return Ok(n);
        }
        // Past the visible prefix of the underlying file the bytes are zeros (a cut file
        // extended again).
        let from_base = (self.base_len.saturating_sub(pos) as usize).min(n);
        if from_base > 0 {
            if let Some(base) = &self.base {
                base.read_exact_at(&mut buf[..from_base], pos)?;
            }
        }
        buf[from_base..].fill(0);
        Ok(n)
    }

    /// The file's bytes in memory, read in whole the first time.
    fn bytes_mut(&mut self) -> Result<&mut Vec<u8>> {
        if self.bytes.is_none() {
            let mut all = vec![0u8; self.len as usize];
            self.read(&mut all, 0)?;
            self.bytes = Some(all);
        }
        Ok(self.bytes.get_or_insert_with(Vec::new))
    }

    fn set_len(&mut self, len: u64) {
        match &mut self.bytes {
            Some(bytes) => bytes.resize(len as usize, 0),
            None => self.base_len = self.base_len.min(len),
        }
        self.len = len;
    }
}

fn not_found(op: &'static str, path: &Path) -> Error {
    Error::io(op, path, io::Error::from(io::ErrorKind::NotFound))
}

impl OverlayStorage {
    pub fn new(base: Arc<dyn Storage>) -> Arc<OverlayStorage> {
        Arc::new(OverlayStorage {
            base,
            state: Mutex::new(State::default()),
        })
    }

    /// The layer of `path` as this view sees it, bringing an underlying file into the view;
    /// `None` when there is no such file.
    fn layer(&self, state: &mut State, path: &Path) -> Result<Option<Arc<Mutex<Layer>>>> {
        if let Some(entry) = state.files.get(path) {
            return Ok(entry.clone());
        }
        if !self.base.exists(path) || self.is_base_dir(path) {
            return Ok(None);
        }
        let base = self.base.open(path, OpenMode::Read)?;
        let len = base.len()?;
        let layer = Arc::new(Mutex::new(Layer {
            modified_ms: base.modified_ms()?,
            base: Some(base),
            base_len: len,
            len,
            bytes: None,
        }));
        state
            .files
            .insert(path.to_path_buf(), Some(Arc::clone(&layer)));
        Ok(Some(layer))
    }

    fn is_base_dir(&self, path: &Path) -> bool {
        let Some(parent) = path.parent() else {
            return true;
        };
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        self.base
            .list_dir(parent)
            .map(|entries| entries.iter().any(|e| e.name == name && e.is_dir))
            .unwrap_or(false)
    }
}

impl fmt::Debug for OverlayStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OverlayStorage")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Storage for OverlayStorage {
    fn open(&self, path: &Path, mode: OpenMode) -> Result<Arc<dyn StorageFile>> {
        let mut state = lock(&self.state);
        let layer = match (self.layer(&mut state, path)?, mode) {
            (Some(_), OpenMode::CreateNew) => {
                let exists = io::Error::from(io::ErrorKind::AlreadyExists);
                return Err(Error::io("open", path, exists));
            }
            (Some(layer), _) => layer,
            (None, OpenMode::Read | OpenMode::ReadWrite) => return Err(not_found("open", path)),
            (None, OpenMode::Create | OpenMode::CreateNew) => {
                let layer = Arc::new(Mutex::new(Layer::empty()));
                state
                    .files
                    .insert(path.to_path_buf(), Some(Arc::clone(&layer)));
                layer
            }
        };
        Ok(Arc::new(OverlayFile {
            path: path.to_path_buf(),
            layer,
        }))
    }

    fn try_exists(&self, path: &Path) -> Result<bool> {
        let state = lock(&self.state);
        match state.files.get(path) {
            Some(entry) => Ok(entry.is_some()),
            None if state.dirs.contains(path) => Ok(true),
            None => self.base.try_exists(path),
        }
    }

    fn create_dir_all(&self, path: &Path) -> Result<()> {
        let mut state = lock(&self.state);
        for dir in path.ancestors() {
            if dir.as_os_str().is_empty() || self.base.exists(dir) {
                break;
            }
            state.dirs.insert(dir.to_path_buf());
        }
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> Result<Vec<DirEntry>> {
        let state = lock(&self.state);
        let mut entries: BTreeMap<String, bool> = BTreeMap::new();
        if !state.dirs.contains(dir) {
            for e in self.base.list_dir(dir)? {
                entries.insert(e.name, e.is_dir);
            }
        }
        for (path, file) in &state.files {
            let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
                continue;
            };
            if parent == dir {
                let name = name.to_string_lossy().into_owned();
                match file {
                    Some(_) => entries.insert(name, false),
                    None => entries.remove(&name),
                };
            }
        }
        for path in &state.dirs {
            if path.parent() == Some(dir) {
                if let Some(name) = path.file_name() {
                    entries.insert(name.to_string_lossy().into_owned(), true);
                }
            }
        }
        Ok(entries
            .into_iter()
            .map(|(name, is_dir)| DirEntry { name, is_dir })
            .collect())
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let mut state = lock(&self.state);
        let layer = self
            .layer(&mut state, from)?
            .ok_or_else(|| not_found("rename", from))?;
        state.files.insert(from.to_path_buf(), None);
        state.files.insert(to.to_path_buf(), Some(layer));
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        let mut state = lock(&self.state);
        if self.layer(&mut state, path)?.is_none() {
            return Err(not_found("remove", path));
        }
        state.files.insert(path.to_path_buf(), None);
        Ok(())
    }

    fn remove_dir(&self, path: &Path) -> Result<()> {
        let mut state = lock(&self.state);
        if !state.dirs.remove(path) {
            let unsupported = io::Error::from(io::ErrorKind::Unsupported);
            return Err(Error::io("remove dir", path, unsupported));
        }
        Ok(())
    }

    fn sync_dir(&self, _dir: &Path) -> Result<()> {
        Ok(())
    }

    fn lock_dir(&self, dir: &Path) -> Result<Box<dyn DirLock>> {
        if self.base.exists(&dir.join(super::real::LOCK_FILE_NAME)) {
            // A shared lock: the overlay changes nothing underneath, and the base may be
            // read-only.
            return self.base.lock_dir_shared(dir);
        }
        let mut state = lock(&self.state);
        if !state.locks.insert(dir.to_path_buf()) {
            return Err(Error::DirLocked {
                dir: dir.to_path_buf(),
            });
        }
        Ok(Box::new(MemoryLock {
            dir: dir.to_path_buf(),
        }))
    }
}

/// A directory lock of the view only. It is not released on drop: a dry run locks each
/// directory once.
#[derive(Debug)]
struct MemoryLock {
    dir: PathBuf,
}

impl DirLock for MemoryLock {
    fn dir(&self) -> &Path {
        &self.dir
    }
}

struct OverlayFile {
    path: PathBuf,
    layer: Arc<Mutex<Layer>>,
}

impl fmt::Debug for OverlayFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OverlayFile")
            .field("path", &self.path)
            .finish()
    }
}

impl StorageFile for OverlayFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> Result<u64> {
        Ok(lock(&self.layer).len)
    }

    fn read_at(&self, buf: &mut [u8], pos: u64) -> Result<usize> {
        lock(&self.layer).read(buf, pos)
    }

    fn write_at(&self, buf: &[u8], pos: u64) -> Result<()> {
        let mut layer = lock(&self.layer);
        let end = pos as usize + buf.len();
        let bytes = layer.bytes_mut()?;
        if bytes.len() < end {
            bytes.resize(end, 0);
        }
        bytes[pos as usize..end].copy_from_slice(buf);
        layer.len = layer.len.max(end as u64);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<()> {
        lock(&self.layer).set_len(len);
        Ok(())
    }

    fn allocate(&self, len: u64) -> Result<()> {
        let mut layer = lock(&self.layer);
        if layer.len < len {
            layer.set_len(len);
        }
        Ok(())
    }

    fn sync_data(&self) -> Result<()> {
        Ok(())
    }

    fn set_modified_ms(&self, ms: i64) -> Result<()> {
        lock(&self.layer).modified_ms = ms;
        Ok(())
    }

    fn modified_ms(&self) -> Result<i64> {
        Ok(lock(&self.layer).modified_ms)
    }

    fn map_mut(&self, len: usize) -> Result<Box<dyn MapMut>> {
        let mut layer = lock(&self.layer);
        if len as u64 > layer.len {
            let invalid = io::Error::from(io::ErrorKind::InvalidInput);
            return Err(Error::io("mmap", &self.path, invalid));
        }
        let buf = shared_bytes::from_vec(layer.bytes_mut()?[..len].to_vec());
        Ok(Box::new(OverlayMap {
            layer: Arc::clone(&self.layer),
            buf,
        }))
    }
}

/// A map over a copy of the file's start, written back into the layer.
struct OverlayMap {
    layer: Arc<Mutex<Layer>>,
    buf: Box<[AtomicU8]>,
}

impl fmt::Debug for OverlayMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OverlayMap")
            .field("len", &self.buf.len())
            .finish()
    }
}

impl MapMut for OverlayMap {
    fn bytes(&self) -> &[AtomicU8] {
        &self.buf
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        shared_bytes::as_mut_bytes(&mut self.buf)
    }

    fn flush(&self) -> Result<()> {
        self.write_back()
    }

    fn write_back(&self) -> Result<()> {
        let mut layer = lock(&self.layer);
        let bytes = layer.bytes_mut()?;
        // Only the part still inside the file, as a real map.
        let n = self.buf.len().min(bytes.len());
        shared_bytes::load(&self.buf[..n], &mut bytes[..n]);
        Ok(())
    }
}

impl Drop for OverlayMap {
    fn drop(&mut self) {
        // Nothing to report to: the bytes only live in memory anyway.
        let _ = self.write_back();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::sim::SimStorage;

    fn base() -> Arc<SimStorage> {
        let sim = SimStorage::new(1);
        sim.write_raw(Path::new("/d/a.log"), b"0123456789").unwrap();
        sim
    }

    fn read_all(storage: &dyn Storage, path: &Path) -> Vec<u8> {
        let f = storage.open(path, OpenMode::Read).unwrap();
        let mut buf = vec![0u8; f.len().unwrap() as usize];
        f.read_exact_at(&mut buf, 0).unwrap();
        buf
    }

    #[test]
    fn changes_stay_in_the_view() {
        let sim = base();
        let view = OverlayStorage::new(sim.clone());
        let a = view
            .open(Path::new("/d/a.log"), OpenMode::ReadWrite)
            .unwrap();
        a.set_len(4).unwrap();
        assert_eq!(read_all(view.as_ref(), Path::new("/d/a.log")), b"0123");
        a.allocate(6).unwrap();
        assert_eq!(read_all(view.as_ref(), Path::new("/d/a.log")), b"0123\0\0");
        let b = view
            .open(Path::new("/d/b.index"), OpenMode::Create)
            .unwrap();
        b.allocate(4).unwrap();
        let mut map = b.map_mut(4).unwrap();
        map.as_mut_slice().copy_from_slice(b"wxyz");
        map.write_back().unwrap();
        view.rename(Path::new("/d/b.index"), Path::new("/d/c.index"))
            .unwrap();
        view.remove_file(Path::new("/d/a.log")).unwrap();
        view.create_dir_all(Path::new("/d/t-0")).unwrap();
        let names: Vec<String> = view
            .list_dir(Path::new("/d"))
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, vec!["c.index", "t-0"]);
        assert_eq!(read_all(view.as_ref(), Path::new("/d/c.index")), b"wxyz");
        // The underlying storage did not change.
        assert_eq!(sim.read_raw(Path::new("/d/a.log")).unwrap(), b"0123456789");
        assert!(!sim.exists(Path::new("/d/c.index")));
        assert!(!sim.exists(Path::new("/d/t-0")));
    }
}
