//! A slot map as bytes, so that the worker that asked the cluster can hand its map to the
//! other workers of the instance through shared memory instead of each asking again.
//!
//! Layout (little-endian): a version byte; the primaries (`u16` count, then per primary its
//! address family, IP, port and host name); the owned slot ranges (`u16` count, then
//! `start`, `end` inclusive and the primary's index, each `u16`). The bytes come from
//! another worker of the same build, but [`SlotMap::from_bytes`] still checks every field.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::cluster::{SlotMap, NONE, SLOTS};

const VERSION: u8 = 1;

impl SlotMap {
    /// The map as bytes (see the module's layout).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        out.extend_from_slice(&(self.nodes.len() as u16).to_le_bytes());
        for (addr, host) in self.nodes.iter().zip(&self.hosts) {
            match addr.ip() {
                IpAddr::V4(ip) => {
                    out.push(4);
                    out.extend_from_slice(&ip.octets());
                }
                IpAddr::V6(ip) => {
                    out.push(6);
                    out.extend_from_slice(&ip.octets());
                }
            }
            out.extend_from_slice(&addr.port().to_le_bytes());
            // Longer is not a host name (`from_shards` keeps none): none, never a cut one.
            let host = host.as_deref().unwrap_or("").as_bytes();
            let host = if host.len() > 255 { &[][..] } else { host };
            out.push(host.len() as u8);
            out.extend_from_slice(host);
        }
        let ranges = self.ranges();
        out.extend_from_slice(&(ranges.len() as u16).to_le_bytes());
        for (start, end, node) in ranges {
            for v in [start, end, node] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    /// Reads [`SlotMap::to_bytes`]'s output; `None` for anything else.
    pub fn from_bytes(bytes: &[u8]) -> Option<SlotMap> {
        let mut r = Reader(bytes);
        if r.take(1)? != [VERSION] {
            return None;
        }
        let mut map = SlotMap::default();
        for _ in 0..r.u16()? {
            let ip = match r.take(1)?[0] {
                4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(r.take(4)?).ok()?)),
                6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(r.take(16)?).ok()?)),
                _ => return None,
            };
            let port = r.u16()?;
            let len = r.take(1)?[0] as usize;
            let host = std::str::from_utf8(r.take(len)?).ok()?;
            if map.nodes.len() >= NONE as usize {
                return None;
            }
            map.nodes.push(SocketAddr::new(ip, port));
            map.hosts.push((!host.is_empty()).then(|| host.into()));
        }
        for _ in 0..r.u16()? {
            let (start, end, node) = (r.u16()? as usize, r.u16()? as usize, r.u16()?);
            if start > end || end >= SLOTS || node as usize >= map.nodes.len() {
                return None;
            }
            map.owner[start..=end].fill(node);
        }
        r.0.is_empty().then_some(map)
    }

    /// The owned slots as runs of one owner: `(start, end inclusive, owner)`.
    fn ranges(&self) -> Vec<(u16, u16, u16)> {
        let mut out: Vec<(u16, u16, u16)> = Vec::new();
        for (slot, &node) in self.owner.iter().enumerate() {
            if node == NONE {
                continue;
            }
            match out.last_mut() {
                Some((_, end, n)) if *n == node && *end as usize + 1 == slot => *end = slot as u16,
                _ => out.push((slot as u16, slot as u16, node)),
            }
        }
        out
    }
}

/// Reads fields off the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_map_survives_its_bytes() {
        let mut map = SlotMap::default();
        map.moved(0, addr("10.0.0.1:6379"));
        for slot in 1..5461 {
            map.moved(slot, addr("10.0.0.1:6379"));
        }
        for slot in 5461..10923 {
            map.moved(slot, addr("[::1]:7000"));
        }
        // A hole (no owner), then a slot of the first node out of its range.
        map.moved(16000, addr("10.0.0.1:6379"));
        map.hosts[1] = Some("node-b.cluster.test".into());
        let bytes = map.to_bytes();
        let back = SlotMap::from_bytes(&bytes).unwrap();
        assert_eq!(back, map);
        assert_eq!(back.covered(), 10924);
        assert_eq!(
            back.named("node-b.cluster.test", 7000),
            Some(addr("[::1]:7000"))
        );
        // 3 ranges: bytes stay small whatever the cluster's size.
        assert_eq!(
            bytes.len(),
            1 + 2 + (1 + 4 + 2 + 1) + (1 + 16 + 2 + 1 + 19) + 2 + 3 * 6
        );
        assert_eq!(
            SlotMap::from_bytes(&SlotMap::default().to_bytes()),
            Some(SlotMap::default())
        );
    }

    #[test]
    fn other_bytes_are_refused() {
        let mut map = SlotMap::default();
        map.moved(7, addr("10.0.0.1:6379"));
        let good = map.to_bytes();
        for cut in 0..good.len() {
            assert_eq!(SlotMap::from_bytes(&good[..cut]), None, "cut at {cut}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(SlotMap::from_bytes(&longer), None);
        let mut version = good.clone();
        version[0] = 2;
        assert_eq!(SlotMap::from_bytes(&version), None);
        // A range naming a node that is not there, or past the last slot.
        let n = good.len();
        let mut node = good.clone();
        node[n - 2] = 1;
        assert_eq!(SlotMap::from_bytes(&node), None);
        let mut end = good.clone();
        end[n - 4..n - 2].copy_from_slice(&16384u16.to_le_bytes());
        assert_eq!(SlotMap::from_bytes(&end), None);
    }
}
