//! The TIFF structure inside EXIF (JPEG APP1, PNG eXIf, WebP EXIF, HEIF Exif item) and of TIFF
//! files (DNG and other TIFF-based raw formats): finds the GPS IFD and what points to it, in
//! either byte order, over an in-memory copy of the EXIF blob or the file itself.
//!
//! Location bytes: the GPS IFD's entry table (count, entries, next pointer), every out-of-line
//! value its entries point to, and the 4-byte value of each GPSInfo (0x8825) pointer entry, so a
//! reader finds neither the pointer nor the directory. Thumbnails (IFD1 JPEGInterchangeFormat)
//! are reported to the caller, which looks for EXIF inside them too.

use super::ranges::Ranges;
use super::source::{Fault, Res, Source};

const TAG_GPS_IFD: u16 = 0x8825;
const TAG_EXIF_IFD: u16 = 0x8769;
const TAG_THUMB_OFFSET: u16 = 0x0201;
const TAG_THUMB_LENGTH: u16 = 0x0202;
const TAG_XMP: u16 = 0x02BC;
/// IFDs followed per TIFF (IFD0, IFD1, the Exif IFD, a few more in odd files).
const MAX_IFDS: usize = 16;
/// Real IFDs hold tens of entries; far more is hostile.
const MAX_ENTRIES: u16 = 1024;

#[derive(Clone, Copy)]
enum Order {
    Little,
    Big,
}

/// Random access to the TIFF's bytes: an in-memory EXIF blob, or a whole TIFF file.
pub(crate) trait At {
    fn len(&self) -> u64;
    fn read(&mut self, off: u64, buf: &mut [u8]) -> Res<()>;
}

impl At for &[u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read(&mut self, off: u64, buf: &mut [u8]) -> Res<()> {
        let s = usize::try_from(off).map_err(|_| Fault::Bad("tiff offset"))?;
        let e = s.checked_add(buf.len()).ok_or(Fault::Bad("tiff offset"))?;
        buf.copy_from_slice(self.get(s..e).ok_or(Fault::Bad("tiff read past end"))?);
        Ok(())
    }
}

/// A TIFF file read through the finder's source, a window at a time: IFD entries are read a
/// few bytes at a time, and one `pread` per entry field would be slow.
pub(crate) struct FileAt<'s, 'a> {
    src: &'s mut Source<'a>,
    win_off: u64,
    win: Vec<u8>,
}

const WINDOW: u64 = 4096;

impl<'s, 'a> FileAt<'s, 'a> {
    pub(crate) fn new(src: &'s mut Source<'a>) -> Self {
        FileAt {
            src,
            win_off: 0,
            win: Vec::new(),
        }
    }
}

impl At for FileAt<'_, '_> {
    fn len(&self) -> u64 {
        self.src.size()
    }

    fn read(&mut self, off: u64, buf: &mut [u8]) -> Res<()> {
        let len = buf.len() as u64;
        let end = off.checked_add(len).ok_or(Fault::Bad("tiff offset"))?;
        if end > self.src.size() {
            return Err(Fault::Bad("tiff read past end"));
        }
        if len > WINDOW {
            return self.src.read_exact_at(off, buf);
        }
        let win_end = self.win_off + self.win.len() as u64;
        if off < self.win_off || end > win_end {
            let n = WINDOW.min(self.src.size() - off);
            self.win = self.src.read_vec(off, n)?;
            self.win_off = off;
        }
        let s = (off - self.win_off) as usize;
        buf.copy_from_slice(&self.win[s..s + buf.len()]);
        Ok(())
    }
}

struct Tiff<A> {
    a: A,
    order: Order,
}

impl<A: At> Tiff<A> {
    fn u16(&mut self, off: u64) -> Res<u16> {
        let a = self.bytes::<2>(off)?;
        Ok(match self.order {
            Order::Little => u16::from_le_bytes(a),
            Order::Big => u16::from_be_bytes(a),
        })
    }

    fn u32(&mut self, off: u64) -> Res<u32> {
        let a = self.bytes::<4>(off)?;
        Ok(match self.order {
            Order::Little => u32::from_le_bytes(a),
            Order::Big => u32::from_be_bytes(a),
        })
    }

    fn bytes<const N: usize>(&mut self, off: u64) -> Res<[u8; N]> {
        let mut b = [0; N];
        self.a.read(off, &mut b)?;
        Ok(b)
    }

    fn len(&self) -> u64 {
        self.a.len()
    }

    /// The entry count of the IFD at `off`, checked to lie inside the TIFF.
    fn ifd(&mut self, off: u64) -> Res<u16> {
        let n = self.u16(off)?;
        if n > MAX_ENTRIES {
            return Err(Fault::Bad("too many IFD entries"));
        }
        if off + 2 + 12 * u64::from(n) > self.len() {
            return Err(Fault::Bad("IFD past end"));
        }
        Ok(n)
    }
}

/// Bytes per component of a TIFF field type.
fn type_size(t: u16) -> Option<u64> {
    Some(match t {
        1 | 2 | 6 | 7 => 1,
        3 | 8 => 2,
        4 | 9 | 11 | 13 => 4,
        5 | 10 | 12 => 8,
        _ => return None,
    })
}

/// What a TIFF blob holds of interest: location ranges and thumbnails, relative to its start.
#[derive(Default)]
pub(crate) struct Found {
    pub ranges: Ranges,
    /// `(offset, len)` of embedded JPEG thumbnails, inside the blob.
    pub thumbnails: Vec<(u64, u64)>,
    /// `(offset, len)` of XMP packets (TIFF files keep XMP in IFD0 tag 700).
    pub xmp: Vec<(u64, u64)>,
}

/// Parses the TIFF structure starting at offset 0 of `a`.
pub(crate) fn find(mut a: impl At) -> Res<Found> {
    let mut head = [0; 4];
    a.read(0, &mut head)?;
    let order = match &head {
        b"II*\0" => Order::Little,
        b"MM\0*" => Order::Big,
        _ => return Err(Fault::Bad("not a TIFF header")),
    };
    let mut t = Tiff { a, order };
    let mut found = Found::default();
    let mut queue = vec![u64::from(t.u32(4)?)];
    let mut visited: Vec<u64> = Vec::new();
    let mut gps_ifds: Vec<u64> = Vec::new();
    while let Some(ifd) = queue.pop() {
        if ifd == 0 || visited.contains(&ifd) {
            continue;
        }
        if visited.len() >= MAX_IFDS {
            return Err(Fault::Bad("too many IFDs"));
        }
        visited.push(ifd);
        let n = t.ifd(ifd)?;
        let (mut thumb_off, mut thumb_len) = (None, None);
        for i in 0..u64::from(n) {
            let e = ifd + 2 + 12 * i;
            let value = t.u32(e + 8)?;
            match t.u16(e)? {
                TAG_GPS_IFD => {
                    found.ranges.add(e + 8, e + 12);
                    if !gps_ifds.contains(&u64::from(value)) {
                        if gps_ifds.len() >= MAX_IFDS {
                            return Err(Fault::Bad("too many GPS IFDs"));
                        }
                        gps_ifds.push(u64::from(value));
                    }
                }
                TAG_EXIF_IFD => queue.push(u64::from(value)),
                TAG_THUMB_OFFSET => thumb_off = Some(u64::from(value)),
                TAG_THUMB_LENGTH => thumb_len = Some(u64::from(value)),
                TAG_XMP => {
                    let len = u64::from(t.u32(e + 4)?);
                    let off = if len <= 4 { e + 8 } else { u64::from(value) };
                    if off.saturating_add(len) > t.len() {
                        return Err(Fault::Bad("XMP past end"));
                    }
                    found.xmp.push((off, len));
                }
                _ => {}
            }
        }
        if let (Some(o), Some(l)) = (thumb_off, thumb_len) {
            // A thumbnail cut off by the end is still walked as far as it goes.
            if l > 0 && o < t.len() {
                found.thumbnails.push((o, l.min(t.len() - o)));
            }
        }
        // A missing next-IFD pointer at the very end of the blob is common and means "none".
        let next_at = ifd + 2 + 12 * u64::from(n);
        if next_at + 4 <= t.len() {
            queue.push(u64::from(t.u32(next_at)?));
        }
    }
    for g in gps_ifds {
        gps_ifd(&mut t, g, &mut found.ranges)?;
    }
    Ok(found)
}

/// A TIFF file (DNG and other TIFF-based raw formats): its GPS IFD, its XMP, and the EXIF of its
/// JPEG thumbnails. A broken IFD structure leaves nothing to trust: the whole file after the header
/// is redacted.
pub(crate) fn walk_file(src: &mut Source, out: &mut Ranges) -> Res<()> {
    let size = src.size();
    let found = match find(FileAt::new(src)) {
        Ok(f) => f,
        Err(Fault::Bad(why)) => {
            log::debug!("TIFF file malformed ({why}): redacting all but its header");
            out.add(8, size);
            out.mark_conservative();
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    out.absorb(found.ranges);
    for (off, len) in found.xmp {
        let whole = [(off, off + len)];
        super::jpeg::xmp_blob(src, &super::ranges::Pieces::one(off, len), &whole, out)?;
    }
    for (off, len) in found.thumbnails {
        if src.array::<2>(off)? == [0xFF, 0xD8] {
            super::jpeg::walk(src, off, off + len, 1, out)?;
        }
    }
    Ok(())
}

/// The GPS IFD's table and out-of-line values.
fn gps_ifd(t: &mut Tiff<impl At>, off: u64, out: &mut Ranges) -> Res<()> {
    if off == 0 {
        return Ok(());
    }
    let n = t.ifd(off)?;
    let table_end = off + 2 + 12 * u64::from(n);
    out.add(off, (table_end + 4).min(t.len()));
    for i in 0..u64::from(n) {
        let e = off + 2 + 12 * i;
        let size = type_size(t.u16(e + 2)?).ok_or(Fault::Bad("unknown TIFF type in GPS IFD"))?;
        let bytes = size * u64::from(t.u32(e + 4)?);
        if bytes > 4 {
            let at = u64::from(t.u32(e + 8)?);
            let end = at + bytes;
            if end > t.len() {
                return Err(Fault::Bad("GPS value past end"));
            }
            out.add(at, end);
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A TIFF builder for tests: IFD0 with a GPS pointer (and optionally a thumbnail IFD1),
    /// a GPS IFD with latitude (out-of-line RATIONALs) and a ref (inline ASCII).
    pub(crate) struct Built {
        pub bytes: Vec<u8>,
        /// The ranges `find` must report, relative to the blob.
        pub expect: Vec<(u64, u64)>,
    }

    fn put16(v: &mut Vec<u8>, x: u16, le: bool) {
        v.extend_from_slice(&if le { x.to_le_bytes() } else { x.to_be_bytes() });
    }
    fn put32(v: &mut Vec<u8>, x: u32, le: bool) {
        v.extend_from_slice(&if le { x.to_le_bytes() } else { x.to_be_bytes() });
    }
    fn entry(v: &mut Vec<u8>, tag: u16, typ: u16, count: u32, value: u32, le: bool) {
        put16(v, tag, le);
        put16(v, typ, le);
        put32(v, count, le);
        put32(v, value, le);
    }

    /// `thumb`: a JPEG to embed as IFD1 thumbnail.
    pub(crate) fn build(le: bool, thumb: Option<&[u8]>) -> Built {
        let mut v = Vec::new();
        v.extend_from_slice(if le { b"II*\0" } else { b"MM\0*" });
        put32(&mut v, 8, le);
        // IFD0 at 8: Make (inline "ab\0"), GPS pointer.
        let ifd0_entries = 2u32;
        let ifd0_end = 8 + 2 + 12 * ifd0_entries + 4; // 38
        let gps = ifd0_end;
        let gps_entries = 2u32;
        let gps_end = gps + 2 + 12 * gps_entries + 4; // 68
        let lat = gps_end; // 3 rationals = 24 bytes
        let ifd1 = lat + 24;
        put16(&mut v, ifd0_entries as u16, le);
        entry(&mut v, 0x010F, 2, 3, u32::from_be_bytes(*b"ab\0\0"), le);
        let ptr_value_at = v.len() as u64 + 8;
        entry(&mut v, TAG_GPS_IFD, 4, 1, gps, le);
        put32(&mut v, if thumb.is_some() { ifd1 } else { 0 }, le);
        assert_eq!(v.len() as u32, gps);
        put16(&mut v, gps_entries as u16, le);
        entry(&mut v, 1, 2, 2, u32::from_be_bytes(*b"N\0\0\0"), le);
        entry(&mut v, 2, 5, 3, lat, le);
        put32(&mut v, 0, le);
        for x in [48u32, 1, 51, 1, 2946, 100] {
            put32(&mut v, x, le);
        }
        let mut expect = vec![
            (ptr_value_at, ptr_value_at + 4),
            (u64::from(gps), u64::from(gps_end)),
            (u64::from(lat), u64::from(lat) + 24),
        ];
        if let Some(j) = thumb {
            let data = ifd1 + 2 + 24 + 4;
            put16(&mut v, 2, le);
            entry(&mut v, TAG_THUMB_OFFSET, 4, 1, data, le);
            entry(&mut v, TAG_THUMB_LENGTH, 4, 1, j.len() as u32, le);
            put32(&mut v, 0, le);
            v.extend_from_slice(j);
        }
        expect.sort();
        Built { bytes: v, expect }
    }

    fn spans(r: &Ranges) -> Vec<(u64, u64)> {
        let mut r = r.clone();
        r.normalize();
        r.spans().iter().map(|s| (s.start, s.end)).collect()
    }

    #[test]
    fn finds_gps_in_both_byte_orders() {
        for le in [true, false] {
            let b = build(le, None);
            let f = find(&b.bytes[..]).unwrap();
            // The GPS table ends where the latitude starts: the two merge.
            let mut want = Ranges::default();
            for &(s, e) in &b.expect {
                want.add(s, e);
            }
            assert_eq!(spans(&f.ranges), spans(&want), "le={le}");
            assert!(f.thumbnails.is_empty());
        }
    }

    #[test]
    fn reports_thumbnail() {
        let b = build(false, Some(b"\xFF\xD8\xFF\xD9"));
        let f = find(&b.bytes[..]).unwrap();
        assert_eq!(f.thumbnails, vec![(b.bytes.len() as u64 - 4, 4)]);
    }

    #[test]
    fn truncation_at_every_byte_never_panics() {
        for le in [true, false] {
            let b = build(le, Some(b"\xFF\xD8\xFF\xD9"));
            for cut in 0..b.bytes.len() {
                let _ = find(&b.bytes[..cut]);
            }
        }
    }

    #[test]
    fn ifd_loop_terminates() {
        let mut v = b"II*\0\x08\0\0\0".to_vec();
        v.extend_from_slice(&[1, 0]); // one entry
        v.extend_from_slice(&[0x69, 0x87, 4, 0, 1, 0, 0, 0, 8, 0, 0, 0]); // Exif IFD -> itself
        v.extend_from_slice(&[8, 0, 0, 0]); // next IFD -> itself
        assert!(find(&v[..]).unwrap().ranges.is_empty());
    }

    #[test]
    fn huge_counts_are_malformed() {
        let mut v = b"MM\0*\0\0\0\x08".to_vec();
        v.extend_from_slice(&[0xFF, 0xFF]);
        assert!(matches!(find(&v[..]), Err(Fault::Bad(_))));
        // A GPS value whose count overflows the blob.
        let mut b = build(true, None);
        let count_at = 38 + 2 + 12 + 4; // second GPS entry's count
        b.bytes[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(find(&b.bytes[..]), Err(Fault::Bad(_))));
    }
}
