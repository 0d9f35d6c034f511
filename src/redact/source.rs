//! Bounded random access to the file being examined: every byte the finder reads comes through
//! here, so the read budget and the end-of-file checks live in one place.

use std::io;

use super::ranges::Ranges;

/// Total bytes (plus [`CALL_COST`] per call) the finder may read from one file: metadata is small,
/// and a hostile file must not make the finder read gigabytes of headers. It still allows
/// walking the ~700 000 chunk or box headers of a multi-gigabyte PNG or fragmented movie.
pub(crate) const READ_BUDGET: u64 = 16 << 20;
/// A read call costs this much budget on top of its bytes, so millions of tiny header reads are
/// bounded as well as a few big ones.
const CALL_COST: u64 = 16;
/// The largest metadata blob (EXIF TIFF, XMP packet, item) held in memory at once.
pub(crate) const MAX_BLOB: u64 = 2 << 20;

/// Why a parse stopped early.
#[derive(Debug)]
pub(crate) enum Fault {
    /// The read callback failed: the caller cannot know the ranges.
    Io(io::Error),
    /// The bytes are malformed, truncated or hit a limit: redact the enclosing container whole.
    Bad(&'static str),
}

impl From<io::Error> for Fault {
    fn from(e: io::Error) -> Self {
        Fault::Io(e)
    }
}

pub(crate) type Res<T> = Result<T, Fault>;

/// The read callback: fills `buf` from `offset`, returns how much it read (0 at end of file).
pub(crate) type ReadFn<'a> = dyn FnMut(u64, &mut [u8]) -> io::Result<usize> + 'a;

/// Reads up to this size are served from a read-ahead window: headers are a few bytes each
/// and one `pread` per header field would dominate the finder's cost.
const SMALL: usize = 64;
const WINDOW: u64 = 4096;

pub(crate) struct Source<'a> {
    read: &'a mut ReadFn<'a>,
    size: u64,
    budget: u64,
    win_off: u64,
    win: Vec<u8>,
}

impl<'a> Source<'a> {
    pub(crate) fn new(size: u64, read: &'a mut ReadFn<'a>) -> Self {
        Source {
            read,
            size,
            budget: READ_BUDGET,
            win_off: 0,
            win: Vec::new(),
        }
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Fills `buf` from `off`; anything past the file's end or over the budget is `Bad`.
    pub(crate) fn read_exact_at(&mut self, off: u64, buf: &mut [u8]) -> Res<()> {
        let len = buf.len() as u64;
        let end = off.checked_add(len).ok_or(Fault::Bad("offset overflow"))?;
        if end > self.size {
            return Err(Fault::Bad("read past end of file"));
        }
        if buf.len() <= SMALL {
            let win_end = self.win_off + self.win.len() as u64;
            if off < self.win_off || end > win_end {
                self.fill_window(off, len)?;
            }
            let s = (off - self.win_off) as usize;
            buf.copy_from_slice(&self.win[s..s + buf.len()]);
            return Ok(());
        }
        self.charge(len)?;
        self.pread(off, buf)
    }

    /// Reads ahead from `off`; only the `wanted` bytes count against the budget, since the rest
    /// costs no extra call.
    fn fill_window(&mut self, off: u64, wanted: u64) -> Res<()> {
        self.charge(wanted)?;
        let n = WINDOW.min(self.size - off) as usize;
        let mut win = std::mem::take(&mut self.win);
        win.resize(n, 0);
        let result = self.pread(off, &mut win);
        if result.is_err() {
            win.clear();
        }
        self.win = win;
        self.win_off = off;
        result
    }

    fn charge(&mut self, len: u64) -> Res<()> {
        let cost = len + CALL_COST;
        if cost > self.budget {
            return Err(Fault::Bad("read budget exhausted"));
        }
        self.budget -= cost;
        Ok(())
    }

    fn pread(&mut self, off: u64, buf: &mut [u8]) -> Res<()> {
        let mut done = 0;
        while done < buf.len() {
            match (self.read)(off + done as u64, &mut buf[done..]) {
                Ok(0) => return Err(Fault::Bad("file shorter than its size")),
                Ok(n) => done += n.min(buf.len() - done),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Fault::Io(e)),
            }
        }
        Ok(())
    }

    /// Reads `len` bytes at `off` into a new buffer, at most [`MAX_BLOB`].
    pub(crate) fn read_vec(&mut self, off: u64, len: u64) -> Res<Vec<u8>> {
        if len > MAX_BLOB {
            return Err(Fault::Bad("metadata blob too large"));
        }
        let mut v = vec![0; len as usize];
        self.read_exact_at(off, &mut v)?;
        Ok(v)
    }

    pub(crate) fn array<const N: usize>(&mut self, off: u64) -> Res<[u8; N]> {
        let mut b = [0; N];
        self.read_exact_at(off, &mut b)?;
        Ok(b)
    }

    pub(crate) fn u16_be(&mut self, off: u64) -> Res<u16> {
        Ok(u16::from_be_bytes(self.array(off)?))
    }

    pub(crate) fn u32_be(&mut self, off: u64) -> Res<u32> {
        Ok(u32::from_be_bytes(self.array(off)?))
    }

    pub(crate) fn u64_be(&mut self, off: u64) -> Res<u64> {
        Ok(u64::from_be_bytes(self.array(off)?))
    }

    pub(crate) fn u32_le(&mut self, off: u64) -> Res<u32> {
        Ok(u32::from_le_bytes(self.array(off)?))
    }
}

/// Runs a parse of one metadata container into `out`. If it fails on malformed bytes, the
/// container's bytes (`whole`) are redacted entirely and `out` is marked conservative; only a
/// failing read escapes as an error.
pub(crate) fn guarded(
    out: &mut Ranges,
    whole: &[(u64, u64)],
    parse: impl FnOnce(&mut Ranges) -> Res<()>,
) -> Res<()> {
    let mut found = Ranges::default();
    match parse(&mut found) {
        Ok(()) => {
            out.absorb(found);
            Ok(())
        }
        Err(Fault::Bad(why)) => {
            log::debug!("location metadata malformed ({why}): redacting its container whole");
            for &(start, end) in whole {
                out.add(start, end);
            }
            out.mark_conservative();
            Ok(())
        }
        Err(e @ Fault::Io(_)) => Err(e),
    }
}
