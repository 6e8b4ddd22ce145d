//! Tombstones: a fixed ring of recent purges, kept in nginx shared memory.
//!
//! A purge removes cache entries, but a request already in flight may store a result for the
//! purged token right after. Every store and hit therefore checks the ring: an entry created
//! at or before a matching purge is dead. Selectors are kept as truncated HMACs (see
//! [`selector_hash`]), never in clear.
//!
//! Shared memory holds plain data only: `#[repr(C)]`, `Copy`, no pointers, no heap, and all-zero
//! bytes are a valid empty ring (kind 0 is an empty slot), so a zeroed zone needs no
//! initialisation. Nothing here trusts the stored bytes: `next` is reduced modulo the capacity
//! and unknown kinds never match.

use crate::purge::Kind;
use ring::hmac;

/// Number of tombstones kept; the oldest is overwritten first.
pub const CAPACITY: usize = 64;

/// One purge. `kind` 0 is an empty slot; otherwise [`Kind::code`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tomb {
    /// 0 (empty), 1 (token), 2 (sub) or 3 (client_id).
    pub kind: u8,
    /// [`selector_hash`] of the purged value.
    pub hash: [u8; 16],
    /// The ring's count of purges once this one was added (low 32 bits): the order in
    /// which this instance learnt of purges, free of clock resolution and skew.
    pub seq: u32,
    /// Wall time (ms since the epoch) of the purge.
    pub t_ms: i64,
}

impl Tomb {
    /// The empty slot (all zero).
    pub const EMPTY: Tomb = Tomb {
        kind: 0,
        hash: [0; 16],
        seq: 0,
        t_ms: 0,
    };
}

/// The ring of the last [`CAPACITY`] purges.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tombstones {
    next: u32,
    items: [Tomb; CAPACITY],
    /// Purges added since the zone was laid out.
    count: u64,
}

/// All zero: the same value as zeroed shared memory.
impl Default for Tombstones {
    fn default() -> Self {
        Tombstones::EMPTY
    }
}

/// The first 16 bytes of `HMAC-SHA-256(key, label || 0x00 || value)`: the label separates
/// kinds (a subject equal to a client id is another selector). 128 bits keep accidental
/// collisions, which would only purge too much, out of reach.
pub fn selector_hash(key: &[u8; 32], kind: Kind, value: &[u8]) -> [u8; 16] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(kind.label().as_bytes());
    ctx.update(&[0]);
    ctx.update(value);
    let tag = ctx.sign();
    let mut out = [0u8; 16];
    for (o, t) in out.iter_mut().zip(tag.as_ref()) {
        *o = *t;
    }
    out
}

impl Tombstones {
    /// The empty ring (all zero).
    pub const EMPTY: Tombstones = Tombstones {
        next: 0,
        items: [Tomb::EMPTY; CAPACITY],
        count: 0,
    };

    /// Records a purge, overwriting the oldest slot.
    pub fn add(&mut self, kind: Kind, hash: [u8; 16], t_ms: i64) {
        let i = self.next as usize % CAPACITY;
        self.count = self.count.wrapping_add(1);
        if let Some(slot) = self.items.get_mut(i) {
            *slot = Tomb {
                kind: kind.code(),
                hash,
                seq: self.count as u32,
                t_ms,
            };
        }
        self.next = ((i + 1) % CAPACITY) as u32;
    }

    /// Whether no purge was ever recorded (the hot path skips hashing then).
    pub fn is_empty(&self) -> bool {
        self.items.iter().all(|t| t.kind == 0)
    }

    /// How many purges are recorded (at most [`CAPACITY`]).
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether an entry created at `created_ms`, with these selector hashes, was purged since:
    /// some tomb of the same kind has the same hash and `created_ms <= t_ms`.
    pub fn buried(
        &self,
        created_ms: i64,
        token_h: Option<&[u8; 16]>,
        sub_h: Option<&[u8; 16]>,
        cid_h: Option<&[u8; 16]>,
    ) -> bool {
        self.items.iter().any(|t| {
            let h = match Kind::from_code(t.kind) {
                Some(Kind::Token) => token_h,
                Some(Kind::Sub) => sub_h,
                Some(Kind::ClientId) => cid_h,
                None => None,
            };
            h.is_some_and(|h| *h == t.hash) && created_ms <= t.t_ms
        })
    }

    /// How many purges this ring has taken: a copy asked for now is checked later against
    /// the purges added after it ([`Tombstones::purged_since`]).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether a purge with these selector hashes was added after the ring's count was
    /// `asked` (a copy asked for then may predate it), or more purges came since than the
    /// ring keeps (the copy cannot be proven alive).
    pub fn purged_since(
        &self,
        asked: u64,
        token_h: Option<&[u8; 16]>,
        sub_h: Option<&[u8; 16]>,
        cid_h: Option<&[u8; 16]>,
    ) -> bool {
        let since = self.count.wrapping_sub(asked);
        if since == 0 {
            return false;
        }
        if since > CAPACITY as u64 {
            return true;
        }
        self.items.iter().any(|t| {
            let h = match Kind::from_code(t.kind) {
                Some(Kind::Token) => token_h,
                Some(Kind::Sub) => sub_h,
                Some(Kind::ClientId) => cid_h,
                None => None,
            };
            let newer = (t.seq.wrapping_sub(asked as u32) as i32) > 0;
            newer && h.is_some_and(|h| *h == t.hash)
        })
    }

    /// The recorded purges, in slot order (for status pages and tests).
    pub fn iter(&self) -> impl Iterator<Item = &Tomb> {
        self.items.iter().filter(|t| t.kind != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purged_since_follows_the_order_purges_arrived_in() {
        let mut t = Tombstones::default();
        let sub = [3; 16];
        let before = t.count();
        assert!(!t.purged_since(before, Some(&sub), Some(&sub), Some(&sub)));
        t.add(Kind::Sub, sub, 1000);
        let after = t.count();
        assert!(t.purged_since(before, None, Some(&sub), None));
        assert!(
            !t.purged_since(before, Some(&sub), None, Some(&sub)),
            "other kinds"
        );
        assert!(
            !t.purged_since(after, None, Some(&sub), None),
            "asked after it"
        );
        t.add(Kind::Token, [4; 16], 900);
        assert!(!t.purged_since(after, None, Some(&sub), None));
        assert!(
            t.purged_since(after, Some(&[4; 16]), None, None),
            "clock order ignored"
        );
        for i in 0..CAPACITY as i64 {
            t.add(Kind::Token, [5; 16], i);
        }
        assert!(
            t.purged_since(after, None, None, None),
            "more purges than kept"
        );
        let now = t.count();
        assert!(!t.purged_since(now, Some(&[5; 16]), None, None));
    }

    const KEY: [u8; 32] = [7; 32];

    fn h(kind: Kind, v: &str) -> [u8; 16] {
        selector_hash(&KEY, kind, v.as_bytes())
    }

    #[test]
    fn default_is_all_zero_and_empty() {
        let t = Tombstones::default();
        assert_eq!(t, Tombstones::EMPTY);
        assert_eq!(t.next, 0);
        assert!(t.items.iter().all(|x| *x == Tomb::default()));
        assert!(t
            .items
            .iter()
            .all(|x| x.kind == 0 && x.hash == [0; 16] && x.t_ms == 0));
        assert!(t.is_empty());
        assert_eq!(t.iter().count(), 0);
        assert_eq!(t.len(), 0);
        // An empty ring buries nothing, not even an all-zero hash at time 0.
        assert!(!t.buried(0, Some(&[0; 16]), Some(&[0; 16]), Some(&[0; 16])));
        assert!(!t.buried(i64::MIN, Some(&[0; 16]), None, None));
    }

    #[test]
    fn layout_is_plain_data() {
        assert_eq!(core::mem::size_of::<Tomb>(), 32);
        assert_eq!(core::mem::align_of::<Tombstones>(), 8);
        assert_eq!(core::mem::size_of::<Tombstones>(), 8 + 32 * CAPACITY + 8);
    }

    #[test]
    fn selector_hash_separates_kinds_keys_and_values() {
        let a = h(Kind::Sub, "alice");
        assert_eq!(a, h(Kind::Sub, "alice"));
        assert_ne!(a, h(Kind::ClientId, "alice"));
        assert_ne!(a, h(Kind::Token, "alice"));
        assert_ne!(a, h(Kind::Sub, "alicf"));
        assert_ne!(a, selector_hash(&[8; 32], Kind::Sub, b"alice"));
        // The 0x00 separator: label "sub" + "x" is not label "su" + "bx" (no such label, but
        // the value cannot slide into the label either way).
        assert_ne!(h(Kind::Sub, ""), h(Kind::Token, ""));
    }

    #[test]
    fn selector_hash_matches_an_independent_hmac() {
        // Python: hmac.new(bytes([7]*32), b"sub\x00alice", sha256).digest()[:16]
        let key = hmac::Key::new(hmac::HMAC_SHA256, &KEY);
        let full = hmac::sign(&key, b"sub\x00alice");
        assert_eq!(&h(Kind::Sub, "alice")[..], &full.as_ref()[..16]);
    }

    #[test]
    fn matches_per_kind() {
        let mut t = Tombstones::default();
        t.add(Kind::Token, h(Kind::Token, "tok"), 1000);
        t.add(Kind::Sub, h(Kind::Sub, "alice"), 2000);
        t.add(Kind::ClientId, h(Kind::ClientId, "web"), 3000);
        assert!(!t.is_empty());
        assert_eq!(t.iter().count(), 3);
        assert_eq!(t.len(), 3);
        let tok = h(Kind::Token, "tok");
        let sub = h(Kind::Sub, "alice");
        let cid = h(Kind::ClientId, "web");
        assert!(t.buried(1000, Some(&tok), None, None));
        assert!(t.buried(2000, None, Some(&sub), None));
        assert!(t.buried(3000, None, None, Some(&cid)));
        assert!(t.buried(500, Some(&h(Kind::Token, "other")), Some(&sub), None));
        // A hash only matches tombs of its own kind.
        assert!(!t.buried(0, Some(&sub), None, Some(&tok)));
        assert!(!t.buried(0, None, Some(&cid), None));
        assert!(!t.buried(
            0,
            Some(&h(Kind::Token, "x")),
            Some(&h(Kind::Sub, "y")),
            None
        ));
        assert!(!t.buried(0, None, None, None));
    }

    #[test]
    fn created_after_the_purge_is_not_buried() {
        let mut t = Tombstones::default();
        let sub = h(Kind::Sub, "alice");
        t.add(Kind::Sub, sub, 2000);
        assert!(t.buried(2000, None, Some(&sub), None));
        assert!(t.buried(i64::MIN, None, Some(&sub), None));
        assert!(!t.buried(2001, None, Some(&sub), None));
        // A second, later purge of the same subject covers later entries.
        t.add(Kind::Sub, sub, 5000);
        assert!(t.buried(4000, None, Some(&sub), None));
        assert!(!t.buried(5001, None, Some(&sub), None));
    }

    #[test]
    fn ring_overwrites_the_oldest() {
        let mut t = Tombstones::default();
        let hash = |i: usize| h(Kind::Token, &i.to_string());
        for i in 0..CAPACITY + 10 {
            t.add(Kind::Token, hash(i), 100);
        }
        assert_eq!(t.iter().count(), CAPACITY);
        assert_eq!(t.len(), CAPACITY);
        for i in 0..10 {
            assert!(!t.buried(0, Some(&hash(i)), None, None), "{i} overwritten");
        }
        for i in 10..CAPACITY + 10 {
            assert!(t.buried(0, Some(&hash(i)), None, None), "{i} kept");
        }
        assert_eq!(t.next, 10);
        for i in 0..3 * CAPACITY {
            t.add(Kind::Sub, hash(i), 1);
        }
        assert_eq!(t.next as usize, (10 + 3 * CAPACITY) % CAPACITY);
        assert!(t.iter().all(|x| x.kind == Kind::Sub.code()));
    }

    #[test]
    fn corrupt_shared_memory_is_harmless() {
        let mut t = Tombstones {
            next: u32::MAX,
            ..Tombstones::default()
        };
        t.add(Kind::Token, [1; 16], 5);
        assert!(t.buried(5, Some(&[1; 16]), None, None));
        assert!((t.next as usize) < CAPACITY);
        // Unknown kinds never match.
        t.items[3] = Tomb {
            kind: 9,
            hash: [2; 16],
            seq: 0,
            t_ms: i64::MAX,
        };
        assert!(!t.buried(0, Some(&[2; 16]), Some(&[2; 16]), Some(&[2; 16])));
    }
}
