//! Crash recovery: what [`Log::open`](super::Log::open) does before the log serves.
//!
//! 1. Leftovers of interrupted work are finished or undone: `.tmp` checkpoints, `.deleted`
//!    and `.cleaned` files are removed; a `.swap` segment (a finished cleaning) replaces the
//!    live segments it covers.
//! 2. After a clean shutdown nothing is scanned. Otherwise every segment from the one that
//!    holds the recovery point on is validated batch by batch (CRC-32C, bounds, offsets),
//!    and its indexes are rebuilt.
//! 3. At the first invalid batch the log is cut. The cut bytes, and any later segments, are
//!    moved aside to `.corrupt` files, never deleted, so an operator or a replica can
//!    salvage them. The report says whether this was a torn tail (unflushed data a crash
//!    damaged, which is expected) or corruption of data that had been flushed, or that is
//!    followed by valid batches (which no crash explains).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::epochs::EpochEntry;
use super::open::LogOpenOptions;
use crate::error::Result;
use crate::io::{OpenMode, Storage, StorageFile};
use crate::record::{BatchHeader, HEADER_LEN};
use crate::segment::{files, ScanRules, ScanStop, Segment, NO_EPOCH_CEILING, NO_EPOCH_FLOOR};

/// Which kind of damage recovery found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DamageKind {
    /// Unflushed bytes at the end of the log were lost or torn by a crash.
    TornTail,
    /// Bytes that were flushed, or that valid batches follow, are invalid: the media or
    /// something outside partlog damaged them.
    Corruption,
}

impl DamageKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            DamageKind::TornTail => "torn-tail",
            DamageKind::Corruption => "corruption",
        }
    }
}

/// Where recovery cut the log, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub kind: DamageKind,
    /// The segment file holding the first invalid batch.
    pub file: PathBuf,
    /// Position of the first invalid batch in that file.
    pub position: u64,
    /// Bytes cut away, including later segments.
    pub bytes: u64,
    pub reason: String,
    /// Where the cut bytes were moved.
    pub moved_to: Vec<PathBuf>,
}

/// A leftover file of interrupted work and what recovery did with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub path: PathBuf,
    pub action: &'static str,
}

/// What opening a log did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub clean_shutdown: bool,
    /// Segments in the log after opening.
    pub segments: usize,
    /// Segments validated by scanning.
    pub segments_scanned: usize,
    /// Bytes validated by scanning (and kept).
    pub recovered_bytes: u64,
    pub damage: Option<Damage>,
    pub leftovers: Vec<Leftover>,
    /// Things worth an operator's attention that did not stop the open.
    pub warnings: Vec<String>,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

impl RecoveryReport {
    /// Bytes cut away by recovery.
    pub fn truncated_bytes(&self) -> u64 {
        self.damage.as_ref().map_or(0, |d| d.bytes)
    }
}

pub(super) struct Outcome {
    pub log_end_offset: i64,
    pub recovery_point: i64,
}

/// Step 1: finish or undo interrupted work.
pub(super) fn finish_leftovers(
    storage: &dyn Storage,
    dir: &Path,
    report: &mut RecoveryReport,
) -> Result<()> {
    let entries = storage.list_dir(dir)?;
    let mut changed = false;
    let mut remove =
        |path: PathBuf, action: &'static str, report: &mut RecoveryReport| -> Result<()> {
            storage.remove_file(&path)?;
            report.leftovers.push(Leftover { path, action });
            changed = true;
            Ok(())
        };
    let mut swaps = Vec::new();
    // Kafka's: partlog's cleaning merges a group's transaction index into its first
    // segment's before the swap, and writes none.
    let mut txn_index_swaps = Vec::new();
    let mut cleaned = Vec::new();
    for entry in entries.iter().filter(|e| !e.is_dir) {
        let path = dir.join(&entry.name);
        let name = entry.name.as_str();
        if name.ends_with(".corrupt.tmp") {
            remove(path, "removed unfinished copy of damaged bytes", report)?;
        } else if name.ends_with(".index.tmp") || name.ends_with(".timeindex.tmp") {
            remove(path, "removed unfinished index rebuild", report)?;
        } else if name.ends_with(files::TMP_SUFFIX) {
            remove(path, "removed unfinished checkpoint", report)?;
        } else if name.ends_with(files::DELETED_SUFFIX) {
            remove(path, "removed file scheduled for deletion", report)?;
        } else if name.ends_with(files::CLEANED_SUFFIX) {
            // Removed below, after the swaps they mark as uncommitted: any of a segment's
            // files, as Kafka's loader counts them (Kafka renames a cleaned segment's
            // `.log` to `.swap` first, then its indexes).
            let base = files::parse_name(name).map(|(base, _)| base);
            cleaned.push((base, path));
        } else if name.ends_with(files::SWAP_SUFFIX) {
            match files::parse_name(name) {
                Some((base, ".log.swap")) => swaps.push((base, path)),
                Some((base, ".txnindex.swap")) => txn_index_swaps.push((base, path)),
                _ => remove(path, "removed swap index (rebuilt from the log)", report)?,
            }
        }
    }
    // A cleaning renames its `.cleaned` files `.swap` newest first: a `.cleaned` left over
    // means the cleaning had not committed, and its swaps at or above it are undone. They
    // go durably before the `.cleaned` files that say so: a crash after the `.cleaned`
    // files went but before the swaps did would leave swaps that look committed, and the
    // next open would put part of the cleaning in (as Kafka's log loader, which deletes
    // such swaps before the cleaned files).
    let uncommitted = cleaned
        .iter()
        .filter_map(|(base, _)| *base)
        .min()
        .unwrap_or(i64::MAX);
    let (undone, committed): (Vec<_>, Vec<_>) = swaps
        .into_iter()
        .partition(|(base, _)| *base >= uncommitted);
    let (txn_undone, txn_committed): (Vec<_>, Vec<_>) = txn_index_swaps
        .into_iter()
        .partition(|(base, _)| *base >= uncommitted);
    let undone: Vec<_> = undone.into_iter().chain(txn_undone).collect();
    if !undone.is_empty() {
        for (_, swap) in undone {
            remove(swap, "removed swap of an unfinished cleaning", report)?;
        }
        storage.sync_dir(dir)?;
    }
    for (_, path) in cleaned {
        remove(path, "removed unfinished cleaned segment", report)?;
    }
    let mut set_aside = Vec::new();
    for (base, swap) in committed {
        if !complete_swap(storage, dir, base, &swap, report)? {
            set_aside.push(base);
        }
        changed = true;
    }
    // Kafka's cleaned transaction index holds the aborted transactions of every segment
    // its cleaning merged, where the live one at its base holds the first's alone: it goes
    // in place, as Kafka's log loader renames every swap file, after the swap of its
    // `.log` (or once that was done). One without a segment goes as an orphan below.
    for (base, swap) in txn_committed {
        let action = if set_aside.contains(&base) {
            storage.remove_file(&swap)?;
            "removed swap of a cleaning whose segment was unreadable"
        } else {
            storage.rename(&swap, &files::path(dir, base, files::TXN_INDEX_SUFFIX))?;
            "completed swap of transaction index"
        };
        report.leftovers.push(Leftover { path: swap, action });
        changed = true;
    }
    remove_orphan_indexes(storage, dir, report)?;
    if changed {
        storage.sync_dir(dir)?;
    }
    Ok(())
}

/// A `.log.swap` is a cleaned segment that was complete before the crash: it replaces the
/// live segments whose offsets it covers. An unreadable swap file is moved aside instead.
/// Whether it replaced them.
fn complete_swap(
    storage: &dyn Storage,
    dir: &Path,
    base: i64,
    swap: &Path,
    report: &mut RecoveryReport,
) -> Result<bool> {
    let Some(next) = next_offset_by_headers(storage, swap)? else {
        let aside = dir.join(format!(
            "{}{}",
            files::file_name(base, ".log.swap"),
            files::CORRUPT_SUFFIX
        ));
        storage.rename(swap, &aside)?;
        report.leftovers.push(Leftover {
            path: swap.to_path_buf(),
            action: "moved unreadable swap aside",
        });
        return Ok(false);
    };
    for entry in storage.list_dir(dir)? {
        let Some((seg_base, suffix)) = files::parse_name(&entry.name) else {
            continue;
        };
        let covered = seg_base >= base && seg_base < next.max(base + 1);
        // The first segment's Kafka transaction index holds the group's entries (the swap
        // merged them into it first): the cleaned segment takes it over.
        if seg_base == base && suffix == files::TXN_INDEX_SUFFIX {
            continue;
        }
        let live = files::SEGMENT_SUFFIXES.contains(&suffix);
        if covered && live {
            storage.remove_file(&dir.join(&entry.name))?;
        }
    }
    storage.rename(swap, &files::path(dir, base, files::LOG_SUFFIX))?;
    report.leftovers.push(Leftover {
        path: swap.to_path_buf(),
        action: "completed swap of cleaned segment",
    });
    Ok(true)
}

/// Index files without their `.log` are removed (a crash between deletions can leave them),
/// a Kafka-written transaction index too, as Kafka's loader removes it.
fn remove_orphan_indexes(
    storage: &dyn Storage,
    dir: &Path,
    report: &mut RecoveryReport,
) -> Result<()> {
    for entry in storage.list_dir(dir)? {
        let Some((base, suffix)) = files::parse_name(&entry.name) else {
            continue;
        };
        let is_index = files::INDEX_SUFFIXES.contains(&suffix);
        if is_index && !storage.exists(&files::path(dir, base, files::LOG_SUFFIX)) {
            let path = dir.join(&entry.name);
            storage.remove_file(&path)?;
            report.leftovers.push(Leftover {
                path,
                action: "removed index without a segment",
            });
        }
    }
    Ok(())
}

/// The offset after the last batch of a file, hopping headers; `None` if any header is bad.
fn next_offset_by_headers(storage: &dyn Storage, path: &Path) -> Result<Option<i64>> {
    let file = storage.open(path, OpenMode::Read)?;
    let len = file.len()?;
    let (mut pos, mut next) = (0u64, None);
    let mut buf = [0u8; HEADER_LEN];
    while pos < len {
        if pos + HEADER_LEN as u64 > len {
            return Ok(None);
        }
        file.read_exact_at(&mut buf, pos)?;
        let Ok(header) = BatchHeader::parse(&buf) else {
            return Ok(None);
        };
        let Ok(after) = header.checked_next_offset() else {
            return Ok(None);
        };
        next = Some(after);
        pos += header.size() as u64;
    }
    Ok(if pos == len { next } else { None })
}

/// Steps 2 and 3. `checkpointed` holds the leader-epoch checkpoint's entries, when one was
/// read. Every epoch reaches that checkpoint durably before its first batch is written,
/// and entries are dropped from it before a lower epoch is written at their offsets, so
/// no valid batch carries an epoch above its last entry (see
/// [`ScanRules::epoch_ceiling`]), and none at an offset carries an epoch below the entry
/// covering that offset: a scan's epoch floor is at least the checkpoint's epoch at its
/// segment's base (simulation seed 2079634: a torn write zeroed the epoch of the first
/// batch after `truncate_fully_and_start_at`, which the checkpoint said was epoch 6).
/// The floor holds only for partlog's files (`partlogs`): Kafka drops entries from its
/// checkpoint after a truncation in the background, and a crash before that leaves an
/// entry whose epoch is above the batches written at its offsets since.
pub(super) fn recover_segments(
    storage: &Arc<dyn Storage>,
    segments: &mut Vec<Arc<Segment>>,
    options: &LogOpenOptions,
    checkpointed: &[EpochEntry],
    partlogs: bool,
    may_have_gaps: bool,
    report: &mut RecoveryReport,
) -> Result<Outcome> {
    let epoch_ceiling = checkpointed.last().map(|e| e.epoch);
    let checkpointed_at = |offset: i64| {
        checkpointed
            .iter()
            .rev()
            .find(|e| e.start_offset <= offset)
            .map_or(NO_EPOCH_FLOOR, |e| e.epoch)
    };
    let last = segments.len() - 1;
    let mut recovery_point = options.recovery_point;
    // Below it, the bytes had been synced: damage there is no crash's doing.
    let mut synced_to = recovery_point;
    let start = if options.clean_shutdown {
        // A roll's trim of the zeros written ahead is not synced: a power loss after the
        // clean close (before the file system wrote the trim back) undoes it in a segment
        // flushed to its end before it rolled. Cheap where there is nothing to cut (see
        // `Segment::cut_zeros_written_ahead`). The active segment was trimmed and synced
        // by the close.
        for segment in &segments[..last] {
            segment.cut_zeros_written_ahead()?;
        }
        match segments[last].read_next_offset() {
            Ok(next) => {
                let end = next.unwrap_or(segments[last].base_offset());
                return Ok(Outcome {
                    log_end_offset: end,
                    recovery_point: end,
                });
            }
            Err(err) => {
                // The shutdown was clean but the active segment does not read: validate it.
                report.warnings.push(format!(
                    "clean shutdown but active segment unreadable: {err}"
                ));
                recovery_point = Some(segments[last].base_offset());
                // The close synced it whole: damage in it is corruption, not a torn tail.
                synced_to = Some(i64::MAX);
                last
            }
        }
    } else {
        match recovery_point {
            Some(rp) => segments
                .partition_point(|s| s.base_offset() <= rp)
                .saturating_sub(1),
            None => 0,
        }
    };
    // The segments below the one that holds the recovery point are trusted, not scanned;
    // a crash may have undone the trim of one that was rolled after it was flushed. That
    // loses nothing (its batches are all there), so the report does not mention it.
    for segment in &segments[..start] {
        segment.cut_zeros_written_ahead()?;
    }
    let mut scratch = Vec::new();
    let mut end = segments[start].base_offset();
    let mut epoch_floor = last_epoch(&segments[..start])?.unwrap_or(NO_EPOCH_FLOOR);
    let consecutive = !may_have_gaps;
    // Where the next segment must start in a log without compaction.
    let mut expected_base = match start {
        0 => None,
        _ => Some(segments[start - 1].read_next_offset()?.unwrap_or(end)),
    };
    let mut damage_at = None;
    for i in start..segments.len() {
        let segment = segments[i].clone();
        // A crash can keep a new segment's bytes and lose the unsynced tail of the one
        // before: the log would skip offsets. In a log without compaction that gap is
        // damage at the start of the later segment.
        if let Some(expected) = expected_base.filter(|&e| consecutive && e != segment.base_offset())
        {
            let reason = format!(
                "segment starts at {} but the one before ends at {expected}",
                segment.base_offset()
            );
            let stop = ScanStop::at(0, reason);
            let kind = damage_kind(synced_to, expected, || Ok(true))?;
            damage_at = Some((i, stop, kind));
            break;
        }
        let next_base = segments.get(i + 1).map(|s| s.base_offset());
        let rules = ScanRules {
            next_base,
            // The checkpoint's epoch at the base is a floor only in files partlog wrote:
            // Kafka cuts epochs from its checkpoint in the background after a
            // truncation, so a crash can leave one above the batches written since.
            epoch_floor: match partlogs {
                true => epoch_floor.max(checkpointed_at(segment.base_offset())),
                false => epoch_floor,
            },
            epoch_ceiling: epoch_ceiling.unwrap_or(NO_EPOCH_CEILING),
            consecutive,
            unflushed_from: recovery_point.unwrap_or(i64::MIN),
            // Only in files partlog wrote (`partlogs`: the partition was opened by
            // partlog before; see `Log::open`) and knows to be flushed up to a recovery
            // point: Kafka's appends wrote no witnesses (its index names an append's last
            // offset at its first batch), and a Kafka follower that copied cleaned
            // segments has gap batches in its active segment.
            witness_gaps: partlogs
                && !consecutive
                && i + 1 == segments.len()
                && recovery_point.is_some(),
        };
        let scan = segment.recover_with(&mut scratch, &rules)?;
        epoch_floor = scan.last_epoch.unwrap_or(epoch_floor);
        report.segments_scanned += 1;
        report.recovered_bytes += scan.valid_bytes;
        end = scan.next_offset.unwrap_or(end.max(segment.base_offset()));
        expected_base = Some(scan.next_offset.unwrap_or(segment.base_offset()));
        let Some(stop) = scan.stop else { continue };
        let valid_end = scan.next_offset.unwrap_or(segment.base_offset());
        let max = options.config.max_message_bytes;
        let kind = damage_kind(synced_to, valid_end, || {
            Ok(segment
                .find_valid_batch_in(stop.position + 1..u64::MAX, max, &mut scratch)?
                .is_some()
                || first_batch_valid(&segments[i + 1..], max, &mut scratch)?)
        })?;
        damage_at = Some((i, stop, kind));
        break;
    }
    if let Some((i, stop, kind)) = damage_at {
        let whole = stop.position == 0 && i > 0;
        report.damage = Some(cut(
            storage.as_ref(),
            segments,
            i,
            stop,
            kind,
            &mut scratch,
        )?);
        if whole {
            // The segment went whole: the log ends where the one before does.
            end = end_of_last(segments)?;
        }
    }
    if let Some(rp) = recovery_point {
        if end < rp {
            report.warnings.push(format!(
                "log ends at {end}, below the recovery point {rp}: flushed data is missing"
            ));
        }
    }
    // The scanned bytes were read back but not necessarily from stable storage (a process
    // crash leaves them in the page cache), so the recovery point stays where it was: the
    // next flush moves it, and until then another crash rescans the same range.
    let first_base = segments[0].base_offset();
    let point = recovery_point.unwrap_or(first_base).clamp(first_base, end);
    Ok(Outcome {
        log_end_offset: end,
        recovery_point: point,
    })
}

/// The offset after the last segment: its next offset, or its base when it is empty.
fn end_of_last(segments: &[Arc<Segment>]) -> Result<i64> {
    let last = &segments[segments.len() - 1];
    Ok(last.read_next_offset()?.unwrap_or(last.base_offset()))
}

/// Torn tail or corruption, for damage after `valid_end`: below a known recovery point the
/// bytes had been flushed, so no crash explains them; without one, valid data after the
/// damage (`later_valid`) suggests corruption (a guess: a power loss may keep later
/// unsynced pages and tear earlier ones).
fn damage_kind(
    recovery_point: Option<i64>,
    valid_end: i64,
    later_valid: impl FnOnce() -> Result<bool>,
) -> Result<DamageKind> {
    Ok(match recovery_point {
        Some(rp) if valid_end < rp => DamageKind::Corruption,
        Some(_) => DamageKind::TornTail,
        None if later_valid()? => DamageKind::Corruption,
        None => DamageKind::TornTail,
    })
}

/// Cuts the log at `stop` in segment `i`: the bytes from there on, and every later
/// segment, are moved aside and dropped from `segments`. A segment cut at its start goes
/// whole (renamed, unless it is the first); otherwise the cut tail is copied aside first,
/// so that a failure (a full disk) changes nothing.
fn cut(
    storage: &dyn Storage,
    segments: &mut Vec<Arc<Segment>>,
    i: usize,
    stop: ScanStop,
    kind: DamageKind,
    scratch: &mut Vec<u8>,
) -> Result<Damage> {
    let segment = segments[i].clone();
    let mut damage = Damage {
        kind,
        file: segment.log_path().to_path_buf(),
        position: stop.position,
        bytes: 0,
        reason: stop.reason,
        moved_to: Vec::new(),
    };
    let whole = stop.position == 0 && i > 0;
    let first_renamed = if whole {
        i
    } else {
        match zero_tail_bytes(&segment, stop.position, scratch)? {
            // Zeros hold nothing to keep: pages a crash left unwritten, or the end of a
            // segment Kafka preallocated (`log.preallocate`, up to `segment.bytes` of
            // them), which a copy would write out for real, filling the disk.
            Some(bytes) => damage.bytes += bytes,
            None => {
                let (bytes, aside) = copy_tail_aside(storage, &segment, stop.position, scratch)?;
                damage.bytes += bytes;
                damage.moved_to.push(aside);
            }
        }
        i + 1
    };
    // The later segments go first, durably, and only then is the damaged one cut, as a
    // truncation does: a crash in between must leave the log whole (merely not cut yet),
    // never a cut segment followed by later ones, nor a later segment without the one
    // before it. Newest first, so that a crash between two renames (metadata reaches the
    // disk in order) leaves the oldest of them, which still continue the log. A log whose
    // offsets may skip would take such a hole for a gap; and a crash that brought a
    // removed segment back would put its old batches after the new ones.
    let moved_before = damage.moved_to.len();
    let later: Vec<Arc<Segment>> = segments.drain(first_renamed..).collect();
    for later in later.iter().rev() {
        let (bytes, aside) = rename_aside(storage, later)?;
        damage.bytes += bytes;
        damage.moved_to.push(aside);
    }
    damage.moved_to[moved_before..].reverse();
    if let Some(dir) = segment.log_path().parent() {
        storage.sync_dir(dir)?;
    }
    if !whole {
        segment.cut_file_at(stop.position)?;
    }
    Ok(damage)
}

/// The leader epoch of the last batch in `segments`, `None` when they hold no batch.
pub(super) fn last_epoch(segments: &[Arc<Segment>]) -> Result<Option<i32>> {
    Ok(last_batch(segments)?.map(|h| h.partition_leader_epoch))
}

/// The header of the last batch in `segments`, `None` when they hold no batch.
pub(super) fn last_batch(segments: &[Arc<Segment>]) -> Result<Option<BatchHeader>> {
    for segment in segments.iter().rev() {
        if let Some(header) = segment.last_batch()? {
            return Ok(Some(header));
        }
    }
    Ok(None)
}

/// True when any of `segments` starts with a CRC-valid batch.
fn first_batch_valid(
    segments: &[Arc<Segment>],
    max_batch_bytes: usize,
    scratch: &mut Vec<u8>,
) -> Result<bool> {
    for segment in segments {
        if segment
            .find_valid_batch_in(0..1, max_batch_bytes, scratch)?
            .is_some()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A name for `<segment file>.<position>.corrupt` next to the segment that is not taken
/// (an earlier recovery may have moved bytes from the same place).
fn corrupt_path(storage: &dyn Storage, segment: &Segment, position: u64) -> (PathBuf, PathBuf) {
    let path = segment.log_path();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("segment")
        .to_string();
    let dir = crate::io::parent_dir(path).to_path_buf();
    let mut aside = dir.join(format!("{name}.{position}{}", files::CORRUPT_SUFFIX));
    let mut n = 1;
    while storage.exists(&aside) {
        aside = dir.join(format!("{name}.{position}-{n}{}", files::CORRUPT_SUFFIX));
        n += 1;
    }
    (dir, aside)
}

/// Copies the bytes of `segment` from `position` to its end into a new `.corrupt` file next
/// to it and makes that durable; the caller then cuts the segment. The copy is written
/// under a `.corrupt.tmp` name and renamed when complete, so a failed copy (a full disk)
/// leaves nothing behind and a retry starts afresh; a crash mid-copy leaves a `.tmp` that
/// the next open removes. At most one segment's tail is ever copied.
fn copy_tail_aside(
    storage: &dyn Storage,
    segment: &Segment,
    position: u64,
    scratch: &mut Vec<u8>,
) -> Result<(u64, PathBuf)> {
    let (dir, aside) = corrupt_path(storage, segment, position);
    let tmp = PathBuf::from(format!("{}{CORRUPT_TMP_TAIL}", aside.display()));
    let copied = copy_range(storage, segment, position, &tmp, scratch)
        .and_then(|len| storage.rename(&tmp, &aside).map(|()| len));
    let len = match copied {
        Ok(len) => len,
        Err(err) => {
            if storage.exists(&tmp) {
                // Best effort: the error that matters is the copy's.
                let _ = storage.remove_file(&tmp);
            }
            return Err(err);
        }
    };
    storage.sync_dir(&dir)?;
    Ok((len.saturating_sub(position), aside))
}

/// The bytes from `position` to the end of the segment's file, if they are all zeros.
fn zero_tail_bytes(segment: &Segment, position: u64, scratch: &mut Vec<u8>) -> Result<Option<u64>> {
    let source = segment.log_file();
    let len = source.len()?;
    let zeros = read_chunks(source.as_ref(), position..len, scratch, |_, chunk| {
        Ok(chunk.iter().all(|&b| b == 0))
    })?;
    Ok(zeros.then(|| len.saturating_sub(position)))
}

/// Reads `range` of `source` in pieces of `scratch` (1 MiB when empty), handing each and
/// its position to `f` until it returns false; true when every piece was handed over.
fn read_chunks(
    source: &dyn StorageFile,
    range: std::ops::Range<u64>,
    scratch: &mut Vec<u8>,
    mut f: impl FnMut(u64, &[u8]) -> Result<bool>,
) -> Result<bool> {
    if scratch.is_empty() {
        scratch.resize(1 << 20, 0);
    }
    let mut pos = range.start;
    while pos < range.end {
        let n = ((range.end - pos) as usize).min(scratch.len());
        source.read_exact_at(&mut scratch[..n], pos)?;
        if !f(pos, &scratch[..n])? {
            return Ok(false);
        }
        pos += n as u64;
    }
    Ok(true)
}

/// Copies `[position, len)` of the segment's file into a fresh, synced file at `to`;
/// returns the segment file's length.
fn copy_range(
    storage: &dyn Storage,
    segment: &Segment,
    position: u64,
    to: &Path,
    scratch: &mut Vec<u8>,
) -> Result<u64> {
    let source = segment.log_file();
    let len = source.len()?;
    let target = storage.open(to, OpenMode::Create)?;
    target.set_len(0)?;
    read_chunks(source.as_ref(), position..len, scratch, |pos, chunk| {
        target.write_at(chunk, pos - position)?;
        Ok(true)
    })?;
    target.sync_data()?;
    Ok(len)
}

/// Moves a whole segment after the damage aside by renaming its `.log` to `.corrupt` (no
/// copy, whatever its size) and removes its indexes. The caller syncs the directory.
fn rename_aside(storage: &dyn Storage, segment: &Segment) -> Result<(u64, PathBuf)> {
    let (_, aside) = corrupt_path(storage, segment, 0);
    let len = segment.log_file().len()?;
    for suffix in [files::INDEX_SUFFIX, files::TIME_INDEX_SUFFIX] {
        let path = segment.path(suffix);
        if storage.exists(&path) {
            storage.remove_file(&path)?;
        }
    }
    storage.rename(segment.log_path(), &aside)?;
    Ok((len, aside))
}

/// What a copy of damaged bytes is called until it is complete.
const CORRUPT_TMP_TAIL: &str = ".tmp";
