//! One Redis connection owned by a worker, driven by nginx's events (no thread, no blocking).
//!
//! Commands are pipelined: each submitted operation is a slot in a FIFO, answered in order.
//! Any timeout, EOF, protocol error or unexpected byte closes the connection and fails every
//! slot: a late reply must never answer the next command. The next submit reconnects, to the
//! next address after a failed connect.
//!
//! The handshake (TLS, `AUTH`, `ROLE`) is in [`handshake`], the socket's events in [`io`],
//! parsing replies in [`replies`].

use core::ptr;
use std::collections::VecDeque;

use nginx_sys::{
    ngx_close_connection, ngx_current_msec, ngx_event_t, ngx_log_t, ngx_msec_t,
    ngx_peer_connection_t,
};
use nginx_sys::{ngx_destroy_pool, ngx_pool_t, SSL_SESSION};

mod failure;
mod handshake;
mod io;
mod replies;
mod subscribe;

pub(crate) use failure::Failure;
use io::{on_read, on_write};

use super::peer::Peer;
use super::tls::{self};
use super::waiters::{self, Value};
use super::Fleet;

/// How long a cluster node's open breaker keeps operations away before one probes it.
const NODE_OPEN_MS: i64 = 1000;

/// Most operations in flight on one connection; past it a submit fails (a miss, no wait).
const MAX_SLOTS: usize = 1024;

/// Most bytes of one incomplete reply (a reply bigger than this is a protocol error).
const MAX_INBUF: usize = 512 * 1024;

struct Slot {
    replies: usize,
    got: Vec<Value>,
    waiter: u64,
    deadline: ngx_msec_t,
    /// What the slot is for.
    step: Step,
    /// A cluster node's commands, kept to be sent once more after an `ASK`.
    cmds: Option<Vec<u8>>,
    /// An `ASK` reply's node: the slot's replies go there once more instead of to the waiter.
    ask: Option<std::net::SocketAddr>,
}

/// Commands that a cluster node redirected with `ASK`, to be sent to `to` once more.
pub(crate) struct Ask {
    pub(crate) to: std::net::SocketAddr,
    pub(crate) cmds: Vec<u8>,
    pub(crate) replies: usize,
    pub(crate) waiter: u64,
    pub(crate) deadline: ngx_msec_t,
}

/// What gets the replies of a subscription.
pub(crate) type OnPush = Box<dyn FnMut(&phantom_core::fleet::resp::Reply)>;

/// Which servers a connection talks to, and how it greets them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    /// The data servers (the primary): `AUTH`, `HELLO` and `ROLE` first.
    Data,
    /// The Sentinels of `redis_sentinel=`: asked where the primary is, no handshake.
    Sentinel,
}

/// A slot's part in the conversation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    /// A request's (or nobody's) commands.
    Command,
    /// The handshake's `AUTH`: an error reply fails the connection.
    Auth,
    /// The handshake's `HELLO 2`: which server and version (an error is no answer).
    Hello,
    /// The handshake's `ROLE`: a replica is passed over for the next address.
    Role,
    /// A subscription: every reply goes to the connection's push handler; the slot ends
    /// only when the connection fails (its waiter then hears it).
    Push,
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
    kind: Kind,
    /// The server this connection talks to (a copy: the owner's list may change).
    peer: Option<Peer>,
    /// Its name as nginx's peer connection points at it.
    peer_name: nginx_sys::ngx_str_t,
    /// Which of the owner's servers is next (modulo their number).
    addr: usize,
    /// The owner's server generation when the connection was made.
    generation: u64,
    /// What the server said it is (`HELLO`), for commands newer servers have.
    pub(crate) server: Option<phantom_core::fleet::hello::Server>,
    /// Gets the replies of a subscription (a [`Step::Push`] slot).
    push: Option<OnPush>,
    timeout_ms: ngx_msec_t,
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
    /// When the connection was made (`redis_max_connection_age`).
    connected_ms: i64,
    /// The connection was replaced while its replies were read: the reader stops.
    replaced: bool,
    /// A Redis Cluster node: the one server this connection talks to, and its own breaker
    /// (failures in a row, open until when).
    pin: Option<Peer>,
    failures: u32,
    open_until_ms: i64,
    /// Operations redirected with `ASK` while replies were read, sent on by the read handler.
    asks: Vec<Ask>,
}

impl Conn {
    pub(crate) fn new(kind: Kind, timeout_ms: u64, owner: *const Fleet) -> Box<Conn> {
        Box::new(Conn {
            // SAFETY: an all-zero peer connection is its documented initial state.
            pc: unsafe { core::mem::zeroed() },
            // SAFETY: filled from the cycle log before use.
            log: unsafe { core::mem::zeroed() },
            kind,
            peer: None,
            peer_name: nginx_sys::ngx_str_t::default(),
            addr: 0,
            generation: 0,
            server: None,
            push: None,
            timeout_ms: timeout_ms as ngx_msec_t,
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
            connected_ms: 0,
            replaced: false,
            pin: None,
            failures: 0,
            open_until_ms: 0,
            asks: Vec::new(),
        })
    }

    /// Makes this connection talk to `peer` only (a cluster node).
    pub(crate) fn pin(&mut self, peer: Peer) {
        self.pin = Some(peer);
    }

    pub(crate) fn pinned_to(&self) -> Option<&Peer> {
        self.pin.as_ref()
    }

    /// A pinned connection's breaker: closed, open (a miss), or half-open after
    /// [`NODE_OPEN_MS`] (the next operation probes the node).
    pub(crate) fn allow(&mut self, now_ms: i64) -> bool {
        if self.open_until_ms == 0 || now_ms >= self.open_until_ms {
            if self.open_until_ms != 0 {
                self.open_until_ms = now_ms + NODE_OPEN_MS;
            }
            return true;
        }
        false
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
        // SAFETY: reading nginx's cached clock.
        let deadline = unsafe { ngx_current_msec } + self.timeout_ms + extra_ms as ngx_msec_t;
        let keep = self.pin.is_some();
        self.submit_until(cmds, (replies, waiter), deadline, keep)
    }

    /// As [`Conn::submit`], answered by `deadline`; `keep`: the commands are kept for an
    /// `ASK` (an operation already redirected once is not).
    pub(crate) fn submit_until(
        &mut self,
        cmds: &[u8],
        (replies, waiter): (usize, u64),
        deadline: ngx_msec_t,
        keep: bool,
    ) -> bool {
        if self.slots.len() >= MAX_SLOTS {
            return false;
        }
        if self.stale() {
            self.close();
        }
        if self.state == State::Closed && !self.connect() {
            return false;
        }
        self.slots.push_back(Slot {
            replies,
            got: Vec::with_capacity(replies.min(8)),
            waiter,
            deadline,
            step: Step::Command,
            cmds: keep.then(|| cmds.to_vec()),
            ask: None,
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

    /// The address this connection talks to, for log lines.
    fn addr_name(&self) -> &str {
        self.peer.as_ref().map_or("", Peer::name)
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

    /// A data connection's failure counts for the breaker; a Sentinel's waiter hears it.
    /// A cluster node's counts for its own breaker, and makes the slot map due.
    fn report(&mut self, why: Failure) {
        if self.pin.is_some() {
            // SAFETY: the owner outlives its connections.
            let owner = unsafe { &*self.owner };
            let name = self.peer.as_ref().map_or("", Peer::name);
            owner.node_failed(name, why, &mut self.failures, &mut self.open_until_ms);
            return;
        }
        if self.kind == Kind::Data {
            // SAFETY: the owner outlives its connections.
            unsafe { (*self.owner).failed(why) };
        }
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
