//! The operator's commands around a job's log: `status`, `reset`, `compact`, `replay --inspect`
//! and `--salvage-last-segment`, the dry run, and the end-of-run attention report. They return
//! outcomes (a verdict, lines to print), never exit codes: the CLI decides those. `ctl` talks
//! to a running job over its control socket.
//!
//! Everything here but `reset` and salvage is read-only and takes no lock, so it works while a
//! run is active.

mod attention;
mod compact;
mod ctl;
mod dry_run;
pub mod inspect;
mod reset;
mod salvage;
mod status;

pub use attention::attention_lines;
pub use compact::compact;
pub use ctl::{ctl, CtlRequest};
pub use dry_run::dry_run;
pub use reset::{like, reset, ResetSelection};
pub use salvage::salvage;
pub use status::status;

use std::io::Write;
use std::path::Path;

use self::inspect::{InspectVerdict, StateSink};
use crate::config::JobConfig;
use crate::engine::now_unix_us;
use crate::error::Error;
use crate::event::Event;
use crate::journal::{self, Journal};
use crate::state::State;

/// The state of the job's log, or a fresh state when it has none yet; refuses another job's
/// log.
fn job_state(config: &JobConfig) -> Result<State, Error> {
    // Not a directory (absent, or a file): no log to read; the pre-flight reports a wal_dir
    // that cannot become one, with every other finding.
    if !config.wal_dir.is_dir() {
        return Ok(State::new());
    }
    let state = Journal::read(&config.wal_dir)?;
    journal::check_identity(&state, &config.identity(), &config.wal_dir)?;
    Ok(state)
}

/// Feeds `inspect` into the real state machine.
struct StateReplay {
    state: State,
}

impl StateSink for StateReplay {
    fn apply(&mut self, lsn: u64, event: &Event) -> Result<(), String> {
        self.state.apply(lsn, event).map_err(|e| e.to_string())
    }

    fn summary_lines(&self) -> Vec<String> {
        self.state.summary(now_unix_us()).lines()
    }

    fn summary_json(&self) -> serde_json::Value {
        serde_json::to_value(self.state.summary(now_unix_us())).unwrap_or_default()
    }
}

/// `archiver replay --inspect`: read-only; the verdict says whether the log is corrupt.
pub fn inspect_log(dir: &Path, json: bool, out: &mut dyn Write) -> Result<InspectVerdict, Error> {
    let mut sink = StateReplay {
        state: State::new(),
    };
    Ok(inspect::inspect(dir, json, out, &mut sink)?)
}
