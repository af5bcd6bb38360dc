//! Retention by time, by size and by log start offset: old segments are renamed `.deleted`,
//! removed after `file_delete_delay_ms` (or on close / reopen), the active segment goes
//! last (an empty one takes its place), and reads below the new log start are out of range.

mod common;

use std::sync::Arc;

use common::{backends, batch, file_names, keyed_batch, options, read_all, small_config, Backend};
use partlog::log::Log;
use partlog::{CleanupPolicy, Clock, Error, LogConfig, ManualClock};

const DELAY_MS: i64 = 60_000;

fn open_with(backend: &Backend, name: &str, config: LogConfig) -> (Log, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let (log, _) = Log::open(options(backend, name, config, clock.clone())).unwrap();
    (log, clock)
}

fn config(retention_ms: i64, retention_bytes: i64) -> LogConfig {
    LogConfig {
        retention_ms,
        retention_bytes,
        file_delete_delay_ms: DELAY_MS,
        ..small_config()
    }
}

/// Appends `segments` segments of 5 two-record batches with timestamp `ts`, rolling after
/// before each but the first (the last one stays active).
fn fill(log: &Log, segments: usize, ts: i64) {
    for s in 0..segments {
        if s > 0 || log.segments().last().unwrap().size() > 0 {
            log.force_roll().unwrap();
        }
        for _ in 0..5 {
            log.append_as_leader(&mut batch(2, 40, ts), 1).unwrap();
        }
    }
}

fn deleted_files(backend: &Backend, name: &str) -> Vec<String> {
    file_names(backend, &backend.root.join(name))
        .into_iter()
        .filter(|n| n.ends_with(".deleted"))
        .collect()
}

fn assert_out_of_range(log: &Log, offset: i64) {
    assert!(
        matches!(
            log.read(offset, 100, None),
            Err(Error::OffsetOutOfRange { .. })
        ),
        "read {offset} below the log start {}",
        log.log_start_offset()
    );
}

#[test]
fn retention_by_time_deletes_expired_segments_after_a_delay() {
    for backend in backends() {
        let (log, clock) = open_with(&backend, "t-0", config(100_000, -1));
        fill(&log, 3, 10); // offsets 0..30, expired
        fill(&log, 2, 950_000); // offsets 30..50, fresh
        assert_eq!(log.segment_count(), 5);
        let outcome = log.delete_old_segments().unwrap();
        assert_eq!(outcome.segments_deleted, 3, "{}", backend.name);
        assert_eq!(log.log_start_offset(), 30);
        assert_eq!(log.segment_count(), 2);
        assert_out_of_range(&log, 0);
        assert_out_of_range(&log, 29);
        assert_eq!(read_all(&log).first(), Some(&(30, 31)));
        let deleted = deleted_files(&backend, "t-0");
        for base in [
            "00000000000000000000",
            "00000000000000000010",
            "00000000000000000020",
        ] {
            assert!(
                deleted.contains(&format!("{base}.log.deleted")),
                "{deleted:?}"
            );
        }
        // Not yet due.
        assert_eq!(log.remove_expired_deleted_files().unwrap(), 0);
        assert_eq!(deleted_files(&backend, "t-0"), deleted);
        clock.advance_ms(DELAY_MS);
        assert_eq!(log.remove_expired_deleted_files().unwrap(), deleted.len());
        assert!(deleted_files(&backend, "t-0").is_empty());
        assert_eq!(log.log_end_offset(), 50);
    }
}

/// The `.deleted` files go at the first retention pass after their delay, as Kafka
/// removes them on its own: nothing else in a running broker called for their removal,
/// and every segment retention or a cleaning ever deleted stayed on disk until a restart.
#[test]
fn a_retention_pass_removes_deleted_files_once_due() {
    for backend in backends() {
        let (log, clock) = open_with(&backend, "t-0", config(100_000, -1));
        fill(&log, 3, 10); // offsets 0..30, expired
        fill(&log, 2, 950_000);
        assert_eq!(log.delete_old_segments().unwrap().segments_deleted, 3);
        let deleted = deleted_files(&backend, "t-0");
        assert!(!deleted.is_empty());
        log.delete_old_segments().unwrap();
        assert_eq!(deleted_files(&backend, "t-0"), deleted, "not yet due");
        clock.advance_ms(DELAY_MS);
        log.delete_old_segments().unwrap();
        let left = deleted_files(&backend, "t-0");
        assert!(
            deleted.iter().all(|name| !left.contains(name)),
            "{}: {left:?}",
            backend.name
        );
    }
}

/// A `.deleted` file that cannot be removed does not hold retention up: the pass deletes
/// what is due and then reports the failed removal, which the next pass tries again. It
/// used to fail before the pass, every time, and the log grew for good.
#[test]
fn a_deleted_file_that_cannot_be_removed_does_not_stop_retention() {
    for backend in backends() {
        let (log, clock) = open_with(&backend, "t-0", config(100_000, -1));
        fill(&log, 3, 10); // offsets 0..30, expired
        fill(&log, 2, 950_000); // 30..50, expired once the clock moves on
        assert_eq!(log.delete_old_segments().unwrap().segments_deleted, 3);
        // One `.deleted` file becomes a dir with something in it: its removal fails.
        let stuck = backend
            .root
            .join("t-0")
            .join(&deleted_files(&backend, "t-0")[0]);
        backend.storage.remove_file(&stuck).unwrap();
        backend.storage.create_dir_all(&stuck.join("held")).unwrap();
        clock.advance_ms(DELAY_MS);
        let pass = log.delete_old_segments();
        assert!(pass.is_err(), "{}: {pass:?}", backend.name);
        assert_eq!(log.log_start_offset(), 50, "{}", backend.name);
        assert_out_of_range(&log, 49);
        // Once the file can go, the next pass removes it and reports no error.
        backend.storage.remove_dir(&stuck.join("held")).unwrap();
        backend.storage.remove_dir(&stuck).unwrap();
        log.delete_old_segments().unwrap();
    }
}

/// A log given a high watermark (by its replica) keeps every segment not wholly below it,
/// expired or not, whoever runs retention: the log's own pass reads the watermark under
/// the writer's lock, as Kafka's `deletableSegments` reads it under the log's.
#[test]
fn retention_keeps_segments_at_or_above_the_high_watermark() {
    for backend in backends() {
        let (log, _clock) = open_with(&backend, "t-0", config(100_000, -1));
        fill(&log, 4, 10); // 0..10, 10..20, 20..30, 30..40 (active), all expired
        log.set_high_watermark(15);
        assert_eq!(log.delete_old_segments().unwrap().segments_deleted, 1);
        assert_eq!(log.log_start_offset(), 10);
        assert_eq!(
            log.delete_old_segments_below(30).unwrap().segments_deleted,
            0
        );
        log.set_high_watermark(40);
        assert_eq!(log.delete_old_segments().unwrap().segments_deleted, 3);
        assert_eq!(log.log_start_offset(), 40, "{}", backend.name);
    }
}

/// An expired active segment goes too once every segment before it has, as in Kafka
/// (`deletableSegments` takes the last segment when it is not empty and the high
/// watermark reaches the log end; `deleteSegments` rolls an empty one first): an idle
/// partition does not keep its expired records for good, and its offsets go on from its
/// log end. Not while part of it lies at or above the limit (a replica's high watermark),
/// nor when it is empty.
#[test]
fn an_expired_active_segment_goes_once_it_is_below_the_limit() {
    for backend in backends() {
        let (log, clock) = open_with(&backend, "t-0", config(100_000, -1));
        fill(&log, 4, 10);
        clock.advance_ms(10_000_000);
        let outcome = log.delete_old_segments_below(39).unwrap();
        assert_eq!(outcome.segments_deleted, 3, "{}", backend.name);
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (30, 40));
        assert_eq!(read_all(&log).len(), 5, "the active segment holds 30..40");
        let outcome = log.delete_old_segments_below(40).unwrap();
        assert_eq!(outcome.segments_deleted, 1, "{}", backend.name);
        assert_eq!(log.segment_count(), 1);
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (40, 40));
        assert_out_of_range(&log, 39);
        assert!(read_all(&log).is_empty());
        assert_eq!(
            log.delete_old_segments().unwrap().segments_deleted,
            0,
            "empty"
        );
        let info = log.append_as_leader(&mut batch(1, 1, 0), 1).unwrap();
        assert_eq!(info.first_offset, 40);
        drop(log);
        let (log, _) = open_with(&backend, "t-0", config(100_000, -1));
        assert_eq!(log.log_end_offset(), 41, "{}", backend.name);
    }
}

#[test]
fn retention_by_size_keeps_at_least_retention_bytes() {
    for backend in backends() {
        let (log, _) = open_with(&backend, "t-0", config(-1, 0));
        fill(&log, 6, 10);
        let segment_bytes = log.segments()[0].size();
        assert!(log.segments().iter().all(|s| s.size() == segment_bytes));
        drop(log);
        let (log, _) = open_with(&backend, "t-0", config(-1, 3 * segment_bytes as i64));
        let outcome = log.delete_old_segments().unwrap();
        assert_eq!(outcome.segments_deleted, 3, "{}", backend.name);
        assert_eq!(outcome.bytes_deleted, 3 * segment_bytes);
        assert_eq!(log.size_bytes(), 3 * segment_bytes);
        assert_eq!(log.log_start_offset(), 30);
        assert_out_of_range(&log, 29);
        assert_eq!(log.delete_old_segments().unwrap().segments_deleted, 0);
    }
}

#[test]
fn retention_below_an_advanced_log_start() {
    for backend in backends() {
        let (log, _) = open_with(&backend, "t-0", config(-1, -1));
        fill(&log, 5, 10);
        log.advance_log_start_offset(25).unwrap();
        assert_eq!(log.log_start_offset(), 25);
        assert_out_of_range(&log, 24);
        let outcome = log.delete_old_segments().unwrap();
        // Segments 0..10 and 10..20 lie wholly below 25; 20..30 holds it.
        assert_eq!(outcome.segments_deleted, 2, "{}", backend.name);
        assert_eq!(log.log_start_offset(), 25);
        assert_eq!(log.segments()[0].base_offset(), 20);
        assert_out_of_range(&log, 24);
        let first = read_all(&log)[0];
        assert!(first.0 <= 25 && 25 <= first.1, "{first:?}");
        assert!(matches!(
            log.advance_log_start_offset(51),
            Err(Error::OffsetOutOfRange { .. })
        ));
        assert_eq!(log.log_start_offset(), 25);
    }
}

#[test]
fn deleted_files_go_on_close_and_on_reopen() {
    for backend in backends() {
        for close in [true, false] {
            let name = format!("t{close}-0");
            let (log, _) = open_with(&backend, &name, config(-1, -1));
            fill(&log, 4, 10);
            log.advance_log_start_offset(30).unwrap();
            assert_eq!(log.delete_old_segments().unwrap().segments_deleted, 3);
            assert_eq!(deleted_files(&backend, &name).len(), 9);
            if close {
                log.close().unwrap();
                assert!(
                    deleted_files(&backend, &name).is_empty(),
                    "{}",
                    backend.name
                );
            }
            drop(log);
            let (log, report) = common::open(&backend, &name, config(-1, -1));
            assert!(
                deleted_files(&backend, &name).is_empty(),
                "{}",
                backend.name
            );
            let expected_leftovers = if close { 0 } else { 9 };
            assert_eq!(report.leftovers.len(), expected_leftovers, "{report:?}");
            assert_eq!(log.segment_count(), 1);
            assert_eq!(log.log_end_offset(), 40);
            assert_eq!(read_all(&log).first(), Some(&(30, 31)));
        }
    }
}

/// A `.deleted` file that cannot be removed fails `close`, and stays pending with those
/// after it: the next close removes them. The failed close used to drop them all from
/// the list, and they stayed on disk until the log was reopened.
#[test]
fn a_close_that_cannot_remove_a_deleted_file_keeps_the_rest_for_the_next() {
    for backend in backends() {
        let (log, _) = open_with(&backend, "t-0", config(-1, -1));
        fill(&log, 4, 10);
        log.advance_log_start_offset(30).unwrap();
        assert_eq!(log.delete_old_segments().unwrap().segments_deleted, 3);
        // The first segment's first file becomes a dir with something in it.
        let stuck = (backend.root.join("t-0")).join(&deleted_files(&backend, "t-0")[0]);
        backend.storage.remove_file(&stuck).unwrap();
        backend.storage.create_dir_all(&stuck.join("held")).unwrap();
        assert!(log.close().is_err(), "{}", backend.name);
        // The stuck one and those after it (the removals go segment by segment).
        let left = deleted_files(&backend, "t-0").len();
        assert!(left > 1, "{}: {left}", backend.name);
        backend.storage.remove_dir(&stuck.join("held")).unwrap();
        backend.storage.remove_dir(&stuck).unwrap();
        log.close().unwrap();
        assert!(
            deleted_files(&backend, "t-0").is_empty(),
            "{}",
            backend.name
        );
    }
}

/// A batch whose records all carry timestamp -1 (no timestamp, as old clients write).
fn untimed_batch() -> Vec<u8> {
    let mut builder = partlog::record::BatchBuilder::new();
    for _ in 0..2 {
        builder.append(-1, None, Some(&[b'v'; 40]), &[]);
    }
    builder.build().unwrap()
}

/// Segments whose records have no timestamp counted as written at -1 ms and were deleted
/// by the first time-retention pass. They now age by the `.log` file's modification time.
#[test]
fn segments_without_timestamps_age_by_file_mtime_not_at_the_first_pass() {
    let (sim, disk) = common::sim_with_disk(3);
    let sim_clock = Arc::new(ManualClock::new(1_000_000));
    disk.set_clock(sim_clock.clone());
    let real = common::real();
    let real_clock = Arc::new(ManualClock::new(partlog::SystemClock.now_ms()));
    for (backend, clock) in [(sim, sim_clock), (real, real_clock)] {
        let config = config(10_000, -1);
        let (log, _) = Log::open(options(&backend, "t-0", config, clock.clone())).unwrap();
        for _ in 0..2 {
            for _ in 0..5 {
                log.append_as_leader(&mut untimed_batch(), 1).unwrap();
            }
            log.force_roll().unwrap();
        }
        assert_eq!(log.segments()[0].largest_timestamp().unwrap(), -1);
        let outcome = log.delete_old_segments().unwrap();
        assert_eq!(outcome.segments_deleted, 0, "{}", backend.name);
        assert_eq!(log.log_start_offset(), 0);
        clock.advance_ms(60_000);
        let outcome = log.delete_old_segments().unwrap();
        assert_eq!(outcome.segments_deleted, 2, "{}", backend.name);
        assert_eq!(log.log_start_offset(), 20);
    }
}

/// A segment without timestamps ages from its last append, not from its roll: the roll
/// cuts the zeros written ahead of the data off the `.log` file, and that cut used to
/// stamp the file's modification time, which put off its deletion by as long as the
/// segment took to fill. (The recovery of an unclean shutdown cuts them the same way.)
#[test]
fn a_roll_does_not_restart_the_age_of_a_segment_without_timestamps() {
    let (backend, disk) = common::sim_with_disk(5);
    let clock = Arc::new(ManualClock::new(1_000_000));
    disk.set_clock(clock.clone());
    let config = LogConfig {
        prefill: true,
        ..config(10_000, -1)
    };
    let (log, _) = Log::open(options(&backend, "t-0", config, clock.clone())).unwrap();
    for _ in 0..5 {
        log.append_as_leader(&mut untimed_batch(), 1).unwrap();
    }
    let written = log.segments()[0].modified_ms().unwrap();
    assert_eq!(written, 1_000_000);
    clock.advance_ms(8_000);
    log.force_roll().unwrap();
    assert_eq!(
        log.segments()[0].modified_ms().unwrap(),
        written,
        "the roll's cut"
    );
    log.append_as_leader(&mut untimed_batch(), 1).unwrap();
    clock.advance_ms(2_001); // 10,001 ms after the first segment's last append
    let outcome = log.delete_old_segments().unwrap();
    assert_eq!(outcome.segments_deleted, 1);
    assert_eq!(log.log_start_offset(), 10);
}

/// Time and size retention delete only where the cleanup policy says delete, as in Kafka:
/// a compact-only log (the consumer offsets) keeps its old segments, whose records may be
/// the latest of their keys, and loses only what lies below its log start. A
/// `compact,delete` log is deleted by time too.
#[test]
fn a_compact_only_log_keeps_its_old_segments() {
    for backend in backends() {
        for policy in [CleanupPolicy::Compact, CleanupPolicy::CompactDelete] {
            let name = format!("{policy:?}-0");
            let config = LogConfig {
                cleanup_policy: policy,
                ..config(100_000, 0)
            };
            let (log, clock) = open_with(&backend, &name, config);
            for s in 0..4 {
                if s > 0 {
                    log.force_roll().unwrap();
                }
                let key = format!("key-{s}").into_bytes();
                let mut b = keyed_batch(&[(key, Some(vec![b'v'; 40]))], 10);
                log.append_as_leader(&mut b, 1).unwrap();
            }
            clock.advance_ms(10_000_000);
            let deleted = log.delete_old_segments().unwrap().segments_deleted;
            if policy == CleanupPolicy::Compact {
                assert_eq!(deleted, 0, "{}", backend.name);
                assert_eq!(log.log_start_offset(), 0);
                log.advance_log_start_offset(2).unwrap();
                let outcome = log.delete_old_segments().unwrap();
                assert_eq!(outcome.segments_deleted, 2, "below the log start");
            } else {
                // Every segment, the active one too (an empty one takes its place).
                assert_eq!(deleted, 4, "{}", backend.name);
                assert_eq!(log.log_start_offset(), 4);
            }
            assert_eq!(log.log_end_offset(), 4);
        }
    }
}

/// A batch header of an old segment that cannot be read (a flipped bit in its magic byte,
/// past the time index's last entry) leaves the segment its time index's age, as Kafka's
/// `largestTimestamp` reads nothing else: retention deletes it when due. The error of
/// the header read failed every retention pass of the log, for good, and it grew until
/// the disk was full.
#[test]
fn a_damaged_header_in_an_old_segment_does_not_stop_retention() {
    let (backend, disk) = common::sim_with_disk(21);
    let name = "t-0";
    let (log, _) = open_with(&backend, name, config(10_000, -1));
    fill(&log, 3, 1_000_000);
    let end = log.log_end_offset();
    log.close().unwrap();
    drop(log);
    let first = backend.root.join(name).join("00000000000000000000.log");
    let batch_bytes = common::file_bytes(&backend, &first).len() as u64 / 5;
    disk.flip_bit(&first, 4 * batch_bytes + 16, 0).unwrap();
    // Shut down cleanly, recovered up to the end: the open reads no old segment.
    let clock = Arc::new(ManualClock::new(1_020_000));
    let (log, _) = Log::open(partlog::log::LogOpenOptions {
        clean_shutdown: true,
        recovery_point: Some(end),
        ..options(&backend, name, config(10_000, -1), clock)
    })
    .unwrap();
    assert_eq!(log.segments().len(), 3);
    let outcome = log.delete_old_segments().unwrap();
    assert_eq!(outcome.segments_deleted, 3, "{outcome:?}");
}
