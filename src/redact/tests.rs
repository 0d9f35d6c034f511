//! The finder over hand-built files of every format: exact ranges on well-formed files, and on
//! every truncation and corruption no panic, and every location byte still present covered.

use super::tiff::tests::build;
use super::*;

/// A file and the absolute location spans the finder must report for it.
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    expect: Vec<(u64, u64)>,
}

fn seg(marker: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0xFF, marker];
    v.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

const SCAN: &[u8] = b"\xFF\xDA\x00\x04\x01\x02\x33\x44\x55\xFF\xD9";

const XMP: &str = r#"<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="48,51.46N" exif:FNumber="2"/></rdf:RDF></x:xmpmeta>"#;

/// The absolute span of `exif:GPSLatitude="..."` in a file holding `XMP` at `at`.
fn xmp_span(at: u64) -> (u64, u64) {
    let s = XMP.find("exif:GPSLatitude").unwrap() as u64;
    (
        at + s,
        at + s + r#"exif:GPSLatitude="48,51.46N""#.len() as u64,
    )
}

fn shifted(spans: &[(u64, u64)], by: u64) -> Vec<(u64, u64)> {
    spans.iter().map(|&(s, e)| (s + by, e + by)).collect()
}

/// A JPEG with EXIF GPS in the given byte order (used by the cache tests too).
pub(crate) fn jpeg_with_gps(le: bool) -> Vec<u8> {
    jpeg_case(le, false).bytes
}

fn jpeg_case(le: bool, thumb: bool) -> Case {
    // The thumbnail is itself a JPEG with GPS EXIF, of the other byte order.
    let inner = if thumb {
        Some(jpeg_case(!le, false))
    } else {
        None
    };
    let t = build(le, inner.as_ref().map(|c| &c.bytes[..]));
    let mut v = b"\xFF\xD8".to_vec();
    v.extend(seg(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"));
    let tiff_at = v.len() as u64 + 4 + 6;
    let mut p = b"Exif\0\0".to_vec();
    p.extend_from_slice(&t.bytes);
    v.extend(seg(0xE1, &p));
    let mut expect = shifted(&t.expect, tiff_at);
    if let Some(inner) = inner {
        let thumb_at = tiff_at + t.bytes.len() as u64 - inner.bytes.len() as u64;
        expect.extend(shifted(&inner.expect, thumb_at));
    }
    let xmp_at = v.len() as u64 + 4 + 29;
    let mut p = b"http://ns.adobe.com/xap/1.0/\0".to_vec();
    p.extend_from_slice(XMP.as_bytes());
    v.extend(seg(0xE1, &p));
    expect.push(xmp_span(xmp_at));
    // Extended XMP in two parts, the second sent first, split inside the GPS property.
    let split = XMP.find("GPSLatitude").unwrap() + 4;
    let guid = b"0123456789ABCDEF0123456789ABCDEF";
    let mut part_at = [0u64; 2];
    for (k, (from, to)) in [(split, XMP.len()), (0, split)].into_iter().enumerate() {
        let mut p = b"http://ns.adobe.com/xmp/extension/\0".to_vec();
        p.extend_from_slice(guid);
        p.extend_from_slice(&(XMP.len() as u32).to_be_bytes());
        p.extend_from_slice(&(from as u32).to_be_bytes());
        part_at[k] = v.len() as u64 + 4 + p.len() as u64 - from as u64;
        p.extend_from_slice(&XMP.as_bytes()[from..to]);
        v.extend(seg(0xE1, &p));
    }
    let (s, e) = xmp_span(0);
    expect.push((part_at[1] + s, part_at[1] + split as u64));
    expect.push((part_at[0] + split as u64, part_at[0] + e));
    let (irb, irb_expect) = super::iptc::tests::block();
    let irb_at = v.len() as u64 + 4 + 14;
    v.extend(seg(0xED, &[&b"Photoshop 3.0\0"[..], &irb].concat()));
    expect.extend(
        irb_expect
            .iter()
            .map(|&(s, e)| (irb_at + s as u64, irb_at + e as u64)),
    );
    v.extend_from_slice(SCAN);
    Case {
        name: "jpeg",
        bytes: v,
        expect,
    }
}

/// A JPEG whose Multi-Picture index (APP2 `MPF\0`) lists a second JPEG, appended after the first
/// one's EOI, that carries the GPS.
fn mpf_case(le: bool) -> Case {
    let second = jpeg_case(!le, false);
    let w16 = |v: &mut Vec<u8>, x: u16| {
        v.extend_from_slice(&if le { x.to_le_bytes() } else { x.to_be_bytes() })
    };
    let w32 = |v: &mut Vec<u8>, x: u32| {
        v.extend_from_slice(&if le { x.to_le_bytes() } else { x.to_be_bytes() })
    };
    // MPF TIFF: header, IFD with NumberOfImages and MPEntry, then the two 16-byte entries.
    let mut t = if le {
        b"II*\0".to_vec()
    } else {
        b"MM\0*".to_vec()
    };
    w32(&mut t, 8);
    w16(&mut t, 2);
    for (tag, typ, count, value) in [
        (0xB001u16, 4u16, 1u32, 2u32),
        (0xB002, 7, 32, 8 + 2 + 24 + 4),
    ] {
        w16(&mut t, tag);
        w16(&mut t, typ);
        w32(&mut t, count);
        w32(&mut t, value);
    }
    w32(&mut t, 0);
    let app2_len = 2 + 4 + t.len() + 32;
    let primary_len = 2 + 2 + app2_len + SCAN.len();
    let base = 2 + 4 + 4; // SOI, APP2 marker and length, "MPF\0"
    for (size, offset) in [
        (primary_len as u32, 0u32),
        (second.bytes.len() as u32, (primary_len - base) as u32),
    ] {
        w32(&mut t, 0x0003_0000);
        w32(&mut t, size);
        w32(&mut t, offset);
        w32(&mut t, 0);
    }
    let mut v = b"\xFF\xD8".to_vec();
    v.extend(seg(0xE2, &[&b"MPF\0"[..], &t].concat()));
    v.extend_from_slice(SCAN);
    assert_eq!(v.len(), primary_len);
    let expect = shifted(&second.expect, v.len() as u64);
    v.extend_from_slice(&second.bytes);
    Case {
        name: "jpeg-mpf",
        bytes: v,
        expect,
    }
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut v = (data.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(kind);
    v.extend_from_slice(data);
    v.extend_from_slice(&[0; 4]); // CRC: not checked by the finder
    v
}

fn png_case(le: bool) -> Case {
    let t = build(le, None);
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.extend(png_chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0]));
    let exif_at = v.len() as u64 + 8;
    v.extend(png_chunk(b"eXIf", &t.bytes));
    let mut expect = shifted(&t.expect, exif_at);
    let mut itxt = b"XML:com.adobe.xmp\0\0\0\0\0".to_vec();
    let xmp_at = v.len() as u64 + 8 + itxt.len() as u64;
    itxt.extend_from_slice(XMP.as_bytes());
    v.extend(png_chunk(b"iTXt", &itxt));
    expect.push(xmp_span(xmp_at));
    let raw_at = v.len() as u64 + 8;
    let raw = b"Raw profile type exif\0\n  exif\n 4\n45786966\n";
    v.extend(png_chunk(b"tEXt", raw));
    expect.push((raw_at, raw_at + raw.len() as u64));
    v.extend(png_chunk(
        b"IDAT",
        b"\x78\x9c\x63\x60\x00\x00\x00\x02\x00\x01",
    ));
    v.extend(png_chunk(b"IEND", b""));
    Case {
        name: "png",
        bytes: v,
        expect,
    }
}

fn riff_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut v = kind.to_vec();
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v.extend_from_slice(data);
    if data.len() % 2 == 1 {
        v.push(0);
    }
    v
}

fn webp_case(le: bool) -> Case {
    let t = build(le, None);
    let mut body = b"WEBP".to_vec();
    body.extend(riff_chunk(b"VP8X", &[0x0C, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    body.extend(riff_chunk(b"VP8L", b"\x2f\0\0\0\0"));
    let mut exif = b"Exif\0\0".to_vec();
    exif.extend_from_slice(&t.bytes);
    let exif_at = 8 + body.len() as u64 + 8 + 6;
    body.extend(riff_chunk(b"EXIF", &exif));
    let xmp_at = 8 + body.len() as u64 + 8;
    body.extend(riff_chunk(b"XMP ", XMP.as_bytes()));
    let mut v = b"RIFF".to_vec();
    v.extend_from_slice(&(body.len() as u32).to_le_bytes());
    v.extend(body);
    let mut expect = shifted(&t.expect, exif_at);
    expect.push(xmp_span(xmp_at));
    Case {
        name: "webp",
        bytes: v,
        expect,
    }
}

fn bx(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut v = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
    v.extend_from_slice(kind);
    v.extend_from_slice(payload);
    v
}

fn full(kind: &[u8; 4], version: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![version, 0, 0, 0];
    p.extend_from_slice(payload);
    bx(kind, &p)
}

/// HEIF: item 1 Exif in the `mdat` (two extents, split inside the TIFF), item 2 XMP in `idat`.
fn heif_case(le: bool) -> Case {
    let t = build(le, None);
    let mut exif_item = 6u32.to_be_bytes().to_vec();
    exif_item.extend_from_slice(b"Exif\0\0");
    exif_item.extend_from_slice(&t.bytes);
    let split = 20;
    let ftyp = bx(b"ftyp", b"heic\0\0\0\0mif1heic");
    let hdlr = full(b"hdlr", 0, b"\0\0\0\0pict\0\0\0\0\0\0\0\0\0\0\0\0\0");
    let mut infe1 = 1u16.to_be_bytes().to_vec();
    infe1.extend_from_slice(b"\0\0Exif\0");
    let mut infe2 = 2u16.to_be_bytes().to_vec();
    infe2.extend_from_slice(b"\0\0mimeXMP\0application/rdf+xml\0");
    let mut iinf_p = 2u16.to_be_bytes().to_vec();
    iinf_p.extend(full(b"infe", 2, &infe1));
    iinf_p.extend(full(b"infe", 2, &infe2));
    let iinf = full(b"iinf", 0, &iinf_p);
    let idat = bx(b"idat", XMP.as_bytes());
    // iloc v1: offset 4, length 4, base 0, index 0.
    let iloc_len = 8 + 4 + 2 + 2 + (2 + 2 + 2 + 2 + 8 * 2) + (2 + 2 + 2 + 2 + 8);
    let meta_len = 12 + hdlr.len() + iinf.len() + iloc_len + idat.len();
    let mdat_payload_at = (ftyp.len() + meta_len + 8) as u64;
    let mdat_filler = 3u64;
    let ext1 = mdat_payload_at + mdat_filler;
    let ext2 = ext1 + split as u64 + 5;
    let mut iloc_p = vec![0x44, 0x00];
    iloc_p.extend_from_slice(&2u16.to_be_bytes());
    iloc_p.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 2]); // item 1, method 0, dref 0, 2 extents
    iloc_p.extend_from_slice(&(ext1 as u32).to_be_bytes());
    iloc_p.extend_from_slice(&(split as u32).to_be_bytes());
    iloc_p.extend_from_slice(&(ext2 as u32).to_be_bytes());
    iloc_p.extend_from_slice(&((exif_item.len() - split) as u32).to_be_bytes());
    iloc_p.extend_from_slice(&[0, 2, 0, 1, 0, 0, 0, 1]); // item 2, method 1 (idat)
    iloc_p.extend_from_slice(&0u32.to_be_bytes());
    iloc_p.extend_from_slice(&(XMP.len() as u32).to_be_bytes());
    let iloc = full(b"iloc", 1, &iloc_p);
    assert_eq!(iloc.len(), iloc_len);
    let mut meta_p = hdlr.clone();
    meta_p.extend(iinf);
    meta_p.extend(iloc);
    let idat_at = (ftyp.len() + 12 + meta_p.len() + 8) as u64;
    meta_p.extend(idat);
    let meta = full(b"meta", 0, &meta_p);
    assert_eq!(meta.len(), meta_len);
    let mut mdat_p = vec![0xEE; mdat_filler as usize];
    mdat_p.extend_from_slice(&exif_item[..split]);
    mdat_p.extend_from_slice(&[0xEE; 5]);
    mdat_p.extend_from_slice(&exif_item[split..]);
    let mut v = ftyp;
    v.extend(meta);
    v.extend(bx(b"mdat", &mdat_p));
    // TIFF logical offset x lies at ext1 + 10 + x before the split, ext2 + (10 + x - split) after.
    let mut expect = Vec::new();
    for &(s, e) in &t.expect {
        for x in s..e {
            let logical = 10 + x;
            let at = if logical < split as u64 {
                ext1 + logical
            } else {
                ext2 + logical - split as u64
            };
            expect.push((at, at + 1));
        }
    }
    expect.push(xmp_span(idat_at));
    Case {
        name: "heif",
        bytes: v,
        expect,
    }
}

/// MP4: `moov/udta/©xyz`, `moov/udta/loci`, and QuickTime `moov/meta` keys/ilst.
fn mp4_case() -> Case {
    let ftyp = bx(b"ftyp", b"isom\0\0\x02\0isomiso2mp41");
    let mvhd = full(b"mvhd", 0, &[0; 96]);
    let xyz_payload = b"\0\x12\x15\xc7+48.8577+002.2945/";
    let xyz = bx(b"\xA9xyz", xyz_payload);
    let loci = full(
        b"loci",
        0,
        b"\x15\xc7Paris\0\0\0\x02\x4b\x00\x00\x30\xd9\x00\x00\0\x00\x00earth\0\0",
    );
    let udta = bx(b"udta", &[xyz.clone(), loci.clone()].concat());
    let hdlr = full(b"hdlr", 0, b"\0\0\0\0mdta\0\0\0\0\0\0\0\0\0\0\0\0\0");
    let mut keys_p = 2u32.to_be_bytes().to_vec();
    for k in [
        &b"com.apple.quicktime.make"[..],
        b"com.apple.quicktime.location.ISO6709",
    ] {
        keys_p.extend_from_slice(&((k.len() + 8) as u32).to_be_bytes());
        keys_p.extend_from_slice(b"mdta");
        keys_p.extend_from_slice(k);
    }
    let keys = full(b"keys", 0, &keys_p);
    let data = |s: &[u8]| bx(b"data", &[&[0, 0, 0, 1, 0, 0, 0, 0][..], s].concat());
    let item1 = bx(&1u32.to_be_bytes(), &data(b"Apple"));
    let loc_value = b"+48.8577+002.2945+035.000/";
    let item2 = bx(&2u32.to_be_bytes(), &data(loc_value));
    let ilst = bx(b"ilst", &[item1.clone(), item2].concat());
    // QuickTime `meta`: no version/flags.
    let meta = bx(b"meta", &[hdlr.clone(), keys.clone(), ilst].concat());
    let moov = bx(b"moov", &[mvhd.clone(), udta, meta].concat());
    let mut v = ftyp.clone();
    let moov_at = v.len() as u64;
    v.extend(moov);
    v.extend(bx(b"mdat", &[0x55; 16]));
    let udta_at = moov_at + 8 + mvhd.len() as u64;
    let xyz_at = udta_at + 8;
    let loci_at = xyz_at + xyz.len() as u64;
    let meta_at = loci_at + loci.len() as u64;
    let value_at = meta_at + 8 + (hdlr.len() + keys.len()) as u64 + 8 + item1.len() as u64 + 8 + 16;
    let item2_at = value_at - 16 - 8;
    let expect = vec![
        (xyz_at + 4, loci_at),
        (loci_at + 4, meta_at),
        (item2_at + 4, value_at + loc_value.len() as u64),
    ];
    Case {
        name: "mp4",
        bytes: v,
        expect,
    }
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for le in [true, false] {
        v.push(jpeg_case(le, false));
        v.push(jpeg_case(le, true));
        v.push(mpf_case(le));
        v.push(png_case(le));
        v.push(webp_case(le));
        v.push(heif_case(le));
    }
    v.push(mp4_case());
    for le in [true, false] {
        let t = build(le, Some(&jpeg_case(!le, false).bytes));
        let inner = jpeg_case(!le, false);
        let thumb_at = (t.bytes.len() - inner.bytes.len()) as u64;
        let mut expect = t.expect.clone();
        expect.extend(shifted(&inner.expect, thumb_at));
        v.push(Case {
            name: "tiff",
            bytes: t.bytes,
            expect,
        });
    }
    v
}

fn normalized(spans: &[(u64, u64)]) -> Vec<Range> {
    let mut r = Ranges::default();
    for &(s, e) in spans {
        r.add(s, e);
    }
    r.normalize();
    r.spans().to_vec()
}

fn covered(r: &Ranges, pos: u64) -> bool {
    r.overlaps(pos, 1)
}

#[test]
fn exact_ranges_on_well_formed_files() {
    for c in cases() {
        let r = find_in_bytes(&c.bytes).unwrap();
        assert!(!r.is_conservative(), "{}: {r:?}", c.name);
        assert_eq!(r.spans(), normalized(&c.expect), "{}", c.name);
    }
}

#[test]
fn every_truncation_covers_what_remains() {
    for c in cases() {
        for cut in 0..c.bytes.len() {
            let r = find_in_bytes(&c.bytes[..cut]).unwrap();
            assert!(
                r.spans().iter().all(|s| s.end <= cut as u64),
                "{} cut {cut}",
                c.name
            );
            for &(s, e) in &c.expect {
                for pos in s..e.min(cut as u64) {
                    assert!(
                        covered(&r, pos),
                        "{} cut at {cut}: location byte {pos} served",
                        c.name
                    );
                }
            }
        }
    }
}

#[test]
fn every_corrupted_byte_is_handled() {
    // Each byte set to 0x00, 0xFF and 0x80 in turn: no panic, and ranges inside the file.
    for c in cases() {
        for i in 0..c.bytes.len() {
            for x in [0x00, 0xFF, 0x80] {
                let mut b = c.bytes.clone();
                b[i] = x;
                let r = find_in_bytes(&b).unwrap();
                assert!(r.spans().iter().all(|s| s.end <= b.len() as u64));
            }
        }
    }
}

#[test]
fn a_failing_read_is_an_error() {
    let c = jpeg_case(true, false);
    let mut calls = 0;
    let result = find_location_ranges(c.bytes.len() as u64, |off, buf| {
        calls += 1;
        if calls > 2 {
            return Err(std::io::Error::other("disk gone"));
        }
        let n = buf.len().min(c.bytes.len() - off as usize);
        buf[..n].copy_from_slice(&c.bytes[off as usize..off as usize + n]);
        Ok(n)
    });
    assert!(matches!(result, Err(RedactError::Io(_))));
}

#[test]
fn short_reads_are_retried() {
    let c = png_case(false);
    let r = find_location_ranges(c.bytes.len() as u64, |off, buf| {
        let n = buf.len().min(3).min(c.bytes.len() - off as usize);
        buf[..n].copy_from_slice(&c.bytes[off as usize..off as usize + n]);
        Ok(n)
    })
    .unwrap();
    assert_eq!(r.spans(), normalized(&c.expect));
}

#[test]
fn files_without_location_have_no_ranges() {
    let mut jpeg = b"\xFF\xD8".to_vec();
    jpeg.extend(seg(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"));
    jpeg.extend_from_slice(SCAN);
    for f in [&jpeg[..], b"plain text", b"", b"\x89PNG\r\n\x1a\n"] {
        let r = find_in_bytes(f).unwrap();
        assert!(r.is_empty() && !r.is_conservative(), "{f:?}");
    }
}

#[test]
fn hostile_structures_stay_bounded() {
    // A box claiming 2^64-1 bytes, a segment chain of 100 000 empty APP0s, an IFD pointing to
    // itself as GPS IFD, a keys box with 2^32-1 entries.
    let mut huge = bx(b"ftyp", b"isom");
    huge.extend_from_slice(&1u32.to_be_bytes());
    huge.extend_from_slice(b"moov");
    huge.extend_from_slice(&u64::MAX.to_be_bytes());
    let r = find_in_bytes(&huge).unwrap();
    assert!(r.is_conservative());

    let mut many = b"\xFF\xD8".to_vec();
    for _ in 0..100_000 {
        many.extend_from_slice(b"\xFF\xE0\x00\x02");
    }
    let r = find_in_bytes(&many).unwrap();
    assert!(r.is_conservative());

    let mut tiff = b"II*\0\x08\0\0\0\x01\0".to_vec();
    tiff.extend_from_slice(&[0x25, 0x88, 4, 0, 1, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0]);
    let mut jpeg = b"\xFF\xD8".to_vec();
    jpeg.extend(seg(0xE1, &[&b"Exif\0\0"[..], &tiff].concat()));
    jpeg.extend_from_slice(SCAN);
    let r = find_in_bytes(&jpeg).unwrap();
    assert!(!r.is_empty());

    let keys = full(b"keys", 0, &u32::MAX.to_be_bytes());
    let ilst = bx(b"ilst", &bx(&1u32.to_be_bytes(), b""));
    let meta = bx(b"meta", &[full(b"hdlr", 0, &[0; 20]), keys, ilst].concat());
    let mut mp4 = bx(b"ftyp", b"isom");
    let meta_at = mp4.len() as u64 + 8 + 8;
    mp4.extend(bx(b"moov", &meta));
    let r = find_in_bytes(&mp4).unwrap();
    assert!(r.is_conservative());
    assert!(covered(&r, meta_at));
}

/// `REDACT_CORPUS_OUT=fuzz/corpus/redact_ranges cargo test --lib redact` writes these cases as
/// fuzz corpus seeds.
#[test]
fn write_corpus_seeds_on_request() {
    let Some(out) = std::env::var_os("REDACT_CORPUS_OUT") else {
        return;
    };
    for (i, c) in cases().iter().enumerate() {
        let path = std::path::Path::new(&out).join(format!("built-{i:02}-{}", c.name));
        std::fs::write(path, &c.bytes).unwrap();
    }
}
