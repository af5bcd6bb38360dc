//! Where recovery puts what it cuts: the damaged segment's tail is copied to a `.corrupt`
//! file, later segments are renamed (never copied, whatever their size), and a copy that
//! fails on a full disk leaves nothing behind, so a retry does not pile up partial files.

mod common;

use common::{batch, file_bytes, file_names, open, sim_with_disk, small_config, Backend};
use partlog::io::sim::{FaultKind, FaultPlan, SimOp, SimStorage};
use partlog::log::DamageKind;
use partlog::log::Log;

const SEGMENTS: usize = 4;

/// A log of `SEGMENTS` full segments plus an active one, flushed; a bit flipped in the
/// middle of segment 0. Returns the bytes of every segment file, by name.
fn damaged(backend: &Backend, disk: &SimStorage) -> Vec<(String, Vec<u8>)> {
    let (log, _) = open(backend, "t-0", small_config());
    let mut i = 0;
    while log.segment_count() <= SEGMENTS {
        log.append_as_leader(&mut batch(2, 100, i), 1).unwrap();
        i += 1;
    }
    log.flush().unwrap();
    let first = log.segments()[0].log_path().to_path_buf();
    let size = log.segments()[0].size();
    drop(log);
    disk.flip_bit(&first, size / 2, 2).unwrap();
    let dir = backend.root.join("t-0");
    file_names(backend, &dir)
        .into_iter()
        .filter(|n| n.ends_with(".log"))
        .map(|n| (n.clone(), file_bytes(backend, &dir.join(&n))))
        .collect()
}

fn corrupt_files(backend: &Backend) -> Vec<String> {
    file_names(backend, &backend.root.join("t-0"))
        .into_iter()
        .filter(|n| n.contains(".corrupt"))
        .collect()
}

/// Later segments were copied byte by byte into `.corrupt` files: gigabytes of writes, and
/// a full disk failed the open. Now they are renamed, which writes nothing.
#[test]
fn later_segments_are_renamed_aside_not_copied() {
    let (backend, disk) = sim_with_disk(1);
    let before = damaged(&backend, &disk);
    // Any write into a whole-segment `.corrupt` file fails.
    disk.set_faults(FaultPlan {
        write_enospc: 1.0,
        path_suffix: Some(".log.0.corrupt".into()),
        ..FaultPlan::default()
    });
    let (log, report) = open(&backend, "t-0", small_config());
    disk.clear_faults();
    let damage = report.damage.expect("damage");
    assert_eq!(damage.kind, DamageKind::Corruption);
    assert_eq!(damage.moved_to.len(), 1 + SEGMENTS);
    assert_eq!(log.segment_count(), 1);
    // Each later segment's bytes are intact under the new name.
    for (name, bytes) in &before[1..] {
        let aside = backend.root.join("t-0").join(format!("{name}.0.corrupt"));
        assert_eq!(&file_bytes(&backend, &aside), bytes, "{name}");
    }
    let names = file_names(&backend, &backend.root.join("t-0"));
    assert!(
        !names
            .iter()
            .any(|n| n.ends_with(".index") && !n.starts_with(&before[0].0[..20])),
        "indexes of moved segments are gone: {names:?}"
    );
}

/// A full disk while copying the damaged tail fails the open and leaves no partial copy
/// nor any other change; the retry then moves everything aside once.
#[test]
fn a_copy_failed_by_a_full_disk_leaves_nothing_and_a_retry_moves_the_bytes_once() {
    let (backend, disk) = sim_with_disk(2);
    let before = damaged(&backend, &disk);
    disk.set_faults(FaultPlan {
        write_enospc: 1.0,
        path_suffix: Some(".corrupt.tmp".into()),
        ..FaultPlan::default()
    });
    for _ in 0..3 {
        let err = partlog::log::Log::open(common::options(
            &backend,
            "t-0",
            small_config(),
            std::sync::Arc::new(partlog::ManualClock::new(0)),
        ))
        .unwrap_err();
        assert!(err.is_disk_full(), "{err}");
        assert_eq!(corrupt_files(&backend), Vec::<String>::new());
        let dir = backend.root.join("t-0");
        for (name, bytes) in &before {
            assert_eq!(&file_bytes(&backend, &dir.join(name)), bytes, "{name}");
        }
    }
    disk.clear_faults();
    let (log, report) = open(&backend, "t-0", small_config());
    assert!(report.damage.is_some());
    assert_eq!(corrupt_files(&backend).len(), 1 + SEGMENTS);
    assert_eq!(log.segment_count(), 1);
}

/// A compacted log of `SEGMENTS` full segments plus an active one, its batches keyed,
/// flushed, with a bit flipped at `at` in segment `damaged` (a fraction of its size).
/// Returns every batch's offsets, as read before the damage.
fn damaged_compacted(
    backend: &Backend,
    disk: &SimStorage,
    damaged: usize,
    at: f64,
) -> Vec<(i64, i64)> {
    let config = compacted_config();
    let (log, _) = open(backend, "t-0", config);
    let mut i = 0u32;
    while log.segment_count() <= SEGMENTS {
        let records: Vec<_> = (0..4)
            .map(|r| {
                (
                    format!("k{}", (i * 4 + r) % 50).into_bytes(),
                    Some(vec![7u8; 60]),
                )
            })
            .collect();
        log.append_as_leader(&mut common::keyed_batch(&records, 1_000_000), 1)
            .unwrap();
        i += 1;
    }
    log.flush().unwrap();
    let before = common::read_all(&log);
    let segment = &log.segments()[damaged];
    let (path, size) = (segment.log_path().to_path_buf(), segment.size());
    drop(log);
    disk.flip_bit(&path, (size as f64 * at) as u64, 2).unwrap();
    before
}

fn compacted_config() -> partlog::LogConfig {
    partlog::LogConfig {
        cleanup_policy: partlog::CleanupPolicy::Compact,
        ..small_config()
    }
}

/// A power loss at every rename and sync of the recovery that cuts a compacted log,
/// whose offsets may skip (so the next recovery cannot tell a lost segment from a gap),
/// on disks that keep different prefixes of the unsynced renames: the log reopens as a
/// prefix of what it held, never with a hole. The cut renamed the later segments oldest
/// first and cut the damaged one before it synced the dir: a crash could keep the first
/// rename and not the next, or the cut and none of the renames, and the log then went on
/// past a missing range.
#[test]
fn a_crash_while_recovery_cuts_a_compacted_log_leaves_no_hole() {
    let ops = [SimOp::Rename, SimOp::Sync, SimOp::SyncDir];
    // Damage inside segment 0 (its tail is cut), or at the start of segment 1 (it goes
    // whole).
    for (damaged, at) in [(0, 0.5), (1, 0.0)] {
        let (backend, disk) = sim_with_disk(1);
        let before = damaged_compacted(&backend, &disk, damaged, at);
        let start = disk.counters();
        let (_, report) = open(&backend, "t-0", compacted_config());
        assert!(report.damage.is_some(), "damage in segment {damaged}");
        let end = disk.counters();
        let counts = |c: partlog::io::sim::SimCounters| [c.renames, c.syncs, c.sync_dirs];
        for ((op, from), to) in ops.iter().zip(counts(start)).zip(counts(end)) {
            for n in 1..=(to - from) {
                for seed in 1..=6 {
                    let (backend, disk) = sim_with_disk(seed);
                    damaged_compacted(&backend, &disk, damaged, at);
                    disk.fail_nth(*op, n, FaultKind::Crash).unwrap();
                    let clock = std::sync::Arc::new(partlog::ManualClock::new(0));
                    let opened =
                        Log::open(common::options(&backend, "t-0", compacted_config(), clock));
                    assert!(disk.counters().crashes > 0, "{op:?} #{n} did not crash");
                    drop(opened);
                    let (log, _) = open(&backend, "t-0", compacted_config());
                    let after = common::read_all(&log);
                    assert!(
                        !after.is_empty() && before.starts_with(&after),
                        "segment {damaged}, crash at {op:?} #{n}, seed {seed}: {after:?} is \
                         not a prefix of {before:?}"
                    );
                }
            }
        }
    }
}
