//! Cleaning one log, Kafka's way: find the cleanable range, build the key → latest-offset
//! map over its dirty part, then rewrite every segment below where the map ends, in groups
//! of about a segment's size, each swapped in as one cleaned segment.

use std::collections::VecDeque;
use std::sync::Arc;

use super::offset_map::{Digest, OffsetMap};
use super::rewrite::{filter_batch, FilterRules, FilterScratch, FilterStats};
use super::superseded::Superseded;
use super::transactions::{Ended, Transactions};
use crate::error::{Error, Result};
use crate::log::Log;
use crate::record::BatchHeader;
use crate::segment::scan::{scan_batches, ScanBuffers, Throttle, SCAN_BYTES};
use crate::segment::{FileSlice, Segment, SEGMENT_BYTES_MAX};

/// Bytes of a cleaned copy filtered before they go to its file: few enough to stay in the
/// CPU's cache until they are copied on.
const CHUNK_BYTES: usize = 256 << 10;

/// Where a log may be cleaned now, and how dirty it is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cleanable {
    /// Where the last cleaning stopped (the log start when there was none).
    pub first_dirty: i64,
    /// The base of the segment holding the first offset that may not be cleaned: the
    /// active segment, the high watermark, or a record younger than
    /// `min_compaction_lag_ms`.
    pub first_uncleanable: i64,
    /// Bytes of segments wholly below `first_dirty`, and from it to `first_uncleanable`.
    pub clean_bytes: u64,
    pub dirty_bytes: u64,
    /// A dirty record is older than `max_compaction_lag_ms`.
    pub overdue: bool,
    /// The log's settled truncation count and [`Log::truncated_to`] before anything of
    /// the range was read: a truncation after them spoils the range, and a cleaning of it
    /// is abandoned (see [`clean_log`]).
    pub truncations: u64,
    pub truncated_to: i64,
}

impl Cleanable {
    /// Dirty bytes over cleanable bytes.
    pub fn dirty_ratio(&self) -> f64 {
        let total = self.clean_bytes + self.dirty_bytes;
        if total == 0 {
            0.0
        } else {
            self.dirty_bytes as f64 / total as f64
        }
    }

    /// Kafka's rule: the ratio passes `min_cleanable_dirty_ratio`, or a dirty record is
    /// overdue; and there is something dirty.
    pub fn worth_cleaning(&self, min_ratio: f64) -> bool {
        self.dirty_bytes > 0 && (self.overdue || self.dirty_ratio() > min_ratio)
    }
}

/// The cleanable range of `log` at `now_ms`, from the checkpointed first dirty offset.
pub fn cleanable(log: &Log, checkpoint: Option<i64>, now_ms: i64) -> Result<Cleanable> {
    let config = log.config();
    // Not the settled count: one taken during a truncation (odd) never matches again, so
    // a cleaning of the range is abandoned, and the choice of a log does not wait for it.
    let truncations = log.truncation_count();
    let truncated_to = log.truncated_to();
    // From the start a crash cannot take back (see `clean_group`): what lies between it
    // and the log start may be read again after one, and must read cleaned, its keys in
    // the map (a tombstone there supersedes the values before it).
    let (start, end) = (log.durable_log_start_offset(), log.log_end_offset());
    // A truncation below the checkpoint replaced what lay above it: dirty again.
    let first_dirty = checkpoint
        .map(|c| c.min(truncated_to))
        .filter(|c| (start..=end).contains(c))
        .unwrap_or(start);
    // One list for both: a roll between two reads would leave the segment it closed out
    // of the lag checks below, while the limit already lay past it.
    let segments = log.segments();
    let (inactive, active_base) = match segments.split_last() {
        Some((active, inactive)) => (inactive, active.base_offset()),
        None => (&[][..], end),
    };
    let mut limit = active_base.min(log.high_watermark()).max(first_dirty);
    if config.min_compaction_lag_ms > 0 {
        // From the segment holding the first dirty offset (Kafka's
        // `nonActiveLogSegmentsFrom(firstDirtyOffset)`): a cleaning that ended inside a
        // segment leaves its dirty rest to the lag as well.
        let holding = inactive
            .partition_point(|s| s.base_offset() <= first_dirty)
            .saturating_sub(1);
        for s in &inactive[holding..] {
            // Kafka's `largestTimestamp`: the file's time when no batch has a timestamp.
            if s.retention_timestamp()? > now_ms.saturating_sub(config.min_compaction_lag_ms) {
                limit = limit.min(s.base_offset()).max(first_dirty);
                break;
            }
        }
    }
    // Whole segments only: down to the base of the segment holding the limit.
    let first_uncleanable = inactive
        .iter()
        .map(|s| s.base_offset())
        .chain(std::iter::once(active_base))
        .filter(|&b| b <= limit)
        .max()
        .unwrap_or(active_base)
        .max(first_dirty.min(active_base));
    let (mut clean_bytes, mut dirty_bytes, mut overdue) = (0, 0, false);
    let overdue_before = now_ms.saturating_sub(config.max_compaction_lag_ms);
    for (i, s) in inactive.iter().enumerate() {
        if s.base_offset() >= first_uncleanable {
            break;
        }
        let next_base = inactive.get(i + 1).map_or(active_base, |n| n.base_offset());
        if next_base <= first_dirty {
            clean_bytes += s.size();
        } else {
            dirty_bytes += s.size();
            // A first batch without a timestamp (-1, as old clients write) says nothing
            // of its age: Kafka counts only timestamps above 0.
            let first = match s.size() {
                0 => 0,
                size => s.read_header(0, size)?.max_timestamp,
            };
            if first > 0 && first < overdue_before {
                overdue = true;
            }
        }
    }
    Ok(Cleanable {
        first_dirty,
        first_uncleanable,
        clean_bytes,
        dirty_bytes,
        overdue,
        truncations,
        truncated_to,
    })
}

/// What one cleaning did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanReport {
    pub first_dirty: i64,
    /// Where this cleaning stopped: the next cleaning's first dirty offset.
    pub end_offset: i64,
    /// The offset map filled before the cleanable range ended: only part of it was
    /// cleaned, the rest waits for the next cleaning.
    pub partial: bool,
    /// Keys in the offset map.
    pub keys: usize,
    pub segments_before: usize,
    pub segments_after: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records: FilterStats,
    /// A truncation or retention changed the log meanwhile; nothing was swapped after it,
    /// and the checkpoint stays.
    pub aborted: bool,
}

/// Cleans `log` over `range` with `map` (cleared first) at `now_ms`. A truncation of the
/// log since `range` was found (a follower cutting its log) aborts the cleaning, which is
/// then reported as such and not as a failure: the cleaned copies are discarded, the
/// checkpoint stays. So does a log another cleaning holds. (The truncation count used to
/// be read here, after the range: a cut in between left the range reaching past it, and
/// the checkpoint written at its end marked clean the records fetched again below it.)
pub fn clean_log(
    log: &Log,
    range: &Cleanable,
    map: &mut OffsetMap,
    now_ms: i64,
    throttle: &mut Throttle,
) -> Result<CleanReport> {
    let aborted = CleanReport {
        first_dirty: range.first_dirty,
        end_offset: range.first_dirty,
        aborted: true,
        ..CleanReport::default()
    };
    let Some(_claim) = log.begin_cleaning() else {
        return Ok(aborted); // another cleaning holds the log
    };
    let (truncations, truncated_to) = (range.truncations, range.truncated_to);
    match clean_log_once(
        log,
        range,
        map,
        (now_ms, throttle, truncations),
        SEGMENT_BYTES_MAX,
    ) {
        // Also after a swap: its end may lie above the cut, and a checkpoint written there
        // would mark clean what the log fetches again below it. The next cleaning starts
        // at the cut.
        Err(_) if log.truncation_count() != truncations => Ok(aborted),
        Ok(report) if log.truncation_count() != truncations => Ok(CleanReport {
            aborted: true,
            ..report
        }),
        Ok(report) if !report.aborted && range.first_dirty <= truncated_to => {
            log.truncation_seen(truncated_to, truncations);
            Ok(report)
        }
        outcome => outcome,
    }
}

/// One cleaning of `log`, which had seen `truncations` (its settled truncation count)
/// before anything was read: the swap refuses the copies if it changed since. No copy
/// grows past `copy_limit` bytes (see [`GroupCopy::TooLarge`]).
fn clean_log_once(
    log: &Log,
    range: &Cleanable,
    map: &mut OffsetMap,
    (now_ms, throttle, truncations): (i64, &mut Throttle, u64),
    copy_limit: u64,
) -> Result<CleanReport> {
    // A failed log's files may hold a swap it left unfinished, which the copies of a new
    // cleaning would overwrite or remove: it is cleaned again once reopened.
    log.check_writable()?;
    map.clear();
    let mut report = CleanReport {
        first_dirty: range.first_dirty,
        ..CleanReport::default()
    };
    let mut buffers = ScanBuffers::default();
    let mut transactions = Transactions::default();
    let mut superseded = Superseded::default();
    let end_offset = build_map(
        log,
        range,
        (map, &mut superseded),
        &mut transactions,
        &mut buffers,
        throttle,
    )?;
    report.end_offset = end_offset;
    report.partial = end_offset < range.first_uncleanable;
    report.keys = map.len();
    if end_offset <= range.first_dirty {
        // A transaction still open where the dirty range begins: nothing to clean until
        // it ends.
        report.end_offset = range.first_dirty;
        return Ok(report);
    }
    let segments: Vec<Arc<Segment>> = log
        .inactive_segments()
        .into_iter()
        .filter(|s| s.base_offset() < end_offset)
        .collect();
    let indexed_aborts = log.indexed_abort_markers(&segments)?;
    let rules = FilterRules {
        map,
        now_ms,
        delete_retention_ms: log.config().delete_retention_ms,
        end_offset,
        transactions: &transactions,
        indexed_aborts: &indexed_aborts,
    };
    report.segments_before = segments.len();
    let next_bases: Vec<i64> = {
        let all = log.segments();
        segments
            .iter()
            .map(|s| {
                all.iter()
                    .map(|n| n.base_offset())
                    .find(|&b| b > s.base_offset())
                    .unwrap_or(i64::MAX)
            })
            .collect()
    };
    // Every group's copy is written first; then all are swapped in as one step, so that
    // a crash leaves the log as it was before the cleaning or as after it.
    let mut cleaned: Vec<Vec<Arc<Segment>>> = Vec::new();
    let mut scratch = FilterScratch::default();
    let mut copies = Copies {
        log,
        bases: Vec::new(),
    };
    let mut groups: VecDeque<_> =
        group_segments(&segments, &next_bases, log.config().segment_bytes).into();
    while let Some(group) = groups.pop_front() {
        let group_segments = &segments[group.clone()];
        copies.bases.push(group_segments[0].base_offset());
        // What the batches before carry to this group, for its halves if it is too large:
        // filtered again, they must meet what the group met, not what it left. (A marker
        // whose transaction's batch came in an earlier group must stay.)
        let before = (scratch.clone(), report.records);
        let written = clean_group(
            log,
            group_segments,
            (&rules, &superseded),
            (&mut buffers, &mut scratch, copy_limit),
            throttle,
            &mut report.records,
        );
        match written {
            Ok(GroupCopy::Written(bytes)) => {
                report.bytes_before += group_segments.iter().map(|s| s.size()).sum::<u64>();
                report.bytes_after += bytes;
                cleaned.push(group_segments.to_vec());
            }
            Ok(GroupCopy::Nothing) => {}
            // Halves fit more easily.
            Ok(GroupCopy::TooLarge) if group.len() > 1 => {
                (scratch, report.records) = before;
                let middle = group.start + group.len() / 2;
                groups.push_front(middle..group.end);
                groups.push_front(group.start..middle);
            }
            // A segment alone that does not fit fails the cleaning, as Kafka's does. Left
            // as it is under a checkpoint past it, it would keep values that later records
            // of their keys superseded, and a later cleaning would drop those records'
            // tombstones (past their horizon, with nothing in its map to tell) and bring
            // the values back.
            Ok(GroupCopy::TooLarge) => {
                discard(log, &cleaned)?;
                return Err(Error::CleanedSegmentTooLarge {
                    base_offset: group_segments[0].base_offset(),
                    limit: copy_limit,
                });
            }
            Err(err) => {
                discard(log, &cleaned)?;
                return Err(err);
            }
        }
    }
    report.segments_after =
        report.segments_before - cleaned.iter().map(|g| g.len() - 1).sum::<usize>();
    // From here the swap owns the copies: it removes them when it gives up, and once it
    // has renamed any, those left mark it unfinished for recovery, which a panic midway
    // (the swap then fails the log) must not remove.
    copies.bases.clear();
    report.aborted = !log.replace_with_cleaned(&cleaned, truncations)?;
    Ok(report)
}

/// The `.cleaned` copies a cleaning has begun, by base offset, removed if the cleaning
/// unwinds (a panic, a bug, which the cleaner contains and goes on from). Left behind, a
/// copy would mark a later cleaning's swap at or above its base as unfinished: a crash
/// during that swap would make recovery undo the swap after its originals were renamed
/// away. (An error removes them on its way out; so does recovery at the next open.)
struct Copies<'a> {
    log: &'a Log,
    bases: Vec<i64>,
}

impl Drop for Copies<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for &base in &self.bases {
                // Unwinding, the panic's report stands; a copy left despite this is
                // removed by the next open's recovery.
                let _ = self.log.discard_cleaned(base);
            }
        }
    }
}

/// Removes the copies of groups that will not be swapped in.
fn discard(log: &Log, groups: &[Vec<Arc<Segment>>]) -> Result<()> {
    for group in groups {
        if let Some(first) = group.first() {
            log.discard_cleaned(first.base_offset())?;
        }
    }
    Ok(())
}

/// Puts every keyed record of `[first_dirty, first_uncleanable)` in the map, a
/// transaction's once it committed (see [`Transactions`]). Returns where the cleaning
/// ends: `first_uncleanable`, the first record the full map did not take, or where a
/// transaction began that the full map did not take whole or that is still open, whichever
/// is first. Records of the map from there on stay in the copy, so they may stand for
/// their keys' latest below it.
///
/// A committed transaction the whole map cannot take, where the dirty range begins, would
/// end every cleaning there: the pass then runs again knowing it committed, its records
/// go in as they come, as plain ones do, and the map ends inside it if it must. So would
/// one that begins there and is decided past where the full map stopped the pass: its
/// marker is looked up, and the pass runs again knowing the outcome (an aborted one's
/// batches go, as they come).
///
/// Notes in `superseded` the plain batches below that end that keep no record.
fn build_map(
    log: &Log,
    range: &Cleanable,
    (map, superseded): (&mut OffsetMap, &mut Superseded),
    transactions: &mut Transactions,
    buffers: &mut ScanBuffers,
    throttle: &mut Throttle,
) -> Result<i64> {
    let pass = map_pass(
        log,
        range,
        (&mut *map, &mut *superseded),
        transactions,
        None,
        buffers,
        throttle,
    )?;
    // A transaction where the range begins that the pass could not see decided: too large
    // for the map, or open still where the full map stopped it.
    let decided = match pass.too_large {
        Some(committed) if committed.first_offset <= range.first_dirty => Some((committed, true)),
        _ if pass.end <= range.first_dirty => match transactions.first_open_transaction() {
            Some((producer, first_offset)) if first_offset <= range.first_dirty => {
                let start = TxnStart {
                    producer,
                    first_offset,
                };
                outcome(log, range, start, buffers, throttle)?.map(|commits| (start, commits))
            }
            _ => None,
        },
        _ => None,
    };
    let end = match decided {
        Some(decided) => {
            map.clear();
            map_pass(
                log,
                range,
                (&mut *map, &mut *superseded),
                transactions,
                Some(decided),
                buffers,
                throttle,
            )?
            .end
        }
        None => pass.end,
    };
    superseded.settle(map, end);
    Ok(end)
}

/// A transaction by its producer and the offset of its first batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TxnStart {
    producer: i64,
    first_offset: i64,
}

/// Where a map pass ends, and the committed transaction that the full map did not take
/// whole, when that is where.
struct MapPass {
    end: i64,
    too_large: Option<TxnStart>,
}

/// One pass of [`build_map`]; the records of `decided`, a transaction known to have
/// committed (`true`), go in as they come, and the batches of one known to have aborted
/// are noted as aborted as they come.
fn map_pass(
    log: &Log,
    range: &Cleanable,
    (map, superseded): (&mut OffsetMap, &mut Superseded),
    transactions: &mut Transactions,
    decided: Option<(TxnStart, bool)>,
    buffers: &mut ScanBuffers,
    throttle: &mut Throttle,
) -> Result<MapPass> {
    *transactions = Transactions::with_budget(map.slots());
    let segments = dirty_segments(log, range);
    superseded.start(&segments);
    let ranges: Vec<FileSlice> = segments.iter().map(|s| s.whole()).collect();
    let (mut stopped, mut too_large) = (None, None);
    // The producer of `decided` while its batches are read, from its first to its marker.
    let mut reading = None;
    // A batch's keys are digested and their slots touched together, then put in order.
    let mut keys: Vec<(Digest, i64)> = Vec::new();
    scan_batches(&ranges, SCAN_BYTES, buffers, throttle, |batch| {
        let header = batch.header();
        let place = superseded.place(batch);
        let producer = header.producer_id;
        if header.next_offset() <= range.first_dirty {
            return Ok(true);
        }
        if let Some(commits) = batch.marker_commits() {
            if reading == Some(producer) {
                reading = None;
                return Ok(true);
            }
            let first = match transactions.end(producer, commits) {
                Ended::Committed(records, first) => {
                    // A record of the key written after one of these, seen already, stays
                    // the latest.
                    let fits = records.into_iter().all(|(digest, offset)| {
                        map.get_digest(digest).is_some_and(|latest| latest > offset)
                            || map.put_digest(digest, offset)
                    });
                    if fits {
                        return Ok(true);
                    }
                    first
                }
                Ended::TooLarge(first) => first,
                Ended::Nothing => return Ok(true),
            };
            // The map ends where the transaction began: all of it is left to a later
            // cleaning, none of it counted for nothing.
            too_large = Some(TxnStart {
                producer,
                first_offset: first,
            });
            return Ok(false);
        }
        if header.is_control() {
            return Ok(true);
        }
        if batch.records().is_err() {
            // Compressed: partlog does not open it, so its records are never dropped but
            // as a whole, as an aborted transaction's batch is (Kafka's cleaner drops
            // those unopened too): it joins its transaction without keys.
            if header.is_transactional() {
                transactional_batch(transactions, &mut reading, decided, header, &[]);
            }
            return Ok(true);
        }
        keys.clear();
        for record in batch.records()? {
            let record = record?;
            if record.offset < range.first_dirty {
                continue;
            }
            if let Some(key) = record.key {
                keys.push((map.digest(key), record.offset));
            }
        }
        if header.is_transactional()
            && !transactional_batch(transactions, &mut reading, decided, header, &keys)
        {
            return Ok(true);
        }
        map.touch(keys.iter().map(|&(digest, _)| digest));
        for &(digest, offset) in &keys {
            if !map.put_digest(digest, offset) {
                stopped = Some(offset);
                return Ok(false);
            }
        }
        if !header.is_transactional() && header.base_offset >= range.first_dirty {
            superseded.track(place, batch, keys.len());
        }
        Ok(true)
    })?;
    let end = stopped
        .or(too_large.map(|t| t.first_offset))
        .unwrap_or(range.first_uncleanable);
    // Not past a transaction still open (see `transactions`).
    let end = transactions
        .first_open()
        .map_or(end, |first| end.min(first));
    Ok(MapPass { end, too_large })
}

/// A transactional batch in a map pass, with its keyed records: held by its open
/// transaction, or, from the first batch of `decided` to its marker (`reading`), noted
/// aborted or, committed, let into the map now. Returns whether its keys go into the map.
fn transactional_batch(
    transactions: &mut Transactions,
    reading: &mut Option<i64>,
    decided: Option<(TxnStart, bool)>,
    header: &BatchHeader,
    keys: &[(Digest, i64)],
) -> bool {
    let (producer, base) = (header.producer_id, header.base_offset);
    let start = TxnStart {
        producer,
        first_offset: base,
    };
    if decided.is_some_and(|(known, _)| known == start) {
        *reading = Some(producer);
    }
    if *reading != Some(producer) {
        transactions.add(producer, base, keys);
        return false;
    }
    let commits = decided.is_some_and(|(_, commits)| commits);
    if !commits {
        transactions.abort_batch(base);
    }
    commits
}

/// Whether the transaction begun at `start` commits (`Some(true)`), by its marker below
/// the range's end; `None` while it has none there.
fn outcome(
    log: &Log,
    range: &Cleanable,
    start: TxnStart,
    buffers: &mut ScanBuffers,
    throttle: &mut Throttle,
) -> Result<Option<bool>> {
    let segments = dirty_segments(log, range);
    let ranges: Vec<FileSlice> = segments.iter().map(|s| s.whole()).collect();
    let mut found = None;
    scan_batches(&ranges, SCAN_BYTES, buffers, throttle, |batch| {
        let header = batch.header();
        if header.base_offset >= range.first_uncleanable {
            return Ok(false);
        }
        if header.producer_id == start.producer && header.base_offset > start.first_offset {
            if let Some(commits) = batch.marker_commits() {
                found = Some(commits);
                return Ok(false);
            }
        }
        Ok(true)
    })?;
    Ok(found)
}

/// The inactive segments holding `[first_dirty, first_uncleanable)`.
fn dirty_segments(log: &Log, range: &Cleanable) -> Vec<Arc<Segment>> {
    let inactive = log.inactive_segments();
    let first = inactive
        .partition_point(|s| s.base_offset() <= range.first_dirty)
        .saturating_sub(1);
    inactive[first..]
        .iter()
        .filter(|s| s.base_offset() < range.first_uncleanable)
        .cloned()
        .collect()
}

/// Consecutive runs of segments whose sizes sum to at most `segment_bytes` and whose
/// offsets fit one segment's relative (`i32`) index.
fn group_segments(
    segments: &[Arc<Segment>],
    next_bases: &[i64],
    segment_bytes: u64,
) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let mut i = 0;
    while i < segments.len() {
        let first = segments[i].base_offset();
        let mut size = segments[i].size();
        let mut j = i + 1;
        while j < segments.len() {
            let grown = size + segments[j].size();
            let span = next_bases[j].saturating_sub(1).saturating_sub(first);
            if grown > segment_bytes || span > i64::from(i32::MAX) {
                break;
            }
            size = grown;
            j += 1;
        }
        groups.push(i..j);
        i = j;
    }
    groups
}

/// What [`clean_group`] made of a group of segments.
#[derive(Debug, PartialEq, Eq)]
enum GroupCopy {
    /// Its cleaned copy, of these bytes, synced in its `.cleaned` file.
    Written(u64),
    /// No copy: the group holds no batch above the log start, and is left as it is.
    Nothing,
    /// No copy: it would have grown past the limit, [`SEGMENT_BYTES_MAX`] (whose positions
    /// an index holds), where a segment no longer opens. A group of segments of at most
    /// `segment.bytes` together can: a batch rewritten past its tombstones' delete horizon
    /// has that horizon as its base timestamp, and its records' timestamp deltas from it
    /// may take up to nine bytes more each. (Kafka's cleaner fails such a log's cleaning,
    /// and marks it uncleanable.)
    TooLarge,
}

/// Writes the cleaned copy of `group` into its `.cleaned` file, synced, unless it would
/// grow past `limit` bytes.
fn clean_group(
    log: &Log,
    group: &[Arc<Segment>],
    (rules, superseded): (&FilterRules<'_>, &Superseded),
    (buffers, scratch, limit): (&mut ScanBuffers, &mut FilterScratch, u64),
    throttle: &mut Throttle,
    stats: &mut FilterStats,
) -> Result<GroupCopy> {
    let Some(first) = group.first() else {
        return Ok(GroupCopy::Nothing);
    };
    let base = first.base_offset();
    // The group's last batch stays, empty if need be, so the copy ends where it did.
    let last = match group.iter().rev().find_map(|s| s.last_batch().transpose()) {
        Some(Ok(header)) => header,
        // Retention removed the group's segments during the cleaning (oldest first, so
        // all of them, below the log start now): a segment deleted since the cleaning
        // listed it no longer loads its indexes. Nothing to copy, as below. (A truncation
        // that removed them abandons the cleaning; see `clean_log`.)
        Some(Err(Error::SegmentDeleted { .. })) | None => return Ok(GroupCopy::Nothing),
        Some(Err(err)) => return Err(err),
    };
    // The start a crash cannot take back: one the log dir has not written down yet may
    // go back to it, and what lies between must read cleaned as well. (Left as they were,
    // a key's old values there outlived its tombstone once this cleaning dropped it.)
    let log_start = log.durable_log_start_offset();
    if last.next_offset() <= log_start {
        // Wholly below the log start (DeleteRecords, or a follower's log start moved by
        // its leader's): nothing to copy, and retention removes the segments.
        return Ok(GroupCopy::Nothing);
    }
    let last_base = last.base_offset;
    let mut file = match log.create_cleaned(base) {
        Ok(file) => file,
        Err(err) => {
            // The file may exist by now (emptying a leftover failed): left, it would mark
            // a later cleaning's swap at or above its base as unfinished.
            log.discard_cleaned(base)?;
            return Err(err);
        }
    };
    let mut out = Vec::with_capacity(CHUNK_BYTES * 2);
    // The batches the map pass found superseded whole are not read again.
    let ranges: Vec<FileSlice> = group
        .iter()
        .flat_map(|s| superseded.ranges(s, last_base, log_start, stats))
        .collect();
    // The writes count with the reads towards the rate limit, as Kafka's cleaner counts
    // both: the read-ahead's waits pay for them.
    let writes = throttle.meter();
    let (mut appended, mut too_large) = (0u64, false);
    let copied = scan_batches(&ranges, SCAN_BYTES, buffers, throttle, |batch| {
        if batch.header().next_offset() <= log_start {
            return Ok(true); // below the log start: gone already
        }
        let keep_if_empty = batch.header().base_offset == last_base;
        filter_batch(batch, rules, keep_if_empty, &mut out, stats, scratch)?;
        if appended + out.len() as u64 > limit {
            too_large = true;
            return Ok(false);
        }
        if out.len() >= CHUNK_BYTES {
            file.append(&out)?;
            writes.add(out.len() as u64);
            appended += out.len() as u64;
            out.clear();
        }
        Ok(true)
    });
    if copied.is_ok() && (too_large || appended + out.len() as u64 > limit) {
        log.discard_cleaned(base)?;
        return Ok(GroupCopy::TooLarge);
    }
    let copied = copied.and_then(|()| file.append(&out)).and_then(|()| {
        throttle.account(out.len() as u64);
        file.finish()
    });
    let written = match copied {
        Ok(written) => written,
        Err(err) => {
            log.discard_cleaned(base)?;
            return Err(err);
        }
    };
    if written == 0 {
        log.discard_cleaned(base)?;
        return Err(Error::InvalidConfig(format!(
            "cleaning segments from {base} produced no batch; expected at least the last"
        )));
    }
    Ok(GroupCopy::Written(written))
}

#[cfg(test)]
mod tests;
