//! `partlog produce`: appends synthetic keyed records to one partition.

use std::process::ExitCode;

use clap::Args;
use partlog::manager::LogDirOptions;
use partlog::record::{BatchBuilder, HEADER_LEN};
use partlog::Clock;

use crate::json::Json;
use crate::progress::Progress;
use crate::{emit, open_partition, CliError, CliResult, IfMissing, PartitionArgs};

/// Bytes a record adds to a batch beyond its value, with a short key: an upper bound used
/// to keep batches under the partition's maximum batch size.
const RECORD_OVERHEAD_BYTES: usize = 48;

#[derive(Debug, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    partition: PartitionArgs,
    /// Create the log dir when it does not exist.
    #[arg(long)]
    create: bool,
    /// Number of records to append.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    records: u64,
    /// Bytes of each record's value.
    #[arg(long)]
    record_bytes: usize,
    /// Records per batch (fewer when a batch would exceed the maximum batch size).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    batch_records: u32,
}

pub fn run(args: &ProduceArgs, json: bool) -> CliResult {
    // Checked before the dir is opened: bad input changes nothing on disk.
    let max_batch = LogDirOptions::default().config.max_message_bytes;
    let fits = (args.record_bytes)
        .checked_add(RECORD_OVERHEAD_BYTES + HEADER_LEN)
        .is_some_and(|len| len <= max_batch);
    if !fits {
        return Err(CliError::Input(format!(
            "--record-bytes {} does not fit in a batch of at most {max_batch} bytes",
            args.record_bytes
        )));
    }
    let opened = open_partition(&args.partition, IfMissing::create_if(args.create))?;
    let log = opened.log.clone();
    let fit = (max_batch - HEADER_LEN) / (args.record_bytes + RECORD_OVERHEAD_BYTES);
    let per_batch = (args.batch_records as u64).min(fit as u64).max(1);
    let clock = partlog::SystemClock;
    // The log's latest epoch, so that a Kafka-written partition takes the records too.
    let epoch = log.latest_epoch().max(0);
    let mut value = vec![0u8; args.record_bytes];
    let mut builder = BatchBuilder::new();
    let mut batch = Vec::new();
    let mut key = String::new();
    let mut progress = Progress::new(json);
    let (mut first, mut last, mut bytes, mut done) = (None, 0i64, 0u64, 0u64);
    while done < args.records {
        let n = per_batch.min(args.records - done);
        let next = log.log_end_offset();
        let now_ms = clock.now_ms();
        for i in 0..n {
            let offset = next + i as i64;
            key.clear();
            key.push_str("key-");
            key.push_str(&offset.to_string());
            value.fill(b'a' + (offset % 26) as u8);
            builder.append(now_ms, Some(key.as_bytes()), Some(&value), &[]);
        }
        batch.clear();
        builder.build_into(&mut batch)?;
        let info = log.append_as_leader(&mut batch, epoch)?;
        first.get_or_insert(info.first_offset);
        last = info.last_offset;
        bytes += info.bytes as u64;
        done += n;
        progress.update(|| format!("produce: {done}/{} records", args.records));
    }
    progress.finish();
    opened.close()?;
    let first = first.unwrap_or(0);
    let line = if json {
        Json::new()
            .int("first_offset", first)
            .int("last_offset", last)
            .int("bytes", bytes)
            .int("records", done)
            .finish()
    } else {
        format!(
            "produced {done} records to {}: offsets {first}..={last}, {bytes} bytes",
            args.partition.topic_partition().dir_name()
        )
    };
    emit(&line)?;
    Ok(ExitCode::SUCCESS)
}
