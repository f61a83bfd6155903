//! `cargo xtask <task>`: development tasks. None yet; `bench` and `soak` are planned.

fn main() -> anyhow::Result<()> {
    let task = std::env::args().nth(1);
    match task.as_deref() {
        None | Some("help" | "--help" | "-h") => {
            eprintln!("usage: cargo xtask <task>\n\ntasks: (none yet; bench and soak are planned)");
            Ok(())
        }
        Some(other) => anyhow::bail!("unknown task `{other}`; see `cargo xtask help`"),
    }
}
