//! The brief spin before a replica's waiter sleeps: a follower waiting in
//! [`super::Partition::fetch_wait`] for new data, a producer in
//! [`super::AppendHandle::wait`] for its append's completion. While a producer streams,
//! both usually come within microseconds, sooner than a sleep and a wake-up.
//!
//! The spin yields the core between looks, so that on a busy machine the thread that will
//! meet the condition (the appender, the other follower) can run. A yield hands the core to
//! any runnable thread, though: one of another process, or of lower priority, may then
//! keep it for a whole time slice, milliseconds, long after the condition was met (a CPU
//! hog at `nice 10` cut `acks=all` throughput by half and raised its p99 to 4 ms). A
//! sibling with a long run of work (a producer streaming with `acks=1`) does the same. So a
//! yield that comes back late turns spinning off for a while, process-wide, and waiters
//! sleep at once, to be woken (a woken thread preempts; a yielding one waits its turn).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Looks before sleeping, a yield between two.
const LOOKS: u32 = 32;
/// A yield longer than this gave the core away for a time slice, not to a sibling thread
/// doing a fetch's or an append's work.
const SLOW_YIELD: Duration = Duration::from_millis(1);
/// How long spinning stays off after a slow yield.
const BACKOFF: Duration = Duration::from_millis(100);

/// Until when (in [`nanos_since_epoch`]) spinning is off.
static SPIN_OFF_UNTIL: AtomicU64 = AtomicU64::new(0);
/// Times a slow yield turned spinning off, process-wide (for `partlog bench`).
static PAUSES: AtomicU64 = AtomicU64::new(0);

/// Times a slow yield turned spinning off in this process so far.
pub fn pauses() -> u64 {
    PAUSES.load(Ordering::Relaxed)
}

/// Looks at `ready` a few times, yielding between looks, unless a recent yield was slow;
/// whether it became true.
pub(super) fn spin_until(ready: impl FnMut() -> bool) -> bool {
    let timed_yield = || {
        let before = Instant::now();
        std::thread::yield_now();
        before.elapsed()
    };
    spin_with(ready, timed_yield, &SPIN_OFF_UNTIL)
}

/// [`spin_until`] with the yield (which says how long it took) and the off switch given.
fn spin_with(
    mut ready: impl FnMut() -> bool,
    mut yield_now: impl FnMut() -> Duration,
    off_until: &AtomicU64,
) -> bool {
    if nanos_since_epoch() < off_until.load(Ordering::Relaxed) {
        return ready();
    }
    for _ in 0..LOOKS {
        if ready() {
            return true;
        }
        if yield_now() > SLOW_YIELD {
            let until = nanos_since_epoch().saturating_add(BACKOFF.as_nanos() as u64);
            off_until.fetch_max(until, Ordering::Relaxed);
            PAUSES.fetch_add(1, Ordering::Relaxed);
            break;
        }
    }
    ready()
}

/// Nanoseconds since the first call, on the monotonic clock.
fn nanos_since_epoch() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let nanos = EPOCH.get_or_init(Instant::now).elapsed().as_nanos();
    u64::try_from(nanos).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the looks a spin takes at a condition that is met at look `met_at`, each
    /// yield taking `yield_takes`.
    fn looks(met_at: u32, yield_takes: Duration, off_until: &AtomicU64) -> (bool, u32) {
        let mut looked = 0;
        let ready = || {
            looked += 1;
            looked >= met_at
        };
        let met = spin_with(ready, || yield_takes, off_until);
        (met, looked)
    }

    #[test]
    fn a_spin_stops_at_the_look_that_meets_it_or_gives_up() {
        let on = AtomicU64::new(0);
        let fast = Duration::from_micros(5);
        assert_eq!(looks(1, fast, &on), (true, 1));
        assert_eq!(looks(5, fast, &on), (true, 5));
        assert_eq!(looks(u32::MAX, fast, &on), (false, LOOKS + 1));
        assert_eq!(on.load(Ordering::Relaxed), 0, "fast yields keep it on");
    }

    #[test]
    fn a_slow_yield_turns_spinning_off_for_a_while() {
        let off_until = AtomicU64::new(0);
        let before = nanos_since_epoch();
        let pauses_before = pauses();
        let slow = SLOW_YIELD * 2;
        let looked = looks(u32::MAX, slow, &off_until);
        assert_eq!(looked, (false, 2), "one yield, one last look");
        assert!(pauses() > pauses_before, "the pause is counted");
        let until = off_until.load(Ordering::Relaxed);
        assert!(until >= before + BACKOFF.as_nanos() as u64);
    }

    #[test]
    fn while_spinning_is_off_a_waiter_looks_once() {
        let off = AtomicU64::new(u64::MAX);
        let no_yield = || -> Duration { panic!("no yield while off") };
        let mut looked = 0;
        let ready = || {
            looked += 1;
            false
        };
        assert!(!spin_with(ready, no_yield, &off));
        assert_eq!(looked, 1);
    }
}
