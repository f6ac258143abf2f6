//! The adaptive batch size (issue 10, `[job] batch_time_ms`) on a real run: from a small start
//! the planned batches grow toward the target, a batch slowed by another session's lock makes
//! the next one much smaller at once, and `ctl set batch_rows` fixes the size for the rest of
//! the run. The sizes are read from the `BatchPlanned` records decoded from the WAL; the rows
//! are checked exactly, whatever sizes the run chose. Nothing here times anything: a test
//! only makes a batch slow (a held row lock) or fast (a few rows), never measures one.

use std::process::Stdio;
use std::time::{Duration, Instant};

use super::*;

/// `rows_planned` of every `BatchPlanned` record, in log order.
fn planned_rows(events: &[(String, serde_json::Value)]) -> Vec<u64> {
    events
        .iter()
        .filter(|(name, _)| name == "BatchPlanned")
        .map(|(_, e)| e["rows_planned"].as_u64().expect("rows_planned"))
        .collect()
}

/// Every matching row moved once, nothing else touched: the source keeps exactly the other
/// rows, the archive holds the matching ones, and together they are the original.
fn assert_exact(db: &mut TestDb, predicate: &str, original: (u64, u64, u64), matching: u64) {
    assert_eq!(count_matching(db, predicate), 0, "no matching row left");
    let archived: u64 = db.query_scalar("SELECT COUNT(*) FROM arch");
    assert_eq!(archived, matching, "every matching row archived once");
    assert_eq!(
        db.checksum_union("src", "arch"),
        original,
        "source and archive together hold the original rows, unchanged"
    );
}

/// Start at 10 rows, aim at 200 ms: batches of a few rows take milliseconds, so the size grows
/// (at most 1.5 times a batch) to hundreds of rows; `--statistics` and the progress lines show
/// the sizes in use; every row moves exactly once.
#[test]
fn from_a_small_start_the_batches_grow_toward_the_target_time() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "sizing_grow", 20_000);
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    let original = db.checksum("src");
    let job = Job::new(
        &sandbox,
        &db,
        MIXED_PREDICATE,
        "batch_rows = 10\nbatch_time_ms = 200\nbatch_rows_min = 10\nsleep_ms = 100",
    );
    let dry = job.archiver("run", &["--dry-run"]);
    assert_success(&dry, "dry run");
    let says = "batch size: adaptive: the first batch plans 10 rows, the next as many as take about 200 ms a batch (10 to 10000 rows)";
    assert!(String::from_utf8_lossy(&dry.stdout).contains(says));
    let output = job.archiver("run", &["--statistics", "--progress-every", "1s"]);
    assert_success(&output, "adaptive run");
    assert_exact(&mut db, MIXED_PREDICATE, original, matching);

    let planned = planned_rows(&job.events());
    assert_eq!(
        planned[0], 10,
        "the first batch plans batch_rows: {planned:?}"
    );
    let largest = *planned.iter().max().unwrap();
    assert!(
        largest >= 100,
        "batches of 10 rows take far less than 200 ms, so the size grew: {planned:?}"
    );
    assert!(planned.iter().all(|&rows| rows >= 1), "{planned:?}");
    for pair in planned.windows(2) {
        // Growth is gradual whatever the times were (the last batch may plan fewer rows).
        assert!(
            pair[1] * 2 <= pair[0] * 3 + 1,
            "grew more than 1.5x in one batch: {planned:?}"
        );
    }
    assert_eq!(
        planned.iter().sum::<u64>(),
        matching,
        "the batches planned exactly the matching rows"
    );

    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("batch rows: "))
        .unwrap_or_else(|| panic!("--statistics says the sizes: {stderr}"));
    assert!(
        line.starts_with("batch rows: adaptive (batch_time_ms 200, 10 to 10000): first 10, "),
        "{line}"
    );
    let stat = |name: &str| -> u64 {
        let rest = &line[line.find(&format!("{name} ")).unwrap() + name.len() + 1..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(stat("largest") >= largest, "{line} vs {planned:?}");
    assert!(
        stat("over") >= planned.len() as u64,
        "{line}: every plan (and a final one that found nothing, unless the last batch ended at the key bound)"
    );
    // The progress lines show the size in use: the last one shows a grown size.
    let shown: Vec<u64> = stderr
        .lines()
        .filter(|l| l.contains("progress: run 1:"))
        .map(|l| {
            let at = l.find("  batch ").expect("batch size on the line") + "  batch ".len();
            l[at..].split(' ').next().unwrap().parse().unwrap()
        })
        .collect();
    assert!(
        !shown.is_empty(),
        "a run of seconds logs progress: {stderr}"
    );
    assert!(
        shown
            .iter()
            .all(|rows| (10..=stat("largest")).contains(rows)),
        "{shown:?}"
    );
    assert!(
        shown.len() < 2 || *shown.last().unwrap() > 10,
        "a later line shows the grown size: {shown:?}"
    );
}

/// A simple table with integer keys 1..=`rows`, whose keys are easy to find in the WAL.
fn numbered_db(sandbox: &Sandbox, prefix: &str, rows: u64) -> TestDb {
    let mut db = sandbox.fresh_database(prefix);
    db.exec(
        "CREATE TABLE src (
            id INT UNSIGNED NOT NULL PRIMARY KEY,
            note VARCHAR(64) NULL,
            at DATETIME NOT NULL
        ) ENGINE=InnoDB",
    );
    db.exec(&format!(
        "INSERT INTO src SELECT seq, IF(seq % 3 = 0, NULL, CONCAT('row ', seq)),
             TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq MINUTE
         FROM seq_1_to_{rows}"
    ));
    db.exec("CREATE TABLE arch LIKE src");
    db
}

/// Whether a session of database `db` has been in a locking read for half a second: a batch's
/// `SELECT ... FOR UPDATE` takes milliseconds unless it waits for a row lock. (Not
/// `information_schema.INNODB_TRX`: polled more often than every 100 ms it keeps its first
/// answer, ARCHITECTURE "Things the next engineer should know"; the process list is read
/// afresh every time.)
fn someone_waits_for_a_lock(db: &mut TestDb) -> bool {
    let waiting: u64 = db.query_scalar(&format!(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST
         WHERE DB = {} AND INFO LIKE '%FOR UPDATE' AND TIME_MS >= 500",
        common::sql_string(db.name())
    ));
    waiting > 0
}

/// Another session holds a lock on one matching row: the batch reaching it waits for at least
/// 2 s (the lock is released 1.5 s after the batch is seen waiting for 0.5 s), ten times the
/// 200 ms target, so the next batch plans at most a tenth of its rows (target / measured cost
/// per row), well under half; every row moves exactly once.
#[test]
fn a_batch_slowed_by_another_sessions_lock_makes_the_next_one_smaller_at_once() {
    const LOCKED_ID: u64 = 3_000;
    let sandbox = common::sandbox();
    let mut db = numbered_db(&sandbox, "sizing_shrink", 30_000);
    let predicate = "id <= 24000";
    let matching = count_matching(&mut db, predicate);
    let original = db.checksum("src");
    let job = Job::new(
        &sandbox,
        &db,
        predicate,
        "batch_rows = 500\nbatch_time_ms = 200\nlock_wait_timeout_s = 60",
    );
    let lock = RowLock::hold(
        &sandbox,
        &db,
        &format!("SELECT * FROM src WHERE id = {LOCKED_ID} FOR UPDATE"),
    );
    let mut child = job
        .command("run")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn archiver");
    wait_for("the batch holding the locked row to wait", || {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            let pipe = child.stderr.as_mut().unwrap();
            std::io::Read::read_to_string(pipe, &mut stderr).unwrap();
            panic!("the run ended ({status}) while the row was locked: {stderr}");
        }
        someone_waits_for_a_lock(&mut db)
    });
    std::thread::sleep(Duration::from_millis(1_500));
    drop(lock);
    let status = child.wait().expect("archiver ends");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_exact(&mut db, predicate, original, matching);

    let plans: Vec<(u64, u64, u64)> = job
        .events()
        .iter()
        .filter(|(name, _)| name == "BatchPlanned")
        .map(|(_, e)| {
            let key = |k: &serde_json::Value| k[0]["Int"].as_u64().expect("an integer key");
            let lower = e["lower"].as_array().map_or(0, |_| key(&e["lower"]));
            let upper = key(&e["upper"]);
            (lower, upper, e["rows_planned"].as_u64().unwrap())
        })
        .collect();
    let slowed = plans
        .iter()
        .position(|&(lower, upper, _)| lower < LOCKED_ID && LOCKED_ID <= upper)
        .expect("a batch held the locked row");
    let (slow_rows, next_rows) = (plans[slowed].2, plans[slowed + 1].2);
    assert!(
        next_rows * 2 <= slow_rows,
        "the batch after the slow one ({slow_rows} rows) plans under half as many: {next_rows} ({plans:?})"
    );
}

/// `ctl set batch_rows=4` on an adaptive run fixes the size at 4 for the rest of the run, in
/// this invocation and in the next one that resumes the run; the rows move exactly once.
#[test]
fn a_size_set_live_is_kept_for_the_rest_of_the_run() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "sizing_live", 500);
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    let original = db.checksum("src");
    let job = Job::new(
        &sandbox,
        &db,
        MIXED_PREDICATE,
        "batch_rows = 10\nbatch_time_ms = 200\nsleep_ms = 100",
    );
    let child = job
        .command("run")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deleted = |job: &Job| {
        job.events()
            .iter()
            .filter(|(n, _)| n == "BatchDeleted")
            .count()
    };
    wait_for("three batches done", || {
        job.wal_dir.join("control.sock").exists() && job.has_log() && deleted(&job) >= 3
    });
    assert_success(
        &job.archiver("ctl", &["set", "batch_rows=4"]),
        "ctl set batch_rows=4",
    );
    wait_for("five batches planned after the change", || {
        let events = job.events();
        let after = events.iter().skip_while(|(n, _)| n != "SettingsChanged");
        after.filter(|(n, _)| n == "BatchPlanned").count() >= 5
    });
    let status = job.archiver("ctl", &["status"]);
    assert_success(&status, "ctl status");
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains(", batch 4 rows, ") && status.contains("batch_rows 4 (changed live)"),
        "the size in use and the setting: {status}"
    );
    assert_success(&job.archiver("ctl", &["stop"]), "ctl stop");
    let (code, stderr) = super::shutdown::exit_by(
        child,
        Instant::now() + Duration::from_secs(60),
        "ctl stop did not stop the run",
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        count_matching(&mut db, MIXED_PREDICATE) > 0,
        "work was left"
    );

    let output = job.archiver("run", &["--statistics"]);
    assert_success(&output, "the resumed run");
    assert_exact(&mut db, MIXED_PREDICATE, original, matching);
    let events = job.events();
    let change = events
        .iter()
        .position(|(n, _)| n == "SettingsChanged")
        .unwrap();
    let before = planned_rows(&events[..change]);
    let after = planned_rows(&events[change..]);
    assert_eq!(before[0], 10, "{before:?}");
    let (last, fixed) = after.split_last().unwrap();
    assert!(
        fixed.iter().all(|&rows| rows == 4) && *last <= 4,
        "exactly 4 rows a batch after the change, resumed run included: {after:?}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("batch rows: set live (ctl set batch_rows), fixed: first 4, "),
        "{stderr}"
    );
}

/// Adaptive sizing plans a different row count nearly every batch; the statements that read
/// "the next n rows" take n as a parameter, so a run prepares the same statements whatever
/// sizes it chose: an adaptive run whose batches had many sizes prepares exactly as many
/// statements on the source server as a run of one fixed size (`Com_stmt_prepare`, read under
/// `exclusive()` so that no other test's statements are counted). With the row count written
/// into the SQL, each new size was one more `COM_STMT_PREPARE` round trip a batch.
#[test]
fn batches_of_many_sizes_prepare_no_more_statements_than_one_size() {
    let sandbox = common::sandbox();
    let server = sandbox.exclusive();
    let mut prepared = Vec::new();
    for (what, sizing) in [
        ("fixed", "batch_rows = 300\nbatch_time_ms = 0"),
        (
            "adaptive",
            "batch_rows = 10\nbatch_time_ms = 200\nbatch_rows_min = 10",
        ),
    ] {
        let mut db = server.fresh_database("sizing_prepare");
        create_mixed(&mut db, "src", 5_000);
        db.exec("CREATE TABLE arch LIKE src");
        let matching = count_matching(&mut db, MIXED_PREDICATE);
        let original = db.checksum("src");
        let job = Job::new(
            &server,
            &db,
            MIXED_PREDICATE,
            &format!("{sizing}\nparallel = 1"),
        );
        let before = server_counter(&mut db, "COM_STMT_PREPARE");
        assert_success(&job.archiver("run", &[]), what);
        prepared.push(server_counter(&mut db, "COM_STMT_PREPARE") - before);
        assert_exact(&mut db, MIXED_PREDICATE, original, matching);
        let planned = planned_rows(&job.events());
        let mut sizes = planned.clone();
        sizes.sort_unstable();
        sizes.dedup();
        if what == "adaptive" {
            assert!(
                sizes.len() >= 5,
                "batches of 10 rows take far less than 200 ms: the size grew through many values: {planned:?}"
            );
        } else {
            assert!(
                sizes.len() <= 2,
                "one size and a short last batch: {planned:?}"
            );
        }
    }
    assert_eq!(
        prepared[1], prepared[0],
        "statements prepared on the source, (fixed, adaptive): {prepared:?}"
    );
}
