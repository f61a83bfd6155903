#[cluster_thread::main]
async fn main(worker: cluster_thread::Worker, port: u16) {
    let _ = (worker, port);
}
