use super::*;
use crate::chain::{group_key, Link};
use crate::slab::charge;
use std::collections::{HashMap, HashSet};

/// Entries by reference (`index + 1`): a digest and the links; `live` as the zone's slabs.
#[derive(Default)]
struct Arena {
    es: Vec<([u8; 32], Links, bool)>,
}

impl Entries for Arena {
    fn digest(&self, e: u32) -> [u8; 32] {
        self.es[e as usize - 1].0
    }
    fn links(&self, e: u32) -> Links {
        self.es[e as usize - 1].1
    }
    fn set_links(&mut self, e: u32, l: Links) {
        self.es[e as usize - 1].1 = l;
    }
}

impl Arena {
    fn add(&mut self, d: [u8; 32]) -> u32 {
        self.es.push((d, Links::default(), true));
        self.es.len() as u32
    }
    fn free(&mut self, e: u32) {
        assert!(self.es[e as usize - 1].2, "freed twice");
        self.es[e as usize - 1].2 = false;
    }
}

fn digest(i: u32) -> [u8; 32] {
    crate::digest::token_digest(&i.to_le_bytes())
}

/// A digest whose tag is `tag`: crafted collisions.
fn crafted(tag: u32, tail: u8) -> [u8; 32] {
    let mut d = [0x33; 32];
    d[..4].copy_from_slice(&tag.to_le_bytes());
    d[31] = tail;
    d
}

struct Tables {
    primary: Vec<Slot>,
    groups: Vec<Slot>,
    lens: [u32; 2],
}

impl Tables {
    fn new(entries: usize) -> Self {
        Tables {
            primary: vec![Slot::default(); slots_for(entries)],
            groups: vec![Slot::default(); slots_for(entries)],
            lens: [0, 0],
        }
    }
    fn index(&mut self) -> ZoneIndex<'_> {
        let [p, g] = &mut self.lens;
        ZoneIndex::new(
            Table::new(&mut self.primary, p),
            Table::new(&mut self.groups, g),
        )
    }
}

fn keys(sub: &[u8], client: &[u8]) -> [u64; 2] {
    [group_key(Chain::Sub, sub), group_key(Chain::Client, client)]
}

#[test]
fn a_subject_of_10000_tokens_goes_in_steps_and_others_stay() {
    let mut t = Tables::new(20_000);
    let mut ix = t.index();
    let mut a = Arena::default();
    let alice = keys(b"alice", b"app");
    let bob = keys(b"bob", b"app");
    let mut bobs = Vec::new();
    for i in 0..10_500u32 {
        let e = a.add(digest(i));
        let k = if i % 21 == 20 { bob } else { alice };
        ix.insert(&mut a, e, k).expect("room");
        if k == bob {
            bobs.push(e);
        }
    }
    assert_eq!(bobs.len(), 500);
    let mut steps = 0;
    let mut removed = 0;
    loop {
        let (n, done) = ix.purge_step(&mut a, Chain::Sub, alice[0], 256, |a, e| a.free(e));
        assert!(n <= 256);
        removed += n;
        steps += 1;
        if done {
            break;
        }
    }
    assert_eq!(removed, 10_000);
    assert_eq!(steps, 40, "10,000 in steps of 256");
    assert_eq!(ix.len(), 500);
    for e in &bobs {
        assert_eq!(ix.find(&a, &a.digest(*e)), Some(*e), "bob's tokens stay");
    }
    assert_eq!(ix.chains().members(&a, Chain::Client, alice[1], 9999), bobs);
    assert!(ix.check(&a, 20_000));
    // The client's chain takes the rest.
    let (n, done) = ix.purge_step(&mut a, Chain::Client, bob[1], 1000, |a, e| a.free(e));
    assert_eq!((n, done), (500, true));
    assert!(ix.is_empty() && ix.groups() == 0);
}

#[test]
fn insert_find_remove_and_purge_agree_on_the_full_digest() {
    let mut t = Tables::new(64);
    let mut ix = t.index();
    let mut a = Arena::default();
    // Five digests with one tag: the same home, told apart by the full key only.
    let ds: Vec<[u8; 32]> = (0..5).map(|i| crafted(0xabad_cafe, i)).collect();
    let es: Vec<u32> = ds.iter().map(|d| a.add(*d)).collect();
    for (i, e) in es.iter().enumerate() {
        let sub = [b's', i as u8 % 2];
        ix.insert(&mut a, *e, keys(&sub, b"c")).expect("room");
    }
    let dup = a.add(ds[3]);
    assert_eq!(
        ix.insert(&mut a, dup, keys(b"x", b"y")),
        Err(Error::Present)
    );
    assert_eq!(ix.groups(), 3, "the duplicate made no group");
    // A purge by token takes exactly its entry.
    assert_eq!(ix.remove_key(&mut a, &ds[2]), Some(es[2]));
    assert_eq!(ix.remove_key(&mut a, &crafted(0xabad_cafe, 9)), None);
    for (i, d) in ds.iter().enumerate() {
        let want = (i != 2).then_some(es[i]);
        assert_eq!(ix.find(&a, d), want);
    }
    // A purge by subject takes its entries and no entry with the same tag.
    let (n, done) = ix.purge_step(&mut a, Chain::Sub, keys(b"s\0", b"")[0], 9, |_, _| ());
    assert_eq!((n, done), (2, true), "entries 0 and 4 (2 went by token)");
    assert_eq!(ix.find(&a, &ds[1]), Some(es[1]));
    assert_eq!(ix.find(&a, &ds[3]), Some(es[3]));
    assert!(ix.check(&a, 99));
}

#[test]
fn full_tables_refuse_whole_entries() {
    let mut t = Tables::new(3);
    let mut ix = t.index();
    let mut a = Arena::default();
    for i in 0..3 {
        let e = a.add(digest(i));
        ix.insert(&mut a, e, keys(b"s", b"c")).expect("room");
    }
    let e = a.add(digest(3));
    assert_eq!(ix.insert(&mut a, e, keys(b"s", b"c")), Err(Error::Full));
    assert_eq!(ix.find(&a, &digest(3)), None);
    assert_eq!(a.links(e), Links::default(), "on no chain");
    // Room in the primary table but none for new groups: nothing half indexed.
    let first = ix.head(&a, Chain::Sub, keys(b"s", b"")[0]).expect("head");
    assert!(ix.remove(&mut a, first));
    assert!(!ix.remove(&mut a, first), "removed already");
    for i in 0..2u8 {
        let (e, sub) = (a.add(digest(10 + u32::from(i))), [i]);
        let r = ix.insert(&mut a, e, keys(&sub, b"c"));
        assert_eq!(r.is_ok(), i == 0, "groups: s, c, then [0] fills the table");
    }
    assert!(ix.check(&a, 9));
}

#[test]
fn an_entry_without_the_claims_is_indexed_on_no_chain() {
    let mut t = Tables::new(4);
    let mut ix = t.index();
    let mut a = Arena::default();
    let e = a.add(digest(1));
    ix.insert(&mut a, e, [NO_KEY, NO_KEY]).expect("room");
    assert_eq!(ix.find(&a, &digest(1)), Some(e));
    assert_eq!(ix.groups(), 0);
    assert_eq!(
        ix.purge_step(&mut a, Chain::Sub, NO_KEY, 9, |_, _| ()),
        (0, true)
    );
    assert_eq!(a.links(e).sub, Link::default());
}

/// A small xorshift generator: the model test needs no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Stores, evictions, expiries and purges by token, subject and client, against a model:
/// every live key found with its chains, every removed one gone, nothing freed twice.
#[test]
fn churn_against_a_model() {
    let mut t = Tables::new(200);
    let mut ix = t.index();
    let mut a = Arena::default();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    // digest -> (entry, subject, client)
    let mut model: HashMap<[u8; 32], (u32, u8, u8)> = HashMap::new();
    for step in 0..50_000u32 {
        let r = rng.next();
        // 300 keys over 8 tags (collisions), 20 subjects, 4 clients.
        let d = crafted(
            (r as u32 % 8).wrapping_mul(0x2000_0001),
            (r >> 8) as u8 % 40,
        );
        let (sub, client) = ((r >> 16) as u8 % 20, (r >> 24) as u8 % 4);
        match (r >> 32) % 8 {
            0..=2 => {
                // Store: the old copy goes first, as in the zone.
                if let Some(old) = ix.remove_key(&mut a, &d) {
                    a.free(old);
                    model.remove(&d);
                }
                let e = a.add(d);
                let k = keys(&[sub], &[client]);
                match ix.insert(&mut a, e, k) {
                    Ok(()) => {
                        model.insert(d, (e, sub, client));
                    }
                    Err(Error::Full) => {
                        a.free(e);
                        assert!(model.len() >= 150 || !ix.has_room(&a, k));
                    }
                    Err(e) => panic!("{e:?}"),
                }
            }
            3 | 4 => {
                // Evict or expire: an entry the zone holds by reference.
                if let Some((e, ..)) = model.remove(&d) {
                    assert!(ix.remove(&mut a, e));
                    a.free(e);
                }
            }
            5 => {
                let got = ix.remove_key(&mut a, &d);
                assert_eq!(got, model.remove(&d).map(|v| v.0));
                if let Some(e) = got {
                    a.free(e);
                }
            }
            6 => {
                let (c, v) = if r >> 48 & 1 == 0 {
                    (Chain::Sub, sub)
                } else {
                    (Chain::Client, client)
                };
                let key = group_key(c, &[v]);
                let mut gone = HashSet::new();
                loop {
                    let (_, done) = ix.purge_step(&mut a, c, key, 3, |a, e| {
                        a.free(e);
                        gone.insert(e);
                    });
                    if done {
                        break;
                    }
                }
                let want: HashSet<u32> = model
                    .values()
                    .filter(|(_, s, cl)| if c == Chain::Sub { *s == v } else { *cl == v })
                    .map(|(e, ..)| *e)
                    .collect();
                assert_eq!(gone, want);
                model.retain(|_, (e, ..)| !gone.contains(e));
            }
            _ => assert_eq!(ix.find(&a, &d), model.get(&d).map(|v| v.0)),
        }
        assert_eq!(ix.len(), model.len());
        if step % 1000 == 0 {
            assert!(ix.check(&a, 1000), "step {step}");
        }
    }
    for (d, (e, s, c)) in &model {
        assert_eq!(ix.find(&a, d), Some(*e));
        let l = a.links(*e);
        assert_eq!([l.sub.key, l.client.key], keys(&[*s], &[*c]));
    }
    assert!(ix.check(&a, 1000));
}

#[test]
fn memory_per_1_kib_jwt_entry() {
    // An active entry with a 1 KiB JWT takes 128 + 1024 slab bytes (`slab`).
    let entry = charge(128, 4096) + charge(1024, 4096);
    assert_eq!(entry, 1152);
    let zone = 1 << 30;
    let per_entry = |bytes: usize| bytes as f64 * entry as f64 / zone as f64;
    let (p, g) = layout(zone);
    let primary = per_entry(p * 8);
    let groups = per_entry(g * 8);
    // The chain links (32 bytes) live in the entry's header, in the room the rbtree's node
    // (40 bytes) leaves: the header stays in its 128-byte slab class.
    assert!(core::mem::size_of::<Links>() == 32);
    let subject_index = groups + 32.0;
    assert!(subject_index / entry as f64 <= 0.08, "{subject_index}");
    assert!((primary + groups) / (entry as f64) < 0.05);
    assert_eq!(index_bytes(zone), (p + g) * 8);
}
