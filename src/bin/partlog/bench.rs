//! `partlog bench`: runs [`partlog::bench::run`] and prints its report.

use std::process::ExitCode;

use clap::Args;
use partlog::bench::BenchOptions;

use crate::progress::Progress;
use crate::{emit, CliResult};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Smaller data sizes, for a quick look.
    #[arg(long)]
    quick: bool,
    /// Directory to put the data in (a temp dir by default); removed afterwards.
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

pub fn run(args: &BenchArgs, json: bool) -> CliResult {
    let options = BenchOptions {
        quick: args.quick,
        dir: args.dir.clone(),
        ..BenchOptions::default()
    };
    let mut progress = Progress::new(json);
    let report = partlog::bench::run(&options, &mut |stage: &str| {
        progress.force(&format!("bench: {stage}"));
    });
    progress.finish();
    let report = report?;
    emit(
        if json {
            report.to_json()
        } else {
            report.to_text()
        }
        .trim_end(),
    )?;
    Ok(ExitCode::SUCCESS)
}
