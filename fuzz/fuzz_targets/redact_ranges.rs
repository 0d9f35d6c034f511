//! The location range finder on arbitrary bytes: never a panic, an endless loop or unbounded
//! memory, and its ranges are always sorted, disjoint and inside the file.
#![no_main]

use fusegate::redact::{find_in_bytes, zero_ranges};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ranges = find_in_bytes(data).expect("reading memory cannot fail");
    let mut prev_end = None;
    for r in ranges.spans() {
        assert!(r.start < r.end && r.end <= data.len() as u64, "{r:?} outside the file");
        if let Some(p) = prev_end {
            assert!(r.start > p, "spans not sorted and merged");
        }
        prev_end = Some(r.end);
    }
    let mut copy = data.to_vec();
    let zeroed = zero_ranges(&mut copy, 0, &ranges);
    assert_eq!(zeroed as u64, ranges.total_bytes());
});
