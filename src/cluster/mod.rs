//! Cluster: which peers are ready, and moving connections from a node that holds more than its
//! share to the others.
//!
//! Owns the Kubernetes membership watch ([`kube`]: the EndpointSlices of the headless Service),
//! the pure shedding decision (`shed.rs`), and the loop that, once a second, reads the peers'
//! connection counts from the backplane's node registry (the source of counts, and of peers
//! when Kubernetes membership is off or has not answered yet) and, on a node above the mean by
//! more than `cluster.rebalance_tolerance`, advises a few clients at a time to reconnect
//! elsewhere (`system` `draining` with `reason: "rebalance"`, then close 1012: the transport
//! writes the frame and closes). Imports commands (the node), routing (to pick connections),
//! backplane, protocol and telemetry; never transport.

pub mod kube;
mod shed;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::backplane::{Inbound, NodeInfo};
use crate::commands::Node;
use crate::protocol::system_frame;
use crate::telemetry::metrics;

pub use self::kube::Peers;
pub use shed::{Census, Shedder};

/// How often the loop looks at the cluster; the rate of shedding is per this period.
const TICK: Duration = Duration::from_secs(1);
/// Time an advised client gets, beyond its `reconnect_after_ms`, to show up on another node.
const RECONNECT_MARGIN: Duration = Duration::from_secs(5);

/// The other ready nodes' connection counts: every node of the registry but this one, and,
/// when Kubernetes membership has answered, only those it lists as ready.
pub fn others(own: &str, registry: &[NodeInfo], ready: Option<&BTreeSet<String>>) -> Vec<u64> {
    registry
        .iter()
        .filter(|n| n.node != own && ready.is_none_or(|r| r.contains(&n.node)))
        .map(|n| n.connections)
        .collect()
}

/// Runs until `stop` or the node drains: keeps `arqonbus_cluster_peers` up to date and, with
/// `cluster.rebalance` on, sheds connections above the mean.
pub async fn run(node: Arc<Node>, peers: Option<Peers>, stop: CancellationToken) {
    let c = &node.config.cluster;
    let jitter = Duration::from_millis(node.config.server.drain_jitter_ms);
    let mut shedder = Shedder::new(c.rebalance_tolerance, u64::from(c.rebalance_rate_per_s), jitter + RECONNECT_MARGIN);
    let deadline = Duration::from_millis(node.config.backplane.command_timeout_ms);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if node.is_draining() {
            return;
        }
        let registry = match tokio::time::timeout(deadline, node.backplane.nodes()).await {
            Ok(Ok(r)) => r,
            _ => continue, // the backplane is away: nobody sheds blind
        };
        let ready = peers.as_ref().and_then(Peers::current);
        let others = others(&node.id, &registry, ready.as_deref());
        metrics().cluster_peers.set(others.len() as i64 + 1);
        if !c.rebalance {
            continue;
        }
        let now = Instant::now();
        let census = Census { own: node.router.connections(), others: &others, draining: node.is_draining(), now };
        let n = shedder.decide(census);
        if n > 0 {
            tracing::info!(own = census.own, ?others, shed = n, "above the cluster mean: advising clients to move");
            let advised = advise(&node, n, &stop).await;
            shedder.shed(advised, now);
        }
    }
}

/// Advises up to `n` clients, spread evenly over one tick, to reconnect elsewhere; returns how
/// many were advised. Stops when the node drains.
async fn advise(node: &Node, n: u64, stop: &CancellationToken) -> u64 {
    let picked = node.router.pick(usize::try_from(n).unwrap_or(usize::MAX));
    let gap = TICK / u32::try_from(picked.len().max(1)).unwrap_or(u32::MAX);
    let jitter = u128::from(node.config.server.drain_jitter_ms);
    let mut advised = 0;
    for conn in picked {
        if stop.is_cancelled() || node.is_draining() {
            break;
        }
        let after = (uuid::Uuid::new_v4().as_u128() % (jitter + 1)) as u64;
        let frame = system_frame("draining", None, &json!({ "reason": "rebalance", "reconnect_after_ms": after }));
        if conn.advise_reconnect(frame) {
            advised += 1;
            metrics().rebalance_shed.inc();
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(gap) => {}
        }
    }
    advised
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, connections: u64) -> NodeInfo {
        NodeInfo { node: id.into(), connections, last_seen: String::new() }
    }

    #[test]
    fn others_leave_out_this_node_and_peers_kubernetes_does_not_list_as_ready() {
        let registry = [node("a", 600), node("b", 10), node("c", 20)];
        assert_eq!(others("a", &registry, None), [10, 20]);
        let ready: BTreeSet<String> = ["a", "c", "d"].iter().map(|s| s.to_string()).collect();
        // b is unready (draining, or not yet serving); d is ready but not yet registered.
        assert_eq!(others("a", &registry, Some(&ready)), [20]);
        assert!(others("a", &[node("a", 5)], None).is_empty());
    }
}
