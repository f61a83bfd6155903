//! The body of a worker thread: its own current-thread runtime and `LocalSet`.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::LocalSet;

use crate::builder::WorkerFn;
use crate::supervisor::Notice;
use crate::worker::{self, WorkerCore};
use crate::{ExitReason, Worker};

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

/// The CPUs this process may run on (its affinity), in order; `None` (with
/// a warning) where that cannot be known.
pub(crate) fn allowed_cpus() -> Option<Vec<usize>> {
    #[cfg(target_os = "linux")]
    {
        use nix::sched::{sched_getaffinity, CpuSet};
        match sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
            Ok(set) => {
                let cpus: Vec<usize> = (0..CpuSet::count())
                    .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
                    .collect();
                (!cpus.is_empty()).then_some(cpus)
            }
            Err(e) => {
                tracing::warn!(error = %e, "pin_workers: cannot read this process's CPU affinity; workers are not pinned");
                None
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        tracing::warn!("pin_workers: CPU affinity is set on Linux only; workers are not pinned");
        None
    }
}

/// Notes the kernel's id of the calling thread (Linux only), so that the
/// primary can read this worker's CPU time in `/proc/self/task/<tid>`.
fn record_os_tid(core: &WorkerCore) {
    #[cfg(target_os = "linux")]
    let _ = core.os_tid.set(nix::unistd::gettid().as_raw());
    #[cfg(not(target_os = "linux"))]
    let _ = core;
}

/// Pins the calling thread to `cpu` (a warning if the kernel refuses).
fn pin_to(cpu: usize) {
    #[cfg(target_os = "linux")]
    {
        use nix::sched::{sched_setaffinity, CpuSet};
        let mut set = CpuSet::new();
        let pinned = set
            .set(cpu)
            .and_then(|()| sched_setaffinity(nix::unistd::Pid::from_raw(0), &set));
        if let Err(e) = pinned {
            tracing::warn!(cpu, error = %e, "pin_workers: cannot pin the worker thread");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cpu;
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
