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
//! its records go in as they come, as plain ones do (`clean::build_map`). The open
//! transactions hold no more keyed records between them than the whole map takes: past
//! that, one's records are let go, and at its COMMIT it is such a transaction.

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
    /// Keyed records the open transactions hold, and the most they may: as many as the
    /// whole map takes, so that a pass holds no more memory for them than for the map.
    held: usize,
    budget: usize,
}

#[derive(Debug, Default)]
struct Open {
    keys: Vec<(Digest, i64)>,
    batches: Vec<i64>,
    /// Its keys passed the budget and were let go: at its COMMIT it is too large.
    let_go: bool,
}

/// How a transaction ended at its marker.
#[derive(Debug)]
pub enum Ended {
    /// Committed: its keyed records now count; it began at `first`.
    Committed(Vec<(Digest, i64)>, i64),
    /// Committed, with more keyed records than the pass could hold; it began at `first`.
    TooLarge(i64),
    /// Aborted (its batches are remembered), or no transaction of the producer was open.
    Nothing,
}

impl Transactions {
    /// Transactions that hold at most `budget` keyed records between them.
    pub fn with_budget(budget: usize) -> Transactions {
        Transactions {
            budget,
            ..Transactions::default()
        }
    }

    /// A batch of `producer`'s open transaction at `base_offset`, with its keyed records.
    /// Past the budget, the transaction's records are let go (see [`Ended::TooLarge`]).
    pub fn add(&mut self, producer: i64, base_offset: i64, keys: &[(Digest, i64)]) {
        let open = self.open.entry(producer).or_default();
        open.batches.push(base_offset);
        if open.let_go {
            return;
        }
        if self.held + keys.len() > self.budget {
            self.held -= open.keys.len();
            open.keys = Vec::new();
            open.let_go = true;
            return;
        }
        self.held += keys.len();
        open.keys.extend_from_slice(keys);
    }

    /// `producer`'s marker: its open transaction, if any, ends. A COMMIT returns its
    /// keyed records, to count now, and where it began; an ABORT's batches are remembered
    /// as aborted.
    pub fn end(&mut self, producer: i64, commits: bool) -> Ended {
        let Some(open) = self.open.remove(&producer) else {
            return Ended::Nothing;
        };
        self.held -= open.keys.len();
        let Some(&first) = open.batches.first() else {
            return Ended::Nothing;
        };
        match (commits, open.let_go) {
            (true, false) => Ended::Committed(open.keys, first),
            (true, true) => Ended::TooLarge(first),
            (false, _) => {
                self.aborted.extend(open.batches);
                Ended::Nothing
            }
        }
    }

    /// Where the earliest transaction still open began.
    pub fn first_open(&self) -> Option<i64> {
        self.first_open_transaction().map(|(_, first)| first)
    }

    /// The producer and first batch of the transaction still open that began first.
    pub fn first_open_transaction(&self) -> Option<(i64, i64)> {
        self.open
            .iter()
            .filter_map(|(&producer, o)| o.batches.first().map(|&first| (producer, first)))
            .min_by_key(|&(_, first)| first)
    }

    /// A batch of a transaction known to have aborted, whose marker lies ahead.
    pub fn abort_batch(&mut self, base_offset: i64) {
        self.aborted.insert(base_offset);
    }

    /// True for a batch of an aborted transaction the map pass saw end, or knew to end so.
    pub fn is_aborted(&self, base_offset: i64) -> bool {
        self.aborted.contains(&base_offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cleaner::offset_map::OffsetMap;

    fn keys(map: &OffsetMap, names: &[&str], offset: i64) -> Vec<(Digest, i64)> {
        names
            .iter()
            .enumerate()
            .map(|(i, k)| (map.digest(k.as_bytes()), offset + i as i64))
            .collect()
    }

    /// The open transactions hold no more keyed records than the budget: the one whose
    /// batch would pass it lets its records go, and at its COMMIT it is too large (the
    /// cleaning ends where it began); at its ABORT its batches are aborted all the same.
    /// What the others hold still counts.
    #[test]
    fn open_transactions_hold_no_more_records_than_the_budget() {
        let map = OffsetMap::with_memory(1 << 16);
        let mut txns = Transactions::with_budget(3);
        txns.add(1, 0, &keys(&map, &["a", "b"], 0));
        txns.add(2, 10, &keys(&map, &["c", "d"], 10));
        txns.add(2, 20, &keys(&map, &["e"], 20));
        txns.add(3, 30, &keys(&map, &["f"], 30));
        assert_eq!(txns.held, 3, "1's two and 3's one: 2 let go of its");
        assert!(matches!(txns.end(2, true), Ended::TooLarge(10)));
        match txns.end(1, true) {
            Ended::Committed(records, 0) => assert_eq!(records, keys(&map, &["a", "b"], 0)),
            other => panic!("{other:?}"),
        }
        txns.add(4, 40, &keys(&map, &["g", "h", "i"], 40));
        txns.add(4, 50, &keys(&map, &["j"], 50));
        assert!(matches!(txns.end(4, false), Ended::Nothing));
        assert!(txns.is_aborted(40) && txns.is_aborted(50));
        assert_eq!(txns.first_open(), Some(30));
        assert!(matches!(txns.end(3, true), Ended::Committed(_, 30)));
        assert_eq!(txns.held, 0);
    }
}
