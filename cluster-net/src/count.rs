//! Counting against a limit, shared by the connection limits and the
//! cap: a place is taken atomically, and a release says when it may let a
//! waiter in.

use std::sync::atomic::{AtomicUsize, Ordering};

/// One more in `count` if it is under `limit` (atomically: two threads
/// never both take the last place).
pub(crate) fn take_one(count: &AtomicUsize, limit: Option<usize>) -> bool {
    match limit {
        None => {
            count.fetch_add(1, Ordering::AcqRel);
            true
        }
        Some(limit) => count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok(),
    }
}

/// One less in `count`; true when that may let a waiter in (it was at
/// `limit` or above). Waiters re-check after they enable their
/// notification, so only these releases need to notify, and then all
/// waiters: whoever finds the place first takes it.
pub(crate) fn released(count: &AtomicUsize, limit: Option<usize>) -> bool {
    let before = count.fetch_sub(1, Ordering::AcqRel);
    limit.is_some_and(|limit| before >= limit)
}
