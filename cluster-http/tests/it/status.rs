//! The status page: JSON with `?format=json`, and HTML checked in a real
//! browser (headless Chromium, when installed): one row per slot, each
//! with its sparklines; a screenshot is saved under `target/`.

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

    // A second of samples builds each slot's series: wait (under load) for
    // a few points, then every series is as long as the slot's others.
    let load = test_support::Load::start(addr, 2, false);
    let end = tokio::time::Instant::now() + common::DEADLINE;
    let status = loop {
        let reply = common::get(addr, "/status?format=json").await.unwrap();
        let status: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        let sampled = status["slots"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["series"]["rps"].as_array().is_some_and(|r| r.len() >= 3));
        if sampled {
            break status;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "no three samples of every slot: {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(
        status["rss_bytes"].as_u64().is_some_and(|b| b > 0),
        "{status}"
    );
    let mut busy = 0.0;
    for slot in status["slots"].as_array().unwrap() {
        let series = &slot["series"];
        let n = series["rps"].as_array().unwrap().len();
        assert_eq!(series["p99_ms"].as_array().unwrap().len(), n, "{slot}");
        assert_eq!(series["cpu_percent"].as_array().unwrap().len(), n, "{slot}");
        busy += series["rps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .sum::<f64>();
        // Each worker thread's CPU is read from /proc.
        assert!(slot["cpu_percent"].as_f64().is_some(), "{slot}");
    }
    assert!(busy > 0.0, "requests served and no rate shown: {status}");

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
            let browser = chromium.clone();
            let dom = tokio::task::spawn_blocking(move || dump_dom(&browser, addr.port()))
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
            for row in rows {
                let row = &row[..row.find("</tr>").unwrap()];
                let sparks: Vec<&str> = row.split("<svg ").skip(1).collect();
                assert_eq!(sparks.len(), 2, "two sparklines in {row}");
                for svg in sparks {
                    let attr = |name: &str| {
                        let key = format!(" {name}=\"");
                        let start = svg.find(&key).unwrap() + key.len();
                        &svg[start..start + svg[start..].find('"').unwrap()]
                    };
                    let n: usize = attr("data-points").parse().unwrap();
                    assert!(n >= 3, "{svg}");
                    assert_eq!(attr("points").split(' ').count(), n, "{svg}");
                }
            }
            let png = tokio::task::spawn_blocking(move || screenshot(&chromium, addr.port()))
                .await
                .unwrap();
            assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        }
    }
    // The load ran through the browser's visits (the picture shows it).
    let (_, failed, _) = tokio::task::block_in_place(|| load.finish());
    assert_eq!(failed, 0);

    // A panic restarts its worker (on_panic = restart): its slot shows why,
    // escaped, in both forms.
    let _ = common::get(addr, "/panic").await;
    let end = tokio::time::Instant::now() + common::DEADLINE;
    let failed_slot = loop {
        let reply = common::get(addr, "/status?format=json").await.unwrap();
        let status: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        let failed = status["slots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["last_failure"].is_string())
            .cloned();
        if let Some(slot) = failed {
            break slot;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "no failure shown: {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let reason = failed_slot["last_failure"].as_str().unwrap();
    assert!(reason.contains("panicked"), "{failed_slot}");
    let html = common::get(addr, "/status").await.unwrap().body;
    assert!(
        html.contains("<td class=\"failure\">returned an error: a connection"),
        "{html}"
    );
    stop(&running.cluster).await;
}

/// Chromium's picture of the page, saved as `target/tmp/status.png`.
fn screenshot(chromium: &std::path::Path, port: u16) -> Vec<u8> {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let profile = dir.join(format!("chromium-shot-{}", std::process::id()));
    let out = dir.join("status.png");
    let _ = std::fs::remove_file(&out);
    let mut child = Command::new(chromium)
        .args(CHROMIUM_FLAGS)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--window-size=1280,300")
        .arg(format!("--screenshot={}", out.display()))
        .arg(format!("http://127.0.0.1:{port}/status"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = test_support::wait_exit(&mut child, "chromium");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(status.success(), "chromium: {status}");
    eprintln!("status page screenshot: {}", out.display());
    std::fs::read(&out).unwrap_or_default()
}

const CHROMIUM_FLAGS: [&str; 7] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
];

/// The DOM Chromium builds from the page, with a fresh profile.
fn dump_dom(chromium: &std::path::Path, port: u16) -> String {
    let profile = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("chromium-profile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&profile);
    let out = std::env::temp_dir().join(format!("status-dom-{}.html", std::process::id()));
    let mut child = Command::new(chromium)
        .args(CHROMIUM_FLAGS)
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
