//! Real child processes: an example, or this test binary re-run as one
//! test (the pattern of tests that own a whole process and its signals).
//! Its printed lines, its exit status, signals to it; killed if the test
//! fails before it exits.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::DEADLINE;

/// The example's binary, built by `cargo test` beside this test (or built now).
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    let path = profile_dir.join("examples").join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--example", name])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cargo build --example {name}");
    }
    path
}

/// The path of `program` on `PATH`, if it is there.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// `CLUSTER_THREAD_SHUTDOWN_TIMEOUT` (cluster-core's `SHUTDOWN_TIMEOUT_ENV`).
pub const SHUTDOWN_TIMEOUT_ENV: &str = "CLUSTER_THREAD_SHUTDOWN_TIMEOUT";

/// A shutdown timeout ten times the [`DEADLINE`]: a drain that does not
/// end by itself outlasts the test's wait.
pub const LONG_SHUTDOWN: &str = "600s";

/// The variable that makes a missing tool fail the test that needs it
/// instead of skipping its check (`.ci/run` sets it).
pub const REQUIRE_TOOLS_ENV: &str = "CLUSTER_THREAD_REQUIRE_TOOLS";

/// The tool a check needs: the first of `programs` on `PATH`. Missing, the
/// check is skipped with a notice naming `package` (the Debian package
/// that has it), or, with `CLUSTER_THREAD_REQUIRE_TOOLS=1`, the test fails.
pub fn tool(programs: &[&str], package: &str) -> Option<PathBuf> {
    if let Some(path) = programs.iter().find_map(|p| which(p)) {
        return Some(path);
    }
    let names = programs.join(" or ");
    assert!(
        std::env::var_os(REQUIRE_TOOLS_ENV).is_none_or(|v| v != "1"),
        "{names} not installed (Debian package `{package}`), and {REQUIRE_TOOLS_ENV}=1 requires it"
    );
    eprintln!("notice: {names} not installed (Debian package `{package}`); the check that needs it is skipped");
    None
}

/// Python 3 with `module` importable (a client not ours), as [`tool`]:
/// missing, the check is skipped with a notice naming how to install it
/// (`pip_name` from PyPI; `.ci/run` installs it), or, with
/// `CLUSTER_THREAD_REQUIRE_TOOLS=1` (unless `CLUSTER_THREAD_NO_PYPI` says
/// PyPI was out of reach), the test fails.
pub fn python_module(module: &str, pip_name: &str) -> Option<PathBuf> {
    let python = tool(&["python3"], "python3")?;
    let found = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some(python);
    }
    // Not a distribution package: `.ci/run` says when PyPI could not be reached.
    let required = std::env::var_os(REQUIRE_TOOLS_ENV).is_some_and(|v| v == "1")
        && std::env::var_os("CLUSTER_THREAD_NO_PYPI").is_none();
    assert!(
        !required,
        "the Python module {module} is not installed (`python3 -m pip install {pip_name}`), and {REQUIRE_TOOLS_ENV}=1 requires it"
    );
    eprintln!("notice: the Python module {module} is not installed (`python3 -m pip install {pip_name}`); the check that needs it is skipped");
    None
}

/// This test binary, set to run only the test `name` (its full path, such
/// as `signals::child`), with output captured by the parent. That test is
/// `#[ignore]`d (so a normal run does not report it as passed, having run
/// nothing) and run here with `--ignored`.
pub fn this_test(name: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("the test binary's path"));
    command.args([
        name,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    command
}

/// A running child and the lines it prints.
pub struct Run {
    pub name: String,
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// Lines printed and not yet matched, in order.
    pending: Vec<String>,
    pub seen: Vec<String>,
}

impl Run {
    /// The example `name` with `args`, without the cluster's environment
    /// overrides of the test's own environment, and with a shutdown
    /// timeout far beyond every wait of the tests: an example that does
    /// not finish its drain by itself fails its test (its exit waits past
    /// the deadline) instead of being killed in time.
    pub fn start(name: &str, args: &[&str]) -> Run {
        let mut command = Command::new(example(name));
        command
            .args(args)
            .env_remove("CLUSTER_THREAD_WORKERS")
            .env_remove("CLUSTER_THREAD_BALANCE")
            .env(SHUTDOWN_TIMEOUT_ENV, LONG_SHUTDOWN);
        Run::command(name, command)
    }

    /// Any command; its stdout is read, its stderr dropped.
    pub fn command(name: &str, mut command: Command) -> Run {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{name} did not start: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Run {
            name: name.to_owned(),
            child,
            lines,
            pending: Vec::new(),
            seen: Vec::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first printed line not matched before that satisfies `want`
    /// (lines of different threads come in any order).
    pub fn line(&mut self, want: impl Fn(&str) -> bool) -> String {
        if let Some(i) = self.pending.iter().position(|l| want(l)) {
            return self.pending.remove(i);
        }
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if want(&l) {
                        return l;
                    }
                    self.pending.push(l);
                }
                Err(e) => panic!(
                    "{}: no such line ({e}); printed: {:?}",
                    self.name, self.seen
                ),
            }
        }
    }

    /// A line, waiting at most `within` (for the caller's own loop).
    pub fn try_line(&mut self, within: Duration) -> Option<String> {
        if !self.pending.is_empty() {
            return Some(self.pending.remove(0));
        }
        let l = self.lines.recv_timeout(within).ok()?;
        self.seen.push(l.clone());
        Some(l)
    }

    /// Every line printed and not yet read.
    pub fn rest(&mut self) -> Vec<String> {
        let mut rest = std::mem::take(&mut self.pending);
        rest.extend(self.lines.try_iter());
        rest
    }

    pub fn signal(&self, sig: i32) {
        signal(self.child.id(), sig);
    }

    /// Waits for the exit, within the deadline.
    pub fn exit_status(&mut self) -> std::process::ExitStatus {
        wait_exit(&mut self.child, &self.name)
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `sig` to `pid`; panics if it cannot (no such process).
pub fn signal(pid: u32, sig: i32) {
    if let Err(e) = try_signal(pid, sig) {
        panic!("kill({pid}, {sig}): {e}");
    }
}

/// Sends `sig` to `pid`, which may be gone already.
pub fn try_signal(pid: u32, sig: i32) -> std::io::Result<()> {
    let pid = i32::try_from(pid).map_err(|_| std::io::Error::other(format!("pid {pid}")))?;
    let sig = Signal::try_from(sig)?;
    nix::sys::signal::kill(Pid::from_raw(pid), sig)?;
    Ok(())
}

/// Waits at most `within` for `child` to exit: its status, or `None` while
/// it runs (the `wait-timeout` crate's call; std waits without a bound, so
/// this polls every 5 ms).
pub fn wait_timeout(child: &mut Child, within: Duration) -> std::io::Result<Option<ExitStatus>> {
    let end = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= end {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for `child` to exit within the deadline; else kills it and panics,
/// naming `what`.
pub fn wait_exit(child: &mut Child, what: &str) -> ExitStatus {
    match wait_timeout(child, DEADLINE) {
        Ok(Some(status)) => status,
        Ok(None) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {DEADLINE:?}");
        }
        Err(e) => panic!("waiting for {what}: {e}"),
    }
}

/// True while `pid` runs (not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// Waits (within the deadline) until `pid` has exited.
pub fn wait_gone(pid: u32) {
    let end = Instant::now() + DEADLINE;
    while alive(pid) {
        assert!(Instant::now() < end, "process {pid} did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One `openssl s_client` connection (a client not ours) at `version`
/// (`-tls1_3`, `-tls1_2`) sending one request: the session it made or
/// resumed is written to `session`, the one there is offered. Whether the
/// handshake resumed it, and which worker answered.
pub fn s_client(openssl: &Path, addr: SocketAddr, session: &Path, version: &str) -> (bool, String) {
    let mut command = Command::new(openssl);
    command
        .args(["s_client", version, "-servername", "localhost", "-ign_eof"])
        .arg("-connect")
        .arg(addr.to_string())
        .arg("-sess_out")
        .arg(session);
    if session.exists() {
        command.arg("-sess_in").arg(session);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Its answer comes after the session tickets, so they are read; the
    // server's close then ends the client.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .unwrap();
    let status = wait_timeout(&mut child, DEADLINE).unwrap();
    if status.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(status.is_some(), "openssl s_client still running: {text}");
    let worker = text
        .lines()
        .find_map(|l| l.strip_prefix("x-worker-id: "))
        .unwrap_or_else(|| panic!("no answer: {text}"))
        .trim()
        .to_owned();
    let reused = text.lines().any(|l| l.starts_with("Reused, "));
    let new = text.lines().any(|l| l.starts_with("New, "));
    assert!(reused != new, "neither new nor reused: {text}");
    (reused, worker)
}
