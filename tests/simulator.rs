//! The seeded fault-injection simulator: random operations on one partition log over the
//! simulated disk, with crashes, torn writes and injected I/O errors, checked against an
//! in-memory model after every step (DESIGN.md invariants 1, 2, 5 and 8; see `sim/world.rs`).
//!
//! ```text
//! cargo test --release --test simulator                  # CI: 4,000 seeds x 200 steps
//! SIM_SEED=1234 cargo test --release --test simulator    # replay one seed, with its trace
//! SIM_SEEDS=1000000 SIM_SEED_BASE=5000000 cargo test --release --test simulator -- --nocapture
//! SIM_STEPS=1000 SIM_THREADS=8 ...                       # longer runs, more threads
//! SIM_SWITCH_SEEDS=100000 cargo test --release --test simulator policy_switch_seeds
//! ```
//!
//! `policy_switch_seeds` runs worlds whose log goes back and forth between `Compact` and
//! `Delete` at restarts (`World::switching`); its variables are `SIM_SWITCH_SEED`,
//! `SIM_SWITCH_SEEDS` and `SIM_SWITCH_SEED_BASE`.
//!
//! Every seed runs on its own disk under `catch_unwind`, so a panic anywhere (a failed check
//! or the engine itself) becomes a report naming the seed, its last operations and the
//! command that replays it. Seeds are sharded over `SIM_THREADS` threads (default: all
//! cores).
//!
//! Known, not fixable in Kafka's format: the batch CRC does not cover the base offset and
//! the partition leader epoch. Recovery catches a torn write that lowers either (offsets
//! must increase, epochs must not decrease), and, in a log without compaction (half the
//! seeds), one that raises the base offset (offsets must be consecutive). A torn write that
//! raises the epoch, or the base offset of a compacted log, cannot be told from valid data;
//! such a batch is reported as "never written". Before the consecutive-offset rule, long
//! runs hit this in about one seed in 6,000 to 20,000 (113177, 121163, 134352, 203496,
//! 208807, 222507, 228130, 228185 were checked byte by byte: each differs from a written
//! batch only in those two fields). Of those, only 228185 (a compacted log) still fails;
//! 100000..140000 pass in full. The default range has none.

mod common;

#[path = "sim/model.rs"]
mod model;
#[path = "sim/world.rs"]
mod world;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::{env_u64, panic_text};
use partlog::io::sim::{FaultKind, SimOp, SimRng};
use partlog::LogConfig;
use world::{Restart, Stats, Trace, World};

/// Seeds run by default (CI). The range includes 3051 and 3736, which once failed (see
/// `stale_time_index_entry_after_truncation_append_and_flush`).
const DEFAULT_SEEDS: u64 = 4_000;
const DEFAULT_STEPS: u64 = 200;
/// Seeds of [`World::switching`] run by default.
const DEFAULT_SWITCH_SEEDS: u64 = 1_000;
/// Failing seeds reported in full; the rest are only counted.
const FAILURES_SHOWN: usize = 5;

/// Runs `body` on the world `make` builds for `seed`; a panic becomes a report with the
/// trace and the `replay` hint.
fn run_world(
    seed: u64,
    replay: &str,
    make: fn(u64, Trace) -> World,
    body: impl FnOnce(&mut World),
) -> Result<Stats, String> {
    let trace: Trace = Rc::new(RefCell::new(VecDeque::new()));
    let t = trace.clone();
    let result = catch_unwind(AssertUnwindSafe(move || {
        let mut w = make(seed, t);
        body(&mut w);
        w.stats
    }));
    result.map_err(|p| {
        let ops: Vec<String> = trace.borrow().iter().cloned().collect();
        format!(
            "seed {seed} failed: {}\n  last operations:\n    {}\n  replay: {replay}",
            panic_text(p.as_ref()),
            ops.join("\n    ")
        )
    })
}

/// Runs each of `seeds` for the default number of steps; a failure panics with its report.
fn replay_seeds(seeds: &[u64]) {
    for &seed in seeds {
        if let Err(report) = run_seed(seed, DEFAULT_STEPS) {
            panic!("{report}");
        }
    }
}

fn run_seed(seed: u64, steps: u64) -> Result<Stats, String> {
    run_seed_of(Family::PLAIN, seed, steps)
}

/// A kind of world, with the test that runs it and its seed variables.
#[derive(Clone, Copy)]
struct Family {
    make: fn(u64, Trace) -> World,
    test: &'static str,
    /// Prefix of its variables: `<prefix>_SEED`, `<prefix>_SEEDS`, `<prefix>_SEED_BASE`.
    prefix: &'static str,
}

impl Family {
    const PLAIN: Family = Family {
        make: World::new,
        test: "random_seeds",
        prefix: "SIM",
    };
    const SWITCHING: Family = Family {
        make: World::switching,
        test: "policy_switch_seeds",
        prefix: "SIM_SWITCH",
    };
}

fn run_seed_of(family: Family, seed: u64, steps: u64) -> Result<Stats, String> {
    let replay = format!(
        "{}_SEED={seed} SIM_STEPS={steps} cargo test --release --test simulator {}",
        family.prefix, family.test
    );
    run_world(seed, &replay, family.make, |w| {
        for _ in 0..steps {
            w.step();
        }
        w.sim.clear_faults();
        w.finish();
    })
}

/// Name prefix of the simulator's worker threads, whose panics are reported as seed
/// failures instead of being printed one by one.
const WORKER_PREFIX: &str = "sim-worker-";

/// Keeps panics on worker threads quiet (they become seed reports); others print as usual.
fn quiet_worker_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let name = std::thread::current().name().map(str::to_string);
            if !name.is_some_and(|n| n.starts_with(WORKER_PREFIX)) {
                default(info);
            }
        }));
    });
}

/// Runs seeds `base..base + count` on `threads` threads; returns stats and failures.
fn run_many(
    family: Family,
    base: u64,
    count: u64,
    steps: u64,
    threads: usize,
) -> (Stats, u64, Vec<String>) {
    quiet_worker_panics();
    let next = Arc::new(AtomicU64::new(0));
    let shared = Arc::new(Mutex::new((Stats::default(), 0u64, Vec::new())));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (next, shared) = (next.clone(), shared.clone());
            let worker = std::thread::Builder::new().name(format!("{WORKER_PREFIX}{t}"));
            worker
                .spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let result = run_seed_of(family, base + i, steps);
                    let mut g = shared.lock().unwrap_or_else(|e| e.into_inner());
                    match result {
                        Ok(stats) => g.0.add(&stats),
                        Err(report) => {
                            g.1 += 1;
                            if g.2.len() < FAILURES_SHOWN {
                                g.2.push(report);
                            }
                        }
                    }
                })
                .expect("spawn simulator thread")
        })
        .collect();
    for h in handles {
        h.join().expect("simulator thread");
    }
    let g = shared.lock().unwrap_or_else(|e| e.into_inner());
    (g.0, g.1, g.2.clone())
}

#[test]
fn random_seeds() {
    run_family(Family::PLAIN, DEFAULT_SEEDS);
}

/// Seeds of [`World::switching`]: a log compacted once, or that copied a leader's gaps,
/// keeps its gaps through every restart, under `Delete` as under `Compact`.
#[test]
fn policy_switch_seeds() {
    run_family(Family::SWITCHING, DEFAULT_SWITCH_SEEDS);
}

/// Runs `<prefix>_SEED` alone if set, else `<prefix>_SEEDS` seeds (`default`) from
/// `<prefix>_SEED_BASE`.
fn run_family(family: Family, default: u64) {
    let var = |name: &str| env_u64(&format!("{}_{name}", family.prefix));
    let steps = env_u64("SIM_STEPS").unwrap_or(DEFAULT_STEPS);
    if let Some(seed) = var("SEED") {
        match run_seed_of(family, seed, steps) {
            Ok(stats) => println!("seed {seed} passed: {stats:?}"),
            Err(report) => panic!("{report}"),
        }
        return;
    }
    let count = var("SEEDS").unwrap_or(default);
    let base = var("SEED_BASE").unwrap_or(0);
    let threads = env_u64("SIM_THREADS").map_or_else(
        || std::thread::available_parallelism().map_or(2, |n| n.get()),
        |t| t.max(1) as usize,
    );
    let started = Instant::now();
    let (stats, failed, reports) = run_many(family, base, count, steps, threads);
    println!(
        "{}: {count} seeds x {steps} steps on {threads} threads in {:.1?}: {stats:?}",
        family.test,
        started.elapsed()
    );
    assert!(
        failed == 0,
        "{failed} of {count} seeds failed:\n\n{}",
        reports.join("\n\n")
    );
    // The random mix must reach the interesting paths, or the run proves little.
    if count >= 100 {
        assert!(stats.power_losses > 0 && stats.failed_ops > 0 && stats.damaged_recoveries > 0);
        assert!(stats.truncations > 0 && stats.segments_deleted > 0 && stats.restarts > 0);
    }
}

// ---- scripted scenarios: crash at every call of a kind ------------------------------------

/// A config that rolls after a few batches and fills its indexes quickly.
fn script_config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_bytes_max: 64,
        index_interval_bytes: 128,
        file_delete_delay_ms: 0,
        ..LogConfig::default()
    }
}

fn script_world(seed: u64, trace: Trace) -> World {
    World::with_config(seed, script_config(), SimRng::new(seed), trace)
}

/// Runs `script` once to count its calls of `op`, then once per call with a power loss
/// injected into exactly that call; each run reopens, checks and finishes.
fn crash_at_every(op: SimOp, seed: u64, script: fn(&mut World)) {
    let trace: Trace = Rc::new(RefCell::new(VecDeque::new()));
    let calls = {
        let mut w = script_world(seed, trace.clone());
        let before = w.sim.counters();
        script(&mut w);
        let after = w.sim.counters();
        match op {
            SimOp::Write => after.writes - before.writes,
            SimOp::Sync => after.syncs - before.syncs,
            SimOp::SyncDir => after.sync_dirs - before.sync_dirs,
            SimOp::Rename => after.renames - before.renames,
            SimOp::Create => after.creates - before.creates,
            SimOp::Read => after.reads - before.reads,
        }
    };
    assert!(calls > 0, "the script makes no {op:?} calls");
    for k in 1..=calls {
        let replay = format!("crash at {op:?} call {k} of {calls} (seed {seed})");
        let result = run_world(seed, &replay, script_world, |w| {
            w.sim
                .fail_nth(op, k, FaultKind::Crash)
                .expect("arm the crash");
            script(w);
            w.sim.clear_faults();
            w.finish();
        });
        if let Err(report) = result {
            panic!("{report}");
        }
    }
}

/// Appends across a roll and an index-full roll, flushes, truncates into an earlier
/// segment, appends again, applies retention and starts over at a higher offset.
fn roll_truncate_script(w: &mut World) {
    for _ in 0..6 {
        w.append_leader();
    }
    w.flush();
    w.force_roll();
    for _ in 0..4 {
        w.append_leader();
    }
    let mid = (w.model.log_start + w.model.leo) / 2;
    w.do_truncate_to(mid);
    for _ in 0..3 {
        w.append_leader();
    }
    w.flush();
    w.retention();
    w.append_follower();
    let restart_at = w.model.leo + 7;
    w.do_truncate_fully(restart_at);
    w.append_leader();
    w.flush();
}

#[test]
fn crash_at_every_write_of_roll_and_truncate() {
    crash_at_every(SimOp::Write, 11, roll_truncate_script);
}

#[test]
fn crash_at_every_sync_of_roll_and_truncate() {
    crash_at_every(SimOp::Sync, 12, roll_truncate_script);
    crash_at_every(SimOp::SyncDir, 13, roll_truncate_script);
}

#[test]
fn crash_at_every_rename_and_create_of_roll_and_truncate() {
    crash_at_every(SimOp::Rename, 14, roll_truncate_script);
    crash_at_every(SimOp::Create, 15, roll_truncate_script);
}

/// Flushed data, then a roll whose new segment file (and directory entry) was never synced:
/// power fails before any flush. Every crash image must recover the flushed prefix.
#[test]
fn crash_right_after_roll_before_dir_sync() {
    for seed in 0..300 {
        let replay = format!("seed {seed} of this scripted test");
        let result = run_world(seed, &replay, script_world, |w| {
            for _ in 0..5 {
                w.append_leader();
            }
            w.flush();
            w.force_roll();
            w.append_leader();
            w.append_leader();
            w.restart(Restart::Power);
            w.append_leader();
            w.finish();
        });
        if let Err(report) = result {
            panic!("{report}");
        }
    }
}

/// A truncation into an earlier segment, then new appends, then power loss with no flush in
/// between: the truncation itself is not durable, so old batches may come back, but the
/// flushed prefix below the truncation point must survive and the log must be valid.
#[test]
fn crash_after_truncation_into_earlier_segment() {
    for seed in 0..300 {
        let replay = format!("seed {seed} of this scripted test");
        let result = run_world(seed, &replay, script_world, |w| {
            for _ in 0..12 {
                w.append_leader();
            }
            w.flush();
            let first_segment_end = w.log().segments().get(1).map(|s| s.base_offset());
            let target = first_segment_end.map_or(w.model.leo / 2, |b| b / 2);
            w.do_truncate_to(target);
            w.append_leader();
            w.append_leader();
            w.restart(Restart::Power);
            w.append_leader();
            w.finish();
        });
        if let Err(report) = result {
            panic!("{report}");
        }
    }
}

/// `msync` of a trimmed index made its entries durable but not its new length: after a
/// truncation into an older segment, a roll (trim) and power loss, the time index came back
/// at its old length with a stale entry past the trim counted valid, and the next append
/// into that segment failed with "time index offset 129 is below 147". Replays the seed
/// that found it (fixed in `IndexFile::flush`, which now also syncs the file).
#[test]
fn stale_time_index_entry_after_truncate_roll_and_power_loss() {
    replay_seeds(&[225]);
}

/// After `truncate_to` into the active segment (its time index cut correctly), an append and
/// a flush, a later append failed with "time index offset 227 is below 230": a time-index
/// entry from the truncated range was back. No crash was needed. It stopped failing with the
/// change that made index rebuilds reset the file (shorten it to zero, then regrow) instead
/// of zeroing entries through a map; the root cause was not isolated further, so the two
/// seeds that hit it are replayed here.
#[test]
fn stale_time_index_entry_after_truncation_append_and_flush() {
    replay_seeds(&[3051, 3736]);
}

/// A power loss tore a few bytes of an unsynced batch's header: its partition leader epoch
/// (outside the CRC) came back as 1743481862, higher than any epoch the log had seen, and
/// recovery kept the batch, so the log's last epoch was one the epoch cache did not know.
/// Recovery now cuts a batch whose epoch is above the last one in the epoch checkpoint,
/// which every epoch reaches durably before its first batch. Replays the seeds that hit it.
#[test]
fn torn_epoch_above_the_epoch_checkpoint_is_cut() {
    replay_seeds(&[9022737, 9042722, 9063583, 9111783, 9208582]);
}

/// A power loss tore two bytes of an unsynced batch's base offset (outside the CRC) in a
/// compacted log, raising it from 238 to 49579 (seed 31065701; in seed 40113421, to
/// 486539396); the rest of the batch was intact, so its CRC held, and since a compacted log
/// may have gaps between batches recovery kept it: the log came back with records at
/// offsets nobody wrote. In both, the bytes after the batch were torn too (a partial header;
/// a batch whose offsets fell below the torn one's). Recovery now keeps a batch that leaves
/// a gap above the recovery point only when a valid batch or the end of the file follows it.
#[test]
fn torn_base_offset_next_to_damage_in_a_compacted_tail_is_cut() {
    replay_seeds(&[31065701, 40113421]);
}

/// Power failed during an unsynced append into the segment that
/// `truncate_fully_and_start_at` had just created, and tore the first batch's partition
/// leader epoch (outside the CRC) from 6 down to 0; recovery kept the batch, so the log
/// served a batch nobody wrote. The epoch checkpoint, which every epoch reaches durably
/// before its first batch, said epoch 6 from that offset: recovery now raises each
/// segment's epoch floor to the checkpoint's epoch at the segment's base.
#[test]
fn torn_epoch_below_the_epoch_checkpoint_is_cut() {
    replay_seeds(&[2079634]);
}
