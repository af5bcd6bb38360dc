//! Files written once, front to back, then synced: the cleaner's copies of segments.
//!
//! Such bytes are not read again soon (the cleaned segment's readers come later, if at
//! all), so a backend may write them around its page cache, as RocksDB's
//! `use_direct_io_for_flush_and_compaction` does. The real backend does where the file
//! system lets it (see [`super::real`]): the copy then neither evicts pages that readers
//! want nor costs the CPU a copy into pages it allocates, which on a virtual machine whose
//! host takes back free memory (virtio-balloon free page reporting) costs a fault on the
//! host for every page. This module has the plain way, through
//! [`StorageFile::write_at`], which every backend can take.

use std::path::Path;
use std::sync::Arc;

use super::{OpenMode, Storage, StorageFile};
use crate::error::Result;

/// A file being written front to back, made durable by [`StreamFile::finish`].
pub trait StreamFile: Send {
    /// Appends `bytes` after everything appended before.
    fn append(&mut self, bytes: &[u8]) -> Result<()>;
    /// Bytes appended so far.
    fn len(&self) -> u64;
    /// True when nothing was appended.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Writes what is still buffered and syncs the file: when this returns, the file holds
    /// exactly the bytes appended, durably. Returns their number.
    fn finish(self: Box<Self>) -> Result<u64>;
}

/// Creates `path` on `storage`, emptying a leftover, for a [`BufferedStream`]: the way
/// every backend can write a stream.
pub fn buffered_stream<S: Storage + ?Sized>(
    storage: &S,
    path: &Path,
) -> Result<Box<dyn StreamFile>> {
    let file = storage.open(path, OpenMode::Create)?;
    if file.len()? > 0 {
        file.set_len(0)?;
    }
    Ok(Box::new(BufferedStream::new(file)))
}

/// Bytes a [`BufferedStream`] collects before each write.
const CHUNK_BYTES: usize = 1 << 20;

/// A [`StreamFile`] through [`StorageFile::write_at`], a chunk at a time.
pub struct BufferedStream {
    file: Arc<dyn StorageFile>,
    buffer: Vec<u8>,
    written: u64,
}

impl BufferedStream {
    /// A stream into `file`, which must be empty.
    pub fn new(file: Arc<dyn StorageFile>) -> BufferedStream {
        BufferedStream {
            file,
            buffer: Vec::with_capacity(CHUNK_BYTES),
            written: 0,
        }
    }
}

impl StreamFile for BufferedStream {
    fn append(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            let take = (CHUNK_BYTES - self.buffer.len()).min(bytes.len());
            self.buffer.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.buffer.len() == CHUNK_BYTES {
                self.file.write_at(&self.buffer, self.written)?;
                self.written += CHUNK_BYTES as u64;
                self.buffer.clear();
            }
        }
        Ok(())
    }

    fn len(&self) -> u64 {
        self.written + self.buffer.len() as u64
    }

    fn finish(self: Box<Self>) -> Result<u64> {
        if !self.buffer.is_empty() {
            self.file.write_at(&self.buffer, self.written)?;
        }
        self.file.sync_data()?;
        Ok(self.len())
    }
}
