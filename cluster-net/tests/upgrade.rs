//! Hot upgrade between two real processes: SIGQUIT makes the old one start a
//! new copy of itself and hand it the listening sockets; the old one drains
//! and exits 0; connections keep being served throughout.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use cluster_core::{Address, Cluster, ClusterEvent};
use cluster_net::upgrade::{upgrade_on_sigquit, Inherited};
use cluster_net::{Balance, NetConfig, WorkerExt};
use tokio::io::AsyncWriteExt;

const CHILD: &str = "CLUSTER_NET_UPGRADE_CHILD";
const DEADLINE: Duration = Duration::from_secs(30);

/// The server under test, in the child processes only: greets with its pid.
#[test]
fn child() {
    let Ok(balance) = std::env::var(CHILD) else {
        return;
    };
    let inherited = Inherited::from_env().unwrap();
    let upgraded = !inherited.is_empty();
    Cluster::builder()
        .workers(2)
        .state(NetConfig::default().balance(balance.parse::<Balance>().unwrap()))
        .state(inherited)
        .run_with_primary(
            |w| async move {
                let l = w.listen("127.0.0.1:0").await?;
                let pid = std::process::id();
                loop {
                    tokio::select! {
                        c = l.accept() => {
                            // Answered before the loop looks at a disconnect:
                            // an accepted connection is never dropped unanswered.
                            let Ok(mut c) = c else { continue };
                            let _ = c.write_all(format!("{pid}\n").as_bytes()).await;
                        }
                        () = w.disconnected() => {
                            // Connections the acceptor took but nobody got yet.
                            for mut c in l.close().await {
                                let _ = c.write_all(format!("{pid}\n").as_bytes()).await;
                            }
                            return Ok::<_, cluster_net::Error>(());
                        }
                    }
                }
            },
            move |cluster| async move {
                upgrade_on_sigquit(&cluster).unwrap();
                let mut events = cluster.events();
                let mut said = false;
                while let Some(e) = events.recv().await {
                    if let (
                        false,
                        ClusterEvent::Listening {
                            address: Address::Tcp(a),
                            ..
                        },
                    ) = (said, e)
                    {
                        println!(
                            "pid {} listening on {a} upgraded {upgraded}",
                            std::process::id()
                        );
                        said = true;
                        if let Some(inherited) = cluster.state::<Inherited>() {
                            inherited
                                .acknowledge_when_listening(&cluster)
                                .await
                                .unwrap();
                        }
                    }
                }
            },
        )
        .unwrap();
}

fn greet(addr: SocketAddr) -> std::io::Result<u32> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = String::new();
    s.read_to_string(&mut line)?;
    line.trim()
        .parse()
        .map_err(|_| std::io::Error::other(format!("bad greeting {line:?}")))
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

fn upgrade_under_load(balance: &'static str) {
    let mut old = Command::new(std::env::current_exe().unwrap())
        .args(["child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, balance)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Both processes write to this pipe: the new one inherits it.
    let (tx, lines) = mpsc::channel();
    let stdout = old.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains(" listening on ") && tx.send(line).is_err() {
                break;
            }
        }
    });
    let parse = |line: String| -> (u32, SocketAddr, bool) {
        let words: Vec<&str> = line[line.find("pid ").unwrap()..].split(' ').collect();
        (
            words[1].parse().unwrap(),
            words[4].parse().unwrap(),
            words[6] == "true",
        )
    };
    let (old_pid, addr, upgraded) = parse(lines.recv_timeout(DEADLINE).unwrap());
    assert_eq!((old_pid, upgraded), (old.id(), false));
    assert_eq!(greet(addr).unwrap(), old_pid);

    // Steady load across the upgrade.
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load: Vec<_> = (0..2)
        .map(|_| {
            let (stop, served, failed) = (stop.clone(), served.clone(), failed.clone());
            std::thread::spawn(move || {
                let mut pids = std::collections::BTreeSet::new();
                while !stop.load(Ordering::Relaxed) {
                    match greet(addr) {
                        Ok(pid) => {
                            pids.insert(pid);
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            eprintln!("{balance}: {e}");
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                pids
            })
        })
        .collect();
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(old.id() as i32, libc::SIGQUIT) }, 0);
    let (new_pid, new_addr, upgraded) = parse(lines.recv_timeout(DEADLINE).unwrap());
    assert_ne!(new_pid, old_pid);
    assert_eq!(
        (new_addr, upgraded),
        (addr, true),
        "the same socket, taken over"
    );

    // The old process drains and exits 0.
    let end = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(s) = old.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "the old process did not exit");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status}");
    let after = served.load(Ordering::Relaxed);
    let end = Instant::now() + DEADLINE;
    while served.load(Ordering::Relaxed) < after + 100 {
        assert!(Instant::now() < end, "no traffic after the upgrade");
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let pids: std::collections::BTreeSet<u32> =
        load.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert_eq!(greet(addr).unwrap(), new_pid);
    // SAFETY: kill(2) on the process our child started.
    unsafe { libc::kill(new_pid as i32, libc::SIGTERM) };
    let end = Instant::now() + DEADLINE;
    while alive(new_pid) {
        assert!(Instant::now() < end, "the new process did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (served, failed) = (
        served.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    eprintln!("{balance}: {served} served by {pids:?}, {failed} failed");
    assert_eq!(
        failed, 0,
        "{balance}: connections failed during the upgrade"
    );
    assert!(
        pids.contains(&old_pid) && pids.contains(&new_pid),
        "{pids:?}"
    );
}

#[test]
fn hot_upgrade_round_robin() {
    upgrade_under_load("round-robin");
}

#[test]
fn hot_upgrade_os() {
    upgrade_under_load("os");
}

#[test]
fn hot_upgrade_reuseport() {
    upgrade_under_load("reuseport");
}
