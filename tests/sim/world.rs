//! One simulated broker disk with one partition log on it, the operations the simulator
//! runs against it, and the checks that follow each of them.
//!
//! Every operation compares what the log did with the [`Model`]. A failed I/O call (an
//! injected `EIO`/`ENOSPC`, or a crash injected inside a call) ends the "process": the
//! harness drops the log, crashes the disk as configured and reopens, then checks the
//! recovered log against what the engine had promised was durable.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use partlog::checkpoint::TopicPartition;
use partlog::io::sim::{FaultKind, FaultPlan, SimOp, SimRng, SimStorage};
use partlog::io::Storage;
use partlog::log::{Log, RecoveryReport, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};
use partlog::manager::{LogDir, LogDirOptions};
use partlog::record::{batches, BatchBuilder, TimestampType};
use partlog::{CleanupPolicy, Clock, Error, LogConfig, ManualClock};

use super::model::{split, MBatch, Model};

/// The last operations of a seed, printed when it fails.
pub type Trace = Rc<RefCell<VecDeque<String>>>;
const TRACE_LEN: usize = 40;
/// Reads per full check; larger logs are sampled evenly.
const OFFSET_READS_MAX: i64 = 4000;
/// Attempts at reopening after crashes injected into recovery itself.
const REOPEN_ATTEMPTS: usize = 4;

/// How the process ended before a reopen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// `LogDir::close` succeeded: nothing may be lost.
    Clean,
    /// SIGKILL: the page cache survives.
    Kill,
    /// Power loss: only what was synced is promised.
    Power,
    /// A `FaultKind::Crash` already crashed the disk inside a call.
    Crashed,
}

/// Counts of what a run exercised, to see that the random mix reaches everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub appends: u64,
    pub reads: u64,
    pub restarts: u64,
    pub power_losses: u64,
    pub failed_ops: u64,
    pub damaged_recoveries: u64,
    pub truncations: u64,
    pub segments_deleted: u64,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.appends += o.appends;
        self.reads += o.reads;
        self.restarts += o.restarts;
        self.power_losses += o.power_losses;
        self.failed_ops += o.failed_ops;
        self.damaged_recoveries += o.damaged_recoveries;
        self.truncations += o.truncations;
        self.segments_deleted += o.segments_deleted;
    }
}

pub struct World {
    pub sim: Arc<SimStorage>,
    pub clock: Arc<ManualClock>,
    pub rng: SimRng,
    /// Draws added after seeds were recorded come from here, so that `rng`'s stream, and
    /// with it every recorded seed, replays as before.
    aux_rng: SimRng,
    pub config: LogConfig,
    pub root: PathBuf,
    tp: TopicPartition,
    dir: Option<LogDir>,
    log: Option<Arc<Log>>,
    pub model: Model,
    epoch: i32,
    /// Disk generation the open log belongs to; a change means a crash hit inside a call.
    generation: u64,
    /// An operation failed since the last open: the strict "nothing lost" checks of a
    /// clean restart or a kill do not apply, only the durability promise does.
    failed: bool,
    pub trace: Trace,
    pub stats: Stats,
    /// See [`World::switching`].
    switches_policy: bool,
    /// The log said it may have gaps after an append: the mark must outlive every restart.
    marked: bool,
    /// The disk's count of injected faults when the step began: an I/O error with none
    /// injected since is the engine's own, and a bug.
    faults_before_step: u64,
}

/// A small random config that makes segments roll and indexes fill often.
pub fn random_config(rng: &mut SimRng) -> LogConfig {
    LogConfig {
        segment_bytes: rng.range_inclusive(1024, 16 * 1024),
        index_bytes_max: rng.range_inclusive(48, 256),
        index_interval_bytes: rng.range_inclusive(32, 1024),
        segment_ms: if rng.ratio(1, 4) {
            rng.range_inclusive(500, 5_000) as i64
        } else {
            LogConfig::default().segment_ms
        },
        retention_ms: if rng.ratio(1, 3) {
            rng.range_inclusive(1_000, 20_000) as i64
        } else {
            -1
        },
        retention_bytes: if rng.ratio(1, 3) {
            rng.range_inclusive(2_000, 40_000) as i64
        } else {
            -1
        },
        file_delete_delay_ms: rng.range_inclusive(0, 3_000) as i64,
        ..LogConfig::default()
    }
}

impl World {
    /// A fresh disk for `seed` with a random config, the log dir opened.
    pub fn new(seed: u64, trace: Trace) -> World {
        let mut rng = SimRng::new(seed ^ 0x5157_u64.rotate_left(40));
        let mut config = random_config(&mut rng);
        // Half the seeds compact (offsets may have gaps), half do not (offsets must be
        // consecutive, which recovery checks). Chosen by the seed, not drawn, so that
        // seeds found before the policy existed replay the same operations.
        if seed % 2 == 1 {
            config.cleanup_policy = CleanupPolicy::Compact;
        }
        World::with_config(seed, config, rng, trace)
    }

    /// A world of [`World::new`] whose log goes back and forth between `Compact` and
    /// `Delete` at restarts, as a topic's `cleanup.policy` may, and whose follower appends
    /// copy a compacted leader's gaps under either policy: a log that ever had gaps must
    /// keep them, marked, whatever its policy ([`partlog::log::Log::may_have_gaps`]).
    pub fn switching(seed: u64, trace: Trace) -> World {
        let mut w = World::new(seed, trace);
        w.switches_policy = true;
        w
    }

    pub fn with_config(seed: u64, config: LogConfig, rng: SimRng, trace: Trace) -> World {
        let sim = SimStorage::new(seed);
        let mut w = World {
            sim,
            clock: Arc::new(ManualClock::new(1_600_000_000_000)),
            rng,
            aux_rng: SimRng::new(seed ^ 0xA11C_E5EE_D000_0000),
            config,
            root: PathBuf::from("/data"),
            tp: TopicPartition::new("sim", 0),
            dir: None,
            log: None,
            model: Model::default(),
            epoch: 0,
            generation: 0,
            failed: false,
            trace,
            stats: Stats::default(),
            switches_policy: false,
            marked: false,
            faults_before_step: 0,
        };
        w.note(format!("config {:?}", w.config));
        w.open_until_ok();
        w.model.leo = w.log().log_end_offset();
        w.model.log_start = w.log().log_start_offset();
        w
    }

    pub fn note(&self, line: String) {
        let mut t = self.trace.borrow_mut();
        if t.len() == TRACE_LEN {
            t.pop_front();
        }
        t.push_back(line);
    }

    pub fn log(&self) -> &Arc<Log> {
        self.log.as_ref().expect("log is open")
    }

    fn crashed(&self) -> bool {
        self.sim.generation() != self.generation
    }

    // ---- opening and restarting -------------------------------------------------------

    fn try_open(&mut self) -> partlog::Result<RecoveryReport> {
        let storage: Arc<dyn Storage> = self.sim.clone();
        let options = LogDirOptions {
            config: self.config.clone(),
            clock: self.clock.clone(),
        };
        let dir = LogDir::open(storage, &self.root, options)?;
        let (log, report) = dir.open_log(&self.tp)?;
        self.dir = Some(dir);
        self.log = Some(log);
        Ok(report)
    }

    /// Opens, and when opening itself fails (a fault injected into recovery), ends the
    /// process and tries again; the last attempt runs without faults.
    fn open_until_ok(&mut self) -> RecoveryReport {
        let mut last_error = String::new();
        for attempt in 0..REOPEN_ATTEMPTS {
            if attempt + 1 == REOPEN_ATTEMPTS {
                self.sim.clear_faults();
            }
            self.generation = self.sim.generation();
            match self.try_open() {
                Ok(report) => {
                    self.generation = self.sim.generation();
                    // Faults armed before the restart had their chance at recovery; the
                    // checks that follow must not trip over them.
                    self.sim.clear_faults();
                    return report;
                }
                Err(err) => {
                    self.note(format!("open failed: {err}"));
                    last_error = err.to_string();
                    self.dir = None;
                    self.log = None;
                    if !self.crashed() {
                        if self.rng.ratio(1, 2) {
                            self.sim.crash();
                        } else {
                            self.sim.crash_keep_written();
                        }
                    }
                }
            }
        }
        panic!("log did not open even without faults: {last_error}");
    }

    /// Ends the process as `how` says, reopens, checks the recovered log against the model
    /// and makes the model what was recovered.
    pub fn restart(&mut self, mut how: Restart) {
        self.stats.restarts += 1;
        if how == Restart::Clean {
            let dir = self.dir.take().expect("dir open");
            self.log = None;
            if let Err(err) = dir.close() {
                self.note(format!("close failed: {err}"));
                self.stats.failed_ops += 1;
                self.failed = true;
                how = if self.crashed() {
                    Restart::Crashed
                } else {
                    Restart::Kill
                };
            } else if self.crashed() {
                panic!("close reported success although the disk crashed inside it");
            }
        }
        self.log = None;
        self.dir = None;
        if self.switches_policy && self.aux_rng.ratio(1, 2) {
            self.config.cleanup_policy = match self.config.cleanup_policy {
                CleanupPolicy::Delete => CleanupPolicy::Compact,
                _ => CleanupPolicy::Delete,
            };
            self.note(format!("policy now {:?}", self.config.cleanup_policy));
        }
        let power_losses = self.sim.counters().power_losses;
        match how {
            Restart::Kill => self.sim.crash_keep_written(),
            Restart::Power => {
                self.stats.power_losses += 1;
                self.sim.crash()
            }
            Restart::Clean | Restart::Crashed => {}
        }
        if self.crashed() && how != Restart::Kill {
            self.stats.power_losses += (how == Restart::Crashed) as u64;
        }
        let report = self.open_until_ok();
        if report.damage.is_some() {
            self.stats.damaged_recoveries += 1;
        }
        assert!(
            !self.marked || self.log().may_have_gaps(),
            "a log marked as one with gaps lost its mark in a restart"
        );
        self.note(format!(
            "reopened after {how:?}: start {} end {} rp {} damage {:?} warnings {:?}",
            report.log_start_offset,
            report.log_end_offset,
            self.log().recovery_point(),
            report.damage.as_ref().map(|d| (
                d.kind,
                d.file.clone(),
                d.position,
                d.bytes,
                d.reason.clone()
            )),
            report.warnings
        ));
        self.note(format!(
            "segments after reopen: {:?}",
            self.log()
                .segments()
                .iter()
                .map(|s| (s.base_offset(), s.size()))
                .collect::<Vec<_>>()
        ));
        // A kill keeps the page cache, not the power: one lost while reopening (an injected
        // crash, or the end of a failed open) takes what the killed process never synced.
        let kept_power = self.sim.counters().power_losses == power_losses;
        let strict = match how {
            Restart::Clean => !self.failed,
            Restart::Kill => !self.failed && kept_power,
            Restart::Power | Restart::Crashed => false,
        };
        self.check_recovered(strict, strict && matches!(how, Restart::Clean));
        self.failed = false;
    }

    /// An operation failed with an I/O error (or hit an injected crash): the log is
    /// read-only or gone. Keep only promises the in-memory log still stands behind (a failed
    /// truncation may already have dropped data on purpose), then restart.
    fn failed_op(&mut self, what: &str, err: &Error) {
        self.stats.failed_ops += 1;
        self.note(format!("{what} failed: {err}"));
        self.failed = true;
        let log = self.log().clone();
        let first_base = log.segments()[0].base_offset();
        self.model.forget_from(log.log_end_offset());
        self.model
            .forget_below(log.log_start_offset().max(first_base));
        if !self.crashed() {
            assert!(
                is_io_failure(err),
                "{what}: unexpected error kind without a fault: {err}"
            );
            assert!(
                self.sim.counters().faults > self.faults_before_step,
                "{what}: an I/O error, and no fault was injected in this step: {err}"
            );
            // Reads keep working after a failed write (or fail cleanly on a further fault).
            if log.log_end_offset() > log.log_start_offset() {
                let r = log.read(log.log_start_offset(), 1, None);
                assert!(
                    matches!(r, Ok(_) | Err(Error::Io { .. })),
                    "{what}: read {} after a failed write: {r:?}; segments {:?}, model {:?}",
                    log.log_start_offset(),
                    log.segments()
                        .iter()
                        .map(|s| (s.base_offset(), s.size()))
                        .collect::<Vec<_>>(),
                    self.model
                        .batch_at_or_after(log.log_start_offset())
                        .map(|(_, b)| (b.base, b.last)),
                );
            }
        }
        let how = if self.crashed() {
            Restart::Crashed
        } else if self.rng.ratio(1, 2) {
            Restart::Power
        } else {
            Restart::Kill
        };
        self.restart(how);
    }

    /// Routes an operation's error: returns `true` when the world restarted.
    fn handle<T>(&mut self, what: &str, r: &partlog::Result<T>) -> bool {
        match r {
            Err(err) => {
                self.failed_op(what, err);
                true
            }
            Ok(_) if self.crashed() => {
                panic!("{what} reported success although the disk crashed inside it")
            }
            Ok(_) => false,
        }
    }

    // ---- operations ---------------------------------------------------------------------

    /// One random batch; `base` is its base offset (leaders overwrite it).
    fn random_batch(&mut self, base: i64) -> Vec<u8> {
        let r = &mut self.rng;
        let mut b = BatchBuilder::new();
        b.base_offset(base).partition_leader_epoch(self.epoch);
        if r.ratio(1, 10) {
            b.timestamp_type(TimestampType::LogAppendTime);
        }
        if r.ratio(1, 8) {
            b.producer(r.range_inclusive(1, 5) as i64, 0, r.below(1000) as i32);
        }
        let n = if r.ratio(3, 4) {
            r.range_inclusive(1, 5)
        } else {
            r.range_inclusive(6, 20)
        };
        let now = self.clock.now_ms();
        let compacts = self.config.cleanup_policy.compacts();
        for _ in 0..n {
            let ts = now - r.below(3_000) as i64;
            // A compacted log refuses keyless records: an empty key takes the null key's
            // place there (same size, same draws, so recorded seeds replay the same bytes).
            let key = match (!r.ratio(1, 5)).then(|| random_bytes(r, 16)) {
                None if compacts => Some(Vec::new()),
                key => key,
            };
            let value = (!r.ratio(1, 20)).then(|| {
                let max = if r.ratio(1, 6) { 600 } else { 64 };
                random_bytes(r, max)
            });
            let header_value = random_bytes(r, 8);
            let headers: &[(&[u8], Option<&[u8]>)] = if r.ratio(1, 10) {
                &[(b"h", Some(&header_value))]
            } else {
                &[]
            };
            b.append(ts, key.as_deref(), value.as_deref(), headers);
        }
        b.build().expect("builder output")
    }

    pub fn append_leader(&mut self) {
        let count = self.rng.range_inclusive(1, 3);
        let mut buf = Vec::new();
        for _ in 0..count {
            let one = self.random_batch(0);
            buf.extend_from_slice(&one);
        }
        let corrupt = self.rng.ratio(1, 40);
        if corrupt {
            // Inside the CRC-covered part of the first batch.
            let first_len = split(&buf)[0].bytes.len() as u64;
            let at = self.rng.range_inclusive(21, first_len - 1) as usize;
            buf[at] ^= 1 << self.rng.below(8);
        }
        if self.rng.ratio(1, 10) {
            self.epoch += 1;
        }
        let leo = self.model.leo;
        let r = self.log().append_as_leader(&mut buf, self.epoch);
        self.note(format!(
            "append_leader {} bytes corrupt={corrupt} at {leo}: {:?}",
            buf.len(),
            r.as_ref().map(|i| (i.first_offset, i.last_offset))
        ));
        match r {
            Err(Error::InvalidBatch(_)) if corrupt => self.expect_unchanged("rejected append"),
            Err(Error::RecordTooLarge { .. }) if buf.len() as u64 > self.config.segment_bytes => {
                self.expect_unchanged("oversized append")
            }
            Ok(_) if corrupt => panic!("append of a corrupted batch succeeded"),
            r => {
                // Offsets were assigned in place before the write: these bytes may be on
                // disk even if the append fails.
                let written = split(&buf);
                self.model.add_candidates(&written);
                if self.handle("append_leader", &r) {
                    return;
                }
                let info = r.expect("handled");
                assert_eq!(info.first_offset, leo, "leader append first offset");
                let mut next = leo;
                for b in &written {
                    assert_eq!(b.base, next, "leader offsets are consecutive");
                    assert_eq!(
                        i32::from_be_bytes(b.bytes[12..16].try_into().unwrap()),
                        self.epoch
                    );
                    next = b.next();
                }
                assert_eq!(info.last_offset + 1, next);
                self.stats.appends += 1;
                self.model.appended(written);
                self.check_step();
            }
        }
    }

    pub fn append_follower(&mut self) {
        // Gaps are drawn for every policy, so that the random stream does not depend on
        // it, but only a compacted log, or a follower copying a compacted leader, gets
        // them (see `World::switching`).
        let gaps = self.config.cleanup_policy.compacts() || self.switches_policy;
        let mut base = self.model.leo;
        if self.rng.ratio(1, 4) {
            let gap = self.rng.range_inclusive(1, 30) as i64;
            base += if gaps { gap } else { 0 };
        }
        let stale = self.rng.ratio(1, 25) && self.model.leo > self.model.log_start;
        if stale {
            base = self.model.leo - 1;
        }
        let mut buf = Vec::new();
        let mut next = base;
        for _ in 0..self.rng.range_inclusive(1, 3) {
            let one = self.random_batch(next);
            let gap = self.rng.below(3) as i64;
            next = split(&one)[0].next() + if gaps { gap } else { 0 };
            buf.extend_from_slice(&one);
        }
        let r = self.log().append_as_follower(&buf);
        self.note(format!(
            "append_follower {} bytes at {base} (leo {}): {:?}",
            buf.len(),
            self.model.leo,
            r.as_ref().map(|i| (i.first_offset, i.last_offset))
        ));
        match r {
            Err(Error::InvalidOffset { .. }) if stale => self.expect_unchanged("stale follower"),
            Err(Error::RecordTooLarge { .. }) if buf.len() as u64 > self.config.segment_bytes => {
                self.expect_unchanged("oversized follower append")
            }
            Ok(_) if stale => panic!("follower append below the log end succeeded"),
            r => {
                let written = split(&buf);
                self.model.add_candidates(&written);
                if self.handle("append_follower", &r) {
                    return;
                }
                let info = r.expect("handled");
                assert_eq!(info.first_offset, base);
                assert_eq!(info.last_offset + 1, written.last().unwrap().next());
                self.marked |= self.log().may_have_gaps();
                self.stats.appends += 1;
                self.model.appended(written);
                self.check_step();
            }
        }
    }

    fn expect_unchanged(&mut self, what: &str) {
        let log = self.log();
        assert_eq!(log.log_end_offset(), self.model.leo, "{what} moved the end");
        assert_eq!(log.log_start_offset(), self.model.log_start, "{what}");
        self.check_step();
    }

    pub fn read(&mut self) {
        self.stats.reads += 1;
        let (start, leo) = (self.model.log_start, self.model.leo);
        let from = self
            .rng
            .range_inclusive((start - 2).max(0) as u64, (leo + 2) as u64) as i64;
        let max_bytes = match self.rng.below(3) {
            0 => 1,
            1 => self.rng.below(8192),
            _ => 1 << 20,
        };
        let up_to = self
            .rng
            .ratio(1, 3)
            .then(|| self.rng.range_inclusive(start as u64, (leo + 3) as u64) as i64);
        let r = self.log().read(from, max_bytes, up_to);
        self.note(format!("read {from} max {max_bytes} up_to {up_to:?}"));
        if from < start || from > leo {
            assert!(
                matches!(r, Err(Error::OffsetOutOfRange { .. })),
                "read {from} outside [{start}, {leo}]: {r:?}"
            );
            return;
        }
        // Reads may write (indexes are opened and preallocated lazily), so an armed write
        // fault can fail one: that ends the process like any other I/O failure.
        if let Err(err @ Error::Io { .. }) = &r {
            self.failed_op("read", err);
            return;
        }
        let slice = r.unwrap_or_else(|e| panic!("read {from}: {e}"));
        let bytes = slice.map(|s| s.to_vec().expect("slice bytes"));
        self.check_read(from, max_bytes, up_to, bytes.as_deref());
    }

    /// Checks a read's result against the model: whole batches, starting with the one that
    /// holds `from`, consecutive, under the bounds, and as many as fit in the segment.
    fn check_read(&self, from: i64, max_bytes: u64, up_to: Option<i64>, got: Option<&[u8]>) {
        let bound = up_to.map_or(self.model.leo, |u| u.min(self.model.leo));
        let first = self.model.batch_at_or_after(from);
        let expect_none = from >= bound || first.is_none_or(|(_, b)| b.last >= bound);
        let Some(got) = got else {
            assert!(
                expect_none,
                "read {from} (bound {bound}) returned nothing; model has {:?}",
                first.map(|(_, b)| (b.base, b.last))
            );
            return;
        };
        assert!(!expect_none, "read {from} (bound {bound}) returned data");
        let (i, _) = first.expect("checked");
        let got = split(got);
        let segment_bases: Vec<i64> = self
            .log()
            .segments()
            .iter()
            .map(|s| s.base_offset())
            .collect();
        let segment_of = |b: &MBatch| segment_bases.partition_point(|&s| s <= b.base);
        let limit = max_bytes.max(got[0].size());
        let mut total = 0;
        for (k, b) in got.iter().enumerate() {
            let want = &self.model.batches[i + k];
            assert_eq!(b, want, "read {from}: batch {k} differs from the model");
            assert!(b.last < bound, "read {from}: batch past the bound {bound}");
            assert_eq!(segment_of(b), segment_of(&got[0]));
            total += b.size();
        }
        assert!(
            total <= limit,
            "read {from}: {total} bytes over the limit {limit}"
        );
        if let Some(next) = self.model.batches.get(i + got.len()) {
            let fits = next.last < bound
                && total + next.size() <= limit
                && segment_of(next) == segment_of(&got[0]);
            assert!(
                !fits,
                "read {from}: stopped before batch {} that fits",
                next.base
            );
        }
    }

    pub fn offset_for_timestamp(&mut self) {
        let now = self.clock.now_ms();
        let target = match self.rng.below(8) {
            0 => EARLIEST_TIMESTAMP,
            1 => LATEST_TIMESTAMP,
            _ => now - self.rng.below(20_000) as i64 + 1_000,
        };
        let r = self.log().offset_for_timestamp(target);
        if let Err(err @ Error::Io { .. }) = &r {
            self.failed_op("offset_for_timestamp", err);
            return;
        }
        let got = r.unwrap_or_else(|e| panic!("offset_for_timestamp {target}: {e}"));
        self.note(format!("offset_for_timestamp {target}: {got:?}"));
        let want = match target {
            EARLIEST_TIMESTAMP => Some((-1, self.model.log_start)),
            LATEST_TIMESTAMP => Some((-1, self.model.leo)),
            t => self.model.offset_for_timestamp(t),
        };
        assert_eq!(
            got.map(|g| (g.timestamp, g.offset)),
            want,
            "offset_for_timestamp {target}"
        );
    }

    pub fn force_roll(&mut self) {
        let r = self.log().force_roll();
        self.note(format!("force_roll: {r:?}"));
        if !self.handle("force_roll", &r) {
            self.check_step();
        }
    }

    pub fn truncate_to(&mut self) {
        let (start, leo) = (self.model.log_start, self.model.leo);
        let offset = if self.rng.ratio(1, 10) {
            (start - self.rng.range_inclusive(1, 5) as i64).max(0)
        } else {
            self.rng.range_inclusive(start as u64, (leo + 1) as u64) as i64
        };
        self.do_truncate_to(offset);
    }

    pub fn do_truncate_to(&mut self, offset: i64) {
        self.stats.truncations += 1;
        let start = self.model.log_start;
        let straddle = self.model.batch_at_or_after(offset).map(|(_, b)| b.base);
        let cut = straddle.map_or(offset, |b| b.min(offset));
        // The promise is void for whatever the truncation is asked to remove, even if it
        // fails half way.
        if offset < start || cut < start {
            self.model.required.clear();
        } else {
            self.model.forget_from(cut);
        }
        let r = self.log().truncate_to(offset);
        self.note(format!("truncate_to {offset}: {r:?}"));
        if self.handle("truncate_to", &r) {
            return;
        }
        if offset >= self.model.leo {
            // Nothing to do.
        } else if offset < start || cut < start {
            // Below the log start, or the straddling batch starts below it: the log empties
            // and starts at `offset` or at its unchanged log start.
            let new_start = offset.min(start);
            self.model.batches.clear();
            self.model.leo = new_start;
            self.model.log_start = new_start;
        } else {
            let first_removed = self.model.batch_at_or_after(offset).map(|(_, b)| b.base);
            let kept_next = self.model.batches.iter().rev().find(|b| b.last < offset);
            let lo = kept_next.map_or(i64::MIN, MBatch::next);
            let hi = first_removed.map_or(offset, |b| b.min(offset));
            let leo = self.log().log_end_offset();
            let emptied = self.log().size_bytes() == 0 && leo == start;
            if emptied && lo < start {
                // Offset in a gap above data that all lies below the log start: the log may
                // empty and restart at its log start, as for a straddling batch.
                self.model.batches.clear();
                self.model.leo = start;
            } else {
                assert!(
                    lo <= leo && leo <= hi && leo >= start,
                    "truncate_to {offset}: end {leo} outside [{lo}, {hi}] or below {start}"
                );
                self.model.truncate_to(offset);
                self.model.leo = leo;
                self.model.forget_from(leo);
            }
        }
        self.check_step();
    }

    pub fn truncate_fully(&mut self) {
        let leo = self.model.leo;
        let offset = if self.rng.ratio(1, 4) {
            self.rng.below(leo as u64 + 1) as i64
        } else {
            leo + self.rng.below(100) as i64
        };
        self.do_truncate_fully(offset);
    }

    pub fn do_truncate_fully(&mut self, offset: i64) {
        self.stats.truncations += 1;
        self.model.required.clear();
        let r = self.log().truncate_fully_and_start_at(offset);
        self.note(format!("truncate_fully_and_start_at {offset}: {r:?}"));
        if self.handle("truncate_fully", &r) {
            return;
        }
        self.model.batches.clear();
        self.model.leo = offset;
        self.model.log_start = offset;
        self.check_step();
    }

    /// `LogDir::flush`: flush every log and checkpoint recovery points and log starts.
    pub fn flush(&mut self) {
        let r = self.dir.as_ref().expect("dir open").flush();
        self.note(format!("flush: {r:?} rp {}", self.log().recovery_point()));
        if self.handle("flush", &r) {
            return;
        }
        let rp = self.log().recovery_point();
        assert_eq!(
            rp, self.model.leo,
            "flush moves the recovery point to the end"
        );
        self.model.promise_durable(rp);
        self.check_step();
    }

    pub fn retention(&mut self) {
        let advance = self.rng.range_inclusive(0, 15_000) as i64;
        self.clock.advance_ms(advance);
        if self.rng.ratio(1, 2) && self.model.leo > self.model.log_start {
            let (start, leo) = (self.model.log_start, self.model.leo);
            let to = self.rng.range_inclusive(start as u64, leo as u64) as i64;
            let r = self.log().advance_log_start_offset(to);
            self.note(format!("advance_log_start_offset {to}: {r:?}"));
            if self.handle("advance_log_start_offset", &r) {
                return;
            }
            self.model.log_start = self.model.log_start.max(to);
            self.model.forget_below(self.model.log_start);
        }
        let r = self.log().delete_old_segments();
        self.note(format!("delete_old_segments (+{advance} ms): {r:?}"));
        if self.handle("delete_old_segments", &r) {
            return;
        }
        let outcome = r.expect("handled");
        self.stats.segments_deleted += outcome.segments_deleted as u64;
        let log = self.log().clone();
        let first_base = log.segments()[0].base_offset();
        let removed: u64 = self
            .model
            .batches
            .iter()
            .filter(|b| b.base < first_base)
            .map(MBatch::size)
            .sum();
        assert_eq!(removed, outcome.bytes_deleted, "retention byte count");
        self.model.batches.retain(|b| b.base >= first_base);
        assert!(log.log_start_offset() >= self.model.log_start);
        self.model.log_start = log.log_start_offset();
        self.model.forget_below(self.model.log_start);
        let r = log.remove_expired_deleted_files();
        if !self.handle("remove_expired_deleted_files", &r) {
            self.check_step();
        }
    }

    /// Arms a one-shot fault a few calls ahead.
    pub fn inject_fault(&mut self) {
        // Read faults are left out: the checks read, and a failed read changes nothing.
        let op = match self.rng.below(11) {
            0..=4 => SimOp::Write,
            5..=7 => SimOp::Sync,
            8 => SimOp::SyncDir,
            9 => SimOp::Rename,
            _ => SimOp::Create,
        };
        let kind = match self.rng.below(3) {
            0 => FaultKind::Eio,
            1 => FaultKind::Enospc,
            _ => FaultKind::Crash,
        };
        let n = self.rng.range_inclusive(1, 12);
        // Half the faults aim at one kind of file, so that index files and checkpoints get
        // their share rather than the calls that happen to come first.
        let target = match self.aux_rng.below(10) {
            0 => Some(".log"),
            1 => Some(".index"),
            2 => Some(".timeindex"),
            3 => Some("checkpoint"),
            4 => Some(".tmp"),
            _ => None,
        };
        self.note(format!("arm {kind:?} at {op:?} #{n} on {target:?}"));
        if let Some(suffix) = target {
            self.sim.set_faults(FaultPlan {
                path_suffix: Some(suffix.to_string()),
                ..FaultPlan::default()
            });
        }
        self.sim.fail_nth(op, n, kind).expect("arm fault");
    }

    /// One random operation.
    pub fn step(&mut self) {
        self.faults_before_step = self.sim.counters().faults;
        self.clock.advance_ms(self.rng.below(200) as i64);
        let pick = self.rng.below(1000);
        self.note(format!("step {pick} at {} ms", self.clock.now_ms()));
        match pick {
            0..=339 => self.append_leader(),
            340..=419 => self.append_follower(),
            420..=599 => self.read(),
            600..=649 => self.offset_for_timestamp(),
            650..=679 => self.force_roll(),
            680..=719 => self.truncate_to(),
            720..=734 => self.truncate_fully(),
            735..=819 => self.flush(),
            820..=859 => self.retention(),
            860..=889 => self.restart(Restart::Clean),
            890..=924 => self.restart(Restart::Power),
            925..=944 => self.restart(Restart::Kill),
            _ => self.inject_fault(),
        }
    }

    // ---- checks -------------------------------------------------------------------------

    /// Cheap checks after every successful operation (invariants 1 and 2).
    pub fn check_step(&self) {
        let log = self.log();
        let (start, end, rp) = (
            log.log_start_offset(),
            log.log_end_offset(),
            log.recovery_point(),
        );
        assert!(start <= end, "log start {start} > end {end}");
        assert!(rp <= end, "recovery point {rp} > end {end}");
        assert_eq!(end, self.model.leo, "log end offset differs from the model");
        assert_eq!(
            start, self.model.log_start,
            "log start differs from the model"
        );
        let segments = log.segments();
        assert!(segments
            .windows(2)
            .all(|w| w[0].base_offset() < w[1].base_offset()));
        assert!(segments[0].base_offset() <= start);
        assert!(segments[segments.len() - 1].base_offset() <= end);
        if let Some(last) = self.model.batches.last() {
            assert!(last.next() <= end, "model batch past the end");
        }
        let model_bytes: u64 = self.model.batches.iter().map(MBatch::size).sum();
        assert_eq!(
            log.size_bytes(),
            model_bytes,
            "segment bytes differ from the model: segments {:?}, model {:?}",
            segments
                .iter()
                .map(|s| (s.base_offset(), s.size()))
                .collect::<Vec<_>>(),
            self.model
                .batches
                .iter()
                .map(|b| (b.base, b.last, b.size()))
                .collect::<Vec<_>>()
        );
    }

    /// Parses every segment file: each byte a reader can reach lies in a CRC-valid batch,
    /// offsets strictly increase across batches and segments (invariants 1 and 5).
    fn segment_batches(&self) -> Vec<MBatch> {
        let log = self.log();
        let segments = log.segments();
        let mut out: Vec<MBatch> = Vec::new();
        for (i, s) in segments.iter().enumerate() {
            let raw = self
                .sim
                .read_raw(s.log_path())
                .unwrap_or_else(|| panic!("segment file {} missing", s.log_path().display()));
            assert_eq!(
                raw.len() as u64,
                s.size(),
                "{}: file length differs from the segment size after recovery",
                s.log_path().display()
            );
            let mut it = batches(&raw);
            for b in it.by_ref() {
                let b = b.unwrap_or_else(|e| panic!("{}: bad batch: {e}", s.log_path().display()));
                b.validate()
                    .unwrap_or_else(|e| panic!("{}: invalid batch: {e}", s.log_path().display()));
                let h = b.header();
                assert!(
                    h.base_offset >= s.base_offset(),
                    "batch below its segment base"
                );
                if let Some(next) = segments.get(i + 1) {
                    assert!(
                        h.last_offset() < next.base_offset(),
                        "batch reaches the next segment"
                    );
                }
                if let Some(prev) = out.last() {
                    assert!(h.base_offset > prev.last, "offsets do not increase");
                }
                out.push(MBatch {
                    base: h.base_offset,
                    last: h.last_offset(),
                    bytes: b.as_bytes().to_vec(),
                });
            }
            assert_eq!(it.position(), raw.len(), "segment ends inside a batch");
        }
        out
    }

    /// Reads every offset in range (sampled when there are very many): each read succeeds
    /// and starts with the batch holding the offset (or the next one after a gap).
    fn check_every_offset(&self) {
        let log = self.log();
        let (start, end) = (log.log_start_offset(), log.log_end_offset());
        let stride = ((end - start) / OFFSET_READS_MAX).max(1);
        let mut offset = start;
        while offset < end {
            let slice = log
                .read(offset, 1, None)
                .unwrap_or_else(|e| panic!("read {offset} in [{start}, {end}): {e}"));
            let want = self.model.batch_at_or_after(offset).map(|(_, b)| b);
            match (slice, want) {
                (None, None) => {}
                (Some(s), Some(want)) => {
                    let got = s.to_vec().expect("slice bytes");
                    assert_eq!(&got[..], &want.bytes[..], "read {offset}: wrong batch");
                }
                (got, want) => panic!(
                    "read {offset}: got {:?}, model has {:?}",
                    got.map(|s| s.len()),
                    want.map(|b| (b.base, b.last))
                ),
            }
            offset += stride;
        }
    }

    /// After a reopen: the recovered log is valid, keeps every batch the engine had promised
    /// durable, holds nothing that was never written, and (`strict`: clean close or a kill
    /// with no failed write) lost nothing at all, nor moved the log start past where it was
    /// (`clean`, a clean close with no failed write: not moved it at all). The model
    /// becomes what was recovered.
    fn check_recovered(&mut self, strict: bool, clean: bool) {
        let log = self.log().clone();
        let (start, end) = (log.log_start_offset(), log.log_end_offset());
        assert!(start <= end && log.recovery_point() <= end);
        let found = self.segment_batches();
        if let Some(last) = found.last() {
            assert!(last.next() <= end, "end {end} inside the last batch");
        }
        let active_base = log.segments().last().expect("segment").base_offset();
        let derived = found
            .last()
            .map_or(active_base, |b| b.next().max(active_base));
        assert_eq!(end, derived, "log end is not where the last batch ends");
        // The leader-epoch cache agrees with the batches it describes.
        let epochs = log.epoch_entries();
        assert!(
            epochs
                .windows(2)
                .all(|w| w[0].epoch < w[1].epoch && w[0].start_offset < w[1].start_offset),
            "epoch cache out of order: {epochs:?}"
        );
        assert!(
            epochs.iter().all(|e| e.start_offset < end.max(start + 1)),
            "epoch cache past the log end {end}: {epochs:?}"
        );
        // (A log whose start reached its end shows no batch and may know no epoch.)
        if found.last().is_some() && start < end {
            assert_eq!(
                epochs.last().map(|e| e.epoch),
                Some(log.latest_epoch()),
                "epoch cache {epochs:?} does not end with the last batch's epoch"
            );
        }
        for b in &found {
            assert!(
                self.model.is_candidate(b),
                "recovered batch {}..={} was never written (invented or mangled)",
                b.base,
                b.last
            );
        }
        // No holes: each batch follows the one it was written after. A batch lost
        // between two that survived passes every check above on a log whose offsets may
        // have gaps.
        for pair in found.windows(2) {
            assert!(
                self.model.followed(&pair[0], &pair[1]),
                "hole: recovered batch {}..={} follows {}..={}, which it was never written \
                 after (a batch between them was lost)",
                pair[1].base,
                pair[1].last,
                pair[0].base,
                pair[0].last
            );
        }
        for r in &self.model.required {
            if r.last < start {
                panic!(
                    "durable batch {}..={} hidden below the log start {start}",
                    r.base, r.last
                );
            }
            let i = found.partition_point(|b| b.base < r.base);
            assert!(
                found.get(i) == Some(r),
                "durable batch {}..={} lost or changed after restart",
                r.base,
                r.last
            );
        }
        assert!(
            end >= self.model.min_leo(),
            "log end {end} below the durable end"
        );
        if strict {
            let model_visible: Vec<&MBatch> = self
                .model
                .batches
                .iter()
                .filter(|b| b.last >= start)
                .collect();
            let found_visible: Vec<&MBatch> = found.iter().filter(|b| b.last >= start).collect();
            assert_eq!(
                found_visible.len(),
                model_visible.len(),
                "batches lost or added by a clean restart or kill"
            );
            for (a, b) in found_visible.iter().zip(&model_visible) {
                assert_eq!(a, b, "batch changed by a clean restart or kill");
            }
            assert!(end <= self.model.leo, "log end {end} past the model's");
            // A kill may bring back an older log start (its checkpoint is written now
            // and then, as Kafka's), never a later one; a clean close keeps it.
            assert!(
                start <= self.model.log_start,
                "log start {start} past the model's {}",
                self.model.log_start
            );
            if clean {
                assert_eq!(
                    start, self.model.log_start,
                    "log start moved by a clean restart"
                );
            }
        }
        self.model.batches = found;
        self.model.log_start = start;
        self.model.leo = end;
        self.model.promise_durable(log.recovery_point());
        self.check_step();
        self.check_every_offset();
    }

    /// The final check of a seed: a clean restart must lose nothing.
    pub fn finish(&mut self) {
        self.check_every_offset();
        self.restart(Restart::Clean);
    }
}

fn random_bytes(r: &mut SimRng, max: u64) -> Vec<u8> {
    let mut v = vec![0u8; r.below(max + 1) as usize];
    r.fill_bytes(&mut v);
    v
}

fn is_io_failure(err: &Error) -> bool {
    matches!(err, Error::Io { .. } | Error::ReadOnly { .. })
}
