//! One partition replica's local log: ordered segments, the active one last.
//!
//! # Concurrency
//!
//! A `Log` is shared as `Arc<Log>`. Appends, truncations, retention and rolls are serialized
//! by one writer mutex; readers never take it. Readers take a snapshot of the segment list
//! (an `Arc` clone under a read lock held for a pointer copy) and read the published
//! `log_end_offset` and segment sizes with acquire loads. The writer publishes a batch only
//! after its bytes are written, so a reader never sees part of a batch.
//!
//! # Durability
//!
//! Appends reach the page cache; [`Log::flush`] makes everything below the log end offset
//! durable and moves the recovery point there. After a crash, [`Log::open`] scans only the
//! segments after the recovery point (see [`recovery`]).

mod append;
mod open;
mod read;
pub mod recovery;
mod retention;
mod truncate;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use crate::clock::Clock;
use crate::config::LogConfig;
use crate::error::{Error, Result};
use crate::io::Storage;
use crate::segment::Segment;

pub use append::AppendInfo;
pub use open::LogOpenOptions;
pub use read::{TimestampOffset, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};
pub use recovery::{Damage, DamageKind, Leftover, RecoveryReport};
pub use retention::RetentionOutcome;

type SegmentList = Arc<Vec<Arc<Segment>>>;

/// [`Log::latest_epoch`] of a log without batches (Kafka's "no partition leader epoch").
pub const NO_EPOCH: i32 = -1;

/// State only the writer touches.
#[derive(Debug, Default)]
struct Writer {
    /// Set by a failed write or sync: the log refuses writes until reopened.
    failure: Option<String>,
    /// Segment files created or removed since the directory was last synced.
    dir_dirty: bool,
    /// Files renamed `.deleted`, with the time they may be removed.
    pending_deletes: Vec<(i64, PathBuf)>,
}

/// One partition replica's log.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    segments: RwLock<SegmentList>,
    log_start_offset: AtomicI64,
    log_end_offset: AtomicI64,
    recovery_point: AtomicI64,
    /// Partition leader epoch of the last batch; epochs never decrease along the log.
    latest_epoch: AtomicI32,
    /// The recovery point as last persisted (the checkpoint file), which recovery will
    /// trust; `i64::MIN` when none is.
    checkpointed_recovery_point: AtomicI64,
    writer: Mutex<Writer>,
    /// Serializes flushes without blocking appends.
    flusher: Mutex<()>,
}

impl Log {
    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// The first offset a reader may fetch.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset.load(Ordering::Acquire)
    }

    /// The offset the next appended record will get.
    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset.load(Ordering::Acquire)
    }

    /// The partition leader epoch of the last batch in the log ([`NO_EPOCH`] when empty).
    /// Appends with a lower epoch are refused.
    pub fn latest_epoch(&self) -> i32 {
        self.latest_epoch.load(Ordering::Acquire)
    }

    /// Everything below this offset is durable.
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point.load(Ordering::Acquire)
    }

    /// Tells the log that `recovery_point` is now what its checkpoint file says (the log
    /// dir calls this after writing the file). A roll fsyncs the segment it closes only
    /// while the persisted point lies at or past that segment's end: then the next
    /// recovery would trust the segment without scanning it, which happens after a
    /// truncation below the persisted point and until the next checkpoint.
    pub fn recovery_point_checkpointed(&self, recovery_point: i64) {
        self.checkpointed_recovery_point
            .store(recovery_point, Ordering::Release);
    }

    /// A snapshot of the segments, oldest first.
    pub fn segments(&self) -> SegmentList {
        self.segments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn segment_count(&self) -> usize {
        self.segments().len()
    }

    /// Total bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments().iter().map(|s| s.size()).sum()
    }

    fn active_segment(&self) -> Arc<Segment> {
        let segments = self.segments();
        // The list is never empty: open and every truncation leave an active segment.
        segments[segments.len() - 1].clone()
    }

    fn set_segments(&self, segments: Vec<Arc<Segment>>) {
        debug_assert!(!segments.is_empty());
        debug_assert!(segments
            .windows(2)
            .all(|w| w[0].base_offset() < w[1].base_offset()));
        *self.segments.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(segments);
    }

    /// Takes the writer lock, refusing when an earlier write failed.
    fn writer(&self) -> Result<MutexGuard<'_, Writer>> {
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        match &writer.failure {
            Some(cause) => Err(Error::ReadOnly {
                cause: cause.clone(),
            }),
            None => Ok(writer),
        }
    }

    /// Records a failed write: after it, the state of the files is unknown, so the log
    /// stops taking writes rather than pretend (reads go on).
    fn fail<T>(writer: &mut Writer, err: Error) -> Result<T> {
        if writer.failure.is_none() {
            writer.failure = Some(err.to_string());
        }
        Err(err)
    }

    /// Makes every appended byte durable and moves the recovery point to the log end.
    /// Returns the new recovery point. Appends may go on meanwhile.
    pub fn flush(&self) -> Result<i64> {
        let _flushing = self.flusher.lock().unwrap_or_else(|e| e.into_inner());
        let (end, dir_dirty) = {
            let mut writer = self.writer()?;
            (self.log_end_offset(), std::mem::take(&mut writer.dir_dirty))
        };
        let from = self.recovery_point();
        let result = self.flush_range(from, end, dir_dirty);
        if let Err(err) = result {
            let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
            writer.dir_dirty |= dir_dirty;
            return Self::fail(&mut writer, err);
        }
        // A truncation while flushing may have moved the end below `end`.
        let point = end.min(self.log_end_offset());
        self.recovery_point.fetch_max(point, Ordering::AcqRel);
        let point = self.recovery_point().min(self.log_end_offset());
        self.recovery_point.store(point, Ordering::Release);
        Ok(point)
    }

    fn flush_range(&self, from: i64, to: i64, dir_dirty: bool) -> Result<()> {
        let segments = self.segments();
        for (i, segment) in segments.iter().enumerate() {
            let next_base = segments.get(i + 1).map_or(i64::MAX, |s| s.base_offset());
            if next_base > from && segment.base_offset() <= to {
                segment.flush()?;
            }
        }
        if dir_dirty {
            self.storage.sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Flushes, trims the active segment's indexes and removes pending `.deleted` files: the
    /// state a clean shutdown leaves. The log stays usable.
    pub fn close(&self) -> Result<()> {
        self.flush()?;
        let mut writer = self.writer()?;
        if let Err(err) = self.active_segment().trim_indexes() {
            return Self::fail(&mut writer, err);
        }
        // Trimming shrank the index files; make the new lengths durable too.
        if let Err(err) = self.active_segment().flush() {
            return Self::fail(&mut writer, err);
        }
        for (_, path) in std::mem::take(&mut writer.pending_deletes) {
            if self.storage.exists(&path) {
                self.storage.remove_file(&path)?;
            }
        }
        self.storage.sync_dir(&self.dir)
    }

    /// Checks invariant 1 and the offset bounds (debug builds only).
    fn debug_check(&self) {
        debug_assert!(self.log_start_offset() <= self.log_end_offset());
        debug_assert!(self.recovery_point() <= self.log_end_offset());
        debug_assert!(self.active_segment().base_offset() <= self.log_end_offset());
    }
}
