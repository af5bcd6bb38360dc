//! Every segment that stops being written ends its time index with its largest timestamp,
//! as Kafka's do: Kafka reads a segment's largest timestamp back from the time index's last
//! entry when it loads a cleanly shut-down log, and ages the segment for time retention by
//! it. A partlog log dir that Kafka opens must not look older than it is.

mod common;

use std::path::Path;

use common::{backends, batch, file_bytes, file_names, open, Backend};
use partlog::record::batches;
use partlog::LogConfig;

/// The time index's entries as Kafka reads them: 12 bytes each, big-endian timestamp and
/// offset relative to the segment's base, up to the file's length (Kafka trims the files
/// of segments no longer written, and takes the length as the entry count).
fn time_entries(backend: &Backend, path: &Path, base: i64) -> Vec<(i64, i64)> {
    file_bytes(backend, path)
        .chunks_exact(12)
        .map(|e| {
            let ts = i64::from_be_bytes(e[..8].try_into().unwrap());
            let rel = i32::from_be_bytes(e[8..].try_into().unwrap());
            (ts, base + rel as i64)
        })
        .collect()
}

/// The largest timestamp of a `.log` file's batches, and the last offset of the batch
/// that first carries it (Kafka's `shallowOffsetOfMaxTimestamp`).
fn largest_timestamp(backend: &Backend, path: &Path) -> (i64, i64) {
    let bytes = file_bytes(backend, path);
    let mut best = (-1, -1);
    for b in batches(&bytes) {
        let h = *b.expect("valid batch").header();
        if h.max_timestamp > best.0 {
            best = (h.max_timestamp, h.last_offset());
        }
    }
    best
}

/// Checks every segment of the closed log in `dir`; returns how many it checked.
fn check_time_indexes(backend: &Backend, dir: &Path) -> usize {
    let names = file_names(backend, dir);
    let mut checked = 0;
    for name in names.iter().filter(|n| n.ends_with(".log")) {
        let stem = name.trim_end_matches(".log");
        let base: i64 = stem.parse().expect("segment base offset");
        let (ts, offset) = largest_timestamp(backend, &dir.join(name));
        let entries = time_entries(backend, &dir.join(format!("{stem}.timeindex")), base);
        assert_eq!(
            entries.last().copied(),
            Some((ts, offset)),
            "{}: segment {base} ends its time index {entries:?} without its largest \
             timestamp",
            backend.name
        );
        checked += 1;
    }
    checked
}

/// Appends `batches` batches of two records, timestamps rising by 10 a batch.
fn append_rising(log: &partlog::log::Log, batches: usize) {
    for i in 0..batches as i64 {
        let mut b = batch(2, 60, 1_000 + 10 * i);
        log.append_as_leader(&mut b, 0).expect("append");
    }
}

/// Rolls by size, by the index filling up, and by hand; then a clean close. Batches
/// between index entries are the rule (an entry every 300 bytes, batches of about 200),
/// so a segment's last batch usually has no entry of its own.
#[test]
fn rolled_and_closed_segments_end_their_time_index_with_their_largest_timestamp() {
    for backend in backends() {
        let by_size = LogConfig {
            segment_bytes: 1_500,
            index_interval_bytes: 300,
            ..LogConfig::default()
        };
        // 48 bytes: four time entries, the last kept for the roll's.
        let by_index = LogConfig {
            index_bytes_max: 48,
            index_interval_bytes: 300,
            ..LogConfig::default()
        };
        for (name, config) in [("by-size-0", by_size), ("by-index-0", by_index)] {
            let (log, _) = open(&backend, name, config);
            append_rising(&log, 23);
            log.force_roll().expect("roll");
            append_rising(&log, 3);
            let segments = log.segment_count();
            assert!(segments >= 4, "{name}: {segments} segments");
            log.close().expect("close");
            let checked = check_time_indexes(&backend, &backend.root.join(name));
            assert_eq!(checked, segments, "{name}");
        }
    }
}

/// Indexes rebuilt from the log (missing files, here) end the same way.
#[test]
fn rebuilt_time_indexes_end_with_the_largest_timestamp() {
    for backend in backends() {
        let config = LogConfig {
            segment_bytes: 1_500,
            index_interval_bytes: 300,
            ..LogConfig::default()
        };
        let (log, _) = open(&backend, "t-0", config.clone());
        append_rising(&log, 30);
        log.close().expect("close");
        drop(log);
        let dir = backend.root.join("t-0");
        for name in file_names(&backend, &dir) {
            if name.ends_with(".timeindex") {
                backend
                    .storage
                    .remove_file(&dir.join(name))
                    .expect("remove");
            }
        }
        let (log, _) = open(&backend, "t-0", config);
        common::check_every_offset(&log);
        log.close().expect("close");
        assert!(check_time_indexes(&backend, &dir) >= 4);
    }
}

/// A flush reaches the end of the active segment, which then rolls: no later flush
/// covers the closed segment (it ends at the recovery point), and recovery trusts it once
/// that point is checkpointed. Its roll's trim, the time index's last entry and the
/// shortened files, is durable by the time the roll returns; it was left to the page
/// cache, and a power loss took the entry Kafka reads the segment's age from.
#[test]
fn a_segment_that_rolls_right_after_a_flush_has_its_last_time_entry_durable() {
    let (backend, disk) = common::sim_with_disk(31);
    let config = LogConfig {
        index_interval_bytes: 300,
        ..LogConfig::default()
    };
    let (log, _) = open(&backend, "t-0", config);
    append_rising(&log, 12);
    let end = log.flush().expect("flush");
    assert_eq!(end, log.log_end_offset());
    log.force_roll().expect("roll");
    append_rising(&log, 2);

    let dir = backend.root.join("t-0");
    let closed = &log.segments()[0];
    let durable = disk
        .read_durable(&dir.join(format!("{:020}.timeindex", 0)))
        .expect("a durable time index");
    let entries: Vec<(i64, i64)> = durable
        .chunks_exact(12)
        .map(|e| {
            let ts = i64::from_be_bytes(e[..8].try_into().unwrap());
            let rel = i32::from_be_bytes(e[8..].try_into().unwrap());
            (ts, rel as i64)
        })
        .collect();
    let (largest, at) = largest_timestamp(&backend, closed.log_path());
    let written: Vec<_> = entries.iter().filter(|e| e.0 != 0).collect();
    assert_eq!(
        (entries.last().copied(), entries.len()),
        (Some((largest, at)), written.len()),
        "durably trimmed to its entries, the last the largest timestamp: {written:?}"
    );
    let log_bytes = disk.read_durable(closed.log_path()).expect("durable log");
    assert_eq!(log_bytes.len() as u64, closed.size(), "the trim is durable");
}
