//! A segment's two indexes: loading them (and rebuilding them when they do not fit the
//! log), adding a batch's entries, and reading the offset index as the file on disk holds
//! it, for recovery's gap witnesses.

use std::sync::atomic::Ordering;

use super::{files, Indexes, Meta, Segment};
use crate::error::{Error, Result};
use crate::index::{IndexEntry, OffsetIndex, OffsetPosition, TimeIndex, OFFSET_ENTRY_BYTES};
use crate::io::OpenMode;
use crate::record::BatchHeader;

impl Segment {
    /// Runs `f` on the indexes, opening them first if needed.
    pub(super) fn with_indexes<R>(&self, f: impl FnOnce(&Indexes) -> R) -> Result<R> {
        {
            let guard = self.indexes.read().unwrap_or_else(|e| e.into_inner());
            if let Some(ix) = guard.as_ref() {
                return Ok(f(ix));
            }
        }
        self.with_indexes_mut(|ix| Ok(f(ix)))
    }

    pub(super) fn with_indexes_mut<R>(
        &self,
        f: impl FnOnce(&mut Indexes) -> Result<R>,
    ) -> Result<R> {
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
    pub(super) fn load_indexes(&self, repair: bool) -> Result<()> {
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
    pub(super) fn indexes_fit_log(&self, ix: &Indexes, size: u64) -> bool {
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
            if e.offset >= next.max(self.base_offset.saturating_add(1)) && size > 0 {
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
    pub(super) fn rebuilt_indexes<R>(
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
    pub(super) fn install_indexes(&self, indexes: Indexes) {
        *self.indexes.write().unwrap_or_else(|e| e.into_inner()) = Some(indexes);
    }

    /// Rebuilds both indexes by hopping from batch header to batch header (no CRC: this is
    /// for data below the recovery point, which was validated when it was written).
    pub(super) fn rebuild_indexes_by_headers(&self, ix: &mut Indexes, size: u64) -> Result<()> {
        (*ix, ()) = self.rebuilt_indexes(|ix| self.index_by_headers(ix, size))?;
        Ok(())
    }

    pub(super) fn index_by_headers(&self, ix: &mut Indexes, size: u64) -> Result<()> {
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
        index_largest_timestamp(ix, &meta)?;
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
}

/// Adds index entries for one batch at `pos`, Kafka's way: an offset entry once more than
/// `interval` bytes were appended since the last one, with a time entry beside it; or at
/// once when the batch is a `witness` (a compacted log's batch that leaves a gap after the
/// one before; see [`Segment::append`]).
pub(super) fn index_batch(
    ix: &Indexes,
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
    // only makes lookups scan further; it is never wrong. The time index's last slot is
    // kept for the entry the segment ends with (see [`index_largest_timestamp`]).
    let (offset_room, time_room) = (!ix.offset.is_full(), !ix.time.is_full_for_appends());
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

/// Ends the time index with the segment's largest timestamp, as Kafka does when a segment
/// stops being written (on roll and on close) and after it rebuilds a segment's indexes:
/// Kafka takes a segment's largest timestamp from its time index's last entry when it
/// loads a cleanly shut-down log, so without this entry it would age the segment by an
/// older timestamp and delete it early. The entry also ends a lookup's scan sooner. It
/// uses the slot that appends keep free ([`crate::index::TimeIndex::is_full_for_appends`]).
pub(super) fn index_largest_timestamp(ix: &Indexes, meta: &Meta) -> Result<()> {
    match meta.max_timestamp {
        Some(ts) if ts >= 0 && ix.time.room() > 0 => {
            ix.time.maybe_append(ts, meta.offset_of_max_timestamp)
        }
        _ => Ok(()),
    }
}
