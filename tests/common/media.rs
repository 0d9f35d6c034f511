//! Real photos and videos with location metadata, made at test time by real tools (ImageMagick,
//! cwebp, heif-enc, ffmpeg, exiftool: installed by scripts/install-deps.sh), and exiftool's
//! view of the location they carry.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One generated file.
pub struct Sample {
    pub name: &'static str,
    pub path: PathBuf,
    /// Whether the tools put location in it (the control files have none).
    pub has_location: bool,
    /// Whether its EXIF has a thumbnail that itself carries GPS.
    pub thumbnail_with_gps: bool,
}

/// Runs a tool, panicking with its stderr if it is missing or fails.
pub fn run(tool: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} cannot run ({e}): scripts/install-deps.sh installs it"));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

const GPS: &[&str] = &[
    "-GPSLatitude=48.8577",
    "-GPSLatitudeRef=N",
    "-GPSLongitude=2.2945",
    "-GPSLongitudeRef=E",
    "-GPSAltitude=35",
    "-GPSAltitudeRef=0",
    "-GPSDateStamp=2024:05:06",
    "-GPSTimeStamp=10:20:30",
];

const XMP_LOCATION: &[&str] = &[
    "-XMP-exif:GPSLatitude=48.8577N",
    "-XMP-exif:GPSLongitude=2.2945E",
    "-XMP-photoshop:City=Paris",
    "-XMP-photoshop:State=Ile-de-France",
    "-XMP-photoshop:Country=France",
    "-XMP-iptcCore:Location=Tour Eiffel",
    "-XMP-iptcCore:CountryCode=FR",
    "-XMP-iptcExt:LocationShownCity=Paris",
    "-XMP-iptcExt:LocationCreatedCountryName=France",
    "-XMP-dc:Title=Not a location",
];

const IPTC_LOCATION: &[&str] = &[
    "-IPTC:City=Paris",
    "-IPTC:Sub-location=Champ de Mars",
    "-IPTC:Province-State=Ile-de-France",
    "-IPTC:Country-PrimaryLocationCode=FRA",
    "-IPTC:Country-PrimaryLocationName=France",
    "-IPTC:ObjectName=Not a location",
];

/// XMP properties as attributes (as cameras and Adobe write them) rather than elements.
const SHORTHAND: &[&str] = &["-api", "Compact=Shorthand"];

fn exiftool(file: &Path, extra: &[&str], tags: &[&[&str]]) {
    let mut args = vec!["-q", "-q", "-overwrite_original"];
    args.extend_from_slice(extra);
    for t in tags {
        args.extend_from_slice(t);
    }
    let f = file.to_str().unwrap();
    args.push(f);
    run("exiftool", &args);
}

/// Makes the sample files in `dir`.
pub fn generate(dir: &Path) -> Vec<Sample> {
    let p = |n: &str| dir.join(n);
    let s = |x: &PathBuf| x.to_str().unwrap().to_owned();
    let mut v = Vec::new();
    let mut add = |name, path: PathBuf, has_location, thumbnail_with_gps| {
        v.push(Sample {
            name,
            path,
            has_location,
            thumbnail_with_gps,
        })
    };

    let base = p("base.jpg");
    run(
        "convert",
        &["-size", "96x64", "gradient:red-blue", &s(&base)],
    );
    let png_src = p("base.png");
    let png24 = format!("PNG24:{}", s(&png_src));
    run(
        "convert",
        &["-size", "96x64", "gradient:green-yellow", &png24],
    );

    // JPEG, little-endian EXIF with GPS, XMP location, IPTC places, and a thumbnail whose own
    // (big-endian) EXIF has GPS too.
    let thumb = p("thumb.jpg");
    run(
        "convert",
        &["-size", "24x16", "gradient:white-black", &s(&thumb)],
    );
    exiftool(&thumb, &["-ExifByteOrder=Big-endian"], &[GPS]);
    let jpeg_le = p("exif-le.jpg");
    std::fs::copy(&base, &jpeg_le).unwrap();
    let thumb_arg = format!("-ThumbnailImage<={}", s(&thumb));
    exiftool(
        &jpeg_le,
        &["-ExifByteOrder=Little-endian", "-Make=Test", &thumb_arg],
        &[GPS, XMP_LOCATION, IPTC_LOCATION],
    );
    add("jpeg-le-thumb-xmp", jpeg_le, true, true);

    // JPEG, big-endian EXIF with GPS only.
    let jpeg_be = p("exif-be.jpg");
    std::fs::copy(&base, &jpeg_be).unwrap();
    exiftool(
        &jpeg_be,
        &["-ExifByteOrder=Big-endian", "-Model=Test"],
        &[GPS],
    );
    add("jpeg-be", jpeg_be, true, false);

    // JPEG whose XMP is too big for one segment: exiftool moves the 70 KB description to
    // extended XMP segments, which must come through untouched.
    let desc = p("description.txt");
    std::fs::write(&desc, "a long description ".repeat(3700)).unwrap();
    let jpeg_ext = p("extended-xmp.jpg");
    std::fs::copy(&base, &jpeg_ext).unwrap();
    let desc_arg = format!("-XMP-dc:Description<={}", s(&desc));
    exiftool(&jpeg_ext, &[&desc_arg], &[XMP_LOCATION]);
    add("jpeg-extended-xmp", jpeg_ext, true, false);

    // JPEG with EXIF but no location: the control.
    let plain = p("plain.jpg");
    std::fs::copy(&base, &plain).unwrap();
    exiftool(&plain, &["-Make=Test", "-XMP-dc:Title=Nothing here"], &[]);
    add("jpeg-no-location", plain, false, false);

    // PNG: eXIf chunk and XMP iTXt.
    let png = p("located.png");
    std::fs::copy(&png_src, &png).unwrap();
    exiftool(&png, &[], &[GPS, XMP_LOCATION]);
    add("png-exif-xmp", png, true, false);

    // TIFF (as DNG and other raw files are): GPS IFD and XMP (tag 700), big-endian.
    let tiff = p("located.tif");
    run("convert", &[&s(&png_src), "-endian", "MSB", &s(&tiff)]);
    exiftool(&tiff, SHORTHAND, &[GPS, XMP_LOCATION]);
    add("tiff-gps-xmp", tiff, true, false);

    // WebP: EXIF and XMP chunks.
    let webp = p("located.webp");
    run("cwebp", &["-quiet", &s(&png_src), "-o", &s(&webp)]);
    exiftool(&webp, SHORTHAND, &[GPS, XMP_LOCATION]);
    add("webp-exif-xmp", webp, true, false);

    // HEIC (HEVC) and AVIF (AV1) from libheif, then the Exif item and the XMP item by exiftool.
    let heic = p("located.heic");
    run("heif-enc", &["-q", "60", "-o", &s(&heic), &s(&png_src)]);
    exiftool(&heic, SHORTHAND, &[GPS, XMP_LOCATION]);
    add("heic-exif-xmp", heic, true, false);
    let avif = p("located.avif");
    run(
        "heif-enc",
        &["-A", "-q", "60", "-o", &s(&avif), &s(&png_src)],
    );
    exiftool(&avif, &[], &[GPS]);
    add("avif-exif", avif, true, false);

    // Videos: ffmpeg writes `loci` in MP4/3GP and `©xyz` in MOV; exiftool adds the QuickTime
    // keys entry and XMP.
    let video = |out: &PathBuf, size: &str| {
        let src = format!("testsrc=duration=1:size={size}:rate=5");
        run(
            "ffmpeg",
            &[
                "-v", "error", "-f", "lavfi", "-i", &src, "-pix_fmt", "yuv420p",
            ]
            .iter()
            .copied()
            .chain(["-metadata", "location=+48.8577+002.2945/", "-y", &s(out)])
            .collect::<Vec<_>>(),
        );
    };
    let mp4 = p("located.mp4");
    video(&mp4, "64x48");
    add("mp4-loci", mp4, true, false);
    let mov = p("located.mov");
    video(&mov, "64x48");
    exiftool(
        &mov,
        &[
            "-Keys:GPSCoordinates=48.8577, 2.2945, 35",
            "-XMP-exif:GPSLatitude=48.8577N",
        ],
        &[],
    );
    add("mov-xyz-keys-xmp", mov, true, false);
    let tgp = p("located.3gp");
    video(&tgp, "176x144");
    add("3gp-loci", tgp, true, false);
    let plain_mp4 = p("plain.mp4");
    run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=duration=1:size=64x48:rate=5",
            "-pix_fmt",
            "yuv420p",
            "-y",
            &s(&plain_mp4),
        ],
    );
    add("mp4-no-location", plain_mp4, false, false);
    v
}

/// The location tags exiftool finds in `file` (`[Group] Tag: value` lines), GPS, XMP and
/// QuickTime groups included.
pub fn location_tags(file: &Path) -> Vec<String> {
    let out = run(
        "exiftool",
        &[
            "-a",
            "-G1",
            "-s",
            "-m",
            "-gps:all",
            "-xmp:all",
            "-location:all",
            "-UserData:all",
            "-Keys:all",
            "-ItemList:all",
            "-Composite:all",
            "-IPTC:all",
            file.to_str().unwrap(),
        ],
    );
    String::from_utf8_lossy(&out)
        .lines()
        .filter(|l| {
            let tag = l.split(':').next().unwrap_or("");
            [
                "GPS",
                "Location",
                "City",
                "Country",
                "State",
                "Coordinates",
                "Sublocation",
                "Sub-location",
                "Province",
            ]
            .iter()
            .any(|k| tag.contains(k))
        })
        .map(str::to_owned)
        .collect()
}

/// The EXIF thumbnail of `file`, if it has one.
pub fn thumbnail(file: &Path) -> Option<Vec<u8>> {
    let out = run(
        "exiftool",
        &["-b", "-m", "-ThumbnailImage", file.to_str().unwrap()],
    );
    (!out.is_empty()).then_some(out)
}

/// A noise JPEG of `size` (e.g. "800x600": big enough that reading it shows in the daemon's
/// I/O counters), with GPS and XMP location if `located`.
pub fn noise_jpeg(path: &Path, size: &str, located: bool) {
    let p = path.to_str().unwrap();
    run(
        "convert",
        &[
            "-size", size, "xc:gray", "+noise", "Random", "-quality", "90", p,
        ],
    );
    if located {
        exiftool(path, &["-Make=Test"], &[GPS, XMP_LOCATION]);
    } else {
        exiftool(path, &["-Make=Test"], &[]);
    }
}

/// A JPEG whose EXIF has a GPS IFD (latitude 48°51'27.78" N), then a scan of `body` bytes:
/// built without tools, for suites that also run in the arm64 guest (no ImageMagick there).
pub fn gps_jpeg_bytes(body: usize) -> Vec<u8> {
    let mut tiff = b"II\x2A\0\x08\0\0\0".to_vec();
    // IFD0: one entry, GPSInfo (0x8825, LONG) pointing to the GPS IFD at 26.
    tiff.extend_from_slice(&1u16.to_le_bytes());
    tiff.extend_from_slice(&[0x25, 0x88, 4, 0, 1, 0, 0, 0]);
    tiff.extend_from_slice(&26u32.to_le_bytes());
    tiff.extend_from_slice(&0u32.to_le_bytes());
    // GPS IFD: GPSLatitudeRef "N", GPSLatitude (3 RATIONALs at 56).
    tiff.extend_from_slice(&2u16.to_le_bytes());
    tiff.extend_from_slice(&[1, 0, 2, 0, 2, 0, 0, 0, b'N', 0, 0, 0]);
    tiff.extend_from_slice(&[2, 0, 5, 0, 3, 0, 0, 0]);
    tiff.extend_from_slice(&56u32.to_le_bytes());
    tiff.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(tiff.len(), 56);
    for (n, d) in [(48u32, 1u32), (51, 1), (2778, 100)] {
        tiff.extend_from_slice(&n.to_le_bytes());
        tiff.extend_from_slice(&d.to_le_bytes());
    }
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut v = b"\xFF\xD8\xFF\xE1".to_vec();
    v.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    v.extend_from_slice(&app1);
    v.extend_from_slice(b"\xFF\xDA\x00\x08\x01\x01\x00\x00\x3F\x00");
    v.resize(v.len() + body, 0x55);
    v.extend_from_slice(b"\xFF\xD9");
    v
}
