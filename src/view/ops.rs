//! The FUSE operations of the storage view, as a table: each request goes to its handler in
//! `lookup.rs`, `create.rs`, `remove.rs`, `rename.rs`, `data.rs`, `attrs.rs` or `dirs.rs`.
//! Every handler asks the policy (`access.rs`), does the lower syscalls (relative to fds we
//! hold, never following a symlink, as the caller for POSIX callers), updates the node table
//! and answers.

use super::lower::Result;
use super::{attrs, create, data, dirs, lookup, privileges, remove, rename, StorageView};
use crate::fuse::abi;
use crate::fuse::{
    AttrReply, Ctx, DirWriter, Entry, Filesystem, KernelHandle, Name, Negotiated, Opened, SetAttr,
    XattrReply,
};
use std::sync::Arc;

impl Filesystem for StorageView {
    fn init(&self, negotiated: &Negotiated, kernel: Arc<KernelHandle>) {
        self.start(negotiated, kernel);
    }

    fn destroy(&self) {}

    fn worker_started(&self) {
        self.releases.worker_started();
        match privileges::drop_for_this_thread() {
            Ok(dropped) if !dropped.is_empty() => {
                log::debug!("worker dropped capabilities {dropped:?}")
            }
            Ok(_) => {}
            Err(e) => log::warn!("cannot drop this worker's capabilities: {e}"),
        }
    }

    fn lookup(&self, ctx: &Ctx, parent: u64, name: Name<'_>) -> Result<Entry> {
        lookup::lookup(self, ctx, parent, name)
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
        lookup::readlink(self, ctx, node, out)
    }

    fn symlink(&self, ctx: &Ctx, parent: u64, name: Name<'_>, target: &[u8]) -> Result<Entry> {
        create::symlink(self, ctx, parent, name, target)
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
        create::mknod(self, ctx, parent, name, mode, rdev, umask)
    }

    fn mkdir(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: Name<'_>,
        mode: u32,
        umask: u32,
    ) -> Result<Entry> {
        create::mkdir(self, ctx, parent, name, mode, umask)
    }

    fn unlink(&self, ctx: &Ctx, parent: u64, name: Name<'_>) -> Result<()> {
        remove::unlink(self, ctx, parent, name)
    }

    fn rmdir(&self, ctx: &Ctx, parent: u64, name: Name<'_>) -> Result<()> {
        remove::rmdir(self, ctx, parent, name)
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
        rename::rename(self, ctx, parent, name, newparent, newname, flags)
    }

    fn link(&self, ctx: &Ctx, node: u64, newparent: u64, newname: Name<'_>) -> Result<Entry> {
        create::link(self, ctx, node, newparent, newname)
    }

    fn open(&self, ctx: &Ctx, node: u64, flags: u32, open_flags: u32) -> Result<Opened> {
        data::open(self, ctx, node, flags, open_flags)
    }

    fn create(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: Name<'_>,
        mode: u32,
        umask: u32,
        flags: u32,
        open_flags: u32,
    ) -> Result<(Entry, Opened)> {
        data::create(self, ctx, parent, name, mode, umask, flags, open_flags)
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
