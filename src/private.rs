//! What only the output of `#[cluster_thread::main]` needs. Not a public API:
//! it changes without notice.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use cluster_core::{Cluster, ClusterBuilder, TaskResult, Worker};

pub use cluster_core::{
    Cluster as __Cluster, ClusterBuilder as __ClusterBuilder, RestartPolicy, Signal, SignalAction,
    Worker as __Worker, Workers,
};
#[cfg(feature = "http")]
pub use cluster_http::OnPanic;
#[cfg(feature = "net")]
pub use cluster_net::{Balance, Ports};

/// The macro's arguments, typed and checked at compile time by the macro.
/// `None` is an argument the attribute did not give: the builder's,
/// `NetConfig`'s or `HttpConfig`'s own default applies. The environment's
/// variables override them where the builder and cluster-net read them,
/// as for any program.
#[derive(Debug, Clone, Default)]
pub struct Args {
    /// `workers`.
    pub workers: Option<Workers>,
    /// `port`.
    #[cfg(feature = "net")]
    pub port: Option<Ports>,
    /// `balance` (`CLUSTER_THREAD_BALANCE` overrides it, read by cluster-net).
    #[cfg(feature = "net")]
    pub balance: Option<Balance>,
    /// `restart`.
    pub restart: Option<RestartPolicy>,
    /// `restart_delay`.
    pub restart_delay: Option<Duration>,
    /// `min_uptime`.
    pub min_uptime: Option<Duration>,
    /// `max_restarts`.
    pub max_restarts: Option<u32>,
    /// `shutdown_timeout`.
    pub shutdown_timeout: Option<Duration>,
    /// `kill_timeout`.
    pub kill_timeout: Option<Duration>,
    /// `listen_timeout`.
    pub listen_timeout: Option<Duration>,
    /// `drain_delay`.
    pub drain_delay: Option<Duration>,
    /// `pin_workers`.
    pub pin_workers: Option<bool>,
    /// `wait_ready`.
    pub wait_ready: Option<bool>,
    /// `stack_size`, in bytes.
    pub stack_size: Option<usize>,
    /// `max_connections`: `NetConfig::max_connections`.
    #[cfg(feature = "net")]
    pub max_connections: Option<usize>,
    /// `connection_cap`: `NetConfig::connection_cap`.
    #[cfg(feature = "net")]
    pub connection_cap: Option<usize>,
    /// `signals`: each entry in order, a signal (`None`: every signal) and
    /// its action.
    pub signals: &'static [(Option<Signal>, SignalAction)],
    /// `on_panic`.
    #[cfg(feature = "http")]
    pub on_panic: Option<OnPanic>,
    /// The `healthz` endpoint's path, if any.
    #[cfg(feature = "http")]
    pub healthz: Option<&'static str>,
    /// The `metrics` endpoint's path, if any.
    #[cfg(feature = "http")]
    pub metrics: Option<&'static str>,
    /// The `status` page's path, if any.
    #[cfg(feature = "http")]
    pub status: Option<&'static str>,
    /// `control`: whether the control socket opens (default: yes).
    #[cfg(feature = "control")]
    pub control: Option<bool>,
    /// `log`: the default subscriber's level, or `"off"` (default: info).
    #[cfg(feature = "control")]
    pub log: Option<&'static str>,
    /// `user` (`CLUSTER_THREAD_USER` overrides it).
    pub user: Option<&'static str>,
    /// `group` (`CLUSTER_THREAD_GROUP` overrides it).
    pub group: Option<&'static str>,
    /// `max_memory`, in bytes (`CLUSTER_THREAD_MAX_MEMORY` overrides it).
    pub max_memory: Option<u64>,
    /// The program's `CARGO_PKG_VERSION`, shown by `cluster-thread ls`.
    pub program_version: Option<&'static str>,
}

#[cfg(feature = "net")]
pub use cluster_net::WorkerExt;

/// Without the `net` feature there is nothing to listen with; the macro's
/// import still resolves.
#[cfg(not(feature = "net"))]
pub trait WorkerExt {}

impl Args {
    /// The cluster builder these arguments describe.
    pub fn builder(&self) -> ClusterBuilder {
        let mut builder = Cluster::builder().state(self.clone());
        if let Some(workers) = self.workers {
            builder = builder.workers(workers);
        }
        if let Some(restart) = self.restart {
            builder = builder.restart(restart);
        }
        if let Some(delay) = self.restart_delay {
            builder = builder.restart_delay(delay);
        }
        if let Some(uptime) = self.min_uptime {
            builder = builder.min_uptime(uptime);
        }
        if let Some(restarts) = self.max_restarts {
            builder = builder.max_restarts(restarts);
        }
        if let Some(timeout) = self.shutdown_timeout {
            builder = builder.shutdown_timeout(timeout);
        }
        if let Some(timeout) = self.kill_timeout {
            builder = builder.kill_timeout(timeout);
        }
        if let Some(timeout) = self.listen_timeout {
            builder = builder.listen_timeout(timeout);
        }
        if let Some(delay) = self.drain_delay {
            builder = builder.drain_delay(delay);
        }
        if let Some(on) = self.pin_workers {
            builder = builder.pin_workers(on);
        }
        if let Some(wait) = self.wait_ready {
            builder = builder.wait_ready(wait);
        }
        if let Some(bytes) = self.stack_size {
            builder = builder.stack_size(bytes);
        }
        if let Some(user) = self.user {
            builder = builder.user(user);
        }
        if let Some(group) = self.group {
            builder = builder.group(group);
        }
        for &(signal, action) in self.signals {
            let signals = match &signal {
                Some(one) => std::slice::from_ref(one),
                None => &Signal::ALL,
            };
            for &signal in signals {
                builder = builder.on_signal(signal, action);
            }
        }
        #[cfg(feature = "net")]
        let builder = builder.state(self.net());
        #[cfg(feature = "http")]
        let builder = builder.state(self.http());
        builder
    }

    /// The HTTP defaults these arguments describe: `on_panic` and the
    /// endpoints' paths.
    #[cfg(feature = "http")]
    pub fn http(&self) -> cluster_http::HttpConfig {
        let mut config = cluster_http::HttpConfig::default();
        if let Some(on_panic) = self.on_panic {
            config = config.on_panic(on_panic);
        }
        if let Some(path) = self.healthz {
            config = config.healthz(path);
        }
        if let Some(path) = self.metrics {
            config = config.metrics(path);
        }
        if let Some(path) = self.status {
            config = config.status(path);
        }
        config
    }

    /// The listening defaults these arguments describe.
    #[cfg(feature = "net")]
    pub fn net(&self) -> cluster_net::NetConfig {
        let mut config = cluster_net::NetConfig::default();
        if let Some(balance) = self.balance {
            config = config.balance(balance);
        }
        if let Some(ports) = self.port {
            config = config.ports(ports);
        }
        if let Some(n) = self.max_connections {
            config = config.max_connections(n);
        }
        if let Some(n) = self.connection_cap {
            config = config.connection_cap(n);
        }
        config
    }
}

/// What a `#[cluster_thread::main]` function (or its `primary`) may return:
/// [`TaskResult`]'s types, with an error message that speaks of the macro.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a valid return type for a `#[cluster_thread::main]` function or its `primary`",
    label = "expected `()` or `Result<(), E>` where `E: Display`",
    note = "return `()`, or `Result<(), E>` with `E: Display` (such as `anyhow::Result<()>` or `std::io::Result<()>`)"
)]
pub trait MainOutput {
    /// `Ok` or the error's text, as [`TaskResult::into_result`].
    fn into_result(self) -> Result<(), String>;
}

impl MainOutput for () {
    fn into_result(self) -> Result<(), String> {
        TaskResult::into_result(self)
    }
}

impl<E: std::fmt::Display> MainOutput for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        TaskResult::into_result(self)
    }
}

/// The future of the user's function, checked to return a [`MainOutput`].
pub async fn output<Fut>(fut: Fut) -> Result<(), String>
where
    Fut: Future,
    Fut::Output: MainOutput,
{
    fut.await.into_result()
}

/// What the program's `setup` function may return: the builder, or a
/// `Result` of it whose error stops the program.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a valid return type for the `setup` of a `#[cluster_thread::main]` function",
    label = "expected `ClusterBuilder` or `Result<ClusterBuilder, E>` where `E: Display`",
    note = "setup is `fn(cluster_thread::ClusterBuilder) -> ClusterBuilder` (or `-> Result<ClusterBuilder, E>`): add state with `builder.state(value)` and return the builder"
)]
pub trait SetupOutput {
    /// The builder, or the error's text.
    fn into_builder(self) -> Result<ClusterBuilder, String>;
}

impl SetupOutput for ClusterBuilder {
    fn into_builder(self) -> Result<ClusterBuilder, String> {
        Ok(self)
    }
}

impl<E: std::fmt::Display> SetupOutput for Result<ClusterBuilder, E> {
    fn into_builder(self) -> Result<ClusterBuilder, String> {
        self.map_err(|e| format!("setup failed: {e}"))
    }
}

/// The setup function's output, checked to be a [`SetupOutput`].
pub fn setup_output<T: SetupOutput>(output: T) -> Result<ClusterBuilder, String> {
    output.into_builder()
}

/// What the generated `main` starts from: the macro's [`Args`], or with
/// `setup = path`, a [`Setup`].
pub trait Prepare {
    /// The cluster's builder: the arguments with the environment's
    /// overrides, the setup's state, systemd's sockets, the hot upgrade.
    fn prepare(self) -> Result<ClusterBuilder, String>;
}

impl Prepare for Args {
    fn prepare(self) -> Result<ClusterBuilder, String> {
        prepare(self, Ok)
    }
}

/// The macro's arguments and its `setup` function, run once on the
/// primary thread before any worker starts.
pub struct Setup<S> {
    args: Args,
    setup: S,
}

impl<S> Setup<S>
where
    S: FnOnce(ClusterBuilder) -> Result<ClusterBuilder, String>,
{
    /// `args` with `setup`.
    pub fn new(args: Args, setup: S) -> Setup<S> {
        Setup { args, setup }
    }
}

impl<S> Prepare for Setup<S>
where
    S: FnOnce(ClusterBuilder) -> Result<ClusterBuilder, String>,
{
    fn prepare(self) -> Result<ClusterBuilder, String> {
        prepare(self.args, self.setup)
    }
}

/// `fn main` of a program using the macro without `primary = ...`.
pub fn run<A, F, Fut>(args: A, worker: F) -> ExitCode
where
    A: Prepare,
    F: Fn(Worker) -> Fut + Send + Sync + 'static,
    Fut: Future + 'static,
    Fut::Output: TaskResult,
{
    run_with_primary(args, worker, |_| async {})
}

/// `fn main` of a program using the macro with `primary = path`.
pub fn run_with_primary<A, F, Fut, P, PFut>(args: A, worker: F, primary: P) -> ExitCode
where
    A: Prepare,
    F: Fn(Worker) -> Fut + Send + Sync + 'static,
    Fut: Future + 'static,
    Fut::Output: TaskResult,
    P: FnOnce(Cluster) -> PFut,
    PFut: Future + 'static,
    PFut::Output: TaskResult,
{
    exit(args.prepare().and_then(|b| {
        b.run_with_primary(worker, primary)
            .map_err(|e| e.to_string())
    }))
}

/// The builder: the arguments, systemd's sockets and notifications, and
/// the hot upgrade (its sockets are read here, before any thread starts),
/// then the user's setup, which may change any of them (its
/// `on_upgrade`, its `on_signal`s win); then the default logs unless a
/// subscriber is set, and the control socket unless `control = false`.
/// The environment's overrides are read by the builder and cluster-net, as
/// for any program.
fn prepare(
    args: Args,
    setup: impl FnOnce(ClusterBuilder) -> Result<ClusterBuilder, String>,
) -> Result<ClusterBuilder, String> {
    if cfg!(panic = "abort") {
        warn_panic_abort();
    }
    let builder = args.builder();
    #[cfg(feature = "net")]
    let builder = {
        use cluster_net::ClusterBuilderExt;
        builder.from_env().map_err(|e| e.to_string())?
    };
    // Before the setup, which may set its own limit.
    let builder = crate::memory::for_macro(builder, args.max_memory).map_err(|e| e.to_string())?;
    let builder = setup(builder)?;
    // After the setup, which may install a subscriber of its own.
    #[cfg(feature = "control")]
    cluster_ctl::install_default_logs(args.log).map_err(|e| e.to_string())?;
    #[cfg(feature = "control")]
    let off = cluster_core::hooks::builder_state::<crate::control::Off>(&builder).is_some();
    #[cfg(feature = "control")]
    let builder = if args.control == Some(false) || off {
        builder
    } else {
        use cluster_ctl::ControlExt;
        let control = crate::control::standard();
        let control = match args.program_version {
            Some(version) => control.version(version),
            None => control,
        };
        builder.control(control).map_err(|e| e.to_string())?
    };
    Ok(builder)
}

/// The generated program's global allocator: jemalloc with the facade's
/// `jemalloc` feature (each worker's memory is read from its arena), else
/// none (the standard one).
#[cfg(feature = "jemalloc")]
#[doc(hidden)]
#[macro_export]
macro_rules! __global_allocator {
    () => {
        #[global_allocator]
        static __CLUSTER_THREAD_ALLOCATOR: $crate::memory::Jemalloc = $crate::memory::Jemalloc;
    };
}

/// Without the `jemalloc` feature: the standard allocator.
#[cfg(not(feature = "jemalloc"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __global_allocator {
    () => {};
}

#[allow(clippy::print_stderr)] // the program's own `main`: said even without a tracing subscriber
fn warn_panic_abort() {
    eprintln!(
        "warning: built with panic = \"abort\": a panic in any worker ends the whole process \
         instead of restarting that worker; build with panic = \"unwind\" (the default) to keep it"
    );
}

#[allow(clippy::print_stderr)] // the program's own `main` reports its fatal error
fn exit(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(all(test, feature = "http"))]
mod tests {
    use super::*;

    #[test]
    fn only_the_given_arguments_change_the_defaults() {
        let none = Args::default();
        assert_eq!(none.http(), cluster_http::HttpConfig::default());
        let some = Args {
            on_panic: Some(OnPanic::Ignore),
            healthz: Some("/healthz"),
            ..Args::default()
        };
        assert_eq!(
            some.http(),
            cluster_http::HttpConfig::default()
                .on_panic(OnPanic::Ignore)
                .healthz("/healthz")
        );
    }
}
