//! Damaged `.index` / `.timeindex` files (missing, garbage, zeroed, out of order, pointing
//! past the log, cut short), of the active and of an older segment, after a clean and an
//! unclean shutdown: the log opens, serves every offset and timestamp, and the index file
//! holds only true entries afterwards.
//!
//! What broke before these tests: a missing or short index of an *older* segment could not
//! be rebuilt (its file was mapped at its old length, so the first rebuilt entry failed with
//! "index is full" and every read of the segment failed); a zeroed offset index read as one
//! `(base, 0)` entry and was never rebuilt; a time index naming offsets past the segment, or
//! an offset index whose last entry is no batch start, passed the sanity check; out-of-order
//! entries left stale bytes in the file. Fixed in `segment::Segment::load_indexes` /
//! `indexes_fit_log` / `rebuild_with_room` and `index::file::IndexFile::open` (damage flag).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{
    backends, batch, check_every_offset, file_bytes, options, small_config, write_file, Backend,
};
use partlog::io::sim::SimRng;
use partlog::log::Log;
use partlog::record::batches;
use partlog::ManualClock;

const BATCHES: i64 = 50;

#[derive(Debug, Clone, Copy)]
enum Damage {
    Missing,
    Garbage,
    /// Increasing entries that look plausible but point at the wrong places.
    PlausibleGarbage,
    Zeroed,
    NonMonotonic,
    BeyondLog,
    Short,
}

const DAMAGES: [Damage; 7] = [
    Damage::Missing,
    Damage::Garbage,
    Damage::PlausibleGarbage,
    Damage::Zeroed,
    Damage::NonMonotonic,
    Damage::BeyondLog,
    Damage::Short,
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Offset,
    Time,
}

impl Kind {
    fn suffix(self) -> &'static str {
        match self {
            Kind::Offset => ".index",
            Kind::Time => ".timeindex",
        }
    }
    fn entry_bytes(self) -> usize {
        match self {
            Kind::Offset => 8,
            Kind::Time => 12,
        }
    }
}

/// Batch `i` holds offsets `2i, 2i+1` with timestamps `1000i, 1000i+1`.
fn build(backend: &Backend, name: &str, clean: bool) -> (Vec<i64>, i64) {
    let (log, _) = common::open(backend, name, small_config());
    for i in 0..BATCHES {
        log.append_as_leader(&mut batch(2, 60, 1000 * i), 1)
            .unwrap();
    }
    assert!(log.segment_count() >= 3, "{}", log.segment_count());
    let bases = log.segments().iter().map(|s| s.base_offset()).collect();
    let end = log.flush().unwrap();
    if clean {
        log.close().unwrap();
    }
    drop(log);
    (bases, end)
}

fn damage(backend: &Backend, path: &Path, kind: Kind, damage: Damage) {
    let exists = backend.storage.exists(path);
    let orig = if exists {
        file_bytes(backend, path)
    } else {
        Vec::new()
    };
    let size = kind.entry_bytes();
    let len = orig.len().max(4 * size);
    let bytes: Vec<u8> = match damage {
        Damage::Missing => {
            if exists {
                backend.storage.remove_file(path).unwrap();
            }
            return;
        }
        Damage::Garbage => {
            let mut b = vec![0u8; len];
            SimRng::new(len as u64).fill_bytes(&mut b);
            b
        }
        Damage::PlausibleGarbage => (0..len / size)
            .flat_map(|i| {
                let i = i as i32;
                match kind {
                    Kind::Offset => [(3 * i + 1).to_be_bytes(), (7 * i + 5).to_be_bytes()].concat(),
                    Kind::Time => [
                        (i as i64 + 1).to_be_bytes().to_vec(),
                        (1000 + i).to_be_bytes().to_vec(),
                    ]
                    .concat(),
                }
            })
            .collect(),
        Damage::Zeroed => vec![0u8; orig.len()],
        Damage::NonMonotonic => {
            let mut b = orig.clone();
            let n = b.len() / size;
            assert!(n >= 2, "{} has {n} entries", path.display());
            // Swap the first and the last entries.
            let (head, tail) = b.split_at_mut((n - 1) * size);
            head[..size].swap_with_slice(&mut tail[..size]);
            b
        }
        Damage::BeyondLog => {
            let mut b = orig.clone();
            for entry in b.chunks_exact_mut(size) {
                match kind {
                    Kind::Offset => {
                        let pos = i32::from_be_bytes(entry[4..8].try_into().unwrap());
                        entry[4..8].copy_from_slice(&(pos + 1_000_000).to_be_bytes());
                    }
                    Kind::Time => {
                        let rel = i32::from_be_bytes(entry[8..12].try_into().unwrap());
                        entry[8..12].copy_from_slice(&(rel + 1_000_000).to_be_bytes());
                    }
                }
            }
            b
        }
        Damage::Short => {
            let mut b = orig.clone();
            assert!(b.len() > 3);
            b.truncate(b.len() - 3);
            b
        }
    };
    write_file(backend, path, &bytes);
}

fn reopen(backend: &Backend, name: &str, clean: bool, end: i64) -> Log {
    let mut opts = options(
        backend,
        name,
        small_config(),
        Arc::new(ManualClock::new(1_000_000)),
    );
    opts.clean_shutdown = clean;
    // Unclean with a known recovery point: only the active segment is scanned, so a
    // damaged older index is met by the lazy load, not rebuilt by the scan.
    opts.recovery_point = (!clean).then_some(end);
    let (log, report) = Log::open(opts).expect("open with a damaged index");
    assert!(report.damage.is_none(), "{report:?}");
    log
}

fn check_timestamps(log: &Log) {
    for i in 0..BATCHES {
        for (ts, offset) in [(1000 * i, 2 * i), (1000 * i + 1, 2 * i + 1)] {
            let found = log.offset_for_timestamp(ts).unwrap().unwrap();
            assert_eq!((found.timestamp, found.offset), (ts, offset), "ts {ts}");
        }
        if i + 1 < BATCHES {
            let found = log.offset_for_timestamp(1000 * i + 2).unwrap().unwrap();
            assert_eq!(found.offset, 2 * i + 2, "ts {}", 1000 * i + 2);
        }
    }
    assert!(log.offset_for_timestamp(1000 * BATCHES).unwrap().is_none());
}

/// `(position, base offset, last offset, max timestamp)` of each batch of a segment file.
fn segment_batches(bytes: &[u8]) -> Vec<(u32, i64, i64, i64)> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    for b in batches(bytes) {
        let h = *b.unwrap().header();
        out.push((pos as u32, h.base_offset, h.last_offset(), h.max_timestamp));
        pos += h.size();
    }
    out
}

/// Every entry of the index files of the segment at `base` is true: an offset entry
/// `(o, p)` names a batch boundary `p` with `o` at or above that batch's base offset (so a
/// scan from `p` finds `o`); a time entry `(t, o)` names an offset of the segment such that
/// no earlier batch holds a timestamp above `t`. Entries stop at the first zeroed one.
fn check_index_files(backend: &Backend, dir: &Path, base: i64) {
    let log_path = dir.join(format!("{base:020}.log"));
    let segment = segment_batches(&file_bytes(backend, &log_path));
    let last = segment.last().map_or(base, |b| b.2);
    let offset_path: PathBuf = dir.join(format!("{base:020}.index"));
    let bytes = file_bytes(backend, &offset_path);
    assert_eq!(bytes.len() % 8, 0, "{}", offset_path.display());
    let mut prev: Option<(i32, i32)> = None;
    for (i, e) in bytes.chunks_exact(8).enumerate() {
        let rel = i32::from_be_bytes(e[..4].try_into().unwrap());
        let pos = i32::from_be_bytes(e[4..].try_into().unwrap());
        if i > 0 && rel == 0 && pos == 0 {
            break;
        }
        if let Some((pr, pp)) = prev {
            assert!(
                rel > pr && pos > pp,
                "{}: entry {i} out of order",
                offset_path.display()
            );
        }
        prev = Some((rel, pos));
        let offset = base + rel as i64;
        let at = segment
            .iter()
            .find(|b| b.0 == pos as u32)
            .unwrap_or_else(|| {
                panic!(
                    "{}: entry {i} position {pos} is no batch start",
                    offset_path.display()
                )
            });
        assert!(
            at.1 <= offset && offset <= last,
            "{}: entry {i} ({offset}, {pos})",
            offset_path.display()
        );
    }
    let time_path = dir.join(format!("{base:020}.timeindex"));
    let bytes = file_bytes(backend, &time_path);
    assert_eq!(bytes.len() % 12, 0, "{}", time_path.display());
    for (i, e) in bytes.chunks_exact(12).enumerate() {
        let ts = i64::from_be_bytes(e[..8].try_into().unwrap());
        let rel = i32::from_be_bytes(e[8..].try_into().unwrap());
        if ts == 0 && rel == 0 {
            break;
        }
        let offset = base + rel as i64;
        assert!(
            offset >= base && offset <= last,
            "{}: entry {i} offset {offset}",
            time_path.display()
        );
        for b in segment.iter().take_while(|b| b.2 < offset) {
            assert!(
                b.3 <= ts,
                "{}: entry {i} ({ts}, {offset}) skips timestamp {}",
                time_path.display(),
                b.3
            );
        }
    }
}

/// Every damage of `kind` on the older and the active segment, on both backends.
fn scenario(clean: bool, kind: Kind) {
    for backend in backends() {
        let template = format!("template-{clean}-0");
        let (bases, end) = build(&backend, &template, clean);
        let mut case = 0;
        for older in [true, false] {
            for d in DAMAGES {
                case += 1;
                let name = format!("c{case}-0");
                let ctx = format!(
                    "{} clean={clean} {kind:?} older={older} {d:?}",
                    backend.name
                );
                // The failing case is the last one printed.
                eprintln!("case {ctx}");
                let dir = backend.root.join(&name);
                common::copy_dir(&backend, &backend.root.join(&template), &dir);
                let base = if older {
                    bases[0]
                } else {
                    bases[bases.len() - 1]
                };
                let path = dir.join(format!("{base:020}{}", kind.suffix()));
                damage(&backend, &path, kind, d);
                let log = reopen(&backend, &name, clean, end);
                assert_eq!(log.log_end_offset(), 2 * BATCHES, "{ctx}");
                assert_eq!(check_every_offset(&log), (2 * BATCHES) as usize);
                check_timestamps(&log);
                // Appends go on and land in the indexes.
                log.append_as_leader(&mut batch(2, 60, 1000 * BATCHES), 1)
                    .unwrap();
                check_every_offset(&log);
                log.close().unwrap();
                drop(log);
                for &b in &bases {
                    check_index_files(&backend, &dir, b);
                }
            }
        }
    }
}

#[test]
fn damaged_offset_index_after_clean_shutdown() {
    scenario(true, Kind::Offset);
}

#[test]
fn damaged_time_index_after_clean_shutdown() {
    scenario(true, Kind::Time);
}

#[test]
fn damaged_offset_index_after_crash() {
    scenario(false, Kind::Offset);
}

#[test]
fn damaged_time_index_after_crash() {
    scenario(false, Kind::Time);
}

/// The first segment's offset index entries `(relative offset, position)`, up to its
/// zeros, and the index's bytes.
fn first_index(backend: &Backend) -> (PathBuf, Vec<u8>, Vec<(i32, i32)>) {
    let path = backend.root.join("t-0").join(format!("{:020}.index", 0));
    let index = file_bytes(backend, &path);
    let entries: Vec<(i32, i32)> = index
        .chunks_exact(8)
        .map(|e| {
            let word = |at: usize| i32::from_be_bytes(e[at..at + 4].try_into().unwrap());
            (word(0), word(4))
        })
        .take_while(|&(_, position)| position > 0)
        .collect();
    assert!(entries.len() >= 4, "{entries:?}");
    (path, index, entries)
}

/// An entry, not the first nor the last, whose offset lies more than one past the one
/// before it.
fn middle_entry(entries: &[(i32, i32)]) -> usize {
    (1..entries.len() - 1)
        .find(|&k| entries[k].0 > entries[k - 1].0 + 2)
        .expect("entries a few batches apart")
}

/// The batches a read from offset 0 of `max_bytes` below `up_to` returns, each whole and
/// valid.
fn read_from_start(log: &Log, max_bytes: u64, up_to: Option<i64>) -> Vec<(i64, i64)> {
    let slice = log.read(0, max_bytes, up_to).unwrap().expect("a slice");
    let bytes = slice.to_vec().unwrap();
    batches(&bytes)
        .map(|b| {
            let b = b.expect("whole batches");
            b.validate().expect("a valid batch");
            (b.header().base_offset, b.header().last_offset())
        })
        .collect()
}

/// A middle entry of a trusted offset index (a segment closed cleanly) names an offset
/// lower than its batch's, still between its neighbours, so the index opens as it is.
/// A read bounded below the batch's offsets (a high watermark) took the entry for one
/// below the bound and served every batch before its position: records above the bound.
/// The read now checks the batch an entry it jumps to points at, and rebuilds the index.
#[test]
fn a_read_bounded_below_a_lowered_index_entry_serves_nothing_above_the_bound() {
    for backend in backends() {
        build(&backend, "t-0", true);
        let (path, mut index, entries) = first_index(&backend);
        let k = middle_entry(&entries);
        let lowered = entries[k - 1].0 + 1;
        index[k * 8..k * 8 + 4].copy_from_slice(&lowered.to_be_bytes());
        write_file(&backend, &path, &index);

        let (log, _) = common::reopen(&backend, "t-0", small_config(), true, None);
        let up_to = i64::from(lowered) + 1;
        let read = read_from_start(&log, 1 << 20, Some(up_to));
        assert!(
            read.iter().all(|&(_, last)| last < up_to),
            "{}: a read bounded at {up_to} served {read:?}",
            backend.name
        );
        assert_eq!(read.first().map(|b| b.0), Some(0), "{}", backend.name);
        assert_eq!(check_every_offset(&log), (2 * BATCHES) as usize);
    }
}

/// A middle entry whose position points inside a batch: the read that jumps there meets
/// no header, and ended its slice at that position, inside the batch before. It now walks
/// from the first batch instead, and serves whole batches.
#[test]
fn a_read_through_an_entry_pointing_inside_a_batch_serves_whole_batches() {
    for backend in backends() {
        build(&backend, "t-0", true);
        let (path, mut index, entries) = first_index(&backend);
        let k = middle_entry(&entries);
        let inside = entries[k].1 + 7;
        index[k * 8 + 4..k * 8 + 8].copy_from_slice(&inside.to_be_bytes());
        write_file(&backend, &path, &index);

        let (log, _) = common::reopen(&backend, "t-0", small_config(), true, None);
        let up_to = i64::from(entries[k].0) + 1;
        let read = read_from_start(&log, 1 << 20, Some(up_to));
        assert!(read.iter().all(|&(_, last)| last < up_to), "{read:?}");
        assert_eq!(read.first().map(|b| b.0), Some(0), "{}", backend.name);
        assert_eq!(check_every_offset(&log), (2 * BATCHES) as usize);
    }
}

/// A damaged header at a position the (healthy) index names, where a read's byte limit
/// makes it jump: the read serves the batches before the damage, as it did before reads
/// checked where entries point, rather than failing, or rebuilding the index at every
/// read.
#[test]
fn a_read_that_meets_a_damaged_header_the_index_points_at_serves_what_lies_before() {
    for backend in backends() {
        build(&backend, "t-0", true);
        let (_, _, entries) = first_index(&backend);
        let k = middle_entry(&entries);
        let segment = backend.root.join("t-0").join(format!("{:020}.log", 0));
        let mut bytes = file_bytes(&backend, &segment);
        let magic = entries[k].1 as usize + 16;
        bytes[magic] ^= 0x40;
        write_file(&backend, &segment, &bytes);

        let (log, _) = common::reopen(&backend, "t-0", small_config(), true, None);
        let read = read_from_start(&log, entries[k].1 as u64 + 1, None);
        let damaged_base = read.last().map_or(0, |b| b.1 + 1);
        assert!(!read.is_empty(), "{}", backend.name);
        assert!(
            damaged_base <= i64::from(entries[k].0),
            "{}: the read stops before the damaged batch: {read:?}",
            backend.name
        );
    }
}
