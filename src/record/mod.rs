//! Kafka RecordBatch v2 (being written).

/// Size of the RecordBatch v2 header.
pub const HEADER_LEN: usize = 61;

/// Why a batch is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchError {
    TooShort { needed: usize, available: usize },
}

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for BatchError {}
