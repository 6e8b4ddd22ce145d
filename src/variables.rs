//! `$phantom_token_cache_status`, `$phantom_token_jwt` and `$phantom_token_claim_<name>`.
//!
//! Values come from the main request's context (variables are shared with subrequests) and
//! are not cacheable, because they change when the token exchange completes.

use nginx_sys::{
    ngx_conf_t, ngx_http_add_variable, ngx_http_request_t, ngx_http_variable_value_t, ngx_int_t,
    ngx_str_t, ngx_uint_t, NGX_ERROR, NGX_HTTP_VAR_NOCACHEABLE, NGX_HTTP_VAR_PREFIX, NGX_OK,
};
use ngx::ngx_string;

use crate::ctx;
use crate::glue::headers;

type Getter = unsafe extern "C" fn(
    *mut ngx_http_request_t,
    *mut ngx_http_variable_value_t,
    usize,
) -> ngx_int_t;

const CLAIM_PREFIX: &str = "phantom_token_claim_";

/// Adds the module's variables (called from preconfiguration).
///
/// # Safety
/// `cf` must be the configuration context of preconfiguration.
pub(crate) unsafe fn register(cf: *mut ngx_conf_t) -> ngx_int_t {
    let vars: [(ngx_str_t, Getter, u32); 4] = [
        (ngx_string!("phantom_token_cache_status"), cache_status, 0),
        (
            ngx_string!("phantom_token_introspection_time"),
            introspection_time,
            0,
        ),
        (ngx_string!("phantom_token_jwt"), jwt, 0),
        (
            ngx_string!("phantom_token_claim_"),
            claim,
            NGX_HTTP_VAR_PREFIX,
        ),
    ];
    for (mut name, get, flags) in vars {
        let flags = (flags | NGX_HTTP_VAR_NOCACHEABLE) as ngx_uint_t;
        // SAFETY: cf is valid during preconfiguration; nginx copies the name.
        let v = unsafe { ngx_http_add_variable(cf, &mut name, flags) };
        if v.is_null() {
            return NGX_ERROR as ngx_int_t;
        }
        // SAFETY: v is the variable nginx just added.
        unsafe { (*v).get_handler = Some(get) };
    }
    NGX_OK as ngx_int_t
}

/// Fills `v` with `bytes`, which must outlive the request (static or `r->pool`).
fn set(v: &mut ngx_http_variable_value_t, bytes: &[u8]) -> ngx_int_t {
    v.data = bytes.as_ptr() as *mut u8;
    v.set_len(bytes.len() as u32);
    v.set_valid(1);
    v.set_no_cacheable(1);
    v.set_not_found(0);
    NGX_OK as ngx_int_t
}

fn not_found(v: &mut ngx_http_variable_value_t) -> ngx_int_t {
    v.set_not_found(1);
    NGX_OK as ngx_int_t
}

unsafe extern "C" fn cache_status(
    r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    _: usize,
) -> ngx_int_t {
    // SAFETY: nginx passes a valid request and value slot.
    let (v, ctx) = unsafe { (&mut *v, ctx::of_main(r)) };
    match ctx {
        Some(c) => set(v, c.cache_status.as_str().as_bytes()),
        None => not_found(v),
    }
}

/// Seconds with millisecond resolution ("0.012"); empty when this request did not introspect.
unsafe extern "C" fn introspection_time(
    r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    _: usize,
) -> ngx_int_t {
    // SAFETY: nginx passes a valid request and value slot.
    let (v, ctx) = unsafe { (&mut *v, ctx::of_main(r)) };
    let Some(ms) = ctx.and_then(|c| c.intro_ms) else {
        return set(v, b"");
    };
    let text = format!("{}.{:03}", ms / 1000, ms % 1000);
    // SAFETY: r is valid.
    unsafe { set_copy(r, v, &text) }
}

/// Fills `v` with a copy of `text` in the pool of the request that reads it.
///
/// # Safety
/// `r` must be a valid request.
unsafe fn set_copy(
    r: *mut ngx_http_request_t,
    v: &mut ngx_http_variable_value_t,
    text: &str,
) -> ngx_int_t {
    // SAFETY: per contract.
    match unsafe { headers::pool_str((*r).pool, text.as_bytes()) } {
        Some(s) => set(v, s.as_bytes()),
        None => NGX_ERROR as ngx_int_t,
    }
}

unsafe extern "C" fn jwt(
    r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    _: usize,
) -> ngx_int_t {
    // SAFETY: nginx passes a valid request and value slot; the JWT lives in r->pool.
    let (v, ctx) = unsafe { (&mut *v, ctx::of_main(r)) };
    match ctx {
        Some(c) if c.granted => set(v, c.jwt()),
        _ => set(v, b""),
    }
}

unsafe extern "C" fn claim(
    r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    data: usize,
) -> ngx_int_t {
    // SAFETY: for prefix variables `data` is the full variable name.
    let name = unsafe { &*(data as *const ngx_str_t) }.as_bytes();
    let name = core::str::from_utf8(name.get(CLAIM_PREFIX.len()..).unwrap_or(b"")).unwrap_or("");
    // SAFETY: nginx passes a valid request and value slot.
    let (v, ctx) = unsafe { (&mut *v, ctx::of_main(r)) };
    let Some(ctx) = ctx.filter(|c| c.granted) else {
        return set(v, b"");
    };
    if ctx.claims.is_none() {
        ctx.claims = Some(phantom_core::jwt::claims_of(ctx.jwt()));
    }
    let text = ctx
        .claims
        .as_ref()
        .and_then(|c| phantom_core::jwt::claim_text(c, name));
    let Some(text) = text else { return set(v, b"") };
    // SAFETY: r is valid.
    unsafe { set_copy(r, v, &text) }
}
