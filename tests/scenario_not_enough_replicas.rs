//! `NotEnoughReplicas` (refused, nothing written); an ISR below `min.insync.replicas`
//! holding a written `acks=all` append until it is back (KIP-966); and why partlog never
//! answers `NotEnoughReplicasAfterAppend`, which Kafka's `DelayedProduce` answers in a
//! race partlog's locking rules out.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, ThreadId};
use std::time::Duration;

use common::batch;
use common::cluster::{open_log, set_isr, Cluster};
use partlog::io::sim::SimStorage;
use partlog::replica::{Acks, Partition, ReplicaConfig, TruncationMode};
use partlog::{Clock, Error, ManualClock};

#[test]
fn acks_all_below_min_isr_is_refused_and_writes_nothing() {
    let c = Cluster::new(3, 2, TruncationMode::LeaderEpoch);
    set_isr(c.replica(0), vec![0]);
    let err = c
        .replica(0)
        .append(&mut batch(1, 20, 0), Acks::All, 30_000)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotEnoughReplicas {
                isr: 1,
                required: 2
            }
        ),
        "{err}"
    );
    assert_eq!(c.replica(0).log().log_end_offset(), 0);
    // acks=1 and acks=0 are not held to the minimum.
    for acks in [Acks::Leader, Acks::None] {
        let h = c
            .replica(0)
            .append(&mut batch(1, 20, 0), acks, 30_000)
            .unwrap();
        assert!(h.poll().expect("complete").is_ok());
    }
}

/// The ISR shrinks below the minimum with an `acks=all` append written and waiting: the
/// HW freezes (KIP-966), and stays frozen when the follower catches up and is proposed
/// back in, since the controller may still refuse it (it counted towards the minimum
/// once, and the HW moved on a proposal). The append completes once the controller takes
/// the follower back; another, left waiting, fails at its deadline. Its records stay:
/// written, only the guarantee was not met in time.
#[test]
fn an_isr_below_the_minimum_holds_a_written_append_until_it_is_back() {
    let c = Cluster::new(3, 2, TruncationMode::LeaderEpoch);
    let leader = c.replica(0);
    let handle = leader
        .append(&mut batch(2, 20, 0), Acks::All, 30_000)
        .unwrap();
    // The controller shrinks the ISR to the leader alone (say, both followers' sessions
    // expired); the HW freezes there.
    set_isr(leader, vec![0]);
    c.fetch(1, 0);
    c.fetch(1, 0);
    assert_eq!(leader.isr_proposal().map(|p| p.isr), Some(vec![0, 1]));
    assert_eq!(leader.high_watermark(), 0, "no HW move on a proposal");
    assert!(handle.poll().is_none());
    set_isr(leader, vec![0, 1]);
    assert_eq!(leader.high_watermark(), 2);
    assert!(handle.poll().expect("complete").is_ok());

    set_isr(leader, vec![0]);
    let late = leader
        .append(&mut batch(1, 20, 1), Acks::Leader, 30_000)
        .unwrap();
    assert!(late.poll().expect("acks=1").is_ok());
    let waiting = leader
        .append(&mut batch(1, 20, 2), Acks::All, 1_000)
        .unwrap_err();
    assert!(
        matches!(waiting, Error::NotEnoughReplicas { .. }),
        "{waiting}"
    );
    set_isr(leader, vec![0, 1, 2]);
    let waiting = leader
        .append(&mut batch(1, 20, 3), Acks::All, 1_000)
        .unwrap();
    set_isr(leader, vec![0]);
    c.clock.advance_ms(1_000);
    leader.tick();
    assert!(matches!(waiting.poll(), Some(Err(Error::RequestTimedOut))));
    assert_eq!(leader.log().log_end_offset(), 4, "the records stay");
}

/// A clock whose next reading on one chosen thread waits until the test opens it: it
/// stops an append between its write and its registration as a waiting append, the one
/// place where the replica reads its clock in between.
#[derive(Debug)]
struct GatedClock {
    now: i64,
    gate: Mutex<Gate>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct Gate {
    armed_for: Option<ThreadId>,
    waiting: bool,
    open: bool,
}

impl Clock for GatedClock {
    fn now_ms(&self) -> i64 {
        let mut gate = self.gate.lock().unwrap();
        if gate.armed_for == Some(thread::current().id()) {
            gate.armed_for = None;
            gate.waiting = true;
            self.changed.notify_all();
            while !gate.open {
                gate = self.changed.wait(gate).unwrap();
            }
        }
        self.now
    }
}

impl GatedClock {
    fn update(&self, f: impl FnOnce(&mut Gate)) {
        f(&mut self.gate.lock().unwrap());
        self.changed.notify_all();
    }

    fn wait_until_held(&self) {
        let mut gate = self.gate.lock().unwrap();
        while !gate.waiting {
            gate = self.changed.wait(gate).unwrap();
        }
    }
}

/// Why partlog never answers `NotEnoughReplicasAfterAppend`, which Kafka's
/// `DelayedProduce` answers when it finds the HW past an append and the ISR below the
/// minimum. The HW moves only while the confirmed ISR is at the minimum, and it completes
/// the appends it passes then; so the error needs the ISR to shrink after the HW passed
/// an append and before the append waits for it (in Kafka, an append and its entry into
/// the purgatory are two steps). Here an append writes and registers under one shared
/// hold of the replica's role lock, which an ISR change takes exclusively: the shrink
/// waits for the append, which completes with the ISR it was written under. The append is
/// stopped between its write and its registration (its one clock reading there), the
/// follower copies it and the HW passes it, and the controller's shrink arrives.
#[test]
fn an_isr_shrink_waits_for_an_append_between_its_write_and_its_wait() {
    let manual = Arc::new(ManualClock::new(1_000_000));
    let gated = Arc::new(GatedClock {
        now: 1_000_000,
        gate: Mutex::new(Gate::default()),
        changed: Condvar::new(),
    });
    let replica = |id: i32, clock: Arc<dyn Clock>| {
        let config = ReplicaConfig {
            min_insync_replicas: 2,
            ..ReplicaConfig::new(id)
        };
        let log = open_log(&SimStorage::new(id as u64 + 1), &manual);
        Partition::new(log, config, clock, 0)
    };
    let leader = replica(0, gated.clone());
    let follower = replica(1, manual.clone());
    leader.become_leader(1, vec![0, 1], vec![0, 1]).unwrap();
    follower.become_follower(1, 0).unwrap();
    let fetch = || {
        let response = leader.fetch(&follower.fetch_request(1 << 20)).unwrap();
        assert!(follower.apply_fetch(&response).unwrap());
    };
    let shrunk = AtomicBool::new(false);
    thread::scope(|s| {
        let appender = s.spawn(|| {
            gated.update(|g| g.armed_for = Some(thread::current().id()));
            let handle = leader.append(&mut batch(2, 20, 0), Acks::All, 30_000);
            handle.unwrap().poll()
        });
        gated.wait_until_held();
        assert_eq!(leader.log().log_end_offset(), 2, "written");
        fetch();
        fetch();
        assert_eq!(leader.high_watermark(), 2, "passed before the append waits");
        let controller = s.spawn(|| {
            leader.confirm_isr(1, 1, vec![0]).unwrap();
            shrunk.store(true, Ordering::Release);
        });
        thread::sleep(Duration::from_millis(50));
        assert!(
            !shrunk.load(Ordering::Acquire),
            "the shrink waits for the append"
        );
        gated.update(|g| g.open = true);
        let outcome = appender.join().unwrap();
        assert!(
            outcome.expect("complete").is_ok(),
            "under the ISR it was written in"
        );
        controller.join().unwrap();
    });
    assert_eq!(leader.isr(), Some(vec![0]));
}
