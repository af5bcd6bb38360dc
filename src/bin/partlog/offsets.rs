//! `partlog offsets`: the committed offsets of the consumer groups in a log dir's
//! `__consumer_offsets` partitions, as a group coordinator taking them over would load
//! them (`partlog::offsets::OffsetsStore`): what `kafka-consumer-groups --describe` shows
//! of a group's offsets, read from the disk alone.
//!
//! The dir is read through a copy-on-write view ([`partlog::io::overlay`], as
//! `check --dry-run` does): the recovery of a torn tail, the replica's new leader epoch
//! and the load happen in memory, and nothing on disk changes. A broker that has the dir
//! open holds its lock, and the command refuses the dir.
//!
//! Each partition is loaded to its log end, as a new coordinator loads it. Commits above
//! the partition's high watermark may not have been acknowledged: the line of each
//! partition gives its log end and its checkpointed high watermark (which lags the real
//! one by up to the checkpoint interval).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use partlog::manager::{LogDir, LogDirOptions};
use partlog::offsets::Committed;
use partlog::offsets::{offsets_log_config, OffsetsConfig, OffsetsStore, OFFSETS_TOPIC};
use partlog::replica::{ReplicaConfig, ReplicaManager};
use partlog::SystemClock;

use crate::json::Json;
use crate::progress::Progress;
use crate::{emit, existing_dir, topic_partitions, CliError, CliResult};

#[derive(Debug, Args)]
pub struct OffsetsArgs {
    /// The log dir.
    #[arg(long)]
    dir: PathBuf,
    /// Only this group's offsets (looked for in every offsets partition).
    #[arg(long)]
    group: Option<String>,
    /// Only this partition of `__consumer_offsets`.
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..))]
    partition: Option<i32>,
}

/// What the partitions loaded held, summed.
#[derive(Debug, Default)]
struct Totals {
    partitions: u64,
    groups: u64,
    offsets: u64,
    skipped_records: u64,
}

pub fn run(args: &OffsetsArgs, json: bool) -> CliResult {
    let disk = existing_dir(&args.dir, true)?;
    let options = LogDirOptions {
        config: offsets_log_config(),
        clock: Arc::new(SystemClock),
    };
    let log_dir = LogDir::open(disk, &args.dir, options)?;
    let partitions = topic_partitions(&log_dir, OFFSETS_TOPIC, args.partition)?;
    let hws: Vec<Option<i64>> = partitions
        .iter()
        .map(|tp| log_dir.checkpointed_high_watermark(tp))
        .collect();
    let manager = ReplicaManager::new(log_dir, Arc::new(SystemClock));
    let mut progress = Progress::new(json);
    let mut totals = Totals::default();
    for (tp, hw) in partitions.iter().zip(hws) {
        let name = tp.dir_name();
        let (replica, _) =
            manager.open_partition(tp, offsets_log_config(), ReplicaConfig::new(0))?;
        // A lone leader in a new epoch: confirming its ISR (as the controller's first
        // change, version 1) moves its high watermark to its log end at once, so the view
        // serves as soon as the load reached it. All of it stays in the overlay.
        // (A last epoch of i32::MAX, outside the batches' CRC, leaves no epoch above it.)
        let latest = replica.log().latest_epoch().max(0);
        let epoch = latest.checked_add(1).ok_or_else(|| {
            CliError::Input(format!(
                "{name}: its latest leader epoch is {latest}, with no epoch above it to load in"
            ))
        })?;
        replica.become_leader(epoch, vec![0], vec![0])?;
        replica.confirm_isr(replica.leader_epoch(), 1, vec![0])?;
        let index = tp.partition as u32;
        let store = OffsetsStore::new(OffsetsConfig::default(), Arc::new(SystemClock));
        store.host(index, replica.clone());
        store.become_leader(index)?;
        loop {
            let step = store.load_step(index)?;
            progress.update(|| {
                format!(
                    "offsets: {name} loaded to {} of {}",
                    step.loaded_to, step.end
                )
            });
            if step.done || step.loaded_to >= step.end {
                break;
            }
        }
        progress.finish();
        let mut groups = store.groups(index)?;
        if let Some(wanted) = &args.group {
            groups.retain(|(group, _)| group == wanted);
        }
        for (group, offsets) in &groups {
            for ((topic, partition), committed) in offsets {
                emit(&offset_line(
                    tp.partition,
                    group,
                    topic,
                    *partition,
                    committed,
                    json,
                ))?;
            }
            totals.offsets += offsets.len() as u64;
        }
        let skipped = store.skipped_records(index);
        let line = PartitionLine {
            name: &name,
            log_end_offset: replica.log().log_end_offset(),
            high_watermark: hw,
            groups: groups.len() as u64,
            skipped_records: skipped,
        };
        emit(&line.render(json))?;
        totals.partitions += 1;
        totals.groups += groups.len() as u64;
        totals.skipped_records += skipped;
    }
    // The view is dropped: no marker, checkpoint or lock is left behind.
    drop(manager);
    emit(&summary_line(&totals, json))?;
    Ok(ExitCode::SUCCESS)
}

fn offset_line(
    offsets_partition: i32,
    group: &str,
    topic: &str,
    partition: i32,
    c: &Committed,
    json: bool,
) -> String {
    if json {
        return Json::new()
            .str("type", "offset")
            .str("group", group)
            .str("topic", topic)
            .int("partition", partition)
            .int("committed_offset", c.offset)
            .int("leader_epoch", c.leader_epoch)
            .str("metadata", &c.metadata)
            .int("commit_timestamp", c.commit_timestamp)
            .int("offsets_partition", offsets_partition)
            .finish();
    }
    let metadata = if c.metadata.is_empty() {
        String::new()
    } else {
        format!(" metadata: {:?}", c.metadata)
    };
    format!(
        "group: {group} {topic}-{partition} offset: {} leaderEpoch: {} commitTimestamp: {}{metadata}",
        c.offset, c.leader_epoch, c.commit_timestamp
    )
}

/// What one offsets partition held.
struct PartitionLine<'a> {
    name: &'a str,
    log_end_offset: i64,
    high_watermark: Option<i64>,
    groups: u64,
    skipped_records: u64,
}

impl PartitionLine<'_> {
    fn render(&self, json: bool) -> String {
        if json {
            let mut line = Json::new()
                .str("type", "partition")
                .str("partition", self.name)
                .int("log_end_offset", self.log_end_offset)
                .int("groups", self.groups)
                .int("skipped_records", self.skipped_records);
            // Always there, as the README lists it: `null` without a checkpoint.
            line = match self.high_watermark {
                Some(hw) => line.int("checkpointed_high_watermark", hw),
                None => line.raw("checkpointed_high_watermark", "null"),
            };
            return line.finish();
        }
        let hw = self
            .high_watermark
            .map_or("none".to_string(), |hw| hw.to_string());
        format!(
            "{}: loaded to offset {} (high watermark checkpoint: {hw}); groups: {}, records of types not modelled: {}",
            self.name, self.log_end_offset, self.groups, self.skipped_records
        )
    }
}

fn summary_line(t: &Totals, json: bool) -> String {
    if json {
        return Json::new()
            .str("type", "summary")
            .int("partitions", t.partitions)
            .int("groups", t.groups)
            .int("offsets", t.offsets)
            .int("skipped_records", t.skipped_records)
            .finish();
    }
    format!(
        "{} offsets of {} groups in {} partitions of {OFFSETS_TOPIC}",
        t.offsets, t.groups, t.partitions
    )
}
