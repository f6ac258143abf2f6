//! Flag files beside the job file, for places where a signal is awkward to send (pt-archiver's
//! `--sentinel`): `JOB.stop` stops the run between batches as SIGTERM does; `JOB.pause` holds it
//! between batches, with no transaction open, until the file is removed. Both are checked
//! before every step; a stop request cuts a pause short.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::shutdown::Shutdown;

/// How often a paused run looks again for its pause file, in milliseconds.
const PAUSE_POLL_MS: u64 = 1_000;

/// The two flag files of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentinel {
    /// Present: stop between batches.
    pub stop: PathBuf,
    /// Present: wait between batches until it is gone.
    pub pause: PathBuf,
}

/// What the flag files say before a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go on.
    Go,
    /// Stop now (a stop file, or a stop request while paused).
    Stop,
}

impl Sentinel {
    /// The flag files beside `job_file`: `JOB_FILE.stop` and `JOB_FILE.pause`.
    pub fn beside(job_file: &Path) -> Sentinel {
        let with = |suffix: &str| {
            let mut name = job_file.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        };
        Sentinel {
            stop: with(".stop"),
            pause: with(".pause"),
        }
    }

    /// Whether a stop or pause file is there (without waiting: [`Sentinel::check`] obeys it).
    pub fn is_set(&self) -> bool {
        self.stop.exists() || self.pause.exists()
    }

    /// Waits while the pause file exists (saying so once), and says whether to stop.
    pub async fn check(&self, shutdown: &mut Shutdown) -> Verdict {
        let mut said_paused = false;
        loop {
            if self.stop.exists() {
                tracing::warn!(
                    "stop file {} found: stopping between batches (remove it before the next run)",
                    self.stop.display()
                );
                return Verdict::Stop;
            }
            if !self.pause.exists() {
                if said_paused {
                    tracing::warn!("pause file {} removed: resuming", self.pause.display());
                }
                return Verdict::Go;
            }
            if !said_paused {
                tracing::warn!(
                    "pause file {} found: paused between batches, no transaction open; remove it to resume",
                    self.pause.display()
                );
                said_paused = true;
            }
            if shutdown.sleep(Duration::from_millis(PAUSE_POLL_MS)).await {
                return Verdict::Stop;
            }
        }
    }
}
