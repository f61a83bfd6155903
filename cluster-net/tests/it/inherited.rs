//! `Listen::Fd` and `Listen::Systemd`: a child process started with a
//! listening socket at a given fd (and, for systemd, the `LISTEN_*`
//! variables) serves on it from every worker, and exits 0 on SIGTERM.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use cluster_core::{Address, Cluster, ClusterEvent};
use cluster_net::{Listen, SystemdSockets, WorkerExt};
use tokio::io::AsyncWriteExt;

const CHILD: &str = "CLUSTER_NET_INHERITED_CHILD";
use test_support::DEADLINE;

/// The program under test, in the child process only.
#[test]
#[ignore = "a child process: run by the tests of this module (test_support::this_test)"]
fn child() {
    let mode = std::env::var(CHILD).expect("run by this module's tests, which set the mode");
    let (listen, state) = match mode.as_str() {
        "fd" => (Listen::Fd(7), SystemdSockets::default()),
        _ => {
            // Play systemd's part: it sets LISTEN_PID to the pid it execs.
            std::env::set_var("LISTEN_PID", std::process::id().to_string());
            if mode == "systemd-wrong-pid" {
                std::env::set_var("LISTEN_PID", "1");
            }
            match SystemdSockets::from_env() {
                Ok(s) => {
                    let cleared = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"]
                        .iter()
                        .all(|v| std::env::var_os(v).is_none());
                    println!("environment cleared: {cleared}");
                    (Listen::SystemdNamed("web".into()), s)
                }
                Err(e) => {
                    println!("error: {e}");
                    return;
                }
            }
        }
    };
    let listen = std::sync::Mutex::new(Some(listen));
    Cluster::builder()
        .workers(2)
        .state(state)
        .run_with_primary(
            move |w| {
                // Both workers ask for the same fd: the first takes it, the
                // registry shares it.
                let spec = listen.lock().unwrap().take().unwrap_or(Listen::Fd(7));
                let spec = match spec {
                    Listen::Fd(_) if mode != "fd" => Listen::SystemdNamed("web".into()),
                    s => s,
                };
                async move {
                    let l = w.listen(spec).await?;
                    loop {
                        tokio::select! {
                            mut c = l.accept() => {
                                let _ = c.write_all(format!("{}\n", w.id()).as_bytes()).await;
                            }
                            () = w.disconnected() => return Ok::<_, cluster_net::Error>(()),
                        }
                    }
                }
            },
            |cluster| async move {
                let mut events = cluster.events();
                while let Some(e) = events.recv().await {
                    if let ClusterEvent::Listening {
                        address: Address::Tcp(a),
                        ..
                    } = e
                    {
                        println!("listening on {a}");
                    }
                }
            },
        )
        .unwrap();
}

struct Run {
    child: Child,
    lines: mpsc::Receiver<String>,
}

fn start(mode: &str, listener: &TcpListener, at: i32, env: &[(&str, &str)]) -> Run {
    let src = listener.as_raw_fd();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "inherited::child",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD, mode)
    .envs(env.iter().copied())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    // SAFETY: dup2 and fcntl are async-signal-safe; this runs in the forked
    // child only. dup2 onto itself would leave close-on-exec set.
    unsafe {
        cmd.pre_exec(move || {
            let ok = if src == at {
                libc::fcntl(at, libc::F_SETFD, 0) >= 0
            } else {
                libc::dup2(src, at) >= 0
            };
            if ok {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Run { child, lines }
}

impl Run {
    fn line(&self, want: &str) -> String {
        let end = Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(want) => return l,
                Ok(l) => seen.push(l),
                Err(e) => panic!("no line with {want:?} ({e}) in {seen:?}"),
            }
        }
    }

    fn sigterm_and_wait(mut self) -> std::process::ExitStatus {
        test_support::signal(self.child.id(), libc::SIGTERM);
        test_support::wait_exit(&mut self.child, "the child, after SIGTERM,")
    }
}

/// Greetings from fresh connections until both workers answered.
fn both_workers_answer(addr: SocketAddr) {
    let mut ids = HashSet::new();
    let end = Instant::now() + DEADLINE;
    while ids.len() < 2 {
        assert!(Instant::now() < end, "only workers {ids:?} answered");
        let mut line = String::new();
        TcpStream::connect(addr)
            .unwrap()
            .read_to_string(&mut line)
            .unwrap();
        ids.insert(line.trim().to_owned());
    }
}

fn listening_addr(run: &Run) -> SocketAddr {
    let line = run.line("listening on ");
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn listen_fd_serves_the_inherited_socket_from_every_worker() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let run = start("fd", &listener, 7, &[]);
    drop(listener);
    assert_eq!(listening_addr(&run), addr);
    both_workers_answer(addr);
    assert!(run.sigterm_and_wait().success());
}

#[test]
fn listen_systemd_reads_and_clears_the_environment_and_serves() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let run = start(
        "systemd",
        &listener,
        3,
        &[("LISTEN_FDS", "1"), ("LISTEN_FDNAMES", "web")],
    );
    drop(listener);
    assert!(run.line("environment cleared").ends_with("true"));
    assert_eq!(listening_addr(&run), addr);
    both_workers_answer(addr);
    assert!(run.sigterm_and_wait().success());
}

#[test]
fn listen_fds_for_another_process_are_an_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let run = start("systemd-wrong-pid", &listener, 3, &[("LISTEN_FDS", "1")]);
    let line = run.line("error: ");
    assert!(
        line.contains("systemd socket activation: LISTEN_FDS set but LISTEN_PID is not this process (LISTEN_PID=1"),
        "{line}"
    );
}

#[test]
fn bad_listen_variables_are_errors_naming_the_variable() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    for (env, want) in [
        (
            [("LISTEN_FDS", "x"), ("LISTEN_FDNAMES", "web")],
            "systemd socket activation: LISTEN_FDS=\"x\" is not a count of fds",
        ),
        (
            [("LISTEN_FDS", "1"), ("LISTEN_FDNAMES", "web:admin")],
            "systemd socket activation: LISTEN_FDNAMES names 2 sockets but LISTEN_FDS=1",
        ),
    ] {
        let run = start("systemd", &listener, 3, &env);
        let line = run.line("error: ");
        assert!(line.contains(want), "{line}");
    }
}
