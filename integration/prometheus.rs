//! `/metrics` as a real Prometheus sees it: `promtool check metrics` accepts the exposition,
//! and a Prometheus server scraping a gateway process reports its connections and publishes.

mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::common::{http, Client};
use support::*;

/// A Prometheus server on a free port, scraping `target` every second; killed on drop.
struct Prometheus {
    addr: SocketAddr,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: arqonbus\n    static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = tokio::process::Command::new("prometheus")
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("prometheus runs (scripts/test.sh installs it)");
        Self { addr, _child: child, _dir: dir }
    }

    /// The value of an instant query's first sample, if there is one.
    async fn query(&self, q: &str) -> Option<f64> {
        // Not listening yet (it is starting): no answer.
        tokio::net::TcpStream::connect(self.addr).await.ok()?;
        let path = format!("/api/v1/query?query={}", encode(q));
        let (status, body) =
            tokio::time::timeout(Duration::from_secs(5), http(self.addr, "GET", &path, &[], "")).await.ok()?;
        if status != 200 {
            return None;
        }
        let v: Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Polls `q` until `pred` holds for its value (Prometheus starts, then scrapes every 1 s).
    async fn until(&self, q: &str, pred: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(45);
        loop {
            let v = self.query(q).await;
            if let Some(v) = v.filter(|v| pred(*v)) {
                return v;
            }
            assert!(Instant::now() < deadline, "Prometheus never reported {q} as expected (last: {v:?})");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_exposition() {
    let gw = Gateway::spawn(&[]).await;
    let mut c = Client::connect(gw.addr()).await;
    c.subscribe("m", "c").await;
    c.publish("m", "c", json!(1)).await;
    c.err("nope", json!({}), "UNKNOWN_COMMAND").await;
    let (status, body) = http(gw.addr(), "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    let mut check = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (scripts/test.sh installs it)");
    use tokio::io::AsyncWriteExt;
    check.stdin.take().unwrap().write_all(body.as_bytes()).await.unwrap();
    let out = check.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(body.contains("arqonbus_errors_total{code=\"UNKNOWN_COMMAND\"} 1"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_connections_and_publishes() {
    let gw = Gateway::spawn(&[]).await;
    let prom = Prometheus::start(gw.addr());
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(Client::connect(gw.addr()).await);
    }
    clients[0].subscribe("m", "c").await;
    for i in 0..5 {
        clients[1].publish("m", "c", json!(i)).await;
    }
    assert_eq!(prom.until("up{job=\"arqonbus\"}", |v| v == 1.0).await, 1.0);
    assert_eq!(prom.until("arqonbus_connections", |v| v == 3.0).await, 3.0);
    assert_eq!(prom.until("arqonbus_published_total", |v| v >= 5.0).await, 5.0);
    assert_eq!(prom.until("arqonbus_subscriptions", |v| v == 1.0).await, 1.0);
    // A client leaves: the gauge follows.
    drop(clients.pop());
    assert_eq!(prom.until("arqonbus_connections", |v| v == 2.0).await, 2.0);
}
