//! systemd's notification protocol, with a real `$NOTIFY_SOCKET`: the
//! `same_port` example says `READY=1` (and its `MAINPID`) once its workers
//! listen, and `STOPPING=1` when SIGTERM starts the drain.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

use test_support::{example, signal, DEADLINE};

/// Kills the child if the test fails before it exits.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn recv(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = socket
        .recv(&mut buf)
        .expect("a notification before the deadline");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn ready_once_listening_then_stopping_on_sigterm() {
    let path =
        std::env::temp_dir().join(format!("cluster-thread-notify-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut child = KillOnDrop(
        Command::new(example("same_port"))
            .args(["--workers", "2", "--port", "0"])
            .env("NOTIFY_SOCKET", &path)
            .env(
                test_support::SHUTDOWN_TIMEOUT_ENV,
                test_support::LONG_SHUTDOWN,
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let child = &mut child.0;
    let ready = recv(&socket);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(
        ready
            .lines()
            .any(|l| l == format!("MAINPID={}", child.id())),
        "{ready:?}"
    );
    signal(child.id(), libc::SIGTERM);
    assert_eq!(recv(&socket).trim(), "STOPPING=1");
    let status = test_support::wait_exit(child, "same_port");
    assert!(status.success());
    let _ = std::fs::remove_file(&path);
}

/// A notification, skipping the watchdog's pings (counted in `pings`).
fn recv_skipping_pings(socket: &UnixDatagram, pings: &mut usize) -> String {
    loop {
        let message = recv(socket);
        if message.trim() == "WATCHDOG=1" {
            *pings += 1;
        } else {
            return message;
        }
    }
}

fn has_line(message: &str, want: &str) -> bool {
    message.lines().any(|l| l == want)
}

/// Waits until `pid` has exited.
fn wait_exit(pid: u32) {
    let end = std::time::Instant::now() + DEADLINE;
    while test_support::alive(pid) {
        assert!(std::time::Instant::now() < end, "pid {pid} did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Kills a process that is not our child (the upgraded one) if the test fails.
struct KillPidOnDrop(Option<u32>);

impl Drop for KillPidOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            if test_support::alive(pid) {
                let _ = test_support::try_signal(pid, libc::SIGKILL);
            }
        }
    }
}

/// `systemd-socket-activate` (systemd's own launcher: it binds, then execs
/// the program with `LISTEN_FDS`) runs `same_port`, which serves on the
/// socket it was given and tells the datagram socket `READY=1` at listening,
/// `RELOADING=1` + `MONOTONIC_USEC` / `READY=1` around a SIGHUP, `WATCHDOG=1`
/// pings, the new `MAINPID` after a hot upgrade (and the old process no
/// `STOPPING=1`), and `STOPPING=1` when SIGTERM drains it.
#[test]
fn socket_activated_ready_reloading_watchdog_upgrade_stopping() {
    let Some(activate) = test_support::tool(&["systemd-socket-activate"], "systemd") else {
        return;
    };
    let path = std::env::temp_dir().join(format!(
        "cluster-thread-notify-activated-{}.sock",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(DEADLINE)).unwrap();
    // The launcher needs a concrete port: one below the ephemeral range,
    // where no port-0 socket can take it; retried if it was taken anyway.
    let (mut child, port) = (0..20)
        .find_map(|_| {
            let port = test_support::free_port_run(1);
            let mut child = KillOnDrop(
                Command::new(&activate)
                    .arg(format!("--listen=0.0.0.0:{port}"))
                    .arg("--fdname=web")
                    .arg(format!("--setenv=NOTIFY_SOCKET={}", path.display()))
                    .arg("--setenv=WATCHDOG_USEC=400000")
                    .arg(example("same_port"))
                    .args(["--workers", "2", "--port", &port.to_string()])
                    .env_remove("CLUSTER_THREAD_WORKERS")
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap(),
            );
            // "Listening on 0.0.0.0:PORT as 3." once bound, or an error and exit.
            let mut stderr = std::io::BufReader::new(child.0.stderr.take().unwrap());
            let mut line = String::new();
            let _ = std::io::BufRead::read_line(&mut stderr, &mut line);
            // Read on, or the launcher's next line would meet a closed pipe.
            std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
            line.starts_with("Listening on ").then_some((child, port))
        })
        .expect("systemd-socket-activate could not bind a port");
    let old = child.0.id();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut upgraded = KillPidOnDrop(None);
    // Watchdog pings between the other notifications, only counted.
    let mut pings = 0;

    // The first connection makes the launcher exec same_port (same pid), which
    // serves it on systemd's socket.
    let mut first = std::net::TcpStream::connect(addr).unwrap();
    first.set_read_timeout(Some(DEADLINE)).unwrap();
    let r = test_support::exchange(&mut first, "/", false).unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "hello world\n"));
    let ready = recv_skipping_pings(&socket, &mut pings);
    assert!(has_line(&ready, "READY=1"), "{ready:?}");
    assert!(has_line(&ready, &format!("MAINPID={old}")), "{ready:?}");

    // A rolling reload, announced.
    signal(old, libc::SIGHUP);
    let reloading = recv_skipping_pings(&socket, &mut pings);
    assert!(has_line(&reloading, "RELOADING=1"), "{reloading:?}");
    assert!(
        reloading.lines().any(|l| l
            .strip_prefix("MONOTONIC_USEC=")
            .is_some_and(|v| v.parse::<u64>().is_ok())),
        "{reloading:?}"
    );
    let reloaded = recv_skipping_pings(&socket, &mut pings);
    assert_eq!(reloaded.trim(), "READY=1");
    assert_eq!(test_support::get(addr, "/").unwrap().status, 200);
    assert_eq!(recv(&socket).trim(), "WATCHDOG=1");

    // Hot upgrade: the new process says its pid; the old one drains without
    // STOPPING=1 (it is no longer the service).
    signal(old, libc::SIGQUIT);
    let takeover = recv_skipping_pings(&socket, &mut pings);
    assert!(has_line(&takeover, "READY=1"), "{takeover:?}");
    let new: u32 = takeover
        .lines()
        .find_map(|l| l.strip_prefix("MAINPID="))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no MAINPID in {takeover:?}"));
    assert_ne!(new, old);
    upgraded.0 = Some(new);
    let status = test_support::wait_exit(&mut child.0, "the old process");
    assert!(status.success(), "{status}");
    socket.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 512];
    while let Ok(n) = socket.recv(&mut buf) {
        let message = String::from_utf8_lossy(&buf[..n]);
        assert_eq!(message.trim(), "WATCHDOG=1", "after the old process exited");
    }
    socket.set_nonblocking(false).unwrap();
    assert_eq!(test_support::get(addr, "/").unwrap().status, 200);
    // The new process pings the watchdog too (the old one has exited).
    assert_eq!(recv(&socket).trim(), "WATCHDOG=1");

    signal(new, libc::SIGTERM);
    assert_eq!(
        recv_skipping_pings(&socket, &mut pings).trim(),
        "STOPPING=1"
    );
    wait_exit(new);
    let _ = std::fs::remove_file(&path);
}
