//! The privilege drop (`ClusterBuilder::user`): started as root, the
//! process binds its sockets (a port below 1024 too) and, once the cluster
//! listens, every thread runs as `nobody`; it serves and reloads on the
//! sockets the primary keeps. Asked for by a process that is not root, it
//! is an error naming the setting, unless the process runs as that user
//! already. Each case runs in a child process (root here and in CI;
//! skipped with a notice otherwise).

use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::process::Stdio;

use cluster_core::{Address, Cluster, ClusterEvent, Error, Phase, USER_ENV};
use cluster_net::WorkerExt;
use nix::unistd::{Uid, User};
use test_support::{this_test, wait_timeout, DEADLINE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const NOBODY: u32 = 65534;

/// A port below 1024 free on 127.0.0.1 now (we are root here).
fn free_low_port() -> u16 {
    (900..1024)
        .rev()
        .find(|&p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        .expect("a free port below 1024 on 127.0.0.1")
}

/// The uid and gid lines (`Uid:\treal\teffective\tsaved\tfs`) of every
/// thread of this process.
fn threads_ids() -> Vec<(String, String)> {
    let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task");
    let mut ids = Vec::new();
    for task in tasks.flatten() {
        // A thread that ended meanwhile has no status to read.
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        let line = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|rest| rest.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_default()
        };
        ids.push((line("Uid:"), line("Gid:")));
    }
    ids
}

/// Every thread runs as `nobody` (real, effective, saved and fs ids).
fn assert_all_nobody(when: &str) {
    let nobody = User::from_name("nobody")
        .ok()
        .flatten()
        .expect("a nobody user");
    let (uid, gid) = (nobody.uid.as_raw(), nobody.gid.as_raw());
    let want = (
        format!("{uid} {uid} {uid} {uid}"),
        format!("{gid} {gid} {gid} {gid}"),
    );
    let ids = threads_ids();
    assert!(ids.len() > 2, "{when}: threads {ids:?}");
    assert!(
        ids.iter().all(|i| *i == want),
        "{when}: {ids:?}, want {want:?}"
    );
}

/// One request: the worker answers with its uid and slot.
async fn ask(addr: SocketAddr) -> String {
    let mut s = timeout(DEADLINE, TcpStream::connect(addr))
        .await
        .expect("connect within the deadline")
        .expect("connect");
    s.write_all(b"who\n").await.expect("write");
    let mut reply = String::new();
    timeout(DEADLINE, s.read_to_string(&mut reply))
        .await
        .expect("reply within the deadline")
        .expect("read");
    reply
}

/// As root: `user("nobody")`, two workers on port 0 and a port below 1024.
#[test]
#[ignore = "a child process: run by the tests of this module (test_support::this_test)"]
fn dropped_child() {
    let low = free_low_port();
    Cluster::builder()
        .workers(2)
        .signals(false)
        .user("nobody")
        .run_with_primary(
            move |w| async move {
                let any = w.listen("127.0.0.1:0").await?;
                let privileged = w.listen(format!("127.0.0.1:{low}").as_str()).await?;
                loop {
                    let mut c = tokio::select! {
                        c = any.accept() => c,
                        c = privileged.accept() => c,
                        () = w.disconnected() => return Ok::<_, cluster_net::Error>(()),
                    };
                    let reply = format!("uid {} slot {}\n", Uid::effective(), w.slot());
                    tokio::task::spawn_local(async move {
                        let _ = c.read(&mut [0u8; 8]).await;
                        let _ = c.write_all(reply.as_bytes()).await;
                    });
                }
            },
            move |cluster| async move {
                let mut events = cluster.events();
                let mut addrs = Vec::new();
                while addrs.len() < 2 {
                    let event = timeout(DEADLINE, events.recv()).await.expect("listening");
                    if let Some(ClusterEvent::Listening {
                        address: Address::Tcp(a),
                        ..
                    }) = event
                    {
                        if !addrs.contains(&a) {
                            addrs.push(a);
                        }
                    }
                }
                let mut phases = cluster.phases();
                let phase = timeout(DEADLINE, phases.wait_for(|p| *p >= Phase::Listening)).await;
                assert_eq!(phase.ok(), Some(Phase::Listening));
                assert_all_nobody("once listening");
                assert!(addrs.iter().any(|a| a.port() == low), "{addrs:?}");
                for &addr in &addrs {
                    let reply = ask(addr).await;
                    assert!(
                        reply.starts_with(&format!("uid {NOBODY} slot ")),
                        "{addr}: {reply:?}"
                    );
                }
                // New workers, as nobody, on the sockets the primary keeps
                // (the port below 1024 is not bound again).
                let reloaded = timeout(DEADLINE, cluster.reload()).await;
                assert!(matches!(reloaded, Ok(Ok(()))), "{reloaded:?}");
                assert_all_nobody("after a reload");
                for &addr in &addrs {
                    let reply = ask(addr).await;
                    assert!(
                        reply.starts_with(&format!("uid {NOBODY} slot ")),
                        "{addr}: {reply:?}"
                    );
                }
                println!("dropped child done: {addrs:?}");
                cluster.disconnect().await;
            },
        )
        .expect("the cluster ran and stopped");
}

/// As `nobody`: another user is refused at `build`, naming the setting
/// (or the variable, when `CLUSTER_THREAD_USER` is set); `nobody` itself
/// is nothing to switch.
#[test]
#[ignore = "a child process: run by the tests of this module (test_support::this_test)"]
fn unprivileged_child() {
    let build = |builder: cluster_core::ClusterBuilder| {
        builder
            .workers(1)
            .signals(false)
            .build(|_w| async {})
            .map(|_| ())
    };
    if let Ok(user) = std::env::var(USER_ENV) {
        let e = build(Cluster::builder().user("nobody"));
        let text = e
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(matches!(e, Err(Error::BadIdentity { .. })), "{e:?}");
        assert!(text.contains(&format!("`{USER_ENV} = {user:?}`")), "{text}");
        assert!(text.contains("needs root"), "{text}");
        println!("unprivileged child done: {text}");
        return;
    }
    for (builder, shown) in [
        (Cluster::builder().user("root"), "`user = \"root\"`"),
        (Cluster::builder().group("root"), "`group = \"root\"`"),
        (
            Cluster::builder().user("nobody").group("root"),
            "`group = \"root\"`",
        ),
    ] {
        let e = build(builder);
        let text = e
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(matches!(e, Err(Error::BadIdentity { .. })), "{e:?}");
        assert!(
            text.contains(shown) && text.contains("needs root"),
            "{text}"
        );
    }
    // A hot upgrade's new process of a dropped one: already nobody.
    let same = build(Cluster::builder().user("nobody"));
    assert!(same.is_ok(), "{same:?}");
    println!("unprivileged child done");
}

fn root() -> bool {
    Uid::effective().is_root()
}

/// Runs `child` of this module, as `nobody` if `as_nobody`, with `env`,
/// and checks it ran to its last line.
fn run_child(child: &str, as_nobody: bool, env: &[(&str, &str)]) {
    let mut command = this_test(&format!("privilege::{child}"));
    command
        .env_remove(USER_ENV)
        .env_remove(cluster_core::GROUP_ENV)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if as_nobody {
        command.uid(NOBODY).gid(NOBODY);
    }
    let mut process = command.spawn().expect("the test binary");
    let exited = wait_timeout(&mut process, DEADLINE).expect("wait for the child");
    if exited.is_none() {
        let _ = process.kill();
    }
    let out = process.wait_with_output().expect("the child's output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&format!("{} done", child.replace('_', " "))),
        "{child}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn as_root_every_thread_becomes_nobody_and_serves_and_reloads() {
    if !root() {
        eprintln!(
            "notice: as_root_every_thread_becomes_nobody_and_serves_and_reloads skipped: not root"
        );
        return;
    }
    run_child("dropped_child", false, &[]);
}

#[test]
fn not_root_another_user_is_an_error_naming_the_setting() {
    if !root() {
        eprintln!("notice: not_root_another_user_is_an_error_naming_the_setting skipped: not root (it runs a child as nobody)");
        return;
    }
    run_child("unprivileged_child", true, &[]);
    run_child("unprivileged_child", true, &[(USER_ENV, "daemon")]);
}
