//! Consumers never read above the high watermark: at every step of replication, with
//! followers behind and a failover in the middle, a consumer's reads end at the HW and
//! every record it saw stays in the log at its offset.

mod common;

use std::collections::BTreeMap;

use common::batch;
use partlog::cluster::{Cluster, ClusterOptions};
use partlog::record::batches;
use partlog::replica::Acks;

/// What a consumer reading from `from` on the leader sees: `(base offset, CRC)` per batch.
fn consume(c: &Cluster, from: i64) -> Vec<(i64, u32)> {
    let leader = c.replica(c.leader().unwrap()).unwrap();
    let mut out = Vec::new();
    let mut next = from;
    while let Some(slice) = leader.read_committed(next, 1 << 16).unwrap() {
        for b in batches(&slice.to_vec().unwrap()) {
            let h = *b.unwrap().header();
            assert!(
                h.last_offset() < leader.high_watermark(),
                "read above the HW"
            );
            out.push((h.base_offset, h.crc));
            next = h.next_offset();
        }
    }
    out
}

#[test]
fn consumers_never_see_what_is_not_committed() {
    let mut c = Cluster::new(ClusterOptions::default()).unwrap();
    let mut seen: BTreeMap<i64, u32> = BTreeMap::new();
    for i in 0..40 {
        let acks = if i % 3 == 0 { Acks::Leader } else { Acks::All };
        c.produce(&mut batch(2, 20, i), acks, 30_000).unwrap();
        // Before replication, the new batch is above the HW.
        for (base, crc) in consume(&c, 0) {
            assert_eq!(*seen.entry(base).or_insert(crc), crc);
        }
        if i == 20 {
            c.kill(0).unwrap().expect("failover");
        }
        if i == 30 {
            c.restart(0).unwrap();
        }
        c.replicate().unwrap();
    }
    for _ in 0..4 {
        c.replicate().unwrap();
    }
    // Everything a consumer ever saw is still there, at its offset, with its bytes.
    let now: BTreeMap<i64, u32> = consume(&c, 0).into_iter().collect();
    for (base, crc) in &seen {
        assert_eq!(
            now.get(base),
            Some(crc),
            "a consumed batch at {base} changed"
        );
    }
    assert!(seen.len() > 30);
}

/// ListOffsets for consumers answers within the HW: "latest" is the HW, and a timestamp
/// only records above it carry finds nothing yet.
#[test]
fn list_offsets_answers_within_the_high_watermark() {
    let mut c = Cluster::new(ClusterOptions::default()).unwrap();
    c.produce(&mut batch(2, 20, 1_000), Acks::All, 30_000)
        .unwrap();
    for _ in 0..3 {
        c.replicate().unwrap();
    }
    // Above the HW: on the leader only.
    c.produce(&mut batch(2, 20, 5_000), Acks::Leader, 30_000)
        .unwrap();
    let leader = c.replica(0).unwrap();
    assert_eq!(
        (leader.high_watermark(), leader.log().log_end_offset()),
        (2, 4)
    );
    let latest = leader
        .offset_for_timestamp(partlog::log::LATEST_TIMESTAMP)
        .unwrap()
        .unwrap();
    assert_eq!(latest.offset, 2);
    assert_eq!(
        leader.offset_for_timestamp(1_001).unwrap().unwrap().offset,
        1
    );
    assert_eq!(leader.offset_for_timestamp(5_000).unwrap(), None);
    // The log itself knows the uncommitted records.
    assert_eq!(
        leader
            .log()
            .offset_for_timestamp(5_000)
            .unwrap()
            .unwrap()
            .offset,
        2
    );
    c.replicate().unwrap();
    c.replicate().unwrap();
    let leader = c.replica(0).unwrap();
    assert_eq!(
        leader.offset_for_timestamp(5_000).unwrap().unwrap().offset,
        2
    );
}
