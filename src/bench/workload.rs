//! The workloads themselves, shared by `partlog bench` and the criterion benches so both
//! measure the same thing. Each log workload has a raw twin that moves the same bytes with
//! the same syscalls (`pwrite`/`pread` through [`RealStorage`]) and nothing else.

use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::checkpoint::TopicPartition;
use crate::config::LogConfig;
use crate::error::Result;
use crate::io::real::RealStorage;
use crate::io::{OpenMode, Storage, StorageFile};
use crate::log::{Log, LogOpenOptions, RecoveryReport};
use crate::manager::{LogDir, LogDirOptions};
use crate::record::{self, BatchBuilder};
use crate::segment::{self, files};

/// Bytes per fetch and per raw `pread`.
pub const FETCH_BYTES: usize = 1 << 20;
/// The partition the log workloads write.
pub const TOPIC: &str = "bench";

/// The batches of an append workload: `records` records of about `record_bytes` each
/// (length prefix included), no key, no headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub records: usize,
    pub record_bytes: usize,
}

/// 16 records of 1 KiB: 16 KiB batches, the main append workload.
pub const LARGE: Shape = Shape {
    records: 16,
    record_bytes: 1024,
};
/// 1,000 records of 100 bytes: small records, where the record walk dominates.
pub const SMALL: Shape = Shape {
    records: 1000,
    record_bytes: 100,
};

impl Shape {
    /// Value length that makes a record about `record_bytes` (length varint 1-2,
    /// attributes 1, timestamp and offset delta varints 1-2 each, null key 1, value length
    /// varint 1-2, header count 1).
    fn value_bytes(self) -> usize {
        self.record_bytes.saturating_sub(9).max(1)
    }
}

/// One uncompressed batch of the [`LARGE`] shape.
pub fn sample_batch() -> Vec<u8> {
    let mut builder = BatchBuilder::new();
    let mut out = Vec::new();
    build_batch(&mut builder, now_ms(), &mut out);
    out
}

/// `count` distinct batches of `shape`, back to back, all the same length; returns the
/// bytes and that length. Every value holds different bytes (a cheap generator), so an
/// append meets bytes it has not seen, as a broker's does; reusing one buffer would keep
/// the CRC and the record walk in the CPU cache. Built before anything is timed.
pub fn corpus(shape: Shape, count: usize) -> (Vec<u8>, usize) {
    let mut builder = BatchBuilder::new();
    let mut value = vec![0u8; shape.value_bytes()];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let now = now_ms();
    let mut out = Vec::new();
    let mut batch_len = 0;
    for b in 0..count {
        for i in 0..shape.records {
            for chunk in value.chunks_mut(8) {
                // xorshift64: fast, and every batch differs.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
            }
            builder.append(now + i as i64, None, Some(&value), &[]);
        }
        let at = out.len();
        if let Err(e) = builder.build_into(&mut out) {
            unreachable!("bench batch does not build: {e}");
        }
        let len = out.len() - at;
        debug_assert!(
            b == 0 || len == batch_len,
            "batches of one shape differ in length"
        );
        batch_len = len;
    }
    (out, batch_len)
}

/// Wall-clock time for record timestamps: old timestamps would make the log roll on
/// `segment_ms` at every append.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Encodes one [`LARGE`] batch into `out` with `builder` (the record-building workload).
pub fn build_batch(builder: &mut BatchBuilder, timestamp_ms: i64, out: &mut Vec<u8>) {
    let value = vec![b'x'; LARGE.value_bytes()];
    for i in 0..LARGE.records {
        builder.append(timestamp_ms + i as i64, None, Some(&value), &[]);
    }
    // The builder cannot fail on this fixed, small input.
    if let Err(e) = builder.build_into(out) {
        unreachable!("sample batch does not build: {e}");
    }
}

/// Validates every batch in `bytes` the way a leader append does (CRC + records).
pub fn validate_batches(bytes: &[u8]) -> Result<usize> {
    let mut n = 0;
    for batch in record::batches(bytes) {
        batch?.validate()?;
        n += 1;
    }
    Ok(n)
}

/// The real storage, as the engine takes it.
pub fn storage() -> Arc<dyn Storage> {
    RealStorage::shared()
}

/// The partition directory of the bench log under `root`.
pub fn partition_dir(root: &Path) -> PathBuf {
    root.join(TopicPartition::new(TOPIC, 0).dir_name())
}

/// Options to open the bench log in `dir` with `config`.
pub fn open_options(dir: &Path, config: LogConfig) -> LogOpenOptions {
    let mut options = LogOpenOptions::new(storage(), dir);
    options.config = config;
    options
}

/// Opens a fresh bench log in `dir` with Kafka's default config.
pub fn create_log(dir: &Path) -> Result<Log> {
    Ok(Log::open(open_options(dir, LogConfig::default()))?.0)
}

/// Appends the batches of `corpus` (each `batch_len` bytes) to `log`, one leader append
/// per batch, as a broker appends produce requests. The append patches offsets and epoch
/// into the corpus in place (outside the CRC, so it stays valid for another round).
pub fn append_batches(log: &Log, corpus: &mut [u8], batch_len: usize) -> Result<()> {
    for batch in corpus.chunks_exact_mut(batch_len) {
        log.append_as_leader(batch, 1)?;
    }
    Ok(())
}

/// Appends `corpus` to a fresh log in `dir`, no fsync. Returns the log (still open) so the
/// read workload can use it, rolled so that its files hold its batches and nothing else
/// (the active segment keeps zeros written ahead of its end), as the raw twins that read
/// [`segment_files`] expect.
pub fn append_log(dir: &Path, corpus: &mut [u8], batch_len: usize) -> Result<Log> {
    let log = create_log(dir)?;
    append_batches(&log, corpus, batch_len)?;
    log.force_roll()?;
    Ok(log)
}

/// Creates the raw twin's file at `path`, which must not exist.
pub fn create_raw(path: &Path) -> Result<Arc<dyn StorageFile>> {
    storage().open(path, OpenMode::CreateNew)
}

/// Writes the batches of `corpus` into `file` from `pos` on, one `pwrite` per batch: the
/// raw twin of [`append_batches`]. Returns the position after.
pub fn write_batches(
    file: &dyn StorageFile,
    mut pos: u64,
    corpus: &[u8],
    batch_len: usize,
) -> Result<u64> {
    for batch in corpus.chunks_exact(batch_len) {
        file.write_at(batch, pos)?;
        pos += batch.len() as u64;
    }
    Ok(pos)
}

/// [`write_batches`] with the log's own trick: a write that passes `*prefilled` also
/// writes zeros up to the next [`segment::PREFILL_BYTES`] boundary, in the same
/// `pwritev`, so that later batches land on pages already in the page cache (see
/// `segment::PREFILL_BYTES`). The twin a raw writer as clever as the log would be.
pub fn write_batches_prefilled(
    file: &dyn StorageFile,
    mut pos: u64,
    prefilled: &mut u64,
    corpus: &[u8],
    batch_len: usize,
) -> Result<u64> {
    for batch in corpus.chunks_exact(batch_len) {
        let end = pos + batch.len() as u64;
        if end > *prefilled {
            let to = end.next_multiple_of(segment::PREFILL_BYTES);
            let zeros = &segment::ZEROS[..(to - end) as usize];
            file.write_all_vectored_at(&[batch, zeros], pos)?;
            *prefilled = to;
        } else {
            file.write_at(batch, pos)?;
        }
        pos = end;
    }
    Ok(pos)
}

/// Writes `corpus` batch by batch into a new file: the raw twin of [`append_log`]. Returns
/// the open file, so that callers can close it outside the timed part just as the log
/// stays open (on ext4, closing a freshly written file may start allocating its blocks,
/// which is not what the append is measured for).
pub fn write_raw(path: &Path, corpus: &[u8], batch_len: usize) -> Result<Arc<dyn StorageFile>> {
    let file = create_raw(path)?;
    write_batches(file.as_ref(), 0, corpus, batch_len)?;
    Ok(file)
}

/// Fetches the whole log from its start with [`FETCH_BYTES`] fetches, copying each slice
/// into `buf` (at least [`FETCH_BYTES`] long). Returns the bytes read.
pub fn read_log(log: &Log, buf: &mut [u8]) -> Result<u64> {
    let mut next = log.log_start_offset();
    let mut total = 0u64;
    while let Some((len, after)) = fetch(log, next, buf)? {
        next = after;
        total += len as u64;
    }
    Ok(total)
}

/// One fetch of up to [`FETCH_BYTES`] from `from`, copied into `buf`: the bytes read and
/// the offset to fetch next, or `None` at the log end.
pub fn fetch(log: &Log, from: i64, buf: &mut [u8]) -> Result<Option<(usize, i64)>> {
    let Some(slice) = log.read(from, FETCH_BYTES as u64, None)? else {
        return Ok(None);
    };
    let len = slice.len() as usize;
    slice.read_to(&mut buf[..len])?;
    Ok(Some((len, next_offset_after(&buf[..len])?)))
}

/// The offset after the last batch in `bytes` (whole batches), by hopping headers.
fn next_offset_after(bytes: &[u8]) -> Result<i64> {
    let mut at = 0usize;
    let mut next = 0i64;
    while at < bytes.len() {
        let header = record::BatchHeader::parse(&bytes[at..])?;
        next = header.next_offset();
        at += header.size();
    }
    Ok(next)
}

/// The `.log` files of the partition in `dir`, oldest first.
pub fn segment_files(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(storage()
        .list_dir(dir)?
        .into_iter()
        .filter(|e| !e.is_dir && e.name.ends_with(files::LOG_SUFFIX))
        .map(|e| dir.join(e.name))
        .collect())
}

/// The [`FETCH_BYTES`] pieces `paths` divide into, in order: what the raw twins read.
pub fn raw_chunks(paths: &[PathBuf]) -> Result<Vec<RawChunk>> {
    let storage = storage();
    let mut out = Vec::new();
    for path in paths {
        let file = storage.open(path, OpenMode::Read)?;
        let len = file.len()?;
        let mut pos = 0u64;
        while pos < len {
            let n = ((len - pos) as usize).min(FETCH_BYTES);
            out.push(RawChunk {
                file: file.clone(),
                pos,
                len: n,
            });
            pos += n as u64;
        }
    }
    Ok(out)
}

/// One raw `pread` of the raw read twins.
#[derive(Debug, Clone)]
pub struct RawChunk {
    pub file: Arc<dyn StorageFile>,
    pub pos: u64,
    pub len: usize,
}

impl RawChunk {
    /// Reads the chunk into the start of `buf` and returns those bytes.
    pub fn read<'b>(&self, buf: &'b mut [u8]) -> Result<&'b [u8]> {
        self.file.read_exact_at(&mut buf[..self.len], self.pos)?;
        Ok(&buf[..self.len])
    }
}

/// Reads `paths` whole with [`FETCH_BYTES`] preads into `buf`, handing each chunk to `f`:
/// the raw twin of the read and recovery workloads. Returns the bytes read.
pub fn pread_files(paths: &[PathBuf], buf: &mut [u8], mut f: impl FnMut(&[u8])) -> Result<u64> {
    let mut total = 0u64;
    for chunk in raw_chunks(paths)? {
        f(chunk.read(buf)?);
        total += chunk.len as u64;
    }
    Ok(total)
}

/// Raw read plus CRC-32C of `paths`: what recovery can at best do. Returns bytes read and
/// the CRC (so the work cannot be optimised away).
pub fn read_crc_raw(paths: &[PathBuf], buf: &mut [u8]) -> Result<(u64, u32)> {
    // The same CRC-32C implementation the log uses, so the ratio compares like with like.
    let mut crc = crate::record::Crc32c::new();
    let total = pread_files(paths, buf, |chunk| crc.update(chunk))?;
    Ok((total, crc.finish()))
}

/// Opens the log in `dir` as after a crash with no recovery point: every segment is
/// validated and its indexes rebuilt.
pub fn recover_log(dir: &Path) -> Result<(Log, RecoveryReport)> {
    let mut options = open_options(dir, LogConfig::default());
    options.recovery_point = Some(0);
    options.clean_shutdown = false;
    Log::open(options)
}

/// Builds a log dir under `root` whose partition has `segments` small segments, then shuts
/// it down cleanly (checkpoints and marker).
pub fn build_segments(root: &Path, segments: usize) -> Result<()> {
    let dir = LogDir::open(storage(), root, LogDirOptions::default())?;
    let (log, _) = dir.open_log(&TopicPartition::new(TOPIC, 0))?;
    let mut batch = Vec::new();
    let mut builder = BatchBuilder::new();
    builder.append(now_ms(), None, Some(b"segment"), &[]);
    builder.build_into(&mut batch)?;
    for i in 0..segments {
        if i > 0 {
            log.force_roll()?;
        }
        log.append_as_leader(&mut batch, 1)?;
    }
    drop(log);
    dir.close()
}

/// Opens the cleanly shut down log dir at `root` and its bench partition, then closes it
/// cleanly again. Returns the segment count and the time the open took.
pub fn open_clean(root: &Path) -> Result<(usize, std::time::Duration)> {
    let start = std::time::Instant::now();
    let dir = LogDir::open(storage(), root, LogDirOptions::default())?;
    let (log, report) = dir.open_log(&TopicPartition::new(TOPIC, 0))?;
    let took = start.elapsed();
    debug_assert!(report.clean_shutdown);
    let segments = log.segment_count();
    drop(log);
    dir.close()?;
    Ok((segments, took))
}

/// Removes `path` and everything under it, through the storage layer. Missing is fine.
pub fn remove_tree(path: &Path) -> Result<()> {
    let storage = storage();
    if !storage.exists(path) {
        return Ok(());
    }
    for entry in storage.list_dir(path)? {
        let child = path.join(&entry.name);
        if entry.is_dir {
            remove_tree(&child)?;
        } else {
            storage.remove_file(&child)?;
        }
    }
    storage.remove_dir(path)
}

/// Removes the file at `path` if there is one, through the storage layer.
pub fn remove_file(path: &Path) -> Result<()> {
    let storage = storage();
    if storage.exists(path) {
        storage.remove_file(path)?;
    }
    Ok(())
}

/// Bytes each thread copies, [`COPIES`] times a pass, in [`parallel_copy_ratio`]: more
/// than the caches hold, so that the copies go to memory.
const COPY_BYTES: usize = 32 << 20;
/// Copies a pass: long enough (tens of milliseconds) for the scheduler to have put two
/// threads on two cores, as it has the long-lived threads of the workloads.
const COPIES: usize = 8;
/// Passes alone and side by side; the best of each counts.
const COPY_PASSES: usize = 3;

/// How fast each of two threads copies memory while the other does too, against one
/// thread alone: near 1 when two cores work independently, near 0.5 when the two threads
/// share one core's throughput (a VM whose vCPUs sit on one physical core's hyperthreads,
/// another load on the machine, or memory bandwidth one thread already fills). The
/// workloads that run threads side by side (the `acks` workload's replicas, the offsets
/// load's reader and replay) depend on it; a bench reports it next to them, so that a low
/// figure can be told from a slow machine.
pub fn parallel_copy_ratio() -> f64 {
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..2u8)
        .map(|i| (vec![i + 1; COPY_BYTES], vec![0u8; COPY_BYTES]))
        .collect();
    let copies = |(src, dst): &mut (Vec<u8>, Vec<u8>)| {
        let start = Instant::now();
        for _ in 0..COPIES {
            dst.copy_from_slice(src);
            std::hint::black_box(&dst);
        }
        start.elapsed()
    };
    for pair in &mut pairs {
        pair.1.copy_from_slice(&pair.0); // fault the pages in first
    }
    let (mut alone, mut side_by_side) = (Duration::MAX, Duration::MAX);
    for _ in 0..COPY_PASSES {
        alone = alone.min(copies(&mut pairs[0]));
        let barrier = Barrier::new(2);
        let slowest = thread::scope(|s| {
            let handles: Vec<_> = pairs
                .iter_mut()
                .map(|pair| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        copies(pair)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(Duration::MAX))
                .max()
                .unwrap_or(Duration::MAX)
        });
        side_by_side = side_by_side.min(slowest);
    }
    alone.as_secs_f64() / side_by_side.as_secs_f64().max(1e-9)
}

/// Bytes [`fresh_page_write_ratio`] writes, twice.
const FRESH_WRITE_BYTES: u64 = 32 << 20;

/// How fast `pwrite` fills page-cache pages the kernel allocates for a new file, against
/// the same writes over the pages it then has: about 0.4 on the 2-core VM of the README
/// when the new pages are memory freed a moment before, 0.2 and below where each new page
/// also faults on the hypervisor (a VM whose balloon hands free memory back to its host:
/// the next touch of that memory traps to the host). Every workload that writes through the page cache pays it, its raw twin
/// too; a bench reports it at the start and right before the cleaning (whose output once
/// went through the page cache), so that slow writes can be told from slow code.
pub fn fresh_page_write_ratio(dir: &Path) -> Result<f64> {
    let path = dir.join("fresh-page-probe");
    remove_file(&path)?;
    let file = create_raw(&path)?;
    let chunk = vec![5u8; 1 << 20];
    let write_all = || -> Result<Duration> {
        let start = Instant::now();
        for at in (0..FRESH_WRITE_BYTES).step_by(chunk.len()) {
            file.write_at(&chunk, at)?;
        }
        Ok(start.elapsed())
    };
    let fresh = write_all()?;
    let resident = write_all()?;
    drop(file);
    remove_file(&path)?;
    Ok(resident.as_secs_f64() / fresh.as_secs_f64().max(1e-9))
}

/// Bytes of a piece in [`handoff_copy_ratio`]: the offsets load's read-ahead pieces.
const HANDOFF_PIECE_BYTES: usize = 256 << 10;
/// Buffers going round in [`handoff_copy_ratio`], as in the load's read-ahead.
const HANDOFF_BUFFERS: usize = 5;

/// How fast a thread copies 32 MiB into a few 256 KiB buffers that another thread
/// reads in turn before handing them back, against the same copies into buffers nobody
/// else reads: near 1 when two cores pass cache lines to each other cheaply, far below
/// when each line the copy writes must first be taken back from the other core slowly
/// (cores on different dies or sockets). The offsets load's reader and replay hand their
/// pieces round this way; a bench reports this next to the load, so that a slow load can
/// be told from a machine whose cores pass data slowly.
pub fn handoff_copy_ratio() -> f64 {
    let src = vec![7u8; COPY_BYTES];
    let (mut alone, mut handed) = (Duration::MAX, Duration::MAX);
    for _ in 0..COPY_PASSES {
        alone = alone.min(copy_round(&src, false));
        handed = handed.min(copy_round(&src, true));
    }
    alone.as_secs_f64() / handed.as_secs_f64().max(1e-9)
}

/// [`COPIES`] passes of copying `src` piece by piece into buffers that go round between
/// this thread and another, which reads a byte of every cache line of each when `read`;
/// the time spent copying.
fn copy_round(src: &[u8], read: bool) -> Duration {
    let (full_tx, full_rx) = sync_channel::<Vec<u8>>(HANDOFF_BUFFERS);
    let (free_tx, free_rx) = sync_channel::<Vec<u8>>(HANDOFF_BUFFERS);
    for _ in 0..HANDOFF_BUFFERS {
        // Never blocks: the channel has room for every buffer.
        let _ = free_tx.send(vec![1u8; HANDOFF_PIECE_BYTES]);
    }
    // The closure owns the sending side: when it returns, the reader's `recv` fails and
    // the reader ends, before the scope joins it.
    thread::scope(move |s| {
        s.spawn(move || {
            while let Ok(buf) = full_rx.recv() {
                if read {
                    let sum = buf.iter().step_by(64).fold(0u8, |a, &b| a.wrapping_add(b));
                    std::hint::black_box(sum);
                }
                if free_tx.send(buf).is_err() {
                    break;
                }
            }
        });
        let mut took = Duration::ZERO;
        for _ in 0..COPIES {
            for piece in src.chunks_exact(HANDOFF_PIECE_BYTES) {
                let Ok(mut buf) = free_rx.recv() else {
                    return Duration::MAX;
                };
                let start = Instant::now();
                buf.copy_from_slice(piece);
                std::hint::black_box(&buf);
                took += start.elapsed();
                if full_tx.send(buf).is_err() {
                    return Duration::MAX;
                }
            }
        }
        took
    })
}
