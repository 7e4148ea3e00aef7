//! The Grafana dashboard (docs/grafana/arqonbus.json) is importable and every PromQL expression
//! in it refers only to metric families that a running node's `/metrics` exports.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// Every `arqonbus_*` family an expression names (histogram series mapped to their family).
fn families(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("arqonbus_") {
        let name: String = rest[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        rest = &rest[i + name.len()..];
        let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name);
        out.push(family.to_owned());
    }
    out
}

#[tokio::test]
async fn every_dashboard_expression_uses_exported_families() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/grafana/arqonbus.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert_eq!(dash["uid"], "arqonbus");
    let exprs: Vec<String> = dash["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().expect("an expr").to_owned())
        .collect();
    assert!(exprs.len() >= 14, "{exprs:?}");
    // A node with some traffic, so that every family has a sample.
    let mut cfg = config();
    cfg.http.api_key = Some("dashboard-key-0123456789".into());
    let node = start(cfg).await;
    let mut c = Client::connect(node.addr()).await;
    c.subscribe("d", "c").await;
    c.publish("d", "c", json!(1)).await;
    c.event().await;
    c.ok("history", json!({"room":"d","channel":"c"})).await;
    c.err("history", json!({"room":"d","channel":"bad name"}), "VALIDATION_ERROR").await;
    let auth = [("authorization", "Bearer dashboard-key-0123456789")];
    assert_eq!(
        http(node.addr(), "POST", "/v1/publish", &auth, r#"{"room":"d","channel":"c","payload":2}"#).await.0,
        200
    );
    let (_, metrics) = http(node.addr(), "GET", "/metrics", &[], "").await;
    let exported: BTreeSet<String> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect();
    for expr in &exprs {
        for family in families(expr) {
            assert!(exported.contains(&family), "{family} (in `{expr}`) is not exported: {exported:?}");
        }
    }
}
