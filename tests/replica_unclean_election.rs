//! Unclean leader election: off by default (no in-sync replica alive means no leader),
//! allowed when the embedder forces it, and then reported as unclean.

mod common;

use common::batch;
use partlog::cluster::{Cluster, ClusterOptions};
use partlog::replica::Acks;
use partlog::Error;

/// Three brokers, min ISR 2: three batches acknowledged with `acks=all`, then followers 1
/// and 2 (their logs flushed) die, leaving broker 0 alone in the ISR, where it takes one `acks=1` batch.
fn last_replica_standing(unclean: bool) -> Cluster {
    let mut c = Cluster::new(ClusterOptions {
        unclean_leader_election: unclean,
        ..ClusterOptions::default()
    })
    .unwrap();
    for i in 0..3 {
        let h = c.produce(&mut batch(2, 10, i), Acks::All, 30_000).unwrap();
        for _ in 0..3 {
            c.replicate().unwrap();
        }
        assert!(h.poll().unwrap().is_ok());
    }
    for follower in [1, 2] {
        c.replica(follower).unwrap().log().flush().unwrap();
    }
    assert_eq!(c.kill(1).unwrap(), None);
    assert_eq!(c.kill(2).unwrap(), None);
    assert_eq!(c.isr(), &[0]);
    c.produce(&mut batch(1, 10, 9), Acks::Leader, 30_000)
        .unwrap();
    assert!(matches!(
        c.produce(&mut batch(1, 10, 9), Acks::All, 30_000),
        Err(Error::NotEnoughReplicas {
            isr: 1,
            required: 2
        })
    ));
    c
}

#[test]
fn without_unclean_election_the_partition_waits_for_its_last_in_sync_replica() {
    let mut c = last_replica_standing(false);
    assert_eq!(c.kill(0).unwrap(), None, "no in-sync replica to elect");
    assert_eq!(c.leader(), None);
    c.restart(1).unwrap();
    assert_eq!(c.leader(), None, "broker 1 is not in the ISR");
    assert!(matches!(
        c.produce(&mut batch(1, 10, 0), Acks::Leader, 30_000),
        Err(Error::LeaderNotAvailable)
    ));
    assert!(matches!(c.elect(false), Err(Error::LeaderNotAvailable)));

    // The last in-sync replica returns and leads again, cleanly: nothing is lost.
    c.restart(0).unwrap();
    assert_eq!(c.leader(), Some(0));
    let end = c.replica(0).unwrap().log().log_end_offset();
    for _ in 0..4 {
        c.replicate().unwrap();
    }
    assert_eq!(c.replica(1).unwrap().log().log_end_offset(), end);
}

#[test]
fn a_forced_unclean_election_is_allowed_and_reported() {
    let mut c = last_replica_standing(false);
    let acked = c.batches_of(0, 6).unwrap();
    assert_eq!(c.kill(0).unwrap(), None);
    c.restart(1).unwrap();
    let election = c.elect(true).unwrap();
    assert_eq!(election.leader, 1);
    assert!(election.unclean, "the election is reported unclean");
    assert_eq!(election.isr, vec![1]);

    // What min ISR 2 acknowledged survives (KIP-966): the lone leader never moved the HW
    // past it. The `acks=1` batch only broker 0 had is gone once broker 0 follows.
    c.restart(0).unwrap();
    c.restart(2).unwrap();
    for _ in 0..6 {
        c.replicate().unwrap();
    }
    assert_eq!(c.batches_of(1, 6).unwrap(), acked);
    assert_eq!(c.replica(0).unwrap().log().log_end_offset(), 6);
    assert_eq!(c.isr(), &[0, 1, 2]);
    assert!(c.replicas_identical_below_hw().unwrap());
}

#[test]
fn with_unclean_election_on_the_controller_elects_at_once() {
    let mut c = last_replica_standing(true);
    c.restart(2).unwrap();
    let election = c.kill(0).unwrap().expect("an unclean election");
    assert_eq!(election.leader, 2);
    assert!(election.unclean);
    assert!(c
        .produce(&mut batch(1, 10, 0), Acks::Leader, 30_000)
        .is_ok());
}
