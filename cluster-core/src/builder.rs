//! [`ClusterBuilder`]: the settings of a cluster as the program gives
//! them, checked and resolved (with the environment's overrides) into a
//! [`Config`] at `build`. The top of the crate: it names every layer below.

use std::any::{Any, TypeId};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::{Start, StartHook, UpgradeHook};
use crate::config::{Config, StateMap};
use crate::env::Overrides;
use crate::restart::Backoff;
use crate::signals::ShutdownFuture;
use crate::thread::{WorkerFn, WorkerFuture};
use crate::{
    Cluster, Error, RestartPolicy, Signal, SignalAction, TaskResult, Worker, Workers,
    DEFAULT_SHUTDOWN_TIMEOUT,
};

impl Cluster {
    /// Settings for a new cluster.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }
}

/// A hook run in each worker's thread as it starts (`on_worker_thread`).
type ThreadHook = Arc<dyn Fn(&Worker) + Send + Sync>;

/// Builds a [`Cluster`]: Node's `cluster.setupPrimary(settings)`.
///
/// ```
/// use std::time::Duration;
/// use cluster_core::{Cluster, RestartPolicy};
///
/// let cluster = Cluster::builder()
///     .workers(2)
///     .restart(RestartPolicy::OnFailure)
///     .shutdown_timeout(Duration::from_secs(10))
///     .build(|worker| async move {
///         // Runs once in each worker thread; need not be `Send`.
///         let _greeting = std::rc::Rc::new(format!("worker {}", worker.id()));
///     })
///     .unwrap();
/// # drop(cluster);
/// ```
#[must_use = "a builder does nothing until `build` or `run`"]
pub struct ClusterBuilder {
    workers: Workers,
    thread_name: String,
    stack_size: Option<usize>,
    restart: RestartPolicy,
    backoff: Backoff,
    shutdown_timeout: Duration,
    kill_timeout: Duration,
    listen_timeout: Duration,
    wait_ready: bool,
    drain_delay: Duration,
    /// By `Signal::index`.
    signals: [SignalAction; Signal::ALL.len()],
    pin_workers: bool,
    user: Option<String>,
    group: Option<String>,
    shutdown_signal: Option<ShutdownFuture>,
    on_start: Vec<StartHook>,
    on_worker_thread: Vec<ThreadHook>,
    on_upgrade: Option<UpgradeHook>,
    state: StateMap,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder {
            workers: Workers::Auto,
            thread_name: "cluster-worker".to_owned(),
            stack_size: None,
            restart: RestartPolicy::OnFailure,
            backoff: Backoff::default(),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            kill_timeout: Duration::from_secs(5),
            listen_timeout: Duration::from_secs(3),
            wait_ready: false,
            drain_delay: Duration::ZERO,
            signals: Signal::ALL.map(Signal::default_action),
            pin_workers: false,
            user: None,
            group: None,
            shutdown_signal: None,
            on_start: Vec::new(),
            on_worker_thread: Vec::new(),
            on_upgrade: None,
            state: StateMap::new(),
        }
    }
}

impl fmt::Debug for ClusterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterBuilder")
            .field("workers", &self.workers)
            .field("thread_name", &self.thread_name)
            .field("restart", &self.restart)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("drain_delay", &self.drain_delay)
            .field("signals", &self.signals)
            .field("pin_workers", &self.pin_workers)
            .field("user", &self.user)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl ClusterBuilder {
    /// How many workers: `Workers::Auto` (the default), or a count such as `4`.
    /// `CLUSTER_THREAD_WORKERS` overrides it at `build`.
    pub fn workers(mut self, workers: impl Into<Workers>) -> Self {
        self.workers = workers.into();
        self
    }

    /// Worker threads are named `<prefix>-<slot>` (default `cluster-worker`).
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Self {
        self.thread_name = prefix.into();
        self
    }

    /// Stack size of each worker thread, in bytes (default: Rust's, 2 MiB).
    /// `CLUSTER_THREAD_STACK_SIZE` overrides it at `build`.
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// When exited workers are replaced (default `OnFailure`).
    /// `CLUSTER_THREAD_RESTART` overrides it at `build`.
    pub fn restart(mut self, policy: RestartPolicy) -> Self {
        self.restart = policy;
        self
    }

    /// Delay before the second restart of a slot in a row (default 100 ms); the
    /// first restart is immediate, and each further one waits ×1.5 longer.
    /// `CLUSTER_THREAD_RESTART_DELAY` overrides it at `build`.
    pub fn restart_delay(mut self, delay: Duration) -> Self {
        self.backoff.delay = delay;
        self
    }

    /// Cap of the restart delay (default 15 s).
    pub fn restart_delay_max(mut self, cap: Duration) -> Self {
        self.backoff.max_delay = cap;
        self
    }

    /// A worker that ran this long resets its slot's back-off (default 30 s).
    pub fn restart_reset_after(mut self, uptime: Duration) -> Self {
        self.backoff.reset_after = uptime;
        self
    }

    /// A worker that exits before this uptime is unstable (default 1 s).
    /// For a worker that reported listening or ready, it counts from then:
    /// such a worker is not crashing on start, so its slot is never errored,
    /// and it is replaced at once (after at most 10 ms if it keeps dying
    /// within `min_uptime`). A worker that never did counts from its start,
    /// and crashes on start in a row error the slot past `max_restarts`.
    /// `CLUSTER_THREAD_MIN_UPTIME` overrides it at `build`.
    pub fn min_uptime(mut self, uptime: Duration) -> Self {
        self.backoff.min_uptime = uptime;
        self
    }

    /// After this many crashes on start (exits within `min_uptime`, before
    /// listening or ready) in a row a slot is errored instead of
    /// crash-looping (default 16).
    /// `CLUSTER_THREAD_MAX_RESTARTS` overrides it at `build`.
    pub fn max_restarts(mut self, restarts: u32) -> Self {
        self.backoff.max_restarts = restarts;
        self
    }

    /// How long a disconnected worker may take to finish before it is killed
    /// (default [`DEFAULT_SHUTDOWN_TIMEOUT`], 30 s).
    /// `CLUSTER_THREAD_SHUTDOWN_TIMEOUT` overrides it at `build`.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// How long a killed worker may take to reach an await before it is declared
    /// unresponsive and its thread abandoned (default 5 s).
    /// `CLUSTER_THREAD_KILL_TIMEOUT` overrides it at `build`.
    pub fn kill_timeout(mut self, timeout: Duration) -> Self {
        self.kill_timeout = timeout;
        self
    }

    /// How long start-up and reload wait for a worker to listen or say it is
    /// ready, as PM2's `listen_timeout` (default 3 s).
    /// `CLUSTER_THREAD_LISTEN_TIMEOUT` overrides it at `build`.
    pub fn listen_timeout(mut self, timeout: Duration) -> Self {
        self.listen_timeout = timeout;
        self
    }

    /// PM2's `wait_ready`: a worker is ready only once it calls
    /// [`Worker::ready`], not as soon as it listens, so that start-up,
    /// a reload and `scale` wait (up to [`listen_timeout`](Self::listen_timeout))
    /// for work it does after listening: warming a cache, connecting to a
    /// database. Its listener already takes connections meanwhile (they
    /// wait for it); a reload keeps the old worker until the new one is
    /// ready. Default off. `CLUSTER_THREAD_WAIT_READY` overrides it at `build`.
    pub fn wait_ready(mut self, wait: bool) -> Self {
        self.wait_ready = wait;
        self
    }

    /// How long a graceful stop of the whole cluster (SIGTERM, the first
    /// SIGINT, the shutdown signal, [`Cluster::disconnect`]) waits before it
    /// disconnects the workers (default zero). The phase is
    /// [`Phase::Draining`](crate::Phase::Draining) from the start, so health
    /// checks that read it (`cluster-http`'s `healthz` answers 503) take the
    /// host out of a load balancer while every worker still serves; only
    /// then do the workers drain. Set it to at least two of the balancer's
    /// health-check intervals, as a Kubernetes `preStop` sleep. Workers that
    /// exit meanwhile are not replaced. A second SIGINT or
    /// [`Cluster::stop(false)`](Cluster::stop) skips it.
    /// `CLUSTER_THREAD_DRAIN_DELAY` overrides it at `build`.
    pub fn drain_delay(mut self, delay: Duration) -> Self {
        self.drain_delay = delay;
        self
    }

    /// Whether the primary handles signals (default true): `false` turns
    /// every one [`Off`](SignalAction::Off) (when embedding the cluster, or
    /// when the program handles them itself), `true` restores each
    /// signal's [default](Signal::default_action). [`on_signal`](Self::on_signal)
    /// calls after it change single signals.
    pub fn signals(mut self, on: bool) -> Self {
        self.signals = Signal::ALL.map(|sig| {
            if on {
                sig.default_action()
            } else {
                SignalAction::Off
            }
        });
        self
    }

    /// What the primary does on `signal` (each has a
    /// [default](Signal::default_action)). As nginx users expect:
    ///
    /// ```
    /// use cluster_core::{Cluster, Signal, SignalAction};
    ///
    /// let builder = Cluster::builder()
    ///     .on_signal(Signal::Usr2, SignalAction::Upgrade) // beside SIGQUIT's
    ///     .on_signal(Signal::Hup, SignalAction::Off)
    ///     .on_signal(Signal::Int, SignalAction::StopNow);
    /// # drop(builder);
    /// ```
    ///
    /// `CLUSTER_THREAD_SIGNALS` (such as `"usr2=upgrade, hup=off"`) changes
    /// them again at `build`, after every call.
    pub fn on_signal(mut self, signal: Signal, action: SignalAction) -> Self {
        self.signals[signal.index()] = action;
        self
    }

    /// Pins each worker thread to one CPU (default off): slot `i` to the
    /// `i`-th of the CPUs the process may run on (its affinity at `build`,
    /// so `taskset` and cgroup limits are kept), wrapping around when there
    /// are more slots than CPUs. A replacement runs where its slot's worker
    /// ran. For thread-per-core servers (`reuseport`): a connection's work
    /// stays on one core's caches. Linux only; elsewhere, a warning.
    /// `CLUSTER_THREAD_PIN_WORKERS` overrides it at `build`.
    pub fn pin_workers(mut self, on: bool) -> Self {
        self.pin_workers = on;
        self
    }

    /// Runs the process as this user once the cluster listens (as nginx's
    /// `user`): started as root, the primary binds the first workers'
    /// sockets (ports below 1024 too; its registry keeps them for reloads
    /// and `scale`), and when the cluster first reaches
    /// [`Phase::Listening`](crate::Phase::Listening) the whole process,
    /// every thread, switches to the user, its groups (`initgroups`) and its
    /// primary group (or [`group`](Self::group)'s). Worker code before its
    /// first `listen` runs as root; a socket bound after the switch (a new
    /// address, a port below 1024) is bound as the user.
    ///
    /// The name is resolved at `build`: an unknown user is an error naming
    /// the setting, and so is asking for another user while not root. A
    /// process that runs as that user already (the new process of a hot
    /// upgrade of a dropped one) has nothing to switch. A failed switch
    /// stops the cluster with [`Error::PrivilegeDrop`].
    /// `CLUSTER_THREAD_USER` overrides it at `build`.
    pub fn user(mut self, name: impl Into<String>) -> Self {
        self.user = Some(name.into());
        self
    }

    /// The group the process switches to with [`user`](Self::user)
    /// (default: the user's primary group); alone, only the group (and the
    /// supplementary groups, cleared to it) change. Resolved at `build` as
    /// `user`. `CLUSTER_THREAD_GROUP` overrides it at `build`.
    pub fn group(mut self, name: impl Into<String>) -> Self {
        self.group = Some(name.into());
        self
    }

    /// A future whose completion stops the cluster gracefully, beside or
    /// instead of the signals.
    pub fn shutdown_signal(mut self, signal: impl Future<Output = ()> + Send + 'static) -> Self {
        self.shutdown_signal = Some(Box::pin(signal));
        self
    }

    /// Runs `hook` on the primary as the cluster starts, before its first
    /// fork, on the primary's runtime (so it may spawn tasks there). For
    /// crates that extend the cluster: `cluster-net`'s hot upgrade and
    /// systemd notifications start this way.
    pub fn on_start(mut self, hook: impl FnOnce(&Cluster) + Send + 'static) -> Self {
        self.on_start.push(Box::new(hook));
        self
    }

    /// Runs `hook` in each worker's thread as that worker starts, before
    /// its function (each `hook` in the order given). For crates that
    /// extend the cluster: the facade's `jemalloc` feature gives each
    /// worker thread its own allocator arena this way.
    pub fn on_worker_thread(mut self, hook: impl Fn(&Worker) + Send + Sync + 'static) -> Self {
        self.on_worker_thread.push(Arc::new(hook));
        self
    }

    /// What [`SignalAction::Upgrade`] runs (SIGQUIT's by default):
    /// `handler` runs as a task on the primary's runtime for each such
    /// signal. `cluster-net`'s hot upgrade sets it; a later call replaces
    /// it. Without a handler the signal is ignored with a warning (rather
    /// than SIGQUIT's default action, a core dump).
    pub fn on_upgrade<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Cluster) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_upgrade = Some(Arc::new(move |cluster| Box::pin(handler(cluster))));
        self
    }

    /// State shared by every worker (and the primary), read with
    /// [`Worker::state`]. One value per type; it is wrapped in an `Arc`.
    pub fn state<T: Any + Send + Sync>(mut self, value: T) -> Self {
        self.state.insert(TypeId::of::<T>(), Arc::new(value));
        self
    }

    /// The state of type `T` given so far, if any.
    pub(crate) fn state_of<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        Arc::clone(self.state.get(&TypeId::of::<T>())?)
            .downcast::<T>()
            .ok()
    }

    /// The privilege drop asked for (the variables win over the settings):
    /// `None` when none is, or the process runs as that user already.
    fn privilege(&self, env: &Overrides) -> Result<Option<crate::privilege::Switch>, Error> {
        let user = match &env.user {
            Some(name) => Some((crate::USER_ENV, name.as_str())),
            None => self.user.as_deref().map(|name| ("user", name)),
        };
        let group = match &env.group {
            Some(name) => Some((crate::GROUP_ENV, name.as_str())),
            None => self.group.as_deref().map(|name| ("group", name)),
        };
        crate::privilege::resolve(user, group)
    }

    /// The uid and gid the process switches to once it listens, if this
    /// builder asks for a switch (and the settings resolve: `build`
    /// reports them otherwise).
    pub(crate) fn switch_target(&self) -> Option<(u32, u32)> {
        let env = Overrides::from_env().ok()?;
        self.privilege(&env).ok().flatten().map(|s| s.target())
    }

    /// Checks the settings and creates the cluster, without starting it.
    ///
    /// `worker` is called once in each worker thread, inside that thread, so
    /// the future it returns need not be `Send`.
    pub fn build<F, Fut>(self, worker: F) -> Result<Cluster, Error>
    where
        F: Fn(Worker) -> Fut + Send + Sync + 'static,
        Fut: Future + 'static,
        Fut::Output: TaskResult,
    {
        let env = Overrides::from_env()?;
        let privilege = self.privilege(&env)?;
        let workers = env.workers.unwrap_or(self.workers).resolve()?;
        let pin_workers = env.pin_workers.unwrap_or(self.pin_workers);
        let drain_delay = env.drain_delay.unwrap_or(self.drain_delay);
        let shutdown_timeout = env.shutdown_timeout.unwrap_or(self.shutdown_timeout);
        let kill_timeout = env.kill_timeout.unwrap_or(self.kill_timeout);
        let listen_timeout = env.listen_timeout.unwrap_or(self.listen_timeout);
        let wait_ready = env.wait_ready.unwrap_or(self.wait_ready);
        let restart = env.restart.unwrap_or(self.restart);
        let stack_size = env.stack_size.or(self.stack_size);
        let mut backoff = self.backoff;
        backoff.delay = env.restart_delay.unwrap_or(backoff.delay);
        backoff.min_uptime = env.min_uptime.unwrap_or(backoff.min_uptime);
        backoff.max_restarts = env.max_restarts.unwrap_or(backoff.max_restarts);
        let mut signals = self.signals;
        for (signal, action) in env.signals.into_iter().flatten() {
            match signal {
                Some(one) => signals[one.index()] = action,
                None => signals = [action; Signal::ALL.len()],
            }
        }
        for (setting, value) in [
            ("shutdown_timeout", shutdown_timeout),
            ("kill_timeout", kill_timeout),
        ] {
            if value.is_zero() {
                return Err(Error::BadDuration {
                    setting,
                    value,
                    reason: "must be greater than zero",
                });
            }
        }
        if backoff.max_delay < backoff.delay {
            return Err(Error::BadDuration {
                setting: "restart_delay_max",
                value: backoff.max_delay,
                reason: "must not be below restart_delay",
            });
        }
        let hooks = self.on_worker_thread;
        let body: WorkerFn = Arc::new(move |w: Worker| {
            for hook in &hooks {
                hook(&w);
            }
            let fut = worker(w);
            Box::pin(async move { fut.await.into_result() }) as WorkerFuture
        });
        let config = Config {
            workers,
            thread_name: self.thread_name,
            stack_size,
            restart,
            backoff,
            shutdown_timeout,
            kill_timeout,
            listen_timeout,
            wait_ready,
            drain_delay,
            signals: Signal::ALL.into_iter().zip(signals).collect(),
            pin_cpus: pin_workers.then(crate::affinity::allowed_cpus).flatten(),
            privilege,
        };
        Ok(Cluster::new(
            config,
            body,
            Arc::new(self.state),
            Start {
                shutdown_signal: self.shutdown_signal,
                on_start: self.on_start,
                on_upgrade: self.on_upgrade,
            },
        ))
    }

    /// Builds the cluster and runs it on the current thread until it stops:
    /// the whole program for most users. Blocks.
    pub fn run<F, Fut>(self, worker: F) -> Result<(), Error>
    where
        F: Fn(Worker) -> Fut + Send + Sync + 'static,
        Fut: Future + 'static,
        Fut::Output: TaskResult,
    {
        self.build(worker)?.run(|_| async {})
    }

    /// As [`run`](Self::run), and runs `primary` on the primary thread with the
    /// cluster handle (to watch events, send messages), as Node's
    /// `if (cluster.isPrimary) { … }`. The cluster goes on after `primary`
    /// returns, until its workers are gone; an error from `primary` stops it.
    /// Once the cluster has stopped, `primary` may still read the last events
    /// (its `events()` then ends); if it has not returned within the kill
    /// timeout it is dropped.
    pub fn run_with_primary<F, Fut, P, PFut>(self, worker: F, primary: P) -> Result<(), Error>
    where
        F: Fn(Worker) -> Fut + Send + Sync + 'static,
        Fut: Future + 'static,
        Fut::Output: TaskResult,
        P: FnOnce(Cluster) -> PFut,
        PFut: Future + 'static,
        PFut::Output: TaskResult,
    {
        self.build(worker)?.run(primary)
    }
}
