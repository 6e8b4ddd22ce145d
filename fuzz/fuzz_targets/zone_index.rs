//! The zone's whole index (hash table and subject/client chains) against a `HashMap` model:
//! stores, evictions by reference, purges by token, subject and client in steps; every key
//! answers as the model does, purges take exactly the model's entries, nothing goes twice.
#![no_main]

use std::collections::{HashMap, HashSet};

use libfuzzer_sys::fuzz_target;
use phantom_core::chain::{group_key, Chain, Entries, Links};
use phantom_core::table::{slots_for, Error, Slot, Table};
use phantom_core::zone_index::ZoneIndex;

#[derive(Default)]
struct Arena(Vec<([u8; 32], Links, bool)>);

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

fn free(a: &mut Arena, e: u32) {
    assert!(a.0[e as usize - 1].2, "freed twice");
    a.0[e as usize - 1].2 = false;
}

/// 4 tags, 4 keys per tag.
fn key(b: u8) -> [u8; 32] {
    let mut d = [0u8; 32];
    d[..4].copy_from_slice(&(u32::from(b & 3) * 0x4000_0001).to_le_bytes());
    d[31] = b >> 2 & 3;
    d
}

fn keys(sub: u8, client: u8) -> [u64; 2] {
    [group_key(Chain::Sub, &[sub]), group_key(Chain::Client, &[client])]
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, ops)) = data.split_first() else {
        return;
    };
    let n = slots_for(usize::from(n % 24) + 1);
    let (mut p, mut g) = (vec![Slot::default(); n], vec![Slot::default(); n]);
    let (mut pl, mut gl) = (0, 0);
    let mut ix = ZoneIndex::new(Table::new(&mut p, &mut pl), Table::new(&mut g, &mut gl));
    let mut a = Arena::default();
    let mut model: HashMap<[u8; 32], (u32, u8, u8)> = HashMap::new();
    for op in ops.chunks_exact(2) {
        let d = key(op[1]);
        let (sub, client) = (op[1] >> 4 & 3, op[1] >> 6);
        match op[0] % 5 {
            0 | 1 => {
                if let Some(old) = ix.remove_key(&mut a, &d) {
                    free(&mut a, old);
                    model.remove(&d);
                }
                a.0.push((d, Links::default(), true));
                let e = a.0.len() as u32;
                match ix.insert(&mut a, e, keys(sub, client)) {
                    Ok(()) => {
                        model.insert(d, (e, sub, client));
                    }
                    Err(Error::Full) => free(&mut a, e),
                    Err(e) => panic!("{e:?}"),
                }
            }
            2 => {
                let got = ix.remove_key(&mut a, &d);
                assert_eq!(got, model.remove(&d).map(|v| v.0));
                if let Some(e) = got {
                    free(&mut a, e);
                }
            }
            3 => {
                if let Some((e, ..)) = model.remove(&d) {
                    assert!(ix.remove(&mut a, e));
                    free(&mut a, e);
                }
            }
            _ => {
                let (c, v) = if op[0] & 8 == 0 { (Chain::Sub, sub) } else { (Chain::Client, client) };
                let mut gone = HashSet::new();
                let budget = usize::from(op[0] >> 4) + 1;
                for _ in 0..64 {
                    let (_, done) = ix.purge_step(&mut a, c, group_key(c, &[v]), budget, |a, e| {
                        free(a, e);
                        gone.insert(e);
                    });
                    if done {
                        break;
                    }
                }
                let want: HashSet<u32> = model
                    .values()
                    .filter(|(_, s, cl)| if c == Chain::Sub { *s == v } else { *cl == v })
                    .map(|v| v.0)
                    .collect();
                assert_eq!(gone, want);
                model.retain(|_, v| !gone.contains(&v.0));
            }
        }
        assert_eq!(ix.len(), model.len());
        assert_eq!(ix.find(&a, &d), model.get(&d).map(|v| v.0));
    }
    assert!(ix.check(&a, 1 << 16));
    for (d, (e, ..)) in &model {
        assert_eq!(ix.find(&a, d), Some(*e));
    }
});
