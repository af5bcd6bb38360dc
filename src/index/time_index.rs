//! The sparse time index: the first offset at or after a timestamp.
//!
//! Layout (big-endian), 12-byte entries, appended alongside offset-index entries whenever the
//! segment's largest timestamp has grown:
//!
//! ```text
//! 0                8      12
//! +----------------+------+
//! | timestamp      | rel  |   timestamp: largest timestamp so far (i64, ms)
//! +----------------+------+   rel: offset of the record holding it - base offset (i32)
//! ```
//!
//! Entries are strictly increasing in timestamp and non-decreasing in offset.

use std::path::Path;

use super::file::IndexFile;
use crate::error::{Error, Result};
use crate::io::Storage;

/// Size of one time-index entry.
pub const TIME_ENTRY_BYTES: usize = 12;

/// A timestamp and the offset of the record that carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    pub timestamp: i64,
    pub offset: i64,
}

/// The time index of one segment.
#[derive(Debug)]
pub struct TimeIndex {
    base_offset: i64,
    file: IndexFile,
}

impl TimeIndex {
    pub fn open(
        storage: &dyn Storage,
        path: &Path,
        base_offset: i64,
        max_bytes: Option<u64>,
    ) -> Result<TimeIndex> {
        let file = IndexFile::open(storage, path, TIME_ENTRY_BYTES, max_bytes, valid_prefix)?;
        Ok(TimeIndex { base_offset, file })
    }

    /// Opens the index emptied, with room for `max_bytes`, for a rebuild.
    pub fn open_empty(
        storage: &dyn Storage,
        path: &Path,
        base_offset: i64,
        max_bytes: u64,
    ) -> Result<TimeIndex> {
        let file = IndexFile::open_empty(storage, path, TIME_ENTRY_BYTES, max_bytes)?;
        Ok(TimeIndex { base_offset, file })
    }

    /// Drops every entry and makes room for `max_bytes`, for a rebuild.
    pub fn reset(&mut self, max_bytes: u64) -> Result<()> {
        self.file.reset(max_bytes)
    }

    pub fn entries(&self) -> usize {
        self.file.entries()
    }

    pub fn is_full(&self) -> bool {
        self.file.is_full()
    }

    /// True when the file held invalid bytes besides its valid entries (see
    /// [`TimeIndex::sanity_check`] for the checks against the log).
    pub fn is_damaged(&self) -> bool {
        self.file.is_damaged()
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    pub fn entry(&self, i: usize) -> TimestampOffset {
        let (ts, rel) = decode(self.file.entry(i));
        TimestampOffset {
            timestamp: ts,
            offset: self.base_offset + rel as i64,
        }
    }

    pub fn last_entry(&self) -> Option<TimestampOffset> {
        self.entries().checked_sub(1).map(|i| self.entry(i))
    }

    /// The largest entry whose timestamp is `< target`: scanning from its offset finds the
    /// first record at or after `target`. `None` means scan from the segment start.
    pub fn lookup(&self, target: i64) -> Option<TimestampOffset> {
        let (mut lo, mut hi) = (0usize, self.entries());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.entry(mid).timestamp < target {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1).map(|i| self.entry(i))
    }

    /// Appends an entry when `timestamp` is larger than the last one's; otherwise does
    /// nothing (Kafka's `maybeAppend`).
    pub fn maybe_append(&mut self, timestamp: i64, offset: i64) -> Result<()> {
        if let Some(last) = self.last_entry() {
            if timestamp <= last.timestamp {
                return Ok(());
            }
            if offset < last.offset {
                return Err(Error::Corruption {
                    file: self.path().to_path_buf(),
                    position: (self.entries() * TIME_ENTRY_BYTES) as u64,
                    reason: format!("time index offset {offset} is below {}", last.offset),
                });
            }
        }
        let rel = i32::try_from(offset - self.base_offset).map_err(|_| Error::Corruption {
            file: self.path().to_path_buf(),
            position: 0,
            reason: format!("offset {offset} is out of the index's range"),
        })?;
        let mut entry = [0u8; TIME_ENTRY_BYTES];
        entry[..8].copy_from_slice(&timestamp.to_be_bytes());
        entry[8..].copy_from_slice(&rel.to_be_bytes());
        self.file.push(&entry)
    }

    /// Removes every entry whose offset is `>= offset`.
    pub fn truncate_to(&mut self, offset: i64) {
        let mut keep = self.entries();
        while keep > 0 && self.entry(keep - 1).offset >= offset {
            keep -= 1;
        }
        self.file.truncate_entries(keep);
    }

    pub fn clear(&mut self) {
        self.file.truncate_entries(0);
    }

    pub fn sanity_check(&self, next_offset: i64) -> Result<()> {
        if let Some(last) = self.last_entry() {
            if last.offset < self.base_offset
                || last.offset >= next_offset.max(self.base_offset + 1)
            {
                return Err(Error::Corruption {
                    file: self.path().to_path_buf(),
                    position: ((self.entries() - 1) * TIME_ENTRY_BYTES) as u64,
                    reason: format!(
                        "last entry offset {} lies outside [{}, {next_offset})",
                        last.offset, self.base_offset
                    ),
                });
            }
        }
        Ok(())
    }

    pub fn trim(&mut self) -> Result<()> {
        self.file.trim()
    }

    pub fn extend_to(&mut self, max_bytes: u64) -> Result<()> {
        self.file.extend_to(max_bytes)
    }

    pub fn flush(&self) -> Result<()> {
        self.file.flush()
    }
}

fn decode(entry: &[u8]) -> (i64, i32) {
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&entry[..8]);
    let rel = i32::from_be_bytes([entry[8], entry[9], entry[10], entry[11]]);
    (i64::from_be_bytes(ts), rel)
}

/// Counts leading entries with strictly increasing timestamps and non-decreasing,
/// non-negative relative offsets; a zeroed preallocated tail ends the count.
fn valid_prefix(bytes: &[u8]) -> usize {
    let mut prev: Option<(i64, i32)> = None;
    for (i, entry) in bytes.chunks_exact(TIME_ENTRY_BYTES).enumerate() {
        let (ts, rel) = decode(entry);
        let ok = rel >= 0
            && match prev {
                None => !(ts == 0 && rel == 0),
                Some((pt, pr)) => ts > pt && rel >= pr,
            };
        if !ok {
            return i;
        }
        prev = Some((ts, rel));
    }
    bytes.len() / TIME_ENTRY_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::sim::SimStorage;
    use std::path::PathBuf;

    fn open(storage: &dyn Storage, max: Option<u64>) -> TimeIndex {
        storage.create_dir_all(&PathBuf::from("/d")).unwrap();
        let path = PathBuf::from("/d/00000000000000000100.timeindex");
        TimeIndex::open(storage, &path, 100, max).unwrap()
    }

    #[test]
    fn maybe_append_keeps_timestamps_increasing() {
        let sim = SimStorage::new(1);
        let mut ix = open(sim.as_ref(), Some(120));
        ix.maybe_append(1000, 101).unwrap();
        ix.maybe_append(900, 102).unwrap();
        ix.maybe_append(1000, 103).unwrap();
        assert_eq!(ix.entries(), 1);
        ix.maybe_append(2000, 110).unwrap();
        assert!(
            ix.maybe_append(3000, 105).is_err(),
            "offsets may not go back"
        );
        assert_eq!(ix.lookup(1000), None);
        assert_eq!(
            ix.lookup(1500),
            Some(TimestampOffset {
                timestamp: 1000,
                offset: 101
            })
        );
        assert_eq!(ix.lookup(5000).map(|e| e.offset), Some(110));
    }

    #[test]
    fn truncate_and_reopen() {
        let sim = SimStorage::new(2);
        let mut ix = open(sim.as_ref(), Some(1200));
        for i in 1..=5 {
            ix.maybe_append(i * 100, 100 + i * 2).unwrap();
        }
        ix.truncate_to(106);
        assert_eq!(
            ix.last_entry(),
            Some(TimestampOffset {
                timestamp: 200,
                offset: 104
            })
        );
        ix.flush().unwrap();
        drop(ix);
        let ix = open(sim.as_ref(), Some(1200));
        assert_eq!(ix.entries(), 2);
        ix.sanity_check(110).unwrap();
        assert!(ix.sanity_check(104).is_err());
    }
}
