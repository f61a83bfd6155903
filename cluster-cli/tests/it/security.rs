//! Who may control a cluster, and what bad input does: another uid is
//! refused whatever the file modes say; an unsafe control directory stops
//! the program at start; garbage, an endless line and a crowd of idle
//! connections leave it serving and the command working.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use test_support::{get, Load};

use crate::common::{cli, have, same_port, scratch, App};

fn socket_of(app: &App) -> std::path::PathBuf {
    app.dir.join(format!("same_port-{}.sock", app.pid()))
}

#[test]
fn another_uid_is_refused_and_nothing_changes() {
    if !have(
        nix::unistd::geteuid().is_root(),
        "root (to run a peer as nobody)",
    ) {
        return;
    }
    let app = App::start("peer", &["--workers", "2"]);
    // File modes alone would let this peer in: a link to the socket where
    // anyone may reach it, the socket made writable by all. Only the peer
    // check stands between it and the cluster.
    let open = scratch("peer-open");
    std::fs::create_dir_all(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let link = open.join("same_port-1.sock");
    std::fs::hard_link(socket_of(&app), &link).unwrap();
    std::fs::set_permissions(&link, std::fs::Permissions::from_mode(0o666)).unwrap();
    for args in [&["scale", "1"][..], &["stop"], &["ls"]] {
        let out = cli(args)
            .arg("--socket")
            .arg(&link)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("refused: uid 65534 may not control"), "{err}");
    }
    assert_eq!(app.slots(), [0, 1], "nothing changed");
    assert_eq!(get(app.addr, "/").unwrap().status, 200);
    std::fs::remove_dir_all(&open).unwrap();
}

#[test]
fn a_control_directory_others_may_enter_is_refused_at_start() {
    let dir = scratch("loose");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(same_port())
        .args(["--workers", "1", "--port", "0"])
        .env("CLUSTER_THREAD_CONTROL", &dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("control directory {} refused", dir.display()))
            && err.contains("0755"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "no socket made"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Reads what the socket sends until it closes; panics if it stays open.
fn read_to_close(s: &mut UnixStream, within: Duration) -> String {
    s.set_read_timeout(Some(within)).unwrap();
    let started = Instant::now();
    let mut text = Vec::new();
    match s.read_to_end(&mut text) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("not closed after {:?}: {e}", started.elapsed()),
    }
    String::from_utf8_lossy(&text).into_owned()
}

#[test]
fn garbage_endless_lines_and_idle_connections_leave_it_serving() {
    let app = App::start("garbage", &["--workers", "2"]);
    let path = socket_of(&app);
    let load = Load::start(app.addr, 2, true);
    load.wait_for_more(50);
    // 1,000 lines of garbage, ten per connection: each connection gets one
    // error line and is closed.
    for round in 0..100 {
        let mut s = UnixStream::connect(&path).unwrap();
        let mut garbage = Vec::new();
        for i in 0..10 {
            match (round + i) % 4 {
                0 => garbage.extend_from_slice(b"hello\n"),
                1 => garbage.extend_from_slice(b"{\"version\":1,\"command\":\"dance\"}\n"),
                2 => garbage.extend_from_slice(b"\xff\xfe\x00\n"),
                _ => garbage.extend_from_slice(b"[1,2,3]\n"),
            }
        }
        let _ = s.write_all(&garbage);
        let reply = read_to_close(&mut s, Duration::from_secs(5));
        assert_eq!(reply.lines().count(), 1, "{reply}");
        assert!(reply.contains("\"type\":\"error\""), "{reply}");
    }
    // An endless line, fast: cut off past 64 KiB.
    let mut s = UnixStream::connect(&path).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let chunk = vec![b'x'; 16 * 1024];
    let mut refused = false;
    for _ in 0..64 {
        if s.write_all(&chunk).is_err() {
            refused = true;
            break;
        }
    }
    assert!(refused, "1 MiB without a newline was taken");
    // An endless line, slow: cut off within a second of its start.
    let mut s = UnixStream::connect(&path).unwrap();
    s.write_all(b"{\"version\":1,").unwrap();
    let reply = read_to_close(&mut s, Duration::from_secs(5));
    assert!(reply.contains("not finished within 1s"), "{reply}");
    // 200 idle connections: the command still works (those beyond the
    // limit are told `busy` and it retries until the idle ones are closed).
    let idle: Vec<UnixStream> = (0..200)
        .map(|_| UnixStream::connect(&path).unwrap())
        .collect();
    let out = app.ok(&["ls", "--json"]);
    assert!(out.contains("\"type\":\"status\""), "{out}");
    for mut s in idle {
        read_to_close(&mut s, Duration::from_secs(10));
    }
    load.wait_for_more(50);
    let (ok, failed, closed) = load.finish();
    assert!(ok > 0);
    assert_eq!((failed, closed), (0, 0));
    assert_eq!(app.slots(), [0, 1]);
}
