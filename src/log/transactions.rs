//! Transactions left open in a log.
//!
//! Kafka's transaction coordinator ends every transaction: it writes the producer's
//! COMMIT or ABORT marker to each partition the transaction wrote to, and aborts a
//! transaction that runs past its timeout. partlog has no coordinator (the broker that
//! embeds it has one), so a transaction whose marker never comes stays open in the log:
//! a producer that died in a cluster whose coordinator then lost its state, a log taken
//! over from such a cluster, a coordinator's bug. Such a transaction holds the last stable
//! offset at its start: a broker's `read_committed` consumers stop there, and partlog's
//! cleaner cleans nothing past it.
//!
//! [`Log::open_transactions`] finds them, and [`OpenTransaction::hanging`] says which
//! no producer can end any more; [`Log::abort_transaction`] ends one as Kafka's
//! `kafka-transactions.sh abort` has the partition's leader do: an ABORT marker appended
//! as a coordinator, and Kafka's aborted-transaction index entry for it (`partlog
//! transactions --abort` does the same on a log dir).

use std::collections::HashMap;

use super::{kafka_files, AppendInfo, AppendOrigin, Log};
use crate::error::{Error, Result};
use crate::record::BatchBuilder;
use crate::segment::scan::{scan_batches, ScanBuffers, Throttle, SCAN_BYTES};

/// A producer's transaction with batches in the log and no marker after them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenTransaction {
    pub producer_id: i64,
    /// The producer epoch of its last batch: what the marker that ends it carries.
    pub producer_epoch: i16,
    /// Offset of its first batch: where the last stable offset stays while it is open.
    pub first_offset: i64,
    /// Last offset of its last batch.
    pub last_offset: i64,
    /// Its batches in the log.
    pub batches: u64,
    /// The largest timestamp of its first batch: about when it began.
    pub first_timestamp_ms: i64,
    /// The largest timestamp of its last batch: when its producer last wrote to it
    /// (Kafka's `lastTimestamp` of the producer's state).
    pub last_timestamp_ms: i64,
    /// The coordinator epoch of the producer's last marker in the log, 0 if none: what an
    /// ABORT carries, as Kafka's tool takes it from the producer's state.
    pub coordinator_epoch: i32,
}

/// Kafka's `transaction.max.timeout.ms` default (15 minutes): no producer's transaction
/// lives longer, so one whose producer has not written for longer is left open for good.
pub const MAX_TRANSACTION_TIMEOUT_MS: i64 = 15 * 60 * 1000;

impl OpenTransaction {
    /// Whether the transaction hangs at `now_ms`: its producer has not written to it for
    /// longer than `max_transaction_timeout_ms`, the longest a transaction may last, so
    /// its coordinator would have ended it by now. Kafka's `kafka-transactions.sh
    /// find-hanging` takes this rule to choose its candidates. One that does not hang may
    /// still be ended by its producer: an ABORT appended meanwhile would take from
    /// `read_committed` consumers the records of a transaction that then commits.
    pub fn hanging(&self, now_ms: i64, max_transaction_timeout_ms: i64) -> bool {
        now_ms.saturating_sub(self.last_timestamp_ms) > max_transaction_timeout_ms
    }
}

impl Log {
    /// The transactions open at the log end, oldest first: every transactional batch from
    /// the log start on whose producer has no marker after it. Reads the whole log;
    /// `progress` gets the offset after each batch read.
    pub fn open_transactions(&self, mut progress: impl FnMut(i64)) -> Result<Vec<OpenTransaction>> {
        let end = self.log_end_offset();
        let slices = self.read_all(self.log_start_offset(), end)?;
        let mut open: HashMap<i64, OpenTransaction> = HashMap::new();
        let mut coordinator_epochs: HashMap<i64, i32> = HashMap::new();
        let (mut buffers, mut throttle) = (ScanBuffers::default(), Throttle::unlimited());
        scan_batches(&slices, SCAN_BYTES, &mut buffers, &mut throttle, |batch| {
            let header = batch.header();
            if header.base_offset >= end {
                return Ok(false);
            }
            progress(header.next_offset());
            if !header.is_transactional() {
                return Ok(true);
            }
            let producer_id = header.producer_id;
            if header.is_control() {
                if batch.marker_commits().is_some() {
                    open.remove(&producer_id);
                    if let Some(epoch) = batch.marker_coordinator_epoch() {
                        coordinator_epochs.insert(producer_id, epoch);
                    }
                }
                return Ok(true);
            }
            let txn = open.entry(producer_id).or_insert(OpenTransaction {
                producer_id,
                producer_epoch: header.producer_epoch,
                first_offset: header.base_offset,
                last_offset: header.last_offset(),
                batches: 0,
                first_timestamp_ms: header.max_timestamp,
                last_timestamp_ms: header.max_timestamp,
                // Its producer's markers all came before it.
                coordinator_epoch: coordinator_epochs.get(&producer_id).copied().unwrap_or(0),
            });
            txn.producer_epoch = header.producer_epoch;
            txn.last_offset = header.last_offset();
            txn.last_timestamp_ms = header.max_timestamp;
            txn.batches += 1;
            Ok(true)
        })?;
        let mut open: Vec<OpenTransaction> = open.into_values().collect();
        open.sort_by_key(|txn| txn.first_offset);
        Ok(open)
    }

    /// Ends producer `producer_id`'s transaction, one of `open` (what
    /// [`Log::open_transactions`] found at the log end), with an ABORT marker appended as a
    /// coordinator in `leader_epoch` at `now_ms`, with the transaction's producer epoch
    /// and the producer's last coordinator epoch; and adds Kafka's entry for it to the
    /// transaction index of the marker's segment, as Kafka's leader does on the marker's
    /// append (a Kafka broker that takes the dir back after a clean shutdown trusts that
    /// index for its `read_committed` fetches). The entry's last stable offset is the
    /// first offset of the oldest other transaction still open, else the offset after the
    /// marker (Kafka's `ProducerStateManager.lastStableOffset`). The entry is made durable
    /// before the marker is written, and the marker after: a crash in between leaves the
    /// entry past the log end, which the next open cuts (see [`kafka_files`]), where the
    /// other order could leave the marker without its entry. Call it with nothing appended
    /// since `open` was read: the caller holds the log alone, as the CLI does.
    pub fn abort_transaction(
        &self,
        open: &[OpenTransaction],
        producer_id: i64,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo> {
        let txn = open
            .iter()
            .find(|t| t.producer_id == producer_id)
            .ok_or_else(|| {
                Error::InvalidRequest(format!("producer {producer_id} has no open transaction"))
            })?;
        let mut marker = BatchBuilder::transaction_marker(
            producer_id,
            txn.producer_epoch,
            false,
            txn.coordinator_epoch,
            now_ms,
        )?;
        let origin = AppendOrigin::Coordinator;
        let info =
            self.append_as_leader_then(origin, &mut marker, leader_epoch, |segment, info| {
                let marker_offset = info.first_offset;
                let lso = open
                    .iter()
                    .filter(|t| t.producer_id != producer_id)
                    .map(|t| t.first_offset)
                    .min()
                    .unwrap_or(marker_offset + 1);
                let entry = kafka_files::aborted_txn_entry(
                    producer_id,
                    txn.first_offset,
                    marker_offset,
                    lso,
                );
                let base = segment.base_offset();
                kafka_files::append_aborted_txn(self.storage.as_ref(), &self.dir, base, &entry)
            })?;
        self.flush()?;
        Ok(info)
    }
}
