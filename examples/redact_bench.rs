//! Cost of location redaction, from the library directly (no FUSE, no daemon).
//!
//! `cargo run --release --example redact_bench -- [FILE...]` prints `name value unit` lines for
//! bench/run.sh to collect:
//!
//! * `finder_<kind>`: `find_location_ranges` over a file through `pread` (page cache warm), per
//!   file: what the first redacted open of a file version pays (later opens hit the cache);
//!   also the number of ranges and bytes they cover.
//! * `zero_ranges_hit` / `zero_ranges_miss`: `zero_ranges` on a 128 KiB read that overlaps the
//!   ranges / that does not (the common case for the image data), next to `copy_128k`, the
//!   memcpy every userspace read of that size pays anyway.
//!
//! Without FILE arguments it makes a 12-megapixel-sized JPEG (4000x3000, EXIF with GPS, XMP,
//! thumbnail), a HEIC and a 10 s 640x480 MP4 with location, using exiftool, ImageMagick,
//! heif-enc and ffmpeg (scripts/install-deps.sh installs them), in a temporary directory.

use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use fusegate::redact::{find_location_ranges, zero_ranges, Ranges};

fn run(tool: &str, args: &[&str]) {
    let st = Command::new(tool).args(args).status();
    assert!(
        st.is_ok_and(|s| s.success()),
        "{tool} {args:?} failed (scripts/install-deps.sh installs it)"
    );
}

const GPS: &[&str] = &[
    "-q",
    "-q",
    "-overwrite_original",
    "-GPSLatitude=48.8577",
    "-GPSLatitudeRef=N",
    "-GPSLongitude=2.2945",
    "-GPSLongitudeRef=E",
    "-GPSAltitude=35",
    "-XMP-exif:GPSLatitude=48.8577N",
    "-XMP-photoshop:City=Paris",
];

fn generate(dir: &Path) -> Vec<(String, PathBuf)> {
    let s = |p: &PathBuf| p.to_str().unwrap().to_owned();
    let jpg = dir.join("photo.jpg");
    run(
        "convert",
        &["-size", "4000x3000", "plasma:", "-quality", "90", &s(&jpg)],
    );
    let thumb = dir.join("thumb.jpg");
    run("convert", &[&s(&jpg), "-resize", "160x120", &s(&thumb)]);
    let t = format!("-ThumbnailImage<={}", s(&thumb));
    run(
        "exiftool",
        &[GPS, &[t.as_str(), "-Make=Bench", &s(&jpg)]].concat(),
    );
    let png = dir.join("src.png");
    run(
        "convert",
        &[
            "-size",
            "1280x960",
            "plasma:",
            &format!("PNG24:{}", s(&png)),
        ],
    );
    let heic = dir.join("photo.heic");
    run("heif-enc", &["-q", "60", "-o", &s(&heic), &s(&png)]);
    run("exiftool", &[GPS, &[s(&heic).as_str()]].concat());
    let mp4 = dir.join("video.mp4");
    run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=duration=10:size=640x480:rate=30",
            "-pix_fmt",
            "yuv420p",
            "-metadata",
            "location=+48.8577+002.2945/",
            "-y",
            &s(&mp4),
        ],
    );
    vec![
        ("jpeg".into(), jpg),
        ("heic".into(), heic),
        ("mp4".into(), mp4),
    ]
}

/// The ranges, the file size, and the bytes and calls the finder read.
fn find(path: &Path) -> (Ranges, u64, u64, u64) {
    let f = std::fs::File::open(path).unwrap();
    let size = f.metadata().unwrap().len();
    let (mut bytes, mut calls) = (0, 0);
    let r = find_location_ranges(size, |off, buf| {
        calls += 1;
        let n = f.read_at(buf, off)?;
        bytes += n as u64;
        Ok(n)
    });
    (r.unwrap(), size, bytes, calls)
}

fn main() {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let tmp = std::env::temp_dir().join(format!("fusegate-redact-bench-{}", std::process::id()));
    let files = if args.is_empty() {
        std::fs::create_dir_all(&tmp).unwrap();
        generate(&tmp)
    } else {
        args.iter()
            .map(|p| {
                (
                    p.extension()
                        .map_or("file".into(), |e| e.to_string_lossy().into_owned()),
                    p.clone(),
                )
            })
            .collect()
    };
    let mut jpeg_ranges = None;
    for (kind, path) in &files {
        let (ranges, size, bytes, calls) = find(path);
        let iters = 2000;
        let t = Instant::now();
        for _ in 0..iters {
            black_box(find(path));
        }
        // Opening and stat'ing the file is part of each iteration; subtract it.
        let t_open = Instant::now();
        for _ in 0..iters {
            let f = std::fs::File::open(path).unwrap();
            black_box(f.metadata().unwrap().len());
        }
        let open_ns = t_open.elapsed().as_nanos() as f64 / iters as f64;
        let ns = t.elapsed().as_nanos() as f64 / iters as f64 - open_ns;
        println!(
            "finder_{kind} {:.1} us_per_file  (file {} KiB, read {bytes} B in {calls} calls, {} ranges, {} bytes zeroed, conservative {})",
            ns / 1000.0,
            size / 1024,
            ranges.spans().len(),
            ranges.total_bytes(),
            ranges.is_conservative()
        );
        if kind == "jpeg" || jpeg_ranges.is_none() {
            jpeg_ranges = Some(ranges);
        }
    }
    let ranges = jpeg_ranges.unwrap_or_default();
    let mut buf = vec![0xAAu8; 128 << 10];
    let src = vec![0x55u8; 128 << 10];
    let iters = 20_000u32;
    // Baseline: copying the read into the reply buffer, which every userspace read pays.
    let t = Instant::now();
    for _ in 0..iters {
        black_box(&mut buf).copy_from_slice(black_box(&src));
    }
    let copy_ns = t.elapsed().as_nanos() as f64 / f64::from(iters);
    println!("copy_128k {copy_ns:.0} ns_per_read  (baseline: memcpy of one 128 KiB read)");
    let first = ranges.spans().first().map_or(0, |r| r.start);
    for (name, offset) in [("hit", first.saturating_sub(100)), ("miss", 64 << 20)] {
        let t = Instant::now();
        for _ in 0..iters {
            black_box(zero_ranges(black_box(&mut buf), offset, &ranges));
        }
        let ns = t.elapsed().as_nanos() as f64 / f64::from(iters);
        println!(
            "zero_ranges_{name} {ns:.0} ns_per_read  (128 KiB read {} the ranges)",
            if name == "hit" {
                "overlapping"
            } else {
                "outside"
            }
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
