//! A Redis Cluster's slot map, taken by one worker for every worker of the instance: its
//! bytes (`SlotMap::to_bytes`) live in the zone with a generation, so a refresh asks the
//! cluster once per instance, and at most one worker is asking at any time.

use core::ffi::c_void;
use core::sync::atomic::Ordering;

use nginx_sys::ngx_slab_free_locked;

use super::Zone;

/// A map published in the zone.
pub(crate) struct Published {
    pub(crate) generation: u64,
    /// When the worker that took it received it.
    pub(crate) taken_ms: i64,
    pub(crate) bytes: Vec<u8>,
}

impl Zone {
    /// Claims the next refresh of the map for the caller: `true` for one worker of the
    /// instance at most once per `every_ms` (no lock: one compare-and-swap).
    pub(crate) fn claim_map_refresh(&self, now_ms: i64, every_ms: i64) -> bool {
        let Some(f) = self.fleet() else { return true };
        let last = f.map_claim_ms.load(Ordering::Acquire);
        now_ms - last >= every_ms
            && f.map_claim_ms
                .compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// The published map's generation (0: none); no lock, one atomic load.
    fn map_generation(&self) -> u64 {
        self.fleet()
            .map_or(0, |f| f.map_gen.load(Ordering::Acquire))
    }

    /// Publishes a map taken at `taken_ms` for the other workers (evicting cache entries if
    /// the zone is full); returns its generation.
    pub(crate) fn publish_map(&self, bytes: &[u8], taken_ms: i64) -> Option<u64> {
        let l = self.lock()?;
        let p = l.alloc_bytes(bytes.len().max(1), taken_ms)?;
        // SAFETY: p is a fresh allocation of at least bytes.len() bytes; sh is our locked
        // header, and the old map's bytes are ours to free under the lock.
        unsafe {
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len());
            let f = &mut (*l.sh).fleet;
            if !f.map.is_null() {
                ngx_slab_free_locked(l.pool, f.map as *mut c_void);
            }
            f.map = p;
            f.map_len = bytes.len() as u64;
            f.map_ms = taken_ms;
            Some(f.map_gen.fetch_add(1, Ordering::AcqRel) + 1)
        }
    }

    /// The published map, if its generation is not `have`.
    pub(crate) fn map_since(&self, have: u64) -> Option<Published> {
        if self.map_generation() == have {
            return None;
        }
        let l = self.lock()?;
        // SAFETY: sh is our locked header; map points at map_len bytes while it is locked.
        unsafe {
            let f = &(*l.sh).fleet;
            if f.map.is_null() {
                return None;
            }
            Some(Published {
                generation: f.map_gen.load(Ordering::Acquire),
                taken_ms: f.map_ms,
                bytes: core::slice::from_raw_parts(f.map, f.map_len as usize).to_vec(),
            })
        }
    }
}
