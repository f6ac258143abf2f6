//! Crash torture: the archiver is killed with SIGKILL at random moments, many times, and the
//! MariaDB server is killed and restarted under a running job. Afterwards no row is lost and
//! none is duplicated, checked row by row with checksums.

use std::process::{Child, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;

/// Kills of the archiver in the torture test.
const KILLS: u32 = 30;
/// Rows in the torture table; with `tenant < 6`, about 6/7 of them match.
const TORTURE_ROWS: u64 = 200_000;
const TORTURE_PREDICATE: &str = "tenant < 6";

/// A small deterministic generator, seeded from the clock and printed, so a failing run can
/// be repeated with `ARCHIVER_TORTURE_SEED`.
struct Rng(u64);

impl Rng {
    fn from_env_or_clock() -> Rng {
        let seed = std::env::var("ARCHIVER_TORTURE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("torture seed: {seed} (set ARCHIVER_TORTURE_SEED to repeat)");
        Rng(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn spawn_run(job: &Job) -> Child {
    job.command("run")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn archiver")
}

#[test]
fn kill_9_at_random_moments_loses_and_duplicates_nothing() {
    // Paced so that the job cannot finish within the kills however fast the machine is: about
    // 690 batches with a 12 ms pause before each is at least 8.2 s of running, while 30 kills
    // after 10 to 260 ms each are at most 7.8 s (4 s on average). Unpaced, 343 batches of 500
    // rows finished in fewer than 30 kills on a quiet machine.
    torture("torture", "batch_rows = 250\nsleep_ms = 12", KILLS, 250);
}

/// The same with three batches in flight (`parallel`), so that kills land between claims,
/// group syncs and commits of batches side by side. Unpaced (a pause makes the loop wait with
/// nothing in flight), so slowed by small batches instead: about 3,400 batches of 50 rows,
/// against 15 kills after at most 160 ms each.
#[test]
fn kill_9_with_batches_in_flight_loses_and_duplicates_nothing() {
    torture(
        "torturepar",
        "batch_rows = 50\nbatch_time_ms = 0\nparallel = 3",
        KILLS / 2,
        150,
    );
}

/// `kills` SIGKILLs of runs of the job (`extra` in its job file), each after 10 to
/// `10 + spread_ms` ms; then a last run, and every row and count checked.
fn torture(name: &str, extra: &str, kills_wanted: u32, spread_ms: u64) {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, name, TORTURE_ROWS);
    let original = db.checksum("src");
    let matching = count_matching(&mut db, TORTURE_PREDICATE);
    assert!(matching >= 100_000, "{matching}");
    let job = Job::new(&sandbox, &db, TORTURE_PREDICATE, extra);
    let mut rng = Rng::from_env_or_clock();
    let mut kills = 0;
    while kills < kills_wanted {
        if !run_and_kill_after(&job, Duration::from_millis(10 + rng.below(spread_ms))) {
            break; // the job finished before the kill; the assertion below says so
        }
        kills += 1;
    }
    let output = job.archiver("run", &[]);
    assert_success(&output, "final run");
    assert_moved(&mut db, TORTURE_PREDICATE, original, matching);
    assert_counts_exact(&job, matching, "after the kills");
    eprintln!("torture: {kills} kills");
    assert!(
        kills >= kills_wanted,
        "only {kills} kills before the job finished; make the table larger"
    );
    // The log recovered cleanly after every kill: inspect finds no corruption.
    let (code, _) = job.inspect();
    assert_eq!(code, Some(0));
}

#[test]
fn server_killed_and_restarted_mid_run() {
    let sandbox = common::sandbox().exclusive();
    // The exclusive holder creates its database without taking the shared lock again.
    let mut db = sandbox.fresh_database("srvkill");
    create_mixed(&mut db, "src", 60_000);
    db.exec("CREATE TABLE arch LIKE src");
    let original = db.checksum("src");
    let matching = count_matching(&mut db, TORTURE_PREDICATE);
    let job = Job::new(
        &sandbox,
        &db,
        TORTURE_PREDICATE,
        "batch_rows = 200\nattempts_max = 10\nsleep_ms = 5",
    );
    let mut rng = Rng::from_env_or_clock();
    let mut child = spawn_run(&job);
    for round in 0..5 {
        std::thread::sleep(Duration::from_millis(300 + rng.below(500)));
        if child.try_wait().unwrap().is_some() {
            eprintln!("the job finished before server kill {round}");
            break;
        }
        sandbox.kill_server();
        std::thread::sleep(Duration::from_millis(500 + rng.below(1000)));
        sandbox.start_server();
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "the job rides out server restarts");
    assert_moved(&mut db, TORTURE_PREDICATE, original, matching);
    // A server killed while a COMMIT was in flight leaves the attempt's outcome unknown to
    // the client; the next attempt finds it out from the witness.
    assert_counts_exact(&job, matching, "after the server kills");
    let events = job.events();
    eprintln!(
        "server kill: {} failed attempts recorded",
        events.iter().filter(|(t, _)| t == "BatchFailed").count()
    );
}

/// The log counts every row moved exactly once, whatever was lost with the kills: rows moved
/// and rows copied or found archived both equal the rows the tables say moved.
fn assert_counts_exact(job: &Job, matching: u64, what: &str) {
    let (moved, copied) = super::exact_counts::logged_totals(job);
    assert_eq!(
        moved, matching,
        "{what}: rows moved, as the log counts them"
    );
    assert_eq!(
        copied, matching,
        "{what}: rows copied, as the log counts them"
    );
}
