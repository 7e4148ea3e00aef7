//! The integration harness itself, against real processes: standalone Redis (restart with and
//! without AOF, ACL), Redis Cluster, Sentinel failover.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::*;

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
fn a_redis_that_cannot_start_fails_loudly_with_its_log() {
    let failed = std::panic::catch_unwind(|| {
        Redis::start_with(RedisOpts { args: vec!["--no-such-directive".into(), "1".into()], ..RedisOpts::default() })
    });
    let text = panic_text(failed.err().expect("start panics"));
    assert!(text.contains("did not answer PING") && text.contains("no-such-directive"), "{text}");
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
