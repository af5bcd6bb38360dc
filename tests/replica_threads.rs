//! Threads against one partition replicated on three brokers, all at once: two producers
//! append with `acks=all` to whichever broker leads, every broker runs a fetcher thread
//! that follows the leader (truncating where its log diverged from it), a consumer reads up
//! to the leader's high watermark, and a controller, holding its own ISR, starts new leader
//! epochs, shrinks the ISR (below min ISR too), takes the leader's proposals to grow it
//! back (a third of its answers arrive late and out of order), lets time pass
//! and runs retention on every replica, and moves the leader's log start (DeleteRecords)
//! to any offset up to its HW, inside a batch too; in the second test it also moves the
//! leadership to another member of the ISR. The
//! brokers never crash: the tests look for races between a role change and the appends,
//! fetches, truncations and completions running into it.
//!
//! At every controller step, every member of the controller's ISR holds everything below
//! the leader's HW. Afterwards: every append's handle completed (no wake-up or completion is lost); an
//! acknowledged batch was on at least min ISR replicas when its handle said so, and is on
//! the final leader at its offset, exactly once (unless retention or DeleteRecords took
//! it); the replicas,
//! caught up, are byte-identical above every log start; within one leader epoch the high
//! watermark never went back; every record the consumer saw is in the final log at its
//! offset (or below its log start).
//!
//! Seeds fix each thread's pacing and the controller's choices, not the interleaving.
//!
//! ```text
//! cargo test --release --test replica_threads              # CI: 40 seeds each
//! REPL_THREADS_SEED=7 cargo test --release --test replica_threads -- without
//! FAILOVER_THREADS_SEEDS=500 cargo test --release --test replica_threads -- with_elections
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
use partlog::replica::{Acks, Partition};
use partlog::{Error, LogConfig};

const PRODUCERS: usize = 2;
const APPENDS_PER_PRODUCER: usize = 150;
/// Short, so that the controller's clock steps make followers fall out of the ISR by lag.
const LAG_MS: i64 = 200;
/// Longer than any test run: a handle that is still pending after it was lost.
const WAIT: Duration = Duration::from_secs(10);

/// Records in a batch, at most: batches of several records let DeleteRecords put a log
/// start inside one.
const RECORDS_PER_BATCH: u64 = 3;

/// What one producer's appends came to.
#[derive(Default)]
struct Produced {
    /// Acknowledged: each record's offset and its key.
    acked: Vec<(i64, Vec<u8>)>,
    acked_appends: usize,
    /// Refused before writing or failed after: not acknowledged.
    not_acked: usize,
}

fn produce(b: &Brokers, producer: usize, seed: u64) -> Produced {
    let mut rng = Rng::new(seed, producer as u64);
    let mut out = Produced::default();
    for seq in 0..APPENDS_PER_PRODUCER {
        rng.pace();
        let records: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..1 + rng.below(RECORDS_PER_BATCH))
            .map(|i| {
                let key = format!("p{producer}-{seq}-{i}").into_bytes();
                let value = vec![b'a' + (seq % 26) as u8; 1 + rng.below(300) as usize];
                (key, Some(value))
            })
            .collect();
        let mut batch = keyed_batch(&records, seq as i64);
        let handle = match b.leader().append(&mut batch, Acks::All, 3_600_000) {
            Ok(handle) => handle,
            // Nothing written: the producer backs off, as before a retry, while the
            // controller grows the ISR or the leadership settles.
            Err(Error::NotEnoughReplicas { .. } | Error::NotLeaderOrFollower) => {
                out.not_acked += 1;
                thread::sleep(Duration::from_micros(300));
                continue;
            }
            Err(e) => panic!("producer {producer} append {seq}: {e}"),
        };
        match handle.wait(WAIT) {
            None => panic!("producer {producer} append {seq}: the handle never completed"),
            Some(Ok(info)) => {
                let holding = (b.replicas.iter())
                    .filter(|p| p.log().log_end_offset() > info.last_offset)
                    .count();
                assert!(
                    holding >= MIN_ISR,
                    "append {seq} of producer {producer} acknowledged at {} on {holding} replicas",
                    info.last_offset
                );
                let offsets = info.first_offset..;
                let keys = records.into_iter().map(|(key, _)| key);
                out.acked.extend(offsets.zip(keys));
                out.acked_appends += 1;
            }
            Some(Err(Error::NotLeaderOrFollower | Error::NotEnoughReplicasAfterAppend { .. })) => {
                out.not_acked += 1
            }
            Some(Err(e)) => panic!("producer {producer} append {seq}: {e}"),
        }
    }
    out
}

/// Shakes the partition (see [`Brokers::control_step`]) until the producers are done,
/// moving the leader's log start now and then (DeleteRecords).
fn control(b: &Brokers, producing: &AtomicBool, elections: bool, seed: u64) {
    let (mut rng, mut epoch) = (Rng::new(seed, 20), 1);
    while producing.load(Ordering::Acquire) {
        thread::sleep(Duration::from_micros(100 + rng.below(500)));
        if rng.below(12) == 0 {
            delete_records(b.leader(), &mut rng);
        } else {
            b.control_step(&mut rng, &mut epoch, elections, LAG_MS);
        }
    }
}

/// DeleteRecords up to any offset from the log start to the HW, inside a batch too.
fn delete_records(leader: &Partition, rng: &mut Rng) {
    let (start, hw) = (leader.log().log_start_offset(), leader.high_watermark());
    if hw <= start {
        return;
    }
    // Often close to the HW, where a follower out of the ISR is left behind it and starts
    // over inside a batch.
    let to = match rng.below(2) {
        0 => (hw - rng.below(RECORDS_PER_BATCH) as i64).max(start),
        _ => start + rng.below((hw - start + 1) as u64) as i64,
    };
    match leader.advance_log_start_offset(to) {
        // A new leader's HW may lag the one just read.
        Ok(()) | Err(Error::OffsetOutOfRange { .. }) => {}
        Err(e) => panic!("delete records below {to}: {e}"),
    }
}

/// Reads up to the HW of whichever broker leads, from the start, while `consuming`,
/// checking that offsets run on and that the HW never goes back within a leader epoch;
/// returns every record's `(offset, key)`.
fn consume(b: &Brokers, consuming: &AtomicBool) -> Vec<(i64, Vec<u8>)> {
    let mut seen = Vec::new();
    let mut next = 0;
    // The broker, epoch and HW of the last look.
    let mut last = (usize::MAX, -1, -1);
    loop {
        let stopping = !consuming.load(Ordering::Acquire);
        let id = b.leader_index();
        let leader = &b.replicas[id];
        let (epoch, hw) = (leader.leader_epoch(), leader.high_watermark());
        if leader.leader_epoch() == epoch && leader.is_leader() {
            if (id, epoch) == (last.0, last.1) {
                assert!(
                    hw >= last.2,
                    "epoch {epoch}: the HW went back from {} to {hw}",
                    last.2
                );
            }
            last = (id, epoch, hw);
        }
        match leader.read_committed(next, 16 << 10) {
            Ok(Some(slice)) => {
                let bytes = slice.to_vec().expect("slice bytes");
                for batch in batches(&bytes) {
                    let batch = batch.expect("batch");
                    batch.validate().expect("valid batch");
                    let header = batch.header();
                    // Only the batch holding a log start that DeleteRecords put inside it
                    // begins below the offset asked for.
                    assert!(
                        header.base_offset == next
                            || (header.base_offset < next && next <= header.last_offset()),
                        "offsets run on: batch {}..={} read at {next}",
                        header.base_offset,
                        header.last_offset()
                    );
                    for rec in batch.records().expect("records") {
                        let rec = rec.expect("record");
                        if rec.offset >= next {
                            seen.push((rec.offset, rec.key.expect("key").to_vec()));
                        }
                    }
                    next = batch.header().next_offset();
                }
            }
            Ok(None) if stopping => return seen,
            // A new leader's HW may still lag the old one's: nothing to read there yet. (It
            // has every record below the old one's HW: it was elected from the ISR.)
            Ok(None) => thread::yield_now(),
            // Retention or DeleteRecords took what it had not read yet: it goes on from the
            // log start, as a consumer resetting to the earliest offset does.
            Err(Error::OffsetOutOfRange {
                log_start_offset, ..
            }) if next < log_start_offset => next = log_start_offset,
            Err(e) => panic!("consumer read at {next}: {e}"),
        }
    }
}

fn check_seed(seed: u64, elections: bool) {
    let config = LogConfig {
        segment_bytes: 2 << 10,
        index_bytes_max: 1024,
        retention_bytes: 24 << 10,
        file_delete_delay_ms: 0,
        ..LogConfig::default()
    };
    let b = Brokers::new(seed, LAG_MS, config);
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
        let controller = s.spawn(|| control(b, &producing, elections, seed));
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
    // Retention and DeleteRecords may have taken what lies below a log start.
    let start = (b.replicas.iter())
        .map(|r| r.log().log_start_offset())
        .max()
        .unwrap_or(0);
    let records: BTreeMap<i64, Vec<u8>> = log_records(leader.log())
        .into_iter()
        .map(|(offset, key, _)| (offset, key.expect("key")))
        .collect();
    let mut acked = 0;
    for p in &produced {
        assert_eq!(p.acked_appends + p.not_acked, APPENDS_PER_PRODUCER);
        // Each was on min ISR replicas when acknowledged (checked then); retention and
        // DeleteRecords may have taken the oldest since.
        acked += p.acked_appends;
        for (offset, key) in p.acked.iter().filter(|(o, _)| *o >= start) {
            assert_eq!(
                records.get(offset),
                Some(key),
                "acknowledged batch at {offset}"
            );
        }
    }
    // Every record has a distinct key and no append was retried: a key twice is a batch
    // twice.
    let mut keys: Vec<&Vec<u8>> = records.values().collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), records.len(), "a batch is in the log twice");
    assert!(
        acked > 0,
        "nothing was acknowledged: the run proved nothing"
    );
    let from_start = |r: &Partition| -> Vec<partlog::cluster::BatchBytes> {
        let all = contents(r.log());
        all.into_iter().filter(|(base, _)| *base >= start).collect()
    };
    let reference = from_start(leader);
    for r in &b.replicas {
        assert_eq!(from_start(r), reference, "a replica's log differs");
    }
    for (offset, key) in seen.iter().filter(|(o, _)| *o >= start) {
        assert_eq!(records.get(offset), Some(key), "the consumer read {offset}");
    }
}

#[test]
fn producers_fetchers_a_consumer_and_new_epochs_race_without_elections() {
    common::run_seeds("REPL_THREADS", 40, |seed| {
        let test = "replica_threads -- without_elections";
        threads::check_seed(seed, "REPL_THREADS", test, |s| check_seed(s, false))
    });
}

#[test]
fn producers_fetchers_a_consumer_and_new_epochs_race_with_elections() {
    common::run_seeds("FAILOVER_THREADS", 40, |seed| {
        let test = "replica_threads -- with_elections";
        threads::check_seed(seed, "FAILOVER_THREADS", test, |s| check_seed(s, true))
    });
}
