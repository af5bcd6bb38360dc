//! The `partlog` binary, run as an operator would: every subcommand in text and JSON mode,
//! on produced data, damaged data and a Kafka-written segment.
//!
//! Test scaffolding damages files with `std::fs` directly, as an outside agent would.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use partlog::record::BatchBuilder;

mod common;

const KAFKA_FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/kafka/metadata-a-00000000000000000000.log"
);

fn partlog(args: &[&str]) -> Output {
    partlog_with_stdin(args, None)
}

fn partlog_with_stdin(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_partlog"))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn partlog");
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(bytes).expect("write stdin");
    }
    child.wait_with_output().expect("partlog output")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("utf-8 stdout")
}

/// Runs and expects exit code `code`, showing the output otherwise.
fn expect(args: &[&str], code: i32) -> Vec<String> {
    let out = partlog(args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "partlog {args:?}\nstdout:\n{}\nstderr:\n{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out).lines().map(str::to_string).collect()
}

/// The raw text of a top-level field of a one-line JSON object (numbers, booleans, and
/// strings without their quotes). Good enough for the flat objects `partlog` prints.
fn field(line: &str, name: &str) -> Option<String> {
    let key = format!("\"{name}\":");
    let at = line.find(&key)? + key.len();
    let rest = &line[at..];
    if let Some(s) = rest.strip_prefix('"') {
        return s.find('"').map(|end| s[..end].to_string());
    }
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].to_string())
}

fn int(line: &str, name: &str) -> i64 {
    field(line, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no integer {name} in {line}"))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The arguments naming partition `orders-0` of `dir`.
fn orders_0(dir: &Path) -> [&str; 6] {
    ["--dir", s(dir), "--topic", "orders", "--partition", "0"]
}

fn produce(dir: &Path, records: u64, bytes: u64) -> String {
    let (records, bytes) = (records.to_string(), bytes.to_string());
    let rest = [
        "--records",
        &records,
        "--record-bytes",
        &bytes,
        "--batch-records",
        "50",
        "--json",
    ];
    let args: Vec<&str> = (std::iter::once("produce"))
        .chain(orders_0(dir))
        .chain(rest)
        .collect();
    let lines = expect(&args, 0);
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines[0].clone()
}

/// `partlog append` of the batches in `input` to `orders-0` of `dir`: its JSON lines.
fn append_batches(dir: &Path, input: &Path) -> Vec<String> {
    let args: Vec<&str> = (std::iter::once("append"))
        .chain(orders_0(dir))
        .chain(["--batches", s(input), "--json"])
        .collect();
    expect(&args, 0)
}

/// Every file under `dir` with its bytes, sorted by path.
fn dir_snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn segment(dir: &Path, suffix: &str) -> PathBuf {
    dir.join("orders-0")
        .join(format!("00000000000000000000{suffix}"))
}

#[test]
fn produce_then_check() {
    let tmp = tempfile::tempdir().unwrap();
    let first = produce(tmp.path(), 500, 64);
    assert_eq!(int(&first, "first_offset"), 0);
    assert_eq!(int(&first, "last_offset"), 499);
    assert!(int(&first, "bytes") > 500 * 64);
    let second = produce(tmp.path(), 10, 8);
    assert_eq!(int(&second, "first_offset"), 500);
    assert_eq!(int(&second, "last_offset"), 509);

    let lines = expect(&["check", s(tmp.path()), "--json"], 0);
    let line = lines.iter().find(|l| l.contains("\"partition\"")).unwrap();
    assert_eq!(field(line, "partition").as_deref(), Some("orders-0"));
    assert_eq!(int(line, "log_start_offset"), 0);
    assert_eq!(int(line, "log_end_offset"), 510);
    assert_eq!(int(line, "segments"), 1);
    assert_eq!(int(line, "truncated_bytes"), 0);
    assert!(field(line, "recovered_bytes").is_some());
    let text = expect(&["check", s(tmp.path())], 0);
    assert!(
        text[0].starts_with("orders-0: offsets [0, 510)"),
        "{text:?}"
    );
    // The dir named as the other commands name it: the same report.
    assert_eq!(expect(&["check", "--dir", s(tmp.path())], 0), text);
    expect(&["check", s(tmp.path()), "--dir", s(tmp.path())], 2);
    expect(&["check"], 2);
}

fn three_batches() -> Vec<u8> {
    let mut out = Vec::new();
    let mut builder = BatchBuilder::new();
    for (b, n) in [2, 3, 1].into_iter().enumerate() {
        for i in 0..n {
            let key = format!("k{b}-{i}");
            builder.append(1_000 + i, Some(key.as_bytes()), Some(b"value"), &[]);
        }
        builder.build_into(&mut out).unwrap();
    }
    out
}

#[test]
fn append_from_file_and_stdin_and_reject_malformed_input() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("logs");
    let input = tmp.path().join("batches.bin");
    let bytes = three_batches();
    std::fs::write(&input, &bytes).unwrap();
    let base = [
        "append",
        "--dir",
        s(&dir),
        "--topic",
        "orders",
        "--partition",
        "0",
        "--create",
    ];

    let args: Vec<&str> = base
        .iter()
        .copied()
        .chain(["--batches", s(&input), "--json"])
        .collect();
    let lines = expect(&args, 0);
    assert_eq!(int(&lines[0], "first_offset"), 0);
    assert_eq!(int(&lines[0], "last_offset"), 5);
    assert_eq!(int(&lines[0], "batches"), 3);
    assert_eq!(int(&lines[0], "bytes"), bytes.len() as i64);

    let args: Vec<&str> = base
        .iter()
        .copied()
        .chain(["--batches", "-", "--json"])
        .collect();
    let out = partlog_with_stdin(&args, Some(&bytes));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(int(&stdout(&out), "first_offset"), 6);
    assert_eq!(int(&stdout(&out), "last_offset"), 11);

    // A flipped byte in the last batch: a one-line error, and nothing appended.
    let mut bad = bytes.clone();
    let last = bad.len() - 3;
    bad[last] ^= 0x40;
    let out = partlog_with_stdin(&args, Some(&bad));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("batch 2") && err.contains("nothing appended"),
        "{err}"
    );
    // Trailing garbage is malformed too.
    let mut tail = bytes.clone();
    tail.extend_from_slice(b"garbage");
    assert_eq!(
        partlog_with_stdin(&args, Some(&tail)).status.code(),
        Some(2)
    );
    assert_eq!(partlog_with_stdin(&args, Some(b"")).status.code(), Some(2));

    let lines = expect(&["check", s(&dir), "--json"], 0);
    assert_eq!(int(&lines[0], "log_end_offset"), 12);
}

#[test]
fn dump_produced_segment_index_timeindex_and_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    produce(tmp.path(), 2_000, 100);
    let log = segment(tmp.path(), ".log");

    let text = expect(&["dump", s(&log), "--verify"], 0);
    assert!(
        text[1].starts_with("baseOffset: 0 lastOffset: 49 count: 50"),
        "{}",
        text[1]
    );
    assert!(text[1].contains("position: 0") && text[1].contains("isvalid: true"));
    let json = expect(&["dump", s(&log), "--json", "--records"], 0);
    let batches: Vec<_> = json
        .iter()
        .filter(|l| l.contains("\"type\":\"batch\""))
        .collect();
    assert_eq!(batches.len(), 40);
    assert_eq!(int(batches[1], "base_offset"), 50);
    assert_eq!(int(batches[1], "last_offset"), 99);
    assert_eq!(int(batches[1], "count"), 50);
    assert_eq!(int(batches[1], "position"), int(batches[0], "size"));
    assert_eq!(int(batches[1], "epoch"), 0);
    assert!(int(batches[1], "crc") > 0);
    assert_eq!(field(batches[1], "valid").as_deref(), Some("true"));
    let records: Vec<_> = json
        .iter()
        .filter(|l| l.contains("\"type\":\"record\""))
        .collect();
    assert_eq!(records.len(), 2_000);
    assert_eq!(field(records[7], "key").as_deref(), Some("key-7"));
    assert_eq!(int(records[7], "value_size"), 100);
    let summary = json.last().unwrap();
    assert_eq!(field(summary, "type").as_deref(), Some("summary"));
    assert_eq!(int(summary, "entries"), 40);
    assert_eq!(field(summary, "valid").as_deref(), Some("true"));

    let index = expect(&["dump", s(&segment(tmp.path(), ".index")), "--verify"], 0);
    let entries: Vec<_> = index.iter().filter(|l| l.starts_with("offset: ")).collect();
    assert!(entries.len() > 10, "{index:?}");
    assert!(
        entries[0].starts_with("offset: 99 position: "),
        "{}",
        entries[0]
    );
    let json = expect(&["dump", s(&segment(tmp.path(), ".index")), "--json"], 0);
    assert_eq!(int(&json[0], "offset"), 99);

    let time = expect(
        &["dump", s(&segment(tmp.path(), ".timeindex")), "--verify"],
        0,
    );
    assert!(
        time.iter().any(|l| l.starts_with("timestamp: ")),
        "{time:?}"
    );

    let checkpoint = tmp.path().join("recovery-point-offset-checkpoint");
    let lines = expect(&["dump", s(&checkpoint), "--verify", "--json"], 0);
    assert_eq!(field(&lines[0], "topic").as_deref(), Some("orders"));
    assert_eq!(int(&lines[0], "offset"), 2_000);

    let epochs = tmp.path().join("leader-epoch-checkpoint");
    std::fs::write(&epochs, "0\n2\n0 0\n3 100\n").unwrap();
    let lines = expect(&["dump", s(&epochs), "--verify"], 0);
    assert_eq!(lines[2], "epoch: 3 startOffset: 100");
}

/// The active segment of a log still open (or left by a crash) ends in the zeros its
/// appends write ahead: the dump says how many, and finds nothing wrong with them. Garbage
/// in their place is still a problem.
#[test]
fn dump_of_an_active_segment_counts_its_zeros_written_ahead() {
    let backend = common::real();
    let (log, _) = common::open(&backend, "t-0", partlog::LogConfig::default());
    for i in 0..5 {
        log.append_as_leader(&mut common::batch(3, 100, i), 0)
            .expect("append");
    }
    let size = log.size_bytes();
    let path = log.segments()[0].log_path().to_path_buf();
    drop(log);
    let ahead = partlog::segment::PREFILL_BYTES - size;
    let json = expect(&["dump", s(&path), "--verify", "--json"], 0);
    let summary = json.last().expect("summary");
    assert_eq!(field(summary, "entries").as_deref(), Some("5"), "{summary}");
    assert_eq!(
        field(summary, "zeros_written_ahead"),
        Some(ahead.to_string()),
        "{summary}"
    );
    let mut bytes = std::fs::read(&path).unwrap();
    *bytes.last_mut().unwrap() = 1;
    std::fs::write(&path, &bytes).unwrap();
    let json = expect(&["dump", s(&path), "--verify", "--json"], 1);
    let summary = json.last().expect("summary");
    assert_eq!(field(summary, "zeros_written_ahead"), None, "{summary}");
    assert!(summary.contains("are not a batch"), "{summary}");
}

#[test]
fn dump_verify_fails_on_a_flipped_byte_and_bad_index() {
    let tmp = tempfile::tempdir().unwrap();
    produce(tmp.path(), 200, 100);
    let log = segment(tmp.path(), ".log");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[200] ^= 0x01;
    let copy = tmp.path().join("00000000000000000000.log");
    std::fs::write(&copy, &bytes).unwrap();
    let json = expect(&["dump", s(&copy), "--verify", "--json"], 1);
    assert_eq!(field(&json[0], "valid").as_deref(), Some("false"));
    assert!(field(&json[0], "reason").is_some());
    assert_eq!(
        field(json.last().unwrap(), "valid").as_deref(),
        Some("false")
    );
    // Without --verify the dump itself succeeds.
    expect(&["dump", s(&copy)], 0);

    // Trailing garbage after the valid batches.
    let mut tail = std::fs::read(&log).unwrap();
    tail.extend_from_slice(&[0xAB; 100]);
    std::fs::write(&copy, &tail).unwrap();
    expect(&["dump", s(&copy), "--verify"], 1);

    // Index entries that go backwards, and one past the end of the sibling .log.
    let index = tmp.path().join("00000000000000000000.index");
    let mut entries = Vec::new();
    for (rel, pos) in [(10i32, 100i32), (5, 50), (20, 100_000_000)] {
        entries.extend_from_slice(&rel.to_be_bytes());
        entries.extend_from_slice(&pos.to_be_bytes());
    }
    std::fs::write(&index, &entries).unwrap();
    let lines = expect(&["dump", s(&index), "--verify", "--json"], 1);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("\"valid\":false"))
            .count(),
        3
    );

    // Entries past the largest offset, from the largest base a file name may give: each
    // reported invalid (the sum overflowed, and debug builds panicked).
    let (mut index, mut time) = (Vec::new(), Vec::new());
    for rel in [1i32, 2] {
        index.extend_from_slice(&rel.to_be_bytes());
        index.extend_from_slice(&(rel * 10).to_be_bytes());
        time.extend_from_slice(&i64::from(rel).to_be_bytes());
        time.extend_from_slice(&rel.to_be_bytes());
    }
    for (suffix, entries) in [(".index", index), (".timeindex", time)] {
        let file = tmp.path().join(format!("{:020}{suffix}", i64::MAX));
        std::fs::write(&file, &entries).unwrap();
        let lines = expect(&["dump", s(&file), "--verify", "--json"], 1);
        let past =
            (lines.iter()).filter(|l| l.contains("\"reason\":\"offset past the largest offset"));
        assert_eq!(past.count(), 2, "{suffix}: {lines:?}");
    }

    // Garbage that is no known file.
    let junk = tmp.path().join("junk");
    std::fs::write(&junk, [0xFFu8; 64]).unwrap();
    expect(&["dump", s(&junk)], 2);
}

#[test]
fn check_cuts_a_corrupt_tail_and_reports_it() {
    let tmp = tempfile::tempdir().unwrap();
    produce(tmp.path(), 300, 50);
    let log = segment(tmp.path(), ".log");
    let mut bytes = std::fs::read(&log).unwrap();
    let valid = bytes.len();
    bytes.extend_from_slice(&[0x5A; 333]);
    std::fs::write(&log, &bytes).unwrap();
    // An unclean shutdown: recovery scans the tail.
    std::fs::remove_file(tmp.path().join(".kafka_cleanshutdown")).unwrap();
    std::fs::remove_file(tmp.path().join("recovery-point-offset-checkpoint")).unwrap();

    // A dry run reports the cut, exits 1, and changes nothing: not a byte, not a file.
    let before = dir_snapshot(tmp.path());
    let lines = expect(&["check", s(tmp.path()), "--json", "--dry-run"], 1);
    let line = &lines[0];
    assert_eq!(int(line, "log_end_offset"), 300, "{line}");
    assert_eq!(int(line, "truncated_bytes"), 333, "{line}");
    assert_eq!(dir_snapshot(tmp.path()), before);
    let text = expect(&["check", s(tmp.path()), "--dry-run"], 1);
    assert!(
        text.last().unwrap().contains("would have data cut"),
        "{text:?}"
    );
    assert_eq!(dir_snapshot(tmp.path()), before);

    let lines = expect(&["check", s(tmp.path()), "--json"], 1);
    let line = &lines[0];
    assert_eq!(int(line, "log_end_offset"), 300, "{line}");
    assert_eq!(int(line, "truncated_bytes"), 333, "{line}");
    assert!(line.contains("\"damage\":{\"kind\":"), "{line}");
    assert_eq!(std::fs::metadata(&log).unwrap().len(), valid as u64);
    // The next check finds a clean dir.
    let lines = expect(&["check", s(tmp.path()), "--json"], 0);
    assert_eq!(int(&lines[0], "truncated_bytes"), 0);
}

/// `check` opened every partition as a log that only deletes: after an unclean shutdown
/// with no recovery point, recovery scanned a cleaned (compacted) partition from its start
/// and took the cleaner's first offset gap for damage, cutting everything after it.
/// `--compacted TOPIC` (and `__consumer_offsets`, always) lets its offsets have gaps.
#[test]
fn check_lets_a_compacted_topic_have_offset_gaps() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("logs");
    compacted_topic(&dir);
    expect(&["clean", "--dir", s(&dir), "--topic", "prices"], 0);
    // An unclean shutdown with no recovery point: recovery scans from the start.
    let unclean = || {
        std::fs::remove_file(dir.join(".kafka_cleanshutdown")).unwrap();
        std::fs::remove_file(dir.join("recovery-point-offset-checkpoint")).unwrap();
    };
    unclean();
    let segments = || -> Vec<(PathBuf, Vec<u8>)> {
        let mut logs: Vec<_> = dir_snapshot(&dir)
            .into_iter()
            .filter(|(p, _)| p.extension().is_some_and(|e| e == "log"))
            .collect();
        logs.sort();
        logs
    };
    let before = segments();
    // partlog marked the partition as one with gaps when it first opened it compacted:
    // `check` needs no name for it.
    let marker = dir.join("prices-0").join(partlog::log::GAPS_FILE_NAME);
    assert!(marker.exists());
    let lines = expect(&["check", s(&dir), "--json"], 0);
    assert_eq!(int(&lines[0], "truncated_bytes"), 0, "{lines:?}");
    // Without the mark and the `.lock`, as in a dir Kafka wrote, the gaps read as damage
    // unless the topic is named. (A dir partlog opened before and finds unmarked never
    // had a gap: recovery goes by the mark.)
    std::fs::remove_file(&marker).unwrap();
    std::fs::remove_file(dir.join("prices-0").join(".lock")).unwrap();
    unclean();
    let lines = expect(&["check", s(&dir), "--json", "--dry-run"], 1);
    assert!(lines[0].contains("\"damage\":{"), "{lines:?}");
    // A misspelt name is refused before any log opens: it used to be taken silently, and
    // the gaps read as damage and were cut.
    expect(&["check", s(&dir), "--json", "--compacted", "price"], 2);
    assert_eq!(segments(), before, "nothing cut");
    let lines = expect(&["check", s(&dir), "--json", "--compacted", "prices"], 0);
    assert_eq!(int(&lines[0], "truncated_bytes"), 0, "{lines:?}");
    assert_eq!(segments(), before, "every segment as it was");
}

/// Kafka always compacts its transaction coordinator's `__transaction_state`, as it does
/// `__consumer_offsets`: `check` opens it compacted without being told, and the cleaner's
/// offset gaps in a dir Kafka wrote (no partlog mark) are not taken for damage. Only
/// `__consumer_offsets` was, and a check after an unclean shutdown cut the transaction
/// state at its first gap.
#[test]
fn check_takes_the_transaction_state_topic_as_compacted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("logs");
    compacted_topic_named(&dir, "__transaction_state");
    expect(
        &["clean", "--dir", s(&dir), "--topic", "__transaction_state"],
        0,
    );
    let partition = dir.join("__transaction_state-0");
    std::fs::remove_file(partition.join(partlog::log::GAPS_FILE_NAME)).unwrap();
    std::fs::remove_file(partition.join(".lock")).unwrap();
    std::fs::remove_file(dir.join(".kafka_cleanshutdown")).unwrap();
    std::fs::remove_file(dir.join("recovery-point-offset-checkpoint")).unwrap();
    let before = dir_snapshot(&partition);
    let lines = expect(&["check", s(&dir), "--json"], 0);
    assert_eq!(int(&lines[0], "truncated_bytes"), 0, "{lines:?}");
    let logs = |snapshot: Vec<(PathBuf, Vec<u8>)>| -> Vec<(PathBuf, Vec<u8>)> {
        let is_log = |p: &PathBuf| p.extension().is_some_and(|e| e == "log");
        snapshot.into_iter().filter(|(p, _)| is_log(p)).collect()
    };
    assert_eq!(logs(dir_snapshot(&partition)), logs(before), "nothing cut");
}

/// A warning line of `check --json` is typed as the other lines are: it used to have no
/// `type`, and a reader that goes by it met an unknown line.
#[test]
fn check_types_its_warning_lines() {
    let tmp = tempfile::tempdir().unwrap();
    produce(tmp.path(), 10, 10);
    // A checkpoint a crash left half written, which the open removes and reports.
    std::fs::write(
        tmp.path().join("recovery-point-offset-checkpoint.tmp"),
        "0\n",
    )
    .unwrap();
    let lines = expect(&["check", s(tmp.path()), "--json"], 0);
    let warning = lines.iter().find(|l| l.contains("unfinished")).unwrap();
    assert_eq!(
        field(warning, "type").as_deref(),
        Some("warning"),
        "{warning}"
    );
}

/// A Kafka dir's KRaft metadata log is not a partition of the dir (the Raft layer's, as
/// in Kafka's `LogManager`): `check` leaves it alone, files and all, and says so.
#[test]
fn check_names_the_metadata_log_it_leaves_alone() {
    let tmp = tempfile::tempdir().unwrap();
    produce(tmp.path(), 10, 10);
    let meta = tmp.path().join("__cluster_metadata-0");
    std::fs::create_dir(&meta).unwrap();
    std::fs::write(meta.join("00000000000000000000.log"), b"not a batch").unwrap();
    let lines = expect(&["check", s(tmp.path()), "--json"], 0);
    let note = lines
        .iter()
        .find(|l| l.contains("__cluster_metadata-0"))
        .unwrap();
    assert_eq!(field(note, "type").as_deref(), Some("warning"), "{note}");
    assert!(note.contains("not checked"), "{note}");
    assert!(lines
        .iter()
        .any(|l| field(l, "partition").as_deref() == Some("orders-0")));
    let names: Vec<_> = std::fs::read_dir(&meta)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["00000000000000000000.log"], "its files untouched");
}

/// A replica that Kafka was moving into the dir (`-future`) is a log to Kafka, recovered
/// or vouched for by the clean-shutdown marker, but no partition `check` opens: `check`
/// says so, and writes no marker while it is there (Kafka would trust its tail).
#[test]
fn check_names_a_future_replica_it_leaves_alone_and_writes_no_marker() {
    let tmp = tempfile::tempdir().unwrap();
    produce(tmp.path(), 10, 10);
    let future = "orders-0.9f1c2e7a4b6d4e0f8a1b2c3d4e5f6071-future";
    std::fs::create_dir(tmp.path().join(future)).unwrap();
    let _ = std::fs::remove_file(tmp.path().join(".kafka_cleanshutdown"));
    let lines = expect(&["check", s(tmp.path()), "--json"], 0);
    let note = lines.iter().find(|l| l.contains(future)).unwrap();
    assert_eq!(field(note, "type").as_deref(), Some("warning"), "{note}");
    assert!(note.contains("not checked"), "{note}");
    assert!(!tmp.path().join(".kafka_cleanshutdown").exists());
}

#[test]
fn check_exits_non_zero_when_a_partition_cannot_be_opened() {
    let tmp = tempfile::tempdir().unwrap();
    produce(tmp.path(), 10, 10);
    let bad = tmp.path().join("broken-0");
    std::fs::create_dir_all(bad.join("00000000000000000000.log")).unwrap();

    let lines = expect(&["check", s(tmp.path()), "--json"], 2);
    let broken = lines.iter().find(|l| l.contains("broken-0")).unwrap();
    assert!(field(broken, "error").is_some(), "{broken}");
    assert_eq!(field(broken, "type").as_deref(), Some("error"));
    let good = lines.iter().find(|l| l.contains("orders-0")).unwrap();
    assert_eq!(int(good, "log_end_offset"), 10);
    assert_eq!(field(good, "type").as_deref(), Some("partition"));
    // The error on stderr too, as every error's.
    let out = partlog(&["check", s(tmp.path())]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken-0: cannot open"), "{stderr}");
    let text = expect(&["check", s(tmp.path())], 2);
    assert!(
        text.iter().any(|l| l.starts_with("broken-0: cannot open")),
        "{text:?}"
    );

    // A missing dir is an error, not a new empty dir.
    let missing = tmp.path().join("missing");
    expect(&["check", s(&missing)], 2);
    assert!(!missing.exists());
}

#[test]
fn dump_kafka_fixture_lists_its_batches() {
    let lines = expect(
        &["dump", KAFKA_FIXTURE, "--json", "--verify", "--records"],
        0,
    );
    let batches: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("\"type\":\"batch\""))
        .collect();
    let got: Vec<_> = batches
        .iter()
        .map(|b| {
            let base = int(b, "base_offset");
            (
                base,
                int(b, "last_offset") - base,
                int(b, "count"),
                int(b, "epoch"),
            )
        })
        .collect();
    // From the fixture's README: (base offset, last offset delta, records, leader epoch).
    assert_eq!(got, vec![(0, 0, 1, 1), (1, 2, 3, 1)]);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("\"type\":\"record\""))
            .count(),
        4
    );
    assert_eq!(int(lines.last().unwrap(), "bytes"), 331);
}

#[test]
fn bench_reports_its_error_on_one_line() {
    // A data dir under a regular file cannot be created: the bench must fail cleanly.
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let dir = file.join("bench");
    let out = partlog(&["bench", "--quick", "--dir", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("partlog: error: "), "{err}");
}

#[test]
fn demo_single_two_rounds_json() {
    let lines = expect(
        &[
            "demo", "--single", "--rounds", "2", "--json", "--seed", "42",
        ],
        0,
    );
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert_eq!(field(&lines[0], "type").as_deref(), Some("start"));
    assert_eq!(
        field(&lines[3], "type").as_deref(),
        Some("power_loss_round")
    );
    for round in &lines[1..4] {
        assert_eq!(field(round, "ok").as_deref(), Some("true"), "{round}");
        assert!(
            int(round, "recovered_end") >= int(round, "last_flushed"),
            "{round}"
        );
    }
    assert_eq!(field(&lines[4], "ok").as_deref(), Some("true"));
    let dir = field(&lines[0], "dir").unwrap();
    assert!(!Path::new(&dir).exists(), "temp dir {dir} not removed");
}

/// `demo --single --dir D` runs only in an empty dir or one a run before left: a broker's
/// log dir (another partition in it) is refused before anything is written. It used to
/// write its partition and checkpoints into any dir, and take a Kafka dir's
/// clean-shutdown marker.
#[test]
fn demo_single_refuses_a_dir_that_is_not_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    produce(tmp.path(), 10, 1);
    let before = dir_snapshot(tmp.path());
    let args = ["demo", "--single", "--rounds", "1", "--dir", s(tmp.path())];
    let out = partlog(&args);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("holds the partition"), "{err}");
    assert_eq!(dir_snapshot(tmp.path()), before, "nothing written");
}

/// `demo --single --dir D` runs again in the dir a run before left (its rounds stamped
/// epochs 1 and 2): this run's rounds lead the epochs after those. They used to start at
/// epoch 1 again, which the log fenced, and the run failed.
#[test]
fn demo_single_runs_again_in_the_dir_a_run_before_left() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let args = [
        "demo",
        "--single",
        "--rounds",
        "2",
        "--json",
        "--seed",
        "7",
        "--dir",
        s(&dir),
    ];
    for run in 0..2 {
        let lines = expect(&args, 0);
        let summary = lines.last().unwrap();
        assert_eq!(
            field(summary, "ok").as_deref(),
            Some("true"),
            "run {run}: {lines:?}"
        );
    }
}

/// The single-log demo's flags need `--single`, and the failover story's `--records`
/// refuses it: a flag the chosen story does not read was ignored, and the run said ok.
#[test]
fn demo_flags_of_the_other_story_are_refused() {
    for args in [
        &["demo", "--rounds", "5"][..],
        &["demo", "--keep"],
        &["demo", "--dir", "/nonexistent/partlog-demo"],
        &["demo", "--single", "--records", "100"],
    ] {
        let out = partlog(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

/// The failover story: the leader is killed mid-stream, an in-sync follower takes over,
/// the dead broker comes back and rejoins; nothing acknowledged is lost or doubled.
#[test]
fn demo_failover_json_summary() {
    for seed in ["1", "42"] {
        let lines = expect(&["demo", "--json", "--seed", seed, "--records", "3000"], 0);
        let summary = lines.last().unwrap();
        assert_eq!(field(summary, "type").as_deref(), Some("summary"));
        assert_eq!(int(summary, "lost_records"), 0, "{summary}");
        assert_eq!(int(summary, "duplicate_records"), 0, "{summary}");
        assert!(int(summary, "leader_changes") >= 1, "{summary}");
        let acked = int(summary, "acked_records");
        assert!(acked > 2000, "{summary}");
        assert!(int(summary, "final_high_watermark") >= acked, "{summary}");
        assert!(summary.contains(r#""final_isr":[0,1,2]"#), "{summary}");
        assert!(
            summary.contains(r#""replicas_identical_below_hw":true"#),
            "{summary}"
        );
        assert!(
            lines.iter().any(|l| l.contains("truncates")),
            "the restarted broker truncates what it alone had: {lines:?}"
        );
        // The consumer group resumes from its last acknowledged commit, skipping nothing
        // and re-processing at most the records since that commit.
        assert_eq!(int(summary, "skipped_records"), 0, "{summary}");
        let committed = int(summary, "group_committed_offset");
        let resumed = int(summary, "group_resumed_from");
        assert!(committed > 0 && resumed >= committed, "{summary}");
        assert!(int(summary, "reprocessed_records") < 1000, "{summary}");
    }
}

/// A user's first mistakes: a topic name Kafka refuses (a space broke the checkpoint
/// lines), and a mistyped `--dir`. Both are refused with one clear line and write nothing.
#[test]
fn produce_refuses_bad_topics_and_missing_dirs_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("logs");
    let run_with = |dir: &Path, topic: &str, create: bool, record_bytes: &str| {
        let mut args = vec![
            "produce",
            "--dir",
            s(dir),
            "--topic",
            topic,
            "--partition",
            "0",
            "--records",
            "3",
            "--record-bytes",
            record_bytes,
        ];
        if create {
            args.push("--create");
        }
        partlog(&args)
    };
    let run = |dir: &Path, topic: &str, create: bool| run_with(dir, topic, create, "10");
    let out = run(&dir, "orders", false);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does not exist") && err.contains("--create"),
        "{err}"
    );
    assert!(!dir.exists());

    let long = "x".repeat(250);
    for topic in ["has space", "..", "a/b", long.as_str(), ""] {
        let out = run(&dir, topic, true);
        assert_eq!(out.status.code(), Some(2), "{topic:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("invalid topic name"), "{topic:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!dir.exists(), "{topic:?} created the dir");
    }
    // Record sizes that cannot fit a batch, up to one whose length overflowed: refused
    // before the dir is made (the check came after, and the largest one panicked).
    for bytes in ["2000000", &usize::MAX.to_string()] {
        let out = run_with(&dir, "orders", true, bytes);
        assert_eq!(out.status.code(), Some(2), "{bytes}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("does not fit in a batch"), "{bytes}: {err}");
        assert!(!dir.exists(), "{bytes} created the dir");
    }
    let out = run(&dir, "orders.v2_x-1", true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A partition dir named with --create is refused as without it, and nothing is
    // written into it: --create used to skip the check of a dir that exists.
    let partition = dir.join("orders.v2_x-1-0");
    let before = dir_snapshot(&partition);
    let out = run(&partition, "orders", true);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a log dir"), "{err}");
    assert_eq!(dir_snapshot(&partition), before);
}

/// A Kafka-written partition has batches of a leader epoch above 0; produce and append
/// used epoch 0 and were fenced. They now default to the log's latest epoch.
#[test]
fn produce_and_append_default_to_the_logs_latest_epoch() {
    use partlog::checkpoint::TopicPartition;
    use partlog::manager::{LogDir, LogDirOptions};
    let tmp = tempfile::tempdir().unwrap();
    let storage = partlog::io::real::RealStorage::shared();
    let log_dir = LogDir::open(storage, tmp.path(), LogDirOptions::default()).unwrap();
    let (log, _) = log_dir.open_log(&TopicPartition::new("orders", 0)).unwrap();
    log.append_as_leader(&mut three_batches(), 7).unwrap();
    drop(log);
    log_dir.close().unwrap();

    let lines = expect(
        &[
            "produce",
            "--dir",
            s(tmp.path()),
            "--topic",
            "orders",
            "--partition",
            "0",
            "--records",
            "4",
            "--record-bytes",
            "10",
            "--json",
        ],
        0,
    );
    assert_eq!(int(&lines[0], "first_offset"), 6);
    let input = tmp.path().join("batches.bin");
    std::fs::write(&input, three_batches()).unwrap();
    let lines = append_batches(tmp.path(), &input);
    assert_eq!(int(&lines[0], "first_offset"), 10);
    // The old timestamps of `three_batches` make the log roll: dump every segment.
    let mut epochs = Vec::new();
    let mut logs: Vec<PathBuf> = std::fs::read_dir(tmp.path().join("orders-0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    for log in logs {
        let dump = expect(&["dump", s(&log), "--json"], 0);
        epochs.extend(
            dump.iter()
                .filter(|l| l.contains("\"type\":\"batch\""))
                .map(|l| int(l, "epoch")),
        );
    }
    assert_eq!(epochs.len(), 3 + 1 + 3);
    assert!(epochs.iter().all(|&e| e == 7), "{epochs:?}");
    // An explicit lower epoch is still fenced.
    let out = partlog(&[
        "append",
        "--dir",
        s(tmp.path()),
        "--topic",
        "orders",
        "--partition",
        "0",
        "--batches",
        s(&input),
        "--leader-epoch",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(2));
    // Refused input leaves the dir as it was, shut down cleanly: the open took the
    // clean-shutdown marker away, and the error left without putting it back.
    assert!(tmp.path().join(".kafka_cleanshutdown").exists());
}

/// `dump` parsed any unknown file as a checkpoint; it now names the kinds it reads, and
/// a checkpoint that does not parse is an invalid file (`--verify` exits 1), not a crash
/// of the tool (exit 2).
#[test]
fn dump_names_unknown_kinds_and_verify_fails_on_a_bad_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let unknown = tmp.path().join("notes.txt");
    std::fs::write(&unknown, "0\n1\nx 0 1\n").unwrap();
    let out = partlog(&["dump", s(&unknown)]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown file kind") && err.contains(".timeindex"),
        "{err}"
    );
    let snapshot = tmp.path().join("00000000000000000000.snapshot");
    std::fs::write(&snapshot, [0u8; 8]).unwrap();
    let out = partlog(&["dump", s(&snapshot)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("producer-state snapshot"));

    let checkpoint = tmp.path().join("recovery-point-offset-checkpoint");
    std::fs::write(&checkpoint, "0\n2\norders 0 5\n").unwrap();
    let lines = expect(&["dump", s(&checkpoint), "--verify", "--json"], 1);
    let summary = lines.last().unwrap();
    assert_eq!(
        field(summary, "valid").as_deref(),
        Some("false"),
        "{summary}"
    );
    expect(&["dump", s(&checkpoint)], 0);
    std::fs::write(&checkpoint, "0\n1\norders 0 5\n").unwrap();
    expect(&["dump", s(&checkpoint), "--verify"], 0);
}

/// `dump --offsets-decoder` prints each record of an offsets log as what it says: an
/// offset commit with its value, a tombstone, group metadata, a record type it does not
/// decode, and a key that does not decode, in text and in JSON.
#[test]
fn dump_decodes_consumer_offsets_records() {
    use partlog::offsets::codec::{
        encode_group_metadata_key, encode_offset_commit_key, encode_offset_commit_value,
        OffsetCommitValue,
    };
    let tmp = tempfile::tempdir().unwrap();
    let key = |topic: &str, partition: i32| {
        let mut out = Vec::new();
        encode_offset_commit_key("group-1", topic, partition, &mut out);
        out
    };
    let mut value = Vec::new();
    let commit = OffsetCommitValue {
        offset: 42,
        leader_epoch: 3,
        metadata: "m".into(),
        commit_timestamp: 1_000,
        expire_timestamp: -1,
    };
    encode_offset_commit_value(&commit, &mut value);
    let mut group_key = Vec::new();
    encode_group_metadata_key("group-1", &mut group_key);
    let mut builder = BatchBuilder::new();
    builder.append(1_000, Some(&key("orders", 0)), Some(&value), &[]);
    builder.append(1_000, Some(&key("orders", 1)), None, &[]);
    builder.append(1_000, Some(&group_key), Some(&[0, 3, 0, 0]), &[]);
    builder.append(1_000, Some(&[0, 12, 0, 0]), Some(&[0, 0]), &[]);
    builder.append(1_000, Some(&[0]), Some(&value), &[]);
    let log = tmp.path().join("00000000000000000000.log");
    std::fs::write(&log, builder.build().unwrap()).unwrap();

    let text = expect(&["dump", s(&log), "--offsets-decoder", "--verify"], 0);
    let records: Vec<_> = text.iter().filter(|l| l.starts_with("| offset:")).collect();
    assert_eq!(records.len(), 5, "{text:?}");
    let endings = [
        "key: offset_commit group=\"group-1\" topic=\"orders\" partition=0 payload: \
         offset=42 leaderEpoch=3 metadata=\"m\" commitTimestamp=1000",
        "partition=1 payload: <DELETE>",
        "key: group_metadata group=\"group-1\" payload: <group metadata of 4 bytes, not decoded>",
        "key: <record type 12, not decoded>",
    ];
    for (record, ending) in records.iter().zip(endings) {
        assert!(
            record.ends_with(ending),
            "{record}\nshould end with {ending}"
        );
    }
    assert!(records[4].contains("key: <undecodable: "), "{}", records[4]);

    let json = expect(&["dump", s(&log), "--offsets-decoder", "--json"], 0);
    let records: Vec<_> = json
        .iter()
        .filter(|l| l.contains("\"type\":\"record\""))
        .collect();
    assert_eq!(records.len(), 5, "{json:?}");
    let kind = |l: &str| field(l, "offsets_record").unwrap_or_default();
    assert_eq!(kind(records[0]), "offset_commit");
    assert_eq!(field(records[0], "group").as_deref(), Some("group-1"));
    assert_eq!(field(records[0], "topic").as_deref(), Some("orders"));
    assert_eq!(int(records[0], "offset"), 0, "the record's offset");
    assert_eq!(int(records[0], "committed_offset"), 42);
    assert_eq!(int(records[0], "leader_epoch"), 3);
    assert_eq!(field(records[0], "metadata").as_deref(), Some("m"));
    assert_eq!(int(records[0], "commit_timestamp"), 1_000);
    assert_eq!(field(records[1], "tombstone").as_deref(), Some("true"));
    assert_eq!(int(records[1], "partition"), 1);
    assert_eq!(kind(records[2]), "group_metadata");
    assert_eq!(kind(records[3]), "not_decoded");
    assert_eq!(int(records[3], "record_type"), 12);
    assert_eq!(kind(records[4]), "undecodable");
    assert!(field(records[4], "error").is_some());
}

/// `transactions --abort` refuses a transaction whose producer wrote to it within the
/// transaction timeout (it may still commit it), appending nothing, unless `--force`.
#[test]
fn transactions_abort_refuses_one_that_may_still_be_live() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("logs");
    let input = tmp.path().join("batches.bin");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut b = BatchBuilder::new();
    b.transactional(true).producer(11, 2, 0);
    b.append(now, Some(b"k"), Some(b"v"), &[]);
    std::fs::write(&input, b.build().unwrap()).unwrap();
    let (d, f) = (s(&dir), s(&input));
    let partition = ["--topic", "orders", "--partition", "0"];
    let args = |extra: &[&'static str]| -> Vec<&str> {
        let mut args = vec!["transactions", "--dir", d];
        args.extend(partition);
        args.extend(extra);
        args
    };
    let mut append = vec!["append", "--dir", d, "--create", "--batches", f];
    append.extend(partition);
    expect(&append, 0);

    let lines = expect(&args(&["--json"]), 0);
    assert_eq!(field(&lines[0], "hanging").as_deref(), Some("false"));
    assert_eq!(int(&lines[0], "last_timestamp_ms"), now);
    let before = dir_snapshot(&dir);
    let out = partlog(&args(&["--abort", "11"]));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("may still end it") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(dir_snapshot(&dir), before, "nothing appended");
    // A longer timeout does not make it hang; a timeout of none, which would make every
    // open transaction hang, is refused; --force aborts it.
    let out = partlog(&args(&["--abort", "11", "--max-transaction-timeout", "60"]));
    assert_eq!(out.status.code(), Some(2));
    let out = partlog(&args(&["--abort", "11", "--max-transaction-timeout", "0"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("max-transaction-timeout"));
    assert_eq!(dir_snapshot(&dir), before, "nothing appended");
    let lines = expect(&args(&["--abort", "11", "--force", "--json"]), 0);
    assert_eq!(
        field(lines.last().unwrap(), "type").as_deref(),
        Some("aborted")
    );
    assert_eq!(expect(&args(&[]), 0).len(), 1, "none open");
    // --force without --abort is refused by the argument parser.
    assert_eq!(partlog(&args(&["--force"])).status.code(), Some(2));
}

/// `transactions` lists the transactions no marker ended, refuses to abort a producer
/// without one (appending nothing), and `--abort` ends one with an ABORT marker that a
/// second listing no longer finds and that reads back as Kafka's marker.
#[test]
fn transactions_lists_open_ones_and_aborts_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("logs");
    let input = tmp.path().join("batches.bin");
    let mut bytes = Vec::new();
    let mut batch = |producer: Option<(i64, i16)>, key: &str| {
        let mut b = BatchBuilder::new();
        if let Some((id, epoch)) = producer {
            b.transactional(true).producer(id, epoch, 0);
        }
        b.append(1_000, Some(key.as_bytes()), Some(b"v"), &[]);
        bytes.extend(b.build().unwrap());
    };
    batch(None, "plain");
    batch(Some((7, 1)), "committed");
    batch(Some((9, 3)), "hanging-1");
    batch(Some((9, 3)), "hanging-2");
    bytes.extend(BatchBuilder::transaction_marker(7, 1, true, 2, 1_000).unwrap());
    std::fs::write(&input, &bytes).unwrap();
    let partition = ["--topic", "orders", "--partition", "0"];
    let with = |extra: &[&'static str]| -> Vec<String> {
        let mut args = vec!["transactions", "--dir", s(&dir)];
        args.extend(partition);
        args.extend(extra);
        args.iter().map(|a| a.to_string()).collect()
    };
    let run = |args: Vec<String>, code| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        expect(&args, code)
    };

    let mut append = vec![
        "append",
        "--dir",
        s(&dir),
        "--create",
        "--batches",
        s(&input),
    ];
    append.extend(partition);
    // The marker is a coordinator's to write: as a client's, the whole input is refused.
    expect(&append, 2);
    append.push("--coordinator");
    expect(&append, 0);

    let lines = run(with(&["--json"]), 0);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let open = &lines[0];
    assert_eq!(field(open, "type").as_deref(), Some("open_transaction"));
    assert_eq!(int(open, "producer_id"), 9);
    assert_eq!(int(open, "producer_epoch"), 3);
    assert_eq!(
        (int(open, "first_offset"), int(open, "last_offset")),
        (2, 3)
    );
    assert_eq!(int(open, "batches"), 2);
    assert_eq!(int(open, "last_timestamp_ms"), 1_000);
    assert_eq!(field(open, "hanging").as_deref(), Some("true"), "{open}");
    assert_eq!(int(&lines[1], "open"), 1);

    let before = dir_snapshot(&dir);
    let mut other = vec!["transactions", "--dir", s(&dir), "--topic", "orders"];
    other.extend(["--partition", "1"]);
    let out = partlog(&other);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has no partition orders-1"), "{err}");
    assert_eq!(dir_snapshot(&dir), before, "nothing created");
    let out = partlog(
        &with(&["--abort", "7"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("producer 7 has no open transaction"), "{err}");
    assert_eq!(dir_snapshot(&dir), before, "nothing appended");

    let lines = run(with(&["--abort", "9", "--json"]), 0);
    let aborted = lines.last().unwrap();
    assert_eq!(field(aborted, "type").as_deref(), Some("aborted"));
    assert_eq!(int(aborted, "marker_offset"), 5);
    let lines = run(with(&[]), 0);
    assert_eq!(lines, vec!["0 open transactions in orders-0".to_string()]);

    // The marker may be in a segment of its own: the batches above carry timestamps of
    // 1970, and the log rolls by time.
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("orders-0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    let log = std::fs::read(files.last().unwrap()).unwrap();
    let marker = partlog::record::batches(&log)
        .map(|b| b.unwrap())
        .find(|b| b.header().base_offset == 5)
        .unwrap_or_else(|| panic!("no batch at offset 5 in {files:?}"));
    assert_eq!(marker.marker_commits(), Some(false), "an ABORT marker");
    let h = marker.header();
    assert_eq!((h.producer_id, h.producer_epoch), (9, 3));
    // Kafka's aborted-transaction entry for it, in the marker's segment's index: version
    // 0, producer 9, its first offset 2, the marker at 5, and the last stable offset 6
    // (no other transaction open). A Kafka broker taking the dir back trusts that index.
    let index = files.last().unwrap().with_extension("txnindex");
    let entry = common::aborted_txn_entry(9, 2, 5, 6);
    assert_eq!(std::fs::read(&index).unwrap(), entry, "{index:?}");

    // `dump --records` shows the markers as kafka-dump-log does.
    let markers: Vec<(String, i64)> = files
        .iter()
        .flat_map(|f| expect(&["dump", s(f), "--records", "--json"], 0))
        .filter_map(|l| Some((field(&l, "end_txn_marker")?, int(&l, "coordinator_epoch"))))
        .collect();
    let expected = [("COMMIT", 2), ("ABORT", 0)].map(|(m, e)| (m.to_string(), e));
    assert_eq!(markers, expected);
    let text = expect(&["dump", s(files.last().unwrap()), "--records"], 0);
    assert!(
        text.iter()
            .any(|l| l.ends_with("endTxnMarker: ABORT coordinatorEpoch: 0")),
        "{text:?}"
    );
    let batches = expect(&["dump", s(files.last().unwrap()), "--json"], 0);
    let abort = batches.iter().find(|l| int(l, "base_offset") == 5);
    assert_eq!(abort.map(|l| int(l, "producer_epoch")), Some(3));
}

/// `offsets` loads each partition as the leader of the epoch after its latest: a latest
/// epoch of `i32::MAX` (the field is outside the batch CRC) has none after it, and is a
/// clear error. The increment overflowed: a panic in a debug build, a confusing fenced
/// epoch in a release one.
#[test]
fn offsets_refuses_a_partition_at_the_last_leader_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("logs");
    let input = tmp.path().join("batch.bin");
    let mut b = BatchBuilder::new();
    b.append(1_000, Some(b"key"), Some(b"value"), &[]);
    std::fs::write(&input, b.build().unwrap()).unwrap();
    let max = i32::MAX.to_string();
    expect(
        &[
            "append",
            "--dir",
            s(&dir),
            "--topic",
            "__consumer_offsets",
            "--partition",
            "0",
            "--create",
            "--batches",
            s(&input),
            "--leader-epoch",
            &max,
        ],
        0,
    );
    let out = partlog(&["offsets", "--dir", s(&dir)]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no epoch above it"), "{err}");
}

/// Commits of a few groups to partitions 0 and 1 of `__consumer_offsets` in `dir`, one
/// group deleted, the log dir closed as a broker closes it. With `churn`, that many
/// earlier commits of the same partitions come first, in 4 KiB segments: a log for the
/// cleaner.
fn commit_offsets(dir: &Path, churn: i64) {
    use partlog::checkpoint::TopicPartition;
    use partlog::manager::{LogDir, LogDirOptions};
    use partlog::offsets::{offsets_log_config, OffsetCommit, OffsetsConfig, OffsetsStore};
    use partlog::replica::{Acks, ReplicaConfig, ReplicaManager};

    let storage = partlog::io::real::RealStorage::shared();
    let clock: std::sync::Arc<dyn partlog::Clock> = std::sync::Arc::new(partlog::SystemClock);
    let log_config = partlog::LogConfig {
        segment_bytes: if churn > 0 { 4096 } else { 100 << 20 },
        ..offsets_log_config()
    };
    let options = LogDirOptions {
        config: log_config.clone(),
        clock: clock.clone(),
    };
    let manager = ReplicaManager::new(LogDir::open(storage, dir, options).unwrap(), clock.clone());
    let config = OffsetsConfig {
        partitions: 2,
        acks: Acks::Leader,
        ..OffsetsConfig::default()
    };
    let store = OffsetsStore::new(config, clock);
    for index in 0..2 {
        let tp = TopicPartition::new("__consumer_offsets", index);
        let (replica, _) = manager
            .open_partition(&tp, log_config.clone(), ReplicaConfig::new(0))
            .unwrap();
        // Partition 1 at a later epoch than the one a fresh replica would start at.
        let epoch = if index == 1 { 5 } else { 1 };
        replica.become_leader(epoch, vec![0], vec![0]).unwrap();
        store.host(index as u32, replica);
        store.become_leader(index as u32).unwrap();
        store.load(index as u32).unwrap();
    }
    let commit = |group: &str, topic: &str, partition: i32, offset: i64, metadata: &str| {
        let offsets = [OffsetCommit {
            topic: topic.into(),
            partition,
            offset,
            leader_epoch: 3,
            metadata: metadata.into(),
        }];
        store.commit(group, &offsets).unwrap();
    };
    // Groups spread over both partitions ("billing" and "analytics" map to different ones).
    assert_ne!(
        store.partition_for("billing"),
        store.partition_for("analytics")
    );
    for i in 0..churn {
        commit("billing", "orders", (i % 2) as i32, i, "");
        commit("analytics", "payments", 2, i, "");
    }
    commit("billing", "orders", 0, 10, "");
    commit("billing", "orders", 1, 7, "host-a");
    commit("billing", "orders", 0, 42, "");
    commit("analytics", "payments", 2, 5, "");
    commit("gone", "orders", 0, 1, "");
    // The embedder's coordinator knows the group has no members.
    store.set_group_active("gone", false);
    store.delete_group("gone").unwrap();
    drop(store);
    manager.close().unwrap();
}

/// `offsets` lists each group's latest committed offsets from the log dir alone, without
/// a deleted group's, filters by group and partition, refuses a dir without offsets
/// partitions, and leaves every byte of the dir as it was.
#[test]
fn offsets_lists_the_committed_offsets_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("logs");
    commit_offsets(&dir, 0);
    let before = dir_snapshot(&dir);

    let lines = expect(&["offsets", "--dir", s(&dir), "--json"], 0);
    let offsets: Vec<(String, String, i64, i64, String)> = lines
        .iter()
        .filter(|l| field(l, "type").as_deref() == Some("offset"))
        .map(|l| {
            (
                field(l, "group").unwrap(),
                field(l, "topic").unwrap(),
                int(l, "partition"),
                int(l, "committed_offset"),
                field(l, "metadata").unwrap(),
            )
        })
        .collect();
    let mut expected = vec![
        (
            "analytics".to_string(),
            "payments".to_string(),
            2,
            5,
            String::new(),
        ),
        ("billing".into(), "orders".into(), 0, 42, String::new()),
        ("billing".into(), "orders".into(), 1, 7, "host-a".into()),
    ];
    let mut got = offsets.clone();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "{lines:?}");
    let partitions: Vec<&String> = lines
        .iter()
        .filter(|l| field(l, "type").as_deref() == Some("partition"))
        .collect();
    assert_eq!(partitions.len(), 2, "{lines:?}");
    for p in &partitions {
        assert_eq!(int(p, "skipped_records"), 0);
        assert!(int(p, "log_end_offset") > 0, "{p}");
        // Always there, as the README lists it (`null` without a checkpoint).
        assert!(p.contains(r#""checkpointed_high_watermark":"#), "{p}");
    }
    let summary = lines.last().unwrap();
    assert_eq!(
        (
            int(summary, "partitions"),
            int(summary, "groups"),
            int(summary, "offsets")
        ),
        (2, 2, 3)
    );

    let billing = expect(&["offsets", "--dir", s(&dir), "--group", "billing"], 0);
    let listed: Vec<&String> = billing.iter().filter(|l| l.starts_with("group:")).collect();
    assert_eq!(listed.len(), 2, "{billing:?}");
    assert!(listed[0].contains("orders-0 offset: 42"), "{billing:?}");
    assert!(listed[1].contains("orders-1 offset: 7"), "{billing:?}");
    assert!(listed[1].contains("metadata: \"host-a\""), "{billing:?}");

    let one = expect(
        &["offsets", "--dir", s(&dir), "--partition", "1", "--json"],
        0,
    );
    assert_eq!(int(one.last().unwrap(), "partitions"), 1, "{one:?}");

    let out = partlog(&["offsets", "--dir", s(&dir), "--partition", "7"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no partition 7 of topic __consumer_offsets"),
        "{out:?}"
    );
    let other = tmp.path().join("plain");
    std::fs::create_dir(&other).unwrap();
    produce(&other, 10, 100);
    let out = partlog(&["offsets", "--dir", s(&other)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no topic __consumer_offsets"),
        "{out:?}"
    );
    assert_eq!(dir_snapshot(&dir), before, "offsets changed the log dir");
}

/// A compacted topic `prices` in `dir`, partition 0: ten keys, each written 40 times in
/// batches of 5 records, 4 KiB segments, key `k3` ending in a tombstone; the log dir
/// closed as a broker closes it. Returns each key's latest value (`None`: deleted).
fn compacted_topic(dir: &Path) -> std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>> {
    compacted_topic_named(dir, "prices")
}

/// [`compacted_topic`] under the name `topic`.
fn compacted_topic_named(
    dir: &Path,
    topic: &str,
) -> std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>> {
    use partlog::config::{CleanupPolicy, LogConfig};
    use partlog::manager::{LogDir, LogDirOptions};

    let config = LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        segment_bytes: 4096,
        ..LogConfig::default()
    };
    let options = LogDirOptions {
        config,
        clock: std::sync::Arc::new(partlog::SystemClock),
    };
    let log_dir = LogDir::open(partlog::io::real::RealStorage::shared(), dir, options).unwrap();
    let tp = partlog::checkpoint::TopicPartition::new(topic, 0);
    let (log, _) = log_dir.open_log(&tp).unwrap();
    let mut latest = std::collections::BTreeMap::new();
    let mut n = 0;
    for _ in 0..80 {
        let mut records = Vec::new();
        for _ in 0..5 {
            let key = format!("k{}", n % 10).into_bytes();
            let value = if n >= 390 && key == b"k3" {
                None
            } else {
                Some(format!("value-{n}-{}", "x".repeat(40)).into_bytes())
            };
            latest.insert(key.clone(), value.clone());
            records.push((key, value));
            n += 1;
        }
        log.append_as_leader(&mut common::keyed_batch(&records, 1_000), 0)
            .unwrap();
    }
    drop(log);
    log_dir.close().unwrap();
    latest
}

/// `clean` compacts a topic's partition as the cleaner would, and a dry run first reports
/// the same cleaning without changing a byte; the cleaned log reads as each key's latest
/// record (the tombstone kept, within its horizon); a second run finds nothing to clean;
/// a missing topic or a ratio out of range is refused.
#[test]
fn clean_compacts_a_topic_and_a_dry_run_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("logs");
    let latest = compacted_topic(&dir);
    let before = dir_snapshot(&dir);
    let clean = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["clean", "--dir", s(&dir), "--topic", "prices", "--json"];
        args.extend(extra);
        expect(&args, 0)
    };
    let figures = |lines: &[String]| -> Vec<(i64, i64, i64, i64, i64)> {
        lines
            .iter()
            .filter(|l| field(l, "type").as_deref() == Some("cleaned"))
            .map(|l| {
                (
                    int(l, "bytes_before"),
                    int(l, "bytes_after"),
                    int(l, "records_kept"),
                    int(l, "end_offset"),
                    int(l, "batches_skipped"),
                )
            })
            .collect()
    };

    let dry = clean(&["--dry-run"]);
    assert_eq!(dir_snapshot(&dir), before, "a dry run changed the log dir");
    let summary = dry.last().unwrap();
    assert_eq!(
        field(summary, "dry_run").as_deref(),
        Some("true"),
        "{dry:?}"
    );
    let would = figures(&dry);
    assert!(!would.is_empty(), "{dry:?}");
    let (bytes_before, bytes_after, _, _, skipped) = would[0];
    assert!(bytes_after * 4 < bytes_before, "{dry:?}");
    // Each batch writes half the keys, and the next batch but one writes them again.
    assert!(
        skipped > 0,
        "no batch superseded whole was skipped: {dry:?}"
    );

    let real = clean(&[]);
    assert_eq!(
        figures(&real),
        would,
        "the dry run reported another cleaning"
    );
    assert_ne!(dir_snapshot(&dir), before);

    // Read back: every key once in the cleaned part, and its latest record last.
    let log_dir = partlog::manager::LogDir::open(
        partlog::io::real::RealStorage::shared(),
        &dir,
        partlog::manager::LogDirOptions::default(),
    )
    .unwrap();
    let tp = partlog::checkpoint::TopicPartition::new("prices", 0);
    let (log, _) = log_dir.open_log(&tp).unwrap();
    let records = common::log_records(&log);
    let end = would.last().unwrap().3;
    let mut seen = std::collections::BTreeSet::new();
    for (offset, key, _) in records.iter().filter(|r| r.0 < end) {
        assert!(
            seen.insert(key.clone()),
            "key {key:?} twice below {end} (at {offset})"
        );
    }
    let mut read_latest = std::collections::BTreeMap::new();
    for (_, key, value) in &records {
        read_latest.insert(key.clone().unwrap(), value.clone());
    }
    assert_eq!(read_latest, latest);
    assert!(records.len() < 200, "{} records left of 400", records.len());
    drop(log);
    log_dir.close().unwrap();

    let again = clean(&[]);
    assert!(figures(&again).is_empty(), "{again:?}");
    assert_eq!(int(again.last().unwrap(), "cleanings"), 0);

    let out = partlog(&["clean", "--dir", s(&dir), "--topic", "absent"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no topic absent"),
        "{out:?}"
    );
    let out = partlog(&[
        "clean",
        "--dir",
        s(&dir),
        "--topic",
        "prices",
        "--min-dirty-ratio",
        "1.5",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

/// `clean` leaves what lies at or above a partition's checkpointed high watermark as it
/// is, as a broker's cleaner does: a record there may be cut yet.
#[test]
fn clean_stops_below_the_checkpointed_high_watermark() {
    use partlog::manager::{LogDir, LogDirOptions};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("logs");
    compacted_topic(&dir);
    let tp = partlog::checkpoint::TopicPartition::new("prices", 0);
    let storage = partlog::io::real::RealStorage::shared();
    let log_dir = LogDir::open(storage.clone(), &dir, LogDirOptions::default()).unwrap();
    log_dir.write_high_watermarks(&[(tp.clone(), 150)]).unwrap();
    let (log, _) = log_dir.open_log(&tp).unwrap();
    let above: Vec<_> = common::log_records(&log)
        .into_iter()
        .filter(|r| r.0 >= 150)
        .collect();
    drop(log);
    log_dir.close().unwrap();

    let lines = expect(
        &["clean", "--dir", s(&dir), "--topic", "prices", "--json"],
        0,
    );
    let cleaned: Vec<&String> = lines
        .iter()
        .filter(|l| field(l, "type").as_deref() == Some("cleaned"))
        .collect();
    assert!(!cleaned.is_empty(), "{lines:?}");
    for line in &cleaned {
        assert!(int(line, "end_offset") <= 150, "{line}");
    }
    let log_dir = LogDir::open(storage, &dir, LogDirOptions::default()).unwrap();
    let (log, _) = log_dir.open_log(&tp).unwrap();
    let after: Vec<_> = common::log_records(&log)
        .into_iter()
        .filter(|r| r.0 >= 150)
        .collect();
    assert_eq!(
        after, above,
        "records at or above the high watermark changed"
    );
}

/// A partition that `replication-offset-checkpoint` leaves out, in a dir that has one, is a
/// replica whose high watermark is its log start (as a Kafka broker reads it): `clean`
/// says so and changes nothing, where a dir without the file is cleaned to its active
/// segment (the test above). Cleaning past a high watermark it does not know could drop a
/// key's older records for a latest one that a truncation then cuts.
#[test]
fn clean_holds_a_replica_the_high_watermark_checkpoint_leaves_out() {
    use partlog::manager::{LogDir, LogDirOptions};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("logs");
    compacted_topic(&dir);
    let other = partlog::checkpoint::TopicPartition::new("other", 0);
    let log_dir = LogDir::open(
        partlog::io::real::RealStorage::shared(),
        &dir,
        LogDirOptions::default(),
    )
    .unwrap();
    log_dir.write_high_watermarks(&[(other, 7)]).unwrap();
    log_dir.close().unwrap();
    let before = dir_snapshot(&dir);

    let lines = expect(
        &["clean", "--dir", s(&dir), "--topic", "prices", "--json"],
        0,
    );
    let held: Vec<&String> = lines
        .iter()
        .filter(|l| field(l, "type").as_deref() == Some("held"))
        .collect();
    assert_eq!(held.len(), 1, "{lines:?}");
    assert_eq!(field(held[0], "partition").as_deref(), Some("prices-0"));
    assert_eq!(int(lines.last().unwrap(), "cleanings"), 0, "{lines:?}");
    let prices = dir.join("prices-0");
    let segment_files = |snapshot: Vec<(PathBuf, Vec<u8>)>| {
        snapshot
            .into_iter()
            .filter(|(path, _)| path.starts_with(&prices))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        segment_files(dir_snapshot(&dir)),
        segment_files(before),
        "a replica with no checkpointed high watermark was cleaned"
    );
}

/// The offsets log cleaned by `clean` lists the same committed offsets as before: the
/// cleaning drops only commits a later one superseded.
#[test]
fn offsets_read_the_same_after_clean_compacts_the_offsets_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("logs");
    commit_offsets(&dir, 300);
    let offsets = || -> Vec<String> {
        expect(&["offsets", "--dir", s(&dir), "--json"], 0)
            .into_iter()
            .filter(|l| field(l, "type").as_deref() == Some("offset"))
            .collect()
    };
    let before = offsets();
    assert_eq!(before.len(), 3, "{before:?}");
    let args = [
        "clean",
        "--dir",
        s(&dir),
        "--topic",
        "__consumer_offsets",
        "--min-dirty-ratio",
        "0",
        "--json",
    ];
    let cleaned = expect(&args, 0);
    let summary = cleaned.last().unwrap();
    assert!(
        int(summary, "cleanings") >= 2,
        "both partitions: {cleaned:?}"
    );
    assert!(
        int(summary, "bytes_after") * 4 < int(summary, "bytes_before"),
        "{cleaned:?}"
    );
    assert_eq!(offsets(), before);
}

/// A dir that is not a log dir (an operator's home, a partition dir named by mistake) is
/// refused before anything is written: `check` took any existing dir, wrote a lock,
/// checkpoints and the clean-shutdown marker into it, took a `backup-2024` directory for a
/// partition, and reported nothing wrong.
#[test]
fn a_dir_that_is_not_a_log_dir_is_refused_and_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(home.join("backup-2024")).unwrap();
    std::fs::write(home.join("notes.txt"), b"x").unwrap();
    let before = dir_snapshot(&home);
    expect(&["check", s(&home)], 2);
    let out = partlog(&[
        "produce",
        "--dir",
        s(&home),
        "--topic",
        "orders",
        "--partition",
        "0",
        "--records",
        "20",
        "--record-bytes",
        "10",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not a log dir"), "{stderr}");
    assert_eq!(dir_snapshot(&home), before);
    assert!(!home.join(".lock").exists());

    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    produce(&logs, 20, 10);
    let partition = logs.join("orders-0");
    let before = dir_snapshot(&partition);
    let out = partlog(&["check", s(&partition)]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("partition dir"), "{stderr}");
    assert_eq!(dir_snapshot(&partition), before);
}

/// `clean` naming a topic that deletes (its records have no key; a compacted topic's all
/// have one) refuses before it cleans anything. It cleaned it under compaction's rules,
/// dropping every keyless record for good, and said so only in its counts afterwards.
#[test]
fn clean_refuses_a_topic_whose_records_have_no_key() {
    let tmp = tempfile::tempdir().unwrap();
    // Keyed records, then keyless ones, as a producer without keys writes.
    produce(tmp.path(), 500, 10);
    let mut builder = BatchBuilder::new();
    for i in 0..3 {
        builder.append(1_000 + i, None, Some(b"value"), &[]);
    }
    let input = tmp.path().join("keyless.bin");
    std::fs::write(&input, builder.build().unwrap()).unwrap();
    append_batches(tmp.path(), &input);
    produce(tmp.path(), 500, 10);
    let segment = tmp.path().join("orders-0").join("00000000000000000000.log");
    let before = std::fs::read(&segment).unwrap();
    let args = [
        "clean",
        "--dir",
        s(tmp.path()),
        "--topic",
        "orders",
        "--min-dirty-ratio",
        "0",
    ];
    let out = partlog(&args);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has no key"), "{err}");
    assert_eq!(std::fs::read(&segment).unwrap(), before, "nothing cleaned");
}

/// `clean` that fails (a mistyped topic) puts the clean-shutdown marker back: opening the
/// dir had removed it, and the broker's next start recovered every partition.
#[test]
fn a_failed_clean_keeps_the_clean_shutdown_marker() {
    let tmp = tempfile::tempdir().unwrap();
    produce(tmp.path(), 20, 10);
    let marker = tmp.path().join(".kafka_cleanshutdown");
    assert!(marker.exists());
    expect(&["clean", "--dir", s(tmp.path()), "--topic", "ordres"], 2);
    assert!(marker.exists(), "the marker is back");
}

/// Listing a partition's open transactions only reads: it opened the partition on the
/// disk (a recovery could cut it, with the delete policy's rules on the offsets topic),
/// wrote a lock and the checkpoints.
#[test]
fn listing_transactions_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    produce(tmp.path(), 20, 10);
    // As a running broker's dir, or one it left after a crash.
    std::fs::remove_file(tmp.path().join(".kafka_cleanshutdown")).unwrap();
    let before = dir_snapshot(tmp.path());
    let args = [
        "transactions",
        "--dir",
        s(tmp.path()),
        "--topic",
        "orders",
        "--partition",
        "0",
    ];
    let lines = expect(&args, 0);
    assert!(
        lines.last().unwrap().contains("0 open transactions"),
        "{lines:?}"
    );
    assert_eq!(dir_snapshot(tmp.path()), before);
}
