//! Looking names up, and reading symlinks.

use super::access::{Facts, Subject};
use super::creds::Creds;
use super::lower::{self, errno, io, is_dir_mode, Handle, Result};
use super::nodes::Found;
use super::StorageView;
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
/// number that common handles carry, else by a second stat), and retried otherwise. A name in
/// another mount than `mount` (a mount point below the lower root) is EXDEV, as an app sees a
/// boundary it cannot cross.
pub(super) fn stat_and_handle(
    dir: BorrowedFd<'_>,
    name: &std::ffi::CStr,
    mount: lower::MountId,
) -> Result<(libc::stat, Handle)> {
    for _ in 0..8 {
        let st = io(lower::stat_at(dir, name))?;
        let (handle, in_mount) = io(lower::handle_at(dir, name))?;
        if in_mount != mount {
            return Err(libc::EXDEV);
        }
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
    /// Registers the child `name` of `parent` and builds the entry the kernel caches. Counts
    /// one lookup.
    pub(super) fn make_entry(
        &self,
        parent: u64,
        name: &[u8],
        handle: Handle,
        st: &libc::stat,
        caller_dependent: bool,
    ) -> Result<Entry> {
        let found = Found {
            parent,
            name,
            handle,
            ino: st.st_ino,
            kind: st.st_mode & libc::S_IFMT,
            #[allow(clippy::unnecessary_cast)] // nlink_t is u32 on some targets
            nlink: st.st_nlink as u64,
        };
        // ENFILE: the table holds 4 billion nodes (`nodes::MAX_SLOTS`).
        let reg = self
            .nodes
            .register(found, caller_dependent)
            .ok_or(libc::ENFILE)?;
        let ttl = self.ttl(reg.caller_dependent);
        Ok(Entry {
            nodeid: reg.nodeid,
            generation: 0,
            attr: attr_from_stat(st),
            entry_ttl: ttl,
            attr_ttl: super::attrs::attr_ttl(st, ttl),
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
        let (st, handle) = stat_and_handle(dir, &cname, self.lower.root_mount())?;
        let mut facts = self.child_facts(parent_facts, name, is_dir_mode(st.st_mode));
        let caller_dependent = policy::caller_dependent(&facts.target());
        if self.judged(uid) {
            let snapshot = self.policy.snapshot();
            let decision = self.judge_with_owner(
                &mut facts,
                dir,
                name,
                |f| snapshot.decide(uid, Op::Lookup, &f.target()),
                |d| matches!(d, Decision::Deny(_)),
            )?;
            self.verdict(uid, Op::Lookup, decision, || {
                String::from_utf8_lossy(&facts.path).into_owned()
            })?;
        }
        self.make_entry(parent, name, handle, &st, caller_dependent)
    }

    /// A POSIX caller needs search permission on every directory from the root down to
    /// `dir` (the kernel leaves that to us without `default_permissions`).
    pub(super) fn posix_may_reach(&self, creds: &Creds, mut dir: u64) -> Result<()> {
        loop {
            let fd = self.dir_fd(dir)?;
            let st = io(lower::stat_fd(fd.as_fd()))?;
            if !creds.allows(&st, libc::X_OK) {
                return Err(libc::EACCES);
            }
            if dir == crate::fuse::abi::ROOT_ID {
                return Ok(());
            }
            dir = self.nodes.with(dir, |n| n.parent()).ok_or(libc::ENOENT)?;
        }
    }
}

pub(super) fn lookup(view: &StorageView, ctx: &Ctx, parent: u64, name: Name<'_>) -> Result<Entry> {
    if name.is_dot_or_dotdot() {
        return Err(libc::ENOENT);
    }
    let dir = view.dir_fd(parent)?;
    if let Some(creds) = view.posix_creds(ctx) {
        let st = io(lower::stat_fd(dir.as_fd()))?;
        if !creds.allows(&st, libc::X_OK) {
            return Err(libc::EACCES);
        }
    }
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
