//! The command line: arguments as the user typed them (clap stays inside this module), turned
//! into calls of the engine, the operator commands and the WAL inspector, and the documented
//! exit codes.

pub mod exit;
mod hooks;
mod signals;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{ConfigError, JobConfig};
use crate::engine::{self, shutdown, RunEnd};
use crate::error::Error;
use crate::ops::{self, ResetSelection};

#[derive(Debug, Parser)]
#[command(
    name = "archiver",
    version,
    about = "Moves old rows from a MySQL/MariaDB table into an archive table, resumably"
)]
struct Args {
    /// More output on stderr (-v: progress, -vv: debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Log lines as text for people, or as one JSON object per line for log shippers.
    #[arg(long, value_enum, default_value_t = Format::Text, global = true)]
    log_format: Format,
    #[command(subcommand)]
    command: Command,
}

/// `archiver run`'s arguments.
#[derive(Debug, clap::Args)]
struct RunCommand {
    /// The job file (TOML).
    #[arg(long)]
    config: PathBuf,
    /// Print the plan and the exact SQL; change nothing (no WAL written either).
    #[arg(long)]
    dry_run: bool,
    /// Stop starting new batches after this long (e.g. 45m, 2h); the next run resumes.
    #[arg(long, value_parser = humantime::parse_duration)]
    max_runtime: Option<Duration>,
    /// Stop starting new batches at this local time (HH:MM, today or tomorrow).
    #[arg(long, value_parser = parse_until)]
    until: Option<chrono::NaiveTime>,
    /// Never compact the log before the run, whatever `compact_above_records` says.
    #[arg(long)]
    no_compact: bool,
    /// Without a terminal, log a progress line this often (e.g. 30s, 5m; 0 for none). On a
    /// terminal a live bar shows progress instead.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    progress_every: Duration,
    /// At the end, print on stderr where the time went: count, seconds and share of the
    /// wall time of each action (plan, lock, copy, delete, commit, WAL append and sync,
    /// throttle, other), and the rows moved with their rate.
    #[arg(long)]
    statistics: bool,
    /// Batches in flight at once, each on its own connection (1 to 16); overrides the job
    /// file's `parallel`.
    #[arg(long)]
    jobs: Option<u32>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Archive the rows the job selects: resume an unfinished run, or start one.
    Run(RunCommand),
    /// Show how far the job is, what failed and why (read-only; works during a run).
    Status {
        /// The job file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Mark batches for retry by the next run (refused while a run holds the lock).
    Reset {
        /// The job file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// This batch.
        #[arg(long, group = "which")]
        batch: Option<u64>,
        /// Every failed or parked batch.
        #[arg(long, group = "which")]
        failed: bool,
        /// Failed or parked batches whose last error matches this LIKE pattern (% and _).
        #[arg(long, group = "which")]
        error_like: Option<String>,
    },
    /// Read the WAL: `--inspect` prints segments, records, damage and the replayed state;
    /// `--salvage-last-segment` is the explicit override for damage in the last segment.
    Replay {
        /// Print what the WAL holds (read-only).
        #[arg(long, required_unless_present = "salvage_last_segment")]
        inspect: bool,
        /// Cut the last segment at its first invalid record even when valid records follow
        /// (they are lost). Never automatic; read `--inspect` first. Takes the WAL lock.
        #[arg(long, conflicts_with = "inspect")]
        salvage_last_segment: bool,
        /// The WAL directory.
        #[arg(long)]
        wal_dir: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Replace the log with a snapshot of its state: the last runs in full detail, older runs
    /// as totals (refused while a run holds the lock).
    Compact {
        /// The WAL directory.
        #[arg(long)]
        wal_dir: PathBuf,
        /// Runs kept in full detail, every batch; older runs keep their totals.
        #[arg(long, default_value_t = crate::config::KEEP_RUNS.default)]
        keep_runs: u32,
        /// Say what it would do; write nothing, take no lock.
        #[arg(long)]
        dry_run: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Control the job's running process over its socket in the WAL directory: status, pause,
    /// resume, stop, or set batch_rows=N / sleep_ms=N / max_lag_s=N for the rest of its run.
    Ctl {
        /// The job file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// What to ask.
        #[arg(value_enum)]
        action: CtlAction,
        /// For `set`: KEY=VALUE, one or more (batch_rows, sleep_ms, max_lag_s).
        #[arg(value_name = "KEY=VALUE")]
        settings: Vec<String>,
        /// Output format (json: the answer as the job sent it).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Developer tools (hidden).
    #[command(hide = true)]
    Debug {
        #[command(subcommand)]
        command: DebugCommand,
    },
}

#[derive(Debug, Subcommand)]
enum DebugCommand {
    /// Append deterministic records, printing `durable <lsn>` after each sync (crash tests).
    WalAppend {
        #[arg(long)]
        wal_dir: PathBuf,
        #[arg(long)]
        records: u64,
        #[arg(long, default_value_t = 100)]
        payload_bytes: usize,
        #[arg(long, default_value_t = 1)]
        sync_every: u64,
        #[arg(long, default_value_t = crate::wal::DEFAULT_SEGMENT_BYTES)]
        segment_bytes: u64,
        /// Sync on another thread while appending goes on (`WalWriter::begin_sync`).
        #[arg(long)]
        split_sync: bool,
    },
}

/// What `archiver ctl` asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CtlAction {
    /// What the process is doing: state, rows, settings.
    Status,
    /// Hold between batches, no transaction open.
    Pause,
    /// End a pause made with `ctl pause`.
    Resume,
    /// Finish the current batch and exit "stopped early" (2).
    Stop,
    /// Change settings for the rest of the run (recorded in the WAL).
    Set,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn parse_until(text: &str) -> Result<chrono::NaiveTime, String> {
    chrono::NaiveTime::parse_from_str(text, "%H:%M")
        .map_err(|_| format!("{text:?} is not a time of day as HH:MM (e.g. 05:30)"))
}

/// Parses the arguments, runs the command, prints an error once with its whole cause chain,
/// and returns the exit code.
pub fn main() -> ExitCode {
    // clap exits with 2 on a usage error, which is our "stopped early" code; a usage error is
    // a configuration error to a scheduler.
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() {
                exit::CONFIG
            } else {
                exit::DONE
            });
        }
    };
    let level = match args.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    // Progress lines and the end-of-run summary are for the scheduler's log at any level.
    let filter = tracing_subscriber::EnvFilter::try_from_env("ARCHIVER_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "archiver={level},archiver::progress=info,archiver::summary=info,archiver::hook=info"
        ))
    });
    let json = args.log_format == Format::Json;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        logs.json()
            .flatten_event(true)
            .with_current_span(false)
            .init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false)
            .init();
    }
    let say = Say { json };
    match dispatch(args.command, say) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            say.line("failed", &error.to_string());
            ExitCode::from(exit::for_error(&error))
        }
    }
}

/// The lines a run ends with (its summary, the error that stopped it): `archiver: ...` on
/// stderr, or with `--log-format json` a JSON log line like every other, whose `outcome` field
/// says how it ended.
#[derive(Debug, Clone, Copy)]
struct Say {
    json: bool,
}

impl Say {
    fn line(self, outcome: &str, text: &str) {
        if self.json {
            tracing::info!(target: "archiver::summary", outcome, "{text}");
        } else {
            eprintln!("archiver: {text}");
        }
    }

    /// A line continuing the previous one (no `archiver:` prefix in text).
    fn more(self, outcome: &str, text: &str) {
        if self.json {
            tracing::info!(target: "archiver::summary", outcome, "{text}");
        } else {
            eprintln!("{text}");
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Runs one command; `Ok` holds the exit code of an outcome.
fn dispatch(command: Command, say: Say) -> Result<u8, Error> {
    let stdout = &mut std::io::stdout().lock();
    match command {
        Command::Run(command) => run_command(command, say, stdout),
        Command::Status { config, format } => {
            ops::status(&JobConfig::load(&config)?, format == Format::Json, stdout)?;
            Ok(exit::DONE)
        }
        Command::Reset {
            config,
            batch,
            failed,
            error_like,
        } => {
            let selection = reset_selection(batch, failed, error_like)?;
            ops::reset(&JobConfig::load(&config)?, &selection, stdout)?;
            Ok(exit::DONE)
        }
        Command::Replay {
            salvage_last_segment: true,
            wal_dir,
            ..
        } => {
            ops::salvage(&wal_dir, stdout)?;
            Ok(exit::DONE)
        }
        Command::Replay {
            wal_dir, format, ..
        } => {
            let verdict = ops::inspect_log(&wal_dir, format == Format::Json, stdout)?;
            Ok(exit::for_inspect(verdict))
        }
        Command::Compact {
            wal_dir,
            keep_runs,
            dry_run,
            format,
        } => {
            let keep_runs = crate::config::KEEP_RUNS
                .value(Some(keep_runs))
                .map_err(|e| ConfigError(e.0.replace("[job] keep_runs", "--keep-runs")))?;
            ops::compact(&wal_dir, keep_runs, dry_run, format == Format::Json, stdout)?;
            Ok(exit::DONE)
        }
        command @ Command::Ctl { .. } => ctl(command, stdout),
        Command::Debug { command } => debug(command, stdout),
    }
}

/// `archiver ctl`: one request to the job's running process, its answer printed.
fn ctl(command: Command, out: &mut dyn std::io::Write) -> Result<u8, Error> {
    let Command::Ctl {
        config,
        action,
        settings,
        format,
    } = command
    else {
        unreachable!("dispatch passes ctl commands only");
    };
    let request = ctl_request(action, settings)?;
    let job = JobConfig::load(&config)?;
    ops::ctl(&job, &config, &request, format == Format::Json, out)?;
    Ok(exit::DONE)
}

/// The request of `archiver ctl ACTION [KEY=VALUE...]`; settings go with `set` only.
fn ctl_request(action: CtlAction, settings: Vec<String>) -> Result<ops::CtlRequest, ConfigError> {
    if action != CtlAction::Set && !settings.is_empty() {
        return Err(ConfigError(
            format!("ctl {action:?} takes no KEY=VALUE; only `ctl set` does").to_lowercase(),
        ));
    }
    Ok(match action {
        CtlAction::Status => ops::CtlRequest::Status,
        CtlAction::Pause => ops::CtlRequest::Pause,
        CtlAction::Resume => ops::CtlRequest::Resume,
        CtlAction::Stop => ops::CtlRequest::Stop,
        CtlAction::Set => ops::CtlRequest::Set(settings),
    })
}

/// `archiver run`, or its dry run.
fn run_command(
    command: RunCommand,
    say: Say,
    stdout: &mut dyn std::io::Write,
) -> Result<u8, Error> {
    let mut config = JobConfig::load(&command.config)?;
    if let Some(jobs) = command.jobs {
        config.set_parallel(jobs)?;
    }
    if command.dry_run {
        runtime()?.block_on(ops::dry_run(&config, stdout))?;
        return Ok(exit::DONE);
    }
    let args = RunArgs {
        max_runtime: command.max_runtime,
        until: command.until,
        compact: !command.no_compact,
        job_file: command.config.clone(),
        display: engine::progress::Display::auto(command.progress_every),
        statistics: command.statistics,
    };
    run(&config, args, say)
}

/// `archiver run`: the engine, with signals and the time window as its stop requests.
/// What `archiver run` takes besides the job.
struct RunArgs {
    /// `--max-runtime`.
    max_runtime: Option<Duration>,
    /// `--until`.
    until: Option<chrono::NaiveTime>,
    /// Not `--no-compact`.
    compact: bool,
    /// Where progress goes.
    display: engine::progress::Display,
    /// `--statistics`.
    statistics: bool,
    /// The job file, as given: its hooks, and the stop and pause flag files beside it.
    job_file: PathBuf,
}

fn run(config: &JobConfig, args: RunArgs, say: Say) -> Result<u8, Error> {
    let RunArgs {
        max_runtime,
        until,
        compact,
        display,
        statistics,
        job_file,
    } = args;
    let sentinel = engine::Sentinel::beside(&job_file);
    let started = std::time::Instant::now();
    let hooks = hooks::RunHooks::new(config, &job_file, say.json);
    let deadline = [
        max_runtime.map(signals::deadline_after),
        until.map(signals::deadline_at),
    ]
    .into_iter()
    .flatten()
    .min();
    runtime()?.block_on(async {
        let (trigger, shutdown) = shutdown::channel();
        let control = trigger.clone();
        signals::spawn_signal_handler(trigger.clone());
        if let Some(deadline) = deadline {
            signals::spawn_deadline(deadline, trigger);
        }
        let options = engine::RunOptions {
            shutdown,
            compact,
            sentinel: Some(sentinel),
            display,
            control: Some(control),
            on_ready: hooks.on_ready(started),
        };
        let result = engine::run(config, options).await;
        let code = match &result {
            Ok(report) => {
                say_how_it_ended(report, say);
                exit::for_run(report.end)
            }
            Err(error) => exit::for_error(error),
        };
        if let (Ok(report), true) = (&result, statistics) {
            eprintln!("archiver: statistics:");
            for line in report.statistics.lines() {
                eprintln!("{line}");
            }
        }
        hooks.at_end(config, &result, code, started.elapsed()).await;
        result.map(|_| code)
    })
}

/// The run's last words: what it did, and what needs attention.
fn say_how_it_ended(report: &engine::RunReport, say: Say) {
    match report.end {
        RunEnd::Done => say.line("done", &format!("done: {}", report.line())),
        RunEnd::Stopped => say.line(
            "stopped",
            &format!(
                "stopped early with work left; the next run resumes: {}",
                report.line()
            ),
        ),
        RunEnd::Attention => {
            say.line("attention", &report.line());
            for line in ops::attention_lines(&report.state) {
                say.more("attention", &line);
            }
        }
    }
}

fn reset_selection(
    batch: Option<u64>,
    failed: bool,
    error_like: Option<String>,
) -> Result<ResetSelection, ConfigError> {
    match (batch, failed, error_like) {
        (Some(id), _, _) => Ok(ResetSelection::Batch(id)),
        (None, true, _) => Ok(ResetSelection::Failed),
        (None, false, Some(pattern)) => Ok(ResetSelection::ErrorLike(pattern)),
        (None, false, None) => Err(ConfigError(
            "reset needs one of --batch N, --failed, --error-like PATTERN".into(),
        )),
    }
}

fn debug(command: DebugCommand, out: &mut dyn std::io::Write) -> Result<u8, Error> {
    let DebugCommand::WalAppend {
        wal_dir,
        records,
        payload_bytes,
        sync_every,
        segment_bytes,
        split_sync,
    } = command;
    crate::wal::stress::append_loop(
        &wal_dir,
        (records, payload_bytes),
        (sync_every, split_sync),
        segment_bytes,
        out,
    )?;
    Ok(exit::DONE)
}
