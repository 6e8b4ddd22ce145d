//! The shared-memory level: a hash index by digest with subject and client chains
//! (`phantom_core::zone_index`, glue in `index.rs`) and LRU lists in an nginx slab zone.
//!
//! Every operation holds the slab pool's own mutex, which the master process releases if a
//! worker dies holding it, and only for index work and copies, never across I/O. An entry is
//! a [`Node`] header followed by the tail of its data (JWT then scope), plus, when that
//! wastes less of the slab's power-of-two size classes, a separate body with the head of the
//! data: a 1 KiB JWT takes 128 + 1024 bytes instead of 2048.

mod cluster_map;
mod index;
mod locked;
mod purge;
mod shared;

use core::ffi::c_void;
use core::mem::size_of;
use core::ptr;

use nginx_sys::{
    ngx_conf_t, ngx_int_t, ngx_queue_t, ngx_shared_memory_add, ngx_shm_zone_t, ngx_shmtx_lock,
    ngx_shmtx_unlock, ngx_slab_alloc_locked, ngx_slab_pool_t, ngx_str_t, NGX_ERROR, NGX_OK,
};
use ngx::http::HttpModule;
use phantom_core::chain::{Links, NO_KEY};

use core::sync::atomic::AtomicU64;

use crate::cache::entry::Entry;
use crate::Module;
use index::IndexShared;
use locked::{read_entry, Locked};
pub(crate) use shared::FleetShared;

/// Marks a zone laid out by this version of the module (checked when a reload reuses it).
const MAGIC: u64 = 0x5054_4b43_4143_4837; // "PTKCACH7": the shared cluster map

/// Entries bigger than this share of the zone are not cached at all.
const MAX_SHARE: usize = 4;

#[repr(C)]
struct Shared {
    magic: u64,
    /// The hash index and the subject and client chains (slot arrays elsewhere in the pool).
    index: IndexShared,
    /// Active entries and markers: most recently used at the head.
    lru: ngx_queue_t,
    /// Inactive (negative) entries, with a budget of their own.
    neg_lru: ngx_queue_t,
    /// Entries (markers excluded), for the status page.
    entries: u64,
    /// Slab bytes taken by inactive entries.
    neg_bytes: u64,
    /// DPoP proofs seen (`jti` replay cache), oldest at the tail, and how many.
    jti_lru: ngx_queue_t,
    jti_count: u64,
    /// Key of the stateless DPoP nonces, random per zone (all workers, kept across reload).
    nonce_key: [u8; 32],
    /// Bumped by every purge: each worker drops its L1 when it sees a new value.
    epoch: AtomicU64,
    /// The fleet tier's shared state (breaker, stream cursor, tombstones).
    fleet: FleetShared,
}

#[repr(C)]
struct Node {
    lru: ngx_queue_t,
    /// Its places on its subject's and its client's chains.
    links: Links,
    digest: [u8; 32],
    /// Served fresh until then.
    expires_ms: i64,
    /// Kept until then, in whole seconds rounded down, and never before `expires_ms` (later
    /// only for `stale_if_error`, whose window is whole seconds, as is `exp`).
    keep_s: u32,
    /// When the introspection that produced the entry started, in whole seconds (rounded
    /// down, so entries look older): `phantom_token_cache_max_age` and purge tombstones.
    created_s: u32,
    /// The first `locked::body_len(data length)` bytes of the data, in an allocation of
    /// their own (or NULL). Kept within 120 bytes so a 128-byte slot leaves room for a short tail.
    body: *mut u8,
    jwt_len: u32,
    scope_len: u16,
    kind: u8,
}

const _: () = assert!(size_of::<Node>() == 112);
// Every layout the zone holds is covered by `MAGIC`: a change of any size here must come
// with a new magic (a reload keeps the old zone, read with the new layout otherwise).
const _: () = assert!(size_of::<FleetShared>() == 2232);
const _: () = assert!(size_of::<Shared>() == 2384);

impl Node {
    fn keep_ms(&self) -> i64 {
        self.expires_ms.max(i64::from(self.keep_s) * 1000)
    }

    fn created_ms(&self) -> i64 {
        i64::from(self.created_s) * 1000
    }
}

/// An entry's times: fresh until `expires_ms`, kept until `keep_ms`, made at `created_ms`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Life {
    pub(crate) expires_ms: i64,
    pub(crate) keep_ms: i64,
    pub(crate) created_ms: i64,
}

impl Life {
    /// A marker or remembered proof: kept exactly as long as it is live.
    fn until(ms: i64, now_ms: i64) -> Life {
        Life {
            expires_ms: ms,
            keep_ms: ms,
            created_ms: now_ms,
        }
    }
}

/// `Node::kind`: what an entry holds.
const INACTIVE: u8 = 0;
const ACTIVE: u8 = 1;
/// A worker is introspecting this token; others wait for its result (no data follows).
const PENDING: u8 = 2;
/// A DPoP proof already used (`jti` replay cache; no data follows).
const JTI: u8 = 3;

/// Share of the zone the replay cache may take, as a divisor (10%).
const JTI_SHARE: usize = 10;

/// The shared zone of one `phantom_token_cache_zone`.
pub(crate) struct Zone {
    shm: *mut ngx_shm_zone_t,
    /// Bytes inactive entries may take (`negative_share` of the zone).
    neg_budget: u64,
}

impl Default for Zone {
    fn default() -> Self {
        Zone {
            shm: ptr::null_mut(),
            neg_budget: 0,
        }
    }
}

/// What a store did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Stored {
    Yes,
    /// Larger than a quarter of the zone.
    TooBig,
    /// No room even after evicting what may be evicted (or the zone is not usable).
    NoRoom,
}

/// The zone's fill, for the status page.
pub(crate) struct Usage {
    pub(crate) size: u64,
    pub(crate) used: u64,
    pub(crate) entries: u64,
}

/// An expired active entry still kept for `stale_if_error`.
#[derive(Clone, Debug)]
pub(crate) struct Stale {
    pub(crate) entry: Entry,
    pub(crate) expires_ms: i64,
    pub(crate) keep_ms: i64,
    pub(crate) created_ms: i64,
    /// The zone's count of purges when the copy was taken: a purge learnt of since then
    /// keeps the copy from being served or put back (see `purge::local::buried`).
    pub(crate) purges: u64,
}

/// Result of a shared-zone lookup.
pub(crate) enum Found {
    Fresh(Entry, Life),
    Pending,
    Expired(Option<Stale>),
    Missing,
}

/// Declares the shared memory zone; nginx maps it before the workers start.
///
/// # Safety
/// `cf` must be valid.
pub(crate) unsafe fn declare(
    cf: *mut ngx_conf_t,
    zone: &mut Zone,
    name: &str,
    size: usize,
    negative_share: u64,
) -> Result<(), ()> {
    // SAFETY: cf is valid; the name is copied by nginx into the zone list.
    let mut name = unsafe { ngx_str_t::from_bytes((*cf).pool, name.as_bytes()) }.ok_or(())?;
    let tag = Module::module() as *const _ as *mut c_void;
    // SAFETY: all pointers valid; nginx reports conflicts itself.
    let shm = unsafe { ngx_shared_memory_add(cf, &mut name, size, tag) };
    if shm.is_null() {
        return Err(());
    }
    // SAFETY: shm is the zone just added; names are unique (checked by the caller).
    unsafe { (*shm).init = Some(init_zone) };
    zone.shm = shm;
    zone.neg_budget = size as u64 * negative_share / 100;
    Ok(())
}

/// Zone init: reuse a zone kept across reload, or lay out a fresh one.
unsafe extern "C" fn init_zone(shm: *mut ngx_shm_zone_t, _old: *mut c_void) -> ngx_int_t {
    // SAFETY: nginx calls init with the mapped zone; its start is the slab pool.
    let pool = unsafe { (*shm).shm.addr } as *mut ngx_slab_pool_t;
    // SAFETY: pool is the zone's initialised slab pool.
    unsafe {
        let existing = (*pool).data as *mut Shared;
        if !existing.is_null() && (*existing).magic == MAGIC {
            // Reused on reload: nothing in it points into this module's code.
            return NGX_OK as ngx_int_t;
        }
        ngx_shmtx_lock(&mut (*pool).mutex);
        let sh = ngx_slab_alloc_locked(pool, size_of::<Shared>()) as *mut Shared;
        if sh.is_null() {
            ngx_shmtx_unlock(&mut (*pool).mutex);
            return NGX_ERROR as ngx_int_t;
        }
        ptr::write_bytes(sh, 0, 1);
        (*sh).magic = MAGIC;
        if !index::init(pool, &mut (*sh).index, (*shm).shm.size) {
            ngx_shmtx_unlock(&mut (*pool).mutex);
            return NGX_ERROR as ngx_int_t;
        }
        nginx_sys::ngx_queue_init(&mut (*sh).lru);
        nginx_sys::ngx_queue_init(&mut (*sh).neg_lru);
        nginx_sys::ngx_queue_init(&mut (*sh).jti_lru);
        if random_fill(&mut (*sh).nonce_key).is_err()
            || random_fill(&mut (*sh).fleet.origin).is_err()
        {
            ngx_shmtx_unlock(&mut (*pool).mutex);
            return NGX_ERROR as ngx_int_t;
        }
        (*pool).data = sh as *mut c_void;
        // Allocation failures are handled by eviction, so don't log them as critical.
        (*pool).set_log_nomem(0);
        ngx_shmtx_unlock(&mut (*pool).mutex);
    }
    NGX_OK as ngx_int_t
}

/// Random bytes from the kernel (the nonce key and the fleet origin, read once per zone, in
/// the master).
fn random_fill(out: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(out)
}

/// Why a proof could not be remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplayError {
    /// Seen before, within its window.
    Replayed,
    /// The replay cache holds only live proofs and has no room: fail closed.
    Full,
}

impl Zone {
    /// Remembers a DPoP proof (`key` = its digest) until `expires_ms`, in one critical
    /// section: of two workers presenting the same proof, exactly one succeeds.
    pub(crate) fn remember_proof(
        &self,
        key: &[u8; 32],
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<(), ReplayError> {
        let Some(l) = self.lock() else {
            return Err(ReplayError::Full);
        };
        if let Some(node) = l.find(key) {
            // SAFETY: node is a live entry of the locked tree.
            if unsafe { (*node).keep_ms() } > now_ms {
                return Err(ReplayError::Replayed);
            }
            // SAFETY: as above.
            unsafe { l.remove(node) };
        }
        l.expire_proofs(now_ms, 4);
        let budget = (self.size() / JTI_SHARE / 128) as u64;
        // SAFETY: sh is our locked header.
        if unsafe { (*l.sh).jti_count } >= budget {
            return Err(ReplayError::Full);
        }
        if l.insert(
            key,
            Life::until(expires_ms, now_ms),
            JTI,
            (&[], &[]),
            [NO_KEY; 2],
            0,
            now_ms,
        ) {
            Ok(())
        } else {
            Err(ReplayError::Full)
        }
    }

    /// The zone's DPoP nonce key (fixed once the zone is laid out).
    pub(crate) fn nonce_key(&self) -> Option<[u8; 32]> {
        let l = self.lock()?;
        // SAFETY: sh is our locked header.
        Some(unsafe { (*l.sh).nonce_key })
    }

    fn lock(&self) -> Option<Locked> {
        // SAFETY: shm was set at configuration; addr is mapped in every worker.
        let pool = unsafe { self.shm.as_ref()?.shm.addr } as *mut ngx_slab_pool_t;
        // SAFETY: pool is the zone's slab pool; data is our Shared once init ran.
        unsafe {
            let sh = (*pool).data as *mut Shared;
            if sh.is_null() {
                return None;
            }
            ngx_shmtx_lock(&mut (*pool).mutex);
            Some(Locked { pool, sh })
        }
    }

    pub(crate) fn size(&self) -> usize {
        // SAFETY: shm was set at configuration.
        unsafe { self.shm.as_ref() }.map_or(0, |z| z.shm.size)
    }

    pub(crate) fn lookup(&self, digest: &[u8; 32], now_ms: i64) -> Found {
        let Some(l) = self.lock() else {
            return Found::Missing;
        };
        let Some(node) = l.find(digest) else {
            return Found::Missing;
        };
        // SAFETY: node is a live entry of the locked tree.
        unsafe {
            let n = &*node;
            if n.expires_ms > now_ms {
                if n.kind == PENDING {
                    return Found::Pending;
                }
                l.touch(node);
                let life = Life {
                    expires_ms: n.expires_ms,
                    keep_ms: n.keep_ms(),
                    created_ms: n.created_ms(),
                };
                return Found::Fresh(read_entry(node), life);
            }
            if n.kind == ACTIVE && n.keep_ms() > now_ms {
                let stale = Stale {
                    entry: read_entry(node),
                    expires_ms: n.expires_ms,
                    keep_ms: n.keep_ms(),
                    created_ms: n.created_ms(),
                    purges: (*l.sh).fleet.tombstones.count(),
                };
                return Found::Expired(Some(stale));
            }
            let pending = n.kind == PENDING;
            l.remove(node);
            if pending {
                Found::Missing
            } else {
                Found::Expired(None)
            }
        }
    }

    /// Stores `entry` in place of whatever the zone holds for `digest` (this worker's
    /// marker, usually); an entry too large to cache only withdraws the marker.
    pub(crate) fn store(
        &self,
        digest: &[u8; 32],
        entry: &Entry,
        life: Life,
        now_ms: i64,
    ) -> Stored {
        let (jwt, scope): (&[u8], &[u8]) = match entry {
            Entry::Active { jwt, scope, .. } => (jwt, scope.as_bytes()),
            Entry::Inactive => (&[], &[]),
        };
        let need = size_of::<Node>() + jwt.len() + scope.len();
        if need > self.size() / MAX_SHARE || scope.len() > u16::MAX as usize {
            self.release(digest);
            return Stored::TooBig;
        }
        let keys = phantom_core::chain::jwt_keys(jwt);
        let Some(l) = self.lock() else {
            return Stored::NoRoom;
        };
        if let Some(old) = l.find(digest) {
            // SAFETY: old is a live entry of the locked tree.
            unsafe { l.remove(old) };
        }
        l.expire(now_ms, 2);
        let kind = match entry {
            Entry::Active { .. } => ACTIVE,
            Entry::Inactive => INACTIVE,
        };
        let data = (jwt, scope);
        if l.insert(digest, life, kind, data, keys, self.neg_budget, now_ms) {
            Stored::Yes
        } else {
            Stored::NoRoom
        }
    }

    /// Size, bytes in use (whole pages) and entries.
    pub(crate) fn usage(&self) -> Usage {
        let size = self.size() as u64;
        let Some(l) = self.lock() else {
            return Usage {
                size,
                used: 0,
                entries: 0,
            };
        };
        // SAFETY: the pool and our header are consistent while the lock is held.
        unsafe {
            let page = nginx_sys::ngx_pagesize as u64;
            let pool = &*l.pool;
            let pages = (pool.end.offset_from(pool.start) as u64) / page.max(1);
            Usage {
                size,
                used: pages.saturating_sub(pool.pfree as u64) * page,
                entries: (*l.sh).entries,
            }
        }
    }

    /// Marks `digest` as being introspected until `until_ms`; `false` if the zone already
    /// holds a fresh entry or a marker for it (another worker got there first). An expired
    /// entry is replaced (the caller took its stale copy with the lookup).
    /// An entry made before `made_after_ms` is replaced as if expired (`cache_max_age`).
    pub(crate) fn claim(
        &self,
        digest: &[u8; 32],
        until_ms: i64,
        now_ms: i64,
        made_after_ms: i64,
    ) -> bool {
        let Some(l) = self.lock() else { return true };
        if let Some(node) = l.find(digest) {
            // SAFETY: node is a live entry of the locked tree.
            let n = unsafe { &*node };
            if n.expires_ms > now_ms && (n.kind == PENDING || n.created_ms() > made_after_ms) {
                return false;
            }
            // SAFETY: as above.
            unsafe { l.remove(node) };
        }
        l.insert(
            digest,
            Life::until(until_ms, now_ms),
            PENDING,
            (&[], &[]),
            [NO_KEY; 2],
            0,
            now_ms,
        );
        true
    }

    /// Removes this worker's marker for `digest` (its result was not cached).
    pub(crate) fn release(&self, digest: &[u8; 32]) {
        let Some(l) = self.lock() else { return };
        if let Some(node) = l.find(digest) {
            // SAFETY: node is a live entry of the locked tree.
            if unsafe { (*node).kind } == PENDING {
                // SAFETY: as above; removing it is the last use of the node.
                unsafe { l.remove(node) };
            }
        }
    }
}
