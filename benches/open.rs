//! Opening a cleanly shut down log dir whose partition has 1,000 segments.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use partlog::bench::{workload, CLEAN_OPEN_SEGMENTS};

fn open(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("temp dir");
    workload::build_segments(tmp.path(), CLEAN_OPEN_SEGMENTS).expect("build");
    c.bench_function("open/clean_1000_segments", |b| {
        b.iter_custom(|iters| {
            // Only the open is timed; the clean close that re-arms the marker is not.
            (0..iters)
                .map(|_| workload::open_clean(tmp.path()).expect("open").1)
                .sum()
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = open
}
criterion_main!(benches);
