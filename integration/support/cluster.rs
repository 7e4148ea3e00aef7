//! A Redis Cluster of masters only, each a [`Redis`] with `cluster-enabled yes`.

use std::process::{Command, Stdio};
use std::time::Duration;

use super::process::poll;
use super::redis::{redis_cli, Redis, RedisOpts};

/// How long the nodes may take to agree that the cluster is up.
const OK_TIMEOUT: Duration = Duration::from_secs(20);

/// A running cluster; every node is killed when dropped.
pub struct RedisCluster {
    nodes: Vec<Redis>,
}

impl RedisCluster {
    /// `masters` (at least 3) masters without replicas, slots split evenly by
    /// `redis-cli --cluster create`; returns once every node reports `cluster_state:ok`.
    pub fn start(masters: usize) -> RedisCluster {
        assert!(masters >= 3, "Redis Cluster needs at least 3 masters");
        let nodes: Vec<Redis> =
            (0..masters).map(|_| Redis::start_with(RedisOpts { cluster: true, ..RedisOpts::default() })).collect();
        let cluster = RedisCluster { nodes };
        let addrs: Vec<String> = cluster.ports().iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = Command::new("redis-cli")
            .env_remove("REDISCLI_AUTH")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli: {e}"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_ok(OK_TIMEOUT);
        cluster
    }

    /// Waits until every running node says `cluster_state:ok` and knows every node.
    pub fn wait_ok(&self, timeout: Duration) {
        let want_known = format!("cluster_known_nodes:{}", self.nodes.len());
        let ok = poll(timeout, || {
            self.nodes
                .iter()
                .filter(|n| n.pid().is_some())
                .map(|n| n.cli(&["CLUSTER", "INFO"]))
                .all(|info| info.contains("cluster_state:ok") && info.contains(&want_known))
                .then_some(())
        });
        if ok.is_none() {
            let states: Vec<String> =
                self.nodes.iter().map(|n| format!(":{} →\n{}", n.port(), n.cli(&["CLUSTER", "INFO"]))).collect();
            panic!("the cluster did not reach cluster_state:ok in {timeout:?}:\n{}", states.join("\n"));
        }
    }

    /// Client ports of the nodes, in start order.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(Redis::port).collect()
    }

    /// `redis://127.0.0.1:PORT` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Redis::url).collect()
    }

    /// The first node's URL: enough for a cluster client to discover the rest.
    pub fn seed_url(&self) -> String {
        self.nodes[0].url()
    }

    /// `redis-cli` against the node on `port` (no redirects followed).
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        redis_cli(port, None, args)
    }

    /// `redis-cli -c` against the first node: follows MOVED/ASK like a cluster client.
    pub fn cli_c(&self, args: &[&str]) -> String {
        let mut all = vec!["-c"];
        all.extend_from_slice(args);
        redis_cli(self.nodes[0].port(), None, &all)
    }

    /// The client port of the master serving `key`'s hash slot (`CLUSTER KEYSLOT` +
    /// `CLUSTER NODES`).
    pub fn owner_of(&self, key: &str) -> u16 {
        let seed = self.nodes[0].port();
        let slot: u16 = self.cli(seed, &["CLUSTER", "KEYSLOT", key]).parse().expect("CLUSTER KEYSLOT answers a number");
        let nodes = self.cli(seed, &["CLUSTER", "NODES"]);
        for line in nodes.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 9 || !f[2].contains("master") {
                continue;
            }
            let port = f[1].split(['@', ',']).next().and_then(|a| a.rsplit(':').next()).and_then(|p| p.parse().ok());
            for range in f[8..].iter().filter(|r| !r.starts_with('[')) {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                if (lo.parse().unwrap_or(u16::MAX)..=hi.parse().unwrap_or(0)).contains(&slot) {
                    return port.unwrap_or_else(|| panic!("bad CLUSTER NODES line: {line}"));
                }
            }
        }
        panic!("no master serves slot {slot}:\n{nodes}")
    }

    /// The node on `port`, e.g. to `kill()` or `restart()` it.
    pub fn node(&mut self, port: u16) -> &mut Redis {
        self.nodes.iter_mut().find(|n| n.port() == port).unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }
}
