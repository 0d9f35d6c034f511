//! JPEG: the segments before the image data. Location lives in APP1 `Exif\0\0` (a TIFF, see
//! [`super::tiff`]), in APP1 XMP (`http://ns.adobe.com/xap/1.0/\0`, see [`super::xmp`]), in
//! the EXIF of thumbnails inside that TIFF, and in the EXIF of the extra images a Multi-Picture
//! (APP2 `MPF\0`) index points to; IPTC-IIM places live in APP13 (see [`super::iptc`]).
//! Extended XMP (APP1 `http://ns.adobe.com/xmp/extension/\0`) is put back together first (see
//! [`super::xmp_ext`]).

use super::ranges::{Pieces, Ranges};
use super::source::{guarded, Fault, Res, Source};
use super::xmp_ext::Extended;
use super::{iptc, tiff, xmp, MAX_DEPTH};

const EXIF: &[u8] = b"Exif\0\0";
const XMP: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
const XMP_EXT: &[u8] = b"http://ns.adobe.com/xmp/extension/\0";
const MPF: &[u8] = b"MPF\0";
const PHOTOSHOP: &[u8] = b"Photoshop 3.0\0";
/// Segments before the image data; real files have tens.
const MAX_SEGMENTS: u32 = 4096;
/// Images a Multi-Picture index may add.
const MAX_MPF_IMAGES: usize = 16;

/// Location ranges of the JPEG occupying `[start, end)` of the source, into `out`. A structure
/// that breaks off before the image data makes the rest of `[start, end)` a conservative range.
pub(crate) fn walk(
    src: &mut Source,
    start: u64,
    end: u64,
    depth: u32,
    out: &mut Ranges,
) -> Res<()> {
    if depth > MAX_DEPTH {
        out.add(start, end);
        out.mark_conservative();
        return Ok(());
    }
    let mut pos = start + 2; // after SOI, checked by the caller
    let mut ext = Extended::default();
    match segments(src, &mut pos, end, depth, &mut ext, out) {
        Ok(()) => {}
        Err(Fault::Bad(why)) => {
            log::debug!("JPEG structure broken at {pos} ({why}): redacting to its end");
            out.add(pos, end);
            out.mark_conservative();
        }
        Err(e) => return Err(e),
    }
    ext.finish(src, out)
}

fn segments(
    src: &mut Source,
    pos: &mut u64,
    end: u64,
    depth: u32,
    ext: &mut Extended,
    out: &mut Ranges,
) -> Res<()> {
    for _ in 0..MAX_SEGMENTS {
        if *pos + 2 > end {
            return Ok(()); // ends without image data: nothing more to find
        }
        let [ff, mut marker] = src.array::<2>(*pos)?;
        if ff != 0xFF {
            return Err(Fault::Bad("no marker where a segment should start"));
        }
        // Fill bytes: any number of 0xFF before the marker code.
        while marker == 0xFF {
            *pos += 1;
            if *pos + 2 > end {
                return Ok(());
            }
            marker = src.array::<1>(*pos + 1)?[0];
        }
        match marker {
            0xDA | 0xD9 => return Ok(()), // image data or end: metadata is all before it
            0x01 | 0xD0..=0xD7 => {
                *pos += 2;
                continue;
            }
            0xD8 => return Err(Fault::Bad("SOI inside JPEG")),
            _ => {}
        }
        if *pos + 4 > end {
            return Ok(());
        }
        let len = u64::from(src.u16_be(*pos + 2)?);
        if len < 2 {
            return Err(Fault::Bad("segment length below 2"));
        }
        let payload = *pos + 4;
        let seg_end = *pos + 2 + len;
        if seg_end > end {
            if matches!(marker, 0xE1 | 0xE2 | 0xED) {
                // A truncated metadata segment: what is there may be location.
                out.add(payload, end);
                out.mark_conservative();
            }
            return Ok(());
        }
        if matches!(marker, 0xE1 | 0xE2 | 0xED) {
            app(src, marker, payload, seg_end, depth, ext, out)?;
        }
        *pos = seg_end;
    }
    Err(Fault::Bad("too many segments"))
}

/// An APP1/APP2/APP13 segment's payload `[payload, seg_end)`.
fn app(
    src: &mut Source,
    marker: u8,
    payload: u64,
    seg_end: u64,
    depth: u32,
    ext: &mut Extended,
    out: &mut Ranges,
) -> Res<()> {
    let head_len = (seg_end - payload).min(XMP_EXT.len() as u64);
    let mut head = vec![0; head_len as usize];
    src.read_exact_at(payload, &mut head)?;
    let whole = [(payload, seg_end)];
    if marker == 0xE1 && head.starts_with(EXIF) {
        let base = payload + EXIF.len() as u64;
        exif(src, base, seg_end - base, &whole, depth, out)
    } else if marker == 0xE1 && head.starts_with(XMP) {
        let base = payload + XMP.len() as u64;
        xmp_blob(src, &Pieces::one(base, seg_end - base), &whole, out)
    } else if marker == 0xE1 && head.starts_with(XMP_EXT) {
        ext.add(src, payload + XMP_EXT.len() as u64, seg_end)
    } else if marker == 0xED && head.starts_with(PHOTOSHOP) {
        let base = payload + PHOTOSHOP.len() as u64;
        guarded(out, &whole, |found| {
            let blob = src.read_vec(base, seg_end - base)?;
            for (s, e) in iptc::find(&blob)? {
                found.add(base + s as u64, base + e as u64);
            }
            Ok(())
        })
    } else if marker == 0xE2 && head.starts_with(MPF) && depth == 0 {
        // Only the primary image's index counts: the images it lists do not nest.
        let base = payload + MPF.len() as u64;
        mpf(src, base, seg_end, depth, out)
    } else {
        Ok(())
    }
}

/// An EXIF TIFF blob at `[base, base + len)` of the file; thumbnails in it are walked as JPEGs.
pub(crate) fn exif(
    src: &mut Source,
    base: u64,
    len: u64,
    whole: &[(u64, u64)],
    depth: u32,
    out: &mut Ranges,
) -> Res<()> {
    exif_pieces(src, &Pieces::one(base, len), whole, depth, out)
}

/// An EXIF TIFF blob made of file pieces (a HEIF item may have several extents).
pub(crate) fn exif_pieces(
    src: &mut Source,
    pieces: &Pieces,
    whole: &[(u64, u64)],
    depth: u32,
    out: &mut Ranges,
) -> Res<()> {
    guarded(out, whole, |found| {
        let blob = read_pieces(src, pieces)?;
        let t = tiff::find(&blob[..])?;
        pieces.map_all(&t.ranges, 0, found);
        for (off, len) in t.thumbnails {
            match pieces.contiguous(off, len) {
                Some(at) if blob.get(off as usize..off as usize + 2) == Some(b"\xFF\xD8") => {
                    walk(src, at, at + len, depth + 1, found)?
                }
                Some(_) => {}
                None => pieces.map_into(off, off + len, found),
            }
        }
        Ok(())
    })
}

/// An XMP packet made of file pieces.
pub(crate) fn xmp_blob(
    src: &mut Source,
    pieces: &Pieces,
    whole: &[(u64, u64)],
    out: &mut Ranges,
) -> Res<()> {
    guarded(out, whole, |found| {
        let blob = read_pieces(src, pieces)?;
        for (s, e) in xmp::find(&blob)? {
            pieces.map_into(s as u64, e as u64, found);
        }
        Ok(())
    })
}

pub(crate) fn read_pieces(src: &mut Source, pieces: &Pieces) -> Res<Vec<u8>> {
    if pieces.len() > super::source::MAX_BLOB {
        return Err(Fault::Bad("metadata blob too large"));
    }
    let mut blob = Vec::with_capacity(pieces.len() as usize);
    for &(off, len) in &pieces.0 {
        blob.extend_from_slice(&src.read_vec(off, len)?);
    }
    Ok(blob)
}

/// The Multi-Picture index: the other images of the file are JPEGs with their own EXIF.
fn mpf(src: &mut Source, base: u64, seg_end: u64, depth: u32, out: &mut Ranges) -> Res<()> {
    let blob = src.read_vec(base, seg_end - base)?;
    let images = match mp_entries(&blob) {
        Some(images) => images,
        None => return Ok(()), // an index we cannot read points to nothing we can find
    };
    for (offset, size) in images.into_iter().take(MAX_MPF_IMAGES) {
        // Offsets count from the MPF TIFF header; 0 is the first image (this one).
        if offset == 0 || size < 4 {
            continue;
        }
        let at = base + u64::from(offset);
        // A cut-off image is walked as far as it goes: its EXIF may be there.
        let img_end = (at + u64::from(size)).min(src.size());
        if at + 2 <= img_end && src.array::<2>(at)? == [0xFF, 0xD8] {
            walk(src, at, img_end, depth + 1, out)?;
        }
    }
    Ok(())
}

/// `(offset, size)` of each MP Entry in an MPF TIFF blob.
fn mp_entries(b: &[u8]) -> Option<Vec<(u32, u32)>> {
    let le = match b.get(..4)? {
        b"II*\0" => true,
        b"MM\0*" => false,
        _ => return None,
    };
    let u16_at = |o: usize| -> Option<u16> {
        let a: [u8; 2] = b.get(o..o + 2)?.try_into().ok()?;
        Some(if le {
            u16::from_le_bytes(a)
        } else {
            u16::from_be_bytes(a)
        })
    };
    let u32_at = |o: usize| -> Option<u32> {
        let a: [u8; 4] = b.get(o..o + 4)?.try_into().ok()?;
        Some(if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        })
    };
    let ifd = u32_at(4)? as usize;
    let n = u16_at(ifd)?;
    for i in 0..usize::from(n.min(64)) {
        let e = ifd + 2 + 12 * i;
        if u16_at(e)? == 0xB002 {
            let count = (u32_at(e + 4)? / 16).min(MAX_MPF_IMAGES as u32) as usize;
            let at = u32_at(e + 8)? as usize;
            return (0..count)
                .map(|k| Some((u32_at(at + 16 * k + 8)?, u32_at(at + 16 * k + 4)?)))
                .collect();
        }
    }
    None
}
