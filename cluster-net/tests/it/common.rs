//! A tiny server for the tests: every connection gets `<worker id>\n`; the
//! workers whose slot is in `hold` keep their connections open until the
//! client closes them, the others close at once.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use cluster_core::{Address, Cluster, ClusterEvent, Events, Worker};
use cluster_net::{stats, Listen, ListenSpec, NetConfig, WorkerExt};
pub use test_support::{eventually, free_port_run, until, DEADLINE};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// What each worker listens on.
pub type SpecFn = Arc<dyn Fn(&Worker) -> ListenSpec + Send + Sync>;

pub fn spec(s: &'static str) -> SpecFn {
    Arc::new(move |_| Listen::parse(s).unwrap().with())
}

/// How many workers have started accepting (a cluster state of `serve`).
#[derive(Default)]
pub struct Accepting(pub AtomicUsize);

/// One poll of `accept` (the connection, if one was there), which makes
/// the worker one that connections are given to (by the acceptor, by the
/// kernel's program, by a migrating worker); counted in the cluster's
/// [`Accepting`] state, if it has one.
pub async fn first_accept(
    w: &Worker,
    listener: &cluster_net::Listener,
) -> Option<cluster_net::Connection> {
    let conn = {
        let mut first = std::pin::pin!(listener.accept());
        std::future::poll_fn(|cx| match first.as_mut().poll(cx) {
            Poll::Ready(conn) => Poll::Ready(Some(conn)),
            Poll::Pending => Poll::Ready(None),
        })
        .await
    };
    if let Some(accepting) = w.state::<Accepting>() {
        accepting.0.fetch_add(1, Ordering::AcqRel);
    }
    conn
}

/// Waits until `workers` workers of `cluster` (with an [`Accepting`]
/// state) have polled `accept`.
pub async fn all_accepting(cluster: &Cluster, workers: usize) {
    let accepting = cluster.state::<Accepting>().expect("an Accepting state");
    eventually(
        || accepting.0.load(Ordering::Acquire) >= workers,
        "every worker accepting",
    )
    .await;
}

/// The clients whose connection a worker holds (accepted, greeting not
/// yet written), by their address: what a killed worker takes with it.
#[derive(Default)]
struct InHand(Mutex<HashSet<SocketAddr>>);

pub struct Server {
    pub cluster: Cluster,
    pub events: Events,
    pub addr: SocketAddr,
}

impl Server {
    /// The clients a worker accepted and has not answered: after a kill,
    /// the ones the killed worker held.
    pub fn in_hand(&self) -> HashSet<SocketAddr> {
        self.cluster
            .state::<InHand>()
            .map(|h| h.0.lock().unwrap().clone())
            .unwrap_or_default()
    }
}

pub async fn serve(workers: usize, net: NetConfig, spec: SpecFn, hold: &'static [usize]) -> Server {
    let cluster = Cluster::builder()
        .workers(workers)
        .signals(false)
        .state(net)
        .state(Accepting::default())
        .state(InHand::default())
        .build(move |w| {
            let spec = spec.clone();
            async move { serve_worker(w, spec, hold).await }
        })
        .unwrap();
    let mut events = cluster.events();
    cluster.start().unwrap();
    let mut addr = None;
    for _ in 0..workers {
        let a = until(&mut events, |e| match e {
            ClusterEvent::Listening { address, .. } => Some(address.clone()),
            _ => None,
        })
        .await;
        addr.get_or_insert(a);
    }
    // A worker that listens is not yet given connections: the acceptor
    // fills its inbox from its first accept on. Until every worker has
    // called it, a burst would all go to the others (and sticky would map
    // a client to another slot than later).
    all_accepting(&cluster, workers).await;
    let addr = match addr {
        Some(Address::Tcp(a)) => a,
        // Not TCP: the test knows its address.
        _ => SocketAddr::from(([0, 0, 0, 0], 0)),
    };
    Server {
        cluster,
        events,
        addr,
    }
}

/// The worker's loop. A `"die"` message makes it stop accepting, let its
/// connections finish, then panic (as `on_panic = "restart"` does).
pub async fn serve_worker(
    w: Worker,
    spec: SpecFn,
    hold: &'static [usize],
) -> Result<(), cluster_net::Error> {
    let listener = w.listen((spec)(&w)).await?;
    let id = w.id();
    let keep = hold.contains(&w.slot());
    let mut early = first_accept(&w, &listener).await;
    let in_hand = w.state::<InHand>();
    loop {
        tokio::select! {
            mut conn = async { match early.take() {
                Some(conn) => conn,
                None => listener.accept().await,
            } } => {
                if keep {
                    tokio::task::spawn_local(async move {
                        let _ = conn.write_all(format!("{id}\n").as_bytes()).await;
                        let mut sink = [0u8; 16];
                        let _ = conn.read(&mut sink).await;
                    });
                } else {
                    // Answered inline: a worker holds at most one connection
                    // at a time (what a kill may cost).
                    let peer = conn.peer_addr();
                    let hand = |held: bool| {
                        if let (Some(h), Some(p)) = (&in_hand, peer) {
                            let mut set = h.0.lock().unwrap();
                            if held { set.insert(p); } else { set.remove(&p); }
                        }
                    };
                    hand(true);
                    let _ = conn.write_all(format!("{id}\n").as_bytes()).await;
                    hand(false);
                }
            }
            m = w.recv() => {
                if m.downcast_ref::<&str>() == Some(&"die") {
                    for mut c in listener.close().await {
                        let _ = c.write_all(format!("{id}\n").as_bytes()).await;
                    }
                    // Let the connection tasks finish their writes.
                    for _ in 0..100 {
                        tokio::task::yield_now().await;
                    }
                    panic!("worker {id} told to die");
                }
            }
            () = w.disconnected() => {
                // As a draining server does: serve what was accepted for it.
                for mut c in listener.close().await {
                    let _ = c.write_all(format!("{id}\n").as_bytes()).await;
                }
                return Ok(());
            }
        }
    }
}

/// Connects, reads the greeting, and returns the worker id and the stream.
pub async fn hello(addr: SocketAddr) -> std::io::Result<(u64, BufReader<TcpStream>)> {
    hello_from(addr, None).await
}

pub async fn hello_from(
    addr: SocketAddr,
    local: Option<std::net::IpAddr>,
) -> std::io::Result<(u64, BufReader<TcpStream>)> {
    let stream = match local {
        None => TcpStream::connect(addr).await?,
        Some(ip) => {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(ip, 0))?;
            socket.connect(addr).await?
        }
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    tokio::time::timeout(DEADLINE, reader.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::other("no greeting before the deadline"))??;
    let id = line
        .trim()
        .parse()
        .map_err(|_| std::io::Error::other(format!("bad greeting {line:?}")))?;
    Ok((id, reader))
}

/// Reads until the server closes the connection.
pub async fn until_closed(mut s: BufReader<TcpStream>) {
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, s.read_to_end(&mut rest)).await;
}

/// Active connections per slot, from the primary's counters.
pub fn active_by_slot(cluster: &Cluster) -> Vec<usize> {
    let mut by_slot = vec![0; cluster.size()];
    for s in stats(cluster) {
        if s.slot < by_slot.len() {
            by_slot[s.slot] += s.active;
        }
    }
    by_slot
}
