//! Throttling that protects the primary (`[throttle]`, issue 9), against real servers: the
//! `archive` sandbox as the primary (it has a binary log) and the `replica` sandbox replicating
//! from it over 127.0.0.1. A run pauses between batches while replication is stopped or
//! delayed, or the source's load is above `max_load`, and goes on when that ends; it stops
//! "stopped early" (exit 2) on `critical_load` or when a replica held it past
//! `max_lag_wait_s`, and the next run finishes exactly. Progress is read from the WAL's bytes
//! (`BatchPlanned` records), reasons from the log; nothing is timed, conditions are awaited
//! with generous deadlines.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use super::*;

/// Generous bound on any condition awaited here.
const DEADLINE: Duration = Duration::from_secs(180);

/// How long a held run must append nothing for the hold to count as observed.
const HELD_FOR: Duration = Duration::from_secs(3);

/// Tests that stop or delay replication take turns: the replica is one for all of them.
static REPLICATION: Mutex<()> = Mutex::new(());

fn replication_turn() -> std::sync::MutexGuard<'static, ()> {
    REPLICATION
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// SQL on the replica sandbox as the sandbox user (it has SUPER: STOP SLAVE and the like), on
/// a connection of its own. On drop, replication runs again with no delay, whatever the test
/// did, so the next test finds it as `tools/sandbox start` left it.
struct ReplicaControl {
    runtime: tokio::runtime::Runtime,
    conn: mysql_async::Conn,
}

impl ReplicaControl {
    fn connect() -> ReplicaControl {
        let replica = common::replica_sandbox();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let conn = runtime
            .block_on(mysql_async::Conn::new(replica.opts(None)))
            .expect("connect to the replica sandbox");
        let mut control = ReplicaControl { runtime, conn };
        control.restore();
        control
    }

    fn exec(&mut self, sql: &str) {
        let conn = &mut self.conn;
        self.runtime
            .block_on(conn.query_drop(sql))
            .unwrap_or_else(|e| panic!("{sql} on the replica: {e}"));
    }

    /// Waits until both replication threads run.
    fn wait_replicating(&mut self) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let conn = &mut self.conn;
            let rows: Vec<mysql_async::Row> = self
                .runtime
                .block_on(conn.query("SHOW SLAVE STATUS"))
                .unwrap();
            let running = |column: &str| -> bool {
                rows.first()
                    .and_then(|row| row.get::<Option<String>, _>(column).flatten())
                    .is_some_and(|v| v == "Yes")
            };
            if running("Slave_IO_Running") && running("Slave_SQL_Running") {
                return;
            }
            assert!(Instant::now() < deadline, "replication did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn restore(&mut self) {
        self.exec("STOP SLAVE");
        self.exec("CHANGE MASTER TO MASTER_DELAY = 0");
        self.exec("START SLAVE");
    }

    /// Waits until the replica has applied everything up to now and runs both threads.
    fn caught_up(&mut self, primary: &mut TestDb) {
        let position: String = primary.query_scalar("SELECT @@GLOBAL.gtid_binlog_pos");
        let sql = format!("SELECT MASTER_GTID_WAIT('{position}', 120)");
        let conn = &mut self.conn;
        let waited: Option<i64> = self
            .runtime
            .block_on(conn.query_first(sql))
            .expect("MASTER_GTID_WAIT");
        assert_eq!(
            waited,
            Some(0),
            "the replica did not catch up with {position}"
        );
    }
}

impl Drop for ReplicaControl {
    fn drop(&mut self) {
        self.restore();
    }
}

/// The `[throttle]` table for one replica at `port`, plus `extra` keys.
fn throttle_toml(port: u16, extra: &str) -> String {
    format!(
        "\n[throttle]\ncheck_interval_ms = 200\n{extra}\n\n\
         [[throttle.replica]]\nurl = \"mysql://archiver@127.0.0.1:{port}\"\npassword_env = \"ARCHIVER_PASSWORD\"\n"
    )
}

fn count(job: &Job, record: &str) -> usize {
    job.events()
        .iter()
        .filter(|(name, _)| name == record)
        .count()
}

/// Waits until the WAL holds at least `n` `BatchDeleted` records.
fn wait_for_batches(job: &Job, run: &mut Running, n: usize) {
    let deadline = Instant::now() + DEADLINE;
    while !job.has_log() || count(job, "BatchDeleted") < n {
        assert!(
            run.child.try_wait().unwrap().is_none(),
            "the run ended early:\n{}",
            run.stderr()
        );
        assert!(Instant::now() < deadline, "no progress:\n{}", run.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Checks that the run, which has logged that it is throttled, plans no batch for
/// [`HELD_FOR`] and is still running.
fn assert_held(job: &Job, run: &mut Running) {
    let planned = count(job, "BatchPlanned");
    std::thread::sleep(HELD_FOR);
    assert_eq!(
        count(job, "BatchPlanned"),
        planned,
        "a batch was planned while throttled:\n{}",
        run.stderr()
    );
    assert!(run.child.try_wait().unwrap().is_none(), "{}", run.stderr());
}

/// A fresh database on the primary, replicated (named t_repl_*), with `rows` mixed rows.
fn replicated_db(prefix: &str, rows: u64) -> TestDb {
    let primary = common::archive_sandbox();
    mixed_db(&primary, &format!("repl_{prefix}"), rows)
}

/// Stopped replication pauses the run before its next batch, with the reason logged; the run
/// goes on once replication runs again and moves every matching row exactly once.
#[test]
fn a_run_pauses_while_replication_is_stopped_and_goes_on_when_it_runs_again() {
    let _turn = replication_turn();
    let mut replica = ReplicaControl::connect();
    let mut db = replicated_db("stopped", 3_000);
    let original = db.checksum("src");
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    let extra = format!(
        "batch_rows = 20\nsleep_ms = 20\n{}",
        throttle_toml(common::replica_sandbox().port(), "max_lag_s = 60")
    );
    let job = Job::new(db.sandbox(), &db, MIXED_PREDICATE, &extra);
    let mut run = Running::start(&job);
    wait_for_batches(&job, &mut run, 2);
    replica.exec("STOP SLAVE");
    // Any "not replicating" line: a check made while STOP SLAVE is under way sees one thread
    // stopped and the other still running ("IO thread Yes, SQL thread No"), and the next line
    // naming both would only come with the 60 s reminder, past `max_lag_s`.
    run.wait_for_log("not replicating (IO thread ");
    assert!(
        run.stderr().contains(&format!(
            "throttling: replica 127.0.0.1:{} not replicating",
            common::replica_sandbox().port()
        )),
        "the log names the replica: {}",
        run.stderr()
    );
    assert_held(&job, &mut run);
    replica.exec("START SLAVE");
    let (code, stderr) = run.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("throttling ended after"), "{stderr}");
    assert_eq!(
        stderr.matches("throttling: ").count(),
        1,
        "one line per wait: {stderr}"
    );
    assert_moved(&mut db, MIXED_PREDICATE, original, matching);
    assert_eq!(job.rows_deleted(), matching);
}

/// A delayed replica (MASTER_DELAY) lags by up to the delay after each burst of batches: the
/// run pauses for it ("lags N s") and finishes exactly.
#[test]
fn a_run_pauses_for_a_delayed_replica_and_finishes_exactly() {
    let _turn = replication_turn();
    let mut replica = ReplicaControl::connect();
    let mut db = replicated_db("delayed", 3_000);
    replica.caught_up(&mut db);
    replica.exec("STOP SLAVE");
    replica.exec("CHANGE MASTER TO MASTER_DELAY = 4");
    replica.exec("START SLAVE");
    replica.wait_replicating();
    let original = db.checksum("src");
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    let extra = format!(
        "batch_rows = 20\nsleep_ms = 50\n{}",
        throttle_toml(common::replica_sandbox().port(), "max_lag_s = 1")
    );
    let job = Job::new(db.sandbox(), &db, MIXED_PREDICATE, &extra);
    let mut run = Running::start(&job);
    run.wait_for_log(" s (max_lag_s = 1); waiting between batches");
    let (code, stderr) = run.finish();
    assert_eq!(code, Some(0), "{stderr}");
    let port = common::replica_sandbox().port();
    assert!(
        stderr.contains(&format!("throttling: replica 127.0.0.1:{port} lags ")),
        "{stderr}"
    );
    assert!(stderr.contains("throttling ended after"), "{stderr}");
    assert_moved(&mut db, MIXED_PREDICATE, original, matching);
}

/// A pt-heartbeat style table: the lag is the replica's clock minus the newest `ts` it holds.
/// An hour-old heartbeat holds the run; a fresh one, written on the primary and replicated,
/// lets it go on.
#[test]
fn a_stale_heartbeat_holds_the_run_until_it_is_fresh() {
    let _turn = replication_turn();
    let mut replica = ReplicaControl::connect();
    let mut db = replicated_db("heartbeat", 1_000);
    db.exec("CREATE TABLE heartbeat (server_id INT PRIMARY KEY, ts DATETIME(6) NOT NULL)");
    db.exec("INSERT INTO heartbeat VALUES (2, UTC_TIMESTAMP(6) - INTERVAL 1 HOUR)");
    replica.caught_up(&mut db);
    let original = db.checksum("src");
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    let keys = format!(
        "max_lag_s = 10\nheartbeat_table = \"{}.heartbeat\"",
        db.name()
    );
    let extra = format!(
        "batch_rows = 100\n{}",
        throttle_toml(common::replica_sandbox().port(), &keys)
    );
    let job = Job::new(db.sandbox(), &db, MIXED_PREDICATE, &extra);
    let mut run = Running::start(&job);
    run.wait_for_log("(max_lag_s = 10); waiting between batches");
    assert!(
        run.stderr().contains(" lags 360"),
        "about 3600 s: {}",
        run.stderr()
    );
    assert_eq!(
        count(&job, "BatchPlanned"),
        0,
        "held before the first batch"
    );
    assert_held(&job, &mut run);
    // pt-heartbeat's part: keep the heartbeat fresh on the primary while the run goes on.
    let deadline = Instant::now() + DEADLINE;
    while run.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "{}", run.stderr());
        db.exec("UPDATE heartbeat SET ts = UTC_TIMESTAMP(6)");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, stderr) = run.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("throttling ended after"), "{stderr}");
    assert_moved(&mut db, MIXED_PREDICATE, original, matching);
}

/// A replica nobody answers for (nothing listens on its port) holds the run as a lagging one
/// would, with the reason; past `max_lag_wait_s` the run stops "stopped early" (2) before
/// planning a batch, and the next run, without the replica, moves everything exactly once.
#[test]
fn an_unreachable_replica_stops_the_run_after_max_lag_wait_s_and_the_next_run_finishes() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "unreachable", 500);
    let original = db.checksum("src");
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    let extra = format!(
        "batch_rows = 50\n{}",
        throttle_toml(1, "max_lag_wait_s = 2")
    );
    let job = Job::new(&sandbox, &db, MIXED_PREDICATE, &extra);
    // The dry run says what the throttle sees, and writes nothing.
    let output = job.archiver("run", &["--dry-run"]);
    assert_success(&output, "dry run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("throttle: replica 127.0.0.1:1 unreachable: cannot connect to 127.0.0.1:1"),
        "{stdout}"
    );
    assert!(!job.wal_dir.exists());
    let output = job.archiver("run", &[]);
    assert_exit(&output, 2, "stopped early");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for fragment in [
        "throttling: replica 127.0.0.1:1 unreachable: cannot connect to 127.0.0.1:1",
        "the replicas held the job for 2 s in a row (max_lag_wait_s = 2)",
        "stopped early",
    ] {
        assert!(stderr.contains(fragment), "{fragment:?} in {stderr}");
    }
    let names = job.event_names();
    assert_eq!(
        names,
        ["LogCreated", "RunStarted", "RunPaused"],
        "nothing planned; the invocation's end recorded"
    );
    assert_eq!(db.query_scalar::<u64>("SELECT COUNT(*) FROM arch"), 0);
    // The next run, with the replica gone from the job, resumes the same run and finishes it.
    let text = std::fs::read_to_string(&job.config).unwrap();
    let cut = text.find("\n[throttle]").unwrap();
    std::fs::write(&job.config, &text[..cut]).unwrap();
    assert_success(&job.archiver("run", &[]), "the next run");
    assert_moved(&mut db, MIXED_PREDICATE, original, matching);
    assert_eq!(count(&job, "RunStarted"), 1, "the same run, resumed");
}

/// SIGTERM while a replica holds the run ends the wait at once, "stopped early".
#[test]
fn a_stop_request_cuts_a_throttle_wait_short() {
    let sandbox = common::sandbox();
    let db = mixed_db(&sandbox, "throttlestop", 100);
    let extra = throttle_toml(1, "max_lag_wait_s = 86400");
    let job = Job::new(&sandbox, &db, MIXED_PREDICATE, &extra);
    let mut run = Running::start(&job);
    run.wait_for_log("throttling: replica 127.0.0.1:1 unreachable");
    unsafe {
        libc::kill(run.child.id() as i32, libc::SIGTERM);
    }
    let (code, stderr) = run.finish();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("stopped early"), "{stderr}");
}

/// `critical_load` above its bound stops the run (2) before it moves anything; the next run
/// without it finishes. Threads_connected counts this test's connection and the job's, so
/// it is above 1 whatever else runs.
#[test]
fn critical_load_stops_the_run_before_anything_moves() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "critical", 500);
    let original = db.checksum("src");
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    let extra = "batch_rows = 50\n\n[throttle]\ncritical_load = \"Threads_connected=1\"\n";
    let job = Job::new(&sandbox, &db, MIXED_PREDICATE, extra);
    let output = job.archiver("run", &["--dry-run"]);
    assert_success(&output, "dry run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("throttle: Threads_connected is ")
            && stdout.contains(" on the source (critical_load Threads_connected=1)"),
        "{stdout}"
    );
    let output = job.archiver("run", &[]);
    assert_exit(&output, 2, "stopped early");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("critical_load Threads_connected=1 exceeded: Threads_connected is "),
        "{stderr}"
    );
    assert!(stderr.contains("stopped early"), "{stderr}");
    assert_eq!(count(&job, "BatchPlanned"), 0);
    assert_eq!(db.query_scalar::<u64>("SELECT COUNT(*) FROM arch"), 0);
    assert_eq!(db.checksum("src"), original);
    let text = std::fs::read_to_string(&job.config).unwrap();
    std::fs::write(
        &job.config,
        text.replace("Threads_connected=1", "Threads_connected=100000"),
    )
    .unwrap();
    assert_success(&job.archiver("run", &[]), "the next run");
    assert_moved(&mut db, MIXED_PREDICATE, original, matching);
}

/// A status variable the source does not have is refused (64) before anything is written.
#[test]
fn an_unknown_status_variable_is_refused_before_anything_is_written() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "unknownvar", 50);
    let job = Job::new(
        &sandbox,
        &db,
        MIXED_PREDICATE,
        "\n[throttle]\nmax_load = \"Threads_runing=25\"\n",
    );
    assert_refused(
        &job,
        &mut db,
        &["src", "arch"],
        &["status variable Threads_runing, which the source server does not have"],
    );
}

/// Connections running `SELECT SLEEP(600)` on the source, killed on demand.
struct Sleepers {
    ids: Vec<u64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sleepers {
    fn start(sandbox: &Sandbox, n: usize) -> Sleepers {
        let opts = sandbox.opts(None);
        let (ids_tx, ids_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let mut tasks = Vec::new();
                for _ in 0..n {
                    let (opts, ids_tx) = (opts.clone(), ids_tx.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut conn = mysql_async::Conn::new(opts).await.unwrap();
                        ids_tx.send(conn.id()).unwrap();
                        let _ = conn.query_drop("SELECT SLEEP(600)").await;
                    }));
                }
                for task in tasks {
                    let _ = task.await;
                }
            });
        });
        let ids = (0..n).map(|_| ids_rx.recv().unwrap().into()).collect();
        Sleepers {
            ids,
            thread: Some(thread),
        }
    }

    fn stop(&mut self, db: &mut TestDb) {
        for id in &self.ids {
            let _ = db.try_exec(&format!("KILL QUERY {id}"));
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

/// `max_load` above its bound pauses the run, saying which variable and its value, and it
/// goes on when the load drops. The load is 10 sessions in `SELECT SLEEP` on the source,
/// twice the bound.
#[test]
fn max_load_pauses_the_run_while_the_source_is_busy() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "maxload", 2_000);
    let original = db.checksum("src");
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    let extra = "batch_rows = 20\nsleep_ms = 20\n\n[throttle]\ncheck_interval_ms = 200\nmax_load = \"Threads_running=5\"\n";
    let job = Job::new(&sandbox, &db, MIXED_PREDICATE, extra);
    let mut run = Running::start(&job);
    wait_for_batches(&job, &mut run, 2);
    let mut sleepers = Sleepers::start(&sandbox, 10);
    run.wait_for_log("throttling: max_load Threads_running=5 exceeded: Threads_running is ");
    assert_held(&job, &mut run);
    sleepers.stop(&mut db);
    let (code, stderr) = run.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("throttling ended after"), "{stderr}");
    assert_moved(&mut db, MIXED_PREDICATE, original, matching);
}

/// A source whose load stays above `max_load` holds the run for `max_load_wait_s` in one
/// stretch and no longer: the run stops "stopped early" (2) between batches, saying why, with
/// only whole batches moved; the next run, the load gone, resumes it and moves everything
/// exactly once.
#[test]
fn a_load_that_stays_high_stops_the_run_after_max_load_wait_s_and_the_next_run_finishes() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "loadwait", 2_000);
    let original = db.checksum("src");
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    // A fixed batch size: the run must still have batches to plan once the load is up.
    let extra = "batch_rows = 20\nbatch_time_ms = 0\nsleep_ms = 20\n\n[throttle]\ncheck_interval_ms = 200\nmax_load = \"Threads_running=5\"\nmax_load_wait_s = 2\n";
    let job = Job::new(&sandbox, &db, MIXED_PREDICATE, extra);
    let mut run = Running::start(&job);
    wait_for_batches(&job, &mut run, 2);
    let mut sleepers = Sleepers::start(&sandbox, 10);
    let (code, stderr) = run.finish();
    sleepers.stop(&mut db);
    assert_eq!(code, Some(2), "{stderr}");
    for fragment in [
        "throttling: max_load Threads_running=5 exceeded: Threads_running is ",
        "the source's load held the job for 2 s in a row (max_load_wait_s = 2)",
        "stopped early",
    ] {
        assert!(stderr.contains(fragment), "{fragment:?} in {stderr}");
    }
    let archived = db.query_scalar::<u64>("SELECT COUNT(*) FROM arch");
    let deleted = job.rows_deleted();
    assert!(
        archived > 0 && archived < matching,
        "{archived} of {matching}"
    );
    assert_eq!(archived, deleted, "only whole batches moved, each recorded");
    let left = db.query_scalar::<u64>(&format!("SELECT COUNT(*) FROM src WHERE {MIXED_PREDICATE}"));
    assert_eq!(
        left,
        matching - archived,
        "every archived row left the source"
    );
    assert_eq!(count(&job, "RunPaused"), 1);
    assert_success(&job.archiver("run", &[]), "the next run");
    assert_moved(&mut db, MIXED_PREDICATE, original, matching);
    assert_eq!(count(&job, "RunStarted"), 1, "the same run, resumed");
}
