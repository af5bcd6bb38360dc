//! A replica's follower side: the fetch it sends its leader, and what it does with the
//! answer (append, truncate where the logs diverge, or start over when out of range).
//! Only the answer to the fetch it would send now is applied.

use super::{DivergingEpoch, FetchRequest, FetchResponse, Partition, Role, State, TruncationMode};
use crate::error::{Error, Result};
use crate::log::UNDEFINED_EPOCH;
use crate::record::Batch;

impl Partition {
    /// The next fetch a follower sends its leader.
    pub fn fetch_request(&self, max_bytes: u64) -> FetchRequest {
        let state = self.state();
        FetchRequest {
            replica_id: self.config.broker_id,
            leader_epoch: state.leader_epoch,
            fetch_offset: self.log.log_end_offset(),
            last_fetched_epoch: self.last_fetched_epoch(),
            max_bytes,
            log_start_offset: self.log.durable_log_start_offset(),
        }
    }

    /// The epoch of the last batch itself: if a torn write raised it (the field lies
    /// outside the CRC), the leader does not know it, answers a diverging epoch, and the
    /// follower truncates the batch away instead of being fenced by it forever. Before
    /// KIP-101 fetches carried no epoch, so the leader never saw a divergence.
    fn last_fetched_epoch(&self) -> i32 {
        match self.config.truncation {
            TruncationMode::LeaderEpoch => self.log.latest_epoch(),
            TruncationMode::HighWatermark => UNDEFINED_EPOCH,
        }
    }

    /// Applies the leader's answer to [`Partition::fetch_request`]: truncates where the
    /// logs diverged (then the next fetch goes on from there), or appends the records with
    /// the leader's offsets and epochs and takes the leader's HW and log start. Returns
    /// false, changing nothing, for an answer to another fetch than the one this replica
    /// would send now (the network delayed, duplicated or reordered it).
    ///
    /// The answer's records are read from the leader's files here. If the replica that
    /// answered has stepped down since and cut its log, they may be gone or hold other
    /// batches: the answer no longer stands, and is dropped as a late one is (false,
    /// nothing changed). A read or validation that fails returns its error; fetch again
    /// (Kafka's fetcher does the same on a corrupt record). Nothing changed then, unless
    /// the log was cut back to the answer's first batch, which reached across its end
    /// (see `cut_to_batch_holding_end`): the next fetch starts from there.
    pub fn apply_fetch(&self, response: &FetchResponse) -> Result<bool> {
        check_answer(response)?;
        let mut state = self.state();
        if !matches!(state.role, Role::Follower) {
            return Err(Error::NotLeaderOrFollower);
        }
        if !self.would_send(
            &state,
            response.fetch_offset,
            response.last_fetched_epoch,
            response.leader_epoch,
        ) {
            return Ok(false);
        }
        if let Some(diverging) = response.diverging {
            let known = diverging.epoch != UNDEFINED_EPOCH;
            let cut = if known && diverging.end_offset <= response.log_start_offset {
                // The logs part at or below the leader's log start, where it keeps nothing
                // to compare: this replica's records there are hidden by the log start the
                // fetch brings, but only until a power loss takes its unflushed log start
                // back, and they need not be the leader's. It starts over at the leader's
                // log start, durably, as a replica behind it does.
                self.log
                    .truncate_fully_and_start_at(response.log_start_offset)
            } else {
                let to = self.divergence_point(diverging, state.high_watermark);
                self.log.truncate_to(to).map(drop)
            };
            return self.after_cut(&mut state, cut).map(|()| true);
        }
        if let Some(records) = &response.records {
            let len = records.len() as usize;
            if state.scratch.len() < len {
                state.scratch.resize(len, 0);
            }
            let bytes = &mut state.scratch[..len];
            let read = records.read_to(bytes);
            if records.cut_since() {
                // The replica that answered stepped down and cut its log since: the bytes
                // may be its new leader's batches, in the place of those it answered with,
                // or gone (the read failed).
                return Ok(false);
            }
            read?;
            let cut = self.log.log_end_offset();
            let whole = self.cut_to_batch_holding_end(bytes, response.leader_epoch);
            if !matches!(whole, Ok(true)) {
                // The next fetch goes on from where the cut left the log end.
                return self.after_cut(&mut state, whole).map(|_| true);
            }
            if let Err(err) = self.log.append_as_follower(bytes) {
                if self.log.log_end_offset() < cut {
                    // Cut back to the answer's first batch, which did not append: the HW
                    // comes down with the log end, as it does after any truncation.
                    self.cap_high_watermark(&mut state);
                }
                return Err(err);
            }
        }
        let (start, leo) = (self.log.log_start_offset(), self.log.log_end_offset());
        if response.log_start_offset > start {
            self.log
                .advance_log_start_offset(response.log_start_offset.min(leo))?;
        }
        // The leader's HW as it answered, within this log, as Kafka's follower takes it
        // (`maybeUpdateHighWatermark`), even when lower than the one known before: a new
        // leader's HW lags its predecessor's until every ISR member has fetched from it.
        // What the follower shows (to its readers, cleaner and retention) is then what
        // its leader shows, never more. Within one leader epoch, though, the leader's HW
        // never goes back, so a lower one is an older answer's, overtaken on the way by a
        // later answer to the same fetch (Kafka's answers come in order on one
        // connection; an embedder's transport need not keep them so): the HW stays.
        let answered = if state.hw_answered_in == response.leader_epoch {
            response.high_watermark.max(state.high_watermark)
        } else {
            response.high_watermark
        };
        state.hw_answered_in = response.leader_epoch;
        let hw = answered.clamp(self.log.log_start_offset(), leo);
        self.set_high_watermark(&mut state, hw);
        state.repaired_below = self.still_lacking(&state);
        Ok(true)
    }

    /// When this replica's log end lies inside the first batch of a fetched answer (below
    /// its last offset but above its base), the log is cut back to that base so that the
    /// batch appends whole. The leader found the fetch on its log, yet its batches are
    /// not where this replica's end says they are:
    ///
    /// - DeleteRecords may put the leader's log start inside a batch. A follower that
    ///   started over there has an empty log ending at that offset, and is sent the whole
    ///   batch that holds it. Its log starts over at the batch's base offset, and the log
    ///   start moves back up to the leader's as the answer is applied. Kafka's `Partition`
    ///   does the same on `UnexpectedAppendOffsetException`.
    /// - A compacted log cut inside a gap ends there, past its last batch (see
    ///   [`crate::log::Log::truncate_to`]); the leader may still hold, uncleaned, a batch
    ///   across that end. Nothing is removed.
    /// - A leader that answered under Kafka's rule for an epoch its cache forgot (its log
    ///   start as the epoch's end) let a divergence above the fetch offset go unseen. The
    ///   batch boundary shows it: this replica's batches from the base on are not the
    ///   leader's, and go. A record the leader does not have was never committed. Kafka's
    ///   follower fails the partition here. partlog's leader now answers such a fetch
    ///   with a divergence at its log start (see [`Partition::fetch`]), so this is the
    ///   guard behind that answer.
    ///
    /// Returns whether the records go on from the log end now. A cut that removed a batch
    /// of this replica's across the base leaves the end below it: the answer is not
    /// appended, and the next fetch starts from the new end. Anything else is left to the
    /// append to check.
    ///
    /// Only an intact batch of the answer's leader epoch or before moves the log end: the
    /// bytes are read from the leader's files after it answered, and a leader that stepped
    /// down since may have cut them and written a later leader's batches there. Another
    /// changes nothing here, and the append refuses it or takes it as it comes.
    fn cut_to_batch_holding_end(&self, bytes: &[u8], leader_epoch: i32) -> Result<bool> {
        let leo = self.log.log_end_offset();
        let Ok(first) = Batch::parse(bytes) else {
            return Ok(true);
        };
        let (base, last) = (first.header().base_offset, first.header().last_offset());
        let later = first.header().partition_leader_epoch > leader_epoch;
        if base >= leo || last < leo || later || first.verify_crc().is_err() {
            return Ok(true);
        }
        self.log.truncate_to(base)?;
        Ok(self.log.log_end_offset() == base)
    }

    /// Where to cut the log for the leader's diverging epoch. When this replica knows the
    /// epoch: the smaller of the two ends for it (and the log end); when it does not: its
    /// own end for the largest epoch below, after which it fetches again (KIP-279). When
    /// the leader knew nothing of our epoch: the high watermark.
    fn divergence_point(&self, diverging: DivergingEpoch, high_watermark: i64) -> i64 {
        let leo = self.log.log_end_offset();
        if diverging.epoch == UNDEFINED_EPOCH {
            return high_watermark.min(leo);
        }
        let (epoch, end) = self.log.end_offset_for_epoch(diverging.epoch);
        if epoch == UNDEFINED_EPOCH {
            return diverging.end_offset.min(leo);
        }
        if epoch == diverging.epoch {
            diverging.end_offset.min(end).min(leo)
        } else {
            end.min(leo)
        }
    }

    /// Whether a fetch from `fetch_offset` with `last_fetched_epoch` under `leader_epoch`
    /// is the one this replica, in `state`, would send now.
    fn would_send(
        &self,
        state: &State,
        fetch_offset: i64,
        last_fetched_epoch: i32,
        leader_epoch: i32,
    ) -> bool {
        leader_epoch == state.leader_epoch
            && fetch_offset == self.log.log_end_offset()
            && last_fetched_epoch == self.last_fetched_epoch()
    }

    /// The leader said the fetch offset of `request` is out of its range: cut back to its
    /// end when it has less, or start over at its log start when this replica is behind
    /// it. Never a truncation to zero (KAFKA-2143). As with [`Partition::apply_fetch`], an
    /// answer to another fetch than the one this replica would send now changes nothing
    /// and returns false; a leader refuses it ([`Error::NotLeaderOrFollower`]).
    pub fn handle_out_of_range(
        &self,
        request: &FetchRequest,
        leader_log_start: i64,
        leader_leo: i64,
    ) -> Result<bool> {
        check_bounds("out-of-range answer", leader_log_start, leader_leo)?;
        let mut state = self.state();
        // As in `apply_fetch`: a leader's log is cut by no fetch answer, even one to the
        // fetch it sent as a follower of the epoch it now leads.
        if !matches!(state.role, Role::Follower) {
            return Err(Error::NotLeaderOrFollower);
        }
        if !self.would_send(
            &state,
            request.fetch_offset,
            request.last_fetched_epoch,
            request.leader_epoch,
        ) {
            return Ok(false);
        }
        let leo = self.log.log_end_offset();
        let cut = if leader_leo < leo {
            self.log.truncate_to(leader_leo).map(drop)
        } else if leader_log_start > leo {
            self.log.truncate_fully_and_start_at(leader_log_start)
        } else {
            Ok(())
        };
        self.after_cut(&mut state, cut).map(|()| true)
    }
}

/// Refuses a leader's answer that no leader sends: a log start below 0 or past the log
/// end, an HW outside them, a diverging epoch ending below -1 (the undefined offset) or
/// past the log end. Taking one would cut this replica's log anywhere, or move its log
/// start past anything it could fetch; refused, nothing changes, and the next fetch asks
/// again. ([`Error::InvalidRequest`], the answer being the request's message here.)
fn check_answer(response: &FetchResponse) -> Result<()> {
    let (start, end) = (response.log_start_offset, response.log_end_offset);
    check_bounds("fetch answer", start, end)?;
    let hw = response.high_watermark;
    if hw < start || hw > end {
        return Err(Error::InvalidRequest(format!(
            "fetch answer: high watermark {hw} outside the leader's log [{start}, {end}]"
        )));
    }
    if let Some(d) = response.diverging {
        if d.end_offset < -1 || d.end_offset > end {
            return Err(Error::InvalidRequest(format!(
                "fetch answer: epoch {} ends at {}, outside the leader's log [-1, {end}]",
                d.epoch, d.end_offset
            )));
        }
    }
    Ok(())
}

/// A leader's log start and log end, as an answer gives them: `0 <= start <= end`.
fn check_bounds(what: &str, start: i64, end: i64) -> Result<()> {
    if start < 0 || end < start {
        return Err(Error::InvalidRequest(format!(
            "{what}: log start {start} and log end {end} bound no log"
        )));
    }
    Ok(())
}
