//! What a worker asks to listen on, and how connections are shared.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use crate::proxy::Cidr;
use crate::Error;

/// The environment variable that overrides the cluster's balance mode
/// (not a listener's own), as Node reads `NODE_CLUSTER_SCHED_POLICY`: read
/// once per cluster, by its first `listen`.
pub const BALANCE_ENV: &str = "CLUSTER_THREAD_BALANCE";

/// The environment variable that overrides the cluster's
/// [`NetConfig::kernel_steering`]: `auto`, `off` or `required`, read once
/// per cluster, by its first `listen`.
pub const KERNEL_STEERING_ENV: &str = "CLUSTER_THREAD_KERNEL_STEERING";

/// Whether the kernel balances round-robin, least-connections and sticky
/// ([`NetConfig::kernel_steering`]). The balance mode is the user's choice;
/// this is the mechanism. With kernel steering every worker accepts on its
/// own socket of a `SO_REUSEPORT` group and an eBPF program chooses the
/// socket of each new connection, so no acceptor thread hands connections
/// on; it needs Linux and the privilege to load eBPF (root, or CAP_BPF
/// with CAP_NET_ADMIN).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum KernelSteering {
    /// The kernel where it can (Linux, eBPF allowed, a TCP address bound
    /// here or taken over from a process that steered), else the acceptor
    /// thread, with one info line in the log saying why. Always the
    /// acceptor for Unix sockets, inherited fds and systemd's sockets,
    /// PROXY protocol listeners (the client's address, sticky's key, is in
    /// the payload), and round-robin and least-connections with
    /// `max_connections_per_worker` (the acceptor gives a full worker's
    /// share to the others; the kernel would queue it behind that worker).
    /// The default.
    #[default]
    Auto,
    /// Always the acceptor thread.
    Off,
    /// As `Auto`, but where the kernel could steer and may not (no eBPF
    /// privilege, an old kernel) `listen` fails saying why, for a
    /// deployment that counts on it.
    Required,
}

impl KernelSteering {
    /// Every setting.
    pub const ALL: [KernelSteering; 3] = [
        KernelSteering::Auto,
        KernelSteering::Off,
        KernelSteering::Required,
    ];

    /// The setting's name, as `CLUSTER_THREAD_KERNEL_STEERING` spells it.
    pub fn name(self) -> &'static str {
        match self {
            KernelSteering::Auto => "auto",
            KernelSteering::Off => "off",
            KernelSteering::Required => "required",
        }
    }

    /// `value` read from `CLUSTER_THREAD_KERNEL_STEERING`: a setting's
    /// [`name`](Self::name) (case and surrounding blanks ignored), or an
    /// error naming the variable.
    pub fn from_env_value(value: &str) -> Result<KernelSteering, Error> {
        KernelSteering::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(value.trim()))
            .ok_or_else(|| Error::BadEnv {
                name: KERNEL_STEERING_ENV,
                value: value.to_owned(),
                expected: "auto, off or required",
            })
    }
}

impl fmt::Display for KernelSteering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How connections on a shared port are spread over the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Balance {
    /// One acceptor hands each connection to the next worker under its limit
    /// (Node's SCHED_RR). The default.
    #[default]
    RoundRobin,
    /// The acceptor hands each connection to the worker with the fewest active ones.
    LeastConnections,
    /// Every worker accepts on a clone of one socket; the kernel chooses
    /// (Node's SCHED_NONE).
    Os,
    /// Every worker has its own `SO_REUSEPORT` socket; the kernel hashes
    /// connections over them. Linux only (elsewhere: `Os`, with a warning).
    ReusePort,
    /// A client address always reaches the same live slot.
    Sticky,
}

impl Balance {
    /// Every mode, in the order of the docs.
    pub const ALL: [Balance; 5] = [
        Balance::RoundRobin,
        Balance::LeastConnections,
        Balance::Os,
        Balance::ReusePort,
        Balance::Sticky,
    ];

    /// The mode's name, as the macro and `CLUSTER_THREAD_BALANCE` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round-robin",
            Balance::LeastConnections => "least-connections",
            Balance::Os => "os",
            Balance::ReusePort => "reuseport",
            Balance::Sticky => "sticky",
        }
    }

    /// `value` read from `CLUSTER_THREAD_BALANCE`: a mode's [`name`](Self::name)
    /// (case and surrounding blanks ignored), or an error naming the variable.
    pub fn from_env_value(value: &str) -> Result<Balance, Error> {
        value.parse().map_err(|_| Error::BadEnv {
            name: BALANCE_ENV,
            value: value.to_owned(),
            expected: NAMES_EXPECTED,
        })
    }

    pub(crate) fn uses_acceptor(self) -> bool {
        matches!(
            self,
            Balance::RoundRobin | Balance::LeastConnections | Balance::Sticky
        )
    }
}

impl fmt::Display for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// [`Balance::ALL`]'s names, for errors (a `&'static str`, as `Error::BadEnv`
/// holds; a test checks it against [`Balance::name`]).
const NAMES_EXPECTED: &str = "round-robin, least-connections, os, reuseport or sticky";

/// The error of parsing a [`Balance`] name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownBalance;

impl fmt::Display for UnknownBalance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected {NAMES_EXPECTED}")
    }
}

impl std::error::Error for UnknownBalance {}

impl FromStr for Balance {
    type Err = UnknownBalance;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Balance::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(s.trim()))
            .ok_or(UnknownBalance)
    }
}

/// Whether workers share one port or each has its own.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub enum Ports {
    /// Every worker listens on the same address (connections shared).
    #[default]
    Shared,
    /// The worker in slot *i* listens on port + *i*.
    PerWorker,
    /// The worker in slot *i* listens on the port this function gives.
    PerWorkerWith(fn(slot: usize) -> u16),
}

/// What to listen on.
#[derive(Debug)]
#[non_exhaustive]
pub enum Listen {
    /// A TCP address; port 0 picks a random port, the same for every worker.
    Tcp(SocketAddr),
    /// A Unix-domain socket path (a stale socket file is replaced).
    Unix(PathBuf),
    /// The primary's open fd *n*, a listening socket (Node's `listen({fd})`).
    Fd(RawFd),
    /// A listener the worker uses directly, without the primary (Node's
    /// `listen(handle)`).
    Handle(std::net::TcpListener),
    /// The `n`-th socket systemd passed (0-based); needs
    /// [`SystemdSockets`](crate::SystemdSockets) given to the cluster as state.
    Systemd(usize),
    /// The socket systemd passed under this `FileDescriptorName=`.
    SystemdNamed(String),
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Tcp(a) => write!(f, "{a}"),
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
            Listen::Fd(fd) => write!(f, "fd {fd}"),
            Listen::Systemd(n) => write!(f, "systemd socket {n}"),
            Listen::SystemdNamed(name) => write!(f, "systemd socket {name:?}"),
            Listen::Handle(l) => match l.local_addr() {
                Ok(a) => write!(f, "handle {a}"),
                Err(_) => f.write_str("handle"),
            },
        }
    }
}

impl Listen {
    /// Parses `host:port`, `[v6]:port`, a bare port (all interfaces), or
    /// `unix:/path`.
    pub fn parse(spec: &str) -> Result<Listen, Error> {
        let bad = |reason| Error::BadAddress {
            spec: spec.to_owned(),
            reason,
        };
        let s = spec.trim();
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad("a unix socket needs a path: unix:/run/app.sock"));
            }
            return Ok(Listen::Unix(PathBuf::from(path)));
        }
        if let Ok(port) = s.parse::<u16>() {
            return Ok(Listen::Tcp(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                port,
            )));
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(Listen::Tcp(addr));
        }
        // `localhost:8000` and other names: the first address they resolve to.
        if s.contains(':') {
            if let Ok(mut addrs) = std::net::ToSocketAddrs::to_socket_addrs(s) {
                if let Some(addr) = addrs.next() {
                    return Ok(Listen::Tcp(addr));
                }
            }
        }
        Err(bad(
            "expected host:port, [ipv6]:port, a port number, or unix:/path",
        ))
    }

    /// Starts a [`ListenSpec`] with options.
    pub fn with(self) -> ListenSpec {
        ListenSpec::from(self)
    }
}

/// The options a listener takes, from its [`ListenSpec`] or else the
/// cluster's [`NetConfig`]: one set, one list of setters for both.
#[derive(Debug, Clone, Default)]
pub(crate) struct ListenOptions {
    pub(crate) balance: Option<Balance>,
    pub(crate) ports: Option<Ports>,
    pub(crate) max_connections_per_worker: Option<usize>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) proxy_protocol: Option<bool>,
    pub(crate) proxy_from: Option<Arc<[Cidr]>>,
}

impl ListenOptions {
    /// These options, where unset taken from `fallback`.
    pub(crate) fn or(self, fallback: ListenOptions) -> ListenOptions {
        ListenOptions {
            balance: self.balance.or(fallback.balance),
            ports: self.ports.or(fallback.ports),
            max_connections_per_worker: self
                .max_connections_per_worker
                .or(fallback.max_connections_per_worker),
            max_connections: self.max_connections.or(fallback.max_connections),
            proxy_protocol: self.proxy_protocol.or(fallback.proxy_protocol),
            proxy_from: self.proxy_from.or(fallback.proxy_from),
        }
    }
}

/// The setters of [`ListenOptions`], for a builder with an `options` field.
macro_rules! listen_option_setters {
    () => {
        /// The balance mode of a shared port (default round-robin;
        /// `CLUSTER_THREAD_BALANCE` overrides the cluster's, not a listener's).
        pub fn balance(mut self, balance: Balance) -> Self {
            self.options.balance = Some(balance);
            self
        }

        /// Shared (default) or per-worker ports.
        pub fn ports(mut self, ports: Ports) -> Self {
            self.options.ports = Some(ports);
            self
        }

        /// At most this many open connections per worker and listener (Node's
        /// `server.maxConnections`); more wait in the kernel's backlog. A
        /// connection counts from its accept (one waiting for the worker
        /// too), so a burst never overshoots it. Sticky: a client whose
        /// slot is full is held for that slot, and the socket accepts no
        /// more until the slot takes it (the rest wait in the backlog).
        pub fn max_connections_per_worker(mut self, n: usize) -> Self {
            self.options.max_connections_per_worker = Some(n);
            self
        }

        /// At most this many open connections per listener, all workers
        /// together, counted from just before each `accept(2)`: a burst
        /// never overshoots it; more wait in the kernel's backlog.
        pub fn max_connections(mut self, n: usize) -> Self {
            self.options.max_connections = Some(n);
            self
        }

        /// Whether connections start with a PROXY protocol header (v1 or
        /// v2, as HAProxy's `send-proxy` / `send-proxy-v2` write it; default
        /// no). Then the client it names is the connection's peer
        /// ([`Connection::peer_addr`](crate::Connection::peer_addr)),
        /// the key of sticky balance, and the client address `cluster-http`
        /// gives requests (it reads the header on the connection's own task,
        /// before TLS); a connection without a valid header within 5 s is
        /// closed and counted. Only for listeners behind a balancer that
        /// always sends one.
        pub fn proxy_protocol(mut self, on: bool) -> Self {
            self.options.proxy_protocol = Some(on);
            self
        }

        /// With [`proxy_protocol`](Self::proxy_protocol): only TCP clients
        /// in these networks (the load balancers) may connect; a connection
        /// from anyone else is closed at once, before any byte is read, and
        /// counted in `ListenerStats::proxy_rejected` (Unix-domain clients
        /// are not checked). Without it, anyone who can reach the port can
        /// claim any client address in a header.
        pub fn proxy_from<I: IntoIterator<Item = Cidr>>(mut self, networks: I) -> Self {
            self.options.proxy_from = Some(networks.into_iter().collect());
            self
        }
    };
}

/// A [`Listen`] target plus per-listener options that override the
/// cluster's [`NetConfig`].
#[derive(Debug)]
pub struct ListenSpec {
    pub(crate) target: Listen,
    pub(crate) options: ListenOptions,
}

impl From<Listen> for ListenSpec {
    fn from(target: Listen) -> Self {
        ListenSpec {
            target,
            options: ListenOptions::default(),
        }
    }
}

impl ListenSpec {
    listen_option_setters!();
}

/// Anything `listen` takes: `"0.0.0.0:8000"`, a port, a `SocketAddr`, a
/// [`Listen`] or a [`ListenSpec`].
pub trait ToListen {
    /// The spec, or why the text does not parse.
    fn to_listen(self) -> Result<ListenSpec, Error>;
}

impl ToListen for ListenSpec {
    fn to_listen(self) -> Result<ListenSpec, Error> {
        Ok(self)
    }
}

impl ToListen for Listen {
    fn to_listen(self) -> Result<ListenSpec, Error> {
        Ok(self.into())
    }
}

impl ToListen for &str {
    fn to_listen(self) -> Result<ListenSpec, Error> {
        Listen::parse(self).map(Into::into)
    }
}

impl ToListen for String {
    fn to_listen(self) -> Result<ListenSpec, Error> {
        self.as_str().to_listen()
    }
}

impl ToListen for SocketAddr {
    fn to_listen(self) -> Result<ListenSpec, Error> {
        Ok(Listen::Tcp(self).into())
    }
}

impl ToListen for u16 {
    fn to_listen(self) -> Result<ListenSpec, Error> {
        Ok(Listen::Tcp(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), self)).into())
    }
}

/// The cluster-wide listening defaults, given to the cluster as state:
/// `Cluster::builder().state(NetConfig::default().balance(Balance::Os))`.
#[derive(Debug, Clone)]
pub struct NetConfig {
    pub(crate) options: ListenOptions,
    pub(crate) backlog: i32,
    pub(crate) connection_cap: Option<usize>,
    pub(crate) kernel_steering: KernelSteering,
    pub(crate) quic_steering: crate::QuicSteering,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            options: ListenOptions::default(),
            backlog: 1024,
            connection_cap: None,
            kernel_steering: KernelSteering::Auto,
            quic_steering: crate::QuicSteering::default(),
        }
    }
}

impl NetConfig {
    listen_option_setters!();

    /// The listen backlog (default 1024).
    pub fn backlog(mut self, backlog: i32) -> Self {
        self.backlog = backlog;
        self
    }

    /// At most this many open connections in the whole cluster, every
    /// listener together (default: the soft `RLIMIT_NOFILE` minus a reserve
    /// of 128 fds, or of half the limit if it is under 256), as nginx's
    /// `worker_connections`. At the cap, connections are closed to admit
    /// new clients: first those without a whole request yet (silent, in
    /// their TLS handshake or request head), oldest first, then idle
    /// keep-alive ones, oldest first (`cluster-http` marks them); with
    /// none of either, new connections wait in the kernel's backlog.
    /// Under systemd, set `LimitNOFILE`: its default soft limit of 1,024
    /// gives a cap of 896.
    pub fn connection_cap(mut self, n: usize) -> Self {
        self.connection_cap = Some(n);
        self
    }

    /// Whether the kernel balances round-robin, least-connections and
    /// sticky, without the acceptor thread (default [`KernelSteering::Auto`]:
    /// where it can). `CLUSTER_THREAD_KERNEL_STEERING` overrides it.
    pub fn kernel_steering(mut self, steering: KernelSteering) -> Self {
        self.kernel_steering = steering;
        self
    }

    /// How datagrams of QUIC ports (`listen_quic`) find their worker
    /// (default [`QuicSteering::Cid`](crate::QuicSteering::Cid)).
    pub fn quic_steering(mut self, steering: crate::QuicSteering) -> Self {
        self.quic_steering = steering;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses() {
        assert!(matches!(Listen::parse("127.0.0.1:8000"), Ok(Listen::Tcp(a)) if a.port() == 8000));
        assert!(
            matches!(Listen::parse("8000"), Ok(Listen::Tcp(a)) if a == "0.0.0.0:8000".parse().unwrap())
        );
        assert!(matches!(Listen::parse("[::1]:0"), Ok(Listen::Tcp(a)) if a.is_ipv6()));
        assert!(
            matches!(Listen::parse("unix:/tmp/x.sock"), Ok(Listen::Unix(p)) if p == std::path::Path::new("/tmp/x.sock"))
        );
        let err = Listen::parse("nonsense").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid listen address \"nonsense\": expected host:port, [ipv6]:port, a port number, or unix:/path"
        );
    }

    #[test]
    fn balance_names_round_trip() {
        for b in Balance::ALL {
            assert_eq!(b.name().parse::<Balance>(), Ok(b));
        }
        assert!("random".parse::<Balance>().is_err());
    }

    #[test]
    fn all_has_every_mode_once() {
        // Exhaustive: a new mode does not compile here until it is in `ALL`.
        let position = |b: Balance| match b {
            Balance::RoundRobin => 0,
            Balance::LeastConnections => 1,
            Balance::Os => 2,
            Balance::ReusePort => 3,
            Balance::Sticky => 4,
        };
        for (i, b) in Balance::ALL.into_iter().enumerate() {
            assert_eq!(position(b), i, "{b:?}");
        }
    }

    #[test]
    fn the_expected_names_are_the_modes_names() {
        let names: Vec<&str> = Balance::ALL.iter().map(|b| b.name()).collect();
        let (last, rest) = names.split_last().unwrap();
        assert_eq!(NAMES_EXPECTED, format!("{} or {last}", rest.join(", ")));
    }

    #[test]
    fn kernel_steering_names_parse_and_others_name_the_variable() {
        for k in KernelSteering::ALL {
            assert_eq!(KernelSteering::from_env_value(k.name()).ok(), Some(k));
        }
        assert_eq!(
            KernelSteering::from_env_value(" OFF\n").ok(),
            Some(KernelSteering::Off)
        );
        let err = KernelSteering::from_env_value("yes").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid environment variable CLUSTER_THREAD_KERNEL_STEERING=\"yes\": \
             expected auto, off or required"
        );
    }

    #[test]
    fn an_env_value_is_a_name_or_an_error_naming_the_variable() {
        assert_eq!(
            Balance::from_env_value(" Sticky\n").ok(),
            Some(Balance::Sticky)
        );
        let err = Balance::from_env_value("round_robin").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid environment variable CLUSTER_THREAD_BALANCE=\"round_robin\": \
             expected round-robin, least-connections, os, reuseport or sticky"
        );
    }
}
