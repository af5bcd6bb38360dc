//! A follower copies a compacted leader: fetches cross the gaps compaction left and the
//! empty batches that keep a cleaned group's end, the follower's log ends at the leader's
//! end offset, and it reads the same records, also after a restart (recovery accepts the
//! gaps of a compacted log).

mod common;

use std::sync::Arc;

use common::{keyed_batch, log_records, LogRecord};
use partlog::checkpoint::TopicPartition;
use partlog::cleaner::{CleanOutcome, Cleaner, CleanerConfig};
use partlog::io::sim::SimStorage;
use partlog::log::Log;
use partlog::manager::{LogDir, LogDirOptions};
use partlog::record::batches;
use partlog::replica::{Acks, Partition, ReplicaConfig, ReplicaManager};
use partlog::{CleanupPolicy, LogConfig, ManualClock};

fn config() -> LogConfig {
    LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        segment_bytes: 1024,
        index_bytes_max: 1024,
        index_interval_bytes: 128,
        ..LogConfig::default()
    }
}

fn broker(
    disk: &Arc<SimStorage>,
    clock: &Arc<ManualClock>,
    id: i32,
) -> (ReplicaManager, Arc<Partition>) {
    broker_with(disk, clock, id, config())
}

fn broker_with(
    disk: &Arc<SimStorage>,
    clock: &Arc<ManualClock>,
    id: i32,
    config: LogConfig,
) -> (ReplicaManager, Arc<Partition>) {
    let options = LogDirOptions {
        config: config.clone(),
        clock: clock.clone(),
    };
    let dir = LogDir::open(disk.storage(), "/data", options).unwrap();
    let manager = ReplicaManager::new(dir, clock.clone());
    let (p, _) = manager
        .open_partition(
            &TopicPartition::new("offsets", 0),
            config,
            ReplicaConfig::new(id),
        )
        .unwrap();
    (manager, p)
}

/// Fetches from `leader` into `follower` until it has the leader's whole log.
fn catch_up(leader: &Partition, follower: &Partition) {
    let end = leader.log().log_end_offset();
    let mut fetches = 0;
    while follower.log().log_end_offset() < end {
        let request = follower.fetch_request(256);
        let response = leader.fetch(&request).unwrap();
        assert!(follower.apply_fetch(&response).unwrap());
        fetches += 1;
        assert!(fetches < 100, "the follower never reached the end");
    }
}

/// A leader on `disk` whose log the cleaner compacted, leaving gaps in and between its
/// segments; its records after the cleaning.
fn cleaned_leader(
    disk: &Arc<SimStorage>,
    clock: &Arc<ManualClock>,
) -> (ReplicaManager, Arc<Partition>, Vec<LogRecord>) {
    let (leader_manager, leader) = broker(disk, clock, 0);
    leader.become_leader(1, vec![0, 1], vec![0]).unwrap();
    for i in 0..60 {
        // Seven keys; every tenth record a tombstone, and the last few keys overwritten
        // only early, so that whole batches and a whole segment's worth disappear.
        let key = format!("key-{}", if i < 40 { i % 7 } else { i % 3 }).into_bytes();
        let value = (i % 10 != 9).then(|| vec![b'v'; 40]);
        leader
            .append(
                &mut keyed_batch(&[(key, value)], 1_000_000),
                Acks::Leader,
                1000,
            )
            .unwrap();
    }
    leader.log().force_roll().unwrap();
    let end = leader.log().log_end_offset();
    assert_eq!(leader.high_watermark(), end);
    let cleaner = Cleaner::new(CleanerConfig::default());
    let dir = leader_manager.log_dir();
    let CleanOutcome::Cleaned { report, .. } = cleaner.clean_once(dir, 1_000_000).unwrap() else {
        panic!("the leader's log needs cleaning");
    };
    assert!(report.records.superseded > 40, "{report:?}");
    let on_leader = log_records(leader.log());
    assert!(on_leader.len() <= 7);
    assert_eq!(
        leader.log().log_end_offset(),
        end,
        "compaction keeps the end offset"
    );
    (leader_manager, leader, on_leader)
}

#[test]
fn a_follower_fetches_a_compacted_log_across_its_gaps() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let (leader_disk, follower_disk) = (SimStorage::new(1), SimStorage::new(2));
    let (_leader_manager, leader, on_leader) = cleaned_leader(&leader_disk, &clock);
    check_read_all(leader.log());

    let (_m, follower) = copy_then_lose_power(&leader, &follower_disk, &clock, config(), 1);
    assert_eq!(log_records(follower.log()), on_leader);
}

/// A new follower on `disk` under `config` copies `leader` whole in leader epoch `epoch`,
/// then loses power after a flush: recovery scans the copy and takes its gaps and empty
/// batches as they are. Returns the follower reopened.
fn copy_then_lose_power(
    leader: &Partition,
    disk: &Arc<SimStorage>,
    clock: &Arc<ManualClock>,
    config: LogConfig,
    epoch: i32,
) -> (ReplicaManager, Arc<Partition>) {
    let (manager, follower) = broker_with(disk, clock, 1, config.clone());
    follower.become_follower(epoch, 0).unwrap();
    catch_up(leader, &follower);
    let copied = log_records(follower.log());
    assert_eq!(copied, log_records(leader.log()));
    follower.log().flush().unwrap();
    drop((follower, manager));
    disk.crash();
    let (manager, follower) = broker_with(disk, clock, 1, config);
    assert_eq!(log_records(follower.log()), copied);
    assert_eq!(
        follower.log().log_end_offset(),
        leader.log().log_end_offset()
    );
    (manager, follower)
}

/// A topic's `cleanup.policy` goes from `compact` to `delete` (Kafka allows it): the
/// leader, reopened under `Delete` after a power loss, keeps the gaps its cleaner left, and
/// a new follower under `Delete` copies them, marks its log as one with gaps, and keeps
/// them through a power loss of its own.
#[test]
fn a_topic_switched_from_compact_to_delete_keeps_and_replicates_its_gaps() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let (leader_disk, follower_disk) = (SimStorage::new(3), SimStorage::new(4));
    let (leader_manager, leader, on_leader) = cleaned_leader(&leader_disk, &clock);
    let end = leader.log().log_end_offset();
    drop((leader, leader_manager));
    leader_disk.crash();
    let delete = LogConfig {
        cleanup_policy: CleanupPolicy::Delete,
        ..config()
    };
    let (_leader_manager, leader) = broker_with(&leader_disk, &clock, 0, delete.clone());
    assert_eq!(log_records(leader.log()), on_leader);
    assert_eq!(leader.log().log_end_offset(), end);
    assert!(leader.log().may_have_gaps());
    leader.become_leader(2, vec![0, 1], vec![0]).unwrap();

    let (_m, follower) = copy_then_lose_power(&leader, &follower_disk, &clock, delete, 2);
    assert_eq!(log_records(follower.log()), on_leader);
    assert!(follower.log().may_have_gaps(), "marked by the first gap");
}

/// `read_all` from any offset up to any bound gives, a slice per segment, the bytes that
/// small fetch after small fetch gives over the same range, gaps and all.
fn check_read_all(log: &Log) {
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    assert!(log.segment_count() > 2, "{} segments", log.segment_count());
    for from in start..=end {
        for up_to in [from, from + 1, from + 7, end, end + 5] {
            let mut fetched = Vec::new();
            let mut next = from;
            while let Some(slice) = log.read(next, 1, Some(up_to)).unwrap() {
                let bytes = slice.to_vec().unwrap();
                for b in batches(&bytes) {
                    next = b.unwrap().header().next_offset();
                }
                fetched.extend(bytes);
            }
            let slices = log.read_all(from, up_to).unwrap();
            let mut all = Vec::new();
            for slice in &slices {
                all.extend(slice.to_vec().unwrap());
            }
            assert_eq!(all, fetched, "from {from} up to {up_to}");
            assert!(slices.len() <= log.segment_count());
        }
    }
    assert!(log.read_all(start - 1, end).is_err(), "below the log start");
    assert!(log.read_all(end + 1, end + 2).is_err(), "past the log end");
}

/// A compacted follower cut inside a gap its own cleaner made ends there, past its last
/// batch. The leader, which has not cleaned that range, answers the next fetch with its
/// batch across that end: the follower moves its end back to the batch's base (it holds
/// nothing from there on) and takes the batch whole, instead of refusing it at every
/// fetch and never catching up.
#[test]
fn a_compacted_follower_ending_in_a_gap_takes_the_leaders_batch_across_it() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let (leader_disk, follower_disk) = (SimStorage::new(1), SimStorage::new(2));
    let (_leader_manager, leader) = broker(&leader_disk, &clock, 0);
    leader.become_leader(1, vec![0, 1], vec![0, 1]).unwrap();
    let (follower_manager, follower) = broker(&follower_disk, &clock, 1);
    follower.become_follower(1, 0).unwrap();
    let keyed = |keys: &str| -> Vec<u8> {
        let records: Vec<_> = keys
            .chars()
            .map(|k| (vec![k as u8], Some(vec![b'v'; 20])))
            .collect();
        keyed_batch(&records, 1_000_000)
    };
    let fetch = || {
        let response = leader.fetch(&follower.fetch_request(1 << 20)).unwrap();
        follower.apply_fetch(&response)
    };
    // Offsets 0..=2, 3..=5, and 6..=8 overwriting every key of the second batch.
    for keys in ["abc", "def", "def"] {
        leader.append(&mut keyed(keys), Acks::Leader, 1000).unwrap();
    }
    for _ in 0..2 {
        fetch().unwrap();
    }
    follower.log().force_roll().unwrap();
    leader.append(&mut keyed("g"), Acks::Leader, 1000).unwrap();
    // The copy, the fetch that tells the leader, the one that brings the HW back.
    for _ in 0..3 {
        fetch().unwrap();
    }
    assert_eq!(follower.high_watermark(), 10);
    let cleaner = Cleaner::new(CleanerConfig::default());
    let outcome = cleaner
        .clean_once(follower_manager.log_dir(), 1_000_000)
        .unwrap();
    assert!(
        matches!(outcome, CleanOutcome::Cleaned { .. }),
        "{outcome:?}"
    );
    let bases = |log: &Log| -> Vec<i64> {
        let mut out = Vec::new();
        let mut next = log.log_start_offset();
        while let Some(slice) = log.read(next, 1 << 20, None).unwrap() {
            for b in batches(&slice.to_vec().unwrap()) {
                let header = *b.unwrap().header();
                out.push(header.base_offset);
                next = header.next_offset();
            }
        }
        out
    };
    assert_eq!(bases(follower.log()), [0, 6, 9], "the batch 3..=5 is gone");

    follower.log().truncate_to(4).unwrap();
    assert_eq!(
        follower.log().log_end_offset(),
        4,
        "the end lies in the gap"
    );
    assert!(fetch().unwrap());
    assert_eq!(follower.log().log_end_offset(), 10);
    assert_eq!(bases(follower.log()), bases(leader.log()));
    assert_eq!(log_records(follower.log()), log_records(leader.log()));
}
