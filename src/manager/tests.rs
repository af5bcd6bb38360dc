//! Unit tests of a log dir on the simulated disk.

use std::path::Path;

use super::*;
use crate::checkpoint::TopicPartition;
use crate::io::sim::SimStorage;
use crate::record::BatchBuilder;
use crate::Error;

fn batch() -> Vec<u8> {
    let mut b = BatchBuilder::new();
    b.append(1, Some(b"k"), Some(b"v"), &[]);
    b.build().unwrap()
}

#[test]
fn lock_checkpoints_and_clean_marker() {
    let sim = SimStorage::new(3);
    let tp = TopicPartition::new("orders", 2);
    let dir = LogDir::open(sim.storage(), "/d", LogDirOptions::default()).unwrap();
    assert!(!dir.was_clean_shutdown());
    let again = LogDir::open(sim.storage(), "/d", LogDirOptions::default()).unwrap_err();
    assert!(matches!(again, Error::DirLocked { .. }), "{again}");
    let (log, _) = dir.open_log(&tp).unwrap();
    log.append_as_leader(&mut batch(), 0).unwrap();
    log.append_as_leader(&mut batch(), 0).unwrap();
    dir.flush().unwrap();
    let text = sim
        .read_raw(Path::new("/d/recovery-point-offset-checkpoint"))
        .unwrap();
    assert_eq!(String::from_utf8(text).unwrap(), "0\n1\norders 2 2\n");
    assert_eq!(dir.partitions().unwrap(), vec![tp.clone()]);
    drop(log);
    dir.close().unwrap();
    assert!(sim.read_raw(Path::new("/d/.kafka_cleanshutdown")).is_some());

    let dir = LogDir::open(sim.storage(), "/d", LogDirOptions::default()).unwrap();
    assert!(dir.was_clean_shutdown());
    assert!(sim.read_raw(Path::new("/d/.kafka_cleanshutdown")).is_none());
    let (log, report) = dir.open_log(&tp).unwrap();
    assert_eq!((report.segments_scanned, log.log_end_offset()), (0, 2));
}

#[test]
fn a_corrupt_checkpoint_is_a_warning_not_a_refusal() {
    let sim = SimStorage::new(4);
    sim.write_raw(
        Path::new("/d/recovery-point-offset-checkpoint"),
        b"0\n9\nx y z\n",
    )
    .unwrap();
    let dir = LogDir::open(sim.storage(), "/d", LogDirOptions::default()).unwrap();
    assert_eq!(dir.warnings().len(), 1, "{:?}", dir.warnings());
    let (log, report) = dir.open_log(&TopicPartition::new("t", 0)).unwrap();
    assert_eq!((report.segments_scanned, log.log_end_offset()), (1, 0));
}
