//! [`Shutdown`]: a request to stop, from a signal or the run's time window, that every wait of
//! the engine listens to (reconnecting, backing off, pausing between batches) so a stop never
//! waits one out. A batch transaction in flight is not interrupted: it finishes, is recorded,
//! and then the run stops (mini-redis's `Shutdown` in `select!`).

use tokio::sync::watch;

/// The side that asks for a stop (the CLI's signal handler and deadline timer).
#[derive(Debug, Clone)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// The side that listens; cheap to clone, one per waiting task.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A trigger and its listener.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (sender, receiver) = watch::channel(false);
    (ShutdownTrigger(sender), Shutdown(receiver))
}

impl ShutdownTrigger {
    /// Asks the run to stop after the current batch.
    pub fn request(&self) {
        self.0.send_replace(true);
    }

    /// Whether a stop was requested.
    pub fn requested(&self) -> bool {
        *self.0.borrow()
    }
}

impl Shutdown {
    /// Whether a stop was requested.
    pub fn requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once a stop is requested (at once if it already was). If every trigger is
    /// gone without asking, no stop can come: it never completes.
    pub async fn recv(&mut self) {
        if self.0.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Sleeps for `duration`, or less if a stop is requested; returns whether it was.
    pub async fn sleep(&mut self, duration: std::time::Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(duration) => self.requested(),
            () = self.recv() => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn a_request_cuts_a_sleep_short() {
        let (trigger, mut shutdown) = super::channel();
        assert!(!shutdown.requested());
        let waiting = Instant::now();
        let wake = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            trigger.request();
            trigger
        });
        assert!(shutdown.sleep(Duration::from_secs(60)).await);
        assert!(waiting.elapsed() < Duration::from_secs(30));
        assert!(wake.await.unwrap().requested());
        // Once requested, every later wait returns at once.
        assert!(shutdown.sleep(Duration::from_secs(60)).await);
    }

    #[tokio::test]
    async fn a_sleep_without_a_request_runs_its_course() {
        let (_trigger, mut shutdown) = super::channel();
        assert!(!shutdown.sleep(Duration::from_millis(10)).await);
    }
}
