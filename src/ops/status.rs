//! `archiver status`: runs, batches, rows, conflicts, failures, rate and ETA, from the log.

use std::io::Write;

use super::job_state;
use crate::config::JobConfig;
use crate::engine::now_unix_us;
use crate::error::Error;

/// Prints the job's summary as text lines, or as one JSON object.
pub fn status(config: &JobConfig, json: bool, out: &mut dyn Write) -> Result<(), Error> {
    let state = job_state(config)?;
    let summary = state.summary(now_unix_us());
    if json {
        let text = serde_json::to_string(&summary).map_err(anyhow::Error::from)?;
        writeln!(out, "{text}")?;
    } else {
        for line in summary.lines() {
            writeln!(out, "{line}")?;
        }
        // A run active now: what its process sees (rows left, rate, ETA, throttle).
        if let Some(report) = super::ctl::running_report(config) {
            writeln!(out, "running now (pid {}):", report["pid"])?;
            for line in super::ctl::live_lines(&report) {
                writeln!(out, "  {line}")?;
            }
        }
    }
    Ok(())
}
