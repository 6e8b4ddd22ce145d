//! What a server says about itself in its answer to `HELLO 2`, asked once per connection:
//! which server and version it is (so newer commands are used only where they exist), and
//! whether it is a standalone server, a Sentinel or a cluster node.

use super::resp::Reply;

/// The server's name and version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Server {
    /// `valkey` rather than `redis`.
    pub valkey: bool,
    /// `major.minor.patch`.
    pub version: (u32, u32, u32),
    /// `mode`: `sentinel` or `cluster` rather than `standalone`.
    pub mode: Mode,
}

/// The server's `mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// A standalone server (or what a proxy pretends to be); also when not said.
    #[default]
    Standalone,
    /// A Sentinel, which holds no data.
    Sentinel,
    /// A Redis Cluster node.
    Cluster,
}

impl Server {
    /// Whether the server has `DELIFEQ` (Valkey 9.0 and later): a compare-and-delete
    /// without a script.
    pub fn has_delifeq(&self) -> bool {
        self.valkey && self.version >= (9, 0, 0)
    }
}

/// Reads the reply to `HELLO 2`: a flat array of field names and values. `None` for an
/// error reply (a server older than 6.0, an ACL without `HELLO`) or another shape.
pub fn server_of(reply: &Reply) -> Option<Server> {
    let Reply::Array(Some(items)) = reply else {
        return None;
    };
    let mut server = Server::default();
    for pair in items.chunks_exact(2) {
        let [Reply::Bulk(Some(name)), value] = pair else {
            continue;
        };
        let text = match value {
            Reply::Bulk(Some(v)) => *v,
            _ => continue,
        };
        match *name {
            b"server" => server.valkey = text == b"valkey",
            b"version" => server.version = version_of(text)?,
            b"mode" => {
                server.mode = match text {
                    b"sentinel" => Mode::Sentinel,
                    b"cluster" => Mode::Cluster,
                    _ => Mode::Standalone,
                }
            }
            _ => {}
        }
    }
    Some(server)
}

fn version_of(text: &[u8]) -> Option<(u32, u32, u32)> {
    let text = core::str::from_utf8(text).ok()?;
    let mut parts = text.split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello<'a>(fields: &[(&'a [u8], Reply<'a>)]) -> Reply<'a> {
        let mut items = Vec::new();
        for (k, v) in fields {
            items.push(Reply::Bulk(Some(*k)));
            items.push(v.clone());
        }
        Reply::Array(Some(items))
    }

    #[test]
    fn servers_and_versions() {
        let redis = hello(&[
            (b"server", Reply::Bulk(Some(b"redis"))),
            (b"version", Reply::Bulk(Some(b"7.0.15"))),
            (b"proto", Reply::Integer(2)),
            (b"id", Reply::Integer(7)),
            (b"mode", Reply::Bulk(Some(b"standalone"))),
            (b"role", Reply::Bulk(Some(b"master"))),
            (b"modules", Reply::Array(Some(vec![]))),
        ]);
        let s = server_of(&redis).unwrap();
        assert_eq!(
            (s.valkey, s.version, s.mode),
            (false, (7, 0, 15), Mode::Standalone)
        );
        assert!(!s.has_delifeq());
        let valkey9 = hello(&[
            (b"server", Reply::Bulk(Some(b"valkey"))),
            (b"version", Reply::Bulk(Some(b"9.0.1"))),
            (b"mode", Reply::Bulk(Some(b"cluster"))),
        ]);
        let s = server_of(&valkey9).unwrap();
        assert!(s.has_delifeq());
        assert_eq!(s.mode, Mode::Cluster);
        let valkey8 = hello(&[
            (b"server", Reply::Bulk(Some(b"valkey"))),
            (b"version", Reply::Bulk(Some(b"8.1.4"))),
        ]);
        assert!(!server_of(&valkey8).unwrap().has_delifeq());
        let sentinel = hello(&[(b"mode", Reply::Bulk(Some(b"sentinel")))]);
        assert_eq!(server_of(&sentinel).unwrap().mode, Mode::Sentinel);
    }

    #[test]
    fn what_is_not_an_answer() {
        assert_eq!(server_of(&Reply::Error(b"NOPERM no hello")), None);
        assert_eq!(server_of(&Reply::Bulk(Some(b"x"))), None);
        let bad = hello(&[(b"version", Reply::Bulk(Some(b"x.y")))]);
        assert_eq!(server_of(&bad), None);
        assert_eq!(version_of(b"6"), Some((6, 0, 0)));
        assert_eq!(version_of(b"255.255.255"), Some((255, 255, 255)));
    }
}
