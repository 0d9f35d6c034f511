//! Encoding replies into one reusable per-worker buffer (no allocation per request).

use super::abi::{self, Pod};
use std::time::Duration;

const HEADER: usize = std::mem::size_of::<abi::OutHeader>();

/// What a successful LOOKUP-like operation (lookup, mknod, mkdir, symlink, link, create) answers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Entry {
    pub nodeid: u64,
    pub generation: u64,
    pub attr: abi::Attr,
    /// How long the kernel may keep the name -> node binding. Zero makes it ask again each time.
    pub entry_ttl: Duration,
    pub attr_ttl: Duration,
}

impl Entry {
    pub fn to_abi(&self) -> abi::EntryOut {
        abi::EntryOut {
            nodeid: self.nodeid,
            generation: self.generation,
            entry_valid: self.entry_ttl.as_secs(),
            attr_valid: self.attr_ttl.as_secs(),
            entry_valid_nsec: self.entry_ttl.subsec_nanos(),
            attr_valid_nsec: self.attr_ttl.subsec_nanos(),
            attr: self.attr,
        }
    }
}

/// What OPEN, CREATE and OPENDIR answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Opened {
    pub fh: u64,
    pub flags: u32,
    /// A registered backing id: the kernel then serves read/write/mmap itself.
    pub backing_id: Option<i32>,
}

impl Opened {
    pub fn to_abi(&self) -> abi::OpenOut {
        match self.backing_id {
            Some(id) => abi::OpenOut {
                fh: self.fh,
                open_flags: self.flags | abi::fopen::PASSTHROUGH,
                backing_id: id,
            },
            None => abi::OpenOut {
                fh: self.fh,
                open_flags: self.flags,
                backing_id: 0,
            },
        }
    }
}

/// The fields of `struct stat` the kernel wants, in its ABI.
pub fn attr_from_stat(st: &libc::stat) -> abi::Attr {
    abi::Attr {
        ino: st.st_ino,
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        atime: st.st_atime as u64,
        mtime: st.st_mtime as u64,
        ctime: st.st_ctime as u64,
        atimensec: st.st_atime_nsec as u32,
        mtimensec: st.st_mtime_nsec as u32,
        ctimensec: st.st_ctime_nsec as u32,
        mode: st.st_mode,
        nlink: st.st_nlink as u32,
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev as u32,
        blksize: st.st_blksize as u32,
        flags: 0,
    }
}

/// A reply under construction. The buffer is allocated once per worker at full size; `used`
/// marks how much of it the current reply occupies.
pub struct ReplyBuf {
    buf: Box<[u8]>,
    used: usize,
}

impl ReplyBuf {
    pub fn new(capacity: usize) -> Self {
        ReplyBuf {
            buf: vec![0u8; capacity.max(HEADER + 4096)].into_boxed_slice(),
            used: HEADER,
        }
    }

    /// Starts a new reply (the header is filled in by `finish`).
    pub fn reset(&mut self) {
        self.used = HEADER;
    }

    pub fn push<T: Pod>(&mut self, value: &T) {
        self.push_bytes(abi::as_bytes(value));
    }

    pub fn push_bytes(&mut self, bytes: &[u8]) {
        let end = (self.used + bytes.len()).min(self.buf.len());
        let n = end - self.used;
        self.buf[self.used..end].copy_from_slice(&bytes[..n]);
        self.used = end;
    }

    /// Room after what has been pushed, up to `max` bytes, for a callee to fill in place (READ
    /// data, directory entries); `commit` then says how much was written.
    pub fn spare(&mut self, max: usize) -> &mut [u8] {
        let end = (self.used + max).min(self.buf.len());
        &mut self.buf[self.used..end]
    }

    pub fn commit(&mut self, n: usize) {
        self.used = (self.used + n).min(self.buf.len());
    }

    /// The finished message: header with `error` (0 or -errno) and the pushed payload.
    pub fn finish(&mut self, unique: u64, error: i32) -> &[u8] {
        if error != 0 {
            self.used = HEADER;
        }
        let header = abi::OutHeader {
            len: self.used as u32,
            error,
            unique,
        };
        self.buf[..HEADER].copy_from_slice(abi::as_bytes(&header));
        &self.buf[..self.used]
    }
}

/// Writes `fuse_dirent` / `fuse_direntplus` records into a caller-provided region, refusing any
/// record that would not fit whole (the kernel rejects partial records).
pub struct DirWriter<'a> {
    out: &'a mut [u8],
    used: usize,
    plus: bool,
}

const DIRENT: usize = std::mem::size_of::<abi::Dirent>();
const ENTRY_OUT: usize = std::mem::size_of::<abi::EntryOut>();

fn align8(n: usize) -> usize {
    (n + 7) & !7
}

impl<'a> DirWriter<'a> {
    pub fn new(out: &'a mut [u8], plus: bool) -> Self {
        DirWriter { out, used: 0, plus }
    }

    pub fn is_plus(&self) -> bool {
        self.plus
    }

    /// The bytes a record for `name` takes.
    pub fn record_len(&self, name: &[u8]) -> usize {
        align8(if self.plus { ENTRY_OUT } else { 0 } + DIRENT + name.len())
    }

    /// Whether a record for `name` still fits: READDIRPLUS callers check this *before* they
    /// count a lookup for the entry, so that an entry that is not sent is not counted.
    pub fn fits(&self, name: &[u8]) -> bool {
        self.used + self.record_len(name) <= self.out.len()
    }

    /// Appends one record; `entry` is required for READDIRPLUS (nodeid 0 means "not looked up",
    /// as for `.` and `..`). Returns false, writing nothing, if it does not fit.
    pub fn push(
        &mut self,
        ino: u64,
        next_offset: u64,
        typ: u32,
        name: &[u8],
        entry: Option<&Entry>,
    ) -> bool {
        if !self.fits(name) {
            return false;
        }
        let start = self.used;
        let len = self.record_len(name);
        let mut at = start;
        if self.plus {
            let e = entry.map(Entry::to_abi).unwrap_or_default();
            self.out[at..at + ENTRY_OUT].copy_from_slice(abi::as_bytes(&e));
            at += ENTRY_OUT;
        }
        let d = abi::Dirent {
            ino,
            off: next_offset,
            namelen: name.len() as u32,
            typ,
        };
        self.out[at..at + DIRENT].copy_from_slice(abi::as_bytes(&d));
        at += DIRENT;
        self.out[at..at + name.len()].copy_from_slice(name);
        at += name.len();
        self.out[at..start + len].fill(0);
        self.used = start + len;
        true
    }

    pub fn len(&self) -> usize {
        self.used
    }

    pub fn is_empty(&self) -> bool {
        self.used == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_replies_carry_no_payload() {
        let mut r = ReplyBuf::new(8192);
        r.push(&abi::AttrOut::default());
        let msg = r.finish(42, -libc::ENOENT).to_vec();
        assert_eq!(msg.len(), 16);
        let h: abi::OutHeader = abi::read_pod(&msg).unwrap();
        assert_eq!((h.len, h.error, h.unique), (16, -libc::ENOENT, 42));
    }

    #[test]
    fn open_reply_sets_passthrough_only_with_a_backing_id() {
        let cases = [
            (
                Opened {
                    fh: 1,
                    flags: 0,
                    backing_id: Some(5),
                },
                abi::fopen::PASSTHROUGH,
                5,
            ),
            (
                Opened {
                    fh: 1,
                    flags: abi::fopen::DIRECT_IO,
                    backing_id: None,
                },
                abi::fopen::DIRECT_IO,
                0,
            ),
            (
                Opened {
                    fh: 1,
                    flags: abi::fopen::NOFLUSH,
                    backing_id: Some(2),
                },
                abi::fopen::NOFLUSH | abi::fopen::PASSTHROUGH,
                2,
            ),
        ];
        for (o, flags, id) in cases {
            let a = o.to_abi();
            assert_eq!((a.open_flags, a.backing_id), (flags, id));
        }
    }

    #[test]
    fn dirents_are_8_aligned_and_never_partial() {
        let mut region = vec![0xffu8; 64];
        let mut w = DirWriter::new(&mut region, false);
        assert_eq!(w.record_len(b"a"), 32);
        assert_eq!(w.record_len(b"abcdefgh"), 32);
        assert_eq!(w.record_len(b"abcdefghi"), 40);
        assert!(w.push(1, 1, 8, b"a", None));
        assert!(w.push(2, 2, 8, b"abcdefgh", None));
        assert!(
            !w.push(3, 3, 8, b"x", None),
            "third record must not fit in 64 bytes"
        );
        assert_eq!(w.len(), 64);
        assert_eq!(&region[24..32], b"a\0\0\0\0\0\0\0");
    }

    #[test]
    fn direntplus_records_hold_the_entry_first() {
        let mut region = vec![0u8; 4096];
        let mut w = DirWriter::new(&mut region, true);
        let e = Entry {
            nodeid: 77,
            ..Default::default()
        };
        assert!(w.push(5, 1, 8, b"file", Some(&e)));
        assert_eq!(w.len(), align8(128 + 24 + 4));
        let eo: abi::EntryOut = abi::read_pod(&region).unwrap();
        assert_eq!(eo.nodeid, 77);
        let d: abi::Dirent = abi::read_pod(&region[128..]).unwrap();
        assert_eq!((d.ino, d.namelen), (5, 4));
    }

    #[test]
    fn entry_timeouts_split_into_seconds_and_nanos() {
        let e = Entry {
            entry_ttl: Duration::from_millis(1500),
            attr_ttl: Duration::ZERO,
            ..Default::default()
        };
        let a = e.to_abi();
        assert_eq!(
            (
                a.entry_valid,
                a.entry_valid_nsec,
                a.attr_valid,
                a.attr_valid_nsec
            ),
            (1, 500_000_000, 0, 0)
        );
    }
}
