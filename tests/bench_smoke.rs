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
    assert_eq!(
        stages,
        [
            "append-small",
            "append",
            "read",
            "recovery",
            "clean-open",
            "follower-catchup",
            "acks",
            "compaction",
            "offsets-load",
            "commits"
        ]
    );
    let figures = [
        report.append_ratio,
        report.append_small_ratio,
        report.append_small_mb_s,
        report.raw_write_small_mb_s,
        report.validate_small_mb_s,
        report.read_ratio,
        report.recovery_ratio,
        report.append_mb_s,
        report.raw_write_mb_s,
        report.raw_write_prefilled_mb_s,
        report.append_prefilled_raw_ratio,
        report.raw_write_small_prefilled_mb_s,
        report.append_small_prefilled_raw_ratio,
        report.clean_open_ms_1000_segments,
        report.read_mb_s,
        report.raw_read_mb_s,
        report.recovery_mb_s,
        report.raw_crc_mb_s,
        report.validate_mb_s,
        report.log_create_ms,
        report.recovery_first_mb_s,
        report.follower_catchup_ratio,
        report.follower_catchup_mb_s,
        report.leader_append_mb_s,
        report.acks1_p50_us,
        report.acks_all_ratio,
        report.acks1_mb_s,
        report.acks_all_mb_s,
        report.acks1_replicated_mb_s,
        report.acks_all_ceiling_ratio,
        report.acks1_cpu_cores,
        report.acks_all_cpu_cores,
        report.compaction_ratio,
        report.compaction_mb_s,
        report.compaction_skipped_share,
        report.compaction_scattered_ratio,
        report.compaction_scattered_skipped_share,
        report.offsets_load_ratio,
        report.offsets_load_mb_s,
        report.commits_per_s,
        report.parallel_copy_ratio_acks,
        report.parallel_copy_ratio_load,
        report.handoff_copy_ratio_load,
        report.fresh_page_write_ratio_start,
        report.fresh_page_write_ratio_compaction,
    ];
    for (i, f) in figures.iter().enumerate() {
        assert!(f.is_finite() && *f >= 0.0, "figure {i} is {f}");
    }
    if cfg!(target_os = "linux") {
        assert!(
            report.acks_all_cpu_cores > 0.0,
            "Linux says how busy the process was"
        );
    }
    assert!(report.parallel_copy_ratio_acks > 0.0 && report.parallel_copy_ratio_load > 0.0);
    assert!(report.handoff_copy_ratio_load > 0.0);
    assert!(report.fresh_page_write_ratio_start > 0.0);
    assert!(report.raw_write_prefilled_mb_s > 0.0 && report.raw_write_small_prefilled_mb_s > 0.0);
    assert!(report.fresh_page_write_ratio_compaction > 0.0);
    // Every key is written ten times, in rounds: the rewrite skips the earlier rounds.
    assert!(
        report.compaction_skipped_share > 0.5 && report.compaction_skipped_share <= 1.0,
        "{}",
        report.compaction_skipped_share
    );
    // At random places, a key's latest record is often not in the last tenth: fewer
    // batches are superseded whole.
    assert!(
        report.compaction_scattered_skipped_share < report.compaction_skipped_share,
        "{} scattered, {} in rounds",
        report.compaction_scattered_skipped_share,
        report.compaction_skipped_share
    );
    // Differences of latencies: finite, of either sign on a tiny run.
    assert!(report.acks_all_p50_us.is_finite() && report.acks_all_p99_us.is_finite());
    assert!(report.data_bytes > 0 && report.data_bytes <= 1 << 20);
    assert_eq!(report.clean_open_segments, 20);
    let json = report.to_json();
    for key in [
        "append_ratio",
        "append_small_ratio",
        "read_ratio",
        "recovery_ratio",
        "append_mb_s",
        "raw_write_mb_s",
        "raw_write_prefilled_mb_s",
        "append_prefilled_raw_ratio",
        "append_small_prefilled_raw_ratio",
        "clean_open_ms_1000_segments",
        "follower_catchup_ratio",
        "acks_all_p50_us",
        "acks_all_p99_us",
        "acks_all_ratio",
        "acks_all_ceiling_ratio",
        "acks_all_cpu_cores",
        "compaction_ratio",
        "compaction_skipped_share",
        "compaction_scattered_ratio",
        "compaction_scattered_skipped_share",
        "offsets_load_ratio",
        "commits_per_s",
        "parallel_copy_ratio_acks",
        "parallel_copy_ratio_load",
        "handoff_copy_ratio_load",
        "fresh_page_write_ratio_start",
        "fresh_page_write_ratio_compaction",
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
        partlog::record::HEADER_LEN + workload::LARGE.records * workload::LARGE.record_bytes
    );
    assert_eq!(workload::validate_batches(&batch).unwrap(), 1);
}

/// The append workloads append distinct batches of one length, each valid.
#[test]
fn corpus_batches_are_distinct_valid_and_of_one_length() {
    for shape in [workload::LARGE, workload::SMALL] {
        let (corpus, batch_len) = workload::corpus(shape, 20);
        assert_eq!(corpus.len(), 20 * batch_len);
        assert_eq!(workload::validate_batches(&corpus).unwrap(), 20);
        let batches: Vec<&[u8]> = corpus.chunks_exact(batch_len).collect();
        for (i, b) in batches.iter().enumerate() {
            let parsed = partlog::record::Batch::parse(b).unwrap();
            assert_eq!(parsed.header().records_count as usize, shape.records);
            // Records follow the header; no two batches share them.
            assert!(batches[..i].iter().all(|other| other[61..] != b[61..]));
        }
    }
}

#[test]
fn read_workload_reads_every_appended_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut corpus, batch_len) = workload::corpus(workload::LARGE, 100);
    let dir = workload::partition_dir(tmp.path());
    let log = workload::append_log(&dir, &mut corpus, batch_len).unwrap();
    let mut buf = vec![0u8; workload::FETCH_BYTES];
    let n = workload::read_log(&log, &mut buf).unwrap();
    assert_eq!(n, corpus.len() as u64);
    let files = workload::segment_files(&dir).unwrap();
    assert_eq!(workload::pread_files(&files, &mut buf, |_| {}).unwrap(), n);
    drop(log);
    let (_, report) = workload::recover_log(&dir).unwrap();
    assert_eq!(report.recovered_bytes, n);
    assert!(report.damage.is_none());
}
