//! What the fleet tier keeps in the zone for all workers of an instance: the breaker, the
//! purge stream's cursor, the tombstones of recent purges and the instance's origin. The
//! zone owns this layout (its magic covers it); the fleet tier reads and writes it.

use core::sync::atomic::{AtomicI64, AtomicU32};

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
}
