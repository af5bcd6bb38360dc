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

/// Takes `mutex`, also after a panic in another holder: every state partlog keeps under a
/// mutex is changed in steps that each leave it whole, and a panic (a bug, which the
/// cleaner contains) must not take the other threads' locks with it.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
pub use config::{CleanupPolicy, LogConfig};
pub use error::{Error, Result};
