//! Location redaction: which bytes of a photo or video carry where it was taken, so that apps
//! without `ACCESS_MEDIA_LOCATION` read zeros there (as Android's MediaProvider serves them).
//!
//! Pure: the finder reads the file only through a callback, and holds no state. The storage view
//! calls [`find_location_ranges`] once per file version (through [`RangeCache`]), serves files
//! with empty ranges by passthrough, and zeroes reads of the others with [`zero_ranges`].
//!
//! Formats are recognised by their first bytes, not their names: JPEG ([`jpeg`]), PNG ([`png`]),
//! WebP ([`webp`]), TIFF and TIFF-based raw files such as DNG ([`tiff`]), HEIF/AVIF and
//! MP4/MOV/3GP ([`isobmff`]); anything else has no ranges. Each
//! format's module says which bytes it redacts; [`xmp`] says which XMP properties count.
//!
//! Malformed, truncated or hostile input never fails the finder: the metadata container whose
//! parse broke (an APP1 segment, a chunk, an item, a box; or from the break to the end of the
//! file when the file's own structure breaks before its image data) is redacted whole, and the
//! result is flagged [`Ranges::is_conservative`]. Only a failing read callback is an error
//! ([`RedactError`]): the ranges are then unknown, and the caller must not serve the file to a
//! redacted reader (fail the open with EIO) nor cache the failure.
//!
//! Bounds: bytes read per file ([`source::READ_BUDGET`]), bytes held per metadata blob
//! ([`source::MAX_BLOB`]), IFDs visited once each and at most 16, entries, segments, chunks,
//! boxes, keys and items counted and capped, nesting (thumbnail in EXIF in JPEG...) capped at
//! [`MAX_DEPTH`], boxes and values past their container or the file rejected.
//!
//! Not covered: IPTC-IIM outside JPEG, maker notes, sidecar files.

mod cache;
pub(crate) mod iptc;
pub(crate) mod isobmff;
pub(crate) mod jpeg;
pub(crate) mod png;
mod ranges;
pub(crate) mod source;
mod stats;
pub(crate) mod tiff;
pub(crate) mod webp;
pub(crate) mod xmp;
pub(crate) mod xmp_ext;

use std::io;

pub use cache::{FileVersion, RangeCache};
pub use ranges::{zero_ranges, Range, Ranges};
pub use stats::{RedactSnapshot, RedactStats};

use source::{Fault, Source};

/// How deep metadata may nest: EXIF in a JPEG, its thumbnail, the thumbnail's EXIF...
pub(crate) const MAX_DEPTH: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum RedactError {
    /// Reading the file failed: its location ranges are unknown.
    #[error("reading the file to find its location metadata: {0}")]
    Io(#[from] io::Error),
}

/// The byte ranges of a file of `size` bytes that carry location; `read(offset, buf)` reads the
/// file like `pread` (may return less, 0 at end).
pub fn find_location_ranges<F>(size: u64, mut read: F) -> Result<Ranges, RedactError>
where
    F: FnMut(u64, &mut [u8]) -> io::Result<usize>,
{
    let mut src = Source::new(size, &mut read);
    let mut out = Ranges::default();
    let mut head = [0u8; 12];
    let n = (size.min(12)) as usize;
    let result = src.read_exact_at(0, &mut head[..n]).and_then(|()| {
        let head = &head[..n];
        if head.starts_with(b"\xFF\xD8") {
            jpeg::walk(&mut src, 0, size, 0, &mut out)
        } else if head.starts_with(png::SIGNATURE) {
            png::walk(&mut src, &mut out)
        } else if webp::is_webp(head) {
            webp::walk(&mut src, &mut out)
        } else if head.starts_with(b"II*\0") || head.starts_with(b"MM\0*") {
            tiff::walk_file(&mut src, &mut out)
        } else if isobmff::is_isobmff(head) {
            isobmff::walk(&mut src, &mut out)
        } else {
            Ok(())
        }
    });
    match result {
        Ok(()) => {}
        Err(Fault::Io(e)) => return Err(RedactError::Io(e)),
        // Walkers catch their own malformations; only the 12-byte head can end up here.
        Err(Fault::Bad(_)) => {}
    }
    out.clip(size);
    out.normalize();
    Ok(out)
}

/// [`find_location_ranges`] over bytes in memory.
pub fn find_in_bytes(data: &[u8]) -> Result<Ranges, RedactError> {
    let read = |off: u64, buf: &mut [u8]| -> io::Result<usize> {
        let start = usize::try_from(off).unwrap_or(usize::MAX).min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    };
    find_location_ranges(data.len() as u64, read)
}

#[cfg(test)]
mod tests;
