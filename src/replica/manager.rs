//! The replicas of one log dir, and their `replication-offset-checkpoint`: Kafka's
//! `ReplicaManager`, storage side. It opens each replica with the high watermark the
//! checkpoint holds, writes the checkpoint every `checkpoint_interval_ms` as
//! [`ReplicaManager::tick`] drives it and at [`ReplicaManager::close`], and ticks every
//! replica. A log start that moved (DeleteRecords on the leader, the leader's log start
//! taken by a follower's fetch, retention) is written to the dir's
//! `log-start-offset-checkpoint` at the next tick, and before
//! [`ReplicaManager::delete_records`] returns.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Partition, ReplicaConfig};
use crate::checkpoint::TopicPartition;
use crate::clock::Clock;
use crate::config::LogConfig;
use crate::error::{Error, Result};
use crate::log::RecoveryReport;
use crate::manager::LogDir;

/// Kafka's `replica.high.watermark.checkpoint.interval.ms` default.
pub const DEFAULT_HW_CHECKPOINT_INTERVAL_MS: i64 = 5_000;

/// The replicas hosted in one log dir.
#[derive(Debug)]
pub struct ReplicaManager {
    dir: LogDir,
    clock: Arc<dyn Clock>,
    checkpoint_interval_ms: i64,
    last_checkpoint_ms: AtomicI64,
    partitions: Mutex<BTreeMap<TopicPartition, Arc<Partition>>>,
}

impl ReplicaManager {
    /// Manages the replicas of `dir`, checkpointing high watermarks every
    /// [`DEFAULT_HW_CHECKPOINT_INTERVAL_MS`].
    pub fn new(dir: LogDir, clock: Arc<dyn Clock>) -> ReplicaManager {
        let now = clock.now_ms();
        ReplicaManager {
            dir,
            clock,
            checkpoint_interval_ms: DEFAULT_HW_CHECKPOINT_INTERVAL_MS,
            last_checkpoint_ms: AtomicI64::new(now),
            partitions: Mutex::new(BTreeMap::new()),
        }
    }

    /// The same, with another checkpoint interval.
    pub fn with_checkpoint_interval(mut self, interval_ms: i64) -> ReplicaManager {
        self.checkpoint_interval_ms = interval_ms;
        self
    }

    pub fn log_dir(&self) -> &LogDir {
        &self.dir
    }

    fn partitions(&self) -> MutexGuard<'_, BTreeMap<TopicPartition, Arc<Partition>>> {
        self.partitions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens (recovering as needed, creating when missing) the replica of `tp`, with the
    /// checkpointed high watermark clamped to its log. A follower of no one until told its
    /// role. Opening an open replica returns it and an empty report.
    ///
    /// The log opens without the lock of the manager's replicas, as the dir opens its
    /// partitions side by side: one replica's recovery (a scan of its unflushed tail) holds
    /// up no other's open nor [`ReplicaManager::tick`] (ISR shrinks, `acks=all` timeouts,
    /// checkpoints). Two openers of one replica get the same one.
    pub fn open_partition(
        &self,
        tp: &TopicPartition,
        log_config: LogConfig,
        config: ReplicaConfig,
    ) -> Result<(Arc<Partition>, RecoveryReport)> {
        if let Some(p) = self.partition(tp) {
            return Ok((p, RecoveryReport::default()));
        }
        // A second opener waits in the dir for the first, and gets the same log.
        let (log, report) = self.dir.open_replica_log(tp, log_config)?;
        let mut partitions = self.partitions();
        if let Some(p) = partitions.get(tp) {
            // The other opener took the map first; the report is this one's if the dir
            // recovered the log here (the other got an empty one).
            return Ok((p.clone(), report));
        }
        let hw = self.dir.checkpointed_high_watermark(tp).unwrap_or(0);
        let partition = Arc::new(Partition::new(log, config, self.clock.clone(), hw));
        partitions.insert(tp.clone(), partition.clone());
        Ok((partition, report))
    }

    pub fn partition(&self, tp: &TopicPartition) -> Option<Arc<Partition>> {
        self.partitions().get(tp).cloned()
    }

    /// DeleteRecords, durably: moves the log start of `tp`'s replica, which must lead, up
    /// to `offset` (not past its HW, see [`Partition::advance_log_start_offset`]), then
    /// writes the dir's `log-start-offset-checkpoint` before it returns the new log start.
    /// A power loss after that does not bring the records below it back on this broker.
    /// (Kafka writes that checkpoint once a minute, `log.flush.start.offset.checkpoint.
    /// interval.ms`, and a crash in between brings them back.) The followers take the new
    /// log start with their next fetches, and their managers write it at their next tick;
    /// they report it with the fetch after that, and Kafka's DeleteRecords answers once
    /// the leader's [`Partition::low_watermark`] reaches `offset` (an embedder checks it
    /// after the partition's fetches, as Kafka's delayed DeleteRecords does, or times the
    /// request out). `NotLeaderOrFollower` for a replica this dir does not host or that
    /// does not lead, and nothing moves.
    pub fn delete_records(&self, tp: &TopicPartition, offset: i64) -> Result<i64> {
        let partition = self.partition(tp).ok_or(Error::NotLeaderOrFollower)?;
        if !partition.is_leader() {
            return Err(Error::NotLeaderOrFollower);
        }
        partition.advance_log_start_offset(offset)?;
        let start = partition.log().log_start_offset();
        self.dir.write_checkpoints()?;
        Ok(start)
    }

    /// Time passes: every replica ticks (ISR shrink, `acks=all` timeouts), the `.deleted`
    /// files whose delay has passed are removed, the log starts that moved since they
    /// were last written are written, and the high watermarks are checkpointed when the
    /// interval has passed since the last write.
    pub fn tick(&self) -> Result<()> {
        let partitions: Vec<Arc<Partition>> = self.partitions().values().cloned().collect();
        for p in &partitions {
            p.tick();
        }
        // Every log's, whatever another's removal says (its files wait for the next tick).
        let mut removed = Ok(());
        for p in &partitions {
            if let Err(err) = p.log().remove_expired_deleted_files() {
                removed = removed.and(Err(err));
            }
        }
        if self.dir.log_starts_moved() {
            self.dir.write_checkpoints()?;
        }
        let now = self.clock.now_ms();
        let last = self.last_checkpoint_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= self.checkpoint_interval_ms {
            self.checkpoint_high_watermarks()?;
        }
        // A removal that failed is told once the checkpoints are written.
        removed
    }

    /// Writes every replica's high watermark to `replication-offset-checkpoint` now.
    pub fn checkpoint_high_watermarks(&self) -> Result<()> {
        let hws: Vec<(TopicPartition, i64)> = self
            .partitions()
            .iter()
            .map(|(tp, p)| (tp.clone(), p.high_watermark()))
            .collect();
        self.dir.write_high_watermarks(&hws)?;
        self.last_checkpoint_ms
            .store(self.clock.now_ms(), Ordering::Relaxed);
        Ok(())
    }

    /// A clean shutdown: the high watermarks are checkpointed, then the log dir closes
    /// (logs flushed, checkpoints and the clean-shutdown marker written). Both run even
    /// when the first fails; the first error is returned.
    pub fn close(self) -> Result<()> {
        let checkpointed = self.checkpoint_high_watermarks();
        self.partitions().clear();
        let closed = self.dir.close();
        checkpointed.and(closed)
    }
}
