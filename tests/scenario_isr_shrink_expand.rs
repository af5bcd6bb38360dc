//! ISR shrink and expand: a follower cut off by the network is not caught up for
//! `replica.lag.time.max.ms` (30 s) and leaves the ISR; once the network heals it catches
//! up and is proposed back, but only after it reached the start of the leader's epoch
//! (KAFKA-7128). A caught-up follower outside the ISR holds the HW back so that it can
//! join under steady appends (KAFKA-15021).

mod common;

use common::cluster as pair;
use common::{batch, produce_acked};
use partlog::cluster::{Cluster, ClusterOptions};
use partlog::replica::{Acks, TruncationMode, DEFAULT_REPLICA_LAG_TIME_MAX_MS};

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

/// Two replicas with min ISR 1: broker 0 leads, both hold one batch, and the controller
/// then left broker 1 out of the ISR.
fn broker_1_left_out_after_one_batch() -> pair::Cluster {
    let c = pair::Cluster::new(2, 1, TruncationMode::LeaderEpoch);
    let leader = c.replica(0);
    leader
        .append(&mut batch(1, 20, 0), Acks::Leader, 30_000)
        .unwrap();
    c.replicate(0, &[1]);
    pair::set_isr(leader, vec![0]);
    c
}

/// KAFKA-15021: a follower outside the ISR that is caught up holds the HW back, so that
/// it can join under steady appends. With the HW at the leader's end after every append,
/// each fetch it made was below the HW, and it was never proposed back: the partition
/// ran on one copy for as long as the appends went on.
#[test]
fn a_caught_up_follower_outside_the_isr_rejoins_under_steady_appends() {
    // The controller took broker 1 out (as when its session blinked); it fetches on.
    let c = broker_1_left_out_after_one_batch();
    let leader = c.replica(0);
    let mut rejoined = None;
    for i in 1..20 {
        let before = leader.high_watermark();
        leader
            .append(&mut batch(1, 20, i), Acks::Leader, 30_000)
            .unwrap();
        assert!(leader.high_watermark() >= before, "append {i}: never back");
        c.clock.advance_ms(1);
        c.fetch(1, 0);
        if pair::take_proposal(leader) == Some(vec![0, 1]) {
            rejoined = Some(i);
            break;
        }
    }
    // Its first fetch after the controller left it out shows it caught up; the next
    // append waits for it, and the fetch after that holds the HW.
    assert_eq!(rejoined, Some(2), "broker 1 joins at its second fetch");
    c.replicate(0, &[1]);
    assert_eq!(leader.high_watermark(), leader.log().log_end_offset());
}

/// A follower outside the ISR that is not caught up holds nothing back: not one behind
/// for longer than the lag time, nor one a new leader hears from for the first time
/// (its first fetch earns no credit for the time before it, as in Kafka's
/// `resetReplicaState`), however far behind it is.
#[test]
fn a_follower_outside_the_isr_and_behind_does_not_hold_the_hw() {
    let c = pair::Cluster::new(2, 1, TruncationMode::LeaderEpoch);
    let leader = c.replica(0);
    c.replicate(0, &[1]);
    pair::set_isr(leader, vec![0]);
    // Not caught up for longer than the lag time: the HW goes on without it.
    c.clock.advance_ms(DEFAULT_REPLICA_LAG_TIME_MAX_MS + 1);
    for i in 0..3 {
        leader
            .append(&mut batch(1, 20, i), Acks::Leader, 30_000)
            .unwrap();
    }
    assert_eq!(leader.high_watermark(), 3);
    c.fetch(1, 0); // at offset 0, behind
    leader
        .append(&mut batch(1, 20, 3), Acks::Leader, 30_000)
        .unwrap();
    assert_eq!(leader.high_watermark(), 4);

    // Leader again in a new epoch with broker 1 still out: its first fetch, behind.
    for i in 4..8 {
        leader
            .append(&mut batch(1, 20, i), Acks::Leader, 30_000)
            .unwrap();
    }
    leader.become_leader(2, vec![0, 1], vec![0]).unwrap();
    c.replica(1).become_follower(2, 0).unwrap();
    assert_eq!(c.replica(1).log().log_end_offset(), 3);
    c.fetch(1, 0);
    leader
        .append(&mut batch(1, 20, 8), Acks::Leader, 30_000)
        .unwrap();
    assert_eq!(leader.high_watermark(), 9);
}

/// A caught-up follower outside the ISR that stops fetching holds the HW for its lag time
/// at most: `tick` then moves the HW, with no append or fetch to move it, and the
/// `acks=all` append it held completes rather than times out.
#[test]
fn a_tick_moves_the_hw_past_a_silent_follower_outside_the_isr() {
    let c = broker_1_left_out_after_one_batch();
    let leader = c.replica(0);
    leader
        .append(&mut batch(1, 20, 1), Acks::Leader, 30_000)
        .unwrap();
    assert_eq!(leader.high_watermark(), 2, "broker 1 is not caught up");
    // Its next fetch reaches the end the leader had at its previous one: caught up as
    // of then, below the HW (so not proposed). Then it stops.
    c.fetch(1, 0);
    assert_eq!(leader.isr_proposal(), None);
    let waiting = leader
        .append(&mut batch(1, 20, 2), Acks::All, 120_000)
        .unwrap();
    assert!(waiting.poll().is_none(), "the HW waits for broker 1");
    c.clock.advance_ms(DEFAULT_REPLICA_LAG_TIME_MAX_MS / 2);
    leader.tick();
    assert!(waiting.poll().is_none(), "within the lag time");
    c.clock.advance_ms(DEFAULT_REPLICA_LAG_TIME_MAX_MS / 2 + 1);
    leader.tick();
    assert!(waiting.poll().expect("complete").is_ok());
    assert_eq!(leader.high_watermark(), leader.log().log_end_offset());
}
