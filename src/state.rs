//! The state a FUSE session's servers hand on to each other: one `memfd` that the supervisor
//! creates and every serving process inherits and maps shared. When a server dies, what it
//! wrote stays; the next one reads it on start.
//!
//! Layout: a header page (what INIT negotiated; how far node records reach), then one
//! fixed-size record per node id (`view/recover.rs`), indexed by the id itself. The file is
//! sparse: only pages of records ever written cost memory.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The layout's version: a server never reads records another layout wrote (3: 48-byte records).
const MAGIC: u64 = u64::from_le_bytes(*b"FGSTATE3");
/// Where records start.
pub const HEADER: usize = 4096;
/// Address space reserved (sparse): 4 GiB is 89 million node records of 48 bytes.
const SIZE: usize = 1 << 32;

const OFF_MAGIC: usize = 0;
const OFF_NEGOTIATED_SET: usize = 8;
const OFF_HIGH_WATER: usize = 16;
const OFF_NEGOTIATED: usize = 64;
pub const NEGOTIATED_BYTES: usize = crate::fuse::resume::NEGOTIATED_BYTES;

/// The shared state, mapped. Records are written only under the node table's shard locks,
/// by one serving process at a time (the supervisor starts the next only after the last
/// ended), so plain stores suffice; the few header words are atomics.
pub struct StateMap {
    base: *mut u8,
    len: usize,
    _fd: OwnedFd,
}

// SAFETY: the mapping lives as long as the value; concurrent access follows the rules above
// (records under their shard's lock, header words through atomics).
unsafe impl Send for StateMap {}
// SAFETY: as above.
unsafe impl Sync for StateMap {}

impl std::fmt::Debug for StateMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StateMap({} bytes)", self.len)
    }
}

/// Creates the (empty, sparse) state file; the fd is close-on-exec, the supervisor clears
/// that for the child it starts.
pub fn create() -> io::Result<OwnedFd> {
    // SAFETY: the name is NUL-terminated; a non-negative return is a new fd we own.
    let fd = unsafe { libc::memfd_create(c"fusegate-state".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just created and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ftruncate on an fd we own.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), SIZE as libc::off_t) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

impl StateMap {
    /// Maps the state file `fd` (taken over).
    pub fn map(fd: OwnedFd) -> io::Result<StateMap> {
        let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(io::Error::from)?;
        let len = usize::try_from(st.st_size).unwrap_or(0);
        if len < HEADER * 2 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the state fd is not a fusegate state file",
            ));
        }
        // SAFETY: a new shared mapping of a file we hold open, at an address the kernel picks;
        // MAP_NORESERVE because almost all of it is never touched.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_NORESERVE,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let map = StateMap {
            base: base.cast(),
            len,
            _fd: fd,
        };
        let magic = map.word64(OFF_MAGIC);
        match magic.load(Ordering::Acquire) {
            0 => magic.store(MAGIC, Ordering::Release),
            MAGIC => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the state file belongs to another version of fusegate",
                ))
            }
        }
        Ok(map)
    }

    fn word64(&self, off: usize) -> &AtomicU64 {
        // SAFETY: off is one of the 8-aligned header offsets, inside the mapping, which lives
        // as long as &self; AtomicU64 has the layout of u64.
        unsafe { &*(self.base.add(off) as *const AtomicU64) }
    }

    fn word32(&self, off: usize) -> &AtomicU32 {
        // SAFETY: as for word64, 4-aligned.
        unsafe { &*(self.base.add(off) as *const AtomicU32) }
    }

    /// What INIT negotiated, if a server saved it.
    pub fn negotiated(&self) -> Option<[u8; NEGOTIATED_BYTES]> {
        if self.word32(OFF_NEGOTIATED_SET).load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut b = [0u8; NEGOTIATED_BYTES];
        // SAFETY: the header page holds these bytes; nobody writes them after the flag is set.
        unsafe {
            std::ptr::copy_nonoverlapping(self.base.add(OFF_NEGOTIATED), b.as_mut_ptr(), b.len())
        };
        Some(b)
    }

    pub fn set_negotiated(&self, bytes: &[u8; NEGOTIATED_BYTES]) {
        // SAFETY: inside the header page; written once, before the flag that publishes it.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.base.add(OFF_NEGOTIATED),
                bytes.len(),
            )
        };
        self.word32(OFF_NEGOTIATED_SET).store(1, Ordering::Release);
    }

    /// Where record `i` of `size` bytes starts in the file, or `None` past its end.
    pub fn record_offset(&self, i: u64, size: usize) -> Option<usize> {
        let off = usize::try_from(i)
            .ok()?
            .checked_mul(size)?
            .checked_add(HEADER)?;
        (off.checked_add(size)? <= self.len).then_some(off)
    }

    /// Record `i` of `size` bytes, or `None` past the end of the file.
    pub fn record(&self, i: u64, size: usize) -> Option<*mut u8> {
        let off = self.record_offset(i, size)?;
        let hw = self.word64(OFF_HIGH_WATER);
        if hw.load(Ordering::Relaxed) <= i {
            hw.fetch_max(i + 1, Ordering::Relaxed);
        }
        // SAFETY: off + size is inside the mapping.
        Some(unsafe { self.base.add(off) })
    }

    /// Reads the file at `off` into `buf` through the fd, not the mapping: reading a hole
    /// through a shared mapping would allocate the page this is meant to find empty.
    pub fn read_at(&self, off: usize, buf: &mut [u8]) -> io::Result<()> {
        let off = i64::try_from(off).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: pread into a buffer of buf.len() bytes from the fd we hold.
        let n = unsafe {
            libc::pread(
                self._fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                off,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if (n as usize) < buf.len() {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }

    /// Frees the memory of `len` bytes at `off`; they read as zeros afterwards and take fresh
    /// pages when written again.
    pub fn punch(&self, off: usize, len: usize) -> io::Result<()> {
        if off < HEADER || off.checked_add(len).map_or(true, |end| end > self.len) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: fallocate on the state fd we hold, inside its size (KEEP_SIZE), past the header.
        let r = unsafe {
            libc::fallocate(
                self._fd.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                off as libc::off_t,
                len as libc::off_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// One past the highest record index ever handed out.
    pub fn high_water(&self) -> u64 {
        self.word64(OFF_HIGH_WATER).load(Ordering::Relaxed)
    }

    /// Record `i` for reading, if inside what was ever written.
    pub fn existing(&self, i: u64, size: usize) -> Option<*const u8> {
        if i >= self.high_water() {
            return None;
        }
        self.record(i, size).map(|p| p as *const u8)
    }
}

impl Drop for StateMap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`; no reference into it outlives self.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// Clears close-on-exec on `fd` (in a child about to exec).
pub fn inheritable(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: fcntl with integer arguments on a valid fd.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_mapping_sees_what_the_first_wrote() {
        let fd = create().unwrap();
        let again = fd.try_clone().unwrap();
        let a = StateMap::map(fd).unwrap();
        assert!(a.negotiated().is_none());
        a.set_negotiated(&[7; NEGOTIATED_BYTES]);
        let p = a.record(100, 96).unwrap();
        // SAFETY: p points at 96 bytes of the mapping.
        unsafe { *p = 42 };
        drop(a);
        let b = StateMap::map(again).unwrap();
        assert_eq!(b.negotiated(), Some([7; NEGOTIATED_BYTES]));
        assert_eq!(b.high_water(), 101);
        // SAFETY: as above.
        assert_eq!(unsafe { *b.existing(100, 96).unwrap() }, 42);
        assert!(b.existing(101, 96).is_none());
        assert!(b.record(u64::MAX / 2, 96).is_none());
    }

    #[test]
    fn punched_pages_give_their_memory_back_and_read_as_zeros() {
        let fd = create().unwrap();
        let probe = fd.try_clone().unwrap();
        let blocks = || nix::sys::stat::fstat(probe.as_raw_fd()).unwrap().st_blocks;
        let m = StateMap::map(fd).unwrap();
        for i in 0..20_000u64 {
            // SAFETY: each record is 96 bytes inside the mapping.
            unsafe { *m.record(i, 96).unwrap() = 1 };
        }
        let full = blocks();
        assert!(full >= (20_000 * 96 / 512) as i64, "{full} blocks");
        m.punch(HEADER + 4096, 20_000 * 96).unwrap();
        let left = blocks();
        assert!(left < full / 50, "{left} blocks left of {full}");
        let mut b = [9u8; 4];
        m.read_at(HEADER + 4096, &mut b).unwrap();
        assert_eq!(b, [0; 4]);
        assert_eq!(blocks(), left, "reading through the fd allocates nothing");
        // SAFETY: as above.
        unsafe { assert_eq!(*m.record(0, 96).unwrap(), 1, "before the hole: kept") };
        assert!(m.punch(0, 4096).is_err(), "the header is never punched");
    }
}
