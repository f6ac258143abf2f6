//! Live control of a running job (issue 9): `archiver ctl` and `curl --unix-socket` against the
//! control socket of a real run on the sandbox. Pause holds the run with nothing appended; set
//! records a `SettingsChanged` that later batches obey, also after the run is stopped and
//! resumed; stop exits "stopped early"; the resumed run finishes with every row moved once.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use super::shutdown::exit_by;
use super::*;

/// `archiver ctl ARGS... --config job.toml`.
fn ctl(job: &Job, args: &[&str]) -> Output {
    job.archiver("ctl", args)
}

/// `ctl status --format json`, parsed; fails unless it succeeds.
fn ctl_status(job: &Job) -> serde_json::Value {
    let output = ctl(job, &["status", "--format", "json"]);
    assert_success(&output, "ctl status --format json");
    serde_json::from_slice(&output.stdout).expect("status is JSON")
}

/// The records of the log, decoded from its bytes (`replay --inspect`).
fn records(job: &Job) -> Vec<(String, serde_json::Value)> {
    job.events()
}

/// `rows_planned` of the `BatchPlanned` records after the first `SettingsChanged`.
fn planned_after_change(records: &[(String, serde_json::Value)]) -> Vec<u64> {
    records
        .iter()
        .skip_while(|(name, _)| name != "SettingsChanged")
        .filter(|(name, _)| name == "BatchPlanned")
        .map(|(_, e)| e["rows_planned"].as_u64().unwrap())
        .collect()
}

/// `curl --unix-socket SOCKET ARGS... http://archiver/PATH`: the status code and the body.
fn curl(socket: &Path, args: &[&str], path: &str) -> (u16, String) {
    let output = std::process::Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "--unix-socket"])
        .arg(socket)
        .args(args)
        .arg(format!("http://archiver{path}"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').expect("curl prints the status code");
    (
        code.trim().parse().expect("a status code"),
        body.to_string(),
    )
}

fn curl_installed() -> bool {
    std::process::Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The whole story on one real run: pause holds it (nothing appended, status says so), bad
/// settings are refused with nothing recorded, `set batch_rows` is recorded and obeyed, the
/// same works through curl, stop exits 2 and removes the socket, `ctl` then says no job runs,
/// a compaction keeps the live settings, the next run resumes with them and moves every row
/// exactly once, and a new run starts from the job file's batch_rows again.
#[test]
fn ctl_pauses_sets_and_stops_a_running_job_which_then_resumes_exactly() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "ctl", 2_000);
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    let before = db.checksum_union("src", "arch");
    let job = Job::new(
        &sandbox,
        &db,
        MIXED_PREDICATE,
        "batch_rows = 10\nsleep_ms = 100",
    );
    let socket = job.wal_dir.join("control.sock");
    let child = job
        .command("run")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deleted = |records: &[(String, serde_json::Value)]| {
        records.iter().filter(|(n, _)| n == "BatchDeleted").count()
    };
    wait_for("the run to get going", || {
        socket.exists() && job.has_log() && deleted(&records(&job)) >= 2
    });

    // The socket: a socket, owner-only.
    let meta = std::fs::symlink_metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "socket mode");

    let status = ctl_status(&job);
    assert_eq!(status["state"], "running", "{status}");
    assert_eq!(
        status["pid"].as_u64(),
        Some(u64::from(child.id())),
        "{status}"
    );
    assert_eq!(status["run_id"], 1, "{status}");
    assert_eq!(status["settings"]["batch_rows"], 10, "{status}");
    assert_eq!(status["settings"]["sleep_ms"], 100, "{status}");
    assert!(
        status["run"]["rows_moved"].as_u64().unwrap() >= 2,
        "{status}"
    );

    // Pause: answered once the run holds between batches; nothing is appended meanwhile.
    let output = ctl(&job, &["pause"]);
    assert_success(&output, "ctl pause");
    assert!(String::from_utf8_lossy(&output.stdout).contains("paused between batches"));
    let held = records(&job).len();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(records(&job).len(), held, "paused: nothing appended");
    let text = ctl(&job, &["status"]);
    assert_success(&text, "ctl status");
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(text.contains(": paused since "), "{text}");
    assert!(
        text.contains("settings: batch_rows 10, sleep_ms 100"),
        "{text}"
    );
    assert_eq!(ctl_status(&job)["state"], "paused");

    // Bad values are refused (400, exit 64) and nothing is recorded.
    for (arg, says) in [
        (
            "batch_rows=0",
            "batch_rows = 0 is out of range; use 1 to 100000",
        ),
        (
            "sleep_ms=60001",
            "sleep_ms = 60001 is out of range; use 0 to 60000",
        ),
        ("rows=5", "unknown setting \"rows\""),
        ("batch_rows=many", "is not a whole number"),
    ] {
        let output = ctl(&job, &["set", arg]);
        assert_exit(&output, 64, arg);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{arg}: {stderr}");
        assert!(
            stderr.contains("(400)") && stderr.contains("nothing recorded"),
            "{stderr}"
        );
    }
    assert_eq!(
        records(&job).len(),
        held,
        "refused settings recorded nothing"
    );

    // A set while paused is recorded at once, durably, and nothing else is.
    let output = ctl(&job, &["set", "batch_rows=3"]);
    assert_success(&output, "ctl set batch_rows=3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("recorded at lsn"), "{stdout}");
    let now = records(&job);
    assert_eq!(now.len(), held + 1);
    let (name, change) = now.last().unwrap();
    assert_eq!(name, "SettingsChanged");
    assert_eq!(change["run_id"], 1);
    assert_eq!(change["batch_rows"], 3);
    assert!(change["sleep_ms"].is_null() && change["max_lag_s"].is_null());
    assert_eq!(ctl_status(&job)["settings"]["batch_rows"], 3);

    // Resume: batches again, of at most 3 rows.
    assert_success(&ctl(&job, &["resume"]), "ctl resume");
    wait_for("three batches planned after the change", || {
        planned_after_change(&records(&job)).len() >= 3
    });
    let planned = planned_after_change(&records(&job));
    assert!(planned.iter().all(|&rows| rows <= 3), "{planned:?}");
    assert_eq!(ctl_status(&job)["state"], "running");

    // The same surface through curl (skipped, with a note, where curl is not installed).
    if curl_installed() {
        let (code, body) = curl(&socket, &[], "/status");
        assert_eq!(code, 200, "{body}");
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(status["settings"]["batch_rows"], 3, "{status}");
        let (code, body) = curl(&socket, &["-X", "POST"], "/set?sleep_ms=20");
        assert_eq!(code, 200, "{body}");
        let (code, body) = curl(&socket, &["-d", "max_lag_s=0"], "/set");
        assert_eq!(code, 400, "{body}");
        assert!(body.contains("max_lag_s = 0 is out of range"), "{body}");
        assert_eq!(curl(&socket, &[], "/nowhere").0, 404);
        assert_eq!(curl(&socket, &[], "/pause").0, 405, "pause is a POST");
        let (code, body) = curl(&socket, &["-X", "POST"], "/pause");
        assert_eq!(code, 200, "{body}");
        let (_, body) = curl(&socket, &[], "/status");
        assert!(body.contains("\"state\":\"paused\""), "{body}");
        assert_eq!(curl(&socket, &["-X", "POST"], "/resume").0, 200);
    } else {
        eprintln!("note: curl is not installed; the curl sub-check is skipped");
        assert_success(&ctl(&job, &["set", "sleep_ms=20"]), "ctl set sleep_ms=20");
    }
    let changes: Vec<serde_json::Value> = records(&job)
        .into_iter()
        .filter(|(n, _)| n == "SettingsChanged")
        .map(|(_, e)| e)
        .collect();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(changes[1]["sleep_ms"], 20);

    // Stop: the batch in flight finishes, the process exits 2 and takes its socket with it.
    let output = ctl(&job, &["stop"]);
    assert_success(&output, "ctl stop");
    let (code, stderr) = exit_by(
        child,
        Instant::now() + Duration::from_secs(60),
        "ctl stop did not stop the run",
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("stopped early"), "{stderr}");
    assert!(!socket.exists(), "the socket is removed at exit");
    let left = count_matching(&mut db, MIXED_PREDICATE);
    assert!(left > 0, "work was left");

    // No job running: a clear error, non-zero exit.
    let output = ctl(&job, &["status"]);
    assert_exit(&output, 1, "ctl status with no running job");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no running job for")
            && stderr.contains("control.sock does not exist or nobody listens")
            && stderr.contains("start one with archiver run"),
        "{stderr}"
    );

    // A compaction keeps the live settings (a SnapshotSettings record) ...
    let output = common::archiver_cmd()
        .args(["compact", "--wal-dir"])
        .arg(&job.wal_dir)
        .output()
        .unwrap();
    assert_success(&output, "compact");
    let compacted = records(&job);
    assert!(
        compacted.iter().any(|(n, e)| n == "SnapshotSettings"
            && e["settings"][0]["batch_rows"] == 3
            && e["settings"][0]["sleep_ms"] == 20),
        "{compacted:?}"
    );
    assert!(!compacted.iter().any(|(n, _)| n == "BatchPlanned"));

    // ... and the next run resumes run 1 with them still in force, and finishes exactly.
    assert_success(&job.archiver("run", &[]), "the resumed run");
    let planned: Vec<u64> = records(&job)
        .iter()
        .filter(|(n, _)| n == "BatchPlanned")
        .map(|(_, e)| e["rows_planned"].as_u64().unwrap())
        .collect();
    assert!(!planned.is_empty(), "the resumed run planned batches");
    assert!(planned.iter().all(|&rows| rows <= 3), "{planned:?}");
    assert_eq!(count_matching(&mut db, MIXED_PREDICATE), 0);
    let archived: u64 = db.query_scalar("SELECT COUNT(*) FROM arch");
    assert_eq!(archived, matching, "every matching row archived once");
    assert_eq!(
        db.checksum_union("src", "arch"),
        before,
        "source ∪ archive unchanged"
    );
    let status = job.status();
    assert_eq!(status["runs"].as_array().map(Vec::len), Some(1), "{status}");
    assert_eq!(status["runs"][0]["live"]["batch_rows"], 3, "{status}");
    assert_eq!(status["runs"][0]["live"]["sleep_ms"], 20, "{status}");

    // A new run starts from the job file's batch_rows (10) again.
    db.exec(
        "INSERT INTO src SELECT 9, CONCAT('new', seq), 1, '2024-01-01 00:00:00', NULL, NULL
         FROM seq_1_to_25",
    );
    assert_success(&job.archiver("run", &[]), "a new run");
    let all = records(&job);
    let run_2: Vec<u64> = all
        .iter()
        .skip_while(|(n, e)| !(n == "RunStarted" && e["run_id"] == 2))
        .filter(|(n, _)| n == "BatchPlanned")
        .map(|(_, e)| e["rows_planned"].as_u64().unwrap())
        .collect();
    assert_eq!(
        run_2,
        [10, 10, 5],
        "run 2 plans with the job file's batch_rows"
    );
}

/// `ctl` with no running job says so and exits non-zero, whether the socket is missing or left
/// behind by a killed run (nobody listens); `run` replaces such a leftover and removes its own
/// socket at exit.
#[test]
fn ctl_without_a_running_job_is_a_clear_error_and_a_leftover_socket_is_replaced() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "ctlnone", 300);
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    let job = Job::new(&sandbox, &db, MIXED_PREDICATE, "batch_rows = 100");
    let socket = job.wal_dir.join("control.sock");
    for args in [
        &["status"][..],
        &["pause"],
        &["set", "batch_rows=5"],
        &["stop"],
    ] {
        let output = ctl(&job, args);
        assert_exit(&output, 1, &format!("ctl {args:?} with no log at all"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("no running job for"), "{stderr}");
        assert!(
            stderr.contains(&job.config.display().to_string()),
            "{stderr}"
        );
    }
    // Usage: settings go with set only.
    assert_exit(
        &ctl(&job, &["pause", "batch_rows=5"]),
        64,
        "pause with settings",
    );
    assert_exit(&ctl(&job, &["set"]), 64, "set without settings");

    // A socket file left behind, nobody listening (a run killed with -9 leaves one).
    assert_success(&job.archiver("run", &[]), "first run");
    assert!(!socket.exists(), "removed at exit");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let output = ctl(&job, &["status"]);
    assert_exit(&output, 1, "ctl status with a leftover socket");
    assert!(String::from_utf8_lossy(&output.stderr).contains("nobody listens"));
    db.exec(
        "INSERT INTO src SELECT 9, CONCAT('late', seq), 1, '2024-01-01 00:00:00', NULL, NULL
         FROM seq_1_to_7",
    );
    assert_success(&job.archiver("run", &[]), "a run over the leftover socket");
    assert!(
        !socket.exists(),
        "the leftover was replaced, then removed at exit"
    );
    let archived: u64 = db.query_scalar("SELECT COUNT(*) FROM arch");
    assert_eq!(archived, matching + 7);
}
