//! The offsets store's membership against its expiry and group deletion, threads against
//! each other: a member joining a group (`set_group_active`) while the expiry, or a
//! DeleteGroups, decides on the group's offsets. Both used to read the membership, let go
//! of it, then write their tombstones: a member that joined in between, and read its
//! group's offsets, lost them a moment later, and its consumers started over from their
//! reset policy. Kafka decides and writes in one event of the group coordinator.
//!
//! Checked each round: once the joining member read its offsets, they stay. The old
//! window was narrow (between the expiry's read of the memberships and its hold of the
//! store's lock, where a reader had to slip in), and these rounds seldom met it: they
//! check the rule under threads, and hold it now that the two decide under one lock.

mod common;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use partlog::checkpoint::TopicPartition;
use partlog::io::sim::SimStorage;
use partlog::manager::{LogDir, LogDirOptions};
use partlog::offsets::{offsets_log_config, OffsetCommit, OffsetsConfig, OffsetsStore};
use partlog::replica::{Partition, ReplicaConfig, ReplicaManager};
use partlog::{Clock, ManualClock};

const GROUP: &str = "joining";
/// Other groups whose offsets expire too, so that the expiry's walk takes a while.
const OTHERS: usize = 500;
const ROUNDS: u64 = 12;

/// A store on a lone leader replica of offsets partition 0 (its own simulated disk).
fn lone_store(
    seed: u64,
    clock: &Arc<ManualClock>,
) -> (ReplicaManager, Arc<Partition>, OffsetsStore) {
    let disk = SimStorage::new(seed);
    let options = LogDirOptions {
        config: offsets_log_config(),
        clock: clock.clone(),
    };
    let dir = LogDir::open(disk.storage(), "/data", options).expect("log dir");
    let manager = ReplicaManager::new(dir, clock.clone());
    let tp = TopicPartition::new("__consumer_offsets", 0);
    let (replica, _) = manager
        .open_partition(&tp, offsets_log_config(), ReplicaConfig::new(0))
        .expect("partition");
    replica.become_leader(1, vec![0], vec![0]).expect("lead");
    let config = OffsetsConfig {
        partitions: 1,
        ..OffsetsConfig::default()
    };
    let store = OffsetsStore::new(config, clock.clone());
    store.host(0, replica.clone());
    store.become_leader(0).expect("store leads");
    store.load(0).expect("load");
    (manager, replica, store)
}

fn commit(store: &OffsetsStore, group: &str) {
    let offsets = [OffsetCommit {
        topic: "orders".into(),
        partition: 0,
        offset: 42,
        leader_epoch: 1,
        metadata: String::new(),
    }];
    let handle = store.commit(group, &offsets).expect("commit");
    assert!(handle.poll().expect("acks=1 completes").is_ok());
}

/// Runs `decide` (an expiry or a deletion of the groups) on one thread while another lets
/// the other start, waits `head_start`, then joins `GROUP` and reads its offsets; checks
/// that offsets it read stay, and that offsets it did not read are gone (the decision came
/// first and took them). Returns what `decide` returned and whether the member read them.
fn race<T: Send>(
    seed: u64,
    decide: impl Fn(&OffsetsStore) -> T + Sync,
    head_start: Duration,
) -> (T, bool) {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let (_manager, _replica, store) = lone_store(seed, &clock);
    commit(&store, GROUP);
    for g in 0..OTHERS {
        commit(&store, &format!("other-{g}"));
    }
    store.set_group_active(GROUP, false);
    clock.advance_ms(8 * 24 * 3600 * 1000); // past the 7 days of retention
    let start = Barrier::new(2);
    let (decided, seen_after_join) = thread::scope(|s| {
        let decision = s.spawn(|| {
            start.wait();
            decide(&store)
        });
        start.wait();
        let until = Instant::now() + head_start;
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        store.set_group_active(GROUP, true);
        let seen = store.fetch(GROUP, None).expect("fetch");
        (decision.join().expect("decision"), seen)
    });
    let now = store.fetch(GROUP, None).expect("fetch");
    assert_eq!(
        now,
        seen_after_join,
        "seed {seed}: the offsets the joined member read changed (now {}s)",
        clock.now_ms() / 1000
    );
    (decided, !seen_after_join.is_empty())
}

#[test]
fn a_member_joining_during_an_expiry_keeps_the_offsets_it_read() {
    for seed in 0..ROUNDS {
        let head_start = Duration::from_micros(50 * (seed % 6));
        let (expiry, _) = race(seed, |store| store.expire(), head_start);
        assert!(expiry.failed.is_empty(), "seed {seed}: {:?}", expiry.failed);
    }
}

/// The deletion and the join, in either order: a deletion that came first wrote the
/// tombstones and the member read nothing; one that came second found a member and
/// refused (`NonEmptyGroup`), and the member's offsets stay.
#[test]
fn a_member_joining_during_a_group_deletion_keeps_the_offsets_it_read() {
    for seed in 0..ROUNDS {
        let head_start = Duration::from_micros(5 * (seed % 6));
        let (deleted, read) = race(seed, |store| store.delete_group(GROUP), head_start);
        match deleted {
            Ok(Some(_)) => assert!(!read, "seed {seed}: deleted, yet the member read them"),
            Err(partlog::Error::NonEmptyGroup { .. }) => {
                assert!(read, "seed {seed}: refused, yet the member read nothing")
            }
            other => panic!("seed {seed}: {other:?}"),
        }
    }
}
