//! Replica-acknowledged publishes (`backplane.min_replicas_acked` > 0).
//!
//! Redis replicates asynchronously: a master that dies right after a publish can take the event
//! with it. With `min_replicas_acked` = n, the publish script and `WAIT n wait_timeout_ms` are
//! sent as one pipeline, routed by the channel's slot (on Cluster: to the master that owns it),
//! so both go out back to back on the same connection: `WAIT` counts the replicas that have
//! this connection's writes, the script's included, and cannot land on a connection opened in
//! between. The publish is acked only when at least n replicas confirmed; otherwise the event is
//! on the master but not known to be on a replica, and the caller answers TIMEOUT (outcome
//! unknown: it survives a failover or not; a retry with the same idempotency key stores it at
//! most once).
//!
//! `WAIT` holds its connection on the server until it returns, so commands behind it on the
//! node's connection wait too: with replicas that do not answer, each publish holds the
//! connection up to `wait_timeout_ms`.

use std::time::Duration;

use fred::prelude::*;
use fred::types::config::Options;
use fred::types::scripts::Script;
use fred::types::{ClusterHash, CustomCommand};

use super::{bp, bp_sent, num, Inner};
use crate::backplane::{BackplaneError, BpResult};

/// Runs `script` and `WAIT` in one pipeline; the script's result and how many replicas
/// confirmed. The same error mapping as `eval_once`: refused before the write is
/// `Unavailable`, a lost or late answer `Timeout`.
pub(super) async fn eval_and_wait(
    inner: &Inner,
    script: &Script,
    keys: Vec<String>,
    args: Vec<String>,
) -> BpResult<(Value, u64)> {
    let cfg = &inner.cfg;
    let opts = Options {
        fail_fast: true,
        max_attempts: Some(1),
        timeout: Some(Duration::from_millis(cfg.command_timeout_ms + cfg.wait_timeout_ms)),
        ..Default::default()
    };
    let (slot, all) = super::evalsha_args(script, keys, args);
    let eval = CustomCommand::new_static("EVALSHA", ClusterHash::Custom(slot), false);
    let wait = CustomCommand::new_static("WAIT", ClusterHash::Custom(slot), false);
    let wait_args = vec![Value::from(i64::from(cfg.min_replicas_acked)), Value::from(cfg.wait_timeout_ms as i64)];
    for _ in 0..2 {
        let pipeline = inner.client.pipeline();
        let queued = pipeline.with_options(&opts);
        let _: Value = queued.custom(eval.clone(), all.clone()).await.map_err(bp)?;
        let _: Value = queued.custom(wait.clone(), wait_args.clone()).await.map_err(bp)?;
        let mut results = pipeline.try_all::<Value>().await.into_iter();
        match (results.next(), results.next()) {
            (Some(Err(e)), _) if e.details().starts_with("NOSCRIPT") => {
                // Not run (nor anything written): load it and send both once more.
                script.load(&inner.client).await.map_err(bp)?;
            }
            (Some(Err(e)), _) => return Err(bp_sent(e)),
            (Some(Ok(v)), waited) => {
                let confirmed = match waited {
                    Some(Ok(n)) => num(&n).unwrap_or(0),
                    _ => 0,
                };
                return Ok((v, confirmed));
            }
            (None, _) => break,
        }
    }
    Err(BackplaneError::Internal("the publish script could not be run".into()))
}

/// The error of a publish stored on the master that too few replicas confirmed.
pub(super) fn unconfirmed(inner: &Inner, confirmed: u64) -> BackplaneError {
    crate::telemetry::metrics().backplane_publish_failures.with_label_values(&["replicas"]).inc();
    BackplaneError::Timeout(format!(
        "stored on the master, but {confirmed} of {} replicas confirmed it within {} ms",
        inner.cfg.min_replicas_acked, inner.cfg.wait_timeout_ms
    ))
}
