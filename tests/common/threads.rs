//! What the tests that run threads against one replicated partition share: three brokers'
//! replicas on simulated disks with a controller that holds its own ISR, answers the
//! leader late and out of order now and then, and moves the leadership, a seeded
//! pacer, the fetcher loop, and a guard that stops every thread when the test fails.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use partlog::cluster::ControllerIsr;
use partlog::io::sim::SimStorage;
use partlog::replica::{Partition, ReplicaConfig, ScrubOutcome};
use partlog::{Error, LogConfig, ManualClock};

pub const BROKERS: usize = 3;
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

/// Three brokers' replicas of one partition, each on its own disk, min ISR 2; broker 0
/// leads epoch 1 with all in sync. The controller may move the leadership.
pub struct Brokers {
    pub clock: Arc<ManualClock>,
    pub replicas: Vec<Arc<Partition>>,
    /// The broker the controller last made leader: where producers, consumers and
    /// fetchers go. For a moment after an election the others may not know yet.
    leader: AtomicUsize,
    /// The controller's own view of the ISR, which elections choose from.
    controller: Mutex<Controller>,
}

/// The ISR as the controller holds it within `epoch`, and its answers to the leader that
/// it holds back, to deliver late and out of order.
struct Controller {
    epoch: i32,
    isr: ControllerIsr,
    late: Vec<Answer>,
}

/// The controller's answer to the leader `to` of `epoch`: the ISR it holds.
struct Answer {
    to: usize,
    epoch: i32,
    isr: ControllerIsr,
}

/// What a controller step changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing a store above the replicas needs to hear of.
    None,
    /// The leader moved from one broker to another, or (the same twice) started a new
    /// epoch.
    Leader { from: usize, to: usize },
}

impl Brokers {
    /// `lag_ms` is `replica_lag_time_max_ms`; the logs have `config`.
    pub fn new(seed: u64, lag_ms: i64, config: LogConfig) -> Brokers {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let replicas: Vec<_> = (0..BROKERS)
            .map(|id| {
                let disk = SimStorage::new(seed.wrapping_mul(10) + id as u64);
                let log = super::cluster::open_log_with(&disk, &clock, config.clone());
                let config = ReplicaConfig {
                    min_insync_replicas: MIN_ISR,
                    replica_lag_time_max_ms: lag_ms,
                    ..ReplicaConfig::new(id as i32)
                };
                Arc::new(Partition::new(log, config, clock.clone(), 0))
            })
            .collect();
        replicas[0]
            .become_leader(1, Self::all(), Self::all())
            .expect("leader");
        for r in &replicas[1..] {
            r.become_follower(1, 0).expect("follower");
        }
        let controller = Controller {
            epoch: 1,
            isr: ControllerIsr::new(Self::all()),
            late: Vec::new(),
        };
        Brokers {
            clock,
            replicas,
            leader: AtomicUsize::new(0),
            controller: Mutex::new(controller),
        }
    }

    fn controller(&self) -> std::sync::MutexGuard<'_, Controller> {
        self.controller.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn all() -> Vec<i32> {
        (0..BROKERS as i32).collect()
    }

    pub fn leader_index(&self) -> usize {
        self.leader.load(Ordering::Acquire)
    }

    pub fn leader(&self) -> &Arc<Partition> {
        &self.replicas[self.leader_index()]
    }

    /// Makes `next` the leader of `epoch` with the ISR the controller holds, then every
    /// other broker its follower, in an order the controller's requests might arrive in.
    pub fn elect(&self, next: usize, epoch: i32, rng: &mut Rng) {
        let isr = {
            let mut controller = self.controller();
            let isr = controller.isr.isr.clone();
            (controller.epoch, controller.isr) = (epoch, ControllerIsr::new(isr.clone()));
            isr
        };
        self.replicas[next]
            .become_leader(epoch, Self::all(), isr)
            .expect("become leader");
        self.leader.store(next, Ordering::Release);
        let mut others: Vec<usize> = (0..BROKERS).filter(|&b| b != next).collect();
        if rng.below(2) == 0 {
            others.reverse();
        }
        for b in others {
            rng.pace();
            self.replicas[b]
                .become_follower(epoch, next as i32)
                .expect("become follower");
        }
    }

    /// One step of a controller that shakes the partition: moves the leadership to
    /// another ISR member (when `elections`), starts a new epoch of the same leader, drops
    /// followers from the ISR (both now and then: below min ISR the HW must stop), moves
    /// the clock by up to twice `lag_ms` and ticks the leader (it proposes to drop the
    /// followers that lag and times out appends), runs retention on every replica, scrubs
    /// every replica, delivers an answer it held back, or takes the leader's ISR proposal
    /// (to grow it back, mostly). First it checks its ISR against the leader's HW.
    pub fn control_step(
        &self,
        rng: &mut Rng,
        epoch: &mut i32,
        elections: bool,
        lag_ms: i64,
    ) -> Change {
        let current = self.leader_index();
        let leader = &self.replicas[current];
        self.check_controller_isr();
        match rng.below(10) {
            0 if elections => {
                let isr = self.controller().isr.isr.clone();
                let others: Vec<usize> = (isr.iter().map(|&id| id as usize))
                    .filter(|&id| id != current)
                    .collect();
                if !others.is_empty() {
                    *epoch += 1;
                    let next = others[rng.below(others.len() as u64) as usize];
                    self.elect(next, *epoch, rng);
                    return Change::Leader {
                        from: current,
                        to: next,
                    };
                }
            }
            0 | 1 => {
                *epoch += 1;
                self.elect(current, *epoch, rng);
                return Change::Leader {
                    from: current,
                    to: current,
                };
            }
            2 => {
                let drop = rng.below(BROKERS as u64) as usize;
                let mut controller = self.controller();
                let isr = match rng.below(3) {
                    0 => vec![current as i32],
                    _ => (controller.isr.isr.iter().copied())
                        .filter(|&id| id as usize == current || id as usize != drop)
                        .collect(),
                };
                controller
                    .isr
                    .change(isr)
                    .expect("an ISR version within range");
                self.answer(controller, current, rng);
            }
            3 => {
                self.clock.advance_ms(rng.below(lag_ms as u64 * 2) as i64);
                leader.tick();
            }
            4 => {
                // Retention, on every replica by its own log and HW, as each broker runs
                // it: a follower fetching below the leader's new log start starts over
                // there.
                for r in &self.replicas {
                    r.delete_old_segments().expect("retention");
                    r.log().remove_expired_deleted_files().expect("removal");
                }
            }
            5 => {
                // A scrub of every replica's committed batches: nothing is damaged here,
                // so whatever runs meanwhile, it must find nothing.
                for (id, r) in self.replicas.iter().enumerate() {
                    let outcome = r.scrub().expect("scrub");
                    assert_eq!(outcome, ScrubOutcome::Clean, "broker {id}'s scrub");
                }
            }
            6 => self.deliver_late_answer(rng),
            _ => self.send_proposal(current, rng),
        }
        Change::None
    }

    /// The leader's ISR proposal, if it has one, reaches the controller: it takes it when
    /// made from the ISR it holds (or, one time in eight, refuses it, as for a fenced
    /// broker), and answers either way.
    fn send_proposal(&self, leader: usize, rng: &mut Rng) {
        let Some(proposal) = self.replicas[leader].isr_proposal() else {
            return;
        };
        let refuse = rng.below(8) == 0;
        let mut controller = self.controller();
        let epoch = controller.epoch;
        let isr = &mut controller.isr;
        let changed = match refuse {
            true => isr.refuse(epoch, &proposal),
            false => isr.take(epoch, &proposal),
        };
        changed.expect("an ISR version within range");
        self.answer(controller, leader, rng);
    }

    /// The controller's answer to `leader`: now, or held back to arrive late (a third of
    /// the time).
    fn answer(
        &self,
        mut controller: std::sync::MutexGuard<'_, Controller>,
        leader: usize,
        rng: &mut Rng,
    ) {
        let answer = Answer {
            to: leader,
            epoch: controller.epoch,
            isr: controller.isr.clone(),
        };
        if rng.below(3) == 0 {
            controller.late.push(answer);
        } else {
            drop(controller);
            self.deliver(answer);
        }
    }

    fn deliver_late_answer(&self, rng: &mut Rng) {
        let mut controller = self.controller();
        if controller.late.is_empty() {
            return;
        }
        let i = rng.below(controller.late.len() as u64) as usize;
        let answer = controller.late.swap_remove(i);
        drop(controller);
        self.deliver(answer);
    }

    /// Hands `answer` to its broker. One a later answer or a leader change overtook is
    /// refused and changes nothing.
    fn deliver(&self, a: Answer) {
        (a.isr.confirm(&self.replicas[a.to], a.epoch))
            .unwrap_or_else(|e| panic!("confirm ISR on broker {}: {e}", a.to));
    }

    /// Every member of the controller's ISR holds everything below the leader's HW: the
    /// controller may elect any of them. Read in this order (HW, ISR, log ends) while the
    /// other threads run: a member's log end only grows past the HW, and only this thread
    /// changes the controller's ISR.
    fn check_controller_isr(&self) {
        let leader = self.leader();
        let hw = leader.high_watermark();
        let controller = self.controller();
        for &id in &controller.isr.isr {
            let leo = self.replicas[id as usize].log().log_end_offset();
            assert!(
                leo >= hw,
                "broker {id}, in the controller's ISR {:?}, ends at {leo}, below the leader's \
                 HW {hw}:\n  {}",
                controller.isr,
                self.describe()
            );
        }
    }

    /// Broker `me` follows whichever broker leads, while `fetching`, in fetches of a few
    /// KiB, truncating where its log diverged from the leader's, and now and then falling
    /// behind for a few milliseconds.
    pub fn follow(&self, me: usize, fetching: &AtomicBool, seed: u64) {
        let mut rng = Rng::new(seed, 10 + me as u64);
        let replica = &self.replicas[me];
        while fetching.load(Ordering::Acquire) {
            rng.pace();
            if rng.below(256) == 0 {
                // Falls behind for a while (a slow disk, a long pause): the ISR may shrink
                // without it, and the leader's log start pass it.
                thread::sleep(Duration::from_millis(2 + rng.below(8)));
            }
            let leader = self.leader();
            if replica.is_leader() || Arc::ptr_eq(leader, replica) {
                thread::sleep(Duration::from_micros(100));
                continue;
            }
            let request = replica.fetch_request(1 + rng.below(8 << 10));
            match leader.fetch_wait(&request, Duration::from_millis(2)) {
                Ok(response) => match replica.apply_fetch(&response) {
                    // Became the leader since it asked.
                    Ok(_) | Err(Error::NotLeaderOrFollower) => {}
                    // The answer's slices are read here: if the broker that answered
                    // stepped down since and cut its log, they may be gone, or hold other
                    // batches.
                    Err(_)
                        if !(leader.is_leader()
                            && leader.leader_epoch() == request.leader_epoch) => {}
                    Err(e) => panic!("broker {me}: apply fetch: {e}"),
                },
                Err(Error::OffsetOutOfRange {
                    log_start_offset,
                    log_end_offset,
                    ..
                }) => {
                    replica
                        .handle_out_of_range(&request, log_start_offset, log_end_offset)
                        .expect("out of range");
                }
                // The leader it asked stepped down, or the two are between epoch changes.
                Err(
                    Error::NotLeaderOrFollower
                    | Error::FencedLeaderEpoch { .. }
                    | Error::UnknownLeaderEpoch { .. },
                ) => thread::yield_now(),
                Err(e) => panic!("broker {me}: fetch: {e}"),
            }
        }
    }

    /// Waits until every broker has the leader's whole log, all are in the ISR and the HW
    /// is at the log end, confirming the leader's ISR proposals meanwhile.
    pub fn settle(&self, within: Duration) {
        let deadline = Instant::now() + within;
        let mut rng = Rng::new(0, 99);
        loop {
            while !self.controller().late.is_empty() {
                self.deliver_late_answer(&mut rng);
            }
            let leader = self.leader();
            self.send_proposal(self.leader_index(), &mut rng);
            let end = leader.log().log_end_offset();
            if self
                .replicas
                .iter()
                .all(|r| r.log().log_end_offset() == end)
                && leader.isr().map(|i| i.len()) == Some(BROKERS)
                && leader.high_watermark() == end
            {
                return;
            }
            if Instant::now() > deadline {
                panic!("the followers never caught up:\n  {}", self.describe());
            }
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Each broker's role, epoch, log end, HW and ISR, a line each.
    pub fn describe(&self) -> String {
        let lines: Vec<String> = (self.replicas.iter().enumerate())
            .map(|(id, r)| {
                format!(
                    "broker {id}: leader {} epoch {} LEO {} HW {} ISR {:?} proposal {:?}",
                    r.is_leader(),
                    r.leader_epoch(),
                    r.log().log_end_offset(),
                    r.high_watermark(),
                    r.isr(),
                    r.isr_proposal()
                )
            })
            .collect();
        lines.join("\n  ")
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
