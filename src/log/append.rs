//! Leader and follower appends, and rolling to a new segment.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Log, Writer};
use crate::error::{Error, Result};
use crate::io::OpenMode;
use crate::record::{
    self, Batch, BatchError, BatchHeader, TimestampType, HEADER_LEN, NO_PRODUCER_ID, NO_TIMESTAMP,
};
use crate::segment::Segment;

/// What an append wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended.
    pub first_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// Largest timestamp among the appended batches.
    pub max_timestamp: i64,
    /// Number of batches.
    pub batches: usize,
    /// Bytes appended.
    pub bytes: usize,
}

/// Where an append as leader comes from, as Kafka's `AppendOrigin` tells a producer's
/// request from a coordinator's write. Only a coordinator writes control batches (the
/// transaction markers); a client's batch with a producer id must carry a sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOrigin {
    /// A producer's request: Kafka's `LogValidator` checks for clients apply.
    Client,
    /// A coordinator of the broker that embeds partlog: a transaction coordinator's
    /// markers (and `partlog transactions --abort`), a group coordinator's commits.
    Coordinator,
}

impl Log {
    /// Appends a producer's batches as the leader ([`AppendOrigin::Client`]): validates
    /// each one completely (CRC, records, and the header's offsets against its records, see
    /// [`Batch::validate_for_leader`]), refuses what Kafka refuses from a client (a control
    /// batch: [`Error::ControlBatchFromClient`]; a producer id without a sequence:
    /// [`Error::InvalidSequence`]), then assigns offsets from the log end offset and
    /// stamps `leader_epoch`, both in place (they lie outside the CRC, so nothing is
    /// re-encoded). The max timestamp is Kafka's: for a `CreateTime` batch the largest of
    /// its records' timestamps, written into the header (CRC and all) when the producer
    /// wrote another there. Each batch takes the topic's timestamp type
    /// ([`crate::LogConfig::message_timestamp_type`]): under `LogAppendTime` it gets the
    /// clock's time. A producer's `LogAppendTime` mark is Kafka's `LogValidator`'s case
    /// too: each record reads at the header's max, so under `CreateTime` (the default)
    /// the batch is marked `CreateTime` and keeps that max; under `LogAppendTime`, or
    /// without a max timestamp, it is refused ([`Error::LogAppendTimeFromProducer`]).
    /// A refused append writes nothing.
    pub fn append_as_leader(&self, batches: &mut [u8], leader_epoch: i32) -> Result<AppendInfo> {
        self.append_as_leader_from(AppendOrigin::Client, batches, leader_epoch)
    }

    /// [`Log::append_as_leader`] for a coordinator ([`AppendOrigin::Coordinator`]): control
    /// batches are taken, such as the COMMIT and ABORT markers of
    /// [`crate::record::BatchBuilder::transaction_marker`].
    pub fn append_as_coordinator(
        &self,
        batches: &mut [u8],
        leader_epoch: i32,
    ) -> Result<AppendInfo> {
        self.append_as_leader_from(AppendOrigin::Coordinator, batches, leader_epoch)
    }

    /// The leader's append, with the checks of `origin`.
    pub fn append_as_leader_from(
        &self,
        origin: AppendOrigin,
        batches: &mut [u8],
        leader_epoch: i32,
    ) -> Result<AppendInfo> {
        self.append_as_leader_then(origin, batches, leader_epoch, |_, _| Ok(()))
    }

    /// [`Log::append_as_leader_from`], calling `before_write` with the segment the batches
    /// go to and their offsets once both are settled, before a byte of them is written;
    /// an error from it appends nothing and stops the log's writes, as a failed write does.
    pub(super) fn append_as_leader_then(
        &self,
        origin: AppendOrigin,
        batches: &mut [u8],
        leader_epoch: i32,
        before_write: impl FnOnce(&Segment, &AppendInfo) -> Result<()>,
    ) -> Result<AppendInfo> {
        let mut writer = self.writer()?;
        self.check_epoch(leader_epoch, self.latest_epoch())?;
        let now_ms = self.clock.now_ms();
        let first_offset = self.log_end_offset();
        let compacts = self.config.cleanup_policy.compacts();
        let max_batch_bytes = Some(self.config.max_message_bytes);
        // The topic's timestamp type, not the producer's mark, as Kafka's `LogValidator`
        // has it (see `LogConfig::message_timestamp_type`).
        let stored = self.config.message_timestamp_type;
        // Whether a batch stored as `CreateTime` needs its header rewritten: marked
        // `LogAppendTime` by its client, or with a max timestamp not its records' (no
        // client Kafka ships writes one). Found again below for the batches it concerns.
        let mut headers_to_fix = false;
        let mut info = self.scan_input(batches, max_batch_bytes, |batch, next| {
            let header = batch.header();
            // The CRC first, as Kafka checks it before the rules of the batch's origin.
            let max_timestamp = batch.validate_for_leader()?;
            if origin == AppendOrigin::Client {
                check_client_batch(header)?;
            }
            let marked_log_append_time = header.timestamp_type() == TimestampType::LogAppendTime;
            // Kafka's `LogValidator` reads each record of such a batch at the header's
            // max, and refuses it unless that is a time checked under `CreateTime`.
            if marked_log_append_time
                && (stored == TimestampType::LogAppendTime || header.max_timestamp == NO_TIMESTAMP)
            {
                return Err(Error::LogAppendTimeFromProducer {
                    max_timestamp: header.max_timestamp,
                });
            }
            if stored == TimestampType::CreateTime {
                headers_to_fix |= marked_log_append_time || max_timestamp != header.max_timestamp;
            }
            if compacts {
                require_keys(batch)?;
            }
            // The header says where the batch was built; the leader moves it to `next`.
            let moved = BatchHeader {
                base_offset: next,
                ..*header
            };
            Ok(moved.checked_next_offset()? - 1)
        })?;
        info.first_offset = first_offset;
        info.max_timestamp = NO_TIMESTAMP;
        let mut next = first_offset;
        let mut at = 0usize;
        while at < batches.len() {
            let batch = &mut batches[at..];
            let header = BatchHeader::parse(batch)?;
            record::set_base_offset(batch, next);
            record::set_partition_leader_epoch(batch, leader_epoch);
            let batch = &mut batch[..header.size()];
            let max_timestamp = match stored {
                TimestampType::LogAppendTime => {
                    record::set_log_append_time(batch, now_ms);
                    now_ms
                }
                TimestampType::CreateTime if headers_to_fix => {
                    // Kafka's max, the largest of the records' times: a batch marked
                    // `LogAppendTime` has each at the header's max (and keeps that max,
                    // now as `CreateTime`), any other its records' own.
                    let marked = header.timestamp_type();
                    let max_timestamp = match marked {
                        // Kafka's max starts at -1 and takes only larger times: a max
                        // below it (-5) reads as none.
                        TimestampType::LogAppendTime => header.max_timestamp.max(NO_TIMESTAMP),
                        TimestampType::CreateTime => Batch::parse(batch)?.validate_for_leader()?,
                    };
                    if marked == TimestampType::LogAppendTime
                        || max_timestamp != header.max_timestamp
                    {
                        record::set_create_time(batch, max_timestamp);
                    }
                    max_timestamp
                }
                TimestampType::CreateTime => header.max_timestamp,
            };
            info.max_timestamp = info.max_timestamp.max(max_timestamp);
            next += header.last_offset_delta as i64 + 1;
            at += header.size();
        }
        debug_assert_eq!(info.last_offset, next - 1);
        self.append_locked(&mut writer, batches, &info, leader_epoch, before_write)?;
        Ok(info)
    }

    /// Epochs never decrease along the log: recovery relies on it to catch a torn epoch
    /// field (which the CRC does not cover), and a lower epoch means a replaced leader.
    pub(super) fn check_epoch(&self, epoch: i32, latest: i32) -> Result<()> {
        if epoch < latest {
            return Err(Error::FencedLeaderEpoch { epoch, latest });
        }
        Ok(())
    }

    /// Appends batches as a follower: offsets are kept as the leader assigned them. The
    /// first batch must start at or above the log end offset and offsets must increase,
    /// with gaps or without, as Kafka's follower takes them: a leader's log holds gaps
    /// wherever it was compacted, under whatever policy it has now. The first append that
    /// leaves a gap in a log without any syncs the log and marks it durably as one that
    /// may have gaps ([`Log::may_have_gaps`]) before it writes. Offsets that overflow an
    /// `i64` are refused. A batch larger than `max_message_bytes` is taken, as Kafka's
    /// follower takes it: its leader did.
    pub fn append_as_follower(&self, batches: &[u8]) -> Result<AppendInfo> {
        let mut writer = self.writer()?;
        let log_end_offset = self.log_end_offset();
        let mut first = None;
        let mut leaves_gap = false;
        let mut epoch = self.latest_epoch();
        let info = self.scan_input(batches, None, |batch, next| {
            batch.verify_crc()?;
            let header = batch.header();
            self.check_epoch(header.partition_leader_epoch, epoch)?;
            epoch = header.partition_leader_epoch;
            let expected = if first.is_none() {
                log_end_offset
            } else {
                next
            };
            if header.base_offset < expected {
                return Err(Error::InvalidOffset {
                    base_offset: header.base_offset,
                    expected,
                });
            }
            leaves_gap |= header.base_offset > expected;
            first.get_or_insert(header.base_offset);
            Ok(header.checked_next_offset()? - 1)
        })?;
        if leaves_gap && !self.may_have_gaps() {
            // A failed sync may have dropped the pages it was to write: the log takes no
            // more writes, as after any failed flush.
            if let Err(err) = self.mark_gaps(&mut writer) {
                return Self::fail(&mut writer, err);
            }
        }
        let info = AppendInfo {
            first_offset: first.unwrap_or(log_end_offset),
            ..info
        };
        self.append_locked(&mut writer, batches, &info, epoch, |_, _| Ok(()))?;
        Ok(info)
    }

    /// Marks the log, durably, as one whose offsets may have gaps (see
    /// [`Log::may_have_gaps`]): at the open of a compacting log not marked yet, or before
    /// the first batch that leaves a gap is written. Every segment is synced first: from
    /// then on recovery no longer checks that offsets follow each other (rolls sync
    /// instead), so a hole that a crash made in what came before would go unseen.
    pub(super) fn mark_gaps(&self, writer: &mut Writer) -> Result<()> {
        for segment in self.segments().iter() {
            segment.flush()?;
        }
        self.storage
            .open(&self.dir.join(super::GAPS_FILE_NAME), OpenMode::Create)?;
        self.storage.sync_dir(&self.dir)?;
        writer.dir_dirty = false;
        self.may_have_gaps.store(true, Ordering::Release);
        Ok(())
    }

    /// Walks the batches of an append, parsing each once, checking sizes and calling
    /// `check(batch, next_offset)`, which returns the batch's last offset. Fills everything
    /// but `first_offset` of the result. `max_batch_bytes` is the leader's limit on a
    /// batch (`max.message.bytes`); a follower has none (Kafka's `ignoreRecordSize`): the
    /// leader took the batch, maybe under a larger limit since lowered, and a follower
    /// that refused it would never catch up.
    fn scan_input(
        &self,
        batches: &[u8],
        max_batch_bytes: Option<usize>,
        mut check: impl FnMut(&Batch<'_>, i64) -> Result<i64>,
    ) -> Result<AppendInfo> {
        if batches.len() < HEADER_LEN {
            let e = BatchError::TooShort {
                needed: HEADER_LEN,
                available: batches.len(),
            };
            return Err(e.into());
        }
        if batches.len() as u64 > self.config.segment_bytes {
            let max = self.config.segment_bytes as usize;
            return Err(Error::RecordTooLarge {
                size: batches.len(),
                max,
            });
        }
        let mut info = AppendInfo {
            first_offset: 0,
            last_offset: -1,
            max_timestamp: -1,
            batches: 0,
            bytes: batches.len(),
        };
        let mut next = self.log_end_offset();
        let mut at = 0usize;
        while at < batches.len() {
            let batch = Batch::parse(&batches[at..])?;
            let header = *batch.header();
            if let Some(max) = max_batch_bytes.filter(|&max| header.size() > max) {
                return Err(Error::RecordTooLarge {
                    size: header.size(),
                    max,
                });
            }
            let last = check(&batch, next)?;
            info.last_offset = last;
            info.max_timestamp = info.max_timestamp.max(header.max_timestamp);
            info.batches += 1;
            // `check` returns the last offset of a batch whose next offset fits an i64.
            next = last + 1;
            at += header.size();
        }
        Ok(info)
    }

    /// Writes validated batches whose offsets are final, rolling first when needed, then
    /// publishes the new log end offset. `before_write` runs once the segment is chosen
    /// (see [`Log::append_as_leader_then`]).
    fn append_locked(
        &self,
        writer: &mut Writer,
        batches: &[u8],
        info: &AppendInfo,
        last_epoch: i32,
        before_write: impl FnOnce(&Segment, &AppendInfo) -> Result<()>,
    ) -> Result<()> {
        if !fits_index(info, info.first_offset.max(self.log_end_offset())) {
            return Err(Error::OffsetSpanTooLarge {
                first_offset: info.first_offset,
                last_offset: info.last_offset,
            });
        }
        let active = match self.maybe_roll(writer, batches.len() as u64, info) {
            Ok(active) => active,
            Err(err) => return Self::fail(writer, err),
        };
        if let Err(err) = before_write(&active, info) {
            return Self::fail(writer, err);
        }
        // The cache learns a new epoch before its first batch is written, and durably: a
        // crash must never leave batches of an epoch the checkpoint does not know.
        if let Err(err) = self.assign_epochs(batches) {
            return Self::fail(writer, err);
        }
        // A compacted log's batches may leave gaps; each that does gets its index witness.
        let gaps_after = self.may_have_gaps().then(|| match writer.file_end {
            Some(end) if end >= active.base_offset() => end,
            _ => self.log_end_offset().max(active.base_offset()),
        });
        if let Err(err) = active.append(batches, gaps_after) {
            return Self::fail(writer, err);
        }
        writer.file_end = None;
        if info.first_offset < self.checkpoint_ceiling.load(Ordering::Acquire) {
            if let Err(err) = self.sync_below_checkpoint(writer, &active) {
                return Self::fail(writer, err);
            }
        }
        debug_assert!(
            info.last_offset >= self.log_end_offset(),
            "offsets must increase"
        );
        self.log_end_offset
            .store(info.last_offset + 1, Ordering::Release);
        self.latest_epoch.store(last_epoch, Ordering::Release);
        self.debug_check();
        Ok(())
    }

    /// Makes an append durable whose offsets the persisted recovery point already claims
    /// are. That happens only after a truncation below the point, until the next
    /// checkpoint: otherwise the point trails the log end. Recovery would trust the bytes
    /// (a segment ending below the point is not scanned) or call their loss corruption.
    fn sync_below_checkpoint(&self, writer: &mut Writer, active: &Segment) -> Result<()> {
        active.flush()?;
        if writer.dir_dirty {
            self.storage.sync_dir(&self.dir)?;
            writer.dir_dirty = false;
        }
        Ok(())
    }

    /// Assigns each batch's epoch and base offset to the epoch cache (a no-op for batches
    /// of the latest epoch, which is every batch but the first of a new leader's).
    fn assign_epochs(&self, batches: &[u8]) -> Result<()> {
        let mut at = 0usize;
        while at < batches.len() {
            let header = BatchHeader::parse(&batches[at..])?;
            let (epoch, base) = (header.partition_leader_epoch, header.base_offset);
            self.change_epochs(true, |cache| cache.assign(epoch, base))?;
            at += header.size();
        }
        Ok(())
    }

    /// Rolls to a new segment when the append would not fit in the active one, its indexes
    /// are full, it is older than `segment_ms`, or the append's offsets would not fit its
    /// relative (`i32`) index (Kafka's `ensureOffsetInRange`). An append whose own offsets
    /// span more than any segment can index is refused before anything changes.
    ///
    /// A compacted log also rolls when its offset index has fewer free entries than the
    /// append has batches: each batch that leaves a gap needs an entry, its witness (see
    /// [`Segment::append`]), and one the index had no room for would leave recovery only
    /// the weaker check. (Only an append with more batches than a whole index holds, into
    /// an empty segment, still goes partly unwitnessed.)
    fn maybe_roll(
        &self,
        writer: &mut Writer,
        bytes: u64,
        info: &AppendInfo,
    ) -> Result<Arc<Segment>> {
        let base_offset = info.first_offset.max(self.log_end_offset());
        let active = self.active_segment();
        let size = active.size();
        let now_ms = self.clock.now_ms();
        if !fits_index(info, active.base_offset()) {
            // Even an empty active segment must go: its base is too far below.
            return self.roll(writer, base_offset);
        }
        // Room for one entry, or for a compacted log's witness per batch.
        let entries = if self.may_have_gaps() {
            info.batches
        } else {
            1
        };
        let roll = size > 0
            && (size + bytes > self.config.segment_bytes
                || active.time_waited_for_roll_ms(now_ms, info.max_timestamp)?
                    > self.config.segment_ms
                || active.indexes_lack_room(entries)?);
        if !roll {
            return Ok(active);
        }
        self.roll(writer, base_offset)
    }

    /// Closes the active segment for appends and starts a new one at `base_offset`. An
    /// empty active segment is replaced rather than left behind.
    pub(super) fn roll(&self, writer: &mut Writer, base_offset: i64) -> Result<Arc<Segment>> {
        let active = self.active_segment();
        if active.size() == 0 {
            return self.replace_empty_active(writer, active, base_offset);
        }
        active.trim_files()?;
        // Recovery trusts every segment that ends at or below the persisted recovery point.
        // That point normally trails the log end, but after a truncation below it (until
        // the next checkpoint) it can lie past the segment being closed: make the segment
        // durable then, so that skipping it is safe.
        //
        // A log whose offsets may have gaps (a compacted one) is made durable at every roll,
        // with the new segment's name: recovery cannot tell a segment that a power loss took
        // (while a later one survived) from records the cleaner removed. Synced here, a
        // closed segment is never lost, and only the active segment's tail can be, which
        // recovery cuts and the replica fetches again. (A log with consecutive offsets finds
        // such a hole by its offsets instead, and rolls without waiting for the disk.)
        //
        // And a flush that reached the segment's end (the recovery point is there, or will
        // be once a flush under way finishes) synced it before this trim: no later flush
        // covers it (they start at the recovery point), so the trim, the time index's last
        // entry and the shortened files, is synced here, as Kafka's roll flushes the
        // segment it closes.
        let gaps = self.may_have_gaps();
        if gaps
            || self.checkpoint_ceiling.load(Ordering::Acquire) >= base_offset
            || self.recovery_point() >= base_offset
            || self.flushing_to.load(Ordering::Acquire) >= base_offset
        {
            active.flush()?;
        }
        let segment = self.new_segment(base_offset)?;
        writer.dir_dirty = true;
        if gaps {
            self.storage.sync_dir(&self.dir)?;
            writer.dir_dirty = false;
        }
        let mut segments = Vec::clone(&self.segments());
        segments.push(segment.clone());
        self.set_segments(segments);
        Ok(segment)
    }

    /// Creates an empty segment at `base_offset` in the log's dir.
    pub(super) fn new_segment(&self, base_offset: i64) -> Result<Arc<Segment>> {
        Ok(Arc::new(Segment::create(
            self.storage.clone(),
            &self.dir,
            base_offset,
            &self.config,
            self.clock.now_ms(),
        )?))
    }

    /// The new segment is made durable before the empty one is renamed away: a power loss
    /// in between then leaves both (the empty one holds nothing a later base overlaps), where
    /// the other order could leave no segment at all, and the log would reopen at the
    /// checkpointed log start, below offsets it had given out.
    fn replace_empty_active(
        &self,
        writer: &mut Writer,
        empty: Arc<Segment>,
        base_offset: i64,
    ) -> Result<Arc<Segment>> {
        let segment = self.new_segment(base_offset)?;
        self.storage.sync_dir(&self.dir)?;
        self.schedule_deletion(writer, std::slice::from_ref(&empty))?;
        let mut segments = Vec::clone(&self.segments());
        segments.pop();
        segments.push(segment.clone());
        self.set_segments(segments);
        Ok(segment)
    }

    /// Starts a new segment now, even if the active one has room (operators and tests).
    pub fn force_roll(&self) -> Result<()> {
        let mut writer = self.writer()?;
        if self.active_segment().size() == 0 {
            return Ok(());
        }
        let base = self.log_end_offset();
        match self.roll(&mut writer, base) {
            Ok(_) => Ok(()),
            Err(err) => Self::fail(&mut writer, err),
        }
    }
}

/// True when every offset of the append lies within a segment based at `base`'s relative
/// (`i32`) index.
fn fits_index(info: &AppendInfo, base: i64) -> bool {
    info.first_offset >= base && info.last_offset - base <= i32::MAX as i64
}

/// What Kafka's `LogValidator` refuses from a client and takes from a coordinator: a
/// control batch (a client forging a marker would end another producer's transaction),
/// and a batch with a producer id but no sequence.
fn check_client_batch(header: &BatchHeader) -> Result<()> {
    if header.is_control() {
        return Err(Error::ControlBatchFromClient);
    }
    if header.producer_id > NO_PRODUCER_ID && header.base_sequence < 0 {
        return Err(Error::InvalidSequence {
            producer_id: header.producer_id,
            base_sequence: header.base_sequence,
        });
    }
    Ok(())
}

/// A compacted log's records need keys, as Kafka's `LogValidator` demands. Control
/// batches carry their own keys; compressed ones are not opened (partlog does not
/// decompress), so their records are taken as they are.
fn require_keys(batch: &record::Batch<'_>) -> Result<()> {
    if batch.header().is_control() {
        return Ok(());
    }
    let Ok(records) = batch.records() else {
        return Ok(());
    };
    for r in records {
        let r = r?;
        if r.key.is_none() {
            return Err(Error::KeylessRecord {
                offset_delta: r.offset_delta,
            });
        }
    }
    Ok(())
}
