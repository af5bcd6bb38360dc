//! Regressions for bugs the simulator (`tests/simulator.rs`) found, each as a small scripted
//! scenario on the simulated disk.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::batch;
use partlog::checkpoint::TopicPartition;
use partlog::io::sim::{FaultKind, FaultPlan, SimOp, SimStorage};
use partlog::log::{DamageKind, Log, LogOpenOptions};
use partlog::manager::{LogDir, LogDirOptions};
use partlog::record::batches;
use partlog::{LogConfig, ManualClock};

/// Kafka's defaults but small index files: a preallocated 10 MiB index per segment makes
/// the in-memory disk slow for nothing.
fn small() -> LogConfig {
    LogConfig {
        index_bytes_max: 4096,
        ..LogConfig::default()
    }
}

fn options(sim: &Arc<SimStorage>, config: LogConfig) -> LogOpenOptions {
    LogOpenOptions {
        config,
        clock: Arc::new(ManualClock::new(1_000_000)),
        ..LogOpenOptions::new(sim.storage(), "/data/t-0")
    }
}

fn dir_options(config: LogConfig) -> LogDirOptions {
    LogDirOptions {
        config,
        clock: Arc::new(ManualClock::new(1_000_000)),
    }
}

/// A failed `msync` while trimming an index on roll dropped the index's map but kept its
/// entry count, so the next read (reads go on after a failed write) indexed an empty map
/// and panicked. Trimming no longer syncs; its resize can still fail.
#[test]
fn read_after_failed_index_trim_on_roll_does_not_panic() {
    let sim = SimStorage::new(3);
    let config = LogConfig {
        index_interval_bytes: 64,
        ..small()
    };
    let (log, _) = Log::open(options(&sim, config)).expect("open");
    for i in 0..8 {
        log.append_as_leader(&mut batch(2, 100, i), 0)
            .expect("append");
    }
    sim.set_faults(FaultPlan {
        path_suffix: Some(".index".into()),
        ..FaultPlan::default()
    });
    sim.fail_nth(SimOp::Write, 1, FaultKind::Eio).expect("arm");
    assert!(log.force_roll().is_err(), "the trim's resize fails");
    sim.clear_faults();
    for offset in 0..log.log_end_offset() {
        let slice = log.read(offset, 1, None).expect("read").expect("data");
        let bytes = slice.to_vec().expect("bytes");
        let b = batches(&bytes).next().expect("batch").expect("valid");
        assert!(b.header().base_offset <= offset && offset <= b.header().last_offset());
    }
}

/// One append of several batches could need more index entries than a small index has
/// room for (the roll check runs once per append), and the append failed with "index is
/// full" after writing its bytes.
#[test]
fn multi_batch_append_into_a_nearly_full_index_succeeds() {
    let sim = SimStorage::new(4);
    let config = LogConfig {
        index_bytes_max: 48,
        index_interval_bytes: 32,
        ..LogConfig::default()
    };
    let (log, _) = Log::open(options(&sim, config.clone())).expect("open");
    let mut buf = Vec::new();
    for i in 0..12 {
        buf.extend_from_slice(&batch(1, 40, i));
    }
    let info = log.append_as_leader(&mut buf, 0).expect("append");
    assert_eq!(info.last_offset, 11);
    drop(log);
    // Recovery rebuilds the same (full) indexes and must succeed too.
    let (log, _) = Log::open(options(&sim, config)).expect("reopen");
    assert_eq!(log.log_end_offset(), 12);
}

/// Truncating to an offset inside a batch that starts below the log start removed the
/// batch whole and set the log end below the log start (invariant 2).
#[test]
fn truncate_into_batch_straddling_the_log_start_keeps_end_above_start() {
    let sim = SimStorage::new(5);
    let (log, _) = Log::open(options(&sim, small())).expect("open");
    log.append_as_leader(&mut batch(10, 10, 0), 0)
        .expect("append");
    log.advance_log_start_offset(5).expect("advance");
    log.truncate_to(7).expect("truncate");
    assert!(log.log_start_offset() <= log.log_end_offset());
    assert_eq!(log.log_start_offset(), 5);
    assert_eq!(log.log_end_offset(), 5);
    let mut next = batch(1, 10, 1);
    assert_eq!(
        log.append_as_leader(&mut next, 0)
            .expect("append")
            .first_offset,
        5
    );
}

/// A fresh log dir and partition dir were created without syncing their parents, so power
/// loss after a successful flush could take the directories, and the flushed data, away.
#[test]
fn flushed_data_in_a_new_log_dir_survives_power_loss() {
    let tp = TopicPartition::new("t", 0);
    for seed in 0..64 {
        let sim = SimStorage::new(seed);
        let dir = LogDir::open(sim.storage(), "/data", dir_options(small())).expect("open dir");
        let (log, _) = dir.open_log(&tp).expect("open log");
        log.append_as_leader(&mut batch(3, 10, 0), 0)
            .expect("append");
        dir.flush().expect("flush");
        drop((log, dir));
        sim.crash();
        let dir = LogDir::open(sim.storage(), "/data", dir_options(small())).expect("reopen dir");
        let (log, _) = dir.open_log(&tp).expect("reopen log");
        assert_eq!(log.log_end_offset(), 3, "seed {seed}: flushed records lost");
    }
}

/// `truncate_fully_and_start_at` created the new segment before the old ones were durably
/// renamed away; power loss in between could keep the new, empty segment next to old
/// segments whose offsets ran past its base (invariant 1), and recovery did not check that
/// a segment's batches stay below the next segment's base.
#[test]
fn power_loss_during_full_truncation_never_leaves_overlapping_segments() {
    let config = LogConfig {
        segment_bytes: 2048,
        ..small()
    };
    let mut crashes = 0;
    for seed in 0..24u64 {
        for crash_at in 1..=4 {
            let sim = SimStorage::new(seed);
            let (log, _) = Log::open(options(&sim, config.clone())).expect("open");
            for i in 0..12 {
                log.append_as_leader(&mut batch(3, 100, i), 0)
                    .expect("append");
            }
            log.flush().expect("flush");
            sim.fail_nth(SimOp::Rename, crash_at, FaultKind::Crash)
                .expect("arm");
            // Fails when the power does; the reopen below is what is checked.
            let truncated = log.truncate_fully_and_start_at(20);
            let crashed = sim.counters().crashes > 0;
            assert!(crashed || truncated.is_ok(), "seed {seed}: {truncated:?}");
            crashes += usize::from(crashed);
            drop(log);
            sim.clear_faults();
            let (log, _) = Log::open(LogOpenOptions {
                recovery_point: Some(36),
                ..options(&sim, config.clone())
            })
            .expect("reopen");
            let segments = log.segments();
            let mut prev_last = -1;
            for s in segments.iter() {
                assert!(
                    s.base_offset() > prev_last,
                    "seed {seed}: segment {} starts inside earlier batches",
                    s.base_offset()
                );
                // The segment's batches: an active one keeps zeros past them.
                let raw = sim.read_raw(s.log_path()).expect("segment");
                for b in batches(&raw[..s.size() as usize]) {
                    let b = b.expect("valid batch");
                    assert!(b.header().base_offset > prev_last, "seed {seed}: overlap");
                    prev_last = b.header().last_offset();
                }
            }
        }
    }
    // At least the first rename of each seed's truncation is reached.
    assert!(crashes >= 24, "only {crashes} crashes");
}

/// Appends six batches of two records, the `i`th of leader epoch `epoch_of(i)`, tears the
/// last one's partition leader epoch (bytes 12..16, outside the CRC) with `tear` (given the
/// segment and the batch's position), and reopens. Returns the log, the torn batch's
/// position and the reason recovery gave for cutting there.
fn reopen_with_torn_last_epoch(
    seed: u64,
    epoch_of: impl Fn(usize) -> i32,
    tear: impl FnOnce(&SimStorage, &std::path::Path, u64),
) -> (Log, u64, String) {
    let sim = SimStorage::new(seed);
    let (log, _) = Log::open(options(&sim, small())).expect("open");
    let mut last = 0;
    for i in 0..6 {
        last = log.size_bytes();
        log.append_as_leader(&mut batch(2, 10, i as i64), epoch_of(i))
            .expect("append");
    }
    let segment = log.segments()[0].log_path().to_path_buf();
    drop(log);
    tear(&sim, &segment, last);
    let (log, report) = Log::open(options(&sim, small())).expect("reopen");
    let damage = report.damage.expect("the batch is cut");
    assert_eq!(damage.position, last);
    (log, last, damage.reason)
}

/// The partition leader epoch lies outside the batch CRC, and a torn write zeroed just that
/// field of an unflushed batch: recovery kept the batch with epoch 0 after batches of epoch
/// 1, serving bytes that were never written (simulator seed 127742). Epochs never decrease
/// along a log, so recovery now cuts a batch whose epoch is below an earlier one's.
#[test]
fn torn_leader_epoch_field_is_cut_by_recovery() {
    let (log, _, reason) = reopen_with_torn_last_epoch(
        9,
        |_| 1,
        |sim, segment, at| sim.zero_range(segment, at + 12, 4).expect("zero the epoch"),
    );
    assert_eq!(log.log_end_offset(), 10);
    assert!(reason.contains("epoch"), "{reason}");
    assert_eq!(log.latest_epoch(), 1);
}

/// The same field torn the other way: a power loss left random bytes in it, and the epoch
/// came back above every epoch the log had seen (simulator seed 9022737). The epoch
/// checkpoint knows every epoch before the first batch of it is written, so recovery cuts a
/// batch whose epoch is above the checkpoint's last, and keeps one of a new, checkpointed
/// epoch.
#[test]
fn torn_leader_epoch_above_the_checkpoint_is_cut_by_recovery() {
    let (log, _, reason) = reopen_with_torn_last_epoch(
        10,
        |i| if i < 3 { 1 } else { 4 },
        // Byte 12 is the epoch's high byte: 4 becomes 2^30 + 4.
        |sim, segment, at| sim.flip_bit(segment, at + 12, 6).expect("tear the epoch"),
    );
    assert_eq!(
        log.log_end_offset(),
        10,
        "the batches of epoch 4 before it stay"
    );
    assert!(reason.contains("epoch checkpoint"), "{reason}");
    assert_eq!(log.latest_epoch(), 4);
    assert_eq!(log.epoch_entries().last().map(|e| e.epoch), Some(4));
}

/// Recovery moved a later segment aside and removed its `.log` without syncing the
/// directory. Appends then went into the cut segment, a flush made them durable, but a power
/// loss brought the removed segment back, its old batches overlapping the new ones, and the
/// flushed records were cut away (simulator seed 225 with rolls that do not fsync).
#[test]
fn segments_removed_by_recovery_stay_removed_after_another_power_loss() {
    let sim = SimStorage::new(12);
    let (log, _) = Log::open(options(&sim, small())).expect("open");
    for i in 0..4 {
        log.append_as_leader(&mut batch(2, 10, i), 1)
            .expect("append");
    }
    let first = log.segments()[0].log_path().to_path_buf();
    log.force_roll().expect("roll");
    for i in 0..4 {
        log.append_as_leader(&mut batch(2, 10, i), 1)
            .expect("append");
    }
    log.flush().expect("flush");
    drop(log);
    sim.sync_all();
    // Damage the first segment's last batch: the second segment must go.
    let len = sim.read_raw(&first).expect("segment").len() as u64;
    sim.flip_bit(&first, len - 5, 1).expect("flip");
    let (log, report) = Log::open(options(&sim, small())).expect("recover");
    assert_eq!(log.segment_count(), 1, "{report:?}");
    assert_eq!(log.log_end_offset(), 6);
    log.append_as_leader(&mut batch(2, 10, 9), 1)
        .expect("append");
    log.flush().expect("flush");
    drop(log);
    sim.crash();
    let (log, report) = Log::open(options(&sim, small())).expect("reopen");
    assert!(report.damage.is_none(), "{report:?}");
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.log_end_offset(), 8, "flushed records lost");
}

/// A truncation cut the kept segment before it renamed the later ones away; a failure in
/// between (here the kept segment's index allocation) and a restart left the cut segment
/// followed by the later ones: offsets jumped over the cut part, and recovery, trusting
/// the checkpointed recovery point, served the gap. The simulator found it (seed 968).
#[test]
fn failed_truncation_leaves_no_gap_in_the_offsets() {
    let sim = SimStorage::new(968);
    let config = small();
    let (log, _) = Log::open(options(&sim, config.clone())).expect("open");
    for segment in 0..3 {
        for i in 0..5 {
            log.append_as_leader(&mut batch(2, 50, segment * 10 + i), 0)
                .expect("append");
        }
        log.force_roll().expect("roll");
    }
    let end = log.flush().expect("flush");
    assert_eq!(end, 30);
    // The kept segment's indexes load for the first time here, and are rebuilt into
    // `.tmp` files renamed over the old ones: the first write of the time index fails.
    sim.set_faults(FaultPlan {
        path_suffix: Some(".timeindex.tmp".into()),
        ..FaultPlan::default()
    });
    sim.fail_nth(SimOp::Write, 1, FaultKind::Eio).expect("arm");
    assert!(log.truncate_to(4).is_err(), "the truncation fails midway");
    sim.clear_faults();
    drop(log);
    sim.crash_keep_written();
    let (log, _) = Log::open(LogOpenOptions {
        recovery_point: Some(end),
        ..options(&sim, config)
    })
    .expect("reopen");
    common::assert_offsets_consecutive(&log, "after the failed truncation");
}

/// A truncation renamed the segments it removed oldest first; power failing between two
/// renames kept the newer ones after the kept segment, with the older ones gone: offsets
/// jumped (simulator seed 33382). They are renamed newest first now.
#[test]
fn crash_between_the_renames_of_a_truncation_leaves_no_gap() {
    for crash_at in 1..=3 {
        let sim = SimStorage::new(33382 + crash_at);
        let config = small();
        let (log, _) = Log::open(options(&sim, config.clone())).expect("open");
        for segment in 0..4 {
            for i in 0..5 {
                log.append_as_leader(&mut batch(2, 50, segment * 10 + i), 0)
                    .expect("append");
            }
            log.force_roll().expect("roll");
        }
        let end = log.flush().expect("flush");
        sim.fail_nth(SimOp::Rename, crash_at, FaultKind::Crash)
            .expect("arm");
        assert!(
            log.truncate_to(5).is_err(),
            "power fails during the truncation"
        );
        drop(log);
        let (log, report) = Log::open(LogOpenOptions {
            recovery_point: Some(end),
            ..options(&sim, config.clone())
        })
        .expect("reopen");
        let context = format!("crash at rename {crash_at} ({report:?})");
        common::assert_offsets_consecutive(&log, &context);
    }
}

fn compacted() -> LogConfig {
    LogConfig {
        cleanup_policy: partlog::CleanupPolicy::Compact,
        ..small()
    }
}

/// A leader's batch of `records` records at `base`, epoch 0, as a follower appends it.
fn leader_copy(records: usize, value_bytes: usize, base: i64) -> Vec<u8> {
    let mut copy = batch(records, value_bytes, base);
    partlog::record::set_base_offset(&mut copy, base);
    partlog::record::set_partition_leader_epoch(&mut copy, 0);
    copy
}

/// Appends, to a compacted log, three leader batches of two records (offsets 0 to 5) and
/// then, as a follower copying a cleaned leader would, one batch of two records at each
/// of `gap_bases` (gaps); lets `tear` damage the segment (given the first gap batch's
/// position) and reopens without a clean shutdown. Returns the log and the reason
/// recovery gave for a cut.
fn reopen_after_gaps(
    seed: u64,
    gap_bases: &[i64],
    tear: impl FnOnce(&SimStorage, &std::path::Path, u64),
) -> (Log, Option<String>) {
    let sim = SimStorage::new(seed);
    let config = compacted();
    let (log, _) = Log::open(options(&sim, config.clone())).expect("open");
    for i in 0..3 {
        log.append_as_leader(&mut batch(2, 10, i), 0)
            .expect("append");
    }
    let first_gap_at = log.size_bytes();
    for &base in gap_bases {
        log.append_as_follower(&leader_copy(2, 10, base))
            .expect("append as follower");
    }
    let segment = log.segments()[0].log_path().to_path_buf();
    drop(log);
    tear(&sim, &segment, first_gap_at);
    let (log, report) = Log::open(never_flushed(&sim, config)).expect("reopen");
    (log, report.damage.map(|d| d.reason))
}

/// [`reopen_after_gaps`] with one gap batch, at offsets 100 and 101.
fn reopen_after_a_gap(
    seed: u64,
    tear: impl FnOnce(&SimStorage, &std::path::Path, u64),
) -> (Log, Option<String>) {
    reopen_after_gaps(seed, &[100], tear)
}

/// Options to reopen a log that was never flushed, with the recovery point a log dir would
/// have persisted for it: 0.
fn never_flushed(sim: &Arc<SimStorage>, config: LogConfig) -> LogOpenOptions {
    LogOpenOptions {
        recovery_point: Some(0),
        ..options(sim, config)
    }
}

/// A power loss tore two bytes of an unsynced batch's base offset in a compacted log (it
/// lies outside the CRC), raising it from 238 to 49579, and recovery kept the batch as a
/// compaction gap: records at offsets nobody wrote (simulator seeds 31065701 and
/// 40113421). In a compacted log's last segment, recovery now keeps a batch that leaves a
/// gap above the recovery point only when the offset index on disk names it, as every
/// append of such a batch does.
#[test]
fn a_gap_batch_next_to_a_torn_tail_is_cut() {
    // Nothing after the gap: a real one (a process death keeps it and its index entry).
    let (log, damage) = reopen_after_a_gap(11, |_, _, _| {});
    assert_eq!((log.log_end_offset(), damage), (102, None));
    // A partial header after it: a power loss mid-append. The gap batch's index entry
    // names it (its last offset at its position), so its base offset was not torn.
    let (log, damage) = reopen_after_a_gap(12, |sim, segment, at| {
        let end = at + batch(2, 10, 3).len() as u64;
        sim.truncate_file(segment, end + 30)
            .expect("a partial header");
    });
    assert_eq!(log.log_end_offset(), 102, "the witnessed gap batch stays");
    assert!(damage.is_some(), "the partial header is cut");
    // A batch raised by a torn base offset (byte 6 of 8), with a partial header after it.
    let (log, damage) = reopen_after_a_gap(13, |sim, segment, at| {
        let raised = at - batch(2, 10, 2).len() as u64;
        sim.flip_bit(segment, raised + 6, 3)
            .expect("tear the base offset");
        sim.truncate_file(segment, at + 20)
            .expect("a partial header");
    });
    assert_eq!(log.log_end_offset(), 4, "the raised batch is cut");
    assert!(damage.expect("cut").contains("gap after 4"));
}

/// The known limit of the check above, found by simulator seed 2055631: a torn base offset
/// raised into what looks like a compaction gap, in a batch that ends the file or stays
/// below the next batch's base, was kept (a 2-record batch at offset 14975408 after 534).
/// The raised batch's last offset at its position is in no index entry, so it is cut now.
#[test]
fn a_torn_base_offset_that_looks_like_a_gap_is_cut() {
    // The gap batch ends the file; its base offset 100 torn to 108.
    let (log, damage) = reopen_after_a_gap(14, |sim, segment, at| {
        sim.flip_bit(segment, at + 7, 3)
            .expect("tear the base offset");
    });
    assert_eq!(log.log_end_offset(), 6, "the raised batch is cut");
    let reason = damage.expect("cut");
    assert!(reason.contains("holds no entry"), "{reason}");

    // Gap batches at 100 and 200; the first torn to 108, still below 200, and a valid
    // batch follows it.
    let (log, damage) = reopen_after_gaps(15, &[100, 200], |sim, segment, at| {
        sim.flip_bit(segment, at + 7, 3)
            .expect("tear the base offset");
    });
    assert_eq!(log.log_end_offset(), 6, "{damage:?}");
    drop(log);
    let config = compacted();

    // Untorn, both gap batches stay: their appends wrote their witnesses.
    let sim = SimStorage::new(16);
    let (log, _) = Log::open(options(&sim, config.clone())).expect("open");
    for base in [100, 200] {
        log.append_as_follower(&leader_copy(2, 10, base))
            .expect("append as follower");
    }
    drop(log);
    sim.crash_keep_written();
    let (log, report) = Log::open(never_flushed(&sim, config.clone())).expect("reopen");
    assert_eq!(log.log_end_offset(), 202, "{report:?}");
    assert!(report.damage.is_none(), "{report:?}");
    drop(log);

    // Flushed, with the persisted recovery point still at 0: a power loss keeps them, as
    // the flush synced their witnesses with them.
    for seed in 17..40 {
        let sim = SimStorage::new(seed);
        let (log, _) = Log::open(options(&sim, config.clone())).expect("open");
        for base in [100, 200] {
            log.append_as_follower(&leader_copy(2, 10, base))
                .expect("append as follower");
        }
        log.flush().expect("flush");
        drop(log);
        sim.crash();
        let (log, report) = Log::open(never_flushed(&sim, config.clone())).expect("reopen");
        assert_eq!(log.log_end_offset(), 202, "seed {seed}: {report:?}");
        assert!(report.damage.is_none(), "seed {seed}: {report:?}");
    }
}

/// A compacted log's append whose gap batches needed more index entries than the active
/// segment had left wrote the last ones without witnesses, and recovery fell back to the
/// weaker check for them, which keeps a torn base offset at the end of the file. Such an
/// append now rolls first.
#[test]
fn an_append_whose_witnesses_do_not_fit_the_index_rolls_first() {
    let config = LogConfig {
        index_bytes_max: 8 * 8, // eight entries
        ..compacted()
    };
    // One timestamp throughout: the time index takes one entry and never fills.
    let gap_batches = |bases: std::ops::Range<i64>| -> Vec<u8> {
        bases
            .flat_map(|b| {
                let mut copy = batch(2, 10, 1);
                partlog::record::set_base_offset(&mut copy, b * 100);
                partlog::record::set_partition_leader_epoch(&mut copy, 0);
                copy
            })
            .collect()
    };
    let sim = SimStorage::new(41);
    let (log, _) = Log::open(options(&sim, config.clone())).expect("open");
    log.append_as_follower(&gap_batches(1..7))
        .expect("six gap batches: six witnesses, two entries left");
    log.append_as_follower(&gap_batches(7..11))
        .expect("four more gap batches");
    let segments = log.segments();
    assert_eq!(segments.len(), 2, "the second append rolled first");
    let active = segments.last().expect("a segment");
    let path = active.log_path().to_path_buf();
    let last_batch_at = active.size() - gap_batches(10..11).len() as u64;
    drop((segments, log));
    // The last batch's base offset 1000 torn to 1008: only its witness tells.
    sim.flip_bit(&path, last_batch_at + 7, 3)
        .expect("tear the base offset");
    sim.crash_keep_written();
    let (log, report) = Log::open(never_flushed(&sim, config)).expect("reopen");
    assert_eq!(log.log_end_offset(), 902, "{report:?}");
    let reason = report.damage.expect("cut").reason;
    assert!(reason.contains("holds no entry"), "{reason}");
}

/// Two ways the first cut of the gap witnesses lost one, found by the simulators:
/// - a kill while the log was still open lost the index entries not yet written back, as
///   the simulated disk kept a map's stores to itself until then (`sim_offsets` seeds
///   7012361 and 7015124: a replica restarted with an empty log). A map's stores now reach
///   the page cache at once, as a shared mapping's do.
/// - a witness at position 0 (a first batch above the segment's base, after
///   `truncate_fully_and_start_at`) made the index look like a zeroed one; the next load
///   rebuilt it from the headers, without witnesses, and recovery later cut the batch
///   (`simulator` seed 11041413). Header rebuilds witness gaps too now, and a `(base, 0)`
///   entry alone is what counts as no index.
#[test]
fn gap_witnesses_survive_a_kill_and_an_index_reload() {
    let config = LogConfig {
        index_interval_bytes: 64,
        ..compacted()
    };
    let gap_batch = || leader_copy(4, 40, 111);
    let since_93 = |sim: &Arc<SimStorage>| LogOpenOptions {
        recovery_point: Some(93),
        ..options(sim, config.clone())
    };

    // Killed while open.
    let sim = SimStorage::new(31);
    let (log, _) = Log::open(options(&sim, config.clone())).expect("open");
    log.truncate_fully_and_start_at(93).expect("start at 93");
    log.append_as_follower(&gap_batch())
        .expect("append as follower");
    sim.crash_keep_written();
    drop(log);
    let (log, report) = Log::open(since_93(&sim)).expect("reopen");
    assert_eq!(log.log_end_offset(), 115, "{report:?}");
    drop(log);

    // Closed cleanly, its index loaded again by a read, then killed.
    let sim = SimStorage::new(32);
    let (log, _) = Log::open(options(&sim, config.clone())).expect("open");
    log.truncate_fully_and_start_at(93).expect("start at 93");
    log.append_as_follower(&gap_batch())
        .expect("append as follower");
    log.close().expect("close");
    drop(log);
    let clean = LogOpenOptions {
        recovery_point: Some(115),
        clean_shutdown: true,
        ..options(&sim, config.clone())
    };
    let (log, _) = Log::open(clean).expect("clean reopen");
    assert!(log.read(111, 1 << 20, None).expect("read").is_some());
    drop(log);
    sim.crash_keep_written();
    let (log, report) = Log::open(since_93(&sim)).expect("reopen");
    assert_eq!(log.log_end_offset(), 115, "{report:?}");
}

/// An index rebuild synced its files in place: power failing during that sync left a time
/// index whose entry had a torn timestamp, the next open trusted it (the segment lay below
/// the recovery point), and timestamp lookups skipped the records before the torn entry.
/// The simulator found it (seed 2010705). Rebuilds now write `.tmp` files and rename them
/// over the old ones once synced. Here: a segment whose durable indexes are empty is
/// rebuilt on first use, power fails at each sync of that rebuild in turn, and after the
/// reopen every timestamp lookup must answer as before.
#[test]
fn power_loss_during_an_index_rebuild_leaves_no_torn_index() {
    let config = LogConfig {
        index_interval_bytes: 512,
        ..small()
    };
    let mut crashes = 0;
    for seed in 0..30 {
        for nth in 1..=4 {
            let sim = SimStorage::new(seed);
            let (log, _) = Log::open(options(&sim, config.clone())).expect("open");
            for i in 0..40 {
                log.append_as_leader(&mut batch(2, 100, 1_000_000 + i * 1_000), 0)
                    .expect("append");
            }
            log.force_roll().expect("roll");
            let end = log.flush().expect("flush");
            let targets: Vec<i64> = (0..42).map(|i| 999_500 + i * 1_000).collect();
            let answers = |log: &Log| -> Vec<Option<(i64, i64)>> {
                targets
                    .iter()
                    .map(|&t| {
                        let found = log.offset_for_timestamp(t).expect("lookup");
                        found.map(|f| (f.timestamp, f.offset))
                    })
                    .collect()
            };
            let expected = answers(&log);
            drop(log);
            // The first segment's offset index durably empty, so that the open rebuilds
            // both, and its time index durably holding a stale first entry: the offset of
            // the rebuilt one with an older timestamp, which a torn write would mix in.
            let index = Path::new("/data/t-0/00000000000000000000.index");
            let time_index = Path::new("/data/t-0/00000000000000000000.timeindex");
            let mut stale = sim.read_raw(time_index).expect("time index")[..12].to_vec();
            let timestamp = i64::from_be_bytes(stale[..8].try_into().expect("8 bytes"));
            stale[..8].copy_from_slice(&(timestamp - 987_654_321).to_be_bytes());
            sim.write_raw(index, &[]).expect("empty offset index");
            sim.write_raw(time_index, &stale).expect("stale time index");
            sim.crash_keep_written();
            let below_end = |sim: &Arc<SimStorage>| LogOpenOptions {
                recovery_point: Some(end),
                ..options(sim, config.clone())
            };
            // The open rebuilds the indexes; power fails at its `nth` sync.
            sim.fail_nth(SimOp::Sync, nth, FaultKind::Crash)
                .expect("arm");
            let generation = sim.generation();
            let opened = Log::open(below_end(&sim));
            let crashed = sim.generation() != generation;
            assert!(crashed || opened.is_ok(), "seed {seed}: {:?}", opened.err());
            crashes += usize::from(crashed);
            sim.clear_faults();
            drop(opened);
            let (log, _) = Log::open(below_end(&sim)).expect("reopen after the power loss");
            assert_eq!(
                answers(&log),
                expected,
                "seed {seed}, power lost at the rebuild's sync {nth}"
            );
        }
    }
    // The rebuild syncs at least its two `.tmp` files.
    assert!(crashes >= 60, "only {crashes} crashes");
}

/// A truncation below the checkpointed recovery point left the file claiming that the
/// offsets appended since were flushed, until the next checkpoint. Power lost after
/// `truncate_fully_and_start_at(42)` on a log checkpointed at 413 (seed 2079634) then came
/// back as `Corruption`, "flushed data is missing". A log dir now rewrites the recovery
/// point when a truncation goes below it, as Kafka does.
#[test]
fn a_truncation_below_the_checkpoint_rewrites_it() {
    let tp = TopicPartition::new("t", 0);
    for seed in 0..32 {
        for fully in [false, true] {
            let sim = SimStorage::new(seed);
            let dir = LogDir::open(sim.storage(), "/data", dir_options(small())).expect("open dir");
            let (log, _) = dir.open_log(&tp).expect("open log");
            let end = truncate_below_the_checkpoint_and_append(
                &log,
                || dir.flush().expect("flush and checkpoint"),
                fully,
            );
            drop((log, dir));
            sim.crash();
            let dir = LogDir::open(sim.storage(), "/data", dir_options(small())).expect("reopen");
            let (log, report) = dir.open_log(&tp).expect("reopen log");
            let what = format!("seed {seed}, fully {fully}: {report:?}");
            assert!(report.warnings.is_empty(), "{what}");
            let kind = report.damage.as_ref().map(|d| d.kind);
            assert_ne!(kind, Some(DamageKind::Corruption), "{what}");
            let truncated_to = if fully { 42 } else { 30 };
            assert!(
                (truncated_to..=end).contains(&log.log_end_offset()),
                "{what}"
            );
        }
    }
}

/// Until the persisted recovery point is rewritten (a log opened without a log dir, whose
/// caller writes the checkpoint), appends below it are synced before they return.
#[test]
fn appends_below_a_stale_checkpoint_survive_power_loss() {
    for seed in 0..32 {
        for fully in [false, true] {
            let sim = SimStorage::new(seed);
            let (log, _) = Log::open(options(&sim, small())).expect("open");
            let mut persisted = None;
            let end = truncate_below_the_checkpoint_and_append(
                &log,
                || {
                    log.flush().expect("flush");
                    let point = log.begin_checkpoint();
                    log.recovery_point_checkpointed(point);
                    persisted = Some(point);
                },
                fully,
            );
            drop(log);
            sim.crash();
            let (log, report) = Log::open(LogOpenOptions {
                recovery_point: persisted,
                ..options(&sim, small())
            })
            .expect("reopen");
            let what = format!("seed {seed}, fully {fully}: {report:?}");
            assert!(report.damage.is_none(), "{what}");
            assert_eq!(log.log_end_offset(), end, "{what}");
        }
    }
}

/// Appends 60 records, checkpoints (`checkpoint`), truncates to 30 (or fully, restarting
/// at 42), and appends 12 records in a new epoch; returns the log end.
fn truncate_below_the_checkpoint_and_append(
    log: &Log,
    checkpoint: impl FnOnce(),
    fully: bool,
) -> i64 {
    for i in 0..20 {
        log.append_as_leader(&mut batch(3, 10, i), 0)
            .expect("append");
    }
    checkpoint();
    if fully {
        log.truncate_fully_and_start_at(42).expect("truncate fully");
    } else {
        log.truncate_to(30).expect("truncate");
    }
    for i in 0..4 {
        log.append_as_leader(&mut batch(3, 10, 100 + i), 1)
            .expect("append after the truncation");
    }
    log.log_end_offset()
}

/// A recovery that cuts flushed data (a flipped bit below the recovery point) leaves the
/// checkpoint above the log; the open rewrites it before it returns, and fails when it
/// cannot (a rename failing), as it fails for its other writes. Either way a later power
/// loss loses nothing the file claims.
#[test]
fn a_recovery_cut_below_the_checkpoint_rewrites_it() {
    let tp = TopicPartition::new("t", 0);
    let segment = Path::new("/data/t-0/00000000000000000000.log");
    let mut failed_opens = 0;
    for renames_before_failure in 0..6 {
        let sim = SimStorage::new(renames_before_failure);
        let dir = LogDir::open(sim.storage(), "/data", dir_options(small())).expect("open dir");
        let (log, _) = dir.open_log(&tp).expect("open log");
        for i in 0..20 {
            log.append_as_leader(&mut batch(3, 10, i), 0)
                .expect("append");
        }
        dir.flush().expect("flush and checkpoint at 60");
        let len = log.size_bytes();
        drop((log, dir));
        sim.crash();
        // Flushed data goes bad: a byte in the middle of the batches, below the point.
        sim.flip_bit(segment, len / 2, 0).expect("flip");
        if renames_before_failure > 0 {
            sim.fail_nth(SimOp::Rename, renames_before_failure, FaultKind::Eio)
                .expect("arm");
        }
        let dir = LogDir::open(sim.storage(), "/data", dir_options(small())).expect("reopen");
        let (log, report) = match dir.open_log(&tp) {
            Ok(opened) => opened,
            Err(_) => {
                failed_opens += 1;
                sim.clear_faults();
                dir.open_log(&tp).expect("open once the disk works")
            }
        };
        sim.clear_faults();
        let cut_to = log.log_end_offset();
        assert!(cut_to < 60, "{report:?}");
        let file = sim
            .read_raw(Path::new("/data/recovery-point-offset-checkpoint"))
            .expect("checkpoint");
        let file = String::from_utf8(file).expect("text");
        assert!(
            file.lines()
                .any(|l| l.starts_with("t 0 ") && l[4..].parse::<i64>().is_ok_and(|p| p <= cut_to)),
            "{file:?} after a cut to {cut_to}: {report:?}"
        );
        for i in 0..3 {
            log.append_as_leader(&mut batch(3, 10, 100 + i), 1)
                .expect("append after the cut");
        }
        let end = log.log_end_offset();
        drop((log, dir));
        sim.crash();
        let dir = LogDir::open(sim.storage(), "/data", dir_options(small())).expect("reopen");
        let (log, report) = dir.open_log(&tp).expect("reopen log");
        assert!(report.warnings.is_empty(), "{report:?}");
        let kind = report.damage.as_ref().map(|d| d.kind);
        assert_ne!(kind, Some(DamageKind::Corruption), "{report:?}");
        assert!((cut_to..=end).contains(&log.log_end_offset()), "{report:?}");
    }
    assert!(failed_opens > 0, "no injected failure hit an open");
}

/// A flush writes a leader-epoch checkpoint that only needed to be lazy (the log start
/// moved), outside the writer lock; a truncation writes one at once, under it. Both wrote
/// `leader-epoch-checkpoint.tmp` and renamed it: one rename found the other's temp file
/// gone, which turned the log read-only, or the older text could land last, putting back
/// an epoch the truncation had removed (`sim_threads` seed 200727, debug build). Writes
/// are now serialized, and one older than the text on disk is skipped.
#[test]
fn a_flush_and_a_truncation_writing_the_epoch_checkpoint_at_once() {
    for truncation_first in [false, true] {
        let sim = SimStorage::new(7);
        let (log, _) = Log::open(options(&sim, small())).expect("open");
        for epoch in 1..=3 {
            log.assign_leader_epoch(epoch).expect("epoch");
            for i in 0..5 {
                log.append_as_leader(&mut batch(2, 10, i), epoch)
                    .expect("append");
            }
        }
        // Epochs 1, 2, 3 from 0, 10, 20. Moving the start marks the file to be rewritten
        // by the next flush.
        log.advance_log_start_offset(4).expect("start");
        let log = &log;
        let write = move |truncate: bool| {
            if truncate {
                log.truncate_to(15).expect("truncate into epoch 2");
            } else {
                log.flush().expect("flush");
            }
        };
        common::meet_in_a_held_sync(
            &sim,
            "leader-epoch-checkpoint.tmp",
            move || write(truncation_first),
            move || write(!truncation_first),
        );
        let text = sim
            .read_raw(Path::new("/data/t-0/leader-epoch-checkpoint"))
            .expect("epoch checkpoint");
        let text = String::from_utf8(text).expect("text");
        assert_eq!(
            text, "0\n2\n1 4\n2 10\n",
            "truncation first: {truncation_first}"
        );
    }
}

/// Two readers that meet one segment whose index must be rebuilt on first use: the rebuild
/// runs under the segment's index lock, so the second waits for the first's and finds the
/// indexes built, instead of writing the same `.tmp` files (one rename would find the
/// other's file gone). The first reader is held inside its rebuild's sync until the second
/// has started.
#[test]
fn two_readers_needing_one_index_rebuild_take_turns() {
    let config = LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 512,
        ..small()
    };
    let sim = SimStorage::new(21);
    let (log, _) = Log::open(options(&sim, config.clone())).expect("open");
    for i in 0..60 {
        log.append_as_leader(&mut batch(2, 100, i), 0)
            .expect("append");
    }
    let end = log.flush().expect("flush");
    assert!(log.segments().len() >= 3, "several segments");
    drop(log);
    // The first segment's offset index durably empty: rebuilt when a read first needs it
    // (the open reads only the segments near the recovery point).
    sim.write_raw(Path::new("/data/t-0/00000000000000000000.index"), &[])
        .expect("empty offset index");
    let (log, _) = Log::open(LogOpenOptions {
        recovery_point: Some(end),
        ..options(&sim, config)
    })
    .expect("reopen");
    let read = |offset: i64| {
        let slice = log
            .read(offset, 1 << 20, None)
            .expect("read")
            .expect("records");
        let mut bytes = vec![0u8; slice.len() as usize];
        slice.read_to(&mut bytes).expect("bytes");
        let first = batches(&bytes).next().expect("a batch").expect("valid");
        let header = first.header();
        assert!(
            (header.base_offset..header.next_offset()).contains(&offset),
            "offset {offset} read from batch {}..{}",
            header.base_offset,
            header.next_offset()
        );
    };
    common::meet_in_a_held_sync(&sim, ".index.tmp", || read(3), || read(11));
}

/// An empty active segment that an append's offsets do not fit (a follower copying a
/// compacted leader whose offsets jump by more than a segment's `i32` index can span) is
/// replaced by a new one. It was renamed away before the new one was created, so a power
/// loss at the create could keep the renames: no segment at all, and the log reopened at
/// the log start it was opened with, below the offsets it had reached. The new segment is
/// now durable first.
#[test]
fn power_loss_while_replacing_an_empty_active_segment_keeps_the_log_end() {
    let far = 100 + i64::from(i32::MAX) + 10;
    let crash_points = (1..=4)
        .map(|n| (SimOp::Create, n))
        .chain((1..=4).map(|n| (SimOp::Rename, n)))
        .chain((1..=2).map(|n| (SimOp::SyncDir, n)));
    let mut crashes = 0;
    for (op, n) in crash_points {
        for seed in 0..8 {
            let sim = SimStorage::new(seed);
            let (log, _) = Log::open(options(&sim, compacted())).expect("open");
            log.truncate_fully_and_start_at(100).expect("start at 100");
            sim.fail_nth(op, n, FaultKind::Crash).expect("arm");
            let appended = log.append_as_follower(&leader_copy(2, 10, far));
            crashes += usize::from(sim.counters().crashes > 0);
            drop(log);
            sim.clear_faults();
            let (log, report) = Log::open(options(&sim, compacted())).expect("reopen");
            assert!(
                log.log_end_offset() >= 100,
                "crash at {op:?} {n}, seed {seed} (append: {appended:?}): the log reopened \
                 at {} ({report:?})",
                log.log_end_offset()
            );
        }
    }
    // The replacement's create, rename and directory sync are each reached.
    assert!(crashes >= 3 * 8, "only {crashes} crashes");
}

/// A partition dir created by a call that crashed before syncing its parent is there at
/// the next open, which found it and synced nothing: a power loss after that open could
/// still take the dir, and with it data flushed inside it. The parent is synced anyway now.
#[test]
fn an_existing_dir_whose_entry_was_never_synced_is_made_durable() {
    for seed in 0..32 {
        let sim = SimStorage::new(seed);
        let storage = sim.storage();
        storage.create_dir_all(Path::new("/data")).unwrap();
        sim.sync_all();
        // As if the last open created it and crashed before its parent's sync.
        storage.create_dir_all(Path::new("/data/t-0")).unwrap();
        partlog::io::create_dir_all_durable(storage.as_ref(), Path::new("/data/t-0")).unwrap();
        sim.crash();
        assert!(
            sim.storage().exists(Path::new("/data/t-0")),
            "seed {seed}: the dir was lost"
        );
    }
}

/// One batch of `records` 10-byte records at `base_offset`, as a follower copies it.
fn follower_batch(records: usize, base_offset: i64) -> Vec<u8> {
    let mut b = batch(records, 10, 0);
    partlog::record::set_base_offset(&mut b, base_offset);
    b
}

/// The first follower append that leaves a gap in a log without any syncs the log before
/// it marks it and writes: a power loss right after may take the gap batch, never what
/// came before it, which recovery under the gap rules could no longer tell from a gap.
#[test]
fn a_power_loss_after_the_first_gap_keeps_what_came_before_it() {
    for seed in 0..20 {
        let sim = SimStorage::new(seed);
        let (log, _) = Log::open(options(&sim, small())).expect("open");
        for base in [0, 2, 4] {
            log.append_as_follower(&follower_batch(2, base))
                .expect("append");
        }
        log.append_as_follower(&follower_batch(2, 9))
            .expect("append with a gap");
        drop(log);
        sim.crash();
        let (log, report) = Log::open(options(&sim, small())).expect("reopen");
        assert!(log.may_have_gaps(), "seed {seed}: the mark was lost");
        let end = log.log_end_offset();
        assert!(
            end == 6 || end == 11,
            "seed {seed}: end {end} after {report:?}"
        );
    }
}

/// A failed sync while marking a log as one with gaps fails the log, as any failed flush
/// does: the pages it was to write may be gone, and a later sync that succeeded would hide
/// the hole behind the mark.
#[test]
fn a_failed_sync_while_marking_gaps_fails_the_log() {
    let sim = SimStorage::new(5);
    let (log, _) = Log::open(options(&sim, small())).expect("open");
    log.append_as_follower(&follower_batch(2, 0))
        .expect("append");
    sim.fail_nth(SimOp::Sync, 1, FaultKind::Eio).expect("arm");
    assert!(log.append_as_follower(&follower_batch(2, 5)).is_err());
    assert!(!log.may_have_gaps());
    sim.clear_faults();
    let again = log.append_as_follower(&follower_batch(2, 5));
    assert!(
        matches!(again, Err(partlog::Error::ReadOnly { .. })),
        "{again:?}"
    );
    assert_eq!(log.log_end_offset(), 2);
}

/// A follower's log that starts over lower than where it opened, in a dir whose
/// log-start-offset-checkpoint has no entry for it (lost, or a new dir), comes back after a
/// crash at the lower start: its durable log start, which the leader's low watermark
/// counts, must say so, also once the log start moves up again. It kept the start the log
/// had opened at.
#[test]
fn a_cut_below_the_opened_log_start_lowers_the_durable_start_without_a_checkpoint_entry() {
    let tp = TopicPartition::new("t", 0);
    let sim = SimStorage::new(11);
    {
        let dir = LogDir::open(sim.storage(), "/data", dir_options(small())).expect("open dir");
        let (log, _) = dir.open_log(&tp).expect("open log");
        log.truncate_fully_and_start_at(100).expect("start at 100");
        drop(log);
        dir.close().expect("close");
    }
    sim.remove_raw(Path::new("/data/log-start-offset-checkpoint"))
        .expect("lose the checkpoint");
    let dir = LogDir::open(sim.storage(), "/data", dir_options(small())).expect("reopen dir");
    let (log, _) = dir.open_log(&tp).expect("reopen log");
    assert_eq!(log.log_start_offset(), 100);
    log.truncate_fully_and_start_at(50)
        .expect("start over at 50");
    for i in 0..4 {
        log.append_as_leader(&mut batch(10, 10, i), 0)
            .expect("append");
    }
    log.advance_log_start_offset(80).expect("advance");
    assert!(
        log.durable_log_start_offset() <= 50,
        "durable start {} above where a crash brings the log back",
        log.durable_log_start_offset()
    );
    drop((log, dir));
    sim.crash();
    let dir = LogDir::open(sim.storage(), "/data", dir_options(small())).expect("reopen dir");
    let (log, _) = dir.open_log(&tp).expect("reopen log");
    assert_eq!(
        log.log_start_offset(),
        50,
        "where the crash brought it back"
    );
}

/// A log that was under `Delete` is reopened compacting after a power loss that kept a
/// later segment (a truncation synced it) and took the unsynced tail of the one before.
/// partlog marks a log before it writes a gap in it, so this unmarked log had none: the
/// hole is damage, cut as under `Delete`. The compacted rules, applied at once, took it
/// for a gap. Found by the simulator's check that each recovered batch follows the batch
/// it was written after.
#[test]
fn a_hole_left_under_delete_is_cut_when_the_log_reopens_compacting() {
    let mut holes_possible = 0;
    for seed in 0..20 {
        let sim = SimStorage::new(seed);
        let (log, _) = Log::open(options(&sim, small())).expect("open");
        log.append_as_leader(&mut batch(1, 10, 0), 0)
            .expect("append");
        log.flush().expect("flush");
        for _ in 0..3 {
            log.append_as_leader(&mut batch(2, 10, 0), 0)
                .expect("append");
        }
        log.force_roll().expect("roll"); // under `Delete`, the segment it closes is not synced
        let rolled_at = log.log_end_offset();
        for _ in 0..2 {
            log.append_as_leader(&mut batch(2, 10, 0), 0)
                .expect("append");
        }
        log.truncate_to(rolled_at + 2).expect("truncate"); // syncs the new segment
        drop(log);
        sim.crash();
        let compacting = LogConfig {
            cleanup_policy: partlog::CleanupPolicy::Compact,
            ..small()
        };
        let (log, report) = Log::open(options(&sim, compacting)).expect("reopen");
        let batches = common::read_all(&log);
        let mut next = 0;
        for &(base, last) in &batches {
            assert_eq!(
                base, next,
                "seed {seed}: a hole before {base}: {batches:?}, {report:?}"
            );
            next = last + 1;
        }
        assert_eq!(log.log_end_offset(), next, "seed {seed}");
        assert!(log.may_have_gaps(), "seed {seed}: marked once recovered");
        holes_possible += usize::from(next < rolled_at);
    }
    assert!(
        holes_possible > 0,
        "no seed lost the tail of the rolled segment"
    );
}

/// A process that rolls to a new segment and dies before its next flush leaves the
/// segment's dir entry in the page cache only. The process that opens the log next
/// (uncleanly) syncs the dir at its first flush, which moves the recovery point past that
/// segment: it used to sync the segment's file alone, and a power loss then could take
/// the flushed segment's name away, below the recovery point.
#[test]
fn the_first_flush_after_an_unclean_open_syncs_the_dir() {
    let sim = SimStorage::new(5);
    let (log, _) = Log::open(options(&sim, small())).expect("open");
    log.append_as_follower(&follower_batch(2, 0))
        .expect("append");
    log.flush().expect("flush");
    log.force_roll().expect("roll");
    log.append_as_follower(&follower_batch(2, 2))
        .expect("append");
    drop(log); // dies before the flush that would have synced the dir
    for clean_shutdown in [false, true] {
        let (log, _) = Log::open(LogOpenOptions {
            clean_shutdown,
            ..options(&sim, small())
        })
        .expect("open");
        log.append_as_follower(&follower_batch(1, log.log_end_offset()))
            .expect("append");
        let before = sim.counters().sync_dirs;
        log.flush().expect("flush");
        let synced = sim.counters().sync_dirs - before;
        assert_eq!(
            synced,
            u64::from(!clean_shutdown),
            "clean: {clean_shutdown}"
        );
    }
}

/// A log with offset gaps on `sim` as Kafka leaves one: written by partlog, then its
/// `.lock` and gap mark removed. Returns its batches' first and last offsets.
fn kafka_log_with_gaps(sim: &Arc<SimStorage>) -> Vec<(i64, i64)> {
    let written = vec![(0, 1), (5, 6), (9, 10)];
    let (log, _) = Log::open(options(sim, small())).expect("open");
    for &(base, last) in &written {
        log.append_as_follower(&follower_batch((last - base + 1) as usize, base))
            .expect("append");
    }
    log.flush().expect("flush");
    drop(log);
    for name in [".lock", partlog::log::GAPS_FILE_NAME] {
        sim.remove_raw(&Path::new("/data/t-0").join(name))
            .expect("remove");
    }
    written
}

/// A log of Kafka's whose offsets skip some (it was compacted once) is marked as one that
/// may have gaps at partlog's first open of it, whatever policy it is opened under: an
/// operator's command names none, and opened as a log without gaps, it was cut at its
/// first gap by that open's recovery, or by any later one after an unclean shutdown (the
/// `.lock` written then said the dir was partlog's, and unmarked).
#[test]
fn a_first_open_of_a_kafka_log_with_gaps_under_delete_marks_it() {
    let sim = SimStorage::new(3);
    let written = kafka_log_with_gaps(&sim);
    for open in ["first", "second"] {
        let (log, report) = Log::open(options(&sim, small())).expect("open");
        assert_eq!(common::read_all(&log), written, "{open} open: {report:?}");
        assert!(log.may_have_gaps(), "{open} open");
    }
    // Without a gap, the first open leaves the log unmarked.
    let sim = SimStorage::new(4);
    let (log, _) = Log::open(options(&sim, small())).expect("open");
    log.append_as_follower(&follower_batch(2, 0))
        .expect("append");
    log.append_as_follower(&follower_batch(2, 2))
        .expect("append");
    log.flush().expect("flush");
    drop(log);
    sim.remove_raw(&Path::new("/data/t-0").join(".lock"))
        .expect("remove");
    let (log, _) = Log::open(options(&sim, small())).expect("open");
    assert!(!log.may_have_gaps());
    assert_eq!(common::read_all(&log), vec![(0, 1), (2, 3)]);
}

/// A compacted log of Kafka's (no `.lock`, no mark: its gaps are known only by its
/// policy) that partlog opens for the first time is marked before its `.lock` is durable:
/// once the dir says partlog opened it, an unmarked dir means a log without gaps, and a
/// power loss between the two would have cut its tail at the first gap.
#[test]
fn a_first_open_of_a_compacted_kafka_log_marks_it_before_its_lock_is_durable() {
    let compacting = LogConfig {
        cleanup_policy: partlog::CleanupPolicy::Compact,
        ..small()
    };
    let mut crashes = 0;
    for op in [SimOp::SyncDir, SimOp::Create, SimOp::Sync] {
        for nth in 1..=6 {
            let sim = SimStorage::new(nth);
            let written = kafka_log_with_gaps(&sim);
            sim.fail_nth(op, nth, FaultKind::Crash).expect("arm");
            let generation = sim.generation();
            drop(Log::open(options(&sim, compacting.clone())));
            crashes += usize::from(sim.generation() != generation);
            sim.clear_faults();
            let (log, report) = Log::open(options(&sim, compacting.clone())).expect("reopen");
            assert_eq!(
                common::read_all(&log),
                written,
                "power lost at {op:?} {nth}: {report:?}"
            );
        }
    }
    assert!(crashes > 3, "{crashes} opens met the power loss");
}
