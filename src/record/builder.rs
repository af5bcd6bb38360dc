//! Encoding RecordBatch v2 batches.

use super::batch::ATTRIBUTES_AT;
use super::varint::{encode_varint, encode_varlong, varint_len, varlong_len};
use super::{BatchError, TimestampType, HEADER_LEN, LOG_OVERHEAD, MAGIC_V2};
use super::{NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE};

/// Largest `batchLength` (and record length, key length, ...) the format can express.
const MAX_LENGTH: usize = i32::MAX as usize;

/// Builds uncompressed RecordBatch v2 batches (layout on [`BatchHeader`](super::BatchHeader)).
///
/// Records are encoded as they are appended into a buffer the builder keeps, so once it and
/// the output `Vec` have grown to their working size nothing allocates. The batch's
/// `baseTimestamp` is the first record's timestamp, `maxTimestamp` the largest, offset deltas
/// run `0..n`, and `lastOffsetDelta` is `n - 1`.
///
/// Oversized input (a key, value, header, record or batch beyond `i32::MAX` bytes, or more
/// than `i32::MAX` records) is not appended; the builder remembers the failure and the next
/// [`build_into`](Self::build_into) returns [`BatchError::TooLarge`].
///
/// ```
/// use partlog::record::{Batch, BatchBuilder};
/// # fn main() -> Result<(), partlog::record::BatchError> {
/// let mut builder = BatchBuilder::new();
/// builder.base_offset(42).append(1_000, Some(b"k"), Some(b"v"), &[(b"h", None)]);
/// let bytes = builder.build()?;
/// let batch = Batch::parse(&bytes)?;
/// batch.validate()?;
/// assert_eq!(batch.header().last_offset(), 42);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct BatchBuilder {
    base_offset: i64,
    partition_leader_epoch: i32,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    transactional: bool,
    control: bool,
    timestamp_type: TimestampType,
    records: Vec<u8>,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    too_large: bool,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchBuilder {
    /// Base offset 0, no leader epoch (-1), no producer (id, epoch, sequence -1),
    /// CreateTime, neither transactional nor control.
    pub fn new() -> Self {
        BatchBuilder {
            base_offset: 0,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            transactional: false,
            control: false,
            timestamp_type: TimestampType::CreateTime,
            records: Vec::new(),
            count: 0,
            base_timestamp: 0,
            max_timestamp: 0,
            too_large: false,
        }
    }

    pub fn base_offset(&mut self, offset: i64) -> &mut Self {
        self.base_offset = offset;
        self
    }

    pub fn partition_leader_epoch(&mut self, epoch: i32) -> &mut Self {
        self.partition_leader_epoch = epoch;
        self
    }

    pub fn producer(&mut self, id: i64, epoch: i16, base_sequence: i32) -> &mut Self {
        self.producer_id = id;
        self.producer_epoch = epoch;
        self.base_sequence = base_sequence;
        self
    }

    pub fn transactional(&mut self, yes: bool) -> &mut Self {
        self.transactional = yes;
        self
    }

    /// Marks the batch as holding control records; the caller supplies their key/value.
    pub fn control(&mut self, yes: bool) -> &mut Self {
        self.control = yes;
        self
    }

    /// Sets the timestamp type bit. Record timestamps are stored as given either way.
    pub fn timestamp_type(&mut self, t: TimestampType) -> &mut Self {
        self.timestamp_type = t;
        self
    }

    /// Appends one record with the next offset delta.
    pub fn append(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&[u8], Option<&[u8]>)],
    ) -> &mut Self {
        let base_timestamp = if self.count == 0 {
            timestamp_ms
        } else {
            self.base_timestamp
        };
        let timestamp_delta = timestamp_ms.wrapping_sub(base_timestamp);
        let Some(body_len) = body_len(timestamp_delta, self.count, key, value, headers) else {
            self.too_large = true;
            return self;
        };
        let record_len = varint_len(body_len as i32) + body_len;
        let fits = HEADER_LEN - LOG_OVERHEAD + self.records.len() + record_len <= MAX_LENGTH;
        if self.too_large || !fits || self.count == i32::MAX {
            self.too_large = true;
            return self;
        }
        self.encode_record(body_len as i32, timestamp_delta, key, value, headers);
        if self.count == 0 || timestamp_ms > self.max_timestamp {
            self.max_timestamp = timestamp_ms;
        }
        self.base_timestamp = base_timestamp;
        self.count += 1;
        self
    }

    /// `body_len` was computed by [`body_len`], so every length fits in an i32.
    fn encode_record(
        &mut self,
        body_len: i32,
        timestamp_delta: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&[u8], Option<&[u8]>)],
    ) {
        let out = &mut self.records;
        let start = out.len();
        encode_varint(body_len, out);
        out.push(0); // record attributes: unused
        encode_varlong(timestamp_delta, out);
        encode_varint(self.count, out);
        put_nullable(key, out);
        put_nullable(value, out);
        encode_varint(headers.len() as i32, out);
        for (k, v) in headers {
            encode_varint(k.len() as i32, out);
            out.extend_from_slice(k);
            put_nullable(*v, out);
        }
        debug_assert_eq!(out.len() - start, varint_len(body_len) + body_len as usize);
    }

    /// Records appended since the last build.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes the batch would take if built now, header included.
    pub fn size_bytes(&self) -> usize {
        HEADER_LEN + self.records.len()
    }

    /// A transaction marker, the control batch that ends `producer_id`'s open transaction
    /// as Kafka's coordinator writes it: COMMIT when `commits`, else ABORT. Its one record's
    /// key is a version (0) and the marker's type (0 abort, 1 commit), each an int16; its
    /// value a version (0) and the coordinator's epoch.
    pub fn transaction_marker(
        producer_id: i64,
        producer_epoch: i16,
        commits: bool,
        coordinator_epoch: i32,
        timestamp_ms: i64,
    ) -> Result<Vec<u8>, BatchError> {
        let key = [0, 0, 0, u8::from(commits)];
        let mut value = [0u8; 6];
        value[2..].copy_from_slice(&coordinator_epoch.to_be_bytes());
        BatchBuilder::new()
            .transactional(true)
            .control(true)
            .producer(producer_id, producer_epoch, NO_SEQUENCE)
            .append(timestamp_ms, Some(&key), Some(&value), &[])
            .build()
    }

    /// Appends one finished batch (CRC set) to `out`, then forgets the records and keeps the
    /// settings. Allocates only if `out` lacks capacity. An empty builder appends nothing and
    /// returns [`BatchError::Empty`]; after oversized input it appends nothing, returns
    /// [`BatchError::TooLarge`] and forgets the records too.
    pub fn build_into(&mut self, out: &mut Vec<u8>) -> Result<(), BatchError> {
        if self.too_large {
            self.reset();
            return Err(BatchError::TooLarge);
        }
        if self.count == 0 {
            return Err(BatchError::Empty);
        }
        let start = out.len();
        out.reserve(self.size_bytes());
        self.put_header(out);
        out.extend_from_slice(&self.records);
        let crc = super::crc::crc32c(&out[start + ATTRIBUTES_AT..]);
        out[start + 17..start + ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
        debug_assert_eq!(out.len() - start, self.size_bytes());
        self.reset();
        Ok(())
    }

    /// [`build_into`](Self::build_into) a new `Vec`.
    pub fn build(&mut self) -> Result<Vec<u8>, BatchError> {
        let mut out = Vec::with_capacity(self.size_bytes());
        self.build_into(&mut out)?;
        Ok(out)
    }

    fn reset(&mut self) {
        self.records.clear();
        self.count = 0;
        self.too_large = false;
    }

    /// The header with a zero CRC; `build_into` fills it in.
    fn put_header(&self, out: &mut Vec<u8>) {
        let batch_length = (self.size_bytes() - LOG_OVERHEAD) as i32;
        out.extend_from_slice(&self.base_offset.to_be_bytes());
        out.extend_from_slice(&batch_length.to_be_bytes());
        out.extend_from_slice(&self.partition_leader_epoch.to_be_bytes());
        out.push(MAGIC_V2 as u8);
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.attributes().to_be_bytes());
        out.extend_from_slice(&(self.count - 1).to_be_bytes());
        out.extend_from_slice(&self.base_timestamp.to_be_bytes());
        out.extend_from_slice(&self.max_timestamp.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.producer_epoch.to_be_bytes());
        out.extend_from_slice(&self.base_sequence.to_be_bytes());
        out.extend_from_slice(&self.count.to_be_bytes());
    }

    fn attributes(&self) -> i16 {
        let mut a = 0; // compression: none
        if self.timestamp_type == TimestampType::LogAppendTime {
            a |= 1 << 3;
        }
        if self.transactional {
            a |= 1 << 4;
        }
        if self.control {
            a |= 1 << 5;
        }
        a
    }
}

/// Encoded size of a record after its length prefix, or `None` if some part of it does not
/// fit the format's i32 lengths.
fn body_len(
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[(&[u8], Option<&[u8]>)],
) -> Option<usize> {
    let mut len = 1 + varlong_len(timestamp_delta) + varint_len(offset_delta);
    len = len.checked_add(nullable_len(key)?)?;
    len = len.checked_add(nullable_len(value)?)?;
    len = len.checked_add(varint_len(i32::try_from(headers.len()).ok()?))?;
    for (k, v) in headers {
        len = len.checked_add(nullable_len(Some(k))?)?;
        len = len.checked_add(nullable_len(*v)?)?;
    }
    (len <= MAX_LENGTH).then_some(len)
}

fn nullable_len(bytes: Option<&[u8]>) -> Option<usize> {
    match bytes {
        None => Some(varint_len(-1)),
        Some(b) => Some(varint_len(i32::try_from(b.len()).ok()?) + b.len()),
    }
}

/// `bytes.len()` was checked by [`nullable_len`].
fn put_nullable(bytes: Option<&[u8]>, out: &mut Vec<u8>) {
    match bytes {
        None => encode_varint(-1, out),
        Some(b) => {
            encode_varint(b.len() as i32, out);
            out.extend_from_slice(b);
        }
    }
}

#[cfg(test)]
mod tests;
