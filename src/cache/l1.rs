//! The per-worker first-level cache: a bounded LRU that never serves an expired entry.

use std::num::NonZeroUsize;

use lru::LruCache;

use super::Entry;

pub struct L1(Option<LruCache<[u8; 32], (Entry, i64)>>);

impl L1 {
    /// `capacity == 0` turns the L1 off.
    pub fn new(capacity: usize) -> Self {
        L1(NonZeroUsize::new(capacity).map(LruCache::new))
    }

    pub fn get(&mut self, digest: &[u8; 32], now_ms: i64) -> Option<Entry> {
        let cache = self.0.as_mut()?;
        let (entry, expires) = cache.get(digest)?;
        if *expires > now_ms {
            return Some(entry.clone());
        }
        cache.pop(digest);
        None
    }

    pub fn put(&mut self, digest: [u8; 32], entry: Entry, expires_ms: i64) {
        if let Some(cache) = self.0.as_mut() {
            cache.put(digest, (entry, expires_ms));
        }
    }
}
