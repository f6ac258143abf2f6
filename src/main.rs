//! Scratch CLI for the WAL helper (the lead writes the real one): `replay --inspect` and the
//! hidden `debug wal-append` used by the crash test.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "archiver")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replays the WAL; with --inspect prints what it holds.
    Replay {
        #[arg(long)]
        inspect: bool,
        #[arg(long)]
        wal_dir: PathBuf,
        #[arg(long, default_value = "text")]
        format: String,
    },
    #[command(hide = true)]
    Debug {
        #[command(subcommand)]
        command: DebugCommand,
    },
}

#[derive(Subcommand)]
enum DebugCommand {
    WalAppend {
        #[arg(long)]
        wal_dir: PathBuf,
        #[arg(long)]
        records: u64,
        #[arg(long)]
        payload_bytes: usize,
        #[arg(long, default_value_t = 1)]
        sync_every: u64,
        #[arg(long, default_value_t = archiver::wal::DEFAULT_SEGMENT_BYTES)]
        segment_bytes: u64,
    },
}

fn run() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Command::Replay {
            inspect,
            wal_dir,
            format,
        } => {
            anyhow::ensure!(inspect, "only replay --inspect exists in this build");
            let json = match format.as_str() {
                "json" => true,
                "text" => false,
                other => anyhow::bail!("unknown --format {other:?}: use text or json"),
            };
            let mut sink = archiver::inspect::CountingSink::default();
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let verdict = archiver::inspect::inspect(&wal_dir, json, &mut out, &mut sink)?;
            std::io::Write::flush(&mut out)?;
            Ok(match verdict {
                archiver::inspect::InspectVerdict::Corrupt => ExitCode::from(2),
                _ => ExitCode::SUCCESS,
            })
        }
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
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            archiver::wal::stress::append_loop(
                &wal_dir,
                records,
                payload_bytes,
                sync_every,
                segment_bytes,
                &mut out,
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("archiver: {e:#}");
            ExitCode::FAILURE
        }
    }
}
