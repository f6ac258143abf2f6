//! `[hooks]` (issue 9, item 5): commands run on start, success, failure, conflict and stop, each
//! against a real run on the sandbox. Every hook here writes what it was given (its environment
//! with `env -0`, its stdin) to files the test reads back and compares with what the run did:
//! the source's decrease, the WAL's records, the exit code. A hook that fails, hangs or cannot
//! be started changes nothing of the run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::*;
use crate::common::toml_string;

/// A job moving `src` to `arch` in `db` with `job_extra` in `[job]` and `hooks` as `[hooks]`.
fn hooks_job(sandbox: &Sandbox, db: &TestDb, job_extra: &str, hooks: &str) -> Job {
    Job::new(
        sandbox,
        db,
        MIXED_PREDICATE,
        &format!("{job_extra}\n\n[hooks]\n{hooks}"),
    )
}

/// A shell command that records its hook's environment and stdin as `DIR/$ARCHIVER_HOOK.env`
/// and `.json`, and appends the hook's name to `DIR/order`.
fn recorder(dir: &Path) -> String {
    let d = dir.display();
    toml_string(&format!(
        "env -0 > \"{d}/$ARCHIVER_HOOK.env\"; cat > \"{d}/$ARCHIVER_HOOK.json\"; echo \"$ARCHIVER_HOOK\" >> \"{d}/order\""
    ))
}

/// The environment a hook recorded with `env -0`.
fn recorded_env(dir: &Path, hook: &str) -> BTreeMap<String, String> {
    let path = dir.join(format!("{hook}.env"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    String::from_utf8(bytes)
        .unwrap()
        .split('\0')
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (name, value) = entry.split_once('=').unwrap();
            (name.to_string(), value.to_string())
        })
        .collect()
}

/// The JSON summary a hook read on stdin.
fn recorded_json(dir: &Path, hook: &str) -> serde_json::Value {
    let path = dir.join(format!("{hook}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The hooks that ran, in order.
fn order(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("order"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// `BatchDeleted` records in the job's WAL.
fn batches_done(job: &Job) -> u64 {
    job.events()
        .iter()
        .filter(|(name, _)| name == "BatchDeleted")
        .count() as u64
}

/// Asserts that `env` and `json` both say `name` = `value` (`ARCHIVER_NAME` in the env).
fn assert_told(env: &BTreeMap<String, String>, json: &serde_json::Value, name: &str, value: u64) {
    let var = format!("ARCHIVER_{}", name.to_uppercase());
    assert_eq!(env.get(&var), Some(&value.to_string()), "{var}: {env:?}");
    assert_eq!(json[name].as_u64(), Some(value), "{name}: {json}");
}

/// on_start and on_success are told what the run did: the rows it moved (the source's
/// decrease), those already archived, the batches (the WAL's `BatchDeleted` records), the run,
/// the outcome and exit code, the job; in the environment and in a JSON summary on stdin that
/// parses. One hook is a shell string, the other an argv array.
#[test]
fn hooks_are_told_what_the_run_did() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "hooktell", 1_000);
    let original = db.checksum("src");
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    db.exec("INSERT INTO arch SELECT * FROM src WHERE code LIKE 'c1_'");
    let identical: u64 = db.query_scalar("SELECT COUNT(*) FROM arch");
    let src_before: u64 = db.query_scalar("SELECT COUNT(*) FROM src");
    let out = tempfile::tempdir().unwrap();
    let d = out.path().display().to_string();
    let argv = [
        "/bin/sh",
        "-c",
        "env -0 > \"$1/$ARCHIVER_HOOK.env\"; cat > \"$1/$ARCHIVER_HOOK.json\"",
        "hook",
        &d,
    ]
    .map(toml_string)
    .join(", ");
    let hooks = format!(
        "on_start = {}\non_success = [{argv}]\n",
        recorder(out.path())
    );
    let job = hooks_job(&sandbox, &db, "batch_rows = 100", &hooks);

    let output = job.archiver("run", &[]);
    assert_success(&output, "run with hooks");
    let src_after: u64 = db.query_scalar("SELECT COUNT(*) FROM src");
    let moved = src_before - src_after;
    assert_eq!(moved, matching);
    let archived: u64 = db.query_scalar("SELECT COUNT(*) FROM arch");
    assert_eq!(archived, matching);
    // The identical copies were archived already and their source rows deleted.
    assert_eq!(db.checksum_union("src", "arch"), original);

    let env = recorded_env(out.path(), "on_success");
    let json = recorded_json(out.path(), "on_success");
    assert_told(&env, &json, "rows_archived", moved);
    assert_told(&env, &json, "rows_already_archived", identical);
    assert_told(&env, &json, "batches", batches_done(&job));
    assert_told(&env, &json, "conflicts", 0);
    assert_told(&env, &json, "run_id", 1);
    assert_told(&env, &json, "exit_code", 0);
    let expect = [
        ("ARCHIVER_HOOK", "on_success"),
        ("ARCHIVER_OUTCOME", "done"),
        ("ARCHIVER_JOB", "job"),
    ];
    for (name, value) in expect {
        assert_eq!(env.get(name).map(String::as_str), Some(value), "{env:?}");
    }
    assert_eq!(
        env.get("ARCHIVER_WAL_DIR"),
        Some(&job.wal_dir.display().to_string())
    );
    assert_eq!(
        env.get("ARCHIVER_JOB_FILE"),
        Some(&job.config.display().to_string())
    );
    assert!(!env.contains_key("ARCHIVER_ERROR"), "{env:?}");
    assert_eq!(json["hook"], "on_success");
    assert_eq!(json["outcome"], "done");
    assert_eq!(json["error"], serde_json::Value::Null);
    assert_eq!(json["job"]["name"], "job");
    assert_eq!(json["job"]["source"]["table"], "src");
    assert_eq!(json["job"]["source"]["schema"], db.name());
    assert_eq!(json["job"]["archive"]["table"], "arch");
    assert_eq!(json["job"]["predicate"], MIXED_PREDICATE);
    assert!(
        json["elapsed_s"].as_f64().is_some_and(|s| s >= 0.0),
        "{json}"
    );

    // on_start: the run it is about to start, nothing moved yet, no outcome.
    let env = recorded_env(out.path(), "on_start");
    let json = recorded_json(out.path(), "on_start");
    assert_eq!(
        env.get("ARCHIVER_HOOK").map(String::as_str),
        Some("on_start")
    );
    assert_told(&env, &json, "run_id", 1);
    assert_told(&env, &json, "rows_archived", 0);
    assert_told(&env, &json, "batches", 0);
    assert!(!env.contains_key("ARCHIVER_OUTCOME"), "{env:?}");
    assert!(!env.contains_key("ARCHIVER_EXIT_CODE"), "{env:?}");
    assert_eq!(json["outcome"], serde_json::Value::Null);
    assert_eq!(
        order(out.path()),
        ["on_start"],
        "the argv hook does not append"
    );
}

/// A password reaches no hook: the job connects as a user with a distinctive password given
/// through `password_env`; the variable is not in any hook's environment and the password is
/// in nothing a hook was given. And `on_start`, which runs while this process holds the WAL's
/// lock, inherits no descriptor of ours: none of its open files is in the WAL directory (the
/// `LOCK` file, a segment) and none is a socket (a database connection); `flock -n` on `LOCK`
/// fails in it, so the lock was held while it ran.
#[test]
fn a_hook_never_sees_a_password_nor_a_descriptor_of_the_log() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "hooksecret", 500);
    let user = format!("u{}", &db.name()[db.name().len().saturating_sub(12)..]);
    let password = "Hook-Pw-7f3c1e9a-distinct";
    db.exec(&format!(
        "CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'"
    ));
    db.exec(&format!(
        "GRANT ALL ON `{}`.* TO '{user}'@'127.0.0.1'",
        db.name()
    ));
    db.exec(&format!(
        "GRANT BINLOG MONITOR, PROCESS ON *.* TO '{user}'@'127.0.0.1'"
    ));
    let out = tempfile::tempdir().unwrap();
    let d = out.path().display();
    let start = toml_string(&format!(
        "for f in /proc/$$/fd/*; do readlink \"$f\"; done > \"{d}/start.fds\"; \
         if flock -n \"$ARCHIVER_WAL_DIR/LOCK\" true; then echo free; else echo held; fi > \"{d}/start.lock\"; \
         env -0 > \"{d}/on_start.env\"; cat > \"{d}/on_start.json\""
    ));
    let hooks = format!(
        "on_start = {start}\non_success = {}\non_failure = {}\n",
        recorder(out.path()),
        recorder(out.path())
    );
    let job = hooks_job(&sandbox, &db, "batch_rows = 100", &hooks);
    let text = std::fs::read_to_string(&job.config)
        .unwrap()
        .replace("mysql://archiver@", &format!("mysql://{user}@"))
        .replace(
            "password_env = \"ARCHIVER_PASSWORD\"",
            "password_env = \"HOOK_TEST_DB_PW\"",
        );
    std::fs::write(&job.config, text).unwrap();

    let output = job
        .command("run")
        .env("HOOK_TEST_DB_PW", password)
        .output()
        .unwrap();
    let _ = db.try_exec(&format!("DROP USER '{user}'@'127.0.0.1'"));
    assert_success(&output, "run as the user with the distinctive password");
    assert_eq!(order(out.path()), ["on_success"]);
    for name in [
        "on_start.env",
        "on_start.json",
        "on_success.env",
        "on_success.json",
    ] {
        let bytes = std::fs::read(out.path().join(name)).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(password),
            "{name} holds the password: {text}"
        );
        assert!(
            !text.contains("HOOK_TEST_DB_PW"),
            "{name} names the password's variable"
        );
        assert!(
            text.contains("ARCHIVER_") || text.contains("\"hook\""),
            "{name} was written: {text}"
        );
    }
    let fds = std::fs::read_to_string(out.path().join("start.fds")).unwrap();
    assert!(
        fds.lines().count() >= 3,
        "the hook listed its descriptors: {fds}"
    );
    let wal_dir = job.wal_dir.display().to_string();
    for target in fds.lines() {
        assert!(
            !target.contains(&wal_dir),
            "on_start inherited {target}: {fds}"
        );
        assert!(
            !target.starts_with("socket:"),
            "on_start inherited {target}: {fds}"
        );
    }
    let lock = std::fs::read_to_string(out.path().join("start.lock")).unwrap();
    assert_eq!(
        lock.trim(),
        "held",
        "the run held the WAL lock while on_start ran"
    );
}

/// Hooks that fail change nothing: `on_start` exits 7, `on_success` names a program that does
/// not exist. Both are reported with what happened; the run still exits 0, every row moved,
/// and the WAL holds the records of a plain run, no failure among them.
#[test]
fn failing_hooks_are_reported_and_change_nothing() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "hookfail", 1_000);
    let original = db.checksum("src");
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    let hooks = "on_start = \"echo about to fail >&2; exit 7\"\non_success = [\"/nonexistent/archiver-hook\", \"x\"]\n";
    let job = hooks_job(&sandbox, &db, "batch_rows = 100", hooks);

    let output = job.archiver("run", &[]);
    assert_success(&output, "run whose hooks fail");
    assert_moved(&mut db, MIXED_PREDICATE, original, matching);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("hook on_start: about to fail"),
        "its output, prefixed: {stderr}"
    );
    assert!(stderr.contains("hook on_start failed"), "{stderr}");
    assert!(stderr.contains("exit status 7"), "{stderr}");
    assert!(
        stderr.contains("hook on_success could not be started"),
        "{stderr}"
    );
    assert!(stderr.contains("unchanged"), "{stderr}");
    assert!(stderr.contains("archiver: done: moved"), "{stderr}");
    let names = job.event_names();
    assert!(!names.iter().any(|n| n == "BatchFailed"), "{names:?}");
    assert_eq!(names.first().map(String::as_str), Some("LogCreated"));
    assert_eq!(names.last().map(String::as_str), Some("RunFinished"));
    assert_eq!(batches_done(&job), matching.div_ceil(100));
}

/// Under `--log-format json` a hook's output is JSON log lines like every other line of
/// stderr (target `archiver::hook`, with the hook and the stream), and so are the reports of a
/// failing hook.
#[test]
fn hook_output_is_json_lines_under_log_format_json() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "hookjson", 300);
    let original = db.checksum("src");
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    let hooks =
        "on_start = \"echo 'said \\\"hello\\\"'; echo to-stderr >&2\"\non_success = \"exit 5\"\n";
    let job = hooks_job(&sandbox, &db, "batch_rows = 100", hooks);
    let output = job.archiver("run", &["--log-format", "json"]);
    assert_success(&output, "run --log-format json with hooks");
    assert_moved(&mut db, MIXED_PREDICATE, original, matching);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line:?}"))
        })
        .collect();
    let hook_line = |stream: &str| {
        lines
            .iter()
            .find(|l| l["target"] == "archiver::hook" && l["stream"] == stream)
            .unwrap_or_else(|| panic!("no {stream} line of the hook: {stderr}"))
    };
    let out = hook_line("stdout");
    assert_eq!(out["hook"], "on_start", "{out}");
    assert_eq!(out["message"], "said \"hello\"", "{out}");
    assert_eq!(hook_line("stderr")["message"], "to-stderr");
    assert!(
        lines.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.contains("hook on_success failed") && m.contains("exit status 5"))),
        "{stderr}"
    );
}

/// The pid a hook wrote to `path`, once it is there.
fn pid_in(path: &Path) -> u32 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap()
}

/// Whether process `pid` is gone (or a zombie no one reaps: it runs nothing any more).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Hooks that hang past `timeout_s` are killed with their whole process group: `on_start`
/// sleeps (SIGTERM ends it), `on_success` ignores SIGTERM in the shell and in the `sleep` it
/// started (SIGKILL after the grace ends both). Each is reported; the run ends normally with
/// every row moved, and the sleeps are gone.
#[test]
fn hooks_that_hang_are_killed_with_their_process_group() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "hookhang", 1_000);
    let original = db.checksum("src");
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    let out = tempfile::tempdir().unwrap();
    let d = out.path().display();
    let start = toml_string(&format!("sleep 600 & echo $! > \"{d}/start.pid\"; wait"));
    let success = toml_string(&format!(
        "trap '' TERM; sleep 600 & echo $! > \"{d}/success.pid\"; echo $$ > \"{d}/shell.pid\"; wait; wait"
    ));
    let hooks = format!("timeout_s = 1\non_start = {start}\non_success = {success}\n");
    let job = hooks_job(&sandbox, &db, "batch_rows = 100", &hooks);

    let output = job.archiver("run", &[]);
    assert_success(&output, "run whose hooks hang");
    assert_moved(&mut db, MIXED_PREDICATE, original, matching);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("hook on_start ran longer than [hooks] timeout_s = 1 s; its process group was killed (SIGTERM)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hook on_success ran longer than [hooks] timeout_s = 1 s; its process group was killed (SIGTERM, then SIGKILL after 2000 ms)"),
        "{stderr}"
    );
    let pids = ["start.pid", "success.pid", "shell.pid"].map(|name| pid_in(&out.path().join(name)));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pids.iter().all(|&pid| gone(pid)) {
        assert!(
            Instant::now() < deadline,
            "a hook's process outlived its kill: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `on_stop` runs when the run stops early: `on_start` itself asks for the stop with the flag
/// file beside the job file, so the run stops before its first step (exit 2, nothing moved),
/// and `on_stop` is told so. The next run, without the flag, moves everything and `on_success`
/// is told this invocation's rows.
#[test]
fn on_stop_runs_when_the_run_stops_early() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "hookstop", 1_000);
    let original = db.checksum("src");
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    let out = tempfile::tempdir().unwrap();
    let d = out.path().display();
    let start = toml_string(&format!(
        "[ -e \"{d}/stopped-once\" ] || {{ touch \"{d}/stopped-once\" \"$ARCHIVER_JOB_FILE.stop\"; }}"
    ));
    let hooks = format!(
        "on_start = {start}\non_stop = {r}\non_success = {r}\n",
        r = recorder(out.path())
    );
    let job = hooks_job(&sandbox, &db, "batch_rows = 100", &hooks);

    let output = job.archiver("run", &[]);
    assert_exit(&output, 2, "stopped by the flag file on_start created");
    let env = recorded_env(out.path(), "on_stop");
    let json = recorded_json(out.path(), "on_stop");
    assert_eq!(
        env.get("ARCHIVER_OUTCOME").map(String::as_str),
        Some("stopped")
    );
    assert_told(&env, &json, "exit_code", 2);
    assert_told(&env, &json, "rows_archived", 0);
    let archived: u64 = db.query_scalar("SELECT COUNT(*) FROM arch");
    assert_eq!(archived, 0);

    let stop = PathBuf::from(format!("{}.stop", job.config.display()));
    std::fs::remove_file(&stop).unwrap();
    let output = job.archiver("run", &[]);
    assert_success(&output, "the next run");
    assert_moved(&mut db, MIXED_PREDICATE, original, matching);
    let env = recorded_env(out.path(), "on_success");
    let json = recorded_json(out.path(), "on_success");
    assert_told(&env, &json, "rows_archived", matching);
    assert_told(&env, &json, "exit_code", 0);
    assert_eq!(order(out.path()), ["on_stop", "on_success"]);
}

/// `on_failure` runs when the run fails. A refusal counts (exit 64, outcome `refused`): the
/// archive table is missing, the pre-flight refuses, `on_start` never runs, and `on_failure`
/// is told the error. A failure during the run (exit 1, outcome `failed`): `on_start` drops
/// the archive table, the first batch fails with a fatal error.
#[test]
fn on_failure_runs_when_the_run_fails_or_is_refused() {
    let sandbox = common::sandbox();
    let mut db = sandbox.fresh_database("hookrefuse");
    create_mixed(&mut db, "src", 200);
    let out = tempfile::tempdir().unwrap();
    let hooks = format!(
        "on_start = {r}\non_failure = {r}\non_success = {r}\n",
        r = recorder(out.path())
    );
    let job = hooks_job(&sandbox, &db, "batch_rows = 100", &hooks);
    let output = job.archiver("run", &[]);
    assert_exit(&output, 64, "refused: no archive table");
    assert_eq!(order(out.path()), ["on_failure"]);
    let env = recorded_env(out.path(), "on_failure");
    let json = recorded_json(out.path(), "on_failure");
    assert_eq!(
        env.get("ARCHIVER_OUTCOME").map(String::as_str),
        Some("refused")
    );
    assert_told(&env, &json, "exit_code", 64);
    let error = json["error"].as_str().unwrap_or_default();
    assert!(error.contains("arch"), "the error names the table: {json}");
    assert_eq!(env.get("ARCHIVER_ERROR").map(String::as_str), Some(error));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(error),
        "the same message archiver printed: {stderr}"
    );

    // A failure during the run.
    db.exec("CREATE TABLE arch LIKE src");
    std::fs::remove_file(out.path().join("order")).unwrap();
    let drop = toml_string(&format!(
        "mariadb --protocol=tcp -h 127.0.0.1 -P {} -u archiver -p{} {} -e 'DROP TABLE arch'",
        sandbox.port(),
        sandbox.password(),
        db.name()
    ));
    let text = std::fs::read_to_string(&job.config).unwrap().replace(
        &format!("on_start = {}", recorder(out.path())),
        &format!("on_start = {drop}"),
    );
    std::fs::write(&job.config, text).unwrap();
    let output = job.archiver("run", &[]);
    assert_exit(&output, 1, "the archive table went away during the run");
    assert_eq!(order(out.path()), ["on_failure"]);
    let env = recorded_env(out.path(), "on_failure");
    let json = recorded_json(out.path(), "on_failure");
    assert_eq!(
        env.get("ARCHIVER_OUTCOME").map(String::as_str),
        Some("failed")
    );
    assert_told(&env, &json, "exit_code", 1);
    assert_told(&env, &json, "run_id", 1);
    assert_told(&env, &json, "rows_archived", 0);
    assert!(
        json["error"].as_str().is_some_and(|e| e.contains("arch")),
        "{json}"
    );
}

/// `on_conflict` runs when the run found conflicts, told how many rows were kept, and then the
/// end hook (`on_success`, outcome `attention`, exit 3).
#[test]
fn on_conflict_runs_before_the_end_hook() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "hookconflict", 1_000);
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    db.exec("INSERT INTO arch SELECT tenant, code, amount + 1, happened, label, payload FROM src WHERE code IN ('c301','c302','c303','c305','c306') AND amount IS NOT NULL");
    let differing: u64 = db.query_scalar("SELECT COUNT(*) FROM arch");
    assert!(differing > 0);
    let out = tempfile::tempdir().unwrap();
    let hooks = format!(
        "on_start = {r}\non_conflict = {r}\non_success = {r}\non_failure = {r}\n",
        r = recorder(out.path())
    );
    let job = hooks_job(&sandbox, &db, "batch_rows = 100", &hooks);

    let output = job.archiver("run", &[]);
    assert_exit(&output, 3, "conflicts need attention");
    let kept: u64 = db.query_scalar(&format!("SELECT COUNT(*) FROM src WHERE {MIXED_PREDICATE}"));
    assert_eq!(kept, differing);
    assert_eq!(order(out.path()), ["on_start", "on_conflict", "on_success"]);
    for hook in ["on_conflict", "on_success"] {
        let env = recorded_env(out.path(), hook);
        let json = recorded_json(out.path(), hook);
        assert_eq!(
            env.get("ARCHIVER_OUTCOME").map(String::as_str),
            Some("attention")
        );
        assert_told(&env, &json, "conflicts", differing);
        assert_told(&env, &json, "exit_code", 3);
        assert_told(&env, &json, "rows_archived", matching - differing);
    }
}

/// A run that fails after moving some batches: `on_failure` is told the rows it moved before
/// the error (read back from the log), which are the source's decrease. An archive trigger
/// writes into a table that does not exist when it meets one row: a fatal error (exit 1).
#[test]
fn on_failure_is_told_what_the_run_did_before_it_failed() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "hookfailmid", 1_000);
    db.exec(
        "CREATE TRIGGER boom BEFORE INSERT ON arch FOR EACH ROW
         IF NEW.code = 'c501' THEN INSERT INTO nowhere VALUES (1); END IF",
    );
    let src_before: u64 = db.query_scalar("SELECT COUNT(*) FROM src");
    let out = tempfile::tempdir().unwrap();
    let hooks = format!(
        "on_failure = {r}\non_success = {r}\n\n[safety]\nallow_triggers = [\"boom\"]\n",
        r = recorder(out.path())
    );
    let job = hooks_job(&sandbox, &db, "batch_rows = 100", &hooks);

    let output = job.archiver("run", &[]);
    assert_exit(&output, 1, "the trigger's missing table stops the run");
    let src_after: u64 = db.query_scalar("SELECT COUNT(*) FROM src");
    let moved = src_before - src_after;
    assert!(moved > 0, "batches before the failing one moved rows");
    assert_eq!(order(out.path()), ["on_failure"]);
    let env = recorded_env(out.path(), "on_failure");
    let json = recorded_json(out.path(), "on_failure");
    assert_eq!(
        env.get("ARCHIVER_OUTCOME").map(String::as_str),
        Some("failed")
    );
    assert_told(&env, &json, "exit_code", 1);
    assert_told(&env, &json, "run_id", 1);
    assert_told(&env, &json, "rows_archived", moved);
    assert_told(&env, &json, "batches", batches_done(&job));
    assert!(
        json["error"]
            .as_str()
            .is_some_and(|e| e.contains("nowhere")),
        "{json}"
    );
    // What the run appended after its last durable record is in the log too: the invocation's
    // `RunPaused`, buffered after the failing batch's `BatchFailed` was synced, is only there
    // if the failing run synced before returning its error.
    let names = job.event_names();
    let failed = names.iter().rposition(|n| n == "BatchFailed");
    let paused = names.iter().rposition(|n| n == "RunPaused");
    assert!(
        failed.is_some() && paused > failed,
        "RunPaused after the last BatchFailed: {names:?}"
    );
}
