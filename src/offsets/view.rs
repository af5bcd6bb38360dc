//! A partition's in-memory view of committed offsets: group → topic → partition → offset.
//!
//! Replaying the log is the load's hot path, so it allocates only for a group, topic or
//! partition seen for the first time: keys and values are decoded in place, and the maps
//! of the group and topic of the record before are reused while records repeat them (a
//! commit's records share its group, and usually its topics).

use std::collections::HashMap;

use super::codec::{self, KeyRef};
use crate::error::{Error, Result};
use crate::record::{Batch, Record};
use crate::replica::AppendHandle;

/// A committed offset as [`super::OffsetsStore::fetch`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

/// A topic's committed partitions. Partition ids are small and dense (0 up to the topic's
/// partition count), so they index a table directly; the rare id that would stretch the
/// table past twice the entries it holds goes to a map instead. A load touches the
/// partitions of a commit one after the other, which a table keeps side by side.
#[derive(Debug, Default)]
pub struct Partitions {
    dense: Vec<Option<Committed>>,
    sparse: HashMap<i32, Committed>,
    len: usize,
}

/// Slots the table may have beyond twice its entries.
const DENSE_SLACK: usize = 16;

impl Partitions {
    fn dense_index(&self, partition: i32) -> Option<usize> {
        usize::try_from(partition)
            .ok()
            .filter(|&i| i < self.dense.len())
    }

    pub fn get(&self, partition: i32) -> Option<&Committed> {
        match self.dense_index(partition) {
            Some(i) => self.dense[i].as_ref(),
            None => self.sparse.get(&partition),
        }
    }

    pub fn get_mut(&mut self, partition: i32) -> Option<&mut Committed> {
        match self.dense_index(partition) {
            Some(i) => self.dense[i].as_mut(),
            None => self.sparse.get_mut(&partition),
        }
    }

    pub fn insert(&mut self, partition: i32, committed: Committed) {
        let slot = match self.dense_index(partition) {
            Some(i) => &mut self.dense[i],
            None => match usize::try_from(partition) {
                Ok(i) if i < 2 * self.len + DENSE_SLACK => {
                    self.dense.resize_with(i + 1, || None);
                    &mut self.dense[i]
                }
                _ => {
                    if self.sparse.insert(partition, committed).is_none() {
                        self.len += 1;
                    }
                    return;
                }
            },
        };
        if slot.replace(committed).is_none() {
            self.len += 1;
        }
    }

    pub fn remove(&mut self, partition: i32) {
        let removed = match self.dense_index(partition) {
            Some(i) => self.dense[i].take().is_some(),
            None => self.sparse.remove(&partition).is_some(),
        };
        if removed {
            self.len -= 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The committed partitions, dense ones first.
    pub fn iter(&self) -> impl Iterator<Item = (i32, &Committed)> {
        let dense = self.dense.iter().enumerate();
        dense
            .filter_map(|(i, c)| Some((i as i32, c.as_ref()?)))
            .chain(self.sparse.iter().map(|(&p, c)| (p, c)))
    }
}

/// A group's committed topics.
pub type Topics = HashMap<String, Partitions>;

/// A change the log holds for one key: an offset, or its removal (tombstone).
pub type Change = (String, (String, i32), Option<Committed>);

#[derive(Debug, Default)]
pub struct View {
    groups: HashMap<String, Topics>,
    /// Appends not yet committed, with what they change once they are.
    pub pending: Vec<(AppendHandle, Vec<Change>)>,
    /// Transactional records waiting for their producer's marker.
    in_transaction: HashMap<i64, Vec<Change>>,
    /// Records of types this store does not model.
    pub skipped: u64,
}

/// `a == b`, without a call to `memcmp` when both are empty: commit metadata almost always
/// is, and that call on every record of a load cost a fifth of the load.
#[inline(always)]
fn same_text(a: &str, b: &str) -> bool {
    a.len() == b.len() && (a.is_empty() || a == b)
}

/// `a == b` for slices of equal length, inline: two overlapping word compares for
/// the 8 to 32 bytes that a key's version, group and topic usually take, where the call
/// to `memcmp` that `==` makes would cost more than the compare.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    fn word<const W: usize>(s: &[u8], at: usize) -> [u8; W] {
        let mut w = [0u8; W];
        w.copy_from_slice(&s[at..at + W]);
        w
    }
    match n {
        16..=32 => {
            u128::from_ne_bytes(word(a, 0)) == u128::from_ne_bytes(word(b, 0))
                && u128::from_ne_bytes(word(a, n - 16)) == u128::from_ne_bytes(word(b, n - 16))
        }
        8..=15 => {
            u64::from_ne_bytes(word(a, 0)) == u64::from_ne_bytes(word(b, 0))
                && u64::from_ne_bytes(word(a, n - 8)) == u64::from_ne_bytes(word(b, n - 8))
        }
        _ => a == b,
    }
}

fn record_error(record: &Record<'_>, reason: String) -> Error {
    Error::OffsetsRecord {
        offset: record.offset,
        reason,
    }
}

impl View {
    pub fn group(&self, group: &str) -> Option<&Topics> {
        self.groups.get(group)
    }

    pub fn groups(&self) -> impl Iterator<Item = (&String, &Topics)> {
        self.groups.iter()
    }

    pub fn apply(&mut self, (group, (topic, partition), value): Change) {
        match value {
            Some(committed) => {
                let topics = self.groups.entry(group).or_default();
                topics
                    .entry(topic)
                    .or_default()
                    .insert(partition, committed);
            }
            None => self.remove(&group, &topic, partition),
        }
    }

    fn remove(&mut self, group: &str, topic: &str, partition: i32) {
        let Some(topics) = self.groups.get_mut(group) else {
            return;
        };
        if let Some(partitions) = topics.get_mut(topic) {
            partitions.remove(partition);
            if partitions.is_empty() {
                topics.remove(topic);
            }
        }
        if topics.is_empty() {
            self.groups.remove(group);
        }
    }

    /// Moves committed appends into the view and forgets failed ones (a failed append may
    /// still be in the log: the next leader's load finds it).
    pub fn settle(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for (handle, changes) in pending {
            match handle.poll() {
                None => self.pending.push((handle, changes)),
                Some(Ok(_)) => changes.into_iter().for_each(|c| self.apply(c)),
                Some(Err(_)) => {}
            }
        }
    }

    /// Replays one batch of the log.
    pub fn replay(&mut self, batch: &Batch<'_>) -> Result<()> {
        let header = batch.header();
        if header.is_control() {
            return self.replay_marker(batch);
        }
        if header.is_transactional() {
            return self.replay_transactional(batch);
        }
        // A commit's records share its group, and runs of them a topic. A key that repeats
        // the record before's bytes up to the partition (version, group, topic) reuses
        // that record's partition table without decoding the names again.
        let mut prefix: &[u8] = &[];
        let mut cached: Option<&mut Partitions> = None;
        for record in batch.records()? {
            let record = record?;
            let key = record
                .key
                .ok_or_else(|| record_error(&record, "no key".into()))?;
            let (partitions, partition) = match (&mut cached, record.value) {
                (Some(partitions), Some(_))
                    if key.len() == prefix.len() + 4
                        && same_bytes(&key[..prefix.len()], prefix) =>
                {
                    let mut id = [0u8; 4];
                    id.copy_from_slice(&key[prefix.len()..]);
                    (partitions, i32::from_be_bytes(id))
                }
                _ => {
                    cached = None;
                    prefix = &[];
                    let (group, topic, partition) = match codec::decode_key_ref(key)
                        .map_err(|e| record_error(&record, e.to_string()))?
                    {
                        KeyRef::OffsetCommit {
                            group,
                            topic,
                            partition,
                        } => (group, topic, partition),
                        // Group metadata (members, generations) is the coordinator's.
                        KeyRef::GroupMetadata { .. } | KeyRef::Unmodelled { .. } => {
                            self.skipped += 1;
                            continue;
                        }
                    };
                    if record.value.is_none() {
                        self.remove(group, topic, partition);
                        continue;
                    }
                    prefix = &key[..key.len() - 4];
                    let table = self
                        .partitions_mut(group, topic)
                        .ok_or_else(|| record_error(&record, "no partition table".into()))?;
                    (cached.insert(table), partition)
                }
            };
            let Some(value) = record.value else {
                continue; // a tombstone took the path above
            };
            let v = codec::decode_offset_commit_value_ref(value)
                .map_err(|e| record_error(&record, e.to_string()))?;
            match partitions.get_mut(partition) {
                Some(c) => {
                    c.offset = v.offset;
                    c.leader_epoch = v.leader_epoch;
                    c.commit_timestamp = v.commit_timestamp;
                    if !same_text(&c.metadata, v.metadata) {
                        c.metadata.clear();
                        c.metadata.push_str(v.metadata);
                    }
                }
                None => partitions.insert(
                    partition,
                    Committed {
                        offset: v.offset,
                        leader_epoch: v.leader_epoch,
                        metadata: v.metadata.to_string(),
                        commit_timestamp: v.commit_timestamp,
                    },
                ),
            }
        }
        Ok(())
    }

    /// The partition table of `group`'s `topic`, created empty when new (`None` only if
    /// the maps lost an entry just put in).
    fn partitions_mut(&mut self, group: &str, topic: &str) -> Option<&mut Partitions> {
        if !self.groups.contains_key(group) {
            self.groups.insert(group.to_string(), Topics::default());
        }
        let topics = self.groups.get_mut(group)?;
        if !topics.contains_key(topic) {
            topics.insert(topic.to_string(), Partitions::default());
        }
        topics.get_mut(topic)
    }

    /// A transactional batch: its changes wait for the producer's marker.
    fn replay_transactional(&mut self, batch: &Batch<'_>) -> Result<()> {
        let producer = batch.header().producer_id;
        for record in batch.records()? {
            let record = record?;
            let key = record
                .key
                .ok_or_else(|| record_error(&record, "no key".into()))?;
            let KeyRef::OffsetCommit {
                group,
                topic,
                partition,
            } = codec::decode_key_ref(key).map_err(|e| record_error(&record, e.to_string()))?
            else {
                self.skipped += 1;
                continue;
            };
            let value = match record.value {
                Some(v) => {
                    let v = codec::decode_offset_commit_value_ref(v)
                        .map_err(|e| record_error(&record, e.to_string()))?;
                    Some(Committed {
                        offset: v.offset,
                        leader_epoch: v.leader_epoch,
                        metadata: v.metadata.to_string(),
                        commit_timestamp: v.commit_timestamp,
                    })
                }
                None => None,
            };
            let change = (group.to_string(), (topic.to_string(), partition), value);
            self.in_transaction
                .entry(producer)
                .or_default()
                .push(change);
        }
        Ok(())
    }

    /// A transaction marker: COMMIT applies the producer's waiting changes, ABORT drops
    /// them. A control record's key is a version (int16) and a type (int16: 0 abort, 1
    /// commit).
    fn replay_marker(&mut self, batch: &Batch<'_>) -> Result<()> {
        let producer = batch.header().producer_id;
        for record in batch.records()? {
            let record = record?;
            let commit = record
                .key
                .is_some_and(|k| k.len() >= 4 && k[2..4] == [0, 1]);
            let changes = self.in_transaction.remove(&producer);
            if commit {
                changes.into_iter().flatten().for_each(|c| self.apply(c));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offsets::codec::{
        encode_group_metadata_key, encode_offset_commit_key, encode_offset_commit_value,
        OffsetCommitValue,
    };
    use crate::record::BatchBuilder;

    fn committed(offset: i64) -> Committed {
        Committed {
            offset,
            leader_epoch: 1,
            metadata: String::new(),
            commit_timestamp: 7,
        }
    }

    #[test]
    fn partitions_keep_small_ids_in_the_table_and_the_rest_aside() {
        let mut p = Partitions::default();
        for id in [0, 3, 1, 40, -1, i32::MAX, 2] {
            p.insert(id, committed(i64::from(id)));
        }
        assert_eq!(p.dense.len(), 4, "0..=3 are dense: {:?}", p.dense.len());
        assert_eq!(
            p.sparse.len(),
            3,
            "40, -1 and i32::MAX would stretch the table"
        );
        for id in [0, 1, 2, 3, 40, -1, i32::MAX] {
            assert_eq!(p.get(id).map(|c| c.offset), Some(i64::from(id)));
        }
        assert!(p.get(4).is_none() && p.get(39).is_none());
        p.insert(3, committed(30));
        assert_eq!(p.get(3).map(|c| c.offset), Some(30));
        let mut ids: Vec<i32> = p.iter().map(|(id, _)| id).collect();
        ids.sort_unstable();
        assert_eq!(ids, [-1, 0, 1, 2, 3, 40, i32::MAX]);
        for id in [0, 1, 2, 3, 40, -1, i32::MAX] {
            assert!(!p.is_empty());
            p.remove(id);
            p.remove(id); // twice: the second finds nothing
        }
        assert!(p.is_empty() && p.iter().next().is_none());
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
            .flat_map(|topics| {
                topics.iter().flat_map(|(t, ps)| {
                    ps.iter()
                        .map(move |(p, c)| (t.clone(), p, c.offset, c.metadata.clone()))
                })
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
}
