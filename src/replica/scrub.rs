//! Corruption repair. A replica checks its committed batches (below the high watermark)
//! against their CRCs. A follower cuts its log just before the first bad batch and fetches
//! it again from the leader. A leader cannot fetch from anyone: it reports the damage to
//! the embedder, which moves leadership to an in-sync replica with an intact copy, and the
//! old leader cuts its log there when it becomes a follower. Kafka halts the broker here
//! (KAFKA-3924); the replicas hold good copies, so partlog repairs from them.
//!
//! Recovery at open finds damage above the recovery point by itself (the log is cut there
//! and the high watermark clamped to the new end, so a follower fetches the rest again);
//! the scrub finds it below.

use super::{Partition, Role};
use crate::error::{Error, Result};
use crate::record::batches;

/// Bytes read per step of a scrub.
const SCRUB_READ_BYTES: u64 = 1 << 20;

/// What [`Partition::scrub`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScrubOutcome {
    /// Every batch below the high watermark passed its checks.
    Clean,
    /// A follower found a bad batch at `offset` and cut its log there; it fetches the rest
    /// from the leader again. A cut below the HW takes it out of the ISR at its next fetch
    /// (its leader proposes it out), until it holds the HW again; until it has fetched
    /// back what it cut, it refuses to lead (see [`Partition::lacks_committed_records`]).
    Repaired { offset: i64 },
    /// The leader found a bad batch at `offset` in committed data. The embedder should
    /// elect another in-sync replica, and leave this one out of the new ISR: it cuts its
    /// log at `offset` when it becomes a follower (unless the log start has moved past
    /// `offset` by then, the bad batch with it), so it lacks committed records until it
    /// has fetched them again, and its new leader proposes it back once it has.
    LeaderCorrupt { offset: i64, reason: String },
}

impl Partition {
    /// Checks every batch from the log start up to the high watermark (see the module
    /// docs for what happens to a bad one).
    pub fn scrub(&self) -> Result<ScrubOutcome> {
        let (offset, reason, mut state) = loop {
            let hw = self.high_watermark();
            let Some((offset, reason)) = self.first_bad_batch(hw)? else {
                return Ok(ScrubOutcome::Clean);
            };
            let state = self.state();
            // Retention or DeleteRecords may have moved the log start past the bad batch
            // since it was read: a cut below the start would empty the whole log (see
            // `Log::truncate_to`). Look again from the new start.
            if offset >= self.log.log_start_offset() {
                break (offset, reason, state);
            }
        };
        match state.role {
            Role::Leader(_) => {
                state.corrupt_from = Some(offset);
                Ok(ScrubOutcome::LeaderCorrupt { offset, reason })
            }
            Role::Follower => {
                self.cut_for_repair(&mut state, offset)?;
                Ok(ScrubOutcome::Repaired { offset })
            }
        }
    }

    /// The offset of the first batch below `up_to` that fails its checks, and why.
    fn first_bad_batch(&self, up_to: i64) -> Result<Option<(i64, String)>> {
        // Base offsets lie outside the CRC: on a log without gaps (see
        // `Log::may_have_gaps`), they must follow each other exactly.
        let mut gaps_allowed = self.log.may_have_gaps();
        let mut next = self.log.log_start_offset();
        // At the log start, the first batch may begin below it (DeleteRecords moves the
        // start to any offset), or above it in a compacted log (a gap): it must hold the
        // start or, compacted, come after it.
        let mut at_start = true;
        while next < up_to {
            // Bounded by `up_to`: a follower cuts its log above its high watermark, maybe
            // while this reads, and the slice must not reach the bytes it cuts.
            let bytes = match self.log.read(next, SCRUB_READ_BYTES, Some(up_to)) {
                Ok(Some(slice)) => slice.to_vec()?,
                Ok(None) => return Ok(None),
                // Retention, DeleteRecords or a follower starting over at its leader's
                // log start moved the start past `next` meanwhile: nothing below is left.
                Err(Error::OffsetOutOfRange {
                    log_start_offset, ..
                }) if next < log_start_offset => {
                    (next, at_start) = (log_start_offset, true);
                    continue;
                }
                Err(e @ (Error::Corruption { .. } | Error::InvalidBatch(_))) => {
                    return Ok(Some((next, e.to_string())))
                }
                Err(e) => return Err(e),
            };
            for batch in batches(&bytes) {
                // The CRC, as Kafka's `ensureValid` checks a batch: the record walk of a
                // leader's append would refuse batches a Kafka leader took (its records'
                // offset deltas are not checked there), and cut them again at every pass.
                let b = match batch.and_then(|b| b.verify_crc().map(|()| b)) {
                    Ok(b) => b,
                    Err(e) => return Ok(Some((next, e.to_string()))),
                };
                let h = b.header();
                let first = std::mem::take(&mut at_start);
                // A gap in a log that was without any when the pass began may be the first
                // a follower append took since (marking the log first): look again.
                if !gaps_allowed && h.base_offset > next {
                    gaps_allowed = self.log.may_have_gaps();
                }
                let misplaced = if first {
                    h.last_offset() < next || (!gaps_allowed && h.base_offset > next)
                } else {
                    h.base_offset < next || (!gaps_allowed && h.base_offset != next)
                };
                if misplaced {
                    let reason = format!("batch at {} where {next} was due", h.base_offset);
                    return Ok(Some((next, reason)));
                }
                next = h.next_offset();
                if next >= up_to {
                    break;
                }
            }
        }
        Ok(None)
    }
}
