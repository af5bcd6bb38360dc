//! The completion of an `acks=all` append: a handle the producer's request waits on, or
//! polls, until the high watermark passes the append (or it fails).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::log::AppendInfo;

#[derive(Debug, Default)]
struct Shared {
    outcome: Mutex<Option<Result<AppendInfo>>>,
    /// Set once `outcome` is: what a waiter spins on.
    completed: AtomicBool,
    done: Condvar,
    /// Threads asleep in [`AppendHandle::wait`]: completing wakes the condvar only then
    /// (a wake-up is a system call, paid on the follower's fetch path otherwise).
    sleepers: AtomicUsize,
}

/// What an append returns: complete at once for `acks` 0 and 1, when the high watermark
/// passes the append for `acks=all`. A thread-per-request broker calls [`AppendHandle::wait`];
/// an event loop calls [`AppendHandle::poll`] after each `fetch` or `tick` of the partition.
#[derive(Debug, Clone)]
pub struct AppendHandle {
    shared: Arc<Shared>,
    info: AppendInfo,
}

impl AppendHandle {
    pub(crate) fn pending(info: AppendInfo) -> AppendHandle {
        AppendHandle {
            shared: Arc::default(),
            info,
        }
    }

    pub(super) fn done(info: AppendInfo) -> AppendHandle {
        let handle = AppendHandle::pending(info);
        handle.complete(Ok(info));
        handle
    }

    /// What was appended (offsets are final even before the append completes).
    pub fn info(&self) -> AppendInfo {
        self.info
    }

    /// The outcome, if the append completed.
    pub fn poll(&self) -> Option<Result<AppendInfo>> {
        let outcome = self
            .shared
            .outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        outcome.as_ref().map(copy)
    }

    /// Waits up to `timeout` for the outcome; `None` if it has not come by then. It spins
    /// briefly first (see the `replica::spin` module): while followers stream, the outcome
    /// usually comes within microseconds, sooner than a sleep and a wake-up.
    pub fn wait(&self, timeout: Duration) -> Option<Result<AppendInfo>> {
        if super::spin::spin_until(|| self.shared.completed.load(Ordering::Acquire)) {
            return self.poll();
        }
        let outcome = self
            .shared
            .outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.shared.sleepers.fetch_add(1, Ordering::AcqRel);
        let (outcome, _) = self
            .shared
            .done
            .wait_timeout_while(outcome, timeout, |o| o.is_none())
            .unwrap_or_else(|e| e.into_inner());
        self.shared.sleepers.fetch_sub(1, Ordering::AcqRel);
        outcome.as_ref().map(copy)
    }

    /// Sets the outcome once; later calls change nothing.
    pub(crate) fn complete(&self, result: Result<AppendInfo>) {
        let mut outcome = self
            .shared
            .outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if outcome.is_some() {
            return;
        }
        *outcome = Some(result);
        self.shared.completed.store(true, Ordering::Release);
        // A sleeper registers under the lock held here, so none is missed; it is woken
        // after the lock is released, which it needs to return.
        let sleepers = self.shared.sleepers.load(Ordering::Acquire);
        drop(outcome);
        if sleepers > 0 {
            self.shared.done.notify_all();
        }
    }
}

fn copy(result: &Result<AppendInfo>) -> Result<AppendInfo> {
    match result {
        Ok(info) => Ok(*info),
        Err(e) => Err(Error::duplicate(e)),
    }
}
