//! Sends the module's JSON error responses (Curity-compatible bodies, RFC 6750 headers).
//!
//! Responses go through the normal header and body filters, so `add_header ... always`
//! still applies to them.

use nginx_sys::{
    ngx_buf_t, ngx_chain_t, ngx_http_discard_request_body, ngx_http_finalize_request,
    ngx_http_output_filter, ngx_http_request_t, ngx_http_send_header, ngx_int_t, NGX_DONE,
    NGX_ERROR, NGX_OK,
};
use ngx::core::Pool;
use ngx::ngx_string;
use phantom_core::challenge::{FORBIDDEN_BODY, SERVER_ERROR_BODY, UNAUTHORIZED_BODY};

use crate::headers;

/// A response the module sends instead of passing the request on.
pub enum Reject<'a> {
    /// 401 with the given `WWW-Authenticate` value.
    Unauthorized(&'a str),
    /// 403 `insufficient_scope` with the given `WWW-Authenticate` value.
    Forbidden(&'a str),
    /// 502: the identity server or its response is unusable.
    BadGateway,
    /// 503: the identity server is unavailable, optionally with `Retry-After`.
    Unavailable(Option<u64>),
}

impl Reject<'_> {
    fn status(&self) -> usize {
        match self {
            Reject::Unauthorized(_) => 401,
            Reject::Forbidden(_) => 403,
            Reject::BadGateway => 502,
            Reject::Unavailable(_) => 503,
        }
    }

    fn body(&self) -> &'static str {
        match self {
            Reject::Unauthorized(_) => UNAUTHORIZED_BODY,
            Reject::Forbidden(_) => FORBIDDEN_BODY,
            _ => SERVER_ERROR_BODY,
        }
    }
}

/// Sends `reject` and finalizes the request; the access handler returns the result.
///
/// # Safety
/// `r` must be a valid main request whose response has not been sent.
pub unsafe fn send(r: *mut ngx_http_request_t, reject: Reject) -> ngx_int_t {
    // SAFETY: r is valid; discarding the body keeps the connection usable for keepalive.
    unsafe { ngx_http_discard_request_body(r) };
    // SAFETY: as above.
    let rc = unsafe { send_inner(r, &reject) };
    // SAFETY: finalizing with the output result ends the request as a content handler would.
    unsafe { ngx_http_finalize_request(r, rc) };
    NGX_DONE as ngx_int_t
}

unsafe fn send_inner(r: *mut ngx_http_request_t, reject: &Reject) -> ngx_int_t {
    // SAFETY: r is valid for the duration of the call.
    let req = unsafe { &mut *r };
    let pool = req.pool;
    let body = reject.body();
    req.headers_out.status = reject.status();
    req.headers_out.content_type = ngx_string!("application/json");
    req.headers_out.content_type_len = req.headers_out.content_type.len;
    req.headers_out.content_type_lowcase = core::ptr::null_mut();
    req.headers_out.content_length_n = body.len() as _;
    let list = &mut req.headers_out.headers as *mut _;
    match reject {
        Reject::Unauthorized(v) | Reject::Forbidden(v) => {
            // SAFETY: headers_out.headers is the request's initialised output list.
            let Some(h) = (unsafe { headers::push(list, pool, b"WWW-Authenticate", v.as_bytes()) })
            else {
                return NGX_ERROR as ngx_int_t;
            };
            req.headers_out.www_authenticate = h;
        }
        Reject::Unavailable(Some(secs)) => {
            let v = secs.to_string();
            // SAFETY: as above.
            if unsafe { headers::push(list, pool, b"Retry-After", v.as_bytes()) }.is_none() {
                return NGX_ERROR as ngx_int_t;
            }
        }
        _ => {}
    }
    // SAFETY: headers are complete.
    let rc = unsafe { ngx_http_send_header(r) };
    if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || req.header_only() != 0 {
        return rc;
    }
    // SAFETY: the body buffer points at static bytes; nginx only reads memory buffers.
    unsafe { send_body(r, Pool::from_ngx_pool(pool), body) }
}

unsafe fn send_body(r: *mut ngx_http_request_t, pool: Pool, body: &'static str) -> ngx_int_t {
    let b = pool.calloc_type::<ngx_buf_t>();
    if b.is_null() {
        return NGX_ERROR as ngx_int_t;
    }
    // SAFETY: b is a zeroed buffer we own; the data is 'static and never written.
    unsafe {
        (*b).start = body.as_ptr() as *mut u8;
        (*b).pos = (*b).start;
        (*b).last = (*b).start.add(body.len());
        (*b).end = (*b).last;
        (*b).set_memory(1);
        (*b).set_last_buf(1);
        (*b).set_last_in_chain(1);
    }
    let mut out = ngx_chain_t {
        buf: b,
        next: core::ptr::null_mut(),
    };
    // SAFETY: out is a valid one-link chain for the duration of the call (nginx copies links).
    unsafe { ngx_http_output_filter(r, &mut out) }
}
