//! Sequential reads of segment file ranges with read-ahead: a helper thread reads the next
//! piece of the files while the caller works on the piece before, so that the copy out of
//! the page cache (or the wait on the disk) overlaps the work. The cleaner reads its dirty
//! range this way in both passes of a cleaning, and the offsets store its partition when
//! it loads it; without the overlap the reads alone cost as much as everything else.
//!
//! The reader cuts every piece at a batch boundary, walking only the batch lengths, and
//! carries a batch that straddles two pieces over into the next; so the caller parses
//! whole batches in place, never copying one. A range's last piece goes out whole, torn
//! tail and all, and the caller's parse reports what is wrong with it.

use std::sync::mpsc::{sync_channel, Receiver, SendError, SyncSender};
use std::time::{Duration, Instant};

use super::FileSlice;
use crate::error::{Error, Result};
use crate::record::{batch_size, Batch, BatchError};

/// Bytes read from a file per step, unless the caller says otherwise.
pub const SCAN_BYTES: usize = 1 << 20;
/// Pieces read ahead of the one the caller works on.
const READ_AHEAD: usize = 1;
/// Buffers in flight: the caller's piece, the queued ones and the one being read.
const BUFFERS: usize = READ_AHEAD + 2;

/// Limits a scan's reads to `bytes_per_second` (the cleaner's is Kafka's
/// `log.cleaner.io.max.bytes.per.second`), by sleeping.
#[derive(Debug)]
pub struct Throttle {
    bytes_per_second: f64,
    started: Instant,
    bytes: u64,
}

impl Throttle {
    /// A throttle at `bytes_per_second`; an infinite, zero or negative rate does not limit.
    pub fn new(bytes_per_second: f64) -> Throttle {
        Throttle {
            bytes_per_second,
            started: Instant::now(),
            bytes: 0,
        }
    }

    /// A throttle that never waits.
    pub fn unlimited() -> Throttle {
        Throttle::new(f64::INFINITY)
    }

    pub(crate) fn account(&mut self, bytes: u64) {
        self.bytes += bytes;
        if !self.bytes_per_second.is_finite() || self.bytes_per_second <= 0.0 {
            return;
        }
        let due = Duration::from_secs_f64(self.bytes as f64 / self.bytes_per_second);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
}

/// Read buffers kept from one scan to the next.
#[derive(Debug, Default)]
pub struct ScanBuffers {
    free: Vec<Vec<u8>>,
}

/// A run of whole batches of one range, at `buf[..len]`.
struct Piece {
    buf: Vec<u8>,
    len: usize,
}

/// Calls `f` with every batch of `ranges` (each starting at a batch boundary), in order,
/// stopping early when `f` returns false. The files are read in pieces of `piece_bytes`
/// (more for a batch larger than that), ahead of `f`, and `throttle` paces the reads.
pub fn scan_batches(
    ranges: &[FileSlice],
    piece_bytes: usize,
    buffers: &mut ScanBuffers,
    throttle: &mut Throttle,
    mut f: impl FnMut(&Batch<'_>) -> Result<bool>,
) -> Result<()> {
    let largest = ranges.iter().map(FileSlice::len).max().unwrap_or(0);
    let piece_len = piece_bytes.min(usize::try_from(largest).unwrap_or(piece_bytes));
    if piece_len == 0 {
        return Ok(());
    }
    let (free_tx, free_rx) = sync_channel::<Vec<u8>>(BUFFERS);
    for _ in 0..BUFFERS {
        let mut buf = buffers.free.pop().unwrap_or_default();
        if buf.len() < piece_len {
            buf.resize(piece_len, 0);
        }
        free_tx
            .send(buf)
            .map_err(|_| Error::InvalidConfig("read-ahead channel closed".into()))?;
    }
    let (full_tx, full_rx) = sync_channel::<Result<Piece>>(READ_AHEAD);
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || read_ahead(ranges, free_rx, full_tx, throttle));
        let walked = walk_pieces(&full_rx, &free_tx, &mut f);
        // A reader still ahead stops once it finds no free buffer (after at most the
        // ones queued for it); what it sent meanwhile comes back here, what it holds
        // comes back when it ends.
        drop(free_tx);
        buffers
            .free
            .extend(full_rx.iter().filter_map(|piece| piece.ok()).map(|p| p.buf));
        let returned = reader
            .join()
            .map_err(|_| Error::InvalidConfig("read-ahead thread panicked".into()));
        buffers.free.extend(returned?);
        walked
    })
}

/// The caller's side: parses each piece's batches in place and returns the piece's buffer.
fn walk_pieces(
    full: &Receiver<Result<Piece>>,
    free: &SyncSender<Vec<u8>>,
    f: &mut impl FnMut(&Batch<'_>) -> Result<bool>,
) -> Result<()> {
    for piece in full {
        let piece = piece?;
        let more = walk(&piece.buf[..piece.len], f);
        // The buffer goes back whatever happened: the reader reuses it, or hands it back
        // to the pool once it is done (the channel has room for every buffer).
        let _ = free.send(piece.buf);
        if !more? {
            return Ok(());
        }
    }
    Ok(())
}

/// Calls `f` with each batch of `bytes`; false when `f` asked to stop.
fn walk(bytes: &[u8], f: &mut impl FnMut(&Batch<'_>) -> Result<bool>) -> Result<bool> {
    let mut at = 0;
    while at < bytes.len() {
        let batch = Batch::parse(&bytes[at..])?;
        if !f(&batch)? {
            return Ok(false);
        }
        at += batch.as_bytes().len();
    }
    Ok(true)
}

/// The reader's side: fills free buffers from the ranges, cuts them at batch boundaries
/// and sends them on. Returns the buffers it still holds once the caller closed both
/// channels (or it is done).
fn read_ahead(
    ranges: &[FileSlice],
    free: Receiver<Vec<u8>>,
    full: SyncSender<Result<Piece>>,
    throttle: &mut Throttle,
) -> Vec<Vec<u8>> {
    let mut held = Vec::new();
    if let Err(err) = read_ranges(ranges, &free, &full, throttle, &mut held) {
        let _ = full.send(Err(err)); // a caller that stopped does not need the error
    }
    drop(full);
    held.extend(free.iter());
    held
}

fn read_ranges(
    ranges: &[FileSlice],
    free: &Receiver<Vec<u8>>,
    full: &SyncSender<Result<Piece>>,
    throttle: &mut Throttle,
    held: &mut Vec<Vec<u8>>,
) -> Result<()> {
    for range in ranges {
        let size = range.position() + range.len(); // where the range ends in its file
        let file = range.file();
        let Ok(mut buf) = free.recv() else {
            return Ok(()); // the caller stopped
        };
        let mut filled = 0usize; // bytes at the start of `buf` carried over or read
        let mut pos = range.position(); // the file position of `buf[filled]`
        loop {
            let room = (buf.len() - filled) as u64;
            let want = room.min(size - pos) as usize;
            if let Err(err) = file.read_exact_at(&mut buf[filled..filled + want], pos) {
                held.push(buf);
                return Err(err);
            }
            throttle.account(want as u64);
            pos += want as u64;
            filled += want;
            if pos == size {
                if let Err(unsent) = full.send(Ok(Piece { buf, len: filled })) {
                    held.extend(unsent_buffer(unsent));
                    return Ok(());
                }
                break;
            }
            let end = match cut(&buf[..filled]) {
                Cut::Whole(end) => end,
                Cut::Bad => filled, // sent whole: the caller's parse says what is wrong
                Cut::Needs(batch) => {
                    // One batch larger than the buffer: make room for it, up to the rest
                    // of the range (a torn length may claim more).
                    let most = filled + (size - pos) as usize;
                    buf.resize(batch.max(buf.len() * 2).min(most), 0);
                    continue;
                }
            };
            let Ok(mut next) = free.recv() else {
                held.push(buf);
                return Ok(());
            };
            let tail = filled - end;
            if next.len() < tail {
                next.resize(tail, 0);
            }
            next[..tail].copy_from_slice(&buf[end..filled]);
            if let Err(unsent) = full.send(Ok(Piece { buf, len: end })) {
                held.extend([next].into_iter().chain(unsent_buffer(unsent)));
                return Ok(());
            }
            buf = next;
            filled = tail;
        }
    }
    Ok(())
}

/// The buffer of a piece the caller did not take.
fn unsent_buffer(unsent: SendError<Result<Piece>>) -> Option<Vec<u8>> {
    unsent.0.ok().map(|piece| piece.buf)
}

/// How much of a buffer's start is whole batches.
enum Cut {
    /// This many bytes (more than none).
    Whole(usize),
    /// None: the first batch is this long, longer than the buffer.
    Needs(usize),
    /// None: the first batch's length or magic is invalid.
    Bad,
}

fn cut(buf: &[u8]) -> Cut {
    let mut end = 0;
    loop {
        let rest = &buf[end..];
        match batch_size(rest) {
            Ok(size) if size <= rest.len() => end += size,
            Ok(_) | Err(BatchError::TooShort { .. }) if end > 0 => return Cut::Whole(end),
            Ok(size) => return Cut::Needs(size),
            Err(BatchError::TooShort { needed, .. }) => return Cut::Needs(needed),
            Err(_) if end > 0 => return Cut::Whole(end),
            Err(_) => return Cut::Bad,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::io::sim::SimStorage;
    use crate::io::OpenMode;
    use crate::log::{Log, LogOpenOptions};
    use crate::record::{batches, BatchBuilder};
    use crate::segment::Segment;
    use crate::{LogConfig, ManualClock};

    /// A log of batches from 100 bytes to about 4 KiB, in segments of about 20 KiB.
    fn log(sim: &Arc<SimStorage>) -> Log {
        let options = LogOpenOptions {
            config: LogConfig {
                segment_bytes: 20_000,
                ..LogConfig::default()
            },
            clock: Arc::new(ManualClock::new(1_000)),
            ..LogOpenOptions::new(sim.storage(), "/data/t-0")
        };
        let log = Log::open(options).expect("open").0;
        for i in 0..200usize {
            let mut builder = BatchBuilder::new();
            for r in 0..1 + (i * 7) % 40 {
                builder.append(r as i64, Some(&i.to_be_bytes()), Some(&[b'v'; 90]), &[]);
            }
            let mut batch = builder.build().expect("batch");
            log.append_as_leader(&mut batch, 0).expect("append");
        }
        log.force_roll().expect("roll");
        log
    }

    fn whole(log: &Log) -> Vec<FileSlice> {
        log.inactive_segments().iter().map(|s| s.whole()).collect()
    }

    fn segment_bytes(segment: &Segment) -> Vec<u8> {
        let mut bytes = vec![0; segment.size() as usize];
        segment
            .log_file()
            .read_exact_at(&mut bytes, 0)
            .expect("read");
        bytes
    }

    fn all_batches(log: &Log) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for segment in log.inactive_segments() {
            for batch in batches(&segment_bytes(&segment)) {
                out.push(batch.expect("batch").as_bytes().to_vec());
            }
        }
        out
    }

    fn scan(
        log: &Log,
        piece: usize,
        buffers: &mut ScanBuffers,
        stop_after: usize,
    ) -> Result<Vec<Vec<u8>>> {
        let mut seen = Vec::new();
        let mut throttle = Throttle::unlimited();
        scan_batches(&whole(log), piece, buffers, &mut throttle, |batch| {
            seen.push(batch.as_bytes().to_vec());
            Ok(seen.len() < stop_after)
        })?;
        Ok(seen)
    }

    #[test]
    fn batches_that_straddle_pieces_or_outgrow_them_come_whole_and_in_order() {
        let sim = SimStorage::new(7);
        let log = log(&sim);
        let expected = all_batches(&log);
        assert!(log.inactive_segments().len() > 5, "several segments");
        for piece in [100, 1_000, 4_096, 1 << 20] {
            let mut buffers = ScanBuffers::default();
            let seen = scan(&log, piece, &mut buffers, usize::MAX).expect("scan");
            assert_eq!(seen, expected, "pieces of {piece} bytes");
            assert_eq!(buffers.free.len(), BUFFERS, "every buffer comes back");
        }
    }

    #[test]
    fn ranges_inside_files_give_their_batches_only() {
        let sim = SimStorage::new(7);
        let log = log(&sim);
        let expected = all_batches(&log);
        // From the third batch of the second segment up to the third segment's fifth.
        let segments = log.inactive_segments();
        let sizes = |s: &Segment, n: usize| -> u64 {
            batches(&segment_bytes(s))
                .take(n)
                .map(|b| b.expect("batch").as_bytes().len() as u64)
                .sum()
        };
        let (first, second) = (&segments[1], &segments[2]);
        let from = sizes(first, 2);
        let ranges = [
            FileSlice::new(first.log_file().clone(), from, first.size() - from),
            FileSlice::new(second.log_file().clone(), 0, sizes(second, 5)),
        ];
        let before = batches_in(&segments[..1]) + 2;
        let count = batches_in(&segments[1..2]) - 2 + 5;
        for piece in [100, 1_000, 1 << 20] {
            let mut seen = Vec::new();
            let mut buffers = ScanBuffers::default();
            scan_batches(
                &ranges,
                piece,
                &mut buffers,
                &mut Throttle::unlimited(),
                |batch| {
                    seen.push(batch.as_bytes().to_vec());
                    Ok(true)
                },
            )
            .expect("scan");
            assert_eq!(
                seen,
                expected[before..before + count],
                "pieces of {piece} bytes"
            );
        }
    }

    fn batches_in(segments: &[Arc<Segment>]) -> usize {
        segments
            .iter()
            .map(|s| batches(&segment_bytes(s)).count())
            .sum()
    }

    #[test]
    fn a_scan_stopped_early_sees_no_more_and_keeps_its_buffers() {
        let sim = SimStorage::new(7);
        let log = log(&sim);
        let expected = all_batches(&log);
        let mut buffers = ScanBuffers::default();
        for stop_after in [1, 17, 150] {
            let seen = scan(&log, 1_000, &mut buffers, stop_after).expect("scan");
            assert_eq!(seen, expected[..stop_after]);
            assert_eq!(buffers.free.len(), BUFFERS);
        }
    }

    #[test]
    fn the_throttle_paces_the_reads() {
        let sim = SimStorage::new(7);
        let log = log(&sim);
        let bytes: u64 = log.inactive_segments().iter().map(|s| s.size()).sum();
        // At this rate the whole log takes a fifth of a second to read.
        let mut throttle = Throttle::new(bytes as f64 * 5.0);
        let started = std::time::Instant::now();
        let mut buffers = ScanBuffers::default();
        scan_batches(&whole(&log), 4_096, &mut buffers, &mut throttle, |_| {
            Ok(true)
        })
        .expect("scan");
        let took = started.elapsed();
        assert!(
            took >= std::time::Duration::from_millis(195),
            "{bytes} bytes at {} bytes/s read in {took:?}",
            bytes * 5
        );
    }

    #[test]
    fn a_corrupt_batch_length_is_an_error_not_a_hang() {
        for length in [i32::MAX, 3, -1] {
            let sim = SimStorage::new(7);
            let log = log(&sim);
            let segment = &log.inactive_segments()[2];
            // The third batch of the third segment claims a wrong length.
            let bytes = segment_bytes(segment);
            let mut at = 0;
            for batch in batches(&bytes).take(2) {
                at += batch.expect("batch").as_bytes().len();
            }
            let file = sim
                .storage()
                .open(segment.log_path(), OpenMode::ReadWrite)
                .expect("open the segment file");
            file.write_at(&length.to_be_bytes(), (at + 8) as u64)
                .expect("write");
            let mut buffers = ScanBuffers::default();
            let outcome = scan(&log, 1_000, &mut buffers, usize::MAX);
            assert!(outcome.is_err(), "length {length}: {outcome:?}");
        }
    }
}
