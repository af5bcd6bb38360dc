//! Unit tests of a log dir on the simulated disk.

use std::path::Path;

use super::*;
use crate::checkpoint::TopicPartition;
use crate::io::sim::SimStorage;
use crate::io::{OpenMode, Storage};
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

/// A log still held when its dir closes (a replica the broker did not stop first) takes no
/// more writes: the clean-shutdown marker vouches for the files as the close left them,
/// and an append after it, unsynced, would be spared from recovery at the next open. Reads
/// go on.
#[test]
fn a_log_held_past_its_dirs_close_refuses_writes() {
    let sim = SimStorage::new(5);
    let tp = TopicPartition::new("orders", 0);
    let dir = LogDir::open(sim.storage(), "/d", LogDirOptions::default()).unwrap();
    let (log, _) = dir.open_log(&tp).unwrap();
    log.append_as_leader(&mut batch(), 0).unwrap();
    dir.close().unwrap();
    assert!(marker_exists(&sim));
    let refused = log.append_as_leader(&mut batch(), 0).unwrap_err();
    assert!(matches!(refused, Error::LogClosed { .. }), "{refused}");
    assert!(matches!(log.truncate_to(0), Err(Error::LogClosed { .. })));
    assert!(matches!(log.force_roll(), Err(Error::LogClosed { .. })));
    assert!(log.read(0, 1 << 20, None).unwrap().is_some(), "reads go on");
    log.flush().unwrap();
    drop(log);

    let dir = LogDir::open(sim.storage(), "/d", LogDirOptions::default()).unwrap();
    assert!(dir.was_clean_shutdown());
    let (log, _) = dir.open_log(&tp).unwrap();
    assert_eq!(log.log_end_offset(), 1);
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

/// Kafka writes its broker epoch into the clean-shutdown marker, which it reads back at
/// its next start (KIP-966's clean-shutdown evidence): a clean close writes back what the
/// marker held. It came back empty, and the broker registered as if it had no epoch.
#[test]
fn a_clean_close_writes_back_what_the_marker_held() {
    let sim = SimStorage::new(6);
    let marker = Path::new("/d/.kafka_cleanshutdown");
    let kafkas = br#"{"version":0,"brokerEpoch":42}"#;
    sim.write_raw(marker, kafkas).unwrap();
    let dir = LogDir::open(sim.storage(), "/d", LogDirOptions::default()).unwrap();
    assert!(dir.was_clean_shutdown());
    assert!(!marker_exists(&sim));
    dir.close().unwrap();
    assert_eq!(sim.read_durable(marker).as_deref(), Some(&kafkas[..]));
}

/// An open that fails (here on an unreadable `replication-offset-checkpoint`) leaves the
/// clean-shutdown marker where it was: it was removed first, and the broker starting
/// after the failed command recovered every partition.
#[test]
fn a_failed_open_keeps_the_clean_shutdown_marker() {
    let sim = SimStorage::new(7);
    let marker = Path::new("/d/.kafka_cleanshutdown");
    sim.write_raw(marker, b"").unwrap();
    let replication = Path::new("/d/replication-offset-checkpoint");
    sim.write_raw(replication, b"0\n9\nx y z\n").unwrap();
    assert!(LogDir::open(sim.storage(), "/d", LogDirOptions::default()).is_err());
    assert!(marker_exists(&sim));
}

fn marker_exists(sim: &SimStorage) -> bool {
    sim.read_raw(Path::new("/d/.kafka_cleanshutdown")).is_some()
}

/// After an unclean stop, a process opened only partition A and closed cleanly. The
/// dir-wide marker it wrote made the next open trust partition B, never recovered, which
/// then served a torn batch whose CRC fails.
#[test]
fn clean_close_after_opening_one_partition_leaves_the_others_to_recovery() {
    let sim = SimStorage::new(5);
    let (a, b) = (TopicPartition::new("a", 0), TopicPartition::new("b", 0));
    let dir = LogDir::open(sim.storage(), "/d", LogDirOptions::default()).unwrap();
    for tp in [&a, &b] {
        let (log, _) = dir.open_log(tp).unwrap();
        log.append_as_leader(&mut batch(), 0).unwrap();
    }
    dir.flush().unwrap();
    let (log_b, _) = dir.open_log(&b).unwrap();
    log_b.append_as_leader(&mut batch(), 0).unwrap();
    let torn_at = log_b.segments()[0].size() - 5;
    let b_segment = log_b.segments()[0].log_path().to_path_buf();
    drop((log_b, dir)); // an unclean stop
    sim.flip_bit(&b_segment, torn_at, 1).unwrap();

    let dir = LogDir::open(sim.storage(), "/d", LogDirOptions::default()).unwrap();
    assert!(!dir.was_clean_shutdown());
    let (log_a, _) = dir.open_log(&a).unwrap();
    log_a.append_as_leader(&mut batch(), 0).unwrap();
    drop(log_a);
    dir.close().unwrap();
    assert!(!marker_exists(&sim), "b was never recovered");

    let dir = LogDir::open(sim.storage(), "/d", LogDirOptions::default()).unwrap();
    let (log_b, report) = dir.open_log(&b).unwrap();
    assert!(report.damage.is_some(), "{report:?}");
    assert_eq!(log_b.log_end_offset(), 1);
    drop(log_b);
    // Every partition is recovered now: this close is clean.
    dir.open_all().unwrap();
    dir.close().unwrap();
    assert!(marker_exists(&sim));
    // A clean dir stays clean when only some partitions are opened.
    let dir = LogDir::open(sim.storage(), "/d", LogDirOptions::default()).unwrap();
    assert!(dir.was_clean_shutdown());
    dir.open_log(&a).unwrap();
    dir.close().unwrap();
    assert!(marker_exists(&sim));
}

/// One read-only log (an earlier write failed) stopped `flush` and `close` before they
/// checkpointed the others.
#[test]
fn a_read_only_log_does_not_stop_the_others_from_checkpointing() {
    let sim = SimStorage::new(6);
    let (a, b) = (TopicPartition::new("a", 0), TopicPartition::new("b", 0));
    let dir = LogDir::open(sim.storage(), "/d", LogDirOptions::default()).unwrap();
    let (log_a, _) = dir.open_log(&a).unwrap();
    let (log_b, _) = dir.open_log(&b).unwrap();
    sim.fail_nth(
        crate::io::sim::SimOp::Write,
        1,
        crate::io::sim::FaultKind::Eio,
    )
    .unwrap();
    assert!(log_b.append_as_leader(&mut batch(), 0).is_err());
    sim.clear_faults();
    // The checkpoints must be written although b's flush fails.
    log_a.append_as_leader(&mut batch(), 0).unwrap();
    assert!(matches!(dir.flush(), Err(Error::ReadOnly { .. })));
    let text = sim
        .read_raw(Path::new("/d/recovery-point-offset-checkpoint"))
        .unwrap();
    assert!(
        String::from_utf8(text).unwrap().contains("a 0 1\n"),
        "a's recovery point was not checkpointed"
    );
    log_a.append_as_leader(&mut batch(), 0).unwrap();
    drop((log_a, log_b));
    assert!(dir.close().is_err());
    let text = sim
        .read_raw(Path::new("/d/recovery-point-offset-checkpoint"))
        .unwrap();
    assert!(String::from_utf8(text).unwrap().contains("a 0 2\n"));
    assert!(!marker_exists(&sim), "a failed log is not a clean shutdown");
}

#[test]
fn high_watermarks_are_checkpointed_and_read_back() {
    let sim = SimStorage::new(8);
    let (a, b) = (TopicPartition::new("a", 0), TopicPartition::new("b", 1));
    let dir = LogDir::open(sim.storage(), "/d", LogDirOptions::default()).unwrap();
    assert_eq!(dir.checkpointed_high_watermark(&a), None);
    dir.write_high_watermarks(&[(a.clone(), 7), (b.clone(), 3)])
        .unwrap();
    dir.write_high_watermarks(&[(a.clone(), 9)]).unwrap();
    let text = sim
        .read_raw(Path::new("/d/replication-offset-checkpoint"))
        .unwrap();
    assert_eq!(String::from_utf8(text).unwrap(), "0\n2\na 0 9\nb 1 3\n");
    dir.close().unwrap();
    let dir = LogDir::open(sim.storage(), "/d", LogDirOptions::default()).unwrap();
    assert_eq!(dir.checkpointed_high_watermark(&a), Some(9));
    assert_eq!(dir.checkpointed_high_watermark(&b), Some(3));
    drop(dir);
    sim.write_raw(
        Path::new("/d/replication-offset-checkpoint"),
        b"0\n1\nbad\n",
    )
    .unwrap();
    // Unreadable, it fails the open (as Kafka takes the dir offline), naming the file.
    let err = LogDir::open(sim.storage(), "/d", LogDirOptions::default()).unwrap_err();
    assert!(
        matches!(&err, Error::Parse { file, line: 3, .. } if file.ends_with("replication-offset-checkpoint")),
        "{err}"
    );
}

/// KRaft's metadata log in a Kafka log dir is the Raft layer's, as Kafka's `LogManager`
/// has it: not listed, not opened by `open_all` (its files untouched), and a broker that
/// never opens it still writes the clean-shutdown marker after an unclean start.
#[test]
fn the_metadata_log_is_not_a_partition_of_the_dir() {
    let sim = SimStorage::new(11);
    let meta = Path::new("/d/__cluster_metadata-0");
    sim.create_dir_all(meta).unwrap();
    let segment = meta.join("00000000000000000000.log");
    let f = sim.open(&segment, OpenMode::CreateNew).unwrap();
    f.write_at(&batch(), 0).unwrap();
    drop(f);
    let tp = TopicPartition::new("orders", 0);
    let dir = LogDir::open(sim.storage(), "/d", LogDirOptions::default()).unwrap();
    assert!(!dir.was_clean_shutdown());
    dir.open_log(&tp).unwrap();
    assert_eq!(dir.partitions().unwrap(), vec![tp.clone()]);
    let metadata = TopicPartition::new(METADATA_TOPIC, 0);
    assert_eq!(dir.metadata_logs().unwrap(), vec![metadata]);
    let opened: Vec<_> = dir
        .open_all()
        .unwrap()
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert!(opened.is_empty(), "{opened:?}");
    assert!(dir.log(&TopicPartition::new(METADATA_TOPIC, 0)).is_none());
    let names: Vec<_> = sim
        .list_dir(meta)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec!["00000000000000000000.log".to_string()]);
    dir.close().unwrap();
    assert!(
        marker_exists(&sim),
        "the metadata log held back the clean-shutdown marker"
    );
}

/// Kafka's loader takes every subdirectory of a log dir for a log (its remote index cache
/// and the metadata log aside), and the marker vouches for all of them: a replica being
/// moved here (`-future`), one marked for deletion or stray, a partition named `t-01`.
/// partlog opens none of them, so after an unclean start it writes no marker while one is
/// there; it wrote it, and Kafka trusted their unrecovered tails. A directory named as a
/// partition of a topic Kafka's rule refuses (`bad topic-0`) counts among them: listed as
/// a partition, it failed `open_all` before the partitions after it were recovered.
#[test]
fn directories_kafka_loads_and_partlog_does_not_hold_back_the_marker() {
    let tp = TopicPartition::new("orders", 0);
    let uuid = "9f1c2e7a4b6d4e0f8a1b2c3d4e5f6071";
    for (seed, other, holds_back) in [
        (21, format!("orders-0.{uuid}-future"), true),
        (22, format!("orders-1.{uuid}-delete"), true),
        (23, format!("orders-2.{uuid}-stray"), true),
        (24, "orders-01".to_string(), true),
        (30, "bad topic-0".to_string(), true),
        (25, "remote-log-index-cache".to_string(), false),
    ] {
        let sim = SimStorage::new(seed);
        sim.create_dir_all(&Path::new("/d").join(&other)).unwrap();
        let dir = LogDir::open(sim.storage(), "/d", LogDirOptions::default()).unwrap();
        assert!(!dir.was_clean_shutdown());
        assert_eq!(dir.partitions().unwrap(), vec![], "{other}");
        let unopenable = if holds_back {
            vec![other.clone()]
        } else {
            vec![]
        };
        assert_eq!(dir.unopenable_dirs().unwrap(), unopenable);
        dir.open_log(&tp).unwrap();
        dir.open_all().unwrap();
        dir.close().unwrap();
        assert_eq!(marker_exists(&sim), !holds_back, "{other}");
    }
}

/// The metadata log, opened by name after a clean shutdown, is recovered all the same:
/// the marker never vouched for it (Kafka recovers it at every start). It was trusted,
/// and a torn batch in a rolled segment stayed, with the segment after it.
#[test]
fn the_metadata_log_opened_by_name_is_recovered_after_a_clean_shutdown() {
    let sim = SimStorage::new(26);
    let meta = Path::new("/d/__cluster_metadata-0");
    sim.create_dir_all(meta).unwrap();
    let whole = batch();
    let rolled = sim
        .open(&meta.join("00000000000000000000.log"), OpenMode::CreateNew)
        .unwrap();
    rolled.write_at(&whole, 0).unwrap();
    rolled.write_at(&whole[..20], whole.len() as u64).unwrap(); // torn
    drop(rolled);
    let mut next = whole.clone();
    crate::record::set_base_offset(&mut next, 1);
    let active = sim
        .open(&meta.join("00000000000000000001.log"), OpenMode::CreateNew)
        .unwrap();
    active.write_at(&next, 0).unwrap();
    drop(active);
    sim.write_raw(Path::new("/d/.kafka_cleanshutdown"), b"")
        .unwrap();
    let dir = LogDir::open(sim.storage(), "/d", LogDirOptions::default()).unwrap();
    assert!(dir.was_clean_shutdown());
    let (log, _) = dir
        .open_log(&TopicPartition::new(METADATA_TOPIC, 0))
        .unwrap();
    assert_eq!(log.log_end_offset(), 1, "recovery cut at the torn batch");
    assert_eq!(log.size_bytes(), whole.len() as u64);
}

/// An unreadable `log-start-offset-checkpoint` fails the open, as Kafka takes such a dir
/// offline, and is left as it was. Read as none, it took the log starts back to the first
/// segments' bases (records deleted below them served again), and the next checkpoint
/// written forgot them for good.
#[test]
fn an_unreadable_log_start_checkpoint_fails_the_open_and_stays() {
    let sim = SimStorage::new(27);
    let file = Path::new("/d/log-start-offset-checkpoint");
    let damaged = b"0\n2\norders 0 5000\norders 1\n";
    sim.write_raw(file, damaged).unwrap();
    let err = LogDir::open(sim.storage(), "/d", LogDirOptions::default()).unwrap_err();
    assert!(
        matches!(&err, Error::Parse { file, line: 4, .. } if file.ends_with("log-start-offset-checkpoint")),
        "{err}"
    );
    assert_eq!(sim.read_raw(file).as_deref(), Some(&damaged[..]));
}

/// A high watermark or cleaner offset for a partition no directory could be named after
/// (a topic with a space, an empty one, a negative partition) is refused with a typed
/// error and writes nothing. Written, its line did not read back: the strictly read
/// `replication-offset-checkpoint` failed every later open of the dir.
#[test]
fn checkpoint_writes_refuse_partitions_no_directory_could_be_named_after() {
    let sim = SimStorage::new(28);
    let dir = LogDir::open(sim.storage(), "/d", LogDirOptions::default()).unwrap();
    let good = TopicPartition::new("orders", 0);
    dir.write_high_watermarks(&[(good.clone(), 5)]).unwrap();
    let file = Path::new("/d/replication-offset-checkpoint");
    let before = sim.read_raw(file);
    for bad in [
        TopicPartition::new("a b", 0),
        TopicPartition::new("", 0),
        TopicPartition::new("orders", -1),
    ] {
        let err = dir
            .write_high_watermarks(&[(good.clone(), 6), (bad.clone(), 5)])
            .unwrap_err();
        assert!(matches!(err, Error::InvalidTopic { .. }), "{bad:?}: {err}");
        let err = dir.write_cleaner_offset(&bad, 5).unwrap_err();
        assert!(matches!(err, Error::InvalidTopic { .. }), "{bad:?}: {err}");
    }
    assert_eq!(sim.read_raw(file), before, "nothing written");
    dir.close().unwrap();
    let dir = LogDir::open(sim.storage(), "/d", LogDirOptions::default()).unwrap();
    assert_eq!(dir.checkpointed_high_watermark(&good), Some(5));
}

/// A partition whose directory was removed while the dir was closed (a deleted topic)
/// and that is made again starts anew: at offset 0, with no high watermark, recovery
/// point or cleaner offset of the old log. The old entries stayed in the checkpoints and
/// started the new log at the old log start.
#[test]
fn a_partition_made_again_after_its_directory_went_takes_no_old_checkpoint_entry() {
    let sim = SimStorage::new(29);
    let tp = TopicPartition::new("orders", 0);
    let dir = LogDir::open(sim.storage(), "/d", LogDirOptions::default()).unwrap();
    let (log, _) = dir.open_log(&tp).unwrap();
    for _ in 0..10 {
        log.append_as_leader(&mut batch(), 0).unwrap();
    }
    log.advance_log_start_offset(6).unwrap();
    dir.write_high_watermarks(&[(tp.clone(), 10)]).unwrap();
    dir.write_cleaner_offset(&tp, 8).unwrap();
    drop(log);
    dir.close().unwrap();

    let partition = Path::new("/d/orders-0");
    for entry in sim.storage().list_dir(partition).unwrap() {
        sim.storage()
            .remove_file(&partition.join(&entry.name))
            .unwrap();
    }
    sim.storage().remove_dir(partition).unwrap();

    let dir = LogDir::open(sim.storage(), "/d", LogDirOptions::default()).unwrap();
    assert_eq!(
        dir.checkpointed_high_watermark(&tp),
        Some(10),
        "not opened yet"
    );
    let (log, _) = dir.open_log(&tp).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    assert_eq!(dir.checkpointed_high_watermark(&tp), None);
    assert_eq!(dir.cleaner_offset(&tp), None);
    drop(log);
    dir.close().unwrap();
    let dir = LogDir::open(sim.storage(), "/d", LogDirOptions::default()).unwrap();
    assert_eq!(dir.checkpointed_high_watermark(&tp), None);
    let (log, _) = dir.open_log(&tp).unwrap();
    assert_eq!(log.log_start_offset(), 0);
}

/// A first open of a log dir created its parents and was stopped before it synced them
/// (killed: the page cache kept the new entries). The next open found every directory
/// there and synced only the log dir's parent: a power loss later could take the
/// grandparent's entry, and the whole log dir, flushed data and all, with it. An open now
/// syncs the parent of every component of the path.
#[test]
fn a_log_dir_whose_parents_an_earlier_open_left_unsynced_survives_a_power_loss() {
    let tp = TopicPartition::new("orders", 0);
    for seed in 0..16 {
        let sim = SimStorage::new(40 + seed);
        sim.create_dir_all(Path::new("/srv/kafka/data")).unwrap();
        let dir = LogDir::open(sim.storage(), "/srv/kafka/data", LogDirOptions::default()).unwrap();
        let (log, _) = dir.open_log(&tp).unwrap();
        log.append_as_leader(&mut batch(), 0).unwrap();
        dir.flush().unwrap();
        drop(log);
        sim.crash();
        drop(dir);
        let dir = LogDir::open(sim.storage(), "/srv/kafka/data", LogDirOptions::default()).unwrap();
        let (log, _) = dir.open_log(&tp).unwrap();
        assert_eq!(
            log.log_end_offset(),
            1,
            "seed {seed}: the flushed batch is there"
        );
    }
}

/// The syncs above a log dir's parent are best effort: an ancestor the process may pass
/// through but not read, or a file system that refuses to sync a directory, keeps no log
/// dir from opening (here `/srv` refuses every sync). (Directories it creates must be
/// synced, as ever.)
#[test]
fn a_log_dir_opens_when_an_ancestor_above_its_parent_cannot_be_synced() {
    let sim = SimStorage::new(57);
    sim.create_dir_all(Path::new("/srv/kafka/data")).unwrap();
    sim.sync_all();
    sim.set_faults(crate::io::sim::FaultPlan {
        sync_eio: 1.0,
        path_suffix: Some("srv".into()),
        ..Default::default()
    });
    LogDir::open(sim.storage(), "/srv/kafka/data", LogDirOptions::default())
        .expect("the log dir opens");
}
