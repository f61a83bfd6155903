//! The status page: JSON with `?format=json`, and HTML checked in a real
//! browser (headless Chromium, when installed): one row per slot.

use std::process::{Command, Stdio};

use crate::common::{self, serve_app, start, stop};
use cluster_http::HttpConfig;
use http::StatusCode;

fn config() -> HttpConfig {
    HttpConfig::default().status("/status").metrics("/metrics")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_has_a_row_per_slot_in_json_and_in_a_browser() {
    let running = start(3, |b| b.state(config()), serve_app(None)).await;
    let addr = running.addr;
    for _ in 0..20 {
        assert_eq!(common::get(addr, "/").await.unwrap().status, StatusCode::OK);
    }

    let reply = common::get(addr, "/status?format=json").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["content-type"], "application/json");
    let status: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(status["phase"], "listening");
    assert_eq!(status["workers"], 3);
    let slots = status["slots"].as_array().unwrap();
    assert_eq!(slots.len(), 3, "{status}");
    let mut requests = 0;
    for (i, slot) in slots.iter().enumerate() {
        assert_eq!(slot["slot"], i, "{slot}");
        assert_eq!(slot["state"], "serving", "{slot}");
        assert!(slot["worker"].as_u64().is_some_and(|w| w >= 1), "{slot}");
        assert_eq!(slot["restarts"], 0, "{slot}");
        assert!(slot["uptime_seconds"].as_f64().is_some(), "{slot}");
        requests += slot["requests"].as_u64().unwrap();
    }
    assert!(requests >= 21, "{status}");
    assert!(
        slots.iter().any(|s| s["p99_ms"].as_f64().is_some()),
        "{status}"
    );

    let html = common::get(addr, "/status").await.unwrap();
    assert_eq!(html.headers["content-type"], "text/html; charset=utf-8");
    assert!(
        html.body.contains("http-equiv=\"refresh\""),
        "{}",
        html.body
    );

    match test_support::tool(&["chromium", "chromium-browser"], "chromium") {
        None => {}
        Some(chromium) => {
            let dom = tokio::task::spawn_blocking(move || dump_dom(&chromium, addr.port()))
                .await
                .unwrap();
            let rows: Vec<&str> = dom
                .match_indices("<tr class=\"slot ")
                .map(|(i, _)| &dom[i..])
                .collect();
            assert_eq!(rows.len(), 3, "{dom}");
            for slot in 0..3 {
                assert!(
                    dom.contains(&format!(
                        "<tr class=\"slot serving\" data-slot=\"{slot}\"><td>{slot}</td>"
                    )),
                    "no row for slot {slot}: {dom}"
                );
            }
            assert!(dom.contains("<b id=\"phase\">listening</b>"), "{dom}");
        }
    }
    stop(&running.cluster).await;
}

/// The DOM Chromium builds from the page, with a fresh profile.
fn dump_dom(chromium: &std::path::Path, port: u16) -> String {
    let profile = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("chromium-profile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&profile);
    let out = std::env::temp_dir().join(format!("status-dom-{}.html", std::process::id()));
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("http://127.0.0.1:{port}/status"))
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = test_support::wait_exit(&mut child, "chromium");
    let dom = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_dir_all(&profile);
    assert!(status.success(), "chromium: {status}");
    dom
}
