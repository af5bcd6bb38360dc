//! Comparing views: the check that a decoded piece replays as its batches do (the body
//! of the `offsets_replay` fuzz target), and every offset and expiry a view holds.

use super::{Change, Decoded, Result, View};

/// Replays `piece` (whole batches or any bytes) into two fresh views: one as the load's
/// reader decodes it first, one batch by batch as the replay does alone. Panics where the
/// two differ: in the outcome (the offset after the piece, or the error), in the offsets
/// they hold, or in the records they skipped. The body of the `offsets_replay` fuzz target.
pub(crate) fn check_decoded_replay(piece: &[u8]) {
    let mut decoded = Decoded::default();
    decoded.decode_piece(piece);
    let (mut by_decoding, mut alone) = (View::default(), View::default());
    let outcome = |r: Result<Option<i64>>| r.map_err(|e| e.to_string());
    assert_eq!(
        outcome(by_decoding.replay_piece(piece, Some(&decoded))),
        outcome(alone.replay_piece(piece, None)),
        "the replay of a decoded piece ends as the replay alone"
    );
    let offsets = |view: &View| (view.every_offset(), view.every_expiry(), view.skipped);
    assert_eq!(offsets(&by_decoding), offsets(&alone));
}

impl View {
    /// Every offset the view holds, by group, topic and partition: for comparing views.
    pub(super) fn every_offset(&self) -> Vec<Change> {
        let mut all: Vec<Change> = self
            .groups()
            .flat_map(|(g, offsets)| {
                let all: Vec<_> = offsets
                    .iter()
                    .map(|(k, c)| (g.clone(), k, Some(c)))
                    .collect();
                all
            })
            .collect();
        all.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        all
    }

    /// Every explicit expiry the view holds (see [`GroupOffsets::iter_with_expiry`]), by
    /// group, topic and partition: for comparing views.
    pub(super) fn every_expiry(&self) -> Vec<(String, (String, i32), i64)> {
        let mut all: Vec<_> = self
            .groups()
            .flat_map(|(g, offsets)| {
                let all: Vec<_> = offsets
                    .iter_with_expiry()
                    .filter_map(|(k, _, e)| Some((g.clone(), k, e?)))
                    .collect();
                all
            })
            .collect();
        all.sort();
        all
    }
}
