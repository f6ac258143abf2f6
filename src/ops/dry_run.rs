//! `archiver run --dry-run`: checks everything a run would check, prints the next step and the
//! exact SQL of the next batch. Writes nothing anywhere: no WAL, no row.

use std::io::Write;

use mysql_async::Conn;

use super::job_state;
use crate::config::JobConfig;
use crate::db::{self, sql, sql::Queries};
use crate::engine::now_unix_us;
use crate::error::Error;
use crate::event::Key;
use crate::state::{key_text, State};

/// Connects, runs the pre-flight, and prints the plan.
pub async fn dry_run(config: &JobConfig, out: &mut dyn Write) -> Result<(), Error> {
    let state = job_state(config)?;
    let mut conn =
        db::connect(&config.source.endpoint, config.sessions.lock_wait_timeout_s).await?;
    let mut archive_conn = match &config.archive.endpoint {
        Some(endpoint) => Some(db::connect(endpoint, config.sessions.lock_wait_timeout_s).await?),
        None => None,
    };
    let queries = db::preflight::check(&mut conn, archive_conn.as_mut(), config).await?;
    writeln!(
        out,
        "job: {} -> {} where {}",
        config.source.table, config.archive.table, config.predicate
    )?;
    writeln!(out, "pre-flight checks passed")?;
    writeln!(
        out,
        "every session (both servers): {}",
        sql::session_setup(config.sessions.lock_wait_timeout_s).join("; ")
    )?;
    throttle_lines(config, &mut conn, out).await?;
    writeln!(out, "next action: {}", state.next_action())?;
    next_batch(config, &state, &mut conn, &queries, out).await
}

/// What `[throttle]` would see now: each load variable of the source and each replica's lag,
/// read once. A variable the source lacks, or a replica refusing the read, is refused as a run
/// would refuse it; an unreachable replica is reported.
async fn throttle_lines(
    config: &JobConfig,
    conn: &mut Conn,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let throttle = &config.throttle;
    let bounds: Vec<_> = throttle
        .critical_load
        .iter()
        .chain(&throttle.max_load)
        .collect();
    if !bounds.is_empty() {
        let values = db::throttle::status_values(conn, &bounds).await?;
        for (i, (bound, value)) in bounds.iter().zip(values).enumerate() {
            let key = if i < throttle.critical_load.len() {
                "critical_load"
            } else {
                "max_load"
            };
            writeln!(
                out,
                "throttle: {} is {value} on the source ({key} {bound})",
                bound.variable
            )?;
        }
    }
    let lock_wait = config.sessions.lock_wait_timeout_s;
    for endpoint in &throttle.replicas {
        let server = endpoint.server();
        let line = match db::throttle::lag_once(endpoint, &throttle.lag_source, lock_wait).await {
            Ok(db::throttle::LagReading::Behind(lag)) => {
                format!("lags {lag:.1} s (max_lag_s = {})", throttle.max_lag_s)
            }
            Ok(db::throttle::LagReading::NotReplicating(why)) => why,
            Err(error)
                if error.class() == crate::event::ErrorClass::Transient
                    || matches!(error, db::DbError::Unreachable(_)) =>
            {
                format!("unreachable: {error}")
            }
            Err(error) => return Err(error.into()),
        };
        writeln!(out, "throttle: replica {server} {line}")?;
    }
    Ok(())
}

/// How the run sizes its batches: "batch size: adaptive, ..." or "batch size: fixed at N rows".
fn sizing_line(config: &JobConfig, open_run: Option<&crate::state::Run>) -> String {
    let b = &config.batching;
    if let Some(rows) = open_run.and_then(|run| run.live.batch_rows) {
        format!("batch size: fixed at {rows} rows for the rest of the run (set live with ctl set batch_rows)")
    } else if b.time_ms == 0 {
        format!("batch size: fixed at {} rows (batch_time_ms = 0)", b.rows)
    } else {
        let first = open_run.map_or(b.rows, crate::state::Run::batch_rows_now);
        format!(
            "batch size: adaptive: the first batch plans {first} rows, the next as many as take about {} ms a batch ({} to {} rows)",
            b.time_ms, b.rows_min, b.rows_max
        )
    }
}

/// Plans the next batch as a run would (read-only) and prints its statements.
async fn next_batch(
    config: &JobConfig,
    state: &State,
    conn: &mut Conn,
    queries: &Queries,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let open_run = state.open_run();
    let now = open_run.map_or_else(now_unix_us, |run| run.now_unix_us);
    db::set_timestamp(conn, now).await?;
    let bound = match open_run {
        Some(run) => run.key_bound.clone(),
        None => db::key_bound(conn, queries).await?,
    };
    let Some(bound) = bound else {
        writeln!(out, "the source table is empty; nothing to archive")?;
        return Ok(());
    };
    let after = open_run.and_then(|run| run.cursor.clone());
    let rows = open_run.map_or(config.batching.rows, crate::state::Run::batch_rows_now);
    let plan = queries.plan(after.as_ref(), &bound, rows);
    let planned = db::plan(conn, queries, after.as_ref(), &bound, rows).await?;
    writeln!(out, "key bound: {}", key_text(&bound))?;
    writeln!(
        out,
        "\n-- find the next batch (read-only; a run on one server reads it with FOR UPDATE in the batch's transaction)\n{};\n-- parameters: {:?}",
        plan.sql, plan.params
    )?;
    let rows_per_batch = rows;
    let Some((upper, rows)) = planned else {
        writeln!(
            out,
            "\nno matching row is left up to the bound; the run would finish"
        )?;
        return Ok(());
    };
    writeln!(
        out,
        "\nnext batch: {} matching rows, keys after {} up to {}",
        rows,
        after.as_ref().map_or("the start".to_string(), key_text),
        key_text(&upper)
    )?;
    writeln!(out, "{}", sizing_line(config, open_run))?;
    match config.archive.endpoint {
        Some(_) => {
            let plan_locked = queries.plan_rows_locked(after.as_ref(), &bound, rows_per_batch);
            two_step_batch(queries, &plan_locked, (after.as_ref(), &upper), rows, out)?;
        }
        None => {
            let plan_locked = queries.plan_locked(after.as_ref(), &bound, rows_per_batch);
            one_transaction_batch(queries, &plan_locked, after.as_ref(), &upper, out)?;
        }
    }
    Ok(())
}

/// The statements of a batch with the archive on its own server.
fn two_step_batch(
    queries: &Queries,
    plan_locked: &crate::db::sql::Statement,
    (lower, upper): (Option<&Key>, &Key),
    rows: u64,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let lock = queries.select_batch(lower, upper, true);
    let delete = queries.delete_range(lower, upper, true);
    let archived = queries.select_archived_range(lower, upper, rows + 1);
    writeln!(
        out,
        "\n-- the batch, archive on its own server (READ COMMITTED)"
    )?;
    writeln!(
        out,
        "-- source: START TRANSACTION; plan the batch and lock and read its matching rows (a batch\n-- run again, or planned without locks because another session held a row, reads them with\n-- this instead:\n-- {})\n{};\n-- parameters: {:?}",
        lock.sql, plan_locked.sql, plan_locked.params
    )?;
    writeln!(
        out,
        "-- archive: START TRANSACTION; the locked rows, streamed from memory{}:\n{};",
        if queries.archive.load_data {
            " (INSERT ... VALUES where the server refuses LOAD DATA LOCAL)"
        } else {
            " (a column type rules LOAD DATA out: INSERT ... VALUES)"
        },
        if queries.archive.load_data {
            queries.load_rows()
        } else {
            queries.insert_rows(1)
        }
    )?;
    writeln!(
        out,
        "-- meanwhile the source, in its transaction: {};",
        sql::DELETE_SAVEPOINT
    )?;
    for delete in &delete {
        writeln!(out, "{};\n-- parameters: {:?}", delete.sql, delete.params)?;
    }
    writeln!(
        out,
        "-- archive: any row skipped or changed (a key it holds, a value it refuses): ROLLBACK; then\n-- START TRANSACTION; the keys it holds among the locked ones; INSERT the others:\n{};\n-- archive: COMMIT;",
        queries.insert_rows(1)
    )?;
    writeln!(
        out,
        "-- archive: the committed rows in the batch's range, at most one more than locked (more:\n-- by the locked keys instead):\n{};\n-- parameters: {:?}",
        archived.sql, archived.params
    )?;
    writeln!(
        out,
        "-- source: the delete stands if every locked row's archive copy is identical in every\n-- column and it deleted as many rows as were locked; else {}; and, for the\n-- identical ones (a locked row with no archive row under its key fails the batch; one with a\n-- different row is a conflict):",
        sql::ROLLBACK_TO_DELETE_SAVEPOINT
    )?;
    writeln!(
        out,
        "{};\n-- source: COMMIT;",
        queries.delete_keys(std::slice::from_ref(upper)).sql
    )
}

/// The statements of a batch with the archive on the source server: one transaction.
fn one_transaction_batch(
    queries: &Queries,
    plan_locked: &crate::db::sql::Statement,
    lower: Option<&Key>,
    upper: &Key,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    writeln!(
        out,
        "\n-- the batch transaction (READ COMMITTED)\nSTART TRANSACTION;"
    )?;
    for (what, statement) in [
        (
            "plan the batch and lock its matching rows, returning their keys (a batch run \
             again, or planned without locks because another session held a row, locks with \
             this instead:\n-- {lock})",
            plan_locked.clone(),
        ),
        (
            "copy the batch's rows (a batch just planned; on a duplicate key, the guarded \
             copy that follows instead)",
            queries.copy_batch_unguarded(lower, upper),
        ),
        (
            "copy the rows whose key the archive lacks",
            queries.copy_batch(lower, upper),
        ),
    ]
    .into_iter()
    .chain(
        queries
            .delete_batch(lower, upper)
            .into_iter()
            .map(|delete| {
                (
                    "delete the rows with an identical archive copy, returning their keys",
                    delete,
                )
            }),
    )
    .chain([(
        "only if a locked row was not deleted: the locked rows left, conflicts or a \
         failed copy that fails the batch",
        queries.leftovers(lower, upper),
    )]) {
        let what = what.replace("{lock}", &queries.lock_batch(lower, upper).sql);
        writeln!(
            out,
            "-- {what}\n{};\n-- parameters: {:?}",
            statement.sql, statement.params
        )?;
    }
    writeln!(
        out,
        "-- the batch's BatchCommitting record is made durable in the WAL, then\nCOMMIT;"
    )
}
