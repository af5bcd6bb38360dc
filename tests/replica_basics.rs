//! Three in-process replicas of one partition, each on its own simulated disk, with the
//! test carrying fetches between them: `acks=all` completion, the high watermark, the ISR,
//! and a leader failover that loses nothing acknowledged.

mod common;

use std::path::Path;

use common::batch;
use common::cluster::{contents, open_log, set_isr, Cluster};
use partlog::cluster::ControllerIsr;
use partlog::io::sim::SimStorage;
use partlog::record::{set_base_offset, set_partition_leader_epoch};
use partlog::replica::{
    Acks, AppendHandle, FetchRequest, FetchResponse, IsrProposal, Partition, TruncationMode,
};
use partlog::Error;

const TIMEOUT_MS: i64 = 30_000;

#[test]
fn acks_all_completes_once_the_isr_has_the_records() {
    let c = Cluster::new(3, 2, TruncationMode::LeaderEpoch);
    let handle = c
        .replica(0)
        .append(&mut batch(3, 20, 0), Acks::All, TIMEOUT_MS)
        .unwrap();
    assert!(handle.poll().is_none(), "not replicated yet");
    assert_eq!(c.replica(0).high_watermark(), 0);
    // Consumers see nothing above the HW.
    assert!(c.replica(0).read_committed(0, 1 << 20).unwrap().is_none());
    // The first fetches copy the records; the next ones tell the leader they have them.
    c.fetch(1, 0);
    c.fetch(2, 0);
    assert!(handle.poll().is_none());
    c.fetch(1, 0);
    assert!(handle.poll().is_none(), "broker 2 has not confirmed yet");
    c.fetch(2, 0);
    let info = handle.poll().expect("complete").expect("success");
    assert_eq!((info.first_offset, info.last_offset), (0, 2));
    assert_eq!(c.replica(0).high_watermark(), 3);
    assert!(c.replica(0).read_committed(0, 1 << 20).unwrap().is_some());
    // The followers learn the HW at their next fetch.
    c.fetch(1, 0);
    assert_eq!(c.replica(1).high_watermark(), 3);
}

#[test]
fn a_lagging_follower_leaves_the_isr_and_appends_time_out() {
    let c = Cluster::new(3, 2, TruncationMode::LeaderEpoch);
    c.replicate(0, &[1, 2]);
    let handle = c
        .replica(0)
        .append(&mut batch(1, 20, 0), Acks::All, 1_000)
        .unwrap();
    c.clock.advance_ms(2_000);
    c.replica(0).tick();
    assert!(matches!(handle.poll(), Some(Err(Error::RequestTimedOut))));
    c.fetch(1, 0);
    c.clock.advance_ms(31_000);
    c.fetch(1, 0);
    c.replica(0).tick();
    // Broker 2 never fetched in 33 s; broker 1 is caught up.
    assert_eq!(c.replica(0).isr_proposal().map(|p| p.isr), Some(vec![0, 1]));
}

/// The leader dies after `acks=all` appends and an unreplicated `acks=1` one; an in-sync
/// follower takes over with a new epoch and producing goes on; the old leader comes back,
/// finds where its log diverged from the new leader's, truncates and catches up.
#[test]
fn failover_loses_nothing_acknowledged_and_the_logs_converge() {
    let mut c = Cluster::new(3, 2, TruncationMode::LeaderEpoch);
    let mut acked = Vec::new();
    for i in 0..5 {
        let h = c
            .replica(0)
            .append(&mut batch(2, 30, i), Acks::All, TIMEOUT_MS)
            .unwrap();
        c.replicate(0, &[1, 2]);
        let info = h.poll().expect("complete").expect("acked");
        acked.push(info.first_offset);
    }
    // Written on the leader only: never acknowledged with acks=all.
    c.replica(0)
        .append(&mut batch(3, 30, 9), Acks::Leader, TIMEOUT_MS)
        .unwrap();
    c.replica(0).log().flush().unwrap();

    // Broker 0 dies (power loss); broker 1 leads epoch 2 with broker 2.
    c.brokers[0].disk.crash();
    c.replica(1)
        .become_leader(2, vec![0, 1, 2], vec![1, 2])
        .unwrap();
    c.replica(2).become_follower(2, 1).unwrap();
    for i in 0..3 {
        let h = c
            .replica(1)
            .append(&mut batch(1, 30, 20 + i), Acks::All, TIMEOUT_MS)
            .unwrap();
        c.replicate(1, &[2]);
        acked.push(h.poll().expect("complete").expect("acked").first_offset);
    }

    // Broker 0 restarts, follows epoch 2, truncates where it diverged and catches up.
    c.restart(0, false, 0);
    c.replica(0).become_follower(2, 1).unwrap();
    c.replicate(1, &[0, 2]);

    let leader = contents(c.replica(1).log());
    for r in [0, 2] {
        assert_eq!(contents(c.replica(r).log()), leader, "replica {r}");
    }
    let bases: Vec<i64> = leader.iter().map(|b| b.0).collect();
    for offset in acked {
        assert!(
            bases.contains(&offset),
            "acknowledged batch at {offset} lost"
        );
    }
    assert_eq!(
        c.replica(1).high_watermark(),
        c.replica(1).log().log_end_offset()
    );
}

/// The network may deliver an answer twice, late, or after a newer one: a follower applies
/// only the answer to the fetch it would send now.
#[test]
fn duplicated_and_late_fetch_answers_are_ignored() {
    let c = Cluster::new(3, 2, TruncationMode::LeaderEpoch);
    c.replica(0)
        .append(&mut batch(2, 20, 0), Acks::Leader, TIMEOUT_MS)
        .unwrap();
    let early = c
        .replica(0)
        .fetch(&c.replica(1).fetch_request(1 << 20))
        .unwrap();
    assert!(c.replica(1).apply_fetch(&early).unwrap());
    assert!(!c.replica(1).apply_fetch(&early).unwrap(), "a duplicate");
    let end = c.replica(1).log().log_end_offset();
    c.replica(0)
        .append(&mut batch(1, 20, 0), Acks::Leader, TIMEOUT_MS)
        .unwrap();
    let request = c.replica(1).fetch_request(1 << 20);
    let newer = c.replica(0).fetch(&request).unwrap();
    assert!(c.replica(1).apply_fetch(&newer).unwrap());
    assert!(!c.replica(1).apply_fetch(&early).unwrap(), "late");
    assert_eq!(c.replica(1).log().log_end_offset(), end + 1);
}

/// The answer to a fetch from offset 2 with last epoch 1 arrives late, after the follower
/// truncated (on a copy of the same answer) and fetched back up to offset 2, now with last
/// epoch 2. Same offset, same leader epoch: only the last fetched epoch tells that the
/// answer is for another log. Applied, it would cut the follower back to 0 and take
/// records the leader counts in its high watermark (the simulation's seed 108862).
#[test]
fn a_late_diverging_answer_does_not_cut_a_log_fetched_back_to_the_same_offset() {
    let c = Cluster::new(3, 2, TruncationMode::LeaderEpoch);
    // Epoch 1: broker 2 copies offsets 0..2 from broker 0; broker 1 gets nothing.
    c.replica(0)
        .append(&mut batch(2, 20, 0), Acks::Leader, TIMEOUT_MS)
        .unwrap();
    c.fetch(2, 0);
    // Epoch 2: broker 1 leads with an empty log and writes its own offsets 0..2.
    c.replica(1)
        .become_leader(2, vec![0, 1, 2], vec![1, 2])
        .unwrap();
    c.replica(2).become_follower(2, 1).unwrap();
    c.replica(1)
        .append(&mut batch(2, 20, 7), Acks::Leader, TIMEOUT_MS)
        .unwrap();
    let request = c.replica(2).fetch_request(1 << 20);
    assert_eq!((request.fetch_offset, request.last_fetched_epoch), (2, 1));
    let late = c.replica(1).fetch(&request).unwrap();
    assert!(late.diverging.is_some(), "epoch 1 is not the leader's");
    let now = c.replica(1).fetch(&request).unwrap();
    assert!(c.replica(2).apply_fetch(&now).unwrap());
    assert_eq!(
        c.replica(2).log().log_end_offset(),
        0,
        "cut where the logs part"
    );
    c.fetch(2, 1);
    let fetched = contents(c.replica(2).log());
    assert_eq!(fetched, contents(c.replica(1).log()));
    assert_eq!(c.replica(2).log().log_end_offset(), 2);

    assert!(!c.replica(2).apply_fetch(&late).unwrap(), "a late answer");
    assert_eq!(contents(c.replica(2).log()), fetched);
}

/// An out-of-range answer arrives late, after the follower already cut back to the
/// leader's end on a copy of it and fetched on: it does not cut the follower again.
/// (High-watermark mode, where a follower ahead of a new leader meets this answer; that
/// the two logs then differ below offset 3 is that mode's KIP-101 anomaly.)
#[test]
fn a_late_out_of_range_answer_is_ignored() {
    let c = Cluster::new(3, 2, TruncationMode::HighWatermark);
    // Broker 1 holds offsets 0..5, below its high watermark, that broker 2 never got.
    set_isr(c.replica(0), vec![0, 1]);
    for i in 0..5 {
        c.replica(0)
            .append(&mut batch(1, 20, i), Acks::Leader, TIMEOUT_MS)
            .unwrap();
    }
    for _ in 0..3 {
        c.fetch(1, 0);
    }
    assert_eq!(c.replica(1).high_watermark(), 5);
    // Broker 2 leads (an unclean election) and writes offsets 0..3 of its own.
    c.replica(2)
        .become_leader(2, vec![0, 1, 2], vec![1, 2])
        .unwrap();
    c.replica(1).become_follower(2, 2).unwrap();
    c.replica(2)
        .append(&mut batch(3, 20, 7), Acks::Leader, TIMEOUT_MS)
        .unwrap();
    let request = c.replica(1).fetch_request(1 << 20);
    let (log_start_offset, log_end_offset) = out_of_range(c.replica(2), &request);
    let answer = |r: &Partition| {
        r.handle_out_of_range(&request, log_start_offset, log_end_offset)
            .unwrap()
    };
    assert!(answer(c.replica(1)));
    assert_eq!(c.replica(1).log().log_end_offset(), 3);
    c.replica(2)
        .append(&mut batch(4, 20, 9), Acks::Leader, TIMEOUT_MS)
        .unwrap();
    c.fetch(1, 2);
    assert_eq!(c.replica(1).log().log_end_offset(), 7);
    let fetched = contents(c.replica(1).log());
    assert!(!answer(c.replica(1)), "a late answer");
    assert_eq!(contents(c.replica(1).log()), fetched);

    // Made leader, it takes no answer to the fetch it sent as a follower: its log is cut
    // by no fetch answer (it was, under its own appends, when it could lead the epoch it
    // had followed in, which is refused now).
    let request = c.replica(1).fetch_request(1 << 20);
    let err = (c.replica(1))
        .become_leader(2, vec![0, 1, 2], vec![1])
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRequest(_)), "{err}");
    c.replica(1)
        .become_leader(3, vec![0, 1, 2], vec![1])
        .unwrap();
    let err = c
        .replica(1)
        .handle_out_of_range(&request, 0, 0)
        .unwrap_err();
    assert!(matches!(err, Error::NotLeaderOrFollower), "{err}");
    assert_eq!(contents(c.replica(1).log()), fetched);
}

/// Appends `segments` one-record batches with `acks=1`, each in a segment of its own.
fn append_rolled(leader: &Partition, segments: usize) {
    for _ in 0..segments {
        leader
            .append(&mut batch(1, 20, 0), Acks::Leader, TIMEOUT_MS)
            .unwrap();
        leader.log().force_roll().unwrap();
    }
}

/// Retention and DeleteRecords never pass the high watermark: a follower may still need
/// those records, and consumers were not allowed to see them yet.
#[test]
fn retention_and_the_log_start_stop_at_the_high_watermark() {
    let c = Cluster::new(3, 2, TruncationMode::LeaderEpoch);
    let leader = c.replica(0);
    append_rolled(leader, 2);
    c.replicate(0, &[1, 2]);
    assert_eq!(leader.high_watermark(), 2);
    append_rolled(leader, 2);
    // Every closed segment is past time retention (7 days); only those below the HW go.
    c.clock.advance_ms(8 * 24 * 3600 * 1000);
    let outcome = leader.delete_old_segments().unwrap();
    assert_eq!(outcome.segments_deleted, 2);
    assert_eq!(leader.log().log_start_offset(), 2);
    let err = leader.advance_log_start_offset(3).unwrap_err();
    assert!(matches!(err, Error::OffsetOutOfRange { .. }), "{err}");
    leader.advance_log_start_offset(2).unwrap();
    // As Kafka's DeleteRecords: -1 is the HW, another negative offset is out of range.
    let err = leader.advance_log_start_offset(-2).unwrap_err();
    assert!(matches!(err, Error::OffsetOutOfRange { .. }), "{err}");
    c.replicate(0, &[1, 2]);
    assert_eq!(leader.high_watermark(), 4);
    leader.advance_log_start_offset(-1).unwrap();
    assert_eq!(leader.log().log_start_offset(), 4);
    // DeleteRecords goes to the leader only: a follower takes its leader's log start.
    let follower = c.replica(1);
    let before = follower.log().log_start_offset();
    let err = follower.advance_log_start_offset(before + 1).unwrap_err();
    assert!(matches!(err, Error::NotLeaderOrFollower), "{err}");
    assert_eq!(follower.log().log_start_offset(), before);
}

/// DeleteRecords on a log that only compacts is a policy violation, as in Kafka: its
/// retention would delete the segments below the new log start, keys and all.
#[test]
fn delete_records_on_a_compacted_log_is_a_policy_violation() {
    let clock = std::sync::Arc::new(partlog::ManualClock::new(1_000_000));
    let disk = SimStorage::new(41);
    let config = partlog::LogConfig {
        cleanup_policy: partlog::CleanupPolicy::Compact,
        ..partlog::LogConfig::default()
    };
    let (log, _) = partlog::log::Log::open(partlog::log::LogOpenOptions {
        config,
        clock: clock.clone(),
        ..partlog::log::LogOpenOptions::new(disk.storage(), "/data/t-0")
    })
    .unwrap();
    let leader = Partition::new(
        std::sync::Arc::new(log),
        partlog::replica::ReplicaConfig::new(0),
        clock,
        0,
    );
    leader.become_leader(1, vec![0], vec![0]).unwrap();
    let mut b = common::keyed_batch(&[(b"k".to_vec(), Some(b"v".to_vec()))], 1);
    leader.append(&mut b, Acks::Leader, TIMEOUT_MS).unwrap();
    assert_eq!(leader.high_watermark(), 1);
    let err = leader.advance_log_start_offset(1).unwrap_err();
    assert!(matches!(err, Error::PolicyViolation(_)), "{err}");
    assert_eq!(leader.log().log_start_offset(), 0);
}

/// DeleteRecords is done on every live replica once the leader's low watermark reaches
/// it: the followers take the new log start with one fetch and report it with the next.
/// A follower that stopped fetching for `replica_lag_time_max_ms` and left the ISR no
/// longer holds it back.
#[test]
fn the_low_watermark_follows_the_followers_log_starts() {
    let c = Cluster::new(3, 2, TruncationMode::LeaderEpoch);
    let leader = c.replica(0);
    append_rolled(leader, 4);
    c.replicate(0, &[1, 2]);
    assert_eq!(leader.low_watermark(), Some(0));
    assert_eq!(c.replica(1).low_watermark(), None, "a follower has none");
    leader.advance_log_start_offset(3).unwrap();
    assert_eq!(
        leader.low_watermark(),
        Some(0),
        "the followers still hold 0..3"
    );
    c.fetch(1, 0); // takes the log start
    assert_eq!(c.replica(1).log().log_start_offset(), 3);
    assert_eq!(leader.low_watermark(), Some(0), "told at its next fetch");
    c.fetch(1, 0);
    c.fetch(2, 0);
    assert_eq!(
        leader.low_watermark(),
        Some(0),
        "broker 2 has not reported 3 yet"
    );
    c.fetch(2, 0);
    assert_eq!(leader.low_watermark(), Some(3));
    // Broker 2 stops fetching; once it has been silent for the lag time and left the ISR
    // it no longer counts, and broker 1's report decides. (It leaves once it lacks an
    // append: a follower at the leader's end stays in the ISR, however quiet.)
    leader.advance_log_start_offset(4).unwrap();
    leader
        .append(&mut batch(1, 20, 1), Acks::Leader, TIMEOUT_MS)
        .unwrap();
    c.fetch(1, 0);
    c.fetch(1, 0);
    assert_eq!(leader.low_watermark(), Some(3));
    c.clock.advance_ms(31_000);
    c.fetch(1, 0);
    assert_eq!(
        leader.low_watermark(),
        Some(3),
        "in the ISR, broker 2 may be elected"
    );
    leader.tick();
    assert_eq!(leader.isr_proposal().map(|p| p.isr), Some(vec![0, 1]));
    assert_eq!(
        leader.low_watermark(),
        Some(3),
        "until the shrink is confirmed"
    );
    set_isr(leader, vec![0, 1]);
    assert_eq!(leader.low_watermark(), Some(4));
    // A diverging answer leaves the follower's state as it was (KAFKA-13141).
    let mut request = c.replica(1).fetch_request(1 << 20);
    request.last_fetched_epoch = 7;
    request.log_start_offset = 0;
    assert!(leader.fetch(&request).unwrap().diverging.is_some());
    assert_eq!(leader.low_watermark(), Some(4));
}

/// A new leader has heard no follower's log start: until each live follower has fetched
/// from it, the low watermark is -1 (Kafka's unknown offset), and DeleteRecords is not
/// done, since a follower it has not heard from may still hold the records. One that stays
/// silent for `replica_lag_time_max_ms` and leaves the ISR no longer counts.
#[test]
fn a_new_leader_waits_for_every_live_follower_to_report_its_log_start() {
    let c = Cluster::new(3, 2, TruncationMode::LeaderEpoch);
    append_rolled(c.replica(0), 4);
    c.replicate(0, &[1, 2]);
    c.replica(0).advance_log_start_offset(3).unwrap();
    c.replicate(0, &[1, 2]); // take the log start, and report it
    assert_eq!(c.replica(0).low_watermark(), Some(3));
    // Broker 1 takes over, knowing nothing of the others' log starts.
    let leader = c.replica(1);
    leader
        .become_leader(2, vec![0, 1, 2], vec![0, 1, 2])
        .unwrap();
    c.replica(0).become_follower(2, 1).unwrap();
    c.replica(2).become_follower(2, 1).unwrap();
    assert_eq!(
        leader.low_watermark(),
        Some(-1),
        "no follower heard from yet"
    );
    c.fetch(2, 1);
    assert_eq!(
        leader.low_watermark(),
        Some(-1),
        "broker 0 not heard from yet"
    );
    c.fetch(0, 1);
    assert_eq!(leader.low_watermark(), Some(3));
    // A follower that never fetches stops counting once out of the ISR, as one that went
    // silent does.
    leader
        .become_leader(3, vec![0, 1, 2], vec![0, 1, 2])
        .unwrap();
    c.replica(0).become_follower(3, 1).unwrap();
    c.replica(2).become_follower(3, 1).unwrap();
    c.fetch(0, 1);
    assert_eq!(
        leader.low_watermark(),
        Some(-1),
        "broker 2 not heard from yet"
    );
    c.clock.advance_ms(31_000);
    c.fetch(0, 1);
    assert_eq!(
        leader.low_watermark(),
        Some(-1),
        "in the ISR, broker 2 may be elected"
    );
    leader.tick();
    set_isr(leader, vec![0, 1]);
    assert_eq!(leader.low_watermark(), Some(3));
}

/// Broker 0 leads with the batches 0..=4 and 5..=9 and its log start at 7, inside the
/// second (DeleteRecords); broker 2 lost everything and started over at 7, empty.
fn follower_at_a_log_start_inside_a_batch() -> Cluster {
    let mut c = Cluster::new(3, 2, TruncationMode::LeaderEpoch);
    set_isr(c.replica(0), vec![0, 1]);
    for i in 0..2 {
        c.replica(0)
            .append(&mut batch(5, 20, i), Acks::Leader, TIMEOUT_MS)
            .unwrap();
    }
    c.replicate(0, &[1]);
    assert_eq!(c.replica(0).high_watermark(), 10);
    c.replica(0).advance_log_start_offset(7).unwrap();
    c.restart(2, true, 0);
    c.replica(2).become_follower(1, 0).unwrap();
    let request = c.replica(2).fetch_request(1 << 20);
    let (log_start_offset, log_end_offset) = out_of_range(c.replica(0), &request);
    assert_eq!(log_start_offset, 7);
    let follower = c.replica(2);
    assert!(follower
        .handle_out_of_range(&request, log_start_offset, log_end_offset)
        .unwrap());
    assert_eq!(follower.log().log_end_offset(), 7);
    c
}

/// DeleteRecords may move the leader's log start into the middle of a batch. A follower
/// that starts over there (it was behind the log start) is sent the whole batch, whose
/// first offsets lie below its empty log's end: it starts its log at the batch's base
/// offset instead and appends it (Kafka's `UnexpectedAppendOffsetException` case in
/// `Partition`), and catches up.
#[test]
fn a_follower_starting_at_a_log_start_inside_a_batch_takes_the_whole_batch() {
    let c = follower_at_a_log_start_inside_a_batch();
    let follower = c.replica(2);
    // The fetch at 7 brings the batch 5..=9.
    c.fetch(2, 0);
    assert_eq!(follower.log().log_end_offset(), 10);
    assert_eq!(follower.log().log_start_offset(), 7);
    assert_eq!(contents(follower.log()), contents(c.replica(0).log()));
    c.replica(0)
        .append(&mut batch(2, 20, 3), Acks::Leader, TIMEOUT_MS)
        .unwrap();
    c.replicate(0, &[2]);
    assert_eq!(contents(follower.log()), contents(c.replica(0).log()));
    assert_eq!(follower.high_watermark(), c.replica(0).high_watermark());
}

/// A fetched batch across the log end moves it only once its CRC checks: the bytes are
/// read from the leader's files after it answered, and a leader that stepped down since
/// may have cut and rewritten them. Here the batch is damaged on the leader: the answer
/// fails and the follower's log stays as it was.
#[test]
fn a_damaged_batch_across_the_log_end_moves_nothing() {
    let c = follower_at_a_log_start_inside_a_batch();
    damage_leaders_batch_holding(&c, 7);
    let err = broker_2_fetch_fails(&c);
    assert!(matches!(err, Error::InvalidBatch(_)), "{err}");
    let log = c.replica(2).log();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (7, 7));
}

/// Flips a bit inside broker 0's batch that holds `offset`.
fn damage_leaders_batch_holding(c: &Cluster, offset: i64) {
    let log = c.replica(0).log();
    let position = log.read(offset, 1, None).unwrap().unwrap().position();
    let segment = Path::new("/data/t-0/00000000000000000000.log");
    c.brokers[0]
        .disk
        .flip_bit(segment, position + 100, 3)
        .unwrap();
}

/// The error broker 2's fetch from broker 0 fails with as broker 2 applies it.
fn broker_2_fetch_fails(c: &Cluster) -> Error {
    let follower = c.replica(2);
    let response = c
        .replica(0)
        .fetch(&follower.fetch_request(1 << 20))
        .unwrap();
    follower.apply_fetch(&response).unwrap_err()
}

/// An answer whose first batch reaches across the log end cuts the log back to that
/// batch's base before it appends. When the append then fails (here a later batch of the
/// answer is damaged on the leader), the HW comes down to the new log end with it: it was
/// left above the end, where the log start never is and a consumer reading at the HW got
/// `OffsetOutOfRange`.
#[test]
fn a_failed_append_after_a_cut_leaves_the_hw_within_the_log() {
    let c = follower_at_a_log_start_inside_a_batch();
    c.replica(0)
        .append(&mut batch(5, 20, 2), Acks::Leader, TIMEOUT_MS)
        .unwrap();
    damage_leaders_batch_holding(&c, 10);
    let follower = c.replica(2);
    assert_eq!(follower.high_watermark(), 7);
    let err = broker_2_fetch_fails(&c);
    assert!(matches!(err, Error::InvalidBatch(_)), "{err}");
    let log = follower.log();
    let (start, hw, end) = (
        log.log_start_offset(),
        follower.high_watermark(),
        log.log_end_offset(),
    );
    assert!(
        start <= hw && hw <= end,
        "log start {start}, HW {hw}, log end {end}"
    );
}

/// The log start and end that `leader` answers `request` with, which must be out of its
/// range.
fn out_of_range(leader: &Partition, request: &FetchRequest) -> (i64, i64) {
    match leader.fetch(request) {
        Err(Error::OffsetOutOfRange {
            log_start_offset,
            log_end_offset,
            ..
        }) => (log_start_offset, log_end_offset),
        other => panic!("fetch at {}: {other:?}", request.fetch_offset),
    }
}

/// A follower at offset 2 handed, as its leader's answer in epoch 1, a slice whose first
/// batch (offsets 1..=3) reaches across its end and carries `batch_epoch`: the bytes of
/// another log, as a leader that stepped down and took a later leader's batches would
/// hold them where it had answered from. Returns the follower's answer and its log end
/// after.
fn apply_foreign_batch_across_the_end(batch_epoch: i32) -> (partlog::Result<bool>, i64) {
    let c = Cluster::new(3, 2, TruncationMode::LeaderEpoch);
    c.replica(0)
        .append(&mut batch(2, 20, 0), Acks::Leader, TIMEOUT_MS)
        .unwrap();
    c.replicate(0, &[1, 2]);
    let follower = c.replica(1);
    assert_eq!(follower.log().log_end_offset(), 2);
    let elsewhere = open_log(&SimStorage::new(9), &c.clock);
    for (base, records) in [(0, 1), (1, 3)] {
        let mut b = batch(records, 20, 7);
        set_base_offset(&mut b, base);
        set_partition_leader_epoch(&mut b, batch_epoch);
        elsewhere.append_as_follower(&b).unwrap();
    }
    let request = follower.fetch_request(1 << 20);
    let response = FetchResponse {
        fetch_offset: request.fetch_offset,
        last_fetched_epoch: request.last_fetched_epoch,
        leader_epoch: request.leader_epoch,
        records: elsewhere.read(2, 1 << 20, None).unwrap(),
        high_watermark: 2,
        log_start_offset: 0,
        log_end_offset: 4,
        diverging: None,
    };
    let outcome = follower.apply_fetch(&response);
    (outcome, follower.log().log_end_offset())
}

/// Only a batch of the answer's leader epoch or before cuts a follower back: one of a later
/// epoch was written after the answer, by a leader the follower has not heard of yet.
#[test]
fn a_batch_of_a_later_epoch_across_the_log_end_cuts_nothing() {
    let (outcome, end) = apply_foreign_batch_across_the_end(5);
    assert!(
        matches!(outcome, Err(Error::InvalidOffset { .. })),
        "{outcome:?}"
    );
    assert_eq!(end, 2, "the follower's log is as it was");
    // The same batch in the answer's epoch cuts the follower's batch 0..=1 away.
    let (outcome, end) = apply_foreign_batch_across_the_end(1);
    assert!(outcome.unwrap());
    assert_eq!(end, 0);
}

/// A controller's decision that names this broker nowhere, a broker outside the replicas
/// or one broker twice, or an ISR confirmed for another leader epoch, is refused with a
/// typed error, and the replica stays as it was: an ISR member that is no replica would
/// never fetch and hold the HW back for good, and a leader outside its own ISR would never
/// be counted in it.
#[test]
fn role_and_isr_decisions_that_cannot_hold_are_refused() {
    let c = Cluster::new(3, 2, TruncationMode::LeaderEpoch);
    let leader = c.replica(0);
    let refused = |result: Result<(), Error>| {
        let err = result.expect_err("refused");
        assert!(matches!(err, Error::InvalidRequest(_)), "{err}");
    };
    refused(leader.become_leader(2, vec![1, 2], vec![1, 2]));
    refused(leader.become_leader(2, vec![0, 1, 2], vec![1, 2]));
    refused(leader.become_leader(2, vec![0, 1, 2], vec![0, 3]));
    refused(leader.become_leader(2, vec![0, 1, 1], vec![0, 1]));
    refused(leader.become_leader(2, vec![0, 1, 2], vec![0, 0]));
    assert_eq!(leader.leader_epoch(), 1, "still the leader of epoch 1");
    assert_eq!(leader.isr(), Some(vec![0, 1, 2]));
    refused(leader.confirm_isr(leader.leader_epoch(), 1, vec![1, 2]));
    refused(leader.confirm_isr(leader.leader_epoch(), 1, vec![0, 5]));
    refused(leader.confirm_isr(leader.leader_epoch(), 1, vec![0, 1, 0]));
    // A confirmation for another leadership than this one: a stale one could put a
    // lagging follower into the ISR of a later leadership.
    let err = leader.confirm_isr(0, 1, vec![0, 2]).unwrap_err();
    assert!(matches!(err, Error::FencedLeaderEpoch { .. }), "{err}");
    let err = leader.confirm_isr(2, 1, vec![0, 2]).unwrap_err();
    assert!(matches!(err, Error::UnknownLeaderEpoch { .. }), "{err}");
    // The ISR `become_leader` gave is version 0: a controller's change is newer.
    assert_stale_version(leader.confirm_isr(1, 0, vec![0, 2]), 0, 0);
    assert_eq!(leader.isr(), Some(vec![0, 1, 2]), "unchanged");
    assert_eq!(leader.isr_version(), Some(0));
    set_isr(leader, vec![0, 2]);
    assert_eq!(leader.isr(), Some(vec![0, 2]));
    let err = c
        .replica(1)
        .confirm_isr(c.replica(1).leader_epoch(), 1, vec![0, 1])
        .unwrap_err();
    assert!(matches!(err, Error::NotLeaderOrFollower), "{err}");

    // Within an epoch its leader does not change: a follower does not take it over, the
    // leader does not step down, and a follower does not follow another broker. The same
    // decision again changes nothing.
    refused(c.replica(1).become_leader(1, vec![0, 1, 2], vec![1]));
    refused(leader.become_follower(1, 1));
    refused(c.replica(1).become_follower(1, 2));
    c.replica(1)
        .become_follower(1, 0)
        .expect("the same decision again");
    assert_eq!(leader.leader_epoch(), 1);
    assert!(leader.is_leader());
}

/// The controller's decision that made a replica leader, delivered twice: the second
/// changes nothing. It reset the leader: the appends waiting failed (their producers
/// would retry and write twice), the ISR went back to the decision's with version 0, and
/// a late answer of version 1 was then taken again.
#[test]
fn becoming_leader_of_the_same_epoch_again_changes_nothing() {
    let c = Cluster::new(3, 2, TruncationMode::LeaderEpoch);
    let leader = c.replica(0);
    let waiting = leader
        .append(&mut batch(1, 20, 0), Acks::All, TIMEOUT_MS)
        .unwrap();
    set_isr(leader, vec![0, 1]);
    leader
        .become_leader(1, vec![0, 1, 2], vec![0, 1, 2])
        .expect("the same decision again");
    assert!(waiting.poll().is_none(), "still waiting");
    assert_eq!(leader.isr(), Some(vec![0, 1]));
    assert_eq!(leader.isr_version(), Some(1));
    assert_stale_version(leader.confirm_isr(1, 1, vec![0, 1]), 1, 1);
    c.fetch(1, 0);
    c.fetch(1, 0);
    assert!(waiting.poll().expect("complete").is_ok());
    let err = leader.become_leader(1, vec![0, 1], vec![0, 1]).unwrap_err();
    assert!(matches!(err, Error::InvalidRequest(_)), "{err}");
    assert_eq!(leader.leader_epoch(), 1);
}

/// A leader that stays leader in a new epoch keeps its `acks=all` appends waiting, as
/// Kafka's delayed produces stay in their purgatory: they complete once the new epoch's
/// ISR holds them. They failed with `NotLeaderOrFollower` while their records stayed and
/// were committed, so a producer retried and wrote them twice.
#[test]
fn a_leader_again_in_a_new_epoch_keeps_its_appends_waiting() {
    let c = Cluster::new(3, 2, TruncationMode::LeaderEpoch);
    let leader = c.replica(0);
    let waiting = leader
        .append(&mut batch(2, 20, 0), Acks::All, TIMEOUT_MS)
        .unwrap();
    leader
        .become_leader(2, vec![0, 1, 2], vec![0, 1, 2])
        .expect("a new epoch, the same leader");
    for f in [1, 2] {
        c.replica(f).become_follower(2, 0).unwrap();
    }
    assert!(waiting.poll().is_none(), "still waiting");
    c.replicate(0, &[1, 2]);
    let info = waiting.poll().expect("complete").expect("acknowledged");
    assert_eq!((info.first_offset, info.last_offset), (0, 1));
    assert_eq!(leader.high_watermark(), 2);
}

/// While a change of the ISR awaits the controller's answer, the HW waits for a follower
/// about to join it, and the proposal stands: a follower that goes quiet meanwhile is not
/// proposed out on top of it, since the controller may already have taken the first
/// change. An `acks=all` append completes only once broker 2 has it too, so that the
/// controller's answer cannot make broker 2 an in-sync replica without the acknowledged
/// record; the shrink is proposed once the answer came.
#[test]
fn a_pending_isr_change_holds_the_hw_to_both_sets() {
    let c = Cluster::new(3, 2, TruncationMode::LeaderEpoch);
    let leader = c.replica(0);
    set_isr(leader, vec![0, 1]);
    broker_2_catches_up(&c);
    let expand = IsrProposal {
        leader_epoch: 1,
        isr_version: 1,
        isr: vec![0, 1, 2],
    };
    assert_eq!(
        leader.isr_proposal(),
        Some(expand.clone()),
        "broker 2 caught up"
    );
    // Broker 1 goes quiet; broker 2 keeps fetching; the proposal stands.
    c.clock.advance_ms(31_000);
    c.fetch(2, 0);
    leader.tick();
    assert_eq!(leader.isr_proposal(), Some(expand), "no change on top");
    assert_eq!(leader.isr(), Some(vec![0, 1]), "not confirmed yet");
    let end = leader.log().log_end_offset();
    let handle = all_fetched_by_broker_1(&c);
    assert_eq!(
        leader.high_watermark(),
        end,
        "broker 2, about to be in sync, has not fetched the append"
    );
    assert!(handle.poll().is_none());
    c.fetch(2, 0);
    c.fetch(2, 0);
    assert!(handle.poll().expect("complete").is_ok());
    // The controller took the change; broker 1, quiet for the lag time and lacking the
    // last append, is proposed out.
    leader
        .confirm_isr(1, 2, vec![0, 1, 2])
        .expect("confirm ISR");
    leader
        .append(&mut batch(1, 20, 2), Acks::Leader, TIMEOUT_MS)
        .unwrap();
    c.fetch(2, 0);
    c.fetch(2, 0);
    c.clock.advance_ms(31_000);
    c.fetch(2, 0);
    leader.tick();
    let shrink = IsrProposal {
        leader_epoch: 1,
        isr_version: 2,
        isr: vec![0, 2],
    };
    assert_eq!(leader.isr_proposal(), Some(shrink));
}

/// The controller's answers carry the ISR's version, and one the network delayed past a
/// later one is refused: here the controller drops broker 2 (version 1), then takes it
/// back in on the leader's proposal (version 2), and a copy of the first answer arrives
/// last. Taken, it would put the leader back at an ISR without broker 2, whose HW would
/// pass broker 2 while the controller could elect it.
#[test]
fn a_late_isr_answer_does_not_take_back_a_later_one() {
    let c = Cluster::new(3, 2, TruncationMode::LeaderEpoch);
    let leader = c.replica(0);
    leader
        .confirm_isr(1, 1, vec![0, 1])
        .expect("broker 2's session ended");
    broker_2_catches_up(&c);
    let proposal = leader.isr_proposal().expect("broker 2 caught up");
    assert_eq!(
        (proposal.isr_version, &proposal.isr[..]),
        (1, &[0, 1, 2][..])
    );
    leader
        .confirm_isr(1, 2, proposal.isr)
        .expect("the controller took it");
    assert_stale_version(leader.confirm_isr(1, 1, vec![0, 1]), 1, 2);
    assert_eq!(leader.isr(), Some(vec![0, 1, 2]));
    assert_eq!(leader.isr_version(), Some(2));
    // The HW waits for broker 2 again.
    let handle = all_fetched_by_broker_1(&c);
    assert!(handle.poll().is_none(), "broker 2 does not have it yet");
    c.fetch(2, 0);
    c.fetch(2, 0);
    assert!(handle.poll().expect("complete").is_ok());
}

/// A controller may refuse a proposal made from the ISR it holds (Kafka's
/// `INELIGIBLE_REPLICA`: the broker it would add is fenced). It answers with its ISR under
/// the next version (`ControllerIsr::refuse`): the leader drops the proposal, so that the
/// HW no longer waits for the refused broker and the next change can be proposed; a copy
/// of the proposal the network delivers later is stale, and broker 2 gets in only by a
/// proposal made after the refusal.
#[test]
fn a_refused_expansion_stops_holding_the_hw_and_is_proposed_again() {
    let c = Cluster::new(3, 2, TruncationMode::LeaderEpoch);
    let leader = c.replica(0);
    set_isr(leader, vec![0, 1]);
    let mut controller = ControllerIsr {
        isr: vec![0, 1],
        version: 1,
    };
    broker_2_catches_up(&c);
    let proposal = leader.isr_proposal().expect("broker 2 caught up");
    assert_eq!(proposal.isr, vec![0, 1, 2]);
    assert!(controller.refuse(1, &proposal).expect("refuse"));
    assert!(controller.confirm(leader, 1).expect("answer"));
    assert_eq!(leader.isr_proposal(), None, "the refusal answered it");
    assert_eq!(leader.isr(), Some(vec![0, 1]));
    assert_eq!(leader.isr_version(), Some(2));
    // Broker 2 goes quiet: an `acks=all` append needs broker 1 alone.
    let handle = all_fetched_by_broker_1(&c);
    assert!(handle.poll().expect("complete").is_ok());
    // The proposal, delivered again, is stale: the controller answers with what it holds.
    assert!(!controller.take(1, &proposal).expect("take"));
    assert!(!controller.confirm(leader, 1).expect("answer"), "not newer");
    assert_eq!(leader.isr(), Some(vec![0, 1]));
    // Broker 2 catches up again and is proposed anew, from version 2, and taken.
    c.fetch(2, 0);
    c.fetch(2, 0);
    let again = leader.isr_proposal().expect("proposed again");
    assert_eq!((again.isr_version, &again.isr[..]), (2, &[0, 1, 2][..]));
    assert!(controller.take(1, &again).expect("take"));
    assert!(controller.confirm(leader, 1).expect("answer"));
    assert_eq!(leader.isr(), Some(vec![0, 1, 2]));
}

/// An `acks=all` append on broker 0, which broker 1 then fetches and reports.
fn all_fetched_by_broker_1(c: &Cluster) -> AppendHandle {
    let handle = (c.replica(0))
        .append(&mut batch(1, 20, 1), Acks::All, TIMEOUT_MS)
        .unwrap();
    c.fetch(1, 0);
    c.fetch(1, 0);
    handle
}

/// Broker 0 leads with broker 2 out of its ISR: an `acks=all` append, then both followers
/// fetch it and report it, and broker 2 is proposed back in.
fn broker_2_catches_up(c: &Cluster) {
    c.replica(0)
        .append(&mut batch(1, 20, 0), Acks::All, TIMEOUT_MS)
        .unwrap();
    for _ in 0..2 {
        c.fetch(1, 0);
        c.fetch(2, 0);
    }
}

/// `result` is the refusal of an ISR answer at `version`, overtaken by the one at
/// `current` the leader holds.
fn assert_stale_version(result: Result<(), Error>, version: i32, current: i32) {
    match result {
        Err(Error::InvalidUpdateVersion {
            version: v,
            current: c,
        }) => {
            assert_eq!((v, c), (version, current))
        }
        other => panic!("{other:?}: not refused as stale"),
    }
}

/// An answer is applied only with the bytes it was answered with. Its records are a slice
/// of the leader's file, read when the follower applies it; a leader that stepped down
/// meanwhile cut its log where it diverged and wrote its new leader's batches in the same
/// place. Those are valid batches at the offsets the follower asked for, of an epoch not
/// below its own, and the follower took them as the answer's: a late answer could so put
/// one leader's batch after another's records, below a later HW. The answer is dropped
/// now, as a late one is.
#[test]
fn an_answer_read_after_its_leader_cut_its_log_is_dropped() {
    let c = Cluster::new(3, 1, TruncationMode::LeaderEpoch);
    c.replica(0)
        .append(&mut batch(1, 20, 0), Acks::Leader, TIMEOUT_MS)
        .unwrap();
    c.replicate(0, &[1, 2]);
    c.replica(0)
        .append(&mut batch(1, 20, 1), Acks::Leader, TIMEOUT_MS)
        .unwrap();
    // Broker 2 asks for offset 1; the answer is on its way.
    let request = c.replica(2).fetch_request(1 << 20);
    let answer = c.replica(0).fetch(&request).unwrap();
    // Broker 1, without offset 1, leads epoch 2 and writes its own offset 1, of the same
    // size; broker 0 follows it, cuts offset 1 and copies broker 1's in its place.
    c.replica(1)
        .become_leader(2, vec![0, 1, 2], vec![0, 1])
        .unwrap();
    c.replica(1)
        .append(&mut batch(1, 20, 9), Acks::Leader, TIMEOUT_MS)
        .unwrap();
    c.replica(0).become_follower(2, 1).unwrap();
    c.fetch(0, 1); // the logs diverge at 1: broker 0 cuts there
                   // The answer's bytes are gone: dropped as well (the read's error came back).
    assert!(!c.replica(2).apply_fetch(&answer).unwrap());
    c.fetch(0, 1); // and copies broker 1's offset 1
    assert_eq!(contents(c.replica(0).log()), contents(c.replica(1).log()));
    let before = contents(c.replica(2).log());
    assert!(
        !c.replica(2).apply_fetch(&answer).unwrap(),
        "the answer no longer stands"
    );
    assert_eq!(contents(c.replica(2).log()), before);
}

/// A new leader whose high watermark lags the start of its epoch answers ListOffsets
/// "latest", and a lookup by time whose answer lies at or past that high watermark, with
/// `OffsetNotAvailable`, as Kafka does (KIP-207): it answered its stale high watermark,
/// and a consumer's end offset went back. Once its followers fetched, it answers.
#[test]
fn a_new_leader_lagging_its_epoch_start_answers_offset_not_available() {
    use partlog::log::LATEST_TIMESTAMP;
    let c = Cluster::new(3, 1, TruncationMode::LeaderEpoch);
    c.replica(0)
        .append(&mut batch(2, 20, 100), Acks::Leader, TIMEOUT_MS)
        .unwrap();
    c.replicate(0, &[1, 2]);
    c.replica(0)
        .append(&mut batch(2, 20, 200), Acks::Leader, TIMEOUT_MS)
        .unwrap();
    c.fetch(1, 0);
    let new = c.replica(1);
    assert_eq!((new.high_watermark(), new.log().log_end_offset()), (2, 4));
    new.become_leader(2, vec![0, 1, 2], vec![1, 2]).unwrap();
    let not_available = |r: partlog::Result<_>| {
        matches!(
            r,
            Err(Error::OffsetNotAvailable {
                high_watermark: 2,
                epoch_start_offset: 4
            })
        )
    };
    assert!(not_available(new.offset_for_timestamp(LATEST_TIMESTAMP)));
    assert!(not_available(new.offset_for_timestamp(150)));
    // No record at or after it: not known yet either (the HW may pass one soon).
    assert!(not_available(new.offset_for_timestamp(10_000)));
    assert_eq!(new.offset_for_timestamp(50).unwrap().unwrap().offset, 0);
    c.replica(2).become_follower(2, 1).unwrap();
    for _ in 0..3 {
        c.fetch(2, 1);
    }
    assert_eq!(new.high_watermark(), 4);
    let latest = new.offset_for_timestamp(LATEST_TIMESTAMP).unwrap().unwrap();
    assert_eq!(latest.offset, 4);
    assert_eq!(new.offset_for_timestamp(150).unwrap().unwrap().offset, 2);
    assert!(new.offset_for_timestamp(10_000).unwrap().is_none());
}

/// An answer delayed on the way (the network held it while a later one to the same fetch
/// came first) carries an older HW: within one leader epoch the follower's HW does not go
/// back for it. It used to: the answer held no records, so nothing told it from the later
/// one, and the follower took its lower HW (shown to its readers, checkpointed, and cut
/// to by a truncation in HW mode).
#[test]
fn a_delayed_answer_does_not_take_a_followers_hw_back() {
    let c = Cluster::new(3, 2, TruncationMode::LeaderEpoch);
    c.replica(0)
        .append(&mut batch(3, 20, 0), Acks::Leader, TIMEOUT_MS)
        .unwrap();
    c.fetch(1, 0);
    c.fetch(2, 0);
    let (leader, follower) = (c.replica(0), c.replica(1));
    // Broker 1 has the records; its next fetch is answered before broker 2 says it has
    // them too, with the HW at 0, and that answer is held on the way.
    let request = follower.fetch_request(1 << 20);
    let delayed = leader.fetch(&request).unwrap();
    assert_eq!(delayed.high_watermark, 0);
    c.fetch(2, 0);
    assert_eq!(leader.high_watermark(), 3);
    // Broker 1 fetches again and learns the HW.
    c.fetch(1, 0);
    assert_eq!(follower.high_watermark(), 3);
    // The held answer arrives.
    follower.apply_fetch(&delayed).unwrap();
    assert_eq!(follower.high_watermark(), 3);
}
