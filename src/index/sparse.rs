//! What the offset index and the time index share: a [`SparseIndex`] of fixed-size entries
//! in one mapped index file, searched by binary search.

use std::fmt;
use std::marker::PhantomData;
use std::path::Path;

use super::file::{IndexFile, Trimmed};
use crate::error::{Error, Result};
use crate::io::Storage;

/// The largest entry of any kind.
const MAX_ENTRY_BYTES: usize = 16;

/// One kind of index entry: its size on disk and how to read it.
pub trait IndexEntry: Copy + fmt::Debug {
    /// Size of one entry in the file, at most 16.
    const BYTES: usize;
    /// Decodes the entry `bytes` of a segment whose base offset is `base_offset`.
    fn decode(bytes: &[u8], base_offset: i64) -> Self;
    /// How many leading entries of `bytes` are valid (ordered, non-negative); a zeroed,
    /// preallocated tail ends the count.
    fn valid_prefix(bytes: &[u8]) -> usize;
}

/// A sparse index of one segment: entries of kind `E`, in increasing order.
#[derive(Debug)]
pub struct SparseIndex<E> {
    base_offset: i64,
    file: IndexFile,
    _entry: PhantomData<E>,
}

impl<E: IndexEntry> SparseIndex<E> {
    /// Opens or creates the index; `max_bytes` preallocates it for appends (active segment).
    pub fn open(
        storage: &dyn Storage,
        path: &Path,
        base_offset: i64,
        max_bytes: Option<u64>,
    ) -> Result<Self> {
        let file = IndexFile::open(storage, path, E::BYTES, max_bytes, E::valid_prefix)?;
        Ok(SparseIndex {
            base_offset,
            file,
            _entry: PhantomData,
        })
    }

    /// Opens the index emptied, with room for `max_bytes`, for a rebuild.
    pub fn open_empty(
        storage: &dyn Storage,
        path: &Path,
        base_offset: i64,
        max_bytes: u64,
    ) -> Result<Self> {
        let file = IndexFile::open_empty(storage, path, E::BYTES, max_bytes)?;
        Ok(SparseIndex {
            base_offset,
            file,
            _entry: PhantomData,
        })
    }

    /// Drops every entry and makes room for `max_bytes`, for a rebuild.
    pub fn reset(&mut self, max_bytes: u64) -> Result<()> {
        self.file.reset(max_bytes)
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    pub fn entries(&self) -> usize {
        self.file.entries()
    }

    pub fn is_full(&self) -> bool {
        self.file.is_full()
    }

    /// Entries it can still take.
    pub fn room(&self) -> usize {
        self.file.room()
    }

    /// True when the file held invalid bytes besides its valid entries (the checks against
    /// the log are each kind's `sanity_check`).
    pub fn is_damaged(&self) -> bool {
        self.file.is_damaged()
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Renames the index file to `to`, replacing what is there.
    pub(crate) fn rename_to(&mut self, storage: &dyn Storage, to: &Path) -> Result<()> {
        self.file.rename_to(storage, to)
    }

    /// Entry `i`, which must be below a count `entries()` returned.
    pub fn entry(&self, i: usize) -> E {
        let mut bytes = [0u8; MAX_ENTRY_BYTES];
        let bytes = &mut bytes[..E::BYTES];
        self.file.read_entry(i, bytes);
        E::decode(bytes, self.base_offset)
    }

    pub fn last_entry(&self) -> Option<E> {
        self.entries().checked_sub(1).map(|i| self.entry(i))
    }

    /// Number of leading entries for which `pred` holds (`pred` must be monotone).
    pub(crate) fn count_where(&self, pred: impl Fn(E) -> bool) -> usize {
        let (mut lo, mut hi) = (0usize, self.entries());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(self.entry(mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Keeps the first `n` entries.
    pub(crate) fn truncate_entries(&mut self, n: usize) {
        self.file.truncate_entries(n);
    }

    pub(crate) fn push(&self, entry: &[u8]) -> Result<()> {
        self.file.push(entry)
    }

    /// Shrinks the file to its entries (on roll and on close).
    pub fn trim(&mut self) -> Result<()> {
        self.file.trim()
    }

    /// [`IndexFile::trimmed_map`]: the first half of a trim readers do not wait for.
    pub(crate) fn trimmed_map(&self) -> Result<Trimmed> {
        self.file.trimmed_map()
    }

    /// [`IndexFile::install_trimmed`]: the second half, a swap of the maps.
    pub(crate) fn install_trimmed(&mut self, trimmed: Result<Trimmed>) -> Result<Option<Trimmed>> {
        self.file.install_trimmed(trimmed)
    }

    /// Grows the file back to `max_bytes` (a segment that becomes active again).
    pub fn extend_to(&mut self, max_bytes: u64) -> Result<()> {
        self.file.extend_to(max_bytes)
    }

    pub fn flush(&self) -> Result<()> {
        self.file.flush()
    }

    /// Puts the entries into the page cache and returns the file to sync (see
    /// [`crate::io::MapMut::write_back`]).
    pub fn write_back(&self) -> Result<std::sync::Arc<dyn crate::io::StorageFile>> {
        self.file.write_back()
    }

    /// `offset` relative to the base offset, as stored in an entry: from 0 to
    /// `i32::MAX`, as Kafka's `AbstractIndex.toRelative` has it.
    pub(crate) fn relative(&self, offset: i64) -> Result<i32> {
        // Checked: a hostile header's offset may lie a whole `i64` away from the base.
        offset
            .checked_sub(self.base_offset)
            .and_then(|d| i32::try_from(d).ok())
            .filter(|&d| d >= 0)
            .ok_or_else(|| self.corrupt(0, format!("offset {offset} is out of the index's range")))
    }

    /// A corruption error about entry `i` of this index.
    pub(crate) fn corrupt(&self, i: usize, reason: String) -> Error {
        Error::Corruption {
            file: self.path().to_path_buf(),
            position: (i * E::BYTES) as u64,
            reason,
        }
    }
}
