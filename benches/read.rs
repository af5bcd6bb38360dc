//! A fetch scan of the whole log (1 MiB fetches) against raw 1 MiB preads of the same file.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use partlog::bench::workload;

/// Bytes of log data scanned per iteration.
const BYTES: u64 = 64 << 20;

fn read(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (_, one) = workload::corpus(workload::LARGE, 1);
    let (mut corpus, batch_len) = workload::corpus(workload::LARGE, (BYTES / one as u64) as usize);
    let dir = workload::partition_dir(tmp.path());
    let log = workload::append_log(&dir, &mut corpus, batch_len).expect("append");
    let segments = workload::segment_files(&dir).expect("list");
    let mut buf = vec![0u8; workload::FETCH_BYTES];
    let mut group = c.benchmark_group("read");
    group.throughput(Throughput::Bytes(corpus.len() as u64));
    group.bench_function("log_fetch", |b| {
        b.iter(|| workload::read_log(&log, &mut buf).expect("read"))
    });
    group.bench_function("raw_pread", |b| {
        b.iter(|| workload::pread_files(&segments, &mut buf, |_| {}).expect("pread"))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = read
}
criterion_main!(benches);
