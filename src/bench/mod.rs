//! Workloads measured by `partlog bench` and by the criterion benches in `benches/`
//! (being written). Each compares the log against the raw disk in the same run.

use std::path::PathBuf;

use crate::error::Result;

/// How to run the benchmark.
#[derive(Debug, Clone, Default)]
pub struct BenchOptions {
    /// Smaller data sizes, for a quick look.
    pub quick: bool,
    /// Where to put the data; a temp dir under the system temp dir when `None`.
    pub dir: Option<PathBuf>,
}

/// Figures of one run; every ratio is log ÷ raw, measured in the same run.
#[derive(Debug, Clone, Default)]
pub struct BenchReport {
    pub append_ratio: f64,
    pub read_ratio: f64,
    pub recovery_ratio: f64,
    pub append_mb_s: f64,
    pub raw_write_mb_s: f64,
    pub clean_open_ms_1000_segments: f64,
}

impl BenchReport {
    /// One JSON object on one line.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"append_ratio\":{:.3},\"read_ratio\":{:.3},\"recovery_ratio\":{:.3},\"append_mb_s\":{:.1},\"raw_write_mb_s\":{:.1},\"clean_open_ms_1000_segments\":{:.2}}}",
            self.append_ratio,
            self.read_ratio,
            self.recovery_ratio,
            self.append_mb_s,
            self.raw_write_mb_s,
            self.clean_open_ms_1000_segments
        )
    }

    /// Human-readable lines.
    pub fn to_text(&self) -> String {
        self.to_json()
    }
}

/// Runs every workload; `progress` is told the name of each stage as it starts.
pub fn run(_options: &BenchOptions, _progress: &mut dyn FnMut(&str)) -> Result<BenchReport> {
    Err(crate::Error::InvalidConfig(
        "the benchmark is not written yet".into(),
    ))
}
