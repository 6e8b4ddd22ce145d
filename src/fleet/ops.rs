//! The request side of the fleet tier: the lookup with the fleet lock, and the store.
//!
//! A lookup is a `GET <entry>`: a hit fills the zone, at the cost of one round trip and no
//! write. After a miss, `SET <lock> <unique> NX PX <redis_lock>` and `GET <entry>` again (an
//! instance may have stored and released in between): with the lock this instance
//! introspects for the fleet, then stores and releases the lock; without it another instance
//! introspects, so this request polls until the entry appears or the lock expires (a holder
//! that died blocks nobody longer than the lock time). Any error is a miss: introspect as
//! without Redis.

use phantom_core::fleet::lookup::{self, Lock, Value};
use phantom_core::fleet::resp::push_command;
use phantom_core::fleet::seal::{self, Sealed};
use phantom_core::purge::Kind;

use super::waiters::{self, Outcome, Value as Owned};
use super::Fleet;
use crate::cache::entry::Entry;
use crate::metrics::{self, Counter};

/// Deletes the lock only if it still holds our value (it may have expired and been taken).
const RELEASE: &[u8] =
    b"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// Adds an entry key (`ARGV[1]`) to a subject's or client's index set (`KEYS[1]`) and makes the
/// set live at least as long as the entry (`ARGV[2]` ms): `PEXPIRE` when the set has no TTL or
/// a shorter one, so it expires with its last entry. This is `PEXPIRE NX` + `PEXPIRE GT` (Redis
/// 7.0+) in a form that Redis 6.2, 7.x and Valkey 8 and 9 all run. A full server's refusal
/// is answered as `-OOM` on each of them (Redis 6.2 would wrap it in `-ERR Error running
/// script`), so the store sees that Redis is full. The one key it touches is in `KEYS` (the
/// entry key is only a member), as a Redis Cluster needs.
const INDEX: &[u8] = b"local n = redis.pcall('SADD', KEYS[1], ARGV[1]) \
if type(n) == 'table' and n.err then \
if string.find(n.err, 'OOM', 1, true) then \
return redis.error_reply(\"OOM command not allowed when used memory > 'maxmemory'.\") end \
return n end \
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then \
redis.call('PEXPIRE', KEYS[1], ARGV[2]) end \
return n";

/// A request's fleet state; dropping it (with the request) forgets its pending operation.
#[derive(Default)]
pub(crate) struct FleetCtx {
    /// The operation this request waits for (0: none).
    pub(crate) op: u64,
    pub(crate) reply: Option<Outcome>,
    /// Our lock value, while this request introspects for the fleet.
    pub(crate) lock: Option<Vec<u8>>,
    /// When this request started waiting for another instance's introspection.
    pub(crate) since_ms: i64,
    /// The entry's key name while its `GET` is out (the value is sealed for it).
    pub(crate) key: Option<String>,
    /// The outstanding command is the lock's `SET NX`, not the `GET`.
    pub(crate) locking: bool,
    /// Where our lock lives, so that a request that ends early releases it.
    held: Option<(&'static Fleet, String)>,
}

impl Drop for FleetCtx {
    /// The request ended (answered, client gone, stream reset): its operation is forgotten
    /// and a lock it still holds is released, so other instances do not wait for it.
    fn drop(&mut self) {
        waiters::cancel(self.op);
        self.release_held();
    }
}

impl FleetCtx {
    /// Takes our lock value out (to release it, or because it was not granted).
    fn take_lock(&mut self) -> Option<Vec<u8>> {
        let lock = self.lock.take()?;
        self.held = None;
        HELD.with_borrow_mut(|h| h.retain(|(_, _, v)| *v != lock));
        Some(lock)
    }

    /// Releases the lock this request holds, if any (fire and forget).
    fn release_held(&mut self) {
        let Some((fleet, key)) = self.held.clone() else {
            return;
        };
        let Some(lock) = self.take_lock() else {
            return;
        };
        let mut cmds = Vec::new();
        push_command(&mut cmds, &[b"EVAL", RELEASE, b"1", key.as_bytes(), &lock]);
        fleet.submit(key.as_bytes(), &cmds, (1, 0), crate::glue::time::now_ms());
    }
}

/// What a lookup found.
pub(crate) enum Found {
    /// A shared entry, already opened and checked.
    Hit(Sealed),
    /// Nobody introspects this token: we hold the fleet lock.
    Lead,
    /// Another instance holds the lock: look again shortly.
    Held,
    /// Redis did not help (error, timeout, breaker): introspect.
    Unavailable,
    /// A miss: the lock was asked for; wait for the reply.
    Asked,
}

fn entry_key(fleet: &Fleet, context: &[u8], token: &[u8]) -> String {
    fleet.layout.entry(context, token)
}

/// The lock lies in the entry's slot (the token's hash tag), so the lookup's `SET NX` + `GET`
/// name one slot.
fn lock_key(fleet: &Fleet, context: &[u8], token: &[u8]) -> String {
    fleet.layout.lock(context, token)
}

/// Starts a lookup (`GET`); `false` if nothing was sent (introspect now). `wake` runs with
/// the reply, unless `fc` was dropped first.
pub(crate) fn lookup(
    fleet: &'static Fleet,
    fc: &mut FleetCtx,
    (context, token): (&[u8], &[u8]),
    now_ms: i64,
    wake: impl FnOnce(Outcome) + 'static,
) -> bool {
    let key = entry_key(fleet, context, token);
    let mut cmd = Vec::with_capacity(96);
    push_command(&mut cmd, &[b"GET", key.as_bytes()]);
    fc.key = Some(key);
    fc.locking = false;
    send(fleet, fc, (&cmd, 1), now_ms, wake)
}

/// After a miss: takes the fleet lock (`SET NX PX`), so that one instance introspects.
fn take_lock(
    fleet: &'static Fleet,
    fc: &mut FleetCtx,
    (context, token): (&[u8], &[u8]),
    now_ms: i64,
    wake: impl FnOnce(Outcome) + 'static,
) -> bool {
    let Some(lock) = lock_value() else {
        return false;
    };
    let px = fleet.lock_ms.to_string();
    let key = lock_key(fleet, context, token);
    // The entry's name from the `GET` that missed (one HMAC less).
    let entry = fc
        .key
        .take()
        .unwrap_or_else(|| entry_key(fleet, context, token));
    let mut cmd = Vec::with_capacity(192);
    push_command(
        &mut cmd,
        &[b"SET", key.as_bytes(), &lock, b"NX", b"PX", px.as_bytes()],
    );
    // Read again after the lock: a holder that stored and released between our GET and our
    // SET left its entry, which this GET sees.
    push_command(&mut cmd, &[b"GET", entry.as_bytes()]);
    fc.key = Some(entry);
    HELD.with_borrow_mut(|h| h.push((fleet as *const Fleet, key.clone(), lock.clone())));
    fc.held = Some((fleet, key));
    fc.lock = Some(lock);
    fc.locking = true;
    send(fleet, fc, (&cmd, 2), now_ms, wake)
}

/// Sends the commands of a lookup (routed by the entry's key, `fc.key`); `wake` gets
/// their replies.
fn send(
    fleet: &'static Fleet,
    fc: &mut FleetCtx,
    (cmd, replies): (&[u8], usize),
    now_ms: i64,
    wake: impl FnOnce(Outcome) + 'static,
) -> bool {
    let id = waiters::register(wake);
    let route = fc.key.as_deref().unwrap_or_default().as_bytes();
    if !fleet.submit(route, cmd, (replies, id), now_ms) {
        waiters::cancel(id);
        return false;
    }
    fc.op = id;
    fc.reply = None;
    true
}

/// Reads a reply: a hit, or after a miss the lock (which is then asked for, `wake` getting
/// its reply: `Found::Asked`).
pub(crate) fn found(
    fleet: &'static Fleet,
    fc: &mut FleetCtx,
    (context, token): (&[u8], &[u8]),
    now_ms: i64,
    wake: impl FnOnce(Outcome) + 'static,
) -> Found {
    let Some(Ok(replies)) = fc.reply.take() else {
        metrics::count(Counter::RedisErrors);
        return Found::Unavailable;
    };
    let replies: Vec<_> = replies.iter().map(Owned::as_reply).collect();
    let (lock, value) = lookup::classify(&replies, fc.locking);
    let got_lock = lock == Some(Lock::Taken);
    match value {
        Value::Stored(bytes) => {
            let key = fc.key.as_deref().unwrap_or_default();
            match seal::open(&fleet.keys, key, bytes) {
                Ok(sealed) if sealed.expires_ms > now_ms => {
                    if let (true, Some(lock)) = (got_lock, fc.take_lock()) {
                        release(fleet, context, token, &lock, now_ms);
                    }
                    return Found::Hit(sealed);
                }
                Ok(_) => {}
                Err(_) => metrics::count(Counter::RedisBadValues),
            }
        }
        Value::Missing => {}
        Value::Unusable => {
            if let (true, Some(lock)) = (got_lock, fc.take_lock()) {
                release(fleet, context, token, &lock, now_ms);
            }
            return Found::Unavailable;
        }
    }
    match lock {
        Some(Lock::Taken) => return Found::Lead,
        Some(Lock::Held) => {
            fc.take_lock();
            return Found::Held;
        }
        Some(Lock::Failed { full }) => {
            fc.take_lock();
            if full {
                fleet.full(now_ms);
            }
            return Found::Unavailable;
        }
        None => {}
    }
    // A miss: ask for the lock.
    if take_lock(fleet, fc, (context, token), now_ms, wake) {
        Found::Asked
    } else {
        Found::Unavailable
    }
}

/// The cached entry a shared value stands for.
pub(crate) fn entry_of(sealed: &Sealed) -> Entry {
    if !sealed.active {
        return Entry::Inactive;
    }
    Entry::active(
        std::rc::Rc::from(sealed.jwt.as_slice()),
        std::rc::Rc::from(sealed.scope.as_str()),
    )
}

/// Writes an introspection result for the fleet (fire and forget), then releases our lock.
#[allow(clippy::too_many_arguments)]
pub(crate) fn store(
    fleet: &'static Fleet,
    fc: &mut FleetCtx,
    context: &[u8],
    token: &[u8],
    entry: Option<&Entry>,
    (expires_ms, created_ms): (i64, i64),
    now_ms: i64,
) {
    let lock = fc.take_lock();
    let key = entry_key(fleet, context, token);
    // Commands by hash slot: the entry (and its lock), then each index set. One pipeline on
    // one server; in a cluster, each to its slot's node.
    let mut groups: Vec<(String, Vec<u8>, usize)> = Vec::new();
    let mut cmds = Vec::new();
    let mut replies = 0;
    let px = expires_ms - now_ms;
    if let (Some(entry), true, true) = (entry, px > 0, fleet.writable(now_ms)) {
        let (sealed, selectors) = sealed_of(fleet, entry, expires_ms, created_ms);
        if let Ok(value) = seal::seal(&fleet.keys, &key, &sealed) {
            let px = px.to_string();
            push_command(
                &mut cmds,
                &[b"SET", key.as_bytes(), &value, b"PX", px.as_bytes()],
            );
            replies += 1;
            for index in selectors {
                let mut cmd = Vec::new();
                let args: [&[u8]; 6] = [
                    b"EVAL",
                    INDEX,
                    b"1",
                    index.as_bytes(),
                    key.as_bytes(),
                    px.as_bytes(),
                ];
                push_command(&mut cmd, &args);
                groups.push((index, cmd, 1));
            }
        }
    }
    if let Some(lock) = &lock {
        push_release(fleet, &mut cmds, context, token, lock);
        replies += 1;
    }
    groups.insert(0, (key, cmds, replies));
    if fleet.cluster.is_none() {
        // One server: one write.
        let merged = groups
            .drain(..)
            .fold((String::new(), Vec::new(), 0), |mut m, g| {
                m.1.extend_from_slice(&g.1);
                m.2 += g.2;
                m
            });
        groups.push(merged);
    }
    for (route, cmds, replies) in groups {
        if replies > 0 {
            write(fleet, route.as_bytes(), &cmds, replies, now_ms);
        }
    }
}

/// Sends writes (fire and forget); an `-OOM` reply pauses writes.
fn write(fleet: &'static Fleet, route: &[u8], cmds: &[u8], replies: usize, now_ms: i64) {
    let fleet_ptr = fleet as *const Fleet;
    let id = waiters::register(move |outcome| {
        // SAFETY: the fleet lives in the configuration, for the whole cycle.
        let fleet = unsafe { &*fleet_ptr };
        if let Ok(replies) = outcome {
            if replies.iter().any(|v| v.error_code() == Some(b"OOM")) {
                fleet.full(crate::glue::time::now_ms());
            }
        }
    });
    if !fleet.submit(route, cmds, (replies, id), now_ms) {
        waiters::cancel(id);
    }
}

/// The sealed form of an entry, and the index sets (by subject and client) it joins.
fn sealed_of(
    fleet: &Fleet,
    entry: &Entry,
    expires_ms: i64,
    created_ms: i64,
) -> (Sealed, Vec<String>) {
    let mut sealed = Sealed {
        created_ms,
        expires_ms,
        active: false,
        sub_h: None,
        cid_h: None,
        scope: String::new(),
        jwt: Vec::new(),
    };
    let mut selectors = Vec::new();
    if let Entry::Active { jwt, scope, .. } = entry {
        sealed.active = true;
        sealed.scope = scope.to_string();
        sealed.jwt = jwt.to_vec();
        let claims = phantom_core::jwt::claims_of(jwt);
        for kind in [Kind::Sub, Kind::ClientId] {
            if let Some(value) = claims.get(kind.label()).and_then(|v| v.as_str()) {
                selectors.push(index_key(fleet, kind, value.as_bytes()));
            }
        }
    }
    (sealed, selectors)
}

/// The Redis set listing the entries of a subject or client (in its own slot).
pub(crate) fn index_key(fleet: &Fleet, kind: Kind, value: &[u8]) -> String {
    fleet.layout.index(kind, value)
}

fn push_release(fleet: &Fleet, cmds: &mut Vec<u8>, context: &[u8], token: &[u8], lock: &[u8]) {
    let key = lock_key(fleet, context, token);
    push_command(cmds, &[b"EVAL", RELEASE, b"1", key.as_bytes(), lock]);
}

/// Releases the lock we took (fire and forget).
fn release(fleet: &Fleet, context: &[u8], token: &[u8], lock: &[u8], now_ms: i64) {
    let mut cmds = Vec::new();
    push_release(fleet, &mut cmds, context, token, lock);
    let key = lock_key(fleet, context, token);
    fleet.submit(key.as_bytes(), &cmds, (1, 0), now_ms);
}

/// Releases the lock of a request whose result is not stored (errors, `no-store`).
pub(crate) fn abandon(fleet: &Fleet, fc: &mut FleetCtx, context: &[u8], token: &[u8], now_ms: i64) {
    if let Some(lock) = fc.take_lock() {
        release(fleet, context, token, &lock, now_ms);
    }
}

thread_local! {
    /// The locks this worker's requests hold: released at worker exit, when requests end
    /// without their pool cleanups.
    static HELD: core::cell::RefCell<Vec<(*const Fleet, String, Vec<u8>)>> =
        const { core::cell::RefCell::new(Vec::new()) };
}

/// The release commands of the locks this worker holds in `fleet` (worker exit).
pub(crate) fn held_releases(fleet: &Fleet) -> (Vec<u8>, usize) {
    // Only this zone's: another zone's locks wait for its own shutdown.
    let held: Vec<_> = HELD.with_borrow_mut(|h| {
        let (mine, others) = core::mem::take(h)
            .into_iter()
            .partition(|(f, _, _)| core::ptr::eq(*f, fleet));
        *h = others;
        mine
    });
    let mut cmds = Vec::new();
    let mut n = 0;
    for (_, key, lock) in &held {
        push_command(&mut cmds, &[b"EVAL", RELEASE, b"1", key.as_bytes(), lock]);
        n += 1;
    }
    (cmds, n)
}

thread_local! {
    /// 8 random bytes drawn once per worker (after fork), and a counter.
    static LOCK_SEED: core::cell::Cell<Option<([u8; 8], u64)>> = const { core::cell::Cell::new(None) };
}

/// A lock value unique to this request across the fleet: a per-worker random seed and a
/// counter (the value only has to differ from every other holder's, not be secret).
fn lock_value() -> Option<Vec<u8>> {
    let (seed, n) = match LOCK_SEED.get() {
        Some(s) => s,
        None => {
            use ring::rand::SecureRandom;
            let mut seed = [0u8; 8];
            ring::rand::SystemRandom::new().fill(&mut seed).ok()?;
            (seed, 0)
        }
    };
    LOCK_SEED.set(Some((seed, n.wrapping_add(1))));
    let mut v = seed.to_vec();
    v.extend_from_slice(&n.to_be_bytes());
    Some(v)
}
