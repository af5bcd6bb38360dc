//! Delayed fetches (`Partition::fetch_wait`) with threads against each other: a follower's
//! fetch held at the leader answers as soon as an append lands, its progress counts before
//! it waits (so `acks=all` completes without waiting out the hold), and a leader that steps
//! down releases held fetches at once. No wake-up is lost between an append, the fetch it
//! releases and the `acks=all` completion that fetch brings.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::batch;
use partlog::cluster::ControllerIsr;
use partlog::io::sim::SimStorage;
use partlog::replica::{Acks, FetchRequest, Partition, ReplicaConfig};
use partlog::ManualClock;

/// Long enough that a test waiting it out would be obvious; never waited in a passing run.
const HOLD: Duration = Duration::from_secs(20);

fn pair() -> (Arc<Partition>, Arc<Partition>) {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let replica = |id: i32| {
        let disk = SimStorage::new(id as u64 + 10);
        let log = common::cluster::open_log(&disk, &clock);
        let config = ReplicaConfig {
            min_insync_replicas: 2,
            ..ReplicaConfig::new(id)
        };
        Arc::new(Partition::new(log, config, clock.clone(), 0))
    };
    let (leader, follower) = (replica(0), replica(1));
    leader.become_leader(1, vec![0, 1], vec![0, 1]).unwrap();
    follower.become_follower(1, 0).unwrap();
    (leader, follower)
}

/// Appends until the held fetch on `fetch` is answered: it may not be waiting yet at the
/// first.
fn append_until_finished<T>(leader: &Partition, fetch: &thread::ScopedJoinHandle<'_, T>) {
    let mut i = 0;
    while !fetch.is_finished() {
        leader
            .append(&mut batch(1, 10, i), Acks::Leader, 1000)
            .unwrap();
        i += 1;
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_held_fetch_answers_when_an_append_lands() {
    let (leader, follower) = pair();
    let request = follower.fetch_request(1 << 20);
    let started = Instant::now();
    let response = thread::scope(|s| {
        let fetch = s.spawn(|| leader.fetch_wait(&request, HOLD).unwrap());
        append_until_finished(&leader, &fetch);
        fetch.join().unwrap()
    });
    assert!(
        started.elapsed() < HOLD / 2,
        "the fetch waited out its hold"
    );
    assert!(response.records.is_some());
    assert!(follower.apply_fetch(&response).unwrap());
    assert!(follower.log().log_end_offset() >= 1);
}

/// An embedder passing an unchecked wait (`Duration::MAX`): the deadline's sum overflowed
/// and panicked. The wait is cut to Kafka's protocol limit, and an append still answers it.
#[test]
fn a_fetch_held_for_ever_answers_when_an_append_lands() {
    let (leader, follower) = pair();
    let request = follower.fetch_request(1 << 20);
    let response = thread::scope(|s| {
        let fetch = s.spawn(|| leader.fetch_wait(&request, Duration::MAX));
        append_until_finished(&leader, &fetch);
        fetch.join().expect("no panic").unwrap()
    });
    assert!(response.records.is_some());
}

#[test]
fn acks_all_completes_while_the_followers_next_fetch_is_held() {
    let (leader, follower) = pair();
    let handle = leader
        .append(&mut batch(2, 10, 0), Acks::All, 60_000)
        .unwrap();
    let first = leader
        .fetch_wait(&follower.fetch_request(1 << 20), HOLD)
        .unwrap();
    assert!(follower.apply_fetch(&first).unwrap());
    thread::scope(|s| {
        // This fetch reports the follower's new end, then waits: nothing more to send.
        let held = s.spawn(|| {
            leader
                .fetch_wait(&follower.fetch_request(1 << 20), HOLD)
                .unwrap()
        });
        let outcome = handle
            .wait(HOLD)
            .expect("completed while the fetch is held");
        assert!(outcome.is_ok());
        assert!(!held.is_finished(), "the fetch is still held");
        leader
            .append(&mut batch(1, 10, 1), Acks::Leader, 1000)
            .unwrap();
        assert!(held.join().unwrap().records.is_some());
    });
}

/// Waits until a fetch is held on `leader` (past its spin, asleep on the condition).
fn until_held(leader: &Partition) {
    let started = Instant::now();
    while leader.fetches_waiting() == 0 {
        assert!(started.elapsed() < HOLD / 4, "the fetch was never held");
        thread::sleep(Duration::from_millis(1));
    }
}

/// A held fetch wakes when its replica steps down, and is refused: it names the epoch the
/// replica led, older than the one it follows in now (Kafka checks the epoch first).
#[test]
fn stepping_down_releases_held_fetches() {
    let (leader, follower) = pair();
    let request = follower.fetch_request(1 << 20);
    let started = Instant::now();
    thread::scope(|s| {
        let fetch = s.spawn(|| leader.fetch_wait(&request, HOLD));
        until_held(&leader);
        leader.become_follower(2, 1).unwrap();
        let answer = fetch.join().unwrap();
        assert!(
            matches!(
                answer,
                Err(partlog::Error::FencedLeaderEpoch {
                    epoch: 1,
                    latest: 2
                })
            ),
            "{answer:?}"
        );
    });
    assert!(
        started.elapsed() < HOLD / 2,
        "the fetch waited out its hold"
    );
}

/// A leader led again in a new epoch releases fetches held in the old one: they waited
/// out their hold (Kafka's `replica.fetch.wait.max.ms`, 500 ms) and answered as of the old
/// epoch, and each follower learned of the new one that much later.
#[test]
fn a_new_epoch_of_the_leader_releases_held_fetches() {
    let (leader, follower) = pair();
    let request = follower.fetch_request(1 << 20);
    let started = Instant::now();
    thread::scope(|s| {
        let fetch = s.spawn(|| leader.fetch_wait(&request, HOLD));
        until_held(&leader);
        leader.become_leader(2, vec![0, 1], vec![0, 1]).unwrap();
        // Refused as fenced: the fetch names the old epoch.
        let answer = fetch.join().unwrap();
        assert!(
            matches!(answer, Err(partlog::Error::FencedLeaderEpoch { .. })),
            "{answer:?}"
        );
    });
    assert!(
        started.elapsed() < HOLD / 2,
        "the fetch waited out its hold"
    );
}

#[test]
fn no_wake_up_is_lost_between_appends_held_fetches_and_completions() {
    // Round `i` appends offset `i` with `acks=all`. In even rounds the follower takes a
    // while before applying, so the producer stops spinning and sleeps on its handle: the
    // completion must wake it. In odd rounds the producer takes a while before appending, so
    // the held fetch stops spinning and sleeps: the append must wake it. A wake-up lost on
    // either side waits out the hold.
    const ROUNDS: i64 = 400;
    const PAUSE: Duration = Duration::from_millis(1);
    let (leader, follower) = pair();
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        let fetcher = s.spawn(|| {
            while !stop.load(Ordering::Acquire) {
                let response = leader
                    .fetch_wait(&follower.fetch_request(1 << 20), HOLD)
                    .unwrap();
                if response.records.is_some() && response.fetch_offset % 2 == 0 {
                    thread::sleep(PAUSE);
                }
                follower.apply_fetch(&response).unwrap();
            }
        });
        // Stops the fetcher also when an assertion below fails.
        let stopper = StopOnDrop(&stop);
        for i in 0..ROUNDS {
            let round = Instant::now();
            if i % 2 == 1 {
                thread::sleep(PAUSE);
            }
            let handle = leader
                .append(&mut batch(1, 10, i), Acks::All, 60_000)
                .unwrap();
            assert_eq!(handle.info().first_offset, i);
            let outcome = handle.wait(HOLD).expect("completed within the hold");
            assert!(outcome.is_ok());
            assert!(
                round.elapsed() < HOLD / 2,
                "round {i}: a wake-up was lost, the round waited out its hold"
            );
        }
        drop(stopper);
        // Releases the fetch held at the end, if any.
        leader
            .append(&mut batch(1, 10, ROUNDS), Acks::Leader, 1000)
            .unwrap();
        fetcher.join().unwrap();
    });
    // Everything acknowledged is on the follower; the last append may or may not be.
    assert!(leader.high_watermark() >= ROUNDS);
    assert!(follower.log().log_end_offset() >= ROUNDS);
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// A held fetch's progress counts when it comes, not again when its answer is read:
/// meanwhile the follower may have started over lower (a restart that lost its unflushed
/// tail), and the old fetch offset, counted again, would make the leader propose it into
/// the ISR without the records it lost, as Kafka's delayed fetch reads without updating the
/// follower's state.
#[test]
fn a_held_fetch_answered_later_does_not_count_its_progress_again() {
    let (leader, follower) = pair();
    for i in 0..4 {
        leader
            .append(&mut batch(1, 10, i), Acks::Leader, 1000)
            .unwrap();
    }
    while follower.log().log_end_offset() < 4 {
        let response = leader.fetch(&follower.fetch_request(1 << 20)).unwrap();
        follower.apply_fetch(&response).unwrap();
    }
    leader.fetch(&follower.fetch_request(1 << 20)).unwrap();
    assert_eq!(leader.high_watermark(), 4);
    // The controller takes broker 1 out (its session ended).
    common::cluster::set_isr(&leader, vec![0]);
    let held = follower.fetch_request(1 << 20);
    assert_eq!(held.fetch_offset, 4);
    let mut controller = ControllerIsr {
        isr: vec![0],
        version: 1,
    };
    thread::scope(|s| {
        let fetch = s.spawn(|| leader.fetch_wait(&held, HOLD).unwrap());
        // Counted on arrival: broker 1 holds the HW, and is proposed back in.
        let proposal = loop {
            if let Some(p) = leader.isr_proposal() {
                break p;
            }
            thread::sleep(Duration::from_millis(1));
        };
        assert_eq!(proposal.isr, vec![0, 1]);
        // The controller refuses (broker 1 is fenced: it restarts), and broker 1 comes
        // back having lost its unflushed tail: it fetches from offset 2.
        assert!(controller.refuse(1, &proposal).unwrap());
        assert!(controller.confirm(&leader, 1).unwrap());
        let restarted = FetchRequest {
            fetch_offset: 2,
            ..held
        };
        leader.fetch(&restarted).unwrap();
        assert_eq!(
            leader.isr_proposal(),
            None,
            "broker 1 lacks the HW's records"
        );
        append_until_finished(&leader, &fetch);
        let answer = fetch.join().unwrap();
        assert!(answer.records.is_some());
    });
    assert_eq!(
        leader.isr_proposal(),
        None,
        "the held fetch's old offset counted again"
    );
}

/// A held fetch that no data answers is read again when its wait ends, as Kafka's delayed
/// fetch is on expiry: the HW its own progress moved (the answer read before that
/// progress counted carries the old one) reaches the follower with this answer, not a
/// hold later. It used to send the answer read before the wait.
#[test]
fn a_held_fetch_that_times_out_carries_the_high_watermark_of_its_end() {
    let (leader, follower) = pair();
    leader
        .append(&mut batch(2, 10, 0), Acks::Leader, 1000)
        .unwrap();
    let response = leader.fetch(&follower.fetch_request(1 << 20)).unwrap();
    follower.apply_fetch(&response).unwrap();
    assert_eq!(leader.high_watermark(), 0);
    // Nothing more to fetch: the fetch is held, and its progress moves the HW.
    let held = follower.fetch_request(1 << 20);
    let response = leader.fetch_wait(&held, Duration::from_millis(20)).unwrap();
    assert!(response.records.is_none());
    assert_eq!(leader.high_watermark(), 2);
    assert_eq!(response.high_watermark, 2);
    follower.apply_fetch(&response).unwrap();
    assert_eq!(follower.high_watermark(), 2);
}
