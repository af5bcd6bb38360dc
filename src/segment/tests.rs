//! Unit tests of one segment on the simulated disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use crate::io::sim::SimStorage;
use crate::record::{batches, set_base_offset, BatchBuilder};

const DIR: &str = "/seg";

fn config() -> LogConfig {
    LogConfig {
        index_interval_bytes: 100,
        index_bytes_max: 4096,
        ..LogConfig::default()
    }
}

fn storage() -> (Arc<SimStorage>, Arc<dyn Storage>) {
    let sim = SimStorage::new(11);
    let storage: Arc<dyn Storage> = sim.clone();
    storage.create_dir_all(Path::new(DIR)).unwrap();
    (sim, storage)
}

/// Batches of `records` records each, offsets from `base`, timestamps `10 * offset`.
fn batches_from(base: i64, count: usize, records: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut builder = BatchBuilder::new();
    for b in 0..count {
        let first = base + (b * records) as i64;
        for r in 0..records as i64 {
            builder.append(10 * (first + r), Some(b"k"), Some(&[7u8; 60]), &[]);
        }
        let at = out.len();
        builder.build_into(&mut out).unwrap();
        set_base_offset(&mut out[at..], first);
    }
    out
}

fn offsets_in(slice: &FileSlice) -> Vec<i64> {
    let bytes = slice.to_vec().unwrap();
    batches(&bytes)
        .map(|b| b.unwrap().header().base_offset)
        .collect()
}

#[test]
fn append_locate_and_read() {
    let (_sim, storage) = storage();
    let seg = Segment::create(storage, Path::new(DIR), 100, &config(), 0).unwrap();
    let data = batches_from(100, 20, 3);
    seg.append(&data, None).unwrap();
    assert_eq!(seg.size(), data.len() as u64);
    let (pos, header) = seg.locate(131, seg.size()).unwrap().unwrap();
    assert_eq!(header.base_offset, 130);
    assert!(pos > 0);
    assert!(seg.locate(160, seg.size()).unwrap().is_none());
    // One batch at least, then whole batches up to max_bytes, stopping below `up_to`.
    let one = seg.read(100, 1, i64::MAX).unwrap().unwrap();
    assert_eq!(offsets_in(&one), vec![100]);
    let capped = seg.read(100, 10_000, 109).unwrap().unwrap();
    assert_eq!(offsets_in(&capped), vec![100, 103, 106]);
    assert_eq!(seg.read_next_offset().unwrap(), Some(160));
    assert_eq!(seg.largest_timestamp().unwrap(), 1590);
}

/// The zeros an active segment writes ahead of its end stop at the last whole block of
/// the largest segment file that opens: a segment of Kafka's largest `segment.bytes`
/// (`i32::MAX`) ending in its last 64 KiB block was written to 2^31 bytes, and after a
/// crash there the partition did not open; then to `i32::MAX` bytes, where zeros ending
/// off a block's end were not recognised as written ahead after a crash, and stayed in
/// the segment as a torn batch.
#[test]
fn zeros_written_ahead_stop_at_the_largest_segment_s_last_whole_block() {
    let (_sim, storage) = storage();
    let seg = Segment::create(storage, Path::new(DIR), 0, &config(), 0).unwrap();
    let last_block_end = SEGMENT_BYTES_MAX - SEGMENT_BYTES_MAX % PREFILL_BYTES;
    assert_eq!(seg.zeros_ahead(100), Some(PREFILL_BYTES));
    assert_eq!(seg.zeros_ahead(last_block_end - 100), Some(last_block_end));
    assert_eq!(seg.zeros_ahead(last_block_end), None);
    assert_eq!(seg.zeros_ahead(SEGMENT_BYTES_MAX - 100), None);
    assert_eq!(seg.zeros_ahead(SEGMENT_BYTES_MAX), None);
}

/// The time a segment waited to roll is Kafka's `long` difference, wrapping: a batch
/// timestamped `i64::MIN` after one at 1,000 overflowed the subtraction (a panic in a
/// debug build, with the writer's lock held).
#[test]
fn time_waited_for_roll_wraps_as_kafka_does() {
    let (_sim, storage) = storage();
    let seg = Segment::create(storage, Path::new(DIR), 100, &config(), 0).unwrap();
    seg.append(&batches_from(100, 1, 1), None).unwrap();
    let first = 10 * 100;
    let waited = seg.time_waited_for_roll_ms(5_000, i64::MIN).unwrap();
    assert_eq!(waited, i64::MIN.wrapping_sub(first));
    assert_eq!(seg.time_waited_for_roll_ms(5_000, 3_000).unwrap(), 2_000);
}

/// A segment cut back to empty waits to roll by time from the cut, as a new one does: it
/// kept its creation time, and a cut segment created long before rolled at its next
/// append with no timestamp.
#[test]
fn a_segment_cut_back_to_empty_waits_to_roll_from_the_cut() {
    let (_sim, storage) = storage();
    let seg = Segment::create(storage, Path::new(DIR), 100, &config(), 0).unwrap();
    assert_eq!(seg.time_waited_for_roll_ms(9_000, -1).unwrap(), 9_000);
    seg.append(&batches_from(100, 1, 1), None).unwrap();
    seg.truncate_at(0, 8_000).unwrap();
    assert_eq!(seg.time_waited_for_roll_ms(9_000, -1).unwrap(), 1_000);
}

/// What [`Segment::read`] must return, computed from the batches themselves: the first
/// batch holding an offset `>= from`, then whole batches up to `max_bytes` (at least the
/// first), none whose last offset reaches `up_to`.
fn expected_read(
    batches: &[(u64, BatchHeader)],
    from: i64,
    max_bytes: u64,
    up_to: i64,
) -> Option<(u64, u64)> {
    let first = batches.iter().position(|(_, h)| h.last_offset() >= from)?;
    let (start, header) = batches[first];
    if header.last_offset() >= up_to {
        return None;
    }
    let limit = start.saturating_add(max_bytes.max(header.size() as u64));
    let mut end = start + header.size() as u64;
    for (pos, h) in &batches[first + 1..] {
        let next = pos + h.size() as u64;
        if next > limit || h.last_offset() >= up_to {
            break;
        }
        end = next;
    }
    Some((start, end - start))
}

/// Every batch of the segment with its position, by walking the headers.
fn headers(seg: &Segment) -> Vec<(u64, BatchHeader)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < seg.size() {
        let header = seg.read_header(pos, seg.size()).unwrap();
        out.push((pos, header));
        pos += header.size() as u64;
    }
    out
}

/// Reads from every offset, with byte limits and bounds of every kind, against
/// [`expected_read`]: the jump over indexed batches gives what walking the headers gives.
fn check_every_read(seg: &Segment, case: &str) {
    let batches = headers(seg);
    let (first, next) = (seg.base_offset(), seg.read_next_offset().unwrap().unwrap());
    for from in first..next {
        for max_bytes in [1, 150, 400, 1000, u64::MAX] {
            for up_to in [from, from + 1, from + 5, next - 1, next, i64::MAX] {
                let got = seg.read(from, max_bytes, up_to).unwrap();
                let got = got.map(|s| (s.position(), s.len()));
                let want = expected_read(&batches, from, max_bytes, up_to);
                assert_eq!(got, want, "{case}: read({from}, {max_bytes}, {up_to})");
            }
        }
    }
}

#[test]
fn reads_give_what_walking_the_headers_gives() {
    let (_sim, storage) = storage();
    let seg = Segment::create(storage.clone(), Path::new(DIR), 50, &config(), 0).unwrap();
    // Appends of one batch and of several, batches of 1 to 4 records: some appends are
    // indexed, some are not (the interval is 100 bytes, a record about 70).
    let mut next = 50;
    for (count, records) in [
        (1, 3),
        (3, 1),
        (1, 1),
        (2, 4),
        (1, 2),
        (4, 1),
        (1, 4),
        (1, 1),
    ] {
        seg.append(&batches_from(next, count, records), None)
            .unwrap();
        next += (count * records) as i64;
        check_every_read(&seg, &format!("after the append ending at {next}"));
    }
    // A cut drops the index entries past it; appends index on from there.
    let (pos, _) = seg.locate(60, seg.size()).unwrap().unwrap();
    seg.truncate_at(pos, 0).unwrap();
    check_every_read(&seg, "after the cut");
    let next = seg.read_next_offset().unwrap().unwrap();
    seg.append(&batches_from(next, 2, 3), None).unwrap();
    check_every_read(&seg, "after the append past the cut");
    // Reopened, with the indexes as the appends left them.
    drop(seg);
    let seg = Segment::open(storage, Path::new(DIR), 50, &config(), true, 0).unwrap();
    seg.cut_zeros_written_ahead().unwrap();
    check_every_read(&seg, "reopened");
}

/// A cut whose read of the batch at the cut fails reports the error and cuts nothing: it
/// used to cut by position alone, as at damage, which leaves an index entry before the
/// cut for an offset past it (Kafka's older indexes have one per append, for its last
/// offset), and the next append past the cut then failed the log.
#[test]
fn a_cut_whose_read_fails_reports_it_and_cuts_nothing() {
    use crate::io::sim::{FaultKind, SimOp};
    let (sim, storage) = storage();
    let seg = Segment::create(storage, Path::new(DIR), 0, &config(), 0).unwrap();
    seg.append(&batches_from(0, 30, 2), None).unwrap();
    let (pos, _) = seg.locate(20, seg.size()).unwrap().unwrap();
    let size = seg.size();
    sim.fail_nth(SimOp::Read, 1, FaultKind::Eio).unwrap();
    assert!(matches!(seg.truncate_at(pos, 0), Err(Error::Io { .. })));
    assert_eq!(seg.size(), size);
    assert_eq!(seg.read_next_offset().unwrap(), Some(60));
    assert!(seg.truncate_at(pos, 0).unwrap() > 0);
    assert_eq!(seg.read_next_offset().unwrap(), Some(20));
}

#[test]
fn truncate_at_a_batch_boundary_drops_later_index_entries() {
    let (_sim, storage) = storage();
    let seg = Segment::create(storage, Path::new(DIR), 0, &config(), 0).unwrap();
    seg.append(&batches_from(0, 30, 2), None).unwrap();
    let (pos, _) = seg.locate(20, seg.size()).unwrap().unwrap();
    let cut = seg.truncate_at(pos, 0).unwrap();
    assert!(cut > 0);
    assert_eq!(seg.size(), pos);
    assert_eq!(seg.read_next_offset().unwrap(), Some(20));
    assert!(seg.locate(20, seg.size()).unwrap().is_none());
    // Appending continues at the cut.
    seg.append(&batches_from(20, 1, 2), None).unwrap();
    assert_eq!(seg.read_next_offset().unwrap(), Some(22));
}

#[test]
fn recover_stops_at_the_first_bad_batch_and_rebuilds_indexes() {
    let (sim, storage) = storage();
    let seg = Segment::create(storage.clone(), Path::new(DIR), 0, &config(), 0).unwrap();
    let data = batches_from(0, 10, 2);
    seg.append(&data, None).unwrap();
    let (bad_pos, _) = seg.locate(14, seg.size()).unwrap().unwrap();
    drop(seg);
    let log_path = PathBuf::from(DIR).join(files::file_name(0, files::LOG_SUFFIX));
    sim.flip_bit(&log_path, bad_pos + 70, 3).unwrap();
    sim.remove_raw(&PathBuf::from(DIR).join(files::file_name(0, files::INDEX_SUFFIX)))
        .unwrap();
    let seg = Segment::open(storage, Path::new(DIR), 0, &config(), true, 0).unwrap();
    let scan = seg.recover(&mut Vec::new()).unwrap();
    assert_eq!(scan.valid_bytes, bad_pos);
    assert_eq!(scan.next_offset, Some(14));
    assert_eq!(scan.batches, 7);
    let stop = scan.stop.unwrap();
    assert_eq!(stop.position, bad_pos);
    assert!(stop.reason.contains("CRC"), "{}", stop.reason);
    // The rebuilt index leads every read to the right batch.
    for offset in 0..14 {
        let (_, h) = seg.locate(offset, seg.size()).unwrap().unwrap();
        assert!(h.base_offset <= offset && offset <= h.last_offset());
    }
    // A valid batch follows the bad one: the lookahead finds it.
    let after = seg
        .find_valid_batch_in(bad_pos + 1..u64::MAX, usize::MAX, &mut Vec::new())
        .unwrap();
    assert!(after.is_some_and(|p| p > bad_pos));
}

#[test]
fn a_deleted_segment_does_not_recreate_its_indexes() {
    let (sim, storage) = storage();
    let seg = Segment::create(storage.clone(), Path::new(DIR), 0, &config(), 0).unwrap();
    seg.append(&batches_from(0, 5, 1), None).unwrap();
    seg.trim_files().unwrap();
    let reopened = Segment::open(storage, Path::new(DIR), 0, &config(), false, 0).unwrap();
    drop(seg);
    let renamed = reopened.rename_to_deleted().unwrap();
    assert_eq!(renamed.len(), 3);
    let err = reopened.locate(0, reopened.size()).unwrap_err();
    assert!(
        matches!(err, Error::SegmentDeleted { base_offset: 0 }),
        "{err}"
    );
    let index = PathBuf::from(DIR).join(files::file_name(0, files::INDEX_SUFFIX));
    assert!(sim.read_raw(&index).is_none());
}

/// A closed segment of 40 batches (offsets 0..80) whose offset index entry 1 keeps its
/// offset but points at the next batch: a corrupt but well-ordered index, which only the
/// batch it points at can tell. Returns the sparse config it was written with.
fn segment_with_a_wrong_index_entry(sim: &SimStorage, storage: &Arc<dyn Storage>) -> LogConfig {
    let sparse = LogConfig {
        index_interval_bytes: 700,
        ..config()
    };
    let data = batches_from(0, 40, 2);
    let starts: Vec<u64> = {
        let mut at = 0usize;
        let mut v = Vec::new();
        for b in batches(&data) {
            v.push(at as u64);
            at += b.unwrap().header().size();
        }
        v
    };
    let seg = Segment::create(storage.clone(), Path::new(DIR), 0, &sparse, 0).unwrap();
    seg.append(&data, None).unwrap();
    seg.trim_files().unwrap();
    seg.flush().unwrap();
    drop(seg);
    let index = PathBuf::from(DIR).join(files::file_name(0, files::INDEX_SUFFIX));
    let mut bytes = sim.read_raw(&index).unwrap();
    assert!(bytes.len() >= 24, "a few entries");
    let pos = u32::from_be_bytes(bytes[12..16].try_into().unwrap()) as u64;
    let next = starts[starts.iter().position(|&s| s == pos).unwrap() + 1];
    let following = u32::from_be_bytes(bytes[20..24].try_into().unwrap()) as u64;
    assert!(
        next < following,
        "the wrong position keeps the entries increasing"
    );
    bytes[12..16].copy_from_slice(&(next as u32).to_be_bytes());
    sim.write_raw(&index, &bytes).unwrap();
    sparse
}

/// An index entry that points past the batch holding its offset (a corrupt but well-ordered
/// index of a closed segment) would make a read skip that offset; the segment notices the
/// mismatch at the entry's batch and rebuilds the index.
#[test]
fn a_wrong_index_entry_of_a_closed_segment_is_rebuilt() {
    let (sim, storage) = storage();
    let sparse = segment_with_a_wrong_index_entry(&sim, &storage);
    let seg = Segment::open(storage, Path::new(DIR), 0, &sparse, false, 0).unwrap();
    for offset in 0..80 {
        let (_, h) = seg.locate(offset, seg.size()).unwrap().unwrap();
        assert!(
            h.base_offset <= offset && offset <= h.last_offset(),
            "offset {offset} read from batch {}..={}",
            h.base_offset,
            h.last_offset()
        );
    }
}

/// The same wrong entry in a segment deleted while a reader holds it (retention, or a
/// cleaning's swap): the rebuild renamed its new index files over the segment's live
/// names, where a cleaned segment with the same base offset may keep its own (or, after
/// retention, none should be). A deleted segment is not rebuilt: the reader gets
/// `SegmentDeleted`, and the log's read moves to the next list of segments.
#[test]
fn a_deleted_segment_with_a_wrong_index_entry_is_not_rebuilt_over_the_live_names() {
    let (sim, storage) = storage();
    let sparse = segment_with_a_wrong_index_entry(&sim, &storage);
    let seg = Segment::open(storage, Path::new(DIR), 0, &sparse, false, 0).unwrap();
    seg.locate(0, seg.size()).unwrap(); // loads the indexes
    seg.rename_to_deleted().unwrap();
    let offsets: Vec<Result<_>> = (0..80).map(|o| seg.locate(o, seg.size())).collect();
    for suffix in [files::INDEX_SUFFIX, files::TIME_INDEX_SUFFIX] {
        let live = PathBuf::from(DIR).join(files::file_name(0, suffix));
        assert!(
            sim.read_raw(&live).is_none(),
            "{} was written",
            live.display()
        );
    }
    assert!(
        offsets
            .iter()
            .any(|r| matches!(r, Err(Error::SegmentDeleted { base_offset: 0 }))),
        "the wrong entry was met"
    );
}

/// A reader computing the largest timestamp (unknown after a truncation) races an append
/// of a newer batch. Storing the reader's result after the append used to lower the
/// segment's max timestamp: time lookups then skipped the new batch and time retention
/// could delete the segment early.
#[test]
fn largest_timestamp_of_a_racing_reader_does_not_lower_the_appenders() {
    let (_sim, storage) = storage();
    let seg = Segment::create(storage, Path::new(DIR), 0, &config(), 0).unwrap();
    seg.append(&batches_from(0, 4, 2), None).unwrap();
    let (pos, _) = seg.locate(4, seg.size()).unwrap().unwrap();
    seg.truncate_at(pos, 0).unwrap();
    // The reader reads the generation and computes from the bytes it sees ...
    let generation = seg.meta_mut().generation;
    let (stale, stale_offset) = seg.compute_largest_timestamp().unwrap();
    assert_eq!(stale, 30);
    // ... the writer appends a newer batch ...
    seg.append(&batches_from(4, 1, 2), None).unwrap();
    // ... and the reader stores what it computed.
    seg.store_largest_timestamp(generation, stale, stale_offset);
    assert_eq!(seg.largest_timestamp().unwrap(), 50);
}

/// The same race with a truncation in place of the append: a value computed from bytes
/// that were cut must not be stored.
#[test]
fn largest_timestamp_computed_before_a_truncation_is_not_stored() {
    let (_sim, storage) = storage();
    let seg = Segment::create(storage, Path::new(DIR), 0, &config(), 0).unwrap();
    seg.append(&batches_from(0, 4, 2), None).unwrap();
    let (pos, _) = seg.locate(6, seg.size()).unwrap().unwrap();
    seg.meta_mut().max_timestamp = None; // unknown, as after an open
    let generation = seg.meta_mut().generation;
    let (stale, stale_offset) = seg.compute_largest_timestamp().unwrap();
    assert_eq!(stale, 70);
    seg.truncate_at(pos, 0).unwrap();
    seg.store_largest_timestamp(generation, stale, stale_offset);
    assert_eq!(seg.largest_timestamp().unwrap(), 50);
}

/// `Segment::flush` held the index lock while it synced the index files, so an append
/// (which takes it to add an entry) and readers queued behind the disk. Syncs of the index
/// files are held here while a flush runs: the lock must be free meanwhile.
#[test]
fn flush_syncs_the_indexes_without_holding_their_lock() {
    let (sim, storage) = storage();
    let seg = Arc::new(Segment::create(storage, Path::new(DIR), 0, &config(), 0).unwrap());
    seg.append(&batches_from(0, 20, 2), None).unwrap();
    sim.hold_syncs("index");
    let flusher = {
        let seg = seg.clone();
        std::thread::spawn(move || seg.flush())
    };
    while sim.syncs_waiting() == 0 {
        std::thread::yield_now();
    }
    let free = seg.indexes.try_write().is_ok();
    sim.release_syncs();
    flusher.join().unwrap().unwrap();
    assert!(free, "the index lock is held through a sync");
}

/// An append takes the index lock shared, as readers do: with a reader holding it, an
/// append still adds its batches and their entries, and the reader's lookups go on
/// meanwhile. (It took the lock exclusively before, so every lookup of the segment waited
/// for the append's entries.)
#[test]
fn an_append_indexes_while_a_reader_holds_the_index_lock() {
    let (_sim, storage) = storage();
    let seg = Arc::new(Segment::create(storage, Path::new(DIR), 0, &config(), 0).unwrap());
    seg.append(&batches_from(0, 5, 2), None).unwrap();
    let entries_before = seg.with_indexes(|ix| ix.offset.entries()).unwrap();
    let reader = seg.indexes.read().unwrap();
    let (done_tx, done) = std::sync::mpsc::channel();
    let appender = {
        let seg = seg.clone();
        std::thread::spawn(move || {
            let appended = seg.append(&batches_from(10, 5, 2), None);
            done_tx.send(appended).unwrap();
        })
    };
    let appended = done.recv_timeout(std::time::Duration::from_secs(30));
    let ix = reader.as_ref().unwrap();
    let entries_after = ix.offset.entries();
    let found = ix.offset.lookup(19);
    drop(reader);
    appender.join().unwrap();
    appended
        .expect("the append waited for the reader's lock")
        .unwrap();
    assert!(entries_after > entries_before, "the append added entries");
    assert!(found.offset <= 19 && found.offset >= 10, "{found:?}");
    check_every_read(&seg, "after an append under a reader's lock");
}

/// The trim on roll cuts the index files while a reader holds the index lock, the reader
/// going on with the old maps, and only the swap of the maps waits for it.
#[test]
fn a_roll_cuts_the_index_files_while_a_reader_holds_the_index_lock() {
    let (_sim, storage) = storage();
    let config = LogConfig {
        index_interval_bytes: 1,
        ..config()
    };
    let seg = Arc::new(Segment::create(storage.clone(), Path::new(DIR), 0, &config, 0).unwrap());
    seg.append(&batches_from(0, 5, 2), None).unwrap();
    seg.append(&batches_from(10, 5, 2), None).unwrap();
    let entries = seg.with_indexes(|ix| ix.offset.entries()).unwrap();
    assert!(entries >= 2, "{entries} entries");
    let index_path = seg.path(files::INDEX_SUFFIX);
    let index_len = || {
        storage
            .open(&index_path, OpenMode::Read)
            .unwrap()
            .len()
            .unwrap()
    };
    assert!(
        index_len() > (entries * crate::index::OFFSET_ENTRY_BYTES) as u64,
        "preallocated"
    );
    let reader = seg.indexes.read().unwrap();
    let trimmer = {
        let seg = seg.clone();
        std::thread::spawn(move || seg.trim_files())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while index_len() != (entries * crate::index::OFFSET_ENTRY_BYTES) as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "the cut waited for the reader's lock"
        );
        std::thread::yield_now();
    }
    // Cut under the reader's lock; its lookups go on through the old map.
    let ix = reader.as_ref().unwrap();
    assert_eq!(ix.offset.entries(), entries);
    let found = ix.offset.lookup(19);
    assert!(found.offset >= 10 && found.offset <= 19, "{found:?}");
    drop(reader);
    trimmer.join().unwrap().unwrap();
    assert_eq!(
        seg.with_indexes(|ix| ix.offset.room()).unwrap(),
        0,
        "trimmed"
    );
    check_every_read(&seg, "after a trim under a reader's lock");
}

/// Readers look batches up (index, then headers) while one thread appends: every lookup
/// of a published offset finds the batch that holds it, whatever entries were being
/// stored at the time.
#[test]
fn lookups_racing_appends_find_the_batch_that_holds_the_offset() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
    let (_sim, storage) = storage();
    let config = LogConfig {
        index_interval_bytes: 1,
        index_bytes_max: 64 << 10,
        ..LogConfig::default()
    };
    let seg = Arc::new(Segment::create(storage, Path::new(DIR), 0, &config, 0).unwrap());
    let batches = 500;
    let data = batches_from(0, batches, 2);
    let (stop, looked) = (AtomicBool::new(false), AtomicU64::new(0));
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..2u64)
            .map(|r| {
                let (seg, stop, looked) = (&seg, &stop, &looked);
                s.spawn(move || {
                    let mut state = 0x9E37_79B9u64 ^ r;
                    while !stop.load(Relaxed) {
                        // The end first: the size read after it covers it.
                        let Some(end) = seg.last_batch().unwrap().map(|h| h.next_offset()) else {
                            std::thread::yield_now();
                            continue;
                        };
                        let size = seg.size();
                        state = state
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let offset = (state >> 33) as i64 % end;
                        let (_, header) = seg
                            .locate(offset, size)
                            .unwrap()
                            .unwrap_or_else(|| panic!("offset {offset} below {end} not found"));
                        assert!(
                            header.base_offset <= offset && offset <= header.last_offset(),
                            "offset {offset} found in {}..={}",
                            header.base_offset,
                            header.last_offset()
                        );
                        // The entries published last are whole: in order, as the appender
                        // stored them.
                        let last_two = seg
                            .with_indexes(|ix| {
                                let n = ix.offset.entries();
                                (n >= 2).then(|| (ix.offset.entry(n - 2), ix.offset.entry(n - 1)))
                            })
                            .unwrap();
                        if let Some((a, b)) = last_two {
                            assert!(
                                a.offset < b.offset && a.position < b.position,
                                "{a:?} {b:?}"
                            );
                        }
                        looked.fetch_add(1, Relaxed);
                    }
                })
            })
            .collect();
        let batch_len = data.len() / batches;
        for (i, batch) in data.chunks(batch_len).enumerate() {
            seg.append(batch, None).unwrap();
            // Every tenth append waits for a lookup, so that the two interleave.
            if i % 10 == 0 {
                let seen = looked.load(Relaxed);
                while looked.load(Relaxed) == seen && !readers.iter().any(|r| r.is_finished()) {
                    std::thread::yield_now();
                }
            }
        }
        stop.store(true, Relaxed);
        for reader in readers {
            reader.join().expect("a reader failed");
        }
    });
    assert!(looked.load(Relaxed) >= (batches / 10) as u64);
    check_every_read(&seg, "after racing lookups");
}
