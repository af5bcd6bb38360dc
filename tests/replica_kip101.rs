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
        .any(|&(base, _)| base == acked.first_offset)
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
