// `worker.listen(...)` works in the function without importing a trait.
#[cluster_thread::main(workers = 2, port = "shared", balance = "os")]
async fn main(worker: cluster_thread::Worker) -> Result<(), cluster_thread::net::Error> {
    let listener = worker.listen("127.0.0.1:0").await?;
    assert!(listener.tcp_addr().is_some_and(|a| a.port() != 0));
    Ok(())
}
