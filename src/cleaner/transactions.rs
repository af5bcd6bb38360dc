//! Transactions in a cleaning, as Kafka's cleaner treats them: a transactional record
//! counts in the key map only once its producer's COMMIT marker is seen, at its own offset
//! and only if no later record of its key is there already; an aborted transaction's
//! records never count and are dropped from the cleaned copy (a reader skips them anyway,
//! and a key's older, committed record must not lose to them). Markers stay until no
//! batch of their transaction is left, then go past their delete horizon (`rewrite`).
//!
//! A cleaning ends before the first transaction still open where its map pass ends (as
//! Kafka's ends at the last stable offset): an undecided record below the end would count
//! in no map once decided, so the records of its key before it would never lose to it, and
//! a committed tombstone among them would, past its horizon, bring them back.
//!
//! A committed transaction that the whole map cannot take, where the dirty range begins,
//! would end every cleaning there: the map pass then runs again knowing it committed, and
//! its records go in as they come, as plain ones do (`clean::build_map`).

use std::collections::{HashMap, HashSet};

use super::offset_map::Digest;

/// The transactions a cleaning's map pass met.
#[derive(Debug, Default)]
pub struct Transactions {
    /// Open transactions by producer id: their keyed records and their batches' base
    /// offsets, in log order.
    open: HashMap<i64, Open>,
    /// Base offsets of the batches of aborted transactions.
    aborted: HashSet<i64>,
}

#[derive(Debug, Default)]
struct Open {
    keys: Vec<(Digest, i64)>,
    batches: Vec<i64>,
}

impl Transactions {
    /// A batch of `producer`'s open transaction at `base_offset`, with its keyed records.
    pub fn add(&mut self, producer: i64, base_offset: i64, keys: &[(Digest, i64)]) {
        let open = self.open.entry(producer).or_default();
        open.keys.extend_from_slice(keys);
        open.batches.push(base_offset);
    }

    /// `producer`'s marker: its open transaction, if any, ends. Returns what a COMMIT makes
    /// count (its keyed records) and where the transaction began; an ABORT's batches are
    /// remembered as aborted.
    pub fn end(&mut self, producer: i64, commits: bool) -> Option<(Vec<(Digest, i64)>, i64)> {
        let open = self.open.remove(&producer)?;
        let first = *open.batches.first()?;
        if commits {
            return Some((open.keys, first));
        }
        self.aborted.extend(open.batches);
        None
    }

    /// Where the earliest transaction still open began.
    pub fn first_open(&self) -> Option<i64> {
        self.open
            .values()
            .filter_map(|o| o.batches.first())
            .min()
            .copied()
    }

    /// True for a batch of an aborted transaction the map pass saw end.
    pub fn is_aborted(&self, base_offset: i64) -> bool {
        self.aborted.contains(&base_offset)
    }
}
