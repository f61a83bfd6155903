//! Hot upgrade of the binary, as nginx does on USR2: SIGQUIT starts the new
//! binary (the same path, so build or copy the new version there first),
//! hands it every listening socket, waits until its workers listen, then
//! this process stops accepting and drains. No connection is refused or
//! reset on the way: both processes share the same kernel queues.
//!
//! Run:  cargo build --release --example hot_upgrade
//!       ./target/release/examples/hot_upgrade [--port P]       (default 8080)
//! Try:  curl localhost:8080/                 # `served by pid 1234`
//!       (rebuild or replace ./target/release/examples/hot_upgrade)
//!       kill -QUIT 1234                      # prints `upgraded: pid 1234 -> pid 5678`
//!       curl localhost:8080/                 # `served by pid 5678`; 1234 exits once drained
//! Under systemd: see docs/deploying.md (socket activation, Type=notify, ExecReload).
//! Logs: info on stderr (each line names its worker: restarts, reloads, upgrades),
//!       RUST_LOG=debug for each connection; `cluster-thread logs` reads them too.

use std::collections::HashSet;
use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::OnceLock;

use cluster_thread::http::Request;
use cluster_thread::{Cluster, ClusterEvent, Worker};

static PORT: OnceLock<u16> = OnceLock::new();

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port = match args.as_slice() {
        [] => 8080,
        [flag, p] if flag == "--port" && p.parse::<u16>().is_ok() => p.parse().unwrap_or(8080),
        _ => {
            eprintln!("usage: hot_upgrade [--port P]");
            return ExitCode::from(2);
        }
    };
    let _ = PORT.set(port);
    println!("Primary {} is running", std::process::id());
    cluster()
}

// `#[cluster_thread::main]` programs upgrade on SIGQUIT by themselves; the
// new process finds its sockets by what it asks `listen` for.
#[cluster_thread::main(workers = 2, primary = primary)]
async fn cluster(worker: Worker) -> anyhow::Result<()> {
    let port = *PORT.get().expect("set in main");
    let listener = worker.listen(format!("0.0.0.0:{port}")).await?;
    cluster_thread::http::serve(listener, |_req: Request| async {
        let body = format!("served by pid {}\n", std::process::id());
        Ok::<_, Infallible>(http::Response::new(body))
    })
    .await?;
    Ok(())
}

async fn primary(cluster: Cluster) {
    let mut events = cluster.events();
    let mut seen = HashSet::new();
    while let Some(event) = events.recv().await {
        if let ClusterEvent::Listening { address, .. } = event {
            if seen.insert(address.clone()) {
                println!("pid {} listening on {address}", std::process::id());
            }
        }
    }
}
