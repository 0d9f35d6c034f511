//! JPEG extended XMP: a packet too big for one APP1 segment, split across segments
//! (`http://ns.adobe.com/xmp/extension/\0`, a 32-byte GUID, the full length, this part's offset,
//! then the part). The parts are put back together in memory, parsed as one packet, and the
//! ranges found mapped back to the segments; parts that do not tile their packet exactly are
//! redacted whole.

use super::jpeg;
use super::ranges::{Pieces, Ranges};
use super::source::{Res, Source, MAX_BLOB};

/// GUID, full length, offset.
const HEADER: u64 = 32 + 4 + 4;
const MAX_PARTS: usize = 1024;

struct Part {
    guid: [u8; 32],
    full: u64,
    offset: u64,
    at: u64,
    len: u64,
}

#[derive(Default)]
pub(crate) struct Extended {
    parts: Vec<Part>,
    /// Parts that cannot be placed: redacted whole.
    stray: Vec<(u64, u64)>,
}

impl Extended {
    /// Records the part in `[data, seg_end)`, the segment's bytes after the signature.
    pub(crate) fn add(&mut self, src: &mut Source, data: u64, seg_end: u64) -> Res<()> {
        if seg_end - data < HEADER || self.parts.len() >= MAX_PARTS {
            self.stray.push((data, seg_end));
            return Ok(());
        }
        let h: [u8; 40] = src.array(data)?;
        let mut guid = [0; 32];
        guid.copy_from_slice(&h[..32]);
        let full = u64::from(u32::from_be_bytes([h[32], h[33], h[34], h[35]]));
        let offset = u64::from(u32::from_be_bytes([h[36], h[37], h[38], h[39]]));
        let at = data + HEADER;
        self.parts.push(Part {
            guid,
            full,
            offset,
            at,
            len: seg_end - at,
        });
        Ok(())
    }

    /// Finds the location properties of every reassembled packet.
    pub(crate) fn finish(mut self, src: &mut Source, out: &mut Ranges) -> Res<()> {
        for &(s, e) in &self.stray {
            out.add(s, e);
            out.mark_conservative();
        }
        self.parts.sort_by_key(|p| (p.guid, p.offset));
        let mut rest = &self.parts[..];
        while let Some(first) = rest.first() {
            let n = rest.iter().take_while(|p| p.guid == first.guid).count();
            let (packet, tail) = rest.split_at(n);
            rest = tail;
            let whole: Vec<(u64, u64)> = packet.iter().map(|p| (p.at, p.at + p.len)).collect();
            let mut next = 0;
            let tiles = packet.iter().all(|p| {
                let ok = p.offset == next && p.full == first.full;
                next += p.len;
                ok
            }) && next == first.full;
            if !tiles || first.full > MAX_BLOB {
                whole.iter().for_each(|&(s, e)| out.add(s, e));
                out.mark_conservative();
                continue;
            }
            let pieces = Pieces(packet.iter().map(|p| (p.at, p.len)).collect());
            jpeg::xmp_blob(src, &pieces, &whole, out)?;
        }
        Ok(())
    }
}
