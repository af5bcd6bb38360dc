//! Helpers shared by the integration tests: batch factories and backends to run on.
#![allow(dead_code)]

pub mod cluster;
pub mod threads;

use std::path::PathBuf;
use std::sync::Arc;

use partlog::io::real::RealStorage;
use partlog::io::Storage;
use partlog::log::{Log, LogOpenOptions, RecoveryReport};
use partlog::record::{batches, BatchBuilder};
use partlog::{LogConfig, ManualClock};

/// A storage backend with a directory to work in; the temp dir lives as long as this.
pub struct Backend {
    pub name: &'static str,
    pub storage: Arc<dyn Storage>,
    pub root: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

/// The real file system under a fresh temp dir.
pub fn real() -> Backend {
    let tmp = tempfile::tempdir().expect("temp dir");
    Backend {
        name: "real",
        storage: Arc::new(RealStorage),
        root: tmp.path().to_path_buf(),
        _tmp: Some(tmp),
    }
}

/// Both backends, so a scenario is written once and run on each.
pub fn backends() -> Vec<Backend> {
    vec![real(), sim(7)]
}

/// The simulated backend with `seed`.
pub fn sim(seed: u64) -> Backend {
    let storage = partlog::io::sim::SimStorage::new(seed);
    Backend {
        name: "sim",
        storage,
        root: PathBuf::from("/sim"),
        _tmp: None,
    }
}

/// One batch of `records` records with `value_bytes`-byte values, keys `k<i>`, timestamps
/// from `ts`.
pub fn batch(records: usize, value_bytes: usize, ts: i64) -> Vec<u8> {
    let value = vec![b'v'; value_bytes];
    let mut builder = BatchBuilder::new();
    for i in 0..records {
        let key = format!("k{i}");
        builder.append(ts + i as i64, Some(key.as_bytes()), Some(&value), &[]);
    }
    builder.build().expect("non-empty batch")
}

/// One batch of `records` records of 10 bytes, at `base_offset` as a leader assigned it:
/// what a follower appends.
pub fn follower_batch(records: usize, base_offset: i64) -> Vec<u8> {
    let mut b = batch(records, 10, 0);
    partlog::record::set_base_offset(&mut b, base_offset);
    b
}

/// A small config that rolls often, for tests that need many segments.
pub fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_bytes_max: 1024,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

pub fn options(
    backend: &Backend,
    name: &str,
    config: LogConfig,
    clock: Arc<ManualClock>,
) -> LogOpenOptions {
    LogOpenOptions {
        config,
        clock,
        ..LogOpenOptions::new(backend.storage.clone(), backend.root.join(name))
    }
}

pub fn open(backend: &Backend, name: &str, config: LogConfig) -> (Log, RecoveryReport) {
    Log::open(options(
        backend,
        name,
        config,
        Arc::new(ManualClock::new(1_000_000)),
    ))
    .expect("open log")
}

/// Opens the log `name` again as its log dir would after a shutdown, clean or not, with
/// the recovery point it checkpointed.
pub fn reopen(
    backend: &Backend,
    name: &str,
    config: LogConfig,
    clean_shutdown: bool,
    recovery_point: Option<i64>,
) -> (Log, RecoveryReport) {
    Log::open(LogOpenOptions {
        clean_shutdown,
        recovery_point,
        ..options(backend, name, config, Arc::new(ManualClock::new(1_000_000)))
    })
    .expect("reopen log")
}

/// Reads every batch from the log start, returning `(base offset, last offset)` pairs.
pub fn read_all(log: &Log) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    while let Some(slice) = log.read(next, 1 << 20, None).expect("read") {
        let bytes = slice.to_vec().expect("slice bytes");
        for b in batches(&bytes) {
            let b = b.expect("valid batch");
            b.validate().expect("batch validates");
            out.push((b.header().base_offset, b.header().last_offset()));
            next = b.header().next_offset();
        }
    }
    out
}

/// The simulated backend and its disk, for tests that damage or crash it.
pub fn sim_with_disk(seed: u64) -> (Backend, Arc<partlog::io::sim::SimStorage>) {
    let disk = partlog::io::sim::SimStorage::new(seed);
    let backend = Backend {
        name: "sim",
        storage: disk.clone(),
        root: PathBuf::from("/sim"),
        _tmp: None,
    };
    (backend, disk)
}

/// A Kafka aborted-transaction index entry (`AbortedTxn`, version 0): the producer, the
/// transaction's first offset, its marker's offset and the last stable offset after it.
pub fn aborted_txn_entry(producer_id: i64, first: i64, last: i64, lso: i64) -> Vec<u8> {
    let mut e = 0i16.to_be_bytes().to_vec();
    for field in [producer_id, first, last, lso] {
        e.extend_from_slice(&field.to_be_bytes());
    }
    e
}

/// The whole file at `path`, read through the backend's io layer.
pub fn file_bytes(backend: &Backend, path: &std::path::Path) -> Vec<u8> {
    let file = backend
        .storage
        .open(path, partlog::io::OpenMode::Read)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut buf = vec![0u8; file.len().expect("len") as usize];
    file.read_exact_at(&mut buf, 0).expect("read file");
    buf
}

/// Creates or replaces the file at `path` with `bytes`, synced, through the io layer.
pub fn write_file(backend: &Backend, path: &std::path::Path, bytes: &[u8]) {
    let file = backend
        .storage
        .open(path, partlog::io::OpenMode::Create)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    file.set_len(0).expect("set_len");
    file.write_at(bytes, 0).expect("write");
    file.sync_data().expect("sync");
}

/// Names of the files (not directories) in `dir`, sorted.
pub fn file_names(backend: &Backend, dir: &std::path::Path) -> Vec<String> {
    backend
        .storage
        .list_dir(dir)
        .expect("list dir")
        .into_iter()
        .filter(|e| !e.is_dir)
        .map(|e| e.name)
        .collect()
}

/// Copies every file of `from` into `to` (created), through the io layer. The copies are
/// not synced (it is slow on a real disk): crash the sim only after the engine synced them.
pub fn copy_dir(backend: &Backend, from: &std::path::Path, to: &std::path::Path) {
    backend.storage.create_dir_all(to).expect("create dir");
    for name in file_names(backend, from) {
        let bytes = file_bytes(backend, &from.join(&name));
        let file = backend
            .storage
            .open(&to.join(&name), partlog::io::OpenMode::CreateNew)
            .expect("create copy");
        file.write_at(&bytes, 0).expect("write copy");
    }
}

/// Checks that `log` serves every offset in `[log start, log end)`: the first batch
/// returned for offset `o` holds `o` and verifies. Returns the number of offsets read.
pub fn check_every_offset(log: &Log) -> usize {
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    for offset in start..end {
        let slice = log
            .read(offset, 1, None)
            .unwrap_or_else(|e| panic!("read {offset}: {e}"))
            .unwrap_or_else(|| panic!("nothing at {offset} below the end {end}"));
        let bytes = slice.to_vec().expect("slice bytes");
        let b = partlog::record::Batch::parse(&bytes).expect("batch parses");
        b.validate().expect("batch validates");
        let h = b.header();
        assert!(
            h.base_offset <= offset && offset <= h.last_offset(),
            "read {offset} returned batch {}..={}",
            h.base_offset,
            h.last_offset()
        );
    }
    (end - start) as usize
}

/// A `u64` from the environment variable `name` (seed counts and the like), `None` when it
/// is not set; a value that does not parse fails the test.
/// The compacted log of the compaction model tests: small segments and indexes, every
/// dirty byte worth cleaning.
pub fn compacted_config(delete_retention_ms: i64) -> LogConfig {
    LogConfig {
        cleanup_policy: partlog::CleanupPolicy::Compact,
        segment_bytes: 2048,
        index_bytes_max: 1024,
        index_interval_bytes: 256,
        min_cleanable_dirty_ratio: 0.0,
        delete_retention_ms,
        ..LogConfig::default()
    }
}

/// Seeds of the compaction model tests: `COMPACTION_SEEDS`, 200 by default.
pub fn compaction_seeds() -> u64 {
    env_u64("COMPACTION_SEEDS").unwrap_or(200)
}

pub fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}={v:?}: {e}")),
    )
}

/// Reads the whole log from its start and checks that the batches' offsets are
/// consecutive up to the log end; `context` names the case in a failure.
pub fn assert_offsets_consecutive(log: &Log, context: &str) {
    let mut next = log.log_start_offset();
    while let Some(slice) = log.read(next, 1 << 20, None).expect("read") {
        let bytes = slice.to_vec().expect("slice bytes");
        for b in batches(&bytes) {
            let h = *b.expect("batch").header();
            assert_eq!(
                h.base_offset, next,
                "{context}: offsets jump from {next} to {}",
                h.base_offset
            );
            next = h.next_offset();
        }
    }
    assert_eq!(next, log.log_end_offset(), "{context}");
}

/// The message of a caught panic (`String` or `&str` payloads).
pub fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else {
        "non-string panic".into()
    }
}

/// A failed seed's report: the panic, the last `shown` operations of `trace`, and the
/// command that replays it.
pub fn seed_report(seed: u64, text: &str, trace: &[String], shown: usize, replay: &str) -> String {
    let tail = &trace[trace.len().saturating_sub(shown)..];
    format!(
        "seed {seed} failed: {text}\n  last operations:\n    {}\n  replay: {replay}",
        tail.join("\n    ")
    )
}

/// Runs one seed of a simulation: `drive` builds it into the slot and runs it; a panic
/// becomes the seed's report, with the last operations of the trace `trace_of` takes from
/// what was built and the command that replays the seed (`<prefix>_SEED=<seed> cargo test
/// --release --test <test>`).
pub fn run_sim_seed<S>(
    seed: u64,
    prefix: &str,
    test: &str,
    drive: impl FnOnce(&mut Option<S>),
    trace_of: impl FnOnce(S) -> Vec<String>,
) -> Result<(), String> {
    let mut sim = None;
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drive(&mut sim))).map_err(|panic| {
        let trace = sim.map_or(Vec::new(), trace_of);
        let replay = format!("{prefix}_SEED={seed} cargo test --release --test {test}");
        seed_report(seed, &panic_text(panic.as_ref()), &trace, 25, &replay)
    })
}

/// Runs a seeded simulation the way every simulator test does: `<PREFIX>_SEED` replays one
/// seed; otherwise `<PREFIX>_SEEDS` seeds (default `default_seeds`) from
/// `<PREFIX>_SEED_BASE` (default 0) run, and the first failure reports are shown.
pub fn run_seeds(prefix: &str, default_seeds: u64, run_seed: impl Fn(u64) -> Result<(), String>) {
    if let Some(seed) = env_u64(&format!("{prefix}_SEED")) {
        run_seed(seed).unwrap_or_else(|report| panic!("{report}"));
        return;
    }
    let base = env_u64(&format!("{prefix}_SEED_BASE")).unwrap_or(0);
    let count = env_u64(&format!("{prefix}_SEEDS")).unwrap_or(default_seeds);
    let failures: Vec<String> = (base..base + count)
        .filter_map(|seed| run_seed(seed).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {count} seeds failed:\n\n{}",
        failures.len(),
        failures[..failures.len().min(3)].join("\n\n")
    );
}

/// Produces `batches` batches with `acks=all` on the library cluster, replicating after
/// each until it completes; returns each batch as the leader took it (base offset and
/// leader epoch assigned), with its base offset.
pub fn produce_acked(
    c: &mut partlog::cluster::Cluster,
    batches: usize,
) -> Vec<partlog::cluster::BatchBytes> {
    let mut acked = Vec::new();
    for i in 0..batches {
        let mut sent = batch(2, 30, i as i64);
        let h = c
            .produce(&mut sent, partlog::replica::Acks::All, 30_000)
            .expect("produce");
        for _ in 0..10 {
            if h.poll().is_some() {
                break;
            }
            c.replicate().expect("replicate");
        }
        let info = h.poll().expect("complete").expect("acknowledged");
        acked.push((info.first_offset, sent));
    }
    acked
}

/// One batch of keyed records (`None` value: a tombstone), timestamps from `ts` up.
pub fn keyed_batch(records: &[(Vec<u8>, Option<Vec<u8>>)], ts: i64) -> Vec<u8> {
    let mut builder = BatchBuilder::new();
    for (i, (key, value)) in records.iter().enumerate() {
        builder.append(ts + i as i64, Some(key), value.as_deref(), &[]);
    }
    builder.build().expect("non-empty batch")
}

/// One record as a test reads it back: `(offset, key, value)`.
pub type LogRecord = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

/// Every record of the log in offset order.
pub fn log_records(log: &Log) -> Vec<LogRecord> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    while let Some(slice) = log.read(next, 1 << 20, None).expect("read") {
        let bytes = slice.to_vec().expect("bytes");
        for b in batches(&bytes) {
            let b = b.expect("batch");
            b.validate().expect("valid batch");
            for r in b.records().expect("records") {
                let r = r.expect("record");
                out.push((
                    r.offset,
                    r.key.map(<[u8]>::to_vec),
                    r.value.map(<[u8]>::to_vec),
                ));
            }
            next = b.header().next_offset();
        }
    }
    out
}

/// Runs `first` and `second` on two threads that meet inside one write: the simulated disk
/// holds the syncs of files whose names end with `suffix`; `first` starts and reaches such
/// a sync; then `second` starts and is given time to reach one of its own, or to wait for
/// `first`; then the syncs go on. Returns both results. A test of two writers that must
/// take turns (each writing a temp file, syncing it and renaming it) fails through this
/// when they do not.
pub fn meet_in_a_held_sync<A: Send, B: Send>(
    sim: &partlog::io::sim::SimStorage,
    suffix: &str,
    first: impl FnOnce() -> A + Send,
    second: impl FnOnce() -> B + Send,
) -> (A, B) {
    sim.hold_syncs(suffix);
    std::thread::scope(|s| {
        let first = s.spawn(first);
        while sim.syncs_waiting() < 1 {
            std::thread::yield_now();
        }
        let second = s.spawn(second);
        // Nothing depends on how long this is: the second either reached a sync of its own
        // (the writers overlap) or waits for the first (they take turns).
        for _ in 0..20 {
            if sim.syncs_waiting() >= 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        sim.release_syncs();
        (
            first.join().expect("first thread"),
            second.join().expect("second thread"),
        )
    })
}
