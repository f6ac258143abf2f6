//! Bad input: each case gets a clear message, a non-zero exit code, and no change to either
//! table (and no WAL written when the job never passed pre-flight).

use super::*;

struct Case {
    /// What is wrong.
    name: &'static str,
    /// Changes to the database before the run.
    setup: &'static [&'static str],
    /// (from, to) replacements in the job file.
    edit: &'static [(&'static str, &'static str)],
    /// Extra environment.
    env: &'static [(&'static str, &'static str)],
    /// Expected exit code.
    code: i32,
    /// Expected fragments of stderr.
    message: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "unknown config key",
        setup: &[],
        edit: &[("[job]\n", "[job]\nbatchrows = 10\n")],
        env: &[],
        code: 64,
        message: &["unknown field `batchrows`"],
    },
    Case {
        name: "missing source table",
        setup: &[],
        edit: &[("table = \"src\"", "table = \"nope\"")],
        env: &[],
        code: 64,
        message: &["source table", ".nope does not exist"],
    },
    Case {
        name: "missing archive table",
        setup: &[],
        edit: &[("table = \"arch\"", "table = \"nope\"")],
        env: &[],
        code: 64,
        message: &["archive table", "does not exist", "CREATE TABLE"],
    },
    Case {
        name: "table without primary key",
        setup: &["CREATE TABLE nopk (id INT, created_at DATETIME)", "CREATE TABLE nopk_arch LIKE nopk"],
        edit: &[("table = \"src\"", "table = \"nopk\""), ("table = \"arch\"", "table = \"nopk_arch\"")],
        env: &[],
        code: 64,
        message: &["has no primary key"],
    },
    Case {
        name: "archive column mismatch",
        setup: &["ALTER TABLE arch MODIFY amount DECIMAL(10,2) NULL, DROP COLUMN label, ADD COLUMN extra INT"],
        edit: &[],
        env: &[],
        code: 64,
        message: &[
            "column `amount` is decimal(12,2) in the source but decimal(10,2) in the archive",
            "column `label` is missing in the archive",
            "column `extra` exists in the archive but not in the source",
        ],
    },
    Case {
        name: "invalid predicate",
        setup: &[],
        edit: &[("where = \"happened", "where = \"no_such_column > 1 AND happened")],
        env: &[],
        code: 64,
        message: &["is not a valid predicate", "no_such_column"],
    },
    Case {
        name: "wrong password",
        setup: &[],
        edit: &[],
        env: &[("ARCHIVER_PASSWORD", "not-the-password")],
        code: 64,
        message: &["Access denied"],
    },
    Case {
        name: "password variable not set",
        setup: &[],
        edit: &[("password_env = \"ARCHIVER_PASSWORD\"", "password_env = \"ARCHIVER_NO_SUCH_VAR\"")],
        env: &[],
        code: 64,
        message: &["ARCHIVER_NO_SUCH_VAR, which is not set"],
    },
    Case {
        name: "password in the url",
        setup: &[],
        edit: &[("mysql://archiver@", "mysql://archiver:archiver-pw@")],
        env: &[],
        code: 64,
        message: &["url contains a password"],
    },
    Case {
        name: "missing database",
        setup: &[],
        edit: &[("\"\npassword_env", "_gone\"\npassword_env")],
        env: &[],
        code: 64,
        message: &["cannot connect to 127.0.0.1:", "Unknown database"],
    },
    Case {
        name: "TLS asked in the url instead of tls_mode",
        setup: &[],
        edit: &[("\"\npassword_env", "?require_ssl=true\"\npassword_env")],
        env: &[],
        code: 64,
        message: &["url parameter \"require_ssl\" is refused", "tls_mode"],
    },
    Case {
        name: "url parameter the job does not know",
        setup: &[],
        edit: &[("\"\npassword_env", "?prefer_socket=false&ssl-mode=REQUIRED&pool_max=2\"\npassword_env")],
        env: &[],
        code: 64,
        message: &["\"ssl-mode\" is refused: it is not a parameter", "\"pool_max\" is refused"],
    },
    Case {
        name: "url of another scheme, with a password",
        setup: &[],
        edit: &[("mysql://archiver@", "postgres://archiver:archiver-pw@")],
        env: &[],
        code: 64,
        message: &["must start with mysql://", "postgres://archiver:***@127.0.0.1:"],
    },
    Case {
        name: "url that is not a url, with a password",
        setup: &[],
        edit: &[("mysql://archiver@127.0.0.1:", "mysql://archiver:archiver-pw@127.0.0.1:port")],
        env: &[],
        code: 64,
        message: &["url contains a password"],
    },
    Case {
        name: "unreachable server",
        setup: &[],
        edit: &[("@127.0.0.1:", "@127.0.0.1:1"), ("[job]\n", "[job]\nreconnect_timeout_s = 1\n")],
        env: &[],
        code: 1,
        message: &["cannot connect to 127.0.0.1:1"],
    },
];

#[test]
fn bad_input_is_refused_clearly_and_changes_nothing() {
    let sandbox = common::sandbox();
    for case in CASES {
        let mut db = mixed_db(&sandbox, "bad", 300);
        for sql in case.setup {
            db.exec(sql);
        }
        let source_before = db.checksum("src");
        let archive_before = db.checksum("arch");
        let job = Job::new(&sandbox, &db, MIXED_PREDICATE, "");
        let mut text = std::fs::read_to_string(&job.config).unwrap();
        for (from, to) in case.edit {
            assert!(
                text.contains(from),
                "{}: job file lacks {from:?}",
                case.name
            );
            text = text.replacen(from, to, 1);
        }
        std::fs::write(&job.config, text).unwrap();
        // The dry run refuses what the run refuses, with the same code and message.
        for args in [&["--dry-run"][..], &[][..]] {
            let mut command = job.command("run");
            command.args(args);
            for (key, value) in case.env {
                command.env(key, value);
            }
            let output = command.output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(
                output.status.code(),
                Some(case.code),
                "{} {args:?}: {stderr}",
                case.name
            );
            for fragment in case.message {
                assert!(
                    stderr.contains(fragment),
                    "{}: expected {fragment:?} in {stderr}",
                    case.name
                );
            }
            // One line, or a refusal listing several findings, one indented line each.
            let extra_lines = stderr.lines().skip(1).collect::<Vec<_>>();
            assert!(
                extra_lines.is_empty()
                    || (stderr.contains("refused before any row moves")
                        && extra_lines.iter().all(|l| l.starts_with("  - "))),
                "{}: one line, or a list of findings: {stderr}",
                case.name
            );
            assert!(
                !stderr.contains("archiver-pw"),
                "{}: password leaked: {stderr}",
                case.name
            );
        }
        assert_eq!(
            db.checksum("src"),
            source_before,
            "{}: source changed",
            case.name
        );
        assert_eq!(
            db.checksum("arch"),
            archive_before,
            "{}: archive changed",
            case.name
        );
        assert!(!job.wal_dir.exists(), "{}: a WAL was written", case.name);
    }
}

#[test]
fn wal_of_another_job_is_refused() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "otherjob", 300);
    let first = Job::new(&sandbox, &db, MIXED_PREDICATE, "");
    assert_success(&first.archiver("run", &[]), "first job");
    // A second job (another predicate) pointed at the first job's WAL directory.
    db.exec("DROP TABLE src");
    create_mixed(&mut db, "src", 300);
    let before = db.checksum("src");
    let other = Job::new(&sandbox, &db, "amount > 100", "");
    let text = std::fs::read_to_string(&other.config).unwrap().replace(
        &other.wal_dir.display().to_string(),
        &first.wal_dir.display().to_string(),
    );
    std::fs::write(&other.config, text).unwrap();
    let wal_before = dir_bytes(&first.wal_dir);
    let output = other.archiver("run", &[]);
    assert_exit(&output, 64, "other job");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("belongs to another job"), "{stderr}");
    assert!(stderr.contains("where predicate"), "{stderr}");
    assert_eq!(db.checksum("src"), before);
    assert_eq!(
        dir_bytes(&first.wal_dir),
        wal_before,
        "the other job's WAL is untouched"
    );
}

#[test]
fn second_concurrent_run_is_refused() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "twice", 2_000);
    // A slow first run: 10 rows a batch, 200 ms between batches.
    let job = Job::new(
        &sandbox,
        &db,
        MIXED_PREDICATE,
        "batch_rows = 10\nsleep_ms = 200",
    );
    let mut first = job
        .command("run")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the first run holds the lock (its log exists and has a run).
    let started = std::time::Instant::now();
    while !job.wal_dir.join("LOCK").exists()
        || job.events().iter().all(|(t, _)| t != "BatchPlanned")
    {
        assert!(started.elapsed().as_secs() < 30, "first run did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let output = job.archiver("run", &[]);
    assert_exit(&output, 75, "second run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("lock"), "{stderr}");
    // reset and compact are refused too while the run is active; status works.
    assert_exit(
        &job.archiver("reset", &["--failed"]),
        75,
        "reset during a run",
    );
    let compact = common::archiver_cmd()
        .args(["compact", "--wal-dir"])
        .arg(&job.wal_dir)
        .output()
        .unwrap();
    assert_exit(&compact, 75, "compact during a run");
    assert!(
        String::from_utf8_lossy(&compact.stderr).contains("holds the WAL lock"),
        "{compact:?}"
    );
    let status = job.status();
    assert!(
        status["runs"].as_array().is_some_and(|r| !r.is_empty()),
        "{status}"
    );
    // SIGTERM: the first run finishes its batch and stops with "work left".
    unsafe {
        libc::kill(first.id() as i32, libc::SIGTERM);
    }
    let code = first.wait().unwrap().code();
    assert_eq!(code, Some(2), "stopped early with work left");
    let output = job.archiver("run", &[]);
    assert_success(&output, "resumed run");
    let left: u64 = db.query_scalar(&format!("SELECT COUNT(*) FROM src WHERE {MIXED_PREDICATE}"));
    assert_eq!(left, 0);
}

/// Every file's bytes in a directory, by name.
pub fn dir_bytes(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// `status`, `replay` and `reset` never connect, so they work where the job's password is not
/// available (an operator's shell rather than cron's environment); `run` still refuses, 64.
#[test]
fn status_replay_and_reset_need_no_password() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "nopw", 300);
    // The archive refuses one row, so the log holds a parked batch for reset to act on.
    db.exec(
        "CREATE TRIGGER refuse_one BEFORE INSERT ON arch FOR EACH ROW
         IF NEW.code = 'c12' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by test'; END IF",
    );
    let job = Job::new(
        &sandbox,
        &db,
        MIXED_PREDICATE,
        "batch_rows = 20\nattempts_max = 1\n\n[safety]\nallow_triggers = [\"refuse_one\"]",
    );
    assert_exit(&job.archiver("run", &[]), 3, "run with a parked batch");
    let source_before = db.checksum("src");
    let archive_before = db.checksum("arch");
    let wal_before = dir_bytes(&job.wal_dir);

    let without_password = |args: &[&str]| {
        job.command(args[0])
            .args(&args[1..])
            .env_remove("ARCHIVER_PASSWORD")
            .output()
            .unwrap()
    };
    let output = without_password(&["status", "--format", "json"]);
    assert_success(&output, "status without a password");
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        status["problem_batches"].as_array().map(Vec::len),
        Some(1),
        "{status}"
    );
    let output = common::archiver_cmd()
        .env_remove("ARCHIVER_PASSWORD")
        .args(["replay", "--inspect", "--wal-dir"])
        .arg(&job.wal_dir)
        .output()
        .unwrap();
    assert_success(&output, "replay --inspect without a password");
    assert_eq!(
        dir_bytes(&job.wal_dir),
        wal_before,
        "status and inspect only read"
    );

    let output = without_password(&["reset", "--failed"]);
    assert_success(&output, "reset without a password");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("reset 1 batch"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let events = job.events();
    assert_eq!(
        events.iter().filter(|(t, _)| t == "BatchReset").count(),
        1,
        "reset recorded in the WAL"
    );

    // A run needs the password: refused before anything moves, with the variable named.
    let output = without_password(&["run"]);
    assert_exit(&output, 64, "run without a password");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ARCHIVER_PASSWORD, which is not set"),
        "{stderr}"
    );
    assert_eq!(db.checksum("src"), source_before);
    assert_eq!(db.checksum("arch"), archive_before);
    assert_eq!(
        job.events().len(),
        events.len(),
        "a refused run appends nothing"
    );
}
