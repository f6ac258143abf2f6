//! What pre-flight learns of a table, and reading it from the server: its columns as
//! information_schema shows them to the job's user, its columns as `SHOW CREATE TABLE` defines
//! them, its indexes, triggers and foreign keys. A table that is not an InnoDB base table, or
//! whose definition the user may not read, is a finding of its own.

use mysql_async::prelude::*;
use mysql_async::Conn;

use crate::config::TableName;
use crate::db;
use crate::db::sql::{self, TableShape};

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
    pub(super) fn describe(&self) -> String {
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
    pub(super) fn primary(&self) -> Option<&IndexInfo> {
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
            text_columns: copied
                .clone()
                .filter(|c| c.text)
                .map(|c| c.name.clone())
                .collect(),
            converted_text: copied
                .filter(|c| c.text && c.charset != "utf8mb4")
                .map(|c| c.name.clone())
                .collect(),
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
            load_data: self
                .columns
                .iter()
                .filter(|c| c.generated.is_empty())
                .all(|c| sql::load_data_type(&c.column_type)),
        }
    }
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
/// base table is a finding of its own (returned as `Err(finding)` inside `Ok`), and so is one
/// whose definition the job's user may not read.
pub(super) async fn read_table(
    conn: &mut Conn,
    name: &TableName,
) -> db::DbResult<Option<Result<TableInfo, String>>> {
    let args = (name.schema.as_str(), name.table.as_str());
    let kind: Option<(String, String)> = conn.exec_first(sql::TABLE_KIND, args).await?;
    let Some((kind, engine)) = kind else {
        return Ok(None);
    };
    if let Some(finding) = kind_finding(name, &kind, &engine) {
        return Ok(Some(Err(finding)));
    }
    let columns = read_columns(conn, args).await?;
    let defined_columns = match read_defined_columns(conn, name).await? {
        Ok(defined_columns) => defined_columns,
        Err(finding) => return Ok(Some(Err(finding))),
    };
    // Field by field, in this order: the queries run as the fields are written.
    Ok(Some(Ok(TableInfo {
        columns,
        defined_columns,
        indexes: read_indexes(conn, args).await?,
        triggers: read_triggers(conn, args).await?,
        referenced_by: read_foreign_keys_to(conn, args).await?,
        references: read_foreign_keys_from(conn, args).await?,
    })))
}

/// Why rows cannot move out of or into a table of this kind (`TABLE_TYPE`) and engine, if
/// they cannot.
fn kind_finding(name: &TableName, kind: &str, engine: &str) -> Option<String> {
    if kind == "SYSTEM VERSIONED" {
        return Some(format!(
            "{name} is a system-versioned table: a DELETE keeps the row in its history, so a row archived from it would never leave it; archiver moves rows between plain InnoDB base tables"
        ));
    }
    (kind != "BASE TABLE" || !engine.eq_ignore_ascii_case("InnoDB")).then(|| {
        format!(
            "{name} is a {kind} with engine {engine:?}; archiver needs InnoDB base tables (transactions and row locks)"
        )
    })
}

/// A row of [`sql::TABLE_COLUMNS`]: name, type, IS_NULLABLE, EXTRA, DATA_TYPE, character set,
/// collation, generation expression.
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

/// The columns in table order, as information_schema shows them to the job's user.
async fn read_columns(conn: &mut Conn, args: (&str, &str)) -> db::DbResult<Vec<ColumnInfo>> {
    let rows: Vec<ColumnRow> = conn.exec(sql::TABLE_COLUMNS, args).await?;
    Ok(rows.into_iter().map(column_info).collect())
}

/// A column from its row of [`sql::TABLE_COLUMNS`].
fn column_info(row: ColumnRow) -> ColumnInfo {
    let (name, column_type, nullable, extra, data_type, charset, collation, expression) = row;
    let extra = extra.to_ascii_uppercase();
    let generated = generated_kind(&extra);
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
        text: holds_text(&data_type),
        charset,
        collation,
        invisible: extra.contains("INVISIBLE"),
    }
}

/// `VIRTUAL` or `STORED` for a generated column, read from its upper-cased EXTRA (MariaDB's
/// `PERSISTENT` is `STORED`), empty for a stored one.
fn generated_kind(extra: &str) -> String {
    ["VIRTUAL", "STORED", "PERSISTENT"]
        .into_iter()
        .find(|kind| extra.contains(kind) && extra.contains("GENERATED"))
        .map_or(String::new(), |kind| {
            if kind == "PERSISTENT" { "STORED" } else { kind }.to_string()
        })
}

/// Whether a column of this DATA_TYPE holds text compared under a collation.
fn holds_text(data_type: &str) -> bool {
    matches!(
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
    )
}

/// The column names of the table's real definition (`SHOW CREATE TABLE`), or the finding that
/// the job's user may not read it.
async fn read_defined_columns(
    conn: &mut Conn,
    name: &TableName,
) -> db::DbResult<Result<Vec<String>, String>> {
    // SHOW CREATE TABLE needs a table-level privilege: a user holding only column-level ones
    // is refused it (1142), and that user cannot be shown to see every column.
    let create: Option<(String, String)> = match conn
        .query_first(sql::show_create_table(&name.schema, &name.table))
        .await
    {
        Ok(create) => create,
        Err(mysql_async::Error::Server(e)) if e.code == 1142 => {
            return Ok(Err(format!(
                "the job's user may not read the definition of {name} (SHOW CREATE TABLE: {}): it holds only column-level privileges there, so archiver cannot prove it sees every column; grant the privileges on the whole table (README, \"Minimal grants\")",
                e.message
            )))
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Ok(create
        .map(|(_, text)| defined_columns(&text))
        .unwrap_or_default()))
}

/// Every index, the primary key included, with its columns in order.
async fn read_indexes(conn: &mut Conn, args: (&str, &str)) -> db::DbResult<Vec<IndexInfo>> {
    let rows: Vec<(String, i64, u32, String, u32)> = conn.exec(sql::TABLE_INDEXES, args).await?;
    let mut indexes: Vec<IndexInfo> = Vec::new();
    // One row per index column, ordered by index and position: a new name starts an index.
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
    Ok(indexes)
}

/// The triggers on the table.
async fn read_triggers(conn: &mut Conn, args: (&str, &str)) -> db::DbResult<Vec<TriggerInfo>> {
    let rows: Vec<(String, String, String)> = conn.exec(sql::TABLE_TRIGGERS, args).await?;
    Ok(rows
        .into_iter()
        .map(|(name, event, timing)| TriggerInfo {
            name,
            event,
            timing,
        })
        .collect())
}

/// Foreign keys of other tables that reference this one, with their ON DELETE rule.
async fn read_foreign_keys_to(
    conn: &mut Conn,
    args: (&str, &str),
) -> db::DbResult<Vec<ForeignKeyInfo>> {
    let rows: Vec<(String, String, String, String)> = conn.exec(sql::FOREIGN_KEYS_TO, args).await?;
    Ok(rows
        .into_iter()
        .map(|(fk, schema, table, delete_rule)| ForeignKeyInfo {
            name: fk,
            other: format!("{schema}.{table}"),
            delete_rule,
        })
        .collect())
}

/// Foreign keys of this table that reference others (their ON DELETE rule does not matter:
/// deleting from this table never triggers it).
async fn read_foreign_keys_from(
    conn: &mut Conn,
    args: (&str, &str),
) -> db::DbResult<Vec<ForeignKeyInfo>> {
    let rows: Vec<(String, String, String)> = conn.exec(sql::FOREIGN_KEYS_FROM, args).await?;
    Ok(rows
        .into_iter()
        .map(|(fk, schema, table)| ForeignKeyInfo {
            name: fk,
            other: format!("{schema}.{table}"),
            delete_rule: String::new(),
        })
        .collect())
}
