//! Bodies of the cargo-fuzz targets in `fuzz/`, one per on-disk structure.
//!
//! They live in the library, behind the `fuzzing` feature, so that `tests/fuzz_corpus.rs`
//! runs them over the checked-in corpus (and mutations of it) on stable Rust in CI, and
//! the libFuzzer targets stay one-line wrappers. Each body feeds arbitrary bytes to the
//! engine through the simulated disk and panics only when an invariant breaks (DESIGN.md
//! 1, 5 and 8): typed errors are fine, panics, invented data and unreadable offsets are
//! not. A body's `expect`s are that oracle: a step on the fault-free simulated disk that
//! fails is an invariant broken, which the fuzzer must see as a panic.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::checkpoint::{self, TopicPartition, LOG_START_OFFSET_FILE, RECOVERY_POINT_FILE};
use crate::clock::ManualClock;
use crate::config::{CleanupPolicy, LogConfig};
use crate::error::Error;
use crate::io::sim::SimStorage;
use crate::io::Storage;
use crate::log::{Log, LogOpenOptions};
use crate::manager::{LogDir, LogDirOptions};
use crate::offsets::codec;
use crate::record::{batches, BatchBuilder};
use crate::segment::files;

pub use crate::record::fuzz_batch_decode as batch_decode;

const LOG_DIR: &str = "/fuzz";
const PARTITION: &str = "/fuzz/t-0";

/// Small limits, so that indexes fill and the fuzzer reaches every path quickly.
pub fn fuzz_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 20,
        index_bytes_max: 240,
        index_interval_bytes: 64,
        ..LogConfig::default()
    }
}

/// [`fuzz_config`] for a compacted log: offsets may leave gaps.
pub fn fuzz_compacted_config() -> LogConfig {
    LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        ..fuzz_config()
    }
}

fn open_options(
    storage: Arc<dyn Storage>,
    clean: bool,
    recovery_point: Option<i64>,
) -> LogOpenOptions {
    open_options_with(fuzz_config(), storage, clean, recovery_point)
}

fn open_options_with(
    config: LogConfig,
    storage: Arc<dyn Storage>,
    clean: bool,
    recovery_point: Option<i64>,
) -> LogOpenOptions {
    LogOpenOptions {
        config,
        clock: Arc::new(ManualClock::new(1_700_000_000_000)),
        recovery_point,
        clean_shutdown: clean,
        ..LogOpenOptions::new(storage, PARTITION)
    }
}

fn segment_path(suffix: &str) -> PathBuf {
    files::path(Path::new(PARTITION), 0, suffix)
}

/// The batches of the segment [`index_open`] puts next to the fuzzed indexes: twelve
/// batches of one to four records, timestamps rising, base offsets from 0.
pub fn fixture_segment() -> Vec<u8> {
    let mut out = Vec::new();
    let mut b = BatchBuilder::new();
    let mut offset = 0i64;
    for i in 0..12i64 {
        let records = 1 + i % 4;
        b.base_offset(offset);
        for r in 0..records {
            let value = vec![b'a' + (i % 26) as u8; 10 + (i * 7 % 40) as usize];
            b.append(1_000 + i * 10 + r, Some(b"key"), Some(&value), &[]);
        }
        b.build_into(&mut out).expect("fixture batch");
        offset += records;
    }
    out
}

/// Checks an open log: offsets increase, the end is where the last batch ends, every
/// readable byte is a CRC-valid batch, and every offset in range reads the batch holding it
/// (or the next one after a gap). Returns the batches read, as `(base, last, bytes)`.
fn check_log(log: &Log) -> Vec<(i64, i64, Vec<u8>)> {
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    assert!(start <= end, "log start {start} above end {end}");
    assert!(log.recovery_point() <= end);
    let mut found: Vec<(i64, i64, Vec<u8>)> = Vec::new();
    let mut next = start;
    while next < end {
        let slice = log
            .read(next, u64::MAX, None)
            .unwrap_or_else(|e| panic!("read {next} in [{start}, {end}): {e}"));
        let Some(slice) = slice else { break };
        let bytes = slice.to_vec().expect("slice bytes");
        assert!(!bytes.is_empty(), "empty read at {next}");
        for batch in batches(&bytes) {
            let batch = batch.unwrap_or_else(|e| panic!("read {next}: malformed batch: {e}"));
            // What recovery promises, as Kafka's does: the CRC, not well-formed records (a
            // CRC-valid batch whose records do not parse is kept; libFuzzer forges such).
            batch
                .verify_crc()
                .unwrap_or_else(|e| panic!("read {next}: invalid batch served: {e}"));
            let h = batch.header();
            if let Some(prev) = found.last() {
                assert!(h.base_offset > prev.1, "offsets do not increase");
            }
            found.push((h.base_offset, h.last_offset(), batch.as_bytes().to_vec()));
            next = h.next_offset();
        }
    }
    let derived = found.last().map(|b| b.1 + 1);
    if let Some(d) = derived {
        assert!(end >= d, "log end {end} inside the last batch");
    }
    // Every offset reads (sampled on long logs).
    let stride = ((end - start) / 2_000).max(1);
    let mut offset = start;
    while offset < end {
        let got = log
            .read(offset, 1, None)
            .unwrap_or_else(|e| panic!("read {offset} in [{start}, {end}): {e}"));
        let want = found.iter().find(|b| b.1 >= offset);
        match (got, want) {
            (Some(s), Some(w)) => {
                let bytes = s.to_vec().expect("slice bytes");
                assert_eq!(bytes, w.2, "read {offset} returned the wrong batch");
            }
            (None, None) => {}
            (got, want) => panic!(
                "read {offset}: got {:?} bytes, expected batch {:?}",
                got.map(|s| s.len()),
                want.map(|w| (w.0, w.1))
            ),
        }
        offset += stride;
    }
    found
}

/// Arbitrary bytes as the only segment of a partition, opened after an unclean shutdown
/// without a recovery point; what must hold is in `recover_and_check`.
pub fn segment_recovery(data: &[u8]) {
    let sim = SimStorage::new(data.len() as u64);
    sim.write_raw(&segment_path(files::LOG_SUFFIX), data)
        .expect("write fuzz segment");
    recover_and_check(&sim, data, open_options(sim.storage(), false, None));
}

/// Arbitrary bytes as the only segment of a compacted log and as its offset index, opened
/// after an unclean shutdown, mostly with a recovery point. The first byte picks the
/// recovery point, the next two (little-endian) the length of the index bytes that follow;
/// the rest is the segment. Above the recovery point, recovery keeps a batch that follows
/// an offset gap only when the on-disk index names it (its witness, which appends write
/// in a compacted log), in a partition partlog opened before and marked as one with gaps
/// (its `.lock` and `.offset-gaps` are there, as here), so here the index decides what is
/// kept: whatever it says, the invariants of [`segment_recovery`] hold.
pub fn compacted_recovery(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (index_len, rest) = match rest {
        [lo, hi, rest @ ..] => (usize::from(u16::from_le_bytes([*lo, *hi])), rest),
        _ => (0, rest),
    };
    let (index, segment) = rest.split_at(index_len.min(rest.len()));
    let recovery_point = match selector % 4 {
        0 => Some(0),
        1 | 2 => Some(i64::from(selector >> 2)),
        _ => None,
    };
    let sim = SimStorage::new(u64::from(selector));
    sim.write_raw(&segment_path(files::LOG_SUFFIX), segment)
        .expect("write fuzz segment");
    if !index.is_empty() {
        sim.write_raw(&segment_path(files::INDEX_SUFFIX), index)
            .expect("write fuzz index");
    }
    for name in [crate::io::real::LOCK_FILE_NAME, crate::log::GAPS_FILE_NAME] {
        let marker = segment_path(files::LOG_SUFFIX).with_file_name(name);
        sim.write_raw(&marker, &[]).expect("write fuzz marker file");
    }
    let config = fuzz_compacted_config();
    let options = open_options_with(config, sim.storage(), false, recovery_point);
    recover_and_check(&sim, segment, options);
}

/// Opens the log whose only segment holds `data`, after an unclean shutdown: recovery must
/// not panic, must keep only a CRC-valid prefix of the bytes (or refuse a legacy-format
/// segment without changing it), and the log must then read every offset and take appends.
fn recover_and_check(sim: &SimStorage, data: &[u8], options: LogOpenOptions) {
    let log_path = segment_path(files::LOG_SUFFIX);
    let (log, report) = match Log::open(options) {
        Ok(opened) => opened,
        // Old-format data is refused, and must be left exactly as it was.
        Err(crate::Error::UnsupportedFormat { .. }) => {
            assert_eq!(sim.read_raw(&log_path).as_deref(), Some(data));
            return;
        }
        Err(e) => panic!("recovery of a fault-free disk failed: {e}"),
    };
    let found = check_log(&log);
    let kept: usize = found.iter().map(|b| b.2.len()).sum();
    assert_eq!(
        log.size_bytes(),
        kept as u64,
        "unreadable bytes left in the log"
    );
    let on_disk = sim.read_raw(&log_path).expect("segment file");
    assert_eq!(
        on_disk.len(),
        kept,
        "segment not cut at the last valid batch"
    );
    assert_eq!(&on_disk[..], &data[..kept], "recovery changed kept bytes");
    assert_eq!(report.truncated_bytes() as usize, data.len() - kept);
    // The recovered log takes appends and serves them.
    let end = log.log_end_offset();
    let mut batch = BatchBuilder::new()
        .append(2_000, Some(b"k"), Some(b"v"), &[])
        .build()
        .expect("batch");
    let epoch = log.latest_epoch().max(1);
    let info = log
        .append_as_leader(&mut batch, epoch)
        .unwrap_or_else(|e| panic!("append after recovery: {e}"));
    assert_eq!(info.first_offset, end);
    let read = log.read(end, u64::MAX, None).expect("read the append");
    assert_eq!(read.map(|s| s.to_vec().expect("bytes")), Some(batch));
}

/// Arbitrary bytes as the `.index` and/or `.timeindex` of a valid segment (the first byte
/// picks which: 0 the offset index, 1 the time index, 2 both, split in the middle). After an
/// unclean open the indexes are rebuilt and every offset must read exactly; after a clean
/// open they are trusted, and nothing may panic.
pub fn index_open(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let segment = fixture_segment();
    let expected: Vec<(i64, i64)> = batches(&segment)
        .map(|b| {
            let b = b.expect("fixture parses");
            (b.header().base_offset, b.header().last_offset())
        })
        .collect();
    for clean in [false, true] {
        let sim = SimStorage::new(u64::from(selector));
        sim.write_raw(&segment_path(files::LOG_SUFFIX), &segment)
            .expect("write segment");
        let (index, time) = match selector % 3 {
            0 => (Some(rest), None),
            1 => (None, Some(rest)),
            _ => {
                let (a, b) = rest.split_at(rest.len() / 2);
                (Some(a), Some(b))
            }
        };
        if let Some(bytes) = index {
            sim.write_raw(&segment_path(files::INDEX_SUFFIX), bytes)
                .expect("write index");
        }
        if let Some(bytes) = time {
            sim.write_raw(&segment_path(files::TIME_INDEX_SUFFIX), bytes)
                .expect("write time index");
        }
        let end = expected.last().map_or(0, |b| b.1 + 1);
        let opened = Log::open(open_options(sim.storage(), clean, Some(end)));
        let (log, _) = match opened {
            Ok(opened) => opened,
            Err(e) if clean => {
                let _ = e; // a typed error is an acceptable answer to a corrupt index
                continue;
            }
            Err(e) => panic!("unclean open with a corrupt index failed: {e}"),
        };
        assert_eq!(log.log_end_offset(), end);
        if clean {
            // Trusted indexes: reads may fail with a typed error, but must not panic.
            for offset in 0..end {
                let _ = log.read(offset, 1, None).map(|s| s.map(|s| s.to_vec()));
            }
            for ts in [-2, -1, 0, 1_000, 1_055, 1_200] {
                let _ = log.offset_for_timestamp(ts);
            }
            continue;
        }
        let found = check_log(&log);
        let got: Vec<(i64, i64)> = found.iter().map(|b| (b.0, b.1)).collect();
        assert_eq!(got, expected, "rebuilt indexes lost or moved batches");
        for ts in [1_000, 1_031, 1_055, 1_110] {
            let found = log.offset_for_timestamp(ts).expect("time lookup");
            let first = found.map(|f| f.offset);
            let want = expected
                .iter()
                .enumerate()
                .flat_map(|(i, &(base, last))| {
                    (base..=last).map(move |o| (o, 1_000 + i as i64 * 10 + (o - base)))
                })
                .find(|&(_, t)| t >= ts)
                .map(|(o, _)| o);
            assert_eq!(first, want, "offset_for_timestamp({ts})");
        }
    }
}

/// Arbitrary bytes as a checkpoint: both parsers must return entries or a typed error, a
/// parsed checkpoint must render back to itself, and a log dir holding it as its
/// recovery-point and log-start checkpoints must open a valid partition log (its batches,
/// or an empty log at a checkpointed log start past them) if it parses, and refuse to
/// open with a typed error if not (an unreadable log-start checkpoint takes the dir
/// offline, as in Kafka).
pub fn checkpoint_parse(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("cp");
    if let Ok(entries) = checkpoint::parse_offsets(path, &text) {
        let again = checkpoint::parse_offsets(path, &checkpoint::render_offsets(&entries));
        assert_eq!(
            again.ok().as_ref(),
            Some(&entries),
            "offsets do not round-trip"
        );
    }
    if let Ok(entries) = checkpoint::parse_epochs(path, &text) {
        let rendered = checkpoint::render(&entries, |(e, o)| format!("{e} {o}"));
        let again = checkpoint::parse_epochs(path, &rendered);
        assert_eq!(
            again.ok().as_ref(),
            Some(&entries),
            "epochs do not round-trip"
        );
    }
    let sim = SimStorage::new(data.len() as u64);
    let segment = fixture_segment();
    sim.write_raw(&segment_path(files::LOG_SUFFIX), &segment)
        .expect("write segment");
    for name in [RECOVERY_POINT_FILE, LOG_START_OFFSET_FILE] {
        sim.write_raw(&Path::new(LOG_DIR).join(name), data)
            .expect("write checkpoint");
    }
    let options = LogDirOptions {
        config: fuzz_config(),
        clock: Arc::new(ManualClock::new(1_700_000_000_000)),
    };
    let parses =
        std::str::from_utf8(data).is_ok_and(|t| checkpoint::parse_offsets(path, t).is_ok());
    let dir = match LogDir::open(sim.storage(), LOG_DIR, options) {
        Ok(dir) => {
            assert!(
                parses,
                "a log dir opened with a log-start checkpoint that does not parse"
            );
            dir
        }
        Err(Error::Parse { .. }) if !parses => return,
        Err(e) => panic!("log dir with a fuzzed checkpoint did not open: {e}"),
    };
    let (log, _) = dir
        .open_log(&TopicPartition::new("t", 0))
        .unwrap_or_else(|e| panic!("partition with a fuzzed checkpoint did not open: {e}"));
    let found = check_log(&log);
    // The segment's batches are all still there, unless the checkpoint (when it parses)
    // puts the partition's log start past them: the log then starts over there, empty,
    // as Kafka's loader does (offsets below a log start are never handed out again).
    let all: usize = batches(&segment).count();
    let batches_end = {
        let last = batches(&segment).last().expect("batches");
        last.expect("fixture parses").header().next_offset()
    };
    let tp = TopicPartition::new("t", 0);
    let checkpointed_start = checkpoint::parse_offsets(path, &text)
        .ok()
        .and_then(|entries| entries.into_iter().rev().find(|(t, _)| *t == tp))
        .map(|(_, start)| start);
    match checkpointed_start {
        Some(start) if start > batches_end => {
            assert_eq!(
                (log.log_start_offset(), log.log_end_offset()),
                (start, start)
            );
            assert!(found.is_empty());
        }
        _ => assert_eq!(log.log_end_offset(), batches_end),
    }
    assert!(found.len() <= all);
    dir.flush()
        .unwrap_or_else(|e| panic!("checkpoint rewrite failed: {e}"));
}

/// Arbitrary bytes as a `__consumer_offsets` key and as a value: each either decodes or
/// fails with a typed error, and what decodes encodes back to bytes that decode the same.
pub fn offsets_decode(data: &[u8]) {
    if let Ok(codec::RecordKey::OffsetCommit {
        group,
        topic,
        partition,
    }) = codec::decode_key(data)
    {
        if group.len() <= i16::MAX as usize && topic.len() <= i16::MAX as usize {
            let mut out = Vec::new();
            codec::encode_offset_commit_key(&group, &topic, partition, &mut out);
            assert_eq!(
                codec::decode_key(&out),
                Ok(codec::RecordKey::OffsetCommit {
                    group,
                    topic,
                    partition
                })
            );
        }
    }
    if let Ok(value) = codec::decode_offset_commit_value(data) {
        if value.metadata.len() <= i16::MAX as usize {
            let mut out = Vec::new();
            codec::encode_offset_commit_value(&value, &mut out);
            let again = codec::decode_offset_commit_value(&out).expect("re-encoded value decodes");
            assert_eq!(
                (again.offset, again.leader_epoch),
                (value.offset, value.leader_epoch)
            );
            assert_eq!(
                (&again.metadata, again.commit_timestamp),
                (&value.metadata, value.commit_timestamp)
            );
        }
    }
}

/// The two ways a load replays a piece of the offsets log (decoded on the reading thread
/// first, or record by record on the replay's), on any bytes: the same outcome and the
/// same view, whichever the reader had time for.
pub fn offsets_replay(data: &[u8]) {
    crate::offsets::check_decoded_replay(data);
}

/// The compacted log of the cleaner targets on the simulated disk, with small segments,
/// and a cleaner whose key map is tiny when the first input byte is odd (so that partial
/// cleanings happen) and roomy otherwise.
fn cleaner_fixture(
    data: &[u8],
    clock: Arc<ManualClock>,
    delete_retention_ms: i64,
) -> (LogDir, Arc<Log>, crate::cleaner::Cleaner) {
    use crate::cleaner::{Cleaner, CleanerConfig, SLOT_BYTES};

    let config = LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        segment_bytes: 512,
        index_bytes_max: 240,
        index_interval_bytes: 64,
        min_cleanable_dirty_ratio: 0.0,
        delete_retention_ms,
        ..LogConfig::default()
    };
    let options = LogDirOptions { config, clock };
    // A disk without faults: an open that fails is a bug, not an input to skip.
    let dir = LogDir::open(SimStorage::new(1).storage(), LOG_DIR, options).expect("open dir");
    let (log, _) = dir
        .open_log(&TopicPartition::new("t", 0))
        .expect("open log");
    let slots = if data.first().is_some_and(|b| b & 1 == 1) {
        4
    } else {
        256
    };
    let cleaner = Cleaner::new(CleanerConfig {
        dedupe_buffer_bytes: slots * SLOT_BYTES,
        ..CleanerConfig::default()
    });
    (dir, log, cleaner)
}

/// The cleaner against a model: the input is a program of appends (keys from a small set,
/// values or tombstones), rolls and cleanings at advancing times, run on a compacted log
/// on the simulated disk. After each cleaning: the latest record of every key is there at
/// its offset with its value (a tombstone may be gone only once two cleanings
/// `delete_retention_ms` apart ran after it); below where the cleaning ended, no record is
/// there that a later record of its key below that end supersedes.
pub fn cleaner_model(data: &[u8]) {
    use crate::cleaner::CleanOutcome;
    use crate::clock::Clock;

    const RETENTION_MS: i64 = 1_000;
    let clock = Arc::new(ManualClock::new(1_000_000));
    let (dir, log, cleaner) = cleaner_fixture(data, clock.clone(), RETENTION_MS);
    let mut model = CleanerModel::default();
    // Byte 0 chose the map's size (see `cleaner_fixture`); the program follows it.
    for op in data.get(1..).unwrap_or_default().chunks(2) {
        let (code, arg) = (op[0], op.get(1).copied().unwrap_or(0));
        match code % 8 {
            0..=4 => {
                let key = arg % 8;
                let value = (code % 5 != 4).then_some(arg);
                let mut builder = BatchBuilder::new();
                let v = value.map(|v| [v]);
                builder.append(
                    clock.now_ms(),
                    Some(&[key]),
                    v.as_ref().map(|v| &v[..]),
                    &[],
                );
                let mut batch = builder.build().expect("a batch of one keyed record");
                let info = log.append_as_leader(&mut batch, 0).expect("append");
                model
                    .appended
                    .push((info.first_offset, key, value, Vec::new()));
            }
            5 => log.force_roll().expect("roll"),
            6 => clock.advance_ms(i64::from(arg) * 10),
            _ => {
                let now = clock.now_ms();
                let outcome = cleaner.clean_once(&dir, now);
                let Ok(CleanOutcome::Cleaned { report, .. }) = outcome else {
                    // Nothing to clean, or not yet; a failure on a disk without faults is
                    // a bug (and would leave the log uncleanable, every later step
                    // checking nothing).
                    assert!(
                        !matches!(outcome, Ok(CleanOutcome::Failed { .. }) | Err(_)),
                        "cleaning failed: {outcome:?}"
                    );
                    continue;
                };
                for record in &mut model.appended {
                    record.3.push(now);
                }
                model.check(&log, report.end_offset, RETENTION_MS);
            }
        }
    }
}

/// Every record appended: offset, key, value (`None`: tombstone), and the times of the
/// cleanings since.
#[derive(Default)]
struct CleanerModel {
    appended: Vec<(i64, u8, Option<u8>, Vec<i64>)>,
}

impl CleanerModel {
    fn check(&self, log: &Log, end: i64, retention_ms: i64) {
        let mut present: Vec<(i64, u8, Option<u8>)> = Vec::new();
        let mut next = log.log_start_offset();
        while let Some(slice) = log.read(next, 1 << 16, None).expect("a cleaned log reads") {
            let bytes = slice.to_vec().expect("bytes of a slice");
            for batch in batches(&bytes) {
                let batch = batch.expect("a cleaned log reads back");
                batch.validate().expect("cleaned batches are valid");
                for record in batch.records().expect("records") {
                    let r = record.expect("record");
                    let key = r.key.and_then(|k| k.first().copied()).expect("keyed");
                    present.push((r.offset, key, r.value.and_then(|v| v.first().copied())));
                }
                next = batch.header().next_offset();
            }
        }
        // Nothing is there that was not appended there.
        for p in &present {
            let appended = self.appended.iter().find(|a| a.0 == p.0);
            assert_eq!(
                appended.map(|a| (a.0, a.1, a.2)),
                Some(*p),
                "record at {} is not the one appended there",
                p.0
            );
        }
        for (i, (offset, key, value, cleanings)) in self.appended.iter().enumerate() {
            let later = self.appended[i + 1..].iter().filter(|r| r.1 == *key);
            let latest = later.clone().next().is_none();
            let found = present.iter().find(|p| p.0 == *offset);
            if latest {
                let may_drop = value.is_none()
                    && cleanings
                        .first()
                        .is_some_and(|first| cleanings.iter().any(|t| *t >= first + retention_ms));
                if !may_drop {
                    assert_eq!(
                        found,
                        Some(&(*offset, *key, *value)),
                        "latest of key {key} missing"
                    );
                }
            } else if found.is_some() {
                let superseded_below_end = later.clone().any(|r| r.0 < end);
                assert!(
                    !superseded_below_end || *offset >= end,
                    "record of key {key} at {offset} is superseded below the cleaned end {end}"
                );
            }
        }
    }
}

/// A record as [`committed_by_key`] takes it: offset, key, value (none: a tombstone).
pub type TxnRecord = (i64, Vec<u8>, Option<Vec<u8>>);

/// A batch as a reader that follows transaction markers takes it: see [`committed_by_key`].
#[derive(Debug, Clone)]
pub enum TxnItem {
    /// Records, of a transaction of this producer or of none.
    Records(Option<i64>, Vec<TxnRecord>),
    /// A transaction marker of this producer: COMMIT (true) or ABORT.
    Marker(i64, bool),
}

/// What a reader that follows the markers finds for every key, as the offsets load does:
/// a plain record counts at once; a transaction's records count at its COMMIT, each only
/// if no later record of its key counted before it; an aborted or open transaction's
/// records count for nothing. A key whose latest record is a tombstone has no value and
/// is left out, as it is once a cleaning drops the tombstone. (The reference of the
/// cleaner's transaction tests.)
pub fn committed_by_key(items: &[TxnItem]) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
    let mut state: BTreeMap<Vec<u8>, (i64, Option<Vec<u8>>)> = BTreeMap::new();
    let mut open: HashMap<i64, Vec<TxnRecord>> = HashMap::new();
    for item in items {
        match item {
            TxnItem::Records(None, records) => {
                for (offset, key, value) in records {
                    state.insert(key.clone(), (*offset, value.clone()));
                }
            }
            TxnItem::Records(Some(producer), records) => {
                open.entry(*producer)
                    .or_default()
                    .extend(records.iter().cloned());
            }
            TxnItem::Marker(producer, commit) => {
                let records = open.remove(producer).unwrap_or_default();
                for (offset, key, value) in records.into_iter().filter(|_| *commit) {
                    if state.get(&key).is_none_or(|(latest, _)| *latest < offset) {
                        state.insert(key, (offset, value));
                    }
                }
            }
        }
    }
    state
        .into_iter()
        .filter_map(|(k, (_, v))| Some((k, Some(v?))))
        .collect()
}

/// Every batch of `log` as [`committed_by_key`] takes it; an error for a batch that does
/// not read back valid ([`crate::Error::InvalidBatch`]) or a record without a key
/// ([`crate::Error::KeylessRecord`]).
pub fn txn_items(log: &Log) -> crate::Result<Vec<TxnItem>> {
    let mut items = Vec::new();
    let mut next = log.log_start_offset();
    while let Some(slice) = log.read(next, 1 << 20, None)? {
        let bytes = slice.to_vec()?;
        for batch in batches(&bytes) {
            let batch = batch?;
            batch.validate()?;
            let header = batch.header();
            next = header.next_offset();
            if let Some(commit) = batch.marker_commits() {
                items.push(TxnItem::Marker(header.producer_id, commit));
                continue;
            }
            let mut records = Vec::new();
            for r in batch.records()? {
                let r = r?;
                let key = r.key.ok_or(crate::Error::KeylessRecord {
                    offset_delta: r.offset_delta,
                })?;
                records.push((r.offset, key.to_vec(), r.value.map(<[u8]>::to_vec)));
            }
            let producer = header.is_transactional().then_some(header.producer_id);
            items.push(TxnItem::Records(producer, records));
        }
    }
    Ok(items)
}

/// A transaction marker of `producer` (epoch 0): COMMIT or ABORT.
pub fn marker_batch(producer: i64, commit: bool, timestamp_ms: i64) -> crate::Result<Vec<u8>> {
    Ok(BatchBuilder::transaction_marker(
        producer,
        0,
        commit,
        0,
        timestamp_ms,
    )?)
}

/// The cleaner on a log with transactions: the input is a program of plain and
/// transactional appends (keys from a small set, values or tombstones, four producers),
/// markers, rolls (with time passing) and cleanings, run on a compacted log on the
/// simulated disk. After each cleaning, a reader that follows the markers finds for every
/// key what it finds in what was appended ([`committed_by_key`]), with tombstones and
/// markers gone past their delete horizons, and the log's open transactions are those
/// appended and not ended.
pub fn cleaner_transactions(data: &[u8]) {
    use crate::cleaner::CleanOutcome;

    use crate::clock::Clock;

    const RETENTION_MS: i64 = 1_000;
    let clock = Arc::new(ManualClock::new(1_000_000));
    let (dir, log, cleaner) = cleaner_fixture(data, clock.clone(), RETENTION_MS);
    let mut appended = Vec::new();
    // Byte 0 chose the map's size (see `cleaner_fixture`); the program follows it.
    for op in data.get(1..).unwrap_or_default().chunks(2) {
        let (code, arg) = (op[0], op.get(1).copied().unwrap_or(0));
        // The producer, key and value come from the argument's bits.
        let producer = i64::from(arg & 3) + 1;
        let key = vec![(arg >> 2) % 6];
        let value = (arg & 0x80 == 0).then(|| vec![arg]);
        match code % 8 {
            0..=4 => {
                let txn = (code % 8 >= 2).then_some(producer);
                let mut builder = BatchBuilder::new();
                if let Some(p) = txn {
                    builder.transactional(true).producer(p, 0, 0);
                }
                builder.append(clock.now_ms(), Some(&key), value.as_deref(), &[]);
                let mut batch = builder.build().expect("a batch of one keyed record");
                let info = log.append_as_leader(&mut batch, 0).expect("append");
                appended.push(TxnItem::Records(txn, vec![(info.first_offset, key, value)]));
            }
            5 => {
                let commit = arg & 0x10 != 0;
                let mut batch = marker_batch(producer, commit, clock.now_ms()).expect("marker");
                log.append_as_coordinator(&mut batch, 0)
                    .expect("a coordinator's marker");
                appended.push(TxnItem::Marker(producer, commit));
            }
            6 => {
                log.force_roll().expect("roll");
                // Up to 2.5 delete horizons: tombstones and markers go now and then.
                clock.advance_ms(i64::from(arg) * 10);
            }
            _ => {
                let outcome = cleaner.clean_once(&dir, clock.now_ms());
                assert!(
                    !matches!(outcome, Ok(CleanOutcome::Failed { .. }) | Err(_)),
                    "cleaning failed: {outcome:?}"
                );
                assert_eq!(
                    committed_by_key(&txn_items(&log).expect("the cleaned log reads back")),
                    committed_by_key(&appended),
                    "the cleaning changed what a reader that follows the markers finds"
                );
                let found: std::collections::BTreeSet<i64> = log
                    .open_transactions(|_| {})
                    .expect("the log reads")
                    .iter()
                    .map(|t| t.producer_id)
                    .collect();
                assert_eq!(
                    found,
                    open_producers(&appended),
                    "the log's open transactions after a cleaning"
                );
            }
        }
    }
}

/// The producers with a transaction open at the end of `items`: a transactional batch
/// and no marker of its producer after it.
fn open_producers(items: &[TxnItem]) -> std::collections::BTreeSet<i64> {
    let mut open = std::collections::BTreeSet::new();
    for item in items {
        match item {
            TxnItem::Records(Some(producer), _) => {
                open.insert(*producer);
            }
            TxnItem::Marker(producer, _) => {
                open.remove(producer);
            }
            TxnItem::Records(None, _) => {}
        }
    }
    open
}
