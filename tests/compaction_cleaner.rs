//! The cleaner across partitions: which log it picks, the bounds it respects (high
//! watermark, `min.compaction.lag.ms`, `max.compaction.lag.ms`), its checkpoint, a failure
//! that marks one partition uncleanable without stopping the others, and the background
//! thread, and segments left below a log start that moved.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{keyed_batch, log_records};
use partlog::checkpoint::TopicPartition;
use partlog::cleaner::{cleanable, CleanOutcome, Cleaner, CleanerConfig};
use partlog::io::sim::{FaultKind, FaultPlan, SimCounters, SimOp, SimStorage};
use partlog::log::Log;
use partlog::manager::{LogDir, LogDirOptions};
use partlog::{CleanupPolicy, LogConfig, ManualClock};

const NOW: i64 = 10_000_000;

fn config() -> LogConfig {
    LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        segment_bytes: 1024,
        index_bytes_max: 1024,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

fn dir(disk: &Arc<SimStorage>, config: LogConfig) -> LogDir {
    let options = LogDirOptions {
        config,
        clock: Arc::new(ManualClock::new(NOW)),
    };
    LogDir::open(disk.storage(), "/data", options).unwrap()
}

/// `rounds` passes over `keys` keys, each record its own batch, timestamps `ts`; rolled.
fn fill(log: &Log, keys: usize, rounds: usize, ts: i64) {
    for round in 0..rounds {
        for k in 0..keys {
            let record = (
                format!("k{k}").into_bytes(),
                Some(format!("v{round}").into_bytes()),
            );
            log.append_as_leader(&mut keyed_batch(&[record], ts), 0)
                .unwrap();
        }
    }
    log.force_roll().unwrap();
}

fn keys_of(log: &Log) -> usize {
    log_records(log).len()
}

#[test]
fn the_dirtiest_log_goes_first_and_the_checkpoint_remembers_where_it_stopped() {
    let disk = SimStorage::new(1);
    let dir = dir(&disk, config());
    let cleaner = Cleaner::new(CleanerConfig::default());
    let (a, _) = dir.open_log(&TopicPartition::new("a", 0)).unwrap();
    let (b, _) = dir.open_log(&TopicPartition::new("b", 0)).unwrap();
    fill(&a, 5, 2, NOW); // half dirty
    fill(&b, 5, 8, NOW); // mostly dirty
                         // Both start fully dirty (ratio 1): b has more bytes of it; a first clean of each.
    let first = cleaner.clean_once(&dir, NOW).unwrap();
    let CleanOutcome::Cleaned {
        partition, report, ..
    } = first
    else {
        panic!("{first:?}");
    };
    assert_eq!(report.first_dirty, 0);
    let cleaned = dir.log(&partition).unwrap();
    assert_eq!(keys_of(&cleaned), 5);
    assert_eq!(
        dir.cleaner_offset(&partition),
        Some(report.end_offset),
        "checkpointed"
    );
    let second = cleaner.clean_once(&dir, NOW).unwrap();
    assert!(matches!(second, CleanOutcome::Cleaned { .. }), "{second:?}");
    assert!(matches!(
        cleaner.clean_once(&dir, NOW).unwrap(),
        CleanOutcome::Idle
    ));
    assert_eq!((keys_of(&a), keys_of(&b)), (5, 5));

    // New writes to `a` only: dirty again, above the 0.5 ratio.
    fill(&a, 5, 4, NOW);
    let range = cleanable(&a, dir.cleaner_offset(&TopicPartition::new("a", 0)), NOW).unwrap();
    assert!(range.dirty_ratio() > 0.5, "{range:?}");
    let CleanOutcome::Cleaned { partition, .. } = cleaner.clean_once(&dir, NOW).unwrap() else {
        panic!("a is dirty");
    };
    assert_eq!(partition.topic, "a");
    // The checkpoint survives a restart.
    let end = dir.cleaner_offset(&partition);
    drop((a, b));
    dir.close().unwrap();
    let dir = self::dir(&disk, config());
    assert_eq!(dir.cleaner_offset(&partition), end);
}

#[test]
fn cleaning_stops_at_the_high_watermark_and_the_compaction_lags() {
    let disk = SimStorage::new(2);
    let lagged = LogConfig {
        min_compaction_lag_ms: 60_000,
        ..config()
    };
    let dir = dir(&disk, lagged);
    let cleaner = Cleaner::new(CleanerConfig::default());
    let (log, _) = dir.open_log(&TopicPartition::new("t", 0)).unwrap();
    fill(&log, 4, 3, NOW - 120_000); // old enough
    let old_end = log.log_end_offset();
    fill(&log, 4, 3, NOW); // too young to compact
    let range = cleanable(&log, None, NOW).unwrap();
    assert!(range.first_uncleanable <= old_end, "{range:?}");
    while let CleanOutcome::Cleaned { .. } = cleaner.clean_once(&dir, NOW).unwrap() {}
    let records = log_records(&log);
    let young = records.iter().filter(|r| r.0 >= old_end).count();
    assert_eq!(young, 12, "young records are all kept");
    assert_eq!(records.len() - young, 4, "old ones are compacted");

    // A replica's high watermark bounds the cleaning too.
    log.set_high_watermark(old_end);
    let later = NOW + 3_600_000;
    let range = cleanable(
        &log,
        dir.cleaner_offset(&TopicPartition::new("t", 0)),
        later,
    )
    .unwrap();
    assert!(range.first_uncleanable <= old_end, "{range:?}");
    log.set_high_watermark(i64::MAX);
    let range = cleanable(
        &log,
        dir.cleaner_offset(&TopicPartition::new("t", 0)),
        later,
    )
    .unwrap();
    assert!(range.first_uncleanable > old_end, "{range:?}");
}

/// Records without timestamps (-1, as old clients write) age by their segment's file time
/// under `min_compaction_lag_ms`, and tell nothing under `max_compaction_lag_ms`, as in
/// Kafka (`largestTimestamp`, and first-batch timestamps above 0 only): counted as older
/// than any lag, a segment written a moment ago was cleaned at once, and the log counted
/// overdue at any dirty ratio.
#[test]
fn records_without_timestamps_age_by_their_segments_file_time() {
    let disk = SimStorage::new(12);
    disk.set_clock(Arc::new(ManualClock::new(NOW)));
    let lagged = LogConfig {
        min_compaction_lag_ms: 60_000,
        max_compaction_lag_ms: 60_000,
        min_cleanable_dirty_ratio: 0.99,
        ..config()
    };
    let dir = dir(&disk, lagged);
    let (log, _) = dir.open_log(&TopicPartition::new("t", 0)).unwrap();
    fill(&log, 4, 3, -1);
    let range = cleanable(&log, None, NOW).unwrap();
    assert_eq!(range.first_uncleanable, range.first_dirty, "{range:?}");
    assert!(!range.overdue, "{range:?}");
    // Once the files are older than the lag, they are cleanable.
    let range = cleanable(&log, None, NOW + 120_000).unwrap();
    assert!(range.first_uncleanable > range.first_dirty, "{range:?}");
    assert!(!range.overdue, "{range:?}");
}

/// The compaction lag holds from the segment that holds the first dirty offset: one that
/// an earlier cleaning left dirty past its base (it ended at an open transaction, or its
/// map filled) counts too, as in Kafka (`cleanableOffsets` takes the segments from the
/// one holding the first dirty offset). Only the segments starting at or past it were
/// asked, so young records between the first dirty offset and the next segment were
/// cleaned when the next segment was young too.
#[test]
fn the_compaction_lag_counts_the_segment_holding_the_first_dirty_offset() {
    let disk = SimStorage::new(3);
    let lagged = LogConfig {
        min_compaction_lag_ms: 60_000,
        ..config()
    };
    let dir = dir(&disk, lagged);
    let (log, _) = dir.open_log(&TopicPartition::new("t", 0)).unwrap();
    fill(&log, 4, 6, NOW); // young, over several segments
    fill(&log, 4, 1, NOW);
    let segments = log.segments();
    assert!(segments.len() >= 4, "{}", segments.len());
    let (first, second) = (segments[0].base_offset(), segments[1].base_offset());
    assert!(second - first >= 2, "room for a first dirty offset inside");
    let checkpoint = first + 1;
    let range = cleanable(&log, Some(checkpoint), NOW).unwrap();
    assert_eq!(range.first_dirty, checkpoint);
    assert_eq!(range.first_uncleanable, checkpoint, "{range:?}");
    // Old enough, the same range is cleanable.
    let range = cleanable(&log, Some(checkpoint), NOW + 120_000).unwrap();
    assert!(range.first_uncleanable > second, "{range:?}");
}

#[test]
fn an_overdue_log_is_cleaned_below_the_dirty_ratio() {
    let disk = SimStorage::new(3);
    let overdue = LogConfig {
        max_compaction_lag_ms: 1_000,
        min_cleanable_dirty_ratio: 0.99,
        ..config()
    };
    let dir = dir(&disk, overdue);
    let cleaner = Cleaner::new(CleanerConfig::default());
    let (log, _) = dir.open_log(&TopicPartition::new("t", 0)).unwrap();
    fill(&log, 10, 1, NOW - 5_000);
    while let CleanOutcome::Cleaned { .. } = cleaner.clean_once(&dir, NOW).unwrap() {}
    fill(&log, 10, 1, NOW - 5_000); // ratio 0.5 < 0.99, but older than the max lag
    let range = cleanable(&log, dir.cleaner_offset(&TopicPartition::new("t", 0)), NOW).unwrap();
    assert!(range.overdue && range.dirty_ratio() < 0.99, "{range:?}");
    assert!(matches!(
        cleaner.clean_once(&dir, NOW).unwrap(),
        CleanOutcome::Cleaned { .. }
    ));
    assert_eq!(keys_of(&log), 10);
}

#[test]
fn a_failing_partition_is_marked_uncleanable_and_the_others_go_on() {
    let disk = SimStorage::new(4);
    let dir = dir(&disk, config());
    let cleaner = Cleaner::new(CleanerConfig::default());
    let (bad, _) = dir.open_log(&TopicPartition::new("bad", 0)).unwrap();
    let (good, _) = dir.open_log(&TopicPartition::new("good", 0)).unwrap();
    fill(&bad, 5, 8, NOW);
    fill(&good, 5, 4, NOW);
    // Writes of the bad partition's cleaned copy fail.
    disk.set_faults(FaultPlan {
        path_suffix: Some(".cleaned".into()),
        ..FaultPlan::default()
    });
    disk.fail_nth(SimOp::Write, 1, FaultKind::Eio).unwrap();
    let outcome = cleaner.clean_once(&dir, NOW).unwrap();
    let CleanOutcome::Failed { partition, reason } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(partition.topic, "bad");
    assert!(!reason.is_empty());
    assert_eq!(cleaner.uncleanable(), vec![(partition.clone(), reason)]);
    assert!(!disk
        .storage()
        .exists(Path::new("/data/bad-0/00000000000000000000.log.cleaned")));
    let before = log_records(&bad);
    // The other partition is cleaned; the bad one is skipped, and reads as before.
    let outcome = cleaner.clean_once(&dir, NOW).unwrap();
    assert!(
        matches!(&outcome, CleanOutcome::Cleaned { partition, .. } if partition.topic == "good"),
        "{outcome:?}"
    );
    assert!(matches!(
        cleaner.clean_once(&dir, NOW).unwrap(),
        CleanOutcome::Idle
    ));
    assert_eq!(log_records(&bad), before);
    // Forgiven, it is cleaned.
    cleaner.forgive(&partition);
    assert!(matches!(
        cleaner.clean_once(&dir, NOW).unwrap(),
        CleanOutcome::Cleaned { .. }
    ));
    assert_eq!(keys_of(&bad), 5);
}

/// A cleaning whose copy fails as it is created (here, emptying a copy an earlier failure
/// left) removes it: left, a `.cleaned` file marks a later cleaning's swap at or above its
/// base as unfinished, and a crash during that swap would make recovery undo the swap
/// after its originals were renamed away.
#[test]
fn a_copy_that_fails_as_it_is_created_is_removed() {
    let disk = SimStorage::new(6);
    let dir = dir(&disk, config());
    let cleaner = Cleaner::new(CleanerConfig::default());
    let (log, _) = dir.open_log(&TopicPartition::new("t", 0)).unwrap();
    fill(&log, 5, 8, NOW);
    let copy = Path::new("/data/t-0/00000000000000000000.log.cleaned");
    disk.write_raw(copy, b"an earlier copy").unwrap();
    disk.set_faults(FaultPlan {
        path_suffix: Some(".cleaned".into()),
        ..FaultPlan::default()
    });
    disk.fail_nth(SimOp::Write, 1, FaultKind::Eio).unwrap();
    let outcome = cleaner.clean_once(&dir, NOW).unwrap();
    assert!(
        matches!(outcome, CleanOutcome::Failed { .. }),
        "{outcome:?}"
    );
    assert!(!disk.storage().exists(copy));
}

#[test]
fn the_background_thread_cleans_until_stopped() {
    let disk = SimStorage::new(5);
    let dir = Arc::new(dir(&disk, config()));
    let (log, _) = dir.open_log(&TopicPartition::new("t", 0)).unwrap();
    fill(&log, 6, 10, NOW);
    let cleaner = Arc::new(Cleaner::new(CleanerConfig {
        io_max_bytes_per_second: 1e9,
        backoff: Duration::from_millis(5),
        ..CleanerConfig::default()
    }));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let seen = outcomes.clone();
    let clock = Arc::new(ManualClock::new(NOW));
    let thread = cleaner.spawn(dir.clone(), clock, move |o| {
        seen.lock()
            .unwrap()
            .push(o.map(|o| matches!(o, CleanOutcome::Cleaned { .. })));
    });
    let started = std::time::Instant::now();
    while keys_of(&log) != 6 {
        assert!(started.elapsed() < Duration::from_secs(20), "never cleaned");
        std::thread::sleep(Duration::from_millis(5));
    }
    thread.stop();
    let outcomes = outcomes.lock().unwrap();
    assert!(outcomes.iter().any(|o| matches!(o, Ok(true))));
    assert!(outcomes.iter().all(|o| o.is_ok()));
}

/// Two cleaners on one log dir never clean one log at once: they would write the same
/// `.cleaned` files. The second one finds the log claimed and reports an aborted cleaning.
#[test]
fn one_cleaning_at_a_time_per_log() {
    let disk = SimStorage::new(6);
    let dir = dir(&disk, config());
    let (log, _) = dir.open_log(&TopicPartition::new("t", 0)).unwrap();
    fill(&log, 5, 4, NOW);
    let claim = log.begin_cleaning().expect("free");
    assert!(log.begin_cleaning().is_none(), "claimed once already");
    let other = Cleaner::new(CleanerConfig::default());
    match other.clean_once(&dir, NOW).unwrap() {
        CleanOutcome::Cleaned { report, .. } => assert!(report.aborted, "{report:?}"),
        outcome => panic!("{outcome:?}"),
    }
    assert!(dir.cleaner_offset(&TopicPartition::new("t", 0)).is_none());
    drop(claim);
    match other.clean_once(&dir, NOW).unwrap() {
        CleanOutcome::Cleaned { report, .. } => assert!(!report.aborted, "{report:?}"),
        outcome => panic!("{outcome:?}"),
    }
    assert_eq!(keys_of(&log), 5);
}

/// A truncation below the cleaner checkpoint (a follower cutting its log) makes what lies
/// above it dirty again, as Kafka lowers the checkpoint: records fetched again there
/// supersede older ones below, and the next cleaning removes those.
#[test]
fn a_truncation_below_the_checkpoint_makes_the_range_dirty_again_also_after_a_restart() {
    let disk = SimStorage::new(7);
    let (dir, cleaner, log) = eager_dir(&disk);
    let tp = TopicPartition::new("t", 0);
    // Keys k0..k9 once, then k10..k19 three times: cleaned, the checkpoint is at the end.
    fill(&log, 10, 1, NOW);
    let middle = log.log_end_offset();
    for round in 0..3 {
        for k in 10..20 {
            let record = (
                format!("k{k}").into_bytes(),
                Some(format!("v{round}").into_bytes()),
            );
            log.append_as_leader(&mut keyed_batch(&[record], NOW), 0)
                .unwrap();
        }
    }
    log.force_roll().unwrap();
    while let CleanOutcome::Cleaned { .. } = cleaner.clean_once(&dir, NOW).unwrap() {}
    assert_eq!(keys_of(&log), 20);
    let checkpoint = dir.cleaner_offset(&tp).unwrap();
    assert!(checkpoint > middle);

    // Cut back to the middle and write k0..k9 again there (as a follower would).
    log.truncate_to(middle).unwrap();
    assert_eq!(log.truncated_to(), middle);
    assert_eq!(
        dir.cleaner_offset(&tp),
        Some(middle),
        "taken back with the cut"
    );
    fill(&log, 10, 1, NOW);
    while log.log_end_offset() < checkpoint {
        fill(&log, 10, 1, NOW);
    }
    // A restart before any cleaning: only the checkpoint remembers the cut. It stayed
    // past it, in memory only the log's note of the cut did, and the range between was
    // never cleaned again.
    let end = log.log_end_offset();
    drop(log);
    dir.close().unwrap();
    let (dir, _, log) = eager_dir(&disk);
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(log.truncated_to(), i64::MAX, "a new process");
    let range = cleanable(&log, dir.cleaner_offset(&tp), NOW).unwrap();
    assert_eq!(range.first_dirty, middle, "{range:?}");
    while let CleanOutcome::Cleaned { .. } = cleaner.clean_once(&dir, NOW).unwrap() {}
    assert_eq!(keys_of(&log), 10, "the first k0..k9 are superseded");
    assert!(dir.cleaner_offset(&tp).unwrap() > middle, "cleaned past it");
}

/// A truncation after the cleaner found its range and before it began cleaning (a
/// follower cutting its log below the range's end): the cleaning read the truncation
/// count only then, so it cleaned the stale range, wrote the checkpoint at its end, above
/// the cut, and forgot the cut. Records fetched again below that checkpoint were never
/// cleaned, and a tombstone among them could not remove the value it deleted. The
/// cleaning is now abandoned, and the log keeps its note of the cut.
#[test]
fn a_truncation_between_finding_the_range_and_cleaning_it_aborts_the_cleaning() {
    use partlog::cleaner::{clean_log, OffsetMap, Throttle};
    let disk = SimStorage::new(11);
    let (_dir, _cleaner, log) = eager_dir(&disk);
    fill(&log, 10, 3, NOW);
    let range = cleanable(&log, None, NOW).unwrap();
    assert!(
        range.first_uncleanable > range.first_dirty + 10,
        "{range:?}"
    );
    let cut = range.first_dirty + 10;
    log.truncate_to(cut).unwrap();
    let mut map = OffsetMap::with_memory(1 << 20);
    let report = clean_log(&log, &range, &mut map, NOW, &mut Throttle::unlimited()).unwrap();
    assert!(report.aborted, "{report:?}");
    assert!(log.truncated_to() <= cut, "the cut is remembered");
}

/// A compressed batch holds `k`'s value, and a tombstone for `k` comes later. partlog does
/// not decompress: the map pass cannot see the value, and the copy keeps it. The tombstone
/// went once past its delete horizon, and the value it deleted was back for every reader
/// from the start. Tombstones after a compressed batch now stay.
#[test]
fn a_tombstone_stays_while_a_compressed_batch_before_it_may_hold_its_key() {
    let disk = SimStorage::new(9);
    let (dir, cleaner, log) = eager_dir(&disk);
    let mut compressed = keyed_batch(&[(b"k".to_vec(), Some(b"v1".to_vec()))], NOW);
    // Marked gzip: partlog copies it unopened, whatever its payload holds.
    compressed[22] |= 1;
    partlog::record::recompute_crc(&mut compressed);
    log.append_as_leader(&mut compressed, 0).unwrap();
    fill(&log, 5, 2, NOW);
    let tombstone = (b"k".to_vec(), None);
    log.append_as_leader(&mut keyed_batch(&[tombstone], NOW), 0)
        .unwrap();
    log.force_roll().unwrap();
    let day = 86_400_000;
    while let CleanOutcome::Cleaned { .. } = cleaner.clean_once(&dir, NOW).unwrap() {}
    // Later, past the horizon, with something dirty to clean again.
    fill(&log, 5, 1, NOW + 2 * day);
    while let CleanOutcome::Cleaned { .. } = cleaner.clean_once(&dir, NOW + 2 * day).unwrap() {}
    let mut next = log.log_start_offset();
    let (mut compressed_batches, mut tombstones) = (0, 0);
    while let Some(slice) = log.read(next, 1 << 20, None).unwrap() {
        let bytes = slice.to_vec().unwrap();
        for b in partlog::record::batches(&bytes) {
            let b = b.unwrap();
            next = b.header().next_offset();
            let Ok(records) = b.records() else {
                compressed_batches += 1;
                continue;
            };
            for r in records {
                let r = r.unwrap();
                tombstones += usize::from(r.key == Some(b"k") && r.value.is_none());
            }
        }
    }
    assert_eq!(compressed_batches, 1, "the compressed batch stays");
    assert_eq!(tombstones, 1, "so does the tombstone after it");
}

/// A truncation while a cleaning writes its copies. A transaction still open at offset 10
/// ends the cleaning there, but its map took the records past it too (they stay in the
/// log, standing for their keys): so `k0` at 0 is dropped, superseded by `k0` at 11.
/// Then a truncation to 11 removes that one. The segment below 10 was still the log's, so
/// the swap went ahead, and `k0` was gone for good. Kafka aborts a log's cleaning before
/// it truncates; here the swap, under the writer's lock, refuses copies begun before a
/// truncation.
#[test]
fn a_truncation_during_a_cleaning_aborts_the_swap() {
    let disk = SimStorage::new(8);
    let (dir, cleaner, log) = eager_dir(&disk);
    fill(&log, 10, 1, NOW); // k0..k9 at 0..10
    let mut open = partlog::record::BatchBuilder::new();
    open.transactional(true).producer(7, 0, 0);
    open.append(NOW, Some(b"t"), Some(b"open"), &[]);
    log.append_as_leader(&mut open.build().unwrap(), 0).unwrap(); // at 10
    let k0 = (b"k0".to_vec(), Some(b"v1".to_vec()));
    log.append_as_leader(&mut keyed_batch(&[k0], NOW), 0)
        .unwrap(); // at 11
    log.force_roll().unwrap();

    disk.hold_syncs(".cleaned");
    let cleaning = std::thread::scope(|s| {
        let cleaning = s.spawn(|| cleaner.clean_once(&dir, NOW));
        while disk.syncs_waiting() < 1 {
            std::thread::yield_now();
        }
        log.truncate_to(11).unwrap();
        disk.release_syncs();
        cleaning.join().unwrap()
    });
    match cleaning.unwrap() {
        CleanOutcome::Cleaned { report, .. } => {
            assert_eq!(report.end_offset, 10, "{report:?}");
            assert!(report.aborted, "{report:?}");
        }
        outcome => panic!("{outcome:?}"),
    }
    let k0: Vec<i64> = log_records(&log)
        .iter()
        .filter(|r| r.1.as_deref() == Some(b"k0"))
        .map(|r| r.0)
        .collect();
    assert_eq!(k0, vec![0], "k0 is kept at 0, the one past the cut gone");
}

/// A truncation whose lowering of the cleaner checkpoint fails leaves the log failed: an
/// append past the cut would be taken for clean after a restart, and never cleaned. (The
/// truncation returned the error and the log took appends.)
#[test]
fn a_truncation_that_cannot_lower_the_cleaner_checkpoint_fails_the_log() {
    let disk = SimStorage::new(9);
    let (dir, cleaner, log) = eager_dir(&disk);
    let tp = TopicPartition::new("t", 0);
    fill(&log, 10, 3, NOW);
    while let CleanOutcome::Cleaned { .. } = cleaner.clean_once(&dir, NOW).unwrap() {}
    let checkpoint = dir.cleaner_offset(&tp).unwrap();
    let middle = checkpoint / 2;
    disk.set_faults(FaultPlan {
        write_eio: 1.0,
        path_suffix: Some("cleaner-offset-checkpoint.tmp".into()),
        ..FaultPlan::default()
    });
    assert!(
        log.truncate_to(middle).is_err(),
        "the checkpoint's write fails"
    );
    disk.clear_faults();
    assert_eq!(dir.cleaner_offset(&tp), Some(checkpoint), "not lowered");
    let end = log.log_end_offset();
    assert!(end <= middle);
    let record = (b"k0".to_vec(), Some(b"again".to_vec()));
    assert!(
        log.append_as_leader(&mut keyed_batch(&[record], NOW), 0)
            .is_err(),
        "an append past the cut while the checkpoint stands past it"
    );
    assert_eq!(log.log_end_offset(), end);
}

/// A failed log (a write failed: its files are in a state only a reopen resolves, maybe
/// a swap left unfinished) is not cleaned: a cleaning's copies could overwrite or remove
/// the `.cleaned` files that mark such a swap unfinished for recovery.
#[test]
fn a_failed_log_is_not_cleaned() {
    let disk = SimStorage::new(12);
    let (dir, cleaner, log) = eager_dir(&disk);
    fill(&log, 10, 3, NOW);
    // A copy an unfinished swap left behind, and a write that fails the log.
    let leftover = Path::new("/data/t-0/00000000000000000000.log.cleaned");
    disk.write_raw(leftover, b"copy").unwrap();
    disk.set_faults(FaultPlan {
        write_eio: 1.0,
        path_suffix: Some(".log".into()),
        ..FaultPlan::default()
    });
    let record = (b"k0".to_vec(), Some(b"v".to_vec()));
    assert!(log
        .append_as_leader(&mut keyed_batch(&[record], NOW), 0)
        .is_err());
    disk.clear_faults();
    match cleaner.clean_once(&dir, NOW).unwrap() {
        CleanOutcome::Failed { reason, .. } => assert!(reason.contains("read-only"), "{reason}"),
        outcome => panic!("{outcome:?}"),
    }
    assert_eq!(disk.read_raw(leftover).as_deref(), Some(&b"copy"[..]));
}

/// A compacted log refuses records without a key, as Kafka does; nothing is appended.
#[test]
fn a_compacted_log_refuses_keyless_records() {
    let disk = SimStorage::new(8);
    let dir = dir(&disk, config());
    let (log, _) = dir.open_log(&TopicPartition::new("t", 0)).unwrap();
    let mut builder = partlog::record::BatchBuilder::new();
    builder
        .append(NOW, Some(b"k"), Some(b"v"), &[])
        .append(NOW, None, Some(b"no key"), &[]);
    let err = log
        .append_as_leader(&mut builder.build().unwrap(), 0)
        .unwrap_err();
    assert!(
        matches!(err, partlog::Error::KeylessRecord { offset_delta: 1 }),
        "{err}"
    );
    assert_eq!(log.log_end_offset(), 0);
    // A log that does not compact takes them.
    let deleting = LogDir::open(
        disk.storage(),
        "/other",
        LogDirOptions {
            config: LogConfig::default(),
            clock: Arc::new(ManualClock::new(NOW)),
        },
    )
    .unwrap();
    let (plain, _) = deleting.open_log(&TopicPartition::new("t", 0)).unwrap();
    let mut builder = partlog::record::BatchBuilder::new();
    builder.append(NOW, None, Some(b"no key"), &[]);
    plain
        .append_as_leader(&mut builder.build().unwrap(), 0)
        .unwrap();
}

/// A batch of keys `k{from}..k{to}`, each with `value` repeated `len` times.
fn keys_batch(keys: std::ops::Range<usize>, value: &str, len: usize) -> Vec<u8> {
    let records: Vec<(Vec<u8>, Option<Vec<u8>>)> = keys
        .map(|k| {
            (
                format!("k{k}").into_bytes(),
                Some(value.repeat(len).into_bytes()),
            )
        })
        .collect();
    keyed_batch(&records, NOW)
}

/// A log dir that cleans at any dirty ratio, a cleaner, and its log `t-0`.
fn eager_log(seed: u64, segment_bytes: u64) -> (LogDir, Cleaner, Arc<Log>) {
    let disk = SimStorage::new(seed);
    eager_dir_of(&disk, segment_bytes)
}

/// [`eager_log`] on `disk`, with the usual segments.
fn eager_dir(disk: &Arc<SimStorage>) -> (LogDir, Cleaner, Arc<Log>) {
    eager_dir_of(disk, config().segment_bytes)
}

/// The config of [`eager_dir_of`]: segments of `segment_bytes`, any dirt cleanable.
fn eager_config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        min_cleanable_dirty_ratio: 0.0,
        segment_bytes,
        ..config()
    }
}

fn eager_dir_of(disk: &Arc<SimStorage>, segment_bytes: u64) -> (LogDir, Cleaner, Arc<Log>) {
    let dir = dir(disk, eager_config(segment_bytes));
    let (log, _) = dir.open_log(&TopicPartition::new("t", 0)).unwrap();
    (dir, Cleaner::new(CleanerConfig::default()), log)
}

/// One cleaning's batches skipped, and records read, superseded and kept.
fn clean_counts(cleaner: &Cleaner, dir: &LogDir) -> (u64, u64, u64, u64) {
    match cleaner.clean_once(dir, NOW).unwrap() {
        CleanOutcome::Cleaned { report, .. } => {
            let r = report.records;
            (
                r.batches_skipped,
                r.records_read,
                r.superseded,
                r.records_kept,
            )
        }
        other => panic!("one cleaning expected, got {other:?}"),
    }
}

/// The clean pass does not read again a batch that the map pass found superseded whole,
/// and counts its records as the rewrite would have: read, and dropped as superseded.
#[test]
fn a_batch_superseded_whole_is_not_read_again_and_counts_as_dropped() {
    let (dir, cleaner, log) = eager_log(9, 1 << 20);
    // Offsets 0..=9: superseded whole by 10..=19, whose k0..k4 25..=29 supersede in turn.
    for (keys, value) in [(0..10, "a"), (0..10, "b"), (10..15, "a"), (0..5, "c")] {
        log.append_as_leader(&mut keys_batch(keys, value, 1), 0)
            .unwrap();
    }
    log.force_roll().unwrap();
    assert_eq!(clean_counts(&cleaner, &dir), (1, 30, 15, 15));
    let expected: Vec<common::LogRecord> = (5..10)
        .map(|k| (10 + k as i64, format!("k{k}"), "b"))
        .chain((10..15).map(|k| (10 + k as i64, format!("k{k}"), "a")))
        .chain((0..5).map(|k| (25 + k as i64, format!("k{k}"), "c")))
        .map(|(o, k, v)| (o, Some(k.into_bytes()), Some(v.as_bytes().to_vec())))
        .collect();
    assert_eq!(log_records(&log), expected);
}

/// A batch superseded whole that ends a group of segments is still read, and stays as an
/// empty batch, so that the cleaned segment ends where the original did; a cleaning in
/// which it no longer ends a group drops it. (Empty batches were copied as they were, so
/// each group's last left one behind for good.)
#[test]
fn a_superseded_batch_that_ends_a_group_stays_empty() {
    let (dir, cleaner, log) = eager_log(10, config().segment_bytes);
    // Two batches of about 800 bytes: a segment each, and a group each (1,024 bytes).
    for value in ["a", "b"] {
        log.append_as_leader(&mut keys_batch(0..10, value, 60), 0)
            .unwrap();
        log.force_roll().unwrap();
    }
    assert_eq!(clean_counts(&cleaner, &dir), (0, 20, 10, 10));
    assert_eq!(
        first_batch(&log),
        (0, 0, 9),
        "the first segment keeps its batch, empty"
    );
    assert_eq!(log_records(&log).len(), 10);

    // A follower that copies this log has the empty batch in its dirty range, in one
    // segment with the next: its own cleaning drops it, as it ends no group there.
    let (follower, _) = dir.open_log(&TopicPartition::new("f", 0)).unwrap();
    while let Some(slice) = log.read(follower.log_end_offset(), 1 << 20, None).unwrap() {
        follower
            .append_as_follower(&slice.to_vec().unwrap())
            .unwrap();
    }
    follower.force_roll().unwrap();
    while let CleanOutcome::Cleaned { .. } = cleaner.clean_once(&dir, NOW).unwrap() {}
    assert_eq!(
        first_batch(&follower).0,
        10,
        "the empty batch ends no group: it goes"
    );
    assert_eq!(log_records(&follower), log_records(&log));
}

/// The log start moves past whole segments (DeleteRecords, or a follower's leader moved
/// its own) before retention removes them: a group of segments wholly below the log start
/// the log dir wrote down is left as it is, and the rest is cleaned. Such a group copied
/// nothing, and the cleaning failed ("produced no batch"), marking the partition
/// uncleanable. (Below a start not written down yet, the cleaner cleans: see
/// `compaction_crash.rs`.)
#[test]
fn segments_wholly_below_the_log_start_are_left_and_the_rest_is_cleaned() {
    let (dir, cleaner, log) = eager_log(11, config().segment_bytes);
    // Batches of about 800 bytes: a segment each, and a group each (1,024 bytes).
    for value in ["a", "b", "c", "d"] {
        log.append_as_leader(&mut keys_batch(0..10, value, 60), 0)
            .unwrap();
        log.force_roll().unwrap();
    }
    log.advance_log_start_offset(20).unwrap();
    dir.write_checkpoints().unwrap();
    let outcome = cleaner.clean_once(&dir, NOW).unwrap();
    let CleanOutcome::Cleaned { report, .. } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(
        report.records.superseded, 10,
        "the c records, by the d ones"
    );
    assert!(cleaner.uncleanable().is_empty());
    let expected: Vec<common::LogRecord> = (0..10)
        .map(|k| {
            (
                30 + k as i64,
                Some(format!("k{k}").into_bytes()),
                Some(b"d".repeat(60)),
            )
        })
        .collect();
    assert_eq!(log_records(&log), expected);
    assert!(matches!(
        cleaner.clean_once(&dir, NOW).unwrap(),
        CleanOutcome::Idle
    ));
}

/// The base offset, record count and last offset of the log's first batch.
fn first_batch(log: &Log) -> (i64, i32, i64) {
    let slice = log.read(log.log_start_offset(), 1 << 20, None).unwrap();
    let bytes = slice.expect("a batch").to_vec().unwrap();
    let first = partlog::record::batches(&bytes).next().expect("a batch");
    let header = *first.expect("valid").header();
    (
        header.base_offset,
        header.records_count,
        header.last_offset(),
    )
}

/// A cleaned copy takes the modification time of the last segment it replaces, as
/// Kafka's cleaner sets it: time retention ages a segment whose records carry no
/// timestamp (-1, as old clients write) by that time, and each cleaning used to make such
/// a segment young again, so that a regularly cleaned `compact,delete` log never expired.
#[test]
fn a_cleaned_segment_keeps_the_modification_time_of_what_it_replaces() {
    let disk = SimStorage::new(12);
    let clock = Arc::new(ManualClock::new(NOW));
    disk.set_clock(clock.clone());
    let (dir, cleaner, log) = eager_dir(&disk);
    fill(&log, 10, 3, -1);
    let written = log.segments()[0].modified_ms().unwrap();
    assert!(written <= NOW);
    let day = 86_400_000;
    clock.advance_ms(day);
    let mut cleaned = false;
    while let CleanOutcome::Cleaned { report, .. } = cleaner.clean_once(&dir, NOW + day).unwrap() {
        cleaned |= report.segments_after > 0;
    }
    assert!(cleaned, "a copy was swapped in");
    for segment in log.inactive_segments() {
        assert_eq!(segment.retention_timestamp().unwrap(), written);
    }
}

/// A batch whose bytes rotted on disk after recovery read them (a record's value here,
/// which still decodes) is not rewritten: the cleaning fails, the partition is marked
/// uncleanable, and the segment keeps the rotten batch with the CRC that tells. The
/// cleaner used to rebuild it around its surviving records under a fresh CRC, which
/// sealed the damage in where no reader, follower or scrub could find it.
#[test]
fn a_batch_whose_crc_fails_is_not_rewritten_under_a_new_one() {
    let disk = SimStorage::new(13);
    let (dir, cleaner, log) = eager_dir_of(&disk, 1 << 20);
    let mut first = keys_batch(0..10, "a", 8);
    log.append_as_leader(&mut first, 0).unwrap();
    log.append_as_leader(&mut keys_batch(0..5, "b", 8), 0)
        .unwrap();
    log.force_roll().unwrap();
    log.flush().unwrap();
    // The last byte of the first batch's last value (its record ends with a header count).
    let segment = Path::new("/data/t-0/00000000000000000000.log");
    let rotten = first.len() as u64 - 2;
    assert_eq!(disk.read_raw(segment).unwrap()[rotten as usize], b'a');
    disk.flip_bit(segment, rotten, 0).unwrap();
    let before = disk.read_raw(segment).unwrap();

    let outcome = cleaner.clean_once(&dir, NOW).unwrap();
    let CleanOutcome::Failed { partition, reason } = outcome else {
        panic!("the cleaning must fail: {outcome:?}");
    };
    assert_eq!(partition, TopicPartition::new("t", 0));
    assert!(reason.contains("CRC"), "{reason}");
    assert_eq!(disk.read_raw(segment).unwrap(), before);
    let slice = log.read(0, 1 << 20, None).unwrap().expect("a batch");
    let bytes = slice.to_vec().unwrap();
    let batch = partlog::record::batches(&bytes).next().unwrap().unwrap();
    assert!(batch.verify_crc().is_err(), "the damage still shows");
}

/// The path of the Kafka transaction index of segment `base` of partition `t-0`.
fn txn_index_path(base: i64) -> String {
    format!("/data/t-0/{base:020}.txnindex")
}

/// A durable log of five one-round segments, far below the segment size (a cleaning takes
/// them as one group), with Kafka-written transaction indexes on the first two; returns
/// the segments' bases and the indexes' entries, in order.
fn log_with_txn_indexes(seed: u64) -> (Arc<SimStorage>, LogDir, Arc<Log>, Vec<i64>, Vec<u8>) {
    let disk = SimStorage::new(seed);
    let (dir, _, log) = eager_dir_of(&disk, 1 << 20);
    for _ in 0..4 {
        fill(&log, 5, 1, NOW);
    }
    let bases: Vec<i64> = log.segments().iter().map(|s| s.base_offset()).collect();
    assert_eq!(bases.len(), 5, "{bases:?}");
    let entry = |producer_id: i64, first: i64| {
        common::aborted_txn_entry(producer_id, first, first + 1, first)
    };
    let mut expected = Vec::new();
    for (i, &base) in bases[..2].iter().enumerate() {
        let entries = [entry(i as i64, base), entry(10 + i as i64, base + 1)].concat();
        disk.write_raw(Path::new(&txn_index_path(base)), &entries)
            .unwrap();
        expected.extend(entries);
    }
    disk.sync_all();
    (disk, dir, log, bases, expected)
}

/// A Kafka-written transaction index of the segments a cleaning replaces is kept for the
/// cleaned segment, with the entries of every segment it replaces (as Kafka's cleaner
/// gives its copy the aborted transactions whose markers stay): the swap used to rename
/// them all away, and Kafka, taking the dir back, would have shown a kept aborted batch
/// as committed.
#[test]
fn a_cleaning_keeps_the_transaction_indexes_of_what_it_replaces() {
    let (disk, dir, log, bases, expected) = log_with_txn_indexes(14);
    let cleaner = Cleaner::new(CleanerConfig::default());
    let outcome = cleaner.clean_once(&dir, NOW).unwrap();
    assert!(
        matches!(outcome, CleanOutcome::Cleaned { .. }),
        "{outcome:?}"
    );
    let first = log.segments()[0].base_offset();
    assert_eq!(first, bases[0]);
    assert!(log.segments()[1].base_offset() > bases[1], "one group");
    assert_eq!(
        disk.read_raw(Path::new(&txn_index_path(first))),
        Some(expected)
    );
    assert_eq!(disk.read_raw(Path::new(&txn_index_path(bases[1]))), None);
}

/// A power loss at any step of a cleaning keeps every entry of the transaction indexes
/// of the segments it replaces, in the index of a segment the log still has. The swap
/// merged the later segments' entries into the first one's index only after the swap had
/// committed: a crash in between let recovery finish the swap, delete the later indexes
/// and lose their entries.
#[test]
fn a_crash_at_any_step_of_a_cleaning_keeps_the_transaction_indexes() {
    let ops = |c: SimCounters| {
        [
            (SimOp::Write, c.writes),
            (SimOp::Sync, c.syncs),
            (SimOp::SyncDir, c.sync_dirs),
            (SimOp::Rename, c.renames),
            (SimOp::Create, c.creates),
        ]
    };
    let (disk, uninterrupted, _log, _, _) = log_with_txn_indexes(14);
    let start = disk.counters();
    let cleaner = Cleaner::new(CleanerConfig::default());
    cleaner.clean_once(&uninterrupted, NOW).unwrap();
    let end = disk.counters();
    let entry_bytes = 34;
    let mut crashes = 0;
    for ((op, from), (_, to)) in ops(start).into_iter().zip(ops(end)) {
        for n in 1..=(to - from) {
            let (disk, crashed, log, _, expected) = log_with_txn_indexes(14);
            disk.fail_nth(op, n, FaultKind::Crash).unwrap();
            let outcome = Cleaner::new(CleanerConfig::default()).clean_once(&crashed, NOW);
            assert!(
                disk.counters().crashes > 0,
                "{op:?} #{n} did not crash: {outcome:?}"
            );
            crashes += 1;
            drop((crashed, log));
            let reopened = dir(&disk, eager_config(1 << 20));
            let (log, _) = reopened.open_log(&TopicPartition::new("t", 0)).unwrap();
            let mut held = Vec::new();
            for segment in log.segments().iter() {
                let index = disk.read_raw(Path::new(&txn_index_path(segment.base_offset())));
                held.extend(index.unwrap_or_default());
            }
            let held: Vec<&[u8]> = held.chunks(entry_bytes).collect();
            for wanted in expected.chunks(entry_bytes) {
                assert!(
                    held.contains(&wanted),
                    "crash at {op:?} #{n}: an entry of the transaction indexes is lost"
                );
            }
        }
    }
    assert!(crashes >= 8, "only {crashes} steps");
}

/// A truncation mark below the log start (a follower cut its log, then its start moved
/// past the cut, by DeleteRecords or its leader's log start, before any cleaning) counts
/// as one at the start: the first cleaning from there sees it. It stayed for good: every
/// cleaning checkpointed at the cut, below the log start, and the next began at the log
/// start again, so the whole log was cleaned over and over, and no other log was.
#[test]
fn a_truncation_below_the_log_start_is_seen_by_the_next_cleaning() {
    let disk = SimStorage::new(12);
    let (dir, cleaner, log) = eager_dir(&disk);
    let tp = TopicPartition::new("t", 0);
    fill(&log, 10, 3, NOW);
    let cut = log.log_end_offset() - 5;
    log.truncate_to(cut).unwrap();
    fill(&log, 10, 3, NOW);
    let start = cut + 10;
    log.advance_log_start_offset(start).unwrap();
    log.delete_old_segments().unwrap();
    // The mark rose with the log start, past the cut.
    assert_eq!(log.truncated_to(), log.log_start_offset());
    let mut cleanings = 0;
    while let CleanOutcome::Cleaned { report, .. } = cleaner.clean_once(&dir, NOW).unwrap() {
        assert!(!report.aborted, "{report:?}");
        cleanings += 1;
        assert!(cleanings < 5, "cleaned again and again: {report:?}");
    }
    assert_eq!(log.truncated_to(), i64::MAX, "seen");
    assert!(dir.cleaner_offset(&tp).unwrap() >= start);
}

/// A compacted log's retention waits while a cleaning of it runs, as Kafka's cleaner
/// thread runs the two in turn: a segment deleted under the cleaning made its swap refuse
/// every copy, and a log whose retention kept deleting under its cleanings never finished
/// one. The pass after the cleaning deletes what is due.
#[test]
fn retention_of_a_compacted_log_waits_for_its_cleaning() {
    let disk = SimStorage::new(13);
    let config = LogConfig {
        cleanup_policy: CleanupPolicy::CompactDelete,
        retention_ms: 1_000,
        ..eager_config(1024)
    };
    let dir = dir(&disk, config);
    let (log, _) = dir.open_log(&TopicPartition::new("t", 0)).unwrap();
    fill(&log, 10, 3, NOW - 10_000);
    fill(&log, 10, 1, NOW);
    let cleaning = log.begin_cleaning().expect("no cleaning runs");
    assert_eq!(log.delete_old_segments().unwrap().segments_deleted, 0);
    drop(cleaning);
    assert!(log.delete_old_segments().unwrap().segments_deleted > 0);
}
