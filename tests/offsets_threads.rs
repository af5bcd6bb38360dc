//! Threads against the consumer-offsets store on one replicated offsets partition: two
//! committers keep up to three commits in flight each (as a consumer's `commitAsync` may),
//! a fetcher thread per follower replicates the partition, a cleaner compacts every
//! replica's log, a reader fetches the groups' offsets, and a controller bumps the leader
//! epoch and reloads the store's view step by step (a bump may restart a load half done),
//! shrinks and grows the ISR and moves the clock, all at once.
//!
//! Checked: an offset the reader sees for a partition never goes back; every commit's
//! handle completes; at the end each partition's offset is one a committer sent and at
//! least the last one acknowledged, and a store that loads the leader's log afresh finds
//! the same or, where a commit failed after it was written, a later one a committer sent.
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

use common::threads::{self, fetch_loop, join, Replicas, Rng, StopAll};
use partlog::cleaner::{clean_log, cleanable, OffsetMap, Throttle};
use partlog::offsets::{offsets_log_config, OffsetCommit, OffsetsConfig, OffsetsStore};
use partlog::replica::AppendHandle;
use partlog::Error;
use partlog::{Clock, LogConfig};

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

fn store(r: &Replicas) -> OffsetsStore {
    let config = OffsetsConfig {
        partitions: 1,
        load_buffer_bytes: 1024,
        ..OffsetsConfig::default()
    };
    let store = OffsetsStore::new(config, r.clock.clone());
    store.host(0, r.leader.clone());
    store.become_leader(0).expect("become leader");
    store
}

/// Loads the view to the log's end (it serves once the HW is there too).
fn load(store: &OffsetsStore) {
    store.load(0).expect("load");
}

/// The offsets of every group, as `store` serves them; `None` while it loads.
fn offsets(store: &OffsetsStore) -> Option<BTreeMap<Key, i64>> {
    let mut out = BTreeMap::new();
    for g in all_groups() {
        match store.fetch(&g, None) {
            Ok(list) => out.extend(
                list.into_iter()
                    .map(|((_, p), c)| ((g.clone(), p), c.offset)),
            ),
            Err(Error::CoordinatorLoadInProgress { .. }) => return None,
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

fn commit_loop(store: &OffsetsStore, committer: usize, seed: u64) -> Committed {
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
        let handle = send(store, &g, &offsets);
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

/// Sends one commit, again after a back-off while the store loads or the ISR is short.
fn send(store: &OffsetsStore, group: &str, offsets: &[(Key, i64)]) -> AppendHandle {
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
        match store.commit(group, &commits) {
            Ok(handle) => return handle,
            Err(Error::CoordinatorLoadInProgress { .. } | Error::NotEnoughReplicas { .. }) => {
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

/// Fetches every group's offsets while `reading`; an offset never goes back.
fn read_loop(store: &OffsetsStore, reading: &AtomicBool, seed: u64) {
    let mut rng = Rng::new(seed, 30);
    let mut seen: BTreeMap<Key, i64> = BTreeMap::new();
    while reading.load(Ordering::Acquire) {
        rng.pace();
        let Some(now) = offsets(store) else {
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

/// Cleans the leader's and the followers' logs, each from where its last cleaning ended,
/// while `cleaning`; returns how many cleanings finished.
fn clean_loop(r: &Replicas, cleaning: &AtomicBool, seed: u64) -> usize {
    let mut rng = Rng::new(seed, 40);
    let mut map = OffsetMap::with_memory(1 << 20);
    let logs: Vec<_> = std::iter::once(&r.leader)
        .chain(&r.followers)
        .map(|p| p.log().clone())
        .collect();
    let mut checkpoints = vec![None; logs.len()];
    let mut cleaned = 0;
    while cleaning.load(Ordering::Acquire) {
        rng.pace();
        for (log, checkpoint) in logs.iter().zip(&mut checkpoints) {
            let now = r.clock.now_ms();
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

/// Shakes the partition (see [`Replicas::control_step`]) while `committing`. After each
/// epoch bump the store's view loads again, as an embedder's does when its replica leads
/// again, one step per turn (so a later bump may restart a load half done); at the end the
/// load runs to its end.
fn control(r: &Replicas, store: &OffsetsStore, committing: &AtomicBool, seed: u64) {
    let (mut rng, mut epoch) = (Rng::new(seed, 20), 1);
    let mut loading = false;
    while committing.load(Ordering::Acquire) {
        thread::sleep(Duration::from_micros(200 + rng.below(600)));
        if r.control_step(&mut rng, &mut epoch, LAG_MS) {
            store.become_leader(0).expect("become leader");
            loading = true;
        } else if loading {
            loading = !store.load_step(0).expect("load step").done;
        }
    }
    load(store);
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
    let r = Replicas::with_config(seed, LAG_MS, config);
    let live = store(&r);
    load(&live);
    let [committing, cleaning, reading, fetching] = [(); 4].map(|_| AtomicBool::new(true));
    let (committed, cleanings) = thread::scope(|s| {
        let _stop_all_on_failure = StopAll([&committing, &cleaning, &reading, &fetching]);
        let (r, live) = (&r, &live);
        let fetchers: Vec<_> = (r.followers.iter().zip(0..))
            .map(|(f, n)| {
                let (leader, fetching) = (&r.leader, &fetching);
                s.spawn(move || fetch_loop(leader, f, fetching, Rng::new(seed, 10 + n)))
            })
            .collect();
        let reader = s.spawn(|| read_loop(live, &reading, seed));
        let cleaner = s.spawn(|| clean_loop(r, &cleaning, seed));
        let controller = s.spawn(|| control(r, live, &committing, seed));
        let committers: Vec<_> = (0..COMMITTERS)
            .map(|c| s.spawn(move || commit_loop(live, c, seed)))
            .collect();
        let committed: Vec<Committed> = committers.into_iter().map(join).collect();
        committing.store(false, Ordering::Release);
        join(controller);
        cleaning.store(false, Ordering::Release);
        let cleanings = join(cleaner);
        r.settle(WAIT);
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
    let live = offsets(&live).expect("the live view serves");
    let fresh = {
        let again = store(&r);
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
