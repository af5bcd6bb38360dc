//! The figures of one bench run, as JSON and as a table.

use std::fmt::Write as _;

/// Leader append of distinct 16 KiB batches of 1 KiB records must reach this fraction of
/// raw sequential write throughput.
pub const APPEND_RATIO_FLOOR: f64 = 0.85;
/// The same for distinct batches of 1,000 records of 100 bytes.
pub const APPEND_SMALL_RATIO_FLOOR: f64 = 0.8;
/// A fetch scan must reach this fraction of raw `pread` throughput.
pub const READ_RATIO_FLOOR: f64 = 0.8;
/// Recovery must reach this fraction of raw read + CRC-32C throughput.
pub const RECOVERY_RATIO_FLOOR: f64 = 0.5;
/// A clean open of 1,000 segments must take less than this.
pub const CLEAN_OPEN_MS_MAX: f64 = 50.0;
/// A follower copying the leader's log by fetches must reach this fraction of the
/// leader's own append throughput.
pub const FOLLOWER_CATCHUP_RATIO_FLOOR: f64 = 0.8;
/// Throughput with `acks=all` (two followers fetching) must reach this fraction of the
/// throughput with `acks=1`.
pub const ACKS_ALL_RATIO_FLOOR: f64 = 0.7;
/// Cleaning a dirty log with 10% live keys must reach this fraction of raw sequential
/// read throughput.
pub const COMPACTION_RATIO_FLOOR: f64 = 0.4;
/// Loading an offsets partition into a store's view must reach this fraction of raw read
/// throughput.
pub const OFFSETS_LOAD_RATIO_FLOOR: f64 = 0.5;
/// Partition offsets committed per second with `acks=1`, in commits of 100 partitions.
pub const COMMITS_PER_S_FLOOR: f64 = 200_000.0;

/// Figures of one run; every ratio is log ÷ raw throughput, measured in the same run.
/// Throughputs are MB/s (10^6 bytes per second).
#[derive(Debug, Clone, Default)]
pub struct BenchReport {
    pub append_ratio: f64,
    /// Append of small records (1,000 of 100 bytes a batch) ÷ raw write of the same bytes.
    pub append_small_ratio: f64,
    pub append_small_mb_s: f64,
    pub raw_write_small_mb_s: f64,
    /// The raw twin that writes zeros ahead as the log does (one `pwritev` per batch that
    /// passes a 64 KiB boundary), and the append against it; reported, no floor.
    pub raw_write_small_prefilled_mb_s: f64,
    pub append_small_prefilled_raw_ratio: f64,
    /// Validation alone of the small-record batches, in memory.
    pub validate_small_mb_s: f64,
    pub read_ratio: f64,
    pub recovery_ratio: f64,
    pub append_mb_s: f64,
    pub raw_write_mb_s: f64,
    /// As `raw_write_small_prefilled_mb_s`, for the 16 KiB batches.
    pub raw_write_prefilled_mb_s: f64,
    pub append_prefilled_raw_ratio: f64,
    pub clean_open_ms_1000_segments: f64,
    pub read_mb_s: f64,
    pub raw_read_mb_s: f64,
    pub recovery_mb_s: f64,
    pub raw_crc_mb_s: f64,
    /// Batch validation alone (CRC-32C + record walk), in memory: the CPU cost a leader
    /// append adds to the write, so the append ratio is at most about
    /// `1 / (1 + raw_write_mb_s / validate_mb_s)`.
    pub validate_mb_s: f64,
    /// The first recovery of the run (the ratio uses the best one); it may meet the kernel
    /// still writing the appended data back.
    pub recovery_first_mb_s: f64,
    /// Creating the log (first segment, indexes preallocated), which the append figures
    /// leave out: it happens once per `segment_bytes` (1 GiB) of appends.
    pub log_create_ms: f64,
    /// Bytes of log data each throughput workload moved.
    pub data_bytes: u64,
    /// Segments the clean-open workload opened (1,000 unless a test asked for fewer).
    pub clean_open_segments: usize,
    /// True when run with the smaller `--quick` sizes.
    pub quick: bool,
    /// Follower catch-up throughput ÷ the leader's own append throughput.
    pub follower_catchup_ratio: f64,
    pub follower_catchup_mb_s: f64,
    /// Appends through the leader replica (`acks=1`, no follower fetching).
    pub leader_append_mb_s: f64,
    /// The latency `acks=all` adds over `acks=1`, one append at a time, two followers
    /// fetching: median and 99th percentile, in microseconds.
    pub acks_all_p50_us: f64,
    pub acks_all_p99_us: f64,
    /// The `acks=1` append latencies the two figures above are added to: the figures are
    /// differences of percentiles, not percentiles of the added latency.
    pub acks1_p50_us: f64,
    pub acks1_p99_us: f64,
    /// Throughput with five appends in flight, followers fetching: `acks=all` ÷ `acks=1`.
    pub acks_all_ratio: f64,
    pub acks1_mb_s: f64,
    pub acks_all_mb_s: f64,
    /// The `acks=1` runs' bytes over the time until both followers held them, and that ÷
    /// `acks1_mb_s`: the rate the three replicas copy at when no acknowledgement holds
    /// the producer back. An `acks=all` append completes only once both followers hold
    /// it, so `acks_all_ratio` stays below `acks_all_ceiling_ratio`; where that is below
    /// the floor, the machine cannot meet it (on two cores, three replicas' page-cache
    /// writes share them).
    pub acks1_replicated_mb_s: f64,
    pub acks_all_ceiling_ratio: f64,
    /// CPU cores the process kept busy during the throughput runs (0 where the platform
    /// does not say): with every core busy under `acks=all`, the ratio is bound by CPU.
    pub acks1_cpu_cores: f64,
    pub acks_all_cpu_cores: f64,
    /// Times the replicas' waiters stopped spinning for a while during the `acks`
    /// workload, after a yield that came back late (a core given to another thread or
    /// taken by the VM's host): each makes the next waits sleep and be woken instead.
    pub acks_spin_pauses: u64,
    /// One cleaning of a log with 10% live keys ÷ a raw read of its files.
    pub compaction_ratio: f64,
    pub compaction_mb_s: f64,
    pub raw_read_compaction_mb_s: f64,
    /// The share of that log's batches the cleaning's rewrite did not read (superseded
    /// whole: the bench writes every key ten times, in rounds).
    pub compaction_skipped_share: f64,
    /// The same cleaning, one run, of a log whose keys' records lie at random places
    /// ([`super::compaction::KeyOrder::Scattered`]); reported, no floor.
    pub compaction_scattered_ratio: f64,
    pub compaction_scattered_skipped_share: f64,
    /// Loading an offsets partition into a view ÷ a raw read of its files.
    pub offsets_load_ratio: f64,
    pub offsets_load_mb_s: f64,
    pub raw_read_offsets_mb_s: f64,
    /// Partition offsets committed per second (`acks=1`, 100 per commit).
    pub commits_per_s: f64,
    /// Right before the `acks` workload and the offsets load: each of two threads copying
    /// memory side by side ÷ one alone (see [`super::workload::parallel_copy_ratio`]).
    /// Near 0.5, two memory-bound threads got about one thread's throughput.
    pub parallel_copy_ratio_acks: f64,
    pub parallel_copy_ratio_load: f64,
    /// Right before the offsets load: copying into buffers another thread reads in turn ÷
    /// copying into buffers nobody else reads (see
    /// [`super::workload::handoff_copy_ratio`]). Far below 1, the two cores pass cache
    /// lines slowly, and the load's reader and replay, which pass pieces, slow down.
    pub handoff_copy_ratio_load: f64,
    /// At the start and right before the cleaning: writes into page-cache pages allocated
    /// for them ÷ writes over resident ones (see
    /// [`super::workload::fresh_page_write_ratio`]). At 0.2 and below, new pages fault on
    /// the VM's host, and every workload that writes pays it.
    pub fresh_page_write_ratio_start: f64,
    pub fresh_page_write_ratio_compaction: f64,
}

impl BenchReport {
    /// One JSON object on one line.
    pub fn to_json(&self) -> String {
        format!(
            concat!(
                "{{\"append_ratio\":{:.3},\"append_small_ratio\":{:.3},",
                "\"read_ratio\":{:.3},\"recovery_ratio\":{:.3},",
                "\"append_small_mb_s\":{:.1},\"raw_write_small_mb_s\":{:.1},\"validate_small_mb_s\":{:.1},",
                "\"append_mb_s\":{:.1},\"raw_write_mb_s\":{:.1},",
                "\"raw_write_prefilled_mb_s\":{:.1},\"append_prefilled_raw_ratio\":{:.3},",
                "\"raw_write_small_prefilled_mb_s\":{:.1},\"append_small_prefilled_raw_ratio\":{:.3},",
                "\"clean_open_ms_1000_segments\":{:.2},",
                "\"read_mb_s\":{:.1},\"raw_read_mb_s\":{:.1},",
                "\"recovery_mb_s\":{:.1},\"raw_crc_mb_s\":{:.1},\"validate_mb_s\":{:.1},\"log_create_ms\":{:.2},\"recovery_first_mb_s\":{:.1},",
                "\"follower_catchup_ratio\":{:.3},\"follower_catchup_mb_s\":{:.1},\"leader_append_mb_s\":{:.1},",
                "\"acks_all_p50_us\":{:.1},\"acks_all_p99_us\":{:.1},\"acks1_p50_us\":{:.1},\"acks1_p99_us\":{:.1},",
                "\"acks_all_ratio\":{:.3},\"acks1_mb_s\":{:.1},\"acks_all_mb_s\":{:.1},",
                "\"acks1_replicated_mb_s\":{:.1},\"acks_all_ceiling_ratio\":{:.3},",
                "\"acks1_cpu_cores\":{:.2},\"acks_all_cpu_cores\":{:.2},\"acks_spin_pauses\":{},",
                "\"compaction_ratio\":{:.3},\"compaction_mb_s\":{:.1},\"raw_read_compaction_mb_s\":{:.1},\"compaction_skipped_share\":{:.3},",
                "\"compaction_scattered_ratio\":{:.3},\"compaction_scattered_skipped_share\":{:.3},",
                "\"offsets_load_ratio\":{:.3},\"offsets_load_mb_s\":{:.1},\"raw_read_offsets_mb_s\":{:.1},",
                "\"commits_per_s\":{:.0},",
                "\"parallel_copy_ratio_acks\":{:.2},\"parallel_copy_ratio_load\":{:.2},\"handoff_copy_ratio_load\":{:.2},",
                "\"fresh_page_write_ratio_start\":{:.2},\"fresh_page_write_ratio_compaction\":{:.2},",
                "\"data_bytes\":{},\"clean_open_segments\":{},\"quick\":{},\"pass\":{}}}"
            ),
            self.append_ratio,
            self.append_small_ratio,
            self.read_ratio,
            self.recovery_ratio,
            self.append_small_mb_s,
            self.raw_write_small_mb_s,
            self.validate_small_mb_s,
            self.append_mb_s,
            self.raw_write_mb_s,
            self.raw_write_prefilled_mb_s,
            self.append_prefilled_raw_ratio,
            self.raw_write_small_prefilled_mb_s,
            self.append_small_prefilled_raw_ratio,
            self.clean_open_ms_1000_segments,
            self.read_mb_s,
            self.raw_read_mb_s,
            self.recovery_mb_s,
            self.raw_crc_mb_s,
            self.validate_mb_s,
            self.log_create_ms,
            self.recovery_first_mb_s,
            self.follower_catchup_ratio,
            self.follower_catchup_mb_s,
            self.leader_append_mb_s,
            self.acks_all_p50_us,
            self.acks_all_p99_us,
            self.acks1_p50_us,
            self.acks1_p99_us,
            self.acks_all_ratio,
            self.acks1_mb_s,
            self.acks_all_mb_s,
            self.acks1_replicated_mb_s,
            self.acks_all_ceiling_ratio,
            self.acks1_cpu_cores,
            self.acks_all_cpu_cores,
            self.acks_spin_pauses,
            self.compaction_ratio,
            self.compaction_mb_s,
            self.raw_read_compaction_mb_s,
            self.compaction_skipped_share,
            self.compaction_scattered_ratio,
            self.compaction_scattered_skipped_share,
            self.offsets_load_ratio,
            self.offsets_load_mb_s,
            self.raw_read_offsets_mb_s,
            self.commits_per_s,
            self.parallel_copy_ratio_acks,
            self.parallel_copy_ratio_load,
            self.handoff_copy_ratio_load,
            self.fresh_page_write_ratio_start,
            self.fresh_page_write_ratio_compaction,
            self.data_bytes,
            self.clean_open_segments,
            self.quick,
            self.passes(),
        )
    }

    /// True when every floor is met.
    pub fn passes(&self) -> bool {
        self.lines().iter().all(|l| l.pass)
    }

    fn lines(&self) -> [Line; 10] {
        [
            Line::ratio(
                "append 1 KiB recs",
                self.append_mb_s,
                self.raw_write_mb_s,
                self.append_ratio,
                APPEND_RATIO_FLOOR,
            ),
            Line::ratio(
                "append 100 B recs",
                self.append_small_mb_s,
                self.raw_write_small_mb_s,
                self.append_small_ratio,
                APPEND_SMALL_RATIO_FLOOR,
            ),
            Line::ratio(
                "read by offset",
                self.read_mb_s,
                self.raw_read_mb_s,
                self.read_ratio,
                READ_RATIO_FLOOR,
            ),
            Line::ratio(
                "recovery scan",
                self.recovery_mb_s,
                self.raw_crc_mb_s,
                self.recovery_ratio,
                RECOVERY_RATIO_FLOOR,
            ),
            Line {
                name: "clean open",
                log: format!("{:.2} ms", self.clean_open_ms_1000_segments),
                raw: format!("{} segs", self.clean_open_segments),
                value: String::new(),
                floor: format!("< {CLEAN_OPEN_MS_MAX} ms"),
                pass: self.clean_open_ms_1000_segments < CLEAN_OPEN_MS_MAX,
            },
            Line::ratio(
                "follower catch-up",
                self.follower_catchup_mb_s,
                self.leader_append_mb_s,
                self.follower_catchup_ratio,
                FOLLOWER_CATCHUP_RATIO_FLOOR,
            ),
            Line::ratio(
                "acks=all vs 1",
                self.acks_all_mb_s,
                self.acks1_mb_s,
                self.acks_all_ratio,
                ACKS_ALL_RATIO_FLOOR,
            ),
            Line::ratio(
                "compaction",
                self.compaction_mb_s,
                self.raw_read_compaction_mb_s,
                self.compaction_ratio,
                COMPACTION_RATIO_FLOOR,
            ),
            Line::ratio(
                "offsets load",
                self.offsets_load_mb_s,
                self.raw_read_offsets_mb_s,
                self.offsets_load_ratio,
                OFFSETS_LOAD_RATIO_FLOOR,
            ),
            Line {
                name: "offset commits",
                log: format!("{:.0}/s", self.commits_per_s),
                raw: String::new(),
                value: String::new(),
                floor: format!(">= {COMMITS_PER_S_FLOOR:.0}"),
                pass: self.commits_per_s >= COMMITS_PER_S_FLOOR,
            },
        ]
    }

    /// Human-readable table: each workload, log and raw figures, the ratio, the floor and
    /// whether it is met.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let size = self.data_bytes as f64 / (1 << 20) as f64;
        let mode = if self.quick {
            " (quick mode: smaller sizes than the floors are specified for)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "partlog bench: {size:.0} MiB of distinct batches (16 x 1 KiB and 1000 x 100 B records){mode}"
        );
        let _ = writeln!(
            out,
            "{:<18} {:>14} {:>14} {:>7} {:>10}  result",
            "workload", "log", "raw", "ratio", "floor"
        );
        for l in self.lines() {
            let _ = writeln!(
                out,
                "{:<18} {:>14} {:>14} {:>7} {:>10}  {}",
                l.name,
                l.log,
                l.raw,
                l.value,
                l.floor,
                if l.pass { "pass" } else { "FAIL" }
            );
        }
        let _ = writeln!(
            out,
            "against a raw twin that writes zeros ahead as the log does: {:.0} MB/s, append {:.2}; {:.0} MB/s, small records {:.2}",
            self.raw_write_prefilled_mb_s,
            self.append_prefilled_raw_ratio,
            self.raw_write_small_prefilled_mb_s,
            self.append_small_prefilled_raw_ratio
        );
        let _ = writeln!(
            out,
            "batch validation alone (CRC-32C + records, in memory): {:.0} MB/s for 1 KiB records, {:.0} MB/s for 100 B",
            self.validate_mb_s, self.validate_small_mb_s
        );
        let _ = writeln!(
            out,
            "first recovery of the run (writeback of the appends may still be going on): {:.0} MB/s",
            self.recovery_first_mb_s
        );
        let _ = writeln!(
            out,
            "creating the log (segment + preallocated indexes, not in the append figure): {:.2} ms",
            self.log_create_ms
        );
        let _ = writeln!(
            out,
            "acks=all adds {:.0} us at the median and {:.0} us at p99 over acks=1 ({:.0} us median, {:.0} us p99), one append at a time",
            self.acks_all_p50_us, self.acks_all_p99_us, self.acks1_p50_us, self.acks1_p99_us
        );
        let _ = writeln!(
            out,
            "acks=1 until both followers held it all: {:.0} MB/s, {:.3} of acks=1 (acks=all cannot pass it)",
            self.acks1_replicated_mb_s, self.acks_all_ceiling_ratio
        );
        let _ = writeln!(
            out,
            "CPU cores busy, five appends in flight: {:.2} with acks=1, {:.2} with acks=all (of {}); waiters' spins paused {} times",
            self.acks1_cpu_cores,
            self.acks_all_cpu_cores,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            self.acks_spin_pauses
        );
        let _ = writeln!(
            out,
            "compaction skipped {:.0}% of the batches (keys in rounds); with keys at random places: ratio {:.2}, {:.0}% skipped",
            self.compaction_skipped_share * 100.0,
            self.compaction_scattered_ratio,
            self.compaction_scattered_skipped_share * 100.0
        );
        let _ = writeln!(
            out,
            "two threads copying memory side by side, each vs one alone: {:.2} before acks, {:.2} before the offsets load (1 = independent cores)",
            self.parallel_copy_ratio_acks, self.parallel_copy_ratio_load
        );
        let _ = writeln!(
            out,
            "copying into buffers another thread reads in turn, vs buffers nobody else reads: {:.2} before the offsets load (near 1 = cores pass data cheaply)",
            self.handoff_copy_ratio_load
        );
        let _ = writeln!(
            out,
            "writes into new page-cache pages vs over resident ones: {:.2} at the start, {:.2} before the cleaning (0.2 and below = new pages fault on the VM's host)",
            self.fresh_page_write_ratio_start, self.fresh_page_write_ratio_compaction
        );
        let _ = writeln!(
            out,
            "catch-up is compared with the leader's append; acks=all with acks=1, both with two followers fetching"
        );
        let _ = writeln!(
            out,
            "raw twins: write = one pwrite per batch, read = 1 MiB preads, recovery = 1 MiB preads + CRC-32C"
        );
        out
    }
}

struct Line {
    name: &'static str,
    log: String,
    raw: String,
    value: String,
    floor: String,
    pass: bool,
}

impl Line {
    fn ratio(name: &'static str, log: f64, raw: f64, ratio: f64, floor: f64) -> Line {
        Line {
            name,
            log: format!("{log:.0} MB/s"),
            raw: format!("{raw:.0} MB/s"),
            value: format!("{ratio:.2}"),
            floor: format!(">= {floor:.2}"),
            pass: ratio >= floor,
        }
    }
}
