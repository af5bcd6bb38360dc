use super::*;
use crate::record::{Batch, Compression};

fn parse(bytes: &[u8]) -> Batch<'_> {
    let batch = Batch::parse(bytes).unwrap_or_else(|e| panic!("parse: {e}"));
    batch.validate().unwrap_or_else(|e| panic!("validate: {e}"));
    batch
}

#[test]
fn builder_output_parses_with_all_fields() {
    let mut b = BatchBuilder::new();
    b.base_offset(10)
        .partition_leader_epoch(3)
        .producer(77, 2, 40)
        .transactional(true)
        .timestamp_type(TimestampType::CreateTime);
    b.append(
        500,
        Some(b"a"),
        None,
        &[(b"h1", Some(b"v1")), (b"h2", None)],
    );
    b.append(400, None, Some(b""), &[]);
    b.append(900, Some(&[0u8; 300]), Some(&[1u8; 70_000]), &[]);
    assert_eq!((b.len(), b.is_empty()), (3, false));
    let expected_size = b.size_bytes();
    let bytes = b.build().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bytes.len(), expected_size);
    let batch = parse(&bytes);
    let h = batch.header();
    assert_eq!(
        (h.base_offset, h.last_offset_delta, h.records_count),
        (10, 2, 3)
    );
    assert_eq!((h.base_timestamp, h.max_timestamp), (500, 900));
    assert_eq!(
        (h.producer_id, h.producer_epoch, h.base_sequence),
        (77, 2, 40)
    );
    assert!(h.is_transactional() && !h.is_control());
    assert_eq!(h.compression(), Compression::None);
    let records: Vec<_> = batch.records().into_iter().flatten().flatten().collect();
    assert_eq!(records.len(), 3);
    assert_eq!((records[0].offset, records[0].timestamp), (10, 500));
    assert_eq!(
        (
            records[1].offset,
            records[1].timestamp_delta,
            records[1].timestamp
        ),
        (11, -100, 400)
    );
    assert_eq!((records[0].key, records[0].value), (Some(&b"a"[..]), None));
    assert_eq!((records[1].key, records[1].value), (None, Some(&b""[..])));
    assert_eq!(records[2].value.map(<[u8]>::len), Some(70_000));
    let headers: Vec<_> = records[0].headers().flatten().collect();
    assert_eq!(
        headers,
        vec![(&b"h1"[..], Some(&b"v1"[..])), (&b"h2"[..], None)]
    );
    assert!(b.is_empty(), "build resets records");
}

#[test]
fn defaults_match_kafka_no_producer_markers() {
    let mut b = BatchBuilder::new();
    b.append(1, None, None, &[]);
    let bytes = b.build().unwrap_or_else(|e| panic!("{e}"));
    let h = *parse(&bytes).header();
    assert_eq!(h.base_offset, 0);
    assert_eq!(h.partition_leader_epoch, -1);
    assert_eq!(
        (h.producer_id, h.producer_epoch, h.base_sequence),
        (-1, -1, -1)
    );
    assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
    assert_eq!(h.attributes, 0);
}

#[test]
fn flags_set_attribute_bits() {
    let mut b = BatchBuilder::new();
    b.control(true)
        .timestamp_type(TimestampType::LogAppendTime)
        .append(5, None, None, &[]);
    let bytes = b.build().unwrap_or_else(|e| panic!("{e}"));
    let h = *parse(&bytes).header();
    assert!(h.is_control() && !h.is_transactional());
    assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
}

#[test]
fn empty_builder_builds_nothing() {
    let mut b = BatchBuilder::default();
    let mut out = vec![1, 2, 3];
    assert_eq!(b.build_into(&mut out), Err(BatchError::Empty));
    assert_eq!(out, vec![1, 2, 3]);
    assert_eq!(b.size_bytes(), HEADER_LEN);
}

#[test]
fn build_into_appends_and_settings_survive() {
    let mut b = BatchBuilder::new();
    b.base_offset(0).partition_leader_epoch(9);
    let mut out = Vec::with_capacity(4096);
    for round in 0..3i64 {
        b.base_offset(round * 2);
        b.append(round, Some(b"k"), Some(b"v"), &[])
            .append(round, None, None, &[]);
        b.build_into(&mut out).unwrap_or_else(|e| panic!("{e}"));
    }
    let capacity = out.capacity();
    let epochs: Vec<(i64, i32)> = crate::record::batches(&out)
        .map(|b| b.map(|b| (b.header().base_offset, b.header().partition_leader_epoch)))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(epochs, vec![(0, 9), (2, 9), (4, 9)]);
    assert_eq!(out.capacity(), capacity);
}

#[test]
fn extreme_timestamps_round_trip() {
    let mut b = BatchBuilder::new();
    b.append(i64::MAX, None, None, &[])
        .append(i64::MIN, None, None, &[]);
    let bytes = b.build().unwrap_or_else(|e| panic!("{e}"));
    let batch = parse(&bytes);
    let stamps: Vec<i64> = batch
        .records()
        .into_iter()
        .flatten()
        .flatten()
        .map(|r| r.timestamp)
        .collect();
    assert_eq!(stamps, vec![i64::MAX, i64::MIN]);
    assert_eq!(batch.header().max_timestamp, i64::MAX);
}

#[test]
fn oversized_input_is_an_error_and_resets() {
    assert_eq!(nullable_len(Some(&[])), Some(1));
    assert_eq!(body_len(0, 0, None, None, &[]), Some(6));
    let mut b = BatchBuilder::new();
    b.append(0, None, None, &[]);
    b.too_large = true; // what an over-i32::MAX key would do; we cannot allocate one here
    assert_eq!(b.build(), Err(BatchError::TooLarge));
    assert!(b.is_empty());
    b.append(0, None, None, &[]);
    assert!(b.build().is_ok());
}
