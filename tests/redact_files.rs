//! The location range finder over real files made by real tools: zeroing its ranges leaves no
//! location for exiftool to find, changes no other byte, and leaves the media decodable. No FUSE
//! here: this is the module alone (the mount variant is in the storage view's tests).

mod common;

use std::os::unix::fs::FileExt;
use std::path::Path;

use common::media::{generate, location_tags, run, thumbnail, Sample};
use common::TempDir;
use fusegate::redact::{find_location_ranges, zero_ranges, Ranges};

/// The ranges, and how many bytes the finder read to find them.
fn ranges_of(path: &Path) -> (Ranges, u64) {
    let f = std::fs::File::open(path).unwrap();
    let size = f.metadata().unwrap().len();
    let mut read = 0;
    let r = find_location_ranges(size, |off, buf| {
        let n = f.read_at(buf, off)?;
        read += n as u64;
        Ok(n)
    })
    .unwrap();
    (r, read)
}

/// The file as a redacted reader gets it, read in odd-sized pieces as the kernel might ask.
fn redacted_copy(orig: &[u8], ranges: &Ranges) -> Vec<u8> {
    let mut out = Vec::with_capacity(orig.len());
    for (i, chunk) in orig.chunks(4093).enumerate() {
        let mut buf = chunk.to_vec();
        zero_ranges(&mut buf, (i * 4093) as u64, ranges);
        out.extend_from_slice(&buf);
    }
    out
}

fn decodes(path: &Path, name: &str) {
    let p = path.to_str().unwrap();
    if name.starts_with("heic") || name.starts_with("avif") {
        let png = format!("{p}.decoded.png");
        run("heif-convert", &[p, &png]);
    } else {
        run("ffmpeg", &["-v", "error", "-i", p, "-f", "null", "-"]);
    }
}

fn check(dir: &Path, s: &Sample) {
    let orig = std::fs::read(&s.path).unwrap();
    let before = location_tags(&s.path);
    let (ranges, read) = ranges_of(&s.path);
    // Metadata only: the 70 KB extended XMP is the biggest the samples have.
    assert!(read < 100 << 10, "{}: the finder read {read} bytes", s.name);
    assert!(
        !ranges.is_conservative(),
        "{}: a tool-made file needs no guessing",
        s.name
    );
    if !s.has_location {
        assert!(
            before.is_empty(),
            "{}: the control has location: {before:?}",
            s.name
        );
        assert!(
            ranges.is_empty(),
            "{}: no location, yet ranges {ranges:?}",
            s.name
        );
        return;
    }
    assert!(
        !before.is_empty(),
        "{}: the tools wrote no location",
        s.name
    );
    assert!(
        !ranges.is_empty(),
        "{}: location found by exiftool but no ranges",
        s.name
    );

    let copy = redacted_copy(&orig, &ranges);
    assert_eq!(copy.len(), orig.len());
    for (i, (a, b)) in orig.iter().zip(&copy).enumerate() {
        if ranges.overlaps(i as u64, 1) {
            assert_eq!(*b, 0, "{}: byte {i} in a range not zeroed", s.name);
        } else {
            assert_eq!(a, b, "{}: byte {i} outside the ranges changed", s.name);
        }
    }
    // The location the tools wrote is a few hundred bytes per kind: more means the finder
    // redacted whole containers or media data.
    assert!(ranges.total_bytes() < 3000, "{}: {ranges:?}", s.name);

    let out = dir.join(format!(
        "redacted-{}",
        s.path.file_name().unwrap().to_str().unwrap()
    ));
    std::fs::write(&out, &copy).unwrap();
    let after = location_tags(&out);
    assert!(
        after.is_empty(),
        "{}: exiftool still finds {after:?}\nbefore: {before:?}",
        s.name
    );
    if s.thumbnail_with_gps {
        let t = thumbnail(&s.path).expect("the original has a thumbnail");
        let tp = dir.join(format!("{}-thumb.jpg", s.name));
        std::fs::write(&tp, t).unwrap();
        assert!(
            !location_tags(&tp).is_empty(),
            "{}: the thumbnail had no GPS",
            s.name
        );
        let t = thumbnail(&out).expect("redaction keeps the thumbnail");
        std::fs::write(&tp, t).unwrap();
        let left = location_tags(&tp);
        assert!(
            left.is_empty(),
            "{}: the thumbnail still has {left:?}",
            s.name
        );
    }
    decodes(&out, s.name);
}

#[test]
fn real_files_lose_their_location_and_nothing_else() {
    let dir = TempDir::new("redact-files");
    let samples = generate(dir.path());
    assert!(samples.len() >= 10);
    for s in &samples {
        check(dir.path(), s);
    }
    // `REDACT_CORPUS_OUT=fuzz/corpus/redact_ranges cargo test --test redact_files` refreshes the
    // fuzz corpus seeds with these files (the small ones).
    if let Some(out) = std::env::var_os("REDACT_CORPUS_OUT") {
        for s in &samples {
            let bytes = std::fs::read(&s.path).unwrap();
            if bytes.len() <= 64 << 10 {
                std::fs::write(Path::new(&out).join(format!("tool-{}", s.name)), bytes).unwrap();
            }
        }
    }
}
