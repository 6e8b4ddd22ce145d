//! One Redis connection owned by a worker, driven by nginx's events (no thread, no blocking).
//!
//! Commands are pipelined: each submitted operation is a slot in a FIFO, answered in order.
//! Any timeout, EOF, protocol error or unexpected byte closes the connection and fails every
//! slot: a late reply must never answer the next command. The next submit reconnects, to the
//! next address after a failed connect.
//!
//! One file on purpose (as nginx keeps an upstream protocol in one file): the connection's
//! states, from connect to send, receive, parse and fail, read top to bottom.

use core::ffi::c_void;
use core::ptr;
use std::collections::VecDeque;

use nginx_sys::{
    ngx_close_connection, ngx_connection_log_error_e_NGX_ERROR_INFO, ngx_connection_t,
    ngx_current_msec, ngx_cycle, ngx_del_timer, ngx_event_connect_peer, ngx_event_get_peer,
    ngx_event_t, ngx_handle_read_event, ngx_handle_write_event, ngx_log_t, ngx_msec_t,
    ngx_peer_connection_t, NGX_AGAIN, NGX_ERROR, NGX_LOG_CRIT, NGX_OK,
};
use nginx_sys::{ngx_create_pool, ngx_destroy_pool, ngx_pool_t, SSL_SESSION};
use phantom_core::fleet::errors::ErrorClass;
use phantom_core::fleet::resp::{self, Limits, Reply};
use phantom_core::fleet::role::{role_of, Role};

use super::tls::{self, Handshake, TlsError};
use super::waiters::{self, Value};
use super::{Addr, Fleet};

/// Most operations in flight on one connection; past it a submit fails (a miss, no wait).
const MAX_SLOTS: usize = 1024;

/// Most bytes of one incomplete reply (a reply bigger than this is a protocol error).
const MAX_INBUF: usize = 512 * 1024;

/// Why a connection failed, for the breaker's log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    Connect,
    Timeout,
    Closed,
    Protocol,
    Auth,
    /// The server cannot serve us now (`READONLY`, `MASTERDOWN`, `LOADING`).
    Role,
    /// TLS: the handshake or the certificate check failed.
    Tls(TlsError),
}

impl Failure {
    /// Why, in a log line.
    pub(crate) fn describe(self) -> String {
        match self {
            Failure::Tls(e) => e.describe(),
            other => other.as_str().into(),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Failure::Connect => "connection failed",
            Failure::Timeout => "timed out",
            Failure::Closed => "connection closed",
            Failure::Protocol => "invalid reply",
            Failure::Auth => "authentication failed",
            Failure::Role => "not a writable primary",
            Failure::Tls(_) => "TLS failed",
        }
    }
}

struct Slot {
    replies: usize,
    got: Vec<Value>,
    waiter: u64,
    deadline: ngx_msec_t,
    /// What the slot is for.
    step: Step,
}

/// A slot's part in the conversation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    /// A request's (or nobody's) commands.
    Command,
    /// The handshake's `AUTH`: an error reply fails the connection.
    Auth,
    /// The handshake's `ROLE`: a replica is passed over for the next address.
    Role,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Closed,
    Connecting,
    /// Connected; the TLS handshake runs.
    Tls,
    Ready,
}

/// A connection at a stable address (boxed; nginx's events point at it).
pub(crate) struct Conn {
    pc: ngx_peer_connection_t,
    /// The cycle log with a raised level: nginx's own per-connection errors stay quiet; the
    /// breaker logs state changes instead.
    log: ngx_log_t,
    /// The owner's addresses; the owner lives in the configuration, for the whole cycle.
    addrs: *const Vec<Addr>,
    addr: usize,
    timeout_ms: ngx_msec_t,
    auth: Option<Vec<u8>>,
    owner: *const Fleet,
    out: Vec<u8>,
    sent: usize,
    /// Commands held back until the server accepted `AUTH` (a failed login must not let
    /// them run as the default user).
    held: Vec<u8>,
    handshaking: bool,
    inbuf: Vec<u8>,
    slots: VecDeque<Slot>,
    state: State,
    /// A reader connection waits in a blocking command: its timers must not hold a worker
    /// that is shutting down.
    cancelable: bool,
    /// Writes what the requests of one event loop iteration queued, in one `send`.
    flush_ev: ngx_event_t,
    /// The pool TLS allocates from while the connection lives (peer connections have none).
    tls_pool: *mut ngx_pool_t,
    /// The last TLS session, resumed by the next connection.
    session: *mut SSL_SESSION,
    /// Addresses passed over in a row because they were not the primary.
    hops: usize,
    /// The connection was replaced while its replies were read: the reader stops.
    replaced: bool,
}

impl Conn {
    pub(crate) fn new(
        addrs: *const Vec<Addr>,
        timeout_ms: u64,
        auth: Option<Vec<u8>>,
        owner: *const Fleet,
    ) -> Box<Conn> {
        Box::new(Conn {
            // SAFETY: an all-zero peer connection is its documented initial state.
            pc: unsafe { core::mem::zeroed() },
            // SAFETY: filled from the cycle log before use.
            log: unsafe { core::mem::zeroed() },
            addrs,
            addr: 0,
            timeout_ms: timeout_ms as ngx_msec_t,
            auth,
            owner,
            out: Vec::new(),
            sent: 0,
            held: Vec::new(),
            handshaking: false,
            inbuf: Vec::new(),
            slots: VecDeque::new(),
            state: State::Closed,
            cancelable: false,
            // SAFETY: an all-zero event is its initial state; set up in `post_flush`.
            flush_ev: unsafe { core::mem::zeroed() },
            tls_pool: ptr::null_mut(),
            session: ptr::null_mut(),
            hops: 0,
            replaced: false,
        })
    }

    pub(crate) fn set_cancelable(&mut self) {
        self.cancelable = true;
    }

    /// Queues `cmds` (already RESP-encoded) expecting `replies` replies for `waiter` (0 =
    /// nobody waits), to be answered within `extra_ms` plus the timeout. `false`: not sent
    /// (cannot connect, or too many in flight); the waiter is not called.
    pub(crate) fn submit(
        &mut self,
        cmds: &[u8],
        replies: usize,
        waiter: u64,
        extra_ms: u64,
    ) -> bool {
        if self.slots.len() >= MAX_SLOTS {
            return false;
        }
        if self.state == State::Closed && !self.connect() {
            return false;
        }
        // SAFETY: reading nginx's cached clock.
        let now = unsafe { ngx_current_msec };
        self.slots.push_back(Slot {
            replies,
            got: Vec::with_capacity(replies),
            waiter,
            deadline: now + self.timeout_ms + extra_ms as ngx_msec_t,
            step: Step::Command,
        });
        if self.handshaking {
            self.held.extend_from_slice(cmds);
        } else {
            self.out.extend_from_slice(cmds);
        }
        self.arm_read_timer();
        if self.state == State::Ready {
            // SAFETY: a ready connection is live. A reader stays idle: nginx closes it at
            // shutdown instead of waiting for its blocking read.
            unsafe { self.set_idle(self.cancelable) };
            self.post_flush();
        }
        true
    }

    /// Sends at the end of this event loop iteration: the commands of every request that
    /// runs in it go out in one write (and their replies tend to come back in one read).
    fn post_flush(&mut self) {
        if self.flush_ev.handler.is_none() {
            self.flush_ev.handler = Some(on_flush);
            // SAFETY: the cycle log is valid in a worker.
            self.flush_ev.log = unsafe { (*ngx_cycle).log };
        }
        self.flush_ev.data = self as *mut Conn as *mut c_void;
        // SAFETY: the event lives in this boxed Conn; it is removed from the queue when the
        // connection closes. Posting twice is a no-op.
        unsafe {
            nginx_sys::ngx_post_event(&mut self.flush_ev, &raw mut nginx_sys::ngx_posted_events)
        };
    }

    /// Starts a connection to the current address; `false` if it failed at once.
    fn connect(&mut self) -> bool {
        self.replaced = false;
        // SAFETY: the owner's addresses live as long as the configuration.
        let addrs = unsafe { &*self.addrs };
        let Some(addr) = addrs.get(self.addr % addrs.len().max(1)) else {
            return false;
        };
        // SAFETY: the cycle log outlives the worker; we copy it and raise its level.
        unsafe {
            self.log = *(*ngx_cycle).log;
        }
        self.log.log_level = NGX_LOG_CRIT as usize;
        // SAFETY: zeroed is the initial state; the fields set below are what nginx reads.
        self.pc = unsafe { core::mem::zeroed() };
        self.pc.sockaddr = addr.sockaddr;
        self.pc.socklen = addr.socklen;
        self.pc.name = &addr.name as *const _ as *mut _;
        self.pc.get = Some(ngx_event_get_peer);
        self.pc.log = &mut self.log;
        self.pc
            .set_log_error(ngx_connection_log_error_e_NGX_ERROR_INFO);
        // SAFETY: pc is filled as ngx_event_connect_peer requires; on success it owns a
        // connection whose events we route to this (boxed, never moved) Conn.
        let rc = unsafe { ngx_event_connect_peer(&mut self.pc) };
        if rc != NGX_OK as isize && rc != NGX_AGAIN as isize {
            // Failover: the next address is tried on the next submit.
            self.addr += 1;
            self.report(Failure::Connect);
            return false;
        }
        let c = self.pc.connection;
        // SAFETY: c is the live connection just made.
        unsafe {
            (*c).data = self as *mut Conn as *mut c_void;
            (*(*c).read).handler = Some(on_read);
            (*(*c).write).handler = Some(on_write);
            (*c).log = &mut self.log;
            (*(*c).read).log = &mut self.log;
            (*(*c).write).log = &mut self.log;
        }
        self.out.clear();
        self.sent = 0;
        self.inbuf.clear();
        self.held.clear();
        // The handshake: AUTH (with credentials), then ROLE; commands wait behind it.
        self.handshaking = true;
        // SAFETY: reading nginx's cached clock.
        let now = unsafe { ngx_current_msec };
        let auth = self.auth.clone();
        for (cmd, step) in [(auth, Step::Auth), (Some(role_command()), Step::Role)] {
            let Some(cmd) = cmd else { continue };
            self.out.extend_from_slice(&cmd);
            self.slots.push_back(Slot {
                replies: 1,
                got: Vec::new(),
                waiter: 0,
                deadline: now + self.timeout_ms,
                step,
            });
        }
        if rc == NGX_AGAIN as isize {
            self.state = State::Connecting;
            // SAFETY: c is live; the timer is removed when the connection closes.
            unsafe { nginx_sys::ngx_add_timer((*c).write, self.timeout_ms) };
            return true;
        }
        self.established();
        self.state != State::Closed
    }

    /// The socket is connected: with `redis_ssl`, TLS starts; else the connection is ready.
    fn established(&mut self) {
        // SAFETY: the owner outlives its connections.
        let Some(tls) = (unsafe { (*self.owner).tls.as_ref() }) else {
            self.state = State::Ready;
            return;
        };
        let c = self.pc.connection;
        // SAFETY: c is live; TLS allocates from a pool of the connection's own, destroyed
        // after the connection closes.
        unsafe {
            self.tls_pool = ngx_create_pool(4096, &mut self.log);
            if self.tls_pool.is_null() {
                return self.fail(Failure::Tls(TlsError::Handshake));
            }
            (*c).pool = self.tls_pool;
        }
        let host = phantom_core::fleet::addr::host_of(self.addr_name()).to_string();
        self.state = State::Tls;
        // SAFETY: c is live and has no TLS yet.
        let started = unsafe { tls::start(c, tls, &host, self.session) };
        self.handshake_went(started);
    }

    /// Acts on a handshake's progress: wait for nginx's callback, fail, or go on.
    fn handshake_went(&mut self, how: Result<Handshake, TlsError>) {
        let c = self.pc.connection;
        match how {
            Ok(Handshake::Again) => {
                // SAFETY: c is live with TLS; nginx calls the handler when the handshake ends
                // (or times out: the read timer below).
                unsafe {
                    (*(*c).ssl).handler = Some(on_tls_done);
                    nginx_sys::ngx_add_timer((*c).read, self.timeout_ms);
                }
            }
            Err(e) => self.fail(Failure::Tls(e)),
            Ok(Handshake::Done) => {
                // SAFETY: c is live; its handshake is done. The events come back to us.
                unsafe {
                    self.session = tls::keep_session(c, self.session);
                    (*(*c).read).handler = Some(on_read);
                    (*(*c).write).handler = Some(on_write);
                    if (*(*c).read).timer_set() != 0 {
                        ngx_del_timer((*c).read);
                    }
                }
                self.state = State::Ready;
                self.arm_read_timer();
                self.flush();
            }
        }
    }

    /// nginx's SSL layer is done with the handshake (or it timed out).
    fn tls_done(&mut self) {
        let c = self.pc.connection;
        // SAFETY: nginx calls this with our live connection.
        let (timedout, handshaked) = unsafe {
            (
                (*(*c).read).timedout() != 0 || (*(*c).write).timedout() != 0,
                (*(*c).ssl).handshaked() != 0,
            )
        };
        if timedout {
            return self.fail(Failure::Tls(TlsError::Timeout));
        }
        if !handshaked {
            return self.fail(Failure::Tls(TlsError::Handshake));
        }
        // SAFETY: the owner outlives its connections; TLS was configured to get here.
        let Some(tls) = (unsafe { (*self.owner).tls.as_ref() }) else {
            return self.fail(Failure::Tls(TlsError::Handshake));
        };
        // SAFETY: c is live; the handshake finished, so this only checks the certificate.
        let how = unsafe { tls::handshake(c, tls) };
        self.handshake_went(how);
    }

    /// The address this connection talks to, for log lines.
    fn addr_name(&self) -> &str {
        // SAFETY: the owner's addresses live as long as the configuration.
        let addrs = unsafe { &*self.addrs };
        addrs
            .get(self.addr % addrs.len().max(1))
            .and_then(|a| core::str::from_utf8(a.name.as_bytes()).ok())
            .unwrap_or("")
    }

    /// (Re)arms the read timer for the oldest slot's deadline.
    fn arm_read_timer(&mut self) {
        let c = self.pc.connection;
        if c.is_null() || self.state == State::Closed {
            return;
        }
        // SAFETY: c is live while the state is not Closed.
        let rev = unsafe { (*c).read };
        let Some(front) = self.slots.front() else {
            // SAFETY: rev is the live connection's read event.
            unsafe {
                if (*rev).timer_set() != 0 {
                    ngx_del_timer(rev);
                }
            }
            return;
        };
        // SAFETY: as above; re-adding a set timer moves it.
        unsafe {
            let now = ngx_current_msec;
            let left = front.deadline.saturating_sub(now).max(1);
            nginx_sys::ngx_add_timer(rev, left);
            (*rev).set_cancelable(u32::from(self.cancelable));
        }
    }

    /// Marks the connection idle (closed by nginx when the worker shuts down) or busy.
    ///
    /// # Safety
    /// The connection must be live.
    unsafe fn set_idle(&mut self, idle: bool) {
        // SAFETY: per contract.
        unsafe { (*self.pc.connection).set_idle(u32::from(idle)) };
    }

    fn flush(&mut self) {
        let c = self.pc.connection;
        if c.is_null() || self.state != State::Ready {
            return;
        }
        while self.sent < self.out.len() {
            let rest = &self.out[self.sent..];
            // SAFETY: c is live and ready; send writes from our buffer.
            let n = unsafe {
                ((*c).send.unwrap_or(fail_send))(c, rest.as_ptr() as *mut u8, rest.len())
            };
            if n > 0 {
                self.sent += n as usize;
                continue;
            }
            if n == NGX_AGAIN as isize {
                // SAFETY: c is live.
                if unsafe { ngx_handle_write_event((*c).write, 0) } != NGX_OK as isize {
                    return self.fail(Failure::Closed);
                }
                return;
            }
            return self.fail(Failure::Closed);
        }
        self.out.clear();
        self.sent = 0;
    }

    fn on_write(&mut self, ev: *mut ngx_event_t) {
        // SAFETY: ev is our connection's live write event.
        let timedout = unsafe { (*ev).timedout() } != 0;
        if self.state == State::Connecting {
            if timedout {
                self.addr += 1;
                return self.fail(Failure::Connect);
            }
            // SAFETY: the connect finished: the socket error tells how.
            if unsafe { (*ev).timer_set() } != 0 {
                // SAFETY: the timer is in the tree (just checked).
                unsafe { ngx_del_timer(ev) };
            }
            if !self.connected() {
                self.addr += 1;
                return self.fail(Failure::Connect);
            }
            self.established();
        }
        if self.state == State::Ready {
            self.flush();
        }
    }

    /// Whether a non-blocking connect succeeded (`SO_ERROR` is 0).
    fn connected(&self) -> bool {
        let mut err: libc::c_int = 0;
        let mut len = core::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: fd is the live connection's socket; err/len are valid out-parameters.
        let rc = unsafe {
            libc::getsockopt(
                (*self.pc.connection).fd,
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                &mut err as *mut _ as *mut c_void,
                &mut len,
            )
        };
        rc == 0 && err == 0
    }

    /// Reads and parses; returns the completed waiters for the caller to run once this
    /// connection is no longer borrowed.
    fn on_read(&mut self, ev: *mut ngx_event_t) -> Vec<(u64, Result<Vec<Value>, ()>)> {
        let c = self.pc.connection;
        // SAFETY: c and ev are live.
        let (closing, timedout) = unsafe { ((*c).close() != 0, (*ev).timedout() != 0) };
        if closing {
            return self.fail_collect(None);
        }
        if self.state == State::Connecting {
            // An error event before the connect completed (refused, reset): the next
            // attempt goes to the next address.
            self.addr += 1;
            return self.fail_collect(Some(Failure::Connect));
        }
        if timedout {
            return self.fail_collect(Some(Failure::Timeout));
        }
        let mut buf = [0u8; 16384];
        let mut done = Vec::new();
        loop {
            // SAFETY: c is live; recv writes into our stack buffer.
            let n = unsafe { ((*c).recv.unwrap_or(fail_recv))(c, buf.as_mut_ptr(), buf.len()) };
            if n > 0 {
                // Replies are taken as they arrive: the limit is on one incomplete reply,
                // never on a burst of complete ones.
                self.inbuf.extend_from_slice(&buf[..n as usize]);
                done.extend(self.parse());
                if self.state == State::Closed || core::mem::take(&mut self.replaced) {
                    return done;
                }
                if self.inbuf.len() > MAX_INBUF {
                    done.extend(self.fail_collect(Some(Failure::Protocol)));
                    return done;
                }
                continue;
            }
            if n == NGX_AGAIN as isize {
                break;
            }
            // 0 is EOF; NGX_ERROR a socket error: what came before was parsed.
            done.extend(self.fail_collect(Some(Failure::Closed)));
            return done;
        }
        if self.sent < self.out.len() {
            // Commands released by the handshake.
            self.flush();
            if self.state == State::Closed {
                return done;
            }
        }
        // SAFETY: c is live.
        if unsafe { ngx_handle_read_event((*c).read, 0) } != NGX_OK as isize {
            let mut done = done;
            done.extend(self.fail_collect(Some(Failure::Closed)));
            return done;
        }
        self.arm_read_timer();
        // SAFETY: c is live.
        unsafe { self.set_idle(self.slots.is_empty() || self.cancelable) };
        done
    }

    /// Parses complete replies off the buffer into their slots. An error reply is heard by
    /// its meaning: one that says this server cannot serve us (a replica, bad credentials)
    /// closes the connection, the next one goes to the next address.
    fn parse(&mut self) -> Vec<(u64, Result<Vec<Value>, ()>)> {
        let mut done = Vec::new();
        let mut pos = 0;
        let limits = Limits::default();
        loop {
            let reply = match resp::parse(self.inbuf.get(pos..).unwrap_or_default(), &limits) {
                Ok(Some((reply, used))) => {
                    pos += used;
                    reply
                }
                Ok(None) => break,
                Err(_) => {
                    done.extend(self.fail_collect(Some(Failure::Protocol)));
                    return done;
                }
            };
            let Some(step) = self.slots.front().map(|s| s.step) else {
                // Bytes nobody asked for: out of sync.
                done.extend(self.fail_collect(Some(Failure::Protocol)));
                return done;
            };
            if step == Step::Role {
                if role_of(&reply) == Role::NotPrimary {
                    // SAFETY: the owner outlives its connections.
                    unsafe { (*self.owner).not_primary(self.addr_name()) };
                    self.addr += 1;
                    done.extend(self.reroute());
                    return done;
                }
                self.hops = 0;
                self.handshaking = false;
                let held = core::mem::take(&mut self.held);
                self.out.extend_from_slice(&held);
                self.slots.pop_front();
                continue;
            }
            let auth = step == Step::Auth;
            if let Reply::Error(line) = &reply {
                let class = ErrorClass::of(line);
                // SAFETY: the owner outlives its connections.
                unsafe { (*self.owner).reply_error(class, line, self.addr_name()) };
                if auth || class.closes() {
                    let why = if class == ErrorClass::Role {
                        // Another address may be the primary now.
                        self.addr += 1;
                        Failure::Role
                    } else {
                        Failure::Auth
                    };
                    done.extend(self.fail_collect(Some(why)));
                    return done;
                }
            }
            let Some(slot) = self.slots.front_mut() else {
                break;
            };
            slot.got.push(Value::from(&reply));
            if slot.got.len() >= slot.replies {
                if let Some(slot) = self.slots.pop_front() {
                    if slot.waiter != 0 {
                        done.push((slot.waiter, Ok(slot.got)));
                    }
                }
            }
        }
        self.inbuf.drain(..pos);
        if pos > 0 {
            // SAFETY: the owner outlives its connections.
            unsafe { (*self.owner).answered() };
        }
        done
    }

    /// The server is not the primary: the commands waiting behind the handshake go to the
    /// next address on a new connection (each address once; then they fail).
    fn reroute(&mut self) -> Vec<(u64, Result<Vec<Value>, ()>)> {
        self.hops += 1;
        // SAFETY: the owner's addresses live as long as the configuration.
        let count = unsafe { &*self.addrs }.len().max(1);
        if self.hops >= count {
            self.hops = 0;
            return self.fail_collect(Some(Failure::Role));
        }
        let held = core::mem::take(&mut self.held);
        let waiting: VecDeque<Slot> = self
            .slots
            .drain(..)
            .filter(|s| s.step == Step::Command)
            .collect();
        self.close();
        let connected = self.connect();
        // The caller reads no more from the connection it was reading.
        self.replaced = true;
        if !connected {
            self.slots = waiting;
            return self.fail_collect(Some(Failure::Connect));
        }
        self.slots.extend(waiting);
        self.held = held;
        self.arm_read_timer();
        if self.state == State::Ready {
            self.post_flush();
        }
        Vec::new()
    }

    /// Fails the connection from inside a call into it (connect, send): the waiters run
    /// from the event loop, after the caller is out.
    fn fail(&mut self, why: Failure) {
        let done = self.fail_collect(Some(why));
        waiters::defer(done);
    }

    /// Closes the connection, fails every slot; `why` is `None` for a quiet close (nginx
    /// is shutting down).
    fn fail_collect(&mut self, why: Option<Failure>) -> Vec<(u64, Result<Vec<Value>, ()>)> {
        self.close();
        let done = self
            .slots
            .drain(..)
            .filter(|s| s.waiter != 0)
            .map(|s| (s.waiter, Err(())))
            .collect();
        if let Some(why) = why {
            self.report(why);
        }
        done
    }

    fn report(&self, why: Failure) {
        // SAFETY: the owner outlives its connections.
        unsafe { (*self.owner).failed(why) };
    }

    /// Closes the socket (timers and posted events go with it).
    pub(crate) fn close(&mut self) {
        if self.flush_ev.posted() != 0 {
            // SAFETY: the event is in the posted queue.
            unsafe { nginx_sys::ngx_delete_posted_event(&mut self.flush_ev) };
        }
        let c = core::mem::replace(&mut self.pc.connection, ptr::null_mut());
        self.state = State::Closed;
        self.out.clear();
        self.sent = 0;
        self.held.clear();
        self.handshaking = false;
        self.inbuf.clear();
        if !c.is_null() {
            // SAFETY: c is the live connection this Conn opened; TLS (if any) is shut down
            // without waiting, then closing frees the connection.
            unsafe {
                tls::shutdown(c);
                ngx_close_connection(c);
            }
        }
        let pool = core::mem::replace(&mut self.tls_pool, ptr::null_mut());
        if !pool.is_null() {
            // SAFETY: the pool was made for the connection just closed; nothing uses it now.
            unsafe { ngx_destroy_pool(pool) };
        }
    }

    /// Sends what is queued if the socket takes it at once, then closes and forgets every
    /// waiter (worker exit).
    pub(crate) fn shutdown(&mut self) {
        if self.state == State::Ready && !self.handshaking {
            self.flush();
        }
        // SAFETY: the session is ours (or NULL); no connection will resume it now.
        unsafe { tls::free_session(core::mem::replace(&mut self.session, ptr::null_mut())) };
        for (id, _) in self.fail_collect(None) {
            waiters::cancel(id);
        }
    }
}

/// `ROLE`, asked once per connection.
fn role_command() -> Vec<u8> {
    resp::command(&[b"ROLE"])
}

unsafe extern "C" fn fail_send(_: *mut ngx_connection_t, _: *mut u8, _: usize) -> isize {
    NGX_ERROR as isize
}

unsafe extern "C" fn fail_recv(_: *mut ngx_connection_t, _: *mut u8, _: usize) -> isize {
    NGX_ERROR as isize
}

unsafe extern "C" fn on_read(ev: *mut ngx_event_t) {
    // SAFETY: the event belongs to a connection whose data is its boxed Conn, alive until
    // the connection is closed (which removes the event).
    let conn = unsafe { (*((*ev).data as *mut ngx_connection_t)).data } as *mut Conn;
    // SAFETY: as above; the borrow ends before the waiters run.
    let done = unsafe { (*conn).on_read(ev) };
    waiters::complete_all(done);
}

unsafe extern "C" fn on_tls_done(c: *mut ngx_connection_t) {
    // SAFETY: c is our live connection; its data is the boxed Conn.
    let conn = unsafe { (*c).data } as *mut Conn;
    // SAFETY: as above; waiters failed meanwhile run from the event loop (`fail`).
    unsafe { (*conn).tls_done() };
}

unsafe extern "C" fn on_flush(ev: *mut ngx_event_t) {
    // SAFETY: data is the boxed Conn that posted the event; closing it unposts the event.
    let conn = unsafe { (*ev).data } as *mut Conn;
    // SAFETY: as above.
    unsafe { (*conn).flush() };
}

unsafe extern "C" fn on_write(ev: *mut ngx_event_t) {
    // SAFETY: as in `on_read`.
    let conn = unsafe { (*((*ev).data as *mut ngx_connection_t)).data } as *mut Conn;
    // SAFETY: as above.
    unsafe { (*conn).on_write(ev) };
}
