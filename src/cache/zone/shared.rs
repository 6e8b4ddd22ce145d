//! What the fleet tier keeps in the zone for all workers of an instance: the breaker, the
//! purge stream's cursor, the tombstones of recent purges, the instance's origin and a Redis
//! Cluster's slot map. The zone owns this layout (its magic covers it); the fleet tier reads
//! and writes it.

use core::sync::atomic::{AtomicI64, AtomicU32, AtomicU64};

use phantom_core::fleet::errors::ErrorClass;
use phantom_core::fleet::notice::Origin;
use phantom_core::fleet::tombstones::Tombstones;

/// The fleet state every worker of an instance shares, in the cache zone.
#[repr(C)]
pub(crate) struct FleetShared {
    /// 0: closed. Otherwise Redis is skipped until then; after it, one worker probes.
    pub(crate) open_until_ms: AtomicI64,
    /// Writes are skipped until then (Redis is full).
    pub(crate) full_until_ms: AtomicI64,
    pub(crate) failures: AtomicU32,
    /// When each class of error reply was last logged (by the fleet tier).
    pub(crate) logged_ms: [AtomicI64; ErrorClass::COUNT],
    /// The purge stream's last applied entry id (ASCII), under the zone lock.
    pub(crate) last_id: [u8; 48],
    /// Recent purges (under the zone lock).
    pub(crate) tombstones: Tombstones,
    /// This instance, in the purge notices it publishes: random, drawn when the zone is laid
    /// out (in the master, before the workers start), so shared by every worker and kept
    /// across reloads. Written only then; read under the zone lock.
    pub(crate) origin: Origin,
    /// The Redis Cluster slot map that a worker took, for the others (`cluster_map.rs`):
    /// its bytes in the slab and their length, when it was taken (under the zone lock), and
    /// its generation (0: none yet).
    pub(crate) map: *mut u8,
    pub(crate) map_len: u64,
    pub(crate) map_ms: i64,
    pub(crate) map_gen: AtomicU64,
    /// When a worker last set out to ask for the map: one at a time per instance.
    pub(crate) map_claim_ms: AtomicI64,
}
