//! The memory-mapped, preallocated file that both index kinds are stored in.
//!
//! An index file is an array of fixed-size entries. While its segment is active the file is
//! preallocated to the configured maximum and mapped whole; entries past `entries` are zero.
//! When the segment rolls (or the log closes) the file is trimmed to exactly the valid
//! entries, as Kafka does, so a cleanly closed index's length gives its entry count.
//!
//! Readers never wait for the writer: an entry's bytes are stored first, then the count is
//! published (`Release`), and a reader loads the count (`Acquire`) and reads only the
//! entries below it (see [`MapMut::bytes`]). Entries are pushed by one thread at a time:
//! the segment's appender, which holds the log's writer lock (or a rebuild, which holds
//! the index exclusively). Only changes to the file itself (a trim, an extension, a
//! truncation, a reset) take `&mut self`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::io::{shared_bytes, MapMut, OpenMode, Storage, StorageFile};

#[derive(Debug)]
pub(crate) struct IndexFile {
    path: PathBuf,
    file: Arc<dyn StorageFile>,
    /// `None` while the file is empty: nothing to map.
    map: Option<Box<dyn MapMut>>,
    entry_size: usize,
    /// Entries published to readers: stored with `Release` after their bytes.
    entries: AtomicUsize,
    capacity: usize,
    /// Set on open when the file held bytes that are not valid entries (a length that is not
    /// a multiple of the entry size, or non-zero bytes after the valid entries).
    damaged: bool,
}

impl IndexFile {
    /// Opens (creating when missing) the index at `path`. When `max_bytes` is `Some`, the file
    /// is extended to that size (rounded down to whole entries) so appends can go in place.
    /// `valid_prefix` tells how many leading entries of the mapped bytes are valid.
    pub(crate) fn open(
        storage: &dyn Storage,
        path: &Path,
        entry_size: usize,
        max_bytes: Option<u64>,
        valid_prefix: impl Fn(&[u8]) -> usize,
    ) -> Result<IndexFile> {
        let existed = storage.exists(path);
        let file = storage.open(path, OpenMode::Create)?;
        let len = file.len()?;
        let mut index = IndexFile {
            path: path.to_path_buf(),
            file,
            map: None,
            entry_size,
            entries: AtomicUsize::new(0),
            capacity: 0,
            damaged: len % entry_size as u64 != 0,
        };
        let existing = (len / entry_size as u64) as usize;
        let want = match max_bytes {
            Some(max) => round_down(max.max(len), entry_size),
            None => existing * entry_size,
        };
        let mut full_disk = false;
        match index.remap(want) {
            Ok(()) => {}
            // A full disk: an index that was there opens as long as it is, full (see
            // `remap`), so that its log opens, serves reads and runs retention, which
            // frees space; its segment rolls at the next append, and the new segment's
            // index (a new file) asks for room again, failing that append if there is none.
            Err(err) if err.is_disk_full() && existed => {
                index.map_as_long_as_it_is(existing)?;
                full_disk = true;
            }
            Err(err) => return Err(err),
        }
        let stored_len = existing.min(index.capacity) * entry_size;
        let stored = match index.map.as_mut() {
            Some(map) => &map.as_mut_slice()[..stored_len],
            None => &[],
        };
        let entries = valid_prefix(stored);
        let junk = stored[entries * entry_size..].iter().any(|&b| b != 0);
        *index.entries.get_mut() = entries;
        index.damaged |= junk;
        if full_disk {
            index.capacity = entries;
        }
        Ok(index)
    }

    /// Opens (creating when missing) the index at `path` and empties it, without reading
    /// what it held: for a rebuild, which replaces every entry anyway.
    pub(crate) fn open_empty(
        storage: &dyn Storage,
        path: &Path,
        entry_size: usize,
        max_bytes: u64,
    ) -> Result<IndexFile> {
        let mut index = IndexFile {
            path: path.to_path_buf(),
            file: storage.open(path, OpenMode::Create)?,
            map: None,
            entry_size,
            entries: AtomicUsize::new(0),
            capacity: 0,
            damaged: false,
        };
        index.reset(max_bytes)?;
        Ok(index)
    }

    /// Drops every entry and gives the file room for `max_bytes`. Shortening the file to
    /// zero first discards the old bytes without touching them (Kafka's index `reset`).
    pub(crate) fn reset(&mut self, max_bytes: u64) -> Result<()> {
        self.map = None;
        self.file.set_len(0)?;
        *self.entries.get_mut() = 0;
        self.damaged = false;
        self.remap(round_down(max_bytes, self.entry_size))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the file to `to` (replacing what is there); the map and the handle stay.
    pub(crate) fn rename_to(&mut self, storage: &dyn Storage, to: &Path) -> Result<()> {
        storage.rename(&self.path, to)?;
        self.path = to.to_path_buf();
        Ok(())
    }

    /// Entries published so far.
    pub(crate) fn entries(&self) -> usize {
        self.entries.load(Ordering::Acquire)
    }

    /// True when the file held bytes past its valid entries that are not zero padding, or a
    /// partial entry: it was damaged and should be rebuilt.
    pub(crate) fn is_damaged(&self) -> bool {
        self.damaged
    }

    pub(crate) fn is_full(&self) -> bool {
        self.entries() >= self.capacity
    }

    /// Entries it can still take.
    pub(crate) fn room(&self) -> usize {
        self.capacity.saturating_sub(self.entries())
    }

    /// Copies entry `i`, which must be below a count [`IndexFile::entries`] returned, into
    /// `out` (one entry long).
    pub(crate) fn read_entry(&self, i: usize, out: &mut [u8]) {
        debug_assert_eq!(out.len(), self.entry_size);
        debug_assert!(i < self.capacity);
        if let Some(map) = &self.map {
            let at = i * self.entry_size;
            shared_bytes::load(&map.bytes()[at..at + self.entry_size], out);
        }
    }

    /// Appends one entry, then publishes it; the caller checks `is_full` first, and is the
    /// index's one pusher (see the module docs). Readers go on reading the entries
    /// published before it meanwhile.
    pub(crate) fn push(&self, entry: &[u8]) -> Result<()> {
        debug_assert_eq!(entry.len(), self.entry_size);
        let n = self.entries.load(Ordering::Relaxed);
        if n >= self.capacity {
            return Err(Error::Corruption {
                file: self.path.clone(),
                position: (n * self.entry_size) as u64,
                reason: "index is full".into(),
            });
        }
        if let Some(map) = &self.map {
            map.store(n * self.entry_size, entry);
        }
        self.entries.store(n + 1, Ordering::Release);
        Ok(())
    }

    /// Keeps the first `n` entries and zeroes the rest, so that a later open does not count
    /// stale entries as valid.
    pub(crate) fn truncate_entries(&mut self, n: usize) {
        if n == 0 && self.damaged {
            // Cleared for a rebuild: the invalid bytes past the entries go too.
            if let Some(map) = self.map.as_mut() {
                let len = map.bytes().len();
                map.zero(0, len);
            }
            *self.entries.get_mut() = 0;
            self.damaged = false;
            return;
        }
        let entries = *self.entries.get_mut();
        if n >= entries {
            return;
        }
        let (from, to) = (n * self.entry_size, entries * self.entry_size);
        if let Some(map) = self.map.as_mut() {
            map.zero(from, to);
        }
        *self.entries.get_mut() = n;
    }

    /// Shrinks the file to exactly the valid entries (on roll and on close).
    pub(crate) fn trim(&mut self) -> Result<()> {
        let len = *self.entries.get_mut() * self.entry_size;
        self.remap(len)
    }

    /// The first half of a trim that readers do not wait for: with the index shared, puts
    /// the mapped entries into the file, cuts the file to them and maps it again, and
    /// returns the new map. Readers go on with the old map meanwhile: it stays valid below
    /// the new length, and they read only published entries, which all lie below it. The
    /// caller keeps entries from being pushed or cut until [`IndexFile::install_trimmed`]
    /// (it holds the log's writer lock). On an error the old map stays, and
    /// [`IndexFile::trim`] does it all again.
    pub(crate) fn trimmed_map(&self) -> Result<Trimmed> {
        let len = self.entries() * self.entry_size;
        if let Some(map) = &self.map {
            map.write_back()?;
        }
        self.file.set_len(len as u64)?;
        let map = if len > 0 {
            Some(self.file.map_mut(len)?)
        } else {
            None
        };
        Ok(Trimmed {
            file: self.file.clone(),
            map,
        })
    }

    /// The second half, with the index exclusive: a swap of the maps. Returns what it was
    /// given, now holding the old map, for the caller to drop (unmap) once it let the
    /// index go. When the first half failed, came from another file (the index was
    /// replaced in between) or the entries changed, trims the exclusive way instead
    /// ([`IndexFile::trim`], which keeps readers consistent on error) and returns `None`.
    pub(crate) fn install_trimmed(&mut self, trimmed: Result<Trimmed>) -> Result<Option<Trimmed>> {
        let entries = *self.entries.get_mut();
        match trimmed {
            Ok(mut t)
                if Arc::ptr_eq(&t.file, &self.file)
                    && t.map.as_ref().map_or(0, |m| m.bytes().len())
                        == entries * self.entry_size =>
            {
                self.capacity = entries;
                std::mem::swap(&mut self.map, &mut t.map);
                Ok(Some(t))
            }
            _ => self.trim().map(|()| None),
        }
    }

    /// Grows the file back to `max_bytes` so appends can continue (a trimmed segment that
    /// becomes active again after truncation).
    pub(crate) fn extend_to(&mut self, max_bytes: u64) -> Result<()> {
        let want =
            round_down(max_bytes, self.entry_size).max(*self.entries.get_mut() * self.entry_size);
        if want != self.capacity * self.entry_size {
            self.remap(want)?;
        }
        Ok(())
    }

    /// Makes the entries and the file length durable. `msync` alone writes back the mapped
    /// bytes but not a length changed by `trim`/`extend_to`: after a crash the file could
    /// come back at its old length, with stale entries past the trimmed end counted valid.
    pub(crate) fn flush(&self) -> Result<()> {
        if let Some(map) = &self.map {
            map.flush()?;
        }
        self.file.sync_data()
    }

    /// Puts the mapped entries into the file's page-cache image (no disk I/O) and returns
    /// the file, which the caller syncs without holding the index's lock.
    pub(crate) fn write_back(&self) -> Result<Arc<dyn StorageFile>> {
        if let Some(map) = &self.map {
            map.write_back()?;
        }
        Ok(self.file.clone())
    }

    /// Resizes the file to `len` and maps it again. A failure leaves the index consistent
    /// for readers: either the old map stays (the write-back failed), or a growth the disk
    /// had no room for leaves the file mapped as long as it was, its entries kept, or the
    /// index holds no entries (lookups then scan from the segment start), never entries
    /// without a map.
    /// Nothing is synced here: the map's bytes go to the page cache, and the next flush of
    /// the segment makes them and the new length durable.
    fn remap(&mut self, len: usize) -> Result<()> {
        if let Some(map) = self.map.take() {
            if let Err(err) = map.write_back() {
                self.map = Some(map);
                return Err(err);
            }
            // The old map is unmapped here, before the file may shrink under it.
        }
        let entries = std::mem::take(self.entries.get_mut());
        self.capacity = 0;
        // Growing reserves the blocks (fallocate): entries are written through the map, and
        // a write into a sparse hole on a full disk would be SIGBUS instead of an error. So
        // does a map of a file as long as it already is: one Kafka made (it only sets the
        // length, and a crash leaves the file that way) may be sparse.
        if len > 0 && len as u64 >= self.file.len()? {
            if let Err(err) = self.file.allocate(len as u64) {
                if err.is_disk_full() {
                    // Mapped as it was, which needs no more blocks than it held; full, so
                    // that no append writes where the file may be sparse.
                    self.map_as_long_as_it_is(entries)?;
                    self.capacity = *self.entries.get_mut();
                }
                return Err(err);
            }
        } else {
            self.file.set_len(len as u64)?;
        }
        if len > 0 {
            self.map = Some(self.file.map_mut(len)?);
        }
        self.capacity = len / self.entry_size;
        *self.entries.get_mut() = entries.min(self.capacity);
        Ok(())
    }

    /// Maps the file at its whole length (whole entries), keeping up to `entries` of them.
    fn map_as_long_as_it_is(&mut self, entries: usize) -> Result<()> {
        let len = round_down(self.file.len()?, self.entry_size);
        if len > 0 {
            self.map = Some(self.file.map_mut(len)?);
        }
        self.capacity = len / self.entry_size;
        *self.entries.get_mut() = entries.min(self.capacity);
        Ok(())
    }
}

/// A map of an index file cut to its entries, from [`IndexFile::trimmed_map`], and which
/// file it maps; once installed, the map it replaced.
#[derive(Debug)]
pub(crate) struct Trimmed {
    file: Arc<dyn StorageFile>,
    map: Option<Box<dyn MapMut>>,
}

fn round_down(bytes: u64, entry_size: usize) -> usize {
    let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
    bytes - bytes % entry_size
}
