//! A consumer group through a broker failure: three brokers host the data partition and
//! the group's offsets partition (each a cluster of three replicas, broker `b` of both on
//! the same machine); a producer writes with `acks=all`, a consumer processes committed
//! records and commits its position every `COMMIT_EVERY` records. Broker 0, leader of
//! both, dies. After failover the group's committed offset is exactly the last one
//! acknowledged, the consumer resumes there, skips nothing, and re-processes at most the
//! uncommitted window.

mod common;

use common::batch;
use partlog::cluster::{Cluster, ClusterOptions};
use partlog::offsets::{offsets_log_config, OffsetCommit, OffsetsConfig, OffsetsStore};
use partlog::record::batches;
use partlog::replica::{Acks, AppendHandle};
use partlog::LogConfig;

const GROUP: &str = "invoices";
const COMMIT_EVERY: i64 = 20;

struct World {
    data: Cluster,
    offsets: Cluster,
    stores: Vec<OffsetsStore>,
    index: u32,
}

impl World {
    fn new() -> World {
        let small = |config: LogConfig| LogConfig {
            segment_bytes: 8192,
            index_bytes_max: 1024,
            ..config
        };
        let data = Cluster::new(ClusterOptions {
            seed: 1,
            log_config: small(LogConfig::default()),
            ..ClusterOptions::default()
        })
        .unwrap();
        let offsets = Cluster::new(ClusterOptions {
            seed: 2,
            log_config: small(offsets_log_config()),
            ..ClusterOptions::default()
        })
        .unwrap();
        let stores: Vec<OffsetsStore> = (0..3)
            .map(|_| OffsetsStore::new(OffsetsConfig::default(), offsets.clock().clone()))
            .collect();
        let index = stores[0].partition_for(GROUP);
        for (b, store) in stores.iter().enumerate() {
            store.host(index, offsets.replica(b).unwrap().clone());
        }
        stores[0].become_leader(index).unwrap();
        stores[0].load(index).unwrap();
        World {
            data,
            offsets,
            stores,
            index,
        }
    }

    fn coordinator(&self) -> &OffsetsStore {
        &self.stores[self.offsets.leader().unwrap()]
    }

    fn round(&mut self) {
        self.data.replicate().unwrap();
        self.offsets.replicate().unwrap();
    }

    /// The committed records of the data leader from `from`: their offsets.
    fn consumable(&self, from: i64) -> Vec<i64> {
        let leader = self.data.replica(self.data.leader().unwrap()).unwrap();
        let Some(slice) = leader.read_committed(from, 4096).unwrap() else {
            return Vec::new();
        };
        let bytes = slice.to_vec().unwrap();
        let mut out = Vec::new();
        for b in batches(&bytes) {
            for r in b.unwrap().records().unwrap() {
                let offset = r.unwrap().offset;
                if offset >= from {
                    out.push(offset);
                }
            }
        }
        out
    }
}

fn position_commit(offset: i64) -> OffsetCommit {
    OffsetCommit {
        topic: "payments".into(),
        partition: 0,
        offset,
        leader_epoch: 1,
        metadata: String::new(),
    }
}

#[test]
fn the_group_resumes_from_its_last_acknowledged_commit_after_the_leader_dies() {
    let mut w = World::new();
    let mut position = 0i64; // the consumer's next offset
    let mut processed: Vec<i64> = Vec::new();
    let mut pending: Vec<(AppendHandle, i64)> = Vec::new();
    let mut last_acked_commit = None;
    let mut produced = Vec::new();
    let step = |w: &mut World, i: i64, produced: &mut Vec<i64>| {
        let h = w
            .data
            .produce(&mut batch(3, 30, i), Acks::All, 30_000)
            .unwrap();
        produced.push(h.info().first_offset);
        w.round();
    };
    for i in 0..60 {
        step(&mut w, i, &mut produced);
        for offset in w.consumable(position) {
            processed.push(offset);
            position = offset + 1;
            if position % COMMIT_EVERY == 0 {
                let h = w
                    .coordinator()
                    .commit(GROUP, &[position_commit(position)])
                    .unwrap();
                pending.push((h, position));
            }
        }
        pending.retain(|(h, p)| match h.poll() {
            Some(Ok(_)) => {
                last_acked_commit = Some(*p);
                false
            }
            Some(Err(_)) => false,
            None => true,
        });
    }
    let last_acked = last_acked_commit.expect("commits were acknowledged");
    let processed_to = position;
    assert!(
        processed_to - last_acked > 0,
        "some records are processed but not committed"
    );

    // Broker 0 leads both partitions, and dies.
    let data_election = w.data.kill(0).unwrap().expect("data failover");
    let offsets_election = w.offsets.kill(0).unwrap().expect("offsets failover");
    let coordinator = &w.stores[offsets_election.leader];
    coordinator.become_leader(w.index).unwrap();
    coordinator.load(w.index).unwrap();
    w.round();
    w.round();
    let coordinator = &w.stores[offsets_election.leader];
    let committed = coordinator.fetch(GROUP, None).unwrap();
    assert_eq!(committed.len(), 1);
    let resumed_from = committed[0].1.offset;
    assert_eq!(
        resumed_from, last_acked,
        "the committed offset is the last acknowledged one"
    );

    // The consumer resumes there on the new data leader: nothing committed is skipped, and
    // what it re-processes is bounded by the uncommitted window.
    assert!(resumed_from <= processed_to, "skipped records");
    let reprocessed = processed_to - resumed_from;
    assert!(
        reprocessed < 2 * COMMIT_EVERY,
        "re-processed {reprocessed} records, the window is {COMMIT_EVERY}"
    );
    // A new leader's high watermark catches up with its followers' next fetches.
    for _ in 0..3 {
        w.round();
    }
    let hw = w
        .data
        .replica(data_election.leader)
        .unwrap()
        .high_watermark();
    assert!(
        hw >= processed_to,
        "records the consumer saw are still committed"
    );
    let again = w.consumable(resumed_from);
    assert_eq!(again.first(), Some(&resumed_from));
    assert!(again.iter().take_while(|&&o| o < processed_to).count() as i64 == reprocessed);
}
