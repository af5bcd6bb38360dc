//! Reads racing a truncation above what they may read, threads against each other. A
//! replica that steps down cuts its log where it diverged from the new leader, always above
//! its high watermark: a consumer's read bounded by that watermark, and a follower's fetch
//! the replica answered while it still led, must not fail for it. `replica_threads` found
//! both failing with "unexpected end of file". A scrub, which checks committed batches but
//! read past the high watermark, and a lookup by time bounded by it, failed the same way
//! (the last two tests show it).
//!
//! Bounded by iteration counts, not time.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use common::threads::{join, Rng, StopAll};
use common::{batch, log_records};
use partlog::io::sim::SimStorage;
use partlog::record::batches;
use partlog::replica::{Acks, FetchRequest, Partition, ReplicaConfig, ScrubOutcome};
use partlog::{Error, ManualClock};

const BATCHES: i64 = 60;
const ROUNDS: usize = 400;
/// Operations the thread racing the cuts must have done before they stop.
const MIN_DONE: usize = 100;

fn replica(seed: u64) -> Partition {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let disk = SimStorage::new(seed);
    let log = common::cluster::open_log(&disk, &clock);
    Partition::new(log, ReplicaConfig::new(0), clock, 0)
}

/// Appends batches of 1 to 4 records until the log ends at `2 × BATCHES` or past it.
fn fill(p: &Partition, rng: &mut Rng) {
    while p.log().log_end_offset() < BATCHES * 2 {
        let records = 1 + rng.below(4) as usize;
        let mut b = batch(records, 20 + rng.below(200) as usize, 0);
        p.append(&mut b, Acks::Leader, 1000).expect("append");
    }
}

/// Rounds of: lead (epoch `2k+1`), fill the log, then step down (epoch `2k+2`) and cut it
/// somewhere at or above `floor`, as a follower's truncation does; at least `ROUNDS`, and
/// on until the racing thread has counted `MIN_DONE` operations in `done` (however the
/// scheduler treats it).
fn lead_fill_and_cut(
    p: &Partition,
    floor: i64,
    running: &AtomicBool,
    done: &AtomicUsize,
    seed: u64,
) {
    let mut rng = Rng::new(seed, 1);
    let mut epoch = 0;
    for round in 0.. {
        // Cleared by the racing thread's failure, too.
        if !running.load(Ordering::Acquire)
            || (round >= ROUNDS && done.load(Ordering::Acquire) >= MIN_DONE)
        {
            break;
        }
        assert!(round < ROUNDS * 100, "the racing thread never got going");
        epoch += 1;
        p.become_leader(epoch, vec![0, 1], vec![0])
            .expect("become leader");
        fill(p, &mut rng);
        epoch += 1;
        p.become_follower(epoch, 1).expect("become follower");
        let end = p.log().log_end_offset();
        let cut = floor + rng.below((end - floor) as u64 + 1) as i64;
        p.log().truncate_to(cut).expect("cut");
    }
    running.store(false, Ordering::Release);
}

#[test]
fn a_read_bounded_by_the_high_watermark_survives_cuts_above_it() {
    for seed in 0..4 {
        let p = replica(seed);
        let mut rng = Rng::new(seed, 0);
        p.become_leader(0, vec![0], vec![0]).expect("leader");
        fill(&p, &mut rng);
        // A high watermark lies between batches. Everything below it stays: the cuts
        // never go below it.
        let middle = p
            .log()
            .read(BATCHES / 2, 1, None)
            .expect("read")
            .expect("a batch");
        let hw = batches(&middle.to_vec().expect("bytes"))
            .next()
            .expect("a batch")
            .expect("a whole batch")
            .header()
            .next_offset();
        let below: Vec<_> = log_records(p.log())
            .into_iter()
            .filter(|(o, ..)| *o < hw)
            .collect();
        let (running, reads) = (AtomicBool::new(true), AtomicUsize::new(0));
        thread::scope(|s| {
            let _stop = StopAll([&running]);
            let cutter = s.spawn(|| lead_fill_and_cut(&p, hw, &running, &reads, seed));
            let mut rng = Rng::new(seed, 2);
            while running.load(Ordering::Acquire) {
                let from = rng.below(hw as u64) as i64;
                let max = 1 + rng.below(4 << 10);
                let slice = p
                    .log()
                    .read(from, max, Some(hw))
                    .unwrap_or_else(|e| panic!("read {from} up to {hw}: {e}"))
                    .expect("records below the bound");
                let bytes = slice.to_vec().expect("slice bytes below the bound");
                for b in batches(&bytes) {
                    let b = b.expect("batch");
                    b.validate().expect("valid batch");
                    assert!(b.header().last_offset() < hw, "a batch past the bound");
                    assert!(b.header().last_offset() >= from);
                }
                reads.fetch_add(1, Ordering::Release);
            }
            join(cutter);
        });
        let kept: Vec<_> = log_records(p.log())
            .into_iter()
            .filter(|(o, ..)| *o < hw)
            .collect();
        assert_eq!(kept, below, "what lay below the bound changed");
    }
}

#[test]
fn a_fetch_never_reads_a_log_its_replica_is_cutting() {
    for seed in 0..4 {
        let p = replica(100 + seed);
        let (running, answered) = (AtomicBool::new(true), AtomicUsize::new(0));
        thread::scope(|s| {
            let _stop = StopAll([&running]);
            let cutter = s.spawn(|| lead_fill_and_cut(&p, 0, &running, &answered, seed));
            let mut rng = Rng::new(seed, 3);
            let mut checked = 0u64;
            while running.load(Ordering::Acquire) {
                // A follower somewhere in the log, asking the epoch it last heard of.
                let end = p.log().log_end_offset();
                let request = FetchRequest {
                    replica_id: 1,
                    leader_epoch: p.leader_epoch(),
                    fetch_offset: rng.below(end.max(1) as u64) as i64,
                    last_fetched_epoch: partlog::log::UNDEFINED_EPOCH,
                    max_bytes: 1 + rng.below(4 << 10),
                    log_start_offset: 0,
                };
                match p.fetch(&request) {
                    Ok(response) => {
                        // Read as a follower reads an answer: the bytes, then whether the
                        // log was cut since. Not cut, they are the answer's batches, from
                        // the one holding the fetch offset on.
                        if let Some(slice) = &response.records {
                            let bytes = slice.to_vec();
                            if !slice.cut_since() {
                                let bytes = bytes.expect("an answer's bytes, not cut since");
                                let mut batches = batches(&bytes).peekable();
                                let first = batches.peek().expect("a batch");
                                let first = first.as_ref().expect("the first batch");
                                assert!(first.header().last_offset() >= request.fetch_offset);
                                for b in batches {
                                    b.expect("batch").validate().expect("valid batch");
                                }
                                checked += 1;
                            }
                        }
                        answered.fetch_add(1, Ordering::Release);
                    }
                    // Stepped down, or moved on to another epoch, or cut below the offset.
                    Err(
                        Error::NotLeaderOrFollower
                        | Error::FencedLeaderEpoch { .. }
                        | Error::UnknownLeaderEpoch { .. }
                        | Error::OffsetOutOfRange { .. },
                    ) => {}
                    Err(e) => panic!("fetch at {}: {e}", request.fetch_offset),
                }
            }
            assert!(checked > 0, "seed {seed}: no answer's bytes were checked");
            join(cutter);
        });
    }
}

/// A replica whose log holds `BATCHES` offsets, record `o` with timestamp `o`, all of them
/// committed; and the HW stays there, the ISR being below min ISR from then on.
fn committed(disk_seed: u64, seed: u64) -> (Partition, i64) {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let disk = SimStorage::new(disk_seed);
    let log = common::cluster::open_log(&disk, &clock);
    let mut rng = Rng::new(seed, 0);
    while log.log_end_offset() < BATCHES {
        let ts = log.log_end_offset();
        let mut b = batch(1 + rng.below(4) as usize, 20 + rng.below(200) as usize, ts);
        log.append_as_leader(&mut b, 0).expect("append");
    }
    let hw = log.log_end_offset();
    let config = ReplicaConfig {
        min_insync_replicas: 2,
        ..ReplicaConfig::new(0)
    };
    (Partition::new(log, config, clock, hw), hw)
}

#[test]
fn a_scrub_checks_committed_batches_while_the_tail_above_them_is_cut() {
    for seed in 0..4 {
        let (p, hw) = committed(200 + seed, seed);
        let (running, scrubs) = (AtomicBool::new(true), AtomicUsize::new(0));
        thread::scope(|s| {
            let _stop = StopAll([&running]);
            let cutter = s.spawn(|| lead_fill_and_cut(&p, hw, &running, &scrubs, seed));
            while running.load(Ordering::Acquire) {
                assert_eq!(p.high_watermark(), hw);
                let outcome = p.scrub().unwrap_or_else(|e| panic!("scrub: {e}"));
                assert_eq!(outcome, ScrubOutcome::Clean);
                scrubs.fetch_add(1, Ordering::Release);
            }
            join(cutter);
        });
    }
}

/// It failed about once in fifteen runs (`unexpected end of file`, or a batch running
/// past the end): the lookup read the whole active segment to learn its largest timestamp,
/// past the bound, where the cuts and refills go on, and a truncation counted only at its
/// start let a failed read go unnoticed. The lookup now reads up to the bound only, and a
/// truncation is counted again once its bytes are gone.
#[test]
fn a_time_lookup_bounded_by_the_high_watermark_survives_cuts_above_it() {
    for seed in 0..4 {
        let (p, hw) = committed(300 + seed, seed);
        let mut rng = Rng::new(seed, 2);
        let (running, lookups) = (AtomicBool::new(true), AtomicUsize::new(0));
        thread::scope(|s| {
            let _stop = StopAll([&running]);
            let cutter = s.spawn(|| lead_fill_and_cut(&p, hw, &running, &lookups, seed));
            while running.load(Ordering::Acquire) {
                // Record `o` has timestamp `o` below the bound; past it, timestamps restart.
                let ts = rng.below(hw as u64 + 20) as i64;
                let found = match p.offset_for_timestamp(ts) {
                    // A leader led again past its HW (the ISR below min ISR keeps it there)
                    // knows no answer past it yet, as Kafka's (KIP-207).
                    Err(Error::OffsetNotAvailable { .. }) if ts >= hw => None,
                    found => found.unwrap_or_else(|e| panic!("lookup of {ts} below {hw}: {e}")),
                };
                match found {
                    Some(f) if ts < hw => assert_eq!((f.offset, f.timestamp), (ts, ts)),
                    Some(f) => panic!("lookup of {ts} found {f:?} at or past the bound {hw}"),
                    None => assert!(ts >= hw, "lookup of {ts} found nothing below {hw}"),
                }
                lookups.fetch_add(1, Ordering::Release);
            }
            join(cutter);
        });
    }
}

/// A scrub starts at the log start; retention, DeleteRecords or a follower starting over
/// at its leader's log start may move it meanwhile. `replica_threads` found a scrub
/// failing with `OffsetOutOfRange` for what was below the new start; this test then found
/// it reporting the leader corrupt when the start lay inside the first batch (which
/// DeleteRecords allows).
#[test]
fn a_scrub_goes_on_from_a_log_start_that_moved_under_it() {
    for seed in 0..4 {
        let p = replica(400 + seed);
        p.become_leader(1, vec![0], vec![0]).expect("leader");
        // Over 1 MiB from the start: a scrub reads it in pieces, and the start can pass it
        // between two.
        while p.log().size_bytes() < 3 << 20 {
            p.append(&mut batch(4, 1000, 0), Acks::Leader, 1000)
                .expect("fill");
        }
        let (running, scrubs) = (AtomicBool::new(true), AtomicUsize::new(0));
        thread::scope(|s| {
            let _stop = StopAll([&running]);
            let mover = s.spawn(|| {
                let mut rng = Rng::new(seed, 1);
                for round in 0.. {
                    if !running.load(Ordering::Acquire)
                        || (round >= ROUNDS && scrubs.load(Ordering::Acquire) >= MIN_DONE)
                    {
                        break;
                    }
                    assert!(round < ROUNDS * 100, "the scrub never got going");
                    let mut b = batch(1 + rng.below(4) as usize, 1000, 0);
                    p.append(&mut b, Acks::Leader, 1000).expect("append");
                    let (start, hw) = (p.log().log_start_offset(), p.high_watermark());
                    let to = match rng.below(8) {
                        0 => start + rng.below((hw - start) as u64 + 1) as i64,
                        _ => start + rng.below(3).min((hw - start) as u64) as i64,
                    };
                    p.advance_log_start_offset(to).expect("move the log start");
                }
                running.store(false, Ordering::Release);
            });
            while running.load(Ordering::Acquire) {
                let outcome = p.scrub().unwrap_or_else(|e| panic!("scrub: {e}"));
                assert_eq!(outcome, ScrubOutcome::Clean);
                scrubs.fetch_add(1, Ordering::Release);
            }
            join(mover);
        });
    }
}
