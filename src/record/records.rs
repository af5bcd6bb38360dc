//! Records inside an uncompressed batch, decoded without copying or allocating.

use super::varint::{decode_varint, decode_varlong, unzigzag};
use super::walk::short_unsigned;
use super::{BatchError, BatchHeader, RecordFault, TimestampType};

/// One record of a RecordBatch v2, borrowing its key, value and headers from the batch.
///
/// Layout (varints are zigzag, see [`varint`](super::varint)):
///
/// ```text
/// length          varint  bytes of the record after this field
/// attributes      i8      unused by Kafka, kept as read
/// timestampDelta  varlong timestamp - baseTimestamp
/// offsetDelta     varint  offset - baseOffset
/// keyLength       varint  -1 = null key
/// key             bytes
/// valueLength     varint  -1 = null value (a tombstone in compacted topics)
/// value           bytes
/// headersCount    varint
/// headers         headersCount times:
///     headerKeyLength   varint  >= 0 (a string, never null)
///     headerKey         bytes
///     headerValueLength varint  -1 = null
///     headerValue       bytes
/// ```
///
/// `offset` and `timestamp` are absolute, computed by the iterator from the batch header:
/// `offset = baseOffset + offsetDelta`; `timestamp = baseTimestamp + timestampDelta`, except
/// in a LogAppendTime batch where, as in Kafka, every record's timestamp is `maxTimestamp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub attributes: i8,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// Absolute offset of the record.
    pub offset: i64,
    /// Absolute timestamp of the record (see the type's doc for LogAppendTime).
    pub timestamp: i64,
    index: i32,
    headers_count: i32,
    headers: &'a [u8],
}

impl<'a> Record<'a> {
    /// `base_offset + offset_delta`, for callers that hold a different base (e.g. a batch
    /// whose base offset is being reassigned).
    pub fn offset_from(&self, base_offset: i64) -> i64 {
        base_offset.wrapping_add(i64::from(self.offset_delta))
    }

    /// The headers as stored (their count, then the encoded pairs), for copying a record
    /// into another batch unchanged.
    pub fn raw_headers(&self) -> (i32, &'a [u8]) {
        (self.headers_count, self.headers)
    }

    /// Number of headers.
    pub fn headers_count(&self) -> usize {
        self.headers_count.max(0) as usize
    }

    /// Iterates `(key, value)` header pairs. The iterator yields `Result` for symmetry with
    /// the other readers, but a record that came out of a [`RecordIter`] has had its headers
    /// checked already, so it never yields `Err`.
    pub fn headers(&self) -> HeaderIter<'a> {
        HeaderIter {
            cursor: Cursor::new(self.headers),
            remaining: self.headers_count,
            record_index: self.index,
        }
    }
}

/// Iterates a record's headers; see [`Record::headers`].
#[derive(Clone, Debug)]
pub struct HeaderIter<'a> {
    cursor: Cursor<'a>,
    remaining: i32,
    record_index: i32,
}

type Header<'a> = (&'a [u8], Option<&'a [u8]>);

impl<'a> Iterator for HeaderIter<'a> {
    type Item = Result<Header<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining <= 0 {
            return None;
        }
        self.remaining -= 1;
        let header = read_header(&mut self.cursor);
        if header.is_err() {
            self.remaining = 0;
        }
        let index = self.record_index;
        Some(header.map_err(|fault| BatchError::MalformedRecord { index, fault }))
    }
}

fn read_header<'a>(c: &mut Cursor<'a>) -> Result<Header<'a>, RecordFault> {
    let key = c.bytes("header key length", false)?;
    let value = c.bytes("header value length", true)?;
    // `bytes` only returns None for a nullable field.
    Ok((key.unwrap_or_default(), value))
}

/// Iterates the records of an uncompressed batch (from [`Batch::records`]).
///
/// Checks as it goes: each record's length prefix against the batch and its fields, offset
/// deltas strictly increasing within `[0, lastOffsetDelta]`, headers well formed. After
/// `recordsCount` records it yields [`BatchError::TrailingBytes`] if bytes remain; if the
/// bytes end first, [`BatchError::RecordCountMismatch`]. After any `Err` it yields `None`.
///
/// [`Batch::records`]: super::Batch::records
#[derive(Clone, Debug)]
pub struct RecordIter<'a> {
    rest: &'a [u8],
    base_offset: i64,
    base_timestamp: i64,
    log_append_time: Option<i64>,
    last_offset_delta: i32,
    records_count: i32,
    index: i32,
    previous_delta: Option<i32>,
    done: bool,
}

impl<'a> RecordIter<'a> {
    /// `records` is the batch after its 61-byte header.
    pub(crate) fn new(header: &BatchHeader, records: &'a [u8]) -> RecordIter<'a> {
        let log_append_time = match header.timestamp_type() {
            TimestampType::LogAppendTime => Some(header.max_timestamp),
            TimestampType::CreateTime => None,
        };
        RecordIter {
            rest: records,
            base_offset: header.base_offset,
            base_timestamp: header.base_timestamp,
            log_append_time,
            last_offset_delta: header.last_offset_delta,
            records_count: header.records_count,
            index: 0,
            previous_delta: None,
            done: false,
        }
    }

    fn fail(&mut self, e: BatchError) -> Option<Result<Record<'a>, BatchError>> {
        self.done = true;
        Some(Err(e))
    }

    fn next_record(&mut self) -> Result<Record<'a>, RecordFault> {
        let mut outer = Cursor::new(self.rest);
        let length = outer.varint("record length")?;
        let body = outer.take("record length", length)?;
        let record = self.parse_body(body, length)?;
        self.rest = outer.rest;
        Ok(record)
    }

    fn parse_body(&mut self, body: &'a [u8], length: i32) -> Result<Record<'a>, RecordFault> {
        let mut c = Cursor::new(body);
        let attributes = c.byte("attributes")? as i8;
        let timestamp_delta = c.varlong("timestamp delta")?;
        let offset_delta = c.varint("offset delta")?;
        self.check_offset_delta(offset_delta)?;
        let key = c.bytes("key length", true)?;
        let value = c.bytes("value length", true)?;
        let headers_count = c.varint("headers count")?;
        if headers_count < 0 {
            let field = "headers count";
            return Err(RecordFault::NegativeLength {
                field,
                length: headers_count,
            });
        }
        let headers_start = c.rest;
        // Each header takes at least two bytes, so this loop ends with the record's bytes.
        for _ in 0..headers_count {
            read_header(&mut c)?;
        }
        let rest = c.rest;
        if !rest.is_empty() {
            let actual = body.len() - rest.len();
            return Err(RecordFault::SizeMismatch {
                declared: length,
                actual,
            });
        }
        let head = (attributes, timestamp_delta, offset_delta);
        Ok(self.record(head, key, value, (headers_count, headers_start)))
    }

    /// The record of these fields (attributes, timestamp delta and offset delta first,
    /// headers count and bytes last), with its absolute offset and timestamp.
    #[inline(always)]
    fn record(
        &self,
        (attributes, timestamp_delta, offset_delta): (i8, i64, i32),
        key: Option<&'a [u8]>,
        value: Option<&'a [u8]>,
        (headers_count, headers): (i32, &'a [u8]),
    ) -> Record<'a> {
        let timestamp = match self.log_append_time {
            Some(t) => t,
            None => self.base_timestamp.wrapping_add(timestamp_delta),
        };
        Record {
            attributes,
            timestamp_delta,
            offset_delta,
            key,
            value,
            offset: self.base_offset.wrapping_add(i64::from(offset_delta)),
            timestamp,
            index: self.index,
            headers_count,
            headers,
        }
    }

    /// The usual record, read without the general path's per-field bookkeeping: one- or
    /// two-byte varints for the length, timestamp delta, offset delta and key and value
    /// lengths, and no headers. `None` for any other record, or a malformed one: the general
    /// path then reads it again and names what is wrong. Every check here is one the
    /// general path makes, so both accept the same records.
    #[inline(always)]
    fn usual_record(&mut self) -> Option<Record<'a>> {
        let rest = self.rest;
        let mut at = 0;
        let length = short_unsigned(rest, &mut at)?;
        if length & 1 == 1 {
            return None; // negative
        }
        let body = rest.get(at..at + (length >> 1) as usize)?;
        let attributes = *body.first()? as i8;
        // The headers count is the record's last byte when there are none: read where the
        // length says, not after the fields, so that the read does not wait for them.
        let headers_count = *body.last()?;
        let mut i = 1;
        let timestamp_delta = i64::from(unzigzag(short_unsigned(body, &mut i)?));
        let offset_delta = unzigzag(short_unsigned(body, &mut i)?);
        let in_order = self.previous_delta.is_none_or(|p| p < offset_delta);
        if !(0..=self.last_offset_delta).contains(&offset_delta) || !in_order {
            return None;
        }
        let key = short_bytes(body, &mut i)?;
        let value = short_bytes(body, &mut i)?;
        // No headers: one zero byte, the record's last.
        if i + 1 != body.len() || headers_count != 0 {
            return None;
        }
        self.previous_delta = Some(offset_delta);
        self.rest = &rest[at + body.len()..];
        let head = (attributes, timestamp_delta, offset_delta);
        Some(self.record(head, key, value, (0, &body[i..i])))
    }

    /// The records while each is usual (see `usual_record`), in a tight loop without the
    /// general path. Once it ends, [`UsualRecords::rest`] reads on the general way from
    /// the first record it did not take (and checks the batch's end). Only for a new
    /// iterator ([`super::Batch::usual_records`]), which has met no error yet.
    pub(super) fn usual(self) -> UsualRecords<'a> {
        UsualRecords { iter: self }
    }

    fn check_offset_delta(&mut self, offset_delta: i32) -> Result<(), RecordFault> {
        let last_offset_delta = self.last_offset_delta;
        if !(0..=last_offset_delta).contains(&offset_delta) {
            return Err(RecordFault::OffsetDeltaOutOfRange {
                offset_delta,
                last_offset_delta,
            });
        }
        if let Some(previous) = self.previous_delta {
            if offset_delta <= previous {
                return Err(RecordFault::OffsetDeltaOutOfOrder {
                    previous,
                    offset_delta,
                });
            }
        }
        self.previous_delta = Some(offset_delta);
        Ok(())
    }
}

/// The usual records of a batch, from [`super::Batch::usual_records`].
#[derive(Clone, Debug)]
pub struct UsualRecords<'a> {
    iter: RecordIter<'a>,
}

impl<'a> UsualRecords<'a> {
    /// The general iterator, at the first record not taken.
    pub fn rest(self) -> RecordIter<'a> {
        self.iter
    }
}

impl<'a> Iterator for UsualRecords<'a> {
    type Item = Record<'a>;

    #[inline(always)]
    fn next(&mut self) -> Option<Record<'a>> {
        // `done` is never set here: the usual path meets no error, and the iterator was
        // new.
        let iter = &mut self.iter;
        if iter.index >= iter.records_count {
            return None;
        }
        let record = iter.usual_record()?;
        iter.index += 1;
        Some(record)
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<Record<'a>, BatchError>;

    /// The usual record inline, where the caller's loop can drop what it does not use;
    /// everything else (any other record, the end, an error) out of line.
    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        if !self.done && self.index < self.records_count {
            if let Some(record) = self.usual_record() {
                self.index += 1;
                return Some(Ok(record));
            }
        }
        self.next_in_general()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done {
            return (0, Some(0));
        }
        // One more slot for a trailing error.
        let left = (self.records_count - self.index).max(0) as usize;
        (0, Some(left.saturating_add(1)))
    }
}

impl<'a> RecordIter<'a> {
    #[inline(never)]
    fn next_in_general(&mut self) -> Option<Result<Record<'a>, BatchError>> {
        if self.done {
            return None;
        }
        if self.index == self.records_count {
            self.done = true;
            if self.rest.is_empty() {
                return None;
            }
            return self.fail(BatchError::TrailingBytes {
                count: self.rest.len(),
            });
        }
        if self.rest.is_empty() {
            let (header, actual) = (self.records_count, self.index);
            return self.fail(BatchError::RecordCountMismatch { header, actual });
        }
        match self.next_record() {
            Ok(record) => {
                self.index += 1;
                Some(Ok(record))
            }
            Err(fault) => self.fail(BatchError::MalformedRecord {
                index: self.index,
                fault,
            }),
        }
    }
}

/// A nullable byte string with a short length at `*at` in `body`, moving `at` past it:
/// `Some(None)` for null, `None` for a longer length, a negative one other than -1, or one
/// past the end of `body`.
#[inline(always)]
pub(crate) fn short_bytes<'a>(body: &'a [u8], at: &mut usize) -> Option<Option<&'a [u8]>> {
    let raw = short_unsigned(body, at)?;
    if raw == 1 {
        return Some(None);
    }
    if raw & 1 == 1 {
        return None;
    }
    let bytes = body.get(*at..*at + (raw >> 1) as usize)?;
    *at += bytes.len();
    Some(Some(bytes))
}

/// A bounds-checked reader over one record's bytes; every error names the field.
#[derive(Clone, Debug)]
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn new(rest: &'a [u8]) -> Self {
        Cursor { rest }
    }

    fn byte(&mut self, field: &'static str) -> Result<u8, RecordFault> {
        let (&b, rest) = self
            .rest
            .split_first()
            .ok_or(RecordFault::LengthOutOfBounds {
                field,
                length: 1,
                available: 0,
            })?;
        self.rest = rest;
        Ok(b)
    }

    /// The next one or two bytes as a short unsigned varint, decoded inline (lengths and
    /// deltas of small records are); `None` for a longer or truncated one.
    #[inline(always)]
    fn short(&mut self) -> Option<u32> {
        let mut at = 0;
        let raw = short_unsigned(self.rest, &mut at)?;
        self.rest = &self.rest[at..];
        Some(raw)
    }

    #[inline(always)]
    fn varint(&mut self, field: &'static str) -> Result<i32, RecordFault> {
        if let Some(raw) = self.short() {
            return Ok(unzigzag(raw));
        }
        let (v, n) =
            decode_varint(self.rest).map_err(|error| RecordFault::Varint { field, error })?;
        self.rest = &self.rest[n..];
        Ok(v)
    }

    #[inline(always)]
    fn varlong(&mut self, field: &'static str) -> Result<i64, RecordFault> {
        if let Some(raw) = self.short() {
            return Ok(i64::from(raw >> 1) ^ -i64::from(raw & 1));
        }
        let (v, n) =
            decode_varlong(self.rest).map_err(|error| RecordFault::Varint { field, error })?;
        self.rest = &self.rest[n..];
        Ok(v)
    }

    /// `length` bytes; `length` must be non-negative and fit.
    #[inline(always)]
    fn take(&mut self, field: &'static str, length: i32) -> Result<&'a [u8], RecordFault> {
        if length < 0 {
            return Err(RecordFault::NegativeLength { field, length });
        }
        let available = self.rest.len();
        if length as usize > available {
            return Err(RecordFault::LengthOutOfBounds {
                field,
                length,
                available,
            });
        }
        let (taken, rest) = self.rest.split_at(length as usize);
        self.rest = rest;
        Ok(taken)
    }

    /// A length-prefixed byte string; a negative length means null when `nullable`: -1
    /// is what every writer writes, and Kafka's `DefaultRecord.readFrom` reads any
    /// negative key, value or header value length so (its leader takes such records).
    #[inline(always)]
    fn bytes(
        &mut self,
        field: &'static str,
        nullable: bool,
    ) -> Result<Option<&'a [u8]>, RecordFault> {
        let length = self.varint(field)?;
        if nullable && length < 0 {
            return Ok(None);
        }
        self.take(field, length).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::walk::walk_and_crc;
    use crate::record::HEADER_LEN;
    use crate::record::{Batch, BatchBuilder};

    fn batch_with(records: &[u8], count: i32, last_delta: i32) -> Vec<u8> {
        let mut b = BatchBuilder::new();
        b.append(0, None, Some(b"x"), &[]);
        let mut bytes = b.build().unwrap_or_default();
        bytes.truncate(crate::record::HEADER_LEN);
        bytes.extend_from_slice(records);
        let batch_length = (bytes.len() - crate::record::LOG_OVERHEAD) as i32;
        bytes[8..12].copy_from_slice(&batch_length.to_be_bytes());
        bytes[23..27].copy_from_slice(&last_delta.to_be_bytes());
        bytes[57..61].copy_from_slice(&count.to_be_bytes());
        crate::record::recompute_crc(&mut bytes);
        bytes
    }

    fn first_error(bytes: &[u8]) -> BatchError {
        let batch = Batch::parse(bytes).unwrap_or_else(|e| panic!("parse: {e}"));
        batch.verify_crc().unwrap_or_else(|e| panic!("crc: {e}"));
        match batch.validate() {
            Err(e) => e,
            Ok(()) => panic!("validate passed"),
        }
    }

    fn fault(bytes: &[u8]) -> RecordFault {
        match first_error(bytes) {
            BatchError::MalformedRecord { fault, .. } => fault,
            other => panic!("expected a malformed record, got {other}"),
        }
    }

    // A minimal record: length 6, attrs 0, ts 0, offset delta `d`, null key, null value, 0 headers.
    fn rec(d: u8) -> [u8; 7] {
        [12, 0, 0, d, 1, 1, 0]
    }

    #[test]
    fn hand_made_records_decode() {
        let mut raw = rec(0).to_vec();
        raw.extend_from_slice(&rec(4));
        let bytes = batch_with(&raw, 2, 2);
        let batch = Batch::parse(&bytes).unwrap_or_else(|e| panic!("{e}"));
        let got: Vec<_> = batch.records().into_iter().flatten().collect();
        assert_eq!(got.len(), 2);
        let second = got[1].as_ref().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (second.offset_delta, second.key, second.value),
            (2, None, None)
        );
        assert_eq!(second.offset_from(100), 102);
    }

    #[test]
    fn count_mismatch_trailing_bytes_and_order_are_detected() {
        let one = rec(0);
        assert_eq!(
            first_error(&batch_with(&one, 2, 1)),
            BatchError::RecordCountMismatch {
                header: 2,
                actual: 1
            }
        );
        assert_eq!(
            first_error(&batch_with(&[one, one].concat(), 1, 0)),
            BatchError::TrailingBytes { count: 7 }
        );
        let back = [rec(2), rec(2)].concat();
        assert_eq!(
            fault(&batch_with(&back, 2, 5)),
            RecordFault::OffsetDeltaOutOfOrder {
                previous: 1,
                offset_delta: 1
            }
        );
        assert_eq!(
            fault(&batch_with(&rec(6), 1, 2)),
            RecordFault::OffsetDeltaOutOfRange {
                offset_delta: 3,
                last_offset_delta: 2
            }
        );
    }

    #[test]
    fn bad_lengths_are_detected() {
        let mut r = rec(0);
        r[0] = 14; // claims 7 bytes, 6 follow
        assert!(matches!(
            fault(&batch_with(&r, 1, 0)),
            RecordFault::LengthOutOfBounds { .. }
        ));
        r[0] = 3; // -2
        assert_eq!(
            fault(&batch_with(&r, 1, 0)),
            RecordFault::NegativeLength {
                field: "record length",
                length: -2
            }
        );
        // A key length of -2 is a null key, as Kafka reads it.
        let mut r = rec(0);
        r[4] = 3;
        let bytes = batch_with(&r, 1, 0);
        let batch = Batch::parse(&bytes).unwrap();
        batch.validate().unwrap();
        let record = batch.records().unwrap().next().unwrap().unwrap();
        assert_eq!(record.key, None);
        let mut r = rec(0);
        r[5] = 20; // value length 10 in a 1-byte remainder
        assert!(matches!(
            fault(&batch_with(&r, 1, 0)),
            RecordFault::LengthOutOfBounds {
                field: "value length",
                length: 10,
                ..
            }
        ));
        let mut r = rec(0).to_vec();
        r[0] = 14; // 7 bytes declared, fields take 6
        r.push(0);
        assert_eq!(
            fault(&batch_with(&r, 1, 0)),
            RecordFault::SizeMismatch {
                declared: 7,
                actual: 6
            }
        );
        let mut r = rec(0);
        r[6] = 1; // headers count -1
        assert!(matches!(
            fault(&batch_with(&r, 1, 0)),
            RecordFault::NegativeLength { .. }
        ));
    }

    #[test]
    fn bad_varints_and_headers_are_detected() {
        let over = [0xffu8, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert!(matches!(
            fault(&batch_with(&over, 1, 0)),
            RecordFault::Varint { .. }
        ));
        let truncated_ts = [4u8, 0, 0x80];
        assert!(matches!(
            fault(&batch_with(&truncated_ts, 1, 0)),
            RecordFault::Varint {
                field: "timestamp delta",
                ..
            }
        ));
        // One header whose key is null: keys are strings and never null.
        let r = [16u8, 0, 0, 0, 1, 1, 2, 1, 1];
        assert_eq!(
            fault(&batch_with(&r, 1, 0)),
            RecordFault::NegativeLength {
                field: "header key length",
                length: -1
            }
        );
        // Header with key "k" and null value decodes.
        let r = [18u8, 0, 0, 0, 1, 1, 2, 2, b'k', 1];
        let bytes = batch_with(&r, 1, 0);
        let batch = Batch::parse(&bytes).unwrap_or_else(|e| panic!("{e}"));
        batch.validate().unwrap_or_else(|e| panic!("{e}"));
        let record = batch
            .records()
            .ok()
            .and_then(|mut i| i.next())
            .and_then(Result::ok);
        let record = record.unwrap_or_else(|| panic!("no record"));
        let headers: Vec<_> = record.headers().collect();
        assert_eq!(headers, vec![Ok((&b"k"[..], None))]);
        assert_eq!(record.headers_count(), 1);
    }

    #[test]
    fn iteration_stops_after_an_error() {
        let bytes = batch_with(&[rec(0), rec(0)].concat(), 2, 1);
        let batch = Batch::parse(&bytes).unwrap_or_else(|e| panic!("{e}"));
        let items: Vec<_> = batch.records().into_iter().flatten().collect();
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok() && items[1].is_err());
    }

    /// A random valid batch, then (seven times in eight) damaged at a random byte of its
    /// records, the CRC recomputed so that only a record walk can tell.
    fn random_batch(rng: &mut crate::io::sim::SimRng, case: usize) -> Vec<u8> {
        let mut builder = BatchBuilder::new();
        for _ in 0..rng.range_inclusive(1, 12) {
            let key = (rng.below(3) > 0).then(|| vec![b'k'; rng.below(20) as usize]);
            let value = (rng.below(5) > 0).then(|| vec![b'v'; rng.below(300) as usize]);
            let header_value = vec![b'h'; rng.below(4) as usize];
            let headers: Vec<(&[u8], Option<&[u8]>)> = (0..rng.below(3))
                .map(|_| (&b"hk"[..], Some(&header_value[..])))
                .collect();
            let ts = rng.below(1 << 40) as i64;
            builder.append(ts, key.as_deref(), value.as_deref(), &headers);
        }
        let mut batch = builder.build().unwrap();
        if case % 8 != 0 {
            let at = HEADER_LEN + rng.below((batch.len() - HEADER_LEN) as u64) as usize;
            batch[at] = rng.below(256) as u8;
            crate::record::recompute_crc(&mut batch);
        }
        batch
    }

    /// Calls `check` with 20,000 batches of [`random_batch`] from `seed`, raw and parsed.
    fn for_random_batches(seed: u64, mut check: impl FnMut(usize, &[u8], &Batch<'_>)) {
        let mut rng = crate::io::sim::SimRng::new(seed);
        for case in 0..20_000 {
            let batch = random_batch(&mut rng, case);
            check(case, &batch, &Batch::parse(&batch).unwrap());
        }
    }

    /// The fast record walk and the iterator agree on every batch: random valid batches,
    /// each then damaged at a random byte of its records.
    #[test]
    fn fast_walk_agrees_with_the_iterator() {
        for_random_batches(17, |case, batch, parsed| {
            let slow = parsed.records().unwrap().all(|r| r.is_ok());
            let fast = walk_and_crc(parsed.header(), batch);
            assert_eq!(fast.is_some(), slow, "case {case}: {batch:?}");
            if let Some(walked) = fast {
                assert_eq!(walked.crc, parsed.computed_crc(), "case {case}");
                let base = parsed.header().base_timestamp;
                let timestamps = parsed.records().unwrap().map(|r| {
                    let delta = r.unwrap().timestamp_delta;
                    base.wrapping_add(delta)
                });
                let max = timestamps.fold(-1, i64::max);
                assert_eq!(walked.max_timestamp, max, "case {case}");
            }
            assert_eq!(parsed.validate().is_ok(), slow, "case {case}");
        });
    }

    /// The iterator's inline path for the usual record reads every batch as its general
    /// path alone does: the same records, the same error at the same place.
    #[test]
    fn usual_records_read_the_same_as_the_general_path() {
        for_random_batches(29, |case, batch, parsed| {
            let with_usual: Vec<_> = parsed.records().unwrap().collect();
            let mut general = parsed.records().unwrap();
            let general: Vec<_> = std::iter::from_fn(|| general.next_in_general()).collect();
            assert_eq!(with_usual, general, "case {case}: {batch:?}");
        });
    }

    /// The usual records, then the rest the general way, read every batch as the
    /// iterator does: the same records, the same error at the same place.
    #[test]
    fn usual_records_then_the_rest_read_as_the_iterator_does() {
        let mut whole = 0;
        for_random_batches(31, |case, batch, parsed| {
            let general: Vec<_> = parsed.records().unwrap().collect();
            let mut usual = parsed.usual_records().unwrap();
            let mut both: Vec<_> = (&mut usual).map(Ok).collect();
            let taken = both.len();
            both.extend(usual.rest());
            assert_eq!(both, general, "case {case}: {batch:?}");
            if taken == general.len() && general.iter().all(Result::is_ok) {
                whole += 1;
            }
        });
        assert!(whole > 200, "{whole} batches read whole by the usual loop");
    }
}
