//! The zone's whole index: the primary hash table by 32-byte digest and the subject and
//! client chains, kept in step. Store, eviction, expiry and every purge go through here, so
//! an entry is on its chains exactly while the primary table holds it.
//!
//! Sizing: one indexed entry per [`BYTES_PER_ENTRY`] bytes of zone, each table at the load
//! bound ([`slots_for`]). A zone of 1 KiB JWTs (1,152 slab bytes each) then fills its slabs at
//! 44 % of the index's entries; smaller entries (markers, remembered proofs, negatives) meet
//! the index's bound first, and the zone evicts by LRU as it does when its slabs are full.

use crate::chain::{Chain, Chains, Entries, Links, NO_KEY};
use crate::table::{slots_for, tag_of, Error, Slot, Table};

/// Zone bytes per indexed entry.
pub const BYTES_PER_ENTRY: usize = 512;

/// How many slots each table of a zone of `zone_bytes` has: (primary, groups).
pub fn layout(zone_bytes: usize) -> (usize, usize) {
    let entries = zone_bytes / BYTES_PER_ENTRY;
    (slots_for(entries), slots_for(entries))
}

/// Bytes the index of a zone takes: both slot arrays.
pub fn index_bytes(zone_bytes: usize) -> usize {
    let (p, g) = layout(zone_bytes);
    (p + g) * core::mem::size_of::<Slot>()
}

/// The primary table and the chains of one zone.
pub struct ZoneIndex<'a> {
    primary: Table<'a>,
    chains: Chains<'a>,
}

impl<'a> ZoneIndex<'a> {
    /// The index over its two tables.
    pub fn new(primary: Table<'a>, groups: Table<'a>) -> Self {
        ZoneIndex {
            primary,
            chains: Chains::new(groups),
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.primary.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.primary.is_empty()
    }

    /// Distinct subjects and clients held.
    pub fn groups(&self) -> usize {
        self.chains.groups()
    }

    /// The entry whose full digest is `digest`.
    pub fn find<E: Entries + ?Sized>(&self, es: &E, digest: &[u8; 32]) -> Option<u32> {
        self.primary
            .find(tag_of(digest), |x| es.digest(x) == *digest)
    }

    /// The head (oldest entry) of a subject's or client's chain.
    pub fn head<E: Entries + ?Sized>(&self, es: &E, c: Chain, key: u64) -> Option<u32> {
        self.chains.head(es, c, key)
    }

    /// The chains, for walks and checks.
    pub fn chains(&self) -> &Chains<'a> {
        &self.chains
    }

    /// Whether an entry with `keys` (subject, client) fits without an eviction.
    pub fn has_room<E: Entries + ?Sized>(&self, es: &E, keys: [u64; 2]) -> bool {
        self.primary.len() < self.primary.capacity() && self.chains.room_for(es, keys)
    }

    /// Indexes entry `e` (its digest as `es` gives it) on the chains of `keys` (subject,
    /// client; [`NO_KEY`] for none), all or nothing. An entry held for the same digest must
    /// be removed first ([`Error::Present`]).
    pub fn insert<E: Entries + ?Sized>(
        &mut self,
        es: &mut E,
        e: u32,
        keys: [u64; 2],
    ) -> Result<(), Error> {
        let digest = es.digest(e);
        if self.find(es, &digest).is_some() {
            return Err(Error::Present);
        }
        es.set_links(e, Links::default());
        if !self.has_room(es, keys) {
            return Err(Error::Full);
        }
        self.primary
            .insert(tag_of(&digest), e, |x| es.digest(x) == digest)?;
        for (c, key) in Chain::ALL.into_iter().zip(keys) {
            // Room was checked for both groups: this cannot fail; undo all the same if it does.
            if let Err(err) = self.chains.link(es, e, c, key) {
                self.remove(es, e);
                return Err(err);
            }
        }
        Ok(())
    }

    /// Takes entry `e` out of the primary table and off its chains (eviction, expiry, or a
    /// replaced entry); `false` if the primary table did not hold it.
    pub fn remove<E: Entries + ?Sized>(&mut self, es: &mut E, e: u32) -> bool {
        let digest = es.digest(e);
        let held = self.primary.remove_entry(tag_of(&digest), e);
        for c in Chain::ALL {
            self.chains.unlink(es, e, c);
        }
        held
    }

    /// Takes the entry of `digest` out of the index (a purge by token), returning it.
    pub fn remove_key<E: Entries + ?Sized>(
        &mut self,
        es: &mut E,
        digest: &[u8; 32],
    ) -> Option<u32> {
        let e = self.find(es, digest)?;
        self.remove(es, e);
        Some(e)
    }

    /// One step of a purge of a subject's or client's chain: takes up to `budget` entries
    /// from its head out of the index, handing each to `free`. Returns how many went and
    /// whether the chain is empty. Entries stored between steps join the tail and go too.
    pub fn purge_step<E: Entries + ?Sized>(
        &mut self,
        es: &mut E,
        c: Chain,
        key: u64,
        budget: usize,
        mut free: impl FnMut(&mut E, u32),
    ) -> (u64, bool) {
        let mut removed = 0;
        if key == NO_KEY {
            return (0, true);
        }
        for _ in 0..budget {
            let Some(h) = self.chains.head(es, c, key) else {
                return (removed, true);
            };
            self.remove(es, h);
            free(es, h);
            removed += 1;
        }
        (removed, self.chains.head(es, c, key).is_none())
    }

    /// Whether both tables and the chains are consistent (`max`: the longest chain walked).
    pub fn check<E: Entries + ?Sized>(&self, es: &E, max: usize) -> bool {
        self.primary.check()
            && self.chains.check(es, max)
            && self
                .primary
                .iter()
                .all(|s| tag_of(&es.digest(s.entry)) == s.tag)
    }
}

#[cfg(test)]
#[path = "zone_index_tests.rs"]
mod tests;
