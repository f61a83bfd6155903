//! Connection limits are exact under a burst, in every balance mode: a
//! connection counts from its accept, so however many clients connect at
//! once, no more than the limit are admitted, and each one that closes
//! admits exactly one more. Every worker holds its connections until the
//! client closes them; an admitted client gets its greeting.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::common::{eventually, hello_from, serve, spec, DEADLINE};
use cluster_net::{Balance, NetConfig};
use tokio::io::BufReader;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

type Client = JoinHandle<std::io::Result<(u64, BufReader<TcpStream>)>>;

/// How long nothing more may be admitted (a window in which an overshoot
/// would show: the acceptor takes a burst within a few milliseconds).
const WINDOW: Duration = Duration::from_millis(300);

/// The clients served (greeted) so far, taken out of `waiting`.
async fn served(waiting: &mut Vec<Client>) -> Vec<(u64, BufReader<TcpStream>)> {
    let (done, rest): (Vec<_>, Vec<_>) = std::mem::take(waiting)
        .into_iter()
        .partition(|c| c.is_finished());
    *waiting = rest;
    let mut out = Vec::new();
    for c in done {
        out.push(c.await.unwrap().expect("served, not refused"));
    }
    out
}

/// Admitted clients per worker id.
fn by_worker(held: &[(u64, BufReader<TcpStream>)]) -> HashMap<u64, usize> {
    let mut by = HashMap::new();
    for (id, _) in held {
        *by.entry(*id).or_default() += 1;
    }
    by
}

/// `clients` connect at once (from `from`, else 127.0.0.1) to 2 workers
/// with `net`; exactly `limit` are admitted, no worker gets more than
/// `per_worker`, `held` more are accepted and held back (sticky through
/// the acceptor, for a full slot), the rest wait in the kernel's backlog, and each close
/// admits exactly one more.
async fn exact(
    balance: Balance,
    net: NetConfig,
    (limit, per_worker, held_back): (usize, usize, usize),
    clients: usize,
    from: Option<IpAddr>,
) {
    let server = serve(2, net.balance(balance), spec("127.0.0.1:0"), &[0, 1]).await;
    let addr: SocketAddr = server.addr;
    // The kernel holds a full sticky slot's clients in that slot's backlog:
    // none is accepted to learn its address.
    let held_back = if cluster_net::stats(&server.cluster)
        .iter()
        .any(|s| s.kernel_steering)
    {
        0
    } else {
        held_back
    };
    let mut waiting: Vec<Client> = (0..clients)
        .map(|_| tokio::spawn(hello_from(addr, from)))
        .collect();
    eventually(
        || waiting.iter().filter(|c| c.is_finished()).count() >= limit,
        "the first clients admitted",
    )
    .await;
    tokio::time::sleep(WINDOW).await;
    let mut held = served(&mut waiting).await;
    assert_eq!(held.len(), limit, "{balance}: admitted at once");
    // The others were not accepted: they wait in the kernel's backlog.
    assert_eq!(
        test_support::accept_backlog(addr),
        clients - limit - held_back,
        "{balance}: accepted past the limit"
    );
    // Closing one admits exactly one more, twice.
    for round in 0..2 {
        drop(held.remove(0));
        eventually(
            || waiting.iter().any(|c| c.is_finished()),
            "one more admitted",
        )
        .await;
        tokio::time::sleep(WINDOW).await;
        let more = served(&mut waiting).await;
        assert_eq!(more.len(), 1, "{balance}: admitted after close {round}");
        held.extend(more);
    }
    let by = by_worker(&held);
    assert!(by.values().all(|n| *n <= per_worker), "{balance}: {by:?}");
    if balance == Balance::Sticky {
        // Every client here has one address: one slot serves them all.
        assert_eq!(by.len(), 1, "{balance}: a client moved: {by:?}");
    }
    // None is lost: closing them all serves every one left.
    drop(held);
    let end = tokio::time::Instant::now() + DEADLINE;
    while !waiting.is_empty() {
        assert!(
            tokio::time::Instant::now() < end,
            "{balance}: clients left waiting"
        );
        drop(served(&mut waiting).await);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.cluster.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_admits_exactly_the_limit_in_every_mode() {
    for balance in Balance::ALL {
        let net = NetConfig::default().max_connections(3);
        exact(balance, net, (3, 3, 0), 6, None).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_admits_exactly_the_cap_in_every_mode() {
    for balance in Balance::ALL {
        let net = NetConfig::default().connection_cap(3);
        exact(balance, net, (3, 3, 0), 6, None).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_worker_limit_admits_exactly_two_per_worker() {
    for balance in [Balance::RoundRobin, Balance::LeastConnections, Balance::Os] {
        let net = NetConfig::default().max_connections_per_worker(2);
        exact(balance, net, (4, 2, 0), 10, None).await;
    }
}

/// Reuseport: the kernel hashes each client to one worker's socket, so a
/// full worker's clients wait for it (the other may have fewer to serve);
/// neither ever gets more than its limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuseport_never_passes_the_per_worker_limit() {
    let net = NetConfig::default()
        .balance(Balance::ReusePort)
        .max_connections_per_worker(2);
    let server = serve(2, net, spec("127.0.0.1:0"), &[0, 1]).await;
    let mut waiting: Vec<Client> = (0..16)
        .map(|_| tokio::spawn(hello_from(server.addr, None)))
        .collect();
    eventually(
        || waiting.iter().any(|c| c.is_finished()),
        "a client admitted",
    )
    .await;
    tokio::time::sleep(WINDOW).await;
    let held = served(&mut waiting).await;
    let by = by_worker(&held);
    assert!(
        held.len() <= 4 && by.values().all(|n| *n <= 2),
        "reuseport: {by:?}"
    );
    drop(held);
    waiting.iter().for_each(JoinHandle::abort);
    server.cluster.disconnect().await;
}

/// Sticky: 20 clients of one address, a limit of 2 per worker: its slot
/// gets 2 and the others wait for that slot (the other worker gets none),
/// one more each time one closes: one accepted (to learn its address) and
/// held for the slot, the rest in the kernel's backlog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_holds_a_full_slots_clients_for_it() {
    let net = NetConfig::default().max_connections_per_worker(2);
    let from = Some(IpAddr::from([127, 0, 0, 9]));
    exact(Balance::Sticky, net, (2, 2, 1), 20, from).await;
}
