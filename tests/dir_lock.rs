//! A log dir is locked while open: a second open fails with `DirLocked` until the first is
//! closed or dropped. The clean-shutdown marker is written on close and removed on open; a
//! crash (drop without close, or sim power loss) makes the next open recover.

mod common;

use std::sync::Arc;

use common::{backends, batch, check_every_offset, read_all, sim_with_disk, small_config, Backend};
use partlog::checkpoint::TopicPartition;
use partlog::manager::{LogDir, LogDirOptions, CLEAN_SHUTDOWN_FILE};
use partlog::{Error, ManualClock};

fn dir_options() -> LogDirOptions {
    LogDirOptions {
        config: small_config(),
        clock: Arc::new(ManualClock::new(1_000_000)),
    }
}

fn open(backend: &Backend) -> partlog::Result<LogDir> {
    LogDir::open(
        backend.storage.clone(),
        backend.root.join("logs"),
        dir_options(),
    )
}

#[test]
fn second_open_fails_until_the_first_is_gone() {
    for backend in backends() {
        let first = open(&backend).unwrap();
        let err = open(&backend).unwrap_err();
        let root = backend.root.join("logs");
        match &err {
            Error::DirLocked { dir } => assert_eq!(dir, &root),
            other => panic!("{}: expected DirLocked, got {other:?}", backend.name),
        }
        let message = err.to_string();
        assert!(message.contains("locked"), "{message}");
        assert!(message.contains(root.to_str().unwrap()), "{message}");
        drop(first);
        let second = open(&backend).unwrap();
        assert!(matches!(open(&backend), Err(Error::DirLocked { .. })));
        second.close().unwrap();
        open(&backend).unwrap().close().unwrap();
    }
}

#[test]
fn clean_shutdown_marker_lifecycle() {
    for backend in backends() {
        let tp = TopicPartition::new("t", 0);
        let marker = backend.root.join("logs").join(CLEAN_SHUTDOWN_FILE);
        let dir = open(&backend).unwrap();
        assert!(!dir.was_clean_shutdown());
        let (log, _) = dir.open_log(&tp).unwrap();
        for i in 0..40 {
            log.append_as_leader(&mut batch(2, 60, i), 1).unwrap();
        }
        let expected = read_all(&log);
        drop(log);
        dir.close().unwrap();
        assert!(backend.storage.exists(&marker), "{}", backend.name);

        let dir = open(&backend).unwrap();
        assert!(dir.was_clean_shutdown());
        assert!(!backend.storage.exists(&marker), "marker removed on open");
        let (log, report) = dir.open_log(&tp).unwrap();
        assert!(report.clean_shutdown);
        assert_eq!(report.segments_scanned, 0, "{report:?}");
        assert_eq!(read_all(&log), expected);
        log.append_as_leader(&mut batch(2, 60, 99), 1).unwrap();
        drop(log);
        // A crash: dropped without close.
        drop(dir);
        assert!(!backend.storage.exists(&marker));

        let dir = open(&backend).unwrap();
        assert!(!dir.was_clean_shutdown());
        let (log, report) = dir.open_log(&tp).unwrap();
        assert!(!report.clean_shutdown);
        assert!(report.segments_scanned > 0, "{report:?}");
        assert!(report.damage.is_none(), "{report:?}");
        assert_eq!(log.log_end_offset(), 82);
    }
}

/// What broke before this test: neither `LogDir::open` nor `Log::open` synced the parent of
/// a directory they created, so power loss after a flush lost the whole log dir (the
/// checkpoints and every flushed segment with it). Fixed with
/// `io::create_dir_all_durable`.
#[test]
fn power_loss_leads_to_unclean_recovery() {
    let (backend, disk) = sim_with_disk(11);
    let tp = TopicPartition::new("t", 0);
    let dir = open(&backend).unwrap();
    let (log, _) = dir.open_log(&tp).unwrap();
    for i in 0..40 {
        log.append_as_leader(&mut batch(2, 60, i), 1).unwrap();
    }
    dir.flush().unwrap();
    let flushed = read_all(&log);
    for i in 0..5 {
        log.append_as_leader(&mut batch(2, 60, i), 1).unwrap();
    }
    disk.crash();
    drop(log);
    drop(dir);
    let dir = open(&backend).unwrap();
    assert!(!dir.was_clean_shutdown());
    let (log, report) = dir.open_log(&tp).unwrap();
    assert!(report.segments_scanned > 0, "{report:?}");
    let now = read_all(&log);
    assert_eq!(&now[..flushed.len()], &flushed[..]);
    assert!(log.log_end_offset() >= 80);
    common::check_every_offset(&log);
}

/// The lock also holds against another process: a child test process tries to open the
/// dir this one holds. Run by `lock_excludes_another_process`; does nothing on its own.
#[test]
#[ignore = "run as a child process by lock_excludes_another_process"]
fn child_process_probe() {
    let Ok(path) = std::env::var("PARTLOG_LOCK_PROBE_DIR") else {
        return;
    };
    let err = LogDir::open(
        partlog::io::real::RealStorage::shared(),
        path,
        LogDirOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::DirLocked { .. }), "{err:?}");
    // Tells the parent the probe ran: a filter that matched no test would pass too.
    if let Ok(mark) = std::env::var("PARTLOG_LOCK_PROBE_MARK") {
        std::fs::write(mark, b"refused").unwrap();
    }
}

#[test]
fn lock_excludes_another_process() {
    let backend = common::real();
    let dir = open(&backend).unwrap();
    let mark = backend.root.join("probe-ran");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "child_process_probe", "--quiet"])
        .env("PARTLOG_LOCK_PROBE_DIR", backend.root.join("logs"))
        .env("PARTLOG_LOCK_PROBE_MARK", &mark)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "the child could open the locked dir");
    assert_eq!(
        std::fs::read(&mark).unwrap(),
        b"refused",
        "the probe did not run"
    );
    dir.close().unwrap();
}

/// Kafka's broker locks each log dir's `.lock` with a traditional `fcntl` record lock (the
/// JVM's `FileChannel.tryLock`), which a `flock` does not see: the CLI could then recover
/// or clean a dir a running broker owns. partlog's lock conflicts with it both ways.
#[cfg(target_os = "linux")]
#[test]
fn the_lock_excludes_a_kafka_brokers_and_a_brokers_excludes_it() {
    use std::os::unix::io::AsRawFd;

    /// A traditional whole-file record lock, taken or released as the JVM does.
    fn record_lock(file: &std::fs::File, kind: libc::c_int) -> std::io::Result<()> {
        // SAFETY: all zeros is a valid `flock`.
        let mut range: libc::flock = unsafe { std::mem::zeroed() };
        range.l_type = kind as libc::c_short;
        range.l_whence = libc::SEEK_SET as libc::c_short;
        // SAFETY: the descriptor and `range` outlive the call.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &range) };
        if rc == -1 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    let backend = common::real();
    let root = backend.root.join("logs");
    std::fs::create_dir_all(&root).unwrap();
    let broker = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(root.join(".lock"))
        .unwrap();
    record_lock(&broker, libc::F_WRLCK).expect("the broker locks its dir");
    let err = open(&backend).unwrap_err();
    assert!(matches!(err, Error::DirLocked { .. }), "{err:?}");
    // (The failed open closed its descriptor of the file, which releases this process's
    // record locks on it, as POSIX has it: released explicitly here all the same.)
    record_lock(&broker, libc::F_UNLCK).unwrap();

    let dir = open(&backend).unwrap();
    let err = record_lock(&broker, libc::F_WRLCK).expect_err("partlog holds the dir");
    assert!(
        matches!(err.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)),
        "{err}"
    );
    dir.close().unwrap();
    record_lock(&broker, libc::F_WRLCK).expect("released on close");
}

/// `Log::open` did not lock its partition: two `Log`s could write one partition's files,
/// and one could shrink an index the other had mapped. A partition now has one owner.
#[test]
fn a_partition_has_one_owner_at_a_time() {
    for backend in backends() {
        let dir = open(&backend).unwrap();
        let tp = TopicPartition::new("t", 0);
        let (log, _) = dir.open_log(&tp).unwrap();
        let direct = partlog::log::Log::open(common::options(
            &backend,
            "logs/t-0",
            small_config(),
            Arc::new(ManualClock::new(0)),
        ));
        assert!(
            matches!(direct, Err(Error::DirLocked { .. })),
            "{}: {direct:?}",
            backend.name
        );
        drop(log);
        dir.close().unwrap();
        let (log, _) = common::open(&backend, "logs/t-0", small_config());
        let again = partlog::log::Log::open(common::options(
            &backend,
            "logs/t-0",
            small_config(),
            Arc::new(ManualClock::new(0)),
        ));
        assert!(matches!(again, Err(Error::DirLocked { .. })));
        drop(log);
        common::open(&backend, "logs/t-0", small_config());
    }
}

/// Index files were extended sparse and written through their map, so on a full disk a
/// new entry was a SIGBUS instead of an error. The active segment's indexes are now
/// allocated when created (on the real disk: blocks reserved with fallocate).
#[test]
fn active_index_files_are_allocated_not_sparse() {
    use std::os::unix::fs::MetadataExt;
    let backend = common::real();
    let (log, _) = common::open(&backend, "t-0", small_config());
    log.append_as_leader(&mut batch(1, 10, 0), 0).unwrap();
    let segment = log.segments()[0].clone();
    for suffix in [".index", ".timeindex"] {
        let meta = std::fs::metadata(segment.path(suffix)).unwrap();
        assert!(meta.len() > 0, "{suffix} is preallocated");
        assert!(
            meta.blocks() * 512 >= meta.len(),
            "{suffix}: {} of {} bytes allocated",
            meta.blocks() * 512,
            meta.len()
        );
    }
}

/// An active segment's index file that already has its full length may still be sparse:
/// Kafka makes its index files by setting their length, and a crash leaves them so. Mapped
/// as it was, a new entry written into a hole on a full disk was a SIGBUS; the blocks are
/// now reserved when the file is mapped, whatever its length.
#[test]
fn a_sparse_index_file_of_full_length_is_allocated_when_mapped() {
    use std::os::unix::fs::MetadataExt;
    let backend = common::real();
    // Many blocks, and whole entries of both kinds (a partial one is damage, and the
    // index would be rebuilt).
    let config = partlog::LogConfig {
        index_bytes_max: 65_520,
        ..small_config()
    };
    let (log, _) = common::open(&backend, "t-0", config.clone());
    for i in 0..8 {
        log.append_as_leader(&mut batch(2, 100, i), 0).unwrap();
    }
    let end = log.log_end_offset();
    let segment = log.segments()[0].clone();
    log.close().unwrap();
    drop(log);
    // As a crashed Kafka leaves them: the entries, then holes up to the full length.
    for suffix in [".index", ".timeindex"] {
        let path = segment.path(suffix);
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        assert!(file.metadata().unwrap().len() > 0, "{suffix} has entries");
        file.set_len(config.index_bytes_max).unwrap();
        let blocks = file.metadata().unwrap().blocks();
        assert!(
            blocks * 512 < config.index_bytes_max / 2,
            "{suffix} is sparse"
        );
    }
    let (log, _) = common::reopen(&backend, "t-0", config.clone(), true, Some(end));
    log.append_as_leader(&mut batch(2, 100, 9), 0).unwrap();
    for suffix in [".index", ".timeindex"] {
        let meta = std::fs::metadata(segment.path(suffix)).unwrap();
        assert!(
            meta.blocks() * 512 >= meta.len(),
            "{suffix}: {} of {} bytes allocated",
            meta.blocks() * 512,
            meta.len()
        );
    }
    check_every_offset(&log);
}

/// The simulated disk fails the allocation of a new segment's indexes with ENOSPC: the
/// roll fails with a disk-full error and the log stays readable.
#[test]
fn a_full_disk_while_allocating_indexes_is_an_error() {
    let (backend, disk) = sim_with_disk(9);
    let (log, _) = common::open(&backend, "t-0", small_config());
    log.append_as_leader(&mut batch(2, 10, 0), 0).unwrap();
    disk.set_faults(partlog::io::sim::FaultPlan {
        write_enospc: 1.0,
        path_suffix: Some("index".into()),
        ..Default::default()
    });
    let err = log.force_roll().unwrap_err();
    disk.clear_faults();
    assert!(err.is_disk_full(), "{err}");
    assert_eq!(read_all(&log), vec![(0, 1)]);
}

/// A process forked while the dir is open holds a copy of the lock's descriptor, and a
/// flock lives as long as any copy: closing the dir must still release it at once (an
/// explicit unlock does). Found as a `DirLocked` on reopening in CI while another test
/// of this file spawned a process.
#[test]
fn closing_releases_the_lock_while_a_forked_child_holds_its_descriptor() {
    let backend = common::real();
    let dir = open(&backend).unwrap();
    // SAFETY: the child calls only async-signal-safe functions (sleep, _exit).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        unsafe {
            libc::sleep(10);
            libc::_exit(0);
        }
    }
    dir.close().unwrap();
    let reopened = open(&backend);
    // SAFETY: plain system calls on the child's pid.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    reopened
        .expect("the lock went with the close, though the child holds its descriptor")
        .close()
        .unwrap();
}

/// A view of a dir through the overlay (the CLI's `--dry-run`, `offsets`) takes a shared
/// lock on the dir's lock file, opened for reading only: it still excludes a running
/// broker's (exclusive) lock both ways, but not another view, and needs no write permission
/// on the lock file, so that a dir on read-only media can be looked at (the overlay used to
/// take the exclusive lock, which opens the file for writing).
#[test]
fn a_view_takes_a_shared_lock_that_excludes_the_writer_only() {
    use partlog::io::overlay::OverlayStorage;
    use partlog::io::real::RealStorage;

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("logs");
    let disk: Arc<dyn partlog::io::Storage> = Arc::new(RealStorage);
    LogDir::open(disk.clone(), &root, dir_options())
        .unwrap()
        .close()
        .unwrap();
    let view = || LogDir::open(OverlayStorage::new(disk.clone()), &root, dir_options());
    let first = view().unwrap();
    let second = view().expect("views share the lock");
    let writer = LogDir::open(disk.clone(), &root, dir_options());
    assert!(matches!(writer, Err(Error::DirLocked { .. })), "{writer:?}");
    drop((first, second));
    let writer = LogDir::open(disk.clone(), &root, dir_options()).unwrap();
    assert!(matches!(view(), Err(Error::DirLocked { .. })));
    writer.close().unwrap();
    view().unwrap();
}
