//! The dir's offsets checkpoint files as its logs share them: the recovery points, log
//! starts, high watermarks and cleaner offsets, each read at open and rewritten whole,
//! durably, at every change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::checkpoint::{
    self, TopicPartition, CLEANER_FILE, LOG_START_OFFSET_FILE, RECOVERY_POINT_FILE,
    REPLICATION_FILE,
};
use crate::error::Result;
use crate::io::Storage;
use crate::log::{Log, RecoveryPointCheckpoint};

/// A checkpoint file of the dir shared with its logs: `recovery-point-offset-checkpoint`,
/// which a truncation rewrites (see [`crate::log::RecoveryPointCheckpoint`]), and
/// `log-start-offset-checkpoint` and `cleaner-offset-checkpoint`, whose entries a
/// truncation takes back (see [`RecoveryPointCheckpoint::truncated`]).
#[derive(Debug)]
pub(super) struct SharedOffsetsFile {
    storage: Arc<dyn Storage>,
    path: PathBuf,
    /// What the file holds: read at open, then as last written. Locked through each
    /// write, so that the writes land in the order their values were decided, and the
    /// recovery points written and those the logs are told of agree.
    pub(super) written: Mutex<BTreeMap<TopicPartition, i64>>,
}

impl SharedOffsetsFile {
    /// The file as it is; one that does not read counts as empty, with a warning (its
    /// offsets are hints: recovery from the start, or a log start at the first segment).
    pub(super) fn read(
        storage: &Arc<dyn Storage>,
        path: PathBuf,
        warnings: &mut Vec<String>,
    ) -> Self {
        let written = read_offsets(storage.as_ref(), &path).unwrap_or_else(|err| {
            warnings.push(format!(
                "ignoring unreadable checkpoint ({err}); recovering from the start"
            ));
            BTreeMap::new()
        });
        SharedOffsetsFile::new(storage, path, written)
    }

    /// The file as it is; an error when it does not read.
    pub(super) fn read_strict(storage: &Arc<dyn Storage>, path: PathBuf) -> Result<Self> {
        let written = read_offsets(storage.as_ref(), &path)?;
        Ok(SharedOffsetsFile::new(storage, path, written))
    }

    pub(super) fn new(
        storage: &Arc<dyn Storage>,
        path: PathBuf,
        written: BTreeMap<TopicPartition, i64>,
    ) -> Self {
        SharedOffsetsFile {
            storage: storage.clone(),
            path,
            written: Mutex::new(written),
        }
    }

    pub(super) fn get(&self, tp: &TopicPartition) -> Option<i64> {
        let written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        written.get(tp).copied()
    }

    /// Rewrites the file with the recovery points of `logs`, the other entries as they
    /// were (partitions not open keep theirs).
    pub(super) fn write(&self, logs: &[(TopicPartition, &Log)]) -> Result<()> {
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = written.clone();
        let mut points = Vec::with_capacity(logs.len());
        for (tp, log) in logs {
            let point = log.begin_checkpoint();
            points.push((log, point));
            next.insert(tp.clone(), point);
        }
        write_offsets(self.storage.as_ref(), &self.path, &next)?;
        for (log, point) in points {
            log.recovery_point_checkpointed(point);
        }
        *written = next;
        Ok(())
    }

    /// Changes the entries with `change` and rewrites the file, unless `change` says it
    /// changed nothing; one change at a time, each written in the order it was made.
    pub(super) fn update(
        &self,
        change: impl FnOnce(&mut BTreeMap<TopicPartition, i64>) -> bool,
    ) -> Result<()> {
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = written.clone();
        if change(&mut next) {
            write_offsets(self.storage.as_ref(), &self.path, &next)?;
            *written = next;
        }
        Ok(())
    }

    /// Takes `tp`'s entry back to `offset` if it is past it (a truncation cut the log
    /// there); whether it did.
    pub(super) fn lower(&self, tp: &TopicPartition, offset: i64) -> Result<bool> {
        let mut lowered = false;
        self.update(|written| {
            if let Some(entry) = written.get_mut(tp).filter(|e| **e > offset) {
                *entry = offset;
                lowered = true;
            }
            lowered
        })?;
        Ok(lowered)
    }
}

/// One partition's entries in the dir's recovery-point, log-start and cleaner
/// checkpoints, as its log sees them.
#[derive(Debug)]
pub(super) struct PartitionCheckpoint {
    pub(super) recovery_points: Arc<SharedOffsetsFile>,
    pub(super) log_starts: Arc<SharedOffsetsFile>,
    pub(super) cleaner: Arc<SharedOffsetsFile>,
    pub(super) tp: TopicPartition,
}

impl RecoveryPointCheckpoint for PartitionCheckpoint {
    fn checkpoint(&self, log: &Log) -> Result<()> {
        self.recovery_points.write(&[(self.tp.clone(), log)])
    }

    fn truncated(&self, log: &Log, offset: i64) -> Result<()> {
        // A cut below the checkpointed log start (a follower starting over lower, at its
        // leader's log): the checkpoint comes back with it, so that an open after a crash
        // may trust a checkpointed log start past the recovered log end as one the log
        // really had (see `Log::open`).
        self.log_starts.lower(&self.tp, offset)?;
        // Lowered whether the file had an entry or not: without one (a new dir, a lost
        // file), the durable start is where the log opened, and a crash now brings the
        // log back at `offset`.
        log.durable_log_start_lowered(offset);
        // As Kafka's `maybeTruncateCheckpoint`: only ever back.
        self.cleaner.lower(&self.tp, offset).map(|_| ())
    }
}

/// A crash while writing a checkpoint leaves its `.tmp`; the old checkpoint is still whole,
/// so the temp file is only in the way.
pub(super) fn remove_unfinished_checkpoints(
    storage: &dyn Storage,
    dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<()> {
    let mut removed = false;
    for name in [
        RECOVERY_POINT_FILE,
        LOG_START_OFFSET_FILE,
        REPLICATION_FILE,
        CLEANER_FILE,
    ] {
        let tmp = checkpoint::tmp_path(&dir.join(name));
        if storage.exists(&tmp) {
            storage.remove_file(&tmp)?;
            warnings.push(format!("removed unfinished checkpoint {}", tmp.display()));
            removed = true;
        }
    }
    if removed {
        storage.sync_dir(dir)?;
    }
    Ok(())
}

/// Writes an offsets checkpoint durably (see [`checkpoint::write_atomic`]).
pub(super) fn write_offsets(
    storage: &dyn Storage,
    path: &Path,
    offsets: &BTreeMap<TopicPartition, i64>,
) -> Result<()> {
    let entries: Vec<(TopicPartition, i64)> =
        offsets.iter().map(|(tp, o)| (tp.clone(), *o)).collect();
    checkpoint::write_atomic(storage, path, &checkpoint::render_offsets(&entries))
}

/// The entries of an offsets checkpoint; none when the file does not exist.
fn read_offsets(storage: &dyn Storage, path: &Path) -> Result<BTreeMap<TopicPartition, i64>> {
    let entries = match checkpoint::read_text(storage, path)? {
        Some(text) => checkpoint::parse_offsets(path, &text)?,
        None => Vec::new(),
    };
    Ok(entries.into_iter().collect())
}
