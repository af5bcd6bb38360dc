//! A segment's removal: its files renamed `.deleted`, for the log to remove once
//! `file_delete_delay_ms` has passed.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use super::{files, Segment};
use crate::error::Result;

impl Segment {
    /// Renames every file of the segment with `.deleted` appended; returns the new paths.
    /// A Kafka-written segment's transaction index goes with it, as Kafka's does (see
    /// `log::kafka_files`).
    pub fn rename_to_deleted(&self) -> Result<Vec<PathBuf>> {
        self.rename_files_to_deleted(true)
    }

    /// [`Segment::rename_to_deleted`], but a Kafka transaction index stays, for the
    /// cleaned segment that takes this one's base offset (see
    /// `Log::replace_with_cleaned`).
    pub(crate) fn rename_to_deleted_but_txn_index(&self) -> Result<Vec<PathBuf>> {
        self.rename_files_to_deleted(false)
    }

    fn rename_files_to_deleted(&self, txn_index: bool) -> Result<Vec<PathBuf>> {
        // Loaded indexes stay mapped for readers still holding this segment (a mapping
        // outlives the rename and the removal); unloaded ones are never created again. The
        // index lock makes this exclusive with a lazy load, which could otherwise create
        // index files under the old names after the rename.
        let _no_loading = self.indexes.write().unwrap_or_else(|e| e.into_inner());
        self.deleted.store(true, Ordering::Release);
        let mut out = Vec::new();
        for suffix in files::SEGMENT_SUFFIXES {
            if suffix == files::TXN_INDEX_SUFFIX && !txn_index {
                continue;
            }
            let from = self.path(suffix);
            if self.storage.exists(&from) {
                let to = self.path(&format!("{suffix}{}", files::DELETED_SUFFIX));
                self.storage.rename(&from, &to)?;
                out.push(to);
            }
        }
        Ok(out)
    }
}
