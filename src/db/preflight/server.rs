//! What pre-flight asks of the servers themselves: a binary log format or a `read_only` setting
//! under which the batch statements fail, whether the source and archive connections reach one
//! server whatever their urls say, and whether two table names there name one table.

use mysql_async::prelude::*;
use mysql_async::Conn;

use crate::config::{JobConfig, TableName};
use crate::db;
use crate::db::sql;

/// The two servers as findings name them (`host:port` or a socket path).
pub(super) struct Servers {
    /// The source server.
    pub(super) source: String,
    /// The archive server: the source server when `[archive]` has no url of its own.
    pub(super) archive: String,
}

impl Servers {
    /// The servers named by the job's `[source]` and `[archive]` urls.
    pub(super) fn of(config: &JobConfig) -> Self {
        Servers {
            source: config.source.endpoint.server(),
            archive: config.archive_server(),
        }
    }
}

/// What about a server would make the batch statements fail or replicate differently:
/// - a STATEMENT-format binary log: InnoDB refuses the batch statements under READ COMMITTED
///   (error 1665), and they would not replicate deterministically;
/// - `read_only`: the server is most likely a replica; archiver writes to both servers, and a
///   user with SUPER or READ_ONLY ADMIN would write to the replica past the setting.
pub(super) async fn server_findings(conn: &mut Conn, server: &str) -> db::DbResult<Vec<String>> {
    let mut findings = Vec::new();
    let row: Option<(i64, i64, String)> = conn.query_first(sql::BINLOG_SETTINGS).await?;
    if let Some((1, 1, format)) = row {
        if format.eq_ignore_ascii_case("STATEMENT") {
            findings.push(format!(
                "server {server} writes its binary log with binlog_format=STATEMENT, in which InnoDB refuses the batch statements under READ COMMITTED (error 1665) and they would not replicate deterministically; set binlog_format=ROW (or MIXED) on the server"
            ));
        }
    }
    let read_only: Option<String> = conn.query_first(sql::SERVER_READ_ONLY).await?;
    if read_only.is_some_and(|r| r != "0" && !r.eq_ignore_ascii_case("OFF")) {
        findings.push(format!(
            "server {server} is read_only (a replica?): archiver deletes from the source and inserts into the archive, which must happen on the primary; point the url at the primary"
        ));
    }
    Ok(findings)
}

/// Whether two connections reach the same server, whatever their urls say (`localhost` and
/// `127.0.0.1`, a DNS alias, a socket): a user-level lock taken on the first is seen held on the
/// second only if they share a server. Takes no privilege and writes nothing.
pub(super) async fn reach_the_same_server(conn: &mut Conn, other: &mut Conn) -> db::DbResult<bool> {
    let name = format!(
        "archiver-identity-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let taken: Option<Option<i64>> = conn.exec_first(sql::IDENTITY_LOCK, (&name,)).await?;
    if taken.flatten() != Some(1) {
        return Err(db::DbError::Unexpected(format!(
            "could not take the user-level lock {name} for the same-server check"
        )));
    }
    let holder: mysql_async::Result<Option<Option<u64>>> =
        other.exec_first(sql::IDENTITY_HOLDER, (&name,)).await;
    conn.exec_drop(sql::IDENTITY_RELEASE, (&name,)).await?;
    Ok(holder?.flatten().is_some())
}

/// Whether two names on one server are one table: exactly equal, or equal but for letter case
/// where the server stores names in lower case (`lower_case_table_names` 1 or 2).
pub fn same_table(a: &TableName, b: &TableName, lower_case_table_names: u32) -> bool {
    match lower_case_table_names {
        0 => a == b,
        _ => {
            a.schema.to_lowercase() == b.schema.to_lowercase()
                && a.table.to_lowercase() == b.table.to_lowercase()
        }
    }
}

/// The finding that the archive table is the source table under another spelling or through
/// another url, for two connections known to reach one server.
pub(super) async fn same_table_finding(
    conn: &mut Conn,
    config: &JobConfig,
    servers: &Servers,
) -> db::DbResult<Option<String>> {
    let (source_name, archive_name) = (&config.source.table, &config.archive.table);
    let lower_case: Option<u32> = conn.query_first(sql::LOWER_CASE_TABLE_NAMES).await?;
    if !same_table(source_name, archive_name, lower_case.unwrap_or(0)) {
        return Ok(None);
    }
    let (source_server, archive_server) = (&servers.source, &servers.archive);
    let why = match config.archive.endpoint {
        Some(_) => {
            format!("[archive] url reaches the same server, {archive_server} and {source_server}")
        }
        None => "the server compares table names without regard to case (lower_case_table_names)"
            .to_string(),
    };
    Ok(Some(format!(
        "the archive table {archive_name} is the source table {source_name} ({why}): the archive would be the source itself, every row would look archived already and be deleted; name a different archive table"
    )))
}
