//! The integration harness itself, against real processes: standalone Redis (restart with and
//! without AOF, ACL), Redis Cluster, Sentinel failover, and a gateway process.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use support::common::Client;
use support::*;

/// Whether a process with this pid exists (`kill -0`).
fn alive(pid: u32) -> bool {
    std::process::Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn panic_text(e: Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
}

#[test]
fn free_ports_are_never_handed_out_twice() {
    let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
    let distinct: BTreeSet<u16> = ports.iter().copied().collect();
    assert_eq!(distinct.len(), ports.len());
    assert!(ports.iter().all(|&p| p != 0 && p != 6379 && p != 26379));
}

#[test]
fn standalone_redis_answers_on_its_own_port() {
    let r = Redis::start();
    assert_ne!(r.port(), 6379, "never the system server's port");
    assert_eq!(r.url(), format!("redis://127.0.0.1:{}", r.port()));
    assert_eq!(r.cli(&["SET", "arqonbus:k", "v"]), "OK");
    assert_eq!(r.cli(&["GET", "arqonbus:k"]), "v");
    assert!(r.cli(&["CONFIG", "GET", "dir"]).contains(r.dir().to_str().unwrap()));
}

#[test]
fn restart_keeps_data_with_aof_and_loses_it_without() {
    let mut durable = Redis::start_with(RedisOpts { aof: true, ..RedisOpts::default() });
    let port = durable.port();
    assert_eq!(durable.cli(&["SET", "arqonbus:kept", "1"]), "OK");
    durable.kill();
    assert!(!durable.is_running());
    assert!(durable.cli(&["PING"]).contains("Could not connect"), "killed means down");
    durable.restart();
    assert_eq!(durable.port(), port, "same port after restart");
    assert_eq!(durable.cli(&["GET", "arqonbus:kept"]), "1", "AOF replays after a crash");
    // A clean stop + restart (restart() stops a running server first) keeps it too.
    durable.restart();
    assert_eq!(durable.cli(&["GET", "arqonbus:kept"]), "1");

    let mut volatile = Redis::start();
    assert_eq!(volatile.cli(&["SET", "arqonbus:lost", "1"]), "OK");
    volatile.kill();
    volatile.restart();
    assert_eq!(volatile.cli(&["GET", "arqonbus:lost"]), "", "no persistence without AOF");
    assert_eq!(volatile.cli(&["DBSIZE"]), "0");
}

#[test]
fn acl_user_gets_in_and_the_default_user_is_refused() {
    let r =
        Redis::start_with(RedisOpts { acl_user: Some(("bus".into(), "s3cret pass/1".into())), ..RedisOpts::default() });
    assert_eq!(r.url(), format!("redis://bus:s3cret%20pass%2F1@127.0.0.1:{}", r.port()));
    assert_eq!(r.cli(&["SET", "arqonbus:x", "1"]), "OK");
    assert_eq!(r.cli(&["GET", "arqonbus:x"]), "1");
    assert_eq!(r.cli(&["PUBLISH", "arqonbus:events", "hi"]), "0");
    assert_eq!(r.cli(&["ACL", "WHOAMI"]), "bus");
    // Least privilege: only arqonbus:* keys and channels, no dangerous commands.
    assert!(r.cli(&["SET", "elsewhere", "1"]).starts_with("NOPERM"), "{}", r.cli(&["SET", "elsewhere", "1"]));
    assert!(r.cli(&["PUBLISH", "elsewhere", "hi"]).starts_with("NOPERM"));
    assert!(r.cli(&["FLUSHALL"]).starts_with("NOPERM"));
    assert!(r.cli(&["INFO", "replication"]).contains("role:master"), "INFO stays allowed");
    // No credentials, a guessed default password, or a wrong user password: refused.
    assert!(redis_cli(r.port(), None, &["GET", "arqonbus:x"]).starts_with("NOAUTH"));
    assert!(redis_cli(r.port(), Some(("default", "guess")), &["PING"]).contains("WRONGPASS"));
    assert!(redis_cli(r.port(), Some(("bus", "wrong")), &["PING"]).contains("WRONGPASS"));
    // The harness keeps an admin identity for itself.
    assert_eq!(r.admin_cli(&["DBSIZE"]), "1");
}

#[test]
fn cluster_of_three_masters_spreads_keys_over_all_of_them() {
    let c = RedisCluster::start(3);
    let ports = c.ports();
    assert_eq!(ports.len(), 3);
    assert_eq!(c.seed_url(), format!("redis://127.0.0.1:{}", ports[0]));
    assert_eq!(c.urls(), ports.iter().map(|p| format!("redis://127.0.0.1:{p}")).collect::<Vec<_>>());
    for &p in &ports {
        let info = c.cli(p, &["CLUSTER", "INFO"]);
        assert!(info.contains("cluster_state:ok") && info.contains("cluster_slots_assigned:16384"), "{info}");
    }
    let mut owners = BTreeSet::new();
    for i in 0..30 {
        let key = format!("arqonbus:key:{i}");
        assert_eq!(c.cli_c(&["SET", &key, &i.to_string()]), "OK");
        let owner = c.owner_of(&key);
        // The owner serves it directly (no MOVED).
        assert_eq!(c.cli(owner, &["GET", &key]), i.to_string());
        owners.insert(owner);
    }
    assert_eq!(owners, ports.iter().copied().collect(), "keys land on every master");
    let total: u64 = ports.iter().map(|&p| c.cli(p, &["DBSIZE"]).parse::<u64>().unwrap()).sum();
    assert_eq!(total, 30);
    // Hash tags keep a room's keys on one master.
    assert_eq!(c.owner_of("arqonbus:{room}:a"), c.owner_of("arqonbus:{room}:b"));
}

#[test]
fn sentinel_failover_moves_the_master_to_the_other_port() {
    let s = RedisSentinel::start();
    assert_eq!(s.service_name(), "arqonbus");
    assert_eq!(s.sentinel_addrs().len(), 3);
    assert!(s.sentinel_addrs().iter().all(|a| a.starts_with("127.0.0.1:")));
    let ports = s.ports();
    let old = s.master_port();
    assert_eq!(old, ports[0]);
    let new = s.failover();
    assert_eq!(new, ports[1], "the replica is promoted");
    assert_eq!(s.master_port(), new);
    let m = redis_cli(new, None, &["INFO", "replication"]);
    assert!(m.contains("role:master"), "{m}");
    assert_eq!(redis_cli(new, None, &["SET", "arqonbus:after", "1"]), "OK");
}

#[test]
fn sentinel_promotes_the_replica_when_the_master_is_killed() {
    let mut s = RedisSentinel::start();
    let ports = s.ports();
    let killed = s.kill_master();
    assert_eq!(killed, ports[0]);
    let new = s.wait_for_new_master(killed, Duration::from_secs(30));
    assert_eq!(new, ports[1]);
    assert_eq!(redis_cli(new, None, &["SET", "arqonbus:after", "1"]), "OK");
}

#[tokio::test]
async fn gateway_process_serves_a_client_and_exits_0_on_sigterm() {
    let mut g = Gateway::spawn(&[]).await;
    assert_eq!(g.ready().await, 200);
    g.wait_ready(200, Duration::from_secs(1)).await;
    assert_eq!(g.ws_url(), format!("ws://{}/ws", g.addr()));
    let mut c = Client::connect(g.addr()).await;
    assert!(!c.client_id.is_empty(), "{}", c.welcome);
    c.ok("ping", json!({})).await;
    g.sigterm();
    assert_eq!(c.recv().await["event"], "draining");
    assert_eq!(c.closed().await, Some(1012));
    let status = g.wait_exit().await;
    assert_eq!(status.code(), Some(0), "{}", g.output());
    assert_eq!(g.ready().await, 0, "nothing listens any more");
}

#[tokio::test]
async fn gateway_takes_extra_env_and_dies_on_kill9() {
    let mut g = Gateway::spawn(&[("ARQONBUS_SERVER__NODE_ID", "harness-node".to_string())]).await;
    let c = Client::connect(g.addr()).await;
    assert_eq!(c.welcome["payload"]["node"], "harness-node");
    let status = g.kill9();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));
    assert_eq!(g.ready().await, 0);
}

#[tokio::test]
async fn a_gateway_that_cannot_start_fails_loudly_with_its_output() {
    let failed =
        tokio::spawn(async { Gateway::spawn(&[("ARQONBUS_LIMITS__HEARTBEAT_S", "0".to_string())]).await }).await;
    let text = panic_text(failed.err().expect("spawn panics").into_panic());
    assert!(text.contains("exited") && text.contains("limits.heartbeat_s"), "{text}");
}

#[test]
fn a_redis_that_cannot_start_fails_loudly_with_its_log() {
    let failed = std::panic::catch_unwind(|| {
        Redis::start_with(RedisOpts { args: vec!["--no-such-directive".into(), "1".into()], ..RedisOpts::default() })
    });
    let text = panic_text(failed.err().expect("start panics"));
    assert!(text.contains("did not answer PING") && text.contains("no-such-directive"), "{text}");
}

#[tokio::test]
async fn dropping_a_handle_kills_its_processes() {
    let g = Gateway::spawn(&[]).await;
    let r = Redis::start();
    let (gw, redis) = (g.pid(), r.pid().unwrap());
    assert!(alive(gw) && alive(redis));
    drop(g);
    drop(r);
    assert!(!alive(gw) && !alive(redis));
    let c = RedisCluster::start(3);
    let ports = c.ports();
    drop(c);
    for p in ports {
        assert!(redis_cli(p, None, &["PING"]).contains("Could not connect"), "cluster node :{p} still up");
    }
}
