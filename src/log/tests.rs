//! Races stepped by hand: a flush or a checkpoint against a truncation, a read against a
//! cleaning's swap.

use std::sync::Arc;

use super::{Log, LogOpenOptions};
use crate::io::sim::SimStorage;
use crate::record::{batches, BatchBuilder};
use crate::{LogConfig, ManualClock};

fn open(sim: &Arc<SimStorage>, recovery_point: Option<i64>) -> Log {
    let options = LogOpenOptions {
        config: LogConfig {
            index_bytes_max: 4096,
            ..LogConfig::default()
        },
        clock: Arc::new(ManualClock::new(1_000)),
        recovery_point,
        ..LogOpenOptions::new(sim.storage(), "/data/t-0")
    };
    Log::open(options).expect("open").0
}

fn append(log: &Log, records: usize) {
    let mut builder = BatchBuilder::new();
    for i in 0..records {
        builder.append(i as i64, None, Some(&[b'v'; 100]), &[]);
    }
    let mut b = builder.build().expect("batch");
    log.append_as_leader(&mut b, 0).expect("append");
}

/// Every offset below the log end reads back as a valid batch holding it.
fn check_every_offset(log: &Log) {
    for offset in log.log_start_offset()..log.log_end_offset() {
        let slice = log.read(offset, 1, None).expect("read").expect("data");
        let bytes = slice.to_vec().expect("bytes");
        let b = batches(&bytes).next().expect("a batch").expect("parses");
        b.validate().expect("valid");
        let h = b.header();
        assert!(h.base_offset <= offset && offset <= h.last_offset());
    }
}

/// A flush read the log end (6), then a truncation to 2 and a re-append to 8 ran before
/// the flush finished syncing. The flush used to move the recovery point to 6, over bytes
/// 2..6 that were appended after its syncs and never made durable.
#[test]
fn flush_racing_truncation_and_reappend_keeps_the_recovery_point_below_unsynced_bytes() {
    let sim = SimStorage::new(7);
    let log = open(&sim, None);
    for _ in 0..3 {
        append(&log, 2);
    }
    let ticket = log.flush_begin().expect("begin");
    assert_eq!(ticket.end, 6);
    log.truncate_to(2).expect("truncate");
    for _ in 0..3 {
        append(&log, 2);
    }
    let synced = log.flush_range(&ticket);
    let point = log.flush_finish(&ticket, synced).expect("finish");
    assert!(
        point <= 2,
        "recovery point {point} covers unsynced offsets 2..8"
    );
    // The next flush covers everything.
    assert_eq!(log.flush().expect("flush"), 8);
}

/// A checkpoint read the recovery point (10) before a truncation to 4; the log then
/// appended and rolled below 10 while the file was being written with 10. The roll guard
/// read the point persisted before (none) and did not sync the closed segment, which
/// recovery then trusts without a scan: after power loss its unsynced tail was lost.
#[test]
fn checkpoint_begun_before_a_truncation_makes_rolls_below_it_durable() {
    for seed in 0..16 {
        let sim = SimStorage::new(seed);
        let log = open(&sim, None);
        for _ in 0..5 {
            append(&log, 2);
        }
        assert_eq!(log.flush().expect("flush"), 10);
        let point = log.begin_checkpoint();
        log.truncate_to(4).expect("truncate");
        for _ in 0..2 {
            append(&log, 2);
        }
        log.force_roll().expect("roll");
        append(&log, 2);
        // The checkpoint file now says 10 (what a log dir would write).
        log.recovery_point_checkpointed(point);
        drop(log);
        sim.crash();
        let log = open(&sim, Some(point));
        assert!(
            log.log_end_offset() >= 8,
            "seed {seed}: the closed segment lost offsets: end {}",
            log.log_end_offset()
        );
        check_every_offset(&log);
    }
}

/// A cleaning's swap renames the old segments away, then publishes the list holding their
/// cleaned copies. A read in between of an old segment whose indexes were not loaded yet
/// fails with `SegmentDeleted`; it used to retry eight times at once and then answer
/// `OffsetOutOfRange` for an offset the log still held (the threaded cleaning test found
/// it about once in forty runs). The swap is stepped by hand here, under the writer's lock
/// as the cleaner's is: the files are renamed, and the new list comes 200 ms later; the
/// read waits for it and reads the new segment.
#[test]
fn a_read_between_a_swaps_rename_and_its_new_list_waits_for_the_list() {
    use crate::io::Storage;
    use crate::segment::Segment;

    let sim = SimStorage::new(8);
    let (log, config) = reopened_with_cold_segment(&sim);
    let old = log.segments()[0].clone();
    let want = old.log_path().to_path_buf();
    let swapping = log.writer.lock().expect("writer");
    let renamed = old.rename_to_deleted().expect("rename");
    let reads = std::thread::scope(|s| {
        let reader = s.spawn(|| log.read(0, 1 << 20, None));
        std::thread::sleep(std::time::Duration::from_millis(200));
        // The "cleaned copy": the same files under their live names, a new segment.
        for path in &renamed {
            // `x.log.deleted` back to `x.log`.
            sim.rename(path, &path.with_extension(""))
                .expect("rename back");
        }
        assert!(sim.exists(&want));
        let copy = Segment::open(sim.storage(), &log.dir, 0, &config, false, 1_000).expect("open");
        let mut next = log.segments().to_vec();
        next[0] = Arc::new(copy);
        log.set_segments(next);
        drop(swapping);
        reader.join().expect("reader")
    });
    let slice = reads
        .expect("the read waits for the new list")
        .expect("data");
    let bytes = slice.to_vec().expect("bytes");
    let b = batches(&bytes).next().expect("a batch").expect("parses");
    assert_eq!(b.header().base_offset, 0);
}

/// A swap that failed after renaming a segment away publishes no list: the log refuses
/// writes, and lets go of the writer's lock. A read of that segment used to wait five
/// seconds for the list all the same (under the replica's role lock, holding off a change
/// of role); it now sees the lock free and the list unchanged, and fails at once.
#[test]
fn a_read_of_a_segment_a_failed_swap_renamed_away_does_not_wait() {
    let sim = SimStorage::new(9);
    let (log, _) = reopened_with_cold_segment(&sim);
    {
        let mut writer = log.writer.lock().expect("writer");
        log.segments()[0].rename_to_deleted().expect("rename");
        let failed: crate::Result<()> = Log::fail(
            &mut writer,
            crate::Error::InvalidConfig("the swap's next rename failed".into()),
        );
        assert!(failed.is_err());
    }
    let started = std::time::Instant::now();
    let read = log.read(0, 1 << 20, None);
    assert!(
        matches!(read, Err(crate::Error::SegmentDeleted { base_offset: 0 })),
        "{read:?}"
    );
    assert!(
        started.elapsed() < super::read::SWAP_WAIT,
        "the read waited for a list that never came"
    );
}

/// A log of two segments, reopened after a clean shutdown so that nothing loaded the
/// first segment's indexes (its read opens them, and fails on a segment renamed away).
fn reopened_with_cold_segment(sim: &Arc<SimStorage>) -> (Log, LogConfig) {
    {
        let log = open(sim, None);
        append(&log, 3);
        log.force_roll().expect("roll");
        append(&log, 3);
        log.close().expect("close");
    }
    // Reopened after a clean shutdown, nothing loads the inactive segment's indexes.
    let config = LogConfig {
        index_bytes_max: 4096,
        ..LogConfig::default()
    };
    let (log, _) = Log::open(LogOpenOptions {
        config: config.clone(),
        clock: Arc::new(ManualClock::new(1_000)),
        recovery_point: Some(6),
        clean_shutdown: true,
        ..LogOpenOptions::new(sim.storage(), "/data/t-0")
    })
    .expect("reopen");
    (log, config)
}

/// The durable log start is the log start itself for a log no dir checkpoints, and the
/// checkpointed one (never above the log start) once a dir does.
#[test]
fn the_durable_log_start_is_the_checkpointed_one() {
    let sim = SimStorage::new(3);
    let log = open(&sim, None);
    append(&log, 3);
    append(&log, 3);
    log.advance_log_start_offset(2).expect("advance");
    assert_eq!(
        log.durable_log_start_offset(),
        2,
        "no dir: the log start counts"
    );
    log.log_start_checkpointed(2);
    log.advance_log_start_offset(4).expect("advance");
    assert_eq!(log.durable_log_start_offset(), 2, "4 is not written yet");
    log.log_start_checkpointed(4);
    assert_eq!(log.durable_log_start_offset(), 4);
}

/// A flush synced the active segment and a roll closed it before the flush moved the
/// recovery point to its end. The roll's trim (the time index's last entry, the files cut
/// to their contents) came after the flush's syncs, and the roll did not sync it, since
/// the recovery point still lay below the segment: recovery would then trust a segment
/// whose largest timestamp, read from its time index's last entry, was lost.
#[test]
fn a_roll_during_a_flush_makes_the_segment_it_closes_durable() {
    let sim = SimStorage::new(9);
    let log = open(&sim, None);
    for _ in 0..3 {
        append(&log, 2);
    }
    let closed = log.active_segment();
    let ticket = log.flush_begin().expect("begin");
    let synced = log.flush_range(&ticket);
    log.force_roll().expect("roll");
    let point = log.flush_finish(&ticket, synced).expect("finish");
    assert_eq!(point, 6);
    assert_eq!(log.active_segment().base_offset(), 6);
    for suffix in [".log", ".index", ".timeindex"] {
        let path = closed.path(suffix);
        assert!(
            sim.read_durable(&path) == sim.read_raw(&path),
            "{} below the recovery point is not durable as written",
            path.display()
        );
    }
}

/// A flush read the log end (8); appends went on to 10, and retention then deleted every
/// segment, rolling first (no sync: the flush under way reached only 8). The flush used
/// to sync the segments the log held when it got to them, the new empty one alone, and
/// moved the recovery point to 8 over the old segment's bytes 6..8, never synced: a
/// power loss that undid the deletion (its renames were not durable yet) would bring the
/// segment back torn below the recovery point, which recovery reports as damage.
#[test]
fn a_flush_syncs_the_segments_it_began_with_when_retention_took_them_since() {
    let sim = SimStorage::new(10);
    let options = LogOpenOptions {
        config: LogConfig {
            index_bytes_max: 4096,
            retention_ms: 1,
            ..LogConfig::default()
        },
        clock: Arc::new(ManualClock::new(1_000)),
        ..LogOpenOptions::new(sim.storage(), "/data/t-0")
    };
    let log = Log::open(options).expect("open").0;
    for _ in 0..3 {
        append(&log, 2);
    }
    assert_eq!(log.flush().expect("flush"), 6);
    append(&log, 2);
    let old = log.active_segment();
    let ticket = log.flush_begin().expect("begin");
    assert_eq!(ticket.end, 8);
    append(&log, 2);
    let deleted = log.delete_old_segments().expect("retention");
    assert_eq!(deleted.segments_deleted, 1);
    assert_eq!(log.log_start_offset(), 10);
    let synced = log.flush_range(&ticket);
    assert_eq!(log.flush_finish(&ticket, synced).expect("finish"), 8);
    let path = old.path(".log.deleted");
    assert!(sim.read_raw(&path).is_some(), "{}", path.display());
    assert!(
        sim.read_durable(&path) == sim.read_raw(&path),
        "{}: bytes below the recovery point were not synced",
        path.display()
    );
}
