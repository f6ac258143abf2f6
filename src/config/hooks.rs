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
    pub secret_env: Vec<String>,
}

/// Always kept from hooks: the variable the MySQL clients read a password from.
const SECRET_ENV_ALWAYS: &str = "MYSQL_PWD";

impl Hooks {
    /// Validates `[hooks]`; `text` is the whole job file, searched for the variables that hold
    /// passwords.
    pub fn from_raw(raw: &RawHooks, text: &str) -> Result<Hooks, ConfigError> {
        let timeout_s = HOOK_TIMEOUT_S.value(raw.timeout_s).map_err(|e| {
            ConfigError(e.0.replacen("[job] timeout_s", "[hooks] timeout_s", 1))
        })?;
        Ok(Hooks {
            on_start: command("on_start", raw.on_start.as_ref())?,
            on_success: command("on_success", raw.on_success.as_ref())?,
            on_failure: command("on_failure", raw.on_failure.as_ref())?,
            on_conflict: command("on_conflict", raw.on_conflict.as_ref())?,
            on_stop: command("on_stop", raw.on_stop.as_ref())?,
            timeout_s,
            secret_env: secret_env(text),
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
                return err(format!("[hooks] {key} is empty; give {what}, or remove the key"));
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
        return err(format!("[hooks] {key} contains a NUL character, which no command can take; remove it"));
    }
    Ok(Some(command))
}

/// The values of every key ending in `_env` anywhere in the job file (`password_env` of
/// `[source]`, `[archive]` and any other endpoint), and [`SECRET_ENV_ALWAYS`]: the variables
/// that hold secrets, whatever tables future versions add.
fn secret_env(text: &str) -> Vec<String> {
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
    let mut found = vec![SECRET_ENV_ALWAYS.to_string()];
    if let Ok(value) = text.parse::<toml::Table>() {
        walk(&toml::Value::Table(value), &mut found);
    }
    found.sort();
    found.dedup();
    found
}
