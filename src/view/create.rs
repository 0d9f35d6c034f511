//! Making new names: directories, fifos, symlinks and hard links. (Regular files are made by
//! CREATE, in `data.rs`, since they come with an open.)
//!
//! For an app the decision comes first, before the lower tree is touched, so that the answer
//! never depends on whether the name exists (no existence oracle). Apps make neither hard
//! links, symlinks nor fifos (EPERM). POSIX callers act as themselves.

use super::access::Subject;
use super::events::FileEvent;
use super::lookup::symlink_stays_inside;
use super::lower::{self, cvt, io, proc_path, Result};
use super::StorageView;
use crate::fuse::{Ctx, Entry, Name};
use crate::policy::{Decision, Op};
use std::os::fd::{AsFd, AsRawFd};

impl StorageView {
    /// Decides whether `uid` may bring `name` into existence in `parent` as `op`.
    pub(super) fn check_new(&self, uid: u32, op: Op, parent: u64, name: &[u8]) -> Result<Decision> {
        self.check(
            uid,
            op,
            Subject::Child {
                parent,
                name,
                is_dir: op == Op::Mkdir,
                owner: None,
            },
        )
    }

    /// The entry of a name just made in `parent`, as root sees it (its final attributes).
    fn new_entry(&self, parent: u64, name: &[u8]) -> Result<Entry> {
        let dir = self.dir_fd(parent)?;
        let parent_facts = self.dir_facts(parent)?;
        self.after_name_change(parent, name);
        self.lookup_in(0, parent, dir.as_fd(), name, &parent_facts)
    }

    pub(super) fn after_name_change(&self, dir: u64, name: &[u8]) {
        if name.eq_ignore_ascii_case(b".nomedia") {
            self.nomedia_changed(dir);
        }
    }
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
    let _naming = view.naming();
    view.check_new(ctx.uid, Op::Mkdir, parent, name)?;
    let dir = view.dir_fd(parent)?;
    let cname = io(lower::cname(name))?;
    let creds = view.posix_creds(ctx);
    {
        let _as = view.act_as(creds.as_ref())?;
        // SAFETY: cname is NUL-terminated and lives across the call.
        io(cvt(unsafe {
            libc::mkdirat(
                dir.as_raw_fd(),
                cname.as_ptr(),
                view.creation_mode(ctx.uid, mode),
            )
        }))?;
    }
    let fd = io(lower::open_at(
        dir.as_fd(),
        &cname,
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    ))?;
    view.fix_mode(fd.as_fd(), mode)?;
    // Directories carry their creator too: an app's own hidden directory stays visible to it.
    view.record_creator(ctx.uid, fd.as_fd());
    view.new_entry(parent, name)
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
    let name = name.as_bytes();
    let op = if kind == libc::S_IFREG {
        Op::Create
    } else {
        Op::Special
    };
    let _naming = view.naming();
    view.check_new(ctx.uid, op, parent, name)?;
    // Device nodes are never made here (the mount is nodev, and Android has none).
    if kind != libc::S_IFREG && kind != libc::S_IFIFO {
        return Err(libc::EPERM);
    }
    let dir = view.dir_fd(parent)?;
    let cname = io(lower::cname(name))?;
    let creds = view.posix_creds(ctx);
    {
        let _as = view.act_as(creds.as_ref())?;
        // SAFETY: cname is NUL-terminated; regular files and fifos need no device number.
        io(cvt(unsafe {
            libc::mknodat(
                dir.as_raw_fd(),
                cname.as_ptr(),
                kind | view.creation_mode(ctx.uid, mode),
                0,
            )
        }))?;
    }
    let fd = io(lower::open_at(dir.as_fd(), &cname, libc::O_PATH, 0))?;
    view.fix_mode(fd.as_fd(), mode)?;
    if kind == libc::S_IFREG {
        if let Ok(rfd) = lower::open_at(dir.as_fd(), &cname, libc::O_RDONLY | libc::O_NONBLOCK, 0) {
            view.record_creator(ctx.uid, rfd.as_fd());
        }
        view.emit(|| {
            Ok(FileEvent::Created {
                path: view.child_path_text(parent, name)?,
                uid: ctx.uid,
            })
        });
    }
    view.new_entry(parent, name)
}

pub(super) fn symlink(
    view: &StorageView,
    ctx: &Ctx,
    parent: u64,
    name: Name<'_>,
    target: &[u8],
) -> Result<Entry> {
    let name = name.as_bytes();
    let _naming = view.naming();
    view.check_new(ctx.uid, Op::Special, parent, name)?;
    let depth = match view.path_of(parent)? {
        p if p.is_empty() => 0,
        p => p.split(|&b| b == b'/').count(),
    };
    if !symlink_stays_inside(depth, target) {
        return Err(libc::EPERM);
    }
    let dir = view.dir_fd(parent)?;
    let cname = io(lower::cname(name))?;
    let ctarget = io(lower::cname(target))?;
    let creds = view.posix_creds(ctx);
    {
        let _as = view.act_as(creds.as_ref())?;
        // SAFETY: both strings are NUL-terminated and live across the call.
        io(cvt(unsafe {
            libc::symlinkat(ctarget.as_ptr(), dir.as_raw_fd(), cname.as_ptr())
        }))?;
    }
    view.new_entry(parent, name)
}

pub(super) fn link(
    view: &StorageView,
    ctx: &Ctx,
    node: u64,
    newparent: u64,
    newname: Name<'_>,
) -> Result<Entry> {
    let newname = newname.as_bytes();
    let _naming = view.naming();
    view.check_new(ctx.uid, Op::Link, newparent, newname)?;
    let src = view.open_node(node, libc::O_PATH)?;
    let dir = view.dir_fd(newparent)?;
    let cname = io(lower::cname(newname))?;
    let creds = view.posix_creds(ctx);
    {
        let _as = view.act_as(creds.as_ref())?;
        // Through /proc rather than AT_EMPTY_PATH, which needs CAP_DAC_READ_SEARCH: a POSIX
        // caller is then judged by the kernel (protected_hardlinks included).
        let from = proc_path(src.as_raw_fd());
        // SAFETY: both paths are NUL-terminated and live across the call.
        io(cvt(unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                from.as_ptr(),
                dir.as_raw_fd(),
                cname.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        }))?;
    }
    view.emit(|| {
        Ok(FileEvent::Created {
            path: view.child_path_text(newparent, newname)?,
            uid: ctx.uid,
        })
    });
    view.new_entry(newparent, newname)
}
