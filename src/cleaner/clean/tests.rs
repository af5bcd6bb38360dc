//! The cleaning of one log: copies, their limits, a panic midway.

use super::*;
use crate::config::{CleanupPolicy, LogConfig};
use crate::io::sim::SimStorage;
use crate::log::LogOpenOptions;
use crate::record::BatchBuilder;

/// A cleaning that panics after writing copies (a bug the cleaner contains, going on
/// with later cleanings in the same process) removes them as it unwinds: left, one
/// would mark a later cleaning's swap as unfinished, and a crash during that swap
/// would make recovery undo it after its originals were renamed away.
#[test]
fn a_cleaning_that_panics_leaves_no_copies() {
    let sim = SimStorage::new(5);
    let (log, _) = Log::open(LogOpenOptions::new(sim.storage(), "/data/t-0")).unwrap();
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut copies = Copies {
            log: &log,
            bases: Vec::new(),
        };
        for base in [0, 200] {
            copies.bases.push(base);
            let mut file = log.create_cleaned(base).unwrap();
            file.append(b"a copy").unwrap();
        }
        panic!("a bug in the second group's copy");
    }));
    assert!(unwound.is_err());
    let left: Vec<String> = sim
        .storage()
        .list_dir(std::path::Path::new("/data/t-0"))
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .filter(|name| name.ends_with(crate::segment::files::CLEANED_SUFFIX))
        .collect();
    assert!(left.is_empty(), "copies left: {left:?}");

    // Dropped without a panic (the swap or an error's own removal owns them then),
    // the copies stay.
    log.create_cleaned(400).unwrap().append(b"a copy").unwrap();
    drop(Copies {
        log: &log,
        bases: vec![400],
    });
    assert!(sim
        .storage()
        .exists(&std::path::Path::new("/data/t-0").join("00000000000000000400.log.cleaned")));
}

/// Three rounds over four keys, a segment each, every record its own batch.
fn three_rounds(sim: &Arc<SimStorage>) -> Log {
    three_rounds_of(sim, 0)
}

/// Three segments of four one-record batches each, round `r` writing keys `r * step`
/// to `r * step + 3` (with a step of 0 the later rounds supersede the earlier).
fn three_rounds_of(sim: &Arc<SimStorage>, step: u8) -> Log {
    let mut options = LogOpenOptions::new(sim.storage(), "/data/t-0");
    options.config = LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        segment_bytes: 2048,
        ..LogConfig::default()
    };
    let (log, _) = Log::open(options).unwrap();
    for round in 0..3u8 {
        for key in 0..4u8 {
            let mut builder = BatchBuilder::new();
            let key = round * step + key;
            builder.append(1_000, Some(&[b'k', key]), Some(&[round; 40]), &[]);
            log.append_as_leader(&mut builder.build().unwrap(), 0)
                .unwrap();
        }
        log.force_roll().unwrap();
    }
    log
}

/// Every record of `log`: offset, key and value.
fn records(log: &Log) -> Vec<(i64, Vec<u8>, Vec<u8>)> {
    let end = log.log_end_offset();
    let mut out = Vec::new();
    for slice in log.read_all(log.log_start_offset(), end).unwrap() {
        let bytes = slice.to_vec().unwrap();
        for batch in crate::record::batches(&bytes) {
            for r in batch.unwrap().records().unwrap() {
                let r = r.unwrap();
                let (key, value) = (r.key.unwrap_or_default(), r.value.unwrap_or_default());
                out.push((r.offset, key.to_vec(), value.to_vec()));
            }
        }
    }
    out
}

fn clean_within(log: &Log, limit: u64) -> Result<CleanReport> {
    let range = cleanable(log, None, 2_000).unwrap();
    let mut map = OffsetMap::with_memory(1 << 16);
    let mut throttle = Throttle::unlimited();
    let truncations = log.truncation_count();
    let _claim = log.begin_cleaning().unwrap();
    clean_log_once(
        log,
        &range,
        &mut map,
        (2_000, &mut throttle, truncations),
        limit,
    )
}

fn copies_left(sim: &Arc<SimStorage>) -> usize {
    sim.storage()
        .list_dir(std::path::Path::new("/data/t-0"))
        .unwrap()
        .into_iter()
        .filter(|e| e.name.ends_with(crate::segment::files::CLEANED_SUFFIX))
        .count()
}

/// A group whose cleaned copy would grow past the limit (a segment's 2 GiB of
/// positions) is cleaned in halves: swapped in, such a copy would leave a segment that
/// no longer opens.
#[test]
fn a_copy_that_would_pass_the_limit_is_cleaned_in_halves() {
    let sim = SimStorage::new(6);
    // Every record live: a copy is as large as what it copies.
    let log = three_rounds_of(&sim, 4);
    let segments = log.inactive_segments();
    assert_eq!(segments.len(), 3);
    let sizes: Vec<u64> = segments.iter().map(|s| s.size()).collect();
    assert!(sizes.iter().sum::<u64>() <= 2048, "one group: {sizes:?}");
    let before = records(&log);
    assert_eq!(before.len(), 12);

    // Room for the last two rounds, not for all three: the group fails, and its halves
    // (the first round; the last two) fit.
    let report = clean_within(&log, sizes[1] + sizes[2]).unwrap();
    assert_eq!(report.segments_before, 3);
    assert_eq!(report.segments_after, 2, "{report:?}");
    // The records of the halves, counted once: not those of the group given up.
    assert_eq!(report.records.records_read, 12, "{report:?}");
    assert!(!report.aborted);
    assert_eq!(records(&log), before);
    assert_eq!(copies_left(&sim), 0);

    // With room, the same log's segments clean as one group.
    let report = clean_within(&log, SEGMENT_BYTES_MAX).unwrap();
    assert_eq!(report.segments_after, 1);
    assert_eq!(records(&log), before);
}

/// A segment whose cleaned copy alone would pass the limit fails the cleaning, which
/// leaves the log as it was. It used to be left as it was while the groups after it
/// were cleaned and the checkpoint passed it: it kept values that later records of
/// their keys superseded, so that a later cleaning, dropping those records' tombstones
/// past their horizon, brought the values back.
#[test]
fn a_segment_whose_copy_would_pass_the_limit_fails_the_cleaning() {
    let sim = SimStorage::new(6);
    let log = three_rounds(&sim);
    let segments = log.inactive_segments();
    let sizes: Vec<u64> = segments.iter().map(|s| s.size()).collect();
    let before = records(&log);

    // Below the last round's size, which is all live: the group fails, then its second
    // half (the last two rounds), then the last round alone.
    let failed = clean_within(&log, sizes[2] - 1);
    let Err(Error::CleanedSegmentTooLarge { base_offset, limit }) = failed else {
        panic!("the cleaning must fail: {failed:?}");
    };
    assert_eq!(base_offset, segments[2].base_offset());
    assert_eq!(limit, sizes[2] - 1);
    assert_eq!(records(&log), before);
    let now: Vec<u64> = log.inactive_segments().iter().map(|s| s.size()).collect();
    assert_eq!(now, sizes);
    assert_eq!(copies_left(&sim), 0);
}

/// A cleaning's segments may go while it runs (a follower starting over at its leader's
/// log start deletes them; retention, which did too, now waits for the cleaning): a
/// group whose segments were removed copies nothing. Its last batch was read through its indexes, which a deleted segment
/// no longer loads (a cleaned copy's come in unloaded): the cleaning failed, and the
/// cleaner marked the partition uncleanable until it was forgiven, so that nothing of it
/// was compacted any more.
#[test]
fn a_group_that_retention_removed_during_the_cleaning_copies_nothing() {
    let sim = SimStorage::new(8);
    let log = three_rounds(&sim);
    // The cleaned copy comes in with its indexes not loaded.
    clean_within(&log, SEGMENT_BYTES_MAX).unwrap();
    let group = log.inactive_segments();
    assert_eq!(group.len(), 1);
    // As the cleaning lists the group, DeleteRecords passes it and retention deletes it.
    log.set_high_watermark(log.log_end_offset());
    log.advance_log_start_offset(log.log_end_offset()).unwrap();
    assert_eq!(log.delete_old_segments().unwrap().segments_deleted, 1);

    let (map, transactions) = (OffsetMap::with_memory(1 << 16), Transactions::default());
    let rules = FilterRules {
        map: &map,
        now_ms: 2_000,
        delete_retention_ms: log.config().delete_retention_ms,
        end_offset: log.log_end_offset(),
        transactions: &transactions,
        indexed_aborts: &[],
    };
    let copied = clean_group(
        &log,
        &group,
        (&rules, &Superseded::default()),
        (
            &mut ScanBuffers::default(),
            &mut FilterScratch::default(),
            SEGMENT_BYTES_MAX,
        ),
        &mut Throttle::unlimited(),
        &mut FilterStats::default(),
    );
    assert!(matches!(copied, Ok(GroupCopy::Nothing)), "{copied:?}");
    assert_eq!(copies_left(&sim), 0);
}
