//! The fleet tier: a Redis (or Valkey) cache shared by the gateway instances of a fleet.
//!
//! Each worker owns one pipelined data connection per zone ([`conn`]); worker 0 of each
//! instance also reads the purge stream ([`reader`]). Key names are HMACs and values are
//! sealed (`phantom_core::fleet`), so Redis never sees a token or a JWT. Redis never fails a
//! request: every error is a miss, and a breaker shared by the workers ([`FleetShared`])
//! stops paying timeouts while Redis is down, logging once per change of state.

pub(crate) mod cluster;
pub(crate) mod conn;
pub(crate) mod dns;
pub(crate) mod fanout;
pub(crate) mod jti;
pub(crate) mod ops;
pub(crate) mod peer;
pub(crate) mod reader;
pub(crate) mod sentinel;
pub(crate) mod sweep;
pub(crate) mod tls;
pub(crate) mod waiters;

use core::sync::atomic::Ordering;
use std::cell::RefCell;

use nginx_sys::{ngx_cycle, NGX_LOG_ERR, NGX_LOG_NOTICE, NGX_LOG_WARN};
use ngx::ngx_log_error;
use phantom_core::fleet::errors::ErrorClass;
use phantom_core::fleet::keys::KeyFile;
use phantom_core::fleet::layout::{Layout, DEFAULT_PREFIX};
use phantom_core::fleet::resp;

pub(crate) use crate::cache::zone::FleetShared;
use conn::{Conn, Failure, Kind};
use peer::{Peer, Servers};

/// The `redis*=` parameters as written.
#[derive(Default)]
pub(crate) struct FleetSpec {
    /// `redis=`: an `upstream` block's name, `host:port` or `unix:/path`.
    pub(crate) target: String,
    /// `redis_sentinel=`: the master name; `redis=` then names the Sentinels.
    pub(crate) sentinel: Option<String>,
    /// `redis_cluster=on`: `redis=` names seed nodes of a Redis Cluster.
    pub(crate) cluster: bool,
    /// `redis_key=`: the key file.
    pub(crate) key_file: String,
    /// `redis_timeout=`: connect and reply timeout per operation (ms).
    pub(crate) timeout_ms: u64,
    /// `redis_lock=`: how long the fleet lock holds others back (ms).
    pub(crate) lock_ms: u64,
    /// `redis_prefix=`: prepended to every key.
    pub(crate) prefix: String,
    /// `redis_ssl=on` and its `redis_ssl_*=` parameters.
    pub(crate) tls: Option<TlsSpec>,
    /// `redis_password_file=`: the password, read for every new connection.
    pub(crate) password_file: Option<String>,
    /// `redis_sentinel_password_file=`: the Sentinels' password (`requirepass`), read for
    /// every new connection to a Sentinel.
    pub(crate) sentinel_password_file: Option<String>,
    /// `redis_max_connection_age=`: a connection is replaced once it is this old (ms).
    pub(crate) max_connection_age_ms: Option<u64>,
}

/// The `redis_ssl*=` parameters as written (`proxy_ssl_*` is the model).
#[derive(Clone, Debug)]
pub(crate) struct TlsSpec {
    /// `redis_ssl_verify=`: check the server's certificate (on by default).
    pub(crate) verify: bool,
    /// `redis_ssl_trusted_certificate=`: the CAs to trust (else the system's).
    pub(crate) trusted: String,
    /// `redis_ssl_name=`: the name to send and expect (else each address's host).
    pub(crate) name: Option<String>,
    /// `redis_ssl_verify_depth=`.
    pub(crate) depth: u32,
    /// `redis_ssl_certificate=` and `redis_ssl_certificate_key=`: a client certificate.
    pub(crate) certificate: String,
    pub(crate) certificate_key: String,
}

impl Default for TlsSpec {
    fn default() -> TlsSpec {
        TlsSpec {
            verify: true,
            trusted: String::new(),
            name: None,
            depth: 2,
            certificate: String::new(),
            certificate_key: String::new(),
        }
    }
}

impl FleetSpec {
    pub(crate) fn new() -> FleetSpec {
        FleetSpec {
            timeout_ms: 200,
            lock_ms: 3000,
            prefix: DEFAULT_PREFIX.into(),
            ..FleetSpec::default()
        }
    }
}

/// Consecutive failures that open the breaker.
const TRIP_AFTER: u32 = 3;
/// How long an open breaker keeps requests away from Redis before one probes it.
const OPEN_MS: i64 = 1000;
/// How long writes stop after Redis answered that it is full (`-OOM`).
const FULL_MS: i64 = 5000;
/// An error reply of one class is logged at most this often per instance (they are all
/// counted).
const ERROR_LOG_MS: i64 = 60_000;

/// One zone's `redis=` tier.
pub(crate) struct Fleet {
    pub(crate) zone_name: String,
    pub(crate) target: String,
    pub(crate) keys: KeyFile,
    pub(crate) timeout_ms: u64,
    pub(crate) lock_ms: u64,
    /// The key names (`redis_prefix=` and the key file's `name` key).
    pub(crate) layout: Layout,
    /// The servers of `redis=` as resolved with the configuration: the data servers, or
    /// with `redis_sentinel=` the Sentinels.
    pub(crate) seeds: Vec<Peer>,
    /// The data servers this worker connects to now (the seeds, or where the Sentinels
    /// say the primary is).
    pub(crate) servers: Servers,
    /// `redis_sentinel=`: the master name.
    pub(crate) sentinel: Option<String>,
    /// `redis_cluster=on`: the seeds are nodes of a Redis Cluster.
    pub(crate) cluster: Option<cluster::Cluster>,
    /// `redis=host:port` with the http block's `resolver`: the name followed at run time.
    pub(crate) dns: Option<dns::Name>,
    /// The http block's `resolver`, for names followed at run time (`redis=host:port`, a
    /// Sentinel's answer).
    pub(crate) resolver: Option<dns::Resolver>,
    dns_watch: RefCell<Option<Box<dns::Watch>>>,
    sentinel_watch: RefCell<Option<Box<sentinel::Watch>>>,
    /// `redis_ssl*=` as written, and the TLS context made from it at postconfiguration.
    pub(crate) tls_spec: Option<TlsSpec>,
    pub(crate) tls: Option<tls::Tls>,
    /// `redis_password_file=`, `redis_sentinel_password_file=` and
    /// `redis_max_connection_age=`.
    pub(crate) password_file: Option<String>,
    pub(crate) sentinel_password_file: Option<String>,
    pub(crate) max_connection_age_ms: Option<u64>,
    /// The zone's shared state (set once the zone is known to the worker).
    shared: core::cell::Cell<*const FleetShared>,
    worker: RefCell<Option<Box<Conn>>>,
    /// The worker is exiting: nothing more is sent.
    stopped: core::cell::Cell<bool>,
    pub(crate) reader: RefCell<Option<Box<reader::Reader>>>,
}

impl Fleet {
    pub(crate) fn new(spec: FleetSpec, keys: KeyFile, zone_name: &str) -> Fleet {
        let layout = Layout::new(keys.name_key(), &spec.prefix);
        Fleet {
            zone_name: zone_name.into(),
            target: spec.target,
            keys,
            timeout_ms: spec.timeout_ms,
            lock_ms: spec.lock_ms,
            layout,
            seeds: Vec::new(),
            servers: Servers::default(),
            sentinel: spec.sentinel,
            cluster: spec.cluster.then(cluster::Cluster::default),
            dns: None,
            resolver: None,
            dns_watch: RefCell::new(None),
            sentinel_watch: RefCell::new(None),
            tls_spec: spec.tls,
            tls: None,
            password_file: spec.password_file,
            sentinel_password_file: spec.sentinel_password_file,
            max_connection_age_ms: spec.max_connection_age_ms,
            shared: core::cell::Cell::new(core::ptr::null()),
            worker: RefCell::new(None),
            stopped: core::cell::Cell::new(false),
            reader: RefCell::new(None),
        }
    }

    /// Points the breaker at the zone's shared state, and starts following the primary
    /// (worker start).
    pub(crate) fn attach(&'static self, shared: Option<&FleetShared>) {
        self.shared
            .set(shared.map_or(core::ptr::null(), |s| s as *const _));
        if let Some(c) = &self.cluster {
            self.servers.replace(self.seeds.clone());
            c.refresh_if_due(self, crate::glue::time::now_ms());
            return;
        }
        if self.sentinel.is_none() {
            self.servers.replace(self.seeds.clone());
            if let Ok(mut w) = self.dns_watch.try_borrow_mut() {
                *w = self.dns.as_ref().map(|n| dns::Watch::start(self, n));
            }
            return;
        }
        if let Ok(mut w) = self.sentinel_watch.try_borrow_mut() {
            *w = Some(sentinel::Watch::start(self));
        }
    }

    /// The data servers moved: the next request probes them at once, whatever the breaker
    /// says, and the purge stream reader goes there now (it resumes from its last id).
    pub(crate) fn moved(&self) {
        self.probe_now();
        if let Ok(mut r) = self.reader.try_borrow_mut() {
            if let Some(reader) = r.as_mut() {
                reader.retry_now();
            }
        }
    }

    /// The `i`th server (modulo their number) a connection of `kind` may use.
    pub(crate) fn peer_for(&self, kind: Kind, i: usize) -> Option<Peer> {
        match kind {
            // In a cluster, only the stream reader asks: the owner of the stream's slot.
            Kind::Data => match &self.cluster {
                Some(c) => c
                    .peer_for_key(self.stream_key().as_bytes())
                    .or_else(|| self.servers.get(i)),
                None => self.servers.get(i),
            },
            Kind::Sentinel => self.seeds.get(i % self.seeds.len().max(1)).cloned(),
        }
    }

    /// How many servers a connection of `kind` may try in turn.
    pub(crate) fn peer_count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Data => self.servers.len(),
            Kind::Sentinel => self.seeds.len(),
        }
    }

    fn shared(&self) -> Option<&FleetShared> {
        // SAFETY: NULL or the zone's state, mapped for the life of the cycle.
        unsafe { self.shared.get().as_ref() }
    }

    /// The `AUTH` command for a new connection: the key file's password, or the one in
    /// `redis_password_file`, read again for every connection (tokens that a sidecar
    /// refreshes: AWS IAM, Microsoft Entra, GCP IAM). An unreadable file is logged (once a
    /// minute) and the connection goes without `AUTH`, which the server refuses.
    pub(crate) fn auth(&self) -> Option<Vec<u8>> {
        let from_file;
        let pass = match &self.password_file {
            Some(path) => {
                from_file = self.read_password("redis_password_file", path)?;
                from_file.as_str()
            }
            None => self.keys.redis_password()?,
        };
        Some(match self.keys.redis_user() {
            Some(user) => resp::command(&[b"AUTH", user.as_bytes(), pass.as_bytes()]),
            None => resp::command(&[b"AUTH", pass.as_bytes()]),
        })
    }

    /// The `AUTH` command for a new connection to a Sentinel (`requirepass` on the
    /// Sentinels; the data servers' credentials are not sent to them).
    pub(crate) fn sentinel_auth(&self) -> Option<Vec<u8>> {
        let path = self.sentinel_password_file.as_deref()?;
        let pass = self.read_password("redis_sentinel_password_file", path)?;
        Some(resp::command(&[b"AUTH", pass.as_bytes()]))
    }

    /// A password file's content, trimmed; an unreadable file is counted and logged (once a
    /// minute), and the connection goes without `AUTH`, which the server refuses.
    fn read_password(&self, param: &str, path: &str) -> Option<String> {
        match std::fs::read_to_string(path) {
            Ok(text) => Some(text.trim().to_string()),
            Err(e) => {
                let msg = format!("cannot read {param} \"{path}\" (the workers read it): {e}");
                crate::metrics::count(crate::metrics::Counter::RedisAuth);
                self.log_once(ErrorClass::Auth, NGX_LOG_ERR as usize, &msg);
                None
            }
        }
    }

    /// Sends `cmds` expecting `replies` replies for `waiter`; `false` when Redis is
    /// skipped (breaker open) or unreachable right now. `route` is a key of the commands,
    /// all in one hash slot: in a cluster it picks the node.
    pub(crate) fn submit(
        &self,
        route: &[u8],
        cmds: &[u8],
        (replies, waiter): (usize, u64),
        now_ms: i64,
    ) -> bool {
        if self.stopped.get() {
            return false;
        }
        if let Some(c) = &self.cluster {
            return c.submit(self, route, cmds, (replies, waiter), now_ms);
        }
        if !self.allow(now_ms) {
            return false;
        }
        let Ok(mut slot) = self.worker.try_borrow_mut() else {
            return false;
        };
        let conn = slot
            .get_or_insert_with(|| Conn::new(Kind::Data, self.timeout_ms, self as *const Fleet));
        conn.submit(cmds, replies, waiter, 0)
    }

    /// Sends a pipeline whose commands (one reply each) may lie in several hash slots: in
    /// one submit on one server, grouped by node on a cluster ([`fanout`]).
    pub(crate) fn submit_split(
        &self,
        cmds: &[u8],
        replies: usize,
        waiter: u64,
        now_ms: i64,
    ) -> bool {
        if self.cluster.is_some() {
            return !self.stopped.get() && fanout::submit(self, cmds, waiter, now_ms);
        }
        self.submit(b"", cmds, (replies, waiter), now_ms)
    }

    /// Whether writes are worth sending (Redis is not known to be full).
    pub(crate) fn writable(&self, now_ms: i64) -> bool {
        self.shared()
            .is_none_or(|s| s.full_until_ms.load(Ordering::Relaxed) <= now_ms)
    }

    /// Redis answered a write with `-OOM`: skip writes for a while (one log line).
    pub(crate) fn full(&self, now_ms: i64) {
        let Some(s) = self.shared() else { return };
        let before = s.full_until_ms.swap(now_ms + FULL_MS, Ordering::Relaxed);
        if before <= now_ms {
            self.log(NGX_LOG_WARN as usize, "is full (OOM): writes paused");
        }
    }

    /// The breaker: closed, open (skip), or half-open (exactly one caller probes).
    fn allow(&self, now_ms: i64) -> bool {
        let Some(s) = self.shared() else { return true };
        let until = s.open_until_ms.load(Ordering::Relaxed);
        if until == 0 {
            return true;
        }
        if now_ms < until {
            return false;
        }
        s.open_until_ms
            .compare_exchange(until, now_ms + OPEN_MS, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// A connection failed: count it; the failure that opens the breaker logs one line.
    /// With Sentinels, they are asked again where the primary is.
    pub(crate) fn failed(&self, why: Failure) {
        if let Ok(mut w) = self.sentinel_watch.try_borrow_mut() {
            if let Some(watch) = w.as_mut() {
                watch.ask_soon();
            }
        }
        let Some(s) = self.shared() else { return };
        let now = crate::glue::time::now_ms();
        let n = s.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if n < TRIP_AFTER {
            return;
        }
        let opened = s
            .open_until_ms
            .compare_exchange(0, now + OPEN_MS, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if opened {
            let msg = format!("unavailable ({}): going on without it", why.describe());
            self.log(NGX_LOG_WARN as usize, &msg);
        } else {
            s.open_until_ms.store(now + OPEN_MS, Ordering::Release);
        }
    }

    /// A cluster node failed: its own breaker counts it (one log line when it opens), and
    /// the slot map is due for a refresh.
    pub(crate) fn node_failed(
        &self,
        node: &str,
        why: Failure,
        failures: &mut u32,
        open_until_ms: &mut i64,
    ) {
        if let Some(c) = &self.cluster {
            c.suspect();
        }
        *failures += 1;
        let now = crate::glue::time::now_ms();
        if *failures < TRIP_AFTER {
            return;
        }
        if *open_until_ms == 0 {
            let msg = format!(
                "cluster node {node} unavailable ({}): its slots are misses for now",
                why.describe()
            );
            self.log(NGX_LOG_WARN as usize, &msg);
        }
        *open_until_ms = now + OPEN_MS;
    }

    /// A cluster node answered `MOVED`, `ASK`, `CLUSTERDOWN`...: a `MOVED` slot moves in
    /// the map at once, and the map is due for a refresh. (Not in cluster mode: nothing.)
    /// Returns where an `ASK` sends the operation.
    pub(crate) fn redirected(
        &self,
        line: &[u8],
        answered: Option<std::net::IpAddr>,
    ) -> Option<std::net::SocketAddr> {
        let c = self.cluster.as_ref()?;
        let ip = answered.unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
        match c.redirect_of(line, ip) {
            Some(r) if !r.ask => {
                crate::metrics::count(crate::metrics::Counter::ClusterMoved);
                c.moved(r.slot, r.to);
                None
            }
            Some(r) => Some(r.to),
            None => {
                c.suspect();
                None
            }
        }
    }

    /// Sends operations that a cluster node redirected with `ASK` to the importing node,
    /// once (a second redirect is a miss).
    pub(crate) fn ask(&self, asks: Vec<conn::Ask>) {
        for a in asks {
            crate::metrics::count(crate::metrics::Counter::ClusterAsk);
            let sent = self.cluster.as_ref().is_some_and(|c| c.ask(self, &a));
            if !sent && a.waiter != 0 {
                waiters::complete_all(vec![(a.waiter, Err(()))]);
            }
        }
    }

    /// Redis answered with an error: counted by its meaning, and logged (once a minute per
    /// class and instance) with what happens next (`sentinel`: the server is a Sentinel).
    pub(crate) fn reply_error(&self, class: ErrorClass, line: &[u8], server: &str, sentinel: bool) {
        use crate::metrics::{count, Counter};
        count(match class {
            ErrorClass::Role => Counter::RedisRole,
            ErrorClass::Auth => Counter::RedisAuth,
            ErrorClass::Cluster => Counter::RedisCluster,
            ErrorClass::Full | ErrorClass::Other => Counter::RedisErrorReply,
        });
        let (level, next) = match class {
            ErrorClass::Role => (
                NGX_LOG_WARN,
                "this server cannot take writes now (a replica, or a primary that was demoted or is loading): trying the next server",
            ),
            ErrorClass::Auth if sentinel => (
                NGX_LOG_ERR,
                "the Sentinel refused: its password (requirepass) goes in redis_sentinel_password_file=; asking another",
            ),
            ErrorClass::Auth => (
                NGX_LOG_ERR,
                "authentication failed: check the user and password of the key file and the server's ACL",
            ),
            ErrorClass::Cluster if self.cluster.is_some() => (
                NGX_LOG_NOTICE,
                "the cluster is changing (a slot moved, or a node fails over): that operation is a miss and the slot map is refreshed",
            ),
            ErrorClass::Cluster => (
                NGX_LOG_WARN,
                "the server is sharded: set redis_cluster=on for a Redis Cluster; behind a sharding proxy, those operations are misses",
            ),
            // Logged by `full` when writes pause.
            ErrorClass::Full => return,
            ErrorClass::Other => (NGX_LOG_WARN, "the operation is a miss"),
        };
        let shown = &line[..line.len().min(160)];
        let msg = format!(
            "server {server} answered \"{}\": {next}",
            String::from_utf8_lossy(shown)
        );
        self.log_once(class, level as usize, &msg);
    }

    /// Logs `msg` unless a line of `class` was logged by this instance within a minute.
    fn log_once(&self, class: ErrorClass, level: usize, msg: &str) {
        let now = crate::glue::time::now_ms();
        let Some(last) = self.shared().and_then(|s| s.logged_ms.get(class.index())) else {
            return;
        };
        let before = last.load(Ordering::Relaxed);
        if before != 0 && now - before < ERROR_LOG_MS {
            return;
        }
        if last
            .compare_exchange(before, now, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        self.log(level, msg);
    }

    /// A new connection found a replica (or a Sentinel) where it wants the primary: it moves
    /// on to the next address (counted, and logged once a minute per instance).
    pub(crate) fn not_primary(&self, server: &str) {
        self.reply_error(ErrorClass::Role, b"ROLE: not the primary", server, false);
    }

    /// The next request probes Redis at once, whatever the breaker says.
    fn probe_now(&self) {
        let Some(s) = self.shared() else { return };
        let now = crate::glue::time::now_ms();
        let until = s.open_until_ms.load(Ordering::Relaxed);
        if until > now {
            let _ =
                s.open_until_ms
                    .compare_exchange(until, now, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// A reply arrived: the breaker closes (one log line if it was open).
    pub(crate) fn answered(&self) {
        let Some(s) = self.shared() else { return };
        s.failures.store(0, Ordering::Relaxed);
        if s.open_until_ms.load(Ordering::Relaxed) != 0
            && s.open_until_ms.swap(0, Ordering::AcqRel) != 0
        {
            self.log(NGX_LOG_NOTICE as usize, "available again");
        }
    }

    pub(crate) fn log(&self, level: usize, what: &str) {
        // SAFETY: the cycle log is valid in a worker.
        let log = unsafe { (*ngx_cycle).log };
        ngx_log_error!(
            level,
            log,
            "phantom_token_cache_zone \"{}\": redis \"{}\" {}",
            self.zone_name,
            self.target,
            what
        );
    }

    /// The purge stream of this zone.
    pub(crate) fn stream_key(&self) -> String {
        self.layout.stream(&self.zone_name)
    }

    /// Closes this worker's connections (worker exit), after a last try at releasing the
    /// locks its requests still hold (they end without their cleanups).
    pub(crate) fn shutdown(&self) {
        self.stopped.set(true);
        if let Some(c) = &self.cluster {
            c.shutdown();
        }
        if let Ok(mut w) = self.worker.try_borrow_mut() {
            if let Some(conn) = w.as_mut() {
                let (cmds, n) = ops::held_releases(self);
                if n > 0 {
                    conn.submit(&cmds, n, 0, 0);
                }
                conn.shutdown();
            }
        }
        if let Ok(mut r) = self.reader.try_borrow_mut() {
            if let Some(reader) = r.as_mut() {
                reader.shutdown();
            }
        }
        if let Ok(mut w) = self.sentinel_watch.try_borrow_mut() {
            if let Some(watch) = w.as_mut() {
                watch.shutdown();
            }
        }
        if let Ok(mut w) = self.dns_watch.try_borrow_mut() {
            if let Some(watch) = w.as_mut() {
                watch.shutdown();
            }
        }
    }
}
