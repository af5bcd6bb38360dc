//! One simulated file's bytes: the *written* image (the page cache) and the *durable* image
//! (what the last sync left on the medium), and the image a crash leaves.

use std::io;
use std::ops::Range;

use super::rng::SimRng;

/// Largest simulated file; a position past it is `EFBIG` instead of an allocation that
/// would abort the process.
pub const FILE_BYTES_MAX: u64 = 1 << 32;

/// Size of the unit a disk writes atomically; an interrupted overwrite leaves each sector
/// either old or new.
pub const SECTOR_BYTES: usize = 512;

const EFBIG: i32 = 27;

/// Bytes of one file.
///
/// Invariant: outside `dirty`, `written` and `durable` hold the same bytes, and bytes past
/// the shorter of the two lie inside `dirty`. Sync and crash then only look at `dirty`,
/// so their cost does not grow with the file.
#[derive(Debug, Default, Clone)]
pub(crate) struct FileData {
    pub(crate) written: Vec<u8>,
    pub(crate) durable: Vec<u8>,
    dirty: Option<Range<usize>>,
    /// The simulated clock's time of the last change (0 without a clock).
    pub(crate) modified_ms: i64,
}

/// Checks that `pos + len` is a valid file size and returns the end.
pub(crate) fn checked_end(pos: u64, len: usize) -> io::Result<usize> {
    match pos.checked_add(len as u64) {
        Some(end) if end <= FILE_BYTES_MAX => Ok(end as usize),
        _ => Err(io::Error::from_raw_os_error(EFBIG)),
    }
}

/// Makes `dst` equal to `src` given they differ only inside `range`.
fn copy_dirty(dst: &mut Vec<u8>, src: &[u8], range: &Range<usize>) {
    dst.resize(src.len(), 0);
    let lo = range.start.min(src.len());
    let hi = range.end.min(src.len());
    dst[lo..hi].copy_from_slice(&src[lo..hi]);
}

impl FileData {
    /// A file whose `bytes` are already durable.
    pub(crate) fn durable(bytes: Vec<u8>) -> Self {
        FileData {
            written: bytes.clone(),
            durable: bytes,
            dirty: None,
            modified_ms: 0,
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.written.len() as u64
    }

    fn mark(&mut self, lo: usize, hi: usize) {
        if lo >= hi {
            return;
        }
        self.dirty = Some(match self.dirty.take() {
            Some(r) => r.start.min(lo)..r.end.max(hi),
            None => lo..hi,
        });
    }

    pub(crate) fn read(&self, buf: &mut [u8], pos: u64) -> usize {
        let len = self.written.len() as u64;
        if pos >= len {
            return 0;
        }
        let start = pos as usize;
        let n = buf.len().min(self.written.len() - start);
        buf[..n].copy_from_slice(&self.written[start..start + n]);
        n
    }

    /// Writes `buf` at `pos` into the page cache.
    pub(crate) fn write(&mut self, buf: &[u8], pos: u64) -> io::Result<()> {
        let end = checked_end(pos, buf.len())?;
        if buf.is_empty() {
            return Ok(());
        }
        let start = pos as usize;
        let old_len = self.written.len();
        if end > old_len {
            self.written.resize(end, 0);
        }
        self.written[start..end].copy_from_slice(buf);
        // A hole between the old end and `start` is new (zero) content too.
        self.mark(start.min(old_len), end);
        Ok(())
    }

    pub(crate) fn set_len(&mut self, len: u64) -> io::Result<()> {
        let new_len = checked_end(len, 0)?;
        let old_len = self.written.len();
        self.written.resize(new_len, 0);
        self.mark(old_len.min(new_len), old_len.max(new_len));
        Ok(())
    }

    /// `sync_data`: the written image becomes durable.
    pub(crate) fn sync(&mut self) {
        if let Some(r) = self.dirty.take() {
            copy_dirty(&mut self.durable, &self.written, &r);
        }
        debug_assert_eq!(self.written.len(), self.durable.len());
    }

    /// `msync` of a map of the first `len` bytes: those bytes become durable. The length of
    /// the durable image grows to cover them but is otherwise left alone.
    pub(crate) fn sync_prefix(&mut self, len: usize) {
        let len = len.min(self.written.len());
        if self.durable.len() < len {
            self.durable.resize(len, 0);
        }
        self.durable[..len].copy_from_slice(&self.written[..len]);
        // The dirty range keeps covering these bytes; resyncing equal bytes is harmless.
    }

    /// Power loss: picks an image between durable and written, and makes it both.
    pub(crate) fn crash(&mut self, rng: &mut SimRng) {
        let Some(dirty) = self.dirty.take() else {
            return;
        };
        match rng.below(4) {
            0 => copy_dirty(&mut self.written, &self.durable, &dirty),
            1 => {}
            mode => self.mix(rng, &dirty, mode == 3),
        }
        copy_dirty(&mut self.durable, &self.written, &dirty);
        debug_assert_eq!(self.written, self.durable);
    }

    /// Builds the crash image in `written`: old or new bytes per sector where the write
    /// overlapped durable bytes, a random prefix of an unsynced tail (optionally torn), and
    /// either the old or the new length after an unsynced truncation.
    fn mix(&mut self, rng: &mut SimRng, dirty: &Range<usize>, torn: bool) {
        let durable_len = self.durable.len();
        let written_len = self.written.len();
        let overlap_end = dirty.end.min(durable_len).min(written_len);
        let mut sector = dirty.start - dirty.start % SECTOR_BYTES;
        while sector < overlap_end {
            let lo = sector.max(dirty.start);
            let hi = (sector + SECTOR_BYTES).min(overlap_end);
            if rng.chance(0.5) {
                self.written[lo..hi].copy_from_slice(&self.durable[lo..hi]);
            }
            sector += SECTOR_BYTES;
        }
        if written_len > durable_len {
            let keep = rng.range_inclusive(0, (written_len - durable_len) as u64) as usize;
            let new_len = durable_len + keep;
            self.written.truncate(new_len);
            if torn && keep > 0 {
                let a = durable_len + rng.below(keep as u64) as usize;
                let b = rng.range_inclusive(a as u64 + 1, new_len as u64) as usize;
                if rng.chance(0.5) {
                    self.written[a..b].fill(0);
                } else {
                    rng.fill_bytes(&mut self.written[a..b]);
                }
            }
        } else if written_len < durable_len && rng.chance(0.5) {
            // The truncation did not reach the disk: the old bytes past it are back.
            self.written.extend_from_slice(&self.durable[written_len..]);
        }
    }

    /// Damage applied to both images at once (and so never undone by a crash).
    pub(crate) fn damage(&mut self, f: impl Fn(&mut Vec<u8>)) {
        f(&mut self.written);
        f(&mut self.durable);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_and_crash_cost_follow_the_dirty_range() {
        let mut f = FileData::default();
        let chunk = vec![7u8; 16 * 1024];
        for i in 0..640u64 {
            f.write(&chunk, i * chunk.len() as u64).unwrap();
            f.sync();
        }
        assert_eq!(f.durable.len(), 640 * chunk.len());
        let mut rng = SimRng::new(1);
        f.crash(&mut rng);
        assert_eq!(f.written, f.durable);
    }

    #[test]
    fn unsynced_truncate_keeps_old_or_new_length() {
        let mut rng = SimRng::new(9);
        let mut lens = std::collections::BTreeSet::new();
        for _ in 0..64 {
            let mut f = FileData::durable(vec![1u8; 1000]);
            f.set_len(10).unwrap();
            f.crash(&mut rng);
            assert!(f.written.iter().all(|&b| b == 1));
            lens.insert(f.written.len());
        }
        assert_eq!(lens.into_iter().collect::<Vec<_>>(), vec![10, 1000]);
    }

    #[test]
    fn overwrite_tears_per_sector() {
        let mut rng = SimRng::new(5);
        let mut mixed = false;
        for _ in 0..64 {
            let mut f = FileData::durable(vec![1u8; 4096]);
            f.write(&[2u8; 4096], 0).unwrap();
            f.crash(&mut rng);
            assert_eq!(f.written.len(), 4096);
            for s in f.written.chunks(SECTOR_BYTES) {
                assert!(
                    s.iter().all(|&b| b == s[0]),
                    "a sector is all old or all new"
                );
            }
            mixed |= f.written.contains(&1) && f.written.contains(&2);
        }
        assert!(mixed);
    }
}
