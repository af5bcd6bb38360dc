//! Compaction of logs with transactions, as Kafka-written offsets logs have (exactly-once
//! consumers commit offsets in transactions): a committed transaction's records count at
//! their offsets once the COMMIT marker is seen, an aborted one's are dropped and never
//! hide an older committed record of their key, and one still open loses nothing.
//!
//! Markers go as Kafka's cleaner lets them: once no batch of their transaction is left
//! before them, past their delete horizon.
//!
//! The property: a cleaning leaves unchanged what a reader that follows the markers (as
//! the offsets load and `read_committed` consumers do) finds for every key. A reference
//! reader (`partlog::fuzzing::committed_by_key`, shared with the `cleaner_transactions`
//! fuzz target) replays what was appended and the cleaned log, and the two must agree,
//! round after round, with transactions left open across cleanings and ended after them.
//!
//! ```text
//! cargo test --release --features fuzzing --test compaction_transactions
//! COMPACTION_SEEDS=5000 cargo test --release --features fuzzing --test compaction_transactions
//! ```

mod common;

use std::sync::Arc;

use partlog::checkpoint::TopicPartition;
use partlog::cleaner::{CleanOutcome, Cleaner, CleanerConfig, SLOT_BYTES};
use partlog::fuzzing::{committed_by_key as committed, marker_batch, txn_items, TxnItem as Item};
use partlog::io::sim::{SimRng, SimStorage};
use partlog::log::{Log, MAX_TRANSACTION_TIMEOUT_MS};
use partlog::manager::{LogDir, LogDirOptions};
use partlog::record::BatchBuilder;
use partlog::ManualClock;

const NOW: i64 = 1_000_000;
const DELETE_RETENTION_MS: i64 = 10_000;

/// Appends `records` (as one batch of `producer`'s transaction, or plain) and notes them.
fn append(
    log: &Log,
    appended: &mut Vec<Item>,
    producer: Option<i64>,
    records: Vec<(Vec<u8>, Option<Vec<u8>>)>,
) {
    let mut builder = BatchBuilder::new();
    if let Some(p) = producer {
        builder.transactional(true).producer(p, 0, 0);
    }
    for (key, value) in &records {
        builder.append(NOW, Some(key), value.as_deref(), &[]);
    }
    let info = log
        .append_as_leader(&mut builder.build().expect("batch"), 0)
        .expect("append");
    let records = records
        .into_iter()
        .enumerate()
        .map(|(i, (k, v))| (info.first_offset + i as i64, k, v))
        .collect();
    appended.push(Item::Records(producer, records));
}

fn end(log: &Log, appended: &mut Vec<Item>, producer: i64, commit: bool) {
    log.append_as_coordinator(&mut marker_batch(producer, commit, NOW).expect("marker"), 0)
        .expect("append marker");
    appended.push(Item::Marker(producer, commit));
}

/// Cleans at `now` until there is nothing left to clean.
fn clean_all_at(cleaner: &Cleaner, dir: &LogDir, now: i64, context: &str) {
    for _ in 0..10_000 {
        match cleaner.clean_once(dir, now).expect("clean") {
            CleanOutcome::Idle => return,
            CleanOutcome::Cleaned { report, .. } => assert!(!report.aborted, "{context}"),
            CleanOutcome::Failed { reason, .. } => panic!("{context}: {reason}"),
        }
    }
    panic!("{context}: cleaning never ends");
}

fn clean_all(cleaner: &Cleaner, dir: &LogDir, context: &str) {
    clean_all_at(cleaner, dir, NOW, context);
}

fn open(seed: u64, map_slots: usize) -> (LogDir, Arc<Log>, Cleaner) {
    let disk = SimStorage::new(seed);
    let options = LogDirOptions {
        config: common::compacted_config(DELETE_RETENTION_MS),
        clock: Arc::new(ManualClock::new(NOW)),
    };
    let dir = LogDir::open(disk.storage(), "/data", options).expect("log dir");
    let (log, _) = dir
        .open_log(&TopicPartition::new("offsets", 0))
        .expect("log");
    let cleaner = Cleaner::new(CleanerConfig {
        dedupe_buffer_bytes: map_slots * SLOT_BYTES,
        ..CleanerConfig::default()
    });
    (dir, log, cleaner)
}

/// Every batch of the log as the reference reader takes it.
fn read_items(log: &Log) -> Vec<Item> {
    txn_items(log).expect("the log reads back valid, every record keyed")
}

/// The values of every record in the log, in offset order (`None` for a tombstone).
fn values(log: &Log) -> Vec<Option<Vec<u8>>> {
    read_items(log)
        .into_iter()
        .flat_map(|item| match item {
            Item::Records(_, records) => records.into_iter().map(|r| r.2).collect(),
            Item::Marker(..) => Vec::new(),
        })
        .collect()
}

fn kv(key: &str, value: Option<&str>) -> (Vec<u8>, Option<Vec<u8>>) {
    (key.into(), value.map(Into::into))
}

#[test]
fn an_aborted_record_never_hides_the_committed_one_before_it() {
    let (dir, log, cleaner) = open(1, 4096);
    let mut appended = Vec::new();
    append(
        &log,
        &mut appended,
        None,
        vec![kv("a", Some("a1")), kv("b", Some("b1"))],
    );
    append(
        &log,
        &mut appended,
        Some(7),
        vec![kv("a", Some("a-aborted"))],
    );
    append(
        &log,
        &mut appended,
        Some(8),
        vec![kv("b", Some("b-committed"))],
    );
    end(&log, &mut appended, 7, false);
    end(&log, &mut appended, 8, true);
    // Still open when the log is cleaned: its record stays, and so does "c"'s before it.
    append(&log, &mut appended, None, vec![kv("c", Some("c1"))]);
    append(&log, &mut appended, Some(9), vec![kv("c", Some("c-open"))]);
    log.force_roll().unwrap();
    clean_all(&cleaner, &dir, "first cleaning");

    let values = values(&log);
    let value = |v: &str| Some(v.as_bytes().to_vec());
    assert_eq!(
        values,
        vec![
            value("a1"),
            value("b-committed"),
            value("c1"),
            value("c-open")
        ],
        "the aborted record and the committed transaction's older key are gone"
    );
    assert_eq!(committed(&read_items(&log)), committed(&appended));

    // The open transaction commits after the cleaning; the next cleaning counts it.
    end(&log, &mut appended, 9, true);
    log.force_roll().unwrap();
    clean_all(&cleaner, &dir, "second cleaning");
    let expected = committed(&appended);
    assert_eq!(expected.get(b"c".as_slice()), Some(&value("c-open")));
    assert_eq!(committed(&read_items(&log)), expected);
}

/// A transaction whose marker never comes (its producer died, and no coordinator aborts
/// it) holds every cleaning at its start. `Log::open_transactions` names it, and the ABORT
/// marker an operator writes for it (`partlog transactions --abort`) lets the next
/// cleaning go past it and drop its records.
#[test]
fn a_hanging_transaction_holds_cleanings_until_it_is_aborted() {
    let (dir, log, cleaner) = open(5, 4096);
    let mut appended = Vec::new();
    append(&log, &mut appended, None, vec![kv("a", Some("a1"))]);
    append(
        &log,
        &mut appended,
        Some(7),
        vec![kv("b", Some("b-committed"))],
    );
    end(&log, &mut appended, 7, true);
    // The producer's transaction before, ended by a coordinator in its epoch 4.
    append(&log, &mut appended, Some(9), vec![kv("e", Some("e1"))]);
    let mut commit = BatchBuilder::transaction_marker(9, 0, true, 4, NOW).expect("marker");
    log.append_as_coordinator(&mut commit, 0)
        .expect("append commit");
    appended.push(Item::Marker(9, true));
    append(
        &log,
        &mut appended,
        Some(9),
        vec![kv("c", Some("c-hanging"))],
    );
    let hanging_at = log.log_end_offset() - 1;
    append(&log, &mut appended, None, vec![kv("a", Some("a2"))]);
    append(
        &log,
        &mut appended,
        Some(9),
        vec![kv("d", Some("d-hanging"))],
    );
    append(&log, &mut appended, None, vec![kv("a", Some("a3"))]);
    log.force_roll().unwrap();
    clean_all(&cleaner, &dir, "the transaction hangs");

    let mut reached = Vec::new();
    let open = log.open_transactions(|o| reached.push(o)).expect("scan");
    assert_eq!(
        reached.last(),
        Some(&log.log_end_offset()),
        "read to the end"
    );
    assert_eq!(open.len(), 1, "{open:?}");
    let hanging = &open[0];
    assert_eq!(
        (hanging.producer_id, hanging.first_offset, hanging.batches),
        (9, hanging_at, 2)
    );
    assert_eq!(hanging.coordinator_epoch, 4, "the producer's last marker's");
    assert_eq!(hanging.last_offset, log.log_end_offset() - 2);
    assert!(
        values(&log).contains(&Some(b"a2".to_vec())),
        "nothing after the transaction's start was cleaned"
    );

    let mut abort = BatchBuilder::transaction_marker(
        hanging.producer_id,
        hanging.producer_epoch,
        false,
        hanging.coordinator_epoch,
        NOW,
    )
    .expect("marker");
    log.append_as_coordinator(&mut abort, 0)
        .expect("append abort");
    appended.push(Item::Marker(9, false));
    assert_eq!(log.open_transactions(|_| {}).expect("scan"), Vec::new());
    log.force_roll().unwrap();
    clean_all(&cleaner, &dir, "aborted");
    let left = values(&log);
    for gone in ["a1", "a2", "c-hanging", "d-hanging"] {
        assert!(!left.contains(&Some(gone.into())), "{gone}: {left:?}");
    }
    assert_eq!(committed(&read_items(&log)), committed(&appended));
}

/// A transaction open where the dirty range begins stalls the log's cleaning, which is
/// then skipped until something changes. Its marker may already be written, above the
/// high watermark: the HW passing it decides the transaction without a byte appended.
/// The skip waited for the log end to move, so a quiet log stayed uncleaned for good.
#[test]
fn a_stalled_log_is_cleaned_once_the_high_watermark_decides_its_transaction() {
    let (dir, log, cleaner) = open(12, 4096);
    let mut appended = Vec::new();
    append(&log, &mut appended, Some(7), vec![kv("b", Some("b1"))]);
    log.force_roll().unwrap();
    end(&log, &mut appended, 7, true);
    append(&log, &mut appended, None, vec![kv("a", Some("a1"))]);
    log.force_roll().unwrap();
    append(&log, &mut appended, None, vec![kv("a", Some("a2"))]);
    log.set_high_watermark(1); // the marker, at 1, is not committed yet
    let first = cleaner.clean_once(&dir, NOW).expect("clean");
    let CleanOutcome::Cleaned { report, .. } = first else {
        panic!("{first:?}");
    };
    assert_eq!(report.end_offset, 0, "stalled at the open transaction");
    assert!(matches!(
        cleaner.clean_once(&dir, NOW).expect("clean"),
        CleanOutcome::Idle
    ));
    log.set_high_watermark(log.log_end_offset());
    let second = cleaner.clean_once(&dir, NOW).expect("clean");
    let CleanOutcome::Cleaned { report, .. } = second else {
        panic!("the HW decided the transaction: {second:?}");
    };
    assert!(report.end_offset > 0, "{report:?}");
}

/// A stalled log stays skipped while appends land in its active segment: they cannot
/// bring the transaction's marker into the cleanable range, which ends at that segment's
/// base. The skip lasted only while the log end stayed put, so on a busy partition whose
/// producer never ended its transaction, every pass cleaned the log again from the same
/// offset, and, its dirty ratio only growing, no other log of the dir was cleaned again.
#[test]
fn a_stalled_log_stays_skipped_while_appends_land_in_its_active_segment() {
    let (dir, log, cleaner) = open(13, 4096);
    let mut appended = Vec::new();
    append(&log, &mut appended, Some(7), vec![kv("b", Some("b1"))]);
    append(&log, &mut appended, None, vec![kv("a", Some("a1"))]);
    log.force_roll().unwrap();
    log.set_high_watermark(log.log_end_offset());
    let first = cleaner.clean_once(&dir, NOW).expect("clean");
    assert!(
        matches!(&first, CleanOutcome::Cleaned { report, .. } if report.end_offset == 0),
        "stalled at the open transaction: {first:?}"
    );
    for i in 0..3 {
        let value = format!("a{}", i + 2);
        append(&log, &mut appended, None, vec![kv("a", Some(&value))]);
        log.set_high_watermark(log.log_end_offset());
        let again = cleaner.clean_once(&dir, NOW).expect("clean");
        assert!(matches!(again, CleanOutcome::Idle), "append {i}: {again:?}");
    }
    // The marker, once in a closed segment below the HW, ends the stall.
    end(&log, &mut appended, 7, true);
    log.force_roll().unwrap();
    log.set_high_watermark(log.log_end_offset());
    let decided = cleaner.clean_once(&dir, NOW).expect("clean");
    assert!(
        matches!(&decided, CleanOutcome::Cleaned { report, .. } if report.end_offset > 0),
        "{decided:?}"
    );
    assert_eq!(committed(&read_items(&log)), committed(&appended));
}

/// A transactional tombstone still open at a cleaning, committed after it: its key's
/// older record must still go, before the tombstone does. (When a cleaning went past the
/// open transaction, the tombstone was counted in no map once committed, kept the record
/// before it, and took its own delete horizon from that cleaning: past it, the tombstone
/// went and the record it deleted was back. Found by the property test below once time
/// passed in it, seed 2.)
#[test]
fn a_tombstone_committed_after_a_cleaning_still_deletes_the_record_before_it() {
    let (dir, log, cleaner) = open(4, 4096);
    let mut appended = Vec::new();
    append(&log, &mut appended, None, vec![kv("a", Some("a1"))]);
    append(&log, &mut appended, Some(7), vec![kv("a", None)]);
    append(&log, &mut appended, None, vec![kv("b", Some("b1"))]);
    log.force_roll().unwrap();
    clean_all_at(&cleaner, &dir, NOW, "the transaction is open");
    end(&log, &mut appended, 7, true);
    append(&log, &mut appended, None, vec![kv("b", Some("b2"))]);
    log.force_roll().unwrap();
    clean_all_at(&cleaner, &dir, NOW, "it committed");
    append(&log, &mut appended, None, vec![kv("b", Some("b3"))]);
    log.force_roll().unwrap();
    clean_all_at(
        &cleaner,
        &dir,
        NOW + DELETE_RETENTION_MS,
        "past the horizon",
    );
    let expected = committed(&appended);
    assert_eq!(expected.get(b"a".as_slice()), None, "deleted");
    assert_eq!(committed(&read_items(&log)), expected);
}

/// Appends something dirty (so that the step cleans), rolls, cleans at `now`, and checks
/// that readers find what was appended.
fn clean_step(
    (dir, log, cleaner): (&LogDir, &Log, &Cleaner),
    appended: &mut Vec<Item>,
    now: i64,
    what: &str,
) {
    append(log, appended, None, vec![kv("z", Some(what))]);
    log.force_roll().unwrap();
    clean_all_at(cleaner, dir, now, what);
    assert_eq!(committed(&read_items(log)), committed(appended), "{what}");
}

fn markers(log: &Log) -> usize {
    read_items(log)
        .iter()
        .filter(|item| matches!(item, Item::Marker(..)))
        .count()
}

/// A marker stays while a batch of its transaction is left before it, then gets a delete
/// horizon, and goes past it, as Kafka's cleaner lets markers go; what readers find
/// never changes.
#[test]
fn a_marker_goes_once_its_transaction_is_gone_and_its_horizon_passed() {
    let (dir, log, cleaner) = open(3, 4096);
    let mut appended = Vec::new();
    append(&log, &mut appended, Some(7), vec![kv("a", Some("in-txn"))]);
    end(&log, &mut appended, 7, true);
    append(&log, &mut appended, None, vec![kv("a", Some("later"))]);
    let mut step = |now: i64, what: &str| {
        clean_step((&dir, &log, &cleaner), &mut appended, now, what);
        markers(&log)
    };
    assert_eq!(step(NOW, "the transaction's record is superseded"), 1);
    assert_eq!(step(NOW, "its batch is gone: the horizon is set"), 1);
    assert_eq!(step(NOW + DELETE_RETENTION_MS - 1, "before the horizon"), 1);
    assert_eq!(step(NOW + DELETE_RETENTION_MS, "at the horizon"), 0);
}

/// A transaction's batch that a cleaning emptied is kept while it ends its group of
/// segments, as a plain empty batch: kept as a transactional one, it blocked its marker's
/// removal at every later cleaning (a marker goes only once no batch of its transaction
/// is read before it), and once let through, outlived the marker as a transaction that
/// never ends, which held back the cleaning of a replica copying the log.
#[test]
fn a_transaction_batch_left_empty_does_not_keep_its_marker() {
    let (dir, log, cleaner) = open(7, 4096);
    let mut appended = Vec::new();
    let big = "v".repeat(1000);
    append(&log, &mut appended, Some(7), vec![kv("a", Some(&big))]);
    log.force_roll().unwrap();
    // The marker's segment, with the record that supersedes the transaction's, is too
    // large to share a group with the first, even once that one is emptied.
    end(&log, &mut appended, 7, true);
    append(
        &log,
        &mut appended,
        None,
        vec![kv("a", Some(&"w".repeat(1880)))],
    );
    let mut step = |now: i64, what: &str| {
        clean_step((&dir, &log, &cleaner), &mut appended, now, what);
        let first = read_items(&log).into_iter().next();
        let emptied = matches!(&first, Some(Item::Records(None, r)) if r.is_empty());
        (emptied, markers(&log))
    };
    assert_eq!(
        step(NOW, "the transaction's record is superseded"),
        (true, 1)
    );
    assert_eq!(
        step(NOW, "the emptied batch stays, ending its group"),
        (true, 1)
    );
    assert_eq!(
        step(
            NOW + DELETE_RETENTION_MS,
            "past the horizon the marker goes"
        ),
        (true, 0)
    );
    assert!(
        log.open_transactions(|_| {}).unwrap().is_empty(),
        "the emptied batch reads as no open transaction"
    );
}

/// Batches of the log with the control bit (markers), read raw.
fn control_batches(log: &Log) -> usize {
    let mut count = 0;
    let mut next = log.log_start_offset();
    while let Some(slice) = log.read(next, 1 << 20, None).unwrap() {
        let bytes = slice.to_vec().unwrap();
        for batch in partlog::record::batches(&bytes) {
            let header = *batch.unwrap().header();
            count += usize::from(header.is_control());
            next = header.next_offset();
        }
    }
    count
}

/// A marker that goes past its horizon while it ends its group of segments is kept as an
/// empty batch, to end it still: as a plain one. An empty control batch is no marker
/// (none of its records says COMMIT or ABORT), and every later cleaning copied it
/// unopened, for good.
#[test]
fn a_marker_gone_at_the_end_of_its_group_leaves_no_control_batch() {
    let (dir, log, cleaner) = open(8, 4096);
    let mut appended = Vec::new();
    append(&log, &mut appended, Some(7), vec![kv("a", Some("in-txn"))]);
    end(&log, &mut appended, 7, true);
    log.force_roll().unwrap();
    // Too large to share a group with the marker's segment.
    append(
        &log,
        &mut appended,
        None,
        vec![kv("a", Some(&"w".repeat(1950)))],
    );
    let mut step = |now: i64, what: &str| {
        clean_step((&dir, &log, &cleaner), &mut appended, now, what);
        control_batches(&log)
    };
    assert_eq!(step(NOW, "the transaction's record is superseded"), 1);
    assert_eq!(step(NOW, "its batch is gone: the horizon is set"), 1);
    assert_eq!(step(NOW + DELETE_RETENTION_MS, "past the horizon"), 0);
    assert_eq!(step(NOW + DELETE_RETENTION_MS, "and after"), 0);
}

/// A committed transaction with more keys than the whole map holds, where the dirty range
/// begins: held back until its marker and then put whole, it never fit, and every
/// cleaning ended where it began, so nothing after it was ever cleaned. Decided, its
/// records go in as plain ones do, and the cleanings go through it in parts.
#[test]
fn a_committed_transaction_larger_than_the_map_is_cleaned_in_parts() {
    let (dir, log, cleaner) = open(6, 64);
    let mut appended = Vec::new();
    let keys: Vec<String> = (0..200).map(|k| format!("k{k}")).collect();
    let old: Vec<_> = keys.iter().map(|k| kv(k, Some("old"))).collect();
    for chunk in old.chunks(20) {
        append(&log, &mut appended, None, chunk.to_vec());
    }
    let new: Vec<_> = keys.iter().map(|k| kv(k, Some("new"))).collect();
    for chunk in new.chunks(20) {
        append(&log, &mut appended, Some(7), chunk.to_vec());
    }
    end(&log, &mut appended, 7, true);
    log.force_roll().unwrap();
    clean_all(&cleaner, &dir, "the transaction commits");
    let left = values(&log);
    assert!(
        !left.contains(&Some(b"old".to_vec())),
        "every old value is superseded by the transaction's: {} records left",
        left.len()
    );
    assert_eq!(left.len(), keys.len());
    assert_eq!(committed(&read_items(&log)), committed(&appended));
}

/// A transaction open where the dirty range begins, whose marker lies past where the map
/// fills: every map pass filled before the marker, found the transaction open, and ended
/// where it began, so the log was never cleaned again. Its outcome is now looked up past
/// the full map, and the pass runs again knowing it: committed, its records go in as they
/// come; aborted, its batches go.
#[test]
fn a_transaction_decided_past_a_full_map_does_not_stall_the_cleaning() {
    for commit in [true, false] {
        let (dir, log, cleaner) = open(21, 64);
        let mut appended = Vec::new();
        append(&log, &mut appended, Some(7), vec![kv("t", Some("txn"))]);
        let keys: Vec<String> = (0..200).map(|k| format!("k{k}")).collect();
        for value in ["old", "new"] {
            let records: Vec<_> = keys.iter().map(|k| kv(k, Some(value))).collect();
            for chunk in records.chunks(20) {
                append(&log, &mut appended, None, chunk.to_vec());
            }
        }
        end(&log, &mut appended, 7, commit);
        log.force_roll().unwrap();
        clean_all(&cleaner, &dir, "past the full map");
        let left = values(&log);
        assert!(
            !left.contains(&Some(b"old".to_vec())),
            "commit {commit}: the old values are superseded: {} records left",
            left.len()
        );
        assert_eq!(left.contains(&Some(b"txn".to_vec())), commit);
        assert_eq!(committed(&read_items(&log)), committed(&appended));
    }
}

fn run(seed: u64, map_slots: usize) {
    let mut rng = SimRng::new(seed);
    let (dir, log, cleaner) = open(seed, map_slots);
    let keys = rng.range_inclusive(2, 12);
    let producers = rng.range_inclusive(1, 4) as i64;
    let mut appended = Vec::new();
    let mut open_txns: Vec<i64> = Vec::new();
    let rounds = rng.range_inclusive(2, 6);
    for round in 0..=rounds {
        let last = round == rounds;
        for _ in 0..rng.range_inclusive(1, 25) {
            let producer = rng.range_inclusive(1, producers as u64) as i64;
            if open_txns.contains(&producer) && rng.ratio(1, 3) {
                end(&log, &mut appended, producer, rng.ratio(1, 2));
                open_txns.retain(|&p| p != producer);
                continue;
            }
            let records = (0..rng.range_inclusive(1, 4))
                .map(|_| {
                    let key = format!("k{}", rng.below(keys)).into_bytes();
                    let value = (!rng.ratio(1, 8))
                        .then(|| format!("v{round}-{}", rng.below(1000)).into_bytes());
                    (key, value)
                })
                .collect();
            let txn = rng.ratio(1, 2).then_some(producer);
            if let Some(p) = txn.filter(|p| !open_txns.contains(p)) {
                open_txns.push(p);
            }
            append(&log, &mut appended, txn, records);
        }
        if last {
            // Every transaction ends: nothing is left undecided.
            for producer in std::mem::take(&mut open_txns) {
                end(&log, &mut appended, producer, rng.ratio(1, 2));
            }
        }
        log.force_roll().unwrap();
        let context = format!("seed {seed}, map of {map_slots}, round {round}");
        // Time passes: tombstones and markers reach their horizons some rounds later.
        let now = NOW + round as i64 * DELETE_RETENTION_MS / 2;
        clean_all_at(&cleaner, &dir, now, &context);
        assert_eq!(
            committed(&read_items(&log)),
            committed(&appended),
            "{context}: the cleaning changed what a reader finds"
        );
        // What the log says is open is what is: the cleanings dropped no marker whose
        // transaction has a batch left, and no open transaction's batch.
        let mut found: Vec<i64> = log
            .open_transactions(|_| {})
            .expect("scan")
            .iter()
            .map(|t| t.producer_id)
            .collect();
        found.sort_unstable();
        let mut open = open_txns.clone();
        open.sort_unstable();
        assert_eq!(found, open, "{context}: open transactions");
    }
}

#[test]
fn cleaning_keeps_what_readers_of_committed_data_find() {
    for seed in 0..common::compaction_seeds() {
        run(seed, 4096);
    }
}

#[test]
fn partial_cleanings_keep_it_too() {
    for seed in 0..common::compaction_seeds() / 2 {
        run(seed, 8);
    }
}

/// An open transaction's last timestamp is its last batch's; it hangs once its producer
/// has been silent for longer than the transaction timeout (Kafka's `find-hanging` rule).
#[test]
fn an_open_transaction_hangs_once_its_producer_is_silent_past_the_timeout() {
    let (_dir, log, _cleaner) = open(5, 4096);
    for timestamp in [NOW, NOW + 500] {
        let mut builder = BatchBuilder::new();
        builder.transactional(true).producer(3, 0, 0);
        builder.append(timestamp, Some(b"k"), Some(b"v"), &[]);
        let mut batch = builder.build().expect("batch");
        log.append_as_leader(&mut batch, 0).expect("append");
    }
    let open = log.open_transactions(|_| {}).expect("scan");
    assert_eq!(open.len(), 1, "{open:?}");
    let txn = &open[0];
    assert_eq!(
        (txn.first_timestamp_ms, txn.last_timestamp_ms),
        (NOW, NOW + 500)
    );
    let timeout = MAX_TRANSACTION_TIMEOUT_MS;
    assert!(!txn.hanging(NOW + 500 + timeout, timeout), "at the timeout");
    assert!(txn.hanging(NOW + 501 + timeout, timeout), "past it");
    assert!(
        !txn.hanging(i64::MIN, timeout),
        "a clock behind the batches"
    );
}

/// A compressed batch of an aborted transaction goes whole, unopened, as Kafka's cleaner
/// drops aborted batches; and its marker goes after its horizon once the batch is gone.
/// It was copied unopened, never known as its transaction's, so it stayed for good, and
/// its marker with it.
#[test]
fn a_compressed_batch_of_an_aborted_transaction_is_dropped() {
    let (dir, log, cleaner) = open(17, 4096);
    let mut builder = BatchBuilder::new();
    builder.transactional(true).producer(7, 0, 0);
    builder.append(NOW, Some(b"a"), Some(b"aborted"), &[]);
    let mut compressed = builder.build().expect("batch");
    // Marked gzip: partlog copies it unopened, whatever its payload holds.
    compressed[22] |= 1;
    partlog::record::recompute_crc(&mut compressed);
    log.append_as_leader(&mut compressed, 0).expect("append");
    log.append_as_coordinator(&mut marker_batch(7, false, NOW).expect("marker"), 0)
        .expect("abort");
    let mut plain = Vec::new();
    append(&log, &mut plain, None, vec![kv("b", Some("plain"))]);
    log.force_roll().expect("roll");
    // (compressed batches, markers) in the log.
    let count = || {
        let mut next = log.log_start_offset();
        let (mut compressed, mut markers) = (0, 0);
        while let Some(slice) = log.read(next, 1 << 20, None).expect("read") {
            let bytes = slice.to_vec().expect("bytes");
            for b in partlog::record::batches(&bytes) {
                let b = b.expect("batch");
                next = b.header().next_offset();
                compressed += usize::from(b.records().is_err());
                markers += usize::from(b.header().is_control());
            }
        }
        (compressed, markers)
    };
    assert_eq!(count(), (1, 1));
    clean_all(&cleaner, &dir, "the aborted batch goes");
    assert_eq!(count(), (0, 1), "the marker stays while its batch was read");
    append(&log, &mut plain, None, vec![kv("b", Some("later"))]);
    log.force_roll().expect("roll");
    clean_all(&cleaner, &dir, "the horizon is set");
    append(&log, &mut plain, None, vec![kv("b", Some("latest"))]);
    log.force_roll().expect("roll");
    clean_all_at(
        &cleaner,
        &dir,
        NOW + DELETE_RETENTION_MS,
        "past the horizon",
    );
    assert_eq!(count(), (0, 0));
}

/// An ABORT marker that a transaction index names (Kafka's entry for the aborted
/// transaction: a Kafka-written log, or an abort partlog made itself) stays past its
/// horizon, as its entry does; one no index names goes. The cleaner dropped both and kept
/// the entry: Kafka, taking the dir back, would have found no marker to end that
/// transaction, and taken its producer's later committed batches for aborted ones (its
/// `read_committed` fetches skipped them, its cleaner deleted them).
#[test]
fn an_abort_marker_a_transaction_index_names_stays_with_its_entry() {
    let (dir, log, cleaner) = open(5, 4096);
    let mut appended = Vec::new();
    append(&log, &mut appended, Some(7), vec![kv("a", Some("aborted"))]);
    let open_txns = log.open_transactions(|_| {}).expect("open transactions");
    log.abort_transaction(&open_txns, 7, 0, NOW).expect("abort");
    appended.push(Item::Marker(7, false));
    append(&log, &mut appended, Some(8), vec![kv("b", Some("aborted"))]);
    end(&log, &mut appended, 8, false);
    let mut step = |now: i64, what: &str| {
        clean_step((&dir, &log, &cleaner), &mut appended, now, what);
        read_items(&log)
            .into_iter()
            .filter_map(|item| match item {
                Item::Marker(producer, _) => Some(producer),
                Item::Records(..) => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(step(NOW, "the aborted batches go"), [7, 8]);
    assert_eq!(step(NOW, "the horizons are set"), [7, 8]);
    assert_eq!(step(NOW + DELETE_RETENTION_MS, "past the horizons"), [7]);
}
