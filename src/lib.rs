#![doc = include_str!("../README.md")]
#![forbid(unsafe_op_in_unsafe_fn)]

#[doc(hidden)]
pub mod bench;
pub mod checkpoint;
pub mod cleaner;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod error;
#[doc(hidden)]
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod index;
pub mod io;
pub mod log;
pub mod manager;
pub mod offsets;
pub mod record;
pub mod replica;
pub mod segment;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{CleanupPolicy, LogConfig};
pub use error::{Error, Result};
