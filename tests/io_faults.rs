//! I/O failures on the simulated disk: a failed write or sync is a typed error, after which
//! the log refuses writes (`ReadOnly`) but still serves reads; a reopen after power loss
//! recovers everything that was flushed. A failed read is a typed error and nothing more.

mod common;

use common::{batch, check_every_offset, read_all, sim_with_disk, small_config, Backend};
use partlog::io::sim::{FaultKind, FaultPlan, SimOp, SimStorage, EIO};
use partlog::log::Log;
use partlog::Error;

/// 30 flushed batches (60 offsets over a few segments) and 3 written but unflushed.
fn build(backend: &Backend) -> (Log, Vec<(i64, i64)>) {
    let (log, _) = common::open(backend, "t-0", small_config());
    for i in 0..30 {
        log.append_as_leader(&mut batch(2, 60, i), 1).unwrap();
    }
    assert_eq!(log.flush().unwrap(), 60);
    let flushed = read_all(&log);
    for i in 0..3 {
        log.append_as_leader(&mut batch(2, 60, i), 1).unwrap();
    }
    (log, flushed)
}

/// Faults only for `.log` files, so index map write-backs do not count.
fn only_log_files(disk: &SimStorage) {
    disk.set_faults(FaultPlan {
        path_suffix: Some(".log".into()),
        ..FaultPlan::default()
    });
}

fn is_os_error(err: &Error, code: i32) -> bool {
    matches!(err, Error::Io { source, .. } if source.raw_os_error() == Some(code))
}

/// Checks that writes are refused; returns the refusal, which carries the first failure.
fn assert_read_only(log: &Log) -> Error {
    let err = log.append_as_leader(&mut batch(1, 1, 0), 1).unwrap_err();
    assert!(matches!(err, Error::ReadOnly { .. }), "{err:?}");
    assert!(matches!(log.flush(), Err(Error::ReadOnly { .. })));
    assert!(matches!(log.truncate_to(0), Err(Error::ReadOnly { .. })));
    err
}

/// Power loss, then a reopen: every flushed batch is back, and what else there is verifies.
fn crash_and_check(backend: &Backend, disk: &SimStorage, flushed: &[(i64, i64)]) {
    disk.clear_faults();
    disk.crash();
    let (log, report) = common::open(backend, "t-0", small_config());
    let all = read_all(&log);
    assert_eq!(all.get(..flushed.len()), Some(flushed), "{report:?}");
    assert!(log.log_end_offset() >= 60);
    check_every_offset(&log);
    let next = log.log_end_offset();
    assert_eq!(
        log.append_as_leader(&mut batch(1, 1, 0), 1)
            .unwrap()
            .first_offset,
        next
    );
}

/// The failed append's error, and the read-only refusal of a later write.
fn write_fault(kind: FaultKind) -> (Error, Error) {
    let (backend, disk) = sim_with_disk(5);
    let (log, flushed) = build(&backend);
    let end = log.log_end_offset();
    only_log_files(&disk);
    disk.fail_nth(SimOp::Write, 1, kind).unwrap();
    let err = log.append_as_leader(&mut batch(2, 60, 0), 1).unwrap_err();
    assert_eq!(
        log.log_end_offset(),
        end,
        "a failed append is not published"
    );
    let refusal = assert_read_only(&log);
    // Reads go on, up to the last published batch.
    assert_eq!(read_all(&log).len(), 33);
    check_every_offset(&log);
    crash_and_check(&backend, &disk, &flushed);
    (err, refusal)
}

#[test]
fn enospc_on_append_is_disk_full_and_makes_the_log_read_only() {
    let (err, refusal) = write_fault(FaultKind::Enospc);
    assert!(err.is_disk_full(), "{err:?}");
    // The refusal keeps its cause's kind: a broker tells a full disk from a failing one.
    assert!(refusal.is_disk_full(), "{refusal:?}");
}

#[test]
fn eio_on_append_makes_the_log_read_only() {
    let (err, refusal) = write_fault(FaultKind::Eio);
    assert!(is_os_error(&err, EIO), "{err:?}");
    assert!(!err.is_disk_full());
    match refusal {
        Error::ReadOnly { cause } => assert!(is_os_error(&cause, EIO), "{cause:?}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn eio_on_sync_fails_the_flush_and_keeps_the_recovery_point() {
    let (backend, disk) = sim_with_disk(6);
    let (log, flushed) = build(&backend);
    assert_eq!(log.recovery_point(), 60);
    only_log_files(&disk);
    disk.fail_nth(SimOp::Sync, 1, FaultKind::Eio).unwrap();
    let err = log.flush().unwrap_err();
    assert!(is_os_error(&err, EIO), "{err:?}");
    assert_eq!(log.recovery_point(), 60);
    assert_read_only(&log);
    assert_eq!(read_all(&log).len(), 33);
    crash_and_check(&backend, &disk, &flushed);
}

#[test]
fn eio_on_read_is_a_typed_error() {
    let (backend, disk) = sim_with_disk(7);
    let (log, _) = build(&backend);
    only_log_files(&disk);
    for offset in [0, 31, 64] {
        disk.fail_nth(SimOp::Read, 1, FaultKind::Eio).unwrap();
        let result = log
            .read(offset, 1 << 20, None)
            .and_then(|s| s.expect("data below the end").to_vec());
        let err = result.unwrap_err();
        assert!(is_os_error(&err, EIO), "read {offset}: {err:?}");
        // The fault was one-shot: the same read now works, and writes were not affected.
        assert!(!log.read(offset, 1 << 20, None).unwrap().unwrap().is_empty());
    }
    disk.fail_nth(SimOp::Read, 1, FaultKind::Eio).unwrap();
    let err = log.offset_for_timestamp(15).unwrap_err();
    assert!(is_os_error(&err, EIO), "{err:?}");
    // Batch i holds offsets 2i, 2i+1 with timestamps i, i+1.
    assert_eq!(log.offset_for_timestamp(15).unwrap().unwrap().offset, 29);
    log.append_as_leader(&mut batch(1, 1, 0), 1).unwrap();
    assert_eq!(read_all(&log).len(), 34);
}

/// A full disk does not keep a log from opening. Its active segment's indexes, which the
/// clean close trimmed, cannot grow back to full size (growth reserves their blocks): they
/// open as long as they are, full. The log serves reads and runs retention, which frees
/// space; an append on the full disk rolls, and the new segment's indexes, refused room,
/// fail it as a full disk, as before; once there is room, a reopened log appends. The
/// open failed, and with it every way to free space but deleting files by hand.
#[test]
fn a_log_opens_on_a_full_disk_and_its_retention_frees_space() {
    use partlog::{LogConfig, ManualClock};
    use std::sync::Arc;
    let (backend, disk) = sim_with_disk(31);
    let config = LogConfig {
        retention_ms: 10_000,
        ..small_config()
    };
    let open = |now: i64| {
        let clock = Arc::new(ManualClock::new(now));
        let options = common::options(&backend, "t-0", config.clone(), clock);
        Log::open(partlog::log::LogOpenOptions {
            clean_shutdown: true,
            ..options
        })
    };
    let (log, _) = open(1_000_000).unwrap();
    for i in 0..30 {
        log.append_as_leader(&mut batch(2, 60, 1_000_000), 1)
            .unwrap();
        if i == 20 {
            log.force_roll().unwrap();
        }
    }
    // The active segment's batches are young at the reopen; the others are past retention.
    log.force_roll().unwrap();
    log.append_as_leader(&mut batch(2, 60, 1_020_000), 1)
        .unwrap();
    let before = read_all(&log);
    let segments = log.segments().len();
    log.flush().unwrap();
    log.close().unwrap();
    drop(log);

    disk.set_faults(FaultPlan {
        write_enospc: 1.0,
        path_suffix: Some("index".into()),
        ..FaultPlan::default()
    });
    let (log, _) = open(1_020_000).expect("opens on a full disk");
    assert_eq!(read_all(&log), before);
    let outcome = log.delete_old_segments().unwrap();
    assert_eq!(outcome.segments_deleted, segments - 1, "{outcome:?}");
    let err = log
        .append_as_leader(&mut batch(1, 1, 1_020_000), 1)
        .unwrap_err();
    assert!(err.is_disk_full(), "{err:?}");
    drop(log);

    disk.clear_faults();
    let (log, _) = open(1_020_000).unwrap();
    log.append_as_leader(&mut batch(1, 1, 1_020_000), 1)
        .unwrap();
}
