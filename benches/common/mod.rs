//! What the criterion benches share.

use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::BenchmarkGroup;

/// Benches the two sides of a workload that times both in one run (a leader and its
/// follower, `acks=1` and `acks=all`, a cleaning and a raw read): `run` returns the two
/// times, and each side's bench counts its own.
pub fn bench_sides(
    group: &mut BenchmarkGroup<'_, WallTime>,
    names: [&str; 2],
    mut run: impl FnMut() -> (Duration, Duration),
) {
    for (side, name) in names.into_iter().enumerate() {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        let (first, second) = run();
                        if side == 0 {
                            first
                        } else {
                            second
                        }
                    })
                    .sum()
            })
        });
    }
}
