//! Purge request bodies: parsed or refused, never a panic; replies are always valid JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phantom_core::purge::{error_json, parse_body, result_json, MAX_VALUE_LEN};

fuzz_target!(|data: &[u8]| {
    match parse_body(data) {
        Ok(s) => {
            assert!(!s.value.is_empty() && s.value.len() <= MAX_VALUE_LEN);
            assert!(!s.value.iter().any(|&b| b < 0x20 || b == 0x7f));
            let n = data.len() as u64;
            let j = result_json(n, Some(n / 2), Some(n % 2 == 0));
            serde_json::from_str::<serde_json::Value>(&j).expect("result JSON");
        }
        Err(e) => {
            let d = e.to_string();
            // Short and fixed, or one echoed name of at most 32 bytes.
            assert!(d.len() <= 80, "{d}");
            let j = error_json("invalid_request", &d);
            let v: serde_json::Value = serde_json::from_str(&j).expect("error JSON");
            assert_eq!(v["error_description"], d.as_str());
        }
    }
});
