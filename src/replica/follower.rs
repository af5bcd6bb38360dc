//! A replica's follower side: the fetch it sends its leader, and what it does with the
//! answer (append, truncate where the logs diverge, or start over when out of range).
//! Only the answer to the fetch it would send now is applied.

use super::{DivergingEpoch, FetchRequest, FetchResponse, Partition, Role, State, TruncationMode};
use crate::error::{Error, Result};
use crate::log::UNDEFINED_EPOCH;

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
    /// batches: the read or their validation fails, nothing changes, and the error is
    /// returned; fetch again (Kafka's fetcher does the same on a corrupt record, for the
    /// same reason).
    pub fn apply_fetch(&self, response: &FetchResponse) -> Result<bool> {
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
            let to = self.divergence_point(diverging, state.high_watermark);
            self.log.truncate_to(to)?;
            self.cap_high_watermark(&mut state);
            return Ok(true);
        }
        if let Some(records) = &response.records {
            let len = records.len() as usize;
            if state.scratch.len() < len {
                state.scratch.resize(len, 0);
            }
            let bytes = &mut state.scratch[..len];
            records.read_to(bytes)?;
            self.log.append_as_follower(bytes)?;
        }
        let (start, leo) = (self.log.log_start_offset(), self.log.log_end_offset());
        if response.log_start_offset > start {
            self.log
                .advance_log_start_offset(response.log_start_offset.min(leo))?;
        }
        let hw = response
            .high_watermark
            .clamp(self.log.log_start_offset(), leo);
        let hw = state.high_watermark.max(hw).min(leo);
        self.set_high_watermark(&mut state, hw);
        Ok(true)
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
    /// and returns false.
    pub fn handle_out_of_range(
        &self,
        request: &FetchRequest,
        leader_log_start: i64,
        leader_leo: i64,
    ) -> Result<bool> {
        let mut state = self.state();
        if !self.would_send(
            &state,
            request.fetch_offset,
            request.last_fetched_epoch,
            request.leader_epoch,
        ) {
            return Ok(false);
        }
        let leo = self.log.log_end_offset();
        if leader_leo < leo {
            self.log.truncate_to(leader_leo)?;
        } else if leader_log_start > leo {
            self.log.truncate_fully_and_start_at(leader_log_start)?;
        }
        let end = self.log.log_end_offset();
        let hw = state.high_watermark.clamp(self.log.log_start_offset(), end);
        self.set_high_watermark(&mut state, hw);
        Ok(true)
    }
}
