//! What the cache holds: a decision ([`Entry`]) and the status a lookup reports.

use std::cell::OnceCell;
use std::rc::Rc;

use phantom_core::dpop::Binding;

/// A cached introspection result.
#[derive(Clone, Debug)]
pub(crate) enum Entry {
    Active {
        jwt: Rc<[u8]>,
        scope: Rc<str>,
        /// The JWT's confirmation claims, read once per entry in this worker (L1 hits
        /// share it), only where a location checks bindings.
        binding: Rc<OnceCell<Binding>>,
    },
    Inactive,
}

impl Entry {
    pub(crate) fn active(jwt: Rc<[u8]>, scope: Rc<str>) -> Entry {
        Entry::Active {
            jwt,
            scope,
            binding: Rc::default(),
        }
    }
}

/// `$phantom_token_cache_status`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum CacheStatus {
    Bypass,
    Miss,
    Hit,
    Expired,
    /// The identity server was unavailable; an expired entry was served (`stale_if_error`).
    Stale,
    /// Missed, and the identity server's `Cache-Control` forbade storing the answer.
    NoStore,
}

impl CacheStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Bypass => "BYPASS",
            CacheStatus::Miss => "MISS",
            CacheStatus::Hit => "HIT",
            CacheStatus::Expired => "EXPIRED",
            CacheStatus::Stale => "STALE",
            CacheStatus::NoStore => "NOSTORE",
        }
    }
}
