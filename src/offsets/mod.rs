//! The consumer-offsets store: the group coordinator's storage side, over Kafka's
//! `__consumer_offsets` layout. Offsets live in `partitions` (50 by default) compacted,
//! replicated logs ([`crate::replica::Partition`]s the embedder hosts here); a group's
//! offsets are in partition [`codec::partition_for`]`(group)`, as Kafka maps them.
//!
//! - [`OffsetsStore::commit`] appends one batch with `acks=all`; the offsets become
//!   visible to [`OffsetsStore::fetch`] once committed (the high watermark passed them).
//! - [`OffsetsStore::fetch`] answers from an in-memory view: no I/O, O(1) per partition.
//! - [`OffsetsStore::delete_group`] and [`OffsetsStore::expire`] write tombstones; the
//!   cleaner removes what they cover.
//! - [`OffsetsStore::become_leader`] starts loading a partition's view by replaying its log
//!   from the log start to the log end in bounded chunks ([`OffsetsStore::load_step`]);
//!   until it is done, and until the high watermark has reached that end (a new leader's
//!   log end is committed once its followers fetched it), requests for its groups get
//!   [`Error::CoordinatorLoadInProgress`]. So a view never shows what a later leader may
//!   not have: committed offsets never go backwards. [`OffsetsStore::become_follower`]
//!   drops the view.
//! - Loading applies transactional offset commits at their COMMIT marker and drops them at
//!   ABORT, by the rules of Kafka's coordinator (`OffsetMetadataManager`): a key keeps the
//!   value of the last record written for it, so a plain commit or a tombstone written
//!   while a transaction holds the key wins over the transaction's older record; a
//!   tombstone takes effect at once, in a transaction too, and drops the open
//!   transactions' changes to its key. Writing transactional commits is refused
//!   ([`Error::TransactionsUnsupported`]): partlog has no transactions. A transaction a
//!   load finds open (in a log Kafka wrote) stays open in the view: a marker appended to
//!   the partition afterwards, past the store (Kafka's coordinator writes it through its
//!   own `completeTransaction`), shows only at the next load, so such markers belong
//!   before [`OffsetsStore::become_leader`] (`partlog transactions --abort` on the dir).
//!   Meanwhile a group's deletion covers the open transactions' offsets and expiry
//!   spares them, as Kafka's coordinator does.

pub mod codec;
mod expiry;
mod load;
mod view;

use crate::lock;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use codec::OffsetCommitValue;
pub use load::LoadProgress;
use load::{Hosted, ViewState};
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use view::check_decoded_replay;
pub use view::Committed;
use view::{Change, View};

use crate::clock::Clock;
use crate::config::{CleanupPolicy, LogConfig};
use crate::error::{Error, Result};
use crate::log::UNDEFINED_EPOCH;
use crate::record::BatchBuilder;
use crate::replica::{Acks, AppendHandle, Partition};

/// The topic of the offsets partitions, as Kafka names it.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Kafka's `offsets.topic.num.partitions` default.
pub const DEFAULT_PARTITIONS: u32 = 50;
/// Kafka's `offsets.retention.minutes` default: 7 days.
pub const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// Kafka's `offsets.load.buffer.size` default: 5 MiB read per load step.
pub const DEFAULT_LOAD_BUFFER_BYTES: u64 = 5 << 20;
/// Kafka's `offsets.topic.segment.bytes` default: 100 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 100 << 20;
/// Bytes the load's reading thread reads (and decodes) at a time: small enough that its
/// buffers stay in the CPU's cache, and that the two threads' shares even out finely.
const LOAD_PIECE_BYTES: usize = 256 << 10;
/// Kafka's `offsets.commit.timeout.ms` default.
pub const DEFAULT_COMMIT_TIMEOUT_MS: i64 = 5_000;
/// Kafka's `offset.metadata.max.bytes` default.
pub const DEFAULT_METADATA_MAX_BYTES: usize = 4096;
/// Kafka's `group.max.session.timeout.ms` default: the longest a live member goes
/// without reaching its coordinator, and so the longest a new coordinator waits to hear
/// of a running group (see [`OffsetsConfig::membership_grace_ms`]).
pub const DEFAULT_MEMBERSHIP_GRACE_MS: i64 = 30 * 60 * 1000;

/// The log config of an offsets partition: compacted, 100 MiB segments.
pub fn offsets_log_config() -> LogConfig {
    LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        segment_bytes: DEFAULT_SEGMENT_BYTES,
        ..LogConfig::default()
    }
}

/// Settings of a store.
#[derive(Debug, Clone)]
pub struct OffsetsConfig {
    pub partitions: u32,
    /// Kafka's `offsets.commit.required.acks`: all (-1) by default.
    pub acks: Acks,
    pub retention_ms: i64,
    /// Bytes of the log one [`OffsetsStore::load_step`] replays (Kafka's
    /// `offsets.load.buffer.size`); a step ends at the first piece boundary past them.
    pub load_buffer_bytes: u64,
    pub commit_timeout_ms: i64,
    /// The longest metadata a committed offset may carry (Kafka's
    /// `offset.metadata.max.bytes`, 4096), counted as Kafka counts it: in UTF-16 code
    /// units (Java's `String.length`), not bytes.
    pub metadata_max_bytes: usize,
    /// For this long after the store's view of a partition it became the leader of began to
    /// serve (the members of a running group find the new coordinator only then: before,
    /// they are told its load is in progress), [`OffsetsStore::expire`] takes none of the
    /// offsets of a group of it that the embedder has not mentioned
    /// ([`OffsetsStore::set_group_active`]): a running group's members have not found the
    /// new coordinator yet, and its offsets are not a standalone consumer's; nor does
    /// [`OffsetsStore::delete_group`] or [`OffsetsStore::delete_offsets`] delete them.
    /// (Kafka's new coordinator knows at once, from the group metadata records its load
    /// replays; the store models no such record.) After it, such a group's offsets age
    /// from their commit or from the takeover, whichever is later (see
    /// [`OffsetsStore::expire`]). [`DEFAULT_MEMBERSHIP_GRACE_MS`].
    pub membership_grace_ms: i64,
}

impl Default for OffsetsConfig {
    fn default() -> Self {
        OffsetsConfig {
            partitions: DEFAULT_PARTITIONS,
            acks: Acks::All,
            retention_ms: DEFAULT_RETENTION_MS,
            load_buffer_bytes: DEFAULT_LOAD_BUFFER_BYTES,
            commit_timeout_ms: DEFAULT_COMMIT_TIMEOUT_MS,
            metadata_max_bytes: DEFAULT_METADATA_MAX_BYTES,
            membership_grace_ms: DEFAULT_MEMBERSHIP_GRACE_MS,
        }
    }
}

/// One partition's offset in a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommit {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

/// A group and its committed offsets by (topic, partition), as [`OffsetsStore::groups`]
/// lists them.
pub type GroupCommitted = (String, Vec<((String, i32), Committed)>);

/// What [`OffsetsStore::delete_offsets`] did: the tombstones' append (`None` when the
/// group had none of the partitions it could delete), and the partitions it kept, each
/// with why.
#[derive(Debug)]
pub struct OffsetDeletion {
    pub handle: Option<AppendHandle>,
    pub refused: Vec<((String, i32), Error)>,
}

/// What [`OffsetsStore::expire`] did: the tombstones' appends, and the loaded partitions
/// it could not expire in, each with why (each partition expires on its own, as Kafka's
/// coordinator does, so one that fails, such as a leader whose ISR fell below min ISR,
/// keeps no other from expiring).
#[derive(Debug, Default)]
pub struct Expiry {
    pub handles: Vec<AppendHandle>,
    pub failed: Vec<(u32, Error)>,
}

/// See the module docs.
#[derive(Debug)]
pub struct OffsetsStore {
    config: OffsetsConfig,
    clock: Arc<dyn Clock>,
    /// The offsets partitions this broker holds, each under a lock of its own: one
    /// partition's load or append (disk reads, a writer's lock held through a cleaner's
    /// swap) holds up no other partition's commits and fetches. The map's lock is held only
    /// to find a partition, never while taking one's.
    hosted: Mutex<BTreeMap<u32, Arc<Mutex<Hosted>>>>,
    /// Each group's membership as the embedder tells it ([`OffsetsStore::set_group_active`],
    /// [`OffsetsStore::set_group_subscription`]); a group it never mentioned has none.
    /// Taken before a partition's lock when both are held, never while holding one.
    groups: Mutex<HashMap<String, Membership>>,
}

/// A group's membership, as its coordinator (the embedder) tells it.
#[derive(Debug, Clone)]
enum Membership {
    /// The group has members, subscribing to these topics when known.
    Active(Option<HashSet<String>>),
    /// The group has no members since then (KIP-211's `currentStateTimestamp`).
    EmptySince(i64),
}

impl Membership {
    /// Whether `group`'s offsets of `topic` stay regardless of their age: every one of a
    /// group with members, or those of the topics it subscribes to when that is known.
    fn keeps(membership: Option<&Membership>, topic: &str) -> bool {
        match membership {
            Some(Membership::Active(None)) => true,
            Some(Membership::Active(Some(topics))) => topics.contains(topic),
            Some(Membership::EmptySince(_)) | None => false,
        }
    }

    /// From when a group's offsets age at the earliest (they age from their commit when
    /// that is later): when the group became empty; for one the store has not heard of,
    /// when the store's view of the partition began to serve (`serving_since`), since the
    /// group may have been empty since any time before; the beginning of time for a group
    /// with members (whose offsets outside its subscription age from their commit).
    fn aging_since(membership: Option<&Membership>, serving_since: i64) -> i64 {
        match membership {
            Some(Membership::EmptySince(since)) => *since,
            Some(Membership::Active(_)) => i64::MIN,
            None => serving_since,
        }
    }
}

impl OffsetsStore {
    pub fn new(config: OffsetsConfig, clock: Arc<dyn Clock>) -> OffsetsStore {
        OffsetsStore {
            config,
            clock,
            hosted: Mutex::new(BTreeMap::new()),
            groups: Mutex::new(HashMap::new()),
        }
    }

    pub fn partitions(&self) -> u32 {
        self.config.partitions
    }

    /// The offsets partition of `group`.
    pub fn partition_for(&self, group: &str) -> u32 {
        codec::partition_for(group, self.config.partitions)
    }

    fn hosted(&self) -> MutexGuard<'_, BTreeMap<u32, Arc<Mutex<Hosted>>>> {
        lock(&self.hosted)
    }

    /// Partition `index`, found under the map's lock and returned without it;
    /// [`Error::NotCoordinator`] when this broker does not hold it.
    fn partition(&self, index: u32) -> Result<Arc<Mutex<Hosted>>> {
        let found = self.hosted().get(&index).cloned();
        found.ok_or(Error::NotCoordinator { partition: index })
    }

    /// This broker holds a replica of offsets partition `index` (a follower until told).
    pub fn host(&self, index: u32, replica: Arc<Partition>) {
        self.hosted().insert(
            index,
            Arc::new(Mutex::new(Hosted {
                replica,
                state: ViewState::Follower,
                epoch: UNDEFINED_EPOCH,
                serving_since: i64::MIN,
            })),
        );
    }

    /// The replica of `index` became leader: its view starts loading. In a new term (a
    /// leader epoch the store did not lead in), what the embedder said of the partition's
    /// groups goes, as [`OffsetsStore::become_follower`] drops it: the store may not have
    /// been told that it stepped down, and another broker coordinated the groups since.
    pub fn become_leader(&self, index: u32) -> Result<()> {
        let partition = self.partition(index)?;
        // The groups' lock before the partition's, as the deletions take them.
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let mut hosted = lock(&partition);
        let h = &mut *hosted;
        let log = h.replica.log();
        let epoch = h.replica.leader_epoch();
        if epoch != h.epoch {
            groups.retain(|group, _| self.partition_for(group) != index);
        }
        drop(groups);
        h.epoch = epoch;
        h.serving_since = self.clock.now_ms();
        h.state = ViewState::Loading {
            next: log.log_start_offset(),
            end: log.log_end_offset(),
            view: View::default(),
            reader: None,
        };
        Ok(())
    }

    /// The replica of `index` became follower: its view is dropped, and so is what the
    /// embedder said of its groups' membership, as Kafka's coordinator unloads them: it
    /// goes stale while another broker coordinates them, and is learned anew when this
    /// store leads the partition again.
    pub fn become_follower(&self, index: u32) {
        // Both locks held through, groups first as everywhere: a `become_leader` for a
        // newer term could otherwise come between, and the new term's memberships, said
        // since, would go with the old ones.
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(partition) = self.partition(index) {
            lock(&partition).state = ViewState::Follower;
        }
        groups.retain(|group, _| self.partition_for(group) != index);
    }

    /// Runs `f` on the loaded view of the partition of `group`.
    fn with_view<T>(
        &self,
        group: &str,
        f: impl FnOnce(&Arc<Partition>, &mut View) -> Result<T>,
    ) -> Result<T> {
        self.with_partition_view(self.partition_for(group), f)
    }

    /// Runs `f` on the loaded view of partition `index`.
    fn with_partition_view<T>(
        &self,
        index: u32,
        f: impl FnOnce(&Arc<Partition>, &mut View) -> Result<T>,
    ) -> Result<T> {
        let partition = self.partition(index)?;
        let mut hosted = lock(&partition);
        let (replica, view) = hosted.serving(index, self.clock.now_ms())?;
        view.settle(|| replica.high_watermark());
        f(replica, view)
    }

    /// Commits `offsets` for `group`: one batch, `acks=all`. The handle completes when the
    /// batch is committed; [`OffsetsStore::fetch`] sees the offsets from then on. No
    /// offsets at all is a success that writes nothing, as in Kafka.
    /// [`Error::OffsetMetadataTooLarge`] for metadata longer than `metadata_max_bytes`,
    /// and nothing of the commit is written (Kafka refuses that partition alone and
    /// commits the others; a caller that wants that commits the others again).
    pub fn commit(&self, group: &str, offsets: &[OffsetCommit]) -> Result<AppendHandle> {
        check_len("group", group)?;
        let now = self.clock.now_ms();
        let mut changes = Vec::with_capacity(offsets.len());
        for o in offsets {
            check_len("topic", &o.topic)?;
            check_len("metadata", &o.metadata)?;
            // Kafka's `metadata.length()`: UTF-16 code units, not bytes. (`check_len`
            // bounds the bytes the record's string can hold.)
            let length = o.metadata.encode_utf16().count();
            if length > self.config.metadata_max_bytes {
                return Err(Error::OffsetMetadataTooLarge {
                    topic: o.topic.clone(),
                    partition: o.partition,
                    length,
                    max: self.config.metadata_max_bytes,
                });
            }
            let committed = Committed {
                offset: o.offset,
                leader_epoch: o.leader_epoch,
                metadata: o.metadata.clone(),
                commit_timestamp: now,
            };
            changes.push((
                group.to_string(),
                (o.topic.clone(), o.partition),
                Some(committed),
            ));
        }
        self.append_changes(group, changes)
    }

    /// Transactional offset commits need transactions, which partlog does not have.
    pub fn commit_transactional(
        &self,
        _group: &str,
        _producer_id: i64,
        _offsets: &[OffsetCommit],
    ) -> Result<AppendHandle> {
        Err(Error::TransactionsUnsupported)
    }

    fn append_changes(&self, group: &str, changes: Vec<Change>) -> Result<AppendHandle> {
        self.with_view(group, |replica, view| {
            if changes.is_empty() {
                // Kafka answers an OffsetCommit without partitions with success, writing
                // nothing: a handle complete at once, of no records at the log end.
                let end = replica.log().log_end_offset();
                let handle = AppendHandle::pending(crate::log::AppendInfo {
                    first_offset: end,
                    last_offset: end - 1,
                    max_timestamp: crate::record::NO_TIMESTAMP,
                    batches: 0,
                    bytes: 0,
                });
                handle.complete(Ok(handle.info()));
                return Ok(handle);
            }
            self.append_to(replica, view, changes)
        })
    }

    /// Appends `changes` as one batch to `replica`, whose loaded view is `view`: they join
    /// the view once committed.
    fn append_to(
        &self,
        replica: &Partition,
        view: &mut View,
        changes: Vec<Change>,
    ) -> Result<AppendHandle> {
        let (timeout, acks) = (self.config.commit_timeout_ms, self.config.acks);
        let mut batch = changes_batch(&changes, self.clock.now_ms())?;
        let handle = replica.append_as_coordinator(&mut batch, acks, timeout)?;
        view.pending.push_back((handle.clone(), changes));
        Ok(handle)
    }

    /// Appends tombstones (`changes` without values) in as many batches as the log's
    /// `max_message_bytes` needs, in order; the last batch's handle, which completes once
    /// every batch is committed (the high watermark passes them in order). A group with
    /// tens of thousands of offsets would otherwise make one batch too large to append,
    /// and its expiry and deletion would fail for good. An error stops at the batch it hit:
    /// those before it stand, as tombstones for offsets that go anyway.
    fn append_tombstones(
        &self,
        replica: &Partition,
        view: &mut View,
        mut changes: Vec<Change>,
    ) -> Result<AppendHandle> {
        let max = replica.log().config().max_message_bytes;
        loop {
            let fit = tombstones_fitting(&changes, max);
            let rest = changes.split_off(fit);
            let handle = self.append_to(replica, view, changes)?;
            if rest.is_empty() {
                return Ok(handle);
            }
            changes = rest;
        }
    }

    /// The committed offsets of `group` for `partitions` (all of the group's when `None`),
    /// from memory, in the order asked. A partition without a committed offset is left
    /// out: a broker's OffsetFetch answers it with offset -1, leader epoch -1 and empty
    /// metadata, as Kafka's does.
    pub fn fetch(
        &self,
        group: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> Result<Vec<((String, i32), Committed)>> {
        self.with_view(group, |_, view| {
            let Some(offsets) = view.group(group) else {
                return Ok(Vec::new());
            };
            Ok(match partitions {
                Some(wanted) => wanted
                    .iter()
                    .filter_map(|(t, p)| Some(((t.clone(), *p), offsets.get(t, *p)?)))
                    .collect(),
                None => sorted(&offsets),
            })
        })
    }

    /// Every group of loaded partition `index` with its committed offsets, groups by name
    /// and each group's offsets by topic and partition: what an operator's tool lists
    /// (`partlog offsets`). Unlike [`OffsetsStore::fetch`] it does not map groups to
    /// partitions, so it finds them also in a partition count other than the store's.
    pub fn groups(&self, index: u32) -> Result<Vec<GroupCommitted>> {
        self.with_partition_view(index, |_, view| {
            let mut groups: Vec<GroupCommitted> = view
                .groups()
                .map(|(group, offsets)| (group, sorted(&offsets)))
                .filter(|(_, offsets)| !offsets.is_empty())
                .collect();
            groups.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(groups)
        })
    }

    /// Writes tombstones for every committed offset of `group`; `None` when it has none
    /// but is known to be empty. [`Error::NonEmptyGroup`] while the group has members
    /// ([`OffsetsStore::set_group_active`]), as Kafka's DeleteGroups refuses;
    /// [`Error::GroupMembershipUnknown`] for a group the embedder has not mentioned,
    /// within `membership_grace_ms` after the store's view of its partition began to serve
    /// (it may be running); [`Error::GroupIdNotFound`] for one it has not mentioned and
    /// that has no offsets. Deleted, the group counts as empty from then.
    ///
    /// The membership lock is held until the tombstones are appended, as Kafka decides and
    /// writes in one event of the coordinator: a member joining meanwhile
    /// ([`OffsetsStore::set_group_active`]) waits, and does not join a group whose offsets
    /// then vanish.
    pub fn delete_group(&self, group: &str) -> Result<Option<AppendHandle>> {
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let known = match groups.get(group) {
            Some(Membership::Active(_)) => {
                return Err(Error::NonEmptyGroup {
                    group: group.to_string(),
                })
            }
            None => {
                self.check_membership_heard(group)?;
                false
            }
            Some(Membership::EmptySince(_)) => true,
        };
        let deleted = self.delete_committed(group, None, known)?;
        // Known to be empty from now: a group made again later ages its offsets from
        // their commits (all later), or from when it is said to be empty after it had
        // members; and a second deletion within a new coordinator's grace is not refused
        // as one of a group not heard of. Not before the tombstones are appended: a
        // delete that failed keeps the time the group became empty, from which its
        // offsets expire. [`OffsetsStore::expire`] forgets it once it has no offsets.
        let now = self.clock.now_ms();
        groups.insert(group.to_string(), Membership::EmptySince(now));
        Ok(deleted)
    }

    /// [`Error::GroupMembershipUnknown`] while the store has not heard of `group`, which
    /// the embedder has not mentioned, for `membership_grace_ms` after its view of the
    /// group's partition began to serve: Kafka's coordinator knows a running group from
    /// the group metadata its load replays, and refuses to delete its offsets
    /// (`NON_EMPTY_GROUP`); this store learns it only when its members come.
    ///
    /// The view is promoted first if its load is done, so that a view that begins to serve
    /// in the deletion's own call counts its grace from then; one that does not serve
    /// answers as the deletion would. (It cannot begin to serve between this check and
    /// the deletion: both run under the groups' lock, which a new load's `become_leader`
    /// takes, and a view that serves goes on serving until one does, or stops.)
    fn check_membership_heard(&self, group: &str) -> Result<()> {
        let index = self.partition_for(group);
        let partition = self.partition(index)?;
        let mut hosted = lock(&partition);
        let now = self.clock.now_ms();
        hosted.serving(index, now)?;
        if hosted.in_membership_grace(now, self.config.membership_grace_ms) {
            return Err(Error::GroupMembershipUnknown {
                group: group.to_string(),
                partition: index,
            });
        }
        Ok(())
    }

    /// Tombstones for the offsets `group` committed for `partitions` (all when `None`),
    /// also those whose commit is still on its way (appended, not yet committed: its
    /// tombstone comes after it in the log, and wins) and those an open transaction holds
    /// (as Kafka's `deleteAllOffsets` writes them: committed later, the offset would come
    /// back at the next load); `None` when it has none of them. [`Error::GroupIdNotFound`]
    /// when the group has no offsets at all and is not `known` (by its membership).
    /// Found and appended under one hold of the partition's lock, so no commit comes
    /// between.
    fn delete_committed(
        &self,
        group: &str,
        partitions: Option<&[(String, i32)]>,
        known: bool,
    ) -> Result<Option<AppendHandle>> {
        let wanted: Option<HashSet<&(String, i32)>> = partitions.map(|p| p.iter().collect());
        let wanted = |key: &(String, i32)| wanted.as_ref().is_none_or(|w| w.contains(key));
        self.with_view(group, |replica, view| {
            let mut keys: std::collections::BTreeSet<(String, i32)> = view
                .group(group)
                .map(|offsets| offsets.iter().map(|(key, _)| key).collect())
                .unwrap_or_default();
            let on_the_way = (view.pending.iter()).flat_map(|(_, changes)| changes);
            keys.extend(
                on_the_way
                    .filter(|(g, _, committed)| g == group && committed.is_some())
                    .map(|(_, key, _)| key.clone()),
            );
            keys.extend(
                (view.open_transactions_offsets())
                    .filter(|(g, _, _)| *g == group)
                    .map(|(_, t, p)| (t.to_string(), p)),
            );
            if keys.is_empty() && !known {
                return Err(Error::GroupIdNotFound {
                    group: group.to_string(),
                });
            }
            let changes: Vec<Change> = (keys.into_iter())
                .filter(|key| wanted(key))
                .map(|key| (group.to_string(), key, None))
                .collect();
            if changes.is_empty() {
                return Ok(None);
            }
            self.append_tombstones(replica, view, changes).map(Some)
        })
    }

    /// Kafka's OffsetDelete (KIP-496), for a consumer that will not read a partition
    /// again: writes tombstones for the offsets `group` committed for `partitions` (topic
    /// and partition; those it has none for are left out), except the partitions of topics
    /// the group's members subscribe to ([`OffsetsStore::set_group_subscription`]), which
    /// are refused one by one with [`Error::GroupSubscribedToTopic`] and kept, as Kafka
    /// answers each partition. [`Error::NonEmptyGroup`], deleting nothing, for a group
    /// with members whose subscription is unknown; [`Error::GroupMembershipUnknown`],
    /// deleting nothing, within the grace as [`OffsetsStore::delete_group`] says;
    /// [`Error::GroupIdNotFound`], as there, for a group the store knows nothing of.
    pub fn delete_offsets(
        &self,
        group: &str,
        partitions: &[(String, i32)],
    ) -> Result<OffsetDeletion> {
        // Held until the tombstones are appended (see `delete_group`): a subscription that
        // changes meanwhile waits.
        let groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let known;
        let (deleted, refused): (Vec<_>, Vec<_>) = {
            let subscribed = match groups.get(group) {
                None => {
                    self.check_membership_heard(group)?;
                    None
                }
                Some(Membership::EmptySince(_)) => None,
                Some(Membership::Active(None)) => {
                    return Err(Error::NonEmptyGroup {
                        group: group.to_string(),
                    })
                }
                Some(Membership::Active(Some(topics))) => Some(topics),
            };
            known = groups.contains_key(group);
            (partitions.iter().cloned())
                .partition(|(topic, _)| !subscribed.is_some_and(|s| s.contains(topic)))
        };
        let refused = (refused.into_iter())
            .map(|(topic, partition)| {
                let error = Error::GroupSubscribedToTopic {
                    group: group.to_string(),
                    topic: topic.clone(),
                };
                ((topic, partition), error)
            })
            .collect();
        let handle = self.delete_committed(group, Some(&deleted), known)?;
        drop(groups);
        Ok(OffsetDeletion { handle, refused })
    }

    /// Tells the store whether `group` has members (the embedder's group coordinator knows):
    /// offsets of groups without members expire after `retention_ms`. A group said to be
    /// without members counts as empty from the first time it is said so after it had
    /// members (or ever): saying it again does not restart the clock. A group said to have
    /// members keeps the subscription [`OffsetsStore::set_group_subscription`] gave it, if
    /// any, until it is said to be empty.
    pub fn set_group_active(&self, group: &str, active: bool) {
        let now = self.clock.now_ms();
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let unchanged = match groups.get(group) {
            Some(Membership::Active(_)) => active,
            Some(Membership::EmptySince(_)) => !active,
            None => false,
        };
        if !unchanged {
            let next = if active {
                Membership::Active(None)
            } else {
                Membership::EmptySince(now)
            };
            groups.insert(group.to_string(), next);
        }
    }

    /// Tells the store that `group` has members, and that together they subscribe to
    /// `topics` (a stable consumer group, whose coordinator knows its members'
    /// subscriptions): the offsets it committed for other topics expire `retention_ms`
    /// after their commit, as in Kafka since KIP-496, instead of staying for as long as
    /// the group runs. A group that stopped consuming a topic does not keep its offsets
    /// forever.
    pub fn set_group_subscription<T: AsRef<str>>(&self, group: &str, topics: &[T]) {
        let topics = topics.iter().map(|t| t.as_ref().to_string()).collect();
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        groups.insert(group.to_string(), Membership::Active(Some(topics)));
    }

    /// How many groups the store knows the membership of (with members, or empty since a
    /// time): Kafka's count of groups. [`OffsetsStore::expire`] forgets an empty group
    /// once it has no offsets left, as Kafka's coordinator drops it.
    pub fn known_groups(&self) -> usize {
        self.groups.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Records of types the store does not model, seen by the loads of partition `index`.
    pub fn skipped_records(&self, index: u32) -> u64 {
        let Ok(partition) = self.partition(index) else {
            return 0;
        };
        let hosted = lock(&partition);
        match &hosted.state {
            ViewState::Loaded(view) | ViewState::Loading { view, .. } => view.skipped,
            _ => 0,
        }
    }
}

/// Every committed offset of a group, by topic and partition.
fn sorted(offsets: &view::GroupOffsets<'_>) -> Vec<((String, i32), Committed)> {
    let mut all: Vec<_> = offsets.iter().collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// One batch of `changes` in Kafka's record format, timestamped `now`: an offset commit
/// value for each offset, a tombstone for each removal.
fn changes_batch(changes: &[Change], now: i64) -> Result<Vec<u8>> {
    let mut builder = BatchBuilder::new();
    let (mut key, mut value) = (Vec::new(), Vec::new());
    for (group, (topic, partition), committed) in changes {
        key.clear();
        codec::encode_offset_commit_key(group, topic, *partition, &mut key);
        let value = committed.as_ref().map(|c| {
            value.clear();
            let v = OffsetCommitValue {
                offset: c.offset,
                leader_epoch: c.leader_epoch,
                metadata: c.metadata.clone(),
                commit_timestamp: c.commit_timestamp,
                expire_timestamp: -1,
            };
            codec::encode_offset_commit_value(&v, &mut value);
            &value[..]
        });
        builder.append(now, Some(&key), value, &[]);
    }
    Ok(builder.build()?)
}

/// How many of `tombstones`, from the first, fit one batch of at most `max` bytes (at
/// least one: a batch too large for even one says so when appended). A record costs its
/// key and at most 16 bytes more (length, attributes, deltas, key length and the null
/// value's, no headers: varints of at most 5 bytes but for the key's length, at most 3).
fn tombstones_fitting(tombstones: &[Change], max: usize) -> usize {
    let mut size = crate::record::HEADER_LEN;
    for (i, (group, (topic, _), _)) in tombstones.iter().enumerate() {
        // Version, two int16-length strings, the partition.
        let key = 2 + 2 + group.len() + 2 + topic.len() + 4;
        size += key + 16;
        if size > max && i > 0 {
            return i;
        }
    }
    tombstones.len()
}

/// Names and metadata are int16-length strings in the format.
fn check_len(what: &str, s: &str) -> Result<()> {
    if s.len() > i16::MAX as usize {
        return Err(Error::InvalidRequest(format!(
            "{what} of {} bytes exceeds the format's {} bytes",
            s.len(),
            i16::MAX
        )));
    }
    Ok(())
}
