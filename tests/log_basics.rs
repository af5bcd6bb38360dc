//! The log's operations, each scenario run on the real and the simulated backend.

mod common;

use common::{backends, batch, follower_batch, open, read_all, reopen, small_config, Backend};
use partlog::log::{
    Log, EARLIEST_LOCAL_TIMESTAMP, EARLIEST_TIMESTAMP, GAPS_FILE_NAME, LATEST_TIMESTAMP,
    MAX_TIMESTAMP,
};
use partlog::record::{BatchBuilder, BatchError, TimestampType};
use partlog::{CleanupPolicy, Error, LogConfig};

fn each(scenario: impl Fn(&Backend)) {
    for backend in backends() {
        scenario(&backend);
    }
}

/// The bytes of the first read of `log` from offset 0 (up to 1 MiB).
fn first_bytes(log: &Log) -> Vec<u8> {
    log.read(0, 1 << 20, None)
        .unwrap()
        .expect("data at 0")
        .to_vec()
        .unwrap()
}

fn append(log: &Log, records: usize, ts: i64) -> (i64, i64) {
    let mut b = batch(records, 100, ts);
    let info = log.append_as_leader(&mut b, 3).expect("append");
    (info.first_offset, info.last_offset)
}

#[test]
fn leader_append_assigns_offsets_and_epoch() {
    each(|backend| {
        let (log, _) = open(backend, "t-0", LogConfig::default());
        assert_eq!(append(&log, 3, 10), (0, 2));
        assert_eq!(append(&log, 1, 20), (3, 3));
        assert_eq!(log.log_end_offset(), 4);
        let bytes = first_bytes(&log);
        let first = partlog::record::Batch::parse(&bytes).unwrap();
        assert_eq!(first.header().partition_leader_epoch, 3);
        first.validate().unwrap();
        assert_eq!(read_all(&log), vec![(0, 2), (3, 3)], "{}", backend.name);
    });
}

fn compacted() -> LogConfig {
    LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        ..LogConfig::default()
    }
}

/// A batch larger than `max_message_bytes`: the leader refuses it, a follower takes it, as
/// Kafka's does (the leader took it, maybe under a larger limit since lowered). A follower
/// that refused it refused it at every fetch, and never caught up.
#[test]
fn a_follower_takes_a_batch_larger_than_max_message_bytes() {
    each(|backend| {
        let config = LogConfig {
            max_message_bytes: 1_000,
            ..LogConfig::default()
        };
        let (log, _) = open(backend, "t-0", config);
        let mut large = batch(4, 400, 0);
        assert!(large.len() > 1_000);
        let err = log.append_as_leader(&mut large, 0).unwrap_err();
        assert!(matches!(err, Error::RecordTooLarge { .. }), "{err}");
        let fetched = batch(4, 400, 0); // offsets 0..=3, as its leader gave them
        let info = log.append_as_follower(&fetched).unwrap();
        assert_eq!(
            (info.first_offset, info.last_offset),
            (0, 3),
            "{}",
            backend.name
        );
        assert_eq!(read_all(&log), vec![(0, 3)]);
    });
}

#[test]
fn follower_append_keeps_offsets_and_rejects_old_ones() {
    each(|backend| {
        let (log, _) = open(backend, "t-0", compacted());
        log.append_as_follower(&follower_batch(2, 0)).unwrap();
        // A compacted log may have gaps.
        let later = follower_batch(2, 5);
        assert_eq!(log.append_as_follower(&later).unwrap().first_offset, 5);
        assert_eq!(log.log_end_offset(), 7);
        let err = log.append_as_follower(&follower_batch(1, 6)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidOffset {
                    base_offset: 6,
                    expected: 7
                }
            ),
            "{err}"
        );
        assert_eq!(read_all(&log), vec![(0, 1), (5, 6)]);
    });
}

/// A follower takes its leader's gaps under any policy, as Kafka's does: a leader's log has
/// them wherever it was compacted, whatever its policy now. The first gap marks the log
/// (durably, in its dir) as one that may have gaps, and recovery then keeps them.
#[test]
fn follower_append_takes_gaps_in_a_log_without_compaction_and_marks_it() {
    each(|backend| {
        let config = LogConfig::default();
        let marker = backend.root.join("t-0").join(GAPS_FILE_NAME);
        let (log, _) = open(backend, "t-0", config.clone());
        log.append_as_follower(&follower_batch(2, 0)).unwrap();
        assert!(!log.may_have_gaps());
        assert!(!backend.storage.exists(&marker));
        // Below the log end is still refused, and nothing is written.
        let err = log.append_as_follower(&follower_batch(1, 1)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidOffset {
                    base_offset: 1,
                    expected: 2
                }
            ),
            "{err}"
        );
        log.append_as_follower(&follower_batch(2, 5)).unwrap();
        assert!(log.may_have_gaps());
        assert!(backend.storage.exists(&marker), "{}", backend.name);
        // A gap between two batches of one append.
        let mut two = follower_batch(1, 7);
        two.extend(follower_batch(1, 9));
        log.append_as_follower(&two).unwrap();
        let written = vec![(0, 1), (5, 6), (7, 7), (9, 9)];
        assert_eq!(read_all(&log), written);
        drop(log);
        // Recovered from its start, still under `Delete`: the gaps are no damage.
        let (log, report) = reopen(backend, "t-0", config, false, Some(0));
        assert!(report.damage.is_none(), "{}: {report:?}", backend.name);
        assert!(log.may_have_gaps());
        assert_eq!(read_all(&log), written);
        assert_eq!(log.log_end_offset(), 10);
    });
}

/// A log compacted once keeps its gaps when it is reopened under `Delete` (Kafka lets a
/// topic's `cleanup.policy` go from `compact` to `delete`): recovery from its start does
/// not read the gaps the cleaner left, inside segments and between them, as damage.
#[test]
fn a_compacted_log_reopened_under_delete_keeps_its_gaps() {
    each(|backend| {
        let compact = LogConfig {
            cleanup_policy: CleanupPolicy::Compact,
            ..small_config()
        };
        let (log, _) = open(backend, "t-0", compact.clone());
        let mut base = 0;
        for i in 0..160 {
            // Gaps of 0 to 3 offsets, as a cleaned leader's segments have them.
            base += i % 4;
            let info = log.append_as_follower(&follower_batch(3, base)).unwrap();
            base = info.last_offset + 1;
        }
        let written = read_all(&log);
        assert!(log.segments().len() > 3, "{}", log.segments().len());
        drop(log);
        let delete = LogConfig {
            cleanup_policy: CleanupPolicy::Delete,
            ..compact
        };
        let (log, report) = reopen(backend, "t-0", delete, false, Some(0));
        assert!(report.damage.is_none(), "{}: {report:?}", backend.name);
        assert_eq!(read_all(&log), written, "{}", backend.name);
        assert_eq!(log.log_end_offset(), base);
        assert!(log.may_have_gaps());
    });
}

#[test]
fn follower_append_refuses_offsets_that_overflow() {
    each(|backend| {
        let (log, _) = open(backend, "t-0", compacted());
        log.append_as_follower(&follower_batch(1, i64::MAX - 10))
            .unwrap();
        // Its last offset would be i64::MAX, so the next offset overflows.
        let err = log
            .append_as_follower(&follower_batch(3, i64::MAX - 2))
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidBatch(BatchError::OffsetOverflow { .. })),
            "{err}"
        );
        assert_eq!(log.log_end_offset(), i64::MAX - 9);
        assert_eq!(read_all(&log), vec![(i64::MAX - 10, i64::MAX - 10)]);
    });
}

#[test]
fn follower_append_beyond_the_segment_index_rolls_first() {
    each(|backend| {
        let (log, _) = open(backend, "t-0", compacted());
        log.append_as_follower(&follower_batch(1, 0)).unwrap();
        let far = i32::MAX as i64 + 10;
        log.append_as_follower(&follower_batch(1, far)).unwrap();
        let bases: Vec<i64> = log.segments().iter().map(|s| s.base_offset()).collect();
        assert_eq!(bases, vec![0, far]);
        assert_eq!(read_all(&log), vec![(0, 0), (far, far)]);
    });
}

#[test]
fn follower_append_far_past_an_empty_segment_replaces_it() {
    each(|backend| {
        let (log, _) = open(backend, "t-0", compacted());
        let far = 3 * i32::MAX as i64;
        log.append_as_follower(&follower_batch(2, far)).unwrap();
        let bases: Vec<i64> = log.segments().iter().map(|s| s.base_offset()).collect();
        assert_eq!(bases, vec![far]);
        assert_eq!(read_all(&log), vec![(far, far + 1)]);
    });
}

#[test]
fn one_append_wider_than_a_segment_index_is_refused() {
    each(|backend| {
        let (log, _) = open(backend, "t-0", compacted());
        let mut wide = follower_batch(1, 0);
        wide.extend(follower_batch(1, i32::MAX as i64 + 1));
        let err = log.append_as_follower(&wide).unwrap_err();
        assert!(matches!(err, Error::OffsetSpanTooLarge { .. }), "{err}");
        assert_eq!(log.log_end_offset(), 0);
        // Refusing it is not an I/O failure: the log still takes writes.
        log.append_as_follower(&follower_batch(1, 0)).unwrap();
    });
}

#[test]
fn leader_append_refuses_a_last_offset_delta_its_records_do_not_hold() {
    each(|backend| {
        let (log, _) = open(backend, "t-0", LogConfig::default());
        append(&log, 1, 10);
        let mut b = batch(1, 10, 10);
        set_last_offset_delta(&mut b, i32::MAX);
        let err = log.append_as_leader(&mut b, 3).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidBatch(BatchError::OffsetCountMismatch {
                    last_offset_delta: i32::MAX,
                    records_count: 1
                })
            ),
            "{err}"
        );
        assert_eq!(log.log_end_offset(), 1);
        assert_eq!(read_all(&log), vec![(0, 0)]);
    });
}

/// Rewrites `lastOffsetDelta` and the CRC, as a buggy or hostile producer could.
fn set_last_offset_delta(batch: &mut [u8], delta: i32) {
    batch[23..27].copy_from_slice(&delta.to_be_bytes());
    partlog::record::recompute_crc(batch);
}

#[test]
fn invalid_input_is_rejected_and_changes_nothing() {
    each(|backend| {
        let (log, _) = open(backend, "t-0", LogConfig::default());
        append(&log, 2, 0);
        let mut bad = batch(2, 10, 0);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(matches!(
            log.append_as_leader(&mut bad, 3),
            Err(Error::InvalidBatch(_))
        ));
        let mut short = batch(1, 10, 0);
        short.truncate(40);
        assert!(matches!(
            log.append_as_leader(&mut short, 3),
            Err(Error::InvalidBatch(_))
        ));
        assert_eq!(log.log_end_offset(), 2);
        assert_eq!(read_all(&log), vec![(0, 1)]);
    });
}

#[test]
fn read_bounds_and_sizes() {
    each(|backend| {
        let (log, _) = open(backend, "t-0", LogConfig::default());
        for i in 0..10 {
            append(&log, 2, i * 10);
        }
        let one_size = batch(2, 100, 0).len() as u64;
        // max_bytes smaller than a batch still returns the whole first batch.
        let slice = log.read(4, 1, None).unwrap().unwrap();
        assert_eq!(slice.len(), one_size);
        // Reading from the middle of a batch starts at that batch.
        let bytes = log
            .read(5, 3 * one_size, None)
            .unwrap()
            .unwrap()
            .to_vec()
            .unwrap();
        let got: Vec<i64> = partlog::record::batches(&bytes)
            .map(|b| b.unwrap().header().base_offset)
            .collect();
        assert_eq!(got, vec![4, 6, 8]);
        // The upper bound leaves out batches that reach it.
        let bytes = log
            .read(0, 1 << 20, Some(5))
            .unwrap()
            .unwrap()
            .to_vec()
            .unwrap();
        assert_eq!(partlog::record::batches(&bytes).count(), 2);
        assert!(log.read(20, 100, None).unwrap().is_none());
        assert!(matches!(
            log.read(21, 100, None),
            Err(Error::OffsetOutOfRange { offset: 21, .. })
        ));
        assert!(matches!(
            log.read(-1, 100, None),
            Err(Error::OffsetOutOfRange { .. })
        ));
    });
}

#[test]
fn rolls_and_reads_across_segments() {
    each(|backend| {
        let (log, _) = open(backend, "t-0", small_config());
        for i in 0..100 {
            append(&log, 3, i);
        }
        assert!(log.segment_count() > 5, "{} segments", log.segment_count());
        let expected: Vec<(i64, i64)> = (0..100).map(|i| (i * 3, i * 3 + 2)).collect();
        assert_eq!(read_all(&log), expected);
        for offset in [0, 1, 77, 150, 299] {
            let bytes = log
                .read(offset, 1, None)
                .unwrap()
                .unwrap()
                .to_vec()
                .unwrap();
            let b = partlog::record::Batch::parse(&bytes).unwrap();
            assert!(b.header().base_offset <= offset && offset <= b.header().last_offset());
        }
    });
}

#[test]
fn offset_for_timestamp_finds_first_at_or_after() {
    each(|backend| {
        let (log, _) = open(backend, "t-0", small_config());
        // Batch i holds records with timestamps 1000*i .. 1000*i+2.
        for i in 0..50 {
            append(&log, 3, 1000 * i);
        }
        let found = log.offset_for_timestamp(7001).unwrap().unwrap();
        assert_eq!((found.offset, found.timestamp), (22, 7001));
        let found = log.offset_for_timestamp(7003).unwrap().unwrap();
        assert_eq!((found.offset, found.timestamp), (24, 8000));
        assert_eq!(log.offset_for_timestamp(0).unwrap().unwrap().offset, 0);
        assert!(log.offset_for_timestamp(49_003).unwrap().is_none());
        assert_eq!(
            log.offset_for_timestamp(EARLIEST_TIMESTAMP)
                .unwrap()
                .unwrap()
                .offset,
            0
        );
        assert_eq!(
            log.offset_for_timestamp(LATEST_TIMESTAMP)
                .unwrap()
                .unwrap()
                .offset,
            150
        );
    });
}

/// Kafka's special ListOffsets values besides earliest and latest: `MAX_TIMESTAMP` (-3) is
/// the first record with the log's largest timestamp, wherever it lies (here batch 20,
/// and batch 30 in a later segment carries the same timestamps); `EARLIEST_LOCAL` (-4) is
/// the log start; any other negative timestamp is refused. `-3` used to be taken as a
/// time, which every record is at or after: the answer was the log start.
#[test]
fn max_timestamp_finds_the_first_record_with_the_largest_timestamp() {
    each(|backend| {
        let (log, _) = open(backend, "t-0", small_config());
        for i in 0..50 {
            let ts = if i == 20 || i == 30 { 99_000 } else { 1000 * i };
            append(&log, 3, ts);
        }
        assert!(log.segment_count() > 3, "{}", backend.name);
        let found = log.offset_for_timestamp(MAX_TIMESTAMP).unwrap().unwrap();
        assert_eq!(
            (found.offset, found.timestamp),
            (62, 99_002),
            "{}",
            backend.name
        );
        // Bounded by a high watermark below it, as Kafka answers: nothing.
        let bounded = log.offset_for_timestamp_up_to(MAX_TIMESTAMP, Some(62));
        assert_eq!(bounded.unwrap(), None);
        let bounded = log.offset_for_timestamp_up_to(MAX_TIMESTAMP, Some(63));
        assert_eq!(bounded.unwrap().map(|f| f.offset), Some(62));
        log.advance_log_start_offset(10).unwrap();
        let local = log.offset_for_timestamp(EARLIEST_LOCAL_TIMESTAMP).unwrap();
        assert_eq!(local.map(|f| f.offset), Some(10));
        for t in [-5, -6, i64::MIN] {
            let err = log.offset_for_timestamp(t).unwrap_err();
            assert!(matches!(err, Error::InvalidRequest(_)), "{t}: {err}");
        }
    });
}

/// `MAX_TIMESTAMP` counts only the records at or above the log start. A record below it
/// (DeleteRecords inside a segment) with the largest timestamp made the answer `None`,
/// for as long as its segment lived, although later records have timestamps.
#[test]
fn max_timestamp_looks_at_the_records_from_the_log_start_only() {
    each(|backend| {
        let (log, _) = open(backend, "t-0", small_config());
        append(&log, 3, 1_000); // 0..=2
        let mut straddling = BatchBuilder::new();
        for ts in [99_000, 5_000, 600] {
            straddling.append(ts, None, Some(b"v"), &[]);
        }
        log.append_as_leader(&mut straddling.build().unwrap(), 3)
            .unwrap(); // 3..=5
        append(&log, 3, 2_000); // 6..=8, timestamps 2,000..=2,002
        let max = |log: &Log| {
            let found = log.offset_for_timestamp(MAX_TIMESTAMP).unwrap();
            found.map(|f| (f.offset, f.timestamp))
        };
        assert_eq!(max(&log), Some((3, 99_000)), "{}", backend.name);
        // Inside the batch: its record at 4 has the largest timestamp from there.
        log.advance_log_start_offset(4).unwrap();
        assert_eq!(max(&log), Some((4, 5_000)), "{}", backend.name);
        log.advance_log_start_offset(6).unwrap();
        assert_eq!(max(&log), Some((8, 2_002)), "{}", backend.name);
    });
}

/// An empty log, and one whose records carry no timestamp (-1, as old clients write),
/// have no record with a largest timestamp.
#[test]
fn max_timestamp_of_a_log_without_timestamps_is_none() {
    each(|backend| {
        let (log, _) = open(backend, "t-0", small_config());
        assert_eq!(log.offset_for_timestamp(MAX_TIMESTAMP).unwrap(), None);
        let mut b = batch(1, 10, -1);
        log.append_as_leader(&mut b, 0).unwrap();
        assert_eq!(log.offset_for_timestamp(MAX_TIMESTAMP).unwrap(), None);
    });
}

/// Kafka indexes an append, not each batch: one entry names the append's last offset at
/// its first batch's position. A truncation inside such an append kept the entry (its
/// position lies below the cut) while it named offsets the cut removed; the next entry
/// an append added, for a lower offset, found the index corrupt, and the log failed.
/// Entries now go by offset as well, as Kafka's `truncateTo` drops them.
#[test]
fn a_truncation_inside_a_kafka_append_drops_its_index_entry() {
    each(|backend| {
        let config = LogConfig {
            index_interval_bytes: 1,
            ..LogConfig::default()
        };
        let (log, _) = open(backend, "t-0", config.clone());
        for i in 0..6 {
            append(&log, 1, 100 * i);
        }
        let segment = log.segments()[0].clone();
        let third = log.read(2, 1, None).unwrap().unwrap().position();
        log.close().unwrap();
        drop(log);
        // As Kafka's follower leaves it after one append of offsets 2..=5: (5, position of 2).
        let mut entry = 5i32.to_be_bytes().to_vec();
        entry.extend_from_slice(&(third as u32).to_be_bytes());
        common::write_file(backend, &segment.path(".index"), &entry);
        let mut time_entry = 500i64.to_be_bytes().to_vec();
        time_entry.extend_from_slice(&5i32.to_be_bytes());
        common::write_file(backend, &segment.path(".timeindex"), &time_entry);
        // Cleanly shut down: the indexes are taken as they are.
        let (log, _) = common::reopen(backend, "t-0", config, true, Some(6));
        assert_eq!(log.log_end_offset(), 6);
        log.truncate_to(4).unwrap();
        for i in 0..3 {
            append(&log, 1, 1_000 + i);
        }
        assert_eq!(log.log_end_offset(), 7, "{}", backend.name);
        common::check_every_offset(&log);
    });
}

#[test]
fn truncate_to_removes_batches_and_later_segments() {
    each(|backend| {
        let (log, _) = open(backend, "t-0", small_config());
        for i in 0..60 {
            append(&log, 2, i);
        }
        let segments_before = log.segment_count();
        log.truncate_to(51).unwrap();
        // Offset 51 is inside batch 50..51: the batch goes whole.
        assert_eq!(log.log_end_offset(), 50);
        assert!(log.segment_count() < segments_before);
        assert_eq!(read_all(&log).last(), Some(&(48, 49)));
        assert_eq!(append(&log, 2, 0), (50, 51));
        log.truncate_to(0).unwrap();
        assert_eq!(log.log_end_offset(), 0);
        assert_eq!(read_all(&log), vec![]);
        assert_eq!(append(&log, 1, 0), (0, 0));
    });
}

#[test]
fn truncate_fully_and_start_at() {
    each(|backend| {
        let (log, _) = open(backend, "t-0", small_config());
        for i in 0..30 {
            append(&log, 2, i);
        }
        log.truncate_fully_and_start_at(1000).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (1000, 1000));
        assert_eq!(log.segment_count(), 1);
        assert_eq!(append(&log, 2, 0), (1000, 1001));
        assert!(matches!(
            log.read(0, 10, None),
            Err(Error::OffsetOutOfRange { .. })
        ));
        assert_eq!(read_all(&log), vec![(1000, 1001)]);
    });
}

/// A truncation to a negative offset (the undefined epoch end offset, -1, taken as a
/// target) is refused and changes nothing. It used to restart the log at -1, in a
/// segment named with a sign that the next open skipped: everything appended since was
/// lost without a warning.
#[test]
fn a_truncation_to_a_negative_offset_is_refused() {
    each(|backend| {
        let (log, _) = open(backend, "t-0", small_config());
        append(&log, 2, 0);
        assert!(matches!(log.truncate_to(-1), Err(Error::InvalidRequest(_))));
        assert!(matches!(
            log.truncate_fully_and_start_at(-5),
            Err(Error::InvalidRequest(_))
        ));
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 2));
        assert_eq!(append(&log, 2, 0), (2, 3));
        assert_eq!(read_all(&log), vec![(0, 1), (2, 3)]);
    });
}

#[test]
fn reopen_after_clean_close_and_after_crash_agree() {
    each(|backend| {
        let (log, _) = open(backend, "t-0", small_config());
        for i in 0..40 {
            append(&log, 2, i);
        }
        let expected = read_all(&log);
        log.close().unwrap();
        drop(log);
        // Unclean (no hints): everything is scanned and nothing is lost.
        let (log, report) = open(backend, "t-0", small_config());
        assert!(report.damage.is_none(), "{report:?}");
        assert_eq!(report.segments_scanned, report.segments);
        assert_eq!(read_all(&log), expected);
        assert_eq!(log.log_end_offset(), 80);
        assert_eq!(append(&log, 1, 0), (80, 80));
    });
}

/// Rolling measured "now minus the first batch's timestamp", so a producer sending
/// timestamps older than `segment_ms` started a new segment on every append (thousands of
/// segments, then "too many open files"). Kafka measures the new batch's timestamp against
/// the first one's.
#[test]
fn old_timestamps_do_not_roll_every_append() {
    each(|backend| {
        let (log, _) = open(backend, "t-0", LogConfig::default());
        let week_ms = 7 * 24 * 3600 * 1000;
        for i in 0..20 {
            append(&log, 2, 1_000 + i); // far older than the clock's "now"
        }
        assert_eq!(log.segment_count(), 1, "{}", backend.name);
        // A batch a whole roll period newer than the first one does roll.
        append(&log, 1, 1_000 + week_ms + 100);
        assert_eq!(log.segment_count(), 2, "{}", backend.name);
    });
}

/// A segment's roll waits from the largest timestamp of its first append, as Kafka's
/// `rollingBasedTimestamp`: a follower's first fetch into an empty segment may span more
/// than `segment_ms`, and the segment then rolls a roll period after the newest of its
/// batches. It used to wait from the first batch's, and rolled at the next append.
#[test]
fn a_roll_waits_from_the_newest_batch_of_the_segments_first_append() {
    each(|backend| {
        let day = 24 * 3600 * 1000;
        let config = LogConfig {
            segment_ms: day,
            ..LogConfig::default()
        };
        let (log, _) = open(backend, "t-0", config);
        let at = |offset: i64, ts: i64| {
            let mut b = batch(1, 100, ts);
            partlog::record::set_base_offset(&mut b, offset);
            b
        };
        let fetched: Vec<u8> = (0..4).flat_map(|i| at(i, 1_000 + i * day)).collect();
        log.append_as_follower(&fetched).unwrap();
        log.append_as_follower(&at(4, 1_000 + 3 * day + 100))
            .unwrap();
        assert_eq!(log.segment_count(), 1, "{}", backend.name);
        log.append_as_follower(&at(5, 1_000 + 4 * day + 100))
            .unwrap();
        assert_eq!(log.segment_count(), 2, "{}", backend.name);
    });
}

/// `Segment::read` added `max_bytes` to the batch position unchecked: `u64::MAX` ("no
/// limit") from any batch but the first overflowed (a panic in debug builds, a wrapped
/// limit that returned a single batch in release). Found by the `checkpoint_parse` fuzzer.
#[test]
fn read_with_unbounded_max_bytes_from_a_later_batch_returns_the_rest_of_the_segment() {
    each(|backend| {
        let (log, _) = open(backend, "t-0", LogConfig::default());
        for ts in 0..4 {
            append(&log, 2, ts);
        }
        let slice = log.read(3, u64::MAX, None).unwrap().unwrap();
        let bytes = slice.to_vec().unwrap();
        let got: Vec<i64> = partlog::record::batches(&bytes)
            .map(|b| b.unwrap().header().base_offset)
            .collect();
        assert_eq!(got, vec![2, 4, 6], "{}", backend.name);
    });
}

/// Leader epochs never decrease along a log: a leader or follower append with a lower epoch
/// is fenced and changes nothing.
#[test]
fn appends_from_an_older_leader_epoch_are_fenced() {
    each(|backend| {
        let (log, _) = open(backend, "t-0", LogConfig::default());
        append(&log, 2, 0); // epoch 3
        assert_eq!(log.latest_epoch(), 3);
        let err = log.append_as_leader(&mut batch(1, 10, 0), 2).unwrap_err();
        assert!(
            matches!(
                err,
                Error::FencedLeaderEpoch {
                    epoch: 2,
                    latest: 3
                }
            ),
            "{err}"
        );
        let mut stale = batch(1, 10, 0);
        partlog::record::set_base_offset(&mut stale, 2);
        partlog::record::set_partition_leader_epoch(&mut stale, 1);
        let err = log.append_as_follower(&stale).unwrap_err();
        assert!(matches!(err, Error::FencedLeaderEpoch { .. }), "{err}");
        assert_eq!(log.log_end_offset(), 2);
        // A newer epoch is taken, and survives a reopen.
        log.append_as_leader(&mut batch(1, 10, 0), 4).unwrap();
        assert_eq!(log.latest_epoch(), 4);
        log.close().unwrap();
        drop(log);
        let (log, _) = open(backend, "t-0", LogConfig::default());
        assert_eq!(log.latest_epoch(), 4);
    });
}

/// Under `message.timestamp.type=LogAppendTime`, a batch gets the broker's clock as its
/// max timestamp (with a recomputed CRC), and time lookups use that time for all its
/// records; the append reports the clock's time too when the producer wrote a later one.
/// A batch its producer marked `LogAppendTime` is refused there, as Kafka's
/// `LogValidator` refuses it ("Producer should not set timestamp type to
/// LogAppendTime"), and nothing is written.
#[test]
fn log_append_time_batches_are_stamped_with_the_clock() {
    each(|backend| {
        let config = LogConfig {
            message_timestamp_type: TimestampType::LogAppendTime,
            ..LogConfig::default()
        };
        let (log, _) = open(backend, "t-0", config); // clock at 1,000,000
        let mut builder = partlog::record::BatchBuilder::new();
        builder.append(5, Some(b"a"), Some(b"1"), &[]);
        builder.append(6, Some(b"b"), Some(b"2"), &[]);
        let mut b = builder.build().unwrap();
        let info = log.append_as_leader(&mut b, 3).unwrap();
        assert_eq!(info.max_timestamp, 1_000_000);
        let bytes = first_bytes(&log);
        let batch = partlog::record::Batch::parse(&bytes).unwrap();
        batch.validate().unwrap();
        assert_eq!(
            batch.header().timestamp_type(),
            TimestampType::LogAppendTime
        );
        assert_eq!(batch.header().max_timestamp, 1_000_000);
        let found = log.offset_for_timestamp(999_999).unwrap().unwrap();
        assert_eq!((found.offset, found.timestamp), (0, 1_000_000));
        assert!(log.offset_for_timestamp(1_000_001).unwrap().is_none());
        // Also what the append returns when the producer wrote a later time: the clock's.
        let mut later = partlog::record::BatchBuilder::new();
        later.append(5_000_000, Some(b"c"), Some(b"3"), &[]);
        let info = log
            .append_as_leader(&mut later.build().unwrap(), 3)
            .unwrap();
        assert_eq!(info.max_timestamp, 1_000_000);
        let mut marked = partlog::record::BatchBuilder::new();
        marked.timestamp_type(TimestampType::LogAppendTime);
        marked.append(7, Some(b"d"), Some(b"4"), &[]);
        let refused = log
            .append_as_leader(&mut marked.build().unwrap(), 3)
            .unwrap_err();
        assert!(
            matches!(
                refused,
                Error::LogAppendTimeFromProducer { max_timestamp: 7 }
            ),
            "{refused}"
        );
        assert_eq!(log.log_end_offset(), 3);
    });
}

/// Under the default `message.timestamp.type=CreateTime`, a batch its producer marked
/// `LogAppendTime` is stored as Kafka's `LogValidator` stores it: Kafka reads each of its
/// records at the header's max, so it is marked `CreateTime` with that max (its CRC
/// recomputed), its records keeping their own times, by which time lookups find them.
/// Without a max timestamp it is refused. (It used to be stamped with the broker's
/// clock, then given its records' own largest time.)
#[test]
fn a_client_log_append_time_batch_takes_the_topics_create_time() {
    each(|backend| {
        let (log, _) = open(backend, "t-0", LogConfig::default()); // clock at 1,000,000
        let mut builder = partlog::record::BatchBuilder::new();
        builder.timestamp_type(TimestampType::LogAppendTime);
        builder.append(5_000, Some(b"a"), Some(b"1"), &[]);
        builder.append(7_000, Some(b"b"), Some(b"2"), &[]);
        builder.append(6_000, Some(b"c"), Some(b"3"), &[]);
        let original = builder.build().unwrap();
        let mut marked = original.clone();
        partlog::record::set_max_timestamp(&mut marked, 9_000);
        let info = log.append_as_leader(&mut marked, 3).unwrap();
        assert_eq!(info.max_timestamp, 9_000);
        let bytes = first_bytes(&log);
        let batch = partlog::record::Batch::parse(&bytes).unwrap();
        batch.validate().unwrap();
        assert_eq!(batch.header().timestamp_type(), TimestampType::CreateTime);
        assert_eq!(batch.header().max_timestamp, 9_000);
        let found = log.offset_for_timestamp(6_500).unwrap().unwrap();
        assert_eq!((found.offset, found.timestamp), (1, 7_000));
        let found = log.offset_for_timestamp(5_500).unwrap().unwrap();
        assert_eq!((found.offset, found.timestamp), (1, 7_000));
        let found = log.offset_for_timestamp(4_000).unwrap().unwrap();
        assert_eq!((found.offset, found.timestamp), (0, 5_000));
        // A max below -1 reads as none for the header, as Kafka's max starts at -1.
        let mut below = original.clone();
        partlog::record::set_max_timestamp(&mut below, -5);
        let info = log.append_as_leader(&mut below, 3).unwrap();
        assert_eq!(info.max_timestamp, -1);
        let slice = log.read(info.first_offset, 1 << 20, None).unwrap().unwrap();
        let bytes = slice.to_vec().unwrap();
        let batch = partlog::record::Batch::parse(&bytes).unwrap();
        batch.validate().unwrap();
        assert_eq!(batch.header().timestamp_type(), TimestampType::CreateTime);
        assert_eq!(batch.header().max_timestamp, -1);
        let mut untimed = original;
        partlog::record::set_max_timestamp(&mut untimed, -1);
        let refused = log.append_as_leader(&mut untimed, 3).unwrap_err();
        assert!(
            matches!(
                refused,
                Error::LogAppendTimeFromProducer { max_timestamp: -1 }
            ),
            "{refused}"
        );
        assert_eq!(log.log_end_offset(), 6);
    });
}

/// A client may not write a control batch (Kafka's "Clients are not allowed to write
/// control records"): forged, an ABORT would end another producer's transaction and the
/// cleaner would drop its committed records. A coordinator writes it. A client's batch with
/// a producer id and no sequence is refused too. Refused appends write nothing.
#[test]
fn only_a_coordinator_writes_control_batches() {
    use partlog::record::BatchBuilder;
    each(|backend| {
        let (log, _) = open(backend, "t-0", LogConfig::default());
        let mut txn = BatchBuilder::new();
        txn.transactional(true).producer(9, 0, 0);
        txn.append(1_000, Some(b"k"), Some(b"v"), &[]);
        log.append_as_leader(&mut txn.build().unwrap(), 3).unwrap();
        let mut abort = BatchBuilder::transaction_marker(9, 0, false, 0, 1_000).unwrap();
        assert!(matches!(
            log.append_as_leader(&mut abort.clone(), 3),
            Err(Error::ControlBatchFromClient)
        ));
        let mut unsequenced = BatchBuilder::new();
        unsequenced.producer(11, 0, -1);
        unsequenced.append(1_000, Some(b"k"), Some(b"v"), &[]);
        assert!(matches!(
            log.append_as_leader(&mut unsequenced.build().unwrap(), 3),
            Err(Error::InvalidSequence {
                producer_id: 11,
                base_sequence: -1
            })
        ));
        assert_eq!(log.log_end_offset(), 1);
        assert_eq!(
            log.open_transactions(|_| {}).unwrap().len(),
            1,
            "still open"
        );
        let info = log.append_as_coordinator(&mut abort, 3).unwrap();
        assert_eq!((info.first_offset, info.last_offset), (1, 1));
        assert!(log.open_transactions(|_| {}).unwrap().is_empty(), "ended");
    });
}

/// A `CreateTime` batch's max timestamp is its records' largest, whatever the producer
/// wrote in the header (Kafka's `LogValidator` sets it, CRC and all): a header claiming
/// less would hide the batch from lookups by time, one claiming more would answer a
/// `MAX_TIMESTAMP` lookup with no record.
#[test]
fn the_leader_writes_the_records_max_timestamp_in_the_header() {
    use partlog::record::{set_max_timestamp, Batch, BatchBuilder};
    each(|backend| {
        let (log, _) = open(backend, "t-0", LogConfig::default());
        for (claimed, first) in [(1_000, 0), (9_999, 2), (2_000, 4)] {
            let mut b = BatchBuilder::new();
            b.append(1_000, Some(b"a"), Some(b"1"), &[]);
            b.append(2_000, Some(b"b"), Some(b"2"), &[]);
            let mut bytes = b.build().unwrap();
            set_max_timestamp(&mut bytes, claimed);
            let info = log.append_as_leader(&mut bytes, 3).unwrap();
            assert_eq!((info.first_offset, info.max_timestamp), (first, 2_000));
        }
        let bytes = first_bytes(&log);
        for batch in partlog::record::batches(&bytes) {
            let batch: Batch<'_> = batch.unwrap();
            batch.validate().unwrap();
            assert_eq!(batch.header().max_timestamp, 2_000);
        }
        let found = log.offset_for_timestamp(1_500).unwrap().unwrap();
        assert_eq!((found.offset, found.timestamp), (1, 2_000));
        let max = log.offset_for_timestamp(MAX_TIMESTAMP).unwrap().unwrap();
        assert_eq!((max.offset, max.timestamp), (1, 2_000));
    });
}

/// A record whose value length is negative but not -1 is a null value, as Kafka's reader
/// takes it (and Kafka's leader appends it): partlog refused such a batch, and its
/// recovery cut it out of a Kafka-written log with everything after it.
#[test]
fn a_negative_value_length_below_minus_one_reads_as_null() {
    use partlog::record::{recompute_crc, Batch, BatchBuilder, HEADER_LEN};
    each(|backend| {
        let (log, _) = open(backend, "t-0", LogConfig::default());
        let mut b = BatchBuilder::new();
        b.append(1_000, Some(b"k"), None, &[]);
        let mut bytes = b.build().unwrap();
        // length, attributes, timestamp delta, offset delta, key length 1, "k", value length
        assert_eq!(bytes[HEADER_LEN + 6], 1, "a null value: zigzag -1");
        bytes[HEADER_LEN + 6] = 3; // zigzag -2
        recompute_crc(&mut bytes);
        log.append_as_leader(&mut bytes, 3).unwrap();
        append(&log, 2, 0);
        drop(log);
        let (log, report) = common::reopen(backend, "t-0", LogConfig::default(), false, Some(0));
        assert!(report.damage.is_none(), "{report:?}");
        assert_eq!(read_all(&log), vec![(0, 0), (1, 2)]);
        let bytes = first_bytes(&log);
        let batch = Batch::parse(&bytes).unwrap();
        let record = batch.records().unwrap().next().unwrap().unwrap();
        assert_eq!((record.key, record.value), (Some(&b"k"[..]), None));
    });
}

/// Records without timestamps (-1) put no entry in the time index, as in Kafka: an entry of
/// -1 at relative offset 0 made the zeros after it (a preallocated index whose trim at the
/// roll a power loss undid) read as an entry of timestamp 0, which aged the segment to
/// 1970, and time retention deleted it at its next pass.
#[test]
fn records_without_timestamps_are_not_indexed_by_time() {
    each(|backend| {
        let (log, _) = open(backend, "t-0", small_config());
        for _ in 0..20 {
            log.append_as_leader(&mut batch(1, 40, -1), 3).unwrap();
        }
        log.force_roll().unwrap();
        append(&log, 1, 5_000);
        log.close().unwrap();
        drop(log);
        let index = backend
            .root
            .join("t-0")
            .join("00000000000000000000.timeindex");
        let mut bytes = common::file_bytes(backend, &index);
        assert!(bytes.is_empty(), "{bytes:?}");
        bytes.resize(120, 0);
        common::write_file(backend, &index, &bytes);
        let (log, _) = common::reopen(backend, "t-0", small_config(), true, Some(21));
        assert_eq!(log.segments()[0].largest_timestamp().unwrap(), -1);
        let found = log.offset_for_timestamp(0).unwrap().unwrap();
        assert_eq!((found.offset, found.timestamp), (20, 5_000));
    });
}

/// A read of the whole log (the offsets store's load, the open transactions) that could
/// not read a batch header in the middle of a segment (an `EIO`) ended that segment's
/// slice there, and the next segment's followed: the batches between were skipped, and a
/// load replaying them lost commits. A read error on any read of it now fails it, or it
/// holds every batch.
#[test]
fn a_read_of_the_whole_log_fails_or_holds_every_batch() {
    use partlog::io::sim::{FaultKind, SimOp};
    let (backend, disk) = common::sim_with_disk(5);
    let (log, _) = open(&backend, "t-0", small_config());
    for i in 0..40 {
        append(&log, 2, i);
    }
    let end = log.log_end_offset();
    assert!(log.segment_count() > 2);
    let offsets = |slices: Vec<partlog::segment::FileSlice>| -> Vec<i64> {
        let mut offsets = Vec::new();
        for slice in slices {
            for b in partlog::record::batches(&slice.to_vec().unwrap()) {
                let h = *b.unwrap().header();
                offsets.extend(h.base_offset..h.next_offset());
            }
        }
        offsets
    };
    assert_eq!(
        offsets(log.read_all(0, end).unwrap()),
        (0..end).collect::<Vec<_>>()
    );
    let mut failed = 0;
    for n in 1..120 {
        disk.fail_nth(SimOp::Read, n, FaultKind::Eio).unwrap();
        let read = log.read_all(0, end);
        disk.clear_faults();
        match read {
            Ok(slices) => assert_eq!(offsets(slices), (0..end).collect::<Vec<_>>(), "read {n}"),
            Err(_) => failed += 1,
        }
    }
    assert!(failed > 0, "some read failed");
}
