//! Dispatch: one request's bytes, decoded, handed to the [`Filesystem`], and its answer
//! encoded; shared by both transports and the fuzz targets, so what is fuzzed is what serves.
//! A request the kernel resends after a server restart is reconciled here (`resent_fixup`).

use super::abi::{self, opcode};
use super::filesystem::{Ctx, Filesystem, SetAttr, XattrReply};
use super::init::init_reply;
use super::reply::{DirWriter, ReplyBuf};
use super::request::{Operation, Request};
use super::resume::{Continuity, RESEND_BIT};
use super::session::{IoUringMode, SessionConfig, SessionStats};
use std::sync::atomic::Ordering::Relaxed;

/// Requests the kernel expects no reply to.
fn no_reply(op: u32) -> bool {
    matches!(
        op,
        opcode::FORGET | opcode::BATCH_FORGET | opcode::INTERRUPT | opcode::NOTIFY_REPLY
    )
}

/// Decodes one request exactly as read from `/dev/fuse`, calls `fs` and returns the reply to
/// send (`None` when the kernel expects none). The worker loop and the fuzz targets share it,
/// so what is fuzzed is what serves.
pub fn dispatch_one<'r, F: Filesystem + ?Sized>(
    fs: &F,
    buf: &[u8],
    reply: &'r mut ReplyBuf,
    stats: &SessionStats,
) -> Option<&'r [u8]> {
    dispatch_with(fs, buf, reply, stats, Continuity::none())
}

/// [`dispatch_one`] for a server that names its file handles by `continuity`.
pub fn dispatch_with<'r, F: Filesystem + ?Sized>(
    fs: &F,
    buf: &[u8],
    reply: &'r mut ReplyBuf,
    stats: &SessionStats,
    continuity: &Continuity,
) -> Option<&'r [u8]> {
    reply.reset();
    let req = match Request::parse(buf) {
        Ok(r) => r,
        Err(e) => {
            stats.malformed.fetch_add(1, Relaxed);
            log::warn!("malformed request: {e}");
            let h = abi::read_pod::<abi::InHeader>(buf)?;
            return (!no_reply(h.opcode)).then(|| reply.finish(h.unique, -e.errno()));
        }
    };
    let h = &req.header;
    stats.count(h.opcode);
    let ctx = Ctx {
        unique: h.unique,
        nodeid: h.nodeid,
        uid: h.uid,
        gid: h.gid,
        pid: h.pid,
        opcode: h.opcode,
    };
    let retry = (h.unique & RESEND_BIT != 0).then(|| Retry::of(&req.op));
    let mut result = dispatch(fs, &ctx, req.op, reply, stats, continuity);
    if let (Err(errno), Some(retry)) = (result, retry) {
        reply.reset();
        result = resent_fixup(fs, &ctx, retry, errno, reply, continuity);
    }
    match result {
        Ok(true) => Some(reply.finish(h.unique, 0)),
        Ok(false) => None,
        Err(errno) => {
            stats.errors.fetch_add(1, Relaxed);
            Some(reply.finish(h.unique, -errno))
        }
    }
}

/// Calls the filesystem and encodes its answer into `reply`. `Ok(false)`: send nothing.
fn dispatch<F: Filesystem + ?Sized>(
    fs: &F,
    ctx: &Ctx,
    op: Operation<'_>,
    reply: &mut ReplyBuf,
    stats: &SessionStats,
    cont: &Continuity,
) -> Result<bool, i32> {
    let node = ctx.nodeid;
    use Operation as O;
    match op {
        O::Init(init) => {
            // Only a restarted server meets INIT here: the one its predecessor read and left
            // unanswered, sent again. The answer is the same as then.
            let passthrough = cont.late_init.ok_or(libc::EIO)?;
            let config = SessionConfig {
                threads: 1,
                passthrough,
                io_uring: IoUringMode::Off,
            };
            reply.push(&init_reply(&init, &config).0);
        }
        O::Destroy => {
            fs.destroy();
        }
        O::NotifyReply => return Ok(false),
        O::Interrupt { unique } => {
            // Every handler is a bounded local syscall, so the interrupted request gets its
            // normal reply promptly; that reply is what completes it in the kernel.
            stats.interrupts.fetch_add(1, Relaxed);
            log::trace!("interrupt for request {unique}");
            return Ok(false);
        }
        O::Lookup { name } => reply.push(&fs.lookup(ctx, node, name)?.to_abi()),
        O::Forget { nlookup } => {
            fs.forget(node, nlookup);
            return Ok(false);
        }
        O::BatchForget { items } => {
            for one in items {
                fs.forget(one.nodeid, one.nlookup);
            }
            return Ok(false);
        }
        O::Getattr { fh } => {
            let a = fs.getattr(ctx, node, cont.file_fh_opt(fh))?;
            reply.push(&attr_out(&a));
        }
        O::Setattr(arg) => {
            let mut set = SetAttr::from_abi(&arg);
            set.fh = cont.file_fh_opt(set.fh);
            let a = fs.setattr(ctx, node, &set)?;
            reply.push(&attr_out(&a));
        }
        O::Readlink => {
            let out = reply.spare(libc::PATH_MAX as usize);
            let n = fs.readlink(ctx, node, out)?;
            reply.commit(n);
        }
        O::Symlink { name, target } => reply.push(&fs.symlink(ctx, node, name, target)?.to_abi()),
        O::Mknod { arg, name } => reply.push(
            &fs.mknod(ctx, node, name, arg.mode, arg.rdev, arg.umask)?
                .to_abi(),
        ),
        O::Mkdir { arg, name } => {
            reply.push(&fs.mkdir(ctx, node, name, arg.mode, arg.umask)?.to_abi())
        }
        O::Unlink { name } => fs.unlink(ctx, node, name)?,
        O::Rmdir { name } => fs.rmdir(ctx, node, name)?,
        O::Rename {
            newdir,
            flags,
            name,
            newname,
        } => fs.rename(ctx, node, name, newdir, newname, flags)?,
        O::Link { oldnodeid, name } => reply.push(&fs.link(ctx, oldnodeid, node, name)?.to_abi()),
        O::Open { flags, open_flags } => {
            let mut opened = fs.open(ctx, node, flags, open_flags)?;
            opened.fh = cont.tag(opened.fh);
            reply.push(&opened.to_abi())
        }
        O::Create { arg, name } => {
            let (entry, mut opened) = fs.create(
                ctx,
                node,
                name,
                arg.mode,
                arg.umask,
                arg.flags,
                arg.open_flags,
            )?;
            opened.fh = cont.tag(opened.fh);
            reply.push(&entry.to_abi());
            reply.push(&opened.to_abi());
        }
        O::Read(arg) => {
            let out = reply.spare(arg.size as usize);
            let n = fs.read(ctx, node, cont.file_fh(arg.fh), arg.offset, out)?;
            reply.commit(n);
        }
        O::Write { arg, data } => {
            let n = fs.write(
                ctx,
                node,
                cont.file_fh(arg.fh),
                arg.offset,
                data,
                arg.write_flags,
            )?;
            reply.push(&abi::WriteOut {
                size: n,
                padding: 0,
            });
        }
        O::Flush(arg) => fs.flush(ctx, node, cont.file_fh(arg.fh))?,
        O::Release(arg) => fs.release(ctx, node, cont.file_fh(arg.fh), arg.flags)?,
        O::Fsync { fh, datasync } => fs.fsync(ctx, node, cont.file_fh(fh), datasync)?,
        O::Statfs => reply.push(&fs.statfs(ctx, node)?),
        O::Setxattr { flags, name, value } => fs.setxattr(ctx, node, name, value, flags)?,
        O::Getxattr { size, name } => {
            xattr_reply(reply, size, |out| fs.getxattr(ctx, node, name, out))?
        }
        O::Listxattr { size } => xattr_reply(reply, size, |out| fs.listxattr(ctx, node, out))?,
        O::Removexattr { name } => fs.removexattr(ctx, node, name)?,
        O::Opendir { flags } => {
            let mut opened = fs.opendir(ctx, node, flags)?;
            opened.fh = cont.tag(opened.fh);
            reply.push(&opened.to_abi())
        }
        O::Readdir(arg) | O::Readdirplus(arg) => {
            let fh = cont.dir_fh(fs, ctx, node, arg.fh)?;
            let plus = ctx.opcode == opcode::READDIRPLUS;
            let mut w = DirWriter::new(reply.spare(arg.size as usize), plus);
            fs.readdir(ctx, node, fh, arg.offset, &mut w)?;
            let n = w.len();
            reply.commit(n);
        }
        O::Releasedir(arg) => {
            if let Some(fh) = cont.release_dir_fh(arg.fh) {
                fs.releasedir(ctx, node, fh)?
            }
        }
        O::Fsyncdir { fh, datasync } => fs.fsyncdir(ctx, node, cont.file_fh(fh), datasync)?,
        O::Access { mask } => fs.access(ctx, node, mask)?,
        O::Fallocate(arg) => fs.fallocate(
            ctx,
            node,
            cont.file_fh(arg.fh),
            arg.offset,
            arg.length,
            arg.mode,
        )?,
        O::Lseek(arg) => {
            let offset = fs.lseek(ctx, node, cont.file_fh(arg.fh), arg.offset, arg.whence)?;
            reply.push(&abi::LseekOut { offset });
        }
        O::CopyFileRange(arg) => {
            let n = fs.copy_file_range(
                ctx,
                node,
                cont.file_fh(arg.fh_in),
                arg.off_in,
                arg.nodeid_out,
                cont.file_fh(arg.fh_out),
                arg.off_out,
                arg.len,
            )?;
            reply.push(&abi::WriteOut {
                size: n.min(u32::MAX as u64) as u32,
                padding: 0,
            });
        }
        O::Unsupported(_) => return Err(libc::ENOSYS),
    }
    Ok(true)
}

/// What answering a resent request needs if its first attempt was already applied.
enum Retry {
    /// MKDIR, MKNOD, SYMLINK, LINK: the name in the request's directory.
    Made(Vec<u8>),
    /// CREATE: the name, and how to open what is there now.
    Created {
        name: Vec<u8>,
        flags: u32,
        open_flags: u32,
    },
    /// UNLINK, RMDIR, RENAME: gone already.
    Removed,
    Other,
}

impl Retry {
    fn of(op: &Operation<'_>) -> Retry {
        use Operation as O;
        match op {
            O::Mkdir { name, .. }
            | O::Mknod { name, .. }
            | O::Symlink { name, .. }
            | O::Link { name, .. } => Retry::Made(name.as_bytes().to_vec()),
            O::Create { arg, name } => Retry::Created {
                name: name.as_bytes().to_vec(),
                flags: arg.flags,
                open_flags: arg.open_flags,
            },
            O::Unlink { .. } | O::Rmdir { .. } | O::Rename { .. } => Retry::Removed,
            _ => Retry::Other,
        }
    }
}

/// A resent request (the server that read it first died) may have been applied before: a
/// name made then is EEXIST now, one removed or moved then is ENOENT now. Such an error is
/// answered from what the lower tree shows now (the entry that is there; success), so the
/// app sees its one call succeed. A name another process made or removed in that window is
/// answered the same way: the price of not knowing what the dead server did.
fn resent_fixup<F: Filesystem + ?Sized>(
    fs: &F,
    ctx: &Ctx,
    retry: Retry,
    errno: i32,
    reply: &mut ReplyBuf,
    cont: &Continuity,
) -> Result<bool, i32> {
    fn name(n: &[u8], errno: i32) -> Result<super::request::Name<'_>, i32> {
        super::request::Name::new(n).ok_or(errno)
    }
    match (retry, errno) {
        (Retry::Made(n), libc::EEXIST) => {
            cont.adopt(ctx, &n);
            let entry = fs.lookup(ctx, ctx.nodeid, name(&n, errno)?)?;
            reply.push(&entry.to_abi());
        }
        // Without O_EXCL a CREATE of an existing name is an open of it, refused (EACCES) if
        // the dead server made the file but did not get to tag its creator.
        (
            Retry::Created {
                name: n,
                flags,
                open_flags,
            },
            libc::EEXIST | libc::EACCES,
        ) => {
            if !cont.adopt(ctx, &n) && errno == libc::EACCES {
                return Err(errno);
            }
            let entry = fs.lookup(ctx, ctx.nodeid, name(&n, errno)?)?;
            let flags = flags & !((libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC) as u32);
            let mut opened = fs.open(ctx, entry.nodeid, flags, open_flags)?;
            opened.fh = cont.tag(opened.fh);
            reply.push(&entry.to_abi());
            reply.push(&opened.to_abi());
        }
        (Retry::Removed, libc::ENOENT) => {}
        _ => return Err(errno),
    }
    log::info!(
        "resent request {} (opcode {}) answered from the lower tree as it is now",
        ctx.unique,
        ctx.opcode
    );
    Ok(true)
}

fn attr_out(a: &super::filesystem::AttrReply) -> abi::AttrOut {
    abi::AttrOut {
        attr_valid: a.ttl.as_secs(),
        attr_valid_nsec: a.ttl.subsec_nanos(),
        dummy: 0,
        attr: a.attr,
    }
}

fn xattr_reply(
    reply: &mut ReplyBuf,
    size: u32,
    call: impl FnOnce(&mut [u8]) -> super::filesystem::Result<XattrReply>,
) -> Result<(), i32> {
    match call(reply.spare(size as usize))? {
        XattrReply::Size(n) => reply.push(&abi::GetxattrOut {
            size: n,
            padding: 0,
        }),
        XattrReply::Data(n) => reply.commit(n),
    }
    Ok(())
}
