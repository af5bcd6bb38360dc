//! The deterministic, seeded, in-memory, fault-injecting backend.
//!
//! [`SimStorage`] models what a real disk and kernel promise and no more:
//!
//! - every file has a *written* image (the page cache, what reads see) and a *durable* image
//!   (what the last `sync_data` left on the medium);
//! - creates, renames and removes are visible at once but durable only after `sync_dir` of
//!   the directory they change (directories are modeled like files: `create_dir_all` must be
//!   followed by `sync_dir` of each new directory's parent);
//! - [`SimStorage::crash`] is power loss: each file keeps its durable image plus possibly part
//!   of what was not synced (whole, a prefix, a torn prefix, or old/new per 512-byte sector),
//!   and the directory tree keeps its durable entries plus a random prefix of the unsynced
//!   operations. Locks are released and handles opened before the crash fail with `ESTALE`;
//! - faults: per-call probabilities ([`FaultPlan`]), one-shot failures
//!   ([`SimStorage::fail_nth`]), and direct damage (`flip_bit`, `zero_range`, …).
//!
//! Every random choice comes from one [`SimRng`] seeded at creation, so the same seed and the
//! same calls give the same disk.
//!
//! ```
//! use std::path::Path;
//! use partlog::io::{OpenMode, Storage};
//! use partlog::io::sim::SimStorage;
//!
//! # fn main() -> partlog::Result<()> {
//! let sim = SimStorage::new(42);
//! let storage: std::sync::Arc<dyn Storage> = sim.clone();
//! storage.create_dir_all(Path::new("/data"))?;
//! let f = storage.open(Path::new("/data/a.log"), OpenMode::CreateNew)?;
//! f.write_at(b"hello", 0)?;
//! sim.crash(); // nothing was synced: the file (and /data) may be gone
//! assert!(f.len().is_err()); // the handle is stale
//! # Ok(())
//! # }
//! ```

mod faults;
mod file;
mod handle;
mod namespace;
mod rng;
mod storage;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

pub use faults::{FaultKind, FaultPlan, SimCounters, SimOp, EIO, ENOSPC};
pub use file::{FILE_BYTES_MAX, SECTOR_BYTES};
pub use rng::SimRng;

use super::{DirEntry, DirLock, OpenMode, Storage, StorageFile};
use crate::clock::Clock;
use crate::error::{Error, Result};
use faults::Faults;
use file::FileData;
use handle::{SimDirLock, SimFile};
use namespace::{components, Ino, Namespace};

pub(crate) const ENOENT: i32 = 2;
pub(crate) const EBADF: i32 = 9;
pub(crate) const EEXIST: i32 = 17;
pub(crate) const ENOTDIR: i32 = 20;
pub(crate) const EISDIR: i32 = 21;
pub(crate) const EINVAL: i32 = 22;
pub(crate) const ENOTEMPTY: i32 = 39;
/// `ESTALE`: what every call on a handle opened before a crash returns.
pub const ESTALE: i32 = 116;

/// Name of the file `lock_dir` creates, as the real backend does.
const LOCK_FILE_NAME: &str = super::real::LOCK_FILE_NAME;

fn os(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

pub(crate) fn stale_error() -> io::Error {
    os(ESTALE)
}

/// Everything the simulated disk holds, behind one mutex.
struct Inner {
    rng: SimRng,
    /// Bumped by every crash; handles and locks from an older generation are dead.
    generation: u64,
    ns: Namespace,
    files: BTreeMap<Ino, FileData>,
    /// Open handles per inode, so removed-but-open files stay readable.
    open: BTreeMap<Ino, usize>,
    /// Normalized paths of locked directories.
    locks: BTreeSet<PathBuf>,
    faults: Faults,
    /// Stamps file changes (see [`SimStorage::set_clock`]).
    clock: Option<Arc<dyn Clock>>,
    /// Syncs of files whose name ends with this wait (see [`SimStorage::hold_syncs`]).
    sync_hold: Option<String>,
    /// Syncs waiting on `sync_hold`.
    syncs_waiting: usize,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

type Shared = Arc<Mutex<Inner>>;

// A panic while holding the lock (a failed test assertion) must not hide the disk.
use crate::lock;

impl Inner {
    fn sync_held(&self, path: &Path) -> bool {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        self.sync_hold
            .as_deref()
            .is_some_and(|suffix| name.ends_with(suffix))
    }

    fn now_ms(&self) -> i64 {
        self.clock.as_ref().map_or(0, |c| c.now_ms())
    }

    fn check_generation(&self, generation: u64) -> io::Result<()> {
        if generation == self.generation {
            Ok(())
        } else {
            Err(stale_error())
        }
    }

    /// Counts the call and decides whether it fails.
    fn roll(&mut self, op: SimOp, path: &Path) -> Option<FaultKind> {
        self.faults.roll(op, path, &mut self.rng)
    }

    /// Carries out a fault that hit a call and returns the error the call reports.
    fn fault(&mut self, kind: FaultKind) -> io::Error {
        if kind == FaultKind::Crash {
            self.power_loss();
        }
        kind.to_io_error()
    }

    fn end_process(&mut self) {
        self.generation += 1;
        self.locks.clear();
        self.open.clear();
        self.faults.counters.crashes += 1;
    }

    fn power_loss(&mut self) {
        self.end_process();
        self.faults.counters.power_losses += 1;
        self.ns.crash(&mut self.rng);
        let live = self.ns.reachable_now();
        self.files.retain(|ino, _| live.contains(ino));
        for f in self.files.values_mut() {
            f.crash(&mut self.rng);
        }
    }

    /// The page cache outlives the process: what it wrote stays readable, and stays as
    /// undurable as it was (a power loss later can still lose it), as do its unsynced
    /// namespace changes.
    fn process_death(&mut self) {
        self.end_process();
        self.gc();
    }

    /// Drops inodes that no tree, pending operation or open handle refers to any more.
    fn gc(&mut self) {
        let mut keep = self.ns.mentioned();
        keep.extend(self.open.keys().copied());
        self.files.retain(|ino, _| keep.contains(ino));
        self.ns.forget_dirs_except(&keep);
    }

    /// The inode of the existing regular file `path`.
    fn file_ino(&self, path: &Path) -> io::Result<Ino> {
        let comps = components(path)?;
        let ino = self.ns.lookup(&comps).ok_or_else(|| os(ENOENT))?;
        if self.ns.is_dir(ino) {
            return Err(os(EISDIR));
        }
        Ok(ino)
    }

    fn file_mut(&mut self, path: &Path) -> io::Result<&mut FileData> {
        let ino = self.file_ino(path)?;
        self.files.get_mut(&ino).ok_or_else(|| os(ENOENT))
    }

    fn open_handle(&mut self, shared: &Shared, path: &Path, ino: Ino, mode: OpenMode) -> SimFile {
        *self.open.entry(ino).or_insert(0) += 1;
        SimFile::new(
            shared.clone(),
            path,
            ino,
            self.generation,
            mode != OpenMode::Read,
        )
    }
}

/// The simulated disk. Create one with [`SimStorage::new`]; an `Arc<SimStorage>` coerces to
/// the `Arc<dyn Storage>` the engine takes, and the test keeps its own clone to crash it.
pub struct SimStorage {
    shared: Shared,
}

impl fmt::Debug for SimStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = lock(&self.shared);
        f.debug_struct("SimStorage")
            .field("generation", &inner.generation)
            .field("files", &inner.files.len())
            .field("counters", &inner.faults.counters)
            .finish_non_exhaustive()
    }
}

fn err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |e| Error::io(op, path, e)
}

impl SimStorage {
    /// An empty disk whose every random choice follows from `seed`.
    pub fn new(seed: u64) -> Arc<SimStorage> {
        Arc::new(SimStorage {
            shared: Arc::new(Mutex::new(Inner {
                rng: SimRng::new(seed),
                generation: 0,
                ns: Namespace::new(),
                files: BTreeMap::new(),
                open: BTreeMap::new(),
                locks: BTreeSet::new(),
                faults: Faults::default(),
                clock: None,
                sync_hold: None,
                syncs_waiting: 0,
            })),
        })
    }

    /// Files changed from now on get `clock`'s time as their modification time; without a
    /// clock it is 0. Tests share the clock they give the engine.
    pub fn set_clock(&self, clock: Arc<dyn Clock>) {
        self.inner().clock = Some(clock);
    }

    /// Makes `sync_data` and map flushes of files whose name ends with `suffix` (every file
    /// for `""`) wait, without holding the disk, until [`SimStorage::release_syncs`]: a
    /// test can then look at what the engine holds while it syncs.
    pub fn hold_syncs(&self, suffix: &str) {
        self.inner().sync_hold = Some(suffix.to_string());
    }

    pub fn release_syncs(&self) {
        self.inner().sync_hold = None;
    }

    /// How many syncs are waiting on [`SimStorage::hold_syncs`].
    pub fn syncs_waiting(&self) -> usize {
        self.inner().syncs_waiting
    }

    /// The same disk as the `Arc<dyn Storage>` the engine takes.
    pub fn storage(self: &Arc<Self>) -> Arc<dyn Storage> {
        self.clone()
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        lock(&self.shared)
    }

    /// Power loss and process death: unsynced data and directory entries may be lost, kept,
    /// kept in part or torn (see the module docs). Locks are released; handles opened before
    /// fail every call with `ESTALE`.
    pub fn crash(&self) {
        self.inner().power_loss();
    }

    /// Process death only (SIGKILL): the page cache survives, so everything written and every
    /// namespace change stays visible, durable only as far as it was synced (a later
    /// [`SimStorage::crash`] loses the rest as it would have before). Locks are released
    /// and old handles go stale.
    pub fn crash_keep_written(&self) {
        self.inner().process_death();
    }

    /// Makes everything durable, as if every file and directory were synced; for test set-up.
    pub fn sync_all(&self) {
        let mut inner = self.inner();
        inner.ns.commit_all();
        for f in inner.files.values_mut() {
            f.sync();
        }
        inner.gc();
    }

    /// How many crashes happened; bumped by `crash`, `crash_keep_written` and
    /// [`FaultKind::Crash`].
    pub fn generation(&self) -> u64 {
        self.inner().generation
    }

    /// Replaces the per-call fault probabilities (and path filter).
    pub fn set_faults(&self, plan: FaultPlan) {
        self.inner().faults.set_plan(plan);
    }

    /// The current fault plan.
    pub fn faults(&self) -> FaultPlan {
        self.inner().faults.plan().clone()
    }

    /// Removes the fault plan and every armed one-shot.
    pub fn clear_faults(&self) {
        self.inner().faults.clear();
    }

    /// Arms a one-shot fault: the `n`-th `op` call from now (1 = the next one) fails with
    /// `kind`. Calls on paths the plan's `path_suffix` excludes do not count. Fails with
    /// `InvalidInput` when too many one-shots are armed already.
    pub fn fail_nth(&self, op: SimOp, n: u64, kind: FaultKind) -> Result<()> {
        if self.inner().faults.arm(op, n, kind) {
            Ok(())
        } else {
            Err(Error::io(
                "fail_nth",
                "",
                io::Error::from(io::ErrorKind::InvalidInput),
            ))
        }
    }

    /// How many calls of each kind the disk has seen.
    pub fn counters(&self) -> SimCounters {
        self.inner().faults.counters
    }

    /// Flips bit `bit` (0-7) of byte `byte_pos` in both images.
    pub fn flip_bit(&self, path: &Path, byte_pos: u64, bit: u8) -> Result<()> {
        let mut inner = self.inner();
        let f = inner.file_mut(path).map_err(err("flip_bit", path))?;
        if byte_pos >= f.len() {
            return Err(Error::io("flip_bit", path, os(EINVAL)));
        }
        let pos = byte_pos as usize;
        f.damage(|img| {
            if let Some(b) = img.get_mut(pos) {
                *b ^= 1 << (bit & 7);
            }
        });
        Ok(())
    }

    /// Zeroes `len` bytes at `pos` in both images (clamped to each image's length).
    pub fn zero_range(&self, path: &Path, pos: u64, len: u64) -> Result<()> {
        let mut inner = self.inner();
        let f = inner.file_mut(path).map_err(err("zero_range", path))?;
        f.damage(|img| {
            let lo = pos.min(img.len() as u64) as usize;
            let hi = pos.saturating_add(len).min(img.len() as u64) as usize;
            img[lo..hi].fill(0);
        });
        Ok(())
    }

    /// Cuts (or zero-extends) both images to `len` bytes.
    pub fn truncate_file(&self, path: &Path, len: u64) -> Result<()> {
        let mut inner = self.inner();
        let f = inner.file_mut(path).map_err(err("truncate_file", path))?;
        let len = file::checked_end(len, 0).map_err(err("truncate_file", path))?;
        f.damage(|img| img.resize(len, 0));
        Ok(())
    }

    /// Creates or replaces the file `path` with `bytes`, durable at once, entry and missing
    /// parent directories included.
    pub fn write_raw(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let mut inner = self.inner();
        file::checked_end(0, bytes.len()).map_err(err("write_raw", path))?;
        let comps = components(path).map_err(err("write_raw", path))?;
        let ino = match inner.ns.lookup(&comps) {
            Some(ino) if inner.ns.is_dir(ino) => {
                return Err(Error::io("write_raw", path, os(EISDIR)))
            }
            Some(ino) => ino,
            None => inner.ns.new_ino(false),
        };
        inner
            .ns
            .link_durably(&comps, ino)
            .map_err(err("write_raw", path))?;
        inner.files.insert(ino, FileData::durable(bytes.to_vec()));
        Ok(())
    }

    /// The written image of the file `path` (what reads see), or `None` when there is none.
    pub fn read_raw(&self, path: &Path) -> Option<Vec<u8>> {
        let inner = self.inner();
        let ino = inner.file_ino(path).ok()?;
        inner.files.get(&ino).map(|f| f.written.clone())
    }

    /// The durable image of the file `path`: its bytes as of its last sync.
    pub fn read_durable(&self, path: &Path) -> Option<Vec<u8>> {
        let inner = self.inner();
        let ino = inner.file_ino(path).ok()?;
        inner.files.get(&ino).map(|f| f.durable.clone())
    }

    /// Removes the file `path` now and durably (a file lost by the medium).
    pub fn remove_raw(&self, path: &Path) -> Result<()> {
        let mut inner = self.inner();
        let ino = inner.file_ino(path).map_err(err("remove_raw", path))?;
        let comps = components(path).map_err(err("remove_raw", path))?;
        let (dir, name) = inner.ns.parent(&comps).map_err(err("remove_raw", path))?;
        inner.ns.unlink_durably(dir, name, ino);
        inner.gc();
        Ok(())
    }
}
