//! Redis Sentinel for the tests: a primary, its replica and three `redis-server --sentinel`
//! processes on free 127.0.0.1 ports, each stopped by pid on drop.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::redis::{redis_server_binary, Conn, Redis, Value};

/// The master name the Sentinels monitor.
pub const MASTER: &str = "phantom";

/// How the Sentinels are set up.
#[derive(Clone, Copy, Default)]
pub struct Setup {
    /// `requirepass` (and `sentinel-pass` towards the others).
    pub password: Option<&'static str>,
    /// The primary is monitored as `localhost`, and named so in answers
    /// (`resolve-hostnames` and `announce-hostnames`).
    pub hostnames: bool,
}

/// One `redis-server --sentinel`.
pub struct Sentinel {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
    /// `requirepass` of this Sentinel (and `sentinel-pass` towards the others).
    password: Option<String>,
}

impl Sentinel {
    /// Starts a Sentinel monitoring the primary on `primary_port` (quorum 2, a primary is
    /// down after 1 s without answers).
    pub fn start(primary_port: u16) -> Sentinel {
        Sentinel::start_with(primary_port, Setup::default())
    }

    /// As [`Sentinel::start`], set up as `opts` says.
    pub fn start_with(primary_port: u16, opts: Setup) -> Sentinel {
        let dir = super::fresh_dir();
        let auth = opts
            .password
            .map(|p| format!("requirepass {p}\nsentinel sentinel-pass {p}\n"))
            .unwrap_or_default();
        let (names, host) = match opts.hostnames {
            true => (
                "sentinel resolve-hostnames yes\nsentinel announce-hostnames yes\n",
                "localhost",
            ),
            false => ("", "127.0.0.1"),
        };
        for _ in 0..10 {
            let port = super::free_port();
            let conf = dir.join("sentinel.conf");
            fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndaemonize no\nprotected-mode no\n\
                     logfile {log}\ndir {dir}\n{names}\
                     sentinel monitor {MASTER} {host} {primary_port} 2\n\
                     sentinel down-after-milliseconds {MASTER} 1000\n\
                     sentinel failover-timeout {MASTER} 5000\n\
                     sentinel parallel-syncs {MASTER} 1\n{auth}",
                    log = dir.join("sentinel.log").display(),
                    dir = dir.display()
                ),
            )
            .unwrap();
            let child = Command::new(redis_server_binary())
                .arg(&conf)
                .arg("--sentinel")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server --sentinel");
            let mut s = Sentinel {
                port,
                child: Some(child),
                dir: dir.clone(),
                password: opts.password.map(String::from),
            };
            if s.wait_ready() {
                return s;
            }
            s.stop();
        }
        panic!("no Sentinel started in {}", dir.display());
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false;
            }
            if let Some(mut c) = self.conn(Duration::from_millis(300)) {
                if c.cmd(&[b"PING"]).ok() == Some(Value::Ok("PONG".into())) {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// A connection to this Sentinel, logged in when it has a password.
    fn conn(&self, timeout: Duration) -> Option<Conn> {
        let mut c = Conn::open(self.port, timeout).ok()?;
        if let Some(p) = &self.password {
            c.cmd(&[b"AUTH", p.as_bytes()]).ok()?;
        }
        Some(c)
    }

    /// Where this Sentinel says the primary is (its port).
    pub fn primary_port(&self) -> Option<u16> {
        let mut c = self.conn(Duration::from_millis(500))?;
        let v = c
            .cmd(&[b"SENTINEL", b"get-master-addr-by-name", MASTER.as_bytes()])
            .ok()?;
        v.array()?.get(1)?.text()?.parse().ok()
    }

    /// How many replicas this Sentinel knows of the primary.
    pub fn known_replicas(&self) -> usize {
        let Some(mut c) = self.conn(Duration::from_millis(500)) else {
            return 0;
        };
        c.cmd(&[b"SENTINEL", b"replicas", MASTER.as_bytes()])
            .ok()
            .and_then(|v| v.array().map(<[Value]>::len))
            .unwrap_or(0)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("sentinel.log")).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A primary, one replica and three Sentinels that know both.
pub struct Watched {
    pub sentinels: Vec<Sentinel>,
    pub primary: Redis,
    pub replica: Redis,
}

impl Watched {
    pub fn start() -> Watched {
        Watched::start_with(Setup::default())
    }

    /// As [`Watched::start`], with Sentinels set up as `opts` says.
    pub fn start_with(opts: Setup) -> Watched {
        let primary = Redis::start();
        primary.cmd_str(&["CONFIG", "SET", "repl-diskless-sync-delay", "0"]);
        let replica = Redis::start_with_args(&[
            "--replicaof".into(),
            "127.0.0.1".into(),
            primary.port.to_string(),
        ]);
        let sentinels: Vec<Sentinel> = (0..3)
            .map(|_| Sentinel::start_with(primary.port, opts))
            .collect();
        let w = Watched {
            sentinels,
            primary,
            replica,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !w.sentinels.iter().all(|s| s.known_replicas() == 1) {
            assert!(
                Instant::now() < deadline,
                "the Sentinels never saw the replica"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        w
    }

    /// `upstream sentinels { ... }` naming the three.
    pub fn upstream(&self) -> String {
        let servers: String = self
            .sentinels
            .iter()
            .map(|s| format!("server 127.0.0.1:{};", s.port))
            .collect();
        format!("upstream sentinels {{ {servers} }}")
    }

    /// Waits until every Sentinel names `port` as the primary.
    pub fn wait_primary(&self, port: u16, within: Duration) -> Duration {
        let start = Instant::now();
        while !self
            .sentinels
            .iter()
            .all(|s| s.primary_port() == Some(port))
        {
            assert!(
                start.elapsed() < within,
                "no failover to {port} within {within:?}:\n{}",
                self.sentinels[0].log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        start.elapsed()
    }
}
