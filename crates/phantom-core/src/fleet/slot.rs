//! Redis Cluster hash slots: which of the 16384 slots a key name lives in.
//!
//! `slot = CRC16(k) mod 16384`, where CRC16 is the XMODEM variant (polynomial 0x1021, initial
//! value 0, no reflection) and `k` is the key name, or its hash tag: the bytes between the
//! first `{` and the first `}` after it, when there are any. `foo{}{bar}` hashes whole (the
//! first tag is empty), `foo{{bar}}zap` hashes `{bar`, `foo{bar}{zap}` hashes `bar`. This is
//! the Redis Cluster specification's algorithm, which Valkey, sharding proxies (ElastiCache
//! Serverless, Redis Enterprise) and every cluster client share.
//!
//! A cluster (or a proxy) refuses a command or a script whose keys lie in two slots
//! (`CROSSSLOT`), so the fleet tier groups the keys it deletes by [`key_slot`].

/// Number of hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// CRC16/XMODEM: polynomial 0x1021, initial value 0, no reflection, no final XOR (the `crc`
/// crate's table-driven implementation).
pub fn crc16(data: &[u8]) -> u16 {
    const XMODEM: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_XMODEM);
    XMODEM.checksum(data)
}

/// The part of `key` that is hashed: its hash tag if it has a non-empty one, else all of it.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        let rest = &key[open + 1..];
        if let Some(close) = rest.iter().position(|&b| b == b'}') {
            if close > 0 {
                return &rest[..close];
            }
        }
    }
    key
}

/// The hash slot of a key name.
pub fn key_slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) % SLOTS
}

/// Groups keys by slot, slots in ascending order and keys in their first order within each:
/// one command per group names keys of one slot only.
pub fn by_slot<'a>(keys: impl IntoIterator<Item = &'a [u8]>) -> Vec<(u16, Vec<&'a [u8]>)> {
    let mut tagged: Vec<(u16, usize, &[u8])> = keys
        .into_iter()
        .enumerate()
        .map(|(i, k)| (key_slot(k), i, k))
        .collect();
    tagged.sort_unstable_by_key(|&(slot, i, _)| (slot, i));
    let mut groups: Vec<(u16, Vec<&[u8]>)> = Vec::new();
    for (slot, _, k) in tagged {
        match groups.last_mut() {
            Some((s, keys)) if *s == slot => keys.push(k),
            _ => groups.push((slot, vec![k])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_check_value() {
        // The XMODEM check value (the CRC catalogue, and the Redis Cluster specification's
        // reference implementation: "123456789" -> 0x31C3).
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(crc16(b""), 0);
    }

    #[test]
    fn slots_from_the_redis_documentation() {
        // CLUSTER KEYSLOT's examples in the Redis command reference.
        assert_eq!(key_slot(b"somekey"), 11058);
        assert_eq!(key_slot(b"foo{hash_tag}"), 2515);
        assert_eq!(key_slot(b"bar{hash_tag}"), 2515);
        // Answers of a Redis 7.0 cluster (`CLUSTER KEYSLOT`).
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"123456789"), 0x31C3 % SLOTS);
    }

    #[test]
    fn hash_tags_follow_the_specification() {
        // The specification's examples.
        assert_eq!(hash_tag(b"{user1000}.following"), b"user1000");
        assert_eq!(hash_tag(b"{user1000}.followers"), b"user1000");
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        // No closing brace, or none at all: the whole key.
        assert_eq!(hash_tag(b"foo{bar"), b"foo{bar");
        assert_eq!(hash_tag(b"foo}bar{"), b"foo}bar{");
        assert_eq!(hash_tag(b"plain"), b"plain");
        assert_eq!(hash_tag(b""), b"");
        assert_eq!(
            key_slot(b"{user1000}.following"),
            key_slot(b"{user1000}.followers")
        );
        assert_eq!(key_slot(b"a{x}b"), key_slot(b"x"));
    }

    #[test]
    fn every_slot_is_in_range() {
        for i in 0u32..5000 {
            assert!(key_slot(format!("k{i}").as_bytes()) < SLOTS);
        }
    }

    #[test]
    fn groups_by_slot() {
        let keys: [&[u8]; 6] = [
            b"a{x}1",
            b"somekey",
            b"b{x}2",
            b"foo{hash_tag}",
            b"bar{hash_tag}",
            b"a{x}1",
        ];
        let groups = by_slot(keys);
        let slots: Vec<u16> = groups.iter().map(|(s, _)| *s).collect();
        let mut sorted = slots.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(slots, sorted, "ascending, one group per slot");
        assert_eq!(groups.len(), 3);
        for (slot, ks) in &groups {
            assert!(ks.iter().all(|k| key_slot(k) == *slot));
        }
        let x = groups.iter().find(|(s, _)| *s == key_slot(b"x")).unwrap();
        assert_eq!(
            x.1,
            [b"a{x}1" as &[u8], b"b{x}2", b"a{x}1"],
            "first order kept"
        );
        let tag = groups.iter().find(|(s, _)| *s == 2515).unwrap();
        assert_eq!(tag.1, [b"foo{hash_tag}" as &[u8], b"bar{hash_tag}"]);
        assert!(by_slot(Vec::<&[u8]>::new()).is_empty());
    }
}
