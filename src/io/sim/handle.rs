//! Open files, maps and directory locks of the simulated disk. Each remembers the crash
//! generation it was made in; after a crash it is dead.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};

use super::file::FileData;
use super::namespace::Ino;
use super::{lock, os, stale_error, Inner, Shared, SimOp, EBADF, EINVAL};
use crate::error::{Error, Result};
use crate::io::{shared_bytes, DirLock, MapMut, StorageFile};

/// An open simulated file. It names an inode, so it keeps working after its path is
/// renamed or removed, as a real descriptor does.
pub(crate) struct SimFile {
    shared: Shared,
    path: PathBuf,
    ino: Ino,
    generation: u64,
    writable: bool,
}

impl std::fmt::Debug for SimFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimFile")
            .field("path", &self.path)
            .field("ino", &self.ino)
            .field("generation", &self.generation)
            .finish()
    }
}

impl SimFile {
    pub(crate) fn new(
        shared: Shared,
        path: &Path,
        ino: Ino,
        generation: u64,
        writable: bool,
    ) -> Self {
        SimFile {
            shared,
            path: path.to_path_buf(),
            ino,
            generation,
            writable,
        }
    }

    /// Runs `f` on the file's data after the staleness check, wrapping errors.
    fn with<T>(
        &self,
        op: &'static str,
        fault_op: Option<SimOp>,
        f: impl FnOnce(&mut Inner, Ino) -> io::Result<T>,
    ) -> Result<T> {
        let mut inner = lock(&self.shared);
        let run = |inner: &mut Inner| -> io::Result<T> {
            inner.check_generation(self.generation)?;
            if let Some(op) = fault_op {
                if let Some(kind) = inner.roll(op, &self.path) {
                    return Err(inner.fault(kind));
                }
            }
            f(inner, self.ino)
        };
        run(&mut inner).map_err(|e| Error::io(op, &self.path, e))
    }

    fn check_writable(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(os(EBADF))
        }
    }
}

fn data(inner: &mut Inner, ino: Ino) -> io::Result<&mut FileData> {
    // An open handle keeps its inode alive until a crash, which makes the handle stale.
    inner.files.get_mut(&ino).ok_or_else(stale_error)
}

/// Blocks a sync of `path` while [`super::SimStorage::hold_syncs`] holds it, outside the
/// disk's lock, so that other calls go on meanwhile.
fn wait_while_held(shared: &Shared, path: &Path) {
    let mut waiting = false;
    loop {
        let mut inner = lock(shared);
        if !inner.sync_held(path) {
            if waiting {
                inner.syncs_waiting -= 1;
            }
            return;
        }
        if !waiting {
            inner.syncs_waiting += 1;
            waiting = true;
        }
        drop(inner);
        std::thread::yield_now();
    }
}

/// Forgets one open handle or map of `ino` (unless a crash forgot them all already).
fn release(inner: &mut Inner, ino: Ino, generation: u64) {
    if inner.generation != generation {
        return;
    }
    if let Some(n) = inner.open.get_mut(&ino) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            inner.open.remove(&ino);
        }
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        release(&mut lock(&self.shared), self.ino, self.generation);
    }
}

impl StorageFile for SimFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> Result<u64> {
        self.with("stat", None, |inner, ino| Ok(data(inner, ino)?.len()))
    }

    fn read_at(&self, buf: &mut [u8], pos: u64) -> Result<usize> {
        self.with("read", Some(SimOp::Read), |inner, ino| {
            Ok(data(inner, ino)?.read(buf, pos))
        })
    }

    fn write_at(&self, buf: &[u8], pos: u64) -> Result<()> {
        self.check_writable()
            .map_err(|e| Error::io("write", &self.path, e))?;
        self.with("write", None, |inner, ino| {
            data(inner, ino)?;
            if let Some(kind) = inner.roll(SimOp::Write, &self.path) {
                // A failed write may have copied part of the buffer before failing.
                let n = inner.rng.below(buf.len() as u64 + 1) as usize;
                data(inner, ino)?.write(&buf[..n], pos).ok();
                return Err(inner.fault(kind));
            }
            let now = inner.now_ms();
            let f = data(inner, ino)?;
            f.modified_ms = now;
            f.write(buf, pos)
        })
    }

    fn set_len(&self, len: u64) -> Result<()> {
        self.check_writable()
            .map_err(|e| Error::io("set_len", &self.path, e))?;
        self.with("set_len", Some(SimOp::Write), |inner, ino| {
            let now = inner.now_ms();
            let f = data(inner, ino)?;
            f.modified_ms = now;
            f.set_len(len)
        })
    }

    fn allocate(&self, len: u64) -> Result<()> {
        self.check_writable()
            .map_err(|e| Error::io("allocate", &self.path, e))?;
        self.with("allocate", Some(SimOp::Write), |inner, ino| {
            let f = data(inner, ino)?;
            if f.len() < len {
                f.set_len(len)?;
            }
            Ok(())
        })
    }

    fn set_modified_ms(&self, ms: i64) -> Result<()> {
        self.with("utimes", None, |inner, ino| {
            data(inner, ino)?.modified_ms = ms;
            Ok(())
        })
    }

    fn modified_ms(&self) -> Result<i64> {
        self.with("stat", None, |inner, ino| Ok(data(inner, ino)?.modified_ms))
    }

    fn sync_data(&self) -> Result<()> {
        wait_while_held(&self.shared, &self.path);
        self.with("sync", Some(SimOp::Sync), |inner, ino| {
            data(inner, ino)?.sync();
            Ok(())
        })
    }

    fn map_mut(&self, len: usize) -> Result<Box<dyn MapMut>> {
        self.check_writable()
            .map_err(|e| Error::io("mmap", &self.path, e))?;
        let buf = self.with("mmap", None, |inner, ino| {
            let f = data(inner, ino)?;
            if (len as u64) > f.len() {
                return Err(os(EINVAL));
            }
            let buf = f.written[..len].to_vec();
            // Like a real mapping, the map keeps the file alive after its name is gone.
            *inner.open.entry(ino).or_insert(0) += 1;
            Ok(buf)
        })?;
        Ok(Box::new(SimMap {
            shared: self.shared.clone(),
            path: self.path.clone(),
            ino: self.ino,
            generation: self.generation,
            buf: shared_bytes::from_vec(buf),
        }))
    }
}

/// A map over a copy of the start of a file; written back on flush and on drop, and at
/// once for what goes through [`MapMut::store`] and [`MapMut::zero`] (the index writes),
/// as a shared mapping's stores reach the page cache: a process death keeps them.
pub(crate) struct SimMap {
    shared: Shared,
    path: PathBuf,
    ino: Ino,
    generation: u64,
    buf: Box<[AtomicU8]>,
}

impl std::fmt::Debug for SimMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimMap")
            .field("path", &self.path)
            .field("len", &self.buf.len())
            .finish()
    }
}

impl SimMap {
    /// Puts `buf[from..to]` into the written image, the part still inside the file; a
    /// map of a process that died since reaches nothing.
    fn write_through(&self, from: usize, to: usize) {
        let mut inner = lock(&self.shared);
        if inner.check_generation(self.generation).is_err() {
            return;
        }
        if let Ok(f) = data(&mut inner, self.ino) {
            let end = to.min(f.written.len());
            if from < end {
                // Within the file's length, so it cannot fail.
                let _ = f.write(&shared_bytes::to_vec(&self.buf[from..end]), from as u64);
            }
        }
    }

    /// Copies the bytes that differ into the written image. Only the part still inside the
    /// file is written back (a real map past the end would fault instead).
    fn write_back(&self, inner: &mut Inner) -> io::Result<usize> {
        let f = data(inner, self.ino)?;
        let n = self.buf.len().min(f.written.len());
        let differs = |&i: &usize| self.buf[i].load(Ordering::Relaxed) != f.written[i];
        if let Some(first) = (0..n).find(differs) {
            let last = (first..n).rfind(differs).map_or(n, |i| i + 1);
            let changed = shared_bytes::to_vec(&self.buf[first..last]);
            f.write(&changed, first as u64)?;
        }
        Ok(n)
    }
}

impl MapMut for SimMap {
    fn bytes(&self) -> &[AtomicU8] {
        &self.buf
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        shared_bytes::as_mut_bytes(&mut self.buf)
    }

    fn write_back(&self) -> Result<()> {
        let mut inner = lock(&self.shared);
        let run = |inner: &mut Inner| -> io::Result<()> {
            inner.check_generation(self.generation)?;
            self.write_back(inner).map(|_| ())
        };
        run(&mut inner).map_err(|e| Error::io("write back map", &self.path, e))
    }

    fn store(&self, at: usize, bytes: &[u8]) {
        shared_bytes::store(&self.buf[at..at + bytes.len()], bytes);
        self.write_through(at, at + bytes.len());
    }

    fn zero(&mut self, from: usize, to: usize) {
        self.as_mut_slice()[from..to].fill(0);
        self.write_through(from, to);
    }

    fn flush(&self) -> Result<()> {
        wait_while_held(&self.shared, &self.path);
        let mut inner = lock(&self.shared);
        let run = |inner: &mut Inner| -> io::Result<()> {
            inner.check_generation(self.generation)?;
            if let Some(kind) = inner.roll(SimOp::Sync, &self.path) {
                return Err(inner.fault(kind));
            }
            let n = self.write_back(inner)?;
            data(inner, self.ino)?.sync_prefix(n);
            Ok(())
        };
        run(&mut inner).map_err(|e| Error::io("msync", &self.path, e))
    }
}

impl Drop for SimMap {
    fn drop(&mut self) {
        let mut inner = lock(&self.shared);
        if inner.generation == self.generation {
            // Dropping a map cannot report an error; a vanished inode just loses the bytes.
            self.write_back(&mut inner).ok();
        }
        release(&mut inner, self.ino, self.generation);
    }
}

/// A held directory lock; released on drop unless a crash released it first.
#[derive(Debug)]
pub(crate) struct SimDirLock {
    shared: Shared,
    dir: PathBuf,
    key: PathBuf,
    generation: u64,
}

impl SimDirLock {
    pub(crate) fn new(shared: Shared, dir: &Path, key: PathBuf, generation: u64) -> Self {
        SimDirLock {
            shared,
            dir: dir.to_path_buf(),
            key,
            generation,
        }
    }
}

impl DirLock for SimDirLock {
    fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for SimDirLock {
    fn drop(&mut self) {
        let mut inner = lock(&self.shared);
        if inner.generation == self.generation {
            inner.locks.remove(&self.key);
        }
    }
}
