//! Sentinel: where the primary of a named master is, and the `+switch-master` messages that
//! say it moved.
//!
//! A Sentinel answers `SENTINEL get-master-addr-by-name <name>` with `[ip, port]`, or a nil
//! when it does not know that name. After a failover it publishes on `+switch-master`:
//! `<name> <old-ip> <old-port> <new-ip> <new-port>`. With `announce-hostnames yes` (common on
//! Kubernetes, where pods' IPs change) the IPs are host names.

use std::net::{IpAddr, SocketAddr};

use super::resp::{self, Reply};

/// The command asking where the primary of `master` is.
pub fn ask_command(master: &str) -> Vec<u8> {
    resp::command(&[b"SENTINEL", b"get-master-addr-by-name", master.as_bytes()])
}

/// The command that subscribes to failover announcements.
pub fn watch_command() -> Vec<u8> {
    resp::command(&[b"SUBSCRIBE", b"+switch-master"])
}

/// Where a Sentinel says the primary is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Primary {
    /// An IP address and port.
    Addr(SocketAddr),
    /// A host name (`announce-hostnames yes`) and port, for a resolver to follow.
    Host(String, u16),
}

/// What a Sentinel said about the primary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The primary's address or name.
    At(Primary),
    /// The Sentinel does not monitor a master of that name (a nil reply).
    Unknown,
    /// An error reply, an address that is neither an IP nor a host name, or another shape.
    Invalid,
}

/// Reads the reply to [`ask_command`].
pub fn answer_of(reply: &Reply) -> Answer {
    match reply {
        Reply::Array(None) | Reply::Bulk(None) => Answer::Unknown,
        Reply::Array(Some(items)) => match items.as_slice() {
            [Reply::Bulk(Some(ip)), Reply::Bulk(Some(port))] => {
                primary_of(ip, port).map_or(Answer::Invalid, Answer::At)
            }
            _ => Answer::Invalid,
        },
        _ => Answer::Invalid,
    }
}

/// Reads a pub/sub message: the new primary of `master` when it is a `+switch-master`
/// message about it; `None` for anything else (the subscription's confirmation, other
/// masters).
pub fn switched_to(reply: &Reply, master: &str) -> Option<Primary> {
    let Reply::Array(Some(items)) = reply else {
        return None;
    };
    let [Reply::Bulk(Some(b"message")), Reply::Bulk(Some(b"+switch-master")), Reply::Bulk(Some(text))] =
        items.as_slice()
    else {
        return None;
    };
    let text = core::str::from_utf8(text).ok()?;
    let mut words = text.split(' ');
    if words.next()? != master {
        return None;
    }
    let (_old_ip, _old_port) = (words.next()?, words.next()?);
    let (ip, port) = (words.next()?, words.next()?);
    if words.next().is_some() {
        return None;
    }
    primary_of(ip.as_bytes(), port.as_bytes())
}

fn primary_of(host: &[u8], port: &[u8]) -> Option<Primary> {
    let port: u16 = core::str::from_utf8(port).ok()?.parse().ok()?;
    let host = core::str::from_utf8(host).ok()?;
    if port == 0 {
        return None;
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(Primary::Addr(SocketAddr::new(ip, port)));
    }
    is_host_name(host).then(|| Primary::Host(host.to_string(), port))
}

/// A DNS name as resolvers take it: dot-separated labels of letters, digits, `-` and `_`
/// (Kubernetes service names), 1 to 63 bytes each, at most 253 in all.
fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.trim_end_matches('.').split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(b: &[u8]) -> Reply<'_> {
        Reply::Bulk(Some(b))
    }

    #[test]
    fn the_answers() {
        let addr = |a: &str| Answer::At(Primary::Addr(a.parse().unwrap()));
        let at = Reply::Array(Some(vec![bulk(b"127.0.0.1"), bulk(b"6380")]));
        assert_eq!(answer_of(&at), addr("127.0.0.1:6380"));
        let v6 = Reply::Array(Some(vec![bulk(b"::1"), bulk(b"6380")]));
        assert_eq!(answer_of(&v6), addr("[::1]:6380"));
        assert_eq!(answer_of(&Reply::Array(None)), Answer::Unknown);
        assert_eq!(answer_of(&Reply::Bulk(None)), Answer::Unknown);
        let host = Reply::Array(Some(vec![bulk(b"redis-0.redis_hl.ns.svc."), bulk(b"6379")]));
        assert_eq!(
            answer_of(&host),
            Answer::At(Primary::Host("redis-0.redis_hl.ns.svc.".into(), 6379))
        );
        for bad in [&b"a b"[..], b"", b"a..b", b"a/b", b"\xff"] {
            let r = Reply::Array(Some(vec![bulk(bad), bulk(b"6379")]));
            assert_eq!(answer_of(&r), Answer::Invalid, "{bad:?}");
        }
        let long = Reply::Array(Some(vec![bulk(&[b'a'; 64]), bulk(b"6379")]));
        assert_eq!(answer_of(&long), Answer::Invalid);
        let port0 = Reply::Array(Some(vec![bulk(b"10.0.0.1"), bulk(b"0")]));
        assert_eq!(answer_of(&port0), Answer::Invalid);
        assert_eq!(answer_of(&Reply::Error(b"ERR unknown")), Answer::Invalid);
        let three = Reply::Array(Some(vec![bulk(b"1.2.3.4"), bulk(b"1"), bulk(b"2")]));
        assert_eq!(answer_of(&three), Answer::Invalid);
    }

    #[test]
    fn switch_messages() {
        let msg = |text: &'static [u8]| {
            Reply::Array(Some(vec![
                bulk(b"message"),
                bulk(b"+switch-master"),
                bulk(text),
            ]))
        };
        let m = msg(b"mymaster 127.0.0.1 6379 127.0.0.1 6380");
        assert_eq!(
            switched_to(&m, "mymaster"),
            Some(Primary::Addr("127.0.0.1:6380".parse().unwrap()))
        );
        let named = msg(b"mymaster redis-0.svc 6379 redis-1.svc 6379");
        assert_eq!(
            switched_to(&named, "mymaster"),
            Some(Primary::Host("redis-1.svc".into(), 6379))
        );
        assert_eq!(switched_to(&m, "other"), None);
        assert_eq!(switched_to(&msg(b"mymaster 1.2.3.4 1"), "mymaster"), None);
        assert_eq!(switched_to(&msg(b"mymaster a b c d e"), "mymaster"), None);
        let confirm = Reply::Array(Some(vec![
            bulk(b"subscribe"),
            bulk(b"+switch-master"),
            Reply::Integer(1),
        ]));
        assert_eq!(switched_to(&confirm, "mymaster"), None);
    }

    #[test]
    fn commands() {
        assert_eq!(
            ask_command("m"),
            b"*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$1\r\nm\r\n"
        );
        assert_eq!(
            watch_command(),
            b"*2\r\n$9\r\nSUBSCRIBE\r\n$14\r\n+switch-master\r\n"
        );
    }
}
