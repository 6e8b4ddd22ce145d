//! Per-request state, kept in `r->pool` and found again after internal redirects.

use core::ffi::c_void;
use core::ptr;

use nginx_sys::{
    ngx_del_timer, ngx_event_t, ngx_http_request_t, ngx_pool_cleanup_add, ngx_pool_cleanup_t,
    ngx_str_t,
};

use crate::cache::CacheStatus;
use crate::cache::{Entry, Stale, ZoneConf};
use crate::decide::Outcome;
use crate::introspect::Reply;
use crate::Module;
use ngx::http::HttpModule;

/// Where the request is in its token exchange.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Phase {
    /// Waiting for our introspection subrequest.
    Introspecting,
    /// Waiting for another request of this worker that introspects the same token.
    Coalesced,
    /// Waiting for another worker's introspection of the same token (polling the zone).
    Awaiting,
    /// Waiting for Redis (the fleet tier): a shared entry, or the fleet lock.
    Fleet,
    /// Waiting for Redis to claim the DPoP proof's `jti` for the fleet before granting.
    Proof,
    /// The exchange ended; `granted` tells whether the upstream gets a JWT.
    Done,
}

/// What the request learnt about its token.
pub(crate) struct Ctx {
    pub(crate) phase: Phase,
    /// The opaque token, in the request's header memory or pool (never overwritten).
    pub(crate) token: ngx_str_t,
    /// Key of the token in the introspection context of the location that asked.
    pub(crate) digest: [u8; 32],
    /// The zone in which this request holds the "being introspected" marker.
    pub(crate) claimed: Option<&'static ZoneConf>,
    /// What the request's DPoP proof established (verified on every request).
    pub(crate) proof: Option<phantom_core::dpop::Verified>,
    /// The proof was remembered in the replay cache (once per request).
    pub(crate) proof_remembered: bool,
    /// The fleet-wide replay check of the proof is done (claimed, or passed over by the
    /// replay mode), once per request.
    pub(crate) proof_claimed: bool,
    /// The proof's claim in Redis while it is out (`Phase::Proof`).
    pub(crate) jti: crate::fleet::jti::JtiClaim,
    /// The decision whose grant waits for that claim.
    pub(crate) claim_for: Option<Entry>,
    /// An expired entry the zone still keeps, served if introspection is unavailable.
    pub(crate) stale: Option<Stale>,
    /// The granted entry, re-applied when an internal redirect changes the location.
    pub(crate) decision: Option<Entry>,
    pub(crate) reply: Reply,
    /// Set by the leader of a coalesced introspection for its followers.
    pub(crate) shared: Option<Outcome>,
    pub(crate) cache_status: CacheStatus,
    /// `Bearer <JWT>` in `r->pool` once granted (the JWT is `bearer[7..]`).
    pub(crate) bearer: ngx_str_t,
    /// Decoded claims for `$phantom_token_claim_*`, decoded at most once per request.
    pub(crate) claims: Option<serde_json::Map<String, serde_json::Value>>,
    pub(crate) granted: bool,
    /// The cache lookup of this request was counted (retries look again).
    pub(crate) looked: bool,
    /// A purge during the introspection made this request introspect again (once).
    pub(crate) asked_again: bool,
    /// The zone's count of purges when this request last asked Redis or the identity
    /// server: a purge learnt of since keeps the answer out (`purge::local::buried`).
    pub(crate) asked_purges: u64,
    /// When this request's introspection started, and how long it took.
    pub(crate) intro_start_ms: i64,
    pub(crate) intro_ms: Option<u64>,
    /// This request leads the worker's introspection of its token (see `coalesce`).
    pub(crate) leading: bool,
    /// Re-runs the request while it waits for another worker (see `coalesce::poll_later`).
    pub(crate) timer: ngx_event_t,
    /// The fleet tier's state for this request (see `fleet::ops`).
    pub(crate) fleet: crate::fleet::ops::FleetCtx,
}

impl Drop for Ctx {
    fn drop(&mut self) {
        // A leader that ends before deciding (its client went away) releases its waiters,
        // in this worker and in the others, to introspect themselves at once.
        self.finish_flight(&Outcome::Retry);
        self.release_claim();
        if self.timer.timer_set() != 0 {
            // SAFETY: the timer is in the event tree; it must not fire after the request ends.
            unsafe { ngx_del_timer(&mut self.timer) };
        }
    }
}

impl Ctx {
    fn new() -> Self {
        Ctx {
            phase: Phase::Introspecting,
            token: ngx_str_t::default(),
            digest: [0; 32],
            claimed: None,
            proof: None,
            proof_remembered: false,
            proof_claimed: false,
            jti: Default::default(),
            claim_for: None,
            stale: None,
            decision: None,
            reply: Reply::default(),
            shared: None,
            cache_status: CacheStatus::Bypass,
            bearer: ngx_str_t::default(),
            claims: None,
            granted: false,
            looked: false,
            asked_again: false,
            asked_purges: 0,
            intro_start_ms: 0,
            intro_ms: None,
            leading: false,
            // SAFETY: a zeroed event is nginx's initial state for a timer-only event.
            timer: unsafe { core::mem::zeroed() },
            fleet: Default::default(),
        }
    }

    /// The opaque token taken on the first pass.
    pub(crate) fn token<'a>(&self) -> &'a [u8] {
        if self.token.data.is_null() {
            return &[];
        }
        // SAFETY: token points into header memory or r->pool, alive for the request.
        unsafe { core::slice::from_raw_parts(self.token.data, self.token.len) }
    }

    /// Withdraws this request's "being introspected" marker, if it holds one.
    pub(crate) fn release_claim(&mut self) {
        if let Some(zone) = self.claimed.take() {
            zone.release(&self.digest);
        }
    }

    /// Starts over under another key (the request moved to a location with another
    /// introspection context); the token stays.
    pub(crate) fn restart(&mut self, digest: [u8; 32]) {
        self.finish_flight(&Outcome::Retry);
        self.release_claim();
        self.phase = Phase::Introspecting;
        self.digest = digest;
        self.reply = Reply::default();
        self.shared = None;
        self.cache_status = CacheStatus::Bypass;
        self.bearer = ngx_str_t::default();
        self.claims = None;
        self.granted = false;
        self.decision = None;
        self.stale = None;
        self.fleet = Default::default();
    }

    /// Hands the outcome to the requests waiting on this leader, once.
    pub(crate) fn finish_flight(&mut self, outcome: &Outcome) {
        if core::mem::take(&mut self.leading) {
            crate::coalesce::land(&self.digest, outcome);
        }
    }

    /// The JWT forwarded upstream, if the request was granted.
    pub(crate) fn jwt(&self) -> &[u8] {
        if !self.granted {
            return &[];
        }
        self.bearer.as_bytes().get(7..).unwrap_or(&[])
    }
}

/// Drops the Rust parts of the context when the request pool is destroyed.
unsafe extern "C" fn cleanup(data: *mut c_void) {
    // SAFETY: `data` is the context written by `create`, dropped exactly once here.
    unsafe { ptr::drop_in_place(data as *mut Ctx) };
}

/// Returns the request's context, also after an internal redirect reset `r->ctx`.
///
/// # Safety
/// `r` must be a valid main request.
pub(crate) unsafe fn get(r: *mut ngx_http_request_t) -> Option<&'static mut Ctx> {
    let idx = Module::module().ctx_index;
    // SAFETY: r->ctx has one slot per HTTP module.
    let p = unsafe { *(*r).ctx.add(idx) } as *mut Ctx;
    if !p.is_null() {
        // SAFETY: the slot only ever holds a Ctx written by `create`.
        return Some(unsafe { &mut *p });
    }
    // SAFETY: r is valid; the cleanup list is a NULL terminated chain in the pool.
    if unsafe { (*r).internal() } == 0 {
        return None;
    }
    // SAFETY: r is a valid request (per contract) whose pool is alive.
    let found = unsafe { find_in_cleanups(r) }?;
    // SAFETY: restore the slot so later lookups are direct.
    unsafe { *(*r).ctx.add(idx) = found as *mut c_void };
    // SAFETY: found was written by `create` and lives as long as the pool.
    Some(unsafe { &mut *found })
}

/// The realip-module trick: our cleanup handler marks our context in the pool.
unsafe fn find_in_cleanups(r: *mut ngx_http_request_t) -> Option<*mut Ctx> {
    // SAFETY: the pool and its cleanup chain are valid for the request's life.
    let mut c: *mut ngx_pool_cleanup_t = unsafe { (*(*r).pool).cleanup };
    while !c.is_null() {
        // SAFETY: c is a live element of the chain.
        let el = unsafe { &*c };
        let ours: unsafe extern "C" fn(*mut c_void) = cleanup;
        if el.handler.is_some_and(|h| core::ptr::fn_addr_eq(h, ours)) {
            return Some(el.data as *mut Ctx);
        }
        c = el.next;
    }
    None
}

/// Creates the context in `r->pool` and stores it in the request.
///
/// # Safety
/// `r` must be a valid main request.
pub(crate) unsafe fn create(r: *mut ngx_http_request_t) -> Option<&'static mut Ctx> {
    // SAFETY: r->pool is the request pool; the cleanup owns the allocation.
    let cln = unsafe { ngx_pool_cleanup_add((*r).pool, core::mem::size_of::<Ctx>()) };
    if cln.is_null() {
        return None;
    }
    // SAFETY: ngx_pool_cleanup_add allocated `size_of::<Ctx>()` bytes, suitably aligned
    // (pool allocations are aligned to NGX_ALIGNMENT, pointer size).
    let p = unsafe { (*cln).data } as *mut Ctx;
    // SAFETY: p is that allocation, uninitialised: written once, then owned by the cleanup;
    // r->ctx has one slot per module.
    unsafe {
        ptr::write(p, Ctx::new());
        (*cln).handler = Some(cleanup);
        *(*r).ctx.add(Module::module().ctx_index) = p as *mut c_void;
    }
    // SAFETY: just initialised.
    Some(unsafe { &mut *p })
}

/// The context of `r`'s main request, for variables evaluated in any request.
///
/// # Safety
/// `r` must be a valid request.
pub(crate) unsafe fn of_main(r: *mut ngx_http_request_t) -> Option<&'static mut Ctx> {
    // SAFETY: every request has a valid main pointer.
    unsafe { get((*r).main) }
}
