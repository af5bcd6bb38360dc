//! Zero-copy views of segment bytes handed to readers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::Result;
use crate::io::StorageFile;

/// A byte range of a segment file: what a fetch returns. Holding it keeps the file open,
/// so a broker can `sendfile` from [`FileSlice::raw_fd`] at [`FileSlice::position`] even
/// if retention deletes the segment meanwhile.
#[derive(Debug, Clone)]
pub struct FileSlice {
    file: Arc<dyn StorageFile>,
    position: u64,
    len: u64,
    /// The truncation count of the log the slice was read from, and its value then (see
    /// [`FileSlice::cut_since`]).
    cuts: Option<(Arc<AtomicU64>, u64)>,
}

impl FileSlice {
    pub(crate) fn new(file: Arc<dyn StorageFile>, position: u64, len: u64) -> Self {
        FileSlice {
            file,
            position,
            len,
            cuts: None,
        }
    }

    pub(crate) fn watching(mut self, count: Arc<AtomicU64>, seen: u64) -> Self {
        self.cuts = Some((count, seen));
        self
    }

    /// Whether the log the slice was read from has been cut since, for a slice a leader
    /// answered a fetch with (others are not watched: false). A replica that steps down
    /// cuts its log where it diverged and writes its new leader's batches in the same
    /// place: bytes read from the slice after that, valid batches as they may be, are
    /// not the ones it answered with. Check after reading them.
    pub fn cut_since(&self) -> bool {
        self.cuts
            .as_ref()
            .is_some_and(|(count, seen)| count.load(Ordering::Acquire) != *seen)
    }

    /// Start of the range in the file.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Length of the range in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The file the range lies in.
    pub fn file(&self) -> &Arc<dyn StorageFile> {
        &self.file
    }

    /// The descriptor to `sendfile` from, on the real backend.
    pub fn raw_fd(&self) -> Option<i32> {
        self.file.raw_fd()
    }

    /// Copies the bytes into `buf`, which must be exactly `len()` long.
    pub fn read_to(&self, buf: &mut [u8]) -> Result<()> {
        debug_assert_eq!(buf.len() as u64, self.len);
        self.file.read_exact_at(buf, self.position)
    }

    /// Appends the bytes to `out`.
    pub fn read_into(&self, out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        out.resize(start + self.len as usize, 0);
        self.read_to(&mut out[start..])
    }

    /// The bytes as a new vector.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.read_into(&mut out)?;
        Ok(out)
    }
}
