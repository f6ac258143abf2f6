//! Integration tests of `archiver run`, `status`, `reset` against a real MariaDB sandbox.
//!
//! Every test works in its own database (`common::Sandbox::fresh_database`) and its own
//! temporary WAL directory, and runs the real binary.

mod bad_input;
mod compaction;
mod concurrent;
mod control;
mod cross;
mod cross_copy;
mod exact_counts;
mod hooks;
mod key_types;
mod locked_planning;
mod metrics;
mod parallel;
mod parallel_two_servers;
mod progress;
mod resume;
mod schema_refusals;
mod schemas;
mod shutdown;
mod sizing;
mod throttle;
mod torture;
mod two_servers;
// TLS and secrets (issue 9).
mod secrets;
mod tls;

use std::path::PathBuf;
use std::process::Output;

use crate::common::{self, Sandbox, TestDb};

/// A job under test: a database, a WAL directory and a job file.
pub struct Job {
    /// Keeps the temporary directory (job file, WAL) alive for the test.
    pub _dir: tempfile::TempDir,
    pub config: PathBuf,
    pub wal_dir: PathBuf,
}

/// The composite-key table of the end-to-end tests: NULLs, DECIMAL, DATETIME(6), utf8mb4 text
/// with 4-byte characters, a BLOB. `rows` rows; about 58% match [`MIXED_PREDICATE`].
pub fn create_mixed(db: &mut TestDb, table: &str, rows: u64) {
    db.exec(&format!(
        "CREATE TABLE `{table}` (
            tenant INT NOT NULL,
            code VARCHAR(40) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
            amount DECIMAL(12,2) NULL,
            happened DATETIME(6) NOT NULL,
            label VARCHAR(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NULL,
            payload BLOB NULL,
            PRIMARY KEY (tenant, code),
            KEY (happened)
        ) ENGINE=InnoDB"
    ));
    if rows == 0 {
        return;
    }
    db.exec(&format!(
        "INSERT INTO `{table}` SELECT seq % 7, CONCAT('c', seq, IF(seq % 5 = 0, '😀', '')),
            IF(seq % 4 = 0, NULL, seq * 1.25),
            TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq * 37 SECOND + INTERVAL seq MICROSECOND,
            IF(seq % 3 = 0, NULL, CONCAT('ünïcødé 𝄞 ', seq)),
            IF(seq % 6 = 0, NULL, UNHEX(SHA2(seq, 256)))
         FROM seq_1_to_{rows}"
    ));
}

/// A fresh database holding [`create_mixed`]'s `src` with `rows` rows and an empty `arch`
/// like it.
pub fn mixed_db(sandbox: &Sandbox, prefix: &str, rows: u64) -> TestDb {
    let mut db = sandbox.fresh_database(prefix);
    create_mixed(&mut db, "src", rows);
    db.exec("CREATE TABLE arch LIKE src");
    db
}

/// A global status counter (`Com_stmt_prepare`, ...) of the server `db` is on. Other tests'
/// statements move it too: read it under `exclusive()`.
pub fn server_counter(db: &mut TestDb, name: &str) -> u64 {
    db.query_scalar(&format!(
        "SELECT CAST(VARIABLE_VALUE AS UNSIGNED) FROM information_schema.GLOBAL_STATUS \
         WHERE VARIABLE_NAME = '{name}'"
    ))
}

/// Rows of `src` matching `predicate`.
pub fn count_matching(db: &mut TestDb, predicate: &str) -> u64 {
    db.query_scalar(&format!("SELECT COUNT(*) FROM src WHERE {predicate}"))
}

/// Starts `archiver run` on `job` and SIGKILLs it after `delay` unless it exits first.
/// Returns whether it was killed; a run that exits on its own must have succeeded.
pub fn run_and_kill_after(job: &Job, delay: std::time::Duration) -> bool {
    let mut child = job
        .command("run")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn archiver");
    let deadline = std::time::Instant::now() + delay;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(0), "a run between kills failed");
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    true
}

/// Matches the rows of [`create_mixed`] that happened in the first 36 hours.
pub const MIXED_PREDICATE: &str = "happened < '2024-01-02 12:00:00'";

impl Job {
    /// Writes a job file moving `src` to `arch` in `db` where `predicate`, with `extra`
    /// lines in `[job]`. Batches have a fixed size (`batch_time_ms = 0`) unless `extra` sets
    /// `batch_time_ms`: tests count and kill batches by number, and the adaptive size depends
    /// on how long batches take (`engine::sizing` tests it).
    pub fn new(sandbox: &Sandbox, db: &TestDb, predicate: &str, extra: &str) -> Job {
        let dir = tempfile::tempdir().expect("temp dir");
        let wal_dir = dir.path().join("wal");
        let config = dir.path().join("job.toml");
        let fixed = if extra.contains("batch_time_ms") {
            ""
        } else {
            "batch_time_ms = 0\n"
        };
        let text = format!(
            "[source]\nurl = \"mysql://archiver@127.0.0.1:{port}/{db}\"\npassword_env = \"ARCHIVER_PASSWORD\"\ntable = \"src\"\n\n\
             [archive]\ntable = \"arch\"\n\n\
             [job]\nwhere = {predicate:?}\nwal_dir = {wal:?}\n{fixed}{extra}\n",
            port = sandbox.port(),
            db = db.name(),
            wal = wal_dir.display().to_string(),
        );
        std::fs::write(&config, text).expect("write job file");
        Job {
            _dir: dir,
            config,
            wal_dir,
        }
    }

    /// `archiver SUBCOMMAND --config job.toml`, ready for more arguments.
    pub fn command(&self, subcommand: &str) -> std::process::Command {
        let mut command = common::archiver_cmd();
        command.arg(subcommand).arg("--config").arg(&self.config);
        command
    }

    /// Runs `archiver SUBCOMMAND --config job.toml ARGS...`.
    pub fn archiver(&self, subcommand: &str, args: &[&str]) -> Output {
        self.command(subcommand)
            .args(args)
            .output()
            .expect("run archiver")
    }

    /// Runs `archiver run` with the test-only crash hook set to `EVENT:N`, and checks that the
    /// hook killed it (SIGKILL) rather than the run ending some other way.
    pub fn run_until_crash_after(&self, event_nth: &str) -> Output {
        if !cfg!(feature = "crash-hook") {
            panic!("the crash tests need the binary's crash hook: run them with `--features crash-hook` (tools/test does)");
        }
        let output = self
            .command("run")
            .env("ARCHIVER_TEST_CRASH_AFTER", event_nth)
            .output()
            .expect("run archiver");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            output.status.signal(),
            Some(9),
            "killed after {event_nth} by the hook; stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// `archiver status --format json`, parsed.
    pub fn status(&self) -> serde_json::Value {
        let output = self.archiver("status", &["--format", "json"]);
        assert_success(&output, "status");
        serde_json::from_slice(&output.stdout).expect("status prints JSON")
    }

    /// `archiver replay --inspect --format json`, one value per line.
    pub fn inspect(&self) -> (Option<i32>, Vec<serde_json::Value>) {
        let output = common::archiver_cmd()
            .args(["replay", "--inspect", "--format", "json", "--wal-dir"])
            .arg(&self.wal_dir)
            .output()
            .expect("run inspect");
        let lines = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        (output.status.code(), lines)
    }

    /// Whether the job's WAL holds a segment yet, so that `inspect` can read it. The directory
    /// comes first: the writer creates it, takes its lock and syncs its parent, then creates
    /// the first segment, and `inspect` of a directory without a segment is an error (exit 1).
    /// A test polling a starting run's log waits for this, not for the directory: the
    /// `wal_dir.exists()` it waited for once let a poll land in between (a `max_load` test's
    /// `events()` failed so, once, in CI).
    pub fn has_log(&self) -> bool {
        std::fs::read_dir(&self.wal_dir).is_ok_and(|entries| {
            entries.flatten().any(|entry| {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                name.starts_with("wal-") && name.ends_with(".seg")
            })
        })
    }

    /// The events of the log, decoded from the WAL bytes by `inspect`, as (type, fields).
    pub fn events(&self) -> Vec<(String, serde_json::Value)> {
        let (code, lines) = self.inspect();
        assert_eq!(code, Some(0), "inspect exit code");
        lines
            .into_iter()
            .filter(|l| l["kind"] == "record")
            .map(|l| {
                (
                    l["type_name"].as_str().unwrap_or_default().to_string(),
                    l["event"].clone(),
                )
            })
            .collect()
    }

    /// The record types of the log in order, decoded from the WAL bytes (see [`Job::events`]).
    pub fn event_names(&self) -> Vec<String> {
        self.events().into_iter().map(|(name, _)| name).collect()
    }
}

/// A job moving `src` in `source` to `arch` in `archive`, each on its own server, with its own
/// url (`[archive] url`). Both sandboxes have the same password, so one variable serves both.
pub fn two_server_job(source: &TestDb, archive: &TestDb, predicate: &str, extra: &str) -> Job {
    let job = Job::new(source.sandbox(), source, predicate, extra);
    let text = std::fs::read_to_string(&job.config).unwrap().replace(
        "[archive]\n",
        &format!(
            "[archive]\nurl = \"mysql://archiver@127.0.0.1:{}/{}\"\npassword_env = \"ARCHIVER_PASSWORD\"\n",
            archive.sandbox().port(),
            archive.name()
        ),
    );
    std::fs::write(&job.config, text).unwrap();
    job
}

impl Job {
    /// Rows deleted from the source, summed over the `BatchDeleted` records of the WAL.
    pub fn rows_deleted(&self) -> u64 {
        self.events()
            .iter()
            .filter(|(t, _)| t == "BatchDeleted")
            .map(|(_, f)| f["rows_deleted"].as_u64().unwrap())
            .sum()
    }

    /// Locked rows whose identical copy the archive already held, summed over the WAL's
    /// `BatchCopied` (two servers) and `BatchDeleted` (one server; zero between two) records.
    pub fn rows_already(&self) -> u64 {
        self.events()
            .iter()
            .filter(|(t, _)| t == "BatchCopied" || t == "BatchDeleted")
            .map(|(_, f)| f["rows_already"].as_u64().unwrap())
            .sum()
    }
}

/// Asserts a refusal: exit 64 for both `run --dry-run` and `run`, every fragment in stderr, no
/// WAL written, and every listed table unchanged.
pub fn assert_refused(job: &Job, db: &mut TestDb, tables: &[&str], fragments: &[&str]) {
    assert_refused_with(job, db, tables, fragments, &[]);
}

/// [`assert_refused`] with extra environment for the commands.
pub fn assert_refused_with(
    job: &Job,
    db: &mut TestDb,
    tables: &[&str],
    fragments: &[&str],
    env: &[(&str, &str)],
) {
    let before: Vec<_> = tables.iter().map(|t| db.checksum(t)).collect();
    for args in [&["--dry-run"][..], &[][..]] {
        let mut command = job.command("run");
        command.args(args).envs(env.iter().copied());
        let output = command.output().unwrap();
        assert_exit(&output, 64, &format!("run {args:?}"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        for fragment in fragments {
            assert!(
                stderr.contains(fragment),
                "{args:?}: expected {fragment:?} in {stderr}"
            );
        }
    }
    let after: Vec<_> = tables.iter().map(|t| db.checksum(t)).collect();
    assert_eq!(before, after, "a refused job changed a table");
    assert!(!job.wal_dir.exists(), "a refused job wrote a WAL");
}

/// A row lock held by another session until dropped: a transaction on its own connection,
/// driven from its own thread.
/// The key (tenant, code) of the `n`-th (from 0) row of a [`create_mixed`] table that
/// matches `predicate`, in key order.
pub fn nth_matching_key(db: &mut TestDb, predicate: &str, n: u64) -> (i64, String) {
    db.query_rows(&format!(
        "SELECT tenant, code FROM src WHERE {predicate} ORDER BY tenant, code LIMIT {n}, 1"
    ))
    .pop()
    .expect("enough matching rows")
}

/// Holds locked, from another session, the [`create_mixed`] row right after the `n`-th
/// (from 0) row matching [`MIXED_PREDICATE`] in key order, matching or not: with batches of
/// `n + 1` rows, the row a range statement of the first batch reads to see its range ended.
pub fn hold_row_after_nth_matching(db: &mut TestDb, n: u64) -> RowLock {
    let (tenant, code) = nth_matching_key(db, MIXED_PREDICATE, n);
    let code = common::sql_string(&code);
    let held = format!(
        "SELECT * FROM src WHERE tenant > {tenant} OR (tenant = {tenant} AND code > {code}) \
         ORDER BY tenant, code LIMIT 1 FOR UPDATE"
    );
    RowLock::hold(db.sandbox(), db, &held)
}

/// Holds the [`create_mixed`] row under `(tenant, code)` locked from another session.
pub fn hold_mixed_row(sandbox: &Sandbox, db: &TestDb, (tenant, code): (i64, String)) -> RowLock {
    let held = format!(
        "SELECT * FROM src WHERE tenant = {tenant} AND code = {} FOR UPDATE",
        common::sql_string(&code)
    );
    RowLock::hold(sandbox, db, &held)
}

pub struct RowLock {
    release: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RowLock {
    /// Runs `locking_select` in an open transaction and keeps it open.
    pub fn hold(sandbox: &Sandbox, db: &TestDb, locking_select: &str) -> RowLock {
        let url = format!(
            "mysql://archiver:{}@127.0.0.1:{}/{}",
            sandbox.password(),
            sandbox.port(),
            db.name()
        );
        let sql = locking_select.to_string();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            use mysql_async::prelude::Queryable;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut conn = mysql_async::Conn::from_url(url)
                    .await
                    .expect("lock connection");
                conn.query_drop("START TRANSACTION").await.unwrap();
                conn.query_drop(sql).await.unwrap();
                ready_tx.send(()).unwrap();
                let _ = tokio::task::spawn_blocking(move || release_rx.recv()).await;
                conn.query_drop("ROLLBACK").await.unwrap();
                conn.disconnect().await.unwrap();
            });
        });
        ready_rx.recv().expect("lock taken");
        RowLock {
            release: Some(release_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for RowLock {
    fn drop(&mut self) {
        drop(self.release.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Waits (generously: two minutes) until `condition` holds, looking every 20 ms, failing with
/// `what` otherwise.
pub fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Asserts exit code 0, showing stderr otherwise.
pub fn assert_success(output: &Output, what: &str) {
    assert_exit(output, 0, what);
}

/// Asserts an exit code, showing stdout and stderr otherwise.
pub fn assert_exit(output: &Output, code: i32, what: &str) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}: unexpected exit status {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Checks the end state of a job from `src` to `arch`: the archive holds exactly the rows that
/// matched, the source exactly the rest, and together they are the original.
pub fn assert_moved(db: &mut TestDb, predicate: &str, original: (u64, u64, u64), matching: u64) {
    let (source, archive) = ("src", "arch");
    let src_left: u64 = db.query_scalar(&format!(
        "SELECT COUNT(*) FROM `{source}` WHERE ({predicate})"
    ));
    assert_eq!(src_left, 0, "matching rows left in the source");
    let archived: u64 = db.query_scalar(&format!("SELECT COUNT(*) FROM `{archive}`"));
    assert_eq!(archived, matching, "rows in the archive");
    let stray: u64 = db.query_scalar(&format!(
        "SELECT COUNT(*) FROM `{archive}` WHERE NOT ({predicate})"
    ));
    assert_eq!(stray, 0, "archived rows that do not match");
    assert_eq!(
        db.checksum_union(source, archive),
        original,
        "source + archive == original, row for row"
    );
}

#[test]
fn end_to_end_composite_key_all_types() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "e2e", 6_000);
    let original = db.checksum("src");
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    assert!(matching > 3_000 && matching < 4_000, "{matching}");
    let job = Job::new(&sandbox, &db, MIXED_PREDICATE, "batch_rows = 250");

    let output = job.archiver("run", &[]);
    assert_success(&output, "run");
    assert_moved(&mut db, MIXED_PREDICATE, original, matching);
    assert!(output.stdout.is_empty(), "a successful run is quiet");
    // ... but for one line on stderr saying what it did.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let said = format!(
        "archiver: done: moved {matching} rows in {} batches (run 1), 0 already archived, 0 kept for conflicts, in ",
        matching.div_ceil(250)
    );
    assert!(stderr.starts_with(&said), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    // The WAL tells the same story, decoded from its bytes.
    let events = job.events();
    assert_eq!(job.rows_deleted(), matching);
    assert_eq!(events.first().map(|e| e.0.as_str()), Some("LogCreated"));
    assert_eq!(events.last().map(|e| e.0.as_str()), Some("RunFinished"));
    let planned = events.iter().filter(|(t, _)| t == "BatchPlanned").count() as u64;
    assert_eq!(planned, matching.div_ceil(250));

    // A second run finds nothing and changes nothing, and says so.
    let output = job.archiver("run", &[]);
    assert_success(&output, "second run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("archiver: done: moved 0 rows in 0 batches (run 2)"),
        "{stderr}"
    );
    assert_moved(&mut db, MIXED_PREDICATE, original, matching);
    let status = job.status();
    assert_eq!(status["runs"].as_array().map(Vec::len), Some(2), "{status}");
}

#[test]
fn duplicates_identical_are_deleted_differing_are_conflicts() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "dups", 2_000);
    let original = db.checksum("src");
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    // Identical copies of 20 rows already archived; differing rows under matching keys: a changed
    // amount, a NULL where the source has a value, and a label differing only in letter case
    // (equal under the column's collation, different bytes).
    db.exec("INSERT INTO arch SELECT * FROM src WHERE code LIKE 'c1_' OR code LIKE 'c2_'");
    let identical: u64 = db.query_scalar("SELECT COUNT(*) FROM arch");
    db.exec("INSERT INTO arch SELECT tenant, code, amount + 1, happened, label, payload FROM src WHERE code IN ('c301','c302','c303','c305','c306','c307','c309','c310')");
    db.exec("INSERT INTO arch SELECT tenant, code, amount, happened, NULL, payload FROM src WHERE code IN ('c401','c402','c404','c405','c407','c408') AND label IS NOT NULL");
    db.exec("INSERT INTO arch SELECT tenant, code, amount, happened, UPPER(label), payload FROM src WHERE code IN ('c502','c503','c505','c506') AND label IS NOT NULL");
    let differing: u64 = db.query_scalar::<u64>("SELECT COUNT(*) FROM arch") - identical;
    assert!(differing >= 12, "{differing}");
    let job = Job::new(&sandbox, &db, MIXED_PREDICATE, "batch_rows = 100");

    let output = job.archiver("run", &[]);
    assert_exit(&output, 3, "run with conflicts says attention needed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("conflict"), "{stderr}");

    // Differing rows stay in the source, untouched; their archive rows too.
    let kept: u64 = db.query_scalar(&format!("SELECT COUNT(*) FROM src WHERE {MIXED_PREDICATE}"));
    assert_eq!(kept, differing);
    let kept_differing: u64 = db.query_scalar(
        "SELECT COUNT(*) FROM src s JOIN arch a USING (tenant, code)
         WHERE NOT (s.amount <=> a.amount AND CAST(s.label AS BINARY) <=> CAST(a.label AS BINARY))",
    );
    assert_eq!(kept_differing, differing);
    // Everything else moved: archive = matching rows (differing ones in their archive form).
    let archived: u64 = db.query_scalar("SELECT COUNT(*) FROM arch");
    assert_eq!(archived, matching);
    // Nothing was lost: the union still holds every original row, except that the archive's
    // differing versions stand beside (not instead of) the kept source rows.
    let union_rows = db.checksum_union("src", "arch").0;
    assert_eq!(union_rows, original.0 + differing);

    // The WAL records each conflict with its key and batch; status reports them.
    let events = job.events();
    let conflicts: Vec<_> = events
        .iter()
        .filter(|(t, _)| t == "ConflictFound")
        .collect();
    assert_eq!(conflicts.len() as u64, differing);
    assert_eq!(
        job.rows_already(),
        identical,
        "identical duplicates counted as already archived"
    );
    let status = job.status();
    assert_eq!(
        status["conflicts"]["total"].as_u64(),
        Some(differing),
        "{status}"
    );

    // Running again finds the same conflicts again and still keeps the rows.
    let output = job.archiver("run", &[]);
    assert_exit(&output, 3, "second run");
    let kept_again: u64 =
        db.query_scalar(&format!("SELECT COUNT(*) FROM src WHERE {MIXED_PREDICATE}"));
    assert_eq!(kept_again, differing);
}

#[test]
fn failing_batch_is_parked_then_reset_and_retried() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "park", 1_000);
    let original = db.checksum("src");
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    // The archive refuses one row: its batch fails, is parked, and the rest goes on.
    db.exec(
        "CREATE TRIGGER refuse BEFORE INSERT ON arch FOR EACH ROW
         IF NEW.code = 'c77' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by test trigger'; END IF",
    );
    let job = Job::new(
        &sandbox,
        &db,
        MIXED_PREDICATE,
        "batch_rows = 50\nattempts_max = 3\n\n[safety]\nallow_triggers = [\"refuse\"]",
    );
    let output = job.archiver("run", &[]);
    assert_exit(&output, 3, "a parked batch needs attention");
    let status = job.status();
    let parked: Vec<_> = status["problem_batches"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|b| b["status"].as_str().unwrap_or_default().contains("parked"))
        .collect();
    assert_eq!(parked.len(), 1, "{status}");
    assert!(
        parked[0]["last_error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("refused by test trigger"),
        "{status}"
    );
    let left: u64 = db.query_scalar(&format!("SELECT COUNT(*) FROM src WHERE {MIXED_PREDICATE}"));
    assert!(
        left > 0 && left <= 50,
        "only the parked batch's rows stay: {left}"
    );

    // reset is refused for a done batch, accepted for the parked one; the next run retries it.
    db.exec("DROP TRIGGER refuse");
    let output = job.archiver("reset", &["--batch", "1"]);
    assert_exit(&output, 64, "reset of a done batch");
    let output = job.archiver("reset", &["--error-like", "%refused by test%"]);
    assert_success(&output, "reset");
    assert!(String::from_utf8_lossy(&output.stdout).contains("reset 1 batch"));
    let output = job.archiver("run", &[]);
    assert_success(&output, "run after reset");
    assert_moved(&mut db, MIXED_PREDICATE, original, matching);
    let events = job.events();
    assert!(events.iter().any(|(t, _)| t == "BatchReset"));
}

#[test]
fn dry_run_changes_nothing_and_prints_the_sql() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "dry", 500);
    let original = db.checksum("src");
    let job = Job::new(&sandbox, &db, MIXED_PREDICATE, "");
    let output = job.archiver("run", &["--dry-run"]);
    assert_success(&output, "dry run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("DELETE FROM `"), "{stdout}");
    assert!(stdout.contains("INSERT INTO `"), "{stdout}");
    assert!(
        stdout.contains("batch size: fixed at 1000 rows (batch_time_ms = 0)"),
        "{stdout}"
    );
    assert_eq!(db.checksum("src"), original);
    assert_eq!(db.query_scalar::<u64>("SELECT COUNT(*) FROM arch"), 0);
    assert!(!job.wal_dir.exists(), "a dry run writes no WAL");
}

#[test]
fn time_window_stops_cleanly_and_the_next_run_resumes() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "window", 2_000);
    let original = db.checksum("src");
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    // 10 rows a batch, 100 ms between batches: far more than one second of work.
    let job = Job::new(
        &sandbox,
        &db,
        MIXED_PREDICATE,
        "batch_rows = 10\nsleep_ms = 100",
    );
    let started = std::time::Instant::now();
    let output = job.archiver("run", &["--max-runtime", "1s"]);
    assert_exit(&output, 2, "stopped by --max-runtime with work left");
    assert!(
        started.elapsed().as_secs() < 10,
        "stopped near the deadline"
    );
    let moved: u64 = db.query_scalar("SELECT COUNT(*) FROM arch");
    assert!(
        moved > 0 && moved < matching,
        "some but not all moved: {moved}"
    );
    // The run is still open; the next invocation resumes it rather than starting another.
    let status = job.status();
    assert_eq!(status["runs"].as_array().map(Vec::len), Some(1), "{status}");
    let fast = std::fs::read_to_string(&job.config)
        .unwrap()
        .replace("sleep_ms = 100", "sleep_ms = 0");
    std::fs::write(&job.config, fast).unwrap();
    assert_success(&job.archiver("run", &[]), "resumed run");
    assert_moved(&mut db, MIXED_PREDICATE, original, matching);
    assert_eq!(job.status()["runs"].as_array().map(Vec::len), Some(1));
}

#[test]
fn usage_errors_exit_with_the_configuration_code() {
    // clap's own code for usage errors is 2, which would read as "stopped early".
    for args in [
        &["run", "--config", "x.toml", "--until", "25:00"][..],
        &["run", "--config", "x.toml", "--max-runtime", "soon"][..],
        &["run"][..],
        &["frobnicate"][..],
    ] {
        let output = common::archiver_cmd().args(args).output().unwrap();
        assert_exit(&output, 64, &format!("{args:?}"));
    }
    let output = common::archiver_cmd().arg("--help").output().unwrap();
    assert_success(&output, "--help");
}

/// `-v` shows one progress line per batch (README: "`-v` shows progress"); it showed none.
#[test]
fn verbose_runs_show_a_line_per_batch() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "verbose", 1_000);
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    let job = Job::new(&sandbox, &db, MIXED_PREDICATE, "batch_rows = 100");
    let output = job.archiver("run", &["-v"]);
    assert_success(&output, "run -v");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let batches = matching.div_ceil(100);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains(": moved ")).collect();
    // One per batch, and the final summary line.
    assert_eq!(lines.len() as u64, batches + 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "batch {batches}: moved {} rows",
            matching - 100 * (batches - 1)
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "run 1: {matching} rows moved in {batches} of {batches} batches"
        )),
        "{stderr}"
    );
}

/// How long a background run may take to log what a test waits for, or to end.
pub const RUNNING_DEADLINE: std::time::Duration = std::time::Duration::from_secs(180);

/// A run in the background (`run -v`), its stderr in a file that can be read while it runs.
pub struct Running {
    pub child: std::process::Child,
    stderr_path: std::path::PathBuf,
}

impl Running {
    pub fn start(job: &Job) -> Running {
        let stderr_path = job.config.with_extension("stderr");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let child = job
            .command("run")
            .arg("-v")
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn archiver");
        Running { child, stderr_path }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits until stderr holds `text`; fails if the run exits or the deadline passes first.
    pub fn wait_for_log(&mut self, text: &str) {
        let deadline = std::time::Instant::now() + RUNNING_DEADLINE;
        while !self.stderr().contains(text) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the run ended ({status}) before logging {text:?}:\n{}",
                    self.stderr()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {text:?} in:\n{}",
                self.stderr()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Waits for the run to end; its exit code and stderr.
    pub fn finish(mut self) -> (Option<i32>, String) {
        let deadline = std::time::Instant::now() + RUNNING_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), self.stderr());
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the run did not end:\n{}", self.stderr());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
