//! Recovery of a partition Kafka wrote: its appends wrote none of partlog's gap witnesses
//! (an offset index entry naming each batch that leaves an offset gap; Kafka's index names
//! an append's last offset at its first batch). A Kafka follower of a compacted topic that
//! copied its leader's cleaned segments has such gap batches in its active segment; after
//! Kafka's unclean shutdown, partlog asked for their witnesses and cut the log at the first
//! gap. A partition partlog never opened (no `.lock` in its dir) is recovered without them;
//! one it did keeps the check.

mod common;

use common::{backends, follower_batch, read_all, Backend};
use partlog::log::Log;
use partlog::{CleanupPolicy, LogConfig};

fn compacted() -> LogConfig {
    LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        ..LogConfig::default()
    }
}

/// A compacted partition: offsets 0..=1 flushed, then batches at 10, 20 and 30 (gaps
/// before each, as a follower copies cleaned segments), not flushed; the process dies.
/// Then its index goes, as Kafka's holds no witnesses, and with `kafka` its `.lock` too.
/// Returns the reopened log and what its recovery did.
fn gapped_then_reopened(backend: &Backend, kafka: bool) -> (Log, partlog::log::RecoveryReport) {
    let (log, _) = common::open(backend, "t-0", compacted());
    log.append_as_follower(&follower_batch(2, 0)).unwrap();
    let point = log.flush().unwrap();
    assert_eq!(point, 2);
    for base in [10, 20, 30] {
        log.append_as_follower(&follower_batch(2, base)).unwrap();
    }
    let segment = log.segments()[0].clone();
    drop(log);
    let dir = backend.root.join("t-0");
    backend
        .storage
        .remove_file(&segment.path(".index"))
        .unwrap();
    if kafka {
        backend.storage.remove_file(&dir.join(".lock")).unwrap();
    }
    common::reopen(backend, "t-0", compacted(), false, Some(point))
}

#[test]
fn a_kafka_followers_gap_batches_above_the_recovery_point_are_kept() {
    for backend in backends() {
        let (log, report) = gapped_then_reopened(&backend, true);
        assert!(report.damage.is_none(), "{}: {report:?}", backend.name);
        assert_eq!(log.log_end_offset(), 32);
        assert_eq!(read_all(&log), vec![(0, 1), (10, 11), (20, 21), (30, 31)]);
    }
}

/// partlog's own partition keeps asking for the witnesses: a gap batch above the recovery
/// point without one may be a torn base offset (simulator seed 2055631).
#[test]
fn partlogs_own_gap_batches_without_witnesses_are_still_cut() {
    for backend in backends() {
        let (log, report) = gapped_then_reopened(&backend, false);
        assert!(report.damage.is_some(), "{}: {report:?}", backend.name);
        assert_eq!(log.log_end_offset(), 2);
    }
}
