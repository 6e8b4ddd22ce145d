//! The zone's index glue: `phantom_core::zone_index` (a hash table by digest and the subject
//! and client chains) over slot arrays in the zone's slab pool, and entries by reference.
//!
//! Nothing here is a pointer: the slot arrays are at offsets from the pool's start, and an
//! entry's reference is its offset from the pool's start in units of 8 bytes (slab
//! allocations are 8-byte aligned at least), so zones up to 32 GiB fit a `u32`.

use core::mem::size_of;

use nginx_sys::{ngx_slab_alloc_locked, ngx_slab_pool_t};
use phantom_core::chain::{Entries, Links};
use phantom_core::table::{Slot, Table};
use phantom_core::zone_index::{layout, ZoneIndex};

use super::Node;

/// Where the index lives in the zone, and its counts (in `Shared`, under the zone lock).
#[repr(C)]
pub(crate) struct IndexShared {
    primary_off: u64,
    groups_off: u64,
    primary_slots: u32,
    groups_slots: u32,
    primary_len: u32,
    groups_len: u32,
}

const _: () = assert!(size_of::<IndexShared>() == 32);
const _: () = assert!(size_of::<Slot>() == 8);

/// Entry references are offsets in this unit.
const UNIT: usize = 8;

/// Lays out the index of a zone of `size` bytes (slot arrays zeroed: empty).
///
/// # Safety
/// `pool` must be the zone's slab pool, locked, and `ix` in it.
pub(crate) unsafe fn init(pool: *mut ngx_slab_pool_t, ix: *mut IndexShared, size: usize) -> bool {
    if size / UNIT > u32::MAX as usize {
        return false;
    }
    let (p, g) = layout(size);
    // SAFETY: per contract; the arrays are fresh slab allocations of the byte counts asked.
    unsafe {
        let pa = ngx_slab_alloc_locked(pool, p * size_of::<Slot>()) as *mut u8;
        let ga = ngx_slab_alloc_locked(pool, g * size_of::<Slot>()) as *mut u8;
        if pa.is_null() || ga.is_null() {
            return false;
        }
        core::ptr::write_bytes(pa, 0, p * size_of::<Slot>());
        core::ptr::write_bytes(ga, 0, g * size_of::<Slot>());
        let base = pool as *mut u8;
        ix.write(IndexShared {
            primary_off: pa.offset_from(base) as u64,
            groups_off: ga.offset_from(base) as u64,
            primary_slots: p as u32,
            groups_slots: g as u32,
            primary_len: 0,
            groups_len: 0,
        });
    }
    true
}

/// The zone's entries by reference, as the index reads and links them.
pub(crate) struct ZoneEntries {
    base: *mut u8,
}

impl ZoneEntries {
    pub(crate) fn new(pool: *mut ngx_slab_pool_t) -> Self {
        ZoneEntries {
            base: pool as *mut u8,
        }
    }

    pub(crate) fn node(&self, e: u32) -> *mut Node {
        self.base.wrapping_add(e as usize * UNIT) as *mut Node
    }

    pub(crate) fn reference(&self, node: *const Node) -> u32 {
        ((node as usize).wrapping_sub(self.base as usize) / UNIT) as u32
    }
}

impl Entries for ZoneEntries {
    fn digest(&self, e: u32) -> [u8; 32] {
        // SAFETY: the index holds references of live entries only (kept in step under the
        // zone lock), and the zone hands it only live entries.
        unsafe { (*self.node(e)).digest }
    }
    fn links(&self, e: u32) -> Links {
        // SAFETY: as above.
        unsafe { (*self.node(e)).links }
    }
    fn set_links(&mut self, e: u32, l: Links) {
        // SAFETY: as above.
        unsafe { (*self.node(e)).links = l }
    }
}

/// The index of a locked zone.
///
/// # Safety
/// `pool` must be the zone's locked slab pool and `ix` its index header, for `'a`; no other
/// index over the same zone may be alive meanwhile.
pub(crate) unsafe fn open<'a>(
    pool: *mut ngx_slab_pool_t,
    ix: *mut IndexShared,
) -> (ZoneIndex<'a>, ZoneEntries) {
    // SAFETY: per contract; the arrays were laid out by `init` inside the pool.
    unsafe {
        let base = pool as *mut u8;
        let ix = &mut *ix;
        let slots = |off: u64, n: u32| {
            let p = base.add(off as usize) as *mut Slot;
            if off == 0 {
                &mut [][..]
            } else {
                core::slice::from_raw_parts_mut(p, n as usize)
            }
        };
        let p = slots(ix.primary_off, ix.primary_slots);
        let g = slots(ix.groups_off, ix.groups_slots);
        let index = ZoneIndex::new(
            Table::new(p, &mut ix.primary_len),
            Table::new(g, &mut ix.groups_len),
        );
        (index, ZoneEntries::new(pool))
    }
}
