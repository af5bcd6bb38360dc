//! Files of interrupted work found on open: `.cleaned` and `.deleted` files go, a `.log.swap`
//! (a finished cleaning) replaces the live segments it covers, as a Kafka cleaning's
//! `.txnindex.swap` does the transaction index at its base; other index `.swap` files and
//! indexes without a `.log` go, and the report lists each.

mod common;

use std::path::PathBuf;

use common::{backends, batch, file_names, open, read_all, small_config, write_file, Backend};
use partlog::record::{set_base_offset, set_partition_leader_epoch};
use partlog::{CleanupPolicy, LogConfig};

/// Segments at 0, 10, 20 (10 offsets each, five 2-record batches) and an active one at 30,
/// written under `config`.
fn build(backend: &Backend, name: &str, config: LogConfig) -> Vec<(i64, i64)> {
    let (log, _) = open(backend, name, config);
    for segment in 0..4 {
        for i in 0..5 {
            log.append_as_leader(&mut batch(2, 20, segment * 100 + i), 1)
                .unwrap();
        }
        if segment < 3 {
            log.force_roll().unwrap();
        }
    }
    let bases: Vec<i64> = log.segments().iter().map(|s| s.base_offset()).collect();
    assert_eq!(bases, vec![0, 10, 20, 30]);
    log.close().unwrap();
    read_all(&log)
}

fn file(backend: &Backend, name: &str, file: &str) -> PathBuf {
    backend.root.join(name).join(file)
}

/// Cleaning leaves offset gaps, which only a compacted log may hold: a log the cleaner
/// cleans was opened compacting, and so marked as one with gaps.
fn compacted() -> LogConfig {
    LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        ..small_config()
    }
}

/// A cleaned segment for offsets 0..20 of [`build`]'s log, keeping one record at each odd
/// offset, in the epoch the log was written in (a cleaning keeps each batch's epoch).
fn cleaned_odd_offsets() -> Vec<u8> {
    let mut swap = Vec::new();
    for offset in (1..20).step_by(2) {
        let mut b = batch(1, 7, offset);
        set_base_offset(&mut b, offset);
        set_partition_leader_epoch(&mut b, 1);
        swap.extend_from_slice(&b);
    }
    swap
}

/// Opens `t-0` under `config` after leftovers were laid: the log, its report, a context
/// line for failures, and the file names left in the partition dir, none of them a swap.
fn open_leftovers(
    backend: &Backend,
    config: LogConfig,
) -> (
    partlog::log::Log,
    partlog::log::RecoveryReport,
    String,
    Vec<String>,
) {
    let (log, report) = open(backend, "t-0", config);
    let ctx = format!("{}: {report:?}", backend.name);
    let names = file_names(backend, &backend.root.join("t-0"));
    assert!(
        !names.iter().any(|n| n.ends_with(".swap")),
        "{ctx}: {names:?}"
    );
    (log, report, ctx, names)
}

#[test]
fn swap_replaces_the_segments_it_covers() {
    for backend in backends() {
        let compacted = compacted();
        let all = build(&backend, "t-0", compacted.clone());
        let swap = cleaned_odd_offsets();
        let swap_path = file(&backend, "t-0", "00000000000000000000.log.swap");
        write_file(&backend, &swap_path, &swap);
        let index_swap = file(&backend, "t-0", "00000000000000000000.index.swap");
        write_file(&backend, &index_swap, &[1, 2, 3]);
        let (log, report, ctx, names) = open_leftovers(&backend, compacted);
        assert!(
            !names.iter().any(|n| n.starts_with("00000000000000000010")),
            "{ctx}: {names:?}"
        );
        let logs: Vec<&String> = names.iter().filter(|n| n.ends_with(".log")).collect();
        assert_eq!(logs.len(), 3, "{ctx}: {names:?}");
        assert_eq!(log.segment_count(), 3, "{ctx}");
        let mut expected: Vec<(i64, i64)> = (1..20).step_by(2).map(|o| (o, o)).collect();
        expected.extend(all.iter().filter(|b| b.0 >= 20));
        assert_eq!(read_all(&log), expected, "{ctx}");
        assert_eq!(log.log_end_offset(), 40, "{ctx}");
        assert!(
            report.leftovers.iter().any(|l| l.path == swap_path),
            "{ctx}"
        );
        assert!(
            report.leftovers.iter().any(|l| l.path == index_swap),
            "{ctx}"
        );
        assert_eq!(
            log.append_as_leader(&mut batch(1, 1, 0), 1)
                .unwrap()
                .first_offset,
            40
        );
    }
}

#[test]
fn cleaned_deleted_and_orphan_files_are_removed() {
    for backend in backends() {
        let all = build(&backend, "t-0", small_config());
        let leftovers = [
            "00000000000000000000.log.cleaned",
            "00000000000000000000.index.cleaned",
            "00000000000000000005.log.deleted",
            "00000000000000000005.index.deleted",
            "00000000000000000005.timeindex.deleted",
            "00000000000000000020.index.swap",
            "00000000000000000020.timeindex.swap",
            "00000000000000000999.index",
            "00000000000000000999.timeindex",
        ];
        for name in leftovers {
            write_file(&backend, &file(&backend, "t-0", name), &batch(1, 3, 0));
        }
        let (log, report) = open(&backend, "t-0", small_config());
        let ctx = format!("{}: {report:?}", backend.name);
        let names = file_names(&backend, &backend.root.join("t-0"));
        for name in leftovers {
            assert!(
                !names.iter().any(|n| n == name),
                "{ctx}: {name} in {names:?}"
            );
            let path = file(&backend, "t-0", name);
            assert!(
                report.leftovers.iter().any(|l| l.path == path),
                "{ctx}: {name} not reported"
            );
        }
        assert_eq!(report.leftovers.len(), leftovers.len(), "{ctx}");
        // The live segments are untouched.
        assert_eq!(read_all(&log), all, "{ctx}");
        assert_eq!(log.segment_count(), 4, "{ctx}");
        common::check_every_offset(&log);
    }
}

/// Kafka's cleaner swaps a cleaned segment's transaction index with its `.log`: a
/// `.txnindex.swap` of a committed cleaning goes in place (the live one at its base holds
/// only the first merged segment's aborted transactions), one of a cleaning that had not
/// committed goes. Every index `.swap` used to be removed as one the log rebuilds.
#[test]
fn a_kafka_transaction_index_swap_goes_in_place_when_its_cleaning_committed() {
    for backend in backends() {
        let compacted = compacted();
        build(&backend, "t-0", compacted.clone());
        let entry = |first: i64, last: i64| common::aborted_txn_entry(7, first, last, last);
        let old_index = entry(2, 3);
        let merged = [entry(2, 3), entry(12, 13)].concat();
        write_file(
            &backend,
            &file(&backend, "t-0", "00000000000000000000.txnindex"),
            &old_index,
        );
        let swap = cleaned_odd_offsets();
        write_file(
            &backend,
            &file(&backend, "t-0", "00000000000000000000.log.swap"),
            &swap,
        );
        let txn_swap = file(&backend, "t-0", "00000000000000000000.txnindex.swap");
        write_file(&backend, &txn_swap, &merged);
        // A cleaning from 20 on that had not committed: its swaps go.
        write_file(
            &backend,
            &file(&backend, "t-0", "00000000000000000020.log.cleaned"),
            &[],
        );
        let undone = file(&backend, "t-0", "00000000000000000020.txnindex.swap");
        write_file(&backend, &undone, &entry(22, 23));

        let (log, report, ctx, names) = open_leftovers(&backend, compacted);
        let live = file(&backend, "t-0", "00000000000000000000.txnindex");
        assert_eq!(common::file_bytes(&backend, &live), merged, "{ctx}");
        assert!(report.leftovers.iter().any(|l| l.path == txn_swap), "{ctx}");
        assert!(report.leftovers.iter().any(|l| l.path == undone), "{ctx}");
        assert!(
            !names.iter().any(|n| n == "00000000000000000020.txnindex"),
            "{ctx}: {names:?}"
        );
        assert_eq!(log.segment_count(), 3, "{ctx}");
    }
}

/// Kafka renames a cleaned segment's `.log` to `.swap` first, then its indexes: a crash in
/// between leaves a `.log.swap` beside a `.txnindex.cleaned`, a cleaning that had not
/// committed, which Kafka's loader undoes (any `.cleaned` file counts). partlog counted a
/// `.log.cleaned` alone, and put the swap in with the transaction index of the first
/// segment only.
#[test]
fn a_kafka_swap_beside_a_cleaned_index_is_undone() {
    for backend in backends() {
        let all = build(&backend, "t-0", compacted());
        let log_swap = file(&backend, "t-0", "00000000000000000000.log.swap");
        write_file(&backend, &log_swap, &cleaned_odd_offsets());
        let txn_cleaned = file(&backend, "t-0", "00000000000000000000.txnindex.cleaned");
        write_file(
            &backend,
            &txn_cleaned,
            &common::aborted_txn_entry(7, 2, 3, 3),
        );

        let (log, report) = open(&backend, "t-0", compacted());
        let ctx = format!("{}: {report:?}", backend.name);
        assert_eq!(read_all(&log), all, "{ctx}");
        let names = file_names(&backend, &backend.root.join("t-0"));
        assert!(
            !names
                .iter()
                .any(|n| n.ends_with(".swap") || n.ends_with(".cleaned")),
            "{ctx}: {names:?}"
        );
        for path in [log_swap, txn_cleaned] {
            assert!(report.leftovers.iter().any(|l| l.path == path), "{ctx}");
        }
    }
}
