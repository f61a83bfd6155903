//! Each slot's last failed exit (an error, a panic, a kill), for the status
//! page: a cluster extension the supervisor writes at each such exit. A
//! clean return (a reload's old worker) leaves the last failure shown.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use crate::ExitReason;

/// The last failed exit of each slot (`hooks::cluster_extension::<LastFailures>`).
#[derive(Debug, Default)]
pub struct LastFailures(Mutex<BTreeMap<usize, ExitReason>>);

impl LastFailures {
    /// How the last worker of `slot` that failed ended.
    pub fn of(&self, slot: usize) -> Option<ExitReason> {
        self.lock().get(&slot).cloned()
    }

    pub(crate) fn record(&self, slot: usize, reason: &ExitReason) {
        if *reason != ExitReason::Returned {
            self.lock().insert(slot, reason.clone());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<usize, ExitReason>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
