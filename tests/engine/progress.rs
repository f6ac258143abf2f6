//! What a running job shows (issue 9, "progress people can trust"): on a real terminal (a
//! pseudo-terminal made by `script`) a live bar with rows, rows/s, batch size and ETA; without
//! one, a log line per interval whose rows-left figure is the exact count, never a bar; with
//! `--log-format json`, every stderr line is a JSON object, the summary included.

use std::process::Command;

use super::*;

/// A job slow enough to be watched: 2,000 rows, batches of 50, 100 ms between them.
fn slow_job(prefix: &str) -> (TestDb, Job, u64, (u64, u64, u64)) {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, prefix, 2_000);
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    let original = db.checksum("src");
    let job = Job::new(
        &sandbox,
        &db,
        MIXED_PREDICATE,
        "batch_rows = 50\nsleep_ms = 100",
    );
    (db, job, matching, original)
}

#[test]
fn without_a_terminal_json_lines_count_down_exactly_and_end_with_the_summary() {
    let (mut db, job, matching, original) = slow_job("progress_json");
    let output = job.archiver("run", &["--log-format", "json", "--progress-every", "1s"]);
    assert_success(&output, "run --log-format json");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains('\r'),
        "no bar without a terminal: {stderr:?}"
    );
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line:?}"))
        })
        .collect();
    let progress: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["target"] == "archiver::progress")
        .collect();
    assert!(
        !progress.is_empty(),
        "a run of several seconds logs progress every second: {stderr}"
    );
    let mut previous = 0;
    for line in &progress {
        let moved = line["rows_moved"].as_u64().expect("rows_moved");
        let left = line["rows_left"].as_u64().expect("rows_left");
        // The rows left were counted at the start and only the rows moved change them.
        assert_eq!(moved + left, matching, "moved + left == matching: {line}");
        assert!(moved >= previous, "rows moved never go back: {line}");
        previous = moved;
        assert_eq!(line["batch_rows"], 50, "{line}");
        assert!(
            line["eta_s"].as_f64().is_some(),
            "an ETA once rows moved: {line}"
        );
        assert!(line["rows_per_s"].as_f64().unwrap() > 0.0, "{line}");
    }
    let summary = lines.last().expect("a summary line");
    assert_eq!(summary["target"], "archiver::summary", "{summary}");
    assert_eq!(summary["outcome"], "done", "{summary}");
    let message = summary["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("done: moved {matching} rows in ")),
        "{message}"
    );
    assert_moved(&mut db, MIXED_PREDICATE, original, matching);
}

#[test]
fn on_a_terminal_a_live_bar_shows_rows_rate_batch_size_and_eta() {
    let (mut db, job, matching, original) = slow_job("progress_bar");
    // `script` runs the command on a new pseudo-terminal and copies what it writes to stdout.
    let command = format!(
        "{} run --config {}",
        env!("CARGO_BIN_EXE_archiver"),
        job.config.display()
    );
    let output = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env("ARCHIVER_PASSWORD", common::sandbox().password())
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run `script` (util-linux) to get a pseudo-terminal");
    assert_success(&output, "run on a pseudo-terminal");
    let screen = String::from_utf8_lossy(&output.stdout);
    // indicatif writes counts with thousands separators.
    let total = matching.to_string();
    let total = match total.len() {
        4..=6 => format!(
            "{},{}",
            &total[..total.len() - 3],
            &total[total.len() - 3..]
        ),
        _ => total,
    };
    assert!(
        screen.contains(&format!("{total}/{total} rows")),
        "the bar counts rows against the total and ends full: {screen}"
    );
    for part in ["rows/s", "batch 50 rows", "ETA ", "\r"] {
        assert!(screen.contains(part), "the bar shows {part:?}: {screen:?}");
    }
    assert!(
        !screen.contains("progress: run"),
        "no log lines where a bar is shown: {screen}"
    );
    assert!(
        screen.contains(&format!("archiver: done: moved {matching} rows")),
        "{screen}"
    );
    assert_moved(&mut db, MIXED_PREDICATE, original, matching);
}

#[test]
fn progress_lines_can_be_turned_off() {
    let (mut db, job, matching, original) = slow_job("progress_off");
    let output = job.archiver("run", &["--progress-every", "0"]);
    assert_success(&output, "run --progress-every 0");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "only the summary line: {stderr}"
    );
    assert_moved(&mut db, MIXED_PREDICATE, original, matching);
}
