// `setup`: a function that builds the shared state once, on the primary,
// before any worker starts (no statics or environment variables needed to
// hand the workers what `main` knows); `healthz`, `metrics`, `status`: the
// HTTP endpoints' paths, in the cluster's `HttpConfig`.
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use cluster_thread::http::HttpConfig;
use cluster_thread::{ClusterBuilder, Worker};

static SETUPS: AtomicUsize = AtomicUsize::new(0);
static SEEN: Mutex<Vec<(String, bool)>> = Mutex::new(Vec::new());

struct App {
    greeting: String,
}

fn setup(builder: ClusterBuilder) -> ClusterBuilder {
    SETUPS.fetch_add(1, Ordering::SeqCst);
    builder.state(App {
        greeting: "hello".to_owned(),
    })
}

mod db {
    pub fn connect(builder: cluster_thread::ClusterBuilder) -> Result<cluster_thread::ClusterBuilder, String> {
        let _ = builder;
        Err("no database at db:5432".to_owned())
    }
}

#[cluster_thread::main(
    workers = 2,
    setup = setup,
    healthz = "/healthz",
    metrics = "/metrics",
    status = "/status"
)]
async fn with_setup(worker: Worker) {
    let app = worker.state::<App>().map(|a| a.greeting.clone());
    let http = worker.state::<HttpConfig>();
    let want = HttpConfig::default()
        .healthz("/healthz")
        .metrics("/metrics")
        .status("/status");
    SEEN.lock()
        .unwrap()
        .push((app.unwrap_or_default(), http.as_deref() == Some(&want)));
}

#[cluster_thread::main(workers = 1, setup = "db::connect")]
async fn failing_setup(worker: Worker) {
    let _ = worker;
    SEEN.lock().unwrap().push(("no setup ran".to_owned(), false));
}

fn main() {
    assert_eq!(with_setup(), ExitCode::SUCCESS);
    assert_eq!(SETUPS.load(Ordering::SeqCst), 1);
    assert_eq!(
        *SEEN.lock().unwrap(),
        [("hello".to_owned(), true), ("hello".to_owned(), true)]
    );
    // A setup that fails stops the program before any worker starts.
    assert_eq!(failing_setup(), ExitCode::FAILURE);
    assert_eq!(SEEN.lock().unwrap().len(), 2);
}
