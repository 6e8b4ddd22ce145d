//! Sentinel: where the primary of a named master is, and the `+switch-master` messages that
//! say it moved.
//!
//! A Sentinel answers `SENTINEL get-master-addr-by-name <name>` with `[ip, port]`, or a nil
//! when it does not know that name. After a failover it publishes on `+switch-master`:
//! `<name> <old-ip> <old-port> <new-ip> <new-port>`.

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

/// What a Sentinel said about the primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The primary's address.
    At(SocketAddr),
    /// The Sentinel does not monitor a master of that name (a nil reply).
    Unknown,
    /// An error reply, a host name where an IP was expected, or another shape.
    Invalid,
}

/// Reads the reply to [`ask_command`].
pub fn answer_of(reply: &Reply) -> Answer {
    match reply {
        Reply::Array(None) | Reply::Bulk(None) => Answer::Unknown,
        Reply::Array(Some(items)) => match items.as_slice() {
            [Reply::Bulk(Some(ip)), Reply::Bulk(Some(port))] => {
                addr_of(ip, port).map_or(Answer::Invalid, Answer::At)
            }
            _ => Answer::Invalid,
        },
        _ => Answer::Invalid,
    }
}

/// Reads a pub/sub message: the new primary of `master` when it is a `+switch-master`
/// message about it; `None` for anything else (the subscription's confirmation, other
/// masters).
pub fn switched_to(reply: &Reply, master: &str) -> Option<SocketAddr> {
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
    addr_of(ip.as_bytes(), port.as_bytes())
}

fn addr_of(ip: &[u8], port: &[u8]) -> Option<SocketAddr> {
    let ip: IpAddr = core::str::from_utf8(ip).ok()?.parse().ok()?;
    let port: u16 = core::str::from_utf8(port).ok()?.parse().ok()?;
    (port != 0).then_some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(b: &[u8]) -> Reply<'_> {
        Reply::Bulk(Some(b))
    }

    #[test]
    fn the_answers() {
        let at = Reply::Array(Some(vec![bulk(b"127.0.0.1"), bulk(b"6380")]));
        assert_eq!(
            answer_of(&at),
            Answer::At("127.0.0.1:6380".parse().unwrap())
        );
        let v6 = Reply::Array(Some(vec![bulk(b"::1"), bulk(b"6380")]));
        assert_eq!(answer_of(&v6), Answer::At("[::1]:6380".parse().unwrap()));
        assert_eq!(answer_of(&Reply::Array(None)), Answer::Unknown);
        assert_eq!(answer_of(&Reply::Bulk(None)), Answer::Unknown);
        let host = Reply::Array(Some(vec![bulk(b"redis-0.local"), bulk(b"6379")]));
        assert_eq!(answer_of(&host), Answer::Invalid);
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
            Some("127.0.0.1:6380".parse().unwrap())
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
