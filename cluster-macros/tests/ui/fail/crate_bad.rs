#[cluster_thread::main(crate = 42)]
async fn main(worker: cluster_thread::Worker) {
    let _ = worker;
}
