//! systemd's notification protocol, with a real `$NOTIFY_SOCKET`: the
//! `same_port` example says `READY=1` (and its `MAINPID`) once its workers
//! listen, and `STOPPING=1` when SIGTERM starts the drain.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{example, signal, DEADLINE};

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
    let end = std::time::Instant::now() + DEADLINE;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < end, "did not exit");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success());
    let _ = std::fs::remove_file(&path);
}
