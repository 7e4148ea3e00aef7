//! Node lifecycle: graceful drain, and the configuration order with loud failures.

mod common;

use common::*;
use serde_json::json;
use std::process::Command;

#[tokio::test]
async fn drain_sends_draining_then_closes_with_1012() {
    let node = start(config()).await;
    let addr = node.addr();
    let mut a = Client::connect(addr).await;
    let mut b = Client::connect(addr).await;
    a.subscribe("r", "c").await;
    let stopping = tokio::spawn(node.shutdown());
    for c in [&mut a, &mut b] {
        let d = c.recv().await;
        assert_eq!(d["type"], "system");
        assert_eq!(d["event"], "draining");
        let after = d["payload"]["reconnect_after_ms"].as_u64().unwrap();
        assert!(after <= 100, "jitter is bounded by server.drain_jitter_ms: {after}");
        assert_eq!(c.closed().await, Some(1012));
    }
    tokio::time::timeout(WAIT, stopping).await.unwrap().unwrap();
    // The listener is gone after the drain.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn readiness_turns_false_before_clients_are_told_to_leave() {
    let mut cfg = config();
    cfg.server.drain_delay_ms = 1500;
    let node = start(cfg).await;
    let addr = node.addr();
    let (status, body) = http(addr, "GET", "/readyz", &[], "").await;
    assert_eq!((status, body.as_str()), (200, r#"{"ready":true}"#));
    let mut client = Client::connect(addr).await;
    let stopping = tokio::spawn(node.shutdown());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // During the drain delay the load balancer sees 503 and new connections are refused,
    // while connected clients are still served.
    let (status, body) = http(addr, "GET", "/readyz", &[], "").await;
    assert_eq!(status, 503);
    assert!(body.contains("draining"), "{body}");
    assert_eq!(Client::connect_with(addr, None).await.err(), Some(503));
    client.ok("ping", json!({})).await;
    assert_eq!(client.recv().await["event"], "draining");
    assert_eq!(client.closed().await, Some(1012));
    stopping.await.unwrap();
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_arqonbus"));
    for (k, _) in std::env::vars() {
        if k.starts_with("ARQONBUS_") {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn env_beats_file_beats_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bus.toml");
    std::fs::write(
        &file,
        "[limits]\nmax_frame_bytes = 2048\npublish_burst = 7\n[http]\napi_key = \"file-secret-0123456789\"\n",
    )
    .unwrap();
    let out = bin()
        .args(["--config", file.to_str().unwrap(), "config"])
        .env("ARQONBUS_LIMITS__MAX_FRAME_BYTES", "4096")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("max_frame_bytes = 4096"), "env wins:\n{text}");
    assert!(text.contains("publish_burst = 7"), "file beats defaults:\n{text}");
    assert!(text.contains("max_subscriptions = 256"), "defaults fill the rest:\n{text}");
    assert!(!text.contains("file-secret"), "secrets are masked:\n{text}");
}

#[test]
fn arqonbus_toml_in_the_working_directory_is_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("arqonbus.toml"), "[channels]\nhistory_size = 42\n").unwrap();
    let out = bin().arg("config").current_dir(dir.path()).output().unwrap();
    assert!(String::from_utf8(out.stdout).unwrap().contains("history_size = 42"));
}

#[test]
fn bad_configuration_stops_start_up_with_exit_64_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &str)] = &[
        ("ARQONBUS_LIMITS__MAX_FRAME_BYTES", "12", "limits.max_frame_bytes"),
        ("ARQONBUS_LIMITS__HEARTBEAT_S", "soon", "heartbeat_s"),
        ("ARQONBUS_SERVER__LISTEN", "nowhere", "server.listen"),
        ("ARQONBUS_AUTH__KIND", "jwt", "auth.jwt_secret"),
        ("ARQONBUS_AUTH__KIND", "webhook", "auth.webhook_url"),
        ("ARQONBUS_BACKPLANE__KIND", "carrier-pigeon", "kind"),
        ("ARQONBUS_NO_SUCH__KEY", "1", "no_such"),
    ];
    for (key, value, named) in cases {
        let out = bin().arg("serve").env(key, value).current_dir(dir.path()).output().unwrap();
        assert_eq!(out.status.code(), Some(64), "{key}={value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "{key}={value}: error should name {named}: {err}");
    }
    let out = bin().args(["--config", "missing.toml", "serve"]).current_dir(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[tokio::test]
async fn the_binary_serves_and_exits_0_on_sigterm() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_arqonbus"))
        .env("ARQONBUS_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("ARQONBUS_SERVER__DRAIN_JITTER_MS", "0")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut up = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(up, "the binary never listened");
    let mut c = Client::connect(addr).await;
    c.ok("ping", json!({})).await;
    let pid = child.id().unwrap().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert_eq!(c.recv().await["event"], "draining");
    assert_eq!(c.closed().await, Some(1012));
    let status = tokio::time::timeout(WAIT, child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(0));
}
