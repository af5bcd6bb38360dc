//! The demo's last round: a power loss, which a user process cannot cause for real.
//!
//! A SIGKILL leaves everything written in the page cache, so the killed rounds never see a
//! torn write. This round runs the same writer on partlog's simulated disk
//! ([`partlog::io::sim::SimStorage`]), whose crash keeps only what was synced plus a random,
//! possibly torn, part of the rest, then recovers and verifies exactly as the other rounds.

use std::path::Path;

use partlog::io::sim::SimStorage;
use partlog::manager::LogDir;

use crate::demo::{emit_round, verify};
use crate::demo_writer::{demo_options, demo_partition, mix, DemoBatches};
use crate::json::Json;
use crate::CliResult;

/// Batches between flushes, as in the killed rounds.
const FLUSH_EVERY: u64 = 16;
/// The round writes this many batches plus a seeded share of as many again.
const BATCHES_MIN: u64 = 200;

/// Writes, loses power, recovers, verifies; `Ok(false)` when verification failed.
pub fn run(seed: u64, json: bool) -> CliResult<bool> {
    let sim = SimStorage::new(seed);
    let dir = Path::new("/sim/demo");
    let tp = demo_partition();
    let batches = BATCHES_MIN + mix(seed ^ 0x90E5) % BATCHES_MIN;
    let mut last_flushed = None;
    {
        let log_dir = LogDir::open(sim.storage(), dir, demo_options())?;
        let (log, _) = log_dir.open_log(&tp)?;
        let mut writer = DemoBatches::default();
        for i in 1..=batches {
            writer.append(&log, 0)?;
            if i % FLUSH_EVERY == 0 {
                log_dir.flush()?;
                last_flushed = Some(log.recovery_point());
            }
        }
        // Dropped without a close: the power goes while the process is still writing.
    }
    sim.crash();
    let log_dir = LogDir::open(sim.storage(), dir, demo_options())?;
    let (log, report) = log_dir.open_log(&tp)?;
    let verdict = verify(&log, last_flushed);
    let end = log.log_end_offset();
    let flushed = last_flushed.unwrap_or(0);
    let head = Json::new()
        .str("type", "power_loss_round")
        .int("batches", batches)
        .int("last_flushed", flushed);
    let line = format!(
        "power loss (simulated disk): wrote {batches} batches; last flushed offset {flushed}; recovered end {end}"
    );
    emit_round(json, head, &line, end, &report, &verdict)?;
    Ok(verdict.is_ok())
}
