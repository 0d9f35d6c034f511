//! Opening files and their data: passthrough registration, userspace I/O when it is off.

use super::access::Subject;
use super::files::OpenFile;
use super::lower::{self, cvt, errno};
use super::ops::{io, is_dir_mode, Result};
use super::StorageView;
use crate::fuse::abi::{self, fopen};
use crate::fuse::{Ctx, Entry, Filesystem, KernelHandle, Name, Opened};
use crate::policy::{self, Decision, Op};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// Lower open flags for a userspace-served file: what the app asked, minus what only made
/// sense at the FUSE level. Write-only becomes read-write so the page cache can fill partial
/// pages; O_APPEND is dropped because the kernel already computed the offset.
pub(super) fn userspace_flags(flags: u32) -> i32 {
    let f = flags as i32;
    let mut out =
        f & !(libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY | libc::O_DIRECT | libc::O_APPEND);
    if out & libc::O_ACCMODE == libc::O_WRONLY {
        out = (out & !libc::O_ACCMODE) | libc::O_RDWR;
    }
    out
}

pub(super) enum IoFd {
    Shared(Arc<OpenFile>),
    Own(OwnedFd),
}

impl IoFd {
    pub(super) fn raw(&self) -> i32 {
        match self {
            IoFd::Shared(f) => match &**f {
                OpenFile::Userspace { fd, .. } => fd.as_raw_fd(),
                _ => -1,
            },
            IoFd::Own(fd) => fd.as_raw_fd(),
        }
    }
}

/// Clears suid/sgid, as the kernel would for an unprivileged writer (we write as root, so the
/// lower filesystem does not do it for us).
pub(super) fn kill_suidgid(fd: i32) -> Result<()> {
    // SAFETY: fd is open for the duration of the call (owned by the caller's IoFd).
    let st = io(lower::stat_fd(unsafe { BorrowedFd::borrow_raw(fd) }))?;
    let mut mode = st.st_mode & 0o7777;
    if mode & libc::S_ISUID != 0 || (mode & libc::S_ISGID != 0 && mode & libc::S_IXGRP != 0) {
        mode &= !(libc::S_ISUID | libc::S_ISGID);
        // SAFETY: fchmod on an open, non-O_PATH fd.
        io(cvt(unsafe { libc::fchmod(fd, mode) }))?;
    }
    Ok(())
}

impl StorageView {
    /// The one backing id of this inode, registering it on first use.
    pub(super) fn backing_for(&self, node: u64, fd: Option<BorrowedFd<'_>>) -> Result<i32> {
        let kernel = self.kernel().ok_or(libc::EIO)?;
        if let Some(id) = self
            .nodes
            .with(node, |n| n.backing_id())
            .ok_or(libc::ENOENT)?
        {
            return Ok(id);
        }
        // The kernel reopens the backing file with the daemon's credentials at each
        // passthrough open, so an O_PATH fd is enough and is closed right after.
        let owned;
        let fd = match fd {
            Some(fd) => fd,
            None => {
                owned = self.open_node(node, libc::O_PATH)?;
                owned.as_fd()
            }
        };
        let id = io(kernel.backing_open(fd))?;
        self.stats.backing_registered.fetch_add(1, Relaxed);
        let winner = self.nodes.with(node, |n| match n.backing_id() {
            Some(existing) => Err(existing),
            None => {
                n.set_backing_id(id);
                Ok(id)
            }
        });
        match winner {
            Some(Ok(id)) => Ok(id),
            // Another open registered first: use its id, ours was never handed out.
            Some(Err(existing)) => {
                self.close_backing(kernel, id);
                Ok(existing)
            }
            None => {
                self.close_backing(kernel, id);
                Err(libc::ENOENT)
            }
        }
    }

    pub(super) fn close_backing(&self, kernel: &KernelHandle, id: i32) {
        match kernel.backing_close(id) {
            Ok(()) => {
                self.stats.backing_released.fetch_add(1, Relaxed);
            }
            Err(e) => log::warn!("closing backing id {id}: {e}"),
        }
    }

    /// Answers an allowed open of `node`: passthrough when possible, else a userspace fd.
    /// `fd` is an already-open lower fd (from CREATE), reused instead of reopening.
    pub(super) fn finish_open(
        &self,
        node: u64,
        flags: u32,
        decision: Decision,
        fd: Option<OwnedFd>,
    ) -> Result<Opened> {
        let redacted = decision == Decision::AllowRedacted;
        if self.passthrough_active() && !redacted {
            let id = self.backing_for(node, fd.as_ref().map(|f| f.as_fd()))?;
            self.nodes
                .with(node, |n| n.passthrough_opens += 1)
                .ok_or(libc::ENOENT)?;
            let fh = self.files.insert(OpenFile::Passthrough { node });
            self.stats.passthrough_opens.fetch_add(1, Relaxed);
            // NOFLUSH: close() of a local file needs no round trip to us.
            return Ok(Opened {
                fh,
                flags: fopen::NOFLUSH,
                backing_id: Some(id),
            });
        }
        // The kernel refuses a non-passthrough open while passthrough opens of the inode
        // exist (EIO from the app's open): say "busy" instead.
        let busy = self
            .nodes
            .with(node, |n| n.passthrough_opens > 0)
            .ok_or(libc::ENOENT)?;
        if busy {
            return Err(libc::EBUSY);
        }
        let fd = match fd {
            Some(fd) => fd,
            None => self.open_node(node, userspace_flags(flags))?,
        };
        self.nodes
            .with(node, |n| n.userspace_opens += 1)
            .ok_or(libc::ENOENT)?;
        let fh = self.files.insert(OpenFile::Userspace { node, fd });
        self.stats.userspace_opens.fetch_add(1, Relaxed);
        let mut open_flags = fopen::NOFLUSH;
        if redacted {
            self.stats.redacted_opens.fetch_add(1, Relaxed);
        }
        // Uncached I/O never takes the inode's I/O mode, so it cannot collide with later
        // passthrough opens; and a redacted view must never land in the shared page cache.
        if redacted || self.passthrough_active() {
            open_flags |= fopen::DIRECT_IO;
        }
        Ok(Opened {
            fh,
            flags: open_flags,
            backing_id: None,
        })
    }

    /// A lower fd usable for `flags`-style I/O on an open file: its own fd when it has one.
    pub(super) fn io_fd(&self, node: u64, fh: u64, flags: i32) -> Result<IoFd> {
        if let Some(file) = self.files.get(fh) {
            if let OpenFile::Userspace { node: n, .. } = &*file {
                if *n == node {
                    return Ok(IoFd::Shared(file));
                }
            }
        }
        Ok(IoFd::Own(self.open_node(node, flags)?))
    }

    pub(super) fn release_file(&self, fh: u64) {
        let Some(file) = self.files.remove(fh) else {
            return;
        };
        let node = file.node();
        self.nodes.with(node, |n| match &*file {
            OpenFile::Passthrough { .. } => {
                n.passthrough_opens = n.passthrough_opens.saturating_sub(1)
            }
            OpenFile::Userspace { .. } => n.userspace_opens = n.userspace_opens.saturating_sub(1),
            OpenFile::Dir { .. } => {}
        });
    }
}

pub(super) fn open(view: &StorageView, ctx: &Ctx, node: u64, flags: u32) -> Result<Opened> {
    if view.node_kind(node)? == libc::S_IFDIR {
        return Err(libc::EISDIR);
    }
    let f = flags as i32;
    let acc = f & libc::O_ACCMODE;
    let wants_write = acc != libc::O_RDONLY || f & libc::O_TRUNC != 0;
    let mut decision = Decision::Allow;
    if acc != libc::O_WRONLY {
        decision = view.check(ctx.uid, Op::Read, Subject::Node(node))?;
    }
    if wants_write {
        view.check(ctx.uid, Op::Write, Subject::Node(node))?;
    }
    if f & libc::O_TRUNC != 0 && view.passthrough_active() && decision == Decision::Allow {
        // ATOMIC_O_TRUNC: the kernel leaves truncation to us.
        drop(view.open_node(node, libc::O_WRONLY | libc::O_TRUNC)?);
    }
    view.finish_open(node, flags, decision, None)
}

pub(super) fn create(
    view: &StorageView,
    ctx: &Ctx,
    parent: u64,
    name: Name<'_>,
    mode: u32,
    _umask: u32,
    flags: u32,
) -> Result<(Entry, Opened)> {
    let name = name.as_bytes();
    let dir = view.dir_fd(parent)?;
    let cname = io(lower::cname(name))?;
    let open_flags = userspace_flags(flags);
    // The kernel sends CREATE when its cache had no such name; the file may still exist.
    // Then (without O_EXCL) this is an open of that file, decided like any other open.
    let (fd, created, decision) = match view.existing_child(ctx.uid, parent, dir.as_fd(), name) {
        Ok(_) if flags as i32 & libc::O_EXCL != 0 => return Err(libc::EEXIST),
        Ok((st, owner)) => {
            if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                return Err(if is_dir_mode(st.st_mode) {
                    libc::EISDIR
                } else {
                    libc::EEXIST
                });
            }
            let acc = flags as i32 & libc::O_ACCMODE;
            let mut decision = Decision::Allow;
            if acc != libc::O_WRONLY {
                decision =
                    view.check_child(ctx.uid, Op::Read, parent, name, false, owner.as_deref())?;
            }
            view.check_child(ctx.uid, Op::Write, parent, name, false, owner.as_deref())?;
            (
                io(lower::open_at(dir.as_fd(), &cname, open_flags, 0))?,
                false,
                decision,
            )
        }
        Err(libc::ENOENT) => {
            view.check_child(ctx.uid, Op::Create, parent, name, false, None)?;
            let fd = io(lower::open_at(
                dir.as_fd(),
                &cname,
                open_flags | libc::O_CREAT | libc::O_EXCL,
                mode & 0o7777,
            ))?;
            (fd, true, Decision::Allow)
        }
        Err(e) => return Err(e),
    };
    let st = io(lower::stat_fd(fd.as_fd()))?;
    if created {
        view.fix_mode(fd.as_fd(), mode)?;
        view.record_creator(ctx.uid, fd.as_fd());
        view.after_name_change(parent, name);
    }
    let parent_facts = view.dir_facts(parent)?;
    let facts = view.child_facts(&parent_facts, name, false);
    let entry = view.make_entry(
        parent,
        name,
        io(lower::handle_of(fd.as_fd()))?,
        &st,
        policy::caller_dependent(&facts.target()),
    )?;
    match view.finish_open(entry.nodeid, flags, decision, Some(fd)) {
        Ok(opened) => Ok((entry, opened)),
        Err(e) => {
            // The kernel never saw this entry: undo its lookup count.
            view.forget(entry.nodeid, 1);
            Err(e)
        }
    }
}

pub(super) fn read(
    view: &StorageView,
    _ctx: &Ctx,
    node: u64,
    fh: u64,
    offset: u64,
    out: &mut [u8],
) -> Result<usize> {
    let fd = view.io_fd(node, fh, libc::O_RDONLY)?;
    // SAFETY: pread writes at most out.len() bytes into out; the fd is kept open by fd.
    let n = unsafe {
        libc::pread(
            fd.raw(),
            out.as_mut_ptr().cast(),
            out.len(),
            offset as libc::off_t,
        )
    };
    if n < 0 {
        return Err(errno(&std::io::Error::last_os_error()));
    }
    view.stats.bytes_read.fetch_add(n as u64, Relaxed);
    Ok(n as usize)
}

pub(super) fn write(
    view: &StorageView,
    _ctx: &Ctx,
    node: u64,
    fh: u64,
    offset: u64,
    data: &[u8],
    write_flags: u32,
) -> Result<u32> {
    let fd = view.io_fd(node, fh, libc::O_WRONLY)?;
    if write_flags & abi::WRITE_KILL_SUIDGID != 0 {
        kill_suidgid(fd.raw())?;
    }
    let mut done = 0usize;
    while done < data.len() {
        let rest = &data[done..];
        // SAFETY: pwrite reads rest.len() bytes from rest; the fd is kept open by fd.
        let n = unsafe {
            libc::pwrite(
                fd.raw(),
                rest.as_ptr().cast(),
                rest.len(),
                (offset + done as u64) as libc::off_t,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            if done > 0 {
                break;
            }
            return Err(errno(&e));
        }
        if n == 0 {
            break;
        }
        done += n as usize;
    }
    view.stats.bytes_written.fetch_add(done as u64, Relaxed);
    Ok(done as u32)
}

pub(super) fn flush(_view: &StorageView, _ctx: &Ctx, _node: u64, _fh: u64) -> Result<()> {
    Ok(())
}

pub(super) fn release(
    view: &StorageView,
    _ctx: &Ctx,
    _node: u64,
    fh: u64,
    _flags: u32,
) -> Result<()> {
    view.release_file(fh);
    Ok(())
}

pub(super) fn fsync(
    view: &StorageView,
    _ctx: &Ctx,
    node: u64,
    fh: u64,
    datasync: bool,
) -> Result<()> {
    let fd = view.io_fd(node, fh, libc::O_RDONLY)?;
    // SAFETY: fsync/fdatasync on an fd kept open by fd.
    let r = unsafe {
        if datasync {
            libc::fdatasync(fd.raw())
        } else {
            libc::fsync(fd.raw())
        }
    };
    io(cvt(r).map(|_| ()))
}

pub(super) fn fallocate(
    view: &StorageView,
    _ctx: &Ctx,
    node: u64,
    fh: u64,
    offset: u64,
    length: u64,
    mode: u32,
) -> Result<()> {
    let fd = view.io_fd(node, fh, libc::O_WRONLY)?;
    // SAFETY: fallocate on an fd kept open by fd.
    io(cvt(unsafe {
        libc::fallocate(
            fd.raw(),
            mode as i32,
            offset as libc::off_t,
            length as libc::off_t,
        )
    }))?;
    Ok(())
}

pub(super) fn lseek(
    view: &StorageView,
    _ctx: &Ctx,
    node: u64,
    fh: u64,
    offset: u64,
    whence: u32,
) -> Result<u64> {
    let fd = view.io_fd(node, fh, libc::O_RDONLY)?;
    // SAFETY: lseek on an fd kept open by fd. The shared fd's position is never used
    // for data (we only pread/pwrite), so moving it is harmless.
    let r = unsafe { libc::lseek(fd.raw(), offset as libc::off_t, whence as i32) };
    if r < 0 {
        return Err(errno(&std::io::Error::last_os_error()));
    }
    Ok(r as u64)
}

#[allow(clippy::too_many_arguments)] // the FUSE request has that many fields
pub(super) fn copy_file_range(
    view: &StorageView,
    _ctx: &Ctx,
    node_in: u64,
    fh_in: u64,
    off_in: u64,
    node_out: u64,
    fh_out: u64,
    off_out: u64,
    len: u64,
) -> Result<u64> {
    let fin = view.io_fd(node_in, fh_in, libc::O_RDONLY)?;
    let fout = view.io_fd(node_out, fh_out, libc::O_WRONLY)?;
    let mut oin = off_in as libc::loff_t;
    let mut oout = off_out as libc::loff_t;
    // SAFETY: copy_file_range between two open fds, offsets passed by pointer to locals.
    let n = unsafe {
        libc::syscall(
            libc::SYS_copy_file_range,
            fin.raw(),
            &mut oin as *mut libc::loff_t,
            fout.raw(),
            &mut oout as *mut libc::loff_t,
            len as usize,
            0u32,
        )
    };
    if n < 0 {
        return Err(errno(&std::io::Error::last_os_error()));
    }
    Ok(n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userspace_flags_table() {
        let cases: &[(i32, i32)] = &[
            (libc::O_RDONLY, libc::O_RDONLY),
            (libc::O_WRONLY, libc::O_RDWR),
            (libc::O_RDWR | libc::O_APPEND, libc::O_RDWR),
            (
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC,
                libc::O_RDWR | libc::O_TRUNC,
            ),
            (libc::O_RDONLY | libc::O_DIRECT, libc::O_RDONLY),
        ];
        for &(input, want) in cases {
            assert_eq!(userspace_flags(input as u32), want, "{input:o}");
        }
    }
}
