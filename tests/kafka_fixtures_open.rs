//! A partition dir holding a segment written by Apache Kafka opens, reads back batch by
//! batch as `shared/fixtures/kafka/README.md` lists, and takes appends at its log end.

mod common;

use std::sync::Arc;

use common::{backends, batch, options, write_file, Backend};
use partlog::log::Log;
use partlog::record::{batches, Batch};
use partlog::{LogConfig, ManualClock};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/kafka/");

/// (base offset, last offset delta, records, leader epoch).
type Expected = (i64, i32, i32, i32);

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{FIXTURES}{name}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn scenario(fixture_name: &str, dir: &str, base: i64, expected: &[Expected], leo: i64) {
    for backend in backends() {
        for clean in [false, true] {
            let dir = format!("{dir}{}-0", if clean { "clean" } else { "crash" });
            check(&backend, fixture_name, &dir, base, expected, leo, clean);
        }
    }
}

fn check(
    backend: &Backend,
    fixture_name: &str,
    dir: &str,
    base: i64,
    expected: &[Expected],
    leo: i64,
    clean: bool,
) {
    let ctx = format!("{} {fixture_name} clean={clean}", backend.name);
    let bytes = fixture(fixture_name);
    let path = backend.root.join(dir).join(format!("{base:020}.log"));
    backend
        .storage
        .create_dir_all(&backend.root.join(dir))
        .unwrap();
    write_file(backend, &path, &bytes);
    let mut opts = options(
        backend,
        dir,
        LogConfig::default(),
        Arc::new(ManualClock::new(1_000_000)),
    );
    opts.clean_shutdown = clean;
    let (log, report) = Log::open(opts).unwrap_or_else(|e| panic!("{ctx}: {e}"));
    assert!(report.damage.is_none(), "{ctx}: {report:?}");
    assert_eq!(report.segments_scanned, if clean { 0 } else { 1 }, "{ctx}");
    assert_eq!(log.log_start_offset(), base, "{ctx}");
    assert_eq!(log.log_end_offset(), leo, "{ctx}");
    let slice = log.read(base, 1 << 20, None).unwrap().unwrap();
    let read = slice.to_vec().unwrap();
    assert_eq!(read, bytes, "{ctx}: the whole segment reads back");
    let got: Vec<Expected> = batches(&read)
        .map(|b| {
            let b = b.unwrap();
            b.validate().unwrap();
            let h = b.header();
            (
                h.base_offset,
                h.last_offset_delta,
                h.records_count,
                h.partition_leader_epoch,
            )
        })
        .collect();
    assert_eq!(got, expected, "{ctx}");
    // Each offset reads from its own batch.
    common::check_every_offset(&log);
    let info = log.append_as_leader(&mut batch(2, 10, 5), 2).unwrap();
    assert_eq!(
        (info.first_offset, info.last_offset),
        (leo, leo + 1),
        "{ctx}"
    );
    let tail = log
        .read(leo, 1 << 20, None)
        .unwrap()
        .unwrap()
        .to_vec()
        .unwrap();
    let appended = Batch::parse(&tail).unwrap();
    appended.validate().unwrap();
    assert_eq!(appended.header().base_offset, leo, "{ctx}");
    assert_eq!(appended.header().partition_leader_epoch, 2, "{ctx}");
    log.close().unwrap();
    drop(log);
    // Reopens with the appended batch after Kafka's bytes.
    let (log, report) = common::open(backend, dir, LogConfig::default());
    assert!(report.damage.is_none(), "{ctx}: {report:?}");
    assert_eq!(log.log_end_offset(), leo + 2, "{ctx}");
    assert_eq!(common::read_all(&log).len(), expected.len() + 1, "{ctx}");
}

#[test]
fn kafka_metadata_segment_a_opens() {
    scenario(
        "metadata-a-00000000000000000000.log",
        "__cluster_metadata-a",
        0,
        &[(0, 0, 1, 1), (1, 2, 3, 1)],
        4,
    );
}

#[test]
fn kafka_metadata_segment_b_opens() {
    scenario(
        "metadata-b-00000000000000000001.log",
        "__cluster_metadata-b",
        1,
        &[(1, 0, 1, 1), (2, 1, 2, 1)],
        4,
    );
}
