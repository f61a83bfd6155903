#[cluster_thread::main(drain_delay = "2 fortnights")]
async fn main(worker: cluster_thread::Worker) {
    let _ = worker;
}
