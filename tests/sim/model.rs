//! The simulator's in-memory model of one partition log, and the expectations it derives.
//!
//! The model keeps the batches it believes are in the log (bytes exactly as stored, after
//! the leader assigned offsets and epoch), which of them the engine has promised are durable
//! (`required`: below the recovery point the engine reported after a successful flush or
//! open), and every batch ever handed to the log, so that after a crash any batch the log
//! recovers can be traced back to a write (no invented or mangled batches).

use std::collections::{HashMap, HashSet};

use partlog::record::{batches, Batch, Compression, TimestampType};

/// One batch as the log stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MBatch {
    pub base: i64,
    pub last: i64,
    pub bytes: Vec<u8>,
}

impl MBatch {
    pub fn next(&self) -> i64 {
        self.last + 1
    }

    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// Splits a buffer of whole, well-formed batches; panics on anything else (the harness
/// only splits buffers it built or that it has already validated).
pub fn split(buf: &[u8]) -> Vec<MBatch> {
    let mut out = Vec::new();
    for b in batches(buf) {
        let b = b.unwrap_or_else(|e| panic!("model split: malformed batch: {e}"));
        out.push(MBatch {
            base: b.header().base_offset,
            last: b.header().last_offset(),
            bytes: b.as_bytes().to_vec(),
        });
    }
    out
}

#[derive(Debug, Default)]
pub struct Model {
    /// Batches in the log's segments (visible or below the log start), ascending.
    pub batches: Vec<MBatch>,
    pub log_start: i64,
    pub leo: i64,
    /// Batches a crash must not lose: everything the engine reported durable.
    pub required: Vec<MBatch>,
    /// Every batch ever written (or attempted), by base offset: what a crash may bring back.
    candidates: HashMap<i64, HashSet<Vec<u8>>>,
    /// For every batch written, the batches it was written right after (`None`: after
    /// none the model knew of): a recovered batch must follow one of them, or a batch
    /// between the two was lost while a later one survived (a hole).
    preceded_by: HashMap<BatchId, HashSet<Option<BatchId>>>,
}

/// A batch as the adjacency check knows it: its base offset and its CRC.
type BatchId = (i64, u32);

fn id(b: &MBatch) -> BatchId {
    let crc = u32::from_be_bytes(b.bytes[17..21].try_into().expect("a batch header"));
    (b.base, crc)
}

impl Model {
    /// Remembers batches handed to the log (successfully or not), written after the
    /// model's last batch.
    pub fn add_candidates(&mut self, batches: &[MBatch]) {
        let mut before = self.batches.last().map(id);
        for b in batches {
            self.candidates
                .entry(b.base)
                .or_default()
                .insert(b.bytes.clone());
            self.preceded_by.entry(id(b)).or_default().insert(before);
            before = Some(id(b));
        }
    }

    /// Whether `b` may follow `a` in a recovered log: it was written right after `a`, or
    /// after no batch the model knew of (retention had emptied it, and a crash may bring
    /// back what retention removed).
    pub fn followed(&self, a: &MBatch, b: &MBatch) -> bool {
        self.preceded_by
            .get(&id(b))
            .is_some_and(|set| set.contains(&Some(id(a))) || set.contains(&None))
    }

    pub fn is_candidate(&self, b: &MBatch) -> bool {
        self.candidates
            .get(&b.base)
            .is_some_and(|set| set.contains(&b.bytes))
    }

    /// Batches a reader may see: those holding an offset at or above the log start.
    pub fn visible(&self) -> impl Iterator<Item = &MBatch> {
        let start = self.log_start;
        self.batches.iter().filter(move |b| b.last >= start)
    }

    /// The end of the durable promise: the log must not recover below it.
    pub fn min_leo(&self) -> i64 {
        self.required.last().map_or(i64::MIN, MBatch::next)
    }

    /// A successful append of `new` (offsets already final).
    pub fn appended(&mut self, new: Vec<MBatch>) {
        self.add_candidates(&new);
        if let Some(last) = new.last() {
            self.leo = last.next();
        }
        self.batches.extend(new);
    }

    /// The engine says everything below `recovery_point` is durable. Promises made
    /// before stand too, for the batches still in the model: a recovery that reported
    /// a lower recovery point than it had (one that ignored its checkpoint) must not
    /// release them.
    pub fn promise_durable(&mut self, recovery_point: i64) {
        let start = self.log_start;
        let before = std::mem::take(&mut self.required);
        let promised = |b: &MBatch| {
            before
                .binary_search_by_key(&b.base, |r| r.base)
                .is_ok_and(|i| before[i] == *b)
        };
        self.required = self
            .batches
            .iter()
            .filter(|b| b.last >= start && (b.next() <= recovery_point || promised(b)))
            .cloned()
            .collect();
    }

    /// Drops promises about offsets at or above `end` (a truncation).
    pub fn forget_from(&mut self, end: i64) {
        self.required.retain(|b| b.last < end);
    }

    /// Drops promises about batches wholly below `start` (retention).
    pub fn forget_below(&mut self, start: i64) {
        self.required.retain(|b| b.last >= start);
    }

    /// Kafka's truncation: batches holding an offset `>= offset` go whole.
    pub fn truncate_to(&mut self, offset: i64) {
        self.batches.retain(|b| b.last < offset);
        self.forget_from(offset);
    }

    /// The first batch holding an offset `>= offset`, and its index.
    pub fn batch_at_or_after(&self, offset: i64) -> Option<(usize, &MBatch)> {
        let i = self.batches.partition_point(|b| b.last < offset);
        self.batches.get(i).map(|b| (i, b))
    }

    /// Kafka's ListOffsets by timestamp over the visible batches.
    pub fn offset_for_timestamp(&self, target: i64) -> Option<(i64, i64)> {
        for b in self.visible() {
            let batch = Batch::parse(&b.bytes).expect("model batch parses");
            let h = *batch.header();
            if h.max_timestamp < target {
                continue;
            }
            if h.compression() != Compression::None
                || h.timestamp_type() == TimestampType::LogAppendTime
            {
                return Some((h.max_timestamp, h.base_offset.max(self.log_start)));
            }
            for r in batch.records().expect("model batch iterates") {
                let r = r.expect("model record decodes");
                let offset = h.base_offset + r.offset_delta as i64;
                let ts = h.base_timestamp + r.timestamp_delta;
                if offset >= self.log_start && ts >= target {
                    return Some((ts, offset));
                }
            }
        }
        None
    }
}
