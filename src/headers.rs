//! Header list helpers: push, find and iterate nginx `ngx_list_t`s of `ngx_table_elt_t`.

use nginx_sys::{
    add_to_ngx_table, ngx_list_part_t, ngx_list_push, ngx_list_t, ngx_pool_t, ngx_str_t,
    ngx_table_elt_t,
};

/// Appends `key: value` (both copied into `pool`) and returns the new element.
///
/// # Safety
/// `list` must be an initialised header list whose memory comes from `pool`.
pub unsafe fn push(
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
pub unsafe fn iter<'a>(list: *const ngx_list_t) -> impl Iterator<Item = &'a mut ngx_table_elt_t> {
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
pub unsafe fn values(list: *const ngx_list_t, name: &[u8]) -> impl Iterator<Item = &[u8]> {
    // SAFETY: forwarded contract.
    unsafe { iter(list) }
        .filter(move |h| h.hash != 0 && h.key.as_bytes().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_bytes())
}

/// Allocates `len` bytes in `pool` and lets `fill` write them, returning the nginx string.
///
/// # Safety
/// `pool` must be a valid pool.
pub unsafe fn pool_build(
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

/// Copies `bytes` into `pool` as an nginx string.
///
/// # Safety
/// `pool` must be a valid pool.
pub unsafe fn pool_str(pool: *mut ngx_pool_t, bytes: &[u8]) -> Option<ngx_str_t> {
    // SAFETY: forwarded contract.
    unsafe { ngx_str_t::from_bytes(pool, bytes) }
}
