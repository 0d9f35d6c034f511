//! The FUSE operations of the storage view: each request is handed to its handler in
//! `names.rs`, `data.rs`, `attrs.rs` or `dirs.rs`. Every handler asks the policy, does the lower
//! syscalls (relative to fds we hold, never following a symlink), updates the node table, answers.

use super::access::{Facts, Subject};
use super::lower::errno;
use super::{attrs, data, dirs, names, StorageView};
use crate::fuse::abi;
use crate::fuse::{
    AttrReply, Ctx, DirWriter, Entry, Filesystem, KernelHandle, Name, Negotiated, Opened, SetAttr,
    XattrReply,
};
use crate::policy;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

pub(super) type Result<T> = std::result::Result<T, i32>;

pub(super) fn io<T>(r: std::io::Result<T>) -> Result<T> {
    r.map_err(|e| errno(&e))
}

pub(super) fn is_dir_mode(mode: u32) -> bool {
    mode & libc::S_IFMT == libc::S_IFDIR
}

impl StorageView {
    pub(super) fn ttl(&self, caller_dependent: bool) -> Duration {
        if caller_dependent {
            Duration::ZERO
        } else {
            self.config.cache_ttl
        }
    }

    pub(super) fn open_node(&self, id: u64, flags: i32) -> Result<OwnedFd> {
        let handle = self.nodes.with(id, |n| n.handle).ok_or(libc::ENOENT)?;
        io(self.lower.open_handle(&handle, flags))
    }

    /// An `O_PATH` fd of a directory node, from the bounded cache when it is hot.
    pub(super) fn dir_fd(&self, id: u64) -> Result<Arc<OwnedFd>> {
        if let Some(fd) = self.dir_fds.get(id) {
            return Ok(fd);
        }
        let (handle, kind) = self
            .nodes
            .with(id, |n| (n.handle, n.kind()))
            .ok_or(libc::ENOENT)?;
        if kind != libc::S_IFDIR {
            return Err(libc::ENOTDIR);
        }
        let fd = io(self.lower.open_handle(&handle, libc::O_PATH))?;
        Ok(self.dir_fds.insert(id, fd))
    }

    pub(super) fn node_kind(&self, id: u64) -> Result<u32> {
        self.nodes.with(id, |n| n.kind()).ok_or(libc::ENOENT)
    }

    /// Facts of a directory node, computed once per call and shared by its children.
    pub(super) fn dir_facts(&self, id: u64) -> Result<Facts> {
        self.facts(Subject::Node(id))
    }

    /// Records the creator of a new regular file (apps only: root-made files have no owner).
    pub(super) fn record_creator(&self, uid: u32, fd: BorrowedFd<'_>) {
        if !policy::bypasses(uid) {
            let tag = self.policy.snapshot().owner_tag(uid);
            self.record_owner(fd, &tag);
        }
    }
}

impl Filesystem for StorageView {
    fn init(&self, negotiated: &Negotiated, kernel: Arc<KernelHandle>) {
        self.start(negotiated, kernel);
    }

    fn destroy(&self) {}

    fn lookup(&self, ctx: &Ctx, parent: u64, name: Name<'_>) -> Result<Entry> {
        names::lookup(self, ctx, parent, name)
    }

    fn forget(&self, node: u64, nlookup: u64) {
        if let Some(gone) = self.nodes.forget(node, nlookup) {
            self.dir_fds.remove(node);
            self.forgotten();
            if let (Some(id), Some(k)) = (gone.backing_id, self.kernel()) {
                self.close_backing(k, id);
            }
        }
    }

    fn getattr(&self, ctx: &Ctx, node: u64, fh: Option<u64>) -> Result<AttrReply> {
        attrs::getattr(self, ctx, node, fh)
    }

    fn setattr(&self, ctx: &Ctx, node: u64, set: &SetAttr) -> Result<AttrReply> {
        attrs::setattr(self, ctx, node, set)
    }

    fn readlink(&self, ctx: &Ctx, node: u64, out: &mut [u8]) -> Result<usize> {
        names::readlink(self, ctx, node, out)
    }

    fn symlink(&self, ctx: &Ctx, parent: u64, name: Name<'_>, target: &[u8]) -> Result<Entry> {
        names::symlink(self, ctx, parent, name, target)
    }

    fn mknod(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: Name<'_>,
        mode: u32,
        rdev: u32,
        umask: u32,
    ) -> Result<Entry> {
        names::mknod(self, ctx, parent, name, mode, rdev, umask)
    }

    fn mkdir(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: Name<'_>,
        mode: u32,
        umask: u32,
    ) -> Result<Entry> {
        names::mkdir(self, ctx, parent, name, mode, umask)
    }

    fn unlink(&self, ctx: &Ctx, parent: u64, name: Name<'_>) -> Result<()> {
        names::unlink(self, ctx, parent, name)
    }

    fn rmdir(&self, ctx: &Ctx, parent: u64, name: Name<'_>) -> Result<()> {
        names::rmdir(self, ctx, parent, name)
    }

    fn rename(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: Name<'_>,
        newparent: u64,
        newname: Name<'_>,
        flags: u32,
    ) -> Result<()> {
        names::rename(self, ctx, parent, name, newparent, newname, flags)
    }

    fn link(&self, ctx: &Ctx, node: u64, newparent: u64, newname: Name<'_>) -> Result<Entry> {
        names::link(self, ctx, node, newparent, newname)
    }

    fn open(&self, ctx: &Ctx, node: u64, flags: u32) -> Result<Opened> {
        data::open(self, ctx, node, flags)
    }

    fn create(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: Name<'_>,
        mode: u32,
        umask: u32,
        flags: u32,
    ) -> Result<(Entry, Opened)> {
        data::create(self, ctx, parent, name, mode, umask, flags)
    }

    fn read(&self, ctx: &Ctx, node: u64, fh: u64, offset: u64, out: &mut [u8]) -> Result<usize> {
        data::read(self, ctx, node, fh, offset, out)
    }

    fn write(
        &self,
        ctx: &Ctx,
        node: u64,
        fh: u64,
        offset: u64,
        data: &[u8],
        write_flags: u32,
    ) -> Result<u32> {
        data::write(self, ctx, node, fh, offset, data, write_flags)
    }

    fn flush(&self, ctx: &Ctx, node: u64, fh: u64) -> Result<()> {
        data::flush(self, ctx, node, fh)
    }

    fn release(&self, ctx: &Ctx, node: u64, fh: u64, flags: u32) -> Result<()> {
        data::release(self, ctx, node, fh, flags)
    }

    fn fsync(&self, ctx: &Ctx, node: u64, fh: u64, datasync: bool) -> Result<()> {
        data::fsync(self, ctx, node, fh, datasync)
    }

    fn opendir(&self, ctx: &Ctx, node: u64, flags: u32) -> Result<Opened> {
        dirs::opendir(self, ctx, node, flags)
    }

    fn readdir(
        &self,
        ctx: &Ctx,
        node: u64,
        fh: u64,
        offset: u64,
        out: &mut DirWriter<'_>,
    ) -> Result<()> {
        dirs::readdir(self, ctx, node, fh, offset, out)
    }

    fn releasedir(&self, ctx: &Ctx, node: u64, fh: u64) -> Result<()> {
        dirs::releasedir(self, ctx, node, fh)
    }

    fn fsyncdir(&self, ctx: &Ctx, node: u64, fh: u64, datasync: bool) -> Result<()> {
        dirs::fsyncdir(self, ctx, node, fh, datasync)
    }

    fn statfs(&self, ctx: &Ctx, node: u64) -> Result<abi::Kstatfs> {
        attrs::statfs(self, ctx, node)
    }

    fn access(&self, ctx: &Ctx, node: u64, mask: u32) -> Result<()> {
        attrs::access(self, ctx, node, mask)
    }

    fn setxattr(&self, ctx: &Ctx, node: u64, name: &[u8], value: &[u8], flags: u32) -> Result<()> {
        attrs::setxattr(self, ctx, node, name, value, flags)
    }

    fn getxattr(&self, ctx: &Ctx, node: u64, name: &[u8], out: &mut [u8]) -> Result<XattrReply> {
        attrs::getxattr(self, ctx, node, name, out)
    }

    fn listxattr(&self, ctx: &Ctx, node: u64, out: &mut [u8]) -> Result<XattrReply> {
        attrs::listxattr(self, ctx, node, out)
    }

    fn removexattr(&self, ctx: &Ctx, node: u64, name: &[u8]) -> Result<()> {
        attrs::removexattr(self, ctx, node, name)
    }

    fn fallocate(
        &self,
        ctx: &Ctx,
        node: u64,
        fh: u64,
        offset: u64,
        length: u64,
        mode: u32,
    ) -> Result<()> {
        data::fallocate(self, ctx, node, fh, offset, length, mode)
    }

    fn lseek(&self, ctx: &Ctx, node: u64, fh: u64, offset: u64, whence: u32) -> Result<u64> {
        data::lseek(self, ctx, node, fh, offset, whence)
    }

    fn copy_file_range(
        &self,
        ctx: &Ctx,
        node_in: u64,
        fh_in: u64,
        off_in: u64,
        node_out: u64,
        fh_out: u64,
        off_out: u64,
        len: u64,
    ) -> Result<u64> {
        data::copy_file_range(
            self, ctx, node_in, fh_in, off_in, node_out, fh_out, off_out, len,
        )
    }
}
