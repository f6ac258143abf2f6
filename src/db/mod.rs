//! The MySQL/MariaDB side: connections and their session settings, batch planning and
//! the batch transaction, and the classification of server errors. The statements themselves
//! come from `crate::db::sql`.

use std::time::{Duration, Instant};

pub mod preflight;
pub mod sql;

use mysql_async::prelude::*;
use mysql_async::{Conn, Params, Row, Value};

use self::sql::{Queries, Statement};
use crate::config::{ConfigError, Endpoint};
use crate::event::{ErrorClass, Key, KeyValue};

/// A refusal found before anything moved: the job as configured cannot run against these
/// tables. The CLI exits with the configuration-error code.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

impl Refusal {
    /// One refusal listing every finding: the finding itself when there is one, else a line
    /// saying how many, then one indented line each.
    pub fn findings(findings: Vec<String>) -> Refusal {
        assert!(!findings.is_empty(), "a refusal has a reason");
        if findings.len() == 1 {
            return Refusal(findings.into_iter().next().expect("one finding"));
        }
        let list: Vec<String> = findings.iter().map(|f| format!("  - {f}")).collect();
        Refusal(format!(
            "the job is refused before any row moves, for {} reasons (fix each, then run again):\n{}",
            findings.len(),
            list.join("\n")
        ))
    }
}

/// The server stayed unreachable for the whole reconnection window. Deliberately not a
/// `mysql_async::Error`, so that [`classify`] calls it fatal: the run stops, and the next one
/// resumes.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(pub String);

/// Delay before the first reconnection attempt, in milliseconds; it doubles each time.
const RECONNECT_DELAY_MS_MIN: u64 = 100;
/// Longest delay between reconnection attempts, in milliseconds.
const RECONNECT_DELAY_MS_MAX: u64 = 2_000;

fn to_value(key: &KeyValue) -> Value {
    match key {
        KeyValue::Int(v) => Value::Int(*v),
        KeyValue::UInt(v) => Value::UInt(*v),
        KeyValue::Bytes(v) => Value::Bytes(v.clone()),
        KeyValue::Date(y, m, d, h, i, s, us) => Value::Date(*y, *m, *d, *h, *i, *s, *us),
        KeyValue::Time(neg, d, h, i, s, us) => Value::Time(*neg, *d, *h, *i, *s, *us),
    }
}

fn from_value(value: Value) -> anyhow::Result<KeyValue> {
    Ok(match value {
        Value::Int(v) => KeyValue::Int(v),
        Value::UInt(v) => KeyValue::UInt(v),
        Value::Bytes(v) => KeyValue::Bytes(v),
        Value::Date(y, m, d, h, i, s, us) => KeyValue::Date(y, m, d, h, i, s, us),
        Value::Time(neg, d, h, i, s, us) => KeyValue::Time(neg, d, h, i, s, us),
        Value::NULL => anyhow::bail!("the server returned NULL for a primary key column"),
        Value::Float(_) | Value::Double(_) => {
            // The pre-flight refuses such keys; reaching this is a bug, not bad input.
            anyhow::bail!("floating-point primary key columns are not supported (the pre-flight should have refused this table)")
        }
    })
}

pub(crate) fn row_to_key(row: Row) -> anyhow::Result<Key> {
    row.unwrap().into_iter().map(from_value).collect()
}

/// Whether a boolean the server computed (`EXISTS`, a comparison) is true, in either protocol.
fn is_true(value: &Value) -> bool {
    match value {
        Value::Int(v) => *v != 0,
        Value::UInt(v) => *v != 0,
        Value::Bytes(v) => v.as_slice() != b"0",
        _ => false,
    }
}

pub(crate) fn params(statement: &Statement) -> Params {
    if statement.params.is_empty() {
        Params::Empty
    } else {
        Params::Positional(statement.params.iter().map(to_value).collect())
    }
}

/// How an error from the server or the driver affects a batch.
pub fn classify(error: &anyhow::Error) -> ErrorClass {
    if error.chain().any(|e| e.is::<NotCopied>()) {
        return ErrorClass::Batch;
    }
    let Some(error) = error
        .chain()
        .find_map(|e| e.downcast_ref::<mysql_async::Error>())
    else {
        return ErrorClass::Fatal;
    };
    match error {
        mysql_async::Error::Server(server) => match server.code {
            // Deadlock, lock wait timeout, query interrupted/killed, server shutting down,
            // read-only while failing over, too many connections, WSREP not ready.
            1213 | 1205 | 1317 | 1927 | 1053 | 1290 | 1040 | 1047 | 1180 | 1181 => {
                ErrorClass::Transient
            }
            // Values the archive rejects: out of range, too long, bad value, an ENUM/SET value
            // it lacks (1265), duplicate on a secondary unique key, constraint failures, an
            // error SIGNALled by a trigger; a source row a RESTRICT foreign key keeps (1451,
            // only with allow_foreign_keys). Only this batch is affected: it is parked.
            1264 | 1406 | 1366 | 1292 | 1265 | 1062 | 1048 | 1451 | 1452 | 1690 | 3819 | 4025
            | 1644 => ErrorClass::Batch,
            // Everything else (missing table or column, permissions, syntax) stops the run.
            _ => ErrorClass::Fatal,
        },
        // Lost connection, refused connection, broken pipe: the server may be restarting.
        mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => ErrorClass::Transient,
        _ => ErrorClass::Fatal,
    }
}

/// A failed connect as the operator should read it: the server's refusals that only the job
/// file or the server's grants can fix (no such database, access denied) are configuration
/// errors naming what to do; anything else keeps the driver's error for classification.
fn connect_error(error: mysql_async::Error, endpoint: &Endpoint) -> anyhow::Error {
    let server = endpoint.server();
    if let mysql_async::Error::Server(e) = &error {
        let advice = match e.code {
            1049 => Some("the url names a database the server does not have; fix the url or create the database"),
            1044 | 1045 => Some("check the url's user, the password source, and the user's grants (README: minimal grants)"),
            _ => None,
        };
        if let Some(advice) = advice {
            return ConfigError(format!(
                "cannot connect to {server}: {} (error {}); {advice}",
                e.message, e.code
            ))
            .into();
        }
    }
    anyhow::Error::new(error).context(format!("cannot connect to {server}"))
}

/// Opens a connection and sets the job's session options.
pub async fn connect(endpoint: &Endpoint, lock_wait_timeout_s: u32) -> anyhow::Result<Conn> {
    let mut conn = Conn::new(endpoint.connect_opts()?)
        .await
        .map_err(|e| connect_error(e, endpoint))?;
    for statement in sql::session_setup(lock_wait_timeout_s) {
        conn.query_drop(statement).await?;
    }
    Ok(conn)
}

/// Connects, retrying with backoff while the error is transient, for up to `timeout`.
pub async fn connect_patiently(
    endpoint: &Endpoint,
    lock_wait_timeout_s: u32,
    timeout: Duration,
) -> anyhow::Result<Conn> {
    let start = Instant::now();
    let mut delay_ms = RECONNECT_DELAY_MS_MIN;
    loop {
        match connect(endpoint, lock_wait_timeout_s).await {
            Ok(conn) => return Ok(conn),
            Err(e) if classify(&e) == ErrorClass::Transient && start.elapsed() < timeout => {
                tracing::info!("{e:#}; retrying in {delay_ms} ms");
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                delay_ms = (delay_ms * 2).min(RECONNECT_DELAY_MS_MAX);
            }
            Err(e) if classify(&e) == ErrorClass::Transient => {
                return Err(Unreachable(format!(
                    "{e:#} (gave up after {} s of reconnecting; the next run resumes)",
                    start.elapsed().as_secs()
                ))
                .into())
            }
            Err(e) => return Err(e),
        }
    }
}

/// Pins the session's `NOW()` to a run's moment.
pub async fn set_timestamp(conn: &mut Conn, now_unix_us: i64) -> anyhow::Result<()> {
    conn.query_drop(sql::set_timestamp(now_unix_us)).await?;
    Ok(())
}

/// The largest primary key in the source, or `None` when it is empty.
pub async fn key_bound(conn: &mut Conn, queries: &Queries) -> anyhow::Result<Option<Key>> {
    let statement = queries.key_bound();
    let row: Option<Row> = conn
        .exec_first(statement.sql.as_str(), params(&statement))
        .await?;
    row.map(row_to_key).transpose()
}

/// The next batch after `after`: its inclusive upper key and the matching rows seen, or `None`
/// when no matching row is left up to `bound`.
pub async fn plan(
    conn: &mut Conn,
    queries: &Queries,
    after: Option<&Key>,
    bound: &Key,
    rows: u32,
) -> anyhow::Result<Option<(Key, u64)>> {
    let statement = queries.plan(after, bound, rows);
    let keys: Vec<Row> = conn
        .exec(statement.sql.as_str(), params(&statement))
        .await?;
    let count = keys.len() as u64;
    match keys.into_iter().last() {
        None => Ok(None),
        Some(row) => Ok(Some((row_to_key(row)?, count))),
    }
}

/// What one batch transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchResult {
    /// Rows inserted into the archive.
    pub rows_copied: u64,
    /// Rows whose identical copy the archive already held.
    pub rows_already: u64,
    /// Rows deleted from the source.
    pub rows_deleted: u64,
    /// Keys kept in the source because the archive holds a different row under them.
    pub conflicts: Vec<Key>,
}

/// A batch whose locked rows did not all end up either deleted or reported as conflicts: some
/// have no row under their key in the archive after the copy (an archive trigger changed the
/// key, or a row was refused without an error). The batch's transaction is rolled back and the
/// batch fails with [`ErrorClass::Batch`]: it is parked and reported, never passed as done.
#[derive(Debug, thiserror::Error)]
#[error("{count} locked row(s) of the batch have no row under their key in the archive after the copy (first: key {first}); a trigger on the archive or a key the archive rewrites kept them from landing; the batch was rolled back and the rows stay in the source")]
pub struct NotCopied {
    /// How many locked rows are missing from the archive.
    pub count: usize,
    /// The first missing key, as text.
    pub first: String,
}

/// Sorts the rows a batch locked but did not delete: under a key the archive holds, a
/// conflict; under a key the archive lacks, a failed copy ([`NotCopied`]). Rows that were not
/// locked (they entered the range after the lock) are none of this batch's business.
fn sort_leftovers(
    locked: &std::collections::HashSet<Key>,
    leftovers: Vec<(Key, bool)>,
) -> Result<Vec<Key>, NotCopied> {
    let mut conflicts = Vec::new();
    let mut missing = Vec::new();
    for (key, archived) in leftovers {
        if !locked.contains(&key) {
            continue;
        }
        if archived {
            conflicts.push(key);
        } else {
            missing.push(key);
        }
    }
    match missing.first() {
        None => Ok(conflicts),
        Some(first) => Err(NotCopied {
            count: missing.len(),
            first: crate::state::key_text(first),
        }),
    }
}

/// Runs one batch as one transaction on the source server: lock the batch's matching rows,
/// copy those whose key the archive lacks, delete those with an identical archive copy, sort
/// the locked rows left (conflicts, or a failed copy that fails the batch), commit.
/// Idempotent: running it again after any crash moves nothing twice and loses nothing.
pub async fn execute_batch(
    conn: &mut Conn,
    queries: &Queries,
    lower: Option<&Key>,
    upper: &Key,
) -> anyhow::Result<BatchResult> {
    conn.query_drop("START TRANSACTION").await?;
    let result = batch_statements(conn, queries, lower, upper).await;
    match result {
        Ok(result) => {
            conn.query_drop("COMMIT").await?;
            Ok(result)
        }
        Err(e) => {
            // Best effort: if the connection is gone, the server rolls back on its own.
            let _ = conn.query_drop("ROLLBACK").await;
            Err(e)
        }
    }
}

async fn batch_statements(
    conn: &mut Conn,
    queries: &Queries,
    lower: Option<&Key>,
    upper: &Key,
) -> anyhow::Result<BatchResult> {
    let lock = queries.lock_batch(lower, upper);
    let locked: Vec<Row> = conn.exec(lock.sql.as_str(), params(&lock)).await?;
    let locked = locked
        .into_iter()
        .map(row_to_key)
        .collect::<anyhow::Result<std::collections::HashSet<Key>>>()?;
    let copy = queries.copy_batch(lower, upper);
    conn.exec_drop(copy.sql.as_str(), params(&copy)).await?;
    let rows_copied = conn.affected_rows();
    let delete = queries.delete_batch(lower, upper);
    conn.exec_drop(delete.sql.as_str(), params(&delete)).await?;
    let rows_deleted = conn.affected_rows();
    // Always asked, never inferred from counts: a row that entered the range during the batch
    // can make the counts agree while a locked row was kept.
    let statement = queries.leftovers(lower, upper);
    let rows: Vec<Row> = conn
        .exec(statement.sql.as_str(), params(&statement))
        .await?;
    let leftovers = rows
        .into_iter()
        .map(|row| {
            let mut values = row.unwrap();
            let archived = values.pop().is_some_and(|flag| is_true(&flag));
            let key = values
                .into_iter()
                .map(from_value)
                .collect::<anyhow::Result<Key>>()?;
            Ok((key, archived))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let conflicts = sort_leftovers(&locked, leftovers)?;
    let rows_already = rows_deleted.saturating_sub(rows_copied);
    Ok(BatchResult {
        rows_copied,
        rows_already,
        rows_deleted,
        conflicts,
    })
}

/// Most placeholders one prepared statement may carry (the protocol counts them in 16 bits).
const PLACEHOLDERS_MAX: usize = 65_535;

/// Most keys one statement lists (`Queries::select_archived`, `Queries::delete_keys`). The
/// optimizer turns each listed key into a range of the primary key, within
/// `range_optimizer_max_mem_size` (8 MiB by default); past that it gives up and scans the whole
/// table. Measured on MariaDB 10.11 with a two-column key: 20,000 keys still a range, 32,000 a
/// scan of all 200,000 rows. A thousand keys per statement stay far below it.
const KEYS_PER_STATEMENT_MAX: usize = 1_000;

/// Keys of `width` columns one statement may list: within the placeholder limit and
/// [`KEYS_PER_STATEMENT_MAX`].
fn keys_per_statement(width: usize) -> usize {
    (PLACEHOLDERS_MAX / width.max(1)).clamp(1, KEYS_PER_STATEMENT_MAX)
}

/// A row as the server sent it (binary protocol), in [`Queries::select_batch`] column order:
/// the copied columns, then the key as the statements compare it.
pub type RowValues = Vec<Value>;

fn key_of(row: &[Value], positions: std::ops::Range<usize>) -> anyhow::Result<Key> {
    row[positions].iter().cloned().map(from_value).collect()
}

/// Archive on another server, step 1: starts the source transaction and locks the batch's
/// matching rows, returning them. The locks hold until [`delete_archived`] commits.
pub async fn lock_batch_rows(
    source: &mut Conn,
    queries: &Queries,
    lower: Option<&Key>,
    upper: &Key,
) -> anyhow::Result<Vec<RowValues>> {
    source.query_drop("START TRANSACTION").await?;
    let statement = queries.select_batch(lower, upper, true);
    let rows: Vec<Row> = source
        .exec(statement.sql.as_str(), params(&statement))
        .await?;
    Ok(rows.into_iter().map(Row::unwrap).collect())
}

/// The archive's rows under the keys of `rows` (the batch's locked rows), by key, read in
/// chunks that fit the placeholder limit.
async fn archived_rows(
    archive: &mut Conn,
    queries: &Queries,
    rows: &[RowValues],
) -> anyhow::Result<std::collections::HashMap<Key, RowValues>> {
    let positions = queries.key_positions();
    let keys = rows
        .iter()
        .map(|row| key_of(row, positions.clone()))
        .collect::<anyhow::Result<Vec<Key>>>()?;
    let per_statement = keys_per_statement(positions.len());
    let mut by_key = std::collections::HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(per_statement) {
        let statement = queries.select_archived(chunk);
        let archived: Vec<Row> = archive
            .exec(statement.sql.as_str(), params(&statement))
            .await?;
        for row in archived {
            let row = row.unwrap();
            by_key.insert(key_of(&row, positions.clone())?, row);
        }
    }
    Ok(by_key)
}

/// Archive on another server, step 2: inserts the locked rows whose key the archive lacks, in
/// one archive transaction, and commits it. Returns the rows inserted. A plain `INSERT`: a row
/// colliding with an archive row on another unique key fails the batch.
pub async fn copy_rows(
    archive: &mut Conn,
    queries: &Queries,
    rows: &[RowValues],
) -> anyhow::Result<u64> {
    archive.query_drop("START TRANSACTION").await?;
    let copied = insert_missing(archive, queries, rows).await;
    match copied {
        Ok(copied) => {
            archive.query_drop("COMMIT").await?;
            Ok(copied)
        }
        Err(e) => {
            let _ = archive.query_drop("ROLLBACK").await;
            Err(e)
        }
    }
}

async fn insert_missing(
    archive: &mut Conn,
    queries: &Queries,
    rows: &[RowValues],
) -> anyhow::Result<u64> {
    let positions = queries.key_positions();
    let present = archived_rows(archive, queries, rows).await?;
    let mut missing = Vec::new();
    for row in rows {
        if !present.contains_key(&key_of(row, positions.clone())?) {
            missing.push(row);
        }
    }
    let rows_per_statement = (PLACEHOLDERS_MAX / queries.source.columns.len()).max(1);
    let mut copied = 0;
    for chunk in missing.chunks(rows_per_statement) {
        // The copied columns only; the key read after them is not the archive's to store.
        let copied_columns = queries.source.columns.len();
        let values: Vec<Value> = chunk
            .iter()
            .flat_map(|row| row[..copied_columns].iter().cloned())
            .collect();
        archive
            .exec_drop(queries.insert_rows(chunk.len()), Params::Positional(values))
            .await?;
        copied += archive.affected_rows();
    }
    Ok(copied)
}

/// Archive on another server, step 3, in the source transaction of [`lock_batch_rows`]:
/// reads the archive's committed rows under the locked keys, deletes the locked source rows
/// whose archive row is identical in every column (compared byte for byte, as the server sent
/// them, both sessions pinned to the same time zone and character set), lists the conflicts,
/// and commits the source transaction. A locked row with no archive row under its key fails
/// the batch ([`NotCopied`]) and nothing is deleted.
pub async fn delete_archived(
    source: &mut Conn,
    archive: &mut Conn,
    queries: &Queries,
    locked: Vec<RowValues>,
) -> anyhow::Result<BatchResult> {
    let positions = queries.key_positions();
    let by_key = archived_rows(archive, queries, &locked).await?;
    let mut identical = Vec::new();
    let mut conflicts = Vec::new();
    let mut missing = Vec::new();
    for row in &locked {
        let key = key_of(row, positions.clone())?;
        match by_key.get(&key) {
            Some(copy) if copy == row => identical.push(key),
            Some(_) => conflicts.push(key),
            None => missing.push(key),
        }
    }
    if let Some(first) = missing.first() {
        let _ = source.query_drop("ROLLBACK").await;
        return Err(NotCopied {
            count: missing.len(),
            first: crate::state::key_text(first),
        }
        .into());
    }
    let per_statement = keys_per_statement(positions.len());
    let mut deleted = 0;
    for chunk in identical.chunks(per_statement) {
        let statement = queries.delete_keys(chunk);
        source
            .exec_drop(statement.sql.as_str(), params(&statement))
            .await?;
        deleted += source.affected_rows();
    }
    if deleted != identical.len() as u64 {
        let _ = source.query_drop("ROLLBACK").await;
        anyhow::bail!(
            "deleting {} locked rows with identical archive copies deleted {deleted}; rolled back",
            identical.len()
        );
    }
    source.query_drop("COMMIT").await?;
    Ok(BatchResult {
        rows_copied: 0,
        rows_already: 0,
        rows_deleted: deleted,
        conflicts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: i64) -> Key {
        vec![KeyValue::Int(id)]
    }

    /// The rows a batch left are judged by what the archive holds under their keys, never by
    /// counts: a locked row under an archived key is a conflict, a locked row under a key the
    /// archive lacks fails the batch, and a row that entered the range after the lock is none
    /// of the batch's business.
    #[test]
    fn leftovers_are_sorted_by_what_the_archive_holds() {
        let locked: std::collections::HashSet<Key> = [1, 2, 3].map(key).into_iter().collect();
        let conflicts = sort_leftovers(&locked, vec![(key(2), true), (key(9), false)]).unwrap();
        assert_eq!(conflicts, vec![key(2)]);
        assert_eq!(sort_leftovers(&locked, vec![]).unwrap(), Vec::<Key>::new());
        let error = sort_leftovers(
            &locked,
            vec![(key(1), true), (key(3), false), (key(2), false)],
        )
        .unwrap_err();
        assert_eq!(error.count, 2);
        assert!(error.to_string().contains("first: key (3)"), "{error}");
        let classified = classify(&anyhow::Error::new(error).context("batch 7"));
        assert_eq!(
            classified,
            ErrorClass::Batch,
            "a failed copy parks the batch"
        );
    }

    #[test]
    fn a_refusal_lists_every_finding() {
        let one = Refusal::findings(vec!["only this".into()]);
        assert_eq!(one.to_string(), "only this");
        let two = Refusal::findings(vec!["first".into(), "second".into()]).to_string();
        assert_eq!(
            two,
            "the job is refused before any row moves, for 2 reasons (fix each, then run again):\n  - first\n  - second"
        );
    }
}
