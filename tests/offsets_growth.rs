//! A long commit workload stays bounded on disk: commits over 10,000 groups, the cleaner
//! running as a broker's would, and the offsets log holds about the live set plus what the
//! dirty ratio lets accumulate, whatever the number of commits.
//!
//! ```text
//! cargo test --release --test offsets_growth                          # CI: 10 million commits
//! OFFSETS_GROWTH_COMMITS=10000000 cargo test --release --test offsets_growth
//! ```

mod common;

use std::sync::Arc;

use partlog::checkpoint::TopicPartition;
use partlog::cleaner::{CleanOutcome, Cleaner, CleanerConfig};
use partlog::io::sim::SimStorage;
use partlog::manager::{LogDir, LogDirOptions};
use partlog::offsets::{offsets_log_config, OffsetCommit, OffsetsConfig, OffsetsStore};
use partlog::replica::{ReplicaConfig, ReplicaManager};
use partlog::{LogConfig, ManualClock};

const GROUPS: u64 = 10_000;
const SEGMENT_BYTES: u64 = 256 << 10;

#[test]
fn the_offsets_log_stays_bounded_by_the_live_set() {
    let commits = common::env_u64("OFFSETS_GROWTH_COMMITS").unwrap_or(10_000_000);
    let disk = SimStorage::new(9);
    let clock = Arc::new(ManualClock::new(1_000_000));
    let config = LogConfig {
        segment_bytes: SEGMENT_BYTES,
        index_bytes_max: 64 << 10,
        ..offsets_log_config()
    };
    let options = LogDirOptions {
        config: config.clone(),
        clock: clock.clone(),
    };
    let dir = LogDir::open(disk.storage(), "/data", options).unwrap();
    let manager = ReplicaManager::new(dir, clock.clone());
    let tp = TopicPartition::new("__consumer_offsets", 0);
    let (replica, _) = manager
        .open_partition(&tp, config, ReplicaConfig::new(0))
        .unwrap();
    replica.become_leader(1, vec![0], vec![0]).unwrap();
    // A store of the one offsets partition, its view loaded.
    let loaded_store = || {
        let store = OffsetsStore::new(
            OffsetsConfig {
                partitions: 1,
                ..OffsetsConfig::default()
            },
            clock.clone(),
        );
        store.host(0, replica.clone());
        store.become_leader(0).unwrap();
        store.load(0).unwrap();
        store
    };
    let store = loaded_store();
    let cleaner = Cleaner::new(CleanerConfig::default());
    let log = replica.log().clone();

    // The last offset committed for each group and partition.
    let mut expected = vec![-1i64; (GROUPS * 3) as usize];
    let mut live = None;
    let mut largest_after_warmup = 0u64;
    let mut sizes = Vec::new();
    for i in 0..commits {
        let group = format!("group-{}", i % GROUPS);
        let commit = OffsetCommit {
            topic: "events".into(),
            partition: (i % 3) as i32,
            offset: i as i64,
            leader_epoch: 1,
            metadata: String::new(),
        };
        store.commit(&group, &[commit]).unwrap();
        expected[((i % GROUPS) * 3 + i % 3) as usize] = i as i64;
        if i % 10_000 == 9_999 {
            clock.advance_ms(1);
            // The cleaner thread's loop, run inline: clean while a log is worth it.
            while let CleanOutcome::Cleaned { .. } =
                cleaner.clean_once(manager.log_dir(), 0).unwrap()
            {}
            let size = log.size_bytes();
            if i >= 3 * GROUPS * 3 {
                // Every group has committed every partition: the live set is complete.
                live.get_or_insert(size);
                largest_after_warmup = largest_after_warmup.max(size);
            }
            sizes.push(size);
        }
    }
    live.expect("the workload outlasts the warm-up");
    // The live set: one record per key (group, partition), each its own batch of about
    // the same size.
    let records = common::log_records(&log).len() as u64;
    let batch_bytes = log.size_bytes() / records;
    let keys = GROUPS * 3;
    let live = keys * batch_bytes;
    // Dirty bytes may reach the clean bytes (ratio 0.5) before a cleaning, plus the
    // active segment and one more being filled.
    let bound = 2 * live + 2 * SEGMENT_BYTES;
    eprintln!(
        "{commits} commits: live set {live} bytes, largest {largest_after_warmup}, bound {bound}"
    );
    assert!(
        largest_after_warmup <= bound,
        "the log reached {largest_after_warmup} bytes; live set {live}, bound {bound}"
    );
    let fetched = store.fetch("group-1", None).unwrap();
    assert_eq!(
        fetched.len(),
        3,
        "every partition of a group is still there"
    );
    let last = sizes.last().copied().unwrap_or(0);
    assert!(
        last <= bound,
        "{last} > {bound} at the end: sizes {sizes:?}"
    );
    // The compacted log still holds every group's last commits: a new coordinator that
    // loads it finds them all.
    let reloaded = loaded_store();
    for g in 0..GROUPS {
        let group = format!("group-{g}");
        let mut fetched: Vec<(i32, i64)> = (reloaded.fetch(&group, None).unwrap())
            .into_iter()
            .map(|((_, partition), committed)| (partition, committed.offset))
            .collect();
        fetched.sort();
        let wanted: Vec<(i32, i64)> = (0..3)
            .map(|p| (p as i32, expected[(g * 3 + p) as usize]))
            .filter(|&(_, offset)| offset >= 0)
            .collect();
        assert_eq!(fetched, wanted, "{group} after the cleanings");
    }
}
