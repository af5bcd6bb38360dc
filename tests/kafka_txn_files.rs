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
