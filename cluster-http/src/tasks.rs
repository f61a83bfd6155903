//! The connection tasks of one server: spawned on the worker's `LocalSet`,
//! counted, woken when the drain starts, aborted at its deadline, their
//! panics reported. What a `JoinSet` would do, without its lock and its
//! allocation per task: every new connection pays for this.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use pin_project_lite::pin_project;
use slab::Slab;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::exec::CatchUnwind;

/// The open connections of one server (of its thread: not `Send`).
#[derive(Clone)]
pub(crate) struct Tasks {
    inner: Rc<RefCell<Inner>>,
}

struct Inner {
    tasks: Slab<Entry>,
    /// Woken when the last task ends.
    empty: Option<Waker>,
    panics: mpsc::UnboundedSender<String>,
}

#[derive(Default)]
struct Entry {
    abort: Option<AbortHandle>,
    /// The task's waker, from its first poll.
    waker: Option<Waker>,
}

impl Tasks {
    /// A task that panics sends its message to `panics`.
    pub(crate) fn new(panics: mpsc::UnboundedSender<String>) -> Tasks {
        Tasks {
            inner: Rc::new(RefCell::new(Inner {
                tasks: Slab::new(),
                empty: None,
                panics,
            })),
        }
    }

    /// Spawns `future` on the current `LocalSet`.
    pub(crate) fn spawn(&self, future: impl Future<Output = ()> + 'static) {
        let key = self.inner.borrow_mut().tasks.insert(Entry::default());
        let handle = tokio::task::spawn_local(Tracked {
            future: CatchUnwind { future },
            key,
            registered: false,
            inner: Rc::clone(&self.inner),
        });
        // Not polled yet: its entry is still there.
        if let Some(entry) = self.inner.borrow_mut().tasks.get_mut(key) {
            entry.abort = Some(handle.abort_handle());
        }
    }

    /// How many have not ended.
    pub(crate) fn len(&self) -> usize {
        self.inner.borrow().tasks.len()
    }

    /// Wakes every task, so that each sees on its next poll what changed
    /// (the drain started): none needs a waker of its own registered for it.
    pub(crate) fn wake_all(&self) {
        for (_, entry) in &self.inner.borrow().tasks {
            if let Some(waker) = &entry.waker {
                waker.wake_by_ref();
            }
        }
    }

    /// Aborts every task: each is dropped at its next turn.
    pub(crate) fn abort_all(&self) {
        for (_, entry) in &self.inner.borrow().tasks {
            if let Some(abort) = &entry.abort {
                abort.abort();
            }
        }
    }

    /// Resolves when every task has ended (or been dropped).
    pub(crate) async fn all_ended(&self) {
        poll_fn(|task| {
            let mut inner = self.inner.borrow_mut();
            if inner.tasks.is_empty() {
                Poll::Ready(())
            } else {
                inner.empty = Some(task.waker().clone());
                Poll::Pending
            }
        })
        .await;
    }
}

pin_project! {
    /// A spawned task's future, with its entry.
    struct Tracked<F> {
        #[pin]
        future: CatchUnwind<F>,
        key: usize,
        registered: bool,
        inner: Rc<RefCell<Inner>>,
    }

    impl<F> PinnedDrop for Tracked<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let mut inner = this.inner.borrow_mut();
            inner.tasks.try_remove(*this.key);
            if inner.tasks.is_empty() {
                if let Some(waker) = inner.empty.take() {
                    waker.wake();
                }
            }
        }
    }
}

impl<F: Future<Output = ()>> Future for Tracked<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if !*this.registered {
            *this.registered = true;
            if let Some(entry) = this.inner.borrow_mut().tasks.get_mut(*this.key) {
                entry.waker = Some(cx.waker().clone());
            }
        }
        match this.future.poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(()),
            Poll::Ready(Err(payload)) => {
                let message = cluster_core::hooks::panic_message(payload.as_ref());
                let _ = this.inner.borrow().panics.send(message);
                Poll::Ready(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;
    use std::task::Poll;
    use std::time::Duration;

    use super::Tasks;

    fn local<F: std::future::Future>(f: F) -> F::Output {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        tokio::task::LocalSet::new().block_on(&rt, f)
    }

    #[test]
    fn wake_all_reaches_a_task_that_registered_nothing() {
        local(async {
            let (tx, _panics) = tokio::sync::mpsc::unbounded_channel();
            let tasks = Tasks::new(tx);
            let flag = Rc::new(Cell::new(false));
            let seen = Rc::clone(&flag);
            // Pending until the flag is set, with no waker kept anywhere.
            tasks.spawn(std::future::poll_fn(move |_| {
                if seen.get() {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }));
            tokio::task::yield_now().await;
            assert_eq!(tasks.len(), 1);
            flag.set(true);
            tasks.wake_all();
            tokio::time::timeout(Duration::from_secs(10), tasks.all_ended())
                .await
                .expect("the woken task ended");
            assert_eq!(tasks.len(), 0);
        });
    }

    #[test]
    fn abort_all_ends_every_task_and_panics_are_reported() {
        local(async {
            let (tx, mut panics) = tokio::sync::mpsc::unbounded_channel();
            let tasks = Tasks::new(tx);
            for _ in 0..3 {
                tasks.spawn(std::future::pending());
            }
            tasks.spawn(async { panic!("boom") });
            let message = tokio::time::timeout(Duration::from_secs(10), panics.recv())
                .await
                .expect("the panic is reported");
            assert_eq!(message.as_deref(), Some("boom"));
            assert_eq!(tasks.len(), 3);
            tasks.abort_all();
            tokio::time::timeout(Duration::from_secs(10), tasks.all_ended())
                .await
                .expect("aborted tasks end");
        });
    }
}
