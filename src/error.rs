//! The one error type of partlog.
//!
//! Domain failures (an offset out of range, a corrupt batch, a locked directory) have their
//! own variants so that a broker can map them to Kafka error codes; everything the operating
//! system reports is `Io`.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Result alias used throughout partlog.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong inside partlog.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The operating system (or the simulated backend) failed an I/O call.
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// Bytes from disk or from a caller are not a valid Kafka record batch.
    InvalidBatch(crate::record::BatchError),
    /// A file holds bytes that fail validation at a known place.
    Corruption {
        file: PathBuf,
        position: u64,
        reason: String,
    },
    /// The requested offset lies outside `[log_start_offset, log_end_offset]`.
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    /// The segment was deleted (retention, truncation) while a reader was using it.
    SegmentDeleted { base_offset: i64 },
    /// A follower append carried offsets that do not continue the log: a base offset below
    /// `expected` (the log end, or the previous batch's next offset). One above it is a
    /// gap, which a follower takes as Kafka's does (see `Log::may_have_gaps`).
    InvalidOffset { base_offset: i64, expected: i64 },
    /// One append spans more offsets than a segment's relative (`i32`) index can address,
    /// so no segment can hold it (Kafka's `ensureOffsetInRange`). Nothing was written.
    OffsetSpanTooLarge { first_offset: i64, last_offset: i64 },
    /// An append carried a leader epoch below the latest one in the log: it comes from a
    /// leader that has been replaced (Kafka's `FENCED_LEADER_EPOCH`).
    FencedLeaderEpoch { epoch: i32, latest: i32 },
    /// One batch exceeds the configured maximum size.
    RecordTooLarge { size: usize, max: usize },
    /// Another process (or another `Log` in this process) holds the directory lock.
    DirLocked { dir: PathBuf },
    /// A file holds data in a format partlog does not read (yet); nothing was changed.
    UnsupportedFormat {
        file: PathBuf,
        position: u64,
        reason: String,
    },
    /// A file name or checkpoint line could not be parsed.
    Parse {
        file: PathBuf,
        line: usize,
        reason: String,
    },
    /// A configuration value is out of its allowed range.
    InvalidConfig(String),
    /// A topic name breaks Kafka's rule (see [`crate::checkpoint::validate_topic`]).
    InvalidTopic { topic: String, reason: String },
    /// The replica's role does not allow the request (Kafka's `NOT_LEADER_OR_FOLLOWER`):
    /// a produce to a follower, a follower fetch from a follower, or an append whose
    /// leader lost its leadership before it completed.
    NotLeaderOrFollower,
    /// A request names a leader epoch newer than the replica knows (`UNKNOWN_LEADER_EPOCH`).
    UnknownLeaderEpoch { epoch: i32, current: i32 },
    /// An ISR confirmation carries a version at or below the one the leader holds: it was
    /// overtaken by a later one, and changes nothing (`INVALID_UPDATE_VERSION`).
    InvalidUpdateVersion { version: i32, current: i32 },
    /// `acks` is not 0, 1 or -1 (`INVALID_REQUIRED_ACKS`).
    InvalidRequiredAcks(i16),
    /// An `acks=all` append found fewer in-sync replicas than `min.insync.replicas`;
    /// nothing was written (`NOT_ENOUGH_REPLICAS`).
    NotEnoughReplicas { isr: usize, required: usize },
    /// An `acks=all` append was written and replicated, but the in-sync replicas fell below
    /// `min.insync.replicas` meanwhile (`NOT_ENOUGH_REPLICAS_AFTER_APPEND`). Kept for the
    /// completion rule; partlog's HW and locking rules leave no way to it (see the README's
    /// replication section).
    NotEnoughReplicasAfterAppend { isr: usize, required: usize },
    /// An `acks=all` append did not complete in time (`REQUEST_TIMED_OUT`); it may still be
    /// replicated later.
    RequestTimedOut,
    /// This replica may not lead: a repair cut records below the high watermark it knew
    /// and it has not fetched them back to `high_watermark`, while other in-sync replicas
    /// may hold them. Elect one of those.
    LacksCommittedRecords {
        log_end_offset: i64,
        high_watermark: i64,
    },
    /// No replica may lead: none of the in-sync replicas is alive, and unclean leader
    /// election is off (`LEADER_NOT_AVAILABLE`).
    LeaderNotAvailable,
    /// A new leader's high watermark still lags the start of its epoch, so the latest
    /// offset, or one found by time at or past the high watermark, is not known yet
    /// (`OFFSET_NOT_AVAILABLE`, KIP-207): retry once the followers have fetched.
    OffsetNotAvailable {
        high_watermark: i64,
        epoch_start_offset: i64,
    },
    /// The offsets partition of the group is still being loaded on this broker
    /// (`COORDINATOR_LOAD_IN_PROGRESS`): retry shortly.
    CoordinatorLoadInProgress { partition: u32 },
    /// This broker does not lead the group's offsets partition (`NOT_COORDINATOR`).
    NotCoordinator { partition: u32 },
    /// Transactional offset commits need transactions, which partlog does not have.
    TransactionsUnsupported,
    /// A committed offset's metadata is longer than the store takes
    /// (`OFFSET_METADATA_TOO_LARGE`, Kafka's `offset.metadata.max.bytes`). Nothing of the
    /// commit was written. The length is counted as Kafka counts it, in UTF-16 code units
    /// (Java's `String.length`), whatever the setting's name says.
    OffsetMetadataTooLarge {
        topic: String,
        partition: i32,
        length: usize,
        max: usize,
    },
    /// The group has members, so its offsets stay (`NON_EMPTY_GROUP`): deleting them would
    /// send its running consumers back to their reset policy.
    NonEmptyGroup { group: String },
    /// The store knows nothing of the group: it has no offsets, and the embedder never
    /// said whether it has members (`GROUP_ID_NOT_FOUND`, as Kafka's DeleteGroups and
    /// OffsetDelete answer for a group the coordinator does not have).
    GroupIdNotFound { group: String },
    /// The store became the group's coordinator less than `membership_grace_ms` ago and
    /// has not been told whether the group has members: it may be a running group whose
    /// members have not found the new coordinator yet, so its offsets are not deleted.
    /// Tell the store (`set_group_active`) or retry after the grace; a broker answers
    /// `COORDINATOR_LOAD_IN_PROGRESS`, which clients retry.
    GroupMembershipUnknown { group: String, partition: u32 },
    /// OffsetDelete named a partition of a topic the group's members subscribe to; its
    /// offset stays (`GROUP_SUBSCRIBED_TO_TOPIC`).
    GroupSubscribedToTopic { group: String, topic: String },
    /// A request a store cannot take as it is (a name too long for the format, ...).
    InvalidRequest(String),
    /// The log's cleanup policy forbids the request (`POLICY_VIOLATION`): DeleteRecords on
    /// a log that only compacts.
    PolicyViolation(String),
    /// A compacted log takes only records with a key (Kafka's "Compacted topic cannot
    /// accept message without key"); `offset_delta` names the first without one. Nothing
    /// was appended.
    KeylessRecord { offset_delta: i32 },
    /// A client's append held a control batch (Kafka's `INVALID_RECORD`, "Clients are not
    /// allowed to write control records"): only a coordinator writes transaction markers,
    /// with [`crate::log::Log::append_as_coordinator`]. Nothing was appended.
    ControlBatchFromClient,
    /// A client's batch has a producer id but a negative base sequence (Kafka's
    /// `INVALID_RECORD`, "Invalid sequence number"). Nothing was appended.
    InvalidSequence {
        producer_id: i64,
        base_sequence: i32,
    },
    /// A producer marked its batch `LogAppendTime`, which Kafka's `LogValidator` takes
    /// only under the topic's `CreateTime`, and only with a max timestamp (Kafka's
    /// `INVALID_TIMESTAMP`, "Producer should not set timestamp type to LogAppendTime").
    /// Nothing was appended.
    LogAppendTimeFromProducer { max_timestamp: i64 },
    /// A record of an offsets partition does not decode; the load stops there, as
    /// Kafka's does.
    OffsetsRecord { offset: i64, reason: String },
    /// An earlier write failed; the log refuses further writes until it is reopened, because
    /// the state of the file after a failed write is unknown. `cause` is that failure, with
    /// its kind: for example [`Error::is_disk_full`] tells a full disk from a failing one.
    ReadOnly { cause: std::sync::Arc<Error> },
    /// The log's [`crate::manager::LogDir`] was closed: the log takes no more writes (the
    /// dir's clean-shutdown marker vouches for the files as the close left them). Reads go
    /// on.
    LogClosed { dir: PathBuf },
    /// A cleaning cannot copy the segment at `base_offset` within a segment's `limit` bytes
    /// of positions (its tombstones' delete horizons lengthen its records): the partition
    /// stays as it is, as Kafka's cleaner leaves a log whose cleaned segment would
    /// overflow, and is uncleanable until reopened. A smaller `segment.bytes` avoids it.
    CleanedSegmentTooLarge { base_offset: i64, limit: u64 },
}

impl Error {
    /// Wraps an `io::Error` with the operation and path it came from.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// True when the error is an `ENOSPC` "disk full" (from the OS or the simulator), also
    /// as the cause of [`Error::ReadOnly`].
    ///
    /// Matches the raw OS error rather than `io::ErrorKind::StorageFull`, which is newer
    /// than the crate's MSRV: `ENOSPC` (28), and Linux's `EDQUOT` (122), a quota's full
    /// disk.
    pub fn is_disk_full(&self) -> bool {
        const ENOSPC: i32 = 28;
        const EDQUOT: i32 = 122;
        match self {
            Error::Io { source, .. } => {
                matches!(source.raw_os_error(), Some(ENOSPC) | Some(EDQUOT))
            }
            Error::ReadOnly { cause } => cause.is_disk_full(),
            _ => false,
        }
    }

    /// A copy of the error, for keeping a failure while returning it too. An I/O error keeps
    /// its OS error code (or its kind) and message.
    pub fn duplicate(&self) -> Error {
        match self {
            Error::Io { op, path, source } => Error::Io {
                op,
                path: path.clone(),
                source: match source.raw_os_error() {
                    Some(code) => io::Error::from_raw_os_error(code),
                    None => io::Error::new(source.kind(), source.to_string()),
                },
            },
            Error::InvalidBatch(e) => Error::InvalidBatch(e.clone()),
            Error::Corruption {
                file,
                position,
                reason,
            } => Error::Corruption {
                file: file.clone(),
                position: *position,
                reason: reason.clone(),
            },
            Error::OffsetOutOfRange {
                offset,
                log_start_offset,
                log_end_offset,
            } => Error::OffsetOutOfRange {
                offset: *offset,
                log_start_offset: *log_start_offset,
                log_end_offset: *log_end_offset,
            },
            Error::SegmentDeleted { base_offset } => Error::SegmentDeleted {
                base_offset: *base_offset,
            },
            Error::InvalidOffset {
                base_offset,
                expected,
            } => Error::InvalidOffset {
                base_offset: *base_offset,
                expected: *expected,
            },
            Error::OffsetSpanTooLarge {
                first_offset,
                last_offset,
            } => Error::OffsetSpanTooLarge {
                first_offset: *first_offset,
                last_offset: *last_offset,
            },
            Error::FencedLeaderEpoch { epoch, latest } => Error::FencedLeaderEpoch {
                epoch: *epoch,
                latest: *latest,
            },
            Error::RecordTooLarge { size, max } => Error::RecordTooLarge {
                size: *size,
                max: *max,
            },
            Error::DirLocked { dir } => Error::DirLocked { dir: dir.clone() },
            Error::UnsupportedFormat {
                file,
                position,
                reason,
            } => Error::UnsupportedFormat {
                file: file.clone(),
                position: *position,
                reason: reason.clone(),
            },
            Error::Parse { file, line, reason } => Error::Parse {
                file: file.clone(),
                line: *line,
                reason: reason.clone(),
            },
            Error::InvalidConfig(why) => Error::InvalidConfig(why.clone()),
            Error::InvalidTopic { topic, reason } => Error::InvalidTopic {
                topic: topic.clone(),
                reason: reason.clone(),
            },
            Error::NotLeaderOrFollower => Error::NotLeaderOrFollower,
            Error::UnknownLeaderEpoch { epoch, current } => Error::UnknownLeaderEpoch {
                epoch: *epoch,
                current: *current,
            },
            Error::InvalidUpdateVersion { version, current } => Error::InvalidUpdateVersion {
                version: *version,
                current: *current,
            },
            Error::InvalidRequiredAcks(acks) => Error::InvalidRequiredAcks(*acks),
            Error::NotEnoughReplicas { isr, required } => Error::NotEnoughReplicas {
                isr: *isr,
                required: *required,
            },
            Error::NotEnoughReplicasAfterAppend { isr, required } => {
                Error::NotEnoughReplicasAfterAppend {
                    isr: *isr,
                    required: *required,
                }
            }
            Error::RequestTimedOut => Error::RequestTimedOut,
            Error::LacksCommittedRecords {
                log_end_offset,
                high_watermark,
            } => Error::LacksCommittedRecords {
                log_end_offset: *log_end_offset,
                high_watermark: *high_watermark,
            },
            Error::LeaderNotAvailable => Error::LeaderNotAvailable,
            Error::OffsetNotAvailable {
                high_watermark,
                epoch_start_offset,
            } => Error::OffsetNotAvailable {
                high_watermark: *high_watermark,
                epoch_start_offset: *epoch_start_offset,
            },
            Error::CoordinatorLoadInProgress { partition } => Error::CoordinatorLoadInProgress {
                partition: *partition,
            },
            Error::NotCoordinator { partition } => Error::NotCoordinator {
                partition: *partition,
            },
            Error::TransactionsUnsupported => Error::TransactionsUnsupported,
            Error::OffsetMetadataTooLarge {
                topic,
                partition,
                length,
                max,
            } => Error::OffsetMetadataTooLarge {
                topic: topic.clone(),
                partition: *partition,
                length: *length,
                max: *max,
            },
            Error::NonEmptyGroup { group } => Error::NonEmptyGroup {
                group: group.clone(),
            },
            Error::GroupIdNotFound { group } => Error::GroupIdNotFound {
                group: group.clone(),
            },
            Error::GroupMembershipUnknown { group, partition } => Error::GroupMembershipUnknown {
                group: group.clone(),
                partition: *partition,
            },
            Error::GroupSubscribedToTopic { group, topic } => Error::GroupSubscribedToTopic {
                group: group.clone(),
                topic: topic.clone(),
            },
            Error::InvalidRequest(why) => Error::InvalidRequest(why.clone()),
            Error::PolicyViolation(why) => Error::PolicyViolation(why.clone()),
            Error::KeylessRecord { offset_delta } => Error::KeylessRecord {
                offset_delta: *offset_delta,
            },
            Error::ControlBatchFromClient => Error::ControlBatchFromClient,
            Error::InvalidSequence {
                producer_id,
                base_sequence,
            } => Error::InvalidSequence {
                producer_id: *producer_id,
                base_sequence: *base_sequence,
            },
            Error::LogAppendTimeFromProducer { max_timestamp } => {
                Error::LogAppendTimeFromProducer {
                    max_timestamp: *max_timestamp,
                }
            }
            Error::OffsetsRecord { offset, reason } => Error::OffsetsRecord {
                offset: *offset,
                reason: reason.clone(),
            },
            Error::ReadOnly { cause } => Error::ReadOnly {
                cause: cause.clone(),
            },
            Error::LogClosed { dir } => Error::LogClosed { dir: dir.clone() },
            Error::CleanedSegmentTooLarge { base_offset, limit } => Error::CleanedSegmentTooLarge {
                base_offset: *base_offset,
                limit: *limit,
            },
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, path, source } => write!(f, "{op} {}: {source}", path.display()),
            Error::InvalidBatch(e) => write!(f, "invalid record batch: {e}"),
            Error::FencedLeaderEpoch { epoch, latest } => write!(
                f,
                "leader epoch {epoch} is below the log's latest epoch {latest}"
            ),
            Error::UnsupportedFormat {
                file,
                position,
                reason,
            } => write!(
                f,
                "{} at position {position}: {reason}; left unchanged",
                file.display()
            ),
            Error::SegmentDeleted { base_offset } => {
                write!(f, "segment {base_offset} was deleted while in use")
            }
            Error::Corruption {
                file,
                position,
                reason,
            } => {
                write!(
                    f,
                    "corruption in {} at position {position}: {reason}",
                    file.display()
                )
            }
            Error::OffsetOutOfRange {
                offset,
                log_start_offset,
                log_end_offset,
            } => write!(
                f,
                "offset {offset} is out of range [{log_start_offset}, {log_end_offset}]"
            ),
            Error::InvalidOffset {
                base_offset,
                expected,
            } => write!(
                f,
                "batch base offset {base_offset} does not continue the log at offset {expected}"
            ),
            Error::OffsetSpanTooLarge {
                first_offset,
                last_offset,
            } => write!(
                f,
                "offsets {first_offset}..={last_offset} span more than one segment can index \
                 (2^31 - 1 above its base)"
            ),
            Error::RecordTooLarge { size, max } => {
                write!(
                    f,
                    "batch of {size} bytes exceeds the maximum of {max} bytes"
                )
            }
            Error::DirLocked { dir } => write!(
                f,
                "log dir {} is locked by another process or log instance",
                dir.display()
            ),
            Error::Parse { file, line, reason } => {
                write!(f, "cannot parse {} line {line}: {reason}", file.display())
            }
            Error::InvalidConfig(why) => write!(f, "invalid configuration: {why}"),
            Error::InvalidTopic { topic, reason } => {
                write!(f, "invalid topic name {topic:?}: it {reason}")
            }
            Error::NotLeaderOrFollower => {
                f.write_str("this replica is not the leader or follower the request needs")
            }
            Error::UnknownLeaderEpoch { epoch, current } => write!(
                f,
                "leader epoch {epoch} is newer than this replica's {current}"
            ),
            Error::InvalidUpdateVersion { version, current } => write!(
                f,
                "ISR version {version} is not newer than this leader's {current}"
            ),
            Error::InvalidRequiredAcks(acks) => {
                write!(f, "acks {acks} is not 0, 1 or -1")
            }
            Error::NotEnoughReplicas { isr, required } => write!(
                f,
                "{isr} in-sync replicas, {required} required: nothing appended"
            ),
            Error::NotEnoughReplicasAfterAppend { isr, required } => write!(
                f,
                "appended, but the in-sync replicas fell to {isr}, below {required}"
            ),
            Error::RequestTimedOut => f.write_str("the append did not complete in time"),
            Error::LacksCommittedRecords {
                log_end_offset,
                high_watermark,
            } => write!(
                f,
                "a repair cut this replica's log to {log_end_offset}, below the high \
                 watermark {high_watermark} it knew: it may not lead while other in-sync \
                 replicas may hold those records"
            ),
            Error::LeaderNotAvailable => f.write_str(
                "no in-sync replica is alive to lead, and unclean leader election is off",
            ),
            Error::OffsetNotAvailable {
                high_watermark,
                epoch_start_offset,
            } => write!(
                f,
                "the high watermark {high_watermark} lags the start of the leader's epoch \
                 {epoch_start_offset}; retry shortly"
            ),
            Error::CoordinatorLoadInProgress { partition } => write!(
                f,
                "offsets partition {partition} is still loading; retry shortly"
            ),
            Error::NotCoordinator { partition } => {
                write!(f, "this broker does not lead offsets partition {partition}")
            }
            Error::TransactionsUnsupported => f.write_str(
                "transactional offset commits need transactions, which partlog does not support",
            ),
            Error::OffsetMetadataTooLarge {
                topic,
                partition,
                length,
                max,
            } => write!(
                f,
                "the metadata of the offset of {topic}-{partition} is {length} characters long \
                 (UTF-16 units, as Kafka counts), more than the {max} the store takes \
                 (offset.metadata.max.bytes)"
            ),
            Error::NonEmptyGroup { group } => write!(
                f,
                "group {group} has members: its offsets are deleted once it is empty"
            ),
            Error::GroupIdNotFound { group } => write!(
                f,
                "group {group} is not known here: it has no offsets and no members"
            ),
            Error::GroupMembershipUnknown { group, partition } => write!(
                f,
                "offsets partition {partition} changed coordinator lately and has not heard \
                 whether group {group} has members: its offsets are not deleted until it does"
            ),
            Error::GroupSubscribedToTopic { group, topic } => write!(
                f,
                "group {group} subscribes to topic {topic}: its offsets there stay while it does"
            ),
            Error::InvalidRequest(why) => write!(f, "invalid request: {why}"),
            Error::PolicyViolation(why) => write!(f, "policy violation: {why}"),
            Error::KeylessRecord { offset_delta } => write!(
                f,
                "a compacted log takes only records with a key; record {offset_delta} has none"
            ),
            Error::ControlBatchFromClient => write!(
                f,
                "clients may not write control batches: transaction markers come from a \
                 coordinator"
            ),
            Error::InvalidSequence {
                producer_id,
                base_sequence,
            } => write!(
                f,
                "a batch of producer {producer_id} has the invalid sequence {base_sequence}"
            ),
            Error::LogAppendTimeFromProducer { max_timestamp } => write!(
                f,
                "a batch marked LogAppendTime by its producer (max timestamp \
                 {max_timestamp}): producers should not set that timestamp type, and it is \
                 taken only under the topic's CreateTime, with a max timestamp"
            ),
            Error::OffsetsRecord { offset, reason } => {
                write!(f, "offsets record at {offset} does not decode: {reason}")
            }
            Error::ReadOnly { cause } => {
                write!(
                    f,
                    "log is read-only after an earlier write failure: {cause}"
                )
            }
            Error::LogClosed { dir } => {
                write!(
                    f,
                    "the log at {} was closed with its log dir",
                    dir.display()
                )
            }
            Error::CleanedSegmentTooLarge { base_offset, limit } => write!(
                f,
                "the cleaned copy of segment {base_offset} would pass {limit} bytes, where a \
                 segment no longer opens; the log stays as it is (a smaller segment.bytes \
                 avoids this)"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::InvalidBatch(e) => Some(e),
            Error::ReadOnly { cause } => Some(cause.as_ref()),
            _ => None,
        }
    }
}

impl From<crate::record::BatchError> for Error {
    fn from(e: crate::record::BatchError) -> Self {
        Error::InvalidBatch(e)
    }
}
