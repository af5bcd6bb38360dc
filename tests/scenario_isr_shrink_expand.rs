//! ISR shrink and expand: a follower cut off by the network is not caught up for
//! `replica.lag.time.max.ms` (30 s) and leaves the ISR; once the network heals it catches
//! up and is proposed back, but only after it reached the start of the leader's epoch
//! (KAFKA-7128).

mod common;

use common::{batch, produce_acked};
use partlog::cluster::{Cluster, ClusterOptions};
use partlog::replica::{Acks, DEFAULT_REPLICA_LAG_TIME_MAX_MS};

#[test]
fn a_cut_off_follower_leaves_the_isr_and_rejoins_after_catching_up() {
    let mut c = Cluster::new(ClusterOptions::default()).unwrap();
    produce_acked(&mut c, 5);
    c.set_isolated(2, true);

    // Within the lag time the follower stays in; acks=all waits for it.
    let waiting = c
        .produce(&mut batch(2, 30, 50), Acks::All, 120_000)
        .unwrap();
    let report = c.replicate().unwrap();
    assert_eq!(report.lost, 1, "broker 2's fetch is lost");
    let report = c.tick(DEFAULT_REPLICA_LAG_TIME_MAX_MS - 1_000).unwrap();
    assert!(report.isr_changes.is_empty());
    c.replicate().unwrap();
    c.replicate().unwrap();
    assert!(
        waiting.poll().is_none(),
        "broker 2 is in the ISR and lacks it"
    );

    // Past it, the leader proposes the shrink; the controller confirms; acks=all completes.
    c.replicate().unwrap();
    let report = c.tick(2_000).unwrap();
    assert_eq!(report.isr_changes, vec![vec![0, 1]]);
    c.replicate().unwrap();
    assert!(waiting.poll().expect("complete").is_ok());
    produce_acked(&mut c, 5);

    // Healed: it catches up and is proposed back.
    c.set_isolated(2, false);
    let mut rejoined = false;
    for _ in 0..5 {
        let report = c.replicate().unwrap();
        if report.isr_changes == vec![vec![0, 1, 2]] {
            rejoined = true;
            break;
        }
    }
    assert!(rejoined, "broker 2 never rejoined");
    assert!(c.replicas_identical_below_hw().unwrap());
}

/// Kafka's `isCaughtUp`: a follower holding everything the leader has stays in the ISR
/// however long ago it fetched, so an idle partition does not shrink its ISR because a
/// fetch stalled. The first append that it lacks brings the lag back into play.
#[test]
fn a_follower_at_the_leaders_end_stays_in_the_isr_while_the_partition_is_idle() {
    let mut c = Cluster::new(ClusterOptions::default()).unwrap();
    produce_acked(&mut c, 5);
    c.replicate().unwrap();
    c.set_isolated(2, true);
    // Neither follower fetches for three lag times (broker 1 has nothing to fetch, since
    // nothing runs `replicate`).
    let report = c.tick(3 * DEFAULT_REPLICA_LAG_TIME_MAX_MS).unwrap();
    assert!(
        report.isr_changes.is_empty(),
        "both followers hold the leader's end: {:?}",
        report.isr_changes
    );

    // An append it lacks: it has not caught up for longer than the lag, and leaves.
    // Broker 1, which fetched neither, copies the append and stays.
    let waiting = c
        .produce(&mut batch(2, 30, 90), Acks::All, 120_000)
        .unwrap();
    c.replicate().unwrap();
    c.replicate().unwrap();
    let report = c.tick(1_000).unwrap();
    assert_eq!(report.isr_changes, vec![vec![0, 1]]);
    c.replicate().unwrap();
    assert!(waiting.poll().expect("complete").is_ok());
}

/// KAFKA-7128: after a leader change, a follower whose log reaches the HW but not the new
/// leader's epoch start is not proposed into the ISR: it could still lack records the
/// new leader had from the old epoch above the HW.
#[test]
fn a_follower_joins_only_after_reaching_the_leaders_epoch_start() {
    let mut c = Cluster::new(ClusterOptions::default()).unwrap();
    produce_acked(&mut c, 3);
    c.replicate().unwrap(); // every follower learns HW 6
    c.replica(2).unwrap().log().flush().unwrap();
    c.kill(2).unwrap();
    // Written on 0 and copied by 1, but not committed: broker 1 would tell the leader it
    // has it only at its next fetch.
    c.produce(&mut batch(2, 30, 70), Acks::Leader, 30_000)
        .unwrap();
    c.replicate().unwrap();
    let election = c.kill(0).unwrap().expect("broker 1 is elected");
    assert_eq!(election.leader, 1);
    let leader = c.replica(1).unwrap().clone();
    assert_eq!(
        (leader.high_watermark(), leader.log().log_end_offset()),
        (6, 8)
    );

    c.restart(2).unwrap();
    assert_eq!(c.replica(2).unwrap().log().log_end_offset(), 6);
    // Its first fetch is at the HW but below the epoch start (8): no proposal.
    let first = c.replicate().unwrap();
    assert!(first.isr_changes.is_empty(), "{first:?}");
    assert_eq!(c.replica(2).unwrap().log().log_end_offset(), 8);
    // At the next it is at the epoch start: proposed and confirmed.
    let second = c.replicate().unwrap();
    assert_eq!(second.isr_changes, vec![vec![1, 2]]);
}
