//! The operator's commands around a job's log: `status`, `reset`, `replay --inspect`, the
//! dry run, and the end-of-run attention report. Everything here but `reset` is read-only and
//! takes no lock, so it works while a run is active.

pub mod inspect;

use std::io::Write;
use std::path::Path;

use self::inspect::{InspectVerdict, StateSink};
use crate::cli::exit;
use crate::config::JobConfig;
use crate::db;
use crate::engine::{self, now_unix_us};
use crate::event::{BatchReset, Event};
use crate::state::{BatchStatus, State};
use crate::wal::{RecoveryMode, WalOptions, WalWriter};

/// The state of the job's log, or a fresh state when it has none yet.
fn job_state(config: &JobConfig) -> anyhow::Result<State> {
    // Not a directory (absent, or a file): no log to read; the pre-flight reports a wal_dir
    // that cannot become one, with every other finding.
    if !config.wal_dir.is_dir() {
        return Ok(State::new());
    }
    let state = engine::read_log(&config.wal_dir)?;
    engine::check_identity(&state, config)?;
    Ok(state)
}

/// `archiver status`: runs, batches, rows, conflicts, failures, rate and ETA.
pub fn status(config: &JobConfig, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let state = job_state(config)?;
    let summary = state.summary(now_unix_us());
    if json {
        writeln!(out, "{}", serde_json::to_string(&summary)?)?;
    } else {
        for line in summary.lines() {
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

/// What `archiver reset` selects.
#[derive(Debug, Clone)]
pub enum ResetSelection {
    /// One batch by id.
    Batch(u64),
    /// Every failed or parked batch.
    Failed,
    /// Failed or parked batches whose last error matches a LIKE pattern.
    ErrorLike(String),
}

/// SQL `LIKE` matching, case-insensitive: `%` any run, `_` one character, `\` escapes.
pub fn like(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('%', rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
            Some(('_', rest)) => !t.is_empty() && go(rest, &t[1..]),
            Some(('\\', rest)) if !rest.is_empty() => {
                !t.is_empty() && t[0] == rest[0] && go(&rest[1..], &t[1..])
            }
            Some((c, rest)) => !t.is_empty() && t[0] == *c && go(rest, &t[1..]),
        }
    }
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    go(&p, &t)
}

/// `archiver reset`: appends `BatchReset` for the selected batches so the next run retries
/// them. Takes the WAL lock, so it is refused while a run is active.
pub fn reset(
    config: &JobConfig,
    selection: &ResetSelection,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (mut wal, mut state) = engine::open_log(&config.wal_dir)?;
    engine::check_identity(&state, config)?;
    let (ids, reason): (Vec<u64>, String) = match selection {
        ResetSelection::Batch(id) => {
            let batch = state.batch(*id).ok_or_else(|| {
                crate::config::ConfigError(format!(
                    "batch {id} is not in the log; `archiver status` lists the failed batches"
                ))
            })?;
            if batch.status == BatchStatus::Done {
                return Err(crate::config::ConfigError(format!(
                    "batch {id} is done; there is nothing to retry"
                ))
                .into());
            }
            (vec![*id], format!("reset --batch {id}"))
        }
        ResetSelection::Failed => (
            state
                .batches()
                .filter(|b| b.status != BatchStatus::Done && b.last_error.is_some())
                .map(|b| b.batch_id)
                .collect(),
            "reset --failed".to_string(),
        ),
        ResetSelection::ErrorLike(pattern) => (
            state
                .batches()
                .filter(|b| {
                    b.status != BatchStatus::Done
                        && b.last_error
                            .as_ref()
                            .is_some_and(|e| like(pattern, &e.message))
                })
                .map(|b| b.batch_id)
                .collect(),
            format!("reset --error-like {pattern:?}"),
        ),
    };
    for &batch_id in &ids {
        let event = Event::BatchReset(BatchReset {
            batch_id,
            reason: reason.clone(),
        });
        let lsn = wal.append(event.record_type(), &event.encode_payload())?;
        state.apply(lsn, &event)?;
    }
    wal.sync()?;
    if ids.is_empty() {
        writeln!(out, "no batch matched; nothing reset")?;
    } else {
        let list: Vec<String> = ids.iter().map(u64::to_string).collect();
        writeln!(
            out,
            "reset {} batch(es): {}; the next run retries them",
            ids.len(),
            list.join(", ")
        )?;
    }
    Ok(())
}

/// Feeds `inspect` into the real state machine.
struct StateReplay {
    state: State,
}

impl StateSink for StateReplay {
    fn apply(&mut self, lsn: u64, event: &Event) -> Result<(), String> {
        self.state.apply(lsn, event).map_err(|e| e.to_string())
    }

    fn summary_lines(&self) -> Vec<String> {
        self.state.summary(now_unix_us()).lines()
    }

    fn summary_json(&self) -> serde_json::Value {
        serde_json::to_value(self.state.summary(now_unix_us())).unwrap_or_default()
    }
}

/// `archiver replay --inspect`: read-only; exit code non-zero when the log is corrupt.
pub fn inspect(dir: &Path, json: bool, out: &mut dyn Write) -> anyhow::Result<u8> {
    let mut sink = StateReplay {
        state: State::new(),
    };
    let verdict = inspect::inspect(dir, json, out, &mut sink)?;
    Ok(match verdict {
        InspectVerdict::Corrupt => exit::ERROR,
        _ => exit::DONE,
    })
}

/// `archiver replay --salvage-last-segment`: opens the log for writing with
/// [`RecoveryMode::SalvageLastSegment`], which cuts the last segment at its first invalid record
/// even when valid records follow, and reports the cut. Damage in sealed segments is still
/// refused. The records it drops were never acted on only if they were never synced; the
/// operator decides that from `--inspect` before running this.
pub fn salvage(dir: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let options = WalOptions {
        recovery: RecoveryMode::SalvageLastSegment,
        ..WalOptions::default()
    };
    let (writer, report) = WalWriter::open(dir, options, &mut |_| Ok(()))?;
    writer.close()?;
    match report.cut {
        Some(cut) => writeln!(
            out,
            "cut {} at offset {}: {} bytes discarded ({})",
            cut.segment.display(),
            cut.offset,
            cut.bytes_discarded,
            cut.detail
        )?,
        None => writeln!(out, "nothing to salvage: the last segment ends cleanly")?,
    }
    Ok(())
}

/// Conflicts and parked batches, on stderr, at the end of a run that needs attention.
pub fn print_attention(state: &State) {
    let summary = state.summary(now_unix_us());
    let run = state.last_run();
    let conflicts = run.map_or(0, |r| r.counts.rows_conflicting);
    let parked: Vec<_> = state.parked_batches().collect();
    eprintln!(
        "archiver: done, but attention is needed: {conflicts} conflict(s) in the last run, {} parked batch(es)",
        parked.len()
    );
    for conflict in &summary.conflicts.listed {
        eprintln!(
            "  conflict: key {} (batch {}): the archive holds a different row; the source row was kept",
            conflict.key, conflict.batch_id
        );
    }
    for batch in parked {
        let error = batch.last_error.as_ref().map_or("", |e| e.message.as_str());
        eprintln!(
            "  parked: batch {} after {} attempt(s): {error}",
            batch.batch_id, batch.attempts
        );
    }
    eprintln!("  `archiver status --config ...` shows the details; `archiver reset` retries parked batches");
}

/// `archiver run --dry-run`: checks everything, prints the next step and the exact SQL of the
/// next batch. Writes nothing anywhere: no WAL, no row.
pub async fn dry_run(config: &JobConfig, out: &mut dyn Write) -> anyhow::Result<u8> {
    let state = job_state(config)?;
    let mut conn =
        db::connect(&config.source.endpoint, config.sessions.lock_wait_timeout_s).await?;
    let mut archive_conn = match &config.archive.endpoint {
        Some(endpoint) => Some(db::connect(endpoint, config.sessions.lock_wait_timeout_s).await?),
        None => None,
    };
    let queries = crate::db::preflight::check(&mut conn, archive_conn.as_mut(), config).await?;
    writeln!(
        out,
        "job: {} -> {} where {}",
        config.source.table, config.archive.table, config.predicate
    )?;
    writeln!(out, "pre-flight checks passed")?;
    writeln!(
        out,
        "every session (both servers): {}",
        crate::db::sql::session_setup(config.sessions.lock_wait_timeout_s).join("; ")
    )?;
    writeln!(out, "next action: {}", state.next_action())?;
    let now = state
        .open_run()
        .map_or_else(now_unix_us, |run| run.now_unix_us);
    db::set_timestamp(&mut conn, now).await?;
    let bound = match state.open_run() {
        Some(run) => run.key_bound.clone(),
        None => db::key_bound(&mut conn, &queries).await?,
    };
    let Some(bound) = bound else {
        writeln!(out, "the source table is empty; nothing to archive")?;
        return Ok(exit::DONE);
    };
    let after = state.open_run().and_then(|run| run.cursor.clone());
    let plan = queries.plan(after.as_ref(), &bound, config.batching.rows);
    let planned = db::plan(
        &mut conn,
        &queries,
        after.as_ref(),
        &bound,
        config.batching.rows,
    )
    .await?;
    writeln!(out, "key bound: {}", crate::state::key_text(&bound))?;
    writeln!(
        out,
        "\n-- plan the next batch (read-only)\n{};\n-- parameters: {:?}",
        plan.sql, plan.params
    )?;
    let Some((upper, rows)) = planned else {
        writeln!(
            out,
            "\nno matching row is left up to the bound; the run would finish"
        )?;
        return Ok(exit::DONE);
    };
    writeln!(
        out,
        "\nnext batch: {} matching rows, keys after {} up to {}",
        rows,
        after
            .as_ref()
            .map_or("the start".to_string(), crate::state::key_text),
        crate::state::key_text(&upper)
    )?;
    if config.archive.endpoint.is_some() {
        let (lower, upper) = (after.as_ref(), &upper);
        let lock = queries.select_batch(lower, upper, true);
        let archived = queries.select_archived(std::slice::from_ref(upper));
        writeln!(
            out,
            "\n-- the batch, archive on its own server (READ COMMITTED)"
        )?;
        writeln!(
            out,
            "-- source: START TRANSACTION;\n{};\n-- parameters: {:?}",
            lock.sql, lock.params
        )?;
        writeln!(
            out,
            "-- archive: START TRANSACTION; the rows under the locked keys (in chunks):\n{};\n-- parameters: {:?}",
            archived.sql, archived.params
        )?;
        writeln!(
            out,
            "-- archive, the locked rows whose key it lacks (in chunks):\n{};\n-- archive: COMMIT;",
            queries.insert_rows(1)
        )?;
        writeln!(
            out,
            "-- archive: the committed rows under the locked keys, read again (same statement);\n-- source, for the locked rows whose archive copy is identical in every column (a locked row\n-- with no archive row under its key fails the batch; one with a different row is a conflict):"
        )?;
        writeln!(
            out,
            "{};\n-- source: COMMIT;",
            queries.delete_keys(std::slice::from_ref(upper)).sql
        )?;
        return Ok(exit::DONE);
    }
    writeln!(
        out,
        "\n-- the batch transaction (READ COMMITTED)\nSTART TRANSACTION;"
    )?;
    for (what, statement) in [
        (
            "lock the batch's matching rows, return their keys",
            queries.lock_batch(after.as_ref(), &upper),
        ),
        (
            "copy the rows whose key the archive lacks",
            queries.copy_batch(after.as_ref(), &upper),
        ),
        (
            "delete the rows with an identical archive copy",
            queries.delete_batch(after.as_ref(), &upper),
        ),
        (
            "the locked rows left: conflicts, or a failed copy that fails the batch",
            queries.leftovers(after.as_ref(), &upper),
        ),
    ] {
        writeln!(
            out,
            "-- {what}\n{};\n-- parameters: {:?}",
            statement.sql, statement.params
        )?;
    }
    writeln!(out, "COMMIT;")?;
    Ok(exit::DONE)
}

#[cfg(test)]
mod tests {
    use super::like;

    #[test]
    fn like_patterns_match_as_sql_does() {
        let cases = [
            ("%deadlock%", "Deadlock found when trying to get lock", true),
            ("lock wait%", "Lock wait timeout exceeded", true),
            ("lock_wait%", "lock wait timeout", true),
            ("%table%", "Deadlock found", false),
            ("100\\%", "100%", true),
            ("100\\%", "1000", false),
            ("", "", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(like(pattern, text), expected, "{pattern:?} ~ {text:?}");
        }
    }
}
