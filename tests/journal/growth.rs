//! A year of nightly runs (365 runs of 1,000 batches, synthetic, no database) with a compaction
//! after each run: the log stays under a stated bound, and the replayed state still holds every
//! run's totals. Timings are the benchmark's (`cargo bench --bench compaction`), not asserted.

use archiver::journal::{nightly, Journal};

/// Runs kept in full detail: the job file's default.
const KEEP_RUNS: u32 = archiver::config::KEEP_RUNS.default;

/// The bound this test holds the log to after every compaction, in bytes on disk: one segment
/// of the first size (2 MiB, preallocated; wal-format.md, segment sizes), because the snapshot
/// (every run's totals, about 150 bytes each; the batches of the last `KEEP_RUNS` runs, about
/// 70 bytes each: under 1 MiB for a year) and the next night's records fit it; plus the lock
/// file, which holds a pid.
const LOG_BYTES_MAX: u64 = archiver::wal::SEGMENT_BYTES_FIRST + 64;

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

#[test]
fn a_year_of_nightly_runs_compacted_after_each_stays_small() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut journal = Journal::open(&dir).unwrap();
    let mut largest = 0;
    for night in 1..=365u64 {
        nightly::append_night(&mut journal, 1_000).unwrap();
        let (compacted, report) = journal.compact(KEEP_RUNS, 0).unwrap();
        journal = compacted;
        assert_eq!(report.runs, night);
        let kept = u64::from(KEEP_RUNS).min(night) * 1_000;
        assert_eq!(report.batches_kept, kept, "night {night}");
        let bytes = dir_bytes(&dir);
        largest = largest.max(bytes);
        assert!(
            bytes <= LOG_BYTES_MAX,
            "night {night}: {bytes} bytes on disk, over {LOG_BYTES_MAX}"
        );
    }
    journal.close().unwrap();
    let state = Journal::read(&dir).unwrap();
    assert_eq!(state.runs().len(), 365);
    assert_eq!(state.totals().rows_deleted, 365 * 1_000 * 1_000);
    assert_eq!(
        state.batches().count(),
        usize::try_from(KEEP_RUNS).unwrap() * 1_000
    );
    eprintln!("largest log over the year: {largest} bytes on disk");
}
