//! A Sentinel-managed pair: one master, one replica, three sentinels.

use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use super::process::{free_port, poll, Proc};
use super::redis::{answers_ping, redis_cli, Redis, RedisOpts};

/// The monitored service's name.
const SERVICE: &str = "arqonbus";
/// How long the topology may take to settle (sentinels find each other every ~2 s).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// One `redis-server --sentinel` process.
struct Sentinel {
    // Declared before `dir`: the process dies before its directory is removed.
    proc: Proc,
    port: u16,
    _dir: TempDir,
}

impl Sentinel {
    fn start(master_port: u16) -> Sentinel {
        let dir = tempfile::Builder::new().prefix("arqonbus-sentinel-").tempdir().expect("temp dir");
        for attempt in 1..=3 {
            let port = free_port();
            let mut conf = String::new();
            let _ = writeln!(conf, "port {port}\nbind 127.0.0.1\ndaemonize no");
            let _ = writeln!(conf, "dir \"{}\"", dir.path().to_str().expect("temp dir path is UTF-8"));
            let _ = writeln!(conf, "sentinel monitor {SERVICE} 127.0.0.1 {master_port} 2");
            let _ = writeln!(conf, "sentinel down-after-milliseconds {SERVICE} 1000");
            let _ = writeln!(conf, "sentinel failover-timeout {SERVICE} 5000");
            let _ = writeln!(conf, "sentinel parallel-syncs {SERVICE} 1");
            // Sentinel rewrites its config file, so it lives in the temp dir too.
            let file = dir.path().join("sentinel.conf");
            std::fs::write(&file, conf).expect("write sentinel.conf");
            let mut cmd = Command::new("redis-server");
            cmd.arg(&file).arg("--sentinel").current_dir(dir.path());
            let mut proc = Proc::spawn(&format!("redis-sentinel :{port}"), cmd, &dir.path().join("sentinel.log"));
            let up = poll(Duration::from_secs(10), || {
                if proc.exited().is_some() {
                    return Some(false);
                }
                answers_ping(port, None).then_some(true)
            });
            if up == Some(true) {
                return Sentinel { proc, port, _dir: dir };
            }
            proc.kill();
            let log = proc.log_tail();
            if attempt == 3 || !log.contains("Address already in use") {
                panic!("sentinel on port {port} did not answer PING:\n{log}");
            }
        }
        unreachable!()
    }

    fn cli(&self, args: &[&str]) -> String {
        redis_cli(self.port, None, args)
    }
}

/// A master, its replica and three sentinels (quorum 2, `down-after-milliseconds` 1000,
/// `failover-timeout` 5000); everything is killed when dropped.
///
/// Methods block (they run `redis-cli` and poll).
pub struct RedisSentinel {
    sentinels: Vec<Sentinel>,
    data: Vec<Redis>,
}

impl RedisSentinel {
    /// Starts the topology and returns once every sentinel sees the replica (link up) and
    /// the two other sentinels (`SENTINEL CKQUORUM` reports 3 usable sentinels).
    pub fn start() -> RedisSentinel {
        let master = Redis::start();
        let replica = Redis::start_with(RedisOpts {
            args: vec!["--replicaof".into(), "127.0.0.1".into(), master.port().to_string()],
            ..RedisOpts::default()
        });
        // Sentinels find replicas through the master's INFO; have the replica attached first.
        let attached = poll(SETTLE_TIMEOUT, || {
            replica.cli(&["INFO", "replication"]).contains("master_link_status:up").then_some(())
        });
        if attached.is_none() {
            panic!("the replica never synced with the master:\n{}", replica.log());
        }
        let sentinels = (0..3).map(|_| Sentinel::start(master.port())).collect();
        let topo = RedisSentinel { sentinels, data: vec![master, replica] };
        topo.wait_settled();
        topo
    }

    fn wait_settled(&self) {
        let replica = self.data[1].port().to_string();
        let settled = poll(SETTLE_TIMEOUT, || {
            self.sentinels
                .iter()
                .all(|s| {
                    let quorum = s.cli(&["SENTINEL", "CKQUORUM", SERVICE]);
                    let replicas = s.cli(&["SENTINEL", "REPLICAS", SERVICE]);
                    let replicas = fields(&replicas);
                    quorum.starts_with("OK 3 usable")
                        && replicas.get("port") == Some(&replica.as_str())
                        && replicas.get("flags") == Some(&"slave")
                        && replicas.get("master-link-status") == Some(&"ok")
                })
                .then_some(())
        });
        if settled.is_none() {
            let views: Vec<String> = self
                .sentinels
                .iter()
                .map(|s| {
                    format!(
                        ":{} → {}\n{}",
                        s.port,
                        s.cli(&["SENTINEL", "CKQUORUM", SERVICE]),
                        s.cli(&["SENTINEL", "REPLICAS", SERVICE])
                    )
                })
                .collect();
            panic!("the sentinels did not settle in {SETTLE_TIMEOUT:?}:\n{}", views.join("\n"));
        }
    }

    /// `"arqonbus"`, the name the sentinels monitor.
    pub fn service_name(&self) -> &'static str {
        SERVICE
    }

    /// `"127.0.0.1:PORT"` of every sentinel.
    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect()
    }

    /// Client ports of the two data servers (master and replica at start, in that order).
    pub fn ports(&self) -> Vec<u16> {
        self.data.iter().map(Redis::port).collect()
    }

    /// The current master's port, as the first answering sentinel reports it
    /// (`SENTINEL get-master-addr-by-name`).
    pub fn master_port(&self) -> u16 {
        self.sentinels
            .iter()
            .find_map(master_reported_by)
            .unwrap_or_else(|| panic!("no sentinel reports a master for {SERVICE}"))
    }

    /// `redis-cli` against sentinel number `i` (0..3).
    pub fn sentinel_cli(&self, i: usize, args: &[&str]) -> String {
        self.sentinels[i].cli(args)
    }

    /// The data server on `port`, e.g. to `restart()` a killed master.
    pub fn node(&mut self, port: u16) -> &mut Redis {
        self.data.iter_mut().find(|n| n.port() == port).unwrap_or_else(|| panic!("no data server on port {port}"))
    }

    /// `SENTINEL FAILOVER` (retried while the sentinel finds no good replica yet), then waits
    /// for the new master; returns its port.
    pub fn failover(&self) -> u16 {
        let old = self.master_port();
        let asked = poll(SETTLE_TIMEOUT, || {
            let out = self.sentinels[0].cli(&["SENTINEL", "FAILOVER", SERVICE]);
            (out == "OK" || out.contains("INPROG")).then_some(())
        });
        if asked.is_none() {
            panic!("SENTINEL FAILOVER kept failing: {}", self.sentinels[0].cli(&["SENTINEL", "FAILOVER", SERVICE]));
        }
        self.wait_for_new_master(old, SETTLE_TIMEOUT)
    }

    /// SIGKILLs the current master; returns its port. The sentinels promote the replica
    /// (see [`RedisSentinel::wait_for_new_master`]).
    pub fn kill_master(&mut self) -> u16 {
        let port = self.master_port();
        self.node(port).kill();
        port
    }

    /// Waits until every sentinel reports a master other than `old` and that server says
    /// `role:master`; returns its port.
    pub fn wait_for_new_master(&self, old: u16, timeout: Duration) -> u16 {
        let found = poll(timeout, || {
            let reported: Vec<Option<u16>> = self.sentinels.iter().map(master_reported_by).collect();
            let new = reported[0].filter(|&p| p != old)?;
            if reported.iter().any(|&p| p != Some(new)) {
                return None;
            }
            let node = self.data.iter().find(|n| n.port() == new)?;
            node.cli(&["INFO", "replication"]).contains("role:master").then_some(new)
        });
        found.unwrap_or_else(|| {
            let views: Vec<String> =
                self.sentinels.iter().map(|s| format!(":{} → {:?}", s.port, master_reported_by(s))).collect();
            panic!("no new master (old: {old}) within {timeout:?}; sentinels report: {}", views.join(", "))
        })
    }
}

fn master_reported_by(s: &Sentinel) -> Option<u16> {
    let out = s.cli(&["SENTINEL", "get-master-addr-by-name", SERVICE]);
    let mut lines = out.lines();
    match (lines.next(), lines.next()) {
        (Some(_ip), Some(port)) => port.trim().parse().ok(),
        _ => None,
    }
}

/// Key/value pairs of a flat `redis-cli` reply (one replica's map); the first value wins.
fn fields(out: &str) -> std::collections::HashMap<&str, &str> {
    let lines: Vec<&str> = out.lines().collect();
    let mut map = std::collections::HashMap::new();
    for pair in lines.chunks(2) {
        if let [k, v] = pair {
            map.entry(*k).or_insert(*v);
        }
    }
    map
}
