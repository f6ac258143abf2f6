//! Batches in flight side by side (issue 10, `parallel` / `archiver run --jobs N`): each on
//! its own connection and key range, their claims made durable together (group commit), the
//! log written by the loop alone. Every test checks the tables (counts and checksums) and the
//! log's own counts, decoded from the WAL.

use super::exact_counts::logged_totals;
use super::*;

/// The (type, batch id) of every record that names a batch, in log order.
pub(super) fn batch_records(job: &Job) -> Vec<(String, u64)> {
    job.events()
        .into_iter()
        .filter_map(|(t, e)| e["batch_id"].as_u64().map(|id| (t, id)))
        .collect()
}

/// Runs `job` (batches of 100 rows, `attempts_max = 1`, two or more in flight) while another
/// session holds the row after the first batch's last one (its 100th matching row in `db`'s
/// `src`): the row its range statements would read to see the range ended, and the second
/// batch's first row. The run must end with that batch parked (exit 3), the first batch moved,
/// and no other batch failed. Returns the batch records of the log.
pub(super) fn run_with_the_row_after_the_first_batch_held(
    job: &Job,
    db: &mut TestDb,
) -> Vec<(String, u64)> {
    let blocker = hold_row_after_nth_matching(db, 99);
    let output = job.archiver("run", &[]);
    drop(blocker);
    assert_exit(&output, 3, "the held row's batch is parked");
    let records = batch_records(job);
    assert!(
        records.contains(&("BatchDeleted".to_string(), 1)),
        "the first batch moved: {records:?}"
    );
    assert_eq!(
        failed_batches(&records),
        vec![2],
        "only the held row's batch failed"
    );
    records
}

/// The batches of `records` with a `BatchFailed`, in log order.
pub(super) fn failed_batches(records: &[(String, u64)]) -> Vec<u64> {
    (records.iter())
        .filter(|(k, _)| k == "BatchFailed")
        .map(|(_, id)| *id)
        .collect()
}

/// How many batches were planned while an earlier one had not yet recorded its end: the
/// proof, from the log, that batches were in flight together.
pub(super) fn planned_in_flight(records: &[(String, u64)]) -> usize {
    let mut open = std::collections::BTreeSet::new();
    let mut overlapping = 0;
    for (kind, id) in records {
        match kind.as_str() {
            "BatchPlanned" => {
                if !open.is_empty() {
                    overlapping += 1;
                }
                open.insert(*id);
            }
            "BatchDeleted" | "BatchFailed" => {
                open.remove(id);
            }
            _ => {}
        }
    }
    overlapping
}

/// Four batches in flight on a composite key: every matching row moves exactly once, the rest
/// stay, the log's counts equal the tables', each batch's claim precedes its end, and the log
/// shows batches planned while others were still running.
#[test]
fn batches_in_flight_move_every_row_exactly_once() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "parallel", 6_000);
    let original = db.checksum("src");
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    let job = Job::new(
        &sandbox,
        &db,
        MIXED_PREDICATE,
        "batch_rows = 60\nbatch_time_ms = 0\nparallel = 4\nlock_wait_timeout_s = 1",
    );
    let output = job.archiver("run", &["--statistics"]);
    assert_success(&output, "run with 4 batches in flight");
    assert_moved(&mut db, MIXED_PREDICATE, original, matching);
    assert_eq!(logged_totals(&job), (matching, matching));
    let records = batch_records(&job);
    let overlapping = planned_in_flight(&records);
    assert!(
        overlapping > 5,
        "only {overlapping} batches planned while another ran"
    );
    for (kind, id) in records.iter().filter(|(k, _)| k == "BatchDeleted") {
        let claim = records
            .iter()
            .position(|r| r == &("BatchCommitting".into(), *id));
        let end = records.iter().position(|r| r == &(kind.clone(), *id));
        assert!(
            claim < end,
            "batch {id}: BatchCommitting before BatchDeleted"
        );
    }
    // Batches side by side never wait for each other's locks (their statements stop at their
    // own upper key), so none failed: a lock wait would have failed one after 1 s.
    let failed: Vec<_> = records.iter().filter(|(k, _)| k == "BatchFailed").collect();
    assert!(failed.is_empty(), "{failed:?}");
    let planned = records.iter().filter(|(k, _)| k == "BatchPlanned").count() as u64;
    assert!(planned >= matching / 60, "{planned} batches");
}

/// `--jobs` overrides the job file and is bounded. Refusals exit 64 and write nothing.
#[test]
fn jobs_out_of_range_are_refused() {
    let sandbox = common::sandbox();
    let db = mixed_db(&sandbox, "jobs", 100);
    let job = Job::new(&sandbox, &db, MIXED_PREDICATE, "");
    for (jobs, says) in [
        ("0", "--jobs 0 is out of range; use 1 to 16"),
        ("17", "--jobs 17 is out of range; use 1 to 16"),
    ] {
        let output = job.archiver("run", &["--jobs", jobs]);
        assert_exit(&output, 64, says);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{stderr}");
    }
    assert!(!job.wal_dir.exists());
}

/// Killed with batches in flight, on either side of a claim's sync and after a commit whose
/// `BatchDeleted` was lost; resumed (again with batches in flight), the run ends with the
/// tables exact and the log's counts equal to them.
#[test]
fn a_kill_with_batches_in_flight_resumes_exactly() {
    let sandbox = common::sandbox();
    for hook in [
        "BatchCommitting:5",
        "BatchCommitting:6:unsynced",
        "BatchDeleted:4:unsynced",
        "BatchPlanned:7:unsynced",
    ] {
        let mut db = mixed_db(&sandbox, "parkill", 4_000);
        let original = db.checksum("src");
        let matching = count_matching(&mut db, MIXED_PREDICATE);
        let job = Job::new(
            &sandbox,
            &db,
            MIXED_PREDICATE,
            "batch_rows = 50\nbatch_time_ms = 0\nparallel = 3",
        );
        job.run_until_crash_after(hook);
        let output = job.archiver("run", &[]);
        assert_success(&output, &format!("resumed after a kill at {hook}"));
        assert_moved(&mut db, MIXED_PREDICATE, original, matching);
        assert_eq!(
            logged_totals(&job),
            (matching, matching),
            "killed at {hook}"
        );
    }
}

/// A row of a batch held by another session past `lock_wait_timeout_s` while batches run
/// beside it: that batch fails (a lock wait is transient) and is run again once the row is
/// free; nothing is lost, nothing moves twice.
#[test]
fn a_lock_wait_in_flight_is_retried_without_loss() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "parlock", 3_000);
    let original = db.checksum("src");
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    let job = Job::new(
        &sandbox,
        &db,
        MIXED_PREDICATE,
        "batch_rows = 100\nbatch_time_ms = 0\nparallel = 3\nattempts_max = 50\nlock_wait_timeout_s = 1",
    );
    let key = nth_matching_key(&mut db, MIXED_PREDICATE, 549);
    let blocker = hold_mixed_row(&sandbox, &db, key);
    let mut run = Running::start(&job);
    run.wait_for_log("failed (Transient)");
    drop(blocker);
    let (code, stderr) = run.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert_moved(&mut db, MIXED_PREDICATE, original, matching);
    assert_eq!(logged_totals(&job), (matching, matching));
    let failed = batch_records(&job)
        .into_iter()
        .filter(|(k, _)| k == "BatchFailed")
        .count();
    assert!(failed >= 1, "{stderr}");
}

/// The row right after a batch's upper key is the next batch's first row, locked by the next
/// batch's planning read while both are in flight. A batch's statements must never wait for
/// it: here another session holds that row past `lock_wait_timeout_s`, and the first batch
/// still moves (only the batch whose row it is fails and is parked); released and reset, the
/// next run moves the rest exactly.
#[test]
fn a_batch_never_waits_for_the_row_after_its_range() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "parnext", 1_000);
    let original = db.checksum("src");
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    let job = Job::new(
        &sandbox,
        &db,
        MIXED_PREDICATE,
        "batch_rows = 100\nbatch_time_ms = 0\nparallel = 2\nattempts_max = 1\nlock_wait_timeout_s = 1",
    );
    let records = run_with_the_row_after_the_first_batch_held(&job, &mut db);
    // The second batch's planning read waited a second for the held row; the first batch
    // went on meanwhile (its locks are not held for another session's sake): it was done
    // before the second was planned.
    let at = |record: (&str, u64)| {
        (records.iter())
            .position(|(k, id)| (k.as_str(), *id) == record)
            .unwrap_or_else(|| panic!("no {record:?} in {records:?}"))
    };
    assert!(
        at(("BatchDeleted", 1)) < at(("BatchPlanned", 2)),
        "the first batch waited for the second's planning: {records:?}"
    );
    assert_success(&job.archiver("reset", &["--failed"]), "reset");
    assert_success(&job.archiver("run", &[]), "run after the lock is gone");
    assert_moved(&mut db, MIXED_PREDICATE, original, matching);
    assert_eq!(logged_totals(&job), (matching, matching));
}

/// On a slow disk (every WAL sync 50 ms longer: the benchmark-only `sync-delay` feature, which
/// the test command builds), batches are planned and run while syncs are in progress, and the
/// plan that finds no row left may come while earlier batches still wait for their sync: the
/// run finishes exactly, and one sync covers several claims (fewer syncs than batches). (The
/// race in which the run once finished with such batches pending is forced by the next test.)
#[test]
fn on_a_slow_disk_the_run_finishes_after_its_last_batches_commit() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "parslow", 2_000);
    let original = db.checksum("src");
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    let job = Job::new(
        &sandbox,
        &db,
        MIXED_PREDICATE,
        "batch_rows = 40\nbatch_time_ms = 0\nparallel = 4",
    );
    let output = job
        .command("run")
        .arg("--statistics")
        .env("ARCHIVER_BENCH_SYNC_DELAY_MS", "50")
        .output()
        .unwrap();
    assert_success(&output, "run with slow syncs");
    assert_moved(&mut db, MIXED_PREDICATE, original, matching);
    assert_eq!(logged_totals(&job), (matching, matching));
    if cfg!(feature = "sync-delay") {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let syncs: u64 = (stderr.lines())
            .find_map(|line| line.strip_prefix("wal_sync"))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no wal_sync line: {stderr}"));
        let batches = batch_records(&job)
            .iter()
            .filter(|(k, _)| k == "BatchDeleted")
            .count() as u64;
        assert!(
            syncs < batches,
            "{syncs} syncs for {batches} batches: {stderr}"
        );
    }
}

/// The race b23da36 closed, forced: the matching rows fill exactly one batch and rows that do
/// not match follow them up to the run's key bound, so the run must plan again after that
/// batch; every WAL sync costs 1 s more (`sync-delay`), so the batch's statements land and it
/// waits for its sync while that plan (on another connection) finds nothing left. The run
/// must finish only after the batch commits (RunFinished after its BatchDeleted, decoded from
/// the WAL). Finishing once no batch's statements were running (`flying`), as before
/// b23da36, wrote RunFinished with the batch planned and uncommitted, which the log refuses.
#[test]
fn a_plan_finding_nothing_while_the_last_batch_syncs_finishes_after_its_commit() {
    let sandbox = common::sandbox();
    let predicate = "kind = 'old'";
    for parallel in [1, 2] {
        let mut db = sandbox.fresh_database(&format!("parlastsync{parallel}"));
        for table in ["src", "arch"] {
            db.exec(&format!(
                "CREATE TABLE {table} (id BIGINT PRIMARY KEY, kind VARCHAR(8) NOT NULL, \
                 note VARCHAR(40) CHARACTER SET latin1 NULL)"
            ));
        }
        db.exec(
            "INSERT INTO src SELECT seq, IF(seq <= 1000, 'old', 'new'), \
             IF(seq % 3 = 0, NULL, CONCAT('n\u{e9} ', seq)) FROM seq_1_to_1400",
        );
        let original = db.checksum("src");
        let job = Job::new(
            &sandbox,
            &db,
            predicate,
            &format!("batch_rows = 1000\nparallel = {parallel}"),
        );
        let output = job
            .command("run")
            .arg("-vv")
            .env("ARCHIVER_BENCH_SYNC_DELAY_MS", "1000")
            .output()
            .unwrap();
        assert_success(
            &output,
            &format!("run with parallel = {parallel}, slow syncs"),
        );
        assert_moved(&mut db, predicate, original, 1000);
        assert_eq!(logged_totals(&job), (1000, 1000));
        let names = job.event_names();
        let at = |name: &str| names.iter().position(|n| n == name);
        assert!(
            at("BatchDeleted").is_some() && at("BatchDeleted") < at("RunFinished"),
            "the run finished after its batch: {names:?}"
        );
        if cfg!(feature = "sync-delay") {
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                stderr.contains("no matching row left; the run finishes once batches {1} commit"),
                "the last plan came while batch 1 was in flight: {stderr}"
            );
        }
    }
}
