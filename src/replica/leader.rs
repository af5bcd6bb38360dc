//! A replica's leader side: appends and their `acks`, the followers' fetches, the high
//! watermark they move, the ISR changes proposed to the embedder, and the low watermark.

use std::time::{Duration, Instant};

use super::{
    spin, Acks, AppendHandle, DivergingEpoch, FetchRequest, FetchResponse, IsrProposal,
    LeaderState, Partition, Pending, Role, State, NEVER_CAUGHT_UP,
};
use crate::error::{Error, Result};
use crate::log::{AppendOrigin, UNDEFINED_EPOCH};

impl Partition {
    fn min_isr(&self, leader: &LeaderState) -> usize {
        self.config
            .min_insync_replicas
            .min(leader.replicas.len())
            .max(1)
    }

    /// Appends a producer's batches as leader ([`Log::append_as_leader`]: a client's,
    /// checked as Kafka checks them). `acks=all` needs at least `min.insync.replicas` in
    /// the ISR, or nothing is written; its handle completes when the high watermark passes
    /// the append, or fails after `timeout_ms`.
    ///
    /// [`Log::append_as_leader`]: crate::log::Log::append_as_leader
    pub fn append(&self, batches: &mut [u8], acks: Acks, timeout_ms: i64) -> Result<AppendHandle> {
        self.append_from(AppendOrigin::Client, batches, acks, timeout_ms)
    }

    /// [`Partition::append`] for a coordinator of the embedding broker
    /// ([`AppendOrigin::Coordinator`]): a transaction coordinator's markers, a group
    /// coordinator's commits.
    pub fn append_as_coordinator(
        &self,
        batches: &mut [u8],
        acks: Acks,
        timeout_ms: i64,
    ) -> Result<AppendHandle> {
        self.append_from(AppendOrigin::Coordinator, batches, acks, timeout_ms)
    }

    fn append_from(
        &self,
        origin: AppendOrigin,
        batches: &mut [u8],
        acks: Acks,
        timeout_ms: i64,
    ) -> Result<AppendHandle> {
        let _shared = self.role_change.read().unwrap_or_else(|e| e.into_inner());
        let epoch = {
            let state = self.state();
            let Role::Leader(leader) = &state.role else {
                return Err(Error::NotLeaderOrFollower);
            };
            let required = self.min_isr(leader);
            if acks == Acks::All && leader.isr.len() < required {
                return Err(Error::NotEnoughReplicas {
                    isr: leader.isr.len(),
                    required,
                });
            }
            state.leader_epoch
        };
        let info = self.log.append_as_leader_from(origin, batches, epoch)?;
        let deadline_ms = self.clock.now_ms().saturating_add(timeout_ms);
        let mut state = self.state();
        let Role::Leader(leader) = &mut state.role else {
            // Not reached: the role cannot change while an append holds `role_change`.
            return Err(Error::NotLeaderOrFollower);
        };
        let handle = if acks == Acks::All {
            let handle = AppendHandle::pending(info);
            leader.pending.push(Pending {
                handle: handle.clone(),
                deadline_ms,
            });
            handle
        } else {
            AppendHandle::done(info)
        };
        let wake_fetches = state.fetch_waiters > 0;
        self.advance_high_watermark(&mut state);
        // Woken after the lock is released: a held fetch wakes to take it, and would block
        // on it again if this thread still held it.
        drop(state);
        if wake_fetches {
            self.data_arrived.notify_all();
        }
        Ok(handle)
    }

    /// Serves a follower's fetch (see the module docs of [`FetchResponse`]): a diverging
    /// epoch when the follower's last epoch and offset are not on this log, else records
    /// from the fetch offset, after recording the follower's progress.
    /// [`Error::InvalidRequest`] for a log start no follower sends (below -1, the unknown
    /// offset, or past its fetch offset, which is its log end): counted in the low
    /// watermark, it would let DeleteRecords pass records the follower still holds.
    pub fn fetch(&self, request: &FetchRequest) -> Result<FetchResponse> {
        self.serve_fetch(request, true)
    }

    /// [`Partition::fetch`]; `record`: whether the request's progress counts. A held
    /// request's answer, read when data arrived, does not count it again: it counted when
    /// the request came, and the follower may have started over since (a restart that
    /// lost its unflushed tail), which the old fetch offset would hide, as Kafka's
    /// delayed fetch reads without updating the follower's state.
    fn serve_fetch(&self, request: &FetchRequest, record: bool) -> Result<FetchResponse> {
        if request.log_start_offset < -1 || request.log_start_offset > request.fetch_offset {
            return Err(Error::InvalidRequest(format!(
                "fetch from {}: log start {} is not the start of a log ending at {}",
                request.fetch_offset, request.log_start_offset, request.fetch_offset
            )));
        }
        let _shared = self.role_change.read().unwrap_or_else(|e| e.into_inner());
        let mut state = self.state();
        Self::check_epoch(&state, request.leader_epoch)?;
        let now = self.clock.now_ms();
        let (start, leo) = (self.log.log_start_offset(), self.log.log_end_offset());
        // As in Kafka, the response carries the HW from before this fetch's progress
        // counts: a follower learns an HW this fetch moves at its next fetch.
        let high_watermark = state.high_watermark;
        let Role::Leader(leader) = &mut state.role else {
            return Err(Error::NotLeaderOrFollower);
        };
        let follower = leader
            .followers
            .get_mut(&request.replica_id)
            .ok_or(Error::NotLeaderOrFollower)?;
        if request.last_fetched_epoch != UNDEFINED_EPOCH {
            let ((epoch, end_offset), forgotten) = self
                .log
                .end_offset_for_epoch_or_forgotten(request.last_fetched_epoch);
            // An epoch this log's cache has forgotten (the log start moved past it) ended
            // where the cache cannot say: Kafka answers the start of the first epoch left,
            // and a follower whose log diverged below it, or ends right there, fetches on
            // with records this log never had below its log start. Hidden by the log start
            // the fetches bring, they come back when a power loss takes the follower's
            // unflushed log start with it. The answer here is a divergence at the log
            // start, where the follower starts over (see `Partition::apply_fetch`): all it
            // holds lies below the log start or is not this log's.
            let end_offset = if forgotten { start } else { end_offset };
            if forgotten || epoch < request.last_fetched_epoch || end_offset < request.fetch_offset
            {
                // The follower's state is left as it was (KAFKA-13141).
                return Ok(FetchResponse {
                    fetch_offset: request.fetch_offset,
                    last_fetched_epoch: request.last_fetched_epoch,
                    leader_epoch: request.leader_epoch,
                    records: None,
                    high_watermark,
                    log_start_offset: start,
                    log_end_offset: leo,
                    diverging: Some(DivergingEpoch { epoch, end_offset }),
                });
            }
        }
        if request.fetch_offset < start || request.fetch_offset > leo {
            return Err(Error::OffsetOutOfRange {
                offset: request.fetch_offset,
                log_start_offset: start,
                log_end_offset: leo,
            });
        }
        if record {
            // A follower whose log end went back below the HW lost records the HW counts
            // (a scrub cut its damaged copy, or a restart took its unflushed tail): it
            // leaves the ISR now, not after the lag time, since the controller could
            // elect it meanwhile (Kafka halts such a broker, whose lost session takes it
            // out). It is proposed back once it holds the HW again.
            let lost = request.fetch_offset < follower.leo && request.fetch_offset < high_watermark;
            follower.leo = request.fetch_offset;
            // Kafka's rule: caught up now if it reached the leader's end, or at its
            // previous fetch if it reached the end the leader had then. Before its first
            // fetch to this leader there is no such end (Kafka's unknown offset, at a
            // time of 0): the first earns no credit.
            if request.fetch_offset >= leo {
                follower.last_caught_up_ms = now;
            } else if follower.previous_fetch.0 >= 0
                && request.fetch_offset >= follower.previous_fetch.0
            {
                follower.last_caught_up_ms =
                    follower.last_caught_up_ms.max(follower.previous_fetch.1);
            }
            follower.previous_fetch = (leo, now);
            follower.log_start_offset = request.log_start_offset;
            if lost {
                // Out at the next tick if a proposal awaits its answer now.
                follower.last_caught_up_ms = NEVER_CAUGHT_UP;
                Self::propose_without(&mut state, request.replica_id);
            }
            let hw = state.high_watermark;
            self.maybe_propose_expand(&mut state, request.replica_id, hw);
            self.advance_high_watermark(&mut state);
        }
        // The read needs `role_change` only: slices of whole batches below the log end,
        // which no truncation cuts while this replica leads.
        drop(state);
        let cuts = self.log.settled_truncation_count();
        let records = self
            .log
            .read(request.fetch_offset, request.max_bytes, None)?
            .map(|slice| self.log.watch_cuts(slice, cuts));
        Ok(FetchResponse {
            fetch_offset: request.fetch_offset,
            last_fetched_epoch: request.last_fetched_epoch,
            leader_epoch: request.leader_epoch,
            records,
            high_watermark,
            log_start_offset: start,
            log_end_offset: leo,
            diverging: None,
        })
    }

    /// Fetches held in [`Partition::fetch_wait`] now, waiting for data (Kafka's delayed
    /// fetches in purgatory): a gauge for an embedder, and what a test waits on before it
    /// changes the role under them.
    pub fn fetches_waiting(&self) -> usize {
        self.state().fetch_waiters
    }

    /// [`Partition::fetch`], holding the answer up to `max_wait` when it has no records
    /// yet, until data past the fetch offset arrives: Kafka's delayed fetch
    /// (`replica.fetch.wait.max.ms`, 500 ms by default), so that an idle follower neither
    /// spins nor lags by a poll interval. The follower's progress counts at once (it may
    /// complete `acks=all` appends), and only then; only the answer waits. A wait longer
    /// than Kafka's protocol allows (`max_wait_ms` is an `i32`, about 24.8 days) is cut to
    /// that.
    pub fn fetch_wait(&self, request: &FetchRequest, max_wait: Duration) -> Result<FetchResponse> {
        let response = self.fetch(request)?;
        if response.records.is_some() || response.diverging.is_some() || max_wait.is_zero() {
            return Ok(response);
        }
        // Unbounded, `now + max_wait` would overflow (and panic) for `Duration::MAX`.
        let max_wait = max_wait.min(Duration::from_millis(i32::MAX as u64));
        let deadline = Instant::now() + max_wait;
        // The answer, once data came, reads without counting the request's progress
        // again (see `serve_fetch`).
        if spin::spin_until(|| self.log.log_end_offset() > request.fetch_offset) {
            return self.serve_fetch(request, false);
        }
        let mut state = self.state();
        while matches!(state.role, Role::Leader(_))
            && state.leader_epoch == request.leader_epoch
            && request.fetch_offset >= self.log.log_end_offset()
        {
            let now = Instant::now();
            if now >= deadline {
                // Answered as it stands now, as Kafka's delayed fetch reads the log again
                // when it expires: the HW may have moved meanwhile (this very fetch's
                // progress may have moved it), and the follower hears it now rather than
                // a hold later.
                break;
            }
            state.fetch_waiters += 1;
            let (guard, _) = self
                .data_arrived
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner());
            state = guard;
            state.fetch_waiters -= 1;
        }
        drop(state);
        self.serve_fetch(request, false)
    }

    /// Proposes the ISR without `replica`, if it is a member and no proposal awaits its
    /// answer (see [`Partition::tick`]).
    fn propose_without(state: &mut State, replica: i32) {
        let Role::Leader(leader) = &mut state.role else {
            return;
        };
        if leader.proposed_isr.is_none() && leader.isr.contains(&replica) {
            let keep = leader.isr.iter().copied().filter(|&id| id != replica);
            leader.proposed_isr = Some(keep.collect());
        }
    }

    /// Proposes adding `replica` to the ISR once it reached the HW and this epoch's start,
    /// unless a proposal awaits its answer (see [`Partition::tick`]).
    fn maybe_propose_expand(&self, state: &mut State, replica: i32, hw: i64) {
        let Role::Leader(leader) = &mut state.role else {
            return;
        };
        let Some(follower) = leader.followers.get(&replica) else {
            return;
        };
        if leader.proposed_isr.is_some()
            || leader.isr.contains(&replica)
            || follower.leo < hw
            || follower.leo < leader.epoch_start_offset
        {
            return;
        }
        let mut next = leader.isr.clone();
        next.push(replica);
        next.sort_unstable();
        leader.proposed_isr = Some(next);
    }

    /// Moves the HW to the smallest log end over the leader and the ISR (the confirmed and
    /// the proposed set together while a change is pending: Kafka's maximal ISR), never
    /// backwards, and not while the confirmed ISR has fewer than `min.insync.replicas`
    /// members (KIP-966): a proposed expansion the controller may still refuse counts
    /// for whose log ends hold the HW back, never towards the minimum, as in Kafka's
    /// `maybeIncrementLeaderHW`. Completes the `acks=all` appends it passes.
    ///
    /// A follower outside the ISR that is caught up (see `FollowerState::caught_up`)
    /// holds the HW back too, as since KAFKA-15021: it joins once it holds the HW, and
    /// under steady appends an HW at the leader's end would stay ahead of every fetch it
    /// makes, so it would never join. It holds the HW for at most the lag time, and not
    /// before a fetch since the controller left it out (see [`Partition::confirm_isr`]).
    pub(super) fn advance_high_watermark(&self, state: &mut State) {
        let hw = state.high_watermark;
        let Role::Leader(leader) = &mut state.role else {
            return;
        };
        let required = self.min_isr(leader);
        let isr = &leader.isr;
        let proposed = leader.proposed_isr.as_deref().unwrap_or(&[]);
        let mut new_hw = hw;
        if isr.len() >= required {
            let end = self.log.log_end_offset();
            let lag = self.config.replica_lag_time_max_ms;
            let mut lowest = end;
            let mut now = None;
            for (id, f) in &leader.followers {
                if f.leo >= lowest {
                    continue;
                }
                let member = isr.contains(id) || proposed.contains(id);
                if member || f.caught_up(end, *now.get_or_insert_with(|| self.clock.now_ms()), lag)
                {
                    lowest = f.leo;
                }
            }
            new_hw = hw.max(lowest);
        }
        // As `set_high_watermark` does (which `leader`, borrowed from `state`, rules out).
        state.high_watermark = new_hw;
        self.log.set_high_watermark(new_hw);
        // Also when the HW did not move: an append registers its completion after its
        // write, and a fetch may have moved the HW past it in between.
        let isr = leader.isr.len();
        leader.pending.retain(|p| {
            if p.handle.info().last_offset >= new_hw {
                return true;
            }
            let outcome = if isr >= required {
                Ok(p.handle.info())
            } else {
                Err(Error::NotEnoughReplicasAfterAppend { isr, required })
            };
            p.handle.complete(outcome);
            false
        });
    }

    /// The ISR change waiting for the controller's answer, if any. The embedder sends it
    /// to the controller, again until the answer comes (a proposal stands until then), and
    /// hands the answer to [`Partition::confirm_isr`]: the ISR the controller holds, with
    /// its version, whether it took this change or not.
    pub fn isr_proposal(&self) -> Option<IsrProposal> {
        let state = self.state();
        match &state.role {
            Role::Leader(l) => l.proposed_isr.as_ref().map(|isr| IsrProposal {
                leader_epoch: state.leader_epoch,
                isr_version: l.isr_version,
                isr: isr.clone(),
            }),
            Role::Follower => None,
        }
    }

    /// The controller holds `isr` at `isr_version` for this replica's leadership of
    /// `leader_epoch` (see [`IsrProposal`]); it may differ from the proposal, which this
    /// answers. Refused, changing nothing:
    ///
    /// - [`Error::NotLeaderOrFollower`] on a replica that does not lead; a stale
    ///   `leader_epoch` ([`Error::FencedLeaderEpoch`]) or a newer one
    ///   ([`Error::UnknownLeaderEpoch`]), as Kafka's leader ignores an AlterPartition
    ///   answer for another leadership than its own: a confirmation that arrives after a
    ///   leader change must not put a lagging follower into the new leader's ISR, where
    ///   it could be elected without the acknowledged records;
    /// - [`Error::InvalidUpdateVersion`] for a version at or below the one this leader
    ///   holds: an answer the network delayed past a later one, which would take back a
    ///   member the controller added since, and the HW would pass it;
    /// - [`Error::InvalidRequest`] for an ISR without this broker, with a broker outside
    ///   the replicas, or with one twice.
    pub fn confirm_isr(&self, leader_epoch: i32, isr_version: i32, isr: Vec<i32>) -> Result<()> {
        // Exclusive: an `acks=all` append checks the ISR and writes as one step.
        let _exclusive = self.role_change.write().unwrap_or_else(|e| e.into_inner());
        let mut state = self.state();
        Self::check_epoch(&state, leader_epoch)?;
        let Role::Leader(leader) = &mut state.role else {
            return Err(Error::NotLeaderOrFollower);
        };
        if isr_version <= leader.isr_version {
            return Err(Error::InvalidUpdateVersion {
                version: isr_version,
                current: leader.isr_version,
            });
        }
        self.check_assignment("ISR", &isr, &leader.replicas)?;
        // A follower the controller left out (refused, or removed on its own) counts as
        // not caught up until a later fetch shows it is: Kafka's leader waits only for
        // ISR-eligible replicas (neither fenced nor shutting down), which such a one may
        // not be, and this replica cannot tell.
        let maximal = leader
            .isr
            .iter()
            .chain(leader.proposed_isr.iter().flatten());
        for id in maximal.filter(|id| !isr.contains(id)) {
            if let Some(follower) = leader.followers.get_mut(id) {
                follower.last_caught_up_ms = NEVER_CAUGHT_UP;
            }
        }
        leader.isr = isr;
        leader.isr_version = isr_version;
        leader.proposed_isr = None;
        self.advance_high_watermark(&mut state);
        Ok(())
    }

    /// `list` (the replicas or the ISR) holds this broker, only brokers of `replicas`,
    /// and each once: a controller's decision that breaks this would leave the HW waiting
    /// on a broker that never fetches, or a leader outside its own ISR.
    pub(super) fn check_assignment(
        &self,
        what: &str,
        list: &[i32],
        replicas: &[i32],
    ) -> Result<()> {
        let me = self.config.broker_id;
        let invalid = |why: String| Err(Error::InvalidRequest(format!("{what} {list:?}: {why}")));
        if !list.contains(&me) {
            return invalid(format!("this broker ({me}) is not in it"));
        }
        if let Some(id) = list.iter().find(|id| !replicas.contains(id)) {
            return invalid(format!("broker {id} is not a replica"));
        }
        let mut earlier = list.iter().enumerate().map(|(i, id)| (&list[..i], id));
        if let Some((_, id)) = earlier.find(|(before, id)| before.contains(id)) {
            return invalid(format!("broker {id} is named twice"));
        }
        Ok(())
    }

    /// Time passes: proposes removing ISR members not caught up within
    /// `replica_lag_time_max_ms`, moves the HW past a follower outside the ISR whose
    /// caught-up time ran out, and fails `acks=all` appends past their deadline.
    ///
    /// No change is proposed while one awaits its answer (nor in
    /// [`Partition::fetch`]), as Kafka's leader sends one AlterPartition at a time: the
    /// controller may have taken the first, and a second built on it would hide that its
    /// members count for the HW until the answer comes.
    pub fn tick(&self) {
        let now = self.clock.now_ms();
        let mut state = self.state();
        let lag = self.config.replica_lag_time_max_ms;
        let me = self.config.broker_id;
        if let Role::Leader(leader) = &mut state.role {
            let leo = self.log.log_end_offset();
            let caught_up = |id: &i32| {
                *id == me || (leader.followers.get(id)).is_some_and(|f| f.caught_up(leo, now, lag))
            };
            if leader.proposed_isr.is_none() && !leader.isr.iter().all(caught_up) {
                let keep = leader.isr.iter().copied().filter(caught_up).collect();
                leader.proposed_isr = Some(keep);
            }
        }
        // A follower outside the ISR holds the HW only while it is caught up: once the
        // lag time ran out, the HW moves on without it, though nothing is appended or
        // fetched (a lone leader's followers may all be gone), and the appends it held
        // complete rather than time out below.
        self.advance_high_watermark(&mut state);
        if let Role::Leader(leader) = &mut state.role {
            leader.pending.retain(|p| {
                if now < p.deadline_ms {
                    return true;
                }
                p.handle.complete(Err(Error::RequestTimedOut));
                false
            });
        }
    }

    /// The least durable log start ([`Log::durable_log_start_offset`]) of this leader and
    /// of the live followers (Kafka's low watermark, KIP-107); `None` on a follower.
    /// DeleteRecords is done when it reaches the requested offset: every live replica has
    /// dropped the records below it, for good (Kafka counts the log starts in memory,
    /// which a crash can take back).
    ///
    /// Kafka counts the replicas whose broker is alive; a replica knows its followers only
    /// by their fetches and the ISR, so a follower counts while it is in the ISR (it may
    /// be elected), fetched within `replica_lag_time_max_ms`, or became this leader's
    /// follower within that time. One that has not told this leader its log start yet
    /// (none fetched since the leader took over) holds the low watermark at -1, Kafka's
    /// unknown offset, as it does in Kafka: it may still hold the records. One silent for
    /// that long and out of the ISR no longer holds it back.
    ///
    /// [`Log::durable_log_start_offset`]: crate::log::Log::durable_log_start_offset
    pub fn low_watermark(&self) -> Option<i64> {
        let state = self.state();
        let Role::Leader(leader) = &state.role else {
            return None;
        };
        let now = self.clock.now_ms();
        let live_since = now.saturating_sub(self.config.replica_lag_time_max_ms);
        let in_sync = |id: &i32| {
            leader.isr.contains(id) || leader.proposed_isr.as_ref().is_some_and(|p| p.contains(id))
        };
        let followers = leader
            .followers
            .iter()
            .filter(|&(id, f)| f.previous_fetch.1 >= live_since || in_sync(id))
            .map(|(_, f)| f.log_start_offset);
        Some(followers.fold(self.log.durable_log_start_offset(), i64::min))
    }
}
