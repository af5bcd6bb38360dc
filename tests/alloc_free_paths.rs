//! The append, fetch, replication and recovery paths allocate nothing per record: this
//! test binary's global allocator counts the allocations of the calling thread, and each
//! path runs over batches of a few records and over batches of many (same batch count),
//! on the real disk.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;
use std::sync::Arc;

use partlog::io::real::RealStorage;
use partlog::log::{Log, LogOpenOptions};
use partlog::record::BatchBuilder;
use partlog::replica::{Acks, Partition, ReplicaConfig};
use partlog::{LogConfig, ManualClock};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every call goes to `System` unchanged; counting touches only a thread-local
// integer, which neither allocates nor unwinds.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations `f` made on this thread, and what it returned.
fn allocations<T>(f: impl FnOnce() -> T) -> (u64, T) {
    let before = ALLOCATIONS.with(Cell::get);
    let out = f();
    (ALLOCATIONS.with(Cell::get) - before, out)
}

const TIMEOUT_MS: i64 = 30_000;
const BATCHES: usize = 20;

fn replica(root: &Path, name: &str, id: i32, clock: &Arc<ManualClock>) -> Partition {
    let options = LogOpenOptions {
        config: LogConfig::default(),
        clock: clock.clone(),
        ..LogOpenOptions::new(RealStorage::shared(), root.join(name))
    };
    let log = Arc::new(Log::open(options).expect("open log").0);
    let config = ReplicaConfig {
        min_insync_replicas: 2,
        ..ReplicaConfig::new(id)
    };
    Partition::new(log, config, clock.clone(), 0)
}

/// `BATCHES` batches of `records` records each, 20-byte values.
fn batches(records: usize) -> Vec<Vec<u8>> {
    let value = [b'v'; 20];
    (0..BATCHES)
        .map(|b| {
            let mut builder = BatchBuilder::new();
            for i in 0..records {
                let key = ((b * records + i) as u64).to_be_bytes();
                builder.append(1_000 + i as i64, Some(&key), Some(&value), &[]);
            }
            builder.build().expect("batch")
        })
        .collect()
}

#[derive(Debug, PartialEq, Eq)]
struct Counts {
    appends: u64,
    first_fetch: u64,
    apply: u64,
    hw_fetch: u64,
    consumer_read: u64,
}

/// One round: the leader takes `BATCHES` batches of `records` records with `acks=all`,
/// the follower fetches them and applies them, its next fetch moves the high watermark
/// over them and completes the appends, and a consumer reads from the log start.
fn round(leader: &Partition, follower: &Partition, records: usize) -> Counts {
    let mut input = batches(records);
    let mut handles = Vec::with_capacity(BATCHES);
    let (appends, ()) = allocations(|| {
        for b in &mut input {
            handles.push(leader.append(b, Acks::All, TIMEOUT_MS).expect("append"));
        }
    });
    let request = follower.fetch_request(1 << 20);
    let (first_fetch, response) = allocations(|| leader.fetch(&request).expect("fetch"));
    let (apply, _) = allocations(|| follower.apply_fetch(&response).expect("apply"));
    assert_eq!(
        follower.log().log_end_offset(),
        leader.log().log_end_offset()
    );
    let request = follower.fetch_request(1 << 20);
    let (hw_fetch, _) = allocations(|| leader.fetch(&request).expect("fetch"));
    assert_eq!(leader.high_watermark(), leader.log().log_end_offset());
    for h in &handles {
        assert!(matches!(h.poll(), Some(Ok(_))), "completed");
    }
    let (consumer_read, slice) = allocations(|| leader.read_committed(0, 1 << 20).expect("read"));
    assert!(slice.is_some());
    Counts {
        appends,
        first_fetch,
        apply,
        hw_fetch,
        consumer_read,
    }
}

/// The counts of a second round of `records` records a batch, after a first that grew
/// what stays (the follower's read buffer, the leader's list of waiting appends).
fn steady_round(records: usize) -> Counts {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(1_000_000));
    let leader = replica(dir.path(), "leader", 0, &clock);
    let follower = replica(dir.path(), "follower", 1, &clock);
    leader
        .become_leader(1, vec![0, 1], vec![0, 1])
        .expect("leader");
    follower.become_follower(1, 0).expect("follower");
    round(&leader, &follower, records);
    round(&leader, &follower, records)
}

/// Once warm, a fetch (the one that copies records, the one that moves the high watermark
/// and completes appends) and a consumer's read allocate nothing, a follower applies an
/// answer without allocating, and an `acks=all` append allocates its completion handle
/// alone: the same with 2 records a batch as with 500.
#[test]
fn replication_allocates_nothing_per_record() {
    let expected = Counts {
        appends: BATCHES as u64,
        first_fetch: 0,
        apply: 0,
        hw_fetch: 0,
        consumer_read: 0,
    };
    assert_eq!(steady_round(2), expected, "2 records a batch");
    assert_eq!(steady_round(500), expected, "500 records a batch");
}

/// The log's own paths on the real disk, with `records` records a batch: the allocations
/// of `BATCHES` leader appends once warm, and of an open that recovers the whole segment
/// (and the bytes it recovered).
fn log_paths(records: usize) -> (u64, u64, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(1_000_000));
    let open = |clean_shutdown: bool| {
        let options = LogOpenOptions {
            config: LogConfig::default(),
            clock: clock.clone(),
            clean_shutdown,
            recovery_point: Some(0),
            ..LogOpenOptions::new(RealStorage::shared(), dir.path().join("log"))
        };
        Log::open(options).expect("open")
    };
    let (log, _) = open(true);
    log.append_as_leader(&mut batches(1)[0], 1).expect("append");
    let mut input = batches(records);
    let (appends, ()) = allocations(|| {
        for b in &mut input {
            log.append_as_leader(b, 1).expect("append");
        }
    });
    let end = log.log_end_offset();
    drop(log);
    let (recovery, (log, report)) = allocations(|| open(false));
    assert_eq!(log.log_end_offset(), end);
    (appends, recovery, report.recovered_bytes)
}

/// A leader append to the log allocates nothing once warm, and recovering a segment
/// allocates as much for 500 records a batch as for 2: what it allocates is per segment.
#[test]
fn log_appends_and_recovery_allocate_nothing_per_record() {
    let (few_appends, few_recovery, few_bytes) = log_paths(2);
    let (many_appends, many_recovery, many_bytes) = log_paths(500);
    assert_eq!((few_appends, many_appends), (0, 0));
    assert!(
        many_bytes > 100 * few_bytes / 2,
        "{few_bytes} and {many_bytes} recovered"
    );
    assert_eq!(few_recovery, many_recovery);
}
