//! Compaction of a log with 10% live keys against a raw read of its files, loading an
//! offsets partition against a raw read, and offset commits with `acks=1` (the workloads
//! of `partlog bench`, see `partlog::bench::compaction`).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use partlog::bench::compaction;

/// Bytes of the compacted log and of the offsets partition per iteration.
const BYTES: u64 = 64 << 20;

fn cleaning(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().join("compaction");
    let mut group = c.benchmark_group("compaction");
    group.throughput(Throughput::Bytes(BYTES));
    for (name, raw_side) in [("clean", false), ("raw_read", true)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (clean, raw, _) = compaction::compaction(&root, BYTES).expect("clean");
                    total += if raw_side { raw } else { clean };
                }
                total
            })
        });
    }
    group.finish();
}

fn offsets(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().join("offsets");
    let mut group = c.benchmark_group("offsets_load");
    group.throughput(Throughput::Bytes(BYTES));
    for (name, raw_side) in [("load", false), ("raw_read", true)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (load, raw, _) = compaction::offsets_load(&root, BYTES).expect("load");
                    total += if raw_side { raw } else { load };
                }
                total
            })
        });
    }
    group.finish();
    let mut group = c.benchmark_group("offset_commits");
    const COMMITS: usize = 2_000;
    group.throughput(Throughput::Elements((COMMITS * 100) as u64));
    group.bench_function("acks_1", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let per_s = compaction::commits_per_second(&root, COMMITS).expect("commits");
                total += Duration::from_secs_f64((COMMITS * 100) as f64 / per_s);
            }
            total
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
