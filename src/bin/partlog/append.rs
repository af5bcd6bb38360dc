//! `partlog append`: appends Kafka v2 batches from a file or stdin as the leader.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use partlog::io::OpenMode;
use partlog::log::AppendOrigin;

use crate::json::Json;
use crate::{emit, open_partition, storage, CliError, CliResult, IfMissing, PartitionArgs};

/// Largest input read; more is refused rather than buffered (the whole input is validated
/// before anything is appended, so it must fit in memory).
const INPUT_BYTES_MAX: u64 = 1 << 30;

#[derive(Debug, Args)]
pub struct AppendArgs {
    #[command(flatten)]
    partition: PartitionArgs,
    /// Create the log dir when it does not exist.
    #[arg(long)]
    create: bool,
    /// File of concatenated RecordBatch v2 batches, or `-` for stdin.
    #[arg(long)]
    batches: PathBuf,
    /// Partition leader epoch stamped on the batches [default: the log's latest epoch, or
    /// 0 for an empty log].
    #[arg(long)]
    leader_epoch: Option<i32>,
    /// Append as a coordinator of the broker: control batches (transaction markers) are
    /// taken, which Kafka takes from its coordinators and refuses from clients.
    #[arg(long)]
    coordinator: bool,
}

pub fn run(args: &AppendArgs, json: bool) -> CliResult {
    let mut input = read_input(&args.batches)?;
    let count = check_batches(&input)?;
    let opened = open_partition(&args.partition, IfMissing::create_if(args.create))?;
    let log = opened.log.clone();
    let epoch = args.leader_epoch.unwrap_or(log.latest_epoch().max(0));
    let origin = match args.coordinator {
        true => AppendOrigin::Coordinator,
        false => AppendOrigin::Client,
    };
    let info = log.append_as_leader_from(origin, &mut input, epoch)?;
    opened.close()?;
    let line = if json {
        Json::new()
            .int("first_offset", info.first_offset)
            .int("last_offset", info.last_offset)
            .int("bytes", info.bytes as u64)
            .int("batches", info.batches as u64)
            .finish()
    } else {
        format!(
            "appended {count} batches to {}: offsets {}..={}, {} bytes",
            args.partition.topic_partition().dir_name(),
            info.first_offset,
            info.last_offset,
            info.bytes
        )
    };
    emit(&line)?;
    Ok(ExitCode::SUCCESS)
}

fn read_input(path: &std::path::Path) -> CliResult<Vec<u8>> {
    let too_large = || CliError::Input(format!("input is larger than {INPUT_BYTES_MAX} bytes"));
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .lock()
            .take(INPUT_BYTES_MAX + 1)
            .read_to_end(&mut buf)
            .map_err(CliError::Stdio)?;
        if buf.len() as u64 > INPUT_BYTES_MAX {
            return Err(too_large());
        }
        return Ok(buf);
    }
    let file = storage().open(path, OpenMode::Read)?;
    let len = file.len()?;
    if len > INPUT_BYTES_MAX {
        return Err(too_large());
    }
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

/// Checks that `input` is a sequence of whole, valid batches; returns how many.
fn check_batches(input: &[u8]) -> CliResult<usize> {
    if input.is_empty() {
        return Err(CliError::Input("the input holds no batches".into()));
    }
    let mut iter = partlog::record::batches(input);
    let mut count = 0;
    loop {
        let at = iter.position();
        let Some(batch) = iter.next() else { break };
        let invalid = |e: partlog::record::BatchError| {
            CliError::Input(format!(
                "input batch {count} at byte {at} is invalid: {e}; nothing appended"
            ))
        };
        batch.and_then(|b| b.validate()).map_err(invalid)?;
        count += 1;
    }
    Ok(count)
}
