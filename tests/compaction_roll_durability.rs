//! A compacted log makes a segment durable when it closes it: its offsets may have gaps,
//! so a closed segment lost to a power loss could not be told from compaction (see the
//! regression seed in `sim_offsets.rs`). A log that does not compact rolls without
//! waiting for the disk; its offsets reveal a lost segment.

mod common;

use std::path::Path;

use common::keyed_batch;
use partlog::checkpoint::TopicPartition;
use partlog::io::sim::SimStorage;
use partlog::manager::{LogDir, LogDirOptions};
use partlog::{CleanupPolicy, LogConfig};

fn first_segment_durable(policy: CleanupPolicy) -> bool {
    let disk = SimStorage::new(3);
    let options = LogDirOptions {
        config: LogConfig {
            cleanup_policy: policy,
            ..LogConfig::default()
        },
        ..LogDirOptions::default()
    };
    let dir = LogDir::open(disk.storage(), "/data", options).unwrap();
    let (log, _) = dir.open_log(&TopicPartition::new("t", 0)).unwrap();
    for i in 0..10 {
        let record = (format!("k{i}").into_bytes(), Some(b"v".to_vec()));
        log.append_as_leader(&mut keyed_batch(&[record], 1), 0)
            .unwrap();
    }
    log.force_roll().unwrap();
    let path = Path::new("/data/t-0/00000000000000000000.log");
    let written = disk.read_raw(path).unwrap();
    disk.read_durable(path)
        .is_some_and(|durable| durable == written)
}

#[test]
fn a_compacted_log_syncs_the_segment_it_closes() {
    assert!(first_segment_durable(CleanupPolicy::Compact));
    assert!(first_segment_durable(CleanupPolicy::CompactDelete));
}

#[test]
fn a_deleting_log_rolls_without_waiting_for_the_disk() {
    assert!(!first_segment_durable(CleanupPolicy::Delete));
}
