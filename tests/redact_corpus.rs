//! The fuzz corpus of the location range finder (fuzz/corpus/redact_ranges), run on stable by
//! plain `cargo test`: every file and every truncation of it gives sorted, disjoint ranges inside
//! the file, and the seeds made from real files keep their expected result.

use std::path::Path;

use fusegate::redact::{find_in_bytes, zero_ranges, Ranges};

fn valid(data: &[u8], r: &Ranges, what: &str) {
    let mut prev_end = None;
    for s in r.spans() {
        assert!(
            s.start < s.end && s.end <= data.len() as u64,
            "{what}: {s:?} outside the file"
        );
        if let Some(p) = prev_end {
            assert!(s.start > p, "{what}: spans not sorted and merged: {r:?}");
        }
        prev_end = Some(s.end);
    }
    let mut copy = data.to_vec();
    assert_eq!(
        zero_ranges(&mut copy, 0, r) as u64,
        r.total_bytes(),
        "{what}"
    );
}

#[test]
fn every_corpus_file_and_truncation() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/redact_ranges");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(&path).unwrap();
        let r = find_in_bytes(&data).unwrap();
        valid(&data, &r, &name);
        // Seeds: `built-*` (hand-built) and `tool-*` (made by real tools) have known answers.
        if name.starts_with("built-") || name.starts_with("tool-") {
            assert!(!r.is_conservative(), "{name}: {r:?}");
            assert_eq!(r.is_empty(), name.contains("no-location"), "{name}: {r:?}");
        }
        let step = if data.len() <= 8 << 10 { 1 } else { 13 };
        for cut in (0..data.len()).step_by(step) {
            let part = &data[..cut];
            valid(
                part,
                &find_in_bytes(part).unwrap(),
                &format!("{name} cut at {cut}"),
            );
        }
        files += 1;
    }
    assert!(
        files >= 20,
        "the corpus lost its seeds: {files} files in {}",
        dir.display()
    );
}
