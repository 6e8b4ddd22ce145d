//! The fleet tier: a Redis (or Valkey) cache shared by the gateway instances of a fleet.
//!
//! Each worker owns one pipelined data connection per zone ([`conn`]); worker 0 of each
//! instance also reads the purge stream ([`reader`]). Key names are HMACs and values are
//! sealed (`phantom_core::fleet`), so Redis never sees a token or a JWT. Redis never fails a
//! request: every error is a miss, and a breaker shared by the workers ([`FleetShared`])
//! stops paying timeouts while Redis is down, logging once per change of state.

mod auth;
mod breaker;
pub(crate) mod cluster;
pub(crate) mod conn;
pub(crate) mod dns;
pub(crate) mod fanout;
pub(crate) mod jti;
pub(crate) mod ops;
pub(crate) mod peer;
pub(crate) mod reader;
mod report;
pub(crate) mod sentinel;
mod spec;
pub(crate) mod sweep;
pub(crate) mod tls;
pub(crate) mod waiters;

use std::cell::RefCell;

use nginx_sys::ngx_cycle;
use ngx::ngx_log_error;
use phantom_core::fleet::keys::KeyFile;
use phantom_core::fleet::layout::Layout;

pub(crate) use crate::cache::zone::FleetShared;
use crate::cache::zone::Zone;
use conn::{Conn, Kind};
use peer::{Peer, Servers};
pub(crate) use spec::{FleetSpec, TlsSpec};

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
    /// The zone, and with it the shared state (set once the zone is known to the worker).
    zone: core::cell::Cell<Option<&'static Zone>>,
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
            zone: core::cell::Cell::new(None),
            worker: RefCell::new(None),
            stopped: core::cell::Cell::new(false),
            reader: RefCell::new(None),
        }
    }

    /// Points the breaker at the zone's shared state, and starts following the primary
    /// (worker start).
    pub(crate) fn attach(&'static self, zone: &'static Zone) {
        self.zone.set(Some(zone));
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

    /// The zone this tier serves (once the worker started).
    pub(crate) fn zone(&self) -> Option<&'static Zone> {
        self.zone.get()
    }

    fn shared(&self) -> Option<&FleetShared> {
        self.zone()?.fleet()
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

    /// Queues the release of the locks this worker's requests hold (worker exit): on a
    /// cluster each goes to the node of its slot, else on the worker's connection. The
    /// connections' shutdown then flushes them.
    fn release_held(&self) {
        let (cmds, n) = ops::held_releases(self);
        if n == 0 {
            return;
        }
        if self.cluster.is_some() {
            fanout::submit(self, &cmds, 0, crate::glue::time::now_ms());
        } else if let Ok(mut w) = self.worker.try_borrow_mut() {
            if let Some(conn) = w.as_mut() {
                conn.submit(&cmds, n, 0, 0);
            }
        }
    }

    /// Closes this worker's connections (worker exit), after a last try at releasing the
    /// locks its requests still hold (they end without their cleanups).
    pub(crate) fn shutdown(&self) {
        self.release_held();
        self.stopped.set(true);
        if let Some(c) = &self.cluster {
            c.shutdown();
        }
        if let Ok(mut w) = self.worker.try_borrow_mut() {
            if let Some(conn) = w.as_mut() {
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
