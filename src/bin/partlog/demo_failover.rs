//! `partlog demo`: the failover story users expect of Kafka, on three in-process brokers
//! ([`partlog::cluster`], each broker on its own simulated disk).
//!
//! One partition, replication factor 3, `min.insync.replicas` 2. An `acks=all` producer
//! runs; the leader is killed mid-stream with appends in flight, losing what it had not
//! synced; the controller elects an in-sync follower and producing goes on; the dead broker
//! restarts, recovers, truncates what it alone had, catches up and rejoins the ISR. At the
//! end every acknowledged record must be on the leader exactly once and in order, and the
//! replicas byte-identical below the high watermark; otherwise the exit code is non-zero.
//!
//! A consumer group rides along (`demo_group.rs`): it consumes and commits, the failure
//! interrupts it, and it resumes from its committed offset on the new coordinator; it must
//! skip nothing.
//!
//! The producer does not resend a batch whose outcome it does not know (a failed or timed
//! out `acks=all`): resending is safe only with Kafka's idempotent producer, whose producer
//! ids and sequence numbers partlog does not keep yet. Such records count as
//! unacknowledged; they may be present (at most once) or gone.

use std::collections::VecDeque;
use std::ops::Range;
use std::process::ExitCode;
use std::time::Instant;

use partlog::cluster::{Cluster, ClusterOptions, RoundReport};
use partlog::record::{batches, BatchBuilder};
use partlog::replica::{Acks, AppendHandle};
use partlog::{Clock, Error, LogConfig};

use crate::demo_group::{Group, GROUP};
use crate::json::Json;
use crate::{emit, CliResult, EXIT_FAILED};

/// Records per produced batch.
const BATCH_RECORDS: u64 = 10;
/// Value bytes per record.
const VALUE_BYTES: usize = 100;
/// `acks=all` appends the producer keeps in flight.
const IN_FLIGHT: usize = 8;
/// The producer's request timeout (`request.timeout.ms`).
const REQUEST_TIMEOUT_MS: i64 = 30_000;
/// Cluster time per replication round, and how often the brokers flush (Kafka leaves
/// flushing to the OS; the demo flushes on a fixed interval so that a killed broker keeps
/// part of its log and has something to recover and truncate).
const ROUND_MS: i64 = 2;
const FLUSH_EVERY_MS: i64 = 200;

/// What the producer knows of each record, by sequence number.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sent {
    InFlight,
    Acked,
    /// Failed or timed out: the outcome is unknown.
    Unknown,
}

struct Producer {
    sent: Vec<Sent>,
    in_flight: VecDeque<(AppendHandle, Range<u64>)>,
}

impl Producer {
    fn batch(&self, now_ms: i64) -> (Vec<u8>, Range<u64>) {
        let first = self.sent.len() as u64;
        let seqs = first..first + BATCH_RECORDS;
        let mut builder = BatchBuilder::new();
        for seq in seqs.clone() {
            let value = record_value(seq);
            builder.append(now_ms, Some(&seq.to_be_bytes()), Some(&value), &[]);
        }
        // `BatchBuilder::build` fails only for an empty batch.
        let bytes = builder.build().unwrap_or_default();
        (bytes, seqs)
    }

    /// Sends a batch if the window has room; `Some(error)` when the cluster refused it.
    fn send(&mut self, cluster: &Cluster) -> CliResult<Option<Error>> {
        if self.in_flight.len() >= IN_FLIGHT {
            return Ok(None);
        }
        let (mut bytes, seqs) = self.batch(cluster.clock().now_ms());
        match cluster.produce(&mut bytes, Acks::All, REQUEST_TIMEOUT_MS) {
            Ok(handle) => {
                self.sent.extend(seqs.clone().map(|_| Sent::InFlight));
                self.in_flight.push_back((handle, seqs));
                Ok(None)
            }
            Err(
                e @ (Error::NotEnoughReplicas { .. }
                | Error::LeaderNotAvailable
                | Error::NotLeaderOrFollower),
            ) => {
                self.sent.extend(seqs.map(|_| Sent::Unknown));
                Ok(Some(e))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Collects the outcomes that came; returns how many appends failed.
    fn collect(&mut self) -> usize {
        let mut failed = 0;
        self.in_flight.retain(|(handle, seqs)| {
            let Some(outcome) = handle.poll() else {
                return true;
            };
            let state = if outcome.is_ok() {
                Sent::Acked
            } else {
                failed += 1;
                Sent::Unknown
            };
            for seq in seqs.clone() {
                self.sent[seq as usize] = state;
            }
            false
        });
        failed
    }

    fn count(&self, state: Sent) -> usize {
        self.sent.iter().filter(|&&s| s == state).count()
    }
}

fn record_value(seq: u64) -> Vec<u8> {
    let mut value = vec![0u8; VALUE_BYTES];
    for (i, b) in value.iter_mut().enumerate() {
        *b = (seq.wrapping_mul(31).wrapping_add(i as u64) % 251) as u8;
    }
    value
}

/// Drives the cluster and prints its timeline.
struct Story {
    cluster: Cluster,
    producer: Producer,
    group: Group,
    /// The consumer's resumption was told.
    resumed_told: bool,
    json: bool,
    started: i64,
    last_flush: i64,
    leader_changes: u32,
}

impl Story {
    /// One event of the timeline: what happened, then leader, ISR, HW and every LEO.
    fn event(&self, what: &str) -> CliResult<()> {
        let c = &self.cluster;
        let t = c.clock().now_ms() - self.started;
        let leader = c.leader();
        let hw = leader
            .and_then(|l| c.replica(l))
            .map(|r| r.high_watermark());
        let leos: Vec<Option<i64>> = (0..c.brokers())
            .map(|b| c.replica(b).map(|r| r.log().log_end_offset()))
            .collect();
        if self.json {
            let leo_json = leos
                .iter()
                .map(|l| l.map_or("null".to_string(), |o| o.to_string()))
                .collect::<Vec<_>>()
                .join(",");
            return emit(
                &Json::new()
                    .str("type", "event")
                    .int("t_ms", t)
                    .str("event", what)
                    .int("leader", leader.map_or(-1, |l| l as i64))
                    .int("epoch", c.epoch())
                    .raw("isr", &int_array(c.isr()))
                    .int("high_watermark", hw.unwrap_or(-1))
                    .raw("leo", &format!("[{leo_json}]"))
                    .finish(),
            );
        }
        let leos: Vec<String> = leos
            .iter()
            .enumerate()
            .map(|(b, l)| l.map_or(format!("b{b}=down"), |o| format!("b{b}={o}")))
            .collect();
        emit(&format!(
            "t={t:>6} ms  {what}\n            leader {} epoch {}  isr {:?}  hw {}  leo {}",
            leader.map_or("none".into(), |l| format!("b{l}")),
            c.epoch(),
            c.isr(),
            hw.map_or("-".into(), |h| h.to_string()),
            leos.join(" "),
        ))
    }

    /// One round of the world: the producer sends, followers fetch, time passes, the
    /// brokers flush on their interval, outcomes arrive.
    fn round(&mut self) -> CliResult<RoundReport> {
        if let Some(e) = self.producer.send(&self.cluster)? {
            self.event(&format!("produce refused: {e}"))?;
        }
        let mut report = self.cluster.replicate()?;
        report
            .isr_changes
            .extend(self.cluster.tick(ROUND_MS)?.isr_changes);
        if self.cluster.clock().now_ms() - self.last_flush >= FLUSH_EVERY_MS {
            self.flush_all()?;
        }
        self.producer.collect();
        for isr in &report.isr_changes {
            self.event(&format!("ISR changes to {isr:?}"))?;
        }
        self.group_round()?;
        Ok(report)
    }

    /// The consumer group's round, telling when the consumer resumed after the failure.
    fn group_round(&mut self) -> CliResult<()> {
        self.group.round(&self.cluster, ROUND_MS)?;
        if let (false, Some(from)) = (self.resumed_told, self.group.resumed_from) {
            self.resumed_told = true;
            self.event(&format!(
                "consumer resumes from committed offset {from} on coordinator b{} (it had reached {})",
                self.group.coordinator().map_or(-1, |c| c as i64),
                self.group.position_at_failure.unwrap_or(0),
            ))?;
        }
        Ok(())
    }

    fn flush_all(&mut self) -> CliResult<()> {
        for b in 0..self.cluster.brokers() {
            if let Some(r) = self.cluster.replica(b) {
                r.log().flush()?;
            }
        }
        self.last_flush = self.cluster.clock().now_ms();
        Ok(())
    }

    /// Produces until `records` more were sent.
    fn produce(&mut self, records: u64) -> CliResult<()> {
        let until = self.producer.sent.len() as u64 + records;
        while (self.producer.sent.len() as u64) < until {
            self.round()?;
        }
        Ok(())
    }

    /// Runs rounds without producing until no append is in flight, every running broker
    /// is in the ISR and the group caught up; `None` when that happened within
    /// `max_rounds`, else what was still wanting.
    fn settle(&mut self, max_rounds: u32) -> CliResult<Option<&'static str>> {
        for _ in 0..max_rounds {
            if self.wanting().is_none() {
                return Ok(None);
            }
            let report = self.cluster.replicate()?;
            self.cluster.tick(ROUND_MS)?;
            self.producer.collect();
            for isr in &report.isr_changes {
                self.event(&format!("ISR changes to {isr:?}"))?;
            }
            self.group_round()?;
        }
        // Looked at again after the last round, which may have settled it.
        Ok(self.wanting())
    }

    /// What keeps the story from being settled, if anything (see `settle`).
    fn wanting(&self) -> Option<&'static str> {
        let all_in_sync = (0..self.cluster.brokers())
            .filter(|&b| self.cluster.is_up(b))
            .all(|b| self.cluster.isr().contains(&(b as i32)));
        if !self.producer.in_flight.is_empty() {
            Some("appends still in flight")
        } else if !all_in_sync {
            Some("a running broker out of the ISR")
        } else if !self.group.caught_up(self.high_watermark()) {
            Some("the consumer group behind the HW")
        } else {
            None
        }
    }

    fn high_watermark(&self) -> i64 {
        let c = &self.cluster;
        c.leader()
            .and_then(|l| c.replica(l))
            .map_or(-1, |r| r.high_watermark())
    }
}

fn int_array(items: &[i32]) -> String {
    let items: Vec<String> = items.iter().map(|i| i.to_string()).collect();
    format!("[{}]", items.join(","))
}

/// What the final leader holds, checked against what the producer knows.
struct Verdict {
    acked: usize,
    lost: usize,
    duplicates: usize,
    out_of_order: usize,
    unacked_present: usize,
}

fn verify(cluster: &Cluster, producer: &Producer) -> CliResult<Verdict> {
    let leader = cluster.leader().ok_or(Error::LeaderNotAvailable)?;
    let replica = cluster.replica(leader).ok_or(Error::LeaderNotAvailable)?;
    let hw = replica.high_watermark();
    let mut seen = vec![0u32; producer.sent.len()];
    let mut last_acked = None;
    let mut out_of_order = 0;
    let mut bad_values = 0;
    let mut next = replica.log().log_start_offset();
    while next < hw {
        let Some(slice) = replica.read_committed(next, 1 << 20)? else {
            break;
        };
        let bytes = slice.to_vec()?;
        for batch in batches(&bytes) {
            let batch = batch?;
            next = batch.header().next_offset();
            for record in batch.records()? {
                let record = record?;
                let key: [u8; 8] = record
                    .key
                    .and_then(|k| k.try_into().ok())
                    .unwrap_or([0xFF; 8]);
                let seq = u64::from_be_bytes(key);
                let Some(count) = seen.get_mut(seq as usize) else {
                    bad_values += 1;
                    continue;
                };
                *count += 1;
                if record.value != Some(&record_value(seq)[..]) {
                    bad_values += 1;
                }
                if producer.sent[seq as usize] == Sent::Acked {
                    if last_acked.is_some_and(|last| seq <= last) {
                        out_of_order += 1;
                    }
                    last_acked = Some(seq);
                }
            }
        }
    }
    let acked: Vec<usize> = (0..seen.len())
        .filter(|&s| producer.sent[s] == Sent::Acked)
        .collect();
    Ok(Verdict {
        acked: acked.len(),
        lost: acked.iter().filter(|&&s| seen[s] == 0).count(),
        duplicates: seen.iter().filter(|&&n| n > 1).count() + bad_values,
        out_of_order,
        unacked_present: (0..seen.len())
            .filter(|&s| producer.sent[s] != Sent::Acked && seen[s] > 0)
            .count(),
    })
}

/// Runs the story; `records` is the total the producer sends, in three equal parts.
pub fn run(seed: u64, records: u64, json: bool) -> CliResult<ExitCode> {
    let wall = Instant::now();
    let options = ClusterOptions {
        seed,
        log_config: LogConfig {
            // Small segments, so that the story rolls some, and indexes to match (the
            // simulated disk copies whole index maps when they are synced).
            segment_bytes: 256 * 1024,
            index_bytes_max: 64 * 1024,
            ..LogConfig::default()
        },
        ..ClusterOptions::default()
    };
    let cluster = Cluster::new(options)?;
    let started = cluster.clock().now_ms();
    let mut story = Story {
        cluster,
        producer: Producer {
            sent: Vec::new(),
            in_flight: VecDeque::new(),
        },
        group: Group::new(seed, records)?,
        resumed_told: false,
        json,
        started,
        last_flush: started,
        leader_changes: 0,
    };
    let part = (records / 3).max(BATCH_RECORDS);
    story.event(&format!(
        "3 brokers, replication factor 3, min.insync.replicas 2; an acks=all producer starts (seed {seed})"
    ))?;
    story.produce(part)?;

    // Mid-stream: the leader appends and flushes batches the followers have not fetched,
    // has more in flight, and loses power.
    let old = story.cluster.leader().ok_or(Error::LeaderNotAvailable)?;
    for _ in 0..IN_FLIGHT / 2 {
        story.producer.send(&story.cluster)?;
    }
    let synced = match story.cluster.replica(old) {
        Some(r) => r.log().flush()?,
        None => 0,
    };
    while story.producer.in_flight.len() < IN_FLIGHT {
        story.producer.send(&story.cluster)?;
    }
    let leo_before = story
        .cluster
        .replica(old)
        .map_or(0, |r| r.log().log_end_offset());
    let election = story.cluster.kill(old)?;
    let coordinator_election = story.group.kill(old)?;
    let failed = story.producer.collect();
    story.event(&format!(
        "leader b{old} killed at LEO {leo_before}, synced to {synced}: the rest is lost; \
         {failed} in-flight appends fail"
    ))?;
    match election {
        Some(e) => {
            story.leader_changes += 1;
            story.event(&format!(
                "controller elects b{} from the ISR, epoch {}",
                e.leader, e.epoch
            ))?;
        }
        None => story.event("no in-sync replica can lead")?,
    }
    story.event(&format!(
        "consumer group {GROUP} interrupted: last acknowledged commit {}, consumer at {}; \
         the offsets partition's new leader is b{}",
        story.group.committed_before.unwrap_or(0),
        story.group.position_at_failure.unwrap_or(0),
        coordinator_election.map_or(-1, |e| e.leader as i64),
    ))?;
    story.produce(part)?;

    let report = story.cluster.restart(old)?;
    story.group.restart(old)?;
    let leo_restarted = story
        .cluster
        .replica(old)
        .map_or(0, |r| r.log().log_end_offset());
    story.event(&format!(
        "b{old} restarts: recovery kept offsets up to {leo_restarted} ({} bytes of torn tail cut); it follows epoch {}",
        report.truncated_bytes(),
        story.cluster.epoch()
    ))?;
    let mut truncated = false;
    let until = story.producer.sent.len() as u64 + part;
    while (story.producer.sent.len() as u64) < until {
        let leo = story
            .cluster
            .replica(old)
            .map_or(0, |r| r.log().log_end_offset());
        let round = story.round()?;
        let after = story
            .cluster
            .replica(old)
            .map_or(0, |r| r.log().log_end_offset());
        if round.truncations > 0 && !truncated {
            truncated = true;
            story.event(&format!(
                "b{old} truncates from {leo} to {after}: what it alone had (diverging epoch)"
            ))?;
        }
    }
    // An append still in flight at the end is neither acknowledged nor lost: the story
    // fails unless every one has its outcome.
    let wanting = story.settle(10_000)?;
    let settled = wanting.is_none();
    story.event(&match wanting {
        None => "producer stops; every in-flight append has its outcome".to_string(),
        Some(what) => format!("producer stops; the cluster did not settle: {what}"),
    })?;

    let verdict = verify(&story.cluster, &story.producer)?;
    let identical = story.cluster.replicas_identical_below_hw()?;
    let c = &story.cluster;
    let hw = c
        .leader()
        .and_then(|l| c.replica(l))
        .map_or(-1, |r| r.high_watermark());
    let rejoined = c.isr().contains(&(old as i32));
    let group = story.group.verdict(hw);
    let group_ok = group.skipped == 0
        && group.resumed_from >= group.committed_before
        && story
            .group
            .position_at_failure
            .is_some_and(|p| group.resumed_from <= p);
    // The story must have happened, not only have lost nothing: records acknowledged, and
    // the leader's death answered by an election.
    let ok = settled
        && verdict.acked > 0
        && story.leader_changes > 0
        && verdict.lost == 0
        && verdict.duplicates == 0
        && verdict.out_of_order == 0
        && identical
        && rejoined
        && group_ok;
    let unknown = story.producer.count(Sent::Unknown);
    let elapsed_ms = wall.elapsed().as_millis() as u64;
    if json {
        emit(
            &Json::new()
                .str("type", "summary")
                .int("seed", seed)
                .int("acked_records", verdict.acked as u64)
                .int("lost_records", verdict.lost as u64)
                .int("duplicate_records", verdict.duplicates as u64)
                .int("out_of_order_records", verdict.out_of_order as u64)
                .int("unacknowledged_records", unknown as u64)
                .int("unacknowledged_present", verdict.unacked_present as u64)
                .int("leader_changes", story.leader_changes)
                .raw("final_isr", &int_array(c.isr()))
                .int("final_high_watermark", hw)
                .bool("replicas_identical_below_hw", identical)
                .bool("settled", settled)
                .int("group_committed_offset", group.committed_before)
                .int("group_resumed_from", group.resumed_from)
                .int("reprocessed_records", group.reprocessed)
                .int("skipped_records", group.skipped)
                .int("elapsed_ms", elapsed_ms)
                .bool("ok", ok)
                .finish(),
        )?;
    } else {
        emit(&format!(
            "acknowledged {} records: {} lost, {} duplicated, {} out of order; {} unacknowledged ({} of them present); \
             final ISR {:?}, HW {hw}, replicas identical below the HW: {identical}; {elapsed_ms} ms",
            verdict.acked,
            verdict.lost,
            verdict.duplicates,
            verdict.out_of_order,
            unknown,
            verdict.unacked_present,
            c.isr(),
        ))?;
        emit(&format!(
            "consumer group {GROUP}: committed offset {} before the failure, resumed from {}, \
             re-processed {} records, skipped {}",
            group.committed_before, group.resumed_from, group.reprocessed, group.skipped
        ))?;
        emit(if ok {
            "demo: ok, nothing acknowledged was lost, the restarted broker is back in sync, and the group skipped nothing"
        } else {
            "demo: FAILED"
        })?;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}
