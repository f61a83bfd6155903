//! A builder program with `.control(...)`: its socket is served from the
//! start, answers the protocol, changes the cluster, and is gone at stop.

use std::path::PathBuf;

use cluster_core::Cluster;
use cluster_ctl::client::Client;
use cluster_ctl::protocol::{Body, Command, Scale};
use cluster_ctl::{Control, ControlExt};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cluster-ctl-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn call(client: &mut Client, command: Command) -> (Body, Vec<String>) {
    let mut progress = Vec::new();
    let reply = client
        .call(command, |r, _| {
            if let Body::Progress { message } = &r.body {
                progress.push(message.clone());
            }
        })
        .unwrap()
        .expect("a final line");
    (reply.body, progress)
}

#[test]
fn a_builder_programs_socket_lists_scales_restarts_and_goes_at_stop() {
    let dir = scratch("builder");
    let cluster = Cluster::builder()
        .workers(2)
        .signals(false)
        .control(Control::new().dir(&dir).name("app").version("9.9.9"))
        .unwrap()
        .build(|worker| async move {
            worker.ready();
            worker.disconnected().await;
        })
        .unwrap();
    let path = dir.join(format!("app-{}.sock", std::process::id()));
    // Bound at `control`, before the start: nothing is lost in between.
    assert!(path.exists());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        cluster.start().unwrap();
        let path = path.clone();
        let test = tokio::task::spawn_blocking(move || {
            let mut client = Client::connect(&path).unwrap();
            let (body, _) = call(&mut client, Command::Ls);
            let Body::Status(status) = body else { panic!("{body:?}") };
            assert_eq!(status.name, "app");
            assert_eq!(status.program_version.as_deref(), Some("9.9.9"));
            assert_eq!(status.workers.len(), 2);
            let (body, progress) = call(&mut client, Command::Scale { workers: Scale::Add(1) });
            assert!(matches!(body, Body::Done { .. }), "{body:?}");
            assert!(progress.iter().any(|p| p.starts_with("slot 2: worker")), "{progress:?}");
            let (body, progress) = call(&mut client, Command::Restart { slot: 1 });
            assert!(matches!(&body, Body::Done { message, .. } if message.starts_with("slot 1 restarted")), "{body:?}");
            assert!(progress.iter().any(|p| p.contains("draining")), "{progress:?}");
            let (body, _) = call(&mut client, Command::Ls);
            let Body::Status(status) = body else { panic!("{body:?}") };
            let slots: Vec<usize> = status.workers.iter().map(|w| w.slot).collect();
            assert_eq!(slots, [0, 1, 2]);
            // No hot upgrade provider: refused, and said why.
            let (body, _) = call(&mut client, Command::Upgrade);
            assert!(matches!(&body, Body::Error { error } if error.contains("no hot upgrade")), "{body:?}");
            let (body, _) = call(&mut client, Command::Stop { now: false });
            assert!(matches!(body, Body::Done { .. }), "{body:?}");
        });
        test.await.unwrap();
        cluster.wait().await.unwrap();
    });
    assert!(!path.exists(), "removed at stop");
    std::fs::remove_dir_all(&dir).unwrap();
}
