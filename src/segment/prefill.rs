//! The zeros an active segment keeps written ahead of its batches (see the module doc of
//! `segment`): how far an append writes them, how recovery recognises them, and the cut
//! that drops them.

use std::sync::atomic::Ordering;

use super::{Segment, SEGMENT_BYTES_MAX};
use crate::error::Result;
use crate::io::StorageFile;

/// The active segment's file is kept written with zeros up to the next multiple of this
/// past its end. 64 KiB took a 16 KiB append as far as 256 KiB did.
pub const PREFILL_BYTES: u64 = 64 << 10;

/// What the zeros written ahead are copied from.
pub(crate) static ZEROS: [u8; PREFILL_BYTES as usize] = [0; PREFILL_BYTES as usize];

/// Whether the bytes from `pos` to the end of `file` (`file_len` bytes long) are the zeros
/// an active segment keeps written ahead of its batches: zeros, fewer than
/// [`PREFILL_BYTES`] of them, up to a multiple of it. Zeros of any other extent are not
/// what an append writes (unflushed bytes a crash left as zeros are a torn tail).
pub fn zeros_written_ahead(file: &dyn StorageFile, pos: u64, file_len: u64) -> Result<bool> {
    if pos >= file_len || file_len % PREFILL_BYTES != 0 || file_len - pos >= PREFILL_BYTES {
        return Ok(false);
    }
    let mut tail = vec![0u8; (file_len - pos) as usize];
    file.read_exact_at(&mut tail, pos)?;
    Ok(tail.iter().all(|&b| b == 0))
}

impl Segment {
    /// For a segment that recovery trusts without scanning it (below the recovery point)
    /// and whose file ends at a multiple of [`PREFILL_BYTES`]: if its batches (hopping the
    /// headers from the start) end before the file does, with only zeros after them, fewer
    /// than a block, those are zeros written ahead whose trim on roll a crash undid (that
    /// trim is not synced): the file is cut at the batches, durably. Anything else stays as
    /// found, for reads to meet.
    pub(crate) fn cut_zeros_written_ahead(&self) -> Result<()> {
        let file_len = self.size();
        // Only a file that ends at a block's end can; the others are not read.
        if file_len % PREFILL_BYTES != 0 || file_len == 0 {
            return Ok(());
        }
        let mut pos = 0;
        while pos < file_len {
            match self.read_header(pos, file_len) {
                Ok(header) => pos += header.size() as u64,
                Err(_) => break,
            }
        }
        if zeros_written_ahead(self.log.as_ref(), pos, file_len)? {
            self.cut_written_ahead(pos)?;
            self.cut_done(pos)?;
        }
        Ok(())
    }

    /// Cuts the `.log` file to `len`, dropping zeros written ahead of the data, and keeps
    /// its modification time: the time retention ages a segment without timestamps by
    /// ([`Segment::retention_timestamp`]) is its last write of data, as in Kafka, whose
    /// appends write no zeros ahead to cut later (a cut would make a roll look like the
    /// segment's last write, and delay its deletion by as long as it took to fill).
    /// The time is kept at best: a file system that cannot stat or stamp the file ages
    /// the segment from the cut, which fails no roll and no recovery.
    pub(crate) fn cut_written_ahead(&self, len: u64) -> Result<()> {
        let modified = self.log.modified_ms().ok();
        self.log.set_len(len)?;
        if let Some(ms) = modified {
            // At best, as said: an error here costs only a later deletion.
            let _ = self.log.set_modified_ms(ms);
        }
        Ok(())
    }

    /// Where the zeros written ahead should end after an append that ends at `end` in the
    /// active segment: at the next multiple of [`PREFILL_BYTES`], when the append goes
    /// past the zeros already written. The append writes them in the same call as its
    /// batches, so that every block of [`PREFILL_BYTES`] it starts is written whole at
    /// once, and the page cache gives it a large folio; no byte is written twice. `None`
    /// when the append stays inside the zeros, ends on a multiple, or the segment writes
    /// no zeros (not active, or `prefill` off). Never past the last multiple within
    /// [`SEGMENT_BYTES_MAX`]: a segment file longer than that does not open, and
    /// `segment_bytes` may be as large; and zeros that end anywhere but at a multiple are
    /// not recognised as written ahead after a crash ([`zeros_written_ahead`]), so they
    /// would stay in the segment as a torn batch.
    pub(super) fn zeros_ahead(&self, end: u64) -> Option<u64> {
        const LAST_BLOCK_END: u64 = SEGMENT_BYTES_MAX / PREFILL_BYTES * PREFILL_BYTES;
        let filled = self.prefilled.load(Ordering::Relaxed);
        if end <= filled || !self.prefill || !self.preallocate.load(Ordering::Relaxed) {
            return None;
        }
        let to = end.next_multiple_of(PREFILL_BYTES).min(LAST_BLOCK_END);
        Some(to).filter(|&to| to > end)
    }
}
