//! Sending a complete in-memory response (rejections, the purge and status pages).

use nginx_sys::{
    ngx_buf_t, ngx_chain_t, ngx_http_output_filter, ngx_http_request_t, ngx_http_send_header,
    ngx_int_t, ngx_str_t, NGX_ERROR, NGX_OK,
};
use ngx::core::Pool;

/// Sends a complete response whose body is in memory.
///
/// # Safety
/// `r` must be a valid request whose response has not been sent; `body` must outlive it
/// (static, or in `r->pool`).
pub(crate) unsafe fn send_memory(
    r: *mut ngx_http_request_t,
    status: usize,
    content_type: ngx_str_t,
    body: &[u8],
) -> ngx_int_t {
    // SAFETY: r is valid for the duration of the call.
    let req = unsafe { &mut *r };
    req.headers_out.status = status;
    req.headers_out.content_type = content_type;
    req.headers_out.content_type_len = content_type.len;
    req.headers_out.content_type_lowcase = core::ptr::null_mut();
    req.headers_out.content_length_n = body.len() as _;
    // SAFETY: the request's pool.
    let pool = unsafe { Pool::from_ngx_pool(req.pool) };
    // SAFETY: headers are complete.
    let rc = unsafe { ngx_http_send_header(r) };
    if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || req.header_only() != 0 {
        return rc;
    }
    let b = pool.calloc_type::<ngx_buf_t>();
    if b.is_null() {
        return NGX_ERROR as ngx_int_t;
    }
    // SAFETY: b is a zeroed buffer we own over bytes that outlive the request; nginx only
    // reads memory buffers.
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
