//! `phantom_token_purge <zone>;`: a content handler that drops cached decisions before
//! their time, for a token, a subject or a client, on every instance of the fleet.
//!
//! It takes an RFC 7009-shaped `POST` (`token=`, or `sub=` / `client_id=`), purges this
//! instance at once (zone, every worker's L1 through the epoch, a tombstone), then with
//! `redis=` removes the entries from Redis and appends a sealed notice to the purge stream,
//! which the other instances read within a second. Operators protect the location with
//! nginx's own access control; the answer is JSON.

pub(crate) mod local;
mod walk;

use core::ffi::{c_char, c_void};

use nginx_sys::{
    ngx_command_t, ngx_conf_t, ngx_http_discard_request_body, ngx_http_finalize_request,
    ngx_http_read_client_request_body, ngx_http_request_t, ngx_http_run_posted_requests, ngx_int_t,
    ngx_pool_cleanup_add, NGX_DONE, NGX_ERROR, NGX_HTTP_POST, NGX_HTTP_SPECIAL_RESPONSE,
    NGX_LOG_INFO, NGX_LOG_NOTICE, NGX_OK,
};
use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule, Request};
use ngx::{ngx_log_error, ngx_string};
use phantom_core::fleet::notice::{self, Notice};
use phantom_core::fleet::resp::push_command;
use phantom_core::purge::{self, Kind, Selector};

use crate::cache::ZoneConf;
use crate::fleet::ops::index_key;
use crate::fleet::sweep;
use crate::fleet::waiters::{self, Outcome, Value};
use crate::glue::time::now_ms;
use crate::Module;

/// Largest purge body: a token, a subject or a client id fits many times over.
const MAX_BODY: usize = 8192;

/// Stream entries kept (approximately): purges matter only while entries can live.
const STREAM_MAXLEN: u64 = 10_000;

/// The location's content handler.
pub(crate) extern "C" fn purge_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls content handlers with a valid request.
    let req = unsafe { &*r };
    let problem = if req.method != NGX_HTTP_POST as usize {
        Some("the method must be POST")
    } else if !form_content(req) {
        Some("the body must be application/x-www-form-urlencoded")
    } else if req.headers_in.content_length_n > MAX_BODY as i64 {
        Some("the body is too large")
    } else {
        None
    };
    if let Some(problem) = problem {
        // SAFETY: r is valid; the body is read and dropped before the answer.
        if unsafe { ngx_http_discard_request_body(r) } != NGX_OK as ngx_int_t {
            return NGX_ERROR as ngx_int_t;
        }
        // SAFETY: r is valid and nothing was sent.
        return unsafe { bad_request(r, problem) };
    }
    // SAFETY: r is valid; nginx calls `body_read` once the body is in, holding a reference.
    let rc = unsafe { ngx_http_read_client_request_body(r, Some(body_read)) };
    if rc >= NGX_HTTP_SPECIAL_RESPONSE as ngx_int_t {
        return rc;
    }
    NGX_DONE as ngx_int_t
}

fn form_content(req: &ngx_http_request_t) -> bool {
    // SAFETY: content_type is NULL or a header of this request.
    let Some(h) = (unsafe { req.headers_in.content_type.as_ref() }) else {
        return false;
    };
    let v = h.value.as_bytes();
    let media = v.split(|&b| b == b';').next().unwrap_or_default();
    media
        .trim_ascii()
        .eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
}

/// The body, if it is in memory and small enough.
///
/// # Safety
/// `r` must be a valid request whose body was read.
unsafe fn body_of(r: *mut ngx_http_request_t) -> Option<Vec<u8>> {
    // SAFETY: per contract; request_body and its chain live in r->pool.
    unsafe {
        let rb = (*r).request_body;
        if rb.is_null() {
            return Some(Vec::new());
        }
        if !(*rb).temp_file.is_null() {
            return None;
        }
        let mut body = Vec::new();
        let mut cl = (*rb).bufs;
        while !cl.is_null() {
            let b = (*cl).buf;
            if (*b).in_file() != 0 {
                return None;
            }
            cl = (*cl).next;
            if (*b).pos.is_null() || (*b).last.is_null() {
                continue; // an empty buffer (an empty body)
            }
            let len = (*b).last.offset_from((*b).pos).max(0) as usize;
            if body.len() + len > MAX_BODY {
                return None;
            }
            body.extend_from_slice(core::slice::from_raw_parts((*b).pos, len));
        }
        Some(body)
    }
}

unsafe extern "C" fn body_read(r: *mut ngx_http_request_t) {
    // SAFETY: nginx calls this with the request whose body was read.
    let rc = unsafe { purge(r) };
    if rc != NGX_DONE as ngx_int_t {
        // SAFETY: the reference taken by reading the body is given back once.
        unsafe { ngx_http_finalize_request(r, rc) };
    }
}

/// Parses and applies the purge; `NGX_DONE` while Redis answers.
unsafe fn purge(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: per the caller.
    let Some(body) = (unsafe { body_of(r) }) else {
        // SAFETY: as above; nothing was sent yet.
        return unsafe { bad_request(r, "the body is too large") };
    };
    let selector = match purge::parse_body(&body) {
        Ok(s) => s,
        // SAFETY: as above; nothing was sent yet.
        Err(e) => return unsafe { bad_request(r, &e.to_string()) },
    };
    // SAFETY: r is valid.
    let request = unsafe { Request::from_ngx_http_request(r) };
    let Some(zone) = zone_of(request) else {
        return NGX_ERROR as ngx_int_t;
    };
    // The walk needs the selector; so does the answer, which may come after it.
    let (kind, value) = (selector.kind, selector.value.clone());
    let now = now_ms();
    // The rest runs once the zone is purged (at once for a token; after a walk over the zone
    // for a subject or client), unless the request is gone by then.
    let id = waiters::register(move |outcome| {
        let (removed, us) = match outcome.as_deref() {
            Ok([Value::Int(n), Value::Int(us)]) => ((*n).max(0) as u64, *us),
            _ => (0, 0),
        };
        // SAFETY: the waiter is cancelled by the request pool's cleanup, so r is alive.
        let log = unsafe { (*(*r).connection).log };
        ngx_log_error!(
            NGX_LOG_NOTICE,
            log,
            "phantom_token_purge: {} entries removed from zone \"{}\" by {} in {} us",
            removed,
            zone.name,
            selector.kind.label(),
            us
        );
        // SAFETY: as above.
        unsafe { purged(r, zone, selector, removed, now) };
    });
    // SAFETY: r->pool is valid; the cleanup forgets the waiter if the request ends first.
    if !unsafe { forget_on_cleanup(r, id) } {
        waiters::cancel(id);
        return NGX_ERROR as ngx_int_t;
    }
    let started = std::time::Instant::now();
    local::apply(zone, kind, &value, now, move |removed| {
        let us = started.elapsed().as_micros() as i64;
        waiters::complete_all(vec![(
            id,
            Ok(vec![Value::Int(removed as i64), Value::Int(us)]),
        )]);
    });
    NGX_DONE as ngx_int_t
}

/// This instance is purged: answer, or tell the fleet first.
unsafe fn purged(
    r: *mut ngx_http_request_t,
    zone: &'static ZoneConf,
    selector: Selector,
    removed: u64,
    now: i64,
) {
    let rc = match &zone.fleet {
        // SAFETY: r is alive (see the caller) and nothing was sent.
        None => unsafe { answer(r, 200, &purge::result_json(removed, None, None)) },
        // SAFETY: as above.
        Some(_) => unsafe { tell_fleet(r, zone, &selector, removed, now) },
    };
    if rc != NGX_DONE as ngx_int_t {
        // SAFETY: as above; c is read before the request may be freed.
        unsafe {
            let c = (*r).connection;
            ngx_http_finalize_request(r, rc);
            ngx_http_run_posted_requests(c);
        }
    }
}

fn zone_of(request: &Request) -> Option<&'static ZoneConf> {
    let i = Module::location_conf(request)?.purge?;
    Module::main_conf(request)?.zones.get(i)
}

/// Removes the entries from Redis and appends the notice, then answers when Redis did (or
/// failed: 503, so that the caller retries). A token's entries lie in one slot: one `UNLINK`
/// and the `XADD`, in one round trip. A subject's or client's are swept in batches, one
/// `UNLINK` per slot ([`crate::fleet::sweep`]), the `XADD` riding on the last round trip.
unsafe fn tell_fleet(
    r: *mut ngx_http_request_t,
    zone: &'static ZoneConf,
    selector: &Selector,
    removed: u64,
    now: i64,
) -> ngx_int_t {
    let Some(fleet) = &zone.fleet else {
        return NGX_ERROR as ngx_int_t;
    };
    let stream = fleet.stream_key();
    // The origin lets this instance's own reader skip the notice: the purge is applied here.
    let n = Notice {
        kind: selector.kind,
        value: selector.value.clone(),
        t_ms: now,
        origin: zone.zone.origin(),
    };
    let Ok(sealed) = notice::seal_notice(&fleet.keys, &stream, &n) else {
        return NGX_ERROR as ngx_int_t;
    };
    let xadd = notice::xadd_command(&stream, STREAM_MAXLEN, &sealed);
    let id = waiters::register(move |outcome| {
        // SAFETY: the waiter is cancelled by the request pool's cleanup, so r is alive.
        unsafe { fleet_answered(r, removed, outcome) };
    });
    // SAFETY: r->pool is valid; the cleanup forgets the waiter if the request ends first.
    let sent = unsafe { forget_on_cleanup(r, id) }
        && match selector.kind {
            Kind::Token => {
                let keys = fleet.layout.entries(
                    zone.contexts.borrow().iter().map(Vec::as_slice),
                    &selector.value,
                );
                let mut args: Vec<&[u8]> = vec![b"UNLINK"];
                args.extend(keys.iter().map(|k| k.as_bytes()));
                if keys.is_empty() {
                    args = vec![b"ECHO", b"0"];
                }
                let mut cmds = Vec::new();
                push_command(&mut cmds, &args);
                cmds.extend_from_slice(&xadd);
                // The entries' slot and the stream's: one round trip (per node on a cluster).
                fleet.submit_split(&cmds, 2, id, now)
            }
            Kind::Sub | Kind::ClientId => {
                let index = index_key(fleet, selector.kind, &selector.value);
                // The request may be gone when the sweep ends: it answers through the waiter,
                // which the request's cleanup cancels.
                sweep::start(fleet, index, (xadd, 1), now, move |swept| {
                    let outcome = swept.map(|(n, tail)| {
                        let mut v = vec![Value::Int(n as i64)];
                        v.extend(tail);
                        v
                    });
                    waiters::complete_all(vec![(id, outcome)]);
                })
            }
        };
    if !sent {
        waiters::cancel(id);
        let body = unavailable_json(removed);
        // SAFETY: r is valid and nothing was sent.
        return unsafe { answer(r, 503, &body) };
    }
    NGX_DONE as ngx_int_t
}

fn unavailable_json(removed: u64) -> String {
    purge::result_json(removed, None, Some(false))
}

/// Redis answered (or failed): the response, then the request is finalized.
unsafe fn fleet_answered(r: *mut ngx_http_request_t, removed: u64, outcome: Outcome) {
    let (status, body) = match outcome.as_deref() {
        Ok([Value::Int(n), Value::Bulk(_)]) => (
            200,
            purge::result_json(removed, Some((*n).max(0) as u64), Some(true)),
        ),
        Ok([Value::Bulk(_), Value::Bulk(_)]) => {
            (200, purge::result_json(removed, Some(0), Some(true)))
        }
        _ => (503, unavailable_json(removed)),
    };
    // SAFETY: r is alive (see the caller); c is read before the request may be freed.
    unsafe {
        let c = (*r).connection;
        let rc = answer(r, status, &body);
        ngx_http_finalize_request(r, rc);
        ngx_http_run_posted_requests(c);
    }
}

unsafe extern "C" fn forget(data: *mut c_void) {
    // SAFETY: data is the waiter id written by `forget_on_cleanup`.
    waiters::cancel(unsafe { *(data as *const u64) });
}

/// Forgets the waiter when the request's pool goes (client gone, request freed).
unsafe fn forget_on_cleanup(r: *mut ngx_http_request_t, id: u64) -> bool {
    // SAFETY: r->pool is valid.
    let cln = unsafe { ngx_pool_cleanup_add((*r).pool, core::mem::size_of::<u64>()) };
    if cln.is_null() {
        return false;
    }
    // SAFETY: the cleanup has room for a u64.
    unsafe {
        *((*cln).data as *mut u64) = id;
        (*cln).handler = Some(forget);
    }
    true
}

unsafe fn bad_request(r: *mut ngx_http_request_t, why: &str) -> ngx_int_t {
    // SAFETY: r is valid.
    let log = unsafe { (*(*r).connection).log };
    ngx_log_error!(
        NGX_LOG_INFO,
        log,
        "phantom_token_purge: bad request: {}",
        why
    );
    let body = purge::error_json("invalid_request", why);
    // SAFETY: per the caller.
    unsafe { answer(r, 400, &body) }
}

/// Sends a JSON answer whose body is copied into `r->pool`.
unsafe fn answer(r: *mut ngx_http_request_t, status: usize, json: &str) -> ngx_int_t {
    // SAFETY: r is valid; the copy lives in its pool.
    let Some(body) = (unsafe { crate::glue::headers::pool_str((*r).pool, json.as_bytes()) }) else {
        return NGX_ERROR as ngx_int_t;
    };
    // SAFETY: r is valid, nothing was sent, the body lives in its pool.
    unsafe {
        crate::glue::send::send_memory(r, status, ngx_string!("application/json"), body.as_bytes())
    }
}

/// `phantom_token_purge <zone>;`: this location's content handler purges the zone.
pub(crate) extern "C" fn set_purge(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: directive handler contract.
    let (lcf, args) = unsafe {
        (
            &mut *(conf as *mut crate::config::LocConf),
            crate::config::args(cf),
        )
    };
    if lcf.purge_name.is_some() {
        return c"is duplicate".as_ptr() as *mut c_char;
    }
    // SAFETY: cf is valid while the directive is parsed.
    let Some(clcf) = NgxHttpCoreModule::location_conf_mut(unsafe { &*cf }) else {
        return NGX_CONF_ERROR;
    };
    clcf.handler = Some(purge_handler);
    lcf.purge_name = Some(args[0].to_string());
    NGX_CONF_OK
}
