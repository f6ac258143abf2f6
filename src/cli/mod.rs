//! The command line: arguments as the user typed them (clap stays inside this module), turned
//! into calls of the engine, the operator commands and the WAL inspector, and the documented
//! exit codes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{ConfigError, JobConfig};
use crate::db::Refusal;
use crate::engine::{self, RunEnd, RunOptions, StopFlag};
use crate::ops::{self, ResetSelection};
use crate::wal::WalError;

/// Exit codes, for schedulers. Documented in README.md; never renumber.
pub mod exit {
    /// Done: everything that matched is archived; nothing needs attention.
    pub const DONE: u8 = 0;
    /// An error stopped the job (server unreachable, corrupt WAL, fatal SQL error). The next
    /// run resumes where it stopped.
    pub const ERROR: u8 = 1;
    /// Stopped early (signal, `--max-runtime`, `--until`) with work left; the next run resumes.
    pub const STOPPED: u8 = 2;
    /// Done, but attention is needed: conflicts were found or batches are parked.
    pub const ATTENTION: u8 = 3;
    /// The job file or the tables it names are wrong; nothing was changed.
    pub const CONFIG: u8 = 64;
    /// Another process holds this job's WAL lock (a run is active); nothing was changed.
    pub const LOCKED: u8 = 75;
}

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Archive the rows the job selects: resume an unfinished run, or start one.
    Run {
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
    },
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
    },
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

/// The instant of the next `until` local time, today or tomorrow.
fn deadline_at(until: chrono::NaiveTime) -> Instant {
    let now = chrono::Local::now();
    let today = now.date_naive().and_time(until);
    let target = if today > now.naive_local() {
        today
    } else {
        today + chrono::Duration::days(1)
    };
    let wait = (target - now.naive_local()).to_std().unwrap_or_default();
    Instant::now() + wait
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
    let filter = tracing_subscriber::EnvFilter::try_from_env("ARCHIVER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("archiver={level}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    match dispatch(args.command) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("archiver: {error:#}");
            ExitCode::from(code_for(&error))
        }
    }
}

/// The exit code an error stands for.
fn code_for(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if cause.is::<ConfigError>() || cause.is::<Refusal>() {
            return exit::CONFIG;
        }
        if let Some(WalError::Locked { .. }) = cause.downcast_ref::<WalError>() {
            return exit::LOCKED;
        }
        if let Some(mysql_async::Error::Server(server)) = cause.downcast_ref::<mysql_async::Error>()
        {
            // Access denied (wrong user or password, no access to the database) or an unknown
            // database at connect: the job file names something the server does not grant or
            // have, a configuration problem.
            if matches!(server.code, 1044 | 1045 | 1049) {
                return exit::CONFIG;
            }
        }
    }
    exit::ERROR
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn load(path: &Path) -> anyhow::Result<JobConfig> {
    Ok(JobConfig::load(path)?)
}

fn dispatch(command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Run {
            config,
            dry_run,
            max_runtime,
            until,
        } => {
            let config = load(&config)?;
            let runtime = runtime()?;
            if dry_run {
                return runtime.block_on(ops::dry_run(&config, &mut std::io::stdout().lock()));
            }
            let deadline = [
                max_runtime.map(|d| Instant::now() + d),
                until.map(deadline_at),
            ]
            .into_iter()
            .flatten()
            .min();
            let stop = Arc::new(StopFlag::default());
            runtime.block_on(async {
                spawn_signal_handler(stop.clone());
                let (end, state) = engine::run(&config, RunOptions { deadline, stop }).await?;
                Ok(match end {
                    RunEnd::Done => exit::DONE,
                    RunEnd::Stopped => {
                        eprintln!("archiver: stopped early with work left; the next run resumes");
                        exit::STOPPED
                    }
                    RunEnd::Attention => {
                        ops::print_attention(&state);
                        exit::ATTENTION
                    }
                })
            })
        }
        Command::Status { config, format } => {
            let config = load(&config)?;
            ops::status(
                &config,
                format == Format::Json,
                &mut std::io::stdout().lock(),
            )?;
            Ok(exit::DONE)
        }
        Command::Reset {
            config,
            batch,
            failed,
            error_like,
        } => {
            let config = load(&config)?;
            let selection = match (batch, failed, error_like) {
                (Some(id), _, _) => ResetSelection::Batch(id),
                (None, true, _) => ResetSelection::Failed,
                (None, false, Some(pattern)) => ResetSelection::ErrorLike(pattern),
                (None, false, None) => {
                    return Err(ConfigError(
                        "reset needs one of --batch N, --failed, --error-like PATTERN".into(),
                    )
                    .into())
                }
            };
            ops::reset(&config, &selection, &mut std::io::stdout().lock())?;
            Ok(exit::DONE)
        }
        Command::Replay {
            salvage_last_segment: true,
            wal_dir,
            ..
        } => {
            ops::salvage(&wal_dir, &mut std::io::stdout().lock())?;
            Ok(exit::DONE)
        }
        Command::Replay {
            wal_dir, format, ..
        } => ops::inspect(
            &wal_dir,
            format == Format::Json,
            &mut std::io::stdout().lock(),
        ),
        Command::Debug {
            command:
                DebugCommand::WalAppend {
                    wal_dir,
                    records,
                    payload_bytes,
                    sync_every,
                    segment_bytes,
                },
        } => {
            crate::wal::stress::append_loop(
                &wal_dir,
                records,
                payload_bytes,
                sync_every,
                segment_bytes,
                &mut std::io::stdout().lock(),
            )?;
            Ok(exit::DONE)
        }
    }
}

/// First SIGINT/SIGTERM: finish the current batch and stop. Second: stop at once, which is
/// safe because the WAL and the batch transaction make any stopping point resumable.
fn spawn_signal_handler(stop: Arc<StopFlag>) {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async move {
        let (Ok(mut interrupt), Ok(mut terminate)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            tracing::warn!("cannot install signal handlers; signals stop the job at once");
            return;
        };
        for _ in 0..2 {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            if stop.requested() {
                eprintln!("archiver: second signal, stopping now; the next run resumes");
                std::process::exit(exit::STOPPED.into());
            }
            eprintln!("archiver: signal received, finishing the current batch (send again to stop at once)");
            stop.request();
        }
    });
}
