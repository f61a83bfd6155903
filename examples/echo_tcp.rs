//! Raw TCP on the cluster, no HTTP: `cluster-net` alone. Every worker serves
//! the same port; each connection gets its lines echoed back, prefixed with
//! the worker's id.
//!
//! Run:  cargo run --example echo_tcp -- [--port P]      (default 7000)
//! Try:  nc localhost 7000    (type lines; each comes back as `<worker id>: <line>`)
//! Stop: Ctrl-C: open connections are closed after the workers' drain.
//! Logs: info on stderr (each line names its worker: restarts, reloads, upgrades),
//!       RUST_LOG=debug for each connection; `cluster-thread logs` reads them too.

use std::process::ExitCode;
use std::sync::OnceLock;

use cluster_thread::{Cluster, ClusterEvent, Worker};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

static PORT: OnceLock<u16> = OnceLock::new();

fn main() -> ExitCode {
    let port = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [] => 7000,
        [flag, p] if flag == "--port" && p.parse::<u16>().is_ok() => p.parse().unwrap_or(7000),
        _ => {
            eprintln!("usage: echo_tcp [--port P]");
            return ExitCode::from(2);
        }
    };
    let _ = PORT.set(port);
    cluster()
}

#[cluster_thread::main(workers = 2, balance = "least-connections", primary = primary)]
async fn cluster(worker: Worker) -> anyhow::Result<()> {
    let port = *PORT.get().expect("set in main");
    let listener = worker.listen(format!("0.0.0.0:{port}")).await?;
    loop {
        tokio::select! {
            conn = listener.accept() => {
                let id = worker.id();
                // Connections run on this worker's own runtime; no Send needed.
                tokio::task::spawn_local(async move {
                    let (read, mut write) = tokio::io::split(conn);
                    let mut lines = BufReader::new(read).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if write.write_all(format!("{id}: {line}\n").as_bytes()).await.is_err() {
                            break;
                        }
                    }
                });
            }
            () = worker.disconnected() => break,
        }
    }
    // Serve what the primary accepted for us but we had not taken yet.
    for mut conn in listener.close().await {
        let _ = conn.write_all(b"shutting down\n").await;
    }
    Ok(())
}

async fn primary(cluster: Cluster) {
    let mut events = cluster.events();
    let mut said = false;
    while let Some(event) = events.recv().await {
        if let ClusterEvent::Listening { address, .. } = event {
            if !said {
                println!("listening on {address}");
                said = true;
            }
        }
    }
}
