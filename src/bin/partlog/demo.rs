//! `partlog demo`: by default the three-broker failover story (`demo_failover.rs`). With
//! `--single`, the single-log crash rounds below.
//!
//! `partlog demo --single`: crash a writer with SIGKILL at random moments, recover, and verify
//! that no acknowledged-and-flushed record was lost and every recovered byte is right.
//!
//! Each round re-executes this binary as `demo-writer` (see `demo_writer.rs`), reads its
//! `flushed <offset>` lines, kills it after a seeded random delay, reopens the log dir
//! (which runs recovery), then reads the whole log back and checks every batch (CRC and
//! structure), that offsets are contiguous from the log start, that every record's key,
//! value and timestamp match what the writer derives from its offset, and that the
//! recovered end is at or above the last flushed offset.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use partlog::checkpoint::TopicPartition;
use partlog::log::{Log, RecoveryReport};
use partlog::manager::LogDir;
use partlog::record::{batches, Batch};

use crate::check::partition_line;
use crate::demo_writer::{demo_options, demo_partition, expected_record, mix};
use crate::json::Json;
use crate::{emit, storage, CliError, CliResult, EXIT_FAILED};

/// Kill delays are drawn from `[KILL_DELAY_MIN_MS, KILL_DELAY_MIN_MS + KILL_DELAY_SPREAD_MS)`.
const KILL_DELAY_MIN_MS: u64 = 20;
const KILL_DELAY_SPREAD_MS: u64 = 400;
/// How long the writer may run at most (it exits by itself after this).
const WRITER_MAX_MS: u64 = 20_000;
/// Bytes read from the log per read call while verifying.
const VERIFY_READ_BYTES: u64 = 1 << 20;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Runs the single-log crash rounds instead of the three-broker failover.
    #[arg(long)]
    single: bool,
    /// Failover story: records the producer sends in all.
    #[arg(long, conflicts_with = "single", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(30..=10_000_000))]
    records: u64,
    /// With `--single`: kill / recover / continue cycles, all in the same log dir.
    #[arg(long, requires = "single", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rounds: u32,
    /// With `--single`: the log dir; a fresh temp dir (removed afterwards unless `--keep`)
    /// by default.
    #[arg(long, requires = "single")]
    dir: Option<PathBuf>,
    /// Seed of the kill delays; printed so that a run can be repeated.
    #[arg(long)]
    seed: Option<u64>,
    /// With `--single`: keep the temp dir.
    #[arg(long, requires = "single")]
    keep: bool,
}

/// Refuses a `--dir` that exists and is not the demo's own: anything but an empty dir or
/// a log dir whose only partition is the demo's (a run before left it). The rounds kill
/// the writer in it and open its partition alone, so a broker's dir would lose its
/// clean-shutdown marker and gain a stray partition.
fn check_demo_dir(dir: &Path) -> CliResult<()> {
    crate::check_log_dir(storage().as_ref(), dir)?;
    let demo = demo_partition().dir_name();
    let foreign = storage()
        .list_dir(dir)?
        .into_iter()
        .find(|e| e.is_dir && e.name != demo && TopicPartition::from_dir_name(&e.name).is_some());
    match foreign {
        Some(entry) => Err(CliError::Input(format!(
            "{} holds the partition {}: the demo runs in an empty dir or its own",
            dir.display(),
            entry.name
        ))),
        None => Ok(()),
    }
}

/// What one round saw.
struct Round {
    delay_ms: u64,
    last_flushed: Option<i64>,
    killed: bool,
}

pub fn run(args: &DemoArgs, json: bool) -> CliResult {
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    if !args.single {
        return crate::demo_failover::run(seed, args.records, json);
    }
    let temp = args.dir.is_none();
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("partlog-demo-{}-{seed}", std::process::id())),
    };
    if temp && storage().exists(&dir) {
        remove_tree(&dir)?;
    }
    if !temp && storage().exists(&dir) {
        check_demo_dir(&dir)?;
    }
    storage().create_dir_all(&dir)?;
    emit(&if json {
        Json::new()
            .str("type", "start")
            .int("seed", seed)
            .str("dir", &dir.display().to_string())
            .int("rounds", args.rounds)
            .finish()
    } else {
        format!(
            "demo: seed {seed} (repeat with --seed {seed}), {} rounds in {}",
            args.rounds,
            dir.display()
        )
    })?;
    let mut failures = 0u32;
    // The end each round verified and closed cleanly: durable, so no later round may
    // recover below it, whatever its own writer flushed.
    let mut closed_end = None;
    // A dir a run before left holds that run's leader epochs: this run's rounds lead the
    // epochs after them, as a lower one would be fenced.
    let epoch_before = latest_demo_epoch(&dir)?;
    for round in 1..=args.rounds {
        let delay_ms = KILL_DELAY_MIN_MS + mix(seed ^ u64::from(round)) % KILL_DELAY_SPREAD_MS;
        let epoch = epoch_before.saturating_add_unsigned(round);
        let (outcome, end) = run_round(&dir, (round, epoch), delay_ms, json, closed_end)?;
        if !outcome {
            failures += 1;
        }
        closed_end = closed_end.max(Some(end));
    }
    if !crate::demo_power_loss::run(seed, json)? {
        failures += 1;
    }
    let kept = !temp || args.keep || failures > 0;
    if !kept {
        remove_tree(&dir)?;
    }
    emit(&if json {
        Json::new()
            .str("type", "summary")
            .int("seed", seed)
            .int("rounds", args.rounds)
            .int("failed_rounds", failures)
            .bool("ok", failures == 0)
            .finish()
    } else if failures == 0 {
        format!(
            "demo: ok, nothing acknowledged-and-flushed was lost in {} killed round(s) and a power loss",
            args.rounds
        )
    } else {
        format!(
            "demo: FAILED in {failures} of {} rounds (seed {seed}); data kept in {}",
            args.rounds + 1,
            dir.display()
        )
    })?;
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}

/// One kill / recover / verify cycle, over a log closed cleanly at `closed_end` by the
/// round before (if any); whether verification passed, and the end it closed the log at.
fn run_round(
    dir: &Path,
    (round, epoch): (u32, i32),
    delay_ms: u64,
    json: bool,
    closed_end: Option<i64>,
) -> CliResult<(bool, i64)> {
    let seen = write_and_kill(dir, epoch, delay_ms)?;
    let log_dir = LogDir::open(storage(), dir, demo_options())?;
    let tp = demo_partition();
    let (log, report) = log_dir.open_log(&tp)?;
    let verdict = verify(&log, seen.last_flushed.max(closed_end));
    let ok = verdict.is_ok();
    let end = log.log_end_offset();
    log_dir.close()?;
    let what = if seen.killed { "killed" } else { "finished" };
    let head = Json::new()
        .str("type", "round")
        .int("round", round)
        .int("kill_delay_ms", seen.delay_ms)
        .bool("killed", seen.killed)
        .int("last_flushed", seen.last_flushed.unwrap_or(-1));
    let line = format!(
        "round {round}: writer {what} after {} ms; last flushed offset {}; recovered end {end}",
        seen.delay_ms,
        seen.last_flushed.map_or("none".into(), |o| o.to_string()),
    );
    emit_round(json, head, &line, end, &report, &verdict)?;
    Ok((ok, end))
}

/// Prints what a round saw: `head` (JSON) or `line` (text), then the recovery report and
/// the verdict of the verification.
pub fn emit_round(
    json: bool,
    head: Json,
    line: &str,
    end: i64,
    report: &RecoveryReport,
    verdict: &Result<u64, String>,
) -> CliResult<()> {
    let name = demo_partition().dir_name();
    if json {
        let mut j = head
            .int("recovered_end", end)
            .bool("ok", verdict.is_ok())
            .raw("recovery", &partition_line(&name, report, true));
        if let Err(why) = verdict {
            j = j.str("error", why);
        }
        return emit(&j.finish());
    }
    emit(line)?;
    emit(&format!(
        "  recovery: {}",
        partition_line(&name, report, false)
    ))?;
    emit(&match verdict {
        Ok(records) => format!("  verified {records} records: ok"),
        Err(why) => format!("  FAILED: {why}"),
    })
}

/// The latest leader epoch of the demo's partition in `dir`; 0 without one.
fn latest_demo_epoch(dir: &Path) -> CliResult<i32> {
    let tp = demo_partition();
    if !storage().exists(&dir.join(tp.dir_name())) {
        return Ok(0);
    }
    let log_dir = LogDir::open(storage(), dir, demo_options())?;
    let (log, _) = log_dir.open_log(&tp)?;
    let epoch = log.latest_epoch().max(0);
    drop(log);
    log_dir.close()?;
    Ok(epoch)
}

/// Runs the writer, stamping `epoch`, and kills it after `delay_ms`; returns the last
/// flushed offset it reported.
fn write_and_kill(dir: &Path, epoch: i32, delay_ms: u64) -> CliResult<Round> {
    let exe = std::env::current_exe().map_err(CliError::Stdio)?;
    let mut child = Command::new(exe)
        .arg("demo-writer")
        .arg("--dir")
        .arg(dir)
        .arg("--epoch")
        .arg(epoch.to_string())
        .arg("--max-ms")
        .arg(WRITER_MAX_MS.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(CliError::Stdio)?;
    let lines = read_lines(&mut child);
    let started = Instant::now();
    let deadline = started + Duration::from_millis(delay_ms);
    let mut exited = None;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().map_err(CliError::Stdio)? {
            exited = Some(status);
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let killed = exited.is_none();
    if killed {
        // SIGKILL on Unix: the writer gets no chance to finish anything.
        child.kill().map_err(CliError::Stdio)?;
    }
    let status = child.wait().map_err(CliError::Stdio)?;
    let mut last_flushed = None;
    for line in lines.iter() {
        if let Some(o) = line
            .strip_prefix("flushed ")
            .and_then(|o| o.parse::<i64>().ok())
        {
            last_flushed = last_flushed.max(Some(o));
        }
    }
    if !killed && !status.success() {
        let mut err = String::new();
        if let Some(mut stderr) = child.stderr.take() {
            use std::io::Read;
            let _ = stderr.read_to_string(&mut err);
        }
        return Err(CliError::Input(format!(
            "the demo writer failed ({status}): {}",
            err.trim()
        )));
    }
    Ok(Round {
        delay_ms,
        last_flushed,
        killed,
    })
}

/// Reads the child's stdout on a thread; the receiver yields every line until the pipe
/// closes (the child died), so iterating it after `wait` sees them all.
fn read_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    rx
}

/// Reads the whole log back and checks it, and that it ends at `durable_end` or later;
/// returns the number of records.
pub fn verify(log: &Log, durable_end: Option<i64>) -> Result<u64, String> {
    let start = log.log_start_offset();
    let end = log.log_end_offset();
    if let Some(durable) = durable_end.filter(|&f| end < f) {
        return Err(format!(
            "recovered end {end} is below {durable}, the last flushed offset or a clean \
             close's end: durable records lost"
        ));
    }
    let (mut next, mut records) = (start, 0u64);
    let (mut key, mut value) = (Vec::new(), Vec::new());
    while next < end {
        let slice = log
            .read(next, VERIFY_READ_BYTES, None)
            .map_err(|e| format!("read at offset {next}: {e}"))?
            .ok_or_else(|| format!("nothing to read at offset {next}, below the end {end}"))?;
        let bytes = slice
            .to_vec()
            .map_err(|e| format!("read at offset {next}: {e}"))?;
        for batch in batches(&bytes) {
            let batch = batch.map_err(|e| format!("batch at offset {next}: {e}"))?;
            check_batch(&batch, &mut next, &mut key, &mut value)?;
            records += batch.header().records_count as u64;
        }
    }
    if next != end {
        return Err(format!("batches end at {next}, the log end is {end}"));
    }
    Ok(records)
}

fn check_batch(
    batch: &Batch<'_>,
    next: &mut i64,
    key: &mut Vec<u8>,
    value: &mut Vec<u8>,
) -> Result<(), String> {
    let base = batch.header().base_offset;
    batch
        .validate()
        .map_err(|e| format!("batch at offset {base}: {e}"))?;
    if base != *next {
        return Err(format!("batch starts at {base}, expected {next}"));
    }
    let records = batch.records().map_err(|e| e.to_string())?;
    for record in records {
        let record = record.map_err(|e| format!("batch at offset {base}: {e}"))?;
        if record.offset != *next {
            return Err(format!("record offset {}, expected {next}", record.offset));
        }
        let timestamp = expected_record(record.offset, key, value);
        if record.key != Some(key.as_slice())
            || record.value != Some(value.as_slice())
            || record.timestamp != timestamp
        {
            return Err(format!(
                "record {} does not hold what was written",
                record.offset
            ));
        }
        *next += 1;
    }
    if *next != batch.header().next_offset() {
        return Err(format!(
            "batch at {base} ends at {next}, header says {}",
            batch.header().next_offset()
        ));
    }
    Ok(())
}

/// Removes a directory tree through the io layer.
fn remove_tree(dir: &Path) -> CliResult<()> {
    let storage = storage();
    for entry in storage.list_dir(dir)? {
        let path = dir.join(&entry.name);
        if entry.is_dir {
            remove_tree(&path)?;
        } else {
            storage.remove_file(&path)?;
        }
    }
    Ok(storage.remove_dir(dir)?)
}
