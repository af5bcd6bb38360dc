//! The consumer group of the failover demo: a consumer reads committed records of the data
//! partition and commits its position at a fixed cadence to the group's
//! offsets partition, a compacted log replicated on the same three brokers (its own
//! cluster: broker `b` of both is one machine). The broker failure interrupts it; it
//! resumes from its committed offset on the new coordinator, re-processing what it had
//! not committed and skipping nothing. It commits every `records / 30` records.

use partlog::cluster::{Cluster, ClusterOptions, Election};
use partlog::offsets::{offsets_log_config, OffsetCommit, OffsetsConfig, OffsetsStore};
use partlog::record::batches;
use partlog::replica::AppendHandle;
use partlog::{Error, LogConfig};

use crate::CliResult;

/// The group's name.
pub const GROUP: &str = "demo-consumers";
/// The consumer commits this many times over the story (its cadence in records follows).
const COMMITS_PER_STORY: u64 = 30;
/// Bytes the consumer fetches per round.
const FETCH_BYTES: u64 = 64 * 1024;

/// The consumer group and its coordinators.
pub struct Group {
    offsets: Cluster,
    stores: Vec<OffsetsStore>,
    index: u32,
    /// The coordinator the consumer talks to, once it serves.
    coordinator: Option<usize>,
    /// The next offset to process; `None` while interrupted.
    position: Option<i64>,
    /// Times each data offset was processed.
    processed: Vec<u32>,
    pending: Vec<(AppendHandle, i64)>,
    last_committed_at: i64,
    commit_every: i64,
    last_acked: Option<i64>,
    /// At the failure: the last acknowledged commit, and where the consumer was.
    pub committed_before: Option<i64>,
    pub position_at_failure: Option<i64>,
    pub resumed_from: Option<i64>,
}

/// What the group's story ended with.
pub struct GroupVerdict {
    pub committed_before: i64,
    pub resumed_from: i64,
    pub reprocessed: u64,
    pub skipped: u64,
}

impl Group {
    /// A group whose consumer will see about `records` records.
    pub fn new(seed: u64, records: u64) -> CliResult<Group> {
        let offsets = Cluster::new(ClusterOptions {
            seed: seed.wrapping_add(1),
            log_config: LogConfig {
                segment_bytes: 64 * 1024,
                index_bytes_max: 16 * 1024,
                ..offsets_log_config()
            },
            ..ClusterOptions::default()
        })?;
        let stores: Vec<OffsetsStore> = (0..offsets.brokers())
            .map(|_| OffsetsStore::new(OffsetsConfig::default(), offsets.clock().clone()))
            .collect();
        let index = stores[0].partition_for(GROUP);
        for (b, store) in stores.iter().enumerate() {
            if let Some(replica) = offsets.replica(b) {
                store.host(index, replica.clone());
            }
        }
        let mut group = Group {
            offsets,
            stores,
            index,
            coordinator: None,
            position: Some(0),
            processed: Vec::new(),
            pending: Vec::new(),
            last_committed_at: 0,
            commit_every: (records / COMMITS_PER_STORY).max(1) as i64,
            last_acked: None,
            committed_before: None,
            position_at_failure: None,
            resumed_from: None,
        };
        group.find_coordinator()?;
        Ok(group)
    }

    /// The offsets partition's leader starts (or goes on) loading; once it serves, it is
    /// the consumer's coordinator.
    fn find_coordinator(&mut self) -> CliResult<()> {
        let Some(leader) = self.offsets.leader() else {
            return Ok(());
        };
        if self.coordinator == Some(leader) {
            return Ok(());
        }
        let store = &self.stores[leader];
        if let Err(Error::NotCoordinator { .. }) = store.load_step(self.index) {
            store.become_leader(self.index)?;
        }
        store.load(self.index)?;
        match store.fetch(GROUP, None) {
            Ok(committed) => {
                self.coordinator = Some(leader);
                if self.position.is_none() {
                    let from = committed.first().map_or(0, |(_, c)| c.offset);
                    self.position = Some(from);
                    self.resumed_from = Some(from);
                    self.last_committed_at = from;
                }
                Ok(())
            }
            Err(Error::CoordinatorLoadInProgress { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// One round: the offsets partition replicates, the consumer processes what is
    /// committed on the data partition and commits when its cadence says so.
    pub fn round(&mut self, data: &Cluster, round_ms: i64) -> CliResult<()> {
        self.offsets.replicate()?;
        self.offsets.tick(round_ms)?;
        self.find_coordinator()?;
        self.pending.retain(|(h, at)| match h.poll() {
            Some(Ok(_)) => {
                self.last_acked = Some(self.last_acked.map_or(*at, |a| a.max(*at)));
                false
            }
            Some(Err(_)) => false,
            None => true,
        });
        let (Some(mut position), Some(coordinator)) = (self.position, self.coordinator) else {
            return Ok(());
        };
        let Some(leader) = data.leader().and_then(|l| data.replica(l)) else {
            return Ok(());
        };
        if let Some(slice) = leader.read_committed(position, FETCH_BYTES)? {
            let bytes = slice.to_vec()?;
            for batch in batches(&bytes) {
                for record in batch?.records()? {
                    let offset = record?.offset;
                    if offset < position {
                        continue;
                    }
                    let i = offset as usize;
                    if self.processed.len() <= i {
                        self.processed.resize(i + 1, 0);
                    }
                    self.processed[i] += 1;
                    position = offset + 1;
                }
            }
        }
        self.position = Some(position);
        if position - self.last_committed_at >= self.commit_every {
            let commit = OffsetCommit {
                topic: "demo".into(),
                partition: 0,
                offset: position,
                leader_epoch: data.epoch(),
                metadata: String::new(),
            };
            match self.stores[coordinator].commit(GROUP, &[commit]) {
                Ok(handle) => {
                    self.pending.push((handle, position));
                    self.last_committed_at = position;
                }
                Err(
                    Error::NotCoordinator { .. }
                    | Error::CoordinatorLoadInProgress { .. }
                    | Error::NotEnoughReplicas { .. },
                ) => self.coordinator = None,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Broker `b` dies: its replica of the offsets partition with it; the consumer is
    /// interrupted and will resume from its committed offset.
    pub fn kill(&mut self, b: usize) -> CliResult<Option<Election>> {
        self.committed_before = self.last_acked;
        self.position_at_failure = self.position;
        let election = self.offsets.kill(b)?;
        self.stores[b] = OffsetsStore::new(OffsetsConfig::default(), self.offsets.clock().clone());
        self.coordinator = None;
        self.position = None;
        self.pending.clear();
        Ok(election)
    }

    pub fn restart(&mut self, b: usize) -> CliResult<()> {
        self.offsets.restart(b)?;
        if let Some(replica) = self.offsets.replica(b) {
            self.stores[b].host(self.index, replica.clone());
        }
        Ok(())
    }

    /// The coordinator serving now.
    pub fn coordinator(&self) -> Option<usize> {
        self.coordinator
    }

    /// Whether the consumer has processed everything below `end`.
    pub fn caught_up(&self, end: i64) -> bool {
        self.position.is_some_and(|p| p >= end)
    }

    /// Counts over the data partition's committed offsets `[0, end)`.
    pub fn verdict(&self, end: i64) -> GroupVerdict {
        let seen = |o: i64| self.processed.get(o as usize).copied().unwrap_or(0);
        GroupVerdict {
            committed_before: self.committed_before.unwrap_or(0),
            resumed_from: self.resumed_from.unwrap_or(0),
            reprocessed: (0..end).map(|o| u64::from(seen(o).saturating_sub(1))).sum(),
            skipped: (0..end).filter(|&o| seen(o) == 0).count() as u64,
        }
    }
}
