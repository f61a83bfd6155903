// Returning `Result<(), std::io::Error>`, with `?` in the body.
#[cluster_thread::main(workers = 1)]
async fn main(worker: cluster_thread::Worker) -> std::io::Result<()> {
    let text = format!("{}", worker.id());
    let _n: u64 = text
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok(())
}
