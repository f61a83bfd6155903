#[cluster_thread::main]
async fn main(worker: String) {
    let _ = worker;
}
