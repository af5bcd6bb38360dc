//! A damaged `recovery-point-offset-checkpoint` does not stop a log dir from opening: it
//! is reported, treated as absent (recover from the first segment), and the data is
//! intact. A damaged `log-start-offset-checkpoint` fails the open with an error naming it,
//! and stays as it was (Kafka takes such a dir offline: read as absent, the log starts
//! went back, and records deleted below them were served again). A leftover `.tmp`
//! checkpoint is removed on open. A log start checkpointed past what survived a crash
//! starts the log there, empty.
//!
//! What broke before this test: `LogDir::open` left `<checkpoint>.tmp` files of an
//! interrupted checkpoint write in the log dir (only the next write removed them). Fixed in
//! `manager::log_dir::LogDir::open`.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{backends, batch, read_all, small_config, write_file, Backend};
use partlog::checkpoint::{TopicPartition, LOG_START_OFFSET_FILE, RECOVERY_POINT_FILE};
use partlog::io::OpenMode;
use partlog::manager::{LogDir, LogDirOptions};
use partlog::{Error, ManualClock};

fn dir_options() -> LogDirOptions {
    LogDirOptions {
        config: small_config(),
        clock: Arc::new(ManualClock::new(1_000_000)),
    }
}

fn tps() -> [TopicPartition; 2] {
    [TopicPartition::new("t", 0), TopicPartition::new("u", 3)]
}

/// Two partitions with several segments, checkpointed, then more appends and a crash.
fn build(backend: &Backend, root: &Path) -> Vec<Vec<(i64, i64)>> {
    let dir = LogDir::open(backend.storage.clone(), root, dir_options()).unwrap();
    let mut expected = Vec::new();
    for tp in tps() {
        let (log, _) = dir.open_log(&tp).unwrap();
        for i in 0..60 {
            log.append_as_leader(&mut batch(2, 60, i), 1).unwrap();
        }
        assert!(log.segment_count() >= 3);
    }
    dir.flush().unwrap();
    for tp in tps() {
        let log = dir.log(&tp).unwrap();
        log.append_as_leader(&mut batch(2, 60, 100), 1).unwrap();
        expected.push(read_all(&log));
    }
    // Dropped without close: unclean.
    expected
}

const DAMAGED: [(&str, &[u8]); 7] = [
    ("binary garbage", &[0xff, 0xfe, 0x00, 0x81, 0x7f, 0x10]),
    ("text garbage", b"hello world\nthis is not a checkpoint\n"),
    ("truncated", b"0\n2\nt 0 12"),
    ("wrong version", b"1\n2\nt 0 120\nu 3 120\n"),
    ("absurd count", b"0\n99999999999\nt 0 120\nu 3 120\n"),
    (
        "count overflows",
        b"0\n999999999999999999999999999\nt 0 120\n",
    ),
    ("bad entry", b"0\n2\nt 0 120\nu x 120\n"),
];

fn scenario(file: &str) {
    for backend in backends() {
        for (case, (what, bytes)) in DAMAGED.iter().enumerate() {
            let root = backend.root.join(format!("dir{case}"));
            let ctx = format!("{} {file} {what}", backend.name);
            let expected = build(&backend, &root);
            write_file(&backend, &root.join(file), bytes);
            let dir = LogDir::open(backend.storage.clone(), &root, dir_options())
                .unwrap_or_else(|e| panic!("{ctx}: {e}"));
            assert!(
                dir.warnings().iter().any(|w| w.contains(file)),
                "{ctx}: {:?}",
                dir.warnings()
            );
            for (tp, expected) in tps().iter().zip(&expected) {
                let (log, report) = dir.open_log(tp).unwrap();
                assert!(report.damage.is_none(), "{ctx}: {report:?}");
                if file == RECOVERY_POINT_FILE {
                    assert_eq!(report.segments_scanned, report.segments, "{ctx}");
                }
                assert_eq!(log.log_start_offset(), 0, "{ctx}");
                assert_eq!(&read_all(&log), expected, "{ctx}");
                assert_eq!(log.log_end_offset(), 122, "{ctx}");
            }
            // The next checkpoint is whole again.
            dir.flush().unwrap();
            drop(dir);
            let dir = LogDir::open(backend.storage.clone(), &root, dir_options()).unwrap();
            assert!(dir.warnings().is_empty(), "{ctx}: {:?}", dir.warnings());
        }
    }
}

#[test]
fn damaged_recovery_point_checkpoint_recovers_from_zero() {
    scenario(RECOVERY_POINT_FILE);
}

#[test]
fn damaged_log_start_offset_checkpoint_fails_the_open_and_stays() {
    for backend in backends() {
        for (case, (what, bytes)) in DAMAGED.iter().enumerate() {
            let root = backend.root.join(format!("dir{case}"));
            let ctx = format!("{} {what}", backend.name);
            build(&backend, &root);
            let file = root.join(LOG_START_OFFSET_FILE);
            write_file(&backend, &file, bytes);
            let err = LogDir::open(backend.storage.clone(), &root, dir_options())
                .map(|_| ())
                .unwrap_err();
            assert!(
                matches!(&err, Error::Parse { file: f, .. } if *f == file),
                "{ctx}: {err}"
            );
            let mut left = vec![0u8; bytes.len()];
            let f = backend.storage.open(&file, OpenMode::Read).unwrap();
            assert_eq!(f.len().unwrap(), bytes.len() as u64, "{ctx}");
            f.read_exact_at(&mut left, 0).unwrap();
            assert_eq!(&left[..], *bytes, "{ctx}");
        }
    }
}

#[test]
fn leftover_tmp_checkpoints_are_removed_on_open() {
    for backend in backends() {
        let root = backend.root.join("dir");
        let expected = build(&backend, &root);
        let tmps = [
            root.join(format!("{RECOVERY_POINT_FILE}.tmp")),
            root.join(format!("{LOG_START_OFFSET_FILE}.tmp")),
        ];
        for tmp in &tmps {
            write_file(&backend, tmp, b"0\n1\nt 0 9");
        }
        let epoch_tmp = root.join("t-0").join("leader-epoch-checkpoint.tmp");
        write_file(&backend, &epoch_tmp, b"0\n");
        let dir = LogDir::open(backend.storage.clone(), &root, dir_options()).unwrap();
        for tmp in &tmps {
            assert!(
                !backend.storage.exists(tmp),
                "{}: {}",
                backend.name,
                tmp.display()
            );
        }
        let (log, report) = dir.open_log(&tps()[0]).unwrap();
        assert!(!backend.storage.exists(&epoch_tmp), "{}", backend.name);
        assert!(
            report.leftovers.iter().any(|l| l.path == epoch_tmp),
            "{report:?}"
        );
        assert_eq!(read_all(&log), expected[0]);
        // The real checkpoints were untouched: only the segments after the recovery point
        // were scanned.
        assert!(report.segments_scanned < report.segments, "{report:?}");
    }
}

/// Options for log `t-0` on `backend`, small segments, a manual clock.
fn t0_options(backend: &common::Backend) -> partlog::log::LogOpenOptions {
    common::options(
        backend,
        "t-0",
        small_config(),
        Arc::new(ManualClock::new(1_000_000)),
    )
}

/// DeleteRecords moves the log start to 6 and checkpoints it, durably, inside five batches
/// never flushed; the power fails. The log reopens empty at 6, and the next append gets
/// offset 6: the log start came back as the recovered log end (0), and offsets 0..6,
/// handed out and deleted, were handed out again. Kafka's loader deletes the segments
/// and starts the log at the checkpointed start.
#[test]
fn a_log_start_checkpointed_past_what_survived_a_crash_starts_the_log_there() {
    let (backend, disk) = common::sim_with_disk(21);
    let options = || t0_options(&backend);
    let (log, _) = partlog::log::Log::open(options()).unwrap();
    for i in 0..5 {
        log.append_as_leader(&mut batch(2, 20, i), 0).unwrap();
    }
    log.advance_log_start_offset(6).unwrap();
    disk.crash();
    drop(log);
    // The crash kept none of the unflushed batches (it may keep any prefix of them).
    let segment = backend.root.join("t-0").join("00000000000000000000.log");
    disk.truncate_file(&segment, 0).unwrap();
    let reopened = partlog::log::LogOpenOptions {
        log_start_offset: Some(6),
        ..options()
    };
    let (log, report) = partlog::log::Log::open(reopened).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (6, 6));
    assert_eq!((report.log_start_offset, report.log_end_offset), (6, 6));
    assert!(report.warnings.is_empty(), "{report:?}");
    let info = log.append_as_leader(&mut batch(1, 20, 9), 0).unwrap();
    assert_eq!(info.first_offset, 6);
    drop(log);
    // And so it opens again.
    let (log, _) = partlog::log::Log::open(partlog::log::LogOpenOptions {
        log_start_offset: Some(6),
        ..options()
    })
    .unwrap();
    assert_eq!(log.log_start_offset(), 6);
}

/// After a clean shutdown a log start past the log end cannot come of a crash (everything
/// was flushed): segment files were removed, or the checkpoint is damaged. The log still
/// starts over there, as Kafka's loader does, but says so: it deleted every segment.
#[test]
fn a_log_start_past_the_end_after_a_clean_shutdown_is_a_warning() {
    let (backend, _disk) = common::sim_with_disk(22);
    let options = || t0_options(&backend);
    let (log, _) = partlog::log::Log::open(options()).unwrap();
    for i in 0..5 {
        log.append_as_leader(&mut batch(2, 20, i), 0).unwrap();
    }
    log.close().unwrap();
    drop(log);
    let (log, report) = partlog::log::Log::open(partlog::log::LogOpenOptions {
        log_start_offset: Some(900),
        clean_shutdown: true,
        ..options()
    })
    .unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (900, 900));
    assert_eq!(report.warnings.len(), 1, "{report:?}");
    assert!(
        report.warnings[0].contains("after a clean shutdown"),
        "{report:?}"
    );
}
