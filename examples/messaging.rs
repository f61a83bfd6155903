//! Messages between the primary and its workers, without sockets.
//!
//! Run: `cargo run --example messaging -- [WORKERS]`
//!
//! The primary broadcasts a question; every worker answers with its id and
//! slot; the primary prints the answers and disconnects all workers.
//! Logs: silent by default; RUST_LOG=info (restarts, reloads, upgrades) or RUST_LOG=debug on stderr.

use cluster_thread::{Cluster, ClusterEvent};

/// The primary's question.
struct Roll;

/// A worker's answer.
#[derive(Debug)]
struct Present {
    id: u64,
    slot: usize,
    thread: String,
}

fn main() -> anyhow::Result<()> {
    // Logs on stderr, silent unless RUST_LOG asks: RUST_LOG=info for the
    // cluster's life (restarts, reloads, upgrades), debug for each connection.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::builder()
                .with_default_directive(tracing::level_filters::LevelFilter::OFF.into())
                .from_env_lossy(),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let workers = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 4,
    };
    println!("Primary {} is running", std::process::id());
    Cluster::builder().workers(workers).run_with_primary(
        |worker| async move {
            // Wait for the roll call, answer it, then wait to be let go.
            let message = worker.recv().await;
            if message.is::<Roll>() {
                worker.send(Present {
                    id: worker.id(),
                    slot: worker.slot(),
                    thread: worker.name().to_owned(),
                })?;
            }
            worker.disconnected().await;
            anyhow::Ok(())
        },
        |cluster| async move {
            let mut events = cluster.events();
            let mut online = 0;
            let mut answers = 0;
            while let Some(event) = events.recv().await {
                match event {
                    ClusterEvent::Online { .. } => {
                        online += 1;
                        if online == cluster.size() {
                            cluster.broadcast(Roll);
                        }
                    }
                    ClusterEvent::Message { message, .. } => {
                        if let Some(p) = message.downcast_ref::<Present>() {
                            println!(
                                "worker {} in slot {} on thread {} is present",
                                p.id, p.slot, p.thread
                            );
                            answers += 1;
                            if answers == cluster.size() {
                                println!("all {answers} workers answered; disconnecting");
                                // Returns once every worker has exited; their
                                // Exit events are still ours to read.
                                cluster.disconnect().await;
                            }
                        }
                    }
                    ClusterEvent::Exit { worker, reason } => {
                        println!("worker {} exited: {reason}", worker.id());
                    }
                    _ => {}
                }
            }
        },
    )?;
    Ok(())
}
