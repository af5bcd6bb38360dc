//! Threads against the consumer-offsets store on one replicated offsets partition, each of
//! three brokers with its own store: two committers keep up to three commits in flight
//! each (as a consumer's `commitAsync` may) with whichever broker leads, every broker's
//! fetcher follows the leader, a cleaner compacts every replica's log, a reader fetches
//! the groups' offsets from the leader, and a controller moves the leadership among the
//! ISR (the old leader's store unloads, the new one's loads step by step, so that the next
//! change may interrupt a load), starts new epochs, shrinks and grows the ISR it holds
//! (answering the leader late and out of order now and then) and moves the clock, all at
//! once.
//!
//! Checked: at every controller step, every member of its ISR holds everything below the
//! leader's HW; an offset the reader sees for a partition never goes back, across failovers
//! too; every commit's handle completes; at the end each partition's offset is one a
//! committer sent and at least the last one acknowledged, and a store that loads the
//! leader's log afresh finds the same or, where a commit failed after it was written, a
//! later one a committer sent.
//!
//! ```text
//! cargo test --release --test offsets_threads                          # CI: 40 seeds
//! OFFSETS_THREADS_SEED=7 cargo test --release --test offsets_threads   # one seed
//! OFFSETS_THREADS_SEEDS=500 cargo test --release --test offsets_threads
//! ```

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::threads::{self, join, Brokers, Change, Rng, StopAll, BROKERS};
use partlog::cleaner::{clean_log, cleanable, OffsetMap, Throttle};
use partlog::offsets::{offsets_log_config, OffsetCommit, OffsetsConfig, OffsetsStore};
use partlog::replica::AppendHandle;
use partlog::{Clock, Error, LogConfig};

const COMMITTERS: usize = 2;
const COMMITS_PER_COMMITTER: usize = 150;
const GROUPS_PER_COMMITTER: usize = 2;
const PARTITIONS: i32 = 3;
const IN_FLIGHT: usize = 3;
const TOPIC: &str = "orders";
const LAG_MS: i64 = 200;
/// Longer than any test run: a handle that is still pending after it was lost.
const WAIT: Duration = Duration::from_secs(10);

/// A group's partition: `(group, partition)`.
type Key = (String, i32);

fn group(committer: usize, i: usize) -> String {
    format!("group-{committer}-{i}")
}

fn all_groups() -> Vec<String> {
    (0..COMMITTERS)
        .flat_map(|c| (0..GROUPS_PER_COMMITTER).map(move |i| group(c, i)))
        .collect()
}

/// A store hosting broker `id`'s replica of offsets partition 0, as a follower.
fn store(b: &Brokers, id: usize) -> OffsetsStore {
    let config = OffsetsConfig {
        partitions: 1,
        load_buffer_bytes: 1024,
        ..OffsetsConfig::default()
    };
    let store = OffsetsStore::new(config, b.clock.clone());
    store.host(0, b.replicas[id].clone());
    store
}

/// Starts the view loading and loads it to the log's end (it serves once the HW is there
/// too).
fn load(store: &OffsetsStore) {
    store.become_leader(0).expect("become leader");
    store.load(0).expect("load");
}

/// The offsets of every group, as `store` serves them; `None` while it loads, or when its
/// replica does not lead.
fn offsets(store: &OffsetsStore) -> Option<BTreeMap<Key, i64>> {
    let mut out = BTreeMap::new();
    for g in all_groups() {
        match store.fetch(&g, None) {
            Ok(list) => out.extend(
                list.into_iter()
                    .map(|((_, p), c)| ((g.clone(), p), c.offset)),
            ),
            Err(Error::CoordinatorLoadInProgress { .. } | Error::NotCoordinator { .. }) => {
                return None
            }
            Err(e) => panic!("fetch {g}: {e}"),
        }
    }
    Some(out)
}

/// What one committer's commits came to.
#[derive(Default)]
struct Committed {
    /// Every offset it sent, per partition.
    sent: BTreeMap<Key, BTreeSet<i64>>,
    /// The highest acknowledged offset per partition.
    acked: BTreeMap<Key, i64>,
}

/// A commit in flight: its handle and the offsets it carries.
type InFlight = (AppendHandle, Vec<(Key, i64)>);

fn commit_loop(b: &Brokers, stores: &[OffsetsStore], committer: usize, seed: u64) -> Committed {
    let mut rng = Rng::new(seed, committer as u64);
    let mut out = Committed::default();
    let mut next: BTreeMap<Key, i64> = BTreeMap::new();
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    for _ in 0..COMMITS_PER_COMMITTER {
        rng.pace();
        let g = group(committer, rng.below(GROUPS_PER_COMMITTER as u64) as usize);
        let first = rng.below(PARTITIONS as u64) as i32;
        let count = 1 + rng.below((PARTITIONS - first) as u64) as i32;
        let offsets: Vec<(Key, i64)> = (first..first + count)
            .map(|p| {
                let key = (g.clone(), p);
                let offset = next.entry(key.clone()).or_insert(0);
                *offset += 1 + rng.below(5) as i64;
                (key, *offset)
            })
            .collect();
        for (key, offset) in &offsets {
            out.sent.entry(key.clone()).or_default().insert(*offset);
        }
        let handle = send(b, stores, &g, &offsets);
        in_flight.push_back((handle, offsets));
        if in_flight.len() == IN_FLIGHT {
            if let Some(oldest) = in_flight.pop_front() {
                finish(oldest, &mut out);
            }
        }
    }
    in_flight.into_iter().for_each(|f| finish(f, &mut out));
    out
}

/// Sends one commit to the leader's store, again after a back-off while it loads, while
/// the leadership moves, or while the ISR is short.
fn send(b: &Brokers, stores: &[OffsetsStore], group: &str, offsets: &[(Key, i64)]) -> AppendHandle {
    let commits: Vec<OffsetCommit> = offsets
        .iter()
        .map(|((_, p), offset)| OffsetCommit {
            topic: TOPIC.into(),
            partition: *p,
            offset: *offset,
            leader_epoch: 1,
            metadata: String::new(),
        })
        .collect();
    let deadline = Instant::now() + WAIT;
    loop {
        match stores[b.leader_index()].commit(group, &commits) {
            Ok(handle) => return handle,
            Err(
                Error::CoordinatorLoadInProgress { .. }
                | Error::NotCoordinator { .. }
                | Error::NotLeaderOrFollower
                | Error::NotEnoughReplicas { .. },
            ) => {
                assert!(Instant::now() < deadline, "commit refused for too long");
                thread::sleep(Duration::from_micros(300));
            }
            Err(e) => panic!("commit {group}: {e}"),
        }
    }
}

fn finish((handle, offsets): InFlight, out: &mut Committed) {
    match handle.wait(WAIT) {
        None => panic!("a commit's handle never completed"),
        Some(Ok(_)) => {
            for (key, offset) in offsets {
                let acked = out.acked.entry(key).or_insert(offset);
                *acked = (*acked).max(offset);
            }
        }
        Some(Err(
            Error::NotLeaderOrFollower
            | Error::NotEnoughReplicasAfterAppend { .. }
            | Error::RequestTimedOut,
        )) => {}
        Some(Err(e)) => panic!("commit failed: {e}"),
    }
}

/// Fetches every group's offsets from the leader's store while `reading`; an offset never
/// goes back.
fn read_loop(b: &Brokers, stores: &[OffsetsStore], reading: &AtomicBool, seed: u64) {
    let mut rng = Rng::new(seed, 30);
    let mut seen: BTreeMap<Key, i64> = BTreeMap::new();
    while reading.load(Ordering::Acquire) {
        rng.pace();
        let Some(now) = offsets(&stores[b.leader_index()]) else {
            thread::yield_now();
            continue;
        };
        for (key, offset) in now {
            let before = seen.insert(key.clone(), offset).unwrap_or(0);
            assert!(
                offset >= before,
                "{key:?} went back from {before} to {offset}"
            );
        }
    }
}

/// Cleans every broker's log, each from where its last cleaning ended,
/// while `cleaning`; returns how many cleanings finished.
fn clean_loop(b: &Brokers, cleaning: &AtomicBool, seed: u64) -> usize {
    let mut rng = Rng::new(seed, 40);
    let mut map = OffsetMap::with_memory(1 << 20);
    let logs: Vec<_> = b.replicas.iter().map(|p| p.log().clone()).collect();
    let mut checkpoints = vec![None; logs.len()];
    let mut cleaned = 0;
    while cleaning.load(Ordering::Acquire) {
        rng.pace();
        for (log, checkpoint) in logs.iter().zip(&mut checkpoints) {
            let now = b.clock.now_ms();
            let range = cleanable(log, *checkpoint, now).expect("cleanable range");
            if !range.worth_cleaning(0.0) {
                continue;
            }
            let report = clean_log(log, &range, &mut map, now, &mut Throttle::unlimited())
                .expect("cleaning");
            if !report.aborted {
                *checkpoint = Some(report.end_offset);
                cleaned += 1;
            }
            log.remove_expired_deleted_files()
                .expect("remove deleted files");
        }
        thread::sleep(Duration::from_micros(200));
    }
    cleaned
}

/// Shakes the partition, elections included (see [`Brokers::control_step`]), while
/// `committing`. When the leadership moves, the old leader's store unloads; after each
/// change the new leader's store loads, one step per turn (so a later change may interrupt
/// the load); at the end the load runs to its end.
fn control(b: &Brokers, stores: &[OffsetsStore], committing: &AtomicBool, seed: u64) {
    let (mut rng, mut epoch) = (Rng::new(seed, 20), 1);
    let mut loading = None;
    while committing.load(Ordering::Acquire) {
        thread::sleep(Duration::from_micros(200 + rng.below(600)));
        if let Change::Leader { from, to } = b.control_step(&mut rng, &mut epoch, true, LAG_MS) {
            if from != to {
                stores[from].become_follower(0);
            }
            stores[to].become_leader(0).expect("become leader");
            loading = Some(to);
        } else if let Some(i) = loading {
            if stores[i].load_step(0).expect("load step").done {
                loading = None;
            }
        }
    }
    stores[b.leader_index()].load(0).expect("load");
}

fn run_seed(seed: u64) -> Result<(), String> {
    threads::check_seed(seed, "OFFSETS_THREADS", "offsets_threads", check_seed)
}

fn check_seed(seed: u64) {
    // Segments cleaned away are deleted at once: a load or a fetch reading one holds it
    // open.
    let config = LogConfig {
        segment_bytes: 4 << 10,
        index_bytes_max: 4096,
        file_delete_delay_ms: 0,
        ..offsets_log_config()
    };
    let b = Brokers::new(seed, LAG_MS, config);
    let stores: Vec<OffsetsStore> = (0..BROKERS).map(|id| store(&b, id)).collect();
    load(&stores[0]);
    let [committing, cleaning, reading, fetching] = [(); 4].map(|_| AtomicBool::new(true));
    let (committed, cleanings) = thread::scope(|s| {
        let _stop_all_on_failure = StopAll([&committing, &cleaning, &reading, &fetching]);
        let (b, stores) = (&b, &stores[..]);
        let fetchers: Vec<_> = (0..BROKERS)
            .map(|me| {
                let fetching = &fetching;
                s.spawn(move || b.follow(me, fetching, seed))
            })
            .collect();
        let reader = s.spawn(|| read_loop(b, stores, &reading, seed));
        let cleaner = s.spawn(|| clean_loop(b, &cleaning, seed));
        let controller = s.spawn(|| control(b, stores, &committing, seed));
        let committers: Vec<_> = (0..COMMITTERS)
            .map(|c| s.spawn(move || commit_loop(b, stores, c, seed)))
            .collect();
        let committed: Vec<Committed> = committers.into_iter().map(join).collect();
        committing.store(false, Ordering::Release);
        join(controller);
        cleaning.store(false, Ordering::Release);
        let cleanings = join(cleaner);
        b.settle(WAIT);
        reading.store(false, Ordering::Release);
        join(reader);
        fetching.store(false, Ordering::Release);
        fetchers.into_iter().for_each(join);
        (committed, cleanings)
    });

    let (mut sent, mut acked) = (BTreeMap::new(), BTreeMap::<Key, i64>::new());
    for c in committed {
        sent.extend(c.sent);
        acked.extend(c.acked);
    }
    let leader = b.leader_index();
    let live = offsets(&stores[leader]).expect("the live view serves");
    let fresh = {
        let again = store(&b, leader);
        load(&again);
        offsets(&again).expect("a fresh load serves")
    };
    assert!(
        !acked.is_empty(),
        "nothing was acknowledged: the run proved nothing"
    );
    assert!(cleanings > 0, "nothing was cleaned");
    for (key, &offset) in &acked {
        assert!(
            live.get(key).is_some_and(|&o| o >= offset),
            "{key:?}: acknowledged {offset}, served {:?}",
            live.get(key)
        );
    }
    for (key, &offset) in &live {
        assert!(
            sent[key].contains(&offset),
            "{key:?}: {offset} was never sent"
        );
        let reloaded = fresh.get(key).copied();
        assert!(
            reloaded.is_some_and(|o| o >= offset && sent[key].contains(&o)),
            "{key:?}: served {offset}, a fresh load finds {reloaded:?}"
        );
    }
}

#[test]
fn committers_fetchers_a_reader_and_reloads_race_on_one_offsets_partition() {
    common::run_seeds("OFFSETS_THREADS", 40, run_seed);
}
