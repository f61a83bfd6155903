//! The restart policy and its back-off arithmetic, kept pure so it is tested alone.

use std::time::Duration;

use crate::ExitReason;

/// When an exited worker is replaced.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub enum RestartPolicy {
    /// Never: an exited worker leaves its slot empty.
    Never,
    /// When it ended badly: an error, a panic, a kill, or unresponsive.
    #[default]
    OnFailure,
    /// Whenever it ended without being asked to (even by returning `Ok`).
    Always,
    /// As `OnFailure`, except for the exits the function says are final
    /// (PM2's `stop_exit_codes`): a worker that ended so leaves its slot
    /// empty, as a worker that returned `Ok`. An error is seen as its text
    /// ([`ExitReason::Error`]), so a chosen error type is told by what its
    /// `Display` writes:
    ///
    /// ```
    /// use cluster_core::{ExitReason, RestartPolicy};
    ///
    /// // A worker that returns `Err(BadConfig(..))`, whose `Display`
    /// // starts with "bad config:", is not restarted: every one would fail.
    /// let policy = RestartPolicy::OnFailureExcept(|reason| {
    ///     matches!(reason, ExitReason::Error(e) if e.starts_with("bad config:"))
    /// });
    /// # drop(policy);
    /// ```
    OnFailureExcept(fn(&ExitReason) -> bool),
}

impl PartialEq for RestartPolicy {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (RestartPolicy::Never, RestartPolicy::Never)
            | (RestartPolicy::OnFailure, RestartPolicy::OnFailure)
            | (RestartPolicy::Always, RestartPolicy::Always) => true,
            (RestartPolicy::OnFailureExcept(a), RestartPolicy::OnFailureExcept(b)) => {
                std::ptr::fn_addr_eq(*a, *b)
            }
            _ => false,
        }
    }
}

impl Eq for RestartPolicy {}

impl RestartPolicy {
    /// Its name, as the macro's `restart` argument and
    /// `CLUSTER_THREAD_RESTART` spell it: `never`, `on-failure`, `always`
    /// (`on-failure-except` for [`OnFailureExcept`](Self::OnFailureExcept),
    /// which only a builder can give).
    pub fn name(self) -> &'static str {
        match self {
            RestartPolicy::Never => "never",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailureExcept(_) => "on-failure-except",
        }
    }

    /// The policy of this name (`never`, `on-failure` or `always`).
    pub(crate) fn parse(name: &str) -> Option<RestartPolicy> {
        [
            RestartPolicy::Never,
            RestartPolicy::OnFailure,
            RestartPolicy::Always,
        ]
        .into_iter()
        .find(|p| p.name() == name.trim())
    }

    /// Whether a worker that ended this way, without being asked to, is replaced.
    pub(crate) fn restarts(self, reason: &ExitReason) -> bool {
        match self {
            RestartPolicy::Never => false,
            RestartPolicy::OnFailure => !reason.is_success(),
            RestartPolicy::Always => true,
            RestartPolicy::OnFailureExcept(is_final) => !reason.is_success() && !is_final(reason),
        }
    }
}

/// Back-off and crash-loop settings, in PM2's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    /// Delay before the second restart in a row (the first is immediate).
    pub(crate) delay: Duration,
    /// The delay grows ×1.5 per restart up to this cap.
    pub(crate) max_delay: Duration,
    /// A worker that ran this long resets the back-off.
    pub(crate) reset_after: Duration,
    /// A worker that ran less than this (counted from listening or ready,
    /// else from its start) counts as unstable.
    pub(crate) min_uptime: Duration,
    /// After this many crashes on start in a row, the slot is errored.
    pub(crate) max_restarts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(15),
            reset_after: Duration::from_secs(30),
            min_uptime: Duration::from_secs(1),
            max_restarts: 16,
        }
    }
}

/// What a slot remembers across its workers' restarts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SlotHistory {
    /// Restarts since the last worker that ran `reset_after`.
    pub(crate) in_row: u32,
    /// Exits within `min_uptime` in a row.
    pub(crate) unstable: u32,
    /// All restarts of this slot.
    pub(crate) total: u32,
}

/// The longest restart delay of a slot whose workers reached listening or
/// ready: they serve, so the slot must not stay empty for long.
pub(crate) const SERVING_MAX_DELAY: Duration = Duration::from_millis(10);

/// How long a worker ran before its exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lifetime {
    /// Since its thread started.
    pub(crate) uptime: Duration,
    /// Since it reported listening or ready, if it did.
    pub(crate) serving: Option<Duration>,
}

/// The decision after a worker of a slot failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Fork a replacement after this delay.
    Restart(Duration),
    /// Give the slot up.
    Errored,
}

impl Backoff {
    /// Records an exit and says what comes next. A worker that never
    /// reached listening or ready and ran less than `min_uptime` crashed on
    /// start: after `max_restarts` of those in a row the slot is errored. One
    /// that reached listening or ready is never a crash on start (a request
    /// that kills it must not make the slot give up): it is replaced at once,
    /// or after at most [`SERVING_MAX_DELAY`] if it keeps dying within
    /// `min_uptime` of serving.
    pub(crate) fn next(&self, history: &mut SlotHistory, life: Lifetime) -> Next {
        let (ran, cap) = match life.serving {
            Some(serving) => (serving, self.max_delay.min(SERVING_MAX_DELAY)),
            None => (life.uptime, self.max_delay),
        };
        if ran >= self.reset_after {
            history.in_row = 0;
        }
        let unstable = ran < self.min_uptime;
        history.unstable = match (unstable, life.serving) {
            (true, None) => history.unstable + 1,
            _ => 0,
        };
        if history.unstable > self.max_restarts {
            return Next::Errored;
        }
        let delay = if history.in_row == 0 || (life.serving.is_some() && !unstable) {
            Duration::ZERO
        } else {
            let factor = 1.5f64.powi(history.in_row.saturating_sub(1).min(64) as i32);
            self.delay.mul_f64(factor).min(cap)
        };
        history.in_row += 1;
        history.total += 1;
        Next::Restart(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A worker that never reported listening or ready.
    fn started(uptime: Duration) -> Lifetime {
        Lifetime {
            uptime,
            serving: None,
        }
    }

    /// A worker that served for `serving` of its `uptime`.
    fn served(uptime: Duration, serving: Duration) -> Lifetime {
        Lifetime {
            uptime,
            serving: Some(serving),
        }
    }

    fn backoff() -> Backoff {
        Backoff {
            delay: 100 * MS,
            max_delay: 400 * MS,
            reset_after: 1000 * MS,
            min_uptime: 50 * MS,
            max_restarts: 3,
        }
    }

    #[test]
    fn first_restart_is_immediate_then_grows_by_half_up_to_the_cap() {
        let b = backoff();
        let mut h = SlotHistory::default();
        let delays: Vec<_> = (0..6).map(|_| b.next(&mut h, started(100 * MS))).collect();
        assert_eq!(
            delays,
            vec![
                Next::Restart(Duration::ZERO),
                Next::Restart(100 * MS),
                Next::Restart(150 * MS),
                Next::Restart(225 * MS),
                Next::Restart(337_500 * Duration::from_micros(1)),
                Next::Restart(400 * MS),
            ]
        );
        assert_eq!(h.total, 6);
    }

    #[test]
    fn a_stable_worker_resets_the_backoff() {
        let b = backoff();
        let mut h = SlotHistory::default();
        b.next(&mut h, started(100 * MS));
        b.next(&mut h, started(100 * MS));
        assert_eq!(
            b.next(&mut h, started(2000 * MS)),
            Next::Restart(Duration::ZERO)
        );
    }

    #[test]
    fn crashes_on_start_error_the_slot_after_max_restarts() {
        let b = backoff();
        let mut h = SlotHistory::default();
        for _ in 0..3 {
            assert!(matches!(b.next(&mut h, started(10 * MS)), Next::Restart(_)));
        }
        assert_eq!(b.next(&mut h, started(10 * MS)), Next::Errored);
    }

    #[test]
    fn one_long_run_forgives_earlier_crashes_on_start() {
        let b = backoff();
        let mut h = SlotHistory::default();
        for _ in 0..3 {
            b.next(&mut h, started(10 * MS));
        }
        assert!(matches!(b.next(&mut h, started(60 * MS)), Next::Restart(_)));
        assert!(matches!(b.next(&mut h, started(10 * MS)), Next::Restart(_)));
    }

    #[test]
    fn a_serving_worker_that_keeps_dying_is_never_errored_and_waits_little() {
        let b = Backoff {
            max_delay: Duration::from_secs(15),
            ..Backoff::default()
        };
        let mut h = SlotHistory::default();
        let mut delays = Vec::new();
        for _ in 0..40 {
            match b.next(&mut h, served(20 * MS, MS)) {
                Next::Restart(d) => delays.push(d),
                Next::Errored => panic!("errored after {} restarts", delays.len()),
            }
        }
        assert_eq!(delays[0], Duration::ZERO);
        assert!(delays.iter().all(|d| *d <= SERVING_MAX_DELAY), "{delays:?}");
        assert_eq!(delays[39], SERVING_MAX_DELAY);
    }

    #[test]
    fn a_worker_that_served_past_min_uptime_is_replaced_at_once() {
        let b = backoff();
        let mut h = SlotHistory::default();
        for _ in 0..10 {
            assert_eq!(
                b.next(&mut h, served(300 * MS, 60 * MS)),
                Next::Restart(Duration::ZERO)
            );
        }
    }

    #[test]
    fn min_uptime_counts_from_serving_not_from_the_start() {
        // Ran 2 s, of which 10 ms serving: unstable, so it backs off (a
        // little), though never errored.
        let b = Backoff {
            min_uptime: Duration::from_secs(1),
            ..backoff()
        };
        let mut h = SlotHistory::default();
        b.next(&mut h, served(2000 * MS, 10 * MS));
        assert_eq!(
            b.next(&mut h, served(2000 * MS, 10 * MS)),
            Next::Restart(SERVING_MAX_DELAY)
        );
        // The same uptime without serving ran past `reset_after`: at once.
        let mut h = SlotHistory::default();
        b.next(&mut h, started(2000 * MS));
        assert_eq!(
            b.next(&mut h, started(2000 * MS)),
            Next::Restart(Duration::ZERO)
        );
    }

    #[test]
    fn crashes_on_start_after_serving_workers_still_error_the_slot() {
        let b = backoff();
        let mut h = SlotHistory::default();
        b.next(&mut h, served(10 * MS, 5 * MS));
        for _ in 0..3 {
            assert!(matches!(b.next(&mut h, started(10 * MS)), Next::Restart(_)));
        }
        assert_eq!(b.next(&mut h, started(10 * MS)), Next::Errored);
    }

    #[test]
    fn policies() {
        let failed = ExitReason::Panicked("boom".into());
        assert!(!RestartPolicy::Never.restarts(&failed));
        assert!(RestartPolicy::OnFailure.restarts(&failed));
        assert!(RestartPolicy::OnFailure.restarts(&ExitReason::Killed));
        assert!(!RestartPolicy::OnFailure.restarts(&ExitReason::Returned));
        assert!(RestartPolicy::Always.restarts(&ExitReason::Returned));
        let except =
            RestartPolicy::OnFailureExcept(|r| matches!(r, ExitReason::Error(e) if e == "final"));
        assert!(!except.restarts(&ExitReason::Error("final".into())));
        assert!(except.restarts(&ExitReason::Error("transient".into())));
        assert!(except.restarts(&failed));
        assert!(!except.restarts(&ExitReason::Returned));
        assert_eq!(except, except);
        assert_ne!(except, RestartPolicy::OnFailure);
    }
}
