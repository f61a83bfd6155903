//! What only the output of `#[cluster_thread::main]` needs. Not a public API:
//! it changes without notice.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use cluster_core::{Cluster, ClusterBuilder, Error, TaskResult, Worker};

pub use cluster_core::{
    Cluster as __Cluster, ClusterBuilder as __ClusterBuilder, RestartPolicy, Worker as __Worker,
    Workers,
};
#[cfg(feature = "http")]
pub use cluster_http::OnPanic;
#[cfg(feature = "net")]
pub use cluster_net::{Balance, Ports};

/// The macro's arguments, typed and checked at compile time by the macro.
/// `None` is an argument the attribute did not give: the builder's,
/// `NetConfig`'s or `HttpConfig`'s own default applies.
#[derive(Debug, Clone, Default)]
pub struct Args {
    /// `workers`.
    pub workers: Option<Workers>,
    /// `port`.
    #[cfg(feature = "net")]
    pub port: Option<Ports>,
    /// `balance` (or `CLUSTER_THREAD_BALANCE`).
    #[cfg(feature = "net")]
    pub balance: Option<Balance>,
    /// `restart`.
    pub restart: Option<RestartPolicy>,
    /// `shutdown_timeout`.
    pub shutdown_timeout: Option<Duration>,
    /// `drain_delay` (or `CLUSTER_THREAD_DRAIN_DELAY`).
    pub drain_delay: Option<Duration>,
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
    /// The program's `CARGO_PKG_VERSION`, shown by `cluster-thread ls`.
    pub program_version: Option<&'static str>,
}

/// The environment variable that overrides `drain_delay` (a duration such
/// as `2s` or `500ms`).
pub const DRAIN_DELAY_ENV: &str = "CLUSTER_THREAD_DRAIN_DELAY";

#[cfg(feature = "net")]
pub use cluster_net::WorkerExt;

/// Without the `net` feature there is nothing to listen with; the macro's
/// import still resolves.
#[cfg(not(feature = "net"))]
pub trait WorkerExt {}

/// A setting of the environment that cannot be used (it names the variable).
type EnvError = Box<dyn std::error::Error + Send + Sync>;

impl Args {
    /// These arguments with the environment's overrides applied:
    /// `CLUSTER_THREAD_BALANCE` replaces `balance`, `CLUSTER_THREAD_DRAIN_DELAY`
    /// `drain_delay`. (`CLUSTER_THREAD_WORKERS` is applied by the builder.)
    /// An invalid value is an error naming the variable.
    pub fn with_env(self) -> Result<Args, EnvError> {
        // A value that is not Unicode is shown (lossily) in the error it causes.
        let var = |name| {
            std::env::var_os(name).map(|v| {
                v.into_string()
                    .unwrap_or_else(|v| v.to_string_lossy().into_owned())
            })
        };
        #[cfg(feature = "net")]
        let args = self.with_balance_env(var(cluster_net::BALANCE_ENV).as_deref())?;
        #[cfg(not(feature = "net"))]
        let args = self;
        Ok(args.with_drain_delay_env(var(DRAIN_DELAY_ENV).as_deref())?)
    }

    /// As [`with_env`](Self::with_env), with the value of
    /// `CLUSTER_THREAD_DRAIN_DELAY` given (`None`: unset).
    pub fn with_drain_delay_env(mut self, value: Option<&str>) -> Result<Args, Error> {
        if let Some(value) = value {
            let delay = humantime::parse_duration(value.trim()).map_err(|_| Error::BadEnv {
                name: DRAIN_DELAY_ENV,
                value: value.to_owned(),
                expected: "a duration such as \"2s\", \"500ms\" or \"0s\"",
            })?;
            self.drain_delay = Some(delay);
        }
        Ok(self)
    }

    /// As [`with_env`](Self::with_env), with the value of
    /// `CLUSTER_THREAD_BALANCE` given (`None`: unset), parsed as
    /// [`Balance::from_env_value`] does.
    #[cfg(feature = "net")]
    pub fn with_balance_env(mut self, value: Option<&str>) -> Result<Args, cluster_net::Error> {
        if let Some(value) = value {
            self.balance = Some(Balance::from_env_value(value)?);
        }
        Ok(self)
    }

    /// The cluster builder these arguments describe.
    pub fn builder(&self) -> ClusterBuilder {
        let mut builder = Cluster::builder().state(self.clone());
        if let Some(workers) = self.workers {
            builder = builder.workers(workers);
        }
        if let Some(restart) = self.restart {
            builder = builder.restart(restart);
        }
        if let Some(timeout) = self.shutdown_timeout {
            builder = builder.shutdown_timeout(timeout);
        }
        if let Some(delay) = self.drain_delay {
            builder = builder.drain_delay(delay);
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

/// The builder, with the setup's state and what the environment says: `CLUSTER_THREAD_BALANCE`,
/// systemd's sockets and notifications, and the hot upgrade (its sockets
/// are read here, before any thread starts); the default logs unless a
/// subscriber is set, and the control socket unless `control = false`.
fn prepare(
    args: Args,
    setup: impl FnOnce(ClusterBuilder) -> Result<ClusterBuilder, String>,
) -> Result<ClusterBuilder, String> {
    if cfg!(panic = "abort") {
        warn_panic_abort();
    }
    let args = args.with_env().map_err(|e| e.to_string())?;
    let builder = setup(args.builder())?;
    // After the setup, which may install a subscriber of its own.
    #[cfg(feature = "control")]
    cluster_ctl::install_default_logs(args.log).map_err(|e| e.to_string())?;
    #[cfg(feature = "net")]
    let builder = {
        use cluster_net::ClusterBuilderExt;
        builder
            .systemd()
            .and_then(ClusterBuilderExt::hot_upgrade)
            .map_err(|e| e.to_string())?
    };
    #[cfg(feature = "control")]
    let builder = if args.control == Some(false) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "net")]
    #[test]
    fn balance_env_overrides_the_argument() {
        for mode in Balance::ALL {
            let args = Args::default().with_balance_env(Some(mode.name()));
            assert_eq!(args.map(|a| a.balance).ok(), Some(Some(mode)));
        }
        let args = Args::default().with_balance_env(Some(" Sticky\n"));
        assert_eq!(args.map(|a| a.balance).ok(), Some(Some(Balance::Sticky)));
        let args = Args {
            balance: Some(Balance::Os),
            ..Args::default()
        };
        assert_eq!(
            args.with_balance_env(None).map(|a| a.balance).ok(),
            Some(Some(Balance::Os))
        );
        let unset = Args::default().with_balance_env(None);
        assert_eq!(unset.map(|a| a.balance).ok(), Some(None));
    }

    #[test]
    fn drain_delay_env_overrides_the_argument() {
        for (value, ms) in [
            ("2s", 2_000),
            ("500ms", 500),
            (" 1m 30s ", 90_000),
            ("0s", 0),
        ] {
            let args = Args::default().with_drain_delay_env(Some(value));
            assert_eq!(
                args.map(|a| a.drain_delay).ok(),
                Some(Some(Duration::from_millis(ms))),
                "{value}"
            );
        }
        let args = Args {
            drain_delay: Some(Duration::from_millis(700)),
            ..Args::default()
        };
        assert_eq!(
            args.with_drain_delay_env(None).map(|a| a.drain_delay).ok(),
            Some(Some(Duration::from_millis(700)))
        );
        for bad in ["", "2", "soon", "-1s"] {
            match Args::default().with_drain_delay_env(Some(bad)) {
                Ok(args) => panic!("{bad:?} accepted as {:?}", args.drain_delay),
                Err(e) => {
                    let text = e.to_string();
                    assert!(text.contains("CLUSTER_THREAD_DRAIN_DELAY"), "{text}");
                    assert!(text.contains("\"500ms\""), "{text}");
                }
            }
        }
    }

    #[cfg(feature = "net")]
    #[test]
    fn bad_balance_env_names_the_variable() {
        for bad in ["", "random", "round_robin"] {
            match Args::default().with_balance_env(Some(bad)) {
                Ok(args) => panic!("{bad:?} accepted as {:?}", args.balance),
                Err(e) => {
                    let text = e.to_string();
                    assert!(text.contains("CLUSTER_THREAD_BALANCE"), "{text}");
                    assert!(text.contains("least-connections"), "{text}");
                }
            }
        }
    }

    #[cfg(feature = "http")]
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
