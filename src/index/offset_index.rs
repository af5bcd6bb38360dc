//! The sparse offset index: which file position holds the batch for an offset.
//!
//! Layout (big-endian), one 8-byte entry per `index_interval_bytes` of appended data:
//!
//! ```text
//! 0      4      8
//! +------+------+
//! | rel  | pos  |   rel: offset - segment base offset (i32)
//! +------+------+   pos: byte position of the batch in the .log file (i32)
//! ```
//!
//! Entries are strictly increasing in both fields. An entry `(o, p)` says the batch whose last
//! offset is `o` starts at `p`, so a scan from `p` finds every offset `>= o`... and, for any
//! target `t >= o`, starting the scan at `p` never skips the batch holding `t`.

use super::sparse::{IndexEntry, SparseIndex};
use crate::error::Result;

/// Size of one offset-index entry.
pub const OFFSET_ENTRY_BYTES: usize = 8;

/// An absolute offset and the file position to start scanning from for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetPosition {
    pub offset: i64,
    pub position: u32,
}

impl IndexEntry for OffsetPosition {
    const BYTES: usize = OFFSET_ENTRY_BYTES;

    /// An entry whose offset would pass `i64::MAX` (a file named near it, whose entries
    /// no writer made) claims `i64::MAX`: a lookup for any offset below passes it by, where
    /// a wrapped, negative offset would have it start past the offset sought.
    fn decode(bytes: &[u8], base_offset: i64) -> Self {
        let (rel, pos) = decode(bytes);
        OffsetPosition {
            offset: base_offset.saturating_add(rel.into()),
            position: pos as u32,
        }
    }

    /// Counts leading entries that are strictly increasing and non-negative. A preallocated
    /// tail of zeros stops the count after the first entry (a lone `(0, 0)` is a true
    /// statement: the base offset starts at position 0).
    fn valid_prefix(bytes: &[u8]) -> usize {
        let mut prev: Option<(i32, i32)> = None;
        for (i, entry) in bytes.chunks_exact(OFFSET_ENTRY_BYTES).enumerate() {
            let (rel, pos) = decode(entry);
            let ok = rel >= 0
                && pos >= 0
                && match prev {
                    None => true,
                    Some((pr, pp)) => rel > pr && pos > pp,
                };
            if !ok {
                return i;
            }
            prev = Some((rel, pos));
        }
        bytes.len() / OFFSET_ENTRY_BYTES
    }
}

/// The offset index of one segment.
pub type OffsetIndex = SparseIndex<OffsetPosition>;

impl SparseIndex<OffsetPosition> {
    /// The largest entry whose offset is `<= target`, or the segment start.
    pub fn lookup(&self, target: i64) -> OffsetPosition {
        match self.count_where(|e| e.offset <= target) {
            0 => OffsetPosition {
                offset: self.base_offset(),
                position: 0,
            },
            i => self.entry(i - 1),
        }
    }

    /// The last entry at or below `position` whose offset is below `offset_limit`: a batch
    /// boundary that a read can jump to without reading the headers before it.
    pub fn floor_entry(&self, position: u64, offset_limit: i64) -> Option<OffsetPosition> {
        let by_position = self.count_where(|e| (e.position as u64) <= position);
        let by_offset = self.count_where(|e| e.offset < offset_limit);
        by_position
            .min(by_offset)
            .checked_sub(1)
            .map(|i| self.entry(i))
    }

    /// Appends `(offset, position)`; both must exceed the last entry's.
    pub fn append(&self, offset: i64, position: u32) -> Result<()> {
        if let Some(last) = self.last_entry() {
            if offset <= last.offset || position <= last.position {
                return Err(self.corrupt(
                    self.entries(),
                    format!(
                        "index entry ({offset}, {position}) does not follow ({}, {})",
                        last.offset, last.position
                    ),
                ));
            }
        }
        let rel = self.relative(offset)?;
        let mut entry = [0u8; OFFSET_ENTRY_BYTES];
        entry[..4].copy_from_slice(&rel.to_be_bytes());
        entry[4..].copy_from_slice(&(position as i32).to_be_bytes());
        self.push(&entry)
    }

    /// Removes every entry whose offset is `>= offset`.
    pub fn truncate_to(&mut self, offset: i64) {
        let keep = self.count_where(|e| e.offset < offset);
        self.truncate_entries(keep);
    }

    /// Removes every entry whose position is `>= position`.
    pub fn truncate_to_position(&mut self, position: u32) {
        let keep = self.count_where(|e| e.position < position);
        self.truncate_entries(keep);
    }

    /// Checks the index against its segment: every position inside the log file.
    pub fn sanity_check(&self, log_bytes: u64) -> Result<()> {
        if let Some(last) = self.last_entry() {
            if last.offset < self.base_offset() || last.position as u64 >= log_bytes.max(1) {
                return Err(self.corrupt(
                    self.entries() - 1,
                    format!(
                        "last entry ({}, {}) lies outside the segment (base {}, {} bytes)",
                        last.offset,
                        last.position,
                        self.base_offset(),
                        log_bytes
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn decode(entry: &[u8]) -> (i32, i32) {
    let rel = i32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]);
    let pos = i32::from_be_bytes([entry[4], entry[5], entry[6], entry[7]]);
    (rel, pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::sim::SimStorage;
    use crate::io::Storage;
    use std::path::PathBuf;

    fn open(storage: &dyn Storage, max: Option<u64>) -> OffsetIndex {
        storage.create_dir_all(&PathBuf::from("/d")).unwrap();
        OffsetIndex::open(
            storage,
            &PathBuf::from("/d/00000000000000000100.index"),
            100,
            max,
        )
        .unwrap()
    }

    #[test]
    fn an_entry_past_the_largest_offset_claims_it() {
        let mut entry = [0u8; OFFSET_ENTRY_BYTES];
        entry[..4].copy_from_slice(&100i32.to_be_bytes());
        entry[4..].copy_from_slice(&4096i32.to_be_bytes());
        let decoded = OffsetPosition::decode(&entry, i64::MAX - 5);
        assert_eq!(decoded.offset, i64::MAX);
        assert_eq!(OffsetPosition::decode(&entry, 7).offset, 107);
    }

    #[test]
    fn lookup_finds_the_floor_entry() {
        let sim = SimStorage::new(1);
        let ix = open(sim.as_ref(), Some(80));
        assert_eq!(
            ix.lookup(150),
            OffsetPosition {
                offset: 100,
                position: 0
            }
        );
        for (o, p) in [(110, 4096), (120, 8192), (130, 12288)] {
            ix.append(o, p).unwrap();
        }
        assert_eq!(ix.lookup(99).position, 0);
        assert_eq!(ix.lookup(110).position, 4096);
        assert_eq!(ix.lookup(125).position, 8192);
        assert_eq!(ix.lookup(1000).position, 12288);
        assert_eq!(ix.floor_entry(9000, i64::MAX).map(|e| e.offset), Some(120));
        assert_eq!(ix.floor_entry(100_000, 121).map(|e| e.offset), Some(120));
        assert_eq!(ix.floor_entry(100, i64::MAX), None);
    }

    /// An offset a whole `i64` away from the base (a hostile header's, met by a rebuild
    /// that trusts the headers) is out of the index's range: an error, not an overflow
    /// (a panic in builds with overflow checks, the fuzz targets' among them).
    #[test]
    fn an_offset_an_i64_away_from_the_base_is_out_of_range() {
        let sim = SimStorage::new(3);
        let ix = open(sim.as_ref(), Some(80));
        for offset in [i64::MIN, -1, 99, 100 + i64::from(i32::MAX) + 1, i64::MAX] {
            let err = ix.append(offset, 10).unwrap_err();
            assert!(
                matches!(err, crate::Error::Corruption { .. }),
                "{offset}: {err}"
            );
        }
        ix.append(100 + i64::from(i32::MAX), 10).unwrap();
    }

    #[test]
    fn appends_must_increase_and_stop_when_full() {
        let sim = SimStorage::new(2);
        let ix = open(sim.as_ref(), Some(16));
        ix.append(101, 10).unwrap();
        assert!(ix.append(101, 20).is_err());
        assert!(ix.append(102, 10).is_err());
        ix.append(102, 20).unwrap();
        assert!(ix.is_full());
        assert!(ix.append(103, 30).is_err());
    }

    #[test]
    fn truncation_and_trimmed_reopen() {
        let sim = SimStorage::new(3);
        let mut ix = open(sim.as_ref(), Some(8000));
        for i in 1..=10 {
            ix.append(100 + i * 10, (i * 100) as u32).unwrap();
        }
        ix.truncate_to(150);
        assert_eq!(ix.last_entry().map(|e| e.offset), Some(140));
        ix.truncate_to_position(300);
        assert_eq!(ix.last_entry().map(|e| e.offset), Some(120));
        ix.trim().unwrap();
        drop(ix);
        let ix = open(sim.as_ref(), None);
        assert_eq!(ix.entries(), 2);
        ix.sanity_check(1000).unwrap();
        assert!(
            ix.sanity_check(150).is_err(),
            "position 200 lies past a 150-byte log"
        );
    }

    #[test]
    fn preallocated_zero_tail_is_not_counted() {
        let sim = SimStorage::new(4);
        let ix = open(sim.as_ref(), Some(800));
        ix.append(105, 50).unwrap();
        ix.append(107, 90).unwrap();
        ix.flush().unwrap();
        drop(ix);
        assert_eq!(open(sim.as_ref(), Some(800)).entries(), 2);
    }
}
