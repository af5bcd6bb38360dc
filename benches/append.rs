//! Leader append against a raw sequential write loop of the same bytes, one batch per
//! append or `pwrite`, for both record shapes. The batches are distinct and built before
//! timing: a broker never appends the same batch twice. As in `partlog bench`, only the
//! writes are timed: creating the log (its first segment and preallocated indexes, once
//! per segment of appends) and the raw file is not.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use partlog::bench::workload::{self, Shape};

/// Bytes appended per iteration.
const BYTES: u64 = 32 << 20;

fn append_shape(c: &mut Criterion, name: &str, shape: Shape) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (_, one) = workload::corpus(shape, 1);
    let (mut corpus, batch_len) = workload::corpus(shape, (BYTES / one as u64) as usize);
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(corpus.len() as u64));
    let log_root = tmp.path().join("log");
    group.bench_function("log", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                workload::remove_tree(&log_root).expect("clean");
                let dir = workload::partition_dir(&log_root);
                let log = workload::create_log(&dir).expect("create");
                let start = Instant::now();
                workload::append_batches(&log, &mut corpus, batch_len).expect("append");
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
                let file = workload::create_raw(&raw).expect("create");
                let start = Instant::now();
                workload::write_batches(file.as_ref(), 0, &corpus, batch_len).expect("write");
                total += start.elapsed();
                drop(file);
            }
            total
        })
    });
    group.finish();
}

fn append(c: &mut Criterion) {
    append_shape(c, "append", workload::LARGE);
    append_shape(c, "append_small", workload::SMALL);
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
