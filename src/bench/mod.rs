//! Workloads measured by `partlog bench` and by the criterion benches in `benches/`. Each
//! compares the log against the raw disk in the same run, on the same bytes, in the same
//! directory; the workloads themselves live in [`workload`].
//!
//! Every measurement is repeated, log and raw interleaved (alternating which goes first),
//! and the best of the repetitions is kept, so that noise from other processes (which only
//! ever slows a run down) affects log and raw alike.

pub mod compaction;
pub mod replication;
mod report;
pub mod workload;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

pub use report::{
    BenchReport, ACKS_ALL_RATIO_FLOOR, APPEND_RATIO_FLOOR, APPEND_SMALL_RATIO_FLOOR,
    CLEAN_OPEN_MS_MAX, COMMITS_PER_S_FLOOR, COMPACTION_RATIO_FLOOR, FOLLOWER_CATCHUP_RATIO_FLOOR,
    OFFSETS_LOAD_RATIO_FLOOR, READ_RATIO_FLOOR, RECOVERY_RATIO_FLOOR,
};

/// Bytes of log data in a full run: one default-sized (1 GiB) segment.
pub const DATA_BYTES_FULL: u64 = 1 << 30;
/// Bytes of log data with `--quick`.
pub const DATA_BYTES_QUICK: u64 = 128 << 20;
/// Segments of the clean-open workload.
pub const CLEAN_OPEN_SEGMENTS: usize = 1000;
/// Bytes appended (and written raw) between switches of the interleaved append.
const APPEND_CHUNK_BYTES: usize = 16 << 20;
/// Repetitions of each throughput measurement (best kept).
const REPS: usize = 3;
/// Repetitions of the read scans, which are short (best kept).
const READ_REPS: usize = 5;
/// Repetitions of the clean open (best kept).
const OPEN_REPS: usize = 5;
/// Repetitions of the follower catch-up (best kept).
const CATCHUP_REPS: usize = 3;
/// The `acks` workload appends this share of the data bytes per run (it runs six times,
/// and each byte is written three times).
const ACKS_DATA_DIVISOR: u64 = 8;
/// Single appends of each `acks` setting timed for the latency figures.
const LATENCY_APPENDS: usize = 2000;
/// Repetitions of the compaction (best kept; each builds its dirty log anew).
const COMPACTION_REPS: usize = 2;
/// Bytes of the offsets partition the load workload replays (the 100 MiB).
const OFFSETS_LOAD_BYTES: u64 = 100 << 20;
/// Loads of that partition, each into a fresh store (best kept; a load is short).
const OFFSETS_LOAD_REPS: usize = 5;
/// Commits of 100 partition offsets each in the commit workload.
const COMMITS: usize = 20_000;

/// How to run the benchmark.
#[derive(Debug, Clone, Default)]
pub struct BenchOptions {
    /// Smaller data sizes, for a quick look.
    pub quick: bool,
    /// Where to put the data; a temp dir under the system temp dir when `None`.
    pub dir: Option<PathBuf>,
    /// Bytes of log data; overrides the size `quick` picks (tests use a tiny one).
    pub data_bytes: Option<u64>,
    /// Segments of the clean-open workload; [`CLEAN_OPEN_SEGMENTS`] when `None`.
    pub clean_open_segments: Option<usize>,
}

/// Runs every workload; `progress` is told the name of each stage as it starts. The data
/// directory is removed afterwards, also when a stage fails.
pub fn run(options: &BenchOptions, progress: &mut dyn FnMut(&str)) -> Result<BenchReport> {
    let root = match &options.dir {
        Some(dir) => dir.join(unique_name()),
        None => std::env::temp_dir().join(unique_name()),
    };
    let storage = workload::storage();
    storage.create_dir_all(&root)?;
    let result = run_in(&root, options, progress);
    let cleanup = workload::remove_tree(&root);
    let report = result?;
    cleanup?;
    Ok(report)
}

fn unique_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("partlog-bench-{}-{nanos}", std::process::id())
}

fn run_in(
    root: &Path,
    options: &BenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<BenchReport> {
    let data_bytes = options.data_bytes.unwrap_or(if options.quick {
        DATA_BYTES_QUICK
    } else {
        DATA_BYTES_FULL
    });
    let mut report = BenchReport {
        quick: options.quick,
        ..Default::default()
    };
    let log_root = root.join("log");
    let log_dir = workload::partition_dir(&log_root);
    let raw_paths = [root.join("raw.bin"), root.join("raw-prefilled.bin")];

    report.fresh_page_write_ratio_start = workload::fresh_page_write_ratio(root)?;
    // Small records first: their log is not needed afterwards.
    progress("append-small");
    let small = append_stage(&log_root, &raw_paths, workload::SMALL, data_bytes)?;
    report.append_small_mb_s = mb_s(small.bytes, small.log);
    report.raw_write_small_mb_s = mb_s(small.bytes, small.raw);
    report.append_small_ratio = report.append_small_mb_s / report.raw_write_small_mb_s;
    report.raw_write_small_prefilled_mb_s = mb_s(small.bytes, small.raw_prefilled);
    report.append_small_prefilled_raw_ratio =
        report.append_small_mb_s / report.raw_write_small_prefilled_mb_s;
    report.validate_small_mb_s = mb_s(small.bytes, small.validate);
    drop(small.log_left_open);

    progress("append");
    let large = append_stage(&log_root, &raw_paths, workload::LARGE, data_bytes)?;
    let bytes = large.bytes;
    report.data_bytes = bytes;
    report.validate_mb_s = mb_s(bytes, large.validate);
    report.log_create_ms = large.create.as_secs_f64() * 1e3;
    report.append_mb_s = mb_s(bytes, large.log);
    report.raw_write_mb_s = mb_s(bytes, large.raw);
    report.append_ratio = report.append_mb_s / report.raw_write_mb_s;
    report.raw_write_prefilled_mb_s = mb_s(bytes, large.raw_prefilled);
    report.append_prefilled_raw_ratio = report.append_mb_s / report.raw_write_prefilled_mb_s;
    let log = large.log_left_open;

    progress("read");
    let segments = workload::segment_files(&log_dir)?;
    let mut buf = vec![0u8; workload::FETCH_BYTES];
    // Warm the page cache for both (they read the same file).
    workload::pread_files(&segments, &mut buf, |_| {})?;
    // The raw scan starts half-way through the file, so that the two never read the same
    // bytes close together in time (the second would find them in the CPU cache).
    let mut chunks = workload::raw_chunks(&segments)?;
    let half = chunks.len() / 2;
    chunks.rotate_left(half);
    let (mut log_best, mut raw_best) = (Duration::MAX, Duration::MAX);
    for _ in 0..READ_REPS {
        let (log_took, raw_took) = read_interleaved(&log, &chunks, &mut buf, bytes)?;
        log_best = log_best.min(log_took);
        raw_best = raw_best.min(raw_took);
    }
    report.read_mb_s = mb_s(bytes, log_best);
    report.raw_read_mb_s = mb_s(bytes, raw_best);
    report.read_ratio = report.read_mb_s / report.raw_read_mb_s;
    // Left unflushed and not closed: the next open finds the whole log unrecovered.
    drop((log, chunks));

    progress("recovery");
    // Every open rescans the whole log: recovery leaves the checkpointed recovery point
    // where it was. The best repetition is the scan speed the floor is about; the first,
    // which may meet the kernel still writing the appended data back, is reported apart.
    let (mut log_best, mut raw_best) = (Duration::MAX, Duration::MAX);
    let mut log_first = None;
    for rep in 0..READ_REPS {
        let raw_first = rep % 2 == 0;
        for raw in [raw_first, !raw_first] {
            let start = Instant::now();
            if raw {
                let (n, crc) = workload::read_crc_raw(&segments, &mut buf)?;
                std::hint::black_box(crc);
                raw_best = raw_best.min(start.elapsed());
                check_bytes("raw read+crc", n, bytes)?;
            } else {
                let (log, recovered) = workload::recover_log(&log_dir)?;
                let took = start.elapsed();
                log_first.get_or_insert(took);
                log_best = log_best.min(took);
                check_bytes("recovery", recovered.recovered_bytes, bytes)?;
                drop(log);
            }
        }
    }
    report.recovery_mb_s = mb_s(bytes, log_best);
    report.raw_crc_mb_s = mb_s(bytes, raw_best);
    report.recovery_ratio = report.recovery_mb_s / report.raw_crc_mb_s;
    report.recovery_first_mb_s = mb_s(bytes, log_first.unwrap_or(log_best));
    workload::remove_tree(&log_root)?;

    progress("clean-open");
    let open_root = root.join("open");
    let wanted = options.clean_open_segments.unwrap_or(CLEAN_OPEN_SEGMENTS);
    workload::build_segments(&open_root, wanted)?;
    let mut best = Duration::MAX;
    for _ in 0..OPEN_REPS {
        let (segments, took) = workload::open_clean(&open_root)?;
        check_bytes("clean open segments", segments as u64, wanted as u64)?;
        best = best.min(took);
    }
    report.clean_open_segments = wanted;
    report.clean_open_ms_1000_segments = best.as_secs_f64() * 1e3;
    workload::remove_tree(&open_root)?;

    progress("follower-catchup");
    let replicas_root = root.join("replicas");
    let count = batches_for(workload::LARGE, data_bytes);
    let (mut corpus, batch_len) = workload::corpus(workload::LARGE, count);
    let (append, catchup) =
        replication::follower_catchup(&replicas_root, &mut corpus, batch_len, CATCHUP_REPS)?;
    report.leader_append_mb_s = mb_s(corpus.len() as u64, append);
    report.follower_catchup_mb_s = mb_s(corpus.len() as u64, catchup);
    report.follower_catchup_ratio = report.follower_catchup_mb_s / report.leader_append_mb_s;
    drop(corpus);

    progress("acks");
    report.parallel_copy_ratio_acks = workload::parallel_copy_ratio();
    let count = batches_for(workload::LARGE, data_bytes / ACKS_DATA_DIVISOR);
    let (mut corpus, batch_len) = workload::corpus(workload::LARGE, count);
    let latency_appends = LATENCY_APPENDS.min(count / 2).max(1);
    let acks =
        replication::acks_all_vs_one(&replicas_root, &mut corpus, batch_len, latency_appends)?;
    report.acks_all_p50_us = acks.acks_all_p50_us - acks.acks1_p50_us;
    report.acks_all_p99_us = acks.acks_all_p99_us - acks.acks1_p99_us;
    report.acks1_p50_us = acks.acks1_p50_us;
    report.acks1_p99_us = acks.acks1_p99_us;
    report.acks1_mb_s = acks.acks1_mb_s;
    report.acks_all_mb_s = acks.acks_all_mb_s;
    report.acks1_replicated_mb_s = acks.acks1_replicated_mb_s;
    report.acks_all_ceiling_ratio = acks.acks1_replicated_mb_s / acks.acks1_mb_s;
    report.acks1_cpu_cores = acks.acks1_cpu_cores;
    report.acks_all_cpu_cores = acks.acks_all_cpu_cores;
    report.acks_spin_pauses = acks.spin_pauses;
    report.acks_all_ratio = acks.acks_all_mb_s / acks.acks1_mb_s;
    drop(corpus);

    progress("compaction");
    report.fresh_page_write_ratio_compaction = workload::fresh_page_write_ratio(root)?;
    let compaction_root = root.join("compaction");
    let rounds = compaction::KeyOrder::Rounds;
    let cleanings = compaction::compaction(&compaction_root, data_bytes, rounds, COMPACTION_REPS)?;
    report.compaction_mb_s = mb_s(cleanings.bytes, cleanings.clean);
    report.raw_read_compaction_mb_s = mb_s(cleanings.bytes, cleanings.raw);
    report.compaction_skipped_share = cleanings.skipped_share;
    report.compaction_ratio = report.compaction_mb_s / report.raw_read_compaction_mb_s;
    // The same with each key's records at random places: the floor's workload lets the
    // rewrite skip nine tenths of the log, this one about two thirds.
    let scattered = compaction::KeyOrder::Scattered;
    let cleanings = compaction::compaction(&compaction_root, data_bytes, scattered, 1)?;
    report.compaction_scattered_ratio =
        mb_s(cleanings.bytes, cleanings.clean) / mb_s(cleanings.bytes, cleanings.raw);
    report.compaction_scattered_skipped_share = cleanings.skipped_share;

    progress("offsets-load");
    report.parallel_copy_ratio_load = workload::parallel_copy_ratio();
    report.handoff_copy_ratio_load = workload::handoff_copy_ratio();
    let load_bytes = OFFSETS_LOAD_BYTES.min(data_bytes);
    let (load, raw, bytes) =
        compaction::offsets_load(&compaction_root, load_bytes, OFFSETS_LOAD_REPS)?;
    report.offsets_load_mb_s = mb_s(bytes, load);
    report.raw_read_offsets_mb_s = mb_s(bytes, raw);
    report.offsets_load_ratio = report.offsets_load_mb_s / report.raw_read_offsets_mb_s;

    progress("commits");
    let commits = if options.quick { COMMITS / 4 } else { COMMITS };
    let commits = commits.min((data_bytes / 4096).max(10) as usize);
    report.commits_per_s = compaction::commits_per_second(&compaction_root, commits)?;
    Ok(report)
}

/// The best times of one append workload.
struct AppendTimes {
    bytes: u64,
    log: Duration,
    raw: Duration,
    /// The raw twin that writes zeros ahead as the log does.
    raw_prefilled: Duration,
    create: Duration,
    /// Validation alone, in memory, of the same batches.
    validate: Duration,
    /// The log of the last repetition, still open.
    log_left_open: crate::log::Log,
}

/// Builds distinct batches of `shape` (about `data_bytes`), then appends them to a fresh
/// log and writes them raw, [`REPS`] times, keeping the best of each.
fn append_stage(
    log_root: &Path,
    raw_paths: &[PathBuf; 2],
    shape: workload::Shape,
    data_bytes: u64,
) -> Result<AppendTimes> {
    let count = batches_for(shape, data_bytes);
    let (mut corpus, batch_len) = workload::corpus(shape, count);
    let log_dir = workload::partition_dir(log_root);
    let (mut log_best, mut raw_best) = (Duration::MAX, [Duration::MAX; 2]);
    let mut create_best = Duration::MAX;
    let mut log = None;
    for _ in 0..REPS {
        drop(log.take());
        workload::remove_tree(log_root)?;
        for path in raw_paths {
            workload::remove_file(path)?;
        }
        let (log_took, raw_took, create_took, appended) =
            append_interleaved(&log_dir, raw_paths, &mut corpus, batch_len)?;
        create_best = create_best.min(create_took);
        log_best = log_best.min(log_took);
        for (best, took) in raw_best.iter_mut().zip(raw_took) {
            *best = (*best).min(took);
        }
        log = Some(appended);
    }
    for path in raw_paths {
        workload::remove_file(path)?;
    }
    // In memory, no I/O: the validation every leader append pays, which bounds the ratio.
    let mut validate_best = Duration::MAX;
    for _ in 0..REPS {
        let start = Instant::now();
        let n = workload::validate_batches(&corpus)?;
        validate_best = validate_best.min(start.elapsed());
        check_bytes("validated batches", n as u64, count as u64)?;
    }
    Ok(AppendTimes {
        bytes: corpus.len() as u64,
        log: log_best,
        raw: raw_best[0],
        raw_prefilled: raw_best[1],
        create: create_best,
        validate: validate_best,
        log_left_open: log.ok_or_else(|| Error::InvalidConfig("no repetitions".into()))?,
    })
}

/// Appends the batches of `corpus` to a new log and writes them to two new raw files
/// (`raw_paths`: one `pwrite` per batch, and the same with zeros written ahead as the log
/// writes them, see [`workload::write_batches_prefilled`]), in turn by chunks of about
/// [`APPEND_CHUNK_BYTES`] (the order rotating), so that all three meet the same page-cache
/// and writeback state and the same noise. Each side writes the chunk a third of the
/// corpus away from the one before it, so that none finds another's batches in the CPU
/// cache (with fewer than three chunks, two sides write the same one in a round: quick
/// runs have eight, full ones sixty-four). Returns the time each spent writing (log, then
/// the raw twins), the time creating the log took (its first segment, with preallocated
/// indexes: once per `segment_bytes` of appends, so not part of the per-byte figure), and
/// the log, still open. Creating and closing the raw files are not timed either.
fn append_interleaved(
    log_dir: &Path,
    raw_paths: &[PathBuf; 2],
    corpus: &mut [u8],
    batch_len: usize,
) -> Result<(Duration, [Duration; 2], Duration, crate::log::Log)> {
    let start = Instant::now();
    let log = workload::create_log(log_dir)?;
    let create_took = start.elapsed();
    let raw = workload::create_raw(&raw_paths[0])?;
    let prefilled_raw = workload::create_raw(&raw_paths[1])?;
    let (mut log_took, mut raw_took) = (Duration::ZERO, [Duration::ZERO; 2]);
    let chunk_len = (APPEND_CHUNK_BYTES / batch_len).max(1) * batch_len;
    let chunks = corpus.len().div_ceil(chunk_len);
    let (mut raw_pos, mut prefilled_pos, mut prefilled) = (0u64, 0u64, 0u64);
    for chunk in 0..chunks {
        for turn in 0..3 {
            let side = (chunk + turn) % 3;
            let at = ((chunk + side * chunks / 3) % chunks) * chunk_len;
            let end = (at + chunk_len).min(corpus.len());
            let start = Instant::now();
            match side {
                0 => {
                    workload::append_batches(&log, &mut corpus[at..end], batch_len)?;
                    log_took += start.elapsed();
                }
                1 => {
                    let bytes = &corpus[at..end];
                    raw_pos = workload::write_batches(raw.as_ref(), raw_pos, bytes, batch_len)?;
                    raw_took[0] += start.elapsed();
                }
                _ => {
                    let (file, bytes) = (prefilled_raw.as_ref(), &corpus[at..end]);
                    prefilled_pos = workload::write_batches_prefilled(
                        file,
                        prefilled_pos,
                        &mut prefilled,
                        bytes,
                        batch_len,
                    )?;
                    raw_took[1] += start.elapsed();
                }
            }
        }
    }
    drop((raw, prefilled_raw));
    // Rolled (untimed), so that the log's files hold its batches and nothing else: the
    // active segment keeps zeros written ahead of its end (see `segment::PREFILL_BYTES`),
    // and the raw twins of the read and recovery workloads read the files.
    log.force_roll()?;
    Ok((log_took, raw_took, create_took, log))
}

/// Scans the whole log with fetches and the same bytes with raw preads, alternating one
/// fetch and one pread (and which goes first), timing each, so that both meet the same
/// noise. Returns the total time of each side.
fn read_interleaved(
    log: &crate::log::Log,
    chunks: &[workload::RawChunk],
    buf: &mut [u8],
    bytes: u64,
) -> Result<(Duration, Duration)> {
    let (mut log_took, mut raw_took) = (Duration::ZERO, Duration::ZERO);
    let (mut log_bytes, mut raw_bytes) = (0u64, 0u64);
    let mut next = Some(log.log_start_offset());
    let mut chunk = chunks.iter();
    let mut step = 0usize;
    while next.is_some() || chunk.len() > 0 {
        let raw_first = step % 2 == 0;
        for is_raw in [raw_first, !raw_first] {
            if is_raw {
                if let Some(c) = chunk.next() {
                    let start = Instant::now();
                    c.read(buf)?;
                    raw_took += start.elapsed();
                    raw_bytes += c.len as u64;
                }
            } else if let Some(from) = next {
                let start = Instant::now();
                let fetched = workload::fetch(log, from, buf)?;
                log_took += start.elapsed();
                next = fetched.map(|(len, after)| {
                    log_bytes += len as u64;
                    after
                });
            }
        }
        step += 1;
    }
    check_bytes("read", log_bytes, bytes)?;
    check_bytes("raw read", raw_bytes, bytes)?;
    Ok((log_took, raw_took))
}

/// How many batches of `shape` make about `data_bytes`.
fn batches_for(shape: workload::Shape, data_bytes: u64) -> usize {
    let (_, one) = workload::corpus(shape, 1);
    (data_bytes / one as u64).max(1) as usize
}

/// Throughput in MB/s (10^6 bytes per second).
fn mb_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / took.as_secs_f64().max(1e-9) / 1e6
}

/// A workload that moved the wrong amount of data measured nothing.
fn check_bytes(what: &str, got: u64, want: u64) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(Error::InvalidConfig(format!(
            "bench {what}: expected {want}, got {got}"
        )))
    }
}
