//! The workloads themselves, shared by `partlog bench` and the criterion benches so both
//! measure the same thing. Each log workload has a raw twin that moves the same bytes with
//! the same syscalls (`pwrite`/`pread` through [`RealStorage`]) and nothing else.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::checkpoint::TopicPartition;
use crate::config::LogConfig;
use crate::error::Result;
use crate::io::real::RealStorage;
use crate::io::{OpenMode, Storage, StorageFile};
use crate::log::{Log, LogOpenOptions, RecoveryReport};
use crate::manager::{LogDir, LogDirOptions};
use crate::record::{self, BatchBuilder};
use crate::segment::files;

/// Records per batch: 16 records of 1 KiB make a 16 KiB batch.
pub const RECORDS_PER_BATCH: usize = 16;
/// Encoded size of one record, length prefix included.
pub const RECORD_BYTES: usize = 1024;
/// Bytes per fetch and per raw `pread`.
pub const FETCH_BYTES: usize = 1 << 20;
/// The partition the log workloads write.
pub const TOPIC: &str = "bench";

/// Value length that makes a record (length varint 2, attributes 1, timestamp delta 1,
/// offset delta 1, null key 1, value length varint 2, header count 1) exactly 1 KiB.
const VALUE_BYTES: usize = RECORD_BYTES - 9;

/// One uncompressed batch of [`RECORDS_PER_BATCH`] records of [`RECORD_BYTES`] each.
pub fn sample_batch() -> Vec<u8> {
    let mut builder = BatchBuilder::new();
    let mut out = Vec::new();
    build_batch(&mut builder, now_ms(), &mut out);
    out
}

/// Wall-clock time for record timestamps: old timestamps would make the log roll on
/// `segment_ms` at every append.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Encodes one sample batch into `out` with `builder` (the record-building workload).
pub fn build_batch(builder: &mut BatchBuilder, timestamp_ms: i64, out: &mut Vec<u8>) {
    let value = [b'x'; VALUE_BYTES];
    for i in 0..RECORDS_PER_BATCH {
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

/// Appends `batch` `count` times to `log`, one leader append per batch. `buf` is the
/// batch's working copy: the append patches offsets and epoch into it in place.
pub fn append_batches(log: &Log, buf: &mut [u8], count: usize) -> Result<()> {
    for _ in 0..count {
        log.append_as_leader(buf, 1)?;
    }
    Ok(())
}

/// Appends `batch` `count` times to a fresh log in `dir`, no fsync. Returns the log (still
/// open) so the read workload can use it.
pub fn append_log(dir: &Path, batch: &[u8], count: usize) -> Result<Log> {
    let log = create_log(dir)?;
    append_batches(&log, &mut batch.to_vec(), count)?;
    Ok(log)
}

/// Creates the raw twin's file at `path`, which must not exist.
pub fn create_raw(path: &Path) -> Result<Arc<dyn StorageFile>> {
    storage().open(path, OpenMode::CreateNew)
}

/// Writes `batch` `count` times into `file` from `pos` on; returns the position after.
pub fn write_batches(
    file: &dyn StorageFile,
    mut pos: u64,
    batch: &[u8],
    count: usize,
) -> Result<u64> {
    for _ in 0..count {
        file.write_at(batch, pos)?;
        pos += batch.len() as u64;
    }
    Ok(pos)
}

/// Writes `batch` `count` times at increasing positions into a new file: the raw twin of
/// [`append_log`]. Returns the open file, so that callers can close it outside the timed
/// part just as the log stays open (on ext4, closing a freshly written file may start
/// allocating its blocks, which is not what the append is measured for).
pub fn write_raw(path: &Path, batch: &[u8], count: usize) -> Result<Arc<dyn StorageFile>> {
    let file = create_raw(path)?;
    write_batches(file.as_ref(), 0, batch, count)?;
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
