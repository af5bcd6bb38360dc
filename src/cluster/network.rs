//! The network between the brokers of a [`super::Cluster`], and from its controller to
//! them: seeded message loss, duplication, delay (which reorders) and isolation of
//! brokers.

use std::collections::BTreeSet;

use crate::io::sim::SimRng;
use crate::replica::FetchResponse;

/// How often the network misbehaves, in percent of messages. All zero by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetworkFaults {
    /// Requests and answers lost.
    pub drop_percent: u8,
    /// Answers delivered twice.
    pub duplicate_percent: u8,
    /// Answers held back, to arrive at a later round (after newer ones).
    pub delay_percent: u8,
}

/// The controller's answer to the leader of `epoch`: the ISR it holds.
#[derive(Debug, Clone)]
pub(super) struct IsrAnswer {
    pub epoch: i32,
    pub isr: super::ControllerIsr,
}

/// What the network carries to a broker: a leader's answer to a follower's fetch, or the
/// controller's answer to a leader.
#[derive(Debug, Clone)]
pub(super) enum Message {
    Fetch(FetchResponse),
    Isr(IsrAnswer),
}

#[derive(Debug)]
pub(super) struct Network {
    faults: NetworkFaults,
    rng: SimRng,
    isolated: BTreeSet<usize>,
    /// Messages held back, with the broker they are from (none for the controller's) and
    /// the one they are for.
    delayed: Vec<(Option<usize>, usize, Message)>,
}

impl Network {
    pub(super) fn new(faults: NetworkFaults, seed: u64) -> Network {
        Network {
            faults,
            rng: SimRng::new(seed),
            isolated: BTreeSet::new(),
            delayed: Vec::new(),
        }
    }

    pub(super) fn faults_mut(&mut self) -> &mut NetworkFaults {
        &mut self.faults
    }

    pub(super) fn set_isolated(&mut self, broker: usize, isolated: bool) {
        if isolated {
            self.isolated.insert(broker);
        } else {
            self.isolated.remove(&broker);
        }
    }

    fn happens(&mut self, percent: u8) -> bool {
        percent > 0 && self.rng.below(100) < u64::from(percent)
    }

    /// Whether a message from `from` reaches `to`.
    pub(super) fn carries(&mut self, from: usize, to: usize) -> bool {
        if self.isolated.contains(&from) || self.isolated.contains(&to) {
            return false;
        }
        !self.happens(self.faults.drop_percent)
    }

    /// Whether a message of the controller gets through (it is never cut off).
    pub(super) fn controller_carries(&mut self) -> bool {
        !self.happens(self.faults.drop_percent)
    }

    /// What reaches broker `to` of a message from broker `from` (none: the controller)
    /// now: it once, twice, or not yet.
    pub(super) fn deliveries(
        &mut self,
        from: Option<usize>,
        to: usize,
        message: Message,
    ) -> Vec<Message> {
        if self.happens(self.faults.delay_percent) {
            self.delayed.push((from, to, message));
            return Vec::new();
        }
        if self.happens(self.faults.duplicate_percent) {
            return vec![message.clone(), message];
        }
        vec![message]
    }

    /// Held-back messages arriving now: each with even odds, in a random order; and how
    /// many came due and were lost. One between brokers either of which is cut off by
    /// then is lost, as a partition loses what is in flight across it.
    pub(super) fn due(&mut self) -> (Vec<(usize, Message)>, usize) {
        let (mut due, mut lost) = (Vec::new(), 0);
        let mut i = 0;
        while i < self.delayed.len() {
            if self.rng.ratio(1, 2) {
                let j = self.rng.below(self.delayed.len() as u64) as usize;
                let (from, to, message) = self.delayed.swap_remove(j);
                let cut = |b: usize| self.isolated.contains(&b);
                if from.is_none_or(|f| !cut(f) && !cut(to)) {
                    due.push((to, message));
                } else {
                    lost += 1;
                }
            } else {
                i += 1;
            }
        }
        (due, lost)
    }

    /// A broker went down: messages in flight to it are gone.
    pub(super) fn forget(&mut self, broker: usize) {
        self.delayed.retain(|(_, to, _)| *to != broker);
    }
}
