// Returning `anyhow::Result<()>`.
#[cluster_thread::main(workers = 1, restart = "never")]
async fn main(worker: cluster_thread::Worker) -> anyhow::Result<()> {
    anyhow::ensure!(worker.slot() == 0, "one worker, in slot 0");
    Ok(())
}
