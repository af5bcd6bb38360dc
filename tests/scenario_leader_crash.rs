//! The leader crashes with `acks=all` appends acknowledged and more in flight: nothing
//! acknowledged is lost, an in-sync follower takes over, and producing goes on at the
//! offset where the committed log ended.

mod common;

use common::{batch, produce_acked};
use partlog::cluster::{Cluster, ClusterOptions};
use partlog::replica::Acks;
use partlog::Error;

#[test]
fn leader_crash_with_acks_all_loses_nothing_and_the_new_leader_continues() {
    let mut c = Cluster::new(ClusterOptions::default()).unwrap();
    let mut acked = produce_acked(&mut c, 20);
    // In flight when the power goes: written on the leader, not yet replicated.
    let in_flight = c.produce(&mut batch(3, 30, 99), Acks::All, 30_000).unwrap();
    let committed = c.replica(0).unwrap().high_watermark();

    let election = c.kill(0).unwrap().expect("an in-sync follower is elected");
    assert!(!election.unclean);
    assert_eq!(election.epoch, 2);
    assert!(matches!(
        in_flight.poll(),
        Some(Err(Error::NotLeaderOrFollower))
    ));
    let leader = election.leader;
    for b in [1, 2] {
        let told = c.replica(b).unwrap().leader_id();
        assert_eq!(
            told,
            Some(leader as i32),
            "broker {b} follows the new leader"
        );
    }
    let end = c.replica(leader).unwrap().log().log_end_offset();
    assert!(end >= committed, "the new leader has everything committed");

    // The new leader continues at its log end.
    let more = produce_acked(&mut c, 10);
    assert_eq!(more[0].0, end);
    acked.extend(more);

    let hw = c.replica(leader).unwrap().high_watermark();
    let on_leader = c.batches_of(leader, hw).unwrap();
    for batch in &acked {
        assert!(on_leader.contains(batch), "acknowledged {batch:?} lost");
    }
    // Broker 0 comes back and ends identical below the HW.
    c.restart(0).unwrap();
    for _ in 0..6 {
        c.replicate().unwrap();
    }
    assert!(c.replicas_identical_below_hw().unwrap());
    assert_eq!(c.isr(), &[0, 1, 2]);
}
