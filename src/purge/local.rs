//! A purge applied to this instance: the zone, every worker's L1, and a tombstone that
//! keeps an older copy (from Redis, or from an introspection still in flight) out.

use phantom_core::digest::keyed_digest;
use phantom_core::fleet::tombstones::selector_hash;
use phantom_core::purge::Kind;

use crate::cache::ZoneConf;
use crate::metrics::{self, Counter};

/// Removes what the zone holds for the selector, then calls `done` with how many entries
/// went: at once for a token, after a walk over the zone for a subject or client. The
/// tombstone is laid first, so a copy stored meanwhile (from Redis, or by an introspection
/// in flight) is kept out.
pub(crate) fn apply(
    zone: &'static ZoneConf,
    kind: Kind,
    value: &[u8],
    t_ms: i64,
    done: impl FnOnce(u64) + 'static,
) {
    if let Some(key) = zone.zone.nonce_key() {
        let hash = selector_hash(&key, kind, value);
        zone.zone
            .fleet_locked(|f| f.tombstones.add(kind, hash, t_ms));
    }
    let count = move |removed: u64| {
        for _ in 0..removed {
            metrics::count(Counter::Purges);
        }
        done(removed);
    };
    match kind {
        Kind::Token => {
            let removed = zone
                .contexts
                .borrow()
                .iter()
                .filter(|c| zone.zone.purge(&keyed_digest(c, value)))
                .count() as u64;
            zone.zone.bump_epoch();
            count(removed);
        }
        Kind::Sub | Kind::ClientId => {
            super::walk::start(zone, kind, value.to_vec(), Box::new(count));
        }
    }
}

/// The zone's count of purges: taken when a copy is asked for (from Redis, the identity
/// server or the zone's stale entries), then given to [`buried`].
pub(crate) fn purges(zone: &ZoneConf) -> u64 {
    zone.zone
        .fleet_locked(|f| f.tombstones.count())
        .unwrap_or(0)
}

/// Whether a copy of the decision for `token` (and this JWT) asked for when the zone had
/// seen `asked` purges, and made at `made_ms` if known, may have been purged: a purge
/// learnt of since matches it (or more came than the ring keeps), or a remembered purge
/// came after it was made.
pub(crate) fn buried(
    zone: &ZoneConf,
    token: &[u8],
    jwt: Option<&[u8]>,
    made_ms: Option<i64>,
    asked: u64,
) -> bool {
    let check = zone.zone.fleet_locked(|f| {
        let t = &f.tombstones;
        t.count() != asked || (made_ms.is_some() && !t.is_empty())
    });
    if check != Some(true) {
        return false;
    }
    let Some(key) = zone.zone.nonce_key() else {
        return false;
    };
    let tok = selector_hash(&key, Kind::Token, token);
    let claims = jwt.map(phantom_core::jwt::claims_of).unwrap_or_default();
    let hash_of = |kind: Kind| {
        claims
            .get(kind.label())
            .and_then(|v| v.as_str())
            .map(|v| selector_hash(&key, kind, v.as_bytes()))
    };
    let (sub, cid) = (hash_of(Kind::Sub), hash_of(Kind::ClientId));
    let (tok, sub, cid) = (Some(&tok), sub.as_ref(), cid.as_ref());
    zone.zone
        .fleet_locked(|f| {
            let t = &f.tombstones;
            made_ms.is_some_and(|m| t.buried(m, tok, sub, cid))
                || t.purged_since(asked, tok, sub, cid)
        })
        .unwrap_or(false)
}
