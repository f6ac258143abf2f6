//! The crash test's hook, compiled only with the `crash-hook` cargo feature (the test command
//! builds with it; a release build does not): an [`Observer`] that kills the process with
//! SIGKILL right after the N-th (default first) event of a chosen type has been made durable,
//! or, with `:unsynced`, right after it was appended without a sync (so that it is lost, as
//! an unsynced record is when the machine goes down). Set by [`CRASH_HOOK_ENV`] =
//! `EVENT[:N][:unsynced]`, e.g. `BatchCopied:3` or `BatchDeleted:5:unsynced`.

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
    /// Kill without making the event durable first.
    unsynced: bool,
}

impl CrashHook {
    /// The hook the environment asks for, if any.
    pub fn from_env() -> Option<CrashHook> {
        let value = std::env::var(CRASH_HOOK_ENV).ok()?;
        let mut parts = value.split(':');
        let name = parts.next().unwrap_or_default().to_string();
        let mut nth = 1;
        let mut unsynced = false;
        for part in parts {
            match part {
                "unsynced" => unsynced = true,
                n => nth = n.parse().unwrap_or(1),
            }
        }
        Some(CrashHook {
            name,
            nth,
            seen: 0,
            unsynced,
        })
    }
}

impl Observer for CrashHook {
    fn needs_durable(&mut self, event: &Event) -> bool {
        if event.name() != self.name {
            return false;
        }
        self.seen += 1;
        self.seen == self.nth && !self.unsynced
    }

    fn post_append(&mut self, _lsn: Lsn, event: &Event, durable: bool) {
        let as_asked = durable != self.unsynced;
        if as_asked && event.name() == self.name && self.seen == self.nth {
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
