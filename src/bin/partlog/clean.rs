//! `partlog clean`: compacts the partitions of a compacted topic in a log dir, as a
//! broker's log cleaner would (`partlog::cleaner::Cleaner`), until none is worth cleaning;
//! with `--dry-run`, reports what that would do and changes nothing.
//!
//! A topic's cleanup policy lives in the cluster's metadata, not in the log dir, so the
//! operator names the compacted topic. The settings are Kafka's defaults for it (for
//! `__consumer_offsets`, its 100 MiB segments); the active segment is never cleaned, nor
//! anything at or above a partition's checkpointed high watermark; and tombstones and
//! transaction markers keep their delete horizons: the cleaning is the one a broker
//! would run now. A dry run cleans on a copy-on-write view of the dir, as
//! `check --dry-run` does, which holds the cleaned copies in memory.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use partlog::checkpoint::TopicPartition;
use partlog::cleaner::{CleanOutcome, CleanReport, Cleaner, CleanerConfig};
use partlog::config::{CleanupPolicy, LogConfig};
use partlog::log::Log;
use partlog::manager::{LogDir, LogDirOptions};
use partlog::offsets::{offsets_log_config, OFFSETS_TOPIC};
use partlog::record::{batches, Compression};
use partlog::{Clock, SystemClock};

use crate::json::Json;
use crate::progress::Progress;
use crate::{emit, existing_dir, topic_partitions, CliError, CliResult, OpenedDir, EXIT_FAILED};

#[derive(Debug, Args)]
pub struct CleanArgs {
    /// The log dir.
    #[arg(long)]
    dir: PathBuf,
    /// The compacted topic whose partitions are cleaned.
    #[arg(long)]
    topic: String,
    /// Only this partition of the topic.
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..))]
    partition: Option<i32>,
    /// Clean a partition only when more than this share of it is dirty (Kafka's
    /// `min.cleanable.dirty.ratio`); 0 cleans whatever is dirty.
    #[arg(long, default_value_t = 0.5, value_parser = ratio)]
    min_dirty_ratio: f64,
    /// Report what the cleaning would do, changing nothing on disk.
    #[arg(long)]
    dry_run: bool,
}

fn ratio(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{text} is not a ratio between 0 and 1")),
    }
}

/// What the cleanings did, summed.
#[derive(Debug, Default)]
struct Totals {
    cleanings: u64,
    failed: u64,
    bytes_before: u64,
    bytes_after: u64,
}

pub fn run(args: &CleanArgs, json: bool) -> CliResult {
    partlog::checkpoint::validate_topic(&args.topic)?;
    let disk = existing_dir(&args.dir, args.dry_run)?;
    let config = LogConfig {
        min_cleanable_dirty_ratio: args.min_dirty_ratio,
        ..topic_config(&args.topic)
    };
    let options = LogDirOptions {
        config: config.clone(),
        clock: Arc::new(SystemClock),
    };
    let log_dir = OpenedDir::new(LogDir::open(disk, &args.dir, options)?);
    let partitions = topic_partitions(&log_dir, &args.topic, args.partition)?;
    for tp in &partitions {
        let (log, _) = log_dir.open_log_with(tp, config.clone())?;
        // As a broker's cleaner does, nothing at or above the high watermark: a record
        // there may be cut yet, and must not have stood for its key's latest meanwhile.
        // The dir opened the log with its checkpointed one; a replica the checkpoint
        // leaves out has it at its log start, and nothing to clean.
        if log_dir.tracks_high_watermarks() && log_dir.checkpointed_high_watermark(tp).is_none() {
            let reason = "replication-offset-checkpoint has no high watermark for it: \
                          it stays at the log start, and nothing is cleaned";
            emit(&if json {
                Json::new()
                    .str("type", "held")
                    .str("partition", &tp.dir_name())
                    .str("reason", reason)
                    .finish()
            } else {
                format!("{}: {reason}", tp.dir_name())
            })?;
        }
        if !always_compacted(&args.topic) {
            refuse_keyless(tp, &log)?;
        }
    }
    let cleaner = Cleaner::new(CleanerConfig::default());
    let mut progress = Progress::new(json);
    let mut totals = Totals::default();
    loop {
        progress.force("clean: looking for the dirtiest partition");
        let outcome = cleaner.clean_once(&log_dir, SystemClock.now_ms())?;
        progress.finish();
        match outcome {
            CleanOutcome::Idle => break,
            CleanOutcome::Cleaned {
                partition,
                dirty_ratio,
                report,
            } => {
                totals.cleanings += 1;
                totals.bytes_before += report.bytes_before;
                totals.bytes_after += report.bytes_after;
                emit(&cleaned_line(&partition, dirty_ratio, &report, json))?;
            }
            CleanOutcome::Failed { partition, reason } => {
                totals.failed += 1;
                emit(&if json {
                    Json::new()
                        .str("type", "failed")
                        .str("partition", &partition.dir_name())
                        .str("reason", &reason)
                        .finish()
                } else {
                    format!("{}: cannot be cleaned: {reason}", partition.dir_name())
                })?;
            }
        }
    }
    // A dry run leaves no marker, checkpoint or lock behind: the view is dropped.
    if !args.dry_run {
        log_dir.close()?;
    }
    emit(&summary_line(&totals, args, json))?;
    Ok(if totals.failed > 0 {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// Refuses, before anything is cleaned, a partition holding a record without a key: a
/// compacted topic's records all have one (Kafka refuses others there), so the topic named
/// is most likely one that deletes, mistyped, whose cleaning would drop every keyless
/// record and every older record of a repeated key, for good. (Compressed batches are not
/// opened.) A scan of the whole partition, before the cleaning reads it again.
fn refuse_keyless(tp: &TopicPartition, log: &Log) -> CliResult<()> {
    let mut next = log.log_start_offset();
    while let Some(slice) = log.read(next, 1 << 20, None)? {
        let bytes = slice.to_vec()?;
        for batch in batches(&bytes) {
            let batch = batch?;
            let header = batch.header();
            next = header.next_offset();
            if header.is_control() || header.compression() != Compression::None {
                continue;
            }
            for record in batch.records()? {
                let record = record?;
                if record.key.is_none() {
                    return Err(CliError::Input(format!(
                        "{}: the record at offset {} has no key, which a compacted topic's \
                         records all have: is {} compacted? Nothing was cleaned",
                        tp.dir_name(),
                        record.offset,
                        tp.topic
                    )));
                }
            }
        }
    }
    Ok(())
}

/// The transaction coordinator's state topic, which Kafka always compacts.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// Whether Kafka always compacts `topic`: its internal topics, the consumer offsets and
/// the transaction coordinator's state.
pub fn always_compacted(topic: &str) -> bool {
    topic == OFFSETS_TOPIC || topic == TRANSACTION_STATE_TOPIC
}

/// Kafka's defaults for a compacted topic, and for its internal topics their own.
pub fn topic_config(topic: &str) -> LogConfig {
    match topic {
        OFFSETS_TOPIC => offsets_log_config(),
        // `transaction.state.log.segment.bytes`: 100 MiB.
        TRANSACTION_STATE_TOPIC => LogConfig {
            cleanup_policy: CleanupPolicy::Compact,
            segment_bytes: 100 << 20,
            ..LogConfig::default()
        },
        _ => LogConfig {
            cleanup_policy: CleanupPolicy::Compact,
            ..LogConfig::default()
        },
    }
}

fn cleaned_line(tp: &TopicPartition, dirty_ratio: f64, r: &CleanReport, json: bool) -> String {
    let name = tp.dir_name();
    if json {
        return Json::new()
            .str("type", "cleaned")
            .str("partition", &name)
            .raw("dirty_ratio", &format!("{dirty_ratio:.3}"))
            .int("first_dirty", r.first_dirty)
            .int("end_offset", r.end_offset)
            .bool("partial", r.partial)
            .bool("aborted", r.aborted)
            .int("keys", r.keys as u64)
            .int("segments_before", r.segments_before as u64)
            .int("segments_after", r.segments_after as u64)
            .int("bytes_before", r.bytes_before)
            .int("bytes_after", r.bytes_after)
            .int("records_read", r.records.records_read)
            .int("records_kept", r.records.records_kept)
            .int("superseded", r.records.superseded)
            .int("tombstones_dropped", r.records.tombstones_dropped)
            .int("keyless_dropped", r.records.keyless_dropped)
            .int("aborted_dropped", r.records.aborted_dropped)
            .int("batches_skipped", r.records.batches_skipped)
            .finish();
    }
    let part = if r.partial {
        " (the key map filled: the rest waits for the next cleaning)"
    } else {
        ""
    };
    format!(
        "{name}: cleaned offsets {}..{} (dirty ratio {dirty_ratio:.2}){part}: {} -> {} bytes, {} -> {} segments, {} of {} records kept ({} superseded, {} tombstones dropped; {} batches superseded whole, not read again)",
        r.first_dirty,
        r.end_offset,
        r.bytes_before,
        r.bytes_after,
        r.segments_before,
        r.segments_after,
        r.records.records_kept,
        r.records.records_read,
        r.records.superseded,
        r.records.tombstones_dropped,
        r.records.batches_skipped,
    )
}

fn summary_line(t: &Totals, args: &CleanArgs, json: bool) -> String {
    let dry_run = args.dry_run;
    if json {
        return Json::new()
            .str("type", "summary")
            .int("cleanings", t.cleanings)
            .int("failed", t.failed)
            .int("bytes_before", t.bytes_before)
            .int("bytes_after", t.bytes_after)
            .bool("dry_run", dry_run)
            .finish();
    }
    if t.cleanings == 0 && t.failed == 0 {
        return format!(
            "nothing to clean: no partition of {} has more than {} of its cleanable bytes dirty",
            args.topic, args.min_dirty_ratio
        );
    }
    let verb = if dry_run { "would free" } else { "freed" };
    format!(
        "{} cleanings {verb} {} bytes ({} -> {}){}{}",
        t.cleanings,
        t.bytes_before.saturating_sub(t.bytes_after),
        t.bytes_before,
        t.bytes_after,
        if t.failed > 0 {
            format!(", {} partitions could not be cleaned", t.failed)
        } else {
            String::new()
        },
        if dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        }
    )
}
