//! Retention: deleting old segments by time, by size and below the log start offset.

use std::sync::atomic::Ordering;

use super::Log;
use crate::error::{Error, Result};
use crate::segment::Segment;

/// What one retention pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
}

impl Log {
    /// Moves the log start offset up to `offset` (Kafka's DeleteRecords); the segments wholly
    /// below it go at the next retention pass.
    pub fn advance_log_start_offset(&self, offset: i64) -> Result<()> {
        let _writer = self.writer()?;
        let end = self.log_end_offset();
        if offset > end {
            let start = self.log_start_offset();
            return Err(Error::OffsetOutOfRange {
                offset,
                log_start_offset: start,
                log_end_offset: end,
            });
        }
        self.log_start_offset.fetch_max(offset, Ordering::AcqRel);
        let start = self.log_start_offset();
        self.raise_truncation_mark(start);
        self.change_epochs(false, |cache| cache.truncate_from_start(start))
    }

    /// Deletes, oldest first, segments that are wholly below the log start offset, whose
    /// newest record is older than `retention_ms`, or that the log can lose and still be at
    /// least `retention_bytes` large; by time and size only when the cleanup policy deletes
    /// ([`crate::CleanupPolicy::deletes`]). The active segment goes too, by time or size,
    /// as in Kafka, once every other has gone and it is not empty: an empty one takes its
    /// place first, at the log end, so that an idle partition does not keep its expired
    /// records for good. Only segments below the high watermark go, on a log whose
    /// replica publishes one (see [`Log::delete_old_segments_below`]).
    pub fn delete_old_segments(&self) -> Result<RetentionOutcome> {
        self.delete_old_segments_below(i64::MAX)
    }

    /// [`Log::delete_old_segments`], deleting only segments whose offsets all lie below
    /// `limit`, and below the high watermark the log was given
    /// ([`Log::set_high_watermark`], read under the writer's lock, which a follower's cut
    /// holds): retention never removes records a follower may still need and a consumer has
    /// not been allowed to see.
    ///
    /// On a compacted log, a pass while a cleaning runs deletes nothing (see
    /// `retention_pass`): call again later.
    ///
    /// It first removes the `.deleted` files whose `file_delete_delay_ms` has passed
    /// ([`Log::remove_expired_deleted_files`]). A file that cannot be removed does not hold
    /// the pass up: its error comes after the pass, which did its work, and the next call
    /// tries the file again.
    pub fn delete_old_segments_below(&self, limit: i64) -> Result<RetentionOutcome> {
        let removal = self.remove_expired_deleted_files();
        let outcome = self.retention_pass(limit)?;
        removal.map(|_| outcome)
    }

    fn retention_pass(&self, limit: i64) -> Result<RetentionOutcome> {
        // A compacted log's retention and its cleanings take turns, as Kafka's cleaner
        // thread runs both: a segment deleted under a cleaning makes its swap refuse every
        // copy (its first group begins at the log's oldest segment), and a log whose
        // retention kept deleting under its cleanings would never finish one. The pass
        // deletes nothing while a cleaning runs; the next one does.
        let _turn = if self.config.cleanup_policy.compacts() {
            let Some(claim) = self.begin_cleaning() else {
                return Ok(RetentionOutcome::default());
            };
            Some(claim)
        } else {
            None
        };
        let mut writer = self.writer()?;
        let limit = limit.min(self.high_watermark());
        let now = self.clock.now_ms();
        let mut segments = self.segments();
        let mut total: u64 = segments.iter().map(|s| s.size()).sum();
        let start = self.log_start_offset();
        let deletes = self.config.cleanup_policy.deletes();
        // By time or by size, when the policy deletes: `total` is the log's size with the
        // segment still in it.
        let past_retention = |segment: &Segment, total: u64| -> Result<bool> {
            let expired = self.config.retention_ms >= 0
                && now - segment.retention_timestamp()? > self.config.retention_ms;
            let oversize = self.config.retention_bytes >= 0
                && total - segment.size() >= self.config.retention_bytes as u64;
            Ok(deletes && (expired || oversize))
        };
        let mut doomed = 0usize;
        let mut bytes_deleted = 0u64;
        while doomed + 1 < segments.len() && segments[doomed + 1].base_offset() <= limit {
            let segment = &segments[doomed];
            let below_start = segments[doomed + 1].base_offset() <= start;
            if !(below_start || past_retention(segment, total)?) {
                break;
            }
            total -= segment.size();
            bytes_deleted += segment.size();
            doomed += 1;
        }
        // The active segment, when every one before it goes and all of it lies below
        // `limit` (its upper bound is the log end, as in Kafka's `deletableSegments`).
        let end = self.log_end_offset();
        let active = &segments[doomed];
        if doomed + 1 == segments.len()
            && end <= limit
            && active.size() > 0
            && past_retention(active, total)?
        {
            bytes_deleted += active.size();
            doomed += 1;
            // Kafka's `deleteSegments` rolls first: a log always has a segment.
            if let Err(err) = self.roll(&mut writer, end) {
                return Self::fail(&mut writer, err);
            }
            segments = self.segments();
        }
        if doomed == 0 {
            return Ok(RetentionOutcome::default());
        }
        let new_start = segments[doomed].base_offset();
        self.log_start_offset.fetch_max(new_start, Ordering::AcqRel);
        let start = self.log_start_offset();
        self.raise_truncation_mark(start);
        self.change_epochs(false, |cache| cache.truncate_from_start(start))?;
        self.set_segments(segments[doomed..].to_vec());
        if let Err(err) = self.schedule_deletion(&mut writer, &segments[..doomed]) {
            return Self::fail(&mut writer, err);
        }
        self.debug_check();
        Ok(RetentionOutcome {
            segments_deleted: doomed,
            bytes_deleted,
        })
    }
}
