//! Rejections: through nginx when the location asks for it, else the module's JSON.
//!
//! With an `error_page` for the status, or under `satisfy any` (where another access
//! module may still grant), the handler sets `WWW-Authenticate`/`Retry-After` and returns
//! the status, so nginx's own machinery (error pages, `auth_delay`, the other access
//! checks) answers. Otherwise the module sends its JSON body (Curity's), through the
//! normal filters so that `add_header ... always` applies.

use nginx_sys::{
    ngx_http_discard_request_body, ngx_http_err_page_t, ngx_http_finalize_request,
    ngx_http_request_t, ngx_int_t, NGX_DONE, NGX_ERROR, NGX_HTTP_SATISFY_ANY,
};
use ngx::http::{HttpModuleLocationConf, NgxHttpCoreModule};
use ngx::ngx_string;

use crate::config::Compat;
use crate::config::LocConf;
use crate::glue::send::send_memory;
use crate::metrics::{self, Counter};
use crate::reject::{DpopReject, Reject};
use crate::{glue::headers, Module};

/// Answers with `reject`; the access handler returns the result.
///
/// Called with no reference into the request or its context alive: the JSON path
/// finalizes the request, which can free the pool holding both.
///
/// # Safety
/// `r` must be a valid main request whose response has not been sent.
pub(crate) unsafe fn send(r: *mut ngx_http_request_t, reject: Reject) -> ngx_int_t {
    // SAFETY: r is valid; configurations live as long as the cycle.
    let Some(conf) = Module::location_conf(unsafe { &*r }) else {
        return 500;
    };
    let reject = match conf.compat() {
        Compat::Curity => reject.into_curity(),
        Compat::Off => reject,
    };
    // SAFETY: r is valid and its response not sent.
    if unsafe { set_headers(r, conf, &reject) }.is_err() {
        return NGX_ERROR as ngx_int_t;
    }
    let status = reject.status();
    metrics::count(match status {
        401 => Counter::Unauthorized,
        403 => Counter::Forbidden,
        429 => Counter::TooManyRequests,
        500 => Counter::ServerError,
        502 => Counter::BadGateway,
        _ => Counter::Unavailable,
    });
    // SAFETY: r is valid.
    if unsafe { nginx_answers(r, status) } {
        return status as ngx_int_t;
    }
    // SAFETY: r is valid; discarding the body keeps the connection usable for keepalive.
    unsafe { ngx_http_discard_request_body(r) };
    // SAFETY: as above.
    let rc = unsafe { send_json(r, status, reject.body()) };
    // SAFETY: finalizing with the output result ends the request as a content handler would;
    // nothing of the request is touched after this.
    unsafe { ngx_http_finalize_request(r, rc) };
    NGX_DONE as ngx_int_t
}

/// Whether nginx should answer: an `error_page` for `status` applies here, or `satisfy any`
/// leaves a 401/403 to the other access modules.
unsafe fn nginx_answers(r: *mut ngx_http_request_t, status: usize) -> bool {
    // SAFETY: r is valid.
    let req = unsafe { &*r };
    let Some(clcf) = NgxHttpCoreModule::location_conf(req) else {
        return false;
    };
    if matches!(status, 401 | 403) && clcf.satisfy == NGX_HTTP_SATISFY_ANY as usize {
        return true;
    }
    // nginx's own conditions for using error_page (ngx_http_special_response_handler).
    if req.error_page() != 0 || req.uri_changes() == 0 {
        return false;
    }
    // SAFETY: error_pages is NULL or an array of ngx_http_err_page_t.
    let Some(pages) = (unsafe { clcf.error_pages.as_ref() }) else {
        return false;
    };
    // SAFETY: as above.
    let pages = unsafe { pages.as_slice::<ngx_http_err_page_t>() };
    pages.iter().any(|p| p.status == status as isize)
}

unsafe fn set_headers(
    r: *mut ngx_http_request_t,
    conf: &LocConf,
    reject: &Reject,
) -> Result<(), ()> {
    // SAFETY: r is valid for the duration of the call.
    let req = unsafe { &mut *r };
    let list = &mut req.headers_out.headers as *mut _;
    let mut last: *mut nginx_sys::ngx_table_elt_t = core::ptr::null_mut();
    for v in crate::challenges::of(conf, reject) {
        // SAFETY: headers_out.headers is the request's initialised output list.
        let h =
            unsafe { headers::push(list, req.pool, b"WWW-Authenticate", v.as_bytes()) }.ok_or(())?;
        if last.is_null() {
            req.headers_out.www_authenticate = h;
        } else {
            // nginx walks this chain to clear them all when another access module grants
            // (satisfy any).
            #[cfg(nginx1_23_0)]
            // SAFETY: last is the previous, live element of the list.
            unsafe {
                (*last).next = h;
            }
        }
        last = h;
    }
    if let Reject::Dpop(DpopReject::UseNonce(nonce)) = reject {
        // SAFETY: as above.
        unsafe {
            headers::push(list, req.pool, b"DPoP-Nonce", nonce.as_bytes()).ok_or(())?;
            headers::push(list, req.pool, b"Cache-Control", b"no-store").ok_or(())?;
        }
    }
    let retry_after = match reject {
        Reject::Unavailable {
            retry_after: Some(secs),
            ..
        } => Some(*secs),
        Reject::TooManyRequests(secs) => Some(secs.unwrap_or(1)),
        _ => None,
    };
    if let Some(secs) = retry_after {
        let v = secs.to_string();
        // SAFETY: as above.
        unsafe { headers::push(list, req.pool, b"Retry-After", v.as_bytes()) }.ok_or(())?;
    }
    Ok(())
}

unsafe fn send_json(r: *mut ngx_http_request_t, status: usize, body: &'static str) -> ngx_int_t {
    // SAFETY: per the caller; the body is static.
    unsafe { send_memory(r, status, ngx_string!("application/json"), body.as_bytes()) }
}
