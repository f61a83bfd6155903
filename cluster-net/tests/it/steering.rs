//! Kernel steering (`NetConfig::kernel_steering`): round-robin,
//! least-connections and sticky chosen by the group's eBPF program, every
//! worker accepting on its own socket; and the acceptor where this process
//! may not load eBPF (a child run as `nobody`).
//!
//! Where eBPF is refused (not root), the tests that need it skip with a
//! notice, unless `CLUSTER_THREAD_REQUIRE_TOOLS=1` (CI, as root).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;

use cluster_core::{Cluster, ClusterEvent, Worker};
use cluster_net::{stats, Balance, KernelSteering, NetConfig, WorkerExt};
use test_support::{eventually, until, DEADLINE};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// What the test's workers do, as cluster state.
#[derive(Default)]
struct Setup {
    /// The slots whose workers keep each connection open until the client
    /// closes it (the others close at once).
    hold: Vec<usize>,
    /// Workers that have polled `accept` once (their slot is live).
    accepting: AtomicUsize,
}

/// A worker: greets each connection with its slot. `"pause"` stops its
/// accepts (its socket stays in the group, its queue grows).
async fn worker(w: Worker) -> Result<(), cluster_net::Error> {
    let setup = w.state::<Setup>().expect("the test's setup");
    let listener = w.listen("127.0.0.1:0").await?;
    let slot = w.slot();
    let hold = setup.hold.contains(&slot);
    let mut early = {
        let mut first = std::pin::pin!(listener.accept());
        std::future::poll_fn(|cx| match first.as_mut().poll(cx) {
            Poll::Ready(conn) => Poll::Ready(Some(conn)),
            Poll::Pending => Poll::Ready(None),
        })
        .await
    };
    setup.accepting.fetch_add(1, Ordering::AcqRel);
    let mut paused = false;
    loop {
        tokio::select! {
            mut conn = async { match early.take() {
                Some(conn) => conn,
                None => listener.accept().await,
            } }, if !paused => {
                let greeting = format!("{slot}\n");
                if hold {
                    tokio::task::spawn_local(async move {
                        let _ = conn.write_all(greeting.as_bytes()).await;
                        let mut sink = [0u8; 16];
                        let _ = conn.read(&mut sink).await;
                    });
                } else {
                    let _ = conn.write_all(greeting.as_bytes()).await;
                }
            }
            m = w.recv() => paused |= m.downcast_ref::<&str>() == Some(&"pause"),
            () = w.disconnected() => {
                for mut c in listener.close().await {
                    let _ = c.write_all(format!("{slot}\n").as_bytes()).await;
                }
                return Ok(());
            }
        }
    }
}

struct Server {
    cluster: Cluster,
    addr: SocketAddr,
}

async fn serve(workers: usize, net: NetConfig, hold: &[usize]) -> Server {
    let cluster = Cluster::builder()
        .workers(workers)
        .signals(false)
        .state(net)
        .state(Setup {
            hold: hold.to_vec(),
            ..Setup::default()
        })
        .build(worker)
        .unwrap();
    let mut events = cluster.events();
    cluster.start().unwrap();
    let addr = until(&mut events, |e| match e {
        ClusterEvent::Listening {
            address: cluster_core::Address::Tcp(a),
            ..
        } => Some(*a),
        _ => None,
    })
    .await;
    let setup = cluster.state::<Setup>().unwrap();
    eventually(
        || setup.accepting.load(Ordering::Acquire) >= workers,
        "every worker accepting",
    )
    .await;
    Server { cluster, addr }
}

/// Whether the cluster's listeners are kernel-steered; false (after a
/// notice) in a run with `CLUSTER_THREAD_KERNEL_STEERING=off`, or where
/// this process may not load eBPF and need not.
fn steered(cluster: &Cluster, test: &str) -> bool {
    let all = stats(cluster);
    if all.iter().all(|s| s.kernel_steering) {
        return true;
    }
    let off = std::env::var(cluster_net::KERNEL_STEERING_ENV)
        .is_ok_and(|v| KernelSteering::from_env_value(&v).ok() == Some(KernelSteering::Off));
    if off {
        eprintln!("notice: {test} skipped: kernel steering is off in this run");
        return false;
    }
    let root = nix::unistd::Uid::effective().is_root();
    let required = std::env::var("CLUSTER_THREAD_REQUIRE_TOOLS").as_deref() == Ok("1");
    assert!(
        !root && !required,
        "{test}: not kernel-steered (root: {root}): {all:?}"
    );
    eprintln!("notice: {test} skipped: this process may not load eBPF");
    false
}

/// Connects (from `from`, else 127.0.0.1) and reads the greeting: the slot.
async fn hello(addr: SocketAddr, from: Option<IpAddr>) -> (usize, BufReader<TcpStream>) {
    let stream = match from {
        None => TcpStream::connect(addr).await.unwrap(),
        Some(ip) => {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::new(ip, 0)).unwrap();
            socket.connect(addr).await.unwrap()
        }
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    tokio::time::timeout(DEADLINE, reader.read_line(&mut line))
        .await
        .expect("a greeting before the deadline")
        .unwrap();
    let slot = line.trim().parse().unwrap_or_else(|_| panic!("{line:?}"));
    (slot, reader)
}

/// One connection, served and closed: its slot.
async fn once(addr: SocketAddr, from: Option<IpAddr>) -> usize {
    let (slot, mut s) = hello(addr, from).await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, s.read_to_end(&mut rest)).await;
    slot
}

fn active_by_slot(cluster: &Cluster, slots: usize) -> Vec<usize> {
    let mut by = vec![0; slots];
    for s in stats(cluster) {
        by[s.slot] += s.active;
    }
    by
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_in_the_kernel_is_exact() {
    const WORKERS: usize = 4;
    const CONNECTIONS: usize = 2000;
    let server = serve(WORKERS, NetConfig::default(), &[]).await;
    if steered(&server.cluster, "round_robin_in_the_kernel_is_exact") {
        let mut counts = [0usize; WORKERS];
        for _ in 0..CONNECTIONS {
            counts[once(server.addr, None).await] += 1;
        }
        let (min, max) = (counts.iter().min(), counts.iter().max());
        assert!(
            max.zip(min).is_some_and(|(max, min)| max - min <= 1),
            "{counts:?}"
        );
    }
    server.cluster.disconnect().await;
}

/// Slot 0 keeps 10 connections while the others' close: every new one goes
/// to the others until they hold as many, then they go round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_in_the_kernel_fills_the_others_first() {
    let net = NetConfig::default().balance(Balance::LeastConnections);
    let server = serve(3, net, &[0, 1, 2]).await;
    if steered(
        &server.cluster,
        "least_connections_in_the_kernel_fills_the_others_first",
    ) {
        let mut held: BTreeMap<usize, Vec<BufReader<TcpStream>>> = BTreeMap::new();
        for _ in 0..30 {
            let (slot, s) = hello(server.addr, None).await;
            held.entry(slot).or_default().push(s);
            // Each connection counts at its worker before the next arrives.
            let by = active_by_slot(&server.cluster, 3);
            let spread = by.iter().max().unwrap() - by.iter().min().unwrap();
            assert!(spread <= 1, "{by:?}");
        }
        // The others' clients leave; slot 0 holds its 10.
        held.retain(|&slot, _| slot == 0);
        eventually(
            || active_by_slot(&server.cluster, 3) == [10, 0, 0],
            "slots 1 and 2 idle",
        )
        .await;
        let mut got = [0usize; 3];
        for _ in 0..20 {
            let (slot, s) = hello(server.addr, None).await;
            got[slot] += 1;
            held.entry(slot).or_default().push(s);
        }
        assert_eq!(got, [0, 10, 10], "while slot 0 held more");
        for _ in 0..3 {
            let (slot, s) = hello(server.addr, None).await;
            got[slot] += 1;
            held.entry(slot).or_default().push(s);
        }
        assert_eq!(got, [1, 11, 11], "all even again: one each");
    }
    server.cluster.disconnect().await;
}

/// 16 client addresses: the slot of each, one connection each.
async fn slots_of_clients(addr: SocketAddr) -> Vec<usize> {
    let mut slots = Vec::new();
    for client in 1..=16u8 {
        slots.push(once(addr, Some(IpAddr::from([127, 0, 0, client]))).await);
    }
    slots
}

/// Sticky: each client stays on its slot; the kernel and the acceptor put
/// each client on the same slot (so a hot upgrade between the two paths
/// moves nobody); removing a slot moves only its clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_in_the_kernel_keeps_clients_and_moves_only_a_removed_slots() {
    let test = "sticky_in_the_kernel_keeps_clients_and_moves_only_a_removed_slots";
    let mut by_path = HashMap::new();
    for steering in [KernelSteering::Off, KernelSteering::Auto] {
        let net = NetConfig::default()
            .balance(Balance::Sticky)
            .kernel_steering(steering);
        let server = serve(4, net, &[]).await;
        if steering == KernelSteering::Auto && !steered(&server.cluster, test) {
            server.cluster.disconnect().await;
            return;
        }
        let first = slots_of_clients(server.addr).await;
        for _ in 0..3 {
            assert_eq!(slots_of_clients(server.addr).await, first, "{steering}");
        }
        let used: std::collections::HashSet<_> = first.iter().collect();
        assert!(used.len() >= 2, "{steering}: one slot for all: {first:?}");
        by_path.insert(steering, first.clone());
        if steering == KernelSteering::Auto {
            server.cluster.scale(3).await.unwrap();
            let after = slots_of_clients(server.addr).await;
            for (client, (before, now)) in first.iter().zip(&after).enumerate() {
                if *before == 3 {
                    assert_ne!(*now, 3, "client {client} still on the removed slot");
                } else {
                    assert_eq!(before, now, "client {client} of a remaining slot moved");
                }
            }
        }
        server.cluster.disconnect().await;
    }
    assert_eq!(
        by_path[&KernelSteering::Off],
        by_path[&KernelSteering::Auto],
        "the acceptor and the kernel disagree"
    );
}

/// Scale-down with 200 connections queued on the removed slot's socket
/// (its worker stopped accepting; round-robin kept sending it every
/// other connection): every one is served, with `tcp_migrate_req` at 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_down_loses_none_of_200_queued_connections() {
    let test = "scale_down_loses_none_of_200_queued_connections";
    let migrate_req = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req");
    if migrate_req.is_ok_and(|v| v.trim() == "1") {
        eprintln!("notice: {test} skipped: net.ipv4.tcp_migrate_req = 1 here");
        return;
    }
    let server = serve(2, NetConfig::default(), &[]).await;
    if steered(&server.cluster, test) {
        let removed = server
            .cluster
            .workers()
            .into_iter()
            .find(|w| w.slot() == 1)
            .unwrap();
        removed.send("pause").unwrap();
        // The pause is seen once slot 1 stops answering: connect until then
        // (those it answered are done).
        let addr = server.addr;
        let mut queued = Vec::new();
        while queued.len() < 200 {
            let stream = TcpStream::connect(addr).await.unwrap();
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            let answered = tokio::time::timeout(
                std::time::Duration::from_millis(50),
                reader.read_line(&mut line),
            )
            .await;
            match answered {
                Ok(_) => assert!(line.trim() == "0" || line.trim() == "1", "{line:?}"),
                Err(_) => queued.push(reader),
            }
        }
        assert!(
            test_support::accept_backlog(addr) >= 200,
            "the removed slot's queue"
        );
        server.cluster.scale(1).await.unwrap();
        for (i, mut reader) in queued.into_iter().enumerate() {
            let mut line = String::new();
            tokio::time::timeout(DEADLINE, reader.read_line(&mut line))
                .await
                .unwrap_or_else(|_| panic!("queued connection {i}: no greeting"))
                .unwrap_or_else(|e| panic!("queued connection {i}: {e}"));
            assert!(
                !line.is_empty(),
                "queued connection {i} was closed unserved"
            );
        }
    }
    server.cluster.disconnect().await;
}

/// Issue 24.3: without kernel steering, the one worker of a one-slot
/// cluster accepts itself; once another slot listens, the acceptor takes
/// over (and round-robin is exact again: a worker still accepting itself
/// would take more than its share).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_worker_accepts_itself_until_another_slot_listens() {
    for balance in [Balance::RoundRobin, Balance::Sticky] {
        let net = NetConfig::default()
            .balance(balance)
            .kernel_steering(KernelSteering::Off);
        let server = serve(1, net, &[]).await;
        for _ in 0..20 {
            assert_eq!(once(server.addr, None).await, 0, "{balance}");
        }
        let sticky = slots_of_clients(server.addr).await;
        assert!(sticky.iter().all(|&s| s == 0), "{balance}: {sticky:?}");
        server.cluster.scale(3).await.unwrap();
        let setup = server.cluster.state::<Setup>().unwrap();
        eventually(
            || setup.accepting.load(Ordering::Acquire) >= 3,
            "the new workers accepting",
        )
        .await;
        if balance == Balance::RoundRobin {
            let mut counts = [0usize; 3];
            for _ in 0..300 {
                counts[once(server.addr, None).await] += 1;
            }
            assert!(
                counts.iter().all(|&n| (99..=101).contains(&n)),
                "{balance}: {counts:?}"
            );
        } else {
            let first = slots_of_clients(server.addr).await;
            assert_eq!(slots_of_clients(server.addr).await, first, "{balance}");
            let used: std::collections::HashSet<_> = first.iter().collect();
            assert!(used.len() >= 2, "{balance}: {first:?}");
        }
        server.cluster.disconnect().await;
    }
}

/// `Required` where eBPF is refused: `listen` fails naming the address
/// and why. Run as `nobody` by the test below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process: run by the tests of this module (test_support::this_test)"]
async fn unprivileged_child() {
    let server = serve(2, NetConfig::default(), &[]).await;
    assert!(
        stats(&server.cluster).iter().all(|s| !s.kernel_steering),
        "kernel-steered as nobody"
    );
    let mut counts = [0usize; 2];
    for _ in 0..100 {
        counts[once(server.addr, None).await] += 1;
    }
    assert_eq!(counts, [50, 50], "the acceptor's round-robin");
    server.cluster.disconnect().await;

    #[derive(Default)]
    struct Failed(std::sync::Mutex<Option<String>>);
    let cluster = Cluster::builder()
        .workers(1)
        .signals(false)
        .state(NetConfig::default().kernel_steering(KernelSteering::Required))
        .state(Failed::default())
        .build(|w| async move {
            let shown = match w.listen("127.0.0.1:0").await {
                Ok(_) => "listen succeeded".to_owned(),
                Err(e) => e.to_string(),
            };
            if let Some(failed) = w.state::<Failed>() {
                *failed.0.lock().unwrap() = Some(shown.clone());
            }
            Err(shown)
        })
        .unwrap();
    let failed = cluster.state::<Failed>().unwrap();
    cluster.start().unwrap();
    // The worker's failed listen stops the cluster with it.
    let stopped = tokio::time::timeout(DEADLINE, cluster.wait()).await;
    assert!(matches!(stopped, Ok(Err(_))), "{stopped:?}");
    let shown = failed.0.lock().unwrap().clone().unwrap_or_default();
    assert!(
        shown.starts_with("kernel steering is required for 127.0.0.1:")
            && shown.contains("may not load eBPF"),
        "{shown}"
    );
    println!("unprivileged child done");
}

/// As `nobody`, where eBPF is refused: the balance modes fall back to the
/// acceptor, and `Required` is an error.
#[test]
fn as_nobody_the_acceptor_balances_and_required_fails() {
    use std::os::unix::process::CommandExt;
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("notice: as_nobody_the_acceptor_balances_and_required_fails skipped: not root");
        return;
    }
    let mut command = test_support::this_test("steering::unprivileged_child");
    command
        .uid(65534)
        .gid(65534)
        .env_remove(cluster_net::KERNEL_STEERING_ENV);
    let out = command.output().expect("the test binary, run as nobody");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("unprivileged child done"),
        "{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // The balance modes' own tests, through the acceptor.
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = std::process::Command::new(exe)
        .args(["balance::", "limits::", "--test-threads=2"])
        .uid(65534)
        .gid(65534)
        .output()
        .expect("the test binary, run as nobody");
    assert!(
        out.status.success(),
        "the balance tests as nobody: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
