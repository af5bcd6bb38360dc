//! `NotEnoughReplicas` (refused, nothing written) and `NotEnoughReplicasAfterAppend`
//! (written and replicated, but the ISR was below `min.insync.replicas` when the high
//! watermark passed it), as Kafka's `DelayedProduce` answers.

mod common;

use common::batch;
use common::cluster::{set_isr, Cluster};
use partlog::replica::{Acks, TruncationMode};
use partlog::Error;

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

#[test]
fn the_isr_shrinking_below_the_minimum_fails_the_append_after_it_is_written() {
    let c = Cluster::new(3, 2, TruncationMode::LeaderEpoch);
    let handle = c
        .replica(0)
        .append(&mut batch(2, 20, 0), Acks::All, 30_000)
        .unwrap();
    // The controller shrinks the ISR to the leader alone (say, both followers' sessions
    // expired); the HW freezes there (KIP-966).
    set_isr(c.replica(0), vec![0]);
    assert_eq!(c.replica(0).high_watermark(), 0);
    // Broker 1 copies the batch, then tells the leader: it is proposed back into the ISR,
    // and with the proposal counted the HW passes the append while the confirmed ISR is
    // still one replica.
    c.fetch(1, 0);
    assert!(handle.poll().is_none());
    c.fetch(1, 0);
    assert_eq!(c.replica(0).isr_proposal().map(|p| p.isr), Some(vec![0, 1]));
    assert_eq!(c.replica(0).high_watermark(), 2);
    let err = handle.poll().expect("complete").unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotEnoughReplicasAfterAppend {
                isr: 1,
                required: 2
            }
        ),
        "{err}"
    );
    // The records stay: written and replicated, only the guarantee was not met.
    assert_eq!(c.replica(1).log().log_end_offset(), 2);
}
