//! The RecordBatch v2 header, a zero-copy view over one batch, and in-place patching.

use super::records::{RecordIter, UsualRecords};
use super::{BatchError, BATCH_SIZE_PREFIX_LEN, HEADER_LEN, LOG_OVERHEAD, MAGIC_V2};
use super::{MIN_BATCH_LENGTH, NO_PARTITION_LEADER_EPOCH};

// Field positions inside a batch (see the layout on `BatchHeader`).
const BASE_OFFSET_AT: usize = 0;
pub(crate) const BATCH_LENGTH_AT: usize = 8;
const LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
pub(crate) const CRC_AT: usize = 17;
/// The CRC covers the batch from `attributes` to its end.
pub(crate) const ATTRIBUTES_AT: usize = 21;
pub(crate) const LAST_OFFSET_DELTA_AT: usize = 23;
pub(crate) const BASE_TIMESTAMP_AT: usize = 27;
pub(crate) const MAX_TIMESTAMP_AT: usize = 35;
pub(crate) const PRODUCER_ID_AT: usize = 43;
pub(crate) const PRODUCER_EPOCH_AT: usize = 51;
pub(crate) const BASE_SEQUENCE_AT: usize = 53;
pub(crate) const RECORDS_COUNT_AT: usize = 57;

const _: () = assert!(RECORDS_COUNT_AT + 4 == HEADER_LEN);
const _: () = assert!(MAGIC_AT + 1 == BATCH_SIZE_PREFIX_LEN && BATCH_LENGTH_AT + 4 == LOG_OVERHEAD);
const _: () = assert!(NO_PARTITION_LEADER_EPOCH < 0);

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
pub(crate) const TRANSACTIONAL_BIT: i16 = 1 << 4;
pub(crate) const CONTROL_BIT: i16 = 1 << 5;
pub(crate) const DELETE_HORIZON_BIT: i16 = 1 << 6;

/// Compression codec of a batch, attribute bits 0-2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

impl Compression {
    fn from_attributes(attributes: i16) -> Result<Compression, BatchError> {
        match attributes & COMPRESSION_MASK {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            codec => Err(BatchError::UnsupportedCompression { codec: codec as u8 }),
        }
    }
}

/// Meaning of the batch's timestamps, attribute bit 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimestampType {
    /// Set by the producer (bit clear).
    CreateTime,
    /// Set by the broker on append (bit set); every record's timestamp is `maxTimestamp`.
    LogAppendTime,
}

/// The 61-byte header of a RecordBatch v2 (magic 2), as Kafka's `DefaultRecordBatch` lays
/// it out. All integers are big-endian.
///
/// ```text
/// offset len field
///      0   8 baseOffset            i64  offset of the first record
///      8   4 batchLength           i32  bytes after this field (whole batch = 12 + batchLength)
///     12   4 partitionLeaderEpoch  i32  -1 = none; outside the CRC
///     16   1 magic                 i8   2
///     17   4 crc                   u32  CRC-32C (Castagnoli) of bytes 21..end of batch
///     21   2 attributes            i16  bits 0-2 compression (0 none, 1 gzip, 2 snappy,
///                                       3 lz4, 4 zstd), 3 timestamp type (1 = LogAppendTime),
///                                       4 transactional, 5 control, 6 delete horizon set
///     23   4 lastOffsetDelta       i32  last offset - baseOffset
///     27   8 baseTimestamp         i64  first record's timestamp (delete horizon if bit 6)
///     35   8 maxTimestamp          i64  largest record timestamp (append time if bit 3)
///     43   8 producerId            i64  -1 = none
///     51   2 producerEpoch         i16  -1 = none
///     53   4 baseSequence          i32  -1 = none
///     57   4 recordsCount          i32
///     61     records               (compressed as a whole when codec != 0)
/// ```
///
/// `baseOffset` and `partitionLeaderEpoch` lie before the CRC'd range, so a leader assigns
/// offsets and stamps its epoch without re-hashing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

/// Total size (`LOG_OVERHEAD + batchLength`) of the batch that starts at `buf[0]`, reading
/// only its first 17 bytes. Checks the magic byte and that `batchLength` is at least a
/// header's worth (49). Recovery and reads use it to hop from batch to batch.
pub fn batch_size(buf: &[u8]) -> Result<usize, BatchError> {
    let prefix = buf
        .get(..BATCH_SIZE_PREFIX_LEN)
        .ok_or(BatchError::TooShort {
            needed: BATCH_SIZE_PREFIX_LEN,
            available: buf.len(),
        })?;
    let magic = prefix[MAGIC_AT] as i8;
    if magic != MAGIC_V2 {
        return Err(BatchError::WrongMagic { magic });
    }
    let batch_length = read_i32(prefix, BATCH_LENGTH_AT);
    if batch_length < MIN_BATCH_LENGTH {
        return Err(BatchError::InvalidBatchLength { batch_length });
    }
    // Non-negative i32 plus 12 fits in usize on every target with >= 32-bit pointers.
    Ok(LOG_OVERHEAD + batch_length as usize)
}

impl BatchHeader {
    /// Reads the header at the start of `buf` (at least 61 bytes). Checks the magic byte,
    /// `batchLength >= 49`, `lastOffsetDelta >= 0`, `recordsCount >= 0` and the codec; it
    /// does not check the CRC nor that `buf` holds the whole batch.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        let h = buf.get(..HEADER_LEN).ok_or(BatchError::TooShort {
            needed: HEADER_LEN,
            available: buf.len(),
        })?;
        batch_size(h)?;
        let header = BatchHeader {
            base_offset: read_i64(h, BASE_OFFSET_AT),
            batch_length: read_i32(h, BATCH_LENGTH_AT),
            partition_leader_epoch: read_i32(h, LEADER_EPOCH_AT),
            magic: h[MAGIC_AT] as i8,
            crc: read_i32(h, CRC_AT) as u32,
            attributes: i16::from_be_bytes([h[ATTRIBUTES_AT], h[ATTRIBUTES_AT + 1]]),
            last_offset_delta: read_i32(h, LAST_OFFSET_DELTA_AT),
            base_timestamp: read_i64(h, BASE_TIMESTAMP_AT),
            max_timestamp: read_i64(h, MAX_TIMESTAMP_AT),
            producer_id: read_i64(h, PRODUCER_ID_AT),
            producer_epoch: i16::from_be_bytes([h[PRODUCER_EPOCH_AT], h[PRODUCER_EPOCH_AT + 1]]),
            base_sequence: read_i32(h, BASE_SEQUENCE_AT),
            records_count: read_i32(h, RECORDS_COUNT_AT),
        };
        header.check_fields()?;
        Ok(header)
    }

    fn check_fields(&self) -> Result<(), BatchError> {
        if self.last_offset_delta < 0 {
            let last_offset_delta = self.last_offset_delta;
            return Err(BatchError::InvalidLastOffsetDelta { last_offset_delta });
        }
        if self.records_count < 0 {
            let records_count = self.records_count;
            return Err(BatchError::InvalidRecordsCount { records_count });
        }
        Compression::from_attributes(self.attributes).map(|_| ())
    }

    /// Offset of the last record: `base_offset + last_offset_delta` (wrapping, as Java does).
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .wrapping_add(i64::from(self.last_offset_delta))
    }

    /// Offset after this batch: `last_offset() + 1`.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().wrapping_add(1)
    }

    /// [`BatchHeader::next_offset`] without wrapping: fails when the batch's offsets
    /// overflow an `i64`, which no valid log holds.
    pub fn checked_next_offset(&self) -> Result<i64, BatchError> {
        self.base_offset
            .checked_add(i64::from(self.last_offset_delta))
            .and_then(|last| last.checked_add(1))
            .ok_or(BatchError::OffsetOverflow {
                base_offset: self.base_offset,
                last_offset_delta: self.last_offset_delta,
            })
    }

    /// Bytes of the whole batch: `LOG_OVERHEAD + batch_length`.
    pub fn size(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    /// Compression codec; a parsed header always names a known one.
    pub fn compression(&self) -> Compression {
        Compression::from_attributes(self.attributes).unwrap_or(Compression::None)
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// True when a cleaner has stored the delete horizon in `base_timestamp`.
    pub fn has_delete_horizon(&self) -> bool {
        self.attributes & DELETE_HORIZON_BIT != 0
    }
}

/// A view over exactly one batch's bytes (`as_bytes().len() == header().size()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batch<'a> {
    header: BatchHeader,
    bytes: &'a [u8],
}

impl<'a> Batch<'a> {
    /// What a transaction marker says of its producer's open transaction: `Some(true)` for
    /// COMMIT, `Some(false)` for ABORT; `None` for any other batch. A marker is a
    /// transactional control batch whose record's key is a version (int16) and a type
    /// (int16): 0 abort, 1 commit (Kafka's `ControlRecordType`).
    pub fn marker_commits(&self) -> Option<bool> {
        if !(self.header.is_control() && self.header.is_transactional()) {
            return None;
        }
        let record = self.records().ok()?.next()?.ok()?;
        match record.key? {
            [_, _, 0, 0, ..] => Some(false),
            [_, _, 0, 1, ..] => Some(true),
            _ => None,
        }
    }

    /// The coordinator epoch a transaction marker carries: its record's value is a
    /// version (int16), then the epoch (int32). `None` for any other batch, or a marker
    /// whose value is shorter.
    pub fn marker_coordinator_epoch(&self) -> Option<i32> {
        self.marker_commits()?;
        let record = self.records().ok()?.next()?.ok()?;
        let epoch: [u8; 4] = record.value?.get(2..6)?.try_into().ok()?;
        Some(i32::from_be_bytes(epoch))
    }

    /// The batch at the start of `buf`; bytes after it are ignored. Fails with
    /// [`BatchError::TooShort`] when `buf` ends inside the batch. Does not check the CRC.
    pub fn parse(buf: &'a [u8]) -> Result<Batch<'a>, BatchError> {
        let header = BatchHeader::parse(buf)?;
        let size = header.size();
        let bytes = buf.get(..size).ok_or(BatchError::TooShort {
            needed: size,
            available: buf.len(),
        })?;
        Ok(Batch { header, bytes })
    }

    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The batch's bytes, header included.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// CRC-32C of bytes 21..end, what the `crc` field should hold.
    pub fn computed_crc(&self) -> u32 {
        super::crc::crc32c(&self.bytes[ATTRIBUTES_AT..])
    }

    pub fn verify_crc(&self) -> Result<(), BatchError> {
        let computed = self.computed_crc();
        if computed == self.header.crc {
            Ok(())
        } else {
            Err(BatchError::CrcMismatch {
                stored: self.header.crc,
                computed,
            })
        }
    }

    /// CRC plus structure. For uncompressed batches every record is decoded: the records must
    /// fill the batch exactly, number `recordsCount`, have strictly increasing offset deltas
    /// in `[0, lastOffsetDelta]` and consistent lengths. Compressed batches get the CRC and
    /// header checks only — partlog does not decompress. Does not allocate.
    pub fn validate(&self) -> Result<(), BatchError> {
        self.validate_for_max_timestamp().map(|_| ())
    }

    /// [`Batch::validate`], returning the largest timestamp of the records as Kafka's
    /// `LogValidator` computes it for the header: the largest of `baseTimestamp` plus each
    /// record's delta, -1 when there is none above that. A compressed batch's header says
    /// it: partlog does not decompress.
    fn validate_for_max_timestamp(&self) -> Result<i64, BatchError> {
        if self.header.compression() != Compression::None {
            return self.verify_crc().map(|()| self.header.max_timestamp);
        }
        if let Some(walked) = super::walk::walk_and_crc(&self.header, self.bytes) {
            return match walked.crc == self.header.crc {
                true => Ok(walked.max_timestamp),
                false => Err(BatchError::CrcMismatch {
                    stored: self.header.crc,
                    computed: walked.crc,
                }),
            };
        }
        // Walk again, slowly, for the error that names the record and the field (after the
        // CRC's, which comes first).
        self.verify_crc()?;
        let base = self.header.base_timestamp;
        let mut max_timestamp = super::NO_TIMESTAMP;
        for record in self.records()? {
            let timestamp = base.wrapping_add(record?.timestamp_delta);
            max_timestamp = max_timestamp.max(timestamp);
        }
        Ok(max_timestamp)
    }

    /// What a leader checks before it assigns offsets (Kafka's `LogValidator`): everything
    /// [`Batch::validate`] checks, plus at least one record and `lastOffsetDelta =
    /// recordsCount - 1`. With the record walk's rule that deltas increase strictly within
    /// `[0, lastOffsetDelta]`, that makes the deltas exactly `0..recordsCount`: the batch
    /// claims no offsets its records do not hold. (Stricter than Kafka, which assigns
    /// offsets by position and never reads a record's delta; every Kafka client writes
    /// them so.)
    ///
    /// A compressed batch gets the CRC and both header rules, but its records' own deltas
    /// are not seen: partlog does not decompress.
    ///
    /// Returns the largest timestamp of the records, which a leader writes as the batch's
    /// max timestamp when it has `CreateTime` (see [`set_create_time`]); for a compressed
    /// batch, the header's own.
    pub fn validate_for_leader(&self) -> Result<i64, BatchError> {
        let header = &self.header;
        if header.records_count == 0 {
            return Err(BatchError::Empty);
        }
        if i64::from(header.last_offset_delta) != i64::from(header.records_count) - 1 {
            return Err(BatchError::OffsetCountMismatch {
                last_offset_delta: header.last_offset_delta,
                records_count: header.records_count,
            });
        }
        self.validate_for_max_timestamp()
    }

    /// Iterates the records of an uncompressed batch; [`BatchError::Compressed`] otherwise.
    pub fn records(&self) -> Result<RecordIter<'a>, BatchError> {
        match self.header.compression() {
            Compression::None => Ok(RecordIter::new(&self.header, &self.bytes[HEADER_LEN..])),
            compression => Err(BatchError::Compressed { compression }),
        }
    }

    /// The batch's records while each is usual (short varints, no headers), in a tight
    /// loop for a reader of many such batches; [`UsualRecords::rest`] then reads on the
    /// general way. [`BatchError::Compressed`] for a compressed batch.
    pub fn usual_records(&self) -> Result<UsualRecords<'a>, BatchError> {
        self.records().map(RecordIter::usual)
    }
}

/// Iterates consecutive batches in a buffer (see [`batches`]). Yields `Err` once, then
/// `None`, on a malformed or incomplete batch; [`BatchIter::position`] then tells where the
/// valid prefix ends. It does not check CRCs — call [`Batch::validate`] on each batch.
#[derive(Clone, Debug)]
pub struct BatchIter<'a> {
    buf: &'a [u8],
    position: usize,
    failed: bool,
}

/// Iterates the batches of `buf`, which must start at a batch boundary.
pub fn batches(buf: &[u8]) -> BatchIter<'_> {
    BatchIter {
        buf,
        position: 0,
        failed: false,
    }
}

impl BatchIter<'_> {
    /// Byte position in the buffer of the next batch (after an error: of the bad one).
    pub fn position(&self) -> usize {
        self.position
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<Batch<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.buf.get(self.position..).unwrap_or_default();
        if self.failed || rest.is_empty() {
            return None;
        }
        match Batch::parse(rest) {
            Ok(batch) => {
                self.position += batch.as_bytes().len();
                Some(Ok(batch))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Writes `base_offset` into the batch at the start of `batch`. The field is outside the CRC.
/// Does nothing when `batch` is shorter than 12 bytes (debug builds assert).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    write_be(batch, BASE_OFFSET_AT, &base_offset.to_be_bytes());
}

/// Writes `partitionLeaderEpoch` into the batch at the start of `batch`; outside the CRC.
/// Does nothing when `batch` is shorter than 16 bytes (debug builds assert).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    write_be(batch, LEADER_EPOCH_AT, &epoch.to_be_bytes());
}

/// Stamps a broker's append time as Kafka's `LogValidator` does: sets the LogAppendTime
/// attribute bit and `maxTimestamp`, then recomputes the CRC. Does nothing unless `batch`
/// starts with a whole batch whose header parses (debug builds assert).
pub fn set_log_append_time(batch: &mut [u8], timestamp_ms: i64) {
    let ok = BatchHeader::parse(batch).is_ok_and(|h| h.size() <= batch.len());
    debug_assert!(ok, "set_log_append_time needs a whole batch");
    if !ok {
        return;
    }
    write_attributes(batch, TimestampType::LogAppendTime);
    write_be(batch, MAX_TIMESTAMP_AT, &timestamp_ms.to_be_bytes());
    recompute_crc(batch);
}

/// Attribute bits Kafka's `DefaultRecordBatch.computeAttributes` writes: compression
/// (0-2), timestamp type (3), transactional (4), control (5), delete horizon (6).
const KNOWN_ATTRIBUTES: i16 = 0x7F;

/// Rewrites the attributes of the batch at the start of `batch` as Kafka's header rewrite
/// (`setMaxTimestamp`) does: from the bits it knows, with `timestamp_type`; any other bit
/// a producer set is dropped. The caller recomputes the CRC.
fn write_attributes(batch: &mut [u8], timestamp_type: TimestampType) {
    let Some(&[hi, lo]) = batch.get(ATTRIBUTES_AT..ATTRIBUTES_AT + 2) else {
        return;
    };
    let kept = i16::from_be_bytes([hi, lo]) & KNOWN_ATTRIBUTES & !TIMESTAMP_TYPE_BIT;
    let attributes = match timestamp_type {
        TimestampType::LogAppendTime => kept | TIMESTAMP_TYPE_BIT,
        TimestampType::CreateTime => kept,
    };
    write_be(batch, ATTRIBUTES_AT, &attributes.to_be_bytes());
}

/// Marks the batch at the start of `batch` `CreateTime` (clears the timestamp type bit),
/// sets its max timestamp to `max_timestamp` (its records' largest) and recomputes its
/// CRC once (Kafka's `setMaxTimestamp(CREATE_TIME, ...)`). Does nothing when `batch` does
/// not hold the whole batch (debug builds assert).
pub fn set_create_time(batch: &mut [u8], max_timestamp: i64) {
    let ok = BatchHeader::parse(batch).is_ok_and(|h| h.size() <= batch.len());
    debug_assert!(ok, "set_create_time needs a whole batch");
    if !ok {
        return;
    }
    write_attributes(batch, TimestampType::CreateTime);
    write_be(batch, MAX_TIMESTAMP_AT, &max_timestamp.to_be_bytes());
    recompute_crc(batch);
}

/// Sets the max timestamp of the whole batch at the start of `batch`, keeping its
/// timestamp type, and recomputes its CRC (Kafka's `DefaultRecordBatch.setMaxTimestamp`).
/// Does nothing when `batch` does not hold the whole batch (debug builds assert): the
/// field is not written unless the CRC can be recomputed over it.
pub fn set_max_timestamp(batch: &mut [u8], timestamp_ms: i64) {
    let ok = batch_size(batch).is_ok_and(|s| s <= batch.len());
    debug_assert!(ok, "set_max_timestamp needs a whole batch");
    if !ok {
        return;
    }
    write_be(batch, MAX_TIMESTAMP_AT, &timestamp_ms.to_be_bytes());
    recompute_crc(batch);
}

/// Recomputes and stores the CRC of the batch at the start of `batch` after a change to a
/// field at or after `attributes`. The batch extent comes from its `batchLength`; does
/// nothing when that is invalid or runs past `batch` (debug builds assert).
pub fn recompute_crc(batch: &mut [u8]) {
    let size = batch_size(batch).ok().filter(|&s| s <= batch.len());
    debug_assert!(size.is_some(), "recompute_crc needs a whole batch");
    if let Some(size) = size {
        let crc = super::crc::crc32c(&batch[ATTRIBUTES_AT..size]);
        write_be(batch, CRC_AT, &crc.to_be_bytes());
    }
}

fn write_be(batch: &mut [u8], at: usize, bytes: &[u8]) {
    let target = batch.get_mut(at..at + bytes.len());
    debug_assert!(target.is_some(), "batch too short to patch byte {at}");
    if let Some(target) = target {
        target.copy_from_slice(bytes);
    }
}

/// `buf` must hold `at + 4` bytes; callers slice the header first.
fn read_i32(buf: &[u8], at: usize) -> i32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    i32::from_be_bytes(b)
}

/// `buf` must hold `at + 8` bytes; callers slice the header first.
fn read_i64(buf: &[u8], at: usize) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    i64::from_be_bytes(b)
}

#[cfg(test)]
mod tests;
