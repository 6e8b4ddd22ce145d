//! What a Redis error reply means for the fleet tier, read from its code (the first word).
//!
//! No reply goes unheard: each class has its own handling in the connection (close and move
//! on, or a counted miss), its own `reason` label on `phantom_token_redis_errors_total`, and
//! its own log line.

/// The meaning of an error reply.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ErrorClass {
    /// `READONLY`, `MASTERDOWN`, `LOADING`: this server cannot serve us now (a replica, a
    /// demoted primary, a restart), another address may.
    Role,
    /// `NOAUTH`, `WRONGPASS`, `NOPERM`: the credentials are missing or wrong.
    Auth,
    /// `MOVED`, `ASK`, `CROSSSLOT`, `CLUSTERDOWN`, `TRYAGAIN`: the server is sharded.
    Cluster,
    /// `OOM`: the server is full; writes pause for a while.
    Full,
    /// Anything else (unknown command, wrong arguments, script error): a miss.
    Other,
}

impl ErrorClass {
    /// The class of an error reply's line (`-READONLY You can't write...` without the dash).
    pub fn of(line: &[u8]) -> ErrorClass {
        let code = line.split(|&b| b == b' ').next().unwrap_or_default();
        match code {
            b"READONLY" | b"MASTERDOWN" | b"LOADING" => ErrorClass::Role,
            b"NOAUTH" | b"WRONGPASS" | b"NOPERM" => ErrorClass::Auth,
            b"MOVED" | b"ASK" | b"CROSSSLOT" | b"CLUSTERDOWN" | b"TRYAGAIN" => ErrorClass::Cluster,
            b"OOM" => ErrorClass::Full,
            _ => ErrorClass::Other,
        }
    }

    /// Whether the connection must close: its server cannot serve this client as it is.
    pub fn closes(self) -> bool {
        matches!(self, ErrorClass::Role | ErrorClass::Auth)
    }

    /// The `reason` label of `phantom_token_redis_errors_total`.
    pub fn label(self) -> &'static str {
        match self {
            ErrorClass::Role => "role",
            ErrorClass::Auth => "auth",
            ErrorClass::Cluster => "cluster",
            ErrorClass::Full | ErrorClass::Other => "error_reply",
        }
    }

    /// A slot per class (for counters and log state).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Number of classes.
    pub const COUNT: usize = 5;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_their_class() {
        let cases: &[(&[u8], ErrorClass)] = &[
            (
                b"READONLY You can't write against a read only replica.",
                ErrorClass::Role,
            ),
            (b"MASTERDOWN Link with MASTER is down", ErrorClass::Role),
            (
                b"LOADING Redis is loading the dataset in memory",
                ErrorClass::Role,
            ),
            (b"NOAUTH Authentication required.", ErrorClass::Auth),
            (
                b"WRONGPASS invalid username-password pair",
                ErrorClass::Auth,
            ),
            (b"NOPERM this user has no permissions", ErrorClass::Auth),
            (b"MOVED 3999 127.0.0.1:6381", ErrorClass::Cluster),
            (b"ASK 3999 127.0.0.1:6381", ErrorClass::Cluster),
            (
                b"CROSSSLOT Keys in request don't hash to the same slot",
                ErrorClass::Cluster,
            ),
            (b"CLUSTERDOWN The cluster is down", ErrorClass::Cluster),
            (
                b"TRYAGAIN Multiple keys request during rehashing",
                ErrorClass::Cluster,
            ),
            (
                b"OOM command not allowed when used memory > 'maxmemory'.",
                ErrorClass::Full,
            ),
            (b"ERR unknown command 'FOO'", ErrorClass::Other),
            (b"ERR Error running script", ErrorClass::Other),
            (b"NOSCRIPT No matching script", ErrorClass::Other),
            (b"", ErrorClass::Other),
            (b"readonly lower case is not a code", ErrorClass::Other),
        ];
        for (line, class) in cases {
            assert_eq!(
                ErrorClass::of(line),
                *class,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn only_role_and_auth_close() {
        assert!(ErrorClass::Role.closes());
        assert!(ErrorClass::Auth.closes());
        assert!(!ErrorClass::Cluster.closes());
        assert!(!ErrorClass::Full.closes());
        assert!(!ErrorClass::Other.closes());
        assert_eq!(ErrorClass::Other.index() + 1, ErrorClass::COUNT);
    }
}
