//! The integration harness itself, against real processes: standalone Redis (restart with and
//! without AOF, ACL).

mod support;

use std::collections::BTreeSet;

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
