//! Redis Cluster (`redis_cluster=on`): each operation goes to the primary that owns its key's
//! hash slot, on one pipelined connection per primary and worker.
//!
//! The slot map comes from `CLUSTER SHARDS` (`CLUSTER SLOTS` where that is unknown), asked of
//! the seed nodes of `redis=` and then of the known primaries in turn. A `MOVED` reply moves
//! its slot at once and makes the map due for a refresh. After a worker's first map, one
//! worker of the instance at a time refreshes it, at most once a second, and hands it to the
//! others through the zone, so a failover cannot cause a storm of refreshes. An operation
//! whose slot has no known owner, or whose node's breaker is open, is a miss: Redis never
//! fails a request. Each node connection has its own breaker, so one node down leaves the
//! keys of the others served.

use core::cell::{Cell, RefCell};
use std::net::{IpAddr, SocketAddr};

use nginx_sys::{NGX_LOG_NOTICE, NGX_LOG_WARN};
use phantom_core::fleet::cluster::{self, SlotMap};

use super::conn::{Ask, Conn, Kind};
use super::peer::Peer;
use super::waiters::{self, Outcome};
use super::Fleet;

/// The least time between two refreshes of the map.
const REFRESH_MS: i64 = 1000;
/// The map is asked again this often even when nothing went wrong.
const PERIOD_MS: i64 = 30_000;

/// A worker's view of the cluster.
#[derive(Default)]
pub(crate) struct Cluster {
    map: RefCell<SlotMap>,
    /// One connection per primary used, by address. Kept while the worker runs (a node that
    /// left the map keeps its idle connection), so a connection never moves or is freed
    /// under its events.
    nodes: RefCell<Vec<(SocketAddr, Box<Conn>)>>,
    /// Asks for the map.
    query: RefCell<Option<Box<Conn>>>,
    /// The map is known to be wrong (a `MOVED`, a node that failed), since when.
    due: Cell<bool>,
    due_ms: Cell<i64>,
    /// The generation of the instance's map (in the zone) this worker has.
    generation: Cell<u64>,
    /// A refresh is in flight.
    asking: Cell<bool>,
    asked_ms: Cell<i64>,
    /// The node asked next (over the seeds, then the map's primaries).
    next: Cell<usize>,
    /// The nodes do not know `CLUSTER SHARDS` (before Redis 7.0): `CLUSTER SLOTS`.
    slots_only: Cell<bool>,
    /// How many maps were taken (logged with each change of shape).
    refreshes: Cell<u64>,
}

impl Cluster {
    /// Submits `cmds` to the owner of `route`'s slot; `false` (a miss) when the owner is
    /// unknown, its breaker is open, or it cannot take more.
    pub(crate) fn submit(
        &self,
        fleet: &Fleet,
        route: &[u8],
        cmds: &[u8],
        (replies, waiter): (usize, u64),
        now_ms: i64,
    ) -> bool {
        self.refresh_if_due(fleet, now_ms);
        let slot = cluster::key_slot(route);
        let Some(addr) = self.owner_of(slot) else {
            self.mark_due();
            return false;
        };
        let Ok(mut nodes) = self.nodes.try_borrow_mut() else {
            return false;
        };
        let conn = node_conn(&mut nodes, addr, fleet);
        conn.allow(now_ms) && conn.submit(cmds, replies, waiter, 0)
    }

    /// Sends an operation redirected with `ASK` to the importing node, each command after
    /// `ASKING`; its waiter gets the commands' replies without the `ASKING` ones.
    pub(crate) fn ask(&self, fleet: &Fleet, a: &Ask) -> bool {
        let Some(cmds) = asking(&a.cmds) else {
            return false;
        };
        let Ok(mut nodes) = self.nodes.try_borrow_mut() else {
            return false;
        };
        let conn = node_conn(&mut nodes, a.to, fleet);
        let waiter = a.waiter;
        let id = waiters::register(move |outcome| {
            let replies = outcome.map(|r| r.into_iter().skip(1).step_by(2).collect());
            waiters::complete_all(vec![(waiter, replies)]);
        });
        if !conn.submit_until(&cmds, (a.replies * 2, id), a.deadline, false) {
            waiters::cancel(id);
            return false;
        }
        true
    }

    /// The primary that owns `slot`, if the map knows it.
    pub(crate) fn owner_of(&self, slot: u16) -> Option<SocketAddr> {
        let map = self.map.try_borrow().ok()?;
        map.owner(slot).map(|i| map.nodes()[i])
    }

    /// Reads a redirect (a host name in it is one of the map's primaries).
    pub(crate) fn redirect_of(&self, line: &[u8], answered: IpAddr) -> Option<cluster::Redirect> {
        let map = self.map.try_borrow().ok()?;
        cluster::redirect_of(line, answered, &map)
    }

    /// A node answered `MOVED`: its slot moves now, and the map is due for a refresh.
    pub(crate) fn moved(&self, slot: u16, to: SocketAddr) {
        if let Ok(mut map) = self.map.try_borrow_mut() {
            map.moved(slot, to);
        }
        self.mark_due();
    }

    /// Something went wrong with a node: the map is due for a refresh.
    pub(crate) fn suspect(&self) {
        self.mark_due();
    }

    fn mark_due(&self) {
        if !self.due.replace(true) {
            self.due_ms.set(crate::glue::time::now_ms());
        }
    }

    /// Takes a map another worker published, else asks for the map when it is due (or
    /// old): a worker's first map at once, later ones one worker of the instance at a time
    /// and once a second at most.
    pub(crate) fn refresh_if_due(&self, fleet: &Fleet, now_ms: i64) {
        self.adopt(fleet);
        let since = now_ms - self.asked_ms.get();
        let first = self.refreshes.get() == 0;
        let wanted = self.due.get() || first || since >= PERIOD_MS;
        if !wanted || self.asking.get() || since < REFRESH_MS {
            return;
        }
        if !first
            && !fleet
                .zone()
                .is_none_or(|z| z.claim_map_refresh(now_ms, REFRESH_MS))
        {
            return;
        }
        let Some(peer) = self.node_to_ask(fleet) else {
            return;
        };
        let Ok(mut query) = self.query.try_borrow_mut() else {
            return;
        };
        let conn = query.get_or_insert_with(|| Conn::new(Kind::Data, fleet.timeout_ms, fleet));
        if conn.pinned_to().is_none_or(|p| !p.same_as(&peer)) {
            conn.close();
            conn.pin(peer);
        }
        let asked = conn.pinned_to().map(Peer::ip);
        let shards = !self.slots_only.get();
        let cmd = if shards {
            cluster::shards_command()
        } else {
            cluster::slots_command()
        };
        let fleet_ptr = fleet as *const Fleet;
        let id = waiters::register(move |outcome| {
            // SAFETY: the fleet lives in the configuration, for the whole cycle.
            let fleet = unsafe { &*fleet_ptr };
            if let Some(c) = fleet.cluster.as_ref() {
                c.answered(fleet, outcome, asked.flatten(), shards);
            }
        });
        self.asked_ms.set(now_ms);
        self.next.set(self.next.get().wrapping_add(1));
        if conn.submit(&cmd, 1, id, 0) {
            self.asking.set(true);
            self.due.set(false);
        } else {
            waiters::cancel(id);
        }
    }

    /// The node to ask for the map: the seeds of `redis=` first, then the known primaries,
    /// in turn (a node that failed is not asked twice in a row).
    fn node_to_ask(&self, fleet: &Fleet) -> Option<Peer> {
        let map = self.map.try_borrow().ok()?;
        let known = map.nodes();
        let n = fleet.seeds.len() + known.len();
        if n == 0 {
            return None;
        }
        let i = self.next.get() % n;
        match fleet.seeds.get(i) {
            Some(seed) => Some(seed.clone()),
            None => known
                .get(i - fleet.seeds.len())
                .copied()
                .map(Peer::from_socket),
        }
    }

    /// The answer to a refresh: a new map, or (an error) the older command next time.
    fn answered(
        &self,
        fleet: &Fleet,
        outcome: Outcome,
        asked: Option<std::net::IpAddr>,
        shards: bool,
    ) {
        self.asking.set(false);
        let Ok(replies) = outcome else {
            self.mark_due();
            return;
        };
        let Some(reply) = replies.first() else {
            return;
        };
        let reply = reply.as_reply();
        let ip = asked.unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
        let map = if shards {
            SlotMap::from_shards(&reply, ip, fleet.tls.is_some())
        } else {
            SlotMap::from_slots(&reply, ip)
        };
        let Some(map) = map else {
            if shards && matches!(reply, phantom_core::fleet::resp::Reply::Error(_)) {
                self.slots_only.set(true);
            }
            self.mark_due();
            return;
        };
        crate::metrics::count(crate::metrics::Counter::ClusterMaps);
        // Stamped with when it was asked for: a `MOVED` seen after that may be newer.
        let asked = self.asked_ms.get();
        if let Some(g) = fleet
            .zone()
            .and_then(|z| z.publish_map(&[&tag(fleet)[..], &map.to_bytes()].concat(), asked))
        {
            self.generation.set(g);
        }
        self.install(fleet, map);
    }

    /// Takes the map another worker of the instance published, unless it was asked for
    /// before this worker found its own map wrong (its `MOVED` may be newer).
    fn adopt(&self, fleet: &Fleet) {
        let Some(p) = fleet
            .zone()
            .and_then(|z| z.map_since(self.generation.get()))
        else {
            return;
        };
        self.generation.set(p.generation);
        if self.due.get() && p.taken_ms < self.due_ms.get() {
            return;
        }
        let Some(map) = p
            .bytes
            .strip_prefix(&tag(fleet))
            .and_then(SlotMap::from_bytes)
        else {
            return;
        };
        self.due.set(false);
        self.asked_ms.set(self.asked_ms.get().max(p.taken_ms));
        self.install(fleet, map);
    }

    /// Makes `map` this worker's (one log line when its shape changed).
    fn install(&self, fleet: &Fleet, map: SlotMap) {
        if map.covered() < cluster::SLOTS {
            // Part of the cluster has no primary (a failover under way): ask again soon.
            self.mark_due();
        }
        let Ok(mut old) = self.map.try_borrow_mut() else {
            return;
        };
        let n = self.refreshes.get() + 1;
        self.refreshes.set(n);
        if old.nodes() != map.nodes() || old.covered() != map.covered() {
            let msg = format!(
                "cluster map {n}: {} primaries, {} of {} slots served",
                map.nodes().len(),
                map.covered(),
                cluster::SLOTS
            );
            let level = if map.covered() < cluster::SLOTS {
                NGX_LOG_WARN
            } else {
                NGX_LOG_NOTICE
            };
            fleet.log(level as usize, &msg);
        }
        *old = map;
    }

    /// The owner of the purge stream's slot, for the stream reader.
    pub(crate) fn peer_for_key(&self, key: &[u8]) -> Option<Peer> {
        self.owner_of(cluster::key_slot(key)).map(Peer::from_socket)
    }

    /// Closes every connection (worker exit).
    pub(crate) fn shutdown(&self) {
        if let Ok(mut nodes) = self.nodes.try_borrow_mut() {
            for (_, conn) in nodes.iter_mut() {
                conn.shutdown();
            }
        }
        if let Ok(mut q) = self.query.try_borrow_mut() {
            if let Some(conn) = q.as_mut() {
                conn.shutdown();
            }
        }
    }
}

/// What a map in the zone is a map of: the cluster this configuration names. The zone is kept
/// across a reload, and a map taken before one that names other seeds is not taken.
fn tag(fleet: &Fleet) -> [u8; 8] {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    fleet.target.hash(&mut h);
    for seed in &fleet.seeds {
        seed.name().hash(&mut h);
    }
    fleet.tls.is_some().hash(&mut h);
    h.finish().to_le_bytes()
}

/// The connection to the node at `addr`, made if new.
fn node_conn<'a>(
    nodes: &'a mut Vec<(SocketAddr, Box<Conn>)>,
    addr: SocketAddr,
    fleet: &Fleet,
) -> &'a mut Conn {
    let i = match nodes.iter().position(|(a, _)| *a == addr) {
        Some(i) => i,
        None => {
            let mut conn = Conn::new(Kind::Data, fleet.timeout_ms, fleet);
            conn.pin(Peer::from_socket(addr));
            nodes.push((addr, conn));
            nodes.len() - 1
        }
    };
    &mut nodes[i].1
}

/// `cmds` (RESP commands) with `ASKING` before each; `None` if they do not parse.
fn asking(cmds: &[u8]) -> Option<Vec<u8>> {
    let limits = phantom_core::fleet::resp::Limits::default();
    let mut out = Vec::with_capacity(cmds.len() * 2);
    let mut rest = cmds;
    while !rest.is_empty() {
        let (_, used) = phantom_core::fleet::resp::parse(rest, &limits).ok()??;
        out.extend_from_slice(b"*1\r\n$6\r\nASKING\r\n");
        out.extend_from_slice(&rest[..used]);
        rest = &rest[used..];
    }
    Some(out)
}
