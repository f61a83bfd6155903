//! Out of file descriptors under a flood: the server backs off instead of
//! spinning, and serves again once descriptors are free.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cluster_core::{Address, Cluster, ClusterEvent};
use cluster_net::{Balance, NetConfig, WorkerExt};
use nix::sys::resource::{setrlimit, Resource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CHILD: &str = "CLUSTER_NET_EMFILE_CHILD";
use test_support::DEADLINE;
const FD_LIMIT: u64 = 64;

#[test]
#[ignore = "a child process: run by the tests of this module (test_support::this_test)"]
fn child() {
    let balance = std::env::var(CHILD).expect("run by this module's tests, which set the mode");
    let balance: Balance = balance.parse().unwrap();
    // Before any thread of the cluster: out of fds at FD_LIMIT.
    setrlimit(Resource::RLIMIT_NOFILE, FD_LIMIT, FD_LIMIT).unwrap();
    Cluster::builder()
        .workers(2)
        // Far above the fd limit: this test is about running out of fds
        // anyway (other files may take them); the default cap stays below.
        .state(
            NetConfig::default()
                .balance(balance)
                .connection_cap(1 << 20),
        )
        .run_with_primary(
            |w| async move {
                let l = w.listen("127.0.0.1:0").await?;
                loop {
                    tokio::select! {
                        mut c = l.accept() => {
                            // Hold every connection until the client closes it.
                            tokio::task::spawn_local(async move {
                                let _ = c.write_all(b"hi\n").await;
                                let _ = c.read(&mut [0u8; 8]).await;
                            });
                        }
                        () = w.disconnected() => return Ok::<_, cluster_net::Error>(()),
                    }
                }
            },
            |cluster| async move {
                // Once both workers listen: a worker started after the flood
                // would find no fd for its own runtime.
                let mut events = cluster.events();
                let mut listening = 0;
                while let Some(e) = events.recv().await {
                    if let ClusterEvent::Listening {
                        address: Address::Tcp(a),
                        ..
                    } = e
                    {
                        listening += 1;
                        if listening == 2 {
                            println!("listening on {a}");
                        }
                    }
                }
            },
        )
        .unwrap();
}

/// Kills the child if the test fails before it exits.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces): utime is 14th, stime 15th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn flood(balance: &str) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "emfile::child",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD, balance)
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let mut child = KillOnDrop(cmd.spawn().unwrap());
    let pid = child.0.id();
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let addr: SocketAddr = loop {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "child ended early");
        if let Some(a) = line
            .trim()
            .rsplit("listening on ")
            .next()
            .filter(|_| line.contains("listening on "))
        {
            break a.parse().unwrap();
        }
    };

    // Far more connections than the child has descriptors for.
    let held: Vec<TcpStream> = (0..3 * FD_LIMIT)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    let end = Instant::now() + DEADLINE;
    while open_fds(pid) < FD_LIMIT as usize - 1 {
        assert!(
            Instant::now() < end,
            "{balance}: the child never ran out of fds ({} open)",
            open_fds(pid)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Out of fds because of its limit, not by chance.
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let max_open = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok());
    assert_eq!(max_open, Some(FD_LIMIT), "{balance}: {limits}");
    // Out of fds with connections still waiting: measure its CPU for a second.
    let (t0, c0) = (Instant::now(), cpu_ticks(pid));
    std::thread::sleep(Duration::from_secs(1));
    let ticks_per_sec = 100.0; // USER_HZ on Linux
    let cpu = (cpu_ticks(pid) - c0) as f64 / ticks_per_sec / t0.elapsed().as_secs_f64();
    eprintln!(
        "{balance}: out of fds, CPU use {:.1}% of a core",
        cpu * 100.0
    );
    assert!(
        cpu < 0.5,
        "{balance}: {:.0}% of a core while out of fds: spinning",
        cpu * 100.0
    );

    // Free them all: the server recovers and serves a new client.
    drop(held);
    let end = Instant::now() + DEADLINE;
    loop {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 3];
        if s.read_exact(&mut buf).is_ok() && &buf == b"hi\n" {
            break;
        }
        assert!(Instant::now() < end, "{balance}: never served again");
    }
    test_support::signal(pid, libc::SIGTERM);
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{balance}: {status}");
}

#[test]
fn round_robin_backs_off_when_out_of_fds_and_recovers() {
    flood("round-robin");
}

#[test]
fn os_backs_off_when_out_of_fds_and_recovers() {
    flood("os");
}
