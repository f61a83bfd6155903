#[cluster_thread::main]
async fn main(worker: cluster_thread::Worker) -> i32 {
    let _ = worker;
    0
}
