//! Log directories: the unit a broker configures (`log.dirs`), holding many partitions.

mod checkpoint_files;
mod log_dir;

pub use log_dir::{LogDir, LogDirOptions, CLEAN_SHUTDOWN_FILE, METADATA_TOPIC};

#[cfg(test)]
mod tests;
