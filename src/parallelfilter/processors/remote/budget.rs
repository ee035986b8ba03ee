// SPDX-License-Identifier: MPL-2.0
//! A frame's time budget across its attempts: the deadline set when the
//! frame starts, and how much of what is left one attempt may use.

use std::time::{Duration, Instant};

/// Bound of one request when the element's `timeout` is 0.
pub(super) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The frame's budget ends this long before the engine's `timeout`, so the
/// remote's own error (with each attempt's reason) always wins the race.
pub(super) const ENGINE_MARGIN: Duration = Duration::from_millis(2);

/// When a frame's attempts must be over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Deadline {
    pub at: Instant,
    /// Set by the element's `timeout`; otherwise each attempt is also
    /// bounded by [`DEFAULT_REQUEST_TIMEOUT`].
    pub timed: bool,
}

/// How long one attempt may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AttemptBound {
    pub bound: Duration,
    /// The bound is all the frame has left: running out is the end of the
    /// frame's budget, not the server's fault.
    pub budget_end: bool,
}

impl Deadline {
    /// The frame's deadline, from `timeout` now: ends [`ENGINE_MARGIN`]
    /// before the engine's, which starts after this is called.
    pub(super) fn start(timeout: Option<Duration>, retries: u32) -> Self {
        Self::starting_at(Instant::now(), timeout, retries)
    }

    fn starting_at(now: Instant, timeout: Option<Duration>, retries: u32) -> Self {
        match timeout {
            Some(t) => Deadline {
                at: now + t.saturating_sub(ENGINE_MARGIN),
                timed: true,
            },
            None => Deadline {
                at: now + DEFAULT_REQUEST_TIMEOUT * (retries + 1),
                timed: false,
            },
        }
    }

    /// The bound of an attempt starting at `now`: 3/4 of what is left (all
    /// of it on the `last` one), so a slow server gets most of the budget
    /// and a hung one still leaves time for a retry.
    pub(super) fn attempt(&self, now: Instant, last: bool) -> AttemptBound {
        let left = self.at.saturating_duration_since(now);
        let mut bound = if last { left } else { left / 4 * 3 };
        if !self.timed {
            bound = bound.min(DEFAULT_REQUEST_TIMEOUT);
        }
        AttemptBound {
            bound,
            budget_end: bound == left,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_sets_the_deadline_before_the_engines() {
        let now = Instant::now();
        let d = Deadline::starting_at(now, Some(Duration::from_millis(100)), 2);
        assert_eq!(d.at, now + Duration::from_millis(98));
        assert!(d.timed);
        let d = Deadline::starting_at(now, None, 2);
        assert_eq!(d.at, now + 3 * DEFAULT_REQUEST_TIMEOUT);
        assert!(!d.timed);
    }

    #[test]
    fn attempts_leave_time_for_a_retry_until_the_last() {
        let now = Instant::now();
        let d = Deadline::starting_at(now, Some(Duration::from_millis(402)), 2);
        let first = d.attempt(now, false);
        assert_eq!(first.bound, Duration::from_millis(300));
        assert!(!first.budget_end);
        let last = d.attempt(now + Duration::from_millis(300), true);
        assert_eq!(last.bound, Duration::from_millis(100));
        assert!(last.budget_end);
        assert_eq!(
            d.attempt(d.at + Duration::from_secs(1), true).bound,
            Duration::ZERO
        );
    }

    #[test]
    fn without_timeout_each_attempt_is_bounded() {
        let now = Instant::now();
        let d = Deadline::starting_at(now, None, 2);
        let first = d.attempt(now, false);
        assert_eq!(first.bound, DEFAULT_REQUEST_TIMEOUT);
        assert!(!first.budget_end);
        let last = d.attempt(now + 2 * DEFAULT_REQUEST_TIMEOUT, true);
        assert_eq!(last.bound, DEFAULT_REQUEST_TIMEOUT);
        assert!(last.budget_end);
    }
}
