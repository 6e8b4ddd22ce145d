//! What goes upstream: `Bearer <JWT>` in the configured header, and never the opaque token.
//!
//! Every client spelling of the target header is removed before ours is added, so none can
//! be forged; the token's source (the `Authorization` header, or the query argument, cookie
//! or header that `phantom_token_source` names) is removed from the proxied request.

use nginx_sys::{ngx_http_request_t, ngx_str_t, ngx_table_elt_t};
use phantom_core::source::{self, Source};

use crate::config::LocConf;
use crate::glue::headers;

/// Puts `bearer` into the upstream request and removes the token's source.
///
/// # Safety
/// `r` must be a valid main request; `bearer` must live in `r->pool`.
pub(crate) unsafe fn forward(
    r: *mut ngx_http_request_t,
    conf: &LocConf,
    bearer: ngx_str_t,
) -> Result<(), ()> {
    // SAFETY: per contract.
    unsafe {
        strip_source(r, conf)?;
        strip_proof(r, conf)?;
        match conf.header.as_deref() {
            None => set_authorization(r, bearer),
            Some(name) => set_header(r, conf, name.as_bytes(), bearer),
        }
    }
}

/// The default: `Authorization: Bearer <JWT>` in place of the client's value.
unsafe fn set_authorization(r: *mut ngx_http_request_t, bearer: ngx_str_t) -> Result<(), ()> {
    // SAFETY: r is valid; authorization is NULL or an element of its header list.
    let req = unsafe { &mut *r };
    // SAFETY: as above.
    if let Some(h) = unsafe { req.headers_in.authorization.as_mut() } {
        h.value = bearer;
        return Ok(());
    }
    let list = &mut req.headers_in.headers as *mut _;
    // SAFETY: the request's own header list, allocated from its pool.
    let h =
        unsafe { headers::push(list, req.pool, b"Authorization", bearer.as_bytes()) }.ok_or(())?;
    req.headers_in.authorization = h;
    Ok(())
}

/// `phantom_token_header <name>`: no client header of that name (in any case, `-` or `_`)
/// survives; the client's `Authorization` goes too when it carried the token.
unsafe fn set_header(
    r: *mut ngx_http_request_t,
    conf: &LocConf,
    name: &[u8],
    bearer: ngx_str_t,
) -> Result<(), ()> {
    // SAFETY: r is valid.
    let req = unsafe { &mut *r };
    let list = &mut req.headers_in.headers as *mut _;
    let auth = req.headers_in.authorization;
    let token_in_auth = conf.source.is_none() && !auth.is_null();
    let gone = |h: &ngx_table_elt_t| {
        source::header_is(h.key.as_bytes(), name) || (token_in_auth && core::ptr::eq(h, auth))
    };
    // SAFETY: the request's own list and pool.
    unsafe { headers::remove_where(list, req.pool, gone) }?;
    let is_auth = source::header_is(b"authorization", name);
    if token_in_auth || is_auth {
        req.headers_in.authorization = core::ptr::null_mut();
    }
    // SAFETY: as above.
    let h = unsafe { headers::push(list, req.pool, name, bearer.as_bytes()) }.ok_or(())?;
    if is_auth {
        req.headers_in.authorization = h;
    }
    Ok(())
}

/// Removes the `DPoP` proof header (unless `phantom_token_dpop_forward_proof on`): the API
/// cannot re-verify it anyway (`ath` and `htu` name the opaque token and the gateway).
unsafe fn strip_proof(r: *mut ngx_http_request_t, conf: &LocConf) -> Result<(), ()> {
    if conf.pop.dpop() == crate::config::DpopMode::Off || conf.pop.forward_proof == 1 {
        return Ok(());
    }
    // SAFETY: r is valid.
    let req = unsafe { &mut *r };
    let list = &mut req.headers_in.headers as *mut _;
    let gone = |h: &ngx_table_elt_t| h.key.as_bytes().eq_ignore_ascii_case(b"dpop");
    // SAFETY: the request's own list and pool.
    unsafe { headers::remove_where(list, req.pool, gone) }.map(|_| ())
}

/// Removes the argument, cookie or header that `phantom_token_source` read the token from.
unsafe fn strip_source(r: *mut ngx_http_request_t, conf: &LocConf) -> Result<(), ()> {
    // SAFETY: r is valid for all helpers.
    unsafe {
        match &conf.source_kind {
            Some(Source::Arg(name)) => strip_arg(r, name),
            Some(Source::Cookie(name)) => strip_cookie(r, name),
            Some(Source::Header(var)) => strip_header(r, var),
            Some(Source::Other) | None => Ok(()),
        }
    }
}

/// Rewrites `r->args` and the query of `r->unparsed_uri` (which `proxy_pass` without a URI
/// sends verbatim) without the argument; the path keeps its original bytes.
unsafe fn strip_arg(r: *mut ngx_http_request_t, name: &[u8]) -> Result<(), ()> {
    // SAFETY: r is valid.
    let req = unsafe { &mut *r };
    let Some(args) = source::strip_arg(req.args.as_bytes(), name) else {
        return Ok(());
    };
    let unparsed = req.unparsed_uri.as_bytes();
    let path = unparsed.split(|c| *c == b'?').next().unwrap_or(unparsed);
    let mut uri = path.to_vec();
    if !args.is_empty() {
        uri.push(b'?');
        uri.extend_from_slice(&args);
    }
    // SAFETY: both strings are copied into the request pool.
    let uri = unsafe { headers::pool_str(req.pool, &uri) }.ok_or(())?;
    req.args = ngx_str_t {
        len: args.len(),
        // SAFETY: the query follows the path and the '?' in the new URI.
        data: unsafe { uri.data.add(uri.len - args.len()) },
    };
    req.unparsed_uri = uri;
    Ok(())
}

/// Drops the cookie from every `Cookie` header; a header left empty is removed.
unsafe fn strip_cookie(r: *mut ngx_http_request_t, name: &[u8]) -> Result<(), ()> {
    // SAFETY: r is valid.
    let req = unsafe { &mut *r };
    let list = &mut req.headers_in.headers as *mut _;
    // SAFETY: iterating the request's own list; values are replaced with pool copies.
    for h in unsafe { headers::iter(list) } {
        if !h.key.as_bytes().eq_ignore_ascii_case(b"cookie") {
            continue;
        }
        if let Some(v) = source::strip_cookie(h.value.as_bytes(), name) {
            // SAFETY: the request's pool outlives its headers.
            h.value = unsafe { headers::pool_str(req.pool, &v) }.ok_or(())?;
        }
    }
    let empty =
        |h: &ngx_table_elt_t| h.key.as_bytes().eq_ignore_ascii_case(b"cookie") && h.value.len == 0;
    // SAFETY: the request's list and pool; the cookie index is fixed below.
    if unsafe { headers::remove_where(list, req.pool, empty) }? > 0 {
        // SAFETY: as above.
        unsafe { forget_empty_cookies(req) };
    }
    Ok(())
}

/// Unlinks removed (emptied) `Cookie` elements from `headers_in`'s own index of them.
#[cfg(nginx1_23_0)]
unsafe fn forget_empty_cookies(req: &mut ngx_http_request_t) {
    let mut link: *mut *mut ngx_table_elt_t = &mut req.headers_in.cookie;
    // SAFETY: the chain links live elements of the request's list (removed ones stay in
    // memory, so reading them is valid).
    unsafe {
        while !(*link).is_null() {
            if (**link).value.len == 0 {
                *link = (**link).next;
            } else {
                link = &mut (**link).next;
            }
        }
    }
}

#[cfg(not(nginx1_23_0))]
unsafe fn forget_empty_cookies(req: &mut ngx_http_request_t) {
    let cookies = &mut req.headers_in.cookies;
    let elts = cookies.elts as *mut *mut ngx_table_elt_t;
    let mut kept = 0;
    // SAFETY: the array holds `nelts` pointers to live (or removed, still allocated) elements.
    unsafe {
        for i in 0..cookies.nelts {
            let h = *elts.add(i);
            if (*h).value.len != 0 {
                *elts.add(kept) = h;
                kept += 1;
            }
        }
    }
    cookies.nelts = kept;
}

/// Removes every header that `$http_<var>` reads.
unsafe fn strip_header(r: *mut ngx_http_request_t, var: &[u8]) -> Result<(), ()> {
    // SAFETY: r is valid.
    let req = unsafe { &mut *r };
    let list = &mut req.headers_in.headers as *mut _;
    let gone = |h: &ngx_table_elt_t| source::header_is(h.key.as_bytes(), var);
    // SAFETY: the request's own list and pool.
    if unsafe { headers::remove_where(list, req.pool, gone) }? > 0 {
        if source::header_is(b"authorization", var) {
            req.headers_in.authorization = core::ptr::null_mut();
        }
        if source::header_is(b"cookie", var) {
            // SAFETY: as in strip_cookie; the removed elements are treated as emptied.
            unsafe { clear_cookie_index(req) };
        }
    }
    Ok(())
}

#[cfg(nginx1_23_0)]
unsafe fn clear_cookie_index(req: &mut ngx_http_request_t) {
    req.headers_in.cookie = core::ptr::null_mut();
}

#[cfg(not(nginx1_23_0))]
unsafe fn clear_cookie_index(req: &mut ngx_http_request_t) {
    req.headers_in.cookies.nelts = 0;
}
