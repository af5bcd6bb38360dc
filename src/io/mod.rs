//! The only door to the disk.
//!
//! Every byte partlog reads or writes goes through [`Storage`] and [`StorageFile`]. Two
//! backends implement them:
//!
//! - [`real::RealStorage`]: `std::fs` for files, `memmap2` for index maps, `fcntl` and
//!   `fallocate` for the directory lock and preallocation on Linux (`fs2` elsewhere).
//! - [`sim::SimStorage`]: a deterministic, seeded, in-memory disk that keeps a *written* and a
//!   *durable* image of every file and can crash, tear writes, flip bits and fail calls.
//!
//! Because nothing else in the crate names `std::fs`, a test run on the simulated backend
//! proves that no file access bypasses it.
//!
//! ## Contract (both backends)
//!
//! - `write_at` either writes the whole buffer or returns an error; after an error the bytes
//!   in the range are unspecified (the engine then refuses further writes, see
//!   [`crate::Error::ReadOnly`]).
//! - Nothing written is durable until `sync_data` returns; directory entries (create, rename,
//!   remove) are durable only after `sync_dir` of their parent directory.
//! - `rename` atomically replaces the destination.
//! - A [`MapMut`] sees the file bytes at the time of mapping; its writes reach the file's
//!   page-cache image when it is written back, flushed or dropped, and are durable after
//!   `flush`, or after `write_back` and then `sync_data` of the file. The second way lets
//!   the engine sync an index without holding the lock that guards its map: on Linux a
//!   shared mapping *is* the page cache, and `fdatasync` writes back the pages dirtied
//!   through it (what `msync` does too).

pub mod overlay;
pub mod real;
pub(crate) mod shared_bytes;
pub mod sim;
mod stream;

use std::fmt;
use std::path::Path;
use std::sync::atomic::AtomicU8;
use std::sync::Arc;

use crate::error::Result;
pub use stream::{buffered_stream, BufferedStream, StreamFile};

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Open an existing file for reading only.
    Read,
    /// Open an existing file for reading and writing.
    ReadWrite,
    /// Open for reading and writing, creating the file when it does not exist.
    Create,
    /// Create the file, failing if it already exists.
    CreateNew,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub is_dir: bool,
}

/// A file system: the real one, or the simulated one.
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// Opens `path` as `mode` says. Missing files are an `Io` error of kind `NotFound`.
    fn open(&self, path: &Path, mode: OpenMode) -> Result<Arc<dyn StorageFile>>;
    /// True when `path` names an existing file or directory; false also when that cannot
    /// be told (a `stat` that fails other than with "not found"): see
    /// [`Storage::try_exists`] where the difference matters.
    fn exists(&self, path: &Path) -> bool {
        self.try_exists(path).unwrap_or(false)
    }
    /// Whether `path` names an existing file or directory, or the error that kept it from
    /// being told: for a decision that must not take a failed `stat` for a missing file,
    /// as a log's open reading its dir's markers.
    fn try_exists(&self, path: &Path) -> Result<bool>;
    /// Creates `path` and its missing parents.
    fn create_dir_all(&self, path: &Path) -> Result<()>;
    /// Lists the entries of `dir`, sorted by name.
    fn list_dir(&self, dir: &Path) -> Result<Vec<DirEntry>>;
    /// Atomically renames `from` to `to`, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> Result<()>;
    /// Removes an empty directory.
    fn remove_dir(&self, path: &Path) -> Result<()>;
    /// Makes the entries of `dir` (creates, renames, removes) durable.
    fn sync_dir(&self, dir: &Path) -> Result<()>;
    /// Takes the exclusive lock of `dir`; fails with [`crate::Error::DirLocked`] while another
    /// holder (another process, or another guard in this one) has it. Released on drop.
    fn lock_dir(&self, dir: &Path) -> Result<Box<dyn DirLock>>;
    /// Takes a shared lock of `dir`'s existing lock file, for a reader that changes
    /// nothing in it: it conflicts with [`Storage::lock_dir`]'s holder (a running broker)
    /// as that one does, but not with another reader's, and needs no write permission, so
    /// that a dir on read-only media can be looked at. By default, [`Storage::lock_dir`].
    fn lock_dir_shared(&self, dir: &Path) -> Result<Box<dyn DirLock>> {
        self.lock_dir(dir)
    }
    /// Creates `path`, emptying a leftover, for bytes written once, front to back, then
    /// synced, and not read again soon (see [`StreamFile`]). A backend may write them
    /// around its page cache; by default they go through [`StorageFile::write_at`].
    fn create_stream(&self, path: &Path) -> Result<Box<dyn StreamFile>> {
        buffered_stream(self, path)
    }
}

/// An open file.
pub trait StorageFile: Send + Sync + fmt::Debug {
    /// The path the file was opened with.
    fn path(&self) -> &Path;
    /// Current length in bytes.
    fn len(&self) -> Result<u64>;
    /// True when the file has no bytes.
    fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Reads up to `buf.len()` bytes at `pos`; returns fewer only at end of file.
    fn read_at(&self, buf: &mut [u8], pos: u64) -> Result<usize>;
    /// Writes all of `buf` at `pos`, extending the file if needed.
    fn write_at(&self, buf: &[u8], pos: u64) -> Result<()>;
    /// Writes all of `bufs`, one after the other, from `pos`: one call where the backend
    /// has it (`pwritev`), else a `write_at` each.
    fn write_all_vectored_at(&self, bufs: &[&[u8]], pos: u64) -> Result<()> {
        write_each_at(self, bufs, pos)
    }
    /// Truncates or extends (with zeros) the file to `len`.
    fn set_len(&self, len: u64) -> Result<()>;
    /// Reserves `len` bytes of disk for the file and extends it to at least `len`.
    fn allocate(&self, len: u64) -> Result<()>;
    /// Makes the file's data durable.
    fn sync_data(&self) -> Result<()>;
    /// When the file's bytes last changed, in milliseconds since the Unix epoch (the real
    /// backend's mtime; the simulated disk stamps writes with its clock, see
    /// [`sim::SimStorage::set_clock`]).
    fn modified_ms(&self) -> Result<i64>;
    /// Sets the file's modification time (`ms` since the Unix epoch): a cleaned copy takes
    /// the time of the segments it replaces, as Kafka's cleaner sets it.
    fn set_modified_ms(&self, ms: i64) -> Result<()>;
    /// Maps the first `len` bytes of the file for reading and writing. The file must be at
    /// least `len` bytes long.
    fn map_mut(&self, len: usize) -> Result<Box<dyn MapMut>>;
    /// The raw descriptor for zero-copy transfer (`sendfile`), when the backend has one.
    fn raw_fd(&self) -> Option<i32> {
        None
    }

    /// Reads exactly `buf.len()` bytes at `pos`, or fails with `UnexpectedEof`.
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.read_at(&mut buf[done..], pos + done as u64)?;
            if n == 0 {
                return Err(crate::Error::io(
                    "read",
                    self.path(),
                    std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
                ));
            }
            done += n;
        }
        Ok(())
    }
}

/// Writes `bufs` one after the other from `pos`, a `write_at` each.
pub(crate) fn write_each_at<F: StorageFile + ?Sized>(
    file: &F,
    bufs: &[&[u8]],
    pos: u64,
) -> Result<()> {
    let mut at = pos;
    for buf in bufs {
        file.write_at(buf, at)?;
        at += buf.len() as u64;
    }
    Ok(())
}

/// A writable memory map of the start of a file.
///
/// Shared, a map is read and stored into byte by byte through atomics ([`MapMut::bytes`]):
/// an index's readers look up entries while its writer stores the next ones, and neither
/// waits for the other. Readers keep to the entries the writer published (a count it
/// stores with `Release` after the bytes); the bytes are atomics all the same, so that a
/// caller that reads past it gets stale bytes, never undefined behaviour. Exclusive (`&mut`),
/// a map is a plain byte slice.
pub trait MapMut: Send + Sync + fmt::Debug {
    /// The mapped bytes, for shared reads and stores.
    fn bytes(&self) -> &[AtomicU8];
    fn as_mut_slice(&mut self) -> &mut [u8];
    /// Writes the mapped bytes back and makes them durable (`msync`).
    fn flush(&self) -> Result<()>;
    /// Makes the mapped bytes part of the file's page-cache image without waiting for the
    /// disk; a `sync_data` of the file then makes them durable. No I/O on the real backend,
    /// where the mapping already is the page cache.
    fn write_back(&self) -> Result<()>;
    /// Stores `bytes` at `at` in the map, as a store to a shared mapping does: in the
    /// file's page-cache image at once (a killed process keeps it), durable at the next
    /// flush or sync.
    fn store(&self, at: usize, bytes: &[u8]) {
        shared_bytes::store(&self.bytes()[at..at + bytes.len()], bytes);
    }
    /// Zeroes `from..to` in the map, as [`MapMut::store`] stores.
    fn zero(&mut self, from: usize, to: usize) {
        self.as_mut_slice()[from..to].fill(0);
    }
}

/// An exclusive directory lock, released on drop.
pub trait DirLock: Send + Sync + fmt::Debug {
    fn dir(&self) -> &Path;
}

/// Creates `path` and its missing parents durably: each directory created is made durable by
/// syncing its parent, so a crash after this returns cannot lose the directory (and with it
/// everything synced inside it). The parent of `path` is synced even when `path` was there
/// already: a crash may have come after an earlier call created it and before that call
/// synced its parent, and the entry may not be durable yet.
pub fn create_dir_all_durable(storage: &dyn Storage, path: &Path) -> Result<()> {
    let missing: Vec<&Path> = path
        .ancestors()
        .take_while(|p| !p.as_os_str().is_empty() && !storage.exists(p))
        .collect();
    storage.create_dir_all(path)?;
    let mut to_sync: Vec<&Path> = missing.iter().rev().copied().collect();
    if to_sync.is_empty() {
        to_sync.push(path);
    }
    sync_parents(storage, &to_sync)
}

/// [`create_dir_all_durable`] for a path whose parents an earlier call may have created and
/// then been stopped before it synced them (a killed first open of a log dir): the parents
/// of the components above are synced too, present or not. Those syncs are best effort:
/// an ancestor this process may pass through but not read (a home directory of mode
/// 0711), or a file system that refuses to sync a directory, must not keep a log dir
/// from opening, as neither kept it before. A log dir's path takes it, once per open; a
/// partition's, one level below, need not.
pub fn create_dir_chain_durable(storage: &dyn Storage, path: &Path) -> Result<()> {
    create_dir_all_durable(storage, path)?;
    let above: Vec<&Path> = path
        .ancestors()
        .skip(1)
        .take_while(|p| !p.as_os_str().is_empty())
        .collect();
    for dir in above {
        let _ = sync_parents(storage, &[dir]);
    }
    Ok(())
}

/// Syncs the parent of each of `dirs`, making their entries durable.
fn sync_parents(storage: &dyn Storage, dirs: &[&Path]) -> Result<()> {
    for &dir in dirs {
        if dir.parent().is_some() {
            storage.sync_dir(parent_dir(dir))?;
        } // else the root
    }
    Ok(())
}

/// The directory that holds `path`: its parent, or the working directory for a relative
/// path of one component (`data`, whose parent is the empty path, which names nothing).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Mutex;

    use super::*;
    use crate::Error;

    /// A file system of directories alone: it has those it was asked to create, and
    /// records the ones synced.
    #[derive(Debug, Default)]
    struct Dirs {
        made: Mutex<Vec<PathBuf>>,
        synced: Mutex<Vec<PathBuf>>,
    }

    fn no_files() -> Error {
        Error::InvalidConfig("a file system of directories alone".into())
    }

    impl Storage for Dirs {
        fn open(&self, _: &Path, _: OpenMode) -> Result<Arc<dyn StorageFile>> {
            Err(no_files())
        }
        fn try_exists(&self, path: &Path) -> Result<bool> {
            Ok(self.made.lock().unwrap().iter().any(|p| p == path))
        }
        fn create_dir_all(&self, path: &Path) -> Result<()> {
            let mut made = self.made.lock().unwrap();
            made.extend(path.ancestors().map(Path::to_path_buf));
            Ok(())
        }
        fn list_dir(&self, _: &Path) -> Result<Vec<DirEntry>> {
            Ok(Vec::new())
        }
        fn rename(&self, _: &Path, _: &Path) -> Result<()> {
            Err(no_files())
        }
        fn remove_file(&self, _: &Path) -> Result<()> {
            Err(no_files())
        }
        fn remove_dir(&self, _: &Path) -> Result<()> {
            Err(no_files())
        }
        fn sync_dir(&self, dir: &Path) -> Result<()> {
            self.synced.lock().unwrap().push(dir.to_path_buf());
            Ok(())
        }
        fn lock_dir(&self, _: &Path) -> Result<Box<dyn DirLock>> {
            Err(no_files())
        }
    }

    fn synced_for(path: &str) -> Vec<PathBuf> {
        let dirs = Dirs::default();
        create_dir_all_durable(&dirs, Path::new(path)).unwrap();
        dirs.synced.into_inner().unwrap()
    }

    /// Each directory created is made durable by a sync of its parent: the working
    /// directory for a relative path of one component, which used to be synced by no one
    /// (its parent is the empty path), so that a crash could lose `data` and all in it.
    #[test]
    fn every_directory_created_has_its_parent_synced() {
        assert_eq!(synced_for("data"), vec![PathBuf::from(".")]);
        assert_eq!(
            synced_for("data/t-0"),
            vec![PathBuf::from("."), PathBuf::from("data")]
        );
        assert_eq!(
            synced_for("/srv/data"),
            vec![PathBuf::from("/"), PathBuf::from("/srv")]
        );
    }

    /// A checkpoint written by a relative name of one component syncs the working
    /// directory. It synced the empty path, which fails on Linux (`ENOENT`) after the
    /// rename was done (the simulated disk took it for its root, and hid that): the write
    /// reported an error and left its rename unsynced.
    #[test]
    fn a_file_named_relative_to_the_working_directory_syncs_it() {
        assert_eq!(parent_dir(Path::new("x")), Path::new("."));
        assert_eq!(parent_dir(Path::new("d/x")), Path::new("d"));
        assert_eq!(parent_dir(Path::new("/x")), Path::new("/"));
        let sim = sim::SimStorage::new(1);
        assert!(
            sim.sync_dir(Path::new("")).is_err(),
            "the empty path names nothing"
        );
        crate::checkpoint::write_atomic(sim.as_ref(), Path::new("x"), "0\n0\n").unwrap();
        let real = real::RealStorage;
        let tmp = tempfile::tempdir().unwrap();
        assert!(real.sync_dir(Path::new("")).is_err());
        real.sync_dir(parent_dir(&tmp.path().join("x"))).unwrap();
    }
}
