//! Fleet tier: opening values read from Redis, sealing round trips and key file parsing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phantom_core::fleet::keys::{parse_key_file, KeyFile};
use phantom_core::fleet::seal::{open, seal, Sealed};
use std::sync::OnceLock;

const KEY: &str = "pt:v1:t:lmUtLKZUQJpvNl8ubOGfgcIXTSBeAJAusqItEzFt7Zs";

fn keys() -> &'static KeyFile {
    static KEYS: OnceLock<KeyFile> = OnceLock::new();
    KEYS.get_or_init(|| {
        parse_key_file(
            "name v1 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n\
             seal k3 ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8\n\
             seal k2 QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8\n",
        )
        .expect("fixed key file")
    })
}

fuzz_target!(|data: &[u8]| {
    let k = keys();
    // Random bytes from Redis: an error, never a panic (a forgery would be a finding).
    assert!(open(k, KEY, data).is_err());
    // The same behind a valid header, so the AEAD and its length checks run.
    let mut framed = b"\x01\x02k3".to_vec();
    framed.extend_from_slice(data);
    assert!(open(k, KEY, &framed).is_err());

    // Round trip of a value built from the input; moved to another key it must not open.
    if data.len() >= 17 {
        let (head, rest) = data.split_at(17);
        let (scope, jwt) = rest.split_at(rest.len() / 2);
        let flags = head[16];
        let v = Sealed {
            created_ms: i64::from_be_bytes(head[..8].try_into().unwrap()),
            expires_ms: i64::from_be_bytes(head[8..16].try_into().unwrap()),
            active: flags & 1 != 0,
            sub_h: (flags & 2 != 0).then_some([flags; 16]),
            cid_h: (flags & 4 != 0).then_some([!flags; 16]),
            scope: String::from_utf8_lossy(scope).into_owned(),
            jwt: jwt.to_vec(),
        };
        let s = seal(k, KEY, &v).expect("seal");
        assert_eq!(open(k, KEY, &s), Ok(v));
        assert!(open(k, "pt:v1:t:other", &s).is_err());
    }

    // Key file text: parsed or rejected, never a panic.
    let _ = parse_key_file(&String::from_utf8_lossy(data));
});
