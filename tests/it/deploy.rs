//! The files in `deploy/` agree with the program they run (the `same_port`
//! example's flags) and with the cluster's defaults: ports, paths, drain
//! delay and shutdown timeout. The Kubernetes container's arguments are run
//! for real.

use std::path::{Path, PathBuf};
use std::time::Duration;

use test_support::{get, local, Run, DEADLINE};
use yaml_serde::Value;

fn file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(file(path)).unwrap_or_else(|e| panic!("deploy/{path}: {e}"))
}

fn yaml(path: &str) -> Value {
    yaml_serde::from_str(&read(path)).unwrap_or_else(|e| panic!("deploy/{path}: {e}"))
}

/// `v[a][b]...`, each key a map key or a list index.
fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, key| match key.parse::<usize>() {
        Ok(i) => &v[i],
        Err(_) => &v[*key],
    })
}

fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    at(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path:?} is not a string"))
}

fn number(v: &Value, path: &[&str]) -> u64 {
    at(v, path)
        .as_u64()
        .unwrap_or_else(|| panic!("{path:?} is not a number"))
}

/// The value after `name` in a command line.
fn flag<'a>(args: &'a [String], name: &str) -> &'a str {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .unwrap_or_else(|| panic!("no {name} in {args:?}"))
}

fn duration(text: &str) -> Duration {
    humantime::parse_duration(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

/// The cluster's default shutdown timeout (what the programs run with).
fn shutdown_timeout() -> Duration {
    cluster_thread::DEFAULT_SHUTDOWN_TIMEOUT
}

#[test]
fn kubernetes_manifests_agree_with_same_port_and_the_defaults() {
    let d = yaml("kubernetes/deployment.yaml");
    assert_eq!(
        (text(&d, &["apiVersion"]), text(&d, &["kind"])),
        ("apps/v1", "Deployment")
    );
    let labels = at(&d, &["spec", "template", "metadata", "labels"]);
    assert_eq!(at(&d, &["spec", "selector", "matchLabels"]), labels);
    let pod = at(&d, &["spec", "template", "spec"]);
    let c = at(pod, &["containers", "0"]);
    let args: Vec<String> = at(c, &["args"])
        .as_sequence()
        .expect("container args")
        .iter()
        .map(|a| a.as_str().expect("string args").to_owned())
        .collect();
    let port: u64 = flag(&args, "--port").parse().unwrap();
    let healthz = flag(&args, "--healthz");
    let delay = duration(flag(&args, "--drain-delay"));

    let ports = at(c, &["ports"]).as_sequence().unwrap();
    assert!(
        ports
            .iter()
            .any(|p| text(p, &["name"]) == "http" && number(p, &["containerPort"]) == port),
        "no port `http` = {port} in {ports:?}"
    );
    assert_eq!(text(c, &["readinessProbe", "httpGet", "path"]), healthz);
    assert_eq!(text(c, &["readinessProbe", "httpGet", "port"]), "http");
    // /healthz is 503 on purpose while draining: liveness must not use it.
    assert!(at(c, &["livenessProbe", "httpGet"]).is_null());
    assert_eq!(text(c, &["livenessProbe", "tcpSocket", "port"]), "http");
    assert!(
        at(c, &["lifecycle", "preStop"]).is_null(),
        "no preStop: the drain delay does its work"
    );
    let grace = Duration::from_secs(number(pod, &["terminationGracePeriodSeconds"]));
    assert!(
        grace > delay + shutdown_timeout(),
        "terminationGracePeriodSeconds {grace:?} <= drain delay {delay:?} + shutdown timeout {:?}",
        shutdown_timeout()
    );
    for resource in ["cpu", "memory"] {
        assert!(at(c, &["resources", "requests", resource]).is_string());
        assert!(!at(c, &["resources", "limits", resource]).is_null());
    }

    let s = yaml("kubernetes/service.yaml");
    assert_eq!(text(&s, &["kind"]), "Service");
    assert_eq!(at(&s, &["spec", "selector"]), labels);
    assert_eq!(text(&s, &["spec", "ports", "0", "targetPort"]), "http");

    // The container's arguments, run: every flag is one same_port takes.
    let mut local_args: Vec<&str> = args.iter().map(String::as_str).collect();
    let i = local_args.iter().position(|a| *a == "--port").unwrap();
    local_args[i + 1] = "0";
    let mut run = Run::start("same_port", &local_args);
    let addr = local(&run.line(|l| l.starts_with("listening on ")));
    assert_eq!(get(addr, healthz).unwrap().status, 200);
    assert_eq!(get(addr, flag(&args, "--metrics")).unwrap().status, 200);
    // As the kubelet stops it: SIGTERM, and /healthz turns 503 at once.
    run.signal(libc::SIGTERM);
    let end = std::time::Instant::now() + DEADLINE;
    while get(addr, healthz).unwrap().status != 503 {
        assert!(std::time::Instant::now() < end, "{healthz} still 200");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(get(addr, "/").unwrap().status, 200);
    assert!(run.exit_status().success());
}

/// `Key=value` lines of a systemd unit, by key (comments and sections skipped).
fn unit(path: &str) -> Vec<(String, String)> {
    read(path)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(['#', ';', '[']))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("{path}: {l:?}"));
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect()
}

fn key<'a>(unit: &'a [(String, String)], name: &str) -> &'a str {
    unit.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name}="))
}

/// The flags of the program the systemd service runs.
fn service_args() -> Vec<String> {
    let service = unit("systemd/cluster-app.service");
    key(&service, "ExecStart")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn systemd_units_agree_with_same_port_and_the_defaults() {
    let service = unit("systemd/cluster-app.service");
    let socket = unit("systemd/cluster-app.socket");
    let args = service_args();
    assert!(args[0].ends_with("/same_port"), "{args:?}");
    // same_port listens on 0.0.0.0:PORT: the socket it takes is that address.
    assert_eq!(
        key(&socket, "ListenStream"),
        format!("0.0.0.0:{}", flag(&args, "--port"))
    );
    assert!(!key(&socket, "FileDescriptorName").is_empty());
    assert_eq!(key(&service, "Type"), "notify");
    assert_eq!(key(&service, "NotifyAccess"), "all");
    assert_eq!(key(&service, "ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(key(&service, "Requires"), "cluster-app.socket");
    let delay = duration(flag(&args, "--drain-delay"));
    let stop = duration(key(&service, "TimeoutStopSec"));
    assert!(
        stop > delay + shutdown_timeout(),
        "TimeoutStopSec {stop:?} <= drain delay {delay:?} + shutdown timeout"
    );
    let watchdog = duration(key(&service, "WatchdogSec"));
    assert!(watchdog >= Duration::from_secs(1), "{watchdog:?}");
}

#[test]
fn haproxy_and_nginx_configs_agree_with_the_hosts() {
    let args = service_args();
    let (port, healthz) = (flag(&args, "--port"), flag(&args, "--healthz"));
    let delay = duration(flag(&args, "--drain-delay"));

    let haproxy = read("haproxy.cfg");
    let lines: Vec<&str> = haproxy.lines().map(str::trim).collect();
    assert!(lines.contains(&format!("option httpchk GET {healthz}").as_str()));
    assert!(lines.contains(&"http-check expect status 200"));
    let servers: Vec<&&str> = lines.iter().filter(|l| l.starts_with("server ")).collect();
    assert!(servers.len() >= 2, "{servers:?}");
    for s in &servers {
        assert!(s.contains(&format!(":{port} check")), "{s}");
    }
    // Out of the pool (fall × inter) before the drain delay ends.
    let defaults = lines
        .iter()
        .find(|l| l.starts_with("default-server "))
        .expect("default-server");
    let word = |name: &str| {
        let words: Vec<&str> = defaults.split_whitespace().collect();
        let i = words.iter().position(|w| *w == name).expect(name);
        words[i + 1].to_owned()
    };
    let inter = duration(&word("inter"));
    let fall: u32 = word("fall").parse().unwrap();
    assert!(inter * fall < delay, "{fall} × {inter:?} >= {delay:?}");

    let nginx = read("nginx.conf");
    let upstreams: Vec<&str> = nginx
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("server ") && l.contains(':'))
        .collect();
    assert!(upstreams.len() >= 2, "{upstreams:?}");
    for u in &upstreams {
        assert!(u.contains(&format!(":{port} ")), "{u}");
    }
    assert!(
        nginx.contains("proxy_next_upstream error"),
        "nginx retries refused hosts"
    );
}

/// With HAProxy installed (as .ci/run does), the example config is valid.
#[test]
fn haproxy_accepts_the_example_config() {
    let Some(haproxy) = test_support::tool(&["haproxy"], "haproxy") else {
        return;
    };
    let out = std::process::Command::new(haproxy)
        .arg("-c")
        .arg("-f")
        .arg(file("haproxy.cfg"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
