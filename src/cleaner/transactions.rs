//! Transactions in a cleaning, as Kafka's cleaner treats them: a transactional record
//! counts in the key map only once its producer's COMMIT marker is seen, at its own offset
//! and only if no later record of its key is there already; an aborted transaction's
//! records never count and are dropped from the cleaned copy (a reader skips them anyway,
//! and a key's older, committed record must not lose to them). A transaction still open
//! where the map ends counts for nothing and loses nothing: its records stay, and so do
//! the records of their keys before them. Markers stay as they are.

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

    /// `producer`'s marker: its open transaction, if any, ends. Returns the keyed records
    /// a COMMIT makes count; an ABORT's batches are remembered as aborted.
    pub fn end(&mut self, producer: i64, commits: bool) -> Option<Vec<(Digest, i64)>> {
        let open = self.open.remove(&producer)?;
        if commits {
            return Some(open.keys);
        }
        self.aborted.extend(open.batches);
        None
    }

    /// True for a batch of an aborted transaction the map pass saw end.
    pub fn is_aborted(&self, base_offset: i64) -> bool {
        !self.aborted.is_empty() && self.aborted.contains(&base_offset)
    }
}
