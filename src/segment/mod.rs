//! One segment: a `.log` file of consecutive record batches and its two indexes.
//!
//! A segment is shared by the log's single writer and any number of readers. Readers see
//! only the first [`Segment::size`] bytes, which the writer publishes (release) after the
//! bytes are written, so a reader never sees a partially written batch. The indexes sit
//! behind a `RwLock` that an append takes shared, as readers do: it stores its entries
//! past the ones readers look at and publishes them after (see `index::file`). Only what
//! changes the index files themselves takes it exclusively: loading them, a truncation,
//! the trim on roll, a rebuild.
//!
//! The active segment's appends keep zeros written ahead of its end, up to the next
//! multiple of [`PREFILL_BYTES`]: an append then writes over pages that the page cache
//! already holds, in large folios, rather than into new ones page by page. An append
//! that goes past the zeros writes the next ones in the same call as its batches, so that
//! every block it starts is written whole at once and no byte twice. On this
//! machine's ext4 (Linux 6.18) a 16 KiB batch appends about 30% faster, and a single
//! `acks=1` append takes half the time (see README, Performance). The zeros never count as
//! data: readers see [`Segment::size`], a segment is cut back to its batches when it stops
//! being written ([`Segment::trim_files`], on roll and on close), and recovery after a
//! crash drops a tail of zeros at the end of the log (see `recover`).

pub mod files;
mod indexes;
mod prefill;
mod recover;
mod removal;
pub mod scan;
mod slice;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use crate::config::LogConfig;
use crate::error::{Error, Result};
use crate::index::{OffsetIndex, OffsetPosition, TimeIndex};
use crate::io::{OpenMode, Storage, StorageFile};
use crate::record::{BatchHeader, HEADER_LEN};
use indexes::index_batch;

pub(crate) use prefill::ZEROS;
pub use prefill::{zeros_written_ahead, PREFILL_BYTES};
pub use recover::{BatchScan, ScanRules, ScanStop, NO_EPOCH_CEILING, NO_EPOCH_FLOOR};
pub use slice::FileSlice;

/// Positions inside a segment are `i32` in the offset index, so a segment can never grow
/// past this.
pub const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;

#[derive(Debug)]
struct Indexes {
    offset: OffsetIndex,
    time: TimeIndex,
}

/// Writer-side bookkeeping. Readers fill in `max_timestamp` when it is unknown, and only
/// then: see [`Segment::largest_timestamp`].
#[derive(Debug, Clone, Copy)]
struct Meta {
    /// Bumped whenever the segment's bytes shrink or are re-indexed, so that a reader that
    /// computed `max_timestamp` from older bytes does not store it.
    generation: u64,
    bytes_since_index: u64,
    /// Largest batch max-timestamp in the segment, `-1` when none; `None` until loaded.
    max_timestamp: Option<i64>,
    offset_of_max_timestamp: i64,
    /// Max timestamp of the first batch: the reference for time-based rolling.
    first_batch_timestamp: Option<i64>,
}

/// One `.log` file and its `.index` / `.timeindex`.
#[derive(Debug)]
pub struct Segment {
    base_offset: i64,
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    log: Arc<dyn StorageFile>,
    size: AtomicU64,
    /// Where the zeros written ahead of `size` end (at least `size`): the file's length
    /// while the segment is active, as far as the writer knows.
    prefilled: AtomicU64,
    indexes: RwLock<Option<Indexes>>,
    meta: Mutex<Meta>,
    /// Active segments keep their indexes preallocated to this size, and, with `prefill`,
    /// zeros written ahead of their batches.
    preallocate: AtomicBool,
    prefill: bool,
    /// Set when the files were renamed `.deleted`: indexes must not be (re)created.
    deleted: AtomicBool,
    index_bytes_max: u64,
    index_interval_bytes: u64,
    /// When the segment was created, or last cut back to empty: the reference for
    /// time-based rolling while it holds no batch with a timestamp.
    created_ms: AtomicI64,
}

impl Segment {
    /// Creates a new, empty segment whose first offset will be `base_offset`. Files left
    /// behind under the same names (by an earlier truncation) are reset.
    pub fn create(
        storage: Arc<dyn Storage>,
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
        now_ms: i64,
    ) -> Result<Segment> {
        let log = storage.open(
            &files::path(dir, base_offset, files::LOG_SUFFIX),
            OpenMode::Create,
        )?;
        // Only a leftover file needs emptying; truncating a new one would make ext4 treat
        // it as a replaced file and start writing it back at close.
        if log.len()? > 0 {
            log.set_len(0)?;
        }
        for suffix in [files::INDEX_SUFFIX, files::TIME_INDEX_SUFFIX] {
            let path = files::path(dir, base_offset, suffix);
            if storage.exists(&path) {
                storage.remove_file(&path)?;
            }
        }
        let segment = Segment::new(storage, dir, base_offset, config, log, 0, true, now_ms);
        segment.meta_mut().max_timestamp = Some(-1);
        segment.load_indexes(false)?;
        Ok(segment)
    }

    /// Opens an existing segment. Indexes are opened on first use, so that opening a log
    /// with many segments reads only their sizes; `active` preallocates them when they are.
    pub fn open(
        storage: Arc<dyn Storage>,
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
        active: bool,
        now_ms: i64,
    ) -> Result<Segment> {
        let path = files::path(dir, base_offset, files::LOG_SUFFIX);
        let log = storage.open(&path, OpenMode::ReadWrite)?;
        let size = log.len()?;
        if size > SEGMENT_BYTES_MAX {
            return Err(Error::Corruption {
                file: path,
                position: SEGMENT_BYTES_MAX,
                reason: format!("segment of {size} bytes exceeds the 2 GiB position limit"),
            });
        }
        Ok(Segment::new(
            storage,
            dir,
            base_offset,
            config,
            log,
            size,
            active,
            now_ms,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn new(
        storage: Arc<dyn Storage>,
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
        log: Arc<dyn StorageFile>,
        size: u64,
        active: bool,
        now_ms: i64,
    ) -> Segment {
        Segment {
            base_offset,
            dir: dir.to_path_buf(),
            storage,
            log,
            size: AtomicU64::new(size),
            prefilled: AtomicU64::new(size),
            indexes: RwLock::new(None),
            meta: Mutex::new(Meta {
                generation: 0,
                bytes_since_index: 0,
                max_timestamp: None,
                offset_of_max_timestamp: base_offset,
                first_batch_timestamp: None,
            }),
            preallocate: AtomicBool::new(active),
            prefill: config.prefill,
            deleted: AtomicBool::new(false),
            index_bytes_max: config.index_bytes_max,
            index_interval_bytes: config.index_interval_bytes,
            created_ms: AtomicI64::new(now_ms),
        }
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// Bytes of whole batches readers may see.
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    pub fn log_path(&self) -> &Path {
        self.log.path()
    }

    pub fn path(&self, suffix: &str) -> PathBuf {
        files::path(&self.dir, self.base_offset, suffix)
    }

    pub(crate) fn log_file(&self) -> &Arc<dyn StorageFile> {
        &self.log
    }

    /// Every batch readers may see, as one range of the `.log` file.
    pub fn whole(&self) -> FileSlice {
        FileSlice::new(self.log.clone(), 0, self.size())
    }

    fn meta_mut(&self) -> MutexGuard<'_, Meta> {
        // A poisoned lock means a panic elsewhere; the data (plain numbers) is still usable.
        self.meta.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads and checks the header of the batch at `pos`; the batch must end by `limit`.
    pub fn read_header(&self, pos: u64, limit: u64) -> Result<BatchHeader> {
        let corrupt = |reason: String| Error::Corruption {
            file: self.log.path().to_path_buf(),
            position: pos,
            reason,
        };
        if pos + HEADER_LEN as u64 > limit {
            return Err(corrupt(format!(
                "incomplete batch header ({} bytes left)",
                limit - pos
            )));
        }
        let mut buf = [0u8; HEADER_LEN];
        self.log.read_exact_at(&mut buf, pos)?;
        let header = BatchHeader::parse(&buf).map_err(|e| corrupt(e.to_string()))?;
        if pos + header.size() as u64 > limit {
            return Err(corrupt(format!(
                "batch of {} bytes runs past the end",
                header.size()
            )));
        }
        Ok(header)
    }

    /// The position and header of the first batch holding an offset `>= offset`, within the
    /// first `limit` bytes; `None` when there is none.
    pub fn locate(&self, offset: i64, limit: u64) -> Result<Option<(u64, BatchHeader)>> {
        self.retry_with_rebuilt_index(|| self.locate_once(offset, limit))
    }

    /// Runs `op`; if it meets a bad batch header in a segment that is no longer written,
    /// the index may be what is wrong (it pointed into the middle of a batch): rebuild the
    /// index from the log once and try again. Real damage in the log fails both times.
    ///
    /// A segment deleted meanwhile is not rebuilt: the rebuild renames its new files over
    /// the segment's live names, which no longer are its own (a cleaned segment with the
    /// same base offset may hold them). The reader gets [`Error::SegmentDeleted`] and
    /// reads the log's next list of segments. The index lock orders this with
    /// [`Segment::rename_to_deleted`].
    fn retry_with_rebuilt_index<R>(&self, op: impl Fn() -> Result<R>) -> Result<R> {
        match op() {
            Err(Error::Corruption { .. }) if !self.preallocate.load(Ordering::Relaxed) => {
                let size = self.size();
                self.with_indexes_mut(|ix| {
                    if self.deleted.load(Ordering::Acquire) {
                        return Err(Error::SegmentDeleted {
                            base_offset: self.base_offset,
                        });
                    }
                    self.rebuild_indexes_by_headers(ix, size)
                })?;
                op()
            }
            other => other,
        }
    }

    fn locate_once(&self, offset: i64, limit: u64) -> Result<Option<(u64, BatchHeader)>> {
        let entry = self.with_indexes(|ix| ix.offset.lookup(offset))?;
        let mut pos = entry.position as u64;
        let mut check_entry = pos > 0;
        while pos < limit {
            let header = self.read_header(pos, limit)?;
            if std::mem::take(&mut check_entry) {
                self.check_entry(entry, &header)?;
            }
            if header.last_offset() >= offset {
                return Ok(Some((pos, header)));
            }
            pos += header.size() as u64;
        }
        Ok(None)
    }

    /// Whole batches starting with the one that holds `from`, at most `max_bytes` of them
    /// (but always the first), leaving out batches whose last offset is `>= up_to`. A
    /// header after the first that does not read ends the slice there: the read that
    /// starts at it meets the damage and reports it.
    pub fn read(&self, from: i64, max_bytes: u64, up_to: i64) -> Result<Option<FileSlice>> {
        self.retry_with_rebuilt_index(|| self.read_once(from, max_bytes, up_to, false))
    }

    /// Every batch from the one that holds `from` to below `up_to` ([`Segment::read`]
    /// without a byte limit), failing at a header that does not read below `up_to`: for a
    /// reader that takes the slices of every segment at once, and would skip what lies
    /// past it.
    pub fn read_through(&self, from: i64, up_to: i64) -> Result<Option<FileSlice>> {
        self.retry_with_rebuilt_index(|| self.read_once(from, u64::MAX, up_to, true))
    }

    /// The batch an index entry points at holds the entry's offset or ends before it
    /// (Kafka writes the last offset of the batch, or of the append it began). A batch that
    /// starts after it means the entry is wrong: a scan from it would skip offsets, and a
    /// read would take the batches before it for ones below the entry's offset.
    fn check_entry(&self, entry: OffsetPosition, header: &BatchHeader) -> Result<()> {
        if header.base_offset > entry.offset {
            return Err(Error::Corruption {
                file: self.path(files::INDEX_SUFFIX),
                position: entry.position as u64,
                reason: format!(
                    "index entry for offset {} points at a batch starting at {}",
                    entry.offset, header.base_offset
                ),
            });
        }
        Ok(())
    }

    fn read_once(
        &self,
        from: i64,
        max_bytes: u64,
        up_to: i64,
        fail_at_damage: bool,
    ) -> Result<Option<FileSlice>> {
        let size = self.size();
        let Some((start, first)) = self.locate_once(from, size)? else {
            return Ok(None);
        };
        if first.last_offset() >= up_to {
            return Ok(None);
        }
        // `max_bytes` comes from a caller (`u64::MAX` means "no limit"): never overflow.
        let limit = start.saturating_add(max_bytes.max(first.size() as u64));
        let mut end = start + first.size() as u64;
        // The slice holds every offset below `reached` from `from` on.
        let mut reached = first.next_offset();
        // Jump over whole batches with the index, then hop the last few headers.
        let mut hint = self.with_indexes(|ix| ix.offset.floor_entry(limit.min(size), up_to))?;
        hint = hint.filter(|e| e.position as u64 > end);
        let walk_from = (end, reached);
        if let Some(entry) = hint {
            // The batch there holds the entry's offset, which lies below the bound (checked
            // at the first header the loop reads, which is that batch's).
            (end, reached) = (entry.position as u64, entry.offset);
        }
        // Stopping at the bound, a read bounded by a high watermark never reads the header
        // past it, where a follower cutting its log may be taking bytes away.
        while end < size && reached < up_to {
            // Past a compaction gap that spans the bound it still does: the slice ends
            // where a header cannot be read (damage there is met and reported by the read
            // that starts at it). The batch an index entry points at must start at or
            // below the entry's offset: else the slice would hold batches above the
            // bound, and the index is rebuilt and the read retried. A header there that
            // does not read is a wrong position (inside a batch) or damage: the walk from
            // the first batch tells them apart, stopping at damage as ever.
            let header = match self.read_header(end, size) {
                Ok(header) => header,
                Err(err) if fail_at_damage => return Err(err),
                Err(_) if hint.take().is_some() => {
                    (end, reached) = walk_from;
                    continue;
                }
                Err(_) => break,
            };
            if let Some(entry) = hint.take() {
                self.check_entry(entry, &header)?;
            }
            let next = end + header.size() as u64;
            if next > limit || header.last_offset() >= up_to {
                break;
            }
            (end, reached) = (next, header.next_offset());
        }
        Ok(Some(FileSlice::new(self.log.clone(), start, end - start)))
    }

    /// Appends already validated batches, whose offsets continue this segment, at the end
    /// of the file, indexes them, then publishes the new size to readers.
    ///
    /// `gaps_after` is given for a compacted log: the offset the first batch would start at
    /// without a gap. Every batch that leaves a gap after the one before gets an offset
    /// index entry of its own, its witness: a batch's base offset lies outside its CRC, so
    /// after a power loss a torn base offset in the unflushed tail looks like a compaction
    /// gap, and recovery keeps a gap batch there only when the index names it (see
    /// [`ScanRules::witness_gaps`]).
    pub fn append(&self, batches: &[u8], gaps_after: Option<i64>) -> Result<()> {
        let pos = self.size();
        let end = pos + batches.len() as u64;
        match self.zeros_ahead(end) {
            Some(to) => {
                let zeros = &ZEROS[..(to - end) as usize];
                self.log.write_all_vectored_at(&[batches, zeros], pos)?;
                self.prefilled.store(to, Ordering::Relaxed);
            }
            None => self.log.write_at(batches, pos)?,
        }
        self.largest_timestamp()?; // loads the segment's timestamps if not yet known
        let mut meta = *self.meta_mut();
        let interval = self.index_interval_bytes;
        // The index's read lock: readers look entries up meanwhile (see `IndexFile`).
        self.with_indexes(|ix| {
            let mut at = 0usize;
            let mut expected = gaps_after;
            // The time a roll waits from is the largest timestamp of the segment's first
            // append (Kafka's `rollingBasedTimestamp`), which may hold many batches (a
            // follower's fetch); a segment that had batches already, opened since, reads
            // its first batch's (`time_waited_for_roll_ms`), as Kafka's does.
            let first_append = pos == 0;
            while at < batches.len() {
                let header = BatchHeader::parse(&batches[at..])?;
                if first_append {
                    let ts = meta.first_batch_timestamp.unwrap_or(header.max_timestamp);
                    meta.first_batch_timestamp = Some(ts.max(header.max_timestamp));
                }
                let witness = expected.is_some_and(|e| header.base_offset > e);
                expected = expected.map(|_| header.next_offset());
                index_batch(ix, &mut meta, interval, &header, pos + at as u64, witness)?;
                at += header.size();
            }
            Ok::<(), Error>(())
        })??;
        // Merge rather than overwrite: a reader may have filled in the timestamps since
        // the copy was taken, and a copy must never lower them.
        let mut current = self.meta_mut();
        if meta.max_timestamp > current.max_timestamp {
            current.max_timestamp = meta.max_timestamp;
            current.offset_of_max_timestamp = meta.offset_of_max_timestamp;
        }
        current.first_batch_timestamp =
            current.first_batch_timestamp.or(meta.first_batch_timestamp);
        current.bytes_since_index = meta.bytes_since_index;
        drop(current);
        self.size
            .store(pos + batches.len() as u64, Ordering::Release);
        Ok(())
    }

    /// True when the offset index has room for fewer than `offset_entries` more entries,
    /// or the time index for none (Kafka rolls when either is full).
    pub fn indexes_lack_room(&self, offset_entries: usize) -> Result<bool> {
        self.with_indexes(|ix| {
            ix.offset.room() < offset_entries.max(1) || ix.time.is_full_for_appends()
        })
    }

    /// How long the segment has waited to roll, Kafka's way: the new batch's timestamp minus
    /// the first batch's, so a producer writing old timestamps does not roll every append;
    /// without a first batch timestamp, the time since the segment was created.
    pub fn time_waited_for_roll_ms(&self, now_ms: i64, batch_timestamp: i64) -> Result<i64> {
        let known = self.meta_mut().first_batch_timestamp;
        let first = match known {
            Some(ts) => Some(ts),
            None if self.size() > 0 => {
                let ts = self.read_header(0, self.size())?.max_timestamp;
                self.meta_mut().first_batch_timestamp = Some(ts);
                Some(ts)
            }
            None => None,
        };
        // Wrapping as Kafka's `long` arithmetic does: a producer's timestamp may be any
        // i64, and the subtraction must not overflow.
        Ok(match first {
            Some(ts) if ts >= 0 => batch_timestamp.wrapping_sub(ts),
            _ => now_ms - self.created_ms.load(Ordering::Relaxed),
        })
    }

    /// Largest timestamp of any batch in the segment, `-1` when empty.
    ///
    /// Computed on first use, possibly by a reader while the writer appends or truncates.
    /// The result is stored only while the timestamp is still unknown and the segment has
    /// not shrunk since (same generation): a value computed from stale bytes must never
    /// overwrite a newer one, or time lookups would skip the segment and time retention
    /// delete it early.
    pub fn largest_timestamp(&self) -> Result<i64> {
        let generation = {
            let meta = self.meta_mut();
            if let Some(ts) = meta.max_timestamp {
                return Ok(ts);
            }
            meta.generation
        };
        let (ts, ts_offset) = self.compute_largest_timestamp()?;
        Ok(self.store_largest_timestamp(generation, ts, ts_offset))
    }

    /// The largest timestamp of the segment's batches if it is known already, without
    /// reading the segment to find it: that read goes to the segment's end, past any
    /// bound a reader keeps to.
    pub fn known_largest_timestamp(&self) -> Option<i64> {
        self.meta_mut().max_timestamp
    }

    /// The time retention and the compaction lag age the segment by (Kafka's
    /// `LogSegment.largestTimestamp`): its
    /// largest record timestamp, or, when no batch carries one (all `-1`, as old clients
    /// write), the `.log` file's modification time. Otherwise such a segment would look
    /// older than any retention and be deleted on the first pass.
    ///
    /// A batch header that cannot be read (damage, an I/O error) past the time index's
    /// last entry leaves the time index's word for it: that entry's timestamp, or the
    /// file's time without one, which is all Kafka's `largestTimestamp` ever reads. The
    /// segment then ages as Kafka's would, where an error kept every retention pass from
    /// deleting anything of the log, for good.
    pub fn retention_timestamp(&self) -> Result<i64> {
        let largest = match self.largest_timestamp() {
            Ok(ts) => ts,
            Err(_) => (self.with_indexes(|ix| ix.time.last_entry()))
                .ok()
                .flatten()
                .map_or(-1, |entry| entry.timestamp),
        };
        match largest {
            ts if ts >= 0 => Ok(ts),
            _ => self.modified_ms(),
        }
    }

    /// The `.log` file's modification time.
    pub fn modified_ms(&self) -> Result<i64> {
        self.log.modified_ms()
    }

    /// The newest indexed timestamp, then the batches after the last indexed position.
    fn compute_largest_timestamp(&self) -> Result<(i64, i64)> {
        let (last, start) = self.with_indexes(|ix| {
            let last = ix.time.last_entry();
            let start = last.map_or(0, |t| ix.offset.lookup(t.offset).position as u64);
            (last, start)
        })?;
        let (mut ts, mut ts_offset) =
            last.map_or((-1, self.base_offset), |t| (t.timestamp, t.offset));
        let size = self.size();
        let mut pos = start;
        while pos < size {
            let header = self.read_header(pos, size)?;
            if header.max_timestamp > ts {
                ts = header.max_timestamp;
                ts_offset = header.last_offset();
            }
            pos += header.size() as u64;
        }
        Ok((ts, ts_offset))
    }

    /// Stores a computed largest timestamp unless the segment changed since `generation` or
    /// someone stored one first; returns the timestamp now known.
    fn store_largest_timestamp(&self, generation: u64, ts: i64, ts_offset: i64) -> i64 {
        let mut meta = self.meta_mut();
        match meta.max_timestamp {
            Some(known) => known,
            None if meta.generation == generation => {
                meta.max_timestamp = Some(ts);
                meta.offset_of_max_timestamp = ts_offset;
                ts
            }
            // The bytes changed under the computation: its result is of no use.
            None => ts,
        }
    }

    /// The position to scan from for the first batch whose timestamp may be `>= ts`.
    pub fn time_lookup_position(&self, ts: i64) -> Result<u64> {
        self.with_indexes(|ix| match ix.time.lookup(ts) {
            Some(entry) => ix.offset.lookup(entry.offset).position as u64,
            None => 0,
        })
    }

    /// The offset after the last batch (scans from the last index entry), or `None` when
    /// the segment is empty.
    pub fn read_next_offset(&self) -> Result<Option<i64>> {
        Ok(self.last_batch()?.map(|h| h.next_offset()))
    }

    /// The header of the last batch (hopping from the last index entry), `None` when empty.
    pub fn last_batch(&self) -> Result<Option<BatchHeader>> {
        let size = self.size();
        // Not simply the last entry: one at or past `size` belongs to an append that has
        // not published its batches yet.
        let mut pos = self.with_indexes(|ix| {
            let below_size = ix.offset.floor_entry(size.saturating_sub(1), i64::MAX);
            below_size.map_or(0, |e| e.position)
        })? as u64;
        let mut last = None;
        while pos < size {
            let header = self.read_header(pos, size)?;
            pos += header.size() as u64;
            last = Some(header);
        }
        Ok(last)
    }

    /// Cuts the segment at `position` (a batch boundary) and drops index entries past it:
    /// those at or past the position, and those naming an offset at or past the first
    /// batch cut, as Kafka's `truncateTo` drops them by offset. (An entry Kafka wrote for an
    /// append names the append's last offset at its first batch's position: below the
    /// cut, it may still name an offset the cut removed, and the next entry an append
    /// adds, for a lower offset, would find the index corrupt.) Cut back to empty, the
    /// segment counts as created at `now_ms`.
    pub fn truncate_at(&self, position: u64, now_ms: i64) -> Result<u64> {
        let size = self.size();
        if position >= size {
            return Ok(0);
        }
        // Unreadable there (damage), the entries go by position and the time entries past
        // the last offset entry left. A read that failed is no damage: cut by position
        // alone, an entry before the cut for an offset past it (Kafka's older indexes
        // have one per append, at its first batch, for its last offset) would stay.
        let cut_offset = match self.read_header(position, size) {
            Ok(header) => Some(header.base_offset),
            Err(err @ Error::Io { .. }) => return Err(err),
            Err(_) => None,
        };
        self.size.store(position, Ordering::Release);
        self.log.set_len(position)?;
        self.prefilled.store(position, Ordering::Relaxed);
        self.with_indexes_mut(|ix| {
            ix.offset.truncate_to_position(position as u32);
            let cut = cut_offset.unwrap_or_else(|| {
                (ix.offset.last_entry()).map_or(self.base_offset, |e| e.offset + 1)
            });
            ix.offset.truncate_to(cut);
            ix.time.truncate_to(cut);
            Ok(())
        })?;
        let mut meta = self.meta_mut();
        meta.generation += 1;
        meta.max_timestamp = None;
        meta.bytes_since_index = 0;
        if position == 0 {
            // Empty again, the segment rolls by time as a new one does (Kafka's
            // `LogSegment.truncateTo` resets its creation time too).
            meta.first_batch_timestamp = None;
            self.created_ms.store(now_ms, Ordering::Relaxed);
        }
        Ok(size - position)
    }

    /// Makes the segment the active one again (its indexes grow back to full size). On a
    /// full disk they stay as long as they are (see `IndexFile::remap`): the segment rolls
    /// when they fill, and the roll asks for room again. Else a log on a full disk could
    /// not open, and no retention could free space.
    pub fn make_active(&self) -> Result<()> {
        self.preallocate.store(true, Ordering::Relaxed);
        let max = self.index_bytes_max;
        let grown = self.with_indexes_mut(|ix| {
            ix.offset.extend_to(max)?;
            ix.time.extend_to(max)
        });
        match grown {
            Err(err) if err.is_disk_full() => Ok(()),
            grown => grown,
        }
    }

    /// Shrinks the files to what they hold, when the segment stops being written (on roll
    /// and on close): the indexes to their entries, the log to its batches (the zeros
    /// written ahead go). Not made durable here: if a crash undoes the cut, recovery makes
    /// it again (`cut_zeros_written_ahead`, or the scan of a segment above the recovery
    /// point).
    ///
    /// Readers do not wait for the index files' cut: it happens with the indexes shared,
    /// readers going on with the old maps, and only the swap of the maps takes them
    /// exclusively (see `IndexFile::trimmed_map`). The caller holds the log's writer lock,
    /// so no entry comes or goes in between.
    pub fn trim_files(&self) -> Result<()> {
        self.preallocate.store(false, Ordering::Relaxed);
        self.end_time_index()?;
        let trimmed = {
            let guard = self.indexes.read().unwrap_or_else(|e| e.into_inner());
            guard
                .as_ref()
                .map(|ix| (ix.offset.trimmed_map(), ix.time.trimmed_map()))
        };
        if let Some((offset, time)) = trimmed {
            let old_maps = {
                let mut guard = self.indexes.write().unwrap_or_else(|e| e.into_inner());
                match guard.as_mut() {
                    Some(ix) => (
                        ix.offset.install_trimmed(offset)?,
                        ix.time.install_trimmed(time)?,
                    ),
                    None => (None, None),
                }
            };
            drop(old_maps); // unmapped here, with the indexes let go
        }
        let size = self.size();
        if self.log.len()? > size {
            self.cut_written_ahead(size)?;
        }
        self.prefilled.store(size, Ordering::Relaxed);
        Ok(())
    }

    /// Ends the loaded time index with the segment's largest timestamp (see
    /// [`indexes::index_largest_timestamp`]). Indexes that are not loaded were not written
    /// since the segment was opened, and end as they did when it was last closed.
    fn end_time_index(&self) -> Result<()> {
        let loaded = self
            .indexes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        if !loaded || self.size() == 0 {
            return Ok(());
        }
        self.largest_timestamp()?; // known from here on: the writer's lock is held
        let meta = *self.meta_mut();
        self.with_indexes(|ix| indexes::index_largest_timestamp(ix, &meta))?
    }

    /// Makes the log bytes and loaded indexes durable. The index lock is held only to
    /// put the mapped entries into the page cache, never through a sync: readers and the
    /// appender do not wait for the disk.
    pub fn flush(&self) -> Result<()> {
        let index_files = {
            let guard = self.indexes.read().unwrap_or_else(|e| e.into_inner());
            match guard.as_ref() {
                Some(ix) => Some([ix.offset.write_back()?, ix.time.write_back()?]),
                None => None,
            }
        };
        self.log.sync_data()?;
        for file in index_files.iter().flatten() {
            file.sync_data()?;
        }
        Ok(())
    }
}

impl Segment {
    /// Shortens the file to `position`, dropping whatever lies past it (recovery, after the
    /// bytes were moved aside). Index entries past it must already be gone. The cut is made
    /// durable before this returns: otherwise a later crash could bring the
    /// cut bytes back under batches appended and synced after them.
    pub(crate) fn cut_file_at(&self, position: u64) -> Result<()> {
        self.log.set_len(position)?;
        self.cut_done(position)
    }

    /// After the `.log` file was cut at `position`: the segment ends there, durably.
    fn cut_done(&self, position: u64) -> Result<()> {
        if self.size() > position {
            self.size.store(position, Ordering::Release);
        }
        self.prefilled.store(position, Ordering::Relaxed);
        self.log.sync_data()
    }
}

#[cfg(test)]
mod tests;
