//! Opening files and their data: passthrough registration for files without location, userspace
//! I/O (with location redaction, see `redaction.rs`) for files with location or when it is off.

use super::access::Subject;
use super::creds::{AsWriter, Creds};
use super::events::{text as events_text, FileEvent};
use super::files::{FileTable, OpenFile};
use super::lower::{self, cvt, errno, io, Result};
use super::releases;
use super::remove::Existing;
use super::StorageView;
use crate::fuse::abi::{self, fopen};
use crate::fuse::{Ctx, Entry, Filesystem, KernelHandle, Name, Opened};
use crate::policy::{self, Decision, Op};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// `fuse_open_in.open_flags`: the opener may not keep setuid/setgid (an O_TRUNC open by a
/// caller without CAP_FSETID, HANDLE_KILLPRIV_V2).
const OPEN_KILL_SUIDGID: u32 = 1 << 0;

/// How an allowed open is served.
enum Path {
    Passthrough,
    Userspace,
}

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
    /// Whether reads through it must be redacted.
    pub(super) fn is_redacted(&self) -> bool {
        matches!(self, IoFd::Shared(f) if matches!(&**f, OpenFile::Userspace { redact: Some(_), .. }))
    }

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
        // The kernel keeps the registered file for as long as the id lives, and reopens it
        // with the daemon's credentials at each passthrough open, so it must be O_PATH: a
        // kept write-mode file would hold the lower mount writable (`remount,ro` fails with
        // EBUSY) long after the app closed. It is opened by the node's handle, which names
        // the inode (and its generation), not by name: half the cost of reopening a given fd
        // (CREATE's, a checked open's) through its /proc magic link, which is the fallback
        // when the handle no longer opens (the file was deleted meanwhile).
        let path_fd = match (self.open_node(node, libc::O_PATH), fd) {
            (Ok(path_fd), _) => path_fd,
            (Err(_), Some(fd)) => io(lower::reopen(fd, libc::O_PATH))?,
            (Err(e), None) => return Err(e),
        };
        // Registered as the writer: passthrough writes keep these credentials.
        let id = {
            let _writer = io(AsWriter::new())?;
            io(kernel.backing_open(path_fd.as_fd()))?
        };
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

    /// Answers an allowed open of `node`: passthrough when the file carries no location,
    /// else a userspace fd (zeroing the location for a redacted reader). `fd` is an
    /// already-open lower fd (from CREATE, or a checked open), reused instead of reopening;
    /// `st` its attributes if the caller has just read them.
    pub(super) fn finish_open(
        &self,
        uid: u32,
        node: u64,
        flags: u32,
        decision: Decision,
        fd: Option<OwnedFd>,
        st: Option<&libc::stat>,
    ) -> Result<Opened> {
        let redacted = decision == Decision::AllowRedacted;
        let writes =
            flags as i32 & libc::O_ACCMODE != libc::O_RDONLY || flags as i32 & libc::O_TRUNC != 0;
        let writer = writes.then_some(uid);
        if writes {
            // Whatever was cached for this inode is about to be stale.
            self.forget_location(node);
        }
        // Decided by the file version's content, the same for every caller.
        let located = match self.locate(node, fd.as_ref().map(|f| f.as_fd()), st) {
            Ok(l) => Some(l),
            // Unknown location: never the original bytes to a redacted reader.
            Err(e) if redacted => return Err(e),
            Err(_) => None,
        };
        let has_location = located.as_ref().is_some_and(|l| l.has_location());
        // A redacted reader reads zeros where the file has location; writing through that
        // view would write back what it never saw, so it may open the file read-only only
        // (write-only opens are not redacted: they read nothing).
        if redacted && has_location && writes {
            return Err(libc::EACCES);
        }
        let path = self.claim_path(node, has_location, redacted && has_location)?;
        let opened = match path {
            Path::Passthrough => self.open_passthrough(node, fd, writer),
            Path::Userspace => {
                // Every redacted userspace open zeroes what the file has *now* at each read,
                // even if it had no location at open (another open may write some).
                let redact = located
                    .filter(|_| redacted)
                    .map(super::redaction::RedactedView::new);
                self.open_userspace(node, flags, fd, redact, has_location, writer)
            }
        };
        if opened.is_err() {
            self.unclaim(node, &path);
        }
        opened
    }

    /// Chooses the data path and counts the open in one step under the node's lock, so that
    /// no mix of opens can break the kernel's per-inode I/O mode rule (a non-passthrough open
    /// while the inode is in passthrough mode is an EIO from the app's `open`).
    ///
    /// A file without location goes through passthrough for everyone (userspace only while
    /// userspace opens of it remain, or with passthrough off). A file with location is served
    /// in userspace for everyone, so redacted and plain opens mix freely. One case is left:
    /// the file gained location (a passthrough write) while passthrough opens of it still
    /// exist. Then plain opens join them in passthrough, and a redacted open is EBUSY until
    /// they are closed: userspace would be EIO, passthrough the original bytes. As the kernel
    /// sends RELEASE after `close()` has returned, that open first waits a moment for them.
    fn claim_path(&self, node: u64, has_location: bool, redacted: bool) -> Result<Path> {
        match self.try_claim_path(node, has_location, redacted) {
            Err(libc::EBUSY)
                if self.releases.wait_until(releases::RELEASE_GRACE, || {
                    self.nodes.with(node, |n| n.passthrough_opens) == Some(0)
                }) =>
            {
                self.try_claim_path(node, has_location, redacted)
            }
            claimed => claimed,
        }
    }

    fn try_claim_path(&self, node: u64, has_location: bool, redacted: bool) -> Result<Path> {
        let passthrough = self.passthrough_active();
        self.nodes
            .with(node, |n| {
                let pt_mode = passthrough && n.passthrough_opens > 0;
                if pt_mode && redacted {
                    Err(libc::EBUSY)
                } else if pt_mode || (passthrough && !has_location && n.userspace_opens == 0) {
                    n.passthrough_opens += 1;
                    Ok(Path::Passthrough)
                } else {
                    n.userspace_opens += 1;
                    Ok(Path::Userspace)
                }
            })
            .ok_or(libc::ENOENT)?
    }

    fn unclaim(&self, node: u64, path: &Path) {
        self.nodes.with(node, |n| match path {
            Path::Passthrough => n.passthrough_opens = n.passthrough_opens.saturating_sub(1),
            Path::Userspace => n.userspace_opens = n.userspace_opens.saturating_sub(1),
        });
    }

    fn open_passthrough(
        &self,
        node: u64,
        fd: Option<OwnedFd>,
        writer: Option<u32>,
    ) -> Result<Opened> {
        let id = self.backing_for(node, fd.as_ref().map(|f| f.as_fd()))?;
        let fh = self.files.insert(OpenFile::Passthrough { node, writer });
        self.stats.passthrough_opens.fetch_add(1, Relaxed);
        // NOFLUSH: close() of a local file needs no round trip to us.
        Ok(Opened {
            fh,
            flags: fopen::NOFLUSH,
            backing_id: Some(id),
        })
    }

    fn open_userspace(
        &self,
        node: u64,
        flags: u32,
        fd: Option<OwnedFd>,
        redact: Option<super::redaction::RedactedView>,
        has_location: bool,
        writer: Option<u32>,
    ) -> Result<Opened> {
        // Each holds a lower fd: bounded, so that apps cannot exhaust the daemon's fds.
        if !self
            .files
            .reserve_userspace(FileTable::userspace_budget(self.config.max_userspace_opens))
        {
            self.stats.userspace_refused.fetch_add(1, Relaxed);
            return Err(libc::ENFILE);
        }
        let fd = match fd {
            Some(fd) => Ok(fd),
            None => self.open_node(node, userspace_flags(flags)),
        };
        let fd = match fd {
            Ok(fd) => fd,
            Err(e) => {
                self.files.unreserve_userspace();
                return Err(e);
            }
        };
        if redact.is_some() && has_location {
            self.redaction.stats.opened();
        }
        let fh = self.files.insert(OpenFile::Userspace {
            node,
            fd,
            writer,
            redact,
        });
        self.stats.userspace_opens.fetch_add(1, Relaxed);
        let mut open_flags = fopen::NOFLUSH;
        // Uncached I/O never takes the inode's I/O mode, so it cannot collide with later
        // passthrough opens; and neither a redacted view nor the original bytes of a file
        // with location may land in the shared page cache, where the other kind of reader
        // would find them (mmap aside, see README "Location redaction").
        if has_location || self.passthrough_active() {
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
        // Only regular files are read, written, synced or truncated through a node: opening
        // anything else for I/O could block the worker for good (a fifo waits for its peer)
        // or act on a device. The kernel never asks that of a special file; a bad request can.
        if flags & libc::O_PATH == 0 && self.node_kind(node)? != libc::S_IFREG {
            return Err(libc::EINVAL);
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
        if matches!(&*file, OpenFile::Passthrough { .. }) {
            self.releases.released();
        }
        if matches!(&*file, OpenFile::Userspace { .. }) {
            self.files.unreserve_userspace();
        }
        if let Some(uid) = file.writer() {
            // Passthrough writes never reach us: the next open reads the location again.
            self.forget_location(node);
            self.emit(|| {
                let st = io(lower::stat_fd(self.open_node(node, libc::O_PATH)?.as_fd()))?;
                Ok(FileEvent::ClosedAfterWrite {
                    path: events_text(&self.path_of(node)?),
                    uid,
                    size: st.st_size as u64,
                })
            });
        }
    }

    /// Opens an existing node for a POSIX caller: reached through directories it may search,
    /// and reopened as the caller, so that the kernel checks the file's mode for it.
    pub(super) fn open_as(&self, creds: &Creds, node: u64, flags: i32) -> Result<OwnedFd> {
        let parent = self.nodes.with(node, |n| n.parent()).ok_or(libc::ENOENT)?;
        self.posix_may_reach(creds, parent)?;
        let path_fd = self.open_node(node, libc::O_PATH)?;
        let _as = self.act_as(Some(creds))?;
        io(lower::reopen(path_fd.as_fd(), flags | libc::O_NOCTTY))
    }
}

pub(super) fn open(
    view: &StorageView,
    ctx: &Ctx,
    node: u64,
    flags: u32,
    open_flags: u32,
) -> Result<Opened> {
    match view.node_kind(node)? {
        libc::S_IFREG => {}
        libc::S_IFDIR => return Err(libc::EISDIR),
        // The kernel opens special files and follows symlinks itself, never through OPEN;
        // serving one could block the worker (a fifo waits for its peer).
        _ => return Err(libc::EINVAL),
    }
    let f = flags as i32;
    let acc = f & libc::O_ACCMODE;
    let truncate = f & libc::O_TRUNC != 0;
    let wants_write = acc != libc::O_RDONLY || truncate;
    let mut decision = Decision::Allow;
    if acc != libc::O_WRONLY {
        decision = view.check(ctx.uid, Op::Read, Subject::Node(node))?;
    }
    if wants_write {
        view.check(ctx.uid, Op::Write, Subject::Node(node))?;
    }
    // An open that writes is made for real before it is answered: the kernel turns any
    // failure of its own backing-file open into EIO, where the app must see EROFS, ETXTBSY or
    // EACCES; and O_TRUNC (ATOMIC_O_TRUNC) is ours to do.
    let lower_flags = userspace_flags(flags);
    let fd = match view.posix_creds(ctx) {
        Some(creds) => Some(view.open_as(&creds, node, lower_flags)?),
        None if wants_write => Some(view.open_node(node, lower_flags)?),
        None => None,
    };
    if truncate && open_flags & OPEN_KILL_SUIDGID != 0 {
        if let Some(fd) = &fd {
            kill_suidgid(fd.as_raw_fd())?;
        }
    }
    view.finish_open(ctx.uid, node, flags, decision, fd, None)
}

#[allow(clippy::too_many_arguments)] // the FUSE request has that many fields
pub(super) fn create(
    view: &StorageView,
    ctx: &Ctx,
    parent: u64,
    name: Name<'_>,
    mode: u32,
    _umask: u32,
    flags: u32,
    open_flags: u32,
) -> Result<(Entry, Opened)> {
    let name = name.as_bytes();
    let naming = view.naming();
    let dir = view.dir_fd(parent)?;
    let cname = io(lower::cname(name))?;
    let lower_flags = userspace_flags(flags);
    let creds = view.posix_creds(ctx);
    // The kernel sends CREATE when its cache had no such name; the file may still exist.
    // Then (without O_EXCL) this is an open of that file, decided like any other open, unless
    // the caller may not even see it: then it is judged as a creation, so that the answer
    // never tells whether a hidden name exists.
    // An exclusive create the rules allow needs no look first: the lower create answers
    // EEXIST for an existing name, visible or hidden, as the look would have led to.
    let allowed_new = flags as i32 & libc::O_EXCL != 0
        && view.check_new(ctx.uid, Op::Create, parent, name).is_ok();
    let existing = if allowed_new {
        None
    } else {
        match view.existing_child(ctx.uid, dir.as_fd(), name) {
            Ok(child) if view.may_see(ctx.uid, parent, name, &child)? => Some(child),
            Ok(_) | Err(libc::ENOENT) => None,
            Err(e) => return Err(e),
        }
    };
    let (fd, created, decision) = match existing {
        Some(_) if flags as i32 & libc::O_EXCL != 0 => return Err(libc::EEXIST),
        Some(child) => {
            if child.st.st_mode & libc::S_IFMT != libc::S_IFREG {
                return Err(if child.is_dir() {
                    libc::EISDIR
                } else {
                    libc::EEXIST
                });
            }
            let acc = flags as i32 & libc::O_ACCMODE;
            let mut decision = Decision::Allow;
            if acc != libc::O_WRONLY {
                decision = view.check_existing(ctx.uid, Op::Read, parent, name, &child)?;
            }
            view.check_existing(ctx.uid, Op::Write, parent, name, &child)?;
            let fd = {
                let _as = view.act_as(creds.as_ref())?;
                io(lower::open_at(dir.as_fd(), &cname, lower_flags, 0))?
            };
            if flags as i32 & libc::O_TRUNC != 0 && open_flags & OPEN_KILL_SUIDGID != 0 {
                kill_suidgid(fd.as_raw_fd())?;
            }
            (fd, false, decision)
        }
        None => {
            if !allowed_new {
                view.check_new(ctx.uid, Op::Create, parent, name)?;
            }
            let fd = {
                let _as = view.act_as(creds.as_ref())?;
                io(lower::open_at(
                    dir.as_fd(),
                    &cname,
                    lower_flags | libc::O_CREAT | libc::O_EXCL,
                    view.creation_mode(ctx.uid, mode),
                ))?
            };
            (fd, true, Decision::Allow)
        }
    };
    if created {
        view.fix_mode(fd.as_fd(), mode)?;
        view.record_creator(ctx.uid, fd.as_fd());
        view.after_name_change(parent, name);
        view.emit(|| {
            Ok(FileEvent::Created {
                path: view.child_path_text(parent, name)?,
                uid: ctx.uid,
            })
        });
    }
    // The attributes after every change above: the reply is the truth the kernel caches.
    let st = io(lower::stat_fd(fd.as_fd()))?;
    let parent_facts = view.dir_facts(parent)?;
    let facts = view.child_facts(&parent_facts, name, false);
    let entry = view.make_entry(
        parent,
        name,
        io(lower::handle_of(fd.as_fd()))?,
        &st,
        policy::caller_dependent(&facts.target()),
    )?;
    // The name is made and known: the open itself needs no hold on moves (and may wait for a
    // release, which must not keep a directory's move waiting).
    drop(naming);
    match view.finish_open(ctx.uid, entry.nodeid, flags, decision, Some(fd), Some(&st)) {
        Ok(opened) => Ok((entry, opened)),
        Err(e) => {
            // The kernel never saw this entry: undo its lookup count.
            view.forget(entry.nodeid, 1);
            Err(e)
        }
    }
}

impl StorageView {
    /// Whether `uid` may look `name` up: what it may not see, it may not learn exists.
    fn may_see(&self, uid: u32, parent: u64, name: &[u8], child: &Existing) -> Result<bool> {
        if !self.judged(uid) {
            return Ok(true);
        }
        let facts = self.facts(Subject::Child {
            parent,
            name,
            is_dir: child.is_dir(),
            owner: child.owner.as_deref(),
        })?;
        let decision = self
            .policy
            .snapshot()
            .decide(uid, Op::Lookup, &facts.target());
        Ok(!matches!(decision, Decision::Deny(_)))
    }
}

pub(super) fn read(
    view: &StorageView,
    ctx: &Ctx,
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
    match &fd {
        IoFd::Shared(file) => {
            if let OpenFile::Userspace {
                fd: lower_fd,
                redact: Some(redact),
                ..
            } = &**file
            {
                view.redact_read(redact, lower_fd.as_fd(), offset, &mut out[..n as usize])?;
            }
        }
        // A handle of no open file of ours: one a previous server opened (a restart). What
        // that open was is gone, so the reader is judged again, and gets zeros where the file
        // has location if its read is redacted.
        IoFd::Own(own) => {
            view.redact_unknown_open(ctx.uid, node, own.as_fd(), offset, &mut out[..n as usize])?
        }
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
    let _writer = io(AsWriter::new())?;
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
    if done > 0 {
        view.forget_location(node);
    }
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
    let _writer = io(AsWriter::new())?;
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
    ctx: &Ctx,
    node_in: u64,
    fh_in: u64,
    off_in: u64,
    node_out: u64,
    fh_out: u64,
    off_out: u64,
    len: u64,
) -> Result<u64> {
    let fin = view.io_fd(node_in, fh_in, libc::O_RDONLY)?;
    // A handle this server never opened (a previous server's) is judged again.
    let stale_redacted = matches!(fin, IoFd::Own(_))
        && view.check(ctx.uid, Op::Read, Subject::Node(node_in))? == Decision::AllowRedacted;
    if fin.is_redacted() || stale_redacted {
        // The lower copy would carry the original bytes: EOPNOTSUPP makes the kernel copy
        // through reads of this open (splice), which are redacted. (Not ENOSYS: that would
        // turn copy_file_range off for the whole mount.)
        return Err(libc::EOPNOTSUPP);
    }
    let fout = view.io_fd(node_out, fh_out, libc::O_WRONLY)?;
    let mut oin = off_in as libc::loff_t;
    let mut oout = off_out as libc::loff_t;
    let _writer = io(AsWriter::new())?;
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
