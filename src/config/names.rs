//! Table names as the job file writes them (`table` or `database.table`, parts optionally
//! quoted in backticks), resolved to a schema and a table.

use super::{err, ConfigError};

/// A table named in the configuration, with its schema resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    /// Schema (database).
    pub schema: String,
    /// Table.
    pub table: String,
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

/// Splits `table` or `database.table` into its parts. A part may be quoted in backticks, as in
/// SQL (a doubled backtick inside stands for one), so that names holding a dot can be written:
/// "`sales.2024`.`orders`"; an unquoted part is taken as it is, backticks inside included.
/// `None` if the text is not one or two such parts.
fn name_parts(text: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'`') {
            chars.next();
            loop {
                match chars.next()? {
                    '`' if chars.peek() == Some(&'`') => {
                        chars.next();
                        part.push('`');
                    }
                    '`' => break,
                    c => part.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                part.push(c);
                chars.next();
            }
        }
        parts.push(part);
        match chars.next() {
            None => break,
            Some('.') => continue,
            Some(_) => return None,
        }
    }
    (parts.len() <= 2).then_some(parts)
}

pub(super) fn table_name(
    section: &str,
    text: &str,
    default_schema: Option<&str>,
) -> Result<TableName, ConfigError> {
    let Some(parts) = name_parts(text) else {
        return err(format!(
            "[{section}] table {text:?} is not `table` or `database.table` (quote a name that holds a dot in backticks: \"`db`.`my.table`\")"
        ));
    };
    let (schema, table) = match parts.as_slice() {
        [table] => match default_schema {
            Some(schema) => (schema.to_string(), table.clone()),
            None => {
                return err(format!(
                "[{section}] table {text:?} names no database and the url has none; write database.table"
            ))
            }
        },
        [schema, table] => (schema.clone(), table.clone()),
        _ => unreachable!("name_parts returns one or two parts"),
    };
    if schema.is_empty() || table.is_empty() {
        return err(format!("[{section}] table {text:?} has an empty name part"));
    }
    Ok(TableName { schema, table })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_may_quote_parts_holding_dots_or_backticks() {
        for (text, schema, table) in [
            ("orders", "shop", "orders"),
            ("sales.orders", "sales", "orders"),
            ("`my.table`", "shop", "my.table"),
            ("`sales.2024`.`or.ders`", "sales.2024", "or.ders"),
            ("`we``ird`", "shop", "we`ird"),
            ("sales.`x.y`", "sales", "x.y"),
            ("tâble 😀", "shop", "tâble 😀"),
            ("we`ird name", "shop", "we`ird name"),
        ] {
            let name = table_name("source", text, Some("shop")).unwrap();
            assert_eq!(
                (name.schema.as_str(), name.table.as_str()),
                (schema, table),
                "{text}"
            );
        }
        for text in ["a.b.c", "`unclosed", "`a`b", "", ".t", "`a`.", "``"] {
            assert!(
                table_name("source", text, Some("shop")).is_err(),
                "{text:?} accepted"
            );
        }
    }
}
