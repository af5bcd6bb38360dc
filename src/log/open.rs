//! Opening a log: finish leftovers, load segments, recover when the shutdown was not clean.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};

use super::epochs::EpochCache;
use super::kafka_files;
use super::recovery::{self, RecoveryReport};
use super::{Log, Writer, GAPS_FILE_NAME, NO_EPOCH};
use crate::clock::{Clock, SystemClock};
use crate::config::LogConfig;
use crate::error::Result;
use crate::io::{OpenMode, Storage};
use crate::record::{BatchHeader, HEADER_LEN};
use crate::segment::{files, Segment};

/// How to open one partition's log. The log dir (see [`crate::manager::LogDir`]) fills the
/// recovery hints from its checkpoint files and clean-shutdown marker.
#[derive(Debug, Clone)]
pub struct LogOpenOptions {
    pub storage: Arc<dyn Storage>,
    /// The partition directory, `<log dir>/<topic>-<partition>`; created when missing.
    pub dir: PathBuf,
    pub config: LogConfig,
    pub clock: Arc<dyn Clock>,
    /// Everything below this offset was flushed; `None` when unknown (scan everything).
    pub recovery_point: Option<i64>,
    /// The log start offset recorded at the last checkpoint, if any.
    pub log_start_offset: Option<i64>,
    /// True when the log was closed cleanly: no scan is needed.
    pub clean_shutdown: bool,
    /// Persists the recovery point after a truncation below the persisted one; `None`
    /// leaves the checkpoint to the caller (see [`super::RecoveryPointCheckpoint`]).
    pub recovery_checkpoint: Option<Arc<dyn super::RecoveryPointCheckpoint>>,
}

impl LogOpenOptions {
    /// Options for `dir` with Kafka's defaults, the system clock, and no recovery hints
    /// (so the whole log is validated on open).
    pub fn new(storage: Arc<dyn Storage>, dir: impl Into<PathBuf>) -> Self {
        LogOpenOptions {
            storage,
            dir: dir.into(),
            config: LogConfig::default(),
            clock: Arc::new(SystemClock),
            recovery_point: None,
            log_start_offset: None,
            clean_shutdown: false,
            recovery_checkpoint: None,
        }
    }
}

impl Log {
    /// Opens the log in `options.dir`, creating it when empty, and recovers it: leftover
    /// `.cleaned`/`.swap`/`.deleted` files are finished or undone, and after an unclean
    /// shutdown every segment from the recovery point on is validated, its indexes rebuilt,
    /// and the log cut at the first invalid batch. The report says what was done.
    ///
    /// The log locks its directory (a `.lock` file, as a log dir has) for as long as it
    /// is open: a second open of the same partition, from this process or another, fails
    /// with [`crate::Error::DirLocked`]. The memory maps of the indexes rely on it, since
    /// another writer could shrink a mapped file.
    pub fn open(options: LogOpenOptions) -> Result<(Log, RecoveryReport)> {
        options.config.validate()?;
        let LogOpenOptions {
            storage,
            dir,
            config,
            clock,
            ..
        } = options.clone();
        // Durably: the partition dir's entry in the log dir must survive a crash too.
        crate::io::create_dir_all_durable(storage.as_ref(), &dir)?;
        // A partition partlog never opened has no `.lock` (Kafka keeps its lock in the log
        // dir, not in partition dirs): its files are Kafka's, whose appends wrote no gap
        // witnesses (see `ScanRules::witness_gaps`). The lock file is made durable with
        // its dir entry, before any append: from then on the dir says it is partlog's.
        let lock_path = dir.join(crate::io::real::LOCK_FILE_NAME);
        let opened_before = storage.try_exists(&lock_path)?;
        // Whether offsets may have gaps: the dir says so (see `Log::may_have_gaps`), or
        // the policy compacts. A compacting log's dir says so from this open on.
        let gaps_path = dir.join(GAPS_FILE_NAME);
        let mut gaps_marked = storage.try_exists(&gaps_path)?;
        let compacts = config.cleanup_policy.compacts();
        // Kafka's files, whatever policy they are opened under now (an operator's command
        // names none), were compacted once if their offsets skip any.
        let compacted_before = || -> Result<bool> {
            let bases = segment_bases(storage.as_ref(), &dir)?;
            offsets_skip(storage.as_ref(), &dir, &bases)
        };
        if !opened_before && !gaps_marked && (compacts || compacted_before()?) {
            // Kafka's files, or none yet: marked durably before the `.lock` exists, so
            // that a dir partlog opened before and finds unmarked never had a gap (a
            // power loss can keep a new dir entry that was never synced). Creating the
            // empty mark before taking the lock is harmless: nothing ever removes it.
            storage.open(&gaps_path, OpenMode::Create)?;
            storage.sync_dir(&dir)?;
            gaps_marked = true;
        }
        let lock = storage.lock_dir(&dir)?;
        if !opened_before {
            storage.sync_dir(&dir)?;
        }
        let may_have_gaps = gaps_marked || compacts;
        let mut report = RecoveryReport {
            clean_shutdown: options.clean_shutdown,
            ..Default::default()
        };
        recovery::finish_leftovers(storage.as_ref(), &dir, &mut report)?;
        let now = clock.now_ms();
        let bases = segment_bases(storage.as_ref(), &dir)?;
        let mut segments = Vec::with_capacity(bases.len().max(1));
        for (i, &base) in bases.iter().enumerate() {
            let active = i + 1 == bases.len();
            segments.push(Arc::new(Segment::open(
                storage.clone(),
                &dir,
                base,
                &config,
                active,
                now,
            )?));
        }
        if segments.is_empty() {
            let base = options.log_start_offset.unwrap_or(0).max(0);
            segments.push(Arc::new(Segment::create(
                storage.clone(),
                &dir,
                base,
                &config,
                now,
            )?));
            // The first segment's files must outlive a crash once data in them is flushed.
            storage.sync_dir(&dir)?;
        }
        let checkpointed = read_epochs(storage.as_ref(), &dir, &mut report);
        let entries = checkpointed
            .as_ref()
            .map_or(&[][..], |cache| cache.entries());
        let outcome = recovery::recover_segments(
            &storage,
            &mut segments,
            &options,
            entries,
            opened_before,
            // By the dir's word alone: partlog marks a log before it writes a gap in it,
            // so an unmarked one that was under `Delete` and now compacts holds
            // consecutive offsets still, and a crash's hole in its unsynced tail is
            // damage. It is marked after recovery, its segments synced first.
            gaps_marked,
            &mut report,
        )?;
        let first_base = segments[0].base_offset();
        let log_end_offset = outcome.log_end_offset;
        let log_start_offset = options
            .log_start_offset
            .unwrap_or(first_base)
            .max(first_base)
            .min(log_end_offset);
        let last = &segments[segments.len() - 1];
        last.make_active()?;
        if report.damage.is_some() || !options.clean_shutdown {
            // Kafka's files must not describe the tail recovery cut, nor what a truncation
            // cut before a crash or a failure stopped it short of them: Kafka would trust
            // them once partlog shut down cleanly.
            let bases: Vec<i64> = segments.iter().map(|s| s.base_offset()).collect();
            let (end, dir) = (log_end_offset, dir.as_path());
            if kafka_files::reconcile(storage.as_ref(), dir, &bases, end, end)? {
                storage.sync_dir(dir)?;
            }
        }
        report.segments = segments.len();
        report.log_start_offset = log_start_offset;
        report.log_end_offset = log_end_offset;
        let last_batch = recovery::last_batch(&segments)?;
        let latest_epoch = last_batch.map_or(NO_EPOCH, |h| h.partition_leader_epoch);
        // Where the batches end; below the log end when the last segments are empty.
        let data_end = last_batch.map_or(0, |h| h.next_offset());
        let (epochs, epochs_dirty) = match checkpointed {
            Some(cache) => (cache, false),
            None => (rebuild_epochs(&segments)?, true),
        };
        let log = Log {
            dir,
            config,
            storage,
            clock,
            segments: RwLock::new(Arc::new(segments)),
            log_start_offset: AtomicI64::new(log_start_offset),
            durable_log_start: AtomicI64::new(i64::MIN),
            log_end_offset: AtomicI64::new(log_end_offset),
            recovery_point: AtomicI64::new(outcome.recovery_point.min(log_end_offset)),
            latest_epoch: AtomicI32::new(latest_epoch),
            checkpoint_ceiling: AtomicI64::new(options.recovery_point.unwrap_or(i64::MIN)),
            flushing_to: AtomicI64::new(i64::MIN),
            recovery_checkpoint: options.recovery_checkpoint.clone(),
            truncations: Arc::new(AtomicU64::new(0)),
            // After a crash, the segment files a dead process created may have dir entries
            // that were never synced: the first flush, which moves the recovery point past
            // them, syncs the dir too.
            writer: Mutex::new(Writer {
                dir_dirty: !options.clean_shutdown,
                ..Writer::default()
            }),
            flusher: Mutex::new(()),
            epochs: Mutex::new(super::Epochs {
                cache: epochs,
                renders: 0,
            }),
            epochs_written: Mutex::new(0),
            epochs_dirty: AtomicBool::new(false),
            cleaning: AtomicBool::new(false),
            may_have_gaps: AtomicBool::new(may_have_gaps),
            truncated_to: AtomicI64::new(i64::MAX),
            deletes_due_ms: AtomicI64::new(i64::MAX),
            high_watermark: AtomicI64::new(i64::MAX),
            _lock: lock,
        };
        // What recovery cut, and what the log start left behind, leave the cache; a cache
        // rebuilt from the batches is written at once.
        let (start, end) = (log.log_start_offset(), log.log_end_offset());
        log.change_epochs(true, |cache| {
            let stale =
                last_batch.is_some() && cache.drop_epochs_the_log_lacks(latest_epoch, data_end);
            epochs_dirty | cache.truncate_from_end(data_end) | stale
        })?;
        // The log start can come back lower than the cache's (it is checkpointed lazily):
        // then the cache no longer covers the first batches, and is rebuilt.
        let covers = |cache: &EpochCache| {
            start == end
                || cache
                    .entries()
                    .first()
                    .is_some_and(|e| e.start_offset <= start)
        };
        if !covers(&log.epochs.lock().unwrap_or_else(|e| e.into_inner()).cache) {
            let rebuilt = rebuild_epochs(&log.segments())?;
            log.change_epochs(true, |cache| {
                *cache = rebuilt;
                true
            })?;
        }
        log.change_epochs(false, |cache| cache.truncate_from_start(start))?;
        if may_have_gaps && !gaps_marked {
            // Reopened under `Delete` later, its gaps must still be no damage.
            log.mark_gaps(&mut *log.writer()?)?;
        }
        log.checkpoint_if_stale()?;
        log.debug_check();
        // A log start made durable past what survived a crash (DeleteRecords or retention
        // checkpointed it, the batches below it were never flushed): the log starts over,
        // empty, at that log start, as Kafka's loader does. Offsets below it were handed
        // out and deleted; an append must not get them again. Nothing visible is lost (all
        // of it lay below the log start), so after a crash it is no warning: the report's
        // log start and end say where the log stands. After a clean shutdown, which flushed
        // everything, it cannot come of a crash: segment files were removed by hand or the
        // checkpoint is damaged. The rule is Kafka's all the same, and Kafka warns.
        if let Some(checkpointed) = options.log_start_offset.filter(|&s| s > log_end_offset) {
            if options.clean_shutdown {
                report.warnings.push(format!(
                    "the checkpointed log start {checkpointed} lies past the log end \
                     {log_end_offset} after a clean shutdown (segment files removed, or \
                     a damaged log-start-offset-checkpoint): the log starts over, empty, \
                     at {checkpointed}"
                ));
            }
            log.truncate_fully_and_start_at(checkpointed)?;
            report.segments = log.segments().len();
            report.log_start_offset = log.log_start_offset();
            report.log_end_offset = log.log_end_offset();
        }
        Ok((log, report))
    }
}

/// The epoch cache from `leader-epoch-checkpoint`; none when the file is missing or does
/// not parse (reported as a warning), and the cache is then rebuilt from the batches.
fn read_epochs(
    storage: &dyn Storage,
    dir: &Path,
    report: &mut RecoveryReport,
) -> Option<EpochCache> {
    match EpochCache::read(storage, dir) {
        Ok(cache) => cache,
        Err(err) => {
            report
                .warnings
                .push(format!("rebuilding the leader-epoch cache: {err}"));
            None
        }
    }
}

/// The epoch cache of `segments`, from their batches' headers.
fn rebuild_epochs(segments: &[Arc<Segment>]) -> Result<EpochCache> {
    let mut cache = EpochCache::default();
    for segment in segments {
        let size = segment.size();
        let mut pos = 0u64;
        while pos < size {
            let header = segment.read_header(pos, size)?;
            cache.assign(header.partition_leader_epoch, header.base_offset);
            pos += header.size() as u64;
        }
    }
    Ok(cache)
}

/// Whether the batches of the `.log` files of `dir` at `bases` (ascending) skip an
/// offset anywhere, read up to the first batch of each file that does not read (a torn
/// tail, which recovery deals with), in pieces of 1 MiB.
fn offsets_skip(storage: &dyn Storage, dir: &Path, bases: &[i64]) -> Result<bool> {
    const PIECE: usize = 1 << 20;
    let mut expected: Option<i64> = None;
    let mut piece = Vec::new();
    for &base in bases {
        let file = storage.open(&files::path(dir, base, files::LOG_SUFFIX), OpenMode::Read)?;
        let len = file.len()?;
        let mut pos = 0u64; // of the next batch
        'file: while pos < len {
            piece.resize(PIECE.min((len - pos) as usize), 0);
            file.read_exact_at(&mut piece, pos)?;
            let mut at = 0;
            // A header the piece cuts is read by the next piece.
            while let Some(bytes) = piece.get(at..at + HEADER_LEN) {
                let Ok(header) = BatchHeader::parse(bytes) else {
                    break 'file;
                };
                if expected.is_some_and(|e| e != header.base_offset) {
                    return Ok(true);
                }
                expected = Some(header.next_offset());
                at += header.size();
                if at >= piece.len() {
                    break;
                }
            }
            if at == 0 {
                break; // a header that runs past the file's end
            }
            pos += at as u64;
        }
    }
    Ok(false)
}

/// Base offsets of the `.log` files in `dir`, ascending.
fn segment_bases(storage: &dyn Storage, dir: &Path) -> Result<Vec<i64>> {
    let mut bases: Vec<i64> = storage
        .list_dir(dir)?
        .iter()
        .filter(|e| !e.is_dir)
        .filter_map(|e| files::parse_name(&e.name))
        .filter(|(_, suffix)| *suffix == files::LOG_SUFFIX)
        .map(|(base, _)| base)
        .collect();
    bases.sort_unstable();
    Ok(bases)
}
