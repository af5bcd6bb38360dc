//! Limits and policies of one log, with Apache Kafka's defaults.

use crate::error::{Error, Result};
use crate::record::TimestampType;

/// Kafka's `log.segment.bytes` default: 1 GiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 1 << 30;
/// Kafka's `log.index.size.max.bytes` default: 10 MiB.
pub const DEFAULT_INDEX_BYTES: u64 = 10 << 20;
/// Kafka's `log.index.interval.bytes` default.
pub const DEFAULT_INDEX_INTERVAL_BYTES: u64 = 4096;
/// Kafka's `log.roll.ms` default: 7 days.
pub const DEFAULT_SEGMENT_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// Kafka's `log.retention.ms` default: 7 days.
pub const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// Kafka's `message.max.bytes` default (1 MiB plus the 12-byte log overhead).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;
/// Kafka's `log.segment.delete.delay.ms` default.
pub const DEFAULT_FILE_DELETE_DELAY_MS: i64 = 60_000;

/// Kafka's `min.cleanable.dirty.ratio` default.
pub const DEFAULT_MIN_CLEANABLE_DIRTY_RATIO: f64 = 0.5;
/// Kafka's `delete.retention.ms` default: 1 day.
pub const DEFAULT_DELETE_RETENTION_MS: i64 = 24 * 60 * 60 * 1000;

/// Kafka's `cleanup.policy`: what happens to old data.
///
/// It also tells whether offsets may have gaps. Only compaction removes records from the
/// middle of a log, so a log that was never compacted holds consecutive offsets: each
/// batch starts at the offset after the previous one. partlog checks that in recovery,
/// which so catches a torn write that raised a base offset (the CRC does not cover it).
/// A log opened with a compacting policy is marked for good (the dir's
/// [`crate::log::GAPS_FILE_NAME`] file), and so is one whose follower appends copied a
/// leader's gaps: reopened under `Delete`, such a log keeps the rules of a compacted one
/// ([`crate::log::Log::may_have_gaps`]), and its gaps are no damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CleanupPolicy {
    /// Old segments are deleted by time and size retention (Kafka's default).
    #[default]
    Delete,
    /// Records are compacted by key; offsets may have gaps.
    Compact,
    /// Both: compacted, and old segments deleted by retention.
    CompactDelete,
}

impl CleanupPolicy {
    /// True when records may be removed from the middle of the log, leaving offset gaps.
    pub fn compacts(self) -> bool {
        !matches!(self, CleanupPolicy::Delete)
    }

    /// True when retention deletes old segments by time and size. A compact-only log loses
    /// only what lies below its log start: its old segments hold the latest record of keys
    /// not written since (Kafka's `cleanup.policy=compact`).
    pub fn deletes(self) -> bool {
        !matches!(self, CleanupPolicy::Compact)
    }
}

/// The configuration of one partition log. `Default` gives Kafka's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// Roll to a new segment when the active one would exceed this size.
    pub segment_bytes: u64,
    /// Maximum size of each index file; an index that fills up also rolls the segment.
    pub index_bytes_max: u64,
    /// Bytes of appended data between two offset-index entries.
    pub index_interval_bytes: u64,
    /// Roll the active segment when its first batch is this old.
    pub segment_ms: i64,
    /// Delete segments whose newest timestamp is older than this; `-1` keeps forever.
    pub retention_ms: i64,
    /// Delete old segments while the log exceeds this size; `-1` means no limit.
    pub retention_bytes: i64,
    /// Largest batch accepted by an append.
    pub max_message_bytes: usize,
    /// How long a `.deleted` file lingers before removal.
    pub file_delete_delay_ms: i64,
    /// Kafka's `cleanup.policy`; also decides whether offsets must be consecutive.
    pub cleanup_policy: CleanupPolicy,
    /// Kafka's `min.cleanable.dirty.ratio`: a compacted log is cleaned once the dirty share
    /// of its cleanable bytes passes this.
    pub min_cleanable_dirty_ratio: f64,
    /// Kafka's `min.compaction.lag.ms`: records younger than this are not compacted.
    pub min_compaction_lag_ms: i64,
    /// Kafka's `max.compaction.lag.ms`: a log with dirty records older than this is
    /// cleaned whatever its dirty ratio.
    pub max_compaction_lag_ms: i64,
    /// Kafka's `delete.retention.ms`: how long a tombstone stays after the first cleaning
    /// that saw it.
    pub delete_retention_ms: i64,
    /// partlog's own: whether the active segment keeps zeros written ahead of its batches
    /// (see [`crate::segment::PREFILL_BYTES`]). On by default: where the page cache gives
    /// a file large folios (ext4 since Linux 6.16, XFS), appends then write over pages it
    /// holds, about a third faster for 16 KiB batches. Off spares the extra copy of the
    /// zeros where it does not. Either way recovery recognises the zeros.
    pub prefill: bool,
    /// Kafka's `message.timestamp.type`: the timestamp type a leader gives every batch it
    /// appends, as Kafka's `LogValidator` does. `CreateTime` (the default) keeps the
    /// producer's timestamps (a batch its producer marked `LogAppendTime` is stored as
    /// `CreateTime` with its header's max, the time Kafka reads each of its records at).
    /// `LogAppendTime` stamps every batch with the leader's clock, and refuses a batch its
    /// producer marked `LogAppendTime`, as Kafka does.
    pub message_timestamp_type: TimestampType,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            index_bytes_max: DEFAULT_INDEX_BYTES,
            index_interval_bytes: DEFAULT_INDEX_INTERVAL_BYTES,
            segment_ms: DEFAULT_SEGMENT_MS,
            retention_ms: DEFAULT_RETENTION_MS,
            retention_bytes: -1,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            file_delete_delay_ms: DEFAULT_FILE_DELETE_DELAY_MS,
            cleanup_policy: CleanupPolicy::Delete,
            min_cleanable_dirty_ratio: DEFAULT_MIN_CLEANABLE_DIRTY_RATIO,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            delete_retention_ms: DEFAULT_DELETE_RETENTION_MS,
            prefill: true,
            message_timestamp_type: TimestampType::CreateTime,
        }
    }
}

impl LogConfig {
    /// Checks the relations between limits that the engine relies on.
    pub fn validate(&self) -> Result<()> {
        // Segment positions are stored as i32 in the offset index.
        if self.segment_bytes < 128 || self.segment_bytes > i32::MAX as u64 {
            return Err(Error::InvalidConfig(format!(
                "segment_bytes {} must be in [128, {}]",
                self.segment_bytes,
                i32::MAX
            )));
        }
        // Room for at least a few entries of the larger (12-byte) time index.
        if self.index_bytes_max < 4 * 12 || self.index_bytes_max > i32::MAX as u64 {
            return Err(Error::InvalidConfig(format!(
                "index_bytes_max {} must be in [48, {}]",
                self.index_bytes_max,
                i32::MAX
            )));
        }
        // Kafka's `index.interval.bytes` is an int; far larger would overflow the sums
        // that judge a segment's index sparse.
        if self.index_interval_bytes == 0 || self.index_interval_bytes > i32::MAX as u64 {
            return Err(Error::InvalidConfig(format!(
                "index_interval_bytes {} must be in [1, {}]",
                self.index_interval_bytes,
                i32::MAX
            )));
        }
        if self.segment_ms <= 0 {
            return Err(Error::InvalidConfig("segment_ms must be positive".into()));
        }
        if !(0.0..=1.0).contains(&self.min_cleanable_dirty_ratio) {
            return Err(Error::InvalidConfig(format!(
                "min_cleanable_dirty_ratio {} must be in [0, 1]",
                self.min_cleanable_dirty_ratio
            )));
        }
        // Kafka's ranges: -1 keeps records for good; a negative delay is no delay.
        if self.retention_ms < -1 {
            return Err(Error::InvalidConfig(format!(
                "retention_ms {} must be -1 (no limit) or more",
                self.retention_ms
            )));
        }
        if self.file_delete_delay_ms < 0 {
            return Err(Error::InvalidConfig(format!(
                "file_delete_delay_ms {} must not be negative",
                self.file_delete_delay_ms
            )));
        }
        if self.min_compaction_lag_ms < 0 || self.delete_retention_ms < 0 {
            return Err(Error::InvalidConfig(
                "min_compaction_lag_ms and delete_retention_ms must not be negative".into(),
            ));
        }
        if self.max_compaction_lag_ms < self.min_compaction_lag_ms {
            return Err(Error::InvalidConfig(
                "max_compaction_lag_ms must not be below min_compaction_lag_ms".into(),
            ));
        }
        if self.max_message_bytes < crate::record::HEADER_LEN {
            return Err(Error::InvalidConfig(format!(
                "max_message_bytes {} is smaller than a batch header",
                self.max_message_bytes
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kafkas_and_valid() {
        let c = LogConfig::default();
        assert_eq!(c.segment_bytes, 1 << 30);
        assert_eq!(c.index_bytes_max, 10 << 20);
        assert_eq!(c.index_interval_bytes, 4096);
        assert_eq!(c.segment_ms, 604_800_000);
        assert_eq!(c.retention_ms, 604_800_000);
        assert_eq!(c.retention_bytes, -1);
        c.validate().unwrap();
    }

    #[test]
    fn out_of_range_limits_are_rejected() {
        let bad = [
            LogConfig {
                segment_bytes: 3 << 30,
                ..LogConfig::default()
            },
            LogConfig {
                segment_bytes: 10,
                ..LogConfig::default()
            },
            LogConfig {
                retention_ms: -2,
                ..LogConfig::default()
            },
            LogConfig {
                file_delete_delay_ms: -1,
                ..LogConfig::default()
            },
            LogConfig {
                index_bytes_max: 8,
                ..LogConfig::default()
            },
            LogConfig {
                index_interval_bytes: 0,
                ..LogConfig::default()
            },
            LogConfig {
                index_interval_bytes: i32::MAX as u64 + 1,
                ..LogConfig::default()
            },
            LogConfig {
                segment_ms: 0,
                ..LogConfig::default()
            },
            LogConfig {
                max_message_bytes: 10,
                ..LogConfig::default()
            },
        ];
        for c in bad {
            assert!(
                matches!(c.validate(), Err(Error::InvalidConfig(_))),
                "{c:?}"
            );
        }
    }
}
