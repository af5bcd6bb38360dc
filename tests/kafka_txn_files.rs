//! The Kafka files partlog keeps no state for (a segment's `.txnindex`, the producer
//! `.snapshot`s) stay true to the log, so that Kafka can take a log dir back: a truncation
//! cuts the index entries of transactions ending at or past the new end and removes the
//! snapshots past it, a segment that goes takes its index along, a log that starts over
//! loses every snapshot, and so does the tail recovery cuts (an index without its segment
//! goes, as Kafka's loader removes it). They used to stay as they were,
//! and Kafka, trusting them after partlog's clean shutdown, would have hidden records
//! written since from `read_committed` consumers as parts of aborted transactions.

mod common;

use common::{backends, batch, file_bytes, file_names, open, reopen, write_file, Backend};
use partlog::log::Log;
use partlog::LogConfig;

const NAME: &str = "t-0";

/// An aborted-transaction index entry (version 0), as Kafka's `AbortedTxn` lays it out.
fn aborted(producer_id: i64, first: i64, last: i64) -> Vec<u8> {
    common::aborted_txn_entry(producer_id, first, last, first)
}

fn name(base: i64, suffix: &str) -> String {
    format!("{base:020}{suffix}")
}

/// Segments at 0 and 10 (five 2-record batches each) and an active one at 20 ending at
/// 25, with a transaction index for each of the first two and snapshots at 5, 12 and 25.
fn build(backend: &Backend) -> Log {
    let (log, _) = open(backend, NAME, LogConfig::default());
    for segment in 0..3 {
        let batches = if segment < 2 { 5 } else { 3 };
        for i in 0..batches {
            log.append_as_leader(&mut batch(2, 20, i), 1).unwrap();
        }
        if segment < 2 {
            log.force_roll().unwrap();
        }
    }
    assert_eq!(log.log_end_offset(), 26);
    let dir = backend.root.join(NAME);
    let first: Vec<u8> = [aborted(7, 0, 3), aborted(8, 2, 6), aborted(7, 5, 9)].concat();
    write_file(backend, &dir.join(name(0, ".txnindex")), &first);
    write_file(
        backend,
        &dir.join(name(10, ".txnindex")),
        &aborted(9, 10, 14),
    );
    for at in [5, 12, 25] {
        write_file(backend, &dir.join(name(at, ".snapshot")), b"producer state");
    }
    log
}

fn live_files(backend: &Backend, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = file_names(backend, &backend.root.join(NAME))
        .into_iter()
        .filter(|n| n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

#[test]
fn a_truncation_cuts_the_transaction_index_and_removes_what_lies_past_it() {
    for backend in backends() {
        let log = build(&backend);
        log.truncate_to(6).unwrap();
        assert_eq!(log.log_end_offset(), 6, "{}", backend.name);
        let index = file_bytes(
            &backend,
            &backend.root.join(NAME).join(name(0, ".txnindex")),
        );
        assert_eq!(
            index,
            aborted(7, 0, 3),
            "{}: entries ending at 6 or later go",
            backend.name
        );
        assert_eq!(
            live_files(&backend, ".txnindex"),
            vec![name(0, ".txnindex")],
            "{}: the removed segment's index went with it",
            backend.name
        );
        assert_eq!(
            live_files(&backend, ".snapshot"),
            vec![name(5, ".snapshot")],
            "{}",
            backend.name
        );
    }
}

#[test]
fn a_log_that_starts_over_keeps_no_snapshot_nor_index() {
    for backend in backends() {
        let log = build(&backend);
        log.truncate_fully_and_start_at(40).unwrap();
        assert!(
            live_files(&backend, ".snapshot").is_empty(),
            "{}",
            backend.name
        );
        assert!(
            live_files(&backend, ".txnindex").is_empty(),
            "{}",
            backend.name
        );
    }
}

#[test]
fn a_segment_removed_by_retention_takes_its_transaction_index() {
    for backend in backends() {
        let log = build(&backend);
        log.advance_log_start_offset(12).unwrap();
        log.delete_old_segments().unwrap();
        assert_eq!(log.segments()[0].base_offset(), 10, "{}", backend.name);
        assert_eq!(
            live_files(&backend, ".txnindex"),
            vec![name(10, ".txnindex")],
            "{}",
            backend.name
        );
    }
}

#[test]
fn the_tail_recovery_cuts_leaves_no_kafka_file_describing_it() {
    for backend in backends() {
        let log = build(&backend);
        log.flush().unwrap();
        drop(log);
        // A torn last batch: the active segment (three batches, then the zeros written
        // ahead of its end) ends inside it.
        let active = backend.root.join(NAME).join(name(20, ".log"));
        let bytes = file_bytes(&backend, &active);
        let one = batch(2, 20, 0).len();
        write_file(&backend, &active, &bytes[..3 * one - one / 2]);
        write_file(
            &backend,
            &backend.root.join(NAME).join(name(20, ".txnindex")),
            &[aborted(3, 20, 21), aborted(4, 22, 25)].concat(),
        );
        // And an index without its segment, which Kafka's loader removes too.
        write_file(
            &backend,
            &backend.root.join(NAME).join(name(30, ".txnindex")),
            &aborted(5, 30, 31),
        );
        let (log, report) = reopen(&backend, NAME, LogConfig::default(), false, Some(0));
        assert!(report.damage.is_some(), "{}: {report:?}", backend.name);
        assert_eq!(log.log_end_offset(), 24, "{}", backend.name);
        let index = file_bytes(
            &backend,
            &backend.root.join(NAME).join(name(20, ".txnindex")),
        );
        assert_eq!(index, aborted(3, 20, 21), "{}", backend.name);
        assert_eq!(
            live_files(&backend, ".txnindex"),
            vec![
                name(0, ".txnindex"),
                name(10, ".txnindex"),
                name(20, ".txnindex")
            ],
            "{}",
            backend.name
        );
        assert_eq!(
            live_files(&backend, ".snapshot"),
            vec![name(5, ".snapshot"), name(12, ".snapshot")],
            "{}",
            backend.name
        );
    }
}

/// An open after an unclean shutdown makes the Kafka files agree with the log even where
/// recovery cut nothing: a truncation that a crash or a failed write stopped after its
/// cut, before the files, leaves them describing what it cut.
#[test]
fn an_unclean_open_finishes_what_a_stopped_truncation_left() {
    for backend in backends() {
        let log = build(&backend);
        log.flush().unwrap();
        drop(log);
        let dir = backend.root.join(NAME);
        write_file(
            &backend,
            &dir.join(name(20, ".txnindex")),
            &[aborted(3, 20, 21), aborted(4, 24, 30)].concat(),
        );
        write_file(&backend, &dir.join(name(40, ".snapshot")), b"cut history");
        let (log, report) = reopen(&backend, NAME, LogConfig::default(), false, Some(26));
        assert!(report.damage.is_none(), "{}: {report:?}", backend.name);
        assert_eq!(log.log_end_offset(), 26, "{}", backend.name);
        let index = file_bytes(&backend, &dir.join(name(20, ".txnindex")));
        assert_eq!(index, aborted(3, 20, 21), "{}", backend.name);
        assert_eq!(
            live_files(&backend, ".snapshot"),
            vec![
                name(5, ".snapshot"),
                name(12, ".snapshot"),
                name(25, ".snapshot")
            ],
            "{}",
            backend.name
        );
    }
}

/// An abort partlog makes itself ([`Log::abort_transaction`]) adds Kafka's entry for it to
/// the marker's segment's index, as Kafka's leader does on the marker's append: the
/// transaction's first offset, the marker's, and the last stable offset after it, here
/// the first offset of the other transaction still open. Without it, a Kafka broker
/// taking the dir back after a clean shutdown would serve the aborted records to
/// `read_committed` consumers as committed.
#[test]
fn an_abort_adds_its_entry_to_the_transaction_index() {
    for backend in backends() {
        let (log, _) = open(&backend, NAME, LogConfig::default());
        log.append_as_leader(&mut batch(2, 20, 0), 1).unwrap(); // 0..=1
        let transactional = |producer_id: i64| {
            let mut b = partlog::record::BatchBuilder::new();
            b.transactional(true).producer(producer_id, 4, 0);
            b.append(1_000, Some(b"k"), Some(b"v"), &[]);
            b.build().unwrap()
        };
        log.append_as_leader(&mut transactional(7), 1).unwrap(); // 2
        log.append_as_leader(&mut transactional(8), 1).unwrap(); // 3
        log.append_as_leader(&mut transactional(7), 1).unwrap(); // 4
        let open = log.open_transactions(|_| {}).unwrap();
        assert_eq!(open.len(), 2);
        let info = log.abort_transaction(&open, 7, 1, 5_000).unwrap();
        assert_eq!(info.first_offset, 5);
        let index = backend.root.join(NAME).join(name(0, ".txnindex"));
        let entry = common::aborted_txn_entry(7, 2, 5, 3);
        assert_eq!(file_bytes(&backend, &index), entry, "{}", backend.name);
        let open = log.open_transactions(|_| {}).unwrap();
        assert_eq!(open.iter().map(|t| t.producer_id).collect::<Vec<_>>(), [8]);
        // A producer with nothing open is refused, and nothing is appended.
        let err = log.abort_transaction(&open, 7, 1, 5_000).unwrap_err();
        assert!(matches!(err, partlog::Error::InvalidRequest(_)), "{err}");
        assert_eq!(log.log_end_offset(), 6);
    }
}

/// Indexes of 4 KiB, quick to make on the simulated disk.
fn small_indexes() -> LogConfig {
    LogConfig {
        index_bytes_max: 4096,
        ..LogConfig::default()
    }
}

/// A log at 0..=4: a plain batch, then producers 7, 8 and 7 in transactions, on disk.
fn with_open_transactions(backend: &Backend) -> Log {
    let (log, _) = open(backend, NAME, small_indexes());
    log.append_as_leader(&mut batch(2, 20, 0), 1).unwrap(); // 0..=1
    for producer_id in [7, 8, 7] {
        let mut b = partlog::record::BatchBuilder::new();
        b.transactional(true).producer(producer_id, 4, 0);
        b.append(1_000, Some(b"k"), Some(b"v"), &[]);
        log.append_as_leader(&mut b.build().unwrap(), 1).unwrap(); // 2, 3, 4
    }
    log.flush().unwrap();
    log
}

/// Whether the log holds producer 7's ABORT marker at 5, and whether the index holds its
/// entry (the index is only ever that entry or nothing).
fn marker_and_entry(backend: &Backend, log: &Log) -> (bool, bool) {
    let marker = log.log_end_offset() > 5 && {
        let slice = log.read(5, 1 << 20, None).unwrap().expect("data at 5");
        let bytes = slice.to_vec().unwrap();
        let b = partlog::record::batches(&bytes).next().unwrap().unwrap();
        let h = b.header();
        h.base_offset == 5 && h.producer_id == 7 && b.marker_commits() == Some(false)
    };
    let path = backend.root.join(NAME).join(name(0, ".txnindex"));
    let entry = backend.storage.exists(&path) && {
        let index = file_bytes(backend, &path);
        match index.len() {
            0 => false,
            _ => {
                assert_eq!(index, common::aborted_txn_entry(7, 2, 5, 3));
                true
            }
        }
    };
    (marker, entry)
}

/// A crash at any step of an abort leaves its marker and its index entry together, or
/// neither (and then the transaction is still open, and aborting it again works). The
/// marker used to be appended before the entry was written: a crash in between, with the
/// marker's unsynced bytes kept, left a marker without an entry, and a Kafka broker
/// taking the dir back would serve the aborted records to `read_committed` consumers.
#[test]
fn a_crash_at_any_step_of_an_abort_leaves_its_marker_and_entry_together() {
    use partlog::io::sim::{FaultKind, SimOp};
    let (backend, disk) = common::sim_with_disk(1);
    let log = with_open_transactions(&backend);
    let open_txns = log.open_transactions(|_| {}).unwrap();
    let start = disk.counters();
    log.abort_transaction(&open_txns, 7, 1, 5_000).unwrap();
    let end = disk.counters();
    assert_eq!(marker_and_entry(&backend, &log), (true, true));
    let steps = [
        (SimOp::Write, end.writes - start.writes),
        (SimOp::Sync, end.syncs - start.syncs),
        (SimOp::SyncDir, end.sync_dirs - start.sync_dirs),
        (SimOp::Create, end.creates - start.creates),
    ];
    let mut both = [0; 2];
    for seed in 0..8 {
        for (op, count) in steps {
            for n in 1..=count {
                let (backend, disk) = common::sim_with_disk(seed);
                let log = with_open_transactions(&backend);
                let open_txns = log.open_transactions(|_| {}).unwrap();
                disk.fail_nth(op, n, FaultKind::Crash).unwrap();
                assert!(log.abort_transaction(&open_txns, 7, 1, 5_000).is_err());
                drop(log);
                let (log, _) = reopen(&backend, NAME, small_indexes(), false, None);
                let found = marker_and_entry(&backend, &log);
                let at = format!("seed {seed}, crash at {op:?} #{n}");
                assert_eq!(found.0, found.1, "{at}: marker, entry: {found:?}");
                both[usize::from(found.0)] += 1;
                if !found.0 {
                    let open_txns = log.open_transactions(|_| {}).unwrap();
                    log.abort_transaction(&open_txns, 7, 1, 5_000).unwrap();
                    assert_eq!(marker_and_entry(&backend, &log), (true, true), "{at}");
                }
            }
        }
    }
    assert!(both[0] > 0 && both[1] > 0, "both outcomes seen: {both:?}");
}
