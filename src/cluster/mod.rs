//! An in-process cluster: brokers holding replicas of one partition, each broker with its
//! own log dir on its own simulated disk ([`SimStorage`], which loses unsynced writes when
//! a broker is killed), a controller that holds the ISR, elects leaders from it and
//! decides ISR changes, and a network between the replicas (and from the controller to
//! the leader) that can drop, delay, duplicate and reorder messages and cut brokers off.
//! Tests, the simulation and `partlog demo` drive replication with it; an embedder can
//! use it to try its own failure stories.
//!
//! Everything is deterministic for a seed: time is a [`ManualClock`] the caller advances,
//! and each network fault is drawn from a seeded generator.

mod network;

use std::sync::Arc;

pub use network::NetworkFaults;
use network::{IsrAnswer, Message};

use crate::checkpoint::TopicPartition;
use crate::clock::ManualClock;
use crate::config::LogConfig;
use crate::error::{Error, Result};
use crate::io::sim::{SimRng, SimStorage};
use crate::log::{Log, RecoveryReport};
use crate::manager::{LogDir, LogDirOptions};
use crate::replica::{
    Acks, AppendHandle, FetchResponse, IsrProposal, Partition, ReplicaConfig, ReplicaManager,
    TruncationMode,
};

/// Bytes a follower asks for per fetch.
const FETCH_MAX_BYTES: u64 = 1 << 20;

/// How to build a [`Cluster`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub brokers: usize,
    pub min_insync_replicas: usize,
    pub truncation: TruncationMode,
    pub log_config: LogConfig,
    pub network: NetworkFaults,
    /// Seeds the disks and the network.
    pub seed: u64,
    /// Kafka's `unclean.leader.election.enable`: off by default.
    pub unclean_leader_election: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            brokers: 3,
            min_insync_replicas: 2,
            truncation: TruncationMode::LeaderEpoch,
            log_config: LogConfig::default(),
            network: NetworkFaults::default(),
            seed: 1,
            unclean_leader_election: false,
        }
    }
}

/// One broker: its disk, and while it runs, its replica manager and replica.
#[derive(Debug)]
pub struct Broker {
    pub disk: Arc<SimStorage>,
    running: Option<(ReplicaManager, Arc<Partition>)>,
}

/// A leader the controller chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Election {
    pub leader: usize,
    pub epoch: i32,
    pub isr: Vec<i32>,
    /// Chosen from outside the ISR (only when unclean election is allowed or forced):
    /// records the ISR had may be lost.
    pub unclean: bool,
}

/// What one [`Cluster::replicate`] round did, for timelines and checks.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoundReport {
    /// Fetch answers a follower applied.
    pub applied: usize,
    /// Truncations of followers (diverging epochs and out-of-range answers).
    pub truncations: usize,
    /// Messages the network lost.
    pub lost: usize,
    /// ISR changes the controller confirmed.
    pub isr_changes: Vec<Vec<i32>>,
}

/// The partition every broker hosts.
pub const TOPIC: &str = "demo";

/// Brokers, a controller and a network; see the module docs.
#[derive(Debug)]
pub struct Cluster {
    clock: Arc<ManualClock>,
    options: ClusterOptions,
    tp: TopicPartition,
    brokers: Vec<Broker>,
    leader: Option<usize>,
    epoch: i32,
    /// The ISR the controller holds, within the leadership of `epoch`.
    isr: ControllerIsr,
    network: network::Network,
}

/// The ISR as a controller holds it within one leadership, with its version, and the
/// controller's side of [`IsrProposal`]: it takes a leader's proposal only while its ISR
/// is still the one the proposal was made from, counts every change it makes, and tells
/// the leader what it holds with [`Partition::confirm_isr`], whether it took the
/// proposal or not. The cluster harness, the simulations and an embedder's controller
/// keep the rule in one place this way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerIsr {
    pub isr: Vec<i32>,
    pub version: i32,
}

impl ControllerIsr {
    /// The ISR a leadership starts with ([`Partition::become_leader`]): version 0.
    pub fn new(isr: Vec<i32>) -> ControllerIsr {
        ControllerIsr { isr, version: 0 }
    }

    /// Takes `proposal` if it was made in the leadership of `leader_epoch` from this ISR,
    /// as the next version; whether it did (an error as [`ControllerIsr::change`]'s).
    pub fn take(&mut self, leader_epoch: i32, proposal: &IsrProposal) -> Result<bool> {
        let current = (proposal.leader_epoch, proposal.isr_version) == (leader_epoch, self.version);
        if current {
            self.change(proposal.isr.clone())?;
        }
        Ok(current)
    }

    /// Refuses `proposal` although it was made from this ISR, as Kafka's controller
    /// refuses an expansion to a fenced broker or one shutting down (`INELIGIBLE_REPLICA`,
    /// KIP-841): the ISR stays as it is under the next version, so that the leader, told
    /// with [`ControllerIsr::confirm`], drops the proposal (it stands until an answer with
    /// a newer version comes), and a copy of it the network delivers later is stale. A
    /// refusal at the same version would let a delayed copy of it drop a later proposal
    /// the controller took, and the HW would stop waiting for a member the controller
    /// holds. Whether it refused: false when the proposal was stale already, and the
    /// answer is the ISR held (an error as [`ControllerIsr::change`]'s).
    pub fn refuse(&mut self, leader_epoch: i32, proposal: &IsrProposal) -> Result<bool> {
        let current = (proposal.leader_epoch, proposal.isr_version) == (leader_epoch, self.version);
        if current {
            self.change(self.isr.clone())?;
        }
        Ok(current)
    }

    /// The controller changes the ISR on its own (a broker's session ended).
    ///
    /// The version is an `i32`, as Kafka's partition epoch is. A version that wrapped
    /// would be refused by the leader as stale while the ISR it stands for is not, so
    /// the count is checked: the change after 2^31 within one leadership (centuries of
    /// changes a second) is [`Error::InvalidRequest`], and the ISR stays as it was.
    pub fn change(&mut self, isr: Vec<i32>) -> Result<()> {
        self.version = self.version.checked_add(1).ok_or_else(|| {
            Error::InvalidRequest(format!(
                "ISR version {} has no next one in this leadership",
                self.version
            ))
        })?;
        self.isr = isr;
        Ok(())
    }

    /// Tells `leader`, of the leadership of `leader_epoch`, the ISR held here, as a
    /// network that may deliver it late does: false when a later answer or a leader
    /// change overtook it (refused, changing nothing: [`Error::InvalidUpdateVersion`],
    /// [`Error::FencedLeaderEpoch`], [`Error::NotLeaderOrFollower`]); any other refusal of
    /// [`Partition::confirm_isr`] is an error.
    pub fn confirm(&self, leader: &Partition, leader_epoch: i32) -> Result<bool> {
        match leader.confirm_isr(leader_epoch, self.version, self.isr.clone()) {
            Ok(()) => Ok(true),
            Err(
                Error::InvalidUpdateVersion { .. }
                | Error::FencedLeaderEpoch { .. }
                | Error::NotLeaderOrFollower,
            ) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl Cluster {
    /// Starts every broker; broker 0 leads epoch 1 with all of them in sync.
    pub fn new(options: ClusterOptions) -> Result<Cluster> {
        if options.brokers == 0 {
            return Err(Error::InvalidConfig("a cluster needs a broker".into()));
        }
        let clock = Arc::new(ManualClock::new(1_000_000));
        let mut rng = SimRng::new(options.seed);
        let brokers = (0..options.brokers)
            .map(|_| Broker {
                disk: SimStorage::new(rng.next_u64()),
                running: None,
            })
            .collect();
        let mut cluster = Cluster {
            clock,
            tp: TopicPartition::new(TOPIC, 0),
            brokers,
            leader: None,
            epoch: 0,
            isr: ControllerIsr::new(Vec::new()),
            network: network::Network::new(options.network, rng.next_u64()),
            options,
        };
        for id in 0..cluster.brokers.len() {
            cluster.start(id)?;
        }
        cluster.isr = ControllerIsr::new(cluster.replica_ids());
        cluster.elect_leader(0, false)?;
        Ok(cluster)
    }

    fn replica_ids(&self) -> Vec<i32> {
        (0..self.brokers.len() as i32).collect()
    }

    pub fn clock(&self) -> &Arc<ManualClock> {
        &self.clock
    }

    pub fn topic_partition(&self) -> &TopicPartition {
        &self.tp
    }

    pub fn brokers(&self) -> usize {
        self.brokers.len()
    }

    pub fn broker(&self, id: usize) -> &Broker {
        &self.brokers[id]
    }

    /// The current leader, `None` while the partition has none.
    pub fn leader(&self) -> Option<usize> {
        self.leader
    }

    pub fn epoch(&self) -> i32 {
        self.epoch
    }

    /// The ISR as the controller last confirmed it.
    pub fn isr(&self) -> &[i32] {
        &self.isr.isr
    }

    pub fn is_up(&self, id: usize) -> bool {
        self.brokers[id].running.is_some()
    }

    /// Broker `id`'s log dir (for its cleaner), `None` while it is down.
    pub fn log_dir(&self, id: usize) -> Option<&crate::manager::LogDir> {
        self.brokers[id].running.as_ref().map(|(m, _)| m.log_dir())
    }

    /// Broker `id`'s replica, `None` while it is down.
    pub fn replica(&self, id: usize) -> Option<&Arc<Partition>> {
        self.brokers[id].running.as_ref().map(|(_, p)| p)
    }

    fn up_replica(&self, id: usize) -> Result<&Arc<Partition>> {
        self.replica(id).ok_or(Error::NotLeaderOrFollower)
    }

    pub fn network(&mut self) -> &mut NetworkFaults {
        self.network.faults_mut()
    }

    /// Cuts broker `id` off from the other brokers (not from the controller), or
    /// reconnects it.
    pub fn set_isolated(&mut self, id: usize, isolated: bool) {
        self.network.set_isolated(id, isolated);
    }

    /// Opens broker `id`'s log dir (recovering it) and its replica.
    fn start(&mut self, id: usize) -> Result<RecoveryReport> {
        let broker = &mut self.brokers[id];
        let options = LogDirOptions {
            config: self.options.log_config.clone(),
            clock: self.clock.clone(),
        };
        let dir = LogDir::open(broker.disk.storage(), "/data", options)?;
        let manager = ReplicaManager::new(dir, self.clock.clone());
        let config = ReplicaConfig {
            min_insync_replicas: self.options.min_insync_replicas,
            truncation: self.options.truncation,
            ..ReplicaConfig::new(id as i32)
        };
        let (partition, report) =
            manager.open_partition(&self.tp, self.options.log_config.clone(), config)?;
        broker.running = Some((manager, partition));
        Ok(report)
    }

    /// Appends to the leader.
    pub fn produce(&self, batches: &mut [u8], acks: Acks, timeout_ms: i64) -> Result<AppendHandle> {
        let leader = self.leader.ok_or(Error::LeaderNotAvailable)?;
        self.up_replica(leader)?.append(batches, acks, timeout_ms)
    }

    /// One fetch by every running follower, through the network, then the controller
    /// confirms the leader's ISR proposal, if any. Answers the network held back may
    /// arrive now, after newer ones.
    pub fn replicate(&mut self) -> Result<RoundReport> {
        let mut report = RoundReport::default();
        let Some(leader) = self.leader else {
            return Ok(report);
        };
        let followers: Vec<usize> = (0..self.brokers.len())
            .filter(|&f| f != leader && self.is_up(f))
            .collect();
        for f in followers {
            self.fetch_once(f, leader, &mut report)?;
        }
        let (due, lost) = self.network.due();
        report.lost += lost;
        for (to, message) in due {
            self.receive(to, &message, &mut report)?;
        }
        self.apply_isr_proposal(&mut report)?;
        Ok(report)
    }

    fn fetch_once(&mut self, f: usize, leader: usize, report: &mut RoundReport) -> Result<()> {
        if !self.network.carries(f, leader) {
            report.lost += 1;
            return Ok(());
        }
        let request = self.up_replica(f)?.fetch_request(FETCH_MAX_BYTES);
        match self.up_replica(leader)?.fetch(&request) {
            Ok(response) => {
                if !self.network.carries(leader, f) {
                    report.lost += 1;
                    return Ok(());
                }
                self.send(Some(leader), f, Message::Fetch(response), report)
            }
            Err(Error::OffsetOutOfRange {
                log_start_offset,
                log_end_offset,
                ..
            }) => {
                let follower = self.up_replica(f)?;
                let before = follower.log().log_end_offset();
                follower.handle_out_of_range(&request, log_start_offset, log_end_offset)?;
                if follower.log().log_end_offset() != before {
                    report.truncations += 1;
                }
                Ok(())
            }
            // A follower that has not heard of the newest epoch yet, or a fetch the
            // leader fenced: it tries again later, as Kafka's fetcher does.
            Err(Error::FencedLeaderEpoch { .. } | Error::UnknownLeaderEpoch { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Hands `response` to follower `f` if it still runs as a follower.
    fn deliver(&self, f: usize, response: &FetchResponse, report: &mut RoundReport) -> Result<()> {
        let Some(follower) = self.replica(f) else {
            return Ok(());
        };
        if follower.is_leader() {
            return Ok(());
        }
        let before = follower.log().log_end_offset();
        if follower.apply_fetch(response)? {
            report.applied += 1;
            if follower.log().log_end_offset() < before {
                report.truncations += 1;
            }
        }
        Ok(())
    }

    fn apply_isr_proposal(&mut self, report: &mut RoundReport) -> Result<()> {
        let Some(leader) = self.leader.and_then(|l| self.replica(l)).cloned() else {
            return Ok(());
        };
        // The controller takes a proposal made from the ISR it holds, and answers with the
        // ISR it holds then either way (one made from an older ISR finds a newer one here,
        // which the leader has not heard of yet).
        if let Some(proposal) = leader.isr_proposal() {
            if self.isr.take(self.epoch, &proposal)? {
                report.isr_changes.push(proposal.isr);
            }
            self.send_isr_answer()?;
        }
        Ok(())
    }

    /// The controller tells the leader the ISR it holds, through the network, which may
    /// lose, duplicate or hold back the answer. A lost one is sent again at the leader's
    /// next proposal (which stands until an answer comes).
    fn send_isr_answer(&mut self) -> Result<()> {
        let Some(leader) = self.leader else {
            return Ok(());
        };
        if !self.network.controller_carries() {
            return Ok(());
        }
        let answer = IsrAnswer {
            epoch: self.epoch,
            isr: self.isr.clone(),
        };
        self.send(
            None,
            leader,
            Message::Isr(answer),
            &mut RoundReport::default(),
        )
    }

    /// Puts `message` from broker `from` (none: the controller) for broker `to` on the
    /// network: it arrives now, twice, or later.
    fn send(
        &mut self,
        from: Option<usize>,
        to: usize,
        message: Message,
        report: &mut RoundReport,
    ) -> Result<()> {
        for message in self.network.deliveries(from, to, message) {
            self.receive(to, &message, report)?;
        }
        Ok(())
    }

    /// Broker `to` receives `message`.
    fn receive(&self, to: usize, message: &Message, report: &mut RoundReport) -> Result<()> {
        match message {
            Message::Fetch(response) => self.deliver(to, response, report),
            Message::Isr(answer) => self.deliver_isr_answer(to, answer),
        }
    }

    /// Hands the controller's `answer` to broker `to`, if it runs. One a later answer or a
    /// leader change overtook is refused and changes nothing.
    fn deliver_isr_answer(&self, to: usize, answer: &IsrAnswer) -> Result<()> {
        match self.replica(to) {
            Some(replica) => answer.isr.confirm(replica, answer.epoch).map(|_| ()),
            None => Ok(()),
        }
    }

    /// Advances time by `ms`, then every running broker ticks (ISR shrink, `acks=all`
    /// timeouts, high-watermark checkpoints) and the controller applies ISR proposals.
    pub fn tick(&mut self, ms: i64) -> Result<RoundReport> {
        self.clock.advance_ms(ms);
        for (manager, _) in self.brokers.iter().filter_map(|b| b.running.as_ref()) {
            manager.tick()?;
        }
        let mut report = RoundReport::default();
        self.apply_isr_proposal(&mut report)?;
        Ok(report)
    }

    /// Kills broker `id` as a power loss would: what it had not synced is lost. The
    /// controller takes it out of the ISR and, if it led, elects a leader from the ISR
    /// (from any running broker when unclean election is on). Returns that election, or
    /// `Ok(None)` when it did not lead or nobody may lead now.
    pub fn kill(&mut self, id: usize) -> Result<Option<Election>> {
        self.stop_dead(id, true)
    }

    /// Kills broker `id`'s process only (SIGKILL, an OOM kill): the page cache survives, so
    /// everything it wrote is kept, durable only as far as it was synced (a power loss
    /// later loses the rest). Otherwise as [`Cluster::kill`].
    pub fn kill_process(&mut self, id: usize) -> Result<Option<Election>> {
        self.stop_dead(id, false)
    }

    fn stop_dead(&mut self, id: usize, power_loss: bool) -> Result<Option<Election>> {
        let Some((manager, partition)) = self.brokers[id].running.take() else {
            return Ok(None);
        };
        drop(partition);
        drop(manager); // no clean shutdown: nothing is flushed or checkpointed
        if power_loss {
            self.brokers[id].disk.crash();
        } else {
            self.brokers[id].disk.crash_keep_written();
        }
        self.network.forget(id);
        self.remove_from_isr(id)?;
        if self.leader != Some(id) {
            self.send_isr_answer()?;
            return Ok(None);
        }
        self.leader = None;
        match self.elect(self.options.unclean_leader_election) {
            Ok(election) => Ok(Some(election)),
            Err(Error::LeaderNotAvailable) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The controller takes a broker that went away out of the ISR, except the last
    /// member: as in Kafka, the ISR never empties, so that the last replica standing can
    /// lead again cleanly when it returns. The ISR gets a new version either way: a
    /// proposal the leader made before, maybe adding this broker as caught up (what it
    /// held then a power loss may have taken), is stale from now, as Kafka's controller
    /// refuses a member named with the broker epoch of a registration that ended
    /// (KIP-903). The library's proposals carry no such epoch; the harness stands in.
    fn remove_from_isr(&mut self, id: usize) -> Result<()> {
        let isr = &self.isr.isr;
        let rest = match isr.len() > 1 && isr.contains(&(id as i32)) {
            true => isr.iter().copied().filter(|&b| b != id as i32).collect(),
            false => isr.clone(),
        };
        self.isr.change(rest)
    }

    /// Shuts broker `id` down cleanly (flush, checkpoints, clean-shutdown marker), moving
    /// leadership first as Kafka's controlled shutdown does.
    pub fn shutdown(&mut self, id: usize) -> Result<Option<Election>> {
        let mut election = None;
        if self.leader == Some(id) {
            let next = (self.isr.isr.iter())
                .map(|&b| b as usize)
                .find(|&b| b != id && self.may_lead_cleanly(b));
            match next {
                // The stopping broker leaves the ISR in the election's own change, as in
                // Kafka's controlled shutdown: told apart, through a network that may lose
                // the word, the new leader would count it for acks=all and hold its HW at
                // it until its own shrink.
                Some(next) => {
                    self.remove_from_isr(id)?;
                    election = Some(self.elect_leader(next, false)?);
                }
                // The last in-sync replica stops: the partition has no leader until it
                // comes back, when it leads again (see `restart`).
                None => self.leader = None,
            }
        }
        if let Some((manager, partition)) = self.brokers[id].running.take() {
            drop(partition);
            manager.close()?;
        }
        self.network.forget(id);
        self.remove_from_isr(id)?;
        self.send_isr_answer()?;
        Ok(election)
    }

    /// Starts broker `id` again: its log dir recovers, and its replica follows the current
    /// leader (or, when the partition has none and it may lead, becomes the leader).
    pub fn restart(&mut self, id: usize) -> Result<RecoveryReport> {
        if self.is_up(id) {
            return Ok(RecoveryReport::default());
        }
        let report = self.start(id)?;
        if self.leader.is_some() {
            let leader = self.leader.map_or(-1, |l| l as i32);
            self.up_replica(id)?.become_follower(self.epoch, leader)?;
        } else if self.isr.isr.contains(&(id as i32)) || self.options.unclean_leader_election {
            self.elect_leader(id, !self.isr.isr.contains(&(id as i32)))?;
        }
        Ok(report)
    }

    /// Elects a leader: the first running ISR member other than the current leader that
    /// holds what it committed (see [`Partition::lacks_committed_records`]), or, when
    /// `unclean` and there is none, the running broker with the longest log. Without one:
    /// [`Error::LeaderNotAvailable`].
    pub fn elect(&mut self, unclean: bool) -> Result<Election> {
        let current = self.leader;
        let clean = self
            .isr
            .isr
            .iter()
            .map(|&b| b as usize)
            .find(|&b| Some(b) != current && self.may_lead_cleanly(b));
        if let Some(b) = clean {
            return self.elect_leader(b, false);
        }
        if !unclean {
            return Err(Error::LeaderNotAvailable);
        }
        let longest = (0..self.brokers.len())
            .filter(|&b| Some(b) != current)
            .filter_map(|b| self.replica(b).map(|r| (r.log().log_end_offset(), b)))
            .max();
        match longest {
            Some((_, b)) => self.elect_leader(b, true),
            None => Err(Error::LeaderNotAvailable),
        }
    }

    /// Whether broker `id` runs and has not cut committed records in a repair since: an
    /// ISR member the controller may elect. One that did is still in the ISR until its
    /// leader sees the cut at its next fetch and the ISR change comes back.
    fn may_lead_cleanly(&self, id: usize) -> bool {
        self.replica(id)
            .is_some_and(|r| r.lacks_committed_records().is_none())
    }

    /// Makes `id` the leader of the next epoch and every other running broker a follower.
    fn elect_leader(&mut self, id: usize, unclean: bool) -> Result<Election> {
        // The controller commits the election (leader, epoch, ISR) before it tells any
        // broker, as Kafka's does: one that fails halfway never hands the same epoch to a
        // second leader, and the brokers told so far follow the leader it recorded.
        let epoch = self.epoch + 1;
        let isr = if unclean {
            vec![id as i32]
        } else {
            self.isr.isr.clone()
        };
        self.epoch = epoch;
        self.isr = ControllerIsr::new(isr.clone());
        self.leader = Some(id);
        self.up_replica(id)?
            .become_leader(epoch, self.replica_ids(), isr.clone())?;
        for b in (0..self.brokers.len()).filter(|&b| b != id) {
            if let Some(r) = self.replica(b) {
                r.become_follower(epoch, id as i32)?;
            }
        }
        Ok(Election {
            leader: id,
            epoch,
            isr,
            unclean,
        })
    }

    /// Every batch broker `id` holds below `up_to`, whole.
    pub fn batches_of(&self, id: usize, up_to: i64) -> Result<Vec<BatchBytes>> {
        batches(self.up_replica(id)?.log(), up_to)
    }

    /// Whether every running replica holds the same batches below the leader's high
    /// watermark, byte for byte.
    pub fn replicas_identical_below_hw(&self) -> Result<bool> {
        let Some(leader) = self.leader else {
            return Ok(false);
        };
        let hw = self.up_replica(leader)?.high_watermark();
        let reference = self.batches_of(leader, hw)?;
        for b in (0..self.brokers.len()).filter(|&b| b != leader && self.is_up(b)) {
            if self.batches_of(b, hw)? != reference {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// A batch as two replicas compare it: its base offset, and all its bytes (the leader
/// epoch too, which the CRC does not cover).
pub type BatchBytes = (i64, Vec<u8>);

/// Every batch of `log` below `up_to`, whole: what two replicas compare to tell whether
/// they hold the same batches.
pub fn batches(log: &Log, up_to: i64) -> Result<Vec<BatchBytes>> {
    batches_between(log, log.log_start_offset(), up_to)
}

/// [`batches`] from the batch that holds `from` on: replicas may have moved their log
/// starts differently (a follower keeps the highest it heard of).
pub fn batches_between(log: &Log, from: i64, up_to: i64) -> Result<Vec<BatchBytes>> {
    let mut out = Vec::new();
    let mut next = from;
    while next < up_to {
        let Some(slice) = log.read(next, FETCH_MAX_BYTES, Some(up_to))? else {
            break;
        };
        let bytes = slice.to_vec()?;
        for batch in crate::record::batches(&bytes) {
            let batch = batch?;
            let header = *batch.header();
            out.push((header.base_offset, batch.as_bytes().to_vec()));
            next = header.next_offset();
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A controlled shutdown of the leader takes it out of the ISR in the election itself,
    /// so that the new leader never counts the stopped broker, even when the network loses
    /// every answer of the controller. (The ISR change used to follow the election, as a
    /// message the network could lose.)
    #[test]
    fn a_leader_shut_down_leaves_the_isr_in_the_election() {
        let mut c = Cluster::new(ClusterOptions {
            network: NetworkFaults {
                drop_percent: 100,
                ..NetworkFaults::default()
            },
            ..ClusterOptions::default()
        })
        .unwrap();
        let old = c.leader().expect("a leader") as i32;
        let election = c.shutdown(old as usize).unwrap().expect("a new leader");
        assert!(!election.isr.contains(&old), "{election:?}");
        let new_leader = c.replica(election.leader).unwrap();
        assert!(!new_leader.isr().unwrap().contains(&old));
        assert!(!c.isr().contains(&old));
    }

    /// A fetch answer the network held back is lost when it comes due across a broker
    /// cut off meanwhile, as a partition loses what is in flight over it: the follower
    /// learns nothing while cut off. (It used to arrive, and the follower caught up.)
    #[test]
    fn a_held_back_answer_does_not_cross_a_cut() {
        let mut held = 0;
        for seed in 1..13 {
            let mut c = Cluster::new(ClusterOptions {
                network: NetworkFaults {
                    delay_percent: 100,
                    ..NetworkFaults::default()
                },
                seed,
                ..ClusterOptions::default()
            })
            .unwrap();
            let leader = c.leader().expect("a leader");
            let follower = (leader + 1) % 3;
            let mut batch = crate::record::BatchBuilder::new();
            batch.append(1, None, Some(b"v"), &[]);
            let mut batch = batch.build().unwrap();
            c.produce(&mut batch, Acks::Leader, 1_000).unwrap();
            c.replicate().unwrap();
            let log_end = |c: &Cluster| c.replica(follower).unwrap().log().log_end_offset();
            if log_end(&c) != 0 {
                continue; // the answer came due in the same round: nothing to show here
            }
            held += 1;
            c.set_isolated(follower, true);
            let mut lost = 0;
            for _ in 0..20 {
                lost += c.replicate().unwrap().lost;
            }
            // Twenty fetches that could not leave, and the answer that came due.
            assert_eq!(lost, 21, "seed {seed}: the lost answer is counted");
            assert_eq!(
                log_end(&c),
                0,
                "seed {seed}: a held-back answer crossed the cut"
            );
            c.set_isolated(follower, false);
            c.network().delay_percent = 0;
            for _ in 0..5 {
                c.replicate().unwrap();
            }
            assert_eq!(log_end(&c), 1, "seed {seed}: caught up once connected");
        }
        assert!(held > 2, "{held} seeds held the answer back past its round");
    }

    /// The ISR version after `i32::MAX` changes has no next one: the change is a typed
    /// error (it used to panic), and the ISR the controller holds stays as it was.
    #[test]
    fn an_isr_change_past_the_last_version_is_an_error_and_changes_nothing() {
        let mut controller = ControllerIsr {
            isr: vec![0, 1, 2],
            version: i32::MAX - 1,
        };
        controller.change(vec![0, 1]).unwrap();
        assert_eq!(controller.version, i32::MAX);
        let err = controller.change(vec![0]).unwrap_err();
        assert!(matches!(err, Error::InvalidRequest(_)), "{err}");
        assert_eq!(
            controller,
            ControllerIsr {
                isr: vec![0, 1],
                version: i32::MAX
            }
        );
        let proposal = IsrProposal {
            leader_epoch: 3,
            isr_version: i32::MAX,
            isr: vec![0],
        };
        assert!(controller.take(3, &proposal).is_err());
        assert_eq!(controller.isr, vec![0, 1]);
    }
}
