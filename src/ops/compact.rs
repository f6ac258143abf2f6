//! `archiver compact`: replaces a job's log with a snapshot of its state, keeping the last
//! runs in full detail and older runs as totals, and says what it did; `--dry-run` says what it
//! would do and writes nothing. Takes the WAL lock: refused while a run is active.

use std::io::Write;
use std::path::Path;

use crate::engine::now_unix_us;
use crate::error::Error;
use crate::journal::{CompactReport, Journal};

/// Compacts the log in `dir` (or plans it, `dry_run`) and prints the report.
pub fn compact(
    dir: &Path,
    keep_runs: u32,
    dry_run: bool,
    json: bool,
    out: &mut dyn Write,
) -> Result<CompactReport, Error> {
    if !crate::journal::has_log(dir) {
        return Err(crate::config::ConfigError(super::inspect::no_segments(dir)).into());
    }
    let report = if dry_run {
        Journal::plan_compaction(dir, keep_runs, now_unix_us())?
    } else {
        let journal = Journal::open(dir)?;
        let (journal, report) = journal.compact(keep_runs, now_unix_us())?;
        journal.close()?;
        report
    };
    if json {
        let text = serde_json::to_string(&report).map_err(anyhow::Error::from)?;
        writeln!(out, "{text}")?;
    } else {
        for line in report.lines() {
            writeln!(out, "{line}")?;
        }
    }
    Ok(report)
}
