//! Redis Cluster: the publish script follows `MOVED` and `ASK`.
//!
//! The publish is written at most once (`max_attempts` 1), so that a cut connection never
//! makes it run twice behind the client's back. fred counts a redirected send as another
//! attempt, though, so with one attempt it does not follow redirects itself:
//! - On `MOVED` it refreshes its slot map, then answers "Too many failed write attempts.",
//!   which is also its answer when the connection was cut after the write (outcome unknown).
//!   The two are told apart by fred's connection errors: none during the call means a
//!   redirect, and the script, which did not run, is sent again (now to the new master).
//! - On `ASK` it answers "Max attempts reached." (and reconnects its connections). The script
//!   did not run; the importing master is looked up (`CLUSTER NODES` of the slot's master) and
//!   the script sent there as `ASKING` + `EVALSHA`, pipelined on one connection.
//!
//! At most [`TRIES`] sends, all within the publish's deadline (the caller's).

use fred::clients::Pipeline;
use fred::prelude::*;
use fred::types::config::Options;
use fred::types::{ClusterHash, CustomCommand};
use tokio::sync::broadcast::error::TryRecvError;

use super::Inner;

/// Sends of one command at most (the first included).
const TRIES: usize = 4;

/// fred's answer to a command whose one attempt a `MOVED` used up (or a cut connection).
fn used_up(e: &fred::error::Error) -> bool {
    e.details().starts_with("Too many failed write attempts")
}

/// fred's answer to a command with one attempt that got `ASK`.
fn asked(e: &fred::error::Error) -> bool {
    matches!(e.kind(), ErrorKind::Routing) && e.details().starts_with("Max attempts reached")
}

/// Sends `cmd` with `opts` (one attempt) for the keys of `slot`, following redirects as above.
pub(super) async fn send(
    inner: &Inner,
    opts: &Options,
    cmd: CustomCommand,
    args: Vec<Value>,
    slot: u16,
) -> Result<Value, fred::error::Error> {
    let mut ask_to: Option<Server> = None;
    let mut tries = 0;
    loop {
        tries += 1;
        let mut errors = inner.client.error_rx();
        let r = match ask_to.take() {
            Some(target) => asking(inner, opts, target, cmd.clone(), args.clone()).await,
            None => inner.client.with_options(opts).custom::<Value, Value>(cmd.clone(), args.clone()).await,
        };
        let e = match r {
            Err(e) if tries < TRIES && used_up(&e) => e,
            Err(e) if tries < TRIES && asked(&e) => e,
            r => return r,
        };
        if used_up(&e) {
            if !matches!(errors.try_recv(), Err(TryRecvError::Empty)) {
                return Err(e); // a connection broke meanwhile: maybe written, outcome unknown
            }
            tracing::debug!(slot, "publish redirected (MOVED); sending it to the new master");
            continue;
        }
        // ASK: fred reconnects; the caller's deadline bounds the wait.
        let _ = inner.client.wait_for_connect().await;
        // None: the migration ended meanwhile, and fred's slot map leads to the new master.
        ask_to = importing_master(inner, opts, slot).await;
        if let Some(target) = &ask_to {
            tracing::debug!(slot, to = %target, "publish redirected (ASK); sending it to the importing master");
        }
    }
}

/// `ASKING` then `cmd`, pipelined on the connection to `target` (the flag holds for the next
/// command of that connection only).
async fn asking(
    inner: &Inner,
    opts: &Options,
    target: Server,
    cmd: CustomCommand,
    args: Vec<Value>,
) -> Result<Value, fred::error::Error> {
    let opts = Options { cluster_node: Some(target), ..opts.clone() };
    let pipe = Pipeline::from(inner.client.with_options(&opts));
    let ask = CustomCommand::new_static("ASKING", ClusterHash::FirstKey, false);
    let _: () = pipe.custom(ask, Vec::<Value>::new()).await?;
    let _: () = pipe.custom(cmd, args).await?;
    let mut results = pipe.try_all::<Value>().await;
    results.pop().unwrap_or_else(|| Err(fred::error::Error::new(ErrorKind::Unknown, "empty pipeline")))
}

/// The master `slot` is migrating to, as its current master reports (`CLUSTER NODES`), if it
/// is migrating; one of fred's connections to it.
async fn importing_master(inner: &Inner, opts: &Options, slot: u16) -> Option<Server> {
    let owner = inner.client.cached_cluster_state()?.get_server(slot)?.clone();
    let opts = Options { cluster_node: Some(owner.clone()), ..opts.clone() };
    let cmd = CustomCommand::new_static("CLUSTER", ClusterHash::FirstKey, false);
    let nodes: String = inner.client.with_options(&opts).custom(cmd, vec!["NODES"]).await.ok()?;
    let (host, port) = migrating_to(&nodes, slot, &owner.host)?;
    let known = inner.client.active_connections();
    known.into_iter().find(|s| *s.host == *host && s.port == port)
}

/// `(host, port)` of the node `CLUSTER NODES` (of the node answering) says `slot` migrates to.
fn migrating_to(nodes: &str, slot: u16, default_host: &str) -> Option<(String, u16)> {
    let mine = nodes.lines().find(|l| l.split_whitespace().nth(2).is_some_and(|f| f.contains("myself")))?;
    let target = mine.split_whitespace().skip(8).find_map(|f| {
        let (s, id) = f.strip_prefix('[')?.strip_suffix(']')?.split_once("->-")?;
        (s.parse::<u16>().ok()? == slot).then_some(id)
    })?;
    let line = nodes.lines().find(|l| l.split_whitespace().next() == Some(target))?;
    let addr = line.split_whitespace().nth(1)?.split(['@', ',']).next()?;
    let (host, port) = addr.rsplit_once(':')?;
    let host = if host.is_empty() { default_host } else { host };
    Some((host.to_owned(), port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460 [5461->-b2] [10->-c3]
b2 127.0.0.1:7002@17002 master - 0 1700000000000 2 connected 5462-10922 [5461-<-a1]
c3 :7003@17003 master - 0 1700000000000 3 connected 10923-16383";

    #[test]
    fn the_migration_target_comes_from_the_answering_nodes_line() {
        assert_eq!(migrating_to(NODES, 5461, "h"), Some(("127.0.0.1".to_owned(), 7002)));
        assert_eq!(migrating_to(NODES, 10, "h"), Some(("h".to_owned(), 7003)));
        assert_eq!(migrating_to(NODES, 11, "h"), None);
        // The importing side's line does not count.
        let importing = NODES
            .replace("myself,master", "master")
            .replace("b2 127.0.0.1:7002@17002 master", "b2 127.0.0.1:7002@17002 myself,master");
        assert_eq!(migrating_to(&importing, 5461, "h"), None);
    }

    #[test]
    fn the_answers_of_a_redirect_with_one_attempt_are_recognized() {
        assert!(used_up(&fred::error::Error::new(ErrorKind::Unknown, "Too many failed write attempts.")));
        assert!(asked(&fred::error::Error::new(ErrorKind::Routing, "Max attempts reached.")));
        assert!(!asked(&fred::error::Error::new(ErrorKind::Routing, "Failed to route command.")));
        assert!(!used_up(&fred::error::Error::new(ErrorKind::IO, "reset")));
    }
}
