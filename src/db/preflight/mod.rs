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
//! written. The pure comparisons are plain functions over [`TableInfo`], unit-tested below; the
//! reads are in [`check`].

use std::path::Path;

use mysql_async::prelude::*;
use mysql_async::{Conn, Params, Value};

use crate::config::Refusal;
use crate::config::{Endpoint, JobConfig, TableName};
use crate::db;
use crate::db::sql::{self, Queries, Statement, TableShape};
use crate::event::KeyValue;

/// A column as the server defines it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ColumnInfo {
    /// Name.
    pub name: String,
    /// Full type, e.g. `decimal(12,2)` or `enum('a','b')` (ENUM/SET members included).
    pub column_type: String,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// `VIRTUAL`/`STORED` for a generated column (never copied; the archive computes its own),
    /// empty for a stored one.
    pub generated: String,
    /// The generation expression, empty for a stored column.
    pub expression: String,
    /// Whether it holds text compared under a collation.
    pub text: bool,
    /// Character set, empty for non-text columns.
    pub charset: String,
    /// Collation, empty for non-text columns.
    pub collation: String,
    /// Whether it is INVISIBLE (left out of `SELECT *`; archiver names every column).
    pub invisible: bool,
}

/// An index of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexInfo {
    /// Index name (`PRIMARY` for the primary key).
    pub name: String,
    /// Whether it is unique.
    pub unique: bool,
    /// Its columns in order, each with its prefix length (0: the whole column).
    pub columns: Vec<(String, u32)>,
}

impl IndexInfo {
    fn describe(&self) -> String {
        self.columns
            .iter()
            .map(|(c, prefix)| match prefix {
                0 => format!("`{c}`"),
                n => format!("`{c}`({n})"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A trigger on a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerInfo {
    /// Trigger name.
    pub name: String,
    /// `INSERT`, `UPDATE` or `DELETE`.
    pub event: String,
    /// `BEFORE` or `AFTER`.
    pub timing: String,
}

/// A foreign key touching a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKeyInfo {
    /// Constraint name.
    pub name: String,
    /// The other table, as `schema.table`.
    pub other: String,
    /// ON DELETE rule (`CASCADE`, `SET NULL`, `RESTRICT`, ...), empty when not visible.
    pub delete_rule: String,
}

/// What pre-flight learns of a table.
#[derive(Debug, Clone, Default)]
pub struct TableInfo {
    /// Columns in table order, as information_schema shows them to the job's user.
    pub columns: Vec<ColumnInfo>,
    /// Column names from `SHOW CREATE TABLE`: the real definition, whatever the user may see.
    pub defined_columns: Vec<String>,
    /// Every index, the primary key included.
    pub indexes: Vec<IndexInfo>,
    /// Triggers on the table.
    pub triggers: Vec<TriggerInfo>,
    /// Foreign keys of other tables that reference this one.
    pub referenced_by: Vec<ForeignKeyInfo>,
    /// Foreign keys of this table that reference others.
    pub references: Vec<ForeignKeyInfo>,
}

impl TableInfo {
    /// The primary key, if any.
    fn primary(&self) -> Option<&IndexInfo> {
        self.indexes.iter().find(|i| i.name == "PRIMARY")
    }

    /// Primary key column names in key order (empty: none).
    pub fn key(&self) -> Vec<String> {
        self.primary()
            .map(|p| p.columns.iter().map(|(c, _)| c.clone()).collect())
            .unwrap_or_default()
    }

    /// The shape the statements are built from.
    pub fn shape(&self, name: &TableName) -> TableShape {
        let copied = self.columns.iter().filter(|c| c.generated.is_empty());
        TableShape {
            schema: name.schema.clone(),
            table: name.table.clone(),
            columns: copied.clone().map(|c| c.name.clone()).collect(),
            key: self.key(),
            text_columns: copied.filter(|c| c.text).map(|c| c.name.clone()).collect(),
            numeric_keys: self
                .columns
                .iter()
                .filter(|c| {
                    ["bit", "enum(", "set("]
                        .iter()
                        .any(|kind| c.column_type.starts_with(kind))
                })
                .map(|c| c.name.clone())
                .filter(|c| self.key().contains(c))
                .collect(),
        }
    }
}

/// One column attribute that must be equal in both tables, for [`table_differences`]: its name
/// in messages (empty: "is X") and how to read it.
type Attribute = (&'static str, fn(&ColumnInfo) -> String);

/// The column attributes a copy depends on. Defaults, AUTO_INCREMENT and ON UPDATE do not
/// matter: every copied value is given explicitly and archiver never updates a row.
const ATTRIBUTES: &[Attribute] = &[
    ("", |c| c.column_type.clone()),
    ("", |c| {
        if c.nullable { "NULL" } else { "NOT NULL" }.to_string()
    }),
    ("character set", |c| c.charset.clone()),
    ("collation", |c| c.collation.clone()),
    ("generated kind", |c| {
        if c.generated.is_empty() {
            "stored (not generated)".to_string()
        } else {
            format!("{} GENERATED", c.generated)
        }
    }),
    ("generation expression", |c| c.expression.clone()),
    ("visibility", |c| {
        if c.invisible { "INVISIBLE" } else { "visible" }.to_string()
    }),
];

/// Every difference between the source and archive tables that would make a copy
/// non-identical or impossible. Empty: compatible.
pub fn table_differences(source: &TableInfo, archive: &TableInfo) -> Vec<String> {
    let mut differences = Vec::new();
    for column in &source.columns {
        let Some(other) = archive.columns.iter().find(|c| c.name == column.name) else {
            differences.push(format!(
                "column `{}` is missing in the archive",
                column.name
            ));
            continue;
        };
        for (what, get) in ATTRIBUTES {
            let (mine, theirs) = (get(column), get(other));
            if mine != theirs {
                let show = |v: &str| {
                    if v.is_empty() {
                        "none".to_string()
                    } else {
                        v.to_string()
                    }
                };
                let verb = if what.is_empty() {
                    "is".to_string()
                } else {
                    format!("has {what}")
                };
                differences.push(format!(
                    "column `{}` {verb} {} in the source but {} in the archive",
                    column.name,
                    show(&mine),
                    show(&theirs)
                ));
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
    if source.key() != archive.key() {
        differences.push(format!(
            "the primary key is ({}) in the source but ({}) in the archive",
            source.key().join(", "),
            archive.key().join(", ")
        ));
    }
    differences
        .into_iter()
        .map(|d| format!("{d}; make the archive match the source column for column, e.g. CREATE TABLE archive LIKE source"))
        .collect()
}

/// Columns of the definition the job's user cannot see (column-level grants): they would not
/// be copied, and their archive values would not be compared.
fn hidden_columns(info: &TableInfo, name: &TableName, role: &str) -> Option<String> {
    let hidden: Vec<String> = info
        .defined_columns
        .iter()
        .filter(|d| !info.columns.iter().any(|c| &c.name == *d))
        .map(|d| format!("`{d}`"))
        .collect();
    if !hidden.is_empty() && info.columns.is_empty() {
        return Some(format!(
            "the job's user may not read the {role} table {name} (no SELECT privilege: information_schema shows it none of its columns); grant SELECT on the whole table (GRANT SELECT ON {} TO ...; README, \"Minimal grants\")",
            sql::qualified(&name.schema, &name.table)
        ));
    }
    (!hidden.is_empty()).then(|| {
        format!(
            "the job's user cannot see column(s) {} of the {role} table {name} (column-level privileges): they would not be copied or compared; grant SELECT on the whole table (GRANT SELECT ON {} TO ...)",
            hidden.join(", "),
            sql::qualified(&name.schema, &name.table)
        )
    })
}

/// The primary key must exist and cover whole columns, in both tables.
fn key_findings(info: &TableInfo, name: &TableName, role: &str) -> Vec<String> {
    match info.primary() {
        None => vec![format!(
            "{role} table {name} has no primary key; archiver walks tables in primary-key order and refuses a table without one (add a PRIMARY KEY first)"
        )],
        Some(primary) if primary.columns.iter().any(|(_, prefix)| *prefix > 0) => vec![format!(
            "the primary key of {role} table {name} is on a column prefix ({}): two different rows can share a key, so a copy could collide with a different row; use a primary key on whole columns",
            primary.describe()
        )],
        Some(primary) => primary
            .columns
            .iter()
            .filter_map(|(column, _)| info.columns.iter().find(|c| &c.name == column))
            .filter(|c| c.column_type.starts_with("float") || c.column_type.starts_with("double"))
            .map(|c| format!(
                "the primary key of {role} table {name} includes the floating-point column `{}` ({}): a batch ends at a key read back from the server, and approximate values cannot be carried and compared exactly, so archiver refuses floating-point keys; key the table on exact types (INT, DECIMAL, ...)",
                c.name, c.column_type
            ))
            .collect(),
    }
}

/// Unique keys of the archive that the source does not have exactly: a copied row could
/// collide with an archived row that is not its own.
fn unique_key_findings(source: &TableInfo, archive: &TableInfo) -> Vec<String> {
    archive
        .indexes
        .iter()
        .filter(|i| i.unique && i.name != "PRIMARY")
        .filter(|i| {
            !source
                .indexes
                .iter()
                .any(|s| s.unique && s.columns == i.columns)
        })
        .map(|i| {
            format!(
                "the archive has UNIQUE key `{}` ({}) that the source lacks: rows that are distinct in the source could collide in the archive; drop it from the archive or add it to the source",
                i.name,
                i.describe()
            )
        })
        .collect()
}

/// Triggers the batch statements would fire: DELETE on the source, INSERT/UPDATE on the
/// archive. Refused unless listed in `[safety] allow_triggers`.
fn trigger_findings(
    source: &TableInfo,
    source_name: &TableName,
    archive: &TableInfo,
    archive_name: &TableName,
    allowed: &[String],
) -> Vec<String> {
    let source_fired = source
        .triggers
        .iter()
        .filter(|t| t.event == "DELETE")
        .map(|t| {
            (
                t,
                source_name,
                "fires for every archived row and may change other tables",
            )
        });
    let archive_fired = archive
        .triggers
        .iter()
        .filter(|t| t.event == "INSERT" || t.event == "UPDATE")
        .map(|t| (t, archive_name, "may change or refuse the copies"));
    source_fired
        .chain(archive_fired)
        .filter(|(t, _, _)| !allowed.contains(&t.name))
        .map(|(t, table, why)| {
            format!(
                "trigger `{}` ({} {}) on {table} {why}; drop it while the job runs, or list it in [safety] allow_triggers if it is known to be harmless (a copy it changes is then reported as a conflict or a parked batch, never deleted)",
                t.name, t.timing, t.event
            )
        })
        .collect()
}

/// Foreign keys that reference the source (its deletes would cascade, set children to NULL,
/// or fail) and foreign keys of the source. Cascading ones are never allowed; the others only
/// when listed in `[safety] allow_foreign_keys`.
fn foreign_key_findings(source: &TableInfo, name: &TableName, allowed: &[String]) -> Vec<String> {
    let mut findings = Vec::new();
    for fk in &source.referenced_by {
        let rule = fk.delete_rule.as_str();
        let restrictive = matches!(rule, "RESTRICT" | "NO ACTION");
        if restrictive && allowed.contains(&fk.name) {
            continue;
        }
        findings.push(if restrictive {
            format!(
                "foreign key `{}` of {} references {name} (ON DELETE {rule}): a source row with child rows cannot be deleted, so its batch would fail on every run; archive {} first, or list `{}` in [safety] allow_foreign_keys to park such batches (exit 3) instead of refusing the job",
                fk.name, fk.other, fk.other, fk.name
            )
        } else {
            let rule = if rule.is_empty() { "a rule the job's user cannot see; grant it SELECT on the child table".to_string() } else { format!("ON DELETE {rule}") };
            format!(
                "foreign key `{}` of {} references {name} with {rule}: deleting archived rows would delete or change rows of {} that the archive never receives; this is never allowed: archive {} first (its own job), then drop the constraint or make it ON DELETE RESTRICT",
                fk.name, fk.other, fk.other, fk.other
            )
        });
    }
    for fk in &source.references {
        if !allowed.contains(&fk.name) {
            findings.push(format!(
                "foreign key `{}` of {name} references {}: archived rows keep a reference that the archive does not enforce; list `{}` in [safety] allow_foreign_keys to proceed (deleting from {name} never changes {})",
                fk.name, fk.other, fk.name, fk.other
            ));
        }
    }
    findings
}

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

/// A word of the predicate outside strings and comments: bare or backquoted, whether an
/// opening parenthesis follows it (a function call), and whether a dot follows it (it
/// qualifies a name: `t.col`, `db.t`) or precedes it (it is qualified).
#[derive(Debug, PartialEq)]
struct Word {
    text: String,
    quoted: bool,
    call: bool,
    dot_after: bool,
    dot_before: bool,
}

/// Splits SQL into words, skipping string literals and comments. Also reports user variables
/// (`@name`, not `@@system`) as words starting with `@`.
fn words(sql: &str) -> Vec<Word> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let next_is = |mut j: usize, wanted: char| {
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        chars.get(j) == Some(&wanted)
    };
    let previous_is_dot =
        |start: usize| chars[..start].iter().rev().find(|c| !c.is_whitespace()) == Some(&'.');
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\'' | '"' => {
                i += 1;
                while i < chars.len() {
                    let escaped = chars[i] == '\\';
                    let doubled = chars[i] == c && chars.get(i + 1) == Some(&c);
                    if escaped || doubled {
                        i += 2;
                    } else if chars[i] == c {
                        break;
                    } else {
                        i += 1;
                    }
                }
                i += 1;
            }
            '`' => {
                let mut text = String::new();
                let start = i;
                i += 1;
                while i < chars.len() {
                    if chars[i] == '`' && chars.get(i + 1) == Some(&'`') {
                        text.push('`');
                        i += 2;
                    } else if chars[i] == '`' {
                        break;
                    } else {
                        text.push(chars[i]);
                        i += 1;
                    }
                }
                i += 1;
                out.push(Word {
                    text,
                    quoted: true,
                    call: next_is(i, '('),
                    dot_after: next_is(i, '.'),
                    dot_before: previous_is_dot(start),
                });
            }
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    i += 1;
                }
                i += 2;
            }
            '@' => {
                let start = i;
                i += 1;
                if chars.get(i) == Some(&'@') {
                    // A system variable: read-only here, and the same in every statement.
                    i += 1;
                    while i < chars.len()
                        && (chars[i].is_alphanumeric() || "_.$".contains(chars[i]))
                    {
                        i += 1;
                    }
                    continue;
                }
                while i < chars.len() && (chars[i].is_alphanumeric() || "_$.".contains(chars[i])) {
                    i += 1;
                }
                out.push(Word {
                    text: chars[start..i].iter().collect(),
                    quoted: false,
                    call: false,
                    dot_after: false,
                    dot_before: false,
                });
            }
            c if c.is_alphabetic() || c == '_' || c == '$' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
                {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                out.push(Word {
                    text,
                    quoted: false,
                    call: next_is(i, '('),
                    dot_after: next_is(i, '.'),
                    dot_before: previous_is_dot(start),
                });
            }
            c if c.is_ascii_digit() => {
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out
}

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

/// Whether the job's WAL directory is (or can be created as) a writable directory. Checks
/// permissions without writing anything, so that a refused job or a dry run leaves no trace.
pub fn wal_dir_findings(dir: &Path) -> Option<String> {
    let shown = dir.display();
    let mut existing = dir;
    while !existing.exists() {
        match existing.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => existing = parent,
            _ => return None,
        }
    }
    if !existing.is_dir() {
        return Some(if existing == dir {
            format!("[job] wal_dir {shown} exists but is not a directory; point wal_dir at a directory (it is created if missing)")
        } else {
            format!(
                "[job] wal_dir {shown} cannot be created: {} is not a directory",
                existing.display()
            )
        });
    }
    if let Some(why) = unwritable(existing) {
        return Some(if existing == dir {
            format!("[job] wal_dir {shown} is not writable ({why}); fix its permissions or choose another directory")
        } else {
            format!(
                "[job] wal_dir {shown} cannot be created: {} is not writable ({why})",
                existing.display()
            )
        });
    }
    None
}

/// Why the directory cannot be written, if it cannot: permissions for this process
/// (`access(2)`), or a read-only file system (`statvfs(2)`), which root's permissions ignore.
fn unwritable(dir: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `path` is a valid NUL-terminated string for the duration of both calls, and
    // `stat` is a plain C struct the call fills in.
    unsafe {
        if libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) != 0 {
            return Some(std::io::Error::last_os_error().to_string());
        }
        let mut stat: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(path.as_ptr(), &mut stat) == 0 && stat.f_flag & libc::ST_RDONLY != 0 {
            return Some("read-only file system".to_string());
        }
    }
    None
}

/// Column names of a `SHOW CREATE TABLE` text, in order: the lines of the body that start with
/// a backquoted name. A name this cannot read (one with a line break) makes the list differ from
/// information_schema's, which refuses the job: the safe side.
pub fn defined_columns(create_table: &str) -> Vec<String> {
    let mut columns = Vec::new();
    for line in create_table.lines().skip(1) {
        let Some(rest) = line.strip_prefix("  `") else {
            continue;
        };
        let mut name = String::new();
        let mut chars = rest.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '`' {
                if chars.peek() == Some(&'`') {
                    chars.next();
                    name.push('`');
                } else {
                    break;
                }
            } else {
                name.push(c);
            }
        }
        columns.push(name);
    }
    columns
}

/// Reads a table's definition, or `None` when it does not exist. A table that is not an InnoDB
/// base table is a finding of its own (returned as `Err(finding)` inside `Ok`).
async fn read_table(
    conn: &mut Conn,
    name: &TableName,
) -> db::DbResult<Option<Result<TableInfo, String>>> {
    let args = (name.schema.as_str(), name.table.as_str());
    let kind: Option<(String, String)> = conn.exec_first(sql::TABLE_KIND, args).await?;
    match kind {
        None => return Ok(None),
        Some((kind, _)) if kind == "SYSTEM VERSIONED" => {
            return Ok(Some(Err(format!(
                "{name} is a system-versioned table: a DELETE keeps the row in its history, so a row archived from it would never leave it; archiver moves rows between plain InnoDB base tables"
            ))))
        }
        Some((kind, engine)) if kind != "BASE TABLE" || !engine.eq_ignore_ascii_case("InnoDB") => {
            return Ok(Some(Err(format!(
                "{name} is a {kind} with engine {engine:?}; archiver needs InnoDB base tables (transactions and row locks)"
            ))))
        }
        Some(_) => {}
    }
    type ColumnRow = (
        String,
        String,
        String,
        String,
        String,
        String,
        String,
        String,
    );
    let rows: Vec<ColumnRow> = conn.exec(sql::TABLE_COLUMNS, args).await?;
    let columns = rows
        .into_iter()
        .map(
            |(name, column_type, nullable, extra, data_type, charset, collation, expression)| {
                let extra = extra.to_ascii_uppercase();
                let generated = ["VIRTUAL", "STORED", "PERSISTENT"]
                    .into_iter()
                    .find(|kind| extra.contains(kind) && extra.contains("GENERATED"))
                    .map_or(String::new(), |kind| {
                        if kind == "PERSISTENT" { "STORED" } else { kind }.to_string()
                    });
                ColumnInfo {
                    name,
                    column_type,
                    nullable: nullable == "YES",
                    expression: if generated.is_empty() {
                        String::new()
                    } else {
                        expression
                    },
                    generated,
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
                    charset,
                    collation,
                    invisible: extra.contains("INVISIBLE"),
                }
            },
        )
        .collect();
    // SHOW CREATE TABLE needs a table-level privilege: a user holding only column-level ones
    // is refused it (1142), and that user cannot be shown to see every column.
    let create: Option<(String, String)> = match conn
        .query_first(sql::show_create_table(&name.schema, &name.table))
        .await
    {
        Ok(create) => create,
        Err(mysql_async::Error::Server(e)) if e.code == 1142 => {
            return Ok(Some(Err(format!(
                "the job's user may not read the definition of {name} (SHOW CREATE TABLE: {}): it holds only column-level privileges there, so archiver cannot prove it sees every column; grant the privileges on the whole table (README, \"Minimal grants\")",
                e.message
            ))))
        }
        Err(e) => return Err(e.into()),
    };
    let defined_columns = create
        .map(|(_, text)| defined_columns(&text))
        .unwrap_or_default();
    let rows: Vec<(String, i64, u32, String, u32)> = conn.exec(sql::TABLE_INDEXES, args).await?;
    let mut indexes: Vec<IndexInfo> = Vec::new();
    for (index, non_unique, _, column, prefix) in rows {
        match indexes.last_mut() {
            Some(last) if last.name == index => last.columns.push((column, prefix)),
            _ => indexes.push(IndexInfo {
                name: index,
                unique: non_unique == 0,
                columns: vec![(column, prefix)],
            }),
        }
    }
    let triggers: Vec<(String, String, String)> = conn.exec(sql::TABLE_TRIGGERS, args).await?;
    let triggers = triggers
        .into_iter()
        .map(|(name, event, timing)| TriggerInfo {
            name,
            event,
            timing,
        })
        .collect();
    let rows: Vec<(String, String, String, String)> = conn.exec(sql::FOREIGN_KEYS_TO, args).await?;
    let referenced_by = rows
        .into_iter()
        .map(|(fk, schema, table, delete_rule)| ForeignKeyInfo {
            name: fk,
            other: format!("{schema}.{table}"),
            delete_rule,
        })
        .collect();
    let rows: Vec<(String, String, String)> = conn.exec(sql::FOREIGN_KEYS_FROM, args).await?;
    let references = rows
        .into_iter()
        .map(|(fk, schema, table)| ForeignKeyInfo {
            name: fk,
            other: format!("{schema}.{table}"),
            delete_rule: String::new(),
        })
        .collect();
    Ok(Some(Ok(TableInfo {
        columns,
        defined_columns,
        indexes,
        triggers,
        referenced_by,
        references,
    })))
}

/// What about a server would make the batch statements fail or replicate differently:
/// - a STATEMENT-format binary log: InnoDB refuses the batch statements under READ COMMITTED
///   (error 1665), and they would not replicate deterministically;
/// - `read_only`: the server is most likely a replica; archiver writes to both servers, and a
///   user with SUPER or READ_ONLY ADMIN would write to the replica past the setting.
async fn server_findings(conn: &mut Conn, server: &str) -> db::DbResult<Vec<String>> {
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
async fn reach_the_same_server(conn: &mut Conn, other: &mut Conn) -> db::DbResult<bool> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, column_type: &str, nullable: bool) -> ColumnInfo {
        ColumnInfo {
            name: name.into(),
            column_type: column_type.into(),
            nullable,
            ..ColumnInfo::default()
        }
    }

    fn text(name: &str, charset: &str, collation: &str) -> ColumnInfo {
        ColumnInfo {
            text: true,
            charset: charset.into(),
            collation: collation.into(),
            ..column(name, "varchar(20)", true)
        }
    }

    fn index(name: &str, unique: bool, columns: &[(&str, u32)]) -> IndexInfo {
        IndexInfo {
            name: name.into(),
            unique,
            columns: columns.iter().map(|(c, p)| (c.to_string(), *p)).collect(),
        }
    }

    fn table(columns: Vec<ColumnInfo>, indexes: Vec<IndexInfo>) -> TableInfo {
        TableInfo {
            defined_columns: columns.iter().map(|c| c.name.clone()).collect(),
            columns,
            indexes,
            ..TableInfo::default()
        }
    }

    fn name(table: &str) -> TableName {
        TableName {
            schema: "db".into(),
            table: table.into(),
        }
    }

    #[test]
    fn every_table_difference_is_listed() {
        let generated = |expression: &str| ColumnInfo {
            generated: "VIRTUAL".into(),
            expression: expression.into(),
            ..column("g", "int(11)", true)
        };
        let source = table(
            vec![
                column("id", "bigint(20) unsigned", false),
                column("amount", "decimal(12,2)", true),
                column("note", "varchar(255)", true),
                text("name", "utf8mb4", "utf8mb4_general_ci"),
                text("code", "utf8mb4", "utf8mb4_general_ci"),
                generated("`amount` * 2"),
                column("kind", "enum('a','b')", false),
                ColumnInfo {
                    invisible: true,
                    ..column("hidden", "int(11)", true)
                },
            ],
            vec![index("PRIMARY", true, &[("id", 0)])],
        );
        let archive = table(
            vec![
                column("id", "bigint(20) unsigned", false),
                column("amount", "decimal(10,2)", false),
                column("extra", "int(11)", true),
                text("name", "latin1", "latin1_swedish_ci"),
                text("code", "utf8mb4", "utf8mb4_bin"),
                generated("`amount` * 3"),
                column("kind", "enum('a','b','c')", false),
                column("hidden", "int(11)", true),
            ],
            vec![index("PRIMARY", true, &[("id", 0), ("amount", 0)])],
        );
        let found = table_differences(&source, &archive);
        let expected = [
            "column `amount` is decimal(12,2) in the source but decimal(10,2) in the archive",
            "column `amount` is NULL in the source but NOT NULL in the archive",
            "column `note` is missing in the archive",
            "column `name` has character set utf8mb4 in the source but latin1 in the archive",
            "column `name` has collation utf8mb4_general_ci in the source but latin1_swedish_ci",
            "column `code` has collation utf8mb4_general_ci in the source but utf8mb4_bin",
            "column `g` has generation expression `amount` * 2 in the source but `amount` * 3",
            "column `kind` is enum('a','b') in the source but enum('a','b','c') in the archive",
            "column `hidden` has visibility INVISIBLE in the source but visible in the archive",
            "column `extra` exists in the archive but not in the source",
            "the primary key is (id) in the source but (id, amount) in the archive",
        ];
        assert_eq!(found.len(), expected.len(), "{found:#?}");
        for (found, expected) in found.iter().zip(expected) {
            assert!(
                found.starts_with(expected),
                "{found:?} should start with {expected:?}"
            );
        }
        assert!(table_differences(&source, &source).is_empty());
    }

    #[test]
    fn hidden_columns_are_found_from_the_definition() {
        let create = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `we``ird` int(11) DEFAULT NULL,\n  `secret` varchar(10) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  KEY `k` (`secret`)\n) ENGINE=InnoDB";
        assert_eq!(defined_columns(create), vec!["id", "we`ird", "secret"]);
        let mut info = table(vec![column("id", "int(11)", false)], vec![]);
        info.defined_columns = defined_columns(create);
        let finding = hidden_columns(&info, &name("t"), "source").expect("hidden columns");
        assert!(finding.contains("`we`ird`, `secret`"), "{finding}");
        assert!(
            finding.contains("grant SELECT on the whole table"),
            "{finding}"
        );
    }

    #[test]
    fn keys_must_be_whole_columns_and_archive_unique_keys_must_exist_in_the_source() {
        let prefixed = table(vec![], vec![index("PRIMARY", true, &[("code", 10)])]);
        assert!(key_findings(&prefixed, &name("t"), "archive")[0]
            .contains("column prefix (`code`(10))"));
        let none = table(vec![], vec![]);
        assert!(key_findings(&none, &name("t"), "source")[0].contains("has no primary key"));
        let source = table(
            vec![],
            vec![
                index("PRIMARY", true, &[("id", 0)]),
                index("u_email", true, &[("email", 0)]),
            ],
        );
        let archive = table(
            vec![],
            vec![
                index("PRIMARY", true, &[("id", 0)]),
                index("u_email_archive", true, &[("email", 0)]),
                index("u_code", true, &[("code", 0)]),
                index("k_code", false, &[("user", 0)]),
            ],
        );
        let found = unique_key_findings(&source, &archive);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("UNIQUE key `u_code` (`code`)"),
            "{found:?}"
        );
    }

    #[test]
    fn triggers_that_would_fire_are_refused_unless_allowed_by_name() {
        let trigger = |name: &str, event: &str| TriggerInfo {
            name: name.into(),
            event: event.into(),
            timing: "AFTER".into(),
        };
        let mut source = table(vec![], vec![]);
        source.triggers = vec![trigger("audit_del", "DELETE"), trigger("src_ins", "INSERT")];
        let mut archive = table(vec![], vec![]);
        archive.triggers = vec![
            trigger("rekey", "INSERT"),
            trigger("touch", "UPDATE"),
            trigger("arch_del", "DELETE"),
        ];
        let found = trigger_findings(&source, &name("s"), &archive, &name("a"), &[]);
        let named: Vec<bool> = ["audit_del", "rekey", "touch"]
            .iter()
            .map(|t| found.iter().any(|f| f.contains(&format!("`{t}`"))))
            .collect();
        assert_eq!(found.len(), 3, "{found:#?}");
        assert_eq!(named, vec![true, true, true]);
        let allowed = vec!["audit_del".to_string(), "rekey".to_string()];
        let found = trigger_findings(&source, &name("s"), &archive, &name("a"), &allowed);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].contains("`touch`"));
    }

    #[test]
    fn cascading_foreign_keys_are_never_allowed() {
        let fk = |name: &str, rule: &str| ForeignKeyInfo {
            name: name.into(),
            other: "db.child".into(),
            delete_rule: rule.into(),
        };
        let mut source = table(vec![], vec![]);
        source.referenced_by = vec![
            fk("c_cascade", "CASCADE"),
            fk("c_null", "SET NULL"),
            fk("c_restrict", "RESTRICT"),
            fk("c_unseen", ""),
        ];
        source.references = vec![ForeignKeyInfo {
            other: "db.parent".into(),
            ..fk("to_parent", "")
        }];
        let all: Vec<String> = ["c_cascade", "c_null", "c_restrict", "c_unseen", "to_parent"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(foreign_key_findings(&source, &name("src"), &[]).len(), 5);
        let left = foreign_key_findings(&source, &name("src"), &all);
        assert_eq!(left.len(), 3, "{left:#?}");
        assert!(
            left.iter().all(|f| f.contains("never allowed")),
            "{left:#?}"
        );
    }

    #[test]
    fn non_deterministic_predicates_are_found_outside_strings_and_comments() {
        let archive = name("arch");
        let cases: &[(&str, &[&str])] = &[
            ("created_at < NOW() - INTERVAL 90 DAY", &[]),
            ("RAND() < 0.5", &["RAND()"]),
            ("id % 2 = 0 AND uuid () IS NOT NULL", &["UUID()"]),
            ("created_at < SYSDATE()", &["SYSDATE()"]),
            ("note = 'RAND()' AND x = \"sysdate()\" -- rand()\n", &[]),
            ("/* uuid() */ id > 3 # sysdate()", &[]),
            ("`rand` > 3", &[]),
            ("id < @cut", &["user variable @cut"]),
            ("@@time_zone = 'UTC' AND id > 1", &[]),
            ("id IN (SELECT id FROM arch)", &["archive table `arch`"]),
            ("id IN (SELECT id FROM `arch`)", &["archive table `arch`"]),
            ("id < NEXT VALUE FOR s1", &["sequence"]),
            ("archived = 0", &[]),
        ];
        for (predicate, expected) in cases {
            let found = predicate_findings(predicate, Some(&archive), &[]);
            assert_eq!(found.len(), expected.len(), "{predicate}: {found:#?}");
            for (f, e) in found.iter().zip(expected.iter()) {
                assert!(f.contains(e), "{predicate}: {f}");
            }
        }
        // With the archive on its own server, a table of that name on the source is another one.
        assert!(predicate_findings("id IN (SELECT id FROM arch)", None, &[]).is_empty());
        assert!(
            predicate_findings("id IN (SELECT id FROM other.arch)", Some(&archive), &[]).is_empty()
        );
        assert!(
            predicate_findings("id IN (SELECT x.arch FROM t x)", Some(&archive), &[]).is_empty()
        );
        // A source column spelled like the archive table is a column, except where only a
        // table can stand.
        let columns = ["id".to_string(), "ARCH".to_string()];
        for (predicate, refused) in [
            ("arch = 0", false),
            ("src.arch = 0 AND `arch` > 1", false),
            ("id IN (SELECT id FROM arch)", true),
            (
                "id IN (SELECT 1 FROM src s JOIN `arch` x ON x.id = s.id)",
                true,
            ),
            ("EXISTS (SELECT 1 FROM dual WHERE arch.id = 1)", true),
            ("id IN (SELECT id FROM db.arch)", true),
            ("id IN (SELECT id FROM other.arch)", false),
            ("id IN (SELECT id FROM `db` . `arch`)", true),
        ] {
            let found = predicate_findings(predicate, Some(&archive), &columns);
            assert_eq!(!found.is_empty(), refused, "{predicate}: {found:#?}");
        }
    }

    #[test]
    fn predicates_read_differently_under_the_servers_sql_mode_are_found() {
        let default = "STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION";
        let ansi = "REAL_AS_FLOAT,PIPES_AS_CONCAT,ANSI_QUOTES,IGNORE_SPACE,ANSI";
        for (mode, predicate, expected) in [
            (default, "\"status\" = 'done' AND a || b", 0),
            (ansi, "status = 'done'", 0),
            (ansi, "\"status\" = 'done'", 1),
            (ansi, "a || b", 1),
            (ansi, "note = 'a||b'", 0),
            ("NO_BACKSLASH_ESCAPES", "note LIKE 'a\\_%'", 1),
            ("PIPES_AS_CONCAT,ANSI_QUOTES,ORACLE", "id < 5", 1),
        ] {
            let found = sql_mode_findings(mode, predicate);
            assert_eq!(found.len(), expected, "{mode} / {predicate}: {found:#?}");
        }
    }

    #[test]
    fn one_table_under_two_spellings_is_found_where_the_server_ignores_case() {
        let (lower, upper) = (name("orders"), name("Orders"));
        assert!(!same_table(&lower, &upper, 0));
        assert!(same_table(&lower, &upper, 1));
        assert!(same_table(&lower, &upper, 2));
        assert!(same_table(&lower, &lower, 0));
        assert!(!same_table(&lower, &name("orders_archive"), 1));
    }

    #[test]
    fn wal_dir_must_be_a_writable_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(wal_dir_findings(&dir.path().join("new/wal")), None);
        assert_eq!(wal_dir_findings(dir.path()), None);
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(wal_dir_findings(&file)
            .unwrap()
            .contains("is not a directory"));
        assert!(wal_dir_findings(&file.join("wal"))
            .unwrap()
            .contains("cannot be created"));
    }
}
