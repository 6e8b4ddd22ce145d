//! The per-worker first-level cache: a bounded LRU that never serves an expired entry, and
//! that empties itself when a purge bumps the zone's epoch.

use std::num::NonZeroUsize;

use lru::LruCache;

use super::entry::Entry;

/// An entry with its expiry and creation times (ms).
type Slot = (Entry, i64, i64);

pub(crate) struct L1 {
    cache: Option<LruCache<[u8; 32], Slot>>,
    /// The zone epoch the contents belong to.
    epoch: u64,
}

impl L1 {
    /// `capacity == 0` turns the L1 off.
    pub(crate) fn new(capacity: usize) -> Self {
        L1 {
            cache: NonZeroUsize::new(capacity).map(LruCache::new),
            epoch: 0,
        }
    }

    /// A fresh entry and its creation time; everything is dropped first if the zone was
    /// purged since the last look.
    pub(crate) fn get(
        &mut self,
        digest: &[u8; 32],
        now_ms: i64,
        epoch: u64,
    ) -> Option<(Entry, i64)> {
        let cache = self.cache.as_mut()?;
        if self.epoch != epoch {
            cache.clear();
            self.epoch = epoch;
            return None;
        }
        let (entry, expires, created) = cache.get(digest)?;
        if *expires > now_ms {
            return Some((entry.clone(), *created));
        }
        cache.pop(digest);
        None
    }

    pub(crate) fn put(&mut self, digest: [u8; 32], slot: Slot, epoch: u64) {
        if let Some(cache) = self.cache.as_mut() {
            if self.epoch != epoch {
                cache.clear();
                self.epoch = epoch;
            }
            cache.put(digest, slot);
        }
    }
}
