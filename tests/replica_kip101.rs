//! KIP-101's two scenarios, each both ways: the anomaly in high-watermark mode (Kafka
//! before KIP-101) and its absence in leader-epoch mode.
//!
//! 1. A follower has an acknowledged record but learned the high watermark that covers it
//!    only one fetch later; it restarts, the leader dies, and the follower is elected.
//!    Truncating to the high watermark on restart throws the record away.
//! 2. Both brokers lose power; the one that had less comes back first, leads and writes
//!    under a new epoch at an offset the other still holds an old record at. Without
//!    epochs the two logs keep different records at that offset.

mod common;

use common::batch;
use common::cluster::{contents, Cluster};
use partlog::replica::{Acks, TruncationMode};

/// Two replicas, broker 0 leading; one record acknowledged with `acks=all` on both.
fn first_record_acknowledged(mode: TruncationMode) -> Cluster {
    let c = Cluster::new(2, 1, mode);
    let first = c
        .replica(0)
        .append(&mut batch(1, 10, 0), Acks::All, 30_000)
        .unwrap();
    c.replicate(0, &[1]);
    assert!(first.poll().expect("complete").is_ok());
    c
}

/// Runs the scenario; returns whether the record acknowledged second survived.
fn second_ack_survives(mode: TruncationMode) -> bool {
    let mut c = first_record_acknowledged(mode);
    let second = c
        .replica(0)
        .append(&mut batch(1, 10, 1), Acks::All, 30_000)
        .unwrap();
    // The follower copies the record, then its next fetch tells the leader, which
    // acknowledges it; the follower learns the new HW only at the fetch after that.
    c.fetch(1, 0);
    c.fetch(1, 0);
    let acked = second.poll().expect("complete").expect("acknowledged");
    assert_eq!(c.replica(0).high_watermark(), 2);
    assert_eq!(c.replica(1).high_watermark(), 1, "the follower's HW lags");
    c.replica(1).log().flush().unwrap();

    // The follower restarts with its checkpointed HW and follows the same leader...
    c.restart(1, false, 1);
    c.replica(1).become_follower(1, 0).unwrap();
    // ...which dies before the follower fetches again; the follower is elected.
    c.replica(1).become_leader(2, vec![0, 1], vec![1]).unwrap();
    contents(c.replica(1).log())
        .iter()
        .any(|(base, _)| *base == acked.first_offset)
}

#[test]
fn kip_101_scenario_1_high_watermark_truncation_loses_an_acknowledged_record() {
    assert!(
        !second_ack_survives(TruncationMode::HighWatermark),
        "the anomaly the high-watermark mode exists to show"
    );
}

#[test]
fn kip_101_scenario_1_leader_epoch_truncation_keeps_it() {
    assert!(second_ack_survives(TruncationMode::LeaderEpoch));
}

/// Runs scenario 2; returns whether the two logs end identical.
fn logs_converge_after_double_power_loss(mode: TruncationMode) -> bool {
    let mut c = first_record_acknowledged(mode);
    for b in 0..2 {
        c.replica(b).log().flush().unwrap();
    }
    c.replica(0)
        .append(&mut batch(1, 10, 1), Acks::All, 30_000)
        .unwrap();
    c.fetch(1, 0);
    c.fetch(1, 0);
    assert_eq!(c.replica(0).high_watermark(), 2);
    // The leader's copy is durable; the follower's is not, and the power loss takes it.
    c.replica(0).log().flush().unwrap();
    c.restart(0, true, 2);
    c.restart(1, true, 1);
    if c.replica(1).log().log_end_offset() > 1 {
        c.replica(1).log().truncate_to(1).unwrap(); // the loss, whatever the disk kept
    }
    // The follower comes back first, leads epoch 2 and writes at offset 1.
    c.replica(1).become_leader(2, vec![0, 1], vec![1]).unwrap();
    c.replica(1)
        .append(&mut batch(1, 10, 2), Acks::Leader, 30_000)
        .unwrap();
    c.replica(0).become_follower(2, 1).unwrap();
    c.replicate(1, &[0]);
    contents(c.replica(0).log()) == contents(c.replica(1).log())
}

#[test]
fn kip_101_scenario_2_high_watermark_truncation_leaves_the_logs_diverged() {
    assert!(!logs_converge_after_double_power_loss(
        TruncationMode::HighWatermark
    ));
}

#[test]
fn kip_101_scenario_2_leader_epoch_truncation_makes_them_identical() {
    assert!(logs_converge_after_double_power_loss(
        TruncationMode::LeaderEpoch
    ));
}

/// `(epoch, start offset)` of each entry of the log's leader-epoch cache.
fn epochs(log: &partlog::log::Log) -> Vec<(i32, i64)> {
    log.epoch_entries()
        .iter()
        .map(|e| (e.epoch, e.start_offset))
        .collect()
}

/// A replica that led an epoch without appending in it, then follows, kept that epoch's
/// entry at its log end. Its fetch carries its last batch's epoch, so the new leader saw
/// no divergence; the first batch it copied (of the epoch before) then dropped every
/// entry from that epoch on, the older epoch's true start included, and it answered later
/// followers that the epoch before ended where that epoch really began: logs that
/// differed below the HW stayed so. Stepping down now drops epochs that start at the log
/// end, as Kafka's follower does through the divergence its cache's latest epoch brings.
#[test]
fn an_epoch_led_without_appends_does_not_stay_in_the_cache_of_a_follower() {
    let c = Cluster::new(3, 1, TruncationMode::LeaderEpoch);
    c.replica(0)
        .append(&mut batch(2, 10, 0), Acks::Leader, 30_000)
        .unwrap();
    c.replicate(0, &[1, 2]);
    // Broker 1 leads epoch 2 and writes; broker 2 copies only its first batch.
    c.replica(1)
        .become_leader(2, vec![0, 1, 2], vec![1, 2])
        .unwrap();
    c.replica(2).become_follower(2, 1).unwrap();
    c.replica(1)
        .append(&mut batch(2, 10, 2), Acks::Leader, 30_000)
        .unwrap();
    c.fetch(2, 1);
    c.replica(1)
        .append(&mut batch(2, 10, 4), Acks::Leader, 30_000)
        .unwrap();
    assert_eq!(epochs(c.replica(2).log()), vec![(1, 0), (2, 2)]);
    // Broker 2 leads epoch 3 without appending, then follows broker 1 in epoch 4.
    c.replica(2)
        .become_leader(3, vec![0, 1, 2], vec![2])
        .unwrap();
    assert_eq!(epochs(c.replica(2).log()), vec![(1, 0), (2, 2), (3, 4)]);
    c.replica(1)
        .become_leader(4, vec![0, 1, 2], vec![1, 2])
        .unwrap();
    c.replica(2).become_follower(4, 1).unwrap();
    c.replicate(1, &[2]);
    assert_eq!(contents(c.replica(2).log()), contents(c.replica(1).log()));
    assert_eq!(
        epochs(c.replica(2).log()),
        vec![(1, 0), (2, 2)],
        "the follower's cache holds epoch 2 from where it began"
    );
    assert_eq!(
        c.replica(2).log().end_offset_for_epoch(1),
        (1, 2),
        "epoch 1 ends where epoch 2 began"
    );
}
