//! Recovery rebuilds the indexes of a segment that was appended to across a clean reopen.
//!
//! What broke: the running count of bytes since the last index entry starts at zero in each
//! session, so a segment appended to before and after a clean reopen holds fewer index
//! entries than a rebuild from its first byte places. Rolling trims the index file to its
//! entries; a later crash recovery that rebuilt that segment's index into the trimmed file
//! ran out of room and failed the whole open with "index is full" (found by `partlog demo`).
//! The same happened to a rolled segment whose index files were missing. Recovery now gives
//! the indexes full room while rebuilding and trims them again afterwards.

mod common;

use std::sync::Arc;

use common::{backends, batch, options, read_all, Backend};
use partlog::log::{Log, LogOpenOptions};
use partlog::{LogConfig, ManualClock};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 20,
        index_bytes_max: 4096,
        // Every batch but the first of a session gets an index entry.
        index_interval_bytes: 100,
        ..LogConfig::default()
    }
}

fn open(backend: &Backend, clean: bool, recovery_point: Option<i64>) -> Log {
    let mut opts = options(
        backend,
        "t-0",
        config(),
        Arc::new(ManualClock::new(1_000_000)),
    );
    opts.clean_shutdown = clean;
    opts.recovery_point = recovery_point;
    Log::open(opts).expect("open log").0
}

fn append(log: &Log, batches: usize) {
    for i in 0..batches {
        let mut b = batch(1, 150, 1_000 + i as i64);
        log.append_as_leader(&mut b, 0).expect("append");
    }
}

#[test]
fn recovery_rebuilds_index_of_segment_appended_across_a_clean_reopen() {
    for backend in backends() {
        let log = open(&backend, false, None);
        append(&log, 5);
        log.close().unwrap();
        drop(log);
        let log = open(&backend, true, Some(5));
        append(&log, 5);
        log.force_roll().unwrap();
        append(&log, 2);
        let expected = read_all(&log);
        drop(log); // a crash: the first segment is recovered from the recovery point
        let log = open(&backend, false, Some(3));
        assert_eq!(read_all(&log), expected, "{}", backend.name);
        assert_eq!(log.log_end_offset(), 12, "{}", backend.name);
    }
}

/// Offsets 0..30 in a rolled segment and 30..32 in the active one, then a clean close;
/// returns what the log read before closing.
fn two_segments_closed(log: Log) -> Vec<(i64, i64)> {
    append(&log, 30);
    log.force_roll().unwrap();
    append(&log, 2);
    let expected = read_all(&log);
    log.close().unwrap();
    expected
}

/// A rolled segment whose index files are gone gets them rebuilt on first use (its empty
/// index used to have no room for the rebuilt entries).
#[test]
fn missing_indexes_of_a_rolled_segment_are_rebuilt() {
    let backend = common::real();
    let log = open(&backend, false, None);
    let expected = two_segments_closed(log);
    let dir = backend.root.join("t-0");
    for suffix in ["index", "timeindex"] {
        let path = dir.join(format!("00000000000000000000.{suffix}"));
        backend.storage.remove_file(&path).unwrap();
    }
    let log = open(&backend, true, Some(32));
    assert_eq!(read_all(&log), expected);
    let found = log.offset_for_timestamp(1_010).unwrap().map(|t| t.offset);
    assert_eq!(found, Some(10));
}

/// Indexes rebuilt on first use are durable at once (seed 9047543 of the log simulator).
/// The segment lies below the recovery point, so no later flush covers it, and after a
/// power loss recovery trusts whatever of the rebuilt entries reached the disk: a torn
/// time entry there sent timestamp lookups past the record they were after.
#[test]
fn indexes_rebuilt_on_first_use_are_durable_at_once() {
    let disk = partlog::io::sim::SimStorage::new(7);
    let open = |clean: bool, recovery_point: Option<i64>| {
        let opts = LogOpenOptions {
            config: config(),
            clock: Arc::new(ManualClock::new(1_000_000)),
            clean_shutdown: clean,
            recovery_point,
            ..LogOpenOptions::new(disk.storage(), "/data/t-0")
        };
        Log::open(opts).expect("open log").0
    };
    let log = open(false, None);
    let expected = two_segments_closed(log);
    let paths: Vec<std::path::PathBuf> = ["index", "timeindex"]
        .iter()
        .map(|suffix| format!("/data/t-0/00000000000000000000.{suffix}").into())
        .collect();
    for path in &paths {
        disk.remove_raw(path).unwrap();
    }
    let log = open(true, Some(32));
    assert_eq!(
        read_all(&log),
        expected,
        "the reads rebuild the first segment's indexes"
    );
    for path in &paths {
        let written = disk.read_raw(path).expect("rebuilt");
        assert!(written.len() >= 12, "{}: entries rebuilt", path.display());
        assert_eq!(disk.read_durable(path), Some(written), "{}", path.display());
    }
    drop(log);
    disk.crash();
    let log = open(false, Some(32));
    let found = log.offset_for_timestamp(1_010).unwrap().map(|t| t.offset);
    assert_eq!(found, Some(10));
}
