//! The zone's hash index: a hit and a miss with 1,000 and with 1,000,000 entries (slots
//! sized by `slots_for`, entries' digests in an array of their own as the zone's entries
//! hold them), keys taken in a random order so the large table is read from cold memory.
//!
//! cargo bench -p phantom-core --bench table -- --warm-up-time 1 --measurement-time 3
//!
//! Measured (2 shared vCPUs, median, quiet run): hit 5.0 ns with 1,000 entries, 55 ns with
//! 1,000,000 (the slots' line and the entry's digest, both cold; 98 ns under load from other
//! jobs); miss 13.6 ns and 25.7 ns; the tree's order (`tree/hit`) 43 ns and 1.41 us.
// `criterion_group!` defines an undocumented `pub fn benches`; the crate's `missing_docs`
// lint is for the library's API.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use phantom_core::digest::token_digest;
use phantom_core::index::{attach_point, find, tree_key, Tree};
use phantom_core::table::{slots_for, tag_of, Slot, Table};
use std::hint::black_box;

struct Fixture {
    slots: Vec<Slot>,
    len: u32,
    digests: Vec<[u8; 32]>,
    /// Lookup order: a permutation of the entries.
    order: Vec<u32>,
    /// Keys never inserted.
    absent: Vec<[u8; 32]>,
}

fn fixture(n: usize) -> Fixture {
    let digests: Vec<[u8; 32]> = (0..n as u64)
        .map(|i| token_digest(&i.to_le_bytes()))
        .collect();
    let mut slots = vec![Slot::default(); slots_for(n)];
    let mut len = 0;
    {
        let mut t = Table::new(&mut slots, &mut len);
        for (i, d) in digests.iter().enumerate() {
            let e = i as u32 + 1;
            let r = t.insert(tag_of(d), e, |x| &digests[x as usize - 1] == d);
            assert_eq!(r, Ok(None));
        }
    }
    // A fixed shuffle (xorshift), so the large case misses the CPU caches.
    let mut order: Vec<u32> = (1..=n as u32).collect();
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..order.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        order.swap(i, (s % (i as u64 + 1)) as usize);
    }
    let absent = (0..n.max(4096) as u64)
        .map(|i| token_digest(&(u64::MAX - i).to_le_bytes()))
        .collect();
    Fixture {
        slots,
        len,
        digests,
        order,
        absent,
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("table");
    for n in [1_000usize, 1_000_000] {
        let mut f = fixture(n);
        let digests = std::mem::take(&mut f.digests);
        let t = Table::new(&mut f.slots, &mut f.len);
        let mut i = 0;
        g.bench_function(format!("hit/{n}"), |b| {
            b.iter(|| {
                let d = &digests[f.order[i] as usize - 1];
                i = if i + 1 == f.order.len() { 0 } else { i + 1 };
                black_box(t.find(tag_of(d), |x| &digests[x as usize - 1] == d))
            })
        });
        let mut j = 0;
        g.bench_function(format!("miss/{n}"), |b| {
            b.iter(|| {
                let d = &f.absent[j];
                j = (j + 1) % f.absent.len();
                black_box(t.find(tag_of(d), |x| &digests[x as usize - 1] == d))
            })
        });
    }
    g.finish();
}

/// The index before this one, for comparison: a binary search tree by `phantom_core::index`
/// (the zone's rbtree order), nodes of the rbtree's size, built in random order (expected
/// depth about 1.4 log2 n, against the rbtree's log2 n at best).
struct Arena {
    /// left, right, digest, padding to the zone's 120-byte node.
    nodes: Vec<(u32, u32, [u8; 32], [u8; 80])>,
}

impl Tree for Arena {
    type Node = u32;
    fn is_nil(&self, n: u32) -> bool {
        n == 0
    }
    fn left(&self, n: u32) -> u32 {
        self.nodes[n as usize].0
    }
    fn right(&self, n: u32) -> u32 {
        self.nodes[n as usize].1
    }
    fn key(&self, n: u32) -> u64 {
        tree_key(&self.nodes[n as usize].2)
    }
    fn digest(&self, n: u32) -> &[u8; 32] {
        &self.nodes[n as usize].2
    }
}

fn tree(c: &mut Criterion) {
    let mut g = c.benchmark_group("tree");
    for n in [1_000usize, 1_000_000] {
        let f = fixture(n);
        let mut a = Arena {
            nodes: vec![(0, 0, [0; 32], [0; 80])],
        };
        for d in &f.digests {
            a.nodes.push((0, 0, *d, [0; 80]));
            let id = a.nodes.len() as u32 - 1;
            if id == 1 {
                continue;
            }
            let (p, left) = attach_point(&a, 1, d);
            if left {
                a.nodes[p as usize].0 = id;
            } else {
                a.nodes[p as usize].1 = id;
            }
        }
        let mut i = 0;
        g.bench_function(format!("hit/{n}"), |b| {
            b.iter(|| {
                let d = &f.digests[f.order[i] as usize - 1];
                i = if i + 1 == f.order.len() { 0 } else { i + 1 };
                black_box(find(&a, 1, d))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench, tree);
criterion_main!(benches);
