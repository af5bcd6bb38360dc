//! The record format of Kafka's `__consumer_offsets` topic.
//!
//! A key is an int16 version, which is also the record type, then the key's fields; a
//! value is an int16 version, then the value's fields; a null value is a tombstone. Key
//! versions 0 and 1 are offset commits (`group`, `topic`, `partition`: the same layout),
//! 2 is group metadata (`group`), 3 to 15 are the consumer- and share-group records of
//! KIP-848 and KIP-932, which this store does not model and skips with a count. Key
//! schemas are not flexible: strings are an int16 length, then UTF-8.
//!
//! OffsetCommitValue versions:
//!
//! | version | fields |
//! |---|---|
//! | 0 | offset int64, metadata string, commitTimestamp int64 |
//! | 1 | offset, metadata, commitTimestamp, expireTimestamp int64 |
//! | 2 | offset, metadata, commitTimestamp |
//! | 3 | offset, leaderEpoch int32, metadata, commitTimestamp |
//! | 4 | as 3, flexible: compact strings (unsigned varint length + 1) and tagged fields |
//!
//! partlog writes what Kafka writes today: key version 1, value version 3.

use std::fmt;

/// Key versions (record types) Kafka has defined in `__consumer_offsets`.
pub const OFFSET_COMMIT_KEY_V0: i16 = 0;
pub const OFFSET_COMMIT_KEY_V1: i16 = 1;
pub const GROUP_METADATA_KEY: i16 = 2;
/// The highest record type Kafka has defined (ShareGroupStatePartitionMetadata).
pub const LAST_KNOWN_KEY: i16 = 15;
/// The value version partlog writes.
pub const OFFSET_COMMIT_VALUE_VERSION: i16 = 3;
/// `leaderEpoch` when unknown.
pub const NO_LEADER_EPOCH: i32 = -1;

/// Why bytes are not a record of `__consumer_offsets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes end before `field` does.
    Truncated { field: &'static str },
    /// A length is negative where it may not be, or too large.
    BadLength { field: &'static str, length: i64 },
    /// A string is not UTF-8.
    NotUtf8 { field: &'static str },
    /// A value version this format never had.
    UnknownValueVersion(i16),
    /// Bytes left after the last field (of a non-flexible version).
    TrailingBytes(usize),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated { field } => write!(f, "bytes end inside {field}"),
            DecodeError::BadLength { field, length } => {
                write!(f, "{field} has an impossible length {length}")
            }
            DecodeError::NotUtf8 { field } => write!(f, "{field} is not UTF-8"),
            DecodeError::UnknownValueVersion(v) => {
                write!(f, "offset commit value version {v} is unknown")
            }
            DecodeError::TrailingBytes(n) => write!(f, "{n} bytes after the last field"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// What a key says the record is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    OffsetCommit {
        group: String,
        topic: String,
        partition: i32,
    },
    GroupMetadata {
        group: String,
    },
    /// A record type Kafka defines that this store does not model (KIP-848, KIP-932), or
    /// one newer than it knows: skipped, as Kafka skips unknown types.
    Unmodelled {
        version: i16,
    },
}

/// The value of an offset commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
    /// Only version 1 has it; -1 otherwise.
    pub expire_timestamp: i64,
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated { field });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn i16(&mut self, field: &'static str) -> Result<i16, DecodeError> {
        let b = self.take(2, field)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4, field)?);
        Ok(i32::from_be_bytes(a))
    }

    fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, field)?);
        Ok(i64::from_be_bytes(a))
    }

    fn utf8(&mut self, n: usize, field: &'static str) -> Result<&'a str, DecodeError> {
        let bytes = self.take(n, field)?;
        std::str::from_utf8(bytes).map_err(|_| DecodeError::NotUtf8 { field })
    }

    fn string(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let len = self.i16(field)?;
        if len < 0 {
            return Err(DecodeError::BadLength {
                field,
                length: i64::from(len),
            });
        }
        self.utf8(len as usize, field)
    }

    fn uvarint(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for shift in (0..35).step_by(7) {
            let b = self.take(1, field)?[0];
            value |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::BadLength {
            field,
            length: value as i64,
        })
    }

    fn compact_string(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        match self.uvarint(field)? {
            0 => Err(DecodeError::BadLength { field, length: -1 }),
            n => self.utf8((n - 1) as usize, field),
        }
    }

    /// A flexible version's tagged fields: skipped (none is defined for these records).
    fn tagged_fields(&mut self) -> Result<(), DecodeError> {
        let count = self.uvarint("tagged fields")?;
        for _ in 0..count {
            self.uvarint("tag")?;
            let size = self.uvarint("tagged field size")?;
            self.take(size as usize, "tagged field")?;
        }
        Ok(())
    }

    fn end(&self) -> Result<(), DecodeError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

/// A record key, borrowing its strings from the record (decoding allocates nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRef<'a> {
    OffsetCommit {
        group: &'a str,
        topic: &'a str,
        partition: i32,
    },
    GroupMetadata {
        group: &'a str,
    },
    Unmodelled {
        version: i16,
    },
}

/// Decodes a record key without allocating.
pub fn decode_key_ref(bytes: &[u8]) -> Result<KeyRef<'_>, DecodeError> {
    let mut r = Reader { buf: bytes };
    let version = r.i16("key version")?;
    let key = match version {
        OFFSET_COMMIT_KEY_V0 | OFFSET_COMMIT_KEY_V1 => KeyRef::OffsetCommit {
            group: r.string("group")?,
            topic: r.string("topic")?,
            partition: r.i32("partition")?,
        },
        GROUP_METADATA_KEY => KeyRef::GroupMetadata {
            group: r.string("group")?,
        },
        version => return Ok(KeyRef::Unmodelled { version }),
    };
    r.end()?;
    Ok(key)
}

/// Decodes a record key.
pub fn decode_key(bytes: &[u8]) -> Result<RecordKey, DecodeError> {
    Ok(match decode_key_ref(bytes)? {
        KeyRef::OffsetCommit {
            group,
            topic,
            partition,
        } => RecordKey::OffsetCommit {
            group: group.to_string(),
            topic: topic.to_string(),
            partition,
        },
        KeyRef::GroupMetadata { group } => RecordKey::GroupMetadata {
            group: group.to_string(),
        },
        KeyRef::Unmodelled { version } => RecordKey::Unmodelled { version },
    })
}

/// An offset commit value, borrowing its metadata from the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueRef<'a> {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: &'a str,
    pub commit_timestamp: i64,
    pub expire_timestamp: i64,
}

/// Decodes an offset commit value of any version Kafka has written (0 to 4).
pub fn decode_offset_commit_value(bytes: &[u8]) -> Result<OffsetCommitValue, DecodeError> {
    let v = decode_offset_commit_value_ref(bytes)?;
    Ok(OffsetCommitValue {
        offset: v.offset,
        leader_epoch: v.leader_epoch,
        metadata: v.metadata.to_string(),
        commit_timestamp: v.commit_timestamp,
        expire_timestamp: v.expire_timestamp,
    })
}

/// [`decode_offset_commit_value`] without allocating. The usual value (see
/// `usual_value`) is read inline, since a load's replay calls this once per record and a
/// call returning the value through memory cost more than the decoding; any other value
/// out of line.
#[inline(always)]
pub fn decode_offset_commit_value_ref(bytes: &[u8]) -> Result<ValueRef<'_>, DecodeError> {
    match usual_value(bytes) {
        Some(value) => Ok(value),
        None => decode_value_in_general(bytes),
    }
}

#[inline(never)]
fn decode_value_in_general(bytes: &[u8]) -> Result<ValueRef<'_>, DecodeError> {
    let mut r = Reader { buf: bytes };
    let version = r.i16("value version")?;
    let mut value = ValueRef {
        offset: r.i64("offset")?,
        leader_epoch: NO_LEADER_EPOCH,
        metadata: "",
        commit_timestamp: -1,
        expire_timestamp: -1,
    };
    match version {
        0 | 2 => {
            value.metadata = r.string("metadata")?;
            value.commit_timestamp = r.i64("commit timestamp")?;
        }
        1 => {
            value.metadata = r.string("metadata")?;
            value.commit_timestamp = r.i64("commit timestamp")?;
            value.expire_timestamp = r.i64("expire timestamp")?;
        }
        3 => {
            value.leader_epoch = r.i32("leader epoch")?;
            value.metadata = r.string("metadata")?;
            value.commit_timestamp = r.i64("commit timestamp")?;
        }
        4 => {
            value.leader_epoch = r.i32("leader epoch")?;
            value.metadata = r.compact_string("metadata")?;
            value.commit_timestamp = r.i64("commit timestamp")?;
            r.tagged_fields()?;
        }
        v => return Err(DecodeError::UnknownValueVersion(v)),
    }
    r.end()?;
    Ok(value)
}

/// The value partlog writes, version 3 with empty metadata, read from its fixed
/// positions: a load replays one per committed partition. `None` for any other value.
#[inline(always)]
fn usual_value(bytes: &[u8]) -> Option<ValueRef<'static>> {
    // version (2), offset (8), leader epoch (4), metadata length (2, here 0), commit time (8)
    let bytes: &[u8; 24] = bytes.try_into().ok()?;
    if bytes[..2] != OFFSET_COMMIT_VALUE_VERSION.to_be_bytes() || bytes[14..16] != [0, 0] {
        return None;
    }
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[at..at + 8]);
        i64::from_be_bytes(b)
    };
    let mut epoch = [0u8; 4];
    epoch.copy_from_slice(&bytes[10..14]);
    Some(ValueRef {
        offset: word(2),
        leader_epoch: i32::from_be_bytes(epoch),
        metadata: "",
        commit_timestamp: word(16),
        expire_timestamp: -1,
    })
}

fn put_string(s: &str, out: &mut Vec<u8>) {
    // Group and topic names and metadata longer than an int16 length are refused by the
    // store before they reach here.
    out.extend_from_slice(&(s.len() as i16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The key of an offset commit, version 1.
pub fn encode_offset_commit_key(group: &str, topic: &str, partition: i32, out: &mut Vec<u8>) {
    out.extend_from_slice(&OFFSET_COMMIT_KEY_V1.to_be_bytes());
    put_string(group, out);
    put_string(topic, out);
    out.extend_from_slice(&partition.to_be_bytes());
}

/// The key of a group's metadata record.
pub fn encode_group_metadata_key(group: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&GROUP_METADATA_KEY.to_be_bytes());
    put_string(group, out);
}

/// An offset commit value, version 3.
pub fn encode_offset_commit_value(value: &OffsetCommitValue, out: &mut Vec<u8>) {
    out.extend_from_slice(&OFFSET_COMMIT_VALUE_VERSION.to_be_bytes());
    out.extend_from_slice(&value.offset.to_be_bytes());
    out.extend_from_slice(&value.leader_epoch.to_be_bytes());
    put_string(&value.metadata, out);
    out.extend_from_slice(&value.commit_timestamp.to_be_bytes());
}

/// Java's `String.hashCode` (over UTF-16 code units, wrapping).
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The offsets partition of `group` among `partitions`: Kafka's
/// `Utils.abs(group.hashCode()) % partitions`, where `abs(i32::MIN)` is 0.
pub fn partition_for(group: &str, partitions: u32) -> u32 {
    let h = java_string_hash(group);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs as u32 % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(s: &str) -> Vec<u8> {
        let mut out = (s.len() as i16).to_be_bytes().to_vec();
        out.extend_from_slice(s.as_bytes());
        out
    }

    #[test]
    fn keys_of_every_version_decode() {
        for version in [0i16, 1] {
            let mut key = version.to_be_bytes().to_vec();
            key.extend(string("group-a"));
            key.extend(string("orders"));
            key.extend(7i32.to_be_bytes());
            assert_eq!(
                decode_key(&key).unwrap(),
                RecordKey::OffsetCommit {
                    group: "group-a".into(),
                    topic: "orders".into(),
                    partition: 7
                }
            );
        }
        let mut key = 2i16.to_be_bytes().to_vec();
        key.extend(string("g"));
        assert_eq!(
            decode_key(&key).unwrap(),
            RecordKey::GroupMetadata { group: "g".into() }
        );
        for version in [3i16, 8, 15, 99] {
            let mut key = version.to_be_bytes().to_vec();
            key.extend([0, 1, b'x']);
            assert_eq!(decode_key(&key).unwrap(), RecordKey::Unmodelled { version });
        }
        assert!(matches!(
            decode_key(&[0]),
            Err(DecodeError::Truncated { .. })
        ));
        let mut trailing = 1i16.to_be_bytes().to_vec();
        trailing.extend(string("g"));
        trailing.extend(string("t"));
        trailing.extend([0, 0, 0, 1, 9]);
        assert_eq!(decode_key(&trailing), Err(DecodeError::TrailingBytes(1)));
    }

    #[test]
    fn values_of_every_version_decode() {
        let common = |version: i16| {
            let mut v = version.to_be_bytes().to_vec();
            v.extend(42i64.to_be_bytes());
            v
        };
        let mut v0 = common(0);
        v0.extend(string("meta"));
        v0.extend(1000i64.to_be_bytes());
        let mut v1 = common(1);
        v1.extend(string("meta"));
        v1.extend(1000i64.to_be_bytes());
        v1.extend(2000i64.to_be_bytes());
        let mut v2 = common(2);
        v2.extend(string("meta"));
        v2.extend(1000i64.to_be_bytes());
        let mut v3 = common(3);
        v3.extend(5i32.to_be_bytes());
        v3.extend(string("meta"));
        v3.extend(1000i64.to_be_bytes());
        let mut v4 = common(4);
        v4.extend(5i32.to_be_bytes());
        v4.push(5); // compact string "meta": length + 1
        v4.extend(b"meta");
        v4.extend(1000i64.to_be_bytes());
        v4.extend([1, 3, 2, 0xAB, 0xCD]); // one unknown tagged field, skipped
        for (bytes, epoch, expire) in [
            (v0, -1, -1),
            (v1, -1, 2000),
            (v2, -1, -1),
            (v3, 5, -1),
            (v4, 5, -1),
        ] {
            let value = decode_offset_commit_value(&bytes).unwrap();
            assert_eq!(
                value,
                OffsetCommitValue {
                    offset: 42,
                    leader_epoch: epoch,
                    metadata: "meta".into(),
                    commit_timestamp: 1000,
                    expire_timestamp: expire
                }
            );
        }
        assert_eq!(
            decode_offset_commit_value(&common(5)),
            Err(DecodeError::UnknownValueVersion(5))
        );
    }

    #[test]
    fn what_is_written_decodes_back() {
        let value = OffsetCommitValue {
            offset: 123,
            leader_epoch: 4,
            metadata: "m".into(),
            commit_timestamp: 99,
            expire_timestamp: -1,
        };
        let (mut key, mut bytes) = (Vec::new(), Vec::new());
        encode_offset_commit_key("g", "t", 3, &mut key);
        encode_offset_commit_value(&value, &mut bytes);
        assert_eq!(&key[..2], &[0, 1]);
        assert_eq!(decode_offset_commit_value(&bytes).unwrap(), value);
        crate::fuzzing::offsets_decode(&key);
        crate::fuzzing::offsets_decode(&bytes);
    }

    #[test]
    fn groups_map_to_partitions_as_kafka_maps_them() {
        // Values of Java's String.hashCode; "polygenelubricants" hashes to
        // Integer.MIN_VALUE, whose Utils.abs is 0.
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("console-consumer-1"), 35_782_224);
        assert_eq!(java_string_hash("my-group"), -1_906_497_762);
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert_eq!(partition_for("a", 50), 47);
        assert_eq!(partition_for("console-consumer-1", 50), 24);
        assert_eq!(partition_for("my-group", 50), 12);
    }
}
