//! Authorization header / token-source parsing and the introspection body built from it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phantom_core::{form, token};

fuzz_target!(|data: &[u8]| {
    for t in [token::bearer_token(data), token::source_token(data)].into_iter().flatten() {
        // Accepted tokens are b64token: the form body then never needs more than %XX escapes.
        assert!(t.len() <= token::MAX_TOKEN_LEN);
        let body = form::introspection_body(t);
        assert!(body.iter().all(|c| c.is_ascii_graphic()));
        assert!(!body[6..].contains(&b'&') && !body[6..].contains(&b'='));
    }
    let _ = phantom_core::cache_control::max_age(data);
});
