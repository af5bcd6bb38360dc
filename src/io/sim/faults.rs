//! Fault injection for the simulated disk: per-call probabilities, one-shot failures, and
//! the counters tests use to pick a crash point.

use std::io;
use std::path::Path;

use super::rng::SimRng;

/// `EIO`: the device failed the call.
pub const EIO: i32 = 5;
/// `ENOSPC`: no space left on the device.
pub const ENOSPC: i32 = 28;

/// Probabilities, per call, that a call fails. All zero by default.
///
/// ```
/// use partlog::io::sim::{FaultPlan, SimStorage};
/// let sim = SimStorage::new(1);
/// sim.set_faults(FaultPlan { write_enospc: 0.01, path_suffix: Some(".log".into()), ..FaultPlan::default() });
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultPlan {
    /// `read_at` fails with `EIO`.
    pub read_eio: f64,
    /// `write_at` / `set_len` / `allocate` fail with `EIO`.
    pub write_eio: f64,
    /// `write_at` / `set_len` / `allocate` fail with `ENOSPC`.
    pub write_enospc: f64,
    /// `sync_data`, `sync_dir` and map flushes fail with `EIO`.
    pub sync_eio: f64,
    /// When set, only calls on paths whose name ends with this suffix fail (probabilistic and
    /// one-shot faults alike) and only those calls count towards a one-shot's `n`.
    pub path_suffix: Option<String>,
}

/// The kinds of call a one-shot fault can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimOp {
    /// `read_at` (and so `read_exact_at`).
    Read,
    /// `write_at`, `set_len`, `allocate`, and the write-back of a map.
    Write,
    /// `sync_data` and map `flush`.
    Sync,
    /// `sync_dir`.
    SyncDir,
    /// `rename`.
    Rename,
    /// `open` in a mode that creates the file.
    Create,
}

/// What a one-shot fault does to the call it hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// The call fails with `EIO` (a failed write may have applied a prefix of its buffer).
    Eio,
    /// The call fails with `ENOSPC` (a failed write may have applied a prefix of its buffer).
    Enospc,
    /// Power fails during the call: a write applies a random prefix of its buffer, then the
    /// disk crashes as [`super::SimStorage::crash`] does and the call returns a stale-handle
    /// error. Lets a test crash at the k-th write without threads.
    Crash,
}

impl FaultKind {
    pub(crate) fn to_io_error(self) -> io::Error {
        match self {
            FaultKind::Eio => io::Error::from_raw_os_error(EIO),
            FaultKind::Enospc => io::Error::from_raw_os_error(ENOSPC),
            FaultKind::Crash => super::stale_error(),
        }
    }
}

/// How many calls of each kind the simulated disk has seen (failed calls included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimCounters {
    pub reads: u64,
    pub writes: u64,
    pub syncs: u64,
    pub sync_dirs: u64,
    pub renames: u64,
    pub creates: u64,
    /// Ends of the process, power losses and kills alike.
    pub crashes: u64,
    /// Power losses alone: [`super::SimStorage::crash`] and injected crashes.
    pub power_losses: u64,
    /// Calls a fault failed: a [`FaultPlan`]'s or a one-shot's (its crashes too). A test
    /// that sees an I/O error can tell one it injected from one the engine made up.
    pub faults: u64,
}

impl SimCounters {
    fn bump(&mut self, op: SimOp) {
        let c = match op {
            SimOp::Read => &mut self.reads,
            SimOp::Write => &mut self.writes,
            SimOp::Sync => &mut self.syncs,
            SimOp::SyncDir => &mut self.sync_dirs,
            SimOp::Rename => &mut self.renames,
            SimOp::Create => &mut self.creates,
        };
        *c = c.saturating_add(1);
    }
}

/// An armed one-shot: the `remaining`-th matching call of `op` fails with `kind`.
#[derive(Debug, Clone)]
struct OneShot {
    op: SimOp,
    remaining: u64,
    kind: FaultKind,
}

/// Bound on armed one-shots, so a runaway test cannot grow the list without limit.
const ONE_SHOTS_MAX: usize = 1024;

/// The fault state kept inside the simulated disk.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    plan: FaultPlan,
    one_shots: Vec<OneShot>,
    pub(crate) counters: SimCounters,
}

impl Faults {
    pub(crate) fn set_plan(&mut self, plan: FaultPlan) {
        self.plan = plan;
    }

    pub(crate) fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    /// Arms a one-shot; `n` = 1 (or 0) is the next matching call. Returns false when too
    /// many are armed already.
    pub(crate) fn arm(&mut self, op: SimOp, n: u64, kind: FaultKind) -> bool {
        if self.one_shots.len() >= ONE_SHOTS_MAX {
            return false;
        }
        self.one_shots.push(OneShot {
            op,
            remaining: n.max(1),
            kind,
        });
        true
    }

    pub(crate) fn clear(&mut self) {
        self.plan = FaultPlan::default();
        self.one_shots.clear();
    }

    /// Counts the call and decides whether it fails.
    pub(crate) fn roll(&mut self, op: SimOp, path: &Path, rng: &mut SimRng) -> Option<FaultKind> {
        self.counters.bump(op);
        let fault = self.decide(op, path, rng);
        if fault.is_some() {
            self.counters.faults += 1;
        }
        fault
    }

    fn decide(&mut self, op: SimOp, path: &Path, rng: &mut SimRng) -> Option<FaultKind> {
        if let Some(suffix) = &self.plan.path_suffix {
            let matches = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(suffix.as_str()));
            if !matches {
                return None;
            }
        }
        let mut hit = None;
        for shot in self.one_shots.iter_mut().filter(|s| s.op == op) {
            shot.remaining -= 1;
            if shot.remaining == 0 {
                if hit.is_none() {
                    hit = Some(shot.kind);
                } else {
                    // Two shots aimed at the same call: the later one hits the next call.
                    shot.remaining = 1;
                }
            }
        }
        self.one_shots.retain(|s| s.remaining > 0);
        if hit.is_some() {
            return hit;
        }
        let p = &self.plan;
        match op {
            SimOp::Read if rng.chance(p.read_eio) => Some(FaultKind::Eio),
            SimOp::Write if rng.chance(p.write_eio) => Some(FaultKind::Eio),
            SimOp::Write if rng.chance(p.write_enospc) => Some(FaultKind::Enospc),
            SimOp::Sync | SimOp::SyncDir if rng.chance(p.sync_eio) => Some(FaultKind::Eio),
            _ => None,
        }
    }
}
