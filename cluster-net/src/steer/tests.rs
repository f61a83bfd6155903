//! Kernel steering on real reuseport groups on loopback, with real TCP
//! clients: each test binds port 0 once, the other members bind that port,
//! and counts which member the kernel gave each connection to.
//!
//! Tests that need eBPF skip with a notice when this process may not load
//! it, unless `CLUSTER_THREAD_REQUIRE_TOOLS=1` (CI, as root), where they fail.

#![allow(clippy::print_stderr)]

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Instant;

use socket2::{Domain, Socket, Type};
use test_support::{eventually_blocking, DEADLINE};

use super::*;

/// Whether eBPF tests run here: skips (with a notice) only for want of
/// the privilege, and then panics if they must run.
fn ebpf(test: &str) -> bool {
    match probe() {
        Ok(()) => true,
        Err(why) if !why.denied => panic!("{test}: {why}"),
        Err(why) if std::env::var("CLUSTER_THREAD_REQUIRE_TOOLS").as_deref() == Ok("1") => {
            panic!("{test}: CLUSTER_THREAD_REQUIRE_TOOLS=1 but {why}")
        }
        Err(why) => {
            eprintln!("notice: {test} skipped: {why}");
            false
        }
    }
}

/// `n` listening reuseport members on one port of `ip`, non-blocking; the
/// group's index of each is its position here (they listen in order).
fn group(ip: IpAddr, n: usize) -> io::Result<Vec<TcpListener>> {
    let mut addr = SocketAddr::new(ip, 0);
    let mut members = Vec::new();
    for _ in 0..n {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        s.set_reuse_port(true)?;
        if ip.is_ipv6() {
            // `::` also takes IPv4 (as `::ffff:a.b.c.d`); `::1` only IPv6.
            s.set_only_v6(!ip.is_unspecified())?;
        }
        s.bind(&addr.into())?;
        s.listen(1024)?;
        s.set_nonblocking(true)?;
        addr = s.local_addr()?.as_socket().expect("an IP address");
        members.push(s.into());
    }
    Ok(members)
}

fn addr(group: &[TcpListener]) -> SocketAddr {
    group[0].local_addr().unwrap()
}

/// A steering of `mode` over `group`, every member in its slot and live.
fn steer(mode: Mode, group: &[TcpListener]) -> Steering {
    let s = Steering::new(mode).unwrap_or_else(|e| panic!("{e}"));
    for (slot, member) in group.iter().enumerate() {
        s.insert(slot, member.as_fd()).unwrap();
        s.set_live(slot, true).unwrap();
    }
    s.attach(group[0].as_fd()).unwrap();
    s
}

fn connect_from(src: IpAddr, to: SocketAddr) -> TcpStream {
    let s = Socket::new(Domain::for_address(to), Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::new(src, 0).into())
        .unwrap_or_else(|e| panic!("bind {src}: {e}"));
    s.connect(&to.into())
        .unwrap_or_else(|e| panic!("connect {src} → {to}: {e}"));
    s.into()
}

/// The next connection any member has, and which member: waits (bounded).
fn accept_one(group: &[TcpListener]) -> (usize, TcpStream) {
    let end = Instant::now() + DEADLINE;
    loop {
        for (i, member) in group.iter().enumerate() {
            match member.accept() {
                Ok((conn, _)) => return (i, conn),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("accept on member {i}: {e}"),
            }
        }
        let left = end
            .checked_duration_since(Instant::now())
            .expect("a connection before the deadline");
        let mut fds: Vec<libc::pollfd> = group
            .iter()
            .map(|m| libc::pollfd {
                fd: m.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ms = left.as_millis().min(1000) as libc::c_int;
        // SAFETY: `fds` is a live array of `fds.len()` pollfds on open
        // sockets the group owns.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    }
}

/// Which member each of `n` connections from 127.0.0.1 went to.
fn spread(group: &[TcpListener], n: usize) -> Vec<usize> {
    let to = addr(group);
    (0..n)
        .map(|_| {
            let _client = connect_from(Ipv4Addr::LOCALHOST.into(), to);
            accept_one(group).0
        })
        .collect()
}

/// Connections established and waiting in `member`'s accept queue.
fn queued(member: &TcpListener) -> u32 {
    // SAFETY: tcp_info is plain integers: all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is a live tcp_info of `len` bytes.
    let ret = unsafe {
        libc::getsockopt(
            member.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            std::ptr::from_mut(&mut info).cast(),
            &mut len,
        )
    };
    assert_eq!(ret, 0, "TCP_INFO: {}", io::Error::last_os_error());
    // For a listener, the kernel reports its accept queue here.
    info.tcpi_unacked
}

/// `n` distinct loopback source addresses (127.0.x.y; up to 62,500).
fn sources(n: u32) -> impl Iterator<Item = IpAddr> {
    (0..n).map(|i| Ipv4Addr::new(127, 0, (i / 250) as u8 + 1, (i % 250) as u8 + 1).into())
}

/// Runs `f` on a thread of its own in a new network namespace with `lo`
/// up; `None` if this process may not create one.
fn in_new_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let thread = std::thread::spawn(move || {
        // SAFETY: unshare(CLONE_NEWNET) moves the calling thread only (this
        // one, ours) to a new namespace; nothing else is affected.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return None;
        }
        lo_up();
        Some(f())
    });
    thread
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

fn lo_up() {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
    // SAFETY: ifreq is plain data: all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, &b) in req.ifr_name.iter_mut().zip(b"lo") {
        *d = b as libc::c_char;
    }
    for request in [libc::SIOCGIFFLAGS, libc::SIOCSIFFLAGS] {
        if request == libc::SIOCSIFFLAGS {
            // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
            unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
        }
        // SAFETY: `req` is a live ifreq naming `lo`, as these ioctls take.
        let ret = unsafe { libc::ioctl(s.as_raw_fd(), request, &mut req) };
        assert_eq!(ret, 0, "bringing lo up: {}", io::Error::last_os_error());
    }
}

#[test]
fn every_program_passes_the_verifier() {
    if !ebpf("every_program_passes_the_verifier") {
        return;
    }
    let scratch = Steering::new(Mode::RoundRobin).unwrap();
    let maps = Maps {
        table: scratch.table.fd(),
        socks: scratch.socks.as_fd(),
    };
    for mode in Mode::ALL {
        let insns = match mode {
            Mode::RoundRobin => programs::round_robin(maps),
            Mode::LeastConnections => programs::least_connections(maps),
            Mode::Sticky => programs::sticky(maps),
        };
        match Steering::new(mode) {
            Ok(s) => eprintln!(
                "{mode:?}: {} instructions; verifier: {}",
                insns.len(),
                s.verifier_stats()
            ),
            Err(e) => panic!("{mode:?} ({} instructions): {e}", insns.len()),
        }
    }
}

#[test]
fn round_robin_alternates_exactly() {
    if !ebpf("round_robin_alternates_exactly") {
        return;
    }
    let g = group(Ipv4Addr::LOCALHOST.into(), 3).unwrap();
    let _steering = steer(Mode::RoundRobin, &g);
    let got = spread(&g, 300);
    let want: Vec<usize> = (0..300).map(|i| i % 3).collect();
    assert_eq!(got, want);
}

/// A full slot gets nothing while another is free; when all are full the
/// rotation goes on over all of them (connections queue, none is refused);
/// a slot that is not live gets nothing.
#[test]
fn round_robin_passes_over_full_and_gone_slots() {
    if !ebpf("round_robin_passes_over_full_and_gone_slots") {
        return;
    }
    let g = group(Ipv4Addr::LOCALHOST.into(), 3).unwrap();
    let s = steer(Mode::RoundRobin, &g);
    s.cell(1).unwrap().set_full(true);
    let got = spread(&g, 60);
    assert_eq!(got, (0..60).map(|i| [0, 2][i % 2]).collect::<Vec<_>>());

    s.cell(0).unwrap().set_full(true);
    s.cell(2).unwrap().set_full(true);
    let got = spread(&g, 30);
    assert_eq!(got, (60..90).map(|i| i % 3).collect::<Vec<_>>());

    for slot in 0..3 {
        s.cell(slot).unwrap().set_full(false);
    }
    s.set_live(1, false).unwrap();
    let got = spread(&g, 30);
    assert_eq!(got, (90..120).map(|i| [0, 2][i % 2]).collect::<Vec<_>>());
}

/// With no live slot (every worker restarting) each mode leaves the choice
/// to the kernel: connections queue on some member, none is refused.
#[test]
fn no_live_slot_leaves_it_to_the_kernel() {
    if !ebpf("no_live_slot_leaves_it_to_the_kernel") {
        return;
    }
    for mode in Mode::ALL {
        let g = group(Ipv4Addr::LOCALHOST.into(), 3).unwrap();
        let s = steer(mode, &g);
        for slot in 0..3 {
            s.set_live(slot, false).unwrap();
        }
        for _ in 0..10 {
            let client = TcpStream::connect(addr(&g));
            assert!(client.is_ok(), "{mode:?}: {client:?}");
            accept_one(&g); // or it panics at the deadline
        }
    }
}

/// Every new connection goes to a slot with the fewest published open
/// connections (not full): a worker holding 100 gets none until the others
/// hold as many; ties go round.
#[test]
fn least_connections_picks_the_lowest_published_count() {
    if !ebpf("least_connections_picks_the_lowest_published_count") {
        return;
    }
    let g = group(Ipv4Addr::LOCALHOST.into(), 3).unwrap();
    let s = steer(Mode::LeastConnections, &g);
    let to = addr(&g);
    let mut load = [100u32, 0, 0];
    let mut open = Vec::new();
    for (slot, &l) in load.iter().enumerate() {
        s.cell(slot).unwrap().set_load(l);
    }
    for n in 0..203 {
        let _client = connect_from(Ipv4Addr::LOCALHOST.into(), to);
        let (slot, conn) = accept_one(&g);
        let min = *load.iter().min().unwrap();
        assert_eq!(
            load[slot], min,
            "connection {n} went to slot {slot} with loads {load:?}"
        );
        // As its worker would: one writer, plain stores.
        let cell = s.cell(slot).unwrap();
        cell.took();
        cell.set_load(cell.load() + 1);
        load[slot] += 1;
        open.push(conn);
    }
    assert_eq!(load, [101, 101, 101]);

    // Ties, nobody publishing: the scan's start goes round.
    let mut counts = [0; 3];
    for slot in spread(&g, 30) {
        counts[slot] += 1;
    }
    assert_eq!(counts, [10, 10, 10]);

    // The least loaded slot is full: the next least takes it.
    for slot in 0..3 {
        s.cell(slot).unwrap().drained();
    }
    s.cell(0).unwrap().set_load(0);
    s.cell(0).unwrap().set_full(true);
    s.cell(1).unwrap().set_load(5);
    // (Accepted untaken, the 5 count as queued on slot 1: 5 to 9, under 20.)
    s.cell(2).unwrap().set_load(20);
    assert_eq!(spread(&g, 5), [1; 5]);
    // All full: the least loaded after all.
    s.cell(1).unwrap().set_full(true);
    s.cell(2).unwrap().set_full(true);
    assert_eq!(spread(&g, 5), [0; 5]);
}

/// A burst that arrives before any worker accepts (or publishes) spreads
/// by what is open plus what the program sent each slot, not all on the
/// least loaded one: loads 5, 6 and 7 and a burst of 60 end at 26 each
/// (±1). A worker that finds its queue empty has taken all it was sent.
#[test]
fn least_connections_counts_what_it_sent_in_a_burst() {
    if !ebpf("least_connections_counts_what_it_sent_in_a_burst") {
        return;
    }
    let g = group(Ipv4Addr::LOCALHOST.into(), 3).unwrap();
    let s = steer(Mode::LeastConnections, &g);
    let to = addr(&g);
    let load = [5u32, 6, 7];
    for (slot, &l) in load.iter().enumerate() {
        s.cell(slot).unwrap().set_load(l);
    }
    let burst: Vec<TcpStream> = (0..60)
        .map(|_| connect_from(Ipv4Addr::LOCALHOST.into(), to))
        .collect();
    eventually_blocking(
        || g.iter().map(queued).sum::<u32>() == 60,
        "the burst queued",
    );
    let got: Vec<u32> = g.iter().map(queued).collect();
    let total: Vec<u32> = got.iter().zip(load).map(|(q, l)| q + l).collect();
    let (lo, hi) = (*total.iter().min().unwrap(), *total.iter().max().unwrap());
    assert!(hi - lo <= 1, "queued {got:?} on loads {load:?}: {total:?}");
    // Taken: the queues are empty, and the workers caught up.
    let mut open = Vec::new();
    for _ in 0..60 {
        let (slot, conn) = accept_one(&g);
        let cell = s.cell(slot).unwrap();
        cell.took();
        cell.set_load(cell.load() + 1);
        open.push(conn);
    }
    drop(burst);
    // Connections the program sent and the worker never took (as if
    // reset in the queue) count: a slot that has one gets no more...
    for slot in 0..3 {
        s.cell(slot).unwrap().set_load(0);
    }
    let first = spread(&g, 1)[0];
    let mut next = spread(&g, 2);
    next.sort_unstable();
    let mut want: Vec<usize> = (0..3).filter(|&i| i != first).collect();
    want.sort_unstable();
    assert_eq!(next, want, "after slot {first}");
    // ...until its worker finds its queue empty: then all are even again.
    s.cell(first).unwrap().drained();
    assert_eq!(spread(&g, 1), [first]);
}

/// The kernel's sticky choice is `sticky_slot`'s, for 400 IPv4 clients and
/// for ::1 under every live set; a full slot's clients go to their next
/// choice; a slot leaving moves only its own clients.
#[test]
fn sticky_in_the_kernel_is_sticky_slot() {
    if !ebpf("sticky_in_the_kernel_is_sticky_slot") {
        return;
    }
    let g = group(Ipv4Addr::LOCALHOST.into(), 4).unwrap();
    let s = steer(Mode::Sticky, &g);
    s.set_live(2, false).unwrap();
    let to = addr(&g);
    let mut counts = [0; 4];
    for ip in sources(400) {
        let _client = connect_from(ip, to);
        let (got, _) = accept_one(&g);
        assert_eq!(Some(got), sticky_slot(ip, [0, 1, 3]), "client {ip}");
        counts[got] += 1;
    }
    assert_eq!(counts[2], 0);
    assert!(
        counts.iter().filter(|&&c| c > 80).count() == 3,
        "{counts:?}"
    );

    // Full: the client goes to its best slot that is not full.
    let ip: IpAddr = Ipv4Addr::new(127, 0, 9, 9).into();
    let first = sticky_slot(ip, [0, 1, 3]).unwrap();
    s.cell(first).unwrap().set_full(true);
    let _client = connect_from(ip, to);
    let others = [0, 1, 3].into_iter().filter(|&x| x != first);
    assert_eq!(Some(accept_one(&g).0), sticky_slot(ip, others));
    s.cell(first).unwrap().set_full(false);

    let Ok(g6) = group(Ipv6Addr::LOCALHOST.into(), 4) else {
        eprintln!("notice: no ::1 here; the IPv6 half is skipped");
        return;
    };
    let s6 = steer(Mode::Sticky, &g6);
    let to6 = addr(&g6);
    for set in 1u32..16 {
        let live: Vec<usize> = (0..4).filter(|i| set & 1 << i != 0).collect();
        for slot in 0..4 {
            s6.set_live(slot, live.contains(&slot)).unwrap();
        }
        let _client = connect_from(Ipv6Addr::LOCALHOST.into(), to6);
        let (got, _) = accept_one(&g6);
        assert_eq!(
            Some(got),
            sticky_slot(Ipv6Addr::LOCALHOST.into(), live.clone()),
            "live {live:?}"
        );
    }
}

/// 200 connections established on member 0 and not accepted; member 0
/// closes. With the program attached as SELECT_OR_MIGRATE all 200 move to
/// member 1 (`tcp_migrate_req` is 0); attached as plain SELECT, the same
/// close resets all 200.
#[test]
fn a_closing_members_queue_migrates() {
    if !ebpf("a_closing_members_queue_migrates") {
        return;
    }
    let run = |migrate: bool| -> (usize, usize) {
        let sysctl = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req").unwrap();
        assert_eq!(
            sysctl.trim(),
            "0",
            "tcp_migrate_req would migrate by itself"
        );
        let mut g = group(Ipv4Addr::LOCALHOST.into(), 2).unwrap();
        let s = Steering::build(Mode::RoundRobin, migrate).unwrap();
        for (slot, member) in g.iter().enumerate() {
            s.insert(slot, member.as_fd()).unwrap();
        }
        s.set_live(0, true).unwrap();
        s.attach(g[0].as_fd()).unwrap();
        let to = addr(&g);
        let clients: Vec<TcpStream> = (0..200u32)
            .map(|i| {
                let mut c = connect_from(Ipv4Addr::LOCALHOST.into(), to);
                c.write_all(&i.to_be_bytes()).unwrap();
                c
            })
            .collect();
        eventually_blocking(
            || queued(&g[0]) == 200,
            "200 connections queued on member 0",
        );
        assert_eq!(queued(&g[1]), 0);

        s.set_live(0, false).unwrap();
        s.set_live(1, true).unwrap();
        drop(g.remove(0));

        // Migration is done when close returns: what moved is queued on
        // the other member now.
        let mut seen = [false; 200];
        while queued(&g[0]) > 0 {
            let (_, mut conn) = accept_one(&g);
            conn.set_read_timeout(Some(DEADLINE)).unwrap();
            let mut id = [0u8; 4];
            conn.read_exact(&mut id).unwrap();
            seen[u32::from_be_bytes(id) as usize] = true;
        }
        let moved = seen.iter().filter(|&&s| s).count();
        let mut reset = 0;
        for (i, mut c) in clients.into_iter().enumerate() {
            if seen[i] {
                continue;
            }
            c.set_read_timeout(Some(DEADLINE)).unwrap();
            // The server never writes: the read ends with the reset.
            match c.read(&mut [0u8; 1]) {
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => reset += 1,
                other => panic!("client {i} neither moved nor reset: {other:?}"),
            }
        }
        (moved, reset)
    };
    let both = move || (run(true), run(false));
    let ((moved, reset), (kept, lost)) = in_new_netns(both).unwrap_or_else(|| {
        eprintln!("notice: no network namespace of its own; running in this one");
        (run(true), run(false))
    });
    assert_eq!((moved, reset), (200, 0), "SELECT_OR_MIGRATE");
    assert_eq!((kept, lost), (0, 200), "SELECT (the control)");
}

/// Sticky's queued connections, when their member closes, go where
/// `sticky_slot` sends them among the members left: the program reads the
/// client's address from the migrating socket (an IPv4 one, and on a
/// dual-stack group an IPv6 one holding `::ffff:a.b.c.d`).
#[test]
fn sticky_migrates_each_client_to_its_next_slot() {
    if !ebpf("sticky_migrates_each_client_to_its_next_slot") {
        return;
    }
    let run = |listen: IpAddr| {
        let mut g = group(listen, 4).unwrap();
        let s = steer(Mode::Sticky, &g);
        let to = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr(&g).port());
        let clients: Vec<TcpStream> = sources(120).map(|ip| connect_from(ip, to)).collect();
        let on_first = sources(120)
            .filter(|&ip| sticky_slot(ip, 0..4) == Some(0))
            .count();
        assert!(on_first > 10, "{on_first} clients of slot 0");
        eventually_blocking(
            || queued(&g[0]) as usize == on_first,
            "slot 0's clients queued on its member",
        );
        s.set_live(0, false).unwrap();
        drop(g.remove(0));
        for _ in &clients {
            let (member, conn) = accept_one(&g);
            let peer = conn.peer_addr().unwrap().ip();
            assert_eq!(
                Some(member + 1),
                sticky_slot(peer, 1..4),
                "client {peer} on {listen}"
            );
        }
    };
    let both = move || {
        run(Ipv4Addr::LOCALHOST.into());
        // A wildcard listener: only in a namespace of its own.
        run(Ipv6Addr::UNSPECIFIED.into());
    };
    if in_new_netns(both).is_none() {
        eprintln!("notice: no network namespace of its own; the dual-stack half is skipped");
        run(Ipv4Addr::LOCALHOST.into());
    }
}

/// The classic program (no privilege needed) chooses as `sticky_slot`,
/// given each live slot's index in the group, also after a member closes
/// and the kernel moves the last member into its index.
#[test]
fn classic_sticky_is_sticky_slot() {
    let mut g = group(Ipv4Addr::LOCALHOST.into(), 4).unwrap();
    let to = addr(&g);
    // The largest program (every slot) is within classic BPF's limits.
    let every: Vec<(usize, u32)> = (0..MAX_SLOTS).map(|s| (s, s as u32)).collect();
    classic::attach_sticky(g[0].as_fd(), &every).unwrap();
    classic::attach_sticky(g[0].as_fd(), &[(0, 0), (1, 1), (3, 3)]).unwrap();
    let mut counts = [0; 4];
    for ip in sources(300) {
        let _client = connect_from(ip, to);
        let (got, _) = accept_one(&g);
        assert_eq!(Some(got), sticky_slot(ip, [0, 1, 3]), "client {ip}");
        counts[got] += 1;
    }
    assert_eq!(counts[2], 0);
    assert!(
        counts.iter().filter(|&&c| c > 60).count() == 3,
        "{counts:?}"
    );

    // Member 1 closes: the kernel moves member 3 to index 1.
    drop(g.remove(1));
    classic::attach_sticky(g[0].as_fd(), &[(0, 0), (3, 1)]).unwrap();
    for ip in sources(100) {
        let _client = connect_from(ip, to);
        let (got, _) = accept_one(&g);
        let slot = [0, 2, 3][got]; // g is now the members of slots 0, 2, 3
        assert_eq!(Some(slot), sticky_slot(ip, [0, 3]), "client {ip}");
    }

    let Ok(g6) = group(Ipv6Addr::LOCALHOST.into(), 4) else {
        eprintln!("notice: no ::1 here; the IPv6 half is skipped");
        return;
    };
    let to6 = addr(&g6);
    for set in 1u32..16 {
        let live: Vec<(usize, u32)> = (0..4)
            .filter(|i| set & 1 << i != 0)
            .map(|i| (i, i as u32))
            .collect();
        classic::attach_sticky(g6[0].as_fd(), &live).unwrap();
        let _client = connect_from(Ipv6Addr::LOCALHOST.into(), to6);
        let (got, _) = accept_one(&g6);
        let slots = live.iter().map(|&(s, _)| s);
        assert_eq!(
            Some(got),
            sticky_slot(Ipv6Addr::LOCALHOST.into(), slots),
            "live {live:?}"
        );
    }
}

/// As an unprivileged user (this test's own thread drops to `nobody`; the
/// rest of the process keeps its privileges) eBPF is refused, the probe
/// says why, and classic sticky still works.
#[test]
fn unprivileged_the_probe_says_why_and_classic_works() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        match probe_now() {
            Ok(()) => eprintln!("notice: unprivileged_the_probe_says_why_and_classic_works skipped: eBPF allowed without root"),
            Err(why) => assert!(why.denied, "{why}"),
        }
        return;
    }
    let (why, chosen) = std::thread::spawn(|| {
        // The raw system call changes this thread's credentials only (libc's
        // setresuid would change every thread's).
        // SAFETY: setresuid takes three ids; it affects this thread alone.
        let ret = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
        assert_eq!(ret, 0, "setresuid: {}", io::Error::last_os_error());
        let why = probe_now().expect_err("eBPF refused to nobody");
        let g = group(Ipv4Addr::LOCALHOST.into(), 3).unwrap();
        classic::attach_sticky(g[0].as_fd(), &[(0, 0), (1, 1), (2, 2)]).unwrap();
        let chosen: Vec<(IpAddr, usize)> = sources(60)
            .map(|ip| {
                let _client = connect_from(ip, addr(&g));
                (ip, accept_one(&g).0)
            })
            .collect();
        (why, chosen)
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    assert!(why.denied, "{why}");
    eprintln!("unprivileged probe: {why}");
    for (ip, got) in chosen {
        assert_eq!(Some(got), sticky_slot(ip, 0..3), "client {ip}");
    }
}
