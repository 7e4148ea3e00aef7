//! Memory pressure. A full Redis (`maxmemory` reached, `noeviction`) refuses a script's first
//! write with `OOM …`; the script then has changed nothing (Redis refuses only a first write,
//! so a script is never cut in half). Such a publish is answered UNAVAILABLE with the reason,
//! never acked, and counted; the node warns at most every [`WARN_EVERY`]. Reads, pub/sub and
//! so readiness keep working.
//!
//! An evicting policy that drops a channel's keys is detected by the scripts (see
//! `scripts.rs`): a missing meta hash makes the channel start again under a new epoch, a stream
//! missing before its expiry makes the meta hash take a new epoch. Either way clients see
//! `history_lost` and `recovered:false`, never offsets that restart silently.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::backplane::BackplaneError;
use crate::telemetry::metrics;

/// Least time between two warnings about a full Redis.
const WARN_EVERY: Duration = Duration::from_secs(10);

static WARNED_AT: Mutex<Option<Instant>> = Mutex::new(None);

/// Whether Redis refused a command because it is out of memory.
pub(super) fn is_oom(e: &fred::error::Error) -> bool {
    e.details().starts_with("OOM ") || e.details().contains("OOM command not allowed")
}

/// Counts a publish refused by a full Redis and warns (rate-limited).
pub(super) fn publish_refused(e: &BackplaneError) {
    let BackplaneError::OutOfMemory(detail) = e else { return };
    metrics().backplane_publish_failures.with_label_values(&["out_of_memory"]).inc();
    let mut at = crate::sync::lock(&WARNED_AT);
    if at.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
        *at = Some(Instant::now());
        tracing::warn!(
            error = %detail,
            "redis is out of memory (maxmemory reached): publishes are refused with UNAVAILABLE until memory is freed or the limit raised"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fred::error::{Error, ErrorKind};

    #[test]
    fn an_oom_reply_is_recognised_also_from_inside_a_script() {
        let direct = Error::new(ErrorKind::Unknown, "OOM command not allowed when used memory > 'maxmemory'.");
        let scripted = Error::new(
            ErrorKind::Unknown,
            "ERR Error running script (call to f_x): @user_script:12: OOM command not allowed when used memory > 'maxmemory'.",
        );
        assert!(is_oom(&direct));
        assert!(is_oom(&scripted));
        assert!(!is_oom(&Error::new(ErrorKind::Unknown, "ERR wrong number of arguments")));
    }
}
