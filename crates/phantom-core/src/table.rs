//! The zone's hash index: open addressing over a slice of fixed-size slots that the caller
//! provides (in the module, a slab allocation of the shared zone), so it holds no pointers,
//! only tags and entry references.
//!
//! A [`Slot`] is 8 bytes: a 32-bit tag and a 32-bit entry reference (0 = empty); eight slots
//! share a 64-byte cache line. A lookup reads the slots from the tag's home onward (linear
//! probing) and compares the full key of an entry (through the caller's `eq`) only where the
//! tag matches, so a miss touches the slot array alone and a hit one entry besides. The home
//! of a tag is `tag * len >> 32` (any table length, no power of two needed), computable
//! from the slot alone, which deletion needs.
//!
//! Deletion is by **backward shift** (Knuth's Algorithm R), not tombstones: the zone churns
//! (every store, eviction and expiry is an insert or a delete), and tombstones would pile up
//! until every miss probed the whole table or a rebuild ran under the zone lock. A backward
//! shift moves at most the rest of one cluster, which the load bound keeps short, and leaves
//! the table exactly as if the removed key had never been inserted.
//!
//! The load is bounded at 3/4 ([`Table::capacity`]): an insert beyond it fails with
//! [`Error::Full`] and the zone evicts (expected probes at 3/4: 2.5 slots for a hit, 8.5 for
//! a miss, one or two cache lines). Every loop is bounded by the slice's length, so a
//! damaged table gives wrong answers at worst, never a hang or a panic.

/// One slot: a tag from the key and the entry it indexes (0: empty).
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Slot {
    /// Bits of the key; the home of the slot is derived from it.
    pub tag: u32,
    /// The caller's reference to the entry (an offset or index), [`EMPTY`] when free.
    pub entry: u32,
}

/// The entry reference of a free slot (references are never 0).
pub const EMPTY: u32 = 0;

/// Why an insert failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Error {
    /// The table holds [`Table::capacity`] entries: evict one first.
    Full,
    /// Entry references are never [`EMPTY`].
    ZeroEntry,
    /// The key is held already (the zone index takes an entry's old copy out first).
    Present,
}

/// The tag of a 32-byte digest: its first 4 bytes (little-endian).
pub fn tag_of(digest: &[u8; 32]) -> u32 {
    u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Slots for a table that indexes up to `entries` entries at the load bound.
pub fn slots_for(entries: usize) -> usize {
    entries.saturating_mul(4).div_ceil(3).max(1)
}

/// An open-addressing table over `slots`, with its count kept in `len` (both in shared
/// memory in the module).
pub struct Table<'a> {
    slots: &'a mut [Slot],
    len: &'a mut u32,
}

impl<'a> Table<'a> {
    /// The table over `slots` (all [`Slot::default`] when new) holding `*len` entries.
    pub fn new(slots: &'a mut [Slot], len: &'a mut u32) -> Self {
        Table { slots, len }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        *self.len as usize
    }

    /// Whether the table holds no entry.
    pub fn is_empty(&self) -> bool {
        *self.len == 0
    }

    /// The most entries the table takes (3/4 of its slots, and always one slot free).
    pub fn capacity(&self) -> usize {
        let n = self.slots.len();
        (n * 3 / 4).min(n.saturating_sub(1))
    }

    /// The slot where probing for `tag` starts.
    pub fn home(&self, tag: u32) -> usize {
        ((u64::from(tag) * self.slots.len() as u64) >> 32) as usize
    }

    fn next(&self, i: usize) -> usize {
        if i + 1 == self.slots.len() {
            0
        } else {
            i + 1
        }
    }

    /// The slot holding the entry whose key is `tag`'s and for which `eq` holds.
    fn position(&self, tag: u32, mut eq: impl FnMut(u32) -> bool) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mut i = self.home(tag);
        for _ in 0..self.slots.len() {
            let s = self.slots[i];
            if s.entry == EMPTY {
                return None;
            }
            if s.tag == tag && eq(s.entry) {
                return Some(i);
            }
            i = self.next(i);
        }
        None
    }

    /// The entry with `tag` whose full key `eq` confirms (`eq` gets the entry reference).
    pub fn find(&self, tag: u32, eq: impl FnMut(u32) -> bool) -> Option<u32> {
        self.position(tag, eq).map(|i| self.slots[i].entry)
    }

    /// Indexes `entry` under `tag`; an entry `eq` confirms as the same key is replaced and
    /// returned.
    pub fn insert(
        &mut self,
        tag: u32,
        entry: u32,
        eq: impl FnMut(u32) -> bool,
    ) -> Result<Option<u32>, Error> {
        if entry == EMPTY {
            return Err(Error::ZeroEntry);
        }
        if let Some(i) = self.position(tag, eq) {
            let old = self.slots[i].entry;
            self.slots[i].entry = entry;
            return Ok(Some(old));
        }
        if self.len() >= self.capacity() {
            return Err(Error::Full);
        }
        let mut i = self.home(tag);
        for _ in 0..self.slots.len() {
            if self.slots[i].entry == EMPTY {
                self.slots[i] = Slot { tag, entry };
                *self.len += 1;
                return Ok(None);
            }
            i = self.next(i);
        }
        Err(Error::Full)
    }

    /// Removes the entry with `tag` that `eq` confirms, returning it.
    pub fn remove(&mut self, tag: u32, eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let i = self.position(tag, eq)?;
        let entry = self.slots[i].entry;
        self.vacate(i);
        Some(entry)
    }

    /// Removes the slot of `entry` itself (filed under `tag`): eviction and expiry, which
    /// hold the entry already, need no key comparison.
    pub fn remove_entry(&mut self, tag: u32, entry: u32) -> bool {
        self.remove(tag, |e| e == entry).is_some()
    }

    /// Points the slot of the key `eq` confirms at `entry` instead; `false` if absent.
    pub fn replace(&mut self, tag: u32, eq: impl FnMut(u32) -> bool, entry: u32) -> bool {
        match self.position(tag, eq) {
            Some(i) if entry != EMPTY => {
                self.slots[i].entry = entry;
                true
            }
            _ => false,
        }
    }

    /// Empties slot `i`, then shifts back the rest of its cluster: each later slot whose home
    /// is not cyclically within `(i, j]` moves into the hole, which moves on to `j`.
    fn vacate(&mut self, mut i: usize) {
        self.slots[i] = Slot::default();
        *self.len = self.len.saturating_sub(1);
        let mut j = i;
        for _ in 0..self.slots.len() {
            j = self.next(j);
            let s = self.slots[j];
            if s.entry == EMPTY {
                return;
            }
            let k = self.home(s.tag);
            let stays = if i <= j {
                i < k && k <= j
            } else {
                i < k || k <= j
            };
            if !stays {
                self.slots[i] = s;
                self.slots[j] = Slot::default();
                i = j;
            }
        }
    }

    /// The occupied slots in slot order (tests, and a walk over a table not changed meanwhile).
    pub fn iter(&self) -> impl Iterator<Item = Slot> + '_ {
        self.slots.iter().copied().filter(|s| s.entry != EMPTY)
    }

    /// Whether the table is consistent: its count matches, one slot at least is free, and
    /// every entry is reachable from its home without crossing a free slot.
    pub fn check(&self) -> bool {
        let n = self.slots.len();
        let used = self.iter().count();
        if used != self.len() || (n > 0 && used >= n) {
            return false;
        }
        (0..n).all(|j| {
            let s = self.slots[j];
            if s.entry == EMPTY {
                return true;
            }
            let mut i = self.home(s.tag);
            while i != j {
                if self.slots[i].entry == EMPTY {
                    return false;
                }
                i = self.next(i);
            }
            true
        })
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
