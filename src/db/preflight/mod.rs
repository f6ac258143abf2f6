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
//! - `explain.rs`: the batch statements proved by `EXPLAIN`;
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

use mysql_async::prelude::*;
use mysql_async::{Conn, Params};

use crate::config::Refusal;
use crate::config::{Endpoint, JobConfig, TableName};
use crate::db;
use crate::db::sql::{self, Queries};
use crate::event::KeyValue;

use compare::{
    foreign_key_findings, hidden_columns, key_findings, trigger_findings, unique_key_findings,
};
use explain::statement_findings;
use predicate::stored_function_findings;
use server::{reach_the_same_server, server_findings};
use tables::read_table;

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

/// The whole pre-flight: reads both tables, checks everything this module guards, and returns
/// the statements of the job, or a [`Refusal`] listing every finding. Read-only.
/// `archive_conn` is the archive server's connection when it has its own.
pub async fn check(
    conn: &mut Conn,
    mut archive_conn: Option<&mut Conn>,
    config: &JobConfig,
) -> db::DbResult<Queries> {
    let (source_name, archive_name) = (&config.source.table, &config.archive.table);
    let source_server = config.source.endpoint.server();
    let archive_server = config
        .archive
        .endpoint
        .as_ref()
        .map_or_else(|| source_server.clone(), Endpoint::server);
    let mut findings = Vec::new();
    findings.extend(wal_dir_findings(&config.wal_dir));
    let same_server = match archive_conn.as_deref_mut() {
        None => true,
        Some(archive_conn) => reach_the_same_server(conn, archive_conn).await?,
    };
    if same_server {
        let lower_case: Option<u32> = conn.query_first(sql::LOWER_CASE_TABLE_NAMES).await?;
        if same_table(source_name, archive_name, lower_case.unwrap_or(0)) {
            findings.push(format!(
                "the archive table {archive_name} is the source table {source_name} ({}): the archive would be the source itself, every row would look archived already and be deleted; name a different archive table",
                match config.archive.endpoint {
                    Some(_) => format!("[archive] url reaches the same server, {archive_server} and {source_server}"),
                    None => "the server compares table names without regard to case (lower_case_table_names)".to_string(),
                }
            ));
        }
    }
    findings.extend(stored_function_findings(conn, &config.predicate).await?);
    let global_sql_mode: Option<String> = conn.query_first(sql::GLOBAL_SQL_MODE).await?;
    findings.extend(sql_mode_findings(
        &global_sql_mode.unwrap_or_default(),
        &config.predicate,
    ));
    findings.extend(server_findings(conn, &source_server).await?);
    let source = table_or_finding(
        conn,
        source_name,
        "source",
        &source_server,
        "check [source] table and url".into(),
        &mut findings,
    )
    .await?;
    let create_hint = format!(
        "create it first, e.g. CREATE TABLE {} LIKE {}",
        sql::qualified(&archive_name.schema, &archive_name.table),
        sql::qualified(&source_name.schema, &source_name.table)
    );
    let archive = match archive_conn.as_deref_mut() {
        Some(archive_conn) => {
            findings.extend(server_findings(archive_conn, &archive_server).await?);
            table_or_finding(
                archive_conn,
                archive_name,
                "archive",
                &archive_server,
                create_hint,
                &mut findings,
            )
            .await?
        }
        None => {
            table_or_finding(
                conn,
                archive_name,
                "archive",
                &archive_server,
                create_hint,
                &mut findings,
            )
            .await?
        }
    };
    let source_columns: Vec<String> = source
        .iter()
        .flat_map(|s| s.defined_columns.clone())
        .collect();
    findings.extend(predicate_findings(
        &config.predicate,
        same_server.then_some(archive_name),
        &source_columns,
    ));
    let (Some(source), Some(archive)) = (source, archive) else {
        return Err(Refusal::findings(findings).into());
    };
    let hidden: Vec<String> = [
        hidden_columns(&source, source_name, "source"),
        hidden_columns(&archive, archive_name, "archive"),
    ]
    .into_iter()
    .flatten()
    .collect();
    // Columns the user cannot see make every comparison of the definitions meaningless.
    let definitions_known = hidden.is_empty();
    findings.extend(hidden);
    findings.extend(key_findings(&source, source_name, "source"));
    if source.primary().is_some() {
        findings.extend(key_findings(&archive, archive_name, "archive"));
    }
    let differences = match definitions_known {
        true => table_differences(&source, &archive),
        false => Vec::new(),
    };
    if !differences.is_empty() {
        findings.push(format!(
            "archive table {archive_name} does not match source table {source_name}: {}",
            differences.join("; ")
        ));
    }
    findings.extend(unique_key_findings(&source, &archive));
    let safety = &config.safety;
    findings.extend(trigger_findings(
        &source,
        source_name,
        &archive,
        archive_name,
        &safety.allow_triggers,
    ));
    findings.extend(foreign_key_findings(
        &source,
        source_name,
        &safety.allow_foreign_keys,
    ));
    let queries = Queries {
        source: source.shape(source_name),
        archive: archive.shape(archive_name),
        predicate: config.predicate.clone(),
    };
    let explain_predicate = queries.explain_predicate();
    if let Err(e) = conn
        .exec_drop(explain_predicate.sql.as_str(), Params::Empty)
        .await
    {
        findings.push(format!(
            "[job] where = {:?} is not a valid predicate on {source_name}: {e}",
            config.predicate
        ));
    } else if findings.is_empty() {
        // The statements are built from the tables and the predicate: only worth proving once
        // those are sound. They are proved even for an empty source (with a stand-in key that
        // EXPLAIN never compares with a row), so that a job set up before its first rows exist
        // does not pass a dry run and then fail on the night rows appear.
        let bound = match db::key_bound(conn, &queries).await? {
            Some(bound) => bound,
            None => vec![KeyValue::Bytes(b"0".to_vec()); queries.source.key.len()],
        };
        let servers = (source_server.as_str(), archive_server.as_str());
        findings.extend(statement_findings(conn, archive_conn, &queries, &bound, servers).await);
    }
    if findings.is_empty() {
        Ok(queries)
    } else {
        Err(Refusal::findings(findings).into())
    }
}
