//! IPTC-IIM inside a Photoshop image resource block (JPEG APP13 `Photoshop 3.0\0`): the city,
//! sub-location, province/state, country code and country name datasets (2:90, 2:92, 2:95,
//! 2:100, 2:101) and the content location code/name (2:26, 2:27).
//!
//! Each such dataset keeps its `0x1C`, record number and length, so the datasets after it still
//! parse; its dataset number and value are zeroed, leaving an empty 2:0 (record version) that
//! names no place.

use super::source::{Fault, Res};

const LOCATION_DATASETS: [u8; 7] = [26, 27, 90, 92, 95, 100, 101];
const RESOURCE_IPTC: u16 = 0x0404;
const MAX_RESOURCES: usize = 4096;

/// Ranges (relative to `b`) of location datasets in the resource block `b` (after the
/// `Photoshop 3.0\0` signature).
pub(crate) fn find(b: &[u8]) -> Res<Vec<(usize, usize)>> {
    let mut out = Vec::new();
    let mut at = 0;
    for _ in 0..MAX_RESOURCES {
        if at + 4 > b.len() {
            return Ok(out);
        }
        if &b[at..at + 4] != b"8BIM" {
            return Err(Fault::Bad("image resource without 8BIM"));
        }
        let id = u16::from_be_bytes(get::<2>(b, at + 4)?);
        let name_len = usize::from(*b.get(at + 6).ok_or(Fault::Bad("resource cut off"))?);
        // Pascal string padded to an even length, length byte included.
        let size_at = at + 6 + ((name_len + 2) & !1);
        let size = u32::from_be_bytes(get::<4>(b, size_at)?) as usize;
        let data = size_at + 4;
        let data_end = data.checked_add(size).filter(|&e| e <= b.len());
        let data_end = data_end.ok_or(Fault::Bad("resource past its block"))?;
        if id == RESOURCE_IPTC {
            datasets(&b[data..data_end], data, &mut out)?;
        }
        at = data_end + (size & 1);
    }
    Err(Fault::Bad("too many image resources"))
}

fn get<const N: usize>(b: &[u8], at: usize) -> Res<[u8; N]> {
    let s = b.get(at..at + N).ok_or(Fault::Bad("resource cut off"))?;
    Ok(s.try_into().expect("slice of N bytes"))
}

fn datasets(b: &[u8], base: usize, out: &mut Vec<(usize, usize)>) -> Res<()> {
    let mut at = 0;
    while at < b.len() {
        if b[at] != 0x1C {
            // Padding at the end of the IPTC block is common.
            if b[at..].iter().all(|&c| c == 0) {
                return Ok(());
            }
            return Err(Fault::Bad("IPTC dataset without its tag marker"));
        }
        let [record, number] = get::<2>(b, at + 1)?;
        let len = u16::from_be_bytes(get::<2>(b, at + 3)?);
        if len & 0x8000 != 0 {
            return Err(Fault::Bad("extended IPTC dataset length"));
        }
        let value = at + 5;
        let end = value + usize::from(len);
        if end > b.len() {
            return Err(Fault::Bad("IPTC dataset past its resource"));
        }
        if record == 2 && LOCATION_DATASETS.contains(&number) {
            out.push((base + at + 2, base + at + 3));
            out.push((base + value, base + end));
        }
        at = end;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn block() -> (Vec<u8>, Vec<(usize, usize)>) {
        let mut iptc = Vec::new();
        let mut expect = Vec::new();
        for (num, val) in [
            (5u8, &b"Title"[..]),
            (90, b"Paris"),
            (101, b"France"),
            (120, b"Caption"),
        ] {
            let at = iptc.len();
            iptc.extend_from_slice(&[0x1C, 2, num]);
            iptc.extend_from_slice(&(val.len() as u16).to_be_bytes());
            iptc.extend_from_slice(val);
            if num == 90 || num == 101 {
                expect.push((at + 2, at + 3));
                expect.push((at + 5, at + 5 + val.len()));
            }
        }
        let mut b = b"8BIM\x04\x0c\0\0".to_vec(); // a thumbnail resource, empty name
        b.extend_from_slice(&3u32.to_be_bytes());
        b.extend_from_slice(b"abc\0");
        b.extend_from_slice(b"8BIM\x04\x04\x03abc"); // IPTC, name "abc" (4 bytes, even)
        b.extend_from_slice(&(iptc.len() as u32).to_be_bytes());
        let base = b.len();
        b.extend_from_slice(&iptc);
        let expect = expect
            .into_iter()
            .map(|(s, e)| (s + base, e + base))
            .collect();
        (b, expect)
    }

    #[test]
    fn finds_location_datasets_only() {
        let (b, expect) = block();
        assert_eq!(find(&b).unwrap(), expect);
    }

    #[test]
    fn every_truncation_is_handled() {
        let (b, _) = block();
        for cut in 0..b.len() {
            let _ = find(&b[..cut]);
        }
    }
}
