//! Recovery against base offsets that a torn write raised (the CRC does not cover them) and
//! against crafted offsets that would overflow the arithmetic.

mod common;

use common::{backends, batch, file_bytes, open, read_all, write_file, Backend};
use partlog::log::DamageKind;
use partlog::record::{recompute_crc, set_base_offset};
use partlog::segment::files;
use partlog::{CleanupPolicy, LogConfig};

const BATCHES: usize = 4;

/// One segment of `BATCHES` two-record batches, written under `config`; returns the
/// segment path and the position of the third batch.
fn build(backend: &Backend, name: &str, config: LogConfig) -> (std::path::PathBuf, usize) {
    let (log, _) = open(backend, name, config);
    let mut third = 0;
    for i in 0..BATCHES {
        if i == 2 {
            third = log.size_bytes() as usize;
        }
        log.append_as_leader(&mut batch(2, 20, i as i64), 1)
            .expect("append");
    }
    let path = log.segments()[0].log_path().to_path_buf();
    drop(log);
    (path, third)
}

fn compacted() -> LogConfig {
    LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        ..LogConfig::default()
    }
}

#[test]
fn torn_raised_base_offset_is_cut_in_a_log_without_compaction() {
    for backend in backends() {
        let (path, third) = build(&backend, "t-0", LogConfig::default());
        let mut bytes = file_bytes(&backend, &path);
        // Offsets 4..=5 become 9..=10: still increasing, CRC still valid.
        set_base_offset(&mut bytes[third..], 9);
        write_file(&backend, &path, &bytes);

        let (log, report) = open(&backend, "t-0", LogConfig::default());
        let damage = report.damage.expect("the gap is damage");
        assert_eq!(damage.position, third as u64, "{}", backend.name);
        assert_eq!(damage.kind, DamageKind::Corruption, "a valid batch follows");
        assert!(damage.reason.contains("gap"), "{}", damage.reason);
        assert_eq!(log.log_end_offset(), 4);
        assert_eq!(read_all(&log), vec![(0, 1), (2, 3)]);
    }
}

#[test]
fn a_compacted_log_keeps_its_offset_gaps() {
    for backend in backends() {
        // Opened compacting, and so marked as a log whose offsets may have gaps.
        let (path, third) = build(&backend, "t-0", compacted());
        let mut bytes = file_bytes(&backend, &path);
        let fourth = third + partlog::record::batch_size(&bytes[third..]).expect("size");
        set_base_offset(&mut bytes[third..], 9);
        set_base_offset(&mut bytes[fourth..], 20);
        write_file(&backend, &path, &bytes);

        let (log, report) = open(&backend, "t-0", compacted());
        assert_eq!(report.damage, None, "{}", backend.name);
        assert_eq!(read_all(&log), vec![(0, 1), (2, 3), (9, 10), (20, 21)]);
        assert_eq!(log.log_end_offset(), 22);
    }
}

/// A crafted segment whose offsets reach past `i64::MAX` is cut, not a panic (the debug
/// build of the suite has overflow checks on).
#[test]
fn offsets_that_overflow_are_damage_not_a_panic() {
    for backend in backends() {
        for (segment_base, batch_base) in [(0, i64::MAX - 1), (i64::MAX - 1, i64::MAX - 1)] {
            let mut b = batch(5, 10, 0);
            set_base_offset(&mut b, batch_base);
            recompute_crc(&mut b);
            // A dir of its own for each policy: a dir opened compacting is marked as one
            // with gaps for good.
            for (i, config) in [LogConfig::default(), compacted()].into_iter().enumerate() {
                let dir = backend.root.join(format!("t-{}-{i}", segment_base % 7));
                backend.storage.create_dir_all(&dir).expect("dir");
                write_file(&backend, &files::path(&dir, segment_base, ".log"), &b);
                let name = dir.file_name().and_then(|n| n.to_str()).expect("name");
                let (log, report) = open(&backend, name, config.clone());
                let damage = report.damage.expect("overflowing offsets are damage");
                // Without compaction, the jump from the segment base is caught first.
                let why = if segment_base == 0 && !config.cleanup_policy.compacts() {
                    "gap"
                } else {
                    "overflow"
                };
                assert!(damage.reason.contains(why), "{}", damage.reason);
                assert_eq!(log.log_end_offset(), segment_base);
            }
        }
    }
}
