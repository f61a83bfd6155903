//! The acceptor thread: one per cluster, started on first use, with a
//! current-thread runtime running an accept loop per socket of the modes
//! that dispatch (round-robin, least-connections, sticky), the stand-ins
//! that keep an empty slot's reuseport socket drained, and the watchers of
//! workers' exits. Its loops own clones of the sockets; dropping the thread
//! (with the registry, when the cluster stops) closes them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::{oneshot, Notify};

use crate::accept::AcceptSocket;
use crate::bind::StdListener;
use crate::conn::Totals;
use crate::dispatch::Dispatch;

/// The thread and its runtime. Dropping it ends the thread, and waits for
/// it, so that every socket its tasks held is closed on return.
pub(crate) struct AcceptorThread {
    pub(crate) handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl AcceptorThread {
    pub(crate) fn start() -> std::io::Result<AcceptorThread> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("cluster-acceptor".into())
            .spawn(move || {
                yield_to_workers();
                let _ = rt.block_on(stopped);
                // Dropping the runtime drops its tasks and their sockets.
            })?;
        Ok(AcceptorThread {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// Makes this thread `SCHED_BATCH`: a new connection's wake-up does not
/// preempt the worker running on its CPU, so the acceptor runs when a
/// worker waits (or at the end of its slice) and accepts the whole backlog
/// at once, instead of trading the CPU with the worker twice per
/// connection. It keeps its fair share of the CPU: not starved.
fn yield_to_workers() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid `sched_param`; pid 0 is this thread.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "the acceptor thread stays SCHED_OTHER");
        }
    }
}

impl Drop for AcceptorThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

/// The accept loop of a socket in a dispatching mode: accepts only while
/// some worker can take a connection (the listener's total and the
/// cluster's cap are the places' that `AcceptSocket::accept_holding` takes).
pub(crate) async fn accept_loop(
    listener: AcceptSocket,
    dispatch: Arc<Dispatch>,
    totals: Arc<Totals>,
) {
    loop {
        dispatch.wanted().await;
        dispatch.accept_from(&listener, &totals).await;
    }
}

/// How many listeners of a slot's worker accept on its reuseport socket.
#[derive(Debug, Default)]
pub(crate) struct Occupancy {
    attached: AtomicUsize,
    reattached: Notify,
}

impl Occupancy {
    pub(crate) fn attach(&self) {
        self.attached.fetch_add(1, Ordering::SeqCst);
        self.reattached.notify_waiters();
    }

    /// True when this was the last listener: the slot is empty now.
    pub(crate) fn detach(&self) -> bool {
        self.attached.fetch_sub(1, Ordering::SeqCst) == 1
    }
}

/// Accepts from an empty slot's reuseport socket (the kernel still hashes
/// connections to it) and hands them to the other workers, until the
/// slot's next worker listens on it again.
pub(crate) async fn stand_in(
    occupancy: &Occupancy,
    socket: &StdListener,
    proxy: crate::proxy::Proxy,
    dispatch: &Arc<Dispatch>,
    totals: &Arc<Totals>,
) {
    let listener = match AcceptSocket::register(socket, proxy) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot take over an empty slot's reuseport socket");
            return;
        }
    };
    loop {
        let reattached = occupancy.reattached.notified();
        tokio::pin!(reattached);
        reattached.as_mut().enable();
        if occupancy.attached.load(Ordering::SeqCst) > 0 {
            return;
        }
        tokio::select! {
            () = &mut reattached => return,
            () = dispatch.wanted() => {}
        }
        tokio::select! {
            () = &mut reattached => return,
            () = dispatch.accept_from(&listener, totals) => {}
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::AcceptorThread;

    /// The scheduling policy of each of this process's threads named `name`
    /// (field 41 of `/proc/self/task/<tid>/stat`).
    fn policies(name: &str) -> Vec<u32> {
        let mut found = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
            let dir = task.expect("a task").path();
            let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
                continue; // it ended meanwhile
            };
            // The kernel keeps 15 bytes of a thread's name.
            if comm.trim_end() != &name[..name.len().min(15)] {
                continue;
            }
            let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
                continue;
            };
            // After the command's closing parenthesis, fields from the 3rd on.
            let rest = &stat[stat.rfind(')').expect("a stat line") + 2..];
            let policy = rest.split(' ').nth(41 - 3).expect("41 fields");
            found.push(policy.parse().expect("a number"));
        }
        found
    }

    #[test]
    fn the_acceptor_thread_is_sched_batch() {
        let acceptor = AcceptorThread::start().expect("the acceptor thread");
        // It sets its policy before it runs any task: wait for one.
        let (ran, done) = std::sync::mpsc::channel();
        acceptor.handle.spawn(async move { ran.send(()) });
        done.recv_timeout(std::time::Duration::from_secs(10))
            .expect("the acceptor thread runs its tasks");
        let found = policies("cluster-acceptor");
        assert!(!found.is_empty(), "no cluster-acceptor thread");
        assert!(
            found.iter().all(|&p| p == libc::SCHED_BATCH as u32),
            "policies {found:?}"
        );
    }
}
