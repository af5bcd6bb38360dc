//! Fetching by offset and finding offsets by time.

use std::sync::{Arc, TryLockError};
use std::time::Instant;

use super::Log;
use crate::error::{Error, Result};
use crate::record::{Batch, Compression, TimestampType};
use crate::segment::{FileSlice, Segment};

/// `offset_for_timestamp` target meaning "the log start offset" (Kafka's `EARLIEST`).
pub const EARLIEST_TIMESTAMP: i64 = -2;
/// `offset_for_timestamp` target meaning "the log end offset" (Kafka's `LATEST`).
pub const LATEST_TIMESTAMP: i64 = -1;
/// `offset_for_timestamp` target meaning "the record with the largest timestamp" (Kafka's
/// `MAX_TIMESTAMP`, KIP-734): the first record carrying the log's largest timestamp.
pub const MAX_TIMESTAMP: i64 = -3;
/// `offset_for_timestamp` target meaning "the first offset on local storage" (Kafka's
/// `EARLIEST_LOCAL`, KIP-405): the log start offset, as partlog keeps no other tier.
pub const EARLIEST_LOCAL_TIMESTAMP: i64 = -4;

/// A record's offset and timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    pub timestamp: i64,
    pub offset: i64,
}

/// How long a read that found a segment replaced under it (a cleaning's swap) waits for
/// the swap to publish the new segment list. A swap renames files and syncs the directory
/// between its steps, so it takes as long as a few fsyncs; one that failed half way never
/// publishes, and the reader then gets [`Error::SegmentDeleted`] and retries later.
pub(super) const SWAP_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Attempts of a lookup by time whose log start keeps moving under it, or that truncations
/// keep failing.
const LOOKUP_ATTEMPTS: usize = 3;

impl Log {
    /// Reads whole batches starting with the one that holds `from_offset`: at most
    /// `max_bytes` of them, but always at least one, and none whose last offset is at or
    /// above `up_to_offset` (for example the high watermark; `None` means the log end).
    ///
    /// Returns `None` when there is nothing to read yet (`from_offset` is the log end or
    /// beyond the bound). Offsets below the log start or above the log end are
    /// [`Error::OffsetOutOfRange`]. The slice is zero-copy: bytes stay in the file.
    pub fn read(
        &self,
        from_offset: i64,
        max_bytes: u64,
        up_to_offset: Option<i64>,
    ) -> Result<Option<FileSlice>> {
        let bound = self.read_bound(from_offset, up_to_offset)?;
        if from_offset >= bound {
            return Ok(None);
        }
        self.on_segments(from_offset, |segments| {
            self.read_segments(segments, from_offset, max_bytes, bound)
        })
    }

    /// Every batch from the one that holds `from_offset` to below `up_to_offset`, as one
    /// slice per segment, oldest first (none when there is nothing to read): what
    /// [`Log::read`] would return fetch after fetch with no byte limit, from one snapshot
    /// of the segments, for a reader that goes through all of it (the offsets store's
    /// load). A batch header that does not read below `up_to_offset` fails it, where
    /// [`Log::read`] would end its answer before it (and fail the read after): slices that
    /// went on past it would skip the batches there.
    pub fn read_all(&self, from_offset: i64, up_to_offset: i64) -> Result<Vec<FileSlice>> {
        let bound = self.read_bound(from_offset, Some(up_to_offset))?;
        if from_offset >= bound {
            return Ok(Vec::new());
        }
        self.on_segments(from_offset, |segments| {
            let mut slices = Vec::new();
            for segment in self.segments_from(segments, from_offset, bound)? {
                slices.extend(segment.read_through(from_offset, bound)?);
            }
            Ok(slices)
        })
    }

    /// Where a read from `from_offset` up to `up_to_offset` (`None`: the log end) stops;
    /// [`Error::OffsetOutOfRange`] for an offset outside the log.
    fn read_bound(&self, from_offset: i64, up_to_offset: Option<i64>) -> Result<i64> {
        // Load the end first: everything below it is fully written.
        let log_end_offset = self.log_end_offset();
        let log_start_offset = self.log_start_offset();
        if from_offset < log_start_offset || from_offset > log_end_offset {
            return Err(Error::OffsetOutOfRange {
                offset: from_offset,
                log_start_offset,
                log_end_offset,
            });
        }
        Ok(up_to_offset.map_or(log_end_offset, |u| u.min(log_end_offset)))
    }

    /// Runs `read` on a snapshot of the segments, again on a newer one when a cleaning
    /// swapped a segment under it. `from_offset` below the log start is out of range.
    fn on_segments<T>(
        &self,
        from_offset: i64,
        read: impl Fn(&[Arc<Segment>]) -> Result<T>,
    ) -> Result<T> {
        let mut waiting_since = None;
        loop {
            let segments = self.segments();
            match read(&segments) {
                // Retention took the segment: the offset is gone.
                Err(Error::SegmentDeleted { .. }) if from_offset < self.log_start_offset() => {
                    return Err(Error::OffsetOutOfRange {
                        offset: from_offset,
                        log_start_offset: self.log_start_offset(),
                        log_end_offset: self.log_end_offset(),
                    })
                }
                // A cleaning is swapping the segment for its cleaned copy: read the new
                // list once it is published. (Answering `OffsetOutOfRange` here would send
                // a consumer to its offset reset policy for an offset the log still has.)
                Err(err @ Error::SegmentDeleted { .. }) => {
                    if !self.segments_replaced(&segments, &mut waiting_since) {
                        return Err(err);
                    }
                }
                other => return other,
            }
        }
    }

    /// After a read found a segment of the snapshot `seen` deleted: whether to read again.
    /// At once when the log has published a newer list since; when it has not (a cleaning's
    /// swap publishes its list after renaming the files), after a yield, for up to
    /// [`SWAP_WAIT`] from the first call with the same `waiting_since`, while the writer's
    /// lock is held. Whatever renamed the segment away (a swap, a truncation, retention)
    /// holds that lock until it publishes its list: found free with the list unchanged, it
    /// says that no list is coming (a swap failed half way, and the log refuses writes until
    /// it is reopened), and the read ends at once.
    fn segments_replaced(
        &self,
        seen: &super::SegmentList,
        waiting_since: &mut Option<Instant>,
    ) -> bool {
        if Arc::ptr_eq(seen, &self.segments()) {
            match self.writer.try_lock() {
                Err(TryLockError::WouldBlock) => {}
                // Free (or poisoned), and held here: the list cannot change under the check.
                _held => return !Arc::ptr_eq(seen, &self.segments()),
            }
            let since = *waiting_since.get_or_insert_with(Instant::now);
            if since.elapsed() > SWAP_WAIT {
                return false;
            }
            std::thread::yield_now();
        }
        true
    }

    /// The read itself, on a snapshot of the segments taken after the range check. Retention
    /// may have removed the segment holding `from_offset` in between: then no segment of
    /// the snapshot starts at or below it and the log start has moved past it (retention
    /// publishes the start before the segments), and the answer is `OffsetOutOfRange`,
    /// never the batches of a later segment. A compacted log may also start with a gap
    /// below its first segment: that read goes on in the first segment.
    fn read_segments(
        &self,
        segments: &[Arc<Segment>],
        from_offset: i64,
        max_bytes: u64,
        bound: i64,
    ) -> Result<Option<FileSlice>> {
        for segment in self.segments_from(segments, from_offset, bound)? {
            // A segment may end before `from_offset` (a gap left by compaction): go on.
            // Retention, truncation or a cleaning may remove the segment under the reader:
            // `SegmentDeleted` goes back to `read`, which tells those apart.
            if let Some(slice) = segment.read(from_offset, max_bytes, bound)? {
                return Ok(Some(slice));
            }
        }
        Ok(None)
    }

    /// The segments of the snapshot from the one that holds `from_offset` (see
    /// [`Log::read_segments`]) to the last that starts below `bound`.
    fn segments_from<'s>(
        &self,
        segments: &'s [Arc<Segment>],
        from_offset: i64,
        bound: i64,
    ) -> Result<impl Iterator<Item = &'s Arc<Segment>>> {
        let first = match segments.partition_point(|s| s.base_offset() <= from_offset) {
            0 if from_offset < self.log_start_offset() => {
                return Err(Error::OffsetOutOfRange {
                    offset: from_offset,
                    log_start_offset: self.log_start_offset(),
                    log_end_offset: self.log_end_offset(),
                })
            }
            0 => 0,
            n => n - 1,
        };
        let below = move |s: &&Arc<Segment>| s.base_offset() < bound;
        Ok(segments[first..].iter().take_while(below))
    }

    /// The first offset whose record timestamp is `>= timestamp`, with that timestamp;
    /// `None` when every record is older. As Kafka's ListOffsets: [`EARLIEST_TIMESTAMP`]
    /// and [`EARLIEST_LOCAL_TIMESTAMP`] give the log start offset, [`LATEST_TIMESTAMP`] the
    /// log end offset, and [`MAX_TIMESTAMP`] the first record with the largest timestamp.
    /// Any other negative timestamp is [`Error::InvalidRequest`] (Kafka's `-5`, the latest
    /// tiered offset, among them: partlog keeps no other tier).
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<TimestampOffset>> {
        self.offset_for_timestamp_up_to(timestamp, None)
    }

    /// [`Log::offset_for_timestamp`] among the records below `up_to` (exclusive; a
    /// consumer's high watermark), which [`LATEST_TIMESTAMP`] then answers. The record
    /// with the largest timestamp is looked for in the whole log, and is `None` when it
    /// lies at or above `up_to`, as Kafka answers it.
    pub fn offset_for_timestamp_up_to(
        &self,
        timestamp: i64,
        up_to: Option<i64>,
    ) -> Result<Option<TimestampOffset>> {
        // Retention may remove the segment holding the answer between the read of the
        // log's end and of its segments, while appends roll past that end: every batch
        // left then lies past it, and nothing is found although later records exist
        // (`sim_threads` seed 1127988). The log start moved when that happened: look again.
        // So too when the lookup failed while a truncation cut the log: it may have read
        // bytes the truncation took (a follower cuts above its high watermark, and a
        // lookup bounded by it reads the header of the first batch past it).
        // And when retention or a cleaning removed a segment under the lookup (its indexes
        // not loaded yet, the lookup finds its files gone): on the next list, as a read
        // does. Those retries are not counted: each waits for a list the log published.
        let mut waiting_since = None;
        let mut attempts = 0;
        loop {
            let (start, cuts) = (self.log_start_offset(), self.settled_truncation_count());
            let segments = self.segments();
            let outcome = self.offset_for_timestamp_in(&segments, timestamp, up_to);
            let look_again = match &outcome {
                Ok(found) => found.is_none() && self.log_start_offset() != start,
                Err(Error::SegmentDeleted { .. }) => {
                    if self.segments_replaced(&segments, &mut waiting_since) {
                        continue;
                    }
                    false
                }
                Err(_) => self.truncation_count() != cuts,
            };
            attempts += 1;
            if !look_again || attempts == LOOKUP_ATTEMPTS {
                return outcome;
            }
        }
    }

    fn offset_for_timestamp_in(
        &self,
        segments: &[Arc<Segment>],
        timestamp: i64,
        up_to: Option<i64>,
    ) -> Result<Option<TimestampOffset>> {
        let start = self.log_start_offset();
        let end = up_to.map_or(self.log_end_offset(), |u| u.min(self.log_end_offset()));
        match timestamp {
            EARLIEST_TIMESTAMP | EARLIEST_LOCAL_TIMESTAMP => {
                return Ok(Some(TimestampOffset {
                    timestamp: -1,
                    offset: start,
                }))
            }
            LATEST_TIMESTAMP => {
                return Ok(Some(TimestampOffset {
                    timestamp: -1,
                    offset: end,
                }));
            }
            MAX_TIMESTAMP => return self.max_timestamp_in(segments, start, end),
            t if t < 0 => {
                return Err(Error::InvalidRequest(format!(
                    "timestamp {t} is neither a time nor one of ListOffsets' special values"
                )))
            }
            _ => {}
        }
        for segment in segments {
            // A segment known to end below the timestamp is skipped; one whose largest
            // timestamp is not known yet is searched up to the bound. (Finding it would
            // read the segment to its end, past the bound, where a follower may be cutting
            // and refilling: `truncation_races` saw lookups fail there three times over.)
            if segment
                .known_largest_timestamp()
                .is_some_and(|largest| largest < timestamp)
            {
                continue;
            }
            let size = segment.size();
            let mut pos = segment.time_lookup_position(timestamp)?;
            while pos < size {
                let header = segment.read_header(pos, size)?;
                if header.last_offset() >= end {
                    break;
                }
                if header.max_timestamp >= timestamp && header.last_offset() >= start {
                    let mut bytes = vec![0u8; header.size()];
                    segment.log_file().read_exact_at(&mut bytes, pos)?;
                    if let Some(found) = first_in_batch(&bytes, timestamp, start)? {
                        return Ok(Some(found));
                    }
                }
                // Stop at the bound without reading the header past it: a follower may be
                // cutting there.
                if header.next_offset() >= end {
                    break;
                }
                pos += header.size() as u64;
            }
        }
        Ok(None)
    }

    /// Kafka's `MAX_TIMESTAMP`, among the records at or above the log start `start`: the
    /// segment with the largest timestamp (the first of them on a tie), the first batch in
    /// it that carries that timestamp, and the first record in that batch that does;
    /// `None` when no record carries a timestamp, or when that record lies at or above
    /// `end`. Records below the log start (DeleteRecords inside a segment) do not count:
    /// their timestamp would name a record that is gone, or none at all.
    fn max_timestamp_in(
        &self,
        segments: &[Arc<Segment>],
        start: i64,
        end: i64,
    ) -> Result<Option<TimestampOffset>> {
        let mut newest: Option<(&Arc<Segment>, i64)> = None;
        for (i, segment) in segments.iter().enumerate() {
            let next_base = segments.get(i + 1).map(|n| n.base_offset());
            if next_base.is_some_and(|next| next <= start) {
                continue; // wholly below the log start
            }
            let largest = if segment.base_offset() < start {
                largest_timestamp_from(segment, start)?
            } else {
                segment.largest_timestamp()?
            };
            if newest.is_none_or(|(_, ts)| largest > ts) {
                newest = Some((segment, largest));
            }
        }
        let Some((segment, timestamp)) = newest.filter(|&(_, ts)| ts >= 0) else {
            return Ok(None);
        };
        let size = segment.size();
        let mut pos = segment.time_lookup_position(timestamp)?;
        while pos < size {
            let header = segment.read_header(pos, size)?;
            if header.max_timestamp >= timestamp && header.last_offset() >= start {
                let mut bytes = vec![0u8; header.size()];
                segment.log_file().read_exact_at(&mut bytes, pos)?;
                // None for a batch across the log start whose record with that timestamp
                // lies below it: a later batch has it.
                if let Some(found) = first_in_batch(&bytes, timestamp, start)? {
                    return Ok(Some(found).filter(|f| f.offset < end));
                }
            }
            pos += header.size() as u64;
        }
        Ok(None)
    }
}

/// The largest timestamp of the records of `segment` at or above `start` (`-1` for none):
/// the batches' own from the one holding `start` on, and for that one, when it begins
/// below `start`, its records' (a compressed batch's or a log-append-time batch's own
/// stands for them, as in [`first_in_batch`]).
fn largest_timestamp_from(segment: &Segment, start: i64) -> Result<i64> {
    let size = segment.size();
    let Some((mut pos, first)) = segment.locate(start, size)? else {
        return Ok(-1);
    };
    let mut largest = -1;
    if first.base_offset < start
        && first.compression() == Compression::None
        && first.timestamp_type() != TimestampType::LogAppendTime
    {
        let mut bytes = vec![0u8; first.size()];
        segment.log_file().read_exact_at(&mut bytes, pos)?;
        for record in Batch::parse(&bytes)?.records()? {
            let record = record?;
            if record.offset >= start {
                largest = largest.max(record.timestamp);
            }
        }
        pos += first.size() as u64;
    }
    while pos < size {
        let header = segment.read_header(pos, size)?;
        largest = largest.max(header.max_timestamp);
        pos += header.size() as u64;
    }
    Ok(largest)
}

/// The first record of a batch at or after `timestamp` and at or above `min_offset`.
/// Compressed batches are not opened: their first eligible offset stands for them.
fn first_in_batch(
    bytes: &[u8],
    timestamp: i64,
    min_offset: i64,
) -> Result<Option<TimestampOffset>> {
    let batch = Batch::parse(bytes)?;
    let header = *batch.header();
    if header.compression() != Compression::None
        || header.timestamp_type() == TimestampType::LogAppendTime
    {
        let offset = header.base_offset.max(min_offset);
        return Ok(Some(TimestampOffset {
            timestamp: header.max_timestamp,
            offset,
        }));
    }
    for record in batch.records()? {
        let record = record?;
        // The record's own, wrapping as Kafka's `long` sums do: a producer chooses the
        // base timestamp and the deltas.
        let (offset, ts) = (record.offset, record.timestamp);
        if offset >= min_offset && ts >= timestamp {
            return Ok(Some(TimestampOffset {
                timestamp: ts,
                offset,
            }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::io::sim::SimStorage;
    use crate::log::{Log, LogOpenOptions};
    use crate::record::BatchBuilder;
    use crate::{Error, LogConfig, ManualClock};

    /// A reader checks the range, then retention deletes the segment holding its offset
    /// before the reader takes its snapshot of the segments. The read used to start at the
    /// oldest remaining segment and return its batches, silently skipping the deleted ones.
    #[test]
    fn read_racing_retention_is_out_of_range_not_a_later_batch() {
        let sim = SimStorage::new(1);
        let config = LogConfig {
            retention_bytes: 1,
            index_bytes_max: 4096,
            ..LogConfig::default()
        };
        let options = LogOpenOptions {
            config,
            clock: Arc::new(ManualClock::new(1_000)),
            ..LogOpenOptions::new(sim.storage(), "/data/t-0")
        };
        let (log, _) = Log::open(options).expect("open");
        for i in 0..3 {
            let mut b = BatchBuilder::new()
                .append(i, None, Some(b"v"), &[])
                .build()
                .expect("batch");
            log.append_as_leader(&mut b, 0).expect("append");
            log.force_roll().expect("roll");
        }
        // The reader's range check passes for offset 0 ...
        assert_eq!(log.log_start_offset(), 0);
        // ... then retention removes the oldest segments ...
        log.delete_old_segments().expect("retention");
        let start = log.log_start_offset();
        assert!(start > 0, "{start}");
        // ... and the read goes on with the new snapshot.
        let bound = log.log_end_offset();
        let err = log
            .read_segments(&log.segments(), 0, 1 << 20, bound)
            .expect_err("offset 0 is gone");
        assert!(
            matches!(err, Error::OffsetOutOfRange { offset: 0, log_start_offset, .. } if log_start_offset == start),
            "{err}"
        );
    }
}
