//! Renames, judged on everything they move and replace.
//!
//! For an app: areas first (shared storage and each `Android/{data,obb}/<pkg>` are separate:
//! EXDEV, whatever exists), then the policy's `decide_move` on the object itself, what it
//! replaces or swaps with, and, for a directory, every file below it (`judge_subtree`): each
//! must be deletable by the caller where it is and of a type creatable where it lands.
//!
//! An app's move of a directory holds `StorageView::moves` exclusively from the walk to the
//! rename, and everything that makes a name holds it shared: no file is created in, linked
//! into or moved into the tree while it is judged, so nothing moves with it unjudged. The
//! kernel already keeps both parents still for the length of the request.

use super::access::{read_owner_at, Facts};
use super::dirstream::DirStream;
use super::events::FileEvent;
use super::lower::{self, cvt, io, is_dir_mode, Result};
use super::remove::Existing;
use super::StorageView;
use crate::fuse::abi;
use crate::fuse::{Ctx, Name};
use crate::policy::{Decision, Move, Op, Snapshot, Target};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// Deepest directory tree a move is judged over (deeper is refused: ELOOP).
const MAX_DEPTH: usize = 256;

/// A directory still to judge below a moved one: its fd, its path now and after the move, and
/// whether it is under a `.nomedia` tree now and after.
type Pending = (OwnedFd, Vec<u8>, Vec<u8>, bool, bool);

/// One side of a rename: where it is, and what is there.
struct Side<'a> {
    name: &'a [u8],
    facts: Facts,
    object: Option<Existing>,
}

impl StorageView {
    fn side<'a>(
        &self,
        uid: u32,
        parent: u64,
        dir: BorrowedFd<'_>,
        name: &'a [u8],
    ) -> Result<Side<'a>> {
        let object = match self.existing_child(uid, dir, name) {
            Ok(o) => Some(o),
            Err(libc::ENOENT) => None,
            Err(e) => return Err(e),
        };
        let parent_facts = self.dir_facts(parent)?;
        let mut facts = self.child_facts(
            &parent_facts,
            name,
            object.as_ref().is_some_and(Existing::is_dir),
        );
        facts.owner = object.as_ref().and_then(|o| o.owner.clone());
        Ok(Side {
            name,
            facts,
            object,
        })
    }

    /// Judges an app's rename before it happens (see the module doc).
    fn judge_rename(
        &self,
        uid: u32,
        (olddir, newdir): (BorrowedFd<'_>, BorrowedFd<'_>),
        from: &Side<'_>,
        to: &Side<'_>,
        flags: u32,
    ) -> Result<()> {
        let exchange = flags & abi::RENAME_EXCHANGE != 0;
        let snapshot = self.policy.snapshot();
        let source = from.facts.target();
        let replaced = to.object.as_ref().map(|_| to.facts.target());
        let decision = snapshot.decide_move(
            uid,
            &Move {
                from: &source,
                to: &to.facts.path,
                to_under_nomedia: to.facts.under_nomedia,
                replaced: replaced.as_ref(),
                exchange,
            },
        );
        let path = || String::from_utf8_lossy(&from.facts.path).into_owned();
        self.verdict(uid, Op::RenameFrom, decision, path)?;
        if from.object.as_ref().is_some_and(Existing::is_dir) {
            self.judge_subtree(&snapshot, uid, olddir, from, to)?;
        }
        if exchange && to.object.as_ref().is_some_and(Existing::is_dir) {
            self.judge_subtree(&snapshot, uid, newdir, to, from)?;
        }
        Ok(())
    }

    /// Every entry below the directory `from` (in `dir`) as it would land below `to`.
    fn judge_subtree(
        &self,
        snapshot: &Snapshot,
        uid: u32,
        dir: BorrowedFd<'_>,
        from: &Side<'_>,
        to: &Side<'_>,
    ) -> Result<()> {
        if !snapshot.move_needs_walk(uid, &from.facts.path) {
            return Ok(());
        }
        let cname = io(lower::cname(from.name))?;
        let top = io(lower::open_at(
            dir,
            &cname,
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
        ))?;
        let mut stack: Vec<Pending> = vec![(
            top,
            from.facts.path.clone(),
            to.facts.path.clone(),
            from.facts.under_nomedia,
            to.facts.under_nomedia,
        )];
        let mut judged = 0u64;
        while let Some((fd, old, new, old_hidden, new_hidden)) = stack.pop() {
            if stack.len() > MAX_DEPTH {
                return Err(libc::ELOOP);
            }
            let entries = read_entries(&fd)?;
            // A `.nomedia` here hides what is below, before and after the move alike.
            let nomedia = entries
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(b".nomedia"));
            let (old_hidden, new_hidden) = (old_hidden || nomedia, new_hidden || nomedia);
            for (name, is_dir) in entries {
                let old_path = join(&old, &name);
                let new_path = join(&new, &name);
                let decide = |owner: Option<&[u8]>| {
                    let entry = Target {
                        path: &old_path,
                        is_dir,
                        owner,
                        under_nomedia: old_hidden,
                    };
                    snapshot.decide_moved_entry(uid, &entry, &new_path, new_hidden)
                };
                let mut decision = decide(None);
                if matches!(decision, Decision::Deny(_)) && !is_dir {
                    // Removed since the listing (removals go on during the walk; nothing new
                    // comes in): it does not move.
                    let owner = match read_owner_at(fd.as_fd(), &name) {
                        Err(libc::ENOENT) => continue,
                        r => r?,
                    };
                    if owner.is_some() {
                        decision = decide(owner.as_deref());
                    }
                }
                judged += 1;
                let shown = || String::from_utf8_lossy(&old_path).into_owned();
                self.verdict(uid, Op::RenameFrom, decision, shown)?;
                if is_dir {
                    let cname = io(lower::cname(&name))?;
                    let sub = match io(lower::open_at(
                        fd.as_fd(),
                        &cname,
                        libc::O_RDONLY | libc::O_DIRECTORY,
                        0,
                    )) {
                        Err(libc::ENOENT) => continue,
                        sub => sub?,
                    };
                    stack.push((sub, old_path, new_path, old_hidden, new_hidden));
                }
            }
        }
        log::debug!("directory move judged over {judged} entries (uid {uid})");
        Ok(())
    }
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    p.extend_from_slice(dir);
    if !p.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// The entries of a directory (without `.` and `..`), each with whether it is a directory.
fn read_entries(fd: &OwnedFd) -> Result<Vec<(Vec<u8>, bool)>> {
    let mut stream = DirStream::new(io(lower::dup_fd(fd.as_fd()))?);
    let mut out = Vec::new();
    while let Some(e) = io(stream.peek())? {
        let name = e.name.to_vec();
        let dtype = e.dtype;
        stream.advance();
        if name == b"." || name == b".." {
            continue;
        }
        let is_dir = match dtype {
            libc::DT_DIR => true,
            libc::DT_UNKNOWN => {
                let cname = io(lower::cname(&name))?;
                match io(lower::stat_at(fd.as_fd(), &cname)) {
                    Ok(st) => is_dir_mode(st.st_mode),
                    Err(libc::ENOENT) => continue, // removed since: it does not move
                    Err(e) => return Err(e),
                }
            }
            _ => false,
        };
        out.push((name, is_dir));
    }
    Ok(out)
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
    let uid = ctx.uid;
    let exchange = flags & abi::RENAME_EXCHANGE != 0;
    // Shared, as for any new name; exclusive once a directory's move is judged, so that the
    // walk below it sees all that moves (then the sides are taken again under it).
    let mut exclusive = false;
    let (_moving, source, other) = loop {
        let moving = if exclusive {
            view.moving_tree()
        } else {
            view.naming()
        };
        if !view.judged(uid) {
            let stat = |dir: BorrowedFd<'_>, n: &[u8]| -> Result<libc::stat> {
                io(lower::stat_at(dir, &io(lower::cname(n))?))
            };
            let other = if exchange {
                Some(stat(newdir.as_fd(), newname)?)
            } else {
                None
            };
            break (moving, Some(stat(olddir.as_fd(), name)?), other);
        }
        let from = view.side(uid, parent, olddir.as_fd(), name)?;
        let to = view.side(uid, newparent, newdir.as_fd(), newname)?;
        let moves_dir = from.object.as_ref().is_some_and(Existing::is_dir)
            || (exchange && to.object.as_ref().is_some_and(Existing::is_dir));
        if moves_dir && !exclusive {
            exclusive = true;
            continue;
        }
        // Areas before existence: the answer for another app's private directory must not
        // depend on whether it is there.
        if crate::policy::crosses_areas(&from.facts.path, &to.facts.path) {
            let shown = || String::from_utf8_lossy(&to.facts.path).into_owned();
            view.verdict(uid, Op::RenameTo, Decision::Deny(libc::EXDEV), shown)?;
        }
        if from.object.is_none() {
            return Err(libc::ENOENT);
        }
        if flags & abi::RENAME_NOREPLACE != 0 && to.object.is_some() {
            return Err(libc::EEXIST);
        }
        if exchange && to.object.is_none() {
            return Err(libc::ENOENT);
        }
        view.judge_rename(uid, (olddir.as_fd(), newdir.as_fd()), &from, &to, flags)?;
        break (moving, from.object.map(|o| o.st), to.object.map(|o| o.st));
    };
    let source = source.ok_or(libc::ENOENT)?;
    // Paths for the file events, taken before the move changes them.
    let paths = if view.events.listening() {
        Some((
            view.child_path_text(parent, name)?,
            view.child_path_text(newparent, newname)?,
        ))
    } else {
        None
    };
    let (c1, c2) = (io(lower::cname(name))?, io(lower::cname(newname))?);
    {
        let _as = view.act_as(view.posix_creds(ctx).as_ref())?;
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
    }
    view.nodes
        .renamed(source.st_ino, (parent, name), (newparent, newname));
    let mut moved_dir = is_dir_mode(source.st_mode);
    if let (true, Some(other)) = (exchange, other) {
        view.nodes
            .renamed(other.st_ino, (newparent, newname), (parent, name));
        moved_dir |= is_dir_mode(other.st_mode);
    }
    if moved_dir {
        // Every path below changed: cached decisions of descendants are void.
        view.paths_changed();
    }
    if let Some((from, to)) = paths {
        let event = |from: &str, to: &str, st: &libc::stat| FileEvent::Renamed {
            from: from.to_string(),
            to: to.to_string(),
            uid,
            is_directory: is_dir_mode(st.st_mode),
        };
        view.emit(|| Ok(event(&from, &to, &source)));
        if let (true, Some(other)) = (exchange, other) {
            view.emit(|| Ok(event(&to, &from, &other)));
        }
    }
    view.after_name_change(parent, name);
    view.after_name_change(newparent, newname);
    Ok(())
}
