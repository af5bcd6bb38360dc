//! `partlog`: the operator's tool for partlog log dirs and Kafka segment files.
//!
//! Every subcommand prints human-readable lines by default and, with `--json`, one JSON
//! object per line. Errors print one line on stderr and exit non-zero.

mod append;
mod bench;
mod check;
mod clean;
mod demo;
mod demo_failover;
mod demo_group;
mod demo_power_loss;
mod demo_writer;
mod dump;
mod dump_index;
mod json;
mod offsets;
mod produce;
mod progress;
mod transactions;

use std::fmt;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use partlog::checkpoint::TopicPartition;
use partlog::io::overlay::OverlayStorage;
use partlog::io::real::RealStorage;
use partlog::io::Storage;
use partlog::manager::{LogDir, LogDirOptions};

/// Exit code of a run that found a problem it was asked to look for (invalid bytes, data
/// a recovery cut, lost data).
pub const EXIT_FAILED: u8 = 1;
/// Exit code of a run that could not do its work (bad arguments, unreadable input, a
/// partition that does not open).
pub const EXIT_ERROR: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "partlog",
    version,
    about = "Inspect, check and exercise partlog log dirs"
)]
struct Cli {
    /// Print one JSON object per line instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Append synthetic keyed records to a partition.
    Produce(produce::ProduceArgs),
    /// Append Kafka v2 record batches read from a file (or `-` for stdin) as leader.
    Append(append::AppendArgs),
    /// Print a .log, .index, .timeindex or checkpoint file, like kafka-dump-log.
    Dump(dump::DumpArgs),
    /// List the transactions left open in a partition; `--abort` ends a hanging one with
    /// an ABORT marker.
    Transactions(transactions::TransactionsArgs),
    /// List the consumer groups' committed offsets in a log dir's `__consumer_offsets`
    /// partitions, changing nothing on disk.
    Offsets(offsets::OffsetsArgs),
    /// Compact the partitions of a compacted topic until none is worth cleaning
    /// (`--dry-run`: report what that would do, changing nothing on disk).
    Clean(clean::CleanArgs),
    /// Open (and so recover) every partition of a log dir and report on each.
    Check(check::CheckArgs),
    /// Three in-process brokers: kill the leader mid-stream, fail over, and verify every
    /// acknowledged record and the consumer group's resume (`--single`: kill a writing
    /// child process and verify that recovery keeps every flushed record).
    Demo(demo::DemoArgs),
    /// The child process of `demo`: appends offset-derived records until killed.
    #[command(hide = true)]
    DemoWriter(demo_writer::DemoWriterArgs),
    /// Measure the log against the raw disk.
    Bench(bench::BenchArgs),
}

/// Why a subcommand could not do its work.
#[derive(Debug)]
pub enum CliError {
    /// The engine failed (I/O, corruption, a locked dir, ...).
    Engine(partlog::Error),
    /// The input or the arguments are not usable; the message says why.
    Input(String),
    /// Reading stdin or writing stdout failed.
    Stdio(std::io::Error),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Engine(e) => write!(f, "{e}"),
            CliError::Input(why) => write!(f, "{why}"),
            CliError::Stdio(e) => write!(f, "standard i/o: {e}"),
        }
    }
}

impl From<partlog::Error> for CliError {
    fn from(e: partlog::Error) -> Self {
        CliError::Engine(e)
    }
}

impl From<partlog::record::BatchError> for CliError {
    fn from(e: partlog::record::BatchError) -> Self {
        CliError::Engine(e.into())
    }
}

pub type CliResult<T = ExitCode> = Result<T, CliError>;

/// Prints one line on stdout. A closed pipe (`partlog dump ... | head`) is an error the
/// caller returns, not a panic.
pub fn emit(line: &str) -> CliResult<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|_| out.flush())
        .map_err(CliError::Stdio)
}

/// The disk as every subcommand sees it: through partlog's io layer.
pub fn storage() -> Arc<dyn Storage> {
    RealStorage::shared()
}

/// The storage of the existing log dir `dir`, through a copy-on-write view
/// ([`OverlayStorage`]) when `view_only`: then nothing the command does reaches the disk.
/// A dir that does not exist is refused.
pub fn existing_dir(dir: &std::path::Path, view_only: bool) -> CliResult<Arc<dyn Storage>> {
    let disk = storage();
    if !disk.exists(dir) {
        return Err(CliError::Input(format!(
            "log dir {} does not exist",
            dir.display()
        )));
    }
    check_log_dir(disk.as_ref(), dir)?;
    Ok(if view_only {
        OverlayStorage::new(disk)
    } else {
        disk
    })
}

/// Files only a log dir holds: its lock, its checkpoints, the clean-shutdown marker,
/// Kafka's `meta.properties`.
const LOG_DIR_FILES: [&str; 7] = [
    ".lock",
    "recovery-point-offset-checkpoint",
    "replication-offset-checkpoint",
    "log-start-offset-checkpoint",
    "cleaner-offset-checkpoint",
    ".kafka_cleanshutdown",
    "meta.properties",
];

/// Refuses an existing `dir` that is not a log dir: not empty (an empty one becomes a log
/// dir, as Kafka takes an empty `log.dirs` entry), and with none of a log dir's own files
/// and no partition directory with a segment. Opening it would write a lock, checkpoints
/// and the clean-shutdown marker there, and take any directory named like a partition (a
/// backup, another tool's log) for one; a partition dir named as the log dir would report
/// nothing wrong.
pub fn check_log_dir(storage: &dyn Storage, dir: &std::path::Path) -> CliResult<()> {
    let entries = storage.list_dir(dir)?;
    let is_segment = |e: &partlog::io::DirEntry| !e.is_dir && e.name.ends_with(".log");
    let refuse = |what: &str| {
        Err(CliError::Input(format!(
            "{} is not a log dir{what}",
            dir.display()
        )))
    };
    // A log dir never holds segments itself (a partition dir has its own `.lock` too).
    if entries.iter().any(is_segment) {
        return refuse(": it holds segments, a partition dir; name the log dir above it");
    }
    if entries.is_empty() || LOG_DIR_FILES.iter().any(|f| storage.exists(&dir.join(f))) {
        return Ok(());
    }
    for entry in entries.iter().filter(|e| e.is_dir) {
        if TopicPartition::from_dir_name(&entry.name).is_none() {
            continue;
        }
        let files = storage.list_dir(&dir.join(&entry.name))?;
        if files.iter().any(is_segment) {
            return Ok(());
        }
    }
    refuse(": no checkpoint, no partition with a segment")
}

/// A log dir a command opened, closed when dropped on the way out of an error too:
/// opening it removed the clean-shutdown marker, which a broker starting after a failed
/// command would otherwise miss, and recover every partition. A close that fails leaves
/// the marker unwritten, as it should.
pub struct OpenedDir(Option<LogDir>);

impl OpenedDir {
    pub fn new(dir: LogDir) -> OpenedDir {
        OpenedDir(Some(dir))
    }

    pub fn close(mut self) -> CliResult<()> {
        match self.0.take() {
            Some(dir) => Ok(dir.close()?),
            None => Ok(()),
        }
    }
}

impl std::ops::Deref for OpenedDir {
    type Target = LogDir;

    fn deref(&self) -> &LogDir {
        // Set from `new` until `close` or `drop` take it.
        self.0
            .as_ref()
            .unwrap_or_else(|| unreachable!("an OpenedDir is open until closed"))
    }
}

impl Drop for OpenedDir {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = dir.close();
        }
    }
}

/// The partitions of `topic` in `log_dir` (only `partition` when given); refused when
/// there are none.
pub fn topic_partitions(
    log_dir: &LogDir,
    topic: &str,
    partition: Option<i32>,
) -> CliResult<Vec<TopicPartition>> {
    let partitions: Vec<TopicPartition> = log_dir
        .partitions()?
        .into_iter()
        .filter(|tp| tp.topic == topic && partition.is_none_or(|p| p == tp.partition))
        .collect();
    if partitions.is_empty() {
        let which = partition.map_or(String::new(), |p| format!(" partition {p} of"));
        return Err(CliError::Input(format!(
            "log dir {} has no{which} topic {topic}",
            log_dir.path().display()
        )));
    }
    Ok(partitions)
}

/// The partition a subcommand works on.
#[derive(Debug, clap::Args)]
pub struct PartitionArgs {
    /// The log dir.
    #[arg(long)]
    pub dir: std::path::PathBuf,
    #[arg(long)]
    pub topic: String,
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..))]
    pub partition: i32,
}

impl PartitionArgs {
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(&self.topic, self.partition)
    }
}

/// What [`open_partition`] does with a log dir or partition that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMissing {
    /// Create the log dir and the partition.
    Create,
    /// Refuse a log dir that does not exist (a mistyped `--dir` does not quietly start a
    /// new one), create the partition.
    CreatePartition,
    /// Refuse both.
    Refuse,
}

impl IfMissing {
    /// What a subcommand with a `--create` flag does.
    pub fn create_if(create: bool) -> IfMissing {
        if create {
            IfMissing::Create
        } else {
            IfMissing::CreatePartition
        }
    }
}

/// A partition a command opened, with its log dir: closed by [`OpenedPartition::close`],
/// or, as an [`OpenedDir`], when dropped on the way out of an error, so that a command
/// that fails on bad input (a fenced epoch, say) leaves the dir as it found it,
/// clean-shutdown marker included.
pub struct OpenedPartition {
    dir: OpenedDir,
    pub log: Arc<partlog::log::Log>,
}

impl OpenedPartition {
    pub fn close(self) -> CliResult<()> {
        self.dir.close()
    }
}

/// Opens the log dir and one partition of it. The topic name is checked first, and what
/// is missing is created or refused as `missing` says, before anything is written. An
/// existing dir that is not a log dir is refused unless `missing` creates. The offsets
/// topic opens as it compacts (its recovery takes the cleaner's gaps for what they are).
pub fn open_partition(p: &PartitionArgs, missing: IfMissing) -> CliResult<OpenedPartition> {
    open_partition_in(storage(), p, missing)
}

/// [`open_partition`] on `storage` (a copy-on-write view for a command that only reads).
pub fn open_partition_in(
    storage: Arc<dyn Storage>,
    p: &PartitionArgs,
    missing: IfMissing,
) -> CliResult<OpenedPartition> {
    partlog::checkpoint::validate_topic(&p.topic)?;
    let tp = p.topic_partition();
    if missing != IfMissing::Create && !storage.exists(&p.dir) {
        let hint = match missing {
            IfMissing::CreatePartition => " (pass --create to create it)",
            _ => "",
        };
        return Err(CliError::Input(format!(
            "log dir {} does not exist{hint}",
            p.dir.display()
        )));
    }
    // `--create` makes a dir that is missing; one that exists must be a log dir all the
    // same (a partition dir named by mistake would get a log dir's files, and a `.lock`
    // that says partlog wrote its segments).
    if missing != IfMissing::Create || storage.exists(&p.dir) {
        check_log_dir(storage.as_ref(), &p.dir)?;
    }
    if missing == IfMissing::Refuse && !storage.exists(&p.dir.join(tp.dir_name())) {
        return Err(CliError::Input(format!(
            "log dir {} has no partition {}",
            p.dir.display(),
            tp.dir_name()
        )));
    }
    // Dropped on an error, the dir closes as it was found.
    let dir = OpenedDir::new(LogDir::open(storage, &p.dir, LogDirOptions::default())?);
    let opened = match clean::always_compacted(&tp.topic) {
        true => dir.open_log_with(&tp, clean::topic_config(&tp.topic)),
        false => dir.open_log(&tp),
    };
    let (log, _report) = opened?;
    Ok(OpenedPartition { dir, log })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let result = match cli.command {
        Command::Produce(args) => produce::run(&args, json),
        Command::Append(args) => append::run(&args, json),
        Command::Dump(args) => dump::run(&args, json),
        Command::Check(args) => check::run(&args, json),
        Command::Transactions(args) => transactions::run(&args, json),
        Command::Offsets(args) => offsets::run(&args, json),
        Command::Clean(args) => clean::run(&args, json),
        Command::Demo(args) => demo::run(&args, json),
        Command::DemoWriter(args) => demo_writer::run(&args),
        Command::Bench(args) => bench::run(&args, json),
    };
    match result {
        Ok(code) => code,
        Err(CliError::Stdio(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::from(EXIT_ERROR)
        }
        Err(e) => {
            eprintln!("partlog: error: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
