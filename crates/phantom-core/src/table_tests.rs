use super::*;
use std::collections::HashMap;

/// Entries by reference (`index + 1`), as the zone's entries hold their digests.
struct Arena(Vec<[u8; 32]>);

impl Arena {
    fn add(&mut self, d: [u8; 32]) -> u32 {
        self.0.push(d);
        self.0.len() as u32
    }
    fn key(&self, e: u32) -> &[u8; 32] {
        &self.0[e as usize - 1]
    }
}

/// A digest with the given tag (first 4 bytes) and tail byte.
fn crafted(tag: u32, tail: u8) -> [u8; 32] {
    let mut d = [0x5au8; 32];
    d[..4].copy_from_slice(&tag.to_le_bytes());
    d[31] = tail;
    d
}

fn find(t: &Table, a: &Arena, d: &[u8; 32]) -> Option<u32> {
    t.find(tag_of(d), |e| a.key(e) == d)
}

fn insert(t: &mut Table, a: &Arena, d: &[u8; 32], e: u32) -> Result<Option<u32>, Error> {
    t.insert(tag_of(d), e, |x| a.key(x) == d)
}

fn remove(t: &mut Table, a: &Arena, d: &[u8; 32]) -> Option<u32> {
    t.remove(tag_of(d), |e| a.key(e) == d)
}

#[test]
fn digests_sharing_a_tag_are_told_apart_by_the_full_key() {
    let mut slots = vec![Slot::default(); 16];
    let mut len = 0;
    let mut t = Table::new(&mut slots, &mut len);
    let mut a = Arena(Vec::new());
    let ds: Vec<[u8; 32]> = (0..6).map(|i| crafted(0xdead_beef, i)).collect();
    for d in &ds {
        let e = a.add(*d);
        assert_eq!(insert(&mut t, &a, d, e), Ok(None));
    }
    assert!(t.check());
    for (i, d) in ds.iter().enumerate() {
        assert_eq!(find(&t, &a, d), Some(i as u32 + 1));
    }
    // Same tag, a key never inserted: not found, not removed.
    let stranger = crafted(0xdead_beef, 99);
    a.add(stranger);
    assert_eq!(find(&t, &a, &stranger), None);
    assert_eq!(remove(&mut t, &a, &stranger), None);
    assert_eq!(t.len(), 6);
    // Removing one in the middle of the run keeps the others.
    assert_eq!(remove(&mut t, &a, &ds[2]), Some(3));
    assert!(t.check());
    assert_eq!(find(&t, &a, &ds[2]), None);
    for (i, d) in ds.iter().enumerate().filter(|(i, _)| *i != 2) {
        assert_eq!(find(&t, &a, d), Some(i as u32 + 1));
    }
}

#[test]
fn different_tags_in_one_bucket() {
    let mut slots = vec![Slot::default(); 8];
    let mut len = 0;
    let mut t = Table::new(&mut slots, &mut len);
    let mut a = Arena(Vec::new());
    // With 8 slots the home is the top 3 bits: these four tags all start at slot 2.
    let tags = [0x4000_0000u32, 0x4000_0001, 0x5fff_ffff, 0x4abc_0000];
    for tag in tags {
        assert_eq!(t.home(tag), 2);
    }
    let ds: Vec<[u8; 32]> = tags.iter().map(|t| crafted(*t, 0)).collect();
    for d in &ds {
        let e = a.add(*d);
        insert(&mut t, &a, d, e).expect("room");
    }
    // Removing the first of the cluster shifts the others back to their homes' run.
    assert_eq!(remove(&mut t, &a, &ds[0]), Some(1));
    assert!(t.check());
    let homes: Vec<usize> = (0..8).filter(|i| t.slots[*i].entry != EMPTY).collect();
    assert_eq!(homes, vec![2, 3, 4], "no hole left in the cluster");
    for d in &ds[1..] {
        assert!(find(&t, &a, d).is_some());
    }
}

#[test]
fn clusters_wrap_around_the_end() {
    let mut slots = vec![Slot::default(); 8];
    let mut len = 0;
    let mut t = Table::new(&mut slots, &mut len);
    let mut a = Arena(Vec::new());
    // Home 7 (the last slot) for all: they spill into 0, 1, 2.
    let ds: Vec<[u8; 32]> = (0..4).map(|i| crafted(0xffff_fff0 + i, 0)).collect();
    let late = crafted(0x0000_0001, 1); // home 0, behind the wrapped ones
    for d in ds.iter().chain([&late]) {
        let e = a.add(*d);
        insert(&mut t, &a, d, e).expect("room");
    }
    assert!(t.check());
    assert_eq!(
        t.slots[3].entry, 5,
        "the home-0 key waits behind the wrapped cluster"
    );
    assert_eq!(remove(&mut t, &a, &ds[0]), Some(1));
    assert!(t.check());
    assert_eq!(remove(&mut t, &a, &ds[2]), Some(3));
    assert!(t.check());
    for d in [&ds[1], &ds[3], &late] {
        assert!(find(&t, &a, d).is_some());
    }
    assert_eq!(
        t.slots[0].entry, 4,
        "the last wrapped key shifted back to slot 0"
    );
    assert_eq!(t.slots[1].entry, 5, "the home-0 key shifted back with it");
}

#[test]
fn full_at_three_quarters_and_room_again_after_a_remove() {
    let mut slots = vec![Slot::default(); 8];
    let mut len = 0;
    let mut t = Table::new(&mut slots, &mut len);
    let mut a = Arena(Vec::new());
    assert_eq!(t.capacity(), 6);
    let ds: Vec<[u8; 32]> = (0..7).map(|i| crafted(i * 0x1234_5679, 0)).collect();
    for d in &ds[..6] {
        let e = a.add(*d);
        insert(&mut t, &a, d, e).expect("room");
    }
    let e = a.add(ds[6]);
    assert_eq!(insert(&mut t, &a, &ds[6], e), Err(Error::Full));
    // A key already present is replaced even when the table is full.
    let again = a.add(ds[0]);
    assert_eq!(insert(&mut t, &a, &ds[0], again), Ok(Some(1)));
    assert!(t.remove_entry(tag_of(&ds[1]), 2));
    assert!(!t.remove_entry(tag_of(&ds[1]), 2), "gone already");
    assert_eq!(insert(&mut t, &a, &ds[6], e), Ok(None));
    assert!(t.check());
    assert_eq!(t.insert(1, EMPTY, |_| false), Err(Error::ZeroEntry));
}

#[test]
fn replace_points_the_key_at_another_entry() {
    let mut slots = vec![Slot::default(); 4];
    let mut len = 0;
    let mut t = Table::new(&mut slots, &mut len);
    let mut a = Arena(Vec::new());
    let d = crafted(7, 7);
    let e = a.add(d);
    insert(&mut t, &a, &d, e).expect("room");
    let e2 = a.add(d);
    assert!(t.replace(tag_of(&d), |x| x == e, e2));
    assert_eq!(find(&t, &a, &d), Some(e2));
    assert!(
        !t.replace(tag_of(&d), |x| x == e, e2),
        "no slot holds the old entry now"
    );
    assert!(
        !t.replace(tag_of(&d), |x| x == e2, EMPTY),
        "never an empty reference"
    );
}

#[test]
fn an_empty_slice_finds_nothing_and_takes_nothing() {
    let mut slots: Vec<Slot> = Vec::new();
    let mut len = 0;
    let mut t = Table::new(&mut slots, &mut len);
    assert_eq!(t.find(1, |_| true), None);
    assert_eq!(t.insert(1, 1, |_| true), Err(Error::Full));
    assert_eq!(t.remove(1, |_| true), None);
    assert!(t.check() && t.is_empty());
}

#[test]
fn a_damaged_table_answers_without_hanging() {
    // Every slot taken (never the case through the API) and a count that lies.
    let mut slots = vec![Slot { tag: 3, entry: 9 }; 8];
    let mut len = 2;
    let mut t = Table::new(&mut slots, &mut len);
    assert!(!t.check());
    assert_eq!(t.find(3, |_| false), None);
    assert_eq!(t.remove(3, |e| e == 9), Some(9));
    assert_eq!(t.insert(5, 1, |_| false), Ok(None));
}

#[test]
fn slots_for_keeps_the_load_bound() {
    for n in [0usize, 1, 2, 3, 7, 1000, 1 << 20] {
        let mut slots = vec![Slot::default(); slots_for(n)];
        let mut len = 0;
        assert!(Table::new(&mut slots, &mut len).capacity() >= n, "{n}");
    }
    assert_eq!(
        core::mem::size_of::<Slot>(),
        8,
        "eight slots per cache line"
    );
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

#[test]
fn agrees_with_a_hash_map_under_churn() {
    for (n, seed) in [(8usize, 1u64), (13, 2), (64, 3), (257, 4)] {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut slots = vec![Slot::default(); n];
        let mut len = 0;
        let mut t = Table::new(&mut slots, &mut len);
        let mut a = Arena(Vec::new());
        let mut model: HashMap<[u8; 32], u32> = HashMap::new();
        for _ in 0..20_000 {
            let r = rng.next();
            // Few tags (collisions), a few keys per tag.
            let d = crafted((r as u32 % 5).wrapping_mul(0x3333_3333), (r >> 8) as u8 % 4);
            match (r >> 16) % 3 {
                0 => {
                    let e = a.add(d);
                    let full = model.len() >= t.capacity() && !model.contains_key(&d);
                    match insert(&mut t, &a, &d, e) {
                        Ok(old) => assert_eq!(old, model.insert(d, e)),
                        Err(Error::Full) => assert!(full),
                        Err(e) => panic!("{e:?}"),
                    }
                }
                1 => assert_eq!(remove(&mut t, &a, &d), model.remove(&d)),
                _ => assert_eq!(find(&t, &a, &d), model.get(&d).copied()),
            }
            assert_eq!(t.len(), model.len());
        }
        assert!(t.check());
        for (d, e) in &model {
            assert_eq!(find(&t, &a, d), Some(*e));
        }
    }
}
