//! Kafka's known failures around leader changes, as scenarios: KIP-279's fast back-to-back
//! leader changes, and KIP-966's "last replica standing".

mod common;

use common::batch;
use common::cluster::{contents, set_isr, Cluster};
use partlog::replica::{Acks, TruncationMode};
use partlog::Error;

/// A leads epoch 1 and writes an offset B never copies; B leads epoch 2 and writes its own
/// batch at that offset; A leads epoch 3 before it ever fetched from B. B must find that
/// its epoch-2 batch is not on A's log (A never heard of epoch 2: the walk-back of
/// KIP-279) and end byte-identical to A.
#[test]
fn kip_279_fast_leader_changes_end_with_identical_logs() {
    let c = Cluster::new(2, 1, TruncationMode::LeaderEpoch);
    c.replica(0)
        .append(&mut batch(1, 10, 0), Acks::Leader, 30_000)
        .unwrap();
    c.replicate(0, &[1]);
    c.replica(0)
        .append(&mut batch(1, 10, 1), Acks::Leader, 30_000)
        .unwrap();

    c.replica(1).become_leader(2, vec![0, 1], vec![1]).unwrap();
    c.replica(0).become_follower(2, 1).unwrap();
    c.replica(1)
        .append(&mut batch(1, 10, 2), Acks::Leader, 30_000)
        .unwrap();

    c.replica(0).become_leader(3, vec![0, 1], vec![0]).unwrap();
    c.replica(1).become_follower(3, 0).unwrap();
    c.replica(0)
        .append(&mut batch(1, 10, 3), Acks::Leader, 30_000)
        .unwrap();
    c.replicate(0, &[1]);

    let a = contents(c.replica(0).log());
    assert_eq!(a.len(), 3);
    assert_eq!(contents(c.replica(1).log()), a);
    assert_eq!(c.replica(0).high_watermark(), 3);
}

/// With min ISR 2, a leader left alone in the ISR does not move the high watermark:
/// `acks=all` is refused, `acks=1` records stay above the HW, so losing them (an unclean
/// crash of the last replica) loses nothing that was acknowledged as committed.
#[test]
fn kip_966_last_replica_standing_commits_nothing_alone() {
    let mut c = Cluster::new(2, 2, TruncationMode::LeaderEpoch);
    let h = c
        .replica(0)
        .append(&mut batch(2, 10, 0), Acks::All, 30_000)
        .unwrap();
    c.replicate(0, &[1]);
    assert!(h.poll().expect("complete").is_ok());
    c.replica(0).log().flush().unwrap();
    let committed = c.replica(0).high_watermark();
    assert_eq!(committed, 2);

    // Broker 1 falls out of the ISR.
    set_isr(c.replica(0), vec![0]);
    let err = c
        .replica(0)
        .append(&mut batch(1, 10, 1), Acks::All, 30_000)
        .unwrap_err();
    assert!(matches!(err, Error::NotEnoughReplicas { .. }), "{err}");
    c.replica(0)
        .append(&mut batch(3, 10, 2), Acks::Leader, 30_000)
        .unwrap();
    c.replica(0).tick();
    assert_eq!(c.replica(0).high_watermark(), committed, "no HW move alone");
    assert!(c
        .replica(0)
        .read_committed(committed, 1 << 20)
        .unwrap()
        .is_none());

    // The last replica loses its unflushed tail: everything committed is still there.
    c.restart(0, true, committed);
    let after = contents(c.replica(0).log());
    assert!(after.iter().any(|b| b.0 == 0), "{after:?}");
    assert!(c.replica(0).log().log_end_offset() >= committed);
}

/// KIP-966 with an expansion pending: the leader, alone in the confirmed ISR under min ISR
/// 2, takes `acks=1` appends; the follower catches up and the leader proposes it back in.
/// Until the controller confirms that, the HW stays: the controller may refuse it (the
/// follower's session ended), and a leader that then loses its unflushed tail, the only
/// replica that can be elected, would have shown consumers records it no longer has.
/// The HW counted the proposed member towards min ISR and moved.
#[test]
fn kip_966_a_proposed_member_does_not_count_towards_min_isr() {
    let c = Cluster::new(2, 2, TruncationMode::LeaderEpoch);
    let leader = c.replica(0);
    let h = leader
        .append(&mut batch(2, 10, 0), Acks::All, 30_000)
        .unwrap();
    c.replicate(0, &[1]);
    assert!(h.poll().expect("complete").is_ok());
    let committed = leader.high_watermark();
    set_isr(leader, vec![0]);
    leader
        .append(&mut batch(3, 10, 1), Acks::Leader, 30_000)
        .unwrap();
    c.fetch(1, 0);
    c.fetch(1, 0);
    assert_eq!(
        leader.isr_proposal().map(|p| p.isr),
        Some(vec![0, 1]),
        "broker 1 caught up"
    );
    assert_eq!(leader.isr(), Some(vec![0]), "not confirmed");
    assert_eq!(
        leader.high_watermark(),
        committed,
        "no HW move on a proposal"
    );
    assert!(leader.read_committed(committed, 1 << 20).unwrap().is_none());
    // Once the controller takes broker 1 back, the HW passes what both hold.
    set_isr(leader, vec![0, 1]);
    assert_eq!(leader.high_watermark(), leader.log().log_end_offset());
}

/// A follower that copied records past the HW it was told becomes leader alone in its
/// ISR (min ISR 1): it has everything its ISR has, so its HW is its log end at once, as
/// Kafka's `makeLeader` moves it. It stayed where it was until the next append or fetch,
/// which for a partition nobody writes to (or an offsets partition, whose store serves
/// only once its load end is committed, and takes no commit until then) never came.
#[test]
fn a_leader_alone_in_its_isr_commits_its_log_end_when_it_takes_over() {
    let c = Cluster::new(2, 1, TruncationMode::LeaderEpoch);
    c.replica(0)
        .append(&mut batch(3, 10, 0), Acks::Leader, 30_000)
        .unwrap();
    c.fetch(1, 0);
    let follower = c.replica(1);
    assert_eq!(follower.log().log_end_offset(), 3);
    assert_eq!(
        follower.high_watermark(),
        0,
        "the leader's HW when it answered"
    );
    follower.become_leader(2, vec![0, 1], vec![1]).unwrap();
    assert_eq!(follower.high_watermark(), 3);
    assert!(follower.read_committed(0, 1 << 20).unwrap().is_some());
    // Not so with the old leader still in the ISR: it may lack nothing, but it has not
    // said so to this leader.
    let c = Cluster::new(2, 1, TruncationMode::LeaderEpoch);
    c.replica(0)
        .append(&mut batch(3, 10, 0), Acks::Leader, 30_000)
        .unwrap();
    c.fetch(1, 0);
    c.replica(1)
        .become_leader(2, vec![0, 1], vec![0, 1])
        .unwrap();
    assert_eq!(c.replica(1).high_watermark(), 0);
}

/// A follower's HW is the one its leader's last answer gave, as Kafka's follower takes it:
/// a new leader's HW lags its predecessor's until every ISR member has fetched from it,
/// and meanwhile its followers show its HW, not a higher one they heard before.
#[test]
fn a_follower_takes_a_new_leaders_lower_high_watermark() {
    let c = Cluster::new(3, 1, TruncationMode::LeaderEpoch);
    c.replica(0)
        .append(&mut batch(3, 10, 0), Acks::Leader, 30_000)
        .unwrap();
    c.replicate(0, &[1, 2]);
    c.replica(0)
        .append(&mut batch(2, 10, 1), Acks::Leader, 30_000)
        .unwrap();
    // Broker 2 copies the batch and reports it before broker 1 does: broker 1's report
    // moves the HW, and broker 1 alone fetches again and hears of it.
    for follower in [2, 1, 2, 1, 1] {
        c.fetch(follower, 0);
    }
    let hws = |c: &Cluster| [0, 1, 2].map(|b| c.replica(b).high_watermark());
    assert_eq!(hws(&c), [5, 5, 3]);

    // A leader change with all three alive and in sync: broker 2 starts at its own HW.
    c.replica(2)
        .become_leader(2, vec![0, 1, 2], vec![0, 1, 2])
        .unwrap();
    for b in [0, 1] {
        c.replica(b).become_follower(2, 2).unwrap();
    }
    c.fetch(1, 2);
    // Broker 0 has not fetched: the new leader cannot count its log end yet.
    assert_eq!(c.replica(2).high_watermark(), 3);
    assert_eq!(
        c.replica(1).high_watermark(),
        3,
        "the leader's HW, not the old one"
    );
    // Broker 0's report moves it; the answer carrying it back is each one's next.
    c.fetch(0, 2);
    assert_eq!(hws(&c), [3, 3, 5]);
    c.fetch(0, 2);
    c.fetch(1, 2);
    assert_eq!(hws(&c), [5, 5, 5]);
}
