//! The program under test and the command, as processes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use test_support::{local, Load, Run, DEADLINE};

/// `same_port`, built (if it is not fresh) with this test's profile.
pub(crate) fn same_port() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| build_example("same_port", &[]))
        .clone()
}

/// `memory_limit`, built with the facade's `jemalloc` feature (which it needs).
pub(crate) fn memory_limit() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| build_example("memory_limit", &["--features", "jemalloc"]))
        .clone()
}

fn build_example(name: &str, args: &[&str]) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "-p", "cluster-thread", "--example", name])
        .args(args);
    if !cfg!(debug_assertions) {
        build.arg("--release");
    }
    let status = build.status().expect("cargo runs");
    assert!(status.success(), "cargo build --example {name} {args:?}");
    test_support::example(name)
}

/// A fresh control directory for one test (not yet made: the program makes it).
pub(crate) fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cluster-cli-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `same_port` with its control socket in a directory of its own.
pub(crate) struct App {
    pub(crate) run: Run,
    pub(crate) dir: PathBuf,
    pub(crate) addr: SocketAddr,
}

impl App {
    pub(crate) fn start(name: &str, args: &[&str]) -> App {
        App::start_in(scratch(name), args)
    }

    /// As [`start`](Self::start), with the control directory `dir`.
    pub(crate) fn start_in(dir: PathBuf, args: &[&str]) -> App {
        let mut command = Command::new(same_port());
        command
            .args(["--port", "0", "--host", "127.0.0.1"])
            .args(args);
        App::start_command("same_port", dir, command)
    }

    /// `command` (a program printing `listening on <address>`), with its
    /// control socket in `dir`; returns once every worker listens.
    pub(crate) fn start_command(name: &str, dir: PathBuf, mut command: Command) -> App {
        command
            .env("CLUSTER_THREAD_CONTROL", &dir)
            .env_remove("CLUSTER_THREAD_WORKERS")
            .env_remove("CLUSTER_THREAD_BALANCE")
            .env_remove("RUST_LOG");
        let mut run = Run::command(name, command);
        let addr = local(&run.line(|l| l.starts_with("listening on ")));
        let app = App { run, dir, addr };
        // The first worker's listen prints the line; the others may not
        // listen yet.
        test_support::eventually_blocking(
            || {
                let pid = app.pid().to_string();
                let out = app.ok(&["ls", "--json", "--pid", &pid]);
                serde_json::from_str::<serde_json::Value>(out.trim())
                    .is_ok_and(|status| status["phase"] == "listening")
            },
            "every worker listening",
        );
        app
    }

    pub(crate) fn pid(&self) -> u32 {
        self.run.pid()
    }

    /// The command with `args`, against this program (by its directory).
    pub(crate) fn cli(&self, args: &[&str]) -> Output {
        cli_in(&self.dir, args)
    }

    /// The command, which must succeed; its stdout.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "cluster-thread {args:?}: {}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ls --json`.
    pub(crate) fn ls(&self) -> serde_json::Value {
        let text = self.ok(&["ls", "--json"]);
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    /// The slots of the live workers, as `ls --json` lists them.
    pub(crate) fn slots(&self) -> Vec<u64> {
        workers(&self.ls())
            .iter()
            .map(|w| w["slot"].as_u64().expect("slot"))
            .collect()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) fn workers(status: &serde_json::Value) -> Vec<serde_json::Value> {
    status["workers"].as_array().expect("workers").clone()
}

/// The command with `args`, its control directory `dir`.
pub(crate) fn cli_in(dir: &Path, args: &[&str]) -> Output {
    cli(args)
        .env("CLUSTER_THREAD_CONTROL", dir)
        .output()
        .expect("cluster-thread runs")
}

/// The command, to be given its environment.
pub(crate) fn cli(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cluster-thread"));
    command.args(args).stdin(Stdio::null());
    command
}

/// Whether a test that needs `what` (root, a tool) runs here: it skips
/// with a notice, unless CLUSTER_THREAD_REQUIRE_TOOLS=1 (CI) makes it fail.
pub(crate) fn have(ok: bool, what: &str) -> bool {
    if !ok {
        assert!(
            std::env::var("CLUSTER_THREAD_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "CLUSTER_THREAD_REQUIRE_TOOLS=1 and {what} is missing"
        );
        eprintln!("skipped: {what} is missing");
    }
    ok
}

/// Polls `f` until it gives a value, within the deadline.
pub(crate) fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(Instant::now() < end, "deadline passed waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Fresh connections and keep-alive ones, two clients each.
pub(crate) fn loads(app: &App) -> [Load; 2] {
    let loads = [
        Load::start(app.addr, 2, false),
        Load::start(app.addr, 2, true),
    ];
    for load in &loads {
        load.wait_for_more(100);
    }
    loads
}

pub(crate) fn finish(loads: [Load; 2]) {
    for (load, kind) in loads.into_iter().zip(["fresh", "keep-alive"]) {
        let (ok, failed, closed) = load.finish();
        eprintln!("{kind}: {ok} ok, {failed} failed, {closed} closed");
        assert!(ok > 0);
        assert_eq!((failed, closed), (0, 0), "{kind} connections");
    }
}
