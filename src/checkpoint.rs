//! Kafka's text checkpoint files, read and written atomically.
//!
//! Format (UTF-8 text, `\n` line ends):
//!
//! ```text
//! 0                 <- version
//! 2                 <- number of entries
//! orders 0 1042     <- one entry a line: `topic partition offset` (log-dir checkpoints)
//! orders 1 77          or `epoch start_offset` (the partition's leader-epoch-checkpoint)
//! ```
//!
//! A write goes to `<name>.tmp`, is synced, renamed over the old file, and the directory is
//! synced: a crash leaves either the old or the new checkpoint, never a mix.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::io::{OpenMode, Storage};

/// The version line Kafka writes.
pub const CHECKPOINT_VERSION: u32 = 0;
/// Largest file partlog reads as a checkpoint; a bigger one is corrupt, not read into memory.
pub const CHECKPOINT_BYTES_MAX: u64 = 64 << 20;

/// Name of the log-dir file holding each partition's recovery point.
pub const RECOVERY_POINT_FILE: &str = "recovery-point-offset-checkpoint";
/// Name of the log-dir file holding each partition's log start offset.
pub const LOG_START_OFFSET_FILE: &str = "log-start-offset-checkpoint";
/// Name of the log-dir file holding each partition's high watermark.
pub const REPLICATION_FILE: &str = "replication-offset-checkpoint";
/// The cleaner's first dirty offset of each compacted partition of a log dir.
pub const CLEANER_FILE: &str = "cleaner-offset-checkpoint";
/// Name of the partition-dir file holding the leader-epoch cache.
pub const LEADER_EPOCH_FILE: &str = "leader-epoch-checkpoint";

/// Longest topic name Kafka accepts.
pub const TOPIC_NAME_MAX_CHARS: usize = 249;

/// Checks Kafka's topic name rule: 1 to 249 characters of `[a-zA-Z0-9._-]`, and not `.` or
/// `..`. Other names would break the partition dir name or a checkpoint line (a space
/// separates its fields).
pub fn validate_topic(topic: &str) -> Result<()> {
    let reason = if topic.is_empty() {
        "is empty".to_string()
    } else if topic == "." || topic == ".." {
        "cannot be '.' or '..'".to_string()
    } else if topic.len() > TOPIC_NAME_MAX_CHARS {
        format!("is longer than {TOPIC_NAME_MAX_CHARS} characters")
    } else if let Some(c) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        format!("contains {c:?}; only ASCII letters, digits, '.', '_' and '-' are allowed")
    } else {
        return Ok(());
    };
    Err(Error::InvalidTopic {
        topic: topic.to_string(),
        reason,
    })
}

/// A topic and partition number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    /// [`Error::InvalidTopic`] for a topic name that breaks Kafka's rule
    /// ([`validate_topic`]) or a negative partition: neither names a partition directory,
    /// nor writes a checkpoint line that reads back.
    pub fn validate(&self) -> Result<()> {
        validate_topic(&self.topic)?;
        if self.partition < 0 {
            return Err(Error::InvalidTopic {
                topic: self.topic.clone(),
                reason: format!("has a negative partition {}", self.partition),
            });
        }
        Ok(())
    }

    /// The partition directory name, `<topic>-<partition>`.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }

    /// Parses a partition directory name; the topic may itself contain `-`. Only the
    /// name [`TopicPartition::dir_name`] gives: `topic-01` or `topic-+1` is no partition
    /// here (opened, it would be another directory, `topic-1`).
    pub fn from_dir_name(name: &str) -> Option<TopicPartition> {
        let (topic, number) = name.rsplit_once('-')?;
        let partition = number.parse::<i32>().ok().filter(|p| *p >= 0)?;
        let canonical = partition.to_string() == number;
        (canonical && !topic.is_empty()).then(|| TopicPartition::new(topic, partition))
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Parses a `topic partition offset` checkpoint.
pub fn parse_offsets(file: &Path, text: &str) -> Result<Vec<(TopicPartition, i64)>> {
    parse(file, text, |fields| {
        let [topic, partition, offset] = fields else {
            return Err("expected `topic partition offset`".into());
        };
        let partition = partition
            .parse::<i32>()
            .map_err(|e| format!("partition: {e}"))?;
        let offset = offset.parse::<i64>().map_err(|e| format!("offset: {e}"))?;
        Ok((TopicPartition::new(*topic, partition), offset))
    })
}

/// Parses a `epoch start_offset` (leader-epoch) checkpoint.
pub fn parse_epochs(file: &Path, text: &str) -> Result<Vec<(i32, i64)>> {
    parse(file, text, |fields| {
        let [epoch, offset] = fields else {
            return Err("expected `epoch start_offset`".into());
        };
        let epoch = epoch.parse::<i32>().map_err(|e| format!("epoch: {e}"))?;
        let offset = offset.parse::<i64>().map_err(|e| format!("offset: {e}"))?;
        Ok((epoch, offset))
    })
}

fn parse<T>(
    file: &Path,
    text: &str,
    entry: impl Fn(&[&str]) -> std::result::Result<T, String>,
) -> Result<Vec<T>> {
    let err = |line: usize, reason: String| Error::Parse {
        file: file.to_path_buf(),
        line,
        reason,
    };
    let mut lines = text.lines();
    // Kafka creates its checkpoint files empty before it first writes them (a broker
    // that has not cleaned yet has an empty `cleaner-offset-checkpoint`), and reads an
    // empty file, or one that ends after its version, as no entries. partlog's own
    // writes are atomic, so neither comes from a torn write of its own.
    let Some(version) = lines.next() else {
        return Ok(Vec::new());
    };
    if version.trim() != CHECKPOINT_VERSION.to_string() {
        return Err(err(1, format!("unsupported version {version:?}")));
    }
    let Some(count) = lines.next() else {
        return Ok(Vec::new());
    };
    let count: usize = count
        .trim()
        .parse()
        .map_err(|e| err(2, format!("entry count: {e}")))?;
    // The count comes from disk: never reserve more than the lines actually present.
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        out.push(entry(&fields).map_err(|reason| err(i + 3, reason))?);
    }
    if out.len() != count {
        return Err(err(
            2,
            format!("header says {count} entries, found {}", out.len()),
        ));
    }
    Ok(out)
}

/// Renders entries in checkpoint format.
pub fn render<T>(entries: &[T], line: impl Fn(&T) -> String) -> String {
    let mut text = format!("{CHECKPOINT_VERSION}\n{}\n", entries.len());
    for e in entries {
        text.push_str(&line(e));
        text.push('\n');
    }
    text
}

/// Renders `topic partition offset` entries.
pub fn render_offsets(entries: &[(TopicPartition, i64)]) -> String {
    render(entries, |(tp, o)| {
        format!("{} {} {o}", tp.topic, tp.partition)
    })
}

/// Reads a whole checkpoint file; `Ok(None)` when it does not exist.
pub fn read_text(storage: &dyn Storage, path: &Path) -> Result<Option<String>> {
    // Not `exists`: a file whose metadata cannot be read is not a missing one.
    if !storage.try_exists(path)? {
        return Ok(None);
    }
    let file = storage.open(path, OpenMode::Read)?;
    let len = file.len()?;
    if len > CHECKPOINT_BYTES_MAX {
        return Err(Error::Parse {
            file: path.to_path_buf(),
            line: 0,
            reason: format!("{len} bytes is too large for a checkpoint"),
        });
    }
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, 0)?;
    String::from_utf8(buf).map(Some).map_err(|_| Error::Parse {
        file: path.to_path_buf(),
        line: 0,
        reason: "not UTF-8 text".into(),
    })
}

/// Replaces `path` with `text` atomically: temp file, sync, rename, sync dir.
pub fn write_atomic(storage: &dyn Storage, path: &Path, text: &str) -> Result<()> {
    let tmp = tmp_path(path);
    let dir = crate::io::parent_dir(path);
    if storage.exists(&tmp) {
        storage.remove_file(&tmp)?;
    }
    let file = storage.open(&tmp, OpenMode::CreateNew)?;
    file.write_at(text.as_bytes(), 0)?;
    file.sync_data()?;
    drop(file);
    storage.rename(&tmp, path)?;
    storage.sync_dir(dir)
}

/// The temp name a file is written under before its rename over `path` (a checkpoint,
/// a rebuilt index): `path` with [`crate::segment::files::TMP_SUFFIX`] appended.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(crate::segment::files::TMP_SUFFIX);
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip() {
        let entries = vec![
            (TopicPartition::new("orders", 0), 1042),
            (TopicPartition::new("my-topic", 12), 7),
        ];
        let text = render_offsets(&entries);
        assert_eq!(text, "0\n2\norders 0 1042\nmy-topic 12 7\n");
        assert_eq!(parse_offsets(Path::new("x"), &text).unwrap(), entries);
    }

    #[test]
    fn epochs_parse() {
        let got = parse_epochs(Path::new("x"), "0\n2\n0 0\n3 100\n").unwrap();
        assert_eq!(got, vec![(0, 0), (3, 100)]);
    }

    /// As Kafka's `CheckpointFile` reads them: an empty file (Kafka creates its
    /// checkpoints empty before their first write) and one that ends after its version
    /// hold no entries.
    #[test]
    fn empty_checkpoints_hold_no_entries() {
        for empty in ["", "0\n", "0"] {
            assert_eq!(parse_offsets(Path::new("x"), empty).unwrap(), vec![]);
            assert_eq!(parse_epochs(Path::new("x"), empty).unwrap(), vec![]);
        }
    }

    #[test]
    fn malformed_checkpoints_are_typed_errors() {
        for bad in [
            "1\n0\n",
            "0\nx\n",
            "0\n2\na 0 1\n",
            "0\n1\na b 1\n",
            "0\n1\na 0\n",
        ] {
            let e = parse_offsets(Path::new("x"), bad).unwrap_err();
            assert!(matches!(e, Error::Parse { .. }), "{bad:?}: {e}");
        }
    }

    #[test]
    fn topic_names_follow_kafkas_rule() {
        for ok in ["orders", "a.b_c-D9", "__consumer_offsets", &"x".repeat(249)] {
            validate_topic(ok).unwrap();
        }
        for bad in ["", ".", "..", "has space", "slash/", "ü", &"x".repeat(250)] {
            assert!(
                matches!(validate_topic(bad), Err(Error::InvalidTopic { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn dir_names() {
        let tp = TopicPartition::from_dir_name("my-topic-3").unwrap();
        assert_eq!(tp, TopicPartition::new("my-topic", 3));
        assert_eq!(tp.dir_name(), "my-topic-3");
        assert!(TopicPartition::from_dir_name("nodash").is_none());
        assert!(TopicPartition::from_dir_name("t-abc").is_none());
        assert!(TopicPartition::from_dir_name("-1").is_none());
    }
}
