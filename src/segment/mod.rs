//! One segment: a `.log` file of consecutive record batches and its two indexes.
//!
//! A segment is shared by the log's single writer and any number of readers. Readers see
//! only the first [`Segment::size`] bytes, which the writer publishes (release) after the
//! bytes are written, so a reader never sees a partially written batch. The indexes sit
//! behind a `RwLock` that the writer holds only to add one entry.

pub mod files;
mod recover;
pub mod scan;
mod slice;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use crate::config::LogConfig;
use crate::error::{Error, Result};
use crate::index::{IndexEntry, OffsetIndex, OffsetPosition, TimeIndex, OFFSET_ENTRY_BYTES};
use crate::io::{OpenMode, Storage, StorageFile};
use crate::record::{BatchHeader, HEADER_LEN};

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
    indexes: RwLock<Option<Indexes>>,
    meta: Mutex<Meta>,
    /// Active segments keep their indexes preallocated to this size.
    preallocate: AtomicBool,
    /// Set when the files were renamed `.deleted`: indexes must not be (re)created.
    deleted: AtomicBool,
    index_bytes_max: u64,
    index_interval_bytes: u64,
    created_ms: i64,
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
            indexes: RwLock::new(None),
            meta: Mutex::new(Meta {
                generation: 0,
                bytes_since_index: 0,
                max_timestamp: None,
                offset_of_max_timestamp: base_offset,
                first_batch_timestamp: None,
            }),
            preallocate: AtomicBool::new(active),
            deleted: AtomicBool::new(false),
            index_bytes_max: config.index_bytes_max,
            index_interval_bytes: config.index_interval_bytes,
            created_ms: now_ms,
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

    /// Runs `f` on the indexes, opening them first if needed.
    fn with_indexes<R>(&self, f: impl FnOnce(&Indexes) -> R) -> Result<R> {
        {
            let guard = self.indexes.read().unwrap_or_else(|e| e.into_inner());
            if let Some(ix) = guard.as_ref() {
                return Ok(f(ix));
            }
        }
        self.with_indexes_mut(|ix| Ok(f(ix)))
    }

    fn with_indexes_mut<R>(&self, f: impl FnOnce(&mut Indexes) -> Result<R>) -> Result<R> {
        for _ in 0..2 {
            {
                let mut guard = self.indexes.write().unwrap_or_else(|e| e.into_inner());
                if let Some(ix) = guard.as_mut() {
                    return f(ix);
                }
            }
            self.load_indexes(true)?;
        }
        Err(Error::SegmentDeleted {
            base_offset: self.base_offset,
        })
    }

    /// Opens the index files; rebuilds them from the log when they are missing, damaged, fail
    /// their checks against the log (see [`Segment::indexes_fit_log`]), or have no entry past
    /// position 0 although the log spans more than one interval.
    fn load_indexes(&self, repair: bool) -> Result<()> {
        let mut guard = self.indexes.write().unwrap_or_else(|e| e.into_inner());
        if guard.is_some() {
            return Ok(());
        }
        if self.deleted.load(Ordering::Acquire) {
            return Err(Error::SegmentDeleted {
                base_offset: self.base_offset,
            });
        }
        let max = self
            .preallocate
            .load(Ordering::Relaxed)
            .then_some(self.index_bytes_max);
        let offset_path = self.path(files::INDEX_SUFFIX);
        let time_path = self.path(files::TIME_INDEX_SUFFIX);
        let missing = !self.storage.exists(&offset_path) || !self.storage.exists(&time_path);
        let storage = self.storage.as_ref();
        let mut ix = Indexes {
            offset: OffsetIndex::open(storage, &offset_path, self.base_offset, max)?,
            time: TimeIndex::open(storage, &time_path, self.base_offset, max)?,
        };
        let size = self.size();
        if repair {
            let damaged = ix.offset.is_damaged() || ix.time.is_damaged();
            // A zeroed offset index still reads as one `(base, 0)` entry; partlog writes
            // an entry at position 0 only as the witness of a first batch that starts
            // above the base, so a `(base, 0)` entry alone is no index.
            let sparse = ix
                .offset
                .last_entry()
                .is_none_or(|e| e.position == 0 && e.offset == self.base_offset)
                && size > self.index_interval_bytes * 2;
            // Time entries are written beside offset entries.
            let no_times = ix.offset.entries() > 0 && ix.time.entries() == 0;
            if missing || damaged || sparse || no_times || !self.indexes_fit_log(&ix, size) {
                self.rebuild_indexes_by_headers(&mut ix, size)?;
            }
        }
        *guard = Some(ix);
        Ok(())
    }

    /// Cheap checks of loaded indexes against the log: the last offset entry lies inside the
    /// file, starts a batch and names an offset of it or after it; hopping the headers from
    /// there to the end gives the segment's next offset, and the last time entry must name an
    /// offset below it. Entries before the last ones are not checked (that would read the
    /// whole segment); an I/O error counts as a failed check, and the rebuild reports it.
    fn indexes_fit_log(&self, ix: &Indexes, size: u64) -> bool {
        if ix.offset.sanity_check(size).is_err() {
            return false;
        }
        let last = ix.offset.last_entry();
        let mut pos = last.map_or(0, |e| e.position as u64);
        let mut next = self.base_offset;
        let mut first = true;
        while pos < size {
            let Ok(header) = self.read_header(pos, size) else {
                return false;
            };
            if first {
                if let Some(e) = last {
                    // The entry must not claim offsets below the batch it points at.
                    if e.offset < header.base_offset && e.position > 0 {
                        return false;
                    }
                }
                first = false;
            }
            next = header.next_offset();
            pos += header.size() as u64;
        }
        if let Some(e) = last {
            if e.offset >= next.max(self.base_offset + 1) && size > 0 {
                return false;
            }
        }
        ix.time.sanity_check(next).is_ok()
    }

    /// Builds new indexes by `rebuild`, with room for every entry the log needs, then trims
    /// the files back when the segment is not active (its files only hold their entries),
    /// and syncs them. The sync cannot wait for the next flush: a segment rebuilt on first
    /// use lies below the recovery point, which no flush goes back to, and after a power
    /// loss recovery trusts its indexes as they are on disk (simulation seed 9047543: a
    /// torn, never-synced time entry sent timestamp lookups past the record they wanted).
    ///
    /// The rebuild writes new files beside the old ones (`.index.tmp`, `.timeindex.tmp`)
    /// and renames them over the old ones once synced, so that a power loss during the
    /// sync leaves the old files, which the next load finds wrong again and rebuilds, never
    /// torn new ones that pass the checks (simulation seed 2010705: a rebuild's sync cut
    /// by a crash left a time entry with a torn timestamp, and timestamp lookups skipped
    /// the records before it). Recovery removes leftover `.tmp` files. The old files are
    /// never read, and the caller puts the new indexes in their place.
    fn rebuilt_indexes<R>(
        &self,
        rebuild: impl FnOnce(&mut Indexes) -> Result<R>,
    ) -> Result<(Indexes, R)> {
        let storage = self.storage.as_ref();
        let offset_path = self.path(files::INDEX_SUFFIX);
        let time_path = self.path(files::TIME_INDEX_SUFFIX);
        let tmp = crate::checkpoint::tmp_path;
        let max = self.index_bytes_max;
        let mut fresh = Indexes {
            offset: OffsetIndex::open_empty(storage, &tmp(&offset_path), self.base_offset, max)?,
            time: TimeIndex::open_empty(storage, &tmp(&time_path), self.base_offset, max)?,
        };
        let out = rebuild(&mut fresh)?;
        if !self.preallocate.load(Ordering::Relaxed) {
            fresh.offset.trim()?;
            fresh.time.trim()?;
        }
        fresh.offset.flush()?;
        fresh.time.flush()?;
        fresh.offset.rename_to(storage, &offset_path)?;
        fresh.time.rename_to(storage, &time_path)?;
        storage.sync_dir(&self.dir)?;
        Ok((fresh, out))
    }

    /// Puts `indexes` in place of the ones loaded, if any.
    fn install_indexes(&self, indexes: Indexes) {
        *self.indexes.write().unwrap_or_else(|e| e.into_inner()) = Some(indexes);
    }

    /// Rebuilds both indexes by hopping from batch header to batch header (no CRC: this is
    /// for data below the recovery point, which was validated when it was written).
    fn rebuild_indexes_by_headers(&self, ix: &mut Indexes, size: u64) -> Result<()> {
        (*ix, ()) = self.rebuilt_indexes(|ix| self.index_by_headers(ix, size))?;
        Ok(())
    }

    fn index_by_headers(&self, ix: &mut Indexes, size: u64) -> Result<()> {
        let mut meta = *self.meta_mut();
        meta.generation += 1;
        meta.bytes_since_index = 0;
        meta.max_timestamp = Some(-1);
        let mut pos = 0u64;
        let mut expected = self.base_offset;
        while pos < size {
            let header = self.read_header(pos, size)?;
            // The headers are not checked against their CRCs here: this rebuild serves
            // data recovery trusts (below the recovery point, or after a clean shutdown),
            // so its gap batches keep their witnesses.
            let witness = header.base_offset > expected;
            expected = header.next_offset();
            index_batch(
                ix,
                &mut meta,
                self.index_interval_bytes,
                &header,
                pos,
                witness,
            )?;
            pos += header.size() as u64;
        }
        *self.meta_mut() = meta;
        Ok(())
    }

    /// The offset index entries the file on disk holds (its valid prefix; none when it is
    /// missing): recovery's gap witnesses. Not the loaded index, which recovery replaces.
    ///
    /// Also says whether those entries fill the largest index the segment may have: a full
    /// index took no witness for the batches after its last entry.
    pub(crate) fn offset_index_on_disk(&self) -> Result<(Vec<OffsetPosition>, bool)> {
        let path = self.path(files::INDEX_SUFFIX);
        if !self.storage.exists(&path) {
            return Ok((Vec::new(), false));
        }
        let file = self.storage.open(&path, OpenMode::Read)?;
        // Entries past the largest index this segment may have cannot be its own.
        let len = file.len()?.min(self.index_bytes_max);
        let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(0)];
        file.read_exact_at(&mut bytes, 0)?;
        let valid = OffsetPosition::valid_prefix(&bytes);
        let capacity =
            usize::try_from(self.index_bytes_max).unwrap_or(usize::MAX) / OFFSET_ENTRY_BYTES;
        let entries = bytes
            .chunks_exact(OFFSET_ENTRY_BYTES)
            .take(valid)
            .map(|entry| OffsetPosition::decode(entry, self.base_offset))
            .collect();
        Ok((entries, valid >= capacity))
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
    fn retry_with_rebuilt_index<R>(&self, op: impl Fn() -> Result<R>) -> Result<R> {
        match op() {
            Err(Error::Corruption { .. }) if !self.preallocate.load(Ordering::Relaxed) => {
                let size = self.size();
                self.with_indexes_mut(|ix| self.rebuild_indexes_by_headers(ix, size))?;
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
            // The batch an entry points at holds the entry's offset or ends before it (Kafka
            // writes the last offset of the batch, or of the append it began). A batch that
            // starts after it means the entry is wrong: the scan would skip `offset`.
            if std::mem::take(&mut check_entry) && header.base_offset > entry.offset {
                return Err(Error::Corruption {
                    file: self.path(files::INDEX_SUFFIX),
                    position: pos,
                    reason: format!(
                        "index entry for offset {} points at a batch starting at {}",
                        entry.offset, header.base_offset
                    ),
                });
            }
            if header.last_offset() >= offset {
                return Ok(Some((pos, header)));
            }
            pos += header.size() as u64;
        }
        Ok(None)
    }

    /// Whole batches starting with the one that holds `from`, at most `max_bytes` of them
    /// (but always the first), leaving out batches whose last offset is `>= up_to`.
    pub fn read(&self, from: i64, max_bytes: u64, up_to: i64) -> Result<Option<FileSlice>> {
        self.retry_with_rebuilt_index(|| self.read_once(from, max_bytes, up_to))
    }

    fn read_once(&self, from: i64, max_bytes: u64, up_to: i64) -> Result<Option<FileSlice>> {
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
        // Jump over whole batches with the index, then hop the last few headers.
        let hint = self.with_indexes(|ix| ix.offset.floor_entry(limit.min(size), up_to))?;
        if let Some(entry) = hint {
            end = end.max(entry.position as u64);
        }
        while end < size {
            let header = self.read_header(end, size)?;
            let next = end + header.size() as u64;
            if next > limit || header.last_offset() >= up_to {
                break;
            }
            end = next;
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
        self.log.write_at(batches, pos)?;
        self.largest_timestamp()?; // loads the segment's timestamps if not yet known
        let mut meta = *self.meta_mut();
        let interval = self.index_interval_bytes;
        self.with_indexes_mut(|ix| {
            let mut at = 0usize;
            let mut expected = gaps_after;
            while at < batches.len() {
                let header = BatchHeader::parse(&batches[at..])?;
                if meta.first_batch_timestamp.is_none() {
                    meta.first_batch_timestamp = Some(header.max_timestamp);
                }
                let witness = expected.is_some_and(|e| header.base_offset > e);
                expected = expected.map(|_| header.next_offset());
                index_batch(ix, &mut meta, interval, &header, pos + at as u64, witness)?;
                at += header.size();
            }
            Ok(())
        })?;
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

    /// True when the indexes cannot take another entry (Kafka rolls then).
    pub fn indexes_full(&self) -> Result<bool> {
        self.with_indexes(|ix| ix.offset.is_full() || ix.time.is_full())
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
        Ok(match first {
            Some(ts) if ts >= 0 => batch_timestamp - ts,
            _ => now_ms - self.created_ms,
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

    /// The time retention ages the segment by (Kafka's `LogSegment.largestTimestamp`): its
    /// largest record timestamp, or, when no batch carries one (all `-1`, as old clients
    /// write), the `.log` file's modification time. Otherwise such a segment would look
    /// older than any retention and be deleted on the first pass.
    pub fn retention_timestamp(&self) -> Result<i64> {
        match self.largest_timestamp()? {
            ts if ts >= 0 => Ok(ts),
            _ => self.log.modified_ms(),
        }
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
        let mut pos =
            self.with_indexes(|ix| ix.offset.last_entry().map_or(0, |e| e.position))? as u64;
        let mut last = None;
        while pos < size {
            let header = self.read_header(pos, size)?;
            pos += header.size() as u64;
            last = Some(header);
        }
        Ok(last)
    }

    /// Cuts the segment at `position` (a batch boundary) and drops index entries past it.
    pub fn truncate_at(&self, position: u64) -> Result<u64> {
        let size = self.size();
        if position >= size {
            return Ok(0);
        }
        self.size.store(position, Ordering::Release);
        self.log.set_len(position)?;
        self.with_indexes_mut(|ix| {
            ix.offset.truncate_to_position(position as u32);
            let next_kept = ix
                .offset
                .last_entry()
                .map_or(self.base_offset, |e| e.offset + 1);
            ix.time.truncate_to(next_kept);
            Ok(())
        })?;
        let mut meta = self.meta_mut();
        meta.generation += 1;
        meta.max_timestamp = None;
        meta.bytes_since_index = 0;
        if position == 0 {
            meta.first_batch_timestamp = None;
        }
        Ok(size - position)
    }

    /// Makes the segment the active one again (its indexes grow back to full size).
    pub fn make_active(&self) -> Result<()> {
        self.preallocate.store(true, Ordering::Relaxed);
        let max = self.index_bytes_max;
        self.with_indexes_mut(|ix| {
            ix.offset.extend_to(max)?;
            ix.time.extend_to(max)
        })
    }

    /// Shrinks the indexes to their entries: on roll and on close.
    pub fn trim_indexes(&self) -> Result<()> {
        self.preallocate.store(false, Ordering::Relaxed);
        let mut guard = self.indexes.write().unwrap_or_else(|e| e.into_inner());
        if let Some(ix) = guard.as_mut() {
            ix.offset.trim()?;
            ix.time.trim()?;
        }
        Ok(())
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

    /// Renames every file of the segment with `.deleted` appended; returns the new paths.
    pub fn rename_to_deleted(&self) -> Result<Vec<PathBuf>> {
        // Loaded indexes stay mapped for readers still holding this segment (a mapping
        // outlives the rename and the removal); unloaded ones are never created again. The
        // index lock makes this exclusive with a lazy load, which could otherwise create
        // index files under the old names after the rename.
        let _no_loading = self.indexes.write().unwrap_or_else(|e| e.into_inner());
        self.deleted.store(true, Ordering::Release);
        let mut out = Vec::new();
        for suffix in [
            files::LOG_SUFFIX,
            files::INDEX_SUFFIX,
            files::TIME_INDEX_SUFFIX,
        ] {
            let from = self.path(suffix);
            if self.storage.exists(&from) {
                let to = self.path(&format!("{suffix}{}", files::DELETED_SUFFIX));
                self.storage.rename(&from, &to)?;
                out.push(to);
            }
        }
        Ok(out)
    }
}

/// Adds index entries for one batch at `pos`, Kafka's way: an offset entry once more than
/// `interval` bytes were appended since the last one, with a time entry beside it.
/// Indexes `header`'s batch at `pos`: an entry once `interval` bytes passed since the last,
/// or at once when it is a `witness` (a batch of a compacted log that leaves a gap after the
/// one before; see [`Segment::append`]).
fn index_batch(
    ix: &mut Indexes,
    meta: &mut Meta,
    interval: u64,
    header: &BatchHeader,
    pos: u64,
    witness: bool,
) -> Result<()> {
    let max_ts = meta.max_timestamp.unwrap_or(-1);
    if header.max_timestamp > max_ts {
        meta.max_timestamp = Some(header.max_timestamp);
        meta.offset_of_max_timestamp = header.last_offset();
    }
    // A full index (possible when rebuilding a segment written with a larger index limit)
    // only makes lookups scan further; it is never wrong.
    let (offset_room, time_room) = (!ix.offset.is_full(), !ix.time.is_full());
    // A witness needs only the offset index (a full time index takes no more entries, and
    // a lookup by time scans further).
    if (meta.bytes_since_index > interval && time_room || witness) && offset_room {
        ix.offset.append(header.last_offset(), pos as u32)?;
        if time_room {
            ix.time.maybe_append(
                meta.max_timestamp.unwrap_or(-1),
                meta.offset_of_max_timestamp,
            )?;
        }
        meta.bytes_since_index = 0;
    }
    meta.bytes_since_index += header.size() as u64;
    Ok(())
}

impl Segment {
    /// Shortens the file to `position`, dropping whatever lies past it (recovery, after the
    /// bytes were moved aside). Index entries past it must already be gone. The cut is made
    /// durable before this returns: otherwise a later crash could bring the
    /// cut bytes back under batches appended and synced after them.
    pub(crate) fn cut_file_at(&self, position: u64) -> Result<()> {
        self.log.set_len(position)?;
        if self.size() > position {
            self.size.store(position, Ordering::Release);
        }
        self.log.sync_data()
    }
}

#[cfg(test)]
mod tests;
