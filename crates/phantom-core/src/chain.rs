//! The zone's secondary index: every entry of one subject (or of one client) on a chain, so
//! a purge by `sub` or `client_id` costs in proportion to that subject's entries instead of
//! a walk over the whole zone.
//!
//! A chain is a circular doubly linked list threaded through the entries themselves (a
//! [`Link`] of 16 bytes per chain in each entry: the group key and two entry references),
//! and a group table (a [`Table`] of the same 8-byte slots as the primary index) maps a
//! group key to the chain's head. The head's `prev` is the tail, so an entry is appended at
//! the tail in O(1) with one reference per group; a purge takes entries from the head, oldest
//! first. Entries of a subject and of a client share one group table: the kind is the low bit
//! of the key (and so of its tag), so a subject's slot never answers for a client.
//!
//! The group key is the first 8 bytes of SHA-256 over the claim's name and value: a chain
//! is exact up to a 64-bit collision, and a collision only purges more than asked (the other
//! subject's tokens are introspected again), never less.

use sha2::{Digest, Sha256};

use crate::table::{Error, Table};

/// Which chain.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Chain {
    /// The entries of one subject (`sub`).
    Sub,
    /// The entries of one client (`client_id`).
    Client,
}

impl Chain {
    /// Both chains, in the order of [`Links`].
    pub const ALL: [Chain; 2] = [Chain::Sub, Chain::Client];

    /// The claim whose value keys the chain.
    pub fn claim(self) -> &'static str {
        match self {
            Chain::Sub => "sub",
            Chain::Client => "client_id",
        }
    }
}

/// The key of an entry that is on no chain of a kind (its JWT lacks the claim).
pub const NO_KEY: u64 = 0;

/// The group key of the chain of `value` (a subject or a client id): never [`NO_KEY`], its
/// low bit the kind.
pub fn group_key(chain: Chain, value: &[u8]) -> u64 {
    let mut h = Sha256::new();
    h.update(chain.claim().as_bytes());
    h.update([0]);
    h.update(value);
    let d: [u8; 32] = h.finalize().into();
    let mut k = [0u8; 8];
    k.copy_from_slice(&d[..8]);
    let k = u64::from_le_bytes(k) & !1 | (chain == Chain::Client) as u64;
    if k >> 1 == 0 {
        k | 2
    } else {
        k
    }
}

/// The subject and client keys of a JWT (`sub` and `client_id`, strings, inside
/// `token_introspection` for RFC 9701 answers): [`NO_KEY`] where the claim is missing.
pub fn jwt_keys(jwt: &[u8]) -> [u64; 2] {
    if jwt.is_empty() {
        return [NO_KEY, NO_KEY];
    }
    let claims = crate::jwt::claims_of(jwt);
    Chain::ALL.map(|c| {
        claims
            .get(c.claim())
            .and_then(|v| v.as_str())
            .map_or(NO_KEY, |v| group_key(c, v.as_bytes()))
    })
}

/// The tag of a group key in the group table (its low 32 bits, the kind bit among them).
pub fn group_tag(key: u64) -> u32 {
    key as u32
}

/// An entry's place on one chain.
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Link {
    /// The group key ([`NO_KEY`]: on no chain of this kind).
    pub key: u64,
    /// The entry before (the tail, for the head).
    pub prev: u32,
    /// The entry after (the head, for the tail).
    pub next: u32,
}

/// An entry's places on both chains, kept in the entry (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Links {
    /// Its subject's chain.
    pub sub: Link,
    /// Its client's chain.
    pub client: Link,
}

impl Links {
    /// The link of `chain`.
    pub fn get(&self, chain: Chain) -> Link {
        match chain {
            Chain::Sub => self.sub,
            Chain::Client => self.client,
        }
    }

    /// Sets the link of `chain`.
    pub fn set(&mut self, chain: Chain, l: Link) {
        match chain {
            Chain::Sub => self.sub = l,
            Chain::Client => self.client = l,
        }
    }
}

/// The entries as the index sees them, by reference (never 0): the module reads and writes
/// them in the zone, the tests in an array.
pub trait Entries {
    /// The full 32-byte digest (primary key) of entry `e`.
    fn digest(&self, e: u32) -> [u8; 32];
    /// The chain links of entry `e`.
    fn links(&self, e: u32) -> Links;
    /// Sets the chain links of entry `e`.
    fn set_links(&mut self, e: u32, l: Links);
}

fn link_of<E: Entries + ?Sized>(es: &E, e: u32, c: Chain) -> Link {
    es.links(e).get(c)
}

fn set_link<E: Entries + ?Sized>(es: &mut E, e: u32, c: Chain, l: Link) {
    let mut all = es.links(e);
    all.set(c, l);
    es.set_links(e, all);
}

/// The chains over their group table.
pub struct Chains<'a> {
    groups: Table<'a>,
}

impl<'a> Chains<'a> {
    /// The chains whose heads `groups` holds.
    pub fn new(groups: Table<'a>) -> Self {
        Chains { groups }
    }

    /// Groups (distinct subjects and clients) held.
    pub fn groups(&self) -> usize {
        self.groups.len()
    }

    /// The head (oldest entry) of the chain of `key`.
    pub fn head<E: Entries + ?Sized>(&self, es: &E, c: Chain, key: u64) -> Option<u32> {
        if key == NO_KEY {
            return None;
        }
        self.groups
            .find(group_tag(key), |h| link_of(es, h, c).key == key)
    }

    /// Whether linking `keys` would need new groups beyond the table's room.
    pub fn room_for<E: Entries + ?Sized>(&self, es: &E, keys: [u64; 2]) -> bool {
        let new = Chain::ALL
            .iter()
            .zip(keys)
            .filter(|(c, k)| *k != NO_KEY && self.head(es, **c, *k).is_none())
            .count();
        self.groups.len() + new <= self.groups.capacity()
    }

    /// Appends entry `e` (on no chain of kind `c`) to the tail of the chain of `key`.
    pub fn link<E: Entries + ?Sized>(
        &mut self,
        es: &mut E,
        e: u32,
        c: Chain,
        key: u64,
    ) -> Result<(), Error> {
        if key == NO_KEY {
            set_link(es, e, c, Link::default());
            return Ok(());
        }
        let Some(h) = self.head(es, c, key) else {
            self.groups.insert(group_tag(key), e, |_| false)?;
            set_link(
                es,
                e,
                c,
                Link {
                    key,
                    prev: e,
                    next: e,
                },
            );
            return Ok(());
        };
        let t = link_of(es, h, c).prev;
        set_link(
            es,
            e,
            c,
            Link {
                key,
                prev: t,
                next: h,
            },
        );
        let mut tl = link_of(es, t, c);
        tl.next = e;
        set_link(es, t, c, tl);
        let mut hl = link_of(es, h, c);
        hl.prev = e;
        set_link(es, h, c, hl);
        Ok(())
    }

    /// Takes entry `e` off its chain of kind `c` (nothing if it is on none).
    pub fn unlink<E: Entries + ?Sized>(&mut self, es: &mut E, e: u32, c: Chain) {
        let l = link_of(es, e, c);
        if l.key == NO_KEY {
            return;
        }
        set_link(es, e, c, Link::default());
        if l.next == e {
            self.groups.remove_entry(group_tag(l.key), e);
            return;
        }
        let mut p = link_of(es, l.prev, c);
        p.next = l.next;
        set_link(es, l.prev, c, p);
        let mut n = link_of(es, l.next, c);
        n.prev = l.prev;
        set_link(es, l.next, c, n);
        // Was it the head? Then the next one is (no change otherwise).
        self.groups.replace(group_tag(l.key), |h| h == e, l.next);
    }

    /// The entries of the chain of `key`, head first, at most `max` (tests and the status).
    pub fn members<E: Entries + ?Sized>(&self, es: &E, c: Chain, key: u64, max: usize) -> Vec<u32> {
        let mut out = Vec::new();
        let Some(h) = self.head(es, c, key) else {
            return out;
        };
        let mut e = h;
        while out.len() < max {
            out.push(e);
            e = link_of(es, e, c).next;
            if e == h {
                break;
            }
        }
        out
    }

    /// Whether the chains are consistent with the group table: each group's ring closes
    /// within `max` entries, every member carries the group's key, and prev mirrors next.
    pub fn check<E: Entries + ?Sized>(&self, es: &E, max: usize) -> bool {
        self.groups.iter().all(|s| {
            let h = s.entry;
            let c = if s.tag & 1 == 0 {
                Chain::Sub
            } else {
                Chain::Client
            };
            let key = link_of(es, h, c).key;
            if key == NO_KEY || group_tag(key) != s.tag {
                return false;
            }
            let mut e = h;
            for _ in 0..max {
                let l = link_of(es, e, c);
                if l.key != key || link_of(es, l.next, c).prev != e {
                    return false;
                }
                e = l.next;
                if e == h {
                    return true;
                }
            }
            false
        })
    }
}

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;
