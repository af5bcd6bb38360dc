//! A flipped bit in a batch: recovery cuts the log at that batch and says whether it was a
//! torn tail (unflushed data a crash explains) or corruption (flushed data, or a bad batch
//! that valid batches follow). It never panics, whatever byte is hit.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{
    backends, batch, check_every_offset, copy_dir, file_bytes, options, read_all, small_config,
    Backend,
};
use partlog::checkpoint::TopicPartition;
use partlog::io::OpenMode;
use partlog::log::{DamageKind, Log, RecoveryReport};
use partlog::manager::{LogDir, LogDirOptions};
use partlog::ManualClock;

const FLUSHED: usize = 16;
const UNFLUSHED: usize = 4;

/// One segment: `FLUSHED` batches flushed, then `UNFLUSHED` more that were not.
struct Built {
    segment: PathBuf,
    /// `(position, size, base offset)` of every batch.
    batches: Vec<(u64, u64, i64)>,
    flushed_end: i64,
}

fn build(backend: &Backend, name: &str) -> Built {
    let (log, _) = common::open(backend, name, small_config());
    let mut batches = Vec::new();
    for i in 0..FLUSHED + UNFLUSHED {
        if i == FLUSHED {
            log.flush().unwrap();
        }
        let pos = log.size_bytes();
        let base = log.log_end_offset();
        let mut b = batch(2, 30, i as i64 * 10);
        log.append_as_leader(&mut b, 1).unwrap();
        batches.push((pos, b.len() as u64, base));
    }
    assert_eq!(log.segment_count(), 1, "the scenario wants one segment");
    let segment = log.segments()[0].log_path().to_path_buf();
    drop(log);
    Built {
        segment,
        batches,
        flushed_end: 2 * FLUSHED as i64,
    }
}

/// Flips bit `bit` of the byte at `pos`, through the io layer.
fn flip(backend: &Backend, path: &Path, pos: u64, bit: u8) {
    let file = backend.storage.open(path, OpenMode::ReadWrite).unwrap();
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, pos).unwrap();
    b[0] ^= 1 << bit;
    file.write_at(&b, pos).unwrap();
    file.sync_data().unwrap();
}

fn reopen(backend: &Backend, name: &str, recovery_point: Option<i64>) -> (Log, RecoveryReport) {
    let mut opts = options(
        backend,
        name,
        small_config(),
        Arc::new(ManualClock::new(1_000_000)),
    );
    opts.recovery_point = recovery_point;
    Log::open(opts).expect("open after a bit flip")
}

/// Flips a bit in the records of batch `index` of a copy of `orig`, reopens, and checks the
/// log was cut at that batch with damage of `kind`.
fn flip_and_check(
    backend: &Backend,
    built: &Built,
    case: &str,
    index: usize,
    recovery_point: Option<i64>,
    kind: DamageKind,
) {
    let name = format!("{case}-0");
    let dir = backend.root.join(&name);
    copy_dir(backend, &backend.root.join("orig-0"), &dir);
    let segment = dir.join(built.segment.file_name().unwrap());
    let whole = file_bytes(backend, &segment);
    let (pos, len, base) = built.batches[index];
    flip(backend, &segment, pos + len - 5, 3);
    let (log, report) = reopen(backend, &name, recovery_point);
    let ctx = format!("{} {case}", backend.name);
    let damage = report.damage.clone().expect(&ctx);
    assert_eq!(damage.kind, kind, "{ctx}: {damage:?}");
    assert_eq!(damage.file, segment, "{ctx}");
    assert_eq!(damage.position, pos, "{ctx}");
    assert_eq!(damage.bytes, whole.len() as u64 - pos, "{ctx}");
    let mut expected_aside = whole[pos as usize..].to_vec();
    expected_aside[(len - 5) as usize] ^= 1 << 3;
    assert_eq!(
        file_bytes(backend, &damage.moved_to[0]),
        expected_aside,
        "{ctx}"
    );
    assert_eq!(log.log_end_offset(), base, "{ctx}");
    let expected: Vec<(i64, i64)> = built.batches[..index]
        .iter()
        .map(|&(_, _, b)| (b, b + 1))
        .collect();
    assert_eq!(read_all(&log), expected, "{ctx}");
    check_every_offset(&log);
    assert_eq!(
        log.append_as_leader(&mut batch(1, 10, 0), 2)
            .unwrap()
            .first_offset,
        base,
        "{ctx}"
    );
}

#[test]
fn bit_flip_in_the_unflushed_last_batch_is_a_torn_tail() {
    for backend in backends() {
        let built = build(&backend, "orig-0");
        let last = built.batches.len() - 1;
        flip_and_check(
            &backend,
            &built,
            "rp",
            last,
            Some(built.flushed_end),
            DamageKind::TornTail,
        );
        flip_and_check(&backend, &built, "norp", last, None, DamageKind::TornTail);
    }
}

#[test]
fn bit_flip_in_an_unflushed_middle_batch() {
    for backend in backends() {
        let built = build(&backend, "orig-0");
        let middle = FLUSHED + 1;
        // Past the recovery point a crash explains any damage, valid batches after or not.
        flip_and_check(
            &backend,
            &built,
            "rp",
            middle,
            Some(built.flushed_end),
            DamageKind::TornTail,
        );
        // With no recovery point, valid batches after the bad one mean corruption.
        flip_and_check(
            &backend,
            &built,
            "norp",
            middle,
            None,
            DamageKind::Corruption,
        );
    }
}

#[test]
fn bit_flip_below_the_recovery_point_is_corruption() {
    for backend in backends() {
        let tp = TopicPartition::new("t", 0);
        let root = backend.root.join("logdir");
        let dir_options = || LogDirOptions {
            config: small_config(),
            clock: Arc::new(ManualClock::new(1_000_000)),
        };
        let mut positions = Vec::new();
        {
            let dir = LogDir::open(backend.storage.clone(), &root, dir_options()).unwrap();
            let (log, _) = dir.open_log(&tp).unwrap();
            for i in 0..FLUSHED + UNFLUSHED {
                if i == FLUSHED {
                    // Recovery point 2 * FLUSHED, checkpointed.
                    dir.flush().unwrap();
                }
                positions.push((log.size_bytes(), log.log_end_offset()));
                log.append_as_leader(&mut batch(2, 30, i as i64), 1)
                    .unwrap();
            }
            assert_eq!(log.segment_count(), 1);
            // Dropped without close: an unclean shutdown.
        }
        let segment = root.join("t-0").join("00000000000000000000.log");
        let (pos, base) = positions[FLUSHED / 2];
        flip(&backend, &segment, pos + 40, 0);
        let dir = LogDir::open(backend.storage.clone(), &root, dir_options()).unwrap();
        assert!(!dir.was_clean_shutdown());
        let (log, report) = dir.open_log(&tp).unwrap();
        let damage = report.damage.clone().expect("damage reported");
        assert_eq!(
            damage.kind,
            DamageKind::Corruption,
            "{}: {damage:?}",
            backend.name
        );
        assert_eq!(
            (damage.file.as_path(), damage.position),
            (segment.as_path(), pos)
        );
        assert_eq!(log.log_end_offset(), base);
        assert!(
            report.warnings.iter().any(|w| w.contains("recovery point")),
            "{:?}",
            report.warnings
        );
        assert_eq!(read_all(&log).len(), FLUSHED / 2);
        check_every_offset(&log);
    }
}

/// Every byte of the last batch, one bit each, with the recovery point unknown: the open
/// never fails or panics, and what the log serves verifies. Bytes the CRC covers (and the
/// length and magic, which a flip makes inconsistent) always cut the batch; the base offset
/// and leader epoch lie outside the CRC, as in Kafka, so a flip there may go unnoticed.
#[test]
fn bit_flip_at_every_byte_of_the_last_batch_never_panics() {
    for backend in backends() {
        let built = build(&backend, "orig-0");
        let (pos, len, base) = *built.batches.last().unwrap();
        for at in 0..len {
            let name = format!("at{at}-0");
            let dir = backend.root.join(&name);
            copy_dir(&backend, &backend.root.join("orig-0"), &dir);
            let segment = dir.join(built.segment.file_name().unwrap());
            flip(&backend, &segment, pos + at, (at % 8) as u8);
            let (log, report) = reopen(&backend, &name, None);
            let ctx = format!("{} byte {at}: {report:?}", backend.name);
            let outside_crc = at < 8 || (12..16).contains(&at);
            if !outside_crc {
                let damage = report.damage.as_ref().expect(&ctx);
                assert_eq!(damage.kind, DamageKind::TornTail, "{ctx}");
                assert_eq!(damage.position, pos, "{ctx}");
                assert_eq!(log.log_end_offset(), base, "{ctx}");
            } else {
                assert!(log.log_end_offset() >= base, "{ctx}");
            }
            let earlier: Vec<(i64, i64)> = built.batches[..built.batches.len() - 1]
                .iter()
                .map(|&(_, _, b)| (b, b + 1))
                .collect();
            let all = read_all(&log);
            assert_eq!(all.get(..earlier.len()), Some(&earlier[..]), "{ctx}");
        }
    }
}

/// Recovery checks a batch's header, bounds, offsets and CRC, not its records, as Kafka's
/// does: a batch whose CRC verifies is kept even when its records do not parse (a leader
/// validated them before it wrote; only a writer that checksummed garbage makes one, and
/// a consumer reading it gets the parse error). The `segment_recovery` fuzz target forged
/// such a batch (libFuzzer copies compared values into its inputs, a CRC too) and its
/// check, which then demanded well-formed records, failed.
#[test]
fn recovery_keeps_a_crc_valid_batch_whose_records_do_not_parse_as_kafka_does() {
    for backend in backends() {
        let built = build(&backend, "malformed");
        let (pos, size, base) = built.batches[FLUSHED / 2];
        let mut bytes = file_bytes(&backend, &built.segment);
        let batch_bytes = &mut bytes[pos as usize..(pos + size) as usize];
        // The last record's header count becomes a varint that runs off the batch.
        let last = batch_bytes.len() - 1;
        batch_bytes[last] = 0x80;
        partlog::record::recompute_crc(batch_bytes);
        common::write_file(&backend, &built.segment, &bytes);
        let (log, report) = reopen(&backend, "malformed", None);
        assert!(report.damage.is_none(), "{}: {report:?}", backend.name);
        assert_eq!(log.log_end_offset(), 2 * (FLUSHED + UNFLUSHED) as i64);
        let slice = log.read(base, 1, None).unwrap().expect("the batch");
        let served = slice.to_vec().unwrap();
        let batch = partlog::record::Batch::parse(&served).unwrap();
        assert_eq!(batch.header().base_offset, base);
        assert!(batch.verify_crc().is_ok());
        assert!(batch.validate().is_err(), "the records do not parse");
    }
}

/// A log shut down cleanly whose active segment then does not read (a length field hit
/// on the media): the close had synced it whole, so recovery reports the damage as
/// corruption. It used to take the segment's base for the recovery point and call damage
/// past it a torn tail, which no crash after a clean shutdown explains.
#[test]
fn damage_after_a_clean_shutdown_is_corruption() {
    for backend in backends() {
        let (log, _) = common::open(&backend, "clean-0", small_config());
        let mut last = (0, 0);
        for i in 0..6 {
            last = (log.size_bytes(), log.log_end_offset());
            log.append_as_leader(&mut batch(2, 30, i * 10), 1).unwrap();
        }
        let segment = log.segments()[0].log_path().to_path_buf();
        log.close().unwrap();
        drop(log);
        // The last batch's length now claims a gigabyte more.
        flip(&backend, &segment, last.0 + 8, 6);
        let mut opts = options(
            &backend,
            "clean-0",
            small_config(),
            Arc::new(ManualClock::new(1_000_000)),
        );
        opts.clean_shutdown = true;
        let (log, report) = Log::open(opts).expect("open");
        let damage = report.damage.expect(backend.name);
        assert_eq!(
            damage.kind,
            DamageKind::Corruption,
            "{}: {damage:?}",
            backend.name
        );
        assert_eq!(damage.position, last.0, "{}", backend.name);
        assert_eq!(log.log_end_offset(), last.1, "{}", backend.name);
    }
}
