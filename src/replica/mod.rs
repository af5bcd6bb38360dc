//! One partition replica in a replicated set: the leader takes appends with `acks` 0, 1 or
//! all and serves followers' fetches, moving the high watermark (HW) and the in-sync
//! replica set (ISR); a follower builds fetches and applies their responses, truncating
//! where its log diverged from the leader's. Kafka's `Partition` and fetcher semantics.
//!
//! Transport-agnostic: the embedding broker carries requests and responses between
//! replicas (tests carry them in-process), owns the controller (leader elections, ISR
//! changes: see [`Partition::isr_proposal`]) and drives time through [`Partition::tick`].

mod completion;
mod follower;
mod leader;
mod manager;
mod scrub;
pub(crate) mod spin;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::log::{Log, UNDEFINED_EPOCH};
use crate::segment::FileSlice;

pub use completion::AppendHandle;
pub use manager::{ReplicaManager, DEFAULT_HW_CHECKPOINT_INTERVAL_MS};
pub use scrub::ScrubOutcome;

/// Kafka's `replica.lag.time.max.ms` default.
pub const DEFAULT_REPLICA_LAG_TIME_MAX_MS: i64 = 30_000;

/// How a follower finds where its log diverged from the leader's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TruncationMode {
    /// By leader epochs (KIP-101, KIP-279): Kafka's rule, and the default.
    #[default]
    LeaderEpoch,
    /// To the high watermark on becoming follower (Kafka before KIP-101). Kept to show,
    /// in tests, the losses the leader-epoch mode prevents.
    HighWatermark,
}

/// Settings of one replica.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// This broker's id.
    pub broker_id: i32,
    /// Kafka's `min.insync.replicas` (default 1).
    pub min_insync_replicas: usize,
    /// A follower not caught up for this long leaves the ISR.
    pub replica_lag_time_max_ms: i64,
    pub truncation: TruncationMode,
}

impl ReplicaConfig {
    pub fn new(broker_id: i32) -> ReplicaConfig {
        ReplicaConfig {
            broker_id,
            min_insync_replicas: 1,
            replica_lag_time_max_ms: DEFAULT_REPLICA_LAG_TIME_MAX_MS,
            truncation: TruncationMode::default(),
        }
    }
}

/// A producer's `acks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// 0: no answer awaited.
    None,
    /// 1: written by the leader.
    Leader,
    /// -1 (all): replicated to the ISR, with at least `min.insync.replicas` in it.
    All,
}

impl TryFrom<i16> for Acks {
    type Error = Error;

    fn try_from(acks: i16) -> Result<Acks> {
        match acks {
            0 => Ok(Acks::None),
            1 => Ok(Acks::Leader),
            -1 => Ok(Acks::All),
            other => Err(Error::InvalidRequiredAcks(other)),
        }
    }
}

/// A follower's fetch, as it sends it to the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchRequest {
    pub replica_id: i32,
    pub leader_epoch: i32,
    pub fetch_offset: i64,
    /// The epoch of the follower's last batch ([`UNDEFINED_EPOCH`] when it has none).
    pub last_fetched_epoch: i32,
    pub max_bytes: u64,
    /// The follower's log start (KIP-107), as a crash cannot take it back
    /// ([`Log::durable_log_start_offset`]): the leader's low watermark, the least log
    /// start of its live replicas, comes from these.
    pub log_start_offset: i64,
}

/// Where the leader's log and the follower's part: the leader's end offset for the
/// follower's last epoch (or the largest epoch below it that the leader knows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DivergingEpoch {
    pub epoch: i32,
    pub end_offset: i64,
}

/// The leader's answer to a follower's fetch.
#[derive(Debug, Clone)]
pub struct FetchResponse {
    /// The request's fetch offset, last fetched epoch and leader epoch: a follower applies
    /// only the answer to the fetch it would send now (a delayed, duplicated or reordered
    /// answer is dropped). The offset alone does not tell: a log cut back and fetched up to
    /// the same offset again asks from there with another last epoch.
    pub fetch_offset: i64,
    pub last_fetched_epoch: i32,
    pub leader_epoch: i32,
    /// Whole batches from the fetch offset (zero-copy); `None` when there is nothing new or
    /// the logs diverged.
    pub records: Option<FileSlice>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub diverging: Option<DivergingEpoch>,
}

/// An ISR change a leader asks its controller for (Kafka's AlterPartition request), from
/// [`Partition::isr_proposal`].
///
/// The ISR's version counts the controller's changes to it within one leadership: 0 is
/// the ISR [`Partition::become_leader`] was given, and each change the controller makes
/// (one it was asked for, or its own, as when a broker's session ends) is the next. The
/// controller takes a proposal only while its ISR is still at the proposal's
/// `isr_version`, and answers [`Partition::confirm_isr`] with the ISR and version it
/// holds then, taken or not (Kafka's partition epoch, KIP-497).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    pub leader_epoch: i32,
    /// The version of the ISR the change starts from.
    pub isr_version: i32,
    pub isr: Vec<i32>,
}

#[derive(Debug, Clone, Copy)]
struct FollowerState {
    /// The follower's log end offset as its last fetch said; -1 before any.
    leo: i64,
    /// When it was last caught up; [`NEVER_CAUGHT_UP`] when it is not until a fetch
    /// shows it is.
    last_caught_up_ms: i64,
    /// The leader's LEO and the time at the follower's previous fetch.
    previous_fetch: (i64, i64),
    /// The follower's log start as its last fetch said; -1 before any.
    log_start_offset: i64,
}

/// A follower's last caught-up time when it is not caught up, whatever the lag time (a
/// time that far back, `now - lag - 1`, does not fit an `i64` for the longest lags).
const NEVER_CAUGHT_UP: i64 = i64::MIN;

impl FollowerState {
    /// Kafka's `isCaughtUp`: at the leader's end `end`, however long ago it fetched (an
    /// idle partition does not shrink its ISR for a stalled fetch; once appends move the
    /// end, the lag decides), or caught up within `lag` ms of `now`.
    fn caught_up(&self, end: i64, now: i64, lag: i64) -> bool {
        self.leo == end
            || (self.last_caught_up_ms != NEVER_CAUGHT_UP
                && now.saturating_sub(self.last_caught_up_ms) <= lag)
    }
}

#[derive(Debug)]
struct Pending {
    handle: AppendHandle,
    deadline_ms: i64,
}

/// A replica dropped with appends pending (its broker stopped) fails them, as the producer
/// sees its connection close. Completed appends are not changed by this.
impl Drop for Pending {
    fn drop(&mut self) {
        self.handle.complete(Err(Error::NotLeaderOrFollower));
    }
}

#[derive(Debug)]
struct LeaderState {
    replicas: Vec<i32>,
    isr: Vec<i32>,
    /// The version of `isr` (see [`IsrProposal`]).
    isr_version: i32,
    /// A change proposed to the embedder and not yet answered. It stands until an answer
    /// comes: the controller may have taken it, so its members count for the HW until the
    /// leader learns what the controller holds.
    proposed_isr: Option<Vec<i32>>,
    followers: BTreeMap<i32, FollowerState>,
    /// The log end when this leader's epoch began: a follower joins the ISR only once it
    /// has reached it (KAFKA-7128).
    epoch_start_offset: i64,
    pending: Vec<Pending>,
}

#[derive(Debug)]
enum Role {
    Follower,
    Leader(LeaderState),
}

#[derive(Debug)]
struct State {
    role: Role,
    leader_epoch: i32,
    /// The leader as the controller last said (this broker when it leads).
    leader_id: Option<i32>,
    high_watermark: i64,
    /// The leader epoch of the last fetch answer whose HW a follower took
    /// (`UNDEFINED_EPOCH` before any): within it, the HW only goes forward.
    hw_answered_in: i32,
    /// Where a scrub found committed data damaged while this replica led: cut there on
    /// becoming a follower (see [`Partition::scrub`]).
    corrupt_from: Option<i64>,
    /// The HW before this replica cut committed records of its own accord (a repair), while
    /// its log end stays below it: the records it lacks until it fetches them back (see
    /// [`Partition::lacks_committed_records`]).
    repaired_below: Option<i64>,
    /// Fetches waiting in [`Partition::fetch_wait`] for data to arrive.
    fetch_waiters: usize,
    /// A follower's buffer for the fetched batches, kept across fetches.
    scratch: Vec<u8>,
}

/// One replica of one partition. Share it as `Arc<Partition>`; every method takes `&self`.
#[derive(Debug)]
pub struct Partition {
    log: Arc<Log>,
    config: ReplicaConfig,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    /// Signalled, with `state` locked, when an append reaches the log and a fetch waits.
    data_arrived: Condvar,
    /// Held shared by leader appends while they write (without `state`, so that follower
    /// fetches and consumers never wait for a write) and by follower fetches while they
    /// read, and exclusively by role changes: no append lands in a log a role change is
    /// cutting, and no fetch reads a leader's log while it steps down (after which its
    /// fetcher may cut it). Taken before `state`.
    role_change: RwLock<()>,
    /// Where this replica's leadership began (its log end when it became leader), or
    /// `i64::MIN` on a follower: what ListOffsets compares with the high watermark, read
    /// without `state` (consumers never wait for the replica's state).
    epoch_start_offset: AtomicI64,
}

impl Partition {
    /// A replica of `log`, a follower of no one until told its role. `high_watermark`
    /// comes from the replication checkpoint (clamped to the log).
    pub fn new(
        log: Arc<Log>,
        config: ReplicaConfig,
        clock: Arc<dyn Clock>,
        high_watermark: i64,
    ) -> Partition {
        let hw = high_watermark.clamp(log.log_start_offset(), log.log_end_offset());
        log.set_high_watermark(hw);
        Partition {
            log,
            config,
            clock,
            state: Mutex::new(State {
                role: Role::Follower,
                leader_epoch: UNDEFINED_EPOCH,
                leader_id: None,
                high_watermark: hw,
                hw_answered_in: UNDEFINED_EPOCH,
                corrupt_from: None,
                repaired_below: None,
                fetch_waiters: 0,
                scratch: Vec::new(),
            }),
            data_arrived: Condvar::new(),
            role_change: RwLock::new(()),
            epoch_start_offset: AtomicI64::new(i64::MIN),
        }
    }

    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The HW as published to the log, under the state lock at each change: consumers'
    /// reads, ListOffsets, retention and DeleteRecords load it without the state lock, so
    /// they never wait for a fetch's or an append's bookkeeping.
    pub fn high_watermark(&self) -> i64 {
        self.log.high_watermark()
    }

    pub fn leader_epoch(&self) -> i32 {
        self.state().leader_epoch
    }

    /// The replica a follower fetches from (itself on the leader); `None` before a role.
    pub fn leader_id(&self) -> Option<i32> {
        self.state().leader_id
    }

    pub fn is_leader(&self) -> bool {
        matches!(self.state().role, Role::Leader(_))
    }

    /// The ISR as the leader counts it (confirmed), `None` on a follower.
    pub fn isr(&self) -> Option<Vec<i32>> {
        match &self.state().role {
            Role::Leader(l) => Some(l.isr.clone()),
            Role::Follower => None,
        }
    }

    /// The version of the ISR the leader holds (see [`IsrProposal`]), `None` on a
    /// follower.
    pub fn isr_version(&self) -> Option<i32> {
        match &self.state().role {
            Role::Leader(l) => Some(l.isr_version),
            Role::Follower => None,
        }
    }

    /// Sets the HW and publishes it to the log, for readers and for the cleaner, which
    /// stays below it. Every change of the HW goes through here, under the state lock.
    fn set_high_watermark(&self, state: &mut State, hw: i64) {
        state.high_watermark = hw;
        self.log.set_high_watermark(hw);
    }

    /// Cuts the log at `offset` of this replica's own accord, not at a leader's word (a
    /// scrub's repair, or the cut on becoming a follower): when that cuts committed
    /// records (only a repair does), the replica lacks them until it has fetched them
    /// back, and may not lead meanwhile (see [`Partition::become_leader`]).
    fn cut_for_repair(&self, state: &mut State, offset: i64) -> Result<()> {
        let hw = state.high_watermark;
        let cut = self.log.truncate_to(offset);
        // Even a cut that failed may have brought the log end down (see
        // [`Partition::after_cut`]): the guard goes by the log end as it is.
        if self.log.log_end_offset() < hw {
            state.repaired_below = state.repaired_below.max(Some(hw));
        }
        self.after_cut(state, cut).map(drop)
    }

    /// The offset this replica's log must reach again before it may lead, while a repair
    /// (a follower's scrub, or the cut a leader that found its data damaged makes when it
    /// follows) has cut records below the HW it knew and it has not fetched them back.
    /// Until its leader hears of the cut and the controller takes it out of the ISR, it
    /// still looks in sync: a controller should elect another ISR member, and
    /// `become_leader` refuses it one that names others (see there).
    pub fn lacks_committed_records(&self) -> Option<i64> {
        let state = self.state();
        self.still_lacking(&state)
    }

    fn still_lacking(&self, state: &State) -> Option<i64> {
        state
            .repaired_below
            .filter(|&hw| self.log.log_end_offset() < hw)
    }

    /// After a truncation: the HW stays within the log, never above its end nor below its
    /// start (invariant 2). A follower that started over at the leader's log start has
    /// its HW there: everything below it is gone, and the leader moved its log start no
    /// further than its HW. Kafka's log clamps every HW it is given the same way.
    fn cap_high_watermark(&self, state: &mut State) {
        let hw = state
            .high_watermark
            .max(self.log.log_start_offset())
            .min(self.log.log_end_offset());
        self.set_high_watermark(state, hw);
    }

    /// Caps the HW after a cut of the log, whether `cut` succeeded or not, and returns its
    /// outcome: a truncation lowers the log end first, then cuts the files and the
    /// checkpoints, and a failure there returns an error with the log end already lowered.
    fn after_cut<T>(&self, state: &mut State, cut: Result<T>) -> Result<T> {
        self.cap_high_watermark(state);
        cut
    }

    /// Refuses an epoch below the current one; accepts it or a newer one.
    fn check_new_epoch(state: &State, epoch: i32) -> Result<()> {
        if epoch < state.leader_epoch {
            return Err(Error::FencedLeaderEpoch {
                epoch,
                latest: state.leader_epoch,
            });
        }
        Ok(())
    }

    /// Refuses a request whose epoch is not the current one.
    fn check_epoch(state: &State, epoch: i32) -> Result<()> {
        Self::check_new_epoch(state, epoch)?;
        if epoch > state.leader_epoch {
            return Err(Error::UnknownLeaderEpoch {
                epoch,
                current: state.leader_epoch,
            });
        }
        Ok(())
    }

    /// Becomes leader of `epoch` with `replicas` (this broker among them) and `isr`. The
    /// epoch's start is recorded in the log's epoch cache before any append. Said again
    /// while leader of `epoch` with the same replicas, it changes nothing (not the ISR,
    /// its version, the followers' progress nor the appends waiting), as Kafka's
    /// `makeLeader` in the same epoch keeps them. Leader again in a new epoch, it keeps
    /// the appends waiting, which complete once the new ISR holds them.
    /// [`Error::InvalidRequest`], changing nothing, unless both lists hold this broker,
    /// the ISR lies within the replicas, and neither names a broker twice.
    ///
    /// [`Error::LacksCommittedRecords`], changing nothing, while a repair has cut records
    /// below the HW this replica knew (see [`Partition::lacks_committed_records`]) and the
    /// ISR names other brokers, which may hold them: elected, it would make every
    /// follower cut acknowledged records away to match it. An ISR of this broker alone
    /// (an unclean election's, or the last replica standing) is taken.
    pub fn become_leader(&self, epoch: i32, replicas: Vec<i32>, isr: Vec<i32>) -> Result<()> {
        self.check_assignment("replicas", &replicas, &replicas)?;
        self.check_assignment("ISR", &isr, &replicas)?;
        let _exclusive = self.role_change.write().unwrap_or_else(|e| e.into_inner());
        let mut state = self.state();
        Self::check_new_epoch(&state, epoch)?;
        if epoch == state.leader_epoch {
            let Role::Leader(leader) = &state.role else {
                // A new leader comes with a new epoch: taking over within one, this
                // replica would write its own records at offsets the epoch's leader may
                // have written others at, and no follower could tell them apart.
                return Err(Error::InvalidRequest(format!(
                    "epoch {epoch} is led by {}: a new leader needs a new epoch",
                    leader_name(state.leader_id)
                )));
            };
            // The decision that made this replica leader, again (the controller's message
            // came twice): nothing changes. Its ISR may have changed since, through
            // `confirm_isr`, whose versions order such changes; the appends waiting go on
            // waiting, and the followers' progress stands. New replicas come with a new
            // epoch.
            if leader.replicas == replicas {
                return Ok(());
            }
            return Err(Error::InvalidRequest(format!(
                "already leader of epoch {epoch} with replicas {:?}: other replicas \
                 need a new epoch",
                leader.replicas
            )));
        }
        let me = self.config.broker_id;
        if let Some(high_watermark) = self.still_lacking(&state) {
            if isr.iter().any(|&r| r != me) {
                return Err(Error::LacksCommittedRecords {
                    log_end_offset: self.log.log_end_offset(),
                    high_watermark,
                });
            }
        }
        self.log.assign_leader_epoch(epoch)?;
        // Only once nothing can refuse the leadership: a refusal changes nothing, and
        // keeps the guard.
        state.repaired_below = None;
        let now = self.clock.now_ms();
        let leo = self.log.log_end_offset();
        let followers = replicas
            .iter()
            .filter(|&&r| r != me)
            .map(|&r| {
                // As Kafka's `resetReplicaState`: a follower outside the ISR is not caught
                // up until a fetch says so, and so holds no HW back before it.
                let last_caught_up_ms = if isr.contains(&r) {
                    now
                } else {
                    NEVER_CAUGHT_UP
                };
                let state = FollowerState {
                    leo: -1,
                    last_caught_up_ms,
                    previous_fetch: (-1, now),
                    log_start_offset: -1,
                };
                (r, state)
            })
            .collect();
        // A leader that stays leader in a new epoch keeps its appends waiting, as Kafka's
        // delayed produces stay in their purgatory: their records stay in its log and are
        // committed once the new ISR holds them. Failing them told producers to retry
        // records that were still committed, so they were written twice.
        let pending = match &mut state.role {
            Role::Leader(leader) => std::mem::take(&mut leader.pending),
            Role::Follower => Vec::new(),
        };
        state.role = Role::Leader(LeaderState {
            replicas,
            isr,
            isr_version: 0,
            proposed_isr: None,
            followers,
            epoch_start_offset: leo,
            pending,
        });
        state.leader_epoch = epoch;
        state.leader_id = Some(self.config.broker_id);
        // As Kafka's `makeLeader` does: an ISR of the leader alone (at least min ISR) has
        // everything up to its log end, and no append or fetch may come to move the HW.
        self.advance_high_watermark(&mut state);
        // After the HW it may have moved: ListOffsets reads this first, then the HW, and
        // must not see a new epoch's start with the HW from before it (a lone leader's
        // epoch start is its HW at once).
        self.epoch_start_offset.store(leo, Ordering::Release);
        // Fetches held in the old epoch answer now, and their followers learn of the new
        // one, rather than when their wait runs out.
        drop(state);
        self.data_arrived.notify_all();
        Ok(())
    }

    /// Becomes a follower of `leader_id` in `epoch`. Pending `acks=all` appends fail with
    /// [`Error::NotLeaderOrFollower`]. In [`TruncationMode::HighWatermark`] the log is cut
    /// to the high watermark here, and after a scrub found damage while this replica led,
    /// it is cut where the damage starts. An epoch it led without appending (one that
    /// starts at its log end) leaves its leader-epoch cache.
    pub fn become_follower(&self, epoch: i32, leader_id: i32) -> Result<()> {
        let _exclusive = self.role_change.write().unwrap_or_else(|e| e.into_inner());
        let mut state = self.state();
        Self::check_new_epoch(&state, epoch)?;
        if epoch == state.leader_epoch {
            // The same decision again (a message delivered twice) changes nothing; any
            // other within the epoch is refused, as in `become_leader`: a leader steps
            // down, and a follower changes leaders, only with a new epoch.
            if matches!(state.role, Role::Follower) && state.leader_id == Some(leader_id) {
                return Ok(());
            }
            return Err(Error::InvalidRequest(format!(
                "epoch {epoch} is led by {}, not broker {leader_id}: a new leader needs a \
                 new epoch",
                leader_name(state.leader_id)
            )));
        }
        Self::fail_pending(&mut state.role, Error::NotLeaderOrFollower);
        state.role = Role::Follower;
        self.epoch_start_offset.store(i64::MIN, Ordering::Release);
        state.leader_epoch = epoch;
        state.leader_id = Some(leader_id);
        // Held fetches answer now: this replica stepped down.
        self.data_arrived.notify_all();
        // A scrub's bad batch that retention or DeleteRecords deleted since is no cut: one
        // below the log start would empty the whole log (see `Log::truncate_to`).
        let start = self.log.log_start_offset();
        let mut cut = state.corrupt_from.take().filter(|&c| c >= start);
        if self.config.truncation == TruncationMode::HighWatermark {
            cut = Some(cut.map_or(state.high_watermark, |c| c.min(state.high_watermark)));
        }
        // Without a cut, still as far as the log end: an epoch this replica led without
        // appending starts there and would stay in its cache. Its fetches carry its last
        // batch's epoch (see `last_fetched_epoch`), so no leader answers a divergence that
        // drops it, as Kafka's follower (whose fetches carry its cache's latest epoch) is
        // answered; the first batch it then copies, of an earlier epoch, would drop that
        // earlier epoch's true start with it.
        let end = self.log.log_end_offset();
        let led_without_appends = || {
            let entries = self.log.epoch_entries();
            entries.last().is_some_and(|e| e.start_offset >= end)
        };
        if let Some(offset) = cut.or_else(|| led_without_appends().then_some(end)) {
            self.cut_for_repair(&mut state, offset)?;
        }
        Ok(())
    }

    fn fail_pending(role: &mut Role, error: Error) {
        if let Role::Leader(leader) = role {
            for pending in leader.pending.drain(..) {
                pending.handle.complete(Err(error.duplicate()));
            }
        }
    }

    /// Runs retention, never past the HW (Kafka's rule: a segment goes only once every
    /// record in it is below the high watermark). The log reads the HW this replica gives
    /// it, under its writer's lock (see [`Log::delete_old_segments_below`]).
    pub fn delete_old_segments(&self) -> Result<crate::log::RetentionOutcome> {
        self.log.delete_old_segments()
    }

    /// Moves the log start (Kafka's DeleteRecords), which may not pass the HW. As Kafka's
    /// `deleteRecordsOnLeader`: -1 means the HW, any other offset below 0 (or past the HW)
    /// is [`Error::OffsetOutOfRange`], and a log whose cleanup policy does not delete is
    /// [`Error::PolicyViolation`] (its retention would remove the segments below). Only
    /// the leader takes it ([`Error::NotLeaderOrFollower`] otherwise: a follower moves its
    /// log start as its leader's moves), and it holds its role meanwhile, as Kafka's
    /// `deleteRecordsOnLeader` holds the partition's leader lock: a role change waits.
    pub fn advance_log_start_offset(&self, offset: i64) -> Result<()> {
        let _shared = self.role_change.read().unwrap_or_else(|e| e.into_inner());
        if !self.is_leader() {
            return Err(Error::NotLeaderOrFollower);
        }
        let hw = self.high_watermark();
        let offset = if offset == -1 { hw } else { offset };
        if !self.log.config().cleanup_policy.deletes() {
            return Err(Error::PolicyViolation(format!(
                "records of a log whose cleanup policy is {:?} cannot be deleted",
                self.log.config().cleanup_policy
            )));
        }
        if !(0..=hw).contains(&offset) {
            return Err(Error::OffsetOutOfRange {
                offset,
                log_start_offset: self.log.log_start_offset(),
                log_end_offset: hw,
            });
        }
        self.log.advance_log_start_offset(offset)
    }

    /// ListOffsets for a consumer: the first offset at or after `timestamp` among committed
    /// records; "latest" ([`crate::log::LATEST_TIMESTAMP`]) is the high watermark, and the
    /// record with the largest timestamp ([`crate::log::MAX_TIMESTAMP`]) is `None` while it
    /// lies above it (see [`crate::log::Log::offset_for_timestamp_up_to`]).
    ///
    /// A leader whose high watermark still lags the start of its epoch (just elected, its
    /// followers not yet fetched) answers "latest", and a lookup whose answer lies at or
    /// past the high watermark, with [`Error::OffsetNotAvailable`], as Kafka does (KIP-207):
    /// its high watermark is not yet the partition's, and an answer from it would send a
    /// consumer's end offset back.
    pub fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<crate::log::TimestampOffset>> {
        use crate::log::{EARLIEST_LOCAL_TIMESTAMP, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};
        // Read without `state`: a consumer never waits for the replica's state.
        let epoch_start = Some(self.epoch_start_offset.load(Ordering::Acquire));
        let hw = self.high_watermark();
        let lagging =
            epoch_start
                .filter(|&start| start > hw)
                .map(|start| Error::OffsetNotAvailable {
                    high_watermark: hw,
                    epoch_start_offset: start,
                });
        match (timestamp, lagging) {
            (EARLIEST_TIMESTAMP | EARLIEST_LOCAL_TIMESTAMP, _) | (_, None) => {
                self.log.offset_for_timestamp_up_to(timestamp, Some(hw))
            }
            (LATEST_TIMESTAMP, Some(lagging)) => Err(lagging),
            // Kafka's rule: an answer at or past the HW, or none, is not known yet. Found
            // below the HW or not at all there: the same as Kafka's search of the whole
            // log, without reading past the HW, where a cut may be under way.
            (_, Some(lagging)) => match self.log.offset_for_timestamp_up_to(timestamp, Some(hw))? {
                Some(found) => Ok(Some(found)),
                None => Err(lagging),
            },
        }
    }

    /// Reads for a consumer: only up to the HW, what Kafka serves a consumer with its
    /// default isolation (`read_uncommitted`). A `read_committed` consumer stops at the
    /// last stable offset and gets the aborted transactions of the range: partlog keeps
    /// no producer state, so a broker that serves transactional producers keeps those
    /// itself.
    pub fn read_committed(&self, from: i64, max_bytes: u64) -> Result<Option<FileSlice>> {
        let hw = self.high_watermark();
        self.log.read(from, max_bytes, Some(hw))
    }
}

/// A leader as an error message names it.
fn leader_name(leader: Option<i32>) -> String {
    leader.map_or("no broker".to_string(), |id| format!("broker {id}"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::{Acks, Partition, ReplicaConfig};
    use crate::io::sim::SimStorage;
    use crate::log::{Log, LogOpenOptions};
    use crate::record::BatchBuilder;
    use crate::{LogConfig, ManualClock};

    /// A consumer's read, ListOffsets and the HW itself need no lock of the replica's:
    /// they go on while a fetch or an append holds its state (they used to queue behind
    /// it, a fetch completing `acks=all` appends meanwhile).
    #[test]
    fn consumers_read_while_the_replica_state_is_held() {
        let sim = SimStorage::new(1);
        let clock = Arc::new(ManualClock::new(1_000));
        let options = LogOpenOptions {
            config: LogConfig {
                index_bytes_max: 4096,
                ..LogConfig::default()
            },
            clock: clock.clone(),
            ..LogOpenOptions::new(sim.storage(), "/data/t-0")
        };
        let log = Arc::new(Log::open(options).expect("open").0);
        let p = Arc::new(Partition::new(log, ReplicaConfig::new(0), clock, 0));
        p.become_leader(1, vec![0], vec![0]).expect("lead");
        let mut batch = BatchBuilder::new()
            .append(1_000, None, Some(b"v"), &[])
            .build()
            .expect("batch");
        p.append(&mut batch, Acks::All, 30_000).expect("append");
        let held = p.state();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = {
            let p = p.clone();
            std::thread::spawn(move || {
                let read = p.read_committed(0, 1 << 20).map(|s| s.map(|s| s.len()));
                let listed = p.offset_for_timestamp(0).map(|t| t.map(|t| t.offset));
                tx.send((p.high_watermark(), read, listed)).expect("send");
            })
        };
        let answer = rx.recv_timeout(Duration::from_secs(30));
        drop(held);
        reader.join().expect("reader");
        let (hw, read, listed) = answer.expect("the reads waited for the replica's state");
        assert_eq!(hw, 1);
        assert!(read.expect("read").is_some_and(|len| len > 0));
        assert_eq!(listed.expect("list"), Some(0));
    }

    /// A follower outside the ISR that never fetched is not caught up, whatever the lag
    /// time: with the longest, its "long ago" (`now - lag - 1`) saturated, and the time
    /// since then came out within the lag, so that it held the HW at -1 for good.
    #[test]
    fn a_follower_outside_the_isr_holds_no_hw_back_under_the_longest_lag() {
        let sim = SimStorage::new(2);
        let clock = Arc::new(ManualClock::new(1_000));
        let options = LogOpenOptions {
            clock: clock.clone(),
            ..LogOpenOptions::new(sim.storage(), "/data/t-0")
        };
        let log = Arc::new(Log::open(options).expect("open").0);
        let config = ReplicaConfig {
            replica_lag_time_max_ms: i64::MAX,
            ..ReplicaConfig::new(0)
        };
        let p = Partition::new(log, config, clock, 0);
        p.become_leader(1, vec![0, 1], vec![0]).expect("lead");
        let mut batch = BatchBuilder::new()
            .append(1_000, None, Some(b"v"), &[])
            .build()
            .expect("batch");
        p.append(&mut batch, Acks::Leader, 30_000).expect("append");
        assert_eq!(p.high_watermark(), 1);
    }
}
