//! Coalescing: concurrent first requests for one token in a worker share one introspection.
//!
//! The first request (the leader) introspects; later ones with the same token digest wait
//! here. When the leader decides, each waiter gets the outcome in its context and its write
//! event is posted, which re-runs its phases. Pool cleanups keep the list free of requests
//! that ended while waiting, and wake the waiters with [`Outcome::Retry`] if the leader ends
//! without deciding (client gone).
//!
//! Across workers, the leader leaves a short-lived marker in the shared zone; requests of other
//! workers that find it poll the zone ([`poll_later`]) until the result is cached, or the marker
//! is gone (nothing cacheable) or expired, and then introspect themselves.

use core::ffi::c_void;
use std::cell::RefCell;
use std::collections::HashMap;

use nginx_sys::{
    ngx_add_timer, ngx_event_t, ngx_http_request_t, ngx_pool_cleanup_add, ngx_post_event,
    ngx_posted_events,
};

use crate::decide::Outcome;

/// A waiting request and the slot (in its context) that receives the leader's outcome.
type Waiters = Vec<(*mut ngx_http_request_t, *mut Option<Outcome>)>;

thread_local! {
    /// Digest of an in-flight token -> requests waiting for its result.
    static FLIGHTS: RefCell<HashMap<[u8; 32], Waiters>> = RefCell::new(HashMap::new());
}

/// Starts a flight for `digest`; `false` if one is already in the air.
pub(crate) fn lead(digest: &[u8; 32]) -> bool {
    FLIGHTS.with_borrow_mut(|f| {
        if f.contains_key(digest) {
            return false;
        }
        f.insert(*digest, Vec::new());
        true
    })
}

struct WaiterMark {
    digest: [u8; 32],
    r: *mut ngx_http_request_t,
}

unsafe extern "C" fn waiter_gone(data: *mut c_void) {
    // SAFETY: data is the WaiterMark written by `join`.
    let mark = unsafe { &*(data as *const WaiterMark) };
    FLIGHTS.with_borrow_mut(|f| {
        if let Some(w) = f.get_mut(&mark.digest) {
            w.retain(|(r, _)| *r != mark.r);
        }
    });
}

/// Adds `r` as a waiter of the flight for `digest`; the outcome will be put in `slot`.
///
/// # Safety
/// `r` must be a valid main request that returns `NGX_AGAIN` from the access phase, and
/// `slot` must live as long as it (in its context, in `r->pool`).
pub(crate) unsafe fn join(
    digest: &[u8; 32],
    r: *mut ngx_http_request_t,
    slot: *mut Option<Outcome>,
) -> bool {
    // SAFETY: r->pool is valid; the mark lives in the cleanup's own allocation.
    let cln = unsafe { ngx_pool_cleanup_add((*r).pool, core::mem::size_of::<WaiterMark>()) };
    if cln.is_null() {
        return false;
    }
    // SAFETY: the cleanup allocated room for a WaiterMark.
    unsafe {
        core::ptr::write(
            (*cln).data as *mut WaiterMark,
            WaiterMark { digest: *digest, r },
        );
        (*cln).handler = Some(waiter_gone);
    }
    FLIGHTS.with_borrow_mut(|f| match f.get_mut(digest) {
        Some(w) => {
            w.push((r, slot));
            true
        }
        None => false,
    })
}

/// Ends the flight for `digest`: hands `outcome` to every waiter and wakes it.
pub(crate) fn land(digest: &[u8; 32], outcome: &Outcome) {
    let waiters = FLIGHTS
        .with_borrow_mut(|f| f.remove(digest))
        .unwrap_or_default();
    for (r, slot) in waiters {
        // SAFETY: waiters are removed by their pool cleanup, so `r` and its slot are alive.
        unsafe { wake(r, slot, outcome.clone()) };
    }
}

unsafe fn wake(r: *mut ngx_http_request_t, slot: *mut Option<Outcome>, outcome: Outcome) {
    // SAFETY: slot lives in the live request's context.
    unsafe { *slot = Some(outcome) };
    // SAFETY: the write event of a live request's connection; posting re-runs its phases.
    unsafe { ngx_post_event((*(*r).connection).write, &raw mut ngx_posted_events) };
}

/// How often a request waiting for another worker looks at the shared zone again.
const POLL_MS: usize = 10;

/// Re-runs `r` after [`POLL_MS`]: across workers there is no wake-up, so waiters poll.
///
/// # Safety
/// `r` must be a valid main request; `timer` must live in its pool-allocated context.
pub(crate) unsafe fn poll_later(r: *mut ngx_http_request_t, timer: &mut ngx_event_t) {
    timer.handler = Some(poll_fired);
    timer.data = r as *mut c_void;
    // SAFETY: the request's connection and log are valid while the request lives.
    timer.log = unsafe { (*(*r).connection).log };
    // SAFETY: the timer is removed when the context is dropped with the request.
    unsafe { ngx_add_timer(timer, POLL_MS) };
}

unsafe extern "C" fn poll_fired(ev: *mut ngx_event_t) {
    // SAFETY: data is the request that armed the timer; it is still alive (see `poll_later`).
    let r = unsafe { (*ev).data } as *mut ngx_http_request_t;
    // SAFETY: posting the connection's write event re-runs the request's phases.
    unsafe { ngx_post_event((*(*r).connection).write, &raw mut ngx_posted_events) };
}
