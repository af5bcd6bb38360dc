//! What the cleaner needs from a log: the segments it may clean, a `.cleaned` file to
//! write a group's cleaned copy into, and the crash-safe swap of that copy for the group.
//!
//! A cleaning rewrites groups of segments, each into one `<base>.log.cleaned` file
//! (written and synced by the cleaner), and swaps all of them in as one step, under the
//! writer lock, so no truncation, retention or roll interleaves:
//!
//! 0. Any other `.cleaned` file in the dir (one an earlier cleaning failed to remove) is
//!    removed, durably: recovery would take it for this cleaning's mark, below.
//! 1. Each `.log.cleaned` is renamed `.log.swap`, newest first, the directory synced after
//!    each rename. Recovery removes every swap at or above the lowest `.cleaned` file it
//!    finds, so until the last rename is durable a crash undoes them all; after it,
//!    recovery completes them all (each swap covers its group's offsets exactly: its last
//!    batch ends where the group ended).
//! 2. The groups' segments are renamed `.deleted` (removed after `file_delete_delay_ms`,
//!    so readers holding them finish), and the directory synced.
//! 3. The swaps are renamed `<base>.log`, the directory synced, and the segment list
//!    updated. Their indexes are rebuilt from the batch headers on first use.
//!
//! So a crash at any step leaves a log that reads as before the cleaning or as after it.

use std::path::PathBuf;
use std::sync::Arc;

use super::{kafka_files, Log};
use crate::error::{Error, Result};
use crate::io::{OpenMode, StreamFile};
use crate::segment::{files, FileSlice, Segment};

/// A cleaning under way on a log; the next may start when it is dropped.
#[derive(Debug)]
pub struct CleaningGuard<'a> {
    log: &'a Log,
}

impl Drop for CleaningGuard<'_> {
    fn drop(&mut self) {
        self.log
            .cleaning
            .store(false, std::sync::atomic::Ordering::Release);
    }
}

impl Log {
    /// Claims the log for one cleaning: `None` while another cleaning (another cleaner
    /// thread, or another `Cleaner`) holds it, since two would write the same `.cleaned`
    /// files.
    pub fn begin_cleaning(&self) -> Option<CleaningGuard<'_>> {
        use std::sync::atomic::Ordering;
        self.cleaning
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| CleaningGuard { log: self })
    }

    /// The lowest offset a truncation cut the log to since [`Log::truncation_seen`] last
    /// cleared it; `i64::MAX` when none did.
    pub fn truncated_to(&self) -> i64 {
        self.truncated_to.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The log start moved up to `start`: a truncation mark below it rises to it, as a cut
    /// below the log start is one at it (nothing lies below). Left below, it was seen by
    /// no cleaning (each begins at the log start, above it), so every one checkpointed at
    /// the mark and the next cleaned the whole log again, for good.
    pub(super) fn raise_truncation_mark(&self, start: i64) {
        // `i64::MAX` (no mark) stays as it is.
        self.truncated_to
            .fetch_max(start, std::sync::atomic::Ordering::AcqRel);
    }

    /// A cleaning that started at or below `offset` (read from [`Log::truncated_to`] when
    /// the settled truncation count was `truncations`) finished: forgets the truncation
    /// unless one happened since. Under the writer's lock, which every truncation holds,
    /// so that none lands between the check and the change (one that cut no lower than
    /// `offset` would leave it as it was, and be forgotten with it).
    pub fn truncation_seen(&self, offset: i64, truncations: u64) {
        use std::sync::atomic::Ordering;
        let Ok(_writer) = self.writer() else {
            return; // a failed log: the mark stays, which only cleans more again
        };
        if self.truncation_count() != truncations {
            return;
        }
        let _ = self.truncated_to.compare_exchange(
            offset,
            i64::MAX,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// A count that goes up at the start of every truncation and again once its bytes are
    /// gone, so that it is odd while one is under way. Work that read an even value before
    /// and the same value after overlapped no part of a truncation (a cleaning that raced
    /// one is abandoned, a lookup by time looks again); see [`Log::settled_truncation_count`].
    /// Not the number of truncations. (Counted once only, at the start, a reader could read
    /// the new count, then bytes that the cut took or that appends wrote in their place,
    /// fail, and find the count unchanged: `truncation_races` found a lookup by time failing
    /// so, about once in fifteen runs.)
    pub fn truncation_count(&self) -> u64 {
        self.truncations.load(std::sync::atomic::Ordering::Acquire)
    }

    /// `slice`, read from this log when its [`Log::settled_truncation_count`] was `seen`,
    /// watching it for truncations since (see [`FileSlice::cut_since`]): a fetch answer,
    /// whose bytes its follower reads later.
    pub(crate) fn watch_cuts(&self, slice: FileSlice, seen: u64) -> FileSlice {
        slice.watching(self.truncations.clone(), seen)
    }

    /// [`Log::truncation_count`] once no truncation is under way (even), yielding the core
    /// while one is: the value to compare with after work that a truncation would spoil.
    pub fn settled_truncation_count(&self) -> u64 {
        loop {
            let count = self.truncation_count();
            if count % 2 == 0 {
                return count;
            }
            std::thread::yield_now();
        }
    }

    /// The segments below the active one, oldest first: the ones a cleaning may rewrite.
    pub fn inactive_segments(&self) -> Vec<Arc<Segment>> {
        let segments = self.segments();
        segments[..segments.len() - 1].to_vec()
    }

    fn cleaned_path(&self, base_offset: i64) -> PathBuf {
        files::path(
            &self.dir,
            base_offset,
            &format!("{}{}", files::LOG_SUFFIX, files::CLEANED_SUFFIX),
        )
    }

    /// A new, empty `<base>.log.cleaned` file (a leftover of an earlier attempt is reset),
    /// written front to back and synced by [`StreamFile::finish`]: around the page cache
    /// where the storage can (see [`crate::io::Storage::create_stream`]).
    pub fn create_cleaned(&self, base_offset: i64) -> Result<Box<dyn StreamFile>> {
        self.storage.create_stream(&self.cleaned_path(base_offset))
    }

    /// Whether the log takes writes: [`crate::Error::ReadOnly`] once a write failed (see
    /// [`Log::append_as_leader`]), until it is reopened.
    pub fn check_writable(&self) -> Result<()> {
        self.writer().map(drop)
    }

    /// The ABORT markers the transaction indexes of `segments` name, sorted: a cleaning
    /// keeps them (see `kafka_files::indexed_abort_markers`).
    pub(crate) fn indexed_abort_markers(&self, segments: &[Arc<Segment>]) -> Result<Vec<i64>> {
        let bases: Vec<i64> = segments.iter().map(|s| s.base_offset()).collect();
        kafka_files::indexed_abort_markers(self.storage.as_ref(), &self.dir, &bases)
    }

    /// Removes the `.cleaned` file of an abandoned cleaning.
    pub fn discard_cleaned(&self, base_offset: i64) -> Result<()> {
        let path = self.cleaned_path(base_offset);
        if self.storage.exists(&path) {
            self.storage.remove_file(&path)?;
        }
        Ok(())
    }

    /// Swaps the synced `.cleaned` copies of `groups` (each consecutive inactive segments,
    /// the groups in offset order) in for them, as one step (see the module docs). Returns
    /// false, discarding the copies, when a group is no longer in the log as it was (a
    /// truncation or retention removed part of it meanwhile), or when the log was truncated
    /// at all since [`Log::settled_truncation_count`] read `truncations` (before the
    /// cleaning read the log): a cut inside a segment keeps the segment, whose copy would
    /// bring back the records cut, and the records the cleaning dropped as superseded may
    /// be superseded only by records the cut removed. (Kafka aborts a log's cleaning before
    /// it truncates the log.) The writer's lock, which truncations hold, makes the check
    /// and the swap one step.
    pub fn replace_with_cleaned(
        &self,
        groups: &[Vec<Arc<Segment>>],
        truncations: u64,
    ) -> Result<bool> {
        if groups.is_empty() {
            return Ok(true);
        }
        let mut writer = self.writer()?;
        if self.truncation_count() != truncations {
            drop(writer);
            for group in groups {
                self.discard_cleaned(group[0].base_offset())?;
            }
            return Ok(false);
        }
        let segments = self.segments();
        let mut at = Vec::with_capacity(groups.len());
        for group in groups {
            let i = group
                .first()
                .and_then(|first| segments.iter().position(|s| Arc::ptr_eq(s, first)));
            let intact = i.is_some_and(|i| {
                i + group.len() < segments.len()
                    && group
                        .iter()
                        .zip(&segments[i..])
                        .all(|(g, s)| Arc::ptr_eq(g, s))
            });
            match i.filter(|_| intact) {
                Some(i) => at.push(i),
                None => {
                    drop(writer);
                    for group in groups {
                        self.discard_cleaned(group[0].base_offset())?;
                    }
                    return Ok(false);
                }
            }
        }
        let bases: Vec<i64> = groups.iter().map(|g| g[0].base_offset()).collect();
        // Nothing is renamed yet: a failure here leaves the files as the segment list has
        // them, and ends this cleaning alone, not the log's writes.
        if let Err(err) = self.remove_stray_cleaned(&bases) {
            drop(writer);
            for &base in &bases {
                self.discard_cleaned(base)?;
            }
            return Err(err);
        }
        let swap = || -> Result<Vec<Arc<Segment>>> {
            // Each copy has the modification time of the last segment it replaces, as
            // Kafka's cleaner gives it: time retention ages a segment without timestamps
            // by it, and a cleaning would otherwise make its records young again.
            for (group, &base) in groups.iter().zip(&bases) {
                if let Some(last) = group.last() {
                    let copy = self
                        .storage
                        .open(&self.cleaned_path(base), OpenMode::ReadWrite)?;
                    copy.set_modified_ms(last.modified_ms()?)?;
                }
            }
            // A Kafka-written transaction index of the group's first segment stays for the
            // copy that takes its base, holding the group's entries (see `kafka_files`):
            // merged before the renames below commit the swap, as recovery finishing it
            // keeps the first index alone.
            for group in groups {
                let bases: Vec<i64> = group.iter().map(|s| s.base_offset()).collect();
                kafka_files::merge_txn_indexes(self.storage.as_ref(), &self.dir, &bases)?;
            }
            // Newest first, each rename durable before the next: recovery deletes the
            // swaps at or above the lowest `.cleaned` left, so a crash midway undoes all.
            for &base in bases.iter().rev() {
                self.storage
                    .rename(&self.cleaned_path(base), &self.swap_path(base))?;
                self.storage.sync_dir(&self.dir)?;
            }
            for group in groups {
                let mut renamed = group[0].rename_to_deleted_but_txn_index()?;
                for segment in &group[1..] {
                    renamed.extend(segment.rename_to_deleted()?);
                }
                self.schedule_removal(&mut writer, renamed);
            }
            self.storage.sync_dir(&self.dir)?;
            let mut opened = Vec::with_capacity(bases.len());
            for &base in &bases {
                let live = files::path(&self.dir, base, files::LOG_SUFFIX);
                self.storage.rename(&self.swap_path(base), &live)?;
            }
            self.storage.sync_dir(&self.dir)?;
            let now = self.clock.now_ms();
            for &base in &bases {
                let segment = Segment::open(
                    self.storage.clone(),
                    &self.dir,
                    base,
                    &self.config,
                    false,
                    now,
                )?;
                opened.push(Arc::new(segment));
            }
            Ok(opened)
        };
        // A panic midway (a bug; the cleaner contains it) leaves the files as an error
        // does: the log fails too, before the panic goes on.
        let swapped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(swap));
        let opened = match swapped {
            Ok(Ok(opened)) => opened,
            // The files are in a state recovery resolves, but the segment list no longer
            // matches them: refuse writes until the log is reopened.
            Ok(Err(err)) => return Self::fail(&mut writer, err),
            Err(panic) => {
                let cause = Error::Io {
                    op: "swap in cleaned segments",
                    path: self.dir.clone(),
                    source: std::io::Error::other("the swap panicked (a bug)"),
                };
                let _ = Self::fail::<()>(&mut writer, cause);
                std::panic::resume_unwind(panic);
            }
        };
        let mut next = Vec::with_capacity(segments.len());
        let mut from = 0;
        for ((group, &i), segment) in groups.iter().zip(&at).zip(opened) {
            next.extend_from_slice(&segments[from..i]);
            next.push(segment);
            from = i + group.len();
        }
        next.extend_from_slice(&segments[from..]);
        self.set_segments(next);
        Ok(true)
    }

    /// Removes, durably, every `.cleaned` file of the dir but the copies at `bases`: one
    /// an earlier cleaning could not remove (its removal failed) would otherwise mark this
    /// swap as unfinished to a recovery after a crash midway, which would undo the swaps
    /// above it after their old segments had gone (step 0 of the module docs).
    fn remove_stray_cleaned(&self, bases: &[i64]) -> Result<()> {
        let mut removed = false;
        for entry in self.storage.list_dir(&self.dir)? {
            if entry.is_dir || !entry.name.ends_with(files::CLEANED_SUFFIX) {
                continue;
            }
            let path = self.dir.join(&entry.name);
            if !bases.iter().any(|&base| path == self.cleaned_path(base)) {
                self.storage.remove_file(&path)?;
                removed = true;
            }
        }
        if removed {
            self.storage.sync_dir(&self.dir)?;
        }
        Ok(())
    }

    fn swap_path(&self, base_offset: i64) -> PathBuf {
        let suffix = format!("{}{}", files::LOG_SUFFIX, files::SWAP_SUFFIX);
        files::path(&self.dir, base_offset, &suffix)
    }
}
