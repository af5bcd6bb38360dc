//! A partition's in-memory view of committed offsets: group → topic → partition → offset.
//!
//! Replaying the log is the load's hot path. A load of a large partition touches state
//! that is not in the CPU's cache for nearly every commit it replays (one commit per group
//! in turn), so the layout keeps the chain of memory reads per commit short and the state
//! small:
//!
//! - group and topic names are stored inline when short ([`Name`]), so that finding one
//!   compares bytes already at hand instead of following a pointer;
//! - a group's topics are one sorted array, found by binary search;
//! - a topic's partitions are a table indexed by partition id, of 24-byte slots; the rare
//!   non-empty metadata lives aside, in a table of its own.
//!
//! Keys and values are decoded in place, and the partition table of the record before is
//! reused while records repeat its group and topic (a commit's records share its group,
//! and runs of them a topic), so a load allocates only for what it sees the first time.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

use super::codec::{self, KeyRef};
use crate::error::{Error, Result};
use crate::record::{batches, Batch, Compression, Record};
use crate::replica::AppendHandle;
pub use decode::Decoded;
use decode::Item;
use metadata::MetadataTable;
use transactions::Pending;

/// A committed offset as [`super::OffsetsStore::fetch`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

/// Bytes of a name kept inline.
const INLINE_NAME: usize = 22;

/// A group or topic name: inline up to [`INLINE_NAME`] bytes, boxed beyond. It hashes and
/// compares as its bytes, so that maps keyed by it are searched with a `&[u8]`.
#[derive(Clone)]
enum Name {
    Inline(u8, [u8; INLINE_NAME]),
    Boxed(Box<[u8]>),
}

impl Name {
    fn new(bytes: &[u8]) -> Name {
        match u8::try_from(bytes.len()) {
            Ok(len) if bytes.len() <= INLINE_NAME => {
                let mut inline = [0u8; INLINE_NAME];
                inline[..bytes.len()].copy_from_slice(bytes);
                Name::Inline(len, inline)
            }
            _ => Name::Boxed(bytes.into()),
        }
    }

    #[inline(always)]
    fn as_bytes(&self) -> &[u8] {
        match self {
            Name::Inline(len, bytes) => &bytes[..usize::from(*len)],
            Name::Boxed(bytes) => bytes,
        }
    }

    /// The name as text. Names come from `&str`s and from keys whose decoding checked
    /// their UTF-8, so nothing is ever replaced.
    fn text(&self) -> String {
        String::from_utf8_lossy(self.as_bytes()).into_owned()
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Name {}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state)
    }
}

impl std::borrow::Borrow<[u8]> for Name {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// A committed offset in a partition table: [`Committed`] with its metadata as a handle
/// into the view's [`MetadataTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    offset: i64,
    commit_timestamp: i64,
    leader_epoch: i32,
    metadata: u32,
}

/// The metadata handle of a table slot that holds nothing.
const EMPTY_SLOT: u32 = u32::MAX;
/// The metadata handle of empty metadata (nearly all of it).
const NO_METADATA: u32 = 0;

/// An empty table slot.
const FREE: Slot = Slot {
    offset: 0,
    commit_timestamp: 0,
    leader_epoch: 0,
    metadata: EMPTY_SLOT,
};

/// A topic's committed partitions. Partition ids are small and dense (0 up to the topic's
/// partition count), so they index a table directly; the rare id that would stretch the
/// table past twice the entries it holds goes to a map instead. A load touches the
/// partitions of a commit one after the other, which a table keeps side by side.
#[derive(Debug, Default)]
struct Partitions {
    dense: Vec<Slot>,
    #[expect(
        clippy::box_collection,
        reason = "a pointer keeps the tables' headers small; the map is rare"
    )]
    sparse: Option<Box<HashMap<i32, Slot>>>,
    len: usize,
}

/// Slots the table may have beyond twice its entries.
const DENSE_SLACK: usize = 16;

impl Partitions {
    #[inline(always)]
    fn dense_index(&self, partition: i32) -> Option<usize> {
        usize::try_from(partition)
            .ok()
            .filter(|&i| i < self.dense.len())
    }

    fn get(&self, partition: i32) -> Option<&Slot> {
        let slot = match self.dense_index(partition) {
            Some(i) => &self.dense[i],
            None => self.sparse.as_ref()?.get(&partition)?,
        };
        (slot.metadata != EMPTY_SLOT).then_some(slot)
    }

    /// The slot of `partition`, made (empty) if need be: a caller that fills an empty one
    /// (`metadata` is [`EMPTY_SLOT`]) counts it in `len`.
    #[inline(always)]
    fn slot(&mut self, partition: i32) -> &mut Slot {
        match self.dense_index(partition) {
            Some(i) => &mut self.dense[i],
            None => self.slot_beyond(partition),
        }
    }

    /// Gives a table without slots empty ones for the partitions up to `top`, of a run of
    /// `count` offsets, when the table may grow that far with them (below `2 × count +`
    /// [`DENSE_SLACK`], as [`Partitions::slot_beyond`] lets it): a commit names a topic's
    /// partitions at once, and one table of the right size costs less than one grown slot
    /// by slot (and copied as it doubles). The run's offsets then fill slots in place.
    #[inline(always)]
    fn reserve_to(&mut self, top: i32, count: usize) {
        if self.dense.capacity() == 0 {
            if let Ok(top) = usize::try_from(top) {
                if top < 2 * count + DENSE_SLACK {
                    self.dense.reserve_exact(top + 1);
                    self.grow_dense(top + 1);
                }
            }
        }
    }

    fn slot_beyond(&mut self, partition: i32) -> &mut Slot {
        match usize::try_from(partition) {
            Ok(i) if i < 2 * self.len + DENSE_SLACK => {
                if self.dense.capacity() == 0 {
                    self.dense.reserve(DENSE_SLACK);
                }
                self.grow_dense(i + 1);
                &mut self.dense[i]
            }
            _ => self
                .sparse
                .get_or_insert_with(Default::default)
                .entry(partition)
                .or_insert(FREE),
        }
    }

    /// Makes the table `len` slots long, moving into it the slots the map held for the
    /// partitions it now covers: a partition is in the table or in the map, never in both,
    /// and [`Partitions::get`] looks in the table alone for the ids it covers.
    fn grow_dense(&mut self, len: usize) {
        let Partitions { dense, sparse, .. } = self;
        dense.resize(len, FREE);
        if let Some(map) = sparse {
            map.retain(|&partition, slot| match usize::try_from(partition) {
                Ok(i) if i < len => {
                    dense[i] = *slot;
                    false
                }
                _ => true,
            });
            if map.is_empty() {
                *sparse = None;
            }
        }
    }

    /// Empties `partition`'s slot; returns its metadata handle, [`EMPTY_SLOT`] if none.
    fn remove(&mut self, partition: i32) -> u32 {
        let slot = match self.dense_index(partition) {
            Some(i) => std::mem::replace(&mut self.dense[i], FREE),
            None => match self.sparse.as_mut().and_then(|m| m.remove(&partition)) {
                Some(slot) => slot,
                None => return EMPTY_SLOT,
            },
        };
        if slot.metadata != EMPTY_SLOT {
            self.len -= 1;
        }
        slot.metadata
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The filled slots, dense ones first.
    fn iter(&self) -> impl Iterator<Item = (i32, &Slot)> {
        let dense = self.dense.iter().enumerate().map(|(i, s)| (i as i32, s));
        let sparse = self
            .sparse
            .iter()
            .flat_map(|m| m.iter().map(|(&p, s)| (p, s)));
        dense
            .chain(sparse)
            .filter(|(_, s)| s.metadata != EMPTY_SLOT)
    }
}

/// A group's committed topics, sorted by name.
#[derive(Debug, Default)]
struct Topics {
    topics: Vec<(Name, Partitions)>,
}

impl Topics {
    fn find(&self, topic: &[u8]) -> std::result::Result<usize, usize> {
        self.topics
            .binary_search_by(|(name, _)| name.as_bytes().cmp(topic))
    }

    fn get(&self, topic: &[u8]) -> Option<&Partitions> {
        self.find(topic).ok().map(|i| &self.topics[i].1)
    }

    /// Where `topic`'s partitions are, made empty if need be.
    fn index_mut(&mut self, topic: &[u8]) -> usize {
        match self.find(topic) {
            Ok(i) => i,
            Err(i) => {
                self.topics
                    .insert(i, (Name::new(topic), Partitions::default()));
                i
            }
        }
    }
}

/// One group's offsets in a [`View`], as [`View::group`] lends them.
pub struct GroupOffsets<'a> {
    topics: &'a Topics,
    metadata: &'a MetadataTable,
}

impl GroupOffsets<'_> {
    fn committed(&self, slot: &Slot) -> Committed {
        Committed {
            offset: slot.offset,
            leader_epoch: slot.leader_epoch,
            metadata: self.metadata.text(slot.metadata).to_string(),
            commit_timestamp: slot.commit_timestamp,
        }
    }

    /// The committed offset of `topic`'s `partition`.
    pub fn get(&self, topic: &str, partition: i32) -> Option<Committed> {
        let slot = self.topics.get(topic.as_bytes())?.get(partition)?;
        Some(self.committed(slot))
    }

    /// Every committed offset of the group, by topic in name order.
    pub fn iter(&self) -> impl Iterator<Item = ((String, i32), Committed)> + '_ {
        self.iter_with_expiry()
            .map(|(key, committed, _)| (key, committed))
    }

    /// [`GroupOffsets::iter`], with each offset's explicit expiry (a version 1 value's
    /// `expireTimestamp`), if it has one.
    pub(crate) fn iter_with_expiry(
        &self,
    ) -> impl Iterator<Item = ((String, i32), Committed, Option<i64>)> + '_ {
        self.topics
            .topics
            .iter()
            .flat_map(move |(name, partitions)| {
                partitions.iter().map(move |(p, slot)| {
                    let expire = self.metadata.expire_at(slot.metadata);
                    ((name.text(), p), self.committed(slot), expire)
                })
            })
    }
}

/// A change the log holds for one key: an offset, or its removal (tombstone).
pub type Change = (String, (String, i32), Option<Committed>);

#[derive(Debug, Default)]
pub struct View {
    groups: HashMap<Name, Topics>,
    metadata: MetadataTable,
    /// Appends not yet committed, with what they change once they are.
    pub pending: VecDeque<(AppendHandle, Vec<Change>)>,
    /// Transactional records waiting for their producer's marker.
    in_transaction: Pending,
    /// Records of types this store does not model.
    pub skipped: u64,
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

/// Puts an offset into `partition`'s slot (filled or not), its metadata into `metadata`.
#[inline(always)]
fn fill(
    partitions: &mut Partitions,
    partition: i32,
    metadata: &mut MetadataTable,
    value: &codec::ValueRef<'_>,
) {
    let slot = partitions.slot(partition);
    let was_empty = slot.metadata == EMPTY_SLOT;
    slot.offset = value.offset;
    slot.leader_epoch = value.leader_epoch;
    slot.commit_timestamp = value.commit_timestamp;
    slot.metadata = match slot.metadata {
        NO_METADATA | EMPTY_SLOT if value.metadata.is_empty() && value.expire_timestamp < 0 => {
            NO_METADATA
        }
        old => metadata.store(old, value.metadata, value.expire_timestamp),
    };
    if was_empty {
        partitions.len += 1;
    }
}

/// Reads a word of every cache line of `slots` at once, so that the misses of a table out
/// of the cache overlap rather than come one after the other as the replay reaches them.
#[inline(always)]
fn touch(slots: &[Slot]) {
    let mut any = 0;
    for slot in slots.iter().step_by(64 / std::mem::size_of::<Slot>()) {
        any ^= slot.offset;
    }
    std::hint::black_box(any);
}

/// Removes one offset, and the topic and group it leaves empty.
fn remove(
    groups: &mut HashMap<Name, Topics>,
    metadata: &mut MetadataTable,
    group: &[u8],
    topic: &[u8],
    partition: i32,
) {
    let Some(topics) = groups.get_mut(group) else {
        return;
    };
    if let Ok(i) = topics.find(topic) {
        let partitions = &mut topics.topics[i].1;
        metadata.release(partitions.remove(partition));
        if partitions.is_empty() {
            topics.topics.remove(i);
        }
    }
    if topics.topics.is_empty() {
        groups.remove(group);
    }
}

/// `group`'s topics, made empty if need be (`None` only if the map lost an entry just put
/// in).
fn topics_mut<'g>(groups: &'g mut HashMap<Name, Topics>, group: &[u8]) -> Option<&'g mut Topics> {
    if group.len() <= INLINE_NAME {
        // A short name is a copy to make, so one lookup that inserts as needed.
        return Some(groups.entry(Name::new(group)).or_default());
    }
    if !groups.contains_key(group) {
        groups.insert(Name::new(group), Topics::default());
    }
    groups.get_mut(group)
}

impl View {
    /// The committed offsets of `group`.
    pub fn group(&self, group: &str) -> Option<GroupOffsets<'_>> {
        let topics = self.groups.get(group.as_bytes())?;
        Some(GroupOffsets {
            topics,
            metadata: &self.metadata,
        })
    }

    /// The keys (group, topic, partition) of the offsets that open transactions hold,
    /// waiting for their producers' markers: found in a log Kafka wrote (partlog's store
    /// commits no transactional offsets). As Kafka's coordinator does, a group's deletion
    /// writes tombstones for them too, and expiry spares them.
    pub fn open_transactions_offsets(&self) -> impl Iterator<Item = (&str, &str, i32)> {
        self.in_transaction
            .changes()
            .map(|(g, (t, p), _)| (g.as_str(), t.as_str(), *p))
    }

    /// Every group's committed offsets.
    pub fn groups(&self) -> impl Iterator<Item = (String, GroupOffsets<'_>)> {
        self.groups.iter().map(|(name, topics)| {
            let offsets = GroupOffsets {
                topics,
                metadata: &self.metadata,
            };
            (name.text(), offsets)
        })
    }

    pub fn apply(&mut self, (group, (topic, partition), value): Change) {
        let (group, topic) = (group.as_bytes(), topic.as_bytes());
        match value {
            Some(c) => {
                let value = codec::ValueRef {
                    offset: c.offset,
                    leader_epoch: c.leader_epoch,
                    metadata: &c.metadata,
                    commit_timestamp: c.commit_timestamp,
                    expire_timestamp: -1,
                };
                if let Some(topics) = topics_mut(&mut self.groups, group) {
                    let i = topics.index_mut(topic);
                    fill(
                        &mut topics.topics[i].1,
                        partition,
                        &mut self.metadata,
                        &value,
                    );
                }
            }
            None => remove(
                &mut self.groups,
                &mut self.metadata,
                group,
                topic,
                partition,
            ),
        }
    }

    /// Moves committed appends into the view, in the order they were appended, its
    /// replica's high watermark read by `high_watermark`. It stops at the first append
    /// still pending. The replica completes appends in offset order, but one by one and
    /// while this may be looking: a later append seen complete before an earlier one would
    /// be applied first, and the earlier, older offset would then overwrite it.
    ///
    /// An append is applied once the high watermark passes it, however it completed. One
    /// with `acks=1` ([`super::OffsetsConfig::acks`]) completes at the leader's write, and
    /// shown then, a failover before the followers copied it would take back an offset a
    /// consumer had fetched. One that failed after its write ([`Error::RequestTimedOut`],
    /// [`Error::NotEnoughReplicasAfterAppend`]) is in the leader's log, and committed once
    /// the high watermark passes it: it waits for that, as Kafka's coordinator runtime
    /// keeps such a write, and is applied then. Forgotten, the view would lack committed
    /// offsets until the next load (a group deleted meanwhile came back at it). Any other
    /// failure comes of the replica stepping down, and the view goes with it. (The high
    /// watermark is read after the outcome: an `acks=all` append completes once it passed,
    /// and is applied at once.)
    pub fn settle(&mut self, high_watermark: impl Fn() -> i64) {
        while let Some((handle, _)) = self.pending.front() {
            let Some(outcome) = handle.poll() else {
                return;
            };
            let apply = match outcome {
                Ok(_)
                | Err(Error::RequestTimedOut | Error::NotEnoughReplicasAfterAppend { .. }) => {
                    if handle.info().last_offset >= high_watermark() {
                        return;
                    }
                    true
                }
                Err(_) => false,
            };
            let changes = self.pending.pop_front().map(|(_, c)| c).unwrap_or_default();
            if apply {
                for change in changes {
                    // Newer than what open transactions hold for its key, as the replay
                    // of its record finds it.
                    self.apply_over_transactions(change, i64::MAX);
                }
            }
        }
    }

    /// Replays one batch of the log.
    pub fn replay(&mut self, batch: &Batch<'_>) -> Result<()> {
        let header = batch.header();
        if header.compression() != Compression::None {
            return Err(Error::OffsetsRecord {
                offset: header.base_offset,
                reason: format!(
                    "a {:?}-compressed batch: partlog does not decompress (Kafka compresses \
                     __consumer_offsets only when offsets.topic.compression.codec is set)",
                    header.compression()
                ),
            });
        }
        if header.is_control() {
            return self.replay_marker(batch);
        }
        if header.is_transactional() {
            return self.replay_transactional(batch);
        }
        // The usual records in a tight loop, then any others the general way (the same
        // code, compiled for each).
        let mut usual = batch.usual_records()?;
        self.replay_records((&mut usual).map(Ok))?;
        self.replay_records(usual.rest().map(|r| r.map_err(Error::from)))?;
        if !self.in_transaction.is_empty() {
            // What the batch wrote is newer than what open transactions hold for its keys.
            for record in batch.records()? {
                let record = record?;
                if let Some(Ok(KeyRef::OffsetCommit {
                    group,
                    topic,
                    partition,
                })) = record.key.map(codec::decode_key_ref)
                {
                    self.in_transaction
                        .drop_older((group.as_bytes(), topic.as_bytes(), partition), i64::MAX);
                }
            }
        }
        Ok(())
    }

    /// Replays the records of a batch that is neither a marker nor transactional.
    #[inline(always)]
    fn replay_records<'b>(
        &mut self,
        records: impl Iterator<Item = Result<Record<'b>>>,
    ) -> Result<()> {
        let View {
            groups,
            metadata,
            skipped,
            ..
        } = self;
        // A key that repeats the record before's bytes up to the partition (version,
        // group, topic) reuses that record's partition table without decoding the names;
        // one of the same group (a commit's next topic) reuses its group's topics.
        let mut prefix: &[u8] = &[];
        let mut cached: Option<(&[u8], &mut Topics, usize)> = None;
        for record in records {
            let record = record?;
            let key = record
                .key
                .ok_or_else(|| record_error(&record, "no key".into()))?;
            let (partitions, partition) = match (&mut cached, record.value) {
                (Some((_, topics, i)), Some(_))
                    if key.len() == prefix.len() + 4
                        && same_bytes(&key[..prefix.len()], prefix) =>
                {
                    let mut id = [0u8; 4];
                    id.copy_from_slice(&key[prefix.len()..]);
                    (&mut topics.topics[*i].1, i32::from_be_bytes(id))
                }
                _ => {
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
                            *skipped += 1;
                            continue;
                        }
                    };
                    let (group, topic) = (group.as_bytes(), topic.as_bytes());
                    prefix = &[];
                    let same_group = matches!(&cached, Some((g, ..)) if same_bytes(g, group));
                    if record.value.is_none() {
                        cached = None;
                        remove(groups, metadata, group, topic, partition);
                        continue;
                    }
                    if !same_group {
                        let topics = topics_mut(groups, group)
                            .ok_or_else(|| record_error(&record, "no group entry".into()))?;
                        cached = Some((group, topics, 0));
                    }
                    let Some((_, topics, i)) = &mut cached else {
                        continue; // not reached: filled just above
                    };
                    *i = topics.index_mut(topic);
                    touch(&topics.topics[*i].1.dense);
                    prefix = &key[..key.len() - 4];
                    (&mut topics.topics[*i].1, partition)
                }
            };
            let Some(value) = record.value else {
                continue; // a tombstone took the path above
            };
            let v = codec::decode_offset_commit_value_ref(value)
                .map_err(|e| record_error(&record, e.to_string()))?;
            fill(partitions, partition, metadata, &v);
        }
        Ok(())
    }

    /// Replays a piece of whole batches of the log, decoded by [`Decoded::decode_piece`]
    /// or not: the same either way. Returns the offset after its last batch.
    pub fn replay_piece(&mut self, piece: &[u8], decoded: Option<&Decoded>) -> Result<Option<i64>> {
        if let Some(decoded) = decoded {
            self.replay_decoded(piece, decoded)?;
            return Ok(decoded.next_offset());
        }
        let mut next = None;
        for batch in batches(piece) {
            let batch = batch?;
            self.replay(&batch)?;
            next = Some(batch.header().next_offset());
        }
        Ok(next)
    }

    /// Replays a piece that [`Decoded::decode_piece`] decoded: the same as replaying its
    /// batches one by one.
    fn replay_decoded(&mut self, piece: &[u8], decoded: &Decoded) -> Result<()> {
        for item in &decoded.items {
            match item {
                Item::Group { group, runs } => {
                    let group = decoded.name(*group);
                    let topics = topics_mut(&mut self.groups, group).ok_or_else(|| {
                        Error::OffsetsRecord {
                            offset: -1,
                            reason: "no group entry".into(),
                        }
                    })?;
                    for run in &decoded.runs[runs.clone()] {
                        let i = topics.index_mut(decoded.name(run.topic));
                        let partitions = &mut topics.topics[i].1;
                        partitions.reserve_to(run.top, run.entries.len());
                        touch(&partitions.dense);
                        let metadata = decoded.text(run.metadata);
                        for e in &decoded.entries[run.entries.clone()] {
                            let value = codec::ValueRef {
                                offset: e.offset,
                                leader_epoch: e.leader_epoch,
                                metadata,
                                commit_timestamp: run.commit_timestamp,
                                expire_timestamp: -1,
                            };
                            fill(partitions, e.partition, &mut self.metadata, &value);
                        }
                    }
                    if !self.in_transaction.is_empty() {
                        // As `replay` does after a batch: these are newer than what open
                        // transactions hold for their keys.
                        for run in &decoded.runs[runs.clone()] {
                            for e in &decoded.entries[run.entries.clone()] {
                                let key = (group, decoded.name(run.topic), e.partition);
                                self.in_transaction.drop_older(key, i64::MAX);
                            }
                        }
                    }
                }
                Item::Batch(range) => {
                    let batch = Batch::parse(&piece[range.clone()])?;
                    self.replay(&batch)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(any(test, feature = "fuzzing"))]
mod compare;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use compare::check_decoded_replay;
mod decode;
mod metadata;
#[cfg(test)]
mod tests;
mod transactions;
