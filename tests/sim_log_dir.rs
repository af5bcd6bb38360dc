//! A seeded simulator of one log dir with several partitions, as a broker uses it:
//! partitions are opened on demand (some never, in a given process), appended to,
//! truncated and flushed, and the process ends by a clean close, a kill or a power loss.
//! After every restart the partitions opened are checked against a model: every batch
//! reads back valid (a partition trusted on a clean-shutdown marker must hold no torn
//! batch), offsets are consecutive, and everything the engine promised durable is there.
//!
//! ```text
//! cargo test --release --test sim_log_dir                       # CI: 1,000 seeds x 150 steps
//! SIM_DIR_SEED=12 cargo test --release --test sim_log_dir       # replay one seed
//! SIM_DIR_SEEDS=20000 SIM_DIR_SEED_BASE=1000 cargo test --release --test sim_log_dir
//! ```

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use partlog::checkpoint::TopicPartition;
use partlog::io::sim::{SimRng, SimStorage};
use partlog::log::Log;
use partlog::manager::{LogDir, LogDirOptions};
use partlog::record::{batches, BatchBuilder};
use partlog::{Clock, LogConfig, ManualClock};

const DEFAULT_SEEDS: u64 = 1_000;
const STEPS: u64 = 150;
const PARTITIONS: i32 = 3;

/// What the engine wrote and promised for one partition.
#[derive(Debug, Default, Clone)]
struct Partition {
    /// `(base offset, next offset, crc)` of every batch the log holds, in order.
    batches: Vec<(i64, i64, u32)>,
    /// Batches that end at or below this offset survive any crash.
    promised: i64,
}

impl Partition {
    fn end(&self) -> i64 {
        self.batches.last().map_or(self.promised, |b| b.1)
    }
}

struct Sim {
    disk: Arc<SimStorage>,
    clock: Arc<ManualClock>,
    rng: SimRng,
    config: LogConfig,
    dir: Option<LogDir>,
    open: Vec<Option<Arc<Log>>>,
    model: Vec<Partition>,
    trace: Vec<String>,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = SimRng::new(seed);
        let config = LogConfig {
            segment_bytes: rng.range_inclusive(4096, 16384),
            index_bytes_max: rng.range_inclusive(48, 256),
            index_interval_bytes: rng.range_inclusive(32, 512),
            ..LogConfig::default()
        };
        let mut sim = Sim {
            disk: SimStorage::new(seed),
            clock: Arc::new(ManualClock::new(1_700_000_000_000)),
            rng,
            config,
            dir: None,
            open: vec![None; PARTITIONS as usize],
            model: vec![Partition::default(); PARTITIONS as usize],
            trace: Vec::new(),
        };
        sim.open_dir();
        sim
    }

    fn tp(p: usize) -> TopicPartition {
        TopicPartition::new("sim", p as i32)
    }

    fn note(&mut self, line: String) {
        self.trace.push(line);
    }

    fn dir(&self) -> &LogDir {
        self.dir.as_ref().expect("dir open")
    }

    fn open_dir(&mut self) {
        let options = LogDirOptions {
            config: self.config.clone(),
            clock: self.clock.clone(),
        };
        let dir = LogDir::open(self.disk.storage(), "/data", options).expect("open dir");
        self.note(format!("dir opened, clean: {}", dir.was_clean_shutdown()));
        self.dir = Some(dir);
    }

    /// Opens partition `p` (recovering it) and checks it against the model.
    fn open_partition(&mut self, p: usize) {
        let (log, report) = self.dir().open_log(&Self::tp(p)).expect("open log");
        self.note(format!(
            "opened {p}: end {} clean {} damage {:?}",
            log.log_end_offset(),
            report.clean_shutdown,
            report.damage.as_ref().map(|d| &d.reason)
        ));
        let found = read_batches(&log);
        let model = &mut self.model[p];
        let promised: Vec<_> = model
            .batches
            .iter()
            .filter(|b| b.1 <= model.promised)
            .copied()
            .collect();
        assert!(
            found.len() >= promised.len() && found[..promised.len()] == promised[..],
            "partition {p}: promised {promised:?}, recovered {found:?}"
        );
        // What survived beyond the promise must be what was written, in order, with no
        // batch missing between two that survived: a prefix of the log as it was.
        assert!(
            model.batches.starts_with(&found),
            "partition {p}: recovered batches that are not a prefix of those written: \
             {found:?} vs {:?}",
            model.batches
        );
        model.batches = found;
        model.promised = model.promised.min(model.end());
        self.open[p] = Some(log);
    }

    fn append(&mut self, p: usize) {
        let log = self.open[p].clone().expect("open");
        let mut input = Vec::new();
        for _ in 0..self.rng.range_inclusive(1, 3) {
            let mut builder = BatchBuilder::new();
            for _ in 0..self.rng.range_inclusive(1, 5) {
                let value = vec![b'v'; self.rng.range_inclusive(10, 200) as usize];
                builder.append(self.clock.now_ms(), None, Some(&value), &[]);
            }
            builder.build_into(&mut input).expect("batch");
        }
        let info = log.append_as_leader(&mut input, 0).expect("append");
        let mut appended = parse(&input);
        assert_eq!(appended.first().map(|b| b.0), Some(info.first_offset));
        self.model[p].batches.append(&mut appended);
        self.note(format!(
            "append {p}: {}..={}",
            info.first_offset, info.last_offset
        ));
    }

    fn truncate(&mut self, p: usize) {
        let log = self.open[p].clone().expect("open");
        let (start, end) = (log.log_start_offset(), log.log_end_offset());
        let to = start + self.rng.below((end - start + 1) as u64) as i64;
        log.truncate_to(to).expect("truncate");
        let new_end = log.log_end_offset();
        let model = &mut self.model[p];
        model.batches.retain(|b| b.1 <= new_end);
        if let Some(last) = model.batches.last() {
            assert_eq!(last.1, new_end, "partition {p}: truncated to {to}");
        }
        model.promised = model.promised.min(new_end);
        self.note(format!("truncate {p} to {to}: end {new_end}"));
    }

    fn flush(&mut self) {
        self.dir().flush().expect("flush");
        for (p, log) in self.open.iter().enumerate() {
            if let Some(log) = log {
                let rp = log.recovery_point();
                self.model[p].promised = self.model[p].promised.max(rp);
            }
        }
        self.note("flush".into());
    }

    fn restart(&mut self) {
        let how = self.rng.below(3);
        let dir = self.dir.take().expect("dir");
        let was_open: Vec<bool> = self.open.iter().map(Option::is_some).collect();
        let opened: Vec<Arc<Log>> = self.open.iter_mut().filter_map(Option::take).collect();
        match how {
            0 => {
                drop(opened);
                dir.close().expect("clean close");
                // A clean close makes the open partitions durable; the others stay as the
                // last process left them.
                for (m, _) in self.model.iter_mut().zip(&was_open).filter(|(_, o)| **o) {
                    m.promised = m.end();
                }
                self.note("restart: clean close".into());
            }
            1 => {
                drop((opened, dir));
                self.disk.crash_keep_written();
                self.note("restart: kill".into());
            }
            _ => {
                drop((opened, dir));
                self.disk.crash();
                self.note("restart: power loss".into());
            }
        }
        self.open_dir();
    }

    fn step(&mut self) {
        self.clock.advance_ms(self.rng.below(100) as i64);
        let p = self.rng.below(PARTITIONS as u64) as usize;
        match self.rng.below(20) {
            0..=2 if self.open[p].is_none() => self.open_partition(p),
            0..=10 if self.open[p].is_some() => self.append(p),
            11 if self.open[p].is_some() => self.truncate(p),
            12..=14 => self.flush(),
            15..=16 => self.restart(),
            _ => {}
        }
    }

    /// Ends with every partition opened and checked.
    fn finish(&mut self) {
        for p in 0..PARTITIONS as usize {
            if self.open[p].is_none() {
                self.open_partition(p);
            }
        }
    }
}

/// `(base, next, crc)` of each batch in `bytes`.
fn parse(bytes: &[u8]) -> Vec<(i64, i64, u32)> {
    batches(bytes)
        .map(|b| {
            let b = b.expect("batch parses");
            let h = b.header();
            (h.base_offset, h.next_offset(), h.crc)
        })
        .collect()
}

/// Every batch of the log, each validated, with consecutive offsets.
fn read_batches(log: &Log) -> Vec<(i64, i64, u32)> {
    let mut out: Vec<(i64, i64, u32)> = Vec::new();
    let mut next = log.log_start_offset();
    while let Some(slice) = log.read(next, 1 << 20, None).expect("read") {
        let bytes = slice.to_vec().expect("bytes");
        for b in batches(&bytes) {
            let b = b.expect("batch parses");
            b.validate()
                .unwrap_or_else(|e| panic!("batch at {next} does not validate: {e}"));
            let h = b.header();
            if let Some(last) = out.last() {
                assert_eq!(h.base_offset, last.1, "offsets are not consecutive");
            }
            out.push((h.base_offset, h.next_offset(), h.crc));
            next = h.next_offset();
        }
    }
    out
}

fn run_seed(seed: u64) -> Result<(), String> {
    let mut sim = None;
    let result = catch_unwind(AssertUnwindSafe(|| {
        let s = sim.insert(Sim::new(seed));
        for _ in 0..STEPS {
            s.step();
        }
        s.finish();
    }));
    result.map_err(|panic| {
        let trace = sim.map_or(Vec::new(), |s| s.trace);
        let replay = format!("SIM_DIR_SEED={seed} cargo test --release --test sim_log_dir");
        common::seed_report(
            seed,
            &common::panic_text(panic.as_ref()),
            &trace,
            30,
            &replay,
        )
    })
}

#[test]
fn partitions_opened_on_demand_survive_restarts() {
    common::run_seeds("SIM_DIR", DEFAULT_SEEDS, run_seed);
}
