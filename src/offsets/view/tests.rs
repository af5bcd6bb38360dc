//! The view's tables, names and metadata, and its replay against a model.

use super::*;
use crate::offsets::codec::{
    encode_group_metadata_key, encode_offset_commit_key, encode_offset_commit_value,
    OffsetCommitValue,
};
use crate::record::BatchBuilder;

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
