//! `partlog transactions`: lists the transactions left open in a partition, and with
//! `--abort` ends one with an ABORT marker, as Kafka's `kafka-transactions.sh` lists
//! hanging transactions and has the leader abort one (see `partlog::log::transactions`).
//!
//! Only a hanging transaction is aborted (its producer has not written to it for longer
//! than the longest a transaction may last: Kafka's `find-hanging` rule), unless
//! `--force`: an ABORT under a live transaction whose producer then commits takes its
//! records from `read_committed` consumers.

use std::process::ExitCode;

use clap::Args;
use partlog::log::{OpenTransaction, MAX_TRANSACTION_TIMEOUT_MS};
use partlog::Clock;

use crate::json::Json;
use crate::progress::Progress;
use crate::{emit, existing_dir, open_partition_in, CliError, CliResult, IfMissing, PartitionArgs};

#[derive(Debug, Args)]
pub struct TransactionsArgs {
    #[command(flatten)]
    partition: PartitionArgs,
    /// End this producer's open transaction with an ABORT marker, appended as leader
    /// with the transaction's producer epoch and the producer's last coordinator epoch;
    /// only a hanging one, unless `--force`.
    #[arg(long, value_name = "PRODUCER_ID")]
    abort: Option<i64>,
    /// Partition leader epoch stamped on the marker [default: the log's latest epoch, or
    /// 0 for an empty log].
    #[arg(long)]
    leader_epoch: Option<i32>,
    /// The longest a transaction may last, in minutes (the brokers'
    /// `transaction.max.timeout.ms`): an open transaction whose producer has not written
    /// to it for longer hangs.
    #[arg(
        long,
        value_name = "MINUTES",
        default_value_t = MAX_TRANSACTION_TIMEOUT_MS / 60_000,
        value_parser = clap::value_parser!(i64).range(1..=i64::from(i32::MAX))
    )]
    max_transaction_timeout: i64,
    /// Abort with `--abort` even a transaction that does not hang yet (its producer may
    /// still end it).
    #[arg(long, requires = "abort")]
    force: bool,
}

pub fn run(args: &TransactionsArgs, json: bool) -> CliResult {
    // Listing only reads: the partition opens (and recovers, if it must) on a
    // copy-on-write view of the dir, as Kafka's tool only reads; an abort writes.
    let listing = args.abort.is_none();
    let storage = existing_dir(&args.partition.dir, listing)?;
    let opened = open_partition_in(storage, &args.partition, IfMissing::Refuse)?;
    let log = opened.log.clone();
    let name = args.partition.topic_partition().dir_name();
    let mut progress = Progress::new(json);
    let end = log.log_end_offset();
    let open = log.open_transactions(|reached| {
        progress.update(|| format!("transactions: read to offset {reached} of {end}"));
    })?;
    progress.finish();
    let now = partlog::SystemClock.now_ms();
    let timeout_ms = args.max_transaction_timeout.saturating_mul(60_000);
    for txn in &open {
        emit(&transaction_line(txn, txn.hanging(now, timeout_ms), json))?;
    }
    let Some(producer_id) = args.abort else {
        opened.close()?;
        emit(&if json {
            Json::new()
                .str("type", "summary")
                .int("open", open.len() as u64)
                .finish()
        } else {
            format!("{} open transactions in {}", open.len(), name)
        })?;
        return Ok(ExitCode::SUCCESS);
    };
    let Some(txn) = open.iter().find(|t| t.producer_id == producer_id) else {
        opened.close()?;
        return Err(CliError::Input(format!(
            "producer {producer_id} has no open transaction in {}; nothing appended",
            name
        )));
    };
    if !txn.hanging(now, timeout_ms) && !args.force {
        opened.close()?;
        return Err(CliError::Input(format!(
            "producer {producer_id}'s transaction in {name} last wrote {} ms ago, within the \
             {} minute transaction timeout: its producer may still end it; nothing appended \
             (--force aborts it anyway)",
            now.saturating_sub(txn.last_timestamp_ms),
            args.max_transaction_timeout
        )));
    }
    let epoch = args.leader_epoch.unwrap_or(log.latest_epoch().max(0));
    let info = log.abort_transaction(&open, producer_id, epoch, now)?;
    opened.close()?;
    emit(&if json {
        Json::new()
            .str("type", "aborted")
            .int("producer_id", txn.producer_id)
            .int("marker_offset", info.first_offset)
            .finish()
    } else {
        format!(
            "aborted producer {}'s transaction (offsets {}..={}): ABORT marker at offset {}",
            txn.producer_id, txn.first_offset, txn.last_offset, info.first_offset
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

fn transaction_line(txn: &OpenTransaction, hanging: bool, json: bool) -> String {
    if json {
        return Json::new()
            .str("type", "open_transaction")
            .int("producer_id", txn.producer_id)
            .int("producer_epoch", txn.producer_epoch)
            .int("first_offset", txn.first_offset)
            .int("last_offset", txn.last_offset)
            .int("batches", txn.batches)
            .int("first_timestamp_ms", txn.first_timestamp_ms)
            .int("last_timestamp_ms", txn.last_timestamp_ms)
            .int("coordinator_epoch", txn.coordinator_epoch)
            .bool("hanging", hanging)
            .finish();
    }
    format!(
        "producer {} (epoch {}): open since offset {} (timestamp {} ms), {} batches up to offset {} (last timestamp {} ms){}",
        txn.producer_id,
        txn.producer_epoch,
        txn.first_offset,
        txn.first_timestamp_ms,
        txn.batches,
        txn.last_offset,
        txn.last_timestamp_ms,
        if hanging { ", hanging" } else { ", may still be live" }
    )
}
