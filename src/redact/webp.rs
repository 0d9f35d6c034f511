//! WebP: a RIFF file whose `EXIF` chunk holds a TIFF (optionally behind `Exif\0\0`) and whose
//! `XMP ` chunk holds an XMP packet.

use super::jpeg;
use super::ranges::{Pieces, Ranges};
use super::source::{Fault, Res, Source};

/// Chunks walked: a WebP has a handful (animations: one per frame).
const MAX_CHUNKS: u32 = 1 << 16;

pub(crate) fn is_webp(head: &[u8]) -> bool {
    head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP"
}

pub(crate) fn walk(src: &mut Source, out: &mut Ranges) -> Res<()> {
    let riff_end = (8 + u64::from(src.u32_le(4)?)).min(src.size());
    let mut pos = 12;
    match chunks(src, &mut pos, riff_end, out) {
        Ok(()) => Ok(()),
        Err(Fault::Bad(why)) => {
            log::debug!("WebP structure broken at {pos} ({why}): redacting to its end");
            out.add(pos, riff_end);
            out.mark_conservative();
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn chunks(src: &mut Source, pos: &mut u64, end: u64, out: &mut Ranges) -> Res<()> {
    for _ in 0..MAX_CHUNKS {
        if *pos + 8 > end {
            return Ok(());
        }
        let kind: [u8; 4] = src.array(*pos)?;
        let len = u64::from(src.u32_le(*pos + 4)?);
        let data = *pos + 8;
        let data_end = data + len;
        let interesting = matches!(&kind, b"EXIF" | b"XMP ");
        if data_end > end {
            if interesting {
                out.add(data, end);
                out.mark_conservative();
            }
            return Ok(());
        }
        let whole = [(data, data_end)];
        match &kind {
            b"EXIF" => {
                let mut base = data;
                if len >= 6 && &src.array::<6>(data)? == b"Exif\0\0" {
                    base += 6;
                }
                jpeg::exif(src, base, data_end - base, &whole, 0, out)?;
            }
            b"XMP " => jpeg::xmp_blob(src, &Pieces::one(data, len), &whole, out)?,
            _ => {}
        }
        *pos = data_end + (len & 1);
    }
    Err(Fault::Bad("too many chunks"))
}
