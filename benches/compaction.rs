//! Compaction benchmark (`cargo bench --bench compaction`): a year of synthetic nightly runs
//! (365 runs of 1,000 batches, through the real journal and WAL, no database), without
//! compaction and with a compaction after every run: log size on disk, records, and replay
//! time as the year goes on; then the time to compact a log of about 1,000,000 records.

use std::path::Path;
use std::time::Instant;

use archiver::journal::{nightly, Journal};

/// Nights simulated.
const NIGHTS: u64 = 365;
/// Batches per night.
const BATCHES_PER_NIGHT: u64 = 1_000;
/// Runs a compacted log keeps in full detail (the job file's default).
const KEEP_RUNS: u32 = archiver::config::KEEP_RUNS.default;
/// Nights after which a line is printed.
const REPORTED: [u64; 6] = [1, 30, 90, 180, 270, 365];

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// Replays the log read-only; returns (records, seconds).
fn replay(dir: &Path) -> (u64, f64) {
    let started = Instant::now();
    let state = Journal::read(dir).unwrap();
    (state.last_lsn(), started.elapsed().as_secs_f64())
}

fn year(dir: &Path, compact: bool) {
    let mut journal = Journal::open(dir).unwrap();
    let what = if compact {
        "compacted nightly"
    } else {
        "never compacted"
    };
    for night in 1..=NIGHTS {
        nightly::append_night(&mut journal, BATCHES_PER_NIGHT).unwrap();
        if compact {
            journal = journal.compact(KEEP_RUNS, 0).unwrap().0;
        }
        if REPORTED.contains(&night) {
            journal.sync().unwrap();
            let records = journal.records();
            let (_, seconds) = replay(dir);
            println!(
                "{what:>18}: night {night:>3}: {records:>8} records, {:>6.1} MiB on disk, replay {:>7.1} ms",
                dir_bytes(dir) as f64 / f64::from(1 << 20),
                seconds * 1e3
            );
        }
    }
    journal.close().unwrap();
}

fn compact_a_million(dir: &Path) {
    let mut journal = Journal::open(dir).unwrap();
    // Each night appends 2 records per batch and 2 per run: 500 nights of 1,000 batches.
    for _ in 0..500 {
        nightly::append_night(&mut journal, BATCHES_PER_NIGHT).unwrap();
    }
    journal.sync().unwrap();
    let records = journal.records();
    let started = Instant::now();
    let (journal, report) = journal.compact(KEEP_RUNS, 0).unwrap();
    let seconds = started.elapsed().as_secs_f64();
    journal.close().unwrap();
    println!(
        "compaction of {records} records ({:.1} MiB on disk) into {} records ({:.1} MiB): {:.3} s",
        report.bytes_before as f64 / f64::from(1 << 20),
        report.records_after,
        report.bytes_after as f64 / f64::from(1 << 20),
        seconds
    );
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    year(&tmp.path().join("never"), false);
    year(&tmp.path().join("nightly"), true);
    compact_a_million(&tmp.path().join("million"));
}
