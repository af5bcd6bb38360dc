//! Why bytes are not a valid RecordBatch v2.

use std::fmt;

use super::varint::VarintError;
use super::Compression;

/// Why a batch is invalid (or, for [`BatchError::Empty`] / [`BatchError::TooLarge`], why a
/// [`BatchBuilder`](super::BatchBuilder) cannot produce one).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchError {
    /// The buffer ends before the header or the batch does.
    TooShort { needed: usize, available: usize },
    /// The magic byte is not 2 (legacy message sets and unknown versions land here).
    WrongMagic { magic: i8 },
    /// `batchLength` is negative or smaller than a header without records.
    InvalidBatchLength { batch_length: i32 },
    /// The stored CRC-32C does not match the bytes from `attributes` to the end of the batch.
    CrcMismatch { stored: u32, computed: u32 },
    /// Attribute bits 0-2 name a codec Kafka does not define (5, 6, 7).
    UnsupportedCompression { codec: u8 },
    /// `lastOffsetDelta` is negative.
    InvalidLastOffsetDelta { last_offset_delta: i32 },
    /// `recordsCount` is negative.
    InvalidRecordsCount { records_count: i32 },
    /// `lastOffsetDelta` is not `recordsCount - 1`: the offsets the header claims do not
    /// match the records it holds. Refused by a leader append (Kafka's `LogValidator`).
    OffsetCountMismatch {
        last_offset_delta: i32,
        records_count: i32,
    },
    /// `baseOffset + lastOffsetDelta + 1` does not fit an `i64`.
    OffsetOverflow {
        base_offset: i64,
        last_offset_delta: i32,
    },
    /// The batch bytes end after `actual` records although the header announced `header`.
    RecordCountMismatch { header: i32, actual: i32 },
    /// Record number `index` (0-based) inside the batch cannot be decoded.
    MalformedRecord { index: i32, fault: RecordFault },
    /// `count` bytes remain in the batch after its `recordsCount` records.
    TrailingBytes { count: usize },
    /// Records of a compressed batch cannot be iterated without decompressing.
    Compressed { compression: Compression },
    /// A builder was asked to build a batch without records.
    Empty,
    /// A builder was given more than a batch can hold (`i32::MAX` bytes or records).
    TooLarge,
}

/// What is wrong with one record inside a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordFault {
    /// A varint field (`field` names it) is truncated or overflows.
    Varint {
        field: &'static str,
        error: VarintError,
    },
    /// A length field points past the end of the record (or the record past the batch).
    LengthOutOfBounds {
        field: &'static str,
        length: i32,
        available: usize,
    },
    /// A length field is negative (and not the `-1` that marks null where null is allowed).
    NegativeLength { field: &'static str, length: i32 },
    /// The record's fields take `actual` bytes but its length prefix says `declared`.
    SizeMismatch { declared: i32, actual: usize },
    /// The offset delta does not increase strictly from the previous record's.
    OffsetDeltaOutOfOrder { previous: i32, offset_delta: i32 },
    /// The offset delta is negative or beyond the batch's `lastOffsetDelta`.
    OffsetDeltaOutOfRange {
        offset_delta: i32,
        last_offset_delta: i32,
    },
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::TooShort { needed, available } => {
                write!(f, "need {needed} bytes but only {available} are available")
            }
            BatchError::WrongMagic { magic } => {
                write!(f, "magic byte is {magic}, expected 2 (RecordBatch v2)")
            }
            BatchError::InvalidBatchLength { batch_length } => {
                write!(f, "batch length {batch_length} is below the minimum of 49")
            }
            BatchError::CrcMismatch { stored, computed } => write!(
                f,
                "CRC-32C mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            BatchError::UnsupportedCompression { codec } => {
                write!(f, "unsupported compression codec {codec}")
            }
            BatchError::InvalidLastOffsetDelta { last_offset_delta } => {
                write!(f, "last offset delta {last_offset_delta} is negative")
            }
            BatchError::InvalidRecordsCount { records_count } => {
                write!(f, "records count {records_count} is negative")
            }
            BatchError::OffsetCountMismatch {
                last_offset_delta,
                records_count,
            } => write!(
                f,
                "last offset delta {last_offset_delta} does not match {records_count} records \
                 (it must be the record count minus one)"
            ),
            BatchError::OffsetOverflow {
                base_offset,
                last_offset_delta,
            } => write!(
                f,
                "base offset {base_offset} plus last offset delta {last_offset_delta} \
                 overflows a 64-bit offset"
            ),
            BatchError::RecordCountMismatch { header, actual } => write!(
                f,
                "header announces {header} records but the batch holds {actual}"
            ),
            BatchError::MalformedRecord { index, fault } => write!(f, "record {index}: {fault}"),
            BatchError::TrailingBytes { count } => {
                write!(f, "{count} bytes follow the last record inside the batch")
            }
            BatchError::Compressed { compression } => write!(
                f,
                "records of a {compression:?}-compressed batch cannot be read without decompressing"
            ),
            BatchError::Empty => f.write_str("a batch needs at least one record"),
            BatchError::TooLarge => {
                f.write_str("batch would exceed i32::MAX bytes or i32::MAX records")
            }
        }
    }
}

impl fmt::Display for RecordFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordFault::Varint { field, error } => write!(f, "{field}: {error}"),
            RecordFault::LengthOutOfBounds {
                field,
                length,
                available,
            } => write!(
                f,
                "{field} {length} exceeds the {available} bytes left in the record"
            ),
            RecordFault::NegativeLength { field, length } => {
                write!(f, "{field} {length} is negative")
            }
            RecordFault::SizeMismatch { declared, actual } => write!(
                f,
                "length prefix says {declared} bytes but the fields take {actual}"
            ),
            RecordFault::OffsetDeltaOutOfOrder {
                previous,
                offset_delta,
            } => write!(
                f,
                "offset delta {offset_delta} does not follow the previous {previous}"
            ),
            RecordFault::OffsetDeltaOutOfRange {
                offset_delta,
                last_offset_delta,
            } => write!(
                f,
                "offset delta {offset_delta} is outside [0, {last_offset_delta}]"
            ),
        }
    }
}

impl std::error::Error for BatchError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_numbers() {
        let e = BatchError::CrcMismatch {
            stored: 1,
            computed: 2,
        };
        assert_eq!(
            e.to_string(),
            "CRC-32C mismatch: stored 0x00000001, computed 0x00000002"
        );
        let e = BatchError::MalformedRecord {
            index: 3,
            fault: RecordFault::NegativeLength {
                field: "key length",
                length: -2,
            },
        };
        assert_eq!(e.to_string(), "record 3: key length -2 is negative");
        let wrapped = crate::Error::from(BatchError::Empty);
        assert!(wrapped.to_string().contains("at least one record"));
    }
}
