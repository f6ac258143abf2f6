//! The checks of the `[job] where` predicate: functions, variables and sequences whose value
//! differs between the statements of one batch, the archive table named in it, stored functions
//! not declared DETERMINISTIC, and a global sql_mode under which the operator's client reads its
//! text differently than the job's sessions do.

use mysql_async::prelude::*;
use mysql_async::Conn;

use crate::config::TableName;
use crate::db;
use crate::db::sql;

use super::words::words;

/// Functions whose value changes between the statements of one batch (or between rows), so a
/// predicate calling them selects different rows in the plan, the copy and the delete. `NOW()`,
/// `CURDATE()`, `UNIX_TIMESTAMP()` and the like are not here: every session of a run pins them
/// with `SET TIMESTAMP`.
const NON_DETERMINISTIC_FUNCTIONS: &[&str] = &[
    "RAND",
    "UUID",
    "UUID_SHORT",
    "SYS_GUID",
    "SYSDATE",
    "SLEEP",
    "BENCHMARK",
    "CONNECTION_ID",
    "LAST_INSERT_ID",
    "ROW_COUNT",
    "FOUND_ROWS",
    "GET_LOCK",
    "RELEASE_LOCK",
    "IS_FREE_LOCK",
    "IS_USED_LOCK",
    "RELEASE_ALL_LOCKS",
    "NEXTVAL",
    "LASTVAL",
    "SETVAL",
    "MASTER_POS_WAIT",
    "MASTER_GTID_WAIT",
    "LOAD_FILE",
    "RANDOM_BYTES",
];

/// What is wrong with the predicate itself: non-deterministic functions, user variables,
/// sequences, and (with the archive on the source server) the archive table named in it.
///
/// A word spelled like the archive table is taken as the table, except when the source has a
/// column of that name: then only where it can only be a table (after FROM or JOIN, qualifying
/// a name as in `arch.col`, or qualified by the archive's schema), so that `archive = 0` on a
/// column named like the table is no finding. `source_columns` may be empty (source unknown).
pub fn predicate_findings(
    predicate: &str,
    archive: Option<&TableName>,
    source_columns: &[String],
) -> Vec<String> {
    let mut findings = Vec::new();
    let words = words(predicate);
    for (i, word) in words.iter().enumerate() {
        let upper = word.text.to_ascii_uppercase();
        if !word.quoted && word.call && NON_DETERMINISTIC_FUNCTIONS.contains(&upper.as_str()) {
            findings.push(format!(
                "[job] where calls {upper}(), which is not deterministic: the plan, the copy and the delete of one batch would select different rows; write a deterministic predicate (NOW(), CURDATE() and UNIX_TIMESTAMP() are fine: they are pinned for the whole run)"
            ));
        }
        if word.text.starts_with('@') {
            findings.push(format!(
                "[job] where uses the user variable {}, whose value is not the same in every session of the job; write the value into the predicate",
                word.text
            ));
        }
        let next_two = |a: &str, b: &str| {
            words
                .get(i + 1)
                .is_some_and(|w| w.text.eq_ignore_ascii_case(a))
                && words
                    .get(i + 2)
                    .is_some_and(|w| w.text.eq_ignore_ascii_case(b))
        };
        if !word.quoted && (upper == "NEXT" || upper == "PREVIOUS") && next_two("VALUE", "FOR") {
            findings.push(format!(
                "[job] where reads a sequence ({upper} VALUE FOR), which changes between statements; write a deterministic predicate"
            ));
        }
        if let Some(archive) = archive {
            let also_a_column = source_columns
                .iter()
                .any(|c| c.eq_ignore_ascii_case(&archive.table));
            let previous = i.checked_sub(1).and_then(|j| words.get(j));
            let table_position = word.dot_after
                || previous.is_some_and(|p| {
                    ["FROM", "JOIN"].contains(&p.text.to_ascii_uppercase().as_str())
                        || (word.dot_before && p.text == archive.schema)
                });
            // `other.arch` is another schema's table, or a column of another table.
            let qualified_elsewhere =
                word.dot_before && previous.is_none_or(|p| p.text != archive.schema);
            if word.text == archive.table
                && !qualified_elsewhere
                && (!also_a_column || table_position)
            {
                findings.push(format!(
                    "[job] where names the archive table `{}`: every copy changes what the predicate selects, so a batch's copy and delete would disagree; select rows by the source's own columns",
                    archive.table
                ));
            }
        }
    }
    findings.dedup();
    findings
}

/// Modes of the server's global sql_mode that read the predicate's text differently from the
/// job's sessions (which pin [`sql::SESSION_SQL_MODE`]): the same `where` would select other
/// rows in the operator's client than in the job. Only a finding when the predicate holds the
/// text the mode reads differently; `ORACLE` changes too much to tell, and always is one.
pub fn sql_mode_findings(global_sql_mode: &str, predicate: &str) -> Vec<String> {
    let modes: Vec<&str> = global_sql_mode.split(',').collect();
    // The predicate with its '…' strings blanked out (a `||` inside a string is text).
    let mut text_without_strings = String::new();
    let mut in_string = false;
    let mut previous = ' ';
    for c in predicate.chars() {
        if c == '\'' && previous != '\\' {
            in_string = !in_string;
        }
        text_without_strings.push(if in_string { ' ' } else { c });
        previous = c;
    }
    let mut findings = Vec::new();
    let mut differs = |mode: &str, present: bool, what: &str| {
        if modes.contains(&mode) && present {
            findings.push(format!(
                "the source server's global sql_mode has {mode}, under which {what} in [job] where reads differently than in the job's sessions (sql_mode {}); write the predicate in MariaDB's default SQL (backquotes for names, CONCAT() for concatenation)",
                sql::SESSION_SQL_MODE
            ));
        }
    };
    differs(
        "ANSI_QUOTES",
        predicate.contains('"'),
        "a double-quoted text",
    );
    differs("PIPES_AS_CONCAT", text_without_strings.contains("||"), "||");
    differs(
        "NO_BACKSLASH_ESCAPES",
        predicate.contains('\\'),
        "a backslash",
    );
    differs("ORACLE", true, "the whole text");
    findings
}

/// Stored functions the predicate calls that are not declared DETERMINISTIC (names compared
/// case-insensitively; a function of that name in any schema counts). A function declared
/// DETERMINISTIC is trusted: MariaDB does not verify the declaration, and neither can we.
async fn stored_function_findings(conn: &mut Conn, predicate: &str) -> db::DbResult<Vec<String>> {
    let called: Vec<String> = words(predicate)
        .into_iter()
        .filter(|w| w.call)
        .map(|w| w.text.to_lowercase())
        .collect();
    if called.is_empty() {
        return Ok(Vec::new());
    }
    let routines: Vec<(String, String)> = conn.query(sql::NON_DETERMINISTIC_ROUTINES).await?;
    Ok(routines
        .into_iter()
        .filter(|(_, name)| called.contains(&name.to_lowercase()))
        .map(|(schema, name)| format!(
            "[job] where calls the stored function `{schema}`.`{name}`, which is not declared DETERMINISTIC: the plan, the copy and the delete of one batch could select different rows; write the predicate without it, or declare the function DETERMINISTIC if it truly is"
        ))
        .collect())
}

/// What the source server makes of the predicate: the stored functions it calls that are not
/// declared DETERMINISTIC, then the global sql_mode modes under which its text reads
/// differently.
pub(super) async fn server_predicate_findings(
    conn: &mut Conn,
    predicate: &str,
) -> db::DbResult<Vec<String>> {
    let mut findings = stored_function_findings(conn, predicate).await?;
    let global_sql_mode: Option<String> = conn.query_first(sql::GLOBAL_SQL_MODE).await?;
    findings.extend(sql_mode_findings(
        &global_sql_mode.unwrap_or_default(),
        predicate,
    ));
    Ok(findings)
}
