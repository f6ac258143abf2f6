//! The proof by `EXPLAIN`: the server checks a statement's syntax, names and privileges without
//! running it, so pre-flight `EXPLAIN`s a statement built with the predicate to prove it valid,
//! then the job's real batch statements to prove that the job's user may run them, before
//! anything moves.

use mysql_async::prelude::*;
use mysql_async::{Conn, Params, Value};

use crate::config::TableName;
use crate::db;
use crate::db::sql::{Queries, Statement};
use crate::event::KeyValue;

use super::server::Servers;

/// `EXPLAIN`s a statement: the server checks its syntax, names and privileges without running
/// it. Returns a finding when it fails.
async fn explain(
    conn: &mut Conn,
    what: &str,
    server: &str,
    sql: &str,
    params: Params,
) -> Option<String> {
    let error = conn
        .exec_drop(format!("EXPLAIN {sql}"), params)
        .await
        .err()?;
    let denied = matches!(&error, mysql_async::Error::Server(e) if matches!(e.code, 1142 | 1143 | 1044 | 1227));
    Some(if denied {
        format!(
            "the job's user may not run the batch's {what} on {server}: {error}; the minimal grants are SELECT, DELETE on the source table and SELECT, INSERT on the archive table (README, \"Minimal grants\")"
        )
    } else {
        format!("the batch's {what} fails on {server}: {error}")
    })
}

/// Runs every batch statement of the job through [`explain`], for a batch that would end at
/// `bound` (the source's largest key).
async fn statement_findings(
    conn: &mut Conn,
    archive_conn: Option<&mut Conn>,
    queries: &Queries,
    bound: &crate::event::Key,
    servers: (&str, &str),
) -> Vec<String> {
    let mut findings = Vec::new();
    let (source_server, archive_server) = servers;
    let probe = |statement: Statement| (statement.sql.clone(), db::params(&statement));
    let source_side: Vec<(&str, (String, Params))> = match archive_conn {
        None => [
            (
                "locking read of the source",
                probe(queries.lock_batch(None, bound)),
            ),
            (
                "copy into the archive",
                probe(queries.copy_batch(None, bound)),
            ),
        ]
        .into_iter()
        .chain(
            (queries.delete_batch(None, bound).into_iter())
                .map(|delete| ("delete from the source", probe(delete))),
        )
        .chain([(
            "check of the rows left",
            probe(queries.leftovers(None, bound)),
        )])
        .collect(),
        Some(archive_conn) => {
            let keys = std::slice::from_ref(bound);
            let row = vec![Value::NULL; queries.source.columns.len()];
            for (what, (sql, params)) in [
                ("read of the archive", probe(queries.select_archived(keys))),
                (
                    "read of the archive's range",
                    probe(queries.select_archived_range(None, bound, 1)),
                ),
                (
                    "read of the archive's keys",
                    probe(queries.archived_keys(keys)),
                ),
                (
                    "insert into the archive",
                    (queries.insert_rows(1), Params::Positional(row)),
                ),
            ] {
                findings.extend(explain(archive_conn, what, archive_server, &sql, params).await);
            }
            vec![
                (
                    "locking read of the source",
                    probe(queries.select_batch(None, bound, true)),
                ),
                ("delete from the source", probe(queries.delete_keys(keys))),
            ]
            .into_iter()
            .chain(
                (queries.delete_range(None, bound, false).into_iter())
                    .map(|delete| ("delete of the source's range", probe(delete))),
            )
            .collect()
        }
    };
    for (what, (sql, params)) in source_side {
        findings.extend(explain(conn, what, source_server, &sql, params).await);
    }
    findings
}

/// The finding that `[job] where` is not a valid predicate on the source table, when the
/// server refuses to `EXPLAIN` a statement built with it.
pub(super) async fn invalid_predicate(
    conn: &mut Conn,
    queries: &Queries,
    source_name: &TableName,
) -> Option<String> {
    let explain_predicate = queries.explain_predicate();
    let e = conn
        .exec_drop(explain_predicate.sql.as_str(), Params::Empty)
        .await
        .err()?;
    Some(format!(
        "[job] where = {:?} is not a valid predicate on {source_name}: {e}",
        queries.predicate
    ))
}

/// Proves every batch statement of the job by [`statement_findings`], for a batch that would
/// end at the source's largest key.
pub(super) async fn statement_proof(
    conn: &mut Conn,
    archive_conn: Option<&mut Conn>,
    queries: &Queries,
    servers: &Servers,
) -> db::DbResult<Vec<String>> {
    // Proved even for an empty source (with a stand-in key that EXPLAIN never compares with a
    // row), so that a job set up before its first rows exist does not pass a dry run and then
    // fail on the night rows appear.
    let bound = match db::key_bound(conn, queries).await? {
        Some(bound) => bound,
        None => vec![KeyValue::Bytes(b"0".to_vec()); queries.source.key.len()],
    };
    let servers = (servers.source.as_str(), servers.archive.as_str());
    Ok(statement_findings(conn, archive_conn, queries, &bound, servers).await)
}
