//! Fetch requests and answers, and the controller's ISR answers, with any field at any
//! value, as a buggy or hostile peer, a corrupted message or a confused embedder could
//! send them: each gets an answer or a
//! typed error, never a panic, and the replica that took it keeps its log start ≤ HW ≤
//! log end, its batches consecutive, and a leader's HW never goes back (invariants 1, 2,
//! 3 and 8).
//!
//! ```text
//! cargo test --release --test replica_odd_messages                 # CI: 300 seeds
//! ODD_MESSAGES_SEEDS=100000 cargo test --release --test replica_odd_messages
//! ODD_MESSAGES_SEED=7 cargo test --release --test replica_odd_messages
//! ```

mod common;

use common::batch;
use common::cluster::{assert_bounds, assert_consecutive, Cluster};
use partlog::io::sim::SimRng;
use partlog::replica::{Acks, DivergingEpoch, FetchRequest, Partition, TruncationMode};

const DEFAULT_SEEDS: u64 = 300;
const STEPS: usize = 60;

/// A value for an offset or an epoch field: the real one half of the time (so that the
/// other fields' checks are reached), else near it, or anywhere.
fn odd(rng: &mut SimRng, real: i64) -> i64 {
    match rng.below(16) {
        0 => i64::MIN,
        1 => i64::MAX,
        2 => -1,
        3 => -(rng.below(1000) as i64) - 2,
        4 => rng.next_u64() as i64,
        5..=7 => real.saturating_add(rng.below(21) as i64 - 10),
        _ => real,
    }
}

fn odd_i32(rng: &mut SimRng, near: i32) -> i32 {
    let v = odd(rng, i64::from(near));
    i32::try_from(v).unwrap_or(if v < 0 { i32::MIN } else { i32::MAX })
}

/// Invariants 1 and 2 on one replica.
fn check_replica(r: &Partition, who: &str) {
    assert_bounds(r, who);
    assert_consecutive(r.log(), who);
}

fn run_seed(seed: u64) -> Result<(), String> {
    let drive = |slot: &mut Option<Vec<String>>| {
        let trace = slot.insert(Vec::new());
        let mut rng = SimRng::new(seed);
        let c = Cluster::new(3, 2, TruncationMode::LeaderEpoch);
        let (leader, follower) = (c.replica(0), c.replica(1));
        for i in 0..rng.range_inclusive(1, 6) {
            leader
                .append(&mut batch(2, 10, i as i64), Acks::Leader, 30_000)
                .expect("append");
        }
        c.replicate(0, &[1, 2]);
        let mut last_hw = leader.high_watermark();
        for _ in 0..STEPS {
            match rng.below(5) {
                // An odd request to the leader, from any replica id.
                0 | 1 => {
                    let real = follower.fetch_request(1 << 20);
                    let request = FetchRequest {
                        replica_id: odd_i32(&mut rng, 1),
                        leader_epoch: odd_i32(&mut rng, 1),
                        fetch_offset: odd(&mut rng, real.fetch_offset),
                        last_fetched_epoch: odd_i32(&mut rng, real.last_fetched_epoch),
                        max_bytes: rng.next_u64() >> rng.below(64),
                        log_start_offset: odd(&mut rng, real.log_start_offset),
                    };
                    let outcome = leader.fetch(&request).map(|r| {
                        // The slice reads back, as a sendfile of it would.
                        r.records.map(|s| s.to_vec().expect("slice reads").len())
                    });
                    trace.push(format!("leader fetch {request:?}: {outcome:?}"));
                }
                // An answer to the follower's real request, with its other fields odd.
                2 => {
                    let request = follower.fetch_request(1 << 20);
                    let Ok(mut response) = leader.fetch(&request) else {
                        continue;
                    };
                    let leo = response.log_end_offset;
                    response.high_watermark = odd(&mut rng, response.high_watermark);
                    response.log_start_offset = odd(&mut rng, response.log_start_offset);
                    response.log_end_offset = odd(&mut rng, leo);
                    if rng.ratio(1, 2) {
                        response.diverging = Some(DivergingEpoch {
                            epoch: odd_i32(&mut rng, 1),
                            end_offset: odd(&mut rng, leo),
                        });
                    }
                    let outcome = follower.apply_fetch(&response);
                    trace.push(format!(
                        "follower applies hw {} start {} diverging {:?}: {outcome:?}",
                        response.high_watermark, response.log_start_offset, response.diverging
                    ));
                }
                // A controller's ISR answer with odd fields: any epoch and version, any
                // brokers (some no replica), any number of times.
                3 => {
                    let epoch = odd_i32(&mut rng, leader.leader_epoch());
                    let next = leader.isr_version().unwrap_or(0).saturating_add(1);
                    let version = odd_i32(&mut rng, next);
                    let isr: Vec<i32> = (0..rng.below(5))
                        .map(|_| {
                            let near = rng.below(3) as i32;
                            odd_i32(&mut rng, near)
                        })
                        .collect();
                    let outcome = leader.confirm_isr(epoch, version, isr.clone());
                    trace.push(format!(
                        "confirm ISR {isr:?} epoch {epoch} version {version}: {outcome:?}"
                    ));
                    let isr = leader.isr().expect("still the leader");
                    assert!(
                        isr.contains(&0) && isr.iter().all(|id| (0..3).contains(id)),
                        "the leader took ISR {isr:?}"
                    );
                }
                // An out-of-range answer with odd bounds.
                _ => {
                    let request = follower.fetch_request(1 << 20);
                    let (start, end) = (odd(&mut rng, 0), odd(&mut rng, 10));
                    let outcome = follower.handle_out_of_range(&request, start, end);
                    trace.push(format!("out of range [{start}, {end}): {outcome:?}"));
                }
            }
            check_replica(leader, "leader");
            check_replica(follower, "follower");
            let hw = leader.high_watermark();
            assert!(
                hw >= last_hw,
                "the leader's HW went back from {last_hw} to {hw}"
            );
            last_hw = hw;
        }
    };
    common::run_sim_seed(seed, "ODD_MESSAGES", "replica_odd_messages", drive, |t| t)
}

#[test]
fn odd_fetches_and_answers_get_answers_or_typed_errors() {
    common::run_seeds("ODD_MESSAGES", DEFAULT_SEEDS, run_seed);
}

/// The answers and requests no replica sends are refused, each with a typed error, and
/// change nothing: a log start past the log end or below 0, an HW outside the log, a
/// divergence past the log end, a follower's log start past its fetch offset.
#[test]
fn answers_and_requests_no_replica_sends_are_refused() {
    let c = Cluster::new(3, 2, TruncationMode::LeaderEpoch);
    let (leader, follower) = (c.replica(0), c.replica(1));
    for i in 0..3 {
        leader
            .append(&mut batch(2, 10, i), Acks::Leader, 30_000)
            .unwrap();
    }
    c.replicate(0, &[1, 2]);
    let before = |r: &Partition| {
        let log = r.log();
        (
            log.log_start_offset(),
            r.high_watermark(),
            log.log_end_offset(),
        )
    };
    let (follower_was, leader_was) = (before(follower), before(leader));
    let refused = |result: partlog::Result<bool>| {
        let err = result.expect_err("refused");
        assert!(matches!(err, partlog::Error::InvalidRequest(_)), "{err}");
    };
    let request = follower.fetch_request(1 << 20);
    let answer = leader.fetch(&request).unwrap();
    let mut bad = answer.clone();
    bad.high_watermark = bad.log_end_offset + 1;
    refused(follower.apply_fetch(&bad));
    let mut bad = answer.clone();
    bad.log_start_offset = bad.log_end_offset + 1;
    refused(follower.apply_fetch(&bad));
    let mut bad = answer.clone();
    bad.log_start_offset = -5;
    refused(follower.apply_fetch(&bad));
    let mut bad = answer.clone();
    bad.diverging = Some(DivergingEpoch {
        epoch: 1,
        end_offset: answer.log_end_offset + 1,
    });
    refused(follower.apply_fetch(&bad));
    refused(follower.handle_out_of_range(&request, 10, 4));
    refused(follower.handle_out_of_range(&request, -3, 4));
    assert_eq!(before(follower), follower_was, "the follower is as it was");
    // A follower's log start past its own log end.
    let mut odd = follower.fetch_request(1 << 20);
    odd.log_start_offset = odd.fetch_offset + 1;
    let err = leader.fetch(&odd).unwrap_err();
    assert!(matches!(err, partlog::Error::InvalidRequest(_)), "{err}");
    assert_eq!(before(leader), leader_was, "the leader is as it was");
    assert_eq!(leader.low_watermark(), Some(0));
    // The real answer still applies.
    assert!(follower.apply_fetch(&answer).unwrap());
}
