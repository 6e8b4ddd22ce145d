//! The introspection subrequest: start it, collect its body, record its result.
//!
//! The subrequest is an in-memory POST with its own body (`token=<url-encoded>`) and its own
//! fresh header list, so nothing of the client's request (body, framing, cookies, headers)
//! reaches the identity server. Its response body is collected by a body filter that sits
//! below the copy filter and above the postpone filter, so JWTs of any size up to
//! [`MAX_RESPONSE`] work without tuning `subrequest_output_buffer_size`.

use core::ffi::c_void;
use core::ptr;

use nginx_sys::{
    ngx_alloc_chain_link, ngx_buf_t, ngx_chain_t, ngx_http_output_body_filter_pt,
    ngx_http_post_subrequest_t, ngx_http_request_body_t, ngx_http_request_t, ngx_http_subrequest,
    ngx_http_top_body_filter, ngx_int_t, ngx_list_init, ngx_str_t, ngx_table_elt_t, NGX_ERROR,
    NGX_HTTP_POST, NGX_HTTP_SUBREQUEST_IN_MEMORY, NGX_HTTP_SUBREQUEST_WAITED, NGX_OK,
};
use ngx::core::Pool;
use ngx::http::HttpModule;
use ngx::ngx_string;
use phantom_core::introspection::Format;
use phantom_core::{form, trace};

use crate::glue::headers;
use crate::Module;

/// Largest introspection response body accepted; larger ones fail with 502.
pub(crate) const MAX_RESPONSE: usize = 256 * 1024;

/// What the identity server answered, recorded by the post-subrequest handler.
#[derive(Default)]
pub(crate) struct Reply {
    pub(crate) done: bool,
    /// HTTP status of the subrequest (0 when nginx could not produce one).
    pub(crate) status: usize,
    /// Whether the upstream (identity server) itself sent a status line.
    pub(crate) from_upstream: bool,
    /// The subrequest failed after it started (connection closed mid-body, read error).
    pub(crate) broken: bool,
    /// Bytes received from the identity server (0: refused, timed out or closed at once).
    pub(crate) received: u64,
    pub(crate) body: Vec<u8>,
    pub(crate) too_large: bool,
    pub(crate) max_age: Option<u64>,
    pub(crate) retry_after: Option<u64>,
    pub(crate) content_type: Vec<u8>,
    /// `exp` of the granted JWT, recorded when the handler decides (for the cache lifetime).
    pub(crate) exp: i64,
}

/// Starts the introspection subrequest for `token`; the parent resumes when it is done.
///
/// # Safety
/// `r` must be a valid main request and `reply` a slot that lives as long as it (in its
/// context, in `r->pool`): the subrequest's status, headers and body are written there.
pub(crate) unsafe fn start(
    r: *mut ngx_http_request_t,
    endpoint: ngx_str_t,
    format: &Format,
    token: &[u8],
    reply: *mut Reply,
) -> Result<(), ()> {
    // SAFETY: r is valid; its pool outlives the subrequest (sr->pool == r->pool).
    let pool = unsafe { Pool::from_ngx_pool((*r).pool) };
    let ps = pool.calloc_type::<ngx_http_post_subrequest_t>();
    if ps.is_null() {
        return Err(());
    }
    // SAFETY: ps is zeroed and ours.
    unsafe {
        (*ps).handler = Some(subrequest_done);
        (*ps).data = reply as *mut c_void;
    }
    let mut uri = endpoint;
    let mut sr: *mut ngx_http_request_t = ptr::null_mut();
    let flags = (NGX_HTTP_SUBREQUEST_IN_MEMORY | NGX_HTTP_SUBREQUEST_WAITED) as usize;
    // SAFETY: all pointers are valid; nginx copies `uri` into the subrequest.
    let rc = unsafe { ngx_http_subrequest(r, &mut uri, ptr::null_mut(), &mut sr, ps, flags) };
    if rc != NGX_OK as ngx_int_t || sr.is_null() {
        return Err(());
    }
    // SAFETY: r's header list is valid; the values live in its memory.
    let trace = unsafe { trace_context(r) };
    // SAFETY: sr is the fresh subrequest; its ctx array is zeroed by nginx. Our slot of a
    // subrequest holds the reply slot (the body filter finds it there), never a context.
    unsafe {
        *(*sr).ctx.add(Module::module().ctx_index) = reply as *mut c_void;
        prepare(&mut *sr, &pool, format.media_type().as_bytes(), token)?;
        let list = &mut (*sr).headers_in.headers as *mut _;
        for (name, value) in trace.into_iter().flatten() {
            headers::push(list, pool.as_ptr(), name, value).ok_or(())?;
        }
    }
    Ok(())
}

/// The client's W3C trace context, when well formed, so the identity server's spans join
/// the trace; `tracestate` only travels with a valid `traceparent`.
unsafe fn trace_context<'a>(r: *mut ngx_http_request_t) -> [Option<(&'static [u8], &'a [u8])>; 2] {
    // SAFETY: r is valid; its header list outlives the subrequest.
    let list = unsafe { &(*r).headers_in.headers as *const _ };
    // SAFETY: as above.
    let parent = unsafe { headers::values(list, b"traceparent") }.next();
    let Some(parent) = parent.filter(|v| trace::traceparent_ok(v)) else {
        return [None, None];
    };
    // SAFETY: as above; several tracestate lines would need joining, so only one is taken.
    let mut states = unsafe { headers::values(list, b"tracestate") };
    let state = match (states.next(), states.next()) {
        (Some(s), None) if trace::tracestate_ok(s) => Some((&b"tracestate"[..], s)),
        _ => None,
    };
    [Some((&b"traceparent"[..], parent)), state]
}

/// Gives the subrequest its own POST body and a fresh header list.
///
/// # Safety
/// `sr` must be a subrequest just created from a request whose pool is `pool`.
unsafe fn prepare(
    sr: &mut ngx_http_request_t,
    pool: &Pool,
    accept: &[u8],
    token: &[u8],
) -> Result<(), ()> {
    let len = 6 + form::encoded_len(token);
    let fill = |buf: &mut [u8]| {
        let (name, value) = buf.split_at_mut(6);
        name.copy_from_slice(b"token=");
        form::encode_into(value, token);
    };
    // SAFETY: nginx structures zeroed by calloc are their documented initial state.
    unsafe {
        let rb = pool.calloc_type::<ngx_http_request_body_t>();
        let b = pool.calloc_type::<ngx_buf_t>();
        let data = headers::pool_build(pool.as_ptr(), len, fill).ok_or(())?;
        let cl = ngx_alloc_chain_link(pool.as_ptr());
        if rb.is_null() || b.is_null() || cl.is_null() {
            return Err(());
        }
        (*b).start = data.data;
        (*b).pos = data.data;
        (*b).last = data.data.add(data.len);
        (*b).end = (*b).last;
        (*b).set_temporary(1);
        (*b).set_last_buf(1);
        (*b).set_last_in_chain(1);
        (*cl).buf = b;
        (*cl).next = ptr::null_mut();
        (*rb).bufs = cl;
        (*rb).buf = b;
        sr.request_body = rb;

        // A fresh header list: the copy nginx made shares the client's headers.
        sr.headers_in = core::mem::zeroed();
        let size = core::mem::size_of::<ngx_table_elt_t>();
        if ngx_list_init(&mut sr.headers_in.headers, pool.as_ptr(), 4, size) != NGX_OK as ngx_int_t
        {
            return Err(());
        }
        sr.headers_in.content_length_n = data.len as _;
        sr.headers_in.keep_alive_n = -1;
        let list = &mut sr.headers_in.headers as *mut _;
        let ct = b"application/x-www-form-urlencoded";
        sr.headers_in.content_type =
            headers::push(list, pool.as_ptr(), b"Content-Type", ct).ok_or(())?;
        headers::push(list, pool.as_ptr(), b"Accept", accept).ok_or(())?;

        sr.method = NGX_HTTP_POST as _;
        sr.method_name = ngx_string!("POST");
    }
    Ok(())
}

/// Post-subrequest handler: records status, caching headers and completion.
///
/// nginx may call it twice (first with the upstream error, then after generating an error
/// page), so only the first call counts.
unsafe extern "C" fn subrequest_done(
    sr: *mut ngx_http_request_t,
    data: *mut c_void,
    rc: ngx_int_t,
) -> ngx_int_t {
    // SAFETY: data is the reply slot passed to `start`, alive for the main request's life.
    let reply = unsafe { &mut *(data as *mut Reply) };
    if reply.done {
        return rc;
    }
    reply.done = true;
    // SAFETY: sr is the finished subrequest; its upstream and headers live in r->pool.
    let sr = unsafe { &*sr };
    let status = sr.headers_out.status;
    reply.broken = rc == NGX_ERROR as ngx_int_t;
    reply.status = if rc >= 100 {
        rc as usize
    } else if status != 0 {
        status
    } else {
        502
    };
    // SAFETY: sr.upstream is NULL or the proxy's upstream state.
    reply.from_upstream = unsafe { sr.upstream.as_ref() }
        .is_some_and(|u| u.headers_in.status_n != 0)
        && (0..100).contains(&rc);
    // SAFETY: u->state is NULL or the upstream's state in the request pool.
    reply.received = unsafe { sr.upstream.as_ref().and_then(|u| u.state.as_ref()) }
        .map_or(0, |s| s.bytes_received as u64);
    reply.content_type = sr.headers_out.content_type.as_bytes().to_vec();
    // SAFETY: headers_out.headers is the subrequest's initialised output list.
    let list = &sr.headers_out.headers as *const _;
    // SAFETY: as above.
    for v in unsafe { headers::values(list, b"cache-control") } {
        let this = phantom_core::cache_control::max_age(v);
        reply.max_age = phantom_core::cache_control::combine(reply.max_age, this);
    }
    // SAFETY: as above.
    reply.retry_after = unsafe { headers::values(list, b"retry-after") }
        .next()
        .and_then(|v| core::str::from_utf8(v).ok()?.trim().parse().ok());
    // An upstream that fails after its headers (e.g. closes mid-body) finalizes with
    // NGX_ERROR, which would terminate the client's request; the parent answers 502 instead.
    // SAFETY: the subrequest shares the client connection, valid here.
    if reply.broken && unsafe { (*sr.connection).error() } == 0 {
        return NGX_OK as ngx_int_t;
    }
    rc
}

static mut NEXT_BODY_FILTER: ngx_http_output_body_filter_pt = None;

/// Installs the body filter (called from postconfiguration).
pub(crate) fn register_body_filter() {
    // SAFETY: filter registration happens single-threaded at configuration time.
    unsafe {
        NEXT_BODY_FILTER = ngx_http_top_body_filter;
        ngx_http_top_body_filter = Some(body_filter);
    }
}

/// Collects the body of our introspection subrequests; passes everything else on.
unsafe extern "C" fn body_filter(r: *mut ngx_http_request_t, input: *mut ngx_chain_t) -> ngx_int_t {
    // SAFETY: nginx calls body filters with a valid request.
    let req = unsafe { &*r };
    let ours = if ptr::eq(req.main, r) {
        ptr::null_mut()
    } else {
        // SAFETY: r->ctx has a slot per module; in a subrequest ours holds a reply slot,
        // only for our introspection subrequests.
        unsafe { *req.ctx.add(Module::module().ctx_index) as *mut Reply }
    };
    if ours.is_null() {
        // SAFETY: the saved next filter is set whenever this filter is installed.
        return match unsafe { NEXT_BODY_FILTER } {
            // SAFETY: the next filter takes the same valid request and chain.
            Some(next) => unsafe { next(r, input) },
            None => NGX_OK as ngx_int_t,
        };
    }
    // SAFETY: ours is the live reply slot in the main request's context.
    let reply = unsafe { &mut *ours };
    let mut cl = input;
    while !cl.is_null() {
        // SAFETY: cl walks a valid chain of valid buffers.
        unsafe {
            let b = &mut *(*cl).buf;
            collect(reply, b);
            cl = (*cl).next;
        }
    }
    NGX_OK as ngx_int_t
}

/// Appends a buffer's bytes to the reply (bounded) and marks the buffer consumed.
fn collect(reply: &mut Reply, b: &mut ngx_buf_t) {
    let in_memory = b.temporary() != 0 || b.memory() != 0 || b.mmap() != 0;
    if in_memory && !b.pos.is_null() && b.last > b.pos {
        // SAFETY: pos..last is the buffer's readable data.
        let bytes =
            unsafe { core::slice::from_raw_parts(b.pos, b.last.offset_from(b.pos) as usize) };
        if !reply.done && !reply.too_large {
            if reply.body.len() + bytes.len() > MAX_RESPONSE {
                reply.too_large = true;
                reply.body = Vec::new();
            } else {
                reply.body.extend_from_slice(bytes);
            }
        }
        b.pos = b.last;
    }
    if b.in_file() != 0 {
        b.file_pos = b.file_last;
    }
}
