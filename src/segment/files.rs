//! Segment file names: `<base offset, 20 digits><suffix>`, as Kafka names them.

use std::path::{Path, PathBuf};

pub const LOG_SUFFIX: &str = ".log";
pub const INDEX_SUFFIX: &str = ".index";
pub const TIME_INDEX_SUFFIX: &str = ".timeindex";
pub const TXN_INDEX_SUFFIX: &str = ".txnindex";
pub const SNAPSHOT_SUFFIX: &str = ".snapshot";
/// The indexes of a segment, each in a file of its own beside its `.log`.
pub const INDEX_SUFFIXES: [&str; 3] = [INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX];
/// The files of a live segment: its `.log` and its indexes.
pub const SEGMENT_SUFFIXES: [&str; 4] = [
    LOG_SUFFIX,
    INDEX_SUFFIX,
    TIME_INDEX_SUFFIX,
    TXN_INDEX_SUFFIX,
];
/// A file scheduled for removal (retention, truncation).
pub const DELETED_SUFFIX: &str = ".deleted";
/// A segment being written by the cleaner; incomplete, so recovery removes it.
pub const CLEANED_SUFFIX: &str = ".cleaned";
/// A finished cleaned segment waiting to replace live ones; recovery completes the swap.
pub const SWAP_SUFFIX: &str = ".swap";
/// Bytes cut away by recovery, kept for an operator or a replica to salvage.
pub const CORRUPT_SUFFIX: &str = ".corrupt";
/// A file being written whole before it is renamed over the one it replaces (an index
/// rebuild, a checkpoint); recovery removes a leftover.
pub const TMP_SUFFIX: &str = ".tmp";

/// `00000000000000000042.log` for base offset 42 and suffix `.log`.
pub fn file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}{suffix}")
}

pub fn path(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(file_name(base_offset, suffix))
}

/// Splits `00000000000000000042.index.swap` into `(42, ".index.swap")`.
pub fn parse_name(name: &str) -> Option<(i64, &str)> {
    let digits = name.get(..20)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let base = digits.parse::<i64>().ok()?;
    Some((base, &name[20..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(file_name(42, LOG_SUFFIX), "00000000000000000042.log");
        assert_eq!(
            parse_name("00000000000000000042.index.swap"),
            Some((42, ".index.swap"))
        );
        assert_eq!(parse_name("0000000000000000004x.log"), None);
        assert_eq!(parse_name("short.log"), None);
        assert_eq!(parse_name("99999999999999999999.log"), None);
    }
}
