//! A partition's in-memory view of committed offsets: group → topic → partition → offset.
//!
//! Replaying the log is the load's hot path, so it allocates only for a group, topic or
//! partition seen for the first time: keys and values are decoded in place, and the maps
//! of the group and topic of the record before are reused while records repeat them (a
//! commit's records share its group, and usually its topics).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

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

/// Partition ids hash by one multiplication (Fibonacci hashing): they are small integers,
/// and SipHash would cost more than the rest of a record's replay.
#[derive(Default)]
pub struct PartitionHasher(u64);

impl Hasher for PartitionHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_i32(&mut self, i: i32) {
        self.0 = (i as u32 as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A topic's committed partitions.
pub type Partitions = HashMap<i32, Committed, BuildHasherDefault<PartitionHasher>>;
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
            partitions.remove(&partition);
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
        // The maps of the group and topic of the record before, while records repeat them.
        let mut last: Option<(&[u8], &[u8])> = None;
        let mut cached: Option<&mut Partitions> = None;
        for record in batch.records()? {
            let record = record?;
            let key = record
                .key
                .ok_or_else(|| record_error(&record, "no key".into()))?;
            let (group, topic, partition) = match codec::decode_key_ref(key)
                .map_err(|e| record_error(&record, e.to_string()))?
            {
                KeyRef::OffsetCommit {
                    group,
                    topic,
                    partition,
                } => (group, topic, partition),
                // Group metadata (members, generations) is the coordinator's, not modelled.
                KeyRef::GroupMetadata { .. } | KeyRef::Unmodelled { .. } => {
                    self.skipped += 1;
                    continue;
                }
            };
            let Some(value) = record.value else {
                cached = None;
                last = None;
                self.remove(group, topic, partition);
                continue;
            };
            let v = codec::decode_offset_commit_value_ref(value)
                .map_err(|e| record_error(&record, e.to_string()))?;
            let same = last.is_some_and(|(g, t)| g == group.as_bytes() && t == topic.as_bytes());
            let partitions = match (same, cached.take()) {
                (true, Some(p)) => p,
                _ => {
                    let topics = match self.groups.get_mut(group) {
                        Some(t) => t,
                        None => self.groups.entry(group.to_string()).or_default(),
                    };
                    if !topics.contains_key(topic) {
                        topics.insert(topic.to_string(), Partitions::default());
                    }
                    last = Some((group.as_bytes(), topic.as_bytes()));
                    topics.get_mut(topic).ok_or(Error::LeaderNotAvailable)?
                }
            };
            match partitions.get_mut(&partition) {
                Some(c) => {
                    c.offset = v.offset;
                    c.leader_epoch = v.leader_epoch;
                    c.commit_timestamp = v.commit_timestamp;
                    if c.metadata != v.metadata {
                        c.metadata.clear();
                        c.metadata.push_str(v.metadata);
                    }
                }
                None => {
                    let committed = Committed {
                        offset: v.offset,
                        leader_epoch: v.leader_epoch,
                        metadata: v.metadata.to_string(),
                        commit_timestamp: v.commit_timestamp,
                    };
                    partitions.insert(partition, committed);
                }
            }
            cached = Some(partitions);
        }
        Ok(())
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
