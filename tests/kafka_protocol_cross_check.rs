//! Cross-check against an independent encoder/decoder: the `kafka-protocol` crate.
//! Batches it encodes must read back identically through partlog, and batches partlog's
//! `BatchBuilder` encodes must decode identically through it.

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression as KCompression, Record as KRecord, RecordBatchDecoder, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType as KTimestampType,
};
use partlog::record::{batches, Batch, BatchBuilder, Compression};

/// Producer settings shared by all records of one batch.
#[derive(Clone, Copy)]
struct Producer {
    id: i64,
    epoch: i16,
    base_sequence: i32,
    transactional: bool,
    leader_epoch: i32,
}

const NONE: Producer = Producer {
    id: -1,
    epoch: -1,
    base_sequence: -1,
    transactional: false,
    leader_epoch: -1,
};
const IDEMPOTENT: Producer = Producer {
    id: 4_242,
    epoch: 7,
    base_sequence: 100,
    transactional: true,
    leader_epoch: 12,
};

/// One record's content: timestamp, key, value, headers (unique keys: kafka-protocol keeps
/// headers in a map).
type Content = (
    i64,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(String, Option<Vec<u8>>)>,
);

fn contents(n: usize, seed: u8) -> Vec<Content> {
    (0..n)
        .map(|i| {
            let key = (i % 3 != 1).then(|| vec![seed, i as u8, 0xfe]);
            let value = (i % 4 != 2).then(|| vec![i as u8 ^ seed; i * 37 % 300]);
            let headers = (0..i % 3)
                .map(|h| (format!("h{h}"), (h % 2 == 0).then(|| vec![h as u8; h + 1])))
                .collect();
            (
                1_700_000_000_000 + (i as i64 * 13) % 50,
                key,
                value,
                headers,
            )
        })
        .collect()
}

fn k_record(base_offset: i64, i: usize, c: &Content, p: Producer) -> KRecord {
    let mut headers = empty_headers();
    for (k, v) in &c.3 {
        headers.insert(StrBytes::from_string(k.clone()), v.clone().map(Bytes::from));
    }
    KRecord {
        transactional: p.transactional,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: p.leader_epoch,
        producer_id: p.id,
        producer_epoch: p.epoch,
        timestamp_type: KTimestampType::Creation,
        offset: base_offset + i as i64,
        // kafka-protocol splits batches unless offset - sequence stays constant.
        sequence: p.base_sequence.wrapping_add(i as i32),
        timestamp: c.0,
        key: c.1.clone().map(Bytes::from),
        value: c.2.clone().map(Bytes::from),
        headers,
    }
}

fn empty_headers() -> kafka_protocol::indexmap::IndexMap<StrBytes, Option<Bytes>> {
    Default::default()
}

fn kafka_encode(base_offset: i64, contents: &[Content], p: Producer, out: &mut BytesMut) {
    let records: Vec<KRecord> = contents
        .iter()
        .enumerate()
        .map(|(i, c)| k_record(base_offset, i, c, p))
        .collect();
    let options = RecordEncodeOptions {
        version: 2,
        compression: KCompression::None,
    };
    RecordBatchEncoder::encode(out, &records, &options).unwrap_or_else(|e| panic!("encode: {e}"));
}

fn partlog_encode(base_offset: i64, contents: &[Content], p: Producer, out: &mut Vec<u8>) {
    let mut b = BatchBuilder::new();
    b.base_offset(base_offset)
        .partition_leader_epoch(p.leader_epoch)
        .producer(p.id, p.epoch, p.base_sequence)
        .transactional(p.transactional);
    for (ts, key, value, headers) in contents {
        let hs: Vec<(&[u8], Option<&[u8]>)> = headers
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_deref()))
            .collect();
        b.append(*ts, key.as_deref(), value.as_deref(), &hs);
    }
    b.build_into(out).unwrap_or_else(|e| panic!("build: {e}"));
}

/// Reads `batch` with partlog and compares it with what it was built from.
fn check_partlog_reads(batch: &Batch<'_>, base_offset: i64, contents: &[Content], p: Producer) {
    assert_eq!(batch.validate(), Ok(()));
    let h = batch.header();
    assert_eq!(h.base_offset, base_offset);
    assert_eq!(h.records_count as usize, contents.len());
    assert_eq!(h.last_offset_delta as usize, contents.len() - 1);
    assert_eq!((h.producer_id, h.producer_epoch), (p.id, p.epoch));
    assert_eq!(
        (h.base_sequence, h.partition_leader_epoch),
        (p.base_sequence, p.leader_epoch)
    );
    assert_eq!(h.is_transactional(), p.transactional);
    assert_eq!(h.compression(), Compression::None);
    assert_eq!(
        h.max_timestamp,
        contents.iter().map(|c| c.0).max().unwrap_or_default()
    );
    let records = batch.records().unwrap_or_else(|e| panic!("{e}"));
    let mut n = 0;
    for (i, (record, want)) in records.zip(contents).enumerate() {
        let r = record.unwrap_or_else(|e| panic!("record {i}: {e}"));
        assert_eq!(r.offset, base_offset + i as i64);
        assert_eq!(r.timestamp, want.0);
        assert_eq!(r.key, want.1.as_deref());
        assert_eq!(r.value, want.2.as_deref());
        let headers: Vec<(&[u8], Option<&[u8]>)> = r
            .headers()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{e}"));
        let wanted: Vec<(&[u8], Option<&[u8]>)> = want
            .3
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_deref()))
            .collect();
        assert_eq!(headers, wanted);
        n += 1;
    }
    assert_eq!(n, contents.len());
}

/// Decodes `buf` with kafka-protocol and compares one record set with its contents.
fn check_kafka_reads(set: &[KRecord], base_offset: i64, contents: &[Content], p: Producer) {
    assert_eq!(set.len(), contents.len());
    for (i, (r, want)) in set.iter().zip(contents).enumerate() {
        assert_eq!(r.offset, base_offset + i as i64);
        assert_eq!(r.timestamp, want.0);
        assert_eq!(r.key.as_deref(), want.1.as_deref());
        assert_eq!(r.value.as_deref(), want.2.as_deref());
        assert_eq!(r.sequence, p.base_sequence.wrapping_add(i as i32));
        assert_eq!((r.producer_id, r.producer_epoch), (p.id, p.epoch));
        assert_eq!(
            (r.transactional, r.partition_leader_epoch),
            (p.transactional, p.leader_epoch)
        );
        assert_eq!(r.timestamp_type, KTimestampType::Creation);
        let headers: Vec<(&str, Option<&[u8]>)> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect();
        let wanted: Vec<(&str, Option<&[u8]>)> = want
            .3
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect();
        assert_eq!(headers, wanted);
    }
}

/// Three batches of different shapes: (base offset, contents, producer).
fn scenarios() -> Vec<(i64, Vec<Content>, Producer)> {
    vec![
        (0, contents(1, 1), NONE),
        (1, contents(17, 2), IDEMPOTENT),
        (1 << 33, contents(5, 3), NONE),
    ]
}

#[test]
fn partlog_reads_what_kafka_protocol_writes() {
    let mut buf = BytesMut::new();
    for (base, c, p) in scenarios() {
        kafka_encode(base, &c, p, &mut buf);
    }
    let parsed: Vec<Batch<'_>> = batches(&buf)
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(parsed.len(), 3);
    for (batch, (base, c, p)) in parsed.iter().zip(scenarios()) {
        check_partlog_reads(batch, base, &c, p);
    }
}

#[test]
fn kafka_protocol_reads_what_partlog_writes() {
    let mut buf = Vec::new();
    for (base, c, p) in scenarios() {
        partlog_encode(base, &c, p, &mut buf);
    }
    let mut bytes = Bytes::from(buf);
    let sets = RecordBatchDecoder::decode_all(&mut bytes).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sets.len(), 3);
    for (set, (base, c, p)) in sets.iter().zip(scenarios()) {
        assert_eq!((set.version, set.compression), (2, KCompression::None));
        check_kafka_reads(&set.records, base, &c, p);
    }
}

#[test]
fn kafka_protocol_batch_info_matches_our_headers() {
    let mut buf = Vec::new();
    for (base, c, p) in scenarios() {
        partlog_encode(base, &c, p, &mut buf);
    }
    let infos = RecordBatchDecoder::decode_batch_info(&mut Bytes::from(buf.clone()))
        .unwrap_or_else(|e| panic!("{e}"));
    let ours: Vec<Batch<'_>> = batches(&buf)
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(infos.len(), ours.len());
    for (info, batch) in infos.iter().zip(&ours) {
        let h = batch.header();
        assert_eq!(info.record_count, h.records_count);
        assert_eq!(info.min_offset, h.base_offset);
        assert_eq!(info.min_timestamp, h.base_timestamp);
        assert_eq!(info.base_sequence, h.base_sequence);
        assert_eq!(info.partition_leader_epoch, h.partition_leader_epoch);
        assert_eq!(
            (info.producer_id, info.producer_epoch),
            (h.producer_id, h.producer_epoch)
        );
        assert_eq!(info.transactional, h.is_transactional());
    }
}

#[test]
fn both_encoders_agree_byte_for_byte_when_timestamps_ascend() {
    // kafka-protocol uses the minimum timestamp as baseTimestamp and partlog the first one
    // (as Kafka's Java producer does); with ascending timestamps these coincide.
    let mut c = contents(9, 4);
    c.sort_by_key(|x| x.0);
    for p in [NONE, IDEMPOTENT] {
        let mut theirs = BytesMut::new();
        kafka_encode(77, &c, p, &mut theirs);
        let mut ours = Vec::new();
        partlog_encode(77, &c, p, &mut ours);
        assert_eq!(&theirs[..], &ours[..]);
    }
}

/// The transaction markers partlog writes (`BatchBuilder::transaction_marker`) decode
/// through kafka-protocol as Kafka's own: one control record of a transactional batch,
/// keyed by version 0 and the marker type (0 abort, 1 commit), valued by version 0 and
/// the coordinator epoch.
#[test]
fn kafka_protocol_reads_partlog_transaction_markers() {
    for (commits, coordinator_epoch) in [(false, 0), (true, 4), (false, i32::MAX)] {
        let marker = BatchBuilder::transaction_marker(4_242, 7, commits, coordinator_epoch, 9)
            .unwrap_or_else(|e| panic!("{e}"));
        let sets = RecordBatchDecoder::decode_all(&mut Bytes::from(marker))
            .unwrap_or_else(|e| panic!("{e}"));
        let [set] = sets.as_slice() else {
            panic!("one batch, got {}", sets.len())
        };
        let [record] = set.records.as_slice() else {
            panic!("one record, got {}", set.records.len())
        };
        assert!(record.control && record.transactional);
        assert_eq!((record.producer_id, record.producer_epoch), (4_242, 7));
        assert_eq!(record.sequence, -1);
        assert_eq!(record.timestamp, 9);
        let key = record.key.as_deref().expect("a marker has a key");
        assert_eq!(key, [0, 0, 0, u8::from(commits)]);
        let mut value = vec![0, 0];
        value.extend_from_slice(&coordinator_epoch.to_be_bytes());
        assert_eq!(record.value.as_deref(), Some(value.as_slice()));
    }
}
