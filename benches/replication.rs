//! Replication: a follower copying the leader's log by fetches against the leader's own
//! append of the same distinct batches, and `acks=all` against `acks=1` throughput with two
//! followers fetching (the workloads of `partlog bench`, see `partlog::bench::replication`).

use std::time::Duration;

mod common;

use common::bench_sides;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use partlog::bench::replication;
use partlog::bench::workload;

/// Bytes appended per iteration.
const BYTES: u64 = 32 << 20;

fn corpus() -> (Vec<u8>, usize) {
    let (_, one) = workload::corpus(workload::LARGE, 1);
    workload::corpus(workload::LARGE, (BYTES / one as u64) as usize)
}

fn catchup(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().join("replicas");
    let (mut corpus, batch_len) = corpus();
    let mut group = c.benchmark_group("follower_catchup");
    group.throughput(Throughput::Bytes(corpus.len() as u64));
    bench_sides(&mut group, ["leader_append", "follower_catchup"], || {
        replication::follower_catchup(&root, &mut corpus, batch_len, 1).expect("catch-up")
    });
    group.finish();
}

fn acks(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().join("replicas");
    let (mut corpus, batch_len) = corpus();
    let bytes = corpus.len() as f64;
    let mut group = c.benchmark_group("acks");
    group.throughput(Throughput::Bytes(corpus.len() as u64));
    // The workload reports throughputs; each side's time is its bytes at its rate.
    let time = |mb_s: f64| Duration::from_secs_f64(bytes / (mb_s * 1e6));
    bench_sides(&mut group, ["acks_1", "acks_all"], || {
        let f = replication::acks_all_vs_one(&root, &mut corpus, batch_len, 100).expect("acks");
        (time(f.acks1_mb_s), time(f.acks_all_mb_s))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    targets = catchup, acks
}
criterion_main!(benches);
