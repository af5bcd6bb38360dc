//! Runs the benchmark and prints its JSON report, plus the table on stderr.
//!
//! `cargo run --release --example bench -- [--quick] [--dir DIR] [--data-mib N]`

use partlog::bench::{run, BenchOptions};

fn main() {
    let mut options = BenchOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--dir" => options.dir = args.next().map(Into::into),
            "--data-mib" => {
                let mib: Option<u64> = args.next().and_then(|v| v.parse().ok());
                options.data_bytes = mib.map(|m| m << 20);
            }
            other => {
                eprintln!(
                    "unknown argument {other}; usage: bench [--quick] [--dir DIR] [--data-mib N]"
                );
                std::process::exit(2);
            }
        }
    }
    let mut progress = |stage: &str| eprintln!("bench: {stage}");
    match run(&options, &mut progress) {
        Ok(report) => {
            eprint!("{}", report.to_text());
            println!("{}", report.to_json());
        }
        Err(err) => {
            eprintln!("bench failed: {err}");
            std::process::exit(1);
        }
    }
}
