//! The job's hooks around `archiver run`: `on_start` handed to the engine as its `on_ready`
//! call, the end hooks run after `engine::run` returned (the log closed, its lock released),
//! each on a blocking thread so that signals are still handled while a hook runs. Which hook
//! an outcome gets, and the outcome's name, follow the exit code (`exit.rs`).

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::exit;
use crate::config::JobConfig;
use crate::engine::{self, RunReport};
use crate::error::Error;
use crate::hooks::{Begin, Facts, HookEvent, Hooks};

/// The hooks of one `archiver run`, and where the run began (for a failure's counts).
pub struct RunHooks {
    /// `None` when the job has no hook: nothing is called, nothing read.
    hooks: Option<Arc<Hooks>>,
    /// Set by the `on_ready` call.
    begin: Arc<Mutex<Option<Begin>>>,
}

impl RunHooks {
    /// The hooks of `config`, whose job file is `job_file`; their output as JSON log lines
    /// when `json` (`--log-format json`).
    pub fn new(config: &JobConfig, job_file: &Path, json: bool) -> RunHooks {
        let hooks = Hooks::new(config, job_file, json);
        RunHooks {
            hooks: hooks.any().then(|| Arc::new(hooks)),
            begin: Arc::default(),
        }
    }

    /// The engine's `on_ready` call: notes where the run begins and runs `on_start`.
    pub fn on_ready(&self, started: std::time::Instant) -> Option<engine::OnReady> {
        let hooks = self.hooks.clone()?;
        let begin = self.begin.clone();
        Some(Box::new(move |state| {
            let at = Begin::of(state);
            *begin.lock().unwrap_or_else(PoisonError::into_inner) = Some(at);
            let facts = Facts {
                run_id: Some(at.run_id),
                elapsed_s: started.elapsed().as_secs_f64(),
                ..Facts::default()
            };
            Box::pin(fire(hooks, HookEvent::Start, facts))
        }))
    }

    /// Runs the hooks of how the run ended: `on_conflict` if it found conflicts, then
    /// `on_success`, `on_stop` or `on_failure` by its exit code `code`.
    pub async fn at_end(
        &self,
        config: &JobConfig,
        result: &Result<RunReport, Error>,
        code: u8,
        elapsed: Duration,
    ) {
        let Some(hooks) = &self.hooks else {
            return;
        };
        let mut facts = match result {
            Ok(report) => {
                Facts::of_counts(report.state.last_run().map(|run| run.run_id), &report.moved)
            }
            Err(error) => {
                let begin = *self.begin.lock().unwrap_or_else(PoisonError::into_inner);
                Facts::after_error(&config.wal_dir, begin.as_ref(), &error.to_string())
            }
        };
        facts.outcome = Some(outcome(code));
        facts.exit_code = Some(code);
        facts.elapsed_s = elapsed.as_secs_f64();
        if facts.conflicts > 0 {
            fire(hooks.clone(), HookEvent::Conflict, facts.clone()).await;
        }
        let event = match code {
            exit::DONE | exit::ATTENTION => HookEvent::Success,
            exit::STOPPED => HookEvent::Stop,
            _ => HookEvent::Failure,
        };
        fire(hooks.clone(), event, facts).await;
    }
}

/// Runs one hook on a blocking thread and waits for it (bounded by its `timeout_s`).
async fn fire(hooks: Arc<Hooks>, event: HookEvent, facts: Facts) {
    let _ = tokio::task::spawn_blocking(move || hooks.run(event, &facts)).await;
}

/// The outcome's name, as hooks are told it (`ARCHIVER_OUTCOME`), by exit code.
fn outcome(code: u8) -> &'static str {
    match code {
        exit::DONE => "done",
        exit::STOPPED => "stopped",
        exit::ATTENTION => "attention",
        exit::CONFIG => "refused",
        exit::LOCKED => "locked",
        _ => "failed",
    }
}
