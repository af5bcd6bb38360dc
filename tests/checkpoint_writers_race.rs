//! A log dir's checkpoint files written by threads against each other: a dir flush (recovery
//! points and log starts), a log truncating below its persisted recovery point (which
//! rewrites that file at once, and takes the cleaner's entry back), the replica layer's
//! high watermarks and the cleaner's first dirty offsets. Each file is written through a temp name and renamed, so two writers of
//! one file must take turns: otherwise one's rename finds the other's temp file gone, or an
//! older text lands last.
//!
//! The first test runs all the writers freely, with a thread reading every file as it goes:
//! every read parses, each file ends with the last values written, and after a power loss
//! the dir reopens with no damage called corruption and no warning. Free threads on the
//! simulated disk rarely meet inside one write, so the second test makes the two writers of
//! the recovery-point file meet there (it fails when they do not take turns).

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use common::{batch, small_config};
use partlog::checkpoint::{
    parse_offsets, TopicPartition, CLEANER_FILE, LOG_START_OFFSET_FILE, RECOVERY_POINT_FILE,
    REPLICATION_FILE,
};
use partlog::io::sim::SimStorage;
use partlog::log::DamageKind;
use partlog::manager::{LogDir, LogDirOptions};

const ROUNDS: i64 = 150;
const FILES: [&str; 4] = [
    RECOVERY_POINT_FILE,
    LOG_START_OFFSET_FILE,
    REPLICATION_FILE,
    CLEANER_FILE,
];

/// Small segments and indexes: the logs roll and truncate across segments.
fn options() -> LogDirOptions {
    LogDirOptions {
        config: small_config(),
        ..LogDirOptions::default()
    }
}

fn path(name: &str) -> PathBuf {
    Path::new("/d").join(name)
}

fn offsets(sim: &SimStorage, name: &str) -> Vec<(TopicPartition, i64)> {
    let text = sim.read_raw(&path(name)).expect("file written");
    let text = String::from_utf8(text).expect("text");
    parse_offsets(&path(name), &text).expect("parses")
}

#[test]
fn checkpoint_files_written_from_many_threads_parse_and_end_current() {
    for seed in 0..6 {
        let sim = SimStorage::new(seed);
        let dir = LogDir::open(sim.storage(), "/d", options()).expect("open");
        let tps: Vec<TopicPartition> = (0..3).map(|p| TopicPartition::new("t", p)).collect();
        let logs: Vec<_> = tps
            .iter()
            .map(|tp| dir.open_log(tp).expect("open log").0)
            .collect();
        for log in &logs {
            for i in 0..4 {
                log.append_as_leader(&mut batch(2, 10, i), 0)
                    .expect("append");
            }
        }
        dir.flush().expect("first checkpoints");
        let done = AtomicBool::new(false);
        let parsed = thread::scope(|s| {
            let (dir, logs, tps, sim, done) = (&dir, &logs, &tps, &sim, &done);
            let reader = s.spawn(move || {
                let mut parsed = 0u64;
                while !done.load(Ordering::Acquire) {
                    for name in FILES {
                        if let Some(text) = sim.read_raw(&path(name)) {
                            let text = String::from_utf8(text).expect("text");
                            if let Err(err) = parse_offsets(&path(name), &text) {
                                panic!("{name} read mid-write: {err}: {text:?}");
                            }
                            parsed += 1;
                        }
                    }
                    thread::yield_now();
                }
                parsed
            });
            let writers = [
                s.spawn(move || {
                    for _ in 0..ROUNDS {
                        dir.flush().expect("dir flush");
                    }
                }),
                s.spawn(move || {
                    // Grows the log, makes the growth durable, then cuts it back below what
                    // the dir flush may have persisted meanwhile.
                    let log = &logs[0];
                    for i in 0..ROUNDS {
                        let end = log.log_end_offset();
                        for j in 0..3 {
                            log.append_as_leader(&mut batch(1, 10, i * 10 + j), 0)
                                .expect("append");
                        }
                        log.flush().expect("log flush");
                        log.truncate_to(end + 1).expect("truncate");
                    }
                }),
                s.spawn(move || {
                    for hw in 0..ROUNDS {
                        let hws: Vec<_> = tps.iter().map(|tp| (tp.clone(), hw)).collect();
                        dir.write_high_watermarks(&hws).expect("high watermarks");
                    }
                }),
                s.spawn(move || {
                    for dirty in 0..ROUNDS {
                        for tp in tps {
                            dir.write_cleaner_offset(tp, dirty).expect("cleaner offset");
                        }
                    }
                }),
            ];
            for writer in writers {
                writer.join().expect("writer");
            }
            done.store(true, Ordering::Release);
            reader.join().expect("reader")
        });
        assert!(parsed > 0, "the reader read nothing");

        // The last values written, by every writer.
        let last = |name: &str, want: &dyn Fn(usize) -> i64| {
            let found = offsets(&sim, name);
            let expected: Vec<_> = tps
                .iter()
                .enumerate()
                .map(|(i, tp)| (tp.clone(), want(i)))
                .collect();
            assert_eq!(found, expected, "{name}, seed {seed}");
        };
        last(REPLICATION_FILE, &|_| ROUNDS - 1);
        // The cleaner's offset of the log that truncates goes no further than its lowest
        // cut, which no cleaning has seen (each cut takes the entry back, and a write
        // after one stops there).
        last(CLEANER_FILE, &|i| (ROUNDS - 1).min(logs[i].truncated_to()));
        dir.flush().expect("last flush");
        last(RECOVERY_POINT_FILE, &|i| logs[i].recovery_point());
        last(LOG_START_OFFSET_FILE, &|i| logs[i].log_start_offset());
        for (i, log) in logs.iter().enumerate() {
            assert_eq!(log.recovery_point(), log.log_end_offset(), "log {i}");
        }

        let ends: Vec<i64> = logs.iter().map(|l| l.log_end_offset()).collect();
        drop(logs);
        drop(dir);
        sim.crash();
        let dir = LogDir::open(sim.storage(), "/d", options()).expect("reopen");
        for (tp, end) in tps.iter().zip(ends) {
            let (log, report) = dir.open_log(tp).expect("reopen log");
            let corrupt = report
                .damage
                .as_ref()
                .is_some_and(|d| d.kind == DamageKind::Corruption);
            assert!(!corrupt, "{tp:?}, seed {seed}: {report:?}");
            assert!(
                report.warnings.is_empty(),
                "{tp:?}, seed {seed}: {report:?}"
            );
            assert_eq!(log.log_end_offset(), end, "{tp:?}, seed {seed}: flushed");
        }
    }
}

/// The two writers of `recovery-point-offset-checkpoint` made to overlap: the first holds
/// in its temp file's sync until the second has started. A dir flush renders the log's
/// point; a truncation below the persisted point renders the lower one. Whichever starts
/// first, the file must end with the truncated point: the flush's render landing last would
/// leave a recovery point above the log's end, and the reopen would call the missing tail
/// flushed data.
#[test]
fn a_dir_flush_and_a_truncation_writing_the_recovery_points_at_once() {
    for truncation_first in [false, true] {
        let sim = SimStorage::new(11);
        let dir = LogDir::open(sim.storage(), "/d", options()).expect("open");
        let tp = TopicPartition::new("t", 0);
        let (log, _) = dir.open_log(&tp).expect("open log");
        for i in 0..15 {
            log.append_as_leader(&mut batch(1, 10, i), 0)
                .expect("append");
        }
        dir.flush().expect("recovery point 15 persisted");
        let (open_dir, open_log) = (&dir, &log);
        let write = move |truncate: bool| {
            if truncate {
                open_log
                    .truncate_to(12)
                    .expect("truncate below the persisted point");
            } else {
                open_dir.flush().expect("dir flush");
            }
        };
        common::meet_in_a_held_sync(
            &sim,
            &format!("{RECOVERY_POINT_FILE}.tmp"),
            move || write(truncation_first),
            move || write(!truncation_first),
        );
        let found = offsets(&sim, RECOVERY_POINT_FILE);
        assert_eq!(
            found,
            vec![(tp.clone(), 12)],
            "truncation first: {truncation_first}"
        );
        drop(log);
        drop(dir);
        sim.crash();
        let dir = LogDir::open(sim.storage(), "/d", options()).expect("reopen");
        let (log, report) = dir.open_log(&tp).expect("reopen log");
        assert!(report.warnings.is_empty(), "{report:?}");
        assert!(report.damage.is_none(), "{report:?}");
        assert_eq!(log.log_end_offset(), 12);
    }
}
