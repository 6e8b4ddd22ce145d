//! Redis Cluster: which node owns a key's hash slot, and what a redirect says.
//!
//! A cluster splits the key space into 16,384 slots (CRC16 of the key, or of its `{hash tag}`).
//! The client keeps a map from slot to primary, built from `CLUSTER SHARDS` (Redis 7+,
//! Valkey) or `CLUSTER SLOTS` (every version), and corrects it from `MOVED` replies. `ASK`
//! sends one command to another node during a migration, without changing the map. Nodes
//! that prefer host names (`cluster-preferred-endpoint-type hostname`) name them in
//! redirects; the map knows each primary's host name from `CLUSTER SHARDS` and its IP.

use std::net::{IpAddr, SocketAddr};

use super::resp::{self, Reply};

pub use super::slot::key_slot;

/// Number of hash slots in a cluster.
pub const SLOTS: usize = super::slot::SLOTS as usize;

/// No node owns the slot (not in the map yet).
pub(super) const NONE: u16 = u16::MAX;

/// The commands that ask a node for the map.
pub fn shards_command() -> Vec<u8> {
    resp::command(&[b"CLUSTER", b"SHARDS"])
}

/// The older command that asks a node for the map (Redis before 7.0).
pub fn slots_command() -> Vec<u8> {
    resp::command(&[b"CLUSTER", b"SLOTS"])
}

/// A redirect: the slot is served elsewhere for good (`MOVED`) or for this command (`ASK`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redirect {
    /// `ASK` (this command only), else `MOVED` (the slot's new owner).
    pub ask: bool,
    /// The slot the command's key is in.
    pub slot: u16,
    /// Where to send it.
    pub to: SocketAddr,
}

/// Reads `MOVED <slot> <ip>:<port>` or `ASK ...` (an error line without its dash). An empty
/// host (`:6380`, a node that does not know its own address) is the host that answered; a
/// host name is one of `map`'s primaries (else `None`).
pub fn redirect_of(line: &[u8], answered: IpAddr, map: &SlotMap) -> Option<Redirect> {
    let text = core::str::from_utf8(line).ok()?;
    let mut words = text.split(' ');
    let ask = match words.next()? {
        "MOVED" => false,
        "ASK" => true,
        _ => return None,
    };
    let slot: u16 = words.next()?.parse().ok()?;
    if slot as usize >= SLOTS {
        return None;
    }
    let (host, port) = words.next()?.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let to = match endpoint_ip(host.as_bytes(), answered) {
        Some(ip) => SocketAddr::new(ip, port),
        None => map.named(host, port)?,
    };
    Some(Redirect { ask, slot, to })
}

/// An announced endpoint: an IP (IPv6 possibly in brackets); empty or `?` is the host that
/// answered. Host names are not taken (`None`).
fn endpoint_ip(host: &[u8], answered: IpAddr) -> Option<IpAddr> {
    if host.is_empty() || host == b"?" {
        return Some(answered);
    }
    let text = core::str::from_utf8(host).ok()?;
    let text = text.trim_start_matches('[').trim_end_matches(']');
    text.parse().ok()
}

/// Which primary owns each slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotMap {
    pub(super) nodes: Vec<SocketAddr>,
    /// Each primary's host name, where its shard entry gave one (by index, as `nodes`).
    pub(super) hosts: Vec<Option<Box<str>>>,
    pub(super) owner: Vec<u16>,
}

impl Default for SlotMap {
    fn default() -> SlotMap {
        SlotMap {
            nodes: Vec::new(),
            hosts: Vec::new(),
            owner: vec![NONE; SLOTS],
        }
    }
}

impl SlotMap {
    /// The index of the primary that owns `slot`, if known.
    pub fn owner(&self, slot: u16) -> Option<usize> {
        match self.owner.get(slot as usize) {
            Some(&n) if n != NONE => Some(n as usize),
            _ => None,
        }
    }

    /// The primaries, by index.
    pub fn nodes(&self) -> &[SocketAddr] {
        &self.nodes
    }

    /// The primary whose host name is `host`, on `port`.
    pub fn named(&self, host: &str, port: u16) -> Option<SocketAddr> {
        self.nodes
            .iter()
            .zip(&self.hosts)
            .find(|(a, h)| {
                a.port() == port && h.as_deref().is_some_and(|h| h.eq_ignore_ascii_case(host))
            })
            .map(|(a, _)| *a)
    }

    /// How many slots have an owner.
    pub fn covered(&self) -> usize {
        self.owner.iter().filter(|&&n| n != NONE).count()
    }

    /// The index of `addr`, added if new.
    fn node(&mut self, addr: SocketAddr) -> Option<u16> {
        if let Some(i) = self.nodes.iter().position(|n| *n == addr) {
            return Some(i as u16);
        }
        if self.nodes.len() >= NONE as usize {
            return None;
        }
        self.nodes.push(addr);
        self.hosts.push(None);
        Some((self.nodes.len() - 1) as u16)
    }

    /// `MOVED`: `slot` is now served by `to`; returns its node index.
    pub fn moved(&mut self, slot: u16, to: SocketAddr) -> Option<usize> {
        let n = self.node(to)?;
        *self.owner.get_mut(slot as usize)? = n;
        Some(n as usize)
    }

    fn assign(&mut self, start: i64, end: i64, to: SocketAddr) -> Option<()> {
        if !(0..SLOTS as i64).contains(&start) || !(start..SLOTS as i64).contains(&end) {
            return None;
        }
        let n = self.node(to)?;
        self.owner[start as usize..=end as usize].fill(n);
        Some(())
    }

    /// Reads a `CLUSTER SLOTS` reply: `[[start, end, [ip, port, ...], replicas...]...]`.
    /// `answered` stands for an empty IP. `None` for an error or another shape.
    pub fn from_slots(reply: &Reply, answered: IpAddr) -> Option<SlotMap> {
        let Reply::Array(Some(ranges)) = reply else {
            return None;
        };
        let mut map = SlotMap::default();
        for range in ranges {
            let Reply::Array(Some(items)) = range else {
                return None;
            };
            let [Reply::Integer(start), Reply::Integer(end), Reply::Array(Some(primary)), ..] =
                items.as_slice()
            else {
                return None;
            };
            let [Reply::Bulk(Some(ip)), Reply::Integer(port), ..] = primary.as_slice() else {
                return None;
            };
            let port = u16::try_from(*port).ok()?;
            let to = SocketAddr::new(endpoint_ip(ip, answered)?, port);
            map.assign(*start, *end, to)?;
        }
        Some(map)
    }

    /// Reads a `CLUSTER SHARDS` reply (RESP2: each shard and node a flat list of names and
    /// values). The primary of a shard is its node whose `role` is `master` and whose
    /// `health` is `online`; with `tls`, its `tls-port` when it has one. `None` for an error
    /// or another shape; a shard without an online primary leaves its slots unknown.
    pub fn from_shards(reply: &Reply, answered: IpAddr, tls: bool) -> Option<SlotMap> {
        let Reply::Array(Some(shards)) = reply else {
            return None;
        };
        let mut map = SlotMap::default();
        for shard in shards {
            let slots = match field(shard, b"slots")? {
                Reply::Array(Some(s)) => s,
                _ => return None,
            };
            let Reply::Array(Some(nodes)) = field(shard, b"nodes")? else {
                return None;
            };
            let Some((to, host)) = nodes.iter().find_map(|n| online_primary(n, answered, tls))
            else {
                continue;
            };
            let n = map.node(to)? as usize;
            if let Some(host) = host {
                map.hosts[n] = Some(host.into());
            }
            for pair in slots.chunks(2) {
                let [Reply::Integer(start), Reply::Integer(end)] = pair else {
                    return None;
                };
                map.assign(*start, *end, to)?;
            }
        }
        Some(map)
    }
}

/// The value named `name` in a flat `[name, value, ...]` list.
fn field<'r, 'a>(list: &'r Reply<'a>, name: &[u8]) -> Option<&'r Reply<'a>> {
    let Reply::Array(Some(items)) = list else {
        return None;
    };
    items.chunks(2).find_map(|kv| match kv {
        [Reply::Bulk(Some(k)), v] if k.eq_ignore_ascii_case(name) => Some(v),
        _ => None,
    })
}

/// A shard node's address, and its host name if it has one, when it is an online primary.
fn online_primary<'a>(
    node: &Reply<'a>,
    answered: IpAddr,
    tls: bool,
) -> Option<(SocketAddr, Option<&'a str>)> {
    let text = |name: &[u8]| match field(node, name) {
        Some(Reply::Bulk(Some(v))) => Some(*v),
        _ => None,
    };
    if text(b"role")? != b"master" || text(b"health")? != b"online" {
        return None;
    }
    let port = |name: &[u8]| match field(node, name) {
        Some(Reply::Integer(p)) if *p > 0 => u16::try_from(*p).ok(),
        _ => None,
    };
    let port = if tls {
        port(b"tls-port").or_else(|| port(b"port"))?
    } else {
        port(b"port")?
    };
    let addr = SocketAddr::new(endpoint_ip(text(b"ip")?, answered)?, port);
    let host = text(b"hostname")
        .and_then(|h| core::str::from_utf8(h).ok())
        // A DNS name has at most 253 characters.
        .filter(|h| !h.is_empty() && h.len() <= 253);
    Some((addr, host))
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
