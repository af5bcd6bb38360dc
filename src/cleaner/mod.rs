//! Log compaction (`cleanup.policy=compact`), Kafka's log cleaner: keeps the latest record
//! of every key, drops tombstones once their delete horizon passed, and leaves offsets as
//! they were (compaction leaves gaps; reads, indexes and follower fetches take them).
//!
//! [`Cleaner::clean_once`] picks the dirtiest compacted log of a [`LogDir`] above its
//! `min_cleanable_dirty_ratio` (or overdue by `max_compaction_lag_ms`) and cleans it from
//! its `cleaner-offset-checkpoint` entry up to the first uncleanable segment: the active
//! one, the one holding the high watermark, or one younger than `min_compaction_lag_ms`.
//! The key map has a fixed memory budget (`dedupe_buffer_bytes`, Kafka's 128 MiB); when
//! the dirty range has more keys than fit, the cleaning covers what fitted and says so
//! ([`CleanReport::partial`]), and the next one goes on from there. A log whose cleaning
//! fails is marked uncleanable with the reason and skipped; the others go on. The rewrite
//! reads only the batches that keep a record: the ones the map pass found superseded whole
//! are read once (see `superseded`). A batch that loses records is rebuilt under a new
//! CRC only once its old one verified: a byte that rotted on disk since recovery read it
//! fails the cleaning instead of being sealed in (Kafka's cleaner does not check, and
//! would seal it).
//! [`Cleaner::spawn`] runs it on a thread, with an I/O rate limit.
//!
//! Transactions are followed as Kafka's cleaner follows them (see `transactions`): a
//! committed transaction's records count at their offsets, an aborted one's are dropped,
//! a cleaning ends before a transaction still open, and a marker goes past its delete
//! horizon once its transaction is gone.
//!
//! Not cleaned: compressed batches (partlog does not decompress; their records all stay,
//! and so do the tombstones after them, which would otherwise bring back the values they
//! deleted) and control batches other than transaction markers (kept as they are).

mod clean;
mod offset_map;
mod rewrite;
mod superseded;
mod transactions;

use crate::lock;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

pub use crate::segment::scan::Throttle;
pub use clean::{clean_log, cleanable, CleanReport, Cleanable};
pub use offset_map::{Digest, OffsetMap, SLOT_BYTES};
pub use rewrite::{filter_batch, FilterRules, FilterScratch, FilterStats};

use crate::checkpoint::TopicPartition;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::manager::LogDir;

/// Kafka's `log.cleaner.dedupe.buffer.size` default: 128 MiB.
pub const DEFAULT_DEDUPE_BUFFER_BYTES: usize = 128 << 20;
/// Kafka's `log.cleaner.backoff.ms` default: the pause of an idle cleaner thread.
pub const DEFAULT_BACKOFF_MS: u64 = 15_000;

/// Settings of a cleaner.
#[derive(Debug, Clone)]
pub struct CleanerConfig {
    /// Memory of the key → offset map.
    pub dedupe_buffer_bytes: usize,
    /// Read plus write bytes per second; unlimited (Kafka's default) when infinite.
    pub io_max_bytes_per_second: f64,
    /// How long the background thread sleeps when nothing needs cleaning.
    pub backoff: Duration,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        CleanerConfig {
            dedupe_buffer_bytes: DEFAULT_DEDUPE_BUFFER_BYTES,
            io_max_bytes_per_second: f64::INFINITY,
            backoff: Duration::from_millis(DEFAULT_BACKOFF_MS),
        }
    }
}

/// What one [`Cleaner::clean_once`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum CleanOutcome {
    /// No compacted log needed cleaning.
    Idle,
    Cleaned {
        partition: TopicPartition,
        dirty_ratio: f64,
        report: CleanReport,
    },
    /// The cleaning failed; the partition is now uncleanable (see [`Cleaner::uncleanable`]).
    Failed {
        partition: TopicPartition,
        reason: String,
    },
}

/// Cleans the compacted logs of log dirs; see the module docs.
#[derive(Debug)]
pub struct Cleaner {
    config: CleanerConfig,
    map: Mutex<OffsetMap>,
    uncleanable: Mutex<BTreeMap<TopicPartition, String>>,
    /// Logs whose last cleaning could not begin (a transaction still open where their
    /// dirty range begins), with the range it had (see [`stall_key`]): skipped until the
    /// range changes (a roll, or the high watermark passing into another segment, brings
    /// the transaction's marker into it), so that they neither spin the cleaner thread
    /// nor keep it from the other logs.
    stalled: Mutex<BTreeMap<TopicPartition, (i64, i64)>>,
}

impl Cleaner {
    pub fn new(config: CleanerConfig) -> Cleaner {
        Cleaner {
            map: Mutex::new(OffsetMap::with_memory(config.dedupe_buffer_bytes)),
            config,
            uncleanable: Mutex::new(BTreeMap::new()),
            stalled: Mutex::new(BTreeMap::new()),
        }
    }

    fn uncleanable_map(&self) -> MutexGuard<'_, BTreeMap<TopicPartition, String>> {
        lock(&self.uncleanable)
    }

    /// Partitions a cleaning failed on, with why. They are skipped until
    /// [`Cleaner::forgive`] (Kafka keeps them until the log is moved or deleted).
    pub fn uncleanable(&self) -> Vec<(TopicPartition, String)> {
        self.uncleanable_map()
            .iter()
            .map(|(tp, why)| (tp.clone(), why.clone()))
            .collect()
    }

    /// Lets the cleaner try `tp` again.
    pub fn forgive(&self, tp: &TopicPartition) {
        self.uncleanable_map().remove(tp);
    }

    /// Cleans the dirtiest compacted log of `dir` that is worth cleaning at `now_ms`.
    pub fn clean_once(&self, dir: &LogDir, now_ms: i64) -> Result<CleanOutcome> {
        let skip = self.uncleanable_map().clone();
        let stalled = lock(&self.stalled).clone();
        let mut best = None;
        for (tp, log) in dir.logs() {
            if !log.config().cleanup_policy.compacts() || skip.contains_key(&tp) {
                continue;
            }
            let range = match cleanable(&log, dir.cleaner_offset(&tp), now_ms) {
                Ok(range) => range,
                // Retention deleted a segment while the range was being found: the next
                // pass finds it again without that segment. (A failed log may still list
                // segments it deleted: it is reported as the other errors are.)
                Err(Error::SegmentDeleted { .. }) if log.check_writable().is_ok() => continue,
                Err(err) => return Ok(self.mark_uncleanable(tp, &err.to_string())),
            };
            if !range.worth_cleaning(log.config().min_cleanable_dirty_ratio) {
                continue;
            }
            if stalled.get(&tp) == Some(&stall_key(&range)) {
                continue;
            }
            let better = best
                .as_ref()
                .is_none_or(|(_, _, r): &(_, _, Cleanable)| range.dirty_ratio() > r.dirty_ratio());
            if better {
                best = Some((tp, log, range));
            }
        }
        let Some((tp, log, range)) = best else {
            return Ok(CleanOutcome::Idle);
        };
        let mut map = lock(&self.map);
        let mut throttle = Throttle::new(self.config.io_max_bytes_per_second);
        let cleaned = contained(|| clean_log(&log, &range, &mut map, now_ms, &mut throttle));
        match cleaned {
            Ok(report) => {
                let mut stalled = lock(&self.stalled);
                if !report.aborted && report.end_offset <= range.first_dirty {
                    stalled.insert(tp.clone(), stall_key(&range));
                } else {
                    stalled.remove(&tp);
                }
                drop(stalled);
                if !report.aborted {
                    dir.write_cleaner_offset(&tp, report.end_offset)?;
                }
                Ok(CleanOutcome::Cleaned {
                    partition: tp,
                    dirty_ratio: range.dirty_ratio(),
                    report,
                })
            }
            Err(reason) => Ok(self.mark_uncleanable(tp, &reason)),
        }
    }

    fn mark_uncleanable(&self, tp: TopicPartition, reason: &str) -> CleanOutcome {
        self.uncleanable_map()
            .insert(tp.clone(), reason.to_string());
        CleanOutcome::Failed {
            partition: tp,
            reason: reason.to_string(),
        }
    }

    /// Runs [`Cleaner::clean_once`] on a thread until the handle is stopped or dropped,
    /// sleeping `backoff` whenever nothing needed cleaning or a cleaning was aborted. `on_outcome` hears of every
    /// cleaning (for logs and metrics).
    pub fn spawn(
        self: Arc<Self>,
        dir: Arc<LogDir>,
        clock: Arc<dyn Clock>,
        mut on_outcome: impl FnMut(Result<CleanOutcome>) + Send + 'static,
    ) -> CleanerThread {
        let stop = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let stopping = Arc::new(AtomicBool::new(false));
        let (stop2, stopping2) = (stop.clone(), stopping.clone());
        let handle = std::thread::spawn(move || {
            while !stopping2.load(Ordering::Acquire) {
                let outcome = self.clean_once(&dir, clock.now_ms());
                // A cleaning that a truncation or another cleaning of the log aborted
                // waits too: tried again at once, it may meet the same again.
                let idle = !matches!(
                    &outcome,
                    Ok(CleanOutcome::Cleaned { report, .. }) if !report.aborted
                );
                on_outcome(outcome);
                if idle {
                    let (stopped, wake) = &*stop2;
                    let guard = lock(stopped);
                    let _ = wake
                        .wait_timeout_while(guard, self.config.backoff, |stopped| !*stopped)
                        .unwrap_or_else(|e| e.into_inner());
                }
            }
        });
        CleanerThread {
            stop,
            stopping,
            handle: Some(handle),
        }
    }
}

/// The cleaner's background thread; stops (after the cleaning under way) when dropped.
#[derive(Debug)]
pub struct CleanerThread {
    stop: Arc<(Mutex<bool>, std::sync::Condvar)>,
    stopping: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl CleanerThread {
    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        self.stopping.store(true, Ordering::Release);
        let (stopped, wake) = &*self.stop;
        *lock(stopped) = true;
        wake.notify_all();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for CleanerThread {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Locks `m`, taking over the data a panicking holder left.
/// Runs one partition's cleaning, its failure as the reason to give: an error, or a panic
/// (a bug), which marks that partition uncleanable as an error does, instead of ending
/// the cleaner thread and with it the cleaning of every other partition. What the
/// cleaning held is reset by the next one (the key map is cleared first; the log's
/// cleaning claim and open files are dropped, and its `.cleaned` copies removed, as the
/// panic unwinds; a panic during the swap fails the log).
fn contained<T>(clean: impl FnOnce() -> Result<T>) -> std::result::Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(clean)) {
        Ok(outcome) => outcome.map_err(|err| err.to_string()),
        Err(panic) => {
            let what = (panic.downcast_ref::<&str>().copied())
                .or(panic.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("no message");
            Err(format!("the cleaning panicked (a bug): {what}"))
        }
    }
}

/// What a cleaning that could not begin depended on: its range. The marker that ends the
/// transaction open at its start counts only inside it, below the first uncleanable
/// offset (a segment's base at or below the active segment's and the high watermark), so
/// only a new range can hold one. Not the log end: appends to the active segment, which
/// a busy partition has all the time, bring none into the range, and a log skipped only
/// while they stopped was cleaned again from the same offset at every pass, the dirtiest
/// log for good as its dirty part grew, and no other log was cleaned (Kafka bounds the
/// range by the last stable offset, which then leaves nothing to clean).
fn stall_key(range: &Cleanable) -> (i64, i64) {
    (range.first_dirty, range.first_uncleanable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    /// A cleaning that panics fails its partition with the panic's message, as one that
    /// returns an error does; the cleaner goes on. A panic (the superseded-batch bitmap's,
    /// on a damaged base offset) ended the cleaner thread for every partition.
    #[test]
    fn a_cleaning_that_panics_fails_its_partition_alone() {
        assert_eq!(contained(|| Ok(7)), Ok(7));
        let failed = contained::<()>(|| Err(Error::InvalidConfig("bad".into())));
        assert_eq!(failed, Err("invalid configuration: bad".to_string()));
        let panicked = contained::<()>(|| panic!("index {} out of bounds", 9));
        assert_eq!(
            panicked,
            Err("the cleaning panicked (a bug): index 9 out of bounds".to_string())
        );
        let panicked = contained::<()>(|| panic!("static"));
        assert!(panicked.is_err_and(|why| why.ends_with("static")));
    }
}
