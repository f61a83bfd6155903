//! Real child processes: an example, or this test binary re-run as one
//! test (the pattern of tests that own a whole process and its signals).
//! Its printed lines, its exit status, signals to it; killed if the test
//! fails before it exits.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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

/// This test binary, set to run only the test `name` (its full path, such
/// as `signals::child`), with output captured by the parent.
pub fn this_test(name: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("the test binary's path"));
    command.args([name, "--exact", "--nocapture", "--test-threads=1"]);
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
    /// overrides of the test's own environment.
    pub fn start(name: &str, args: &[&str]) -> Run {
        let mut command = Command::new(example(name));
        command
            .args(args)
            .env_remove("CLUSTER_THREAD_WORKERS")
            .env_remove("CLUSTER_THREAD_BALANCE");
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
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("waitpid") {
                return status;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!("{} did not exit", self.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a pid and a signal number; a wrong pid only fails.
    let rc = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
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

/// Sets `command`'s child to at most `n` open fds (soft and hard
/// `RLIMIT_NOFILE`), set between fork and exec.
pub fn limit_fds(command: &mut Command, n: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe; it runs in the forked child
    // before exec, on a local value.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
