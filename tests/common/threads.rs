//! What the tests that run threads against one replicated partition share: a leader and
//! two followers on simulated disks, a seeded pacer, the fetcher loop, and a guard that
//! stops every thread when the test fails.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use partlog::io::sim::SimStorage;
use partlog::replica::{Partition, ReplicaConfig};
use partlog::{Error, LogConfig, ManualClock};

pub const FOLLOWERS: [i32; 2] = [1, 2];
pub const MIN_ISR: usize = 2;

/// A seeded xorshift: one thread's own choices.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, thread: u64) -> Rng {
        // splitmix64 of the two, so that nearby seeds start far apart; never zero.
        let mut z = seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(thread.wrapping_mul(0xD1B5_4A32_D192_ED03));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)).max(1))
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    /// Now and then gives the core away or sleeps briefly, so that the threads meet at
    /// different points of each other's work.
    pub fn pace(&mut self) {
        match self.below(16) {
            0 => thread::sleep(Duration::from_micros(50 + self.below(200))),
            1..=3 => thread::yield_now(),
            _ => {}
        }
    }
}

/// Broker 0 leads epoch 1 with brokers 1 and 2 in sync, min ISR 2, each on its own disk.
pub struct Replicas {
    pub clock: Arc<ManualClock>,
    pub leader: Arc<Partition>,
    pub followers: Vec<Arc<Partition>>,
}

impl Replicas {
    /// `lag_ms` is `replica_lag_time_max_ms`.
    pub fn new(seed: u64, lag_ms: i64) -> Replicas {
        let config = LogConfig {
            index_bytes_max: 4096,
            ..LogConfig::default()
        };
        Replicas::with_config(seed, lag_ms, config)
    }

    /// Replicas whose logs have `config`.
    pub fn with_config(seed: u64, lag_ms: i64, config: LogConfig) -> Replicas {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let replica = |id: i32| {
            let disk = SimStorage::new(seed.wrapping_mul(10) + id as u64);
            let log = super::cluster::open_log_with(&disk, &clock, config.clone());
            let config = ReplicaConfig {
                min_insync_replicas: MIN_ISR,
                replica_lag_time_max_ms: lag_ms,
                ..ReplicaConfig::new(id)
            };
            Arc::new(Partition::new(log, config, clock.clone(), 0))
        };
        let leader = replica(0);
        leader
            .become_leader(1, Self::all(), Self::all())
            .expect("leader");
        let followers: Vec<_> = FOLLOWERS.iter().map(|&id| replica(id)).collect();
        for f in &followers {
            f.become_follower(1, 0).expect("follower");
        }
        Replicas {
            clock,
            leader,
            followers,
        }
    }

    pub fn all() -> Vec<i32> {
        vec![0, FOLLOWERS[0], FOLLOWERS[1]]
    }

    /// The next leader epoch, on the leader (with its ISR as it stands) and then on each
    /// follower, as a controller's requests would arrive.
    pub fn bump_epoch(&self, epoch: i32, rng: &mut Rng) {
        let isr = self.leader.isr().expect("leader's ISR");
        self.leader
            .become_leader(epoch, Self::all(), isr)
            .expect("bump");
        for f in &self.followers {
            rng.pace();
            f.become_follower(epoch, 0).expect("follow the bump");
        }
    }

    /// One step of a controller that shakes the partition: bumps the leader epoch (then
    /// returns true), drops followers from the ISR (both now and then: below min ISR the HW
    /// must stop), moves the clock by up to twice `lag_ms` and ticks the leader (it
    /// proposes to drop the followers that lag and times out appends), or confirms the
    /// leader's ISR proposal (to grow it back, mostly).
    pub fn control_step(&self, rng: &mut Rng, epoch: &mut i32, lag_ms: i64) -> bool {
        match rng.below(10) {
            0 => {
                *epoch += 1;
                self.bump_epoch(*epoch, rng);
                return true;
            }
            1 => {
                let isr = self.leader.isr().expect("leader's ISR");
                let drop = FOLLOWERS[rng.below(2) as usize];
                let keep: Vec<i32> = match rng.below(3) {
                    0 => vec![0],
                    _ => isr.into_iter().filter(|&id| id != drop).collect(),
                };
                self.leader.confirm_isr(keep);
            }
            2 => {
                self.clock.advance_ms(rng.below(lag_ms as u64 * 2) as i64);
                self.leader.tick();
            }
            _ => {
                if let Some(proposal) = self.leader.isr_proposal() {
                    self.leader.confirm_isr(proposal);
                }
            }
        }
        false
    }

    /// Waits until every follower has the leader's whole log, all are in the ISR and the
    /// HW is at the log end, confirming the leader's ISR proposals meanwhile.
    pub fn settle(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(proposal) = self.leader.isr_proposal() {
                self.leader.confirm_isr(proposal);
            }
            let end = self.leader.log().log_end_offset();
            if self
                .followers
                .iter()
                .all(|f| f.log().log_end_offset() == end)
                && self.leader.isr().map(|i| i.len()) == Some(Self::all().len())
                && self.leader.high_watermark() == end
            {
                return;
            }
            assert!(Instant::now() < deadline, "the followers never caught up");
            thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Carries `follower`'s fetches to `leader` while `fetching`, of a few KiB each.
pub fn fetch_loop(leader: &Partition, follower: &Partition, fetching: &AtomicBool, mut rng: Rng) {
    while fetching.load(Ordering::Acquire) {
        rng.pace();
        let request = follower.fetch_request(1 + rng.below(8 << 10));
        match leader.fetch_wait(&request, Duration::from_millis(5)) {
            Ok(response) => {
                follower.apply_fetch(&response).expect("apply fetch");
            }
            // The controller is between the leader's and this follower's epoch change.
            Err(Error::FencedLeaderEpoch { .. } | Error::UnknownLeaderEpoch { .. }) => {
                thread::yield_now()
            }
            Err(e) => panic!("follower {}: fetch: {e}", request.replica_id),
        }
    }
}

/// Clears every flag when dropped: a failure unwinding the test's thread then ends the
/// other threads, which would otherwise loop forever and keep the scope from ending.
pub struct StopAll<'a, const N: usize>(pub [&'a AtomicBool; N]);

impl<const N: usize> Drop for StopAll<'_, N> {
    fn drop(&mut self) {
        for flag in self.0 {
            flag.store(false, Ordering::Release);
        }
    }
}

/// Joins a thread of a scope; its panic goes on in the caller, message and all.
pub fn join<T>(handle: thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Runs `check` for `seed`; a panic becomes the seed's report, with the command that
/// replays it (`<prefix>_SEED=<seed> cargo test --release --test <test>`).
pub fn check_seed(
    seed: u64,
    prefix: &str,
    test: &str,
    check: impl FnOnce(u64) + std::panic::UnwindSafe,
) -> Result<(), String> {
    std::panic::catch_unwind(|| check(seed)).map_err(|panic| {
        format!(
            "seed {seed} failed: {}\n  replay: {prefix}_SEED={seed} cargo test --release --test {test}",
            super::panic_text(panic.as_ref())
        )
    })
}
