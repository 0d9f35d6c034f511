//! The interface between the protocol layer and a filesystem implementation: typed requests in,
//! typed replies (or an errno) out. Every method has a default of `ENOSYS`.

use super::abi;
use super::reply::{DirWriter, Entry, Opened};
use super::request::Name;
use super::session::Negotiated;
use std::sync::Arc;
use std::time::Duration;

/// A positive errno value.
pub type Errno = i32;
pub type Result<T> = std::result::Result<T, Errno>;

/// Who asked, from the request header.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    pub unique: u64,
    pub nodeid: u64,
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
    pub opcode: u32,
}

/// The SETATTR request, with each field present only if the kernel asked to change it.
#[derive(Debug, Clone, Copy, Default)]
pub struct SetAttr {
    pub fh: Option<u64>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeSpec>,
    pub mtime: Option<TimeSpec>,
    /// HANDLE_KILLPRIV_V2: the change must also clear suid/sgid.
    pub kill_suidgid: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSpec {
    Now,
    At { secs: i64, nanos: u32 },
}

impl SetAttr {
    pub fn from_abi(a: &abi::SetattrIn) -> Self {
        use abi::fattr as f;
        let has = |bit: u32| a.valid & bit != 0;
        let time = |set: u32, now: u32, secs: u64, nanos: u32| {
            if has(now) {
                Some(TimeSpec::Now)
            } else if has(set) {
                Some(TimeSpec::At {
                    secs: secs as i64,
                    nanos,
                })
            } else {
                None
            }
        };
        SetAttr {
            fh: has(f::FH).then_some(a.fh),
            mode: has(f::MODE).then_some(a.mode),
            uid: has(f::UID).then_some(a.uid),
            gid: has(f::GID).then_some(a.gid),
            size: has(f::SIZE).then_some(a.size),
            atime: time(f::ATIME, f::ATIME_NOW, a.atime, a.atimensec),
            mtime: time(f::MTIME, f::MTIME_NOW, a.mtime, a.mtimensec),
            kill_suidgid: has(f::KILL_SUIDGID),
        }
    }
}

/// GETXATTR/LISTXATTR answer: with a zero-size request the kernel only wants the length.
#[derive(Debug)]
pub enum XattrReply {
    Size(u32),
    Data(usize),
}

/// Attributes with how long the kernel may cache them.
#[derive(Debug, Clone, Copy)]
pub struct AttrReply {
    pub attr: abi::Attr,
    pub ttl: Duration,
}

pub trait Filesystem: Send + Sync + 'static {
    /// Called once after INIT with what the kernel agreed to, before any other request.
    fn init(&self, _negotiated: &Negotiated, _kernel: Arc<super::KernelHandle>) {}
    /// Called once when the session ends (unmount or stop).
    fn destroy(&self) {}
    /// Called on each worker thread before it serves its first request (e.g. to drop the
    /// thread's capabilities).
    fn worker_started(&self) {}

    fn lookup(&self, _ctx: &Ctx, _parent: u64, _name: Name<'_>) -> Result<Entry> {
        Err(libc::ENOSYS)
    }
    /// The kernel dropped `nlookup` references to `node`.
    fn forget(&self, _node: u64, _nlookup: u64) {}
    fn getattr(&self, _ctx: &Ctx, _node: u64, _fh: Option<u64>) -> Result<AttrReply> {
        Err(libc::ENOSYS)
    }
    fn setattr(&self, _ctx: &Ctx, _node: u64, _set: &SetAttr) -> Result<AttrReply> {
        Err(libc::ENOSYS)
    }
    /// Writes the target into `out`, returns its length.
    fn readlink(&self, _ctx: &Ctx, _node: u64, _out: &mut [u8]) -> Result<usize> {
        Err(libc::ENOSYS)
    }
    fn symlink(&self, _ctx: &Ctx, _parent: u64, _name: Name<'_>, _target: &[u8]) -> Result<Entry> {
        Err(libc::ENOSYS)
    }
    fn mknod(
        &self,
        _ctx: &Ctx,
        _parent: u64,
        _name: Name<'_>,
        _mode: u32,
        _rdev: u32,
        _umask: u32,
    ) -> Result<Entry> {
        Err(libc::ENOSYS)
    }
    fn mkdir(
        &self,
        _ctx: &Ctx,
        _parent: u64,
        _name: Name<'_>,
        _mode: u32,
        _umask: u32,
    ) -> Result<Entry> {
        Err(libc::ENOSYS)
    }
    fn unlink(&self, _ctx: &Ctx, _parent: u64, _name: Name<'_>) -> Result<()> {
        Err(libc::ENOSYS)
    }
    fn rmdir(&self, _ctx: &Ctx, _parent: u64, _name: Name<'_>) -> Result<()> {
        Err(libc::ENOSYS)
    }
    fn rename(
        &self,
        _ctx: &Ctx,
        _parent: u64,
        _name: Name<'_>,
        _newparent: u64,
        _newname: Name<'_>,
        _flags: u32,
    ) -> Result<()> {
        Err(libc::ENOSYS)
    }
    fn link(&self, _ctx: &Ctx, _node: u64, _newparent: u64, _newname: Name<'_>) -> Result<Entry> {
        Err(libc::ENOSYS)
    }
    /// `open_flags` is `fuse_open_in.open_flags` (`FUSE_OPEN_KILL_SUIDGID`).
    fn open(&self, _ctx: &Ctx, _node: u64, _flags: u32, _open_flags: u32) -> Result<Opened> {
        Err(libc::ENOSYS)
    }
    #[allow(clippy::too_many_arguments)] // the FUSE request has that many fields
    fn create(
        &self,
        _ctx: &Ctx,
        _parent: u64,
        _name: Name<'_>,
        _mode: u32,
        _umask: u32,
        _flags: u32,
        _open_flags: u32,
    ) -> Result<(Entry, Opened)> {
        Err(libc::ENOSYS)
    }
    /// Reads into `out` (sized to the request), returns the byte count.
    fn read(
        &self,
        _ctx: &Ctx,
        _node: u64,
        _fh: u64,
        _offset: u64,
        _out: &mut [u8],
    ) -> Result<usize> {
        Err(libc::ENOSYS)
    }
    /// `write_flags` carries `abi::WRITE_KILL_SUIDGID`.
    fn write(
        &self,
        _ctx: &Ctx,
        _node: u64,
        _fh: u64,
        _offset: u64,
        _data: &[u8],
        _write_flags: u32,
    ) -> Result<u32> {
        Err(libc::ENOSYS)
    }
    fn flush(&self, _ctx: &Ctx, _node: u64, _fh: u64) -> Result<()> {
        Err(libc::ENOSYS)
    }
    fn release(&self, _ctx: &Ctx, _node: u64, _fh: u64, _flags: u32) -> Result<()> {
        Ok(())
    }
    fn fsync(&self, _ctx: &Ctx, _node: u64, _fh: u64, _datasync: bool) -> Result<()> {
        Err(libc::ENOSYS)
    }
    fn opendir(&self, _ctx: &Ctx, _node: u64, _flags: u32) -> Result<Opened> {
        Err(libc::ENOSYS)
    }
    /// Fills `out` with entries starting after `offset`; READDIRPLUS when `out.is_plus()`.
    fn readdir(
        &self,
        _ctx: &Ctx,
        _node: u64,
        _fh: u64,
        _offset: u64,
        _out: &mut DirWriter<'_>,
    ) -> Result<()> {
        Err(libc::ENOSYS)
    }
    fn releasedir(&self, _ctx: &Ctx, _node: u64, _fh: u64) -> Result<()> {
        Ok(())
    }
    fn fsyncdir(&self, _ctx: &Ctx, _node: u64, _fh: u64, _datasync: bool) -> Result<()> {
        Err(libc::ENOSYS)
    }
    fn statfs(&self, _ctx: &Ctx, _node: u64) -> Result<abi::Kstatfs> {
        Err(libc::ENOSYS)
    }
    fn access(&self, _ctx: &Ctx, _node: u64, _mask: u32) -> Result<()> {
        Err(libc::ENOSYS)
    }
    fn setxattr(
        &self,
        _ctx: &Ctx,
        _node: u64,
        _name: &[u8],
        _value: &[u8],
        _flags: u32,
    ) -> Result<()> {
        Err(libc::ENOSYS)
    }
    fn getxattr(
        &self,
        _ctx: &Ctx,
        _node: u64,
        _name: &[u8],
        _out: &mut [u8],
    ) -> Result<XattrReply> {
        Err(libc::ENOSYS)
    }
    fn listxattr(&self, _ctx: &Ctx, _node: u64, _out: &mut [u8]) -> Result<XattrReply> {
        Err(libc::ENOSYS)
    }
    fn removexattr(&self, _ctx: &Ctx, _node: u64, _name: &[u8]) -> Result<()> {
        Err(libc::ENOSYS)
    }
    fn fallocate(
        &self,
        _ctx: &Ctx,
        _node: u64,
        _fh: u64,
        _offset: u64,
        _length: u64,
        _mode: u32,
    ) -> Result<()> {
        Err(libc::ENOSYS)
    }
    fn lseek(&self, _ctx: &Ctx, _node: u64, _fh: u64, _offset: u64, _whence: u32) -> Result<u64> {
        Err(libc::ENOSYS)
    }
    #[allow(clippy::too_many_arguments)]
    fn copy_file_range(
        &self,
        _ctx: &Ctx,
        _node_in: u64,
        _fh_in: u64,
        _off_in: u64,
        _node_out: u64,
        _fh_out: u64,
        _off_out: u64,
        _len: u64,
    ) -> Result<u64> {
        Err(libc::ENOSYS)
    }
}
