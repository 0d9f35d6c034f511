//! Location redaction in the storage view: each file version's location ranges decide its data
//! path, and reads of a redacted open get zeros there.
//!
//! The ranges come from [`crate::redact`] through one [`RangeCache`] keyed by the lower file's
//! version (inode, size, mtime, ctime): a file is read once per version, whoever opens it.
//! Every regular file is judged by its content (the finder stops after 12 bytes of anything that
//! is not JPEG, PNG, WebP, TIFF or ISO-BMFF), so a renamed photo is still found. A file with no
//! location is served by passthrough to everyone; a file with location never is (`data.rs`).

use super::lower::{self, io, Result};
use super::StorageView;
use crate::redact::{
    find_location_ranges, FileVersion, RangeCache, Ranges, RedactSnapshot, RedactStats,
};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

/// Largest file `open_for_app` hands a redacted reader, as a sealed copy in memory: a photo or
/// a short video. Past it the answer is EFBIG (the service can serve it through the mount).
pub const REDACTED_COPY_MAX: u64 = 256 << 20;

/// Memory the cached ranges may take: a few thousand photos' worth (an entry is ~128 bytes plus
/// 16 per range).
const CACHE_BUDGET: usize = 4 << 20;

pub struct Redaction {
    pub cache: RangeCache,
    pub stats: RedactStats,
}

impl Default for Redaction {
    fn default() -> Self {
        Redaction {
            cache: RangeCache::new(CACHE_BUDGET),
            stats: RedactStats::default(),
        }
    }
}

/// The location of one version of a file.
#[derive(Clone, Debug)]
pub struct Located {
    pub version: FileVersion,
    pub ranges: Arc<Ranges>,
}

impl Located {
    pub fn has_location(&self) -> bool {
        !self.ranges.is_empty()
    }
}

/// What a redacted open holds: the ranges of the version it last read, refreshed when the file
/// changed under it (a write through another open, a truncate), so that a rewritten file's new
/// location is never served.
#[derive(Debug)]
pub struct RedactedView {
    located: Mutex<Located>,
}

impl RedactedView {
    pub fn new(located: Located) -> Self {
        RedactedView {
            located: Mutex::new(located),
        }
    }
}

/// The version `st` describes.
/// Where the finder reads a file version: an fd at hand, or the node's file, opened for it.
#[derive(Clone, Copy)]
enum ReadFrom<'a> {
    Fd(BorrowedFd<'a>),
    Node(u64),
}

fn version_of(st: &libc::stat) -> FileVersion {
    let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
    FileVersion {
        ino: st.st_ino,
        size: st.st_size as u64,
        mtime_ns: ns(st.st_mtime, st.st_mtime_nsec),
        ctime_ns: ns(st.st_ctime, st.st_ctime_nsec),
    }
}

/// `pread` on `fd`, retrying EINTR.
fn pread(fd: BorrowedFd<'_>, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        // SAFETY: pread writes at most buf.len() bytes into buf; fd is open for the call.
        let n = unsafe {
            libc::pread(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                offset as libc::off_t,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

impl StorageView {
    /// The redaction counters and the range cache's hits and misses.
    pub fn redaction_stats(&self) -> RedactSnapshot {
        self.redaction.stats.snapshot(&self.redaction.cache)
    }

    /// The location of `node`'s current version. `fd` is a readable lower fd of it if the open
    /// already has one; otherwise the file is only stat'ed, and opened when its version is not
    /// cached. A read failure is EIO and is not cached.
    pub(super) fn locate(
        &self,
        node: u64,
        fd: Option<BorrowedFd<'_>>,
        st: Option<&libc::stat>,
    ) -> Result<Located> {
        let st = match (st, fd) {
            (Some(st), _) => *st,
            (None, Some(fd)) => io(lower::stat_fd(fd))?,
            (None, None) => self.stat_node(node)?,
        };
        let version = version_of(&st);
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Ok(Located {
                version,
                ranges: Arc::new(Ranges::default()),
            });
        }
        let from = match fd {
            Some(fd) => ReadFrom::Fd(fd),
            None => ReadFrom::Node(node),
        };
        self.ranges_of(version, from)
    }

    /// The lower file's attributes: by name in its parent's cached directory fd (one system
    /// call, the common case), if that name is still this inode; else through its handle.
    fn stat_node(&self, node: u64) -> Result<libc::stat> {
        let by_name = self.nodes.with(node, |n| {
            (n.parent(), n.ino, lower::cname(n.name.as_bytes()).ok())
        });
        if let Some((parent, ino, Some(name))) = by_name {
            if let Ok(dir) = self.dir_fd(parent) {
                if let Ok(st) = lower::stat_at(dir.as_fd(), &name) {
                    if st.st_ino == ino {
                        return Ok(st);
                    }
                }
            }
        }
        let fd = self.open_node(node, libc::O_PATH)?;
        io(lower::stat_fd(fd.as_fd()))
    }

    /// The ranges of `version`, cached or found by reading it from `from`.
    fn ranges_of(&self, version: FileVersion, from: ReadFrom<'_>) -> Result<Located> {
        let r = &self.redaction;
        let ranges = r
            .cache
            .get_or_find(version, &r.stats, || {
                let opened;
                let fd = match from {
                    ReadFrom::Fd(fd) => fd,
                    ReadFrom::Node(node) => {
                        opened = self
                            .open_node(node, libc::O_RDONLY)
                            .map_err(std::io::Error::from_raw_os_error)?;
                        opened.as_fd()
                    }
                };
                find_location_ranges(version.size, |off, buf| pread(fd, off, buf))
            })
            .map_err(|e| {
                log::warn!("inode {}: location unknown: {e}", version.ino);
                libc::EIO
            })?;
        Ok(Located { version, ranges })
    }

    /// The ranges to zero in a read of a redacted open through `fd`, for the file as it is now.
    pub(super) fn current_ranges(
        &self,
        view: &RedactedView,
        fd: BorrowedFd<'_>,
    ) -> Result<Arc<Ranges>> {
        let version = version_of(&io(lower::stat_fd(fd))?);
        let mut held = view.located.lock().unwrap_or_else(|p| p.into_inner());
        if held.version != version {
            *held = self.ranges_of(version, ReadFrom::Fd(fd))?;
        }
        Ok(Arc::clone(&held.ranges))
    }

    /// Zeroes the location in `buf`, read at `offset` through a redacted open's `fd`.
    pub(super) fn redact_read(
        &self,
        view: &RedactedView,
        fd: BorrowedFd<'_>,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<()> {
        let ranges = self.current_ranges(view, fd)?;
        let zeroed = crate::redact::zero_ranges(buf, offset, &ranges);
        if zeroed > 0 {
            self.redaction.stats.zeroed(zeroed);
        }
        Ok(())
    }

    /// Forgets the cached location of the lower inode behind `node` (after a write through the
    /// mount): its next open reads it again, even if the write kept size and timestamps.
    pub(super) fn forget_location(&self, node: u64) {
        if let Some(ino) = self.nodes.with(node, |n| n.ino) {
            self.redaction.cache.invalidate(ino);
        }
    }

    /// Zeroes the location in `buf` (read at `offset` through `fd`) if `uid`'s read of `node`
    /// is redacted: for reads through a handle whose open this server never saw.
    pub(super) fn redact_unknown_open(
        &self,
        uid: u32,
        node: u64,
        fd: BorrowedFd<'_>,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<()> {
        let decision = self.check(
            uid,
            crate::policy::Op::Read,
            super::access::Subject::Node(node),
        )?;
        if decision != crate::policy::Decision::AllowRedacted {
            return Ok(());
        }
        let located = self.locate(node, Some(fd), None)?;
        let zeroed = crate::redact::zero_ranges(buf, offset, &located.ranges);
        if zeroed > 0 {
            self.redaction.stats.zeroed(zeroed);
        }
        Ok(())
    }

    /// A read-only, sealed in-memory copy of the file behind `fd` with its location zeroed,
    /// for a redacted reader outside the mount (`open_for_app`): the same bytes a redacted
    /// FUSE read gives. The copy is retried if the file changes while it is made.
    pub(super) fn redacted_copy(&self, fd: BorrowedFd<'_>) -> Result<OwnedFd> {
        for _ in 0..3 {
            let version = version_of(&io(lower::stat_fd(fd))?);
            if version.size > REDACTED_COPY_MAX {
                return Err(libc::EFBIG);
            }
            let located = self.ranges_of(version, ReadFrom::Fd(fd))?;
            let mem = std::fs::File::from(memfd()?);
            let mut buf = vec![0u8; 1 << 20];
            let mut offset = 0u64;
            let mut zeroed = 0usize;
            loop {
                let n = io(pread(fd, offset, &mut buf))?;
                if n == 0 {
                    break;
                }
                zeroed += crate::redact::zero_ranges(&mut buf[..n], offset, &located.ranges);
                io(mem.write_all_at(&buf[..n], offset))?;
                offset += n as u64;
            }
            if version_of(&io(lower::stat_fd(fd))?) != version {
                continue;
            }
            if zeroed > 0 {
                self.redaction.stats.zeroed(zeroed);
            }
            return sealed_read_only(mem.into());
        }
        Err(libc::EAGAIN)
    }
}

/// An anonymous in-memory file that can be sealed.
fn memfd() -> Result<OwnedFd> {
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: a NUL-terminated name and flags; a new fd or -1.
    io(lower::owned(unsafe {
        libc::memfd_create(c"fusegate-redacted".as_ptr(), flags)
    }))
}

/// Seals `mem` against every change and hands out a read-only fd of it: the holder can neither
/// write the copy nor unseal it.
fn sealed_read_only(mem: OwnedFd) -> Result<OwnedFd> {
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on an fd we own, with an int argument.
    io(lower::cvt(unsafe {
        libc::fcntl(mem.as_raw_fd(), libc::F_ADD_SEALS, seals)
    }))?;
    io(lower::reopen(mem.as_fd(), libc::O_RDONLY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_of_a_stat_is_the_version_of_its_metadata() {
        let path = std::env::temp_dir().join(format!("fusegate-version-{}", std::process::id()));
        std::fs::write(&path, b"some bytes").unwrap();
        let f = std::fs::File::open(&path).unwrap();
        let st = lower::stat_fd(f.as_fd()).unwrap();
        let meta = f.metadata().unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(version_of(&st), FileVersion::of(&meta));
        assert_eq!(version_of(&st).size, 10);
    }
}
