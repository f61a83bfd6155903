#[cluster_thread::main(workers = 2, port = "shared", workers = 3)]
async fn main(worker: cluster_thread::Worker) {
    let _ = worker;
}
