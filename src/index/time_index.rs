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

use super::sparse::{IndexEntry, SparseIndex};
use crate::error::Result;

/// Size of one time-index entry.
pub const TIME_ENTRY_BYTES: usize = 12;

/// A timestamp and the offset of the record that carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    pub timestamp: i64,
    pub offset: i64,
}

impl IndexEntry for TimestampOffset {
    const BYTES: usize = TIME_ENTRY_BYTES;

    /// An entry whose offset would pass `i64::MAX` claims it, as the offset index's do.
    fn decode(bytes: &[u8], base_offset: i64) -> Self {
        let (timestamp, rel) = decode(bytes);
        TimestampOffset {
            timestamp,
            offset: base_offset.saturating_add(rel.into()),
        }
    }

    /// Counts leading entries with non-negative, strictly increasing timestamps (no
    /// writer indexes a negative one) and non-decreasing, non-negative relative offsets;
    /// a zeroed preallocated tail ends the count. A first entry of timestamp 0 at the
    /// base offset, which Kafka writes for a first batch stamped 0, reads as zeros: it
    /// counts when an entry follows it, and is taken for the tail otherwise (alone, it
    /// tells a lookup nothing a scan from the segment's start does not). Counted as
    /// zeros always, the entries after it made the index look damaged, and rebuilt it at
    /// every open.
    fn valid_prefix(bytes: &[u8]) -> usize {
        let mut prev: Option<(i64, i32)> = None;
        let mut entries = bytes.chunks_exact(TIME_ENTRY_BYTES).peekable();
        let mut i = 0;
        while let Some(entry) = entries.next() {
            let (ts, rel) = decode(entry);
            let ok = rel >= 0
                && ts >= 0
                && match prev {
                    None if ts == 0 && rel == 0 => entries.peek().is_some_and(|next| {
                        let (ts, rel) = decode(next);
                        ts > 0 && rel >= 0
                    }),
                    None => true,
                    Some((pt, pr)) => ts > pt && rel >= pr,
                };
            if !ok {
                return i;
            }
            prev = Some((ts, rel));
            i += 1;
        }
        i
    }
}

/// The time index of one segment.
pub type TimeIndex = SparseIndex<TimestampOffset>;

impl SparseIndex<TimestampOffset> {
    /// The largest entry whose timestamp is `< target`: scanning from its offset finds the
    /// first record at or after `target`. `None` means scan from the segment start.
    pub fn lookup(&self, target: i64) -> Option<TimestampOffset> {
        let n = self.count_where(|e| e.timestamp < target);
        n.checked_sub(1).map(|i| self.entry(i))
    }

    /// Whether appends may add no more entries: the last slot is kept for the entry a
    /// segment ends with when it stops being written (Kafka's `TimeIndex.isFull`).
    pub fn is_full_for_appends(&self) -> bool {
        self.room() <= 1
    }

    /// Appends an entry when `timestamp` is larger than the last one's, or, in an empty
    /// index, than -1 (no timestamp); otherwise does nothing (Kafka's `maybeAppend`, whose
    /// empty index has the last entry `(NO_TIMESTAMP, baseOffset)`). An entry of -1 at
    /// relative offset 0 made the zeros after it in a preallocated file read as an entry
    /// of timestamp 0, which aged its segment to 1970 for time retention.
    pub fn maybe_append(&self, timestamp: i64, offset: i64) -> Result<()> {
        if timestamp <= crate::record::NO_TIMESTAMP {
            return Ok(());
        }
        if let Some(last) = self.last_entry() {
            if timestamp <= last.timestamp {
                return Ok(());
            }
            if offset < last.offset {
                return Err(self.corrupt(
                    self.entries(),
                    format!("time index offset {offset} is below {}", last.offset),
                ));
            }
        }
        let rel = self.relative(offset)?;
        let mut entry = [0u8; TIME_ENTRY_BYTES];
        entry[..8].copy_from_slice(&timestamp.to_be_bytes());
        entry[8..].copy_from_slice(&rel.to_be_bytes());
        self.push(&entry)
    }

    /// Removes every entry whose offset is `>= offset`.
    pub fn truncate_to(&mut self, offset: i64) {
        let keep = self.count_where(|e| e.offset < offset);
        self.truncate_entries(keep);
    }

    /// Checks that the last entry names an offset of the segment, below `next_offset`.
    pub fn sanity_check(&self, next_offset: i64) -> Result<()> {
        let base = self.base_offset();
        if let Some(last) = self.last_entry() {
            if last.offset < base || last.offset >= next_offset.max(base.saturating_add(1)) {
                return Err(self.corrupt(
                    self.entries() - 1,
                    format!(
                        "last entry offset {} lies outside [{base}, {next_offset})",
                        last.offset
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn decode(entry: &[u8]) -> (i64, i32) {
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&entry[..8]);
    let rel = i32::from_be_bytes([entry[8], entry[9], entry[10], entry[11]]);
    (i64::from_be_bytes(ts), rel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::sim::SimStorage;
    use crate::io::Storage;
    use std::path::PathBuf;

    fn open(storage: &dyn Storage, max: Option<u64>) -> TimeIndex {
        storage.create_dir_all(&PathBuf::from("/d")).unwrap();
        let path = PathBuf::from("/d/00000000000000000100.timeindex");
        TimeIndex::open(storage, &path, 100, max).unwrap()
    }

    #[test]
    fn an_entry_past_the_largest_offset_claims_it() {
        let mut entry = [0u8; TIME_ENTRY_BYTES];
        entry[..8].copy_from_slice(&5_000i64.to_be_bytes());
        entry[8..].copy_from_slice(&100i32.to_be_bytes());
        assert_eq!(
            TimestampOffset::decode(&entry, i64::MAX - 5).offset,
            i64::MAX
        );
        assert_eq!(TimestampOffset::decode(&entry, 7).offset, 107);
    }

    #[test]
    fn maybe_append_keeps_timestamps_increasing() {
        let sim = SimStorage::new(1);
        let ix = open(sim.as_ref(), Some(120));
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

    /// Kafka indexes a first batch stamped 0 at the base offset as `(0, 0)`, all zeros:
    /// followed by entries, it is an entry; alone, the zeros of a preallocated tail.
    #[test]
    fn a_first_entry_of_timestamp_zero_counts_when_entries_follow_it() {
        let entry = |ts: i64, rel: i32| [ts.to_be_bytes().to_vec(), rel.to_be_bytes().to_vec()];
        let file = |entries: &[(i64, i32)], zeros: usize| -> Vec<u8> {
            let mut bytes: Vec<u8> = entries
                .iter()
                .flat_map(|&(t, r)| entry(t, r).concat())
                .collect();
            bytes.resize(bytes.len() + zeros * TIME_ENTRY_BYTES, 0);
            bytes
        };
        let valid = TimestampOffset::valid_prefix;
        assert_eq!(valid(&file(&[(0, 0), (50, 3), (70, 5)], 4)), 3);
        assert_eq!(valid(&file(&[(0, 0), (50, 3)], 0)), 2);
        assert_eq!(valid(&file(&[], 4)), 0, "zeros alone");
        assert_eq!(valid(&file(&[(0, 0)], 0)), 0, "one entry of zeros");
        assert_eq!(
            valid(&file(&[(0, 0), (0, 3)], 0)),
            0,
            "timestamps must rise"
        );
        assert_eq!(valid(&file(&[(40, 0), (50, 3)], 4)), 2);

        // Reopened, such an index is whole, not damaged, and answers from its first entry.
        let sim = SimStorage::new(3);
        let ix = open(sim.as_ref(), Some(120));
        ix.maybe_append(0, 100).unwrap();
        ix.maybe_append(50, 103).unwrap();
        ix.flush().unwrap();
        drop(ix);
        let ix = open(sim.as_ref(), Some(120));
        assert_eq!(ix.entries(), 2);
        assert!(!ix.is_damaged());
        assert_eq!(ix.lookup(40).map(|e| e.offset), Some(100));
    }
}
