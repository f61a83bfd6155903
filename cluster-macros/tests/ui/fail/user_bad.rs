#[cluster_thread::main(user = www_data, group = "web server")]
async fn main(worker: cluster_thread::Worker) {
    let _ = worker;
}
