//! `partlog dump`: prints segment, index and checkpoint files the way Kafka's
//! `kafka-dump-log` does, reading them read-only and validating as it goes.
//!
//! Memory stays bounded on any input: batches are read one at a time and never beyond the
//! file's length, index files in fixed-size chunks.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use partlog::io::{OpenMode, StorageFile};
use partlog::record::{Batch, BatchHeader, Compression, Record, TimestampType, HEADER_LEN};
use partlog::segment::zeros_written_ahead;

use partlog::checkpoint::{
    CLEANER_FILE, LEADER_EPOCH_FILE, LOG_START_OFFSET_FILE, RECOVERY_POINT_FILE, REPLICATION_FILE,
};

use crate::dump_index::{self, CheckpointKind};
use crate::json::{self, Json};
use crate::{emit, storage, CliError, CliResult, EXIT_FAILED};

/// Largest batch the dump reads into memory; a header claiming more is reported invalid.
const BATCH_BYTES_MAX: usize = 256 << 20;
/// Problems listed in the summary; more are counted, not listed.
const PROBLEMS_LISTED_MAX: usize = 20;
/// Longest key printed in text; longer keys print their size only.
const KEY_PRINT_CHARS_MAX: usize = 64;

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// A `.log`, `.corrupt`, `.index`, `.timeindex` or checkpoint file (named as Kafka
    /// names them: `recovery-point-offset-checkpoint`, `leader-epoch-checkpoint`, ...).
    file: PathBuf,
    /// Also print every record of each batch.
    #[arg(long)]
    records: bool,
    /// Decode every record as one of `__consumer_offsets` (its key, and an offset commit's
    /// value), as kafka-dump-log's option of that name does; implies `--records`.
    #[arg(long)]
    offsets_decoder: bool,
    /// Exit 1 when anything in the file is invalid.
    #[arg(long)]
    verify: bool,
}

/// The checkpoint files of `topic partition offset` lines, by name.
const OFFSET_CHECKPOINTS: [&str; 4] = [
    RECOVERY_POINT_FILE,
    LOG_START_OFFSET_FILE,
    REPLICATION_FILE,
    CLEANER_FILE,
];

/// What a file is, known by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Log,
    OffsetIndex,
    TimeIndex,
    Checkpoint(CheckpointKind),
    /// A Kafka file partlog knows of but does not read; the name says which.
    Unread(&'static str),
}

impl FileKind {
    fn of(name: &str) -> Option<FileKind> {
        let kind = if name.ends_with(".log") || name.ends_with(".corrupt") {
            FileKind::Log
        } else if name.ends_with(".index") {
            FileKind::OffsetIndex
        } else if name.ends_with(".timeindex") {
            FileKind::TimeIndex
        } else if OFFSET_CHECKPOINTS.contains(&name) {
            FileKind::Checkpoint(CheckpointKind::Offsets)
        } else if name == LEADER_EPOCH_FILE {
            FileKind::Checkpoint(CheckpointKind::Epochs)
        } else if name.ends_with(".snapshot") {
            FileKind::Unread("producer-state snapshot (.snapshot)")
        } else if name.ends_with(".txnindex") {
            FileKind::Unread("transaction index (.txnindex)")
        } else {
            return None;
        };
        Some(kind)
    }
}

/// What a dump found, printed last.
#[derive(Debug, Default)]
pub struct Summary {
    pub kind: &'static str,
    pub entries: u64,
    pub invalid: u64,
    pub problems: Vec<String>,
    /// Extra summary fields: name and value.
    pub figures: Vec<(&'static str, i64)>,
}

impl Summary {
    pub fn new(kind: &'static str) -> Self {
        Summary {
            kind,
            ..Summary::default()
        }
    }

    /// Records one problem (the caller decides whether it counts as an invalid entry).
    pub fn problem(&mut self, what: String) {
        if self.problems.len() < PROBLEMS_LISTED_MAX {
            self.problems.push(what);
        }
    }
}

pub fn run(args: &DumpArgs, json: bool) -> CliResult {
    let path = &args.file;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let kind = FileKind::of(name).ok_or_else(|| {
        CliError::Input(format!(
            "{}: unknown file kind; partlog dumps .log, .corrupt, .index and .timeindex \
             files and the {} checkpoints",
            path.display(),
            OFFSET_CHECKPOINTS
                .iter()
                .chain([&LEADER_EPOCH_FILE])
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    if !json {
        emit(&format!("Dumping {}", path.display()))?;
    }
    let summary = match kind {
        FileKind::Log => {
            let records = match (args.offsets_decoder, args.records) {
                (true, _) => Some(RecordView::Offsets),
                (false, true) => Some(RecordView::Plain),
                (false, false) => None,
            };
            dump_log(path, records, json)?
        }
        FileKind::OffsetIndex => dump_index::offset_index(path, json)?,
        FileKind::TimeIndex => dump_index::time_index(path, json)?,
        FileKind::Checkpoint(kind) => dump_index::checkpoint(path, kind, json)?,
        FileKind::Unread(what) => {
            return Err(CliError::Input(format!(
                "{}: {what} files are not read by partlog",
                path.display()
            )))
        }
    };
    let valid = summary.invalid == 0 && summary.problems.is_empty();
    let line = if json {
        let mut j = Json::new()
            .str("type", "summary")
            .str("file", &path.display().to_string())
            .str("kind", summary.kind)
            .int("entries", summary.entries)
            .int("invalid", summary.invalid);
        for (key, value) in &summary.figures {
            j = j.int(key, *value);
        }
        j.bool("valid", valid)
            .raw(
                "problems",
                &json::str_array(summary.problems.iter().map(|s| s.as_str())),
            )
            .finish()
    } else {
        let mut line = format!(
            "Summary: {} {} entries, {} invalid",
            summary.entries, summary.kind, summary.invalid
        );
        for (key, value) in &summary.figures {
            line.push_str(&format!(", {key}: {value}"));
        }
        for p in &summary.problems {
            line.push_str(&format!("\n  problem: {p}"));
        }
        line
    };
    emit(&line)?;
    Ok(if args.verify && !valid {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// Opens a file read-only through the io layer.
pub fn open_read(path: &Path) -> CliResult<std::sync::Arc<dyn StorageFile>> {
    Ok(storage().open(path, OpenMode::Read)?)
}

/// How `dump` prints records: as records, or also decoded as `__consumer_offsets` ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordView {
    Plain,
    Offsets,
}

fn dump_log(path: &Path, records: Option<RecordView>, json: bool) -> CliResult<Summary> {
    let file = open_read(path)?;
    let len = file.len()?;
    let mut summary = Summary::new("batch");
    let (mut pos, mut records_total, mut next_offset) = (0u64, 0i64, None::<i64>);
    let mut header_buf = [0u8; HEADER_LEN];
    let mut buf = Vec::new();
    while pos < len {
        let rest = len - pos;
        if zeros_written_ahead(file.as_ref(), pos, len)? {
            // An active segment's zeros written ahead of its batches: no data, no damage.
            summary.figures.push(("zeros_written_ahead", rest as i64));
            break;
        }
        if rest < HEADER_LEN as u64 {
            summary.problem(format!("{rest} trailing bytes at position {pos}"));
            break;
        }
        file.read_exact_at(&mut header_buf, pos)?;
        let header = match BatchHeader::parse(&header_buf) {
            Ok(h) => h,
            Err(e) => {
                summary.problem(format!(
                    "{rest} trailing bytes at position {pos} are not a batch: {e}"
                ));
                break;
            }
        };
        let size = header.size();
        if size as u64 > rest || size > BATCH_BYTES_MAX {
            summary.invalid += 1;
            summary.entries += 1;
            let why = format!("batch of {size} bytes runs past the end of the file ({rest} left)");
            emit(&batch_line(&header, pos, Err(&why), json))?;
            summary.problem(format!("batch at position {pos}: {why}"));
            break;
        }
        buf.resize(size, 0);
        file.read_exact_at(&mut buf, pos)?;
        let mut verdict = Batch::parse(&buf).and_then(|b| b.validate().map(|_| b));
        if let (Ok(_), Some(expected)) = (&verdict, next_offset) {
            if header.base_offset < expected {
                let why = format!("base offset {} is below {expected}", header.base_offset);
                summary.problem(format!("batch at position {pos}: {why}"));
                summary.invalid += 1;
            }
        }
        summary.entries += 1;
        let why = verdict.as_ref().err().map(|e| e.to_string());
        emit(&batch_line(
            &header,
            pos,
            why.as_deref().map_or(Ok(()), Err),
            json,
        ))?;
        match &mut verdict {
            Ok(batch) => {
                records_total += i64::from(header.records_count);
                if let Some(view) = records {
                    dump_records(batch, view, json)?;
                }
            }
            Err(e) => {
                summary.invalid += 1;
                summary.problem(format!("batch at position {pos}: {e}"));
            }
        }
        next_offset = Some(header.next_offset());
        pos += size as u64;
    }
    summary.figures.push(("records", records_total));
    summary.figures.push(("bytes", len as i64));
    Ok(summary)
}

fn batch_line(h: &BatchHeader, position: u64, valid: Result<(), &str>, json: bool) -> String {
    let codec = match h.compression() {
        Compression::None => "none",
        Compression::Gzip => "gzip",
        Compression::Snappy => "snappy",
        Compression::Lz4 => "lz4",
        Compression::Zstd => "zstd",
    };
    let ts_type = match h.timestamp_type() {
        TimestampType::CreateTime => "CreateTime",
        TimestampType::LogAppendTime => "LogAppendTime",
    };
    if json {
        let mut j = Json::new()
            .str("type", "batch")
            .int("base_offset", h.base_offset)
            .int("last_offset", h.last_offset())
            .int("count", h.records_count)
            .int("position", position)
            .int("size", h.size() as u64)
            .int("epoch", h.partition_leader_epoch)
            .int("crc", h.crc)
            .int("max_timestamp", h.max_timestamp)
            .str("timestamp_type", ts_type)
            .str("compression", codec)
            .int("producer_id", h.producer_id)
            .int("producer_epoch", h.producer_epoch)
            .int("base_sequence", h.base_sequence)
            .bool("transactional", h.is_transactional())
            .bool("control", h.is_control())
            .bool("valid", valid.is_ok());
        if let Err(why) = valid {
            j = j.str("reason", why);
        }
        return j.finish();
    }
    let mut line = format!(
        "baseOffset: {} lastOffset: {} count: {} baseSequence: {} producerId: {} producerEpoch: {} \
         partitionLeaderEpoch: {} isTransactional: {} isControl: {} position: {position} \
         {ts_type}: {} size: {} magic: {} compresscodec: {codec} crc: {} isvalid: {}",
        h.base_offset,
        h.last_offset(),
        h.records_count,
        h.base_sequence,
        h.producer_id,
        h.producer_epoch,
        h.partition_leader_epoch,
        h.is_transactional(),
        h.is_control(),
        h.max_timestamp,
        h.size(),
        h.magic,
        h.crc,
        valid.is_ok()
    );
    if let Err(why) = valid {
        line.push_str(&format!(" reason: {why}"));
    }
    line
}

fn dump_records(batch: &Batch<'_>, view: RecordView, json: bool) -> CliResult<()> {
    let iter = match batch.records() {
        Ok(iter) => iter,
        Err(e) => {
            return emit(&if json {
                Json::new()
                    .str("type", "records")
                    .str("note", &e.to_string())
                    .finish()
            } else {
                format!("| records not shown: {e}")
            });
        }
    };
    // The batch validated, so every record decodes; a failure here stops quietly.
    for record in iter.map_while(Result::ok) {
        let mut line = record_line(&record, json);
        if view == RecordView::Offsets && !batch.header().is_control() {
            offsets_fields(&mut line, &record, json);
        }
        if let Some(commits) = batch.marker_commits() {
            marker_fields(&mut line, commits, batch.marker_coordinator_epoch(), json);
        }
        emit(&line)?;
    }
    Ok(())
}

/// Appends what a transaction marker's record says to its `line`, as kafka-dump-log
/// prints it (`endTxnMarker: ABORT coordinatorEpoch: 4`).
fn marker_fields(line: &mut String, commits: bool, coordinator_epoch: Option<i32>, json: bool) {
    let marker = if commits { "COMMIT" } else { "ABORT" };
    if json {
        let mut j = Json::new().str("end_txn_marker", marker);
        if let Some(epoch) = coordinator_epoch {
            j = j.int("coordinator_epoch", epoch);
        }
        append_fields(line, j);
        return;
    }
    line.push_str(&format!(" endTxnMarker: {marker}"));
    if let Some(epoch) = coordinator_epoch {
        line.push_str(&format!(" coordinatorEpoch: {epoch}"));
    }
}

/// Adds `fields` to the one-line JSON object `line`.
fn append_fields(line: &mut String, fields: Json) {
    let fields = fields.finish();
    line.pop();
    line.push(',');
    line.push_str(&fields[1..]);
}

/// Appends what `record` says as a `__consumer_offsets` record to its `line`: in text
/// `key: ... payload: ...` as kafka-dump-log's offsets decoder prints them, in JSON flat
/// fields (`committed_offset` for the value's offset, `offset` being the record's).
fn offsets_fields(line: &mut String, record: &Record<'_>, json: bool) {
    use partlog::offsets::codec::{decode_key_ref, decode_offset_commit_value_ref, KeyRef};
    let mut j = Json::new();
    let mut text = String::new();
    match record.key.map(decode_key_ref) {
        None => {
            j = j
                .str("offsets_record", "undecodable")
                .str("error", "no key");
            text.push_str(" key: <undecodable: no key>");
        }
        Some(Err(e)) => {
            j = j
                .str("offsets_record", "undecodable")
                .str("error", &e.to_string());
            text.push_str(&format!(" key: <undecodable: {e}>"));
        }
        Some(Ok(KeyRef::OffsetCommit {
            group,
            topic,
            partition,
        })) => {
            j = j
                .str("offsets_record", "offset_commit")
                .str("group", group)
                .str("topic", topic)
                .int("partition", partition);
            text.push_str(&format!(
                " key: offset_commit group={group:?} topic={topic:?} partition={partition}"
            ));
            match record.value.map(decode_offset_commit_value_ref) {
                None => {
                    j = j.bool("tombstone", true);
                    text.push_str(" payload: <DELETE>");
                }
                Some(Ok(v)) => {
                    j = j
                        .int("committed_offset", v.offset)
                        .int("leader_epoch", v.leader_epoch)
                        .str("metadata", v.metadata)
                        .int("commit_timestamp", v.commit_timestamp);
                    text.push_str(&format!(
                        " payload: offset={} leaderEpoch={} metadata={:?} commitTimestamp={}",
                        v.offset, v.leader_epoch, v.metadata, v.commit_timestamp
                    ));
                    if v.expire_timestamp != -1 {
                        j = j.int("expire_timestamp", v.expire_timestamp);
                        text.push_str(&format!(" expireTimestamp={}", v.expire_timestamp));
                    }
                }
                Some(Err(e)) => {
                    j = j.str("error", &e.to_string());
                    text.push_str(&format!(" payload: <undecodable: {e}>"));
                }
            }
        }
        Some(Ok(KeyRef::GroupMetadata { group })) => {
            j = j
                .str("offsets_record", "group_metadata")
                .str("group", group);
            let payload = record.value.map_or("<DELETE>".to_string(), |v| {
                format!("<group metadata of {} bytes, not decoded>", v.len())
            });
            text.push_str(&format!(
                " key: group_metadata group={group:?} payload: {payload}"
            ));
        }
        Some(Ok(KeyRef::Unmodelled { version })) => {
            j = j
                .str("offsets_record", "not_decoded")
                .int("record_type", version);
            text.push_str(&format!(" key: <record type {version}, not decoded>"));
        }
    }
    if json {
        append_fields(line, j);
    } else {
        line.push_str(&text);
    }
}

fn record_line(r: &Record<'_>, json: bool) -> String {
    let size = |b: Option<&[u8]>| b.map_or(-1, |b| b.len() as i64);
    let key = r.key.and_then(printable);
    if json {
        let mut j = Json::new()
            .str("type", "record")
            .int("offset", r.offset)
            .int("timestamp", r.timestamp)
            .int("key_size", size(r.key))
            .int("value_size", size(r.value))
            .int("headers", r.headers_count() as u64);
        if let Some(key) = key {
            j = j.str("key", key);
        }
        return j.finish();
    }
    let mut line = format!(
        "| offset: {} timestamp: {} keySize: {} valueSize: {} headers: {}",
        r.offset,
        r.timestamp,
        size(r.key),
        size(r.value),
        r.headers_count()
    );
    if let Some(key) = key {
        line.push_str(&format!(" key: {key}"));
    }
    line
}

/// The key as text when it is short, UTF-8 and free of control characters.
fn printable(bytes: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(bytes).ok()?;
    let ok = s.chars().count() <= KEY_PRINT_CHARS_MAX && !s.chars().any(char::is_control);
    ok.then_some(s)
}
