//! The job's hooks (`[hooks]`, gh-ost's model): a command run when a run invocation starts
//! moving rows, when it found conflicts, and when it ends (success, failure, stop), told what
//! the run did in `ARCHIVER_*` environment variables and a JSON summary on its stdin.
//!
//! **A hook changes nothing**: whatever it does (exits non-zero, hangs, cannot be started), it is
//! reported on stderr and the run's outcome, exit code and log are what they would have been
//! without it. **A hook never sees a password**: the variables the job file names as password
//! sources are removed from its environment, and no password is in its summary. **A hook never
//! runs inside a batch**: the CLI runs them around the engine (`on_start` through
//! `engine::RunOptions::on_ready`, between the pre-flight and the first step, no transaction
//! open; the others after `engine::run` returned, the log closed), and it inherits no descriptor
//! of ours (every file, including the WAL's `LOCK` and segments, and every socket is opened
//! close-on-exec).
//!
//! - `process.rs`: running one command, bounded in time, its process group killed past it.
//! - this file: the events, the facts a hook is told and how it is told them, the reports.

mod process;

pub use process::KILL_GRACE_MS;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{self, HookCommand, JobConfig};
use crate::journal::{self, Journal};
use crate::state::{Counts, State};

/// Longest error message a hook is told, in bytes (cut at a character boundary).
pub const ERROR_BYTES_MAX: usize = 4_096;

/// When a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookEvent {
    /// The job is about to move rows (after the pre-flight).
    Start,
    /// The invocation ended done (exit 0) or done with attention needed (exit 3).
    Success,
    /// The invocation ended with an error (exit 1, 64, 75).
    Failure,
    /// The invocation found conflicts; runs before the end hook.
    Conflict,
    /// The invocation stopped early on request (exit 2).
    Stop,
}

impl HookEvent {
    /// Its key in `[hooks]`, which is also `ARCHIVER_HOOK`.
    pub fn key(self) -> &'static str {
        match self {
            HookEvent::Start => "on_start",
            HookEvent::Success => "on_success",
            HookEvent::Failure => "on_failure",
            HookEvent::Conflict => "on_conflict",
            HookEvent::Stop => "on_stop",
        }
    }
}

/// What a hook is told about the run: this invocation's share of the counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Facts {
    /// The run this invocation started or resumed; `None` if it ended before knowing (a
    /// refusal before any log existed).
    pub run_id: Option<u64>,
    /// `done`, `attention`, `stopped`, `failed`, `refused`, `locked`; `None` for `on_start`.
    pub outcome: Option<&'static str>,
    /// The exit code archiver exits with; `None` for `on_start`.
    pub exit_code: Option<u8>,
    /// Rows this invocation moved (deleted from the source after copying).
    pub rows_archived: u64,
    /// Rows this invocation found already archived, identical, and deleted from the source.
    pub rows_already_archived: u64,
    /// Batches this invocation completed.
    pub batches: u64,
    /// Rows this invocation kept in the source because the archive holds a different row under
    /// their key.
    pub conflicts: u64,
    /// Seconds since `archiver run` started.
    pub elapsed_s: f64,
    /// The error that ended the invocation (`on_failure`), as archiver prints it.
    pub error: Option<String>,
}

/// Where the log stood when the run became ready: what a failed invocation's share is counted
/// from.
#[derive(Debug, Clone, Copy)]
pub struct Begin {
    /// The run started or resumed.
    pub run_id: u64,
    /// The log's counters then.
    pub totals: Counts,
}

impl Begin {
    /// The run `state` will work on (its open run, or the next one) and its counters.
    pub fn of(state: &State) -> Begin {
        Begin {
            run_id: state.open_run().map_or(state.next_run_id(), |r| r.run_id),
            totals: *state.totals(),
        }
    }
}

impl Facts {
    /// Facts with `moved` as this invocation's counters.
    pub fn of_counts(run_id: Option<u64>, moved: &Counts) -> Facts {
        Facts {
            run_id,
            rows_archived: moved.rows_deleted,
            rows_already_archived: moved.rows_already,
            batches: moved.batches_done,
            conflicts: moved.rows_conflicting,
            ..Facts::default()
        }
    }

    /// The facts of an invocation that failed: its counters are read back from the log
    /// (read-only, no lock), counted from `begin`; zero if it failed before it began, or if the
    /// log cannot be read (the failure may be that very log).
    pub fn after_error(wal_dir: &Path, begin: Option<&Begin>, error: &str) -> Facts {
        let state = journal::has_log(wal_dir)
            .then(|| Journal::read(wal_dir).ok())
            .flatten();
        let mut facts = match (begin, state) {
            (Some(begin), Some(state)) => {
                Facts::of_counts(Some(begin.run_id), &state.totals().since(&begin.totals))
            }
            (Some(begin), None) => Facts::of_counts(Some(begin.run_id), &Counts::default()),
            (None, state) => Facts {
                run_id: state.and_then(|s| s.open_run().or(s.last_run()).map(|r| r.run_id)),
                ..Facts::default()
            },
        };
        facts.error = Some(cut(error, ERROR_BYTES_MAX).to_string());
        facts
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// One table of the job, as hooks are told it.
#[derive(Debug, Clone, Serialize)]
struct Table {
    /// `host:port`, or the socket path.
    server: String,
    /// The schema (database).
    schema: String,
    /// The table.
    table: String,
}

/// The job, as hooks are told it: no password, no url (it could carry parameters an operator
/// considers private; the server is enough to tell jobs apart).
#[derive(Debug, Clone, Serialize)]
struct JobInfo {
    /// The job file's name without its extension (`rewards` for `/etc/archiver/rewards.toml`).
    name: String,
    /// The job file, as given to `--config`.
    file: PathBuf,
    /// The source table.
    source: Table,
    /// The archive table.
    archive: Table,
    /// The predicate.
    predicate: String,
    /// The WAL directory.
    wal_dir: PathBuf,
}

/// The summary a hook reads on stdin.
#[derive(Serialize)]
struct Summary<'a> {
    /// `on_start`, ...
    hook: &'static str,
    /// The job.
    job: &'a JobInfo,
    /// What the run did.
    #[serde(flatten)]
    facts: &'a Facts,
}

/// The job's hooks, ready to run.
#[derive(Debug, Clone)]
pub struct Hooks {
    /// `[hooks]`.
    config: config::Hooks,
    /// The job, for the environment and the summary.
    job: JobInfo,
    /// Forward the hooks' output as JSON log lines (`--log-format json`), not as text.
    json: bool,
}

impl Hooks {
    /// The hooks of `config`, read from `job_file`; their output forwarded as JSON log lines
    /// when `json`.
    pub fn new(config: &JobConfig, job_file: &Path, json: bool) -> Hooks {
        let identity = config.identity();
        let name = job_file
            .file_stem()
            .map_or(String::new(), |s| s.to_string_lossy().into_owned());
        Hooks {
            config: config.hooks.clone(),
            job: JobInfo {
                name,
                file: job_file.to_path_buf(),
                source: Table {
                    server: identity.source_server,
                    schema: identity.source_schema,
                    table: identity.source_table,
                },
                archive: Table {
                    server: identity.archive_server,
                    schema: identity.archive_schema,
                    table: identity.archive_table,
                },
                predicate: identity.predicate,
                wal_dir: config.wal_dir.clone(),
            },
            json,
        }
    }

    /// Whether any hook is configured.
    pub fn any(&self) -> bool {
        self.config.any()
    }

    /// The command for `event`, if configured.
    fn command(&self, event: HookEvent) -> Option<&HookCommand> {
        let c = &self.config;
        match event {
            HookEvent::Start => c.on_start.as_ref(),
            HookEvent::Success => c.on_success.as_ref(),
            HookEvent::Failure => c.on_failure.as_ref(),
            HookEvent::Conflict => c.on_conflict.as_ref(),
            HookEvent::Stop => c.on_stop.as_ref(),
        }
    }

    /// Runs the hook for `event`, if configured, to its end or its time bound, and reports
    /// how it ended. Blocks the calling thread; never fails.
    pub fn run(&self, event: HookEvent, facts: &Facts) {
        let Some(command) = self.command(event) else {
            return;
        };
        let key = event.key();
        let summary = Summary {
            hook: key,
            job: &self.job,
            facts,
        };
        let mut stdin = serde_json::to_vec(&summary).unwrap_or_default();
        stdin.push(b'\n');
        let (set_env, mut remove_env) = self.environment(event, facts);
        remove_env.extend(self.config.withheld_env.iter().cloned());
        let timeout = Duration::from_secs(self.config.timeout_s.into());
        let started = Instant::now();
        tracing::info!("running hook {key}");
        let ended = process::run(process::Spec {
            command,
            set_env,
            remove_env,
            stdin,
            timeout,
            output: if self.json {
                process::Output::Json { hook: key }
            } else {
                process::Output::Text {
                    label: format!("archiver: hook {key}: "),
                }
            },
        });
        report(key, self.config.timeout_s, &ended, started.elapsed());
    }

    /// The `ARCHIVER_*` variables for `event`, and those to remove because they do not apply
    /// (so that none is inherited from archiver's own environment).
    fn environment(
        &self,
        event: HookEvent,
        facts: &Facts,
    ) -> (Vec<(&'static str, String)>, Vec<String>) {
        let optional = [
            ("ARCHIVER_RUN_ID", facts.run_id.map(|id| id.to_string())),
            ("ARCHIVER_OUTCOME", facts.outcome.map(str::to_string)),
            ("ARCHIVER_EXIT_CODE", facts.exit_code.map(|c| c.to_string())),
            ("ARCHIVER_ERROR", facts.error.clone()),
        ];
        let mut set = vec![
            ("ARCHIVER_HOOK", event.key().to_string()),
            ("ARCHIVER_JOB", self.job.name.clone()),
            ("ARCHIVER_JOB_FILE", path_text(&self.job.file)),
            ("ARCHIVER_WAL_DIR", path_text(&self.job.wal_dir)),
            ("ARCHIVER_ROWS_ARCHIVED", facts.rows_archived.to_string()),
            (
                "ARCHIVER_ROWS_ALREADY_ARCHIVED",
                facts.rows_already_archived.to_string(),
            ),
            ("ARCHIVER_BATCHES", facts.batches.to_string()),
            ("ARCHIVER_CONFLICTS", facts.conflicts.to_string()),
            ("ARCHIVER_ELAPSED_S", format!("{:.3}", facts.elapsed_s)),
        ];
        let mut remove = Vec::new();
        for (name, value) in optional {
            match value {
                Some(value) => set.push((name, value)),
                None => remove.push(name.to_string()),
            }
        }
        (set, remove)
    }
}

/// A path as an environment value.
fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Says how hook `key` ended: a line at `-v` when it succeeded, a warning otherwise, always
/// adding that the run is unchanged.
fn report(key: &str, timeout_s: u32, ended: &process::Ended, took: Duration) {
    let unchanged = "the run's outcome and exit code are unchanged";
    let seconds = took.as_secs_f64();
    match ended {
        process::Ended::Exited(status) if status.success() => {
            tracing::info!("hook {key} finished (exit status 0) in {seconds:.1} s");
        }
        process::Ended::Exited(status) => {
            use std::os::unix::process::ExitStatusExt;
            let how = match (status.code(), status.signal()) {
                (Some(code @ (126 | 127)), _) => {
                    format!("exit status {code} (the shell could not find or run the command)")
                }
                (Some(code), _) => format!("exit status {code}"),
                (None, Some(signal)) => format!("killed by signal {signal}"),
                (None, None) => format!("{status}"),
            };
            tracing::warn!("hook {key} failed after {seconds:.1} s: {how}; {unchanged}");
        }
        process::Ended::TimedOut { killed } => {
            let how = if *killed {
                format!("SIGTERM, then SIGKILL after {KILL_GRACE_MS} ms")
            } else {
                "SIGTERM".to_string()
            };
            tracing::warn!(
                "hook {key} ran longer than [hooks] timeout_s = {timeout_s} s; its process group was killed ({how}); {unchanged}"
            );
        }
        process::Ended::NotStarted(error) => {
            tracing::warn!("hook {key} could not be started: {error}; {unchanged}");
        }
    }
}
