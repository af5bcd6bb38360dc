//! Threads against one log dir: writers open partitions on demand (the first open of a
//! partition races the others' opens of it), append to them and flush the whole dir,
//! while a chores thread flushes, checkpoints and writes high watermarks. Then the disk
//! loses power, or the dir closes cleanly, and it opens again.
//!
//! Checked: every writer of a partition got the same log; after the reopen, every
//! partition serves valid batches with consecutive offsets, recovery finds no corruption,
//! and every record a finished `LogDir::flush` covered is there at its offset (after a
//! clean close, every record is). Two more tests hold one partition's recovery in its
//! sync: the dir's other partitions are reachable meanwhile, and a second opener of the
//! partition gets the first's log, or tries again itself when the first failed.
//!
//! ```text
//! cargo test --release --test log_dir_threads                         # CI: 40 seeds
//! LOG_DIR_THREADS_SEED=7 cargo test --release --test log_dir_threads  # one seed
//! LOG_DIR_THREADS_SEEDS=500 cargo test --release --test log_dir_threads
//! ```

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use common::threads::{self, join, Rng, StopAll};
use common::{keyed_batch, log_records};
use partlog::checkpoint::TopicPartition;
use partlog::io::sim::{FaultKind, SimOp, SimStorage};
use partlog::log::DamageKind;
use partlog::manager::{LogDir, LogDirOptions};
use partlog::{LogConfig, ManualClock};

const WRITERS: usize = 3;
const PARTITIONS: i32 = 4;
const APPENDS_PER_WRITER: usize = 200;

fn options() -> LogDirOptions {
    LogDirOptions {
        config: LogConfig {
            segment_bytes: 4 << 10,
            index_bytes_max: 1024,
            ..LogConfig::default()
        },
        clock: Arc::new(ManualClock::new(1_000_000)),
    }
}

fn tp(partition: i32) -> TopicPartition {
    TopicPartition::new("t", partition)
}

/// What one writer appended: `(partition, offset, key)`, and how many of them (from the
/// first) a finished flush covered.
#[derive(Default)]
struct Written {
    records: Vec<(i32, i64, Vec<u8>)>,
    flushed: usize,
}

fn write(dir: &LogDir, writer: usize, seed: u64) -> Written {
    let mut rng = Rng::new(seed, writer as u64);
    let mut out = Written::default();
    for seq in 0..APPENDS_PER_WRITER {
        rng.pace();
        let partition = rng.below(PARTITIONS as u64) as i32;
        let (log, _) = dir.open_log(&tp(partition)).expect("open log");
        assert!(
            dir.log(&tp(partition))
                .is_some_and(|l| Arc::ptr_eq(&l, &log)),
            "two logs for partition {partition}"
        );
        let key = format!("w{writer}-{seq}").into_bytes();
        let value = vec![b'v'; 1 + rng.below(200) as usize];
        let mut batch = keyed_batch(&[(key.clone(), Some(value))], seq as i64);
        let info = log.append_as_leader(&mut batch, 0).expect("append");
        out.records.push((partition, info.first_offset, key));
        if rng.below(16) == 0 {
            dir.flush().expect("flush");
            out.flushed = out.records.len();
        }
    }
    out
}

fn chores(dir: &LogDir, running: &AtomicBool, seed: u64) {
    let mut rng = Rng::new(seed, 20);
    while running.load(Ordering::Acquire) {
        rng.pace();
        match rng.below(3) {
            0 => dir.flush().expect("flush"),
            1 => dir.write_checkpoints().expect("checkpoints"),
            _ => {
                let hws: Vec<_> = (dir.logs().into_iter())
                    .map(|(tp, log)| (tp, log.log_end_offset()))
                    .collect();
                dir.write_high_watermarks(&hws).expect("high watermarks");
            }
        }
        thread::yield_now();
    }
}

fn check_seed(seed: u64) {
    let disk = SimStorage::new(seed);
    let dir = LogDir::open(disk.storage(), "/data", options()).expect("open dir");
    let running = AtomicBool::new(true);
    let written: Vec<Written> = thread::scope(|s| {
        let _stop_all_on_failure = StopAll([&running]);
        let chores = s.spawn(|| chores(&dir, &running, seed));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let dir = &dir;
                s.spawn(move || write(dir, w, seed))
            })
            .collect();
        let written = writers.into_iter().map(join).collect();
        running.store(false, Ordering::Release);
        join(chores);
        written
    });
    let clean = Rng::new(seed, 30).below(2) == 0;
    if clean {
        dir.close().expect("close");
    } else {
        drop(dir);
        disk.crash();
    }
    let dir = LogDir::open(disk.storage(), "/data", options()).expect("reopen dir");
    assert_eq!(dir.was_clean_shutdown(), clean);
    let mut found: BTreeMap<(i32, i64), Vec<u8>> = BTreeMap::new();
    for (tp, report) in dir.open_all().expect("open every partition") {
        let kind = report.damage.as_ref().map(|d| d.kind);
        assert_ne!(kind, Some(DamageKind::Corruption), "{tp}: {report:?}");
        let log = dir.log(&tp).expect("open");
        common::assert_offsets_consecutive(&log, &tp.to_string());
        for (offset, key, _) in log_records(&log) {
            found.insert((tp.partition, offset), key.expect("key"));
        }
    }
    for w in &written {
        let kept = if clean { w.records.len() } else { w.flushed };
        for (partition, offset, key) in &w.records[..kept] {
            assert_eq!(
                found.get(&(*partition, *offset)),
                Some(key),
                "partition {partition} offset {offset}: flushed, then lost"
            );
        }
    }
}

#[test]
fn writers_open_append_and_flush_partitions_while_chores_checkpoint() {
    common::run_seeds("LOG_DIR_THREADS", 40, |seed| {
        threads::check_seed(seed, "LOG_DIR_THREADS", "log_dir_threads", check_seed)
    });
}

/// A dir whose partitions 0 and 1 hold a flushed batch each, and partition 0 a second
/// batch that reached the disk torn; reopened, partition 1 opened.
fn dir_with_a_torn_partition(disk: &Arc<SimStorage>) -> (LogDir, Arc<partlog::log::Log>) {
    let len = {
        let dir = LogDir::open(disk.storage(), "/d", options()).expect("open dir");
        for p in 0..2 {
            let (log, _) = dir.open_log(&tp(p)).expect("open log");
            let mut batch = keyed_batch(&[(b"k".to_vec(), Some(vec![b'v'; 50]))], 0);
            log.append_as_leader(&mut batch, 0).expect("append");
        }
        dir.flush().expect("flush");
        let (log, _) = dir.open_log(&tp(0)).expect("open log");
        let mut batch = keyed_batch(&[(b"k".to_vec(), Some(vec![b'v'; 50]))], 0);
        log.append_as_leader(&mut batch, 0).expect("append");
        log.size_bytes()
        // The process dies; its last write reached the disk torn.
    };
    disk.crash_keep_written();
    let segment = std::path::Path::new("/d/t-0/00000000000000000000.log");
    disk.truncate_file(segment, len - 10).expect("tear");
    let dir = LogDir::open(disk.storage(), "/d", options()).expect("reopen dir");
    let (other, _) = dir.open_log(&tp(1)).expect("open the other partition");
    (dir, other)
}

type Opened = partlog::Result<Arc<partlog::log::Log>>;

/// Two threads opening partition 0: the first held in its recovery's sync (the caller
/// releases it), the second started after.
fn two_openers_held_in_recovery<'s>(
    s: &'s thread::Scope<'s, '_>,
    dir: &'s LogDir,
    disk: &SimStorage,
) -> [thread::ScopedJoinHandle<'s, Opened>; 2] {
    disk.hold_syncs(".log");
    let open = move || dir.open_log(&tp(0)).map(|(log, _)| log);
    let first = s.spawn(open);
    while disk.syncs_waiting() == 0 {
        thread::yield_now();
    }
    [first, s.spawn(open)]
}

/// One partition's recovery, held in the sync of its cut, holds up neither the lookups nor
/// the opens of the dir's other partitions; a second opener of the same partition waits
/// for it and gets the same log.
#[test]
fn a_partition_recovering_holds_up_no_other() {
    let disk = SimStorage::new(1);
    let (dir, other) = dir_with_a_torn_partition(&disk);
    thread::scope(|s| {
        let dir = &dir;
        let [first, second] = two_openers_held_in_recovery(s, dir, &disk);
        let (tx, rx) = std::sync::mpsc::channel();
        s.spawn(move || {
            let looked_up = dir.log(&tp(1));
            let opened = dir.open_log(&tp(1)).map(|(log, _)| log);
            tx.send((looked_up, opened)).ok();
        });
        let answer = rx.recv_timeout(std::time::Duration::from_secs(10));
        disk.release_syncs();
        let (looked_up, opened) = answer.expect("the other partition waited for a recovery");
        assert!(looked_up.is_some_and(|l| Arc::ptr_eq(&l, &other)));
        assert!(Arc::ptr_eq(&opened.expect("open"), &other));
        let (first, second) = (join(first).expect("recover"), join(second).expect("open"));
        assert!(Arc::ptr_eq(&first, &second), "two logs for one partition");
        assert_eq!(first.log_end_offset(), 1, "the torn batch was cut");
    });
}

/// A recovery that fails (its cut's sync here) leaves the partition to the next opener,
/// which tries again: one waiting for it meanwhile opens the log itself.
#[test]
fn an_opener_waiting_for_a_failed_recovery_tries_again() {
    let disk = SimStorage::new(2);
    let (dir, _) = dir_with_a_torn_partition(&disk);
    thread::scope(|s| {
        let dir = &dir;
        let [first, second] = two_openers_held_in_recovery(s, dir, &disk);
        disk.fail_nth(SimOp::Sync, 1, FaultKind::Eio).expect("arm");
        disk.release_syncs();
        let first = join(first);
        assert!(first.is_err(), "the held sync failed");
        let log = join(second).expect("the second opener recovers it");
        assert_eq!(log.log_end_offset(), 1, "the torn batch was cut");
        assert!(dir.log(&tp(0)).is_some_and(|l| Arc::ptr_eq(&l, &log)));
    });
}
