//! A Redis Cluster, each node a [`Redis`] with `cluster-enabled yes`: masters only, or with a
//! replica per master; slots moved by `redis-cli --cluster reshard`, masters failed over.

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
        Self::create(masters, 0)
    }

    /// `masters` (at least 3) masters with `replicas` replicas each, by `redis-cli --cluster
    /// create`; returns once every node reports `cluster_state:ok`.
    fn create(masters: usize, replicas: usize) -> RedisCluster {
        assert!(masters >= 3, "Redis Cluster needs at least 3 masters");
        let nodes: Vec<Redis> = (0..masters * (1 + replicas))
            .map(|_| Redis::start_with(RedisOpts { cluster: true, ..RedisOpts::default() }))
            .collect();
        let cluster = RedisCluster { nodes };
        let mut args: Vec<String> = vec!["create".into()];
        args.extend(cluster.ports().iter().map(|p| format!("127.0.0.1:{p}")));
        args.extend(["--cluster-replicas".into(), replicas.to_string()]);
        cluster_tool(&args);
        cluster.wait_ok(OK_TIMEOUT);
        cluster
    }

    /// `masters` (at least 3) masters with one replica each (`--cluster-replicas 1`); returns
    /// once every node reports `cluster_state:ok` and every replica is in sync.
    pub fn start_with_replicas(masters: usize) -> RedisCluster {
        let cluster = Self::create(masters, 1);
        let synced = poll(OK_TIMEOUT, || {
            cluster
                .masters()
                .iter()
                .all(|m| {
                    cluster
                        .replica_of(*m)
                        .is_some_and(|r| cluster.cli(r, &["INFO", "replication"]).contains("master_link_status:up"))
                })
                .then_some(())
        });
        assert!(synced.is_some(), "replicas not in sync:\n{}", cluster.cli(cluster.ports()[0], &["CLUSTER", "NODES"]));
        cluster
    }

    /// `CLUSTER NODES` of the first running node: `(id, port, master?, id of its master)`.
    fn node_table(&self) -> Vec<(String, u16, bool, String)> {
        let seed = self.nodes.iter().find(|n| n.pid().is_some()).expect("a running node").port();
        self.cli(seed, &["CLUSTER", "NODES"])
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let port = f.get(1)?.split(['@', ',']).next()?.rsplit(':').next()?.parse().ok()?;
                let master = f.get(2)?.contains("master");
                Some((f[0].to_owned(), port, master, f.get(3)?.to_string()))
            })
            .collect()
    }

    /// Client ports of the masters, as the first running node sees them.
    pub fn masters(&self) -> Vec<u16> {
        self.node_table().into_iter().filter(|n| n.2).map(|n| n.1).collect()
    }

    /// The node id of the node on `port`.
    pub fn node_id(&self, port: u16) -> String {
        self.cli(port, &["CLUSTER", "MYID"])
    }

    /// The client port of a replica of the master on `master`, if it has one.
    pub fn replica_of(&self, master: u16) -> Option<u16> {
        let id = self.node_id(master);
        self.node_table().into_iter().find(|n| !n.2 && n.3 == id).map(|n| n.1)
    }

    /// The first `count` hash slots the master on `port` serves, ascending: what `redis-cli
    /// --cluster reshard` moves first from that master.
    pub fn first_slots(&self, port: u16, count: usize) -> Vec<u16> {
        let mut slots = Vec::new();
        let id = self.node_id(port);
        let nodes = self.cli(port, &["CLUSTER", "NODES"]);
        for line in nodes.lines().filter(|l| l.starts_with(&id)) {
            for range in line.split_whitespace().skip(8).filter(|r| !r.starts_with('[')) {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                let (lo, hi): (u16, u16) = (lo.parse().expect("slot"), hi.parse().expect("slot"));
                slots.extend(lo..=hi);
            }
        }
        slots.sort_unstable();
        slots.truncate(count);
        slots
    }

    /// `redis-cli --cluster reshard`: moves `slots` hash slots (its lowest) from the master on
    /// `from` to the master on `to`, keys included; blocks until done and the cluster is ok.
    pub fn reshard(&self, from: u16, to: u16, slots: usize) {
        cluster_tool(&[
            "reshard".into(),
            format!("127.0.0.1:{from}"),
            "--cluster-from".into(),
            self.node_id(from),
            "--cluster-to".into(),
            self.node_id(to),
            "--cluster-slots".into(),
            slots.to_string(),
        ]);
        self.wait_ok(OK_TIMEOUT);
    }

    /// Starts moving hash slot `slot` from the master on `from` to the master on `to` by hand:
    /// `CLUSTER SETSLOT … IMPORTING` on `to`, `… MIGRATING` on `from`, then every key of the
    /// slot `MIGRATE`d. Commands for the slot's keys now get `ASK` from `from`, until
    /// [`RedisCluster::finish_slot_move`].
    pub fn begin_slot_move(&self, slot: u16, from: u16, to: u16) {
        let slot = slot.to_string();
        let (from_id, to_id) = (self.node_id(from), self.node_id(to));
        assert_eq!(self.cli(to, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]), "OK");
        assert_eq!(self.cli(from, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]), "OK");
        let keys = self.cli(from, &["CLUSTER", "GETKEYSINSLOT", &slot, "1000"]);
        let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
        if keys.is_empty() {
            return;
        }
        let port = to.to_string();
        let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
        args.extend(keys);
        assert_eq!(self.cli(from, &args), "OK", "MIGRATE");
    }

    /// Ends a move begun by [`RedisCluster::begin_slot_move`]: `CLUSTER SETSLOT … NODE` on the
    /// new owner, then on every other master.
    pub fn finish_slot_move(&self, slot: u16, to: u16) {
        let slot = slot.to_string();
        let to_id = self.node_id(to);
        assert_eq!(self.cli(to, &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]), "OK");
        for m in self.masters().into_iter().filter(|m| *m != to) {
            assert_eq!(self.cli(m, &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]), "OK", ":{m}");
        }
    }

    /// `CLUSTER FAILOVER` on the replica on `replica`: a coordinated switch-over (the master
    /// stops writes until the replica caught up). Returns once the replica is master and every
    /// node agrees.
    pub fn failover(&self, replica: u16) {
        let answer = self.cli(replica, &["CLUSTER", "FAILOVER"]);
        assert_eq!(answer, "OK", "CLUSTER FAILOVER on :{replica}");
        let id = self.node_id(replica);
        let promoted = poll(OK_TIMEOUT, || {
            let role = self.cli(replica, &["ROLE"]);
            let agreed = self
                .nodes
                .iter()
                .filter(|n| n.pid().is_some())
                .all(|n| n.cli(&["CLUSTER", "NODES"]).lines().any(|l| l.starts_with(&id) && l.contains("master")));
            (role.starts_with("master") && agreed).then_some(())
        });
        assert!(promoted.is_some(), "replica :{replica} not promoted in {OK_TIMEOUT:?}");
        self.wait_ok(OK_TIMEOUT);
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

/// `redis-cli --cluster ARGS… --cluster-yes`; panics with its output when it fails.
fn cluster_tool(args: &[String]) {
    let out = Command::new("redis-cli")
        .env_remove("REDISCLI_AUTH")
        .arg("--cluster")
        .args(args)
        .arg("--cluster-yes")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run redis-cli: {e}"));
    assert!(
        out.status.success(),
        "redis-cli --cluster {} failed:\n{}{}",
        args[0],
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
