//! Building and validating one 16 KiB batch of 1 KiB records.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use partlog::bench::workload;
use partlog::record::BatchBuilder;

fn record(c: &mut Criterion) {
    let batch = workload::sample_batch();
    let mut group = c.benchmark_group("record");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    let mut builder = BatchBuilder::new();
    let mut out = Vec::with_capacity(batch.len());
    let now = workload::now_ms();
    group.bench_function("build", |b| {
        b.iter(|| {
            out.clear();
            workload::build_batch(&mut builder, now, &mut out);
        })
    });
    group.bench_function("validate", |b| {
        b.iter(|| workload::validate_batches(&batch).expect("valid"))
    });
    group.bench_function("crc32c_only", |b| {
        b.iter(|| partlog::record::crc32c(&batch[21..]))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = record
}
criterion_main!(benches);
