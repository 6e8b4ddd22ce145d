use super::*;
use crate::fleet::resp::Reply;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn bulk(s: &str) -> Reply<'_> {
    Reply::Bulk(Some(s.as_bytes()))
}

#[test]
fn redirects_are_read() {
    let from = ip("10.0.0.1");
    let none = SlotMap::default();
    assert_eq!(
        redirect_of(b"MOVED 3999 127.0.0.1:6381", from, &none),
        Some(Redirect {
            ask: false,
            slot: 3999,
            to: "127.0.0.1:6381".parse().unwrap()
        })
    );
    let ask = redirect_of(b"ASK 12 [::1]:7000", from, &none).unwrap();
    assert!(ask.ask);
    assert_eq!(ask.to, "[::1]:7000".parse().unwrap());
    // An empty host is the one that answered.
    assert_eq!(
        redirect_of(b"MOVED 1 :7001", from, &none).unwrap().to,
        "10.0.0.1:7001".parse().unwrap()
    );
    for bad in [
        &b"MOVED"[..],
        b"MOVED 16384 1.2.3.4:1",
        b"MOVED x 1.2.3.4:1",
        b"MOVED 1 1.2.3.4",
        b"MOVED 1 redis.example:6379",
        b"ERR no",
        b"CLUSTERDOWN The cluster is down",
        b"MOVED 1 1.2.3.4:99999",
    ] {
        assert_eq!(
            redirect_of(bad, from, &none),
            None,
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

fn node(ip: &str, port: i64) -> Reply<'_> {
    Reply::Array(Some(vec![bulk(ip), Reply::Integer(port), bulk("id")]))
}

#[test]
fn cluster_slots_is_read() {
    let reply = Reply::Array(Some(vec![
        Reply::Array(Some(vec![
            Reply::Integer(0),
            Reply::Integer(5460),
            node("127.0.0.1", 7000),
            node("127.0.0.1", 7003),
        ])),
        Reply::Array(Some(vec![
            Reply::Integer(5461),
            Reply::Integer(10922),
            node("", 7001),
        ])),
        Reply::Array(Some(vec![
            Reply::Integer(10923),
            Reply::Integer(16383),
            node("127.0.0.1", 7002),
        ])),
    ]));
    let map = SlotMap::from_slots(&reply, ip("127.0.0.9")).unwrap();
    assert_eq!(map.covered(), SLOTS);
    let at = |slot| map.nodes()[map.owner(slot).unwrap()];
    assert_eq!(at(0), "127.0.0.1:7000".parse().unwrap());
    assert_eq!(at(5460), "127.0.0.1:7000".parse().unwrap());
    assert_eq!(at(5461), "127.0.0.9:7001".parse().unwrap());
    assert_eq!(at(16383), "127.0.0.1:7002".parse().unwrap());
}

#[test]
fn a_malformed_map_is_refused() {
    let from = ip("127.0.0.1");
    let range = |s, e| {
        Reply::Array(Some(vec![
            Reply::Integer(s),
            Reply::Integer(e),
            node("127.0.0.1", 7000),
        ]))
    };
    for bad in [
        Reply::Error(b"ERR This instance has cluster support disabled"),
        Reply::Array(Some(vec![range(5, 4)])),
        Reply::Array(Some(vec![range(0, 16384)])),
        Reply::Array(Some(vec![range(-1, 3)])),
        Reply::Array(Some(vec![Reply::Integer(1)])),
    ] {
        assert_eq!(SlotMap::from_slots(&bad, from), None, "{bad:?}");
        assert_eq!(SlotMap::from_shards(&bad, from, false), None, "{bad:?}");
    }
    // An empty map is a map (a cluster that has no slots yet).
    let empty = SlotMap::from_slots(&Reply::Array(Some(vec![])), from).unwrap();
    assert_eq!((empty.covered(), empty.owner(0)), (0, None));
}

fn shard_node<'a>(
    ip: &'a str,
    port: i64,
    tls: Option<i64>,
    role: &'a str,
    health: &'a str,
) -> Reply<'a> {
    let mut v = vec![bulk("id"), bulk("abc"), bulk("port"), Reply::Integer(port)];
    if let Some(t) = tls {
        v.extend([bulk("tls-port"), Reply::Integer(t)]);
    }
    v.extend([
        bulk("ip"),
        bulk(ip),
        bulk("endpoint"),
        bulk(ip),
        bulk("role"),
        bulk(role),
        bulk("replication-offset"),
        Reply::Integer(10),
        bulk("health"),
        bulk(health),
    ]);
    Reply::Array(Some(v))
}

fn shard<'a>(slots: &[i64], nodes: Vec<Reply<'a>>) -> Reply<'a> {
    Reply::Array(Some(vec![
        bulk("slots"),
        Reply::Array(Some(slots.iter().map(|&s| Reply::Integer(s)).collect())),
        bulk("nodes"),
        Reply::Array(Some(nodes)),
    ]))
}

#[test]
fn cluster_shards_is_read_with_the_online_primary_of_each_shard() {
    let reply = Reply::Array(Some(vec![
        shard(
            &[0, 100, 200, 5460],
            vec![
                shard_node("127.0.0.1", 7003, Some(8003), "replica", "online"),
                shard_node("127.0.0.1", 7000, Some(8000), "master", "online"),
            ],
        ),
        shard(
            &[5461, 16383],
            vec![
                shard_node("127.0.0.1", 7001, None, "master", "failed"),
                shard_node("127.0.0.1", 7004, None, "master", "online"),
            ],
        ),
        // A shard without an online primary: its slots stay unknown.
        shard(
            &[101, 199],
            vec![shard_node("127.0.0.1", 7005, None, "master", "loading")],
        ),
    ]));
    let from = ip("127.0.0.1");
    let map = SlotMap::from_shards(&reply, from, false).unwrap();
    let at = |m: &SlotMap, slot| m.owner(slot).map(|i| m.nodes()[i].port());
    assert_eq!(at(&map, 0), Some(7000));
    assert_eq!(at(&map, 150), None);
    assert_eq!(at(&map, 300), Some(7000));
    assert_eq!(at(&map, 9000), Some(7004));
    assert_eq!(map.covered(), SLOTS - 99);
    let tls = SlotMap::from_shards(&reply, from, true).unwrap();
    assert_eq!(at(&tls, 0), Some(8000));
    assert_eq!(at(&tls, 9000), Some(7004), "no tls-port: the port");
}

/// Nodes that prefer host names: the map takes each primary's IP and remembers its name, and
/// a redirect that names a host is to that primary.
#[test]
fn host_names_in_redirects_are_the_map_s_primaries() {
    let named = |ip, port, host| {
        let Reply::Array(Some(mut v)) = shard_node(ip, port, None, "master", "online") else {
            unreachable!()
        };
        v.extend([bulk("hostname"), bulk(host)]);
        Reply::Array(Some(v))
    };
    let reply = Reply::Array(Some(vec![
        shard(&[0, 8000], vec![named("10.0.0.1", 7000, "node-a.redis")]),
        shard(&[8001, 16383], vec![named("10.0.0.2", 7001, "")]),
    ]));
    let from = ip("10.0.0.9");
    let map = SlotMap::from_shards(&reply, from, false).unwrap();
    let a: SocketAddr = "10.0.0.1:7000".parse().unwrap();
    assert_eq!(map.named("node-a.redis", 7000), Some(a));
    assert_eq!(map.named("NODE-A.redis", 7000), Some(a));
    assert_eq!(map.named("node-a.redis", 7001), None, "another port");
    assert_eq!(map.named("", 7001), None, "an empty name is no name");
    let moved = redirect_of(b"MOVED 9000 node-a.redis:7000", from, &map).unwrap();
    assert_eq!((moved.ask, moved.slot, moved.to), (false, 9000, a));
    assert!(
        redirect_of(b"ASK 1 node-a.redis:7000", from, &map)
            .unwrap()
            .ask
    );
    assert_eq!(redirect_of(b"MOVED 1 node-z.redis:7000", from, &map), None);
}

#[test]
fn moved_updates_one_slot() {
    let mut map = SlotMap::default();
    let a: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    let b: SocketAddr = "127.0.0.1:7001".parse().unwrap();
    assert_eq!(map.moved(5, a), Some(0));
    assert_eq!(map.moved(6, b), Some(1));
    assert_eq!(map.moved(7, a), Some(0));
    assert_eq!(
        (map.owner(5), map.owner(6), map.owner(8)),
        (Some(0), Some(1), None)
    );
    assert_eq!(map.nodes().len(), 2);
}
