//! Socket hand-off between processes: the test binary re-runs itself as the
//! receiving process (the `#[ignore]`d `child` test, run with `--ignored` and
//! `HANDOFF_CHILD_SOCKET` set).

use std::io::{IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cluster_net::handoff::{self, HandoffError, Outgoing};
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use test_support::DEADLINE;
const CHILD_ENV: &str = "HANDOFF_CHILD_SOCKET";

/// A directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "cluster-handoff-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Accepts one connection on `listener`, waiting at most `DEADLINE`.
fn accept_within(listener: &UnixListener) -> UnixStream {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .expect("the child did not connect within the deadline");
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => return listener.accept().unwrap().0,
            Err(e) => panic!("poll: {e}"),
        }
    }
}

/// What the server at `address` says to a new connection.
fn served_line(address: &str) -> String {
    let mut text = String::new();
    if let Some(path) = address.strip_prefix("unix:") {
        let mut conn = UnixStream::connect(path).unwrap();
        conn.set_read_timeout(Some(DEADLINE)).unwrap();
        conn.read_to_string(&mut text).unwrap();
    } else {
        let mut conn = TcpStream::connect_timeout(&address.parse().unwrap(), DEADLINE).unwrap();
        conn.set_read_timeout(Some(DEADLINE)).unwrap();
        conn.read_to_string(&mut text).unwrap();
    }
    text
}

/// Waits for the child's exit, killing it at the deadline.
fn wait_for(child: std::process::Child) -> Output {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = test_support::try_signal(pid, libc::SIGKILL);
            panic!("child {pid} did not exit within {DEADLINE:?}");
        }
    }
}

fn show(output: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn listeners_move_to_another_process_which_serves_after_the_sender_lets_go() {
    let dir = TempDir::new("two-processes");
    let alpha = TcpListener::bind("127.0.0.1:0").unwrap();
    let beta = TcpListener::bind("127.0.0.1:0").unwrap();
    let gamma_path = dir.0.join("gamma.sock");
    let gamma = UnixListener::bind(&gamma_path).unwrap();
    let addresses = [
        ("alpha", alpha.local_addr().unwrap().to_string()),
        ("beta", beta.local_addr().unwrap().to_string()),
        ("gamma", format!("unix:{}", gamma_path.display())),
    ];

    let control_path = dir.0.join("control.sock");
    let control = UnixListener::bind(&control_path).unwrap();
    control.set_nonblocking(true).unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "handoff::child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &control_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let child_pid = child.id();
    let stream = accept_within(&control);
    stream.set_nonblocking(false).unwrap();

    let outgoing = [
        Outgoing::new("alpha", &addresses[0].1, &alpha),
        Outgoing::new("beta", &addresses[1].1, &beta),
        Outgoing::new("gamma", &addresses[2].1, &gamma),
    ];
    let sent = handoff::send(&stream, &outgoing, DEADLINE);
    if let Err(e) = sent {
        drop(stream);
        panic!("send failed: {e}\n{}", show(&wait_for(child)));
    }

    // Acknowledged: the child serves every socket (the parent never accepts).
    for (id, address) in &addresses {
        assert_eq!(
            served_line(address),
            format!("{id} {child_pid}\n"),
            "{address}"
        );
    }

    // The parent lets go of its copies; the child still serves.
    drop((alpha, beta, gamma));
    for (id, address) in &addresses {
        assert_eq!(
            served_line(address),
            format!("{id} {child_pid}\n"),
            "{address}"
        );
    }

    // Closing the control stream asks the child to exit.
    drop(stream);
    let output = wait_for(child);
    assert!(output.status.success(), "{}", show(&output));
    // Nobody holds the Unix socket any more.
    let refused = UnixStream::connect(&gamma_path).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
}

/// The receiving process: runs only when re-executed by the test above.
#[test]
#[ignore = "a child process: run by the tests of this module (test_support::this_test)"]
fn child() {
    let path =
        std::env::var_os(CHILD_ENV).expect("run by this module's tests, which set the socket");
    let stream = UnixStream::connect(Path::new(&path)).unwrap();
    let mut incoming = handoff::receive(stream, DEADLINE).unwrap();
    let ids: Vec<&str> = incoming.sockets().iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["alpha", "beta", "gamma"]);
    let pid = std::process::id();
    for id in ["alpha", "beta", "gamma"] {
        let socket = incoming.take(id).unwrap();
        let fd_flags = FdFlag::from_bits_retain(fcntl(&socket.fd, FcntlArg::F_GETFD).unwrap());
        assert!(
            fd_flags.contains(FdFlag::FD_CLOEXEC),
            "{id} is not close-on-exec"
        );
        let status = OFlag::from_bits_retain(fcntl(&socket.fd, FcntlArg::F_GETFL).unwrap());
        assert!(
            status.contains(OFlag::O_NONBLOCK),
            "{id} is not non-blocking"
        );
        let line = format!("{id} {pid}\n");
        let address = socket.address.clone();
        if let Some(path) = address.strip_prefix("unix:") {
            let listener = socket.into_unix_listener().unwrap();
            let local = listener.local_addr().unwrap();
            assert_eq!(local.as_pathname(), Some(Path::new(path)));
            listener.set_nonblocking(false).unwrap();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    let _ = conn.unwrap().write_all(line.as_bytes());
                }
            });
        } else {
            let listener = socket.into_tcp_listener().unwrap();
            assert_eq!(listener.local_addr().unwrap().to_string(), address);
            listener.set_nonblocking(false).unwrap();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    let _ = conn.unwrap().write_all(line.as_bytes());
                }
            });
        }
    }
    incoming.acknowledge().unwrap();
    // Serve until the parent closes the control stream.
    let (_, mut stream) = incoming.into_parts();
    stream.set_read_timeout(Some(DEADLINE * 2)).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
}

#[test]
fn duplicate_ids_are_refused_before_anything_is_sent() {
    let (a, b) = UnixStream::pair().unwrap();
    let one = TcpListener::bind("127.0.0.1:0").unwrap();
    let two = TcpListener::bind("127.0.0.1:0").unwrap();
    let err = handoff::send(
        &a,
        &[
            Outgoing::new("web", "127.0.0.1:1", &one),
            Outgoing::new("web", "127.0.0.1:2", &two),
        ],
        DEADLINE,
    )
    .unwrap_err();
    assert!(
        matches!(&err, HandoffError::DuplicateId { id } if id == "web"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "socket hand-off: duplicate id \"web\"");
    b.set_nonblocking(true).unwrap();
    let nothing = (&b).read(&mut [0u8; 16]).unwrap_err();
    assert_eq!(nothing.kind(), std::io::ErrorKind::WouldBlock);
}

#[test]
fn a_receiver_that_never_acknowledges_times_out() {
    let (a, b) = UnixStream::pair().unwrap();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let receiver = std::thread::spawn(move || {
        let incoming = handoff::receive(b, DEADLINE).unwrap();
        assert_eq!(incoming.sockets().len(), 1);
        // Hold the sockets, never acknowledge.
        let _ = done_rx.recv_timeout(DEADLINE);
        drop(incoming);
    });
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = handoff::send(&a, &[Outgoing::new("web", &address, &listener)], timeout).unwrap_err();
    assert!(started.elapsed() >= timeout);
    match &err {
        HandoffError::Timeout {
            timeout: t, what, ..
        } => {
            assert_eq!(*t, timeout);
            assert_eq!(*what, "the acknowledgement");
        }
        other => panic!("{other:?}"),
    }
    let shown = err.to_string();
    let pid = std::process::id();
    assert_eq!(
        shown,
        format!("socket hand-off with an unnamed Unix socket (pid {pid}): timed out after 300ms waiting for the acknowledgement")
    );
    done_tx.send(()).unwrap();
    receiver.join().unwrap();
}

#[test]
fn a_receiver_that_closes_without_acknowledging_fails_the_send_at_once() {
    let (a, b) = UnixStream::pair().unwrap();
    let receiver = std::thread::spawn(move || {
        drop(handoff::receive(b, DEADLINE).unwrap());
    });
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let started = Instant::now();
    let err = handoff::send(&a, &[Outgoing::new("web", "x", &listener)], DEADLINE).unwrap_err();
    assert!(started.elapsed() < DEADLINE);
    assert!(
        matches!(&err, HandoffError::Io { what: "receiving the acknowledgement", source, .. }
            if source.kind() == std::io::ErrorKind::UnexpectedEof),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .ends_with("connection closed after 0 of 8 bytes"),
        "{err}"
    );
    receiver.join().unwrap();
}

#[test]
fn received_sockets_are_checked_for_their_kind() {
    let (a, b) = UnixStream::pair().unwrap();
    let receiver = std::thread::spawn(move || {
        let mut incoming = handoff::receive(b, DEADLINE).unwrap();
        let udp = incoming.take("udp").unwrap();
        assert_eq!(udp.address, "udp 127.0.0.1");
        let err = udp.into_tcp_listener().unwrap_err();
        assert_eq!(
            err.to_string(),
            "handed-off socket \"udp\" is a non-listening AF_INET SOCK_DGRAM socket, not a listening TCP socket"
        );
        let err = incoming
            .take("tcp")
            .unwrap()
            .into_unix_listener()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "handed-off socket \"tcp\" is an AF_INET SOCK_STREAM socket, not a listening Unix socket"
        );
        assert!(incoming.take("tcp").is_none());
        assert!(incoming.sockets().is_empty());
        incoming.acknowledge().unwrap();
        // A second acknowledgement sends nothing more.
        incoming.acknowledge().unwrap();
    });
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    handoff::send(
        &a,
        &[
            Outgoing::new("udp", "udp 127.0.0.1", &udp),
            Outgoing::new("tcp", "tcp", &tcp),
        ],
        DEADLINE,
    )
    .unwrap();
    receiver.join().unwrap();
    // One acknowledgement only: after it, the receiver's end closed.
    assert_eq!((&a).read(&mut [0u8; 16]).unwrap(), 0);
}

#[test]
fn an_empty_hand_off_is_acknowledged() {
    let (a, b) = UnixStream::pair().unwrap();
    let receiver = std::thread::spawn(move || {
        let mut incoming = handoff::receive(b, DEADLINE).unwrap();
        assert!(incoming.sockets().is_empty());
        incoming.acknowledge().unwrap();
    });
    handoff::send(&a, &[], DEADLINE).unwrap();
    receiver.join().unwrap();
}

/// A peer that speaks something else: the receiver names what was wrong.
fn receive_from(bytes: &[u8], fds: &[i32]) -> HandoffError {
    let (a, b) = UnixStream::pair().unwrap();
    let rights = [nix::sys::socket::ControlMessage::ScmRights(fds)];
    let cmsgs: &[_] = if fds.is_empty() { &[] } else { &rights };
    nix::sys::socket::sendmsg::<()>(
        a.as_raw_fd(),
        &[IoSlice::new(bytes)],
        cmsgs,
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .unwrap();
    drop(a);
    handoff::receive(b, DEADLINE).unwrap_err()
}

#[test]
fn a_peer_speaking_something_else_is_a_protocol_error() {
    let err = receive_from(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", &[]);
    assert!(matches!(err, HandoffError::Protocol { .. }), "{err:?}");
    assert!(
        err.to_string()
            .ends_with("protocol error: bad magic \"GET \", expected \"CTH1\""),
        "{err}"
    );

    // A well-formed message announcing two sockets, with one fd.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut message = b"CTH1\0\0\0\x02\0\0\0\x0c".to_vec();
    message.extend_from_slice(b"\0\x01a\0\x01x\0\x01b\0\x01y");
    let err = receive_from(&message, &[listener.as_raw_fd()]);
    assert!(
        err.to_string()
            .ends_with("protocol error: 2 sockets announced but 1 file descriptors received"),
        "{err}"
    );

    // Too many sockets announced.
    let err = receive_from(b"CTH1\0\0\x01\0\0\0\0\0", &[]);
    assert!(
        err.to_string()
            .ends_with("256 sockets announced, at most 64"),
        "{err}"
    );

    // The connection closes in the middle of the header.
    let err = receive_from(b"CTH1\0\0", &[]);
    assert!(
        matches!(
            &err,
            HandoffError::Io {
                what: "receiving the sockets",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .ends_with("connection closed after 6 of 12 bytes"),
        "{err}"
    );
}

#[test]
fn a_header_split_across_writes_is_reassembled() {
    let (a, b) = UnixStream::pair().unwrap();
    let receiver = std::thread::spawn(move || handoff::receive(b, DEADLINE));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    // The fd with the first 3 bytes, the rest in later writes.
    let message = b"CTH1\0\0\0\x01\0\0\0\x08\0\x03web\0\x01x";
    let rights = [nix::sys::socket::ControlMessage::ScmRights(&[
        listener.as_raw_fd()
    ])];
    nix::sys::socket::sendmsg::<()>(
        a.as_raw_fd(),
        &[IoSlice::new(&message[..3])],
        &rights,
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .unwrap();
    (&a).write_all(&message[3..10]).unwrap();
    (&a).write_all(&message[10..]).unwrap();
    let incoming = receiver.join().unwrap().unwrap();
    let web = &incoming.sockets()[0];
    assert_eq!((web.id.as_str(), web.address.as_str()), ("web", "x"));
}

#[test]
fn a_silent_sender_times_the_receiver_out() {
    let (_a, b) = UnixStream::pair().unwrap();
    let err = handoff::receive(b, Duration::from_millis(100)).unwrap_err();
    assert!(
        matches!(
            &err,
            HandoffError::Timeout {
                what: "the sockets",
                ..
            }
        ),
        "{err:?}"
    );
}
