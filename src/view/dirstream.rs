//! Reading a lower directory with `getdents64`, resumable at the kernel's offsets (the lower
//! filesystem's own `d_off` cookies, so a listing stays stable across concurrent changes).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

const BUFFER: usize = 32 * 1024;

#[derive(Debug)]
pub struct DirStream {
    fd: OwnedFd,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// The offset the next entry in `buf[pos..]` continues from (what the kernel sends back).
    next_offset: u64,
    /// Entries consumed since the stream was opened or moved by a seek.
    consumed: u64,
}

/// One entry, borrowed from the stream's buffer.
#[derive(Debug, Clone, Copy)]
pub struct RawEntry<'a> {
    pub ino: u64,
    /// The cookie of the entry after this one.
    pub next_offset: u64,
    pub dtype: u8,
    pub name: &'a [u8],
}

impl DirStream {
    pub fn new(fd: OwnedFd) -> Self {
        DirStream {
            fd,
            buf: vec![0u8; BUFFER],
            pos: 0,
            end: 0,
            next_offset: 0,
            consumed: 0,
        }
    }

    /// Positions the stream at `offset` (0 = start, else a cookie we returned earlier).
    pub fn seek(&mut self, offset: u64) -> io::Result<()> {
        if offset == self.next_offset {
            return Ok(());
        }
        // SAFETY: lseek on a directory fd we own; for directories the offset is an opaque
        // cookie the filesystem gave us.
        let r = unsafe { libc::lseek(self.fd.as_raw_fd(), offset as libc::off_t, libc::SEEK_SET) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        self.pos = 0;
        self.end = 0;
        self.next_offset = offset;
        self.consumed = 0;
        Ok(())
    }

    /// The next entry, without consuming it; `None` at the end of the directory.
    pub fn peek(&mut self) -> io::Result<Option<RawEntry<'_>>> {
        if self.pos >= self.end {
            // SAFETY: getdents64 writes at most buf.len() bytes into our buffer.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_getdents64,
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr(),
                    self.buf.len(),
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            self.pos = 0;
            self.end = n as usize;
            if n == 0 {
                return Ok(None);
            }
        }
        parse(&self.buf[self.pos..self.end]).map(Some)
    }

    /// Consumes the entry `peek` returned.
    pub fn advance(&mut self) {
        let rest = &self.buf[self.pos..self.end];
        if let Ok(e) = parse(rest) {
            let reclen = u16::from_ne_bytes([rest[16], rest[17]]) as usize;
            self.next_offset = e.next_offset;
            self.pos += reclen.max(1);
            self.consumed += 1;
        } else {
            self.pos = self.end;
        }
    }

    /// The cookie the stream continues from.
    pub fn position(&self) -> u64 {
        self.next_offset
    }

    /// Entries consumed (`.` and `..` included) since it was opened or moved by a seek.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }
}

/// Parses one `linux_dirent64` (d_ino u64, d_off i64, d_reclen u16, d_type u8, d_name).
fn parse(rest: &[u8]) -> io::Result<RawEntry<'_>> {
    let bad = || io::Error::from_raw_os_error(libc::EIO);
    if rest.len() < 19 {
        return Err(bad());
    }
    let ino = u64::from_ne_bytes(rest[0..8].try_into().map_err(|_| bad())?);
    let off = u64::from_ne_bytes(rest[8..16].try_into().map_err(|_| bad())?);
    let reclen = u16::from_ne_bytes([rest[16], rest[17]]) as usize;
    if reclen < 19 || reclen > rest.len() {
        return Err(bad());
    }
    let dtype = rest[18];
    let name_field = &rest[19..reclen];
    let nlen = name_field
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(name_field.len());
    Ok(RawEntry {
        ino,
        next_offset: off,
        dtype,
        name: &name_field[..nlen],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ino: u64, off: u64, dtype: u8, name: &[u8]) -> Vec<u8> {
        let reclen = (19 + name.len() + 1 + 7) & !7;
        let mut v = Vec::new();
        v.extend_from_slice(&ino.to_ne_bytes());
        v.extend_from_slice(&off.to_ne_bytes());
        v.extend_from_slice(&(reclen as u16).to_ne_bytes());
        v.push(dtype);
        v.extend_from_slice(name);
        v.resize(reclen, 0);
        v
    }

    #[test]
    fn parses_records_and_refuses_broken_ones() {
        let r = record(5, 77, 8, b"hello");
        let e = parse(&r).unwrap();
        assert_eq!(
            (e.ino, e.next_offset, e.dtype, e.name),
            (5, 77, 8, &b"hello"[..])
        );
        assert!(parse(&r[..10]).is_err());
        let mut bad = r.clone();
        bad[16..18].copy_from_slice(&500u16.to_ne_bytes());
        assert!(parse(&bad).is_err());
        bad[16..18].copy_from_slice(&3u16.to_ne_bytes());
        assert!(parse(&bad).is_err());
    }
}
