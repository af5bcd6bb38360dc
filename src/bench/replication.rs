//! Replication workloads, on real disk, replicas in-process:
//!
//! - follower catch-up: a follower copies the leader's log by fetches (zero-copy slices
//!   read into the follower's buffer, then appended as follower), 16 MiB at a time after
//!   the leader appended them, compared with the leader's own append of the same distinct
//!   batches in the same run;
//! - `acks=all` against `acks=1`, with two followers fetching in a loop (delayed fetches,
//!   as Kafka's fetchers do) during both: the latency one append at a time adds, and the
//!   throughput of a producer keeping five appends in flight (Kafka's
//!   `max.in.flight.requests.per.connection`).

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::workload;
use crate::clock::SystemClock;
use crate::error::{Error, Result};
use crate::io::real::process_cpu_seconds;
use crate::log::Log;
use crate::replica::{Acks, AppendHandle, Partition, ReplicaConfig};

/// Bytes the leader appends before the follower fetches them, in the catch-up workload.
const CATCHUP_CHUNK_BYTES: usize = 16 << 20;
/// Appends a producer keeps in flight in the throughput runs.
const IN_FLIGHT: usize = 5;
/// Passes over the corpus of each `acks` setting (times summed).
const THROUGHPUT_REPS: usize = 2;
/// Bytes appended by one setting before the other takes its turn.
const ACKS_CHUNK_BYTES: usize = 16 << 20;
/// How long a follower's fetch waits at the leader for new data.
const FETCH_WAIT: Duration = Duration::from_millis(100);
/// How long an `acks=all` append may wait before the bench calls it failed.
const APPEND_TIMEOUT_MS: i64 = 30_000;

/// A replica of the bench partition in `root/<name>`, fresh.
fn replica(root: &Path, name: &str, id: i32) -> Result<Arc<Partition>> {
    let dir = workload::partition_dir(&root.join(name));
    workload::remove_tree(&dir)?;
    let log = Arc::new(workload::create_log(&dir)?);
    let config = ReplicaConfig {
        min_insync_replicas: 2,
        ..ReplicaConfig::new(id)
    };
    Ok(Arc::new(Partition::new(
        log,
        config,
        Arc::new(SystemClock),
        0,
    )))
}

/// A leader (id 0) and `followers` followers (ids 1..), all in sync, in epoch 1.
fn replica_set(root: &Path, followers: i32) -> Result<(Arc<Partition>, Vec<Arc<Partition>>)> {
    let ids: Vec<i32> = (0..=followers).collect();
    let leader = replica(root, "leader", 0)?;
    leader.become_leader(1, ids.clone(), ids.clone())?;
    let mut out = Vec::new();
    for &id in &ids[1..] {
        let f = replica(root, &format!("follower-{id}"), id)?;
        f.become_follower(1, 0)?;
        out.push(f);
    }
    Ok((leader, out))
}

/// One fetch of `follower` from `leader`, applied; whether it brought records.
fn fetch_once(leader: &Partition, follower: &Partition, wait: Duration) -> Result<bool> {
    let request = follower.fetch_request(workload::FETCH_BYTES as u64);
    let response = leader.fetch_wait(&request, wait)?;
    let got = response.records.is_some();
    follower.apply_fetch(&response)?;
    Ok(got)
}

/// Appends every batch of `corpus` to `leader` with `acks`, one append per batch.
fn append_all(leader: &Partition, corpus: &mut [u8], batch_len: usize) -> Result<()> {
    for batch in corpus.chunks_exact_mut(batch_len) {
        leader.append(batch, Acks::Leader, APPEND_TIMEOUT_MS)?;
    }
    Ok(())
}

/// The best of `reps` times of the leader appending `corpus`, and of a follower copying it
/// all from the leader.
pub fn follower_catchup(
    root: &Path,
    corpus: &mut [u8],
    batch_len: usize,
    reps: usize,
) -> Result<(Duration, Duration)> {
    // Chunk by chunk, each side timed on its own: the leader appends a chunk while the
    // follower fetches the chunk half a corpus behind it (the first half the leader appends
    // alone, the last half the follower fetches alone). Both meet the same page-cache and
    // write-back state, as the append workload's log and raw sides do, where a whole
    // gigabyte on one side, then on the other, would throttle whichever came second; and
    // the follower reads what a catching-up follower reads, batches long out of the CPU
    // cache (the chunk just appended would still be in it). Best of `reps` summed runs.
    let chunk_len = ((CATCHUP_CHUNK_BYTES / batch_len).max(1) * batch_len).min(corpus.len());
    let chunks = corpus.len().div_ceil(chunk_len.max(1));
    let lag = chunks / 2;
    let (mut append_best, mut catchup_best) = (Duration::MAX, Duration::MAX);
    for _ in 0..reps {
        let (leader, followers) = replica_set(root, 1)?;
        let follower = &followers[0];
        let (mut append, mut catchup) = (Duration::ZERO, Duration::ZERO);
        let mut ends = Vec::with_capacity(chunks);
        let mut pieces = corpus.chunks_mut(chunk_len);
        for i in 0..chunks + lag {
            if let Some(chunk) = pieces.next() {
                let start = Instant::now();
                append_all(&leader, chunk, batch_len)?;
                append += start.elapsed();
                ends.push(leader.log().log_end_offset());
            }
            if let Some(&end) = i.checked_sub(lag).and_then(|behind| ends.get(behind)) {
                let start = Instant::now();
                while follower.log().log_end_offset() < end {
                    fetch_once(&leader, follower, Duration::ZERO)?;
                }
                catchup += start.elapsed();
            }
        }
        append_best = append_best.min(append);
        catchup_best = catchup_best.min(catchup);
        check_same_end(leader.log(), follower.log())?;
        drop((leader, followers));
    }
    workload::remove_tree(root)?;
    Ok((append_best, catchup_best))
}

fn check_same_end(leader: &Log, follower: &Log) -> Result<()> {
    if leader.log_end_offset() == follower.log_end_offset() {
        Ok(())
    } else {
        Err(Error::InvalidConfig(format!(
            "bench catch-up: follower ended at {}, leader at {}",
            follower.log_end_offset(),
            leader.log_end_offset()
        )))
    }
}

/// What the `acks` workload measured.
#[derive(Debug, Clone, Default)]
pub struct AcksFigures {
    /// Latency of one append at a time, `acks=1` and `acks=all`, in microseconds.
    pub acks1_p50_us: f64,
    pub acks1_p99_us: f64,
    pub acks_all_p50_us: f64,
    pub acks_all_p99_us: f64,
    /// Throughput with five appends in flight.
    pub acks1_mb_s: f64,
    pub acks_all_mb_s: f64,
    /// The `acks=1` runs' bytes over the time until both followers held them: how fast
    /// the three replicas copy when no acknowledgement holds the producer back. An
    /// `acks=all` append completes only once both followers hold it, so `acks=all`
    /// throughput stays below this.
    pub acks1_replicated_mb_s: f64,
    /// CPU cores the process kept busy meanwhile (leader, followers and producer; 0 where
    /// the platform does not say).
    pub acks1_cpu_cores: f64,
    pub acks_all_cpu_cores: f64,
    /// Times a waiter's spin was turned off for a while by a yield that came back late
    /// (see the `replica::spin` module), over the whole workload.
    pub spin_pauses: u64,
}

/// Runs the `acks` workload: `latency_appends` single appends of each kind (alternating),
/// then `corpus` appended with `acks=1` and with `acks=all`, twice
/// each in alternating chunks, while two followers fetch in a loop throughout.
pub fn acks_all_vs_one(
    root: &Path,
    corpus: &mut [u8],
    batch_len: usize,
    latency_appends: usize,
) -> Result<AcksFigures> {
    let (leader, followers) = replica_set(root, 2)?;
    let pauses = crate::replica::spin::pauses();
    let stop = AtomicBool::new(false);
    let figures = thread::scope(|s| {
        let fetchers: Vec<_> = followers
            .iter()
            .map(|f| {
                let (leader, stop) = (&leader, &stop);
                s.spawn(move || -> Result<()> {
                    while !stop.load(Ordering::Relaxed) {
                        fetch_once(leader, f, FETCH_WAIT)?;
                    }
                    Ok(())
                })
            })
            .collect();
        let measured = measure_acks(&leader, &followers, corpus, batch_len, latency_appends);
        stop.store(true, Ordering::Relaxed);
        for fetcher in fetchers {
            fetcher
                .join()
                .map_err(|_| Error::InvalidConfig("bench follower thread panicked".into()))??;
        }
        measured
    })?;
    let figures = AcksFigures {
        spin_pauses: crate::replica::spin::pauses() - pauses,
        ..figures
    };
    drop((leader, followers));
    workload::remove_tree(root)?;
    Ok(figures)
}

fn measure_acks(
    leader: &Partition,
    followers: &[Arc<Partition>],
    corpus: &mut [u8],
    batch_len: usize,
    latency_appends: usize,
) -> Result<AcksFigures> {
    let batches = corpus.len() / batch_len;
    let mut one = Vec::with_capacity(latency_appends);
    let mut all = Vec::with_capacity(latency_appends);
    for i in 0..latency_appends * 2 {
        let at = (i % batches) * batch_len;
        let batch = &mut corpus[at..at + batch_len];
        let acks = if i % 2 == 0 { Acks::Leader } else { Acks::All };
        // Untimed: each append starts with the followers idle (each holding the log, and
        // the leader's HW at its end: their next fetches arrived), so that an `acks=all`
        // one does not wait out the fetches of the `acks=1` append just before it.
        caught_up(leader, followers)?;
        settled_hw(leader)?;
        let start = Instant::now();
        let handle = leader.append(batch, acks, APPEND_TIMEOUT_MS)?;
        wait(&handle)?;
        let took = start.elapsed();
        if acks == Acks::All {
            &mut all
        } else {
            &mut one
        }
        .push(took);
    }
    let mut figures = AcksFigures {
        acks1_p50_us: percentile_us(&mut one, 50),
        acks1_p99_us: percentile_us(&mut one, 99),
        acks_all_p50_us: percentile_us(&mut all, 50),
        acks_all_p99_us: percentile_us(&mut all, 99),
        ..AcksFigures::default()
    };
    // Chunk by chunk, `acks=1` and `acks=all` alternating (and which goes first), each
    // after the followers caught up, the `acks=all` side half a corpus away so that neither
    // finds the other's batches in the CPU cache: both meet the same disk, page cache and
    // noise, as the append workload's log and raw sides do. Times are summed.
    let chunk_len = ((ACKS_CHUNK_BYTES / batch_len).max(1) * batch_len).min(corpus.len());
    let chunks = (corpus.len() / chunk_len).max(1);
    let (mut one_took, mut all_took) = (Duration::ZERO, Duration::ZERO);
    let mut one_replicated = Duration::ZERO;
    let (mut one_cpu, mut all_cpu) = (0.0, 0.0);
    for pass in 0..THROUGHPUT_REPS {
        for chunk in 0..chunks {
            let order = if (pass + chunk) % 2 == 0 {
                [Acks::Leader, Acks::All]
            } else {
                [Acks::All, Acks::Leader]
            };
            for acks in order {
                let at = match acks {
                    Acks::All => ((chunk + chunks / 2) % chunks) * chunk_len,
                    _ => chunk * chunk_len,
                };
                let bytes = &mut corpus[at..at + chunk_len];
                caught_up(leader, followers)?;
                let cpu = process_cpu_seconds();
                let start = Instant::now();
                pipelined(leader, bytes, batch_len, acks)?;
                let took = start.elapsed();
                let cpu = process_cpu_seconds()
                    .zip(cpu)
                    .map_or(0.0, |(after, before)| after - before);
                match acks {
                    Acks::All => (all_took, all_cpu) = (all_took + took, all_cpu + cpu),
                    _ => {
                        (one_took, one_cpu) = (one_took + took, one_cpu + cpu);
                        caught_up(leader, followers)?;
                        one_replicated += start.elapsed();
                    }
                }
            }
        }
    }
    let bytes = (chunk_len * chunks * THROUGHPUT_REPS) as u64;
    figures.acks1_mb_s = super::mb_s(bytes, one_took);
    figures.acks_all_mb_s = super::mb_s(bytes, all_took);
    figures.acks1_replicated_mb_s = super::mb_s(bytes, one_replicated);
    figures.acks1_cpu_cores = one_cpu / one_took.as_secs_f64().max(1e-9);
    figures.acks_all_cpu_cores = all_cpu / all_took.as_secs_f64().max(1e-9);
    Ok(figures)
}

/// Appends the corpus keeping [`IN_FLIGHT`] appends outstanding, until the last completes.
fn pipelined(leader: &Partition, corpus: &mut [u8], batch_len: usize, acks: Acks) -> Result<()> {
    let mut in_flight: VecDeque<AppendHandle> = VecDeque::with_capacity(IN_FLIGHT);
    for batch in corpus.chunks_exact_mut(batch_len) {
        if in_flight.len() == IN_FLIGHT {
            if let Some(oldest) = in_flight.pop_front() {
                wait(&oldest)?;
            }
        }
        in_flight.push_back(leader.append(batch, acks, APPEND_TIMEOUT_MS)?);
    }
    for handle in in_flight {
        wait(&handle)?;
    }
    Ok(())
}

fn wait(handle: &AppendHandle) -> Result<()> {
    match handle.wait(Duration::from_millis(APPEND_TIMEOUT_MS as u64)) {
        Some(outcome) => outcome.map(|_| ()),
        None => Err(Error::RequestTimedOut),
    }
}

/// Waits until every follower has the leader's whole log.
fn caught_up(leader: &Partition, followers: &[Arc<Partition>]) -> Result<()> {
    let end = leader.log().log_end_offset();
    wait_until(|| followers.iter().all(|f| f.log().log_end_offset() >= end))
}

/// Waits until the leader's high watermark reaches its log end: the followers' fetches
/// after their last append arrived.
fn settled_hw(leader: &Partition) -> Result<()> {
    wait_until(|| leader.high_watermark() >= leader.log().log_end_offset())
}

/// Polls `done` in short naps (the `acks=1` runs time a wait for the followers) until it
/// holds, for two minutes at most.
fn wait_until(done: impl Fn() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        if Instant::now() > deadline {
            return Err(Error::RequestTimedOut);
        }
        thread::sleep(Duration::from_micros(20));
    }
    Ok(())
}

fn percentile_us(samples: &mut [Duration], p: usize) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_unstable();
    let i = (samples.len() * p / 100).min(samples.len() - 1);
    samples[i].as_secs_f64() * 1e6
}
