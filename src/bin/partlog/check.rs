//! `partlog check`: opens, and so recovers, every partition of a log dir.
//!
//! Exit codes: 0 when every partition was intact, 1 when recovery had to cut data from at
//! least one, 2 when the dir or a partition could not be opened. With `--dry-run` the same
//! recovery runs on a copy-on-write view of the dir ([`partlog::io::overlay`]): the report
//! is what a real run would do, and nothing on disk changes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use partlog::log::RecoveryReport;
use partlog::manager::{LogDir, LogDirOptions};

use crate::json::{self, Json};
use crate::progress::Progress;

use crate::{emit, existing_dir, CliError, CliResult, OpenedDir, EXIT_ERROR, EXIT_FAILED};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The log dir.
    #[arg(required_unless_present = "dir_flag", conflicts_with = "dir_flag")]
    dir: Option<PathBuf>,
    /// The log dir, named as the other commands name it.
    #[arg(long = "dir", value_name = "DIR")]
    dir_flag: Option<PathBuf>,
    /// Report what recovery would do, changing nothing on disk.
    #[arg(long)]
    dry_run: bool,
    /// A topic whose partitions compact (repeatable; `__consumer_offsets` and
    /// `__transaction_state` always do).
    /// Recovery lets a compacted log's offsets have gaps; taken for a log that only
    /// deletes, every gap the cleaner left would read as damage, and be cut. Needed for
    /// dirs Kafka wrote: a partition partlog ever opened compacted is marked as one with
    /// gaps (see `Log::may_have_gaps`).
    #[arg(long, value_name = "TOPIC")]
    compacted: Vec<String>,
}

pub fn run(args: &CheckArgs, json: bool) -> CliResult {
    let dir = args
        .dir
        .as_ref()
        .or(args.dir_flag.as_ref())
        .ok_or_else(|| CliError::Input("name the log dir: DIR or --dir DIR".into()))?;
    let storage = existing_dir(dir, args.dry_run)?;
    let log_dir = OpenedDir::new(LogDir::open(storage, dir, LogDirOptions::default())?);
    for warning in log_dir.warnings() {
        emit_warning(None, warning, json)?;
    }
    // Not a partition of the dir (see `LogDir::partitions`): said, so that a Kafka dir's
    // metadata log is not taken for checked.
    for tp in log_dir.metadata_logs()? {
        let note = format!(
            "{}: KRaft's metadata log, the Raft layer's: not checked",
            tp.dir_name()
        );
        emit_warning(None, &note, json)?;
    }
    for name in log_dir.unopenable_dirs()? {
        let note = format!(
            "{name}: not a partition partlog opens (a replica being moved, deleted or \
             stray, or an unusual name): not checked; while it is here, a dir that was \
             not shut down cleanly gets no clean-shutdown marker"
        );
        emit_warning(None, &note, json)?;
    }
    let partitions = log_dir.partitions()?;
    // A misspelt name would leave the compacted topic's offset gaps to read as damage,
    // and recovery would cut everything after the first: refused before any log opens.
    if let Some(unknown) =
        (args.compacted.iter()).find(|t| !partitions.iter().any(|tp| &tp.topic == *t))
    {
        return Err(CliError::Input(format!(
            "--compacted {unknown}: log dir {} has no topic of that name",
            dir.display()
        )));
    }
    let mut progress = Progress::new(json);
    let (mut failed, mut cut) = (0usize, 0usize);
    for (i, tp) in partitions.iter().enumerate() {
        let name = tp.dir_name();
        progress.force(&format!("check: {}/{} {name}", i + 1, partitions.len()));
        let opened =
            if crate::clean::always_compacted(&tp.topic) || args.compacted.contains(&tp.topic) {
                log_dir.open_log_with(tp, crate::clean::topic_config(&tp.topic))
            } else {
                log_dir.open_log(tp)
            };
        match opened {
            Ok((_log, report)) => {
                progress.finish();
                cut += usize::from(report.damage.is_some());
                emit(&partition_line(&name, &report, json))?;
                for warning in &report.warnings {
                    emit_warning(Some(&name), warning, json)?;
                }
            }
            Err(err) => {
                progress.finish();
                failed += 1;
                // The report's line, and the error's on stderr, as every error's.
                eprintln!("partlog: {name}: cannot open: {err}");
                emit(&if json {
                    Json::new()
                        .str("type", "error")
                        .str("partition", &name)
                        .str("error", &err.to_string())
                        .finish()
                } else {
                    format!("{name}: cannot open: {err}")
                })?;
            }
        }
    }
    progress.finish();
    // A dry run leaves no marker, checkpoint or lock behind: the view is dropped.
    if !args.dry_run {
        log_dir.close()?;
    }
    let summary = if json {
        Json::new()
            .str("type", "summary")
            .int("partitions", partitions.len() as u64)
            .int("cut", cut as u64)
            .int("failed", failed as u64)
            .bool("dry_run", args.dry_run)
            .finish()
    } else {
        format!(
            "{} partitions checked, {cut} {} data cut, {failed} could not be opened{}",
            partitions.len(),
            if args.dry_run { "would have" } else { "had" },
            if args.dry_run {
                " (dry run: nothing changed)"
            } else {
                ""
            }
        )
    };
    emit(&summary)?;
    Ok(if failed > 0 {
        ExitCode::from(EXIT_ERROR)
    } else if cut > 0 {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

fn emit_warning(partition: Option<&str>, warning: &str, json: bool) -> CliResult<()> {
    emit(&if json {
        let mut j = Json::new().str("type", "warning");
        if let Some(p) = partition {
            j = j.str("partition", p);
        }
        j.str("warning", warning).finish()
    } else {
        format!(
            "warning: {}{warning}",
            partition.map_or(String::new(), |p| format!("{p}: "))
        )
    })
}

/// One partition's line; also used by `demo` to show a recovery.
pub fn partition_line(name: &str, report: &RecoveryReport, json: bool) -> String {
    if json {
        let mut j = Json::new()
            .str("type", "partition")
            .str("partition", name)
            .int("log_start_offset", report.log_start_offset)
            .int("log_end_offset", report.log_end_offset)
            .int("segments", report.segments as u64)
            .int("segments_scanned", report.segments_scanned as u64)
            .int("recovered_bytes", report.recovered_bytes)
            .int("truncated_bytes", report.truncated_bytes())
            .bool("clean_shutdown", report.clean_shutdown);
        if let Some(d) = &report.damage {
            let moved: Vec<String> = d.moved_to.iter().map(|p| p.display().to_string()).collect();
            let damage = Json::new()
                .str("kind", d.kind.as_str())
                .str("reason", &d.reason)
                .str("file", &d.file.display().to_string())
                .int("position", d.position)
                .int("bytes", d.bytes)
                .raw(
                    "moved_to",
                    &json::str_array(moved.iter().map(|s| s.as_str())),
                )
                .finish();
            j = j.raw("damage", &damage);
        }
        if !report.leftovers.is_empty() {
            let actions: Vec<String> = report
                .leftovers
                .iter()
                .map(|l| format!("{}: {}", l.path.display(), l.action))
                .collect();
            j = j.raw(
                "leftovers",
                &json::str_array(actions.iter().map(|s| s.as_str())),
            );
        }
        return j.finish();
    }
    let mut line = format!(
        "{name}: offsets [{}, {}), {} segments, {} scanned, {} bytes recovered, {} bytes truncated{}",
        report.log_start_offset,
        report.log_end_offset,
        report.segments,
        report.segments_scanned,
        report.recovered_bytes,
        report.truncated_bytes(),
        if report.clean_shutdown { " (clean shutdown)" } else { "" },
    );
    if let Some(d) = &report.damage {
        let moved: Vec<String> = d.moved_to.iter().map(|p| p.display().to_string()).collect();
        line.push_str(&format!(
            "; {} at {} position {}: {}; moved aside to {}",
            d.kind.as_str(),
            d.file.display(),
            d.position,
            d.reason,
            moved.join(", ")
        ));
    }
    for l in &report.leftovers {
        line.push_str(&format!("; {}: {}", l.path.display(), l.action));
    }
    line
}
