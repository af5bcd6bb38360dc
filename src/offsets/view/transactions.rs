//! Transactional offset commits in a log Kafka wrote: their changes wait for the
//! producer's marker, by the rules of Kafka's coordinator (`OffsetMetadataManager`): a key
//! keeps the value of the last record written for it, and a tombstone takes effect at once.

use std::collections::HashMap;
use std::hash::Hasher;

use super::{record_error, remove, Change, Committed, View};
use crate::error::{Error, Result};
use crate::offsets::codec::{self, KeyRef};
use crate::record::Batch;

/// The changes of open transactions by producer, each with its record's offset in the
/// log, and how many there are of each key (by hash). While any transaction is open, a load
/// asks for every record it replays whether one holds its key: the count answers without
/// looking through the changes, however many are open.
#[derive(Debug, Default)]
pub(super) struct Pending {
    by_producer: HashMap<i64, Vec<(i64, Change)>>,
    keys: HashMap<u64, usize>,
}

impl Pending {
    pub(super) fn is_empty(&self) -> bool {
        self.by_producer.is_empty()
    }

    /// Every change waiting for its producer's marker.
    pub(super) fn changes(&self) -> impl Iterator<Item = &Change> {
        self.by_producer
            .values()
            .flatten()
            .map(|(_, change)| change)
    }

    pub(super) fn key_hash((group, topic, partition): (&[u8], &[u8], i32)) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        h.write_usize(group.len());
        h.write(group);
        h.write(topic);
        h.write_i32(partition);
        h.finish()
    }

    fn hash_of((group, (topic, partition), _): &Change) -> u64 {
        Pending::key_hash((group.as_bytes(), topic.as_bytes(), *partition))
    }

    pub(super) fn push(&mut self, producer: i64, offset: i64, change: Change) {
        *self.keys.entry(Pending::hash_of(&change)).or_default() += 1;
        self.by_producer
            .entry(producer)
            .or_default()
            .push((offset, change));
    }

    /// The producer's changes, in log order, now no longer pending.
    pub(super) fn take(&mut self, producer: i64) -> Vec<(i64, Change)> {
        let changes = self.by_producer.remove(&producer).unwrap_or_default();
        for (_, change) in &changes {
            self.forget(Pending::hash_of(change), 1);
        }
        changes
    }

    /// Drops every change to `key` written below `offset`: the view holds a newer one.
    /// Kafka's coordinator keeps the value of the last record written for a key, whether a
    /// transaction or a plain commit wrote it; a transaction's value that an older record
    /// wrote is not applied at its commit.
    pub(super) fn drop_older(&mut self, key: (&[u8], &[u8], i32), offset: i64) {
        let hash = Pending::key_hash(key);
        if !self.keys.contains_key(&hash) {
            return;
        }
        let (group, topic, partition) = key;
        let mut dropped = 0;
        self.by_producer.retain(|_, changes| {
            changes.retain(|(at, (g, (t, p), _))| {
                let older = *at < offset
                    && *p == partition
                    && g.as_bytes() == group
                    && t.as_bytes() == topic;
                dropped += usize::from(older);
                !older
            });
            !changes.is_empty()
        });
        self.forget(hash, dropped);
    }

    fn forget(&mut self, hash: u64, count: usize) {
        if let Some(n) = self.keys.get_mut(&hash) {
            *n = n.saturating_sub(count);
            if *n == 0 {
                self.keys.remove(&hash);
            }
        }
    }
}

impl View {
    /// A transactional batch: its changes wait for the producer's marker.
    pub(super) fn replay_transactional(&mut self, batch: &Batch<'_>) -> Result<()> {
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
            let Some(value) = record.value else {
                // A tombstone takes effect at once, in a transaction too, and with it
                // whatever open transactions hold for the key (as Kafka's coordinator
                // replays one).
                let (g, t) = (group.as_bytes(), topic.as_bytes());
                remove(&mut self.groups, &mut self.metadata, g, t, partition);
                self.in_transaction.drop_older((g, t, partition), i64::MAX);
                continue;
            };
            let v = codec::decode_offset_commit_value_ref(value)
                .map_err(|e| record_error(&record, e.to_string()))?;
            let committed = Committed {
                offset: v.offset,
                leader_epoch: v.leader_epoch,
                metadata: v.metadata.to_string(),
                commit_timestamp: v.commit_timestamp,
            };
            let change = (
                group.to_string(),
                (topic.to_string(), partition),
                Some(committed),
            );
            self.in_transaction.push(producer, record.offset, change);
        }
        Ok(())
    }

    /// A transaction marker ([`Batch::marker_commits`]): COMMIT applies the producer's
    /// waiting changes, ABORT drops them. Other control batches change nothing, and so
    /// does a marker of a type Kafka has not defined (its coordinator logs and skips
    /// one); a transactional control batch whose record does not read as a marker's (a
    /// version and a type) fails the replay, as it fails Kafka's: skipped, its
    /// transaction would stay open, and its committed offsets never show. One with no
    /// record at all changes nothing, as Kafka's loader reads it: Kafka's cleaner keeps a
    /// marker past its delete horizon as such an empty batch, its flags kept.
    pub(super) fn replay_marker(&mut self, batch: &Batch<'_>) -> Result<()> {
        let Some(commits) = batch.marker_commits() else {
            if batch.header().is_transactional() {
                let Some(record) = batch.records()?.next().transpose()? else {
                    return Ok(());
                };
                if record.key.is_none_or(|key| key.len() < 4) {
                    return Err(Error::OffsetsRecord {
                        offset: batch.header().base_offset,
                        reason: "a transaction marker without a version and a type".into(),
                    });
                }
            }
            return Ok(());
        };
        let changes = self.in_transaction.take(batch.header().producer_id);
        if commits {
            for (at, change) in changes {
                self.apply_over_transactions(change, at);
            }
        }
        Ok(())
    }

    /// Applies `change`, written at `offset`: the changes open transactions hold for its
    /// key, written below it, lose to it (Kafka's coordinator keeps the value of the last
    /// record written for a key).
    pub(super) fn apply_over_transactions(&mut self, change: Change, offset: i64) {
        if !self.in_transaction.is_empty() {
            let (group, (topic, partition), _) = &change;
            let key = (group.as_bytes(), topic.as_bytes(), *partition);
            self.in_transaction.drop_older(key, offset);
        }
        self.apply(change);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The open transactions' key counts follow their changes: a key none holds any more is
    /// found without a look through the changes, and one still held is found.
    #[test]
    fn pending_changes_count_their_keys() {
        let change = |topic: &str| -> Change { ("g".into(), (topic.into(), 0), None) };
        let mut pending = Pending::default();
        pending.push(7, 10, change("a"));
        pending.push(8, 20, change("a"));
        pending.push(8, 21, change("b"));
        let a = Pending::key_hash((b"g", b"a", 0));
        let b = Pending::key_hash((b"g", b"b", 0));
        assert_eq!(
            (pending.keys.get(&a), pending.keys.get(&b)),
            (Some(&2), Some(&1))
        );
        // Only what was written below the offset goes.
        pending.drop_older((b"g", b"a", 0), 15);
        assert_eq!(pending.keys.get(&a), Some(&1));
        assert!(
            !pending.by_producer.contains_key(&7),
            "producer 7 held nothing else"
        );
        pending.drop_older((b"g", b"a", 0), i64::MAX);
        assert_eq!(pending.keys.get(&a), None);
        let taken = pending.take(8);
        assert_eq!(taken.len(), 1, "b is left: {taken:?}");
        assert!(pending.is_empty() && pending.keys.is_empty());
    }
}
