//! The MySQL/MariaDB side: connections, pre-flight checks of the two tables, batch planning and
//! the batch transaction, and the classification of server errors. The statements themselves
//! come from `crate::sql`.

use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use mysql_async::{Conn, Params, Row, Value};

use crate::config::{Endpoint, JobConfig, TableName};
use crate::event::{ErrorClass, Key, KeyValue};
use crate::sql::{self, Queries, Statement, TableShape};

/// A refusal found before anything moved: the job as configured cannot run against these
/// tables. The CLI exits with the configuration-error code.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

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
            anyhow::bail!("floating-point primary key columns are not supported")
        }
    })
}

fn row_to_key(row: Row) -> anyhow::Result<Key> {
    row.unwrap().into_iter().map(from_value).collect()
}

fn params(statement: &Statement) -> Params {
    if statement.params.is_empty() {
        Params::Empty
    } else {
        Params::Positional(statement.params.iter().map(to_value).collect())
    }
}

/// How an error from the server or the driver affects a batch.
pub fn classify(error: &anyhow::Error) -> ErrorClass {
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
            // Values the archive rejects: out of range, too long, bad value, duplicate on a
            // secondary unique key, constraint failures, an error SIGNALled by a trigger on the
            // archive. Only this batch is affected.
            1264 | 1406 | 1366 | 1292 | 1062 | 1048 | 1452 | 3819 | 4025 | 1644 => {
                ErrorClass::Batch
            }
            // Everything else (missing table or column, permissions, syntax) stops the run.
            _ => ErrorClass::Fatal,
        },
        // Lost connection, refused connection, broken pipe: the server may be restarting.
        mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => ErrorClass::Transient,
        _ => ErrorClass::Fatal,
    }
}

/// A column as read from information_schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    /// Name.
    pub name: String,
    /// Full type, e.g. `decimal(12,2)`.
    pub column_type: String,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// Whether it is a generated column (never copied; the archive computes its own).
    pub generated: bool,
    /// Whether it holds text compared under a collation.
    pub text: bool,
}

/// What pre-flight learns of a table.
#[derive(Debug, Clone)]
pub struct TableInfo {
    /// Columns in table order.
    pub columns: Vec<ColumnInfo>,
    /// Primary key columns in key order (empty: none).
    pub key: Vec<String>,
}

impl TableInfo {
    /// The shape the statements are built from.
    pub fn shape(&self, name: &TableName) -> TableShape {
        let copied = self.columns.iter().filter(|c| !c.generated);
        TableShape {
            schema: name.schema.clone(),
            table: name.table.clone(),
            columns: copied.clone().map(|c| c.name.clone()).collect(),
            key: self.key.clone(),
            text_columns: copied.filter(|c| c.text).map(|c| c.name.clone()).collect(),
        }
    }
}

/// Every difference between the source and archive tables that would make a copy
/// non-identical or impossible. Empty: compatible.
pub fn table_differences(source: &TableInfo, archive: &TableInfo) -> Vec<String> {
    let mut differences = Vec::new();
    for column in &source.columns {
        match archive.columns.iter().find(|c| c.name == column.name) {
            None => differences.push(format!(
                "column `{}` is missing in the archive",
                column.name
            )),
            Some(other) => {
                if other.column_type != column.column_type {
                    differences.push(format!(
                        "column `{}` is {} in the source but {} in the archive",
                        column.name, column.column_type, other.column_type
                    ));
                }
                if other.nullable != column.nullable {
                    let null = |n: bool| if n { "NULL" } else { "NOT NULL" };
                    differences.push(format!(
                        "column `{}` is {} in the source but {} in the archive",
                        column.name,
                        null(column.nullable),
                        null(other.nullable)
                    ));
                }
                if other.generated != column.generated {
                    differences.push(format!(
                        "column `{}` is generated in one table and stored in the other",
                        column.name
                    ));
                }
            }
        }
    }
    for column in &archive.columns {
        if !source.columns.iter().any(|c| c.name == column.name) {
            differences.push(format!(
                "column `{}` exists in the archive but not in the source",
                column.name
            ));
        }
    }
    if source.key != archive.key {
        differences.push(format!(
            "the primary key is ({}) in the source but ({}) in the archive",
            source.key.join(", "),
            archive.key.join(", ")
        ));
    }
    differences
}

/// Opens a connection and sets the job's session options.
pub async fn connect(endpoint: &Endpoint, lock_wait_timeout_s: u32) -> anyhow::Result<Conn> {
    let mut conn = Conn::new(endpoint.connect_opts()).await.map_err(|e| {
        anyhow::Error::new(e).context(format!("cannot connect to {}", endpoint.server()))
    })?;
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

async fn table_info(conn: &mut Conn, name: &TableName) -> anyhow::Result<Option<TableInfo>> {
    let args = (name.schema.as_str(), name.table.as_str());
    let kind: Option<(String, String)> = conn.exec_first(sql::TABLE_KIND, args).await?;
    match kind {
        None => return Ok(None),
        Some((kind, engine)) if kind != "BASE TABLE" || !engine.eq_ignore_ascii_case("InnoDB") => {
            return Err(Refusal(format!(
                "{name} is a {kind} with engine {engine:?}; archiver needs InnoDB base tables (transactions and row locks)"
            ))
            .into())
        }
        Some(_) => {}
    }
    let rows: Vec<(String, String, String, String, String)> =
        conn.exec(sql::TABLE_COLUMNS, args).await?;
    let columns = rows
        .into_iter()
        .map(
            |(name, column_type, nullable, extra, data_type)| ColumnInfo {
                name,
                column_type,
                nullable: nullable == "YES",
                generated: extra.to_ascii_uppercase().contains("GENERATED"),
                text: matches!(
                    data_type.to_ascii_lowercase().as_str(),
                    "char"
                        | "varchar"
                        | "tinytext"
                        | "text"
                        | "mediumtext"
                        | "longtext"
                        | "enum"
                        | "set"
                        | "json"
                ),
            },
        )
        .collect();
    let key: Vec<String> = conn.exec(sql::TABLE_PRIMARY_KEY, args).await?;
    Ok(Some(TableInfo { columns, key }))
}

/// Checks both tables and the predicate; returns the statements of the job. Read-only.
/// `archive_conn` is the archive server's connection when it has its own.
pub async fn preflight(
    conn: &mut Conn,
    archive_conn: Option<&mut Conn>,
    config: &JobConfig,
) -> anyhow::Result<Queries> {
    let source = table_info(conn, &config.source_table)
        .await?
        .ok_or_else(|| {
            Refusal(format!(
                "source table {} does not exist on {}; check [source] table and url",
                config.source_table,
                config.source.server()
            ))
        })?;
    if source.key.is_empty() {
        return Err(Refusal(format!(
            "source table {} has no primary key; archiver walks tables in primary-key order and refuses a table without one (add a PRIMARY KEY first)",
            config.source_table
        ))
        .into());
    }
    let archive_server = config
        .archive
        .as_ref()
        .map_or_else(|| config.source.server(), Endpoint::server);
    let archive = match archive_conn {
        Some(archive_conn) => table_info(archive_conn, &config.archive_table).await?,
        None => table_info(conn, &config.archive_table).await?,
    };
    let archive = archive
        .ok_or_else(|| {
            Refusal(format!(
                "archive table {} does not exist on {archive_server}; create it first, e.g. CREATE TABLE {} LIKE {}",
                config.archive_table,
                sql::qualified(&config.archive_table.schema, &config.archive_table.table),
                sql::qualified(&config.source_table.schema, &config.source_table.table)
            ))
        })?;
    let differences = table_differences(&source, &archive);
    if !differences.is_empty() {
        return Err(Refusal(format!(
            "archive table {} does not match source table {}: {}",
            config.archive_table,
            config.source_table,
            differences.join("; ")
        ))
        .into());
    }
    let queries = Queries {
        source: source.shape(&config.source_table),
        archive: archive.shape(&config.archive_table),
        predicate: config.predicate.clone(),
    };
    let explain = queries.explain_predicate();
    if let Err(e) = conn.exec_drop(explain.sql.as_str(), params(&explain)).await {
        return Err(Refusal(format!(
            "[job] where = {:?} is not a valid predicate on {}: {e}",
            config.predicate, config.source_table
        ))
        .into());
    }
    Ok(queries)
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

/// Runs one batch as one transaction on the source server: lock the batch's matching rows,
/// copy those the archive lacks, delete those with an identical archive copy, list conflicts,
/// commit. Idempotent: running it again after any crash moves nothing twice and loses nothing.
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
    let locked: u64 = conn
        .exec_first(lock.sql.as_str(), params(&lock))
        .await?
        .unwrap_or(0);
    let copy = queries.copy_batch(lower, upper);
    conn.exec_drop(copy.sql.as_str(), params(&copy)).await?;
    let rows_copied = conn.affected_rows();
    let delete = queries.delete_batch(lower, upper);
    conn.exec_drop(delete.sql.as_str(), params(&delete)).await?;
    let rows_deleted = conn.affected_rows();
    // Every locked row was either deleted or kept because its archive row differs; only look
    // for conflicts when the counts say some row was kept.
    let conflicts = if rows_deleted < locked {
        let statement = queries.conflicts(lower, upper);
        let rows: Vec<Row> = conn
            .exec(statement.sql.as_str(), params(&statement))
            .await?;
        rows.into_iter()
            .map(row_to_key)
            .collect::<anyhow::Result<_>>()?
    } else {
        Vec::new()
    };
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

/// A row as the server sent it (binary protocol), in [`Queries::select_batch`] column order.
pub type RowValues = Vec<Value>;

fn key_of(row: &[Value], positions: &[usize]) -> anyhow::Result<Key> {
    positions
        .iter()
        .map(|&i| from_value(row[i].clone()))
        .collect()
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

/// Archive on another server, step 2: inserts the rows the archive lacks, in one archive
/// transaction, and commits it. Returns the rows inserted.
pub async fn copy_rows(
    archive: &mut Conn,
    queries: &Queries,
    rows: &[RowValues],
) -> anyhow::Result<u64> {
    archive.query_drop("START TRANSACTION").await?;
    let rows_per_statement = (PLACEHOLDERS_MAX / queries.source.columns.len()).max(1);
    let mut copied = 0;
    for chunk in rows.chunks(rows_per_statement) {
        let values: Vec<Value> = chunk.iter().flatten().cloned().collect();
        let inserted = archive
            .exec_drop(queries.insert_rows(chunk.len()), Params::Positional(values))
            .await;
        if let Err(e) = inserted {
            let _ = archive.query_drop("ROLLBACK").await;
            return Err(e.into());
        }
        copied += archive.affected_rows();
    }
    archive.query_drop("COMMIT").await?;
    Ok(copied)
}

/// Archive on another server, step 3, in the source transaction of [`lock_batch_rows`]:
/// reads the archive's committed rows in the batch's range, deletes the locked source rows
/// whose archive row is identical in every column (compared byte for byte, as the server sent
/// them), lists the conflicts, and commits the source transaction.
pub async fn delete_archived(
    source: &mut Conn,
    archive: &mut Conn,
    queries: &Queries,
    lower: Option<&Key>,
    upper: &Key,
    locked: Vec<RowValues>,
) -> anyhow::Result<BatchResult> {
    let positions = queries.key_positions();
    let statement = queries.select_archived(lower, upper);
    let archived: Vec<Row> = archive
        .exec(statement.sql.as_str(), params(&statement))
        .await?;
    let mut by_key = std::collections::HashMap::with_capacity(archived.len());
    for row in archived {
        let row = row.unwrap();
        by_key.insert(key_of(&row, &positions)?, row);
    }
    let mut identical = Vec::new();
    let mut conflicts = Vec::new();
    for row in &locked {
        let key = key_of(row, &positions)?;
        match by_key.get(&key) {
            Some(copy) if copy == row => identical.push(key),
            Some(_) => conflicts.push(key),
            // Not in the archive (e.g. it entered the range after the copy): left for the
            // next run.
            None => {}
        }
    }
    let keys_per_statement = (PLACEHOLDERS_MAX / positions.len()).max(1);
    let mut deleted = 0;
    for chunk in identical.chunks(keys_per_statement) {
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

    fn column(name: &str, column_type: &str, nullable: bool) -> ColumnInfo {
        ColumnInfo {
            name: name.into(),
            column_type: column_type.into(),
            nullable,
            generated: false,
            text: false,
        }
    }

    #[test]
    fn every_table_difference_is_listed() {
        let source = TableInfo {
            columns: vec![
                column("id", "bigint(20) unsigned", false),
                column("amount", "decimal(12,2)", true),
                column("note", "varchar(255)", true),
            ],
            key: vec!["id".into()],
        };
        let archive = TableInfo {
            columns: vec![
                column("id", "bigint(20) unsigned", false),
                column("amount", "decimal(10,2)", false),
                column("extra", "int(11)", true),
            ],
            key: vec!["id".into(), "amount".into()],
        };
        assert_eq!(
            table_differences(&source, &archive),
            vec![
                "column `amount` is decimal(12,2) in the source but decimal(10,2) in the archive",
                "column `amount` is NULL in the source but NOT NULL in the archive",
                "column `note` is missing in the archive",
                "column `extra` exists in the archive but not in the source",
                "the primary key is (id) in the source but (id, amount) in the archive",
            ]
        );
        assert!(table_differences(&source, &source).is_empty());
    }
}
