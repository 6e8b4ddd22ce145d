//! Following a DNS name at run time (`redis=host:port`, or the host name a Sentinel names,
//! with the http block's `resolver`): each worker asks nginx's resolver every second, which
//! answers from its cache until the record's TTL (or the resolver's `valid=`) runs out, as
//! `upstream ... resolve` does. A new answer replaces the worker's data servers; connections
//! to the old address are replaced once nothing is in flight on them.

use core::ffi::c_void;
use core::ptr;

use nginx_sys::{
    ngx_add_timer, ngx_cycle, ngx_event_t, ngx_resolve_name, ngx_resolve_name_done,
    ngx_resolve_start, ngx_resolver_ctx_t, ngx_resolver_t, ngx_str_t, NGX_LOG_NOTICE, NGX_LOG_WARN,
    NGX_OK,
};

use super::peer::Peer;
use super::Fleet;

/// How often the resolver is asked (its cache answers until the TTL runs out).
const EVERY_MS: usize = 1000;

/// The http block's `resolver` and `resolver_timeout`.
#[derive(Clone, Copy)]
pub(crate) struct Resolver {
    pub(crate) resolver: *mut ngx_resolver_t,
    pub(crate) timeout_ms: usize,
}

/// The name to follow, and the resolver of the http block.
pub(crate) struct Name {
    pub(crate) resolver: Resolver,
    pub(crate) host: String,
    pub(crate) port: u16,
}

/// One worker's resolution of one name.
pub(crate) struct Watch {
    fleet: &'static Fleet,
    resolver: Resolver,
    /// The host name, NUL-free, for the resolver (which keeps a pointer while it works).
    host: Box<[u8]>,
    port: u16,
    ctx: *mut ngx_resolver_ctx_t,
    timer: ngx_event_t,
    stopped: bool,
    /// The last failure was logged (one line until an answer comes again).
    failing: bool,
}

impl Watch {
    /// Starts resolving `name` (worker start, or a Sentinel's answer).
    pub(crate) fn start(fleet: &'static Fleet, name: &Name) -> Box<Watch> {
        let mut watch = Box::new(Watch {
            fleet,
            resolver: name.resolver,
            host: name.host.as_bytes().into(),
            port: name.port,
            ctx: ptr::null_mut(),
            // SAFETY: an all-zero event is its initial state; set up below.
            timer: unsafe { core::mem::zeroed() },
            stopped: false,
            failing: false,
        });
        watch.timer.handler = Some(on_timer);
        watch.timer.data = &mut *watch as *mut Watch as *mut c_void;
        // SAFETY: the cycle log is valid in a worker.
        watch.timer.log = unsafe { (*ngx_cycle).log };
        watch.timer.set_cancelable(1);
        watch.ask();
        watch
    }

    /// Whether this watch follows `host:port`.
    pub(crate) fn follows(&self, host: &str, port: u16) -> bool {
        *self.host == *host.as_bytes() && self.port == port
    }

    fn ask(&mut self) {
        if self.stopped || !self.ctx.is_null() {
            return;
        }
        // SAFETY: the resolver lives for the cycle; a NULL temp asks for a new context.
        let ctx = unsafe { ngx_resolve_start(self.resolver.resolver, ptr::null_mut()) };
        // NGX_NO_RESOLVER is (void *) -1.
        if ctx.is_null() || ctx as isize == -1 {
            return self.again();
        }
        // SAFETY: ctx is a fresh context; the name and this watch outlive the resolution
        // (it is ended in `resolved` or at shutdown).
        unsafe {
            (*ctx).name = ngx_str_t {
                len: self.host.len(),
                data: self.host.as_ptr() as *mut u8,
            };
            (*ctx).handler = Some(on_resolved);
            (*ctx).data = self as *mut Watch as *mut c_void;
            (*ctx).timeout = self.resolver.timeout_ms;
        }
        self.ctx = ctx;
        // SAFETY: ctx is filled; the handler may run before this returns (a cached name).
        if unsafe { ngx_resolve_name(ctx) } != NGX_OK as isize {
            // The context was freed by the resolver on error.
            self.ctx = ptr::null_mut();
            self.again();
        }
    }

    /// The resolver answered (or failed): the servers follow the answer.
    fn resolved(&mut self, ctx: *mut ngx_resolver_ctx_t) {
        // SAFETY: ctx is the live context of this resolution, until `ngx_resolve_name_done`.
        let (state, addrs) = unsafe {
            let list = if (*ctx).addrs.is_null() {
                &[][..]
            } else {
                core::slice::from_raw_parts((*ctx).addrs, (*ctx).naddrs)
            };
            ((*ctx).state, list)
        };
        let port = self.port;
        let host = String::from_utf8_lossy(&self.host).into_owned();
        let peers: Vec<Peer> = if state == 0 {
            // SAFETY: each address is a socket address the resolver made.
            addrs
                .iter()
                .filter_map(|a| unsafe { Peer::copy(a.sockaddr, a.socklen, "") })
                .map(|p| p.with_port(port))
                .collect()
        } else {
            Vec::new()
        };
        // SAFETY: done with the context and its addresses.
        unsafe { ngx_resolve_name_done(ctx) };
        self.ctx = ptr::null_mut();
        if peers.is_empty() {
            if !self.failing {
                self.failing = true;
                let msg = format!("cannot resolve \"{host}\" (resolver state {state}): keeping the last addresses");
                self.fleet.log(NGX_LOG_WARN as usize, &msg);
            }
            return self.again();
        }
        self.failing = false;
        let names: Vec<String> = peers.iter().map(|p| p.name().to_string()).collect();
        if self.fleet.servers.replace(peers) {
            self.fleet.moved();
            let msg = format!("\"{host}\" resolves to {}", names.join(", "));
            self.fleet.log(NGX_LOG_NOTICE as usize, &msg);
        }
        self.again();
    }

    fn again(&mut self) {
        if self.stopped {
            return;
        }
        // SAFETY: the timer lives in this boxed watch.
        unsafe { ngx_add_timer(&mut self.timer, EVERY_MS) };
    }

    /// Worker exit: the timer and a resolution in flight go.
    pub(crate) fn shutdown(&mut self) {
        self.stopped = true;
        if self.timer.timer_set() != 0 {
            // SAFETY: the timer is in the tree.
            unsafe { nginx_sys::ngx_del_timer(&mut self.timer) };
        }
        let ctx = core::mem::replace(&mut self.ctx, ptr::null_mut());
        if !ctx.is_null() {
            // SAFETY: a resolution in flight is ended (its handler will not run).
            unsafe { ngx_resolve_name_done(ctx) };
        }
    }
}

unsafe extern "C" fn on_resolved(ctx: *mut ngx_resolver_ctx_t) {
    // SAFETY: data is the boxed watch that started this resolution.
    let watch = unsafe { &mut *((*ctx).data as *mut Watch) };
    watch.resolved(ctx);
}

unsafe extern "C" fn on_timer(ev: *mut ngx_event_t) {
    // SAFETY: data is the boxed watch that armed the timer.
    let watch = unsafe { &mut *((*ev).data as *mut Watch) };
    watch.ask();
}
