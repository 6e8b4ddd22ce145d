//! The fleet key file and HMAC'd Redis key names.
//!
//! The key file is text, one item per line; blank lines are ignored and a word starting with
//! `#` starts a comment that runs to the end of the line:
//!
//! ```text
//! name  v1 <base64url of 32 bytes>   # K_name: HMAC key of Redis key names and selectors
//! seal  k3 <base64url of 32 bytes>   # the first seal line encrypts
//! seal  k2 <base64url of 32 bytes>   # later lines only decrypt (rotation)
//! redis_user phantom                 # optional: HELLO 2 AUTH <user> <password>
//! redis_password <password>          # optional; one word, no whitespace (a user without it
//!                                     # takes the zone's redis_password_file)
//! ```
//!
//! Exactly one `name` line and at least one `seal` line are required. Key ids (`kid`) are 1 to
//! [`MAX_KID_LEN`] characters of `A-Z a-z 0-9 . _ -`; seal kids are unique, because a sealed
//! value names the key that sealed it by its kid. Keys are 32 bytes in base64url, with or
//! without `=` padding (`head -c 32 /dev/urandom | basenc --base64url`). A key reused between
//! `name` and `seal`, or between two `seal` lines, is rejected, and so is a key of 32 equal
//! bytes (a placeholder). Errors name the line number and the item, never a secret.
//!
//! Rotation of the seal key: (1) add the new key as the second `seal` line everywhere and
//! reload; (2) move it to the first line and reload; (3) remove the old line once every value
//! sealed under it has expired. Changing the `name` key starts a new key space: change the key
//! prefix with it (`pt:v2:` to `pt:v2b:`, say).

use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use ring::aead::{LessSafeKey, UnboundKey, CHACHA20_POLY1305};
use ring::hmac;
use std::fmt;

/// Longest key id, in bytes.
pub const MAX_KID_LEN: usize = 32;

/// Length of every key in the file.
pub const KEY_LEN: usize = 32;

/// base64url without padding on output, padding optional on input.
pub(crate) const B64URL: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A `seal` line: the key id written into every value it seals, and the prepared AEAD key.
#[derive(Clone)]
pub struct SealKey {
    pub(crate) kid: String,
    pub(crate) key: LessSafeKey,
}

impl SealKey {
    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

/// A parsed key file. `Debug` shows key ids and the Redis user, never a key or the password.
#[derive(Clone)]
pub struct KeyFile {
    name_kid: String,
    name_key: [u8; KEY_LEN],
    seal: Vec<SealKey>,
    redis_user: Option<String>,
    redis_password: Option<String>,
}

impl KeyFile {
    /// The key id of the `name` line (not secret; for logs and status).
    pub fn name_kid(&self) -> &str {
        &self.name_kid
    }

    /// The HMAC key for Redis key names and purge selectors (pass it to [`redis_key`]).
    pub fn name_key(&self) -> &[u8; KEY_LEN] {
        &self.name_key
    }

    /// The seal keys in file order: the first seals, all open.
    pub fn seal_keys(&self) -> &[SealKey] {
        &self.seal
    }

    /// The seal key for `kid`, if listed.
    pub fn seal_key(&self, kid: &[u8]) -> Option<&SealKey> {
        self.seal.iter().find(|k| k.kid.as_bytes() == kid)
    }

    /// The Redis ACL user, if configured.
    pub fn redis_user(&self) -> Option<&str> {
        self.redis_user.as_deref()
    }

    /// The Redis password, if configured.
    pub fn redis_password(&self) -> Option<&str> {
        self.redis_password.as_deref()
    }
}

impl fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<&str> = self.seal.iter().map(|k| k.kid.as_str()).collect();
        f.debug_struct("KeyFile")
            .field("name_kid", &self.name_kid)
            .field("seal_kids", &kids)
            .field("redis_user", &self.redis_user)
            .field(
                "redis_password",
                &self.redis_password.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= MAX_KID_LEN
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Decodes a 32-byte key; the error never includes the text.
fn decode_key(text: &str, lineno: usize, item: &str) -> Result<[u8; KEY_LEN], String> {
    let bad = || format!("key file line {lineno}: {item}: the key is not base64url of 32 bytes");
    let bytes = B64URL.decode(text).map_err(|_| bad())?;
    let key: [u8; KEY_LEN] = bytes.try_into().map_err(|_| bad())?;
    if key.iter().all(|&b| b == key[0]) {
        return Err(format!(
            "key file line {lineno}: {item}: the key is 32 equal bytes (a placeholder?); \
             use 32 random bytes"
        ));
    }
    Ok(key)
}

/// Parses a key file (see the module documentation for the format).
///
/// Errors name the line number and the item, and never contain key material or the password.
pub fn parse_key_file(text: &str) -> Result<KeyFile, String> {
    let mut name: Option<(String, [u8; KEY_LEN])> = None;
    let mut seal: Vec<(String, [u8; KEY_LEN])> = Vec::new();
    let mut redis_user: Option<String> = None;
    let mut redis_password: Option<String> = None;

    for (i, raw) in text.lines().enumerate() {
        let lineno = i + 1;
        let words: Vec<&str> = raw
            .split_whitespace()
            .take_while(|w| !w.starts_with('#'))
            .collect();
        let Some((&item, args)) = words.split_first() else {
            continue;
        };
        let at = |msg: &str| format!("key file line {lineno}: {msg}");
        match item {
            "name" | "seal" => {
                let [kid, key] = args else {
                    return Err(at(&format!("{item}: expected `{item} <kid> <key>`")));
                };
                if !valid_kid(kid) {
                    return Err(at(&format!(
                        "{item}: a kid is 1 to {MAX_KID_LEN} characters of A-Z a-z 0-9 . _ -"
                    )));
                }
                let key = decode_key(key, lineno, item)?;
                if item == "name" {
                    if name.is_some() {
                        return Err(at("name: only one name line is allowed"));
                    }
                    name = Some((kid.to_string(), key));
                } else {
                    if seal.iter().any(|(k, _)| k == kid) {
                        return Err(at(&format!("seal: kid {kid} is listed twice")));
                    }
                    seal.push((kid.to_string(), key));
                }
            }
            "redis_user" | "redis_password" => {
                let [value] = args else {
                    return Err(at(&format!(
                        "{item}: expected one word (no whitespace) after {item}"
                    )));
                };
                let slot = if item == "redis_user" {
                    &mut redis_user
                } else {
                    &mut redis_password
                };
                if slot.is_some() {
                    return Err(at(&format!("{item}: listed twice")));
                }
                *slot = Some(value.to_string());
            }
            // Never echo the word: a misplaced secret on a line of its own would be logged.
            _ => {
                return Err(at(
                    "unknown item (expected name, seal, redis_user or redis_password)",
                ))
            }
        }
    }

    let Some((name_kid, name_key)) = name else {
        return Err("key file: no `name <kid> <key>` line".to_string());
    };
    if seal.is_empty() {
        return Err("key file: no `seal <kid> <key>` line".to_string());
    }
    for (i, (kid, key)) in seal.iter().enumerate() {
        if *key == name_key {
            return Err(format!(
                "key file: seal key {kid} is the name key: use separate random keys"
            ));
        }
        if let Some((other, _)) = seal[..i].iter().find(|(_, k)| k == key) {
            return Err(format!(
                "key file: seal keys {other} and {kid} are the same key"
            ));
        }
    }
    let seal = seal
        .into_iter()
        .map(|(kid, key)| {
            UnboundKey::new(&CHACHA20_POLY1305, &key)
                .map(|k| SealKey {
                    kid,
                    key: LessSafeKey::new(k),
                })
                .map_err(|_| "key file: cannot prepare a seal key".to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(KeyFile {
        name_kid,
        name_key,
        seal,
        redis_user,
        redis_password,
    })
}

/// Appends `data` preceded by its length as a big-endian u64 (as `digest::keyed_digest` does).
fn push_len_prefixed(ctx: &mut hmac::Context, data: &[u8]) {
    ctx.update(&(data.len() as u64).to_be_bytes());
    ctx.update(data);
}

/// `HMAC-SHA-256(key, lp(label) || lp(context) || item)`, where `lp(x)` is `x` preceded by its
/// length as a big-endian u64: what every key name of the fleet tier is made of.
pub(crate) fn mac(key: &hmac::Key, label: &str, context: &[u8], item: &[u8]) -> hmac::Tag {
    let mut ctx = hmac::Context::with_key(key);
    push_len_prefixed(&mut ctx, label.as_bytes());
    push_len_prefixed(&mut ctx, context);
    ctx.update(item);
    ctx.sign()
}

/// The Redis key name for `item` under `label` in `context`:
/// `prefix + label + ":" + base64url(HMAC-SHA-256(name_key, lp(label) || lp(context) || item))`,
/// where `lp(x)` is `x` preceded by its length as a big-endian u64.
///
/// The MAC keeps all 32 bytes (43 characters), so Redis, `MONITOR` and RDB files never see a
/// token, subject or client id. [`super::layout::Layout`] builds the fleet's key names from the
/// same MAC, with hash tags.
pub fn redis_key(
    name_key: &[u8],
    prefix: &str,
    label: &str,
    context: &[u8],
    item: &[u8],
) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, name_key);
    let tag = mac(&key, label, context, item);
    let mut out = String::with_capacity(prefix.len() + label.len() + 1 + 43);
    out.push_str(prefix);
    out.push_str(label);
    out.push(':');
    B64URL.encode_string(tag.as_ref(), &mut out);
    out
}

/// Encodes bytes as unpadded base64url (for key files written by tests and tools).
pub fn base64url(bytes: &[u8]) -> String {
    B64URL.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    // base64url of bytes 0..32, 32..64 and 64..96.
    const K0: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
    const K1: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8";
    const K2: &str = "QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8";
    const PASSWORD: &str = "s3cr3t-P4ss#word";

    fn file() -> String {
        format!(
            "# fleet keys\n\
             \n\
             name  v1 {K0}   # K_name\n\
             seal  k3 {K1}\n\
             \tseal k2 {K2}=  # padded is fine\n\
             redis_user phantom\n\
             redis_password {PASSWORD}\n"
        )
    }

    fn parse_err(text: &str) -> String {
        parse_key_file(text).expect_err("must fail")
    }

    /// No error may contain key material or the password, in any encoding we wrote.
    fn assert_no_secret(msg: &str) {
        for s in [
            K0,
            K1,
            K2,
            &K0[..20],
            &K1[..20],
            &K2[..20],
            PASSWORD,
            "s3cr3t",
        ] {
            assert!(!msg.contains(s), "{msg:?} leaks {s:?}");
        }
    }

    #[test]
    fn parses_a_full_file() {
        let k = parse_key_file(&file()).unwrap();
        assert_eq!(k.name_kid(), "v1");
        assert_eq!(k.name_key(), &core::array::from_fn(|i| i as u8));
        let kids: Vec<&str> = k.seal_keys().iter().map(|s| s.kid()).collect();
        assert_eq!(kids, ["k3", "k2"]);
        assert_eq!(k.seal_key(b"k2").map(|s| s.kid()), Some("k2"));
        assert!(k.seal_key(b"k9").is_none());
        assert_eq!(k.redis_user(), Some("phantom"));
        assert_eq!(k.redis_password(), Some(PASSWORD));
        let dbg = format!("{k:?}");
        assert!(dbg.contains("k3") && dbg.contains("<redacted>"));
        assert_no_secret(&dbg);
    }

    #[test]
    fn minimal_file_and_crlf_lines() {
        let k = parse_key_file(&format!("name a {K0}\r\nseal b {K1}\r\n")).unwrap();
        assert_eq!(k.redis_user(), None);
        assert_eq!(k.redis_password(), None);
        // A password alone authenticates as the default user.
        let k = parse_key_file(&format!("name a {K0}\nseal b {K1}\nredis_password x\n")).unwrap();
        assert_eq!(k.redis_password(), Some("x"));
    }

    #[test]
    fn errors_name_the_line_and_never_a_secret() {
        let cases = [
            (
                format!("name v1 {K0}\nseal k3 {}\n", &K1[1..]),
                "line 2: seal",
            ),
            (format!("name v1 {K0}x\nseal k3 {K1}\n"), "line 1: name"),
            (
                format!("name v1 {}\nseal k3 {K1}\n", K0.replace('A', "+")),
                "line 1",
            ),
            (format!("name v1 {K0}\nseal k3\n"), "line 2: seal: expected"),
            (
                format!("name v1 {K0} extra\nseal k3 {K1}\n"),
                "line 1: name: expected",
            ),
            (
                format!("name v1 {K0}\nseal k3 {K1}\n{K2}\n"),
                "line 3: unknown item",
            ),
            (
                format!("name v1 {K0}\nseal k3 {K1}\nsael k4 {K2}\n"),
                "line 3: unknown item",
            ),
            (
                format!("name v1 {K0}\nname v2 {K2}\nseal k3 {K1}\n"),
                "line 2: name: only one",
            ),
            (
                format!("name v1 {K0}\nseal k3 {K1}\nseal k3 {K2}\n"),
                "line 3: seal: kid k3",
            ),
            (
                format!("name v/1 {K0}\nseal k3 {K1}\n"),
                "line 1: name: a kid",
            ),
            (
                format!("name v1 {K0}\nseal {} {K1}\n", "k".repeat(33)),
                "line 2: seal: a kid",
            ),
            (
                format!("name v1 {K0}\nseal k3 {K1}\nredis_password a b\n"),
                "line 3: redis_password",
            ),
            (
                format!("name v1 {K0}\nseal k3 {K1}\nredis_password\n"),
                "line 3: redis_password",
            ),
            (
                format!(
                    "name v1 {K0}\nseal k3 {K1}\nredis_password x\nredis_password {PASSWORD}\n"
                ),
                "line 4: redis_password: listed twice",
            ),
            (format!("seal k3 {K1}\n"), "no `name"),
            (format!("name v1 {K0}\n# seal k3 {K1}\n"), "no `seal"),
            (
                format!("name v1 {K0}\nseal k3 {K0}\n"),
                "seal key k3 is the name key",
            ),
            (
                format!("name v1 {K0}\nseal k3 {K1}\nseal k2 {K1}\n"),
                "k3 and k2 are the same",
            ),
            (
                format!("name v1 {}\nseal k3 {K1}\n", base64url(&[0; 32])),
                "line 1: name: the key is 32 equal bytes",
            ),
        ];
        for (text, want) in cases {
            let e = parse_err(&text);
            assert!(e.contains(want), "{e:?} should contain {want:?}");
            assert!(e.starts_with("key file"), "{e:?}");
            assert_no_secret(&e);
        }
    }

    #[test]
    fn comments_start_at_a_word() {
        // `#` inside a word is part of it (passwords may contain it); a word starting with `#`
        // starts a comment.
        let k = parse_key_file(&format!("name v1 {K0}#not-a-comment\nseal k3 {K1}\n"));
        assert!(k.is_err());
        let k = parse_key_file(&format!(
            "name v1 {K0} #c\nseal k3 {K1}\nredis_password a#b #c\n"
        ))
        .unwrap();
        assert_eq!(k.redis_password(), Some("a#b"));
    }

    #[test]
    fn redis_key_matches_an_independent_hmac() {
        // Python: hmac.new(bytes(range(32)), lp(b"t") + lp(ctx) + b"tok-123", sha256), where
        // lp(x) = struct.pack(">Q", len(x)) + x, then urlsafe_b64encode without padding.
        let name_key: [u8; 32] = core::array::from_fn(|i| i as u8);
        let ctx = crate::digest::context(b"/_introspect", "jwt");
        let k = redis_key(&name_key, "pt:v1:", "t", &ctx, b"tok-123");
        assert_eq!(k, "pt:v1:t:lmUtLKZUQJpvNl8ubOGfgcIXTSBeAJAusqItEzFt7Zs");
    }

    #[test]
    fn redis_key_shape_and_separation() {
        let nk = [7u8; 32];
        let ctx = crate::digest::context(b"/_ia", "jwt");
        let t = redis_key(&nk, "pt:v1:", "t", &ctx, b"abc");
        let rest = t.strip_prefix("pt:v1:t:").unwrap();
        assert_eq!(rest.len(), 43);
        assert!(rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert!(!t.contains("abc"));
        // Every input changes the key.
        assert_ne!(t, redis_key(&nk, "pt:v1:", "lk", &ctx, b"abc"));
        assert_ne!(t, redis_key(&nk, "pt:v1:", "t", b"", b"abc"));
        assert_ne!(t, redis_key(&nk, "pt:v1:", "t", &ctx, b"abd"));
        assert_ne!(t, redis_key(&[8u8; 32], "pt:v1:", "t", &ctx, b"abc"));
        assert_eq!(t, redis_key(&nk, "pt:v1:", "t", &ctx, b"abc"));
        // Length prefixes keep the split between label, context and item unambiguous.
        let a = redis_key(&nk, "p:", "t", b"ab", b"c");
        let b = redis_key(&nk, "p:", "t", b"a", b"bc");
        assert_ne!(a[4..], b[4..]);
        let c = redis_key(&nk, "p:", "ta", b"", b"x");
        let d = redis_key(&nk, "p:", "t", b"a", b"x");
        assert_ne!(c.rsplit(':').next(), d.rsplit(':').next());
    }
}
