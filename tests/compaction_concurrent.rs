//! The cleaner on its own thread against a writer that appends and rolls and readers that
//! scan the log: readers always get whole, valid batches in offset order (a segment swapped
//! for its cleaned copy under a reader is read again from the new list), never an error,
//! and at the end the log holds the latest record of every key.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::thread;

use common::keyed_batch;
use partlog::checkpoint::TopicPartition;
use partlog::cleaner::{CleanOutcome, Cleaner, CleanerConfig};
use partlog::io::real::RealStorage;
use partlog::log::Log;
use partlog::manager::{LogDir, LogDirOptions};
use partlog::record::batches;
use partlog::{CleanupPolicy, LogConfig};

const KEYS: u64 = 50;
const RECORDS: u64 = 20_000;

/// One scan of the log: every batch valid, offsets increasing.
fn scan(log: &Log) -> usize {
    let mut next = log.log_start_offset();
    let mut last = -1i64;
    let mut records = 0;
    while let Some(slice) = log
        .read(next, 64 << 10, None)
        .expect("a read during cleaning")
    {
        let bytes = slice.to_vec().expect("slice bytes");
        for batch in batches(&bytes) {
            let batch = batch.expect("a whole batch");
            batch.validate().expect("a valid batch");
            for record in batch.records().expect("records") {
                let offset = record.expect("record").offset;
                assert!(offset > last, "offset {offset} after {last}");
                last = offset;
                records += 1;
            }
            next = batch.header().next_offset();
        }
    }
    records
}

#[test]
fn cleaning_while_appending_and_reading() {
    let tmp = tempfile::tempdir().unwrap();
    let options = LogDirOptions {
        config: LogConfig {
            cleanup_policy: CleanupPolicy::Compact,
            segment_bytes: 16 << 10,
            index_bytes_max: 4096,
            min_cleanable_dirty_ratio: 0.0,
            file_delete_delay_ms: 0,
            ..LogConfig::default()
        },
        ..LogDirOptions::default()
    };
    let dir = Arc::new(LogDir::open(RealStorage::shared(), tmp.path(), options).unwrap());
    let (log, _) = dir.open_log(&TopicPartition::new("c", 0)).unwrap();
    let done = AtomicBool::new(false);
    let mut latest = BTreeMap::new();
    let cleanings = thread::scope(|s| {
        let cleaner = s.spawn(|| {
            let cleaner = Cleaner::new(CleanerConfig::default());
            let mut cleaned = 0;
            while !done.load(Ordering::Acquire) {
                match cleaner.clean_once(&dir, 0).expect("clean") {
                    CleanOutcome::Cleaned { report, .. } => cleaned += u32::from(!report.aborted),
                    CleanOutcome::Idle => thread::yield_now(),
                    CleanOutcome::Failed { reason, .. } => panic!("cleaning failed: {reason}"),
                }
                log.remove_expired_deleted_files().expect("remove deleted");
            }
            cleaned
        });
        let readers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut scans = 0;
                    while !done.load(Ordering::Acquire) {
                        scan(&log);
                        scans += 1;
                    }
                    scans
                })
            })
            .collect();
        for i in 0..RECORDS {
            let key = format!("key-{}", i % KEYS).into_bytes();
            let value = format!("value-{i}").into_bytes();
            let info = log
                .append_as_leader(
                    &mut keyed_batch(&[(key.clone(), Some(value.clone()))], 1),
                    0,
                )
                .unwrap();
            latest.insert(key, (info.first_offset, value));
        }
        log.force_roll().unwrap();
        // Let the cleaner catch up with the last roll before stopping it.
        let cleaner_alone = Cleaner::new(CleanerConfig::default());
        while let CleanOutcome::Cleaned { .. } = cleaner_alone.clean_once(&dir, 0).unwrap() {}
        done.store(true, Ordering::Release);
        for r in readers {
            assert!(r.join().unwrap() > 0);
        }
        cleaner.join().unwrap()
    });
    assert!(cleanings > 0, "the cleaner thread cleaned");
    let records = common::log_records(&log);
    assert_eq!(records.len() as u64, KEYS, "one record per key is left");
    for (offset, key, value) in records {
        let (want_offset, want_value) = &latest[&key.unwrap()];
        assert_eq!((offset, value.as_ref()), (*want_offset, Some(want_value)));
    }
}

/// The cleanable range's lag check and its limit read one segment list: a roll between
/// two reads of it left the segment it closed out of the `min_compaction_lag_ms` check
/// while the limit already lay past it, and records younger than the lag were cleaned.
/// Round by round, a writer appends a batch of the round's time and rolls, while this
/// thread computes the range at that time: every segment of an earlier round is older
/// than the lag then, the round's own is not.
#[test]
fn a_roll_during_the_lag_check_leaves_young_segments_uncleanable() {
    const LAG: i64 = 3_600_000;
    const ROUNDS: i64 = 400;
    let round_time = |r: i64| 10 * LAG * (r + 1);
    let tmp = tempfile::tempdir().unwrap();
    let options = LogDirOptions {
        config: LogConfig {
            cleanup_policy: CleanupPolicy::Compact,
            index_bytes_max: 4096,
            min_compaction_lag_ms: LAG,
            ..LogConfig::default()
        },
        clock: Arc::new(partlog::ManualClock::new(0)),
    };
    let dir = LogDir::open(Arc::new(RealStorage), tmp.path(), options).unwrap();
    let (log, _) = dir.open_log(&TopicPartition::new("t", 0)).unwrap();
    let record = |i: i64| vec![(i.to_be_bytes().to_vec(), Some(vec![b'v'; 10]))];
    // The first young offset, then the round (stored in this order, read in the other).
    let (young, round) = (AtomicI64::new(0), AtomicI64::new(-1));
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| {
            for r in 0..ROUNDS {
                young.store(log.log_end_offset(), Ordering::Release);
                round.store(r, Ordering::Release);
                log.append_as_leader(&mut keyed_batch(&record(r), round_time(r)), 0)
                    .unwrap();
                log.force_roll().unwrap();
            }
            done.store(true, Ordering::Release);
        });
        while !done.load(Ordering::Acquire) {
            let r = round.load(Ordering::Acquire);
            let first_young = young.load(Ordering::Acquire);
            if r < 0 {
                continue;
            }
            let range = partlog::cleaner::cleanable(&log, None, round_time(r)).unwrap();
            assert!(
                range.first_uncleanable <= first_young,
                "round {r}: records younger than the lag are cleanable: {range:?}"
            );
        }
    });
}
