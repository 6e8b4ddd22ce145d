//! JWT payload and claims parsing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phantom_core::jwt;

fuzz_target!(|data: &[u8]| {
    let compact = jwt::is_compact(data);
    if compact {
        // Whatever is accepted as compact is safe to put into an HTTP header.
        assert!(data.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c)));
    }
    if let Ok(claims) = jwt::payload(data) {
        assert!(compact);
        if let Ok(info) = jwt::token_info(&claims) {
            assert!(info.exp >= 0);
        }
        let _ = jwt::claim_text(&claims, "sub");
    }
});
