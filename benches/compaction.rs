//! Compaction of a log with 10% live keys against a raw read of its files, loading an
//! offsets partition against a raw read, and offset commits with `acks=1` (the workloads
//! of `partlog bench`, see `partlog::bench::compaction`).

use std::time::Duration;

mod common;

use common::bench_sides;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use partlog::bench::compaction;

/// Bytes of the compacted log and of the offsets partition per iteration.
const BYTES: u64 = 64 << 20;

fn cleaning(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().join("compaction");
    let mut group = c.benchmark_group("compaction");
    group.throughput(Throughput::Bytes(BYTES));
    bench_sides(&mut group, ["clean", "raw_read"], || {
        let cleanings =
            compaction::compaction(&root, BYTES, compaction::KeyOrder::Rounds, 1).expect("clean");
        (cleanings.clean, cleanings.raw)
    });
    group.finish();
}

fn offsets(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().join("offsets");
    let mut group = c.benchmark_group("offsets_load");
    group.throughput(Throughput::Bytes(BYTES));
    bench_sides(&mut group, ["load", "raw_read"], || {
        let (load, raw, _) = compaction::offsets_load(&root, BYTES, 1).expect("load");
        (load, raw)
    });
    group.finish();
    let mut group = c.benchmark_group("offset_commits");
    const COMMITS: usize = 2_000;
    let offsets = (COMMITS * 100) as f64;
    group.throughput(Throughput::Elements(offsets as u64));
    group.bench_function("acks_1", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let per_s = compaction::commits_per_second(&root, COMMITS).expect("commits");
                    Duration::from_secs_f64(offsets / per_s)
                })
                .sum()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    targets = cleaning, offsets
}
criterion_main!(benches);
