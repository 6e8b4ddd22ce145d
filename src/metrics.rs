//! The module's counters: atomics in a shared zone of their own, so every worker adds to
//! the same numbers without a lock, and the numbers outlive `nginx -s reload`.

use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use nginx_sys::{
    ngx_conf_t, ngx_int_t, ngx_shared_memory_add, ngx_shm_zone_t, ngx_shmtx_lock, ngx_shmtx_unlock,
    ngx_slab_alloc_locked, ngx_slab_pool_t, ngx_str_t, NGX_ERROR, NGX_OK,
};
use ngx::http::HttpModule;
use phantom_core::metrics::BUCKETS;

use crate::Module;

/// What is counted; the discriminant is the counter's slot.
#[derive(Clone, Copy, Debug)]
#[repr(usize)]
pub(crate) enum Counter {
    Granted,
    Unauthorized,
    Forbidden,
    TooManyRequests,
    ServerError,
    BadGateway,
    Unavailable,
    IntroActive,
    IntroInactive,
    IntroError,
    IntroUnavailable,
    L1Hits,
    ZoneHits,
    Misses,
    Expired,
    Stored,
    NotStoredNoStore,
    NotStoredTooBig,
    NotStoredNotCacheable,
    Evicted,
    WaitWorker,
    WaitWorkers,
    StaleServed,
    Purges,
    RedisHits,
    RedisErrors,
    RedisBadValues,
    WaitFleet,
    /// Error replies by meaning (`phantom_core::fleet::errors::ErrorClass`).
    RedisRole,
    RedisAuth,
    RedisCluster,
    RedisErrorReply,
    /// A DPoP proof checked against this instance's replay cache only: Redis could not
    /// claim its `jti` for the fleet (`phantom_token_dpop_replay fleet`).
    DpopReplayLocalFallback,
    /// Purge notices of other instances, read from the stream and applied here.
    NoticesApplied,
    /// This instance's own purge notices, read back from the stream and skipped.
    NoticesOwn,
    /// TLS handshakes with Redis: a full one, or a session resumed.
    RedisTlsFull,
    RedisTlsResumed,
    /// Redis Cluster: slot maps taken, and redirects followed (`MOVED`, `ASK`).
    ClusterMaps,
    ClusterMoved,
    ClusterAsk,
}

pub(crate) const COUNTERS: usize = Counter::ClusterAsk as usize + 1;

/// Marks the layout below ("PTKMETR5").
const MAGIC: u64 = 0x5054_4b4d_4554_5235;

#[repr(C)]
pub(crate) struct Metrics {
    magic: u64,
    pub(crate) counters: [AtomicU64; COUNTERS],
    /// Introspection latency: per-bucket counts (the last is `+Inf`), and the sum in ms.
    pub(crate) latency: [AtomicU64; BUCKETS.len() + 1],
    pub(crate) latency_sum_ms: AtomicU64,
}

/// The zone's name and size (the slab allocator wants at least 8 pages).
const NAME: &[u8] = b"phantom_token_metrics";
const SIZE: usize = 64 * 1024;

/// This worker's view of the counters, set when it starts from its cycle's zone (never in
/// the master, whose cycle may still change or fail).
static METRICS: AtomicPtr<Metrics> = AtomicPtr::new(ptr::null_mut());

/// Adds one to `c`.
pub(crate) fn count(c: Counter) {
    if let Some(m) = get() {
        m.counters[c as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// Records an introspection that took `ms`.
pub(crate) fn observe(ms: u64) {
    if let Some(m) = get() {
        m.latency[phantom_core::metrics::bucket(ms)].fetch_add(1, Ordering::Relaxed);
        m.latency_sum_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

pub(crate) fn get() -> Option<&'static Metrics> {
    // SAFETY: the pointer is NULL or the zone's Metrics, mapped for the process's life.
    unsafe { METRICS.load(Ordering::Relaxed).as_ref() }
}

/// Declares the metrics zone (postconfiguration).
///
/// # Safety
/// `cf` must be valid.
pub(crate) unsafe fn declare(cf: *mut ngx_conf_t) -> Result<*mut ngx_shm_zone_t, ()> {
    let mut name = ngx_str_t {
        len: NAME.len(),
        data: NAME.as_ptr() as *mut u8,
    };
    let tag = Module::module() as *const _ as *mut c_void;
    // SAFETY: cf is valid; nginx copies nothing it does not own (the name is static).
    let shm = unsafe { ngx_shared_memory_add(cf, &mut name, SIZE, tag) };
    if shm.is_null() {
        return Err(());
    }
    // SAFETY: shm is the zone just added (or found again in this cycle).
    unsafe { (*shm).init = Some(init) };
    Ok(shm)
}

/// Worker start: counts go to this cycle's zone, or nowhere.
///
/// # Safety
/// `zone` must be NULL or this cycle's initialised metrics zone.
pub(crate) unsafe fn attach(zone: *mut ngx_shm_zone_t) {
    // SAFETY: per contract; `data` is the zone's Metrics once init ran.
    let m = unsafe { zone.as_ref() }.map_or(ptr::null_mut(), |z| z.data as *mut Metrics);
    METRICS.store(m, Ordering::Relaxed);
}

/// Keeps the counters of a zone reused across reload; lays out fresh ones otherwise.
unsafe extern "C" fn init(shm: *mut ngx_shm_zone_t, _old: *mut c_void) -> ngx_int_t {
    // SAFETY: nginx calls init with the mapped zone; its start is the slab pool.
    let pool = unsafe { (*shm).shm.addr } as *mut ngx_slab_pool_t;
    // SAFETY: pool is the zone's initialised slab pool.
    unsafe {
        let existing = (*pool).data as *mut Metrics;
        if !existing.is_null() && (*existing).magic == MAGIC {
            (*shm).data = existing as *mut c_void;
            return NGX_OK as ngx_int_t;
        }
        ngx_shmtx_lock(&mut (*pool).mutex);
        let m = ngx_slab_alloc_locked(pool, core::mem::size_of::<Metrics>()) as *mut Metrics;
        ngx_shmtx_unlock(&mut (*pool).mutex);
        if m.is_null() {
            return NGX_ERROR as ngx_int_t;
        }
        // All-zero atomics are zero counters.
        ptr::write_bytes(m, 0, 1);
        (*m).magic = MAGIC;
        (*pool).data = m as *mut c_void;
        (*shm).data = m as *mut c_void;
    }
    NGX_OK as ngx_int_t
}
