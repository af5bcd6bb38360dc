//! The bench workloads run end to end at a tiny size and report sane figures. No timing is
//! asserted: only that every figure is a finite, non-negative number (a fast machine may
//! time a tiny stage at zero).

use partlog::bench::{run, workload, BenchOptions};

#[test]
fn bench_run_at_tiny_size_reports_finite_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let options = BenchOptions {
        quick: true,
        dir: Some(tmp.path().to_path_buf()),
        data_bytes: Some(1 << 20),
        clean_open_segments: Some(20),
    };
    let mut stages = Vec::new();
    let report = run(&options, &mut |s| stages.push(s.to_string())).unwrap();
    assert_eq!(stages, ["append", "read", "recovery", "clean-open"]);
    let figures = [
        report.append_ratio,
        report.read_ratio,
        report.recovery_ratio,
        report.append_mb_s,
        report.raw_write_mb_s,
        report.clean_open_ms_1000_segments,
        report.read_mb_s,
        report.raw_read_mb_s,
        report.recovery_mb_s,
        report.raw_crc_mb_s,
        report.validate_mb_s,
        report.log_create_ms,
        report.recovery_first_mb_s,
    ];
    for (i, f) in figures.iter().enumerate() {
        assert!(f.is_finite() && *f >= 0.0, "figure {i} is {f}");
    }
    assert!(report.data_bytes > 0 && report.data_bytes <= 1 << 20);
    assert_eq!(report.clean_open_segments, 20);
    let json = report.to_json();
    for key in [
        "append_ratio",
        "read_ratio",
        "recovery_ratio",
        "append_mb_s",
        "raw_write_mb_s",
        "clean_open_ms_1000_segments",
    ] {
        assert!(
            json.contains(&format!("\"{key}\":")),
            "{key} missing: {json}"
        );
    }
    assert!(report.to_text().contains("quick mode"));
    // The data dir is cleaned up: only the (empty) parent remains.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn sample_batch_is_sixteen_one_kib_records_that_validate() {
    let batch = workload::sample_batch();
    assert_eq!(
        batch.len(),
        partlog::record::HEADER_LEN + workload::RECORDS_PER_BATCH * workload::RECORD_BYTES
    );
    assert_eq!(workload::validate_batches(&batch).unwrap(), 1);
}

#[test]
fn read_workload_reads_every_appended_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let batch = workload::sample_batch();
    let dir = workload::partition_dir(tmp.path());
    let log = workload::append_log(&dir, &batch, 100).unwrap();
    let mut buf = vec![0u8; workload::FETCH_BYTES];
    let n = workload::read_log(&log, &mut buf).unwrap();
    assert_eq!(n, 100 * batch.len() as u64);
    let files = workload::segment_files(&dir).unwrap();
    assert_eq!(workload::pread_files(&files, &mut buf, |_| {}).unwrap(), n);
    drop(log);
    let (_, report) = workload::recover_log(&dir).unwrap();
    assert_eq!(report.recovered_bytes, n);
    assert!(report.damage.is_none());
}
