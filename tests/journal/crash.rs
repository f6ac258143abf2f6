//! Compaction killed at random moments (`kill -9` of a child `archiver compact`), many times:
//! each time the directory replays to the state it held before (older runs summarized or not,
//! never anything else), opening it for write finishes or discards the interrupted compaction,
//! and a following compaction completes.

use std::process::Stdio;
use std::time::Duration;

use archiver::journal::{nightly, Journal};
use archiver::state::State;

/// Runs kept in full detail by every compaction here.
const KEEP_RUNS: u32 = 2;
/// Kill attempts.
const ROUNDS: u64 = 40;

/// A log of `nights` synthetic nightly runs in `dir`.
fn build(dir: &std::path::Path, nights: u64) -> State {
    let mut journal = Journal::open(dir).unwrap();
    for _ in 0..nights {
        nightly::append_night(&mut journal, 1_000).unwrap();
    }
    journal.close().unwrap()
}

/// The same state of the job, whatever LSN each reached.
fn same(a: &State, b: &State) -> bool {
    a.same_but_last_lsn(b)
}

/// A small deterministic generator (the seed is printed, so a failure can be repeated).
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn compaction_killed_at_random_moments_leaves_the_old_log_or_the_new_one() {
    let mut seed = std::env::var("ARCHIVER_COMPACT_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::from(std::process::id()) | 1);
    eprintln!("compaction crash seed: {seed} (set ARCHIVER_COMPACT_CRASH_SEED to repeat)");
    let mut outcomes = [0u64; 2];
    for round in 0..ROUNDS {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        let before = build(&dir, 40);
        let expected = before.retained(KEEP_RUNS);
        let mut child = crate::common::archiver_cmd()
            .args([
                "compact",
                "--keep-runs",
                &KEEP_RUNS.to_string(),
                "--wal-dir",
            ])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(next(&mut seed) % 150_000));
        let _ = child.kill(); // SIGKILL, if it is still running
        child.wait().unwrap();

        // Read-only first (never changes the directory), then opened for write (cleans up).
        let read = Journal::read(&dir).unwrap();
        let compacted = same(&read, &expected);
        assert!(
            compacted || same(&read, &before),
            "round {round}: the log replays to neither the old state nor its compaction"
        );
        outcomes[usize::from(compacted)] += 1;
        let journal = Journal::open(&dir).unwrap();
        assert!(
            same(journal.state(), &read),
            "round {round}: open changed the state"
        );
        let (journal, _) = journal.compact(KEEP_RUNS, 0).unwrap();
        journal.close().unwrap();
        assert!(
            same(&Journal::read(&dir).unwrap(), &expected),
            "round {round}: the following compaction"
        );
    }
    eprintln!(
        "killed before the switch: {}, after: {}",
        outcomes[0], outcomes[1]
    );
}
