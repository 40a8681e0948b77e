//! A local Redis Cluster as a fixture: 3 masters and 3 replicas on free ports.

use std::{
    collections::HashMap,
    process::Command,
    time::{Duration, Instant},
};

use super::{RedisServer, Resp};
use crate::wait_until;

/// How long a master may be unreachable before its replica takes over. Short, so failover
/// tests finish quickly; long enough that a busy 2-core machine does not fail over by itself.
const NODE_TIMEOUT: Duration = Duration::from_millis(2000);
/// How long the cluster may take to form, or to recover from a failover.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Slots of a Redis Cluster.
const SLOTS: u16 = 16384;

/// A Redis Cluster of 3 masters, each with one replica (`redis-server --cluster-enabled yes`
/// on free ports, formed with `redis-cli --cluster create --cluster-replicas 1`), killed on
/// drop.
///
/// [`start`](Self::start) returns once every node agrees the cluster is `ok`, every replica's
/// link to its master is up, and every node knows all six. Faults are injected on single
/// nodes: [`kill`](Self::kill), [`stop`](Self::stop)/[`cont`](Self::cont) and
/// [`restart`](Self::restart) (which brings a node back with its identity, so a killed master
/// returns as a replica of its promoted one).
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

/// A node as the cluster sees it (`CLUSTER NODES`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    /// Index into the fixture's nodes.
    pub index: usize,
    /// Its port.
    pub port: u16,
    /// Whether it is a master (else a replica).
    pub master: bool,
    /// Whether the cluster considers it failed (`fail` flag).
    pub failed: bool,
}

impl RedisCluster {
    /// Starts 6 nodes and forms the cluster.
    ///
    /// # Panics
    ///
    /// Panics when `redis-server` or `redis-cli` is missing, or, with logs, when the cluster
    /// does not form within a minute.
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..6)
            .map(|_| RedisServer::start_cluster_node(NODE_TIMEOUT))
            .collect();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        create.args(["--cluster-replicas", "1", "--cluster-yes"]);
        let output = create.output().unwrap_or_else(|e| {
            panic!(
                "cannot run `redis-cli --cluster create` ({e}); install redis-tools \
                 (e.g. `apt-get install redis-server`)"
            )
        });
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_healthy();
        cluster
    }

    /// Seed URLs of every node, `redis://127.0.0.1:<port>`.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The `[redis]` target line of a Cellgate config, every node a seed:
    /// `cluster = ["redis://127.0.0.1:<port>", ...]`.
    pub fn config_target(&self) -> String {
        let seeds: Vec<String> = self.urls().iter().map(|u| format!("\"{u}\"")).collect();
        format!("cluster = [{}]", seeds.join(", "))
    }

    /// The fixture's nodes, masters and replicas alike.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Node `index`, e.g. to read its logs.
    pub fn node_mut(&mut self, index: usize) -> &mut RedisServer {
        &mut self.nodes[index]
    }

    /// The slot of `key` (`CLUSTER KEYSLOT`), asked of any live node.
    pub fn slot(&self, key: &str) -> u16 {
        let reply = self.ask_any(&["CLUSTER", "KEYSLOT", key]);
        let slot = reply
            .as_integer()
            .unwrap_or_else(|| panic!("CLUSTER KEYSLOT {key}: {reply:?}"));
        u16::try_from(slot).unwrap_or_else(|_| panic!("slot {slot} out of range"))
    }

    /// Index of the node currently serving `key`'s slot as master.
    ///
    /// # Panics
    ///
    /// When no live node claims the slot.
    pub fn master_of(&self, key: &str) -> usize {
        let slot = self.slot(key);
        self.slot_owner(slot)
            .unwrap_or_else(|| panic!("no master serves slot {slot} (key {key})"))
    }

    /// The cluster's view of every node, from the first node that answers.
    pub fn topology(&self) -> Vec<ClusterNode> {
        let text = self
            .ask_any(&["CLUSTER", "NODES"])
            .as_text()
            .unwrap_or_default();
        let by_port: HashMap<u16, usize> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.port, i))
            .collect();
        text.lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                let port: u16 = fields
                    .get(1)?
                    .split(['@', ','])
                    .next()?
                    .rsplit(':')
                    .next()?
                    .parse()
                    .ok()?;
                let flags = fields.get(2)?;
                Some(ClusterNode {
                    index: *by_port.get(&port)?,
                    port,
                    master: flags.split(',').any(|f| f == "master"),
                    failed: flags.split(',').any(|f| f == "fail"),
                })
            })
            .collect()
    }

    /// Kills node `index` (SIGKILL).
    pub fn kill(&mut self, index: usize) {
        self.nodes[index].kill();
    }

    /// Freezes node `index` (SIGSTOP).
    pub fn stop(&self, index: usize) {
        self.nodes[index].stop();
    }

    /// Resumes node `index` (SIGCONT).
    pub fn cont(&self, index: usize) {
        self.nodes[index].cont();
    }

    /// Starts node `index` again on its port with its `nodes.conf`, so it rejoins as itself
    /// (a replaced master comes back as a replica).
    pub fn restart(&mut self, index: usize) {
        self.nodes[index].restart();
    }

    /// Waits until the slot of `key` is served by a master other than `old` that every live
    /// node agrees on, and the cluster is `ok` again; returns the new master's index and how
    /// long the wait took.
    ///
    /// # Panics
    ///
    /// When that does not happen within a minute.
    pub fn wait_failover(&self, key: &str, old: usize) -> (usize, Duration) {
        let start = Instant::now();
        let slot = self.slot(key);
        let mut new = None;
        wait_until(SETTLE_TIMEOUT, "a replica to take over", || {
            new = self.slot_owner(slot).filter(|&owner| owner != old);
            new.is_some() && self.live_nodes_ok(Some(old))
        });
        (new.unwrap_or(old), start.elapsed())
    }

    /// Waits until every live node reports `cluster_state:ok` with all slots assigned and
    /// known nodes, and every replica's link to its master is up.
    ///
    /// # Panics
    ///
    /// With the nodes' logs, when that does not happen within a minute.
    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        while Instant::now() < deadline {
            if self.live_nodes_ok(None) && self.replicas_linked() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let logs: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("--- node {} ---\n{}", n.port, n.logs()))
            .collect();
        panic!(
            "the Redis Cluster did not settle; logs:\n{}",
            logs.join("\n")
        );
    }

    fn live_nodes_ok(&self, except: Option<usize>) -> bool {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != except)
            .all(|(_, node)| {
                let info = info_text(node, &["CLUSTER", "INFO"]);
                info.contains("cluster_state:ok")
                    && info.contains(&format!("cluster_slots_ok:{SLOTS}"))
            })
    }

    fn replicas_linked(&self) -> bool {
        self.nodes.iter().all(|node| {
            let info = info_text(node, &["INFO", "replication"]);
            info.contains("role:master") || info.contains("master_link_status:up")
        })
    }

    /// The node that serves `slot` according to `CLUSTER SLOTS` of the first live node.
    fn slot_owner(&self, slot: u16) -> Option<usize> {
        let reply = self.ask_any(&["CLUSTER", "SLOTS"]);
        let Resp::Array(Some(ranges)) = reply else {
            return None;
        };
        ranges.iter().find_map(|range| {
            let Resp::Array(Some(fields)) = range else {
                return None;
            };
            let start = fields.first()?.as_integer()?;
            let end = fields.get(1)?.as_integer()?;
            if !(start..=end).contains(&i64::from(slot)) {
                return None;
            }
            let Resp::Array(Some(master)) = fields.get(2)? else {
                return None;
            };
            let port = master.get(1)?.as_integer()?;
            self.nodes.iter().position(|n| i64::from(n.port) == port)
        })
    }

    /// The reply of the first node that answers `args` without an error.
    fn ask_any(&self, args: &[&str]) -> Resp {
        self.nodes
            .iter()
            .filter_map(|node| node.command(args).ok())
            .find(|reply| !matches!(reply, Resp::Error(_)))
            .unwrap_or_else(|| panic!("no cluster node answered {args:?}"))
    }
}

impl super::Redis for RedisCluster {
    fn config_target(&self) -> String {
        RedisCluster::config_target(self)
    }

    /// Sent to the master of `args[1]`'s slot, or to any node for a command without a key.
    fn command(&self, args: &[&str]) -> std::io::Result<Resp> {
        match args.get(1) {
            Some(key) => self.nodes[self.master_of(key)].command(args),
            None => Ok(self.ask_any(args)),
        }
    }
}

/// The text of an `INFO`-like reply, or empty when the node does not answer.
fn info_text(node: &RedisServer, args: &[&str]) -> String {
    node.command(args)
        .ok()
        .and_then(|reply| reply.as_text())
        .unwrap_or_default()
}
