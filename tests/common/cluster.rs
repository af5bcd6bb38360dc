//! In-process replicas of one partition, each broker on its own simulated disk, with the
//! test carrying fetches between them.

use std::sync::Arc;

use partlog::cluster::BatchBytes;
use partlog::io::sim::SimStorage;
use partlog::log::{Log, LogOpenOptions};
use partlog::replica::{Partition, ReplicaConfig, TruncationMode};
use partlog::{LogConfig, ManualClock};

pub struct Broker {
    pub disk: Arc<SimStorage>,
    /// `None` while the broker is down.
    replica: Option<Partition>,
    config: ReplicaConfig,
}

pub struct Cluster {
    pub clock: Arc<ManualClock>,
    pub brokers: Vec<Broker>,
}

pub fn open_log(disk: &Arc<SimStorage>, clock: &Arc<ManualClock>) -> Arc<Log> {
    let config = LogConfig {
        index_bytes_max: 4096,
        ..LogConfig::default()
    };
    open_log_with(disk, clock, config)
}

pub fn open_log_with(
    disk: &Arc<SimStorage>,
    clock: &Arc<ManualClock>,
    config: LogConfig,
) -> Arc<Log> {
    let options = LogOpenOptions {
        config,
        clock: clock.clone(),
        ..LogOpenOptions::new(disk.storage(), "/data/t-0")
    };
    Arc::new(Log::open(options).expect("open log").0)
}

impl Cluster {
    /// `n` brokers; broker 0 leads epoch 1 with all of them in sync.
    pub fn new(n: usize, min_isr: usize, truncation: TruncationMode) -> Cluster {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let brokers = (0..n)
            .map(|id| {
                let disk = SimStorage::new(id as u64 + 1);
                let config = ReplicaConfig {
                    min_insync_replicas: min_isr,
                    truncation,
                    ..ReplicaConfig::new(id as i32)
                };
                let log = open_log(&disk, &clock);
                let replica = Partition::new(log, config.clone(), clock.clone(), 0);
                Broker {
                    disk,
                    replica: Some(replica),
                    config,
                }
            })
            .collect();
        let cluster = Cluster { clock, brokers };
        let all: Vec<i32> = (0..n as i32).collect();
        cluster
            .replica(0)
            .become_leader(1, all.clone(), all)
            .expect("become leader");
        for id in 1..n {
            cluster
                .replica(id)
                .become_follower(1, 0)
                .expect("become follower");
        }
        cluster
    }

    pub fn replica(&self, id: usize) -> &Partition {
        self.brokers[id].replica.as_ref().expect("broker is up")
    }

    /// One fetch of `follower` from `leader`, applied.
    pub fn fetch(&self, follower: usize, leader: usize) {
        let request = self.replica(follower).fetch_request(1 << 20);
        let response = self.replica(leader).fetch(&request).expect("fetch");
        let applied = self
            .replica(follower)
            .apply_fetch(&response)
            .expect("apply fetch");
        assert!(applied, "the answer to the fetch just sent applies");
    }

    /// Followers fetch from `leader` a few rounds (enough to copy what there is and
    /// carry the HW back), confirming ISR proposals as a controller would.
    pub fn replicate(&self, leader: usize, followers: &[usize]) {
        for _ in 0..6 {
            for &f in followers {
                self.fetch(f, leader);
            }
            take_proposal(self.replica(leader));
        }
    }

    /// Broker `id` restarts: its log reopens from its disk (after `crash`, only what was
    /// synced), with `high_watermark` from its checkpoint.
    pub fn restart(&mut self, id: usize, crash: bool, high_watermark: i64) {
        let broker = &mut self.brokers[id];
        // The old process is gone (and with it the log's lock) before the new one opens.
        broker.replica = None;
        if crash {
            broker.disk.crash();
        }
        let log = open_log(&broker.disk, &self.clock);
        broker.replica = Some(Partition::new(
            log,
            broker.config.clone(),
            self.clock.clone(),
            high_watermark,
        ));
    }
}

/// A controller that holds the ISR `leader` holds takes its proposal, if it has one, and
/// answers with it; returns the new ISR.
pub fn take_proposal(leader: &Partition) -> Option<Vec<i32>> {
    let proposal = leader.isr_proposal()?;
    let version = proposal.isr_version + 1;
    (leader.confirm_isr(proposal.leader_epoch, version, proposal.isr.clone()))
        .expect("confirm ISR");
    Some(proposal.isr)
}

/// The controller, holding the ISR `leader` holds, changes it to `isr` on its own (as when
/// a broker's session ends) and tells the leader.
pub fn set_isr(leader: &Partition, isr: Vec<i32>) {
    let version = leader.isr_version().expect("a leader") + 1;
    (leader.confirm_isr(leader.leader_epoch(), version, isr)).expect("confirm ISR");
}

/// Every batch of the log, whole, with its base offset.
pub fn contents(log: &Log) -> Vec<BatchBytes> {
    partlog::cluster::batches(log, i64::MAX).expect("read")
}

/// [`contents`] from the batch that holds `from` on.
pub fn contents_from(log: &Log, from: i64) -> Vec<BatchBytes> {
    partlog::cluster::batches_between(log, from, i64::MAX).expect("read")
}

/// Invariant 2 on a replica: its log start, HW and log end stay in that order.
pub fn assert_bounds(r: &Partition, who: &str) {
    let (start, hw, end) = (
        r.log().log_start_offset(),
        r.high_watermark(),
        r.log().log_end_offset(),
    );
    assert!(
        start <= hw && hw <= end,
        "{who}: log start {start}, HW {hw}, log end {end}"
    );
}

/// Invariant 1 on a log that is not compacted: its batches, read from its log start,
/// hold every offset up to its log end once. The first holds the log start (DeleteRecords
/// may put it inside a batch), each next one starts where the one before ended, and the
/// last ends at the log end.
pub fn assert_consecutive(log: &Log, who: &str) {
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    let mut next = None;
    let mut at = start;
    while let Some(slice) = log.read(at, 1 << 20, None).expect("read") {
        let bytes = slice.to_vec().expect("slice bytes");
        for batch in partlog::record::batches(&bytes) {
            let h = *batch.expect("batch").header();
            match next {
                None => assert!(
                    h.base_offset <= start && start <= h.last_offset(),
                    "{who}: the first batch {}..={} does not hold the log start {start}",
                    h.base_offset,
                    h.last_offset()
                ),
                Some(n) => assert_eq!(h.base_offset, n, "{who}: offsets jump"),
            }
            next = Some(h.next_offset());
        }
        at = next.unwrap_or(end);
    }
    assert_eq!(
        next.unwrap_or(start),
        end,
        "{who}: the batches end elsewhere"
    );
}
