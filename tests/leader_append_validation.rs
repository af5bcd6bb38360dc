//! Property: a leader append refuses every batch whose header disagrees with its records
//! (Kafka's `LogValidator` rules), whatever field is off, and writes nothing, not even the
//! valid batches sent with it. Seeded; `LEADER_PROP_CASES` scales it.

mod common;

use common::{backends, open};
use partlog::io::sim::SimRng;
use partlog::log::Log;
use partlog::record::{recompute_crc, BatchBuilder, HEADER_LEN};
use partlog::LogConfig;

const BATCH_LENGTH_AT: usize = 8;
const MAGIC_AT: usize = 16;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const RECORDS_COUNT_AT: usize = 57;
/// Every record is 17 bytes: a one-byte length (16), attributes, a zero timestamp delta,
/// the offset delta (one byte while below 64), a null key, the value length, a 10-byte
/// value and no headers. Record `i`'s offset delta sits at `HEADER_LEN + 17 i + 3`.
const RECORD_BYTES: usize = 17;
const VALUE: &[u8] = b"0123456789";

fn valid_batch(records: usize) -> Vec<u8> {
    let mut builder = BatchBuilder::new();
    for _ in 0..records {
        builder.append(1_000, None, Some(VALUE), &[]);
    }
    let b = builder.build().expect("batch");
    assert_eq!(b.len(), HEADER_LEN + records * RECORD_BYTES);
    b
}

fn put_i32(b: &mut [u8], at: usize, v: i32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// A batch of 1..40 records with one inconsistency, and what it is.
fn broken_batch(rng: &mut SimRng) -> (Vec<u8>, &'static str) {
    let records = rng.range_inclusive(1, 40) as usize;
    let mut b = valid_batch(records);
    let count = records as i32;
    let what = match rng.below(7) {
        0 => {
            let mut delta = rng.next_u64() as i32;
            if delta == count - 1 {
                delta = i32::MAX;
            }
            put_i32(&mut b, LAST_OFFSET_DELTA_AT, delta);
            "last offset delta"
        }
        1 => {
            // Close to the truth: one more or fewer offsets than records.
            let off = if rng.ratio(1, 2) || count == 1 { 1 } else { -1 };
            put_i32(&mut b, LAST_OFFSET_DELTA_AT, count - 1 + off);
            "last offset delta by one"
        }
        2 => {
            let mut n = rng.below(1 << 20) as i32;
            if n == count {
                n += 1;
            }
            put_i32(&mut b, RECORDS_COUNT_AT, n);
            "records count"
        }
        3 if records >= 2 => {
            // Two records trade offset deltas, or one repeats its neighbour's.
            let i = rng.below(records as u64 - 1) as usize;
            let at = |k: usize| HEADER_LEN + k * RECORD_BYTES + 3;
            if rng.ratio(1, 2) {
                b.swap(at(i), at(i + 1));
            } else {
                b[at(i + 1)] = b[at(i)];
            }
            "record offset deltas"
        }
        4 => {
            let len = i32::from_be_bytes(b[8..12].try_into().expect("4 bytes"));
            let delta = rng.range_inclusive(1, 16) as i32;
            let new = if rng.ratio(1, 2) {
                len - delta
            } else {
                len + delta
            };
            put_i32(&mut b, BATCH_LENGTH_AT, new);
            "batch length"
        }
        5 => {
            b[MAGIC_AT] = rng.below(2) as u8;
            "magic"
        }
        _ => {
            b[ATTRIBUTES_AT + 1] |= rng.range_inclusive(5, 7) as u8;
            "compression codec"
        }
    };
    // The CRC matches the damage: only the inconsistency is left to catch.
    if b[MAGIC_AT] == 2 {
        recompute_crc(&mut b);
    }
    (b, what)
}

fn state(log: &Log) -> (i64, u64, usize) {
    (log.log_end_offset(), log.size_bytes(), log.segment_count())
}

#[test]
fn inconsistent_headers_are_refused_and_nothing_is_written() {
    let cases: u64 = std::env::var("LEADER_PROP_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    for backend in backends() {
        let (log, _) = open(&backend, "t-0", LogConfig::default());
        log.append_as_leader(&mut valid_batch(3), 0).expect("valid");
        for seed in 0..cases {
            let mut rng = SimRng::new(seed);
            let (bad, what) = broken_batch(&mut rng);
            // Alone, after a valid batch, or before one.
            let mut input = Vec::new();
            let layout = rng.below(3);
            if layout == 1 {
                input.extend(valid_batch(2));
            }
            input.extend(&bad);
            if layout == 2 {
                input.extend(valid_batch(2));
            }
            let before = state(&log);
            let result = log.append_as_leader(&mut input, 0);
            assert!(
                result.is_err(),
                "{}: seed {seed}: {what} accepted: {result:?}",
                backend.name
            );
            assert_eq!(state(&log), before, "seed {seed}: {what} wrote bytes");
        }
        // Refusals are not failures: the log still takes writes.
        let info = log.append_as_leader(&mut valid_batch(2), 0).expect("valid");
        assert_eq!(info.first_offset, 3);
        assert_eq!(common::read_all(&log), vec![(0, 2), (3, 4)]);
    }
}
