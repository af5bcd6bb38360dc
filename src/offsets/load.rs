//! Loading an offsets partition's view: the replay of its log in steps, and the state of
//! each hosted partition's view (following, loading, loaded, failed).

use std::sync::Arc;

use super::view::{Decoded, View};
use super::{OffsetsStore, LOAD_PIECE_BYTES};
use crate::error::{Error, Result};
use crate::log::Log;
use crate::replica::Partition;
use crate::segment::scan::{ReadAhead, ScanBuffers, Throttle};

/// How far a load got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadProgress {
    pub loaded_to: i64,
    pub end: i64,
    pub done: bool,
}

#[derive(Debug)]
pub(super) enum ViewState {
    Follower,
    Loading {
        next: i64,
        end: i64,
        view: View,
        /// The reader of the log from `next` to `end`, started by the first step: it
        /// reads (and decodes) ahead across steps, in a few buffers of
        /// [`LOAD_PIECE_BYTES`].
        reader: Option<ReadAhead<Decoded>>,
    },
    Loaded(View),
    /// The load failed with this error: it ends there, as Kafka's coordinator unloads a
    /// partition whose load failed, until `become_leader` starts another.
    Failed(Error),
}

#[derive(Debug)]
pub(super) struct Hosted {
    pub(super) replica: Arc<Partition>,
    pub(super) state: ViewState,
    /// The leader epoch the view was loaded in: a view serves only while the replica
    /// still leads that epoch. Led again in a later one (stepped down and back before
    /// the store heard), the log may hold commits the view never saw.
    pub(super) epoch: i32,
    /// When the view of the store's current term as the partition's leader began to serve
    /// (while it loads, when the store became the leader; `i64::MIN` before): a running
    /// group's members find the new coordinator from then on.
    pub(super) serving_since: i64,
}

impl Hosted {
    /// Whether the replica still leads the epoch the view was loaded in.
    pub(super) fn leads(&self) -> bool {
        // Epochs only grow, and the view's was current when its load began: a leader
        // seen now in that epoch has led it since.
        self.replica.is_leader() && self.replica.leader_epoch() == self.epoch
    }

    /// Whether the store's view began to serve (or the store became the partition's leader,
    /// while it loads) less than `grace_ms` before `now`:
    /// a group of it the embedder has not mentioned yet may be a running one whose members
    /// have not found this new coordinator (see [`super::OffsetsConfig::membership_grace_ms`]).
    pub(super) fn in_membership_grace(&self, now: i64, grace_ms: i64) -> bool {
        now < self.serving_since.saturating_add(grace_ms)
    }

    /// The replica and the view, once the view serves (promoted here if its load is done):
    /// [`Error::CoordinatorLoadInProgress`] while it loads, [`Error::NotCoordinator`] when
    /// the replica no longer leads the epoch it loaded in, or the load failed or never
    /// began.
    pub(super) fn serving(
        &mut self,
        index: u32,
        now_ms: i64,
    ) -> Result<(&Arc<Partition>, &mut View)> {
        self.promote_if_committed(now_ms);
        let leads = self.leads();
        match &mut self.state {
            ViewState::Loaded(view) if leads => Ok((&self.replica, view)),
            // A load whose replica stepped down will not end: its new leader's store is
            // the coordinator.
            ViewState::Loading { .. } if leads => {
                Err(Error::CoordinatorLoadInProgress { partition: index })
            }
            _ => Err(Error::NotCoordinator { partition: index }),
        }
    }

    /// A load read to its end serves once that end is committed, from `now_ms` on. Returns
    /// whether the view is loaded.
    pub(super) fn promote_if_committed(&mut self, now_ms: i64) -> bool {
        if let ViewState::Loading { next, end, .. } = &self.state {
            if *next < *end || self.replica.high_watermark() < *end {
                return false;
            }
            if let ViewState::Loading { view, .. } =
                std::mem::replace(&mut self.state, ViewState::Follower)
            {
                self.state = ViewState::Loaded(view);
                self.serving_since = now_ms;
            }
        }
        matches!(self.state, ViewState::Loaded(_))
    }
}

impl OffsetsStore {
    /// Replays at least `load_buffer_bytes` more of partition `index`'s log into its view
    /// (or the rest of it). A helper thread reads the log ahead of the replay from the
    /// first step to the last, and decodes the records of the pieces the replay has no
    /// time for (see [`ReadAhead`]; the replay decodes the others itself, the same way),
    /// so that the copy out of the page cache and the decoding overlap the replay. A step that fails ends the load, as Kafka's coordinator
    /// unloads a partition whose load failed: later steps return the same error and
    /// requests get [`Error::NotCoordinator`] until [`OffsetsStore::become_leader`] starts
    /// another. A step that fails after the replica stepped down says
    /// [`Error::NotCoordinator`]: as a follower it may have cut the bytes being read. A
    /// view loaded in an epoch its replica no longer leads says so too.
    pub fn load_step(&self, index: u32) -> Result<LoadProgress> {
        let partition = self.partition(index)?;
        let mut hosted = crate::lock(&partition);
        let h = &mut *hosted;
        let log = h.replica.log().clone();
        let leads = h.leads();
        let (next, end) = match &mut h.state {
            ViewState::Follower => return Err(Error::NotCoordinator { partition: index }),
            ViewState::Failed(err) => return Err(err.duplicate()),
            // Loaded in an epoch its replica no longer leads: `become_leader` loads anew.
            ViewState::Loaded(_) if !leads => {
                return Err(Error::NotCoordinator { partition: index })
            }
            ViewState::Loaded(_) => {
                let end = log.log_end_offset();
                return Ok(LoadProgress {
                    loaded_to: end,
                    end,
                    done: true,
                });
            }
            ViewState::Loading {
                next,
                end,
                view,
                reader,
            } => {
                let step = self.config.load_buffer_bytes;
                if let Err(err) = load_pieces(&log, (next, *end), view, reader, step) {
                    // The load ends here: the piece that failed was applied in part, and
                    // applied again on top of that, a transaction's records could land on
                    // the wrong side of its marker; an error in the bytes fails every load
                    // alike. `become_leader` starts another, with a fresh view.
                    //
                    // A replica that stepped down may have been cut under the reader (a
                    // follower truncating where it diverged): the bytes are gone, and so
                    // is the reason to load.
                    let err = if leads {
                        err
                    } else {
                        Error::NotCoordinator { partition: index }
                    };
                    h.state = ViewState::Failed(err.duplicate());
                    return Err(err);
                }
                (*next, *end)
            }
        };
        let done = h.promote_if_committed(self.clock.now_ms());
        Ok(LoadProgress {
            loaded_to: next.min(end),
            end,
            done,
        })
    }

    /// Replays partition `index`'s log to the end; returns the number of steps it took.
    /// The view serves once the high watermark reaches that end too.
    pub fn load(&self, index: u32) -> Result<u64> {
        let mut steps = 1;
        loop {
            let progress = self.load_step(index)?;
            if progress.done || progress.loaded_to >= progress.end {
                return Ok(steps);
            }
            steps += 1;
        }
    }
}

/// Replays pieces of `log` from `*next` until `step` bytes are done or `end` is reached,
/// starting `reader` at the first call.
fn load_pieces(
    log: &Log,
    (next, end): (&mut i64, i64),
    view: &mut View,
    reader: &mut Option<ReadAhead<Decoded>>,
    step: u64,
) -> Result<()> {
    if *next >= end {
        return Ok(());
    }
    let ahead = match reader {
        Some(ahead) => ahead,
        None => {
            let ranges = log.read_all(*next, end)?;
            let decode = |piece: &[u8], decoded: &mut Decoded| decoded.decode_piece(piece);
            let buffers = ScanBuffers::default();
            let throttle = Throttle::unlimited();
            let ahead = ReadAhead::start(ranges, LOAD_PIECE_BYTES, buffers, throttle, decode)?;
            reader.insert(ahead)
        }
    };
    let mut done = 0u64;
    // For the pieces the reader sent undecoded.
    let mut own = Decoded::default();
    while done < step {
        let more = ahead.next(|piece, decoded| {
            let decoded = match decoded {
                Some(decoded) => decoded,
                None => {
                    own.decode_piece(piece);
                    &own
                }
            };
            *next = view.replay_piece(piece, Some(decoded))?.unwrap_or(*next);
            done += piece.len() as u64;
            Ok(())
        })?;
        if !more {
            // Read to the end: the slices held every batch below it.
            *next = end;
            *reader = None;
            break;
        }
    }
    Ok(())
}
