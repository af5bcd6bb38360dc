//! Leader append against a raw sequential write loop of the same batch bytes.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use partlog::bench::workload;

/// Bytes appended per iteration.
const BYTES: u64 = 32 << 20;

fn append(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let batch = workload::sample_batch();
    let count = (BYTES / batch.len() as u64) as usize;
    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Bytes((count * batch.len()) as u64));
    let log_root = tmp.path().join("log");
    group.bench_function("log", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                workload::remove_tree(&log_root).expect("clean");
                let start = Instant::now();
                let log = workload::append_log(&workload::partition_dir(&log_root), &batch, count)
                    .expect("append");
                total += start.elapsed();
                drop(log);
            }
            total
        })
    });
    let raw = tmp.path().join("raw.bin");
    group.bench_function("raw_write", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                workload::remove_file(&raw).expect("clean");
                let start = Instant::now();
                let file = workload::write_raw(&raw, &batch, count).expect("write");
                total += start.elapsed();
                drop(file);
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
        .measurement_time(Duration::from_secs(4));
    targets = append
}
criterion_main!(benches);
