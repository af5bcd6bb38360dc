//! Kafka RecordBatch v2: parse, validate, iterate, build, patch in place.
//!
//! - [`batch_size`] hops from batch to batch reading only 17 bytes (recovery, reads).
//! - [`BatchHeader`] / [`Batch`] / [`batches`] read and validate batches without copying.
//! - [`Batch::records`] iterates records ([`Record`], [`RecordIter`]) without allocating.
//! - [`BatchBuilder`] encodes batches; [`set_base_offset`], [`set_partition_leader_epoch`],
//!   [`set_log_append_time`], [`set_create_time`], [`set_max_timestamp`] and
//!   [`recompute_crc`] patch a finished batch in place.
//!
//! The byte layouts are documented on [`BatchHeader`] (batch) and [`Record`] (record).
//! Compressed batches are checked at the header and CRC level only: partlog never
//! decompresses (the broker stores producer bytes as they came).

pub(crate) mod batch;
mod builder;
mod crc;
mod error;
mod fuzz;
mod legacy;
mod records;
pub mod varint;
mod walk;

pub use batch::{
    batch_size, batches, recompute_crc, set_base_offset, set_create_time, set_log_append_time,
    set_max_timestamp, set_partition_leader_epoch, Batch, BatchHeader, BatchIter, Compression,
    TimestampType,
};
pub use builder::BatchBuilder;
pub use crc::{crc32c, Crc32c};
pub use error::{BatchError, RecordFault};
pub use fuzz::fuzz_batch_decode;
pub use legacy::{encode_message_v1, legacy_message_size};
/// The pieces of the usual record's reading (one- or two-byte varints), for a reader
/// that walks records itself.
pub(crate) use records::short_bytes;
pub use records::{HeaderIter, Record, RecordIter, UsualRecords};
pub(crate) use varint::unzigzag;
pub(crate) use walk::short_unsigned;

/// Size of the RecordBatch v2 header, from `baseOffset` through `recordsCount`.
pub const HEADER_LEN: usize = 61;
/// Offset of the first header byte the batch CRC covers (`attributes`): base offset,
/// length, leader epoch, magic and the CRC itself lie before it.
pub const CRC_START: u64 = batch::ATTRIBUTES_AT as u64;

/// Bytes before `batchLength` counts: `baseOffset` (8) + `batchLength` (4).
pub const LOG_OVERHEAD: usize = 12;

/// The `magic` byte of a RecordBatch v2.
pub const MAGIC_V2: i8 = 2;

/// Smallest legal `batchLength`: a header with no records.
pub const MIN_BATCH_LENGTH: i32 = (HEADER_LEN - LOG_OVERHEAD) as i32;

/// Bytes [`batch_size`] needs to see: up to and including `magic`.
pub const BATCH_SIZE_PREFIX_LEN: usize = 17;

/// Kafka's "no partition leader epoch" / "no producer id" / "no sequence" marker.
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;
/// Producer id of a batch written without an idempotent producer.
pub const NO_PRODUCER_ID: i64 = -1;
/// Producer epoch of a batch written without an idempotent producer.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// Base sequence of a batch written without an idempotent producer.
pub const NO_SEQUENCE: i32 = -1;
/// Kafka's "no timestamp" (`RecordBatch.NO_TIMESTAMP`).
pub const NO_TIMESTAMP: i64 = -1;

const _: () = assert!(LOG_OVERHEAD < BATCH_SIZE_PREFIX_LEN && BATCH_SIZE_PREFIX_LEN < HEADER_LEN);
const _: () = assert!(MIN_BATCH_LENGTH == 49);
