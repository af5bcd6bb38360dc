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
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use common::cluster::contents;
use common::threads::{self, join, Brokers, Rng, StopAll, BROKERS, MIN_ISR};
use common::{keyed_batch, log_records};
use partlog::record::batches;
use partlog::replica::Acks;
use partlog::Error;

const PRODUCERS: usize = 2;
const APPENDS_PER_PRODUCER: usize = 150;
/// Short, so that the controller's clock steps make followers fall out of the ISR by lag.
const LAG_MS: i64 = 200;
/// Longer than any test run: a handle that is still pending after it was lost.
const WAIT: Duration = Duration::from_secs(10);

/// What one producer's appends came to.
#[derive(Default)]
struct Produced {
    /// Acknowledged: the batch's base offset and its key.
    acked: Vec<(i64, Vec<u8>)>,
    /// Refused before writing (`NotEnoughReplicas`) or failed after (not acknowledged).
    not_acked: usize,
}

fn produce(r: &Brokers, producer: usize, seed: u64) -> Produced {
    let mut rng = Rng::new(seed, producer as u64);
    let mut out = Produced::default();
    for seq in 0..APPENDS_PER_PRODUCER {
        rng.pace();
        let key = format!("p{producer}-{seq}").into_bytes();
        let value = vec![b'a' + (seq % 26) as u8; 1 + rng.below(300) as usize];
        let mut batch = keyed_batch(&[(key.clone(), Some(value))], seq as i64);
        let handle = match r.leader().append(&mut batch, Acks::All, 3_600_000) {
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
                let holding = (r.replicas.iter())
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

/// Shakes the partition, elections left out (see [`Brokers::control_step`]), until the
/// producers are done.
fn control(r: &Brokers, producing: &AtomicBool, seed: u64) {
    let (mut rng, mut epoch) = (Rng::new(seed, 20), 1);
    while producing.load(Ordering::Acquire) {
        thread::sleep(Duration::from_micros(100 + rng.below(400)));
        r.control_step(&mut rng, &mut epoch, false, LAG_MS);
    }
}

/// Reads up to the HW from the start while `consuming`, checking that the HW never goes back
/// and that offsets run on; returns every record's `(offset, key)`.
fn consume(r: &Brokers, consuming: &AtomicBool) -> Vec<(i64, Vec<u8>)> {
    let mut seen = Vec::new();
    let (mut next, mut high) = (0, 0);
    loop {
        let stopping = !consuming.load(Ordering::Acquire);
        let hw = r.leader().high_watermark();
        assert!(
            hw >= high,
            "the high watermark went back from {high} to {hw}"
        );
        high = hw;
        match r
            .leader()
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

fn run_seed(seed: u64) -> Result<(), String> {
    threads::check_seed(seed, "REPL_THREADS", "replica_threads", check_seed)
}

fn check_seed(seed: u64) {
    let r = Brokers::new(seed, LAG_MS, Brokers::small_index_config());
    let [producing, consuming, fetching] = [(); 3].map(|_| AtomicBool::new(true));
    let (produced, seen) = thread::scope(|s| {
        let _stop_all_on_failure = StopAll([&producing, &consuming, &fetching]);
        let r = &r;
        let fetchers: Vec<_> = (0..BROKERS)
            .map(|me| {
                let fetching = &fetching;
                s.spawn(move || r.follow(me, fetching, seed))
            })
            .collect();
        let consumer = s.spawn(|| consume(r, &consuming));
        let controller = s.spawn(|| control(r, &producing, seed));
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| s.spawn(move || produce(r, p, seed)))
            .collect();
        let produced: Vec<Produced> = producers.into_iter().map(join).collect();
        producing.store(false, Ordering::Release);
        join(controller);
        r.settle(WAIT);
        consuming.store(false, Ordering::Release);
        let seen = join(consumer);
        fetching.store(false, Ordering::Release);
        fetchers.into_iter().for_each(join);
        (produced, seen)
    });

    let records: BTreeMap<i64, Vec<u8>> = log_records(r.leader().log())
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
    let leader = contents(r.leader().log());
    for f in &r.replicas {
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
