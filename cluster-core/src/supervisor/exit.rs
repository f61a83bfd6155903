//! What follows a worker's exit, decided apart from the state it acts on,
//! so that every case is tested alone (like the back-off in `restart.rs`).

use std::time::Duration;

use crate::restart::{Backoff, Lifetime, Next, SlotHistory};
use crate::{ExitReason, RestartPolicy};

/// A worker's exit, as the decision needs it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exit<'a> {
    pub(crate) reason: &'a ExitReason,
    /// Asked to finish (disconnected, reloaded, removed): not to replace.
    pub(crate) retiring: bool,
    /// The whole cluster is stopping.
    pub(crate) stopping: bool,
    pub(crate) lifetime: Lifetime,
    /// The live worker it was replacing in a reload, still in charge.
    pub(crate) predecessor: Option<u64>,
}

/// What becomes of the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterExit {
    /// A reload's new worker died first: the slot goes back to this one.
    GiveBack(u64),
    /// The slot stays empty.
    Leave,
    /// A new worker, after this delay.
    Restart(Duration),
    /// Too many crashes on start: the slot gives up.
    Errored,
}

pub(crate) fn after_exit(
    exit: Exit<'_>,
    policy: RestartPolicy,
    backoff: &Backoff,
    history: &mut SlotHistory,
) -> AfterExit {
    if let Some(old) = exit.predecessor {
        return AfterExit::GiveBack(old);
    }
    if exit.retiring || exit.stopping || !policy.restarts(exit.reason) {
        return AfterExit::Leave;
    }
    match backoff.next(history, exit.lifetime) {
        Next::Restart(delay) => AfterExit::Restart(delay),
        Next::Errored => AfterExit::Errored,
    }
}

/// Whether a worker that reported the start-up error `error` failed with
/// it: it returned an error that says it, or it panicked (or returned any
/// error) before it listened or was ready. A worker that handled the error
/// (listened elsewhere, went on without it) and failed later for another
/// reason did not.
pub(crate) fn failed_with(reason: &ExitReason, error: &str, ready: bool) -> bool {
    match reason {
        ExitReason::Error(text) => !ready || text.contains(error),
        ExitReason::Panicked(_) => !ready,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn exit(reason: &ExitReason) -> Exit<'_> {
        Exit {
            reason,
            retiring: false,
            stopping: false,
            lifetime: Lifetime {
                uptime: 10 * MS,
                serving: None,
            },
            predecessor: None,
        }
    }

    fn decide(exit: Exit<'_>, policy: RestartPolicy) -> AfterExit {
        after_exit(
            exit,
            policy,
            &Backoff::default(),
            &mut SlotHistory::default(),
        )
    }

    #[test]
    fn a_start_error_stops_only_a_worker_that_fails_with_it() {
        let error = "address 127.0.0.1:80 already in use";
        let returned_it = ExitReason::Error(format!("serving: {error}"));
        let other = ExitReason::Error("database gone".into());
        let panicked = ExitReason::Panicked("boom".into());
        for (reason, ready, failed) in [
            (&returned_it, false, true),
            (&returned_it, true, true),
            (&other, false, true),
            (&panicked, false, true),
            // Handled: it listened (elsewhere) and failed later for another reason.
            (&other, true, false),
            (&panicked, true, false),
            (&ExitReason::Returned, false, false),
            (&ExitReason::Killed, false, false),
        ] {
            assert_eq!(
                failed_with(reason, error, ready),
                failed,
                "{reason} ready={ready}"
            );
        }
    }

    #[test]
    fn a_reloads_new_worker_that_dies_gives_the_slot_back() {
        let panicked = ExitReason::Panicked("boom".into());
        let e = Exit {
            predecessor: Some(7),
            ..exit(&panicked)
        };
        assert_eq!(decide(e, RestartPolicy::Always), AfterExit::GiveBack(7));
    }

    #[test]
    fn a_worker_asked_to_finish_or_a_stopping_cluster_is_not_restarted() {
        let panicked = ExitReason::Panicked("boom".into());
        let retiring = Exit {
            retiring: true,
            ..exit(&panicked)
        };
        let stopping = Exit {
            stopping: true,
            ..exit(&panicked)
        };
        for e in [retiring, stopping] {
            assert_eq!(decide(e, RestartPolicy::Always), AfterExit::Leave);
        }
    }

    #[test]
    fn the_policy_decides_which_ends_are_restarted() {
        let returned = ExitReason::Returned;
        let killed = ExitReason::Killed;
        assert_eq!(
            decide(exit(&returned), RestartPolicy::OnFailure),
            AfterExit::Leave
        );
        assert_eq!(
            decide(exit(&returned), RestartPolicy::Always),
            AfterExit::Restart(Duration::ZERO)
        );
        assert_eq!(
            decide(exit(&killed), RestartPolicy::OnFailure),
            AfterExit::Restart(Duration::ZERO)
        );
        assert_eq!(
            decide(exit(&killed), RestartPolicy::Never),
            AfterExit::Leave
        );
    }

    #[test]
    fn crashes_on_start_end_in_an_errored_slot() {
        let failed = ExitReason::Error("no database".into());
        let backoff = Backoff {
            max_restarts: 2,
            ..Backoff::default()
        };
        let mut history = SlotHistory::default();
        let outcomes: Vec<_> = (0..4)
            .map(|_| {
                after_exit(
                    exit(&failed),
                    RestartPolicy::OnFailure,
                    &backoff,
                    &mut history,
                )
            })
            .collect();
        assert!(matches!(
            outcomes[..2],
            [AfterExit::Restart(_), AfterExit::Restart(_)]
        ));
        assert_eq!(outcomes[3], AfterExit::Errored);
    }
}
