//! ISO base media files: HEIF/AVIF images and MP4/MOV/3GP videos.
//!
//! Location bytes:
//! * HEIF/AVIF: the `Exif` item (a TIFF, see [`super::tiff`]) and XMP items (`mime` items of
//!   type `application/rdf+xml`), found through `meta`/`iinf` and located through `iloc`
//!   (file offsets or `idat`, any number of extents). An encoded XMP item is redacted whole.
//! * MP4/MOV/3GP, in `moov`, `moov/udta`, `moov/trak/udta` and their `meta` boxes: the `©xyz`
//!   (ISO 6709 string), `loci` (3GPP location) and `gps ` boxes; XMP in `udta/XMP_` and in the
//!   top-level XMP `uuid` box; in a `meta` box, the `ilst` items whose `keys` name starts with
//!   `com.apple.quicktime.location.` (ISO6709, name, body, note, role, date...) and `ilst`
//!   `©xyz` items. These boxes are zeroed from their type on, keeping only their size: readers
//!   then skip an unknown box, where a zeroed value would read as the position 0°N 0°E.
//!
//! A box running past its container or the file is malformed: the enclosing box we descended
//! into (`moov`, `trak`, `udta`, `meta`, or from that box to the end at the top level) is then
//! redacted whole.

use super::jpeg;
use super::ranges::{Pieces, Ranges};
use super::source::{guarded, Fault, Res, Source, MAX_BLOB};

/// Children of one box.
const MAX_BOXES: u32 = 1 << 16;
/// Top-level boxes: a fragmented movie has two per fragment (`moof`, `mdat`), hours of them.
const MAX_TOP_BOXES: u32 = 1 << 20;
/// moov/trak/udta/meta/ilst/item/data is 7 deep.
const MAX_BOX_DEPTH: u32 = 8;
const MAX_KEYS: u32 = 4096;
const MAX_ITEMS: u32 = 1 << 16;
const LOCATION_KEY: &[u8] = b"com.apple.quicktime.location.";
const XMP_UUID: [u8; 16] = *b"\xBE\x7A\xCF\xCB\x97\xA9\x42\xE8\x9C\x71\x99\x94\x91\xE3\xAF\xAC";

/// Top-level box types a file of this family starts with.
pub(crate) fn is_isobmff(head: &[u8]) -> bool {
    head.len() >= 8
        && matches!(
            &head[4..8],
            b"ftyp" | b"moov" | b"mdat" | b"free" | b"skip" | b"wide" | b"pnot"
        )
}

#[derive(Clone, Copy, Debug)]
struct Bx {
    kind: [u8; 4],
    start: u64,
    payload: u64,
    end: u64,
    uuid: [u8; 16],
}

/// The box at `pos` inside a container ending at `parent_end`.
fn header(src: &mut Source, pos: u64, parent_end: u64) -> Res<Bx> {
    if pos + 8 > parent_end {
        return Err(Fault::Bad("box header past its container"));
    }
    let size32 = src.u32_be(pos)?;
    let kind: [u8; 4] = src.array(pos + 4)?;
    let (size, mut hdr) = match size32 {
        0 => (parent_end - pos, 8),
        1 => {
            if pos + 16 > parent_end {
                return Err(Fault::Bad("box header past its container"));
            }
            (src.u64_be(pos + 8)?, 16)
        }
        n => (u64::from(n), 8),
    };
    if size < hdr {
        return Err(Fault::Bad("box smaller than its header"));
    }
    let end = pos
        .checked_add(size)
        .ok_or(Fault::Bad("box size overflow"))?;
    if end > parent_end {
        return Err(Fault::Bad("box past its container"));
    }
    let mut uuid = [0; 16];
    if &kind == b"uuid" {
        if hdr + 16 > size {
            return Err(Fault::Bad("uuid box too small"));
        }
        uuid = src.array(pos + hdr)?;
        hdr += 16;
    }
    Ok(Bx {
        kind,
        start: pos,
        payload: pos + hdr,
        end,
        uuid,
    })
}

/// The boxes of `[start, end)`, in order.
fn children(src: &mut Source, start: u64, end: u64) -> Res<Vec<Bx>> {
    let mut v = Vec::new();
    let mut pos = start;
    while pos + 8 <= end {
        if v.len() as u32 >= MAX_BOXES {
            return Err(Fault::Bad("too many boxes"));
        }
        let b = header(src, pos, end)?;
        pos = b.end;
        v.push(b);
    }
    Ok(v)
}

pub(crate) fn walk(src: &mut Source, out: &mut Ranges) -> Res<()> {
    let size = src.size();
    let mut pos = 0;
    for _ in 0..MAX_TOP_BOXES {
        if pos + 8 > size {
            return Ok(());
        }
        let b = match header(src, pos, size) {
            Ok(b) => b,
            Err(Fault::Bad(why)) => {
                // A cut-off file: only a box we would descend into can hide location.
                let kind: [u8; 4] = src.array(pos + 4)?;
                if matches!(&kind, b"moov" | b"meta" | b"uuid" | b"udta") {
                    log::debug!("{why} at {pos}: redacting to the end");
                    out.add(pos, size);
                    out.mark_conservative();
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        descend(src, &b, 0, out)?;
        pos = b.end;
    }
    out.add(pos, size);
    out.mark_conservative();
    Ok(())
}

/// Looks into box `b` if it can hold location; a malformed inside redacts `b` whole.
fn descend(src: &mut Source, b: &Bx, depth: u32, out: &mut Ranges) -> Res<()> {
    let whole = [(b.payload, b.end)];
    match &b.kind {
        b"moov" | b"trak" | b"udta" if depth < MAX_BOX_DEPTH => guarded(out, &whole, |found| {
            for c in children(src, b.payload, b.end)? {
                descend(src, &c, depth + 1, found)?;
            }
            Ok(())
        }),
        b"meta" if depth < MAX_BOX_DEPTH => {
            // A HEIF's items lie outside `meta` (usually in the `mdat` after it): when `meta` is
            // malformed, redact from it to the end of the file.
            let to_end = [(b.payload, src.size())];
            guarded(out, if depth == 0 { &to_end } else { &whole }, |found| {
                meta(src, b, found)
            })
        }
        b"\xA9xyz" | b"loci" | b"gps " if depth > 0 => {
            out.add(b.start + 4, b.end);
            Ok(())
        }
        b"XMP_" if depth > 0 => {
            jpeg::xmp_blob(src, &Pieces::one(b.payload, b.end - b.payload), &whole, out)
        }
        b"uuid" if b.uuid == XMP_UUID => {
            jpeg::xmp_blob(src, &Pieces::one(b.payload, b.end - b.payload), &whole, out)
        }
        _ => Ok(()),
    }
}

/// A `meta` box: QuickTime `keys`/`ilst`, iTunes-style `ilst`, or HEIF items.
fn meta(src: &mut Source, b: &Bx, out: &mut Ranges) -> Res<()> {
    // ISO `meta` is a FullBox (4 bytes of version and flags), QuickTime's is not.
    let mut first = b.payload;
    if b.payload + 8 > b.end || &src.array::<4>(b.payload + 4)? != b"hdlr" {
        first += 4;
    }
    let kids = children(src, first, b.end)?;
    let find = |k: &[u8; 4]| kids.iter().find(|c| &c.kind == k).copied();
    if let Some(ilst) = find(b"ilst") {
        let keys = match find(b"keys") {
            Some(k) => location_keys(src, &k)?,
            None => Vec::new(),
        };
        for item in children(src, ilst.payload, ilst.end)? {
            let index = u32::from_be_bytes(item.kind);
            if &item.kind == b"\xA9xyz" || keys.contains(&index) {
                out.add(item.start + 4, item.end);
            }
        }
    }
    if let (Some(iinf), Some(iloc)) = (find(b"iinf"), find(b"iloc")) {
        let idat = find(b"idat");
        heif_items(src, &iinf, &iloc, idat.as_ref(), out)?;
    }
    Ok(())
}

/// 1-based indexes of the `keys` entries that name a location.
fn location_keys(src: &mut Source, keys: &Bx) -> Res<Vec<u32>> {
    let count = src.u32_be(keys.payload + 4)?;
    if count > MAX_KEYS {
        return Err(Fault::Bad("too many keys"));
    }
    let mut found = Vec::new();
    let mut pos = keys.payload + 8;
    for index in 1..=count {
        if pos + 8 > keys.end {
            return Err(Fault::Bad("keys entry past its box"));
        }
        let size = u64::from(src.u32_be(pos)?);
        if size < 8 || pos + size > keys.end {
            return Err(Fault::Bad("bad keys entry size"));
        }
        let name_len = (size - 8).min(LOCATION_KEY.len() as u64);
        let name = src.read_vec(pos + 8, name_len)?;
        if name == LOCATION_KEY {
            found.push(index);
        }
        pos += size;
    }
    Ok(found)
}

#[derive(Clone, Copy, PartialEq)]
enum Item {
    Exif,
    Xmp { encoded: bool },
}

/// The Exif and XMP items of a HEIF `meta`.
fn heif_items(
    src: &mut Source,
    iinf: &Bx,
    iloc: &Bx,
    idat: Option<&Bx>,
    out: &mut Ranges,
) -> Res<()> {
    let targets = item_infos(src, iinf)?;
    if targets.is_empty() {
        return Ok(());
    }
    for (kind, pieces, cut) in item_locations(src, iloc, idat, &targets)? {
        let whole = pieces.spans();
        if cut {
            whole.iter().for_each(|&(s, e)| out.add(s, e));
            out.mark_conservative();
            continue;
        }
        match kind {
            Item::Xmp { encoded: true } => whole.iter().for_each(|&(s, e)| out.add(s, e)),
            Item::Xmp { encoded: false } => jpeg::xmp_blob(src, &pieces, &whole, out)?,
            Item::Exif => guarded(out, &whole, |found| {
                // A 4-byte offset to the TIFF header, which some writers leave at "Exif\0\0".
                let head = jpeg::read_pieces(src, &pieces.take(4))?;
                let off =
                    u32::from_be_bytes(head.try_into().map_err(|_| Fault::Bad("short Exif item"))?);
                let mut skip = 4 + u64::from(off);
                let tag = jpeg::read_pieces(src, &pieces.skip(skip).take(6))?;
                if tag == b"Exif\0\0" {
                    skip += 6;
                }
                jpeg::exif_pieces(src, &pieces.skip(skip), &whole, 0, found)
            })?,
        }
    }
    Ok(())
}

/// `(item id, kind)` of the Exif and XMP items listed in `iinf`.
fn item_infos(src: &mut Source, iinf: &Bx) -> Res<Vec<(u32, Item)>> {
    let version = src.array::<1>(iinf.payload)?[0];
    let first = iinf.payload + if version == 0 { 6 } else { 8 };
    let mut found = Vec::new();
    for infe in children(src, first, iinf.end)? {
        if &infe.kind != b"infe" {
            continue;
        }
        let b = src.read_vec(infe.payload, (infe.end - infe.payload).min(4096))?;
        if let Some(t) = parse_infe(&b) {
            if found.len() as u32 >= MAX_ITEMS {
                return Err(Fault::Bad("too many items"));
            }
            found.push(t);
        }
    }
    Ok(found)
}

/// The NUL-terminated string at `b[at..]` and the index after it.
fn cstr(b: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let s = b.get(at..)?;
    let n = s.iter().position(|&c| c == 0).unwrap_or(s.len());
    Some((&s[..n], at + n + 1))
}

fn parse_infe(b: &[u8]) -> Option<(u32, Item)> {
    let version = *b.first()?;
    let (id, mut at) = match version {
        0..=2 => (
            u32::from(u16::from_be_bytes(b.get(4..6)?.try_into().ok()?)),
            6,
        ),
        _ => (u32::from_be_bytes(b.get(4..8)?.try_into().ok()?), 8),
    };
    at += 2; // protection index
    let mime = if version >= 2 {
        let kind = b.get(at..at + 4)?;
        at += 4;
        if kind == b"Exif" {
            return Some((id, Item::Exif));
        }
        kind == b"mime"
    } else {
        true
    };
    if !mime {
        return None;
    }
    let (_name, at) = cstr(b, at)?;
    let (content_type, at) = cstr(b, at)?;
    let encoding = cstr(b, at).map(|(e, _)| e).unwrap_or(b"");
    (content_type == b"application/rdf+xml").then_some((
        id,
        Item::Xmp {
            encoded: !encoding.is_empty(),
        },
    ))
}

/// Where the `targets` items lie, from `iloc`, and whether the file cuts them off.
fn item_locations(
    src: &mut Source,
    iloc: &Bx,
    idat: Option<&Bx>,
    targets: &[(u32, Item)],
) -> Res<Vec<(Item, Pieces, bool)>> {
    let b = src.read_vec(iloc.payload, iloc.end - iloc.payload)?;
    let mut r = Reader { b: &b, at: 0 };
    let version = r.uint(1)?;
    r.uint(3)?; // flags
    let sizes = r.uint(2)?;
    let (off_size, len_size, base_size) = (sizes >> 12, (sizes >> 8) & 15, (sizes >> 4) & 15);
    let index_size = if version >= 1 { sizes & 15 } else { 0 };
    let count = r.uint(if version < 2 { 2 } else { 4 })?;
    if count > u64::from(MAX_ITEMS) {
        return Err(Fault::Bad("too many iloc items"));
    }
    let mut found = Vec::new();
    for _ in 0..count {
        let id = r.uint(if version < 2 { 2 } else { 4 })? as u32;
        let method = if version >= 1 { r.uint(2)? & 15 } else { 0 };
        r.uint(2)?; // data reference index
        let base = r.uint(base_size)?;
        let extents = r.uint(2)?;
        let kind = targets.iter().find(|t| t.0 == id).map(|t| t.1);
        let mut pieces = Pieces::default();
        let mut cut = false;
        for _ in 0..extents {
            r.uint(index_size)?;
            let off = r.uint(off_size)?;
            let len = r.uint(len_size)?;
            if kind.is_none() {
                continue;
            }
            let (lo, hi) = match (method, idat) {
                (0, _) => (0, src.size()),
                (1, Some(d)) => (d.payload, d.end),
                _ => return Err(Fault::Bad("item construction not supported")),
            };
            let at = lo
                .checked_add(base)
                .and_then(|x| x.checked_add(off))
                .ok_or(Fault::Bad("iloc overflow"))?;
            let end = if len == 0 {
                hi
            } else {
                at.checked_add(len).ok_or(Fault::Bad("iloc overflow"))?
            };
            if at > hi {
                return Err(Fault::Bad("item extent past its data"));
            }
            if end > hi {
                cut = true;
            }
            pieces.0.push((at, end.min(hi) - at));
            if pieces.len() > MAX_BLOB {
                return Err(Fault::Bad("item too large"));
            }
        }
        if let Some(k) = kind {
            found.push((k, pieces, cut));
        }
    }
    Ok(found)
}

/// Big-endian integers of 0 to 8 bytes from an in-memory box.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn uint(&mut self, bytes: u64) -> Res<u64> {
        if !matches!(bytes, 0..=4 | 8) {
            return Err(Fault::Bad("iloc field size"));
        }
        let end = self.at + bytes as usize;
        let s = self
            .b
            .get(self.at..end)
            .ok_or(Fault::Bad("iloc past its box"))?;
        self.at = end;
        Ok(s.iter().fold(0, |v, &c| (v << 8) | u64::from(c)))
    }
}
