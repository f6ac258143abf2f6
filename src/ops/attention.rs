//! The end-of-run report of a run that needs attention: conflicts and parked batches.

use crate::engine::now_unix_us;
use crate::state::State;

/// The report's lines, for stderr.
pub fn attention_lines(state: &State) -> Vec<String> {
    let summary = state.summary(now_unix_us());
    let conflicts = state.last_run().map_or(0, |r| r.counts.rows_conflicting);
    let parked: Vec<_> = state.parked_batches().collect();
    let mut lines = vec![format!(
        "archiver: done, but attention is needed: {conflicts} conflict(s) in the last run, {} parked batch(es)",
        parked.len()
    )];
    for conflict in &summary.conflicts.listed {
        lines.push(format!(
            "  conflict: key {} (batch {}): the archive holds a different row; the source row was kept",
            conflict.key, conflict.batch_id
        ));
    }
    for batch in parked {
        let error = batch.last_error.as_ref().map_or("", |e| e.message.as_str());
        lines.push(format!(
            "  parked: batch {} after {} attempt(s): {error}",
            batch.batch_id, batch.attempts
        ));
    }
    lines.push(
        "  `archiver status --config ...` shows the details; `archiver reset` retries parked batches"
            .to_string(),
    );
    lines
}
