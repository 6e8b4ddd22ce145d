//! What an entry costs in nginx's slab allocator, and how to split it to cost least.
//!
//! The slab allocator rounds a request up to a power of two (at least 8 bytes) up to half a
//! page, and to whole pages above. An entry is a fixed header followed by its data (JWT
//! and scope); moving the data's head into a second allocation can waste far less of those
//! size classes: a 1 KiB JWT behind a 120-byte header takes 1,152 bytes instead of 2,048.

/// The bytes a slab allocation of `size` really takes, with pages of `page` bytes.
pub fn charge(size: usize, page: usize) -> u64 {
    let page = page.max(4096);
    if size == 0 {
        0
    } else if size > page / 2 {
        size.div_ceil(page) as u64 * page as u64
    } else {
        size.next_power_of_two().max(8) as u64
    }
}

/// How many leading bytes of `len` bytes of data go to a separate body allocation: the power
/// of two (at least 64, or none) that makes header + tail and body take the fewest bytes.
pub fn body_len(header: usize, len: usize, page: usize) -> usize {
    let cost = |b: usize| charge(header + len - b, page) + charge(b, page);
    let mut best = 0;
    let mut b = 64;
    while b <= len {
        if cost(b) < cost(best) {
            best = b;
        }
        b *= 2;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: usize = 4096;

    #[test]
    fn charge_follows_the_size_classes() {
        assert_eq!(charge(0, PAGE), 0);
        assert_eq!(charge(1, PAGE), 8);
        assert_eq!(charge(120, PAGE), 128);
        assert_eq!(charge(129, PAGE), 256);
        assert_eq!(charge(2048, PAGE), 2048);
        assert_eq!(charge(2049, PAGE), 4096);
        assert_eq!(charge(4097, PAGE), 8192);
        assert_eq!(charge(100, 0), 128, "a page below 4 KiB is taken as 4 KiB");
    }

    #[test]
    fn a_1_kib_jwt_takes_1152_bytes() {
        let split = body_len(120, 1024, PAGE);
        let total = charge(120 + 1024 - split, PAGE) + charge(split, PAGE);
        assert_eq!(total, 128 + 1024);
    }

    #[test]
    fn the_split_never_costs_more_than_none() {
        for len in 0..9000 {
            let b = body_len(120, len, PAGE);
            assert!(b <= len);
            let cost = charge(120 + len - b, PAGE) + charge(b, PAGE);
            assert!(cost <= charge(120 + len, PAGE), "{len}");
        }
    }

    #[test]
    fn small_data_stays_in_the_header_allocation() {
        assert_eq!(body_len(120, 0, PAGE), 0);
        assert_eq!(body_len(120, 8, PAGE), 0);
    }
}
