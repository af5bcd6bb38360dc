//! Compaction and consumer-offsets workloads, on real disk:
//!
//! - compaction of a dirty log whose records' keys are 10% distinct (each key written ten
//!   times, 1 KiB values), one full cleaning, against a raw sequential read of the same
//!   segment files: with the keys written in rounds ([`KeyOrder::Rounds`], the floor's
//!   workload), and at random places ([`KeyOrder::Scattered`], reported beside it);
//! - loading an offsets partition (commits of 100 partitions each) into a store's view,
//!   against a raw sequential read of its files;
//! - commits of 100 partition offsets each with `acks=1`, in partition offsets per second.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::workload;
use crate::checkpoint::TopicPartition;
use crate::cleaner::{CleanOutcome, Cleaner, CleanerConfig};
use crate::clock::SystemClock;
use crate::config::{CleanupPolicy, LogConfig};
use crate::error::{Error, Result};
use crate::manager::{LogDir, LogDirOptions};
use crate::offsets::{
    offsets_log_config, OffsetCommit, OffsetsConfig, OffsetsStore, OFFSETS_TOPIC,
};
use crate::record::BatchBuilder;
use crate::replica::{Acks, Partition, ReplicaConfig, ReplicaManager};

/// Records per batch and value bytes of the compaction workload.
const RECORDS_PER_BATCH: usize = 16;
const VALUE_BYTES: usize = 1000;
/// Each key is written this many times: 10% of the records are live.
const WRITES_PER_KEY: u64 = 10;
/// Partitions per commit of the offsets workloads.
const PARTITIONS_PER_COMMIT: usize = 100;

fn log_dir(root: &Path, config: LogConfig) -> Result<LogDir> {
    let options = LogDirOptions {
        config,
        clock: Arc::new(SystemClock),
    };
    LogDir::open(workload::storage(), root, options)
}

/// Time of one sequential `pread` pass over the `.log` files of `dir`, and its bytes.
fn raw_read(dir: &Path) -> Result<(Duration, u64)> {
    let files = workload::segment_files(dir)?;
    let mut buf = vec![0u8; workload::FETCH_BYTES];
    let start = Instant::now();
    let bytes = workload::pread_files(&files, &mut buf, |chunk| {
        std::hint::black_box(chunk);
    })?;
    Ok((start.elapsed(), bytes))
}

/// Where the compaction workload writes each key's ten records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrder {
    /// In ten rounds over every key, as consumer groups committing in turn do: the last
    /// round holds every key's latest record, and the cleaning's rewrite reads only the
    /// last tenth of the log (the others are superseded whole).
    Rounds,
    /// Each record's key drawn at random (about ten records per key, placed anywhere),
    /// as a changelog of random updates: latest records all over the log, in about a
    /// third of its batches.
    Scattered,
}

/// What [`compaction`] measured.
#[derive(Debug, Clone, Copy)]
pub struct Cleanings {
    /// The best cleaning's time.
    pub clean: Duration,
    /// The best raw read's time (one after each build, page cache warm for both).
    pub raw: Duration,
    /// The log's bytes before cleaning.
    pub bytes: u64,
    /// The share of the log's batches that the rewrite did not read: the map pass found
    /// them superseded whole (the same in every repetition).
    pub skipped_share: f64,
}

/// Builds a compacted log of about `data_bytes` in `root`, its keys in `order`, and cleans
/// it once, `reps` times.
pub fn compaction(root: &Path, data_bytes: u64, order: KeyOrder, reps: usize) -> Result<Cleanings> {
    let mut best = Cleanings {
        clean: Duration::MAX,
        raw: Duration::MAX,
        bytes: 0,
        skipped_share: 0.0,
    };
    for _ in 0..reps.max(1) {
        let once = compaction_once(root, data_bytes, order)?;
        best = Cleanings {
            clean: best.clean.min(once.clean),
            raw: best.raw.min(once.raw),
            ..once
        };
    }
    Ok(best)
}

fn compaction_once(root: &Path, data_bytes: u64, order: KeyOrder) -> Result<Cleanings> {
    workload::remove_tree(root)?;
    let config = LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        ..LogConfig::default()
    };
    let dir = log_dir(root, config)?;
    let tp = TopicPartition::new(workload::TOPIC, 0);
    let (log, _) = dir.open_log(&tp)?;
    let record_bytes = (VALUE_BYTES + 30) as u64;
    let records = (data_bytes / record_bytes).max(RECORDS_PER_BATCH as u64);
    let keys = (records / WRITES_PER_KEY).max(1);
    let mut builder = BatchBuilder::new();
    let mut value = vec![0u8; VALUE_BYTES];
    let mut batch = Vec::new();
    let now = workload::now_ms();
    // The keys the appended batches hold: the records a full cleaning keeps, one each.
    let mut written = vec![false; keys as usize];
    let mut in_builder = Vec::with_capacity(RECORDS_PER_BATCH);
    for i in 0..records {
        let key = match order {
            // Each round the keys in a scattered order, each written once.
            KeyOrder::Rounds => i.wrapping_mul(0x9E37_79B9) % keys,
            KeyOrder::Scattered => mix(i) % keys,
        };
        value[..8].copy_from_slice(&i.to_le_bytes());
        builder.append(now, Some(&key.to_be_bytes()), Some(&value), &[]);
        in_builder.push(key);
        if builder.len() == RECORDS_PER_BATCH {
            batch.clear();
            builder.build_into(&mut batch)?;
            log.append_as_leader(&mut batch, 0)?;
            for key in in_builder.drain(..) {
                written[key as usize] = true;
            }
        }
    }
    let live = written.iter().filter(|&&w| w).count() as u64;
    log.force_roll()?;
    // On disk before the clock starts, as the inactive segments a cleaner takes have long
    // been: the writeback of a gigabyte just appended would otherwise run during the
    // cleaning, and hold up the sync of its output.
    log.flush()?;
    let bytes = log.size_bytes();
    let partition_dir = workload::partition_dir(root);
    raw_read(&partition_dir)?; // warm the page cache for both
    let (raw, _) = raw_read(&partition_dir)?;
    let cleaner = Cleaner::new(CleanerConfig::default());
    let start = Instant::now();
    let outcome = cleaner.clean_once(&dir, now)?;
    let clean = start.elapsed();
    let batches = records / RECORDS_PER_BATCH as u64; // a last partial batch is not appended
    let skipped_share = match outcome {
        // A cleaning that skipped work would show a ratio it did not earn: it must keep
        // exactly the latest record of every key.
        CleanOutcome::Cleaned { report, .. } if report.records.records_kept != live => {
            return Err(Error::InvalidConfig(format!(
                "bench compaction: the cleaning kept {} records of {live} keys",
                report.records.records_kept
            )))
        }
        CleanOutcome::Cleaned { report, .. } if !report.partial => {
            report.records.batches_skipped as f64 / batches as f64
        }
        other => {
            return Err(Error::InvalidConfig(format!(
                "bench compaction: one full cleaning expected, got {other:?}"
            )))
        }
    };
    drop(log);
    dir.close()?;
    workload::remove_tree(root)?;
    Ok(Cleanings {
        clean,
        raw,
        bytes,
        skipped_share,
    })
}

/// SplitMix64's finalizer: a key drawn at random for record `i`, the same every run.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A lone leader replica of an offsets partition in `root`, and a store hosting it.
fn offsets_partition(
    root: &Path,
    acks: Acks,
) -> Result<(ReplicaManager, Arc<Partition>, OffsetsStore)> {
    let config = offsets_log_config();
    let dir = log_dir(root, config.clone())?;
    let clock = Arc::new(SystemClock);
    let manager = ReplicaManager::new(dir, clock.clone());
    let tp = TopicPartition::new(OFFSETS_TOPIC, 0);
    let (replica, _) = manager.open_partition(&tp, config, ReplicaConfig::new(0))?;
    replica.become_leader(replica.leader_epoch().max(0) + 1, vec![0], vec![0])?;
    let store = OffsetsStore::new(
        OffsetsConfig {
            partitions: 1,
            acks,
            ..OffsetsConfig::default()
        },
        clock,
    );
    store.host(0, replica.clone());
    store.become_leader(0)?;
    store.load(0)?;
    Ok((manager, replica, store))
}

/// Commits of [`PARTITIONS_PER_COMMIT`] offsets each, over `groups` groups.
fn commit_workload(store: &OffsetsStore, commits: usize, groups: usize) -> Result<()> {
    let topics: Vec<String> = (0..4).map(|t| format!("topic-{t}")).collect();
    // A commit lists its partitions topic by topic, as Kafka's OffsetCommit request does.
    let per_topic = PARTITIONS_PER_COMMIT / topics.len();
    let mut offsets: Vec<OffsetCommit> = (0..PARTITIONS_PER_COMMIT)
        .map(|p| OffsetCommit {
            topic: topics[(p / per_topic).min(topics.len() - 1)].clone(),
            partition: (p % per_topic) as i32,
            offset: 0,
            leader_epoch: 1,
            metadata: String::new(),
        })
        .collect();
    let names: Vec<String> = (0..groups).map(|g| format!("group-{g}")).collect();
    for i in 0..commits {
        for o in offsets.iter_mut() {
            o.offset = i as i64;
        }
        store.commit(&names[i % groups], &offsets)?;
    }
    Ok(())
}

/// Partition offsets committed per second with `acks=1`, over `commits` commits.
pub fn commits_per_second(root: &Path, commits: usize) -> Result<f64> {
    workload::remove_tree(root)?;
    let (manager, replica, store) = offsets_partition(root, Acks::Leader)?;
    let start = Instant::now();
    commit_workload(&store, commits, 1_000)?;
    let took = start.elapsed();
    drop((store, replica));
    manager.close()?;
    workload::remove_tree(root)?;
    Ok((commits * PARTITIONS_PER_COMMIT) as f64 / took.as_secs_f64().max(1e-9))
}

/// Consumer groups of the load workload; each commit is of all its partitions.
const LOAD_GROUPS: usize = 10_000;

/// Builds an offsets partition of about `data_bytes`, then loads it into a fresh store's
/// view `reps` times, each load followed by a raw read of its files. Returns the best
/// load's time, the best raw read's time and the bytes.
pub fn offsets_load(
    root: &Path,
    data_bytes: u64,
    reps: usize,
) -> Result<(Duration, Duration, u64)> {
    workload::remove_tree(root)?;
    let (manager, replica, store) = offsets_partition(root, Acks::Leader)?;
    let commit_bytes = 61 + PARTITIONS_PER_COMMIT as u64 * 60;
    let commits = (data_bytes / commit_bytes).max(1) as usize;
    commit_workload(&store, commits, LOAD_GROUPS)?;
    drop(store);
    // Rolled, so that the raw read reads the batches and not the zeros the active segment
    // keeps written ahead of its end.
    replica.log().force_roll()?;
    // On disk before the clock starts, as a partition that a new leader loads has long
    // been: the writeback of freshly written pages would otherwise run during the load.
    replica.log().flush()?;
    let bytes = replica.log().size_bytes();
    let partition_dir = replica.log().dir().to_path_buf();
    raw_read(&partition_dir)?; // warm
    let (mut load, mut raw) = (Duration::MAX, Duration::MAX);
    for _ in 0..reps.max(1) {
        let fresh = OffsetsStore::new(
            OffsetsConfig {
                partitions: 1,
                ..OffsetsConfig::default()
            },
            Arc::new(SystemClock),
        );
        fresh.host(0, replica.clone());
        let start = Instant::now();
        fresh.become_leader(0)?;
        fresh.load(0)?;
        load = load.min(start.elapsed());
        // A load that skipped work would show a ratio it did not earn: every group's
        // partitions must be in the view, each at the group's last commit (commit `i`,
        // of group `i % LOAD_GROUPS`, committed offset `i` for all its partitions).
        for g in 0..LOAD_GROUPS.min(commits) {
            let last = g + (commits - 1 - g) / LOAD_GROUPS * LOAD_GROUPS;
            let offsets = fresh.fetch(&format!("group-{g}"), None)?;
            let current = offsets.iter().filter(|(_, c)| c.offset == last as i64);
            if offsets.len() != PARTITIONS_PER_COMMIT || current.count() != offsets.len() {
                return Err(Error::InvalidConfig(format!(
                    "bench offsets load: group-{g} has {} of {PARTITIONS_PER_COMMIT} offsets, \
                     not all at its last commit {last}",
                    offsets.len()
                )));
            }
        }
        drop(fresh);
        raw = raw.min(raw_read(&partition_dir)?.0);
    }
    drop(replica);
    manager.close()?;
    workload::remove_tree(root)?;
    Ok((load, raw, bytes))
}
