//! Threads against one replicated partition, all at once: two producers append with
//! `acks=all`, one thread per follower carries its fetches, a controller bumps the leader
//! epoch, shrinks the ISR (below min ISR too), confirms the leader's proposals to grow it
//! back and lets time pass, and a consumer reads up to the high watermark.
//!
//! Afterwards: every append's handle completed (none waits forever: no wake-up or
//! completion is lost); every acknowledged batch is on the leader at its offset, exactly
//! once; the followers, caught up, hold byte-identical logs; the high watermark never went
//! back; every record the consumer saw is in the final log at its offset.
//!
//! Seeds fix each thread's pacing and the controller's choices, not the interleaving.
//!
//! ```text
//! cargo test --release --test replica_threads                        # CI: 40 seeds
//! REPL_THREADS_SEED=7 cargo test --release --test replica_threads    # one seed
//! REPL_THREADS_SEEDS=500 cargo test --release --test replica_threads
//! ```

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::cluster::contents;
use common::{keyed_batch, log_records};
use partlog::io::sim::SimStorage;
use partlog::record::batches;
use partlog::replica::{Acks, Partition, ReplicaConfig};
use partlog::{Error, ManualClock};

const PRODUCERS: usize = 2;
const APPENDS_PER_PRODUCER: usize = 150;
const FOLLOWERS: [i32; 2] = [1, 2];
const MIN_ISR: usize = 2;
/// Short, so that the controller's clock steps make followers fall out of the ISR by lag.
const LAG_MS: i64 = 200;
/// Longer than any test run: a handle that is still pending after it was lost.
const WAIT: Duration = Duration::from_secs(10);

/// A seeded xorshift: each thread's own choices.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, thread: u64) -> Rng {
        Rng((seed ^ (thread + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    /// Now and then gives the core away or sleeps briefly, so that the threads meet at
    /// different points of each other's work.
    fn pace(&mut self) {
        match self.below(16) {
            0 => thread::sleep(Duration::from_micros(50 + self.below(200))),
            1..=3 => thread::yield_now(),
            _ => {}
        }
    }
}

struct Replicas {
    clock: Arc<ManualClock>,
    leader: Partition,
    followers: Vec<Partition>,
}

impl Replicas {
    fn new(seed: u64) -> Replicas {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let replica = |id: i32| {
            let disk = SimStorage::new(seed.wrapping_mul(10) + id as u64);
            let log = common::cluster::open_log(&disk, &clock);
            let config = ReplicaConfig {
                min_insync_replicas: MIN_ISR,
                replica_lag_time_max_ms: LAG_MS,
                ..ReplicaConfig::new(id)
            };
            Partition::new(log, config, clock.clone(), 0)
        };
        let all = vec![0, FOLLOWERS[0], FOLLOWERS[1]];
        let leader = replica(0);
        leader.become_leader(1, all.clone(), all).expect("leader");
        let followers: Vec<Partition> = FOLLOWERS.iter().map(|&id| replica(id)).collect();
        for f in &followers {
            f.become_follower(1, 0).expect("follower");
        }
        Replicas {
            clock,
            leader,
            followers,
        }
    }
}

/// What one producer's appends came to.
#[derive(Default)]
struct Produced {
    /// Acknowledged: the batch's base offset and its key.
    acked: Vec<(i64, Vec<u8>)>,
    /// Refused before writing (`NotEnoughReplicas`) or failed after (not acknowledged).
    not_acked: usize,
}

fn produce(r: &Replicas, producer: usize, seed: u64) -> Produced {
    let mut rng = Rng::new(seed, producer as u64);
    let mut out = Produced::default();
    for seq in 0..APPENDS_PER_PRODUCER {
        rng.pace();
        let key = format!("p{producer}-{seq}").into_bytes();
        let value = vec![b'a' + (seq % 26) as u8; 1 + rng.below(300) as usize];
        let mut batch = keyed_batch(&[(key.clone(), Some(value))], seq as i64);
        let handle = match r.leader.append(&mut batch, Acks::All, 3_600_000) {
            Ok(handle) => handle,
            Err(Error::NotEnoughReplicas { .. }) => {
                // As a producer backs off before it retries: the controller grows the ISR.
                out.not_acked += 1;
                thread::sleep(Duration::from_micros(500));
                continue;
            }
            Err(e) => panic!("producer {producer} append {seq}: {e}"),
        };
        match handle.wait(WAIT) {
            None => panic!("producer {producer} append {seq}: the handle never completed"),
            Some(Ok(info)) => {
                // Acknowledged with `acks=all`: on at least min ISR replicas already.
                let holding = std::iter::once(&r.leader)
                    .chain(&r.followers)
                    .filter(|p| p.log().log_end_offset() > info.last_offset)
                    .count();
                assert!(
                    holding >= MIN_ISR,
                    "append {seq} of producer {producer} acknowledged at {} on {holding} replicas",
                    info.last_offset
                );
                out.acked.push((info.first_offset, key));
            }
            Some(Err(Error::NotLeaderOrFollower | Error::NotEnoughReplicasAfterAppend { .. })) => {
                out.not_acked += 1
            }
            Some(Err(e)) => panic!("producer {producer} append {seq}: {e}"),
        }
    }
    out
}

/// Carries `follower`'s fetches to the leader while `fetching`.
fn fetch_loop(r: &Replicas, follower: &Partition, fetching: &AtomicBool, seed: u64, n: u64) {
    let mut rng = Rng::new(seed, 10 + n);
    while fetching.load(Ordering::Acquire) {
        rng.pace();
        let request = follower.fetch_request(1 + rng.below(8 << 10));
        match r.leader.fetch_wait(&request, Duration::from_millis(5)) {
            Ok(response) => {
                follower.apply_fetch(&response).expect("apply fetch");
            }
            // The controller is between the leader's and this follower's epoch change.
            Err(Error::FencedLeaderEpoch { .. } | Error::UnknownLeaderEpoch { .. }) => {
                thread::yield_now()
            }
            Err(e) => panic!("follower {}: fetch: {e}", request.replica_id),
        }
    }
}

/// Bumps epochs, shrinks the ISR, confirms the leader's proposals and moves the clock,
/// until the producers are done.
fn control(r: &Replicas, producing: &AtomicBool, seed: u64) {
    let mut rng = Rng::new(seed, 20);
    let all = vec![0, FOLLOWERS[0], FOLLOWERS[1]];
    let mut epoch = 1;
    while producing.load(Ordering::Acquire) {
        thread::sleep(Duration::from_micros(100 + rng.below(400)));
        match rng.below(10) {
            0 => {
                epoch += 1;
                let isr = r.leader.isr().expect("leader's ISR");
                r.leader
                    .become_leader(epoch, all.clone(), isr)
                    .expect("bump");
                for f in &r.followers {
                    rng.pace();
                    f.become_follower(epoch, 0).expect("follow the bump");
                }
            }
            1 => {
                // Drop one follower, or both (below min ISR: the HW must stop).
                let isr = r.leader.isr().expect("leader's ISR");
                let drop = FOLLOWERS[rng.below(2) as usize];
                let keep: Vec<i32> = match rng.below(3) {
                    0 => vec![0],
                    _ => isr.into_iter().filter(|&id| id != drop).collect(),
                };
                r.leader.confirm_isr(keep);
            }
            2 => {
                r.clock.advance_ms(rng.below(LAG_MS as u64 * 2) as i64);
                r.leader.tick();
            }
            _ => {
                if let Some(proposal) = r.leader.isr_proposal() {
                    r.leader.confirm_isr(proposal);
                }
            }
        }
    }
}

/// Reads up to the HW from the start while `consuming`, checking that the HW never goes back
/// and that offsets run on; returns every record's `(offset, key)`.
fn consume(r: &Replicas, consuming: &AtomicBool, high: &AtomicI64) -> Vec<(i64, Vec<u8>)> {
    let mut seen = Vec::new();
    let mut next = 0;
    loop {
        let stopping = !consuming.load(Ordering::Acquire);
        let hw = r.leader.high_watermark();
        let before = high.fetch_max(hw, Ordering::AcqRel);
        assert!(
            hw >= before,
            "the high watermark went back from {before} to {hw}"
        );
        match r
            .leader
            .read_committed(next, 16 << 10)
            .expect("consumer read")
        {
            Some(slice) => {
                let bytes = slice.to_vec().expect("slice bytes");
                for b in batches(&bytes) {
                    let b = b.expect("batch");
                    b.validate().expect("valid batch");
                    assert_eq!(b.header().base_offset, next, "offsets run on");
                    for rec in b.records().expect("records") {
                        let rec = rec.expect("record");
                        seen.push((rec.offset, rec.key.expect("key").to_vec()));
                    }
                    next = b.header().next_offset();
                }
            }
            None if stopping => return seen,
            None => thread::yield_now(),
        }
    }
}

/// Confirms proposals until every follower has the leader's log and is back in the ISR.
fn settle(r: &Replicas) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(proposal) = r.leader.isr_proposal() {
            r.leader.confirm_isr(proposal);
        }
        let end = r.leader.log().log_end_offset();
        let caught_up = r.followers.iter().all(|f| f.log().log_end_offset() == end);
        if caught_up
            && r.leader.isr().map(|i| i.len()) == Some(3)
            && r.leader.high_watermark() == end
        {
            return;
        }
        assert!(Instant::now() < deadline, "the followers never caught up");
        thread::sleep(Duration::from_millis(1));
    }
}

fn run_seed(seed: u64) -> Result<(), String> {
    let outcome = std::panic::catch_unwind(|| check_seed(seed));
    outcome.map_err(|panic| {
        format!(
            "seed {seed} failed: {}\n  replay: REPL_THREADS_SEED={seed} cargo test --release --test replica_threads",
            common::panic_text(panic.as_ref())
        )
    })
}

/// What keeps the threads going: cleared in turn as the run winds down.
struct Running {
    producing: AtomicBool,
    fetching: AtomicBool,
    consuming: AtomicBool,
}

/// Clears every flag when dropped: a failure unwinding the main thread then ends the other
/// threads, which would otherwise loop forever and keep the scope from ending.
struct StopAll<'a>(&'a Running);

impl Drop for StopAll<'_> {
    fn drop(&mut self) {
        for flag in [&self.0.producing, &self.0.consuming, &self.0.fetching] {
            flag.store(false, Ordering::Release);
        }
    }
}

fn check_seed(seed: u64) {
    let r = Replicas::new(seed);
    let high = AtomicI64::new(0);
    let running = Running {
        producing: AtomicBool::new(true),
        fetching: AtomicBool::new(true),
        consuming: AtomicBool::new(true),
    };
    let (produced, seen) = thread::scope(|s| {
        let _stop_all_on_failure = StopAll(&running);
        let (r, run) = (&r, &running);
        let fetchers: Vec<_> = (r.followers.iter().zip(0..))
            .map(|(f, n)| s.spawn(move || fetch_loop(r, f, &run.fetching, seed, n)))
            .collect();
        let consumer = s.spawn(|| consume(r, &run.consuming, &high));
        let controller = s.spawn(move || control(r, &run.producing, seed));
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| s.spawn(move || produce(r, p, seed)))
            .collect();
        let produced: Vec<Produced> = producers.into_iter().map(|p| p.join().unwrap()).collect();
        run.producing.store(false, Ordering::Release);
        controller.join().unwrap();
        settle(r);
        run.consuming.store(false, Ordering::Release);
        let seen = consumer.join().unwrap();
        run.fetching.store(false, Ordering::Release);
        for f in fetchers {
            f.join().unwrap();
        }
        (produced, seen)
    });

    let records: BTreeMap<i64, Vec<u8>> = log_records(r.leader.log())
        .into_iter()
        .map(|(offset, key, _)| (offset, key.expect("key")))
        .collect();
    let mut acked = 0;
    for p in &produced {
        assert_eq!(p.acked.len() + p.not_acked, APPENDS_PER_PRODUCER);
        for (offset, key) in &p.acked {
            assert_eq!(
                records.get(offset),
                Some(key),
                "acknowledged batch at {offset}"
            );
            acked += 1;
        }
    }
    // Every append wrote a distinct key and none was retried: a key twice is a batch twice.
    let mut keys: Vec<&Vec<u8>> = records.values().collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), records.len(), "a batch is in the log twice");
    assert!(
        acked > 0,
        "nothing was acknowledged: the run proved nothing"
    );
    let leader = contents(r.leader.log());
    for f in &r.followers {
        assert_eq!(contents(f.log()), leader, "a follower's log differs");
    }
    for (offset, key) in &seen {
        assert_eq!(records.get(offset), Some(key), "the consumer read {offset}");
    }
}

#[test]
fn producers_fetchers_controller_and_a_consumer_race_on_one_partition() {
    common::run_seeds("REPL_THREADS", 40, run_seed);
}
