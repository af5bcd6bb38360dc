//! A crash tears the last, unflushed batch at any byte: recovery cuts exactly that batch,
//! moves the cut bytes aside, and the log goes on from the batch's base offset.

mod common;

use std::sync::Arc;

use common::{
    backends, batch, check_every_offset, copy_dir, file_bytes, file_names, options, read_all,
    small_config, Backend,
};
use partlog::log::{DamageKind, Log};
use partlog::segment::PREFILL_BYTES;
use partlog::ManualClock;

/// A log of flushed batches in two segments plus one last, unflushed batch.
struct Built {
    /// Bytes of the last segment file's batches (the zeros after them left out).
    segment: Vec<u8>,
    segment_name: String,
    /// Position and size of the last batch in that segment.
    last_at: u64,
    last_len: u64,
    last_base: i64,
    /// Batches before the last one.
    earlier: Vec<(i64, i64)>,
}

fn build(backend: &Backend) -> Built {
    let (log, _) = common::open(backend, "orig-0", small_config());
    for i in 0..30 {
        log.append_as_leader(&mut batch(2, 60, i * 10), 1).unwrap();
    }
    log.flush().unwrap();
    let earlier = read_all(&log);
    assert!(
        log.segment_count() >= 2,
        "the scenario wants an older segment"
    );
    let last_base = log.log_end_offset();
    let mut last = batch(3, 40, 1000);
    log.append_as_leader(&mut last, 1).unwrap();
    let active = log.segments().last().unwrap().clone();
    let last_len = last.len() as u64;
    let last_at = active.size() - last_len;
    let segment_name = active
        .log_path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    // Dropped without close: indexes may still hold an entry for the last batch.
    drop(log);
    let mut segment = file_bytes(backend, &backend.root.join("orig-0").join(&segment_name));
    // The active segment's file holds its batches, then the zeros written ahead of them up
    // to the block's end.
    let end = last_at + last_len;
    assert_eq!(segment.len() as u64, end.next_multiple_of(PREFILL_BYTES));
    assert!(segment[end as usize..].iter().all(|&b| b == 0));
    segment.truncate(end as usize);
    Built {
        segment,
        segment_name,
        last_at,
        last_len,
        last_base,
        earlier,
    }
}

fn open_copy(
    backend: &Backend,
    name: &str,
    recovery_point: Option<i64>,
) -> (Log, partlog::log::RecoveryReport) {
    let mut opts = options(
        backend,
        name,
        small_config(),
        Arc::new(ManualClock::new(1_000_000)),
    );
    opts.recovery_point = recovery_point;
    Log::open(opts).expect("open torn log")
}

#[test]
fn torn_tail_at_every_byte_of_the_last_batch() {
    for backend in backends() {
        let built = build(&backend);
        let orig = backend.root.join("orig-0");
        for k in 0..built.last_len {
            let name = format!("torn{k}-0");
            let dir = backend.root.join(&name);
            copy_dir(&backend, &orig, &dir);
            let seg_path = dir.join(&built.segment_name);
            let file = backend
                .storage
                .open(&seg_path, partlog::io::OpenMode::ReadWrite)
                .unwrap();
            file.set_len(built.last_at + k).unwrap();
            file.sync_data().unwrap();
            drop(file);
            // Half the cuts with the recovery point known (the flushed end), half without.
            let rp = (k % 2 == 0).then_some(built.last_base);
            let (log, report) = open_copy(&backend, &name, rp);
            let ctx = format!("{} k={k} rp={rp:?}", backend.name);
            assert_eq!(log.log_end_offset(), built.last_base, "{ctx}");
            assert_eq!(report.log_end_offset, built.last_base, "{ctx}");
            if k == 0 {
                assert!(report.damage.is_none(), "{ctx}: {report:?}");
                assert!(
                    !file_names(&backend, &dir)
                        .iter()
                        .any(|n| n.ends_with(".corrupt")),
                    "{ctx}"
                );
            } else {
                let damage = report
                    .damage
                    .clone()
                    .unwrap_or_else(|| panic!("{ctx}: no damage reported"));
                assert_eq!(damage.kind, DamageKind::TornTail, "{ctx}: {damage:?}");
                assert_eq!(damage.file, seg_path, "{ctx}");
                assert_eq!(damage.position, built.last_at, "{ctx}");
                assert_eq!(damage.bytes, k, "{ctx}");
                assert_eq!(report.truncated_bytes(), k, "{ctx}");
                let start = built.last_at as usize;
                let cut = &built.segment[start..start + k as usize];
                if cut.iter().all(|&b| b == 0) {
                    // The first bytes of a small base offset: zeros hold nothing to keep.
                    assert!(damage.moved_to.is_empty(), "{ctx}: {damage:?}");
                } else {
                    assert_eq!(damage.moved_to.len(), 1, "{ctx}");
                    let aside = &damage.moved_to[0];
                    assert_eq!(aside.parent(), Some(dir.as_path()), "{ctx}");
                    assert!(aside.to_str().unwrap().ends_with(".corrupt"), "{ctx}");
                    assert_eq!(
                        file_bytes(&backend, aside),
                        cut,
                        "{ctx}: the .corrupt file holds the cut bytes"
                    );
                }
            }
            // The segment file is cut at the last valid batch.
            assert_eq!(
                file_bytes(&backend, &seg_path),
                &built.segment[..built.last_at as usize],
                "{ctx}"
            );
            assert_eq!(read_all(&log), built.earlier, "{ctx}");
            assert_eq!(check_every_offset(&log), built.last_base as usize, "{ctx}");
            let info = log.append_as_leader(&mut batch(2, 10, 5000), 2).unwrap();
            assert_eq!(info.first_offset, built.last_base, "{ctx}");
            assert_eq!(log.log_end_offset(), built.last_base + 2, "{ctx}");
            check_every_offset(&log);
        }
    }
}

/// A segment Kafka preallocated (`log.preallocate`: its file `segment.bytes` long, zeros
/// after its batches) and left active at a crash: the zeros are cut and reported, but not
/// copied aside, where a copy would write out up to a GiB of them per partition and fill
/// the disk. So are zeros a crash left in place of unwritten pages: they hold nothing.
#[test]
fn a_tail_of_zeros_is_cut_without_a_copy() {
    let (backend, disk) = common::sim_with_disk(41);
    let (log, _) = common::open(&backend, "t-0", small_config());
    for i in 0..10 {
        log.append_as_leader(&mut batch(2, 60, i), 1).unwrap();
    }
    log.flush().unwrap();
    let batches = read_all(&log);
    let base = log.segments().last().unwrap().base_offset();
    drop(log);
    let dir = backend.root.join("t-0");
    let active = dir.join(format!("{base:020}.log"));
    disk.truncate_file(&active, 4 << 20).unwrap();

    let (log, report) = common::reopen(&backend, "t-0", small_config(), false, None);
    assert_eq!(read_all(&log), batches);
    let damage = report.damage.expect("the zeros are cut");
    assert!(damage.moved_to.is_empty(), "{damage:?}");
    assert!(damage.bytes > (4 << 20) - PREFILL_BYTES, "{damage:?}");
    let corrupt = file_names(&backend, &dir);
    assert!(
        !corrupt.iter().any(|n| n.contains(".corrupt")),
        "{corrupt:?}"
    );
}
