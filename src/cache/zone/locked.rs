//! Operations on a locked zone: find, insert (evicting as needed), remove, reclaim.
//! The index (`index.rs`) is kept in step: an entry is in it exactly while it is allocated.
//!
//! Active entries and markers share one LRU list; inactive (negative) entries have their
//! own list and a byte budget, so a flood of unknown tokens only ever evicts other
//! negative entries, never an active one.

use core::ffi::c_void;
use core::mem::size_of;
use core::ptr;
use std::rc::Rc;

use nginx_sys::{
    ngx_queue_insert_after, ngx_queue_remove, ngx_queue_t, ngx_shmtx_unlock, ngx_slab_alloc_locked,
    ngx_slab_free_locked, ngx_slab_pool_t,
};
use phantom_core::chain::{Chain, Links};
use phantom_core::table::Error;
use phantom_core::zone_index::ZoneIndex;

use super::index::{self, ZoneEntries};
use super::{Life, Node, Shared, ACTIVE, INACTIVE, JTI, PENDING};
use crate::cache::entry::Entry;
use crate::metrics::{count, Counter};

/// Holds the slab pool mutex; unlocks on drop.
pub(crate) struct Locked {
    pub(crate) pool: *mut ngx_slab_pool_t,
    pub(crate) sh: *mut Shared,
}

impl Drop for Locked {
    fn drop(&mut self) {
        // SAFETY: we hold the lock taken in `Zone::lock`.
        unsafe { ngx_shmtx_unlock(&mut (*self.pool).mutex) };
    }
}

/// What a slab allocation of `size` bytes really takes (`phantom_core::slab`).
fn charge(size: usize) -> u64 {
    // SAFETY: ngx_pagesize is set once at startup.
    phantom_core::slab::charge(size, unsafe { nginx_sys::ngx_pagesize })
}

/// Whole seconds, rounded down: an entry is never kept (served stale) past its keep time;
/// [`Node::keep_ms`] never goes below the expiry, which stays exact.
fn seconds_down(ms: i64) -> u32 {
    (ms.max(0) / 1000).min(u32::MAX as i64) as u32
}

/// How many leading bytes of `len` bytes of data go to a separate body allocation
/// (`phantom_core::slab`).
pub(crate) fn body_len(len: usize) -> usize {
    // SAFETY: ngx_pagesize is set once at startup.
    let page = unsafe { nginx_sys::ngx_pagesize };
    phantom_core::slab::body_len(size_of::<Node>(), len, page)
}

/// Copies `bytes` to offset `at` of an entry's data: the first `split` bytes of the data
/// live in `body`, the rest in `tail`.
///
/// # Safety
/// `body` must have `split` writable bytes and `tail` the rest of the data.
unsafe fn put(body: *mut u8, split: usize, tail: *mut u8, at: usize, bytes: &[u8]) {
    let head = bytes.len().min(split.saturating_sub(at));
    let rest = &bytes[head..];
    // SAFETY: per contract, both ranges are inside their allocations.
    unsafe {
        if head > 0 {
            ptr::copy_nonoverlapping(bytes.as_ptr(), body.add(at), head);
        }
        let off = (at + head).saturating_sub(split);
        ptr::copy_nonoverlapping(rest.as_ptr(), tail.add(off), rest.len());
    }
}

impl Locked {
    /// The zone's index; one at a time (each use ends before the next `index` call).
    fn index(&self) -> (ZoneIndex<'_>, ZoneEntries) {
        // SAFETY: the zone is locked for as long as `self` lives; callers never hold two.
        unsafe { index::open(self.pool, &raw mut (*self.sh).index) }
    }

    /// Finds the entry whose full digest matches (tags may collide, digests may not).
    pub(crate) fn find(&self, digest: &[u8; 32]) -> Option<*mut Node> {
        let (ix, es) = self.index();
        ix.find(&es, digest).map(|e| es.node(e))
    }

    /// Removes up to `budget` entries from the head of the chain of `key` (a subject's or a
    /// client's); how many went, and whether the chain is empty.
    pub(crate) fn purge_chain(&self, chain: Chain, key: u64, budget: usize) -> (u64, bool) {
        let (mut ix, mut es) = self.index();
        ix.purge_step(&mut es, chain, key, budget, |es, e| {
            // SAFETY: e was a live entry, just taken out of the index.
            unsafe { self.release(es.node(e)) }
        })
    }

    fn list(&self, kind: u8) -> *mut ngx_queue_t {
        // SAFETY: sh is our locked header.
        unsafe {
            match kind {
                INACTIVE => &mut (*self.sh).neg_lru,
                JTI => &mut (*self.sh).jti_lru,
                _ => &mut (*self.sh).lru,
            }
        }
    }

    /// Allocates (evicting as allowed) and links one entry: a [`Node`], then `jwt`, `scope`.
    /// `neg_budget` bounds the bytes of inactive entries.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert(
        &self,
        digest: &[u8; 32],
        life: Life,
        kind: u8,
        data: (&[u8], &[u8]),
        keys: [u64; 2],
        neg_budget: u64,
        now_ms: i64,
    ) -> bool {
        let (jwt, scope) = data;
        let len = jwt.len() + scope.len();
        let split = body_len(len);
        let size = size_of::<Node>() + len - split;
        if kind == INACTIVE && !self.make_negative_room(charge(size), neg_budget, now_ms) {
            return false;
        }
        let body = match split {
            0 => ptr::null_mut(),
            _ => match self.alloc(split, kind, now_ms) {
                Some(b) => b as *mut u8,
                None => return false,
            },
        };
        let Some(node) = self.alloc(size, kind, now_ms) else {
            if !body.is_null() {
                // SAFETY: body was just allocated from this locked pool.
                unsafe { ngx_slab_free_locked(self.pool, body as *mut c_void) };
            }
            return false;
        };
        let header = Node {
            // SAFETY: a zeroed queue link is set when the node is linked below.
            lru: unsafe { core::mem::zeroed() },
            links: Links::default(),
            digest: *digest,
            expires_ms: life.expires_ms,
            keep_s: seconds_down(life.keep_ms),
            created_s: (life.created_ms.max(0) / 1000).min(u32::MAX as i64) as u32,
            body,
            jwt_len: jwt.len() as u32,
            scope_len: scope.len() as u16,
            kind,
        };
        // SAFETY: node points at fresh bytes enough for the header and the data; the zone is
        // locked while the entry is linked into the index and its LRU list.
        unsafe {
            ptr::write(node, header);
            let tail = (node as *mut u8).add(size_of::<Node>());
            put(body, split, tail, 0, jwt);
            put(body, split, tail, jwt.len(), scope);
            if !self.link(node, kind, keys, now_ms) {
                if !body.is_null() {
                    ngx_slab_free_locked(self.pool, body as *mut c_void);
                }
                ngx_slab_free_locked(self.pool, node as *mut c_void);
                return false;
            }
            ngx_queue_insert_after(self.list(kind), &mut (*node).lru);
            match kind {
                ACTIVE | INACTIVE => (*self.sh).entries += 1,
                JTI => (*self.sh).jti_count += 1,
                _ => {}
            }
            if kind == INACTIVE {
                (*self.sh).neg_bytes += charge(size);
            }
        }
        true
    }

    /// Evicts negative entries until `need` more bytes fit in the budget.
    fn make_negative_room(&self, need: u64, budget: u64, now_ms: i64) -> bool {
        if need > budget {
            return false;
        }
        loop {
            // SAFETY: sh is our locked header; `evict` lowers `neg_bytes`.
            if unsafe { (*self.sh).neg_bytes } + need <= budget {
                return true;
            }
            let Some(victim) = self.tail(INACTIVE) else {
                return false;
            };
            // SAFETY: victim is a live entry.
            unsafe { self.evict(victim, now_ms) };
        }
    }

    /// Indexes a new entry (not yet on an LRU list) under its digest and on its chains,
    /// evicting as `alloc` does while the index is full; `false` if it cannot.
    ///
    /// # Safety
    /// `node` must be a fresh entry of this locked zone, its header written.
    unsafe fn link(&self, node: *mut Node, kind: u8, keys: [u64; 2], now_ms: i64) -> bool {
        loop {
            let r = {
                let (mut ix, mut es) = self.index();
                let e = es.reference(node);
                ix.insert(&mut es, e, keys)
            };
            match r {
                Ok(()) => return true,
                Err(Error::Full) => {
                    let victim = match self.tail(INACTIVE) {
                        Some(v) => v,
                        None if kind != INACTIVE => match self.tail(ACTIVE) {
                            Some(v) => v,
                            None => return false,
                        },
                        None => return false,
                    };
                    // SAFETY: victim is a live entry (never `node`, on no list yet).
                    unsafe { self.evict(victim, now_ms) };
                }
                Err(_) => return false,
            }
        }
    }

    /// Unlinks and frees an entry.
    ///
    /// # Safety
    /// `node` must be a live entry of this locked zone.
    pub(crate) unsafe fn remove(&self, node: *mut Node) {
        {
            let (mut ix, mut es) = self.index();
            let e = es.reference(node);
            ix.remove(&mut es, e);
        }
        // SAFETY: per contract; it is out of the index now.
        unsafe { self.release(node) }
    }

    /// Frees an entry already out of the index: counts, LRU list, slabs.
    ///
    /// # Safety
    /// `node` must be an allocated entry of this locked zone, on its LRU list, in no index.
    unsafe fn release(&self, node: *mut Node) {
        // SAFETY: per contract.
        unsafe {
            let kind = (*node).kind;
            match kind {
                ACTIVE | INACTIVE => (*self.sh).entries = (*self.sh).entries.saturating_sub(1),
                JTI => (*self.sh).jti_count = (*self.sh).jti_count.saturating_sub(1),
                _ => {}
            }
            if kind == INACTIVE {
                let len = (*node).jwt_len as usize + (*node).scope_len as usize;
                let size = size_of::<Node>() + len - body_len(len);
                (*self.sh).neg_bytes = (*self.sh).neg_bytes.saturating_sub(charge(size));
            }
            ngx_queue_remove(&mut (*node).lru);
            if !(*node).body.is_null() {
                ngx_slab_free_locked(self.pool, (*node).body as *mut c_void);
            }
            ngx_slab_free_locked(self.pool, node as *mut c_void);
        }
    }

    /// Removes an entry to make room, counting it when it could still have been served.
    unsafe fn evict(&self, node: *mut Node, now_ms: i64) {
        // SAFETY: per contract of the callers: node is live.
        unsafe {
            if (*node).kind != PENDING && (*node).keep_ms() > now_ms {
                count(Counter::Evicted);
            }
            self.remove(node);
        }
    }

    /// The least recently used entry of a list, if any.
    fn tail(&self, kind: u8) -> Option<*mut Node> {
        let head = self.list(kind);
        // SAFETY: the list is consistent while the lock is held.
        unsafe {
            let last = (*head).prev;
            if last == head {
                return None;
            }
            Some((last as *mut u8).sub(core::mem::offset_of!(Node, lru)) as *mut Node)
        }
    }

    /// Moves an entry to the head of its list.
    ///
    /// # Safety
    /// `node` must be a live entry of this locked zone.
    pub(crate) unsafe fn touch(&self, node: *mut Node) {
        // SAFETY: per contract.
        unsafe {
            ngx_queue_remove(&mut (*node).lru);
            ngx_queue_insert_after(self.list((*node).kind), &mut (*node).lru);
        }
    }

    /// Reclaims up to `n` remembered proofs past their window from the tail.
    pub(crate) fn expire_proofs(&self, now_ms: i64, n: usize) {
        self.expire_list(JTI, now_ms, n);
    }

    /// Reclaims up to `n` entries past their keep time from each list's tail.
    pub(crate) fn expire(&self, now_ms: i64, n: usize) {
        for kind in [ACTIVE, INACTIVE, JTI] {
            self.expire_list(kind, now_ms, n);
        }
    }

    fn expire_list(&self, kind: u8, now_ms: i64, n: usize) {
        for _ in 0..n {
            match self.tail(kind) {
                // SAFETY: t is a live entry.
                Some(t) if unsafe { (*t).keep_ms() } <= now_ms => unsafe { self.remove(t) },
                _ => break,
            }
        }
    }

    /// Allocates `size` bytes for the zone's own use (as an active entry would be, evicting
    /// the least recently used entries until it fits).
    pub(crate) fn alloc_bytes(&self, size: usize, now_ms: i64) -> Option<*mut u8> {
        self.alloc(size, ACTIVE, now_ms).map(|p| p as *mut u8)
    }

    /// Allocates, evicting least recently used entries until it fits: negative entries
    /// first, and active ones only to make room for an active entry or a marker.
    fn alloc(&self, size: usize, kind: u8, now_ms: i64) -> Option<*mut Node> {
        loop {
            // SAFETY: the pool is locked.
            let p = unsafe { ngx_slab_alloc_locked(self.pool, size) } as *mut Node;
            if !p.is_null() {
                return Some(p);
            }
            let victim = match self.tail(INACTIVE) {
                Some(v) => v,
                None if kind != INACTIVE => self.tail(ACTIVE)?,
                None => return None,
            };
            // SAFETY: victim is a live entry.
            unsafe { self.evict(victim, now_ms) };
        }
    }
}

/// Copies an entry out of shared memory (the lock is held by the caller).
///
/// # Safety
/// `node` must be a live entry of a locked zone.
pub(crate) unsafe fn read_entry(node: *const Node) -> Entry {
    // SAFETY: per contract; the data follows the header.
    unsafe {
        if (*node).kind != ACTIVE {
            return Entry::Inactive;
        }
        let n = &*node;
        let (jwt_len, scope_len) = (n.jwt_len as usize, n.scope_len as usize);
        let split = body_len(jwt_len + scope_len);
        let tail = (node as *const u8).add(size_of::<Node>());
        // The data is `body[..split]` then the tail; the JWT is its first `jwt_len` bytes.
        let at = |i: usize| {
            if i < split {
                n.body.add(i)
            } else {
                tail.add(i - split)
            }
        };
        let mut jwt = Rc::<[u8]>::new_uninit_slice(jwt_len);
        if let Some(dst) = Rc::get_mut(&mut jwt) {
            let head = jwt_len.min(split);
            let dst = dst.as_mut_ptr() as *mut u8;
            if head > 0 {
                ptr::copy_nonoverlapping(n.body, dst, head);
            }
            ptr::copy_nonoverlapping(at(head), dst.add(head), jwt_len - head);
        }
        let mut scope = Vec::with_capacity(scope_len);
        for i in jwt_len..jwt_len + scope_len {
            scope.push(*at(i));
        }
        Entry::active(
            jwt.assume_init(),
            Rc::from(String::from_utf8_lossy(&scope).as_ref()),
        )
    }
}
