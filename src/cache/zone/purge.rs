//! Purges and the fleet state: what removes cached decisions before their time, and what
//! every worker must notice (the epoch its L1 checks).

use core::sync::atomic::Ordering;

use nginx_sys::ngx_slab_pool_t;
use phantom_core::fleet::notice::Origin;

use phantom_core::chain::{group_key, Chain};

use super::FleetShared;
use super::{Shared, Zone, ACTIVE, INACTIVE};

/// Purges: removal of cached decisions before their time, and what every worker must notice.
impl Zone {
    /// This zone's purge generation; L1s older than it are dropped. No lock: one atomic load.
    pub(crate) fn epoch(&self) -> u64 {
        self.shared()
            .map_or(0, |sh| sh.epoch.load(Ordering::Acquire))
    }

    /// Tells every worker's L1 to drop what it holds.
    pub(crate) fn bump_epoch(&self) {
        if let Some(sh) = self.shared() {
            sh.epoch.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The fleet state in this zone (atomics; the tombstones are behind [`Zone::tombstones`]).
    pub(crate) fn fleet(&self) -> Option<&FleetShared> {
        self.shared().map(|sh| &sh.fleet)
    }

    /// Runs `f` on the fleet state with the zone locked (tombstones, stream cursor).
    pub(crate) fn fleet_locked<R>(&self, f: impl FnOnce(&mut FleetShared) -> R) -> Option<R> {
        let l = self.lock()?;
        // SAFETY: sh is our locked header.
        Some(f(unsafe { &mut (*l.sh).fleet }))
    }

    /// This instance's origin in purge notices (see [`FleetShared::origin`]).
    pub(crate) fn origin(&self) -> Option<Origin> {
        self.fleet_locked(|f| f.origin)
    }

    /// How many purges the tombstone ring remembers (for the status page).
    pub(crate) fn tombstones(&self) -> usize {
        self.fleet_locked(|f| f.tombstones.len()).unwrap_or(0)
    }

    /// Removes the decision cached for `digest` (markers stay); `true` if there was one.
    pub(crate) fn purge(&self, digest: &[u8; 32]) -> bool {
        let Some(l) = self.lock() else { return false };
        match l.find(digest) {
            // SAFETY: node is a live entry of the locked tree.
            Some(node) if matches!(unsafe { (*node).kind }, ACTIVE | INACTIVE) => {
                // SAFETY: as above; removing it is the last use of the node.
                unsafe { l.remove(node) };
                true
            }
            _ => false,
        }
    }

    /// One step of a purge by subject or client: removes up to `budget` entries of the
    /// chain of `value` (oldest first). Returns how many went and whether the chain is empty.
    /// The lock is held for one step only, so other workers go on between steps.
    pub(crate) fn purge_chain_step(
        &self,
        chain: Chain,
        value: &[u8],
        budget: usize,
    ) -> (u64, bool) {
        let Some(l) = self.lock() else {
            return (0, true);
        };
        l.purge_chain(chain, group_key(chain, value), budget)
    }

    fn shared(&self) -> Option<&Shared> {
        // SAFETY: shm was set at configuration; data is our Shared once init ran, and it
        // stays mapped for the cycle. Only atomics are read without the lock.
        unsafe {
            let pool = self.shm.as_ref()?.shm.addr as *mut ngx_slab_pool_t;
            ((*pool).data as *const Shared).as_ref()
        }
    }
}
