//! The decoding of pieces on the load's reading thread: a decoded piece replays as its
//! batches do, in runs by group, topic, commit time and metadata, and by the template of
//! the record before.

use super::*;

/// Every offset of a view in order, the records it skipped and the metadata texts it
/// holds.
type Contents = (Vec<Change>, u64, usize);

fn contents(view: &View) -> Contents {
    let texts = view.metadata.texts.len() - view.metadata.free.len();
    (view.every_offset(), view.skipped, texts)
}

/// A piece of random batches, replayed batch by batch, as a piece, and decoded first
/// (as the load's reading thread does): the three views agree, also on what they
/// skipped, and each reports the offset after the piece. A record without a key stops
/// all three at the same batch with an error.
#[test]
fn a_decoded_piece_replays_as_its_batches_do() {
    for seed in 0..400 {
        let mut rng = crate::io::sim::SimRng::new(seed);
        let mut views = [View::default(), View::default(), View::default()];
        let mut decoded = Decoded::default();
        for _ in 0..rng.range_inclusive(1, 4) {
            let mut piece = Vec::new();
            let mut next = None;
            for _ in 0..rng.range_inclusive(1, 8) {
                let mut batch = random_batch(&mut rng);
                let base: i64 = next.unwrap_or(0);
                batch[..8].copy_from_slice(&base.to_be_bytes());
                next = Some(Batch::parse(&batch).expect("parse").header().next_offset());
                piece.extend(batch);
            }
            let mut outcomes = Vec::new();
            let mut at = 0;
            let by_batch = loop {
                if at == piece.len() {
                    break Ok(next);
                }
                let batch = Batch::parse(&piece[at..]).expect("parse");
                if let Err(err) = views[0].replay(&batch) {
                    break Err(err);
                }
                at += batch.as_bytes().len();
            };
            outcomes.push(by_batch.map_err(|e| e.to_string()));
            outcomes.push(
                views[1]
                    .replay_piece(&piece, None)
                    .map_err(|e| e.to_string()),
            );
            decoded.decode_piece(&piece);
            let prepared = views[2].replay_piece(&piece, Some(&decoded));
            outcomes.push(prepared.map_err(|e| e.to_string()));
            assert_eq!(outcomes[0], outcomes[1], "seed {seed}");
            assert_eq!(outcomes[0], outcomes[2], "seed {seed}");
            let [a, b, c] = &views;
            assert_eq!(contents(a), contents(b), "seed {seed}");
            assert_eq!(contents(a), contents(c), "seed {seed}");
            if outcomes[0].is_err() {
                break;
            }
        }
    }
}

/// The usual commit batch becomes runs by group and topic, one group run for
/// consecutive batches of one group; anything else stays a batch.
#[test]
fn decoding_groups_runs_by_group_and_topic() {
    let commit = |group: &str, topics: &[&str]| {
        let changes: Vec<Change> = topics
            .iter()
            .enumerate()
            .map(|(p, t)| {
                let c = Committed {
                    offset: p as i64,
                    leader_epoch: 0,
                    metadata: String::new(),
                    commit_timestamp: 0,
                };
                (group.to_string(), (t.to_string(), p as i32), Some(c))
            })
            .collect();
        batch_of(&changes)
    };
    let mut piece = commit("g", &["t", "t", "u"]);
    piece.extend(commit("g", &["u"]));
    piece.extend(commit("h", &["t"]));
    let tombstone: Vec<Change> = vec![("h".into(), ("t".into(), 0), None)];
    piece.extend(batch_of(&tombstone));
    piece.extend(commit("h", &["t"]));
    let mut decoded = Decoded::default();
    decoded.decode_piece(&piece);
    let shape: Vec<_> = decoded
        .items
        .iter()
        .map(|item| match item {
            Item::Group { group, runs } => {
                let topics: Vec<_> = decoded.runs[runs.clone()]
                    .iter()
                    .map(|r| (decoded.name(r.topic).to_vec(), r.entries.len()))
                    .collect();
                format!(
                    "{}:{topics:?}",
                    String::from_utf8_lossy(decoded.name(*group))
                )
            }
            Item::Batch(_) => "batch".into(),
        })
        .collect();
    let t = |name: &str, n: usize| (name.as_bytes().to_vec(), n);
    assert_eq!(
        shape,
        [
            format!("g:{:?}", [t("t", 2), t("u", 1), t("u", 1)]),
            format!("h:{:?}", [t("t", 1)]),
            "batch".into(),
            format!("h:{:?}", [t("t", 1)]),
        ]
    );
}

/// A run's offsets share their commit time and metadata (kept once, in the run): an
/// offset committed at another time or with other metadata starts another run of the
/// same topic, and the view holds every offset's own, as the replay alone does.
#[test]
fn an_offset_of_another_commit_time_or_metadata_starts_another_run() {
    let offset = |p: i32, commit_timestamp: i64, metadata: &str| {
        let c = Committed {
            offset: 10 + i64::from(p),
            leader_epoch: 1,
            metadata: metadata.into(),
            commit_timestamp,
        };
        ("g".to_string(), ("t".to_string(), p), Some(c))
    };
    let changes = [
        offset(0, 5, ""),
        offset(1, 5, ""),
        offset(2, 6, ""),
        offset(3, 6, "m"),
        offset(4, 6, "m"),
        offset(5, 6, ""),
    ];
    let piece = batch_of(&changes);
    let mut decoded = Decoded::default();
    decoded.decode_piece(&piece);
    let runs: Vec<_> = decoded
        .runs
        .iter()
        .map(|r| {
            (
                r.entries.len(),
                r.commit_timestamp,
                decoded.text(r.metadata),
            )
        })
        .collect();
    assert_eq!(runs, [(2, 5, ""), (1, 6, ""), (2, 6, "m"), (1, 6, "")]);
    let mut view = View::default();
    view.replay_piece(&piece, Some(&decoded)).expect("replay");
    assert_eq!(view.every_offset(), changes);
    crate::offsets::check_decoded_replay(&piece);
}

/// A record whose key is four bytes, as long as a partition id alone, opening a batch:
/// the decoder took it for the next partition of the run before it (the previous batch's,
/// of another topic) and the view applied an offset that no key named, where the replay
/// of the same batch reports the key it cannot decode.
#[test]
fn a_four_byte_key_opening_a_batch_does_not_continue_the_run_before() {
    let value = {
        let mut out = Vec::new();
        encode_offset_commit_value(
            &OffsetCommitValue {
                offset: 9,
                leader_epoch: 1,
                metadata: String::new(),
                commit_timestamp: 7,
                expire_timestamp: -1,
            },
            &mut out,
        );
        out
    };
    let mut commit = BatchBuilder::new();
    let mut key = Vec::new();
    encode_offset_commit_key("g", "t", 0, &mut key);
    commit.append(0, Some(&key), Some(&value), &[]);
    let mut piece = commit.build().expect("batch");
    let mut odd = BatchBuilder::new();
    odd.append(0, Some(&[0, 0, 0, 1]), Some(&value), &[]);
    let mut odd = odd.build().expect("batch");
    odd[..8].copy_from_slice(&1i64.to_be_bytes());
    piece.extend(odd);
    let mut decoded = Decoded::default();
    decoded.decode_piece(&piece);
    let (mut by_decoding, mut by_replay) = (View::default(), View::default());
    let decoding = by_decoding.replay_piece(&piece, Some(&decoded));
    let replay = by_replay.replay_piece(&piece, None);
    assert!(replay.is_err(), "the key does not decode: {replay:?}");
    assert_eq!(
        decoding.map_err(|e| e.to_string()),
        replay.map_err(|e| e.to_string())
    );
    assert_eq!(contents(&by_decoding), contents(&by_replay));
}

/// A decoded commit of a topic's partitions 0 to 24 makes that topic's table once, of 25
/// slots, where one grown slot by slot would double to 32 and be copied on the way; a
/// run whose ids would stretch the table sizes nothing.
#[test]
fn a_decoded_commit_sizes_a_new_table_to_its_partitions() {
    let commit = |group: &str, topic: &str, ids: &[i32]| -> Vec<u8> {
        let changes: Vec<Change> = ids
            .iter()
            .map(|&p| {
                let c = Committed {
                    offset: 1,
                    leader_epoch: 0,
                    metadata: String::new(),
                    commit_timestamp: 0,
                };
                (group.to_string(), (topic.to_string(), p), Some(c))
            })
            .collect();
        batch_of(&changes)
    };
    let mut piece = commit("g", "t", &(0..25).collect::<Vec<_>>());
    piece.extend(commit("g", "wide", &[0, 1, 500]));
    let mut decoded = Decoded::default();
    decoded.decode_piece(&piece);
    let mut view = View::default();
    view.replay_piece(&piece, Some(&decoded)).expect("replay");
    let topics = view.groups.get(b"g".as_slice()).expect("group g");
    let table = |name: &str| topics.get(name.as_bytes()).expect("topic");
    assert_eq!(
        (table("t").dense.len(), table("t").dense.capacity()),
        (25, 25)
    );
    assert_eq!(table("wide").dense.len(), 2, "500 goes aside");
    assert_eq!(table("wide").get(500).map(|s| s.offset), Some(1));
    let mut undecoded = View::default();
    undecoded.replay_piece(&piece, None).expect("replay");
    assert_eq!(contents(&view), contents(&undecoded));
}

/// A compressed batch (Kafka writes them when `offsets.topic.compression.codec` is set)
/// cannot be replayed without decompressing: the load fails with the batch's offset and
/// why, on both paths, not with the records' iterator's error alone.
#[test]
fn a_compressed_batch_fails_the_replay_with_its_offset() {
    use crate::record::batch::{ATTRIBUTES_AT, CRC_AT};
    let commit = Committed {
        offset: 3,
        leader_epoch: 0,
        metadata: String::new(),
        commit_timestamp: 0,
    };
    let mut bytes = batch_of(&[("g".into(), ("t".into(), 0), Some(commit))]);
    crate::record::set_base_offset(&mut bytes, 40);
    bytes[ATTRIBUTES_AT + 1] |= 1; // gzip
    let crc = crate::record::crc32c(&bytes[crate::record::CRC_START as usize..]);
    bytes[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    replay_fails_both_ways(&bytes, 40, "compressed");
}

/// A version 1 value's explicit expiry survives the load whichever thread decodes its
/// piece: the decoder leaves such a batch to the replay, which keeps the expiry (the
/// decoded entries have no place for it, and a piece the reader had time for lost it).
#[test]
fn an_explicit_expiry_survives_either_replay_path() {
    let mut key = Vec::new();
    encode_offset_commit_key("g", "t", 0, &mut key);
    let mut value = vec![0, 1];
    value.extend_from_slice(&5i64.to_be_bytes());
    value.extend_from_slice(&[0, 0]);
    value.extend_from_slice(&7i64.to_be_bytes());
    value.extend_from_slice(&99i64.to_be_bytes());
    let mut builder = BatchBuilder::new();
    builder.append(7, Some(&key), Some(&value), &[]);
    let piece = builder.build().expect("batch");
    crate::offsets::check_decoded_replay(&piece);
    let mut decoded = Decoded::default();
    decoded.decode_piece(&piece);
    let mut view = View::default();
    view.replay_piece(&piece, Some(&decoded)).expect("replay");
    assert_eq!(view.every_expiry(), vec![("g".into(), ("t".into(), 0), 99)]);
}

/// A commit of many partitions, as the decoder reads it: most records by the template of
/// the one before (their offset deltas one byte, then two from 64 on), the others, where
/// a timestamp, the metadata or the topic changes the layout, the general way.
fn long_commit() -> Vec<u8> {
    let mut builder = BatchBuilder::new();
    for i in 0..200i32 {
        let topic = if (120..130).contains(&i) {
            "other"
        } else {
            "t"
        };
        let (mut key, mut value) = (Vec::new(), Vec::new());
        encode_offset_commit_key("g", topic, i * 3 % 170, &mut key);
        let v = OffsetCommitValue {
            offset: 1_000 + i64::from(i) * 7,
            leader_epoch: i % 3,
            metadata: if i == 40 {
                "meta".into()
            } else {
                String::new()
            },
            commit_timestamp: 5_000 + i64::from(i / 50),
            expire_timestamp: -1,
        };
        encode_offset_commit_value(&v, &mut value);
        let timestamp = if i == 90 { 9 } else { 0 };
        builder.append(timestamp, Some(&key), Some(&value), &[]);
    }
    builder.build().expect("batch")
}

/// The decoder reads a commit's records by the template of the record before: it takes
/// the whole long commit (no batch left for the replay), with every offset the replay
/// alone finds. With any one byte of its records changed, so that the record no longer
/// repeats the one before (its layout, its key's names, its value's version), the two
/// still agree: on the offsets, on what was skipped, and on the error.
#[test]
fn a_commit_read_by_its_records_template_decodes_as_the_replay_reads_it() {
    let batch = long_commit();
    let mut decoded = Decoded::default();
    decoded.decode_piece(&batch);
    assert!(
        decoded
            .items
            .iter()
            .all(|i| matches!(i, Item::Group { .. })),
        "the decoder took the commit"
    );
    assert_eq!(decoded.entries.len(), 200);
    crate::offsets::check_decoded_replay(&batch);
    for at in crate::record::HEADER_LEN..batch.len() {
        for flip in [0x01, 0x80] {
            let mut changed = batch.clone();
            changed[at] ^= flip;
            crate::offsets::check_decoded_replay(&changed);
        }
    }
}

/// A record that repeats a one-byte-delta template byte for byte but for a delta byte
/// with its high bit set reads, the general way, as a two-byte delta with every field
/// after it a byte later: malformed. The template read it as its own layout with a
/// two-byte delta (found by review): the decoded replay took an offset the replay alone
/// refused. Both now fail alike.
#[test]
fn a_longer_offset_delta_under_a_one_byte_template_is_not_read_by_it() {
    use crate::record::batch::{BATCH_LENGTH_AT, LAST_OFFSET_DELTA_AT, RECORDS_COUNT_AT};
    let (mut key, mut value) = (Vec::new(), Vec::new());
    encode_offset_commit_key("g", "t", 0, &mut key);
    let v = OffsetCommitValue {
        offset: 1,
        leader_epoch: 0,
        metadata: String::new(),
        commit_timestamp: 0,
        expire_timestamp: -1,
    };
    encode_offset_commit_value(&v, &mut value);
    let mut builder = BatchBuilder::new();
    builder.append(0, Some(&key), Some(&value), &[]);
    let one = builder.build().expect("batch");
    let header = crate::record::HEADER_LEN;
    let first = one[header..].to_vec(); // length, attributes, timestamp delta, delta 0, ...
    assert_eq!(first[3], 0, "a one-byte delta");
    // The second record: the first with its delta's byte high: read the general way, a
    // two-byte delta whose second byte is the key's length.
    let mut second = first.clone();
    second[3] = 0x82;
    // The third: delta 1,538 as two bytes, and one byte longer for it; the misread delta
    // (1,537) lies below it, so the decoder takes the batch to its end.
    let mut third = vec![first[0] + 2, first[1], first[2], 0x84, 0x18];
    third.extend_from_slice(&first[4..]);
    let mut batch = one[..header].to_vec();
    for record in [&first, &second, &third] {
        batch.extend_from_slice(record);
    }
    let length = (batch.len() - 12) as i32;
    batch[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
    batch[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&3i32.to_be_bytes());
    batch[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4].copy_from_slice(&1_538i32.to_be_bytes());
    crate::offsets::check_decoded_replay(&batch);
}
