//! The proposal's second demo: each worker listens on its own port, the one
//! of its slot (base + slot), and comes back on it when restarted.
//!
//! Run:  cargo run --release --example different_ports -- [--workers N] [--port BASE]
//!           [--healthz PATH] [--metrics PATH]
//! Try:  curl -i localhost:8000/ ; curl -i localhost:8001/   # one worker per port
//!       with --healthz /healthz --metrics /metrics, on each port:
//!       curl -i localhost:8000/healthz   # 200 `ok` while serving, 503 `draining` once stopping
//!       curl localhost:8001/metrics      # Prometheus text of that port's worker
//! Stop: Ctrl-C or `kill -TERM <pid>`, exit status 0.
//! Logs: info on stderr (each line names its worker: restarts, reloads, upgrades),
//!       RUST_LOG=debug for each connection; `cluster-thread logs` reads them too.

use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::OnceLock;

use cluster_thread::http::{Request, Server};
use cluster_thread::Worker;

struct Flags {
    base: u16,
    healthz: Option<String>,
    metrics: Option<String>,
}

static FLAGS: OnceLock<Flags> = OnceLock::new();

const USAGE: &str =
    "usage: different_ports [--workers N] [--port BASE] [--healthz PATH] [--metrics PATH]";

fn main() -> ExitCode {
    let mut flags = Flags {
        base: 8000,
        healthz: None,
        metrics: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let parsed = match (arg.as_str(), args.next()) {
            ("--workers", Some(n)) => {
                std::env::set_var("CLUSTER_THREAD_WORKERS", n);
                Ok(())
            }
            ("--port", Some(p)) => p
                .parse()
                .map(|p| flags.base = p)
                .map_err(|_| format!("--port {p}: not a port number")),
            ("--healthz", Some(path)) => {
                flags.healthz = Some(path);
                Ok(())
            }
            ("--metrics", Some(path)) => {
                flags.metrics = Some(path);
                Ok(())
            }
            (other, _) => Err(format!("unknown or incomplete argument {other}")),
        };
        if let Err(e) = parsed {
            eprintln!("different_ports: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let _ = FLAGS.set(flags);
    println!("Primary {} is running", std::process::id());
    cluster()
}

#[cluster_thread::main(workers = "auto", port = "per-worker")]
async fn cluster(worker: Worker) -> anyhow::Result<()> {
    let flags = FLAGS.get().expect("set in main");
    let base = flags.base;
    // `port = "per-worker"`: slot i gets base + i.
    let listener = worker.listen(format!("0.0.0.0:{base}")).await?;
    println!(
        "worker {} listening on {}",
        worker.id(),
        listener.local_addr()
    );
    let id = worker.id().to_string();
    let mut server = Server::new(listener);
    if let Some(path) = &flags.healthz {
        server = server.healthz(path);
    }
    if let Some(path) = &flags.metrics {
        server = server.metrics(path);
    }
    server
        .serve(move |_req: Request| {
            let response = http::Response::builder()
                .header("x-worker-id", id.as_str())
                .body("hello world\n".to_owned())
                .expect("a valid response");
            async move { Ok::<_, Infallible>(response) }
        })
        .await?;
    Ok(())
}
