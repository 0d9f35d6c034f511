//! PNG: location lives in the `eXIf` chunk (a TIFF, optionally behind `Exif\0\0`) and in the
//! XMP packet of an `iTXt` chunk with keyword `XML:com.adobe.xmp`. A compressed XMP `iTXt`, and
//! ImageMagick's legacy hex-encoded profiles (`tEXt`/`zTXt`/`iTXt` keyword
//! `Raw profile type exif|APP1|xmp`), cannot be redacted inside: their data is redacted whole.
//! Zeroing chunk data breaks its CRC, so strict decoders drop the (ancillary) chunk: also fine.

use super::jpeg;
use super::ranges::{Pieces, Ranges};
use super::source::{Fault, Res, Source};

pub(crate) const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
/// Chunks walked; a 100-megapixel PNG in 8 KiB IDATs has about 40 000.
const MAX_CHUNKS: u32 = 1 << 20;
const XMP_KEYWORD: &[u8] = b"XML:com.adobe.xmp";
const RAW_PROFILES: [&[u8]; 3] = [
    b"Raw profile type exif",
    b"Raw profile type APP1",
    b"Raw profile type xmp",
];

pub(crate) fn walk(src: &mut Source, out: &mut Ranges) -> Res<()> {
    let mut pos = SIGNATURE.len() as u64;
    let end = src.size();
    match chunks(src, &mut pos, out) {
        Ok(()) => Ok(()),
        Err(Fault::Bad(why)) => {
            log::debug!("PNG structure broken at {pos} ({why}): redacting to its end");
            out.add(pos, end);
            out.mark_conservative();
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn chunks(src: &mut Source, pos: &mut u64, out: &mut Ranges) -> Res<()> {
    let size = src.size();
    for _ in 0..MAX_CHUNKS {
        if *pos + 8 > size {
            return Ok(());
        }
        let len = u64::from(src.u32_be(*pos)?);
        let kind: [u8; 4] = src.array(*pos + 4)?;
        if len > 0x7FFF_FFFF {
            return Err(Fault::Bad("chunk length over 2^31"));
        }
        let data = *pos + 8;
        let data_end = data + len;
        let interesting = matches!(&kind, b"eXIf" | b"iTXt" | b"tEXt" | b"zTXt");
        if data_end > size {
            if interesting {
                out.add(data, size);
                out.mark_conservative();
            }
            return Ok(());
        }
        match &kind {
            b"IEND" => return Ok(()),
            b"eXIf" => exif(src, data, data_end, out)?,
            b"iTXt" | b"tEXt" | b"zTXt" => text(src, kind, data, data_end, out)?,
            _ => {}
        }
        *pos = data_end + 4;
    }
    Err(Fault::Bad("too many chunks"))
}

fn exif(src: &mut Source, data: u64, data_end: u64, out: &mut Ranges) -> Res<()> {
    let whole = [(data, data_end)];
    let mut base = data;
    if data_end - data >= 6 && &src.array::<6>(data)? == b"Exif\0\0" {
        base += 6;
    }
    jpeg::exif(src, base, data_end - base, &whole, 0, out)
}

fn text(src: &mut Source, kind: [u8; 4], data: u64, data_end: u64, out: &mut Ranges) -> Res<()> {
    // keyword (1-79 bytes) \0, then for iTXt: compression flag, method, language \0, translated
    // keyword \0, text.
    let head = src.read_vec(data, (data_end - data).min(80))?;
    let Some(nul) = head.iter().position(|&c| c == 0) else {
        return Ok(()); // no keyword: not a chunk any reader takes as metadata
    };
    let keyword = &head[..nul];
    if RAW_PROFILES.iter().any(|p| p.eq_ignore_ascii_case(keyword)) {
        out.add(data, data_end);
        return Ok(());
    }
    if &kind != b"iTXt" || keyword != XMP_KEYWORD {
        return Ok(());
    }
    let whole = [(data, data_end)];
    let flags_at = data + nul as u64 + 1;
    if flags_at + 2 > data_end {
        out.add(data, data_end);
        out.mark_conservative();
        return Ok(());
    }
    let [compressed, _method] = src.array::<2>(flags_at)?;
    if compressed != 0 {
        out.add(data, data_end);
        return Ok(());
    }
    // Language tag and translated keyword: two NUL-terminated strings, short in practice.
    let rest_at = flags_at + 2;
    let rest = src.read_vec(rest_at, (data_end - rest_at).min(1024))?;
    let mut nuls = rest
        .iter()
        .enumerate()
        .filter(|(_, &c)| c == 0)
        .map(|(i, _)| i);
    let (Some(_), Some(second)) = (nuls.next(), nuls.next()) else {
        out.add(data, data_end);
        out.mark_conservative();
        return Ok(());
    };
    let text_at = rest_at + second as u64 + 1;
    jpeg::xmp_blob(src, &Pieces::one(text_at, data_end - text_at), &whole, out)
}
