//! The FUSE operations of the storage view. Each one: ask the policy, do the lower syscalls
//! (all relative to fds we hold, never following a symlink), update the node table, answer.

use super::access::{Facts, Subject, OWNER_XATTR};
use super::dirstream::DirStream;
use super::files::OpenFile;
use super::lower::{self, cvt, errno, proc_path};
use super::StorageView;
use crate::fuse::abi::{self, fopen};
use crate::fuse::reply::attr_from_stat;
use crate::fuse::{
    AttrReply, Ctx, DirWriter, Entry, Filesystem, KernelHandle, Name, Negotiated, Opened, SetAttr,
    TimeSpec, XattrReply,
};
use crate::policy::{self, Decision, Op};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

type Result<T> = std::result::Result<T, i32>;

fn io<T>(r: std::io::Result<T>) -> Result<T> {
    r.map_err(|e| errno(&e))
}

fn is_dir_mode(mode: u32) -> bool {
    mode & libc::S_IFMT == libc::S_IFDIR
}

/// Whether a relative symlink target, placed in a directory `depth` levels below the root,
/// stays inside the root when followed. Absolute targets never do (the upper and lower
/// namespaces differ, and "/" is the host's root).
pub fn symlink_stays_inside(depth: usize, target: &[u8]) -> bool {
    if target.is_empty() || target[0] == b'/' {
        return false;
    }
    let mut d = depth as isize;
    for comp in target.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                d -= 1;
                if d < 0 {
                    return false;
                }
            }
            _ => d += 1,
        }
    }
    true
}

impl StorageView {
    fn ttl(&self, caller_dependent: bool) -> Duration {
        if caller_dependent {
            Duration::ZERO
        } else {
            self.config.cache_ttl
        }
    }

    fn open_node(&self, id: u64, flags: i32) -> Result<OwnedFd> {
        let handle = self.nodes.with(id, |n| n.handle).ok_or(libc::ENOENT)?;
        io(self.lower.open_handle(&handle, flags))
    }

    fn node_kind(&self, id: u64) -> Result<u32> {
        self.nodes.with(id, |n| n.kind).ok_or(libc::ENOENT)
    }

    /// Registers the child `name` of `parent` (open as `fd`, `O_PATH` or not) and builds the
    /// entry the kernel caches. Counts one lookup.
    fn make_entry(
        &self,
        parent: u64,
        name: &[u8],
        fd: BorrowedFd<'_>,
        st: &libc::stat,
        caller_dependent: bool,
    ) -> Result<Entry> {
        let handle = io(lower::handle_of(fd))?;
        let reg = self.nodes.register(
            parent,
            name,
            handle,
            st.st_ino,
            st.st_mode & libc::S_IFMT,
            caller_dependent,
        );
        let ttl = self.ttl(reg.caller_dependent);
        Ok(Entry {
            nodeid: reg.nodeid,
            generation: 0,
            attr: attr_from_stat(st),
            entry_ttl: ttl,
            attr_ttl: ttl,
        })
    }

    /// Looks up `name` in the open directory `dir` for `uid`, applying the policy's lookup
    /// rules. `parent_facts` are the facts of the directory's own path (reused in listings).
    fn lookup_in(
        &self,
        uid: u32,
        parent: u64,
        dir: BorrowedFd<'_>,
        name: &[u8],
        parent_facts: &Facts,
    ) -> Result<Entry> {
        let cname = io(lower::cname(name))?;
        let fd = io(lower::open_at(dir, &cname, libc::O_PATH, 0))?;
        let st = io(lower::stat_fd(fd.as_fd()))?;
        let facts = self.child_facts(parent_facts, name, is_dir_mode(st.st_mode));
        let caller_dependent = policy::caller_dependent(&facts.target());
        if !policy::bypasses(uid) {
            let snapshot = self.policy.snapshot();
            let mut decision = snapshot.decide(uid, Op::Lookup, &facts.target());
            if matches!(decision, Decision::Deny(_))
                && matches!(st.st_mode & libc::S_IFMT, libc::S_IFREG | libc::S_IFDIR)
            {
                // Hidden files are visible to their owner: only now is the owner worth reading.
                let mut with_owner = facts;
                with_owner.owner = self.read_owner_at(dir, name);
                if with_owner.owner.is_some() {
                    decision = snapshot.decide(uid, Op::Lookup, &with_owner.target());
                }
                if let Decision::Deny(e) = decision {
                    self.deny(uid, Op::Lookup, &with_owner, e);
                    return Err(e);
                }
            } else if let Decision::Deny(e) = decision {
                self.deny(uid, Op::Lookup, &facts, e);
                return Err(e);
            }
        }
        self.make_entry(parent, name, fd.as_fd(), &st, caller_dependent)
    }

    /// Facts of a directory node, computed once per call and shared by its children.
    fn dir_facts(&self, id: u64) -> Result<Facts> {
        self.facts(Subject::Node(id))
    }

    /// Facts of an existing child (stat, and the owner for regular files when the caller is
    /// subject to the policy), for unlink/rmdir/rename decisions.
    fn existing_child(
        &self,
        uid: u32,
        parent: u64,
        dir: BorrowedFd<'_>,
        name: &[u8],
    ) -> Result<(libc::stat, Option<Box<[u8]>>)> {
        let cname = io(lower::cname(name))?;
        let st = io(lower::stat_at(dir, &cname))?;
        let kind = st.st_mode & libc::S_IFMT;
        let owner = if !policy::bypasses(uid) && (kind == libc::S_IFREG || kind == libc::S_IFDIR) {
            self.read_owner_at(dir, name)
        } else {
            None
        };
        let _ = parent;
        Ok((st, owner))
    }

    fn check_child(
        &self,
        uid: u32,
        op: Op,
        parent: u64,
        name: &[u8],
        is_dir: bool,
        owner: Option<&[u8]>,
    ) -> Result<Decision> {
        self.check(
            uid,
            op,
            Subject::Child {
                parent,
                name,
                is_dir,
                owner,
            },
        )
    }

    /// chmod through /proc so that it works on O_PATH fds.
    fn chmod_fd(&self, fd: BorrowedFd<'_>, mode: u32) -> Result<()> {
        let p = proc_path(fd.as_raw_fd());
        // SAFETY: p is a NUL-terminated path that lives across the call.
        io(cvt(unsafe { libc::chmod(p.as_ptr(), mode & 0o7777) }).map(|_| ()))
    }

    /// The kernel already applied the caller's umask; undo the daemon's own where it bit.
    fn fix_mode(&self, fd: BorrowedFd<'_>, mode: u32) -> Result<()> {
        let wanted = mode & 0o7777;
        if wanted & self.umask != 0 {
            self.chmod_fd(fd, wanted)?;
        }
        Ok(())
    }

    /// Records the creator of a new regular file (apps only: root-made files have no owner).
    fn record_creator(&self, uid: u32, fd: BorrowedFd<'_>) {
        if !policy::bypasses(uid) {
            let tag = self.policy.snapshot().owner_tag(uid);
            self.record_owner(fd, &tag);
        }
    }

    /// The one backing id of this inode, registering it on first use.
    fn backing_for(&self, node: u64, fd: Option<BorrowedFd<'_>>) -> Result<i32> {
        let kernel = self.kernel().ok_or(libc::EIO)?;
        if let Some(id) = self
            .nodes
            .with(node, |n| n.backing_id)
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
        let winner = self.nodes.with(node, |n| match n.backing_id {
            Some(existing) => Err(existing),
            None => {
                n.backing_id = Some(id);
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

    fn close_backing(&self, kernel: &KernelHandle, id: i32) {
        match kernel.backing_close(id) {
            Ok(()) => {
                self.stats.backing_released.fetch_add(1, Relaxed);
            }
            Err(e) => log::warn!("closing backing id {id}: {e}"),
        }
    }

    /// Answers an allowed open of `node`: passthrough when possible, else a userspace fd.
    /// `fd` is an already-open lower fd (from CREATE), reused instead of reopening.
    fn finish_open(
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
    fn io_fd(&self, node: u64, fh: u64, flags: i32) -> Result<IoFd> {
        if let Some(file) = self.files.get(fh) {
            if let OpenFile::Userspace { node: n, .. } = &*file {
                if *n == node {
                    return Ok(IoFd::Shared(file));
                }
            }
        }
        Ok(IoFd::Own(self.open_node(node, flags)?))
    }

    fn release_file(&self, fh: u64) {
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

    fn after_name_change(&self, dir: u64, name: &[u8]) {
        if name.eq_ignore_ascii_case(b".nomedia") {
            self.nomedia_changed(dir);
        }
    }

    /// Re-reads where a renamed inode now lives and moves its node there.
    fn moved(&self, newparent: u64, dir: BorrowedFd<'_>, newname: &[u8]) {
        let Ok(cname) = lower::cname(newname) else {
            return;
        };
        let Ok(st) = lower::stat_at(dir, &cname) else {
            return;
        };
        if let Some(id) = self.nodes.find_ino(st.st_ino) {
            self.nodes.with(id, |n| {
                n.parent = newparent;
                n.name = newname.into();
                n.decision = None;
            });
        }
        if is_dir_mode(st.st_mode) {
            // Every path below changed: cached decisions of descendants are stale.
            self.nodes.clear_decisions();
        }
    }

    fn xattr_path(&self, node: u64) -> Result<(OwnedFd, std::ffi::CString)> {
        let fd = self.open_node(node, libc::O_PATH)?;
        let p = proc_path(fd.as_raw_fd());
        Ok((fd, p))
    }
}

/// Lower open flags for a userspace-served file: what the app asked, minus what only made
/// sense at the FUSE level. Write-only becomes read-write so the page cache can fill partial
/// pages; O_APPEND is dropped because the kernel already computed the offset.
fn userspace_flags(flags: u32) -> i32 {
    let f = flags as i32;
    let mut out =
        f & !(libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY | libc::O_DIRECT | libc::O_APPEND);
    if out & libc::O_ACCMODE == libc::O_WRONLY {
        out = (out & !libc::O_ACCMODE) | libc::O_RDWR;
    }
    out
}

enum IoFd {
    Shared(Arc<OpenFile>),
    Own(OwnedFd),
}

impl IoFd {
    fn raw(&self) -> i32 {
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
fn kill_suidgid(fd: i32) -> Result<()> {
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

fn timespec(t: Option<TimeSpec>) -> libc::timespec {
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
            tv_sec: secs as libc::time_t,
            tv_nsec: nanos as _,
        },
    }
}

fn dtype_of_mode(mode: u32) -> u32 {
    (mode & libc::S_IFMT) >> 12
}

impl Filesystem for StorageView {
    fn init(&self, negotiated: &Negotiated, kernel: Arc<KernelHandle>) {
        self.start(negotiated, kernel);
    }

    fn destroy(&self) {}

    fn lookup(&self, ctx: &Ctx, parent: u64, name: Name<'_>) -> Result<Entry> {
        if name.is_dot_or_dotdot() {
            return Err(libc::ENOENT);
        }
        let dir = self.open_node(parent, libc::O_PATH)?;
        let parent_facts = self.dir_facts(parent)?;
        self.lookup_in(ctx.uid, parent, dir.as_fd(), name.as_bytes(), &parent_facts)
    }

    fn forget(&self, node: u64, nlookup: u64) {
        if let Some(gone) = self.nodes.forget(node, nlookup) {
            if let (Some(id), Some(k)) = (gone.backing_id, self.kernel()) {
                self.close_backing(k, id);
            }
        }
    }

    fn getattr(&self, ctx: &Ctx, node: u64, fh: Option<u64>) -> Result<AttrReply> {
        let caller_dependent = self
            .nodes
            .with(node, |n| n.caller_dependent)
            .ok_or(libc::ENOENT)?;
        if caller_dependent {
            self.check(ctx.uid, Op::Lookup, Subject::Node(node))?;
        }
        let fd = self.io_fd(node, fh.unwrap_or(0), libc::O_PATH)?;
        let st = match &fd {
            IoFd::Own(fd) => io(lower::stat_fd(fd.as_fd()))?,
            IoFd::Shared(_) => {
                // SAFETY: raw() is an fd kept open by the Arc we hold.
                io(lower::stat_fd(unsafe { BorrowedFd::borrow_raw(fd.raw()) }))?
            }
        };
        Ok(AttrReply {
            attr: attr_from_stat(&st),
            ttl: self.ttl(caller_dependent),
        })
    }

    fn setattr(&self, ctx: &Ctx, node: u64, set: &SetAttr) -> Result<AttrReply> {
        if (set.uid.is_some() || set.gid.is_some()) && ctx.uid != 0 {
            return Err(libc::EPERM);
        }
        self.check(ctx.uid, Op::Write, Subject::Node(node))?;
        let fd = self.open_node(node, libc::O_PATH)?;
        if let Some(mode) = set.mode {
            self.chmod_fd(fd.as_fd(), mode)?;
        }
        if set.uid.is_some() || set.gid.is_some() {
            let uid = set.uid.unwrap_or(u32::MAX);
            let gid = set.gid.unwrap_or(u32::MAX);
            // SAFETY: "" with AT_EMPTY_PATH acts on fd itself; -1 leaves an id unchanged.
            io(cvt(unsafe {
                libc::fchownat(
                    fd.as_raw_fd(),
                    c"".as_ptr(),
                    uid,
                    gid,
                    libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
                )
            }))?;
        }
        if let Some(size) = set.size {
            if self.node_kind(node)? == libc::S_IFDIR {
                return Err(libc::EISDIR);
            }
            let wfd = self.io_fd(node, set.fh.unwrap_or(0), libc::O_WRONLY)?;
            // SAFETY: ftruncate on an fd that is open (kept alive by wfd).
            io(cvt(unsafe {
                libc::ftruncate(wfd.raw(), size as libc::off_t)
            }))?;
            if set.kill_suidgid {
                kill_suidgid(wfd.raw())?;
            }
        }
        if set.atime.is_some() || set.mtime.is_some() {
            let times = [timespec(set.atime), timespec(set.mtime)];
            // SAFETY: times is an array of two timespecs; "" + AT_EMPTY_PATH targets fd.
            io(cvt(unsafe {
                libc::utimensat(
                    fd.as_raw_fd(),
                    c"".as_ptr(),
                    times.as_ptr(),
                    libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
                )
            }))?;
        }
        let st = io(lower::stat_fd(fd.as_fd()))?;
        let cd = self
            .nodes
            .with(node, |n| n.caller_dependent)
            .unwrap_or(true);
        Ok(AttrReply {
            attr: attr_from_stat(&st),
            ttl: self.ttl(cd),
        })
    }

    fn readlink(&self, ctx: &Ctx, node: u64, out: &mut [u8]) -> Result<usize> {
        self.check(ctx.uid, Op::Lookup, Subject::Node(node))?;
        let fd = self.open_node(node, libc::O_PATH | libc::O_NOFOLLOW)?;
        // SAFETY: readlinkat writes at most out.len() bytes into out; "" reads fd's own link.
        let n = unsafe {
            libc::readlinkat(
                fd.as_raw_fd(),
                c"".as_ptr(),
                out.as_mut_ptr().cast(),
                out.len(),
            )
        };
        if n < 0 {
            return Err(errno(&std::io::Error::last_os_error()));
        }
        let n = n as usize;
        let depth = self
            .path_of(node)?
            .split(|&b| b == b'/')
            .count()
            .saturating_sub(1);
        if !symlink_stays_inside(depth, &out[..n]) {
            log::info!(
                "refusing to follow a symlink that leaves the storage root (uid {})",
                ctx.uid
            );
            return Err(libc::EACCES);
        }
        Ok(n)
    }

    fn symlink(&self, ctx: &Ctx, parent: u64, name: Name<'_>, target: &[u8]) -> Result<Entry> {
        let name = name.as_bytes();
        let parent_facts = self.dir_facts(parent)?;
        let depth = if parent_facts.path.is_empty() {
            0
        } else {
            parent_facts.path.split(|&b| b == b'/').count()
        };
        if !symlink_stays_inside(depth, target) {
            return Err(libc::EPERM);
        }
        self.check_child(ctx.uid, Op::Create, parent, name, false, None)?;
        let dir = self.open_node(parent, libc::O_PATH)?;
        let cname = io(lower::cname(name))?;
        let ctarget = io(lower::cname(target))?;
        // SAFETY: both strings are NUL-terminated and live across the call.
        io(cvt(unsafe {
            libc::symlinkat(ctarget.as_ptr(), dir.as_raw_fd(), cname.as_ptr())
        }))?;
        self.lookup_in(0, parent, dir.as_fd(), name, &parent_facts)
    }

    fn mknod(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: Name<'_>,
        mode: u32,
        _rdev: u32,
        _umask: u32,
    ) -> Result<Entry> {
        let kind = mode & libc::S_IFMT;
        if kind != libc::S_IFREG && kind != libc::S_IFIFO {
            return Err(libc::EPERM);
        }
        let name = name.as_bytes();
        self.check_child(ctx.uid, Op::Create, parent, name, false, None)?;
        let dir = self.open_node(parent, libc::O_PATH)?;
        let cname = io(lower::cname(name))?;
        // SAFETY: cname is NUL-terminated; regular files and fifos need no device number.
        io(cvt(unsafe {
            libc::mknodat(dir.as_raw_fd(), cname.as_ptr(), mode, 0)
        }))?;
        let fd = io(lower::open_at(dir.as_fd(), &cname, libc::O_PATH, 0))?;
        self.fix_mode(fd.as_fd(), mode)?;
        if kind == libc::S_IFREG {
            if let Ok(rfd) =
                lower::open_at(dir.as_fd(), &cname, libc::O_RDONLY | libc::O_NONBLOCK, 0)
            {
                self.record_creator(ctx.uid, rfd.as_fd());
            }
        }
        self.after_name_change(parent, name);
        let parent_facts = self.dir_facts(parent)?;
        self.lookup_in(0, parent, dir.as_fd(), name, &parent_facts)
    }

    fn mkdir(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: Name<'_>,
        mode: u32,
        _umask: u32,
    ) -> Result<Entry> {
        let name = name.as_bytes();
        self.check_child(ctx.uid, Op::Mkdir, parent, name, true, None)?;
        let dir = self.open_node(parent, libc::O_PATH)?;
        let cname = io(lower::cname(name))?;
        // SAFETY: cname is NUL-terminated and lives across the call.
        io(cvt(unsafe {
            libc::mkdirat(dir.as_raw_fd(), cname.as_ptr(), mode & 0o7777)
        }))?;
        let fd = io(lower::open_at(
            dir.as_fd(),
            &cname,
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
        ))?;
        self.fix_mode(fd.as_fd(), mode)?;
        // Directories carry their creator too: an app's own hidden directory stays visible to it.
        self.record_creator(ctx.uid, fd.as_fd());
        let parent_facts = self.dir_facts(parent)?;
        self.lookup_in(0, parent, dir.as_fd(), name, &parent_facts)
    }

    fn unlink(&self, ctx: &Ctx, parent: u64, name: Name<'_>) -> Result<()> {
        let name = name.as_bytes();
        let dir = self.open_node(parent, libc::O_PATH)?;
        let (st, owner) = self.existing_child(ctx.uid, parent, dir.as_fd(), name)?;
        if is_dir_mode(st.st_mode) {
            return Err(libc::EISDIR);
        }
        self.check_child(ctx.uid, Op::Delete, parent, name, false, owner.as_deref())?;
        let cname = io(lower::cname(name))?;
        // SAFETY: cname is NUL-terminated and lives across the call.
        io(cvt(unsafe {
            libc::unlinkat(dir.as_raw_fd(), cname.as_ptr(), 0)
        }))?;
        self.after_name_change(parent, name);
        Ok(())
    }

    fn rmdir(&self, ctx: &Ctx, parent: u64, name: Name<'_>) -> Result<()> {
        let name = name.as_bytes();
        let dir = self.open_node(parent, libc::O_PATH)?;
        let (st, owner) = self.existing_child(ctx.uid, parent, dir.as_fd(), name)?;
        if !is_dir_mode(st.st_mode) {
            return Err(libc::ENOTDIR);
        }
        self.check_child(ctx.uid, Op::Delete, parent, name, true, owner.as_deref())?;
        let cname = io(lower::cname(name))?;
        // SAFETY: cname is NUL-terminated and lives across the call.
        io(cvt(unsafe {
            libc::unlinkat(dir.as_raw_fd(), cname.as_ptr(), libc::AT_REMOVEDIR)
        }))?;
        Ok(())
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
        if flags & !(abi::RENAME_NOREPLACE | abi::RENAME_EXCHANGE) != 0 {
            return Err(libc::EINVAL);
        }
        let (name, newname) = (name.as_bytes(), newname.as_bytes());
        let olddir = self.open_node(parent, libc::O_PATH)?;
        let newdir = self.open_node(newparent, libc::O_PATH)?;
        if !policy::bypasses(ctx.uid) {
            let (st, owner) = self.existing_child(ctx.uid, parent, olddir.as_fd(), name)?;
            let is_dir = is_dir_mode(st.st_mode);
            self.check_child(
                ctx.uid,
                Op::RenameFrom,
                parent,
                name,
                is_dir,
                owner.as_deref(),
            )?;
            self.check_child(
                ctx.uid,
                Op::RenameTo,
                newparent,
                newname,
                is_dir,
                owner.as_deref(),
            )?;
            if flags & abi::RENAME_EXCHANGE != 0 {
                let (st2, owner2) =
                    self.existing_child(ctx.uid, newparent, newdir.as_fd(), newname)?;
                let is_dir2 = is_dir_mode(st2.st_mode);
                self.check_child(
                    ctx.uid,
                    Op::RenameFrom,
                    newparent,
                    newname,
                    is_dir2,
                    owner2.as_deref(),
                )?;
                self.check_child(
                    ctx.uid,
                    Op::RenameTo,
                    parent,
                    name,
                    is_dir2,
                    owner2.as_deref(),
                )?;
            }
        }
        let (c1, c2) = (io(lower::cname(name))?, io(lower::cname(newname))?);
        // SAFETY: renameat2 with NUL-terminated names relative to fds we hold.
        io(cvt(unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                olddir.as_raw_fd(),
                c1.as_ptr(),
                newdir.as_raw_fd(),
                c2.as_ptr(),
                flags,
            ) as libc::c_int
        }))?;
        self.moved(newparent, newdir.as_fd(), newname);
        if flags & abi::RENAME_EXCHANGE != 0 {
            self.moved(parent, olddir.as_fd(), name);
        }
        self.after_name_change(parent, name);
        self.after_name_change(newparent, newname);
        Ok(())
    }

    fn link(&self, ctx: &Ctx, node: u64, newparent: u64, newname: Name<'_>) -> Result<Entry> {
        let newname = newname.as_bytes();
        if !policy::bypasses(ctx.uid) {
            self.check(ctx.uid, Op::Write, Subject::Node(node))?;
            self.check_child(ctx.uid, Op::Create, newparent, newname, false, None)?;
        }
        let src = self.open_node(node, libc::O_PATH)?;
        let dir = self.open_node(newparent, libc::O_PATH)?;
        let cname = io(lower::cname(newname))?;
        // SAFETY: "" + AT_EMPTY_PATH links the inode behind src; names are NUL-terminated.
        io(cvt(unsafe {
            libc::linkat(
                src.as_raw_fd(),
                c"".as_ptr(),
                dir.as_raw_fd(),
                cname.as_ptr(),
                libc::AT_EMPTY_PATH,
            )
        }))?;
        let parent_facts = self.dir_facts(newparent)?;
        self.lookup_in(0, newparent, dir.as_fd(), newname, &parent_facts)
    }

    fn open(&self, ctx: &Ctx, node: u64, flags: u32) -> Result<Opened> {
        if self.node_kind(node)? == libc::S_IFDIR {
            return Err(libc::EISDIR);
        }
        let f = flags as i32;
        let acc = f & libc::O_ACCMODE;
        let wants_write = acc != libc::O_RDONLY || f & libc::O_TRUNC != 0;
        let mut decision = Decision::Allow;
        if acc != libc::O_WRONLY {
            decision = self.check(ctx.uid, Op::Read, Subject::Node(node))?;
        }
        if wants_write {
            self.check(ctx.uid, Op::Write, Subject::Node(node))?;
        }
        if f & libc::O_TRUNC != 0 && self.passthrough_active() && decision == Decision::Allow {
            // ATOMIC_O_TRUNC: the kernel leaves truncation to us.
            drop(self.open_node(node, libc::O_WRONLY | libc::O_TRUNC)?);
        }
        self.finish_open(node, flags, decision, None)
    }

    fn create(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: Name<'_>,
        mode: u32,
        _umask: u32,
        flags: u32,
    ) -> Result<(Entry, Opened)> {
        let name = name.as_bytes();
        let dir = self.open_node(parent, libc::O_PATH)?;
        let cname = io(lower::cname(name))?;
        let open_flags = userspace_flags(flags);
        // The kernel sends CREATE when its cache had no such name; the file may still exist.
        // Then (without O_EXCL) this is an open of that file, decided like any other open.
        let (fd, created, decision) = match self.existing_child(ctx.uid, parent, dir.as_fd(), name)
        {
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
                        self.check_child(ctx.uid, Op::Read, parent, name, false, owner.as_deref())?;
                }
                self.check_child(ctx.uid, Op::Write, parent, name, false, owner.as_deref())?;
                (
                    io(lower::open_at(dir.as_fd(), &cname, open_flags, 0))?,
                    false,
                    decision,
                )
            }
            Err(libc::ENOENT) => {
                self.check_child(ctx.uid, Op::Create, parent, name, false, None)?;
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
            self.fix_mode(fd.as_fd(), mode)?;
            self.record_creator(ctx.uid, fd.as_fd());
            self.after_name_change(parent, name);
        }
        let parent_facts = self.dir_facts(parent)?;
        let facts = self.child_facts(&parent_facts, name, false);
        let entry = self.make_entry(
            parent,
            name,
            fd.as_fd(),
            &st,
            policy::caller_dependent(&facts.target()),
        )?;
        match self.finish_open(entry.nodeid, flags, decision, Some(fd)) {
            Ok(opened) => Ok((entry, opened)),
            Err(e) => {
                // The kernel never saw this entry: undo its lookup count.
                self.forget(entry.nodeid, 1);
                Err(e)
            }
        }
    }

    fn read(&self, _ctx: &Ctx, node: u64, fh: u64, offset: u64, out: &mut [u8]) -> Result<usize> {
        let fd = self.io_fd(node, fh, libc::O_RDONLY)?;
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
        self.stats.bytes_read.fetch_add(n as u64, Relaxed);
        Ok(n as usize)
    }

    fn write(
        &self,
        _ctx: &Ctx,
        node: u64,
        fh: u64,
        offset: u64,
        data: &[u8],
        write_flags: u32,
    ) -> Result<u32> {
        let fd = self.io_fd(node, fh, libc::O_WRONLY)?;
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
        self.stats.bytes_written.fetch_add(done as u64, Relaxed);
        Ok(done as u32)
    }

    fn flush(&self, _ctx: &Ctx, _node: u64, _fh: u64) -> Result<()> {
        Ok(())
    }

    fn release(&self, _ctx: &Ctx, _node: u64, fh: u64, _flags: u32) -> Result<()> {
        self.release_file(fh);
        Ok(())
    }

    fn fsync(&self, _ctx: &Ctx, node: u64, fh: u64, datasync: bool) -> Result<()> {
        let fd = self.io_fd(node, fh, libc::O_RDONLY)?;
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

    fn opendir(&self, ctx: &Ctx, node: u64, _flags: u32) -> Result<Opened> {
        self.check(ctx.uid, Op::ListDir, Subject::Node(node))?;
        let fd = self.open_node(node, libc::O_RDONLY | libc::O_DIRECTORY)?;
        let fh = self.files.insert(OpenFile::Dir {
            node,
            stream: std::sync::Mutex::new(DirStream::new(fd)),
        });
        // Never FOPEN_CACHE_DIR: listings are filtered per caller.
        Ok(Opened {
            fh,
            flags: 0,
            backing_id: None,
        })
    }

    fn readdir(
        &self,
        ctx: &Ctx,
        node: u64,
        fh: u64,
        offset: u64,
        out: &mut DirWriter<'_>,
    ) -> Result<()> {
        let file = self.files.get(fh).ok_or(libc::EBADF)?;
        let OpenFile::Dir {
            node: dnode,
            stream,
        } = &*file
        else {
            return Err(libc::EBADF);
        };
        if *dnode != node {
            return Err(libc::EBADF);
        }
        let mut stream = stream.lock().unwrap_or_else(|e| e.into_inner());
        io(stream.seek(offset))?;
        let parent_facts = self.dir_facts(node)?;
        let dirfd = io(lower::dup_fd(stream.fd().as_fd()))?;
        let bypass = policy::bypasses(ctx.uid);
        let plus = out.is_plus();
        while let Some(e) = io(stream.peek())? {
            let (ino, next, name) = (e.ino, e.next_offset, e.name.to_vec());
            let mut dtype = e.dtype as u32;
            if name == b"." || name == b".." {
                if !out.push(ino, next, libc::DT_DIR as u32, &name, None) {
                    break;
                }
                stream.advance();
                continue;
            }
            if dtype == libc::DT_UNKNOWN as u32 {
                match lower::cname(&name).and_then(|c| lower::stat_at(dirfd.as_fd(), &c)) {
                    Ok(st) => dtype = dtype_of_mode(st.st_mode),
                    Err(_) => {
                        stream.advance();
                        continue;
                    }
                }
            }
            let is_dir = dtype == libc::DT_DIR as u32;
            if !bypass && !self.listed_in(ctx.uid, &parent_facts, dirfd.as_fd(), &name, is_dir) {
                stream.advance();
                continue;
            }
            if !out.fits(&name) {
                break;
            }
            if plus {
                // READDIRPLUS entries count as lookups; one that vanished is skipped.
                match self.lookup_in(0, node, dirfd.as_fd(), &name, &parent_facts) {
                    Ok(entry) => {
                        out.push(ino, next, dtype, &name, Some(&entry));
                    }
                    Err(_) => {
                        stream.advance();
                        continue;
                    }
                }
            } else {
                out.push(ino, next, dtype, &name, None);
            }
            stream.advance();
        }
        Ok(())
    }

    fn releasedir(&self, _ctx: &Ctx, _node: u64, fh: u64) -> Result<()> {
        self.release_file(fh);
        Ok(())
    }

    fn fsyncdir(&self, _ctx: &Ctx, node: u64, _fh: u64, datasync: bool) -> Result<()> {
        let fd = self.open_node(node, libc::O_RDONLY | libc::O_DIRECTORY)?;
        // SAFETY: fsync/fdatasync on an fd we own.
        let r = unsafe {
            if datasync {
                libc::fdatasync(fd.as_raw_fd())
            } else {
                libc::fsync(fd.as_raw_fd())
            }
        };
        io(cvt(r).map(|_| ()))
    }

    // statvfs field widths differ between libc targets.
    #[allow(clippy::unnecessary_cast)]
    fn statfs(&self, _ctx: &Ctx, _node: u64) -> Result<abi::Kstatfs> {
        let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: fstatvfs fills the struct on success; read only then.
        io(cvt(unsafe {
            libc::fstatvfs(self.lower_fd_for_root().as_raw_fd(), st.as_mut_ptr())
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

    fn access(&self, ctx: &Ctx, node: u64, mask: u32) -> Result<()> {
        let kind = self.node_kind(node)?;
        let is_dir = kind == libc::S_IFDIR;
        let mask = mask as i32;
        if mask == libc::F_OK {
            self.check(ctx.uid, Op::Lookup, Subject::Node(node))?;
        }
        if mask & libc::R_OK != 0 {
            self.check(
                ctx.uid,
                if is_dir { Op::ListDir } else { Op::Read },
                Subject::Node(node),
            )?;
        }
        if mask & libc::W_OK != 0 && !is_dir {
            self.check(ctx.uid, Op::Write, Subject::Node(node))?;
        }
        if mask & libc::X_OK != 0 {
            if is_dir {
                self.check(ctx.uid, Op::Lookup, Subject::Node(node))?;
            } else {
                let fd = self.open_node(node, libc::O_PATH)?;
                let st = io(lower::stat_fd(fd.as_fd()))?;
                if st.st_mode & 0o111 == 0 {
                    return Err(libc::EACCES);
                }
            }
        }
        Ok(())
    }

    fn setxattr(&self, ctx: &Ctx, node: u64, name: &[u8], value: &[u8], flags: u32) -> Result<()> {
        if name == OWNER_XATTR && ctx.uid != 0 {
            return Err(libc::EPERM);
        }
        self.check(ctx.uid, Op::Write, Subject::Node(node))?;
        let (_fd, path) = self.xattr_path(node)?;
        let cname = io(lower::cname(name))?;
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

    fn getxattr(&self, ctx: &Ctx, node: u64, name: &[u8], out: &mut [u8]) -> Result<XattrReply> {
        if name == OWNER_XATTR && ctx.uid != 0 {
            return Err(libc::ENODATA);
        }
        self.check(ctx.uid, Op::Lookup, Subject::Node(node))?;
        let (_fd, path) = self.xattr_path(node)?;
        let cname = io(lower::cname(name))?;
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

    fn listxattr(&self, ctx: &Ctx, node: u64, out: &mut [u8]) -> Result<XattrReply> {
        self.check(ctx.uid, Op::Lookup, Subject::Node(node))?;
        let (_fd, path) = self.xattr_path(node)?;
        let mut all = vec![0u8; 64 * 1024];
        // SAFETY: writes at most all.len() bytes into all.
        let n = unsafe { libc::listxattr(path.as_ptr(), all.as_mut_ptr().cast(), all.len()) };
        if n < 0 {
            return Err(errno(&std::io::Error::last_os_error()));
        }
        // Our bookkeeping xattr is not the apps' business.
        let mut shown = Vec::with_capacity(n as usize);
        for item in all[..n as usize].split_inclusive(|&b| b == 0) {
            if ctx.uid == 0 || item.strip_suffix(b"\0").unwrap_or(item) != OWNER_XATTR {
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

    fn removexattr(&self, ctx: &Ctx, node: u64, name: &[u8]) -> Result<()> {
        if name == OWNER_XATTR && ctx.uid != 0 {
            return Err(libc::EPERM);
        }
        self.check(ctx.uid, Op::Write, Subject::Node(node))?;
        let (_fd, path) = self.xattr_path(node)?;
        let cname = io(lower::cname(name))?;
        // SAFETY: both strings are NUL-terminated.
        io(cvt(unsafe {
            libc::removexattr(path.as_ptr(), cname.as_ptr())
        }))?;
        Ok(())
    }

    fn fallocate(
        &self,
        _ctx: &Ctx,
        node: u64,
        fh: u64,
        offset: u64,
        length: u64,
        mode: u32,
    ) -> Result<()> {
        let fd = self.io_fd(node, fh, libc::O_WRONLY)?;
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

    fn lseek(&self, _ctx: &Ctx, node: u64, fh: u64, offset: u64, whence: u32) -> Result<u64> {
        let fd = self.io_fd(node, fh, libc::O_RDONLY)?;
        // SAFETY: lseek on an fd kept open by fd. The shared fd's position is never used
        // for data (we only pread/pwrite), so moving it is harmless.
        let r = unsafe { libc::lseek(fd.raw(), offset as libc::off_t, whence as i32) };
        if r < 0 {
            return Err(errno(&std::io::Error::last_os_error()));
        }
        Ok(r as u64)
    }

    fn copy_file_range(
        &self,
        _ctx: &Ctx,
        node_in: u64,
        fh_in: u64,
        off_in: u64,
        node_out: u64,
        fh_out: u64,
        off_out: u64,
        len: u64,
    ) -> Result<u64> {
        let fin = self.io_fd(node_in, fh_in, libc::O_RDONLY)?;
        let fout = self.io_fd(node_out, fh_out, libc::O_WRONLY)?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_escape_table() {
        let cases: &[(usize, &[u8], bool)] = &[
            (0, b"a", true),
            (0, b"a/b/../c", true),
            (0, b"..", false),
            (0, b"../x", false),
            (1, b"..", true),
            (1, b"../..", false),
            (2, b"../../x", true),
            (2, b"../../../etc/passwd", false),
            (3, b"a/../../../..", true),
            (3, b"a/../../../../..", false),
            (0, b"/", false),
            (5, b"/etc", false),
            (0, b"", false),
            (0, b"./././x", true),
            (1, b"x/../../y", true),
        ];
        for &(depth, target, ok) in cases {
            assert_eq!(
                symlink_stays_inside(depth, target),
                ok,
                "{depth} {:?}",
                String::from_utf8_lossy(target)
            );
        }
    }

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
