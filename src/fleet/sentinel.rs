//! Following the primary through Sentinel (`redis_sentinel=`): each worker asks the
//! Sentinels where the primary of the master is (`SENTINEL get-master-addr-by-name`),
//! listens for `+switch-master` on one of them, and asks again when a data connection fails
//! and every few seconds. The answer replaces the worker's data servers; connections to the
//! old primary are replaced once nothing is in flight on them. A host name in the answer
//! (`announce-hostnames yes`) is followed with the http block's `resolver` ([`dns`]).

use core::cell::RefCell;
use core::ffi::c_void;
use std::rc::Rc;

use nginx_sys::{ngx_add_timer, ngx_cycle, ngx_event_t, NGX_LOG_NOTICE, NGX_LOG_WARN};
use phantom_core::fleet::sentinel::{
    answer_of, ask_command, switched_to, watch_command, Answer, Primary,
};

use super::conn::{Conn, Kind};
use super::dns;
use super::peer::Peer;
use super::waiters::{self, Outcome};
use super::Fleet;

/// How often the Sentinels are asked while all is well (a missed message is caught up).
const REASK_MS: usize = 5000;
/// How soon after a failure they are asked again (at most this often).
const SOON_MS: usize = 100;
/// Backoff of a lost subscription.
const RESUBSCRIBE_MS: usize = 500;

/// One worker's view of the Sentinels of one zone.
pub(crate) struct Watch {
    fleet: &'static Fleet,
    master: String,
    query: Box<Conn>,
    sub: Box<Conn>,
    ask_timer: ngx_event_t,
    sub_timer: ngx_event_t,
    asking: bool,
    stopped: bool,
    /// Shared with the subscription's callback, which runs while `sub` is in use.
    named: Rc<RefCell<Named>>,
}

/// The host name the Sentinels named, followed with the resolver.
#[derive(Default)]
struct Named {
    watch: Option<Box<dns::Watch>>,
    /// A host name came with no resolver to follow it (logged once until that changes).
    unresolvable: bool,
}

impl Watch {
    /// Starts asking and listening (worker start).
    pub(crate) fn start(fleet: &'static Fleet) -> Box<Watch> {
        let master = fleet.sentinel.clone().unwrap_or_default();
        let query = Conn::new(Kind::Sentinel, fleet.timeout_ms, fleet);
        let sub = Conn::new(Kind::Sentinel, fleet.timeout_ms, fleet);
        let mut watch = Box::new(Watch {
            fleet,
            master,
            query,
            sub,
            // SAFETY: all-zero events are their initial state; set up below.
            ask_timer: unsafe { core::mem::zeroed() },
            // SAFETY: as above.
            sub_timer: unsafe { core::mem::zeroed() },
            asking: false,
            stopped: false,
            named: Rc::default(),
        });
        let (name, named) = (watch.master.clone(), watch.named.clone());
        watch.sub.set_push(Box::new(move |reply| {
            if let Some(primary) = switched_to(reply, &name) {
                follow_primary(fleet, &name, &named, primary, "+switch-master");
            }
        }));
        let me = &mut *watch as *mut Watch as *mut c_void;
        for (ev, handler) in [
            (
                &mut watch.ask_timer,
                on_ask_timer as unsafe extern "C" fn(_),
            ),
            (&mut watch.sub_timer, on_sub_timer),
        ] {
            ev.handler = Some(handler);
            ev.data = me;
            // SAFETY: the cycle log is valid in a worker.
            ev.log = unsafe { (*ngx_cycle).log };
            ev.set_cancelable(1);
        }
        watch.ask();
        watch.subscribe();
        watch
    }

    /// A data connection failed: ask again soon (at most every [`SOON_MS`]).
    pub(crate) fn ask_soon(&mut self) {
        if self.stopped || self.asking {
            return;
        }
        self.arm(SOON_MS);
    }

    fn arm(&mut self, ms: usize) {
        // SAFETY: the timer lives in this boxed watch; an earlier deadline wins.
        unsafe {
            if self.ask_timer.timer_set() != 0
                && self.ask_timer.timer.key <= nginx_sys::ngx_current_msec + ms
            {
                return;
            }
            ngx_add_timer(&mut self.ask_timer, ms);
        }
    }

    fn ask(&mut self) {
        if self.stopped || self.asking {
            return;
        }
        let me = self as *mut Watch;
        let id = waiters::register(move |outcome| {
            // SAFETY: the watch is boxed in the fleet for the worker's life; its
            // connections (and so this waiter) are closed before it goes.
            unsafe { (*me).answered(outcome) };
        });
        if self.query.submit(&ask_command(&self.master), 1, id, 0) {
            self.asking = true;
        } else {
            waiters::cancel(id);
            self.arm(SOON_MS);
        }
    }

    fn answered(&mut self, outcome: Outcome) {
        self.asking = false;
        if self.stopped {
            return;
        }
        let answer = match &outcome {
            Ok(replies) => replies.first().map(|r| answer_of(&r.as_reply())),
            Err(()) => None,
        };
        match answer {
            Some(Answer::At(primary)) => {
                follow_primary(self.fleet, &self.master, &self.named, primary, "asked");
                return self.arm(REASK_MS);
            }
            Some(Answer::Unknown) => self.fleet.log(
                NGX_LOG_WARN as usize,
                &format!(
                    "Sentinel does not know master \"{}\": asking another",
                    self.master
                ),
            ),
            Some(Answer::Invalid) => self.fleet.log(
                NGX_LOG_WARN as usize,
                "Sentinel answered something other than an IP address and port: asking another",
            ),
            None => {}
        }
        // This Sentinel could not say: the next one is asked.
        self.query.close();
        self.query.next_server();
        self.arm(SOON_MS);
    }

    fn subscribe(&mut self) {
        if self.stopped {
            return;
        }
        let me = self as *mut Watch;
        let id = waiters::register(move |_lost| {
            // SAFETY: as in `ask`.
            unsafe { (*me).resubscribe_later() };
        });
        if !self.sub.subscribe(&watch_command(), id) {
            waiters::cancel(id);
            self.resubscribe_later();
        }
    }

    fn resubscribe_later(&mut self) {
        if self.stopped {
            return;
        }
        self.sub.next_server();
        // A failover may have been missed meanwhile.
        self.ask_soon();
        // SAFETY: the timer lives in this boxed watch.
        unsafe { ngx_add_timer(&mut self.sub_timer, RESUBSCRIBE_MS) };
    }

    /// Worker exit: timers and connections go.
    pub(crate) fn shutdown(&mut self) {
        self.stopped = true;
        for ev in [&mut self.ask_timer, &mut self.sub_timer] {
            if ev.timer_set() != 0 {
                // SAFETY: the timer is in the tree.
                unsafe { nginx_sys::ngx_del_timer(ev) };
            }
        }
        self.query.shutdown();
        self.sub.shutdown();
        if let Ok(mut named) = self.named.try_borrow_mut() {
            unfollow_name(&mut named);
        }
    }
}

/// The Sentinels named the primary: its address is taken at once, its host name is followed
/// with the resolver (the data servers change when the name resolves).
fn follow_primary(
    fleet: &'static Fleet,
    master: &str,
    named: &RefCell<Named>,
    primary: Primary,
    how: &str,
) {
    let Ok(mut named) = named.try_borrow_mut() else {
        return;
    };
    let (host, port) = match primary {
        Primary::Addr(addr) => {
            unfollow_name(&mut named);
            return follow(fleet, Peer::from_socket(addr), how);
        }
        Primary::Host(host, port) => (host, port),
    };
    if named.watch.as_ref().is_some_and(|w| w.follows(&host, port)) {
        return;
    }
    let Some(resolver) = fleet.resolver else {
        if !core::mem::replace(&mut named.unresolvable, true) {
            let msg = format!("primary of master \"{master}\" is {host}:{port} (Sentinel, {how}), a host name: add a resolver to the http block to follow it");
            fleet.log(NGX_LOG_WARN as usize, &msg);
        }
        return;
    };
    unfollow_name(&mut named);
    let msg =
        format!("primary of master \"{master}\" is {host}:{port} (Sentinel, {how}): resolving it");
    fleet.log(NGX_LOG_NOTICE as usize, &msg);
    let name = dns::Name {
        resolver,
        host,
        port,
    };
    named.watch = Some(dns::Watch::start(fleet, &name));
}

fn unfollow_name(named: &mut Named) {
    named.unresolvable = false;
    if let Some(mut w) = named.watch.take() {
        w.shutdown();
    }
}

/// The primary is at `peer`: the worker's data connections go there from now on.
fn follow(fleet: &Fleet, peer: Peer, how: &str) {
    let name = peer.name().to_string();
    if fleet.servers.replace(vec![peer]) {
        fleet.moved();
        let master = fleet.sentinel.as_deref().unwrap_or("");
        fleet.log(
            NGX_LOG_NOTICE as usize,
            &format!("primary of master \"{master}\" is {name} (Sentinel, {how})"),
        );
    }
}

unsafe extern "C" fn on_ask_timer(ev: *mut ngx_event_t) {
    // SAFETY: data is the boxed watch that armed the timer.
    let watch = unsafe { &mut *((*ev).data as *mut Watch) };
    watch.ask();
}

unsafe extern "C" fn on_sub_timer(ev: *mut ngx_event_t) {
    // SAFETY: as above.
    let watch = unsafe { &mut *((*ev).data as *mut Watch) };
    watch.subscribe();
}
