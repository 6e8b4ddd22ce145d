//! Connecting, and a new connection's handshake: TLS (with `redis_ssl`), then `AUTH`,
//! `HELLO` and `ROLE`, with the commands of requests held back until the server is known to
//! be a primary we may use; and when a connection goes to another server (the servers moved,
//! or it is too old).

use core::ffi::c_void;

use nginx_sys::{
    ngx_connection_log_error_e_NGX_ERROR_INFO, ngx_connection_t, ngx_create_pool, ngx_current_msec,
    ngx_cycle, ngx_del_timer, ngx_event_connect_peer, ngx_event_get_peer, NGX_AGAIN, NGX_LOG_CRIT,
    NGX_OK,
};
use phantom_core::fleet::resp;

use super::super::tls::{self, Handshake, TlsError};
use super::{on_read, on_write, Conn, Failure, Kind, Slot, State, Step};

impl Conn {
    /// Starts a connection to the current address; `false` if it failed at once.
    pub(super) fn connect(&mut self) -> bool {
        self.replaced = false;
        self.connected_ms = crate::glue::time::now_ms();
        // SAFETY: the owner outlives its connections.
        let owner = unsafe { &*self.owner };
        self.generation = owner.servers.generation();
        self.server = None;
        let pinned = self.pin.clone();
        let Some(peer) = pinned.or_else(|| owner.peer_for(self.kind, self.addr)) else {
            // No server known yet (Sentinel not answered): a miss, no failure.
            return false;
        };
        let peer = self.peer.insert(peer);
        self.peer_name = peer.ngx_name();
        // SAFETY: the cycle log outlives the worker; we copy it and raise its level.
        unsafe {
            self.log = *(*ngx_cycle).log;
        }
        self.log.log_level = NGX_LOG_CRIT as usize;
        // SAFETY: zeroed is the initial state; the fields set below are what nginx reads.
        self.pc = unsafe { core::mem::zeroed() };
        self.pc.sockaddr = peer.sockaddr();
        self.pc.socklen = peer.socklen();
        self.pc.name = &mut self.peer_name;
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
        // The handshake: AUTH (with credentials), HELLO, then ROLE; commands wait behind it.
        // Sentinels are only asked where the primary is, after their own AUTH if they have a
        // password (a refused one fails the connection before their answer is read).
        self.handshaking = self.kind == Kind::Data;
        // SAFETY: reading nginx's cached clock.
        let now = unsafe { ngx_current_msec };
        let greet = match self.kind {
            Kind::Data => [
                // SAFETY: the owner outlives its connections.
                (unsafe { (*self.owner).auth() }, Step::Auth),
                (Some(resp::command(&[b"HELLO", b"2"])), Step::Hello),
                (Some(role_command()), Step::Role),
            ],
            Kind::Sentinel => [
                // SAFETY: as above.
                (unsafe { (*self.owner).sentinel_auth() }, Step::Auth),
                (None, Step::Hello),
                (None, Step::Role),
            ],
        };
        for (cmd, step) in greet {
            let Some(cmd) = cmd else { continue };
            self.out.extend_from_slice(&cmd);
            self.slots.push_back(Slot {
                replies: 1,
                got: Vec::new(),
                waiter: 0,
                deadline: now + self.timeout_ms,
                step,
                cmds: None,
                ask: None,
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

    /// Whether the connection should be replaced now that nothing is in flight: it is older
    /// than `redis_max_connection_age`, or the servers changed since it was made.
    pub(super) fn stale(&self) -> bool {
        if self.state == State::Closed || !self.slots.is_empty() {
            return false;
        }
        // SAFETY: the owner outlives its connections.
        let owner = unsafe { &*self.owner };
        let old = owner
            .max_connection_age_ms
            .is_some_and(|max| crate::glue::time::now_ms() - self.connected_ms >= max as i64);
        let moved = self.pin.is_none()
            && self.kind == Kind::Data
            && owner.servers.generation() != self.generation;
        old || moved
    }

    /// How many servers this connection may try in turn.
    pub(super) fn peer_count(&self) -> usize {
        // SAFETY: the owner outlives its connections.
        unsafe { (*self.owner).peer_count(self.kind) }.max(1)
    }

    /// The next connection goes to the next server.
    pub(crate) fn next_server(&mut self) {
        self.addr = self.addr.wrapping_add(1);
    }

    /// Whether a non-blocking connect succeeded (`SO_ERROR` is 0).
    pub(super) fn connected(&self) -> bool {
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

    /// The socket is connected: with `redis_ssl`, TLS starts; else the connection is ready.
    pub(super) fn established(&mut self) {
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
    pub(super) fn handshake_went(&mut self, how: Result<Handshake, TlsError>) {
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
                let resumed = unsafe { tls::resumed(c) };
                crate::metrics::count(if resumed {
                    crate::metrics::Counter::RedisTlsResumed
                } else {
                    crate::metrics::Counter::RedisTlsFull
                });
                // SAFETY: as above.
                unsafe {
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

    /// The server sent a session: the next connection resumes it.
    pub(crate) fn save_session(&mut self, c: *mut ngx_connection_t) {
        // SAFETY: c is this connection's, live with TLS; the old session is ours.
        self.session = unsafe { tls::keep_session(c, self.session) };
    }

    /// nginx's SSL layer is done with the handshake (or it timed out).
    pub(super) fn tls_done(&mut self) {
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
}

/// `ROLE`, asked once per connection.
pub(super) fn role_command() -> Vec<u8> {
    resp::command(&[b"ROLE"])
}

pub(super) unsafe extern "C" fn on_tls_done(c: *mut ngx_connection_t) {
    // SAFETY: c is our live connection; its data is the boxed Conn.
    let conn = unsafe { (*c).data } as *mut Conn;
    // SAFETY: as above; waiters failed meanwhile run from the event loop (`fail`).
    unsafe { (*conn).tls_done() };
}
