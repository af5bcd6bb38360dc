//! Sequential reads of segment file ranges with read-ahead: a helper thread reads the next
//! pieces of the files while the caller works on the piece before, so that the copy out
//! of the page cache (or the wait on the disk) overlaps the work. The cleaner reads its
//! dirty range this way in both passes of a cleaning ([`scan_batches`]), and the offsets
//! store its partition when it loads it ([`ReadAhead`], which lasts from one load step to
//! the next); without the overlap the reads alone cost as much as everything else.
//!
//! The reader cuts every piece at a batch boundary, walking only the batch lengths, and
//! carries a batch that straddles two pieces over into the next; so the caller parses
//! whole batches in place, never copying one. A range's last piece goes out whole, torn
//! tail and all, and the caller's parse reports what is wrong with it.
//!
//! While the caller is busy, the reader may also do work of the caller's on the pieces it
//! has read (a load decodes the records), so that two cores share it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::FileSlice;
use crate::error::{Error, Result};
use crate::record::{batch_size, batches, Batch, BatchError};

/// Bytes read from a file per step, unless the caller says otherwise.
pub const SCAN_BYTES: usize = 1 << 20;
/// Pieces read ahead of the one the caller works on.
const READ_AHEAD: usize = 3;
/// Buffers in flight: the caller's piece, the queued ones and the one being read.
const BUFFERS: usize = READ_AHEAD + 2;

/// Limits a scan's reads, and the writes counted with them through its
/// [`Throttle::meter`], to `bytes_per_second` together (the cleaner's is Kafka's
/// `log.cleaner.io.max.bytes.per.second`, reads plus writes), by sleeping.
#[derive(Debug)]
pub struct Throttle {
    bytes_per_second: f64,
    started: Instant,
    bytes: u64,
    /// Bytes counted through meters, on whatever thread: paid for by the next wait.
    metered: Arc<AtomicU64>,
}

/// Counts bytes (a cleaning's writes, on another thread than the reads its throttle
/// paces) towards a [`Throttle`]'s rate.
#[derive(Debug, Clone)]
pub struct ThrottleMeter(Arc<AtomicU64>);

impl ThrottleMeter {
    pub fn add(&self, bytes: u64) {
        self.0.fetch_add(bytes, Ordering::Relaxed);
    }
}

impl Throttle {
    /// A throttle at `bytes_per_second`; an infinite, zero or negative rate does not limit,
    /// and a positive rate below one byte a second counts as one (below that, the waits of
    /// a cleaning would not fit a `Duration`, whose conversion panics).
    pub fn new(bytes_per_second: f64) -> Throttle {
        let bytes_per_second = match bytes_per_second {
            r if r > 0.0 && r.is_finite() => r.max(1.0),
            r => r,
        };
        Throttle {
            bytes_per_second,
            started: Instant::now(),
            bytes: 0,
            metered: Arc::default(),
        }
    }

    /// A throttle that never waits.
    pub fn unlimited() -> Throttle {
        Throttle::new(f64::INFINITY)
    }

    /// A meter whose bytes count with this throttle's own.
    pub fn meter(&self) -> ThrottleMeter {
        ThrottleMeter(self.metered.clone())
    }

    /// When the bytes counted so far are due, at the rate, from the throttle's start.
    fn due(&self) -> Option<Duration> {
        if !self.bytes_per_second.is_finite() || self.bytes_per_second <= 0.0 {
            return None;
        }
        let bytes = self.bytes + self.metered.load(Ordering::Relaxed);
        Some(Duration::from_secs_f64(
            bytes as f64 / self.bytes_per_second,
        ))
    }

    /// Counts `bytes`, then sleeps until everything counted is due.
    pub(crate) fn account(&mut self, bytes: u64) {
        self.bytes += bytes;
        if let Some(wait) = self
            .due()
            .and_then(|d| d.checked_sub(self.started.elapsed()))
        {
            std::thread::sleep(wait);
        }
    }
}

/// Read buffers kept from one scan to the next, each with the room its reader's
/// preparation of a piece uses (see [`ReadAhead`]).
#[derive(Debug, Default)]
pub struct ScanBuffers<P = ()> {
    free: Vec<(Vec<u8>, P)>,
}

/// A run of whole batches of one range, at `buf[..len]`, and what the reader's
/// preparation made of them, if it prepared them.
struct Piece<P> {
    buf: Vec<u8>,
    len: usize,
    prepared: P,
    ready: bool,
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
    let pace = std::mem::replace(throttle, Throttle::unlimited());
    let kept = std::mem::take(buffers);
    let no_preparation = |_: &[u8], _: &mut ()| {};
    let mut ahead = ReadAhead::start(ranges.to_vec(), piece_bytes, kept, pace, no_preparation)?;
    let walked = loop {
        let mut more = true;
        let next = ahead.next(|piece, _| {
            more = walk(piece, &mut f)?;
            Ok(())
        });
        match next {
            Ok(true) if more => {}
            Ok(_) => break Ok(()),
            Err(err) => break Err(err),
        }
    };
    (*buffers, *throttle) = ahead.finish()?;
    walked
}

/// A helper thread that reads file ranges ahead of the caller, one piece of whole
/// batches at a time, in a few buffers that go round between the two.
///
/// The reader also runs `prepare` on a piece it has read when the caller has one waiting
/// already (it is busy, so preparing costs it nothing), and the caller gets what it
/// made; else the caller gets the piece alone (`None`). So work that needs only a
/// piece's bytes divides itself between the two threads: the caller does it for the
/// pieces the reader had no time for.
pub struct ReadAhead<P> {
    full: Option<Receiver<Result<Piece<P>>>>,
    free: Option<SyncSender<(Vec<u8>, P)>>,
    /// Pieces sent that the caller has not taken yet.
    queued: Arc<AtomicUsize>,
    /// Set by the reader once it read every range or sent its error: a channel closed
    /// without it means the reader died.
    finished: Arc<AtomicBool>,
    /// Ends with the buffers it held and the throttle.
    reader: Option<JoinHandle<(ScanBuffers<P>, Throttle)>>,
    /// The buffers and throttle of a read-ahead with nothing to read.
    idle: Option<(ScanBuffers<P>, Throttle)>,
}

impl<P: Default + Send + 'static> ReadAhead<P> {
    /// Starts reading `ranges` (each starting at a batch boundary) in pieces of
    /// `piece_bytes` (more for a batch larger than that), into `buffers`, paced by
    /// `throttle`.
    pub fn start(
        ranges: Vec<FileSlice>,
        piece_bytes: usize,
        mut buffers: ScanBuffers<P>,
        mut throttle: Throttle,
        prepare: impl FnMut(&[u8], &mut P) + Send + 'static,
    ) -> Result<ReadAhead<P>> {
        let largest = ranges.iter().map(FileSlice::len).max().unwrap_or(0);
        let piece_len = piece_bytes.min(usize::try_from(largest).unwrap_or(piece_bytes));
        let queued = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicBool::new(false));
        if piece_len == 0 {
            return Ok(ReadAhead {
                full: None,
                free: None,
                queued,
                finished,
                reader: None,
                idle: Some((buffers, throttle)),
            });
        }
        let (free_tx, free_rx) = sync_channel::<(Vec<u8>, P)>(BUFFERS);
        for _ in 0..BUFFERS {
            let (mut buf, prepared) = buffers.free.pop().unwrap_or_default();
            if buf.len() < piece_len {
                buf.resize(piece_len, 0);
            }
            // Never fails nor blocks: the channel has room for every buffer, and its
            // receiver is at hand.
            let _ = free_tx.send((buf, prepared));
        }
        let (full_tx, full_rx) = sync_channel::<Result<Piece<P>>>(READ_AHEAD);
        let reader = Reader {
            free: free_rx,
            queued: queued.clone(),
            finished: finished.clone(),
            full: full_tx,
            prepare,
        };
        let path = ranges
            .first()
            .map(|r| r.file().path().to_path_buf())
            .unwrap_or_default();
        let handle = std::thread::Builder::new()
            .name("partlog-read-ahead".into())
            .spawn(move || {
                let free = reader.run(&ranges, &mut throttle);
                (ScanBuffers { free }, throttle)
            })
            .map_err(|e| Error::io("start a read-ahead thread for", path, e))?;
        Ok(ReadAhead {
            full: Some(full_rx),
            free: Some(free_tx),
            queued,
            finished,
            reader: Some(handle),
            idle: None,
        })
    }

    /// Calls `f` with the next piece and what the reader made of it, if anything;
    /// false, without calling it, once every range was read.
    pub fn next(&mut self, f: impl FnOnce(&[u8], Option<&P>) -> Result<()>) -> Result<bool> {
        let (Some(full), Some(free)) = (&self.full, &self.free) else {
            return Ok(false);
        };
        let Ok(piece) = full.recv() else {
            if self.finished.load(Ordering::Acquire) {
                return Ok(false);
            }
            return Err(Error::InvalidConfig(
                "the read-ahead thread died before the end of its ranges".into(),
            ));
        };
        self.queued.fetch_sub(1, Ordering::AcqRel);
        let piece = piece?;
        let prepared = piece.ready.then_some(&piece.prepared);
        let result = f(&piece.buf[..piece.len], prepared);
        // The buffers go back whatever happened: the reader reuses them, or hands them
        // back once it is done (the channel has room for every buffer).
        let _ = free.send((piece.buf, piece.prepared));
        result.map(|()| true)
    }

    /// Stops the reader; returns the buffers and the throttle, for another scan.
    pub fn finish(mut self) -> Result<(ScanBuffers<P>, Throttle)> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(ScanBuffers<P>, Throttle)> {
        if let Some(idle) = self.idle.take() {
            return Ok(idle);
        }
        // A reader still ahead stops once it finds no free buffer (after at most the
        // ones queued for it); what it sent meanwhile comes back here, what it holds
        // comes back when it ends.
        drop(self.free.take());
        let mut buffers = ScanBuffers::default();
        if let Some(full) = self.full.take() {
            let sent = full.iter().filter_map(|piece| piece.ok());
            buffers.free.extend(sent.map(|p| (p.buf, p.prepared)));
        }
        let Some(reader) = self.reader.take() else {
            return Ok((buffers, Throttle::unlimited()));
        };
        let (held, throttle) = reader
            .join()
            .map_err(|_| Error::InvalidConfig("read-ahead thread panicked".into()))?;
        buffers.free.extend(held.free);
        Ok((buffers, throttle))
    }
}

impl<P> Drop for ReadAhead<P> {
    fn drop(&mut self) {
        // Closing both channels ends the reader at its next send or wait for a buffer.
        drop(self.free.take());
        drop(self.full.take());
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl<P> std::fmt::Debug for ReadAhead<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadAhead")
            .field("queued", &self.queued.load(Ordering::Relaxed))
            .field("reading", &self.reader.is_some())
            .finish()
    }
}

/// Calls `f` with each batch of `bytes`; false when `f` asked to stop.
fn walk(bytes: &[u8], f: &mut impl FnMut(&Batch<'_>) -> Result<bool>) -> Result<bool> {
    for batch in batches(bytes) {
        if !f(&batch?)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The reading side: fills free buffers from the ranges, cuts them at batch boundaries,
/// prepares them and sends them on.
struct Reader<P, F> {
    free: Receiver<(Vec<u8>, P)>,
    /// Pieces sent that the caller has not taken yet.
    queued: Arc<AtomicUsize>,
    /// Set once every range was read or the error sent (not when it panics).
    finished: Arc<AtomicBool>,
    full: SyncSender<Result<Piece<P>>>,
    prepare: F,
}

impl<P, F: FnMut(&[u8], &mut P)> Reader<P, F> {
    /// Reads every range; returns the buffers it still holds once the caller closed both
    /// channels (or it is done).
    fn run(mut self, ranges: &[FileSlice], throttle: &mut Throttle) -> Vec<(Vec<u8>, P)> {
        let mut held = Vec::new();
        if let Err(err) = self.read_ranges(ranges, throttle, &mut held) {
            let _ = self.full.send(Err(err)); // a caller that stopped does not need it
        }
        self.finished.store(true, Ordering::Release);
        drop(self.full);
        held.extend(self.free.iter());
        held
    }

    /// Sends `buf[..len]` as a piece, prepared first when the caller has a piece waiting
    /// already (it is busy: preparing costs it nothing); false, keeping the buffers in
    /// `held`, when the caller stopped.
    fn send(
        &mut self,
        (buf, mut prepared): (Vec<u8>, P),
        len: usize,
        held: &mut Vec<(Vec<u8>, P)>,
    ) -> bool {
        let ready = self.queued.load(Ordering::Acquire) > 0;
        if ready {
            (self.prepare)(&buf[..len], &mut prepared);
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        let piece = Piece {
            buf,
            len,
            prepared,
            ready,
        };
        match self.full.send(Ok(piece)) {
            Ok(()) => true,
            Err(unsent) => {
                held.extend(unsent.0.ok().map(|p| (p.buf, p.prepared)));
                false
            }
        }
    }

    fn read_ranges(
        &mut self,
        ranges: &[FileSlice],
        throttle: &mut Throttle,
        held: &mut Vec<(Vec<u8>, P)>,
    ) -> Result<()> {
        for range in ranges {
            let size = range.position() + range.len(); // where the range ends in its file
            let file = range.file();
            let Ok((mut buf, mut prepared)) = self.free.recv() else {
                return Ok(()); // the caller stopped
            };
            let mut filled = 0usize; // bytes at the start of `buf` carried over or read
            let mut pos = range.position(); // the file position of `buf[filled]`
            loop {
                let room = (buf.len() - filled) as u64;
                let want = room.min(size - pos) as usize;
                if let Err(err) = file.read_exact_at(&mut buf[filled..filled + want], pos) {
                    held.push((buf, prepared));
                    return Err(err);
                }
                throttle.account(want as u64);
                pos += want as u64;
                filled += want;
                if pos == size {
                    if !self.send((buf, prepared), filled, held) {
                        return Ok(());
                    }
                    break;
                }
                let end = match cut(&buf[..filled]) {
                    Cut::Whole(end) => end,
                    Cut::Bad => filled, // sent whole: the caller's parse says what is wrong
                    Cut::Needs(batch) => {
                        // One batch larger than the buffer: make room for it, up to the
                        // rest of the range (a torn length may claim more).
                        let most = filled + (size - pos) as usize;
                        buf.resize(batch.max(buf.len() * 2).min(most), 0);
                        continue;
                    }
                };
                let Ok((mut next, next_prepared)) = self.free.recv() else {
                    held.push((buf, prepared));
                    return Ok(());
                };
                let tail = filled - end;
                if next.len() < tail {
                    next.resize(tail, 0);
                }
                next[..tail].copy_from_slice(&buf[end..filled]);
                if !self.send((buf, prepared), end, held) {
                    held.push((next, next_prepared));
                    return Ok(());
                }
                (buf, prepared) = (next, next_prepared);
                filled = tail;
            }
        }
        Ok(())
    }
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

    /// A meter's bytes count with the throttle's own: a cleaning's writes, counted on
    /// the cleaner's thread, are paid for by the read-ahead's next wait. Only the reads
    /// were counted, so a cleaning that kept most of its bytes ran at twice the limit.
    #[test]
    fn metered_bytes_count_towards_the_rate() {
        let mut throttle = Throttle::new(1e6);
        let meter = throttle.meter();
        throttle.bytes += 1_000;
        meter.add(3_000);
        assert_eq!(throttle.due(), Some(Duration::from_millis(4)));
        let moved = std::mem::replace(&mut throttle, Throttle::unlimited());
        meter.add(1_000);
        assert_eq!(
            moved.due(),
            Some(Duration::from_millis(5)),
            "moved, still metered"
        );
        assert_eq!(Throttle::unlimited().due(), None);
        // An absurdly small rate counts as a byte a second: its waits overflowed a
        // `Duration` and panicked the read-ahead thread.
        let mut tiny = Throttle::new(1e-300);
        tiny.bytes = 1 << 30;
        assert_eq!(tiny.due(), Some(Duration::from_secs(1 << 30)));
        for off in [0.0, -1.0, f64::NAN] {
            assert_eq!(Throttle::new(off).due(), None, "{off}");
        }
    }
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

    /// The reader prepares the pieces it reads while the caller is busy (here: slow);
    /// every piece comes once, in order, prepared or not, and what was prepared is what
    /// the caller would make of the piece itself.
    #[test]
    fn a_busy_caller_gets_pieces_the_reader_prepared() {
        let sim = SimStorage::new(7);
        let log = log(&sim);
        let expected: Vec<u8> = all_batches(&log).concat();
        let count = |piece: &[u8], out: &mut usize| *out = batches(piece).count();
        let mut ahead = ReadAhead::start(
            whole(&log),
            1_000,
            ScanBuffers::default(),
            Throttle::unlimited(),
            count,
        )
        .expect("start");
        let (mut seen, mut prepared) = (Vec::new(), 0);
        while ahead
            .next(|piece, made| {
                if let Some(&made) = made {
                    let mut own = 0;
                    count(piece, &mut own);
                    assert_eq!(made, own, "prepared as the caller would");
                    prepared += 1;
                }
                seen.extend_from_slice(piece);
                std::thread::sleep(std::time::Duration::from_micros(200));
                Ok(())
            })
            .expect("next")
        {}
        assert_eq!(seen, expected);
        assert!(prepared > 0, "a slow caller gets prepared pieces");
        let (buffers, _) = ahead.finish().expect("finish");
        assert_eq!(buffers.free.len(), BUFFERS, "every buffer comes back");
    }

    /// A reader that dies half way (here: its preparation panics) is an error for the
    /// caller, not the end of the ranges: a load would otherwise call itself complete.
    #[test]
    fn a_reader_that_dies_is_an_error_not_the_end() {
        let sim = SimStorage::new(7);
        let log = log(&sim);
        let dies = |_: &[u8], _: &mut ()| panic!("preparation fails");
        let mut ahead = ReadAhead::start(
            whole(&log),
            1_000,
            ScanBuffers::default(),
            Throttle::unlimited(),
            dies,
        )
        .expect("start");
        // A slow caller makes the reader prepare its second piece, and die.
        let mut outcome = Ok(true);
        while let Ok(true) = outcome {
            outcome = ahead.next(|_, _| {
                std::thread::sleep(std::time::Duration::from_millis(5));
                Ok(())
            });
        }
        assert!(outcome.is_err(), "{outcome:?}");
        assert!(ahead.finish().is_err(), "the panic is reported again");
    }

    /// A read-ahead dropped half way, or with nothing to read, ends its thread.
    #[test]
    fn a_read_ahead_dropped_early_ends() {
        let sim = SimStorage::new(7);
        let log = log(&sim);
        for taken in [0, 1, 5] {
            let mut ahead = ReadAhead::<()>::start(
                whole(&log),
                1_000,
                ScanBuffers::default(),
                Throttle::unlimited(),
                |_, _| {},
            )
            .expect("start");
            for _ in 0..taken {
                assert!(ahead.next(|_, _| Ok(())).expect("next"));
            }
            drop(ahead);
        }
        let mut empty = ReadAhead::<()>::start(
            Vec::new(),
            1_000,
            ScanBuffers::default(),
            Throttle::unlimited(),
            |_, _| {},
        )
        .expect("start");
        assert!(!empty.next(|_, _| Ok(())).expect("next"), "nothing to read");
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
