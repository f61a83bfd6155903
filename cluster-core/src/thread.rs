//! The body of a worker thread: its own current-thread runtime and `LocalSet`.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::LocalSet;

use crate::affinity::pin_to;
use crate::notice::Notice;
use crate::worker::{self, WorkerCore};
use crate::{ExitReason, Worker};

/// What the worker function returns, boxed: built inside the worker's
/// thread, so not `Send`.
pub(crate) type WorkerFuture = Pin<Box<dyn Future<Output = Result<(), String>>>>;
/// The worker function, called once in each worker thread.
pub(crate) type WorkerFn = Arc<dyn Fn(Worker) -> WorkerFuture + Send + Sync>;

pub(crate) fn spawn(
    core: Arc<WorkerCore>,
    body: WorkerFn,
    kill: oneshot::Receiver<()>,
    (stack_size, cpu): (Option<usize>, Option<usize>),
) -> std::io::Result<()> {
    let mut builder = std::thread::Builder::new().name(core.name.clone());
    if let Some(size) = stack_size {
        builder = builder.stack_size(size);
    }
    // Detached: an unresponsive worker is abandoned, never joined.
    builder.spawn(move || {
        let _ = core.thread_id.set(std::thread::current().id());
        record_os_tid(&core);
        // Entered for the thread's whole life: every event of the worker's
        // tasks (all polled on this thread) carries its id and slot.
        let span = tracing::info_span!("worker", id = core.id, slot = core.slot);
        let _entered = span.enter();
        if let Some(cpu) = cpu {
            pin_to(cpu);
        }
        let reason = run(
            Worker {
                core: Arc::clone(&core),
            },
            body,
            kill,
        );
        let _ = core.link.notices.send(Notice::Exited(core.id, reason));
    })?;
    Ok(())
}

fn run(worker: Worker, body: WorkerFn, kill: oneshot::Receiver<()>) -> ExitReason {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return ExitReason::Error(format!("could not build the worker's tokio runtime: {e}"))
        }
    };
    let id = worker.id();
    let notices = worker.core.link.notices.clone();
    worker::set_current(Some(worker.clone()));
    let local = LocalSet::new();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        local.block_on(&rt, async move {
            let _ = notices.send(Notice::Online(id));
            // Built here, inside the thread: the future need not be `Send`.
            let fut = body(worker);
            tokio::select! {
                biased;
                _ = kill => ExitReason::Killed,
                result = fut => match result {
                    Ok(()) => ExitReason::Returned,
                    Err(e) => ExitReason::Error(e),
                },
            }
        })
    }));
    // Dropping the tasks left on the worker (its connections) may panic too.
    let _ = catch_unwind(AssertUnwindSafe(move || {
        drop(local);
        rt.shutdown_background();
    }));
    worker::set_current(None);
    outcome.unwrap_or_else(|payload| ExitReason::Panicked(panic_message(payload.as_ref())))
}

/// Notes the kernel's id of the calling thread (Linux only), so that the
/// primary can read this worker's CPU time in `/proc/self/task/<tid>`.
fn record_os_tid(core: &WorkerCore) {
    #[cfg(target_os = "linux")]
    let _ = core.os_tid.set(nix::unistd::gettid().as_raw());
    #[cfg(not(target_os = "linux"))]
    let _ = core;
}

/// The text of a panic payload (what `panic!` was given), as
/// [`ExitReason::Panicked`] reports it; for crates that catch panics of
/// their own tasks.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}
