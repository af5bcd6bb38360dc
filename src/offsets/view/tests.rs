//! The view's tables, names and metadata, and its replay against a model.

use super::*;
use crate::offsets::codec::{
    encode_group_metadata_key, encode_offset_commit_key, encode_offset_commit_value,
    OffsetCommitValue,
};
use crate::record::BatchBuilder;

mod decode;
mod transactions;

fn value(offset: i64, metadata: &str) -> codec::ValueRef<'_> {
    codec::ValueRef {
        offset,
        leader_epoch: 1,
        metadata,
        commit_timestamp: 7,
        expire_timestamp: -1,
    }
}

#[test]
fn partitions_keep_small_ids_in_the_table_and_the_rest_aside() {
    let mut p = Partitions::default();
    let mut metadata = MetadataTable::default();
    for id in [0, 3, 1, 40, -1, i32::MAX, 2] {
        fill(&mut p, id, &mut metadata, &value(i64::from(id), ""));
    }
    assert_eq!(p.dense.len(), 4, "0..=3 are dense: {:?}", p.dense.len());
    assert_eq!(
        p.sparse.as_ref().map_or(0, |m| m.len()),
        3,
        "40, -1 and i32::MAX would stretch the table"
    );
    for id in [0, 1, 2, 3, 40, -1, i32::MAX] {
        assert_eq!(p.get(id).map(|c| c.offset), Some(i64::from(id)));
    }
    assert!(p.get(4).is_none() && p.get(39).is_none());
    fill(&mut p, 3, &mut metadata, &value(30, ""));
    assert_eq!(p.get(3).map(|c| c.offset), Some(30));
    let mut ids: Vec<i32> = p.iter().map(|(id, _)| id).collect();
    ids.sort_unstable();
    assert_eq!(ids, [-1, 0, 1, 2, 3, 40, i32::MAX]);
    for id in [0, 1, 2, 3, 40, -1, i32::MAX] {
        assert!(!p.is_empty());
        assert_eq!(p.remove(id), NO_METADATA);
        assert_eq!(p.remove(id), EMPTY_SLOT, "twice: the second finds nothing");
    }
    assert!(p.is_empty() && p.iter().next().is_none());
}

/// A consumer holding a topic's high partitions commits them first, one by one: the
/// first ids go aside, a later one grows the table past them, and they must move into it.
/// They stayed in the map, behind empty slots of the table: a fetch of partition 20 found
/// nothing, deleting the group left them, and a new commit of 20 stood beside the old.
#[test]
fn ids_put_aside_move_into_the_table_when_it_grows_past_them() {
    for sized_at_once in [false, true] {
        let mut p = Partitions::default();
        let mut metadata = MetadataTable::default();
        for id in 20..=24 {
            fill(&mut p, id, &mut metadata, &value(i64::from(id), ""));
        }
        assert_eq!(p.sparse.as_ref().map_or(0, |m| m.len()), 5, "20..=24 aside");
        if sized_at_once {
            // A decoded commit of ten partitions up to 29 sizes the table to it at once.
            p.reserve_to(29, 10);
            for id in 25..=29 {
                fill(&mut p, id, &mut metadata, &value(i64::from(id), ""));
            }
        } else {
            fill(&mut p, 25, &mut metadata, &value(25, ""));
        }
        let top = if sized_at_once { 29 } else { 25 };
        assert!(p.sparse.is_none(), "every id aside is in the table now");
        for id in 20..=top {
            assert_eq!(p.get(id).map(|c| c.offset), Some(i64::from(id)), "{id}");
        }
        fill(&mut p, 20, &mut metadata, &value(200, ""));
        let ids: Vec<i32> = p.iter().map(|(id, _)| id).collect();
        assert_eq!(ids, (20..=top).collect::<Vec<_>>(), "each id once");
        assert_eq!(p.get(20).map(|c| c.offset), Some(200));
        for id in 20..=top {
            assert_eq!(p.remove(id), NO_METADATA, "{id}");
        }
        assert!(p.is_empty() && p.iter().next().is_none());
    }
}

#[test]
fn metadata_is_kept_aside_replaced_in_place_and_its_room_reused() {
    let mut p = Partitions::default();
    let mut metadata = MetadataTable::default();
    let text = |p: &Partitions, m: &MetadataTable, id| {
        m.text(p.get(id).expect("slot").metadata).to_string()
    };
    fill(&mut p, 0, &mut metadata, &value(1, "a"));
    fill(&mut p, 1, &mut metadata, &value(1, "b"));
    assert_eq!(
        (text(&p, &metadata, 0), text(&p, &metadata, 1)),
        ("a".into(), "b".into())
    );
    fill(&mut p, 0, &mut metadata, &value(2, "longer"));
    assert_eq!(text(&p, &metadata, 0), "longer");
    assert_eq!(metadata.texts.len(), 2, "replaced in place");
    fill(&mut p, 0, &mut metadata, &value(3, ""));
    assert_eq!(text(&p, &metadata, 0), "");
    fill(&mut p, 2, &mut metadata, &value(1, "c"));
    assert_eq!(
        metadata.texts.len(),
        2,
        "the room of slot 0's old text is reused"
    );
    metadata.release(p.remove(1));
    fill(&mut p, 3, &mut metadata, &value(1, "d"));
    assert_eq!(metadata.texts.len(), 2, "and that of a removed slot");
    assert_eq!(
        [0, 2, 3].map(|id| text(&p, &metadata, id)),
        ["", "c", "d"].map(String::from)
    );
}

#[test]
fn names_inline_or_boxed_hash_and_compare_as_their_bytes() {
    let short = "g".repeat(INLINE_NAME);
    let long = "g".repeat(INLINE_NAME + 1);
    assert!(matches!(Name::new(short.as_bytes()), Name::Inline(..)));
    assert!(matches!(Name::new(long.as_bytes()), Name::Boxed(..)));
    let mut map = HashMap::new();
    for (i, name) in ["", "a", &short, &long].into_iter().enumerate() {
        map.insert(Name::new(name.as_bytes()), i);
    }
    for (i, name) in ["", "a", &short, &long].into_iter().enumerate() {
        assert_eq!(map.get(name.as_bytes()), Some(&i), "{name:?}");
        assert_eq!(Name::new(name.as_bytes()).text(), name);
    }
    assert_eq!(map.get(&b"b"[..]), None);
}

/// One batch of `(group, topic, partition, offset)` commits; `None` is a tombstone,
/// and an empty topic a group metadata record.
fn replay(view: &mut View, records: &[(&str, &str, i32, Option<i64>)]) {
    let mut builder = BatchBuilder::new();
    for &(group, topic, partition, offset) in records {
        let (mut key, mut value) = (Vec::new(), Vec::new());
        if topic.is_empty() {
            encode_group_metadata_key(group, &mut key);
            value.extend_from_slice(&[0, 3]);
        } else {
            encode_offset_commit_key(group, topic, partition, &mut key);
            if let Some(offset) = offset {
                let v = OffsetCommitValue {
                    offset,
                    leader_epoch: 1,
                    metadata: if offset == 5 {
                        "m".into()
                    } else {
                        String::new()
                    },
                    commit_timestamp: 7,
                    expire_timestamp: -1,
                };
                encode_offset_commit_value(&v, &mut value);
            }
        }
        let value = (offset.is_some() || topic.is_empty()).then_some(&value[..]);
        builder.append(0, Some(&key), value, &[]);
    }
    let bytes = builder.build().expect("batch");
    view.replay(&Batch::parse(&bytes).expect("parse"))
        .expect("replay");
}

fn offsets(view: &View, group: &str) -> Vec<(String, i32, i64, String)> {
    let mut all: Vec<_> = view
        .group(group)
        .into_iter()
        .flat_map(|g| {
            g.iter()
                .map(|((t, p), c)| (t, p, c.offset, c.metadata))
                .collect::<Vec<_>>()
        })
        .collect();
    all.sort();
    all
}

#[test]
fn replay_follows_group_and_topic_changes_tombstones_and_other_records() {
    let mut view = View::default();
    replay(
        &mut view,
        &[
            ("g", "t", 0, Some(1)),
            ("g", "t", 1, Some(2)),
            ("g", "t", 0, Some(3)),
            ("g", "t", 1, None),
            ("g", "t", 2, Some(5)),
            ("g", "u", 0, Some(6)),
            ("g", "", 0, None),
            ("g", "t", 3, Some(8)),
            ("h", "t", 0, Some(9)),
            ("g", "tt", 0, Some(10)),
            ("g", "t", 2, Some(11)),
        ],
    );
    let t = |p, o, m: &str| ("t".to_string(), p, o, m.to_string());
    assert_eq!(
        offsets(&view, "g"),
        [
            t(0, 3, ""),
            t(2, 11, ""),
            t(3, 8, ""),
            ("tt".into(), 0, 10, String::new()),
            ("u".into(), 0, 6, String::new()),
        ]
    );
    assert_eq!(offsets(&view, "h"), [t(0, 9, "")]);
    assert_eq!(view.skipped, 1, "the group metadata record");
    // Metadata is replaced, and cleared, with the offset.
    replay(&mut view, &[("h", "t", 0, Some(5))]);
    assert_eq!(offsets(&view, "h"), [t(0, 5, "m")]);
    replay(&mut view, &[("h", "t", 0, Some(6))]);
    assert_eq!(offsets(&view, "h"), [t(0, 6, "")]);
    replay(&mut view, &[("h", "t", 0, None)]);
    assert!(
        view.group("h").is_none(),
        "the last tombstone removes the group"
    );
}

/// A batch of `changes` as the store writes them (tombstones for `None`).
fn batch_of(changes: &[Change]) -> Vec<u8> {
    crate::offsets::changes_batch(changes, 0).expect("batch")
}

/// Random commits and tombstones, replayed from batches or applied as a commit's
/// changes, over short and long names, dense and sparse partition ids, with and
/// without metadata: after each batch the view holds exactly the model's offsets, an
/// emptied group is gone, and the metadata table holds only live texts.
#[test]
fn replay_and_apply_agree_with_a_model() {
    use std::collections::BTreeMap;
    let long = "x".repeat(INLINE_NAME + 5);
    let groups = ["g", "h", long.as_str()];
    let topics = ["t", "u", long.as_str()];
    // 17, 20 and 24 go aside in a table of few entries and into it as it grows.
    let partitions = [0, 1, 2, 3, 7, 17, 20, 24, 40, 1_000, -1];
    for seed in 0..300 {
        let mut rng = crate::io::sim::SimRng::new(seed);
        let mut view = View::default();
        let mut model: BTreeMap<(String, (String, i32)), Committed> = BTreeMap::new();
        for step in 0..40 {
            let changes: Vec<Change> = (0..rng.range_inclusive(1, 12))
                .map(|_| {
                    let group = groups[rng.below(3) as usize].to_string();
                    let topic = topics[rng.below(3) as usize].to_string();
                    let partition = partitions[rng.below(partitions.len() as u64) as usize];
                    let committed = (!rng.ratio(1, 4)).then(|| Committed {
                        offset: rng.below(1_000) as i64,
                        leader_epoch: rng.below(5) as i32,
                        metadata: "m".repeat(rng.below(3) as usize),
                        commit_timestamp: rng.below(100) as i64,
                    });
                    (group, (topic, partition), committed)
                })
                .collect();
            for (group, key, committed) in &changes {
                let at = (group.clone(), key.clone());
                match committed {
                    Some(c) => model.insert(at, c.clone()),
                    None => model.remove(&at),
                };
            }
            if rng.ratio(1, 2) {
                let bytes = batch_of(&changes);
                let batch = Batch::parse(&bytes).expect("parse");
                view.replay(&batch).expect("replay");
            } else {
                changes.into_iter().for_each(|c| view.apply(c));
            }
            for group in groups {
                let want: Vec<_> = model
                    .iter()
                    .filter(|((g, _), _)| g == group)
                    .map(|((_, k), c)| (k.clone(), c.clone()))
                    .collect();
                let Some(offsets) = view.group(group) else {
                    assert!(want.is_empty(), "seed {seed} step {step}: {group} gone");
                    continue;
                };
                let mut got: Vec<_> = offsets.iter().collect();
                got.sort_by(|a, b| a.0.cmp(&b.0));
                assert_eq!(got, want, "seed {seed} step {step}: {group}");
                assert!(
                    !got.is_empty(),
                    "seed {seed} step {step}: {group} kept empty"
                );
                for ((topic, partition), c) in &want {
                    assert_eq!(offsets.get(topic, *partition).as_ref(), Some(c));
                }
                assert_eq!(offsets.get("t", 5), None);
            }
            let texts = model.values().filter(|c| !c.metadata.is_empty()).count();
            let held = view.metadata.texts.len() - view.metadata.free.len();
            assert_eq!(held, texts, "seed {seed} step {step}: metadata texts held");
        }
    }
}

/// A batch of random records of groups `g` and `h`: mostly commits, runs of them by
/// topic, of small partition ids and at times others, some with metadata; at times a
/// tombstone, a group metadata record, a record whose key is four bytes or one with no
/// key; transactional (of producer 7 or 8) or a marker (commit or abort) at times.
fn random_batch(rng: &mut crate::io::sim::SimRng) -> Vec<u8> {
    let mut builder = BatchBuilder::new();
    let producer = 7 + rng.below(2) as i64;
    match rng.below(8) {
        0 => {
            let commit = rng.ratio(1, 2);
            let key = [0, 0, 0, u8::from(commit)];
            builder
                .producer(producer, 0, 0)
                .transactional(true)
                .control(true);
            builder.append(0, Some(&key), Some(&[0, 0, 0, 0, 0, 0]), &[]);
            return builder.build().expect("marker");
        }
        1 => {
            builder.producer(producer, 0, 0).transactional(true);
        }
        _ => {}
    }
    let group = ["g", "h"][rng.below(2) as usize];
    for _ in 0..rng.range_inclusive(1, 12) {
        let topic = ["t", "u"][rng.below(2) as usize];
        let (mut key, mut value_bytes) = (Vec::new(), Vec::new());
        let kind = rng.below(100);
        if kind < 5 {
            encode_group_metadata_key(group, &mut key);
            value_bytes.extend_from_slice(&[0, 3]);
        } else {
            // Mostly small ids, at times one that would stretch a table, or a negative one.
            let partition = match rng.below(16) {
                0 => 20 + rng.below(60) as i32,
                1 => -1,
                _ => rng.below(4) as i32,
            };
            encode_offset_commit_key(group, topic, partition, &mut key);
            let metadata = if kind < 10 { "meta" } else { "" };
            let v = OffsetCommitValue {
                offset: rng.below(1_000) as i64,
                leader_epoch: rng.below(3) as i32,
                metadata: metadata.into(),
                commit_timestamp: rng.below(100) as i64,
                expire_timestamp: -1,
            };
            encode_offset_commit_value(&v, &mut value_bytes);
        }
        if kind == 19 {
            // As long as a partition id alone: a key that does not decode.
            key = vec![0, 0, 0, rng.below(4) as u8];
        }
        let value = !(10..18).contains(&kind);
        let value = value.then_some(&value_bytes[..]);
        let key = (kind != 18).then_some(&key[..]);
        builder.append(0, key, value, &[]);
    }
    builder.build().expect("batch")
}

/// `offsets_threads` found a live view going back (seeds 64, 118 and 168 of its first
/// version): the replica completes two commits of one partition in offset order, but a
/// settle between the two completions saw the older still pending and the newer done,
/// applied the newer, and applied the older over it at the next settle.
#[test]
fn settle_applies_commits_in_their_order_when_it_sees_a_later_one_complete_first() {
    let commit = |offset: i64, at: i64| {
        let info = crate::log::AppendInfo {
            first_offset: at,
            last_offset: at,
            max_timestamp: 0,
            batches: 1,
            bytes: 100,
        };
        let committed = Committed {
            offset,
            leader_epoch: 1,
            metadata: String::new(),
            commit_timestamp: 0,
        };
        let change = ("g".to_string(), ("t".to_string(), 0), Some(committed));
        (crate::replica::AppendHandle::pending(info), vec![change])
    };
    let mut view = View::default();
    let (older, newer) = (commit(70, 0), commit(74, 1));
    view.pending.extend([older.clone(), newer.clone()]);
    // What the settle saw: the newer commit complete, the older one not yet.
    newer.0.complete(Ok(newer.0.info()));
    view.settle(|| i64::MAX);
    assert_eq!(
        offsets(&view, "g"),
        vec![],
        "nothing applied past a pending commit"
    );
    older.0.complete(Ok(older.0.info()));
    view.settle(|| i64::MAX);
    assert_eq!(
        offsets(&view, "g"),
        vec![("t".into(), 0, 74, String::new())]
    );
    assert!(view.pending.is_empty());
}

/// Replays `piece` into a fresh view both ways (decoded first, and batch by batch): each
/// fails with [`Error::OffsetsRecord`] at `offset`, its reason naming `what`.
fn replay_fails_both_ways(piece: &[u8], offset: i64, what: &str) {
    let mut decoded = Decoded::default();
    decoded.decode_piece(piece);
    for decoded in [None, Some(&decoded)] {
        let err = View::default().replay_piece(piece, decoded).unwrap_err();
        assert!(
            matches!(&err, Error::OffsetsRecord { offset: o, reason } if *o == offset && reason.contains(what)),
            "{err}"
        );
    }
}
