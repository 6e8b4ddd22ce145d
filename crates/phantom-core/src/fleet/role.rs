//! The server's role, from its answer to `ROLE`, asked once per new connection: the fleet
//! tier writes, so it wants the primary, and passes over a replica (or a Sentinel).

use super::resp::Reply;

/// What `ROLE` said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `master`: the server takes writes.
    Primary,
    /// `slave` (or `replica`) or `sentinel`: another address may be the primary.
    NotPrimary,
    /// An error reply (an ACL without `ROLE`, a proxy that does not know it) or another
    /// shape: nothing is known, so the server is used, and a write it refuses
    /// (`READONLY`) moves on then.
    Unknown,
}

/// Reads the reply to `ROLE`.
pub fn role_of(reply: &Reply) -> Role {
    let Reply::Array(Some(items)) = reply else {
        return Role::Unknown;
    };
    match items.first() {
        Some(Reply::Bulk(Some(b"master"))) => Role::Primary,
        Some(Reply::Bulk(Some(b"slave" | b"replica" | b"sentinel"))) => Role::NotPrimary,
        _ => Role::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_roles() {
        let master = Reply::Array(Some(vec![
            Reply::Bulk(Some(b"master")),
            Reply::Integer(3129659),
            Reply::Array(Some(vec![])),
        ]));
        assert_eq!(role_of(&master), Role::Primary);
        let replica = Reply::Array(Some(vec![
            Reply::Bulk(Some(b"slave")),
            Reply::Bulk(Some(b"127.0.0.1")),
            Reply::Integer(9839),
            Reply::Bulk(Some(b"connected")),
            Reply::Integer(3167038),
        ]));
        assert_eq!(role_of(&replica), Role::NotPrimary);
        let sentinel = Reply::Array(Some(vec![Reply::Bulk(Some(b"sentinel"))]));
        assert_eq!(role_of(&sentinel), Role::NotPrimary);
        assert_eq!(role_of(&Reply::Error(b"NOPERM no role")), Role::Unknown);
        assert_eq!(role_of(&Reply::Array(Some(vec![]))), Role::Unknown);
        assert_eq!(role_of(&Reply::Bulk(Some(b"master"))), Role::Unknown);
    }
}
