//! The JWT cache: a per-worker L1 (`lru`) in front of a shared-memory zone (L2).
//!
//! Keys are SHA-256 digests of the opaque token; raw tokens are never stored.

pub(crate) mod entry;
mod l1;
pub(crate) mod zone;

use std::cell::RefCell;

use crate::fleet::Fleet;

pub(crate) use entry::{CacheStatus, Entry};
pub(crate) use zone::{Life, ReplayError, Stale, Stored, Usage, Zone};

/// Which level answered a hit.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Level {
    L1,
    Zone,
}

/// What a cache lookup found.
pub(crate) enum Lookup {
    Hit(Entry, Level),
    /// Another worker is introspecting this token right now.
    Pending,
    /// `Miss` or `Expired`, with the expired entry when `stale_if_error` still keeps it.
    Miss(CacheStatus, Option<Stale>),
}

/// How long a worker's "introspecting" marker holds other workers back.
const PENDING_MS: i64 = 5000;

/// One `phantom_token_cache_zone`: its parameters, its shared zone and this worker's L1.
pub(crate) struct ZoneConf {
    pub(crate) name: String,
    pub(crate) max_ttl: Option<u64>,
    pub(crate) negative_ttl: u64,
    pub(crate) leeway: u64,
    /// Seconds an active entry may be served past its lifetime while introspection is
    /// unavailable (never past the JWT's `exp`); 0 = off.
    pub(crate) stale_if_error: u64,
    pub(crate) zone: Zone,
    l1: RefCell<l1::L1>,
    /// The Redis tier (`redis=`), shared by the instances of a fleet.
    pub(crate) fleet: Option<Fleet>,
    /// The introspection contexts of the locations using this zone (for purges by token).
    pub(crate) contexts: RefCell<Vec<Vec<u8>>>,
}

impl ZoneConf {
    /// A zone named `name` with an L1 of `l1` entries per worker; its shared memory is
    /// declared by the configuration (`Zone::declare`), its other parameters set there.
    pub(crate) fn new(name: String, l1: usize, fleet: Option<Fleet>) -> ZoneConf {
        ZoneConf {
            name,
            max_ttl: None,
            negative_ttl: 0,
            leeway: 0,
            stale_if_error: 0,
            zone: Zone::default(),
            l1: RefCell::new(l1::L1::new(l1)),
            fleet,
            contexts: RefCell::default(),
        }
    }

    /// Finds a fresh entry: L1 first, then the shared zone (refilling L1). With `max_age`
    /// (ms), an entry created longer ago than that is a miss.
    pub(crate) fn lookup(&self, digest: &[u8; 32], now_ms: i64, max_age: Option<u64>) -> Lookup {
        let young = |created: i64| max_age.is_none_or(|a| now_ms - created < a as i64);
        // Read before the zone: a purge after it leaves this L1 behind, so it is dropped.
        let epoch = self.zone.epoch();
        if let Ok(mut l1) = self.l1.try_borrow_mut() {
            if let Some((e, created)) = l1.get(digest, now_ms, epoch) {
                if young(created) {
                    return Lookup::Hit(e, Level::L1);
                }
            }
        }
        match self.zone.lookup(digest, now_ms) {
            zone::Found::Fresh(_, life) if !young(life.created_ms) => {
                Lookup::Miss(CacheStatus::Miss, None)
            }
            zone::Found::Fresh(entry, life) => {
                if let Ok(mut l1) = self.l1.try_borrow_mut() {
                    l1.put(
                        *digest,
                        (entry.clone(), life.expires_ms, life.created_ms),
                        epoch,
                    );
                }
                Lookup::Hit(entry, Level::Zone)
            }
            zone::Found::Pending => Lookup::Pending,
            zone::Found::Expired(stale) => Lookup::Miss(CacheStatus::Expired, stale),
            zone::Found::Missing => Lookup::Miss(CacheStatus::Miss, None),
        }
    }

    /// Tells other workers this one introspects `digest`; `false` if one already does.
    /// With `max_age` (ms), an entry older than that does not count as fresh.
    pub(crate) fn claim(&self, digest: &[u8; 32], now_ms: i64, max_age: Option<u64>) -> bool {
        let made_after = max_age.map_or(i64::MIN, |a| now_ms - a as i64);
        self.zone
            .claim(digest, now_ms + PENDING_MS, now_ms, made_after)
    }

    /// Withdraws this worker's marker (before storing, or when nothing is stored).
    pub(crate) fn release(&self, digest: &[u8; 32]) {
        self.zone.release(digest);
    }

    /// Stores `entry` until `expires_ms` in both levels, in place of this worker's marker;
    /// with `stale_if_error`, the zone keeps an active entry longer, up to the JWT's `exp`.
    pub(crate) fn store(
        &self,
        digest: &[u8; 32],
        entry: &Entry,
        (expires_ms, created_ms): (i64, i64),
        exp_ms: i64,
        now_ms: i64,
    ) -> Stored {
        let epoch = self.zone.epoch();
        let keep = match entry {
            Entry::Active { .. } if self.stale_if_error > 0 => expires_ms
                .saturating_add(self.stale_if_error as i64 * 1000)
                .min(exp_ms),
            _ => expires_ms,
        };
        let life = Life {
            expires_ms,
            keep_ms: keep,
            created_ms,
        };
        let stored = self.zone.store(digest, entry, life, now_ms);
        if stored == Stored::Yes {
            if let Ok(mut l1) = self.l1.try_borrow_mut() {
                l1.put(*digest, (entry.clone(), expires_ms, created_ms), epoch);
            }
        }
        stored
    }

    /// Puts a stale entry back after it was served, so that it stays available while the
    /// identity server is down (never into L1, which serves only fresh entries).
    pub(crate) fn restore(&self, digest: &[u8; 32], stale: &Stale, now_ms: i64) {
        let life = Life {
            expires_ms: stale.expires_ms,
            keep_ms: stale.keep_ms,
            created_ms: stale.created_ms,
        };
        self.zone.store(digest, &stale.entry, life, now_ms);
    }
}
