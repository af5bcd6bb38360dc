//! The leader-epoch cache: for each leader epoch in the log, the offset of its first batch
//! (Kafka's `LeaderEpochFileCache`). A follower asks its leader where an epoch ends to find
//! where their logs diverge, which is what keeps a restarted replica from losing or
//! inventing acknowledged records (KIP-101, KIP-279).
//!
//! Persisted as `leader-epoch-checkpoint` in the partition dir, in Kafka's text format
//! (`0`, the entry count, then `epoch start_offset` lines), replaced atomically.

use std::path::Path;

use crate::checkpoint;
use crate::error::Result;
use crate::io::Storage;

/// "No epoch" in a request or an answer (Kafka's `UNDEFINED_EPOCH`).
pub const UNDEFINED_EPOCH: i32 = -1;
/// "No offset" in an answer (Kafka's `UNDEFINED_EPOCH_OFFSET`).
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// One leader epoch and the offset of its first batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// The entries, epochs and start offsets both increasing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochCache {
    entries: Vec<EpochEntry>,
}

impl EpochCache {
    /// A cache holding `entries`, which must have increasing epochs and start offsets.
    pub fn from_entries(entries: Vec<EpochEntry>) -> EpochCache {
        debug_assert!(entries
            .windows(2)
            .all(|w| w[0].epoch < w[1].epoch && w[0].start_offset <= w[1].start_offset));
        EpochCache { entries }
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// Whether `epoch` is older than every epoch the cache holds (and it holds one): the
    /// log start moved past where `epoch` ended and took it out, or the log never had it.
    /// [`EpochCache::end_offset_for`] then answers the start of the cache's first epoch,
    /// which says nothing of where `epoch` ended.
    pub fn forgot(&self, epoch: i32) -> bool {
        self.entries
            .first()
            .is_some_and(|first| first.epoch > epoch)
    }

    /// Records that `epoch` starts at `start_offset`. A no-op unless the cache is empty,
    /// the epoch differs from the latest, or the offset is below the latest entry's start;
    /// otherwise entries whose epoch is at least `epoch`, or whose start is at least
    /// `start_offset`, go first. Negative epochs or offsets are ignored (batches written
    /// without an epoch). Returns true when the cache changed.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || start_offset < 0 {
            return false;
        }
        let needed = self
            .latest()
            .is_none_or(|l| l.epoch != epoch || start_offset < l.start_offset);
        if !needed {
            return false;
        }
        self.entries
            .retain(|e| e.epoch < epoch && e.start_offset < start_offset);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Where `epoch` ends on this log, as `(epoch, end offset)` (Kafka's `endOffsetFor`):
    /// the latest epoch ends at the log end; an epoch the log skipped ends where the next
    /// known epoch starts, and is answered with the largest known epoch below it (or
    /// itself when there is none); an epoch above every known one, or
    /// [`UNDEFINED_EPOCH`], is undefined.
    pub fn end_offset_for(&self, epoch: i32, log_end_offset: i64) -> (i32, i64) {
        let undefined = (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        if epoch == UNDEFINED_EPOCH {
            return undefined;
        }
        if self.latest().is_some_and(|l| l.epoch == epoch) {
            return (epoch, log_end_offset);
        }
        let Some(higher) = self.entries.iter().find(|e| e.epoch > epoch) else {
            return undefined;
        };
        match self.entries.iter().rev().find(|e| e.epoch <= epoch) {
            Some(floor) => (floor.epoch, higher.start_offset),
            None => (epoch, higher.start_offset),
        }
    }

    /// Drops the entries that start at or after `end_offset` (the log was cut there).
    /// Returns true when the cache changed.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        self.entries.len() != before
    }

    /// Drops the entries of epochs above `last_epoch`, the epoch of the log's last batch,
    /// that start below `end_offset`, where that batch ends: epochs never decrease along
    /// the log, so such an entry outlived a truncation that never reached its file (Kafka
    /// writes `truncateFromEnd` to the checkpoint in the background; a crash before that
    /// keeps the epoch of records it cut). Returns true when the cache changed.
    pub fn drop_epochs_the_log_lacks(&mut self, last_epoch: i32, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries
            .retain(|e| e.epoch <= last_epoch || e.start_offset >= end_offset);
        self.entries.len() != before
    }

    /// Drops the entries that start at or before `start_offset` (the log start moved
    /// there), except the last of them, which moves to `start_offset`: the epoch of the
    /// first batch left. Returns true when the cache changed.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let covered = self
            .entries
            .partition_point(|e| e.start_offset <= start_offset);
        if covered == 0 {
            return false;
        }
        let first = EpochEntry {
            epoch: self.entries[covered - 1].epoch,
            start_offset,
        };
        let changed = covered > 1 || self.entries[0] != first;
        self.entries.drain(..covered - 1);
        self.entries[0] = first;
        changed
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// The checkpoint file's text.
    pub fn render(&self) -> String {
        checkpoint::render(&self.entries, |e| format!("{} {}", e.epoch, e.start_offset))
    }

    /// Reads `leader-epoch-checkpoint` in `dir`: `Ok(None)` when there is none, an error
    /// when it does not parse or its entries do not increase.
    pub fn read(storage: &dyn Storage, dir: &Path) -> Result<Option<EpochCache>> {
        let path = dir.join(checkpoint::LEADER_EPOCH_FILE);
        let Some(text) = checkpoint::read_text(storage, &path)? else {
            return Ok(None);
        };
        let entries: Vec<EpochEntry> = checkpoint::parse_epochs(&path, &text)?
            .into_iter()
            .map(|(epoch, start_offset)| EpochEntry {
                epoch,
                start_offset,
            })
            .collect();
        let increasing = entries
            .windows(2)
            .all(|w| w[0].epoch < w[1].epoch && w[0].start_offset <= w[1].start_offset);
        let non_negative = entries.iter().all(|e| e.epoch >= 0 && e.start_offset >= 0);
        if !increasing || !non_negative {
            return Err(crate::Error::Parse {
                file: path,
                line: 0,
                reason: "epochs and start offsets must be non-negative and increase".into(),
            });
        }
        Ok(Some(EpochCache { entries }))
    }

    /// Replaces `leader-epoch-checkpoint` in `dir` with `text` (from [`EpochCache::render`]),
    /// atomically and durably.
    pub fn write(storage: &dyn Storage, dir: &Path, text: &str) -> Result<()> {
        checkpoint::write_atomic(storage, &dir.join(checkpoint::LEADER_EPOCH_FILE), text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> EpochCache {
        EpochCache::from_entries(
            entries
                .iter()
                .map(|&(epoch, start_offset)| EpochEntry {
                    epoch,
                    start_offset,
                })
                .collect(),
        )
    }

    fn pairs(c: &EpochCache) -> Vec<(i32, i64)> {
        c.entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    /// Kafka's own example: cache (0,10), (2,13), (4,17).
    #[test]
    fn end_offsets_for_kafkas_example() {
        let c = cache(&[(0, 10), (2, 13), (4, 17)]);
        assert_eq!(c.end_offset_for(0, 20), (0, 13));
        assert_eq!(c.end_offset_for(1, 20), (0, 13));
        assert_eq!(c.end_offset_for(2, 20), (2, 17));
        assert_eq!(c.end_offset_for(3, 20), (2, 17));
        assert_eq!(c.end_offset_for(4, 20), (4, 20));
        assert_eq!(
            c.end_offset_for(5, 20),
            (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)
        );
        assert_eq!(
            c.end_offset_for(UNDEFINED_EPOCH, 20),
            (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)
        );
        // Below every known epoch: the epoch asked for, ending where the first one starts.
        let c = cache(&[(3, 10), (5, 13)]);
        assert_eq!(c.end_offset_for(1, 20), (1, 10));
        assert_eq!(EpochCache::default().end_offset_for(0, 7), (-1, -1));
    }

    #[test]
    fn assign_adds_only_what_is_new_and_drops_what_it_contradicts() {
        let mut c = EpochCache::default();
        assert!(c.assign(2, 5));
        assert!(!c.assign(2, 9), "same epoch, later offset: nothing new");
        assert!(c.assign(3, 9));
        assert!(c.assign(3, 7), "same epoch, lower offset: moves the start");
        assert_eq!(pairs(&c), vec![(2, 5), (3, 7)]);
        // A lower epoch at a lower offset (a new leader that had less): entries at or above
        // either go.
        assert!(c.assign(1, 4));
        assert_eq!(pairs(&c), vec![(1, 4)]);
        assert!(!c.assign(-1, 10) && !c.assign(5, -1));
        assert!(c.assign(6, 4));
        assert_eq!(pairs(&c), vec![(6, 4)]);
    }

    #[test]
    fn truncations_from_either_end() {
        let mut c = cache(&[(0, 10), (2, 13), (4, 17)]);
        assert!(!c.truncate_from_end(18));
        assert!(c.truncate_from_end(17));
        assert_eq!(pairs(&c), vec![(0, 10), (2, 13)]);
        assert!(c.truncate_from_end(11));
        assert_eq!(pairs(&c), vec![(0, 10)]);

        let mut c = cache(&[(0, 10), (2, 13), (4, 17)]);
        assert!(!c.truncate_from_start(9));
        assert!(!c.truncate_from_start(10));
        assert!(c.truncate_from_start(15));
        assert_eq!(pairs(&c), vec![(2, 15), (4, 17)]);
        assert!(c.truncate_from_start(17));
        assert_eq!(pairs(&c), vec![(4, 17)]);
        assert!(c.truncate_from_start(30));
        assert_eq!(pairs(&c), vec![(4, 30)]);
    }

    /// A log start moved past where epochs ended takes them out of the cache: the cache
    /// forgot them, and its answer for them (Kafka's) is the first epoch left's start.
    #[test]
    fn a_truncation_from_the_start_forgets_the_epochs_before() {
        let mut c = cache(&[(0, 10), (2, 13), (4, 17)]);
        assert!(!c.forgot(0) && !c.forgot(3) && !c.forgot(7));
        assert!(c.truncate_from_start(15));
        assert!(c.forgot(0) && c.forgot(1), "ended below the log start");
        assert!(!c.forgot(2) && !c.forgot(3), "epoch 2 holds the log start");
        assert_eq!(
            c.end_offset_for(1, 20),
            (1, 15),
            "not where epoch 1 ended (13)"
        );
        assert!(
            !EpochCache::default().forgot(0),
            "an empty cache knows of no later epoch"
        );
    }

    #[test]
    fn checkpoint_round_trip_and_refusal_of_bad_files() {
        let sim = crate::io::sim::SimStorage::new(1);
        let dir = Path::new("/p");
        sim.create_dir_all(dir).unwrap();
        assert_eq!(EpochCache::read(sim.as_ref(), dir).unwrap(), None);
        let c = cache(&[(0, 10), (2, 13)]);
        EpochCache::write(sim.as_ref(), dir, &c.render()).unwrap();
        let text = sim.read_raw(&dir.join("leader-epoch-checkpoint")).unwrap();
        assert_eq!(text, b"0\n2\n0 10\n2 13\n");
        assert_eq!(EpochCache::read(sim.as_ref(), dir).unwrap(), Some(c));
        EpochCache::write(sim.as_ref(), dir, "0\n2\n3 10\n2 13\n").unwrap();
        assert!(EpochCache::read(sim.as_ref(), dir).is_err());
    }
}
