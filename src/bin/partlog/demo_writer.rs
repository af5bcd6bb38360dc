//! `partlog demo-writer` (hidden): the child process that `demo` kills.
//!
//! It appends batches whose every byte follows from their offsets (see [`expected_record`]),
//! flushes the log dir every few batches and, after each flush, prints `flushed <offset>`:
//! every record below that offset is acknowledged-and-flushed and must survive a kill.
//! It stops by itself after `--max-ms` (closing cleanly and printing `done <offset>`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use partlog::checkpoint::TopicPartition;
use partlog::config::LogConfig;
use partlog::log::Log;
use partlog::manager::{LogDir, LogDirOptions};
use partlog::record::BatchBuilder;

use crate::{emit, storage, CliResult};

/// The partition the demo writes.
pub const DEMO_TOPIC: &str = "demo";
/// Timestamp of offset 0; record timestamps are this plus the offset.
const DEMO_EPOCH_MS: i64 = 1_700_000_000_000;
/// Most records in one demo batch.
const BATCH_RECORDS_MAX: u64 = 8;
/// Value sizes run from this up to this plus `VALUE_BYTES_SPREAD - 1`.
const VALUE_BYTES_MIN: usize = 8;
const VALUE_BYTES_SPREAD: u64 = 200;

#[derive(Debug, Args)]
pub struct DemoWriterArgs {
    /// The log dir to write.
    #[arg(long)]
    dir: PathBuf,
    /// Leader epoch stamped on the batches.
    #[arg(long, default_value_t = 0)]
    epoch: i32,
    /// Batches between flushes.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    flush_every: u64,
    /// Stop (cleanly) after this long.
    #[arg(long, default_value_t = 20_000)]
    max_ms: u64,
}

/// Small segments and indexes, so that a demo run rolls segments often. Record timestamps
/// follow offsets, not the clock, so time-based rolling is off (it would roll on every
/// batch, the first timestamps being years old).
pub fn demo_options() -> LogDirOptions {
    LogDirOptions {
        config: LogConfig {
            segment_bytes: 64 << 10,
            segment_ms: i64::MAX / 2,
            index_bytes_max: 16 << 10,
            index_interval_bytes: 1024,
            ..LogConfig::default()
        },
        ..LogDirOptions::default()
    }
}

pub fn demo_partition() -> TopicPartition {
    TopicPartition::new(DEMO_TOPIC, 0)
}

/// SplitMix64: a fixed, well-mixed function of its input.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Records in the batch that starts at `offset`.
pub fn batch_records(offset: i64) -> u64 {
    1 + mix(offset as u64 ^ 0xB47C) % BATCH_RECORDS_MAX
}

/// The timestamp, key and value of the record at `offset`, written into `key` and `value`.
pub fn expected_record(offset: i64, key: &mut Vec<u8>, value: &mut Vec<u8>) -> i64 {
    key.clear();
    key.extend_from_slice(format!("key-{offset}").as_bytes());
    let seed = mix(offset as u64);
    let len = VALUE_BYTES_MIN + (seed % VALUE_BYTES_SPREAD) as usize;
    value.clear();
    value.extend((0..len).map(|i| (seed >> ((i % 8) * 8)) as u8 ^ i as u8));
    DEMO_EPOCH_MS + offset
}

pub fn run(args: &DemoWriterArgs) -> CliResult {
    let log_dir = LogDir::open(storage(), &args.dir, demo_options())?;
    let (log, _report) = log_dir.open_log(&demo_partition())?;
    emit(&format!("start {}", log.log_end_offset()))?;
    let deadline = Instant::now() + Duration::from_millis(args.max_ms);
    let mut writer = DemoBatches::default();
    let mut batches = 0u64;
    while Instant::now() < deadline {
        writer.append(&log, args.epoch)?;
        batches += 1;
        if batches % args.flush_every == 0 {
            log_dir.flush()?;
            emit(&format!("flushed {}", log.recovery_point()))?;
        }
    }
    let end = log.log_end_offset();
    log_dir.close()?;
    emit(&format!("done {end}"))?;
    Ok(ExitCode::SUCCESS)
}

/// Builds and appends demo batches, reusing its buffers.
#[derive(Default)]
pub struct DemoBatches {
    builder: BatchBuilder,
    key: Vec<u8>,
    value: Vec<u8>,
    batch: Vec<u8>,
}

impl DemoBatches {
    /// Appends the batch that starts at the log end: its records follow from their offsets.
    pub fn append(&mut self, log: &Log, epoch: i32) -> CliResult<()> {
        let base = log.log_end_offset();
        for offset in base..base + batch_records(base) as i64 {
            let timestamp = expected_record(offset, &mut self.key, &mut self.value);
            self.builder
                .append(timestamp, Some(&self.key), Some(&self.value), &[]);
        }
        self.batch.clear();
        self.builder.build_into(&mut self.batch)?;
        log.append_as_leader(&mut self.batch, epoch)?;
        Ok(())
    }
}
