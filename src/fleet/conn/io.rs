//! Reading and writing on nginx's events: the commands of one event loop iteration go out in
//! one `send` (a posted event), replies are read until the socket is drained, and the read
//! timer follows the oldest operation's deadline.

use core::ffi::c_void;

use nginx_sys::{
    ngx_connection_t, ngx_current_msec, ngx_cycle, ngx_del_timer, ngx_event_t,
    ngx_handle_read_event, ngx_handle_write_event, NGX_AGAIN, NGX_ERROR, NGX_OK,
};

use super::super::waiters::{self, Value};
use super::{Conn, Failure, State, Step, MAX_INBUF};

impl Conn {
    /// Sends at the end of this event loop iteration: the commands of every request that
    /// runs in it go out in one write (and their replies tend to come back in one read).
    pub(super) fn post_flush(&mut self) {
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

    /// (Re)arms the read timer for the oldest slot's deadline.
    pub(super) fn arm_read_timer(&mut self) {
        let c = self.pc.connection;
        if c.is_null() || self.state == State::Closed {
            return;
        }
        // SAFETY: c is live while the state is not Closed.
        let rev = unsafe { (*c).read };
        let Some(front) = self.slots.front().filter(|s| s.step != Step::Push) else {
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
    pub(super) unsafe fn set_idle(&mut self, idle: bool) {
        // SAFETY: per contract.
        unsafe { (*self.pc.connection).set_idle(u32::from(idle)) };
    }

    pub(super) fn flush(&mut self) {
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

    pub(super) fn on_write(&mut self, ev: *mut ngx_event_t) {
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

    /// Reads and parses; returns the completed waiters for the caller to run once this
    /// connection is no longer borrowed.
    pub(super) fn on_read(&mut self, ev: *mut ngx_event_t) -> Vec<(u64, Result<Vec<Value>, ()>)> {
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
                // A short read cleared `ready` (the socket, or TLS, is drained): asking again
                // would only cost a `recv` that says EAGAIN (two under TLS).
                // SAFETY: c is live.
                if unsafe { (*(*c).read).ready() } == 0 {
                    break;
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
}

unsafe extern "C" fn fail_send(_: *mut ngx_connection_t, _: *mut u8, _: usize) -> isize {
    NGX_ERROR as isize
}

unsafe extern "C" fn fail_recv(_: *mut ngx_connection_t, _: *mut u8, _: usize) -> isize {
    NGX_ERROR as isize
}

pub(super) unsafe extern "C" fn on_read(ev: *mut ngx_event_t) {
    // SAFETY: the event belongs to a connection whose data is its boxed Conn, alive until
    // the connection is closed (which removes the event).
    let conn = unsafe { (*((*ev).data as *mut ngx_connection_t)).data } as *mut Conn;
    // SAFETY: as above; the borrow ends before the waiters run.
    let done = unsafe { (*conn).on_read(ev) };
    // SAFETY: as above.
    let (asks, owner) = unsafe { (core::mem::take(&mut (*conn).asks), (*conn).owner) };
    if !asks.is_empty() {
        // SAFETY: the owner outlives its connections.
        unsafe { (*owner).ask(asks) };
    }
    waiters::complete_all(done);
}

unsafe extern "C" fn on_flush(ev: *mut ngx_event_t) {
    // SAFETY: data is the boxed Conn that posted the event; closing it unposts the event.
    let conn = unsafe { (*ev).data } as *mut Conn;
    // SAFETY: as above.
    unsafe { (*conn).flush() };
}

pub(super) unsafe extern "C" fn on_write(ev: *mut ngx_event_t) {
    // SAFETY: as in `on_read`.
    let conn = unsafe { (*((*ev).data as *mut ngx_connection_t)).data } as *mut Conn;
    // SAFETY: as above.
    unsafe { (*conn).on_write(ev) };
}
