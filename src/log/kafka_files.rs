//! Files of a Kafka-written partition that partlog keeps no state for: each segment's
//! aborted-transaction index (`<base>.txnindex`) and the producer-state snapshots
//! (`<offset>.snapshot`).
//!
//! partlog neither reads nor writes them, but a log dir it took over from Kafka may go back
//! to Kafka, which trusts them after a clean shutdown. So partlog keeps them true to the
//! log as Kafka does: a segment's transaction index goes with the segment (retention,
//! truncation: [`crate::segment::Segment::rename_to_deleted`]), a cleaning's copy takes
//! over the indexes of the segments it replaces ([`merge_txn_indexes`]), and a cut of the
//! log ([`reconcile`]) drops the index entries of transactions that end at or past the new
//! end (Kafka's `TransactionIndex.truncateTo`), the indexes of segments no longer in the
//! log, and the snapshots past the new end (`ProducerStateManager.truncateAndReload`; all
//! of them when the log starts over). Left, an index entry would tell Kafka's
//! `read_committed` fetches that records written at those offsets since belong to an
//! aborted transaction, and a snapshot would bring back producer state of a history that
//! was cut. An open after an unclean shutdown reconciles them too, for a truncation that a
//! crash or a failure stopped between its cut and its files. The one entry partlog adds is
//! for a transaction it aborts itself ([`append_aborted_txn`], for
//! [`crate::log::Log::abort_transaction`]).

use std::path::Path;

use crate::error::Result;
use crate::io::{OpenMode, Storage, StorageFile};
use crate::segment::files;

/// Bytes of one aborted-transaction entry: version (i16), producer id, first offset, last
/// offset and last stable offset (i64 each), big-endian.
const ENTRY_BYTES: usize = 34;
/// Where an entry's last offset is.
const LAST_OFFSET_AT: usize = 18;
/// Entries read at a time.
const ENTRIES_PER_READ: usize = 1024;

/// Makes the Kafka files of the log in `dir` agree with a log whose segments start at
/// `bases` (ascending) and that ends at `end`: the last segment's transaction index loses
/// the entries ending at or past `end`, the indexes of other bases go, and so do the
/// snapshots past `snapshots_up_to`. Returns whether a file was removed (the caller syncs
/// the directory).
pub(super) fn reconcile(
    storage: &dyn Storage,
    dir: &Path,
    bases: &[i64],
    end: i64,
    snapshots_up_to: i64,
) -> Result<bool> {
    let mut removed = false;
    for entry in storage.list_dir(dir)? {
        let Some((offset, suffix)) = files::parse_name(&entry.name) else {
            continue;
        };
        let stale = match suffix {
            _ if entry.is_dir => false,
            files::TXN_INDEX_SUFFIX if Some(&offset) == bases.last() => {
                truncate_txn_index(storage, &dir.join(&entry.name), end)?;
                false
            }
            files::TXN_INDEX_SUFFIX => bases.binary_search(&offset).is_err(),
            files::SNAPSHOT_SUFFIX => offset > snapshots_up_to,
            _ => false,
        };
        if stale {
            storage.remove_file(&dir.join(&entry.name))?;
            removed = true;
        }
    }
    Ok(removed)
}

/// Appends the entries of the transaction indexes of the segments at `bases[1..]` to the
/// one of `bases[0]` (made if need be), durably: a cleaning that replaces those segments
/// with one at `bases[0]` keeps that index for it, as Kafka's cleaner gives its copy the
/// entries of the aborted transactions whose markers stay (every one: the cleaner keeps
/// the markers an index names, see [`indexed_abort_markers`]). (Entries whose batches the
/// cleaning dropped are harmless: a reader skips aborted records that are not there.) A
/// crash before the swap leaves the first index with entries the later ones hold too,
/// which a reader takes once.
pub(super) fn merge_txn_indexes(storage: &dyn Storage, dir: &Path, bases: &[i64]) -> Result<()> {
    let Some((&first, rest)) = bases.split_first() else {
        return Ok(());
    };
    let mut target = None;
    let mut at = 0u64;
    let mut buf = vec![0u8; ENTRY_BYTES * ENTRIES_PER_READ];
    for &base in rest {
        let path = files::path(dir, base, files::TXN_INDEX_SUFFIX);
        if !storage.try_exists(&path)? {
            continue;
        }
        let source = storage.open(&path, OpenMode::Read)?;
        let len = source.len()?;
        let whole = len - len % ENTRY_BYTES as u64;
        let into = match &target {
            Some(file) => file,
            None => {
                let path = files::path(dir, first, files::TXN_INDEX_SUFFIX);
                let file = storage.open(&path, OpenMode::Create)?;
                let len = file.len()?;
                at = len - len % ENTRY_BYTES as u64; // past a torn entry's start
                target.insert(file)
            }
        };
        let mut pos = 0u64;
        while pos < whole {
            let n = (whole - pos).min(buf.len() as u64) as usize;
            source.read_exact_at(&mut buf[..n], pos)?;
            into.write_at(&buf[..n], at)?;
            (pos, at) = (pos + n as u64, at + n as u64);
        }
    }
    if let Some(file) = target {
        file.set_len(at)?;
        file.sync_data()?;
        storage.sync_dir(dir)?;
    }
    Ok(())
}

/// Kafka's entry for an aborted transaction (`AbortedTxn`, version 0): the producer, the
/// transaction's first offset, its ABORT marker's offset, and the last stable offset once
/// it ended.
pub(super) fn aborted_txn_entry(
    producer_id: i64,
    first: i64,
    last: i64,
    lso: i64,
) -> [u8; ENTRY_BYTES] {
    let mut entry = [0u8; ENTRY_BYTES];
    entry[..2].copy_from_slice(&0i16.to_be_bytes());
    for (i, field) in [producer_id, first, last, lso].into_iter().enumerate() {
        entry[2 + i * 8..10 + i * 8].copy_from_slice(&field.to_be_bytes());
    }
    entry
}

/// Appends `entry` to the transaction index of the segment at `base` (made if need be),
/// durably, after its last whole entry.
pub(super) fn append_aborted_txn(
    storage: &dyn Storage,
    dir: &Path,
    base: i64,
    entry: &[u8; ENTRY_BYTES],
) -> Result<()> {
    let path = files::path(dir, base, files::TXN_INDEX_SUFFIX);
    let created = !storage.try_exists(&path)?;
    let file = storage.open(&path, OpenMode::Create)?;
    let len = file.len()?;
    let at = len - len % ENTRY_BYTES as u64; // past a torn entry's start
    file.write_at(entry, at)?;
    file.set_len(at + ENTRY_BYTES as u64)?;
    file.sync_data()?;
    if created {
        storage.sync_dir(dir)?;
    }
    Ok(())
}

/// Cuts the transaction index at `path` before its first entry that ends at or past `end`
/// (and before a torn entry at its end), durably.
fn truncate_txn_index(storage: &dyn Storage, path: &Path, end: i64) -> Result<()> {
    let file = storage.open(path, OpenMode::ReadWrite)?;
    let len = file.len()?;
    let pos = scan_entries(file.as_ref(), |last| last < end)?;
    if pos < len {
        file.set_len(pos)?;
        file.sync_data()?;
    }
    Ok(())
}

/// The offsets of the ABORT markers the transaction indexes of the segments at `bases`
/// name (each entry's last offset), sorted. The cleaner keeps those markers, whose
/// entries stay (see [`merge_txn_indexes`]): an entry whose marker went would tell Kafka's
/// `read_committed` fetches that its producer's later batches are aborted, as no marker
/// ends that transaction for them, and Kafka's cleaner would drop those batches.
pub(super) fn indexed_abort_markers(
    storage: &dyn Storage,
    dir: &Path,
    bases: &[i64],
) -> Result<Vec<i64>> {
    let mut markers = Vec::new();
    for &base in bases {
        let path = files::path(dir, base, files::TXN_INDEX_SUFFIX);
        if !storage.try_exists(&path)? {
            continue;
        }
        let file = storage.open(&path, OpenMode::Read)?;
        scan_entries(file.as_ref(), |last| {
            markers.push(last);
            true
        })?;
    }
    markers.sort_unstable();
    Ok(markers)
}

/// Calls `visit` with the last offset of each whole entry of the index `file`, in order,
/// until it returns false; returns the position of the entry it stopped at (the whole
/// entries' end if none).
fn scan_entries(file: &dyn StorageFile, mut visit: impl FnMut(i64) -> bool) -> Result<u64> {
    let len = file.len()?;
    let whole = len - len % ENTRY_BYTES as u64;
    let mut buf = vec![0u8; ENTRY_BYTES * ENTRIES_PER_READ];
    let mut pos = 0u64;
    while pos < whole {
        let n = (whole - pos).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], pos)?;
        for entry in buf[..n].chunks_exact(ENTRY_BYTES) {
            let mut last = [0u8; 8];
            last.copy_from_slice(&entry[LAST_OFFSET_AT..LAST_OFFSET_AT + 8]);
            if !visit(i64::from_be_bytes(last)) {
                return Ok(pos);
            }
            pos += ENTRY_BYTES as u64;
        }
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::sim::SimStorage;

    fn entry(producer_id: i64, first: i64, last: i64) -> Vec<u8> {
        let mut e = Vec::with_capacity(ENTRY_BYTES);
        e.extend_from_slice(&0i16.to_be_bytes());
        for field in [producer_id, first, last, first] {
            e.extend_from_slice(&field.to_be_bytes());
        }
        e
    }

    #[test]
    fn a_cut_keeps_the_entries_that_end_below_it() {
        let sim = SimStorage::new(1);
        let path = Path::new("/d/00000000000000000000.txnindex");
        let entries: Vec<u8> = (0..3000)
            .flat_map(|i| entry(7, i * 10, i * 10 + 5))
            .collect();
        sim.write_raw(path, &entries).unwrap();
        // Entry 2,500 (lastOffset 25,005) is the first to end at or past 25,003: beyond
        // the first read of 1,024 entries and the second.
        truncate_txn_index(sim.storage().as_ref(), path, 25_003).unwrap();
        let left = sim.read_raw(path).unwrap();
        assert_eq!(left, entries[..2500 * ENTRY_BYTES]);
        truncate_txn_index(sim.storage().as_ref(), path, 6).unwrap();
        assert_eq!(sim.read_raw(path).unwrap(), entry(7, 0, 5));
        truncate_txn_index(sim.storage().as_ref(), path, 5).unwrap();
        assert!(sim.read_raw(path).unwrap().is_empty());
    }

    #[test]
    fn a_torn_entry_at_the_end_goes_and_a_whole_index_stays() {
        let sim = SimStorage::new(2);
        let path = Path::new("/d/00000000000000000000.txnindex");
        let mut bytes = entry(1, 0, 3);
        bytes.extend_from_slice(&entry(2, 4, 9)[..20]);
        sim.write_raw(path, &bytes).unwrap();
        truncate_txn_index(sim.storage().as_ref(), path, 100).unwrap();
        assert_eq!(sim.read_raw(path).unwrap(), entry(1, 0, 3));
        truncate_txn_index(sim.storage().as_ref(), path, 100).unwrap();
        assert_eq!(sim.read_raw(path).unwrap(), entry(1, 0, 3));
    }
}
