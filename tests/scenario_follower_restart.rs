//! A follower crashes, misses appends, restarts: it recovers, catches up from the leader
//! and rejoins the ISR; meanwhile `acks=all` goes on with the remaining in-sync replicas.
//! And the last in-sync replica, stopped cleanly, leads again when it returns.

mod common;

use common::produce_acked;
use partlog::cluster::{Cluster, ClusterOptions};

#[test]
fn a_follower_restarts_catches_up_and_rejoins_the_isr() {
    let mut c = Cluster::new(ClusterOptions::default()).unwrap();
    produce_acked(&mut c, 10);
    assert_eq!(c.kill(2).unwrap(), None, "a follower's death elects no one");
    assert_eq!(c.isr(), &[0, 1]);

    let while_down = produce_acked(&mut c, 30);
    let report = c.restart(2).unwrap();
    assert!(!report.clean_shutdown);
    let follower = c.replica(2).unwrap().clone();
    let leader_end = c.replica(0).unwrap().log().log_end_offset();
    assert!(follower.log().log_end_offset() < leader_end);

    let mut rounds = 0;
    while !c.isr().contains(&2) {
        c.replicate().unwrap();
        rounds += 1;
        assert!(rounds < 20, "broker 2 never rejoined the ISR");
    }
    c.replicate().unwrap();
    assert_eq!(follower.log().log_end_offset(), leader_end);
    assert_eq!(c.isr(), &[0, 1, 2]);
    let on_follower = c.batches_of(2, leader_end).unwrap();
    for batch in &while_down {
        assert!(on_follower.contains(batch), "{batch:?} missing on broker 2");
    }
    assert!(c.replicas_identical_below_hw().unwrap());
}

/// A clean shutdown keeps the follower's log and checkpointed high watermark: it restarts
/// without recovery and has only the missed appends to fetch.
#[test]
fn a_cleanly_stopped_follower_restarts_without_recovery() {
    let mut c = Cluster::new(ClusterOptions::default()).unwrap();
    produce_acked(&mut c, 10);
    c.replicate().unwrap();
    let hw = c.replica(1).unwrap().high_watermark();
    let end = c.replica(1).unwrap().log().log_end_offset();
    c.shutdown(1).unwrap();
    produce_acked(&mut c, 5);
    let report = c.restart(1).unwrap();
    assert!(report.clean_shutdown);
    let follower = c.replica(1).unwrap().clone();
    assert_eq!(follower.log().log_end_offset(), end);
    assert_eq!(follower.high_watermark(), hw);
    for _ in 0..4 {
        c.replicate().unwrap();
    }
    assert_eq!(c.isr(), &[0, 1, 2]);
    assert!(c.replicas_identical_below_hw().unwrap());
}

/// The last in-sync replica, the leader, shuts down cleanly: the partition has no leader
/// until it comes back, and then it leads again, with everything acknowledged. The
/// controller kept it as the leader while it was down, so that on its return it followed
/// itself and nothing could be produced or elected again.
#[test]
fn the_last_in_sync_leader_stopped_cleanly_leads_again_when_it_returns() {
    let mut c = Cluster::new(ClusterOptions::default()).unwrap();
    let acked = produce_acked(&mut c, 10);
    c.kill(2).unwrap();
    c.kill(1).unwrap();
    assert_eq!(c.isr(), &[0]);
    assert_eq!(c.shutdown(0).unwrap(), None, "no one else may lead");
    assert_eq!(c.leader(), None);
    c.restart(0).unwrap();
    assert_eq!(c.leader(), Some(0));
    let on_leader = c.batches_of(0, i64::MAX).unwrap();
    for batch in &acked {
        assert!(on_leader.contains(batch), "{batch:?} lost");
    }
    c.restart(1).unwrap();
    c.restart(2).unwrap();
    for _ in 0..20 {
        if c.isr().len() == 3 {
            break;
        }
        c.replicate().unwrap();
    }
    assert_eq!(c.isr(), &[0, 1, 2], "the others caught up and rejoined");
    let more = produce_acked(&mut c, 5);
    assert_eq!(more.len(), 5);
    assert!(c.replicas_identical_below_hw().unwrap());
}
