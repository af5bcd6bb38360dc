//! Threads against a partition whose leader changes: two producers append with `acks=all`
//! to whichever broker leads, every broker runs a fetcher thread that follows the current
//! leader (and truncates where its log diverged from it), a consumer reads up to the
//! leader's high watermark, and a controller elects a new leader from the ISR, bumps the
//! epoch of the one leading, shrinks and grows the ISR and moves the clock, all at once.
//! The brokers never crash: what the test looks for is a race between a role change and
//! the appends, fetches, truncations and completions running into it.
//!
//! Afterwards: every append's handle completed; every acknowledged batch is on the final
//! leader at its offset, exactly once; the replicas, caught up, are byte-identical; every
//! record the consumer saw is in the final log at its offset.
//!
//! ```text
//! cargo test --release --test failover_threads                           # CI: 40 seeds
//! FAILOVER_THREADS_SEED=7 cargo test --release --test failover_threads   # one seed
//! FAILOVER_THREADS_SEEDS=500 cargo test --release --test failover_threads
//! ```

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use common::cluster::contents;
use common::threads::{self, join, Brokers, Rng, StopAll, BROKERS};
use common::{keyed_batch, log_records};
use partlog::record::batches;
use partlog::replica::Acks;
use partlog::Error;

const PRODUCERS: usize = 2;
const APPENDS_PER_PRODUCER: usize = 150;
const LAG_MS: i64 = 200;
/// Longer than any test run: a handle that is still pending after it was lost.
const WAIT: Duration = Duration::from_secs(10);

/// What one producer's appends came to.
#[derive(Default)]
struct Produced {
    /// Acknowledged: the batch's base offset and its key.
    acked: Vec<(i64, Vec<u8>)>,
    not_acked: usize,
}

fn produce(b: &Brokers, producer: usize, seed: u64) -> Produced {
    let mut rng = Rng::new(seed, producer as u64);
    let mut out = Produced::default();
    for seq in 0..APPENDS_PER_PRODUCER {
        rng.pace();
        let key = format!("p{producer}-{seq}").into_bytes();
        let value = vec![b'a' + (seq % 26) as u8; 1 + rng.below(300) as usize];
        let mut batch = keyed_batch(&[(key.clone(), Some(value))], seq as i64);
        let handle = match b.leader().append(&mut batch, Acks::All, 3_600_000) {
            Ok(handle) => handle,
            // Refused, nothing written: the producer backs off, as it would to retry.
            Err(Error::NotEnoughReplicas { .. } | Error::NotLeaderOrFollower) => {
                out.not_acked += 1;
                thread::sleep(Duration::from_micros(300));
                continue;
            }
            Err(e) => panic!("producer {producer} append {seq}: {e}"),
        };
        match handle.wait(WAIT) {
            None => panic!("producer {producer} append {seq}: the handle never completed"),
            Some(Ok(info)) => out.acked.push((info.first_offset, key)),
            Some(Err(Error::NotLeaderOrFollower | Error::NotEnoughReplicasAfterAppend { .. })) => {
                out.not_acked += 1
            }
            Some(Err(e)) => panic!("producer {producer} append {seq}: {e}"),
        }
    }
    out
}

/// Shakes the partition, elections included (see [`Brokers::control_step`]), while
/// `producing`.
fn control(b: &Brokers, producing: &AtomicBool, seed: u64) {
    let (mut rng, mut epoch) = (Rng::new(seed, 20), 1);
    while producing.load(Ordering::Acquire) {
        thread::sleep(Duration::from_micros(200 + rng.below(600)));
        b.control_step(&mut rng, &mut epoch, true, LAG_MS);
    }
}

/// Reads up to the leader's HW while `consuming`, from whichever broker leads; returns
/// every record's `(offset, key)`.
fn consume(b: &Brokers, consuming: &AtomicBool) -> Vec<(i64, Vec<u8>)> {
    let mut seen = Vec::new();
    let mut next = 0;
    loop {
        let stopping = !consuming.load(Ordering::Acquire);
        match b.leader().read_committed(next, 16 << 10) {
            Ok(Some(slice)) => {
                let bytes = slice.to_vec().expect("slice bytes");
                for batch in batches(&bytes) {
                    let batch = batch.expect("batch");
                    batch.validate().expect("valid batch");
                    assert_eq!(batch.header().base_offset, next, "offsets run on");
                    for rec in batch.records().expect("records") {
                        let rec = rec.expect("record");
                        seen.push((rec.offset, rec.key.expect("key").to_vec()));
                    }
                    next = batch.header().next_offset();
                }
            }
            Ok(None) if stopping => return seen,
            // A new leader's HW may still lag the old one's: nothing to read there yet. (It
            // has every record below the old one's HW: elected from the ISR.)
            Ok(None) => thread::yield_now(),
            Err(e) => panic!("consumer read at {next}: {e}"),
        }
    }
}

fn run_seed(seed: u64) -> Result<(), String> {
    threads::check_seed(seed, "FAILOVER_THREADS", "failover_threads", check_seed)
}

fn check_seed(seed: u64) {
    let b = Brokers::new(seed, LAG_MS, Brokers::small_index_config());
    let [producing, consuming, fetching] = [(); 3].map(|_| AtomicBool::new(true));
    let (produced, seen) = thread::scope(|s| {
        let _stop_all_on_failure = StopAll([&producing, &consuming, &fetching]);
        let b = &b;
        let fetchers: Vec<_> = (0..BROKERS)
            .map(|me| {
                let fetching = &fetching;
                s.spawn(move || b.follow(me, fetching, seed))
            })
            .collect();
        let consumer = s.spawn(|| consume(b, &consuming));
        let controller = s.spawn(|| control(b, &producing, seed));
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| s.spawn(move || produce(b, p, seed)))
            .collect();
        let produced: Vec<Produced> = producers.into_iter().map(join).collect();
        producing.store(false, Ordering::Release);
        join(controller);
        b.settle(WAIT);
        consuming.store(false, Ordering::Release);
        let seen = join(consumer);
        fetching.store(false, Ordering::Release);
        fetchers.into_iter().for_each(join);
        (produced, seen)
    });

    let leader = b.leader();
    let records: BTreeMap<i64, Vec<u8>> = log_records(leader.log())
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
    let mut keys: Vec<&Vec<u8>> = records.values().collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), records.len(), "a batch is in the log twice");
    assert!(
        acked > 0,
        "nothing was acknowledged: the run proved nothing"
    );
    let reference = contents(leader.log());
    for r in &b.replicas {
        assert_eq!(contents(r.log()), reference, "a replica's log differs");
    }
    for (offset, key) in &seen {
        assert_eq!(records.get(offset), Some(key), "the consumer read {offset}");
    }
}

#[test]
fn producers_fetchers_a_consumer_and_elections_race_on_one_partition() {
    common::run_seeds("FAILOVER_THREADS", 40, run_seed);
}
