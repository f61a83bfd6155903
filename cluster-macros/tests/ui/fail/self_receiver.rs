struct App;

impl App {
    #[cluster_thread::main]
    async fn serve(&self, worker: cluster_thread::Worker) {
        let _ = worker;
    }
}

fn main() {}
