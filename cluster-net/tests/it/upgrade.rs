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
use cluster_net::{Balance, ClusterBuilderExt, NetConfig, WorkerExt};
use tokio::io::AsyncWriteExt;

const CHILD: &str = "CLUSTER_NET_UPGRADE_CHILD";
use test_support::DEADLINE;
/// A file whose presence makes the next new process exit at once.
const FAIL_ONCE: &str = "CLUSTER_NET_UPGRADE_FAIL_ONCE";
/// How long a new process waits before taking the sockets over.
const STALL_MS: &str = "CLUSTER_NET_UPGRADE_STALL_MS";

/// The server under test, in the child processes only: greets with its pid.
#[test]
#[ignore = "a child process: run by the tests of this module (test_support::this_test)"]
fn child() {
    let balance = std::env::var(CHILD).expect("run by this module's tests, which set the mode");
    let upgraded = std::env::var_os(cluster_net::upgrade::UPGRADE_ENV).is_some();
    if upgraded {
        // A new process that fails once (the file is its marker) or is slow
        // to take the sockets over, as the test asks.
        if let Some(marker) = std::env::var_os(FAIL_ONCE) {
            if std::fs::remove_file(marker).is_ok() {
                std::process::exit(3);
            }
        }
        if let Some(ms) = std::env::var(STALL_MS).ok().and_then(|v| v.parse().ok()) {
            std::thread::sleep(Duration::from_millis(ms));
        }
    }
    Cluster::builder()
        .workers(2)
        .state(NetConfig::default().balance(balance.parse::<Balance>().unwrap()))
        .hot_upgrade()
        .unwrap()
        .run_with_primary(
            |w| async move {
                let l = w.listen("127.0.0.1:0").await?;
                // A QUIC port of the same number, held for the worker's life.
                let _quic = match l.local_addr() {
                    Address::Tcp(a) => Some(w.listen_quic(*a)?),
                    _ => None,
                };
                let pid = std::process::id();
                loop {
                    tokio::select! {
                        mut c = l.accept() => {
                            // Answered before the loop looks at a disconnect:
                            // an accepted connection is never dropped unanswered.
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

/// The old process, started as the test's child, and the `listening`
/// lines that it and the processes it starts print (they share its stdout).
struct Old {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

/// A `listening` line: pid, address, whether that process was upgraded.
fn parse(line: &str) -> (u32, SocketAddr, bool) {
    let words: Vec<&str> = line[line.find("pid ").unwrap()..].split(' ').collect();
    (
        words[1].parse().unwrap(),
        words[4].parse().unwrap(),
        words[6] == "true",
    )
}

impl Old {
    fn start(balance: &str, env: &[(&str, &std::ffi::OsStr)]) -> Old {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "upgrade::child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, balance)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains(" listening on ") && tx.send(line).is_err() {
                    break;
                }
            }
        });
        Old { child, lines }
    }

    fn next_listening(&self) -> (u32, SocketAddr, bool) {
        parse(&self.lines.recv_timeout(DEADLINE).unwrap())
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn quit(&self) {
        test_support::signal(self.pid(), libc::SIGQUIT);
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        test_support::wait_exit(&mut self.child, "the old process")
    }
}

impl Drop for Old {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Clients greeting the server in a loop until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<std::collections::BTreeSet<u32>>>,
}

impl Load {
    fn start(addr: SocketAddr, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let threads = (0..clients)
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
                                eprintln!("{addr}: {e}");
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    pids
                })
            })
            .collect();
        Load {
            stop,
            served,
            failed,
            threads,
        }
    }

    /// Waits for `n` more answers.
    fn more(&self, n: usize) {
        let after = self.served.load(Ordering::Relaxed);
        let end = Instant::now() + DEADLINE;
        while self.served.load(Ordering::Relaxed) < after + n {
            assert!(Instant::now() < end, "no traffic");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops; returns (served, failed, pids that answered).
    fn finish(self) -> (usize, usize, std::collections::BTreeSet<u32>) {
        self.stop.store(true, Ordering::Relaxed);
        let pids = self
            .threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        (
            self.served.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            pids,
        )
    }
}

fn terminate(pid: u32) {
    let _ = test_support::try_signal(pid, libc::SIGTERM);
    let end = Instant::now() + DEADLINE;
    while alive(pid) {
        assert!(Instant::now() < end, "process {pid} did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn upgrade_under_load(balance: &'static str) {
    let mut old = Old::start(balance, &[]);
    let (old_pid, addr, upgraded) = old.next_listening();
    assert_eq!((old_pid, upgraded), (old.pid(), false));
    assert_eq!(greet(addr).unwrap(), old_pid);

    let load = Load::start(addr, 2);
    old.quit();
    let (new_pid, new_addr, upgraded) = old.next_listening();
    assert_ne!(new_pid, old_pid);
    assert_eq!(
        (new_addr, upgraded),
        (addr, true),
        "the same socket, taken over"
    );
    // The old process drains and exits 0.
    let status = old.wait_exit();
    assert!(status.success(), "{status}");
    load.more(100);
    let (served, failed, pids) = load.finish();
    assert_eq!(greet(addr).unwrap(), new_pid);
    terminate(new_pid);
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

/// The processes whose sockets the attacker looks at: `pid` and its children.
fn family(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // The fields after the command name: state, then the parent's pid.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(p);
        }
    }
    out
}

/// Every named (path or abstract) Unix socket that `pids` hold, from
/// `/proc/<pid>/fd` and `/proc/net/unix`.
fn named_unix_sockets(pids: &[u32]) -> Vec<(u64, String)> {
    let mut inodes = std::collections::HashSet::new();
    for pid in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Some(inode) = std::fs::read_link(fd.path()).ok().and_then(|l| {
                l.to_str()?
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .parse::<u64>()
                    .ok()
            }) {
                inodes.insert(inode);
            }
        }
    }
    let table = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let inode = fields.get(6)?.parse::<u64>().ok()?;
            let path = fields.get(7)?;
            inodes.contains(&inode).then(|| (inode, path.to_string()))
        })
        .collect()
}

/// Connects to a named Unix socket as another local user could and counts
/// the fds it is sent within a moment.
fn steal(path: &str) -> usize {
    use std::os::linux::net::SocketAddrExt;
    let addr = match path.strip_prefix('@') {
        Some(name) => std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()),
        None => std::os::unix::net::SocketAddr::from_pathname(path),
    };
    let Ok(stream) = addr.and_then(|a| std::os::unix::net::UnixStream::connect_addr(&a)) else {
        return 0;
    };
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 64]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let Ok(msg) = nix::sys::socket::recvmsg::<()>(
        std::os::fd::AsRawFd::as_raw_fd(&stream),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::empty(),
    ) else {
        return 0;
    };
    let mut stolen = 0;
    for cmsg in msg.cmsgs().into_iter().flatten() {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = cmsg {
            stolen += fds.len();
        }
    }
    stolen
}

/// An attacker in another process watches for every Unix socket the
/// server binds during the upgrade and connects at once: it must get no
/// socket, and the upgrade must still complete with no connection lost.
#[test]
fn no_other_process_can_take_the_sockets_during_an_upgrade() {
    let mut old = Old::start("round-robin", &[]);
    let (old_pid, addr, _) = old.next_listening();
    let load = Load::start(addr, 2);
    let watching = Arc::new(AtomicBool::new(true));
    let attacker = {
        let watching = watching.clone();
        std::thread::spawn(move || {
            let (mut tried, mut stolen) = (std::collections::HashSet::new(), 0);
            while watching.load(Ordering::Relaxed) {
                for (inode, path) in named_unix_sockets(&family(old_pid)) {
                    if tried.insert(inode) {
                        stolen += steal(&path);
                    }
                }
            }
            (tried.len(), stolen)
        })
    };
    old.quit();
    let (new_pid, new_addr, upgraded) = old.next_listening();
    assert_eq!((new_addr, upgraded), (addr, true));
    assert!(old.wait_exit().success());
    watching.store(false, Ordering::Relaxed);
    let (tried, stolen) = attacker.join().unwrap();
    load.more(50);
    let (served, failed, pids) = load.finish();
    terminate(new_pid);
    eprintln!("attacker tried {tried} named sockets, got {stolen} fds; {served} served by {pids:?}, {failed} failed");
    assert_eq!(stolen, 0, "a local process took sockets during the upgrade");
    assert_eq!(failed, 0);
    assert!(pids.contains(&new_pid), "{pids:?}");
}

/// A second SIGQUIT while an upgrade runs starts no other process; the
/// upgrade completes.
#[test]
fn a_second_sigquit_during_an_upgrade_is_refused() {
    let mut old = Old::start("os", &[(STALL_MS, "1500".as_ref())]);
    let (old_pid, addr, _) = old.next_listening();
    old.quit();
    // The first new process is up (and stalls before taking the sockets).
    let end = Instant::now() + DEADLINE;
    while family(old_pid).len() < 2 {
        assert!(Instant::now() < end, "no new process started");
        std::thread::sleep(Duration::from_millis(5));
    }
    old.quit();
    old.quit();
    let mut most = 0;
    let (new_pid, new_addr, _) = loop {
        most = most.max(family(old_pid).len() - 1);
        if let Ok(line) = old.lines.recv_timeout(Duration::from_millis(5)) {
            break parse(&line);
        }
    };
    assert_eq!(new_addr, addr);
    assert!(old.wait_exit().success());
    assert_eq!(greet(addr).unwrap(), new_pid);
    terminate(new_pid);
    assert_eq!(most, 1, "new processes started at once");
}

/// A new process that dies is reaped; the old one serves on and upgrades
/// again on the next SIGQUIT.
#[test]
fn a_failed_upgrade_leaves_the_old_process_serving() {
    let marker = std::env::temp_dir().join(format!(
        "cluster-net-upgrade-fail-once-{}",
        std::process::id()
    ));
    std::fs::write(&marker, b"").unwrap();
    let mut old = Old::start("round-robin", &[(FAIL_ONCE, marker.as_os_str())]);
    let (old_pid, addr, _) = old.next_listening();
    let load = Load::start(addr, 2);
    old.quit();
    // The first new process exits (it removes the marker), is reaped.
    let end = Instant::now() + DEADLINE;
    while marker.exists() || family(old_pid).len() > 1 {
        assert!(
            Instant::now() < end,
            "the failed new process was not reaped"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    load.more(50);
    assert_eq!(greet(addr).unwrap(), old_pid, "the old process serves on");
    old.quit();
    let (new_pid, _, upgraded) = old.next_listening();
    assert!(upgraded);
    assert!(old.wait_exit().success());
    let (_, failed, pids) = load.finish();
    terminate(new_pid);
    assert_eq!(failed, 0);
    assert!(pids.contains(&new_pid), "{pids:?}");
}

/// The inodes of the UDP sockets bound to `port` on this machine.
fn udp_inodes(port: u16) -> std::collections::BTreeSet<u64> {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap();
    let port = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(1)?.ends_with(&port)).then(|| fields.get(9)?.parse().ok())?
        })
        .collect()
}

#[test]
fn a_hot_upgrade_hands_the_quic_sockets_over_as_they_are() {
    let mut old = Old::start("round-robin", &[]);
    let (old_pid, addr, _) = old.next_listening();
    // One socket per slot, bound once both workers have listened.
    let end = Instant::now() + DEADLINE;
    let before = loop {
        let inodes = udp_inodes(addr.port());
        if inodes.len() == 2 {
            break inodes;
        }
        assert!(Instant::now() < end, "{inodes:?}");
        std::thread::sleep(Duration::from_millis(10));
    };
    old.quit();
    let (new_pid, _, upgraded) = old.next_listening();
    assert!(upgraded && new_pid != old_pid);
    assert!(old.wait_exit().success());
    // The new process reads the very sockets (their kernel indices, and the
    // program on their group, unchanged); none was bound anew.
    assert_eq!(udp_inodes(addr.port()), before);
    terminate(new_pid);
}
