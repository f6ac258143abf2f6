//! Compaction against the real engine: a run interrupted by a crash, its log compacted, resumes
//! exactly where it stopped, and `status` still tells what earlier runs did.

use super::*;

/// `archiver compact --wal-dir DIR ARGS`.
fn compact(job: &Job, args: &[&str]) -> Output {
    common::archiver_cmd()
        .args(["compact", "--wal-dir"])
        .arg(&job.wal_dir)
        .args(args)
        .output()
        .expect("run archiver compact")
}

/// The replayed state's next action, as `inspect` prints it.
fn next_action(job: &Job) -> String {
    let (code, lines) = job.inspect();
    assert_eq!(code, Some(0), "inspect");
    let state = lines
        .iter()
        .find(|l| l["kind"] == "state")
        .expect("inspect prints the state");
    state["summary"]["next_action"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn an_interrupted_run_resumes_after_compaction_exactly_where_it_stopped() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "compactresume", 3_000);
    let original = db.checksum_union("src", "arch");
    let job = Job::new(&sandbox, &db, MIXED_PREDICATE, "batch_rows = 150");
    // Run 1 completes: history to summarize.
    assert_success(&job.archiver("run", &[]), "run 1");
    let moved_by_run_1: u64 = db.query_scalar("SELECT COUNT(*) FROM arch");
    // New matching rows for run 2, which dies right after planning its third batch.
    db.exec(
        "INSERT INTO src SELECT 9, CONCAT('n', seq), seq, TIMESTAMP'2024-01-01 00:00:00', 'new', NULL
         FROM seq_1_to_1000",
    );
    let with_new = db.checksum_union("src", "arch");
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    assert_eq!(matching, 1_000);
    job.run_until_crash_after("BatchPlanned:3");
    let before_next = next_action(&job);
    let before_status = job.status();
    let records_before = job.events().len();

    let output = compact(&job, &["--keep-runs", "0", "--format", "json"]);
    assert_success(&output, "compact");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["records_before"], records_before as u64);
    assert_eq!(report["dry_run"], false);
    assert!(
        report["batches_summarized"].as_u64().unwrap() > 0,
        "{report}"
    );

    // The log now begins with the snapshot; replay answers exactly as before.
    let events = job.events();
    assert_eq!(events[0].0, "SnapshotStarted", "{events:?}");
    assert_eq!(
        events.len() as u64,
        report["records_after"].as_u64().unwrap()
    );
    assert_eq!(next_action(&job), before_next);
    assert!(before_next.contains("batch"), "{before_next}");
    let after_status = job.status();
    for key in ["runs", "totals", "conflicts"] {
        assert_eq!(after_status[key], before_status[key], "status {key}");
    }
    assert_eq!(
        after_status["runs"][0]["counts"]["rows_deleted"].as_u64(),
        Some(moved_by_run_1),
        "run 1's totals survive: {after_status}"
    );

    // The engine resumes at the planned batch, and moves every new row once.
    assert_success(&job.archiver("run", &[]), "resumed run 2");
    assert_eq!(count_matching(&mut db, MIXED_PREDICATE), 0);
    let archived: u64 = db.query_scalar("SELECT COUNT(*) FROM arch");
    assert_eq!(archived, moved_by_run_1 + matching);
    assert_eq!(db.checksum_union("src", "arch"), with_new);
    assert_ne!(with_new, original);
    // A second compaction of a compacted log works too, and a dry run writes nothing.
    let wal_before = super::bad_input::dir_bytes(&job.wal_dir);
    let dry = compact(&job, &["--dry-run"]);
    assert_success(&dry, "dry run");
    assert!(String::from_utf8_lossy(&dry.stdout).contains("would compact"));
    assert_eq!(super::bad_input::dir_bytes(&job.wal_dir), wal_before);
    assert_success(&compact(&job, &[]), "second compaction");
    assert_eq!(next_action(&job), "start a new run");
}

/// A log past `compact_above_records` is compacted by the next run before it starts, which
/// then runs as usual; `--no-compact` leaves it alone.
#[test]
fn a_run_compacts_a_log_past_the_threshold_before_it_starts() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "autocompact", 2_000);
    let job = Job::new(
        &sandbox,
        &db,
        MIXED_PREDICATE,
        "batch_rows = 100\ncompact_above_records = 20\nkeep_runs = 1",
    );
    assert_success(&job.archiver("run", &[]), "run 1");
    let records_after_run_1 = job.events().len();
    assert!(records_after_run_1 > 20, "{records_after_run_1} records");
    let insert_new = |db: &mut TestDb, prefix: &str| {
        db.exec(&format!(
            "INSERT INTO src SELECT 8, CONCAT('{prefix}', seq), seq, TIMESTAMP'2024-01-01 00:00:00', 'new', NULL
             FROM seq_1_to_300"
        ));
    };
    insert_new(&mut db, "a");
    let output = job.archiver("run", &[]);
    assert_success(&output, "run 2");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("compacted the log before the run"),
        "{stderr}"
    );
    let events = job.events();
    assert_eq!(events[0].0, "SnapshotStarted");
    assert!(
        events.iter().any(|(name, _)| name == "RunFinished"),
        "run 2 went on"
    );
    assert_eq!(count_matching(&mut db, MIXED_PREDICATE), 0);
    let status = job.status();
    assert_eq!(status["runs_total"], 2);
    assert_eq!(status["runs"][1]["counts"]["rows_deleted"], 300);

    insert_new(&mut db, "b");
    let output = job.archiver("run", &["--no-compact"]);
    assert_success(&output, "run 3, --no-compact");
    assert!(!String::from_utf8_lossy(&output.stderr).contains("compacted"));
    assert_eq!(
        job.events()[..events.len()],
        events[..],
        "the log only grew"
    );
    assert_eq!(count_matching(&mut db, MIXED_PREDICATE), 0);
}
