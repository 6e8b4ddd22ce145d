//! A private Redis Cluster for the fleet tests: six `redis-server` processes (three primaries,
//! three replicas) on free 127.0.0.1 ports, each in its own directory, joined with
//! `redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes`.
//!
//! Each node is a [`Redis`] this process spawned, so it is stopped by its pid (SIGKILL) when
//! its handle drops; never a system Redis, never port 6379.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::redis::{redis_server_binary, Conn, Redis, ServerVersion, Value};

/// How long the cluster may take to agree that it is up.
const FORMING: Duration = Duration::from_secs(30);

/// The `redis-cli` binary that joins the nodes: `TEST_REDIS_CLI`, else Debian's.
pub fn redis_cli_binary() -> PathBuf {
    std::env::var_os("TEST_REDIS_CLI")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/redis-cli"))
}

/// A primary: its port and the slot ranges it serves.
#[derive(Debug, Clone)]
pub struct Primary {
    pub port: u16,
    pub ranges: Vec<(u16, u16)>,
}

impl Primary {
    /// Whether this primary serves `slot`.
    pub fn owns(&self, slot: u16) -> bool {
        self.ranges
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&slot))
    }
}

/// Six nodes, three of them primaries, every slot served.
pub struct Cluster {
    /// The nodes still held here ([`Cluster::take`] hands one out).
    pub nodes: Vec<Redis>,
    /// Every node's port, in the order they were started.
    pub ports: Vec<u16>,
    /// The primaries as the cluster reported them once it was up.
    pub primaries: Vec<Primary>,
    /// With TLS ([`Cluster::start_tls`]): each node's TLS port, by the index of its port.
    pub tls_ports: Vec<u16>,
}

/// Valkey 9.1 (from scripts/redis-servers.sh), if installed; its absence fails the test with
/// `TEST_ALL_REDIS=1`, as in tests/fleet_versions.rs.
pub fn valkey_9_1() -> Option<PathBuf> {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/redis/bin/valkey-server-9.1");
    if bin.exists() {
        let v = ServerVersion::of(&bin).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((v.version.0, v.version.1), (9, 1), "{v}");
        return Some(bin);
    }
    let why = format!(
        "{} is not installed (scripts/redis-servers.sh)",
        bin.display()
    );
    if std::env::var("TEST_ALL_REDIS").is_ok_and(|v| v == "1") {
        panic!("{why}; TEST_ALL_REDIS=1 requires every server");
    }
    eprintln!("skipped: {why}");
    None
}

impl Cluster {
    /// A cluster of Debian's `redis-server` (or `TEST_REDIS_SERVER`).
    pub fn start() -> Cluster {
        Cluster::start_with(&redis_server_binary())
    }

    /// A cluster of a given `redis-server` or `valkey-server` (from 7.0 the cluster bus port is
    /// a free port too, not port + 10000, which may be taken).
    pub fn start_with(binary: &Path) -> Cluster {
        Cluster::start_timeout(binary, 5000)
    }

    /// As [`Cluster::start_with`], with a `cluster-node-timeout` of `ms` (a replica takes over
    /// a primary that has been silent that long).
    pub fn start_timeout(binary: &Path, ms: u32) -> Cluster {
        Cluster::start_opts(binary, ms, None)
    }

    /// A cluster whose nodes also serve TLS (the certificate `server` of `pki`), between
    /// themselves too (`tls-cluster`, `tls-replication`); their plain ports stay for the
    /// test's own commands.
    pub fn start_tls(binary: &Path, pki: &super::pki::Pki) -> Cluster {
        Cluster::start_opts(binary, 5000, Some(pki))
    }

    fn start_opts(binary: &Path, ms: u32, pki: Option<&super::pki::Pki>) -> Cluster {
        let mut tls_ports = Vec::new();
        let version = ServerVersion::of(binary).unwrap_or_else(|e| panic!("{e}"));
        // `cluster-port` came with Redis 7.0 (every Valkey has it); before, the bus is on
        // port + 10000.
        let bus_port = version.name.eq_ignore_ascii_case("valkey") || version.version >= (7, 0, 0);
        let mut nodes = Vec::new();
        for _ in 0..6 {
            let mut last = String::new();
            // Another bus port if the one chosen was taken meanwhile.
            let node = (0..5).find_map(|_| {
                let mut extra: Vec<String> = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    &ms.to_string(),
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                if bus_port {
                    extra.push("--cluster-port".into());
                    extra.push(super::free_port().to_string());
                }
                let tls_port = super::free_port();
                if let Some(pki) = pki {
                    extra.extend(pki.redis_tls_args(tls_port, "server", false));
                    extra.extend(
                        ["--tls-cluster", "yes", "--tls-replication", "yes"].map(String::from),
                    );
                }
                tls_ports.push(tls_port);
                Redis::try_start_full(binary, &extra)
                    .map_err(|e| last = e)
                    .ok()
            });
            nodes.push(node.unwrap_or_else(|| panic!("a cluster node did not start:\n{last}")));
        }
        let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
        let mut create = Command::new(redis_cli_binary());
        create.args(["--cluster", "create"]);
        for p in &ports {
            create.arg(format!("127.0.0.1:{p}"));
        }
        let out = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli --cluster create");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.contains("All 16384 slots covered"),
            "redis-cli --cluster create:\n{text}"
        );
        if pki.is_none() {
            tls_ports.clear();
        } else {
            // One per node that started (a node may have retried with other ports).
            tls_ports = nodes
                .iter()
                .map(|n| {
                    let v = n.cmd_str(&["CONFIG", "GET", "tls-port"]);
                    v.array()
                        .and_then(|a| a.get(1))
                        .and_then(|p| p.text())
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(0)
                })
                .collect();
        }
        let mut c = Cluster {
            nodes,
            ports,
            primaries: Vec::new(),
            tls_ports,
        };
        c.wait_until_formed();
        c.primaries = c.read_primaries();
        assert_eq!(c.primaries.len(), 3, "{:?}", c.primaries);
        // Joining leaves a few error replies counted (redis-cli's probes): the tests count
        // their own from zero.
        for &p in &c.ports {
            assert_eq!(
                c.cmd_at(p, &["CONFIG", "RESETSTAT"]),
                Value::Ok("OK".into())
            );
        }
        c
    }

    /// Waits until every node says `cluster_state:ok` and knows the six nodes, and each
    /// primary has its replica.
    fn wait_until_formed(&self) {
        let deadline = Instant::now() + FORMING;
        loop {
            let formed = self.ports.iter().all(|&p| {
                let info = self
                    .cmd_at(p, &["CLUSTER", "INFO"])
                    .text()
                    .unwrap_or_default();
                info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:6")
            }) && self.replicas_up() == 3;
            if formed {
                return;
            }
            assert!(Instant::now() < deadline, "the cluster did not form");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn replicas_up(&self) -> usize {
        self.ports
            .iter()
            .filter(|&&p| {
                let info = self
                    .cmd_at(p, &["INFO", "replication"])
                    .text()
                    .unwrap_or_default();
                info.contains("role:slave") && info.contains("master_link_status:up")
            })
            .count()
    }

    /// The primaries and their slot ranges (`CLUSTER SLOTS`).
    fn read_primaries(&self) -> Vec<Primary> {
        let reply = self.cmd_at(self.ports[0], &["CLUSTER", "SLOTS"]);
        let mut out: Vec<Primary> = Vec::new();
        for range in reply.array().expect("CLUSTER SLOTS") {
            let r = range.array().expect("a slot range");
            let (lo, hi) = (r[0].int().unwrap() as u16, r[1].int().unwrap() as u16);
            let port = r[2].array().unwrap()[1].int().unwrap() as u16;
            match out.iter_mut().find(|p| p.port == port) {
                Some(p) => p.ranges.push((lo, hi)),
                None => out.push(Primary {
                    port,
                    ranges: vec![(lo, hi)],
                }),
            }
        }
        out
    }

    /// The primary that serves `slot`.
    pub fn owner(&self, slot: u16) -> &Primary {
        self.primaries
            .iter()
            .find(|p| p.owns(slot))
            .unwrap_or_else(|| panic!("no primary serves slot {slot}: {:?}", self.primaries))
    }

    /// Hands out the node on `port` (e.g. to a fleet that talks to that one node); the
    /// cluster keeps running with the others, and the node stays a member.
    pub fn take(&mut self, port: u16) -> Redis {
        let i = self
            .nodes
            .iter()
            .position(|n| n.port == port)
            .expect("a node of this cluster, not handed out yet");
        self.nodes.remove(i)
    }

    /// One command on a new connection to the node on `port`.
    pub fn try_cmd_at(&self, port: u16, args: &[&[u8]]) -> std::io::Result<Value> {
        Conn::open(port, Duration::from_secs(5))?.cmd(args)
    }

    /// As [`Cluster::try_cmd_at`] with text arguments; panics on I/O errors.
    pub fn cmd_at(&self, port: u16, args: &[&str]) -> Value {
        let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.try_cmd_at(port, &bytes)
            .unwrap_or_else(|e| panic!("127.0.0.1:{port} {args:?}: {e}"))
    }

    /// The slot the cluster computes for `key` (`CLUSTER KEYSLOT`).
    pub fn keyslot(&self, key: &[u8]) -> u16 {
        let v = self
            .try_cmd_at(self.ports[0], &[b"CLUSTER", b"KEYSLOT", key])
            .expect("CLUSTER KEYSLOT");
        v.int().unwrap_or_else(|| panic!("CLUSTER KEYSLOT: {v:?}")) as u16
    }

    /// The error replies each node has given, by error code (`INFO errorstats`:
    /// `errorstat_CROSSSLOT:count=2`...), for the nodes on `ports`.
    pub fn error_stats(&self, ports: &[u16]) -> Vec<(u16, String)> {
        let mut out = Vec::new();
        for &p in ports {
            let info = self
                .cmd_at(p, &["INFO", "errorstats"])
                .text()
                .unwrap_or_default();
            for l in info.lines().filter(|l| l.starts_with("errorstat_")) {
                out.push((p, l.to_string()));
            }
        }
        out
    }

    /// How many times the running nodes ran `command` (`INFO commandstats`:
    /// `cmdstat_cluster|shards:calls=3,...`), since they started or `CONFIG RESETSTAT`.
    pub fn calls(&self, command: &str) -> u64 {
        let prefix = format!("cmdstat_{command}:calls=");
        self.nodes
            .iter()
            .filter(|n| n.pid().is_some())
            .map(|n| {
                let info = n
                    .cmd_str(&["INFO", "commandstats"])
                    .text()
                    .unwrap_or_default();
                info.lines()
                    .find_map(|l| l.strip_prefix(prefix.as_str()))
                    .and_then(|rest| rest.split(',').next()?.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    }

    /// Waits (up to 20 s) until every node still running says the cluster is ok, all slots
    /// served (after a failover).
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
            assert!(
                Instant::now() < deadline,
                "the cluster is not ok after 20 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The running nodes that are primaries now (`ROLE`).
    pub fn live_primaries(&self) -> Vec<&Redis> {
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

    /// Every key of every running primary.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .live_primaries()
            .iter()
            .flat_map(|n| n.keys())
            .collect();
        keys.sort();
        keys
    }

    /// An `upstream` named `name` with the primaries as servers (the seed nodes).
    pub fn upstream(&self, name: &str) -> String {
        let servers: String = self
            .primaries
            .iter()
            .map(|p| format!("server 127.0.0.1:{};", p.port))
            .collect();
        format!("upstream {name} {{ {servers} }}")
    }

    /// As [`Cluster::upstream`], with the primaries' TLS ports.
    pub fn tls_upstream(&self, name: &str) -> String {
        let servers: String = self
            .primaries
            .iter()
            .map(|p| {
                let i = self.ports.iter().position(|q| *q == p.port).unwrap();
                format!("server 127.0.0.1:{};", self.tls_ports[i])
            })
            .collect();
        format!("upstream {name} {{ {servers} }}")
    }

    /// The node on `port`.
    pub fn node(&self, port: u16) -> &Redis {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .expect("a node of this cluster")
    }

    /// Kills the node on `port` (SIGKILL).
    pub fn kill(&mut self, port: u16) {
        if let Some(n) = self.nodes.iter_mut().find(|n| n.port == port) {
            n.stop();
        }
    }
}
