//! RESP2 reply parsing (fleet tier): total over any bytes, bounded, and prefix-consistent; and
//! what a purge sweep reads of a reply (members, the round it builds from them, their slots)
//! never panics; a slot map read from any reply, or from any bytes, survives its bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phantom_core::fleet::layout::Layout;
use phantom_core::fleet::cluster::SlotMap;
use phantom_core::fleet::resp::{command, parse, Limits, Reply};
use phantom_core::fleet::{slot, sweep};

/// A sweep's reading of any reply: an `SRANDMEMBER` answer, and a round's answers.
fn sweep_reads(reply: &Reply) {
    let Ok(members) = sweep::members(reply) else {
        return;
    };
    for m in &members {
        assert!(slot::key_slot(m) < slot::SLOTS);
    }
    let layout = Layout::new(&[1; 32], "pt:v2:");
    let round = sweep::round(&layout, "pt:v2:sub:{x}", &members, (b"", 0));
    let _ = sweep::read(&round, !members.is_empty(), std::slice::from_ref(reply));
}

/// A map read from a `CLUSTER SHARDS` or `CLUSTER SLOTS` reply reads back the same from its
/// bytes (what one worker hands the others through the zone).
fn slot_map_reads(reply: &Reply) {
    let ip = std::net::IpAddr::from([127, 0, 0, 1]);
    let maps = [
        SlotMap::from_shards(reply, ip, false),
        SlotMap::from_slots(reply, ip),
    ];
    for map in maps.into_iter().flatten() {
        assert_eq!(SlotMap::from_bytes(&map.to_bytes()).as_ref(), Some(&map));
    }
}

/// Checks the parser's contract for `data` under `limits`.
fn check(data: &[u8], limits: &Limits) {
    let full = parse(data, limits);
    if let Ok(Some((reply, n))) = &full {
        sweep_reads(reply);
        slot_map_reads(reply);
        // Consumes at least one byte and never more than its input.
        assert!(*n > 0 && *n <= data.len());
        // The frame alone parses the same: bytes after it are never looked at.
        assert_eq!(parse(&data[..*n], limits), full);
        // A command (array of bulks) re-encodes to bytes that parse back the same.
        if let Reply::Array(Some(items)) = reply {
            let args: Option<Vec<&[u8]>> = items
                .iter()
                .map(|r| match r {
                    Reply::Bulk(Some(b)) => Some(*b),
                    _ => None,
                })
                .collect();
            if let Some(args) = args {
                let enc = command(&args);
                assert_eq!(parse(&enc, limits), Ok(Some((reply.clone(), enc.len()))));
            }
        }
    }
    // Every prefix is incomplete or gives the same result (a frame or the same error): all
    // cuts for short inputs, an even sample for long ones (the parser restarts per call).
    let step = (data.len() / 256).max(1);
    for cut in (0..data.len()).step_by(step) {
        match parse(&data[..cut], limits) {
            Ok(None) => {}
            other => assert_eq!(other, full, "prefix {cut}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // Any bytes are a map or refused; a map's own bytes read back the same.
    if let Some(map) = SlotMap::from_bytes(data) {
        assert_eq!(SlotMap::from_bytes(&map.to_bytes()).as_ref(), Some(&map));
    }
    check(data, &Limits::default());
    // Tight limits reach every limit check with short inputs.
    let tight = Limits {
        max_depth: 2,
        max_bulk: 16,
        max_array: 4,
    };
    check(data, &tight);
});
