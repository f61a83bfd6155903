//! Ports for tests that cannot bind port 0.

/// A base port with `n` free ports after it, below the kernel's ephemeral
/// range (where no test's client or port-0 socket can take them meanwhile):
/// per-worker ports need base + slot, so port 0 cannot serve here.
pub fn free_port_run(n: u16) -> u16 {
    let first_ephemeral: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let (low, high) = (
        first_ephemeral.saturating_sub(12_000).max(1024),
        first_ephemeral - n,
    );
    let mut seed = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos().into());
    for _ in 0..200 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let base = low + (seed % u64::from(high - low)) as u16;
        if (0..n).all(|i| std::net::TcpListener::bind(("0.0.0.0", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no run of {n} free ports below {first_ephemeral}");
}

/// Connections waiting in the kernel's accept queues of the TCP sockets
/// listening on `addr`'s port (IPv4): those nobody has accepted. For a
/// listening socket, `rx_queue` in `/proc/net/tcp` is its accept backlog.
pub fn accept_backlog(addr: std::net::SocketAddr) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let port = format!(":{:04X}", addr.port());
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let listening = fields.get(3) == Some(&"0A") && fields.get(1)?.ends_with(&port);
            let rx = fields.get(4)?.split(':').nth(1)?;
            listening.then(|| usize::from_str_radix(rx, 16).ok())?
        })
        .sum()
}
