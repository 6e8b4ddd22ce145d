//! The shared-memory level: an rbtree index and an LRU list in an nginx slab zone.
//!
//! Every operation holds the slab pool's own mutex, which the master process releases if a
//! worker dies holding it, and only for index work and copies, never across I/O. Each entry
//! is one slab allocation: a [`Node`] header followed by the JWT and scope bytes.

use core::ffi::c_void;
use core::mem::size_of;
use core::ptr;
use std::rc::Rc;

use nginx_sys::{
    ngx_conf_t, ngx_int_t, ngx_queue_insert_after, ngx_queue_remove, ngx_queue_t,
    ngx_rbtree_delete, ngx_rbtree_init, ngx_rbtree_insert, ngx_rbtree_node_t, ngx_rbtree_t,
    ngx_shared_memory_add, ngx_shm_zone_t, ngx_shmtx_lock, ngx_shmtx_unlock, ngx_slab_alloc_locked,
    ngx_slab_free_locked, ngx_slab_pool_t, ngx_str_t, NGX_ERROR, NGX_OK,
};

use phantom_core::index;

use super::Entry;
use crate::status::metrics::{count, Counter};
use crate::Module;
use ngx::http::HttpModule;

/// Marks a zone laid out by this version of the module (checked when a reload reuses it).
const MAGIC: u64 = 0x5054_4b43_4143_4832; // "PTKCACH2"

/// Entries bigger than this share of the zone are not cached at all.
const MAX_SHARE: usize = 4;

#[repr(C)]
struct Shared {
    magic: u64,
    tree: ngx_rbtree_t,
    sentinel: ngx_rbtree_node_t,
    /// Most recently used at the head, eviction candidates at the tail.
    lru: ngx_queue_t,
    /// Entries (markers excluded), for the status page.
    entries: u64,
}

#[repr(C)]
struct Node {
    /// First, so a tree node pointer is a Node pointer. `key` = first 8 digest bytes
    /// (big-endian); equal keys are ordered by the digest (see `phantom_core::index`).
    rb: ngx_rbtree_node_t,
    lru: ngx_queue_t,
    digest: [u8; 32],
    expires_ms: i64,
    kind: u8,
    jwt_len: u32,
    scope_len: u32,
}

/// The shared zone of one `phantom_token_cache_zone`.
pub struct Zone {
    shm: *mut ngx_shm_zone_t,
}

impl Default for Zone {
    fn default() -> Self {
        Zone {
            shm: ptr::null_mut(),
        }
    }
}

/// `Node::kind`: what an entry holds.
const INACTIVE: u8 = 0;
const ACTIVE: u8 = 1;
/// A worker is introspecting this token; others wait for its result (no data follows).
const PENDING: u8 = 2;

/// What a store did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stored {
    Yes,
    /// Larger than a quarter of the zone.
    TooBig,
    /// No room even after evicting everything (or the zone is not usable).
    NoRoom,
}

/// The zone's fill, for the status page.
pub struct Usage {
    pub size: u64,
    pub used: u64,
    pub entries: u64,
}

/// Result of a shared-zone lookup.
pub enum Found {
    Fresh(Entry, i64),
    Pending,
    Expired,
    Missing,
}

/// Declares the shared memory zone; nginx maps it before the workers start.
///
/// # Safety
/// `cf` must be valid.
pub unsafe fn declare(
    cf: *mut ngx_conf_t,
    zone: &mut Zone,
    name: &str,
    size: usize,
) -> Result<(), ()> {
    // SAFETY: cf is valid; the name is copied by nginx into the zone list.
    let name = unsafe { ngx_str_t::from_bytes((*cf).pool, name.as_bytes()) }.ok_or(())?;
    let mut name = name;
    let tag = Module::module() as *const _ as *mut c_void;
    // SAFETY: all pointers valid; nginx reports conflicts itself.
    let shm = unsafe { ngx_shared_memory_add(cf, &mut name, size, tag) };
    if shm.is_null() {
        return Err(());
    }
    // SAFETY: shm is the zone just added; names are unique (checked by the caller).
    unsafe { (*shm).init = Some(init_zone) };
    zone.shm = shm;
    Ok(())
}

/// Zone init: reuse a zone kept across reload, or lay out a fresh one.
unsafe extern "C" fn init_zone(shm: *mut ngx_shm_zone_t, _old: *mut c_void) -> ngx_int_t {
    // SAFETY: nginx calls init with the mapped zone; its start is the slab pool.
    let pool = unsafe { (*shm).shm.addr } as *mut ngx_slab_pool_t;
    // SAFETY: pool is the zone's initialised slab pool.
    unsafe {
        let existing = (*pool).data as *mut Shared;
        if !existing.is_null() && (*existing).magic == MAGIC {
            // Reused on reload: the tree's insert callback points into this module's code.
            (*existing).tree.insert = Some(insert_node);
            return NGX_OK as ngx_int_t;
        }
        ngx_shmtx_lock(&mut (*pool).mutex);
        let sh = ngx_slab_alloc_locked(pool, size_of::<Shared>()) as *mut Shared;
        if sh.is_null() {
            ngx_shmtx_unlock(&mut (*pool).mutex);
            return NGX_ERROR as ngx_int_t;
        }
        (*sh).magic = MAGIC;
        ngx_rbtree_init(&mut (*sh).tree, &mut (*sh).sentinel, Some(insert_node));
        nginx_sys::ngx_queue_init(&mut (*sh).lru);
        (*sh).entries = 0;
        (*pool).data = sh as *mut c_void;
        // Allocation failures are handled by eviction, so don't log them as critical.
        (*pool).set_log_nomem(0);
        ngx_shmtx_unlock(&mut (*pool).mutex);
    }
    NGX_OK as ngx_int_t
}

/// Holds the slab pool mutex; unlocks on drop.
struct Locked {
    pool: *mut ngx_slab_pool_t,
    sh: *mut Shared,
}

impl Drop for Locked {
    fn drop(&mut self) {
        // SAFETY: we hold the lock taken in `Zone::lock`.
        unsafe { ngx_shmtx_unlock(&mut (*self.pool).mutex) };
    }
}

fn tree_key(digest: &[u8; 32]) -> usize {
    phantom_core::index::tree_key(digest) as usize
}

/// The index as `phantom_core::index` searches it: nodes by pointer, nil = the sentinel.
struct Index {
    sentinel: *mut ngx_rbtree_node_t,
}

impl index::Tree for Index {
    type Node = *mut ngx_rbtree_node_t;
    fn is_nil(&self, n: Self::Node) -> bool {
        n == self.sentinel
    }
    fn left(&self, n: Self::Node) -> Self::Node {
        // SAFETY: n is a live node of the locked tree (never the sentinel here).
        unsafe { (*n).left }
    }
    fn right(&self, n: Self::Node) -> Self::Node {
        // SAFETY: as above.
        unsafe { (*n).right }
    }
    fn key(&self, n: Self::Node) -> u64 {
        // SAFETY: as above.
        unsafe { (*n).key as u64 }
    }
    fn digest(&self, n: Self::Node) -> &[u8; 32] {
        // SAFETY: every node of the tree is the first field of a Node.
        unsafe { &(*(n as *const Node)).digest }
    }
}

/// The tree's insert callback: places `node` below `root` by the index's one total order
/// (key, then full digest), the order `Locked::find` searches by.
unsafe extern "C" fn insert_node(
    root: *mut ngx_rbtree_node_t,
    node: *mut ngx_rbtree_node_t,
    sentinel: *mut ngx_rbtree_node_t,
) {
    let idx = Index { sentinel };
    // SAFETY: node is the first field of a Node being inserted under the zone lock.
    let digest = unsafe { &(*(node as *const Node)).digest };
    let (parent, left) = index::attach_point(&idx, root, digest);
    // SAFETY: parent is a live node whose chosen child is the sentinel; nginx's rbtree
    // contract: link the node as a red leaf.
    unsafe {
        if left {
            (*parent).left = node;
        } else {
            (*parent).right = node;
        }
        (*node).parent = parent;
        (*node).left = sentinel;
        (*node).right = sentinel;
        (*node).color = 1;
    }
}

impl Zone {
    fn lock(&self) -> Option<Locked> {
        // SAFETY: shm was set at configuration; addr is mapped in every worker.
        let pool = unsafe { self.shm.as_ref()?.shm.addr } as *mut ngx_slab_pool_t;
        // SAFETY: pool is the zone's slab pool; data is our Shared once init ran.
        unsafe {
            let sh = (*pool).data as *mut Shared;
            if sh.is_null() {
                return None;
            }
            ngx_shmtx_lock(&mut (*pool).mutex);
            Some(Locked { pool, sh })
        }
    }

    pub fn size(&self) -> usize {
        // SAFETY: shm was set at configuration.
        unsafe { self.shm.as_ref() }.map_or(0, |z| z.shm.size)
    }

    pub fn lookup(&self, digest: &[u8; 32], now_ms: i64) -> Found {
        let Some(l) = self.lock() else {
            return Found::Missing;
        };
        let Some(node) = l.find(digest) else {
            return Found::Missing;
        };
        // SAFETY: node is a live entry of the locked tree.
        unsafe {
            let pending = (*node).kind == PENDING;
            if (*node).expires_ms <= now_ms {
                l.remove(node);
                return if pending {
                    Found::Missing
                } else {
                    Found::Expired
                };
            }
            if pending {
                return Found::Pending;
            }
            ngx_queue_remove(&mut (*node).lru);
            ngx_queue_insert_after(&mut (*l.sh).lru, &mut (*node).lru);
            Found::Fresh(read_entry(node), (*node).expires_ms)
        }
    }

    /// Stores `entry` in place of whatever the zone holds for `digest` (this worker's
    /// marker, usually); an entry too large to cache only withdraws the marker.
    pub fn store(&self, digest: &[u8; 32], entry: &Entry, expires_ms: i64, now_ms: i64) -> Stored {
        let (jwt, scope): (&[u8], &[u8]) = match entry {
            Entry::Active { jwt, scope } => (jwt, scope.as_bytes()),
            Entry::Inactive => (&[], &[]),
        };
        let need = size_of::<Node>() + jwt.len() + scope.len();
        if need > self.size() / MAX_SHARE || jwt.len() > u32::MAX as usize {
            self.release(digest);
            return Stored::TooBig;
        }
        let Some(l) = self.lock() else {
            return Stored::NoRoom;
        };
        if let Some(old) = l.find(digest) {
            // SAFETY: old is a live entry of the locked tree.
            unsafe { l.remove(old) };
        }
        l.expire(now_ms, 2);
        let kind = if matches!(entry, Entry::Active { .. }) {
            ACTIVE
        } else {
            INACTIVE
        };
        if l.insert(digest, expires_ms, kind, jwt, scope) {
            Stored::Yes
        } else {
            Stored::NoRoom
        }
    }

    /// Size, bytes in use (whole pages) and entries.
    pub fn usage(&self) -> Usage {
        let size = self.size() as u64;
        let Some(l) = self.lock() else {
            return Usage {
                size,
                used: 0,
                entries: 0,
            };
        };
        // SAFETY: the pool and our header are consistent while the lock is held.
        unsafe {
            let page = nginx_sys::ngx_pagesize as u64;
            let pool = &*l.pool;
            let pages = (pool.end.offset_from(pool.start) as u64) / page.max(1);
            Usage {
                size,
                used: pages.saturating_sub(pool.pfree as u64) * page,
                entries: (*l.sh).entries,
            }
        }
    }
}

impl Zone {
    /// Marks `digest` as being introspected until `until_ms`; `false` if the zone already
    /// holds an entry or a marker for it (another worker got there first).
    pub fn claim(&self, digest: &[u8; 32], until_ms: i64, now_ms: i64) -> bool {
        let Some(l) = self.lock() else { return true };
        if let Some(node) = l.find(digest) {
            // SAFETY: node is a live entry of the locked tree.
            if unsafe { (*node).expires_ms } > now_ms {
                return false;
            }
            // SAFETY: as above; an expired entry or marker is replaced.
            unsafe { l.remove(node) };
        }
        l.insert(digest, until_ms, PENDING, &[], &[]);
        true
    }

    /// Removes this worker's marker for `digest` (its result was not cached).
    pub fn release(&self, digest: &[u8; 32]) {
        let Some(l) = self.lock() else { return };
        if let Some(node) = l.find(digest) {
            // SAFETY: node is a live entry of the locked tree.
            if unsafe { (*node).kind } == PENDING {
                unsafe { l.remove(node) };
            }
        }
    }
}

impl Locked {
    /// Allocates (evicting as needed) and links one entry: a [`Node`], then `jwt` and `scope`.
    fn insert(
        &self,
        digest: &[u8; 32],
        expires_ms: i64,
        kind: u8,
        jwt: &[u8],
        scope: &[u8],
    ) -> bool {
        let Some(node) = self.alloc(size_of::<Node>() + jwt.len() + scope.len()) else {
            return false;
        };
        let header = Node {
            // SAFETY: zeroed tree and queue links are set when the node is linked below.
            rb: unsafe { core::mem::zeroed() },
            // SAFETY: as above.
            lru: unsafe { core::mem::zeroed() },
            digest: *digest,
            expires_ms,
            kind,
            jwt_len: jwt.len() as u32,
            scope_len: scope.len() as u32,
        };
        // SAFETY: node points at fresh bytes enough for the header and the data; the zone is
        // locked while the entry is linked into the tree and the LRU list.
        unsafe {
            ptr::write(node, header);
            let data = (node as *mut u8).add(size_of::<Node>());
            ptr::copy_nonoverlapping(jwt.as_ptr(), data, jwt.len());
            ptr::copy_nonoverlapping(scope.as_ptr(), data.add(jwt.len()), scope.len());
            (*node).rb.key = tree_key(digest);
            ngx_rbtree_insert(&mut (*self.sh).tree, &mut (*node).rb);
            ngx_queue_insert_after(&mut (*self.sh).lru, &mut (*node).lru);
            if kind != PENDING {
                (*self.sh).entries += 1;
            }
        }
        true
    }

    /// Finds the entry whose full digest matches (keys may collide, digests may not).
    fn find(&self, digest: &[u8; 32]) -> Option<*mut Node> {
        // SAFETY: the tree is consistent while the lock is held.
        let (root, sentinel) = unsafe { ((*self.sh).tree.root, (*self.sh).tree.sentinel) };
        index::find(&Index { sentinel }, root, digest).map(|n| n as *mut Node)
    }

    /// Unlinks and frees an entry.
    ///
    /// # Safety
    /// `node` must be a live entry of this locked zone.
    unsafe fn remove(&self, node: *mut Node) {
        // SAFETY: per contract.
        unsafe {
            if (*node).kind != PENDING {
                (*self.sh).entries = (*self.sh).entries.saturating_sub(1);
            }
            ngx_queue_remove(&mut (*node).lru);
            ngx_rbtree_delete(&mut (*self.sh).tree, &mut (*node).rb);
            ngx_slab_free_locked(self.pool, node as *mut c_void);
        }
    }

    /// The least recently used entry, if any.
    fn tail(&self) -> Option<*mut Node> {
        // SAFETY: the list is consistent while the lock is held.
        unsafe {
            let head = &mut (*self.sh).lru as *mut ngx_queue_t;
            let last = (*head).prev;
            if last == head {
                return None;
            }
            Some((last as *mut u8).sub(core::mem::offset_of!(Node, lru)) as *mut Node)
        }
    }

    /// Reclaims up to `n` expired entries from the LRU tail.
    fn expire(&self, now_ms: i64, n: usize) {
        for _ in 0..n {
            match self.tail() {
                // SAFETY: t is a live entry.
                Some(t) if unsafe { (*t).expires_ms } <= now_ms => unsafe { self.remove(t) },
                _ => return,
            }
        }
    }

    /// Allocates, evicting least recently used entries until it fits.
    fn alloc(&self, size: usize) -> Option<*mut Node> {
        loop {
            // SAFETY: the pool is locked.
            let p = unsafe { ngx_slab_alloc_locked(self.pool, size) } as *mut Node;
            if !p.is_null() {
                return Some(p);
            }
            let victim = self.tail()?;
            // SAFETY: victim is a live entry.
            unsafe {
                if (*victim).kind != PENDING && (*victim).expires_ms > crate::handler::now_ms() {
                    count(Counter::Evicted);
                }
                self.remove(victim)
            };
        }
    }
}

/// Copies an entry out of shared memory (the lock is held by the caller).
///
/// # Safety
/// `node` must be a live entry of a locked zone.
unsafe fn read_entry(node: *const Node) -> Entry {
    // SAFETY: per contract; the data follows the header.
    unsafe {
        if (*node).kind != ACTIVE {
            return Entry::Inactive;
        }
        let data = (node as *const u8).add(size_of::<Node>());
        let jwt = core::slice::from_raw_parts(data, (*node).jwt_len as usize);
        let scope = core::slice::from_raw_parts(data.add(jwt.len()), (*node).scope_len as usize);
        Entry::Active {
            jwt: Rc::from(jwt),
            scope: Rc::from(String::from_utf8_lossy(scope).as_ref()),
        }
    }
}
