#[cluster_thread::main(primary = 42)]
async fn main(worker: cluster_thread::Worker) {
    let _ = worker;
}
