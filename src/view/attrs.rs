//! Attributes, permissions checks (ACCESS), extended attributes and statfs.

use super::access::{Subject, OWNER_XATTR};
use super::data::{kill_suidgid, IoFd};
use super::lower::{self, cvt, errno, io, proc_path, Result};
use super::{StorageView, XattrMode};
use crate::fuse::abi;
use crate::fuse::reply::attr_from_stat;
use crate::fuse::{AttrReply, Ctx, SetAttr, TimeSpec, XattrReply};
use crate::policy::Op;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

pub(super) fn timespec(t: Option<TimeSpec>) -> libc::timespec {
    match t {
        None => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        Some(TimeSpec::Now) => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        Some(TimeSpec::At { secs, nanos }) => libc::timespec {
            tv_sec: secs as _, // time_t: i64 on every 64-bit target
            tv_nsec: nanos as _,
        },
    }
}

impl StorageView {
    /// chmod through /proc so that it works on O_PATH fds.
    pub(super) fn chmod_fd(&self, fd: BorrowedFd<'_>, mode: u32) -> Result<()> {
        let p = proc_path(fd.as_raw_fd());
        // SAFETY: p is a NUL-terminated path that lives across the call.
        io(cvt(unsafe { libc::chmod(p.as_ptr(), mode & 0o7777) }).map(|_| ()))
    }

    /// The kernel already applied the caller's umask; give back the permission bits the
    /// daemon's own umask took from a new file. Only those: special bits the lower filesystem
    /// dropped (a setgid the caller may not set) stay dropped.
    pub(super) fn fix_mode(&self, fd: BorrowedFd<'_>, mode: u32) -> Result<()> {
        let missing = mode & 0o777 & self.umask;
        if missing == 0 {
            return Ok(());
        }
        let now = io(lower::stat_fd(fd))?.st_mode & 0o7777;
        if now & missing != missing {
            self.chmod_fd(fd, now | missing)?;
        }
        Ok(())
    }

    /// The mode a new file or directory is made with: an app never gets setuid, setgid or
    /// sticky bits.
    pub(super) fn creation_mode(&self, uid: u32, mode: u32) -> u32 {
        if self.judged(uid) {
            crate::policy::app_mode(mode)
        } else {
            mode & 0o7777
        }
    }

    pub(super) fn xattr_path(&self, node: u64) -> Result<(OwnedFd, std::ffi::CString)> {
        let fd = self.open_node(node, libc::O_PATH)?;
        let p = proc_path(fd.as_raw_fd());
        Ok((fd, p))
    }

    /// How long the kernel may keep these attributes: not at all for setuid/setgid files,
    /// whose bits a passthrough write clears behind the kernel's back.
    pub(super) fn attr_ttl(&self, node: u64, st: &libc::stat) -> std::time::Duration {
        let cd = self
            .nodes
            .with(node, |n| n.caller_dependent())
            .unwrap_or(true);
        attr_ttl(st, self.ttl(cd))
    }
}

/// Setuid and setgid files are never cached by the kernel: a write through passthrough clears
/// the bits on the lower file, and `stat` must show that at once. Others keep `ttl`.
pub(super) fn attr_ttl(st: &libc::stat, ttl: std::time::Duration) -> std::time::Duration {
    if st.st_mode & (libc::S_ISUID | libc::S_ISGID) != 0 {
        std::time::Duration::ZERO
    } else {
        ttl
    }
}

pub(super) fn getattr(
    view: &StorageView,
    ctx: &Ctx,
    node: u64,
    fh: Option<u64>,
) -> Result<AttrReply> {
    let caller_dependent = view
        .nodes
        .with(node, |n| n.caller_dependent())
        .ok_or(libc::ENOENT)?;
    if caller_dependent {
        view.check(ctx.uid, Op::Lookup, Subject::Node(node))?;
    }
    let fd = view.io_fd(node, fh.unwrap_or(0), libc::O_PATH)?;
    let st = match &fd {
        IoFd::Own(fd) => io(lower::stat_fd(fd.as_fd()))?,
        IoFd::Shared(_) => {
            // SAFETY: raw() is an fd kept open by the Arc we hold.
            io(lower::stat_fd(unsafe { BorrowedFd::borrow_raw(fd.raw()) }))?
        }
    };
    Ok(AttrReply {
        attr: attr_from_stat(&st),
        ttl: view.attr_ttl(node, &st),
    })
}

pub(super) fn setattr(
    view: &StorageView,
    ctx: &Ctx,
    node: u64,
    set: &SetAttr,
) -> Result<AttrReply> {
    let judged = view.judged(ctx.uid);
    // Files made through the mount belong to the daemon: an app never changes owners.
    if judged && (set.uid.is_some() || set.gid.is_some()) {
        return Err(libc::EPERM);
    }
    view.check(ctx.uid, Op::Write, Subject::Node(node))?;
    let creds = view.posix_creds(ctx);
    let fd = view.open_node(node, libc::O_PATH)?;
    let path = proc_path(fd.as_raw_fd());
    {
        // A POSIX caller changes what the kernel lets it change, as itself.
        let _as = view.act_as(creds.as_ref())?;
        if let Some(mode) = set.mode {
            let mode = if judged {
                crate::policy::app_mode(mode)
            } else {
                mode & 0o7777
            };
            // SAFETY: path is a NUL-terminated path that lives across the call.
            io(cvt(unsafe { libc::chmod(path.as_ptr(), mode) }))?;
        }
        if set.uid.is_some() || set.gid.is_some() {
            let uid = set.uid.unwrap_or(u32::MAX);
            let gid = set.gid.unwrap_or(u32::MAX);
            // SAFETY: path is NUL-terminated; -1 leaves an id unchanged. The magic link is
            // followed to the inode itself, never to a symlink's target.
            io(cvt(unsafe { libc::chown(path.as_ptr(), uid, gid) }))?;
        }
        if let Some(size) = set.size {
            if view.node_kind(node)? == libc::S_IFDIR {
                return Err(libc::EISDIR);
            }
            match set.fh {
                Some(fh) if creds.is_none() || view.files.get(fh).is_some() => {
                    let wfd = view.io_fd(node, fh, libc::O_WRONLY)?;
                    // SAFETY: ftruncate on an fd that is open (kept alive by wfd).
                    io(cvt(unsafe {
                        libc::ftruncate(wfd.raw(), size as libc::off_t)
                    }))?;
                    if set.kill_suidgid {
                        kill_suidgid(wfd.raw())?;
                    }
                }
                _ => {
                    // SAFETY: path is NUL-terminated; truncate checks write permission for
                    // whoever this thread acts as.
                    io(cvt(unsafe {
                        libc::truncate(path.as_ptr(), size as libc::off_t)
                    }))?;
                }
            }
        }
        if set.atime.is_some() || set.mtime.is_some() {
            let times = [timespec(set.atime), timespec(set.mtime)];
            // SAFETY: times is an array of two timespecs; path is NUL-terminated.
            io(cvt(unsafe {
                libc::utimensat(libc::AT_FDCWD, path.as_ptr(), times.as_ptr(), 0)
            }))?;
        }
    }
    let st = io(lower::stat_fd(fd.as_fd()))?;
    Ok(AttrReply {
        attr: attr_from_stat(&st),
        ttl: view.attr_ttl(node, &st),
    })
}

// statvfs field widths differ between libc targets.
#[allow(clippy::unnecessary_cast)]
pub(super) fn statfs(view: &StorageView, _ctx: &Ctx, _node: u64) -> Result<abi::Kstatfs> {
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: fstatvfs fills the struct on success; read only then.
    io(cvt(unsafe {
        libc::fstatvfs(view.lower.root().as_raw_fd(), st.as_mut_ptr())
    }))?;
    // SAFETY: fstatvfs succeeded.
    let st = unsafe { st.assume_init() };
    Ok(abi::Kstatfs {
        blocks: st.f_blocks as u64,
        bfree: st.f_bfree as u64,
        bavail: st.f_bavail as u64,
        files: st.f_files as u64,
        ffree: st.f_ffree as u64,
        bsize: st.f_bsize as u32,
        namelen: st.f_namemax as u32,
        frsize: st.f_frsize as u32,
        padding: 0,
        spare: [0; 6],
    })
}

pub(super) fn access(view: &StorageView, ctx: &Ctx, node: u64, mask: u32) -> Result<()> {
    if let Some(creds) = view.posix_creds(ctx) {
        let st = io(lower::stat_fd(view.open_node(node, libc::O_PATH)?.as_fd()))?;
        let mask = mask as i32 & (libc::R_OK | libc::W_OK | libc::X_OK);
        return if creds.allows(&st, mask) {
            Ok(())
        } else {
            Err(libc::EACCES)
        };
    }
    let kind = view.node_kind(node)?;
    let is_dir = kind == libc::S_IFDIR;
    let mask = mask as i32;
    if mask == libc::F_OK {
        view.check(ctx.uid, Op::Lookup, Subject::Node(node))?;
    }
    if mask & libc::R_OK != 0 {
        view.check(
            ctx.uid,
            if is_dir { Op::ListDir } else { Op::Read },
            Subject::Node(node),
        )?;
    }
    if mask & libc::W_OK != 0 && !is_dir {
        view.check(ctx.uid, Op::Write, Subject::Node(node))?;
    }
    if mask & libc::X_OK != 0 {
        if is_dir {
            view.check(ctx.uid, Op::Lookup, Subject::Node(node))?;
        } else {
            let fd = view.open_node(node, libc::O_PATH)?;
            let st = io(lower::stat_fd(fd.as_fd()))?;
            if st.st_mode & 0o111 == 0 {
                return Err(libc::EACCES);
            }
        }
    }
    Ok(())
}

/// Whether the configured xattr mode lets `name` through: ENOSYS for every name when the
/// view offers none (the kernel then stops asking), `missing` for names outside `user.*`.
fn xattr_offered(view: &StorageView, name: &[u8], missing: i32) -> Result<()> {
    match view.config.xattrs {
        XattrMode::None => Err(libc::ENOSYS),
        XattrMode::User if name.starts_with(b"user.") => Ok(()),
        XattrMode::User => Err(missing),
    }
}

pub(super) fn setxattr(
    view: &StorageView,
    ctx: &Ctx,
    node: u64,
    name: &[u8],
    value: &[u8],
    flags: u32,
) -> Result<()> {
    xattr_offered(view, name, libc::EOPNOTSUPP)?;
    if name == OWNER_XATTR && ctx.uid != 0 {
        return Err(libc::EPERM);
    }
    view.check(ctx.uid, Op::Write, Subject::Node(node))?;
    let (_fd, path) = view.xattr_path(node)?;
    let cname = io(lower::cname(name))?;
    let _as = view.act_as(view.posix_creds(ctx).as_ref())?;
    // SAFETY: path and name are NUL-terminated; value is read for value.len() bytes.
    io(cvt(unsafe {
        libc::setxattr(
            path.as_ptr(),
            cname.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags as i32,
        )
    }))?;
    Ok(())
}

pub(super) fn getxattr(
    view: &StorageView,
    ctx: &Ctx,
    node: u64,
    name: &[u8],
    out: &mut [u8],
) -> Result<XattrReply> {
    xattr_offered(view, name, libc::ENODATA)?;
    if name == OWNER_XATTR && ctx.uid != 0 {
        return Err(libc::ENODATA);
    }
    view.check(ctx.uid, Op::Lookup, Subject::Node(node))?;
    let (_fd, path) = view.xattr_path(node)?;
    let cname = io(lower::cname(name))?;
    let _as = view.act_as(view.posix_creds(ctx).as_ref())?;
    let size = out.len();
    let ptr = if size == 0 {
        std::ptr::null_mut()
    } else {
        out.as_mut_ptr().cast()
    };
    // SAFETY: writes at most size bytes into out (nothing when size is 0 and ptr null).
    let n = unsafe { libc::getxattr(path.as_ptr(), cname.as_ptr(), ptr, size) };
    if n < 0 {
        return Err(errno(&std::io::Error::last_os_error()));
    }
    Ok(if size == 0 {
        XattrReply::Size(n as u32)
    } else {
        XattrReply::Data(n as usize)
    })
}

pub(super) fn listxattr(
    view: &StorageView,
    ctx: &Ctx,
    node: u64,
    out: &mut [u8],
) -> Result<XattrReply> {
    if view.config.xattrs == XattrMode::None {
        return Err(libc::ENOSYS);
    }
    view.check(ctx.uid, Op::Lookup, Subject::Node(node))?;
    let (_fd, path) = view.xattr_path(node)?;
    let mut all = vec![0u8; 64 * 1024];
    // SAFETY: writes at most all.len() bytes into all.
    let n = unsafe { libc::listxattr(path.as_ptr(), all.as_mut_ptr().cast(), all.len()) };
    if n < 0 {
        return Err(errno(&std::io::Error::last_os_error()));
    }
    // Only user.*, and our bookkeeping xattr is not the apps' business.
    let mut shown = Vec::with_capacity(n as usize);
    for item in all[..n as usize].split_inclusive(|&b| b == 0) {
        let name = item.strip_suffix(b"\0").unwrap_or(item);
        if name.starts_with(b"user.") && (ctx.uid == 0 || name != OWNER_XATTR) {
            shown.extend_from_slice(item);
        }
    }
    if out.is_empty() {
        return Ok(XattrReply::Size(shown.len() as u32));
    }
    if shown.len() > out.len() {
        return Err(libc::ERANGE);
    }
    out[..shown.len()].copy_from_slice(&shown);
    Ok(XattrReply::Data(shown.len()))
}

pub(super) fn removexattr(view: &StorageView, ctx: &Ctx, node: u64, name: &[u8]) -> Result<()> {
    xattr_offered(view, name, libc::EOPNOTSUPP)?;
    if name == OWNER_XATTR && ctx.uid != 0 {
        return Err(libc::EPERM);
    }
    view.check(ctx.uid, Op::Write, Subject::Node(node))?;
    let (_fd, path) = view.xattr_path(node)?;
    let cname = io(lower::cname(name))?;
    let _as = view.act_as(view.posix_creds(ctx).as_ref())?;
    // SAFETY: both strings are NUL-terminated.
    io(cvt(unsafe {
        libc::removexattr(path.as_ptr(), cname.as_ptr())
    }))?;
    Ok(())
}
