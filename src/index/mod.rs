//! Sparse, memory-mapped indexes of a segment: offset → position and timestamp → offset.

mod file;
pub mod offset_index;
pub mod sparse;
pub mod time_index;

pub use offset_index::{OffsetIndex, OffsetPosition, OFFSET_ENTRY_BYTES};
pub use sparse::{IndexEntry, SparseIndex};
pub use time_index::{TimeIndex, TimestampOffset, TIME_ENTRY_BYTES};
