//! Recovery of an unflushed log (every batch validated, indexes rebuilt) against raw
//! 1 MiB preads plus CRC-32C of the same bytes.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use partlog::bench::workload;

/// Bytes of log data recovered per iteration.
const BYTES: u64 = 64 << 20;

fn recovery(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (_, one) = workload::corpus(workload::LARGE, 1);
    let (mut corpus, batch_len) = workload::corpus(workload::LARGE, (BYTES / one as u64) as usize);
    let dir = workload::partition_dir(tmp.path());
    // Dropped without flush or close: every open below is a crash recovery.
    drop(workload::append_log(&dir, &mut corpus, batch_len).expect("append"));
    let segments = workload::segment_files(&dir).expect("list");
    let mut buf = vec![0u8; workload::FETCH_BYTES];
    let mut group = c.benchmark_group("recovery");
    group.throughput(Throughput::Bytes(corpus.len() as u64));
    group.bench_function("log_open_unclean", |b| {
        // The log is dropped outside the timing. Criterion's warm-up absorbs the first
        // open, which may still meet the kernel writing the appended data back.
        b.iter_with_large_drop(|| workload::recover_log(&dir).expect("recover"))
    });
    group.bench_function("raw_read_crc", |b| {
        b.iter(|| workload::read_crc_raw(&segments, &mut buf).expect("read"))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = recovery
}
criterion_main!(benches);
