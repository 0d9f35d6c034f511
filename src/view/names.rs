//! The namespace: looking names up, and creating, linking, renaming and removing them.

use super::access::{Facts, Subject};
use super::lower::{self, cvt, errno, Handle};
use super::ops::{io, is_dir_mode, Result};
use super::StorageView;
use crate::fuse::abi;
use crate::fuse::reply::attr_from_stat;
use crate::fuse::{Ctx, Entry, Name};
use crate::policy::{self, Decision, Op};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// Whether a relative symlink target, placed in a directory `depth` levels below the root,
/// stays inside the root when followed. Absolute targets never do (the upper and lower
/// namespaces differ, and "/" is the host's root).
pub(super) fn symlink_stays_inside(depth: usize, target: &[u8]) -> bool {
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

pub(super) fn dtype_of_mode(mode: u32) -> u32 {
    (mode & libc::S_IFMT) >> 12
}

/// The attributes and the handle of `name` in `dir`, without opening it: `fstatat` and
/// `name_to_handle_at`, neither following a symlink. The name can be replaced between the two
/// calls; the pair is accepted only if both describe one inode (checked through the inode
/// number that common handles carry, else by a second stat), and retried otherwise.
fn stat_and_handle(dir: BorrowedFd<'_>, name: &std::ffi::CStr) -> Result<(libc::stat, Handle)> {
    for _ in 0..8 {
        let st = io(lower::stat_at(dir, name))?;
        let handle = io(lower::handle_at(dir, name))?;
        let same = if handle.carries_inode() {
            handle.may_be_inode(st.st_ino)
        } else {
            io(lower::stat_at(dir, name))?.st_ino == st.st_ino
        };
        if same {
            return Ok((st, handle));
        }
    }
    Err(libc::EAGAIN)
}

impl StorageView {
    /// Registers the child `name` of `parent` (open as `fd`, `O_PATH` or not) and builds the
    /// entry the kernel caches. Counts one lookup.
    pub(super) fn make_entry(
        &self,
        parent: u64,
        name: &[u8],
        handle: Handle,
        st: &libc::stat,
        caller_dependent: bool,
    ) -> Result<Entry> {
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
    pub(super) fn lookup_in(
        &self,
        uid: u32,
        parent: u64,
        dir: BorrowedFd<'_>,
        name: &[u8],
        parent_facts: &Facts,
    ) -> Result<Entry> {
        let cname = io(lower::cname(name))?;
        let (st, handle) = stat_and_handle(dir, &cname)?;
        let mut facts = self.child_facts(parent_facts, name, is_dir_mode(st.st_mode));
        let caller_dependent = policy::caller_dependent(&facts.target());
        if !policy::bypasses(uid) {
            let snapshot = self.policy.snapshot();
            let decision = self.judge_with_owner(
                &mut facts,
                dir,
                name,
                |f| snapshot.decide(uid, Op::Lookup, &f.target()),
                |d| matches!(d, Decision::Deny(_)),
            );
            if let Decision::Deny(e) = decision {
                self.deny(uid, Op::Lookup, &facts, e);
                return Err(e);
            }
        }
        self.make_entry(parent, name, handle, &st, caller_dependent)
    }

    /// Facts of an existing child (stat, and the owner for regular files when the caller is
    /// subject to the policy), for unlink/rmdir/rename decisions.
    pub(super) fn existing_child(
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

    pub(super) fn check_child(
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

    pub(super) fn after_name_change(&self, dir: u64, name: &[u8]) {
        if name.eq_ignore_ascii_case(b".nomedia") {
            self.nomedia_changed(dir);
        }
    }

    /// Re-reads where a renamed inode now lives and moves its node there.
    pub(super) fn moved(&self, newparent: u64, dir: BorrowedFd<'_>, newname: &[u8]) {
        let Ok(cname) = lower::cname(newname) else {
            return;
        };
        let Ok(st) = lower::stat_at(dir, &cname) else {
            return;
        };
        if let Some(id) = self.nodes.find_ino(st.st_ino) {
            self.nodes.with(id, |n| {
                n.moved_to(newparent, newname);
            });
        }
        if is_dir_mode(st.st_mode) {
            // Every path below changed: cached decisions of descendants are stale.
            self.nodes.clear_decisions();
        }
    }
}

pub(super) fn lookup(view: &StorageView, ctx: &Ctx, parent: u64, name: Name<'_>) -> Result<Entry> {
    if name.is_dot_or_dotdot() {
        return Err(libc::ENOENT);
    }
    let dir = view.dir_fd(parent)?;
    let parent_facts = view.dir_facts(parent)?;
    view.lookup_in(ctx.uid, parent, dir.as_fd(), name.as_bytes(), &parent_facts)
}

pub(super) fn readlink(view: &StorageView, ctx: &Ctx, node: u64, out: &mut [u8]) -> Result<usize> {
    view.check(ctx.uid, Op::Lookup, Subject::Node(node))?;
    let fd = view.open_node(node, libc::O_PATH | libc::O_NOFOLLOW)?;
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
    let depth = view
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

pub(super) fn symlink(
    view: &StorageView,
    ctx: &Ctx,
    parent: u64,
    name: Name<'_>,
    target: &[u8],
) -> Result<Entry> {
    let name = name.as_bytes();
    let parent_facts = view.dir_facts(parent)?;
    let depth = if parent_facts.path.is_empty() {
        0
    } else {
        parent_facts.path.split(|&b| b == b'/').count()
    };
    if !symlink_stays_inside(depth, target) {
        return Err(libc::EPERM);
    }
    view.check_child(ctx.uid, Op::Create, parent, name, false, None)?;
    let dir = view.dir_fd(parent)?;
    let cname = io(lower::cname(name))?;
    let ctarget = io(lower::cname(target))?;
    // SAFETY: both strings are NUL-terminated and live across the call.
    io(cvt(unsafe {
        libc::symlinkat(ctarget.as_ptr(), dir.as_raw_fd(), cname.as_ptr())
    }))?;
    view.lookup_in(0, parent, dir.as_fd(), name, &parent_facts)
}

pub(super) fn mknod(
    view: &StorageView,
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
    view.check_child(ctx.uid, Op::Create, parent, name, false, None)?;
    let dir = view.dir_fd(parent)?;
    let cname = io(lower::cname(name))?;
    // SAFETY: cname is NUL-terminated; regular files and fifos need no device number.
    io(cvt(unsafe {
        libc::mknodat(dir.as_raw_fd(), cname.as_ptr(), mode, 0)
    }))?;
    let fd = io(lower::open_at(dir.as_fd(), &cname, libc::O_PATH, 0))?;
    view.fix_mode(fd.as_fd(), mode)?;
    if kind == libc::S_IFREG {
        if let Ok(rfd) = lower::open_at(dir.as_fd(), &cname, libc::O_RDONLY | libc::O_NONBLOCK, 0) {
            view.record_creator(ctx.uid, rfd.as_fd());
        }
    }
    view.after_name_change(parent, name);
    let parent_facts = view.dir_facts(parent)?;
    view.lookup_in(0, parent, dir.as_fd(), name, &parent_facts)
}

pub(super) fn mkdir(
    view: &StorageView,
    ctx: &Ctx,
    parent: u64,
    name: Name<'_>,
    mode: u32,
    _umask: u32,
) -> Result<Entry> {
    let name = name.as_bytes();
    view.check_child(ctx.uid, Op::Mkdir, parent, name, true, None)?;
    let dir = view.dir_fd(parent)?;
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
    view.fix_mode(fd.as_fd(), mode)?;
    // Directories carry their creator too: an app's own hidden directory stays visible to it.
    view.record_creator(ctx.uid, fd.as_fd());
    let parent_facts = view.dir_facts(parent)?;
    view.lookup_in(0, parent, dir.as_fd(), name, &parent_facts)
}

pub(super) fn unlink(view: &StorageView, ctx: &Ctx, parent: u64, name: Name<'_>) -> Result<()> {
    let name = name.as_bytes();
    let dir = view.dir_fd(parent)?;
    let (st, owner) = view.existing_child(ctx.uid, parent, dir.as_fd(), name)?;
    if is_dir_mode(st.st_mode) {
        return Err(libc::EISDIR);
    }
    view.check_child(ctx.uid, Op::Delete, parent, name, false, owner.as_deref())?;
    let cname = io(lower::cname(name))?;
    // SAFETY: cname is NUL-terminated and lives across the call.
    io(cvt(unsafe {
        libc::unlinkat(dir.as_raw_fd(), cname.as_ptr(), 0)
    }))?;
    view.after_name_change(parent, name);
    Ok(())
}

pub(super) fn rmdir(view: &StorageView, ctx: &Ctx, parent: u64, name: Name<'_>) -> Result<()> {
    let name = name.as_bytes();
    let dir = view.dir_fd(parent)?;
    let (st, owner) = view.existing_child(ctx.uid, parent, dir.as_fd(), name)?;
    if !is_dir_mode(st.st_mode) {
        return Err(libc::ENOTDIR);
    }
    view.check_child(ctx.uid, Op::Delete, parent, name, true, owner.as_deref())?;
    let cname = io(lower::cname(name))?;
    // SAFETY: cname is NUL-terminated and lives across the call.
    io(cvt(unsafe {
        libc::unlinkat(dir.as_raw_fd(), cname.as_ptr(), libc::AT_REMOVEDIR)
    }))?;
    Ok(())
}

pub(super) fn rename(
    view: &StorageView,
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
    let olddir = view.dir_fd(parent)?;
    let newdir = view.dir_fd(newparent)?;
    if !policy::bypasses(ctx.uid) {
        let (st, owner) = view.existing_child(ctx.uid, parent, olddir.as_fd(), name)?;
        let is_dir = is_dir_mode(st.st_mode);
        view.check_child(
            ctx.uid,
            Op::RenameFrom,
            parent,
            name,
            is_dir,
            owner.as_deref(),
        )?;
        view.check_child(
            ctx.uid,
            Op::RenameTo,
            newparent,
            newname,
            is_dir,
            owner.as_deref(),
        )?;
        if flags & abi::RENAME_EXCHANGE != 0 {
            let (st2, owner2) = view.existing_child(ctx.uid, newparent, newdir.as_fd(), newname)?;
            let is_dir2 = is_dir_mode(st2.st_mode);
            view.check_child(
                ctx.uid,
                Op::RenameFrom,
                newparent,
                newname,
                is_dir2,
                owner2.as_deref(),
            )?;
            view.check_child(
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
    view.moved(newparent, newdir.as_fd(), newname);
    if flags & abi::RENAME_EXCHANGE != 0 {
        view.moved(parent, olddir.as_fd(), name);
    }
    view.after_name_change(parent, name);
    view.after_name_change(newparent, newname);
    Ok(())
}

pub(super) fn link(
    view: &StorageView,
    ctx: &Ctx,
    node: u64,
    newparent: u64,
    newname: Name<'_>,
) -> Result<Entry> {
    let newname = newname.as_bytes();
    if !policy::bypasses(ctx.uid) {
        view.check(ctx.uid, Op::Write, Subject::Node(node))?;
        view.check_child(ctx.uid, Op::Create, newparent, newname, false, None)?;
    }
    let src = view.open_node(node, libc::O_PATH)?;
    let dir = view.dir_fd(newparent)?;
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
    let parent_facts = view.dir_facts(newparent)?;
    view.lookup_in(0, newparent, dir.as_fd(), newname, &parent_facts)
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
}
