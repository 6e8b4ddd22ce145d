use super::*;
use crate::table::Slot;

/// Entries by reference (`index + 1`): a digest and the links.
#[derive(Default)]
pub(crate) struct Arena(pub(crate) Vec<([u8; 32], Links)>);

impl Entries for Arena {
    fn digest(&self, e: u32) -> [u8; 32] {
        self.0[e as usize - 1].0
    }
    fn links(&self, e: u32) -> Links {
        self.0[e as usize - 1].1
    }
    fn set_links(&mut self, e: u32, l: Links) {
        self.0[e as usize - 1].1 = l;
    }
}

impl Arena {
    pub(crate) fn add(&mut self, d: [u8; 32]) -> u32 {
        self.0.push((d, Links::default()));
        self.0.len() as u32
    }
}

#[test]
fn group_keys_carry_their_kind_and_are_never_no_key() {
    for v in [&b""[..], b"alice", b"bob", b"client-1"] {
        let s = group_key(Chain::Sub, v);
        let c = group_key(Chain::Client, v);
        assert_eq!(s & 1, 0);
        assert_eq!(c & 1, 1);
        assert_ne!(s, NO_KEY);
        assert_ne!(s, c);
        assert_eq!(group_tag(s) & 1, 0, "the kind is in the tag too");
    }
    assert_ne!(group_key(Chain::Sub, b"a"), group_key(Chain::Sub, b"b"));
}

#[test]
fn a_chain_keeps_store_order_through_unlinks() {
    let mut slots = vec![Slot::default(); 8];
    let mut len = 0;
    let mut ch = Chains::new(Table::new(&mut slots, &mut len));
    let mut a = Arena::default();
    let k = group_key(Chain::Sub, b"alice");
    let es: Vec<u32> = (0..5).map(|i| a.add([i; 32])).collect();
    for e in &es {
        ch.link(&mut a, *e, Chain::Sub, k).expect("room");
    }
    assert_eq!(ch.members(&a, Chain::Sub, k, 99), es);
    assert!(ch.check(&a, 99));
    ch.unlink(&mut a, es[2], Chain::Sub); // middle
    ch.unlink(&mut a, es[0], Chain::Sub); // head
    ch.unlink(&mut a, es[4], Chain::Sub); // tail
    assert_eq!(ch.members(&a, Chain::Sub, k, 99), vec![es[1], es[3]]);
    assert!(ch.check(&a, 99));
    assert_eq!(a.links(es[0]), Links::default(), "off the chain");
    ch.unlink(&mut a, es[0], Chain::Sub); // twice: nothing
    ch.unlink(&mut a, es[1], Chain::Sub);
    ch.unlink(&mut a, es[3], Chain::Sub);
    assert_eq!(ch.head(&a, Chain::Sub, k), None);
    assert_eq!(ch.groups(), 0, "the last one out takes the group");
}

#[test]
fn keys_sharing_a_tag_keep_separate_chains() {
    let mut slots = vec![Slot::default(); 8];
    let mut len = 0;
    let mut ch = Chains::new(Table::new(&mut slots, &mut len));
    let mut a = Arena::default();
    // Same low 32 bits (tag), different high bits: two subjects.
    let (k1, k2) = (0x0000_0001_4444_4444u64, 0x0000_0002_4444_4444u64);
    let e1 = a.add([1; 32]);
    let e2 = a.add([2; 32]);
    let e3 = a.add([3; 32]);
    ch.link(&mut a, e1, Chain::Sub, k1).expect("room");
    ch.link(&mut a, e2, Chain::Sub, k2).expect("room");
    ch.link(&mut a, e3, Chain::Sub, k1).expect("room");
    assert_eq!(ch.members(&a, Chain::Sub, k1, 9), vec![e1, e3]);
    assert_eq!(ch.members(&a, Chain::Sub, k2, 9), vec![e2]);
    ch.unlink(&mut a, e1, Chain::Sub);
    assert_eq!(ch.head(&a, Chain::Sub, k1), Some(e3));
    assert_eq!(ch.head(&a, Chain::Sub, k2), Some(e2));
    assert!(ch.check(&a, 9));
}

#[test]
fn a_clients_slot_never_answers_for_a_subject() {
    let mut slots = vec![Slot::default(); 8];
    let mut len = 0;
    let mut ch = Chains::new(Table::new(&mut slots, &mut len));
    let mut a = Arena::default();
    let s = 0x1234_5678_9abc_def0u64; // kind bit 0
    let c = s | 1; // the client key one bit away: its tag differs in the kind bit
    let e = a.add([7; 32]);
    ch.link(&mut a, e, Chain::Sub, s).expect("room");
    ch.link(&mut a, e, Chain::Client, c).expect("room");
    assert_eq!(ch.head(&a, Chain::Sub, s), Some(e));
    assert_eq!(ch.head(&a, Chain::Client, c), Some(e));
    assert_eq!(ch.head(&a, Chain::Sub, c), None);
    assert_eq!(ch.head(&a, Chain::Client, s), None);
    assert_eq!(ch.groups(), 2);
}

#[test]
fn no_key_is_on_no_chain() {
    let mut slots = vec![Slot::default(); 4];
    let mut len = 0;
    let mut ch = Chains::new(Table::new(&mut slots, &mut len));
    let mut a = Arena::default();
    let e = a.add([1; 32]);
    ch.link(&mut a, e, Chain::Client, NO_KEY)
        .expect("nothing to do");
    assert_eq!(ch.groups(), 0);
    assert_eq!(ch.head(&a, Chain::Client, NO_KEY), None);
    ch.unlink(&mut a, e, Chain::Client);
    assert!(ch.room_for(&a, [NO_KEY, NO_KEY]));
}

#[test]
fn a_full_group_table_refuses_a_new_group_and_takes_old_ones() {
    let mut slots = vec![Slot::default(); 4]; // three groups at most
    let mut len = 0;
    let mut ch = Chains::new(Table::new(&mut slots, &mut len));
    let mut a = Arena::default();
    for i in 0..3u8 {
        let e = a.add([i; 32]);
        let k = group_key(Chain::Sub, &[i]);
        ch.link(&mut a, e, Chain::Sub, k).expect("room");
    }
    let e = a.add([9; 32]);
    let new = group_key(Chain::Sub, b"new");
    assert!(!ch.room_for(&a, [new, NO_KEY]));
    assert_eq!(ch.link(&mut a, e, Chain::Sub, new), Err(Error::Full));
    assert_eq!(a.links(e), Links::default(), "nothing half done");
    let old = group_key(Chain::Sub, &[1]);
    assert!(ch.room_for(&a, [old, NO_KEY]));
    ch.link(&mut a, e, Chain::Sub, old)
        .expect("an existing group");
    assert_eq!(ch.members(&a, Chain::Sub, old, 9), vec![2, e]);
    assert!(ch.check(&a, 9));
}

fn jwt(payload: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let enc = |v: &str| URL_SAFE_NO_PAD.encode(v);
    format!("{}.{}.c2ln", enc(r#"{"alg":"RS256"}"#), enc(payload))
}

#[test]
fn a_jwts_keys_are_those_a_purge_by_its_claims_asks_for() {
    let j = jwt(r#"{"sub":"alice","client_id":"web-app"}"#);
    assert_eq!(
        jwt_keys(j.as_bytes()),
        [
            group_key(Chain::Sub, b"alice"),
            group_key(Chain::Client, b"web-app")
        ]
    );
    // RFC 9701: the claims inside `token_introspection`.
    let nested = jwt(r#"{"token_introspection":{"active":true,"sub":"bob"}}"#);
    assert_eq!(
        jwt_keys(nested.as_bytes()),
        [group_key(Chain::Sub, b"bob"), NO_KEY]
    );
    // Missing, not a string, not a JWT: on no chain.
    let odd = jwt(r#"{"sub":42}"#);
    assert_eq!(jwt_keys(odd.as_bytes()), [NO_KEY, NO_KEY]);
    assert_eq!(jwt_keys(b"not-a-jwt"), [NO_KEY, NO_KEY]);
    assert_eq!(jwt_keys(b""), [NO_KEY, NO_KEY]);
}
