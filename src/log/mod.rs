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
mod compact;
pub mod epochs;
mod kafka_files;
mod open;
mod read;
pub mod recovery;
mod retention;
pub mod transactions;
mod truncate;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use crate::clock::Clock;
use crate::config::LogConfig;
use crate::error::{Error, Result};
use crate::io::Storage;
use crate::segment::Segment;

pub use append::{AppendInfo, AppendOrigin};
pub use compact::CleaningGuard;
use epochs::EpochCache;
pub use epochs::{EpochEntry, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET};
pub use open::LogOpenOptions;
pub use read::{
    TimestampOffset, EARLIEST_LOCAL_TIMESTAMP, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, MAX_TIMESTAMP,
};
pub use recovery::{Damage, DamageKind, Leftover, RecoveryReport};
pub use retention::RetentionOutcome;
pub use transactions::{OpenTransaction, MAX_TRANSACTION_TIMEOUT_MS};

type SegmentList = Arc<Vec<Arc<Segment>>>;

/// [`Log::latest_epoch`] of a log without batches (Kafka's "no partition leader epoch").
pub const NO_EPOCH: i32 = -1;

/// The file in a partition dir that marks a log whose offsets may have gaps: one opened
/// with a compacting policy, or that took a follower append leaving a gap. It stays when
/// the log is reopened with `Delete`, whose recovery and follower appends then take gaps
/// as a compacted log's do (see [`crate::CleanupPolicy`]). Empty; its name is the news.
pub const GAPS_FILE_NAME: &str = ".offset-gaps";

/// Where a log's recovery point is persisted: the log dir's checkpoint file
/// ([`crate::manager::LogDir`] gives one to each log it opens).
///
/// A log calls it when a truncation (or recovery) leaves the persisted point above the log
/// end, as Kafka checkpoints the recovery points right after truncating. Until then the file
/// claims that offsets appended since are durable: those appends are synced, and a crash
/// would make recovery report the log ending below the point as missing flushed data.
pub trait RecoveryPointCheckpoint: Send + Sync + std::fmt::Debug {
    /// Persists `log`'s recovery point: [`Log::begin_checkpoint`], the durable write, then
    /// [`Log::recovery_point_checkpointed`].
    fn checkpoint(&self, log: &Log) -> Result<()>;

    /// `log` was cut back to end at `offset`: a checkpointed log start or cleaner's first
    /// dirty offset past it comes back to it, durably, before the log can grow past it
    /// again (else a restart would take a log start the log no longer had, or forget
    /// that the range above the cut was replaced, and never clean it again).
    fn truncated(&self, log: &Log, offset: i64) -> Result<()> {
        let _ = (log, offset);
        Ok(())
    }
}

/// The leader-epoch cache, and how many times its checkpoint text was rendered: the count,
/// taken under the same lock as each change, orders the checkpoint writes.
#[derive(Debug)]
struct Epochs {
    cache: EpochCache,
    renders: u64,
}

/// State only the writer touches.
#[derive(Debug, Default)]
struct Writer {
    /// Set by a failed write or sync: the log refuses writes until reopened.
    failure: Option<Arc<Error>>,
    /// Segment files created or removed since the directory was last synced.
    dir_dirty: bool,
    /// Files renamed `.deleted`, with the time they may be removed.
    pending_deletes: Vec<(i64, PathBuf)>,
    /// Where the active segment's last batch ends when a truncation left the log end above
    /// it, inside a compacted log's gap: the next append's first batch leaves a gap from
    /// there, and gets its index witness (see [`crate::segment::Segment::append`]).
    file_end: Option<i64>,
    /// Set by [`Log::close_for_good`]: the log refuses writes for good.
    closed: bool,
}

/// The state a flush starts from.
#[derive(Debug)]
struct FlushTicket {
    from: i64,
    end: i64,
    dir_dirty: bool,
    truncations: u64,
    /// The segments then: those that hold the bytes below `end`, also when retention or
    /// a cleaning took them out of the log since (their bytes below `end` still count,
    /// until a crash would bring them back).
    segments: SegmentList,
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
    /// The log start a crash cannot take back, once a log dir keeps this log's start in its
    /// `log-start-offset-checkpoint` ([`Log::log_start_checkpointed`]); `i64::MIN` while
    /// none does, and the log start itself then counts.
    durable_log_start: AtomicI64,
    log_end_offset: AtomicI64,
    recovery_point: AtomicI64,
    /// Partition leader epoch of the last batch; epochs never decrease along the log.
    latest_epoch: AtomicI32,
    /// The highest recovery point the checkpoint file may hold now or once a checkpoint
    /// being written lands; recovery will trust every segment below it. `i64::MIN` when
    /// none is persisted. Raised before a checkpoint is written (under the writer lock, see
    /// [`Log::begin_checkpoint`]) and set to the written value after.
    checkpoint_ceiling: AtomicI64,
    /// The log end a flush under way read when it began (`i64::MIN`: none), set and
    /// cleared under the writer lock: the flush moves the recovery point there once its
    /// syncs are done, so a roll in between treats it as the recovery point already.
    flushing_to: AtomicI64,
    /// Persists the recovery point when a truncation leaves the persisted one stale.
    recovery_checkpoint: Option<Arc<dyn RecoveryPointCheckpoint>>,
    /// Bumped by every truncation (under the writer lock): a flush that raced one does not
    /// move the recovery point, since the bytes it synced may have been cut and replaced.
    truncations: Arc<AtomicU64>,
    writer: Mutex<Writer>,
    /// Serializes flushes without blocking appends.
    flusher: Mutex<()>,
    /// The leader-epoch cache; changed only under the writer lock, read by anyone.
    epochs: Mutex<Epochs>,
    /// Serializes writes of `leader-epoch-checkpoint` (they share a temp file) and holds
    /// the render count of the text last written: a write of an older render, which a
    /// flush may reach after a truncation wrote a newer one, is skipped rather than put
    /// back over it.
    epochs_written: Mutex<u64>,
    /// The cache changed in a way that need not be durable at once (the log start moved);
    /// the next flush or close writes it.
    epochs_dirty: AtomicBool,
    /// A cleaning holds the log (see [`Log::begin_cleaning`]).
    cleaning: AtomicBool,
    /// The dir holds the [`GAPS_FILE_NAME`] marker: see [`Log::may_have_gaps`].
    may_have_gaps: AtomicBool,
    /// The lowest offset a truncation cut the log to since a cleaning last saw it
    /// (`i64::MAX`: none): what lies above it may have been replaced, so it is dirty again
    /// whatever the cleaner checkpoint says (Kafka lowers the checkpoint then).
    truncated_to: AtomicI64,
    /// When the first of the pending `.deleted` files may be removed (`i64::MAX`: none),
    /// so that [`Log::remove_expired_deleted_files`] takes the writer's lock only then.
    deletes_due_ms: AtomicI64,
    /// The high watermark a replica layer publishes ([`Log::set_high_watermark`]); the
    /// cleaner never cleans past it. `i64::MAX` for a log no replica owns.
    high_watermark: AtomicI64,
    /// The partition directory's lock: one owner per partition (see [`Log::open`]).
    _lock: Box<dyn crate::io::DirLock>,
}

impl Log {
    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Publishes the replica's high watermark: compaction stays below it, since a record
    /// above it may still be truncated and must not take its key's older record away, and
    /// the replica's consumers read up to it. The replica that owns the log (or, for a log
    /// no replica owns, the cleaning tool) is its only writer.
    pub fn set_high_watermark(&self, offset: i64) {
        self.high_watermark.store(offset, Ordering::Release);
    }

    /// The published high watermark, `i64::MAX` when no replica publishes one.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    /// The first offset a reader may fetch.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset.load(Ordering::Acquire)
    }

    /// The log start this log comes back with after a crash, at least: the one its log
    /// dir last checkpointed (or found at open), or, for a log no dir checkpoints, the log
    /// start itself. A follower reports this one to its leader, so that the leader's low
    /// watermark (DeleteRecords) counts only log starts a crash cannot undo.
    pub fn durable_log_start_offset(&self) -> i64 {
        let start = self.log_start_offset();
        match self.durable_log_start.load(Ordering::Acquire) {
            i64::MIN => start,
            durable => durable.min(start),
        }
    }

    /// Records that the log dir made `offset` this log's durable start (its checkpoint
    /// holds it, or it is where the log opened).
    pub(crate) fn log_start_checkpointed(&self, offset: i64) {
        self.durable_log_start.store(offset, Ordering::Release);
    }

    /// Records that a cut to `offset` made it the most a crash can bring the log start
    /// back to (no lower than it was).
    pub(crate) fn durable_log_start_lowered(&self, offset: i64) {
        let _ =
            self.durable_log_start
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |durable| {
                    (durable != i64::MIN && durable > offset).then_some(offset)
                });
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

    /// Whether the log's offsets may have gaps: it was opened with a compacting policy
    /// once, or a follower append left a gap (the dir holds [`GAPS_FILE_NAME`]). Such a
    /// log syncs each segment it rolls, witnesses every batch that leaves a gap in the
    /// offset index, and recovers by those rules; one without gaps holds consecutive
    /// offsets, which recovery checks instead. Recovery goes by the mark, not the policy:
    /// a log is marked before a gap is written in it (see the README's notes on
    /// `cleanup_policy`).
    pub fn may_have_gaps(&self) -> bool {
        self.may_have_gaps.load(Ordering::Acquire)
    }

    /// Everything below this offset is durable.
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point.load(Ordering::Acquire)
    }

    /// The recovery point to write into the checkpoint file. Call it right before writing
    /// the file and [`Log::recovery_point_checkpointed`] after: from this call on, a roll
    /// treats the returned point as persisted (see [`Log::recovery_point_checkpointed`]).
    /// Reading the point and announcing it happen under the writer lock, so that no
    /// truncation falls between them.
    pub fn begin_checkpoint(&self) -> i64 {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let point = self.recovery_point();
        self.checkpoint_ceiling.fetch_max(point, Ordering::AcqRel);
        point
    }

    /// Tells the log that its checkpoint file now holds `recovery_point` (from
    /// [`Log::begin_checkpoint`]). Recovery trusts every segment that ends at or below the
    /// persisted point. That point normally trails the log end, but after a truncation
    /// below it, and until the next checkpoint (at once with a
    /// [`RecoveryPointCheckpoint`]), it can lie past bytes written since: appends below it
    /// are synced, and a roll fsyncs the segment it closes while that segment lies below
    /// the point, so that skipping it is safe.
    pub fn recovery_point_checkpointed(&self, recovery_point: i64) {
        self.checkpoint_ceiling
            .store(recovery_point, Ordering::Release);
    }

    /// Rewrites the persisted recovery point when it lies above the log's own (after a
    /// truncation or a recovery that cut flushed data); a no-op otherwise, or without a
    /// [`RecoveryPointCheckpoint`]. Called without the writer lock, which the checkpoint
    /// takes.
    fn checkpoint_if_stale(&self) -> Result<()> {
        let Some(checkpoint) = &self.recovery_checkpoint else {
            return Ok(());
        };
        if self.checkpoint_ceiling.load(Ordering::Acquire) > self.recovery_point() {
            checkpoint.checkpoint(self)?;
        }
        Ok(())
    }

    /// Where leader epoch `epoch` ends on this log, as `(epoch, end offset)`: see
    /// [`EpochCache::end_offset_for`]. A follower's fetch carries its last epoch, and the
    /// leader answers with this to say where their logs diverge.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let epochs = self.epochs.lock().unwrap_or_else(|e| e.into_inner());
        epochs.cache.end_offset_for(epoch, self.log_end_offset())
    }

    /// [`Log::end_offset_for_epoch`], and whether the cache has forgotten `epoch` (see
    /// [`EpochCache::forgot`]), read together.
    pub fn end_offset_for_epoch_or_forgotten(&self, epoch: i32) -> ((i32, i64), bool) {
        let epochs = self.epochs.lock().unwrap_or_else(|e| e.into_inner());
        let end = epochs.cache.end_offset_for(epoch, self.log_end_offset());
        (end, epochs.cache.forgot(epoch))
    }

    /// Records that leader epoch `epoch` starts at the log end (a replica that becomes
    /// leader does this before its first append, so that followers asking about the
    /// previous epoch learn where it ended). Durable when it returns.
    pub fn assign_leader_epoch(&self, epoch: i32) -> Result<()> {
        let mut writer = self.writer()?;
        self.check_epoch(epoch, self.latest_epoch())?;
        let end = self.log_end_offset();
        match self.change_epochs(true, |cache| cache.assign(epoch, end)) {
            Ok(()) => Ok(()),
            Err(err) => Self::fail(&mut writer, err),
        }
    }

    /// The leader-epoch cache's entries: each epoch in the log and its first offset.
    pub fn epoch_entries(&self) -> Vec<EpochEntry> {
        let epochs = self.epochs.lock().unwrap_or_else(|e| e.into_inner());
        epochs.cache.entries().to_vec()
    }

    /// Changes the epoch cache with `change` (under the writer lock); when it changed and
    /// `durable`, writes the checkpoint before returning, else leaves that to the next
    /// flush. The file is written without holding the cache's lock.
    fn change_epochs(
        &self,
        durable: bool,
        change: impl FnOnce(&mut EpochCache) -> bool,
    ) -> Result<()> {
        let rendered = {
            let mut epochs = self.epochs.lock().unwrap_or_else(|e| e.into_inner());
            if !change(&mut epochs.cache) {
                return Ok(());
            }
            if !durable {
                self.epochs_dirty.store(true, Ordering::Release);
                return Ok(());
            }
            Self::render_epochs(&mut epochs)
        };
        self.epochs_dirty.store(false, Ordering::Release);
        if let Err(err) = self.write_epochs(rendered) {
            // Still to be written, as in `write_dirty_epochs`.
            self.epochs_dirty.store(true, Ordering::Release);
            return Err(err);
        }
        Ok(())
    }

    /// Writes the epoch checkpoint if a change is waiting for it.
    fn write_dirty_epochs(&self) -> Result<()> {
        if self.epochs_dirty.swap(false, Ordering::AcqRel) {
            let rendered = {
                let mut epochs = self.epochs.lock().unwrap_or_else(|e| e.into_inner());
                Self::render_epochs(&mut epochs)
            };
            if let Err(err) = self.write_epochs(rendered) {
                self.epochs_dirty.store(true, Ordering::Release);
                return Err(err);
            }
        }
        Ok(())
    }

    /// The checkpoint text of the cache, and its render count.
    fn render_epochs(epochs: &mut Epochs) -> (String, u64) {
        epochs.renders += 1;
        (epochs.cache.render(), epochs.renders)
    }

    /// Writes a rendered epoch checkpoint unless a later render is already written (it
    /// holds every change this one does). Readers of the cache never wait for it.
    fn write_epochs(&self, (text, render): (String, u64)) -> Result<()> {
        let mut written = self
            .epochs_written
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if *written >= render {
            return Ok(());
        }
        EpochCache::write(self.storage.as_ref(), &self.dir, &text)?;
        *written = render;
        Ok(())
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
        let mut list = self.segments.write().unwrap_or_else(|e| e.into_inner());
        let old = std::mem::replace(&mut *list, Arc::new(segments));
        drop(list);
        // Dropped with the list let go: a segment removed from it may be dropped here,
        // unmapping and closing its files, which readers need not wait for.
        drop(old);
    }

    /// Takes the writer lock, refusing when an earlier write failed.
    /// The writer lock, for a change to the log: refused once a write failed or the log
    /// was closed for good.
    fn writer(&self) -> Result<MutexGuard<'_, Writer>> {
        let writer = self.writer_even_closed()?;
        if writer.closed {
            return Err(Error::LogClosed {
                dir: self.dir.clone(),
            });
        }
        Ok(writer)
    }

    /// The writer lock, for making durable what the log holds (a flush, a close): refused
    /// once a write failed, but not once the log was closed for good.
    fn writer_even_closed(&self) -> Result<MutexGuard<'_, Writer>> {
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        match &writer.failure {
            Some(cause) => Err(Error::ReadOnly {
                cause: Arc::clone(cause),
            }),
            None => Ok(writer),
        }
    }

    /// Records a failed write: after it, the state of the files is unknown, so the log
    /// stops taking writes rather than pretend (reads go on).
    fn fail<T>(writer: &mut Writer, err: Error) -> Result<T> {
        if writer.failure.is_none() {
            writer.failure = Some(Arc::new(err.duplicate()));
        }
        Err(err)
    }

    /// Makes every appended byte durable and moves the recovery point to the log end.
    /// Returns the new recovery point. Appends may go on meanwhile. A truncation racing the
    /// flush leaves the recovery point where the truncation put it: the bytes synced may
    /// have been cut and replaced by unsynced ones.
    pub fn flush(&self) -> Result<i64> {
        let _flushing = self.flusher.lock().unwrap_or_else(|e| e.into_inner());
        let ticket = self.flush_begin()?;
        let result = self
            .flush_range(&ticket)
            .and_then(|()| self.write_dirty_epochs());
        self.flush_finish(&ticket, result)
    }

    /// What a flush is about to make durable; read under the writer lock.
    fn flush_begin(&self) -> Result<FlushTicket> {
        let mut writer = self.writer_even_closed()?;
        let end = self.log_end_offset();
        self.flushing_to.store(end, Ordering::Release);
        Ok(FlushTicket {
            from: self.recovery_point(),
            end,
            dir_dirty: std::mem::take(&mut writer.dir_dirty),
            truncations: self.truncations.load(Ordering::Acquire),
            segments: self.segments(),
        })
    }

    /// Moves the recovery point after the syncs of `ticket` succeeded, unless a truncation
    /// came in between.
    fn flush_finish(&self, ticket: &FlushTicket, synced: Result<()>) -> Result<i64> {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        self.flushing_to.store(i64::MIN, Ordering::Release);
        if let Err(err) = synced {
            writer.dir_dirty |= ticket.dir_dirty;
            return Self::fail(&mut writer, err);
        }
        if self.truncations.load(Ordering::Acquire) == ticket.truncations {
            // No truncation since the ticket was taken: the log still holds every byte
            // below its end, and they are durable now.
            self.recovery_point.fetch_max(ticket.end, Ordering::AcqRel);
        }
        Ok(self.recovery_point())
    }

    /// Syncs the segments of `ticket` that hold its bytes (those from the recovery point to
    /// the end it read), and the dir if a file was made since the last flush.
    fn flush_range(&self, ticket: &FlushTicket) -> Result<()> {
        let segments = &ticket.segments;
        for (i, segment) in segments.iter().enumerate() {
            let next_base = segments.get(i + 1).map_or(i64::MAX, |s| s.base_offset());
            if next_base > ticket.from && segment.base_offset() <= ticket.end {
                segment.flush()?;
            }
        }
        if ticket.dir_dirty {
            self.storage.sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Flushes, trims the active segment's files and removes pending `.deleted` files: the
    /// state a clean shutdown leaves. The log stays usable.
    pub fn close(&self) -> Result<()> {
        self.flush()?;
        let mut writer = self.writer_even_closed()?;
        if let Err(err) = self.active_segment().trim_files() {
            return Self::fail(&mut writer, err);
        }
        // Trimming shrank the index files; make the new lengths durable too.
        if let Err(err) = self.active_segment().flush() {
            return Self::fail(&mut writer, err);
        }
        // All of them, due or not; one that fails stays pending, with those after it.
        self.remove_deleted_files_due(&mut writer, i64::MAX)?;
        self.storage.sync_dir(&self.dir)
    }

    /// [`Log::close`], after which the log refuses every write ([`Error::LogClosed`]) while
    /// reads go on: what a [`crate::manager::LogDir`] does to each of its logs before it
    /// writes its clean-shutdown marker, which vouches for the files as they are then. A
    /// holder of the log that appended after the close would otherwise leave bytes the
    /// marker spares from recovery, unsynced, and a torn tail no scan would cut.
    pub(crate) fn close_for_good(&self) -> Result<()> {
        // Writes are refused from here on, so that the close makes durable all there is.
        self.writer()?.closed = true;
        self.close()
    }

    /// Checks invariant 1 and the offset bounds (debug builds only).
    fn debug_check(&self) {
        debug_assert!(self.log_start_offset() <= self.log_end_offset());
        debug_assert!(self.recovery_point() <= self.log_end_offset());
        debug_assert!(self.active_segment().base_offset() <= self.log_end_offset());
    }
}

#[cfg(test)]
mod tests;
