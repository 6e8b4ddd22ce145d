//! The zone's hash index against a `HashMap` model: every insert, remove and find answers as
//! the model does, over keys that share tags and homes (few tags, a few keys per tag) in a
//! small table, so clusters, wrap-around, backward shifts and a full table all happen.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use phantom_core::table::{tag_of, Error, Slot, Table};

/// A digest from one byte: 8 tags (spread over the table, and two close to the end so
/// clusters wrap), 8 keys per tag that differ only after the tag.
fn key(b: u8) -> [u8; 32] {
    const TAGS: [u32; 8] = [0, 1, 0x4000_0000, 0x4000_0001, 0x8000_0000, 0xc000_0000, 0xffff_fffe, 0xffff_ffff];
    let mut d = [0u8; 32];
    d[..4].copy_from_slice(&TAGS[(b & 7) as usize].to_le_bytes());
    d[31] = b >> 3 & 7;
    d
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, ops)) = data.split_first() else {
        return;
    };
    let mut slots = vec![Slot::default(); usize::from(n % 64) + 1];
    let mut len = 0;
    let mut t = Table::new(&mut slots, &mut len);
    // Entry references index `keys`: an entry's full key, as the zone's entries hold it.
    let mut keys: Vec<[u8; 32]> = Vec::new();
    let mut model: HashMap<[u8; 32], u32> = HashMap::new();
    for op in ops.chunks_exact(2) {
        let d = key(op[1]);
        let tag = tag_of(&d);
        match op[0] % 4 {
            0 | 1 => {
                keys.push(d);
                let e = keys.len() as u32;
                let eq = |x: u32| keys[x as usize - 1] == d;
                match t.insert(tag, e, eq) {
                    Ok(old) => assert_eq!(old, model.insert(d, e)),
                    Err(Error::Full) => {
                        assert!(!model.contains_key(&d) && model.len() >= t.capacity())
                    }
                    Err(e) => panic!("{e:?}"),
                }
            }
            2 => {
                let got = t.remove(tag, |x| keys[x as usize - 1] == d);
                assert_eq!(got, model.remove(&d));
            }
            _ => {
                let got = t.find(tag, |x| keys[x as usize - 1] == d);
                assert_eq!(got, model.get(&d).copied());
            }
        }
        assert_eq!(t.len(), model.len());
    }
    assert!(t.check());
    for (d, e) in &model {
        assert_eq!(t.find(tag_of(d), |x| keys[x as usize - 1] == *d), Some(*e));
    }
});
