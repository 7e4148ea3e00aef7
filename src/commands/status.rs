//! `status`: this node, its backplane and every live node of the cluster.

use serde_json::json;

use super::{args::Args, backplane_error, to_raw, Outcome, Session};
use crate::backplane::Inbound;
use crate::protocol::{ErrorBody, PROTOCOL_VERSION};

/// Reports node and cluster status.
pub async fn run(s: &Session, args: Args) -> Result<Outcome, ErrorBody> {
    args.finish()?;
    let node = &s.node;
    let nodes = node.backplane.nodes().await.map_err(|e| backplane_error(e, None))?;
    Ok(Outcome::Reply(to_raw(&json!({
        "node": node.id,
        "version": env!("CARGO_PKG_VERSION"),
        "protocol": PROTOCOL_VERSION,
        "uptime_s": node.started.elapsed().as_secs(),
        "connections": node.router.connections(),
        "backplane": { "kind": node.backplane.kind(), "healthy": node.backplane.healthy().await },
        "nodes": nodes,
    }))))
}
