//! Who waits for which Redis operation, by id, so a connection never points at a request.
//!
//! A request registers a callback and keeps its id in its context; the context's drop (the
//! request pool's cleanup) removes it, so a late reply finds nobody instead of a freed or
//! reused request.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use nginx_sys::{ngx_cycle, ngx_event_t, ngx_post_event, ngx_posted_events};
use phantom_core::fleet::resp::Reply;

/// An owned reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    /// `$-1`
    Nil,
    /// `*-1` (a blocking read that timed out)
    NilArray,
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Int(i64),
    Bulk(Vec<u8>),
    Array(Vec<Value>),
}

impl From<&Reply<'_>> for Value {
    fn from(r: &Reply<'_>) -> Value {
        match r {
            Reply::Simple(s) => Value::Simple(s.to_vec()),
            Reply::Error(e) => Value::Error(e.to_vec()),
            Reply::Integer(n) => Value::Int(*n),
            Reply::Bulk(None) => Value::Nil,
            Reply::Array(None) => Value::NilArray,
            Reply::Bulk(Some(b)) => Value::Bulk(b.to_vec()),
            Reply::Array(Some(items)) => Value::Array(items.iter().map(Value::from).collect()),
        }
    }
}

impl Value {
    /// The borrowed form the pure parsers of `phantom_core::fleet` read.
    pub(crate) fn as_reply(&self) -> Reply<'_> {
        match self {
            Value::Nil => Reply::Bulk(None),
            Value::NilArray => Reply::Array(None),
            Value::Simple(s) => Reply::Simple(s),
            Value::Error(e) => Reply::Error(e),
            Value::Int(n) => Reply::Integer(*n),
            Value::Bulk(b) => Reply::Bulk(Some(b)),
            Value::Array(items) => Reply::Array(Some(items.iter().map(Value::as_reply).collect())),
        }
    }

    /// The error code of an error reply (`OOM`, `ERR`...).
    pub(crate) fn error_code(&self) -> Option<&[u8]> {
        match self {
            Value::Error(line) => line.split(|&b| b == b' ').next(),
            _ => None,
        }
    }
}

/// What an operation ended with: its replies in order, or `Err` (timeout, closed, invalid).
pub(crate) type Outcome = Result<Vec<Value>, ()>;

type Callback = Box<dyn FnOnce(Outcome)>;

thread_local! {
    static WAITERS: RefCell<HashMap<u64, Callback>> = RefCell::new(HashMap::new());
    static NEXT: Cell<u64> = const { Cell::new(1) };
    /// Completions found while a caller was inside a connection (a failed send during a
    /// submit): run from the event loop instead, never nested in the caller.
    static DEFERRED: RefCell<Vec<(u64, Outcome)>> = const { RefCell::new(Vec::new()) };
    static DEFER_EVENT: Cell<*mut ngx_event_t> = const { Cell::new(core::ptr::null_mut()) };
}

/// Registers `f`; the id goes with the operation.
pub(crate) fn register(f: impl FnOnce(Outcome) + 'static) -> u64 {
    let id = NEXT.with(|n| n.replace(n.get() + 1));
    WAITERS.with_borrow_mut(|w| w.insert(id, Box::new(f)));
    id
}

/// Forgets a waiter (its request ended, or the operation was never sent).
pub(crate) fn cancel(id: u64) {
    if id != 0 {
        WAITERS.with_borrow_mut(|w| w.remove(&id));
    }
}

/// Runs the callbacks of finished operations (each at most once; none for cancelled ids).
pub(crate) fn complete_all(done: Vec<(u64, Outcome)>) {
    for (id, outcome) in done {
        // The borrow ends before the callback runs: it may register or cancel others.
        if let Some(f) = WAITERS.with_borrow_mut(|w| w.remove(&id)) {
            f(outcome);
        }
    }
}

/// Runs `done` from the event loop, after the current handler returns.
pub(crate) fn defer(done: Vec<(u64, Outcome)>) {
    if done.is_empty() {
        return;
    }
    DEFERRED.with_borrow_mut(|d| d.extend(done));
    let mut ev = DEFER_EVENT.get();
    if ev.is_null() {
        // One event per worker, for its whole life.
        // SAFETY: an all-zero event is its initial state; handler and log are set below.
        let mut boxed: Box<ngx_event_t> = Box::new(unsafe { core::mem::zeroed() });
        boxed.handler = Some(run_deferred);
        // SAFETY: the cycle log is valid in a worker.
        boxed.log = unsafe { (*ngx_cycle).log };
        ev = Box::into_raw(boxed);
        DEFER_EVENT.set(ev);
    }
    // SAFETY: ev lives for the worker; posting twice is a no-op.
    unsafe { ngx_post_event(ev, &raw mut ngx_posted_events) };
}

unsafe extern "C" fn run_deferred(_: *mut ngx_event_t) {
    let done = DEFERRED.with_borrow_mut(core::mem::take);
    complete_all(done);
}
