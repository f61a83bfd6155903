//! An axum `Router`, unchanged, served by every worker, with state that all
//! workers share: one hit counter in memory, which processes could not do
//! without Redis.
//!
//! Run:  cargo run --release --example axum -- [--workers N] [--port P]   (default port 3000)
//! Try:  curl localhost:3000/        # `hello from worker 2: hit 5`: the count goes up whichever worker answers
//!       curl localhost:3000/hits    # 5: every worker's hits together
//! Stop: Ctrl-C, exit status 0. SIGHUP reloads the workers, SIGQUIT hot-upgrades the binary.
//! Logs: silent by default; RUST_LOG=info (restarts, reloads, upgrades) or RUST_LOG=debug on stderr.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use cluster_thread::{Cluster, ClusterBuilderExt, ClusterEvent, WorkerExt, Workers};

/// Shared by every worker: the same memory, no serialisation.
#[derive(Default)]
struct Hits(AtomicU64);

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
    let (mut workers, mut port) = (Workers::Auto, 3000u16);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--workers", Some(n)) => workers = Workers::Count(n.parse()?),
            ("--port", Some(p)) => port = p.parse()?,
            (other, _) => {
                anyhow::bail!("unknown argument {other}; usage: axum [--workers N] [--port P]")
            }
        }
    }
    Cluster::builder()
        .workers(workers)
        .state(Hits::default())
        // What the `main` macro takes from the environment by itself:
        // systemd's sockets, and SIGQUIT upgrades the binary.
        .from_env()?
        .run_with_primary(
            move |worker| async move {
                let hits = worker.state::<Hits>().expect("given to the builder");
                let id = worker.id();
                let app = Router::new()
                    .route(
                        "/",
                        get(move |State(hits): State<Arc<Hits>>| async move {
                            let n = hits.0.fetch_add(1, Ordering::Relaxed) + 1;
                            format!("hello from worker {id}: hit {n}\n")
                        }),
                    )
                    .route(
                        "/hits",
                        get(|State(hits): State<Arc<Hits>>| async move {
                            format!("{}\n", hits.0.load(Ordering::Relaxed))
                        }),
                    )
                    .with_state(hits);
                let listener = worker.listen(format!("0.0.0.0:{port}")).await?;
                cluster_thread::http::serve(listener, app).await?;
                anyhow::Ok(())
            },
            |cluster| async move {
                let mut events = cluster.events();
                let mut said = false;
                while let Some(event) = events.recv().await {
                    if let (false, ClusterEvent::Listening { address, .. }) = (said, event) {
                        println!("listening on {address}");
                        said = true;
                    }
                }
            },
        )?;
    Ok(())
}
