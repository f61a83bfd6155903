//! The `#[cluster_thread::main(...)]` attribute macro. Use it through the
//! facade crate `cluster_thread` (feature `macros`, on by default), which
//! re-exports it as `cluster_thread::main`.
//!
//! # What it does
//!
//! The attribute goes on an `async fn` and turns it into a program that runs
//! a cluster: the primary on the main thread, and the function's body once in
//! each worker thread.
//!
//! ```no_run
//! #[cluster_thread::main(workers = 4, restart = "on-failure")]
//! async fn main(worker: cluster_thread::Worker) -> Result<(), std::io::Error> {
//!     println!("worker {} in slot {} is up", worker.id(), worker.slot());
//!     worker.disconnected().await; // until the primary says stop
//!     Ok(())
//! }
//! ```
//!
//! # The expansion
//!
//! The function is replaced by a *synchronous* function of the same name,
//! visibility and attributes, with no parameter, returning
//! `std::process::ExitCode`. Its body:
//!
//! 1. holds the user's `async fn`, unchanged but renamed
//!    `__cluster_thread_main`, as an inner item, so its body is compiled
//!    exactly as written;
//! 2. builds `cluster_thread::__private::Args` from the attribute's arguments,
//!    all checked at compile time, as typed values (`balance = "sticky"` is
//!    `Some(Balance::Sticky)`, `shutdown_timeout = "1m"` is
//!    `Some(Duration::new(60, 0))`); an argument not given is `None`,
//!    which leaves the builder's, `NetConfig`'s or `HttpConfig`'s own default;
//! 3. calls `cluster_thread::__private::run(args, |worker| output(__cluster_thread_main(worker)))`,
//!    or, with `primary = path`,
//!    `run_with_primary(args, |worker| ..., |cluster| output(path(cluster)))`,
//!    where `__private::output` checks that the future's output is `()` or
//!    `Result<(), E: Display>` (a wrong return type is reported at the return
//!    type, or at the `primary` path, with what is accepted).
//!
//! `run` builds the cluster (the builder and `cluster-net` apply the
//! environment's overrides, as for any program), runs the primary on the
//! calling thread until the cluster stops, and returns `ExitCode::SUCCESS`,
//! or prints `error: ...` to stderr and returns `ExitCode::FAILURE` (a bad
//! setting, slots that kept crashing, a failed primary function).
//!
//! The closure is called in each worker thread, inside that worker's own
//! tokio current-thread runtime, so the future of the body is created there
//! and need not be `Send`: `Rc`, `RefCell` and `tokio::task::spawn_local`
//! work. It runs once per worker, and again in each restarted worker.
//!
//! # Accepted functions
//!
//! - `async fn main(worker: Worker)`: one parameter, the worker (any pattern;
//!   its type must be `cluster_thread::Worker`, written as you like), or
//!   `async fn main()`, which can still reach its worker with
//!   `cluster_thread::worker()`;
//! - returning `()` or `Result<(), E>` where `E: Display` (such as
//!   `anyhow::Result<()>` or `std::io::Result<()>`): an error ends that worker,
//!   and its text is the worker's exit reason;
//! - not `const`, `unsafe` or `extern`, no generics or `where` clause, no
//!   `self`.
//!
//! **Names.** The function may have any name: the generated function keeps
//! it. Named `main` (the normal use) at the crate root, it is the program's
//! entry point. Under another name it is an ordinary
//! `fn name() -> ExitCode` that runs the whole cluster when called, which is
//! handy in tests or to decide at run time whether to start the cluster. Call
//! it from synchronous code: it blocks, and starts its own runtimes (inside an
//! async runtime it would panic, as any nested `block_on`).
//!
//! # Arguments
//!
//! All optional, written `key = value` and separated by commas.
//!
//! | argument | values | default |
//! |---|---|---|
//! | `workers` | `"auto"` (available parallelism) or an integer ≥ 1 (`4` or `"4"`) | `"auto"` |
//! | `port` | `"shared"` (all workers, one port) or `"per-worker"` (port + slot) | `"shared"` |
//! | `balance` | `"round-robin"`, `"least-connections"`, `"os"`, `"reuseport"`, `"sticky"` | `"round-robin"` |
//! | `restart` | `"never"`, `"on-failure"`, `"always"` | `"on-failure"` |
//! | `restart_delay` | a duration (below): the delay before a slot's second restart in a row, ×1.5 each further one (`ClusterBuilder::restart_delay`) | `"100ms"` |
//! | `min_uptime` | a duration: a worker that exits sooner (from listening or ready, else from its start) is unstable | `"1s"` |
//! | `max_restarts` | an integer from 0 to 4294967295: crashes on start in a row before a slot is errored | `16` |
//! | `shutdown_timeout` | a duration in `humantime`'s grammar, the one the environment's variables use, such as `"30s"`, `"500ms"`, `"2m"`, `"1m 30s"`, `"1.5s"`; not zero | `"30s"` |
//! | `kill_timeout` | a duration, not zero: how long a killed worker may take to reach an await before it is declared unresponsive | `"5s"` |
//! | `listen_timeout` | a duration: how long start-up and reload wait for a worker to listen or be ready (PM2's `listen_timeout`) | `"3s"` |
//! | `drain_delay` | a duration as above, zero allowed: on a graceful stop, how long `/healthz` answers 503 while every worker still serves, before the workers drain (`ClusterBuilder::drain_delay`) | `"0s"` |
//! | `max_memory` | a size such as `"256MiB"` or `"1GiB"`: a worker whose memory passes it is replaced gracefully (needs the facade's `jemalloc` feature, which makes jemalloc the global allocator with an arena per worker; refused at start without it). `CLUSTER_THREAD_MAX_MEMORY` overrides it, `cluster-thread set max_memory` changes it live | none |
//! | `signals` | each signal's action, `"signal=action"` entries separated by commas, applied in order (`ClusterBuilder::on_signal`): signals `term`, `int`, `hup`, `quit`, `usr1`, `usr2` (`SIG` and case optional) or `all`; actions `stop`, `interrupt` (graceful, a second at once), `stop-now`, `reload`, `upgrade`, `ignore`, `off` (not handled). As nginx: `signals = "usr2=upgrade, hup=off, int=stop-now"`; `"all=off"` handles none. A `setup` function's `on_signal` and `on_upgrade` win over it | term `stop`, int `interrupt`, hup `reload`, quit `upgrade`, usr1 and usr2 `off` |
//! | `wait_ready` | `true` or `false`: PM2's `wait_ready`, a worker is ready only once it calls `worker.ready()`, not when it listens; start-up, reload and `scale` wait for it up to `listen_timeout` | `false` |
//! | `pin_workers` | `true` or `false`: slot *i*'s thread pinned to the *i*-th CPU the process may use (`ClusterBuilder::pin_workers`) | `false` |
//! | `stack_size` | bytes (`4194304`) or a size in a string: `"512KiB"`, `"8MiB"`, `"1GiB"` | Rust's, 2 MiB |
//! | `max_connections` | an integer ≥ 1: open connections per listener, all workers together (`NetConfig::max_connections`, Node's `server.maxConnections`) | none |
//! | `connection_cap` | an integer ≥ 1: open connections of every listener together, idle and silent ones closed at it (`NetConfig::connection_cap`) | the fd limit less a reserve |
//! | `on_panic` | what a panic in a connection task does: `"ignore"` or `"restart"` | `"restart"` |
//! | `healthz`, `metrics`, `status` | the HTTP endpoints' paths, strings starting with `/`, each its own: `HttpConfig::healthz` (200 / 503 while draining), `metrics` (Prometheus text of every slot), `status` (the status page), in the cluster's `HttpConfig` | none |
//! | `control` | `true` or `false`: whether the program opens its control socket, for the `cluster-thread` command (`ls`, `scale`, `logs`, ...); `CLUSTER_THREAD_CONTROL=off` turns it off at run time, `CLUSTER_THREAD_CONTROL=<dir>` moves it | `true` |
//! | `global_allocator` | `true` or `false`: with the facade's `jemalloc` feature, whether the macro makes jemalloc the program's global allocator (each worker's memory is read from its arena); `false` keeps the program's own `#[global_allocator]` (worker memory is then known only if that is jemalloc too: `cluster_thread::memory::Jemalloc`, wrapped or not) | `true` on `fn main`, `false` on a function of another name (a crate, a test say, may hold several; a program one allocator) |
//! | `log` | `"off"`, `"error"`, `"warn"`, `"info"`, `"debug"` or `"trace"`: the level of the logs on stderr (and in the ring `cluster-thread logs` reads) when the program installed no `tracing` subscriber of its own; `RUST_LOG` overrides it; `"off"` installs none | `"info"` |
//! | `user`, `group` | names in strings, such as `user = "www-data"`: once the cluster first listens (its first workers' sockets bound, ports below 1024 too), the whole process switches to this user (its groups, its primary group or `group`'s) (`ClusterBuilder::user`, `group`). Started as root; an unknown name, or another user while not root, stops the program at start naming the setting; `CLUSTER_THREAD_USER` / `CLUSTER_THREAD_GROUP` override them. Worker code before its first listen runs as root | none |
//! | `setup` | a path to a `fn(cluster_thread::ClusterBuilder) -> ClusterBuilder` (or `-> Result<ClusterBuilder, E: Display>`, whose error stops the program), run once on the primary before any worker: it builds the shared state (`builder.state(value)`, read in the workers with `worker.state::<T>()`) without statics or environment variables; an `HttpConfig` given there replaces the one the macro builds from `on_panic`, `healthz`, `metrics` and `status` | none |
//! | `primary` | a path to an `async fn(cluster_thread::Cluster)` returning `()` or `Result<(), E: Display>`, run on the primary with the cluster handle (bare, `primary = watch`, or in a string, `primary = "watch"`) | none |
//! | `crate` | the path of the facade, in a string, for users who renamed it (`crate = "ct"`) or re-export it, as `#[tokio::main(crate = "...")]`; the expansion uses `<crate>::__private` | `"cluster_thread"` |
//!
//! `port`, `balance`, `max_connections` and `connection_cap` need the facade's `net` feature, `on_panic`,
//! `healthz`, `metrics` and `status` its `http` feature, `control` and `log`
//! its `control` feature (all on by default): without it, the expansion
//! does not compile, at the argument.
//!
//! At run time each setting's `CLUSTER_THREAD_*` variable overrides it
//! (`CLUSTER_THREAD_WORKERS` `workers`, `CLUSTER_THREAD_KILL_TIMEOUT`
//! `kill_timeout`, `CLUSTER_THREAD_SIGNALS` `signals`, ...), read where a
//! builder program's is; an invalid value stops the program at start with
//! an error naming the variable. `docs/settings.md` lists every setting
//! with its variable and default.
//!
//! # Errors
//!
//! Every mistake is a compile error at the offending token that says what is
//! accepted: an unknown or duplicate argument, a wrong value, `workers = 0`, a
//! function that is not `async`, is generic, takes more than one parameter or
//! `self`. All of them are reported at once, and the function is still emitted
//! beside the errors so that the editor keeps understanding its body.

#![forbid(unsafe_code)]

mod args;
mod expand;

use proc_macro::TokenStream;

/// Runs an `async fn` as a cluster: the primary on the main thread, the body
/// once in each worker thread.
///
/// ```no_run
/// use cluster_thread::{Cluster, ClusterEvent, Worker};
///
/// #[cluster_thread::main(workers = 2, restart = "always", primary = watch)]
/// async fn main(worker: Worker) {
///     println!("worker {} ready", worker.id());
///     worker.disconnected().await;
/// }
///
/// async fn watch(cluster: Cluster) {
///     let mut events = cluster.events();
///     while let Some(event) = events.recv().await {
///         if let ClusterEvent::Exit { .. } = event {
///             println!("a worker exited");
///         }
///     }
/// }
/// ```
///
/// The function becomes a synchronous `fn main() -> std::process::ExitCode`
/// (the same name, visibility and attributes) that keeps the `async fn` as an
/// inner item and calls `cluster_thread::__private::run` (or
/// `run_with_primary`) with the checked arguments and a closure calling it:
/// the future is created inside each worker thread, so it need not be `Send`.
///
/// | argument | values | default |
/// |---|---|---|
/// | `workers` | `"auto"` or an integer ≥ 1 (`4` or `"4"`) | `"auto"` |
/// | `port` | `"shared"` or `"per-worker"` | `"shared"` |
/// | `balance` | `"round-robin"`, `"least-connections"`, `"os"`, `"reuseport"`, `"sticky"` | `"round-robin"` |
/// | `restart` | `"never"`, `"on-failure"`, `"always"` | `"on-failure"` |
/// | `restart_delay`, `min_uptime` | durations: the back-off's first delay, the uptime below which a worker is unstable | `"100ms"`, `"1s"` |
/// | `max_restarts` | an integer: crashes on start in a row before a slot is errored | `16` |
/// | `shutdown_timeout` | a duration such as `"30s"`, `"500ms"` or `"1m 30s"` | `"30s"` |
/// | `kill_timeout`, `listen_timeout` | durations: a killed worker's time to reach an await (not zero), start-up's and reload's wait for listening | `"5s"`, `"3s"` |
/// | `drain_delay` | a duration, zero allowed: `/healthz` 503 this long before a graceful stop drains | `"0s"` |
/// | `signals` | `"signal=action"` entries, such as `"usr2=upgrade, hup=off"` | term `stop`, int `interrupt`, hup `reload`, quit `upgrade` |
/// | `pin_workers`, `wait_ready` | `true` or `false`: pin each worker thread to a CPU; ready only at `worker.ready()` | `false` |
/// | `stack_size` | bytes, or `"512KiB"`, `"8MiB"`, `"1GiB"` | 2 MiB |
/// | `max_connections`, `connection_cap` | integers ≥ 1: per listener, and every listener together | none, the fd limit |
/// | `max_memory` | a size (`"256MiB"`): a worker over it is replaced gracefully (facade feature `jemalloc`) | none |
/// | `on_panic` | `"ignore"` or `"restart"` | `"restart"` |
/// | `healthz`, `metrics`, `status` | the HTTP endpoints' paths, such as `"/healthz"` | none |
/// | `control` | `true` or `false`: the control socket for `cluster-thread` | `true` |
/// | `log` | `"off"` or a level: the default logs on stderr (`RUST_LOG` overrides) | `"info"` |
/// | `user`, `group` | names (`"www-data"`): the process switches to them once the cluster listens (started as root) | none |
/// | `setup` | path to a `fn(ClusterBuilder) -> ClusterBuilder` (or a `Result` of it), run once on the primary to build the shared state | none |
/// | `primary` | path to an `async fn(Cluster)` returning `()` or `Result<(), E: Display>` | none |
/// | `crate` | path of the facade, in a string | `"cluster_thread"` |
///
/// The function may take the worker (`async fn main(worker: Worker)`) or
/// nothing (`async fn main()`, then `cluster_thread::worker()`), and return
/// `()` or `Result<(), E: Display>`. It may have any name: the generated
/// synchronous function keeps it; only `main` is the program's entry point.
/// See the crate documentation of `cluster-macros` for the details.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(args.into(), item.into()).into()
}
