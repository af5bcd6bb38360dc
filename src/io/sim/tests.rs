//! Crash semantics of the simulated disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use crate::io::{OpenMode, Storage, StorageFile};

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

/// A disk with a durable `/d` directory.
fn disk(seed: u64) -> Arc<SimStorage> {
    let sim = SimStorage::new(seed);
    sim.create_dir_all(Path::new("/d")).unwrap();
    sim.sync_dir(Path::new("/")).unwrap();
    sim
}

fn create(sim: &SimStorage, path: &str, bytes: &[u8]) -> Arc<dyn StorageFile> {
    let f = sim.open(&p(path), OpenMode::CreateNew).unwrap();
    f.write_at(bytes, 0).unwrap();
    f
}

/// [`create`], the file's data and its entry in `/d` synced.
fn create_durable(sim: &SimStorage, path: &str, bytes: &[u8]) -> Arc<dyn StorageFile> {
    let f = create(sim, path, bytes);
    f.sync_data().unwrap();
    sim.sync_dir(Path::new("/d")).unwrap();
    f
}

#[test]
fn synced_data_and_entry_survive_every_crash() {
    for seed in 0..50 {
        let sim = disk(seed);
        let f = create_durable(&sim, "/d/a", b"durable");
        f.write_at(b"more", 7).unwrap();
        sim.crash();
        let img = sim
            .read_raw(Path::new("/d/a"))
            .expect("synced entry survives");
        assert!(img.starts_with(b"durable"), "seed {seed}: {img:?}");
        assert!(img.len() <= 11);
        assert_eq!(sim.read_durable(Path::new("/d/a")).unwrap(), img);
    }
}

#[test]
fn unsynced_data_may_vanish_and_torn_tails_stay_in_the_unsynced_region() {
    let (mut lost, mut kept, mut torn) = (false, false, false);
    for seed in 0..200 {
        let sim = disk(seed);
        let f = create_durable(&sim, "/d/a", &[1u8; 100]);
        f.write_at(&[2u8; 1000], 100).unwrap();
        sim.crash();
        let img = sim.read_raw(Path::new("/d/a")).unwrap();
        assert!(img.len() >= 100 && img.len() <= 1100);
        assert_eq!(
            &img[..100],
            &[1u8; 100],
            "seed {seed}: synced bytes untouched"
        );
        lost |= img.len() == 100;
        kept |= img.len() == 1100 && img[100..].iter().all(|&b| b == 2);
        torn |= img[100..].iter().any(|&b| b != 2);
    }
    assert!(lost && kept && torn, "lost {lost} kept {kept} torn {torn}");
}

#[test]
fn entries_need_sync_dir() {
    let mut vanished = false;
    for seed in 0..50 {
        let sim = disk(seed);
        let f = create(&sim, "/d/a", b"x");
        f.sync_data().unwrap();
        sim.crash();
        vanished |= !sim.exists(Path::new("/d/a"));
        // After sync_dir the entry is durable for good.
        let f = create(&sim, "/d/b", b"y");
        f.sync_data().unwrap();
        sim.sync_dir(Path::new("/d")).unwrap();
        sim.crash();
        assert_eq!(sim.read_raw(Path::new("/d/b")).unwrap(), b"y");
    }
    assert!(vanished);
}

#[test]
fn unsynced_rename_keeps_old_or_new_name_never_both_or_none() {
    let (mut old, mut new) = (false, false);
    for seed in 0..50 {
        let sim = disk(seed);
        sim.write_raw(Path::new("/d/target"), b"old").unwrap();
        let f = create(&sim, "/d/tmp", b"new");
        f.sync_data().unwrap();
        sim.sync_dir(Path::new("/d")).unwrap();
        sim.rename(Path::new("/d/tmp"), Path::new("/d/target"))
            .unwrap();
        sim.crash();
        let target = sim.read_raw(Path::new("/d/target")).unwrap();
        let tmp = sim.exists(Path::new("/d/tmp"));
        match target.as_slice() {
            b"old" => {
                assert!(tmp);
                old = true;
            }
            b"new" => {
                assert!(!tmp);
                new = true;
            }
            other => panic!("seed {seed}: {other:?}"),
        }
    }
    assert!(old && new);
}

#[test]
fn new_directory_needs_its_parent_synced() {
    let mut vanished = false;
    for seed in 0..30 {
        let sim = disk(seed);
        sim.create_dir_all(Path::new("/d/p/q")).unwrap();
        let f = create(&sim, "/d/p/q/f", b"z");
        f.sync_data().unwrap();
        sim.sync_dir(Path::new("/d/p/q")).unwrap();
        sim.crash();
        vanished |= !sim.exists(Path::new("/d/p/q/f"));
        if !sim.exists(Path::new("/d/p/q")) {
            assert!(!sim.exists(Path::new("/d/p/q/f")));
        }
    }
    assert!(vanished);
}

fn scenario(seed: u64) -> (Vec<u8>, Vec<crate::io::DirEntry>) {
    let sim = disk(seed);
    let f = create(&sim, "/d/a", &[5u8; 3000]);
    f.sync_data().unwrap();
    f.write_at(&[6u8; 5000], 1000).unwrap();
    create(&sim, "/d/b", b"b");
    sim.crash();
    (
        sim.read_raw(Path::new("/d/a")).unwrap_or_default(),
        sim.list_dir(Path::new("/d")).unwrap(),
    )
}

#[test]
fn same_seed_same_image() {
    for seed in 0..20 {
        assert_eq!(scenario(seed), scenario(seed));
    }
    let distinct: std::collections::BTreeSet<_> = (0..20).map(|s| scenario(s).0).collect();
    assert!(distinct.len() > 1);
}

/// A kill keeps the page cache, readable by the next process, but syncs nothing: a power
/// loss after it can still lose what was never synced, data and directory entries alike.
#[test]
fn a_kill_keeps_the_page_cache_without_making_it_durable() {
    let (mut data_lost, mut entry_lost) = (false, false);
    for seed in 0..100 {
        let sim = disk(seed);
        let f = create_durable(&sim, "/d/a", b"durable");
        f.write_at(b" and more", 7).unwrap();
        create(&sim, "/d/b", b"new");
        sim.crash_keep_written();
        assert_eq!(
            sim.read_raw(Path::new("/d/a")).unwrap(),
            b"durable and more"
        );
        assert_eq!(sim.read_raw(Path::new("/d/b")).unwrap(), b"new");
        assert_eq!(sim.read_durable(Path::new("/d/a")).unwrap(), b"durable");
        sim.crash();
        let img = sim.read_raw(Path::new("/d/a")).unwrap();
        assert!(img.starts_with(b"durable"), "seed {seed}: {img:?}");
        data_lost |= img.len() < 16;
        entry_lost |= !sim.exists(Path::new("/d/b"));
    }
    assert!(
        data_lost && entry_lost,
        "a power loss after a kill never lost anything"
    );
}

#[test]
fn crash_makes_handles_stale_and_releases_locks() {
    let sim = disk(1);
    let f = create(&sim, "/d/a", b"x");
    let lock = sim.lock_dir(Path::new("/d")).unwrap();
    assert!(matches!(
        sim.lock_dir(Path::new("/d")),
        Err(Error::DirLocked { .. })
    ));
    sim.crash_keep_written();
    let again = sim.lock_dir(Path::new("/d")).unwrap();
    drop(lock); // the dead guard must not release the new holder's lock
    assert!(matches!(
        sim.lock_dir(Path::new("/d")),
        Err(Error::DirLocked { .. })
    ));
    drop(again);
    let err = f.len().unwrap_err();
    assert!(matches!(&err, Error::Io { source, .. } if source.raw_os_error() == Some(ESTALE)));
    assert!(f.write_at(b"y", 0).is_err());
    assert_eq!(
        sim.read_raw(Path::new("/d/a")).unwrap(),
        b"x",
        "kill keeps the page cache"
    );
}

#[test]
fn one_shot_faults_hit_the_nth_call_on_matching_paths() {
    let sim = disk(3);
    sim.set_faults(FaultPlan {
        path_suffix: Some(".log".into()),
        ..FaultPlan::default()
    });
    sim.fail_nth(SimOp::Write, 2, FaultKind::Enospc).unwrap();
    let idx = create(&sim, "/d/0.index", b"i");
    let log = create(&sim, "/d/0.log", b"1");
    idx.write_at(b"i", 1).unwrap();
    let e = log.write_at(b"2", 1).unwrap_err();
    assert!(e.is_disk_full());
    log.write_at(b"3", 1).unwrap();
    assert_eq!(
        sim.counters().writes,
        5,
        "failed and filtered-out calls count too"
    );
}

#[test]
fn crash_fault_crashes_at_the_chosen_write() {
    let sim = disk(4);
    let f = create_durable(&sim, "/d/a", b"x");
    sim.fail_nth(SimOp::Write, 3, FaultKind::Crash).unwrap();
    f.write_at(b"a", 1).unwrap();
    f.write_at(b"b", 2).unwrap();
    assert!(f.write_at(b"c", 3).is_err());
    assert_eq!(sim.generation(), 1);
    assert!(sim.read_raw(Path::new("/d/a")).unwrap().starts_with(b"x"));
}

#[test]
fn probabilistic_faults_are_deterministic() {
    let run = |seed| {
        let sim = disk(seed);
        sim.set_faults(FaultPlan {
            write_eio: 0.3,
            read_eio: 0.3,
            ..FaultPlan::default()
        });
        let f = sim.open(Path::new("/d/a"), OpenMode::Create).unwrap();
        let mut buf = [0u8; 4];
        (0..50)
            .map(|i| {
                (
                    f.write_at(b"abcd", i * 4).is_ok(),
                    f.read_at(&mut buf, 0).is_ok(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(run(8), run(8));
    assert!(run(8).iter().any(|r| !r.0) && run(8).iter().any(|r| r.0));
}

#[test]
fn damage_helpers_hit_both_images() {
    let sim = disk(5);
    let a = Path::new("/d/a");
    sim.write_raw(a, &[0xFFu8; 16]).unwrap();
    sim.flip_bit(a, 0, 0).unwrap();
    sim.zero_range(a, 4, 100).unwrap();
    sim.crash();
    let img = sim.read_raw(a).unwrap();
    assert_eq!(img[0], 0xFE);
    assert!(img[4..].iter().all(|&b| b == 0));
    sim.truncate_file(a, 2).unwrap();
    assert_eq!(sim.read_durable(a).unwrap().len(), 2);
    assert!(sim.flip_bit(a, 2, 0).is_err());
    sim.remove_raw(a).unwrap();
    sim.crash();
    assert!(sim.read_raw(a).is_none());
    assert!(sim.flip_bit(Path::new("/d/missing"), 0, 0).is_err());
}

#[test]
fn map_flush_is_durable_and_drop_reaches_the_page_cache() {
    let sim = disk(6);
    let f = create(&sim, "/d/i", &[0u8; 64]);
    f.sync_data().unwrap();
    sim.sync_dir(Path::new("/d")).unwrap();
    let mut m = f.map_mut(64).unwrap();
    m.as_mut_slice()[..3].copy_from_slice(b"abc");
    m.flush().unwrap();
    m.as_mut_slice()[10] = b'z';
    drop(m);
    let mut buf = [0u8; 11];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[..3], b"abc");
    assert_eq!(buf[10], b'z');
    assert_eq!(&sim.read_durable(Path::new("/d/i")).unwrap()[..3], b"abc");
}

#[test]
fn map_stores_reach_the_page_cache_at_once_and_a_kill_keeps_them() {
    let sim = disk(9);
    let f = create(&sim, "/d/i", &[0u8; 64]);
    f.sync_data().unwrap();
    sim.sync_dir(Path::new("/d")).unwrap();
    let mut m = f.map_mut(64).unwrap();
    m.store(8, b"entry");
    m.as_mut_slice()[20] = b'x'; // a plain write to the copy waits for a write-back
    let mut buf = [0u8; 21];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[8..13], b"entry");
    assert_eq!(buf[20], 0);
    m.zero(8, 10);
    let durable = sim.read_durable(Path::new("/d/i")).unwrap();
    assert_eq!(&durable[8..13], &[0u8; 5], "not synced yet");
    sim.crash_keep_written(); // the process dies with the map alive
    drop(m);
    let raw = sim.read_raw(Path::new("/d/i")).unwrap();
    assert_eq!(&raw[8..13], b"\0\0try");
    assert_eq!(raw[20], 0, "never written back");
}

#[test]
fn removed_open_file_stays_readable_until_closed() {
    let sim = disk(7);
    let f = create(&sim, "/d/a", b"data");
    sim.remove_file(Path::new("/d/a")).unwrap();
    sim.sync_dir(Path::new("/d")).unwrap();
    assert!(!sim.exists(Path::new("/d/a")));
    let mut buf = [0u8; 4];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"data");
}

#[test]
fn huge_positions_are_errors_not_aborts() {
    let sim = disk(8);
    let f = create(&sim, "/d/a", b"");
    assert!(f.write_at(b"x", u64::MAX).is_err());
    assert!(f.set_len(u64::MAX).is_err());
    assert!(sim.truncate_file(Path::new("/d/a"), u64::MAX).is_err());
}

/// Appending must cost per write, not per file size (no whole-image copies per sync).
#[test]
fn appends_and_syncs_are_not_quadratic() {
    let total: u64 = if cfg!(debug_assertions) {
        8 << 20
    } else {
        100 << 20
    };
    let sim = disk(9);
    let f = create(&sim, "/d/0.log", b"");
    let chunk = vec![0xABu8; 16 * 1024];
    let start = std::time::Instant::now();
    let mut pos = 0;
    while pos < total {
        f.write_at(&chunk, pos).unwrap();
        f.sync_data().unwrap();
        pos += chunk.len() as u64;
    }
    sim.crash();
    assert!(
        start.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn two_one_shots_on_the_same_call_hit_consecutive_calls() {
    let sim = disk(10);
    let f = create(&sim, "/d/a", b"");
    sim.fail_nth(SimOp::Sync, 1, FaultKind::Eio).unwrap();
    sim.fail_nth(SimOp::Sync, 1, FaultKind::Enospc).unwrap();
    assert!(!f.sync_data().unwrap_err().is_disk_full());
    assert!(f.sync_data().unwrap_err().is_disk_full());
    f.sync_data().unwrap();
}

#[test]
fn a_map_keeps_a_removed_file_alive() {
    let sim = disk(11);
    let f = create(&sim, "/d/i", &[0u8; 16]);
    let mut m = f.map_mut(16).unwrap();
    drop(f);
    sim.remove_file(Path::new("/d/i")).unwrap();
    sim.sync_dir(Path::new("/d")).unwrap();
    m.as_mut_slice()[0] = 1;
    m.flush().unwrap();
}

#[test]
fn a_finished_stream_survives_a_crash() {
    let sim = disk(5);
    sim.create_dir_all(Path::new("/d")).unwrap();
    let mut stream = sim.create_stream(Path::new("/d/0.log.cleaned")).unwrap();
    stream.append(&[7u8; 3000]).unwrap();
    assert_eq!(stream.finish().unwrap(), 3000);
    sim.crash();
    assert_eq!(
        sim.read_raw(Path::new("/d/0.log.cleaned")).unwrap(),
        vec![7u8; 3000],
        "finish syncs what it wrote"
    );
}
