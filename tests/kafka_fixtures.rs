//! Segments written by Apache Kafka (KRaft metadata partition) decode batch by batch, with
//! the offsets, record counts and leader epochs listed in `shared/fixtures/kafka/README.md`.

use partlog::record::{batches, Batch, BatchHeader};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/kafka/");

/// (base offset, last offset delta, records, leader epoch), as the fixtures README lists them.
type Expected = (i64, i32, i32, i32);

fn read(name: &str) -> Vec<u8> {
    let path = format!("{FIXTURES}{name}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn check_segment(name: &str, size: usize, expected: &[Expected]) {
    let bytes = read(name);
    assert_eq!(bytes.len(), size, "{name} size");
    let parsed: Vec<Batch<'_>> = batches(&bytes)
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(parsed.len(), expected.len(), "{name} batch count");
    for (batch, &want) in parsed.iter().zip(expected) {
        check_batch(name, batch, want);
    }
    let total: usize = parsed.iter().map(|b| b.as_bytes().len()).sum();
    assert_eq!(total, bytes.len(), "{name}: batches cover the file");
}

fn check_batch(name: &str, batch: &Batch<'_>, want: Expected) {
    let h: &BatchHeader = batch.header();
    let got = (
        h.base_offset,
        h.last_offset_delta,
        h.records_count,
        h.partition_leader_epoch,
    );
    assert_eq!(
        got, want,
        "{name}: (base offset, last delta, records, epoch)"
    );
    assert_eq!(batch.verify_crc(), Ok(()), "{name} batch {}", h.base_offset);
    assert_eq!(batch.validate(), Ok(()), "{name} batch {}", h.base_offset);
    let records = batch.records().unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut offsets = Vec::new();
    for record in records {
        let record = record.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(record.headers().all(|h| h.is_ok()));
        offsets.push(record.offset);
    }
    let expected: Vec<i64> = (h.base_offset..=h.last_offset()).collect();
    assert_eq!(offsets, expected, "{name}: record offsets");
}

#[test]
fn metadata_a_decodes() {
    let expected = [(0, 0, 1, 1), (1, 2, 3, 1)];
    check_segment("metadata-a-00000000000000000000.log", 331, &expected);
}

#[test]
fn metadata_b_decodes() {
    let expected = [(1, 0, 1, 1), (2, 1, 2, 1)];
    check_segment("metadata-b-00000000000000000001.log", 258, &expected);
}

#[test]
fn fixtures_survive_the_fuzz_checks() {
    for name in [
        "metadata-a-00000000000000000000.log",
        "metadata-b-00000000000000000001.log",
    ] {
        let bytes = read(name);
        partlog::record::fuzz_batch_decode(&bytes);
        // Every prefix is a clean batch sequence followed by at most one error.
        for cut in 0..bytes.len() {
            partlog::record::fuzz_batch_decode(&bytes[..cut]);
        }
    }
}
