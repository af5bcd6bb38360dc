//! `partlog dump` of `.index`, `.timeindex` and checkpoint files (see `dump.rs`).

use std::path::{Path, PathBuf};

use partlog::checkpoint;
use partlog::index::{OFFSET_ENTRY_BYTES, TIME_ENTRY_BYTES};

use crate::dump::{open_read, Summary};
use crate::json::Json;
use crate::{emit, storage, CliError, CliResult};

/// Bytes read per chunk: a whole number of entries of both index kinds.
const CHUNK_BYTES: usize = 24 << 11;
const _: () = assert!(CHUNK_BYTES % OFFSET_ENTRY_BYTES == 0 && CHUNK_BYTES % TIME_ENTRY_BYTES == 0);

/// Digits of the base offset in a segment file name.
const BASE_OFFSET_DIGITS: usize = 20;

/// The base offset in a name like `00000000000000000042.index` (or with a prefix, as in
/// `metadata-a-00000000000000000000.log`), and the sibling `.log` path.
fn base_offset_and_log(path: &Path, suffix: &str) -> (Option<i64>, PathBuf) {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let stem = name.strip_suffix(suffix).unwrap_or(name);
    let base = stem
        .len()
        .checked_sub(BASE_OFFSET_DIGITS)
        .and_then(|at| stem.get(at..))
        .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse::<i64>().ok());
    (base, path.with_file_name(format!("{stem}.log")))
}

/// Calls `entry(index, bytes)` for each whole entry until it returns false, then reports a
/// trailing partial entry and the count of unused (zero) slots after the last entry.
fn for_each_entry(
    path: &Path,
    entry_bytes: usize,
    summary: &mut Summary,
    mut entry: impl FnMut(u64, &[u8]) -> CliResult<bool>,
) -> CliResult<()> {
    let file = open_read(path)?;
    let len = file.len()?;
    let whole = len / entry_bytes as u64;
    let mut buf = vec![0u8; CHUNK_BYTES];
    let (mut pos, mut i) = (0u64, 0u64);
    'read: while i < whole {
        let n = ((whole * entry_bytes as u64 - pos) as usize).min(CHUNK_BYTES);
        file.read_exact_at(&mut buf[..n], pos)?;
        for chunk in buf[..n].chunks_exact(entry_bytes) {
            if !entry(i, chunk)? {
                break 'read;
            }
            i += 1;
        }
        pos += n as u64;
    }
    summary.entries = i;
    summary.figures.push(("unused_slots", (whole - i) as i64));
    let trailing = len % entry_bytes as u64;
    if trailing != 0 {
        summary.invalid += 1;
        summary.problem(format!(
            "{trailing} trailing bytes: the file is not a whole number of {entry_bytes}-byte entries"
        ));
    }
    Ok(())
}

fn be_i32(b: &[u8]) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    i32::from_be_bytes(a)
}

fn be_i64(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    i64::from_be_bytes(a)
}

fn base_or_note(base: Option<i64>, summary: &mut Summary, json: bool) -> CliResult<i64> {
    if base.is_none() && !json {
        emit("note: no base offset in the file name; offsets shown are relative")?;
    }
    summary.figures.push(("base_offset", base.unwrap_or(0)));
    Ok(base.unwrap_or(0))
}

/// `.index`: 8-byte entries, relative offset i32 + position i32. Entries must increase
/// strictly in both and point inside the sibling `.log` when it exists.
pub fn offset_index(path: &Path, json: bool) -> CliResult<Summary> {
    let (base, log_path) = base_offset_and_log(path, ".index");
    let mut summary = Summary::new("index");
    let base = base_or_note(base, &mut summary, json)?;
    let log_len = if storage().exists(&log_path) {
        Some(open_read(&log_path)?.len()?)
    } else {
        None
    };
    let mut previous: Option<(i32, i32)> = None;
    let mut problems = Vec::new();
    for_each_entry(path, OFFSET_ENTRY_BYTES, &mut summary, |i, e| {
        let (relative, position) = (be_i32(e), be_i32(&e[4..]));
        // Kafka preallocates index files with zeros: a zero entry after the first ends it.
        if i > 0 && relative == 0 && position == 0 {
            return Ok(false);
        }
        // Wrapping, as the log reads a relative offset; an entry past `i64::MAX` is
        // reported (the file name's base comes from disk too).
        let offset = base.wrapping_add(i64::from(relative));
        let mut why = None;
        if offset < base && relative > 0 {
            why = Some("offset past the largest offset".to_string());
        } else if relative < 0 || position < 0 {
            why = Some("negative relative offset or position".to_string());
        } else if let Some((r, p)) = previous.filter(|&(r, p)| relative <= r || position <= p) {
            why = Some(format!(
                "not increasing after relative offset {r} position {p}"
            ));
        } else if let Some(len) = log_len.filter(|&len| position as u64 >= len) {
            why = Some(format!("position beyond the .log size {len}"));
        }
        previous = Some((relative, position));
        let fields = [("offset", offset), ("position", i64::from(position))];
        emit_entry(
            json,
            "index_entry",
            &fields,
            (i, offset),
            why,
            &mut problems,
        )?;
        Ok(true)
    })?;
    finish_entries(&mut summary, problems)
}

/// `.timeindex`: 12-byte entries, timestamp i64 + relative offset i32, both non-decreasing.
pub fn time_index(path: &Path, json: bool) -> CliResult<Summary> {
    let (base, _) = base_offset_and_log(path, ".timeindex");
    let mut summary = Summary::new("timeindex");
    let base = base_or_note(base, &mut summary, json)?;
    let mut previous: Option<(i64, i32)> = None;
    let mut problems = Vec::new();
    for_each_entry(path, TIME_ENTRY_BYTES, &mut summary, |i, e| {
        let (timestamp, relative) = (be_i64(e), be_i32(&e[8..]));
        if i > 0 && timestamp == 0 && relative == 0 {
            return Ok(false);
        }
        let offset = base.wrapping_add(i64::from(relative));
        let mut why = None;
        if offset < base && relative > 0 {
            why = Some("offset past the largest offset".to_string());
        } else if relative < 0 {
            why = Some("negative relative offset".to_string());
        } else if let Some((t, r)) = previous.filter(|&(t, r)| timestamp < t || relative < r) {
            why = Some(format!(
                "decreasing after timestamp {t} relative offset {r}"
            ));
        }
        previous = Some((timestamp, relative));
        let fields = [("timestamp", timestamp), ("offset", offset)];
        emit_entry(
            json,
            "time_index_entry",
            &fields,
            (i, offset),
            why,
            &mut problems,
        )?;
        Ok(true)
    })?;
    finish_entries(&mut summary, problems)
}

/// Prints one index entry, as `name: value` pairs or a JSON object of `kind`, and records
/// why it is invalid, if it is. `at` is the entry's number and offset.
fn emit_entry(
    json: bool,
    kind: &str,
    fields: &[(&str, i64)],
    at: (u64, i64),
    why: Option<String>,
    problems: &mut Vec<String>,
) -> CliResult<()> {
    emit(&if json {
        let mut j = Json::new().str("type", kind);
        for (key, value) in fields {
            j = j.int(key, *value);
        }
        j = j.bool("valid", why.is_none());
        if let Some(why) = &why {
            j = j.str("reason", why);
        }
        j.finish()
    } else {
        let mut line: Vec<String> = fields.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        if let Some(why) = &why {
            line.push(format!("invalid: {why}"));
        }
        line.join(" ")
    })?;
    if let Some(why) = why {
        problems.push(format!("entry {} (offset {}): {why}", at.0, at.1));
    }
    Ok(())
}

fn finish_entries(summary: &mut Summary, problems: Vec<String>) -> CliResult<Summary> {
    summary.invalid += problems.len() as u64;
    for p in problems {
        summary.problem(p);
    }
    Ok(std::mem::take(summary))
}

/// Which checkpoint layout a file has, known by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointKind {
    /// `topic partition offset` lines (recovery point, log start, replication, cleaner).
    Offsets,
    /// `epoch start_offset` lines (`leader-epoch-checkpoint`).
    Epochs,
}

fn read_checkpoint(path: &Path) -> CliResult<String> {
    checkpoint::read_text(storage().as_ref(), path)?
        .ok_or_else(|| CliError::Input(format!("{} does not exist", path.display())))
}

/// Dumps a checkpoint file. A file that does not parse is reported invalid (so `--verify`
/// exits 1), not refused.
pub fn checkpoint(path: &Path, kind: CheckpointKind, json: bool) -> CliResult<Summary> {
    let text = read_checkpoint(path)?;
    match kind {
        CheckpointKind::Offsets => offsets_checkpoint(path, &text, json),
        CheckpointKind::Epochs => epochs_checkpoint(path, &text, json),
    }
}

fn unparsable(kind: &'static str, e: partlog::Error) -> Summary {
    let mut summary = Summary::new(kind);
    summary.invalid += 1;
    summary.problem(format!("does not parse: {e}"));
    summary
}

fn offsets_checkpoint(path: &Path, text: &str, json: bool) -> CliResult<Summary> {
    let entries = match checkpoint::parse_offsets(path, text) {
        Ok(entries) => entries,
        Err(e) => return Ok(unparsable("checkpoint", e)),
    };
    let mut summary = Summary::new("checkpoint");
    for (tp, offset) in &entries {
        emit(&if json {
            Json::new()
                .str("type", "checkpoint_entry")
                .str("topic", &tp.topic)
                .int("partition", tp.partition)
                .int("offset", *offset)
                .finish()
        } else {
            format!(
                "topic: {} partition: {} offset: {offset}",
                tp.topic, tp.partition
            )
        })?;
        if *offset < 0 {
            summary.invalid += 1;
            summary.problem(format!("{tp}: negative offset {offset}"));
        }
    }
    summary.entries = entries.len() as u64;
    Ok(summary)
}

fn epochs_checkpoint(path: &Path, text: &str, json: bool) -> CliResult<Summary> {
    let entries = match checkpoint::parse_epochs(path, text) {
        Ok(entries) => entries,
        Err(e) => return Ok(unparsable("leader-epoch", e)),
    };
    let mut summary = Summary::new("leader-epoch");
    let mut previous: Option<(i32, i64)> = None;
    for &(epoch, start_offset) in &entries {
        emit(&if json {
            Json::new()
                .str("type", "epoch_entry")
                .int("epoch", epoch)
                .int("start_offset", start_offset)
                .finish()
        } else {
            format!("epoch: {epoch} startOffset: {start_offset}")
        })?;
        if let Some((e, o)) = previous.filter(|&(e, o)| epoch <= e || start_offset < o) {
            summary.invalid += 1;
            summary.problem(format!(
                "epoch {epoch} at {start_offset} does not follow epoch {e} at {o}"
            ));
        }
        previous = Some((epoch, start_offset));
    }
    summary.entries = entries.len() as u64;
    Ok(summary)
}
