//! Identity-server response interpretation in every format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phantom_core::introspection::{interpret, Format, Verdict};

fuzz_target!(|data: &[u8]| {
    for format in [Format::Jwt, Format::JsonField("jwt".into()), Format::Rfc9701] {
        if let Verdict::Active { jwt, info } = interpret(&format, data, 1_700_000_000) {
            // Only compact JWTs (header-safe) are ever forwarded.
            assert!(phantom_core::jwt::is_compact(&jwt));
            assert!(info.exp >= 0);
        }
    }
});
