//! Metrics (`[metrics] textfile`, node_exporter's textfile convention) and `run --statistics`,
//! checked against a real run: the file parsed as node_exporter parses it (classic Prometheus
//! text, every family typed; `GET /metrics` as strict OpenMetrics), its counts equal to what the WAL records and what the tables lost;
//! the last success taken from the WAL's history, not from the previous file; the file
//! replaced atomically, mode 0644 whatever the umask; the statistics adding up.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use openmetrics_parser::{openmetrics, OpenMetricsValue};

use super::*;

/// Every sample of the textfile at `path`, parsed as node_exporter's textfile collector
/// parses it (classic Prometheus text), as [`read_openmetrics`] gives them; every family must
/// have its type (a counter read as untyped lost its type and help on the way).
fn read_metrics(path: &Path) -> HashMap<String, f64> {
    use openmetrics_parser::{prometheus, PrometheusType, PrometheusValue};
    let text = std::fs::read_to_string(path).expect("the metrics file exists");
    let exposition = prometheus::parse_prometheus(&text)
        .unwrap_or_else(|e| panic!("not valid Prometheus text: {e:?}\n{text}"));
    let mut samples = HashMap::new();
    for (name, family) in &exposition.families {
        assert_ne!(
            family.family_type,
            PrometheusType::Unknown,
            "{name} untyped in\n{text}"
        );
        for sample in family.iter_samples() {
            let set = sample.get_labelset().unwrap();
            let series = series_namer(name, set.iter());
            match &sample.value {
                PrometheusValue::Counter(c) => samples.insert(series(""), c.value.as_f64()),
                PrometheusValue::Gauge(n) => samples.insert(series(""), n.as_f64()),
                PrometheusValue::Histogram(h) => {
                    samples.insert(series("_sum"), h.sum.map_or(0.0, |s| s.as_f64()));
                    samples.insert(series("_count"), h.count.unwrap_or(0) as f64)
                }
                other => panic!("unexpected metric type in {name}: {other:?}"),
            };
        }
    }
    samples
}

/// Every sample of the OpenMetrics exposition in `path` (what `GET /metrics` serves), parsed
/// strictly, as `name{label="value",...}` (labels sorted) -> value; a histogram gives
/// `_count` and `_sum`.
fn read_openmetrics(path: &Path) -> HashMap<String, f64> {
    let text = std::fs::read_to_string(path).expect("the metrics file exists");
    let exposition = openmetrics::parse_openmetrics(&text)
        .unwrap_or_else(|e| panic!("not valid OpenMetrics: {e:?}\n{text}"));
    let mut samples = HashMap::new();
    for (name, family) in &exposition.families {
        for sample in family.iter_samples() {
            let set = sample.get_labelset().unwrap();
            let series = series_namer(name, set.iter());
            match &sample.value {
                OpenMetricsValue::Counter(c) => samples.insert(series("_total"), c.value.as_f64()),
                OpenMetricsValue::Gauge(n) => samples.insert(series(""), n.as_f64()),
                OpenMetricsValue::Histogram(h) => {
                    samples.insert(series("_sum"), h.sum.map_or(0.0, |s| s.as_f64()));
                    samples.insert(series("_count"), h.count.unwrap_or(0) as f64)
                }
                other => panic!("unexpected metric type in {name}: {other:?}"),
            };
        }
    }
    samples
}

/// Names the series of family `name` with these labels as the sample maps key them:
/// `name{suffix}{k="v",...}`, labels sorted, no braces without labels.
fn series_namer<K: std::fmt::Display, V: std::fmt::Debug>(
    name: &str,
    labels: impl Iterator<Item = (K, V)>,
) -> impl Fn(&str) -> String + '_ {
    let mut labels: Vec<String> = labels.map(|(k, v)| format!("{k}={v:?}")).collect();
    labels.sort();
    move |suffix: &str| match labels.is_empty() {
        true => format!("{name}{suffix}"),
        false => format!("{name}{suffix}{{{}}}", labels.join(",")),
    }
}

/// The value of `series`, failing with the whole map when it is missing.
fn value(metrics: &HashMap<String, f64>, series: &str) -> f64 {
    *metrics
        .get(series)
        .unwrap_or_else(|| panic!("no {series} in {metrics:#?}"))
}

/// Adds a `[metrics]` table writing `path` to the job file.
fn with_textfile(job: &Job, path: &Path) {
    let mut text = std::fs::read_to_string(&job.config).unwrap();
    text.push_str(&format!(
        "\n[metrics]\ntextfile = {:?}\n",
        path.display().to_string()
    ));
    std::fs::write(&job.config, text).unwrap();
}

/// Runs `archiver run ARGS` under umask 077, so that the file's mode is seen to be set, not
/// inherited.
fn run_under_umask_077(job: &Job, args: &[&str]) -> Output {
    let mut command = job.command("run");
    command.args(args);
    // SAFETY: umask is async-signal-safe and touches nothing but the child's own mask.
    unsafe {
        command.pre_exec(|| {
            libc::umask(0o077);
            Ok(())
        });
    }
    command.output().expect("run archiver")
}

/// Names in `dir`: after any run, only the metrics file itself (no temporary file left).
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Sum of the WAL's segment file sizes (`wal-*.seg`).
fn wal_bytes(wal_dir: &Path) -> u64 {
    std::fs::read_dir(wal_dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// The Unix time, in seconds, of the WAL's last `RunFinished`.
fn last_finished_s(job: &Job) -> f64 {
    let events = job.events();
    let (_, finished) = events
        .iter()
        .rev()
        .find(|(name, _)| name == "RunFinished")
        .expect("a RunFinished record");
    finished["finished_unix_us"].as_i64().unwrap() as f64 / 1e6
}

/// Records of type `name` in the WAL.
fn count_events(job: &Job, name: &str) -> u64 {
    job.events().iter().filter(|(n, _)| n == name).count() as u64
}

/// A real run with one seeded conflict: the textfile says exactly what the WAL records and the
/// tables show (rows archived = rows the WAL says were deleted = what the source lost; batches
/// done; the conflict; the last success = the WAL's `RunFinished`; the WAL's size), is a strict
/// OpenMetrics exposition, mode 0644 under umask 077, with no temporary file left beside it.
#[test]
fn the_textfile_says_what_the_wal_and_the_tables_say() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "metrics", 1_500);
    db.exec("INSERT INTO arch SELECT tenant, code, amount + 1, happened, label, payload FROM src WHERE code = 'c301'");
    let source_before: u64 = db.query_scalar("SELECT COUNT(*) FROM src");
    let job = Job::new(&sandbox, &db, MIXED_PREDICATE, "batch_rows = 100");
    let prom_dir = tempfile::tempdir().unwrap();
    let textfile = prom_dir.path().join("archiver_metrics.prom");
    with_textfile(&job, &textfile);

    let output = run_under_umask_077(&job, &[]);
    assert_exit(&output, 3, "a run with a conflict needs attention");
    let metrics = read_metrics(&textfile);

    let source_after: u64 = db.query_scalar("SELECT COUNT(*) FROM src");
    let moved = source_before - source_after;
    assert!(moved > 500, "the run moved rows: {moved}");
    assert_eq!(
        value(&metrics, "archiver_rows_archived_total"),
        moved as f64
    );
    assert_eq!(job.rows_deleted(), moved, "the WAL says so too");
    let archived: u64 = db.query_scalar("SELECT COUNT(*) FROM arch");
    assert_eq!(
        value(&metrics, "archiver_rows_copied_total"),
        (archived - 1) as f64
    );
    assert_eq!(value(&metrics, "archiver_rows_already_archived_total"), 0.0);
    let done = count_events(&job, "BatchDeleted");
    assert!(done >= 6, "{done} batches");
    assert_eq!(
        value(&metrics, "archiver_batches_total{outcome=\"done\"}"),
        done as f64
    );
    assert_eq!(
        value(&metrics, "archiver_batches_total{outcome=\"failed\"}"),
        0.0
    );
    assert_eq!(value(&metrics, "archiver_conflicts_total"), 1.0);
    assert_eq!(count_events(&job, "ConflictFound"), 1);
    assert_eq!(
        value(&metrics, "archiver_last_success_timestamp_seconds"),
        last_finished_s(&job)
    );
    assert_eq!(value(&metrics, "archiver_run_id"), 1.0);
    assert_eq!(
        value(&metrics, "archiver_outcome{outcome=\"attention\"}"),
        1.0
    );
    assert_eq!(
        value(&metrics, "archiver_outcome{outcome=\"running\"}"),
        0.0
    );
    let bytes = wal_bytes(&job.wal_dir);
    assert!(bytes > 0);
    assert_eq!(value(&metrics, "archiver_wal_bytes"), bytes as f64);
    assert_eq!(
        value(&metrics, "archiver_batch_duration_seconds_count"),
        done as f64,
        "one observation per batch attempt"
    );
    let info = format!(
        "archiver_job_info{{archive=\"{0}.arch\",source=\"{0}.src\"}}",
        db.name()
    );
    assert_eq!(value(&metrics, &info), 1.0);

    let mode = std::fs::metadata(&textfile).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o644,
        "node_exporter's user must read it; umask 077 must not hide it"
    );
    assert_eq!(names_in(prom_dir.path()), ["archiver_metrics.prom"]);
    check_with_promtool(&textfile);
}

/// Where Debian's `promtool` is installed, it parses the file as node_exporter does (the
/// classic text parser): no parse error. Its lint notes (exit 3: counters read as untyped
/// lack help text) are expected and documented. Without promtool, the strict parser above is
/// the check.
fn check_with_promtool(path: &Path) {
    let Ok(output) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(path).unwrap())
        .output()
    else {
        return;
    };
    let said = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(
        matches!(output.status.code(), Some(0 | 3)) && !said.contains("error"),
        "promtool check metrics: {:?} {said}",
        output.status
    );
}

/// The last success comes from the WAL's history: after a successful run, the file is deleted,
/// then a run stopped by its stop file and a run refused by the pre-flight each write it again
/// with the same last success and the same counts, and their own outcome.
#[test]
fn the_last_success_survives_a_stopped_and_a_failed_run() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "metricslast", 600);
    let job = Job::new(&sandbox, &db, MIXED_PREDICATE, "batch_rows = 100");
    let prom_dir = tempfile::tempdir().unwrap();
    let textfile = prom_dir.path().join("archiver_last.prom");
    with_textfile(&job, &textfile);
    assert_success(&job.archiver("run", &[]), "first run");
    let first = read_metrics(&textfile);
    let succeeded = last_finished_s(&job);
    assert_eq!(
        value(&first, "archiver_last_success_timestamp_seconds"),
        succeeded
    );
    assert_eq!(value(&first, "archiver_outcome{outcome=\"done\"}"), 1.0);
    let moved = value(&first, "archiver_rows_archived_total");
    assert_eq!(moved, job.rows_deleted() as f64);

    // Stopped before its first step by the stop file beside the job file.
    std::fs::remove_file(&textfile).unwrap();
    let stop = PathBuf::from(format!("{}.stop", job.config.display()));
    std::fs::write(&stop, "").unwrap();
    assert_exit(&job.archiver("run", &[]), 2, "stopped by the stop file");
    std::fs::remove_file(&stop).unwrap();
    let stopped = read_metrics(&textfile);
    assert_eq!(
        value(&stopped, "archiver_outcome{outcome=\"stopped\"}"),
        1.0
    );
    assert_eq!(
        value(&stopped, "archiver_last_success_timestamp_seconds"),
        succeeded,
        "a stopped run does not advance the last success; it came from the WAL"
    );
    assert_eq!(value(&stopped, "archiver_rows_archived_total"), moved);

    // Refused by the pre-flight: the source table is gone.
    std::fs::remove_file(&textfile).unwrap();
    db.exec("RENAME TABLE src TO src_gone");
    let output = job.archiver("run", &[]);
    assert_exit(&output, 64, "refused: no source table");
    let failed = read_metrics(&textfile);
    assert_eq!(value(&failed, "archiver_outcome{outcome=\"failed\"}"), 1.0);
    assert_eq!(
        value(&failed, "archiver_last_success_timestamp_seconds"),
        succeeded
    );
    assert_eq!(value(&failed, "archiver_rows_archived_total"), moved);
    assert_eq!(
        value(&failed, "archiver_batches_total{outcome=\"done\"}"),
        value(&first, "archiver_batches_total{outcome=\"done\"}")
    );
    assert_eq!(names_in(prom_dir.path()), ["archiver_last.prom"]);
}

/// A textfile in a directory that does not exist refuses the run before anything is done: exit
/// 64, a message naming the file and the key, no WAL, no row moved.
#[test]
fn a_textfile_that_cannot_be_written_refuses_the_run() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "metricsbad", 200);
    let before = db.checksum("src");
    let job = Job::new(&sandbox, &db, MIXED_PREDICATE, "");
    with_textfile(&job, Path::new("/nonexistent-archiver-dir/archiver.prom"));
    let output = job.archiver("run", &[]);
    assert_exit(&output, 64, "refused");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot write the metrics file /nonexistent-archiver-dir/archiver.prom")
            && stderr.contains("[metrics] textfile"),
        "{stderr}"
    );
    assert!(!job.wal_dir.exists(), "nothing written");
    assert_eq!(db.checksum("src"), before);
}

/// One line of `--statistics`: an action's count (None for "-") and seconds.
struct StatLine {
    count: Option<u64>,
    seconds: f64,
}

/// The statistics table printed after "archiver: statistics:" on stderr, by action.
fn statistics(stderr: &str) -> HashMap<String, StatLine> {
    let table = stderr
        .split("archiver: statistics:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no statistics in {stderr}"));
    table
        .lines()
        .skip(1) // the header
        // The totals' line, the batch sizes' line and the overlap note are not actions.
        .filter(|line| {
            !["rows ", "batch rows: ", "overlap: "]
                .iter()
                .any(|prefix| line.starts_with(prefix))
        })
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields.len(), 4, "{line}");
            let stat = StatLine {
                count: fields[1].parse().ok(),
                seconds: fields[2].parse().unwrap_or_else(|_| panic!("{line}")),
            };
            (fields[0].to_string(), stat)
        })
        .collect()
}

const ACTIONS: [&str; 8] = [
    "plan",
    "lock",
    "copy",
    "delete",
    "commit",
    "wal_append",
    "wal_sync",
    "throttle",
];

/// Checks the statistics of a run that did `batches` batches without a failure: every action
/// listed with its count, the actions and "other" adding up to the wall time (to the printed
/// millisecond), the rows line.
fn check_statistics(stderr: &str, batches: u64, rows: u64) {
    let stats = statistics(stderr);
    for action in ACTIONS.iter().chain(&["other", "wall"]) {
        assert!(stats.contains_key(*action), "{action} missing: {stderr}");
    }
    let measured: f64 = ACTIONS.iter().map(|a| stats[*a].seconds).sum();
    let (other, wall) = (stats["other"].seconds, stats["wall"].seconds);
    assert!(measured <= wall + 0.005, "{measured} > {wall}: {stderr}");
    assert!((measured + other - wall).abs() < 0.01, "{stderr}");
    for step in ["copy", "delete", "commit"] {
        assert_eq!(stats[step].count, Some(batches), "{step}: {stderr}");
    }
    // On one server each batch's planning read takes its locks (counted as planning); the lock
    // step runs only for a batch run again, and this run had none.
    assert_eq!(stats["lock"].count, Some(0), "{stderr}");
    // The run's key bound and one planning read per batch, plus one that finds nothing left
    // unless the last batch ended at the key bound.
    let plans = stats["plan"].count.unwrap();
    assert!((batches + 1..=batches + 2).contains(&plans), "{stderr}");
    assert!(
        stats["wal_append"].count >= Some(2 * batches + 2),
        "{stderr}"
    );
    assert!(stats["wal_sync"].count >= Some(batches), "{stderr}");
    assert_eq!(stats["throttle"].count, Some(0), "no sleep_ms: {stderr}");
    assert_eq!(stats["other"].count, None);
    assert!(
        stderr.contains(&format!("rows {rows} in {batches} batches, ")),
        "{stderr}"
    );
}

/// `run --statistics` on one server: every action with numbers that add up to the wall time;
/// without the flag, no statistics.
#[test]
fn statistics_list_every_action_and_add_up_to_the_wall_time() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "metricsstats", 1_000);
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    let job = Job::new(&sandbox, &db, MIXED_PREDICATE, "batch_rows = 100");
    let output = job.archiver("run", &["--statistics"]);
    assert_success(&output, "run");
    let batches = count_events(&job, "BatchDeleted");
    let stderr = String::from_utf8_lossy(&output.stderr);
    check_statistics(&stderr, batches, matching);
    // The sizes the batches planned (a fixed size here: the test harness sets no target).
    let sizes = "batch rows: fixed (batch_time_ms 0): first 100, last 100, smallest 100, largest 100, over ";
    assert!(stderr.contains(sizes), "{stderr}");

    let quiet = job.archiver("run", &[]);
    assert_success(&quiet, "a second run, nothing left");
    let stderr = String::from_utf8_lossy(&quiet.stderr);
    assert!(!stderr.contains("statistics"), "{stderr}");
}

/// `run --statistics` with the archive on its own server (the two-step batch of `db::cross`):
/// its steps are timed too, and a `sleep_ms` pause counts as throttling, in the statistics and
/// in `archiver_throttle_seconds_total{reason="sleep"}`.
#[test]
fn statistics_time_the_two_server_batch_and_the_pause() {
    let sandbox = common::sandbox();
    let mut db = sandbox.fresh_database("metricsxsrc");
    let mut archive_db = sandbox.fresh_database("metricsxarch");
    create_mixed(&mut db, "src", 500);
    create_mixed(&mut archive_db, "arch", 0);
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    let job = super::cross::cross_job(
        &sandbox,
        &db,
        &archive_db,
        MIXED_PREDICATE,
        "batch_rows = 100\nsleep_ms = 20",
    );
    let prom_dir = tempfile::tempdir().unwrap();
    let textfile = prom_dir.path().join("archiver_cross.prom");
    with_textfile(&job, &textfile);
    let output = job.archiver("run", &["--statistics"]);
    assert_success(&output, "run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stats = statistics(&stderr);
    let batches = count_events(&job, "BatchDeleted");
    assert_eq!(count_events(&job, "BatchCopied"), batches);
    for step in ["copy", "delete"] {
        assert_eq!(stats[step].count, Some(batches), "{step}: {stderr}");
    }
    // Each batch's rows were locked by its planning read (counted in `plan`), not by a
    // locking read of its own.
    assert_eq!(stats["lock"].count, Some(0), "{stderr}");
    assert!(stats["plan"].count.unwrap() > batches, "{stderr}");
    // Each batch commits twice: the archive's transaction, then the source's.
    assert_eq!(stats["commit"].count, Some(2 * batches), "{stderr}");
    // A pause before each planning read (not before the key bound's).
    let plans = stats["plan"].count.unwrap();
    assert_eq!(stats["throttle"].count, Some(plans - 1), "{stderr}");
    let measured: f64 = ACTIONS.iter().map(|a| stats[*a].seconds).sum();
    assert!(measured <= stats["wall"].seconds + 0.005, "{stderr}");
    assert!(
        stderr.contains(&format!("rows {matching} in {batches} batches, ")),
        "{stderr}"
    );
    let metrics = read_metrics(&textfile);
    assert_eq!(
        value(&metrics, "archiver_rows_archived_total"),
        matching as f64
    );
    let slept = value(
        &metrics,
        "archiver_throttle_seconds_total{reason=\"sleep\"}",
    );
    assert!(slept >= 0.02 * (plans - 1) as f64, "{slept}");
}

/// During a run the file is rewritten every `textfile_interval_s`: a slow run (a pause between
/// batches) shows "running" with rows already archived before it ends; every read of the file
/// meanwhile parses whole (it is replaced, never written in place). Stopped by its stop file,
/// the last write says "stopped" with the rows the WAL records.
#[test]
fn the_textfile_is_rewritten_during_the_run() {
    let sandbox = common::sandbox();
    let db = mixed_db(&sandbox, "metricslive", 1_000);
    let job = Job::new(
        &sandbox,
        &db,
        MIXED_PREDICATE,
        "batch_rows = 100\nsleep_ms = 1500",
    );
    let prom_dir = tempfile::tempdir().unwrap();
    let textfile = prom_dir.path().join("archiver_live.prom");
    with_textfile(&job, &textfile);
    let mut text = std::fs::read_to_string(&job.config).unwrap();
    text.push_str("textfile_interval_s = 1\n");
    std::fs::write(&job.config, text).unwrap();
    let mut child = job
        .command("run")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let seen = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "never saw rows archived while running"
        );
        if textfile.exists() {
            let metrics = read_metrics(&textfile);
            if value(&metrics, "archiver_outcome{outcome=\"running\"}") == 1.0
                && value(&metrics, "archiver_rows_archived_total") >= 100.0
            {
                break metrics;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(value(&seen, "archiver_run_id"), 1.0);
    let stop = PathBuf::from(format!("{}.stop", job.config.display()));
    std::fs::write(&stop, "").unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(2), "stopped by the stop file");
    let last = read_metrics(&textfile);
    assert_eq!(value(&last, "archiver_outcome{outcome=\"stopped\"}"), 1.0);
    assert_eq!(
        value(&last, "archiver_rows_archived_total"),
        job.rows_deleted() as f64
    );
    assert!(job.rows_deleted() < 1_000, "stopped before the end");
    assert_eq!(value(&last, "archiver_last_success_timestamp_seconds"), 0.0);
    assert_eq!(names_in(prom_dir.path()), ["archiver_live.prom"]);
}

/// `GET path` over the job's control socket: the status code and the body.
fn socket_get(job: &Job, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(job.wal_dir.join("control.sock"))
        .expect("the control socket answers");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, body.to_string())
}

/// A running job shows itself through its control socket: `GET /metrics` is exposition text a
/// strict parser reads, with the rows the WAL says so far; `GET /status` carries the progress
/// display's figures (rows moved + rows left == the rows that matched, counted at the start)
/// and the throttle's time waited; `archiver status` adds those lines while the run is active.
#[test]
fn a_running_job_serves_metrics_progress_and_throttle_on_its_socket() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "live_views", 2_000);
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    let original = db.checksum("src");
    let job = Job::new(
        &sandbox,
        &db,
        MIXED_PREDICATE,
        "batch_rows = 50\nsleep_ms = 200",
    );
    let child = job
        .command("run")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never moved rows"
        );
        if job.wal_dir.join("control.sock").exists() {
            let (code, body) = socket_get(&job, "/status");
            assert_eq!(code, 200, "{body}");
            let status: serde_json::Value = serde_json::from_str(&body).unwrap();
            if status["progress"]["rows_moved"].as_u64().unwrap_or(0) >= 100 {
                break status;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let progress = &status["progress"];
    assert_eq!(
        progress["rows_moved"].as_u64().unwrap() + progress["rows_left"].as_u64().unwrap(),
        matching,
        "{status}"
    );
    assert_eq!(progress["batch_rows"], 50, "{status}");
    let waited: f64 = status["throttle"]["waited_s"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w[0] == "sleep")
        .map(|w| w[1].as_f64().unwrap())
        .sum();
    assert!(
        waited > 0.1,
        "the pauses between batches are counted: {status}"
    );

    let (code, text) = socket_get(&job, "/metrics");
    assert_eq!(code, 200, "{text}");
    let file = job._dir.path().join("scraped.prom");
    std::fs::write(&file, &text).unwrap();
    let metrics = read_openmetrics(&file);
    assert!(
        value(&metrics, "archiver_rows_archived_total") >= 100.0,
        "{text}"
    );
    assert!(
        value(
            &metrics,
            "archiver_throttle_seconds_total{reason=\"sleep\"}"
        ) > 0.0,
        "{text}"
    );

    let output = job.archiver("status", &[]);
    assert_success(&output, "status during the run");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("running now (pid "), "{text}");
    assert!(text.contains("matching rows left"), "{text}");
    assert!(text.contains("throttle: "), "{text}");

    assert_success(&job.archiver("ctl", &["stop"]), "ctl stop");
    let (code, stderr) = super::shutdown::exit_by(child, deadline, "stop after ctl stop");
    assert_eq!(code, Some(2), "{stderr}");
    assert_success(&job.archiver("run", &[]), "the resumed run");
    assert_moved(&mut db, MIXED_PREDICATE, original, matching);
}

/// `GET path` (or another method) on `127.0.0.1:port`: the status code and the body.
fn tcp_request(port: u16, method: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the port answers");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    (
        head.split(' ').nth(1).unwrap().parse().unwrap(),
        body.to_string(),
    )
}

/// `[metrics] listen`: a running job serves `GET /metrics` on a TCP port, parsed by the strict
/// parser, and nothing else there (status, pause and stop stay on the owner-only socket); a
/// port that cannot be bound refuses the run with nothing written.
#[test]
fn metrics_are_served_on_a_tcp_port_and_nothing_else_is() {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, "metrics_port", 2_000);
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    let original = db.checksum("src");
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let job = Job::new(
        &sandbox,
        &db,
        MIXED_PREDICATE,
        "batch_rows = 50\nsleep_ms = 200",
    );
    let mut text = std::fs::read_to_string(&job.config).unwrap();
    text.push_str(&format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    std::fs::write(&job.config, text).unwrap();
    // The port is taken: refused before anything is written.
    let output = job.archiver("run", &[]);
    assert_exit(&output, 64, "a port in use");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("[metrics] listen = \"127.0.0.1:{port}\"")),
        "{stderr}"
    );
    assert!(!job.wal_dir.join("LOCK").exists() || job.events().is_empty());
    assert_eq!(db.query_scalar::<u64>("SELECT COUNT(*) FROM arch"), 0);
    drop(holder);

    let child = job
        .command("run")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let file = job._dir.path().join("tcp.prom");
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no rows archived in the served metrics"
        );
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let (code, body) = tcp_request(port, "GET", "/metrics");
            assert_eq!(code, 200, "{body}");
            std::fs::write(&file, &body).unwrap();
            if value(&read_openmetrics(&file), "archiver_rows_archived_total") > 0.0 {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for (method, path) in [("GET", "/status"), ("POST", "/stop"), ("POST", "/pause")] {
        let (code, body) = tcp_request(port, method, path);
        assert_eq!(code, 404, "{method} {path}: {body}");
    }
    assert_success(&job.archiver("ctl", &["stop"]), "ctl stop");
    let (code, stderr) = super::shutdown::exit_by(child, deadline, "stop after ctl stop");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the port closes with the run"
    );
    assert_success(&job.archiver("run", &[]), "the resumed run");
    assert_moved(&mut db, MIXED_PREDICATE, original, matching);
}
