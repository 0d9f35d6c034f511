//! Removing names: unlink and rmdir.

use super::access::{read_owner_at, Subject};
use super::events::FileEvent;
use super::lower::{self, cvt, io, is_dir_mode, Result};
use super::StorageView;
use crate::fuse::{Ctx, Name};
use crate::policy::{Decision, Op};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// An existing child as the rules need it: its attributes, and its owner tag when the caller
/// is judged by the rules (a failure to read the tag is an errno, not "no owner").
pub(super) struct Existing {
    pub st: libc::stat,
    pub owner: Option<Box<[u8]>>,
}

impl Existing {
    pub fn is_dir(&self) -> bool {
        is_dir_mode(self.st.st_mode)
    }
}

impl StorageView {
    pub(super) fn existing_child(
        &self,
        uid: u32,
        dir: BorrowedFd<'_>,
        name: &[u8],
    ) -> Result<Existing> {
        let cname = io(lower::cname(name))?;
        let st = io(lower::stat_at(dir, &cname))?;
        let owner = if self.judged(uid) {
            read_owner_at(dir, name)?
        } else {
            None
        };
        Ok(Existing { st, owner })
    }

    /// Decides `op` on an existing child of `parent`.
    pub(super) fn check_existing(
        &self,
        uid: u32,
        op: Op,
        parent: u64,
        name: &[u8],
        child: &Existing,
    ) -> Result<Decision> {
        self.check(
            uid,
            op,
            Subject::Child {
                parent,
                name,
                is_dir: child.is_dir(),
                owner: child.owner.as_deref(),
            },
        )
    }
}

fn remove(
    view: &StorageView,
    ctx: &Ctx,
    parent: u64,
    name: Name<'_>,
    dir_wanted: bool,
) -> Result<()> {
    let name = name.as_bytes();
    let dir = view.dir_fd(parent)?;
    let child = view.existing_child(ctx.uid, dir.as_fd(), name)?;
    match (child.is_dir(), dir_wanted) {
        (true, false) => return Err(libc::EISDIR),
        (false, true) => return Err(libc::ENOTDIR),
        _ => {}
    }
    view.check_existing(ctx.uid, Op::Delete, parent, name, &child)?;
    let cname = io(lower::cname(name))?;
    let flags = if dir_wanted { libc::AT_REMOVEDIR } else { 0 };
    {
        let _as = view.act_as(view.posix_creds(ctx).as_ref())?;
        // SAFETY: cname is NUL-terminated and lives across the call.
        io(cvt(unsafe {
            libc::unlinkat(dir.as_raw_fd(), cname.as_ptr(), flags)
        }))?;
    }
    view.after_name_change(parent, name);
    if !dir_wanted {
        view.emit(|| {
            Ok(FileEvent::Deleted {
                path: view.child_path_text(parent, name)?,
                uid: ctx.uid,
            })
        });
    }
    Ok(())
}

pub(super) fn unlink(view: &StorageView, ctx: &Ctx, parent: u64, name: Name<'_>) -> Result<()> {
    remove(view, ctx, parent, name, false)
}

pub(super) fn rmdir(view: &StorageView, ctx: &Ctx, parent: u64, name: Name<'_>) -> Result<()> {
    remove(view, ctx, parent, name, true)
}
