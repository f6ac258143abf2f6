//! The schema-safety pre-flight: everything that must hold before the first row moves, checked
//! read-only by `run` and by `--dry-run` alike, with **every finding listed at once**, each
//! saying what to do. A job with any finding is refused (exit 64) and nothing is written.
//!
//! What it guards is the promise that nothing outside the job changes and that nothing is left
//! behind in silence: tables whose copies could differ from their source rows (column types,
//! character sets, collations, generated expressions, columns the job's user cannot see), keys
//! the statements cannot walk exactly (no primary key, a key on a column prefix), archive unique
//! keys a copy could collide with, foreign keys and triggers that would change other tables,
//! a predicate that is not deterministic or reads the archive, privileges the batch statements
//! need (proved by `EXPLAIN`ing the real statements, which checks privileges without running
//! them), a binary log format in which the statements fail, and a WAL directory that cannot be
//! written.
//!
//! - `tables.rs`: what pre-flight learns of a table ([`TableInfo`]) and reading it;
//! - `compare.rs`: the pure comparisons of the two tables;
//! - `words.rs`: the predicate split into words, outside strings and comments;
//! - `predicate.rs`: the checks of the predicate and of the sql_mode it is read under;
//! - `server.rs`: binary log format, `read_only`, same server, same table;
//! - `wal_dir.rs`: the WAL directory;
//! - `explain.rs`: the predicate and the batch statements proved by `EXPLAIN`;
//! - `tests.rs`: the unit tests of the pure checks;
//! - this file: [`check`], which reads both tables, runs every check in a fixed order and lists
//!   every finding.

mod compare;
mod explain;
mod predicate;
mod server;
mod tables;
#[cfg(test)]
mod tests;
mod wal_dir;
mod words;

pub use compare::table_differences;
pub use predicate::{predicate_findings, sql_mode_findings};
pub use server::same_table;
pub use tables::{defined_columns, ColumnInfo, ForeignKeyInfo, IndexInfo, TableInfo, TriggerInfo};
pub use wal_dir::wal_dir_findings;

use mysql_async::Conn;

use crate::config::{JobConfig, Refusal, TableName};
use crate::db;
use crate::db::sql::{self, Queries};

use explain::{invalid_predicate, statement_proof};
use predicate::server_predicate_findings;
use server::{reach_the_same_server, same_table_finding, server_findings, Servers};
use tables::read_table;

/// The whole pre-flight: reads both tables, checks everything this module guards, and returns
/// the statements of the job, or a [`Refusal`] listing every finding. Read-only.
/// `archive_conn` is the archive server's connection when it has its own.
pub async fn check(
    conn: &mut Conn,
    mut archive_conn: Option<&mut Conn>,
    config: &JobConfig,
) -> db::DbResult<Queries> {
    let servers = Servers::of(config);
    let mut findings = Vec::new();
    findings.extend(wal_dir_findings(&config.wal_dir));
    let same_server = match archive_conn.as_deref_mut() {
        None => true,
        Some(archive_conn) => reach_the_same_server(conn, archive_conn).await?,
    };
    if same_server {
        findings.extend(same_table_finding(conn, config, &servers).await?);
    }
    findings.extend(server_predicate_findings(conn, &config.predicate).await?);
    findings.extend(server_findings(conn, &servers.source).await?);
    let (source, archive) = read_tables(
        conn,
        archive_conn.as_deref_mut(),
        config,
        &servers,
        &mut findings,
    )
    .await?;
    let source_columns: Vec<String> = source
        .iter()
        .flat_map(|s| s.defined_columns.clone())
        .collect();
    findings.extend(predicate_findings(
        &config.predicate,
        same_server.then_some(&config.archive.table),
        &source_columns,
    ));
    let (Some(source), Some(archive)) = (source, archive) else {
        return Err(Refusal::findings(findings).into());
    };
    findings.extend(compare::findings(&source, &archive, config));
    let queries = Queries {
        source: source.shape(&config.source.table),
        archive: archive.shape(&config.archive.table),
        predicate: config.predicate.clone(),
        neighbours: config.batching.parallel > 1,
    };
    match invalid_predicate(conn, &queries, &config.source.table).await {
        Some(invalid) => findings.push(invalid),
        // The statements are built from the tables and the predicate: only worth proving once
        // those are sound.
        None if findings.is_empty() => {
            findings.extend(statement_proof(conn, archive_conn, &queries, &servers).await?);
        }
        None => {}
    }
    if findings.is_empty() {
        Ok(queries)
    } else {
        Err(Refusal::findings(findings).into())
    }
}

/// Reads both tables: the source, then the archive on its own server (whose server findings
/// come first) or on the source's. A table that cannot be used is `None`, its finding recorded.
async fn read_tables(
    conn: &mut Conn,
    archive_conn: Option<&mut Conn>,
    config: &JobConfig,
    servers: &Servers,
    findings: &mut Vec<String>,
) -> db::DbResult<(Option<TableInfo>, Option<TableInfo>)> {
    let (source_name, archive_name) = (&config.source.table, &config.archive.table);
    let source_hint = "check [source] table and url".to_string();
    let source = table_or_finding(
        conn,
        source_name,
        "source",
        &servers.source,
        source_hint,
        findings,
    )
    .await?;
    let archive_conn = match archive_conn {
        Some(archive_conn) => {
            findings.extend(server_findings(archive_conn, &servers.archive).await?);
            archive_conn
        }
        None => conn,
    };
    let create_hint = format!(
        "create it first, e.g. CREATE TABLE {} LIKE {}",
        sql::qualified(&archive_name.schema, &archive_name.table),
        sql::qualified(&source_name.schema, &source_name.table)
    );
    let archive = table_or_finding(
        archive_conn,
        archive_name,
        "archive",
        &servers.archive,
        create_hint,
        findings,
    )
    .await?;
    Ok((source, archive))
}

/// Reads a table and returns its definition, or records why it cannot be used.
async fn table_or_finding(
    conn: &mut Conn,
    name: &TableName,
    role: &str,
    server: &str,
    hint: String,
    findings: &mut Vec<String>,
) -> db::DbResult<Option<TableInfo>> {
    Ok(match read_table(conn, name).await? {
        None => {
            findings.push(format!(
                "{role} table {name} does not exist on {server}; {hint}"
            ));
            None
        }
        Some(Err(finding)) => {
            findings.push(finding);
            None
        }
        Some(Ok(info)) => Some(info),
    })
}
