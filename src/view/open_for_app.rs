//! Opening a file on behalf of an app (the policy service's `openForApp`, as Android's
//! `ContentResolver.openFile`): the path is resolved from the root one component at a time with
//! the lookup rules a FUSE lookup by that uid meets (`lookup_in`, `Op::Lookup`), the file is
//! judged as a FUSE open by that uid is (`Op::Read` unless write-only, `Op::Write` when it
//! writes or truncates), and the caller gets the lower fd itself, or, for a redacted reader of a
//! file with location, a sealed read-only copy with the location zeroed (the bytes a FUSE read
//! would give; files over `REDACTED_COPY_MAX` are EFBIG). Nothing is served through the mount,
//! so no open file, backing id or file event comes of it.
//!
//! No symlink is followed (ELOOP); names are never "." or ".." (EINVAL); directories are EISDIR,
//! other non-regular files EACCES (a fifo could block the service). A POSIX caller is reached
//! and opened as itself (gid = uid, no supplementary groups), as a FUSE caller would be.

use super::access::Subject;
use super::data::kill_suidgid;
use super::lower::Result;
use super::StorageView;
use crate::fuse::abi::ROOT_ID;
use crate::fuse::{Ctx, Filesystem};
use crate::policy::{CallerClass, Decision, Op};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// Open flags `open_for_app` takes: the access mode, `O_TRUNC` and `O_APPEND`.
pub const OPEN_FOR_APP_FLAGS: i32 = libc::O_ACCMODE | libc::O_TRUNC | libc::O_APPEND;

/// The lookups made while resolving: the kernel never saw them, so each count is given back.
struct Held<'a> {
    view: &'a StorageView,
    nodes: Vec<u64>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        for &node in &self.nodes {
            self.view.forget(node, 1);
        }
    }
}

impl StorageView {
    /// Opens `path` (relative to the root, already normalized) for `uid` with `flags`
    /// (`O_RDONLY`/`O_WRONLY`/`O_RDWR`, optionally `O_TRUNC`, `O_APPEND`): the same allow, deny
    /// and errno as that uid's FUSE lookups and open of the same path. A denial is counted and
    /// reported like any other. The fd is `O_CLOEXEC` and belongs to the caller.
    pub fn open_for_app(&self, uid: u32, path: &[u8], flags: i32) -> Result<OwnedFd> {
        let acc = flags & libc::O_ACCMODE;
        if acc == libc::O_ACCMODE || flags & !OPEN_FOR_APP_FLAGS != 0 {
            return Err(libc::EINVAL);
        }
        let ctx = Ctx {
            unique: 0,
            nodeid: ROOT_ID,
            uid,
            gid: uid,
            pid: 0,
            opcode: 0,
        };
        let creds = self.posix_creds(&ctx);
        let mut held = Held {
            view: self,
            nodes: Vec::new(),
        };
        let mut node = ROOT_ID;
        for name in path.split(|&b| b == b'/') {
            if name.is_empty() || name == b"." || name == b".." {
                return Err(libc::EINVAL);
            }
            match self.node_kind(node)? {
                libc::S_IFDIR => {}
                libc::S_IFLNK => return Err(libc::ELOOP),
                _ => return Err(libc::ENOTDIR),
            }
            let dir = self.dir_fd(node)?;
            // As `lookup::lookup` does for a POSIX caller: search permission on each directory.
            if let Some(creds) = &creds {
                let st = super::lower::io(super::lower::stat_fd(dir.as_fd()))?;
                if !creds.allows(&st, libc::X_OK) {
                    return Err(libc::EACCES);
                }
            }
            let parent_facts = self.dir_facts(node)?;
            let entry = self.lookup_in(uid, node, dir.as_fd(), name, &parent_facts)?;
            held.nodes.push(entry.nodeid);
            node = entry.nodeid;
        }
        match self.node_kind(node)? {
            libc::S_IFREG => {}
            libc::S_IFDIR => return Err(libc::EISDIR),
            libc::S_IFLNK => return Err(libc::ELOOP),
            _ => return Err(libc::EACCES),
        }
        // The decisions of `data::open`, in its order.
        let truncate = flags & libc::O_TRUNC != 0;
        let wants_write = acc != libc::O_RDONLY || truncate;
        let mut redacted = false;
        if acc != libc::O_WRONLY {
            redacted = self.check(uid, Op::Read, Subject::Node(node))? == Decision::AllowRedacted;
        }
        if wants_write {
            self.check(uid, Op::Write, Subject::Node(node))?;
        }
        let lower_flags = flags | libc::O_NOCTTY;
        let fd = match &creds {
            Some(creds) => self.open_as(creds, node, lower_flags)?,
            None => self.open_node(node, lower_flags)?,
        };
        // A truncating open by a caller without CAP_FSETID (anyone but root and the platform)
        // drops setuid/setgid, as the kernel asks of a FUSE open (OPEN_KILL_SUIDGID).
        if truncate && self.class(uid) != CallerClass::Bypass {
            kill_suidgid(fd.as_raw_fd())?;
        }
        drop(held);
        if redacted {
            // As a FUSE read of a redacted open: the location zeroed (a sealed copy), and no
            // write, which would store zeros the reader was shown. An unknown location is an
            // error, never the original.
            if self.locate(node, Some(fd.as_fd()), None)?.has_location() {
                if wants_write {
                    return Err(libc::EACCES);
                }
                return self.redacted_copy(fd.as_fd());
            }
        }
        Ok(fd)
    }
}
