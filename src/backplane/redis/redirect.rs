//! Redis Cluster: the publish script follows `MOVED`.
//!
//! The publish is written at most once (`max_attempts` 1), so that a cut connection never
//! makes it run twice behind the client's back. fred counts a redirected send as another
//! attempt, though, so with one attempt it does not follow redirects itself:
//! - On `MOVED` it refreshes its slot map, then answers "Too many failed write attempts.",
//!   which is also its answer when the connection was cut after the write (outcome unknown).
//!   The two are told apart by fred's connection errors: none during the call means a
//!   redirect, and the script, which did not run, is sent again, now to the new master (at
//!   most [`TRIES`] sends, all within the publish's deadline).
//! - On `ASK` (the slot is migrating and the channel's keys already left) it answers "Max
//!   attempts reached." and re-opens its command connections: the publish did not run and is
//!   answered UNAVAILABLE (a limit documented in docs/operations.md). The error also ends
//!   fred's connection task for good, so [`keep_connected`] starts it again.

use fred::prelude::*;
use fred::types::config::Options;
use fred::types::CustomCommand;
use tokio::sync::broadcast::error::TryRecvError;

use super::Inner;

/// Sends of one command at most (the first included).
const TRIES: usize = 4;

/// fred's answer to a command whose one attempt a `MOVED` used up (or a cut connection).
fn used_up(e: &fred::error::Error) -> bool {
    e.details().starts_with("Too many failed write attempts")
}

/// Runs `client`'s connection task and starts it again whenever it ends before `cancel`: fred
/// ends it for good on a routing error of a command with no attempt left (an `ASK` to a
/// publish), which would leave the node without Redis.
pub(super) async fn keep_connected<C: ClientLike>(client: C, cancel: tokio_util::sync::CancellationToken) {
    loop {
        let task = client.connect();
        let ended = tokio::select! {
            _ = cancel.cancelled() => return,
            ended = task => ended,
        };
        if cancel.is_cancelled() {
            return;
        }
        let why = match ended {
            Ok(Ok(())) => "it ended".to_owned(),
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::warn!(error = %why, "redis connection task ended; starting it again");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Sends `cmd` with `opts` (one attempt), sending it again after a `MOVED`.
pub(super) async fn send(
    inner: &Inner,
    opts: &Options,
    cmd: CustomCommand,
    args: Vec<Value>,
    slot: u16,
) -> Result<Value, fred::error::Error> {
    let mut tries = 0;
    loop {
        tries += 1;
        let mut errors = inner.client.error_rx();
        let r = inner.client.with_options(opts).custom::<Value, Value>(cmd.clone(), args.clone()).await;
        match r {
            // No connection broke meanwhile: a MOVED, not run.
            Err(e) if tries < TRIES && used_up(&e) && matches!(errors.try_recv(), Err(TryRecvError::Empty)) => {
                tracing::debug!(slot, "publish redirected (MOVED); sending it to the new master");
            }
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_used_up_attempt_is_recognized() {
        assert!(used_up(&fred::error::Error::new(ErrorKind::Unknown, "Too many failed write attempts.")));
        assert!(!used_up(&fred::error::Error::new(ErrorKind::Routing, "Max attempts reached.")));
        assert!(!used_up(&fred::error::Error::new(ErrorKind::IO, "reset")));
    }
}
