//! A hot upgrade (SIGQUIT) whose new process cannot serve: a certificate
//! renewal half done (the new certificate written, the old key left) makes
//! its workers fail before they accept. The new process acknowledges only
//! once it is ready to serve, so it never does: it stops, the old process
//! kills and reaps it and serves on, and no request fails. Once the files
//! are whole again, the next SIGQUIT upgrades.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::tls::{connect, H1s, Pki};
use cluster_core::{Address, Cluster, ClusterEvent};
use cluster_http::{HttpConfig, Server, TlsConfig};
use cluster_net::{ClusterBuilderExt, WorkerExt};
use http::StatusCode;
use test_support::{alive, wait_gone, Run, DEADLINE};
use tokio::task::block_in_place;

const CHILD: &str = "CLUSTER_HTTP_UPGRADE_CHILD";

/// The server under test, in the child processes only: HTTPS with the PEM
/// files `cert key` named in `CHILD`, answering `pid <pid>`.
#[test]
#[ignore = "a child process of another test"]
fn child() {
    let files = std::env::var(CHILD).expect("the PEM files of the child");
    let (cert, key) = files.split_once(' ').unwrap();
    let tls = TlsConfig::pem_files(cert, key);
    let upgraded = std::env::var_os(cluster_net::upgrade::UPGRADE_ENV).is_some();
    if upgraded {
        // Before anything can fail: the test follows this process by it.
        println!("new process {}", std::process::id());
    }
    Cluster::builder()
        .workers(1)
        .state(HttpConfig::default().tls(tls))
        .hot_upgrade()
        .unwrap()
        .run_with_primary(
            |w| async move {
                let listener = w.listen("127.0.0.1:0").await?;
                Server::new(listener)
                    .serve(|_req| async {
                        let body = format!("pid {}", std::process::id());
                        Ok::<_, std::convert::Infallible>(http::Response::new(body))
                    })
                    .await
            },
            move |cluster| async move {
                let mut events = cluster.events();
                while let Some(e) = events.recv().await {
                    if let ClusterEvent::Listening {
                        address: Address::Tcp(a),
                        ..
                    } = e
                    {
                        let pid = std::process::id();
                        println!("pid {pid} listening on {a} upgraded {upgraded}");
                        break;
                    }
                }
            },
        )
        .unwrap();
}

/// One request on a fresh HTTPS connection: the pid that answered.
async fn served_by(addr: SocketAddr, pki: &Pki) -> Result<u32, crate::common::BoxError> {
    let tls = connect(addr, &pki.connector(&[b"http/1.1"])).await?;
    let reply = H1s::new(tls).await?.get("/").await?;
    if reply.status != StatusCode::OK {
        return Err(format!("status {}", reply.status).into());
    }
    Ok(reply.body.trim_start_matches("pid ").parse()?)
}

/// The pid of the next new process the old one starts.
fn new_process(run: &mut Run) -> u32 {
    let line = block_in_place(|| run.line(|l| l.contains("new process ")));
    line.rsplit(' ').next().unwrap().trim().parse().unwrap()
}

/// A `listening` line's pid and address (the line may follow other output).
fn parse(line: &str) -> (u32, SocketAddr) {
    let words: Vec<&str> = line[line.find("pid ").unwrap()..].split(' ').collect();
    (words[1].parse().unwrap(), words[4].parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_whose_certificate_cannot_load_leaves_the_old_process_serving() {
    let pki = Arc::new(Pki::new("upgrade"));
    pki.issue("first");
    let mut command = test_support::this_test("upgrade::child");
    command.env(
        CHILD,
        format!("{} {}", pki.cert().display(), pki.key().display()),
    );
    let mut run = Run::command("the upgrade child", command);
    let line = block_in_place(|| run.line(|l| l.contains("upgraded false")));
    let (old, addr) = parse(&line);
    assert_eq!(served_by(addr, &pki).await.unwrap(), old);

    // Requests on fresh connections all along.
    let (stop, failed, ok) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let load = tokio::spawn({
        let (stop, failed, ok, pki) = (stop.clone(), failed.clone(), ok.clone(), pki.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                match served_by(addr, &pki).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }
    });

    pki.renew_certificate_only("second");
    run.signal(libc::SIGQUIT);
    // The new process starts, then its worker cannot load the files.
    let new = new_process(&mut run);
    block_in_place(|| wait_gone(new));
    let before = ok.load(Ordering::Relaxed);
    test_support::eventually(
        || ok.load(Ordering::Relaxed) >= before + 20,
        "requests after the failed upgrade",
    )
    .await;
    assert!(alive(old), "the old process stopped");
    assert_eq!(served_by(addr, &pki).await.unwrap(), old);

    // The files whole again: the next SIGQUIT upgrades.
    pki.issue("third");
    run.signal(libc::SIGQUIT);
    let newer = new_process(&mut run);
    block_in_place(|| run.line(|l| l.contains("upgraded true")));
    let status = block_in_place(|| run.exit_status());
    assert!(status.success(), "the old process: {status}");
    assert_eq!(served_by(addr, &pki).await.unwrap(), newer);
    stop.store(true, Ordering::Relaxed);
    tokio::time::timeout(DEADLINE, load).await.unwrap().unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed requests ({} served)",
        ok.load(Ordering::Relaxed)
    );
    test_support::signal(newer, libc::SIGTERM);
    block_in_place(|| wait_gone(newer));
}
