//! Corruption repair: a replica whose committed data fails its CRC gets a good copy from
//! another replica instead of serving the bad one (Kafka halts here, KAFKA-3924).

mod common;

use std::path::Path;

use common::batch;
use partlog::cluster::{Cluster, ClusterOptions};
use partlog::replica::{Acks, ScrubOutcome};

const SEGMENT: &str = "/data/demo-0/00000000000000000000.log";
const BATCHES: i64 = 10;
/// Each test batch holds two records.
const RECORDS: i64 = 2 * BATCHES;

/// Ten `acks=all` batches on all three brokers, the HW known to every one.
fn replicated() -> Cluster {
    let mut c = Cluster::new(ClusterOptions::default()).unwrap();
    for i in 0..BATCHES {
        let h = c.produce(&mut batch(2, 50, i), Acks::All, 30_000).unwrap();
        for _ in 0..3 {
            c.replicate().unwrap();
        }
        assert!(h.poll().unwrap().is_ok());
    }
    c.replicate().unwrap();
    for b in 0..3 {
        assert_eq!(c.replica(b).unwrap().high_watermark(), RECORDS);
    }
    c
}

/// Flips a bit in the value of the seventh batch of broker `b`'s segment; returns that
/// batch's base offset.
fn damage_seventh_batch(c: &Cluster, b: usize) -> i64 {
    let log = c.replica(b).unwrap().log().clone();
    let seventh = 12;
    let position = log.read(seventh, 1, None).unwrap().unwrap().position();
    c.broker(b)
        .disk
        .flip_bit(Path::new(SEGMENT), position + 100, 3)
        .unwrap();
    seventh
}

fn settle(c: &mut Cluster) {
    for _ in 0..4 {
        c.replicate().unwrap();
    }
}

#[test]
fn a_follower_cuts_before_its_damaged_batch_and_fetches_it_again() {
    let mut c = replicated();
    let intact = c.batches_of(0, RECORDS).unwrap();
    let bad = damage_seventh_batch(&c, 2);
    let follower = c.replica(2).unwrap().clone();
    assert_eq!(
        follower.scrub().unwrap(),
        ScrubOutcome::Repaired { offset: bad }
    );
    assert_eq!(follower.log().log_end_offset(), bad);
    assert!(follower.high_watermark() <= bad);
    settle(&mut c);
    assert_eq!(c.batches_of(2, RECORDS).unwrap(), intact);
    assert_eq!(follower.scrub().unwrap(), ScrubOutcome::Clean);
}

#[test]
fn a_leader_reports_damage_moves_leadership_and_repairs_as_a_follower() {
    let mut c = replicated();
    let intact = c.batches_of(1, RECORDS).unwrap();
    let bad = damage_seventh_batch(&c, 0);
    let old = c.replica(0).unwrap().clone();
    match old.scrub().unwrap() {
        ScrubOutcome::LeaderCorrupt { offset, reason } => {
            assert_eq!(offset, bad);
            assert!(reason.contains("CRC") || reason.contains("crc"), "{reason}");
        }
        other => panic!("expected the leader to report damage, got {other:?}"),
    }
    // The leader keeps its log until it is told to follow.
    assert_eq!(old.log().log_end_offset(), RECORDS);

    // The embedder moves leadership to an in-sync replica with an intact copy.
    let election = c.elect(false).unwrap();
    assert_ne!(election.leader, 0);
    assert!(!election.unclean);
    assert_eq!(
        old.log().log_end_offset(),
        bad,
        "cut where the damage starts"
    );
    settle(&mut c);
    assert_eq!(c.batches_of(0, RECORDS).unwrap(), intact);
    assert!(c.replicas_identical_below_hw().unwrap());
    for b in 0..3 {
        assert_eq!(c.replica(b).unwrap().scrub().unwrap(), ScrubOutcome::Clean);
    }
}

/// The leader's bad batch goes below its log start (DeleteRecords, or retention) before
/// it is told to follow: the cut at the batch's offset, now below the log start, emptied
/// the whole log and moved its start back (a cut below the start starts the log over),
/// and the replica, still in the ISR, held nothing. The batch is gone: nothing is cut.
#[test]
fn a_leader_whose_bad_batch_went_below_its_log_start_keeps_its_log() {
    let mut c = replicated();
    let bad = damage_seventh_batch(&c, 0);
    let old = c.replica(0).unwrap().clone();
    assert!(matches!(
        old.scrub().unwrap(),
        ScrubOutcome::LeaderCorrupt { offset, .. } if offset == bad
    ));
    let start = bad + 2;
    old.advance_log_start_offset(start).unwrap();
    let election = c.elect(false).unwrap();
    assert_ne!(election.leader, 0);
    assert_eq!(
        (old.log().log_start_offset(), old.log().log_end_offset()),
        (start, RECORDS),
        "nothing cut"
    );
    settle(&mut c);
    // Identical from the old leader's log start (the others kept theirs at 0).
    let hw = c.replica(election.leader).unwrap().high_watermark();
    assert_eq!(hw, RECORDS);
    let from_start = |b: usize| {
        partlog::cluster::batches_between(c.replica(b).unwrap().log(), start, hw).unwrap()
    };
    assert_eq!(from_start(0), from_start(election.leader));
    assert_eq!(old.scrub().unwrap(), ScrubOutcome::Clean);
}

/// Damage above the recovery point is found by recovery at restart: the log is cut there,
/// the checkpointed HW clamped to the new end, and the rest fetched again.
#[test]
fn damage_found_at_recovery_is_fetched_again() {
    let mut c = replicated();
    let intact = c.batches_of(0, RECORDS).unwrap();
    c.broker(1).disk.sync_all(); // durable, but the recovery point was not moved
    let bad = damage_seventh_batch(&c, 1);
    c.kill(1).unwrap();
    let report = c.restart(1).unwrap();
    assert!(report.damage.is_some(), "{report:?}");
    let follower = c.replica(1).unwrap().clone();
    assert_eq!(follower.log().log_end_offset(), bad);
    assert!(follower.high_watermark() <= bad);
    settle(&mut c);
    assert_eq!(c.batches_of(1, RECORDS).unwrap(), intact);
    assert_eq!(c.isr(), &[0, 1, 2]);
}

/// A follower that cut committed records (its repair lies below the HW) leaves the ISR at
/// its next fetch, not after the lag time: until it holds them again the controller could
/// elect it, and the records acknowledged below the HW would be gone from every replica
/// that follows it. It is proposed back once it has caught up.
#[test]
fn a_follower_that_cut_committed_records_leaves_the_isr_until_it_has_them_again() {
    let mut c = replicated();
    let bad = damage_seventh_batch(&c, 2);
    let follower = c.replica(2).unwrap().clone();
    assert_eq!(
        follower.scrub().unwrap(),
        ScrubOutcome::Repaired { offset: bad }
    );
    let report = c.replicate().unwrap();
    assert_eq!(report.isr_changes.first(), Some(&vec![0, 1]), "{report:?}");
    settle(&mut c);
    assert_eq!(c.isr(), &[0, 1, 2][..], "back in once caught up");
    assert_eq!(follower.scrub().unwrap(), ScrubOutcome::Clean);
}

/// The scrub checks what Kafka's `ensureValid` checks, the CRC: a batch a Kafka leader
/// took whose records' offset deltas repeat (its validator does not look at them) is no
/// damage. The scrub walked the records as a leader's append does and reported it, and a
/// follower would have cut it and fetched the same bytes again at every pass.
#[test]
fn a_batch_whose_record_deltas_repeat_is_no_damage_to_the_scrub() {
    use partlog::record::{recompute_crc, BatchBuilder, HEADER_LEN};
    use partlog::replica::{Partition, ReplicaConfig};

    // Two 17-byte records (see `leader_append_validation`): the second's offset delta, at
    // byte 3 of it, made 0 as the first's.
    let mut builder = BatchBuilder::new();
    for _ in 0..2 {
        builder.append(1_000, None, Some(b"0123456789"), &[]);
    }
    let mut odd = builder.build().unwrap();
    assert_eq!(odd.len(), HEADER_LEN + 2 * 17);
    assert_eq!(odd[HEADER_LEN + 17 + 3], 2, "zigzag 1");
    odd[HEADER_LEN + 17 + 3] = 0;
    recompute_crc(&mut odd);
    let batch = partlog::record::Batch::parse(&odd).unwrap();
    assert!(batch.verify_crc().is_ok() && batch.validate().is_err());

    let disk = partlog::io::sim::SimStorage::new(3);
    let clock = std::sync::Arc::new(partlog::ManualClock::new(1_000));
    let mut options = partlog::log::LogOpenOptions::new(disk.storage(), "/data/t-0");
    options.clock = clock.clone();
    let (log, _) = partlog::log::Log::open(options).unwrap();
    log.append_as_follower(&odd).unwrap();
    let replica = Partition::new(std::sync::Arc::new(log), ReplicaConfig::new(0), clock, 0);
    replica.become_leader(1, vec![0], vec![0]).unwrap();
    assert_eq!(replica.high_watermark(), 2);
    assert_eq!(replica.scrub().unwrap(), ScrubOutcome::Clean);
}

/// A follower's scrub cut records below the HW, and the leader dies before the follower's
/// next fetch tells it: the follower is still in the controller's ISR, but the election
/// passes over it, for it would make the others cut what `acks=all` acknowledged away to
/// match it. Asked to lead by an ISR naming others, it refuses, changing nothing; alone
/// (an unclean election's ISR) it leads.
#[test]
fn a_follower_that_cut_committed_records_is_not_elected_before_it_has_them_again() {
    let mut c = replicated();
    let intact = c.batches_of(0, RECORDS).unwrap();
    let bad = damage_seventh_batch(&c, 1);
    let repaired = c.replica(1).unwrap().clone();
    assert_eq!(
        repaired.scrub().unwrap(),
        ScrubOutcome::Repaired { offset: bad }
    );
    assert_eq!(repaired.lacks_committed_records(), Some(RECORDS));
    assert_eq!(c.isr(), &[0, 1, 2][..], "the leader has not heard yet");
    assert!(matches!(
        repaired.become_leader(9, vec![0, 1, 2], vec![0, 1, 2]),
        Err(partlog::Error::LacksCommittedRecords { log_end_offset, high_watermark })
            if (log_end_offset, high_watermark) == (bad, RECORDS)
    ));
    assert_eq!(repaired.leader_epoch(), 1, "nothing changed");

    let election = c.kill(0).unwrap().expect("a new leader");
    assert_eq!(election.leader, 2);
    settle(&mut c);
    assert_eq!(c.batches_of(2, RECORDS).unwrap(), intact);
    assert_eq!(c.batches_of(1, RECORDS).unwrap(), intact);
    assert_eq!(repaired.lacks_committed_records(), None, "fetched back");
}

/// The same for a leader that found its data damaged: it cuts when it follows, and until
/// it has fetched the records back it is passed over (here the controller's ISR still
/// holds it, as nothing took it out), and an ISR of itself alone is taken.
#[test]
fn a_damaged_leader_that_cut_on_following_is_not_elected_before_it_has_them_again() {
    let mut c = replicated();
    let bad = damage_seventh_batch(&c, 0);
    let old = c.replica(0).unwrap().clone();
    assert!(matches!(
        old.scrub().unwrap(),
        ScrubOutcome::LeaderCorrupt { .. }
    ));
    let first = c.elect(false).unwrap();
    assert_eq!(old.log().log_end_offset(), bad);
    assert_eq!(old.lacks_committed_records(), Some(RECORDS));
    // The new leader steps down at once (a controlled shutdown): the other one leads.
    let second = c.shutdown(first.leader).unwrap().expect("a new leader");
    assert_ne!(second.leader, 0);
    assert_eq!(
        c.replica(second.leader).unwrap().log().log_end_offset(),
        RECORDS
    );
    // Alone in its ISR, it may lead: nobody else is said to hold the records.
    old.become_leader(second.epoch + 1, vec![0, 1, 2], vec![0])
        .unwrap();
    assert_eq!(old.lacks_committed_records(), None);
}

/// A repair whose cut fails after the log end came down (here the segment's sync) still
/// marks the replica as lacking the committed records it cut, and brings its HW down to
/// its log end. The error used to return before either: the replica kept an HW past its
/// log end, and an election could pick it, whose followers would then cut the
/// acknowledged records to match it.
#[test]
fn a_repair_whose_cut_fails_midway_still_guards_the_replica() {
    let c = replicated();
    let bad = damage_seventh_batch(&c, 1);
    let repaired = c.replica(1).unwrap().clone();
    let disk = &c.broker(1).disk;
    disk.set_faults(partlog::io::sim::FaultPlan {
        sync_eio: 1.0,
        path_suffix: Some(".log".into()),
        ..Default::default()
    });
    assert!(repaired.scrub().is_err());
    disk.clear_faults();
    assert_eq!(repaired.log().log_end_offset(), bad, "the cut came first");
    assert_eq!(repaired.high_watermark(), bad);
    assert_eq!(repaired.lacks_committed_records(), Some(RECORDS));
    assert!(matches!(
        repaired.become_leader(9, vec![0, 1, 2], vec![0, 1, 2]),
        Err(partlog::Error::LacksCommittedRecords { .. })
    ));
}
