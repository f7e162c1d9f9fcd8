//! The retry schedule of the outbound queue: when a deferred recipient is tried again, when the queue gives up
//! on it, and when the sender is told that the message is late.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// How long to wait after each temporary failure, and when to stop.
///
/// After the n-th failed attempt the next one comes `initial * 2^(n-1)` later, capped at `max`: by default
/// 5m, 10m, 20m, 40m, 80m, 160m, then every 4h. A recipient still deferred `give_up_after` after the message
/// was queued fails for good (the last attempt is scheduled at that deadline rather than past it). A sender
/// whose message is still undelivered after `warn_after` gets one delay warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Wait after the first failed attempt.
    pub initial: Duration,
    /// Longest wait between two attempts.
    pub max: Duration,
    /// Age of the message after which a temporary failure becomes permanent.
    pub give_up_after: Duration,
    /// Age of the message after which the sender is warned that it is still undelivered.
    pub warn_after: Duration,
}

impl Default for Backoff {
    /// 5 minutes doubling up to 4 hours, give up after 5 days, warn after 4 hours: the usual MTA numbers
    /// (Postfix and Exim use about the same), short enough that a remote restart costs minutes, long enough
    /// that a remote outage is not hammered.
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(5 * 60),
            max: Duration::from_secs(4 * 3600),
            give_up_after: Duration::from_secs(5 * 24 * 3600),
            warn_after: Duration::from_secs(4 * 3600),
        }
    }
}

impl Backoff {
    /// Checks the values make sense, so a config error is reported at startup and not as a retry storm.
    pub fn validate(&self) -> Result<(), String> {
        if self.initial.is_zero() {
            return Err("the first retry delay must be more than 0 seconds".into());
        }
        if self.max < self.initial {
            return Err("the longest retry delay must not be shorter than the first".into());
        }
        if self.give_up_after.is_zero() {
            return Err("the queue lifetime must be more than 0 seconds".into());
        }
        Ok(())
    }

    /// The wait after the `attempts`-th failed attempt (1 for the first failure; 0 is treated as 1).
    pub fn delay(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(63);
        let factor = 1u64 << doublings;
        let secs = self.initial.as_secs().saturating_mul(factor);
        let nanos = u64::from(self.initial.subsec_nanos()).saturating_mul(factor);
        Duration::from_secs(secs)
            .saturating_add(Duration::from_nanos(nanos))
            .min(self.max)
    }

    /// When to try again after the `attempts`-th attempt failed temporarily at `now`, for a message queued at
    /// `created`; `None` when the message is too old and the recipient must fail for good.
    pub fn next_attempt(
        &self,
        created: DateTime<Utc>,
        attempts: u32,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let deadline = created + delta(self.give_up_after);
        if now >= deadline {
            return None;
        }
        Some((now + delta(self.delay(attempts))).min(deadline))
    }

    /// True once a message queued at `created` is old enough that its sender should hear it is delayed.
    pub fn warning_due(&self, created: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        now >= self.warning_at(created)
    }

    /// When a message queued at `created` is old enough for the delay warning (saturating).
    pub fn warning_at(&self, created: DateTime<Utc>) -> DateTime<Utc> {
        created
            .checked_add_signed(delta(self.warn_after))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// A std duration as a chrono delta, saturating (a config of centuries is simply "never").
pub(crate) fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// `at + d`, saturating instead of panicking on absurd configured durations.
pub(crate) fn later(at: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    at.checked_add_signed(delta(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn default_schedule_doubles_from_five_minutes_up_to_four_hours() {
        let b = Backoff::default();
        let minutes: Vec<u64> = (1..=9).map(|n| b.delay(n).as_secs() / 60).collect();
        assert_eq!(minutes, [5, 10, 20, 40, 80, 160, 240, 240, 240]);
        assert_eq!(b.delay(0), b.delay(1));
        assert_eq!(b.delay(u32::MAX), b.max);
        assert!(b.validate().is_ok());
    }

    #[test]
    fn gives_up_after_five_days_with_a_last_try_at_the_deadline() {
        let b = Backoff::default();
        let five_days = 5 * 24 * 3600;
        assert_eq!(b.next_attempt(t(0), 1, t(0)), Some(t(300)));
        assert_eq!(
            b.next_attempt(t(0), 20, t(five_days - 60)),
            Some(t(five_days))
        );
        assert_eq!(b.next_attempt(t(0), 21, t(five_days)), None);
    }

    #[test]
    fn delay_warning_is_due_after_four_hours() {
        let b = Backoff::default();
        assert!(!b.warning_due(t(0), t(4 * 3600 - 1)));
        assert!(b.warning_due(t(0), t(4 * 3600)));
    }

    #[test]
    fn nonsense_is_rejected() {
        let zero = Backoff {
            initial: Duration::ZERO,
            ..Backoff::default()
        };
        assert!(zero.validate().is_err());
        let inverted = Backoff {
            max: Duration::from_secs(1),
            ..Backoff::default()
        };
        assert!(inverted.validate().is_err());
    }
}
