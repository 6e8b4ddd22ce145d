//! Header list helpers: push, find and iterate nginx `ngx_list_t`s of `ngx_table_elt_t`.

use nginx_sys::{
    add_to_ngx_table, ngx_list_part_t, ngx_list_push, ngx_list_t, ngx_pool_t, ngx_str_t,
    ngx_table_elt_t,
};

/// Appends `key: value` (both copied into `pool`) and returns the new element.
///
/// # Safety
/// `list` must be an initialised header list whose memory comes from `pool`.
pub(crate) unsafe fn push(
    list: *mut ngx_list_t,
    pool: *mut ngx_pool_t,
    key: &[u8],
    value: &[u8],
) -> Option<*mut ngx_table_elt_t> {
    // SAFETY: the caller guarantees an initialised list of table elements.
    let h = unsafe { ngx_list_push(list) } as *mut ngx_table_elt_t;
    // SAFETY: h is either NULL (checked by add_to_ngx_table) or a fresh element.
    unsafe { add_to_ngx_table(h, pool, key, value)? };
    #[cfg(nginx1_23_0)]
    // SAFETY: h is valid (add_to_ngx_table succeeded); `next` chains same-name headers.
    unsafe {
        (*h).next = core::ptr::null_mut();
    }
    Some(h)
}

/// Iterates the elements of a header list.
///
/// # Safety
/// `list` must be an initialised list of `ngx_table_elt_t` that outlives the iterator.
pub(crate) unsafe fn iter<'a>(
    list: *const ngx_list_t,
) -> impl Iterator<Item = &'a mut ngx_table_elt_t> {
    // SAFETY: the first part is embedded in the list.
    let mut part: *const ngx_list_part_t = unsafe { &(*list).part };
    let mut i = 0usize;
    core::iter::from_fn(move || loop {
        // SAFETY: part walks the list's chain of parts, each holding `nelts` elements.
        let p = unsafe { part.as_ref()? };
        if i < p.nelts {
            let elts = p.elts as *mut ngx_table_elt_t;
            i += 1;
            // SAFETY: i - 1 < nelts elements of this part.
            return Some(unsafe { &mut *elts.add(i - 1) });
        }
        part = p.next;
        i = 0;
    })
}

/// Values of the headers named `name` (case-insensitive).
///
/// # Safety
/// As for [`iter`].
pub(crate) unsafe fn values(list: *const ngx_list_t, name: &[u8]) -> impl Iterator<Item = &[u8]> {
    // SAFETY: forwarded contract.
    unsafe { iter(list) }
        .filter(move |h| h.hash != 0 && h.key.as_bytes().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_bytes())
}

/// Allocates `len` bytes in `pool` and lets `fill` write them, returning the nginx string.
///
/// # Safety
/// `pool` must be a valid pool.
pub(crate) unsafe fn pool_build(
    pool: *mut ngx_pool_t,
    len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> Option<ngx_str_t> {
    // SAFETY: the pool is valid; ngx_pnalloc returns NULL or `len` writable bytes.
    let data = unsafe { nginx_sys::ngx_pnalloc(pool, len) } as *mut u8;
    if data.is_null() {
        return None;
    }
    // SAFETY: data points at `len` bytes owned by the pool, uninitialised until `fill` writes.
    unsafe { data.write_bytes(0, len) };
    // SAFETY: as above, now initialised.
    fill(unsafe { core::slice::from_raw_parts_mut(data, len) });
    Some(ngx_str_t { len, data })
}

/// Copies `parts`, one after the other, into `pool` as one nginx string: the hit path's
/// `Bearer <JWT>`, written once (no zeroing first, unlike [`pool_build`]).
///
/// # Safety
/// `pool` must be a valid pool.
pub(crate) unsafe fn pool_concat(pool: *mut ngx_pool_t, parts: &[&[u8]]) -> Option<ngx_str_t> {
    let len = parts.iter().map(|p| p.len()).sum();
    // SAFETY: the pool is valid; ngx_pnalloc returns NULL or `len` writable bytes.
    let data = unsafe { nginx_sys::ngx_pnalloc(pool, len) } as *mut u8;
    if data.is_null() {
        return None;
    }
    let mut at = 0;
    for p in parts {
        // SAFETY: the parts' lengths sum to `len`, so each copy stays inside the allocation,
        // which no part overlaps (it is fresh).
        unsafe { core::ptr::copy_nonoverlapping(p.as_ptr(), data.add(at), p.len()) };
        at += p.len();
    }
    Some(ngx_str_t { len, data })
}

/// Copies `bytes` into `pool` as an nginx string.
///
/// # Safety
/// `pool` must be a valid pool.
pub(crate) unsafe fn pool_str(pool: *mut ngx_pool_t, bytes: &[u8]) -> Option<ngx_str_t> {
    // SAFETY: forwarded contract.
    unsafe { ngx_str_t::from_bytes(pool, bytes) }
}

/// Removes every element for which `gone` is true; returns how many went.
///
/// nginx lists have no removal, and other code keeps pointers to elements (`headers_in`
/// fields, `next` chains), so no element is moved: a part is shortened, advanced or split
/// around the removed element, a part left empty is unlinked (nginx's iterations assume
/// every part holds an element), and `nalloc` is lowered so that the next push starts a
/// fresh part instead of writing into memory a shortened part no longer owns.
///
/// # Safety
/// `list` must be an initialised list of `ngx_table_elt_t` allocated from `pool`.
pub(crate) unsafe fn remove_where(
    list: *mut ngx_list_t,
    pool: *mut ngx_pool_t,
    mut gone: impl FnMut(&ngx_table_elt_t) -> bool,
) -> Result<usize, ()> {
    let mut removed = 0;
    // One removal per pass: the part layout changes under a removal.
    loop {
        // SAFETY: forwarded contract; the search only reads.
        let Some((part, prev, i)) = (unsafe { find(list, &mut gone) }) else {
            return Ok(removed);
        };
        // SAFETY: part/prev/i were just found in this list.
        unsafe { unlink(list, pool, part, prev, i)? };
        removed += 1;
    }
}

/// The first element `gone` selects: its part, the part before it (NULL for the first
/// part), and its index in the part.
unsafe fn find(
    list: *mut ngx_list_t,
    gone: &mut impl FnMut(&ngx_table_elt_t) -> bool,
) -> Option<(*mut ngx_list_part_t, *mut ngx_list_part_t, usize)> {
    // SAFETY: the first part is embedded in the list; parts chain through `next`.
    let mut part: *mut ngx_list_part_t = unsafe { &mut (*list).part };
    let mut prev: *mut ngx_list_part_t = core::ptr::null_mut();
    while !part.is_null() {
        // SAFETY: part is a live part of the list with `nelts` elements.
        let p = unsafe { &*part };
        let elts = p.elts as *const ngx_table_elt_t;
        for i in 0..p.nelts {
            // SAFETY: i < nelts.
            if gone(unsafe { &*elts.add(i) }) {
                return Some((part, prev, i));
            }
        }
        prev = part;
        part = p.next;
    }
    None
}

unsafe fn unlink(
    list: *mut ngx_list_t,
    pool: *mut ngx_pool_t,
    part: *mut ngx_list_part_t,
    prev: *mut ngx_list_part_t,
    i: usize,
) -> Result<(), ()> {
    // SAFETY: per the caller, part (and prev when not NULL) are live parts of the list.
    let (l, p) = unsafe { (&mut *list, &mut *part) };
    let size = l.size;
    let n = p.nelts;
    if n == 1 {
        let next = p.next;
        if prev.is_null() {
            // The embedded first part: take over the next part, or stay as the empty list.
            if next.is_null() {
                p.nelts = 0;
            } else {
                // SAFETY: next is a live part; the list's first part becomes a copy of it.
                unsafe { *p = *next };
                if l.last == next {
                    l.last = part;
                }
            }
        } else {
            // SAFETY: prev is the live part before this one.
            unsafe { (*prev).next = next };
            if l.last == part {
                l.last = prev;
            }
        }
    } else if i == 0 {
        // SAFETY: the part keeps its remaining n - 1 elements, which follow element 0.
        p.elts = unsafe { (p.elts as *mut u8).add(size) } as *mut _;
        p.nelts -= 1;
    } else if i == n - 1 {
        p.nelts -= 1;
    } else {
        // SAFETY: pool is the list's pool; the new part describes elements i+1..n in place.
        let tail = unsafe { nginx_sys::ngx_palloc(pool, core::mem::size_of::<ngx_list_part_t>()) }
            as *mut ngx_list_part_t;
        if tail.is_null() {
            return Err(());
        }
        // SAFETY: tail is fresh memory for a part header.
        unsafe {
            tail.write(ngx_list_part_t {
                elts: (p.elts as *mut u8).add((i + 1) * size) as *mut _,
                nelts: n - i - 1,
                next: p.next,
            });
        }
        p.nelts = i;
        p.next = tail;
        if l.last == part {
            l.last = tail;
        }
    }
    // SAFETY: l.last is a live part.
    l.nalloc = unsafe { (*l.last).nelts }.max(1);
    Ok(())
}
