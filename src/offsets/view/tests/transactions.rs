//! The view's replay of transactional commits and their markers.

use super::*;

/// One record of a transactions test: who writes it and what.
enum Txn {
    /// A plain commit of `g`/`t`/0 at this offset, or its tombstone (`None`).
    Plain(Option<i64>),
    /// The same in a transaction of this producer.
    In(i64, Option<i64>),
    /// The producer's marker: commit (true) or abort.
    End(i64, bool),
}

/// Replays `ops` as one batch each, in log order, both ways (decoded first and alone, which
/// must agree); returns the committed offset of `g`/`t`/0 after each.
fn replay_txns(ops: &[Txn]) -> Vec<Option<i64>> {
    let (mut by_decoding, mut alone) = (View::default(), View::default());
    let mut decoded = Decoded::default();
    let mut key = Vec::new();
    encode_offset_commit_key("g", "t", 0, &mut key);
    let value_of = |offset: i64| {
        let mut out = Vec::new();
        let v = OffsetCommitValue {
            offset,
            leader_epoch: 1,
            metadata: String::new(),
            commit_timestamp: 7,
            expire_timestamp: -1,
        };
        encode_offset_commit_value(&v, &mut out);
        out
    };
    let mut seen = Vec::new();
    for (at, op) in ops.iter().enumerate() {
        let mut builder = BatchBuilder::new();
        builder.base_offset(at as i64);
        let (producer, value, marker) = match op {
            Txn::Plain(v) => (None, v.map(value_of), None),
            Txn::In(p, v) => (Some(*p), v.map(value_of), None),
            Txn::End(p, commit) => (Some(*p), None, Some(*commit)),
        };
        if let Some(p) = producer {
            builder.producer(p, 0, 0).transactional(true);
        }
        match marker {
            Some(commit) => {
                builder.control(true);
                let marker_key = [0, 0, 0, u8::from(commit)];
                builder.append(0, Some(&marker_key), Some(&[0, 0, 0, 0, 0, 0]), &[]);
            }
            None => {
                builder.append(0, Some(&key), value.as_deref(), &[]);
            }
        }
        let batch = builder.build().expect("batch");
        decoded.decode_piece(&batch);
        by_decoding
            .replay_piece(&batch, Some(&decoded))
            .expect("replay");
        alone.replay_piece(&batch, None).expect("replay");
        let now = |v: &View| v.group("g").and_then(|g| g.get("t", 0)).map(|c| c.offset);
        assert_eq!(now(&by_decoding), now(&alone), "after op {at}");
        seen.push(now(&alone));
    }
    seen
}

/// Kafka's coordinator keeps, for each key, the offset of the last record written for it:
/// a plain commit or tombstone written while a transaction holds the key wins over the
/// transaction's older record at its commit, a tombstone takes effect at once (in a
/// transaction too) and takes the open transactions' changes to the key with it, and of
/// two transactions the one whose record came later wins whichever commits first.
#[test]
fn transactions_commit_what_no_later_record_replaced() {
    use Txn::*;
    let last = |ops: &[Txn]| *replay_txns(ops).last().expect("ops");
    // A plain commit after the transaction's record, before its marker, wins.
    assert_eq!(
        last(&[In(7, Some(5)), Plain(Some(6)), End(7, true)]),
        Some(6)
    );
    // A plain tombstone there removes it, and the transaction's change with it.
    assert_eq!(last(&[In(7, Some(5)), Plain(None), End(7, true)]), None);
    // A tombstone in a transaction takes effect at once, and stays after an abort.
    assert_eq!(
        replay_txns(&[Plain(Some(1)), In(7, None), End(7, false)]),
        [Some(1), None, None]
    );
    // Two transactions on one key: the later record wins, whichever commits first.
    let later_first = [In(7, Some(1)), In(8, Some(2)), End(8, true), End(7, true)];
    assert_eq!(replay_txns(&later_first), [None, None, Some(2), Some(2)]);
    let earlier_first = [In(7, Some(1)), In(8, Some(2)), End(7, true), End(8, true)];
    assert_eq!(replay_txns(&earlier_first), [None, None, Some(1), Some(2)]);
    // A transaction's record after a plain commit wins at its commit; an abort drops it.
    assert_eq!(
        last(&[Plain(Some(1)), In(7, Some(2)), End(7, true)]),
        Some(2)
    );
    assert_eq!(
        last(&[Plain(Some(1)), In(7, Some(2)), End(7, false)]),
        Some(1)
    );
}

/// A transaction marker whose record has no version and type fails the replay on both
/// paths, as it fails Kafka's load; one of a type Kafka has not defined is skipped, as
/// Kafka's coordinator skips it. The first used to be skipped too: its transaction stayed
/// open, and its committed offsets never showed.
#[test]
fn a_marker_without_a_type_fails_the_replay() {
    let marker = |key: &[u8]| {
        let mut builder = BatchBuilder::new();
        builder.base_offset(9);
        builder.producer(7, 0, 0).transactional(true).control(true);
        builder.append(0, Some(key), Some(&[0, 0, 0, 0, 0, 0]), &[]);
        builder.build().expect("marker")
    };
    let (short, unknown) = (marker(&[0, 0]), marker(&[0, 0, 0, 9]));
    replay_fails_both_ways(&short, 9, "marker");
    let mut decoded = Decoded::default();
    decoded.decode_piece(&unknown);
    for decoded in [None, Some(&decoded)] {
        let next = View::default().replay_piece(&unknown, decoded).unwrap();
        assert_eq!(next, Some(10));
    }
}

/// Kafka's cleaner keeps a transaction marker past its delete horizon as an empty batch,
/// its control and transactional flags kept: the load reads it as nothing, on both paths,
/// as Kafka's loader does. It failed the whole load, as a marker without a type.
#[test]
fn an_emptied_marker_changes_nothing() {
    use crate::record::batch::{BATCH_LENGTH_AT, CRC_AT, RECORDS_COUNT_AT};
    let mut builder = BatchBuilder::new();
    builder.base_offset(9);
    builder.producer(7, 0, 0).transactional(true).control(true);
    builder.append(0, Some(&[0, 0, 0, 1]), Some(&[0, 0, 0, 0, 0, 0]), &[]);
    let marker = builder.build().expect("marker");
    // As Kafka's `writeEmptyHeader` leaves it: the header alone, no record.
    let mut empty = marker[..crate::record::HEADER_LEN].to_vec();
    let length = (crate::record::HEADER_LEN - 12) as i32;
    empty[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
    empty[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&0i32.to_be_bytes());
    let crc = crate::record::crc32c(&empty[crate::record::CRC_START as usize..]);
    empty[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    let batch = Batch::parse(&empty).expect("an empty batch");
    assert!(batch.header().is_control() && batch.header().is_transactional());
    assert_eq!(batch.header().records_count, 0);
    let mut decoded = Decoded::default();
    decoded.decode_piece(&empty);
    for decoded in [None, Some(&decoded)] {
        let next = View::default().replay_piece(&empty, decoded).unwrap();
        assert_eq!(next, Some(10));
    }
}
