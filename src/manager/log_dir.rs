//! One log directory: its lock, checkpoint files, clean-shutdown marker and partitions.
//!
//! ```text
//! <log dir>/
//!   .lock                              exclusive lock while open
//!   .kafka_cleanshutdown               written last on a clean close, removed on open
//!   recovery-point-offset-checkpoint   `topic partition offset` per partition
//!   log-start-offset-checkpoint        `topic partition offset` per partition
//!   replication-offset-checkpoint      each partition's high watermark, same format
//!   cleaner-offset-checkpoint          each compacted partition's first dirty offset
//!   <topic>-<partition>/               one partition's segments
//! ```
//!
//! # The clean-shutdown marker
//!
//! The marker covers the whole dir: on the next open, every partition with it skips
//! recovery. Kafka recovers all logs of a dir at startup, so its marker is always true.
//! partlog opens partitions on demand, so a process may close a dir after recovering only
//! some of them. [`LogDir::close`] therefore writes the marker only when the dir was clean
//! when opened, or every partition in it was opened (and so recovered) by this process,
//! and every open log closed cleanly. Otherwise the next open recovers again; partitions
//! recovered now scan little, since their recovery points were checkpointed.
//! [`LogDir::open_all`] recovers every partition.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::checkpoint::{
    TopicPartition, CLEANER_FILE, LOG_START_OFFSET_FILE, RECOVERY_POINT_FILE, REPLICATION_FILE,
};
use crate::clock::{Clock, SystemClock};
use crate::config::LogConfig;
use crate::error::{Error, Result};
use crate::io::{DirLock, OpenMode, Storage};
use crate::log::{Log, LogOpenOptions, RecoveryReport};

use super::checkpoint_files::{
    remove_unfinished_checkpoints, write_offsets, PartitionCheckpoint, SharedOffsetsFile,
};

/// The marker Kafka writes when a log dir was shut down cleanly.
pub const CLEAN_SHUTDOWN_FILE: &str = ".kafka_cleanshutdown";
/// KRaft's metadata topic, whose log a Kafka log dir may hold (with `metadata.log.dir`
/// unset): the Raft layer's, not a data partition (see [`LogDir::partitions`]).
pub const METADATA_TOPIC: &str = "__cluster_metadata";
/// The directory of Kafka's tiered-storage index cache, the one subdirectory of a log
/// dir that Kafka's loader does not take for a log.
const REMOTE_INDEX_CACHE_DIR: &str = "remote-log-index-cache";

/// Settings shared by the partitions of a log dir.
#[derive(Debug, Clone)]
pub struct LogDirOptions {
    pub config: LogConfig,
    pub clock: Arc<dyn Clock>,
}

impl Default for LogDirOptions {
    fn default() -> Self {
        LogDirOptions {
            config: LogConfig::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

/// The partition a subdirectory named `name` holds, if it is one partlog opens: named as
/// [`TopicPartition::dir_name`] names it, after a topic Kafka's rule allows (`bad topic-0`
/// parses, but does not open, and stopped every partition after it in `open_all`).
fn partition_named(name: &str) -> Option<TopicPartition> {
    TopicPartition::from_dir_name(name).filter(|tp| tp.validate().is_ok())
}

/// The bytes of the clean-shutdown marker at `path`: Kafka's is a line of JSON; one
/// larger than [`MARKER_BYTES_MAX`] is not Kafka's and is written back empty.
fn read_marker(storage: &dyn Storage, path: &std::path::Path) -> Result<Vec<u8>> {
    let file = storage.open(path, OpenMode::Read)?;
    let len = file.len()?;
    if len > MARKER_BYTES_MAX {
        return Ok(Vec::new());
    }
    let mut content = vec![0u8; len as usize];
    file.read_exact_at(&mut content, 0)?;
    Ok(content)
}

/// The largest clean-shutdown marker whose content a clean close writes back.
const MARKER_BYTES_MAX: u64 = 4096;

/// An open, locked log directory.
#[derive(Debug)]
pub struct LogDir {
    path: PathBuf,
    storage: Arc<dyn Storage>,
    options: LogDirOptions,
    _lock: Box<dyn DirLock>,
    clean_shutdown: bool,
    /// What the clean-shutdown marker held when the dir opened (Kafka writes its broker
    /// epoch there, `{"version":0,"brokerEpoch":N}`): a clean close writes it back.
    marker_content: Vec<u8>,
    recovery_points: Arc<SharedOffsetsFile>,
    /// Log start offsets as last checkpointed (read at open, updated by each write).
    log_start_offsets: Arc<SharedOffsetsFile>,
    /// High watermarks as last checkpointed (read at open, updated by each write).
    high_watermarks: SharedOffsetsFile,
    /// The cleaner's first dirty offsets as last checkpointed, shared with the logs.
    cleaner_offsets: Arc<SharedOffsetsFile>,
    logs: Mutex<BTreeMap<TopicPartition, Arc<Log>>>,
    /// Partitions being opened. The first opener recovers the log holding neither map, so
    /// that the dir's other partitions stay reachable meanwhile; later openers of the same
    /// partition wait for its outcome. Locked before `logs` when both are.
    opening: Mutex<BTreeMap<TopicPartition, Arc<Opening>>>,
    /// Serializes checkpoint writes (they share a temp file name).
    checkpointing: Mutex<()>,
    warnings: Vec<String>,
}

impl LogDir {
    /// Locks and opens the log dir (creating it when missing). A second open of the same dir,
    /// from this process or another, fails with [`crate::Error::DirLocked`]. The
    /// clean-shutdown marker is read and removed, so a crash while loading counts as unclean
    /// (an open that fails leaves it; a clean close writes back what it held).
    /// A corrupt `recovery-point-offset-checkpoint` or `cleaner-offset-checkpoint` is
    /// reported in [`LogDir::warnings`] and treated as absent: its partitions recover (or
    /// are cleaned) from their first segment, the safe choice. An unreadable
    /// `log-start-offset-checkpoint` or `replication-offset-checkpoint` fails the open
    /// (with [`crate::Error::Parse`] or the I/O error), as Kafka takes such a dir offline:
    /// read as none, records deleted below a log start would be served again, and the
    /// next checkpoint written would forget every entry for good.
    pub fn open(
        storage: Arc<dyn Storage>,
        path: impl Into<PathBuf>,
        options: LogDirOptions,
    ) -> Result<LogDir> {
        let path = path.into();
        crate::io::create_dir_chain_durable(storage.as_ref(), &path)?;
        let lock = storage.lock_dir(&path)?;
        let marker = path.join(CLEAN_SHUTDOWN_FILE);
        let clean_shutdown = storage.exists(&marker);
        let marker_content = match clean_shutdown {
            true => read_marker(storage.as_ref(), &marker)?,
            false => Vec::new(),
        };
        let mut warnings = Vec::new();
        remove_unfinished_checkpoints(storage.as_ref(), &path, &mut warnings)?;
        let recovery_points = Arc::new(SharedOffsetsFile::read(
            &storage,
            path.join(RECOVERY_POINT_FILE),
            &mut warnings,
        ));
        // Unreadable, the log starts and the high watermarks fail the open, as Kafka
        // takes such a dir offline: read as none, the log starts would go back to the
        // first segments' bases (deleted records served again), a follower in
        // high-watermark truncation would cut its log to its start, and the next write
        // would drop every entry for good.
        let log_start_offsets = Arc::new(SharedOffsetsFile::read_strict(
            &storage,
            path.join(LOG_START_OFFSET_FILE),
        )?);
        let high_watermarks =
            SharedOffsetsFile::read_strict(&storage, path.join(REPLICATION_FILE))?;
        let cleaner_offsets = Arc::new(SharedOffsetsFile::read(
            &storage,
            path.join(CLEANER_FILE),
            &mut warnings,
        ));
        // Removed once nothing can fail the open any more (a failed open leaves the dir
        // as it found it), and before any log opens: a crash while loading counts as
        // unclean.
        if clean_shutdown {
            storage.remove_file(&marker)?;
            storage.sync_dir(&path)?;
        }
        Ok(LogDir {
            path,
            storage,
            options,
            _lock: lock,
            clean_shutdown,
            marker_content,
            recovery_points,
            log_start_offsets,
            high_watermarks,
            cleaner_offsets,
            logs: Mutex::new(BTreeMap::new()),
            opening: Mutex::new(BTreeMap::new()),
            checkpointing: Mutex::new(()),
            warnings,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when the dir was shut down cleanly before this open.
    pub fn was_clean_shutdown(&self) -> bool {
        self.clean_shutdown
    }

    /// Problems met while opening that did not stop it (a corrupt checkpoint, say).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The partitions that have a directory here, sorted. KRaft's metadata log
    /// ([`METADATA_TOPIC`]), which a Kafka log dir may hold beside the data partitions, is
    /// not one: Kafka's `LogManager` leaves it to the Raft layer, and so does partlog (it
    /// is neither opened by [`LogDir::open_all`] nor waited for by the clean-shutdown
    /// marker). [`LogDir::open_log`] still opens it when asked by name.
    pub fn partitions(&self) -> Result<Vec<TopicPartition>> {
        let mut all = self.partition_dirs()?;
        all.retain(|tp| tp.topic != METADATA_TOPIC);
        Ok(all)
    }

    /// The KRaft metadata logs that have a directory here, which [`LogDir::partitions`]
    /// leaves out (for tools to say so).
    pub fn metadata_logs(&self) -> Result<Vec<TopicPartition>> {
        let mut all = self.partition_dirs()?;
        all.retain(|tp| tp.topic == METADATA_TOPIC);
        Ok(all)
    }

    /// Every directory here named as a partition's, sorted.
    fn partition_dirs(&self) -> Result<Vec<TopicPartition>> {
        Ok(self
            .storage
            .list_dir(&self.path)?
            .into_iter()
            .filter(|e| e.is_dir)
            .filter_map(|e| partition_named(&e.name))
            .collect())
    }

    /// Opens (recovering as needed) a partition's log with the dir's config, creating it
    /// when missing. Opening an already open partition returns the same log and an empty
    /// report.
    pub fn open_log(&self, tp: &TopicPartition) -> Result<(Arc<Log>, RecoveryReport)> {
        self.open_log_with(tp, self.options.config.clone())
    }

    /// Like [`LogDir::open_log`] with a per-partition config. A topic name that breaks
    /// Kafka's rule is refused before anything is written. A partition's recovery holds
    /// up no other partition of the dir; a second opener of the same partition waits for
    /// the first and gets the same log.
    ///
    /// A log of a dir whose partitions are replicas ([`LogDir::tracks_high_watermarks`])
    /// opens with its checkpointed high watermark published ([`Log::set_high_watermark`];
    /// its log start when the checkpoint has no entry for it), as a Kafka broker's log
    /// opens at its log start: the dir's cleaner, which cleans any log the dir shows,
    /// never goes past it, and the replica layer taking the log moves it from there. A log
    /// of a dir without one opens unbounded, as a log no replica owns.
    pub fn open_log_with(
        &self,
        tp: &TopicPartition,
        config: LogConfig,
    ) -> Result<(Arc<Log>, RecoveryReport)> {
        self.open_log_as(tp, config, self.tracks_high_watermarks())
    }

    /// [`LogDir::open_log_with`] for a replica's log, which opens with its high
    /// watermark published whether the dir has written its checkpoint yet or not.
    pub(crate) fn open_replica_log(
        &self,
        tp: &TopicPartition,
        config: LogConfig,
    ) -> Result<(Arc<Log>, RecoveryReport)> {
        self.open_log_as(tp, config, true)
    }

    fn open_log_as(
        &self,
        tp: &TopicPartition,
        config: LogConfig,
        replica: bool,
    ) -> Result<(Arc<Log>, RecoveryReport)> {
        tp.validate()?;
        loop {
            let slot = match self.take_turn(tp) {
                Turn::Open(log) => return Ok((log, RecoveryReport::default())),
                Turn::Mine(turn) => {
                    let outcome = self.recover_log(tp, config, replica);
                    turn.end(outcome.as_ref().map(|(log, _)| log.clone()));
                    return outcome;
                }
                Turn::Wait(slot) => slot,
            };
            // Another thread opens it: its log, or (it failed) a try of our own.
            if let Ok(log) = slot.wait() {
                return Ok((log, RecoveryReport::default()));
            }
        }
    }

    /// The open log of `tp`, the opening of it to wait for, or the turn to open it.
    fn take_turn<'a>(&'a self, tp: &'a TopicPartition) -> Turn<'a> {
        let mut opening = self.opening.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(log) = self.log(tp) {
            return Turn::Open(log);
        }
        if let Some(other) = opening.get(tp) {
            return Turn::Wait(other.clone());
        }
        let slot = Arc::new(Opening::default());
        opening.insert(tp.clone(), slot.clone());
        Turn::Mine(OpeningTurn {
            dir: self,
            tp,
            slot,
            outcome: None,
        })
    }

    /// Opens `tp`'s log, recovering it as needed (the caller made sure no one else does).
    fn recover_log(
        &self,
        tp: &TopicPartition,
        config: LogConfig,
        replica: bool,
    ) -> Result<(Arc<Log>, RecoveryReport)> {
        let dir = self.path.join(tp.dir_name());
        if !self.storage.try_exists(&dir)? {
            self.forget(tp)?;
        }
        let recovery_point = self.recovery_points.get(tp);
        let options = LogOpenOptions {
            storage: self.storage.clone(),
            dir,
            config,
            clock: self.options.clock.clone(),
            recovery_point,
            log_start_offset: self.log_starts().get(tp).copied(),
            // The marker never vouches for the metadata log (see
            // `every_partition_recovered`): Kafka recovers it at every start.
            clean_shutdown: self.clean_shutdown && tp.topic != METADATA_TOPIC,
            recovery_checkpoint: Some(Arc::new(PartitionCheckpoint {
                recovery_points: self.recovery_points.clone(),
                log_starts: self.log_start_offsets.clone(),
                cleaner: self.cleaner_offsets.clone(),
                tp: tp.clone(),
            })),
        };
        let (log, report) = Log::open(options)?;
        if replica {
            // Before the dir shows the log to its cleaner (see `open_log_with`).
            let hw = self.high_watermarks.get(tp).unwrap_or(i64::MIN);
            log.set_high_watermark(hw.max(log.log_start_offset()).min(log.log_end_offset()));
        }
        // Where it opened is where a crash brings it back: the checkpoint's start, or the
        // first segment's base, whichever is later (see `Log::open`).
        log.log_start_checkpointed(log.log_start_offset());
        // A log the recovery-point file does not know (a new partition, or its entry lost)
        // gets an entry at once. Otherwise a power loss before the next checkpoint leaves
        // recovery without a point, and it can only guess whether damage followed by valid
        // batches is a crash's doing or the media's.
        if recovery_point.is_none() {
            self.recovery_points.write(&[(tp.clone(), &log)])?;
        }
        Ok((Arc::new(log), report))
    }

    /// Drops `tp`'s entries from every checkpoint of the dir, durably: its directory is
    /// gone (removed while the dir was closed: a deleted topic, made again later), and
    /// what its old log left there would start the new one at the old log start, trust
    /// the old recovery point and serve the old high watermark. Kafka writes entries only
    /// for the logs it holds.
    fn forget(&self, tp: &TopicPartition) -> Result<()> {
        for file in [
            &*self.recovery_points,
            &*self.log_start_offsets,
            &self.high_watermarks,
            &*self.cleaner_offsets,
        ] {
            file.update(|written| written.remove(tp).is_some())?;
        }
        Ok(())
    }

    /// An open partition's log.
    pub fn log(&self, tp: &TopicPartition) -> Option<Arc<Log>> {
        self.logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(tp)
            .cloned()
    }

    /// Opens (recovering as needed) every partition of the dir, in order; the reports of
    /// the partitions that were not open yet.
    pub fn open_all(&self) -> Result<Vec<(TopicPartition, RecoveryReport)>> {
        let mut reports = Vec::new();
        for tp in self.partitions()? {
            let opened = self.log(&tp).is_none();
            let (_, report) = self.open_log(&tp)?;
            if opened {
                reports.push((tp, report));
            }
        }
        Ok(reports)
    }

    /// Flushes every open log and checkpoints recovery points and log start offsets. A log
    /// that fails (it turns read-only) does not stop the others nor the checkpoints: its
    /// recovery point still covers only durable bytes. Returns the first error.
    pub fn flush(&self) -> Result<()> {
        let mut first_error = None;
        for log in self.open_logs() {
            if let Err(err) = log.flush() {
                first_error.get_or_insert(err);
            }
        }
        self.write_checkpoints()?;
        first_error.map_or(Ok(()), Err)
    }

    /// Writes the checkpoint files: entries of open logs, plus the old entries of
    /// partitions not opened in this session (so they keep their recovery points). A
    /// partition opened without a directory (made again after its directory went) drops
    /// its old entries first.
    pub fn write_checkpoints(&self) -> Result<()> {
        let _one_at_a_time = self.checkpointing.lock().unwrap_or_else(|e| e.into_inner());
        let logs = self.logs.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let logs: Vec<(TopicPartition, &Log)> =
            logs.iter().map(|(tp, log)| (tp.clone(), &**log)).collect();
        self.recovery_points.write(&logs)?;
        // Held through the write: a truncation that takes a log start back (see
        // `PartitionCheckpoint::truncated`) comes before or after it, never between.
        let mut written = self.log_starts();
        let mut starts = written.clone();
        for (tp, log) in &logs {
            starts.insert(tp.clone(), log.log_start_offset());
        }
        write_offsets(
            self.storage.as_ref(),
            &self.path.join(LOG_START_OFFSET_FILE),
            &starts,
        )?;
        for (tp, log) in &logs {
            if let Some(&start) = starts.get(tp) {
                log.log_start_checkpointed(start);
            }
        }
        *written = starts;
        Ok(())
    }

    /// Whether an open log's start moved since `log-start-offset-checkpoint` was last
    /// written (DeleteRecords, a follower taking its leader's, retention): then
    /// [`LogDir::write_checkpoints`] has something to make durable.
    pub fn log_starts_moved(&self) -> bool {
        let logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        let written = self.log_starts();
        logs.iter()
            .any(|(tp, log)| written.get(tp) != Some(&log.log_start_offset()))
    }

    fn log_starts(&self) -> MutexGuard<'_, BTreeMap<TopicPartition, i64>> {
        (self.log_start_offsets.written.lock()).unwrap_or_else(|e| e.into_inner())
    }

    /// The high watermark `replication-offset-checkpoint` holds for `tp` (to be clamped to
    /// the log by the replica, see [`crate::replica::Partition::new`]).
    pub fn checkpointed_high_watermark(&self, tp: &TopicPartition) -> Option<i64> {
        self.high_watermarks.get(tp)
    }

    /// Whether the dir has a `replication-offset-checkpoint`: its partitions are replicas,
    /// and one the file leaves out has its high watermark at its log start (as a Kafka
    /// broker reads it). A dir without one holds logs that no replica layer wrote.
    pub fn tracks_high_watermarks(&self) -> bool {
        self.storage.exists(&self.path.join(REPLICATION_FILE))
    }

    /// Writes `replication-offset-checkpoint` with these partitions' high watermarks, and
    /// the last known ones of the others (the replica layer calls it on an interval and at
    /// clean shutdown, as Kafka does). [`crate::Error::InvalidTopic`], writing nothing,
    /// for a partition no directory could be named after ([`TopicPartition::validate`]):
    /// its line would not read back, and the file is read strictly.
    pub fn write_high_watermarks(&self, hws: &[(TopicPartition, i64)]) -> Result<()> {
        for (tp, _) in hws {
            tp.validate()?;
        }
        self.high_watermarks.update(|written| {
            for (tp, hw) in hws {
                written.insert(tp.clone(), *hw);
            }
            true
        })
    }

    /// Closes every log for good (a holder of one can still read it, but no longer write:
    /// [`Error::LogClosed`]), writes the checkpoints, then the clean-shutdown marker when
    /// the whole dir is clean (see the module docs), and releases the lock. A log that fails
    /// to close does not stop the others nor the checkpoints, but the marker is then not
    /// written. Returns the first error.
    pub fn close(self) -> Result<()> {
        let mut first_error = None;
        for log in self.open_logs() {
            if let Err(err) = log.close_for_good() {
                first_error.get_or_insert(err);
            }
        }
        self.write_checkpoints()?;
        if let Some(err) = first_error {
            return Err(err);
        }
        if self.every_partition_recovered()? {
            let marker = self
                .storage
                .open(&self.path.join(CLEAN_SHUTDOWN_FILE), OpenMode::Create)?;
            marker.set_len(0)?;
            marker.write_at(&self.marker_content, 0)?;
            marker.sync_data()?;
        }
        self.storage.sync_dir(&self.path)
    }

    /// True when no log of the dir may hold unrecovered data: the dir was clean when
    /// opened, or every directory Kafka would load as a log is a partition open here.
    /// Kafka's loader takes every subdirectory but its remote index cache for a log (and
    /// the marker vouches for all of them), also those partlog does not open: a replica
    /// being moved (`topic-0.<id>-future`), one marked for deletion (`-delete`) or stray
    /// (`-stray`), a name whose partition is not written the usual way (`topic-01`).
    /// The KRaft metadata log is left out: Kafka recovers it at every start.
    fn every_partition_recovered(&self) -> Result<bool> {
        if self.clean_shutdown {
            return Ok(true);
        }
        if !self.unopenable_dirs()?.is_empty() {
            return Ok(false);
        }
        let logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        Ok(self.partitions()?.iter().all(|tp| logs.contains_key(tp)))
    }

    /// The subdirectories that Kafka's loader would take for logs and partlog does not
    /// open (see `every_partition_recovered`), sorted: while one is here, a close after
    /// an unclean start writes no clean-shutdown marker.
    pub fn unopenable_dirs(&self) -> Result<Vec<String>> {
        let entries = self.storage.list_dir(&self.path)?;
        Ok(entries
            .into_iter()
            .filter(|e| e.is_dir && e.name != REMOTE_INDEX_CACHE_DIR)
            .filter(|e| partition_named(&e.name).is_none())
            .map(|e| e.name)
            .collect())
    }

    /// The open logs with their partitions.
    pub fn logs(&self) -> Vec<(TopicPartition, Arc<Log>)> {
        self.logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(tp, log)| (tp.clone(), log.clone()))
            .collect()
    }

    /// The first dirty offset `cleaner-offset-checkpoint` holds for `tp`.
    pub fn cleaner_offset(&self, tp: &TopicPartition) -> Option<i64> {
        self.cleaner_offsets.get(tp)
    }

    /// Records `tp`'s first dirty offset and rewrites `cleaner-offset-checkpoint`; no
    /// further than a truncation of its log that no cleaning has seen yet (the truncation
    /// took the checkpoint back to where it cut, and a cleaning that ended meanwhile must
    /// not put it forward again). [`crate::Error::InvalidTopic`] as
    /// [`LogDir::write_high_watermarks`] says.
    pub fn write_cleaner_offset(&self, tp: &TopicPartition, offset: i64) -> Result<()> {
        tp.validate()?;
        let log = self.log(tp);
        self.cleaner_offsets.update(|written| {
            let truncated_to = log.as_ref().map_or(i64::MAX, |l| l.truncated_to());
            written.insert(tp.clone(), offset.min(truncated_to));
            true
        })
    }

    fn open_logs(&self) -> Vec<Arc<Log>> {
        self.logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

/// What [`LogDir::take_turn`] found.
enum Turn<'a> {
    Open(Arc<Log>),
    Wait(Arc<Opening>),
    Mine(OpeningTurn<'a>),
}

/// One thread's turn to open a partition. It ends by publishing the log (or the failure)
/// to the waiters and taking the partition out of the opening map, also when the opener
/// unwinds from a panic: its waiters then try themselves instead of waiting for ever.
struct OpeningTurn<'a> {
    dir: &'a LogDir,
    tp: &'a TopicPartition,
    slot: Arc<Opening>,
    /// What the opener came to; `None` until it says, and so when it unwinds.
    outcome: Option<Result<Arc<Log>>>,
}

impl OpeningTurn<'_> {
    fn end(mut self, outcome: std::result::Result<Arc<Log>, &Error>) {
        self.outcome = Some(outcome.map_err(Error::duplicate));
    }
}

impl Drop for OpeningTurn<'_> {
    fn drop(&mut self) {
        let outcome = self.outcome.take().unwrap_or_else(|| {
            let gave_up = std::io::Error::other("the opener of this partition gave up");
            let path = self.dir.path.join(self.tp.dir_name());
            Err(Error::io("open log", path, gave_up))
        });
        let mut opening = self.dir.opening.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(log) = &outcome {
            let mut logs = self.dir.logs.lock().unwrap_or_else(|e| e.into_inner());
            logs.insert(self.tp.clone(), log.clone());
        }
        opening.remove(self.tp);
        drop(opening);
        self.slot.finish(outcome);
    }
}

/// A partition one thread is opening, which others wait for.
#[derive(Debug, Default)]
struct Opening {
    outcome: Mutex<Option<Result<Arc<Log>>>>,
    done: Condvar,
}

impl Opening {
    /// Waits for the opener's outcome.
    fn wait(&self) -> Result<Arc<Log>> {
        let mut outcome = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match outcome.as_ref() {
                Some(Ok(log)) => return Ok(log.clone()),
                Some(Err(e)) => return Err(e.duplicate()),
                None => outcome = self.done.wait(outcome).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }

    fn finish(&self, outcome: Result<Arc<Log>>) {
        *self.outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
        self.done.notify_all();
    }
}

#[cfg(test)]
mod turn_tests {
    use super::*;
    use crate::io::sim::SimStorage;

    /// An opener that panics in the middle of its turn ends it on the way out: the thread
    /// waiting for it opens the partition itself instead of waiting for ever.
    #[test]
    fn a_panicking_opener_leaves_the_partition_to_its_waiter() {
        let disk = SimStorage::new(1);
        let dir = LogDir::open(disk.storage(), "/d", LogDirOptions::default()).unwrap();
        let tp = TopicPartition::new("t", 0);
        let Turn::Mine(turn) = dir.take_turn(&tp) else {
            panic!("nobody else opens it");
        };
        std::thread::scope(|s| {
            let waiter = s.spawn(|| dir.open_log(&tp).map(|(log, _)| log));
            let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                let _turn = turn;
                panic!("recovery bug");
            }));
            assert!(unwound.is_err());
            let log = waiter.join().unwrap().expect("the waiter opens it");
            assert!(dir.log(&tp).is_some_and(|l| Arc::ptr_eq(&l, &log)));
        });
    }
}
