//! Truncation: cutting the log back (a follower diverged) or replacing it entirely.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Log, Writer};
use crate::error::{Error, Result};
use crate::segment::Segment;

impl Log {
    /// Removes every batch holding an offset `>= offset`. A batch that straddles `offset` is
    /// removed whole, so the new log end is the base offset of the first removed batch (or
    /// `offset` itself when it falls on a batch boundary). Returns the bytes removed.
    ///
    /// An `offset` below the log start truncates fully and starts the log at `offset`. When
    /// the batch straddling `offset` starts below the log start, removing it leaves nothing
    /// visible: the log is emptied and restarts at its log start, which does not move.
    ///
    /// A truncation below the persisted recovery point rewrites it (see
    /// [`super::RecoveryPointCheckpoint`]) before returning. At or past the log end nothing
    /// is cut, and the epoch cache drops any epoch that starts at the log end.
    ///
    /// A negative `offset` (such as the undefined epoch end offset, -1) is
    /// [`Error::InvalidRequest`] and changes nothing, as Kafka's `truncateTo` refuses it:
    /// a log restarted there would write a segment no open reads back.
    pub fn truncate_to(&self, offset: i64) -> Result<u64> {
        check_truncation_offset(offset)?;
        if offset < self.log_start_offset() {
            let removed = self.size_bytes();
            self.truncate_fully_and_start_at(offset)?;
            return Ok(removed);
        }
        let removed = {
            let mut writer = self.writer()?;
            if offset >= self.log_end_offset() {
                // Nothing to cut, but an epoch may have started at the log end without a
                // batch (a leader that appended nothing): Kafka's `truncateTo` drops such
                // entries here too, so the cache holds no epoch the log lacks.
                let end = self.log_end_offset();
                // Failed, as every other durable change of the epochs: the file keeps the
                // dropped entry, and no later change would rewrite it.
                return match self.change_epochs(true, |cache| cache.truncate_from_end(end)) {
                    Ok(()) => Ok(0),
                    Err(err) => Self::fail(&mut writer, err),
                };
            }
            let removed = match self.truncate_locked(&mut writer, offset) {
                Ok(Some(bytes)) => bytes,
                Ok(None) => {
                    let removed = self.size_bytes();
                    let start = self.log_start_offset();
                    match self.truncate_fully_locked(&mut writer, start) {
                        Ok(()) => removed,
                        Err(err) => return Self::fail(&mut writer, err),
                    }
                }
                Err(err) => return Self::fail(&mut writer, err),
            };
            // Before the writer lets an append past the cut; failed, no append may pass it.
            if let Err(err) = self.truncation_checkpointed(self.log_end_offset()) {
                return Self::fail(&mut writer, err);
            }
            removed
        };
        self.checkpoint_if_stale()?;
        Ok(removed)
    }

    /// Tells the dir's checkpoints of a cut to `end` (see
    /// [`super::RecoveryPointCheckpoint::truncated`]).
    fn truncation_checkpointed(&self, end: i64) -> Result<()> {
        match &self.recovery_checkpoint {
            Some(checkpoint) => checkpoint.truncated(self, end),
            None => Ok(()),
        }
    }

    /// Cuts the log so that it ends below `offset`; `None` (and nothing changed) when the
    /// new end would fall below the log start.
    fn truncate_locked(&self, writer: &mut Writer, offset: i64) -> Result<Option<u64>> {
        let segments = self.segments();
        // Keep segments that start at or below `offset`; the first is always kept.
        let keep = segments
            .partition_point(|s| s.base_offset() <= offset)
            .max(1);
        let (kept, removed) = segments.split_at(keep);
        let last = &kept[kept.len() - 1];
        let cut = last.locate(offset, last.size())?;
        let new_end = match cut {
            Some((_, header)) => header.base_offset.min(offset),
            None => last
                .read_next_offset()?
                .unwrap_or(last.base_offset())
                .min(offset),
        };
        // Invariant 2: the end never drops below the log start.
        if new_end < self.log_start_offset() {
            return Ok(None);
        }
        // Readers must stop at the new end before the bytes go away.
        let cutting = self.truncation_under_way();
        self.truncated_to.fetch_min(new_end, Ordering::AcqRel);
        self.log_end_offset.store(new_end, Ordering::Release);
        self.recovery_point.fetch_min(new_end, Ordering::AcqRel);
        let mut bytes: u64 = removed.iter().map(|s| s.size()).sum();
        self.set_segments(kept.to_vec());
        // The later segments go first, durably, and only then is the kept one cut: a crash
        // or a failure in between must leave the log whole (merely not truncated), never
        // a cut segment followed by later ones, which would be a gap in the offsets.
        // Newest first: a crash between two renames (metadata reaches the disk in order)
        // leaves the oldest of them, which still continue the log, not a gap.
        if !removed.is_empty() {
            let newest_first: Vec<Arc<Segment>> = removed.iter().rev().cloned().collect();
            self.schedule_deletion(writer, &newest_first)?;
            self.storage.sync_dir(&self.dir)?;
        }
        if let Some((position, _)) = cut {
            bytes += last.truncate_at(position, self.clock.now_ms())?;
        }
        drop(cutting);
        // A compacted log's end may now lie in a gap, past the last batch kept. (Cleared
        // first: a failed read below must not leave an earlier truncation's end.)
        writer.file_end = None;
        if self.may_have_gaps() {
            let kept_end = last.read_next_offset()?.unwrap_or(last.base_offset());
            writer.file_end = (kept_end < new_end).then_some(kept_end);
        }
        last.make_active()?;
        let bases: Vec<i64> = kept.iter().map(|s| s.base_offset()).collect();
        super::kafka_files::reconcile(self.storage.as_ref(), &self.dir, &bases, new_end, new_end)?;
        let epoch = super::recovery::last_epoch(kept)?.unwrap_or(super::NO_EPOCH);
        self.latest_epoch.store(epoch, Ordering::Release);
        self.make_truncation_durable(last)?;
        self.change_epochs(true, |cache| cache.truncate_from_end(new_end))?;
        self.debug_check();
        Ok(Some(bytes))
    }

    /// Counts the start of a truncation; the guard counts its end when dropped, on every
    /// way out (see [`Log::truncation_count`]).
    fn truncation_under_way(&self) -> TruncationUnderWay<'_> {
        self.truncations.fetch_add(1, Ordering::AcqRel);
        TruncationUnderWay(&self.truncations)
    }

    /// Deletes every segment and starts an empty log at `offset` (a follower too far behind
    /// the leader's log start). The recovery point is rewritten as by [`Log::truncate_to`].
    /// A negative `offset` is [`Error::InvalidRequest`] and changes nothing.
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<()> {
        check_truncation_offset(offset)?;
        {
            let mut writer = self.writer()?;
            if let Err(err) = self
                .truncate_fully_locked(&mut writer, offset)
                .and_then(|()| self.truncation_checkpointed(offset))
            {
                return Self::fail(&mut writer, err);
            }
        }
        self.checkpoint_if_stale()
    }

    fn truncate_fully_locked(&self, writer: &mut Writer, offset: i64) -> Result<()> {
        // The old segments go first, durably, and only then is the new one created: a
        // crash in between must not leave the new segment among old ones whose offsets
        // reach past its base.
        let old = self.segments();
        self.schedule_deletion(writer, &old)?;
        self.storage.sync_dir(&self.dir)?;
        let fresh = self.new_segment(offset)?;
        let replacing = self.truncation_under_way();
        self.truncated_to.fetch_min(offset, Ordering::AcqRel);
        self.log_end_offset.store(offset, Ordering::Release);
        self.log_start_offset.store(offset, Ordering::Release);
        self.raise_truncation_mark(offset);
        self.recovery_point.store(offset, Ordering::Release);
        self.latest_epoch.store(super::NO_EPOCH, Ordering::Release);
        self.set_segments(vec![fresh.clone()]);
        drop(replacing);
        writer.dir_dirty = true;
        writer.file_end = None;
        // Kafka's producer snapshots describe the history that went: all of them go.
        super::kafka_files::reconcile(self.storage.as_ref(), &self.dir, &[offset], offset, -1)?;
        self.make_truncation_durable(&fresh)?;
        self.change_epochs(true, |cache| {
            let had_entries = !cache.entries().is_empty();
            cache.clear();
            had_entries
        })
    }

    /// Syncs the cut segment and the directory before the truncation returns. Otherwise a
    /// crash could bring removed segments back next to batches appended after the
    /// truncation (offsets would overlap), or leave those appends in a segment that
    /// recovery skips because the checkpointed recovery point still lies above it.
    fn make_truncation_durable(&self, segment: &Segment) -> Result<()> {
        segment.flush()?;
        self.storage.sync_dir(&self.dir)
    }

    /// Renames the segments' files `.deleted` and schedules their removal after
    /// `file_delete_delay_ms` (readers holding slices keep their open files meanwhile).
    pub(super) fn schedule_deletion(
        &self,
        writer: &mut Writer,
        segments: &[Arc<Segment>],
    ) -> Result<()> {
        for segment in segments {
            let renamed = segment.rename_to_deleted()?;
            self.schedule_removal(writer, renamed);
        }
        Ok(())
    }

    /// Schedules the removal of files renamed `.deleted` after `file_delete_delay_ms`.
    pub(super) fn schedule_removal(&self, writer: &mut Writer, renamed: Vec<PathBuf>) {
        let due = self
            .clock
            .now_ms()
            .saturating_add(self.config.file_delete_delay_ms);
        for path in renamed {
            writer.pending_deletes.push((due, path));
            self.deletes_due_ms.fetch_min(due, Ordering::AcqRel);
            writer.dir_dirty = true;
        }
    }

    /// Removes `.deleted` files whose delay has passed; returns how many. Each retention
    /// pass ([`Log::delete_old_segments`]) and [`crate::replica::ReplicaManager::tick`]
    /// call it (Kafka schedules each removal itself); until a file is due it costs an
    /// atomic load, and takes no lock. A log that failed (read-only) removes none: its
    /// files go when it is reopened. A removal that fails keeps its file, and those after
    /// it, for the next call.
    pub fn remove_expired_deleted_files(&self) -> Result<usize> {
        let now = self.clock.now_ms();
        if now < self.deletes_due_ms.load(Ordering::Acquire) {
            return Ok(0);
        }
        let Ok(mut writer) = self.writer() else {
            return Ok(0);
        };
        self.remove_deleted_files_due(&mut writer, now)
    }

    /// Removes the pending `.deleted` files due by `now`; returns how many. A removal that
    /// fails keeps its file, and those after it, for the next call.
    pub(super) fn remove_deleted_files_due(&self, writer: &mut Writer, now: i64) -> Result<usize> {
        let (due, mut later): (Vec<_>, Vec<_>) = std::mem::take(&mut writer.pending_deletes)
            .into_iter()
            .partition(|(t, _)| *t <= now);
        let mut removed = 0;
        let mut failure = None;
        for (i, (_, path)) in due.iter().enumerate() {
            let outcome = match self.storage.exists(path) {
                true => self.storage.remove_file(path),
                false => Ok(()),
            };
            if let Err(err) = outcome {
                later.extend(due[i..].iter().cloned());
                failure = Some(err);
                break;
            }
            removed += 1;
        }
        let next_due = later.iter().map(|(t, _)| *t).min().unwrap_or(i64::MAX);
        self.deletes_due_ms.store(next_due, Ordering::Release);
        writer.pending_deletes = later;
        match failure {
            Some(err) => Err(err),
            None => Ok(removed),
        }
    }
}

/// Offsets are never negative: a segment based below 0 would be named with a sign, and
/// no open takes such a name.
fn check_truncation_offset(offset: i64) -> Result<()> {
    if offset < 0 {
        return Err(Error::InvalidRequest(format!(
            "cannot truncate a log to the negative offset {offset}"
        )));
    }
    Ok(())
}

/// Counts the end of a truncation when dropped (see [`Log::truncation_count`]).
struct TruncationUnderWay<'a>(&'a std::sync::atomic::AtomicU64);

impl Drop for TruncationUnderWay<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}
