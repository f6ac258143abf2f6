//! [`Backoff`]: the one rule for waiting before trying again, used for reconnecting to a server
//! and for retrying a failed batch or step: the first delay, doubled per consecutive failure,
//! up to a ceiling.

use std::time::Duration;

/// Delays that double per failure from `delay_ms_min` up to `delay_ms_max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The delay after the first failure, in milliseconds.
    pub delay_ms_min: u64,
    /// The longest delay, in milliseconds.
    pub delay_ms_max: u64,
}

/// Doublings past which the ceiling is reached for any sensible minimum (2^16 × 1 ms > 1 min).
const DOUBLINGS_MAX: u32 = 16;

impl Backoff {
    /// Reconnecting to a server that went away: quick at first, then every 2 s.
    pub const RECONNECT: Backoff = Backoff {
        delay_ms_min: 100,
        delay_ms_max: 2_000,
    };

    /// Retrying a batch or a step after a transient error (deadlock, lock wait timeout, lost
    /// connection): 200 ms doubling to 10 s.
    pub const RETRY: Backoff = Backoff {
        delay_ms_min: 200,
        delay_ms_max: 10_000,
    };

    /// The delay after the `failures`-th consecutive failure (1 for the first; 0 waits the
    /// minimum too).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(DOUBLINGS_MAX);
        let delay_ms = self
            .delay_ms_min
            .saturating_mul(1 << doublings)
            .min(self.delay_ms_max);
        Duration::from_millis(delay_ms)
    }
}

const _: () = assert!(Backoff::RECONNECT.delay_ms_min <= Backoff::RECONNECT.delay_ms_max);
const _: () = assert!(Backoff::RETRY.delay_ms_min <= Backoff::RETRY.delay_ms_max);
// The shortest reconnect window the job file allows sees more than one attempt.
const _: () = assert!(
    Backoff::RECONNECT.delay_ms_min < crate::config::RECONNECT_TIMEOUT_S.min as u64 * 1_000
);

#[cfg(test)]
mod tests {
    use super::Backoff;

    #[test]
    fn delays_double_up_to_the_ceiling() {
        let ms = |failures| Backoff::RETRY.delay(failures).as_millis();
        let cases = [
            (0, 200),
            (1, 200),
            (2, 400),
            (3, 800),
            (6, 6_400),
            (7, 10_000),
        ];
        for (failures, expected) in cases {
            assert_eq!(ms(failures), expected, "after {failures} failures");
        }
        assert_eq!(ms(u32::MAX), 10_000, "no overflow");
        assert_eq!(Backoff::RECONNECT.delay(6).as_millis(), 2_000);
    }
}
