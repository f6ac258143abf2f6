//! The crash test's hook, compiled only with the `crash-hook` cargo feature (the test command
//! builds with it; a release build does not): an [`Observer`] that kills the process with
//! SIGKILL right after the N-th (default first) event of a chosen type has been made durable.
//! Set by [`CRASH_HOOK_ENV`] = `EVENT[:N]`, e.g. `BatchCopied:3`.

use crate::event::Event;
use crate::journal::Observer;
use crate::wal::Lsn;

/// Environment variable naming the event to crash after.
pub const CRASH_HOOK_ENV: &str = "ARCHIVER_TEST_CRASH_AFTER";

/// The hook's target, parsed once.
pub struct CrashHook {
    /// The event's name (`Event::name`).
    name: String,
    /// Which occurrence, from 1.
    nth: u64,
    /// Occurrences appended so far.
    seen: u64,
}

impl CrashHook {
    /// The hook the environment asks for, if any.
    pub fn from_env() -> Option<CrashHook> {
        let value = std::env::var(CRASH_HOOK_ENV).ok()?;
        let (name, nth) = match value.split_once(':') {
            Some((name, n)) => (name.to_string(), n.parse().unwrap_or(1)),
            None => (value, 1),
        };
        Some(CrashHook { name, nth, seen: 0 })
    }
}

impl Observer for CrashHook {
    fn needs_durable(&mut self, event: &Event) -> bool {
        if event.name() != self.name {
            return false;
        }
        self.seen += 1;
        self.seen == self.nth
    }

    fn post_append(&mut self, _lsn: Lsn, event: &Event, durable: bool) {
        if durable && event.name() == self.name && self.seen == self.nth {
            tracing::warn!(
                "{CRASH_HOOK_ENV}: killing this process after {}",
                event.name()
            );
            // SAFETY: raising a signal in our own process has no memory-safety preconditions.
            unsafe {
                libc::raise(libc::SIGKILL);
            }
        }
    }
}
