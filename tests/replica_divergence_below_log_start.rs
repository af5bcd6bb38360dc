//! A follower whose log diverged from its leader's below the leader's log start.
//!
//! Broker 0 leads epoch 1 and writes records that broker 1 never fetches; broker 1 then
//! leads epoch 2, writes other records at the same offsets, commits them, and DeleteRecords
//! moves its log start past them. That takes epoch 1 out of its epoch cache: asked where
//! epoch 1 ended, Kafka's rule answers the start of the first epoch left, the log start,
//! not where the logs parted. Broker 0, back as a follower, then keeps its own epoch-1
//! records below the log start. The log start the fetches bring hides them, but only
//! until a power loss takes broker 0's unflushed log start back: then broker 0 serves, at
//! committed offsets, records its leader never had. Found by the `sim_replication` hunt
//! (seeds 963389 and 1035423 of 300,000, which replay there too). The leader now answers a
//! fetch under an epoch its cache forgot with a divergence at its log start, and a
//! follower told the logs part at or below the leader's log start starts over there,
//! durably.

mod common;

use common::batch;
use common::cluster::{contents, Cluster};
use partlog::replica::{Acks, TruncationMode};

/// `(base offset, crc)` of batches.
type Batches = Vec<partlog::cluster::BatchBytes>;

/// Broker 0's records below broker 1's log start once broker 0 has followed broker 1 and
/// then lost power: `(base offset, crc)` of each, and of each that broker 1 had at the
/// same offset before DeleteRecords. Broker 0 holds `own` epoch-1 records past the
/// `shared` ones when it steps down; broker 1 writes `theirs` epoch-2 records past those
/// and deletes below `delete_below`.
fn below_log_start_after_power_loss(
    own: i64,
    theirs: i64,
    delete_below: i64,
) -> (Batches, Batches) {
    let shared = 4;
    let mut c = Cluster::new(2, 1, TruncationMode::LeaderEpoch);
    for i in 0..shared {
        c.replica(0)
            .append(&mut batch(1, 10, i), Acks::Leader, 30_000)
            .unwrap();
    }
    c.replicate(0, &[1]);
    assert_eq!(c.replica(1).log().log_end_offset(), shared);
    // Broker 0 writes on alone, durably, and steps down; broker 1 leads epoch 2 alone.
    for i in 0..own {
        c.replica(0)
            .append(&mut batch(1, 20, 100 + i), Acks::Leader, 30_000)
            .unwrap();
    }
    c.replica(0).log().flush().unwrap();
    c.replica(1).become_leader(2, vec![0, 1], vec![1]).unwrap();
    for i in 0..theirs {
        c.replica(1)
            .append(&mut batch(1, 30, 200 + i), Acks::Leader, 30_000)
            .unwrap();
    }
    let leader_had = contents(c.replica(1).log());
    assert_eq!(c.replica(1).high_watermark(), shared + theirs, "committed");
    c.replica(1).advance_log_start_offset(delete_below).unwrap();

    // Broker 0 follows and catches up, its log on disk; a power loss takes what else it
    // had not flushed, its log start among it.
    c.replica(0).become_follower(2, 1).unwrap();
    for _ in 0..4 {
        c.fetch(0, 1);
    }
    assert_eq!(
        contents(c.replica(0).log()).last(),
        leader_had.last(),
        "caught up"
    );
    c.replica(0).log().flush().unwrap();
    c.restart(0, true, 0);
    let below = |log: &partlog::log::Log| -> Batches {
        contents(log)
            .into_iter()
            .filter(|(base, _)| *base < delete_below)
            .collect()
    };
    let kept = below(c.replica(0).log());
    let leader_had = leader_had
        .into_iter()
        .filter(|(base, _)| *base < delete_below)
        .collect();
    (kept, leader_had)
}

/// Every record broker 0 still has below the log start is the one its leader had there.
fn assert_no_foreign_records(own: i64, theirs: i64, delete_below: i64) {
    let (kept, leader_had) = below_log_start_after_power_loss(own, theirs, delete_below);
    for record in &kept {
        assert!(
            leader_had.contains(record),
            "broker 0 keeps {record:?} below the log start {delete_below}, a record its \
             leader never had there (it had {leader_had:?})"
        );
    }
}

/// Broker 0's epoch-1 records end exactly at the leader's log start: its fetch there is
/// one Kafka's leader finds nothing wrong with.
#[test]
fn a_follower_ending_at_the_log_start_keeps_no_record_of_its_own_below_it() {
    assert_no_foreign_records(4, 6, 8);
}

/// Broker 0's epoch-1 records reach past the leader's log start: Kafka's leader answers
/// the log start as where the logs part, and the follower cuts only down to it.
#[test]
fn a_follower_ending_past_the_log_start_keeps_no_record_of_its_own_below_it() {
    assert_no_foreign_records(8, 6, 8);
}

/// A log start below where the logs part leaves the leader's epoch 1 in its cache: the
/// follower cuts back to the divergence as usual and keeps the records the two share.
#[test]
fn a_log_start_below_the_divergence_keeps_the_shared_records() {
    let (kept, leader_had) = below_log_start_after_power_loss(4, 6, 2);
    assert_eq!(kept.len(), 2, "the shared records below the log start stay");
    assert_eq!(kept, leader_had);
}

/// A follower that starts over at its leader's log start takes its HW there too: its HW
/// from before (the old leader's, 4 here) lay below the new log start, and an HW below
/// the log start breaks invariant 2 (`log start <= HW <= log end`). Found by the
/// `sim_replication` hunt once it checked that invariant on every replica at every step
/// (seeds 51 and 1013 of the first 500).
#[test]
fn a_follower_that_starts_over_at_the_log_start_has_its_hw_there() {
    let c = Cluster::new(2, 1, TruncationMode::LeaderEpoch);
    for i in 0..4 {
        c.replica(0)
            .append(&mut batch(1, 10, i), Acks::Leader, 30_000)
            .unwrap();
    }
    c.replicate(0, &[1]);
    for i in 0..4 {
        c.replica(0)
            .append(&mut batch(1, 20, 100 + i), Acks::Leader, 30_000)
            .unwrap();
    }
    assert_eq!(
        c.replica(0).high_watermark(),
        4,
        "broker 1 never fetched 4..8"
    );
    c.replica(1).become_leader(2, vec![0, 1], vec![1]).unwrap();
    for i in 0..6 {
        c.replica(1)
            .append(&mut batch(1, 30, 200 + i), Acks::Leader, 30_000)
            .unwrap();
    }
    c.replica(1).advance_log_start_offset(8).unwrap();
    c.replica(0).become_follower(2, 1).unwrap();
    c.fetch(0, 1); // the logs part at the leader's log start: broker 0 starts over there
    let follower = c.replica(0);
    assert_eq!(follower.log().log_start_offset(), 8);
    assert_eq!(follower.log().log_end_offset(), 8);
    assert_eq!(follower.high_watermark(), 8);
    c.fetch(0, 1);
    assert_eq!(follower.log().log_end_offset(), 10, "caught up");
    assert_eq!(follower.high_watermark(), 10);
}
