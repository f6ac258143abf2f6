//! A stop request (SIGTERM, SIGINT) cuts short every wait of the engine instead of waiting it
//! out: reconnecting to a server that is not there, the pause between batches. Before issue 7,
//! a first SIGTERM during an outage waited the whole reconnect window (120 s by default).

use std::io::Read;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// Far longer than any of these tests may take: a wait that is not cut short fails them.
const WAIT_S: u32 = 600;

/// Waits for `child` to exit by `deadline` and returns its exit code and stderr; kills it and
/// fails with `why` if it is still running then.
pub fn exit_by(mut child: Child, deadline: Instant, why: &str) -> (Option<i32>, String) {
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("still running: {why}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.code(), stderr)
}

/// Sends SIGTERM to `child` and returns its exit code and stderr; fails if it is still running
/// after `limit` (a tenth of the wait it would otherwise sit out).
fn terminate(child: Child, limit: Duration) -> (Option<i32>, String) {
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let why = format!("{limit:?} after SIGTERM, the wait was not cut short");
    exit_by(child, Instant::now() + limit, &why)
}

/// The source server is unreachable from the start (nothing listens on the port) and the job
/// allows 600 s of reconnecting: SIGTERM stops it at once with "stopped early", and nothing was
/// written (the pre-flight never ran, so no WAL may exist).
#[test]
fn a_stop_while_reconnecting_does_not_wait_out_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join("wal");
    let config = dir.path().join("job.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nurl = \"mysql://archiver@127.0.0.1:1/shop\"\ntable = \"src\"\n\n\
             [archive]\ntable = \"arch\"\n\n\
             [job]\nwhere = \"id < 10\"\nwal_dir = {:?}\nreconnect_timeout_s = {WAIT_S}\n",
            wal_dir.display().to_string()
        ),
    )
    .unwrap();
    let child = common::archiver_cmd()
        .args(["run", "-v", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Long enough to be in the reconnect loop (first retry after 100 ms).
    std::thread::sleep(Duration::from_millis(1_500));
    let (code, stderr) = terminate(child, Duration::from_secs(u64::from(WAIT_S / 10)));
    assert_eq!(code, Some(2), "stopped early; stderr: {stderr}");
    assert!(
        stderr.contains("retrying in"),
        "it was reconnecting: {stderr}"
    );
    assert!(stderr.contains("stopped early"), "{stderr}");
    assert!(!wal_dir.exists(), "nothing written before the pre-flight");
}

/// A job pausing 60 s between batches (`sleep_ms`, its maximum): SIGTERM during the pause stops
/// it at once, after exactly the batches it finished, every one recorded; the next run moves
/// the rest.
#[test]
fn a_stop_during_the_pause_between_batches_does_not_wait_it_out() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "stoppause", 1_000);
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    let before = db.checksum_union("src", "arch");
    let job = Job::new(
        &sandbox,
        &db,
        MIXED_PREDICATE,
        "batch_rows = 100\nsleep_ms = 60000",
    );
    let child = job
        .command("run")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first pause comes before the first batch is planned; wait until the log exists and
    // the run sits in it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(job.has_log() && job_has_run(&job)) {
        assert!(Instant::now() < deadline, "the run never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let (code, stderr) = terminate(child, Duration::from_secs(6));
    assert_eq!(code, Some(2), "stopped early; stderr: {stderr}");
    let names = job.event_names();
    assert_eq!(
        names,
        ["LogCreated", "RunStarted", "RunPaused"],
        "stopped in the first pause, before planning anything; the invocation's end recorded"
    );
    let moved: u64 = db.query_scalar("SELECT COUNT(*) FROM arch");
    assert_eq!(moved, 0);
    // The next run, without the pause, moves everything once.
    let text = std::fs::read_to_string(&job.config).unwrap();
    std::fs::write(
        &job.config,
        text.replace("sleep_ms = 60000", "sleep_ms = 0"),
    )
    .unwrap();
    assert_success(&job.archiver("run", &[]), "the next run");
    assert_eq!(count_matching(&mut db, MIXED_PREDICATE), 0);
    let archived: u64 = db.query_scalar("SELECT COUNT(*) FROM arch");
    assert_eq!(archived, matching);
    assert_eq!(db.checksum_union("src", "arch"), before, "no value altered");
}

fn job_has_run(job: &Job) -> bool {
    let (code, lines) = job.inspect();
    code == Some(0)
        && lines
            .iter()
            .any(|l| l["kind"] == "record" && l["type_name"] == "RunStarted")
}

/// The flag files beside the job file (pt-archiver's `--sentinel`): `JOB.pause` holds the run
/// between batches, nothing appended while it exists; removing it resumes; `JOB.stop` stops it
/// between batches with "stopped early" (2); the next run, once the file is gone, finishes.
#[test]
fn pause_and_stop_files_beside_the_job_file_hold_and_stop_the_run() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "sentinel", 2_000);
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    let before = db.checksum_union("src", "arch");
    let job = Job::new(
        &sandbox,
        &db,
        MIXED_PREDICATE,
        "batch_rows = 10\nsleep_ms = 100",
    );
    let flag = |suffix: &str| {
        let mut name = job.config.as_os_str().to_owned();
        name.push(suffix);
        std::path::PathBuf::from(name)
    };
    let (pause, stop) = (flag(".pause"), flag(".stop"));
    let child = job
        .command("run")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let batches_deleted = || {
        job.events()
            .iter()
            .filter(|(name, _)| name == "BatchDeleted")
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !job.has_log() || batches_deleted() < 2 {
        assert!(Instant::now() < deadline, "the run never got going");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::write(&pause, "").unwrap();
    // The step in flight finishes, then nothing more is appended while paused: wait until the
    // log has not grown for 1.5 s (a running job appends every 100 ms or so), then check it
    // stays so.
    let mut held = job.events().len();
    let mut still_since = Instant::now();
    while still_since.elapsed() < Duration::from_millis(1_500) {
        assert!(
            Instant::now() < deadline,
            "the pause file did not hold the run"
        );
        std::thread::sleep(Duration::from_millis(100));
        let now = job.events().len();
        if now != held {
            (held, still_since) = (now, Instant::now());
        }
    }
    std::thread::sleep(Duration::from_millis(2_000));
    assert_eq!(job.events().len(), held, "paused: nothing appended");
    std::fs::remove_file(&pause).unwrap();
    let resumed = Instant::now() + Duration::from_secs(30);
    while job.events().len() == held {
        assert!(
            Instant::now() < resumed,
            "did not resume after the pause file went"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::write(&stop, "").unwrap();
    let (code, stderr) = exit_by(child, deadline, "the stop file did not stop the run");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("pause file"), "{stderr}");
    assert!(stderr.contains("stop file"), "{stderr}");
    assert!(
        count_matching(&mut db, MIXED_PREDICATE) > 0,
        "work was left"
    );
    // With the stop file still there, the next run stops before doing anything.
    let output = job.archiver("run", &[]);
    assert_exit(&output, 2, "run with the stop file present");
    std::fs::remove_file(&stop).unwrap();
    assert_success(&job.archiver("run", &[]), "the run after");
    assert_eq!(count_matching(&mut db, MIXED_PREDICATE), 0);
    let archived: u64 = db.query_scalar("SELECT COUNT(*) FROM arch");
    assert_eq!(archived, matching);
    assert_eq!(db.checksum_union("src", "arch"), before);
}
