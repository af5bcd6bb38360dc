//! Expiry of committed offsets (Kafka's `offsets.retention.minutes`, KIP-211, KIP-496).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use super::load::{Hosted, ViewState};
use super::view::Change;
use super::{Expiry, Membership, OffsetsStore};
use crate::error::Error;
use crate::lock;

impl OffsetsStore {
    /// Writes tombstones for the offsets that expired, on every loaded partition this
    /// broker leads, and returns their appends and the partitions that failed (see
    /// [`Expiry`]). An offset whose newer commit is still on its way is left. As Kafka's
    /// coordinator does since KIP-211, a group with members
    /// keeps its offsets, and an empty one's offsets expire `retention_ms` after the
    /// group became empty, not after they were committed: a consumer group that stopped
    /// committing a quiet partition's offset long ago keeps it while it runs, and for
    /// the retention after it stops. An offset committed after its group became empty
    /// (an administrator's reset) is kept for the retention after its commit. A group the
    /// embedder never mentioned (a standalone consumer, which only commits) has each
    /// offset expire `retention_ms` after its commit, as in Kafka, or after the store
    /// became the partition's leader when that was later: such a group may also be one
    /// that was empty when this coordinator took over, whose offsets Kafka keeps for the
    /// retention after it became empty, which only the previous coordinator knew. A group with members
    /// whose subscription is known has the offsets of the topics outside it expire
    /// `retention_ms` after their commit (KIP-496). An offset whose value carries an
    /// explicit expiry (version 1) expires then instead, under the same rules of whose
    /// offsets may expire, as in Kafka.
    ///
    /// The memberships are read and the tombstones appended under one hold of the
    /// membership lock (always taken before a partition's): a group said to have members
    /// meanwhile waits for the expiry, and does not find the offsets of a group it
    /// joined expire after it joined.
    pub fn expire(&self) -> Expiry {
        let now = self.clock.now_ms();
        let cutoff = now.saturating_sub(self.config.retention_ms);
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let mut expiry = Expiry::default();
        // Empty groups left without offsets (all expired here, or none ever) on a partition
        // this store leads: forgotten at the end, as Kafka's coordinator drops an empty
        // group whose last offset expired. Else the map grows with every throwaway group.
        let mut forgotten: Vec<String> = Vec::new();
        // Each partition read and appended to under one hold of its lock: no commit comes
        // between the offsets read here and their tombstones.
        let partitions: Vec<(u32, Arc<Mutex<Hosted>>)> =
            self.hosted().iter().map(|(&i, p)| (i, p.clone())).collect();
        for (index, partition) in partitions {
            let mut hosted = lock(&partition);
            let h = &mut *hosted;
            h.promote_if_committed(now);
            let leads = h.leads();
            // Groups not heard of yet may be running ones whose members have not found
            // this new coordinator: none of theirs expire for a grace.
            let grace = h.in_membership_grace(now, self.config.membership_grace_ms);
            let serving_since = h.serving_since;
            let Hosted { replica, state, .. } = h;
            let ViewState::Loaded(view) = state else {
                continue;
            };
            if !leads {
                let error = Error::NotCoordinator { partition: index };
                expiry.failed.push((index, error));
                continue;
            }
            view.settle(|| replica.high_watermark());
            // As Kafka's coordinator does, an offset with a commit on its way is not
            // expired: the commit is newer, and a tombstone after it would take it. Nor
            // one an open transaction holds (Kafka's `hasPendingTransactionalOffsets`):
            // the tombstone would drop the transaction's offset, committed later.
            let on_the_way: HashSet<(&str, &str, i32)> = (view.pending.iter())
                .flat_map(|(_, changes)| changes)
                .map(|(g, (t, p), _)| (g.as_str(), t.as_str(), *p))
                .chain(view.open_transactions_offsets())
                .collect();
            // Groups with a commit on its way or an open transaction: kept, as Kafka's
            // coordinator keeps a group with open transactions.
            let written: HashSet<&str> = on_the_way.iter().map(|(g, _, _)| *g).collect();
            let mut expired: BTreeMap<String, Vec<Change>> = BTreeMap::new();
            // Empty groups of this partition whose every offset expires now.
            let mut emptied: HashSet<String> = HashSet::new();
            for (group, offsets) in view.groups() {
                let membership = groups.get(&group);
                let aging_since = Membership::aging_since(membership, serving_since);
                let mut kept = false;
                for (key, c, expire_at) in offsets.iter_with_expiry() {
                    // Kafka's rule: expired once `retention_ms` have passed, or at the
                    // explicit expiry of a version 1 value (the old semantics Kafka keeps
                    // for them).
                    let age_from = c.commit_timestamp.max(aging_since);
                    let old_enough = match expire_at {
                        Some(at) => now >= at,
                        None => age_from <= cutoff,
                    };
                    let unheard = grace && membership.is_none();
                    let due = !unheard && !Membership::keeps(membership, &key.0) && old_enough;
                    if due && !on_the_way.contains(&(group.as_str(), key.0.as_str(), key.1)) {
                        let change = (group.clone(), key, None);
                        expired.entry(group.clone()).or_default().push(change);
                    } else {
                        kept = true;
                    }
                }
                let empty = matches!(membership, Some(Membership::EmptySince(_)));
                if !kept && empty && !written.contains(group.as_str()) {
                    emptied.insert(group);
                }
            }
            // Empty groups of this partition without any offset, none on its way either.
            for (group, membership) in groups.iter() {
                let without_offsets = matches!(membership, Membership::EmptySince(_))
                    && self.partition_for(group) == index
                    && view.group(group).is_none()
                    && !written.contains(group.as_str());
                if without_offsets {
                    forgotten.push(group.clone());
                }
            }
            drop((on_the_way, written));
            for (group, changes) in expired {
                match self.append_tombstones(replica, view, changes) {
                    Ok(handle) => {
                        expiry.handles.push(handle);
                        if emptied.contains(&group) {
                            forgotten.push(group);
                        }
                    }
                    Err(error) => {
                        // The next call tries this partition again.
                        expiry.failed.push((index, error));
                        break;
                    }
                }
            }
        }
        for group in forgotten {
            groups.remove(&group);
        }
        expiry
    }
}
