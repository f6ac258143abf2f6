//! Signals and the run's time window, turned into a [`ShutdownTrigger`] request.

use std::time::{Duration, Instant};

use super::exit;
use crate::engine::ShutdownTrigger;

/// First SIGINT/SIGTERM: finish the current batch and stop (waits are cut short). Second: stop
/// at once, which is safe because the WAL and the batch transaction make any stopping point
/// resumable.
pub fn spawn_signal_handler(trigger: ShutdownTrigger) {
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
            if trigger.requested() {
                eprintln!("archiver: second signal, stopping now; the next run resumes");
                std::process::exit(exit::STOPPED.into());
            }
            eprintln!("archiver: signal received, finishing the current batch (send again to stop at once)");
            trigger.request();
        }
    });
}

/// Requests a stop at `deadline` (`--max-runtime`, `--until`): no new batch starts after it.
pub fn spawn_deadline(deadline: Instant, trigger: ShutdownTrigger) {
    tokio::spawn(async move {
        tokio::time::sleep_until(deadline.into()).await;
        tracing::info!("the run's time window ended; stopping after the current batch");
        trigger.request();
    });
}

/// The instant of the next `until` local time, today or tomorrow.
pub fn deadline_at(until: chrono::NaiveTime) -> Instant {
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

/// `--max-runtime` from now.
pub fn deadline_after(max_runtime: Duration) -> Instant {
    Instant::now() + max_runtime
}
