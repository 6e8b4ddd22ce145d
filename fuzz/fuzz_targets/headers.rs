//! Cache-Control freshness and the removal of a token source from arguments and cookies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phantom_core::{cache_control, source};

fuzz_target!(|data: &[u8]| {
    // Forbidding directives win wherever they are appended.
    for forbid in [&b", no-store"[..], b",private", b", no-cache=\"x\""] {
        let mut v = data.to_vec();
        v.extend_from_slice(forbid);
        if !data.contains(&b'"') && !data.contains(&b'\\') {
            assert_eq!(cache_control::max_age(&v), Some(0));
        }
    }
    let _ = cache_control::max_age(data);
    // Whatever is left after stripping no longer holds the named item.
    let (name, rest) = data.split_at(data.len().min(4));
    if let Some(args) = source::strip_arg(rest, name) {
        assert!(args.len() <= rest.len());
        assert!(source::strip_arg(&args, name).is_none() || name.is_empty());
    }
    if let Some(cookies) = source::strip_cookie(rest, name) {
        assert!(source::strip_cookie(&cookies, name).is_none() || name.is_empty());
    }
});
