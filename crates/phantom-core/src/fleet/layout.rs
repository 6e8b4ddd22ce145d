//! The Redis key layout, version 2 (`pt:v2:`): the same names on a single primary, behind a
//! sharding proxy and on a Redis Cluster.
//!
//! | key | slot |
//! | --- | --- |
//! | `<prefix>t:{<token tag>}:<context id>` (entry) | the token's |
//! | `<prefix>lk:{<token tag>}:<context id>` (fleet lock) | the token's |
//! | `<prefix>sub:{<MAC>}`, `<prefix>cid:{<MAC>}` (index sets) | their own |
//! | `<prefix>purge:<zone>` (purge stream) | its own |
//! | `<prefix>jti:<MAC>` (DPoP `jti`) | its own |
//!
//! The token tag is `base64url(HMAC(name key, lp("tag") || lp("") || token))` (43
//! characters), in braces: a hash tag, so every key of one token (its entry under each
//! introspection context, and its locks) lies in one slot. A lookup (`SET NX` of the lock,
//! `GET` of the entry), a release (a script on the lock) and a purge by token (one `UNLINK` of
//! its entries) each name keys of one slot. The context id is the first 16 bytes (22
//! characters) of `HMAC(name key, lp("ctx") || lp(context))`: it only tells apart the few
//! introspection contexts of one zone. Index sets are tagged with their own MAC (the set's
//! slot is its MAC's), and their members are entry names, which carry their slot with them.
//!
//! Nothing in a name reveals or confirms a token, JWT, subject or client id: each is only an
//! input of an HMAC under the key file's `name` key. The prefix may not contain `{` or `}`
//! ([`check_prefix`]), which would move the hash tag.

use base64::Engine;
use ring::hmac;

use super::keys::{mac, B64URL};
use crate::purge::Kind;

/// The default `redis_prefix=`. Version 1 (`pt:v1:`) hashed token and context together, so one
/// token's keys lay in unrelated slots; its keys are never read again and just expire.
pub const DEFAULT_PREFIX: &str = "pt:v2:";

/// Longest `redis_prefix=`.
pub const MAX_PREFIX_LEN: usize = 64;

/// Characters of a token tag (all 32 bytes of its MAC, base64url).
pub const TAG_LEN: usize = 43;

/// Characters of a context id (16 bytes of its MAC, base64url).
pub const CONTEXT_ID_LEN: usize = 22;

/// Whether `prefix` may be used: 1 to 64 printable ASCII characters without spaces, and no
/// `{` or `}` (a brace in the prefix would change which part of every name is hashed to a
/// slot). The error says what is wrong, for the `nginx -t` message that names the parameter.
pub fn check_prefix(prefix: &str) -> Result<(), &'static str> {
    if prefix.is_empty()
        || prefix.len() > MAX_PREFIX_LEN
        || !prefix.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err("1 to 64 printable characters, no spaces");
    }
    if prefix.bytes().any(|b| b == b'{' || b == b'}') {
        return Err("no \"{\" or \"}\": they would move the hash tags of the key names");
    }
    Ok(())
}

/// Key names of one zone's fleet tier: the `name` key and the prefix.
#[derive(Clone)]
pub struct Layout {
    key: hmac::Key,
    prefix: String,
}

impl core::fmt::Debug for Layout {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Layout")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Layout {
    /// The layout for the key file's `name` key and a prefix ([`check_prefix`] is the caller's).
    pub fn new(name_key: &[u8], prefix: &str) -> Layout {
        Layout {
            key: hmac::Key::new(hmac::HMAC_SHA256, name_key),
            prefix: prefix.into(),
        }
    }

    /// The prefix of every name.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn b64(&self, label: &str, context: &[u8], item: &[u8], bytes: usize, out: &mut String) {
        let tag = mac(&self.key, label, context, item);
        B64URL.encode_string(&tag.as_ref()[..bytes], out);
    }

    /// The hash tag of a token's keys (without braces).
    pub fn tag(&self, token: &[u8]) -> String {
        let mut out = String::with_capacity(TAG_LEN);
        self.b64("tag", b"", token, 32, &mut out);
        out
    }

    /// The id of an introspection context within a token's keys.
    pub fn context_id(&self, context: &[u8]) -> String {
        let mut out = String::with_capacity(CONTEXT_ID_LEN);
        self.b64("ctx", context, b"", 16, &mut out);
        out
    }

    fn tagged(&self, label: &str, tag: &str, context: &[u8]) -> String {
        let mut out =
            String::with_capacity(self.prefix.len() + label.len() + 5 + TAG_LEN + CONTEXT_ID_LEN);
        out.push_str(&self.prefix);
        out.push_str(label);
        out.push_str(":{");
        out.push_str(tag);
        out.push_str("}:");
        self.b64("ctx", context, b"", 16, &mut out);
        out
    }

    /// The entry of `token` under an introspection context.
    pub fn entry(&self, context: &[u8], token: &[u8]) -> String {
        self.tagged("t", &self.tag(token), context)
    }

    /// The fleet lock of `token` under an introspection context (the entry's slot).
    pub fn lock(&self, context: &[u8], token: &[u8]) -> String {
        self.tagged("lk", &self.tag(token), context)
    }

    /// The entries of `token` under each of `contexts` (one slot: what a purge by token
    /// removes with one command).
    pub fn entries<'a>(
        &self,
        contexts: impl IntoIterator<Item = &'a [u8]>,
        token: &[u8],
    ) -> Vec<String> {
        let tag = self.tag(token);
        contexts
            .into_iter()
            .map(|c| self.tagged("t", &tag, c))
            .collect()
    }

    /// The index set of the entries of a subject ([`Kind::Sub`]) or client
    /// ([`Kind::ClientId`]): `<prefix><sub|cid>:{<MAC>}`, in its own slot.
    pub fn index(&self, kind: Kind, value: &[u8]) -> String {
        let label = kind.index_label();
        let mut out = String::with_capacity(self.prefix.len() + label.len() + 3 + TAG_LEN);
        out.push_str(&self.prefix);
        out.push_str(label);
        out.push_str(":{");
        self.b64(label, b"", value, 32, &mut out);
        out.push('}');
        out
    }

    /// The claim of a DPoP proof's replay key (`dpop::replay_key`).
    pub fn jti(&self, replay_key: &[u8]) -> String {
        let mut out = String::with_capacity(self.prefix.len() + 4 + TAG_LEN);
        out.push_str(&self.prefix);
        out.push_str("jti:");
        self.b64("jti", b"", replay_key, 32, &mut out);
        out
    }

    /// The purge stream of a zone (one key).
    pub fn stream(&self, zone: &str) -> String {
        format!("{}purge:{zone}", self.prefix)
    }

    /// Whether `name` has the shape of an entry of this layout (`<prefix>t:{<tag>}:<id>`):
    /// what a purge by subject or client may remove of the members of an index set.
    pub fn is_entry(&self, name: &[u8]) -> bool {
        let Some(rest) = name.strip_prefix(self.prefix.as_bytes()) else {
            return false;
        };
        let Some(rest) = rest.strip_prefix(b"t:{") else {
            return false;
        };
        let b64 = |s: &[u8]| {
            s.iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        rest.len() == TAG_LEN + 2 + CONTEXT_ID_LEN
            && b64(&rest[..TAG_LEN])
            && &rest[TAG_LEN..TAG_LEN + 2] == b"}:"
            && b64(&rest[TAG_LEN + 2..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::slot::{hash_tag, key_slot};

    fn layout() -> Layout {
        Layout::new(
            &core::array::from_fn::<u8, 32, _>(|i| i as u8),
            DEFAULT_PREFIX,
        )
    }

    fn ctx(endpoint: &[u8]) -> Vec<u8> {
        crate::digest::context(endpoint, "jwt")
    }

    #[test]
    fn names_match_an_independent_hmac() {
        // Python, with k = bytes(range(32)), lp(x) = struct.pack(">Q", len(x)) + x and
        // b64(x) = urlsafe_b64encode(x) without padding:
        //   tag = b64(hmac(k, lp(b"tag") + lp(b"") + b"tok-123", sha256))
        //   ctx = b64(hmac(k, lp(b"ctx") + lp(context), sha256)[:16])
        //   sub = b64(hmac(k, lp(b"sub") + lp(b"") + b"alice", sha256))
        let l = layout();
        let c = ctx(b"/_introspect");
        assert_eq!(
            l.tag(b"tok-123"),
            "ENg1BthvVelV2qMBhX8lEBrkc31FMioEk3gttubhjeE"
        );
        assert_eq!(l.context_id(&c), "DhSIONu7Y0VH0kOKUSkn3w");
        assert_eq!(
            l.entry(&c, b"tok-123"),
            "pt:v2:t:{ENg1BthvVelV2qMBhX8lEBrkc31FMioEk3gttubhjeE}:DhSIONu7Y0VH0kOKUSkn3w"
        );
        assert_eq!(
            l.lock(&c, b"tok-123"),
            "pt:v2:lk:{ENg1BthvVelV2qMBhX8lEBrkc31FMioEk3gttubhjeE}:DhSIONu7Y0VH0kOKUSkn3w"
        );
        assert_eq!(
            l.index(Kind::Sub, b"alice"),
            "pt:v2:sub:{i29b4Cy38g4pUImYsYS1cFdfkLlzHZdYgWNYDbLD14w}"
        );
        // The index MAC is version 1's (same label, empty context).
        assert_eq!(
            l.index(Kind::Sub, b"alice")["pt:v2:sub:{".len()..][..TAG_LEN],
            super::super::keys::redis_key(&l_name(), "", "sub", b"", b"alice")[4..]
        );
    }

    fn l_name() -> [u8; 32] {
        core::array::from_fn(|i| i as u8)
    }

    #[test]
    fn every_key_of_a_token_shares_its_slot() {
        let l = layout();
        let contexts = [
            ctx(b"/_a"),
            ctx(b"/_b"),
            crate::digest::context(b"/_a", "json"),
        ];
        for i in 0..200 {
            let token = format!("opaque-token-{i}");
            let slot = key_slot(l.entry(&contexts[0], token.as_bytes()).as_bytes());
            let mut names = l.entries(contexts.iter().map(Vec::as_slice), token.as_bytes());
            names.extend(contexts.iter().map(|c| l.lock(c, token.as_bytes())));
            for n in &names {
                assert_eq!(key_slot(n.as_bytes()), slot, "{n}");
                assert_eq!(hash_tag(n.as_bytes()), l.tag(token.as_bytes()).as_bytes());
            }
            assert_eq!(
                names[..3],
                contexts
                    .iter()
                    .map(|c| l.entry(c, token.as_bytes()))
                    .collect::<Vec<_>>()[..]
            );
        }
    }

    #[test]
    fn tokens_spread_over_the_slots() {
        let l = layout();
        let c = ctx(b"/_i");
        let mut slots: Vec<u16> = (0..2000)
            .map(|i| key_slot(l.entry(&c, format!("t{i}").as_bytes()).as_bytes()))
            .collect();
        slots.sort_unstable();
        slots.dedup();
        assert!(slots.len() > 1800, "{} distinct slots", slots.len());
        // The three thirds of a cluster of three primaries each get a fair share.
        let third = |lo: u16, hi: u16| slots.iter().filter(|&&s| (lo..hi).contains(&s)).count();
        for (lo, hi) in [(0, 5461), (5461, 10923), (10923, 16384)] {
            assert!(third(lo, hi) > 500, "slots {lo}..{hi}");
        }
    }

    #[test]
    fn index_sets_and_the_rest_have_their_own_slots() {
        let l = layout();
        let sub = l.index(Kind::Sub, b"alice");
        let cid = l.index(Kind::ClientId, b"alice");
        assert_ne!(sub, cid);
        assert!(sub.starts_with("pt:v2:sub:{") && sub.ends_with('}'));
        assert!(cid.starts_with("pt:v2:cid:{") && cid.ends_with('}'));
        assert_eq!(hash_tag(sub.as_bytes()), &sub.as_bytes()[11..11 + TAG_LEN]);
        assert_eq!(l.stream("jwt"), "pt:v2:purge:jwt");
        let jti = l.jti(b"replay");
        assert!(jti.starts_with("pt:v2:jti:") && jti.len() == 10 + TAG_LEN);
        assert_ne!(jti, l.jti(b"replay2"));
    }

    #[test]
    fn names_separate_every_input() {
        let l = layout();
        let (a, b) = (ctx(b"/_a"), ctx(b"/_b"));
        let e = l.entry(&a, b"abc");
        assert_ne!(e, l.entry(&b, b"abc"));
        assert_ne!(e, l.entry(&a, b"abd"));
        assert_ne!(e, Layout::new(&[9; 32], DEFAULT_PREFIX).entry(&a, b"abc"));
        assert_ne!(l.tag(b"abc"), l.index(Kind::Sub, b"abc")[11..11 + TAG_LEN]);
        assert_ne!(
            l.index(Kind::Sub, b"x")[11..],
            l.index(Kind::ClientId, b"x")[11..]
        );
        let other = Layout::new(&l_name(), "gw1:");
        assert_eq!(
            other.entry(&a, b"abc").strip_prefix("gw1:"),
            e.strip_prefix("pt:v2:")
        );
        assert!(!e.contains("abc"));
        assert_eq!(format!("{l:?}"), "Layout { prefix: \"pt:v2:\", .. }");
    }

    #[test]
    fn entries_are_recognised() {
        let l = layout();
        let e = l.entry(&ctx(b"/_a"), b"abc");
        assert!(l.is_entry(e.as_bytes()));
        assert!(!l.is_entry(l.lock(&ctx(b"/_a"), b"abc").as_bytes()));
        assert!(!l.is_entry(l.index(Kind::Sub, b"abc").as_bytes()));
        assert!(!Layout::new(&l_name(), "pt:v3:").is_entry(e.as_bytes()));
        assert!(!l.is_entry(format!("{e}x").as_bytes()));
        assert!(!l.is_entry(&e.as_bytes()[..e.len() - 1]));
        assert!(!l.is_entry(e.replace("}:", "}.").as_bytes()));
        assert!(!l.is_entry(e.replacen('{', "(", 1).as_bytes()));
        let mut odd = e.clone().into_bytes();
        odd[10] = b'*';
        assert!(!l.is_entry(&odd));
        assert!(!l.is_entry(b"pt:v1:t:lmUtLKZUQJpvNl8ubOGfgcIXTSBeAJAusqItEzFt7Zs"));
        assert!(!l.is_entry(b""));
    }

    #[test]
    fn prefixes() {
        for ok in ["pt:v2:", "gw-1/", "a", &"p".repeat(64)] {
            assert_eq!(check_prefix(ok), Ok(()), "{ok}");
        }
        for bad in ["", "p t:", "pt:\t", &"p".repeat(65), "pt:é:"] {
            assert!(
                check_prefix(bad).unwrap_err().contains("printable"),
                "{bad}"
            );
        }
        for bad in ["pt:{v2}:", "{", "}", "pt:v2}"] {
            assert!(check_prefix(bad).unwrap_err().contains('{'), "{bad}");
        }
    }
}
