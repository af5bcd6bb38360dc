//! The log's leader-epoch cache: it follows appends, truncations and the log start, is
//! kept in `leader-epoch-checkpoint`, and is rebuilt from the batches when that file is
//! missing or damaged. Each scenario runs on both backends.

mod common;

use common::{backends, batch, file_bytes, open, reopen, sim_with_disk, write_file, Backend};
use partlog::log::{EpochEntry, Log};
use partlog::LogConfig;

fn entries(log: &Log) -> Vec<(i32, i64)> {
    log.epoch_entries()
        .iter()
        .map(|e: &EpochEntry| (e.epoch, e.start_offset))
        .collect()
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_bytes_max: 1024,
        ..LogConfig::default()
    }
}

/// Epoch 0 at 0..=4, epoch 2 at 5..=8, epoch 4 at 9..=12 (three batches of 1-2 records
/// per epoch), rolling as it goes.
fn build(backend: &Backend, name: &str) -> Log {
    let (log, _) = open(backend, name, config());
    for (epoch, records) in [(0, [2, 2, 1]), (2, [1, 2, 1]), (4, [2, 1, 1])] {
        for n in records {
            log.append_as_leader(&mut batch(n, 200, 0), epoch).unwrap();
        }
    }
    assert_eq!(log.log_end_offset(), 13);
    log
}

fn checkpoint_text(backend: &Backend, name: &str) -> String {
    let path = backend.root.join(name).join("leader-epoch-checkpoint");
    String::from_utf8(file_bytes(backend, &path)).unwrap()
}

#[test]
fn the_cache_follows_appends_truncations_and_the_log_start() {
    for backend in backends() {
        let log = build(&backend, "t-0");
        assert_eq!(
            entries(&log),
            vec![(0, 0), (2, 5), (4, 9)],
            "{}",
            backend.name
        );
        // Written when each epoch began, before its first batch.
        assert_eq!(checkpoint_text(&backend, "t-0"), "0\n3\n0 0\n2 5\n4 9\n");
        assert_eq!(log.end_offset_for_epoch(1), (0, 5));
        assert_eq!(log.end_offset_for_epoch(3), (2, 9));
        assert_eq!(log.end_offset_for_epoch(4), (4, 13));
        assert_eq!(log.end_offset_for_epoch(7), (-1, -1));

        // A leader of epoch 6 that appended nothing, then a truncation at the log end
        // (a diverging answer as it follows again): the epoch the log lacks goes, as in
        // Kafka's `truncateTo`; nothing else changes.
        log.assign_leader_epoch(6).unwrap();
        assert_eq!(entries(&log), vec![(0, 0), (2, 5), (4, 9), (6, 13)]);
        assert_eq!(log.truncate_to(13).unwrap(), 0);
        assert_eq!(entries(&log), vec![(0, 0), (2, 5), (4, 9)]);
        assert_eq!(checkpoint_text(&backend, "t-0"), "0\n3\n0 0\n2 5\n4 9\n");
        assert_eq!(log.log_end_offset(), 13);

        // The batch holding 6..=7 goes whole: the log ends at 6.
        log.truncate_to(7).unwrap();
        assert_eq!(log.log_end_offset(), 6);
        assert_eq!(entries(&log), vec![(0, 0), (2, 5)]);
        assert_eq!(checkpoint_text(&backend, "t-0"), "0\n2\n0 0\n2 5\n");
        // A new leader's epoch continues from the cut.
        log.append_as_leader(&mut batch(1, 10, 0), 5).unwrap();
        assert_eq!(entries(&log), vec![(0, 0), (2, 5), (5, 6)]);

        // The first epoch left moves to the new log start.
        log.advance_log_start_offset(3).unwrap();
        assert_eq!(entries(&log), vec![(0, 3), (2, 5), (5, 6)]);
        log.close().unwrap();
        drop(log);
        // Reopened with its log start, as a log dir does from its checkpoint.
        let reopen = |log_start_offset| {
            let options = partlog::log::LogOpenOptions {
                log_start_offset,
                clean_shutdown: true,
                ..common::options(
                    &backend,
                    "t-0",
                    config(),
                    std::sync::Arc::new(partlog::ManualClock::new(0)),
                )
            };
            Log::open(options).unwrap().0
        };
        let log = reopen(Some(3));
        assert_eq!(entries(&log), vec![(0, 3), (2, 5), (5, 6)]);
        drop(log);
        // Without it the log starts at its first batch again, which the cache no longer
        // covers: it is rebuilt from the batches.
        let log = reopen(None);
        assert_eq!(entries(&log), vec![(0, 0), (2, 5), (5, 6)]);

        log.truncate_fully_and_start_at(40).unwrap();
        assert!(entries(&log).is_empty());
        assert_eq!(checkpoint_text(&backend, "t-0"), "0\n0\n");
    }
}

#[test]
fn a_missing_or_damaged_checkpoint_is_rebuilt_from_the_batches() {
    for backend in backends() {
        let log = build(&backend, "t-0");
        log.close().unwrap();
        drop(log);
        let path = backend.root.join("t-0").join("leader-epoch-checkpoint");
        backend.storage.remove_file(&path).unwrap();
        let (log, report) = open(&backend, "t-0", config());
        assert_eq!(entries(&log), vec![(0, 0), (2, 5), (4, 9)], "{report:?}");
        assert_eq!(checkpoint_text(&backend, "t-0"), "0\n3\n0 0\n2 5\n4 9\n");
        drop(log);

        // Epochs that do not increase: no file Kafka or partlog writes.
        write_file(&backend, &path, b"0\n2\n4 0\n2 5\n");
        let (log, report) = open(&backend, "t-0", config());
        assert_eq!(entries(&log), vec![(0, 0), (2, 5), (4, 9)]);
        assert!(
            report.warnings.iter().any(|w| w.contains("leader-epoch")),
            "{report:?}"
        );
    }
}

/// Power fails after a new leader's first batch was appended but not flushed. The
/// checkpoint already names the new epoch; recovery drops the batch, and the entry with it.
#[test]
fn recovery_drops_entries_past_the_recovered_end() {
    for seed in 0..8 {
        let (backend, disk) = sim_with_disk(seed);
        let log = build(&backend, "t-0");
        log.flush().unwrap();
        log.append_as_leader(&mut batch(2, 200, 0), 6).unwrap();
        assert_eq!(entries(&log).last(), Some(&(6, 13)));
        drop(log);
        disk.crash();
        let (log, _) = open(&backend, "t-0", config());
        let end = log.log_end_offset();
        let cache = entries(&log);
        if end == 13 {
            assert_eq!(cache, vec![(0, 0), (2, 5), (4, 9)], "seed {seed}");
        } else {
            assert_eq!(cache.last(), Some(&(6, 13)), "seed {seed}: end {end}");
        }
    }
}

/// A truncation at the log end drops an epoch that starts there (one led without
/// appends). When the checkpoint's write failed, the error came back but the log went on
/// taking appends, and nothing rewrote the file: after a restart the dropped epoch came
/// back, and recovery took the batches of the earlier epoch appended after it for torn.
/// The log now fails, as for every other durable change of its epochs.
#[test]
fn a_failed_write_of_the_dropped_epoch_fails_the_log() {
    let (backend, disk) = sim_with_disk(31);
    let log = build(&backend, "t-0");
    log.assign_leader_epoch(7).unwrap();
    assert_eq!(entries(&log).last(), Some(&(7, 13)));
    disk.set_faults(partlog::io::sim::FaultPlan {
        write_eio: 1.0,
        path_suffix: Some("leader-epoch-checkpoint.tmp".into()),
        ..Default::default()
    });
    assert!(log.truncate_to(13).is_err());
    disk.clear_faults();
    assert!(
        log.append_as_leader(&mut batch(1, 200, 0), 4).is_err(),
        "the log is failed"
    );
    assert_eq!(log.log_end_offset(), 13);
}

/// A Kafka broker truncated an epoch away (a follower that found it diverged), wrote the
/// earlier epoch's batches in its place, and crashed before its background write of the
/// checkpoint dropped the entry. Opening that dir, recovery took the checkpoint's stale
/// epoch as the floor of the batches after it and cut them as torn, valid batches a
/// leader may have committed; and the cache kept the stale entry, which this replica would
/// have answered for as a leader. The batches stay and the entry goes.
#[test]
fn a_stale_entry_in_a_kafka_checkpoint_cuts_nothing() {
    for backend in backends() {
        let (log, _) = open(&backend, "t-0", config());
        for (epoch, records) in [(0, 5), (2, 4), (4, 2)] {
            log.append_as_leader(&mut batch(records, 200, 0), epoch)
                .unwrap();
        }
        log.force_roll().unwrap();
        log.append_as_leader(&mut batch(2, 200, 0), 4).unwrap();
        let last_base = 11;
        assert_eq!(log.segments().last().unwrap().base_offset(), last_base);
        log.close().unwrap();
        drop(log);
        let dir = backend.root.join("t-0");
        backend.storage.remove_file(&dir.join(".lock")).unwrap();
        let stale = format!("0\n4\n0 0\n2 5\n4 9\n6 {last_base}\n");
        write_file(
            &backend,
            &dir.join("leader-epoch-checkpoint"),
            stale.as_bytes(),
        );
        let (log, report) = reopen(&backend, "t-0", config(), false, Some(0));
        assert!(report.damage.is_none(), "{}: {report:?}", backend.name);
        assert_eq!(log.log_end_offset(), 13);
        assert_eq!(entries(&log), vec![(0, 0), (2, 5), (4, 9)]);
        assert_eq!(checkpoint_text(&backend, "t-0"), "0\n3\n0 0\n2 5\n4 9\n");
    }
}
