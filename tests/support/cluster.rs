//! A Redis Cluster for the tests: six `redis-server --cluster-enabled yes` processes (three
//! primaries, three replicas) on free 127.0.0.1 ports, joined with `redis-cli --cluster create`,
//! each stopped by pid on drop.

use std::process::Command;
use std::time::{Duration, Instant};

use super::redis::{Redis, Value};

pub struct Cluster {
    /// The nodes in creation order: `redis-cli` makes the first three the primaries.
    pub nodes: Vec<Redis>,
}

impl Cluster {
    pub fn start() -> Cluster {
        Cluster::start_with(&[])
    }

    /// As [`Cluster::start`], with more `redis-server` arguments for every node.
    pub fn start_with(extra: &[String]) -> Cluster {
        let nodes: Vec<Redis> = (0..6)
            .map(|_| {
                let mut args: Vec<String> = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                    "--cluster-port",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                // The bus port is chosen too: port + 10000 may be past 65535.
                args.push(super::free_port().to_string());
                args.extend(extra.iter().cloned());
                Redis::start_with_args(&args)
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let c = Cluster { nodes };
        c.wait_ok();
        c.wait_replicas();
        c
    }

    /// Waits (up to 20 s) until every node says the cluster is ok and knows all six nodes.
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = self.nodes.iter().filter(|n| n.pid().is_some()).all(|n| {
                let info = n.cmd_str(&["CLUSTER", "INFO"]).text().unwrap_or_default();
                info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
            });
            if ok {
                return;
            }
            if Instant::now() >= deadline {
                let infos: Vec<String> = self
                    .nodes
                    .iter()
                    .filter(|n| n.pid().is_some())
                    .map(|n| {
                        let info = n.cmd_str(&["CLUSTER", "NODES"]).text().unwrap_or_default();
                        let log = n.log();
                        let tail: Vec<&str> = log.lines().rev().take(8).collect();
                        format!("{}:\n{info}\nlog: {}", n.port, tail.join("\n"))
                    })
                    .collect();
                panic!("the cluster is not ok after 20 s:\n{}", infos.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (up to 20 s) until each of the three replicas has synced with its primary (a
    /// replica that never synced cannot take over).
    pub fn wait_replicas(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let synced = self
                .nodes
                .iter()
                .filter(|n| n.pid().is_some())
                .filter(|n| {
                    let info = n.cmd_str(&["INFO", "replication"]);
                    String::from_utf8_lossy(info.bytes().unwrap_or_default())
                        .contains("master_link_status:up")
                })
                .count();
            if synced >= 3 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{synced} of 3 replicas synced after 20 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The nodes that are primaries now (`ROLE`).
    pub fn primaries(&self) -> Vec<&Redis> {
        self.nodes
            .iter()
            .filter(|n| n.pid().is_some())
            .filter(|n| {
                let role = n.cmd_str(&["ROLE"]);
                role.array()
                    .and_then(|a| a.first())
                    .and_then(Value::text)
                    .is_some_and(|r| r == "master")
            })
            .collect()
    }

    /// Every key of every primary.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.primaries().iter().flat_map(|n| n.keys()).collect();
        keys.sort();
        keys
    }

    /// The `upstream` servers of the seed nodes (the first three).
    pub fn upstream(&self, name: &str) -> String {
        let servers: String = self.nodes[..3]
            .iter()
            .map(|n| format!("server 127.0.0.1:{};", n.port))
            .collect();
        format!("upstream {name} {{ {servers} }}")
    }
}
