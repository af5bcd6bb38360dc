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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::cluster::contents;
use common::threads::{self, join, Rng, StopAll};
use common::{keyed_batch, log_records};
use partlog::io::sim::SimStorage;
use partlog::record::batches;
use partlog::replica::{Acks, Partition, ReplicaConfig};
use partlog::{Error, ManualClock};

const BROKERS: usize = 3;
const MIN_ISR: usize = 2;
const PRODUCERS: usize = 2;
const APPENDS_PER_PRODUCER: usize = 150;
const LAG_MS: i64 = 200;
/// Longer than any test run: a handle that is still pending after it was lost.
const WAIT: Duration = Duration::from_secs(10);

/// Three brokers' replicas of one partition and which of them leads.
struct Brokers {
    clock: Arc<ManualClock>,
    replicas: Vec<Arc<Partition>>,
    /// The broker the controller last made leader: where producers, consumers and
    /// fetchers go. For a moment after an election the others may not know yet.
    leader: AtomicUsize,
}

impl Brokers {
    fn new(seed: u64) -> Brokers {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let replicas: Vec<_> = (0..BROKERS)
            .map(|id| {
                let disk = SimStorage::new(seed.wrapping_mul(10) + id as u64);
                let log = common::cluster::open_log(&disk, &clock);
                let config = ReplicaConfig {
                    min_insync_replicas: MIN_ISR,
                    replica_lag_time_max_ms: LAG_MS,
                    ..ReplicaConfig::new(id as i32)
                };
                Arc::new(Partition::new(log, config, clock.clone(), 0))
            })
            .collect();
        replicas[0]
            .become_leader(1, Self::all(), Self::all())
            .expect("leader");
        for r in &replicas[1..] {
            r.become_follower(1, 0).expect("follower");
        }
        Brokers {
            clock,
            replicas,
            leader: AtomicUsize::new(0),
        }
    }

    fn all() -> Vec<i32> {
        (0..BROKERS as i32).collect()
    }

    fn leader(&self) -> &Partition {
        &self.replicas[self.leader.load(Ordering::Acquire)]
    }

    /// Makes `next` the leader of `epoch` with the ISR the leader has, then every other
    /// broker its follower, in an order the controller's requests might arrive in.
    fn elect(&self, next: usize, epoch: i32, rng: &mut Rng) {
        let isr = self.leader().isr().expect("leader's ISR");
        self.replicas[next]
            .become_leader(epoch, Self::all(), isr)
            .expect("become leader");
        self.leader.store(next, Ordering::Release);
        let mut others: Vec<usize> = (0..BROKERS).filter(|&b| b != next).collect();
        if rng.below(2) == 0 {
            others.reverse();
        }
        for b in others {
            rng.pace();
            self.replicas[b]
                .become_follower(epoch, next as i32)
                .expect("become follower");
        }
    }
}

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

/// Broker `me` follows whichever broker leads, while `fetching`.
fn fetch_loop(b: &Brokers, me: usize, fetching: &AtomicBool, seed: u64) {
    let mut rng = Rng::new(seed, 10 + me as u64);
    let replica = &b.replicas[me];
    while fetching.load(Ordering::Acquire) {
        rng.pace();
        let leader = b.leader();
        if replica.is_leader() || std::ptr::eq(leader, replica.as_ref()) {
            thread::sleep(Duration::from_micros(100));
            continue;
        }
        let request = replica.fetch_request(1 + rng.below(8 << 10));
        match leader.fetch_wait(&request, Duration::from_millis(2)) {
            Ok(response) => match replica.apply_fetch(&response) {
                // Became the leader since it asked.
                Ok(_) | Err(Error::NotLeaderOrFollower) => {}
                // The answer's slices are read here: if the broker that answered stepped
                // down since and cut its log, they may be gone, or hold other batches.
                Err(_)
                    if !(leader.is_leader() && leader.leader_epoch() == request.leader_epoch) => {}
                Err(e) => panic!("broker {me}: apply fetch: {e}"),
            },
            Err(Error::OffsetOutOfRange {
                log_start_offset,
                log_end_offset,
                ..
            }) => {
                replica
                    .handle_out_of_range(&request, log_start_offset, log_end_offset)
                    .expect("out of range");
            }
            // The leader it asked stepped down, or the two are between epoch changes.
            Err(
                Error::NotLeaderOrFollower
                | Error::FencedLeaderEpoch { .. }
                | Error::UnknownLeaderEpoch { .. },
            ) => thread::yield_now(),
            Err(e) => panic!("broker {me}: fetch: {e}"),
        }
    }
}

/// Elects, bumps, shrinks and grows the ISR, and moves the clock while `producing`.
fn control(b: &Brokers, producing: &AtomicBool, seed: u64) {
    let (mut rng, mut epoch) = (Rng::new(seed, 20), 1);
    while producing.load(Ordering::Acquire) {
        thread::sleep(Duration::from_micros(200 + rng.below(600)));
        let leader = b.leader();
        let current = b.leader.load(Ordering::Acquire);
        match rng.below(10) {
            0 | 1 => {
                // A clean election: another member of the ISR, if there is one.
                let isr = leader.isr().expect("leader's ISR");
                let others: Vec<usize> = (isr.iter().map(|&id| id as usize))
                    .filter(|&id| id != current)
                    .collect();
                if !others.is_empty() {
                    epoch += 1;
                    let next = others[rng.below(others.len() as u64) as usize];
                    b.elect(next, epoch, &mut rng);
                }
            }
            2 => {
                epoch += 1;
                b.elect(current, epoch, &mut rng);
            }
            3 => {
                let isr = leader.isr().expect("leader's ISR");
                let keep = isr
                    .into_iter()
                    .filter(|&id| id as usize == current || rng.below(2) == 0);
                leader.confirm_isr(keep.collect());
            }
            4 => {
                b.clock.advance_ms(rng.below(LAG_MS as u64 * 2) as i64);
                leader.tick();
            }
            _ => {
                if let Some(proposal) = leader.isr_proposal() {
                    leader.confirm_isr(proposal);
                }
            }
        }
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

/// Waits until every broker has the leader's whole log, all are in the ISR and the HW is
/// at the log end, confirming the leader's ISR proposals meanwhile.
fn settle(b: &Brokers) {
    let deadline = Instant::now() + WAIT;
    loop {
        let leader = b.leader();
        if let Some(proposal) = leader.isr_proposal() {
            leader.confirm_isr(proposal);
        }
        let end = leader.log().log_end_offset();
        if b.replicas.iter().all(|r| r.log().log_end_offset() == end)
            && leader.isr().map(|i| i.len()) == Some(BROKERS)
            && leader.high_watermark() == end
        {
            return;
        }
        if Instant::now() > deadline {
            let state: Vec<String> = (b.replicas.iter().enumerate())
                .map(|(id, r)| {
                    format!(
                        "broker {id}: leader {} epoch {} leader_id {:?} LEO {} HW {} ISR {:?} proposal {:?}",
                        r.is_leader(),
                        r.leader_epoch(),
                        r.leader_id(),
                        r.log().log_end_offset(),
                        r.high_watermark(),
                        r.isr(),
                        r.isr_proposal()
                    )
                })
                .collect();
            panic!("the followers never caught up:\n  {}", state.join("\n  "));
        }
        thread::sleep(Duration::from_millis(1));
    }
}

fn run_seed(seed: u64) -> Result<(), String> {
    threads::check_seed(seed, "FAILOVER_THREADS", "failover_threads", check_seed)
}

fn check_seed(seed: u64) {
    let b = Brokers::new(seed);
    let [producing, consuming, fetching] = [(); 3].map(|_| AtomicBool::new(true));
    let (produced, seen) = thread::scope(|s| {
        let _stop_all_on_failure = StopAll([&producing, &consuming, &fetching]);
        let b = &b;
        let fetchers: Vec<_> = (0..BROKERS)
            .map(|me| {
                let fetching = &fetching;
                s.spawn(move || fetch_loop(b, me, fetching, seed))
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
        settle(b);
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
