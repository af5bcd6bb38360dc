//! Rewriting one batch for a cleaning: records superseded by a later record with the same
//! key are dropped, and so are keyless records and tombstones past their delete horizon.
//! Offsets stay as they were: the batch keeps its base offset and `lastOffsetDelta`, and
//! each retained record its offset delta, so compaction leaves gaps and never renumbers.
//!
//! A batch that keeps a tombstone and has no delete horizon yet gets one: `now +
//! delete_retention_ms`, stored in `baseTimestamp` with the delete-horizon attribute bit
//! (Kafka's KIP-534 layout). Record timestamps are stored as deltas from `baseTimestamp`,
//! so retained records are re-encoded against the new base (else the first kept record's
//! timestamp, as Kafka's `filterTo` does) and keep their absolute timestamps. A batch that
//! keeps everything and needs no horizon is copied as it is; one that keeps nothing is
//! dropped, or kept as a bare header (no records, base timestamp -1) where the caller needs
//! its offsets to stay covered.
//! A batch of an aborted transaction keeps nothing. A transaction marker with no batch of
//! its transaction left before it gets a delete horizon as a tombstone does, and goes
//! past it. Compressed batches and other control batches are copied as they are (partlog
//! does not decompress).

use std::collections::HashSet;

use super::offset_map::{Digest, OffsetMap};
use super::transactions::Transactions;
use crate::record::varint::{encode_varint, encode_varlong, varint_len, varlong_len};
use crate::record::{
    crc32c, Batch, BatchError, Compression, Record, TimestampType, CRC_START, HEADER_LEN,
};

use crate::record::batch::{
    ATTRIBUTES_AT, BASE_SEQUENCE_AT, BASE_TIMESTAMP_AT, BATCH_LENGTH_AT, CONTROL_BIT, CRC_AT,
    DELETE_HORIZON_BIT, MAX_TIMESTAMP_AT, PRODUCER_EPOCH_AT, PRODUCER_ID_AT, RECORDS_COUNT_AT,
    TRANSACTIONAL_BIT,
};
use crate::record::LOG_OVERHEAD;

/// What a cleaning did to records, summed over its batches.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FilterStats {
    pub records_read: u64,
    pub records_kept: u64,
    /// Records dropped because a later record has their key.
    pub superseded: u64,
    /// Tombstones dropped because their delete horizon passed.
    pub tombstones_dropped: u64,
    /// Records without a key (a compacted log cannot keep them).
    pub keyless_dropped: u64,
    /// Compressed or control batches copied without looking inside.
    pub batches_unopened: u64,
    /// Batches the clean pass did not read: the map pass found that none of their
    /// records was the latest of its key (their records count as read and dropped).
    pub batches_skipped: u64,
    /// Records of aborted transactions.
    pub aborted_dropped: u64,
    /// Transaction markers dropped: their transaction's batches were gone, and their
    /// delete horizon passed.
    pub markers_dropped: u64,
}

/// The rules of one cleaning.
#[derive(Debug, Clone, Copy)]
pub struct FilterRules<'a> {
    pub map: &'a OffsetMap,
    pub now_ms: i64,
    pub delete_retention_ms: i64,
    /// Where the map ends: records from here on were not mapped and are all kept.
    pub end_offset: i64,
    /// The transactions the map pass saw: the batches of aborted ones are dropped.
    pub transactions: &'a Transactions,
    /// The ABORT markers a transaction index names, sorted: they stay with their entries
    /// (see `Log::indexed_abort_markers`).
    pub indexed_aborts: &'a [i64],
}

/// What the first pass over a batch learns of one record.
#[derive(Debug, Clone, Copy)]
struct Seen {
    offset: i64,
    timestamp: i64,
    /// The key's digest, for a keyed record the map covers (a record it covers without
    /// one is keyless).
    digest: Option<Digest>,
    tombstone: bool,
}

/// Scratch space of [`filter_batch`], reused across calls, and what it carries from one
/// batch of a cleaning to the next: one for the whole of a cleaning, in offset order.
#[derive(Debug, Default, Clone)]
pub struct FilterScratch {
    seen: Vec<Seen>,
    decisions: Vec<bool>,
    /// Producers whose open transaction had a batch in this cleaning since their last
    /// marker: that marker must stay.
    transaction_read: HashSet<i64>,
    /// A compressed batch came earlier in this cleaning, copied unopened: its records may
    /// hold older values of any key, which stay, so no tombstone after it may go (the
    /// value it deleted would be back; Kafka's cleaner decompresses and removes them).
    compressed_before: bool,
}

impl FilterRules<'_> {
    fn seen(&self, record: &Record<'_>) -> Seen {
        Seen {
            offset: record.offset,
            timestamp: record.timestamp,
            digest: record
                .key
                .filter(|_| record.offset < self.end_offset)
                .map(|key| self.map.digest(key)),
            tombstone: record.value.is_none(),
        }
    }

    /// Whether `record` stays: not superseded in the map, and not a tombstone past its
    /// `horizon` (one may go only when `tombstones_may_go`).
    fn retains(
        &self,
        record: &Seen,
        horizon: Option<i64>,
        tombstones_may_go: bool,
        stats: &mut FilterStats,
    ) -> bool {
        if record.offset >= self.end_offset {
            return true;
        }
        let Some(digest) = record.digest else {
            stats.keyless_dropped += 1;
            return false;
        };
        if self
            .map
            .get_digest(digest)
            .is_some_and(|latest| latest > record.offset)
        {
            stats.superseded += 1;
            return false;
        }
        if record.tombstone && tombstones_may_go && horizon.is_some_and(|h| h <= self.now_ms) {
            stats.tombstones_dropped += 1;
            return false;
        }
        true
    }
}

/// Appends what `batch` keeps to `out`. `keep_if_empty` keeps a batch that loses every
/// record as a header without records, so that the cleaned segment still ends where the
/// original did. Returns whether anything was appended.
pub fn filter_batch(
    batch: &Batch<'_>,
    rules: &FilterRules<'_>,
    keep_if_empty: bool,
    out: &mut Vec<u8>,
    stats: &mut FilterStats,
    scratch: &mut FilterScratch,
) -> Result<bool, BatchError> {
    let header = batch.header();
    // A marker goes (as Kafka's cleaner lets it) once no batch of its transaction is left
    // before it, and then only past its delete horizon, which its first such cleaning
    // sets: until then a reader may still be inside the transaction.
    let mut marker_may_go = false;
    if header.is_control() {
        let read = scratch.transaction_read.remove(&header.producer_id);
        marker_may_go = !read
            && header.base_offset < rules.end_offset
            && header.compression() == Compression::None
            && batch.marker_commits().is_some()
            && rules
                .indexed_aborts
                .binary_search(&header.base_offset)
                .is_err();
    } else if header.is_transactional() {
        scratch.transaction_read.insert(header.producer_id);
    }
    if header.records_count == 0 && !keep_if_empty {
        // Kept empty only to end its group, which it no longer does.
        return Ok(false);
    }
    let aborted = header.is_transactional() && rules.transactions.is_aborted(header.base_offset);
    if aborted && header.compression() != Compression::None && !keep_if_empty {
        // Dropped whole, unopened (a compressed batch cannot be emptied without opening).
        stats.aborted_dropped += u64::try_from(header.records_count).unwrap_or(0);
        return Ok(false);
    }
    if header.compression() != Compression::None || (header.is_control() && !marker_may_go) {
        scratch.compressed_before |= header.compression() != Compression::None;
        stats.batches_unopened += 1;
        out.extend_from_slice(batch.as_bytes());
        return Ok(true);
    }
    let old_horizon = header.has_delete_horizon().then_some(header.base_timestamp);
    // First pass: decide, and see whether the batch can be copied as it is.
    let mut kept = 0i32;
    let mut kept_tombstone = false;
    let mut first_timestamp = None;
    let mut max_timestamp = i64::MIN;
    // The keys' map slots are asked for together before any is probed (see
    // `OffsetMap::touch`).
    let tombstones_may_go = !scratch.compressed_before;
    let FilterScratch {
        seen, decisions, ..
    } = scratch;
    seen.clear();
    for record in batch.records()? {
        seen.push(rules.seen(&record?));
    }
    rules.map.touch(seen.iter().filter_map(|r| r.digest));
    decisions.clear();
    for record in seen.iter() {
        stats.records_read += 1;
        let keep = if aborted {
            stats.aborted_dropped += 1;
            false
        } else if marker_may_go {
            let keep = old_horizon.is_none_or(|h| h > rules.now_ms);
            stats.markers_dropped += u64::from(!keep);
            keep
        } else {
            rules.retains(record, old_horizon, tombstones_may_go, stats)
        };
        decisions.push(keep);
        if keep {
            kept += 1;
            kept_tombstone |= record.tombstone || marker_may_go;
            first_timestamp.get_or_insert(record.timestamp);
            max_timestamp = max_timestamp.max(record.timestamp);
        }
    }
    stats.records_kept += kept as u64;
    let horizon = match old_horizon {
        None if kept_tombstone => Some(rules.now_ms.saturating_add(rules.delete_retention_ms)),
        h => h,
    };
    // Before the copy as it is: a batch an earlier cleaning left empty at the end of its
    // group goes once it no longer ends one, as Kafka's cleaner drops empty batches.
    if kept == 0 && !keep_if_empty {
        return Ok(false);
    }
    // An emptied batch is kept only to end its group, so it keeps no producer: an emptied
    // transactional batch would otherwise hold its marker back for as long as it ends a
    // group, or, left past its marker, read as a transaction that never ends (to the
    // map pass of a replica that copies the log, to the log's open transactions, to a
    // Kafka broker's producer state). A marker gone past its horizon keeps no control
    // bit either: an empty control batch is no marker, and would be copied unopened for
    // good.
    let placeholder = kept == 0 && (header.is_transactional() || header.is_control());
    if kept == header.records_count && horizon == old_horizon && !placeholder {
        out.extend_from_slice(batch.as_bytes());
        return Ok(true);
    }
    // The copy gets a CRC of its own: the original's must hold first, or a byte that rotted
    // on disk since recovery read it would be sealed in under a CRC that verifies, where no
    // reader, follower or scrub could find it. (Copied as it is, a batch keeps its CRC.)
    batch.verify_crc()?;
    // Second pass: the new batch, header first (patched below), then the kept records.
    let start = out.len();
    out.extend_from_slice(&batch.as_bytes()[..HEADER_LEN]);
    // Kafka's choices: the horizon when there is one, else the first kept record's
    // timestamp; an empty batch has none (-1) and no horizon.
    let horizon = if kept == 0 { None } else { horizon };
    let base_timestamp = horizon.or(first_timestamp).unwrap_or(-1);
    for (record, &keep) in batch.records()?.zip(decisions.iter()) {
        let record = record?;
        if keep {
            encode_record(&record, record.timestamp.wrapping_sub(base_timestamp), out);
        }
    }
    let mut attributes = header.attributes & !DELETE_HORIZON_BIT;
    if horizon.is_some() {
        attributes |= DELETE_HORIZON_BIT;
    }
    if placeholder {
        attributes &= !(TRANSACTIONAL_BIT | CONTROL_BIT);
        let b = &mut out[start..];
        b[PRODUCER_ID_AT..PRODUCER_ID_AT + 8].copy_from_slice(&(-1i64).to_be_bytes());
        b[PRODUCER_EPOCH_AT..PRODUCER_EPOCH_AT + 2].copy_from_slice(&(-1i16).to_be_bytes());
        b[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4].copy_from_slice(&(-1i32).to_be_bytes());
    }
    if kept == 0 || header.timestamp_type() == TimestampType::LogAppendTime {
        max_timestamp = header.max_timestamp;
    }
    let b = &mut out[start..];
    let length = (b.len() - LOG_OVERHEAD) as i32; // from the leader epoch on
    b[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
    b[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    b[BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8].copy_from_slice(&base_timestamp.to_be_bytes());
    b[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&max_timestamp.to_be_bytes());
    b[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&kept.to_be_bytes());
    let crc = crc32c(&b[CRC_START as usize..]);
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(true)
}

/// Encodes `record` with its offset delta and a new timestamp delta; headers are copied.
fn encode_record(record: &Record<'_>, timestamp_delta: i64, out: &mut Vec<u8>) {
    let (headers_count, headers) = record.raw_headers();
    let nullable_len =
        |b: Option<&[u8]>| b.map_or(varint_len(-1), |b| varint_len(b.len() as i32) + b.len());
    let body = 1
        + varlong_len(timestamp_delta)
        + varint_len(record.offset_delta)
        + nullable_len(record.key)
        + nullable_len(record.value)
        + varint_len(headers_count)
        + headers.len();
    encode_varint(body as i32, out);
    out.push(record.attributes as u8);
    encode_varlong(timestamp_delta, out);
    encode_varint(record.offset_delta, out);
    for field in [record.key, record.value] {
        match field {
            Some(bytes) => {
                encode_varint(bytes.len() as i32, out);
                out.extend_from_slice(bytes);
            }
            None => encode_varint(-1, out),
        }
    }
    encode_varint(headers_count, out);
    out.extend_from_slice(headers);
}
