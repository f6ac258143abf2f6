//! The proof by `EXPLAIN`: the server checks a statement's syntax, names and privileges without
//! running it, so pre-flight `EXPLAIN`s the job's real batch statements to prove that the job's
//! user may run them, before anything moves.

use mysql_async::prelude::*;
use mysql_async::{Conn, Params, Value};

use crate::db;
use crate::db::sql::{Queries, Statement};

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
pub(super) async fn statement_findings(
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
        None => vec![
            (
                "locking read of the source",
                probe(queries.lock_batch(None, bound)),
            ),
            (
                "copy into the archive",
                probe(queries.copy_batch(None, bound)),
            ),
            (
                "delete from the source",
                probe(queries.delete_batch(None, bound)),
            ),
            (
                "check of the rows left",
                probe(queries.leftovers(None, bound)),
            ),
        ],
        Some(archive_conn) => {
            let keys = std::slice::from_ref(bound);
            let row = vec![Value::NULL; queries.source.columns.len()];
            for (what, (sql, params)) in [
                ("read of the archive", probe(queries.select_archived(keys))),
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
        }
    };
    for (what, (sql, params)) in source_side {
        findings.extend(explain(conn, what, source_server, &sql, params).await);
    }
    findings
}
