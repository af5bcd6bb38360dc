//! The `replication-offset-checkpoint`: written on the tick interval (5 s by default) and at
//! a clean shutdown, read at open and clamped to the log.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::batch;
use partlog::checkpoint::TopicPartition;
use partlog::io::sim::SimStorage;
use partlog::manager::{LogDir, LogDirOptions};
use partlog::replica::{
    Acks, Partition, ReplicaConfig, ReplicaManager, DEFAULT_HW_CHECKPOINT_INTERVAL_MS,
};
use partlog::{Error, LogConfig, ManualClock};

const CHECKPOINT: &str = "/data/replication-offset-checkpoint";

fn open(disk: &Arc<SimStorage>, clock: &Arc<ManualClock>) -> (ReplicaManager, Arc<Partition>) {
    open_as(disk, clock, 0)
}

/// The manager of broker `id`'s dir on `disk`, and its replica of `t-0`.
fn open_as(
    disk: &Arc<SimStorage>,
    clock: &Arc<ManualClock>,
    id: i32,
) -> (ReplicaManager, Arc<Partition>) {
    let options = LogDirOptions {
        config: LogConfig::default(),
        clock: clock.clone(),
    };
    let dir = LogDir::open(disk.storage(), "/data", options).unwrap();
    let manager = ReplicaManager::new(dir, clock.clone());
    let (p, _) = manager
        .open_partition(
            &TopicPartition::new("t", 0),
            LogConfig::default(),
            ReplicaConfig::new(id),
        )
        .unwrap();
    (manager, p)
}

/// A lone leader: every `acks=1` append moves the HW to the log end.
fn lead_and_append(p: &Partition, batches: usize) {
    if !p.is_leader() {
        p.become_leader(p.leader_epoch().max(0) + 1, vec![0], vec![0])
            .unwrap();
    }
    for i in 0..batches {
        p.append(&mut batch(2, 10, i as i64), Acks::Leader, 1000)
            .unwrap();
    }
}

/// A lone leader on a disk seeded `seed`, with `batches` appended and flushed.
fn flushed_leader(
    seed: u64,
    batches: usize,
) -> (
    Arc<SimStorage>,
    Arc<ManualClock>,
    ReplicaManager,
    Arc<Partition>,
) {
    let disk = SimStorage::new(seed);
    let clock = Arc::new(ManualClock::new(1_000_000));
    let (manager, p) = open(&disk, &clock);
    lead_and_append(&p, batches);
    p.log().flush().unwrap();
    (disk, clock, manager, p)
}

/// The high watermark the checkpoint file holds for `t-0`, if the file exists.
fn checkpointed(disk: &SimStorage) -> Option<i64> {
    let text = String::from_utf8(disk.read_raw(Path::new(CHECKPOINT))?).unwrap();
    let line = text.lines().find(|l| l.starts_with("t 0 "))?;
    Some(line.rsplit(' ').next()?.parse().unwrap())
}

#[test]
fn written_on_the_tick_interval_and_read_back_after_a_crash() {
    let disk = SimStorage::new(1);
    let clock = Arc::new(ManualClock::new(1_000_000));
    let (manager, p) = open(&disk, &clock);
    lead_and_append(&p, 5);
    assert_eq!(p.high_watermark(), 10);

    clock.advance_ms(DEFAULT_HW_CHECKPOINT_INTERVAL_MS - 1);
    manager.tick().unwrap();
    assert_eq!(
        checkpointed(&disk),
        None,
        "written before the interval passed"
    );
    clock.advance_ms(1);
    manager.tick().unwrap();
    assert_eq!(checkpointed(&disk), Some(10));

    // More appends, but the broker dies before the next interval: the log (flushed) has
    // them, the checkpoint does not, and the replica reopens with the checkpointed HW.
    lead_and_append(&p, 2);
    p.log().flush().unwrap();
    clock.advance_ms(1000);
    manager.tick().unwrap();
    drop((manager, p));
    disk.crash();
    let (_manager, p) = open(&disk, &clock);
    assert_eq!(p.log().log_end_offset(), 14);
    assert_eq!(p.high_watermark(), 10);
}

/// A `replication-offset-checkpoint` that does not parse fails the dir's open with the
/// file's name, as Kafka takes such a dir offline; a recovery-point checkpoint that does
/// not parse is a warning (recovery goes from the start). The high watermarks used to
/// read as none: a follower in high-watermark truncation would have cut its log to its
/// start, and the next write dropped every partition's entry for good.
#[test]
fn an_unreadable_high_watermark_checkpoint_fails_the_open() {
    let disk = SimStorage::new(9);
    let clock = Arc::new(ManualClock::new(1_000));
    let (manager, p) = open(&disk, &clock);
    lead_and_append(&p, 3);
    drop(p);
    manager.close().unwrap();
    let storage = disk.storage();
    let write = |name: &str, text: &str| {
        partlog::checkpoint::write_atomic(storage.as_ref(), &Path::new("/data").join(name), text)
            .unwrap()
    };
    let options = || LogDirOptions {
        config: LogConfig::default(),
        clock: clock.clone(),
    };
    write("recovery-point-offset-checkpoint", "0\n1\nt zero 5\n");
    let dir = LogDir::open(disk.storage(), "/data", options()).unwrap();
    assert!(
        dir.warnings().iter().any(|w| w.contains("unreadable")),
        "{:?}",
        dir.warnings()
    );
    drop(dir);
    write("replication-offset-checkpoint", "0\n1\nt 0 five\n");
    let err = LogDir::open(disk.storage(), "/data", options()).unwrap_err();
    assert!(
        matches!(&err, Error::Parse { file, .. } if file.ends_with("replication-offset-checkpoint")),
        "{err}"
    );
}

#[test]
fn written_at_clean_shutdown() {
    let disk = SimStorage::new(2);
    let clock = Arc::new(ManualClock::new(1_000_000));
    let (manager, p) = open(&disk, &clock);
    lead_and_append(&p, 3);
    drop(p);
    manager.close().unwrap();
    assert_eq!(checkpointed(&disk), Some(6));
    disk.crash(); // a clean shutdown synced it all
    let (_manager, p) = open(&disk, &clock);
    assert_eq!(p.high_watermark(), 6);
}

/// A checkpointed HW above what survived a power loss is clamped to the log end.
#[test]
fn clamped_to_the_log_at_open() {
    let disk = SimStorage::new(3);
    let clock = Arc::new(ManualClock::new(1_000_000));
    let (manager, p) = open(&disk, &clock);
    lead_and_append(&p, 4);
    manager.checkpoint_high_watermarks().unwrap();
    assert_eq!(checkpointed(&disk), Some(8));
    drop((manager, p));
    disk.crash(); // the log was never flushed
    let (_manager, p) = open(&disk, &clock);
    let end = p.log().log_end_offset();
    assert!(end < 8, "the unflushed log kept {end}");
    assert_eq!(p.high_watermark(), end);
}

/// DeleteRecords through the manager writes the log-start checkpoint before it returns:
/// a power loss right after it keeps the records below the new log start deleted. Moved on
/// the replica alone, as Kafka does until its next checkpoint, the log start goes back.
#[test]
fn delete_records_is_durable_when_it_returns() {
    let tp = TopicPartition::new("t", 0);
    let (disk, clock, manager, p) = flushed_leader(4, 5);
    p.advance_log_start_offset(4).unwrap();
    drop((manager, p));
    disk.crash();

    let (manager, p) = open(&disk, &clock);
    assert_eq!(
        p.log().log_start_offset(),
        0,
        "not written: back at the start"
    );
    lead_and_append(&p, 1);
    assert_eq!(manager.delete_records(&tp, 6).unwrap(), 6);
    drop((manager, p));
    disk.crash();

    let (manager, p) = open(&disk, &clock);
    assert_eq!(p.log().log_start_offset(), 6, "written before it returned");
    assert!(
        p.log().read(5, 1 << 20, None).is_err(),
        "below the log start"
    );
    // Only a leader this dir hosts deletes records.
    let unknown = manager.delete_records(&TopicPartition::new("t", 9), 1);
    assert!(
        matches!(unknown, Err(Error::NotLeaderOrFollower)),
        "{unknown:?}"
    );
    p.become_follower(p.leader_epoch() + 1, 1).unwrap();
    let follower = manager.delete_records(&tp, 8);
    assert!(
        matches!(follower, Err(Error::NotLeaderOrFollower)),
        "{follower:?}"
    );
    assert_eq!(p.log().log_start_offset(), 6, "nothing moved");
}

/// A follower takes its leader's new log start (DeleteRecords) with a fetch; its manager
/// writes it at the next tick, so a power loss after that tick keeps it, where one before
/// it brings the old log start back. Its fetches report the written one, so the leader's
/// low watermark reaches the new start (DeleteRecords is done) only after that tick.
#[test]
fn a_followers_new_log_start_is_written_at_the_next_tick() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let (leader_disk, follower_disk) = (SimStorage::new(5), SimStorage::new(6));
    let tp = TopicPartition::new("t", 0);
    let (leaders, leader) = open_as(&leader_disk, &clock, 0);
    leader.become_leader(1, vec![0, 1], vec![0, 1]).unwrap();
    for i in 0..5 {
        leader
            .append(&mut batch(2, 10, i), Acks::Leader, 1000)
            .unwrap();
    }
    let fetch = |follower: &Partition| {
        for _ in 0..3 {
            let response = leader.fetch(&follower.fetch_request(1 << 20)).unwrap();
            assert!(follower.apply_fetch(&response).unwrap());
        }
    };
    let start_follower = || {
        let (manager, follower) = open_as(&follower_disk, &clock, 1);
        follower.become_follower(1, 0).unwrap();
        (manager, follower)
    };
    let (followers, follower) = start_follower();
    fetch(&follower);
    assert_eq!(leader.high_watermark(), 10);
    assert_eq!(leaders.delete_records(&tp, 6).unwrap(), 6);
    fetch(&follower);
    assert_eq!(
        follower.log().log_start_offset(),
        6,
        "taken from the leader"
    );
    // Its fetches report the start a crash cannot take back: still 0, so DeleteRecords is
    // not done (the crash below brings the records back on this broker).
    assert_eq!(follower.fetch_request(1 << 20).log_start_offset, 0);
    assert_eq!(leader.low_watermark(), Some(0));
    follower.log().flush().unwrap();
    drop((followers, follower));
    follower_disk.crash();

    let (followers, follower) = start_follower();
    assert_eq!(follower.log().log_start_offset(), 0, "no tick: not written");
    fetch(&follower);
    assert_eq!(follower.log().log_start_offset(), 6);
    followers.tick().unwrap();
    // Written: its next fetch reports it, and DeleteRecords is done.
    fetch(&follower);
    assert_eq!(leader.low_watermark(), Some(6));
    drop((followers, follower));
    follower_disk.crash();

    let (_followers, follower) = start_follower();
    assert_eq!(follower.log().log_start_offset(), 6, "written at the tick");
}

/// DeleteRecords racing the ticks that write moved log starts: every call writes the
/// checkpoint before it returns, whichever write lands last, so after a power loss the log
/// start is the last one returned.
#[test]
fn delete_records_racing_ticks_is_durable_when_it_returns() {
    let tp = TopicPartition::new("t", 0);
    let (disk, clock, manager, p) = flushed_leader(7, 50);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let last = std::thread::scope(|s| {
        let ticker = s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                manager.tick().unwrap();
            }
        });
        let mut last = 0;
        for offset in (2..=100).step_by(2) {
            last = manager.delete_records(&tp, offset).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        ticker.join().unwrap();
        last
    });
    assert_eq!(last, 100);
    drop((manager, p));
    disk.crash();
    let (_manager, p) = open(&disk, &clock);
    assert_eq!(p.log().log_start_offset(), last);
}

/// A lone leader on a disk seeded `seed` whose first segment retention deleted: its
/// files renamed `.deleted`, due after `file_delete_delay_ms`.
fn with_a_deleted_segment(
    seed: u64,
) -> (
    Arc<SimStorage>,
    Arc<ManualClock>,
    ReplicaManager,
    Arc<Partition>,
) {
    let (disk, clock, manager, p) = flushed_leader(seed, 3);
    p.log().force_roll().unwrap();
    lead_and_append(&p, 3);
    p.advance_log_start_offset(p.log().log_end_offset())
        .unwrap();
    assert_eq!(p.delete_old_segments().unwrap().segments_deleted, 1);
    (disk, clock, manager, p)
}

/// `ReplicaManager::tick` removes the `.deleted` files of its replicas once their delay
/// (`file_delete_delay_ms`, 60 s) has passed.
#[test]
fn a_tick_removes_deleted_files_once_due() {
    let (disk, clock, manager, _) = with_a_deleted_segment(7);
    let deleted = || {
        let names = disk.storage().list_dir(Path::new("/data/t-0")).unwrap();
        names
            .iter()
            .filter(|e| e.name.ends_with(".deleted"))
            .count()
    };
    assert!(deleted() > 0);
    manager.tick().unwrap();
    assert!(deleted() > 0, "not yet due");
    clock.advance_ms(LogConfig::default().file_delete_delay_ms);
    manager.tick().unwrap();
    assert_eq!(deleted(), 0);
}

/// One replica's recovery (here held in the copy of its damaged tail aside, as a long
/// scan would hold it) holds up neither `tick` nor a look-up of another replica: the
/// manager used to open logs under the lock of its replicas, and every tick (ISR
/// shrinks, `acks=all` timeouts, checkpoints) waited for the slowest recovery.
#[test]
fn a_replica_recovering_holds_up_no_tick() {
    use std::sync::mpsc;
    use std::time::Duration;

    let disk = SimStorage::new(9);
    let clock = Arc::new(ManualClock::new(1_000_000));
    let (t, u) = (TopicPartition::new("t", 0), TopicPartition::new("u", 0));
    let (manager, p) = open(&disk, &clock);
    let (q, _) = manager
        .open_partition(&u, LogConfig::default(), ReplicaConfig::new(0))
        .unwrap();
    lead_and_append(&p, 2);
    lead_and_append(&q, 2);
    drop((p, q));
    manager.close().unwrap();
    // An unclean stop, and bytes past `u-0`'s last batch that recovery moves aside.
    disk.remove_raw(Path::new("/data/.kafka_cleanshutdown"))
        .unwrap();
    let segment = Path::new("/data/u-0/00000000000000000000.log");
    let mut bytes = disk.read_raw(segment).unwrap();
    bytes.extend_from_slice(&[0xab; 100]);
    disk.write_raw(segment, &bytes).unwrap();

    let (manager, _) = open(&disk, &clock);
    disk.hold_syncs(".corrupt.tmp");
    std::thread::scope(|s| {
        let manager = &manager;
        let opener =
            s.spawn(|| manager.open_partition(&u, LogConfig::default(), ReplicaConfig::new(0)));
        let mut waited = 0;
        while disk.syncs_waiting() == 0 {
            assert!(waited < 10_000, "the recovery never copied the tail aside");
            std::thread::sleep(Duration::from_millis(1));
            waited += 1;
        }
        let (done, ticked) = mpsc::channel();
        s.spawn(move || {
            let tick = manager.tick();
            let found = manager.partition(&t).is_some();
            let _ = done.send((tick, found));
        });
        let outcome = ticked.recv_timeout(Duration::from_secs(10));
        disk.release_syncs();
        let (tick, found) = outcome.expect("the tick waited for the other replica's recovery");
        tick.unwrap();
        assert!(found);
        let (opened, report) = opener.join().unwrap().unwrap();
        assert!(report.damage.is_some(), "the tail was damaged");
        assert!(Arc::ptr_eq(&opened, &manager.partition(&u).unwrap()));
    });
}

/// A log that failed (read-only after a write error) with `.deleted` files due made every
/// tick fail: its removal could not take the writer's lock, and the tick returned before
/// the checkpoints of every other replica. Its files now wait for its reopening.
#[test]
fn a_failed_log_with_deleted_files_due_fails_no_tick() {
    use partlog::io::sim::{FaultKind, SimOp};
    let (disk, clock, manager, p) = with_a_deleted_segment(8);
    disk.fail_nth(SimOp::Write, 1, FaultKind::Eio).unwrap();
    assert!(p.append(&mut batch(1, 10, 9), Acks::Leader, 1000).is_err());
    assert!(p.log().check_writable().is_err(), "the log failed");
    clock.advance_ms(LogConfig::default().file_delete_delay_ms);
    manager.tick().unwrap();
    manager.tick().unwrap();
}

/// A log of a dir whose partitions are replicas opens with its checkpointed high watermark
/// published (its log start without an entry), before the dir shows it to anyone. It used
/// to open unbounded, as a log no replica owns, until the replica layer set the HW a
/// moment later: the dir's cleaner, running meanwhile, cleaned past the HW, and took a
/// committed record away for a later one of its key that a truncation could still cut.
#[test]
fn a_replicas_log_opens_with_its_checkpointed_high_watermark() {
    use partlog::cleaner::{CleanOutcome, Cleaner, CleanerConfig};
    let disk = SimStorage::new(3);
    let clock = Arc::new(ManualClock::new(1_000_000));
    let compacted = LogConfig {
        cleanup_policy: partlog::CleanupPolicy::Compact,
        segment_bytes: 1024,
        index_bytes_max: 1024,
        ..LogConfig::default()
    };
    let options = || LogDirOptions {
        config: compacted.clone(),
        clock: clock.clone(),
    };
    let (t0, t1) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
    let dir = LogDir::open(disk.storage(), "/data", options()).unwrap();
    let mut committed = 0;
    for tp in [&t0, &t1] {
        let (log, _) = dir.open_log(tp).unwrap();
        for round in 0..3 {
            for k in 0..4 {
                let record = (format!("k{k}").into_bytes(), Some(vec![round]));
                log.append_as_leader(&mut common::keyed_batch(&[record], 1_000), 0)
                    .unwrap();
            }
            log.force_roll().unwrap();
            if round == 0 {
                committed = log.log_end_offset();
            }
        }
    }
    // Only `t-0` has an entry: committed up to the end of the first round.
    dir.write_high_watermarks(&[(t0.clone(), committed)])
        .unwrap();
    dir.close().unwrap();

    let dir = LogDir::open(disk.storage(), "/data", options()).unwrap();
    let (log0, _) = dir.open_log(&t0).unwrap();
    let (log1, _) = dir.open_log(&t1).unwrap();
    assert_eq!(log0.high_watermark(), committed);
    assert_eq!(log1.high_watermark(), log1.log_start_offset());
    let cleaner = Cleaner::new(CleanerConfig::default());
    while let CleanOutcome::Cleaned { .. } = cleaner.clean_once(&dir, 2_000_000).unwrap() {}
    for log in [&log0, &log1] {
        assert_eq!(
            common::log_records(log).len(),
            12,
            "nothing cleaned above the HW"
        );
    }
}
