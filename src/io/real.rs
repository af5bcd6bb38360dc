//! The real backend: `std::fs`, `memmap2`, and `fcntl`/`fallocate` through `libc` on Linux
//! (`fs2` elsewhere).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU8;
use std::sync::Arc;

use super::{DirEntry, DirLock, MapMut, OpenMode, Storage, StorageFile, StreamFile};
use crate::error::{Error, Result};

mod direct;
use direct::DirectStream;

/// Name of the lock file Kafka keeps in every log dir.
pub const LOCK_FILE_NAME: &str = ".lock";

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealStorage;

impl RealStorage {
    /// A shared handle, the form the engine takes storage in.
    pub fn shared() -> Arc<dyn Storage> {
        Arc::new(RealStorage)
    }
}

impl Storage for RealStorage {
    fn open(&self, path: &Path, mode: OpenMode) -> Result<Arc<dyn StorageFile>> {
        let mut opts = OpenOptions::new();
        opts.read(true);
        match mode {
            OpenMode::Read => {}
            OpenMode::ReadWrite => {
                opts.write(true);
            }
            OpenMode::Create => {
                opts.write(true).create(true);
            }
            OpenMode::CreateNew => {
                opts.write(true).create_new(true);
            }
        }
        let file = opts.open(path).map_err(|e| Error::io("open", path, e))?;
        Ok(Arc::new(RealFile {
            file,
            path: path.to_path_buf(),
        }))
    }

    fn try_exists(&self, path: &Path) -> Result<bool> {
        path.try_exists().map_err(|e| Error::io("stat", path, e))
    }

    fn create_dir_all(&self, path: &Path) -> Result<()> {
        fs::create_dir_all(path).map_err(|e| Error::io("create_dir", path, e))
    }

    fn list_dir(&self, dir: &Path) -> Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))? {
            let entry = entry.map_err(|e| Error::io("list", dir, e))?;
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if let Ok(name) = entry.file_name().into_string() {
                out.push(DirEntry { name, is_dir });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        fs::rename(from, to).map_err(|e| Error::io("rename", from, e))
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        fs::remove_file(path).map_err(|e| Error::io("remove", path, e))
    }

    fn remove_dir(&self, path: &Path) -> Result<()> {
        fs::remove_dir(path).map_err(|e| Error::io("remove_dir", path, e))
    }

    fn sync_dir(&self, dir: &Path) -> Result<()> {
        let d = File::open(dir).map_err(|e| Error::io("open_dir", dir, e))?;
        d.sync_all().map_err(|e| Error::io("sync_dir", dir, e))
    }

    fn lock_dir(&self, dir: &Path) -> Result<Box<dyn DirLock>> {
        let path = dir.join(LOCK_FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        RealDirLock::take(file, lock::try_lock, dir, &path)
    }

    fn lock_dir_shared(&self, dir: &Path) -> Result<Box<dyn DirLock>> {
        let path = dir.join(LOCK_FILE_NAME);
        let file = File::open(&path).map_err(|e| Error::io("open", &path, e))?;
        RealDirLock::take(file, lock::try_lock_shared, dir, &path)
    }

    /// Writes around the page cache (`O_DIRECT`) where the file system allows it.
    fn create_stream(&self, path: &Path) -> Result<Box<dyn StreamFile>> {
        match DirectStream::create(path)? {
            Some(direct) => Ok(Box::new(direct)),
            None => super::buffered_stream(self, path),
        }
    }
}

#[derive(Debug)]
struct RealDirLock {
    file: File,
    dir: PathBuf,
}

impl RealDirLock {
    /// Locks `file`, the lock file at `path` of `dir`, with `try_lock`; a lock someone
    /// else holds is [`Error::DirLocked`].
    fn take(
        file: File,
        try_lock: fn(&File) -> io::Result<()>,
        dir: &Path,
        path: &Path,
    ) -> Result<Box<dyn DirLock>> {
        try_lock(&file).map_err(|e| {
            if lock::is_conflict(&e) {
                Error::DirLocked {
                    dir: dir.to_path_buf(),
                }
            } else {
                Error::io("lock", path, e)
            }
        })?;
        Ok(Box::new(RealDirLock {
            file,
            dir: dir.to_path_buf(),
        }))
    }
}

impl DirLock for RealDirLock {
    fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Unlocks before the file closes: the lock lives as long as any copy of its descriptor,
/// and a process forked meanwhile (another thread spawning a program) holds a copy until
/// it execs or exits, so that closing the file alone could leave the dir locked for a
/// while after it was closed. An explicit unlock releases it at once.
impl Drop for RealDirLock {
    fn drop(&mut self) {
        // Nothing to report to; the close that follows releases it at the latest.
        let _ = lock::unlock(&self.file);
    }
}

/// Reserves the blocks of `file` up to `len`, extending it to `len` if shorter. On Linux,
/// `fallocate`, whose failure sets `errno` (a full disk is `ENOSPC`, which
/// [`Error::is_disk_full`] recognizes; `fs2`'s `posix_fallocate` returns its error code
/// instead of setting `errno`, and reported whatever `errno` held before).
#[cfg(target_os = "linux")]
fn preallocate(file: &File, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
    loop {
        // SAFETY: the descriptor is open for as long as `file` is borrowed.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
        if rc == 0 {
            return Ok(());
        }
        // Interrupted by a signal (a handler without `SA_RESTART`): asked again, as the
        // standard library asks again for the calls it wraps.
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn preallocate(file: &File, len: u64) -> io::Result<()> {
    fs2::FileExt::allocate(file, len)
}

/// The lock on a dir's `.lock` file.
///
/// On Linux, an open file description lock (`F_OFD_SETLK`) on the whole file. It conflicts
/// with the traditional `fcntl` record lock that Kafka's broker holds on each of its log
/// dirs' `.lock` (the JVM's `FileChannel.tryLock`), which a `flock` does not see: so the
/// CLI cannot recover or clean a dir a running broker owns, nor a broker start on one
/// partlog has open. Like a `flock`, and unlike a traditional record lock, it belongs to
/// the open file description: a second open of the same dir in this process conflicts
/// just as another process would, and closing some other descriptor of the file does not
/// release it. Elsewhere, a `flock`.
mod lock {
    use std::fs::File;
    use std::io;

    #[cfg(target_os = "linux")]
    pub fn try_lock(file: &File) -> io::Result<()> {
        ofd_lock(file, libc::F_WRLCK)
    }

    /// A read lock: it needs the file open for reading only.
    #[cfg(target_os = "linux")]
    pub fn try_lock_shared(file: &File) -> io::Result<()> {
        ofd_lock(file, libc::F_RDLCK)
    }

    #[cfg(target_os = "linux")]
    pub fn unlock(file: &File) -> io::Result<()> {
        ofd_lock(file, libc::F_UNLCK)
    }

    #[cfg(target_os = "linux")]
    fn ofd_lock(file: &File, kind: libc::c_int) -> io::Result<()> {
        use std::os::unix::io::AsRawFd;
        // SAFETY: `flock` is a plain C struct, for which all zeros is a valid value.
        let mut range: libc::flock = unsafe { std::mem::zeroed() };
        range.l_type = kind as libc::c_short;
        range.l_whence = libc::SEEK_SET as libc::c_short;
        // l_start 0 and l_len 0: the whole file, however long; l_pid must be 0.
        // SAFETY: the descriptor is open for as long as `file` is borrowed, and `range`
        // is a valid `flock` that outlives the call.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &range) };
        if rc == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    pub fn try_lock(file: &File) -> io::Result<()> {
        fs2::FileExt::try_lock_exclusive(file)
    }

    #[cfg(not(target_os = "linux"))]
    pub fn try_lock_shared(file: &File) -> io::Result<()> {
        fs2::FileExt::try_lock_shared(file)
    }

    #[cfg(not(target_os = "linux"))]
    pub fn unlock(file: &File) -> io::Result<()> {
        fs2::FileExt::unlock(file)
    }

    /// Whether the lock failed because someone else holds one.
    pub fn is_conflict(err: &io::Error) -> bool {
        err.kind() == io::ErrorKind::WouldBlock
            || matches!(err.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES))
    }
}

#[derive(Debug)]
struct RealFile {
    file: File,
    path: PathBuf,
}

impl RealFile {
    /// Extends the file to `len` by writing zeros.
    fn write_zeros_to(&self, len: u64) -> Result<()> {
        const CHUNK: usize = 64 << 10;
        let zeros = [0u8; CHUNK];
        let mut pos = self.len()?;
        while pos < len {
            let n = ((len - pos) as usize).min(CHUNK);
            self.write_at(&zeros[..n], pos)?;
            pos += n as u64;
        }
        Ok(())
    }
}

impl StorageFile for RealFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> Result<u64> {
        self.file
            .metadata()
            .map(|m| m.len())
            .map_err(|e| Error::io("stat", &self.path, e))
    }

    fn read_at(&self, buf: &mut [u8], pos: u64) -> Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], pos + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("read", &self.path, e)),
            }
        }
        Ok(done)
    }

    fn write_at(&self, buf: &[u8], pos: u64) -> Result<()> {
        self.file
            .write_all_at(buf, pos)
            .map_err(|e| Error::io("write", &self.path, e))
    }

    fn write_all_vectored_at(&self, bufs: &[&[u8]], pos: u64) -> Result<()> {
        const MOST: usize = 4;
        if bufs.len() > MOST {
            return super::write_each_at(self, bufs, pos);
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let mut done = 0usize;
        while done < total {
            // The parts not yet written, the first of them cut where the last call stopped.
            let mut iov = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; MOST];
            let (mut count, mut skip) = (0, done);
            for buf in bufs {
                if skip >= buf.len() {
                    skip -= buf.len();
                    continue;
                }
                let rest = &buf[skip..];
                skip = 0;
                iov[count] = libc::iovec {
                    iov_base: rest.as_ptr() as *mut libc::c_void,
                    iov_len: rest.len(),
                };
                count += 1;
            }
            let at = libc::off_t::try_from(pos + done as u64).map_err(|_| {
                Error::io(
                    "write",
                    &self.path,
                    io::Error::from(io::ErrorKind::InvalidInput),
                )
            })?;
            // SAFETY: `iov[..count]` describes parts of `bufs`, which outlive the call; the
            // kernel only reads them.
            let written =
                unsafe { libc::pwritev(self.file.as_raw_fd(), iov.as_ptr(), count as i32, at) };
            match written {
                n if n > 0 => done += n as usize,
                0 => {
                    let e = io::Error::from(io::ErrorKind::WriteZero);
                    return Err(Error::io("write", &self.path, e));
                }
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(Error::io("write", &self.path, e));
                    }
                }
            }
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<()> {
        self.file
            .set_len(len)
            .map_err(|e| Error::io("set_len", &self.path, e))
    }

    fn allocate(&self, len: u64) -> Result<()> {
        match preallocate(&self.file, len) {
            Ok(()) => Ok(()),
            // The file system cannot preallocate (tmpfs on old kernels): writing zeros
            // allocates the blocks just as well, and a full disk fails here, not later.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EOPNOTSUPP)) => {
                self.write_zeros_to(len)
            }
            Err(e) => Err(Error::io("fallocate", &self.path, e)),
        }
    }

    fn set_modified_ms(&self, ms: i64) -> Result<()> {
        let since = std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
        self.file
            .set_modified(std::time::UNIX_EPOCH + since)
            .map_err(|e| Error::io("set the modification time of", &self.path, e))
    }

    fn modified_ms(&self) -> Result<i64> {
        let modified = self
            .file
            .metadata()
            .and_then(|m| m.modified())
            .map_err(|e| Error::io("stat", &self.path, e))?;
        // Before the epoch (a clock set wrong when written) counts as the epoch.
        let since = modified
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Ok(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }

    fn sync_data(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io("sync", &self.path, e))
    }

    fn map_mut(&self, len: usize) -> Result<Box<dyn MapMut>> {
        // A raw mapping: it hands out a pointer, never a reference to the bytes, which
        // threads change under each other's reads (see `RealMap`). The mapping covers `len`
        // bytes that the caller has made part of the file (it set the length first).
        // partlog maps only index files, each owned by one index object inside the locked
        // log dir, so no other process resizes or writes the file while it is mapped. The
        // index shrinks the file under a live mapping in one place only, the trim on roll
        // (`IndexFile::trimmed_map`), and then just past its published entries: the bytes
        // cut are ones nobody reads or writes through the old mapping, which is dropped
        // once the new one is installed. (A page past the end would fault with SIGBUS if
        // touched, so nothing may read unpublished entries.)
        let map = memmap2::MmapOptions::new()
            .len(len)
            .map_raw(&self.file)
            .map_err(|e| Error::io("mmap", &self.path, e))?;
        Ok(Box::new(RealMap {
            map,
            path: self.path.clone(),
        }))
    }

    fn raw_fd(&self) -> Option<i32> {
        Some(self.file.as_raw_fd())
    }
}

/// A shared mapping of an index file. Its bytes are reached from other threads as atomics
/// only ([`MapMut::bytes`]); the one plain-byte view ([`MapMut::as_mut_slice`]) needs
/// `&mut self`. `MmapRaw` makes no reference to the bytes of its own (its length, flush
/// and debug output read only the pointer and length), so none is ever alive while
/// another thread stores an entry.
#[derive(Debug)]
struct RealMap {
    map: memmap2::MmapRaw,
    path: PathBuf,
}

impl MapMut for RealMap {
    fn bytes(&self) -> &[AtomicU8] {
        // SAFETY: the mapping is `map.len()` bytes from its start, valid while `map` lives
        // (as long as the borrow of `self`), and `AtomicU8` has the layout of `u8`. The
        // only plain-byte view is `as_mut_slice`, which needs `&mut self`, so it never
        // overlaps this one.
        unsafe {
            std::slice::from_raw_parts(self.map.as_mut_ptr().cast::<AtomicU8>(), self.map.len())
        }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, with the exclusive borrow of `self`.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr(), self.map.len()) }
    }

    fn flush(&self) -> Result<()> {
        self.map
            .flush()
            .map_err(|e| Error::io("msync", &self.path, e))
    }

    fn write_back(&self) -> Result<()> {
        // A shared mapping's writes are in the page cache already; fdatasync on the file
        // writes them back with the rest.
        Ok(())
    }
}

/// CPU time the process's threads have run so far, in seconds, summed from Linux's
/// per-thread scheduler statistics (nanoseconds); `None` where those are not available.
/// The page cache's write-back runs in kernel threads and is not counted, and neither is
/// a thread that has exited: a difference of two readings is exact only when the threads
/// that ran between them still live, as the `acks` workload's producer and fetchers do
/// from before its first reading to after its last. (For the benchmarks: the io layer is
/// where the crate talks to the operating system.)
pub fn process_cpu_seconds() -> Option<f64> {
    let mut nanos = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        nanos += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(nanos as f64 / 1e9)
}
