//! The batches of a dirty range that a cleaning's second pass need not read: plain batches
//! (neither transactional, nor control, nor compressed) none of whose records is the
//! latest of its key once the key map is built. The rewrite would drop every record of
//! such a batch (superseded, or without a key), so the clean pass skips its bytes and
//! counts its records as the rewrite would have.
//!
//! A compacted log is mostly such batches once its keys have been written over a few
//! times: every commit of a consumer group supersedes its previous one, and a changelog's
//! older segments hold little that is still the latest. Kafka's cleaner reads them twice;
//! partlog reads them once, in the map pass, which notes where each plain batch lies.
//!
//! Which batches keep a record follows from the map alone. A plain batch's keyed records
//! all go into the map, and the map's offset for a key only grows; so a record is the
//! latest of its key exactly when its own offset is the one the map holds for that key,
//! and a batch keeps nothing exactly when no offset the map holds falls inside it. After
//! the map pass, the offsets the map holds are marked in a bitmap over the range, and
//! each batch looks at its own span of it.

use std::sync::Arc;

use super::offset_map::OffsetMap;
use super::rewrite::FilterStats;
use crate::record::Batch;
use crate::segment::{FileSlice, Segment};

/// Most offsets of a dirty range tracked, from its first plain batch on: a bit each
/// (16 MiB). Batches beyond are read as before.
const MAX_TRACKED_OFFSETS: i64 = 1 << 27;
/// Most batches tracked (56 bytes each: 14 MiB).
const MAX_TRACKED_BATCHES: usize = 1 << 18;

/// Where a plain batch of the dirty range lies, and what it holds.
#[derive(Debug, Clone, Copy)]
struct Tracked {
    segment_base: i64,
    position: u64,
    len: u64,
    first: i64,
    last: i64,
    records: u32,
    keyless: u32,
    /// Set by [`Superseded::settle`]: no record of it is the latest of its key.
    dead: bool,
}

/// A batch's segment and position, as [`Superseded::place`] found them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Place {
    segment_base: i64,
    position: u64,
}

/// See the module docs.
#[derive(Debug, Default)]
pub(super) struct Superseded {
    batches: Vec<Tracked>,
    /// The bases of the segments the map pass reads, in order, and where the next batch
    /// starts: the index of its segment and its position in it.
    segment_bases: Vec<i64>,
    segment: usize,
    position: u64,
}

impl Superseded {
    /// Starts over for a map pass over `segments`, read whole and in order.
    pub(super) fn start(&mut self, segments: &[Arc<Segment>]) {
        self.batches.clear();
        self.segment_bases.clear();
        self.segment_bases
            .extend(segments.iter().map(|s| s.base_offset()));
        self.segment = 0;
        self.position = 0;
    }

    /// Where `batch`, the next batch of the pass, lies. The pass calls it for every batch
    /// it reads, in order.
    pub(super) fn place(&mut self, batch: &Batch<'_>) -> Place {
        let base = batch.header().base_offset;
        while self
            .segment_bases
            .get(self.segment + 1)
            .is_some_and(|&next| base >= next)
        {
            self.segment += 1;
            self.position = 0;
        }
        let place = Place {
            segment_base: self.segment_bases.get(self.segment).copied().unwrap_or(-1),
            position: self.position,
        };
        self.position += batch.as_bytes().len() as u64;
        place
    }

    /// Notes a plain batch at `place` whose `keyed` records all went into the map.
    pub(super) fn track(&mut self, place: Place, batch: &Batch<'_>, keyed: usize) {
        let header = batch.header();
        let first = header.base_offset;
        // An empty batch (a cleaned group's last, kept as a bare header) is copied as it
        // is: never left out.
        if header.records_count <= 0 {
            return;
        }
        // Tracked batches follow one another in offset order; one that does not (a damaged
        // base offset, which the CRC does not cover, in a segment below the recovery
        // point) is copied as it is, and `settle`'s spans stay inside its bitmap.
        let last = header.last_offset();
        let ordered = last >= first && self.batches.last().is_none_or(|b| first > b.last);
        if !ordered {
            return;
        }
        let within = self
            .batches
            .first()
            .is_none_or(|b| header.last_offset().saturating_sub(b.first) < MAX_TRACKED_OFFSETS);
        if self.batches.len() >= MAX_TRACKED_BATCHES || !within || place.segment_base < 0 {
            return;
        }
        let records = u32::try_from(header.records_count).unwrap_or(0);
        self.batches.push(Tracked {
            segment_base: place.segment_base,
            position: place.position,
            len: batch.as_bytes().len() as u64,
            first,
            last,
            records,
            keyless: records.saturating_sub(u32::try_from(keyed).unwrap_or(u32::MAX)),
            dead: false,
        });
    }

    /// Marks the batches below `end` (where the map ends) that keep no record: those that
    /// hold none of the offsets `map` holds.
    pub(super) fn settle(&mut self, map: &OffsetMap, end: i64) {
        let Some(first) = self.batches.first().map(|b| b.first) else {
            return;
        };
        self.batches.retain(|b| b.last < end);
        let Some(last) = self.batches.last().map(|b| b.last) else {
            return;
        };
        let bits = (last - first) as usize + 1;
        let mut latest = vec![0u64; bits.div_ceil(64)];
        for offset in map.offsets() {
            if (first..=last).contains(&offset) {
                let i = (offset - first) as usize;
                latest[i / 64] |= 1 << (i % 64);
            }
        }
        for batch in &mut self.batches {
            let (from, to) = (
                (batch.first - first) as usize,
                (batch.last - first) as usize,
            );
            batch.dead = !any_bit(&latest, from, to);
        }
    }

    /// The ranges of `segment` that hold something the rewrite keeps: all of it but its
    /// dead batches, save the one at `keep_base` (a group's last batch stays, empty if
    /// need be). Adds the records of the batches left out to `stats` as the rewrite would
    /// have, unless they lie below `log_start` (the rewrite skips those too).
    pub(super) fn ranges(
        &self,
        segment: &Segment,
        keep_base: i64,
        log_start: i64,
        stats: &mut FilterStats,
    ) -> Vec<FileSlice> {
        let whole = segment.whole();
        let base = segment.base_offset();
        let from = self.batches.partition_point(|b| b.segment_base < base);
        let dead = self.batches[from..]
            .iter()
            .take_while(|b| b.segment_base == base)
            .filter(|b| b.dead && b.first != keep_base);
        let (start, end) = (whole.position(), whole.position() + whole.len());
        let mut ranges = Vec::new();
        let mut at = start;
        for batch in dead {
            if batch.position < at || batch.position + batch.len > end {
                continue; // not where the map pass saw it: read it as it is now
            }
            if batch.position > at {
                ranges.push(FileSlice::new(
                    whole.file().clone(),
                    at,
                    batch.position - at,
                ));
            }
            at = batch.position + batch.len;
            if batch.last >= log_start {
                stats.records_read += u64::from(batch.records);
                stats.keyless_dropped += u64::from(batch.keyless);
                stats.superseded += u64::from(batch.records - batch.keyless);
                stats.batches_skipped += 1;
            }
        }
        if at < end {
            ranges.push(FileSlice::new(whole.file().clone(), at, end - at));
        }
        ranges
    }
}

/// Whether any of bits `from..=to` of `bits` is set.
fn any_bit(bits: &[u64], from: usize, to: usize) -> bool {
    let (first_word, last_word) = (from / 64, to / 64);
    let low = !0u64 << (from % 64);
    let high = !0u64 >> (63 - to % 64);
    if first_word == last_word {
        return bits[first_word] & low & high != 0;
    }
    bits[first_word] & low != 0
        || bits[first_word + 1..last_word].iter().any(|&w| w != 0)
        || bits[last_word] & high != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::BatchBuilder;

    fn plain_batch(base: i64, records: usize) -> Vec<u8> {
        let mut builder = BatchBuilder::new();
        builder.base_offset(base);
        for i in 0..records {
            builder.append(0, Some(format!("k{i}").as_bytes()), Some(b"v"), &[]);
        }
        builder.build().expect("batch")
    }

    /// A batch whose base offset went below the one before (a damaged base offset, outside
    /// the CRC) is not tracked: settling sized its bitmap from the first batch to the last
    /// and indexed it with the negative span, and panicked the cleaner thread.
    #[test]
    fn a_batch_out_of_offset_order_is_not_tracked() {
        let mut superseded = Superseded::default();
        superseded.start(&[]);
        let mut map = OffsetMap::with_memory(1 << 16);
        for (base, records) in [(100, 5), (50, 5), (105, 5), (103, 1)] {
            let bytes = plain_batch(base, records);
            let batch = Batch::parse(&bytes).expect("parse");
            for r in batch.records().expect("records") {
                let r = r.expect("record");
                map.put(r.key.expect("key"), r.offset);
            }
            let place = Place {
                segment_base: 0,
                position: 0,
            };
            superseded.track(place, &batch, records);
        }
        superseded.settle(&map, 200);
        let tracked: Vec<(i64, i64)> = superseded
            .batches
            .iter()
            .map(|b| (b.first, b.last))
            .collect();
        assert_eq!(tracked, [(100, 104), (105, 109)]);
        assert!(
            superseded.batches.iter().all(|b| !b.dead),
            "each holds a latest"
        );
    }

    #[test]
    fn any_bit_sees_exactly_its_span() {
        let mut bits = vec![0u64; 4];
        for set in [0usize, 63, 64, 130, 255] {
            bits.iter_mut().for_each(|w| *w = 0);
            bits[set / 64] |= 1 << (set % 64);
            for from in 0..256 {
                for to in from..256 {
                    assert_eq!(
                        any_bit(&bits, from, to),
                        (from..=to).contains(&set),
                        "bit {set}, span {from}..={to}"
                    );
                }
            }
        }
    }
}
