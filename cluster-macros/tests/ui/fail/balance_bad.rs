#[cluster_thread::main(balance = "random")]
async fn main(worker: cluster_thread::Worker) {
    let _ = worker;
}
