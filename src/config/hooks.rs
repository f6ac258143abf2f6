//! `[hooks]`: commands run when a run starts and when it ends (gh-ost's hooks), validated when
//! the job file is read, and the names of the environment variables that hold the job's
//! passwords, which a hook's environment never gets.
//!
//! A command is either a string, run by `/bin/sh -c STRING` (pipes, redirections and
//! `$ARCHIVER_...` expansion work; quote as in a shell), or an array of strings, run directly
//! with no shell (the first element is the program, found on `PATH` unless it holds a `/`; each
//! further element is one argument, passed as written).

use serde::Deserialize;

use super::{err, ConfigError, HOOK_TIMEOUT_S};

/// `[hooks]` as written. Every command is a TOML string or array, checked by [`Hooks::from_raw`]
/// (so that a wrong type gets a message naming the key, not serde's "no variant matched").
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHooks {
    /// Run once the job is about to move rows (after the pre-flight).
    pub on_start: Option<toml::Value>,
    /// Run when a run invocation ends done (exit 0) or done with attention needed (exit 3).
    pub on_success: Option<toml::Value>,
    /// Run when a run invocation ends with an error (exit 1, 64 or 75).
    pub on_failure: Option<toml::Value>,
    /// Run when the invocation found conflicts, before the end hook.
    pub on_conflict: Option<toml::Value>,
    /// Run when the invocation stopped early on request (exit 2).
    pub on_stop: Option<toml::Value>,
    /// Seconds a hook may run before its process group is killed.
    pub timeout_s: Option<u32>,
}

/// One hook's command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookCommand {
    /// Run by `/bin/sh -c`.
    Shell(String),
    /// Program and arguments, no shell; never empty.
    Argv(Vec<String>),
}

/// `[hooks]`, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    /// When the job is about to move rows.
    pub on_start: Option<HookCommand>,
    /// When the invocation ends done (exit 0 or 3).
    pub on_success: Option<HookCommand>,
    /// When the invocation ends with an error.
    pub on_failure: Option<HookCommand>,
    /// When the invocation found conflicts (before the end hook).
    pub on_conflict: Option<HookCommand>,
    /// When the invocation stopped early on request.
    pub on_stop: Option<HookCommand>,
    /// Seconds each hook may run before its process group is killed.
    pub timeout_s: u32,
    /// Environment variables removed from every hook's environment: those the job file names
    /// as a password's source (every `*_env` key, in any table), and `MYSQL_PWD`.
    pub withheld_env: Vec<String>,
}

/// Always kept from hooks: the variable the MySQL clients read a password from.
const WITHHELD_ENV_ALWAYS: &str = "MYSQL_PWD";

impl Hooks {
    /// Validates `[hooks]`; `text` is the whole job file, searched for the variables that hold
    /// passwords.
    pub fn from_raw(raw: &RawHooks, text: &str) -> Result<Hooks, ConfigError> {
        let timeout_s = HOOK_TIMEOUT_S
            .value(raw.timeout_s)
            .map_err(|e| ConfigError(e.0.replacen("[job] timeout_s", "[hooks] timeout_s", 1)))?;
        Ok(Hooks {
            on_start: command("on_start", raw.on_start.as_ref())?,
            on_success: command("on_success", raw.on_success.as_ref())?,
            on_failure: command("on_failure", raw.on_failure.as_ref())?,
            on_conflict: command("on_conflict", raw.on_conflict.as_ref())?,
            on_stop: command("on_stop", raw.on_stop.as_ref())?,
            timeout_s,
            withheld_env: withheld_env(text),
        })
    }

    /// Whether any hook is configured.
    pub fn any(&self) -> bool {
        [
            &self.on_start,
            &self.on_success,
            &self.on_failure,
            &self.on_conflict,
            &self.on_stop,
        ]
        .iter()
        .any(|c| c.is_some())
    }
}

/// One command: a non-empty string, or a non-empty array of strings whose program is not
/// empty; no NUL byte anywhere (it cannot be passed to `exec`).
fn command(key: &str, value: Option<&toml::Value>) -> Result<Option<HookCommand>, ConfigError> {
    let what = "a command string (run by /bin/sh -c) or an array of strings (program and arguments, run without a shell)";
    let command = match value {
        None => return Ok(None),
        Some(toml::Value::String(text)) => {
            if text.trim().is_empty() {
                return err(format!(
                    "[hooks] {key} is empty; give {what}, or remove the key"
                ));
            }
            HookCommand::Shell(text.clone())
        }
        Some(toml::Value::Array(items)) => {
            let argv: Option<Vec<String>> = items
                .iter()
                .map(|item| item.as_str().map(str::to_string))
                .collect();
            match argv {
                None => {
                    return err(format!(
                        "[hooks] {key} holds a value that is not a string; give {what}"
                    ))
                }
                Some(argv) if argv.first().is_none_or(|p| p.trim().is_empty()) => {
                    return err(format!(
                        "[hooks] {key} names no program; its first element is the program to run, e.g. [\"/usr/local/bin/notify\", \"--job\", \"rewards\"]"
                    ))
                }
                Some(argv) => HookCommand::Argv(argv),
            }
        }
        Some(_) => return err(format!("[hooks] {key} must be {what}")),
    };
    let has_nul = match &command {
        HookCommand::Shell(text) => text.contains('\0'),
        HookCommand::Argv(argv) => argv.iter().any(|a| a.contains('\0')),
    };
    if has_nul {
        return err(format!(
            "[hooks] {key} contains a NUL character, which no command can take; remove it"
        ));
    }
    Ok(Some(command))
}

/// The values of every key ending in `_env` anywhere in the job file (`password_env` of
/// `[source]`, `[archive]` and any other endpoint), and [`WITHHELD_ENV_ALWAYS`]: the variables
/// that hold secrets, whatever tables future versions add.
fn withheld_env(text: &str) -> Vec<String> {
    fn walk(value: &toml::Value, found: &mut Vec<String>) {
        match value {
            toml::Value::Table(table) => {
                for (key, value) in table {
                    match value {
                        toml::Value::String(name) if key.ends_with("_env") => {
                            found.push(name.clone());
                        }
                        other => walk(other, found),
                    }
                }
            }
            toml::Value::Array(items) => items.iter().for_each(|item| walk(item, found)),
            _ => {}
        }
    }
    let mut found = vec![WITHHELD_ENV_ALWAYS.to_string()];
    if let Ok(value) = text.parse::<toml::Table>() {
        walk(&toml::Value::Table(value), &mut found);
    }
    found.sort();
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::JobConfig;

    const GOOD: &str = r#"
[source]
url = "mysql://archiver@127.0.0.1:3407/shop"
password_env = "SOURCE_PW"
table = "rewards"

[archive]
url = "mysql://archiver@10.0.0.2:3306/archive"
password_env = "ARCHIVE_PW"
table = "rewards_archive"

[job]
where = "created_at < '2025-06-01'"
wal_dir = "wal"
"#;

    fn hooks(table: &str) -> Result<Hooks, ConfigError> {
        let text = format!("{GOOD}\n[hooks]\n{table}\n");
        JobConfig::parse(&text, Path::new("/etc/archiver"), &|_| Some("pw".into()))
            .map(|config| config.hooks)
    }

    fn shell(text: &str) -> Option<HookCommand> {
        Some(HookCommand::Shell(text.to_string()))
    }

    #[test]
    fn commands_are_strings_for_the_shell_or_argv_arrays() {
        let parsed = hooks(
            "on_start = \"echo start $ARCHIVER_RUN_ID\"\n\
             on_success = [\"/usr/local/bin/notify\", \"--job\", \"it's quoted as written\"]\n\
             on_failure = \"exit 1\"\non_conflict = \"c\"\non_stop = [\"stop\"]\ntimeout_s = 5",
        )
        .unwrap();
        assert_eq!(parsed.on_start, shell("echo start $ARCHIVER_RUN_ID"));
        assert_eq!(
            parsed.on_success,
            Some(HookCommand::Argv(vec![
                "/usr/local/bin/notify".into(),
                "--job".into(),
                "it's quoted as written".into()
            ]))
        );
        assert_eq!(parsed.on_failure, shell("exit 1"));
        assert_eq!(parsed.on_conflict, shell("c"));
        assert_eq!(parsed.on_stop, Some(HookCommand::Argv(vec!["stop".into()])));
        assert_eq!(parsed.timeout_s, 5);
        assert!(parsed.any());
    }

    #[test]
    fn no_hooks_table_means_no_hooks_and_the_default_bound() {
        let config = JobConfig::parse(GOOD, Path::new("/"), &|_| None).unwrap();
        assert!(!config.hooks.any());
        assert_eq!(config.hooks.timeout_s, HOOK_TIMEOUT_S.default);
        assert_eq!(hooks("").unwrap().timeout_s, 60);
    }

    /// The variables named by `password_env` in any table, and `MYSQL_PWD`, are kept from hooks.
    #[test]
    fn password_variables_are_listed_for_removal() {
        let parsed = hooks("on_start = \"true\"").unwrap();
        assert_eq!(
            parsed.withheld_env,
            ["ARCHIVE_PW", "MYSQL_PWD", "SOURCE_PW"]
        );
    }

    #[test]
    fn bad_hooks_are_refused_naming_the_key() {
        let cases = [
            ("on_start = \"\"", "[hooks] on_start is empty"),
            ("on_start = \"   \"", "[hooks] on_start is empty"),
            ("on_stop = []", "[hooks] on_stop names no program"),
            (
                "on_stop = [\"\", \"x\"]",
                "[hooks] on_stop names no program",
            ),
            (
                "on_failure = [\"x\", 1]",
                "[hooks] on_failure holds a value that is not a string",
            ),
            (
                "on_success = 7",
                "[hooks] on_success must be a command string",
            ),
            (
                "on_success = { a = 1 }",
                "[hooks] on_success must be a command string",
            ),
            (
                "on_conflict = \"a\\u0000b\"",
                "[hooks] on_conflict contains a NUL",
            ),
            (
                "timeout_s = 0",
                "[hooks] timeout_s = 0 is out of range; use 1 to 3600",
            ),
            (
                "timeout_s = 3601",
                "[hooks] timeout_s = 3601 is out of range",
            ),
            ("on_finish = \"x\"", "unknown field `on_finish`"),
        ];
        for (table, expected) in cases {
            let error = hooks(table).expect_err(table).0;
            assert!(error.contains(expected), "{table}: {error}");
        }
    }
}
