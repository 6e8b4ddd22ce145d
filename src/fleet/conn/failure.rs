//! Why a connection failed, for the breaker's one log line.

use super::super::tls::TlsError;

/// Why a connection failed, for the breaker's log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    Connect,
    Timeout,
    Closed,
    Protocol,
    Auth,
    /// The server cannot serve us now (`READONLY`, `MASTERDOWN`, `LOADING`).
    Role,
    /// TLS: the handshake or the certificate check failed.
    Tls(TlsError),
}

impl Failure {
    /// Why, in a log line.
    pub(crate) fn describe(self) -> String {
        match self {
            Failure::Tls(e) => e.describe(),
            other => other.as_str().into(),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Failure::Connect => "connection failed",
            Failure::Timeout => "timed out",
            Failure::Closed => "connection closed",
            Failure::Protocol => "invalid reply",
            Failure::Auth => "authentication failed",
            Failure::Role => "not a writable primary",
            Failure::Tls(_) => "TLS failed",
        }
    }
}
