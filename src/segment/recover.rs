//! Validating scan of a segment: the heart of crash recovery.
//!
//! The scan reads the file sequentially in large chunks into one reusable buffer, checks
//! each batch (header, bounds, offsets, CRC-32C) and rebuilds both indexes as it goes. It
//! never holds more than one chunk in memory: a batch larger than a chunk is checksummed in
//! pieces, so a corrupt length field cannot make it allocate.

use super::indexes::{index_batch, index_largest_timestamp};
use super::{zeros_written_ahead, Segment};
use crate::error::Error;
use crate::error::Result;
use crate::index::OffsetPosition;
use crate::io::StorageFile;
use crate::record::{legacy_message_size, BatchHeader, Crc32c, CRC_START, HEADER_LEN};

/// Bytes read per `pread` during recovery.
pub const RECOVERY_CHUNK_BYTES: usize = 1 << 20;
// A header always fits one window.
const _: () = assert!(RECOVERY_CHUNK_BYTES >= HEADER_LEN);
/// Candidate batches checksummed while looking for valid data after a bad batch.
const LOOKAHEAD_CANDIDATES_MAX: usize = 4096;
/// Bytes checksummed, over all candidates, while looking for valid data after a bad batch.
const LOOKAHEAD_CRC_BYTES_MAX: u64 = 64 << 20;

/// What a validating scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchScan {
    /// Bytes of valid batches from the start of the segment.
    pub valid_bytes: u64,
    /// Offset after the last valid batch, `None` when there is none.
    pub next_offset: Option<i64>,
    /// Number of valid batches.
    pub batches: u64,
    /// Partition leader epoch of the last valid batch, `None` when there is none.
    pub last_epoch: Option<i32>,
    /// Where and why the scan stopped before the end of the file.
    pub stop: Option<ScanStop>,
}

/// The first invalid or incomplete batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanStop {
    pub position: u64,
    pub reason: String,
}

impl ScanStop {
    /// A stop at `position` for `reason`.
    pub fn at(position: u64, reason: String) -> ScanStop {
        ScanStop { position, reason }
    }
}

/// The epoch floor of a scan that knows nothing before its segment.
pub const NO_EPOCH_FLOOR: i32 = i32::MIN;

/// The epoch ceiling of a scan that knows no epoch checkpoint.
pub const NO_EPOCH_CEILING: i32 = i32::MAX;

/// What a validating scan knows about the log around its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanRules {
    /// Base offset of the next segment: a batch reaching it is invalid. A crash in the
    /// middle of a truncation can leave a removed segment next to the one that replaced
    /// it, with overlapping offsets.
    pub next_base: Option<i64>,
    /// Leader epoch of the last batch before this segment, or the leader-epoch
    /// checkpoint's epoch at the segment's base when higher ([`NO_EPOCH_FLOOR`] if
    /// unknown). Epochs never decrease along a log and the field lies outside the CRC, so
    /// a batch below the floor, or below an earlier batch of the segment, is invalid: a
    /// torn write can zero just that field.
    pub epoch_floor: i32,
    /// The highest leader epoch a batch may carry ([`NO_EPOCH_CEILING`] if unknown): the
    /// last epoch of the leader-epoch checkpoint. Every epoch reaches that checkpoint
    /// durably before the first batch of it is written (partlog's appends do this, and so
    /// do Kafka's, whose epoch cache flushes an assignment synchronously before the
    /// append), so a batch above it carries a field a torn write filled (it lies outside
    /// the CRC, like the floor's).
    pub epoch_ceiling: i32,
    /// Offsets are consecutive (the log does not compact): the first batch starts at the
    /// segment's base and each next one where the previous ends. The base offset lies
    /// outside the CRC too; this catches a torn write that raised it.
    pub consecutive: bool,
    /// Offsets from here on may not have been flushed (the recovery point; `i64::MIN` when
    /// unknown). A batch starting there that leaves a gap after the one before (a
    /// compacted log may have gaps) is kept only when a valid batch or the end of the file
    /// follows it: a power loss that tore the bytes after it may have torn its base offset
    /// too, which no CRC covers. A batch that starts below this point is not checked: it
    /// was flushed (unless a tear lowered its base into a gap below the point, which this
    /// does not see). A gap batch with nothing after it passes this check, so the last
    /// segment of a compacted log asks for its witness instead ([`Self::witness_gaps`]).
    pub unflushed_from: i64,
    /// The segment is a compacted log's last, whose appends gave every batch that leaves a
    /// gap an offset index entry (see [`Segment::append`]). Such a batch at or above
    /// `unflushed_from` is kept only when the index found on disk holds that entry, exactly
    /// (its last offset at its position), whatever follows it: a torn base offset names no
    /// entry, and a batch whose entry a power loss took was unflushed anyway. Earlier
    /// segments of a compacted log were synced at roll or by the cleaner, and are checked
    /// as `unflushed_from` says.
    pub witness_gaps: bool,
}

impl Default for ScanRules {
    /// Nothing known: offsets may have gaps, epochs any value, no next segment.
    fn default() -> Self {
        ScanRules {
            next_base: None,
            epoch_floor: NO_EPOCH_FLOOR,
            epoch_ceiling: NO_EPOCH_CEILING,
            consecutive: false,
            unflushed_from: i64::MIN,
            witness_gaps: false,
        }
    }
}

/// Why `header` cannot follow a batch of epoch `floor`, if it cannot.
fn epoch_regresses(header: &BatchHeader, floor: i32) -> Option<String> {
    let epoch = header.partition_leader_epoch;
    (epoch < floor).then(|| {
        format!(
            "leader epoch {epoch} is below {floor}, of an earlier batch or the epoch checkpoint"
        )
    })
}

/// Why `header` cannot be in a log whose epoch checkpoint ends at `ceiling`, if it cannot.
fn epoch_unknown(header: &BatchHeader, ceiling: i32) -> Option<String> {
    let epoch = header.partition_leader_epoch;
    (epoch > ceiling).then(|| {
        format!("leader epoch {epoch} is above {ceiling}, the last in the epoch checkpoint")
    })
}

/// Why `header` cannot sit before a segment starting at `next_base`, if it cannot.
/// Runs after `offset_problem`, so the last offset does not wrap.
fn reaches_next(header: &BatchHeader, next_base: Option<i64>) -> Option<String> {
    let next = next_base.filter(|&next| header.last_offset() >= next)?;
    Some(format!(
        "offset {} reaches the next segment's base {next}",
        header.last_offset()
    ))
}

/// A window onto the file, refilled in chunks.
struct Chunks<'a> {
    file: &'a dyn StorageFile,
    file_len: u64,
    buf: &'a mut Vec<u8>,
    /// File position of `buf[0]`.
    start: u64,
    filled: usize,
}

impl<'a> Chunks<'a> {
    fn new(file: &'a dyn StorageFile, file_len: u64, buf: &'a mut Vec<u8>) -> Self {
        if buf.len() < RECOVERY_CHUNK_BYTES {
            buf.resize(RECOVERY_CHUNK_BYTES, 0);
        }
        Chunks {
            file,
            file_len,
            buf,
            start: 0,
            filled: 0,
        }
    }

    /// Bytes `[pos, pos + n)`, `n <= RECOVERY_CHUNK_BYTES`, which must lie in the file.
    fn window(&mut self, pos: u64, n: usize) -> Result<&[u8]> {
        debug_assert!(n <= RECOVERY_CHUNK_BYTES && pos + n as u64 <= self.file_len);
        let end = self.start + self.filled as u64;
        if pos < self.start || pos + n as u64 > end {
            // Keep what is already read past `pos`, then fill the rest of the chunk.
            let keep = if pos >= self.start && pos < end {
                (end - pos) as usize
            } else {
                0
            };
            if keep > 0 {
                let from = (pos - self.start) as usize;
                self.buf.copy_within(from..from + keep, 0);
            }
            let want = ((self.file_len - pos) as usize).min(self.buf.len());
            self.file
                .read_exact_at(&mut self.buf[keep..want], pos + keep as u64)?;
            self.start = pos;
            self.filled = want;
        }
        let at = (pos - self.start) as usize;
        Ok(&self.buf[at..at + n])
    }

    /// CRC-32C of `[from, to)`, read chunk by chunk.
    fn crc(&mut self, from: u64, to: u64) -> Result<u32> {
        let mut crc = Crc32c::new();
        let mut pos = from;
        while pos < to {
            let n = ((to - pos) as usize).min(RECOVERY_CHUNK_BYTES);
            crc.update(self.window(pos, n)?);
            pos += n as u64;
        }
        Ok(crc.finish())
    }

    /// Parses and bounds-checks the batch header at `pos`.
    fn header(&mut self, pos: u64) -> Result<std::result::Result<BatchHeader, String>> {
        let left = self.file_len - pos;
        if left < HEADER_LEN as u64 {
            return Ok(Err(format!("incomplete batch header: {left} bytes left")));
        }
        let header = match BatchHeader::parse(self.window(pos, HEADER_LEN)?) {
            Ok(h) => h,
            Err(e) => return Ok(Err(e.to_string())),
        };
        if header.size() as u64 > left {
            return Ok(Err(format!(
                "incomplete batch: {} bytes declared, {left} bytes left",
                header.size()
            )));
        }
        Ok(Ok(header))
    }

    /// True when a whole, CRC-valid legacy (magic 0/1) message starts at `pos`: old-format
    /// data, which recovery must refuse rather than cut.
    fn is_legacy_message(&mut self, pos: u64) -> Result<bool> {
        let n = ((self.file_len - pos) as usize).min(RECOVERY_CHUNK_BYTES);
        Ok(legacy_message_size(self.window(pos, n)?).is_some())
    }

    /// Checks the CRC of the batch at `pos` whose header is `header`.
    fn crc_matches(&mut self, pos: u64, header: &BatchHeader) -> Result<bool> {
        let computed = self.crc(pos + CRC_START, pos + header.size() as u64)?;
        Ok(computed == header.crc)
    }

    /// True when the batch `before` ends the file (or its zeros written ahead), or a
    /// CRC-valid batch with higher offsets follows it at `pos`.
    fn followed_well(&mut self, pos: u64, before: &BatchHeader) -> Result<bool> {
        if pos >= self.file_len || zeros_written_ahead(self.file, pos, self.file_len)? {
            return Ok(true);
        }
        match self.header(pos)? {
            Ok(next) if next.base_offset > before.last_offset() => self.crc_matches(pos, &next),
            _ => Ok(false),
        }
    }
}

/// What the offset index found on disk says of a gap batch (see
/// [`ScanRules::witness_gaps`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Witness {
    /// Not asked: the followed-well check applies.
    NotAsked,
    /// The index names the batch: its last offset at its position.
    Named,
    /// The index does not name it: a torn base offset, or an unflushed batch.
    Missing,
}

impl Segment {
    /// Validates every batch from the start of the file and rebuilds both indexes from the
    /// valid ones. Does not truncate: the log decides what happens to invalid bytes.
    /// `scratch` is reused across segments so that recovery allocates once.
    pub fn recover(&self, scratch: &mut Vec<u8>) -> Result<BatchScan> {
        self.recover_with(scratch, &ScanRules::default())
    }

    /// [`Segment::recover`] with what is known of the log around the segment: a batch that
    /// breaks one of `rules` is invalid too.
    pub fn recover_with(&self, scratch: &mut Vec<u8>, rules: &ScanRules) -> Result<BatchScan> {
        let file_len = self.log.len()?;
        let interval = self.index_interval_bytes;
        let mut meta = *self.meta_mut();
        meta.generation += 1;
        meta.bytes_since_index = 0;
        meta.max_timestamp = Some(-1);
        meta.first_batch_timestamp = None;
        // Whether the scan ended at zeros written ahead of the batches.
        let mut prefilled = false;
        let (indexes, scan) = self.rebuilt_indexes(|ix| {
            let mut chunks = Chunks::new(self.log.as_ref(), file_len, scratch);
            let mut scan = BatchScan::default();
            let mut pos = 0u64;
            // A batch whose CRC the gap check below verified already.
            let mut checked_at = None;
            // The offset index as found on disk, read at the first gap that needs a witness.
            let mut on_disk = None;
            while pos < file_len {
                let header = match chunks.header(pos)? {
                    Ok(h) => h,
                    Err(_) if zeros_written_ahead(self.log.as_ref(), pos, file_len)? => {
                        // The zeros the active segment's appends wrote ahead of its end
                        // (a crash can also undo the trim of a segment rolled since):
                        // the segment ends here, with nothing damaged. They are cut below.
                        prefilled = true;
                        break;
                    }
                    Err(reason) => {
                        if chunks.is_legacy_message(pos)? {
                            return Err(Error::UnsupportedFormat {
                                file: self.log_path().to_path_buf(),
                                position: pos,
                                reason: "Kafka legacy message set (magic 0/1)".into(),
                            });
                        }
                        scan.stop = Some(ScanStop::at(pos, reason));
                        break;
                    }
                };
                let floor = scan.last_epoch.unwrap_or(rules.epoch_floor);
                let problem = self
                    .offset_problem(&header, scan.next_offset, rules.consecutive)
                    .or_else(|| reaches_next(&header, rules.next_base))
                    .or_else(|| epoch_regresses(&header, floor))
                    .or_else(|| epoch_unknown(&header, rules.epoch_ceiling));
                if let Some(reason) = problem {
                    scan.stop = Some(ScanStop::at(pos, reason));
                    break;
                }
                if checked_at != Some(pos) && !chunks.crc_matches(pos, &header)? {
                    let reason = format!("CRC mismatch (stored {:#010x})", header.crc);
                    scan.stop = Some(ScanStop::at(pos, reason));
                    break;
                }
                let expected = scan.next_offset.unwrap_or(self.base_offset);
                let end = pos + header.size() as u64;
                let gap = header.base_offset > expected;
                let check_gap = gap && header.base_offset >= rules.unflushed_from;
                let witness = if check_gap && rules.witness_gaps {
                    self.gap_witness(&mut on_disk, &header, pos)?
                } else {
                    Witness::NotAsked
                };
                let followed_well = match witness {
                    Witness::NotAsked if check_gap => Some(chunks.followed_well(end, &header)?),
                    _ => None,
                };
                let damage = match (witness, followed_well) {
                    (Witness::Missing, _) => Some("the offset index holds no entry for the batch"),
                    (_, Some(false)) => Some("damage follows the batch"),
                    _ => None,
                };
                if let Some(why) = damage {
                    let reason = format!(
                        "base offset {} leaves a gap after {expected} and {why}: a torn \
                         write may have raised it",
                        header.base_offset
                    );
                    scan.stop = Some(ScanStop::at(pos, reason));
                    break;
                }
                if followed_well.is_some() {
                    checked_at = Some(end); // the next batch's CRC held
                }
                meta.first_batch_timestamp
                    .get_or_insert(header.max_timestamp);
                // A gap batch kept here was checked (or lies below the recovery point, or
                // in a log whose only gaps come from the cleaner): the rebuilt index
                // witnesses it again.
                index_batch(ix, &mut meta, interval, &header, pos, gap)?;
                pos = end;
                scan.valid_bytes = pos;
                // `offset_problem` checked that this does not overflow.
                scan.next_offset = Some(header.next_offset());
                scan.batches += 1;
                scan.last_epoch = Some(header.partition_leader_epoch);
            }
            index_largest_timestamp(ix, &meta)?;
            Ok(scan)
        })?;
        self.install_indexes(indexes);
        *self.meta_mut() = meta;
        self.size
            .store(scan.valid_bytes, std::sync::atomic::Ordering::Release);
        if prefilled {
            // Not synced: if a crash undoes the cut, the next recovery makes it again.
            self.cut_written_ahead(scan.valid_bytes)?;
        }
        self.prefilled
            .store(scan.valid_bytes, std::sync::atomic::Ordering::Relaxed);
        Ok(scan)
    }

    /// Whether the offset index on disk (read into `on_disk` at the first call) witnesses
    /// the gap batch `header` at `pos`. Past the last entry of a full index no witness was
    /// written (appends roll before that, but an index limit may have changed, or one
    /// append held more batches than a whole index), so the followed-well check is asked
    /// for instead.
    fn gap_witness(
        &self,
        on_disk: &mut Option<(Vec<OffsetPosition>, bool)>,
        header: &BatchHeader,
        pos: u64,
    ) -> Result<Witness> {
        let (entries, full) = match on_disk {
            Some(read) => read,
            None => on_disk.insert(self.offset_index_on_disk()?),
        };
        let entry = OffsetPosition {
            offset: header.last_offset(),
            position: pos as u32,
        };
        if *full && entries.last().is_some_and(|e| e.position < entry.position) {
            return Ok(Witness::NotAsked);
        }
        let named = entries
            .binary_search_by_key(&entry.offset, |e| e.offset)
            .is_ok_and(|i| entries[i] == entry);
        Ok(if named {
            Witness::Named
        } else {
            Witness::Missing
        })
    }

    /// Why `header` cannot follow `prev_next` in this segment, if it cannot. Crafted
    /// headers must not overflow the arithmetic.
    fn offset_problem(
        &self,
        header: &BatchHeader,
        prev_next: Option<i64>,
        consecutive: bool,
    ) -> Option<String> {
        let expected = prev_next.unwrap_or(self.base_offset);
        let base = header.base_offset;
        if base < expected {
            return Some(format!("base offset {base} is below {expected}"));
        }
        if consecutive && base != expected {
            return Some(format!(
                "base offset {base} leaves a gap after {expected} in a log without compaction"
            ));
        }
        let next = match header.checked_next_offset() {
            Ok(next) => next,
            Err(e) => return Some(e.to_string()),
        };
        // `base >= self.base_offset`, so `next - 1 - self.base_offset` cannot overflow.
        if next - 1 - self.base_offset > i32::MAX as i64 {
            return Some(format!(
                "offset {} is too far above the segment base {}",
                next - 1,
                self.base_offset
            ));
        }
        None
    }

    /// The position of the first CRC-valid batch that starts within `starts`, if any: a
    /// valid batch after a bad one means the bad one is corruption, not a torn write.
    ///
    /// The search is bounded, since damaged bytes can look like anything: a candidate is
    /// checksummed only when its declared size is at most `max_batch_bytes` (a valid batch
    /// is never larger), and the search gives up after `LOOKAHEAD_CANDIDATES_MAX`
    /// candidates or `LOOKAHEAD_CRC_BYTES_MAX` checksummed bytes. Giving up only means the
    /// damage is reported as a torn tail rather than corruption.
    pub fn find_valid_batch_in(
        &self,
        starts: std::ops::Range<u64>,
        max_batch_bytes: usize,
        scratch: &mut Vec<u8>,
    ) -> Result<Option<u64>> {
        let file_len = self.log.len()?;
        let mut chunks = Chunks::new(self.log.as_ref(), file_len, scratch);
        let mut candidates = 0usize;
        let mut crc_bytes = 0u64;
        let mut pos = starts.start;
        while pos < starts.end
            && pos + HEADER_LEN as u64 <= file_len
            && candidates < LOOKAHEAD_CANDIDATES_MAX
            && crc_bytes < LOOKAHEAD_CRC_BYTES_MAX
        {
            // The magic byte is the cheapest filter; most positions fail it.
            if chunks.window(pos + 16, 1)?[0] == crate::record::MAGIC_V2 as u8 {
                match chunks.header(pos)? {
                    Ok(header) if header.size() <= max_batch_bytes => {
                        candidates += 1;
                        crc_bytes += header.size() as u64;
                        if chunks.crc_matches(pos, &header)? {
                            return Ok(Some(pos));
                        }
                    }
                    _ => {}
                }
            }
            pos += 1;
        }
        Ok(None)
    }
}
