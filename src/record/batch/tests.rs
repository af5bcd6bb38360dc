use super::*;
use crate::record::BatchBuilder;

fn sample(base_offset: i64, n: usize) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    b.base_offset(base_offset).partition_leader_epoch(5);
    for i in 0..n {
        let key = format!("key-{i}");
        b.append(1_000 + i as i64, Some(key.as_bytes()), Some(b"value"), &[]);
    }
    b.build().unwrap_or_else(|e| panic!("build: {e}"))
}

fn parse(bytes: &[u8]) -> Batch<'_> {
    Batch::parse(bytes).unwrap_or_else(|e| panic!("parse: {e}"))
}

#[test]
fn header_fields_round_trip() {
    let bytes = sample(100, 3);
    let batch = parse(&bytes);
    let h = batch.header();
    assert_eq!(
        (h.base_offset, h.last_offset_delta, h.records_count),
        (100, 2, 3)
    );
    assert_eq!((h.last_offset(), h.next_offset()), (102, 103));
    assert_eq!((h.partition_leader_epoch, h.magic), (5, MAGIC_V2));
    assert_eq!((h.base_timestamp, h.max_timestamp), (1_000, 1_002));
    assert_eq!(
        (h.producer_id, h.producer_epoch, h.base_sequence),
        (-1, -1, -1)
    );
    assert_eq!(h.size(), bytes.len());
    assert_eq!(batch_size(&bytes), Ok(bytes.len()));
    assert_eq!(h.compression(), Compression::None);
    assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
    assert!(!h.is_transactional() && !h.is_control() && !h.has_delete_horizon());
    batch.validate().unwrap_or_else(|e| panic!("validate: {e}"));
}

#[test]
fn short_input_is_too_short() {
    let bytes = sample(0, 2);
    assert_eq!(
        batch_size(&bytes[..16]),
        Err(BatchError::TooShort {
            needed: 17,
            available: 16
        })
    );
    assert_eq!(
        BatchHeader::parse(&bytes[..60]),
        Err(BatchError::TooShort {
            needed: 61,
            available: 60
        })
    );
    let cut = bytes.len() - 1;
    assert_eq!(
        Batch::parse(&bytes[..cut]),
        Err(BatchError::TooShort {
            needed: bytes.len(),
            available: cut
        })
    );
}

#[test]
fn bad_header_fields_are_rejected() {
    let good = sample(0, 1);
    let with = |at: usize, patch: &[u8]| {
        let mut b = good.clone();
        b[at..at + patch.len()].copy_from_slice(patch);
        BatchHeader::parse(&b)
    };
    assert_eq!(
        with(MAGIC_AT, &[1]),
        Err(BatchError::WrongMagic { magic: 1 })
    );
    assert_eq!(
        with(BATCH_LENGTH_AT, &48i32.to_be_bytes()),
        Err(BatchError::InvalidBatchLength { batch_length: 48 })
    );
    assert_eq!(
        with(BATCH_LENGTH_AT, &(-5i32).to_be_bytes()),
        Err(BatchError::InvalidBatchLength { batch_length: -5 })
    );
    assert_eq!(
        with(LAST_OFFSET_DELTA_AT, &(-1i32).to_be_bytes()),
        Err(BatchError::InvalidLastOffsetDelta {
            last_offset_delta: -1
        })
    );
    assert_eq!(
        with(RECORDS_COUNT_AT, &(-1i32).to_be_bytes()),
        Err(BatchError::InvalidRecordsCount { records_count: -1 })
    );
    for codec in 5..=7u8 {
        assert_eq!(
            with(ATTRIBUTES_AT + 1, &[codec]),
            Err(BatchError::UnsupportedCompression { codec })
        );
    }
}

#[test]
fn absurd_batch_length_is_too_short_not_an_allocation() {
    let mut bytes = sample(0, 1);
    bytes[BATCH_LENGTH_AT..LEADER_EPOCH_AT].copy_from_slice(&i32::MAX.to_be_bytes());
    assert_eq!(batch_size(&bytes), Ok(LOG_OVERHEAD + i32::MAX as usize));
    assert!(matches!(
        Batch::parse(&bytes),
        Err(BatchError::TooShort { .. })
    ));
}

#[test]
fn crc_mismatch_is_reported() {
    let mut bytes = sample(0, 2);
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    let batch = parse(&bytes);
    let stored = batch.header().crc;
    let computed = batch.computed_crc();
    assert_ne!(stored, computed);
    assert_eq!(
        batch.verify_crc(),
        Err(BatchError::CrcMismatch { stored, computed })
    );
    assert_eq!(
        batch.validate(),
        Err(BatchError::CrcMismatch { stored, computed })
    );
}

#[test]
fn patching_offset_and_epoch_keeps_crc_valid() {
    let mut bytes = sample(0, 3);
    let crc_before = parse(&bytes).header().crc;
    set_base_offset(&mut bytes, 1 << 40);
    set_partition_leader_epoch(&mut bytes, 77);
    let batch = parse(&bytes);
    assert_eq!(batch.header().base_offset, 1 << 40);
    assert_eq!(batch.header().partition_leader_epoch, 77);
    assert_eq!(batch.header().crc, crc_before);
    batch.validate().unwrap_or_else(|e| panic!("{e}"));
    let offsets: Vec<i64> = batch
        .records()
        .into_iter()
        .flatten()
        .flatten()
        .map(|r| r.offset)
        .collect();
    assert_eq!(offsets, vec![1 << 40, (1 << 40) + 1, (1 << 40) + 2]);
}

#[test]
fn log_append_time_rewrites_timestamps_and_crc() {
    let mut bytes = sample(0, 2);
    set_log_append_time(&mut bytes, 9_999);
    let batch = parse(&bytes);
    batch.validate().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        batch.header().timestamp_type(),
        TimestampType::LogAppendTime
    );
    assert_eq!(batch.header().max_timestamp, 9_999);
    let stamps: Vec<i64> = batch
        .records()
        .into_iter()
        .flatten()
        .flatten()
        .map(|r| r.timestamp)
        .collect();
    assert_eq!(stamps, vec![9_999, 9_999]);
}

#[test]
fn recompute_crc_fixes_an_edited_field() {
    let mut bytes = sample(0, 1);
    bytes[MAX_TIMESTAMP_AT + 7] ^= 1;
    assert!(parse(&bytes).verify_crc().is_err());
    recompute_crc(&mut bytes);
    assert_eq!(parse(&bytes).verify_crc(), Ok(()));
}

#[test]
fn compressed_batches_validate_on_crc_only() {
    let mut bytes = sample(0, 1);
    bytes[ATTRIBUTES_AT + 1] |= Compression::Zstd as u8;
    // Garbage records are fine: a compressed payload is opaque to us.
    bytes[HEADER_LEN] = 0xff;
    recompute_crc(&mut bytes);
    let batch = parse(&bytes);
    assert_eq!(batch.header().compression(), Compression::Zstd);
    assert_eq!(batch.validate(), Ok(()));
    assert!(matches!(
        batch.records(),
        Err(BatchError::Compressed {
            compression: Compression::Zstd
        })
    ));
}

#[test]
fn batch_iter_walks_batches_and_stops_at_a_torn_tail() {
    let mut buf = sample(0, 2);
    let first = buf.len();
    buf.extend(sample(2, 3));
    let second = buf.len();
    buf.extend(&sample(5, 1)[..30]);
    let mut iter = batches(&buf);
    let offsets: Vec<i64> = iter
        .by_ref()
        .map_while(Result::ok)
        .map(|b| b.header().base_offset)
        .collect();
    assert_eq!(offsets, vec![0, 2]);
    assert_eq!(iter.position(), second);
    assert!(iter.next().is_none());
    let all: Vec<_> = batches(&buf).collect();
    assert_eq!(all.len(), 3);
    assert_eq!(
        all[2],
        Err(BatchError::TooShort {
            needed: 61,
            available: 30
        })
    );
    assert_eq!(batches(&buf[..first]).count(), 1);
    assert_eq!(batches(&[]).count(), 0);
}

#[test]
fn patching_short_slices_does_not_panic_in_release() {
    if cfg!(debug_assertions) {
        return; // the debug_asserts flag the caller bug instead
    }
    let mut tiny = [0u8; 4];
    set_base_offset(&mut tiny, 1);
    set_partition_leader_epoch(&mut tiny, 1);
    recompute_crc(&mut tiny);
    set_log_append_time(&mut tiny, 1);
    assert_eq!(tiny, [0; 4]);
}

#[test]
fn markers_say_commit_or_abort_and_nothing_else_is_one() {
    let control = |transactional: bool, kind: u8| {
        let mut b = BatchBuilder::new();
        b.control(true)
            .transactional(transactional)
            .producer(5, 0, -1);
        b.append(1, Some(&[0, 0, 0, kind]), Some(&[0; 6]), &[]);
        b.build().unwrap()
    };
    let marker = |bytes: &[u8]| Batch::parse(bytes).unwrap().marker_commits();
    assert_eq!(marker(&control(true, 1)), Some(true));
    assert_eq!(marker(&control(true, 0)), Some(false));
    assert_eq!(
        marker(&control(true, 2)),
        None,
        "another control record type"
    );
    assert_eq!(marker(&control(false, 1)), None, "not transactional");
    let mut data = BatchBuilder::new();
    data.transactional(true).producer(5, 0, 0);
    data.append(1, Some(&[0, 0, 0, 1]), Some(b"v"), &[]);
    assert_eq!(marker(&data.build().unwrap()), None, "a data batch");
}

#[test]
fn a_marker_carries_its_coordinator_epoch() {
    let epoch = |bytes: &[u8]| Batch::parse(bytes).unwrap().marker_coordinator_epoch();
    for (commits, coordinator_epoch) in [(true, 0), (false, 7), (true, i32::MAX)] {
        let marker = BatchBuilder::transaction_marker(5, 2, commits, coordinator_epoch, 1).unwrap();
        assert_eq!(
            Batch::parse(&marker).unwrap().marker_commits(),
            Some(commits)
        );
        assert_eq!(epoch(&marker), Some(coordinator_epoch));
    }
    let mut short = BatchBuilder::new();
    short.control(true).transactional(true).producer(5, 0, -1);
    short.append(1, Some(&[0, 0, 0, 1]), Some(&[0, 0]), &[]);
    assert_eq!(
        epoch(&short.build().unwrap()),
        None,
        "a value without the epoch"
    );
    let mut data = BatchBuilder::new();
    data.transactional(true).producer(5, 0, 0);
    data.append(1, Some(&[0, 0, 0, 1]), Some(&[0; 6]), &[]);
    assert_eq!(epoch(&data.build().unwrap()), None, "a data batch");
}

/// A header rewrite keeps only the attribute bits Kafka's `computeAttributes` writes, as
/// Kafka's leader does when it stamps a batch's time: an unknown bit a producer set used
/// to stay, and the stored bytes and CRC differed from a Kafka leader's.
#[test]
fn a_header_time_rewrite_drops_unknown_attribute_bits() {
    for log_append_time in [false, true] {
        let mut bytes = sample(0, 2);
        bytes[ATTRIBUTES_AT] |= 0x01; // bit 8
        bytes[ATTRIBUTES_AT + 1] |= 0x80 | 0x10; // bit 7, and transactional (bit 4)
        recompute_crc(&mut bytes);
        if log_append_time {
            set_log_append_time(&mut bytes, 5_000);
        } else {
            set_create_time(&mut bytes, 5_000);
        }
        let batch = parse(&bytes);
        batch.verify_crc().unwrap();
        let attributes = i16::from_be_bytes([bytes[ATTRIBUTES_AT], bytes[ATTRIBUTES_AT + 1]]);
        let expected = 0x10 | if log_append_time { 0x08 } else { 0 };
        assert_eq!(attributes, expected);
        assert_eq!(batch.header().max_timestamp, 5_000);
    }
}
