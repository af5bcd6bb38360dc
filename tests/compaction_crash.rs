//! A power loss at every step of a cleaning: at each write, sync, directory sync, rename
//! and file creation the cleaning makes, in turn, the disk crashes (losing what was not
//! synced). The log then reopens (recovery finishing or undoing the swap) to one that reads
//! exactly as before the cleaning or as after it, and a new cleaning from there ends at
//! the same log as the cleaning that was not interrupted.

mod common;

use std::sync::Arc;

use common::{keyed_batch, log_records};
use partlog::checkpoint::TopicPartition;
use partlog::cleaner::{CleanOutcome, Cleaner, CleanerConfig};
use partlog::io::sim::{FaultKind, SimCounters, SimOp, SimStorage};
use partlog::log::Log;
use partlog::manager::{LogDir, LogDirOptions};
use partlog::{CleanupPolicy, LogConfig, ManualClock};

type Records = Vec<common::LogRecord>;

const NOW: i64 = 5_000_000;

fn open(disk: &Arc<SimStorage>) -> (LogDir, Arc<Log>) {
    try_open(disk).expect("open")
}

fn try_open(disk: &Arc<SimStorage>) -> partlog::Result<(LogDir, Arc<Log>)> {
    let options = LogDirOptions {
        config: LogConfig {
            cleanup_policy: CleanupPolicy::Compact,
            segment_bytes: 1500,
            index_bytes_max: 1024,
            index_interval_bytes: 256,
            min_cleanable_dirty_ratio: 0.0,
            ..LogConfig::default()
        },
        clock: Arc::new(ManualClock::new(NOW)),
    };
    let dir = LogDir::open(disk.storage(), "/data", options)?;
    let (log, _) = dir.open_log(&TopicPartition::new("c", 0))?;
    Ok((dir, log))
}

/// A log of several segments with keys written over and over and a few tombstones, all
/// durable; cleaned once before, so that the cleaning under test also rewrites a clean
/// head and drops tombstones whose horizon passed.
fn setup() -> (Arc<SimStorage>, Cleaner) {
    setup_with(11)
}

/// [`setup`] on a disk whose crashes keep a prefix of the unsynced work chosen by `seed`.
fn setup_with(seed: u64) -> (Arc<SimStorage>, Cleaner) {
    let disk = SimStorage::new(seed);
    let cleaner = Cleaner::new(CleanerConfig::default());
    let (dir, log) = open(&disk);
    for round in 0..2 {
        for i in 0..40 {
            // The second round writes over only some keys: tombstones of the first stay.
            let key = match round {
                0 => format!("k{}", (i * 7) % 13),
                _ => format!("k{}", i % 6),
            }
            .into_bytes();
            let value = (i % 9 != 0).then(|| format!("value {round}-{i}").into_bytes());
            let mut batch = keyed_batch(&[(key, value)], NOW - 100_000);
            log.append_as_leader(&mut batch, 0).expect("append");
        }
        log.force_roll().expect("roll");
        let now = NOW - 200_000_000 + round as i64 * 100_000_000;
        if round == 0 {
            assert!(matches!(
                cleaner.clean_once(&dir, now).expect("clean"),
                CleanOutcome::Cleaned { .. }
            ));
        }
    }
    dir.close().expect("close");
    (disk, cleaner)
}

fn clean_until_idle(cleaner: &Cleaner, dir: &LogDir) {
    while let CleanOutcome::Cleaned { .. } = cleaner.clean_once(dir, NOW).expect("clean") {}
}

fn ops(c: SimCounters) -> [(SimOp, u64); 5] {
    [
        (SimOp::Write, c.writes),
        (SimOp::Sync, c.syncs),
        (SimOp::SyncDir, c.sync_dirs),
        (SimOp::Rename, c.renames),
        (SimOp::Create, c.creates),
    ]
}

/// The uninterrupted cleaning: what the log reads before and after it, and the disk's
/// counters around it (its steps).
struct Reference {
    before: Records,
    after: Records,
    start: SimCounters,
    end: SimCounters,
}

fn reference() -> Reference {
    let (disk, cleaner) = setup();
    let (dir, log) = open(&disk);
    let before: Records = log_records(&log);
    let start = disk.counters();
    let CleanOutcome::Cleaned { report, .. } = cleaner.clean_once(&dir, NOW).expect("clean") else {
        panic!("the log needs cleaning");
    };
    let end = disk.counters();
    let after: Records = log_records(&log);
    assert_ne!(before, after, "the cleaning changes the log");
    assert!(report.records.tombstones_dropped > 0, "{report:?}");
    assert!(report.records.superseded > 0, "{report:?}");
    Reference {
        before,
        after,
        start,
        end,
    }
}

#[test]
fn a_crash_at_any_step_of_a_cleaning_reads_as_before_or_after_it() {
    let Reference {
        before,
        after,
        start,
        end,
    } = reference();

    let mut crashes = 0;
    for ((op, from), (_, to)) in ops(start).into_iter().zip(ops(end)) {
        for n in 1..=(to - from) {
            let (disk, cleaner) = setup();
            let (dir, log) = open(&disk);
            // As the reference did: reading loads (and so creates) the segments' indexes,
            // whose files the swap then renames too.
            assert_eq!(log_records(&log), before);
            disk.fail_nth(op, n, FaultKind::Crash).expect("arm");
            let outcome = cleaner.clean_once(&dir, NOW);
            assert!(
                disk.counters().crashes > 0,
                "{op:?} #{n} did not crash: {outcome:?}"
            );
            // A cleaning the disk crashed under does not report itself done.
            assert!(
                !matches!(outcome, Ok(CleanOutcome::Cleaned { .. })),
                "{op:?} #{n}: {outcome:?}"
            );
            crashes += 1;
            drop((dir, log));
            let (dir, log) = open(&disk);
            let reopened = log_records(&log);
            assert!(
                reopened == before || reopened == after,
                "crash at {op:?} #{n}: the log reads as neither before nor after the cleaning"
            );
            clean_until_idle(&Cleaner::new(CleanerConfig::default()), &dir);
            assert_eq!(
                log_records(&log),
                after,
                "crash at {op:?} #{n}: cleaning again"
            );
        }
    }
    assert!(crashes >= 8, "only {crashes} steps");
}

/// A power loss at every step of a cleaning, then another at every step of the recovery
/// that finishes or undoes it, on disks that keep different prefixes of the unsynced
/// work: the log still reads as before or after the cleaning. Recovery removed the
/// `.cleaned` files that mark a cleaning as uncommitted before its swaps, with no sync
/// between: a crash could keep the first removal and not the second, and the next open
/// took the swaps left for committed and put part of the cleaning in.
#[test]
fn a_crash_while_recovery_finishes_a_cleaning_reads_as_before_or_after_it() {
    let Reference {
        before,
        after,
        start,
        end,
    } = reference();

    // The disk after a crash at `op` #`n` of the cleaning.
    let crashed_cleaning = |seed: u64, op: SimOp, n: u64| {
        let (disk, cleaner) = setup_with(seed);
        let (dir, log) = open(&disk);
        assert_eq!(log_records(&log), before);
        disk.fail_nth(op, n, FaultKind::Crash).expect("arm");
        let _ = cleaner.clean_once(&dir, NOW);
        assert!(disk.counters().crashes > 0, "{op:?} #{n} did not crash");
        drop((dir, log));
        disk
    };
    let mut recovery_crashes = 0;
    for seed in [11, 12, 13] {
        for ((op, from), (_, to)) in ops(start).into_iter().zip(ops(end)) {
            for n in 1..=(to - from) {
                // How many steps of each kind the recovery takes.
                let disk = crashed_cleaning(seed, op, n);
                let opened = disk.counters();
                let (dir, log) = open(&disk);
                let recovery = ops(disk.counters()).into_iter().zip(ops(opened));
                let steps: Vec<(SimOp, u64)> =
                    recovery.map(|((r, b), (_, a))| (r, b - a)).collect();
                drop((dir, log));
                for (rop, count) in steps {
                    for m in 1..=count {
                        let disk = crashed_cleaning(seed, op, n);
                        disk.fail_nth(rop, m, FaultKind::Crash).expect("arm");
                        let crashes = disk.counters().crashes;
                        let _ = try_open(&disk);
                        assert!(disk.counters().crashes > crashes, "{rop:?} #{m}");
                        recovery_crashes += 1;
                        let (_, log) = open(&disk);
                        let reopened = log_records(&log);
                        assert!(
                            reopened == before || reopened == after,
                            "seed {seed}: crash at {op:?} #{n} of the cleaning, then at \
                             {rop:?} #{m} of its recovery: the log reads as neither before \
                             nor after the cleaning"
                        );
                    }
                }
            }
        }
    }
    assert!(
        recovery_crashes >= 20,
        "only {recovery_crashes} crashes in recovery"
    );
}

/// DeleteRecords moves the log start above a key's old value; the cleaner drops the key's
/// tombstone once its horizon passed; the power fails before the log dir wrote the new log
/// start down: the log opens at its old start, and the old value must not be back. The
/// cleaner used to leave segments wholly below the log start as they were, so the value
/// outlived its tombstone there; it now cleans down to the durable log start, as Kafka's
/// cleaner cleans every segment. Also when the new start passes the tombstone itself: the
/// map pass began at the log start, and never saw it.
#[test]
fn a_crash_before_the_log_start_is_checkpointed_brings_no_value_back_from_below_it() {
    for past_the_tombstone in [0, 1] {
        crash_before_the_log_start_is_checkpointed(past_the_tombstone);
    }
}

fn crash_before_the_log_start_is_checkpointed(past_the_tombstone: i64) {
    let disk = SimStorage::new(5);
    let cleaner = Cleaner::new(CleanerConfig::default());
    let (dir, log) = open(&disk);
    let fill = |log: &Log, round: &str| {
        for i in 0..20 {
            let key = format!("{round}-{i}").into_bytes();
            let mut batch = keyed_batch(&[(key, Some(b"filler".to_vec()))], NOW);
            log.append_as_leader(&mut batch, 0).expect("append");
        }
        log.force_roll().expect("roll");
    };
    let mut batch = keyed_batch(&[(b"gone".to_vec(), Some(b"old value".to_vec()))], NOW);
    log.append_as_leader(&mut batch, 0).expect("append");
    fill(&log, "a");
    let start = log.log_end_offset();
    let mut batch = keyed_batch(&[(b"gone".to_vec(), None)], NOW);
    log.append_as_leader(&mut batch, 0).expect("append");
    fill(&log, "b");
    disk.sync_all();
    log.advance_log_start_offset(start + past_the_tombstone)
        .expect("delete records");

    // The first cleaning sets the tombstone's horizon; the one after it drops it.
    let day = LogConfig::default().delete_retention_ms;
    for (round, now) in [("c", NOW), ("d", NOW + day + 1)] {
        assert!(matches!(
            cleaner.clean_once(&dir, now).expect("clean"),
            CleanOutcome::Cleaned { .. }
        ));
        fill(&log, round);
    }
    let of_gone = |r: &common::LogRecord| r.1.as_deref() == Some(b"gone".as_slice());
    assert!(
        !log_records(&log).iter().any(of_gone),
        "the tombstone and the old value went"
    );

    disk.crash();
    drop((dir, log));
    let (_dir, log) = open(&disk);
    assert_eq!(
        log.log_start_offset(),
        0,
        "the new start was never written down"
    );
    let records = log_records(&log);
    assert!(
        !records.iter().any(of_gone),
        "the old value of a deleted key came back: {:?}",
        records.iter().find(|r| of_gone(r))
    );
}

/// A `.cleaned` file an earlier cleaning could not remove (its removal failed) at a base
/// none of this cleaning's copies has: a crash during this cleaning's swap used to leave
/// it for recovery, which took it for this cleaning's mark of an unfinished swap and undid
/// the swaps above it, after their old segments had gone to `.deleted` and were removed:
/// their offsets were lost. The swap now removes such a file first.
#[test]
fn a_stray_cleaned_file_does_not_undo_a_swap_whose_old_segments_went() {
    let stray = std::path::Path::new("/data/c-0/00000000000000000001.log.cleaned");
    // The cleaning with the stray file in the dir; its steps counted.
    let run = |crash: Option<(SimOp, u64)>| {
        let (disk, cleaner) = setup();
        let (dir, log) = open(&disk);
        disk.write_raw(stray, b"left by an earlier cleaning")
            .expect("stray");
        let before = log_records(&log);
        let start = disk.counters();
        if let Some((op, n)) = crash {
            disk.fail_nth(op, n, FaultKind::Crash).expect("arm");
        }
        let outcome = cleaner.clean_once(&dir, NOW);
        (disk, dir, log, before, start, outcome)
    };
    let (disk, _dir, log, before, start, outcome) = run(None);
    let end = disk.counters();
    assert!(matches!(outcome, Ok(CleanOutcome::Cleaned { .. })));
    let after = log_records(&log);
    for ((op, from), (_, to)) in ops(start).into_iter().zip(ops(end)) {
        for n in 1..=(to - from) {
            let (disk, dir, log, _, _, _) = run(Some((op, n)));
            assert!(disk.counters().crashes > 0, "{op:?} #{n} did not crash");
            drop((dir, log));
            let (_, log) = open(&disk);
            let reopened = log_records(&log);
            assert!(
                reopened == before || reopened == after,
                "crash at {op:?} #{n}: the log reads as neither before nor after the cleaning"
            );
        }
    }
}
