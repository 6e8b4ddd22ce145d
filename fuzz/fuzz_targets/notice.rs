//! Fleet purge notices: sealed payloads and XREAD replies read from Redis.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phantom_core::fleet::keys::{parse_key_file, KeyFile};
use phantom_core::fleet::notice::{
    open_notice, parse_xread, seal_notice, valid_id, Notice, Origin, ORIGIN_LEN,
};
use phantom_core::fleet::resp::{parse, Limits};
use phantom_core::purge::{Kind, MAX_VALUE_LEN};
use std::sync::OnceLock;

const STREAM: &str = "pt:v1:purge";

fn keys() -> &'static KeyFile {
    static KEYS: OnceLock<KeyFile> = OnceLock::new();
    KEYS.get_or_init(|| {
        parse_key_file(
            "name v1 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n\
             seal k3 ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8\n",
        )
        .expect("fixed key file")
    })
}

fuzz_target!(|data: &[u8]| {
    let k = keys();
    // Random payloads never open (a forgery would be a finding).
    assert!(open_notice(k, STREAM, data).is_err());
    let mut framed = b"\x01\x02k3".to_vec();
    framed.extend_from_slice(data);
    assert!(open_notice(k, STREAM, &framed).is_err());

    // Round trip of a notice built from the input: the first byte picks the kind and whether
    // there is an origin (version 2) or not (version 1); the next 16 bytes, if any, are it.
    if let Some((&code, rest)) = data.split_first() {
        if let Some(kind) = Kind::from_code(code % 3 + 1) {
            let origin: Option<Origin> = if code & 0x80 != 0 {
                rest.get(..ORIGIN_LEN).and_then(|o| o.try_into().ok())
            } else {
                None
            };
            let n = Notice {
                kind,
                value: rest
                    .get(..rest.len().min(MAX_VALUE_LEN))
                    .unwrap_or_default()
                    .to_vec(),
                t_ms: i64::from(code) << 40,
                origin,
            };
            let s = seal_notice(k, STREAM, &n).expect("seal");
            let opened = open_notice(k, STREAM, &s);
            assert_eq!(opened.as_ref(), Ok(&n));
            // Only the instance named in it skips a notice; one without an origin is nobody's.
            if let Some(o) = origin {
                assert_eq!(n.is_from(&o), o != [0; ORIGIN_LEN]);
                let mut other = o;
                other[0] ^= 1;
                assert!(!n.is_from(&other));
            } else {
                assert!(!n.is_from(&[0xa5; ORIGIN_LEN]));
            }
        }
    }

    // XREAD replies: entries or an error, never a panic; every id is valid.
    if let Ok(Some((reply, _))) = parse(data, &Limits::default()) {
        if let Ok(entries) = parse_xread(&reply) {
            assert!(entries.iter().all(|e| valid_id(e.id.as_bytes())));
        }
    }
});
